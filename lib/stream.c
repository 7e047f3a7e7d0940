/*
 * stream.c - connections over libuv streams with optional TLS (stream.h).
 * Input lives in one bounded buffer the protocol consumes from; output is a
 * queue of libuv write requests with a high-water mark that stops reading
 * and a hard limit that refuses writes. STARTTLS empties the input buffer
 * (RFC 3207 4.2, CVE-2011-0411). Peer errors close the stream with a reason.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "stream.h"
#include "xalloc.h"

/* Most bytes taken from the socket in one read. */
#define READ_CHUNK	(64 * 1024)
/* Input buffer kept allocated while nothing is buffered. */
#define IDLE_KEEP	(4 * 1024)

enum closing {
	ST_OPEN,
	ST_GRACEFUL,	/* flushing, then shutdown */
	ST_CLOSED,	/* handles are closing */
};

enum timer_use {
	TIMER_NONE,
	TIMER_CONNECT,
	TIMER_HANDSHAKE,
	TIMER_CLOSE,
};

struct stream {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} io;
	uv_timer_t timer;	/* connect, handshake or close deadline */
	uv_timer_t idle;
	uv_idle_t kick;		/* offers buffered input after a resume */
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	int handles;		/* initialized handles not yet closed */

	const struct stream_ops *ops;
	void *arg;

	struct buf in;		/* plaintext not yet used by the protocol */
	struct buf held;	/* plaintext written during the handshake */
	size_t wq;		/* bytes in write requests not completed */
	size_t write_high;
	size_t write_limit;

	unsigned handshake_ms;
	unsigned close_ms;
	unsigned idle_ms;
	void (*idle_cb)(struct stream *);
	enum timer_use timer_use;

	struct tls *tls;
	void (*tls_done)(struct stream *);
	unsigned gen;		/* bumped by stream_starttls */

	enum closing closing;
	int connecting;
	int reading;
	int user_paused;
	int wq_paused;
	int shut;		/* uv_shutdown issued */
	int tls_eof;		/* close_notify received */
	int silent;		/* creation failed: no close callback */

	int error;
	char *reason;

	char peer[INET6_ADDRSTRLEN];
	char local[INET6_ADDRSTRLEN];
	int peer_port;
	int local_port;
	int loopback;
};

struct wreq {
	uv_write_t req;
	struct stream *s;
	size_t len;
	char data[];
};

static void begin_close(struct stream *s);
static void close_handles(struct stream *s);
static void process_input(struct stream *s);
static void tls_progress(struct stream *s);

/* Remember why the stream ends; the first reason wins. */
static void
set_reason(struct stream *s, int error, const char *fmt, ...)
{
	va_list ap;

	if (s->reason != NULL)
		return;
	s->error = error;
	va_start(ap, fmt);
	s->reason = xvasprintf(fmt, ap);
	va_end(ap);
}

/* Fail: record the reason and cut the connection now. */
static void
fail(struct stream *s, int error, const char *fmt, const char *arg)
{
	set_reason(s, error, fmt, arg);
	close_handles(s);
}

static void
handle_closed(uv_handle_t *h)
{
	struct stream *s = h->data;

	if (--s->handles > 0)
		return;
	if (!s->silent)
		s->ops->close(s, s->error, s->reason != NULL ? s->reason :
		    "closed");
	tls_free(&s->tls);
	buf_release(&s->in);
	buf_release(&s->held);
	free(s->reason);
	free(s);
}

static void
close_handles(struct stream *s)
{
	if (s->closing == ST_CLOSED)
		return;
	s->closing = ST_CLOSED;
	s->reading = 0;
	uv_close((uv_handle_t *)&s->timer, handle_closed);
	uv_close((uv_handle_t *)&s->idle, handle_closed);
	uv_close((uv_handle_t *)&s->kick, handle_closed);
	/* Cancels pending writes, shutdown and connect: their callbacks
	 * run (with UV_ECANCELED) before handle_closed. */
	uv_close(&s->io.handle, handle_closed);
}

