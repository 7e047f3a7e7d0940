/*
 * map_test.c - unit tests for lib/map: building tables from text, source
 * errors with their line numbers, lookups, reopening a rebuilt table at a
 * bounded rate, and broken database files. stat() and clock_gettime() are
 * wrapped (map_test.wrap) to count checks and to move time by hand.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "map.h"

static int stat_calls;
static int fake_clock;
static struct timespec fake_now;

int __real_stat(const char *path, struct stat *st);
int __real_clock_gettime(clockid_t id, struct timespec *ts);

int
__wrap_stat(const char *path, struct stat *st)
{
	stat_calls++;
	return __real_stat(path, st);
}

int
__wrap_clock_gettime(clockid_t id, struct timespec *ts)
{
	if (fake_clock && id == CLOCK_MONOTONIC) {
		*ts = fake_now;
		return 0;
	}
	return __real_clock_gettime(id, ts);
}

static void
advance_ms(long ms)
{
	fake_now.tv_sec += ms / 1000;
	fake_now.tv_nsec += (ms % 1000) * 1000000;
	if (fake_now.tv_nsec >= 1000000000) {
		fake_now.tv_sec++;
		fake_now.tv_nsec -= 1000000000;
	}
}

struct fixture {
	char dir[64];
	char src[96];
	char db[112];
	char spec[112];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/map_testXXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->src, sizeof(f->src), "%s/table", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/table.lmdb", f->dir);
	snprintf(f->spec, sizeof(f->spec), "lmdb:%s", f->src);
	fake_clock = 0;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	fake_clock = 0;
	return 0;
}

static void
write_file(const char *path, const char *text, size_t n)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

static void
write_src(struct fixture *f, const char *text)
{
	write_file(f->src, text, strlen(text));
}

static void
build_ok(struct fixture *f)
{
	char *err = NULL;
	int rc = map_build(f->spec, &err);

	if (rc != 0)
		fail_msg("build: %s", err);
	assert_null(err);
}

/* Build must fail with exactly this message (after "path:"). */
static void
build_fails(struct fixture *f, const char *text, const char *msg)
{
	char *err = NULL, *want;

	write_src(f, text);
	assert_int_not_equal(map_build(f->spec, &err), 0);
	assert_non_null(err);
	assert_true(asprintf(&want, "%s:%s", f->src, msg) > 0);
	assert_string_equal(err, want);
	free(want);
	free(err);
}

static void
assert_lookup(struct map *m, const char *key, const char *want)
{
	char *v = NULL;
	int rc = map_lookup(m, key, &v);

	if (want == NULL) {
		assert_int_equal(rc, -ENOENT);
		return;
	}
	assert_int_equal(rc, 0);
	assert_string_equal(v, want);
	free(v);
}

/* Send stderr (the log) to a file in the test directory. */
static int saved_stderr = -1;

