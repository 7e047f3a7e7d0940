/*
 * ipc_test.c - unit tests for lib/ipc: connections over socketpairs inside
 * a libuv loop (round trips, pipelining, large messages, descriptor
 * passing, hostile peers), the listener and ipc_connect, and the blocking
 * ipc_call against a server running in a thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "attr.h"
#include "ipc.h"

struct ctx {
	uv_loop_t loop;
	uv_timer_t guard;
	struct ipc_conn *srv, *cli;
	int nsrv;	/* messages the server received */
	int nreq, nrep;	/* replies the client waits for, got */
	size_t got_len;
	uint32_t got_sum;
	int srv_closed, cli_closed;
	int close_err;
	char close_errstr[128];
	size_t last_nfds;
	size_t nfds_seen[8];	/* per message received */
	char got[256];
	int mode;
};

enum {
	MODE_ECHO,		/* reply echo=<x>, seq=<seq> */
	MODE_READ_FD,		/* reply with the passed file's content */
	MODE_IGNORE_FD,		/* leave the descriptor to the library */
	MODE_CLOSE_IN_CB,	/* close the connection from on_message */
	MODE_CLIENT_ONLY,	/* the server is elsewhere: no order check */
};

static void
guard_cb(uv_timer_t *t)
{
	(void)t;
	fail_msg("the event loop did not finish in time");
}

static void
ctx_init(struct ctx *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(uv_loop_init(&c->loop), 0);
	c->loop.data = c;
	uv_timer_init(&c->loop, &c->guard);
	uv_timer_start(&c->guard, guard_cb, 10000, 0);
	uv_unref((uv_handle_t *)&c->guard);
}

static void
ctx_run_and_close(struct ctx *c)
{
	uv_run(&c->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&c->guard, NULL);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&c->loop), 0);
}

static void
make_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    sv), 0);
}

/* Whether every copy of the pipe's write end is closed. */
static int
pipe_at_eof(int rfd)
{
	char ch;
	int fl = fcntl(rfd, F_GETFL);

	fcntl(rfd, F_SETFL, fl | O_NONBLOCK);
	return read(rfd, &ch, 1) == 0;
}

static void
srv_on_message(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct ctx *c = arg;
	struct attr_list *rep = attr_list_new();
	const char *v;
	size_t len;

	if (c->nsrv < 8)
		c->nfds_seen[c->nsrv] = msg->nfds;
	c->nsrv++;
	c->last_nfds = msg->nfds;
	switch (c->mode) {
	case MODE_ECHO:
	{
		size_t iter = 0, total = 0;
		uint32_t sum = 0;

		v = attr_get(msg->attrs, "x", &len);
		if (v != NULL)
			attr_add(rep, "echo", v, len);
		while ((v = attr_next(msg->attrs, "x", &iter, &len)) != NULL)
			for (size_t i = 0; i < len; i++)
				sum = sum * 31 + (unsigned char)v[i], total++;
		attr_addf(rep, "len", "%zu", total);
		attr_addf(rep, "sum", "%u", sum);
	}
		if ((v = attr_get_str(msg->attrs, "seq")) != NULL)
			attr_add_str(rep, "seq", v);
		attr_add_str(rep, "status", "2.0.0");
		break;
	case MODE_READ_FD: {
		int fd = ipc_msg_take_fd(msg, 0);
		char buf[128];
		ssize_t n;

		assert_true(fd >= 0);
		/* Received descriptors must not leak into children. */
		assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		n = pread(fd, buf, sizeof(buf), 0);
		assert_true(n > 0);
		attr_add(rep, "content", buf, (size_t)n);
		close(fd);
		break;
	}
	case MODE_IGNORE_FD:
		attr_add_str(rep, "status", "2.0.0");
		break;
	case MODE_CLOSE_IN_CB:
		attr_list_free(&rep);
		ipc_conn_close(&c->srv);
		assert_null(c->srv);
		/* Sending on a connection being closed is refused. */
		assert_int_equal(ipc_send(conn, msg->attrs, -1), -EPIPE);
		return;
	}
	assert_int_equal(ipc_send(conn, rep, -1), 0);
	attr_list_free(&rep);
}

