/*
 * queue_test.c - unit tests for lib/queue, lib/queue_file and
 * lib/queue_writer: IDs, the file format round trip, in-place updates,
 * every kind of corrupt file, and disk trouble faked with -Wl,--wrap on
 * write, fsync, fdatasync, rename and statvfs (queue_test.wrap).
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "queue.h"
#include "queue_file.h"
#include "queue_writer.h"

/* Fault injection: the Nth call from now fails with errno fail_errno. */
static int write_fail_after = -1, fsync_fail_after = -1;
static int fdatasync_fail_after = -1, rename_fail = 0, fail_errno;
static int statvfs_fake;
static struct statvfs statvfs_value;

/* Wall clock skew in microseconds, to step the clock backwards. */
static int64_t clock_skew_us;

int __real_gettimeofday(struct timeval *tv, void *tz);
ssize_t __real_write(int fd, const void *buf, size_t n);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_rename(const char *a, const char *b);
int __real_statvfs(const char *path, struct statvfs *sv);

static int
countdown(int *after)
{
	if (*after < 0)
		return 0;
	if (*after == 0) {
		*after = -1;
		return 1;
	}
	(*after)--;
	return 0;
}

int
__wrap_gettimeofday(struct timeval *tv, void *tz)
{
	int r = __real_gettimeofday(tv, tz);
	int64_t us = (int64_t)tv->tv_sec * 1000000 + tv->tv_usec -
	    clock_skew_us;

	tv->tv_sec = (time_t)(us / 1000000);
	tv->tv_usec = (suseconds_t)(us % 1000000);
	return r;
}

ssize_t
__wrap_write(int fd, const void *buf, size_t n)
{
	if (countdown(&write_fail_after)) {
		errno = fail_errno;
		return -1;
	}
	return __real_write(fd, buf, n);
}

int
__wrap_fsync(int fd)
{
	if (countdown(&fsync_fail_after)) {
		errno = fail_errno;
		return -1;
	}
	return __real_fsync(fd);
}

int
__wrap_fdatasync(int fd)
{
	if (countdown(&fdatasync_fail_after)) {
		errno = fail_errno;
		return -1;
	}
	return __real_fdatasync(fd);
}

int
__wrap_rename(const char *a, const char *b)
{
	if (rename_fail) {
		rename_fail = 0;
		errno = fail_errno;
		return -1;
	}
	return __real_rename(a, b);
}

int
__wrap_statvfs(const char *path, struct statvfs *sv)
{
	if (statvfs_fake < 0) {
		errno = -statvfs_fake;
		return -1;
	}
	if (statvfs_fake) {
		*sv = statvfs_value;
		return 0;
	}
	return __real_statvfs(path, sv);
}

static void
faults_off(void)
{
	write_fail_after = fsync_fail_after = fdatasync_fail_after = -1;
	rename_fail = statvfs_fake = 0;
}

/* Each test runs in a fresh spool. */
static int
setup_spool(void **state)
{
	char *dir = strdup("/tmp/pochta-queue-test.XXXXXX");

	if (mkdtemp(dir) == NULL)
		return -1;
	if (queue_mkdirs(dir) != 0)
		return -1;
	faults_off();
	*state = dir;
	return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)st;
	(void)type;
	(void)f;
	return remove(path);
}

static int
teardown_spool(void **state)
{
	faults_off();
	nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(*state);
	return 0;
}

