/*
 * dsn.h - delivery status notifications (RFC 3464): builds the
 * multipart/report message that qmgr queues to a sender. Pure: no I/O.
 */
#ifndef POCHTA_DSN_H
#define POCHTA_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* One recipient's report (RFC 3464 2.3). */
struct dsn_rcpt {
	const char *address;	/* Final-Recipient, rfc822 */
	const char *orcpt;	/* ORCPT "type;addr" or NULL */
	const char *action;	/* "failed", "delayed", "delivered" */
	const char *status;	/* "5.1.1" */
	const char *diag;	/* agent's text, or NULL */
	int64_t last_attempt;	/* seconds since 1970, 0: none */
	const char *remote_mta;	/* host that answered, or NULL (2.3.5) */
	int64_t will_retry_until; /* for "delayed", 0: omitted (2.3.9) */
};

struct dsn_info {
	const char *myhostname;	/* Reporting-MTA and From */
	const char *to;		/* the original sender */
	const char *queue_id;	/* of the original message */
	const char *envid;	/* RFC 3461 ENVID or NULL */
	int64_t arrival;	/* Arrival-Date, seconds since 1970 */
	int64_t now;		/* Date */
	int headers_only;	/* RET=HDRS: text/rfc822-headers */
};

/*
 * Append the whole notification (headers and body, CRLF line ends) about
 * the n recipients to out, with the original message msg (msglen bytes)
 * attached, whole or only its header. 0, or -EINVAL for no recipient,
 * -ENOBUFS past out's limit.
 */
int dsn_build(struct buf *out, const struct dsn_info *info,
    const struct dsn_rcpt *rcpts, size_t n, const char *msg, size_t msglen);

/* Length of the header section of msg (up to and with the empty line). */
size_t dsn_header_len(const char *msg, size_t len);

#endif
