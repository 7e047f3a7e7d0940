/*
 * smtp-source.c - an SMTP load generator (and, with -S, a sink) for
 * benchmarks, in the manner of Postfix's smtp-source and smtp-sink. It
 * speaks RFC 5321 with PIPELINING (RFC 2920), STARTTLS (RFC 3207) and AUTH
 * PLAIN (RFC 4954) to any server. Whatever the server sends, a session ends
 * with a counted error and is replaced; only bad usage makes it exit early.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "base64.h"
#include "buf.h"
#include "log.h"
#include "stream.h"
#include "tls.h"
#include "xalloc.h"

/* RFC 5322 2.1.1: at most 78 characters before the CRLF; we stay below. */
#define LINE_CHARS	76
/* Message text is queued in pieces so a large -s never meets the stream's
 * hard write limit. */
#define WRITE_CHUNK	(64 * 1024)
/* A hostile server must not keep a session in one reply for ever. */
#define MAX_REPLY_LINES	1000
#define MAX_SIZE	(1024L * 1024 * 1024)
#define MAX_SESSIONS	100000
#define MAX_RCPTS	100000

enum cstate {
	C_CONNECT,
	C_GREETING,
	C_EHLO,
	C_HELO,
	C_STARTTLS,
	C_HANDSHAKE,
	C_AUTH,
	C_MAIL,		/* MAIL, RCPT and DATA, pipelined or not */
	C_BODY,
	C_RSET,
	C_QUIT,
	C_DONE,		/* QUIT answered; closing */
	C_IDLE,		/* -i: greeted, holding the connection */
};

static const char *const cstate_names[] = {
	"connect", "greeting", "EHLO", "HELO", "STARTTLS", "TLS handshake",
	"AUTH", "MAIL/RCPT/DATA", "end of data", "RSET", "QUIT", "done",
	"idle",
};

struct session {
	struct stream *s;
	uv_timer_t timer;	/* reply timeout; defers a failed connect */
	unsigned slot;
	unsigned long id;
	enum cstate state;
	int pipelining;		/* EHLO keywords */
	int starttls;
	int failed;		/* an error was counted for this session */
	int stopping;		/* closed by us at shutdown */
	int code;		/* of the reply being read, else 0 */
	unsigned lines;		/* lines of that reply so far */
	unsigned idx;		/* reply index within the MAIL group */
	int mail_ok;
	unsigned rcpt_ok;
	int in_msg;		/* a message started and not finished */
	size_t off;		/* message text queued so far */
	struct buf head;	/* this message's header */
	char *why;		/* why a connect failed at once */
};

struct sink_conn {
	struct stream *s;
	struct sink_conn *prev, *next;
	int data;		/* in DATA */
	int bol;		/* at the beginning of a line */
	int skip;		/* discarding the rest of an over-long line */
};

static struct run {
	/* options */
	unsigned sessions;
	unsigned long messages;
	size_t size;
	unsigned rcpts;
	const char *from;
	const char *to;
	const char *helo;
	int tls;
	char *auth_plain;	/* base64 of the AUTH PLAIN response */
	int quiet;
	int json;
	int sink;
	int idle;
	unsigned timeout_ms;
	const char *target;
	struct sockaddr_storage addr;
	int unix_path;

	uv_loop_t loop;
	uv_signal_t sig_int, sig_term;
	struct tls_ctx *tls_ctx;
	struct session **slots;
	unsigned active;
	unsigned long next_id;
	struct buf body;	/* the shared body text, after each header */
	size_t head_len;
	char date[64];
	int stopping;
	unsigned consecutive_failures;
	unsigned refusals_shown;
	unsigned settled;	/* -i: sessions greeted or failed */

	/* sink */
	union {
		uv_tcp_t tcp;
		uv_pipe_t pipe;
		uv_handle_t handle;
		uv_stream_t stream;
	} listener;
	int listening;
	struct sink_conn *conns;
	unsigned long sink_bytes;

	/* figures */
	uint64_t t_start, t_end;
	unsigned long started, accepted, rejected, lost;
	unsigned long errors, timeouts, connections, greeted;
	unsigned long replies[6];
} run;

static void session_start(unsigned slot);
static void session_next(struct session *ss);
static void session_write_more(struct session *ss);
static void session_end(struct session *ss, int error, const char *reason);

static void
usage(void)
{
	fprintf(stderr,
	    "usage: smtp-source [-qjTi] [-c sessions] [-m messages] "
	    "[-s size]\n"
	    "                   [-r rcpts] [-f from] [-t to] [-H helo] "
	    "[-a user:pass]\n"
	    "                   [-w timeout] host:port | /path/to/socket\n"
	    "       smtp-source -S [-qj] [-m messages] [-w timeout] "
	    "host:port | /path/to/socket\n");
	exit(2);
}

/* A decimal number in [lo, hi], or exit with usage. */
static unsigned long
number(const char *arg, char opt, unsigned long lo, unsigned long hi)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || errno != 0 ||
	    v < lo || v > hi) {
		fprintf(stderr, "smtp-source: -%c: expected a number from %lu "
		    "to %lu, not \"%s\"\n", opt, lo, hi, arg);
		exit(2);
	}
	return v;
}

