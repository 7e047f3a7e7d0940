/*
 * ipc.c - internal protocol connections (ipc.h): attribute lists over UNIX
 * stream sockets with SCM_RIGHTS descriptor passing, on libuv's uv_poll_t
 * (uv_write2 cannot send plain descriptors) and blocking for the CLI.
 * A peer breaking the protocol is disconnected with a reason through
 * on_close; resources are released only in libuv's close callback, so
 * closing from inside any callback is safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "attr.h"
#include "buf.h"
#include "ipc.h"
#include "log.h"
#include "xalloc.h"

/* Bytes read per recvmsg(2). */
#define READ_CHUNK	(64 * 1024)
/* Above this much queued output, stop reading requests until the peer
 * reads its replies: a client that pipelines without reading must not
 * make us buffer without end. */
#define OUT_HIGH_WATER	(1024 * 1024)
/* Connections accepted per readiness event, so one busy listener cannot
 * starve the connections already served by the loop. */
#define ACCEPT_BURST	32
/* Pause after EMFILE and friends before accepting again. */
#define ACCEPT_PAUSE_MS	100

/*
 * A descriptor and where in the byte stream it belongs. On the sending
 * side pos and end delimit the message it goes with. On the receiving side
 * pos is the last byte of the read that brought it: Linux may glue earlier
 * bytes in front of a descriptor-carrying segment in one read, but never
 * later ones after it, and each such segment starts its own message and
 * holds nothing else, so the descriptor belongs to the message that
 * contains the read's last byte.
 */
struct fdpos {
	uint64_t pos;
	uint64_t end;
	int fd;
};

struct ipc_conn {
	uv_poll_t poll;
	int fd;
	struct ipc_callbacks cb;
	void *arg;
	int events;		/* what poll is watching, 0 when stopped */
	unsigned connecting:1;
	unsigned closing:1;
	unsigned partial:1;	/* part of a message has been decoded */
	unsigned eof:1;		/* peer done sending; flushing, then close */
	unsigned finishing:1;	/* owner let go; flushing, then close */
	int eof_err;		/* what to tell on_close once flushed */
	const char *eof_errstr;

	struct attr_decoder *dec;
	struct buf in;		/* bytes not yet decoded */
	uint64_t in_pos;	/* stream position of in.data[0] */
	struct fdpos rfds[IPC_MAX_FDS];	/* received, not yet handed out */
	size_t nrfds;

	struct buf out;		/* encoded output; out_off bytes are sent */
	size_t out_off;
	uint64_t out_pos;	/* stream position of out.data[0] */
	struct fdpos *sfds;	/* to send, each with its message's start */
	size_t nsfds, capsfds;
};

struct ipc_listener {
	uv_poll_t poll;
	uv_timer_t timer;
	int fd;
	int open_handles;
	int closing;
	void (*on_conn)(struct ipc_listener *, int, void *);
	void *arg;
};

static void conn_poll_cb(uv_poll_t *, int, int);

static void
close_fd(int fd)
{
	/* close(2) may report EINTR yet always releases the descriptor on
	 * Linux, so retrying could close someone else's new descriptor. */
	if (fd >= 0)
		(void)close(fd);
}

int
ipc_msg_take_fd(struct ipc_msg *msg, size_t i)
{
	int fd;

	if (i >= msg->nfds)
		return -1;
	fd = msg->fds[i];
	msg->fds[i] = -1;
	return fd;
}

static int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static void
conn_free_cb(uv_handle_t *h)
{
	struct ipc_conn *c = h->data;

	close_fd(c->fd);
	attr_decoder_free(&c->dec);
	buf_release(&c->in);
	buf_release(&c->out);
	for (size_t i = 0; i < c->nrfds; i++)
		close_fd(c->rfds[i].fd);
	for (size_t i = 0; i < c->nsfds; i++)
		close_fd(c->sfds[i].fd);
	free(c->sfds);
	free(c);
}

static void
conn_teardown(struct ipc_conn *c)
{
	c->closing = 1;
	c->events = 0;
	uv_close((uv_handle_t *)&c->poll, conn_free_cb);
}

