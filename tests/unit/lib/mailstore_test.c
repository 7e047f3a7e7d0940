/*
 * mailstore_test.c - unit tests for lib/mailstore: delivery, UIDs under
 * concurrent delivery, index rebuild, synchronisation with files other
 * Maildir tools leave, flags and expunges one by one and in batches,
 * folders, quota, and disk errors (write(2), fsync(2), open(2),
 * renameat2(2) and LMDB's commit are wrapped, see mailstore_test.wrap).
 */
#include <sys/stat.h>
#include <sys/wait.h>

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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "buf.h"
#include "mailstore.h"

/* Fault injection: the next write/fsync fails with this errno (0: none). */
static int fail_write_errno;
static int fail_fsync_errno;
static int fail_open_errno;
/* The n-th renameat2 or index commit from now fails with EIO (0: none). */
static int fail_rename_at;
static int fail_commit_at;
/* Index commits done, failed ones included. */
static unsigned long commits;

ssize_t __real_write(int fd, const void *buf, size_t n);
int __real_fsync(int fd);
int __real_open(const char *path, int flags, ...);
int __real_renameat2(
    int fromfd, const char *from, int tofd, const char *to, unsigned int flags);
int __real_mdb_txn_commit(MDB_txn *txn);

int
__wrap_renameat2(
    int fromfd, const char *from, int tofd, const char *to, unsigned int flags)
{
	if (fail_rename_at > 0 && --fail_rename_at == 0) {
		errno = EIO;
		return -1;
	}
	return __real_renameat2(fromfd, from, tofd, to, flags);
}

/* A commit that fails frees the transaction, as LMDB's own does. */
int
__wrap_mdb_txn_commit(MDB_txn *txn)
{
	commits++;
	if (fail_commit_at > 0 && --fail_commit_at == 0) {
		mdb_txn_abort(txn);
		return EIO;
	}
	return __real_mdb_txn_commit(txn);
}

int
__wrap_open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode = 0;

	if (fail_open_errno != 0) {
		errno = fail_open_errno;
		return -1;
	}
	if (flags & O_CREAT) {
		va_start(ap, flags);
		mode = va_arg(ap, int);
		va_end(ap);
	}
	return __real_open(path, flags, mode);
}

ssize_t
__wrap_write(int fd, const void *buf, size_t n)
{
	if (fail_write_errno != 0) {
		errno = fail_write_errno;
		return -1;
	}
	return __real_write(fd, buf, n);
}

int
__wrap_fsync(int fd)
{
	if (fail_fsync_errno != 0) {
		errno = fail_fsync_errno;
		return -1;
	}
	return __real_fsync(fd);
}

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
	char tmpl[] = "/tmp/mailstore_test.XXXXXX";
	char *dir = mkdtemp(tmpl);

	if (dir == NULL)
		return -1;
	/* The mailbox itself is created by mailstore_open. */
	if (asprintf((char **)state, "%s/user", dir) == -1)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char *mbox = *state, *top = strdup(mbox);

	*strrchr(top, '/') = '\0';
	nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(top);
	free(mbox);
	return 0;
}

static struct mailstore *
open_store(const char *path)
{
	struct mailstore *s = NULL;
	const char *err = NULL;
	int rc = mailstore_open(path, &s, &err);

	if (rc != 0)
		fail_msg("mailstore_open: %d %s", rc, err);
	return s;
}

static uint32_t
deliver_str(struct mailstore *s, const char *folder, const char *text)
{
	struct mailstore_delivery *d;
	const char *err = NULL;
	uint32_t uid = 0;

	assert_int_equal(
	    mailstore_deliver_begin(s, folder, strlen(text), &d, &err), 0);
	assert_int_equal(
	    mailstore_deliver_write(d, text, strlen(text), &err), 0);
	assert_int_equal(mailstore_deliver_commit(&d, 0, &uid, &err), 0);
	assert_null(d);
	assert_true(uid > 0);
	return uid;
}

static struct mailstore_folder *
open_folder(struct mailstore *s, const char *name, unsigned int flags)
{
	struct mailstore_folder *f = NULL;
	const char *err = NULL;
	int rc = mailstore_folder_open(s, name, flags, &f, &err);

	if (rc != 0)
		fail_msg("mailstore_folder_open %s: %d %s", name, rc, err);
	return f;
}

static char *
read_msg(struct mailstore_folder *f, uint32_t uid)
{
	char *data = malloc(65536);
	const char *err;
	ssize_t n, off = 0;
	int fd;

	assert_int_equal(mailstore_msg_open(f, uid, &fd, &err), 0);
	while ((n = read(fd, data + off, 65535 - off)) > 0)
		off += n;
	close(fd);
	data[off] = '\0';
	return data;
}

/* Regular files in <mbox>[/.folder]/<sub>. */
static int
count_files(const char *mbox, const char *sub)
{
	struct dirent *de;
	char *path;
	int n = 0;
	DIR *d;

	assert_true(asprintf(&path, "%s/%s", mbox, sub) > 0);
	d = opendir(path);
	free(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Entries of the mailbox directory beginning with ".": folders and
 * folders being deleted. */
static int
count_dot_dirs(const char *mbox)
{
	struct dirent *de;
	int n = 0;
	DIR *d = opendir(mbox);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] == '.' && strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
write_file(const char *mbox, const char *rel, const char *text)
{
	char *path;
	FILE *fp;

	assert_true(asprintf(&path, "%s/%s", mbox, rel) > 0);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	free(path);
}

/* n messages written straight into cur/ by "another program", without
 * flags, in delivery-time order; they are indexed by the next open. */
static void
fill_cur(const char *mbox, size_t n)
{
	char name[64];
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "cur/%zu.M1P1Q%zu.host:2,",
		    (size_t)1700000000 + i, i);
		write_file(mbox, name, "Subject: b\n\nbody\n");
	}
}

