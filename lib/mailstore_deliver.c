/*
 * mailstore_deliver.c - delivery into a Maildir folder (see mailstore.h):
 * tmp/ then fsync, link into new/, fsync new/, then the UID in the index.
 * Success means the message is on stable storage and indexed; any failure
 * removes what was written, so a delivery agent may safely try again.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mailstore_private.h"
#include "xalloc.h"

struct mailstore_delivery {
	struct mailstore *store;
	char *folder;
	char *dir;
	char *base; /* the unique name, before ,S= and ,W= */
	char *tmp;  /* tmp/<base> */
	int fd;
	int failed; /* a write failed: only abort remains */
	uint64_t size, vsize;
	char last; /* last byte written, for LF counting */
};

static int
quota_check(struct mailstore *s, uint64_t size, const char **errstr_r)
{
	uint64_t bytes, msgs;
	MDB_txn *txn;
	int rc;

	if (s->quota_bytes == 0 && s->quota_msgs == 0)
		return 0;
	if ((rc = mailstore_index_begin(s, 1, &txn, errstr_r)) < 0)
		return rc;
	rc = mailstore_index_usage(s, txn, &bytes, &msgs);
	mdb_txn_abort(txn);
	if (rc < 0)
		return mailstore_err(
		    s, errstr_r, rc, "quota usage: %s", strerror(-rc));
	if ((s->quota_bytes != 0 &&
		(size > s->quota_bytes || bytes > s->quota_bytes - size)) ||
	    (s->quota_msgs != 0 && msgs >= s->quota_msgs))
		return mailstore_err(s, errstr_r, -EDQUOT,
		    "mailbox quota exceeded: %" PRIu64 " bytes in %" PRIu64
		    " messages, adding %" PRIu64 " bytes, limits %" PRIu64
		    " bytes, %" PRIu64 " messages",
		    bytes, msgs, size, s->quota_bytes, s->quota_msgs);
	return 0;
}

/* Create tmp/<unique name> with O_EXCL; a clash (another process with our
 * pid on another host sharing the disk, or a clock step) takes the next Q. */