static void
capture_stderr(struct fixture *f)
{
	char path[160];
	int fd;

	snprintf(path, sizeof(path), "%s/log", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	saved_stderr = dup(2);
	assert_int_equal(dup2(fd, 2), 2);
	close(fd);
}

/* Restore stderr (once) and count the captured lines holding what. */
static int
release_stderr(struct fixture *f, const char *what)
{
	char path[160], line[1024];
	int n = 0;
	FILE *fp;

	if (saved_stderr != -1) {
		dup2(saved_stderr, 2);
		close(saved_stderr);
		saved_stderr = -1;
	}
	snprintf(path, sizeof(path), "%s/log", f->dir);
	fp = fopen(path, "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		n += strstr(line, what) != NULL;
	fclose(fp);
	return n;
}

static void
test_map_build_lookup_round_trip(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL;

	write_src(f, "alice@example.test alice-value\n"
	    "bob@example.test   bob  with  spaces   \n"
	    "example.test\tOK\n");
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	assert_string_equal(map_spec(m), f->spec);
	assert_lookup(m, "alice@example.test", "alice-value");
	/* Inner white space is kept, outer trimmed. */
	assert_lookup(m, "bob@example.test", "bob  with  spaces");
	assert_lookup(m, "example.test", "OK");
	assert_lookup(m, "carol@example.test", NULL);
	assert_lookup(m, "", NULL);
	map_free(&m);
	assert_null(m);
	map_free(&m);

	/* A bare path means lmdb too. */
	assert_int_equal(map_open(f->src, &m, &err), 0);
	assert_lookup(m, "example.test", "OK");
	map_free(&m);
}

static void
test_map_case_folding(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL;

	write_src(f, "Alice@Example.TEST Value-Keeps-Case\n");
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	assert_lookup(m, "alice@example.test", "Value-Keeps-Case");
	assert_lookup(m, "ALICE@EXAMPLE.TEST", "Value-Keeps-Case");
	assert_lookup(m, "aLiCe@eXaMpLe.TeSt", "Value-Keeps-Case");
	map_free(&m);
	/* Case differences make a duplicate. */
	build_fails(f, "a@b x\nA@B y\n", "2: duplicate key 'a@b'");
}

static void
test_map_comments_and_continuations(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL;

	write_src(f, "# a comment\n"
	    "\n"
	    "   \n"
	    "list first,\n"
	    "\tsecond,\n"
	    "   # an indented comment is still a comment\n"
	    "  third\n"
	    "novalue\n"
	    "  given-on-next-line\n"
	    "crlf value\r\n"
	    "last no-newline");
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	assert_lookup(m, "list", "first, second, third");
	assert_lookup(m, "novalue", "given-on-next-line");
	assert_lookup(m, "crlf", "value");
	assert_lookup(m, "last", "no-newline");
	assert_lookup(m, "#", NULL);
	assert_lookup(m, "a", NULL);
	map_free(&m);
}

static void
test_map_source_errors_have_line_numbers(void **state)
{
	struct fixture *f = *state;
	char text[MAP_LINE_MAX + 64], key[MAP_KEY_MAX + 8];
	char *err = NULL;

	build_fails(f, "a 1\n\nb\n# c\nc 3\n", "3: missing value for key 'b'");
	build_fails(f, "# x\na 1\nlast\n", "3: missing value for key 'last'");
	build_fails(f, "a 1\nb 2\na 3\n", "3: duplicate key 'a'");
	build_fails(f, "# x\n  orphan\na 1\n",
	    "2: continuation line without a key before it");

	memset(key, 'k', MAP_KEY_MAX + 1);
	key[MAP_KEY_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "a 1\n%s v\n", key);
	build_fails(f, text, "2: key longer than 511 bytes");
	key[MAP_KEY_MAX] = '\0';
	snprintf(text, sizeof(text), "a 1\n%s v\n", key);
	write_src(f, text);
	build_ok(f);

	write_file(f->src, "a 1\nb 2\nc x\0y\n", 13);
	assert_int_equal(map_build(f->spec, &err), -EINVAL);
	assert_non_null(strstr(err, ":3: NUL byte in line"));
	free(err);

	memset(text, 'v', sizeof(text));
	memcpy(text, "a 1\nb ", 6);
	text[sizeof(text) - 2] = '\n';
	text[sizeof(text) - 1] = '\0';
	build_fails(f, text, "2: line longer than 8192 bytes");

	/* Many continuation lines: the joined value has its own limit. */
	{
		size_t n = 0, cap = MAP_VALUE_MAX * 2;
		char *big = malloc(cap);
		unsigned long lines = 1;

		assert_non_null(big);
		n += (size_t)sprintf(big, "big start\n");
		while (n < MAP_VALUE_MAX + 2000) {
			memset(big + n, ' ', 1);
			memset(big + n + 1, 'x', 999);
			big[n + 1000] = '\n';
			n += 1001;
			lines++;
		}
		big[n] = '\0';
		build_fails(f, big, "1: value longer than 65536 bytes");
		free(big);
		(void)lines;
	}
}

static void
test_map_failed_build_keeps_old_table(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	struct stat st1, st2;
	char *err = NULL;

	write_src(f, "k old\n");
	build_ok(f);
	assert_int_equal(stat(f->db, &st1), 0);
	build_fails(f, "k new\nbroken\n", "2: missing value for key 'broken'");
	assert_int_equal(stat(f->db, &st2), 0);
	assert_int_equal(st1.st_ino, st2.st_ino);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	assert_lookup(m, "k", "old");
	map_free(&m);
	/* No temporary file is left behind. */
	{
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 2",
		    f->dir);
		assert_int_equal(system(cmd), 0);
	}
}

static void
test_map_reader_sees_rebuilt_table(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL;

	fake_clock = 1;
	fake_now.tv_sec = 1000;
	write_src(f, "k old\n");
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	assert_lookup(m, "k", "old");
	write_src(f, "k new\nadded yes\n");
	build_ok(f);
	advance_ms(MAP_CHECK_INTERVAL_MS);
	assert_lookup(m, "k", "new");
	assert_lookup(m, "added", "yes");

	/* The file vanishing keeps the old copy in use, said once. */
	capture_stderr(f);
	assert_int_equal(unlink(f->db), 0);
	for (int i = 0; i < 5; i++) {
		advance_ms(MAP_CHECK_INTERVAL_MS);
		assert_lookup(m, "k", "new");
		assert_lookup(m, "added", "yes");
	}
	/* A broken replacement too, also said once. */
	write_file(f->db, "garbage", 7);
	for (int i = 0; i < 5; i++) {
		advance_ms(MAP_CHECK_INTERVAL_MS);
		assert_lookup(m, "k", "new");
	}
	assert_int_equal(release_stderr(f, "No such file"), 1);
	assert_int_equal(release_stderr(f, "cannot reopen"), 1);
	write_src(f, "k newest\n");
	build_ok(f);
	advance_ms(MAP_CHECK_INTERVAL_MS);
	assert_lookup(m, "k", "newest");
	map_free(&m);
}

static void
test_map_reopen_check_is_bounded(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL;

	fake_clock = 1;
	fake_now.tv_sec = 5000;
	write_src(f, "k old\n");
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	write_src(f, "k new\n");
	build_ok(f);
	stat_calls = 0;
	for (int i = 0; i < 1000; i++)
		assert_lookup(m, "k", "old");
	advance_ms(MAP_CHECK_INTERVAL_MS - 1);
	assert_lookup(m, "k", "old");
	assert_int_equal(stat_calls, 0);
	advance_ms(1);
	assert_lookup(m, "k", "new");
	assert_int_equal(stat_calls, 2);	/* the check and the reopen */
	stat_calls = 0;
	for (int i = 0; i < 100; i++)
		assert_lookup(m, "k", "new");
	assert_int_equal(stat_calls, 0);

	/* Interval 0: every lookup checks. */
	map_set_check_interval(m, 0);
	for (int i = 0; i < 10; i++)
		assert_lookup(m, "k", "new");
	assert_int_equal(stat_calls, 10);
	map_free(&m);
}

static void
test_map_missing_table(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL;

	assert_int_equal(map_open(f->spec, &m, &err), -ENOENT);
	assert_null(m);
	assert_non_null(strstr(err, "table.lmdb"));
	free(err);
	err = NULL;
	assert_int_equal(map_build(f->spec, &err), -ENOENT);
	assert_non_null(strstr(err, "No such file"));
	free(err);
}

static void
test_map_bad_specs(void **state)
{
	char *err = NULL, *src = NULL, *db = NULL;

	(void)state;
	assert_int_equal(map_spec_paths("pgsql:users", &src, &db, &err),
	    -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "unsupported table type 'pgsql'"));
	free(err);
	assert_int_equal(map_spec_paths("lmdb:", &src, &db, &err), -EINVAL);
	free(err);
	assert_int_equal(map_spec_paths("lmdb:/etc/", &src, &db, &err),
	    -EINVAL);
	free(err);
	assert_null(src);
	assert_int_equal(map_spec_paths("/a/b:c", &src, &db, &err), 0);
	assert_string_equal(src, "/a/b:c");
	assert_string_equal(db, "/a/b:c.lmdb");
	free(src);
	free(db);
	assert_int_equal(map_spec_paths("LMDB:/x", &src, &db, &err), 0);
	assert_string_equal(src, "/x");
	free(src);
	free(db);
	assert_int_equal(map_spec_paths("lmdb:rel/t", &src, &db, &err), 0);
	assert_string_equal(src, "rel/t");
	assert_string_equal(db, "rel/t.lmdb");
	free(src);
	free(db);
}

