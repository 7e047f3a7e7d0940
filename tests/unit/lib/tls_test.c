/*
 * tls_test.c - unit tests for lib/tls: self-signed certificates, context
 * errors, and two engines talking through memory (handshake, data, close,
 * verification, garbage input, an old protocol version refused).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

struct fixture {
	char dir[64];
	char cert[128];
	char key[128];
	struct tls_ctx *server;
	struct tls_ctx *client;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char *err = NULL;

	snprintf(f->dir, sizeof(f->dir), "/tmp/tls_test.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
	if (tls_selfsigned_create(f->cert, f->key, "mx.example.test", 30,
	    &err) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	if (tls_ctx_server_new(f->cert, f->key, &f->server, &err) != 0 ||
	    tls_ctx_client_new(TLS_VERIFY_NONE, NULL, &f->client, &err) != 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	tls_ctx_free(&f->server);
	tls_ctx_free(&f->client);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Move waiting ciphertext from one engine to the other. */
static size_t
move(struct tls *from, struct tls *to)
{
	char b[4096];
	size_t n, total = 0;

	while ((n = tls_out_take(from, b, sizeof(b))) > 0) {
		assert_int_equal(tls_feed(to, b, n), 0);
		total += n;
	}
	return total;
}

/* Run both handshakes to the end; returns the server's and client's
 * results through the pointers. */
static void
handshake(struct tls *srv, struct tls *cli, int *rs, int *rc)
{
	int i;

	*rs = *rc = -EAGAIN;
	for (i = 0; i < 20; i++) {
		if (*rc == -EAGAIN)
			*rc = tls_handshake(cli);
		move(cli, srv);
		if (*rs == -EAGAIN)
			*rs = tls_handshake(srv);
		move(srv, cli);
		if (*rs != -EAGAIN && *rc != -EAGAIN)
			break;
		if (*rs == -EPROTO || *rc == -EPROTO) {
			/* Let the other side read the alert. */
			if (*rc == -EAGAIN)
				*rc = tls_handshake(cli);
			if (*rs == -EAGAIN)
				*rs = tls_handshake(srv);
			break;
		}
	}
}

static void
test_tls_selfsigned_files(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	X509 *x;
	FILE *fp;
	GENERAL_NAMES *sans;
	const GENERAL_NAME *gn;
	const unsigned char *dns;

	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->cert, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);

	fp = fopen(f->cert, "r");
	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	assert_int_equal(X509_get_version(x), 2);	/* v3 */
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(sans);
	assert_int_equal(sk_GENERAL_NAME_num(sans), 1);
	gn = sk_GENERAL_NAME_value(sans, 0);
	assert_int_equal(gn->type, GEN_DNS);
	dns = ASN1_STRING_get0_data(gn->d.dNSName);
	assert_string_equal((const char *)dns, "mx.example.test");
	assert_int_equal(X509_check_host(x, "mx.example.test", 0, 0, NULL), 1);
	/* Valid now, and not for ever. */
	assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) <= 0);
	assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
	GENERAL_NAMES_free(sans);
	X509_free(x);
}

static void
test_tls_selfsigned_replaces_and_refuses_bad_input(void **state)
{
	struct fixture *f = *state;
	char cert[160], key[160], *err = NULL;
	struct tls_ctx *ctx = NULL;
	struct stat st;

	snprintf(cert, sizeof(cert), "%s/c2.pem", f->dir);
	snprintf(key, sizeof(key), "%s/k2.pem", f->dir);
	/* A key file that was world-readable is replaced by a 0600 one. */
	fclose(fopen(key, "w"));
	chmod(key, 0644);
	assert_int_equal(tls_selfsigned_create(cert, key, "127.0.0.1", 1,
	    &err), 0);
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tls_ctx_server_new(cert, key, &ctx, &err), 0);
	tls_ctx_free(&ctx);
	assert_null(ctx);

	assert_int_equal(tls_selfsigned_create(cert, key, "a,DNS:evil", 1,
	    &err), -EINVAL);
	assert_non_null(strstr(err, "a,DNS:evil"));
	free(err);
	assert_int_equal(tls_selfsigned_create(cert, key, "", 1, &err),
	    -EINVAL);
	free(err);
	assert_int_equal(tls_selfsigned_create(cert, key, "x.test", 0, &err),
	    -EINVAL);
	free(err);
	assert_int_equal(tls_selfsigned_create("/nonexistent/dir/c.pem",
	    "/nonexistent/dir/k.pem", "x.test", 1, &err), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/dir/k.pem"));
	free(err);
}

