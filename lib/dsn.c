/*
 * dsn.c - RFC 3464 delivery status notifications: a multipart/report with a
 * human-readable part, message/delivery-status and the original message
 * (RFC 3462 text/rfc822-headers for RET=HDRS). Diagnostic text is made safe
 * (no controls, folded at 78 columns) since it comes from remote servers.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dsn.h"

/* RFC 5322 3.3 date-time in UTC. */
static void
dsn_date(char *out, size_t size, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, size, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/*
 * Does the text quote an SMTP reply ("550 5.1.1 ...")? Then its
 * Diagnostic-Code type is "smtp"; pochta's own texts are "X-Pochta"
 * (RFC 3464 2.3.6).
 */
static int
dsn_is_smtp_reply(const char *text)
{
	return text[0] >= '2' && text[0] <= '5' &&
	    text[1] >= '0' && text[1] <= '9' &&
	    text[2] >= '0' && text[2] <= '9' &&
	    (text[3] == ' ' || text[3] == '-' || text[3] == '\0');
}

/*
 * Append "name: value" with value cleaned of control bytes and folded at
 * white space so no line passes 78 columns when that is possible.
 */
static int
dsn_field(struct buf *out, const char *name, const char *value)
{
	size_t col, wlen;
	const char *p = value, *w;
	int r;

	/* An empty name makes a plain folded line for the text part. */
	col = 1;
	if (*name != '\0') {
		if ((r = buf_printf(out, "%s:", name)) < 0)
			return r;
		col = strlen(name) + 1;
	}
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p == '\0')
			break;
		w = p;
		while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r' &&
		    *p != '\n')
			p++;
		wlen = p - w;
		if (col > 1 && col + 1 + wlen > 78) {
			if ((r = buf_puts(out, "\r\n")) < 0)
				return r;
			col = 0;
		}
		if ((col > 1 || *name != '\0') && (r = buf_puts(out, " ")) < 0)
			return r;
		col++;
		for (size_t i = 0; i < wlen; i++) {
			unsigned char c = w[i];

			if (c < 0x20 || c == 0x7f)
				c = '?';
			if ((r = buf_append(out, &c, 1)) < 0)
				return r;
		}
		col += wlen;
	}
	return buf_puts(out, "\r\n");
}

