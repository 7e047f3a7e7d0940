/*
 * pop3d_stuff.c - the bytes of RETR and TOP (RFC 1939 3, 7, 11): a file
 * with LF, CRLF or mixed line ends goes out with CRLF, "." starting a line
 * is doubled, and the answer ends with CRLF "." CRLF. TOP stops after the
 * header, the blank line and n body lines. Pure: no I/O, no errors.
 */
#include <string.h>

#include "buf.h"
#include "pop3d.h"

void
pop3d_stuff_init(struct pop3d_stuff *st, int top, uint64_t max_body)
{
	memset(st, 0, sizeof(*st));
	st->bol = 1;
	st->top = top;
	st->max_body = max_body;
}

/* A line ended: write CRLF and count it. */
static void
line_end(struct pop3d_stuff *st, struct buf *out)
{
	buf_append(out, "\r\n", 2);
	if (!st->in_body) {
		/* The first empty line separates header and body
		 * (RFC 5322 2.1). */
		if (st->bol)
			st->in_body = 1;
	} else
		st->body_lines++;
	st->bol = 1;
	if (st->top && st->in_body && st->body_lines >= st->max_body)
		st->done = 1;
}

size_t
pop3d_stuff_feed(struct pop3d_stuff *st, const char *in, size_t len,
    struct buf *out)
{
	size_t i;

	for (i = 0; i < len && !st->done; i++) {
		char c = in[i];

		if (st->cr) {
			st->cr = 0;
			if (c == '\n') {
				line_end(st, out);
				continue;
			}
			/* A bare CR inside a line is data: keep it. */
			buf_append(out, "\r", 1);
			st->bol = 0;
		}
		if (c == '\r') {
			st->cr = 1;
			continue;
		}
		if (c == '\n') {
			line_end(st, out);
			continue;
		}
		if (st->bol && c == '.')
			buf_append(out, ".", 1);
		buf_append(out, &c, 1);
		st->bol = 0;
	}
	return i;
}

void
pop3d_stuff_finish(struct pop3d_stuff *st, struct buf *out)
{
	/* A last line without its end still gets CRLF, so the terminator
	 * stands on a line of its own. */
	if (st->cr || !st->bol)
		buf_append(out, "\r\n", 2);
	st->cr = 0;
	st->bol = 1;
	buf_append(out, ".\r\n", 3);
}