static void
test_tls_ctx_server_errors(void **state)
{
	struct fixture *f = *state;
	char cert[160], key[160], *err = NULL;
	struct tls_ctx *ctx = NULL;

	assert_int_equal(tls_ctx_server_new("/nonexistent/cert.pem", f->key,
	    &ctx, &err), -ENOENT);
	assert_null(ctx);
	assert_non_null(strstr(err, "/nonexistent/cert.pem"));
	free(err);

	/* Not PEM at all. */
	assert_int_equal(tls_ctx_server_new("/dev/null", f->key, &ctx, &err),
	    -EINVAL);
	assert_non_null(strstr(err, "certificate"));
	free(err);

	/* A certificate with somebody else's key. */
	snprintf(cert, sizeof(cert), "%s/other-cert.pem", f->dir);
	snprintf(key, sizeof(key), "%s/other-key.pem", f->dir);
	assert_int_equal(tls_selfsigned_create(cert, key, "other.test", 1,
	    &err), 0);
	assert_int_equal(tls_ctx_server_new(f->cert, key, &ctx, &err),
	    -EINVAL);
	assert_non_null(strstr(err, "does not match"));
	free(err);
	/* The error queue is left clean for the next caller. */
	assert_int_equal(ERR_peek_error(), 0);

	assert_int_equal(tls_ctx_client_new(TLS_VERIFY_PEER,
	    "/nonexistent/ca.pem", &ctx, &err), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	free(err);
}

static void
test_tls_handshake_and_data(void **state)
{
	struct fixture *f = *state;
	struct tls *srv = tls_new(f->server, NULL);
	struct tls *cli = tls_new(f->client, "mx.example.test");
	char b[64], *cn;
	int rs, rc;

	assert_string_equal(tls_version(srv), "");
	assert_int_equal(tls_cipher_bits(srv), 0);
	assert_int_equal(tls_write(cli, "x", 1), -EAGAIN);
	assert_int_equal(tls_read(srv, b, sizeof(b)), -EAGAIN);

	handshake(srv, cli, &rs, &rc);
	assert_int_equal(rs, 0);
	assert_int_equal(rc, 0);
	assert_true(tls_handshake_done(srv) && tls_handshake_done(cli));
	assert_string_equal(tls_version(srv), "TLSv1.3");
	assert_string_equal(tls_version(cli), "TLSv1.3");
	assert_string_equal(tls_cipher(srv), tls_cipher(cli));
	assert_non_null(strstr(tls_cipher(srv), "TLS_"));
	assert_true(tls_cipher_bits(srv) >= 128);

	/* SNI arrived; the client sees the server's name; the server has
	 * no peer certificate. */
	assert_string_equal(tls_servername(srv), "mx.example.test");
	cn = tls_peer_cn(cli);
	assert_string_equal(cn, "mx.example.test");
	free(cn);
	assert_null(tls_peer_cn(srv));
	/* Opportunistic: self-signed is accepted, but not "verified". */
	assert_false(tls_peer_verified(cli));

	assert_int_equal(tls_write(cli, "EHLO client\r\n", 13), 0);
	move(cli, srv);
	assert_int_equal(tls_read(srv, b, sizeof(b)), 13);
	assert_memory_equal(b, "EHLO client\r\n", 13);
	assert_int_equal(tls_read(srv, b, sizeof(b)), -EAGAIN);
	assert_int_equal(tls_write(srv, "250 ok\r\n", 8), 0);
	move(srv, cli);
	assert_int_equal(tls_read(cli, b, sizeof(b)), 8);
	assert_memory_equal(b, "250 ok\r\n", 8);

	/* close_notify reads as end of data on the other side. */
	assert_int_equal(tls_shutdown(cli), 0);
	assert_int_equal(tls_write(cli, "x", 1), -EPIPE);
	assert_true(tls_out_pending(cli) > 0);
	move(cli, srv);
	assert_int_equal(tls_read(srv, b, sizeof(b)), 0);
	tls_free(&srv);
	tls_free(&cli);
	assert_null(srv);
	tls_free(&srv);
}

static void
test_tls_byte_at_a_time(void **state)
{
	struct fixture *f = *state;
	struct tls *srv = tls_new(f->server, NULL);
	struct tls *cli = tls_new(f->client, "127.0.0.1");
	char b[1];
	int i, rs = -EAGAIN, rc = -EAGAIN;
	size_t n;

	/* Every record split into single bytes still completes, and an IP
	 * literal is not sent as SNI (RFC 6066 3). */
	for (i = 0; i < 100000 && (rs != 0 || rc != 0); i++) {
		if (rc == -EAGAIN)
			rc = tls_handshake(cli);
		if ((n = tls_out_take(cli, b, 1)) > 0)
			assert_int_equal(tls_feed(srv, b, n), 0);
		if (rs == -EAGAIN)
			rs = tls_handshake(srv);
		if ((n = tls_out_take(srv, b, 1)) > 0)
			assert_int_equal(tls_feed(cli, b, n), 0);
	}
	assert_int_equal(rs, 0);
	assert_int_equal(rc, 0);
	assert_null(tls_servername(srv));
	tls_free(&srv);
	tls_free(&cli);
}

static void
test_tls_random_garbage(void **state)
{
	struct fixture *f = *state;
	unsigned seed = 12345;
	char junk[2048], b[256];
	int i, r;
	size_t j, n;

	/* Random bytes, some dressed as a handshake record: every attempt
	 * ends in a clean error or a wait for more, never a crash. */
	for (i = 0; i < 500; i++) {
		struct tls *srv = tls_new(f->server, NULL);

		n = (size_t)(rand_r(&seed) % sizeof(junk)) + 1;
		for (j = 0; j < n; j++)
			junk[j] = (char)rand_r(&seed);
		if (i % 2 == 0 && n > 5) {
			junk[0] = 0x16;
			junk[1] = 0x03;
			junk[2] = (char)(rand_r(&seed) % 4);
			junk[5] = 0x01;
		}
		assert_int_equal(tls_feed(srv, junk, n), 0);
		r = tls_handshake(srv);
		assert_true(r == -EPROTO || r == -EAGAIN);
		if (r == -EPROTO)
			assert_true(strlen(tls_error(srv)) > 0);
		while (tls_out_take(srv, b, sizeof(b)) > 0)
			;
		assert_int_equal(ERR_peek_error(), 0);
		tls_free(&srv);
	}
}

static void
test_tls_verify_peer(void **state)
{
	struct fixture *f = *state;
	struct tls_ctx *ca = NULL, *sys = NULL;
	struct tls *srv, *cli;
	char *err = NULL;
	int rs, rc;

	/* Our own certificate as the CA: verifies, with the right name. */
	assert_int_equal(tls_ctx_client_new(TLS_VERIFY_PEER, f->cert, &ca,
	    &err), 0);
	srv = tls_new(f->server, NULL);
	cli = tls_new(ca, "mx.example.test");
	handshake(srv, cli, &rs, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(rs, 0);
	assert_true(tls_peer_verified(cli));
	tls_free(&srv);
	tls_free(&cli);

	/* The wrong name fails the handshake, saying why. */
	srv = tls_new(f->server, NULL);
	cli = tls_new(ca, "other.example.test");
	handshake(srv, cli, &rs, &rc);
	assert_int_equal(rc, -EPROTO);
	assert_non_null(strstr(tls_error(cli), "hostname mismatch"));
	assert_int_not_equal(rs, 0);
	tls_free(&srv);
	tls_free(&cli);

	/* The system store does not know a self-signed certificate. */
	assert_int_equal(tls_ctx_client_new(TLS_VERIFY_PEER, NULL, &sys,
	    &err), 0);
	srv = tls_new(f->server, NULL);
	cli = tls_new(sys, "mx.example.test");
	handshake(srv, cli, &rs, &rc);
	assert_int_equal(rc, -EPROTO);
	assert_non_null(strstr(tls_error(cli), "self-signed"));
	tls_free(&srv);
	tls_free(&cli);
	tls_ctx_free(&ca);
	tls_ctx_free(&sys);
}

static void
test_tls_garbage_instead_of_hello(void **state)
{
	struct fixture *f = *state;
	struct tls *srv = tls_new(f->server, NULL);
	static const char junk[] = "EHLO attacker.test\r\nMAIL FROM:<>\r\n";
	char b[16];

	assert_int_equal(tls_feed(srv, junk, sizeof(junk) - 1), 0);
	assert_int_equal(tls_handshake(srv), -EPROTO);
	assert_non_null(strstr(tls_error(srv), "TLS handshake failed: "));
	assert_true(strlen(tls_error(srv)) > strlen("TLS handshake failed: "));
	/* Nothing to read, and calling again stays an error. */
	assert_int_equal(tls_read(srv, b, sizeof(b)), -EAGAIN);
	assert_int_equal(tls_handshake(srv), -EPROTO);
	assert_int_equal(ERR_peek_error(), 0);
	tls_free(&srv);
}

/* Move ciphertext between an engine and a raw OpenSSL client. */
static void
raw_move(SSL *raw, BIO *raw_in, BIO *raw_out, struct tls *srv)
{
	char b[4096];
	size_t n;
	int r;

	(void)raw;
	while ((n = tls_out_take(srv, b, sizeof(b))) > 0)
		BIO_write(raw_in, b, (int)n);
	while ((r = BIO_read(raw_out, b, sizeof(b))) > 0)
		assert_int_equal(tls_feed(srv, b, (size_t)r), 0);
}

static void
test_tls_old_protocol_refused(void **state)
{
	struct fixture *f = *state;
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	struct tls *srv = tls_new(f->server, NULL);
	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
	SSL *raw;
	int i, rs = -EAGAIN, rc = -1;

	assert_non_null(c);
	/* A client that speaks TLS 1.1 at most. SECLEVEL 0 lets OpenSSL 3
	 * build such a hello at all; if even that is impossible the client
	 * fails on its own and the server never sees a handshake. */
	SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
	SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0");
	raw = SSL_new(c);
	BIO_set_mem_eof_return(in, -1);
	BIO_set_mem_eof_return(out, -1);
	SSL_set_bio(raw, in, out);
	SSL_set_connect_state(raw);
	for (i = 0; i < 10 && rs == -EAGAIN; i++) {
		rc = SSL_do_handshake(raw);
		raw_move(raw, in, out, srv);
		rs = tls_handshake(srv);
		raw_move(raw, in, out, srv);
	}
	assert_int_not_equal(rc, 1);
	if (rs == -EAGAIN) {
		/* This OpenSSL cannot send a TLS 1.1 hello at all. */
		print_message("TLS 1.1 client impossible here\n");
	} else {
		assert_int_equal(rs, -EPROTO);
		assert_non_null(strstr(tls_error(srv), "unsupported protocol"));
	}
	assert_false(tls_handshake_done(srv));
	SSL_free(raw);
	SSL_CTX_free(c);
	ERR_clear_error();
	tls_free(&srv);
}

static void
test_tls_v12_works_without_renegotiation(void **state)
{
	struct fixture *f = *state;
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	struct tls *srv = tls_new(f->server, NULL);
	BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
	SSL *raw;
	char b[64];
	int i, rs = -EAGAIN, rc = -1, r;

	/* An older MTA that stops at TLS 1.2 still gets an AEAD suite with
	 * forward secrecy, and no compression. */
	SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	raw = SSL_new(c);
	BIO_set_mem_eof_return(in, -1);
	BIO_set_mem_eof_return(out, -1);
	SSL_set_bio(raw, in, out);
	SSL_set_connect_state(raw);
	for (i = 0; i < 10 && (rs != 0 || rc != 1); i++) {
		rc = SSL_do_handshake(raw);
		raw_move(raw, in, out, srv);
		if (rs == -EAGAIN)
			rs = tls_handshake(srv);
		raw_move(raw, in, out, srv);
	}
	assert_int_equal(rs, 0);
	assert_int_equal(rc, 1);
	assert_string_equal(tls_version(srv), "TLSv1.2");
	assert_non_null(strstr(tls_cipher(srv), "ECDHE-"));
	assert_non_null(strstr(tls_cipher(srv), "GCM"));
	assert_null(SSL_get_current_compression(raw));

	/* A client asking to renegotiate (CVE-2009-3555, and a cheap way
	 * to burn server CPU) is refused: the renegotiation never
	 * completes and the session ends with an error text, not a crash. */
	assert_int_equal(SSL_renegotiate(raw), 1);
	SSL_do_handshake(raw);
	raw_move(raw, in, out, srv);
	r = (int)tls_read(srv, b, sizeof(b));
	for (i = 0; i < 5 && r == -EAGAIN; i++) {
		raw_move(raw, in, out, srv);
		SSL_read(raw, b, sizeof(b));
		raw_move(raw, in, out, srv);
		r = (int)tls_read(srv, b, sizeof(b));
	}
	assert_int_equal(r, -EPROTO);
	assert_non_null(strstr(tls_error(srv), "TLS read error: "));
	assert_int_equal(SSL_renegotiate_pending(raw), 1);
	SSL_free(raw);
	SSL_CTX_free(c);
	ERR_clear_error();
	tls_free(&srv);
}

/* RFC 7672 3.1.3 and RFC 7218: which TLSA records SMTP can use. */
static void
test_tls_tlsa_usable(void **state)
{
	(void)state;
	assert_true(tls_tlsa_usable(3, 1, 1, 32));
	assert_true(tls_tlsa_usable(3, 0, 2, 64));
	assert_true(tls_tlsa_usable(2, 0, 1, 32));
	assert_true(tls_tlsa_usable(2, 1, 0, 91));
	/* PKIX-TA(0), PKIX-EE(1) and unknown usages. */
	assert_false(tls_tlsa_usable(0, 0, 1, 32));
	assert_false(tls_tlsa_usable(1, 1, 1, 32));
	assert_false(tls_tlsa_usable(4, 1, 1, 32));
	assert_false(tls_tlsa_usable(255, 1, 1, 32));
	/* Unknown selectors and matching types. */
	assert_false(tls_tlsa_usable(3, 2, 1, 32));
	assert_false(tls_tlsa_usable(3, 1, 3, 32));
	assert_false(tls_tlsa_usable(3, 1, 255, 32));
	/* Digests of the wrong length, and no data. */
	assert_false(tls_tlsa_usable(3, 1, 1, 31));
	assert_false(tls_tlsa_usable(3, 1, 1, 64));
	assert_false(tls_tlsa_usable(3, 1, 2, 32));
	assert_false(tls_tlsa_usable(3, 1, 0, 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_selfsigned_files),
		cmocka_unit_test(
		    test_tls_selfsigned_replaces_and_refuses_bad_input),
		cmocka_unit_test(test_tls_ctx_server_errors),
		cmocka_unit_test(test_tls_handshake_and_data),
		cmocka_unit_test(test_tls_byte_at_a_time),
		cmocka_unit_test(test_tls_random_garbage),
		cmocka_unit_test(test_tls_verify_peer),
		cmocka_unit_test(test_tls_tlsa_usable),
		cmocka_unit_test(test_tls_garbage_instead_of_hello),
		cmocka_unit_test(test_tls_old_protocol_refused),
		cmocka_unit_test(test_tls_v12_works_without_renegotiation),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
