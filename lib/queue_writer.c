/*
 * queue_writer.c - writing a new queue file (queue_writer.h, the format in
 * pochta-queue(5)). Durability rule of DESIGN 3: the file reaches incoming/
 * only after fsync of the file, and its directory entry is synced before
 * commit returns. Any error is sticky, and the file is then unlinked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "queue_writer.h"
#include "xalloc.h"

/* Message bytes buffered before a write(2). */
#define WRITER_CHUNK (64 * 1024)
/* Tries at a fresh ID when one is taken (another host on shared storage). */
#define WRITER_ID_TRIES 10

struct queue_writer {
	char *spooldir;
	char *tmp_path;		/* NULL once unlinked or renamed */
	int fd;
	char id[QUEUE_ID_SIZE];
	struct buf chunk;	/* message bytes not yet written */
	struct buf rcpts;	/* recipient records, written at commit */
	size_t nrcpt;
	uint64_t size;
	off_t msg_off;
	int error;		/* sticky negative errno */
	int committed;
};

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Close and unlink the temporary file, once. */
static void
writer_discard(struct queue_writer *w)
{
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
	}
	if (w->tmp_path != NULL) {
		unlink(w->tmp_path);
		free(w->tmp_path);
		w->tmp_path = NULL;
	}
}

static int
writer_fail(struct queue_writer *w, int err)
{
	if (w->error == 0)
		w->error = err;
	writer_discard(w);
	return w->error;
}

/* One "name value" envelope line, the value escaped. */
static int
env_record(struct buf *out, const char *name, const char *value)
{
	size_t start = out->len;
	int r;

	if (value == NULL)
		return 0;
	r = buf_printf(out, "%s ", name);
	if (r == 0)
		r = queue_file_escape(out, value, strlen(value));
	if (r == 0)
		r = buf_puts(out, "\n");
	if (r == 0 && out->len - start > QUEUE_FILE_LINE_MAX)
		r = -EINVAL;
	return r < 0 ? -EINVAL : 0;
}

static int
env_records(struct buf *out, const struct queue_env *env, const char *id,
    uint64_t arrival_us)
{
	static const char *const body[] = { "7BIT", "8BITMIME",
		"BINARYMIME" };
	static const char *const ret[] = { NULL, "FULL", "HDRS" };
	int r = 0;

	if ((unsigned)env->body > QUEUE_BODY_BINARYMIME ||
	    (unsigned)env->ret > QUEUE_RET_HDRS)
		return -EINVAL;
	r |= buf_printf(out, "id %s\narrival %llu.%06llu\n", id,
	    (unsigned long long)(arrival_us / 1000000),
	    (unsigned long long)(arrival_us % 1000000));
	r |= env_record(out, "sender", env->sender);
	r |= env_record(out, "client_addr", env->client_addr);
	r |= env_record(out, "client_name", env->client_name);
	r |= env_record(out, "helo", env->helo);
	r |= env_record(out, "protocol", env->protocol);
	r |= env_record(out, "auth_user", env->auth_user);
	r |= env_record(out, "ret", ret[env->ret]);
	r |= env_record(out, "envid", env->envid);
	r |= env_record(out, "body", body[env->body]);
	r |= env_record(out, "smtputf8", env->smtputf8 ? "yes" : "no");
	r |= buf_puts(out, "\n");
	return r != 0 ? -EINVAL : 0;
}