/* Every entry of a queue directory, IDs or not. */
static size_t
count_files(const char *spool, const char *dir)
{
	char path[4096];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", spool, dir);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static struct queue_env
sample_env(void)
{
	struct queue_env env;

	memset(&env, 0, sizeof(env));
	env.sender = "sender@example.test";
	env.client_addr = "192.0.2.1";
	env.client_name = "client.example.test";
	env.helo = "helo.example.test";
	env.protocol = "ESMTPSA";
	env.auth_user = "bob";
	env.ret = QUEUE_RET_HDRS;
	env.envid = "envid-1";
	env.body = QUEUE_BODY_8BITMIME;
	env.smtputf8 = 1;
	return env;
}

/* Write a whole queue file; its ID into id. */
static void
write_queue_file(const char *spool, const struct queue_env *env,
    const char *const *rcpts, size_t n, const void *msg, size_t len,
    char id[QUEUE_ID_SIZE])
{
	struct queue_writer *w = NULL;
	const char *err = NULL;

	assert_int_equal(queue_writer_create(spool, env, &w, &err), 0);
	assert_int_equal(queue_writer_write(w, msg, len), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(queue_writer_add_rcpt(w, rcpts[i], NULL, 0),
		    0);
	assert_int_equal(queue_writer_commit(w, &err), 0);
	strcpy(id, queue_writer_id(w));
	queue_writer_free(&w);
	assert_null(w);
}

static struct queue_file *
open_id(const char *spool, const char *dir, const char *id, int writable)
{
	struct queue_file *qf = NULL;
	const char *err = NULL;
	char *path = queue_path(spool, dir, id);
	int r;

	r = queue_file_open(path, writable, &qf, &err);
	if (r != 0)
		fail_msg("open %s: %d %s", path, r, err);
	free(path);
	return qf;
}

static void
test_queue_id_format_and_order(void **state)
{
	char prev[QUEUE_ID_SIZE], id[QUEUE_ID_SIZE];
	struct timeval tv;
	uint64_t now;

	(void)state;
	gettimeofday(&tv, NULL);
	now = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
	queue_id_new(prev);
	assert_int_equal(strlen(prev), QUEUE_ID_LEN);
	assert_true(queue_id_valid(prev));
	assert_true(queue_id_time_us(prev) >= now);
	assert_true(queue_id_time_us(prev) < now + 10000000);
	for (int i = 0; i < 20000; i++) {
		queue_id_new(id);
		assert_true(queue_id_valid(id));
		assert_true(strcmp(prev, id) < 0);
		strcpy(prev, id);
	}
}

/* An NTP step backwards must not reorder IDs within a process. */
static void
test_queue_id_clock_step_back(void **state)
{
	char a[QUEUE_ID_SIZE], b[QUEUE_ID_SIZE], c[QUEUE_ID_SIZE];

	(void)state;
	queue_id_new(a);
	clock_skew_us = 60 * 1000000;
	queue_id_new(b);
	queue_id_new(c);
	clock_skew_us = 0;
	assert_true(strcmp(a, b) < 0);
	assert_true(strcmp(b, c) < 0);
	assert_true(queue_id_time_us(b) >= queue_id_time_us(a));
}

struct thread_arg {
	const char *spool;
	char ids[50][QUEUE_ID_SIZE];
	int failed;
};

static void *
writer_thread(void *p)
{
	struct thread_arg *ta = p;
	struct queue_env env = sample_env();

	for (int i = 0; i < 50; i++) {
		struct queue_writer *w = NULL;
		const char *err;

		if (queue_writer_create(ta->spool, &env, &w, &err) < 0 ||
		    queue_writer_write(w, "m\r\n", 3) < 0 ||
		    queue_writer_add_rcpt(w, "r@x", NULL, 0) < 0 ||
		    queue_writer_commit(w, &err) < 0)
			ta->failed++;
		else
			strcpy(ta->ids[i], queue_writer_id(w));
		queue_writer_free(&w);
	}
	return NULL;
}

/* Writers on the libuv thread pool run in parallel. */
static void
test_queue_writer_threads(void **state)
{
	struct thread_arg ta[4];
	pthread_t t[4];
	char **ids;
	size_t n;

	for (int i = 0; i < 4; i++) {
		memset(&ta[i], 0, sizeof(ta[i]));
		ta[i].spool = *state;
		assert_int_equal(pthread_create(&t[i], NULL, writer_thread,
		    &ta[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(ta[i].failed, 0);
		/* Each thread's own IDs are in order. */
		for (int j = 1; j < 50; j++)
			assert_true(strcmp(ta[i].ids[j - 1], ta[i].ids[j]) <
			    0);
	}
	assert_int_equal(queue_scan(*state, QUEUE_INCOMING, &ids, &n), 0);
	assert_int_equal(n, 200);
	queue_ids_free(&ids);
	assert_int_equal(count_files(*state, QUEUE_TMP), 0);
}

static void
test_queue_id_valid_rejects(void **state)
{
	static const char *const bad[] = {
		"", "0000000000000000000", "000000000000000000000",
		"0000000000000000000I", "0000000000000000000L",
		"0000000000000000000O", "0000000000000000000U",
		"0000000000000000000a", "../../../../etc/pass",
		"000000000000000000/0", "0000000000000000000 ",
	};

	(void)state;
	assert_false(queue_id_valid(NULL));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(queue_id_valid(bad[i]));
	assert_true(queue_id_valid("0123456789ABCDEFGHJK"));
	assert_null(queue_path("/s", "incoming", "../../../../etc/pass"));
	assert_null(queue_path("/s", "..", "0123456789ABCDEFGHJK"));
	char *p = queue_path("/s", "active", "0123456789ABCDEFGHJK");
	assert_string_equal(p, "/s/active/0123456789ABCDEFGHJK");
	free(p);
}

static int
cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, QUEUE_ID_LEN);
}

static void
test_queue_id_unique_across_fork(void **state)
{
	enum { KIDS = 8, PER = 3000 };
	char (*all)[QUEUE_ID_LEN] = calloc((KIDS + 1) * PER, QUEUE_ID_LEN);
	int fds[2];
	size_t got = 0;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	for (int k = 0; k < KIDS; k++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			char id[QUEUE_ID_SIZE];

			close(fds[0]);
			for (int i = 0; i < PER; i++) {
				queue_id_new(id);
				if (__real_write(fds[1], id, QUEUE_ID_LEN) !=
				    QUEUE_ID_LEN)
					_exit(1);
			}
			_exit(0);
		}
	}
	close(fds[1]);
	for (int i = 0; i < PER; i++)
		queue_id_new(all[got++]);
	for (;;) {
		ssize_t n = read(fds[0], all[got], QUEUE_ID_LEN);

		if (n == 0)
			break;
		assert_int_equal(n, QUEUE_ID_LEN);
		got++;
	}
	close(fds[0]);
	for (int k = 0; k < KIDS; k++) {
		int st;

		assert_true(wait(&st) > 0);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(got, (KIDS + 1) * PER);
	qsort(all, got, QUEUE_ID_LEN, cmp_id);
	for (size_t i = 1; i < got; i++)
		assert_true(memcmp(all[i - 1], all[i], QUEUE_ID_LEN) < 0);
	free(all);
}

static void
test_queue_file_round_trip_every_field(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	struct queue_writer *w = NULL;
	struct queue_file *qf;
	const struct queue_env *e;
	const char *err = NULL;
	char id[QUEUE_ID_SIZE], addr[128], orcpt[128];
	static const char hostile[] =
	    "a\r\nR to=evil@x\nend 0\n%25%0A%\x01\x7f \t\xd0\xbf\xd1\x80@x";

	(void)state;
	env.sender = "";	/* <> */
	env.helo = (char *)hostile;
	env.client_name = "\xd0\xbf\xd1\x80\xd0\xb8.example";
	env.auth_user = "%00%";
	assert_int_equal(queue_writer_create(spool, &env, &w, &err), 0);
	assert_true(queue_id_valid(queue_writer_id(w)));
	assert_int_equal(queue_writer_write(w, "hello\r\n", 7), 0);
	assert_int_equal(queue_writer_size(w), 7);
	for (int i = 0; i < 1000; i++) {
		unsigned notify = (unsigned)(i % 4) == 0 ? 0 :
		    i % 4 == 1 ? QUEUE_NOTIFY_NEVER :
		    i % 4 == 2 ? QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY :
		    QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE |
		    QUEUE_NOTIFY_DELAY;

		snprintf(addr, sizeof(addr), "\"u %d\\\"\r\n%%\"@d%d.test", i,
		    i);
		snprintf(orcpt, sizeof(orcpt), "rfc822;u+%d@x", i);
		assert_int_equal(queue_writer_add_rcpt(w, addr,
		    i % 3 ? orcpt : NULL, notify), 0);
	}
	assert_int_equal(queue_writer_add_rcpt(w, hostile, NULL, 0), 0);
	assert_int_equal(queue_writer_add_rcpt(w, "", NULL, 0), -EINVAL);
	assert_int_equal(queue_writer_commit(w, &err), 0);
	strcpy(id, queue_writer_id(w));
	queue_writer_free(&w);
	assert_int_equal(count_files(spool, QUEUE_TMP), 0);
	assert_int_equal(count_files(spool, QUEUE_INCOMING), 1);

	qf = open_id(spool, QUEUE_INCOMING, id, 0);
	e = queue_file_env(qf);
	assert_string_equal(e->id, id);
	assert_int_equal((uint64_t)e->arrival_sec * 1000000 +
	    (uint64_t)e->arrival_usec, queue_id_time_us(id));
	assert_string_equal(e->sender, "");
	assert_string_equal(e->client_addr, "192.0.2.1");
	assert_string_equal(e->client_name, env.client_name);
	assert_string_equal(e->helo, hostile);
	assert_string_equal(e->protocol, "ESMTPSA");
	assert_string_equal(e->auth_user, "%00%");
	assert_int_equal(e->ret, QUEUE_RET_HDRS);
	assert_string_equal(e->envid, "envid-1");
	assert_int_equal(e->body, QUEUE_BODY_8BITMIME);
	assert_int_equal(e->smtputf8, 1);
	assert_int_equal(e->msg_size, 7);
	assert_int_equal(e->next_retry, 0);
	assert_int_equal(e->nrcpt, 1001);
	assert_int_equal(queue_file_pending(qf), 1001);
	for (int i = 0; i < 1000; i++) {
		const struct queue_rcpt *rc = &e->rcpts[i];
		char c;

		snprintf(addr, sizeof(addr), "\"u %d\\\"\r\n%%\"@d%d.test", i,
		    i);
		snprintf(orcpt, sizeof(orcpt), "rfc822;u+%d@x", i);
		assert_int_equal(rc->status, QUEUE_RCPT_PENDING);
		assert_string_equal(rc->address, addr);
		if (i % 3)
			assert_string_equal(rc->orcpt, orcpt);
		else
			assert_null(rc->orcpt);
		assert_int_equal(rc->notify, (unsigned)(i % 4) == 0 ? 0 :
		    i % 4 == 1 ? QUEUE_NOTIFY_NEVER :
		    i % 4 == 2 ? QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY :
		    QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE |
		    QUEUE_NOTIFY_DELAY);
		assert_int_equal(rc->ndefer, 0);
		assert_null(rc->defer_reason);
		/* The status byte really is where the reader says. */
		assert_int_equal(pread(queue_file_fd(qf), &c, 1,
		    rc->status_off), 1);
		assert_int_equal(c, 'R');
	}
	assert_string_equal(e->rcpts[1000].address, hostile);
	queue_file_free(&qf);
	assert_null(qf);

	/* Defaults: no optional records. */
	struct queue_env bare;
	memset(&bare, 0, sizeof(bare));
	bare.sender = "s@x";
	write_queue_file(spool, &bare, (const char *[]){ "r@x" }, 1, "", 0,
	    id);
	qf = open_id(spool, QUEUE_INCOMING, id, 0);
	e = queue_file_env(qf);
	assert_null(e->client_addr);
	assert_null(e->auth_user);
	assert_null(e->envid);
	assert_int_equal(e->ret, QUEUE_RET_NONE);
	assert_int_equal(e->body, QUEUE_BODY_7BIT);
	assert_int_equal(e->smtputf8, 0);
	assert_int_equal(e->msg_size, 0);
	queue_file_free(&qf);
}

static void
test_queue_file_message_byte_exact(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	struct queue_writer *w = NULL;
	struct queue_file *qf;
	const char *err = NULL;
	size_t len = 300000, pos = 0, step = 1;
	unsigned char *msg = malloc(len), *back = malloc(len + 10);
	char id[QUEUE_ID_SIZE];

	(void)state;
	for (size_t i = 0; i < len; i++)
		msg[i] = (unsigned char)(i * 7 + i / 251);
	/* Bare CRs, blank lines and text that looks like records. */
	memcpy(msg, "\r\r\n\n\nend 0\nR to=x\n\r", 19);
	assert_int_equal(queue_writer_create(spool, &env, &w, &err), 0);
	/* Chunks of odd sizes, some bigger than the writer's buffer. */
	while (pos < len) {
		size_t n = step < len - pos ? step : len - pos;

		assert_int_equal(queue_writer_write(w, msg + pos, n), 0);
		pos += n;
		assert_int_equal(queue_writer_size(w), pos);
		step = step * 3 + 1;
	}
	assert_int_equal(queue_writer_add_rcpt(w, "r@x", NULL, 0), 0);
	assert_int_equal(queue_writer_commit(w, &err), 0);
	strcpy(id, queue_writer_id(w));
	queue_writer_free(&w);

	qf = open_id(spool, QUEUE_INCOMING, id, 0);
	assert_int_equal(queue_file_msg_size(qf), len);
	/* The offset is exact: the raw bytes there are the message. */
	assert_int_equal(pread(queue_file_fd(qf), back, len,
	    queue_file_msg_offset(qf)), (ssize_t)len);
	assert_memory_equal(back, msg, len);
	/* And reading in chunks gives the same, then 0 at the end. */
	memset(back, 0, len);
	pos = 0;
	for (;;) {
		ssize_t n = queue_file_read_msg(qf, back + pos, 4099, pos);

		assert_true(n >= 0);
		if (n == 0)
			break;
		pos += (size_t)n;
	}
	assert_int_equal(pos, len);
	assert_memory_equal(back, msg, len);
	assert_int_equal(queue_file_read_msg(qf, back, 10, len + 5), 0);
	queue_file_free(&qf);
	free(msg);
	free(back);
}

static void
test_queue_file_mark_survives_reread(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	const char *rcpts[] = { "a@x", "b@x", "c@x", "d@x" };
	struct queue_file *qf;
	const char *err = NULL;
	char id[QUEUE_ID_SIZE];
	struct stat st0, st1;
	char *path;

	(void)state;
	write_queue_file(spool, &env, rcpts, 4, "M\r\n", 3, id);
	path = queue_path(spool, QUEUE_INCOMING, id);
	assert_int_equal(stat(path, &st0), 0);

	qf = open_id(spool, QUEUE_INCOMING, id, 0);
	assert_int_equal(queue_file_mark(qf, 0, QUEUE_RCPT_DELIVERED, &err),
	    -EBADF);
	queue_file_free(&qf);

	qf = open_id(spool, QUEUE_INCOMING, id, 1);
	assert_int_equal(queue_file_mark(qf, 1, QUEUE_RCPT_DELIVERED, &err),
	    0);
	assert_int_equal(queue_file_mark(qf, 3, QUEUE_RCPT_BOUNCED, &err), 0);
	assert_int_equal(queue_file_mark(qf, 1, QUEUE_RCPT_BOUNCED, &err),
	    -EALREADY);
	assert_int_equal(queue_file_mark(qf, 4, QUEUE_RCPT_BOUNCED, &err),
	    -EINVAL);
	assert_int_equal(queue_file_mark(qf, 0, QUEUE_RCPT_PENDING, &err),
	    -EINVAL);
	assert_int_equal(queue_file_mark(qf, 0, 'X', &err), -EINVAL);
	assert_int_equal(queue_file_pending(qf), 2);
	queue_file_free(&qf);

	/* In place: same size, and a fresh reader sees the marks. */
	assert_int_equal(stat(path, &st1), 0);
	assert_int_equal(st0.st_size, st1.st_size);
	qf = open_id(spool, QUEUE_INCOMING, id, 1);
	const struct queue_env *e = queue_file_env(qf);
	assert_int_equal(e->rcpts[0].status, 'R');
	assert_int_equal(e->rcpts[1].status, 'D');
	assert_int_equal(e->rcpts[2].status, 'R');
	assert_int_equal(e->rcpts[3].status, 'B');
	assert_string_equal(e->rcpts[3].address, "d@x");
	/* A failed sync is reported and the mark is not taken as done. */
	fdatasync_fail_after = 0;
	fail_errno = EIO;
	assert_int_equal(queue_file_mark(qf, 0, QUEUE_RCPT_DELIVERED, &err),
	    -EIO);
	assert_int_equal(queue_file_env(qf)->rcpts[0].status, 'R');
	queue_file_free(&qf);
	free(path);
}

static void
test_queue_file_defer_and_torn_append(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	const char *rcpts[] = { "a@x", "b@x" };
	struct queue_file *qf;
	const char *err = NULL;
	char id[QUEUE_ID_SIZE], msg[] = "Subject: t\r\n\r\nbody\r\n";
	char back[64];
	char *path, *longr;
	int fd;

	(void)state;
	write_queue_file(spool, &env, rcpts, 2, msg, strlen(msg), id);
	qf = open_id(spool, QUEUE_INCOMING, id, 1);
	assert_int_equal(queue_file_defer(qf, 1, "451 4.3.0 try\r\nlater %",
	    1000, 1300, &err), 0);
	assert_int_equal(queue_file_defer(qf, 1, "421 4.4.2 timeout", 1300,
	    1900, &err), 0);
	assert_int_equal(queue_file_defer(qf, 2, "x", 1, 2, &err), -EINVAL);
	assert_int_equal(queue_file_mark(qf, 0, QUEUE_RCPT_DELIVERED, &err),
	    0);
	queue_file_free(&qf);

	qf = open_id(spool, QUEUE_INCOMING, id, 1);
	const struct queue_env *e = queue_file_env(qf);
	assert_int_equal(e->rcpts[0].status, 'D');
	assert_int_equal(e->rcpts[0].ndefer, 0);
	assert_int_equal(e->rcpts[1].ndefer, 2);
	assert_int_equal(e->rcpts[1].defer_time, 1300);
	assert_string_equal(e->rcpts[1].defer_reason, "421 4.4.2 timeout");
	assert_int_equal(e->next_retry, 1900);
	assert_int_equal(queue_file_read_msg(qf, back, sizeof(back), 0),
	    (ssize_t)strlen(msg));
	assert_memory_equal(back, msg, strlen(msg));
	queue_file_free(&qf);

	/* A crash mid-append leaves a torn line: ignored when reading. */
	path = queue_path(spool, QUEUE_INCOMING, id);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(__real_write(fd, "defer 1 20", 10), 10);
	close(fd);
	qf = open_id(spool, QUEUE_INCOMING, id, 1);
	assert_int_equal(queue_file_env(qf)->rcpts[1].ndefer, 2);
	/* The next append replaces the torn bytes. */
	longr = malloc(QUEUE_FILE_REASON_MAX * 2 + 1);
	memset(longr, 'r', QUEUE_FILE_REASON_MAX * 2);
	longr[QUEUE_FILE_REASON_MAX * 2] = '\0';
	/* An overlong reason is cut, never refused. */
	assert_int_equal(queue_file_defer(qf, 1, longr, 2000, 2600, &err), 0);
	queue_file_free(&qf);
	qf = open_id(spool, QUEUE_INCOMING, id, 0);
	e = queue_file_env(qf);
	assert_int_equal(e->rcpts[1].ndefer, 3);
	assert_int_equal(strlen(e->rcpts[1].defer_reason),
	    QUEUE_FILE_REASON_MAX);
	assert_int_equal(e->next_retry, 2600);
	queue_file_free(&qf);
	free(longr);
	free(path);
}

static void
test_queue_file_add_rcpt_then_forward(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	struct queue_file *qf;
	const char *err = NULL;
	char id[QUEUE_ID_SIZE];

	(void)state;
	write_queue_file(spool, &env, (const char *[]){ "list@x" }, 1, "m",
	    1, id);
	qf = open_id(spool, QUEUE_INCOMING, id, 1);
	assert_int_equal(queue_file_add_rcpt(qf, "m1@x", "rfc822;list@x",
	    QUEUE_NOTIFY_FAILURE, &err), 0);
	assert_int_equal(queue_file_add_rcpt(qf, "m2@x", NULL, 0, &err), 0);
	assert_int_equal(queue_file_mark(qf, 0, QUEUE_RCPT_FORWARDED, &err),
	    0);
	assert_int_equal(queue_file_mark(qf, 2, QUEUE_RCPT_DELIVERED, &err),
	    0);
	assert_int_equal(queue_file_add_rcpt(qf, "", NULL, 0, &err),
	    -EINVAL);
	queue_file_free(&qf);
	qf = open_id(spool, QUEUE_INCOMING, id, 0);
	const struct queue_env *e = queue_file_env(qf);
	assert_int_equal(e->nrcpt, 3);
	assert_int_equal(e->rcpts[0].status, 'F');
	assert_int_equal(e->rcpts[1].status, 'R');
	assert_string_equal(e->rcpts[1].address, "m1@x");
	assert_string_equal(e->rcpts[1].orcpt, "rfc822;list@x");
	assert_int_equal(e->rcpts[1].notify, QUEUE_NOTIFY_FAILURE);
	assert_int_equal(e->rcpts[2].status, 'D');
	assert_int_equal(queue_file_pending(qf), 1);
	queue_file_free(&qf);
}

/* Build a queue file image from its parts; '\x01' becomes NUL. */
static char *
build_image(const char *first, const char *head, const char *msg,
    const char *tail, size_t *len_r)
{
	char line[QUEUE_FILE_HEADER_LEN + 1];
	struct buf b;

	buf_init(&b, 0);
	queue_file_header(line, QUEUE_FILE_HEADER_LEN + strlen(head),
	    strlen(msg));
	buf_puts(&b, first ? first : line);
	buf_puts(&b, head);
	buf_puts(&b, msg);
	buf_puts(&b, tail);
	for (size_t i = 0; i < b.len; i++)
		if (b.data[i] == '\x01')
			b.data[i] = '\0';
	*len_r = b.len;
	return buf_steal(&b);
}

static int
parse_image(const char *spool, const char *img, size_t len,
    struct queue_file **qf_r, const char **err_r)
{
	char *path;
	int fd, r;

	path = malloc(strlen(spool) + 16);
	sprintf(path, "%s/image", spool);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(__real_write(fd, img, len), (ssize_t)len);
	close(fd);
	r = queue_file_open(path, 0, qf_r, err_r);
	free(path);
	return r;
}

#define GOOD_HEAD "id 0123456789ABCDEFGHJK\narrival 1700000000.000001\n" \
	"sender a@b.test\n"
#define GOOD_MSG "Subject: x\r\n\r\nbody\r\n"
#define GOOD_TAIL "R to=x@y.test\nend 1\n"

static void
test_queue_file_good_image_parses(void **state)
{
	struct queue_file *qf = NULL;
	const char *err = NULL;
	size_t len;
	char *img = build_image(NULL, GOOD_HEAD "\n", GOOD_MSG,
	    GOOD_TAIL "defer 0 5 6 why%20not\nD to=z@y.test\n", &len);

	assert_int_equal(parse_image(*state, img, len, &qf, &err), 0);
	assert_int_equal(queue_file_env(qf)->nrcpt, 2);
	assert_string_equal(queue_file_env(qf)->rcpts[0].defer_reason,
	    "why not");
	assert_int_equal(queue_file_env(qf)->arrival_usec, 1);
	queue_file_free(&qf);
	free(img);
}

static void
test_queue_file_malformed_table(void **state)
{
	static const struct {
		const char *why;
		const char *first, *head, *msg, *tail;
	} cases[] = {
		{ "not a queue file", "pochta-qveue 1 0000000125 "
		    "00000000000000000020\n", NULL, NULL, NULL },
		{ "bad version", "pochta-queue 2 0000000125 "
		    "00000000000000000020\n", NULL, NULL, NULL },
		{ "offset not digits", "pochta-queue 1 00000001x5 "
		    "00000000000000000020\n", NULL, NULL, NULL },
		{ "size not digits", "pochta-queue 1 0000000125 "
		    "0000000000000000002-\n", NULL, NULL, NULL },
		{ "size past the end", "pochta-queue 1 0000000125 "
		    "00000000000000009999\n", NULL, NULL, NULL },
		{ "size overflows", "pochta-queue 1 0000000125 "
		    "99999999999999999999\n", NULL, NULL, NULL },
		{ "offset too small", "pochta-queue 1 0000000010 "
		    "00000000000000000020\n", NULL, NULL, NULL },
		{ "offset wrong", "pochta-queue 1 0000000124 "
		    "00000000000000000020\n", NULL, NULL, NULL },
		{ "no blank line", NULL, GOOD_HEAD "x", NULL, NULL },
		{ "blank line early", NULL, "id 0123456789ABCDEFGHJK\n\n"
		    "sender a@b.test\n\n", NULL, NULL },
		{ "unknown record", NULL, GOOD_HEAD "colour red\n\n", NULL,
		    NULL },
		{ "record without value", NULL, GOOD_HEAD "helo\n\n", NULL,
		    NULL },
		{ "duplicate sender", NULL, GOOD_HEAD "sender c@d\n\n", NULL,
		    NULL },
		{ "NUL in envelope", NULL, GOOD_HEAD "helo a\x01" "b\n\n",
		    NULL, NULL },
		{ "control char in envelope", NULL, GOOD_HEAD "helo a\x02"
		    "b\n\n", NULL, NULL },
		{ "CR in envelope", NULL, GOOD_HEAD "helo a\rb\n\n", NULL,
		    NULL },
		{ "escaped NUL", NULL, GOOD_HEAD "helo a%00b\n\n", NULL,
		    NULL },
		{ "bad escape", NULL, GOOD_HEAD "helo a%G0b\n\n", NULL,
		    NULL },
		{ "short escape", NULL, GOOD_HEAD "helo a%4\n\n", NULL,
		    NULL },
		{ "missing id", NULL, "arrival 1.000000\nsender a@b\n\n",
		    NULL, NULL },
		{ "bad id", NULL, "id 0123456789ABCDEFGHJI\n"
		    "arrival 1.000000\nsender a@b\n\n", NULL, NULL },
		{ "missing sender", NULL, "id 0123456789ABCDEFGHJK\n"
		    "arrival 1.000000\n\n", NULL, NULL },
		{ "bad arrival", NULL, "id 0123456789ABCDEFGHJK\n"
		    "arrival 1.00000x\nsender a@b\n\n", NULL, NULL },
		{ "arrival without usec", NULL, "id 0123456789ABCDEFGHJK\n"
		    "arrival 17\nsender a@b\n\n", NULL, NULL },
		{ "negative arrival", NULL, "id 0123456789ABCDEFGHJK\n"
		    "arrival -1.000000\nsender a@b\n\n", NULL, NULL },
		{ "huge arrival", NULL, "id 0123456789ABCDEFGHJK\n"
		    "arrival 99999999999999999999.000000\nsender a@b\n\n",
		    NULL, NULL },
		{ "bad body", NULL, GOOD_HEAD "body 9BIT\n\n", NULL, NULL },
		{ "bad ret", NULL, GOOD_HEAD "ret ALL\n\n", NULL, NULL },
		{ "bad smtputf8", NULL, GOOD_HEAD "smtputf8 1\n\n", NULL,
		    NULL },
		{ "no end record", NULL, NULL, NULL, "R to=x@y\n" },
		{ "truncated end", NULL, NULL, NULL, "R to=x@y\nend 1" },
		{ "end count wrong", NULL, NULL, NULL, "R to=x@y\nend 2\n" },
		{ "end count junk", NULL, NULL, NULL, "R to=x@y\nend 1x\n" },
		{ "duplicate end", NULL, NULL, NULL, GOOD_TAIL "end 1\n" },
		{ "no recipients", NULL, NULL, NULL, "end 0\n" },
		{ "defer before end", NULL, NULL, NULL,
		    "R to=x@y\ndefer 0 1 2 x\nend 1\n" },
		{ "defer bad index", NULL, NULL, NULL,
		    GOOD_TAIL "defer 1 1 2 x\n" },
		{ "defer bad time", NULL, NULL, NULL,
		    GOOD_TAIL "defer 0 1x 2 x\n" },
		{ "defer missing field", NULL, NULL, NULL,
		    GOOD_TAIL "defer 0 1\n" },
		{ "unknown tail record", NULL, NULL, NULL,
		    GOOD_TAIL "X to=a@b\n" },
		{ "bad status byte", NULL, NULL, NULL, "r to=x@y\nend 1\n" },
		{ "recipient without to", NULL, NULL, NULL,
		    "R orcpt=x\nend 1\n" },
		{ "recipient empty to", NULL, NULL, NULL, "R to=\nend 1\n" },
		{ "duplicate field", NULL, NULL, NULL,
		    "R to=a@b orcpt=x orcpt=y\nend 1\n" },
		{ "unknown field", NULL, NULL, NULL,
		    "R to=a@b color=x\nend 1\n" },
		{ "bad notify", NULL, NULL, NULL,
		    "R to=a@b notify=SOMETIMES\nend 1\n" },
		{ "notify never plus", NULL, NULL, NULL,
		    "R to=a@b notify=NEVER,DELAY\nend 1\n" },
		{ "notify twice", NULL, NULL, NULL,
		    "R to=a@b notify=DELAY,DELAY\nend 1\n" },
		{ "trailing space", NULL, NULL, NULL, "R to=a@b \nend 1\n" },
		{ "NUL in tail", NULL, NULL, NULL, "R to=a\x01@b\nend 1\n" },
		{ "control in appended", NULL, NULL, NULL,
		    GOOD_TAIL "defer 0 1 2 a\x02\n" },
	};
	struct queue_file *qf = NULL;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *head = cases[i].head ? cases[i].head :
		    GOOD_HEAD "\n";
		const char *msg = cases[i].msg ? cases[i].msg : GOOD_MSG;
		const char *tail = cases[i].tail ? cases[i].tail : GOOD_TAIL;
		const char *err = NULL;
		size_t len;
		char *img = build_image(cases[i].first, head, msg, tail, &len);
		int r = parse_image(*state, img, len, &qf, &err);

		if (r != -EBADMSG)
			fail_msg("%s: got %d", cases[i].why, r);
		assert_null(qf);
		assert_non_null(err);
		free(img);
	}
}

static void
test_queue_file_overlong_and_empty(void **state)
{
	struct queue_file *qf = NULL;
	const char *err = NULL;
	struct buf head;
	size_t len;
	char *img;

	buf_init(&head, 0);
	buf_puts(&head, GOOD_HEAD "helo ");
	for (int i = 0; i < QUEUE_FILE_LINE_MAX; i++)
		buf_puts(&head, "h");
	buf_puts(&head, "\n\n");
	img = build_image(NULL, head.data, GOOD_MSG, GOOD_TAIL, &len);
	assert_int_equal(parse_image(*state, img, len, &qf, &err), -EBADMSG);
	assert_string_equal(err, "envelope line too long");
	free(img);
	buf_release(&head);
	assert_int_equal(parse_image(*state, "", 0, &qf, &err), -EBADMSG);
	/* A directory is not a queue file. */
	assert_int_equal(queue_file_open(*state, 0, &qf, &err), -EBADMSG);
	assert_true(queue_file_open("/nonexistent/x", 0, &qf, &err) ==
	    -ENOENT);
	assert_null(qf);
}

/* Every prefix of a valid file: a clean error or a valid parse. */
static void
test_queue_file_every_prefix(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	const char *rcpts[] = { "a@x", "\"b c\"@x" };
	struct queue_file *qf = NULL;
	const char *err = NULL;
	char id[QUEUE_ID_SIZE], *path, *img;
	struct stat st;
	off_t end_off = 0;
	int fd;

	write_queue_file(spool, &env, rcpts, 2, "M\r\nbody\r\n", 9, id);
	qf = open_id(spool, QUEUE_INCOMING, id, 1);
	assert_int_equal(queue_file_defer(qf, 0, "4.0.0 later", 5, 10, &err),
	    0);
	queue_file_free(&qf);
	path = queue_path(spool, QUEUE_INCOMING, id);
	assert_int_equal(stat(path, &st), 0);
	img = malloc((size_t)st.st_size);
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, img, (size_t)st.st_size), st.st_size);
	close(fd);
	/* Where the end record finishes: shorter prefixes must fail. */
	for (off_t i = st.st_size - 6; i > 0; i--)
		if (memcmp(img + i, "end 2\n", 6) == 0) {
			end_off = i + 6;
			break;
		}
	assert_true(end_off > 0);
	for (off_t n = 0; n <= st.st_size; n++) {
		int r = parse_image(spool, img, (size_t)n, &qf, &err);

		if (n < end_off) {
			assert_int_equal(r, -EBADMSG);
			assert_non_null(err);
			assert_null(qf);
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(queue_file_env(qf)->nrcpt, 2);
			assert_int_equal(queue_file_env(qf)->rcpts[0].ndefer,
			    n == st.st_size ? 1 : 0);
			queue_file_free(&qf);
		}
	}
	/* Single flipped bytes anywhere: error or parse, never a crash. */
	for (off_t n = 0; n < st.st_size; n++) {
		char save = img[n];

		for (int v = 0; v < 256; v += 37) {
			img[n] = (char)v;
			if (parse_image(spool, img, (size_t)st.st_size, &qf,
			    &err) == 0)
				queue_file_free(&qf);
			else
				assert_non_null(err);
		}
		img[n] = save;
	}
	free(img);
	free(path);
}

