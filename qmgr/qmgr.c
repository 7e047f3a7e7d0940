/*
 * qmgr.c - the queue manager: moves mail from incoming/ to active/, expands
 * aliases, routes recipients to delivery agents (pochta-qmgr(8) agent
 * protocol), records each outcome in the queue file before acting on it,
 * defers with exponential backoff and bounces with RFC 3464 notices.
 * Errors on one message defer or quarantine that message, never the queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "attr.h"
#include "buf.h"
#include "conf.h"
#include "dsn.h"
#include "ipc.h"
#include "log.h"
#include "qmgr.h"
#include "queue.h"
#include "queue_file.h"
#include "queue_writer.h"
#include "resolve.h"
#include "service.h"
#include "xalloc.h"

/* Nested alias expansion stops here (RFC 5321 3.9 loops). */
#define QMGR_ALIAS_DEPTH 10
/* Most recipients one message may grow to through aliases. */
#define QMGR_ALIAS_MAX 5000
/* The largest original message attached whole to a bounce. */
#define QMGR_BOUNCE_ATTACH_MAX (16 * 1024 * 1024)

/* Protocol names of the notices we write, so we know our own bounces. */
#define QMGR_PROTO_BOUNCE "BOUNCE"
#define QMGR_PROTO_DOUBLE "DOUBLE-BOUNCE"

struct qmgr;

/* A message in active/. */
struct qmsg {
	struct qmgr *q;
	char id[QUEUE_ID_SIZE];
	struct queue_file *qf;
	unsigned njobs;		/* requests outstanding */
	int action;		/* control request deferred until idle */
	struct dsn_rcpt *fail;	/* failures to report when idle */
	size_t nfail;
	size_t *fail_idx;
	struct dsn_rcpt *ok;	/* NOTIFY=SUCCESS deliveries */
	size_t nok;
	struct qmsg *next;
};

enum { QA_NONE, QA_HOLD, QA_DELETE };

/* Concurrency accounting per transport and per (transport, next hop). */
struct qdest {
	char *key;
	unsigned inflight;
	struct qdest *next;
};

/* One delivery request: recipients of one message to one next hop. */
struct qjob {
	struct qmsg *m;
	char *transport;
	char *nexthop;
	size_t *idx;
	char *done;
	size_t n;
	struct qdest *dest, *tdest;
	struct ipc_conn *conn;
	uv_timer_t timer;
	int64_t start;
	struct qjob *next;
	struct qjob *inext, **iprev;	/* in q->inflight while started */
};

struct qmgr {
	struct service *svc;
	uv_loop_t *loop;
	const struct conf *conf;
	struct resolve *resolve;
	const char *spool;
	const char *myhostname;
	struct ipc_listener **listeners;
	size_t nlisteners;
	uv_timer_t scan_timer, defer_timer;
	struct qmsg *msgs;
	size_t nactive;
	struct qjob *queue_head, **queue_tail;
	struct qdest *dests;
	struct qjob *inflight;
	int stopping;
};

static void qmgr_msg_idle(struct qmsg *m);
static void qmgr_dispatch(struct qmgr *q);
static int qmgr_activate(struct qmgr *q, const char *id);

static int64_t
qmgr_now(void)
{
	return (int64_t)time(NULL);
}

static double
qmgr_delay(const struct qmsg *m)
{
	struct timespec ts;
	uint64_t arr = queue_id_time_us(m->id);

	clock_gettime(CLOCK_REALTIME, &ts);
	double now = ts.tv_sec + ts.tv_nsec / 1e9;
	double d = now - arr / 1e6;
	return d < 0 ? 0 : d;
}

