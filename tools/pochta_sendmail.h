/*
 * pochta_sendmail.h - what the files of the `sendmail` command share: the
 * message being submitted and its spool, the address and message functions
 * of pochta_sendmail_msg.c, and the helpers of pochta_sendmail.c they use.
 * Private to tools/pochta_sendmail*.c.
 */
#ifndef POCHTA_TOOL_SENDMAIL_H
#define POCHTA_TOOL_SENDMAIL_H

#include <stddef.h>

#include "buf.h"

/* Bytes read or written at a time: standard input, the temporary file and
 * the connection to smtpd. */
#define SM_IO_CHUNK (64 * 1024)

/* A list of strings, each owned by the list. */
struct sm_list {
	char **v;
	size_t n;
};

/* The message body: in memory while small, then in a temporary file. */
struct sm_spool {
	struct buf mem;		/* everything, or the unwritten tail */
	int fd;			/* -1 while in memory */
	size_t len;		/* bytes in the spool, in all */
};

/* One header field, with its continuation lines and their CRLFs. */
struct sm_field {
	size_t off;
	size_t len;
	size_t namelen;
};

struct sm_msg {
	struct buf hdr;		/* the header section, CRLF lines */
	struct sm_field *fields;
	size_t nfields;
	int in_header;
	int separator;		/* the header section had an end */
	struct sm_spool body;
	size_t size;		/* octets read, after LF -> CRLF */
	size_t max_size;
	size_t max_line;
	size_t lineno;
	int eightbit;
	int dot_ends;		/* no -i: a line "." ends the message */
	int done;
};

/* pochta_sendmail.c */

/* Print "sendmail: ", the message and a newline to stderr. */
void pochta_sendmail_err(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/*
 * A copy of the n bytes at s that is safe to print on stderr: control
 * characters become '?'. The caller frees it.
 */
char *pochta_sendmail_printable(const char *s, size_t n);

/* Append s to l, which takes ownership of it. */
void pochta_sendmail_list_push(struct sm_list *l, char *s);

/* Free every string of l and its array; l is left empty and reusable. */
void pochta_sendmail_list_clear(struct sm_list *l);

/* pochta_sendmail_msg.c: addresses */

/*
 * Parse an RFC 5322 3.4 address-list (a header field body, unfolded, or a
 * command-line argument) of len bytes at s: display names, comments, quoted
 * strings, angle addresses, groups. Each address is appended to out as
 * written (unqualified, unchecked), as a copy owned by out. Returns 0, or
 * -EINVAL on a syntax error, printing nothing; out may then hold the
 * addresses that came before the error.
 */
int pochta_sendmail_msg_alist_parse(const char *s, size_t len,
    struct sm_list *out);

/*
 * Check one address and give it the form MAIL and RCPT carry: "<>" is the
 * null sender (only if allow_null), an address without a domain gets
 * @host. what names the address in error messages. Sets *utf8_r to 1 when
 * the address needs SMTPUTF8 and leaves it alone otherwise. Returns a new
 * canonical string ("" for the null sender) that the caller frees, or NULL
 * after printing why the address is refused.
 */
char *pochta_sendmail_msg_addr_check(const char *raw, const char *host,
    int allow_null, const char *what, int *utf8_r);

/*
 * Drop repeated addresses from l (one RCPT each would mean one copy each),
 * freeing them; the first of equal addresses stays, and the order of the
 * rest is kept.
 */
void pochta_sendmail_msg_list_uniq(struct sm_list *l);

/* pochta_sendmail_msg.c: the message */

/*
 * Make m an empty message: no header fields, body in memory, the header
 * section limited to SM_HEADER_MAX. The caller then sets max_size (0: no
 * limit), max_line and dot_ends. Free with pochta_sendmail_msg_release().
 */
void pochta_sendmail_msg_init(struct sm_msg *m);

/*
 * Read the message from fd until end of file, or a line "." if dot_ends:
 * LF or CRLF line ends (stored as CRLF), a last line without one gets one.
 * Header fields go to m->hdr and m->fields, the rest to m->body. A NUL, a
 * bare CR, a line over max_line or a message over max_size is refused.
 * Returns 0, or a sysexits(3) status after printing why.
 */
int pochta_sendmail_msg_read(struct sm_msg *m, int fd);

/* Free what m holds, including the temporary file of its body. */
void pochta_sendmail_msg_release(struct sm_msg *m);

/* Whether header field i of m is named name (ASCII, any case). */
int pochta_sendmail_msg_field_is(const struct sm_msg *m, size_t i,
    const char *name);

/*
 * -t: every address of every To, Cc and Bcc field of m, unfolded (RFC 5322
 * 2.2.3), appended to out as written (unchecked). Returns 0, or EX_DATAERR
 * after printing which field is malformed.
 */
int pochta_sendmail_msg_recipients(const struct sm_msg *m,
    struct sm_list *out);

/*
 * Hand the whole of spool sp to fn, in order and in pieces (a temporary
 * file SM_IO_CHUNK bytes at a time); can be repeated. Returns 0, the first
 * negative value fn returned, or a negative errno (-EIO for a temporary
 * file shorter than the spool).
 */
int pochta_sendmail_msg_spool_replay(struct sm_spool *sp,
    int (*fn)(void *, const char *, size_t), void *arg);

/*
 * Append to b, as CRLF lines, the fields m lacks (RFC 5322 3.6): From (from,
 * with fullname as its display name when not NULL or empty), Date (now, in
 * local time) and Message-ID (with host on its right side).
 */
void pochta_sendmail_msg_added_fields(const struct sm_msg *m, struct buf *b,
    const char *from, const char *fullname, const char *host);

#endif
