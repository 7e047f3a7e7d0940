/*
 * queue_file.h - the queue file format (pochta-queue(5)): the envelope
 * structure, the reader used by qmgr and the delivery agents, and the
 * in-place updates qmgr makes. Every malformed file is a clean error with a
 * constant *errstr_r, never a crash; qmgr moves such files to corrupt/.
 * Blocking calls for the libuv thread pool; one struct queue_file must not
 * be used by two threads at once.
 */
#ifndef POCHTA_QUEUE_FILE_H
#define POCHTA_QUEUE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "queue.h"

/* The format version this code writes and reads. */
#define QUEUE_FILE_VERSION 1

/* The longest envelope line, LF included; longer is a corrupt file. */
#define QUEUE_FILE_LINE_MAX 16384
/* The most bytes of envelope before the message. */
#define QUEUE_FILE_HEAD_MAX (1024 * 1024)
/*
 * The most bytes of records after the message; the writer uses at most
 * half, and appends that would pass it fail with -EFBIG.
 */
#define QUEUE_FILE_TAIL_MAX (64 * 1024 * 1024)
/* The most recipients one file may hold. */
#define QUEUE_FILE_RCPT_MAX 100000
/* Deferral reasons longer than this are cut (at a UTF-8 boundary). */
#define QUEUE_FILE_REASON_MAX 2000

/* Recipient status: the first byte of its record, rewritten in place. */
enum queue_rcpt_status {
	QUEUE_RCPT_PENDING = 'R',	/* not yet delivered */
	QUEUE_RCPT_DELIVERED = 'D',	/* delivered */
	QUEUE_RCPT_BOUNCED = 'B',	/* permanent failure, bounce sent */
	QUEUE_RCPT_FORWARDED = 'F',	/* replaced by appended recipients */
};

/* DSN NOTIFY (RFC 3461 4.1); 0 means the parameter was not given. */
#define QUEUE_NOTIFY_NEVER 0x01
#define QUEUE_NOTIFY_SUCCESS 0x02
#define QUEUE_NOTIFY_FAILURE 0x04
#define QUEUE_NOTIFY_DELAY 0x08

/* DSN RET (RFC 3461 4.3). */
enum queue_ret {
	QUEUE_RET_NONE = 0,	/* not given */
	QUEUE_RET_FULL,
	QUEUE_RET_HDRS,
};

/* BODY (RFC 6152, RFC 3030). */
enum queue_body {
	QUEUE_BODY_7BIT = 0,
	QUEUE_BODY_8BITMIME,
	QUEUE_BODY_BINARYMIME,
};

struct queue_rcpt {
	char status;		/* enum queue_rcpt_status */
	char *address;		/* canonical local@domain */
	char *orcpt;		/* RFC 3461 ORCPT "type;addr" or NULL */
	unsigned notify;	/* QUEUE_NOTIFY_* */
	off_t status_off;	/* file offset of the status byte */
	/* From deferral records, the last one wins: */
	unsigned ndefer;	/* times deferred */
	int64_t defer_time;	/* when last deferred, 0 if never */
	char *defer_reason;	/* why, or NULL */
};

/*
 * The envelope. Strings are NUL-terminated and may hold any byte but NUL
 * (the file escapes them); absent optional strings are NULL. The writer
 * takes one of these filled by the caller; the reader returns one it owns.
 */
struct queue_env {
	char id[QUEUE_ID_SIZE];	/* set by the writer */
	int64_t arrival_sec;	/* set by the writer */
	long arrival_usec;
	char *sender;		/* "" for the null reverse-path <> */
	char *client_addr;
	char *client_name;
	char *helo;
	char *protocol;		/* SMTP, ESMTP, ESMTPSA, ... */
	char *auth_user;
	enum queue_ret ret;
	char *envid;		/* RFC 3461 ENVID, xtext-decoded */
	enum queue_body body;
	int smtputf8;		/* RFC 6531 */
	uint64_t msg_size;	/* set by the writer */
	int64_t next_retry;	/* latest deferral's retry time, 0 if none */
	struct queue_rcpt *rcpts;
	size_t nrcpt;
};

struct queue_file;

/*
 * Open and parse the queue file at path, read-only or (writable != 0) for
 * the updates below. 0 and *qf_r, or a negative errno and *errstr_r:
 * -EBADMSG for a corrupt file, else what open(2) or read(2) said.
 */
