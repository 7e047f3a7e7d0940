/*
 * pochta_sendmail_msg.c - the message side of `sendmail`: RFC 5322 3.4
 * address lists, the message read from standard input (LF or CRLF lines,
 * kept as CRLF; RFC 5322 2.1, 2.2) and the From, Date and Message-ID it
 * lacks (RFC 5322 3.6). Bad input is printed here and returned as a
 * sysexits(3) status; the parser and the spool return a negative errno.
 */
#include <sys/random.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "base64.h"
#include "buf.h"
#include "pochta_sendmail.h"
#include "xalloc.h"

/* Past this the message goes to an unlinked temporary file. */
#define SM_MEM_MAX ((size_t)1 << 20)
/* The header section is parsed in memory, so it has a limit of its own. */
#define SM_HEADER_MAX ((size_t)1 << 20)

static int
has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] & 0x80)
			return 1;
	return 0;
}

/* -- Addresses ------------------------------------------------------------ */

/* RFC 5322 3.2.3 specials, which end an atom. */
static int
special(int c)
{
	return strchr("()<>[]:;@\\,.\"", c) != NULL;
}

/* Past a quoted string or domain literal starting at s[i]; 0 when it is
 * not terminated. */
static size_t
skip_quoted(const char *s, size_t len, size_t i, char close)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == close)
			return i + 1;
	}
	return 0;
}

/* Past a comment, which nests (RFC 5322 3.2.2); 0 when unterminated. */
static size_t
skip_comment(const char *s, size_t len, size_t i)
{
	int depth = 0;

	for (; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i + 1;
	}
	return 0;
}

struct alist {
	struct buf cur;		/* the addr-spec, or the phrase */
	struct buf ang;		/* inside <...> */
	int in_angle;
	int have_angle;
	int in_group;
	int prev_word;		/* the last token was a word */
	int junk;		/* two words in a row: a phrase, not an addr */
	int after_angle;	/* a token after <...> */
};

/* One mailbox of the list is complete: keep its address, if any. */
static int
alist_finish(struct alist *a, struct sm_list *out)
{
	const char *addr = a->have_angle ? a->ang.data : a->cur.data;
	int r = 0;

	if (a->have_angle && a->after_angle)
		r = -EINVAL;
	else if (!a->have_angle && a->junk)
		r = -EINVAL;
	else if (addr != NULL && *addr != '\0') {
		/* RFC 5322 4.4: an obsolete route "@a,@b:" is ignored. */
		if (*addr == '@' && strchr(addr, ':') != NULL)
			addr = strchr(addr, ':') + 1;
		if (*addr != '\0')
			pochta_sendmail_list_push(out, xstrdup(addr));
	}
	buf_reset(&a->cur);
	buf_reset(&a->ang);
	a->have_angle = a->prev_word = a->junk = a->after_angle = 0;
	return r;
}

/* A word or special character, to the mailbox being read. */
static int
alist_token(struct alist *a, const char *t, size_t n, int word)
{
	if (a->in_angle)
		return buf_append(&a->ang, t, n);
	if (a->have_angle) {
		a->after_angle = 1;
		return 0;
	}
	if (word && a->prev_word)
		a->junk = 1;
	a->prev_word = word;
	return buf_append(&a->cur, t, n);
}

/*
 * Parse an RFC 5322 3.4 address-list (header field body, unfolded): display
 * names, comments, quoted strings, angle addresses, groups. Each address is
 * appended to out as written (unqualified, unchecked). 0, or -EINVAL.
 */
