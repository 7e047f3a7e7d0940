/*
 * dns_test.c - unit tests for lib/dns: reverse names, MX ordering, answer
 * parsing from packets built here, the TTL cache with a fake clock, and
 * real lookups against ldns-testns on 127.0.0.1 (MX, implicit and null MX,
 * NXDOMAIN, SERVFAIL, timeouts, PTR forward confirmation, hostile answers).
 *
 * With POCHTA_DNS_QUERY="mx|mxhosts|addr|ptr NAME" and POCHTA_DNS_SERVERS
 * set, the program instead runs that one lookup and prints its result; the
 * integration tests use this to drive lib/dns against their fake DNS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dns.h"

extern char **environ;

/*
 * Helpers.
 */

static ldns_pkt *
pkt_make(ldns_pkt_rcode rcode, const char *qname, ldns_rr_type qtype,
    const char *const *answer, const char *const *authority)
{
	ldns_pkt *pkt = ldns_pkt_new();
	ldns_rr *rr;
	ldns_rdf *owner = ldns_dname_new_frm_str(qname);

	assert_non_null(pkt);
	ldns_pkt_set_qr(pkt, true);
	ldns_pkt_set_rcode(pkt, (uint8_t)rcode);
	rr = ldns_rr_new();
	ldns_rr_set_owner(rr, owner);
	ldns_rr_set_type(rr, qtype);
	ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
	ldns_rr_set_question(rr, true);
	ldns_pkt_push_rr(pkt, LDNS_SECTION_QUESTION, rr);
	for (; answer != NULL && *answer != NULL; answer++) {
		assert_int_equal(ldns_rr_new_frm_str(&rr, *answer, 3600, NULL,
		    NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER, rr);
	}
	for (; authority != NULL && *authority != NULL; authority++) {
		assert_int_equal(ldns_rr_new_frm_str(&rr, *authority, 3600,
		    NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(pkt, LDNS_SECTION_AUTHORITY, rr);
	}
	return pkt;
}

static struct dns_result *
result_new(void)
{
	return calloc(1, sizeof(struct dns_result));
}

/*
 * Pure parts.
 */

static void
test_dns_ptr_qname_v4_v6(void **state)
{
	struct dns_addr a;
	char buf[80];

	(void)state;
	assert_int_equal(dns_addr_parse("192.0.2.1", &a), 0);
	assert_int_equal(dns_ptr_qname(&a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1.2.0.192.in-addr.arpa.");
	assert_int_equal(dns_ptr_qname(&a, buf, 10), -ENOBUFS);

	assert_int_equal(dns_addr_parse("2001:db8::567:89ab", &a), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_int_equal(dns_ptr_qname(&a, buf, sizeof(buf)), 0);
	/* RFC 3596 2.5's example. */
	assert_string_equal(buf, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0."
	    "0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.");
	assert_int_equal(dns_ptr_qname(&a, buf, 73), -ENOBUFS);

	assert_int_equal(dns_addr_parse("not-an-address", &a), -EINVAL);
	assert_int_equal(dns_addr_parse("1.2.3.4.5", &a), -EINVAL);
	a.family = AF_UNIX;
	assert_int_equal(dns_ptr_qname(&a, buf, sizeof(buf)), -EINVAL);
}

static uint32_t
rnd_seq(void *arg)
{
	const uint32_t **p = arg;

	return *(*p)++;
}

static void
test_dns_mx_sort_by_pref_random_among_equals(void **state)
{
	struct dns_mx mx[4];
	static const uint32_t r1[] = { 5, 1, 9, 2 }, r2[] = { 5, 1, 9, 7 };
	const uint32_t *p;

	(void)state;
	memset(mx, 0, sizeof(mx));
	mx[0].host = "b1"; mx[0].pref = 20;
	mx[1].host = "a1"; mx[1].pref = 10;
	mx[2].host = "c";  mx[2].pref = 30;
	mx[3].host = "a2"; mx[3].pref = 10;
	p = r1;
	dns_mx_sort(mx, 4, rnd_seq, &p);
	/* a1 drew 1, a2 drew 2: a1 first. */
	assert_string_equal(mx[0].host, "a1");
	assert_string_equal(mx[1].host, "a2");
	assert_string_equal(mx[2].host, "b1");
	assert_string_equal(mx[3].host, "c");
	/* Other draws, other order among the equals only. */
	p = r2;
	dns_mx_sort(mx, 4, rnd_seq, &p);
	assert_string_equal(mx[0].host, "a2");
	assert_string_equal(mx[1].host, "a1");
	assert_string_equal(mx[2].host, "b1");
	assert_string_equal(mx[3].host, "c");
	dns_mx_sort(mx, 0, NULL, NULL);
	dns_mx_sort(mx, 4, NULL, NULL);
	assert_int_equal(mx[0].pref, 10);
	assert_int_equal(mx[2].pref, 20);
}

static void
test_dns_mx_from_pkt_records(void **state)
{
	static const char *const an[] = {
		"Example.TEST. 300 IN MX 20 mx2.example.test.",
		"example.test. 300 IN MX 10 MX1.example.test.",
		"other.test. 300 IN MX 5 wrong.example.test.",
		NULL,
	};
	ldns_pkt *pkt = pkt_make(LDNS_RCODE_NOERROR, "example.test.",
	    LDNS_RR_TYPE_MX, an, NULL);
	struct dns_result *res = result_new();

	(void)state;
	assert_int_equal(dns_mx_from_pkt(pkt, "example.test.", res), 0);
	assert_int_equal(res->nmx, 2);
	assert_string_equal(res->mx[0].host, "mx2.example.test");
	assert_int_equal(res->mx[0].pref, 20);
	assert_string_equal(res->mx[1].host, "mx1.example.test");
	assert_int_equal(res->mx[1].pref, 10);
	dns_result_free(&res);
	assert_null(res);
	ldns_pkt_free(pkt);
}

static void
test_dns_mx_from_pkt_null_mx(void **state)
{
	static const char *const nullmx[] = {
		"example.test. 300 IN MX 0 .", NULL };
	static const char *const notnull[] = {
		"example.test. 300 IN MX 0 .",
		"example.test. 300 IN MX 10 mx.example.test.", NULL };
	ldns_pkt *pkt;
	struct dns_result *res = result_new();

	(void)state;
	pkt = pkt_make(LDNS_RCODE_NOERROR, "example.test.", LDNS_RR_TYPE_MX,
	    nullmx, NULL);
	assert_int_equal(dns_mx_from_pkt(pkt, "example.test.", res),
	    DNS_E_NULLMX);
	assert_int_equal(res->status, DNS_E_NULLMX);
	assert_non_null(strstr(res->errstr, "null MX"));
	assert_false(dns_error_is_temporary(DNS_E_NULLMX));
	ldns_pkt_free(pkt);
	dns_result_free(&res);

	/* "." among other MX records is not RFC 7505's null MX: skip it. */
	res = result_new();
	pkt = pkt_make(LDNS_RCODE_NOERROR, "example.test.", LDNS_RR_TYPE_MX,
	    notnull, NULL);
	assert_int_equal(dns_mx_from_pkt(pkt, "example.test.", res), 0);
	assert_int_equal(res->nmx, 1);
	assert_string_equal(res->mx[0].host, "mx.example.test");
	ldns_pkt_free(pkt);
	dns_result_free(&res);
}

static void
test_dns_mx_from_pkt_errors(void **state)
{
	static const char *const literal[] = {
		"example.test. 300 IN MX 10 192.0.2.1.", NULL };
	static const char *const loop[] = {
		"example.test. 300 IN CNAME a.test.",
		"a.test. 300 IN CNAME example.test.", NULL };
	static const char *const chain[] = {
		"example.test. 300 IN CNAME a.test.",
		"a.test. 300 IN CNAME b.test.",
		"b.test. 300 IN MX 7 mx.b.test.", NULL };
	static const char *const soa[] = {
		"test. 300 IN SOA ns.test. root.test. 1 2 3 4 60", NULL };
	struct {
		ldns_pkt_rcode rcode;
		const char *const *an;
		int want;
	} cases[] = {
		{ LDNS_RCODE_NOERROR, literal, DNS_E_BADANSWER },
		{ LDNS_RCODE_NOERROR, loop, DNS_E_BADANSWER },
		{ LDNS_RCODE_NOERROR, NULL, DNS_E_NODATA },
		{ LDNS_RCODE_NXDOMAIN, NULL, DNS_E_NXDOMAIN },
		{ LDNS_RCODE_SERVFAIL, NULL, DNS_E_SERVFAIL },
		{ LDNS_RCODE_REFUSED, NULL, DNS_E_REFUSED },
		{ LDNS_RCODE_FORMERR, NULL, DNS_E_BADANSWER },
		{ LDNS_RCODE_NOERROR, chain, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ldns_pkt *pkt = pkt_make(cases[i].rcode, "example.test.",
		    LDNS_RR_TYPE_MX, cases[i].an, soa);
		struct dns_result *res = result_new();

		assert_int_equal(dns_mx_from_pkt(pkt, "example.test.", res),
		    cases[i].want);
		assert_int_equal(res->status, cases[i].want);
		if (cases[i].want != 0)
			assert_true(res->errstr[0] != '\0');
		else
			assert_string_equal(res->mx[0].host, "mx.b.test");
		ldns_pkt_free(pkt);
		dns_result_free(&res);
	}
	assert_true(dns_error_is_temporary(DNS_E_SERVFAIL));
	assert_true(dns_error_is_temporary(DNS_E_TIMEOUT));
	assert_false(dns_error_is_temporary(DNS_E_NXDOMAIN));
	assert_string_equal(dns_strerror(DNS_E_NXDOMAIN), "domain not found");
	assert_string_equal(dns_strerror(-ENOENT), strerror(ENOENT));
}

static void
test_dns_addrs_from_pkt_caps_and_types(void **state)
{
	const char *an[DNS_MAX_ADDRS + 8];
	char lines[DNS_MAX_ADDRS + 6][64];
	static const char *const v6[] = {
		"h.test. 60 IN AAAA 2001:db8::1",
		"h.test. 60 IN A 192.0.2.9", NULL };
	struct dns_result *res = result_new();
	ldns_pkt *pkt;
	size_t i;
	char text[64];

	(void)state;
	for (i = 0; i < DNS_MAX_ADDRS + 5; i++) {
		snprintf(lines[i], sizeof(lines[i]),
		    "h.test. 60 IN A 192.0.2.%zu", i + 1);
		an[i] = lines[i];
	}
	an[i] = NULL;
	pkt = pkt_make(LDNS_RCODE_NOERROR, "h.test.", LDNS_RR_TYPE_A, an,
	    NULL);
	assert_int_equal(dns_addrs_from_pkt(pkt, "h.test.", LDNS_RR_TYPE_A,
	    res), 0);
	assert_int_equal(res->naddrs, DNS_MAX_ADDRS);
	dns_addr_format(&res->addrs[0], text, sizeof(text));
	assert_string_equal(text, "192.0.2.1");
	ldns_pkt_free(pkt);
	dns_result_free(&res);

	res = result_new();
	pkt = pkt_make(LDNS_RCODE_NOERROR, "h.test.", LDNS_RR_TYPE_AAAA, v6,
	    NULL);
	assert_int_equal(dns_addrs_from_pkt(pkt, "h.test.",
	    LDNS_RR_TYPE_AAAA, res), 0);
	assert_int_equal(res->naddrs, 1);
	assert_int_equal(res->addrs[0].family, AF_INET6);
	dns_addr_format(&res->addrs[0], text, sizeof(text));
	assert_string_equal(text, "2001:db8::1");
	ldns_pkt_free(pkt);
	dns_result_free(&res);
}

/* A TLSA record for owner put together field by field: any lengths. */
static ldns_rr *
tlsa_rr(const char *owner, const size_t *sizes, size_t nfields)
{
	static const uint8_t bytes[DNS_MAX_TLSA_DATA + 8];
	ldns_rr *rr = ldns_rr_new();

	ldns_rr_set_owner(rr, ldns_dname_new_frm_str(owner));
	ldns_rr_set_type(rr, LDNS_RR_TYPE_TLSA);
	ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
	ldns_rr_set_ttl(rr, 60);
	for (size_t i = 0; i < nfields; i++)
		ldns_rr_push_rdf(rr, ldns_rdf_new_frm_data(i < 3 ?
		    LDNS_RDF_TYPE_INT8 : LDNS_RDF_TYPE_HEX, sizes[i], bytes));
	return rr;
}

static void
test_dns_tlsa_from_pkt_records_and_hostile_data(void **state)
{
	static const char *const an[] = {
		"_25._tcp.mx.test. 60 IN TLSA 3 1 1 "
		"0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdef",
		"_25._tcp.mx.test. 60 IN TLSA 2 0 2 abcd",
		"_25._tcp.other.test. 60 IN TLSA 3 1 1 abcd",
		"_25._tcp.mx.test. 60 IN A 192.0.2.1", NULL };
	static const size_t short_rr[] = { 1 }, wide[] = { 2, 1, 1, 32 },
	    empty[] = { 1, 1, 1, 0 }, huge[] = { 1, 1, 1,
	    DNS_MAX_TLSA_DATA + 1 }, max[] = { 1, 1, 1, DNS_MAX_TLSA_DATA };
	struct dns_result *res = result_new();
	ldns_pkt *pkt;
	char line[128];
	const char *many[DNS_MAX_TLSA + 6];
	char lines[DNS_MAX_TLSA + 5][128];
	size_t i;

	(void)state;
	pkt = pkt_make(LDNS_RCODE_NOERROR, "_25._tcp.mx.test.",
	    LDNS_RR_TYPE_TLSA, an, NULL);
	assert_int_equal(dns_tlsa_from_pkt(pkt, "_25._tcp.mx.test.", res), 0);
	assert_int_equal(res->ntlsa, 2);
	assert_int_equal(res->tlsa[0].usage, 3);
	assert_int_equal(res->tlsa[0].selector, 1);
	assert_int_equal(res->tlsa[0].mtype, 1);
	assert_int_equal(res->tlsa[0].len, 32);
	assert_int_equal(res->tlsa[0].data[1], 0x23);
	assert_int_equal(res->tlsa[1].usage, 2);
	assert_int_equal(res->tlsa[1].mtype, 2);
	assert_int_equal(res->tlsa[1].len, 2);
	ldns_pkt_free(pkt);
	dns_result_free(&res);

	/* Fields of the wrong size or count, and oversized data, are left
	 * out; the RRset still exists (status 0, no records). */
	res = result_new();
	pkt = pkt_make(LDNS_RCODE_NOERROR, "_25._tcp.mx.test.",
	    LDNS_RR_TYPE_TLSA, NULL, NULL);
	ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER,
	    tlsa_rr("_25._tcp.mx.test.", short_rr, 1));
	ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER,
	    tlsa_rr("_25._tcp.mx.test.", wide, 4));
	ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER,
	    tlsa_rr("_25._tcp.mx.test.", empty, 4));
	ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER,
	    tlsa_rr("_25._tcp.mx.test.", huge, 4));
	assert_int_equal(dns_tlsa_from_pkt(pkt, "_25._tcp.mx.test.", res), 0);
	assert_int_equal(res->ntlsa, 0);
	ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER,
	    tlsa_rr("_25._tcp.mx.test.", max, 4));
	assert_int_equal(dns_tlsa_from_pkt(pkt, "_25._tcp.mx.test.", res), 0);
	assert_int_equal(res->ntlsa, 1);
	assert_int_equal(res->tlsa[0].len, DNS_MAX_TLSA_DATA);
	ldns_pkt_free(pkt);
	dns_result_free(&res);

	/* At most DNS_MAX_TLSA records. */
	for (i = 0; i < DNS_MAX_TLSA + 5; i++) {
		snprintf(lines[i], sizeof(lines[i]), "_25._tcp.mx.test. 60 IN "
		    "TLSA 3 1 1 %064zx", i);
		many[i] = lines[i];
	}
	many[i] = NULL;
	res = result_new();
	pkt = pkt_make(LDNS_RCODE_NOERROR, "_25._tcp.mx.test.",
	    LDNS_RR_TYPE_TLSA, many, NULL);
	assert_int_equal(dns_tlsa_from_pkt(pkt, "_25._tcp.mx.test.", res), 0);
	assert_int_equal(res->ntlsa, DNS_MAX_TLSA);
	ldns_pkt_free(pkt);
	dns_result_free(&res);

	/* None, and errors. */
	res = result_new();
	snprintf(line, sizeof(line), "_25._tcp.mx.test. 60 IN A 192.0.2.1");
	many[0] = line;
	many[1] = NULL;
	pkt = pkt_make(LDNS_RCODE_NOERROR, "_25._tcp.mx.test.",
	    LDNS_RR_TYPE_TLSA, many, NULL);
	assert_int_equal(dns_tlsa_from_pkt(pkt, "_25._tcp.mx.test.", res),
	    DNS_E_NODATA);
	assert_int_equal(res->ntlsa, 0);
	ldns_pkt_free(pkt);
	pkt = pkt_make(LDNS_RCODE_SERVFAIL, "_25._tcp.mx.test.",
	    LDNS_RR_TYPE_TLSA, NULL, NULL);
	assert_int_equal(dns_tlsa_from_pkt(pkt, "_25._tcp.mx.test.", res),
	    DNS_E_SERVFAIL);
	ldns_pkt_free(pkt);
	dns_result_free(&res);
}

struct fake_clock {
	time_t now;
};

static time_t
fake_now(void *arg)
{
	return ((struct fake_clock *)arg)->now;
}

static void
test_dns_cache_expiry_follows_ttl(void **state)
{
	static const char *const an[] = {
		"h.test. 300 IN A 192.0.2.1",
		"h.test. 100 IN A 192.0.2.2", NULL };
	struct fake_clock clk = { 1000 };
	struct dns_cache *c = dns_cache_new(8, 0, 0, fake_now, &clk);
	ldns_pkt *pkt, *got;

	(void)state;
	pkt = pkt_make(LDNS_RCODE_NOERROR, "h.test.", LDNS_RR_TYPE_A, an,
	    NULL);
	dns_cache_put(c, "h.test.", LDNS_RR_TYPE_A, pkt);
	assert_int_equal(dns_cache_count(c), 1);
	/* The key ignores case; the type is part of it. */
	got = dns_cache_get(c, "H.Test.", LDNS_RR_TYPE_A);
	assert_non_null(got);
	assert_int_equal(ldns_rr_list_rr_count(ldns_pkt_answer(got)), 2);
	ldns_pkt_free(got);
	assert_null(dns_cache_get(c, "h.test.", LDNS_RR_TYPE_AAAA));
	/* The smallest TTL of the answer rules. */
	clk.now = 1099;
	got = dns_cache_get(c, "h.test.", LDNS_RR_TYPE_A);
	assert_non_null(got);
	ldns_pkt_free(got);
	clk.now = 1100;
	assert_null(dns_cache_get(c, "h.test.", LDNS_RR_TYPE_A));
	assert_int_equal(dns_cache_count(c), 0);
	ldns_pkt_free(pkt);
	dns_cache_free(&c);
	assert_null(c);
}

static void
test_dns_cache_negative_and_uncacheable(void **state)
{
	static const char *const soa[] = {
		"test. 3600 IN SOA ns.test. root.test. 1 2 3 4 30", NULL };
	struct fake_clock clk = { 0 };
	struct dns_cache *c = dns_cache_new(8, 45, 0, fake_now, &clk);
	ldns_pkt *pkt, *got;

	(void)state;
	/* NXDOMAIN with a SOA: its minimum (30 s), RFC 2308 5. */
	pkt = pkt_make(LDNS_RCODE_NXDOMAIN, "x.test.", LDNS_RR_TYPE_MX, NULL,
	    soa);
	dns_cache_put(c, "x.test.", LDNS_RR_TYPE_MX, pkt);
	ldns_pkt_free(pkt);
	clk.now = 29;
	got = dns_cache_get(c, "x.test.", LDNS_RR_TYPE_MX);
	assert_non_null(got);
	assert_int_equal(ldns_pkt_get_rcode(got), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(got);
	clk.now = 30;
	assert_null(dns_cache_get(c, "x.test.", LDNS_RR_TYPE_MX));

	/* No data and no SOA: the fixed negative TTL. */
	clk.now = 0;
	pkt = pkt_make(LDNS_RCODE_NOERROR, "y.test.", LDNS_RR_TYPE_MX, NULL,
	    NULL);
	dns_cache_put(c, "y.test.", LDNS_RR_TYPE_MX, pkt);
	ldns_pkt_free(pkt);
	clk.now = 44;
	got = dns_cache_get(c, "y.test.", LDNS_RR_TYPE_MX);
	assert_non_null(got);
	ldns_pkt_free(got);
	clk.now = 45;
	assert_null(dns_cache_get(c, "y.test.", LDNS_RR_TYPE_MX));

	/* SERVFAIL and truncated answers are never kept. */
	pkt = pkt_make(LDNS_RCODE_SERVFAIL, "z.test.", LDNS_RR_TYPE_MX, NULL,
	    NULL);
	dns_cache_put(c, "z.test.", LDNS_RR_TYPE_MX, pkt);
	ldns_pkt_set_rcode(pkt, LDNS_RCODE_NOERROR);
	ldns_pkt_set_tc(pkt, true);
	dns_cache_put(c, "z.test.", LDNS_RR_TYPE_MX, pkt);
	ldns_pkt_free(pkt);
	assert_int_equal(dns_cache_count(c), 0);
	dns_cache_free(&c);
}

static void
test_dns_cache_evicts_least_recently_used(void **state)
{
	static const char *const an[] = { "h.test. 300 IN A 192.0.2.1", NULL };
	struct fake_clock clk = { 0 };
	struct dns_cache *c = dns_cache_new(3, 0, 200, fake_now, &clk);
	ldns_pkt *pkt, *got;
	char name[32];
	int i;

	(void)state;
	pkt = pkt_make(LDNS_RCODE_NOERROR, "h.test.", LDNS_RR_TYPE_A, an,
	    NULL);
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "h%d.test.", i);
		dns_cache_put(c, name, LDNS_RR_TYPE_A, pkt);
	}
	/* Touch h0, so h1 is the least recently used. */
	got = dns_cache_get(c, "h0.test.", LDNS_RR_TYPE_A);
	assert_non_null(got);
	ldns_pkt_free(got);
	dns_cache_put(c, "h3.test.", LDNS_RR_TYPE_A, pkt);
	assert_int_equal(dns_cache_count(c), 3);
	assert_null(dns_cache_get(c, "h1.test.", LDNS_RR_TYPE_A));
	got = dns_cache_get(c, "h0.test.", LDNS_RR_TYPE_A);
	assert_non_null(got);
	ldns_pkt_free(got);
	/* Replacing a key keeps one entry. */
	dns_cache_put(c, "h3.test.", LDNS_RR_TYPE_A, pkt);
	assert_int_equal(dns_cache_count(c), 3);
	/* max_ttl caps the 300 s TTL at 200 s. */
	clk.now = 200;
	assert_null(dns_cache_get(c, "h3.test.", LDNS_RR_TYPE_A));
	ldns_pkt_free(pkt);
	dns_cache_free(&c);
}

static void
test_dns_resolver_config_errors(void **state)
{
	struct dns_config cfg;
	struct dns_resolver *r = (void *)1;
	const char *err;
	static const char *const bad[] = {
		"127.0.0.1:0", "127.0.0.1:65536", "[::1", "[::1]x",
		"localhost", "127.0.0.1:", "300.1.1.1",
		"1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4 5.5.5.5 6.6.6.6 7.7.7.7 "
		"8.8.8.8 9.9.9.9",
	};
	size_t i;

	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.servers = bad[i];
		err = NULL;
		assert_int_equal(dns_resolver_new(uv_default_loop(), &cfg, &r,
		    &err), -EINVAL);
		assert_null(r);
		assert_non_null(err);
	}
	cfg.servers = "127.0.0.1:5353, [::1]:53 ::1 192.0.2.1";
	assert_int_equal(dns_resolver_new(uv_default_loop(), &cfg, &r, &err),
	    0);
	dns_resolver_free(&r);
	assert_null(r);
	/* A resolv.conf without name servers. */
	cfg.servers = NULL;
	cfg.resolv_conf = "/dev/null";
	assert_true(dns_resolver_new(uv_default_loop(), &cfg, &r, &err) < 0);
	assert_null(r);
}