static void
timer_fired(uv_timer_t *t)
{
	struct stream *s = t->data;

	switch (s->timer_use) {
	case TIMER_CONNECT:
		set_reason(s, UV_ETIMEDOUT, "connect to %s port %d: timed out",
		    s->peer, s->peer_port);
		break;
	case TIMER_HANDSHAKE:
		set_reason(s, UV_ETIMEDOUT, "TLS handshake timed out");
		break;
	case TIMER_CLOSE:
		log_debug("stream %s port %d: peer did not take the last "
		    "output, cut off", s->peer, s->peer_port);
		break;
	case TIMER_NONE:
		return;
	}
	s->timer_use = TIMER_NONE;
	close_handles(s);
}

static void
timer_start(struct stream *s, enum timer_use use, unsigned ms)
{
	uv_timer_stop(&s->timer);
	s->timer_use = TIMER_NONE;
	if (ms == 0 || s->closing == ST_CLOSED)
		return;
	s->timer_use = use;
	uv_timer_start(&s->timer, timer_fired, ms, 0);
}

static void
idle_fired(uv_timer_t *t)
{
	struct stream *s = t->data;

	if (s->closing != ST_OPEN)
		return;
	if (s->idle_cb != NULL) {
		s->idle_cb(s);
		return;
	}
	set_reason(s, UV_ETIMEDOUT, "idle timeout");
	begin_close(s);
}

/* Something happened on the connection: the idle clock starts again. */
static void
idle_restart(struct stream *s)
{
	if (s->idle_ms > 0 && s->closing == ST_OPEN)
		uv_timer_start(&s->idle, idle_fired, s->idle_ms, 0);
}

static int
handshaking(const struct stream *s)
{
	return s->tls != NULL && !tls_handshake_done(s->tls);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/*
 * Read when the protocol wants input (or a handshake needs it) and the peer
 * is taking our output; pausing reading is how back-pressure reaches it.
 */
static void
update_reading(struct stream *s)
{
	int want = s->closing == ST_OPEN && !s->connecting && !s->wq_paused &&
	    !s->tls_eof && (!s->user_paused || handshaking(s));
	int r;

	if (want == s->reading)
		return;
	if (want) {
		r = uv_read_start(&s->io.stream, alloc_cb, read_cb);
		if (r < 0) {
			fail(s, r, "cannot read: %s", uv_strerror(r));
			return;
		}
	} else {
		uv_read_stop(&s->io.stream);
	}
	s->reading = want;
}

static void
write_done(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct stream *s = w->s;

	s->wq -= w->len;
	free(w);
	if (s->closing == ST_CLOSED)
		return;
	if (status < 0) {
		fail(s, status, "write error: %s", uv_strerror(status));
		return;
	}
	idle_restart(s);
	if (s->wq_paused && s->wq < s->write_high / 2) {
		s->wq_paused = 0;
		update_reading(s);
		if (s->ops->drain != NULL && s->closing == ST_OPEN)
			s->ops->drain(s);
	}
	if (s->closing == ST_GRACEFUL && s->wq == 0)
		begin_close(s);
}

/* Hand a filled request to libuv; it is ours until write_done. */
static int
queue_write(struct stream *s, struct wreq *w)
{
	uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
	int r;

	w->s = s;
	r = uv_write(&w->req, &s->io.stream, &b, 1, write_done);
	if (r < 0) {
		free(w);
		fail(s, r, "write error: %s", uv_strerror(r));
		return r;
	}
	s->wq += w->len;
	if (!s->wq_paused && s->wq > s->write_high) {
		s->wq_paused = 1;
		update_reading(s);
	}
	return 0;
}

static struct wreq *
wreq_new(size_t len)
{
	struct wreq *w = xmalloc(sizeof(*w) + len);

	w->len = len;
	return w;
}

/* Send the ciphertext the engine has produced. */
static int
flush_tls(struct stream *s)
{
	size_t n = tls_out_pending(s->tls);
	struct wreq *w;

	if (n == 0 || s->closing == ST_CLOSED)
		return 0;
	w = wreq_new(n);
	w->len = tls_out_take(s->tls, w->data, n);
	return queue_write(s, w);
}

static void
alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct stream *s = h->data;
	size_t room;

	(void)hint;
	if (s->tls != NULL) {
		b->base = xmalloc(READ_CHUNK);
		b->len = READ_CHUNK;
		return;
	}
	/* Plaintext goes straight into the input buffer. */
	room = s->in.limit > s->in.len ? s->in.limit - s->in.len : 0;
	if (room > READ_CHUNK)
		room = READ_CHUNK;
	b->base = room > 0 ? buf_space(&s->in, room) : NULL;
	b->len = b->base != NULL ? room : 0;
}

