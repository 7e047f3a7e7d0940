/*
 * cidr_test.c - prefix lists: IPv4, IPv6, mapped addresses, bad entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cidr.h"

static void
test_cidr_match(void **state)
{
	char *items[] = {"127.0.0.0/8", "[::1]/128", "192.0.2.7",
	    "2001:db8::/32", "10.1.2.128/25", "0.0.0.0/0x"};
	struct cidr_list *l = NULL;
	char *err = NULL;

	(void)state;
	assert_int_equal(cidr_list_parse(items, 5, &l, &err), 0);
	assert_true(cidr_list_match(l, "127.0.0.1"));
	assert_true(cidr_list_match(l, "127.255.255.254"));
	assert_true(cidr_list_match(l, "::ffff:127.0.0.1"));
	assert_true(cidr_list_match(l, "::1"));
	assert_false(cidr_list_match(l, "::2"));
	assert_true(cidr_list_match(l, "192.0.2.7"));
	assert_false(cidr_list_match(l, "192.0.2.8"));
	assert_true(cidr_list_match(l, "2001:db8:ffff::1"));
	assert_false(cidr_list_match(l, "2001:db9::1"));
	assert_true(cidr_list_match(l, "10.1.2.200"));
	assert_false(cidr_list_match(l, "10.1.2.127"));
	assert_false(cidr_list_match(l, "128.0.0.1"));
	assert_false(cidr_list_match(l, "not an address"));
	assert_false(cidr_list_match(l, ""));
	cidr_list_free(&l);
	assert_null(l);

	/* The sixth entry is malformed: the error names it. */
	assert_int_equal(cidr_list_parse(items, 6, &l, &err), -22);
	assert_non_null(err);
	assert_non_null(strstr(err, "0.0.0.0/0x"));
	free(err);
}

static void
test_cidr_bad_entries(void **state)
{
	const char *bad[] = {"", "/8", "1.2.3.4/33", "[1.2.3.4", "::1/129",
	    "1.2.3", "[::1]]", "1.2.3.4/", "1.2.3.4/-1", "[]"};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *items[] = {(char *)bad[i]};
		struct cidr_list *l = NULL;
		char *err = NULL;
		assert_int_not_equal(cidr_list_parse(items, 1, &l, &err), 0);
		assert_null(l);
		free(err);
	}
}

static void
test_cidr_zero_prefix(void **state)
{
	char *items[] = {"0.0.0.0/0"};
	struct cidr_list *l = NULL;
	char *err = NULL;

	(void)state;
	assert_int_equal(cidr_list_parse(items, 1, &l, &err), 0);
	assert_true(cidr_list_match(l, "203.0.113.9"));
	/* An IPv4 /0 is all of IPv4, not all of IPv6. */
	assert_false(cidr_list_match(l, "2001:db8::1"));
	cidr_list_free(&l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cidr_match),
		cmocka_unit_test(test_cidr_bad_entries),
		cmocka_unit_test(test_cidr_zero_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