/* The connection ends by itself: tell the owner, then let go. */
static void
conn_fail(struct ipc_conn *c, int err, const char *errstr)
{
	if (c->closing)
		return;
	c->closing = 1;
	/* After ipc_conn_finish() the owner has let go of conn. */
	if (c->cb.on_close != NULL && !c->finishing)
		c->cb.on_close(c, err, errstr, c->arg);
	conn_teardown(c);
}

static size_t
out_pending(const struct ipc_conn *c)
{
	return c->out.len - c->out_off;
}

/* Watch for what the connection needs now. */
static void
conn_update_poll(struct ipc_conn *c)
{
	int ev = 0, r;

	if (c->closing)
		return;
	if (c->connecting)
		ev = UV_WRITABLE;
	else {
		if (!c->eof && !c->finishing &&
		    out_pending(c) < OUT_HIGH_WATER)
			ev |= UV_READABLE;
		if (out_pending(c) > 0)
			ev |= UV_WRITABLE;
	}
	if (ev == c->events)
		return;
	if (ev == 0)
		r = uv_poll_stop(&c->poll);
	else
		r = uv_poll_start(&c->poll, ev, conn_poll_cb);
	if (r < 0) {
		conn_fail(c, r, "cannot watch the socket");
		return;
	}
	c->events = ev;
}

static int
conn_create(uv_loop_t *loop, int fd, const struct ipc_callbacks *cb,
    void *arg, int connecting, struct ipc_conn **conn_r)
{
	struct ipc_conn *c;
	int r;

	if ((r = set_nonblock(fd)) < 0) {
		close_fd(fd);
		return r;
	}
	c = xcalloc(1, sizeof(*c));
	if ((r = uv_poll_init(loop, &c->poll, fd)) < 0) {
		free(c);
		close_fd(fd);
		return r;
	}
	c->poll.data = c;
	c->fd = fd;
	c->cb = *cb;
	c->arg = arg;
	c->connecting = connecting != 0;
	c->dec = attr_decoder_new(NULL);
	buf_init(&c->in, ATTR_MAX_LINE + READ_CHUNK);
	buf_init(&c->out, IPC_MAX_OUTPUT);
	c->events = connecting ? UV_WRITABLE : UV_READABLE;
	if ((r = uv_poll_start(&c->poll, c->events, conn_poll_cb)) < 0) {
		/* Nothing was handed out yet; the close callback frees. */
		conn_teardown(c);
		return r;
	}
	*conn_r = c;
	return 0;
}

int
ipc_conn_new(uv_loop_t *loop, int fd, const struct ipc_callbacks *cb,
    void *arg, struct ipc_conn **conn_r)
{
	return conn_create(loop, fd, cb, arg, 0, conn_r);
}

void
ipc_conn_set_limits(struct ipc_conn *c, const struct attr_limits *limits)
{
	size_t max_line = limits && limits->max_line ? limits->max_line :
	    ATTR_MAX_LINE;

	attr_decoder_free(&c->dec);
	c->dec = attr_decoder_new(limits);
	/* Room for one unfinished line and one read, as in conn_create();
	 * never below what is already buffered. */
	c->in.limit = max_line + READ_CHUNK;
	if (c->in.limit < c->in.len)
		c->in.limit = c->in.len;
}

int
ipc_conn_fd(const struct ipc_conn *c)
{
	return c->fd;
}

size_t
ipc_conn_pending(const struct ipc_conn *c)
{
	return out_pending(c);
}

void
ipc_conn_close(struct ipc_conn **connp)
{
	struct ipc_conn *c = *connp;

	*connp = NULL;
	if (c == NULL || c->closing)
		return;
	conn_teardown(c);
}

void
ipc_conn_finish(struct ipc_conn **connp)
{
	struct ipc_conn *c = *connp;

	*connp = NULL;
	if (c == NULL || c->closing)
		return;
	if (out_pending(c) == 0) {
		conn_teardown(c);
		return;
	}
	c->finishing = 1;
	conn_update_poll(c);
}