static void
test_queue_file_fdopen_ownership(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	struct queue_file *qf = NULL;
	const char *err = NULL;
	char id[QUEUE_ID_SIZE], *path;
	char buf[8];
	int fd;

	write_queue_file(spool, &env, (const char *[]){ "r@x" }, 1, "abc", 3,
	    id);
	path = queue_path(spool, QUEUE_INCOMING, id);
	fd = open(path, O_RDONLY);
	assert_int_equal(queue_file_fdopen(fd, 0, &qf, &err), 0);
	assert_int_equal(queue_file_fd(qf), fd);
	assert_int_equal(queue_file_read_msg(qf, buf, sizeof(buf), 1), 2);
	assert_memory_equal(buf, "bc", 2);
	queue_file_free(&qf);
	assert_int_equal(fcntl(fd, F_GETFD), -1);	/* closed by free */
	/* On failure the caller keeps the descriptor. */
	fd = open("/dev/null", O_RDONLY);
	assert_true(queue_file_fdopen(fd, 0, &qf, &err) < 0);
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	free(path);
}

static void
test_queue_writer_abort_leaves_nothing(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	struct queue_writer *w = NULL;
	const char *err = NULL;

	assert_int_equal(queue_writer_create(spool, &env, &w, &err), 0);
	assert_int_equal(queue_writer_write(w, "data", 4), 0);
	assert_int_equal(count_files(spool, QUEUE_TMP), 1);
	queue_writer_free(&w);
	assert_null(w);
	assert_int_equal(count_files(spool, QUEUE_TMP), 0);
	/* No recipients: refused, nothing left. */
	assert_int_equal(queue_writer_create(spool, &env, &w, &err), 0);
	assert_int_equal(queue_writer_commit(w, &err), -EINVAL);
	queue_writer_free(&w);
	assert_int_equal(count_files(spool, QUEUE_TMP), 0);
	assert_int_equal(count_files(spool, QUEUE_INCOMING), 0);
	/* No sender, an overlong value: refused before anything exists. */
	env.sender = NULL;
	assert_int_equal(queue_writer_create(spool, &env, &w, &err), -EINVAL);
	env = sample_env();
	char *big = malloc(QUEUE_FILE_LINE_MAX + 1);
	memset(big, 'x', QUEUE_FILE_LINE_MAX);
	big[QUEUE_FILE_LINE_MAX] = '\0';
	env.helo = big;
	assert_int_equal(queue_writer_create(spool, &env, &w, &err), -EINVAL);
	assert_null(w);
	env = sample_env();
	assert_int_equal(queue_writer_create(spool, &env, &w, &err), 0);
	assert_int_equal(queue_writer_add_rcpt(w, big, NULL, 0), -EINVAL);
	queue_writer_free(&w);
	free(big);
	assert_int_equal(count_files(spool, QUEUE_TMP), 0);
	/* A missing spool is an error, not a crash. */
	assert_true(queue_writer_create("/nonexistent", &env, &w, &err) < 0);
}