static void
srv_on_close(struct ipc_conn *conn, int err, const char *errstr, void *arg)
{
	struct ctx *c = arg;

	assert_ptr_equal(conn, c->srv);
	c->srv = NULL;
	c->srv_closed++;
	c->close_err = err;
	snprintf(c->close_errstr, sizeof(c->close_errstr), "%s", errstr);
}

static const struct ipc_callbacks srv_cb = {
	.on_message = srv_on_message,
	.on_close = srv_on_close,
};

/* The client side: count replies, check their order, stop after nreq. */
static void
cli_on_message(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct ctx *c = arg;
	const char *v;
	size_t len;

	(void)conn;
	if (c->mode == MODE_ECHO) {
		char want[16];

		snprintf(want, sizeof(want), "%d", c->nrep);
		v = attr_get_str(msg->attrs, "seq");
		assert_non_null(v);
		assert_string_equal(v, want);
	}
	v = attr_get(msg->attrs, "content", &len);
	if (v == NULL)
		v = attr_get(msg->attrs, "echo", &len);
	if (v != NULL && len < sizeof(c->got))
		memcpy(c->got, v, len);
	if ((v = attr_get_str(msg->attrs, "len")) != NULL)
		c->got_len = strtoul(v, NULL, 10);
	if ((v = attr_get_str(msg->attrs, "sum")) != NULL)
		c->got_sum = (uint32_t)strtoul(v, NULL, 10);
	if (++c->nrep == c->nreq) {
		ipc_conn_close(&c->cli);
		ipc_conn_close(&c->srv);
	}
}

static void
cli_on_close(struct ipc_conn *conn, int err, const char *errstr, void *arg)
{
	struct ctx *c = arg;

	(void)conn;
	(void)err;
	(void)errstr;
	c->cli = NULL;
	c->cli_closed++;
}

static const struct ipc_callbacks cli_cb = {
	.on_message = cli_on_message,
	.on_close = cli_on_close,
};

static void
open_pair(struct ctx *c)
{
	int sv[2];

	make_pair(sv);
	assert_int_equal(ipc_conn_new(&c->loop, sv[0], &srv_cb, c, &c->srv),
	    0);
	assert_int_equal(ipc_conn_new(&c->loop, sv[1], &cli_cb, c, &c->cli),
	    0);
}

static void
test_ipc_round_trip(void **state)
{
	static const char tricky[] = "line1\nline2\r\n%25=\0end";
	struct attr_list *req = attr_list_new();
	struct ctx c;

	(void)state;
	ctx_init(&c);
	open_pair(&c);
	attr_add_str(req, "request", "echo");
	attr_add(req, "x", tricky, sizeof(tricky) - 1);
	attr_add_str(req, "seq", "0");
	assert_int_equal(ipc_send(c.cli, req, -1), 0);
	assert_true(ipc_conn_pending(c.cli) > 0);
	c.nreq = 1;
	attr_list_free(&req);
	ctx_run_and_close(&c);
	assert_int_equal(c.nrep, 1);
	assert_memory_equal(c.got, tricky, sizeof(tricky) - 1);
	/* Closed by the owner: no on_close. */
	assert_int_equal(c.srv_closed + c.cli_closed, 0);
}

static void
test_ipc_pipelined_answered_in_order(void **state)
{
	struct ctx c;

	(void)state;
	ctx_init(&c);
	open_pair(&c);
	for (int i = 0; i < 500; i++) {
		struct attr_list *req = attr_list_new();

		attr_add_str(req, "request", "echo");
		attr_addf(req, "seq", "%d", i);
		attr_addf(req, "x", "value %d", i);
		assert_int_equal(ipc_send(c.cli, req, -1), 0);
		attr_list_free(&req);
	}
	c.nreq = 500;
	ctx_run_and_close(&c);
	assert_int_equal(c.nrep, 500);
	assert_string_equal(c.got, "value 499");
}

/* A message far larger than the socket buffer goes out in many partial
 * writes with EAGAIN in between, and arrives whole: 20 lines of 32 KiB,
 * about 830 KiB once escaped. */
