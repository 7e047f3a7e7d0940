/*
 * address_test.c - unit tests for lib/address: a table of valid and invalid
 * SMTP paths (RFC 5321 4.1.2, 4.5.3.1, RFC 6531), canonical forms, and the
 * relay-disguise helpers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "address.h"

#define N ADDRESS_ALLOW_NULL
#define U ADDRESS_SMTPUTF8
#define P ADDRESS_ALLOW_POSTMASTER

struct good {
	const char *in;
	unsigned flags;
	const char *local;
	const char *domain;
	const char *canonical;
	unsigned found;
};

static const struct good goods[] = {
	{ "<>", N, "", "", "", ADDRESS_F_NULL },
	{ "<user@example.test>", 0, "user", "example.test",
	    "user@example.test", 0 },
	{ "<User.Name+tag@Example.TEST>", 0, "User.Name+tag", "example.test",
	    "User.Name+tag@example.test", 0 },
	{ "<!#$%&'*+-/=?^_`{|}~@example.test>", 0,
	    "!#$%&'*+-/=?^_`{|}~", "example.test",
	    "!#$%&'*+-/=?^_`{|}~@example.test", 0 },
	{ "<\"john doe\"@example.test>", 0, "john doe", "example.test",
	    "\"john doe\"@example.test", ADDRESS_F_QUOTED },
	/* Needless quotes go away in the canonical form. */
	{ "<\"john\"@example.test>", 0, "john", "example.test",
	    "john@example.test", ADDRESS_F_QUOTED },
	{ "<\"a\\\"b\\\\c\"@example.test>", 0, "a\"b\\c", "example.test",
	    "\"a\\\"b\\\\c\"@example.test", ADDRESS_F_QUOTED },
	{ "<\"\\j\\o\\e\"@example.test>", 0, "joe", "example.test",
	    "joe@example.test", ADDRESS_F_QUOTED },
	{ "<\".leading\"@example.test>", 0, ".leading", "example.test",
	    "\".leading\"@example.test", ADDRESS_F_QUOTED },
	{ "<\"trailing.\"@example.test>", 0, "trailing.", "example.test",
	    "\"trailing.\"@example.test", ADDRESS_F_QUOTED },
	{ "<\"a..b\"@example.test>", 0, "a..b", "example.test",
	    "\"a..b\"@example.test", ADDRESS_F_QUOTED },
	{ "<user@localhost>", 0, "user", "localhost", "user@localhost", 0 },
	{ "<u@a-b.c-d.example>", 0, "u", "a-b.c-d.example",
	    "u@a-b.c-d.example", 0 },
	{ "<u@123.example>", 0, "u", "123.example", "u@123.example", 0 },
	{ "<user@[192.0.2.1]>", 0, "user", "[192.0.2.1]", "user@[192.0.2.1]",
	    ADDRESS_F_LITERAL },
	{ "<user@[IPv6:2001:DB8::1]>", 0, "user", "[IPv6:2001:db8::1]",
	    "user@[IPv6:2001:db8::1]", ADDRESS_F_LITERAL },
	{ "<user@[ipv6:0:0:0:0:0:0:0:1]>", 0, "user", "[IPv6:::1]",
	    "user@[IPv6:::1]", ADDRESS_F_LITERAL },
	{ "<@a.example,@b.example:user@c.example>", 0, "user", "c.example",
	    "user@c.example", ADDRESS_F_ROUTE },
	{ "<@a.example:user@c.example>", 0, "user", "c.example",
	    "user@c.example", ADDRESS_F_ROUTE },
	{ "<Postmaster>", P, "postmaster", "", "postmaster",
	    ADDRESS_F_POSTMASTER },
	{ "<POSTMASTER>", P, "postmaster", "", "postmaster",
	    ADDRESS_F_POSTMASTER },
	{ "<postmaster@example.test>", 0, "postmaster", "example.test",
	    "postmaster@example.test", 0 },
	/* UTF-8 under SMTPUTF8 (RFC 6531 3.3). */
	{ "<\xd0\xbf\xd0\xbe\xd1\x87\xd1\x82\xd0\xb0@\xd0\xbf\xd1\x80\xd0"
	  "\xb8\xd0\xbc\xd0\xb5\xd1\x80.test>", U,
	    "\xd0\xbf\xd0\xbe\xd1\x87\xd1\x82\xd0\xb0",
	    "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.test",
	    "\xd0\xbf\xd0\xbe\xd1\x87\xd1\x82\xd0\xb0@\xd0\xbf\xd1\x80\xd0"
	    "\xb8\xd0\xbc\xd0\xb5\xd1\x80.test", ADDRESS_F_UTF8 },
	{ "<\"caf\xc3\xa9 bar\"@example.test>", U, "caf\xc3\xa9 bar",
	    "example.test", "\"caf\xc3\xa9 bar\"@example.test",
	    ADDRESS_F_QUOTED | ADDRESS_F_UTF8 },
	{ "<\xf0\x9f\x93\xa7@example.test>", U, "\xf0\x9f\x93\xa7",
	    "example.test", "\xf0\x9f\x93\xa7@example.test", ADDRESS_F_UTF8 },
	/* Relay disguises parse: the helper flags them. */
	{ "<user%other@example.test>", 0, "user%other", "example.test",
	    "user%other@example.test", 0 },
	{ "<other!user@example.test>", 0, "other!user", "example.test",
	    "other!user@example.test", 0 },
	{ "<\"user@other\"@example.test>", 0, "user@other", "example.test",
	    "\"user@other\"@example.test", ADDRESS_F_QUOTED },
};