/*
 * An address (or pattern) goes into a command line and a header as is, so
 * it may hold no space, control character or angle bracket; a pattern may
 * hold one %d and nothing else after a %.
 */
static void
check_address(const char *a, char opt, int pattern)
{
	const char *p;
	int nd = 0;

	if (strlen(a) > 256)
		goto bad;
	for (p = a; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '<' ||
		    *p == '>')
			goto bad;
		if (*p == '%') {
			if (!pattern || p[1] != 'd' || ++nd > 1)
				goto bad;
			p++;
		}
	}
	return;
bad:
	fprintf(stderr, "smtp-source: -%c: bad address \"%s\"\n", opt, a);
	exit(2);
}

/* The recipient address n (1..rcpts) from the -t pattern. */
static void
rcpt_address(struct buf *b, unsigned n)
{
	const char *pct = strstr(run.to, "%d");

	if (pct == NULL) {
		buf_puts(b, run.to);
		return;
	}
	buf_append(b, run.to, (size_t)(pct - run.to));
	buf_printf(b, "%u", n);
	buf_puts(b, pct + 2);
}

static void
parse_auth(const char *arg)
{
	const char *colon = strchr(arg, ':');
	struct buf b;

	if (colon == NULL || colon == arg || strlen(arg) > 1000) {
		fprintf(stderr, "smtp-source: -a: expected user:password\n");
		exit(2);
	}
	/* RFC 4616 2: authzid NUL authcid NUL passwd, authzid empty. */
	buf_init(&b, 0);
	buf_append(&b, "", 1);
	buf_append(&b, arg, (size_t)(colon - arg));
	buf_append(&b, "", 1);
	buf_puts(&b, colon + 1);
	run.auth_plain = base64_encode(b.data, b.len);
	buf_release(&b);
}

/* host:port, [v6]:port or an absolute UNIX socket path. */
static void
parse_target(const char *arg)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)&run.addr;
	struct addrinfo hints, *res;
	char *host, *port;
	int r;

	memset(&run.addr, 0, sizeof(run.addr));
	if (arg[0] == '/') {
		if (strlen(arg) >= sizeof(sun->sun_path))
			goto bad;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, arg, strlen(arg) + 1);
		run.unix_path = 1;
		return;
	}
	host = xstrdup(arg[0] == '[' ? arg + 1 : arg);
	port = strrchr(host, arg[0] == '[' ? ']' : ':');
	if (port == NULL || (arg[0] == '[' && port[1] != ':')) {
		free(host);
		goto bad;
	}
	*port++ = '\0';
	if (*port == ':')
		port++;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (run.sink ? AI_PASSIVE : 0);
	r = getaddrinfo(*host != '\0' ? host : NULL, port, &hints, &res);
	free(host);
	if (r != 0) {
		fprintf(stderr, "smtp-source: %s: %s\n", arg, gai_strerror(r));
		exit(2);
	}
	memcpy(&run.addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return;
bad:
	fprintf(stderr, "smtp-source: %s: expected host:port or a socket "
	    "path\n", arg);
	exit(2);
}

/*
 * The body shared by every message: lines of printable text, never
 * starting with a dot (so no transparency stuffing is needed, RFC 5321
 * 4.5.2), sized so that header and body come to -s bytes.
 */
