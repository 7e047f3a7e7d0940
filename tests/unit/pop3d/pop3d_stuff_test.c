/*
 * pop3d_stuff_test.c - the RETR/TOP encoder: CRLF whatever the stored line
 * ends, dot-stuffing, the terminator, TOP's line count, and the same output
 * however the file is split into reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "pop3d.h"

/* Encode in, fed in pieces of step bytes (0: all at once); returns the
 * output (caller frees) and how many input bytes were used. */
static char *
encode(const char *in, int top, uint64_t lines, size_t step, size_t *used_r)
{
	struct pop3d_stuff st;
	struct buf out;
	size_t len = strlen(in), used = 0;

	buf_init(&out, 0);
	pop3d_stuff_init(&st, top, lines);
	if (step == 0)
		step = len ? len : 1;
	for (size_t off = 0; off < len && !st.done; off += step) {
		size_t n = len - off < step ? len - off : step;
		size_t u = pop3d_stuff_feed(&st, in + off, n, &out);
		used += u;
		if (u < n)
			assert_true(st.done);
	}
	pop3d_stuff_finish(&st, &out);
	if (used_r != NULL)
		*used_r = used;
	return buf_steal(&out);
}

static void
check(const char *in, int top, uint64_t lines, const char *want)
{
	for (size_t step = 0; step <= 7; step++) {
		char *got = encode(in, top, lines, step, NULL);
		assert_string_equal(got, want);
		free(got);
	}
}

static void
test_pop3d_stuff_lf_becomes_crlf(void **state)
{
	(void)state;
	check("A: b\n\nbody\n", 0, 0, "A: b\r\n\r\nbody\r\n.\r\n");
	check("A: b\r\n\r\nbody\r\n", 0, 0, "A: b\r\n\r\nbody\r\n.\r\n");
	check("A: b\r\n\nmixed\nends\r\n", 0, 0,
	    "A: b\r\n\r\nmixed\r\nends\r\n.\r\n");
}

static void
test_pop3d_stuff_dots_doubled_at_line_start(void **state)
{
	(void)state;
	check(".\n..\n.x\nx.\n", 0, 0,
	    "..\r\n...\r\n..x\r\nx.\r\n.\r\n");
	check(".\r\n", 0, 0, "..\r\n.\r\n");
}

static void
test_pop3d_stuff_bare_cr_kept(void **state)
{
	(void)state;
	check("a\rb\n\r.x\n", 0, 0, "a\rb\r\n\r.x\r\n.\r\n");
}

static void
test_pop3d_stuff_last_line_without_end(void **state)
{
	(void)state;
	check("S: x\n\nno end", 0, 0, "S: x\r\n\r\nno end\r\n.\r\n");
	check("S: x\n\n.dot\r", 0, 0, "S: x\r\n\r\n..dot\r\n.\r\n");
}

static void
test_pop3d_stuff_top_counts_body_lines(void **state)
{
	size_t used;

	(void)state;
	check("A: 1\nB: 2\n\nl1\nl2\nl3\n", 1, 0, "A: 1\r\nB: 2\r\n\r\n.\r\n");
	check("A: 1\nB: 2\n\nl1\n.l2\nl3\n", 1, 2,
	    "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n");
	check("A: 1\n\nl1\n", 1, 100, "A: 1\r\n\r\nl1\r\n.\r\n");
	/* No body separator: the whole header. */
	check("A: 1\nB: 2", 1, 0, "A: 1\r\nB: 2\r\n.\r\n");
	/* Reading stops where TOP is done. */
	char *got = encode("A: 1\r\n\r\nl1\r\nl2\r\n", 1, 1, 0, &used);
	assert_int_equal(used, strlen("A: 1\r\n\r\nl1\r\n"));
	free(got);
}

static void
test_pop3d_stuff_binary_bytes_pass(void **state)
{
	struct pop3d_stuff st;
	struct buf out;
	const char in[] = {'a', '\0', (char)0xff, '\n'};

	(void)state;
	buf_init(&out, 0);
	pop3d_stuff_init(&st, 0, 0);
	assert_int_equal(pop3d_stuff_feed(&st, in, sizeof(in), &out),
	    sizeof(in));
	pop3d_stuff_finish(&st, &out);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.data, "a\0\xff\r\n.\r\n", 8);
	buf_release(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pop3d_stuff_lf_becomes_crlf),
		cmocka_unit_test(test_pop3d_stuff_dots_doubled_at_line_start),
		cmocka_unit_test(test_pop3d_stuff_bare_cr_kept),
		cmocka_unit_test(test_pop3d_stuff_last_line_without_end),
		cmocka_unit_test(test_pop3d_stuff_top_counts_body_lines),
		cmocka_unit_test(test_pop3d_stuff_binary_bytes_pass),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
