/*
 * stream_test.c - unit tests for lib/stream: a server and a client stream on
 * 127.0.0.1 (or a UNIX socket) inside one libuv loop. Plaintext, implicit
 * TLS, STARTTLS with pipelined plaintext, hostile and silent peers,
 * back-pressure, input limits, pause/resume, timeouts.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "buf.h"
#include "stream.h"
#include "tls.h"

struct fixture;

/* One end of a connection, as a protocol would keep it. */
struct end {
	struct fixture *f;
	struct stream *s;
	struct buf got;		/* everything delivered */
	int connected;
	int tls_done;
	int closed;
	int error;
	char reason[256];
	int drained;
	/* Custom input handling; default: use everything. */
	size_t (*on_data)(struct end *e, const char *d, size_t len);
};

struct fixture {
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_pipe_t unix_listener;
	int listening;
	int unix_listening;
	int port;
	char dir[64];
	char cert[128];
	char key[128];
	struct tls_ctx *server_ctx;
	struct tls_ctx *client_ctx;
	struct end srv;
	struct end cli;
	/* What the server does on accept. */
	int implicit_tls;
	unsigned handshake_ms;
	size_t input_limit;
	size_t write_high;
	size_t write_limit;
};

/* A shared certificate for the whole run: key generation is slow. */
static char g_dir[64];

static size_t
end_data(struct stream *s, const char *d, size_t len)
{
	struct end *e = stream_arg(s);

	assert_int_equal(d[len], '\0');
	if (e->on_data != NULL)
		return e->on_data(e, d, len);
	assert_int_equal(buf_append(&e->got, d, len), 0);
	return len;
}

static void
end_close(struct stream *s, int error, const char *reason)
{
	struct end *e = stream_arg(s);

	assert_false(e->closed);
	e->closed = 1;
	e->error = error;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	e->s = NULL;
}

static void
end_connected(struct stream *s)
{
	struct end *e = stream_arg(s);

	e->connected = 1;
}

static void
end_drain(struct stream *s)
{
	struct end *e = stream_arg(s);

	e->drained++;
}

static const struct stream_ops ops = {
	.connected = end_connected,
	.data = end_data,
	.drain = end_drain,
	.close = end_close,
};

static void
tls_done_cb(struct stream *s)
{
	struct end *e = stream_arg(s);

	e->tls_done = 1;
}

static void
on_connection(uv_stream_t *l, int status)
{
	struct fixture *f = l->data;

	assert_int_equal(status, 0);
	assert_null(f->srv.s);
	assert_int_equal(stream_accept(l, &ops, &f->srv, &f->srv.s), 0);
	stream_set_limits(f->srv.s, f->input_limit, f->write_high,
	    f->write_limit);
	stream_set_timeouts(f->srv.s, f->handshake_ms, 0);
	if (f->implicit_tls)
		assert_int_equal(stream_starttls(f->srv.s, f->server_ctx,
		    NULL, tls_done_cb), 0);
}