/* One disk failure at the given point of a large message's life. */
static void
disk_fails(const char *spool, int *counter, int after, int *flag, int err)
{
	struct queue_env env = sample_env();
	struct queue_writer *w = NULL;
	const char *errstr = NULL;
	char *chunk = calloc(1, 10000);
	int r = 0;

	fail_errno = err;
	assert_int_equal(queue_writer_create(spool, &env, &w, &errstr), 0);
	if (counter != NULL)
		*counter = after;
	if (flag != NULL)
		*flag = 1;
	for (int i = 0; i < 100 && r == 0; i++)
		r = queue_writer_write(w, chunk, 10000);
	if (r == 0)
		assert_int_equal(queue_writer_add_rcpt(w, "r@x", NULL, 0), 0);
	if (r == 0)
		r = queue_writer_commit(w, &errstr);
	assert_int_equal(r, -err);
	/* Sticky: later calls fail too. */
	assert_int_equal(queue_writer_write(w, "x", 1), -err);
	assert_true(queue_writer_commit(w, &errstr) < 0);
	queue_writer_free(&w);
	faults_off();
	assert_int_equal(count_files(spool, QUEUE_TMP), 0);
	assert_int_equal(count_files(spool, QUEUE_INCOMING), 0);
	free(chunk);
}