static void
test_ipc_large_message_partial_writes(void **state)
{
	size_t piece = 32 * 1024, npieces = 20;
	char *v = malloc(piece);
	struct attr_list *req = attr_list_new();
	uint32_t sum = 0;
	struct ctx c;

	(void)state;
	attr_add_str(req, "seq", "0");
	for (size_t k = 0; k < npieces; k++) {
		/* Many of these bytes need escaping. */
		for (size_t i = 0; i < piece; i++) {
			v[i] = (char)(i * 7 + k);
			sum = sum * 31 + (unsigned char)v[i];
		}
		attr_add(req, "x", v, piece);
	}
	ctx_init(&c);
	open_pair(&c);
	assert_int_equal(ipc_send(c.cli, req, -1), 0);
	c.nreq = 1;
	attr_list_free(&req);
	ctx_run_and_close(&c);
	assert_int_equal(c.nrep, 1);
	assert_int_equal(c.got_len, piece * npieces);
	assert_int_equal(c.got_sum, sum);
	free(v);
}

static void
test_ipc_output_limit(void **state)
{
	size_t big = 900 * 1024;
	char *v = calloc(1, big);
	struct attr_list *req = attr_list_new();
	struct ctx c;
	int r = 0, n = 0;

	(void)state;
	memset(v, 'a', big);
	ctx_init(&c);
	open_pair(&c);
	attr_add(req, "x", v, big);
	/* Nobody runs the loop, so nothing drains: the queue must stop
	 * growing at IPC_MAX_OUTPUT. */
	while (n < 100 && (r = ipc_send(c.cli, req, -1)) == 0)
		n++;
	assert_int_equal(r, -ENOBUFS);
	assert_true(ipc_conn_pending(c.cli) <= IPC_MAX_OUTPUT);
	assert_int_equal(n, IPC_MAX_OUTPUT / (big + 4));
	ipc_conn_close(&c.cli);
	ipc_conn_close(&c.srv);
	attr_list_free(&req);
	ctx_run_and_close(&c);
	free(v);
}

static int
temp_file_with(const char *content)
{
	char path[] = "/tmp/pochta-ipc-test-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, content, strlen(content)),
	    (ssize_t)strlen(content));
	return fd;
}

static void
test_ipc_fd_passed(void **state)
{
	struct attr_list *req = attr_list_new();
	struct ctx c;

	(void)state;
	ctx_init(&c);
	c.mode = MODE_READ_FD;
	open_pair(&c);
	attr_add_str(req, "request", "deliver");
	attr_add_str(req, "queue_id", "4F3A");
	/* Two messages, the second with the file: the descriptor must
	 * arrive with its own message, not the first. */
	assert_int_equal(ipc_send(c.cli, req, temp_file_with("first")), 0);
	assert_int_equal(ipc_send(c.cli, req,
	    temp_file_with("Received: from x\n\nqueue file body")), 0);
	c.nreq = 2;
	attr_list_free(&req);
	ctx_run_and_close(&c);
	assert_int_equal(c.nrep, 2);
	assert_int_equal(c.last_nfds, 1);
	assert_string_equal(c.got, "Received: from x\n\nqueue file body");
}

static void
test_ipc_fd_closed_when_not_taken(void **state)
{
	struct attr_list *req = attr_list_new();
	struct ctx c;
	int p[2];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	ctx_init(&c);
	c.mode = MODE_IGNORE_FD;
	open_pair(&c);
	attr_add_str(req, "request", "x");
	/* The connection owns p[1] from here on. */
	assert_int_equal(ipc_send(c.cli, req, p[1]), 0);
	c.nreq = 1;
	attr_list_free(&req);
	ctx_run_and_close(&c);
	assert_int_equal(c.last_nfds, 1);
	assert_true(pipe_at_eof(p[0]));
	close(p[0]);
}

/* Several messages written at once, only the middle one with a
 * descriptor: the kernel may hand the descriptor to a read that began in
 * the message before, yet it must reach the message it was sent with. */
