/*
 * local_deliver_work_test.c - the pure parts of local delivery: splitting
 * a recipient into user key and extension, and finding Delivered-To: loops
 * in a header section (folded, any case, CRLF or LF, body ignored).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "local_deliver.h"

static void
split(const char *addr, const char *delim, const char *key, const char *ext)
{
	char *k = NULL, *e = NULL;

	assert_int_equal(ld_address_split(addr, delim, &k, &e), 0);
	assert_string_equal(k, key);
	if (ext == NULL)
		assert_null(e);
	else
		assert_string_equal(e, ext);
	free(k);
	free(e);
}

static void
test_split(void **state)
{
	char *k = NULL, *e = NULL;

	(void)state;
	split("Alice@Example.Test", "+", "alice@example.test", NULL);
	split("alice+Lists@example.test", "+", "alice@example.test", "Lists");
	split("alice+a+b@example.test", "+", "alice@example.test", "a+b");
	split("alice-x@example.test", "+-", "alice@example.test", "x");
	split("alice+@example.test", "+", "alice@example.test", "");
	split("alice+x@example.test", "", "alice+x@example.test", NULL);
	/* No user before the delimiter: the whole local part is looked up. */
	split("+x@example.test", "+", "+x@example.test", NULL);
	/* The last @ separates the domain. */
	split("\"a@b\"@example.test", "+", "\"a@b\"@example.test", NULL);
	/*
	 * A quoted local part is cut unquoted, as smtpd checked it: the user
	 * is a plain key, the extension keeps what the quotes allowed.
	 */
	split("\"Alice+../../bob\"@example.test", "+", "alice@example.test",
	    "../../bob");
	split("\"alice+a b\"@example.test", "+", "alice@example.test", "a b");
	split("\"alice\"@example.test", "+", "alice@example.test", NULL);
	split("\"a b+x\"@example.test", "+", "\"a b\"@example.test", "x");
	split("\"a\\\"b+x\"@example.test", "+", "\"a\\\"b\"@example.test",
	    "x");
	split("\"a..b+x\"@example.test", "+", "\"a..b\"@example.test", "x");
	/* 64 octets: fine bare, too long once quoted; still one key. */
	split("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "@example.test", "+",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "@example.test", NULL);
	assert_int_equal(ld_address_split("\"unterminated@example.test", "+",
	    &k, &e), -EINVAL);
	assert_int_equal(ld_address_split("nodomain", "+", &k, &e), -EINVAL);
	assert_int_equal(ld_address_split("@example.test", "+", &k, &e),
	    -EINVAL);
	assert_int_equal(ld_address_split("alice@", "+", &k, &e), -EINVAL);
	assert_null(k);
	assert_null(e);
}

static int
dt(const char *msg, const char *addr)
{
	return ld_header_delivered_to(msg, strlen(msg), addr);
}

static void
test_delivered_to(void **state)
{
	(void)state;
	assert_true(dt("Delivered-To: alice@x.test\r\n\r\nbody\r\n",
	    "alice@x.test"));
	assert_true(dt("delivered-to:<ALICE@X.TEST>\n\n", "alice@x.test"));
	assert_true(dt("Subject: a\r\nDelivered-To:\r\n  <alice@x.test> \r\n"
	    "\r\n", "alice@x.test"));
	assert_true(dt("Delivered-To: bob@x.test\nDelivered-To: alice@x.test"
	    "\n\n", "alice@x.test"));
	/* Only the header counts, and only the whole address. */
	assert_false(dt("Subject: a\r\n\r\nDelivered-To: alice@x.test\r\n",
	    "alice@x.test"));
	assert_false(dt("Delivered-To: alice@x.test.evil\n\n",
	    "alice@x.test"));
	assert_false(dt("Delivered-To: xalice@x.test\n\n", "alice@x.test"));
	assert_false(dt("X-Delivered-To: alice@x.test\n\n", "alice@x.test"));
	assert_false(dt("Delivered-To: \n\n", "alice@x.test"));
	assert_false(dt("", "alice@x.test"));
	/* Cut short (no end of header, no final newline): still parsed. */
	assert_true(dt("Delivered-To: alice@x.test", "alice@x.test"));
	assert_false(ld_header_delivered_to("Delivered-To: alice@x.test\n",
	    5, "alice@x.test"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_delivered_to),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
