/*
 * smtpd_body_test.c - the DATA/BDAT decoder: dot-unstuffing, the one true
 * end of data, and every bare CR/LF smuggling variant.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "smtpd_body.h"

struct result {
	size_t consumed;
	int done;
	enum smtpd_body_error error;
	char out[4096];
	size_t outlen;
};

/* Decode in, split into pieces of step bytes (0: all at once). */
static struct result
decode(const char *in, size_t len, int dot_mode, size_t step)
{
	struct smtpd_body b;
	struct buf out;
	struct result r;

	memset(&r, 0, sizeof(r));
	buf_init(&out, 0);
	smtpd_body_init(&b, dot_mode, 998, 0);
	if (step == 0)
		step = len ? len : 1;
	for (size_t off = 0; off < len && !b.done; off += step) {
		size_t n = len - off < step ? len - off : step;
		size_t used = smtpd_body_feed(&b, in + off, n, &out);
		r.consumed += used;
		if (used < n)
			break;
	}
	if (!dot_mode)
		smtpd_body_finish(&b);
	r.done = b.done;
	r.error = b.error;
	assert_true(out.len < sizeof(r.out));
	memcpy(r.out, out.data ? out.data : "", out.len);
	r.outlen = out.len;
	buf_release(&out);
	return r;
}

#define S(x) x, sizeof(x) - 1

static void
test_smtpd_body_plain_and_unstuffing(void **state)
{
	(void)state;
	for (size_t step = 0; step < 4; step++) {
		struct result r = decode(S("Subject: x\r\n\r\n..dot\r\n.\r\n"
					   "QUIT\r\n"), 1, step);
		assert_true(r.done);
		assert_int_equal(r.error, SMTPD_BODY_OK);
		assert_int_equal(r.outlen, strlen("Subject: x\r\n\r\n.dot\r\n"));
		assert_memory_equal(r.out, "Subject: x\r\n\r\n.dot\r\n",
		    r.outlen);
		/* Consumption stops right after the end-of-data line. */
		assert_int_equal(r.consumed,
		    strlen("Subject: x\r\n\r\n..dot\r\n.\r\n"));
	}
}

static void
test_smtpd_body_empty_message(void **state)
{
	(void)state;
	struct result r = decode(S(".\r\n"), 1, 0);
	assert_true(r.done);
	assert_int_equal(r.outlen, 0);
	assert_int_equal(r.error, SMTPD_BODY_OK);
}

