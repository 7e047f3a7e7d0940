/*
 * log_test.c - log lines: format, one line per call whatever the text,
 * levels, targets, fatal and panic.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static char path[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/pochta-log-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	log_close();
	unlink(path);
	return 0;
}

static char *
slurp(void)
{
	static char text[65536];
	FILE *fp = fopen(path, "r");
	size_t n;

	assert_non_null(fp);
	n = fread(text, 1, sizeof(text) - 1, fp);
	text[n] = '\0';
	fclose(fp);
	return text;
}

static size_t
count_lines(const char *text)
{
	size_t n = 0;

	for (; *text != '\0'; text++)
		n += *text == '\n';
	return n;
}

static void
test_log_line_format(void **state)
{
	const char *err = NULL;
	char expect[128];

	(void)state;
	assert_int_equal(log_open(path, &err), 0);
	log_set_program("smtpd");
	log_info("%s: to=<%s>, status=sent", "4F3A", "bob@example.test");
	log_warn("disk %d%% full", 95);
	log_error("oops");
	char *text = slurp();
	snprintf(expect, sizeof(expect), " pochta/smtpd[%ld]: 4F3A: "
	    "to=<bob@example.test>, status=sent\n", (long)getpid());
	assert_non_null(strstr(text, expect));
	assert_non_null(strstr(text, "]: warning: disk 95% full\n"));
	assert_non_null(strstr(text, "]: error: oops\n"));
	/* ISO 8601 local time with microseconds and a zone offset. */
	assert_int_equal(text[4], '-');
	assert_int_equal(text[10], 'T');
	assert_int_equal(text[19], '.');
	assert_true(text[26] == '+' || text[26] == '-');
	assert_int_equal(text[29], ':');
	assert_int_equal(count_lines(text), 3);
}

static void
test_log_control_characters_escaped(void **state)
{
	const char *err = NULL;

	(void)state;
	assert_int_equal(log_open(path, &err), 0);
	/* A client cannot forge a second log line. */
	log_info("helo=%s", "x\nFAKE: status=sent\r\x1b[31m");
	char *text = slurp();
	assert_int_equal(count_lines(text), 1);
	assert_non_null(strstr(text, "helo=x\\x0aFAKE: status=sent\\x0d"
				     "\\x1b[31m\n"));
}

static void
test_log_long_text_is_one_line(void **state)
{
	const char *err = NULL;
	char big[20000];

	(void)state;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(log_open(path, &err), 0);
	log_info("%s", big);
	log_info("next");
	char *text = slurp();
	assert_int_equal(count_lines(text), 2);
	assert_non_null(strstr(text, "]: next\n"));
}

static void
test_log_debug_needs_verbose(void **state)
{
	const char *err = NULL;

	(void)state;
	assert_int_equal(log_open(path, &err), 0);
	log_set_verbose(0);
	log_debug("hidden");
	log_set_verbose(1);
	assert_true(log_verbose());
	log_debug("shown");
	log_set_verbose(0);
	char *text = slurp();
	assert_null(strstr(text, "hidden"));
	assert_non_null(strstr(text, "]: shown\n"));
}

static void
test_log_bad_targets(void **state)
{
	const char *err = NULL;

	(void)state;
	assert_int_equal(log_open("relative/path", &err), -EINVAL);
	assert_non_null(err);
	err = NULL;
	assert_int_equal(log_open("syslog:nosuchfacility", &err), -EINVAL);
	assert_non_null(err);
	err = NULL;
	assert_true(log_open("/nonexistent-dir/x/log", &err) < 0);
	assert_non_null(err);
	assert_int_equal(log_open("syslog:local3", &err), 0);
	assert_int_equal(log_open("stderr", &err), 0);
}

static int
child_status(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void
call_fatal(void)
{
	const char *err = NULL;

	if (log_open(path, &err) < 0)
		_exit(2);
	fatal("cannot read %s", "pochta.conf");
}

static void
call_panic(void)
{
	const char *err = NULL;

	if (log_open(path, &err) < 0)
		_exit(2);
	panic("broken invariant %d", 7);
}

static void
test_log_fatal_and_panic(void **state)
{
	(void)state;
	int status = child_status(call_fatal);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	status = child_status(call_panic);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	char *text = slurp();
	assert_non_null(strstr(text, "]: fatal: cannot read pochta.conf\n"));
	assert_non_null(strstr(text, "]: panic: broken invariant 7\n"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_log_line_format, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_log_control_characters_escaped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_long_text_is_one_line,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_debug_needs_verbose,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_bad_targets, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_log_fatal_and_panic, setup,
		    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
