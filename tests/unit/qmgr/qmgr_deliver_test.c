/*
 * qmgr_deliver_test.c - unit tests for parsing a delivery agent's reply
 * (pochta-protocol(7)): per-recipient status, text and relay=, and the
 * garbage a broken agent may send (unknown status, wrong or repeated
 * indexes, bad relay values), which must leave recipients unanswered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "attr.h"
#include "qmgr.h"

/* The reply being parsed; the answers point into it until teardown. */
static struct attr_list *cur;

static int
teardown(void **state)
{
	(void)state;
	attr_list_free(&cur);
	return 0;
}

/* Parse the reply made of the name, value pairs in kv. */
static size_t
parse(const char *const *kv, const size_t *idx, size_t n,
    struct qmgr_deliver_answer *ans, char *got)
{
	attr_list_free(&cur);
	cur = attr_list_new();
	for (size_t i = 0; kv[i] != NULL; i += 2)
		assert_int_equal(attr_add_str(cur, kv[i], kv[i + 1]), 0);
	return qmgr_deliver_parse(cur, idx, n, ans, got);
}

static void
test_qmgr_deliver_parse_ok(void **state)
{
	static const char *const kv[] = {
		"rcpt_index", "3", "rcpt", "a@x.test", "status", "2.0.0",
		"text", "250 ok", "relay", "mx.x.test[192.0.2.1]:25",
		"rcpt_index", "7", "rcpt", "b@x.test", "status", "5.1.1",
		"text", "550 no such user",
		NULL,
	};
	size_t idx[] = { 3, 7 };
	struct qmgr_deliver_answer ans[2];
	char got[2];

	(void)state;
	assert_int_equal(parse(kv, idx, 2, ans, got), 2);
	assert_int_equal(got[0], 1);
	assert_int_equal(ans[0].index, 3);
	assert_string_equal(ans[0].status, "2.0.0");
	assert_string_equal(ans[0].text, "250 ok");
	assert_string_equal(ans[0].relay, "mx.x.test[192.0.2.1]:25");
	assert_int_equal(got[1], 1);
	assert_string_equal(ans[1].status, "5.1.1");
	assert_null(ans[1].relay);
}

static void
test_qmgr_deliver_parse_order_free(void **state)
{
	/* Answers in another order than asked, text missing. */
	static const char *const kv[] = {
		"rcpt_index", "1", "status", "4.2.2",
		"rcpt_index", "0", "status", "2.0.0", "text", "ok",
		NULL,
	};
	size_t idx[] = { 0, 1 };
	struct qmgr_deliver_answer ans[2];
	char got[2];

	(void)state;
	assert_int_equal(parse(kv, idx, 2, ans, got), 2);
	assert_string_equal(ans[0].status, "2.0.0");
	assert_string_equal(ans[1].status, "4.2.2");
	assert_string_equal(ans[1].text, "no reason given");
}

static void
test_qmgr_deliver_parse_garbage(void **state)
{
	static const char *const kv[] = {
		"status", "2.0.0",			/* before any index */
		"rcpt_index", "0", "status", "ok",	/* not a status */
		"rcpt_index", "1", "status", "3.0.0",	/* no such class */
		"rcpt_index", "2", "status", "2.0",	/* too short */
		"rcpt_index", "3", "status", "2.0.0000",	/* too long */
		"rcpt_index", "9", "status", "2.0.0",	/* not asked */
		"rcpt_index", "-1", "status", "2.0.0",
		"rcpt_index", "4x", "status", "2.0.0",
		"rcpt_index", "99999999999999999999999", "status", "2.0.0",
		"rcpt_index", "", "status", "2.0.0",
		"rcpt_index", "4",			/* no status */
		NULL,
	};
	size_t idx[] = { 0, 1, 2, 3, 4 };
	struct qmgr_deliver_answer ans[5];
	char got[5];

	(void)state;
	assert_int_equal(parse(kv, idx, 5, ans, got), 0);
	for (size_t k = 0; k < 5; k++)
		assert_int_equal(got[k], 0);
}

static void
test_qmgr_deliver_parse_duplicate(void **state)
{
	/* A recipient answered twice is not trusted either way. */
	static const char *const kv[] = {
		"rcpt_index", "0", "status", "2.0.0",
		"rcpt_index", "1", "status", "2.0.0",
		"rcpt_index", "0", "status", "5.0.0",
		"rcpt_index", "0", "status", "2.0.0",
		NULL,
	};
	size_t idx[] = { 0, 1 };
	struct qmgr_deliver_answer ans[2];
	char got[2];

	(void)state;
	assert_int_equal(parse(kv, idx, 2, ans, got), 1);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 1);
}

static void
test_qmgr_deliver_parse_bad_relay(void **state)
{
	static const char *const kv[] = {
		"rcpt_index", "0", "status", "2.0.0", "relay", "a b",
		"rcpt_index", "1", "status", "2.0.0", "relay", "x,(y)",
		"rcpt_index", "2", "status", "2.0.0", "relay", "",
		"rcpt_index", "3", "status", "2.0.0", "relay", "h\xc3\xa9",
		NULL,
	};
	size_t idx[] = { 0, 1, 2, 3 };
	struct qmgr_deliver_answer ans[4];
	char got[4];

	(void)state;
	/* The answers count; the bad relay values are dropped. */
	assert_int_equal(parse(kv, idx, 4, ans, got), 4);
	for (size_t k = 0; k < 4; k++)
		assert_null(ans[k].relay);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_qmgr_deliver_parse_ok,
		    teardown),
		cmocka_unit_test_teardown(test_qmgr_deliver_parse_order_free,
		    teardown),
		cmocka_unit_test_teardown(test_qmgr_deliver_parse_garbage,
		    teardown),
		cmocka_unit_test_teardown(test_qmgr_deliver_parse_duplicate,
		    teardown),
		cmocka_unit_test_teardown(test_qmgr_deliver_parse_bad_relay,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