int
ipc_send(struct ipc_conn *c, const struct attr_list *list, int fd)
{
	uint64_t start;
	int r;

	if (c->closing) {
		close_fd(fd);
		return -EPIPE;
	}
	start = c->out_pos + c->out.len;
	if ((r = attr_encode(list, &c->out)) < 0) {
		close_fd(fd);
		return r;
	}
	if (fd >= 0) {
		if (c->nsfds == c->capsfds) {
			c->capsfds = c->capsfds ? c->capsfds * 2 : 4;
			c->sfds = xreallocarray(c->sfds, c->capsfds,
			    sizeof(*c->sfds));
		}
		c->sfds[c->nsfds].pos = start;
		c->sfds[c->nsfds].end = c->out_pos + c->out.len;
		c->sfds[c->nsfds].fd = fd;
		c->nsfds++;
	}
	/* Written from the loop, never from here, so that a write error
	 * reaches on_close from the loop and not in the middle of the
	 * caller's own code. */
	conn_update_poll(c);
	return 0;
}

/* One sendmsg(2) from the output queue: a message that carries a
 * descriptor goes alone, with its descriptor; others go together up to the
 * next message with a descriptor (see struct fdpos for why). */
static ssize_t
send_some(struct ipc_conn *c, int *sent_fd)
{
	uint64_t at = c->out_pos + c->out_off;
	size_t n = out_pending(c);
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov;
	struct msghdr mh;
	size_t next = 0;

	memset(&mh, 0, sizeof(mh));
	*sent_fd = 0;
	if (c->nsfds > 0 && c->sfds[0].pos == at) {
		struct cmsghdr *h;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		h = CMSG_FIRSTHDR(&mh);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &c->sfds[0].fd, sizeof(int));
		*sent_fd = 1;
		next = 1;
		n = (size_t)(c->sfds[0].end - at);
	}
	if (c->nsfds > next && c->sfds[next].pos - at < n)
		n = (size_t)(c->sfds[next].pos - at);
	iov.iov_base = c->out.data + c->out_off;
	iov.iov_len = n;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	return sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void
conn_flush(struct ipc_conn *c)
{
	while (out_pending(c) > 0) {
		int sent_fd;
		ssize_t n = send_some(c, &sent_fd);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* A peer that hung up after its last request chose
			 * not to read the reply: that ends the connection as
			 * its hang-up did, not as a write error. */
			if (c->eof && (errno == EPIPE || errno == ECONNRESET)) {
				conn_fail(c, c->eof_err, c->eof_errstr);
				return;
			}
			conn_fail(c, -errno, "cannot write to the socket");
			return;
		}
		if (sent_fd) {
			close_fd(c->sfds[0].fd);
			memmove(c->sfds, c->sfds + 1,
			    --c->nsfds * sizeof(*c->sfds));
		}
		c->out_off += (size_t)n;
	}
	/* Compact rarely: only when all is sent, or when the sent part
	 * dominates, so partial writes cost no quadratic copying. */
	if (out_pending(c) == 0 || c->out_off > c->out.len / 2) {
		c->out_pos += c->out_off;
		buf_consume(&c->out, c->out_off);
		c->out_off = 0;
	}
	if (c->finishing && out_pending(c) == 0) {
		conn_teardown(c);
		return;
	}
	if (c->eof && out_pending(c) == 0) {
		conn_fail(c, c->eof_err, c->eof_errstr);
		return;
	}
	conn_update_poll(c);
}

/* Hand one decoded message, with the descriptors that arrived with its
 * bytes (those before stream position end), to on_message. */
static void
conn_dispatch(struct ipc_conn *c, struct attr_list *list, uint64_t end)
{
	struct ipc_msg msg;
	size_t k = 0;

	memset(&msg, 0, sizeof(msg));
	msg.attrs = list;
	while (k < c->nrfds && c->rfds[k].pos < end) {
		msg.fds[msg.nfds++] = c->rfds[k].fd;
		k++;
	}
	memmove(c->rfds, c->rfds + k, (c->nrfds - k) * sizeof(*c->rfds));
	c->nrfds -= k;
	c->cb.on_message(c, &msg, c->arg);
	attr_list_free(&msg.attrs);
	for (size_t i = 0; i < msg.nfds; i++)
		close_fd(msg.fds[i]);
}