static struct qdest *
qmgr_dest(struct qmgr *q, const char *key)
{
	struct qdest *d;

	for (d = q->dests; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	d = xcalloc(1, sizeof(*d));
	d->key = xstrdup(key);
	d->next = q->dests;
	q->dests = d;
	return d;
}

static struct qmsg *
qmgr_find(struct qmgr *q, const char *id)
{
	for (struct qmsg *m = q->msgs; m != NULL; m = m->next)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

/* ---- bounces ---- */

/*
 * Queue a notice about rcpts of m's message to its sender (or, for a
 * bounce of our own bounce, to postmaster). 0 when queued or rightly
 * dropped, negative errno when it could not be queued (caller defers).
 */
static int
qmgr_notify(struct qmsg *m, struct dsn_rcpt *rcpts, size_t n)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	struct queue_env nenv;
	struct queue_writer *w = NULL;
	struct dsn_info info;
	struct buf out, msg;
	const char *to = env->sender, *errstr = NULL, *proto = QMGR_PROTO_BOUNCE;
	char pm[512];
	uint64_t size, off;
	int r;

	if (*env->sender == '\0') {
		if (env->protocol == NULL ||
		    strcmp(env->protocol, QMGR_PROTO_BOUNCE) != 0) {
			log_info("%s: sender is <>, notice not sent", m->id);
			return 0;
		}
		snprintf(pm, sizeof(pm), "postmaster@%s", q->myhostname);
		to = pm;
		proto = QMGR_PROTO_DOUBLE;
	}
	size = queue_file_msg_size(m->qf);
	if (size > QMGR_BOUNCE_ATTACH_MAX)
		size = QMGR_BOUNCE_ATTACH_MAX;
	buf_init(&msg, QMGR_BOUNCE_ATTACH_MAX + 1);
	for (off = 0; off < size;) {
		char *p = buf_space(&msg, 65536);
		ssize_t k;

		if (p == NULL)
			break;
		k = queue_file_read_msg(m->qf, p, 65536, off);
		if (k <= 0) {
			if (k < 0) {
				buf_release(&msg);
				return (int)k;
			}
			break;
		}
		if ((uint64_t)k > size - off)
			k = size - off;
		buf_commit(&msg, k);
		off += k;
	}
	memset(&info, 0, sizeof(info));
	info.myhostname = q->myhostname;
	info.to = to;
	info.queue_id = m->id;
	info.envid = env->envid;
	info.arrival = env->arrival_sec;
	info.now = qmgr_now();
	info.headers_only = env->ret == QUEUE_RET_HDRS;
	buf_init(&out, 0);
	r = dsn_build(&out, &info, rcpts, n, msg.data != NULL ? msg.data : "",
	    msg.len);
	buf_release(&msg);
	if (r < 0)
		goto done;
	memset(&nenv, 0, sizeof(nenv));
	nenv.sender = "";
	nenv.protocol = (char *)proto;
	nenv.client_name = "localhost";
	nenv.client_addr = "127.0.0.1";
	nenv.helo = (char *)q->myhostname;
	nenv.body = QUEUE_BODY_8BITMIME;
	if ((r = queue_writer_create(q->spool, &nenv, &w, &errstr)) < 0 ||
	    (r = queue_writer_write(w, out.data, out.len)) < 0 ||
	    (r = queue_writer_add_rcpt(w, to, NULL, 0)) < 0 ||
	    (r = queue_writer_commit(w, &errstr)) < 0) {
		log_error("%s: cannot queue notice to <%s>: %s", m->id, to,
		    errstr != NULL ? errstr : strerror(-r));
		goto done;
	}
	log_info("%s: sender %s notification: %s", m->id,
	    strcmp(rcpts[0].action, "delivered") == 0 ? "delivery status" :
	    "non-delivery", queue_writer_id(w));
	{
		char nid[QUEUE_ID_SIZE];

		snprintf(nid, sizeof(nid), "%s", queue_writer_id(w));
		queue_writer_free(&w);
		if (queue_move(q->spool, nid, QUEUE_INCOMING,
		    QUEUE_ACTIVE) == 0)
			qmgr_activate(q, nid);
	}
	r = 0;
done:
	queue_writer_free(&w);
	buf_release(&out);
	return r;
}

static void
qmgr_dsn_add(struct dsn_rcpt **arr, size_t *n, const struct queue_rcpt *rc,
    const char *action, const char *status, const char *text)
{
	struct dsn_rcpt *d;

	*arr = xreallocarray(*arr, *n + 1, sizeof(**arr));
	d = &(*arr)[(*n)++];
	d->address = xstrdup(rc->address);
	d->orcpt = rc->orcpt != NULL ? xstrdup(rc->orcpt) : NULL;
	d->action = action;
	d->status = xstrdup(status);
	d->diag = xstrdup(text);
	d->last_attempt = qmgr_now();
}

static void
qmgr_dsn_free(struct dsn_rcpt **arr, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		free((char *)(*arr)[i].address);
		free((char *)(*arr)[i].orcpt);
		free((char *)(*arr)[i].status);
		free((char *)(*arr)[i].diag);
	}
	free(*arr);
	*arr = NULL;
	*n = 0;
}

/* ---- outcomes ---- */

static void
qmgr_log(struct qmsg *m, const char *rcpt, const char *relay,
    const char *status, const char *dsn, const char *text)
{
	log_info("%s: to=<%s>, relay=%s, delay=%.2f, dsn=%s, status=%s (%s)",
	    m->id, rcpt, relay, qmgr_delay(m), dsn, status, text);
}

static void
qmgr_defer(struct qmsg *m, size_t i, const char *relay, const char *dsn,
    const char *text)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	const struct queue_rcpt *rc = &env->rcpts[i];
	const char *errstr = NULL;
	char reason[QUEUE_FILE_REASON_MAX];
	int64_t now = qmgr_now();
	int64_t wait = qmgr_backoff(rc->ndefer + 1,
	    conf_time(q->conf, "minimal_backoff_time"),
	    conf_time(q->conf, "maximal_backoff_time"));

	snprintf(reason, sizeof(reason), "%s %s", dsn, text);
	if (queue_file_defer(m->qf, i, reason, now, now + wait, &errstr) < 0)
		log_error("%s: cannot record deferral: %s", m->id, errstr);
	qmgr_log(m, rc->address, relay, "deferred", dsn, text);
}

