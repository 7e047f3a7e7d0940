/*
 * address.c - SMTP path and mailbox parsing (address.h): RFC 5321 4.1.2
 * grammar and 4.5.3.1 limits, RFC 5322 3.4.1 atext, RFC 6531 UTF-8.
 * A recursive-descent parser over a bounded cursor; every error is a
 * negative errno plus a constant message, and nothing is allocated until
 * the whole path has parsed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "buf.h"
#include "xalloc.h"

struct cursor {
	const char *p;
	const char *end;
	unsigned flags;		/* ADDRESS_ALLOW_*, ADDRESS_SMTPUTF8 */
	unsigned found;		/* ADDRESS_F_* */
	const char *err;
	int errnum;
};

/* Room for the longest canonical pieces, with quoting. */
#define LOCAL_OUT_MAX (2 * ADDRESS_LOCAL_MAX + 3)
#define LITERAL_MAX 64

struct parsed {
	char local[LOCAL_OUT_MAX];	/* unquoted */
	size_t local_len;
	char domain[ADDRESS_DOMAIN_MAX + 1];
};

static int
fail(struct cursor *c, int errnum, const char *msg)
{
	if (c->err == NULL) {
		c->err = msg;
		c->errnum = errnum;
	}
	return -1;
}

/* An unexpected byte: say why if it is one that may never appear. */
static int
fail_at(struct cursor *c, const char *msg)
{
	if (c->p < c->end) {
		unsigned char b = (unsigned char)*c->p;

		if (b == '\0')
			return fail(c, -EINVAL, "NUL byte in address");
		if (b == '\r' || b == '\n')
			return fail(c, -EINVAL, "CR or LF in address");
		if (b < 0x20 || b == 0x7f)
			return fail(c, -EINVAL, "control character in address");
		if (b == ' ' || b == '\t')
			return fail(c, -EINVAL, "space in address");
	}
	return fail(c, -EINVAL, msg);
}

/*
 * The length of the valid UTF-8 sequence at p (2 to 4), or 0: overlong
 * forms, surrogates, code points past U+10FFFF and the C1 controls are
 * invalid.
 */