/* Files in cur/ whose flag letters include letter. */
static size_t
count_flagged(const char *mbox, char letter)
{
	struct dirent *de;
	const char *info;
	char *path;
	size_t n = 0;
	DIR *d;

	assert_true(asprintf(&path, "%s/cur", mbox) > 0);
	d = opendir(path);
	free(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if ((info = strstr(de->d_name, ":2,")) != NULL &&
		    strchr(info + 3, letter) != NULL)
			n++;
	closedir(d);
	return n;
}

static void
test_mailstore_deliver_read_back(void **state)
{
	const char *text = "From: a@example.test\nSubject: x\r\n\nbody\n";
	const struct mailstore_msg *m;
	struct mailstore_folder *f;
	struct mailstore *s = open_store(*state);
	char *back;
	uint32_t uid;

	uid = deliver_str(s, "INBOX", text);
	assert_int_equal(count_files(*state, "new"), 1);
	assert_int_equal(count_files(*state, "tmp"), 0);
	f = open_folder(s, "inbox", 0);
	assert_int_equal(mailstore_folder_count(f), 1);
	m = mailstore_folder_msg(f, 0);
	assert_int_equal(m->uid, uid);
	assert_int_equal(m->size, strlen(text));
	/* Three bare LFs become CRLF for RFC822.SIZE. */
	assert_int_equal(m->vsize, strlen(text) + 3);
	assert_true(m->in_new);
	assert_non_null(strstr(m->path, "/new/"));
	assert_non_null(strstr(m->base, ",S=39,W=42"));
	assert_string_equal(mailstore_uidl(m), m->base);
	back = read_msg(f, uid);
	assert_string_equal(back, text);
	free(back);
	assert_null(mailstore_folder_msg(f, 1));
	mailstore_folder_free(&f);
	assert_null(f);
	mailstore_free(&s);
	assert_null(s);
}

static void
test_mailstore_uids_increase(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	const char *err;
	uint32_t uid, last = 0;
	int i, p[2];

	for (i = 0; i < 5; i++) {
		assert_int_equal(pipe(p), 0);
		assert_int_equal(write(p[1], "Subject: n\n\nx\n", 14), 14);
		close(p[1]);
		assert_int_equal(
		    mailstore_deliver(s, "INBOX", p[0], 0, 0, &uid, &err), 0);
		close(p[0]);
		assert_true(uid > last);
		last = uid;
	}
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), 5);
	assert_int_equal(mailstore_folder_uidnext(f), last + 1);
	assert_true(mailstore_folder_uidvalidity(f) > 0);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

#define NPROC 8
#define NMSG 50

static void
test_mailstore_concurrent_delivery(void **state)
{
	struct mailstore_folder *f;
	struct mailstore *s;
	char seen[NPROC][NMSG], text[64], *back;
	pid_t pids[NPROC];
	size_t i;
	int p, n, status, a, b;

	for (p = 0; p < NPROC; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			struct mailstore *cs = NULL;
			const char *err;
			uint32_t uid;

			if (mailstore_open(*state, &cs, &err) != 0)
				_exit(2);
			for (n = 0; n < NMSG; n++) {
				snprintf(text, sizeof(text),
				    "Subject: %d %d\n\nbody\n", p, n);
				struct mailstore_delivery *d;

				if (mailstore_deliver_begin(
					cs, "INBOX", 0, &d, &err) != 0 ||
				    mailstore_deliver_write(
					d, text, strlen(text), &err) != 0 ||
				    mailstore_deliver_commit(
					&d, 0, &uid, &err) != 0)
					_exit(3);
			}
			mailstore_free(&cs);
			_exit(0);
		}
	}
	for (p = 0; p < NPROC; p++) {
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(count_files(*state, "new"), NPROC * NMSG);
	memset(seen, 0, sizeof(seen));
	s = open_store(*state);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), NPROC * NMSG);
	assert_int_equal(mailstore_folder_uidnext(f), NPROC * NMSG + 1);
	for (i = 0; i < NPROC * NMSG; i++) {
		const struct mailstore_msg *m = mailstore_folder_msg(f, i);

		/* UIDs 1..400, each once: none lost, none doubled. */
		assert_int_equal(m->uid, i + 1);
		back = read_msg(f, m->uid);
		assert_int_equal(sscanf(back, "Subject: %d %d", &a, &b), 2);
		assert_true(a >= 0 && a < NPROC && b >= 0 && b < NMSG);
		assert_int_equal(seen[a][b], 0);
		seen[a][b] = 1;
		free(back);
	}
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_rebuild_after_index_loss(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	uint32_t uidv, uidv2;
	char *path, *back;
	struct stat st;

	deliver_str(s, "INBOX", "Subject: 1\n\none\n");
	deliver_str(s, "INBOX", "Subject: 2\n\ntwo\n");
	deliver_str(s, "Work", "Subject: 3\n\nthree\n");
	f = open_folder(s, "INBOX", MAILSTORE_SYNC_NEW_TO_CUR);
	uidv = mailstore_folder_uidvalidity(f);
	assert_int_equal(
	    mailstore_msg_set_flags(f, 2, MAILSTORE_F_SEEN, NULL, NULL), 0);
	mailstore_folder_free(&f);
	mailstore_free(&s);

	assert_true(
	    asprintf(&path, "%s/pochta-index.lmdb", (char *)*state) > 0);
	assert_int_equal(unlink(path), 0);
	s = open_store(*state);
	f = open_folder(s, "INBOX", 0);
	uidv2 = mailstore_folder_uidvalidity(f);
	assert_true(uidv2 > uidv);
	assert_int_equal(mailstore_folder_count(f), 2);
	/* Flags live in the file names, so they survive. */
	assert_int_equal(mailstore_folder_msg(f, 1)->flags, MAILSTORE_F_SEEN);
	back = read_msg(f, mailstore_folder_msg(f, 1)->uid);
	assert_string_equal(back, "Subject: 2\n\ntwo\n");
	free(back);
	mailstore_folder_free(&f);
	f = open_folder(s, "Work", 0);
	assert_int_equal(mailstore_folder_count(f), 1);
	mailstore_folder_free(&f);
	mailstore_free(&s);

	/* Garbage instead of an index: set aside, rebuilt again. */
	write_file(*state, "pochta-index.lmdb",
	    "this is not an LMDB file, not at all, no no no no no no no no no"
	    "no no no no no no no no no no no no no no no no no no no no no "
	    "no no no no no no no no no no no no no no no no no no no no no");
	s = open_store(*state);
	f = open_folder(s, "INBOX", 0);
	assert_true(mailstore_folder_uidvalidity(f) > uidv2);
	assert_int_equal(mailstore_folder_count(f), 2);
	mailstore_folder_free(&f);
	mailstore_free(&s);
	free(path);
	assert_true(asprintf(&path, "%s/pochta-index.lmdb.corrupt",
			(char *)*state) > 0);
	assert_int_equal(stat(path, &st), 0);
	free(path);
}