int
pochta_sendmail_msg_alist_parse(const char *s, size_t len, struct sm_list *out)
{
	struct alist a;
	size_t i = 0, end;
	int r = 0;

	memset(&a, 0, sizeof(a));
	buf_init(&a.cur, 2 * ADDRESS_PATH_MAX);
	buf_init(&a.ang, 2 * ADDRESS_PATH_MAX);
	while (i < len && r == 0) {
		char c = s[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
		} else if (c == '(') {
			if ((end = skip_comment(s, len, i)) == 0)
				r = -EINVAL;
			i = end;
		} else if (c == '"' || c == '[') {
			if ((end = skip_quoted(s, len, i, c == '"' ? '"' :
			    ']')) == 0)
				r = -EINVAL;
			else
				r = alist_token(&a, s + i, end - i, 1);
			i = end;
		} else if (a.in_angle) {
			if (c == '>') {
				a.in_angle = 0;
				a.have_angle = 1;
			} else if (c == '<') {
				r = -EINVAL;
			} else {
				r = alist_token(&a, &c, 1, 0);
			}
			i++;
		} else if (c == ',' || c == ';') {
			if (c == ';' && !a.in_group)
				r = -EINVAL;
			else
				r = alist_finish(&a, out);
			if (c == ';')
				a.in_group = 0;
			i++;
		} else if (c == ':') {
			/* A group: what came before is its name. */
			if (a.in_group || a.have_angle)
				r = -EINVAL;
			a.in_group = 1;
			buf_reset(&a.cur);
			a.prev_word = a.junk = 0;
			i++;
		} else if (c == '<') {
			if (a.have_angle)
				r = -EINVAL;
			a.in_angle = 1;
			i++;
		} else if (c == '>' || c == ']' || c == ')' || c == '\\') {
			r = -EINVAL;
		} else if (c == '@' || c == '.') {
			r = alist_token(&a, &c, 1, 0);
			i++;
		} else {
			size_t j = i;
			while (j < len && !special((unsigned char)s[j]) &&
			    s[j] != ' ' && s[j] != '\t' && s[j] != '\r' &&
			    s[j] != '\n' && (unsigned char)s[j] >= 32)
				j++;
			if (j == i)
				r = -EINVAL;	/* a control character */
			else
				r = alist_token(&a, s + i, j - i, 1);
			i = j;
		}
	}
	if (r == 0 && a.in_angle)
		r = -EINVAL;
	if (r == 0)
		r = alist_finish(&a, out);
	buf_release(&a.cur);
	buf_release(&a.ang);
	return r < 0 ? -EINVAL : 0;
}

/*
 * Check one address and give it the form MAIL and RCPT carry: "<>" is the
 * null sender (only if allow_null), an address without a domain gets
 * @myhostname. Returns a new canonical string ("" for null), or NULL and
 * prints why.
 */
char *
pochta_sendmail_msg_addr_check(const char *raw, const char *host,
    int allow_null, const char *what, int *utf8_r)
{
	struct address *a = NULL;
	const char *err = NULL;
	char *tmp, *out;
	size_t n = strlen(raw);

	if (n >= 2 && raw[0] == '<' && raw[n - 1] == '>') {
		raw++;
		n -= 2;
	}
	if (n == 0) {
		if (allow_null)
			return xstrdup("");
		pochta_sendmail_err("%s: empty address", what);
		return NULL;
	}
	tmp = memchr(raw, '@', n) != NULL ? xstrndup(raw, n) :
	    xasprintf("%.*s@%s", (int)n, raw, host);
	if (address_parse_mailbox(tmp, strlen(tmp), ADDRESS_SMTPUTF8, &a,
	    &err) < 0) {
		char *p = pochta_sendmail_printable(raw, n);
		pochta_sendmail_err("%s: bad address '%s': %s", what, p,
		    err ? err : "syntax error");
		free(p);
		free(tmp);
		return NULL;
	}
	if (a->flags & ADDRESS_F_UTF8)
		*utf8_r = 1;
	out = xstrdup(a->canonical);
	address_free(&a);
	free(tmp);
	return out;
}

struct sm_uniq {
	const char *s;
	size_t i;
};

static int
uniq_cmp(const void *x, const void *y)
{
	const struct sm_uniq *a = x, *b = y;
	int r = strcmp(a->s, b->s);

	/* Ties by position, so the first of equal addresses stays. */
	return r != 0 ? r : (a->i < b->i ? -1 : a->i > b->i);
}

/* Drop repeated addresses (one RCPT each would mean one copy each). */
void
pochta_sendmail_msg_list_uniq(struct sm_list *l)
{
	struct sm_uniq *u;
	char *keep;
	size_t n = 0;

	if (l->n < 2)
		return;
	u = xreallocarray(NULL, l->n, sizeof(*u));
	keep = xmalloc(l->n);
	for (size_t i = 0; i < l->n; i++) {
		u[i].s = l->v[i];
		u[i].i = i;
		keep[i] = 1;
	}
	qsort(u, l->n, sizeof(*u), uniq_cmp);
	for (size_t k = 1; k < l->n; k++)
		if (strcmp(u[k - 1].s, u[k].s) == 0)
			keep[u[k].i] = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (keep[i])
			l->v[n++] = l->v[i];
		else
			free(l->v[i]);
	}
	free(keep);
	free(u);
	l->n = n;
}

/* -- Reading the message -------------------------------------------------- */