static int
group_setup(void **state)
{
	char cert[128], key[128], *err = NULL;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	snprintf(g_dir, sizeof(g_dir), "/tmp/stream_test.XXXXXX");
	if (mkdtemp(g_dir) == NULL)
		return -1;
	snprintf(cert, sizeof(cert), "%s/cert.pem", g_dir);
	snprintf(key, sizeof(key), "%s/key.pem", g_dir);
	if (tls_selfsigned_create(cert, key, "mx.example.test", 1, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_in sin;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char *err = NULL;

	assert_non_null(f);
	snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", g_dir);
	snprintf(f->key, sizeof(f->key), "%s/key.pem", g_dir);
	assert_int_equal(tls_ctx_server_new(f->cert, f->key, &f->server_ctx,
	    &err), 0);
	assert_int_equal(tls_ctx_client_new(TLS_VERIFY_NONE, NULL,
	    &f->client_ctx, &err), 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_tcp_init(&f->loop, &f->listener), 0);
	f->listener.data = f;
	uv_ip4_addr("127.0.0.1", 0, &sin);
	assert_int_equal(uv_tcp_bind(&f->listener,
	    (const struct sockaddr *)&sin, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 16,
	    on_connection), 0);
	f->listening = 1;
	assert_int_equal(uv_tcp_getsockname(&f->listener,
	    (struct sockaddr *)&ss, &len), 0);
	f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	f->srv.f = f->cli.f = f;
	buf_init(&f->srv.got, 64 << 20);
	buf_init(&f->cli.got, 64 << 20);
	*state = f;
	return 0;
}

/* Run the loop until cond(f) holds; fail after a few seconds. */
static int
run_until(struct fixture *f, int (*cond)(struct fixture *))
{
	uint64_t end = uv_now(&f->loop) + 10000;

	while (!cond(f)) {
		if (uv_now(&f->loop) > end)
			return 0;
		uv_run(&f->loop, UV_RUN_ONCE);
		uv_update_time(&f->loop);
	}
	return 1;
}

/* Let the loop turn for ms milliseconds. */
static void
run_for(struct fixture *f, unsigned ms)
{
	uint64_t end;

	uv_update_time(&f->loop);
	end = uv_now(&f->loop) + ms;
	while (uv_now(&f->loop) < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		usleep(1000);
		uv_update_time(&f->loop);
	}
}

static void
close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	if (f->srv.s != NULL)
		stream_abort(f->srv.s);
	if (f->cli.s != NULL)
		stream_abort(f->cli.s);
	uv_close((uv_handle_t *)&f->listener, NULL);
	if (f->unix_listening)
		uv_close((uv_handle_t *)&f->unix_listener, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	/* Every handle of every stream is gone: the loop closes cleanly. */
	uv_walk(&f->loop, close_walk, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	tls_ctx_free(&f->server_ctx);
	tls_ctx_free(&f->client_ctx);
	buf_release(&f->srv.got);
	buf_release(&f->cli.got);
	free(f);
	return 0;
}

static void
connect_client(struct fixture *f)
{
	struct sockaddr_in sin;

	uv_ip4_addr("127.0.0.1", f->port, &sin);
	assert_int_equal(stream_connect(&f->loop, (struct sockaddr *)&sin,
	    5000, &ops, &f->cli, &f->cli.s), 0);
}

static int
both_connected(struct fixture *f)
{
	return f->cli.connected && f->srv.s != NULL;
}

static int
both_closed(struct fixture *f)
{
	return f->cli.closed && f->srv.closed;
}

static int
srv_closed(struct fixture *f)
{
	return f->srv.closed;
}

static int
cli_closed(struct fixture *f)
{
	return f->cli.closed;
}

static int
both_tls(struct fixture *f)
{
	return f->cli.tls_done && f->srv.tls_done;
}

static size_t g_want;

static int
srv_got_enough(struct fixture *f)
{
	return f->srv.got.len >= g_want || f->srv.closed;
}

static int
cli_got_enough(struct fixture *f)
{
	return f->cli.got.len >= g_want || f->cli.closed;
}

static void
test_stream_plain_exchange_and_addresses(void **state)
{
	struct fixture *f = *state;

	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_string_equal(stream_peer_addr(f->srv.s), "127.0.0.1");
	assert_string_equal(stream_local_addr(f->srv.s), "127.0.0.1");
	assert_int_equal(stream_local_port(f->srv.s), f->port);
	assert_int_equal(stream_peer_port(f->cli.s), f->port);
	assert_int_equal(stream_peer_port(f->srv.s),
	    stream_local_port(f->cli.s));
	assert_true(stream_peer_loopback(f->srv.s));
	assert_null(stream_tls(f->srv.s));
	assert_false(stream_tls_active(f->srv.s));

	assert_int_equal(stream_writef(f->srv.s, "220 %s ESMTP\r\n", "mx"), 0);
	assert_int_equal(stream_write(f->cli.s, "EHLO c\r\n", 8), 0);
	g_want = 8;
	assert_true(run_until(f, srv_got_enough));
	g_want = 13;
	assert_true(run_until(f, cli_got_enough));
	assert_string_equal(f->srv.got.data, "EHLO c\r\n");
	assert_string_equal(f->cli.got.data, "220 mx ESMTP\r\n");

	/* The client leaves; the server hears it as the peer closing. */
	stream_close(f->cli.s);
	assert_true(stream_closing(f->cli.s));
	assert_int_equal(stream_write(f->cli.s, "x", 1), -EPIPE);
	assert_true(run_until(f, both_closed));
	assert_int_equal(f->cli.error, 0);
	assert_int_equal(f->srv.error, UV_EOF);
	assert_string_equal(f->srv.reason, "connection closed by peer");
}

static void
test_stream_implicit_tls_both_ways(void **state)
{
	struct fixture *f = *state;
	struct tls *st, *ct;
	char *cn;

	f->implicit_tls = 1;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_starttls(f->cli.s, f->client_ctx,
	    "mx.example.test", tls_done_cb), 0);
	assert_int_equal(stream_starttls(f->cli.s, f->client_ctx, NULL, NULL),
	    -EALREADY);
	/* Written during the handshake: held, then sent encrypted. */
	assert_int_equal(stream_write(f->cli.s, "a1 CAPABILITY\r\n", 15), 0);
	assert_true(run_until(f, both_tls));
	assert_true(stream_tls_active(f->srv.s));
	st = stream_tls(f->srv.s);
	ct = stream_tls(f->cli.s);
	assert_string_equal(tls_version(st), "TLSv1.3");
	assert_string_equal(tls_cipher(st), tls_cipher(ct));
	assert_true(tls_cipher_bits(st) >= 128);
	cn = tls_peer_cn(ct);
	assert_string_equal(cn, "mx.example.test");
	free(cn);
	assert_string_equal(tls_servername(st), "mx.example.test");

	g_want = 15;
	assert_true(run_until(f, srv_got_enough));
	assert_string_equal(f->srv.got.data, "a1 CAPABILITY\r\n");
	assert_int_equal(stream_write(f->srv.s, "* OK\r\n", 6), 0);
	/* Graceful close sends the reply, then close_notify. */
	stream_close(f->srv.s);
	assert_true(run_until(f, both_closed));
	assert_string_equal(f->cli.got.data, "* OK\r\n");
	assert_int_equal(f->cli.error, UV_EOF);
	assert_string_equal(f->cli.reason, "connection closed by peer");
	assert_int_equal(f->srv.error, 0);
}

static void
pattern(char *p, size_t off, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (char)((off + i) * 7 % 251);
}

static void
check_pattern(const struct buf *b, size_t n)
{
	char *want = malloc(n);

	assert_int_equal(b->len, n);
	pattern(want, 0, n);
	assert_memory_equal(b->data, want, n);
	free(want);
}

static void
test_stream_tls_large_transfer(void **state)
{
	struct fixture *f = *state;
	const size_t total = 8 << 20, chunk = 256 << 10;
	size_t off;
	char *p = malloc(chunk);

	f->implicit_tls = 1;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_starttls(f->cli.s, f->client_ctx, NULL,
	    tls_done_cb), 0);
	assert_true(run_until(f, both_tls));
	/* Both directions at once, in chunks, as fast as the loop goes. */
	for (off = 0; off < total; off += chunk) {
		pattern(p, off, chunk);
		assert_int_equal(stream_write(f->cli.s, p, chunk), 0);
		assert_int_equal(stream_write(f->srv.s, p, chunk), 0);
		while (stream_write_full(f->cli.s) ||
		    stream_write_full(f->srv.s))
			uv_run(&f->loop, UV_RUN_ONCE);
	}
	g_want = total;
	assert_true(run_until(f, srv_got_enough));
	assert_true(run_until(f, cli_got_enough));
	check_pattern(&f->srv.got, total);
	check_pattern(&f->cli.got, total);
	assert_false(f->srv.closed || f->cli.closed);
	free(p);
}

static void
test_stream_tls_close_flushes_output(void **state)
{
	struct fixture *f = *state;
	const size_t total = 2 << 20;
	char *p = malloc(total);

	f->implicit_tls = 1;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_starttls(f->cli.s, f->client_ctx, NULL,
	    tls_done_cb), 0);
	assert_true(run_until(f, both_tls));
	/* Queue far more than the socket takes at once, and close at once:
	 * all of it arrives, then close_notify. */
	pattern(p, 0, total);
	assert_int_equal(stream_write(f->srv.s, p, total), 0);
	stream_close(f->srv.s);
	assert_int_equal(stream_write(f->srv.s, "x", 1), -EPIPE);
	assert_true(run_until(f, both_closed));
	check_pattern(&f->cli.got, total);
	assert_int_equal(f->cli.error, UV_EOF);
	assert_int_equal(f->srv.error, 0);
	free(p);
}

