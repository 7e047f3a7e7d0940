/*
 * attr_test.c - unit tests for lib/attr: escaping of every byte, malformed
 * input, names, limits, and streaming decoding split at every byte.
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

#include "attr.h"
#include "buf.h"

/* Decode all of s as one message with the given limits. */
static int
parse_str(const char *s, size_t len, const struct attr_limits *lim,
    struct attr_list **list_r, const char **errstr_r)
{
	struct buf b;
	size_t used = 0;
	int r;

	buf_init(&b, 0);
	buf_append(&b, s, len);
	*list_r = NULL;
	*errstr_r = NULL;
	r = attr_parse(&b, lim, list_r, &used, errstr_r);
	if (r == 1)
		assert_int_equal(used, len);
	else
		assert_null(*list_r);
	if (r < 0)
		assert_non_null(*errstr_r);
	buf_release(&b);
	return r;
}

static void
test_attr_list_basics(void **state)
{
	struct attr_list *l = attr_list_new();
	const char *name, *v;
	size_t len, iter = 0;

	(void)state;
	assert_int_equal(attr_add_str(l, "request", "deliver"), 0);
	assert_int_equal(attr_add_str(l, "rcpt", "a@example.test"), 0);
	assert_int_equal(attr_addf(l, "size", "%d", 1234), 0);
	assert_int_equal(attr_add_str(l, "rcpt", "b@example.test"), 0);
	assert_int_equal(attr_add(l, "bin", "x\0y", 3), 0);
	assert_int_equal(attr_add_str(l, "Bad", "v"), -EINVAL);
	assert_int_equal(attr_add_str(l, "", "v"), -EINVAL);
	assert_int_equal(attr_add_str(l, "a=b", "v"), -EINVAL);
	assert_int_equal(attr_count(l), 5);
	assert_int_equal(attr_count_name(l, "rcpt"), 2);
	assert_string_equal(attr_get(l, "size", &len), "1234");
	assert_int_equal(len, 4);
	assert_null(attr_get(l, "missing", NULL));
	assert_string_equal(attr_next(l, "rcpt", &iter, NULL),
	    "a@example.test");
	assert_string_equal(attr_next(l, "rcpt", &iter, NULL),
	    "b@example.test");
	assert_null(attr_next(l, "rcpt", &iter, NULL));
	/* A value with a NUL is there for attr_get, not for attr_get_str. */
	v = attr_get(l, "bin", &len);
	assert_int_equal(len, 3);
	assert_memory_equal(v, "x\0y", 3);
	assert_null(attr_get_str(l, "bin"));
	assert_string_equal(attr_get_str(l, "request"), "deliver");
	assert_int_equal(attr_at(l, 1, &name, &v, &len), 0);
	assert_string_equal(name, "rcpt");
	assert_int_equal(attr_at(l, 5, &name, &v, &len), -ENOENT);
	assert_true(attr_name_valid("queue_id"));
	assert_true(attr_name_valid("x-1"));
	assert_false(attr_name_valid("Queue"));
	assert_false(attr_name_valid(""));
	attr_list_free(&l);
	assert_null(l);
	attr_list_free(&l);
}

