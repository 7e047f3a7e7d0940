/*
 * qmgr_msg.c - the life of a message in active/: activation, one outcome
 * per recipient recorded in the queue file (fsynced) before it is acted
 * upon, and the end of a pass (notices, expiry, removal or deferral).
 * A file that cannot be parsed goes to corrupt/; other errors are logged
 * and leave the recipient pending, so it is retried, never lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conf.h"
#include "log.h"
#include "qmgr.h"
#include "queue.h"
#include "queue_file.h"
#include "xalloc.h"

int64_t
qmgr_msg_now(void)
{
	return (int64_t)time(NULL);
}

/*
 * The bucket of id in q->msg_hash (FNV-1a). A full active queue holds
 * thousands of messages; a list walk per lookup would cost quadratic time.
 */
static struct qmgr_msg **
qmgr_msg_bucket(struct qmgr *q, const char *id)
{
	uint32_t h = 2166136261u;

	for (; *id != '\0'; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return &q->msg_hash[h % QMGR_MSG_HASH_SIZE];
}

struct qmgr_msg *
qmgr_msg_find(struct qmgr *q, const char *id)
{
	for (struct qmgr_msg *m = *qmgr_msg_bucket(q, id); m != NULL;
	    m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

/* Seconds since the message arrived, from its queue ID. */
static double
qmgr_msg_delay(const struct qmgr_msg *m)
{
	struct timespec ts;
	uint64_t arr = queue_id_time_us(m->id);
	double now, d;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = ts.tv_sec + ts.tv_nsec / 1e9;
	d = now - arr / 1e6;
	return d < 0 ? 0 : d;
}

/*
 * The one line per delivery attempt that pochta-qmgr(8) documents under
 * LOGGING; orig_to only when an alias or ORCPT names another address.
 */
static void
qmgr_msg_log(struct qmgr_msg *m, const struct queue_rcpt *rc,
    const char *relay, const char *status, const char *dsn, const char *text)
{
	const char *orig = rc->orcpt != NULL ? strchr(rc->orcpt, ';') : NULL;

	orig = orig != NULL ? orig + 1 : rc->orcpt;
	if (orig != NULL && *orig != '\0' && strcasecmp(orig, rc->address) != 0)
		log_info("%s: to=<%s>, orig_to=<%s>, relay=%s, delay=%.2f, "
		    "dsn=%s, status=%s (%s)", m->id, rc->address, orig, relay,
		    qmgr_msg_delay(m), dsn, status, text);
	else
		log_info("%s: to=<%s>, relay=%s, delay=%.2f, dsn=%s, "
		    "status=%s (%s)", m->id, rc->address, relay,
		    qmgr_msg_delay(m), dsn, status, text);
}

static void
qmgr_msg_defer(struct qmgr_msg *m, size_t i, const char *relay,
    const char *dsn, const char *text)
{
	struct qmgr *q = m->q;
	const struct queue_rcpt *rc = &queue_file_env(m->qf)->rcpts[i];
	const char *errstr = NULL;
	char reason[QUEUE_FILE_REASON_MAX];
	int64_t now = qmgr_msg_now();
	int64_t wait = qmgr_backoff(rc->ndefer + 1,
	    conf_time(q->conf, "minimal_backoff_time"),
	    conf_time(q->conf, "maximal_backoff_time"));

	/* Logged first: the record below replaces rc's strings. */
	qmgr_msg_log(m, rc, relay, "deferred", dsn, text);
	snprintf(reason, sizeof(reason), "%s %s", dsn, text);
	if (queue_file_defer(m->qf, i, reason, now, now + wait, &errstr) < 0)
		log_error("%s: cannot record deferral: %s", m->id, errstr);
}

static int
qmgr_msg_failing(const struct qmgr_msg *m, size_t i)
{
	for (size_t k = 0; k < m->nfail; k++)
		if (m->fail_idx[k] == i)
			return 1;
	return 0;
}

/* Note a permanent failure; the recipient is marked B once notified. */
static void
qmgr_msg_fail(struct qmgr_msg *m, size_t i, const char *relay,
    const char *dsn, const char *text, const char *mta)
{
	const struct queue_rcpt *rc = &queue_file_env(m->qf)->rcpts[i];

	qmgr_msg_log(m, rc, relay, "bounced", dsn, text);
	m->fail_idx = xreallocarray(m->fail_idx, m->nfail + 1,
	    sizeof(*m->fail_idx));
	m->fail_idx[m->nfail] = i;
	qmgr_notify_add(&m->fail, &m->nfail, rc, "failed", dsn, text, mta);
}

void
qmgr_msg_outcome(struct qmgr_msg *m, size_t i, const char *relay,
    const char *dsn, const char *text)
{
	const struct queue_env *env = queue_file_env(m->qf);
	const struct queue_rcpt *rc;
	const char *errstr = NULL;
	/* Remote-MTA (RFC 3464 2.3.5) is the host that answered. */
	const char *mta = strcmp(relay, "local") == 0 ||
	    strcmp(relay, "none") == 0 ? NULL : relay;

	if (i >= env->nrcpt || env->rcpts[i].status != QUEUE_RCPT_PENDING)
		return;
	rc = &env->rcpts[i];
	if (dsn[0] == '2') {
		if (queue_file_mark(m->qf, i, QUEUE_RCPT_DELIVERED,
		    &errstr) < 0) {
			log_error("%s: cannot mark delivered: %s", m->id,
			    errstr);
			return;
		}
		qmgr_msg_log(m, rc, relay, "sent", dsn, text);
		if (rc->notify & QUEUE_NOTIFY_SUCCESS)
			qmgr_notify_add(&m->ok, &m->nok, rc, "delivered", dsn,
			    text, mta);
	} else if (dsn[0] == '5') {
		if (!qmgr_msg_failing(m, i))
			qmgr_msg_fail(m, i, relay, dsn, text, mta);
	} else
		qmgr_msg_defer(m, i, relay, dsn[0] == '4' ? dsn : "4.0.0",
		    text);
}

void
qmgr_msg_free(struct qmgr_msg *m)
{
	struct qmgr *q = m->q;

	if ((*m->pprev = m->next) != NULL)
		m->next->pprev = m->pprev;
	for (struct qmgr_msg **pp = qmgr_msg_bucket(q, m->id); *pp != NULL;
	    pp = &(*pp)->hnext)
		if (*pp == m) {
			*pp = m->hnext;
			break;
		}
	q->nactive--;
	queue_file_free(&m->qf);
	qmgr_notify_free(&m->fail, &m->nfail);
	qmgr_notify_free(&m->ok, &m->nok);
	free(m->fail_idx);
	free(m);
}

/* Past its lifetime: every pending recipient fails with 4.4.7. */
static void
qmgr_msg_expire(struct qmgr_msg *m)
{
	const struct queue_env *env = queue_file_env(m->qf);

	for (size_t i = 0; i < env->nrcpt; i++) {
		const struct queue_rcpt *rc = &env->rcpts[i];
		char text[QUEUE_FILE_REASON_MAX + 64];

		if (rc->status != QUEUE_RCPT_PENDING || qmgr_msg_failing(m, i))
			continue;
		snprintf(text, sizeof(text), "delivery time expired%s%s",
		    rc->defer_reason != NULL ? ": " : "",
		    rc->defer_reason != NULL ? rc->defer_reason : "");
		qmgr_msg_fail(m, i, "none", "4.4.7", text, NULL);
	}
}

/* Send the bounce for this pass's failures, then mark them B. */
static void
qmgr_msg_bounce(struct qmgr_msg *m)
{
	const struct queue_env *env = queue_file_env(m->qf);
	struct dsn_rcpt *list = xcalloc(m->nfail, sizeof(*list));
	const char *errstr = NULL;
	size_t nl = 0;
	int r;

	/* NOTIFY=NEVER, or a list without FAILURE: no notice (RFC 3461 4.1). */
	for (size_t k = 0; k < m->nfail; k++) {
		unsigned notify = env->rcpts[m->fail_idx[k]].notify;

		if (notify == 0 || (notify & QUEUE_NOTIFY_FAILURE))
			list[nl++] = m->fail[k];
	}
	r = nl > 0 ? qmgr_notify_send(m, list, nl) : 0;
	free(list);
	for (size_t k = 0; k < m->nfail; k++) {
		if (r < 0)
			qmgr_msg_defer(m, m->fail_idx[k], "none", "4.3.0",
			    "cannot queue the bounce");
		else if (queue_file_mark(m->qf, m->fail_idx[k],
		    QUEUE_RCPT_BOUNCED, &errstr) < 0)
			log_error("%s: cannot mark bounced: %s", m->id, errstr);
	}
	qmgr_notify_free(&m->fail, &m->nfail);
	free(m->fail_idx);
	m->fail_idx = NULL;
}

void
qmgr_msg_idle(struct qmgr_msg *m)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	long long life = conf_time(q->conf, *env->sender == '\0' ?
	    "bounce_queue_lifetime" : "maximal_queue_lifetime");
	int r;

	if (m->action == QMGR_ACT_DELETE) {
		queue_remove(q->spool, QUEUE_ACTIVE, m->id);
		log_info("%s: removed (deleted by request)", m->id);
		qmgr_msg_free(m);
		return;
	}
	if (qmgr_msg_now() - env->arrival_sec >= life)
		qmgr_msg_expire(m);
	if (m->nfail > 0)
		qmgr_msg_bounce(m);
	if (m->nok > 0) {
		qmgr_notify_send(m, m->ok, m->nok);
		qmgr_notify_free(&m->ok, &m->nok);
	}
	if (queue_file_pending(m->qf) == 0) {
		if ((r = queue_remove(q->spool, QUEUE_ACTIVE, m->id)) < 0)
			log_error("%s: cannot remove: %s", m->id,
			    strerror(-r));
		else
			log_info("%s: removed", m->id);
	} else {
		const char *to = m->action == QMGR_ACT_HOLD ? QUEUE_HOLD :
		    QUEUE_DEFERRED;

		if (m->action != QMGR_ACT_HOLD)
			qmgr_notify_delay(m);
		if ((r = queue_move(q->spool, m->id, QUEUE_ACTIVE, to)) < 0)
			log_error("%s: cannot move to %s: %s", m->id, to,
			    strerror(-r));
	}
	qmgr_msg_free(m);
}

int
qmgr_msg_activate(struct qmgr *q, const char *id)
{
	struct qmgr_msg *m, **bucket;
	const struct queue_env *env;
	const char *errstr = NULL;
	char *path;
	int r;

	if (qmgr_msg_find(q, id) != NULL)
		return 0;
	m = xcalloc(1, sizeof(*m));
	m->q = q;
	snprintf(m->id, sizeof(m->id), "%s", id);
	path = queue_path(q->spool, QUEUE_ACTIVE, id);
	r = queue_file_open(path, 1, &m->qf, &errstr);
	free(path);
	if (r < 0) {
		if (r != -ENOENT) {
			log_error("%s: unreadable queue file (%s); moved to "
			    "corrupt/", id,
			    errstr != NULL ? errstr : strerror(-r));
			queue_move(q->spool, id, QUEUE_ACTIVE, QUEUE_CORRUPT);
		}
		free(m);
		return r;
	}
	if ((m->next = q->msgs) != NULL)
		q->msgs->pprev = &m->next;
	q->msgs = m;
	m->pprev = &q->msgs;
	bucket = qmgr_msg_bucket(q, id);
	m->hnext = *bucket;
	*bucket = m;
	q->nactive++;
	env = queue_file_env(m->qf);
	for (size_t i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].defer_time > m->prev_attempt)
			m->prev_attempt = env->rcpts[i].defer_time;
	log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)", id,
	    env->sender, (unsigned long long)env->msg_size, env->nrcpt);
	qmgr_route_expand(m);
	qmgr_deliver_schedule(m);
	if (m->njobs == 0)
		qmgr_msg_idle(m);
	else
		qmgr_deliver_dispatch(q);
	return 0;
}
