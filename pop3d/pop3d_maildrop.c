/*
 * pop3d_maildrop.c - the maildrop of a TRANSACTION (RFC 1939 5, 6): the
 * INBOX snapshot and the exclusive lock taken at login, RETR and TOP
 * streamed with back-pressure, and the UPDATE state at QUIT. Mailbox
 * access goes through the mail store only, on the thread pool; the one
 * exception is read(2) of an open message file on the loop, in chunks of
 * POP3D_CHUNK, which costs no more than a socket write. Errors before the
 * first byte of an answer are -ERR [SYS/TEMP]; a message file that fails
 * in the middle of RETR closes the connection, as POP3 cannot say so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mailstore.h"
#include "pop3d.h"
#include "stream.h"
#include "xalloc.h"

/*
 * The maildrop lock (RFC 1939 4: exclusive access while in TRANSACTION) is
 * flock(2) on a file in the mailbox directory: the kernel releases it when
 * the descriptor closes, also when the process dies by kill -9, so a stale
 * lock cannot outlive its session. The file holds the owner's pid for
 * operators, and its mtime is the time of the last login, which is what
 * pop3d_login_delay (RFC 2449 6.5 LOGIN-DELAY) is measured against, for
 * every worker alike. Runs on the thread pool.
 */
static int
lock_take(struct pop3d_session *s, char *err, size_t errlen)
{
	char path[4096], pid[32];
	int fd, n;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", s->mailbox,
	    POP3D_LOCK_NAME) >= sizeof(path)) {
		snprintf(err, errlen, "mailbox path too long");
		return -ENAMETOOLONG;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return -EBUSY;
		snprintf(err, errlen, "lock %s: %s", path, strerror(e));
		return -e;
	}
	s->lock_fd = fd;
	/* An empty file was made just now: there was no login before. */
	struct stat st;
	time_t now = time(NULL);
	if (s->login_delay > 0 && fstat(fd, &st) == 0 && st.st_size > 0 &&
	    now >= st.st_mtime && now - st.st_mtime < (time_t)s->login_delay)
		return -EAGAIN;
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0)
		(void)0;	/* informational only */
	return 0;
}

static void
msgs_free(struct pop3d_session *s)
{
	for (size_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i].uidl);
	free(s->msgs);
	s->msgs = NULL;
	s->nmsgs = 0;
}

int
pop3d_maildrop_open(struct pop3d_session *s, char *err, size_t errlen)
{
	const char *e = NULL;
	int r;

	if ((r = mailstore_open(s->mailbox, &s->store, &e)) < 0) {
		snprintf(err, errlen, "%s", e ? e : strerror(-r));
		/* -EBUSY and -EAGAIN mean the lock and the login delay. */
		return r == -EBUSY || r == -EAGAIN ? -EIO : r;
	}
	if ((r = lock_take(s, err, errlen)) < 0)
		goto fail;
	r = mailstore_folder_open(s->store, MAILSTORE_INBOX, 0, &s->folder,
	    &e);
	if (r < 0) {
		snprintf(err, errlen, "%s", e ? e : strerror(-r));
		if (r == -EBUSY || r == -EAGAIN)
			r = -EIO;
		goto fail;
	}
	s->nmsgs = mailstore_folder_count(s->folder);
	s->msgs = xcalloc(s->nmsgs ? s->nmsgs : 1, sizeof(*s->msgs));
	for (size_t i = 0; i < s->nmsgs; i++) {
		const struct mailstore_msg *m =
		    mailstore_folder_msg(s->folder, i);
		s->msgs[i].uid = m->uid;
		s->msgs[i].vsize = m->vsize;
		s->msgs[i].uidl = xstrdup(mailstore_uidl(m));
	}
	return 0;
fail:
	pop3d_maildrop_close(s);
	return r;
}