static void
test_attr_get_ull(void **state)
{
	struct attr_list *l = attr_list_new();
	unsigned long long v = 7;

	(void)state;
	attr_add_str(l, "n", "0042");
	attr_add_str(l, "neg", "-1");
	attr_add_str(l, "sp", " 1");
	attr_add_str(l, "hex", "0x10");
	attr_add_str(l, "empty", "");
	attr_add_str(l, "max", "18446744073709551615");
	attr_add_str(l, "over", "18446744073709551616");
	attr_add_str(l, "hundred", "100");
	attr_add(l, "nul", "1\0", 2);
	assert_int_equal(attr_get_ull(l, "n", 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(attr_get_ull(l, "missing", 100, &v), -ENOENT);
	assert_int_equal(attr_get_ull(l, "neg", ~0ULL, &v), -EINVAL);
	assert_int_equal(attr_get_ull(l, "sp", ~0ULL, &v), -EINVAL);
	assert_int_equal(attr_get_ull(l, "hex", ~0ULL, &v), -EINVAL);
	assert_int_equal(attr_get_ull(l, "empty", ~0ULL, &v), -EINVAL);
	assert_int_equal(attr_get_ull(l, "nul", ~0ULL, &v), -EINVAL);
	assert_int_equal(attr_get_ull(l, "max", ~0ULL, &v), 0);
	assert_true(v == ~0ULL);
	assert_int_equal(attr_get_ull(l, "over", ~0ULL, &v), -EINVAL);
	assert_int_equal(attr_get_ull(l, "hundred", 100, &v), 0);
	assert_int_equal(v, 100);
	assert_int_equal(attr_get_ull(l, "hundred", 99, &v), -EINVAL);
	/* A single digit above a small maximum. */
	assert_int_equal(attr_get_ull(l, "n", 5, &v), -EINVAL);
	attr_add_str(l, "seven", "7");
	assert_int_equal(attr_get_ull(l, "seven", 5, &v), -EINVAL);
	assert_int_equal(attr_get_ull(l, "seven", 7, &v), 0);
	assert_int_equal(v, 7);
	attr_list_free(&l);
}

static void
test_attr_encode_format(void **state)
{
	struct attr_list *l = attr_list_new();
	struct buf b;

	(void)state;
	buf_init(&b, 0);
	attr_add_str(l, "request", "deliver");
	attr_add_str(l, "text", "50% off\r\nnext=line");
	attr_add(l, "nul", "\0\x7f\x1f\xc3\xa9", 5);
	attr_add_str(l, "empty", "");
	assert_int_equal(attr_encode(l, &b), 0);
	assert_string_equal(b.data, "request=deliver\n"
	    "text=50%25 off%0D%0Anext=line\n"
	    "nul=%00%7F%1F\xc3\xa9\n"
	    "empty=\n"
	    "\n");
	buf_release(&b);
	attr_list_free(&l);
}

/* Every byte value, alone and amid others, encodes to a line with no raw
 * control character and decodes back to itself. */
static void
test_attr_escape_every_byte(void **state)
{
	unsigned char all[256];
	struct buf b;

	(void)state;
	for (int c = 0; c < 256; c++) {
		unsigned char v[3] = { 'a', (unsigned char)c, 'z' };
		struct attr_list *l = attr_list_new(), *out;
		const char *errstr, *got;
		size_t len, eq;
		int esc = c == '%' || c < 0x20 || c == 0x7f;

		all[c] = (unsigned char)c;
		buf_init(&b, 0);
		attr_add(l, "v", v, sizeof(v));
		assert_int_equal(attr_encode(l, &b), 0);
		/* "v=" + value + LF + LF */
		assert_int_equal(b.len, 2 + (esc ? 5 : 3) + 2);
		for (size_t i = 0; i < b.len - 2; i++) {
			unsigned char e = (unsigned char)b.data[i];

			assert_true(e >= 0x20 && e != 0x7f);
		}
		if (esc) {
			char want[4];

			snprintf(want, sizeof(want), "%%%02X", c);
			assert_memory_equal(b.data + 3, want, 3);
		}
		assert_int_equal(parse_str(b.data, b.len, NULL, &out,
		    &errstr), 1);
		got = attr_get(out, "v", &len);
		assert_non_null(got);
		assert_int_equal(len, 3);
		assert_memory_equal(got, v, 3);
		eq = attr_count(out);
		assert_int_equal(eq, 1);
		attr_list_free(&out);
		attr_list_free(&l);
		buf_release(&b);
	}
	{
		struct attr_list *l = attr_list_new(), *out;
		const char *errstr, *got;
		size_t len;

		buf_init(&b, 0);
		attr_add(l, "all", all, sizeof(all));
		assert_int_equal(attr_encode(l, &b), 0);
		assert_int_equal(parse_str(b.data, b.len, NULL, &out,
		    &errstr), 1);
		got = attr_get(out, "all", &len);
		assert_int_equal(len, 256);
		assert_memory_equal(got, all, 256);
		attr_list_free(&out);
		attr_list_free(&l);
		buf_release(&b);
	}
}

static void
test_attr_lowercase_hex_and_crlf_accepted(void **state)
{
	static const char in[] = "a=x%0ay%7e\r\nb=\r\n\r\n";
	struct attr_list *l;
	const char *errstr;
	size_t len;

	(void)state;
	assert_int_equal(parse_str(in, sizeof(in) - 1, NULL, &l, &errstr), 1);
	assert_memory_equal(attr_get(l, "a", &len), "x\ny~", 4);
	assert_int_equal(len, 4);
	assert_string_equal(attr_get(l, "b", NULL), "");
	attr_list_free(&l);
}

static void
test_attr_malformed_escapes(void **state)
{
	static const char *bad[] = {
		"a=%\n\n", "a=%4\n\n", "a=x%\n\n", "a=%G0\n\n", "a=%0g\n\n",
		"a=%%41\n\n", "a=% 1\n\n", "a=%4\r\n\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct attr_list *l;
		const char *errstr;

		assert_int_equal(parse_str(bad[i], strlen(bad[i]), NULL, &l,
		    &errstr), -EBADMSG);
		assert_non_null(strstr(errstr, "escape"));
	}
}

static void
test_attr_bad_names_and_raw_controls(void **state)
{
	static const char *bad[] = {
		"=x\n\n", "Name=x\n\n", "na me=x\n\n", "a.b=x\n\n",
		"noequals\n\n", "\xc3\xa9=x\n\n", "a\tb=x\n\n", "a=b\tc\n\n",
		"a=\x01\n\n", "a=\x7f\n\n", "a=b\rc\n\n", "x=1\n\r\r\n\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct attr_list *l;
		const char *errstr;

		assert_int_equal(parse_str(bad[i], strlen(bad[i]), NULL, &l,
		    &errstr), -EBADMSG);
	}
	/* A NUL byte in the stream is a raw control character too. */
	{
		struct attr_list *l;
		const char *errstr;

		assert_int_equal(parse_str("a=\0b\n\n", 6, NULL, &l, &errstr),
		    -EBADMSG);
	}
}

static void
test_attr_line_limit(void **state)
{
	struct attr_limits lim = { .max_line = 16 };
	struct attr_list *l;
	const char *errstr;
	char big[ATTR_MAX_LINE + 10];

	(void)state;
	/* 15 bytes and the LF fit... */
	assert_int_equal(parse_str("a=0123456789abc\n\n", 17, &lim, &l,
	    &errstr), 1);
	attr_list_free(&l);
	/* ...one more does not, and without any LF in sight it is an
	 * error as soon as the limit is reached, not "need more". */
	assert_int_equal(parse_str("a=0123456789abcd\n\n", 18, &lim, &l,
	    &errstr), -EMSGSIZE);
	assert_int_equal(parse_str("a=0123456789abcdef", 18, &lim, &l,
	    &errstr), -EMSGSIZE);
	assert_int_equal(parse_str("a=0123456789abc", 15, &lim, &l, &errstr),
	    0);
	/* The default limit. */
	memset(big, 'x', sizeof(big));
	big[0] = 'a';
	big[1] = '=';
	assert_int_equal(parse_str(big, sizeof(big), NULL, &l, &errstr),
	    -EMSGSIZE);
	assert_string_equal(errstr, "line too long");
}

static void
test_attr_count_limit(void **state)
{
	struct attr_limits lim = { .max_attrs = 3 };
	struct attr_list *l;
	const char *errstr;
	struct buf b;

	(void)state;
	assert_int_equal(parse_str("a=1\nb=2\nc=3\n\n", 13, &lim, &l,
	    &errstr), 1);
	assert_int_equal(attr_count(l), 3);
	attr_list_free(&l);
	assert_int_equal(parse_str("a=1\nb=2\nc=3\nd=4\n\n", 17, &lim, &l,
	    &errstr), -EMSGSIZE);
	assert_string_equal(errstr, "too many attributes");
	/* The default limit: ATTR_MAX_ATTRS + 1 tiny attributes. */
	buf_init(&b, 0);
	for (int i = 0; i <= ATTR_MAX_ATTRS; i++)
		buf_puts(&b, "a=\n");
	buf_puts(&b, "\n");
	assert_int_equal(parse_str(b.data, b.len, NULL, &l, &errstr),
	    -EMSGSIZE);
	buf_release(&b);
}

static void
test_attr_size_limit(void **state)
{
	struct attr_limits lim = { .max_size = 20 };
	struct attr_list *l;
	const char *errstr;
	struct buf b;

	(void)state;
	assert_int_equal(parse_str("a=12345\nb=1234567\n\n", 19, &lim, &l,
	    &errstr), 1);
	attr_list_free(&l);
	assert_int_equal(parse_str("a=12345\nb=12345678\n\n", 20, &lim, &l,
	    &errstr), 1);
	attr_list_free(&l);
	assert_int_equal(parse_str("a=12345\nb=123456789\n\n", 21, &lim, &l,
	    &errstr), -EMSGSIZE);
	assert_string_equal(errstr, "message too large");
	/* An incomplete line already past the limit fails at once. */
	assert_int_equal(parse_str("a=12345\nb=123456789012", 22, &lim, &l,
	    &errstr), -EMSGSIZE);
	/* The default limit: over 1 MiB in lines of 60 KiB. */
	buf_init(&b, 0);
	for (int i = 0; i < 18; i++) {
		buf_puts(&b, "a=");
		for (int j = 0; j < 60 * 1024; j++)
			buf_append(&b, "y", 1);
		buf_puts(&b, "\n");
	}
	buf_puts(&b, "\n");
	assert_int_equal(parse_str(b.data, b.len, NULL, &l, &errstr),
	    -EMSGSIZE);
	buf_release(&b);
}

static void
test_attr_encode_respects_buf_limit(void **state)
{
	struct attr_list *l = attr_list_new();
	struct buf b;

	(void)state;
	buf_init(&b, 16);
	buf_puts(&b, "keep");
	attr_add_str(l, "a", "0123456789");
	assert_int_equal(attr_encode(l, &b), -ENOBUFS);
	assert_string_equal(b.data, "keep");
	buf_release(&b);
	attr_list_free(&l);
}

static const char split_msg[] = "request=deliver\nqueue_id=4F3A%25\n"
    "rcpt=a@example.test\r\nrcpt=b@example.test\ntext=x%0Ay\n\n";

static void
check_split_msg(struct attr_list *l)
{
	size_t iter = 0;

	assert_int_equal(attr_count(l), 5);
	assert_string_equal(attr_get(l, "request", NULL), "deliver");
	assert_string_equal(attr_get(l, "queue_id", NULL), "4F3A%");
	assert_string_equal(attr_next(l, "rcpt", &iter, NULL),
	    "a@example.test");
	assert_string_equal(attr_next(l, "rcpt", &iter, NULL),
	    "b@example.test");
	assert_string_equal(attr_get(l, "text", NULL), "x\ny");
}

/* Two pieces, split at every position: the decoder consumes complete
 * lines of the first and is given the rest with the second. */
static void
test_attr_split_at_every_boundary(void **state)
{
	size_t total = sizeof(split_msg) - 1;

	(void)state;
	for (size_t k = 0; k <= total; k++) {
		struct attr_decoder *dec = attr_decoder_new(NULL);
		struct attr_list *l = NULL;
		const char *errstr;
		struct buf b;
		size_t used;
		int r;

		buf_init(&b, 0);
		buf_append(&b, split_msg, k);
		r = attr_decoder_feed(dec, b.data ? b.data : "", b.len, &used,
		    &l, &errstr);
		assert_int_equal(r, k == total ? 1 : 0);
		buf_consume(&b, used);
		if (r == 0) {
			buf_append(&b, split_msg + k, total - k);
			r = attr_decoder_feed(dec, b.data, b.len, &used, &l,
			    &errstr);
			assert_int_equal(r, 1);
			assert_int_equal(used, b.len);
		}
		check_split_msg(l);
		attr_list_free(&l);
		attr_decoder_free(&dec);
		assert_null(dec);
		buf_release(&b);
	}
}

static void
test_attr_one_byte_at_a_time(void **state)
{
	struct attr_decoder *dec = attr_decoder_new(NULL);
	size_t total = sizeof(split_msg) - 1, used;
	struct attr_list *l = NULL;
	const char *errstr;
	struct buf b;
	int r = 0;

	(void)state;
	buf_init(&b, 0);
	/* Two messages back to back, fed one byte per call. */
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < total; i++) {
			buf_append(&b, split_msg + i, 1);
			r = attr_decoder_feed(dec, b.data, b.len, &used, &l,
			    &errstr);
			buf_consume(&b, used);
			if (i + 1 < total) {
				assert_int_equal(r, 0);
				assert_null(l);
			}
		}
		assert_int_equal(r, 1);
		assert_int_equal(b.len, 0);
		check_split_msg(l);
		attr_list_free(&l);
	}
	attr_decoder_free(&dec);
	buf_release(&b);
}

