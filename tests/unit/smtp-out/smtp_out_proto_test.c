/*
 * smtp_out_proto_test.c - the pure parts of smtp-out: reply parsing, EHLO
 * keywords, dot-stuffing, next hop syntax and the MX host list.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "smtp_out.h"

static int
feed(struct so_reply *r, const char *line)
{
	const char *err = NULL;

	return so_reply_line(r, line, strlen(line), &err);
}

static void
test_so_reply_single(void **state)
{
	struct so_reply r;
	char *one;

	(void)state;
	so_reply_init(&r);
	assert_int_equal(feed(&r, "250 2.1.5 Ok, recipient"), 1);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.enh, "2.1.5");
	assert_string_equal(r.text.data, "Ok, recipient");
	one = so_reply_oneline(&r);
	assert_string_equal(one, "250 2.1.5 Ok, recipient");
	free(one);
	so_reply_release(&r);
}

static void
test_so_reply_multiline(void **state)
{
	struct so_reply r;
	char *one;

	(void)state;
	so_reply_init(&r);
	assert_int_equal(feed(&r, "550-5.7.1 first"), 0);
	assert_int_equal(feed(&r, "550-5.7.1 second\tline"), 0);
	assert_int_equal(feed(&r, "550 5.7.1 third"), 1);
	assert_int_equal(r.nlines, 3);
	assert_string_equal(r.enh, "5.7.1");
	one = so_reply_oneline(&r);
	assert_string_equal(one, "550 5.7.1 first second?line third");
	free(one);
	so_reply_release(&r);
}

static void
test_so_reply_bare_code_and_no_enh(void **state)
{
	struct so_reply r;

	(void)state;
	so_reply_init(&r);
	assert_int_equal(feed(&r, "354"), 1);
	assert_int_equal(r.code, 354);
	assert_string_equal(r.enh, "");
	so_reply_release(&r);
	so_reply_init(&r);
	/* Not an enhanced code: "4.4" has two parts only. */
	assert_int_equal(feed(&r, "421 4.4 busy"), 1);
	assert_string_equal(r.enh, "");
	assert_string_equal(r.text.data, "4.4 busy");
	so_reply_release(&r);
}

static void
test_so_reply_garbage(void **state)
{
	static const char *bad[] = {
		"", "2", "25", "hello", "250x", "150 early", "650 odd",
		"25a ok", "-250 x",
	};
	struct so_reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		so_reply_init(&r);
		assert_int_equal(feed(&r, bad[i]), -EPROTO);
		so_reply_release(&r);
	}
	so_reply_init(&r);
	assert_int_equal(feed(&r, "250-a"), 0);
	assert_int_equal(feed(&r, "550 b"), -EPROTO);
	so_reply_release(&r);
	so_reply_init(&r);
	assert_int_equal(so_reply_line(&r, "250 a\0b", 7,
	    &(const char *){NULL}), -EPROTO);
	so_reply_release(&r);
}

static void
test_so_reply_limits(void **state)
{
	struct so_reply r;
	char line[1024];
	int rc = 0;
	size_t i;

	(void)state;
	so_reply_init(&r);
	for (i = 0; i < SO_REPLY_LINES_MAX + 5 && rc == 0; i++)
		rc = feed(&r, "250-x");
	assert_int_equal(rc, -ENOBUFS);
	assert_true(i <= SO_REPLY_LINES_MAX + 1);
	so_reply_release(&r);

	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "250-", 4);
	so_reply_init(&r);
	rc = 0;
	for (i = 0; i < 100 && rc == 0; i++)
		rc = feed(&r, line);
	assert_int_equal(rc, -ENOBUFS);
	assert_true(r.text.len <= SO_REPLY_TEXT_MAX);
	so_reply_release(&r);
}

static void
test_so_reply_oneline_cut(void **state)
{
	struct so_reply r;
	char line[600];
	char *one;

	(void)state;
	memset(line, 'b', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "451-", 4);
	so_reply_init(&r);
	for (int i = 0; i < 5; i++)
		feed(&r, line);
	feed(&r, "451 end");
	one = so_reply_oneline(&r);
	assert_true(strlen(one) <= SO_TEXT_MAX + 1);
	assert_memory_equal(one, "451 bbb", 7);
	free(one);
	so_reply_release(&r);
}