static void
read_eof(struct stream *s)
{
	if (handshaking(s))
		set_reason(s, UV_EOF, "connection closed during TLS handshake");
	else
		set_reason(s, UV_EOF, "connection closed by peer");
	/* Input not used by now is an incomplete command: dropped. */
	begin_close(s);
}

static void
read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct stream *s = st->data;
	int tls = s->tls != NULL;
	int r;

	if (nread > 0) {
		idle_restart(s);
		if (!tls) {
			buf_commit(&s->in, (size_t)nread);
			process_input(s);
			return;
		}
		r = tls_feed(s->tls, b->base, (size_t)nread);
		free(b->base);
		if (r < 0)
			fail(s, r, "%s", "out of memory for TLS input");
		else
			tls_progress(s);
		return;
	}
	if (tls)
		free(b->base);
	if (nread == 0 || s->closing == ST_CLOSED)
		return;
	if (nread == UV_EOF)
		read_eof(s);
	else if (nread == UV_ENOBUFS)
		fail(s, -ENOBUFS, "%s", "input buffer full");
	else
		fail(s, (int)nread, "read error: %s", uv_strerror((int)nread));
}

/* The handshake completed: release held writes, tell the protocol. */
static void
handshake_done(struct stream *s)
{
	int r;

	timer_start(s, TIMER_NONE, 0);
	if (s->held.len > 0) {
		r = tls_write(s->tls, s->held.data, s->held.len);
		buf_release(&s->held);
		if (r < 0) {
			fail(s, r, "%s", tls_error(s->tls));
			return;
		}
		if (flush_tls(s) < 0)
			return;
	}
	update_reading(s);
	if (s->tls_done != NULL)
		s->tls_done(s);
}

static void
tls_progress(struct stream *s)
{
	int r;

	if (handshaking(s)) {
		r = tls_handshake(s->tls);
		/* Send our flight, or the alert that explains a failure. */
		if (flush_tls(s) < 0)
			return;
		if (r == -EAGAIN)
			return;
		if (r < 0) {
			set_reason(s, -EPROTO, "%s", tls_error(s->tls));
			begin_close(s);
			return;
		}
		handshake_done(s);
		if (s->closing != ST_OPEN)
			return;
	}
	process_input(s);
}

/*
 * Move decrypted input into the buffer, up to its limit. Returns 0, or -1
 * when the stream failed.
 */
static int
pull_tls(struct stream *s)
{
	while (!s->tls_eof && s->in.len < s->in.limit) {
		size_t room = s->in.limit - s->in.len;
		char *p = buf_space(&s->in, room);
		long n;

		if (p == NULL)
			break;
		n = tls_read(s->tls, p, room);
		if (n > 0) {
			buf_commit(&s->in, (size_t)n);
		} else if (n == 0) {
			s->tls_eof = 1;
		} else if (n == -EAGAIN) {
			break;
		} else {
			flush_tls(s);
			set_reason(s, -EPROTO, "%s", tls_error(s->tls));
			begin_close(s);
			return -1;
		}
	}
	/* Reading may answer the peer (a TLS 1.3 KeyUpdate). */
	return flush_tls(s) < 0 ? -1 : 0;
}

/* Offer buffered input to the protocol while it takes some. */
static void
process_input(struct stream *s)
{
	unsigned gen;
	size_t n;

	for (;;) {
		if (s->closing != ST_OPEN || s->user_paused || handshaking(s))
			return;
		if (s->tls != NULL && pull_tls(s) < 0)
			return;
		if (s->in.len == 0)
			break;
		gen = s->gen;
		n = s->ops->data(s, s->in.data, s->in.len);
		/* After STARTTLS nothing read before it may be used. */
		if (s->gen != gen || s->closing != ST_OPEN)
			return;
		if (n > s->in.len)
			panic("stream: protocol used %zu of %zu bytes", n,
			    s->in.len);
		if (n == 0) {
			if (s->in.len >= s->in.limit) {
				fail(s, -ENOBUFS, "%s", "input line too long");
				return;
			}
			break;
		}
		buf_consume(&s->in, n);
	}
	/* Thousands of idle IMAP sessions should not keep 64 KiB each. */
	if (s->in.len == 0 && s->in.cap > IDLE_KEEP)
		buf_release(&s->in);
	if (s->tls_eof) {
		update_reading(s);
		read_eof(s);
	}
}