static void
qmgr_outcome(struct qmsg *m, size_t i, const char *relay, const char *dsn,
    const char *text)
{
	const struct queue_env *env = queue_file_env(m->qf);
	const struct queue_rcpt *rc;
	const char *errstr = NULL;

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
		qmgr_log(m, rc->address, relay, "sent", dsn, text);
		if (rc->notify & QUEUE_NOTIFY_SUCCESS)
			qmgr_dsn_add(&m->ok, &m->nok, rc, "delivered", dsn,
			    text);
	} else if (dsn[0] == '5') {
		/* Marked B only once the bounce is queued (qmgr_msg_idle). */
		for (size_t k = 0; k < m->nfail; k++)
			if (m->fail_idx[k] == i)
				return;
		qmgr_log(m, rc->address, relay, "bounced", dsn, text);
		m->fail_idx = xreallocarray(m->fail_idx, m->nfail + 1,
		    sizeof(*m->fail_idx));
		m->fail_idx[m->nfail] = i;
		qmgr_dsn_add(&m->fail, &m->nfail, rc, "failed", dsn, text);
	} else
		qmgr_defer(m, i, relay, dsn[0] == '4' ? dsn : "4.0.0", text);
}

/* ---- alias expansion and routing ---- */

/*
 * The expansion of addr through the alias tables, as a malloc'd list
 * value, or NULL when it has none.
 */
static char *
qmgr_alias_value(struct qmgr *q, const char *addr)
{
	const char *at = strrchr(addr, '@');
	char *v = NULL, key[1100];

	if (resolve_lookup(q->resolve, "virtual_alias_maps", addr, &v) == 0)
		return v;
	if (at != NULL) {
		if (resolve_lookup(q->resolve, "virtual_alias_maps", at,
		    &v) == 0)
			return v;
		if (resolve_domain(q->resolve, at + 1) == RESOLVE_LOCAL) {
			if (resolve_lookup(q->resolve, "alias_maps", addr,
			    &v) == 0)
				return v;
			snprintf(key, sizeof(key), "%.*s", (int)(at - addr),
			    addr);
			if (resolve_lookup(q->resolve, "alias_maps", key,
			    &v) == 0)
				return v;
		}
	}
	return NULL;
}

static int
qmgr_has(const struct queue_env *env, const char *addr, int any)
{
	for (size_t j = 0; j < env->nrcpt; j++)
		if (strcasecmp(env->rcpts[j].address, addr) == 0 &&
		    (any || env->rcpts[j].status != QUEUE_RCPT_FORWARDED))
			return 1;
	return 0;
}

/*
 * Expand aliases of every pending recipient: targets are appended to the
 * file, then the original is marked F, so a crash loses nobody. An address
 * already expanded once in this message is final (self-reference, loops).
 */
static void
qmgr_expand(struct qmsg *m)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	unsigned char *depth = xcalloc(env->nrcpt + QMGR_ALIAS_MAX + 1, 1);
	size_t added = 0;

	for (size_t i = 0; i < queue_file_env(m->qf)->nrcpt; i++) {
		const struct queue_rcpt *rc;
		char *v, *p, *tok, *save = NULL, *addr, dom[512];
		const char *at, *errstr = NULL;
		unsigned notify;
		int nadd = 0, seen_self = 0;

		env = queue_file_env(m->qf);
		rc = &env->rcpts[i];
		if (rc->status != QUEUE_RCPT_PENDING)
			continue;
		/* Already expanded earlier: this copy is the final one. */
		for (size_t j = 0; j < i; j++)
			if (env->rcpts[j].status == QUEUE_RCPT_FORWARDED &&
			    strcasecmp(env->rcpts[j].address,
			    rc->address) == 0)
				seen_self = 1;
		if (seen_self)
			continue;
		if ((v = qmgr_alias_value(q, rc->address)) == NULL)
			continue;
		if (depth[i] >= QMGR_ALIAS_DEPTH) {
			free(v);
			qmgr_outcome(m, i, "none", "5.4.6",
			    "alias expansion too deep (mail loop?)");
			continue;
		}
		addr = xstrdup(rc->address);
		at = strrchr(addr, '@');
		snprintf(dom, sizeof(dom), "%s", at != NULL ? at + 1 :
		    q->myhostname);
		notify = rc->notify;
		p = v;
		while ((tok = strtok_r(p, ", \t\r\n", &save)) != NULL) {
			char target[1100];
			int self;

			p = NULL;
			if (strchr(tok, '@') != NULL)
				snprintf(target, sizeof(target), "%s", tok);
			else
				snprintf(target, sizeof(target), "%s@%s", tok,
				    dom);
			self = strcasecmp(target, addr) == 0;
			env = queue_file_env(m->qf);
			if (!self && qmgr_has(env, target, 1))
				continue;
			if (added >= QMGR_ALIAS_MAX)
				break;
			if (queue_file_add_rcpt(m->qf, target,
			    env->rcpts[i].orcpt, notify, &errstr) < 0) {
				log_error("%s: cannot add alias target %s: %s",
				    m->id, target, errstr);
				break;
			}
			env = queue_file_env(m->qf);
			depth[env->nrcpt - 1] = self ? QMGR_ALIAS_DEPTH :
			    depth[i] + 1;
			added++;
			nadd++;
		}
		free(v);
		if (nadd > 0) {
			if (queue_file_mark(m->qf, i, QUEUE_RCPT_FORWARDED,
			    &errstr) < 0)
				log_error("%s: cannot mark forwarded: %s",
				    m->id, errstr);
			else
				log_info("%s: to=<%s>, status=expanded "
				    "(alias, %d targets)", m->id, addr, nadd);
		}
		free(addr);
	}
	free(depth);
}