static void
test_so_caps_parse(void **state)
{
	struct so_caps c;

	(void)state;
	so_caps_parse("mx.example.test greets you\nPIPELINING\nSIZE 10240000\n"
	    "8BITMIME\nsmtputf8\nDSN\nSTARTTLS\nAUTH LOGIN PLAIN\n"
	    "ENHANCEDSTATUSCODES", &c);
	assert_int_equal(c.flags, SO_CAP_PIPELINING | SO_CAP_SIZE |
	    SO_CAP_8BITMIME | SO_CAP_SMTPUTF8 | SO_CAP_DSN |
	    SO_CAP_STARTTLS | SO_CAP_AUTH_PLAIN | SO_CAP_AUTH_LOGIN);
	assert_int_equal(c.size, 10240000);

	/* The greeting line is not a keyword; look-alikes are not either. */
	so_caps_parse("PIPELINING\nSTARTTLSX\nDSNX\nAUTH=LOGIN\nSIZE", &c);
	assert_int_equal(c.flags, SO_CAP_AUTH_LOGIN | SO_CAP_SIZE);
	assert_int_equal(c.size, 0);

	/* An absurd SIZE is no limit rather than a wrapped one. */
	so_caps_parse("x\nSIZE 99999999999999999999999", &c);
	assert_int_equal(c.size, 0);
	so_caps_parse("", &c);
	assert_int_equal(c.flags, 0);
}

/* Dot-stuff the blocks and compare the result with want. */
static void
stuff(const char *const *blocks, size_t n, const char *want)
{
	struct so_dot d;
	struct buf b;

	buf_init(&b, 0);
	so_dot_init(&d);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(so_dot_stuff(&d, blocks[i],
		    strlen(blocks[i]), &b), 0);
	assert_int_equal(so_dot_finish(&d, &b), 0);
	assert_string_equal(b.data, want);
	buf_release(&b);
}

static void
test_so_dot_stuff(void **state)
{
	const char *a[] = {".first\r\nmid\r\n.\r\n..x\r\n"};
	const char *b[] = {"bare\nlf\n.dot"};
	const char *c[] = {"split\r", "\n", ".", "x\r\n"};
	const char *d[] = {"a\r\n"};
	const char *e[] = {""};

	(void)state;
	stuff(a, 1, "..first\r\nmid\r\n..\r\n...x\r\n.\r\n");
	stuff(b, 1, "bare\r\nlf\r\n..dot\r\n.\r\n");
	stuff(c, 4, "split\r\n..x\r\n.\r\n");
	stuff(d, 1, "a\r\n.\r\n");
	stuff(e, 1, ".\r\n");
}

static void
test_so_nexthop_parse(void **state)
{
	char *h;
	int ex, port;

	(void)state;
	assert_int_equal(so_nexthop_parse("example.test", &h, &ex, &port), 0);
	assert_string_equal(h, "example.test");
	assert_int_equal(ex, 0);
	assert_int_equal(port, 0);
	free(h);
	assert_int_equal(so_nexthop_parse("[relay.test]:2525", &h, &ex,
	    &port), 0);
	assert_string_equal(h, "relay.test");
	assert_int_equal(ex, 1);
	assert_int_equal(port, 2525);
	free(h);
	assert_int_equal(so_nexthop_parse("[::1]", &h, &ex, &port), 0);
	assert_string_equal(h, "::1");
	assert_int_equal(port, 0);
	free(h);
	assert_int_equal(so_nexthop_parse("mx.test:587", &h, &ex, &port), 0);
	assert_int_equal(ex, 0);
	assert_int_equal(port, 587);
	free(h);
	assert_int_equal(so_nexthop_parse("[x]:0", &h, &ex, &port), -EINVAL);
	assert_int_equal(so_nexthop_parse("[x]:99999", &h, &ex, &port),
	    -EINVAL);
	assert_int_equal(so_nexthop_parse("[x", &h, &ex, &port), -EINVAL);
	assert_int_equal(so_nexthop_parse("[]", &h, &ex, &port), -EINVAL);
	assert_int_equal(so_nexthop_parse("a b", &h, &ex, &port), -EINVAL);
	assert_int_equal(so_nexthop_parse("a:b:25", &h, &ex, &port),
	    -EINVAL);
	assert_int_equal(so_nexthop_parse("[x]y", &h, &ex, &port), -EINVAL);
	assert_int_equal(so_nexthop_parse("", &h, &ex, &port), -EINVAL);
}