static void
test_ipc_fd_travels_with_its_message(void **state)
{
	struct attr_list *req = attr_list_new();
	struct ctx c;
	int p[2];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	ctx_init(&c);
	c.mode = MODE_IGNORE_FD;
	open_pair(&c);
	attr_add_str(req, "request", "x");
	assert_int_equal(ipc_send(c.cli, req, -1), 0);
	assert_int_equal(ipc_send(c.cli, req, p[1]), 0);
	assert_int_equal(ipc_send(c.cli, req, -1), 0);
	assert_int_equal(ipc_send(c.cli, req, -1), 0);
	c.nreq = 4;
	attr_list_free(&req);
	ctx_run_and_close(&c);
	assert_int_equal(c.nsrv, 4);
	assert_int_equal(c.nfds_seen[0], 0);
	assert_int_equal(c.nfds_seen[1], 1);
	assert_int_equal(c.nfds_seen[2], 0);
	assert_int_equal(c.nfds_seen[3], 0);
	assert_true(pipe_at_eof(p[0]));
	close(p[0]);
}

/* The receiver closes the connection from inside on_message, without
 * taking the descriptor that came with the message. */
static void
test_ipc_fd_message_receiver_closes(void **state)
{
	struct attr_list *req = attr_list_new();
	struct ctx c;
	int p[2];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	ctx_init(&c);
	c.mode = MODE_CLOSE_IN_CB;
	open_pair(&c);
	attr_add_str(req, "request", "x");
	assert_int_equal(ipc_send(c.cli, req, p[1]), 0);
	/* A second pipelined message is never dispatched. */
	assert_int_equal(ipc_send(c.cli, req, -1), 0);
	attr_list_free(&req);
	ctx_run_and_close(&c);
	assert_int_equal(c.nsrv, 1);
	assert_int_equal(c.srv_closed, 0);
	/* The client saw the server hang up. */
	assert_int_equal(c.cli_closed, 1);
	assert_true(pipe_at_eof(p[0]));
	close(p[0]);
}

/* Write raw bytes as a peer that does not use lib/ipc, with fds. */
static void
raw_send(int fd, const char *data, size_t len, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * 16)];
	} cm;
	struct iovec iov = { (void *)data, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds > 0) {
		struct cmsghdr *h;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		h = CMSG_FIRSTHDR(&mh);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
	}
	assert_int_equal(sendmsg(fd, &mh, 0), (ssize_t)len);
}

/* Serve one raw peer: returns the on_close error seen by the server.
 * close_peer: 0 stay connected, 1 close, 2 shut down sending only and
 * check that the reply still arrives. */
static int
serve_raw(struct ctx *c, const char *data, size_t len, const int *fds,
    size_t nfds, int close_peer)
{
	char reply[256];
	ssize_t n;
	int sv[2];

	make_pair(sv);
	assert_int_equal(ipc_conn_new(&c->loop, sv[0], &srv_cb, c, &c->srv),
	    0);
	raw_send(sv[1], data, len, fds, nfds);
	if (close_peer == 1)
		close(sv[1]);
	else if (close_peer == 2)
		shutdown(sv[1], SHUT_WR);
	ctx_run_and_close(c);
	if (close_peer == 2) {
		n = read(sv[1], reply, sizeof(reply) - 1);
		assert_true(n > 0);
		reply[n] = '\0';
		assert_non_null(strstr(reply, "status=2.0.0\n\n"));
	}
	if (close_peer != 1)
		close(sv[1]);
	assert_int_equal(c->srv_closed, 1);
	return c->close_err;
}

static void
test_ipc_peer_closes_mid_message(void **state)
{
	static const char part[] = "request=deliver\nqueue_id=4F";
	struct ctx c;
	int p[2];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	ctx_init(&c);
	assert_int_equal(serve_raw(&c, part, sizeof(part) - 1, &p[1], 1, 1),
	    -ECONNRESET);
	close(p[1]);
	assert_int_equal(c.nsrv, 0);
	/* The descriptor of the unfinished message was closed. */
	assert_true(pipe_at_eof(p[0]));
	close(p[0]);

	/* Hanging up between messages is a clean end. */
	ctx_init(&c);
	assert_int_equal(serve_raw(&c, "a=1\n\n", 5, NULL, 0, 1), 0);
	assert_int_equal(c.nsrv, 1);

	/* Shutting down only the sending side, as socat does at the end
	 * of its input, still gets the reply, then a clean end. */
	ctx_init(&c);
	assert_int_equal(serve_raw(&c, "request=status\n\n", 16, NULL, 0,
	    2), 0);
	assert_int_equal(c.nsrv, 1);
}

