/*
 * pochta_sendmail.c - `sendmail`, local submission for scripts and cron: a
 * message from standard input (LF or CRLF lines) gets a missing From, Date
 * and Message-ID (RFC 5322 3.6) and goes to smtpd on public/submit over ESMTP
 * (RFC 5321, 6152, 6531, 3461), read and checked whole before the first
 * command. Errors: one line on stderr, a sysexits(3) status; 75 is "retry".
 */
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <pwd.h>
#include <stdarg.h>
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
#include "conf.h"
#include "pochta.h"
#include "xalloc.h"

#define SM_USAGE \
	"usage: sendmail [-itv] [-B type] [-C dir] [-F name] [-f sender]\n" \
	"                [-N dsn] [-R ret] [-V envid] [-o option]\n" \
	"                [recipient ...] < message\n"

/* Replies are waited for this long; a silent smtpd is a temporary error. */
#define SM_TIMEOUT_MS (60 * 1000)
/* Past this the message goes to an unlinked temporary file. */
#define SM_MEM_MAX ((size_t)1 << 20)
/* The header section is parsed in memory, so it has a limit of its own. */
#define SM_HEADER_MAX ((size_t)1 << 20)
/* Used when smtpd_max_line_length is 0 (no limit in smtpd). */
#define SM_LINE_HARD_MAX ((size_t)1 << 20)
#define SM_REPLY_LINE_MAX 2048
#define SM_REPLY_LINES_MAX 100
#define SM_IO_CHUNK (64 * 1024)
/* RFC 3461 4.4: ENVID is at most 100 characters. */
#define SM_ENVID_MAX 100
/* A -F name longer than this would not fit a header line (RFC 5322 2.1.1)
 * once encoded. */
#define SM_NAME_MAX 256

struct sm_list {
	char **v;
	size_t n;
};

/* The message body: in memory while small, then in a temporary file. */
struct sm_spool {
	struct buf mem;		/* everything, or the unwritten tail */
	int fd;			/* -1 while in memory */
	size_t len;		/* bytes in the spool, in all */
};

/* One header field, with its continuation lines and their CRLFs. */
struct sm_field {
	size_t off;
	size_t len;
	size_t namelen;
};

struct sm_msg {
	struct buf hdr;		/* the header section, CRLF lines */
	struct sm_field *fields;
	size_t nfields;
	int in_header;
	int separator;		/* the header section had an end */
	struct sm_spool body;
	size_t size;		/* octets read, after LF -> CRLF */
	size_t max_size;
	size_t max_line;
	size_t lineno;
	int eightbit;
	int dot_ends;		/* no -i: a line "." ends the message */
	int done;
};

struct sm_opts {
	const char *confdir;
	const char *sender;	/* NULL: LOGIN@myhostname */
	const char *fullname;
	char *notify;		/* RCPT NOTIFY= value, or NULL */
	const char *ret;	/* MAIL RET= value, or NULL */
	char *envid;		/* xtext, or NULL */
	int body8;		/* -B 8BITMIME */
	int tflag;
	int iflag;
	int verbose;
};

struct sm_conn {
	int fd;
	int verbose;
	int bol;		/* the data written so far ends a line */
	struct buf in;
	struct buf out;
	struct buf text;	/* the last reply's text, for messages */
	int code;
	/* From EHLO. */
	int ext_8bitmime;
	int ext_smtputf8;
	int ext_dsn;
	int ext_size;
	int ehlo;		/* reading the EHLO reply */
};

static void
sm_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sm_err(const char *fmt, ...)
{
	va_list ap;

	fputs("sendmail: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
sm_usage(void)
{
	fputs(SM_USAGE, stderr);
	return EX_USAGE;
}

static void
list_push(struct sm_list *l, char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = s;
}

static void
list_clear(struct sm_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int
has_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] & 0x80)
			return 1;
	return 0;
}

static int
has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 32 || *s == 0x7f)
			return 1;
	return 0;
}

/* Printable text for a message on stderr: control characters become '?'. */
static char *
printable(const char *s, size_t n)
{
	char *out = xstrndup(s, n);

	for (char *p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 32 || *p == 0x7f)
			*p = '?';
	return out;
}

/* -- Options ------------------------------------------------------------ */

/* -N: "never", or a comma list of success, failure and delay (RFC 3461
 * 4.1). The RCPT NOTIFY= value, or NULL when malformed. */