/*
 * Live lookups against ldns-testns.
 */

struct live {
	char dir[64];
	char data[96];
	pid_t pid;
	int port;
	int blackhole;		/* a UDP socket that never answers */
	int blackhole_port;
	uv_loop_t loop;
};

static struct live *live;

#define E(q, t) "ENTRY_BEGIN\nMATCH opcode qtype qname\n" \
	"REPLY QR RD RA NOERROR\nADJUST copy_id\nSECTION QUESTION\n" \
	q " IN " t "\nSECTION ANSWER\n"
#define END "ENTRY_END\n"
/* The same, validated by the (trusted) resolver: AD set. */
#define ESEC(q, t) "ENTRY_BEGIN\nMATCH opcode qtype qname\n" \
	"REPLY QR RD RA AD NOERROR\nADJUST copy_id\nSECTION QUESTION\n" \
	q " IN " t "\nSECTION ANSWER\n"

static const char zone[] =
    /* Two MX of equal preference and a backup. */
    E("example.test.", "MX")
    "example.test. 300 IN MX 10 mx-a.example.test.\n"
    "example.test. 300 IN MX 10 mx-b.example.test.\n"
    "example.test. 300 IN MX 20 backup.example.test.\n" END
    E("mx-a.example.test.", "A") "mx-a.example.test. 300 IN A 127.0.0.2\n" END
    E("mx-a.example.test.", "AAAA") END
    E("mx-b.example.test.", "A") "mx-b.example.test. 300 IN A 127.0.0.3\n" END
    E("mx-b.example.test.", "AAAA") END
    E("backup.example.test.", "A") END
    E("backup.example.test.", "AAAA")
    "backup.example.test. 300 IN AAAA ::1\n" END
    /* No MX: the domain's own address. */
    E("implicit.test.", "MX") END
    E("implicit.test.", "A") "implicit.test. 300 IN A 127.0.0.4\n" END
    E("implicit.test.", "AAAA") END
    /* No MX and no address. */
    E("empty.test.", "MX") END
    E("empty.test.", "A") END
    E("empty.test.", "AAAA") END
    E("null.test.", "MX") "null.test. 300 IN MX 0 .\n" END
    /* The MX host does not exist: nothing to deliver to. */
    E("dangling.test.", "MX") "dangling.test. 300 IN MX 5 gone.test.\n" END
    "ENTRY_BEGIN\nMATCH opcode qname\nREPLY QR RD RA NXDOMAIN\n"
    "ADJUST copy_id\nSECTION QUESTION\ngone.test. IN A\n" END
    "ENTRY_BEGIN\nMATCH opcode qname\nREPLY QR RD RA NXDOMAIN\n"
    "ADJUST copy_id\nSECTION QUESTION\nnowhere.test. IN MX\n"
    "SECTION AUTHORITY\n"
    "test. 300 IN SOA ns.test. root.test. 1 2 3 4 300\n" END
    "ENTRY_BEGIN\nMATCH opcode qname\nREPLY QR RD RA SERVFAIL\n"
    "ADJUST copy_id\nSECTION QUESTION\nbroken.test. IN MX\n" END
    /* Hostile answers. */
    E("loop.test.", "MX")
    "loop.test. 300 IN CNAME loop2.test.\n"
    "loop2.test. 300 IN CNAME loop.test.\n" END
    /* CNAMEs whose end the server leaves for us to ask. */
    E("alias.test.", "MX") "alias.test. 300 IN CNAME real.test.\n" END
    E("real.test.", "MX") "real.test. 300 IN MX 10 mx-a.example.test.\n" END
    E("ping.test.", "MX") "ping.test. 300 IN CNAME pong.test.\n" END
    E("pong.test.", "MX") "pong.test. 300 IN CNAME ping.test.\n" END
    E("literal.test.", "MX") "literal.test. 300 IN MX 10 127.0.0.2.\n" END
    E("many.test.", "A")
    "many.test. 300 IN A 127.0.1.1\nmany.test. 300 IN A 127.0.1.2\n"
    "many.test. 300 IN A 127.0.1.3\nmany.test. 300 IN A 127.0.1.4\n"
    "many.test. 300 IN A 127.0.1.5\nmany.test. 300 IN A 127.0.1.6\n"
    "many.test. 300 IN A 127.0.1.7\nmany.test. 300 IN A 127.0.1.8\n"
    "many.test. 300 IN A 127.0.1.9\nmany.test. 300 IN A 127.0.1.10\n"
    "many.test. 300 IN A 127.0.1.11\nmany.test. 300 IN A 127.0.1.12\n"
    "many.test. 300 IN A 127.0.1.13\nmany.test. 300 IN A 127.0.1.14\n"
    "many.test. 300 IN A 127.0.1.15\nmany.test. 300 IN A 127.0.1.16\n"
    "many.test. 300 IN A 127.0.1.17\nmany.test. 300 IN A 127.0.1.18\n"
    "many.test. 300 IN A 127.0.1.19\nmany.test. 300 IN A 127.0.1.20\n" END
    E("many.test.", "AAAA") END
    /* A header that promises five answers and carries none. */
    "ENTRY_BEGIN\nMATCH opcode qtype qname\nSECTION QUESTION\n"
    "short.test. IN MX\nHEX_ANSWER_BEGIN\n"
    "0000 8180 0001 0005 0000 0000\n"
    "05 73686f7274 04 74657374 00 000f 0001\n"
    "HEX_ANSWER_END\n" END
    /* DNSSEC: a validated MX, host and TLSA RRset; an unvalidated one. */
    ESEC("sec.test.", "MX") "sec.test. 300 IN MX 10 mx.sec.test.\n" END
    ESEC("mx.sec.test.", "A") "mx.sec.test. 300 IN A 127.0.0.5\n" END
    ESEC("mx.sec.test.", "AAAA") END
    ESEC("_25._tcp.mx.sec.test.", "TLSA")
    "_25._tcp.mx.sec.test. 300 IN TLSA 3 1 1 "
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
    END
    E("_25._tcp.mx-a.example.test.", "TLSA")
    "_25._tcp.mx-a.example.test. 300 IN TLSA 2 0 1 "
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
    END
    ESEC("_25._tcp.mx-b.example.test.", "TLSA") END
    /* PTR with and without forward confirmation, IPv4 and IPv6. */
    E("2.0.0.127.in-addr.arpa.", "PTR")
    "2.0.0.127.in-addr.arpa. 300 IN PTR mx-a.example.test.\n" END
    E("9.0.0.127.in-addr.arpa.", "PTR")
    "9.0.0.127.in-addr.arpa. 300 IN PTR liar.test.\n" END
    E("liar.test.", "A") "liar.test. 300 IN A 127.0.0.10\n" END
    E("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
    "ip6.arpa.", "PTR")
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
    "ip6.arpa. 300 IN PTR backup.example.test.\n" END
    "ENTRY_BEGIN\nMATCH opcode qname\nREPLY QR RD RA NXDOMAIN\n"
    "ADJUST copy_id\nSECTION QUESTION\n"
    "7.0.0.127.in-addr.arpa. IN PTR\n" END;

