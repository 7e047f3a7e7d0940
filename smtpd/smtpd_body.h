/*
 * smtpd_body.h - the message body decoder of DATA and BDAT (RFC 5321
 * 4.1.1.4, 4.5.2; RFC 3030). Pure: bytes in, message bytes out, no I/O.
 */
#ifndef POCHTA_SMTPD_BODY_H
#define POCHTA_SMTPD_BODY_H

#include <stddef.h>

struct buf;

/* Why a message was refused; the first problem found wins. */
enum smtpd_body_error {
	SMTPD_BODY_OK,
	SMTPD_BODY_BARE_LF,	/* LF not preceded by CR */
	SMTPD_BODY_BARE_CR,	/* CR not followed by LF */
	SMTPD_BODY_NUL,		/* a NUL byte */
	SMTPD_BODY_LONG_LINE,	/* a line over the line length limit */
	SMTPD_BODY_TOO_BIG,	/* over the message size limit */
};

enum smtpd_body_state {
	BODY_BOL,	/* at the start of a line */
	BODY_TEXT,	/* inside a line */
	BODY_CR,	/* after a CR */
	BODY_DOT,	/* DATA only: after a leading dot */
	BODY_DOT_CR,	/* DATA only: after a leading dot and CR */
};

struct smtpd_body {
	enum smtpd_body_state state;
	enum smtpd_body_error error;
	int dot_mode;		/* DATA: dot-stuffing and <CRLF>.<CRLF> */
	int done;		/* DATA: the end-of-data line was seen */
	size_t line_len;	/* octets in the current line, sans CRLF */
	size_t max_line;	/* 0: no limit */
	size_t size;		/* message octets produced so far */
	size_t max_size;	/* 0: no limit */
};

/*
 * Start decoding a message. dot_mode is 1 for DATA, 0 for BDAT chunks.
 * max_line is the longest line accepted, not counting CRLF (RFC 5322
 * 2.1.1: 998); max_size the most octets of message accepted.
 */
void smtpd_body_init(struct smtpd_body *b, int dot_mode, size_t max_line,
    size_t max_size);

/*
 * Decode len bytes of input. Message bytes (dot-unstuffed in DATA, CRLF line
 * endings as received) are appended to out while no error has been seen;
 * after an error they are discarded but the input is still consumed, so the
 * session stays in step with the client. In DATA mode decoding stops right
 * after <CRLF>.<CRLF> (b->done is set); the return value is the number of
 * input bytes consumed, which is len unless the end was reached. Only
 * <CRLF>.<CRLF> ends DATA: no bare CR or LF variant does (CVE-2023-51764).
 */
size_t smtpd_body_feed(struct smtpd_body *b, const char *in, size_t len,
    struct buf *out);

/*
 * End of the last BDAT chunk: a dangling CR becomes a bare-CR error.
 * Returns b->error.
 */
enum smtpd_body_error smtpd_body_finish(struct smtpd_body *b);

/* A reply line (code, enhanced code and text) for an error. */
const char *smtpd_body_reply(enum smtpd_body_error error);

#endif
