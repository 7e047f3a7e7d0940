/*
 * pochta_sendmail.c - `sendmail`, local submission for scripts and cron: the
 * options, then the message from standard input (pochta_sendmail_msg.c),
 * read and checked whole, goes to smtpd on public/submit over ESMTP (RFC
 * 5321, 6152, 6531, 3461). Errors: one line on stderr, a sysexits(3)
 * status; 75 is "retry".
 */
#include <sys/socket.h>
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

#include "buf.h"
#include "conf.h"
#include "pochta.h"
#include "pochta_sendmail.h"
#include "xalloc.h"

#define SM_USAGE \
	"usage: sendmail [-itv] [-B type] [-C dir] [-F name] [-f sender]\n" \
	"                [-N dsn] [-R ret] [-V envid] [-o option]\n" \
	"                [recipient ...] < message\n"

/* Replies are waited for this long; a silent smtpd is a temporary error. */
#define SM_TIMEOUT_MS (60 * 1000)
/* Used when smtpd_max_line_length is 0 (no limit in smtpd). */
#define SM_LINE_HARD_MAX ((size_t)1 << 20)
#define SM_REPLY_LINE_MAX 2048
#define SM_REPLY_LINES_MAX 100
/* RFC 3461 4.4: ENVID is at most 100 characters. */
#define SM_ENVID_MAX 100
/* A -F name longer than this would not fit a header line (RFC 5322 2.1.1)
 * once encoded. */
#define SM_NAME_MAX 256

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
	int list_queue;		/* -bp: what mailq(1) prints */
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

void
pochta_sendmail_err(const char *fmt, ...)
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

void
pochta_sendmail_list_push(struct sm_list *l, char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = s;
}

void
pochta_sendmail_list_clear(struct sm_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int
has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 32 || *s == 0x7f)
			return 1;
	return 0;
}