static size_t
utf8_seq(const char *p, const char *end)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t n, avail = (size_t)(end - p);
	unsigned lo = 0x80, hi = 0xbf;

	if (u[0] >= 0xc2 && u[0] <= 0xdf)
		n = 2;
	else if (u[0] >= 0xe0 && u[0] <= 0xef)
		n = 3;
	else if (u[0] >= 0xf0 && u[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (avail < n)
		return 0;
	if (u[0] == 0xe0)
		lo = 0xa0;
	else if (u[0] == 0xed)
		hi = 0x9f;
	else if (u[0] == 0xf0)
		lo = 0x90;
	else if (u[0] == 0xf4)
		hi = 0x8f;
	else if (u[0] == 0xc2)
		lo = 0xa0;	/* U+0080..U+009F are C1 controls */
	if (u[1] < lo || u[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (u[i] < 0x80 || u[i] > 0xbf)
			return 0;
	return n;
}

/*
 * A non-ASCII character at the cursor: its length if valid and allowed,
 * else 0 with the error set.
 */
static size_t
utf8_char(struct cursor *c)
{
	size_t n = utf8_seq(c->p, c->end);

	if (n == 0) {
		fail(c, -EINVAL, "invalid UTF-8 in address");
		return 0;
	}
	if (!(c->flags & ADDRESS_SMTPUTF8)) {
		fail(c, -EILSEQ, "UTF-8 address without SMTPUTF8");
		return 0;
	}
	c->found |= ADDRESS_F_UTF8;
	return n;
}

/* RFC 5322 3.2.3 atext, ASCII part. */
static int
is_atext(unsigned char b)
{
	if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
	    (b >= '0' && b <= '9'))
		return 1;
	return b != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", b) != NULL;
}

static int
is_alnum(unsigned char b)
{
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
	    (b >= '0' && b <= '9');
}

static int
out_add(struct parsed *pp, const char *s, size_t n)
{
	if (pp->local_len + n >= sizeof(pp->local))
		return -1;
	memcpy(pp->local + pp->local_len, s, n);
	pp->local_len += n;
	pp->local[pp->local_len] = '\0';
	return 0;
}

/* Dot-string = Atom *("." Atom) (RFC 5321 4.1.2), UTF-8 per RFC 6531. */
static int
parse_dot_string(struct cursor *c, struct parsed *pp)
{
	const char *start = c->p;

	for (;;) {
		const char *atom = c->p;

		while (c->p < c->end) {
			unsigned char b = (unsigned char)*c->p;
			size_t n = 1;

			if (b >= 0x80) {
				if ((n = utf8_char(c)) == 0)
					return -1;
			} else if (!is_atext(b))
				break;
			if (c->p + n - start > ADDRESS_LOCAL_MAX)
				return fail(c, -ENAMETOOLONG,
				    "local part too long");
			c->p += n;
		}
		if (c->p == atom) {
			if (atom == start)
				return fail_at(c, c->p < c->end &&
				    *c->p == '.' ? "leading dot in local part" :
				    "empty local part");
			return fail(c, -EINVAL, *(atom - 1) == '.' &&
			    c->p < c->end && *c->p == '.' ?
			    "consecutive dots in local part" :
			    "trailing dot in local part");
		}
		if (c->p == c->end || *c->p != '.')
			break;
		c->p++;
	}
	if (out_add(pp, start, (size_t)(c->p - start)) < 0)
		return fail(c, -ENAMETOOLONG, "local part too long");
	return 0;
}

/* Quoted-string (RFC 5321 4.1.2), the cursor on the opening quote. */
static int
parse_quoted(struct cursor *c, struct parsed *pp)
{
	const char *start = c->p++;

	c->found |= ADDRESS_F_QUOTED;
	for (;;) {
		unsigned char b;
		size_t n = 1;

		if (c->p >= c->end)
			return fail(c, -EINVAL, "unterminated quoted string");
		if (c->p - start >= ADDRESS_LOCAL_MAX)
			return fail(c, -ENAMETOOLONG, "local part too long");
		b = (unsigned char)*c->p;
		if (b == '"')
			break;
		if (b == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			c->p++;
			if (c->p >= c->end || *c->p < 32 || *c->p > 126)
				return fail_at(c, "bad quoted pair");
		} else if (b >= 0x80) {
			if ((n = utf8_char(c)) == 0)
				return -1;
		} else if (b < 32 || b > 126)
			return fail_at(c, "bad character in quoted string");
		if (out_add(pp, c->p, n) < 0)
			return fail(c, -ENAMETOOLONG, "local part too long");
		c->p += n;
	}
	c->p++;
	if (c->p - start > ADDRESS_LOCAL_MAX)
		return fail(c, -ENAMETOOLONG, "local part too long");
	if (pp->local_len == 0)
		return fail(c, -EINVAL, "empty local part");
	return 0;
}

/*
 * Domain = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]
 * (RFC 5321 4.1.2), or U-labels under SMTPUTF8. Lowercased into out.
 */
static int
parse_domain_name(struct cursor *c, char *out)
{
	const char *start = c->p;
	size_t len = 0;

	for (;;) {
		const char *label = c->p;

		while (c->p < c->end) {
			unsigned char b = (unsigned char)*c->p;
			size_t n = 1;

			if (b >= 0x80) {
				if ((n = utf8_char(c)) == 0)
					return -1;
			} else if (!is_alnum(b) && b != '-')
				break;
			if (c->p + n - label > ADDRESS_LABEL_MAX)
				return fail(c, -ENAMETOOLONG,
				    "domain label too long");
			if (c->p + n - start > ADDRESS_DOMAIN_MAX)
				return fail(c, -ENAMETOOLONG,
				    "domain too long");
			for (size_t i = 0; i < n; i++) {
				char ch = c->p[i];

				out[len++] = ch >= 'A' && ch <= 'Z' ?
				    (char)(ch - 'A' + 'a') : ch;
			}
			c->p += n;
		}
		if (c->p == label)
			return fail_at(c, label == start ? "missing domain" :
			    c->p < c->end && *c->p == '.' ?
			    "consecutive dots in domain" :
			    "trailing dot in domain");
		if (*label == '-' || *(c->p - 1) == '-')
			return fail(c, -EINVAL,
			    "domain label starts or ends with a hyphen");
		if (c->p == c->end || *c->p != '.')
			break;
		out[len++] = '.';
		c->p++;
	}
	out[len] = '\0';
	return 0;
}

/* address-literal (RFC 5321 4.1.3), the cursor on '['. */
static int
parse_literal(struct cursor *c, char *out)
{
	char text[LITERAL_MAX + 1], canon[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	const char *start = ++c->p;
	size_t n;

	while (c->p < c->end && *c->p != ']') {
		unsigned char b = (unsigned char)*c->p;

		/* dcontent = %d33-90 / %d94-126, so no nested '[' */
		if (b < 33 || b > 126 || b == '[' || b == '\\')
			return fail_at(c, "bad character in address literal");
		if (c->p - start >= LITERAL_MAX)
			return fail(c, -EINVAL, "bad address literal");
		c->p++;
	}
	if (c->p == c->end)
		return fail(c, -EINVAL, "unterminated address literal");
	n = (size_t)(c->p - start);
	memcpy(text, start, n);
	text[n] = '\0';
	c->p++;
	if (n > 5 && strncasecmp(text, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, text + 5, bin) != 1 ||
		    inet_ntop(AF_INET6, bin, canon, sizeof(canon)) == NULL)
			return fail(c, -EINVAL, "bad IPv6 address literal");
		snprintf(out, ADDRESS_DOMAIN_MAX + 1, "[IPv6:%s]", canon);
	} else if (strchr(text, ':') != NULL) {
		return fail(c, -EINVAL, "unsupported address literal");
	} else {
		if (inet_pton(AF_INET, text, bin) != 1 ||
		    inet_ntop(AF_INET, bin, canon, sizeof(canon)) == NULL)
			return fail(c, -EINVAL, "bad IPv4 address literal");
		snprintf(out, ADDRESS_DOMAIN_MAX + 1, "[%s]", canon);
	}
	c->found |= ADDRESS_F_LITERAL;
	return 0;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ) */
static int
parse_mailbox(struct cursor *c, struct parsed *pp)
{
	if (c->p >= c->end)
		return fail(c, -EINVAL, "empty local part");
	if (*c->p == '"') {
		if (parse_quoted(c, pp) < 0)
			return -1;
	} else if (parse_dot_string(c, pp) < 0)
		return -1;
	if (c->p >= c->end || *c->p != '@')
		return fail_at(c, "missing @domain");
	c->p++;
	if (c->p < c->end && *c->p == '[')
		return parse_literal(c, pp->domain);
	return parse_domain_name(c, pp->domain);
}

/* A-d-l = At-domain *( "," At-domain ) ":" (RFC 5321 4.1.2) */
static int
parse_route(struct cursor *c)
{
	char scratch[ADDRESS_DOMAIN_MAX + 1];

	c->found |= ADDRESS_F_ROUTE;
	for (;;) {
		if (c->p >= c->end || *c->p != '@')
			return fail_at(c, "bad source route");
		c->p++;
		if (parse_domain_name(c, scratch) < 0)
			return -1;
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		if (c->p < c->end && *c->p == ':') {
			c->p++;
			return 0;
		}
		return fail_at(c, "bad source route");
	}
}

/* Whether s is a dot-atom, so needs no quotes in the canonical form. */
static int
local_is_dot_atom(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)s[i];

		if (b == '.' && s[i + 1] == '.')
			return 0;
		if (b != '.' && b < 0x80 && !is_atext(b))
			return 0;
	}
	return 1;
}

