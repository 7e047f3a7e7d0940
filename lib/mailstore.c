/*
 * mailstore.c - a user's Maildir++ mailbox (see mailstore.h): opening the
 * store, folder names and directories, folder create/delete/rename/list,
 * subscriptions and quota usage. Folder layout as Courier and Dovecot use it,
 * so either can take over the directory. Errors are negative errnos with a
 * message in the store; nothing here exits on bad names or foreign files.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "mailstore_private.h"
#include "xalloc.h"

int
mailstore_err(
    struct mailstore *s, const char **errstr_r, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	if (errstr_r != NULL)
		*errstr_r = s->err;
	return rc;
}

int
mailstore_is_inbox(const char *name)
{
	return strcasecmp(name, MAILSTORE_INBOX) == 0;
}

/* 0 if name can be a folder (see mailstore.h), else -EINVAL. */
int
mailstore_name_check(const char *name)
{
	size_t len = strlen(name), i;

	if (mailstore_is_inbox(name))
		return 0;
	if (len == 0 || len > MAILSTORE_FOLDER_MAX || name[0] == '.' ||
	    name[0] == '#' || name[len - 1] == '.' ||
	    strstr(name, "..") != NULL)
		return -EINVAL;
	for (i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f ||
		    name[i] == '/')
			return -EINVAL;
	return 0;
}

char *
mailstore_folder_dir(const struct mailstore *s, const char *name)
{
	if (mailstore_is_inbox(name))
		return xstrdup(s->path);
	return xasprintf("%s/.%s", s->path, name);
}