/* Decode and dispatch every complete message in the input buffer. */
static void
conn_decode(struct ipc_conn *c)
{
	size_t off = 0, used;
	struct attr_list *list;
	const char *errstr;
	int r;

	while (!c->closing) {
		r = attr_decoder_feed(c->dec, c->in.data + off,
		    c->in.len - off, &used, &list, &errstr);
		if (r < 0) {
			/* on_close gets the reason; the owner knows which
			 * peer this is and logs it with that context. */
			log_debug("ipc: protocol error from peer: %s", errstr);
			conn_fail(c, -EPROTO, errstr);
			return;
		}
		off += used;
		if (r == 0) {
			if (used > 0)
				c->partial = 1;
			break;
		}
		c->partial = 0;
		conn_dispatch(c, list, c->in_pos + off);
	}
	if (c->closing)
		return;
	buf_consume(&c->in, off);
	c->in_pos += off;
}

/* Keep received descriptors; more than a message may carry are closed. */
static int
conn_take_fds(struct ipc_conn *c, struct msghdr *mh, uint64_t pos)
{
	int dropped = 0;

	for (struct cmsghdr *h = CMSG_FIRSTHDR(mh); h != NULL;
	    h = CMSG_NXTHDR(mh, h)) {
		size_t n;

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int),
			    sizeof(int));
			if (c->nrfds < IPC_MAX_FDS) {
				c->rfds[c->nrfds].pos = pos;
				c->rfds[c->nrfds++].fd = fd;
			} else {
				close_fd(fd);
				dropped++;
			}
		}
	}
	if (dropped > 0)
		log_warn("ipc: closed %d file descriptors beyond %d per "
		    "message", dropped, IPC_MAX_FDS);
	return dropped;
}

static void
conn_read(struct ipc_conn *c)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
	} cm;
	struct iovec iov;
	struct msghdr mh;
	uint64_t start = c->in_pos + c->in.len;
	char *space = buf_space(&c->in, READ_CHUNK);
	ssize_t n;

	if (space == NULL) {
		/* The decoder consumes every complete line, so this is a
		 * broken invariant rather than the peer's doing. */
		panic("ipc: input buffer full with %zu bytes", c->in.len);
	}
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = space;
	iov.iov_len = READ_CHUNK;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	do
		n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		conn_fail(c, -errno, "cannot read from the socket");
		return;
	}
	if (mh.msg_controllen > 0)
		conn_take_fds(c, &mh, start + (n > 0 ? (uint64_t)n - 1 : 0));
	if (mh.msg_flags & MSG_CTRUNC) {
		conn_fail(c, -EPROTO, "too many file descriptors in one "
		    "message");
		return;
	}
	if (n == 0) {
		if (c->partial || c->in.len > 0) {
			c->eof_err = -ECONNRESET;
			c->eof_errstr = "connection closed in the middle of a "
			    "message";
		} else {
			c->eof_err = 0;
			c->eof_errstr = "connection closed";
		}
		/* A peer that only shut down its sending side (socat at the
		 * end of its input does) still gets the replies it asked
		 * for before the connection ends. */
		if (out_pending(c) == 0)
			conn_fail(c, c->eof_err, c->eof_errstr);
		else {
			c->eof = 1;
			conn_update_poll(c);
		}
		return;
	}
	buf_commit(&c->in, (size_t)n);
	conn_decode(c);
}

static void
conn_poll_cb(uv_poll_t *h, int status, int events)
{
	struct ipc_conn *c = h->data;

	if (c->closing)
		return;
	if (status < 0) {
		conn_fail(c, status, "socket error");
		return;
	}
	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(events & UV_WRITABLE))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			conn_fail(c, -err, "cannot connect");
			return;
		}
		c->connecting = 0;
		conn_update_poll(c);
		return;
	}
	if (events & UV_READABLE)
		conn_read(c);
	if (!c->closing && (events & UV_WRITABLE))
		conn_flush(c);
	else if (!c->closing)
		conn_update_poll(c);
}