/* Route addr: transport and next hop, malloc'd. */
static void
qmgr_route(struct qmgr *q, const char *addr, char **transport_r,
    char **nexthop_r)
{
	const char *at = strrchr(addr, '@');
	const char *domain = at != NULL ? at + 1 : "";
	const char *relayhost = conf_str(q->conf, "relayhost");
	char *v = NULL, *colon;
	enum resolve_class cls;

	if (resolve_lookup(q->resolve, "transport_maps", addr, &v) == 0 ||
	    (*domain != '\0' && resolve_lookup(q->resolve, "transport_maps",
	    domain, &v) == 0)) {
		v[strcspn(v, " \t\r\n")] = '\0';
		colon = strchr(v, ':');
		if (colon != NULL)
			*colon++ = '\0';
		if (*v != '\0') {
			*transport_r = xstrdup(v);
			*nexthop_r = xstrdup(colon != NULL && *colon != '\0' ?
			    colon : strcmp(v, "local") == 0 ? "local" :
			    domain);
			free(v);
			return;
		}
		free(v);
	}
	cls = resolve_domain(q->resolve, domain);
	if (cls == RESOLVE_LOCAL || cls == RESOLVE_VIRTUAL) {
		*transport_r = xstrdup("local");
		*nexthop_r = xstrdup("local");
	} else {
		*transport_r = xstrdup("smtp");
		*nexthop_r = xstrdup(*relayhost != '\0' ? relayhost : domain);
	}
}

/* ---- delivery requests ---- */

static void
qmgr_job_free(struct qjob *j)
{
	free(j->transport);
	free(j->nexthop);
	free(j->idx);
	free(j->done);
	free(j);
}

static void
qmgr_timer_closed(uv_handle_t *h)
{
	qmgr_job_free(h->data);
}

/* The request is over: defer whoever got no answer, account, go on. */
static void
qmgr_job_end(struct qjob *j, const char *why)
{
	struct qmsg *m = j->m;
	struct qmgr *q = m->q;
	const char *relay = strcmp(j->transport, "local") == 0 ? "local" :
	    j->nexthop;

	for (size_t k = 0; k < j->n; k++)
		if (!j->done[k])
			qmgr_outcome(m, j->idx[k], relay, "4.4.0", why);
	if (j->conn != NULL)
		ipc_conn_close(&j->conn);
	if ((*j->iprev = j->inext) != NULL)
		j->inext->iprev = j->iprev;
	j->dest->inflight--;
	j->tdest->inflight--;
	uv_timer_stop(&j->timer);
	uv_close((uv_handle_t *)&j->timer, qmgr_timer_closed);
	if (--m->njobs == 0)
		qmgr_msg_idle(m);
	qmgr_dispatch(q);
}

static void
qmgr_job_reply(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct qjob *j = arg;
	const char *name, *value, *idx = NULL, *status = NULL, *text = NULL;
	const char *relay = strcmp(j->transport, "local") == 0 ? "local" :
	    j->nexthop;
	size_t len;

	(void)conn;
	for (size_t a = 0;; a++) {
		int end = attr_at(msg->attrs, a, &name, &value, &len) < 0;

		if (end || strcmp(name, "rcpt_index") == 0) {
			if (idx != NULL && status != NULL) {
				char *e;
				unsigned long n = strtoul(idx, &e, 10);

				for (size_t k = 0; *e == '\0' && k < j->n;
				    k++) {
					if (j->idx[k] != n || j->done[k])
						continue;
					if ((status[0] == '2' ||
					    status[0] == '4' ||
					    status[0] == '5') &&
					    status[1] == '.') {
						qmgr_outcome(j->m, n, relay,
						    status, text != NULL ?
						    text : "no reason given");
						j->done[k] = 1;
					}
				}
			}
			if (end)
				break;
			idx = value;
			status = text = NULL;
		} else if (strcmp(name, "status") == 0)
			status = value;
		else if (strcmp(name, "text") == 0)
			text = value;
	}
	qmgr_job_end(j, "delivery agent reply without this recipient");
}

static void
qmgr_job_closed(struct ipc_conn *conn, int err, const char *errstr, void *arg)
{
	struct qjob *j = arg;
	char why[256];

	(void)conn;
	j->conn = NULL;	/* freed by the library after this returns */
	snprintf(why, sizeof(why), "delivery agent %s failed: %s",
	    j->transport, err != 0 ? errstr : "connection closed");
	qmgr_job_end(j, why);
}

static void
qmgr_job_timeout(uv_timer_t *t)
{
	qmgr_job_end(t->data, "delivery agent did not answer in time");
}

static const struct ipc_callbacks qmgr_job_cbs = {
	qmgr_job_reply, qmgr_job_closed,
};