static int
live_start(struct live *l)
{
	posix_spawn_file_actions_t fa;
	char *argv[] = { "ldns-testns", "-r", l->data, NULL };
	char line[256], outpath[128];
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	FILE *f;
	int i;

	strcpy(l->dir, "/tmp/pochta-dns-test.XXXXXX");
	if (mkdtemp(l->dir) == NULL)
		return -1;
	snprintf(l->data, sizeof(l->data), "%s/zone.data", l->dir);
	snprintf(outpath, sizeof(outpath), "%s/out", l->dir);
	if ((f = fopen(l->data, "w")) == NULL)
		return -1;
	fputs(zone, f);
	/* An answer past 512 bytes, for the TCP fallback. */
	fputs(E("big.test.", "A"), f);
	for (i = 0; i < 60; i++)
		fprintf(f, "big.test. 300 IN A 127.0.2.%d\n", i + 1);
	fputs(END E("big.test.", "AAAA") END, f);
	fclose(f);
	/* Its output goes to a file: a pipe nobody reads could block it. */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, outpath,
	    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (posix_spawnp(&l->pid, "ldns-testns", &fa, NULL, argv,
	    environ) != 0)
		return -1;
	posix_spawn_file_actions_destroy(&fa);
	for (i = 0; i < 500 && l->port == 0; i++) {
		if ((f = fopen(outpath, "r")) != NULL) {
			while (fgets(line, sizeof(line), f) != NULL)
				if (sscanf(line, "Listening on port %d",
				    &l->port) == 1)
					break;
			fclose(f);
		}
		if (l->port == 0)
			usleep(10000);
	}
	/* Tell why the fake server did not come up. */
	if (l->port == 0 && (f = fopen(outpath, "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			fprintf(stderr, "ldns-testns: %s", line);
		fclose(f);
	}
	unlink(outpath);

	l->blackhole = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l->blackhole, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(l->blackhole, (struct sockaddr *)&sin, &len) != 0)
		return -1;
	l->blackhole_port = ntohs(sin.sin_port);
	uv_loop_init(&l->loop);
	return l->port > 0 ? 0 : -1;
}

static int
live_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	live = calloc(1, sizeof(*live));
	live->blackhole = -1;
	return live_start(live);
}