static void
test_ipc_garbage_closes_with_error(void **state)
{
	static const char *garbage[] = {
		"\x01\x02\x03 binary junk\n\n",
		"GET / HTTP/1.0\r\n\r\n",
		"a=ok\n\nrequest=%zz\n\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		struct ctx c;
		int p[2];

		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		ctx_init(&c);
		/* The peer stays connected: the server must hang up. */
		assert_int_equal(serve_raw(&c, garbage[i], strlen(garbage[i]),
		    &p[1], 1, 0), -EPROTO);
		close(p[1]);
		assert_true(strlen(c.close_errstr) > 0);
		assert_true(pipe_at_eof(p[0]));
		close(p[0]);
	}
}

static void
test_ipc_line_too_long_closes(void **state)
{
	size_t len = ATTR_MAX_LINE + 100;
	char *junk = malloc(len);
	struct ctx c;

	(void)state;
	memset(junk, 'a', len);
	ctx_init(&c);
	assert_int_equal(serve_raw(&c, junk, len, NULL, 0, 0), -EPROTO);
	assert_string_equal(c.close_errstr, "line too long");
	free(junk);
}

static void
test_ipc_conn_limits(void **state)
{
	struct attr_limits lim = { .max_size = 64 };
	struct ctx c;
	int sv[2];
	char msg[80];

	(void)state;
	ctx_init(&c);
	make_pair(sv);
	assert_int_equal(ipc_conn_new(&c.loop, sv[0], &srv_cb, &c, &c.srv),
	    0);
	ipc_conn_set_limits(c.srv, &lim);
	assert_int_equal(ipc_conn_fd(c.srv), sv[0]);
	/* 60 bytes pass, 70 do not. */
	memset(msg, 'v', sizeof(msg));
	memcpy(msg, "x=", 2);
	msg[58] = '\n';
	msg[59] = '\n';
	raw_send(sv[1], msg, 60, NULL, 0);
	msg[58] = msg[59] = 'v';
	msg[68] = '\n';
	msg[69] = '\n';
	raw_send(sv[1], msg, 70, NULL, 0);
	ctx_run_and_close(&c);
	close(sv[1]);
	assert_int_equal(c.nsrv, 1);
	assert_int_equal(c.srv_closed, 1);
	assert_int_equal(c.close_err, -EPROTO);
	assert_string_equal(c.close_errstr, "message too large");
}

/* More descriptors than a message may carry: the connection is dropped
 * and every one of them closed. */
static void
test_ipc_too_many_fds(void **state)
{
	int fds[IPC_MAX_FDS + 2], p[2];
	struct ctx c;

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	for (size_t i = 0; i < IPC_MAX_FDS + 2; i++)
		fds[i] = p[1];
	ctx_init(&c);
	assert_int_equal(serve_raw(&c, "a=1\n\n", 5, fds, IPC_MAX_FDS + 2, 0),
	    -EPROTO);
	close(p[1]);
	assert_true(pipe_at_eof(p[0]));
	close(p[0]);
}

static void
test_ipc_peer_cred(void **state)
{
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int sv[2];

	(void)state;
	make_pair(sv);
	assert_int_equal(ipc_peer_cred(sv[0], &uid, &gid, &pid), 0);
	assert_int_equal(uid, getuid());
	assert_int_equal(gid, getgid());
	assert_int_equal(pid, getpid());
	assert_int_equal(ipc_peer_cred(sv[0], NULL, NULL, NULL), 0);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(ipc_peer_cred(sv[0], &uid, NULL, NULL), -EBADF);
}