static char *
dsn_notify(const char *arg)
{
	static const char *const words[] = {"success", "failure", "delay"};
	char *copy = xstrdup(arg), *save = NULL;
	struct buf b;
	int seen = 0;

	buf_init(&b, 64);
	if (strcasecmp(arg, "never") == 0) {
		free(copy);
		buf_puts(&b, "NEVER");
		return buf_steal(&b);
	}
	for (char *w = strtok_r(copy, ",", &save); w != NULL;
	     w = strtok_r(NULL, ",", &save)) {
		size_t i;
		for (i = 0; i < 3; i++)
			if (strcasecmp(w, words[i]) == 0)
				break;
		if (i == 3 || (seen & (1 << i)))
			goto bad;
		seen |= 1 << i;
		if (b.len > 0)
			buf_puts(&b, ",");
		for (const char *p = words[i]; *p != '\0'; p++)
			buf_printf(&b, "%c", toupper((unsigned char)*p));
	}
	if (seen == 0)
		goto bad;
	free(copy);
	return buf_steal(&b);
bad:
	free(copy);
	buf_release(&b);
	return NULL;
}

/* RFC 3461 4: xtext, so an ENVID cannot carry spaces or '=' into MAIL. */
static char *
xtext_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(strlen(s) * 3 + 1), *o = out;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 33 || c > 126 || c == '+' || c == '=') {
			*o++ = '+';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	return out;
}