static void
test_map_broken_files_are_errors(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL, *junk;
	struct stat st;
	FILE *fp;

	/* Empty, short garbage, long garbage. */
	write_file(f->db, "", 0);
	assert_int_equal(map_open(f->spec, &m, &err), -EINVAL);
	free(err);
	write_file(f->db, "garbage", 7);
	assert_int_equal(map_open(f->spec, &m, &err), -EINVAL);
	free(err);
	junk = malloc(65536);
	assert_non_null(junk);
	for (int i = 0; i < 65536; i++)
		junk[i] = (char)(i * 7 + 3);
	write_file(f->db, junk, 65536);
	free(junk);
	assert_int_equal(map_open(f->spec, &m, &err), -EINVAL);
	free(err);
	/* A directory in its place. */
	assert_int_equal(unlink(f->db), 0);
	assert_int_equal(mkdir(f->db, 0700), 0);
	assert_int_equal(map_open(f->spec, &m, &err), -EINVAL);
	free(err);
	assert_int_equal(rmdir(f->db), 0);

	/* A real table cut short: its pages are missing. */
	fp = fopen(f->src, "w");
	assert_non_null(fp);
	for (int i = 0; i < 5000; i++)
		fprintf(fp, "key%05d value-%d-padding-padding-padding\n", i, i);
	assert_int_equal(fclose(fp), 0);
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	assert_lookup(m, "key04999", "value-4999-padding-padding-padding");
	map_free(&m);
	assert_int_equal(stat(f->db, &st), 0);
	assert_int_equal(truncate(f->db, st.st_size / 2), 0);
	assert_int_equal(map_open(f->spec, &m, &err), -EINVAL);
	assert_non_null(strstr(err, "truncated"));
	free(err);
	assert_null(m);
}