static struct address *
address_build(const struct parsed *pp, unsigned found)
{
	struct address *a = xcalloc(1, sizeof(*a));
	struct buf b;

	a->flags = found;
	a->local = xstrndup(pp->local, pp->local_len);
	a->domain = xstrdup(pp->domain);
	buf_init(&b, 0);
	if (found & ADDRESS_F_NULL)
		buf_puts(&b, "");
	else if (local_is_dot_atom(pp->local, pp->local_len))
		buf_append(&b, pp->local, pp->local_len);
	else {
		buf_puts(&b, "\"");
		for (size_t i = 0; i < pp->local_len; i++) {
			if (pp->local[i] == '"' || pp->local[i] == '\\')
				buf_puts(&b, "\\");
			buf_append(&b, &pp->local[i], 1);
		}
		buf_puts(&b, "\"");
	}
	if (pp->domain[0] != '\0')
		buf_printf(&b, "@%s", pp->domain);
	a->canonical = buf_steal(&b);
	return a;
}

/* <Postmaster> (RFC 5321 4.1.1.3), case-insensitive. */
static int
is_postmaster(const char *p, const char *end)
{
	return end - p >= 11 && strncasecmp(p, "postmaster>", 11) == 0;
}

int
address_parse_path(const char *s, size_t len, unsigned flags,
    struct address **addr_r, size_t *end_r, const char **errstr_r)
{
	/*
	 * Never look past the longest legal path, so a long source route
	 * or junk costs nothing: running into the clip is "too long".
	 */
	int clipped = len > ADDRESS_PATH_MAX;
	struct cursor c = { s, s + (clipped ? ADDRESS_PATH_MAX : len), flags,
		0, NULL, 0 };
	struct parsed pp;

