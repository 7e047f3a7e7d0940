/*
 * qmgr_deliver.c - delivery requests to the agents (pochta-protocol(7)):
 * grouping by (transport, next hop), per-destination concurrency and
 * per-transport process limits, the reply timeout, and reply parsing.
 * A dead, hung or confused agent costs the recipients it did not answer
 * properly a deferral, never a crash or a stuck message.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "attr.h"
#include "conf.h"
#include "conf_params.h"
#include "ipc.h"
#include "log.h"
#include "qmgr.h"
#include "queue.h"
#include "queue_file.h"
#include "xalloc.h"

/* The longest relay= value taken from an agent. */
#define QMGR_DELIVER_RELAY_MAX 300

/* An RFC 3463 status code: class 2, 4 or 5, subject and detail. */
static int
qmgr_deliver_status_ok(const char *s)
{
	size_t n;

	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	s += 2;
	for (n = 0; isdigit((unsigned char)s[n]); n++)
		;
	if (n < 1 || n > 3 || s[n] != '.')
		return 0;
	s += n + 1;
	for (n = 0; isdigit((unsigned char)s[n]); n++)
		;
	return n >= 1 && n <= 3 && s[n] == '\0';
}

/* relay=NAME[ADDR]:PORT: printable, no blank, comma or parenthesis. */
static int
qmgr_deliver_relay_ok(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (s[n] <= ' ' || s[n] >= 0x7f || strchr(",()<>", s[n]))
			return 0;
	return n > 0 && n <= QMGR_DELIVER_RELAY_MAX;
}

/* Apply one parsed group; a repeated index poisons that recipient. */
static void
qmgr_deliver_group(const char *idx, const char *status, const char *text,
    const char *relay, const size_t *want, size_t n,
    struct qmgr_deliver_answer *answers, char *answered)
{
	char *e;
	unsigned long long v;

	if (idx == NULL || !isdigit((unsigned char)*idx))
		return;
	errno = 0;
	v = strtoull(idx, &e, 10);
	if (*e != '\0' || errno != 0)
		return;
	for (size_t k = 0; k < n; k++) {
		if (want[k] != v)
			continue;
		if (answered[k] != 0) {
			answered[k] = 2;
			return;
		}
		if (status == NULL || !qmgr_deliver_status_ok(status))
			return;
		answers[k].index = want[k];
		answers[k].status = status;
		answers[k].text = text != NULL ? text : "no reason given";
		answers[k].relay = relay != NULL &&
		    qmgr_deliver_relay_ok(relay) ? relay : NULL;
		answered[k] = 1;
		return;
	}
}

size_t
qmgr_deliver_parse(const struct attr_list *reply, const size_t *idx,
    size_t n, struct qmgr_deliver_answer *answers, char *answered)
{
	const char *name, *value, *gidx = NULL, *status = NULL, *text = NULL;
	const char *relay = NULL;
	size_t len, count = 0;

	memset(answered, 0, n);
	for (size_t a = 0;; a++) {
		int end = attr_at(reply, a, &name, &value, &len) < 0;

		if (end || strcmp(name, "rcpt_index") == 0) {
			if (gidx != NULL)
				qmgr_deliver_group(gidx, status, text, relay,
				    idx, n, answers, answered);
			if (end)
				break;
			gidx = value;
			status = text = relay = NULL;
		} else if (strcmp(name, "status") == 0)
			status = value;
		else if (strcmp(name, "text") == 0)
			text = value;
		else if (strcmp(name, "relay") == 0)
			relay = value;
	}
	for (size_t k = 0; k < n; k++) {
		if (answered[k] == 2)
			answered[k] = 0;
		count += answered[k];
	}
	return count;
}

static void
qmgr_deliver_job_free(struct qmgr_job *j)
{
	free(j->transport);
	free(j->nexthop);
	free(j->idx);
	free(j->done);
	free(j);
}

static void
qmgr_deliver_timer_closed(uv_handle_t *h)
{
	qmgr_deliver_job_free(h->data);
}

/* What a log line and a DSN name as relay when the agent names none. */
static const char *
qmgr_deliver_relay(const struct qmgr_job *j)
{
	return strcmp(j->transport, "local") == 0 ? "local" : j->nexthop;
}

/* The request is over: defer whoever got no answer, account, go on. */
static void
qmgr_deliver_end(struct qmgr_job *j, const char *why)
{
	struct qmgr_msg *m = j->m;
	struct qmgr *q = m->q;

	for (size_t k = 0; k < j->n; k++)
		if (!j->done[k])
			qmgr_msg_outcome(m, j->idx[k], qmgr_deliver_relay(j),
			    "4.4.0", why);
	if (j->conn != NULL)
		ipc_conn_close(&j->conn);
	if ((*j->iprev = j->inext) != NULL)
		j->inext->iprev = j->iprev;
	j->dest->inflight--;
	j->tdest->inflight--;
	uv_timer_stop(&j->timer);
	uv_close((uv_handle_t *)&j->timer, qmgr_deliver_timer_closed);
	if (--m->njobs == 0)
		qmgr_msg_idle(m);
	qmgr_deliver_dispatch(q);
}