/* An SMTP server's view: one line at a time, STARTTLS switches. */
static size_t
smtp_lines(struct end *e, const char *d, size_t len)
{
	const char *lf = memchr(d, '\n', len);
	size_t n;

	if (lf == NULL)
		return 0;
	n = (size_t)(lf - d) + 1;
	assert_int_equal(buf_append(&e->got, d, n), 0);
	if (n >= 8 && strncmp(d, "STARTTLS", 8) == 0) {
		assert_int_equal(stream_write(e->s, "220 go ahead\r\n", 14),
		    0);
		assert_int_equal(stream_starttls(e->s, e->f->server_ctx, NULL,
		    tls_done_cb), 0);
	} else {
		assert_int_equal(stream_write(e->s, "250 ok\r\n", 8), 0);
	}
	return n;
}

static int
cli_got_220(struct fixture *f)
{
	return strstr(f->cli.got.data ? f->cli.got.data : "", "220 ") !=
	    NULL || f->cli.closed;
}

static void
test_stream_starttls_discards_pipelined_plaintext(void **state)
{
	struct fixture *f = *state;
	static const char attack[] = "STARTTLS\r\n"
	    "MAIL FROM:<attacker@evil.test>\r\nRCPT TO:<x@y.test>\r\n";

	f->srv.on_data = smtp_lines;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	/* One write: the injected commands arrive with STARTTLS. */
	assert_int_equal(stream_write(f->cli.s, attack, sizeof(attack) - 1),
	    0);
	assert_true(run_until(f, cli_got_220));
	assert_false(f->cli.closed);
	buf_reset(&f->cli.got);
	assert_int_equal(stream_starttls(f->cli.s, f->client_ctx, NULL,
	    tls_done_cb), 0);
	assert_true(run_until(f, both_tls));
	assert_int_equal(stream_write(f->cli.s, "QUIT\r\n", 6), 0);
	g_want = 8;
	assert_true(run_until(f, cli_got_enough));
	assert_string_equal(f->cli.got.data, "250 ok\r\n");
	/* The server saw STARTTLS and then only what came inside TLS. */
	assert_string_equal(f->srv.got.data, "STARTTLS\r\nQUIT\r\n");
}