	*addr_r = NULL;
	memset(&pp, 0, sizeof(pp));
	if (len == 0 || *c.p != '<') {
		fail_at(&c, "missing <");
		goto bad;
	}
	c.p++;
	if (c.p < c.end && *c.p == '>') {
		if (!(flags & ADDRESS_ALLOW_NULL)) {
			fail(&c, -EPERM, "null path not allowed");
			goto bad;
		}
		c.found |= ADDRESS_F_NULL;
	} else if (is_postmaster(c.p, c.end)) {
		if (!(flags & ADDRESS_ALLOW_POSTMASTER)) {
			fail(&c, -EPERM, "postmaster without domain");
			goto bad;
		}
		memcpy(pp.local, "postmaster", 10);
		pp.local_len = 10;
		c.found |= ADDRESS_F_POSTMASTER;
		c.p += 10;
	} else if (c.p < c.end && *c.p == '<') {
		fail(&c, -EINVAL, "nested <");
		goto bad;
	} else {
		if (c.p < c.end && *c.p == '@' && parse_route(&c) < 0)
			goto bad;
		if (parse_mailbox(&c, &pp) < 0)
			goto bad;
	}
	if (c.p >= c.end || *c.p != '>') {
		fail_at(&c, c.p < c.end && *c.p == '<' ? "nested <" :
		    "missing >");
		goto bad;
	}
	c.p++;
	if (end_r == NULL && c.p != s + len) {
		clipped = 0;
		fail_at(&c, "junk after >");
		goto bad;
	}
	if (end_r != NULL)
		*end_r = (size_t)(c.p - s);
	*addr_r = address_build(&pp, c.found);
	return 0;
bad:
	if (clipped && c.p >= c.end) {
		c.err = "path too long";
		c.errnum = -ENAMETOOLONG;
	}
	*errstr_r = c.err;
	return c.errnum;
}

int
address_parse_mailbox(const char *s, size_t len, unsigned flags,
    struct address **addr_r, const char **errstr_r)
{
	struct cursor c = { s, s + len, flags, 0, NULL, 0 };
	struct parsed pp;

	*addr_r = NULL;
	memset(&pp, 0, sizeof(pp));
	if (parse_mailbox(&c, &pp) < 0)
		goto bad;
	if (c.p != c.end) {
		fail_at(&c, "junk after address");
		goto bad;
	}
	if (len > ADDRESS_PATH_MAX - 2) {
		fail(&c, -ENAMETOOLONG, "address too long");
		goto bad;
	}
	*addr_r = address_build(&pp, c.found);
	return 0;
bad:
	*errstr_r = c.err;
	return c.errnum;
}

void
address_free(struct address **addr)
{
	if (*addr == NULL)
		return;
	free((*addr)->local);
	free((*addr)->domain);
	free((*addr)->canonical);
	free(*addr);
	*addr = NULL;
}

int
address_has_routing_chars(const struct address *addr)
{
	return strpbrk(addr->local, "%!@") != NULL;
}

int
address_is_literal(const struct address *addr)
{
	return (addr->flags & ADDRESS_F_LITERAL) != 0;
}