static int
unix_addr(const char *path, struct sockaddr_un *sun)
{
	size_t len = strlen(path);

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (len == 0 || len >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memcpy(sun->sun_path, path, len + 1);
	return 0;
}

int
ipc_connect(uv_loop_t *loop, const char *path,
    const struct ipc_callbacks *cb, void *arg, struct ipc_conn **conn_r)
{
	struct sockaddr_un sun;
	int fd, r, inprogress = 0;

	if ((r = unix_addr(path, &sun)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno != EINPROGRESS) {
			r = -errno;
			close_fd(fd);
			return r;
		}
		inprogress = 1;
	}
	return conn_create(loop, fd, cb, arg, inprogress, conn_r);
}

static void listener_poll_cb(uv_poll_t *, int, int);

static void
listener_handle_closed(uv_handle_t *h)
{
	struct ipc_listener *l = h->data;

	if (--l->open_handles == 0) {
		close_fd(l->fd);
		free(l);
	}
}

static void
listener_resume(uv_timer_t *t)
{
	struct ipc_listener *l = t->data;

	if (!l->closing && uv_poll_start(&l->poll, UV_READABLE,
	    listener_poll_cb) < 0)
		log_error("ipc: cannot resume accepting connections");
}

static void
listener_poll_cb(uv_poll_t *h, int status, int events)
{
	struct ipc_listener *l = h->data;

	(void)events;
	if (status < 0) {
		log_warn("ipc: listening socket: %s", uv_strerror(status));
		return;
	}
	for (int i = 0; i < ACCEPT_BURST && !l->closing; i++) {
		int fd = accept4(l->fd, NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			l->on_conn(l, fd, l->arg);
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* The socket stays readable, so polling on would
			 * spin; wait for descriptors to be freed. */
			log_warn("ipc: cannot accept: %s; pausing %d ms",
			    strerror(errno), ACCEPT_PAUSE_MS);
			uv_poll_stop(&l->poll);
			uv_timer_start(&l->timer, listener_resume,
			    ACCEPT_PAUSE_MS, 0);
			return;
		default:
			log_error("ipc: accept: %s", strerror(errno));
			return;
		}
	}
}

int
ipc_listen(uv_loop_t *loop, int listen_fd,
    void (*on_conn)(struct ipc_listener *, int, void *), void *arg,
    struct ipc_listener **listener_r)
{
	struct ipc_listener *l;
	int r;

	if ((r = set_nonblock(listen_fd)) < 0) {
		close_fd(listen_fd);
		return r;
	}
	l = xcalloc(1, sizeof(*l));
	l->fd = listen_fd;
	l->on_conn = on_conn;
	l->arg = arg;
	if ((r = uv_poll_init(loop, &l->poll, listen_fd)) < 0) {
		free(l);
		close_fd(listen_fd);
		return r;
	}
	l->poll.data = l;
	uv_timer_init(loop, &l->timer);
	l->timer.data = l;
	l->open_handles = 2;
	if ((r = uv_poll_start(&l->poll, UV_READABLE, listener_poll_cb)) < 0) {
		ipc_listener_free(&l);
		return r;
	}
	*listener_r = l;
	return 0;
}

void
ipc_listener_free(struct ipc_listener **lp)
{
	struct ipc_listener *l = *lp;

	*lp = NULL;
	if (l == NULL || l->closing)
		return;
	l->closing = 1;
	uv_close((uv_handle_t *)&l->poll, listener_handle_closed);
	uv_close((uv_handle_t *)&l->timer, listener_handle_closed);
}

int
ipc_peer_cred(int fd, uid_t *uid_r, gid_t *gid_r, pid_t *pid_r)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	if (uid_r != NULL)
		*uid_r = uc.uid;
	if (gid_r != NULL)
		*gid_r = uc.gid;
	if (pid_r != NULL)
		*pid_r = uc.pid;
	return 0;
}