struct bad {
	const char *in;
	size_t len;	/* 0: strlen */
	unsigned flags;
	int err;
};

static const struct bad bads[] = {
	{ "", 0, N, -EINVAL },
	{ "<>", 0, 0, -EPERM },
	{ "<Postmaster>", 0, 0, -EPERM },
	{ "user@example.test", 0, 0, -EINVAL },		/* no brackets */
	{ "<user@example.test", 0, 0, -EINVAL },
	{ "user@example.test>", 0, 0, -EINVAL },
	{ "<<user@example.test>>", 0, 0, -EINVAL },	/* nested */
	{ "<user@<example.test>>", 0, 0, -EINVAL },
	{ "<user<x>@example.test>", 0, 0, -EINVAL },
	{ "<@example.test>", 0, 0, -EINVAL },		/* empty local */
	{ "<\"\"@example.test>", 0, 0, -EINVAL },
	{ "<user>", 0, 0, -EINVAL },			/* no domain */
	{ "<user@>", 0, 0, -EINVAL },
	{ "<a..b@example.test>", 0, 0, -EINVAL },
	{ "<.ab@example.test>", 0, 0, -EINVAL },
	{ "<ab.@example.test>", 0, 0, -EINVAL },
	{ "<a b@example.test>", 0, 0, -EINVAL },	/* space unquoted */
	{ "< user@example.test>", 0, 0, -EINVAL },
	{ "<user@example.test >", 0, 0, -EINVAL },
	{ "<a\\b@example.test>", 0, 0, -EINVAL },	/* backslash unquoted */
	{ "<a\"b@example.test>", 0, 0, -EINVAL },
	{ "<\"abc@example.test>", 0, 0, -EINVAL },	/* unterminated */
	{ "<\"a\\\x01\"@example.test>", 0, 0, -EINVAL },
	{ "<\"a\tb\"@example.test>", 0, 0, -EINVAL },
	{ "<user@example.test.>", 0, 0, -EINVAL },	/* trailing dot */
	{ "<user@.example.test>", 0, 0, -EINVAL },
	{ "<user@example..test>", 0, 0, -EINVAL },
	{ "<user@-example.test>", 0, 0, -EINVAL },
	{ "<user@example-.test>", 0, 0, -EINVAL },
	{ "<user@exa_mple.test>", 0, 0, -EINVAL },
	{ "<user@example.test@other.test>", 0, 0, -EINVAL },
	{ "<user\r\n@example.test>", 0, 0, -EINVAL },
	{ "<user@example.test\r\n>", 0, 0, -EINVAL },
	{ "<us\x7f" "er@example.test>", 0, 0, -EINVAL },
	{ "<us\x1b" "er@example.test>", 0, 0, -EINVAL },
	{ "<user\0@example.test>", 20, 0, -EINVAL },
	{ "<\"us\0er\"@example.test>", 22, 0, -EINVAL },
	{ "<user@example.test>junk", 0, 0, -EINVAL },
	/* Address literals. */
	{ "<user@[192.0.2.256]>", 0, 0, -EINVAL },
	{ "<user@[192.0.2]>", 0, 0, -EINVAL },
	{ "<user@[192.0.2.1.5]>", 0, 0, -EINVAL },
	{ "<user@[192.0.2.01]>", 0, 0, -EINVAL },
	{ "<user@[IPv6:1::2::3]>", 0, 0, -EINVAL },
	{ "<user@[IPv6:192.0.2.1]>", 0, 0, -EINVAL },
	{ "<user@[2001:db8::1]>", 0, 0, -EINVAL },	/* no IPv6: tag */
	{ "<user@[x-tag:whatever]>", 0, 0, -EINVAL },	/* general literal */
	{ "<user@[192.0.2.1>", 0, 0, -EINVAL },
	{ "<user@[[192.0.2.1]]>", 0, 0, -EINVAL },
	{ "<user@[]>", 0, 0, -EINVAL },
	{ "<user@[192.0.2.1].test>", 0, 0, -EINVAL },
	/* Routes. */
	{ "<@a.example user@c.example>", 0, 0, -EINVAL },
	{ "<@a.example,user@c.example>", 0, 0, -EINVAL },
	{ "<@:user@c.example>", 0, 0, -EINVAL },
	{ "<@[192.0.2.1]:user@c.example>", 0, 0, -EINVAL },
	/* UTF-8 without SMTPUTF8, and broken UTF-8 with it. */
	{ "<\xd0\xbf@example.test>", 0, 0, -EILSEQ },
	{ "<user@\xd0\xbf.test>", 0, 0, -EILSEQ },
	{ "<\"\xd0\xbf\"@example.test>", 0, 0, -EILSEQ },
	{ "<\xd0@example.test>", 0, U, -EINVAL },		/* truncated */
	{ "<\xc0\xaf@example.test>", 0, U, -EINVAL },	/* overlong */
	{ "<\xed\xa0\x80@example.test>", 0, U, -EINVAL },	/* surrogate */
	{ "<\xf4\x90\x80\x80@example.test>", 0, U, -EINVAL },
	{ "<\xc2\x85@example.test>", 0, U, -EINVAL },	/* C1 NEL */
	{ "<\xff@example.test>", 0, U, -EINVAL },
};

