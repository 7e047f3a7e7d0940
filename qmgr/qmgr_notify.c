/*
 * qmgr_notify.c - the notices qmgr queues through lib/dsn (RFC 3464,
 * RFC 3461 NOTIFY): bounces, success notices, and the one delay warning
 * per message. Never a notice to <>; a bounce of our own bounce goes to
 * postmaster, and no further. A notice that cannot be queued is an error
 * for the caller, which keeps the recipients pending.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "qmgr.h"
#include "queue.h"
#include "queue_file.h"
#include "queue_writer.h"
#include "xalloc.h"

/*
 * The largest original message attached whole to a notice; of a larger
 * one only the header comes back (a cut message/rfc822 would be broken),
 * read from at most its first QMGR_NOTIFY_HEADER_MAX bytes.
 */
#define QMGR_NOTIFY_ATTACH_MAX (16 * 1024 * 1024)
#define QMGR_NOTIFY_HEADER_MAX (1024 * 1024)

/* Protocol names of the notices we write, so we know our own bounces. */
#define QMGR_NOTIFY_PROTO_BOUNCE "BOUNCE"
#define QMGR_NOTIFY_PROTO_DOUBLE "DOUBLE-BOUNCE"

/* The host name in a relay ("mx.test[192.0.2.1]:25") or a next hop. */
static char *
qmgr_notify_mta(const char *relay)
{
	size_t n;

	if (relay == NULL || *relay == '\0')
		return NULL;
	if (*relay == '[') {
		/* A next hop "[host]:port" names the host, not MX lookup. */
		n = strcspn(relay + 1, "]");
		return n > 0 ? xstrndup(relay + 1, n) : NULL;
	}
	n = strcspn(relay, "[:");
	return n > 0 ? xstrndup(relay, n) : NULL;
}

void
qmgr_notify_add(struct dsn_rcpt **arr, size_t *n, const struct queue_rcpt *rc,
    const char *action, const char *status, const char *text,
    const char *remote_mta)
{
	struct dsn_rcpt *d;

	*arr = xreallocarray(*arr, *n + 1, sizeof(**arr));
	d = &(*arr)[(*n)++];
	memset(d, 0, sizeof(*d));
	d->address = xstrdup(rc->address);
	d->orcpt = rc->orcpt != NULL ? xstrdup(rc->orcpt) : NULL;
	d->action = action;
	d->status = xstrdup(status);
	d->diag = xstrdup(text);
	d->last_attempt = qmgr_msg_now();
	d->remote_mta = qmgr_notify_mta(remote_mta);
}

void
qmgr_notify_free(struct dsn_rcpt **arr, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		free((char *)(*arr)[i].address);
		free((char *)(*arr)[i].orcpt);
		free((char *)(*arr)[i].status);
		free((char *)(*arr)[i].diag);
		free((char *)(*arr)[i].remote_mta);
	}
	free(*arr);
	*arr = NULL;
	*n = 0;
}

/*
 * Read the original message into msg, or only its start when it is too
 * large to attach whole (*headers_only is set then).
 */
static int
qmgr_notify_original(struct qmgr_msg *m, struct buf *msg, int *headers_only)
{
	uint64_t size = queue_file_msg_size(m->qf), off;

	if (size > QMGR_NOTIFY_ATTACH_MAX)
		*headers_only = 1;
	if (*headers_only && size > QMGR_NOTIFY_HEADER_MAX)
		size = QMGR_NOTIFY_HEADER_MAX;
	buf_init(msg, QMGR_NOTIFY_ATTACH_MAX + 1);
	for (off = 0; off < size;) {
		char *p = buf_space(msg, 65536);
		ssize_t k;

		if (p == NULL)
			break;
		if ((k = queue_file_read_msg(m->qf, p, 65536, off)) < 0) {
			buf_release(msg);
			return (int)k;
		}
		if (k == 0)
			break;
		if ((uint64_t)k > size - off)
			k = size - off;
		buf_commit(msg, k);
		off += k;
	}
	return 0;
}

