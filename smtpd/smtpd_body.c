/*
 * smtpd_body.c - the DATA/BDAT body decoder (RFC 5321 4.1.1.4 and 4.5.2,
 * RFC 3030). Only <CRLF>.<CRLF> ends DATA; a bare CR or LF anywhere is an
 * error (like Postfix's smtpd_forbid_bare_newline), so SMTP smuggling
 * (CVE-2023-51764 class) cannot split one message into two. Errors never
 * stop decoding early: the input is consumed to the real end of the message
 * and the session answers once, in step with the client.
 */
#include <stddef.h>
#include <string.h>

#include "buf.h"
#include "smtpd_body.h"

void
smtpd_body_init(struct smtpd_body *b, int dot_mode, size_t max_line,
    size_t max_size)
{
	memset(b, 0, sizeof(*b));
	b->state = BODY_BOL;
	b->dot_mode = dot_mode;
	b->max_line = max_line;
	b->max_size = max_size;
}

static void
fail(struct smtpd_body *b, enum smtpd_body_error error)
{
	if (b->error == SMTPD_BODY_OK)
		b->error = error;
}

static void
emit(struct smtpd_body *b, const char *p, size_t n, struct buf *out)
{
	if (b->error != SMTPD_BODY_OK)
		return;
	if (b->max_size != 0 && b->size + n > b->max_size) {
		fail(b, SMTPD_BODY_TOO_BIG);
		return;
	}
	/* The caller sizes out; a full buffer is the size limit too. */
	if (buf_append(out, p, n) < 0) {
		fail(b, SMTPD_BODY_TOO_BIG);
		return;
	}
	b->size += n;
}

/* One octet inside a line (not CR handling). */
static void
text_char(struct smtpd_body *b, char c, struct buf *out)
{
	switch (c) {
	case '\r':
		b->state = BODY_CR;
		return;
	case '\n':
		/* A bare LF does not end a line: only CRLF does. */
		fail(b, SMTPD_BODY_BARE_LF);
		b->state = BODY_TEXT;
		return;
	case '\0':
		fail(b, SMTPD_BODY_NUL);
		break;
	}
	b->line_len++;
	if (b->max_line != 0 && b->line_len > b->max_line)
		fail(b, SMTPD_BODY_LONG_LINE);
	emit(b, &c, 1, out);
	b->state = BODY_TEXT;
}

/* The octet after a CR that was not followed by LF. */
static void
bare_cr(struct smtpd_body *b, char c, struct buf *out)
{
	fail(b, SMTPD_BODY_BARE_CR);
	b->state = BODY_TEXT;
	text_char(b, c, out);
}

size_t
smtpd_body_feed(struct smtpd_body *b, const char *in, size_t len,
    struct buf *out)
{
	size_t i;

	for (i = 0; i < len && !b->done; i++) {
		char c = in[i];

		switch (b->state) {
		case BODY_BOL:
			b->line_len = 0;
			if (b->dot_mode && c == '.') {
				/* Dot-unstuffing: the leading dot is not
				 * part of the message (RFC 5321 4.5.2). */
				b->state = BODY_DOT;
				break;
			}
			text_char(b, c, out);
			break;
		case BODY_TEXT:
			/* Fast path: copy a run of plain octets at once. */
			if (c != '\r' && c != '\n' && c != '\0') {
				size_t j = i;
				while (j < len && in[j] != '\r' &&
				    in[j] != '\n' && in[j] != '\0')
					j++;
				size_t n = j - i;
				b->line_len += n;
				if (b->max_line != 0 &&
				    b->line_len > b->max_line)
					fail(b, SMTPD_BODY_LONG_LINE);
				emit(b, in + i, n, out);
				i = j - 1;
				break;
			}
			text_char(b, c, out);
			break;
		case BODY_CR:
			if (c == '\n') {
				emit(b, "\r\n", 2, out);
				b->state = BODY_BOL;
			} else {
				emit(b, "\r", 1, out);
				bare_cr(b, c, out);
			}
			break;
		case BODY_DOT:
			if (c == '\r')
				b->state = BODY_DOT_CR;
			else
				text_char(b, c, out);
			break;
		case BODY_DOT_CR:
			if (c == '\n') {
				b->done = 1;
			} else {
				emit(b, "\r", 1, out);
				bare_cr(b, c, out);
			}
			break;
		}
	}
	return i;
}

enum smtpd_body_error
smtpd_body_finish(struct smtpd_body *b)
{
	if (b->state == BODY_CR)
		fail(b, SMTPD_BODY_BARE_CR);
	return b->error;
}

const char *
smtpd_body_reply(enum smtpd_body_error error)
{
	switch (error) {
	case SMTPD_BODY_OK:
		return "250 2.0.0 Ok";
	case SMTPD_BODY_BARE_LF:
		return "550 5.5.2 Message refused: bare <LF> received "
		       "(lines must end with <CR><LF>)";
	case SMTPD_BODY_BARE_CR:
		return "550 5.5.2 Message refused: bare <CR> received "
		       "(lines must end with <CR><LF>)";
	case SMTPD_BODY_NUL:
		return "550 5.6.0 Message refused: NUL byte in message";
	case SMTPD_BODY_LONG_LINE:
		return "550 5.5.2 Message refused: text line too long "
		       "(RFC 5322 2.1.1)";
	case SMTPD_BODY_TOO_BIG:
		return "552 5.3.4 Message size exceeds fixed limit";
	}
	return "451 4.3.0 Internal error";
}