static void
qmgr_deliver_reply(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct qmgr_job *j = arg;
	struct qmgr_deliver_answer *ans = xcalloc(j->n, sizeof(*ans));
	char *answered = xcalloc(j->n, 1);

	(void)conn;
	qmgr_deliver_parse(msg->attrs, j->idx, j->n, ans, answered);
	for (size_t k = 0; k < j->n; k++) {
		if (!answered[k])
			continue;
		qmgr_msg_outcome(j->m, j->idx[k], ans[k].relay != NULL ?
		    ans[k].relay : qmgr_deliver_relay(j), ans[k].status,
		    ans[k].text);
		j->done[k] = 1;
	}
	free(ans);
	free(answered);
	qmgr_deliver_end(j, "delivery agent gave no valid answer for this "
	    "recipient");
}

static void
qmgr_deliver_closed(struct ipc_conn *conn, int err, const char *errstr,
    void *arg)
{
	struct qmgr_job *j = arg;
	char why[256];

	(void)conn;
	j->conn = NULL;	/* freed by the library after this returns */
	snprintf(why, sizeof(why), "delivery agent %s failed: %s",
	    j->transport, err != 0 ? errstr : "connection closed");
	qmgr_deliver_end(j, why);
}

static void
qmgr_deliver_timeout(uv_timer_t *t)
{
	qmgr_deliver_end(t->data, "delivery agent did not answer in time");
}

static const struct ipc_callbacks qmgr_deliver_cbs = {
	qmgr_deliver_reply, qmgr_deliver_closed,
};