size_t
dsn_header_len(const char *msg, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (msg[i] != '\n')
			continue;
		if (i + 1 < len && msg[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && msg[i + 1] == '\r' && msg[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

/* Whether any byte has the high bit set (needs 8bit transfer encoding). */
static int
dsn_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] & 0x80)
			return 1;
	return 0;
}

int
dsn_build(struct buf *out, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t n, const char *msg, size_t msglen)
{
	char date[64], boundary[96];
	const char *what;
	size_t attach;
	int r = 0;

	if (n == 0)
		return -EINVAL;
	/* One notice reports one kind of event (qmgr never mixes them). */
	what = rcpts[0].action;
	snprintf(boundary, sizeof(boundary), "%s/%s.dsn",
	    info->queue_id, info->myhostname);
	dsn_date(date, sizeof(date), info->now);
	attach = info->headers_only ? dsn_header_len(msg, msglen) : msglen;

	if ((r = buf_printf(out, "From: Mail Delivery System "
	    "<MAILER-DAEMON@%s>\r\n", info->myhostname)) < 0 ||
	    (r = buf_printf(out, "To: <%s>\r\n", info->to)) < 0 ||
	    (r = buf_printf(out, "Subject: %s\r\n",
	    strcmp(what, "delivered") == 0 ? "Successful Mail Delivery Report" :
	    strcmp(what, "delayed") == 0 ?
	    "Delayed Mail (still being retried)" :
	    "Undelivered Mail Returned to Sender")) < 0 ||
	    (r = buf_printf(out, "Date: %s\r\n", date)) < 0 ||
	    (r = buf_printf(out, "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n\r\n", boundary)) < 0)
		return r;

	/* The human-readable part (RFC 3462 2, first body part). */
	if ((r = buf_printf(out, "This is a MIME-encapsulated message.\r\n\r\n"
	    "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This is the mail system at host %s.\r\n\r\n", boundary,
	    info->myhostname)) < 0)
		return r;
	if ((r = buf_puts(out, strcmp(what, "delivered") == 0 ?
	    "Your message was delivered to the following recipients.\r\n" :
	    strcmp(what, "delayed") == 0 ?
	    "Your message could not be delivered yet; delivery will be "
	    "retried.\r\n" :
	    "Your message could not be delivered to one or more recipients."
	    "\r\nIt is attached below.\r\n")) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		char line[1100];

		snprintf(line, sizeof(line), "<%s>: %s", rcpts[i].address,
		    rcpts[i].diag != NULL ? rcpts[i].diag : rcpts[i].action);
		if ((r = buf_puts(out, "\r\n")) < 0 ||
		    (r = dsn_field(out, "", line)) < 0)
			return r;
	}

	/* message/delivery-status (RFC 3464 2.2, 2.3). */
	if ((r = buf_printf(out, "\r\n--%s\r\nContent-Type: "
	    "message/delivery-status\r\n\r\n", boundary)) < 0 ||
	    (r = buf_printf(out, "Reporting-MTA: dns; %s\r\n",
	    info->myhostname)) < 0)
		return r;
	if (info->envid != NULL && *info->envid != '\0' &&
	    (r = dsn_field(out, "Original-Envelope-Id", info->envid)) < 0)
		return r;
	if ((r = buf_printf(out, "X-Pochta-Queue-ID: %s\r\n",
	    info->queue_id)) < 0)
		return r;
	dsn_date(date, sizeof(date), info->arrival);
	if ((r = buf_printf(out, "Arrival-Date: %s\r\n", date)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		const struct dsn_rcpt *rc = &rcpts[i];
		char v[1100];

		if ((r = buf_puts(out, "\r\n")) < 0)
			return r;
		snprintf(v, sizeof(v), "rfc822; %s", rc->address);
		if ((r = dsn_field(out, "Final-Recipient", v)) < 0)
			return r;
		if (rc->orcpt != NULL && *rc->orcpt != '\0') {
			const char *semi = strchr(rc->orcpt, ';');

			if (semi != NULL)
				snprintf(v, sizeof(v), "%.*s; %s",
				    (int)(semi - rc->orcpt), rc->orcpt,
				    semi + 1);
			else
				snprintf(v, sizeof(v), "rfc822; %s",
				    rc->orcpt);
			if ((r = dsn_field(out, "Original-Recipient", v)) < 0)
				return r;
		}
		if ((r = buf_printf(out, "Action: %s\r\nStatus: %s\r\n",
		    rc->action, rc->status)) < 0)
			return r;
		if (rc->remote_mta != NULL && *rc->remote_mta != '\0') {
			snprintf(v, sizeof(v), "dns; %s", rc->remote_mta);
			if ((r = dsn_field(out, "Remote-MTA", v)) < 0)
				return r;
		}
		if (rc->diag != NULL && *rc->diag != '\0') {
			snprintf(v, sizeof(v), "%s; %s",
			    dsn_is_smtp_reply(rc->diag) ? "smtp" : "X-Pochta",
			    rc->diag);
			if ((r = dsn_field(out, "Diagnostic-Code", v)) < 0)
				return r;
		}
		if (rc->last_attempt > 0) {
			dsn_date(date, sizeof(date), rc->last_attempt);
			if ((r = buf_printf(out, "Last-Attempt-Date: %s\r\n",
			    date)) < 0)
				return r;
		}
		if (rc->will_retry_until > 0) {
			dsn_date(date, sizeof(date), rc->will_retry_until);
			if ((r = buf_printf(out, "Will-Retry-Until: %s\r\n",
			    date)) < 0)
				return r;
		}
	}

	/* The original (RFC 3462 2, third body part). */
	if ((r = buf_printf(out, "\r\n--%s\r\nContent-Type: %s\r\n%s\r\n",
	    boundary, info->headers_only ? "text/rfc822-headers" :
	    "message/rfc822", dsn_8bit(msg, attach) ?
	    "Content-Transfer-Encoding: 8bit\r\n" : "")) < 0 ||
	    (r = buf_append(out, msg, attach)) < 0)
		return r;
	if (attach > 0 && msg[attach - 1] != '\n' &&
	    (r = buf_puts(out, "\r\n")) < 0)
		return r;
	return buf_printf(out, "\r\n--%s--\r\n", boundary);
}
