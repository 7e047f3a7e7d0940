/*
 * queue_writer.h - writing a new queue file (pochta-queue(5)) as smtpd
 * receives a message: create in tmp/, stream the message, then commit
 * (recipients, fsync, rename into incoming/, fsync of the directory).
 * Nothing is in incoming/ until it is all on stable storage, and a failed
 * or abandoned writer leaves nothing behind. Blocking calls for the libuv
 * thread pool; one writer must not be used by two threads at once.
 */
#ifndef POCHTA_QUEUE_WRITER_H
#define POCHTA_QUEUE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "queue_file.h"

struct queue_writer;

/*
 * Create spooldir/tmp/ID (a new ID, O_EXCL, mode 0600) and write the
 * envelope from env: sender (required, "" for <>), client_*, helo,
 * protocol, auth_user, ret, envid, body, smtputf8. Recipients in env are
 * ignored (use queue_writer_add_rcpt); the ID, arrival time and size are
 * set here. 0 and *w_r, or a negative errno and *errstr_r (-EINVAL for a
 * value that cannot be stored, such as an overlong one).
 */
int queue_writer_create(const char *spooldir, const struct queue_env *env,
    struct queue_writer **w_r, const char **errstr_r);

/* The new file's queue ID. */
const char *queue_writer_id(const struct queue_writer *w);

/*
 * Append n message bytes, exactly as they are to be stored (smtpd has
 * already removed the dot-stuffing). Buffered; a write error is reported
 * here or at commit, and sticks: every later call fails the same way.
 * 0 or a negative errno (-ENOSPC, -EDQUOT, -EIO...).
 */
int queue_writer_write(struct queue_writer *w, const void *data, size_t n);

/* Message bytes received so far (for the SIZE limit). */
uint64_t queue_writer_size(const struct queue_writer *w);

/*
 * Add a recipient: canonical address, RFC 3461 ORCPT (NULL if none) and
 * NOTIFY mask. Kept in memory until commit. 0, -EINVAL (empty or overlong
 * value) or -E2BIG (more than QUEUE_FILE_RCPT_MAX).
 */
int queue_writer_add_rcpt(struct queue_writer *w, const char *address,
    const char *orcpt, unsigned notify);

/*
 * Finish the file: flush the message, write the recipient records and the
 * end record, store the message size, fsync, rename into incoming/ and
 * fsync incoming/. Only after 0 may smtpd answer 250. On failure nothing is
 * left in tmp/ or incoming/; -EINVAL without recipients. The writer must
 * still be freed.
 */
int queue_writer_commit(struct queue_writer *w, const char **errstr_r);

/*
 * Free the writer; a file not committed is closed and unlinked (abort).
 * *w becomes NULL. NULL is allowed.
 */
void queue_writer_free(struct queue_writer **w);

#endif