static int
live_teardown(void **state)
{
	(void)state;
	if (live->pid > 0) {
		kill(live->pid, SIGTERM);
		waitpid(live->pid, NULL, 0);
	}
	if (live->blackhole >= 0)
		close(live->blackhole);
	uv_loop_close(&live->loop);
	unlink(live->data);
	rmdir(live->dir);
	free(live);
	live = NULL;
	return 0;
}

static int live_dnssec;		/* dns_config.dnssec for live_resolver */

static struct dns_resolver *
live_resolver(const char *servers, unsigned timeout_ms, size_t cache)
{
	struct dns_config cfg;
	struct dns_resolver *r;
	char buf[128];
	const char *err;

	memset(&cfg, 0, sizeof(cfg));
	if (servers == NULL) {
		snprintf(buf, sizeof(buf), "127.0.0.1:%d", live->port);
		servers = buf;
	}
	cfg.servers = servers;
	cfg.timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
	cfg.cache_size = cache;
	cfg.dnssec = live_dnssec;
	assert_int_equal(dns_resolver_new(&live->loop, &cfg, &r, &err), 0);
	return r;
}

struct done {
	int called;
	struct dns_result *res;
};

static void
done_cb(struct dns_result *res, void *arg)
{
	struct done *d = arg;

	d->called++;
	d->res = res;
}