int
mailstore_fsync_dir(const char *path)
{
	int fd, rc = 0;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -errno;
	if (fsync(fd) == -1)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * rename(2) that fails with -EEXIST rather than replace the target: a file
 * or folder another program created meanwhile is never overwritten. File
 * systems without RENAME_NOREPLACE get a check first (a narrow race).
 */
int
mailstore_rename(const char *from, const char *to)
{
	struct stat st;

	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (lstat(to, &st) == 0)
		return -EEXIST;
	return rename(from, to) == -1 ? -errno : 0;
}

/* mkdir that accepts an existing directory; 1 if it made one. */
static int
mkdir_ok(const char *path)
{
	if (mkdir(path, 0700) == 0)
		return 1;
	return errno == EEXIST ? 0 : -errno;
}

/* Create what a folder needs (idempotent, safe against a concurrent
 * creator), then make the new entries durable. */
int
mailstore_folder_mkdirs(
    struct mailstore *s, const char *name, const char **errstr_r)
{
	static const char *const subs[] = {"cur", "new", "tmp"};
	char *dir, *sub;
	int rc, made = 0, fd;
	size_t i;

	dir = mailstore_folder_dir(s, name);
	if ((rc = mkdir_ok(dir)) < 0)
		goto fail;
	made |= rc;
	for (i = 0; i < 3; i++) {
		sub = xasprintf("%s/%s", dir, subs[i]);
		rc = mkdir_ok(sub);
		free(sub);
		if (rc < 0)
			goto fail;
		made |= rc;
	}
	if (!mailstore_is_inbox(name)) {
		/* Courier's marker: deliveries into it are for a folder. */
		sub = xasprintf("%s/maildirfolder", dir);
		fd = open(sub, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		free(sub);
		if (fd == -1) {
			rc = -errno;
			goto fail;
		}
		close(fd);
	}
	if (made &&
	    ((rc = mailstore_fsync_dir(dir)) < 0 ||
		(!mailstore_is_inbox(name) &&
		    (rc = mailstore_fsync_dir(s->path)) < 0)))
		goto fail;
	free(dir);
	return 0;
fail:
	mailstore_err(
	    s, errstr_r, rc, "create folder %s: %s", dir, strerror(-rc));
	free(dir);
	return rc;
}

/* mkdir -p with mode 0700 for the mailbox directory itself. */
static int
mkdir_parents(const char *path)
{
	char *p = xstrdup(path), *slash;
	int rc = 0;

	for (slash = strchr(p + 1, '/'); slash != NULL;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(p, 0700) == -1 && errno != EEXIST) {
			rc = -errno;
			break;
		}
		*slash = '/';
	}
	if (rc == 0 && mkdir(p, 0700) == -1 && errno != EEXIST)
		rc = -errno;
	free(p);
	return rc;
}

/* The host name as Maildir names carry it: "/" and ":" cannot appear in a
 * file name's base, and are written \057 and \072 as Dovecot does; anything
 * else outside 0x21-0x7E is escaped the same way so names stay printable. */
static char *
host_escaped(void)
{
	char host[256], out[256 * 4 + 1];
	size_t i, o = 0;

	if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	for (i = 0; host[i] != '\0'; i++) {
		unsigned char c = host[i];

		if (c == '/' || c == ':' || c == '\\' || c < 0x21 || c > 0x7e)
			o += snprintf(out + o, sizeof(out) - o, "\\%03o", c);
		else
			out[o++] = c;
	}
	out[o] = '\0';
	return xstrdup(out);
}

/* A fresh index: bring every folder on disk into it. */
static int
store_rebuild(struct mailstore *s, const char **errstr_r)
{
	struct mailstore_folder_rec rec;
	char **names;
	size_t n, i;
	MDB_txn *txn;
	int rc;

	if ((rc = mailstore_folder_list(s, &names, &n, errstr_r)) < 0)
		return rc;
	for (i = 0; i < n && rc == 0; i++) {
		if ((rc = mailstore_index_begin(s, 0, &txn, errstr_r)) < 0)
			break;
		rc = mailstore_folder_sync_txn(
		    s, txn, NULL, names[i], 0, &rec, errstr_r);
		if (rc == 0)
			rc = mailstore_index_commit(s, txn, errstr_r);
		else
			mdb_txn_abort(txn);
	}
	mailstore_names_free(&names, n);
	return rc;
}

static const char *
open_errstr(int rc)
{
	switch (rc) {
	case -EACCES:
	case -EPERM:
		return "cannot open mailbox: permission denied";
	case -ENOSPC:
		return "cannot open mailbox: file system full";
	case -EDQUOT:
		return "cannot open mailbox: disk quota exceeded";
	case -ENOTDIR:
		return "cannot open mailbox: not a directory";
	default:
		return "cannot open mailbox: I/O error (details logged)";
	}
}

int
mailstore_open(
    const char *path, struct mailstore **store_r, const char **errstr_r)
{
	struct mailstore *s;
	int rc, fresh;

	*store_r = NULL;
	if (path[0] == '\0') {
		if (errstr_r != NULL)
			*errstr_r = "empty mailbox path";
		return -EINVAL;
	}
	s = xcalloc(1, sizeof(*s));
	s->path = xstrdup(path);
	s->host = host_escaped();
	if ((rc = mkdir_parents(path)) < 0) {
		mailstore_err(
		    s, errstr_r, rc, "mkdir %s: %s", path, strerror(-rc));
		goto fail;
	}
	if ((rc = mailstore_folder_mkdirs(s, MAILSTORE_INBOX, errstr_r)) < 0 ||
	    (rc = mailstore_index_acquire(s, &fresh, errstr_r)) < 0)
		goto fail;
	if (fresh && (rc = store_rebuild(s, errstr_r)) < 0)
		goto fail;
	*store_r = s;
	return 0;
fail:
	/* The detailed message dies with the store: log it, and give the
	 * caller one that lives. */
	log_warn("mailstore: %s", s->err);
	if (errstr_r != NULL)
		*errstr_r = open_errstr(rc);
	mailstore_free(&s);
	return rc;
}

void
mailstore_free(struct mailstore **store)
{
	struct mailstore *s = *store;

	if (s == NULL)
		return;
	mailstore_index_release(s);
	free(s->path);
	free(s->host);
	free(s);
	*store = NULL;
}

void
mailstore_set_quota(
    struct mailstore *store, uint64_t max_bytes, uint64_t max_msgs)
{
	store->quota_bytes = max_bytes;
	store->quota_msgs = max_msgs;
}

int
mailstore_quota_usage(struct mailstore *store, uint64_t *bytes_r,
    uint64_t *msgs_r, const char **errstr_r)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mailstore_index_begin(store, 1, &txn, errstr_r)) < 0)
		return rc;
	rc = mailstore_index_usage(store, txn, bytes_r, msgs_r);
	mdb_txn_abort(txn);
	if (rc < 0)
		return mailstore_err(
		    store, errstr_r, rc, "quota usage: %s", strerror(-rc));
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
mailstore_folder_list(struct mailstore *store, char ***names_r, size_t *count_r,
    const char **errstr_r)
{
	struct dirent *de;
	struct stat st;
	char **names;
	size_t n = 1;
	DIR *d;

	*names_r = NULL;
	*count_r = 0;
	if ((d = opendir(store->path)) == NULL)
		return mailstore_err(store, errstr_r, -errno, "opendir %s: %s",
		    store->path, strerror(errno));
	names = xcalloc(1, sizeof(*names));
	names[0] = xstrdup(MAILSTORE_INBOX);
	while ((de = readdir(d)) != NULL) {
		/* Only ".Name" directories; "..pochta-deleted.*" and other
		 * names that could not be created are not folders. */
		if (de->d_name[0] != '.' ||
		    mailstore_name_check(de->d_name + 1) < 0 ||
		    mailstore_is_inbox(de->d_name + 1) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
			-1 ||
		    !S_ISDIR(st.st_mode))
			continue;
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xstrdup(de->d_name + 1);
	}
	closedir(d);
	qsort(names + 1, n - 1, sizeof(*names), name_cmp);
	*names_r = names;
	*count_r = n;
	return 0;
}