static void
test_address_valid_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];
		struct address *a = NULL;
		const char *err = NULL;
		int r;

		r = address_parse_path(g->in, strlen(g->in), g->flags, &a,
		    NULL, &err);
		if (r != 0)
			fail_msg("%s: %d %s", g->in, r, err ? err : "");
		assert_string_equal(a->local, g->local);
		assert_string_equal(a->domain, g->domain);
		assert_string_equal(a->canonical, g->canonical);
		assert_int_equal(a->flags, g->found);
		address_free(&a);
		assert_null(a);
	}
}

static void
test_address_invalid_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		size_t len = b->len ? b->len : strlen(b->in);
		struct address *a = NULL;
		const char *err = NULL;
		int r;

		r = address_parse_path(b->in, len, b->flags, &a, NULL, &err);
		if (r != b->err)
			fail_msg("case %zu \"%s\": got %d want %d", i, b->in,
			    r, b->err);
		assert_null(a);
		assert_non_null(err);
	}
}

static void
test_address_parameters_follow(void **state)
{
	const char *line = "<\"a>b\"@example.test> SIZE=100 BODY=8BITMIME";
	struct address *a = NULL;
	const char *err = NULL;
	size_t end = 0;

	(void)state;
	assert_int_equal(address_parse_path(line, strlen(line), 0, &a, &end,
	    &err), 0);
	assert_int_equal(end, strlen("<\"a>b\"@example.test>"));
	assert_string_equal(a->local, "a>b");
	address_free(&a);
	/* Without end_r the rest is junk. */
	assert_int_equal(address_parse_path(line, strlen(line), 0, &a, NULL,
	    &err), -EINVAL);
	assert_null(a);
}