static void
test_stream_starttls_late_plaintext_fails_handshake(void **state)
{
	struct fixture *f = *state;

	f->srv.on_data = smtp_lines;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_write(f->cli.s, "STARTTLS\r\n", 10), 0);
	assert_true(run_until(f, cli_got_220));
	/* A client that keeps talking plaintext after the 220. */
	assert_int_equal(stream_write(f->cli.s, "MAIL FROM:<a@b.test>\r\n", 22),
	    0);
	assert_true(run_until(f, both_closed));
	assert_int_equal(f->srv.error, -EPROTO);
	assert_non_null(strstr(f->srv.reason, "TLS handshake failed"));
	assert_string_equal(f->srv.got.data, "STARTTLS\r\n");
	assert_false(f->srv.tls_done);
}

/* Forget the last connection's ends, for a second one in one test. */
static void
reset_ends(struct fixture *f)
{
	assert_true(f->srv.closed && f->cli.closed);
	buf_release(&f->srv.got);
	buf_release(&f->cli.got);
	memset(&f->srv, 0, sizeof(f->srv));
	memset(&f->cli, 0, sizeof(f->cli));
	f->srv.f = f->cli.f = f;
	buf_init(&f->srv.got, 64 << 20);
	buf_init(&f->cli.got, 64 << 20);
}