static int
opts_parse(int argc, char **argv, struct sm_opts *o)
{
	int ch;

	optind = 1;
	opterr = 0;
	/* '+': options come before recipients, as in sendmail(8). */
	while ((ch = getopt(argc, argv, "+B:b:C:c:F:f:iN:o:R:r:tV:v")) !=
	    -1) {
		switch (ch) {
		case 'B':
			if (strcasecmp(optarg, "8BITMIME") == 0)
				o->body8 = 1;
			else if (strcasecmp(optarg, "7BIT") != 0) {
				sm_err("-B: '%s' is not 7BIT or 8BITMIME",
				    optarg);
				return sm_usage();
			}
			break;
		case 'b':
			if (strcmp(optarg, "m") != 0) {
				sm_err("-b%s: mode not supported", optarg);
				return sm_usage();
			}
			break;
		case 'C':
		case 'c':
			o->confdir = optarg;
			break;
		case 'F':
			/* No CR or LF: the name goes into a header field. */
			if (has_ctl(optarg) || strlen(optarg) > SM_NAME_MAX) {
				sm_err("-F: the name must be at most %d "
				       "printable characters", SM_NAME_MAX);
				return sm_usage();
			}
			o->fullname = optarg;
			break;
		case 'f':
		case 'r':
			o->sender = optarg;
			break;
		case 'i':
			o->iflag = 1;
			break;
		case 'N':
			free(o->notify);
			if ((o->notify = dsn_notify(optarg)) == NULL) {
				sm_err("-N: '%s' is not never or a list of "
				       "success, failure, delay", optarg);
				return sm_usage();
			}
			break;
		case 'o':
			/* Other -o options are the old sendmail.cf settings
			 * (-oem, -odi, ...); only -oi means anything here. */
			if (strcmp(optarg, "i") == 0)
				o->iflag = 1;
			break;
		case 'R':
			if (strcasecmp(optarg, "full") == 0)
				o->ret = "FULL";
			else if (strcasecmp(optarg, "hdrs") == 0)
				o->ret = "HDRS";
			else {
				sm_err("-R: '%s' is not full or hdrs", optarg);
				return sm_usage();
			}
			break;
		case 't':
			o->tflag = 1;
			break;
		case 'V':
			if (strlen(optarg) > SM_ENVID_MAX || *optarg == '\0' ||
			    has_ctl(optarg)) {
				sm_err("-V: envelope ID must be 1 to %d "
				       "printable characters", SM_ENVID_MAX);
				return sm_usage();
			}
			free(o->envid);
			o->envid = xtext_encode(optarg);
			break;
		case 'v':
			o->verbose = 1;
			break;
		default:
			if (optopt != 0 && strchr("BbCcFfNoRrV", optopt))
				sm_err("option -%c needs an argument", optopt);
			else if (optopt != 0)
				sm_err("unknown option -%c", optopt);
			else
				sm_err("unknown option %s", argv[optind - 1]);
			return sm_usage();
		}
	}
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
			list_push(out, xstrdup(addr));
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
static int
alist_parse(const char *s, size_t len, struct sm_list *out)
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
static char *
addr_check(const char *raw, const char *host, int allow_null,
    const char *what, int *utf8_r)
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
		sm_err("%s: empty address", what);
		return NULL;
	}
	tmp = memchr(raw, '@', n) != NULL ? xstrndup(raw, n) :
	    xasprintf("%.*s@%s", (int)n, raw, host);
	if (address_parse_mailbox(tmp, strlen(tmp), ADDRESS_SMTPUTF8, &a,
	    &err) < 0) {
		char *p = printable(raw, n);
		sm_err("%s: bad address '%s': %s", what, p,
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
static void
list_uniq(struct sm_list *l)
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
		sm_err("cannot create a temporary file in %s: %s", dir,
		    strerror(e));
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
		sm_err("cannot write a temporary file: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* Hand the whole spool to fn, in pieces. Can be repeated. */
static int
spool_replay(struct sm_spool *sp, int (*fn)(void *, const char *, size_t),
    void *arg)
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
		sm_err("line %zu: NUL character in the message", m->lineno);
		return EX_DATAERR;
	}
	if (memchr(s, '\r', n) != NULL) {
		/* smtpd refuses a bare CR (SMTP smuggling); say so here,
		 * with the line number, rather than after connecting. */
		sm_err("line %zu: CR not followed by LF in the message",
		    m->lineno);
		return EX_DATAERR;
	}
	if (n > m->max_line) {
		sm_err("line %zu: longer than %zu bytes", m->lineno,
		    m->max_line);
		return EX_DATAERR;
	}
	m->size += n + 2;
	if (m->max_size > 0 && m->size > m->max_size) {
		sm_err("message larger than message_size_limit (%zu bytes)",
		    m->max_size);
		return EX_DATAERR;
	}
	if (!m->eightbit && has_8bit(s, n))
		m->eightbit = 1;
	if (m->in_header) {
		r = msg_header_line(m, s, n);
		if (r == -ENOBUFS) {
			sm_err("header section larger than %zu bytes",
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

/*
 * Read the message from fd: LF or CRLF line ends (stored as CRLF), a last
 * line without one gets one. 0, or an exit status (the message printed).
 */
static int
msg_read(struct sm_msg *m, int fd)
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
			sm_err("cannot read the message: %s",
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
				sm_err("line %zu: longer than %zu bytes",
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
			sm_err("cannot write a temporary file: %s",
			    strerror(-e));
			r = EX_TEMPFAIL;
		}
	}
	return r;
}

static void
msg_release(struct sm_msg *m)
{
	buf_release(&m->hdr);
	free(m->fields);
	m->fields = NULL;
	m->nfields = 0;
	spool_release(&m->body);
}

static int
field_is(const struct sm_msg *m, size_t i, const char *name)
{
	return m->fields[i].namelen == strlen(name) &&
	    strncasecmp(m->hdr.data + m->fields[i].off, name,
	    m->fields[i].namelen) == 0;
}

static int
msg_has(const struct sm_msg *m, const char *name)
{
	for (size_t i = 0; i < m->nfields; i++)
		if (field_is(m, i, name))
			return 1;
	return 0;
}

/* -t: every address of every To, Cc and Bcc field, as written. */
static int
msg_recipients(const struct sm_msg *m, struct sm_list *out)
{
	static const char *const names[] = {"To", "Cc", "Bcc"};

	for (size_t i = 0; i < m->nfields; i++) {
		const struct sm_field *f = &m->fields[i];
		size_t k;

		for (k = 0; k < 3; k++)
			if (field_is(m, i, names[k]))
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
		int r = alist_parse(u, (size_t)(o - u), out);
		free(u);
		if (r < 0) {
			sm_err("bad address list in the %s: header",
			    names[k]);
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
static void
added_fields(const struct sm_msg *m, struct buf *b, const char *from,
    const char *fullname, const char *host)
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

/* -- The SMTP client ------------------------------------------------------ */

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
conn_wait(struct sm_conn *c, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd p = {.fd = c->fd, .events = events};

		if (left <= 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r > 0)
			return 0;
	}
}

static int
conn_flush(struct sm_conn *c)
{
	long long deadline = now_ms() + SM_TIMEOUT_MS;
	size_t off = 0;

	while (off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + off, c->out.len - off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			off += (size_t)n;
			deadline = now_ms() + SM_TIMEOUT_MS;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN ||
		    errno == EWOULDBLOCK)) {
			int r = conn_wait(c, POLLOUT, deadline);
			if (r < 0)
				return r;
		} else {
			return n < 0 ? -errno : -EPIPE;
		}
	}
	buf_reset(&c->out);
	return 0;
}

/* One reply line, CRLF stripped: its code, or -EPROTO. */
static int
reply_line(struct sm_conn *c, const char *s, size_t n, int *last_r)
{
	if (n < 3 || !isdigit((unsigned char)s[0]) || s[0] < '2' ||
	    s[0] > '5' || !isdigit((unsigned char)s[1]) ||
	    !isdigit((unsigned char)s[2]) || (n > 3 && s[3] != ' ' &&
	    s[3] != '-'))
		return -EPROTO;
	*last_r = n == 3 || s[3] == ' ';
	char *p = printable(n > 4 ? s + 4 : "", n > 4 ? n - 4 : 0);
	if (c->verbose)
		fprintf(stderr, "<<< %.3s%c%s\n", s, n > 3 ? s[3] : ' ', p);
	if (c->ehlo && c->text.len > 0) {
		/* RFC 5321 4.1.1.1: after the first line, one extension
		 * keyword per line. */
		static const struct {
			const char *kw;
			size_t off;
		} ext[] = {
			{"8BITMIME", offsetof(struct sm_conn, ext_8bitmime)},
			{"SMTPUTF8", offsetof(struct sm_conn, ext_smtputf8)},
			{"DSN", offsetof(struct sm_conn, ext_dsn)},
			{"SIZE", offsetof(struct sm_conn, ext_size)},
		};
		size_t kl = strcspn(p, " ");
		for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++)
			if (kl == strlen(ext[i].kw) &&
			    strncasecmp(p, ext[i].kw, kl) == 0)
				*(int *)((char *)c + ext[i].off) = 1;
	}
	/* Past the limit the start is enough for a message. */
	if (c->text.len > 0 && c->text.len < c->text.limit)
		buf_puts(&c->text, " ");
	size_t room = c->text.limit - c->text.len, plen = strlen(p);
	buf_append(&c->text, p, plen < room ? plen : room);
	free(p);
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* Send what is buffered, then read one whole reply into c->code and
 * c->text. 0, or -ETIMEDOUT, -ECONNRESET, -EPROTO or another -errno. */
static int
conn_reply(struct sm_conn *c)
{
	long long deadline;
	int code = -1, last = 0, lines = 0, r;

	if ((r = conn_flush(c)) < 0)
		return r;
	deadline = now_ms() + SM_TIMEOUT_MS;
	buf_reset(&c->text);
	for (;;) {
		long n = buf_line(&c->in, SM_REPLY_LINE_MAX);
		if (n < 0)
			return -EPROTO;
		if (n == 0) {
			if ((r = conn_wait(c, POLLIN, deadline)) < 0)
				return r;
			char *p = buf_space(&c->in, 4096);
			if (p == NULL)
				return -EPROTO;
			ssize_t k = recv(c->fd, p, 4096, MSG_DONTWAIT);
			if (k < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (k <= 0)
				return k < 0 ? -errno : -ECONNRESET;
			buf_commit(&c->in, (size_t)k);
			continue;
		}
		size_t len = (size_t)n - 1;
		if (len > 0 && c->in.data[len - 1] == '\r')
			len--;
		int lc = reply_line(c, c->in.data, len, &last);
		buf_consume(&c->in, (size_t)n);
		if (lc < 0 || (code >= 0 && lc != code))
			return -EPROTO;
		code = lc;
		if (last) {
			c->code = code;
			return 0;
		}
		if (++lines > SM_REPLY_LINES_MAX)
			return -EPROTO;
	}
}

static int
conn_cmd(struct sm_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
conn_cmd(struct sm_conn *c, const char *fmt, ...)
{
	va_list ap;
	size_t start = c->out.len;

	va_start(ap, fmt);
	buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	if (c->verbose) {
		char *p = printable(c->out.data + start, c->out.len - start);
		fprintf(stderr, ">>> %s\n", p);
		free(p);
	}
	buf_puts(&c->out, "\r\n");
	return conn_reply(c);
}

/* Message bytes (CRLF lines) to the DATA stream, dot-stuffed (RFC 5321
 * 4.5.2). */
static int
conn_data(void *arg, const char *p, size_t n)
{
	struct sm_conn *c = arg;
	int r;

	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t k = lf != NULL ? (size_t)(lf - p) + 1 : n;

		if (c->bol && *p == '.')
			buf_append(&c->out, ".", 1);
		buf_append(&c->out, p, k);
		c->bol = lf != NULL;
		p += k;
		n -= k;
		if (c->out.len >= SM_IO_CHUNK && (r = conn_flush(c)) < 0)
			return r;
	}
	return 0;
}

static int
conn_open(struct sm_conn *c, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->bol = 1;
	buf_init(&c->in, 64 * 1024);
	buf_init(&c->out, 0);
	buf_init(&c->text, 1024);
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	/* Non-blocking: a blocking connect to a listener whose backlog is
	 * full would wait for as long as smtpd is wedged. */
	long long deadline = now_ms() + SM_TIMEOUT_MS;
	for (;;) {
		c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, 0);
		if (c->fd < 0)
			return -errno;
		if (connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		close(c->fd);
		c->fd = -1;
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		poll(NULL, 0, 100);
	}
}

static void
conn_close(struct sm_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_release(&c->in);
	buf_release(&c->out);
	buf_release(&c->text);
}

/* -- Submission ------------------------------------------------------------ */

struct sm {
	struct sm_opts o;
	struct conf *conf;
	char *host;		/* myhostname */
	char *login;
	char *sender;		/* canonical; "" is the null sender */
	char *from;		/* for an added From: */
	struct sm_list rcpts;
	int utf8;		/* an address needs SMTPUTF8 */
	struct sm_msg msg;
	struct buf added;	/* header fields we add */
	char *socket;
};

/* A dropped, silent or confused smtpd: the caller tries again. */
static int
conn_fail(int r)
{
	if (r == -ETIMEDOUT)
		sm_err("no reply from smtpd in %d s; try again later",
		    SM_TIMEOUT_MS / 1000);
	else if (r == -EPROTO)
		sm_err("malformed reply from smtpd; try again later");
	else if (r == -ECONNRESET || r == -EPIPE)
		sm_err("connection to smtpd lost; try again later");
	else
		sm_err("talking to smtpd: %s; try again later", strerror(-r));
	return EX_TEMPFAIL;
}

/* A reply other than the one expected. */
static int
reply_fail(const struct sm_conn *c, const char *what)
{
	sm_err("%s: %d %s", what, c->code, c->text.data ? c->text.data : "");
	return c->code >= 500 ? EX_UNAVAILABLE : EX_TEMPFAIL;
}

static size_t
msg_size(const struct sm *s)
{
	return s->msg.hdr.len + s->added.len + 2 + s->msg.body.len;
}

/* The message as it goes out: its fields but Bcc, ours, the body. */
static int
send_message(struct sm *s, struct sm_conn *c)
{
	const struct sm_msg *m = &s->msg;
	int r;

	c->bol = 1;
	for (size_t i = 0; i < m->nfields; i++) {
		/* RFC 5322 3.6.3: Bcc is for the envelope only. */
		if (field_is(m, i, "Bcc"))
			continue;
		if ((r = conn_data(c, m->hdr.data + m->fields[i].off,
		    m->fields[i].len)) < 0)
			return r;
	}
	if (s->added.len > 0 && (r = conn_data(c, s->added.data,
	    s->added.len)) < 0)
		return r;
	if ((m->separator || m->body.len > 0) &&
	    (r = conn_data(c, "\r\n", 2)) < 0)
		return r;
	if ((r = spool_replay(&s->msg.body, conn_data, c)) < 0)
		return r;
	if (c->verbose)
		fprintf(stderr, ">>> (message, %zu octets)\n>>> .\n",
		    msg_size(s));
	buf_puts(&c->out, ".\r\n");
	return conn_reply(c);
}

/* MAIL FROM with the parameters the message and options need. */
static int
send_mail(struct sm *s, struct sm_conn *c)
{
	struct buf p;
	int r;

	buf_init(&p, 0);
	if (c->ext_size)
		buf_printf(&p, " SIZE=%zu", msg_size(s));
	if ((s->msg.eightbit || s->o.body8) && c->ext_8bitmime)
		buf_puts(&p, " BODY=8BITMIME");
	if (s->utf8)
		buf_puts(&p, " SMTPUTF8");
	if (s->o.ret != NULL && c->ext_dsn)
		buf_printf(&p, " RET=%s", s->o.ret);
	if (s->o.envid != NULL && c->ext_dsn)
		buf_printf(&p, " ENVID=%s", s->o.envid);
	r = conn_cmd(c, "MAIL FROM:<%s>%s", s->sender, p.data ? p.data : "");
	buf_release(&p);
	return r;
}

/*
 * One transaction for the recipients from *next on. A 452 "too many
 * recipients" after some were accepted ends the batch, and the rest go in
 * the next transaction (RFC 5321 4.5.3.1.10). *refused_r counts 5xx ones.
 */
static int
submit_batch(struct sm *s, struct sm_conn *c, size_t *next, int *refused_r)
{
	size_t accepted = 0;
	int r;

	if ((r = send_mail(s, c)) < 0)
		return conn_fail(r);
	if (c->code != 250)
		return reply_fail(c, "sender refused");
	for (; *next < s->rcpts.n; (*next)++) {
		const char *rcpt = s->rcpts.v[*next];
		if (s->o.notify != NULL && c->ext_dsn)
			r = conn_cmd(c, "RCPT TO:<%s> NOTIFY=%s", rcpt,
			    s->o.notify);
		else
			r = conn_cmd(c, "RCPT TO:<%s>", rcpt);
		if (r < 0)
			return conn_fail(r);
		if (c->code / 100 == 2) {
			accepted++;
		} else if (c->code >= 500) {
			sm_err("<%s>: %d %s", rcpt, c->code,
			    c->text.data ? c->text.data : "");
			(*refused_r)++;
		} else if (c->code == 452 && accepted > 0) {
			break;
		} else {
			/* A temporary refusal of one recipient: send to
			 * nobody, so the retry makes no duplicates. */
			return reply_fail(c, "recipient deferred");
		}
	}
	if (accepted == 0) {
		if ((r = conn_cmd(c, "RSET")) < 0)
			return conn_fail(r);
		return 0;
	}
	if ((r = conn_cmd(c, "DATA")) < 0)
		return conn_fail(r);
	if (c->code != 354)
		return reply_fail(c, "DATA refused");
	if ((r = send_message(s, c)) < 0)
		return conn_fail(r);
	if (c->code / 100 != 2)
		return reply_fail(c, "message refused");
	return 0;
}

static int
submit(struct sm *s)
{
	struct sm_conn c;
	size_t next = 0;
	int r, refused = 0;

	r = conn_open(&c, s->socket);
	c.verbose = s->o.verbose;
	if (r == -ENAMETOOLONG) {
		sm_err("socket path too long: %s", s->socket);
		r = EX_CONFIG;
		goto out;
	}
	if (r < 0) {
		sm_err("cannot connect to %s: %s (is pochta running?); try "
		       "again later", s->socket, strerror(-r));
		r = EX_TEMPFAIL;
		goto out;
	}
	if ((r = conn_reply(&c)) < 0) {
		r = conn_fail(r);
		goto out;
	}
	if (c.code != 220) {
		r = reply_fail(&c, "smtpd refused the connection");
		goto out;
	}
	c.ehlo = 1;
	r = conn_cmd(&c, "EHLO %s", s->host);
	c.ehlo = 0;
	if (r < 0) {
		r = conn_fail(r);
		goto out;
	}
	if (c.code != 250) {
		r = reply_fail(&c, "EHLO refused");
		goto out;
	}
	if (s->utf8 && !c.ext_smtputf8) {
		sm_err("an address needs SMTPUTF8, which smtpd does not offer");
		r = EX_UNAVAILABLE;
		goto out;
	}
	while (next < s->rcpts.n)
		if ((r = submit_batch(s, &c, &next, &refused)) != 0)
			goto out;
	/* Everything is queued: a lost QUIT reply changes nothing. */
	(void)conn_cmd(&c, "QUIT");
	r = refused > 0 ? EX_NOUSER : 0;
out:
	conn_close(&c);
	return r;
}

/* -- Set-up ---------------------------------------------------------------- */

static int
sm_config(struct sm *s)
{
	const char *dir = s->o.confdir ? s->o.confdir : conf_default_dir();
	char *err = NULL, host[256];
	struct passwd *pw;

	if (conf_load(dir, NULL, 0, &s->conf, &err) < 0) {
		sm_err("%s", err ? err : "cannot read the configuration");
		free(err);
		return EX_CONFIG;
	}
	const char *name = conf_str(s->conf, "myhostname");
	if (name[0] == '\0') {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		name = host;
	}
	s->host = xstrdup(name);
	s->socket = xasprintf("%s/public/submit", conf_str(s->conf,
	    "queue_directory"));
	long long line = conf_int(s->conf, "smtpd_max_line_length");
	s->msg.max_line = line > 0 ? (size_t)line : SM_LINE_HARD_MAX;
	s->msg.max_size = (size_t)conf_size(s->conf, "message_size_limit");
	/* The login, not $USER or $LOGNAME: the sender is not for the
	 * environment to choose (smtpd records the uid anyway). */
	if ((pw = getpwuid(getuid())) == NULL) {
		sm_err("no login name for uid %ld", (long)getuid());
		return EX_SOFTWARE;
	}
	s->login = xstrdup(pw->pw_name);
	return 0;
}

/* Sender and command-line recipients; each argument may be a list. */
static int
sm_envelope(struct sm *s, int argc, char **argv)
{
	struct sm_list raw = {NULL, 0};
	int r = 0;

	s->from = addr_check(s->login, s->host, 0, "login name", &s->utf8);
	if (s->from == NULL)
		return EX_SOFTWARE;
	if (s->o.sender != NULL) {
		s->sender = addr_check(s->o.sender, s->host, 1, "-f",
		    &s->utf8);
		if (s->sender == NULL)
			return EX_USAGE;
		if (s->sender[0] != '\0') {
			free(s->from);
			s->from = xstrdup(s->sender);
		}
	} else {
		s->sender = xstrdup(s->from);
	}
	for (int i = 0; i < argc && r == 0; i++) {
		if (alist_parse(argv[i], strlen(argv[i]), &raw) < 0) {
			char *p = printable(argv[i], strlen(argv[i]));
			sm_err("bad recipient '%s'", p);
			free(p);
			r = EX_USAGE;
		}
	}
	for (size_t i = 0; i < raw.n && r == 0; i++) {
		char *a = addr_check(raw.v[i], s->host, 0, "recipient",
		    &s->utf8);
		if (a == NULL)
			r = EX_USAGE;
		else
			list_push(&s->rcpts, a);
	}
	list_clear(&raw);
	return r;
}

/* -t: the recipients of To, Cc and Bcc join those of the command line. */
static int
sm_header_recipients(struct sm *s)
{
	struct sm_list raw = {NULL, 0};
	int r = msg_recipients(&s->msg, &raw);

	for (size_t i = 0; i < raw.n && r == 0; i++) {
		char *a = addr_check(raw.v[i], s->host, 0, "header recipient",
		    &s->utf8);
		if (a == NULL)
			r = EX_DATAERR;
		else
			list_push(&s->rcpts, a);
	}
	list_clear(&raw);
	return r;
}

int
pochta_sendmail_main(int argc, char **argv, const char *confdir)
{
	struct sm s;
	int r;

	memset(&s, 0, sizeof(s));
	s.o.confdir = confdir;
	s.msg.in_header = 1;
	s.msg.body.fd = -1;
	buf_init(&s.msg.hdr, SM_HEADER_MAX);
	buf_init(&s.msg.body.mem, 0);
	buf_init(&s.added, 0);
	if ((r = opts_parse(argc, argv, &s.o)) != 0)
		goto out;
	argc -= optind;
	argv += optind;
	s.msg.dot_ends = !s.o.iflag;
	if ((r = sm_config(&s)) != 0 || (r = sm_envelope(&s, argc, argv)) !=
	    0)
		goto out;
	if (!s.o.tflag && s.rcpts.n == 0) {
		sm_err("no recipients");
		r = sm_usage();
		goto out;
	}
	if ((r = msg_read(&s.msg, STDIN_FILENO)) != 0)
		goto out;
	if (s.o.tflag && (r = sm_header_recipients(&s)) != 0)
		goto out;
	list_uniq(&s.rcpts);
	if (s.rcpts.n == 0) {
		sm_err("no recipients");
		r = EX_USAGE;
		goto out;
	}
	added_fields(&s.msg, &s.added, s.from, s.o.fullname, s.host);
	r = submit(&s);
out:
	msg_release(&s.msg);
	buf_release(&s.added);
	list_clear(&s.rcpts);
	conf_free(&s.conf);
	free(s.host);
	free(s.login);
	free(s.sender);
	free(s.from);
	free(s.socket);
	free(s.o.notify);
	free(s.o.envid);
	return r;
}