static void
kick_cb(uv_idle_t *h)
{
	struct stream *s = h->data;

	uv_idle_stop(h);
	process_input(s);
}

/* Shut down the write side once the output is out, then close. */
static void
shutdown_done(uv_shutdown_t *req, int status)
{
	struct stream *s = req->data;

	(void)status;
	close_handles(s);
}

static void
begin_close(struct stream *s)
{
	int r;

	if (s->closing == ST_CLOSED)
		return;
	if (s->connecting) {
		close_handles(s);
		return;
	}
	if (s->closing == ST_OPEN) {
		s->closing = ST_GRACEFUL;
		uv_timer_stop(&s->idle);
		uv_idle_stop(&s->kick);
		update_reading(s);
		/* close_notify, unless the session already failed. */
		if (s->tls != NULL && tls_shutdown(s->tls) == 0 &&
		    flush_tls(s) < 0)
			return;
		timer_start(s, TIMER_CLOSE, s->close_ms);
	}
	if (s->wq > 0 || s->shut || s->closing == ST_CLOSED)
		return;
	s->shut = 1;
	s->shutdown_req.data = s;
	r = uv_shutdown(&s->shutdown_req, &s->io.stream, shutdown_done);
	if (r < 0)
		close_handles(s);
}

/* A new stream with its timers; the caller initializes s->io. */
static struct stream *
stream_new(uv_loop_t *loop, const struct stream_ops *ops, void *arg)
{
	struct stream *s = xcalloc(1, sizeof(*s));

	s->ops = ops;
	s->arg = arg;
	buf_init(&s->in, STREAM_INPUT_LIMIT);
	buf_init(&s->held, STREAM_WRITE_LIMIT);
	s->write_high = STREAM_WRITE_HIGH;
	s->write_limit = STREAM_WRITE_LIMIT;
	s->handshake_ms = STREAM_HANDSHAKE_MS;
	s->close_ms = STREAM_CLOSE_MS;
	uv_timer_init(loop, &s->timer);
	uv_timer_init(loop, &s->idle);
	uv_idle_init(loop, &s->kick);
	s->timer.data = s->idle.data = s->kick.data = s;
	s->io.handle.data = s;
	s->handles = 3;
	snprintf(s->peer, sizeof(s->peer), "unknown");
	snprintf(s->local, sizeof(s->local), "unknown");
	return s;
}

/* Text form of an address; IPv4-mapped IPv6 shown as IPv4. */
static void
addr_text(const struct sockaddr_storage *ss, char *out, size_t outlen,
    int *port, int *loopback)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	struct in_addr v4;

	*port = 0;
	*loopback = 0;
	if (ss->ss_family == AF_UNIX) {
		snprintf(out, outlen, "local");
		*loopback = 1;
		return;
	}
	if (ss->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		memcpy(&v4, sin6->sin6_addr.s6_addr + 12, 4);
		inet_ntop(AF_INET, &v4, out, (socklen_t)outlen);
		*port = ntohs(sin6->sin6_port);
		*loopback = (ntohl(v4.s_addr) >> 24) == 127;
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, out, (socklen_t)outlen);
		*port = ntohs(sin6->sin6_port);
		*loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	} else if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)outlen);
		*port = ntohs(sin->sin_port);
		*loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else {
		snprintf(out, outlen, "unknown");
	}
}

static void
addresses(struct stream *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	uv_os_fd_t fd;
	int ignore;

	if (uv_fileno(&s->io.handle, &fd) < 0)
		return;
	len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		addr_text(&ss, s->peer, sizeof(s->peer), &s->peer_port,
		    &s->loopback);
	len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		addr_text(&ss, s->local, sizeof(s->local), &s->local_port,
		    &ignore);
	if (s->io.handle.type == UV_TCP)
		uv_tcp_nodelay(&s->io.tcp, 1);
}

/* Creation failed after the handles were set up: free without a word. */
static int
abandon(struct stream *s, int r)
{
	s->silent = 1;
	close_handles(s);
	return r;
}