static void
test_stream_garbage_instead_of_clienthello(void **state)
{
	struct fixture *f = *state;
	static const char bad_hello[] =
	    "\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03";

	f->implicit_tls = 1;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_write(f->cli.s,
	    "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), 0);
	assert_true(run_until(f, both_closed));
	assert_int_equal(f->srv.error, -EPROTO);
	assert_non_null(strstr(f->srv.reason, "TLS handshake failed: "));
	assert_int_equal(f->srv.got.len, 0);
	assert_int_equal(f->cli.error, UV_EOF);

	/* A TLS record holding a malformed ClientHello: the alert that
	 * explains the failure goes out before the connection ends. */
	reset_ends(f);
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_write(f->cli.s, bad_hello,
	    sizeof(bad_hello) - 1), 0);
	assert_true(run_until(f, both_closed));
	assert_int_equal(f->srv.error, -EPROTO);
	assert_true(f->cli.got.len >= 7);
	assert_int_equal(f->cli.got.data[0], 0x15);	/* alert record */
	assert_int_equal(f->cli.error, UV_EOF);
}

static void
test_stream_handshake_timeout(void **state)
{
	struct fixture *f = *state;

	f->implicit_tls = 1;
	f->handshake_ms = 150;
	connect_client(f);
	assert_true(run_until(f, srv_closed));
	assert_int_equal(f->srv.error, UV_ETIMEDOUT);
	assert_string_equal(f->srv.reason, "TLS handshake timed out");
	assert_true(run_until(f, cli_closed));
	assert_int_equal(f->cli.error, UV_EOF);
}

static void
test_stream_peer_closes_mid_handshake(void **state)
{
	struct fixture *f = *state;
	/* The start of a ClientHello record, promising more than is sent. */
	static const char partial[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc";

	f->implicit_tls = 1;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_write(f->cli.s, partial, sizeof(partial) - 1),
	    0);
	stream_close(f->cli.s);
	assert_true(run_until(f, both_closed));
	assert_int_equal(f->srv.error, UV_EOF);
	assert_string_equal(f->srv.reason,
	    "connection closed during TLS handshake");
	assert_false(f->srv.tls_done);
}

static int
srv_full(struct fixture *f)
{
	return f->srv.s != NULL && stream_write_full(f->srv.s);
}

static void
test_stream_backpressure(void **state)
{
	struct fixture *f = *state;
	const size_t chunk = 16 << 10;
	char *p = malloc(1 << 20);
	size_t sent = 0;

	f->write_high = 128 << 10;
	f->write_limit = 1 << 20;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	/* A client that does not read its replies. */
	stream_read_pause(f->cli.s);
	while (!stream_write_full(f->srv.s) && sent < (64u << 20)) {
		pattern(p, sent, chunk);
		assert_int_equal(stream_write(f->srv.s, p, chunk), 0);
		sent += chunk;
		run_for(f, 1);
	}
	/* The kernel's buffers filled and the queue passed its mark. */
	assert_true(stream_write_full(f->srv.s));
	run_for(f, 50);
	assert_true(stream_write_full(f->srv.s));
	assert_true(stream_write_queued(f->srv.s) > 64u << 10);
	/* The hard limit refuses what would pass it, and keeps nothing. */
	assert_int_equal(stream_write(f->srv.s, p, 1 << 20), -ENOBUFS);
	/* While full, the server does not read the client's commands. */
	assert_int_equal(stream_write(f->cli.s, "NOOP\r\n", 6), 0);
	run_for(f, 50);
	assert_int_equal(f->srv.got.len, 0);
	assert_int_equal(f->srv.drained, 0);

	/* The client reads again: everything arrives, intact. */
	stream_read_resume(f->cli.s);
	g_want = sent;
	assert_true(run_until(f, cli_got_enough));
	check_pattern(&f->cli.got, sent);
	g_want = 6;
	assert_true(run_until(f, srv_got_enough));
	assert_string_equal(f->srv.got.data, "NOOP\r\n");
	assert_true(f->srv.drained >= 1);
	assert_false(srv_full(f));
	free(p);
}

static void
test_stream_input_limit(void **state)
{
	struct fixture *f = *state;
	char big[3000];

	f->srv.on_data = smtp_lines;
	f->input_limit = 1024;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	memset(big, 'A', sizeof(big));
	assert_int_equal(stream_write(f->cli.s, big, sizeof(big)), 0);
	assert_true(run_until(f, srv_closed));
	assert_int_equal(f->srv.error, -ENOBUFS);
	assert_string_equal(f->srv.reason, "input line too long");
}