static void
qmgr_job_start(struct qmgr *q, struct qjob *j)
{
	char path[4096];
	struct attr_list *req;
	char *path_ro;
	int fd, r;

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
	r = ipc_connect(q->loop, path, &qmgr_job_cbs, j, &j->conn);
	if (r < 0) {
		char why[256];

		j->conn = NULL;
		snprintf(why, sizeof(why), "delivery agent %s unavailable: %s",
		    j->transport, strerror(-r));
		qmgr_job_end(j, why);
		return;
	}
	req = attr_list_new();
	attr_add_str(req, "request", "deliver");
	attr_add_str(req, "queue_id", j->m->id);
	attr_add_str(req, "nexthop", j->nexthop);
	for (size_t k = 0; k < j->n; k++) {
		attr_addf(req, "rcpt_index", "%zu", j->idx[k]);
		attr_add_str(req, "rcpt",
		    queue_file_env(j->m->qf)->rcpts[j->idx[k]].address);
	}
	/* The agent gets its own read-only descriptor; ipc_send owns it. */
	path_ro = queue_path(q->spool, QUEUE_ACTIVE, j->m->id);
	fd = open(path_ro, O_RDONLY | O_CLOEXEC);
	free(path_ro);
	r = fd < 0 ? -errno : ipc_send(j->conn, req, fd);
	attr_list_free(&req);
	if (r < 0) {
		qmgr_job_end(j, "cannot send the delivery request");
		return;
	}
	uv_timer_start(&j->timer, qmgr_job_timeout,
	    (uint64_t)conf_time(q->conf, "qmgr_delivery_timeout") * 1000, 0);
}

/* Start queued requests as far as the concurrency limits allow. */
static void
qmgr_dispatch(struct qmgr *q)
{
	struct qjob **pp = &q->queue_head, *j;
	long long plimit = conf_int(q->conf, "default_process_limit");

	while ((j = *pp) != NULL) {
		char name[64];
		long long dlimit;

		snprintf(name, sizeof(name), "%s_destination_concurrency_limit",
		    j->transport);
		dlimit = conf_param_find(name) != NULL ?
		    conf_int(q->conf, name) :
		    conf_int(q->conf, "default_destination_concurrency_limit");
		if (q->stopping || j->dest->inflight >= dlimit ||
		    j->tdest->inflight >= plimit) {
			pp = &j->next;
			continue;
		}
		*pp = j->next;
		if (*pp == NULL)
			q->queue_tail = pp;
		j->next = NULL;
		qmgr_job_start(q, j);
		/* qmgr_job_start may recurse into dispatch; restart. */
		pp = &q->queue_head;
	}
}

/* Group the pending recipients of m by (transport, next hop) into jobs. */
static void
qmgr_schedule(struct qmsg *m)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	struct qjob *jobs = NULL, *j;
	size_t n = env->nrcpt;

	for (size_t i = 0; i < n; i++) {
		char *t, *h;

		if (env->rcpts[i].status != QUEUE_RCPT_PENDING)
			continue;
		int failing = 0;
		for (size_t k = 0; k < m->nfail; k++)
			if (m->fail_idx[k] == i)
				failing = 1;
		if (failing)
			continue;
		qmgr_route(q, env->rcpts[i].address, &t, &h);
		for (j = jobs; j != NULL; j = j->next)
			if (strcmp(j->transport, t) == 0 &&
			    strcasecmp(j->nexthop, h) == 0)
				break;
		if (j == NULL) {
			char key[1200];

			j = xcalloc(1, sizeof(*j));
			j->m = m;
			j->transport = t;
			j->nexthop = h;
			j->idx = xcalloc(n, sizeof(*j->idx));
			j->done = xcalloc(n, 1);
			snprintf(key, sizeof(key), "%s:%s", t, h);
			j->dest = qmgr_dest(q, key);
			j->tdest = qmgr_dest(q, t);
			j->next = jobs;
			jobs = j;
		} else {
			free(t);
			free(h);
		}
		j->idx[j->n++] = i;
	}
	while ((j = jobs) != NULL) {
		jobs = j->next;
		j->next = NULL;
		m->njobs++;
		*q->queue_tail = j;
		q->queue_tail = &j->next;
	}
}

/* ---- message life ---- */