/* The CLOCK_MONOTONIC time in ms timeout_ms from now; -1 for none. */
static int64_t
deadline_in(int timeout_ms)
{
	struct timespec ts;

	if (timeout_ms < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
}

/* Milliseconds left before deadline, -1 for no deadline, 0 once it has
 * passed. */
static int
ms_left(int64_t deadline)
{
	int64_t now;

	if (deadline < 0)
		return -1;
	now = deadline_in(0);
	if (now >= deadline)
		return 0;
	return deadline - now > INT32_MAX ? INT32_MAX : (int)(deadline - now);
}

/* Wait until fd is ready for events or the deadline passes. */
static int
wait_fd(int fd, short events, int64_t deadline, const char **errstr_r)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int left, r;

	for (;;) {
		if ((left = ms_left(deadline)) == 0) {
			*errstr_r = "timed out";
			return -ETIMEDOUT;
		}
		r = poll(&pfd, 1, left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR) {
			*errstr_r = "poll failed";
			return -errno;
		}
	}
}

struct ipc_client {
	int fd;
	int broken;		/* a malformed reply was seen */
	struct attr_decoder *dec;
	struct buf in;		/* bytes not yet decoded */
};

static int
client_connect(const char *path, int64_t deadline, int *fd_r,
    const char **errstr_r)
{
	struct sockaddr_un sun;
	int fd, r, err;
	socklen_t len = sizeof(err);

	if ((r = unix_addr(path, &sun)) < 0) {
		*errstr_r = "socket path too long";
		return r;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*errstr_r = "cannot create a socket";
		return -errno;
	}
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == EINTR)
			continue;
		/* A UNIX socket whose backlog is full says EAGAIN and has
		 * not started anything: wait a little and try again. */
		if (errno == EAGAIN) {
			if (ms_left(deadline) == 0) {
				r = -ETIMEDOUT;
				*errstr_r = "timed out connecting";
				goto fail;
			}
			poll(NULL, 0, 10);
			continue;
		}
		if (errno != EINPROGRESS) {
			r = -errno;
			*errstr_r = "cannot connect";
			goto fail;
		}
		if ((r = wait_fd(fd, POLLOUT, deadline, errstr_r)) < 0)
			goto fail;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err != 0) {
			r = -err;
			*errstr_r = "cannot connect";
			goto fail;
		}
		break;
	}
	*fd_r = fd;
	return 0;
fail:
	close_fd(fd);
	return r;
}

static int
client_open_until(const char *path, int64_t deadline,
    struct ipc_client **cl_r, const char **errstr_r)
{
	struct ipc_client *cl;
	int fd = -1, r;

	if ((r = client_connect(path, deadline, &fd, errstr_r)) < 0)
		return r;
	cl = xcalloc(1, sizeof(*cl));
	cl->fd = fd;
	cl->dec = attr_decoder_new(NULL);
	buf_init(&cl->in, ATTR_MAX_LINE + READ_CHUNK);
	*cl_r = cl;
	return 0;
}

int
ipc_client_open(const char *path, int timeout_ms, struct ipc_client **cl_r,
    const char **errstr_r)
{
	return client_open_until(path, deadline_in(timeout_ms), cl_r,
	    errstr_r);
}

void
ipc_client_free(struct ipc_client **clp)
{
	struct ipc_client *cl = *clp;

	if (cl == NULL)
		return;
	close_fd(cl->fd);
	attr_decoder_free(&cl->dec);
	buf_release(&cl->in);
	free(cl);
	*clp = NULL;
}

static int
client_send_until(struct ipc_client *cl, const struct attr_list *req,
    int pass_fd, int64_t deadline, const char **errstr_r)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct buf out;
	size_t off = 0;
	int r = 0;

	buf_init(&out, 0);
	if (attr_encode(req, &out) < 0)
		panic("ipc: encoding into an unlimited buffer failed");
	while (off < out.len) {
		struct iovec iov = { out.data + off, out.len - off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (pass_fd >= 0 && off == 0) {
			struct cmsghdr *h;

			memset(&cm, 0, sizeof(cm));
			mh.msg_control = cm.buf;
			mh.msg_controllen = sizeof(cm.buf);
			h = CMSG_FIRSTHDR(&mh);
			h->cmsg_level = SOL_SOCKET;
			h->cmsg_type = SCM_RIGHTS;
			h->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(h), &pass_fd, sizeof(int));
		}
		n = sendmsg(cl->fd, &mh, MSG_NOSIGNAL);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			r = -errno;
			*errstr_r = "cannot send the request";
			break;
		}
		if ((r = wait_fd(cl->fd, POLLOUT, deadline, errstr_r)) < 0)
			break;
	}
	buf_release(&out);
	return r;
}