static void
test_queue_writer_disk_full(void **state)
{
	const char *spool = *state;

	/* write(2) fails early, late, and while writing the recipients. */
	disk_fails(spool, &write_fail_after, 0, NULL, ENOSPC);
	disk_fails(spool, &write_fail_after, 10, NULL, ENOSPC);
	disk_fails(spool, &write_fail_after, 16, NULL, EDQUOT);
	disk_fails(spool, &write_fail_after, 17, NULL, ENOSPC);
	disk_fails(spool, &write_fail_after, 18, NULL, ENOSPC);
	/* fsync of the file, then of the incoming directory. */
	disk_fails(spool, &fsync_fail_after, 0, NULL, EIO);
	disk_fails(spool, &fsync_fail_after, 1, NULL, ENOSPC);
	/* rename into incoming/. */
	disk_fails(spool, NULL, 0, &rename_fail, EIO);
}

static void
test_queue_space_ok(void **state)
{
	(void)state;
	memset(&statvfs_value, 0, sizeof(statvfs_value));
	statvfs_value.f_frsize = 4096;
	statvfs_value.f_bavail = 1000;	/* 4096000 bytes */
	statvfs_value.f_files = 100;
	statvfs_value.f_favail = 50;
	statvfs_fake = 1;
	assert_int_equal(queue_space_ok("/x", 1000000, 3000000), 1);
	assert_int_equal(queue_space_ok("/x", 1000000, 3100000), 0);
	assert_int_equal(queue_space_ok("/x", UINT64_MAX, 1), 0);
	statvfs_value.f_favail = 3;
	assert_int_equal(queue_space_ok("/x", 1, 1), 0);
	statvfs_value.f_files = 0;	/* no inode accounting at all */
	assert_int_equal(queue_space_ok("/x", 1, 1), 1);
	statvfs_fake = -EACCES;
	assert_int_equal(queue_space_ok("/x", 1, 1), -EACCES);
	statvfs_fake = 0;
	assert_int_equal(queue_space_ok(*state, 0, 0), 1);
}