static int
spool_flush(struct sm_spool *sp)
{
	size_t off = 0;

	while (off < sp->mem.len) {
		ssize_t n = write(sp->fd, sp->mem.data + off,
		    sp->mem.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	buf_reset(&sp->mem);
	return 0;
}

/* Move the spool into an unlinked temporary file: nothing is left behind
 * whatever way we exit. */
static int
spool_to_file(struct sm_spool *sp)
{
	const char *dir = getenv("TMPDIR");
	char *path;

	if (dir == NULL || dir[0] != '/')
		dir = "/tmp";
	path = xasprintf("%s/pochta-sendmail.XXXXXX", dir);
	sp->fd = mkstemp(path);
	if (sp->fd < 0) {
		int e = errno;
		pochta_sendmail_err("cannot create a temporary file in %s: %s",
		    dir, strerror(e));
		free(path);
		return -e;
	}
	unlink(path);
	free(path);
	return spool_flush(sp);
}

static int
spool_append(struct sm_spool *sp, const char *p, size_t n)
{
	int r;

	if (sp->fd < 0 && sp->mem.len + n > SM_MEM_MAX &&
	    (r = spool_to_file(sp)) < 0)
		return r;
	buf_append(&sp->mem, p, n);
	sp->len += n;
	if (sp->fd >= 0 && sp->mem.len >= SM_IO_CHUNK &&
	    (r = spool_flush(sp)) < 0) {
		pochta_sendmail_err(
		    "cannot write a temporary file: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* Hand the whole spool to fn, in pieces. Can be repeated. */
int
pochta_sendmail_msg_spool_replay(struct sm_spool *sp,
    int (*fn)(void *, const char *, size_t), void *arg)
{
	char chunk[SM_IO_CHUNK];
	off_t off = 0;
	int r;

	if (sp->fd < 0)
		return sp->len > 0 ? fn(arg, sp->mem.data, sp->mem.len) : 0;
	if (sp->mem.len > 0 && (r = spool_flush(sp)) < 0)
		return r;
	while ((size_t)off < sp->len) {
		ssize_t n = pread(sp->fd, chunk, sizeof(chunk), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		if ((r = fn(arg, chunk, (size_t)n)) < 0)
			return r;
		off += n;
	}
	return 0;
}

static void
spool_release(struct sm_spool *sp)
{
	buf_release(&sp->mem);
	if (sp->fd >= 0)
		close(sp->fd);
	sp->fd = -1;
	sp->len = 0;
}

/* RFC 5322 2.2: field-name = 1*(%d33-57 / %d59-126), then ":" (RFC 5322
 * 4.5.1 allows white space before the colon). The name length, or 0. */
static size_t
field_name(const char *s, size_t n)
{
	size_t i = 0, name;

	while (i < n && s[i] > 32 && s[i] < 127 && s[i] != ':')
		i++;
	name = i;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return name > 0 && i < n && s[i] == ':' ? name : 0;
}

static int
msg_header_line(struct sm_msg *m, const char *s, size_t n)
{
	size_t name;

	if (n == 0) {
		m->in_header = 0;
		m->separator = 1;
		return 1;
	}
	if ((s[0] == ' ' || s[0] == '\t') && m->nfields > 0) {
		if (buf_append(&m->hdr, s, n) < 0 ||
		    buf_append(&m->hdr, "\r\n", 2) < 0)
			return -ENOBUFS;
		m->fields[m->nfields - 1].len += n + 2;
		return 1;
	}
	if ((name = field_name(s, n)) == 0) {
		/* Not a header field: the body starts here, without the
		 * empty line, which is added when the message is sent. */
		m->in_header = 0;
		return 0;
	}
	m->fields = xreallocarray(m->fields, m->nfields + 1,
	    sizeof(*m->fields));
	m->fields[m->nfields].off = m->hdr.len;
	m->fields[m->nfields].len = n + 2;
	m->fields[m->nfields].namelen = name;
	if (buf_append(&m->hdr, s, n) < 0 ||
	    buf_append(&m->hdr, "\r\n", 2) < 0)
		return -ENOBUFS;
	m->nfields++;
	return 1;
}

/* One input line, without its LF or CRLF. 0, or an exit status. */
static int
msg_line(struct sm_msg *m, const char *s, size_t n)
{
	int r;

	m->lineno++;
	if (m->dot_ends && n == 1 && s[0] == '.') {
		m->done = 1;
		return 0;
	}
	if (memchr(s, '\0', n) != NULL) {
		pochta_sendmail_err(
		    "line %zu: NUL character in the message", m->lineno);
		return EX_DATAERR;
	}
	if (memchr(s, '\r', n) != NULL) {
		/* smtpd refuses a bare CR (SMTP smuggling); say so here,
		 * with the line number, rather than after connecting. */
		pochta_sendmail_err(
		    "line %zu: CR not followed by LF in the message",
		    m->lineno);
		return EX_DATAERR;
	}
	if (n > m->max_line) {
		pochta_sendmail_err(
		    "line %zu: longer than %zu bytes", m->lineno, m->max_line);
		return EX_DATAERR;
	}
	m->size += n + 2;
	if (m->max_size > 0 && m->size > m->max_size) {
		pochta_sendmail_err(
		    "message larger than message_size_limit (%zu bytes)",
		    m->max_size);
		return EX_DATAERR;
	}
	if (!m->eightbit && has_8bit(s, n))
		m->eightbit = 1;
	if (m->in_header) {
		r = msg_header_line(m, s, n);
		if (r == -ENOBUFS) {
			pochta_sendmail_err(
			    "header section larger than %zu bytes",
			    SM_HEADER_MAX);
			return EX_DATAERR;
		}
		if (r > 0)
			return 0;
	}
	if (spool_append(&m->body, s, n) < 0 ||
	    spool_append(&m->body, "\r\n", 2) < 0)
		return EX_TEMPFAIL;
	return 0;
}

void
pochta_sendmail_msg_init(struct sm_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->in_header = 1;
	m->body.fd = -1;
	buf_init(&m->hdr, SM_HEADER_MAX);
	buf_init(&m->body.mem, 0);
}

/*
 * Read the message from fd: LF or CRLF line ends (stored as CRLF), a last
 * line without one gets one. 0, or an exit status (the message printed).
 */
int
pochta_sendmail_msg_read(struct sm_msg *m, int fd)
{
	char chunk[SM_IO_CHUNK];
	struct buf line;
	int r = 0;

	/* +1: the CR of a CRLF is in the buffer until the LF comes. */
	buf_init(&line, m->max_line + 2);
	while (!m->done && r == 0) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pochta_sendmail_err("cannot read the message: %s",
			    strerror(errno));
			r = EX_NOINPUT;
			break;
		}
		if (n == 0)
			break;
		const char *p = chunk, *end = chunk + n;
		while (p < end && !m->done && r == 0) {
			const char *lf = memchr(p, '\n', (size_t)(end - p));
			size_t k = lf ? (size_t)(lf - p) : (size_t)(end - p);
			if (buf_append(&line, p, k) < 0) {
				pochta_sendmail_err(
				    "line %zu: longer than %zu bytes",
				    m->lineno + 1, m->max_line);
				r = EX_DATAERR;
				break;
			}
			p += k;
			if (lf == NULL)
				break;
			p++;
			size_t len = line.len;
			if (len > 0 && line.data[len - 1] == '\r')
				len--;
			r = msg_line(m, line.data != NULL ? line.data : "",
			    len);
			buf_reset(&line);
		}
	}
	if (r == 0 && !m->done && line.len > 0)
		r = msg_line(m, line.data, line.len);
	buf_release(&line);
	if (r == 0 && m->body.fd >= 0 && m->body.mem.len > 0) {
		int e = spool_flush(&m->body);
		if (e < 0) {
			pochta_sendmail_err("cannot write a temporary file: %s",
			    strerror(-e));
			r = EX_TEMPFAIL;
		}
	}
	return r;
}

void
pochta_sendmail_msg_release(struct sm_msg *m)
{
	buf_release(&m->hdr);
	free(m->fields);
	m->fields = NULL;
	m->nfields = 0;
	spool_release(&m->body);
}

int
pochta_sendmail_msg_field_is(const struct sm_msg *m, size_t i, const char *name)
{
	return m->fields[i].namelen == strlen(name) &&
	    strncasecmp(m->hdr.data + m->fields[i].off, name,
	    m->fields[i].namelen) == 0;
}

static int
msg_has(const struct sm_msg *m, const char *name)
{
	for (size_t i = 0; i < m->nfields; i++)
		if (pochta_sendmail_msg_field_is(m, i, name))
			return 1;
	return 0;
}

/* -t: every address of every To, Cc and Bcc field, as written. */
int
pochta_sendmail_msg_recipients(const struct sm_msg *m, struct sm_list *out)
{
	static const char *const names[] = {"To", "Cc", "Bcc"};

	for (size_t i = 0; i < m->nfields; i++) {
		const struct sm_field *f = &m->fields[i];
		size_t k;

		for (k = 0; k < 3; k++)
			if (pochta_sendmail_msg_field_is(m, i, names[k]))
				break;
		if (k == 3)
			continue;
		const char *v = memchr(m->hdr.data + f->off, ':', f->len) + 1;
		size_t vlen = f->len - (size_t)(v - (m->hdr.data + f->off));
		/* Unfold (RFC 5322 2.2.3): drop every CRLF. */
		char *u = xmalloc(vlen + 1), *o = u;
		for (size_t j = 0; j < vlen; j++)
			if (v[j] != '\r' && v[j] != '\n')
				*o++ = v[j];
		*o = '\0';
		int r =
		    pochta_sendmail_msg_alist_parse(u, (size_t)(o - u), out);
		free(u);
		if (r < 0) {
			pochta_sendmail_err(
			    "bad address list in the %s: header", names[k]);
			return EX_DATAERR;
		}
	}
	return 0;
}

/* -- Header fields we add -------------------------------------------------- */

/* RFC 5322 3.3 date-time, in local time with its offset. */
static void
rfc5322_date(struct buf *b)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;
	char zone[8];

	localtime_r(&now, &tm);
	if (strftime(zone, sizeof(zone), "%z", &tm) == 0)
		snprintf(zone, sizeof(zone), "+0000");
	buf_printf(b, "%s, %d %s %d %02d:%02d:%02d %s", days[tm.tm_wday],
	    tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, zone);
}

/* RFC 5322 3.6.4: unique through the time, the process and 64 random
 * bits; the right side is our host name. */
static void
message_id(struct buf *b, const char *host)
{
	unsigned char rnd[8];
	time_t now = time(NULL);
	struct tm tm;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		/* Only uniqueness is needed; time and pid still give it. */
		memset(rnd, 0, sizeof(rnd));
		memcpy(rnd, &now, sizeof(now) < sizeof(rnd) ? sizeof(now) :
		    sizeof(rnd));
	}
	gmtime_r(&now, &tm);
	buf_printf(b, "<%04d%02d%02d%02d%02d%02d.%ld.", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (long)getpid());
	for (size_t i = 0; i < sizeof(rnd); i++)
		buf_printf(b, "%02x", rnd[i]);
	buf_printf(b, "@%s>", host);
}

/*
 * The display name of From (RFC 5322 3.4): as atoms when it is only atext
 * and spaces, else a quoted string; non-ASCII as RFC 2047 encoded words of
 * whole UTF-8 characters, folded between words.
 */
static void
display_name(struct buf *b, const char *name)
{
	size_t n = strlen(name);
	int plain = 1;

	if (has_8bit(name, n)) {
		size_t i = 0;
		while (i < n) {
			/* 45 octets become 60 base64 characters: the word
			 * stays within 75 (RFC 2047 2). */
			size_t k = n - i > 45 ? 45 : n - i;
			while (i + k < n && k > 0 &&
			    ((unsigned char)name[i + k] & 0xc0) == 0x80)
				k--;
			if (k == 0)
				k = n - i > 45 ? 45 : n - i;
			char *enc = base64_encode(name + i, k);
			buf_printf(b, "%s=?UTF-8?B?%s?=", i > 0 ? "\r\n " :
			    "", enc);
			free(enc);
			i += k;
		}
		return;
	}
	for (const char *p = name; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != ' ' &&
		    strchr("!#$%&'*+-/=?^_`{|}~", *p) == NULL)
			plain = 0;
	if (plain && name[0] != ' ' && n > 0 && name[n - 1] != ' ') {
		buf_puts(b, name);
		return;
	}
	buf_puts(b, "\"");
	for (const char *p = name; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			buf_puts(b, "\\");
		buf_append(b, p, 1);
	}
	buf_puts(b, "\"");
}

/* The fields a message lacks: From, Date, Message-ID (RFC 5322 3.6). */
void
pochta_sendmail_msg_added_fields(const struct sm_msg *m, struct buf *b,
    const char *from, const char *fullname, const char *host)
{
	if (!msg_has(m, "From")) {
		buf_puts(b, "From: ");
		if (fullname != NULL && fullname[0] != '\0') {
			display_name(b, fullname);
			buf_printf(b, " <%s>\r\n", from);
		} else {
			buf_printf(b, "%s\r\n", from);
		}
	}
	if (!msg_has(m, "Date")) {
		buf_puts(b, "Date: ");
		rfc5322_date(b);
		buf_puts(b, "\r\n");
	}
	if (!msg_has(m, "Message-ID")) {
		buf_puts(b, "Message-ID: ");
		message_id(b, host);
		buf_puts(b, "\r\n");
	}
}