/* Open tmp/ID under a fresh ID; EEXIST means the ID is taken: retry. */
static int
writer_open(struct queue_writer *w)
{
	for (int i = 0; i < WRITER_ID_TRIES; i++) {
		queue_id_new(w->id);
		w->tmp_path = queue_path(w->spooldir, QUEUE_TMP, w->id);
		w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL |
		    O_CLOEXEC | O_NOFOLLOW, 0600);
		if (w->fd >= 0)
			return 0;
		free(w->tmp_path);
		w->tmp_path = NULL;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

int
queue_writer_create(const char *spooldir, const struct queue_env *env,
    struct queue_writer **w_r, const char **errstr_r)
{
	struct queue_writer *w;
	char first[QUEUE_FILE_HEADER_LEN + 1];
	struct buf rec;
	int r;

	*w_r = NULL;
	if (env->sender == NULL)
		return *errstr_r = "envelope without sender", -EINVAL;
	w = xcalloc(1, sizeof(*w));
	w->fd = -1;
	w->spooldir = xstrdup(spooldir);
	buf_init(&w->chunk, WRITER_CHUNK);
	/* Half the reader's limit, leaving the rest for qmgr's appends. */
	buf_init(&w->rcpts, QUEUE_FILE_TAIL_MAX / 2);
	if ((r = writer_open(w)) < 0) {
		*errstr_r = "cannot create queue file";
		queue_writer_free(&w);
		return r;
	}
	buf_init(&rec, QUEUE_FILE_HEAD_MAX - QUEUE_FILE_HEADER_LEN);
	if ((r = env_records(&rec, env, w->id, queue_id_time_us(w->id))) < 0) {
		*errstr_r = "envelope value too long or invalid";
		goto fail;
	}
	w->msg_off = QUEUE_FILE_HEADER_LEN + (off_t)rec.len;
	/* The size is filled in at commit; the file is invisible till then. */
	queue_file_header(first, (uint64_t)w->msg_off, 0);
	if ((r = write_all(w->fd, first, QUEUE_FILE_HEADER_LEN)) < 0 ||
	    (r = write_all(w->fd, rec.data, rec.len)) < 0) {
		*errstr_r = "cannot write queue file";
		goto fail;
	}
	buf_release(&rec);
	*w_r = w;
	return 0;
fail:
	buf_release(&rec);
	queue_writer_free(&w);
	return r;
}

const char *
queue_writer_id(const struct queue_writer *w)
{
	return w->id;
}

uint64_t
queue_writer_size(const struct queue_writer *w)
{
	return w->size;
}

static int
writer_flush(struct queue_writer *w)
{
	int r;

	if (w->chunk.len == 0)
		return 0;
	if ((r = write_all(w->fd, w->chunk.data, w->chunk.len)) < 0)
		return writer_fail(w, r);
	buf_reset(&w->chunk);
	return 0;
}

int
queue_writer_write(struct queue_writer *w, const void *data, size_t n)
{
	int r;

	if (w->error != 0)
		return w->error;
	if (w->committed || w->fd < 0)
		return -EINVAL;
	w->size += n;
	if (w->chunk.len + n <= WRITER_CHUNK)
		return buf_append(&w->chunk, data, n) < 0 ?
		    writer_fail(w, -EIO) : 0;
	if ((r = writer_flush(w)) < 0)
		return r;
	if (n >= WRITER_CHUNK) {
		if ((r = write_all(w->fd, data, n)) < 0)
			return writer_fail(w, r);
		return 0;
	}
	return buf_append(&w->chunk, data, n) < 0 ? writer_fail(w, -EIO) : 0;
}

int
queue_writer_add_rcpt(struct queue_writer *w, const char *address,
    const char *orcpt, unsigned notify)
{
	int r;

	if (w->nrcpt >= QUEUE_FILE_RCPT_MAX)
		return -E2BIG;
	r = queue_file_rcpt_record(&w->rcpts, QUEUE_RCPT_PENDING, address,
	    orcpt, notify);
	if (r == -ENOBUFS)
		return -E2BIG;
	if (r < 0)
		return r;
	w->nrcpt++;
	return 0;
}

/* Recipients, end record, size in the first line, fsync. */
static int
writer_finish_file(struct queue_writer *w, const char **errstr_r)
{
	char first[QUEUE_FILE_HEADER_LEN + 1];
	char end[32];
	ssize_t nw;
	int r, n;

	if ((r = writer_flush(w)) < 0)
		return *errstr_r = "cannot write queue file", r;
	n = snprintf(end, sizeof(end), "end %zu\n", w->nrcpt);
	if ((r = write_all(w->fd, w->rcpts.data, w->rcpts.len)) < 0 ||
	    (r = write_all(w->fd, end, (size_t)n)) < 0)
		return *errstr_r = "cannot write queue file", r;
	queue_file_header(first, (uint64_t)w->msg_off, w->size);
	nw = pwrite(w->fd, first, QUEUE_FILE_HEADER_LEN, 0);
	if (nw != QUEUE_FILE_HEADER_LEN)
		return *errstr_r = "cannot write queue file",
		    nw < 0 ? -errno : -EIO;
	if (fsync(w->fd) < 0)
		return *errstr_r = "cannot sync queue file", -errno;
	if (close(w->fd) < 0) {
		w->fd = -1;
		return *errstr_r = "cannot close queue file", -errno;
	}
	w->fd = -1;
	return 0;
}

int
queue_writer_commit(struct queue_writer *w, const char **errstr_r)
{
	char *dst, *dir;
	int r;

	if (w->committed)
		return *errstr_r = "queue file already committed", -EINVAL;
	if (w->error != 0)
		return *errstr_r = "cannot write queue file", w->error;
	if (w->nrcpt == 0) {
		*errstr_r = "no recipients";
		return writer_fail(w, -EINVAL);
	}
	if ((r = writer_finish_file(w, errstr_r)) < 0)
		return writer_fail(w, r);
	dst = queue_path(w->spooldir, QUEUE_INCOMING, w->id);
	if (rename(w->tmp_path, dst) < 0) {
		free(dst);
		*errstr_r = "cannot move queue file into incoming";
		return writer_fail(w, -errno);
	}
	free(w->tmp_path);
	w->tmp_path = NULL;
	dir = xasprintf("%s/%s", w->spooldir, QUEUE_INCOMING);
	r = queue_dir_sync(dir);
	free(dir);
	if (r < 0) {
		/*
		 * Not durable, so not acknowledged: take the file back. The
		 * client retries; a duplicate is better than a loss.
		 */
		unlink(dst);
		free(dst);
		*errstr_r = "cannot sync incoming directory";
		return writer_fail(w, r);
	}
	free(dst);
	w->committed = 1;
	return 0;
}

void
queue_writer_free(struct queue_writer **w)
{
	if (*w == NULL)
		return;
	writer_discard(*w);
	buf_release(&(*w)->chunk);
	buf_release(&(*w)->rcpts);
	free((*w)->spooldir);
	free(*w);
	*w = NULL;
}