static int
tmp_create(struct mailstore_delivery *d, const char **errstr_r)
{
	struct mailstore *s = d->store;
	struct timeval tv;
	int tries, err = 0;

	for (tries = 0; tries < 100; tries++) {
		gettimeofday(&tv, NULL);
		free(d->base);
		free(d->tmp);
		d->base =
		    xasprintf("%lld.M%06ldP%ldQ%lu.%s", (long long)tv.tv_sec,
			(long)tv.tv_usec, (long)getpid(), ++s->seq, s->host);
		d->tmp = xasprintf("%s/tmp/%s", d->dir, d->base);
		d->fd =
		    open(d->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (d->fd != -1)
			return 0;
		if ((err = errno) != EEXIST)
			break;
	}
	return mailstore_err(
	    s, errstr_r, -err, "create %s: %s", d->tmp, strerror(err));
}

int
mailstore_deliver_begin(struct mailstore *store, const char *folder,
    uint64_t size_hint, struct mailstore_delivery **d_r, const char **errstr_r)
{
	struct mailstore_delivery *d;
	int rc;

	*d_r = NULL;
	if (mailstore_name_check(folder) < 0)
		return mailstore_err(
		    store, errstr_r, -EINVAL, "invalid folder name");
	if ((rc = quota_check(store, size_hint, errstr_r)) < 0 ||
	    (rc = mailstore_folder_mkdirs(store, folder, errstr_r)) < 0)
		return rc;
	d = xcalloc(1, sizeof(*d));
	d->store = store;
	d->folder =
	    xstrdup(mailstore_is_inbox(folder) ? MAILSTORE_INBOX : folder);
	d->dir = mailstore_folder_dir(store, folder);
	d->fd = -1;
	if ((rc = tmp_create(d, errstr_r)) < 0) {
		mailstore_deliver_abort(&d);
		return rc;
	}
	*d_r = d;
	return 0;
}

int
mailstore_deliver_write(struct mailstore_delivery *d, const void *data,
    size_t len, const char **errstr_r)
{
	const char *p = data;
	size_t i, off = 0;
	ssize_t n;

	if (d->failed)
		return mailstore_err(
		    d->store, errstr_r, -EIO, "delivery already failed");
	/* RFC822.SIZE counts a bare LF as CRLF. */
	for (i = 0; i < len; i++) {
		if (p[i] == '\n' && (i > 0 ? p[i - 1] : d->last) != '\r')
			d->vsize++;
	}
	if (len > 0)
		d->last = p[len - 1];
	while (off < len) {
		n = write(d->fd, p + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n == 0 ? EIO : errno;

			d->failed = 1;
			return mailstore_err(d->store, errstr_r, -err,
			    "write %s: %s", d->tmp, strerror(err));
		}
		off += n;
	}
	d->size += len;
	d->vsize += len;
	return 0;
}

void
mailstore_deliver_abort(struct mailstore_delivery **dp)
{
	struct mailstore_delivery *d = *dp;

	if (d == NULL)
		return;
	if (d->fd != -1) {
		close(d->fd);
		if (unlink(d->tmp) == -1)
			log_warn("mailstore: unlink %s: %s", d->tmp,
			    strerror(errno));
	}
	free(d->folder);
	free(d->dir);
	free(d->base);
	free(d->tmp);
	free(d);
	*dp = NULL;
}

/* The message is durable in new/<name>: give it its UID. A concurrent sync
 * may have indexed it already; then that UID is the one. */
static int
deliver_index(struct mailstore_delivery *d, const char *base, const char *info,
    unsigned int flags, uint32_t *uid_r, const char **errstr_r)
{
	struct mailstore *s = d->store;
	struct mailstore_folder_rec frec;
	struct mailstore_msg_rec mrec;
	MDB_txn *txn;
	uint32_t uid;
	int rc;

	if ((rc = mailstore_index_begin(s, 0, &txn, errstr_r)) < 0)
		return rc;
	if ((rc = mailstore_index_folder_ensure(s, txn, d->folder, &frec)) < 0)
		goto fail;
	rc = mailstore_index_name_uid(s, txn, frec.fid, base, &uid);
	if (rc == -ENOENT) {
		memset(&mrec, 0, sizeof(mrec));
		uid = frec.uidnext++;
		mrec.modseq = ++frec.highestmodseq;
		mrec.size = d->size;
		mrec.vsize = d->vsize;
		mrec.flags = flags;
		mrec.in_new = flags == 0;
		if ((rc = mailstore_index_msg_put(
			 s, txn, frec.fid, uid, &mrec, base, info, 1)) < 0 ||
		    (rc = mailstore_index_folder_put(
			 s, txn, d->folder, &frec)) < 0)
			goto fail;
	} else if (rc < 0)
		goto fail;
	if ((rc = mailstore_index_commit(s, txn, errstr_r)) < 0)
		return rc;
	*uid_r = uid;
	return 0;
fail:
	mdb_txn_abort(txn);
	return mailstore_err(
	    s, errstr_r, rc, "index of %s: %s", s->path, strerror(-rc));
}

int
mailstore_deliver_commit(struct mailstore_delivery **dp, unsigned int flags,
    uint32_t *uid_r, const char **errstr_r)
{
	struct mailstore_delivery *d = *dp;
	struct mailstore *s = d->store;
	char letters[8], *base, *info, *final, *newdir;
	int rc, fd = d->fd;

	*uid_r = 0;
	if (d->failed) {
		mailstore_deliver_abort(dp);
		return mailstore_err(
		    s, errstr_r, -EIO, "delivery already failed");
	}
	if ((rc = quota_check(s, d->size, errstr_r)) < 0) {
		mailstore_deliver_abort(dp);
		return rc;
	}
	if (d->size == 0) {
		/* Not a message: a synchronisation would skip it too. */
		mailstore_deliver_abort(dp);
		return mailstore_err(s, errstr_r, -EINVAL, "empty message");
	}
	d->fd = -1;
	rc = fsync(fd) == -1 ? -errno : 0;
	if (close(fd) == -1 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		mailstore_err(
		    s, errstr_r, rc, "fsync %s: %s", d->tmp, strerror(-rc));
		(void)unlink(d->tmp);
		mailstore_deliver_abort(dp);
		return rc;
	}
	flags &= MAILSTORE_F_ALL;
	mailstore_flags_format(flags, letters);
	base = xasprintf(
	    "%s,S=%" PRIu64 ",W=%" PRIu64, d->base, d->size, d->vsize);
	info = flags ? xasprintf(":2,%s", letters) : xstrdup("");
	/* A message stored with flags (IMAP APPEND) has been seen by its
	 * writer: it goes to cur/, as Dovecot does. */
	final =
	    xasprintf("%s/%s/%s%s", d->dir, flags ? "cur" : "new", base, info);
	newdir = xasprintf("%s/%s", d->dir, flags ? "cur" : "new");
	/* link, not rename: it cannot replace a file of the same name. */
	if (link(d->tmp, final) == -1) {
		rc = mailstore_err(
		    s, errstr_r, -errno, "link %s: %s", final, strerror(errno));
		(void)unlink(d->tmp);
		goto out;
	}
	(void)unlink(d->tmp);
	if ((rc = mailstore_fsync_dir(newdir)) < 0) {
		mailstore_err(
		    s, errstr_r, rc, "fsync %s: %s", newdir, strerror(-rc));
		(void)unlink(final);
		goto out;
	}
	if ((rc = deliver_index(d, base, info, flags, uid_r, errstr_r)) < 0)
		(void)unlink(final);
out:
	free(base);
	free(info);
	free(final);
	free(newdir);
	mailstore_deliver_abort(dp);
	return rc;
}

int
mailstore_deliver(struct mailstore *store, const char *folder, int fd,
    uint64_t size_hint, unsigned int flags, uint32_t *uid_r,
    const char **errstr_r)
{
	struct mailstore_delivery *d;
	char chunk[65536];
	ssize_t n;
	int rc;

	*uid_r = 0;
	if ((rc = mailstore_deliver_begin(
		 store, folder, size_hint, &d, errstr_r)) < 0)
		return rc;
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			rc = mailstore_err(store, errstr_r, -errno,
			    "read message: %s", strerror(errno));
			mailstore_deliver_abort(&d);
			return rc;
		}
		if (n == 0)
			break;
		if ((rc = mailstore_deliver_write(d, chunk, n, errstr_r)) < 0) {
			mailstore_deliver_abort(&d);
			return rc;
		}
	}
	return mailstore_deliver_commit(&d, flags, uid_r, errstr_r);
}