static void
test_attr_many_messages_in_one_buffer(void **state)
{
	struct attr_decoder *dec = attr_decoder_new(NULL);
	struct attr_list *l;
	const char *errstr;
	size_t off = 0, used;
	struct buf b;
	int n = 0;

	(void)state;
	buf_init(&b, 0);
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "request=ping\nseq=%d\n\n", i);
	buf_puts(&b, "request=half");
	while (attr_decoder_feed(dec, b.data + off, b.len - off, &used, &l,
	    &errstr) == 1) {
		char want[16];

		off += used;
		snprintf(want, sizeof(want), "%d", n++);
		assert_string_equal(attr_get(l, "seq", NULL), want);
		attr_list_free(&l);
	}
	assert_int_equal(n, 1000);
	/* The unfinished line at the end is left for later. */
	assert_int_equal(off + used, b.len - strlen("request=half"));
	attr_decoder_free(&dec);
	buf_release(&b);
}

static void
test_attr_empty_message(void **state)
{
	struct attr_list *l;
	const char *errstr;

	(void)state;
	assert_int_equal(parse_str("\n", 1, NULL, &l, &errstr), 1);
	assert_int_equal(attr_count(l), 0);
	attr_list_free(&l);
	assert_int_equal(parse_str("", 0, NULL, &l, &errstr), 0);
}