/* A listening socket in a fresh temporary directory. */
static int
listen_at(char *dir, char *path, size_t pathlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, pathlen, "%s/sock", dir);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 16), 0);
	return fd;
}

struct server {
	uv_loop_t loop;
	uv_async_t stop;
	struct ipc_listener *listener;
	pthread_t thread;
	int accepted;
	int silent;	/* never answer */
	int conn_open;
};

static void
tsrv_on_message(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct server *s = arg;
	struct attr_list *rep = attr_list_new();
	const char *v;

	if (s->silent) {
		attr_list_free(&rep);
		return;
	}
	if ((v = attr_get_str(msg->attrs, "request")) != NULL &&
	    strcmp(v, "series") == 0) {
		/* Three messages, then the close ends the series. */
		for (int i = 0; i < 3; i++) {
			attr_list_free(&rep);
			rep = attr_list_new();
			attr_addf(rep, "seq", "%d", i);
			assert_int_equal(ipc_send(conn, rep, -1), 0);
		}
		attr_list_free(&rep);
		ipc_conn_finish(&conn);
		assert_null(conn);
		s->conn_open--;
		return;
	}
	if ((v = attr_get_str(msg->attrs, "request")) != NULL)
		attr_add_str(rep, "request_was", v);
	if (msg->nfds == 1) {
		char buf[64];
		ssize_t n = pread(msg->fds[0], buf, sizeof(buf), 0);

		if (n > 0)
			attr_add(rep, "content", buf, (size_t)n);
	}
	attr_add_str(rep, "status", "2.0.0");
	attr_add_str(rep, "text", "ok");
	ipc_send(conn, rep, -1);
	attr_list_free(&rep);
}

static void
tsrv_on_close(struct ipc_conn *conn, int err, const char *errstr, void *arg)
{
	struct server *s = arg;

	(void)conn;
	(void)err;
	(void)errstr;
	s->conn_open--;
}

static const struct ipc_callbacks tsrv_cb = {
	.on_message = tsrv_on_message,
	.on_close = tsrv_on_close,
};

static void
tsrv_on_conn(struct ipc_listener *l, int fd, void *arg)
{
	struct server *s = arg;
	struct ipc_conn *conn;
	uid_t uid;

	(void)l;
	assert_int_equal(ipc_peer_cred(fd, &uid, NULL, NULL), 0);
	assert_int_equal(uid, getuid());
	s->accepted++;
	if (ipc_conn_new(&s->loop, fd, &tsrv_cb, s, &conn) == 0)
		s->conn_open++;
}

static void
tsrv_stop(uv_async_t *a)
{
	struct server *s = a->data;

	ipc_listener_free(&s->listener);
	uv_close((uv_handle_t *)&s->stop, NULL);
}

static void *
tsrv_main(void *arg)
{
	struct server *s = arg;

	uv_run(&s->loop, UV_RUN_DEFAULT);
	return NULL;
}

static void
server_start(struct server *s, int listen_fd)
{
	assert_int_equal(uv_loop_init(&s->loop), 0);
	assert_int_equal(uv_async_init(&s->loop, &s->stop, tsrv_stop), 0);
	s->stop.data = s;
	assert_int_equal(ipc_listen(&s->loop, listen_fd, tsrv_on_conn, s,
	    &s->listener), 0);
	assert_int_equal(pthread_create(&s->thread, NULL, tsrv_main, s), 0);
}

/* Stop once every connection the clients closed has been noticed. */
static void
server_stop(struct server *s)
{
	uv_async_send(&s->stop);
	pthread_join(s->thread, NULL);
	assert_int_equal(s->conn_open, 0);
	assert_int_equal(uv_loop_close(&s->loop), 0);
}