void
mailstore_names_free(char ***names, size_t count)
{
	size_t i;

	if (*names == NULL)
		return;
	for (i = 0; i < count; i++)
		free((*names)[i]);
	free(*names);
	*names = NULL;
}

static int
folder_exists(struct mailstore *s, const char *name)
{
	struct stat st;
	char *dir = mailstore_folder_dir(s, name);
	int rc;

	rc = lstat(dir, &st) == 0 && S_ISDIR(st.st_mode);
	free(dir);
	return rc;
}

static int
name_valid(struct mailstore *s, const char *name, const char **errstr_r)
{
	if (mailstore_name_check(name) < 0)
		return mailstore_err(
		    s, errstr_r, -EINVAL, "invalid folder name");
	return 0;
}

int
mailstore_folder_create(
    struct mailstore *store, const char *name, const char **errstr_r)
{
	struct mailstore_folder_rec rec;
	MDB_txn *txn;
	int rc;

	if ((rc = name_valid(store, name, errstr_r)) < 0)
		return rc;
	if (mailstore_is_inbox(name) || folder_exists(store, name))
		return mailstore_err(
		    store, errstr_r, -EEXIST, "folder %s exists", name);
	if ((rc = mailstore_folder_mkdirs(store, name, errstr_r)) < 0 ||
	    (rc = mailstore_index_begin(store, 0, &txn, errstr_r)) < 0)
		return rc;
	if ((rc = mailstore_index_folder_ensure(store, txn, name, &rec)) < 0) {
		mdb_txn_abort(txn);
		return mailstore_err(
		    store, errstr_r, rc, "index: %s", strerror(-rc));
	}
	return mailstore_index_commit(store, txn, errstr_r);
}

/* Remove a directory tree that we renamed out of the way; depth-limited,
 * never follows symbolic links. */
static void
remove_tree(int parent, const char *name, int depth)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if (depth > 0 &&
	    (fd = openat(parent, name,
		 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) != -1) {
		if ((d = fdopendir(fd)) == NULL) {
			close(fd);
			return;
		}
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (unlinkat(dirfd(d), de->d_name, 0) == -1 &&
			    (errno == EISDIR || errno == EPERM))
				remove_tree(dirfd(d), de->d_name, depth - 1);
		}
		closedir(d);
	}
	if (unlinkat(parent, name, AT_REMOVEDIR) == -1)
		log_warn(
		    "mailstore: cannot remove %s: %s", name, strerror(errno));
}