static void
test_attr_decoder_reusable_after_error(void **state)
{
	struct attr_decoder *dec = attr_decoder_new(NULL);
	struct attr_list *l = NULL;
	const char *errstr;
	size_t used;

	(void)state;
	assert_int_equal(attr_decoder_feed(dec, "a=1\nBAD=2\n\n", 11, &used,
	    &l, &errstr), -EBADMSG);
	assert_null(l);
	assert_int_equal(attr_decoder_feed(dec, "b=2\n\n", 5, &used, &l,
	    &errstr), 1);
	assert_int_equal(attr_count(l), 1);
	assert_string_equal(attr_get(l, "b", NULL), "2");
	attr_list_free(&l);
	attr_decoder_free(&dec);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attr_list_basics),
		cmocka_unit_test(test_attr_get_ull),
		cmocka_unit_test(test_attr_encode_format),
		cmocka_unit_test(test_attr_escape_every_byte),
		cmocka_unit_test(test_attr_lowercase_hex_and_crlf_accepted),
		cmocka_unit_test(test_attr_malformed_escapes),
		cmocka_unit_test(test_attr_bad_names_and_raw_controls),
		cmocka_unit_test(test_attr_line_limit),
		cmocka_unit_test(test_attr_count_limit),
		cmocka_unit_test(test_attr_size_limit),
		cmocka_unit_test(test_attr_encode_respects_buf_limit),
		cmocka_unit_test(test_attr_split_at_every_boundary),
		cmocka_unit_test(test_attr_one_byte_at_a_time),
		cmocka_unit_test(test_attr_many_messages_in_one_buffer),
		cmocka_unit_test(test_attr_empty_message),
		cmocka_unit_test(test_attr_decoder_reusable_after_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