enum { Q_MX, Q_HOSTS, Q_ADDR, Q_PTR, Q_TLSA };

static int
lookup_start(struct dns_resolver *r, int q, const char *name, struct done *d,
    struct dns_request **req)
{
	struct dns_addr a;

	switch (q) {
	case Q_MX:
		return dns_lookup_mx(r, name, done_cb, d, req);
	case Q_HOSTS:
		return dns_resolve_mx_hosts(r, name, done_cb, d, req);
	case Q_ADDR:
		return dns_lookup_addr(r, name, done_cb, d, req);
	case Q_TLSA:
		return dns_lookup_tlsa(r, name, 25, done_cb, d, req);
	default:
		if (dns_addr_parse(name, &a) != 0)
			return -EINVAL;
		return dns_lookup_ptr(r, &a, done_cb, d, req);
	}
}

static struct dns_result *
lookup(struct dns_resolver *r, int q, const char *name)
{
	struct done d = { 0, NULL };
	struct dns_request *req = NULL;

	assert_int_equal(lookup_start(r, q, name, &d, &req), 0);
	assert_non_null(req);
	/* Never called back from inside the starting call. */
	assert_int_equal(d.called, 0);
	uv_run(&live->loop, UV_RUN_DEFAULT);
	assert_int_equal(d.called, 1);
	return d.res;
}

