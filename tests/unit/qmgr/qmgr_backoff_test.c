/*
 * qmgr_backoff_test.c - unit tests for the retry backoff: doubling from
 * the minimal time, capped at the maximal time, no overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "qmgr.h"

static void
test_qmgr_backoff_doubling(void **state)
{
	(void)state;
	assert_int_equal(qmgr_backoff(1, 300, 4000), 300);
	assert_int_equal(qmgr_backoff(2, 300, 4000), 600);
	assert_int_equal(qmgr_backoff(3, 300, 4000), 1200);
	assert_int_equal(qmgr_backoff(4, 300, 4000), 2400);
	assert_int_equal(qmgr_backoff(5, 300, 4000), 4000);
	assert_int_equal(qmgr_backoff(50, 300, 4000), 4000);
}

static void
test_qmgr_backoff_edges(void **state)
{
	(void)state;
	/* ndefer 0 (never deferred) is treated as the first deferral. */
	assert_int_equal(qmgr_backoff(0, 300, 4000), 300);
	/* minimal above maximal: maximal wins. */
	assert_int_equal(qmgr_backoff(1, 5000, 4000), 4000);
	/* No overflow with huge counts and limits. */
	assert_int_equal(qmgr_backoff(4000000000u, 1, INT64_MAX), INT64_MAX);
	assert_int_equal(qmgr_backoff(3, 0, 10), 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qmgr_backoff_doubling),
		cmocka_unit_test(test_qmgr_backoff_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