/* Send j's request with a read-only descriptor of the file. */
static int
qmgr_deliver_send(struct qmgr *q, struct qmgr_job *j)
{
	const struct queue_env *env = queue_file_env(j->m->qf);
	struct attr_list *req = attr_list_new();
	char *path;
	int fd, r;

	attr_add_str(req, "request", "deliver");
	attr_add_str(req, "queue_id", j->m->id);
	attr_add_str(req, "nexthop", j->nexthop);
	for (size_t k = 0; k < j->n; k++) {
		attr_addf(req, "rcpt_index", "%zu", j->idx[k]);
		attr_add_str(req, "rcpt", env->rcpts[j->idx[k]].address);
	}
	/* The agent gets its own descriptor; ipc_send owns it. */
	path = queue_path(q->spool, QUEUE_ACTIVE, j->m->id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	r = fd < 0 ? -errno : ipc_send(j->conn, req, fd);
	attr_list_free(&req);
	return r;
}

static void
qmgr_deliver_start(struct qmgr *q, struct qmgr_job *j)
{
	char path[4096], why[256];
	int r;

	j->dest->inflight++;
	j->tdest->inflight++;
	if ((j->inext = q->inflight) != NULL)
		q->inflight->iprev = &j->inext;
	q->inflight = j;
	j->iprev = &q->inflight;
	uv_timer_init(q->loop, &j->timer);
	j->timer.data = j;
	snprintf(path, sizeof(path), "%s/private/%s", q->spool,
	    strcmp(j->transport, "smtp") == 0 ? "smtp-out" : j->transport);
	if ((r = ipc_connect(q->loop, path, &qmgr_deliver_cbs, j,
	    &j->conn)) < 0) {
		j->conn = NULL;
		snprintf(why, sizeof(why), "delivery agent %s unavailable: %s",
		    j->transport, strerror(-r));
		qmgr_deliver_end(j, why);
		return;
	}
	if (qmgr_deliver_send(q, j) < 0) {
		qmgr_deliver_end(j, "cannot send the delivery request");
		return;
	}
	uv_timer_start(&j->timer, qmgr_deliver_timeout,
	    (uint64_t)conf_time(q->conf, "qmgr_delivery_timeout") * 1000, 0);
}

/* Whether a job for next hop d may start: d and its transport have room. */
static int
qmgr_deliver_room(const struct qmgr_dest *d)
{
	return d->inflight < d->limit && d->tdest->inflight < d->tdest->limit;
}

/*
 * Whether some next hop with waiting jobs has room. Thousands of messages
 * may wait for one busy next hop: the queue is walked only while this
 * holds, so a reply costs a look at the few next hops, not at every job.
 */
static int
qmgr_deliver_startable(const struct qmgr *q)
{
	if (q->stopping)
		return 0;
	for (const struct qmgr_dest *d = q->dests; d != NULL; d = d->next)
		if (d->tdest != NULL && d->queued > 0 && qmgr_deliver_room(d))
			return 1;
	return 0;
}

void
qmgr_deliver_dispatch(struct qmgr *q)
{
	struct qmgr_job **pp, *j;
	int any;

	/*
	 * Starting a request may end it at once and so come back here: the
	 * inner call only asks the outer one for another pass.
	 */
	if (q->dispatching) {
		q->dispatch_again = 1;
		return;
	}
	q->dispatching = 1;
	do {
		q->dispatch_again = 0;
		pp = &q->queue_head;
		any = qmgr_deliver_startable(q);
		while (any && (j = *pp) != NULL) {
			if (!qmgr_deliver_room(j->dest)) {
				pp = &j->next;
				continue;
			}
			*pp = j->next;
			if (*pp == NULL)
				q->queue_tail = pp;
			j->next = NULL;
			j->dest->queued--;
			qmgr_deliver_start(q, j);
			any = qmgr_deliver_startable(q);
		}
	} while (q->dispatch_again && !q->stopping);
	q->dispatching = 0;
}

/* <transport>_<what> when declared, else default_<what>. */
static long long
qmgr_deliver_limit(struct qmgr *q, const char *transport, const char *what)
{
	char name[128];

	snprintf(name, sizeof(name), "%s_%s", transport, what);
	if (conf_param_find(name) == NULL)
		snprintf(name, sizeof(name), "default_%s", what);
	return conf_int(q->conf, name);
}

static void
qmgr_deliver_dest_limit(struct qmgr *q, struct qmgr_dest *d)
{
	d->limit = qmgr_deliver_limit(q, d->transport, d->tdest != NULL ?
	    "destination_concurrency_limit" : "process_limit");
}

void
qmgr_deliver_reload(struct qmgr *q)
{
	for (struct qmgr_dest *d = q->dests; d != NULL; d = d->next)
		qmgr_deliver_dest_limit(q, d);
	qmgr_deliver_dispatch(q);
}

/*
 * The accounting of transport t (h NULL) or of next hop h of t (tdest
 * the transport's), made if new.
 */
static struct qmgr_dest *
qmgr_deliver_dest(struct qmgr *q, const char *t, const char *h,
    struct qmgr_dest *tdest)
{
	struct qmgr_dest *d;
	char *key = h != NULL ? xasprintf("%s:%s", t, h) : xstrdup(t);

	for (d = q->dests; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0) {
			free(key);
			return d;
		}
	d = xcalloc(1, sizeof(*d));
	d->key = key;
	d->transport = xstrdup(t);
	d->tdest = tdest;
	qmgr_deliver_dest_limit(q, d);
	d->next = q->dests;
	q->dests = d;
	return d;
}

/* The job of jobs for (t, h), made if new; t and h are taken over. */
static struct qmgr_job *
qmgr_deliver_job(struct qmgr_msg *m, struct qmgr_job **jobs, char *t,
    char *h, size_t nrcpt)
{
	struct qmgr_job *j;

	for (j = *jobs; j != NULL; j = j->next)
		if (strcmp(j->transport, t) == 0 &&
		    strcasecmp(j->nexthop, h) == 0) {
			free(t);
			free(h);
			return j;
		}
	j = xcalloc(1, sizeof(*j));
	j->m = m;
	j->transport = t;
	j->nexthop = h;
	j->idx = xcalloc(nrcpt, sizeof(*j->idx));
	j->done = xcalloc(nrcpt, 1);
	j->tdest = qmgr_deliver_dest(m->q, t, NULL, NULL);
	j->dest = qmgr_deliver_dest(m->q, t, h, j->tdest);
	j->next = *jobs;
	*jobs = j;
	return j;
}

void
qmgr_deliver_schedule(struct qmgr_msg *m)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	struct qmgr_job *jobs = NULL, *j;

	for (size_t i = 0; i < env->nrcpt; i++) {
		char *t, *h;
		int failing = 0;

		if (env->rcpts[i].status != QUEUE_RCPT_PENDING)
			continue;
		for (size_t k = 0; k < m->nfail; k++)
			if (m->fail_idx[k] == i)
				failing = 1;
		if (failing)
			continue;
		qmgr_route(q, env->rcpts[i].address, &t, &h);
		j = qmgr_deliver_job(m, &jobs, t, h, env->nrcpt);
		j->idx[j->n++] = i;
	}
	while ((j = jobs) != NULL) {
		jobs = j->next;
		j->next = NULL;
		m->njobs++;
		j->dest->queued++;
		*q->queue_tail = j;
		q->queue_tail = &j->next;
	}
}

void
qmgr_deliver_stop(struct qmgr *q)
{
	struct qmgr_job *j;

	while ((j = q->inflight) != NULL) {
		q->inflight = j->inext;
		if (j->conn != NULL)
			ipc_conn_close(&j->conn);
		uv_close((uv_handle_t *)&j->timer, qmgr_deliver_timer_closed);
	}
}

void
qmgr_deliver_free(struct qmgr *q)
{
	struct qmgr_job *j;
	struct qmgr_dest *d;

	while ((j = q->queue_head) != NULL) {
		q->queue_head = j->next;
		qmgr_deliver_job_free(j);
	}
	while ((d = q->dests) != NULL) {
		q->dests = d->next;
		free(d->key);
		free(d->transport);
		free(d);
	}
}
