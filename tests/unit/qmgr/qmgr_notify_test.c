/*
 * qmgr_notify_test.c - unit tests for the notices' pure parts: when the
 * one delay warning of a message is due (delay_warning_time), and the
 * Remote-MTA name taken from an agent's relay= or the next hop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qmgr.h"

static void
test_qmgr_notify_delay_due(void **state)
{
	(void)state;
	/* Off. */
	assert_false(qmgr_notify_delay_due(1000, 0, 999999, 0));
	/* Too young. */
	assert_false(qmgr_notify_delay_due(1000, 0, 1059, 60));
	/* Never tried before, old enough. */
	assert_true(qmgr_notify_delay_due(1000, 0, 1060, 60));
	/* The previous attempt was before the threshold: this one warns. */
	assert_true(qmgr_notify_delay_due(1000, 1030, 1100, 60));
	/* The previous attempt was past it: it warned already. */
	assert_false(qmgr_notify_delay_due(1000, 1060, 1200, 60));
	assert_false(qmgr_notify_delay_due(1000, 1100, 1200, 60));
}

static void
mta(const char *relay, const char *want)
{
	struct queue_rcpt rc;
	struct dsn_rcpt *arr = NULL;
	size_t n = 0;

	memset(&rc, 0, sizeof(rc));
	rc.address = "a@x.test";
	qmgr_notify_add(&arr, &n, &rc, "failed", "5.0.0", "no", relay);
	assert_int_equal(n, 1);
	if (want == NULL)
		assert_null(arr[0].remote_mta);
	else
		assert_string_equal(arr[0].remote_mta, want);
	assert_null(arr[0].orcpt);
	assert_string_equal(arr[0].diag, "no");
	qmgr_notify_free(&arr, &n);
	assert_null(arr);
	assert_int_equal(n, 0);
}

static void
test_qmgr_notify_remote_mta(void **state)
{
	(void)state;
	mta("mx1.example.org[192.0.2.1]:25", "mx1.example.org");
	mta("mx1.example.org", "mx1.example.org");
	mta("[relay.test]:2525", "relay.test");
	mta("example.org:587", "example.org");
	mta("[192.0.2.9]", "192.0.2.9");
	mta(NULL, NULL);
	mta("", NULL);
	mta("[]:25", NULL);
	mta(":25", NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qmgr_notify_delay_due),
		cmocka_unit_test(test_qmgr_notify_remote_mta),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