static void
set4(struct dns_addr *a, const char *s)
{
	a->family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, s, a->addr), 1);
}

/* Check the count of a host list, then free it. */
static void
hosts_check_free(struct so_host *h, int n, int want)
{
	assert_int_equal(n, want);
	for (int i = 0; i < n; i++)
		free(h[i].name);
	free(h);
}

static void
test_so_hosts_from_mx(void **state)
{
	struct dns_addr a[4];
	struct dns_mx mx[3] = {
		{"mx1.test", 10, 2, &a[0], 0},
		{"mx2.test", 20, 1, &a[2], 0},
		{"mx3.test", 30, 1, &a[3], 0},
	};
	struct dns_result res;
	struct so_listener own = {0, {0, {0}}, 2525};
	struct so_host *h;
	int n;

	(void)state;
	set4(&a[0], "192.0.2.1");
	set4(&a[1], "192.0.2.2");
	set4(&a[2], "192.0.2.3");
	set4(&a[3], "192.0.2.4");
	memset(&res, 0, sizeof(res));
	res.mx = mx;
	res.nmx = 3;
	n = so_hosts_from_mx(&res, 25, NULL, 0, &h);
	assert_int_equal(n, 4);
	assert_string_equal(h[0].name, "mx1.test");
	assert_string_equal(h[1].name, "mx1.test");
	assert_int_equal(h[1].addr.addr[3], 2);
	assert_string_equal(h[3].name, "mx3.test");
	assert_int_equal(h[3].port, 25);
	hosts_check_free(h, n, 4);

	/* We are mx2 on port 2525: only mx1 may take the mail. */
	set4(&own.addr, "192.0.2.3");
	n = so_hosts_from_mx(&res, 2525, &own, 1, &h);
	hosts_check_free(h, n, 2);

	/* Same address, other port: not us. */
	n = so_hosts_from_mx(&res, 25, &own, 1, &h);
	hosts_check_free(h, n, 4);

	/* We are the best MX: the mail loops. */
	set4(&own.addr, "192.0.2.2");
	assert_int_equal(so_hosts_from_mx(&res, 2525, &own, 1, &h), -ELOOP);

	/* DANE candidates: a validated MX RRset and validated addresses. */
	res.secure = 1;
	mx[0].secure = 1;
	n = so_hosts_from_mx(&res, 25, NULL, 0, &h);
	assert_true(h[0].dnssec && h[1].dnssec);
	assert_false(h[2].dnssec);
	assert_null(h[0].tlsa);
	hosts_check_free(h, n, 4);
	res.secure = 0;
	n = so_hosts_from_mx(&res, 25, NULL, 0, &h);
	assert_false(h[0].dnssec);
	hosts_check_free(h, n, 4);
}

/* Three hosts: mx1 (two addresses, validated), mx2 (not validated). */
static struct so_host *
dane_hosts(void)
{
	struct so_host *h = calloc(3, sizeof(*h));

	h[0].name = strdup("mx1.test");
	h[1].name = strdup("mx1.test");
	h[2].name = strdup("mx2.test");
	h[0].dnssec = h[1].dnssec = 1;
	for (int i = 0; i < 3; i++)
		h[i].tls_level = SO_TLS_DANE;
	return h;
}