char *
pochta_sendmail_printable(const char *s, size_t n)
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
				pochta_sendmail_err(
				    "-B: '%s' is not 7BIT or 8BITMIME", optarg);
				return sm_usage();
			}
			break;
		case 'b':
			if (strcmp(optarg, "p") == 0)
				o->list_queue = 1;
			else if (strcmp(optarg, "m") != 0) {
				pochta_sendmail_err(
				    "-b%s: mode not supported", optarg);
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
				pochta_sendmail_err(
				    "-F: the name must be at most %d "
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
				pochta_sendmail_err(
				    "-N: '%s' is not never or a list of "
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
				pochta_sendmail_err(
				    "-R: '%s' is not full or hdrs", optarg);
				return sm_usage();
			}
			break;
		case 't':
			o->tflag = 1;
			break;
		case 'V':
			if (strlen(optarg) > SM_ENVID_MAX || *optarg == '\0' ||
			    has_ctl(optarg)) {
				pochta_sendmail_err(
				    "-V: envelope ID must be 1 to %d "
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
				pochta_sendmail_err(
				    "option -%c needs an argument", optopt);
			else if (optopt != 0)
				pochta_sendmail_err(
				    "unknown option -%c", optopt);
			else
				pochta_sendmail_err(
				    "unknown option %s", argv[optind - 1]);
			return sm_usage();
		}
	}
	return 0;
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
	char *p =
	    pochta_sendmail_printable(n > 4 ? s + 4 : "", n > 4 ? n - 4 : 0);
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
		char *p = pochta_sendmail_printable(
		    c->out.data + start, c->out.len - start);
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
		pochta_sendmail_err(
		    "no reply from smtpd in %d s; try again later",
		    SM_TIMEOUT_MS / 1000);
	else if (r == -EPROTO)
		pochta_sendmail_err(
		    "malformed reply from smtpd; try again later");
	else if (r == -ECONNRESET || r == -EPIPE)
		pochta_sendmail_err(
		    "connection to smtpd lost; try again later");
	else
		pochta_sendmail_err(
		    "talking to smtpd: %s; try again later", strerror(-r));
	return EX_TEMPFAIL;
}

/* A reply other than the one expected. */
static int
reply_fail(const struct sm_conn *c, const char *what)
{
	pochta_sendmail_err(
	    "%s: %d %s", what, c->code, c->text.data ? c->text.data : "");
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
		if (pochta_sendmail_msg_field_is(m, i, "Bcc"))
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
	if ((r = pochta_sendmail_msg_spool_replay(&s->msg.body, conn_data,
	    c)) < 0)
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
			pochta_sendmail_err("<%s>: %d %s", rcpt, c->code,
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
		pochta_sendmail_err("socket path too long: %s", s->socket);
		r = EX_CONFIG;
		goto out;
	}
	if (r < 0) {
		pochta_sendmail_err(
		    "cannot connect to %s: %s (is pochta running?); try "
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
		pochta_sendmail_err(
		    "an address needs SMTPUTF8, which smtpd does not offer");
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
		pochta_sendmail_err(
		    "%s", err ? err : "cannot read the configuration");
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
		pochta_sendmail_err(
		    "no login name for uid %ld", (long)getuid());
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

	s->from = pochta_sendmail_msg_addr_check(
	    s->login, s->host, 0, "login name", &s->utf8);
	if (s->from == NULL)
		return EX_SOFTWARE;
	if (s->o.sender != NULL) {
		s->sender = pochta_sendmail_msg_addr_check(
		    s->o.sender, s->host, 1, "-f", &s->utf8);
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
		if (pochta_sendmail_msg_alist_parse(argv[i], strlen(argv[i]),
		    &raw) < 0) {
			char *p =
			    pochta_sendmail_printable(argv[i], strlen(argv[i]));
			pochta_sendmail_err("bad recipient '%s'", p);
			free(p);
			r = EX_USAGE;
		}
	}
	for (size_t i = 0; i < raw.n && r == 0; i++) {
		char *a = pochta_sendmail_msg_addr_check(
		    raw.v[i], s->host, 0, "recipient", &s->utf8);
		if (a == NULL)
			r = EX_USAGE;
		else
			pochta_sendmail_list_push(&s->rcpts, a);
	}
	pochta_sendmail_list_clear(&raw);
	return r;
}

/* -t: the recipients of To, Cc and Bcc join those of the command line. */
static int
sm_header_recipients(struct sm *s)
{
	struct sm_list raw = {NULL, 0};
	int r = pochta_sendmail_msg_recipients(&s->msg, &raw);

	for (size_t i = 0; i < raw.n && r == 0; i++) {
		char *a = pochta_sendmail_msg_addr_check(
		    raw.v[i], s->host, 0, "header recipient", &s->utf8);
		if (a == NULL)
			r = EX_DATAERR;
		else
			pochta_sendmail_list_push(&s->rcpts, a);
	}
	pochta_sendmail_list_clear(&raw);
	return r;
}

int
pochta_sendmail_main(int argc, char **argv, const char *confdir)
{
	struct sm s;
	int r;

	memset(&s, 0, sizeof(s));
	s.o.confdir = confdir;
	pochta_sendmail_msg_init(&s.msg);
	buf_init(&s.added, 0);
	if ((r = opts_parse(argc, argv, &s.o)) != 0)
		goto out;
	if (s.o.list_queue) {
		/* sendmail -bp is mailq. */
		char *qargv[] = {"mailq", "-C", (char *)s.o.confdir, NULL};
		optind = 0;
		r = pochta_queue_main(s.o.confdir ? 3 : 1, qargv, NULL);
		goto out;
	}
	argc -= optind;
	argv += optind;
	s.msg.dot_ends = !s.o.iflag;
	if ((r = sm_config(&s)) != 0 || (r = sm_envelope(&s, argc, argv)) !=
	    0)
		goto out;
	if (!s.o.tflag && s.rcpts.n == 0) {
		pochta_sendmail_err("no recipients");
		r = sm_usage();
		goto out;
	}
	if ((r = pochta_sendmail_msg_read(&s.msg, STDIN_FILENO)) != 0)
		goto out;
	if (s.o.tflag && (r = sm_header_recipients(&s)) != 0)
		goto out;
	pochta_sendmail_msg_list_uniq(&s.rcpts);
	if (s.rcpts.n == 0) {
		pochta_sendmail_err("no recipients");
		r = EX_USAGE;
		goto out;
	}
	pochta_sendmail_msg_added_fields(
	    &s.msg, &s.added, s.from, s.o.fullname, s.host);
	r = submit(&s);
out:
	pochta_sendmail_msg_release(&s.msg);
	buf_release(&s.added);
	pochta_sendmail_list_clear(&s.rcpts);
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
