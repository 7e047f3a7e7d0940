/*
 * master_conf_test.c - unit tests for lib/master_conf: the service line
 * format, continuation and comments, every error with its file:line, the
 * equality used by reload, and hostile input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "master_conf.h"
#include "xalloc.h"

static struct master_conf *
parse_ok(const char *text)
{
	struct master_conf *conf = NULL;
	char *err = NULL;
	int r = master_conf_parse("m.conf", text, strlen(text), 0, &conf, &err);

	if (r != 0)
		fail_msg("unexpected error: %s", err);
	assert_non_null(conf);
	return conf;
}

/* Parse text, expect an error starting with prefix. */
static void
parse_err(const char *text, const char *prefix)
{
	struct master_conf *conf = NULL;
	char *err = NULL;

	assert_int_equal(master_conf_parse("m.conf", text, strlen(text), 0,
	    &conf, &err), -EINVAL);
	assert_null(conf);
	assert_non_null(err);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, prefix);
	free(err);
}

static void
test_master_conf_services(void **state)
{
	struct master_conf *conf;
	const struct master_service *s;

	(void)state;
	conf = parse_ok(
	    "# comment\n"
	    "\n"
	    "smtp inet 127.0.0.1:25 pochta 2 smtpd\n"
	    "   # an indented comment neither ends nor continues\n"
	    "smtps inet [::1]:465 - 1 smtpd -o smtpd_tls_wrappermode=yes\n"
	    "any inet 2525 - 1 /usr/bin/x\n"
	    "star inet *:2526 - 1 x\n"
	    "qmgr unix private/qmgr - 1 qmgr\n"
	    "submit unix public/submit - 1 smtpd\r\n");
	assert_int_equal(master_conf_count(conf), 6);

	s = master_conf_service(conf, 0);
	assert_string_equal(s->name, "smtp");
	assert_int_equal(s->type, MASTER_SERVICE_INET);
	assert_string_equal(s->host, "127.0.0.1");
	assert_int_equal(s->port, 25);
	assert_string_equal(s->user, "pochta");
	assert_int_equal(s->procs, 2);
	assert_int_equal(s->argc, 1);
	assert_string_equal(s->argv[0], "smtpd");
	assert_null(s->argv[1]);
	assert_int_equal(s->line, 3);

	s = master_conf_find(conf, "smtps");
	assert_non_null(s);
	assert_string_equal(s->host, "::1");
	assert_int_equal(s->port, 465);
	assert_null(s->user);
	assert_int_equal(s->argc, 3);
	assert_string_equal(s->argv[2], "smtpd_tls_wrappermode=yes");
	assert_int_equal(s->line, 5);

	s = master_conf_find(conf, "any");
	assert_null(s->host);
	assert_int_equal(s->port, 2525);
	assert_string_equal(s->argv[0], "/usr/bin/x");
	s = master_conf_find(conf, "star");
	assert_null(s->host);
	assert_int_equal(s->port, 2526);

	s = master_conf_find(conf, "submit");
	assert_int_equal(s->type, MASTER_SERVICE_UNIX);
	assert_string_equal(s->listen, "public/submit");
	assert_string_equal(s->argv[0], "smtpd");
	assert_null(master_conf_find(conf, "nope"));
	assert_null(master_conf_service(conf, 6));
	master_conf_free(&conf);
	assert_null(conf);
	master_conf_free(&conf);
}

static void
test_master_conf_continuation(void **state)
{
	struct master_conf *conf;
	const struct master_service *s;

	(void)state;
	conf = parse_ok("smtp inet 25 - 1 smtpd\n"
	    "\t-o a=b\n"
	    "# a comment between\n"
	    "    -o c=d\n"
	    "next unix private/n - 1 n\n");
	assert_int_equal(master_conf_count(conf), 2);
	s = master_conf_service(conf, 0);
	assert_int_equal(s->argc, 5);
	assert_string_equal(s->argv[4], "c=d");
	assert_int_equal(s->line, 1);
	assert_int_equal(master_conf_service(conf, 1)->line, 5);
	master_conf_free(&conf);

	parse_err("  -o a=b\nsmtp inet 25 - 1 smtpd\n",
	    "m.conf:1: continuation line without a service");
}