static void
test_so_dane_apply(void **state)
{
	static uint8_t sha256[32] = {1}, sha512[64] = {2}, odd[31] = {3};
	struct dns_tlsa recs[] = {
		{3, 1, 1, sizeof(sha256), sha256},
		{1, 1, 1, sizeof(sha256), sha256},	/* PKIX-EE */
		{2, 0, 2, sizeof(sha512), sha512},
		{3, 1, 1, sizeof(odd), odd},		/* bad length */
	};
	struct dns_result res;
	struct so_host *h;

	(void)state;
	/* Validated, with usable records: DANE with copies of those. */
	memset(&res, 0, sizeof(res));
	res.tlsa = recs;
	res.ntlsa = 4;
	res.secure = 1;
	h = dane_hosts();
	so_dane_apply(h, 3, "mx1.test", &res);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(h[i].tls_level, SO_TLS_DANE);
		assert_int_equal(h[i].ntlsa, 2);
		assert_int_equal(h[i].tlsa[0].usage, 3);
		assert_int_equal(h[i].tlsa[1].usage, 2);
		assert_ptr_not_equal(h[i].tlsa[0].data, sha256);
		assert_memory_equal(h[i].tlsa[1].data, sha512, 64);
		assert_null(h[i].tlsa_err);
	}
	assert_null(h[2].tlsa);		/* another name */
	/* mx2 is not a candidate: nothing changes, whatever the answer. */
	so_dane_apply(h, 3, "mx2.test", &res);
	assert_null(h[2].tlsa);
	assert_int_equal(h[2].tls_level, SO_TLS_DANE);
	so_hosts_free(&h, 3);
	assert_null(h);

	/* Validated, none usable: mandatory, unauthenticated TLS. */
	res.tlsa = &recs[1];
	res.ntlsa = 1;
	h = dane_hosts();
	so_dane_apply(h, 3, "mx1.test", &res);
	assert_int_equal(h[0].tls_level, SO_TLS_ENCRYPT);
	assert_int_equal(h[1].ntlsa, 0);
	so_hosts_free(&h, 3);

	/* Not validated: opportunistic. */
	res.tlsa = recs;
	res.ntlsa = 4;
	res.secure = 0;
	h = dane_hosts();
	so_dane_apply(h, 3, "mx1.test", &res);
	assert_int_equal(h[0].tls_level, SO_TLS_MAY);
	assert_null(h[0].tlsa);
	so_hosts_free(&h, 3);

	/* No records, validated denial or not: opportunistic. */
	memset(&res, 0, sizeof(res));
	for (int i = 0; i < 4; i++) {
		res.status = i < 2 ? DNS_E_NXDOMAIN : DNS_E_NODATA;
		res.secure = i % 2;
		h = dane_hosts();
		so_dane_apply(h, 3, "mx1.test", &res);
		assert_int_equal(h[1].tls_level, SO_TLS_MAY);
		so_hosts_free(&h, 3);
	}

	/* A failed lookup: the host is not tried at all. */
	res.status = DNS_E_SERVFAIL;
	snprintf(res.errstr, sizeof(res.errstr), "_25._tcp.mx1.test.: "
	    "name server failure (SERVFAIL)");
	h = dane_hosts();
	so_dane_apply(h, 3, "mx1.test", &res);
	assert_non_null(h[0].tlsa_err);
	assert_non_null(strstr(h[1].tlsa_err, "TLSA lookup for mx1.test "
	    "failed: _25._tcp.mx1.test.: name server failure"));
	assert_null(h[2].tlsa_err);
	so_hosts_free(&h, 3);

	assert_string_equal(so_tls_level_name(SO_TLS_DANE), "dane");
	assert_string_equal(so_tls_level_name(SO_TLS_MAY), "may");
}

static void
test_so_needs_utf8_and_xtext(void **state)
{
	const char *plain[] = {"a@b.test", NULL};
	const char *utf[] = {"a@b.test", "\xd0\xb4@b.test", NULL};
	struct buf b;

	(void)state;
	assert_false(so_needs_utf8("x@y.test", plain, 1));
	assert_true(so_needs_utf8("", utf, 2));
	assert_true(so_needs_utf8("\xc3\xa9@y.test", plain, 1));
	buf_init(&b, 0);
	assert_int_equal(so_xtext(&b, "a+b=c d"), 0);
	assert_string_equal(b.data, "a+2Bb+3Dc+20d");
	buf_release(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_so_reply_single),
		cmocka_unit_test(test_so_reply_multiline),
		cmocka_unit_test(test_so_reply_bare_code_and_no_enh),
		cmocka_unit_test(test_so_reply_garbage),
		cmocka_unit_test(test_so_reply_limits),
		cmocka_unit_test(test_so_reply_oneline_cut),
		cmocka_unit_test(test_so_caps_parse),
		cmocka_unit_test(test_so_dot_stuff),
		cmocka_unit_test(test_so_nexthop_parse),
		cmocka_unit_test(test_so_hosts_from_mx),
		cmocka_unit_test(test_so_dane_apply),
		cmocka_unit_test(test_so_needs_utf8_and_xtext),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