/* Uses one line per call, then waits (as for a DNS answer). */
static size_t
one_line_then_pause(struct end *e, const char *d, size_t len)
{
	const char *lf = memchr(d, '\n', len);
	size_t n;

	if (lf == NULL)
		return 0;
	n = (size_t)(lf - d) + 1;
	assert_int_equal(buf_append(&e->got, d, n), 0);
	stream_read_pause(e->s);
	return n;
}

static int
srv_got_line(struct fixture *f)
{
	return f->srv.got.len > 0 &&
	    f->srv.got.data[f->srv.got.len - 1] == '\n';
}

static void
test_stream_pause_resume_redelivers(void **state)
{
	struct fixture *f = *state;
	int i;

	f->srv.on_data = one_line_then_pause;
	connect_client(f);
	assert_true(run_until(f, both_connected));
	assert_int_equal(stream_write(f->cli.s,
	    "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n", 48), 0);
	assert_true(run_until(f, srv_got_line));
	run_for(f, 30);
	assert_string_equal(f->srv.got.data, "MAIL FROM:<a@b.test>\r\n");
	/* Each resume offers the buffered rest; no new input is needed. */
	for (i = 0; i < 2; i++) {
		size_t before = f->srv.got.len;

		stream_read_resume(f->srv.s);
		assert_int_equal(f->srv.got.len, before);	/* not nested */
		run_for(f, 30);
		assert_true(f->srv.got.len > before);
	}
	assert_string_equal(f->srv.got.data, "MAIL FROM:<a@b.test>\r\n"
	    "RCPT TO:<c@d.test>\r\nDATA\r\n");
}

static void
idle_reply(struct stream *s)
{
	stream_write(s, "421 4.4.2 timeout\r\n", 19);
	stream_close(s);
}

static void
test_stream_idle_timeout(void **state)
{
	struct fixture *f = *state;

	connect_client(f);
	assert_true(run_until(f, both_connected));
	stream_set_idle_timeout(f->srv.s, 100, idle_reply);
	assert_true(run_until(f, both_closed));
	assert_string_equal(f->cli.got.data, "421 4.4.2 timeout\r\n");
	assert_int_equal(f->cli.error, UV_EOF);
	assert_int_equal(f->srv.error, 0);
}

static void
test_stream_idle_timer_restarts_on_input(void **state)
{
	struct fixture *f = *state;
	int i;

	connect_client(f);
	assert_true(run_until(f, both_connected));
	stream_set_idle_timeout(f->srv.s, 150, NULL);
	/* A slow but steady client is not idle. */
	for (i = 0; i < 8; i++) {
		assert_int_equal(stream_write(f->cli.s, ".", 1), 0);
		run_for(f, 50);
	}
	assert_false(f->srv.closed);
	assert_int_equal(f->srv.got.len, 8);
	assert_true(run_until(f, srv_closed));
	assert_int_equal(f->srv.error, UV_ETIMEDOUT);
}

static void
test_stream_idle_timeout_default_closes(void **state)
{
	struct fixture *f = *state;

	connect_client(f);
	assert_true(run_until(f, both_connected));
	stream_set_idle_timeout(f->srv.s, 100, NULL);
	assert_true(run_until(f, srv_closed));
	assert_int_equal(f->srv.error, UV_ETIMEDOUT);
	assert_string_equal(f->srv.reason, "idle timeout");
}