void
pop3d_maildrop_close(struct pop3d_session *s)
{
	if (s->login_user != NULL) {
		size_t ndel = 0;
		uint64_t bdel = 0;
		for (size_t i = 0; i < s->nmsgs; i++)
			if (s->msgs[i].deleted) {
				ndel++;
				bdel += s->msgs[i].vsize;
			}
		/* Without UPDATE nothing was removed (RFC 1939 6). */
		if (s->updated <= 0)
			ndel = bdel = 0;
		log_info("%s: logout user=%s update=%s retrieved=%llu/%llu "
			 "deleted=%zu/%llu", s->id, s->login_user,
		    s->updated > 0 ? "yes" : s->updated < 0 ? "failed" : "no",
		    (unsigned long long)s->retr_count,
		    (unsigned long long)s->retr_bytes, ndel,
		    (unsigned long long)bdel);
		free(s->login_user);
		s->login_user = NULL;
	}
	mailstore_folder_free(&s->folder);
	mailstore_free(&s->store);
	if (s->lock_fd >= 0) {
		close(s->lock_fd);
		s->lock_fd = -1;
	}
	msgs_free(s);
}

/*
 * RFC 1939 6: mark what was retrieved Seen (moving it from new/ to cur/),
 * then remove what was marked deleted, each in one batch: a few index
 * commits for the whole maildrop rather than one per message. Messages
 * removed meanwhile by another client are skipped: that is done too. Runs
 * on the thread pool.
 */
static void
update_work(uv_work_t *w)
{
	struct pop3d_session *s = w->data;
	uint32_t *uids = xcalloc(s->nmsgs ? s->nmsgs : 1, sizeof(*uids));
	const char *e = NULL;
	size_t n = 0;
	int r;

	s->work_result = 0;
	s->work_err[0] = '\0';
	for (size_t i = 0; i < s->nmsgs; i++) {
		struct pop3d_msg *m = &s->msgs[i];
		if (!m->retrieved || m->deleted)
			continue;
		const struct mailstore_msg *sm =
		    mailstore_folder_find(s->folder, m->uid);
		if (sm != NULL && !(sm->flags & MAILSTORE_F_SEEN))
			uids[n++] = m->uid;
	}
	r = mailstore_msgs_set_flags(s->folder, uids, n, MAILSTORE_F_SEEN, 0,
	    NULL, &e);
	if (r == 0) {
		n = 0;
		for (size_t i = 0; i < s->nmsgs; i++)
			if (s->msgs[i].deleted)
				uids[n++] = s->msgs[i].uid;
		r = mailstore_msgs_expunge(s->folder, uids, n, NULL, &e);
	}
	if (r < 0) {
		if (e != NULL)
			snprintf(s->work_err, sizeof(s->work_err), "%s", e);
		s->work_result = r;
	}
	free(uids);
}

static void
update_done(uv_work_t *w, int status)
{
	struct pop3d_session *s = w->data;
	int r = status < 0 ? -ECANCELED : s->work_result;

	s->updated = r < 0 ? -1 : 1;
	if (s->stream == NULL) {
		pop3d_resume(s);
		return;
	}
	if (r < 0) {
		log_warn("%s: update of the maildrop of %s failed: %s", s->id,
		    s->login_user, s->work_err[0] ? s->work_err :
		    strerror(-r));
		pop3d_reply(s, "-ERR [SYS/TEMP] some deleted messages not "
			       "removed");
	} else
		pop3d_reply(s, "+OK %s POP3 server signing off",
		    s->srv->cfg.hostname);
	/* The lock goes before the client hears the answer, so it can log
	 * in again at once. */
	pop3d_maildrop_close(s);
	pop3d_close_after_reply(s);
	pop3d_resume(s);
}

void
pop3d_maildrop_update(struct pop3d_session *s)
{
	s->state = POP3D_UPDATE;
	s->work.data = s;
	pop3d_pause(s);
	uv_queue_work(s->srv->loop, &s->work, update_work, update_done);
}

void
pop3d_retr_cleanup(struct pop3d_session *s)
{
	if (s->retr_fd >= 0) {
		close(s->retr_fd);
		s->retr_fd = -1;
	}
}