static char *
make_path(size_t local_len, size_t label_len, size_t labels)
{
	char *s = malloc(local_len + labels * (label_len + 1) + 8);
	size_t n = 0;

	s[n++] = '<';
	memset(s + n, 'l', local_len);
	n += local_len;
	s[n++] = '@';
	for (size_t i = 0; i < labels; i++) {
		if (i > 0)
			s[n++] = '.';
		memset(s + n, 'd', label_len);
		n += label_len;
	}
	s[n++] = '>';
	s[n] = '\0';
	return s;
}

static int
parse_str(const char *s, unsigned flags)
{
	struct address *a = NULL;
	const char *err = NULL;
	int r = address_parse_path(s, strlen(s), flags, &a, NULL, &err);

	address_free(&a);
	return r;
}

static void
test_address_length_limits(void **state)
{
	char *s;
	char q[80];

	(void)state;
	s = make_path(64, 10, 1);
	assert_int_equal(parse_str(s, 0), 0);
	free(s);
	s = make_path(65, 10, 1);
	assert_int_equal(parse_str(s, 0), -ENAMETOOLONG);
	free(s);
	/* The quotes count toward the 64 octets. */
	snprintf(q, sizeof(q), "<\"%.62s\"@x.test>",
	    "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq");
	assert_int_equal(parse_str(q, 0), 0);
	snprintf(q, sizeof(q), "<\"%.63s\"@x.test>",
	    "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq");
	assert_int_equal(parse_str(q, 0), -ENAMETOOLONG);
	s = make_path(5, 63, 2);
	assert_int_equal(parse_str(s, 0), 0);
	free(s);
	s = make_path(5, 64, 2);
	assert_int_equal(parse_str(s, 0), -ENAMETOOLONG);
	free(s);
	/* 4 labels of 63 and 3 dots: a 255-octet domain, a 263-octet path */
	s = make_path(1, 63, 4);
	assert_int_equal(parse_str(s, 0), -ENAMETOOLONG);
	free(s);
	/* 246-octet domain: path of 251 octets fits. */
	s = make_path(1, 60, 4);
	assert_int_equal(parse_str(s, 0), 0);
	free(s);
	/* Domain over 255 in a bare mailbox. */
	s = make_path(1, 50, 6);
	assert_int_equal(parse_str(s, 0), -ENAMETOOLONG);
	assert_int_equal(address_parse_mailbox(s + 1, strlen(s) - 2, 0,
	    &(struct address *){ NULL }, &(const char *){ NULL }),
	    -ENAMETOOLONG);
	free(s);
}

