/*
 * xalloc_test.c - the allocation wrappers: results, and death (not a NULL)
 * on overflow and exhaustion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "xalloc.h"

static void
test_xalloc_strings(void **state)
{
	(void)state;
	char *s = xstrdup("pochta");
	assert_string_equal(s, "pochta");
	free(s);
	s = xstrndup("pochta", 3);
	assert_string_equal(s, "poc");
	free(s);
	s = xstrndup("ab", 10);
	assert_string_equal(s, "ab");
	free(s);
	s = xasprintf("%s-%d", "id", 42);
	assert_string_equal(s, "id-42");
	free(s);
}

static void
test_xalloc_zero_sizes(void **state)
{
	(void)state;
	void *p = xmalloc(0), *q = xcalloc(0, 8);
	assert_non_null(p);
	assert_non_null(q);
	assert_ptr_not_equal(p, q);
	free(p);
	free(q);
	int *a = xcalloc(4, sizeof(int));
	for (int i = 0; i < 4; i++)
		assert_int_equal(a[i], 0);
	a = xreallocarray(a, 1000, sizeof(int));
	a[999] = 7;
	free(a);
}

/* Under ASan an impossible allocation must fail with NULL, as libc's
 * does, rather than be reported: that NULL is what is being tested. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

/* Runs fn in a child; returns its exit status. */
static int
dies(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		log_open("/dev/null", &(const char *){NULL});
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void
overflow(void)
{
	void *p = xreallocarray(NULL, SIZE_MAX / 2, 4);
	free(p);
}

static void
huge(void)
{
	void *p = xcalloc(SIZE_MAX / 2, 4);
	free(p);
}

static void
test_xalloc_dies_instead_of_null(void **state)
{
	(void)state;
	int status = dies(overflow);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	status = dies(huge);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xalloc_strings),
		cmocka_unit_test(test_xalloc_zero_sizes),
		cmocka_unit_test(test_xalloc_dies_instead_of_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
