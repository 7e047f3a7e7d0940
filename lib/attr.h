/*
 * attr.h - attribute lists, the messages of pochta's internal protocol
 * (pochta-protocol(7)): "name=value" lines ended by an empty line, values
 * percent-escaped so that no value can break the framing. This module only
 * encodes and decodes; lib/ipc moves the bytes. Decoding enforces hard
 * limits and rejects anything malformed with a message, never a crash.
 */
#ifndef POCHTA_ATTR_H
#define POCHTA_ATTR_H

#include <stddef.h>

#include "buf.h"

/* Defaults of struct attr_limits. */
#define ATTR_MAX_LINE	(64 * 1024)	/* one encoded line, LF included */
#define ATTR_MAX_ATTRS	10000		/* attributes in one message */
#define ATTR_MAX_SIZE	(1024 * 1024)	/* one encoded message */

/*
 * What a decoder accepts. Exceeding any limit is an error (-EMSGSIZE), not
 * a reason to allocate more. A zero field means its default above.
 */
struct attr_limits {
	size_t max_line;
	size_t max_attrs;
	size_t max_size;
};

/* An ordered list of name/value pairs; names may repeat. Opaque. */
struct attr_list;

/* A new empty list. Never fails. */
struct attr_list *attr_list_new(void);

/* Free the list and every value in it; *list becomes NULL. NULL is fine. */
void attr_list_free(struct attr_list **list);

/* Whether name is a valid attribute name: one or more of [a-z0-9_-]. */
int attr_name_valid(const char *name);

/*
 * Append name=value, value being len arbitrary bytes (NUL included); both
 * are copied. Returns 0, or -EINVAL when the name is not valid.
 */
int attr_add(struct attr_list *list, const char *name, const void *value,
    size_t len);

/* attr_add() of a NUL-terminated string. */
int attr_add_str(struct attr_list *list, const char *name, const char *value);

/* attr_add() of a printf-formatted value. */
int attr_addf(struct attr_list *list, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Number of attributes in the list. */
size_t attr_count(const struct attr_list *list);

/*
 * The i-th attribute (0-based, in order of addition or arrival): 0 with
 * *name_r, *value_r and (if len_r is not NULL) *len_r set, or -ENOENT past
 * the end. Strings belong to the list. Every value is NUL-terminated after
 * its len bytes, but may contain NUL itself.
 */
int attr_at(const struct attr_list *list, size_t i, const char **name_r,
    const char **value_r, size_t *len_r);

/*
 * The value of the first attribute called name, or NULL. *len_r (if not
 * NULL) gets its length. The value belongs to the list.
 */
const char *attr_get(const struct attr_list *list, const char *name,
    size_t *len_r);

/*
 * Like attr_get(), but NULL also when the value contains a NUL byte, so a
 * caller treating it as a C string cannot be fooled by "bob\0@evil".
 */
const char *attr_get_str(const struct attr_list *list, const char *name);

/*
 * The value of the first attribute called name as a decimal number no
 * greater than max: 0 and *v_r; -ENOENT when there is none; -EINVAL when
 * the value is not digits only (no sign, space or prefix) or is too big.
 */
int attr_get_ull(const struct attr_list *list, const char *name,
    unsigned long long max, unsigned long long *v_r);

/*
 * Iterate over the attributes called name: set *iter to 0, then call until
 * NULL. Returns each value in turn (length in *len_r if not NULL).
 */
const char *attr_next(const struct attr_list *list, const char *name,
    size_t *iter, size_t *len_r);

/* How many attributes are called name. */
size_t attr_count_name(const struct attr_list *list, const char *name);

/*
 * Append the encoded message (every line, then the empty line) to out.
 * Returns 0, or -ENOBUFS when out's limit is reached (out is then left as
 * it was).
 */
int attr_encode(const struct attr_list *list, struct buf *out);

/*
 * A streaming decoder: feed it the bytes as they arrive, get complete
 * lists out. Each complete line is decoded once, so a message arriving a
 * byte at a time costs no more than one arriving whole.
 */
struct attr_decoder;

/* A new decoder with these limits (NULL: the defaults). Never fails. */
struct attr_decoder *attr_decoder_new(const struct attr_limits *limits);

/* Free the decoder and any half-decoded message; *dec becomes NULL. */
void attr_decoder_free(struct attr_decoder **dec);

/* Forget any half-decoded message, e.g. after an error. */
void attr_decoder_reset(struct attr_decoder *dec);

/* Whether lines of a message not yet complete have been consumed, so
 * that an end of input now would cut a message short. */
int attr_decoder_pending(const struct attr_decoder *dec);

/*
 * Decode from data[0..len). The caller must present again, at the start of
 * data, every byte that an earlier call did not consume.
 * Returns:
 *   1  a message is complete: *list_r is a new list (the caller frees it),
 *      *consumed_r counts the bytes used, up to and including the empty
 *      line. Call again for any further message in the rest of data.
 *   0  every complete line was consumed (*consumed_r of them) and more
 *      bytes are needed.
 *   -EBADMSG   malformed input: a line without "=", a bad name, a bad
 *              escape, a raw control character in a value.
 *   -EMSGSIZE  a limit was exceeded.
 * On error *errstr_r says what was wrong and the decoder is reset; the
 * stream cannot be resynchronised, so the caller drops the connection.
 * A line may end in CR LF as well as LF, for typing at it with socat.
 */
int attr_decoder_feed(struct attr_decoder *dec, const char *data, size_t len,
    size_t *consumed_r, struct attr_list **list_r, const char **errstr_r);

/*
 * Decode one message from the start of in without a decoder of one's own
 * (limits NULL: the defaults). Returns 1 with *list_r and *consumed_r (the
 * caller then buf_consume()s), 0 when in holds no complete message yet, or
 * a negative errno and *errstr_r as attr_decoder_feed(). The bytes of in are
 * not removed.
 */
int attr_parse(const struct buf *in, const struct attr_limits *limits,
    struct attr_list **list_r, size_t *consumed_r, const char **errstr_r);

#endif