/* RFC 5321 4.5.3.1.3: 256 octets with the brackets is the most. */
static void
test_address_path_boundary(void **state)
{
	char s[600];
	struct address *a = NULL;
	const char *err = NULL;
	size_t end = 0, n;

	(void)state;
	/* <64 l>@<63 d>.<63 d>.<61 d> = 1 + 64 + 1 + 189 + 1 = 256 */
	n = (size_t)snprintf(s, sizeof(s), "<%.64s@%.63s.%.63s.%.61s>",
	    "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll",
	    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
	    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
	    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
	assert_int_equal(n, 256);
	assert_int_equal(address_parse_path(s, n, 0, &a, NULL, &err), 0);
	address_free(&a);
	/* Long ESMTP parameters after it are the caller's business. */
	memset(s + n, 'P', 300);
	s[n] = ' ';
	assert_int_equal(address_parse_path(s, n + 300, 0, &a, &end, &err), 0);
	assert_int_equal(end, 256);
	address_free(&a);
	/* One more octet in the last label: 257. */
	n = (size_t)snprintf(s, sizeof(s), "<%.64s@%.63s.%.63s.%.62s>",
	    "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll",
	    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
	    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
	    "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
	assert_int_equal(n, 257);
	assert_int_equal(address_parse_path(s, n, 0, &a, NULL, &err),
	    -ENAMETOOLONG);
	assert_int_equal(address_parse_path(s, n, 0, &a, &end, &err),
	    -ENAMETOOLONG);
	assert_null(a);
}

static void
test_address_long_route_refused_cheaply(void **state)
{
	size_t n = 100000, len = 0;
	char *s = malloc(n + 64);

	(void)state;
	s[len++] = '<';
	while (len < n) {
		memcpy(s + len, "@a.example,", 11);
		len += 11;
	}
	memcpy(s + len, "@b:u@c.example>", 15);
	len += 15;
	struct address *a = NULL;
	const char *err = NULL;
	assert_int_equal(address_parse_path(s, len, 0, &a, NULL, &err),
	    -ENAMETOOLONG);
	assert_null(a);
	free(s);
}

static void
test_address_routing_chars(void **state)
{
	static const struct {
		const char *in;
		int routing;
	} cases[] = {
		{ "<user%other@example.test>", 1 },
		{ "<other!user@example.test>", 1 },
		{ "<\"user@other\"@example.test>", 1 },
		{ "<\"user%other\"@example.test>", 1 },
		{ "<user@example.test>", 0 },
		{ "<user+tag@example.test>", 0 },
		{ "<@relay.example:user@example.test>", 0 },
	};
	struct address *a = NULL;
	const char *err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(address_parse_path(cases[i].in,
		    strlen(cases[i].in), 0, &a, NULL, &err), 0);
		assert_int_equal(address_has_routing_chars(a),
		    cases[i].routing);
		assert_false(address_is_literal(a));
		address_free(&a);
	}
	assert_int_equal(address_parse_path("<u@[192.0.2.7]>", 15, 0, &a,
	    NULL, &err), 0);
	assert_true(address_is_literal(a));
	assert_false(address_has_routing_chars(a));
	address_free(&a);
}

static void
test_address_mailbox(void **state)
{
	struct address *a = NULL;
	const char *err = NULL;

	(void)state;
	assert_int_equal(address_parse_mailbox("Bob@Example.Test", 16, 0, &a,
	    &err), 0);
	assert_string_equal(a->canonical, "Bob@example.test");
	address_free(&a);
	assert_int_equal(address_parse_mailbox("<bob@example.test>", 18, 0,
	    &a, &err), -EINVAL);
	assert_int_equal(address_parse_mailbox("bob@example.test x", 18, 0,
	    &a, &err), -EINVAL);
	assert_int_equal(address_parse_mailbox("bob", 3, 0, &a, &err),
	    -EINVAL);
	assert_int_equal(address_parse_mailbox("", 0, 0, &a, &err), -EINVAL);
	assert_null(a);
}

/* Every prefix of valid paths fails cleanly or parses (no over-read). */
static void
test_address_every_prefix(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		size_t len = strlen(goods[i].in);

		for (size_t n = 0; n < len; n++) {
			char *copy = malloc(n ? n : 1);
			struct address *a = NULL;
			const char *err = NULL;

			memcpy(copy, goods[i].in, n);
			int r = address_parse_path(copy, n, goods[i].flags,
			    &a, NULL, &err);
			assert_true(r < 0);
			assert_non_null(err);
			assert_null(a);
			free(copy);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_valid_table),
		cmocka_unit_test(test_address_invalid_table),
		cmocka_unit_test(test_address_parameters_follow),
		cmocka_unit_test(test_address_length_limits),
		cmocka_unit_test(test_address_path_boundary),
		cmocka_unit_test(test_address_long_route_refused_cheaply),
		cmocka_unit_test(test_address_routing_chars),
		cmocka_unit_test(test_address_mailbox),
		cmocka_unit_test(test_address_every_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