static void
test_master_conf_errors(void **state)
{
	(void)state;
	parse_err("\n\nx tcp 25 - 1 p\n", "m.conf:3: x 'tcp': bad type");
	parse_err("x inet 0 - 1 p\n", "m.conf:1: x '0': bad port");
	parse_err("x inet 65536 - 1 p\n", "m.conf:1: x '65536': bad port");
	parse_err("x inet 127.0.0.1:2x - 1 p\n", "m.conf:1: x");
	parse_err("x inet 127.0.0.1: - 1 p\n", "m.conf:1: x");
	parse_err("x inet 1.2.3:25 - 1 p\n", "m.conf:1: x");
	parse_err("x inet ::1:25 - 1 p\n", "m.conf:1: x");
	parse_err("x inet [1.2.3.4]:25 - 1 p\n", "m.conf:1: x");
	parse_err("x inet [::1]25 - 1 p\n", "m.conf:1: x");
	parse_err("x inet 25 - 0 p\n", "m.conf:1: x '0': bad procs");
	parse_err("x inet 25 - 1001 p\n", "m.conf:1: x '1001': bad procs");
	parse_err("x inet 25 - -1 p\n", "m.conf:1: x '-1': bad procs");
	parse_err("x inet 25 - 99999999999999999999 p\n", "m.conf:1:");
	parse_err("x inet 25 - 1\n", "m.conf:1: expected name type");
	parse_err("x unix /tmp/s - 1 p\n", "m.conf:1: x '/tmp/s': bad listen");
	parse_err("x unix private/../s - 1 p\n", "m.conf:1:");
	parse_err("x unix private/ - 1 p\n", "m.conf:1:");
	parse_err("x unix public/.. - 1 p\n", "m.conf:1:");
	parse_err("x unix private/master - 1 p\n", "m.conf:1:");
	parse_err("x unix private/x - 1 bin/p\n", "m.conf:1: x 'bin/p': bad "
	    "command");
	parse_err("bad/name inet 25 - 1 p\n", "m.conf:1: bad service name");
	parse_err("a inet 25 - 1 p\nb inet 26 - 1 p\na unix private/a - 1 p\n",
	    "m.conf:3: duplicate service name 'a' (first on line 1)");
	parse_err("a inet 25 - 1 p\nb inet 127.0.0.1:25 - 1 p\n",
	    "m.conf:2: duplicate listen address");
	parse_err("a inet 127.0.0.1:25 - 1 p\nb inet 127.0.0.1:25 - 1 p\n",
	    "m.conf:2: duplicate listen address");
	parse_err("a unix private/a - 1 p\nb unix private/a - 1 p\n",
	    "m.conf:2: duplicate listen address");
}

static void
test_master_conf_nul_byte(void **state)
{
	struct master_conf *conf = NULL;
	char *err = NULL;

	(void)state;
	assert_int_equal(master_conf_parse("m.conf", "a inet 25 - 1 p\0x\n",
	    18, 0, &conf, &err), -EINVAL);
	assert_string_equal(err, "m.conf: contains a NUL byte");
	free(err);
}

static void
test_master_conf_distinct_listen_ok(void **state)
{
	struct master_conf *conf;

	(void)state;
	/* Same port on different addresses, and unix beside inet. */
	conf = parse_ok("a inet 127.0.0.1:25 - 1 p\n"
	    "b inet 127.0.0.2:25 - 1 p\n"
	    "c inet [::1]:25 - 1 p\n"
	    "d unix private/a - 1 p\n"
	    "e unix public/a - 1 p\n");
	assert_int_equal(master_conf_count(conf), 5);
	master_conf_free(&conf);
}

static void
test_master_conf_unknown_user(void **state)
{
	struct master_conf *conf = NULL;
	const char *text = "a inet 25 no-such-user-here 1 p\n";
	char *err = NULL;

	(void)state;
	assert_int_equal(master_conf_parse("m.conf", text, strlen(text), 1,
	    &conf, &err), -EINVAL);
	assert_string_equal(err,
	    "m.conf:1: a 'no-such-user-here': unknown user");
	free(err);
	/* Not checked when master cannot switch users anyway. */
	conf = parse_ok(text);
	master_conf_free(&conf);
	/* root always exists. */
	text = "a inet 25 root 1 p\n";
	assert_int_equal(master_conf_parse("m.conf", text, strlen(text), 1,
	    &conf, &err), 0);
	master_conf_free(&conf);
}

/* "user:/dir": the workers are chrooted; the directory is checked by root. */
static void
test_master_conf_chroot(void **state)
{
	struct master_conf *conf = NULL, *other;
	const struct master_service *s;
	const char *text;
	char *err = NULL;

	(void)state;
	conf = parse_ok("a inet 25 pochta:/var/jail 1 p\n"
	    "b inet 26 -:/ 1 p\n"
	    "c inet 27 pochta 1 p\n");
	s = master_conf_service(conf, 0);
	assert_string_equal(s->user, "pochta");
	assert_string_equal(s->chroot, "/var/jail");
	s = master_conf_service(conf, 1);
	assert_null(s->user);
	assert_string_equal(s->chroot, "/");
	s = master_conf_service(conf, 2);
	assert_null(s->chroot);
	/* A changed chroot restarts the service on reload. */
	other = parse_ok("a inet 25 pochta:/var/jail2 1 p\n");
	assert_false(master_service_equal(master_conf_service(conf, 0),
	    master_conf_service(other, 0)));
	master_conf_free(&other);
	other = parse_ok("a inet 25 pochta:/var/jail 1 p\n");
	assert_true(master_service_equal(master_conf_service(conf, 0),
	    master_conf_service(other, 0)));
	master_conf_free(&other);
	master_conf_free(&conf);

	parse_err("a inet 25 pochta: 1 p\n",
	    "m.conf:1: a 'pochta:': bad chroot");
	parse_err("a inet 25 pochta:jail 1 p\n",
	    "m.conf:1: a 'pochta:jail': bad chroot");
	parse_err("a inet 25 :/jail 1 p\n", "m.conf:1: a ':/jail': bad user");
	/* Checked only where master will use it, as root. */
	text = "a inet 25 -:/no/such/dir/here 1 p\n";
	assert_int_equal(master_conf_parse("m.conf", text, strlen(text), 1,
	    &conf, &err), -EINVAL);
	assert_string_equal(err, "m.conf:1: a '-:/no/such/dir/here': "
	    "chroot directory does not exist");
	free(err);
	text = "a inet 25 root:/ 1 p\n";
	assert_int_equal(master_conf_parse("m.conf", text, strlen(text), 1,
	    &conf, &err), 0);
	master_conf_free(&conf);
}