static void
retr_finish(struct pop3d_session *s)
{
	struct pop3d_msg *m = &s->msgs[s->retr_idx];

	pop3d_retr_cleanup(s);
	if (!s->retr_top) {
		m->retrieved = 1;
		s->retr_count++;
		s->retr_bytes += m->vsize;
	}
	pop3d_resume(s);
}

/* Send the message until the write queue is full; drain brings us back. */
static void
retr_pump(struct pop3d_session *s)
{
	/* On the heap: 64 KiB is too much for a stack frame. */
	char *chunk = xmalloc(POP3D_CHUNK);
	struct buf out;

	buf_init(&out, 0);
	while (s->stream != NULL && !stream_closing(s->stream) &&
	    !stream_write_full(s->stream)) {
		ssize_t n = read(s->retr_fd, chunk, POP3D_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_warn("%s: read of message %zu of %s failed: %s",
			    s->id, s->retr_idx + 1, s->login_user,
			    strerror(errno));
			pop3d_retr_cleanup(s);
			stream_abort(s->stream);
			break;
		}
		if (n > 0)
			pop3d_stuff_feed(&s->stuff, chunk, (size_t)n, &out);
		if (n == 0 || s->stuff.done) {
			pop3d_stuff_finish(&s->stuff, &out);
			stream_write(s->stream, out.data, out.len);
			buf_release(&out);
			free(chunk);
			retr_finish(s);
			return;
		}
		stream_write(s->stream, out.data, out.len);
		buf_reset(&out);
	}
	buf_release(&out);
	free(chunk);
}

void
pop3d_retr_drain(struct pop3d_session *s)
{
	if (s->retr_fd >= 0 && !s->busy)
		retr_pump(s);
}

static void
open_work(uv_work_t *w)
{
	struct pop3d_session *s = w->data;
	const char *e = NULL;
	int fd = -1;

	s->work_err[0] = '\0';
	s->work_result = mailstore_msg_open(s->folder,
	    s->msgs[s->retr_idx].uid, &fd, &e);
	if (s->work_result == 0)
		s->retr_fd = fd;
	else if (e != NULL)
		snprintf(s->work_err, sizeof(s->work_err), "%s", e);
}

static void
open_done(uv_work_t *w, int status)
{
	struct pop3d_session *s = w->data;
	int r = status < 0 ? -ECANCELED : s->work_result;

	if (s->stream == NULL) {
		pop3d_retr_cleanup(s);
		pop3d_resume(s);
		return;
	}
	if (r == -ENOENT) {
		pop3d_reply_error(s, "-ERR message %zu was removed by another "
				     "client", s->retr_idx + 1);
		pop3d_resume(s);
		return;
	}
	if (r < 0) {
		log_warn("%s: cannot open message %zu of %s: %s", s->id,
		    s->retr_idx + 1, s->login_user, s->work_err[0] ?
		    s->work_err : strerror(-r));
		pop3d_reply(s, "-ERR [SYS/TEMP] cannot read message %zu",
		    s->retr_idx + 1);
		pop3d_resume(s);
		return;
	}
	if (s->retr_top)
		pop3d_reply(s, "+OK top of message follows");
	else
		pop3d_reply(s, "+OK %llu octets",
		    (unsigned long long)s->msgs[s->retr_idx].vsize);
	pop3d_flush(s);
	pop3d_stuff_init(&s->stuff, s->retr_top, s->retr_lines);
	/* Input stays paused until the message is out: retr_fd >= 0. */
	s->busy = 0;
	retr_pump(s);
}

void
pop3d_retr_start(struct pop3d_session *s, size_t idx, int top,
    uint64_t lines)
{
	s->retr_idx = idx;
	s->retr_top = top;
	s->retr_lines = lines;
	s->work.data = s;
	pop3d_pause(s);
	uv_queue_work(s->srv->loop, &s->work, open_work, open_done);
}
