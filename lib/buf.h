/*
 * buf.h - the one growable byte buffer, with a hard limit. Always
 * NUL-terminated (data[len] == 0) yet binary-safe. An append that would pass
 * the limit appends nothing and returns -ENOBUFS, so protocol line and size
 * limits (RFC 5321 4.5.3.1, RFC 1939, RFC 9051) are enforced here, once.
 */
#ifndef POCHTA_BUF_H
#define POCHTA_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;	/* NUL-terminated; NULL until the first append */
	size_t len;	/* bytes in use, not counting the NUL */
	size_t cap;	/* bytes allocated */
	size_t limit;	/* most bytes len may reach; 0 means no limit */
};

/* An empty buffer holding at most limit bytes (0: unlimited). */
void buf_init(struct buf *b, size_t limit);

/* Release the storage; the buffer is empty and usable again. */
void buf_release(struct buf *b);

/* Forget the contents, keep the storage. */
void buf_reset(struct buf *b);

/* Append n bytes. 0, or -ENOBUFS (nothing appended) past the limit. */
int buf_append(struct buf *b, const void *p, size_t n);

/* Append a C string. */
int buf_puts(struct buf *b, const char *s);

/* Append formatted text; -ENOBUFS (nothing appended) past the limit. */
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Remove the first n bytes (n > len empties the buffer). */
void buf_consume(struct buf *b, size_t n);

/* Make room for at least n more bytes; returns where to write them. Call
 * buf_commit() with what was written. -ENOBUFS past the limit: NULL. */
char *buf_space(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);

/*
 * Find the first complete line (ending in LF) at the start of b.
 * Returns its length including the LF; 0 when no LF is buffered yet and the
 * buffered bytes are within max; -ENOBUFS when max bytes are buffered with
 * no LF among them (the line is too long: the caller replies and discards).
 */
long buf_line(const struct buf *b, size_t max);

/* Detach the data (a malloc'd NUL-terminated string, never NULL); the buffer
 * is empty afterwards. Caller frees. */
char *buf_steal(struct buf *b);

#endif