/* Look name up and check status, secure and how many MX or TLSA. */
static void
check_secure(struct dns_resolver *r, int q, const char *name, int status,
    int secure, size_t n)
{
	struct dns_result *res = lookup(r, q, name);

	assert_int_equal(res->status, status);
	assert_int_equal(res->secure, secure);
	assert_int_equal(q == Q_TLSA ? res->ntlsa : res->nmx, n);
	for (size_t i = 0; q == Q_HOSTS && i < res->nmx; i++)
		assert_int_equal(res->mx[i].secure, secure);
	for (size_t i = 0; q == Q_TLSA && i < res->ntlsa; i++)
		assert_int_equal(res->tlsa[i].len, 32);
	dns_result_free(&res);
}

static void
test_dns_live_dnssec_ad_and_tlsa(void **state)
{
	struct dns_resolver *r;

	(void)state;
	live_dnssec = 1;
	r = live_resolver(NULL, 0, 64);
	live_dnssec = 0;
	/* Twice: the second time from the cache, AD and all. */
	for (int pass = 0; pass < 2; pass++) {
		check_secure(r, Q_HOSTS, "sec.test", 0, 1, 1);
		check_secure(r, Q_TLSA, "mx.sec.test", 0, 1, 1);
	}
	check_secure(r, Q_HOSTS, "example.test", 0, 0, 3);
	check_secure(r, Q_TLSA, "mx-a.example.test", 0, 0, 1);
	/* A validated denial. */
	check_secure(r, Q_TLSA, "mx-b.example.test", DNS_E_NODATA, 1, 0);
	assert_int_equal(dns_lookup_tlsa(r, "mx.sec.test", 0, done_cb, NULL,
	    NULL), DNS_E_BADNAME);
	dns_resolver_free(&r);

	/* Without dnssec the AD bit is not believed. */
	r = live_resolver(NULL, 0, 64);
	check_secure(r, Q_HOSTS, "sec.test", 0, 0, 1);
	dns_resolver_free(&r);
}

static void
test_dns_live_mx_equal_preferences(void **state)
{
	struct dns_resolver *r = live_resolver(NULL, 0, 64);
	struct dns_result *res;
	char text[64];
	int first_a = 0, first_b = 0, i;

	(void)state;
	for (i = 0; i < 40; i++) {
		res = lookup(r, Q_HOSTS, "Example.Test");
		assert_int_equal(res->status, 0);
		assert_false(res->implicit_mx);
		assert_int_equal(res->nmx, 3);
		assert_int_equal(res->mx[0].pref, 10);
		assert_int_equal(res->mx[1].pref, 10);
		assert_int_equal(res->mx[2].pref, 20);
		assert_string_equal(res->mx[2].host, "backup.example.test");
		assert_int_equal(res->mx[2].naddrs, 1);
		dns_addr_format(&res->mx[2].addrs[0], text, sizeof(text));
		assert_string_equal(text, "::1");
		if (strcmp(res->mx[0].host, "mx-a.example.test") == 0) {
			first_a++;
			dns_addr_format(&res->mx[0].addrs[0], text,
			    sizeof(text));
			assert_string_equal(text, "127.0.0.2");
		} else {
			assert_string_equal(res->mx[0].host,
			    "mx-b.example.test");
			first_b++;
		}
		dns_result_free(&res);
	}
	/* Random among equals: both orders show up (p of failing 2^-39). */
	assert_true(first_a > 0 && first_b > 0);

	res = lookup(r, Q_MX, "example.test.");
	assert_int_equal(res->status, 0);
	assert_int_equal(res->nmx, 3);
	assert_int_equal(res->mx[0].naddrs, 0);
	dns_result_free(&res);
	dns_resolver_free(&r);
}

