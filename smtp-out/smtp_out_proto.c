/*
 * smtp_out_proto.c - the pure parts of the SMTP client: reply parsing
 * (RFC 5321 4.2, RFC 2034 enhanced codes), EHLO keywords, dot-stuffing
 * (RFC 5321 4.5.2), next hop syntax and the MX host list (RFC 5321 5.1).
 * Hostile replies are errors with a text, never a crash or unbounded memory.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "smtp_out.h"
#include "xalloc.h"

void
so_reply_init(struct so_reply *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->text, SO_REPLY_TEXT_MAX);
}

void
so_reply_release(struct so_reply *r)
{
	buf_release(&r->text);
	r->code = 0;
	r->enh[0] = '\0';
	r->nlines = 0;
	r->complete = 0;
}

/* "x.y.z" with class 2, 4 or 5 (RFC 3463 2): its length, or 0. */
static size_t
enh_len(const char *s, size_t n)
{
	size_t i = 0;

	if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') ||
	    s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;

		while (i < n && isdigit((unsigned char)s[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
		if (part == 0) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && s[i] != ' ')
		return 0;
	return i;
}

int
so_reply_line(struct so_reply *r, const char *line, size_t len,
    const char **errstr_r)
{
	int code;
	size_t off = 4, e;

	if (len < 3 || !isdigit((unsigned char)line[0]) ||
	    !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || line[0] < '2' ||
	    line[0] > '5' || (len > 3 && line[3] != ' ' && line[3] != '-')) {
		*errstr_r = "malformed reply line";
		return -EPROTO;
	}
	if (memchr(line, '\0', len) != NULL) {
		*errstr_r = "NUL byte in reply";
		return -EPROTO;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->nlines > 0 && code != r->code) {
		*errstr_r = "reply code changes within a multi-line reply";
		return -EPROTO;
	}
	if (++r->nlines > SO_REPLY_LINES_MAX) {
		*errstr_r = "reply has too many lines";
		return -ENOBUFS;
	}
	r->code = code;
	if (len <= 4)
		off = len;
	e = enh_len(line + off, len - off);
	if (e > 0 && e < sizeof(r->enh)) {
		if (r->enh[0] == '\0')
			memcpy(r->enh, line + off, e), r->enh[e] = '\0';
		off += e;
		if (off < len)
			off++;
	}
	if ((r->text.len > 0 && buf_append(&r->text, "\n", 1) < 0) ||
	    buf_append(&r->text, line + off, len - off) < 0) {
		*errstr_r = "reply too long";
		return -ENOBUFS;
	}
	if (len == 3 || line[3] == ' ') {
		r->complete = 1;
		return 1;
	}
	return 0;
}

char *
so_reply_oneline(const struct so_reply *r)
{
	struct buf b;
	size_t i;

	buf_init(&b, 0);
	buf_printf(&b, "%03d", r->code);
	if (r->enh[0] != '\0')
		buf_printf(&b, " %s", r->enh);
	if (r->text.len > 0)
		buf_append(&b, " ", 1);
	for (i = 0; i < r->text.len && b.len < SO_TEXT_MAX; i++) {
		unsigned char c = (unsigned char)r->text.data[i];

		if (c == '\n')
			c = ' ';
		else if (c < 0x20 || c == 0x7f)
			c = '?';
		buf_append(&b, &c, 1);
	}
	while (b.len > 0 && b.data[b.len - 1] == ' ')
		b.data[--b.len] = '\0';
	return buf_steal(&b);
}

/* Whether the line (n bytes) starts with keyword followed by end or ' '. */
static int
keyword(const char *line, size_t n, const char *kw, const char **arg_r)
{
	size_t k = strlen(kw);

	if (n < k || strncasecmp(line, kw, k) != 0 ||
	    (n > k && line[k] != ' ' && line[k] != '='))
		return 0;
	*arg_r = line + k;
	return 1;
}

static void
caps_auth(const char *arg, size_t n, struct so_caps *caps)
{
	size_t i = 0;

	while (i < n) {
		size_t start, len;

		while (i < n && (arg[i] == ' ' || arg[i] == '='))
			i++;
		start = i;
		while (i < n && arg[i] != ' ')
			i++;
		len = i - start;
		if (len == 5 && strncasecmp(arg + start, "PLAIN", 5) == 0)
			caps->flags |= SO_CAP_AUTH_PLAIN;
		else if (len == 5 && strncasecmp(arg + start, "LOGIN", 5) == 0)
			caps->flags |= SO_CAP_AUTH_LOGIN;
	}
}

void
so_caps_parse(const char *text, struct so_caps *caps)
{
	const char *p = text, *nl, *arg;
	int first = 1;

	memset(caps, 0, sizeof(*caps));
	for (; p != NULL && *p != '\0'; p = nl != NULL ? nl + 1 : NULL,
	    first = 0) {
		size_t n;

		nl = strchr(p, '\n');
		n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		/* The first line is the server's greeting name. */
		if (first)
			continue;
		if (keyword(p, n, "PIPELINING", &arg))
			caps->flags |= SO_CAP_PIPELINING;
		else if (keyword(p, n, "8BITMIME", &arg))
			caps->flags |= SO_CAP_8BITMIME;
		else if (keyword(p, n, "SMTPUTF8", &arg))
			caps->flags |= SO_CAP_SMTPUTF8;
		else if (keyword(p, n, "DSN", &arg))
			caps->flags |= SO_CAP_DSN;
		else if (keyword(p, n, "STARTTLS", &arg))
			caps->flags |= SO_CAP_STARTTLS;
		else if (keyword(p, n, "AUTH", &arg))
			caps_auth(arg, n - (size_t)(arg - p), caps);
		else if (keyword(p, n, "SIZE", &arg)) {
			uint64_t v = 0;
			size_t i = (size_t)(arg - p);

			caps->flags |= SO_CAP_SIZE;
			if (i < n)
				i++;
			/* Digits only, and no overflow: else no limit. */
			for (; i < n && isdigit((unsigned char)p[i]); i++) {
				if (v > (UINT64_MAX - 9) / 10) {
					v = 0;
					break;
				}
				v = v * 10 + (uint64_t)(p[i] - '0');
			}
			caps->size = v;
		}
	}
}

void
so_dot_init(struct so_dot *d)
{
	d->bol = 1;
	d->cr = 0;
}

int
so_dot_stuff(struct so_dot *d, const char *in, size_t n, struct buf *out)
{
	size_t i, start = 0;

	for (i = 0; i < n; i++) {
		char c = in[i];

		if (d->bol && c == '.') {
			if (buf_append(out, in + start, i - start) < 0 ||
			    buf_append(out, ".", 1) < 0)
				return -ENOBUFS;
			start = i;
		}
		if (c == '\n' && !d->cr) {
			if (buf_append(out, in + start, i - start) < 0 ||
			    buf_append(out, "\r", 1) < 0)
				return -ENOBUFS;
			start = i;
		}
		d->bol = c == '\n';
		d->cr = c == '\r';
	}
	return buf_append(out, in + start, n - start);
}

int
so_dot_finish(struct so_dot *d, struct buf *out)
{
	if (!d->bol && buf_append(out, d->cr ? "\n" : "\r\n",
	    d->cr ? 1 : 2) < 0)
		return -ENOBUFS;
	d->bol = 1;
	d->cr = 0;
	return buf_append(out, ".\r\n", 3);
}

static int
parse_port(const char *s, int *port_r)
{
	char *end;
	long v;

	if (*s == '\0' || strspn(s, "0123456789") != strlen(s) ||
	    strlen(s) > 5)
		return -EINVAL;
	v = strtol(s, &end, 10);
	if (v < 1 || v > 65535)
		return -EINVAL;
	*port_r = (int)v;
	return 0;
}

/* A host name or address literal: printable, no blank or bracket. */
static int
host_ok(const char *h, size_t n)
{
	if (n == 0 || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' ||
		    c == '/' || c == '\\')
			return 0;
	}
	return 1;
}

int
so_nexthop_parse(const char *nh, char **host_r, int *explicit_r,
    int *port_r)
{
	const char *end, *colon;
	size_t n;

	*port_r = 0;
	*explicit_r = 0;
	if (nh[0] == '[') {
		if ((end = strchr(nh, ']')) == NULL)
			return -EINVAL;
		n = (size_t)(end - nh - 1);
		if (!host_ok(nh + 1, n))
			return -EINVAL;
		if (end[1] != '\0' && (end[1] != ':' ||
		    parse_port(end + 2, port_r) < 0))
			return -EINVAL;
		*explicit_r = 1;
		*host_r = xstrndup(nh + 1, n);
		return 0;
	}
	colon = strrchr(nh, ':');
	n = colon != NULL ? (size_t)(colon - nh) : strlen(nh);
	if (colon != NULL && (memchr(nh, ':', n) != NULL ||
	    parse_port(colon + 1, port_r) < 0))
		return -EINVAL;
	if (!host_ok(nh, n))
		return -EINVAL;
	*host_r = xstrndup(nh, n);
	return 0;
}

static int
addr_local(const struct dns_addr *a)
{
	struct ifaddrs *ifa, *i;
	int found = 0;

	if (a->family == AF_INET && a->addr[0] == 127)
		return 1;
	if (a->family == AF_INET6 && memcmp(a->addr,
	    "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0)
		return 1;
	if (getifaddrs(&ifa) < 0)
		return 0;
	for (i = ifa; i != NULL && !found; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != a->family)
			continue;
		if (a->family == AF_INET)
			found = memcmp(&((struct sockaddr_in *)(void *)
			    i->ifa_addr)->sin_addr, a->addr, 4) == 0;
		else
			found = memcmp(&((struct sockaddr_in6 *)(void *)
			    i->ifa_addr)->sin6_addr, a->addr, 16) == 0;
	}
	freeifaddrs(ifa);
	return found;
}

int
so_is_own(const struct so_listener *own, size_t nown,
    const struct dns_addr *addr, int port)
{
	for (size_t i = 0; i < nown; i++) {
		if (own[i].port != port)
			continue;
		if (own[i].wildcard) {
			if (addr_local(addr))
				return 1;
		} else if (own[i].addr.family == addr->family &&
		    memcmp(own[i].addr.addr, addr->addr,
		    addr->family == AF_INET ? 4 : 16) == 0)
			return 1;
	}
	return 0;
}

int
so_hosts_from_mx(const struct dns_result *res, int port,
    const struct so_listener *own, size_t nown, struct so_host **hosts_r)
{
	struct so_host *hosts = NULL;
	size_t n = 0, cap = 0, limit = res->nmx;
	int self = 0;

	/* We are an MX: only the better ones may take it (RFC 5321 5.1). */
	for (size_t i = 0; i < res->nmx && limit == res->nmx; i++)
		for (size_t j = 0; j < res->mx[i].naddrs; j++)
			if (so_is_own(own, nown, &res->mx[i].addrs[j], port)) {
				limit = i;
				while (limit > 0 && res->mx[limit - 1].pref ==
				    res->mx[i].pref)
					limit--;
				self = 1;
				break;
			}
	for (size_t i = 0; i < limit; i++) {
		for (size_t j = 0; j < res->mx[i].naddrs; j++) {
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				hosts = xreallocarray(hosts, cap,
				    sizeof(*hosts));
			}
			memset(&hosts[n], 0, sizeof(hosts[n]));
			hosts[n].name = xstrdup(res->mx[i].host);
			hosts[n].addr = res->mx[i].addrs[j];
			hosts[n].port = port;
			hosts[n].dnssec = res->secure && res->mx[i].secure;
			n++;
		}
	}
	if (n == 0 && self) {
		free(hosts);
		return -ELOOP;
	}
	*hosts_r = hosts;
	return (int)n;
}

int
so_needs_utf8(const char *sender, const char *const *rcpts, size_t n)
{
	for (const char *p = sender; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return 1;
	for (size_t i = 0; i < n; i++)
		for (const char *p = rcpts[i]; *p != '\0'; p++)
			if ((unsigned char)*p >= 0x80)
				return 1;
	return 0;
}

int
so_xtext(struct buf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		int r;

		if (c < 0x21 || c > 0x7e || c == '+' || c == '=')
			r = buf_printf(out, "+%02X", c);
		else
			r = buf_append(out, &c, 1);
		if (r < 0)
			return r;
	}
	return 0;
}