static void
test_ipc_call_round_trip(void **state)
{
	char dir[] = "/tmp/pochta-ipc-XXXXXX", path[128];
	struct attr_list *req = attr_list_new(), *rep = NULL;
	struct server s = { 0 };
	const char *errstr = NULL;
	int fd;

	(void)state;
	server_start(&s, listen_at(dir, path, sizeof(path)));
	attr_add_str(req, "request", "status");
	assert_int_equal(ipc_call(path, req, &rep, 5000, &errstr), 0);
	assert_string_equal(attr_get_str(rep, "request_was"), "status");
	assert_string_equal(attr_get_str(rep, "status"), "2.0.0");
	assert_null(attr_get(rep, "content", NULL));
	attr_list_free(&rep);

	fd = temp_file_with("passed along");
	assert_int_equal(ipc_call_fd(path, req, fd, &rep, 5000, &errstr), 0);
	assert_string_equal(attr_get_str(rep, "content"), "passed along");
	/* The caller keeps its descriptor. */
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	attr_list_free(&rep);
	attr_list_free(&req);
	server_stop(&s);
	assert_int_equal(s.accepted, 2);
	unlink(path);
	rmdir(dir);
}

static void
test_ipc_call_timeout(void **state)
{
	char dir[] = "/tmp/pochta-ipc-XXXXXX", path[128];
	struct attr_list *req = attr_list_new(), *rep = NULL;
	struct server s = { .silent = 1 };
	const char *errstr = NULL;
	struct timespec t0, t1;
	long ms;

	(void)state;
	server_start(&s, listen_at(dir, path, sizeof(path)));
	attr_add_str(req, "request", "status");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ipc_call(path, req, &rep, 300, &errstr), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 250);
	assert_null(rep);
	assert_non_null(errstr);
	attr_list_free(&req);
	/* Give the server a moment to see the hang-up before stopping. */
	usleep(100 * 1000);
	server_stop(&s);
	unlink(path);
	rmdir(dir);
}

static void
test_ipc_call_errors(void **state)
{
	char dir[] = "/tmp/pochta-ipc-XXXXXX", path[128];
	struct attr_list *req = attr_list_new(), *rep = NULL;
	const char *errstr = NULL;
	char longpath[200];
	int lfd, sfd;

	(void)state;
	attr_add_str(req, "request", "status");
	assert_int_equal(ipc_call("/nonexistent/pochta/sock", req, &rep, 1000,
	    &errstr), -ENOENT);
	assert_non_null(errstr);
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(ipc_call(longpath, req, &rep, 1000, &errstr),
	    -ENAMETOOLONG);

	/* A server that answers garbage, hangs up without answering, or
	 * in the middle of its answer. */
	lfd = listen_at(dir, path, sizeof(path));
	for (int round = 0; round < 3; round++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			char buf[256];

			sfd = accept(lfd, NULL, NULL);
			(void)read(sfd, buf, sizeof(buf));
			if (round == 0)
				(void)write(sfd, "BAD\n\n", 5);
			if (round == 2)
				(void)write(sfd, "status=2.0.0\n", 13);
			_exit(0);
		}
		assert_int_equal(ipc_call(path, req, &rep, 5000, &errstr),
		    round == 0 ? -EPROTO : -ECONNRESET);
		assert_null(rep);
		waitpid(pid, NULL, 0);
	}
	close(lfd);
	unlink(path);
	rmdir(dir);
	attr_list_free(&req);
}

/* The blocking client: pipelined requests, then a series of messages
 * ended by the server's close. */