static void
test_dns_live_implicit_and_null_mx(void **state)
{
	struct dns_resolver *r = live_resolver(NULL, 0, 0);
	struct dns_result *res;
	char text[64];

	(void)state;
	res = lookup(r, Q_HOSTS, "implicit.test");
	assert_int_equal(res->status, 0);
	assert_true(res->implicit_mx);
	assert_int_equal(res->nmx, 1);
	assert_string_equal(res->mx[0].host, "implicit.test");
	assert_int_equal(res->mx[0].pref, 0);
	assert_int_equal(res->mx[0].naddrs, 1);
	dns_addr_format(&res->mx[0].addrs[0], text, sizeof(text));
	assert_string_equal(text, "127.0.0.4");
	dns_result_free(&res);

	res = lookup(r, Q_HOSTS, "empty.test");
	assert_int_equal(res->status, DNS_E_NODATA);
	assert_int_equal(res->nmx, 0);
	dns_result_free(&res);

	res = lookup(r, Q_HOSTS, "null.test");
	assert_int_equal(res->status, DNS_E_NULLMX);
	assert_int_equal(res->nmx, 0);
	dns_result_free(&res);

	/* A CNAME the server did not follow is followed here. */
	res = lookup(r, Q_HOSTS, "alias.test");
	assert_int_equal(res->status, 0);
	assert_int_equal(res->nmx, 1);
	assert_string_equal(res->mx[0].host, "mx-a.example.test");
	assert_int_equal(res->mx[0].naddrs, 1);
	dns_result_free(&res);

	res = lookup(r, Q_HOSTS, "dangling.test");
	assert_int_equal(res->status, DNS_E_NODATA);
	assert_non_null(strstr(res->errstr, "gone.test"));
	dns_result_free(&res);
	dns_resolver_free(&r);
}

static void
test_dns_live_nxdomain_servfail_timeout(void **state)
{
	struct dns_resolver *r = live_resolver(NULL, 0, 16), *slow;
	struct dns_result *res;
	char servers[64];
	uint64_t start;

	(void)state;
	res = lookup(r, Q_HOSTS, "nowhere.test");
	assert_int_equal(res->status, DNS_E_NXDOMAIN);
	assert_false(dns_error_is_temporary(res->status));
	dns_result_free(&res);
	res = lookup(r, Q_HOSTS, "broken.test");
	assert_int_equal(res->status, DNS_E_SERVFAIL);
	assert_true(dns_error_is_temporary(res->status));
	dns_result_free(&res);
	dns_resolver_free(&r);

	/* A server that never answers: one attempt per retry, then give
	 * up with a temporary error. */
	snprintf(servers, sizeof(servers), "127.0.0.1:%d",
	    live->blackhole_port);
	slow = live_resolver(servers, 200, 0);
	start = uv_hrtime();
	res = lookup(slow, Q_HOSTS, "example.test");
	assert_int_equal(res->status, DNS_E_TIMEOUT);
	assert_true(dns_error_is_temporary(res->status));
	assert_true(uv_hrtime() - start < 3000000000ULL);
	dns_result_free(&res);
	dns_resolver_free(&slow);

	/* The dead server first, the live one second: the answer wins. */
	snprintf(servers, sizeof(servers), "127.0.0.1:%d 127.0.0.1:%d",
	    live->blackhole_port, live->port);
	slow = live_resolver(servers, 200, 0);
	res = lookup(slow, Q_HOSTS, "implicit.test");
	assert_int_equal(res->status, 0);
	dns_result_free(&res);
	dns_resolver_free(&slow);
}

static void
test_dns_live_ptr_forward_confirmation(void **state)
{
	struct dns_resolver *r = live_resolver(NULL, 0, 16);
	struct dns_result *res;

	(void)state;
	res = lookup(r, Q_PTR, "127.0.0.2");
	assert_int_equal(res->status, 0);
	assert_string_equal(res->name, "mx-a.example.test");
	dns_result_free(&res);

	/* An IPv4 client seen on a dual-stack socket. */
	res = lookup(r, Q_PTR, "::ffff:127.0.0.2");
	assert_int_equal(res->status, 0);
	assert_string_equal(res->name, "mx-a.example.test");
	dns_result_free(&res);

	res = lookup(r, Q_PTR, "::1");
	assert_int_equal(res->status, 0);
	assert_string_equal(res->name, "backup.example.test");
	dns_result_free(&res);

	/* The PTR says liar.test, but liar.test is 127.0.0.10. */
	res = lookup(r, Q_PTR, "127.0.0.9");
	assert_int_equal(res->status, DNS_E_NOTCONFIRMED);
	assert_null(res->name);
	assert_string_equal(res->ptr_name, "liar.test");
	assert_non_null(strstr(res->errstr, "127.0.0.9"));
	dns_result_free(&res);

	res = lookup(r, Q_PTR, "127.0.0.7");
	assert_int_equal(res->status, DNS_E_NXDOMAIN);
	assert_null(res->name);
	dns_result_free(&res);
	dns_resolver_free(&r);
}

static void
test_dns_live_hostile_answers(void **state)
{
	struct dns_resolver *r = live_resolver(NULL, 0, 16);
	struct dns_result *res;
	struct done d = { 0, NULL };
	char longname[400];

	(void)state;
	res = lookup(r, Q_MX, "loop.test");
	assert_int_equal(res->status, DNS_E_BADANSWER);
	assert_non_null(strstr(res->errstr, "CNAME"));
	dns_result_free(&res);

	res = lookup(r, Q_MX, "ping.test");
	assert_int_equal(res->status, DNS_E_BADANSWER);
	assert_non_null(strstr(res->errstr, "CNAME"));
	dns_result_free(&res);

	res = lookup(r, Q_HOSTS, "literal.test");
	assert_int_equal(res->status, DNS_E_BADANSWER);
	assert_non_null(strstr(res->errstr, "IP address"));
	dns_result_free(&res);

	res = lookup(r, Q_MX, "short.test");
	assert_int_equal(res->status, DNS_E_BADANSWER);
	assert_true(dns_error_is_temporary(res->status));
	dns_result_free(&res);

	res = lookup(r, Q_ADDR, "many.test");
	assert_int_equal(res->status, 0);
	assert_int_equal(res->naddrs, DNS_MAX_ADDRS);
	dns_result_free(&res);
	res = lookup(r, Q_ADDR, "big.test");
	assert_int_equal(res->status, 0);
	assert_int_equal(res->naddrs, DNS_MAX_ADDRS);
	dns_result_free(&res);

	/* Names no query may carry. */
	memset(longname, 'a', sizeof(longname));
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(dns_lookup_mx(r, longname, done_cb, &d, NULL),
	    DNS_E_BADNAME);
	memset(longname, 'a', 64);
	strcpy(longname + 64, ".test");
	assert_int_equal(dns_lookup_mx(r, longname, done_cb, &d, NULL),
	    DNS_E_BADNAME);
	assert_int_equal(dns_lookup_addr(r, "a..test", done_cb, &d, NULL),
	    DNS_E_BADNAME);
	assert_int_equal(dns_lookup_addr(r, "", done_cb, &d, NULL),
	    DNS_E_BADNAME);
	assert_int_equal(dns_lookup_addr(r, "a b.test", done_cb, &d, NULL),
	    DNS_E_BADNAME);
	assert_int_equal(dns_lookup_addr(r, "a\n.test", done_cb, &d, NULL),
	    DNS_E_BADNAME);
	uv_run(&live->loop, UV_RUN_DEFAULT);
	assert_int_equal(d.called, 0);
	dns_resolver_free(&r);
}