int
ipc_client_send(struct ipc_client *cl, const struct attr_list *req,
    int fd, int timeout_ms, const char **errstr_r)
{
	return client_send_until(cl, req, fd, deadline_in(timeout_ms),
	    errstr_r);
}

static void
close_cmsg_fds(struct msghdr *mh)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(mh); h != NULL;
	    h = CMSG_NXTHDR(mh, h)) {
		size_t n;

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int cfd;

			memcpy(&cfd, CMSG_DATA(h) + i * sizeof(int),
			    sizeof(int));
			close_fd(cfd);
		}
	}
}

/* Read once into cl->in: 1 when bytes came, 0 at end of file. */
static int
client_read(struct ipc_client *cl, int64_t deadline, const char **errstr_r)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * IPC_MAX_FDS)];
	} cm;
	char *space = buf_space(&cl->in, READ_CHUNK);
	struct iovec iov = { space, READ_CHUNK };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;
	int r;

	if (space == NULL)
		panic("ipc: reply buffer full with %zu bytes", cl->in.len);
	for (;;) {
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		n = recvmsg(cl->fd, &mh, MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			*errstr_r = "cannot read the reply";
			return -errno;
		}
		if ((r = wait_fd(cl->fd, POLLIN, deadline, errstr_r)) < 0)
			return r;
	}
	/* Tools have no use for descriptors in replies. */
	if (mh.msg_controllen > 0)
		close_cmsg_fds(&mh);
	if (n == 0)
		return 0;
	buf_commit(&cl->in, (size_t)n);
	return 1;
}

static int
client_recv_until(struct ipc_client *cl, struct attr_list **reply_r,
    int64_t deadline, const char **errstr_r)
{
	size_t used;
	int r;

	*reply_r = NULL;
	if (cl->broken) {
		*errstr_r = "an earlier reply was malformed";
		return -EPROTO;
	}
	for (;;) {
		/* Replies to pipelined requests may be buffered already. */
		if (cl->in.len > 0) {
			r = attr_decoder_feed(cl->dec, cl->in.data, cl->in.len,
			    &used, reply_r, errstr_r);
			if (r < 0) {
				cl->broken = 1;
				return -EPROTO;
			}
			buf_consume(&cl->in, used);
			if (r == 1)
				return 0;
		}
		if ((r = client_read(cl, deadline, errstr_r)) < 0)
			return r;
		if (r == 0) {
			if (cl->in.len > 0 || attr_decoder_pending(cl->dec)) {
				*errstr_r = "connection closed in the middle "
				    "of a reply";
				return -ECONNRESET;
			}
			*errstr_r = "connection closed";
			return -ENOTCONN;
		}
	}
}

int
ipc_client_recv(struct ipc_client *cl, struct attr_list **reply_r,
    int timeout_ms, const char **errstr_r)
{
	return client_recv_until(cl, reply_r, deadline_in(timeout_ms),
	    errstr_r);
}

int
ipc_call_fd(const char *path, const struct attr_list *request, int pass_fd,
    struct attr_list **reply_r, int timeout_ms, const char **errstr_r)
{
	int64_t deadline = deadline_in(timeout_ms);
	struct ipc_client *cl = NULL;
	int r;

	*reply_r = NULL;
	if ((r = client_open_until(path, deadline, &cl, errstr_r)) < 0)
		return r;
	if ((r = client_send_until(cl, request, pass_fd, deadline,
	    errstr_r)) == 0)
		r = client_recv_until(cl, reply_r, deadline, errstr_r);
	if (r == -ENOTCONN) {
		*errstr_r = "connection closed before a reply";
		r = -ECONNRESET;
	}
	ipc_client_free(&cl);
	return r;
}

int
ipc_call(const char *path, const struct attr_list *request,
    struct attr_list **reply_r, int timeout_ms, const char **errstr_r)
{
	return ipc_call_fd(path, request, -1, reply_r, timeout_ms, errstr_r);
}