static int
count_entry(const char *key, const char *value, void *arg)
{
	char *out = arg;

	strcat(out, key);
	strcat(out, "=");
	strcat(out, value);
	strcat(out, ";");
	return strcmp(key, "stop") == 0 ? 7 : 0;
}

static void
test_map_walk_all_entries(void **state)
{
	struct fixture *f = *state;
	struct map *m = NULL;
	char *err = NULL, out[256] = "";

	write_src(f, "b 2\nA 1\nc three  3\n");
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	assert_int_equal(map_walk(m, count_entry, out), 0);
	assert_string_equal(out, "a=1;b=2;c=three  3;");
	map_free(&m);

	write_src(f, "a 1\nstop 2\nz 3\n");
	build_ok(f);
	assert_int_equal(map_open(f->spec, &m, &err), 0);
	out[0] = '\0';
	assert_int_equal(map_walk(m, count_entry, out), 7);
	assert_string_equal(out, "a=1;stop=2;");
	map_free(&m);
}

static void
test_map_build_keeps_source_mode(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	write_src(f, "a 1\n");
	assert_int_equal(chmod(f->src, 0640), 0);
	build_ok(f);
	assert_int_equal(stat(f->db, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
}

static void
test_map_list_first_table_wins(void **state)
{
	struct fixture *f = *state;
	struct map_list *l = NULL;
	char second[128], spec2[140], *specs[2], *err = NULL;

	write_src(f, "both first\nonly1 one\n");
	build_ok(f);
	snprintf(second, sizeof(second), "%s/second", f->dir);
	snprintf(spec2, sizeof(spec2), "lmdb:%s", second);
	write_file(second, "both second\nonly2 two\n", 22);
	assert_int_equal(map_build(spec2, &err), 0);
	specs[0] = f->spec;
	specs[1] = spec2;
	assert_int_equal(map_list_open(specs, 2, &l, &err), 0);
	assert_int_equal(map_list_count(l), 2);
	assert_string_equal(map_spec(map_list_get(l, 1)), spec2);
	assert_null(map_list_get(l, 2));
	{
		char *v = NULL;

		assert_int_equal(map_list_lookup(l, "BOTH", &v), 0);
		assert_string_equal(v, "first");
		free(v);
		assert_int_equal(map_list_lookup(l, "only2", &v), 0);
		assert_string_equal(v, "two");
		free(v);
		assert_int_equal(map_list_lookup(l, "none", &v), -ENOENT);
	}
	map_list_free(&l);
	assert_null(l);

	/* One table missing fails the whole list, naming it. */
	specs[1] = "lmdb:/nonexistent/table";
	assert_int_equal(map_list_open(specs, 2, &l, &err), -ENOENT);
	assert_null(l);
	assert_non_null(strstr(err, "/nonexistent/table.lmdb"));
	free(err);

	/* An empty list finds nothing. */
	assert_int_equal(map_list_open(specs, 0, &l, &err), 0);
	{
		char *v = NULL;

		assert_int_equal(map_list_lookup(l, "both", &v), -ENOENT);
	}
	map_list_free(&l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_map_build_lookup_round_trip),
		T(test_map_case_folding),
		T(test_map_comments_and_continuations),
		T(test_map_source_errors_have_line_numbers),
		T(test_map_failed_build_keeps_old_table),
		T(test_map_reader_sees_rebuilt_table),
		T(test_map_reopen_check_is_bounded),
		T(test_map_missing_table),
		T(test_map_bad_specs),
		T(test_map_broken_files_are_errors),
		T(test_map_walk_all_entries),
		T(test_map_build_keeps_source_mode),
		T(test_map_list_first_table_wins),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