static void
test_queue_scan_move_cleanup(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	char ids[5][QUEUE_ID_SIZE], path[4096];
	char **list = NULL;
	size_t n = 0;
	struct timeval old[2] = { { 1000, 0 }, { 1000, 0 } };
	int fd;

	for (int i = 4; i >= 0; i--)
		write_queue_file(spool, &env, (const char *[]){ "r@x" }, 1,
		    "m", 1, ids[i]);
	/* Junk names are not IDs: ignored. */
	snprintf(path, sizeof(path), "%s/incoming/junk", spool);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(queue_scan(spool, QUEUE_INCOMING, &list, &n), 0);
	assert_int_equal(n, 5);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(list[i - 1], list[i]) < 0);
	/* Written last-first, so ids[4] arrived first. */
	assert_string_equal(list[0], ids[4]);
	assert_null(list[5]);
	queue_ids_free(&list);
	assert_null(list);
	assert_int_equal(queue_scan(spool, "../x", &list, &n), -EINVAL);

	assert_int_equal(queue_move(spool, ids[0], QUEUE_INCOMING,
	    QUEUE_ACTIVE), 0);
	assert_int_equal(queue_move(spool, ids[0], QUEUE_INCOMING,
	    QUEUE_ACTIVE), -ENOENT);
	assert_int_equal(queue_move(spool, ids[1], QUEUE_INCOMING, "pid"),
	    -EINVAL);
	assert_int_equal(count_files(spool, QUEUE_ACTIVE), 1);
	assert_int_equal(count_files(spool, QUEUE_INCOMING), 5);
	struct queue_file *qf = open_id(spool, QUEUE_ACTIVE, ids[0], 0);
	assert_string_equal(queue_file_env(qf)->id, ids[0]);
	queue_file_free(&qf);
	assert_int_equal(queue_remove(spool, QUEUE_ACTIVE, ids[0]), 0);
	assert_int_equal(queue_remove(spool, QUEUE_ACTIVE, ids[0]), -ENOENT);
	assert_int_equal(queue_remove(spool, QUEUE_ACTIVE, "../../etc/x"),
	    -EINVAL);
	assert_int_equal(count_files(spool, QUEUE_ACTIVE), 0);

	/* tmp/: an old leftover goes, a fresh file being written stays. */
	snprintf(path, sizeof(path), "%s/tmp/old", spool);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(utimes(path, old), 0);
	snprintf(path, sizeof(path), "%s/tmp/new", spool);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	size_t removed = 0;
	assert_int_equal(queue_tmp_cleanup(spool, 86400, time(NULL),
	    &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/tmp/old", spool);
	assert_int_equal(access(path, F_OK), -1);
}

/* A FIFO, a directory or a symlink in a queue directory is refused at
 * once: a queue reader must never hang in open(2) or follow a link. */
static void
test_queue_file_not_regular_refused(void **state)
{
	const char *dir = *state, *err = NULL;
	struct queue_file *qf = NULL;
	char fifo[256], sub[256], link[256];

	snprintf(fifo, sizeof(fifo), "%s/incoming/fifo", dir);
	snprintf(sub, sizeof(sub), "%s/incoming/sub", dir);
	snprintf(link, sizeof(link), "%s/incoming/link", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(symlink("/etc/passwd", link), 0);
	assert_int_equal(queue_file_open(fifo, 0, &qf, &err), -EBADMSG);
	assert_null(qf);
	assert_int_equal(queue_file_open(fifo, 1, &qf, &err), -EBADMSG);
	assert_int_not_equal(queue_file_open(sub, 0, &qf, &err), 0);
	assert_int_equal(queue_file_open(link, 0, &qf, &err), -ELOOP);
	assert_null(qf);
}

/*
 * queue_rename moves without syncing (qmgr syncs a batch once): no fsync
 * happens, and its errors are queue_move's.
 */
static void
test_queue_rename_no_sync(void **state)
{
	const char *spool = *state;
	struct queue_env env = sample_env();
	char id[QUEUE_ID_SIZE];

	write_queue_file(spool, &env, (const char *[]){ "r@x" }, 1, "m", 1,
	    id);
	/* The first fsync from here on would fail the test's rename. */
	fsync_fail_after = 0;
	fail_errno = EIO;
	assert_int_equal(queue_rename(spool, id, QUEUE_INCOMING,
	    QUEUE_ACTIVE), 0);
	assert_int_equal(fsync_fail_after, 0);
	fsync_fail_after = -1;
	assert_int_equal(count_files(spool, QUEUE_ACTIVE), 1);
	assert_int_equal(count_files(spool, QUEUE_INCOMING), 0);
	assert_int_equal(queue_rename(spool, id, QUEUE_INCOMING,
	    QUEUE_ACTIVE), -ENOENT);
	assert_int_equal(queue_rename(spool, id, QUEUE_ACTIVE, "pid"),
	    -EINVAL);
	assert_int_equal(queue_rename(spool, "../x", QUEUE_ACTIVE,
	    QUEUE_HOLD), -EINVAL);
	rename_fail = 1;
	assert_int_equal(queue_rename(spool, id, QUEUE_ACTIVE, QUEUE_HOLD),
	    -EIO);
	assert_int_equal(count_files(spool, QUEUE_ACTIVE), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_queue_id_format_and_order),
		cmocka_unit_test(test_queue_id_clock_step_back),
		cmocka_unit_test(test_queue_id_valid_rejects),
		cmocka_unit_test(test_queue_id_unique_across_fork),
#define T(f) cmocka_unit_test_setup_teardown(f, setup_spool, teardown_spool)
		T(test_queue_file_round_trip_every_field),
		T(test_queue_file_message_byte_exact),
		T(test_queue_file_mark_survives_reread),
		T(test_queue_file_defer_and_torn_append),
		T(test_queue_file_add_rcpt_then_forward),
		T(test_queue_file_good_image_parses),
		T(test_queue_file_malformed_table),
		T(test_queue_file_overlong_and_empty),
		T(test_queue_file_every_prefix),
		T(test_queue_file_fdopen_ownership),
		T(test_queue_file_not_regular_refused),
		T(test_queue_writer_abort_leaves_nothing),
		T(test_queue_writer_disk_full),
		T(test_queue_writer_threads),
		T(test_queue_space_ok),
		T(test_queue_scan_move_cleanup),
		T(test_queue_rename_no_sync),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