static void
test_dns_live_cancel_and_free_while_running(void **state)
{
	struct dns_resolver *r = live_resolver(NULL, 0, 0), *dead;
	struct done d[3];
	struct dns_request *req[3];
	char servers[64];
	int i;

	(void)state;
	memset(d, 0, sizeof(d));
	snprintf(servers, sizeof(servers), "127.0.0.1:%d",
	    live->blackhole_port);
	dead = live_resolver(servers, 500, 0);
	/* A lookup that hangs on the dead server, cancelled while it runs;
	 * one that completes; one cancelled at once. */
	assert_int_equal(dns_lookup_mx(dead, "example.test", done_cb, &d[0],
	    &req[0]), 0);
	assert_int_equal(dns_resolve_mx_hosts(r, "example.test", done_cb,
	    &d[1], &req[1]), 0);
	assert_int_equal(dns_lookup_addr(r, "implicit.test", done_cb, &d[2],
	    &req[2]), 0);
	dns_cancel(&req[2]);
	dns_cancel(&req[2]);	/* a cleared handle is ignored */
	uv_sleep(100);		/* the dead-server lookup is waiting now */
	dns_cancel(&req[0]);
	assert_null(req[0]);
	/* The owners let go; the requests keep what they need alive. */
	dns_resolver_free(&r);
	dns_resolver_free(&dead);
	uv_run(&live->loop, UV_RUN_DEFAULT);
	assert_int_equal(d[0].called, 0);
	assert_int_equal(d[1].called, 1);
	assert_int_equal(d[2].called, 0);
	assert_int_equal(d[1].res->status, 0);
	for (i = 0; i < 3; i++)
		dns_result_free(&d[i].res);
}

static void
test_dns_live_cache_spares_the_server(void **state)
{
	struct dns_resolver *r = live_resolver(NULL, 0, 16);
	struct dns_result *res;

	(void)state;
	res = lookup(r, Q_ADDR, "implicit.test");
	assert_int_equal(res->status, 0);
	dns_result_free(&res);
	/* With the server gone, the cached answer still serves. */
	kill(live->pid, SIGSTOP);
	res = lookup(r, Q_ADDR, "implicit.test");
	kill(live->pid, SIGCONT);
	assert_int_equal(res->status, 0);
	assert_int_equal(res->naddrs, 1);
	dns_result_free(&res);
	dns_resolver_free(&r);
}

/*
 * One lookup for the integration tests, printed line by line.
 */
static int
query_main(const char *query, const char *servers)
{
	struct dns_config cfg;
	struct dns_resolver *r;
	struct dns_result *res;
	char kind[16], name[512], text[64];
	const char *err;
	struct done d;
	int q, rc;
	size_t i, j;

	if (sscanf(query, "%15s %511s", kind, name) != 2)
		return 2;
	q = strcmp(kind, "mx") == 0 ? Q_MX : strcmp(kind, "mxhosts") == 0 ?
	    Q_HOSTS : strcmp(kind, "addr") == 0 ? Q_ADDR :
	    strcmp(kind, "ptr") == 0 ? Q_PTR : -1;
	if (q < 0)
		return 2;
	live = calloc(1, sizeof(*live));
	uv_loop_init(&live->loop);
	memset(&cfg, 0, sizeof(cfg));
	cfg.servers = servers;
	cfg.timeout_ms = 1000;
	if (dns_resolver_new(&live->loop, &cfg, &r, &err) != 0) {
		fprintf(stderr, "dns: %s\n", err);
		return 2;
	}
	memset(&d, 0, sizeof(d));
	if ((rc = lookup_start(r, q, name, &d, NULL)) != 0) {
		printf("status=%d temporary=%d\nerror=%s\n", rc,
		    dns_error_is_temporary(rc), dns_strerror(rc));
		dns_resolver_free(&r);
		uv_loop_close(&live->loop);
		free(live);
		return 0;
	}
	uv_run(&live->loop, UV_RUN_DEFAULT);
	if ((res = d.res) == NULL)
		return 1;
	printf("status=%d temporary=%d\n", res->status,
	    dns_error_is_temporary(res->status));
	if (res->status != 0)
		printf("error=%s\n", res->errstr);
	if (res->name != NULL)
		printf("name=%s\n", res->name);
	for (i = 0; i < res->naddrs; i++) {
		dns_addr_format(&res->addrs[i], text, sizeof(text));
		printf("addr=%s\n", text);
	}
	for (i = 0; i < res->nmx; i++) {
		printf("mx=%u %s", res->mx[i].pref, res->mx[i].host);
		for (j = 0; j < res->mx[i].naddrs; j++) {
			dns_addr_format(&res->mx[i].addrs[j], text,
			    sizeof(text));
			printf(" %s", text);
		}
		printf("\n");
	}
	dns_result_free(&res);
	dns_resolver_free(&r);
	uv_loop_close(&live->loop);
	free(live);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns_ptr_qname_v4_v6),
		cmocka_unit_test(test_dns_mx_sort_by_pref_random_among_equals),
		cmocka_unit_test(test_dns_mx_from_pkt_records),
		cmocka_unit_test(test_dns_mx_from_pkt_null_mx),
		cmocka_unit_test(test_dns_mx_from_pkt_errors),
		cmocka_unit_test(test_dns_addrs_from_pkt_caps_and_types),
		cmocka_unit_test(
		    test_dns_tlsa_from_pkt_records_and_hostile_data),
		cmocka_unit_test(test_dns_cache_expiry_follows_ttl),
		cmocka_unit_test(test_dns_cache_negative_and_uncacheable),
		cmocka_unit_test(test_dns_cache_evicts_least_recently_used),
		cmocka_unit_test(test_dns_resolver_config_errors),
		cmocka_unit_test(test_dns_live_mx_equal_preferences),
		cmocka_unit_test(test_dns_live_dnssec_ad_and_tlsa),
		cmocka_unit_test(test_dns_live_implicit_and_null_mx),
		cmocka_unit_test(test_dns_live_nxdomain_servfail_timeout),
		cmocka_unit_test(test_dns_live_ptr_forward_confirmation),
		cmocka_unit_test(test_dns_live_hostile_answers),
		cmocka_unit_test(test_dns_live_cancel_and_free_while_running),
		cmocka_unit_test(test_dns_live_cache_spares_the_server),
	};
	const char *query = getenv("POCHTA_DNS_QUERY");
	int failed;

	if (query != NULL && getenv("POCHTA_DNS_SERVERS") != NULL)
		return query_main(query, getenv("POCHTA_DNS_SERVERS"));
	/* One group, so the runner sees one PASSED line; the pure tests do
	 * not use the fake server the group starts. */
	failed = cmocka_run_group_tests_name("dns", tests, live_setup,
	    live_teardown);
	return failed != 0;
}