int queue_file_open(const char *path, int writable, struct queue_file **qf_r,
    const char **errstr_r);

/*
 * The same from an open file descriptor (a delivery agent gets one from
 * qmgr). On success the queue file owns fd and closes it in
 * queue_file_free; on failure the caller still owns it.
 */
int queue_file_fdopen(int fd, int writable, struct queue_file **qf_r,
    const char **errstr_r);

/* Close and free; *qf becomes NULL. NULL is allowed. */
void queue_file_free(struct queue_file **qf);

/* The parsed envelope, owned by qf. */
const struct queue_env *queue_file_env(const struct queue_file *qf);

/* The descriptor, owned by qf. */
int queue_file_fd(const struct queue_file *qf);

/* Where the message starts in the file, and its length in bytes. */
off_t queue_file_msg_offset(const struct queue_file *qf);
uint64_t queue_file_msg_size(const struct queue_file *qf);

/*
 * Read up to len bytes of the message starting off bytes into it, with
 * pread(2) (so it never moves the descriptor's offset). Returns the number
 * of bytes read, 0 at the end of the message, or a negative errno;
 * -EBADMSG if the file became shorter than its envelope says.
 */
ssize_t queue_file_read_msg(struct queue_file *qf, void *buf, size_t len,
    uint64_t off);

/* Pending recipients left: 0 means the file may be removed. */
size_t queue_file_pending(const struct queue_file *qf);

/*
 * Mark recipient i done: rewrite its status byte in place with status (D,
 * B or F) and fdatasync(2), so the change is on disk when this returns.
 * -EINVAL for a bad index or status, -EALREADY if it is not pending,
 * -EBADF if not opened writable, or an I/O errno.
 */
int queue_file_mark(struct queue_file *qf, size_t i,
    enum queue_rcpt_status status, const char **errstr_r);

/*
 * Record that delivery to recipient i was deferred at now for reason (any
 * bytes, cut to QUEUE_FILE_REASON_MAX) and is to be retried at next_retry:
 * append one record and fdatasync. A crash while appending leaves at most a
 * torn last line, which the reader ignores. Errors as queue_file_mark.
 */
int queue_file_defer(struct queue_file *qf, size_t i, const char *reason,
    int64_t now, int64_t next_retry, const char **errstr_r);

/*
 * Append a new pending recipient (an alias expansion, say) and fdatasync;
 * its index is the new nrcpt - 1. Mark the original F afterwards: a crash in
 * between delivers the expansion twice at worst, never loses it.
 */
int queue_file_add_rcpt(struct queue_file *qf, const char *address,
    const char *orcpt, unsigned notify, const char **errstr_r);

/*
 * The fixed-width first line: "pochta-queue V OFFSET SIZE\n" with the
 * message offset in 10 and its size in 20 zero-padded decimal digits, so
 * the writer can fill in the size in place once the message is complete.
 */
#define QUEUE_FILE_HEADER_LEN 47
void queue_file_header(char out[QUEUE_FILE_HEADER_LEN + 1], uint64_t msg_off,
    uint64_t msg_size);

/*
 * Append one recipient record line (status first, LF last) onto out.
 * -EINVAL for an empty address or a line past QUEUE_FILE_LINE_MAX, or
 * -ENOBUFS from the buffer's limit; nothing is appended then.
 */
int queue_file_rcpt_record(struct buf *out, enum queue_rcpt_status status,
    const char *address, const char *orcpt, unsigned notify);

/* Free what a reader-filled queue_env holds (not env itself). */
void queue_env_clear(struct queue_env *env);

/*
 * Percent-escape src (n bytes) onto out for an envelope line: '%', bytes
 * below 0x21 and 0x7f become %XX, everything else (UTF-8 too) stays.
 * 0 or -ENOBUFS from the buffer's limit.
 */
int queue_file_escape(struct buf *out, const char *src, size_t n);

/*
 * Decode n bytes of escaped text into a new NUL-terminated string (caller
 * frees). -EBADMSG for a malformed escape, a raw byte that must have been
 * escaped, or an escaped NUL.
 */
int queue_file_unescape(const char *src, size_t n, char **dst_r);

/* The record text of a NOTIFY mask ("SUCCESS,DELAY", "NEVER"), "" for 0. */
const char *queue_file_notify_str(unsigned notify, char *tmp, size_t size);

#endif