static void
test_master_conf_equal(void **state)
{
	struct master_conf *a, *b;
	struct master_service *dup;

	(void)state;
	a = parse_ok("s inet 25 - 1 p -o x=1\n"
	    "t unix private/t - 1 q\n"
	    "u inet 127.0.0.1:26 - 1 q\n");
	b = parse_ok("\n\ns inet 25 - 1 p\n  -o x=1\n"
	    "t unix private/t - 2 q\n"
	    "u inet 127.0.0.1:26 - 1 q -v\n");
	/* The line number does not count; every column does. */
	assert_true(master_service_equal(master_conf_service(a, 0),
	    master_conf_service(b, 0)));
	assert_false(master_service_equal(master_conf_service(a, 1),
	    master_conf_service(b, 1)));
	assert_false(master_service_equal(master_conf_service(a, 2),
	    master_conf_service(b, 2)));
	assert_true(master_service_same_listen(master_conf_service(a, 2),
	    master_conf_service(b, 2)));
	assert_false(master_service_same_listen(master_conf_service(a, 0),
	    master_conf_service(b, 2)));
	dup = master_service_dup(master_conf_service(a, 0));
	assert_true(master_service_equal(dup, master_conf_service(a, 0)));
	master_service_free(&dup);
	assert_null(dup);
	master_conf_free(&a);
	master_conf_free(&b);
}

static void
test_master_conf_load_file(void **state)
{
	char path[] = "/tmp/master_conf_test.XXXXXX";
	struct master_conf *conf = NULL;
	char *err = NULL;
	int fd;

	(void)state;
	assert_int_equal(master_conf_load("/nonexistent/master.conf", 0, &conf,
	    &err), -ENOENT);
	assert_string_equal(err,
	    "/nonexistent/master.conf: No such file or directory");
	free(err);
	assert_int_equal(master_conf_load("/tmp", 0, &conf, &err), -EINVAL);
	free(err);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "a inet 25 - 1 p\nb inet 25 - 1 p\n", 32),
	    32);
	close(fd);
	assert_int_equal(master_conf_load(path, 0, &conf, &err), -EINVAL);
	char *want = xasprintf("%s:2: duplicate listen address", path);
	assert_memory_equal(err, want, strlen(want));
	free(want);
	free(err);
	unlink(path);
}

static void
test_master_conf_hostile(void **state)
{
	struct master_conf *conf = NULL;
	char *err = NULL;
	size_t n = 300 * 3 + 20;
	char *text = xmalloc(n + 1);

	(void)state;
	/* Too many words on one service. */
	strcpy(text, "a inet 25 - 1 p");
	for (size_t len = strlen(text); len + 3 < n;)
		len += (size_t)sprintf(text + len, " x");
	assert_int_equal(master_conf_parse("m.conf", text, strlen(text), 0,
	    &conf, &err), -EINVAL);
	assert_non_null(strstr(err, "too many words"));
	free(err);
	free(text);

	/* Garbage of every byte value never crashes. */
	text = xmalloc(4096);
	srand(1);
	for (int round = 0; round < 500; round++) {
		size_t len = (size_t)(rand() % 4096);

		for (size_t i = 0; i < len; i++)
			text[i] = (char)(rand() % 4 == 0 ? ' ' :
			    rand() % 8 == 0 ? '\n' : rand() % 256);
		conf = NULL;
		err = NULL;
		if (master_conf_parse("m.conf", text, len, 0, &conf,
		    &err) == 0)
			master_conf_free(&conf);
		else
			free(err);
	}
	free(text);
	/* Empty is a valid (useless) table. */
	conf = parse_ok("");
	assert_int_equal(master_conf_count(conf), 0);
	master_conf_free(&conf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_master_conf_services),
		cmocka_unit_test(test_master_conf_continuation),
		cmocka_unit_test(test_master_conf_errors),
		cmocka_unit_test(test_master_conf_nul_byte),
		cmocka_unit_test(test_master_conf_distinct_listen_ok),
		cmocka_unit_test(test_master_conf_unknown_user),
		cmocka_unit_test(test_master_conf_chroot),
		cmocka_unit_test(test_master_conf_equal),
		cmocka_unit_test(test_master_conf_load_file),
		cmocka_unit_test(test_master_conf_hostile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
