/*
 * buf_test.c - unit tests for lib/buf: limits, binary data, line finding.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void
test_buf_append_and_terminate(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, "ab\0cd", 5), 0);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "ab\0cd", 5);
	assert_int_equal(b.data[5], '\0');
	assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
	assert_int_equal(b.len, 9);
	assert_memory_equal(b.data + 5, "42-x", 5);
	buf_release(&b);
	assert_null(b.data);
}

static void
test_buf_limit_is_hard(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_puts(&b, "12345678"), 0);
	/* One byte more fails and leaves the contents alone. */
	assert_int_equal(buf_puts(&b, "9"), -ENOBUFS);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.data, "12345678");
	assert_int_equal(buf_printf(&b, "%s", "x"), -ENOBUFS);
	assert_null(buf_space(&b, 1));
	buf_consume(&b, 3);
	assert_string_equal(b.data, "45678");
	assert_int_equal(buf_printf(&b, "%d", 123), 0);
	assert_string_equal(b.data, "45678123");
	assert_true(b.cap <= 9);
	buf_release(&b);
}

static void
test_buf_huge_append_refused(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 0);
	assert_int_equal(buf_puts(&b, "x"), 0);
	assert_int_equal(buf_append(&b, "", SIZE_MAX - 2), -ENOBUFS);
	assert_int_equal(b.len, 1);
	buf_release(&b);
}

static void
test_buf_line(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 64);
	assert_int_equal(buf_line(&b, 10), 0);
	buf_puts(&b, "abc");
	assert_int_equal(buf_line(&b, 10), 0);
	buf_puts(&b, "\r\nnext");
	assert_int_equal(buf_line(&b, 10), 5);
	buf_consume(&b, 5);
	assert_string_equal(b.data, "next");
	/* max bytes and no LF: too long. */
	buf_puts(&b, "456789");
	assert_int_equal(buf_line(&b, 10), -ENOBUFS);
	/* An LF beyond max does not make the line acceptable. */
	buf_puts(&b, "\n");
	assert_int_equal(buf_line(&b, 10), -ENOBUFS);
	assert_int_equal(buf_line(&b, 11), 11);
	buf_release(&b);
}

static void
test_buf_space_commit_steal(void **state)
{
	struct buf b;
	char *p;

	(void)state;
	buf_init(&b, 0);
	p = buf_space(&b, 100);
	assert_non_null(p);
	memcpy(p, "hello", 5);
	buf_commit(&b, 5);
	assert_string_equal(b.data, "hello");
	p = buf_steal(&b);
	assert_string_equal(p, "hello");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(p);
	p = buf_steal(&b);
	assert_string_equal(p, "");
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_append_and_terminate),
		cmocka_unit_test(test_buf_limit_is_hard),
		cmocka_unit_test(test_buf_huge_append_refused),
		cmocka_unit_test(test_buf_line),
		cmocka_unit_test(test_buf_space_commit_steal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