int
stream_accept(uv_stream_t *listener, const struct stream_ops *ops,
    void *arg, struct stream **s_r)
{
	struct stream *s = stream_new(listener->loop, ops, arg);
	int r;

	*s_r = NULL;
	if (listener->type == UV_NAMED_PIPE)
		r = uv_pipe_init(listener->loop, &s->io.pipe, 0);
	else
		r = uv_tcp_init(listener->loop, &s->io.tcp);
	if (r < 0)
		panic("stream: cannot initialize a handle: %s", uv_strerror(r));
	s->handles++;
	if ((r = uv_accept(listener, &s->io.stream)) < 0)
		return abandon(s, r);
	addresses(s);
	update_reading(s);
	*s_r = s;
	return 0;
}

int
stream_open_fd(uv_loop_t *loop, int fd, const struct stream_ops *ops,
    void *arg, struct stream **s_r)
{
	struct stream *s = stream_new(loop, ops, arg);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int r;

	*s_r = NULL;
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		r = -errno;
		close(fd);
		uv_pipe_init(loop, &s->io.pipe, 0);
		s->handles++;
		return abandon(s, r);
	}
	if (ss.ss_family == AF_UNIX) {
		uv_pipe_init(loop, &s->io.pipe, 0);
		s->handles++;
		r = uv_pipe_open(&s->io.pipe, fd);
	} else {
		uv_tcp_init(loop, &s->io.tcp);
		s->handles++;
		r = uv_tcp_open(&s->io.tcp, fd);
	}
	if (r < 0) {
		close(fd);
		return abandon(s, r);
	}
	addresses(s);
	update_reading(s);
	*s_r = s;
	return 0;
}

static void
connect_done(uv_connect_t *req, int status)
{
	struct stream *s = req->data;

	if (s->closing == ST_CLOSED)
		return;
	s->connecting = 0;
	timer_start(s, TIMER_NONE, 0);
	if (status < 0) {
		set_reason(s, status, "connect to %s port %d: %s", s->peer,
		    s->peer_port, uv_strerror(status));
		close_handles(s);
		return;
	}
	addresses(s);
	update_reading(s);
	if (s->closing == ST_OPEN && s->ops->connected != NULL)
		s->ops->connected(s);
}

int
stream_connect(uv_loop_t *loop, const struct sockaddr *addr,
    unsigned timeout_ms, const struct stream_ops *ops, void *arg,
    struct stream **s_r)
{
	struct sockaddr_storage ss;
	struct stream *s;
	int r, ignore;

	*s_r = NULL;
	memset(&ss, 0, sizeof(ss));
	if (addr->sa_family == AF_INET)
		memcpy(&ss, addr, sizeof(struct sockaddr_in));
	else if (addr->sa_family == AF_INET6)
		memcpy(&ss, addr, sizeof(struct sockaddr_in6));
	else
		return -EAFNOSUPPORT;
	s = stream_new(loop, ops, arg);
	uv_tcp_init(loop, &s->io.tcp);
	s->handles++;
	addr_text(&ss, s->peer, sizeof(s->peer), &s->peer_port, &ignore);
	s->connect_req.data = s;
	r = uv_tcp_connect(&s->connect_req, &s->io.tcp, addr, connect_done);
	if (r < 0)
		return abandon(s, r);
	s->connecting = 1;
	timer_start(s, TIMER_CONNECT, timeout_ms);
	*s_r = s;
	return 0;
}

void *
stream_arg(const struct stream *s)
{
	return s->arg;
}

void
stream_set_arg(struct stream *s, void *arg)
{
	s->arg = arg;
}

int
stream_starttls(struct stream *s, struct tls_ctx *ctx,
    const char *servername, void (*done)(struct stream *s))
{
	int r;

	if (s->closing != ST_OPEN || s->connecting)
		return -EPIPE;
	if (s->tls != NULL)
		return -EALREADY;
	/* The heart of the matter: pipelined plaintext is never used. */
	buf_reset(&s->in);
	s->gen++;
	uv_idle_stop(&s->kick);
	s->tls = tls_new(ctx, servername);
	s->tls_done = done;
	timer_start(s, TIMER_HANDSHAKE, s->handshake_ms);
	if (tls_ctx_role(ctx) == TLS_CLIENT) {
		r = tls_handshake(s->tls);	/* makes the ClientHello */
		if (flush_tls(s) < 0)
			return 0;
		if (r < 0 && r != -EAGAIN) {
			set_reason(s, -EPROTO, "%s", tls_error(s->tls));
			begin_close(s);
			return 0;
		}
	}
	/* From the next read on, alloc_cb hands out ciphertext buffers;
	 * reading goes on even if the protocol had paused it. */
	update_reading(s);
	return 0;
}