static void
qmgr_msg_free(struct qmsg *m)
{
	struct qmgr *q = m->q;

	for (struct qmsg **pp = &q->msgs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	q->nactive--;
	queue_file_free(&m->qf);
	qmgr_dsn_free(&m->fail, &m->nfail);
	qmgr_dsn_free(&m->ok, &m->nok);
	free(m->fail_idx);
	free(m);
}

/*
 * No request is out: send the notices, mark bounced recipients, bounce
 * expired ones, then remove the file or park it in deferred/ or hold/.
 */
static void
qmgr_msg_idle(struct qmsg *m)
{
	struct qmgr *q = m->q;
	const struct queue_env *env = queue_file_env(m->qf);
	const char *errstr = NULL;
	int64_t now = qmgr_now();
	long long life = conf_time(q->conf, *env->sender == '\0' ?
	    "bounce_queue_lifetime" : "maximal_queue_lifetime");
	int r;

	if (m->action == QA_DELETE) {
		queue_remove(q->spool, QUEUE_ACTIVE, m->id);
		log_info("%s: removed (deleted by request)", m->id);
		qmgr_msg_free(m);
		return;
	}
	/* Expired: every pending recipient fails with 4.4.7. */
	if (now - env->arrival_sec >= life) {
		for (size_t i = 0; i < env->nrcpt; i++) {
			const struct queue_rcpt *rc = &env->rcpts[i];
			char text[QUEUE_FILE_REASON_MAX + 64];
			int listed = 0;

			if (rc->status != QUEUE_RCPT_PENDING)
				continue;
			for (size_t k = 0; k < m->nfail; k++)
				if (m->fail_idx[k] == i)
					listed = 1;
			if (listed)
				continue;
			snprintf(text, sizeof(text),
			    "delivery time expired%s%s",
			    rc->defer_reason != NULL ? ": " : "",
			    rc->defer_reason != NULL ? rc->defer_reason : "");
			qmgr_log(m, rc->address, "none", "bounced", "4.4.7",
			    text);
			m->fail_idx = xreallocarray(m->fail_idx, m->nfail + 1,
			    sizeof(*m->fail_idx));
			m->fail_idx[m->nfail] = i;
			qmgr_dsn_add(&m->fail, &m->nfail, rc, "failed",
			    "4.4.7", text);
		}
	}
	if (m->nfail > 0) {
		/* NOTIFY=NEVER recipients get no notice (RFC 3461 4.1). */
		struct dsn_rcpt *list = xcalloc(m->nfail, sizeof(*list));
		size_t nl = 0;

		for (size_t k = 0; k < m->nfail; k++)
			if (!(env->rcpts[m->fail_idx[k]].notify &
			    QUEUE_NOTIFY_NEVER) &&
			    (env->rcpts[m->fail_idx[k]].notify == 0 ||
			    (env->rcpts[m->fail_idx[k]].notify &
			    QUEUE_NOTIFY_FAILURE)))
				list[nl++] = m->fail[k];
		r = nl > 0 ? qmgr_notify(m, list, nl) : 0;
		free(list);
		for (size_t k = 0; k < m->nfail; k++) {
			if (r < 0)
				qmgr_defer(m, m->fail_idx[k], "none", "4.3.0",
				    "cannot queue the bounce");
			else if (queue_file_mark(m->qf, m->fail_idx[k],
			    QUEUE_RCPT_BOUNCED, &errstr) < 0)
				log_error("%s: cannot mark bounced: %s",
				    m->id, errstr);
		}
		qmgr_dsn_free(&m->fail, &m->nfail);
		free(m->fail_idx);
		m->fail_idx = NULL;
	}
	if (m->nok > 0) {
		qmgr_notify(m, m->ok, m->nok);
		qmgr_dsn_free(&m->ok, &m->nok);
	}
	if (queue_file_pending(m->qf) == 0) {
		if ((r = queue_remove(q->spool, QUEUE_ACTIVE, m->id)) < 0)
			log_error("%s: cannot remove: %s", m->id,
			    strerror(-r));
		else
			log_info("%s: removed", m->id);
	} else {
		const char *to = m->action == QA_HOLD ? QUEUE_HOLD :
		    QUEUE_DEFERRED;

		if ((r = queue_move(q->spool, m->id, QUEUE_ACTIVE, to)) < 0)
			log_error("%s: cannot move to %s: %s", m->id, to,
			    strerror(-r));
	}
	qmgr_msg_free(m);
}

/* Take the file id in active/ into scheduling. */
static int
qmgr_activate(struct qmgr *q, const char *id)
{
	struct qmsg *m;
	const struct queue_env *env;
	const char *errstr = NULL;
	char *path;
	int r;

	if (qmgr_find(q, id) != NULL)
		return 0;
	m = xcalloc(1, sizeof(*m));
	m->q = q;
	snprintf(m->id, sizeof(m->id), "%s", id);
	path = queue_path(q->spool, QUEUE_ACTIVE, id);
	r = queue_file_open(path, 1, &m->qf, &errstr);
	free(path);
	if (r < 0) {
		if (r == -ENOENT) {
			free(m);
			return r;
		}
		log_error("%s: unreadable queue file (%s); moved to corrupt/",
		    id, errstr != NULL ? errstr : strerror(-r));
		queue_move(q->spool, id, QUEUE_ACTIVE, QUEUE_CORRUPT);
		free(m);
		return r;
	}
	m->next = q->msgs;
	q->msgs = m;
	q->nactive++;
	env = queue_file_env(m->qf);
	log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)", id,
	    env->sender, (unsigned long long)env->msg_size, env->nrcpt);
	qmgr_expand(m);
	qmgr_schedule(m);
	if (m->njobs == 0)
		qmgr_msg_idle(m);
	else
		qmgr_dispatch(q);
	return 0;
}

/* Move id from dir to active/ and schedule it, within the active limit. */
static int
qmgr_take(struct qmgr *q, const char *dir, const char *id)
{
	int r;

	if ((long long)q->nactive >= conf_int(q->conf, "qmgr_active_limit"))
		return -EAGAIN;
	if ((r = queue_move(q->spool, id, dir, QUEUE_ACTIVE)) < 0)
		return r;
	return qmgr_activate(q, id);
}