static void
test_smtpd_body_smuggling_variants(void **state)
{
	/* None of these end DATA; each is refused, and the real end
	 * <CRLF>.<CRLF> that follows is still found. */
	static const struct {
		const char *data;
		enum smtpd_body_error error;
	} cases[] = {
		{"a\n.\nMAIL FROM:<x@y>\r\n", SMTPD_BODY_BARE_LF},
		{"a\r.\rMAIL FROM:<x@y>\r\n", SMTPD_BODY_BARE_CR},
		{"a\n.\r\nMAIL FROM:<x@y>\r\n", SMTPD_BODY_BARE_LF},
		{"a\r\n.\nMAIL FROM:<x@y>\r\n", SMTPD_BODY_BARE_LF},
		{"a\r\n.\rMAIL FROM:<x@y>\r\n", SMTPD_BODY_BARE_CR},
		{"a\r.\r\nMAIL FROM:<x@y>\r\n", SMTPD_BODY_BARE_CR},
		{"a\n\r.\r\nMAIL FROM:<x@y>\r\n", SMTPD_BODY_BARE_LF},
		{"a\r\rb\r\n", SMTPD_BODY_BARE_CR},
		{"a\0b\r\n", SMTPD_BODY_NUL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[256];
		size_t n = strlen(cases[i].data);
		if (i == 8)
			n = 5;
		memcpy(in, cases[i].data, n);
		memcpy(in + n, "\r\n.\r\nRSET\r\n", 11);
		for (size_t step = 0; step < 3; step++) {
			struct result r = decode(in, n + 11, 1, step);
			assert_int_equal(r.error, cases[i].error);
			assert_true(r.done);
			/* Stopped after the real end: RSET is left. */
			assert_int_equal(r.consumed, n + 5);
		}
	}
}

static void
test_smtpd_body_line_limit(void **state)
{
	char in[2100];

	(void)state;
	memset(in, 'x', 998);
	memcpy(in + 998, "\r\n.\r\n", 5);
	struct result r = decode(in, 1003, 1, 0);
	assert_int_equal(r.error, SMTPD_BODY_OK);
	memset(in, 'x', 999);
	memcpy(in + 999, "\r\n.\r\n", 5);
	r = decode(in, 1004, 1, 7);
	assert_int_equal(r.error, SMTPD_BODY_LONG_LINE);
	assert_true(r.done);
	/* A stuffed dot does not count toward the line length. */
	in[0] = '.';
	memset(in + 1, 'x', 998);
	memcpy(in + 999, "\r\n.\r\n", 5);
	r = decode(in, 1004, 1, 0);
	assert_int_equal(r.error, SMTPD_BODY_OK);
}

static void
test_smtpd_body_size_limit(void **state)
{
	struct smtpd_body b;
	struct buf out;

	(void)state;
	buf_init(&out, 0);
	smtpd_body_init(&b, 1, 998, 10);
	smtpd_body_feed(&b, S("0123456789\r\n"), &out);
	assert_int_equal(b.error, SMTPD_BODY_TOO_BIG);
	/* Discarded, but still read to the end. */
	size_t used = smtpd_body_feed(&b, S("more\r\n.\r\n"), &out);
	assert_int_equal(used, 9);
	assert_true(b.done);
	assert_true(out.len <= 10);
	buf_release(&out);
}

static void
test_smtpd_body_bdat_mode(void **state)
{
	(void)state;
	/* No dot handling in BDAT: ".\r\n" is message text. */
	struct result r = decode(S("a\r\n.\r\n..b\r\n"), 0, 0);
	assert_false(r.done);
	assert_int_equal(r.error, SMTPD_BODY_OK);
	assert_int_equal(r.outlen, strlen("a\r\n.\r\n..b\r\n"));
	/* CR at the end of one chunk, LF at the start of the next. */
	r = decode(S("a\r\nb\r\n"), 0, 4);
	assert_int_equal(r.error, SMTPD_BODY_OK);
	r = decode(S("a\r\nb\r"), 0, 0);
	assert_int_equal(r.error, SMTPD_BODY_BARE_CR);
	r = decode(S("a\nb\r\n"), 0, 1);
	assert_int_equal(r.error, SMTPD_BODY_BARE_LF);
}

static void
test_smtpd_body_every_split(void **state)
{
	static const char msg[] = "From: a\r\n\r\n.x\r\n..\r\nbody\r\n.\r\n";
	struct result whole = decode(S(msg), 1, 0);

	(void)state;
	for (size_t step = 1; step < sizeof(msg); step++) {
		struct result r = decode(S(msg), 1, step);
		assert_int_equal(r.outlen, whole.outlen);
		assert_memory_equal(r.out, whole.out, r.outlen);
		assert_true(r.done);
	}
	assert_memory_equal(whole.out, "From: a\r\n\r\nx\r\n.\r\nbody\r\n",
	    whole.outlen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smtpd_body_plain_and_unstuffing),
		cmocka_unit_test(test_smtpd_body_empty_message),
		cmocka_unit_test(test_smtpd_body_smuggling_variants),
		cmocka_unit_test(test_smtpd_body_line_limit),
		cmocka_unit_test(test_smtpd_body_size_limit),
		cmocka_unit_test(test_smtpd_body_bdat_mode),
		cmocka_unit_test(test_smtpd_body_every_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
