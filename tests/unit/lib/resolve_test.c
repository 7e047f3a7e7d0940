/*
 * resolve_test.c - our domains and known recipients, from real tables
 * built in a temporary directory.
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

#include "conf.h"
#include "map.h"
#include "resolve.h"

static char dir[64];

static void
write_file(const char *name, const char *text)
{
	char path[128];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void
build(const char *name)
{
	char spec[128], *err = NULL;

	snprintf(spec, sizeof(spec), "lmdb:%s/%s", dir, name);
	assert_int_equal(map_build(spec, &err), 0);
}

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/pochta-resolve-XXXXXX");
	assert_non_null(mkdtemp(dir));
	write_file("pochta.conf",
	    "myhostname = mail.example.test\n"
	    "mydestination = example.test, $myhostname, localhost\n"
	    "virtual_mailbox_domains = virtual.test\n"
	    "user_maps = lmdb:$config_directory/users\n"
	    "alias_maps = lmdb:$config_directory/aliases\n"
	    "virtual_alias_maps = lmdb:$config_directory/virtual\n"
	    "recipient_delimiter = +-\n");
	write_file("users", "alice@example.test $y$x\n"
			    "carol@virtual.test $y$x\n");
	write_file("aliases", "root alice@example.test\n"
			      "staff@example.test alice@example.test\n");
	write_file("virtual", "info@virtual.test carol@virtual.test\n"
			      "@catch.virtual.test carol@virtual.test\n");
	build("users");
	build("aliases");
	build("virtual");
	*state = NULL;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct resolve *
open_resolve(struct conf **conf)
{
	struct resolve *rs = NULL;
	char *err = NULL;

	assert_int_equal(conf_load(dir, NULL, 0, conf, &err), 0);
	assert_int_equal(resolve_open(*conf, &rs, &err), 0);
	return rs;
}

static void
test_resolve_domains(void **state)
{
	struct conf *conf = NULL;
	struct resolve *rs = open_resolve(&conf);

	(void)state;
	assert_int_equal(resolve_domain(rs, "example.test"), RESOLVE_LOCAL);
	assert_int_equal(resolve_domain(rs, "Example.TEST"), RESOLVE_LOCAL);
	assert_int_equal(resolve_domain(rs, "mail.example.test"),
	    RESOLVE_LOCAL);
	assert_int_equal(resolve_domain(rs, "virtual.test"), RESOLVE_VIRTUAL);
	assert_int_equal(resolve_domain(rs, "other.test"), RESOLVE_REMOTE);
	assert_int_equal(resolve_domain(rs, "sub.example.test"),
	    RESOLVE_REMOTE);
	assert_int_equal(resolve_domain(rs, "[127.0.0.1]"), RESOLVE_REMOTE);
	assert_int_equal(resolve_domain(rs, ""), RESOLVE_REMOTE);
	resolve_free(&rs);
	assert_null(rs);
	conf_free(&conf);
}

static void
test_resolve_recipients(void **state)
{
	struct conf *conf = NULL;
	struct resolve *rs = open_resolve(&conf);

	(void)state;
	assert_int_equal(resolve_rcpt(rs, "alice", "example.test"), 1);
	assert_int_equal(resolve_rcpt(rs, "ALICE", "example.test"), 1);
	assert_int_equal(resolve_rcpt(rs, "bob", "example.test"), 0);
	/* Bare local part in aliases: only for mydestination domains. */
	assert_int_equal(resolve_rcpt(rs, "root", "example.test"), 1);
	assert_int_equal(resolve_rcpt(rs, "root", "virtual.test"), 0);
	assert_int_equal(resolve_rcpt(rs, "staff", "example.test"), 1);
	/* Extensions, with either delimiter. */
	assert_int_equal(resolve_rcpt(rs, "alice+lists", "example.test"), 1);
	assert_int_equal(resolve_rcpt(rs, "alice-x", "example.test"), 1);
	assert_int_equal(resolve_rcpt(rs, "bob+x", "example.test"), 0);
	assert_int_equal(resolve_rcpt(rs, "+x", "example.test"), 0);
	/* Virtual domains, virtual aliases and a catch-all. */
	assert_int_equal(resolve_rcpt(rs, "carol", "virtual.test"), 1);
	assert_int_equal(resolve_rcpt(rs, "info", "virtual.test"), 1);
	assert_int_equal(resolve_rcpt(rs, "nobody", "virtual.test"), 0);
	assert_int_equal(resolve_rcpt(rs, "anyone", "catch.virtual.test"),
	    1);
	/* RFC 5321 4.5.1: postmaster always exists. */
	assert_int_equal(resolve_rcpt(rs, "PostMaster", "virtual.test"), 1);
	resolve_free(&rs);
	conf_free(&conf);
}

static void
test_resolve_lookup_tables(void **state)
{
	struct conf *conf = NULL;
	struct resolve *rs = open_resolve(&conf);
	char *value = NULL;

	(void)state;
	assert_int_equal(resolve_user(rs, "alice@example.test", &value), 0);
	assert_string_equal(value, "$y$x");
	free(value);
	assert_int_equal(resolve_user(rs, "zed@example.test", &value),
	    -ENOENT);
	assert_int_equal(resolve_lookup(rs, "alias_maps", "root", &value), 0);
	assert_string_equal(value, "alice@example.test");
	free(value);
	/* An empty list parameter: nothing is found, nothing fails. */
	assert_int_equal(resolve_lookup(rs, "transport_maps", "x", &value),
	    -ENOENT);
	resolve_free(&rs);
	conf_free(&conf);
}

static void
test_resolve_missing_table(void **state)
{
	struct conf *conf = NULL;
	struct resolve *rs = NULL;
	char *err = NULL;

	(void)state;
	write_file("pochta.conf", "user_maps = lmdb:$config_directory/nosuch\n");
	assert_int_equal(conf_load(dir, NULL, 0, &conf, &err), 0);
	assert_int_not_equal(resolve_open(conf, &rs, &err), 0);
	assert_null(rs);
	assert_non_null(err);
	assert_non_null(strstr(err, "user_maps"));
	free(err);
	conf_free(&conf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resolve_domains),
		cmocka_unit_test(test_resolve_recipients),
		cmocka_unit_test(test_resolve_lookup_tables),
		cmocka_unit_test(test_resolve_missing_table),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