/* Queue the notice text out to to; the new message is taken at once. */
static int
qmgr_notify_queue(struct qmgr_msg *m, const char *to, const char *proto,
    const char *kind, const struct buf *out)
{
	struct qmgr *q = m->q;
	struct queue_env nenv;
	struct queue_writer *w = NULL;
	const char *errstr = NULL;
	char nid[QUEUE_ID_SIZE];
	int r;

	memset(&nenv, 0, sizeof(nenv));
	nenv.sender = "";
	nenv.protocol = (char *)proto;
	nenv.client_name = "localhost";
	nenv.client_addr = "127.0.0.1";
	nenv.helo = (char *)q->myhostname;
	nenv.body = QUEUE_BODY_8BITMIME;
	if ((r = queue_writer_create(q->spool, &nenv, &w, &errstr)) < 0 ||
	    (r = queue_writer_write(w, out->data, out->len)) < 0 ||
	    (r = queue_writer_add_rcpt(w, to, NULL, 0)) < 0 ||
	    (r = queue_writer_commit(w, &errstr)) < 0) {
		log_error("%s: cannot queue notice to <%s>: %s", m->id, to,
		    errstr != NULL ? errstr : strerror(-r));
		queue_writer_free(&w);
		return r;
	}
	snprintf(nid, sizeof(nid), "%s", queue_writer_id(w));
	queue_writer_free(&w);
	log_info("%s: sender %s notification: %s", m->id, kind, nid);
	if (queue_move(q->spool, nid, QUEUE_INCOMING, QUEUE_ACTIVE) == 0)
		qmgr_msg_activate(q, nid);
	return 0;
}

int
qmgr_notify_send(struct qmgr_msg *m, struct dsn_rcpt *rcpts, size_t n)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	struct dsn_info info;
	struct buf out, msg;
	const char *to = env->sender, *proto = QMGR_NOTIFY_PROTO_BOUNCE;
	const char *what = rcpts[0].action;
	char pm[512];
	int r;

	if (*env->sender == '\0') {
		if (env->protocol == NULL || strcmp(env->protocol,
		    QMGR_NOTIFY_PROTO_BOUNCE) != 0 ||
		    strcmp(what, "failed") != 0) {
			log_info("%s: sender is <>, notice not sent", m->id);
			return 0;
		}
		snprintf(pm, sizeof(pm), "postmaster@%s", q->myhostname);
		to = pm;
		proto = QMGR_NOTIFY_PROTO_DOUBLE;
	}
	memset(&info, 0, sizeof(info));
	info.headers_only = env->ret == QUEUE_RET_HDRS;
	if ((r = qmgr_notify_original(m, &msg, &info.headers_only)) < 0)
		return r;
	info.myhostname = q->myhostname;
	info.to = to;
	info.queue_id = m->id;
	info.envid = env->envid;
	info.arrival = env->arrival_sec;
	info.now = qmgr_msg_now();
	buf_init(&out, 0);
	r = dsn_build(&out, &info, rcpts, n, msg.data != NULL ? msg.data : "",
	    msg.len);
	buf_release(&msg);
	if (r == 0)
		r = qmgr_notify_queue(m, to, proto,
		    strcmp(what, "delivered") == 0 ? "delivery status" :
		    strcmp(what, "delayed") == 0 ? "delay" : "non-delivery",
		    &out);
	buf_release(&out);
	return r;
}

int
qmgr_notify_delay_due(int64_t arrival, int64_t prev_attempt, int64_t now,
    int64_t warn)
{
	if (warn <= 0 || now - arrival < warn)
		return 0;
	/*
	 * Only the first pass that ends past the threshold warns: the
	 * deferral records it writes put every later pass's prev_attempt past
	 * it, so no extra record is needed and a restart does not warn again.
	 */
	return prev_attempt < arrival + warn;
}

/* The status and text of a deferral reason "4.x.x text". */
static void
qmgr_notify_reason(const char *reason, char *status, size_t size,
    const char **text_r)
{
	size_t n = reason != NULL ? strcspn(reason, " ") : 0;

	if (n > 0 && n < size && reason[0] == '4' && reason[1] == '.') {
		snprintf(status, size, "%.*s", (int)n, reason);
		*text_r = reason[n] == ' ' ? reason + n + 1 : "";
	} else {
		snprintf(status, size, "4.0.0");
		*text_r = reason != NULL ? reason : "delivery deferred";
	}
}

void
qmgr_notify_delay(struct qmgr_msg *m)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	struct dsn_rcpt *list = NULL;
	size_t n = 0;
	int64_t now = qmgr_msg_now();

	if (*env->sender == '\0' || !qmgr_notify_delay_due(env->arrival_sec,
	    m->prev_attempt, now, conf_time(q->conf, "delay_warning_time")))
		return;
	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct queue_rcpt *rc = &env->rcpts[i];
		const char *text;
		char status[16];

		/* NOTIFY absent means DELAY allowed (RFC 3461 4.1). */
		if (rc->status != QUEUE_RCPT_PENDING || (rc->notify != 0 &&
		    !(rc->notify & QUEUE_NOTIFY_DELAY)))
			continue;
		qmgr_notify_reason(rc->defer_reason, status, sizeof(status),
		    &text);
		qmgr_notify_add(&list, &n, rc, "delayed", status, text, NULL);
		list[n - 1].will_retry_until = env->arrival_sec +
		    conf_time(q->conf, "maximal_queue_lifetime");
	}
	if (n > 0)
		qmgr_notify_send(m, list, n);
	qmgr_notify_free(&list, &n);
}