static void
test_stream_connect_refused(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_in sin;
	struct sockaddr_un sun;
	socklen_t len = sizeof(sin);
	struct stream *s;
	int fd;

	/* A port bound but not listening refuses connections. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	uv_ip4_addr("127.0.0.1", 0, &sin);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	assert_int_equal(stream_connect(&f->loop, (struct sockaddr *)&sin,
	    2000, &ops, &f->cli, &f->cli.s), 0);
	assert_true(run_until(f, cli_closed));
	assert_false(f->cli.connected);
	assert_int_equal(f->cli.error, UV_ECONNREFUSED);
	assert_non_null(strstr(f->cli.reason, "connect to 127.0.0.1 port"));
	close(fd);

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_int_equal(stream_connect(&f->loop, (struct sockaddr *)&sun,
	    0, &ops, &f->cli, &s), -EAFNOSUPPORT);
	assert_null(s);
}

static void
test_stream_connect_timeout(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int lfd, fds[8], i;

	/* A listener whose accept queue is full drops further SYNs, so
	 * a connection to it never completes. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	uv_ip4_addr("127.0.0.1", 0, &sin);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	for (i = 0; i < 8; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fds[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	usleep(50000);
	assert_int_equal(stream_connect(&f->loop, (struct sockaddr *)&sin,
	    200, &ops, &f->cli, &f->cli.s), 0);
	assert_true(run_until(f, cli_closed));
	assert_false(f->cli.connected);
	assert_int_equal(f->cli.error, UV_ETIMEDOUT);
	assert_non_null(strstr(f->cli.reason, "timed out"));
	for (i = 0; i < 8; i++)
		close(fds[i]);
	close(lfd);
}

static void
on_unix_connection(uv_stream_t *l, int status)
{
	struct fixture *f = l->data;

	assert_int_equal(status, 0);
	assert_int_equal(stream_accept(l, &ops, &f->srv, &f->srv.s), 0);
}

static int
srv_accepted(struct fixture *f)
{
	return f->srv.s != NULL;
}

static void
test_stream_unix_socket_and_fd(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_un sun;
	char path[128];
	struct ucred cred;
	socklen_t credlen = sizeof(cred);
	int fd;

	snprintf(path, sizeof(path), "%s/sock", g_dir);
	unlink(path);
	assert_int_equal(uv_pipe_init(&f->loop, &f->unix_listener, 0), 0);
	f->unix_listener.data = f;
	f->unix_listening = 1;
	assert_int_equal(uv_pipe_bind(&f->unix_listener, path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f->unix_listener, 4,
	    on_unix_connection), 0);

	/* The client end is a plain connected fd, as passed over IPC. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_true(strlen(path) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, path, strlen(path) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(stream_open_fd(&f->loop, fd, &ops, &f->cli,
	    &f->cli.s), 0);
	assert_true(run_until(f, srv_accepted));
	assert_string_equal(stream_peer_addr(f->srv.s), "local");
	assert_int_equal(stream_peer_port(f->srv.s), 0);
	assert_true(stream_peer_loopback(f->srv.s));
	/* The fd is there for SO_PEERCRED: the peer is this very process. */
	assert_true(stream_fileno(f->srv.s) >= 0);
	assert_int_equal(getsockopt(stream_fileno(f->srv.s), SOL_SOCKET,
	    SO_PEERCRED, &cred, &credlen), 0);
	assert_int_equal(cred.pid, getpid());

	assert_int_equal(stream_write(f->cli.s, "name=value\n\n", 12), 0);
	g_want = 12;
	assert_true(run_until(f, srv_got_enough));
	assert_string_equal(f->srv.got.data, "name=value\n\n");
	stream_abort(f->cli.s);
	assert_int_equal(stream_fileno(f->cli.s), -1);
	assert_true(run_until(f, both_closed));
	assert_int_equal(f->cli.error, 0);
	assert_int_equal(f->srv.error, UV_EOF);

	/* A bad fd is refused, and closed. */
	assert_int_equal(stream_open_fd(&f->loop, -1, &ops, &f->cli,
	    &f->cli.s), -EBADF);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_stream_plain_exchange_and_addresses),
		T(test_stream_implicit_tls_both_ways),
		T(test_stream_tls_large_transfer),
		T(test_stream_tls_close_flushes_output),
		T(test_stream_starttls_discards_pipelined_plaintext),
		T(test_stream_starttls_late_plaintext_fails_handshake),
		T(test_stream_garbage_instead_of_clienthello),
		T(test_stream_handshake_timeout),
		T(test_stream_peer_closes_mid_handshake),
		T(test_stream_backpressure),
		T(test_stream_input_limit),
		T(test_stream_pause_resume_redelivers),
		T(test_stream_idle_timeout),
		T(test_stream_idle_timer_restarts_on_input),
		T(test_stream_idle_timeout_default_closes),
		T(test_stream_connect_refused),
		T(test_stream_connect_timeout),
		T(test_stream_unix_socket_and_fd),
#undef T
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