static int
has_children(struct mailstore *s, const char *name, const char **errstr_r)
{
	size_t n, i, len = strlen(name);
	char **names;
	int rc;

	if ((rc = mailstore_folder_list(s, &names, &n, errstr_r)) < 0)
		return rc;
	for (i = 1; i < n && rc == 0; i++)
		if (strncmp(names[i], name, len) == 0 && names[i][len] == '.')
			rc = 1;
	mailstore_names_free(&names, n);
	return rc;
}

int
mailstore_folder_delete(
    struct mailstore *store, const char *name, const char **errstr_r)
{
	char *dir, *trash, *tname;
	MDB_txn *txn;
	int rc, dfd;

	if ((rc = name_valid(store, name, errstr_r)) < 0)
		return rc;
	if (mailstore_is_inbox(name))
		return mailstore_err(
		    store, errstr_r, -EBUSY, "INBOX cannot be deleted");
	if (!folder_exists(store, name))
		return mailstore_err(
		    store, errstr_r, -ENOENT, "no folder %s", name);
	if ((rc = has_children(store, name, errstr_r)) != 0)
		return rc < 0 ? rc
			      : mailstore_err(store, errstr_r, -ENOTEMPTY,
				    "folder %s has subfolders", name);
	if ((rc = mailstore_index_begin(store, 0, &txn, errstr_r)) < 0)
		return rc;
	/*
	 * Rename first, so that the folder vanishes at once for every
	 * reader and a crash half-way through the removal leaves a name no
	 * listing shows (it begins with ".."), not half a folder.
	 */
	dir = mailstore_folder_dir(store, name);
	tname =
	    xasprintf("..pochta-deleted.%ld.%lu", (long)getpid(), store->seq++);
	trash = xasprintf("%s/%s", store->path, tname);
	if ((rc = mailstore_rename(dir, trash)) < 0) {
		mailstore_err(
		    store, errstr_r, rc, "rename %s: %s", dir, strerror(-rc));
		mdb_txn_abort(txn);
	} else if ((rc = mailstore_index_folder_drop(store, txn, name)) < 0) {
		mdb_txn_abort(txn);
		mailstore_err(store, errstr_r, rc, "index: %s", strerror(-rc));
	} else
		rc = mailstore_index_commit(store, txn, errstr_r);
	if (rc == 0 &&
	    (dfd = open(store->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) !=
		-1) {
		remove_tree(dfd, tname, 3);
		close(dfd);
	}
	free(dir);
	free(trash);
	free(tname);
	return rc;
}

/* Rename the directories of from and its subfolders; undone on failure. */
static int
rename_dirs(struct mailstore *s, const char *from, const char *to, char **names,
    size_t n, const char **errstr_r)
{
	size_t flen = strlen(from), i, done = 0;
	char *a = NULL, *b = NULL;
	int rc = 0;

	for (i = 1; i < n; i++) {
		if (strncmp(names[i], from, flen) != 0 ||
		    (names[i][flen] != '\0' && names[i][flen] != '.'))
			continue;
		a = xasprintf("%s/.%s", s->path, names[i]);
		b = xasprintf("%s/.%s%s", s->path, to, names[i] + flen);
		if ((rc = mailstore_rename(a, b)) < 0) {
			mailstore_err(
			    s, errstr_r, rc, "rename %s: %s", a, strerror(-rc));
			free(a);
			free(b);
			break;
		}
		free(a);
		free(b);
		done = i;
	}
	while (rc < 0 && done > 0) {
		i = done--;
		if (strncmp(names[i], from, flen) != 0 ||
		    (names[i][flen] != '\0' && names[i][flen] != '.'))
			continue;
		a = xasprintf("%s/.%s", s->path, names[i]);
		b = xasprintf("%s/.%s%s", s->path, to, names[i] + flen);
		if (mailstore_rename(b, a) < 0)
			log_warn("mailstore: cannot undo rename of %s: %s", a,
			    strerror(errno));
		free(a);
		free(b);
	}
	return rc;
}

int
mailstore_folder_rename(struct mailstore *store, const char *from,
    const char *to, const char **errstr_r)
{
	size_t flen = strlen(from), n;
	char **names;
	MDB_txn *txn;
	int rc;

	if ((rc = name_valid(store, from, errstr_r)) < 0 ||
	    (rc = name_valid(store, to, errstr_r)) < 0)
		return rc;
	if (mailstore_is_inbox(from) || mailstore_is_inbox(to))
		return mailstore_err(
		    store, errstr_r, -EBUSY, "INBOX cannot be renamed");
	if (strncmp(to, from, flen) == 0 &&
	    (to[flen] == '.' || to[flen] == '\0'))
		return mailstore_err(store, errstr_r, -EINVAL,
		    "cannot rename a folder into itself");
	if (!folder_exists(store, from))
		return mailstore_err(
		    store, errstr_r, -ENOENT, "no folder %s", from);
	if ((rc = mailstore_index_begin(store, 0, &txn, errstr_r)) < 0)
		return rc;
	if (folder_exists(store, to) ||
	    (rc = has_children(store, to, errstr_r)) > 0) {
		mdb_txn_abort(txn);
		return mailstore_err(
		    store, errstr_r, -EEXIST, "folder %s exists", to);
	}
	if (rc < 0 ||
	    (rc = mailstore_folder_list(store, &names, &n, errstr_r)) < 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	rc = rename_dirs(store, from, to, names, n, errstr_r);
	if (rc == 0 &&
	    (rc = mailstore_index_folder_rename(store, txn, from, to)) < 0)
		mailstore_err(store, errstr_r, rc, "index: %s", strerror(-rc));
	if (rc == 0)
		rc = mailstore_index_commit(store, txn, errstr_r);
	else
		mdb_txn_abort(txn);
	if (rc == 0)
		(void)mailstore_fsync_dir(store->path);
	mailstore_names_free(&names, n);
	return rc;
}

int
mailstore_subscribe(
    struct mailstore *store, const char *name, int on, const char **errstr_r)
{
	MDB_txn *txn;
	int rc;

	if ((rc = name_valid(store, name, errstr_r)) < 0 ||
	    (rc = mailstore_index_begin(store, 0, &txn, errstr_r)) < 0)
		return rc;
	if ((rc = mailstore_index_subscribe(store, txn, name, on)) < 0) {
		mdb_txn_abort(txn);
		return mailstore_err(
		    store, errstr_r, rc, "index: %s", strerror(-rc));
	}
	return mailstore_index_commit(store, txn, errstr_r);
}

int
mailstore_subscriptions(struct mailstore *store, char ***names_r,
    size_t *count_r, const char **errstr_r)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mailstore_index_begin(store, 1, &txn, errstr_r)) < 0)
		return rc;
	rc = mailstore_index_subscriptions(store, txn, names_r, count_r);
	mdb_txn_abort(txn);
	if (rc < 0) {
		mailstore_names_free(names_r, *count_r);
		return mailstore_err(
		    store, errstr_r, rc, "index: %s", strerror(-rc));
	}
	return 0;
}

static const char flag_letters[] = "DFPRST";

void
mailstore_flags_format(unsigned int flags, char *out)
{
	size_t i, o = 0;

	for (i = 0; flag_letters[i] != '\0'; i++)
		if (flags & (1u << i))
			out[o++] = flag_letters[i];
	out[o] = '\0';
}

unsigned int
mailstore_flags_parse(const char *letters)
{
	unsigned int flags = 0;
	const char *p;

	for (; *letters != '\0'; letters++)
		if ((p = strchr(flag_letters, *letters)) != NULL)
			flags |= 1u << (p - flag_letters);
	return flags;
}
