/*
 * pop3d_maildrop_test.c - the maildrop at login: the snapshot with octet
 * counts and UIDLs from the mail store, the exclusive lock (a second
 * session gets -EBUSY until the first closes) and the login delay measured
 * from the lock file.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>

#include "pop3d.h"

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	char tmpl[] = "/tmp/pop3d_maildrop_test.XXXXXX";
	char *dir = mkdtemp(tmpl);

	if (dir == NULL)
		return -1;
	*state = strdup(dir);
	return 0;
}

static int
teardown(void **state)
{
	nftw(*state, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(*state);
	return 0;
}

static void
put(const char *mbox, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/new", mbox);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/new/%s", mbox, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

static void
session_init(struct pop3d_session *s, const char *mbox)
{
	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	s->retr_fd = -1;
	s->mailbox = strdup(mbox);
}

static void
session_done(struct pop3d_session *s)
{
	pop3d_maildrop_close(s);
	free(s->mailbox);
}

static void
test_pop3d_maildrop_snapshot(void **state)
{
	struct pop3d_session s;
	char mbox[512], err[256] = "";

	snprintf(mbox, sizeof(mbox), "%s/box", (char *)*state);
	mkdir(mbox, 0700);
	put(mbox, "1000.A.host", "Subject: a\n\nbody\n");
	put(mbox, "1001.B.host", "Subject: b\r\n\r\nx\r\n");
	session_init(&s, mbox);
	assert_int_equal(pop3d_maildrop_open(&s, err, sizeof(err)), 0);
	assert_int_equal(s.nmsgs, 2);
	/* Octets as sent: LF counted as CRLF. */
	assert_int_equal(s.msgs[0].vsize, strlen("Subject: a\n\nbody\n") + 3);
	assert_int_equal(s.msgs[1].vsize, strlen("Subject: b\r\n\r\nx\r\n"));
	assert_string_equal(s.msgs[0].uidl, "1000.A.host");
	assert_string_equal(s.msgs[1].uidl, "1001.B.host");
	assert_true(s.lock_fd >= 0);
	session_done(&s);
	assert_int_equal(s.lock_fd, -1);
	assert_null(s.msgs);
}

static void
test_pop3d_maildrop_lock_exclusive(void **state)
{
	struct pop3d_session a, b;
	char mbox[512], err[256] = "", path[600], pid[32] = "";
	FILE *f;

	snprintf(mbox, sizeof(mbox), "%s/box", (char *)*state);
	session_init(&a, mbox);
	session_init(&b, mbox);
	assert_int_equal(pop3d_maildrop_open(&a, err, sizeof(err)), 0);
	assert_int_equal(pop3d_maildrop_open(&b, err, sizeof(err)), -EBUSY);
	assert_int_equal(b.lock_fd, -1);
	assert_null(b.folder);
	/* The lock file names its owner. */
	snprintf(path, sizeof(path), "%s/%s", mbox, POP3D_LOCK_NAME);
	assert_non_null(f = fopen(path, "r"));
	assert_non_null(fgets(pid, sizeof(pid), f));
	fclose(f);
	assert_int_equal(atol(pid), (long)getpid());
	pop3d_maildrop_close(&a);
	assert_int_equal(pop3d_maildrop_open(&b, err, sizeof(err)), 0);
	session_done(&b);
	session_done(&a);
}

static void
test_pop3d_maildrop_login_delay(void **state)
{
	struct pop3d_session a;
	char mbox[512], err[256] = "";

	snprintf(mbox, sizeof(mbox), "%s/box", (char *)*state);
	session_init(&a, mbox);
	a.login_delay = 3600;
	/* The first login ever is not delayed. */
	assert_int_equal(pop3d_maildrop_open(&a, err, sizeof(err)), 0);
	pop3d_maildrop_close(&a);
	assert_int_equal(pop3d_maildrop_open(&a, err, sizeof(err)), -EAGAIN);
	assert_int_equal(a.lock_fd, -1);
	a.login_delay = 0;
	assert_int_equal(pop3d_maildrop_open(&a, err, sizeof(err)), 0);
	session_done(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pop3d_maildrop_snapshot,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_pop3d_maildrop_lock_exclusive, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_pop3d_maildrop_login_delay, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