struct tls *
stream_tls(const struct stream *s)
{
	return s->tls;
}

int
stream_tls_active(const struct stream *s)
{
	return s->tls != NULL && tls_handshake_done(s->tls);
}

int
stream_write(struct stream *s, const void *data, size_t len)
{
	struct wreq *w;
	int r;

	if (s->closing != ST_OPEN)
		return -EPIPE;
	if (len > s->write_limit || s->wq + s->held.len > s->write_limit - len)
		return -ENOBUFS;
	if (len == 0)
		return 0;
	if (s->tls == NULL) {
		w = wreq_new(len);
		memcpy(w->data, data, len);
		return queue_write(s, w);
	}
	if (handshaking(s))
		return buf_append(&s->held, data, len);
	if ((r = tls_write(s->tls, data, len)) < 0) {
		fail(s, r, "%s", tls_error(s->tls));
		return r;
	}
	return flush_tls(s);
}

int
stream_writef(struct stream *s, const char *fmt, ...)
{
	va_list ap;
	char *p;
	int r;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	r = stream_write(s, p, strlen(p));
	free(p);
	return r;
}

size_t
stream_write_queued(const struct stream *s)
{
	return s->wq + s->held.len;
}

int
stream_write_full(const struct stream *s)
{
	return s->wq_paused || s->wq + s->held.len > s->write_high;
}

void
stream_set_limits(struct stream *s, size_t input_limit, size_t write_high,
    size_t write_limit)
{
	if (input_limit != 0 && input_limit >= s->in.len)
		s->in.limit = input_limit;
	if (write_high != 0)
		s->write_high = write_high;
	/* uv_buf_t lengths are unsigned int: stay well below. */
	if (write_limit > 1u << 30)
		write_limit = 1u << 30;
	if (write_limit != 0) {
		s->write_limit = write_limit;
		s->held.limit = write_limit;
	}
}

void
stream_read_pause(struct stream *s)
{
	s->user_paused = 1;
	if (s->closing == ST_OPEN)
		update_reading(s);
}

void
stream_read_resume(struct stream *s)
{
	if (!s->user_paused)
		return;
	s->user_paused = 0;
	if (s->closing != ST_OPEN)
		return;
	update_reading(s);
	/* Not from here: the caller may be inside its own data callback. */
	if (s->closing == ST_OPEN && (s->in.len > 0 || s->tls != NULL))
		uv_idle_start(&s->kick, kick_cb);
}

void
stream_set_timeouts(struct stream *s, unsigned handshake_ms,
    unsigned close_ms)
{
	if (handshake_ms != 0)
		s->handshake_ms = handshake_ms;
	if (close_ms != 0)
		s->close_ms = close_ms;
}

void
stream_set_idle_timeout(struct stream *s, unsigned ms,
    void (*cb)(struct stream *s))
{
	s->idle_ms = ms;
	s->idle_cb = cb;
	if (ms == 0)
		uv_timer_stop(&s->idle);
	else
		idle_restart(s);
}

void
stream_close(struct stream *s)
{
	if (s->closing != ST_OPEN)
		return;
	set_reason(s, 0, "closed");
	begin_close(s);
}

void
stream_abort(struct stream *s)
{
	set_reason(s, 0, "closed");
	close_handles(s);
}

int
stream_closing(const struct stream *s)
{
	return s->closing != ST_OPEN;
}

const char *
stream_peer_addr(const struct stream *s)
{
	return s->peer;
}

int
stream_peer_port(const struct stream *s)
{
	return s->peer_port;
}

const char *
stream_local_addr(const struct stream *s)
{
	return s->local;
}

int
stream_local_port(const struct stream *s)
{
	return s->local_port;
}

int
stream_fileno(const struct stream *s)
{
	uv_os_fd_t fd;

	if (s->closing == ST_CLOSED || uv_fileno(&s->io.handle, &fd) < 0)
		return -1;
	return fd;
}

int
stream_peer_loopback(const struct stream *s)
{
	return s->loopback;
}