static void
test_mailstore_foreign_files_get_uids(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	const struct mailstore_msg *m;
	const char *err;
	uint32_t uid;

	uid = deliver_str(s, "INBOX", "Subject: ours\n\n");
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), 1);
	write_file(*state, "new/1700000002.foreign.host", "Subject: b\n\nb\n");
	write_file(
	    *state, "cur/1700000001.foreign.host:2,RS", "Subject: a\n\na\n");
	assert_int_equal(mailstore_folder_sync(f, 0, &err), 0);
	assert_int_equal(mailstore_folder_count(f), 3);
	/* New UIDs in delivery-time order, after ours. */
	m = mailstore_folder_msg(f, 1);
	assert_int_equal(m->uid, uid + 1);
	assert_string_equal(m->base, "1700000001.foreign.host");
	assert_int_equal(m->flags, MAILSTORE_F_REPLIED | MAILSTORE_F_SEEN);
	assert_int_equal(m->size, 14);
	assert_int_equal(m->vsize, 17);
	m = mailstore_folder_msg(f, 2);
	assert_int_equal(m->uid, uid + 2);
	assert_true(m->in_new);
	/* Moving new/ to cur/ happens only when asked, and keeps UIDs. */
	assert_int_equal(count_files(*state, "new"), 2);
	assert_false(mailstore_folder_msg(f, 0)->recent);
	assert_int_equal(
	    mailstore_folder_sync(f, MAILSTORE_SYNC_NEW_TO_CUR, &err), 0);
	/* This handle took them out of new/: \Recent here only. */
	assert_true(mailstore_folder_msg(f, 0)->recent);
	assert_false(mailstore_folder_msg(f, 1)->recent);
	assert_true(mailstore_folder_msg(f, 2)->recent);
	assert_int_equal(count_files(*state, "new"), 0);
	assert_int_equal(count_files(*state, "cur"), 3);
	assert_int_equal(mailstore_folder_msg(f, 2)->uid, uid + 2);
	assert_false(mailstore_folder_msg(f, 2)->in_new);
	assert_non_null(strstr(mailstore_folder_msg(f, 2)->path,
	    "/cur/1700000002.foreign.host:2,"));
	mailstore_folder_free(&f);
	f = open_folder(s, "INBOX", MAILSTORE_SYNC_NEW_TO_CUR);
	assert_false(mailstore_folder_msg(f, 0)->recent);
	assert_false(mailstore_folder_msg(f, 2)->recent);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_renamed_file_keeps_uid(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	const struct mailstore_msg *m;
	char *from, *to;
	const char *err;
	uint64_t modseq;
	uint32_t uid;

	uid = deliver_str(s, "INBOX", "Subject: r\n\n");
	f = open_folder(s, "INBOX", MAILSTORE_SYNC_NEW_TO_CUR);
	m = mailstore_folder_find(f, uid);
	assert_non_null(m);
	modseq = m->modseq;
	/* What mutt does when the user flags a message. */
	from = strdup(m->path);
	assert_true(
	    asprintf(&to, "%s/cur/%s:2,FS", (char *)*state, m->base) > 0);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(mailstore_folder_sync(f, 0, &err), 0);
	assert_int_equal(mailstore_folder_count(f), 1);
	m = mailstore_folder_find(f, uid);
	assert_non_null(m);
	assert_int_equal(m->flags, MAILSTORE_F_FLAGGED | MAILSTORE_F_SEEN);
	assert_true(m->modseq > modseq);
	assert_string_equal(m->path, to);
	free(from);
	free(to);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_removed_file_expunged(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	uint64_t bytes, msgs, hms;
	const char *err;
	uint32_t u1, u2;

	u1 = deliver_str(s, "INBOX", "Subject: 1\n\n");
	u2 = deliver_str(s, "INBOX", "Subject: 22\n\n");
	f = open_folder(s, "INBOX", 0);
	hms = mailstore_folder_highestmodseq(f);
	assert_int_equal(mailstore_quota_usage(s, &bytes, &msgs, &err), 0);
	assert_int_equal(msgs, 2);
	assert_int_equal(bytes, 12 + 13);
	assert_int_equal(unlink(mailstore_folder_find(f, u1)->path), 0);
	assert_int_equal(mailstore_folder_sync(f, 0, &err), 0);
	assert_int_equal(mailstore_folder_count(f), 1);
	assert_null(mailstore_folder_find(f, u1));
	assert_non_null(mailstore_folder_find(f, u2));
	assert_true(mailstore_folder_highestmodseq(f) > hms);
	assert_int_equal(mailstore_quota_usage(s, &bytes, &msgs, &err), 0);
	assert_int_equal(msgs, 1);
	assert_int_equal(bytes, 13);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_weird_files_ignored(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	char *path, *target;
	const char *err;

	f = open_folder(s, "INBOX", 0);
	write_file(*state, "new/.hidden", "Subject: x\n\n");
	write_file(*state, "new/with space", "Subject: x\n\n");
	write_file(*state, "new/tab\there", "Subject: x\n\n");
	write_file(*state, "cur/1700000000.empty.host:2,S", "");
	write_file(*state, "cur/:2,S", "Subject: x\n\n");
	/* A message in cur/ without ":2," is still a message. */
	write_file(*state, "cur/1700000000.noinfo.host", "Subject: y\n\n");
	/* Impossible W= values are not believed. */
	write_file(*state, "cur/1700000001.w1.host,W=99999999999999999999:2,",
	    "a\nb\n");
	write_file(*state, "cur/1700000001.w2.host,W=1:2,", "a\nb\n");
	/* The same base name in new/ and cur/: indexed once. */
	write_file(*state, "new/1700000000.twice.host", "Subject: t\n\n");
	write_file(*state, "cur/1700000000.twice.host:2,S", "Subject: t\n\n");
	assert_true(asprintf(&path, "%s/cur/subdir", (char *)*state) > 0);
	assert_int_equal(mkdir(path, 0700), 0);
	free(path);
	assert_true(asprintf(&path, "%s/new/fifo", (char *)*state) > 0);
	assert_int_equal(mkfifo(path, 0600), 0);
	free(path);
	assert_true(asprintf(&path, "%s/new/link", (char *)*state) > 0);
	assert_true(asprintf(&target, "%s/cur/1700000000.noinfo.host",
			(char *)*state) > 0);
	assert_int_equal(symlink(target, path), 0);
	free(path);
	free(target);
	assert_int_equal(
	    mailstore_folder_sync(f, MAILSTORE_SYNC_NEW_TO_CUR, &err), 0);
	assert_int_equal(mailstore_folder_count(f), 4);
	assert_string_equal(
	    mailstore_folder_msg(f, 0)->base, "1700000000.noinfo.host");
	assert_string_equal(
	    mailstore_folder_msg(f, 1)->base, "1700000000.twice.host");
	assert_int_equal(mailstore_folder_msg(f, 1)->flags, MAILSTORE_F_SEEN);
	assert_int_equal(mailstore_folder_msg(f, 2)->size, 4);
	assert_int_equal(mailstore_folder_msg(f, 2)->vsize, 6);
	assert_int_equal(mailstore_folder_msg(f, 3)->vsize, 6);
	/* A second sync changes nothing. */
	assert_int_equal(
	    mailstore_folder_sync(f, MAILSTORE_SYNC_NEW_TO_CUR, &err), 0);
	assert_int_equal(mailstore_folder_count(f), 4);
	assert_int_equal(mailstore_folder_msg(f, 0)->uid, 1);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_flags_round_trip(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	const struct mailstore_msg *m;
	uint64_t m1, m2, m3;
	const char *err;
	uint32_t uid, uid2;
	char letters[8];

	mailstore_flags_format(MAILSTORE_F_ALL, letters);
	assert_string_equal(letters, "DFPRST");
	assert_int_equal(mailstore_flags_parse("TSa"),
	    MAILSTORE_F_TRASHED | MAILSTORE_F_SEEN);
	uid = deliver_str(s, "INBOX", "Subject: f\n\n");
	f = open_folder(s, "INBOX", 0);
	m1 = mailstore_folder_find(f, uid)->modseq;
	assert_int_equal(mailstore_msg_set_flags(f, uid,
			     MAILSTORE_F_SEEN | MAILSTORE_F_FLAGGED, &m2, &err),
	    0);
	assert_true(m2 > m1);
	m = mailstore_folder_find(f, uid);
	assert_int_equal(m->flags, MAILSTORE_F_SEEN | MAILSTORE_F_FLAGGED);
	assert_int_equal(m->modseq, m2);
	assert_false(m->in_new);
	assert_true(strlen(m->path) > 5);
	assert_string_equal(m->path + strlen(m->path) - 5, ":2,FS");
	assert_int_equal(access(m->path, F_OK), 0);
	/* The same flags again: no change, same MODSEQ. */
	assert_int_equal(mailstore_msg_set_flags(f, uid,
			     MAILSTORE_F_SEEN | MAILSTORE_F_FLAGGED, &m3, &err),
	    0);
	assert_int_equal(m3, m2);
	assert_int_equal(mailstore_folder_highestmodseq(f), m2);
	mailstore_folder_free(&f);
	/* Seen by a fresh open, from the index. */
	f = open_folder(s, "INBOX", 0);
	m = mailstore_folder_find(f, uid);
	assert_int_equal(m->flags, MAILSTORE_F_SEEN | MAILSTORE_F_FLAGGED);
	assert_int_equal(m->modseq, m2);
	/* Letters we do not know (Dovecot keywords) are kept. */
	write_file(*state, "cur/1700000000.kw.host:2,Sa", "Subject: k\n\n");
	assert_int_equal(mailstore_folder_sync(f, 0, &err), 0);
	uid2 = mailstore_folder_msg(f, 1)->uid;
	assert_int_equal(uid2, uid + 1);
	assert_string_equal(
	    mailstore_folder_msg(f, 1)->base, "1700000000.kw.host");
	assert_int_equal(
	    mailstore_msg_set_flags(f, uid2, MAILSTORE_F_DRAFT, NULL, &err), 0);
	m = mailstore_folder_find(f, uid2);
	assert_string_equal(m->path + strlen(m->path) - 5, ":2,Da");
	assert_int_equal(
	    mailstore_msg_set_flags(f, 999, 0, NULL, &err), -ENOENT);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_folders(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	char **names, *path;
	size_t n;
	uint32_t uid, uidv;
	const char *err;
	struct stat st;

	assert_int_equal(mailstore_folder_create(s, "Lists", &err), 0);
	assert_int_equal(mailstore_folder_create(s, "Lists.pochta", &err), 0);
	assert_int_equal(mailstore_folder_create(s, "Archive", &err), 0);
	assert_int_equal(mailstore_folder_create(s, "Archive", &err), -EEXIST);
	assert_int_equal(mailstore_folder_create(s, "inbox", &err), -EEXIST);
	assert_int_equal(mailstore_folder_create(s, "", &err), -EINVAL);
	assert_int_equal(mailstore_folder_create(s, "a/b", &err), -EINVAL);
	assert_int_equal(mailstore_folder_create(s, "a..b", &err), -EINVAL);
	assert_int_equal(mailstore_folder_create(s, ".a", &err), -EINVAL);
	assert_int_equal(mailstore_folder_create(s, "a.", &err), -EINVAL);
	assert_int_equal(mailstore_folder_create(s, "a\nb", &err), -EINVAL);
	assert_true(asprintf(&path, "%s/.Lists.pochta/maildirfolder",
			(char *)*state) > 0);
	assert_int_equal(stat(path, &st), 0);
	free(path);
	assert_true(
	    asprintf(&path, "%s/.Lists.pochta/new", (char *)*state) > 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	free(path);
	assert_int_equal(stat(*state, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	/* Modified UTF-7 ("&BCAEMAQxBD4EQgQw-") is stored as given. */
	assert_int_equal(
	    mailstore_folder_create(s, "&BCAEMAQxBD4EQgQw-", &err), 0);
	assert_int_equal(
	    mailstore_folder_delete(s, "&BCAEMAQxBD4EQgQw-", &err), 0);
	assert_int_equal(mailstore_folder_list(s, &names, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(names[0], "INBOX");
	assert_string_equal(names[1], "Archive");
	assert_string_equal(names[2], "Lists");
	assert_string_equal(names[3], "Lists.pochta");
	mailstore_names_free(&names, n);
	assert_null(names);

	uid = deliver_str(s, "Lists.pochta", "Subject: l\n\n");
	f = open_folder(s, "Lists.pochta", 0);
	uidv = mailstore_folder_uidvalidity(f);
	mailstore_folder_free(&f);
	assert_int_equal(mailstore_folder_rename(s, "Lists", "Mail", &err), 0);
	assert_int_equal(
	    mailstore_folder_rename(s, "Mail", "Archive", &err), -EEXIST);
	assert_int_equal(
	    mailstore_folder_rename(s, "Mail", "Mail.x", &err), -EINVAL);
	assert_int_equal(
	    mailstore_folder_rename(s, "INBOX", "X", &err), -EBUSY);
	assert_int_equal(
	    mailstore_folder_rename(s, "Nope", "X", &err), -ENOENT);
	assert_int_equal(mailstore_folder_list(s, &names, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(names[2], "Mail");
	assert_string_equal(names[3], "Mail.pochta");
	mailstore_names_free(&names, n);
	/* The subfolder moved with its messages, UIDs and UIDVALIDITY. */
	f = open_folder(s, "Mail.pochta", 0);
	assert_int_equal(mailstore_folder_count(f), 1);
	assert_int_equal(mailstore_folder_msg(f, 0)->uid, uid);
	assert_int_equal(mailstore_folder_uidvalidity(f), uidv);
	mailstore_folder_free(&f);
	assert_int_equal(
	    mailstore_folder_open(s, "Lists", 0, &f, &err), -ENOENT);

	assert_int_equal(mailstore_folder_delete(s, "Mail", &err), -ENOTEMPTY);
	assert_int_equal(mailstore_folder_delete(s, "INBOX", &err), -EBUSY);
	assert_int_equal(mailstore_folder_delete(s, "Mail.pochta", &err), 0);
	assert_int_equal(
	    mailstore_folder_delete(s, "Mail.pochta", &err), -ENOENT);
	assert_int_equal(mailstore_folder_delete(s, "Mail", &err), 0);
	assert_int_equal(mailstore_folder_list(s, &names, &n, &err), 0);
	assert_int_equal(n, 2);
	mailstore_names_free(&names, n);
	/* Nothing of the deleted folders is left on disk: only .Archive. */
	assert_int_equal(count_dot_dirs(*state), 1);

	/* A folder created again gets a new UIDVALIDITY. */
	assert_int_equal(mailstore_folder_create(s, "Mail.pochta", &err), 0);
	f = open_folder(s, "Mail.pochta", 0);
	assert_true(mailstore_folder_uidvalidity(f) > uidv);
	assert_int_equal(mailstore_folder_count(f), 0);
	mailstore_folder_free(&f);

	assert_int_equal(mailstore_subscribe(s, "Mail.pochta", 1, &err), 0);
	assert_int_equal(mailstore_subscribe(s, "Archive", 1, &err), 0);
	assert_int_equal(mailstore_subscribe(s, "Gone", 1, &err), 0);
	assert_int_equal(mailstore_subscribe(s, "Gone", 0, &err), 0);
	assert_int_equal(mailstore_subscriptions(s, &names, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "Archive");
	assert_string_equal(names[1], "Mail.pochta");
	mailstore_names_free(&names, n);
	mailstore_free(&s);
}

static void
test_mailstore_quota_exceeded(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_delivery *d;
	char big[600];
	const char *err;
	uint32_t uid;

	memset(big, 'x', sizeof(big));
	mailstore_set_quota(s, 1000, 0);
	assert_int_equal(mailstore_deliver_begin(s, "INBOX", 600, &d, &err), 0);
	assert_int_equal(mailstore_deliver_write(d, big, 600, &err), 0);
	assert_int_equal(mailstore_deliver_commit(&d, 0, &uid, &err), 0);
	/* Refused up front when the size is announced... */
	assert_int_equal(
	    mailstore_deliver_begin(s, "INBOX", 600, &d, &err), -EDQUOT);
	assert_null(d);
	assert_non_null(strstr(err, "quota"));
	/* ...and at commit when it is not. */
	assert_int_equal(mailstore_deliver_begin(s, "INBOX", 0, &d, &err), 0);
	assert_int_equal(mailstore_deliver_write(d, big, 600, &err), 0);
	assert_int_equal(mailstore_deliver_commit(&d, 0, &uid, &err), -EDQUOT);
	assert_null(d);
	assert_int_equal(count_files(*state, "new"), 1);
	assert_int_equal(count_files(*state, "tmp"), 0);
	/* A message count limit. */
	mailstore_set_quota(s, 0, 1);
	assert_int_equal(
	    mailstore_deliver_begin(s, "Other", 1, &d, &err), -EDQUOT);
	mailstore_set_quota(s, 0, 0);
	deliver_str(s, "INBOX", "Subject: fits\n\n");
	mailstore_free(&s);
}

static void
test_mailstore_disk_errors_leave_nothing(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_delivery *d;
	struct mailstore_folder *f;
	const char *err;
	uint32_t uid;

	assert_int_equal(mailstore_deliver_begin(s, "INBOX", 0, &d, &err), 0);
	fail_write_errno = ENOSPC;
	assert_int_equal(
	    mailstore_deliver_write(d, "Subject: x\n\n", 12, &err), -ENOSPC);
	fail_write_errno = 0;
	/* Once failed, the delivery cannot be committed. */
	assert_int_equal(mailstore_deliver_commit(&d, 0, &uid, &err), -EIO);
	assert_null(d);
	assert_int_equal(count_files(*state, "new"), 0);
	assert_int_equal(count_files(*state, "tmp"), 0);

	assert_int_equal(mailstore_deliver_begin(s, "INBOX", 0, &d, &err), 0);
	fail_write_errno = EDQUOT;
	assert_int_equal(
	    mailstore_deliver_write(d, "Subject: x\n\n", 12, &err), -EDQUOT);
	fail_write_errno = 0;
	mailstore_deliver_abort(&d);
	assert_null(d);
	assert_int_equal(count_files(*state, "tmp"), 0);

	assert_int_equal(mailstore_deliver_begin(s, "INBOX", 0, &d, &err), 0);
	assert_int_equal(
	    mailstore_deliver_write(d, "Subject: x\n\n", 12, &err), 0);
	fail_fsync_errno = ENOSPC;
	assert_int_equal(mailstore_deliver_commit(&d, 0, &uid, &err), -ENOSPC);
	fail_fsync_errno = 0;
	assert_int_equal(uid, 0);
	assert_int_equal(count_files(*state, "new"), 0);
	assert_int_equal(count_files(*state, "tmp"), 0);

	/* An empty message is refused and leaves nothing either. */
	assert_int_equal(mailstore_deliver_begin(s, "INBOX", 0, &d, &err), 0);
	assert_int_equal(mailstore_deliver_commit(&d, 0, &uid, &err), -EINVAL);
	assert_null(d);
	assert_int_equal(count_files(*state, "new"), 0);
	assert_int_equal(count_files(*state, "tmp"), 0);

	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), 0);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_permission_denied(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_delivery *d;
	const char *err = NULL;

	fail_open_errno = EACCES;
	assert_int_equal(
	    mailstore_deliver_begin(s, "INBOX", 0, &d, &err), -EACCES);
	fail_open_errno = 0;
	assert_null(d);
	assert_non_null(strstr(err, "Permission denied"));
	mailstore_free(&s);
}

static void
test_mailstore_deliver_with_flags(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_delivery *d;
	struct mailstore_folder *f;
	const struct mailstore_msg *m;
	const char *err;
	uint32_t uid;

	assert_int_equal(mailstore_deliver_begin(s, "Sent", 0, &d, &err), 0);
	assert_int_equal(
	    mailstore_deliver_write(d, "Subject: s\n\n", 12, &err), 0);
	assert_int_equal(
	    mailstore_deliver_commit(
		&d, MAILSTORE_F_SEEN | MAILSTORE_F_DRAFT | 0x100, &uid, &err),
	    0);
	f = open_folder(s, "Sent", 0);
	m = mailstore_folder_find(f, uid);
	assert_non_null(m);
	assert_int_equal(m->flags, MAILSTORE_F_SEEN | MAILSTORE_F_DRAFT);
	assert_false(m->in_new);
	assert_non_null(strstr(m->path, "/.Sent/cur/"));
	assert_string_equal(m->path + strlen(m->path) - 5, ":2,DS");
	assert_int_equal(access(m->path, F_OK), 0);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_stale_tmp_removed(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	struct timespec ts[2];
	char *path;

	write_file(*state, "tmp/1600000000.M1P1Q1.crashed", "Subject: half");
	write_file(*state, "tmp/1700000000.M1P1Q1.writing", "Subject: now");
	assert_true(asprintf(&path, "%s/tmp/1600000000.M1P1Q1.crashed",
			(char *)*state) > 0);
	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - 37 * 3600;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(count_files(*state, "tmp"), 1);
	assert_int_equal(mailstore_folder_count(f), 0);
	free(path);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_expunge_and_cache(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	struct buf b;
	const char *err;
	char *path;
	uint32_t uid;
	int fd;

	uid = deliver_str(s, "INBOX", "Subject: e\n\n");
	f = open_folder(s, "INBOX", 0);
	buf_init(&b, 0);
	assert_int_equal(
	    mailstore_cache_get(f, uid, "envelope", &b, &err), -ENOENT);
	assert_int_equal(
	    mailstore_cache_set(f, uid, "envelope", "(\"x\")", 5, &err), 0);
	assert_int_equal(mailstore_cache_get(f, uid, "envelope", &b, &err), 0);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "(\"x\")", 5);
	assert_int_equal(
	    mailstore_cache_set(f, 77, "envelope", "x", 1, &err), -ENOENT);
	path = strdup(mailstore_folder_find(f, uid)->path);
	assert_int_equal(mailstore_msg_expunge(f, uid, &err), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(mailstore_folder_count(f), 0);
	assert_int_equal(mailstore_msg_open(f, uid, &fd, &err), -ENOENT);
	buf_reset(&b);
	assert_int_equal(
	    mailstore_cache_get(f, uid, "envelope", &b, &err), -ENOENT);
	assert_int_equal(mailstore_msg_expunge(f, uid, &err), -ENOENT);
	free(path);
	buf_release(&b);
	mailstore_folder_free(&f);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), 0);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_uidl_stable(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	const struct mailstore_msg *m;
	char name[200], *uidl;
	const char *err;
	size_t i;

	/* Longer than RFC 1939's 70 characters: hashed. */
	snprintf(name, sizeof(name), "cur/1700000000.%0100d.host:2,", 7);
	write_file(*state, name, "Subject: long\n\n");
	f = open_folder(s, "INBOX", 0);
	m = mailstore_folder_msg(f, 0);
	assert_int_equal(strlen(mailstore_uidl(m)), 64);
	for (i = 0; i < 64; i++)
		assert_non_null(
		    strchr("0123456789abcdef", mailstore_uidl(m)[i]));
	uidl = strdup(mailstore_uidl(m));
	assert_int_equal(
	    mailstore_msg_set_flags(f, m->uid, MAILSTORE_F_SEEN, NULL, &err),
	    0);
	assert_string_equal(mailstore_uidl(mailstore_folder_msg(f, 0)), uidl);
	free(uidl);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

struct thread_arg {
	const char *path;
	int id;
	int rc;
};

static void *
deliver_thread(void *p)
{
	struct thread_arg *a = p;
	struct mailstore_delivery *d;
	struct mailstore *s = NULL;
	const char *err;
	char text[64];
	uint32_t uid;
	int n;

	if ((a->rc = mailstore_open(a->path, &s, &err)) != 0)
		return NULL;
	for (n = 0; n < 25 && a->rc == 0; n++) {
		snprintf(text, sizeof(text), "Subject: %d %d\n\n", a->id, n);
		if ((a->rc = mailstore_deliver_begin(
			 s, "INBOX", 0, &d, &err)) == 0 &&
		    (a->rc = mailstore_deliver_write(
			 d, text, strlen(text), &err)) == 0)
			a->rc = mailstore_deliver_commit(&d, 0, &uid, &err);
		else
			mailstore_deliver_abort(&d);
	}
	mailstore_free(&s);
	return NULL;
}

static void
test_mailstore_threads(void **state)
{
	struct thread_arg args[4];
	pthread_t t[4];
	struct mailstore *s;
	struct mailstore_folder *f;
	size_t i;

	for (i = 0; i < 4; i++) {
		args[i].path = *state;
		args[i].id = i;
		args[i].rc = -1;
		assert_int_equal(
		    pthread_create(&t[i], NULL, deliver_thread, &args[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(args[i].rc, 0);
	}
	s = open_store(*state);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), 100);
	for (i = 0; i < 100; i++)
		assert_int_equal(mailstore_folder_msg(f, i)->uid, i + 1);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

/* Hostile file names: every byte but NUL and "/", odd lengths, with and
 * without info, empty files. Nothing may crash, the result must be stable,
 * and every indexed message readable with a well-formed UIDL. */
static void
test_mailstore_random_names(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	const struct mailstore_msg *m;
	char name[80], *path, *back;
	const char *err;
	size_t i, n, count, j, len;
	int fd;

	srandom(4711);
	for (i = 0; i < 300; i++) {
		len = 1 + random() % 60;
		for (j = 0; j < len; j++) {
			/* Mostly printable, so that many are messages. */
			do
				name[j] = random() % 8 ? 0x21 + random() % 94
						       : random() % 256;
			while (name[j] == '\0' || name[j] == '/');
		}
		name[len] = '\0';
		if (i % 3 == 0)
			strcat(name, ":2,SF");
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		assert_true(asprintf(&path, "%s/%s/%s", (char *)*state,
				i % 2 ? "new" : "cur", name) > 0);
		fd = open(path, O_WRONLY | O_CREAT, 0600);
		assert_true(fd >= 0);
		if (i % 7 != 0)
			assert_int_equal(
			    write(fd, "Subject: r\n\nx\n", 15), 15);
		close(fd);
		free(path);
	}
	f = open_folder(s, "INBOX", MAILSTORE_SYNC_NEW_TO_CUR);
	count = mailstore_folder_count(f);
	assert_true(count > 100);
	for (i = 0; i < count; i++) {
		m = mailstore_folder_msg(f, i);
		assert_true(
		    i == 0 || m->uid > mailstore_folder_msg(f, i - 1)->uid);
		assert_int_equal(m->size, 15);
		n = strlen(mailstore_uidl(m));
		assert_true(n >= 1 && n <= 70);
		for (j = 0; j < n; j++)
			assert_true(mailstore_uidl(m)[j] >= 0x21 &&
			    mailstore_uidl(m)[j] <= 0x7e);
		back = read_msg(f, m->uid);
		assert_string_equal(back, "Subject: r\n\nx\n");
		free(back);
	}
	assert_int_equal(
	    mailstore_folder_sync(f, MAILSTORE_SYNC_NEW_TO_CUR, &err), 0);
	assert_int_equal(mailstore_folder_count(f), count);
	mailstore_folder_free(&f);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), count);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_two_stores_one_process(void **state)
{
	struct mailstore *a = open_store(*state), *b = open_store(*state);
	struct mailstore_folder *f;

	deliver_str(a, "INBOX", "Subject: a\n\n");
	deliver_str(b, "INBOX", "Subject: b\n\n");
	mailstore_free(&a);
	/* b's index handle survives a's close. */
	deliver_str(b, "INBOX", "Subject: c\n\n");
	f = open_folder(b, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), 3);
	assert_int_equal(mailstore_folder_msg(f, 2)->uid, 3);
	mailstore_folder_free(&f);
	mailstore_free(&b);
	mailstore_free(&b);
}

/* Three transactions' worth, the last one partly filled. */
#define NBATCH (2 * MAILSTORE_BATCH_MAX + 500)

static uint32_t *
snapshot_uids(struct mailstore_folder *f, size_t extra)
{
	size_t i, n = mailstore_folder_count(f);
	uint32_t *uids = calloc(n + extra, sizeof(*uids));

	assert_non_null(uids);
	for (i = 0; i < n; i++)
		uids[i] = mailstore_folder_msg(f, i)->uid;
	return uids;
}

static void
test_mailstore_batch_flags(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	const struct mailstore_msg *m;
	uint64_t hms, max = 0, *mods, *again;
	unsigned long ncommits;
	uint32_t *uids, pair[2], flagged;
	const char *err;
	char *to;
	size_t i;

	fill_cur(*state, NBATCH);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), NBATCH);
	hms = mailstore_folder_highestmodseq(f);
	uids = snapshot_uids(f, 1);
	uids[NBATCH] = 999999; /* never existed */
	mods = calloc(NBATCH + 1, sizeof(*mods));
	again = calloc(NBATCH + 1, sizeof(*again));
	/* Behind the store's back: another client expunges two messages,
	 * mutt flags a third. */
	assert_int_equal(unlink(mailstore_folder_msg(f, 10)->path), 0);
	assert_int_equal(unlink(mailstore_folder_msg(f, 1500)->path), 0);
	m = mailstore_folder_msg(f, 20);
	flagged = m->uid;
	assert_true(
	    asprintf(&to, "%s/cur/%s:2,F", (char *)*state, m->base) > 0);
	assert_int_equal(rename(m->path, to), 0);
	free(to);

	assert_int_equal(mailstore_msgs_set_flags(f, uids, NBATCH + 1,
			     MAILSTORE_F_SEEN, 0, mods, &err),
	    0);
	for (i = 0; i <= NBATCH; i++) {
		if (i == 10 || i == 1500 || i == NBATCH) {
			assert_int_equal(mods[i], 0);
			continue;
		}
		assert_true(mods[i] > hms);
		if (mods[i] > max)
			max = mods[i];
	}
	/* One new MODSEQ per transaction, each above the one before. */
	assert_int_equal(mods[0], mods[MAILSTORE_BATCH_MAX - 1]);
	assert_true(mods[MAILSTORE_BATCH_MAX] > mods[0]);
	assert_int_equal(
	    mods[MAILSTORE_BATCH_MAX], mods[2 * MAILSTORE_BATCH_MAX - 1]);
	assert_true(mods[2 * MAILSTORE_BATCH_MAX] > mods[MAILSTORE_BATCH_MAX]);
	assert_int_equal(mailstore_folder_highestmodseq(f), max);
	/* The snapshot: the vanished ones gone, the rest Seen, mutt's flag
	 * kept. */
	assert_int_equal(mailstore_folder_count(f), NBATCH - 2);
	for (i = 0; i < NBATCH - 2; i++)
		assert_true(
		    mailstore_folder_msg(f, i)->flags & MAILSTORE_F_SEEN);
	m = mailstore_folder_find(f, flagged);
	assert_int_equal(m->flags, MAILSTORE_F_FLAGGED | MAILSTORE_F_SEEN);
	assert_string_equal(m->path + strlen(m->path) - 5, ":2,FS");
	assert_int_equal(access(m->path, F_OK), 0);
	assert_int_equal(count_flagged(*state, 'S'), NBATCH - 2);

	/* Again: nothing to do, nothing committed, the same MODSEQs. */
	ncommits = commits;
	assert_int_equal(mailstore_msgs_set_flags(f, uids, NBATCH + 1,
			     MAILSTORE_F_SEEN, 0, again, &err),
	    0);
	assert_int_equal(commits, ncommits);
	assert_memory_equal(again, mods, (NBATCH + 1) * sizeof(*mods));
	assert_int_equal(mailstore_folder_highestmodseq(f), max);

	/* Removing, with a repeated UID: one change, one MODSEQ. */
	pair[0] = pair[1] = uids[0];
	assert_int_equal(mailstore_msgs_set_flags(
			     f, pair, 2, 0, MAILSTORE_F_SEEN, again, &err),
	    0);
	assert_int_equal(again[0], max + 1);
	assert_int_equal(again[1], max + 1);
	m = mailstore_folder_find(f, uids[0]);
	assert_int_equal(m->flags, 0);
	assert_string_equal(m->path + strlen(m->path) - 3, ":2,");
	assert_int_equal(mailstore_folder_highestmodseq(f), max + 1);
	mods[0] = max + 1;
	mailstore_folder_free(&f);
	mailstore_free(&s);

	/* A fresh open finds in the index what the batch recorded. */
	s = open_store(*state);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), NBATCH - 2);
	assert_int_equal(mailstore_folder_highestmodseq(f), max + 1);
	for (i = 0; i < NBATCH; i++) {
		m = mailstore_folder_find(f, uids[i]);
		if (i == 10 || i == 1500) {
			assert_null(m);
			continue;
		}
		assert_non_null(m);
		assert_int_equal(m->modseq, mods[i]);
		assert_int_equal(
		    m->flags & MAILSTORE_F_SEEN, i == 0 ? 0 : MAILSTORE_F_SEEN);
	}
	free(uids);
	free(mods);
	free(again);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_batch_expunge(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	uint64_t hms, bytes, msgs;
	unsigned long ncommits;
	struct buf b;
	uint32_t *uids, *odd;
	const char *err;
	size_t i, n = 0, count;
	char *to;

	fill_cur(*state, NBATCH);
	f = open_folder(s, "INBOX", 0);
	uids = snapshot_uids(f, 0);
	odd = snapshot_uids(f, 0);
	assert_int_equal(
	    mailstore_cache_set(f, uids[2], "envelope", "x", 1, &err), 0);
	/* Behind the store's back: one removed, one renamed (a flag). */
	assert_int_equal(unlink(mailstore_folder_msg(f, 4)->path), 0);
	assert_true(asprintf(&to, "%s/cur/%s:2,T", (char *)*state,
			mailstore_folder_msg(f, 1002)->base) > 0);
	assert_int_equal(rename(mailstore_folder_msg(f, 1002)->path, to), 0);
	free(to);
	/* Every other message, the first one twice, and one never there. */
	for (i = 0; i < NBATCH; i += 2)
		uids[n++] = uids[i];
	uids[n++] = uids[0];
	uids[n++] = 999999;
	for (i = 1; i < NBATCH; i += 2)
		odd[i / 2] = odd[i];
	hms = mailstore_folder_highestmodseq(f);
	assert_int_equal(mailstore_msgs_expunge(f, uids, n, &count, &err), 0);
	assert_int_equal(count, NBATCH / 2 - 1);
	assert_int_equal(count_files(*state, "cur"), NBATCH / 2);
	assert_true(mailstore_folder_highestmodseq(f) > hms);
	/* The snapshot keeps the others, in order. */
	assert_int_equal(mailstore_folder_count(f), NBATCH / 2);
	for (i = 0; i < NBATCH / 2; i++)
		assert_int_equal(mailstore_folder_msg(f, i)->uid, odd[i]);
	buf_init(&b, 0);
	assert_int_equal(
	    mailstore_cache_get(f, uids[1], "envelope", &b, &err), -ENOENT);
	buf_release(&b);
	assert_int_equal(mailstore_quota_usage(s, &bytes, &msgs, &err), 0);
	assert_int_equal(msgs, NBATCH / 2);
	assert_int_equal(bytes, NBATCH / 2 * 17);

	/* Again: nothing left to remove, nothing committed. */
	hms = mailstore_folder_highestmodseq(f);
	ncommits = commits;
	assert_int_equal(mailstore_msgs_expunge(f, uids, n, &count, &err), 0);
	assert_int_equal(count, 0);
	assert_int_equal(commits, ncommits);
	assert_int_equal(mailstore_folder_highestmodseq(f), hms);
	assert_int_equal(mailstore_msg_expunge(f, uids[0], &err), -ENOENT);
	mailstore_folder_free(&f);
	mailstore_free(&s);

	s = open_store(*state);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), NBATCH / 2);
	assert_int_equal(mailstore_folder_highestmodseq(f), hms);
	for (i = 0; i < NBATCH / 2; i++)
		assert_int_equal(mailstore_folder_msg(f, i)->uid, odd[i]);
	free(uids);
	free(odd);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

static void
test_mailstore_batch_failures(void **state)
{
	struct mailstore *s = open_store(*state);
	struct mailstore_folder *f;
	uint64_t bytes, msgs;
	uint32_t *uids;
	const char *err = NULL;
	size_t count;

	fill_cur(*state, NBATCH);
	f = open_folder(s, "INBOX", 0);
	uids = snapshot_uids(f, 0);

	/* The second commit fails: the first transaction stands, the
	 * second's renames are undone, the third is not tried. */
	fail_commit_at = 2;
	assert_int_equal(mailstore_msgs_set_flags(
			     f, uids, NBATCH, MAILSTORE_F_SEEN, 0, NULL, &err),
	    -EIO);
	fail_commit_at = 0;
	assert_non_null(strstr(err, "commit"));
	assert_int_equal(count_flagged(*state, 'S'), MAILSTORE_BATCH_MAX);
	assert_int_equal(count_files(*state, "cur"), NBATCH);
	assert_true(mailstore_folder_msg(f, 0)->flags & MAILSTORE_F_SEEN);
	assert_false(mailstore_folder_msg(f, MAILSTORE_BATCH_MAX)->flags &
	    MAILSTORE_F_SEEN);
	assert_int_equal(
	    access(mailstore_folder_msg(f, NBATCH - 1)->path, F_OK), 0);
	/* The index agrees with the files. */
	mailstore_folder_free(&f);
	f = open_folder(s, "INBOX", 0);
	assert_int_equal(mailstore_folder_count(f), NBATCH);
	assert_true(mailstore_folder_msg(f, MAILSTORE_BATCH_MAX - 1)->flags &
	    MAILSTORE_F_SEEN);
	assert_false(mailstore_folder_msg(f, MAILSTORE_BATCH_MAX)->flags &
	    MAILSTORE_F_SEEN);
	assert_int_equal(mailstore_msgs_set_flags(
			     f, uids, NBATCH, MAILSTORE_F_SEEN, 0, NULL, &err),
	    0);
	assert_int_equal(count_flagged(*state, 'S'), NBATCH);

	/* A rename fails half-way through a transaction: the ones before it
	 * get their names back. */
	fail_rename_at = 5;
	assert_int_equal(mailstore_msgs_set_flags(f, uids, NBATCH,
			     MAILSTORE_F_FLAGGED, MAILSTORE_F_SEEN, NULL, &err),
	    -EIO);
	fail_rename_at = 0;
	assert_int_equal(count_flagged(*state, 'S'), NBATCH);
	assert_int_equal(count_flagged(*state, 'F'), 0);
	assert_int_equal(mailstore_folder_msg(f, 0)->flags, MAILSTORE_F_SEEN);
	assert_int_equal(access(mailstore_folder_msg(f, 0)->path, F_OK), 0);

	/* An expunge whose commit fails: the files are gone all the same,
	 * and the next synchronisation drops their records. */
	fail_commit_at = 1;
	assert_int_equal(
	    mailstore_msgs_expunge(f, uids, 10, &count, &err), -EIO);
	fail_commit_at = 0;
	assert_int_equal(count, 0);
	assert_int_equal(count_files(*state, "cur"), NBATCH - 10);
	assert_int_equal(mailstore_folder_count(f), NBATCH - 10);
	assert_int_equal(mailstore_folder_sync(f, 0, &err), 0);
	assert_int_equal(mailstore_folder_count(f), NBATCH - 10);
	assert_int_equal(mailstore_folder_msg(f, 0)->uid, uids[10]);
	assert_int_equal(mailstore_quota_usage(s, &bytes, &msgs, &err), 0);
	assert_int_equal(msgs, NBATCH - 10);
	free(uids);
	mailstore_folder_free(&f);
	mailstore_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_mailstore_deliver_read_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_uids_increase, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_concurrent_delivery, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_rebuild_after_index_loss, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_foreign_files_get_uids, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_renamed_file_keeps_uid, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_removed_file_expunged, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_weird_files_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_flags_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_folders, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_quota_exceeded, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_disk_errors_leave_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_permission_denied, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_deliver_with_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_stale_tmp_removed, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_expunge_and_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_uidl_stable, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_two_stores_one_process, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_random_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_batch_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_batch_expunge, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_mailstore_batch_failures, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