static void
make_body(void)
{
	static const char chars[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	size_t left, n, i;
	unsigned line = 0;

	buf_init(&run.body, 0);
	left = run.size > run.head_len ? run.size - run.head_len : 0;
	/* A last single byte cannot be a line: the message is one short. */
	while (left >= 2) {
		n = left > LINE_CHARS + 2 ? LINE_CHARS : left - 2;
		/* Rather than leave that byte, make this line one longer. */
		if (left == LINE_CHARS + 3)
			n = LINE_CHARS + 1;
		for (i = 0; i < n; i++)
			buf_append(&run.body,
			    &chars[(i + line) % (sizeof(chars) - 1)], 1);
		buf_append(&run.body, "\r\n", 2);
		left -= n + 2;
		line++;
	}
}

/* This message's header; numbers have a fixed width, so every header
 * has the same length. */
static void
make_head(struct buf *b, unsigned long msgno)
{
	buf_reset(b);
	buf_printf(b, "Date: %s\r\nFrom: <%s>\r\nTo: <", run.date, run.from);
	rcpt_address(b, 1);
	buf_printf(b, ">\r\nSubject: smtp-source test message %010lu\r\n"
	    "Message-ID: <%010lu.%010ld.%010ld@smtp-source.invalid>\r\n\r\n",
	    msgno, msgno, (long)getpid(), (long)time(NULL) % 10000000000L);
}

static void
count_reply(int code)
{
	run.replies[code / 100]++;
}

/*
 * Report and count a session error, then drop the connection without
 * QUIT: the server's state is unknown.
 */
static void
session_fail(struct session *ss, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_fail(struct session *ss, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (ss->failed || ss->stopping)
		return;
	ss->failed = 1;
	run.errors++;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (!run.quiet)
		log_warn("session %lu: %s: %s", ss->id,
		    cstate_names[ss->state], msg);
	free(msg);
	uv_timer_stop(&ss->timer);
	if (ss->s != NULL)
		stream_abort(ss->s);
}

static void
timeout_cb(uv_timer_t *t)
{
	struct session *ss = t->data;

	if (ss->s == NULL) {
		/* A connect that failed at once ends from here, so a
		 * replacement is never started from within its caller. */
		session_fail(ss, "%s", ss->why);
		session_end(ss, 0, ss->why);
		return;
	}
	run.timeouts++;
	if (ss->state == C_BODY && ss->off <= ss->head.len + run.body.len)
		session_fail(ss, "message text not taken within %u ms",
		    run.timeout_ms);
	else
		session_fail(ss, "no reply within %u ms", run.timeout_ms);
}

/* Send a command (or group) and wait for its reply. */
static void
session_send(struct session *ss, enum cstate state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
session_send(struct session *ss, enum cstate state, const char *fmt, ...)
{
	va_list ap;
	struct buf b;
	int r;

	buf_init(&b, 0);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	ss->state = state;
	r = stream_write(ss->s, b.data, b.len);
	buf_release(&b);
	if (r < 0) {
		session_fail(ss, "write: %s", uv_strerror(r));
		return;
	}
	uv_timer_start(&ss->timer, timeout_cb, run.timeout_ms, 0);
}

static void
message_end(struct session *ss, int accepted)
{
	ss->in_msg = 0;
	if (accepted) {
		run.accepted++;
		run.consecutive_failures = 0;
	} else {
		run.rejected++;
	}
}

/*
 * Say why a message was refused, for the first few: a benchmark that
 * measures refusals should not pass unnoticed, nor flood the terminal.
 */
static void
note_refusal(struct session *ss, const char *what, const char *text,
    size_t len)
{
	if (run.quiet || run.refusals_shown > 10)
		return;
	if (run.refusals_shown++ == 10) {
		log_warn("further refusals not shown");
		return;
	}
	log_warn("session %lu: %s refused: %.*s", ss->id, what,
	    (int)(len > 200 ? 200 : len), text);
}

/* MAIL, the RCPTs and DATA: one write with PIPELINING, else MAIL alone. */
static void
send_mail_group(struct session *ss)
{
	struct buf b;
	unsigned i;
	int r;

	buf_init(&b, 0);
	buf_printf(&b, "MAIL FROM:<%s>\r\n", run.from);
	if (ss->pipelining) {
		for (i = 1; i <= run.rcpts; i++) {
			buf_puts(&b, "RCPT TO:<");
			rcpt_address(&b, i);
			buf_puts(&b, ">\r\n");
		}
		buf_puts(&b, "DATA\r\n");
	}
	ss->state = C_MAIL;
	ss->idx = 0;
	ss->mail_ok = 0;
	ss->rcpt_ok = 0;
	r = stream_write(ss->s, b.data, b.len);
	buf_release(&b);
	if (r < 0) {
		session_fail(ss, "write: %s", uv_strerror(r));
		return;
	}
	uv_timer_start(&ss->timer, timeout_cb, run.timeout_ms, 0);
}

/* Without PIPELINING: the command after reply idx of the group. */
static void
send_next_in_group(struct session *ss)
{
	struct buf b;

	if (ss->idx <= run.rcpts) {
		buf_init(&b, 0);
		rcpt_address(&b, ss->idx);
		session_send(ss, C_MAIL, "RCPT TO:<%s>\r\n", b.data);
		buf_release(&b);
	} else {
		session_send(ss, C_MAIL, "DATA\r\n");
	}
}

/* The next message, or QUIT when all have been started. */
static void
session_next(struct session *ss)
{
	if (run.stopping || run.started >= run.messages) {
		session_send(ss, C_QUIT, "QUIT\r\n");
		return;
	}
	run.started++;
	ss->in_msg = 1;
	make_head(&ss->head, run.started);
	send_mail_group(ss);
}

/* After EHLO or HELO: STARTTLS, AUTH, or the first message. */
static void
session_ready(struct session *ss)
{
	if (run.tls && stream_tls(ss->s) == NULL) {
		if (!ss->starttls) {
			session_fail(ss, "the server does not offer STARTTLS");
			return;
		}
		session_send(ss, C_STARTTLS, "STARTTLS\r\n");
		return;
	}
	if (run.auth_plain != NULL) {
		session_send(ss, C_AUTH, "AUTH PLAIN %s\r\n", run.auth_plain);
		return;
	}
	session_next(ss);
}

static void
tls_done(struct stream *s)
{
	struct session *ss = stream_arg(s);

	/* RFC 3207 4.2: forget what EHLO said before TLS; ask again. */
	ss->pipelining = ss->starttls = 0;
	session_send(ss, C_EHLO, "EHLO %s\r\n", run.helo);
}

/* One reply of the MAIL group has arrived. */
static void
reply_group(struct session *ss, int code, const char *text, size_t len)
{
	unsigned idx = ss->idx++;

	if (idx == 0)
		ss->mail_ok = code / 100 == 2;
	else if (idx <= run.rcpts)
		ss->rcpt_ok += code / 100 == 2;
	/* After a refused MAIL the rest of the group is refused too. */
	if (code / 100 != 2 && code != 354 && (idx == 0 || ss->mail_ok))
		note_refusal(ss, idx == 0 ? "MAIL" : idx <= run.rcpts ?
		    "RCPT" : "DATA", text, len);
	if (!ss->pipelining) {
		/* Stop at the first refusal that makes the rest pointless. */
		if ((idx == 0 && !ss->mail_ok) ||
		    (idx == run.rcpts && ss->rcpt_ok == 0)) {
			message_end(ss, 0);
			session_send(ss, C_RSET, "RSET\r\n");
			return;
		}
		if (idx < run.rcpts + 1) {
			send_next_in_group(ss);
			return;
		}
	} else if (idx < run.rcpts + 1) {
		return;
	}
	/* The DATA reply. */
	if (code != 354) {
		message_end(ss, 0);
		session_send(ss, C_RSET, "RSET\r\n");
		return;
	}
	ss->state = C_BODY;
	ss->off = 0;
	if (!ss->mail_ok || ss->rcpt_ok == 0) {
		/* RFC 2920 3.1: a server that says 354 after refusing every
		 * recipient gets an empty message, which it must refuse. */
		ss->off = ss->head.len + run.body.len;
		message_end(ss, 0);
	}
	session_write_more(ss);
}

/* Queue message text while the stream takes it, then the final dot. */
static void
session_write_more(struct session *ss)
{
	size_t total = ss->head.len + run.body.len, n;
	const char *p;
	int r = 0;

	uv_timer_start(&ss->timer, timeout_cb, run.timeout_ms, 0);
	while (ss->off < total && !stream_write_full(ss->s)) {
		if (ss->off < ss->head.len) {
			p = ss->head.data + ss->off;
			n = ss->head.len - ss->off;
		} else {
			p = run.body.data + (ss->off - ss->head.len);
			n = total - ss->off;
		}
		if (n > WRITE_CHUNK)
			n = WRITE_CHUNK;
		if ((r = stream_write(ss->s, p, n)) < 0)
			break;
		ss->off += n;
	}
	if (r == 0 && ss->off == total) {
		r = stream_write(ss->s, ".\r\n", 3);
		ss->off++;
	}
	if (r < 0)
		session_fail(ss, "write: %s", uv_strerror(r));
}

static void
drain_cb(struct stream *s)
{
	struct session *ss = stream_arg(s);

	if (ss->state == C_BODY && ss->off <= ss->head.len + run.body.len)
		session_write_more(ss);
}

/*
 * -i: once every session has been greeted or has failed, say how many
 * are held, so whoever measures the server knows when to look.
 */
static void
idle_settled(void)
{
	if (++run.settled == run.sessions) {
		printf("connected %lu\n", run.greeted);
		fflush(stdout);
	}
}

/* A complete reply, by the state it answers. */
static void
session_reply(struct session *ss, int code, const char *text, size_t len)
{
	int ok = code / 100 == 2;

	uv_timer_stop(&ss->timer);
	switch (ss->state) {
	case C_GREETING:
		if (code != 220)
			goto refused;
		run.greeted++;
		if (run.idle) {
			ss->state = C_IDLE;
			idle_settled();
			return;
		}
		session_send(ss, C_EHLO, "EHLO %s\r\n", run.helo);
		return;
	case C_EHLO:
		if (code / 100 == 5 && stream_tls(ss->s) == NULL) {
			session_send(ss, C_HELO, "HELO %s\r\n", run.helo);
			return;
		}
		/* FALLTHROUGH */
	case C_HELO:
	case C_AUTH:
		if (!ok)
			goto refused;
		if (ss->state == C_AUTH)
			session_next(ss);
		else
			session_ready(ss);
		return;
	case C_STARTTLS:
		if (code != 220)
			goto refused;
		ss->state = C_HANDSHAKE;
		stream_set_timeouts(ss->s, run.timeout_ms, 0);
		if (stream_starttls(ss->s, run.tls_ctx, NULL, tls_done) < 0)
			session_fail(ss, "cannot start TLS");
		return;
	case C_MAIL:
		reply_group(ss, code, text, len);
		return;
	case C_BODY:
		if (ss->off <= ss->head.len + run.body.len)
			goto unexpected;
		if (!ok)
			note_refusal(ss, "message", text, len);
		if (ss->in_msg)
			message_end(ss, ok);
		session_next(ss);
		return;
	case C_RSET:
		session_next(ss);
		return;
	case C_QUIT:
		ss->state = C_DONE;
		stream_close(ss->s);
		return;
	default:
		goto unexpected;
	}
refused:
	session_fail(ss, "refused: %.*s", (int)(len > 200 ? 200 : len), text);
	return;
unexpected:
	session_fail(ss, "unexpected reply: %.*s",
	    (int)(len > 200 ? 200 : len), text);
}

/* An EHLO keyword line ("250-PIPELINING"). */
static void
ehlo_keyword(struct session *ss, const char *kw, size_t len)
{
	if (len >= 10 && strncasecmp(kw, "PIPELINING", 10) == 0 &&
	    (len == 10 || kw[10] == ' '))
		ss->pipelining = 1;
	else if (len >= 8 && strncasecmp(kw, "STARTTLS", 8) == 0 &&
	    (len == 8 || kw[8] == ' '))
		ss->starttls = 1;
}

/*
 * One reply line (RFC 5321 4.2): three digits, then a space, a hyphen
 * (more lines follow) or the end of the line. The lines of one reply
 * must share the code. Returns -1 after failing the session.
 */
static int
reply_line(struct session *ss, const char *line, size_t len)
{
	int code, last;

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (len > 3 && line[3] != ' ' && line[3] != '-')) {
		session_fail(ss, "malformed reply: %.*s",
		    (int)(len > 200 ? 200 : len), line);
		return -1;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + line[2] - '0';
	if (ss->code != 0 && code != ss->code) {
		session_fail(ss, "reply code changed within a reply: %.*s",
		    (int)(len > 200 ? 200 : len), line);
		return -1;
	}
	if (++ss->lines > MAX_REPLY_LINES) {
		session_fail(ss, "reply of more than %d lines",
		    MAX_REPLY_LINES);
		return -1;
	}
	ss->code = code;
	last = len == 3 || line[3] == ' ';
	if (ss->state == C_EHLO && ss->lines > 1 && len > 4)
		ehlo_keyword(ss, line + 4, len - 4);
	if (!last)
		return 0;
	ss->code = 0;
	ss->lines = 0;
	count_reply(code);
	session_reply(ss, code, line, len);
	return 0;
}

static size_t
session_data(struct stream *s, const char *data, size_t len)
{
	struct session *ss = stream_arg(s);
	const char *lf;
	size_t n;

	if (ss->failed || stream_closing(s))
		return len;
	lf = memchr(data, '\n', len);
	if (lf == NULL)
		return 0;
	n = (size_t)(lf - data) + 1;
	if (ss->state == C_IDLE || ss->state == C_HANDSHAKE ||
	    ss->state == C_DONE || ss->state == C_CONNECT) {
		session_fail(ss, "unexpected text: %.*s",
		    (int)(n > 200 ? 200 : n), data);
		return len;
	}
	/* Only the latest EHLO reply counts (RFC 3207 4.2). */
	if (ss->state == C_EHLO && ss->lines == 0)
		ss->pipelining = ss->starttls = 0;
	reply_line(ss, data, n);
	return n;
}

static void
session_connected(struct stream *s)
{
	struct session *ss = stream_arg(s);

	run.connections++;
	ss->state = C_GREETING;
	uv_timer_start(&ss->timer, timeout_cb, run.timeout_ms, 0);
}

static void
session_free_cb(uv_handle_t *h)
{
	struct session *ss = h->data;

	buf_release(&ss->head);
	free(ss->why);
	free(ss);
}

/*
 * The session is over, its connection gone or never made: count, and
 * start a replacement while messages are left.
 */
static void
session_end(struct session *ss, int error, const char *reason)
{
	unsigned slot = ss->slot;
	int replace;

	ss->s = NULL;
	if (ss->state != C_DONE && !ss->stopping && !ss->failed) {
		ss->failed = 1;
		run.errors++;
		if (error == UV_ETIMEDOUT)
			run.timeouts++;
		if (!run.quiet)
			log_warn("session %lu: %s: %s", ss->id,
			    cstate_names[ss->state], reason);
	}
	if (ss->in_msg)
		run.lost++;
	if (run.idle && ss->state != C_IDLE)
		idle_settled();
	if (ss->failed && ++run.consecutive_failures ==
	    run.sessions + 10 && !run.stopping) {
		log_warn("giving up after %u sessions in a row failed",
		    run.consecutive_failures);
		run.stopping = 1;
	}
	replace = ss->failed && !run.stopping && !run.idle &&
	    run.started < run.messages;
	run.slots[slot] = NULL;
	run.active--;
	uv_timer_stop(&ss->timer);
	uv_close((uv_handle_t *)&ss->timer, session_free_cb);
	if (replace)
		session_start(slot);
	if (run.active == 0)
		run.t_end = uv_hrtime();
}

static void
session_closed(struct stream *s, int error, const char *reason)
{
	session_end(stream_arg(s), error, reason);
}

static const struct stream_ops session_ops = {
	.connected = session_connected,
	.data = session_data,
	.drain = drain_cb,
	.close = session_closed,
};

/* Connect to a UNIX socket; local connects finish at once or fail. */
static int
connect_unix(struct session *ss)
{
	int fd, r;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&run.addr,
	    sizeof(struct sockaddr_un)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if ((r = stream_open_fd(&run.loop, fd, &session_ops, ss,
	    &ss->s)) < 0)
		return r;
	session_connected(ss->s);
	return 0;
}

static void
session_start(unsigned slot)
{
	struct session *ss = xcalloc(1, sizeof(*ss));
	int r;

	ss->slot = slot;
	ss->id = ++run.next_id;
	ss->state = C_CONNECT;
	buf_init(&ss->head, 0);
	uv_timer_init(&run.loop, &ss->timer);
	ss->timer.data = ss;
	run.slots[slot] = ss;
	run.active++;
	if (run.unix_path)
		r = connect_unix(ss);
	else
		r = stream_connect(&run.loop, (struct sockaddr *)&run.addr,
		    run.timeout_ms, &session_ops, ss, &ss->s);
	if (r < 0) {
		ss->s = NULL;
		ss->why = xasprintf("connect to %s: %s", run.target,
		    uv_strerror(r));
		/* session_fail from the timer, then this path closes it. */
		uv_timer_start(&ss->timer, timeout_cb, 0, 0);
	}
}

/* -- the sink (-S) ---------------------------------------------------- */

/* Replies are short and the queue empty or nearly so: no failure to
 * handle but a closing stream, which reports itself. */
static void
sink_reply(struct sink_conn *c, const char *text)
{
	(void)stream_write(c->s, text, strlen(text));
}

/* Stop listening; with all, also close the sessions (else each ends with
 * its client's QUIT or the idle timeout). */
static void
sink_stop(int all)
{
	struct sink_conn *c;

	run.stopping = 1;
	if (run.listening) {
		run.listening = 0;
		uv_close(&run.listener.handle, NULL);
		if (run.unix_path)
			unlink(((struct sockaddr_un *)&run.addr)->sun_path);
	}
	for (c = all ? run.conns : NULL; c != NULL; c = c->next)
		if (!stream_closing(c->s))
			stream_close(c->s);
}

/* One command line (RFC 5321 4.1.1): every transaction is accepted. */
static void
sink_command(struct sink_conn *c, const char *line, size_t len)
{
	static const char ehlo[] = "250-smtp-source sink\r\n250-PIPELINING\r\n"
	    "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 0\r\n";
	char verb[5];
	size_t i;

	memset(verb, 0, sizeof(verb));
	for (i = 0; i < 4 && i < len; i++)
		verb[i] = (char)(line[i] >= 'a' && line[i] <= 'z' ?
		    line[i] - 'a' + 'A' : line[i]);
	if (len > 4 && line[4] != ' ' && line[4] != '\r' && line[4] != '\n')
		verb[0] = '\0';
	if (strcmp(verb, "EHLO") == 0)
		sink_reply(c, ehlo);
	else if (strcmp(verb, "HELO") == 0)
		sink_reply(c, "250 smtp-source sink\r\n");
	else if (strcmp(verb, "MAIL") == 0 || strcmp(verb, "RCPT") == 0 ||
	    strcmp(verb, "RSET") == 0 || strcmp(verb, "NOOP") == 0)
		sink_reply(c, "250 2.0.0 Ok\r\n");
	else if (strcmp(verb, "DATA") == 0) {
		sink_reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		c->data = 1;
		c->bol = 1;
	} else if (strcmp(verb, "QUIT") == 0) {
		sink_reply(c, "221 2.0.0 Bye\r\n");
		stream_close(c->s);
	} else
		sink_reply(c, "502 5.5.1 Command not implemented\r\n");
}

/* Message text up to the line holding only a dot (RFC 5321 4.1.1.4). */
static size_t
sink_text(struct sink_conn *c, const char *data, size_t len)
{
	const char *lf = memchr(data, '\n', len);
	size_t n;

	if (lf == NULL) {
		if (len < 4096)
			return 0;
		/* A long line: take it, it is not the end. */
		run.sink_bytes += len;
		c->bol = 0;
		return len;
	}
	n = (size_t)(lf - data) + 1;
	if (c->bol && ((n == 3 && data[0] == '.' && data[1] == '\r') ||
	    (n == 2 && data[0] == '.'))) {
		c->data = 0;
		run.accepted++;
		run.t_end = uv_hrtime();
		sink_reply(c, "250 2.0.0 Ok: queued\r\n");
		if (run.messages > 0 && run.accepted >= run.messages)
			sink_stop(0);
	} else {
		run.sink_bytes += n;
	}
	c->bol = 1;
	return n;
}

static size_t
sink_data(struct stream *s, const char *data, size_t len)
{
	struct sink_conn *c = stream_arg(s);
	const char *lf;

	if (c->data)
		return sink_text(c, data, len);
	lf = memchr(data, '\n', len);
	if (c->skip) {
		if (lf == NULL)
			return len;
		c->skip = 0;
		return (size_t)(lf - data) + 1;
	}
	if (lf == NULL) {
		/* RFC 5321 4.5.3.1.4: 512 octets is the command limit. */
		if (len < 2048)
			return 0;
		sink_reply(c, "500 5.5.2 Line too long\r\n");
		c->skip = 1;
		return len;
	}
	sink_command(c, data, (size_t)(lf - data) + 1);
	return (size_t)(lf - data) + 1;
}

static void
sink_closed(struct stream *s, int error, const char *reason)
{
	struct sink_conn *c = stream_arg(s);

	if (error != 0 && error != UV_EOF) {
		run.errors++;
		if (error == UV_ETIMEDOUT)
			run.timeouts++;
		if (!run.quiet)
			log_warn("client %s: %s", stream_peer_addr(s), reason);
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		run.conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
}

static const struct stream_ops sink_ops = {
	.data = sink_data,
	.close = sink_closed,
};

static void
sink_accept(uv_stream_t *listener, int status)
{
	struct sink_conn *c;
	struct stream *s;

	if (status < 0 || run.stopping)
		return;
	c = xcalloc(1, sizeof(*c));
	if (stream_accept(listener, &sink_ops, c, &s) < 0) {
		free(c);
		return;
	}
	c->s = s;
	c->next = run.conns;
	if (run.conns != NULL)
		run.conns->prev = c;
	run.conns = c;
	if (run.connections++ == 0)
		run.t_start = uv_hrtime();
	stream_set_idle_timeout(s, run.timeout_ms, NULL);
	sink_reply(c, "220 smtp-source sink ESMTP\r\n");
}

static void
sink_listen(void)
{
	int r;

	if (run.unix_path) {
		uv_pipe_init(&run.loop, &run.listener.pipe, 0);
		r = uv_pipe_bind(&run.listener.pipe,
		    ((struct sockaddr_un *)&run.addr)->sun_path);
	} else {
		uv_tcp_init(&run.loop, &run.listener.tcp);
		r = uv_tcp_bind(&run.listener.tcp,
		    (struct sockaddr *)&run.addr, 0);
	}
	if (r == 0)
		r = uv_listen(&run.listener.stream, SOMAXCONN, sink_accept);
	if (r < 0) {
		fprintf(stderr, "smtp-source: listen on %s: %s\n", run.target,
		    uv_strerror(r));
		exit(1);
	}
	run.listening = 1;
	if (!run.quiet) {
		printf("listening on %s\n", run.target);
		fflush(stdout);
	}
}

/* -- start, stop and the figures -------------------------------------- */

static void
signal_cb(uv_signal_t *h, int signum)
{
	struct session *ss;
	unsigned i;

	(void)h;
	(void)signum;
	if (run.sink) {
		sink_stop(1);
		return;
	}
	run.stopping = 1;
	for (i = 0; i < run.sessions; i++) {
		if ((ss = run.slots[i]) == NULL || ss->s == NULL)
			continue;
		ss->stopping = 1;
		uv_timer_stop(&ss->timer);
		stream_abort(ss->s);
	}
}

static double
elapsed(void)
{
	if (run.t_end <= run.t_start)
		return 0;
	return (double)(run.t_end - run.t_start) / 1e9;
}

static void
report_json(void)
{
	double secs = elapsed();
	double rate = secs > 0 ? (double)run.accepted / secs : 0;

	if (run.sink) {
		printf("{\"mode\": \"sink\", \"connections\": %lu, "
		    "\"messages\": %lu, \"bytes\": %lu, \"errors\": %lu, "
		    "\"elapsed\": %.3f, \"msgs_per_sec\": %.1f}\n",
		    run.connections, run.accepted, run.sink_bytes, run.errors,
		    secs, rate);
		return;
	}
	printf("{\"mode\": \"%s\", \"transport\": \"%s\", \"sessions\": %u, "
	    "\"messages\": %lu, \"size\": %zu, \"rcpts\": %u, "
	    "\"tls\": %s, \"elapsed\": %.3f, \"msgs_per_sec\": %.1f, "
	    "\"sent\": %lu, \"accepted\": %lu, \"rejected\": %lu, "
	    "\"lost\": %lu, \"errors\": %lu, \"timeouts\": %lu, "
	    "\"connections\": %lu, \"greeted\": %lu, \"replies\": "
	    "{\"2xx\": %lu, \"3xx\": %lu, \"4xx\": %lu, \"5xx\": %lu}}\n",
	    run.idle ? "idle" : "source", run.unix_path ? "unix" : "tcp",
	    run.sessions, run.messages, run.head_len + run.body.len,
	    run.rcpts, run.tls ? "true" : "false", secs, rate, run.started,
	    run.accepted, run.rejected, run.lost, run.errors, run.timeouts,
	    run.connections, run.greeted, run.replies[2], run.replies[3],
	    run.replies[4], run.replies[5]);
}

static void
report(void)
{
	double secs = elapsed();
	double rate = secs > 0 ? (double)run.accepted / secs : 0;

	if (run.json) {
		report_json();
		return;
	}
	if (run.sink) {
		printf("connections %lu, messages %lu, bytes %lu, errors %lu\n"
		    "elapsed %.3f s, %.1f messages/s\n", run.connections,
		    run.accepted, run.sink_bytes, run.errors, secs, rate);
		return;
	}
	if (run.idle) {
		printf("idle sessions %u, greeted %lu, errors %lu, "
		    "connections %lu\n", run.sessions, run.greeted,
		    run.errors, run.connections);
		return;
	}
	printf("sessions %u, messages %lu of %zu bytes, %u recipient(s)%s\n"
	    "elapsed %.3f s, %.1f messages/s\n"
	    "sent %lu, accepted %lu, rejected %lu, lost %lu\n"
	    "errors %lu (timeouts %lu), connections %lu\n"
	    "replies 2xx %lu, 3xx %lu, 4xx %lu, 5xx %lu\n",
	    run.sessions, run.messages, run.head_len + run.body.len,
	    run.rcpts, run.tls ? ", STARTTLS" : "", secs, rate, run.started,
	    run.accepted, run.rejected, run.lost, run.errors, run.timeouts,
	    run.connections, run.replies[2], run.replies[3], run.replies[4],
	    run.replies[5]);
}

/* Many sessions need many descriptors: take what the hard limit allows. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
parse_options(int argc, char **argv)
{
	int ch, mset = 0;

	run.sessions = 1;
	run.messages = 1;
	run.size = 1024;
	run.rcpts = 1;
	run.from = "smtp-source@example.test";
	run.to = "postmaster@example.test";
	run.helo = "localhost";
	run.timeout_ms = 60 * 1000;
	while ((ch = getopt(argc, argv, "a:c:f:H:ijm:qr:Ss:Tt:w:")) != -1) {
		switch (ch) {
		case 'a':
			parse_auth(optarg);
			break;
		case 'c':
			run.sessions = number(optarg, ch, 1, MAX_SESSIONS);
			break;
		case 'f':
			check_address(optarg, ch, 0);
			run.from = optarg;
			break;
		case 'H':
			check_address(optarg, ch, 0);
			run.helo = optarg;
			break;
		case 'i':
			run.idle = 1;
			break;
		case 'j':
			run.json = 1;
			break;
		case 'm':
			run.messages = number(optarg, ch, 0, ULONG_MAX / 2);
			mset = 1;
			break;
		case 'q':
			run.quiet = 1;
			break;
		case 'r':
			run.rcpts = number(optarg, ch, 1, MAX_RCPTS);
			break;
		case 'S':
			run.sink = 1;
			break;
		case 's':
			run.size = number(optarg, ch, 0, MAX_SIZE);
			break;
		case 'T':
			run.tls = 1;
			break;
		case 't':
			check_address(optarg, ch, 1);
			run.to = optarg;
			break;
		case 'w':
			run.timeout_ms = 1000 *
			    number(optarg, ch, 1, 24 * 3600);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 1 || (run.sink && (run.idle || run.tls)))
		usage();
	/* The sink runs until a signal unless told a message count. */
	if (run.sink && !mset)
		run.messages = 0;
	run.target = argv[optind];
	parse_target(run.target);
}

static void
setup_source(void)
{
	struct tm tm;
	time_t now = time(NULL);
	struct buf b;
	char *err;
	unsigned i;

	if (run.tls && tls_ctx_client_new(TLS_VERIFY_NONE, NULL,
	    &run.tls_ctx, &err) < 0) {
		fprintf(stderr, "smtp-source: TLS: %s\n", err);
		free(err);
		exit(1);
	}
	/* RFC 5322 3.3 date-time, in the C locale. */
	localtime_r(&now, &tm);
	strftime(run.date, sizeof(run.date), "%a, %d %b %Y %H:%M:%S %z",
	    &tm);
	buf_init(&b, 0);
	make_head(&b, 0);
	run.head_len = b.len;
	buf_release(&b);
	make_body();
	run.slots = xcalloc(run.sessions, sizeof(*run.slots));
	run.t_start = uv_hrtime();
	for (i = 0; i < run.sessions; i++)
		session_start(i);
}

int
main(int argc, char **argv)
{
	int ok;

	log_set_program("smtp-source");
	parse_options(argc, argv);
	/* A server that hangs up makes a write fail, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (uv_loop_init(&run.loop) < 0)
		fatal("cannot create the event loop");
	uv_signal_init(&run.loop, &run.sig_int);
	uv_signal_init(&run.loop, &run.sig_term);
	uv_signal_start(&run.sig_int, signal_cb, SIGINT);
	uv_signal_start(&run.sig_term, signal_cb, SIGTERM);
	/* The loop ends when the work does, not when the signals would. */
	uv_unref((uv_handle_t *)&run.sig_int);
	uv_unref((uv_handle_t *)&run.sig_term);
	if (run.sink)
		sink_listen();
	else
		setup_source();
	uv_run(&run.loop, UV_RUN_DEFAULT);
	report();
	uv_close((uv_handle_t *)&run.sig_int, NULL);
	uv_close((uv_handle_t *)&run.sig_term, NULL);
	uv_run(&run.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&run.loop) < 0)
		panic("handles left open at exit");
	/* A client the sink timed out is reported, not the sink's failure. */
	if (run.sink)
		ok = 1;
	else if (run.idle)
		ok = run.greeted == run.sessions;
	else
		ok = run.errors == 0 && run.accepted == run.messages;
	free(run.slots);
	free(run.auth_plain);
	buf_release(&run.body);
	tls_ctx_free(&run.tls_ctx);
	return ok ? 0 : 1;
}