static void
qmgr_scan_dir(struct qmgr *q, const char *dir, int due_only)
{
	char **ids = NULL;
	size_t n = 0;
	int64_t now = qmgr_now();

	if (queue_scan(q->spool, dir, &ids, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (due_only) {
			struct queue_file *qf = NULL;
			const char *errstr;
			char *path = queue_path(q->spool, dir, ids[i]);
			int r = queue_file_open(path, 0, &qf, &errstr);
			int due = r < 0 ||
			    queue_file_env(qf)->next_retry <= now;

			free(path);
			queue_file_free(&qf);
			if (!due)
				continue;
		}
		if (qmgr_take(q, dir, ids[i]) == -EAGAIN)
			break;
	}
	queue_ids_free(&ids);
}

static void
qmgr_scan_cb(uv_timer_t *t)
{
	qmgr_scan_dir(t->data, QUEUE_INCOMING, 0);
}

static void
qmgr_defer_cb(uv_timer_t *t)
{
	qmgr_scan_dir(t->data, QUEUE_DEFERRED, 1);
}

/* ---- control requests ---- */

static const char *
qmgr_ctl_one(struct qmgr *q, const char *req, const char *id)
{
	static const char *dirs[] = { QUEUE_INCOMING, QUEUE_DEFERRED,
	    QUEUE_HOLD };
	struct qmsg *m = qmgr_find(q, id);

	if (strcmp(req, "hold") == 0 || strcmp(req, "delete") == 0) {
		int del = req[0] == 'd';

		if (m != NULL) {
			m->action = del ? QA_DELETE : QA_HOLD;
			if (m->njobs == 0)
				qmgr_msg_idle(m);
			return NULL;
		}
		for (size_t i = 0; i < 3; i++) {
			if (del && queue_remove(q->spool, dirs[i], id) == 0) {
				log_info("%s: removed (deleted by request)",
				    id);
				return NULL;
			}
			if (!del && i < 2 && queue_move(q->spool, id, dirs[i],
			    QUEUE_HOLD) == 0) {
				log_info("%s: held", id);
				return NULL;
			}
		}
		return del ? "no such message" : "no such message to hold";
	}
	if (strcmp(req, "release") == 0) {
		if (queue_move(q->spool, id, QUEUE_HOLD, QUEUE_INCOMING) < 0)
			return "no such message on hold";
		log_info("%s: released", id);
		qmgr_take(q, QUEUE_INCOMING, id);
		return NULL;
	}
	/* requeue */
	if (m != NULL)
		return NULL;
	if (queue_move(q->spool, id, QUEUE_DEFERRED, QUEUE_INCOMING) < 0 &&
	    queue_move(q->spool, id, QUEUE_HOLD, QUEUE_INCOMING) < 0) {
		char *path = queue_path(q->spool, QUEUE_INCOMING, id);
		int missing = access(path, F_OK) < 0;

		free(path);
		if (missing)
			return "no such message";
	}
	qmgr_take(q, QUEUE_INCOMING, id);
	return NULL;
}

static void
qmgr_reply(struct ipc_conn *conn, const char *status, const char *text)
{
	struct attr_list *l = attr_list_new();

	attr_add_str(l, "status", status);
	attr_add_str(l, "text", text);
	ipc_send(conn, l, -1);
	attr_list_free(&l);
}

static void
qmgr_ctl_msg(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct qmgr *q = arg;
	const char *req = attr_get_str(msg->attrs, "request");
	const char *id = attr_get_str(msg->attrs, "queue_id");
	char text[256];

	if (req == NULL) {
		qmgr_reply(conn, "5.5.2", "no request");
		return;
	}
	if (strcmp(req, "queue_new") == 0) {
		if (id != NULL && queue_id_valid(id))
			qmgr_take(q, QUEUE_INCOMING, id);
		return;
	}
	if (strcmp(req, "flush") == 0) {
		char **ids = NULL;
		size_t n = 0;

		if (queue_scan(q->spool, QUEUE_DEFERRED, &ids, &n) == 0) {
			for (size_t i = 0; i < n; i++)
				qmgr_take(q, QUEUE_DEFERRED, ids[i]);
			queue_ids_free(&ids);
		}
		snprintf(text, sizeof(text), "flushed %zu messages", n);
		qmgr_reply(conn, "2.0.0", text);
		return;
	}
	if (strcmp(req, "hold") != 0 && strcmp(req, "release") != 0 &&
	    strcmp(req, "delete") != 0 && strcmp(req, "requeue") != 0) {
		qmgr_reply(conn, "5.5.1", "unknown request");
		return;
	}
	if (id == NULL || (strcmp(id, "ALL") != 0 && !queue_id_valid(id))) {
		qmgr_reply(conn, "5.5.4", "bad or missing queue_id");
		return;
	}
	if (strcmp(id, "ALL") == 0) {
		static const char *dirs[] = { QUEUE_INCOMING, QUEUE_ACTIVE,
		    QUEUE_DEFERRED, QUEUE_HOLD };
		size_t done = 0;

		for (size_t d = 0; d < 4; d++) {
			char **ids = NULL;
			size_t n = 0;

			if (queue_scan(q->spool, dirs[d], &ids, &n) < 0)
				continue;
			for (size_t i = 0; i < n; i++)
				if (qmgr_ctl_one(q, req, ids[i]) == NULL)
					done++;
			queue_ids_free(&ids);
		}
		snprintf(text, sizeof(text), "%s: %zu messages", req, done);
		qmgr_reply(conn, "2.0.0", text);
		return;
	}
	{
		const char *err = qmgr_ctl_one(q, req, id);

		if (err != NULL)
			qmgr_reply(conn, "5.1.0", err);
		else {
			snprintf(text, sizeof(text), "%s: %s", req, id);
			qmgr_reply(conn, "2.0.0", text);
		}
	}
}

static const struct ipc_callbacks qmgr_ctl_cbs = { qmgr_ctl_msg, NULL };

static void
qmgr_on_conn(struct ipc_listener *listener, int fd, void *arg)
{
	struct ipc_conn *conn;
	int r;

	(void)listener;
	if ((r = ipc_conn_new(((struct qmgr *)arg)->loop, fd, &qmgr_ctl_cbs,
	    arg, &conn)) < 0) {
		log_warn("connection: %s", strerror(-r));
		close(fd);
	}
}

static void
qmgr_on_stop(struct service *svc, void *arg)
{
	struct qmgr *q = arg;
	struct qjob *j;

	(void)svc;
	q->stopping = 1;
	for (size_t i = 0; i < q->nlisteners; i++)
		ipc_listener_free(&q->listeners[i]);
	uv_close((uv_handle_t *)&q->scan_timer, NULL);
	uv_close((uv_handle_t *)&q->defer_timer, NULL);
	/*
	 * Requests in flight are dropped: their recipients are still pending
	 * in the files in active/, scheduled again at the next start.
	 */
	while ((j = q->inflight) != NULL) {
		q->inflight = j->inext;
		if (j->conn != NULL)
			ipc_conn_close(&j->conn);
		uv_close((uv_handle_t *)&j->timer, qmgr_timer_closed);
	}
}

/* SIGHUP: take the new settings and reopen the tables. */
static void
qmgr_on_reload(struct service *svc, const struct conf *old, void *arg)
{
	struct qmgr *q = arg;
	struct resolve *res = NULL;
	char *err = NULL;

	(void)old;
	if (resolve_open(service_conf(svc), &res, &err) < 0) {
		/* Keep running with the old tables, on the new settings. */
		log_error("reload: %s; keeping the old tables", err);
		free(err);
	} else {
		resolve_free(&q->resolve);
		q->resolve = res;
	}
	q->conf = service_conf(svc);
	q->spool = conf_str(q->conf, "queue_directory");
	q->myhostname = conf_str(q->conf, "myhostname");
}

/* Free what is left after the loop ended. */
static void
qmgr_free(struct qmgr *q)
{
	struct qjob *j;
	struct qdest *d;

	while ((j = q->queue_head) != NULL) {
		q->queue_head = j->next;
		qmgr_job_free(j);
	}
	while (q->msgs != NULL)
		qmgr_msg_free(q->msgs);
	while ((d = q->dests) != NULL) {
		q->dests = d->next;
		free(d->key);
		free(d);
	}
	free(q->listeners);
	resolve_free(&q->resolve);
}

int
main(int argc, char **argv)
{
	struct qmgr q;
	char *err = NULL;
	char **ids = NULL;
	size_t n = 0, removed = 0;
	int status;

	memset(&q, 0, sizeof(q));
	q.queue_tail = &q.queue_head;
	q.svc = service_init("qmgr", argc, argv);
	q.loop = service_loop(q.svc);
	q.conf = service_conf(q.svc);
	q.spool = conf_str(q.conf, "queue_directory");
	q.myhostname = conf_str(q.conf, "myhostname");
	if (resolve_open(q.conf, &q.resolve, &err) < 0)
		fatal("%s", err);
	q.nlisteners = service_listen_count(q.svc);
	if (q.nlisteners == 0)
		fatal("no listening socket: qmgr runs under master "
		      "(see pochta-master(8))");
	queue_mkdirs(q.spool);
	queue_tmp_cleanup(q.spool, 86400, qmgr_now(), &removed);
	q.listeners = xcalloc(q.nlisteners, sizeof(*q.listeners));
	for (size_t i = 0; i < q.nlisteners; i++)
		if (ipc_listen(q.loop, service_listen_fd(q.svc, i),
		    qmgr_on_conn, &q, &q.listeners[i]) < 0)
			fatal("cannot listen");
	/* Recovery: what a previous run left in active/ is scheduled again. */
	if (queue_scan(q.spool, QUEUE_ACTIVE, &ids, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			qmgr_activate(&q, ids[i]);
		queue_ids_free(&ids);
	}
	uv_timer_init(q.loop, &q.scan_timer);
	q.scan_timer.data = &q;
	uv_timer_init(q.loop, &q.defer_timer);
	q.defer_timer.data = &q;
	uv_timer_start(&q.scan_timer, qmgr_scan_cb, 0,
	    (uint64_t)conf_time(q.conf, "qmgr_scan_interval") * 1000);
	uv_timer_start(&q.defer_timer, qmgr_defer_cb, 0,
	    (uint64_t)conf_time(q.conf, "queue_run_delay") * 1000);
	service_on_stop(q.svc, qmgr_on_stop, &q);
	service_on_reload(q.svc, qmgr_on_reload, &q);
	status = service_run(q.svc);
	qmgr_free(&q);
	return status;
}