static void
test_ipc_client_pipelined_and_series(void **state)
{
	char dir[] = "/tmp/pochta-ipc-XXXXXX", path[128];
	struct attr_list *req = attr_list_new(), *rep = NULL;
	struct server s = { 0 };
	struct ipc_client *cl = NULL;
	const char *errstr = NULL;

	(void)state;
	server_start(&s, listen_at(dir, path, sizeof(path)));
	assert_int_equal(ipc_client_open(path, 5000, &cl, &errstr), 0);
	for (int i = 0; i < 3; i++) {
		attr_list_free(&req);
		req = attr_list_new();
		attr_addf(req, "request", "r%d", i);
		assert_int_equal(ipc_client_send(cl, req, -1, 5000, &errstr),
		    0);
	}
	for (int i = 0; i < 3; i++) {
		char want[16];

		snprintf(want, sizeof(want), "r%d", i);
		assert_int_equal(ipc_client_recv(cl, &rep, 5000, &errstr), 0);
		assert_string_equal(attr_get_str(rep, "request_was"), want);
		attr_list_free(&rep);
	}
	attr_list_free(&req);
	req = attr_list_new();
	attr_add_str(req, "request", "series");
	assert_int_equal(ipc_client_send(cl, req, -1, 5000, &errstr), 0);
	for (int i = 0; i < 3; i++) {
		char want[16];

		snprintf(want, sizeof(want), "%d", i);
		assert_int_equal(ipc_client_recv(cl, &rep, 5000, &errstr), 0);
		assert_string_equal(attr_get_str(rep, "seq"), want);
		attr_list_free(&rep);
	}
	assert_int_equal(ipc_client_recv(cl, &rep, 5000, &errstr),
	    -ENOTCONN);
	assert_null(rep);
	ipc_client_free(&cl);
	assert_null(cl);
	attr_list_free(&req);
	server_stop(&s);
	unlink(path);
	rmdir(dir);
}

/* ipc_connect() and ipc_listen() on one loop. */
static void
test_ipc_connect_and_listen(void **state)
{
	char dir[] = "/tmp/pochta-ipc-XXXXXX", path[128];
	struct attr_list *req = attr_list_new();
	struct server s = { 0 };
	struct ctx c;
	struct ipc_conn *bad;

	(void)state;
	ctx_init(&c);
	/* The thread server answers; this loop is the client. */
	server_start(&s, listen_at(dir, path, sizeof(path)));
	c.mode = MODE_CLIENT_ONLY;
	assert_int_equal(ipc_connect(&c.loop, path, &cli_cb, &c, &c.cli), 0);
	attr_add_str(req, "request", "hello");
	assert_int_equal(ipc_send(c.cli, req, temp_file_with("via connect")),
	    0);
	c.nreq = 1;
	assert_int_equal(ipc_connect(&c.loop, "/nonexistent/sock", &cli_cb,
	    &c, &bad), -ENOENT);
	ctx_run_and_close(&c);
	assert_int_equal(c.nrep, 1);
	assert_string_equal(c.got, "via connect");
	attr_list_free(&req);
	usleep(100 * 1000);
	server_stop(&s);
	unlink(path);
	rmdir(dir);
}

static int baseline_fds;

static int
count_open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

/* Runs last: every descriptor the tests above passed, received, dropped
 * or refused has been closed by the library. */
static void
test_ipc_no_descriptor_leaked(void **state)
{
	(void)state;
	assert_int_equal(count_open_fds(), baseline_fds);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipc_round_trip),
		cmocka_unit_test(test_ipc_pipelined_answered_in_order),
		cmocka_unit_test(test_ipc_large_message_partial_writes),
		cmocka_unit_test(test_ipc_output_limit),
		cmocka_unit_test(test_ipc_fd_passed),
		cmocka_unit_test(test_ipc_fd_closed_when_not_taken),
		cmocka_unit_test(test_ipc_fd_travels_with_its_message),
		cmocka_unit_test(test_ipc_fd_message_receiver_closes),
		cmocka_unit_test(test_ipc_peer_closes_mid_message),
		cmocka_unit_test(test_ipc_garbage_closes_with_error),
		cmocka_unit_test(test_ipc_line_too_long_closes),
		cmocka_unit_test(test_ipc_conn_limits),
		cmocka_unit_test(test_ipc_too_many_fds),
		cmocka_unit_test(test_ipc_peer_cred),
		cmocka_unit_test(test_ipc_call_round_trip),
		cmocka_unit_test(test_ipc_call_timeout),
		cmocka_unit_test(test_ipc_call_errors),
		cmocka_unit_test(test_ipc_client_pipelined_and_series),
		cmocka_unit_test(test_ipc_connect_and_listen),
		cmocka_unit_test(test_ipc_no_descriptor_leaked),
	};

	/* libuv keeps a process-wide pipe from the first loop on. */
	{
		uv_loop_t loop;

		uv_loop_init(&loop);
		uv_loop_close(&loop);
	}
	baseline_fds = count_open_fds();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
