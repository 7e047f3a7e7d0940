/*
 * qmgr_scan.c - finding work: the periodic scans of incoming/ (mail whose
 * announcement was missed) and deferred/ (mail due for a retry), the
 * active-queue limit, and the recovery of active/ after a crash or restart.
 * Files are moved to active/ in batches with one directory sync per batch.
 * A directory that cannot be read is skipped until the next scan.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "qmgr.h"
#include "queue.h"
#include "queue_file.h"
#include "xalloc.h"

size_t
qmgr_scan_take_many(struct qmgr *q, const char *dir, char *const *ids,
    size_t n)
{
	long long limit = conf_int(q->conf, "qmgr_active_limit");
	size_t *moved = xcalloc(n > 0 ? n : 1, sizeof(*moved));
	size_t nmoved = 0, i;
	char *path;
	int r;

	for (i = 0; i < n; i++) {
		if ((long long)(q->nactive + nmoved) >= limit)
			break;
		if (queue_rename(q->spool, ids[i], dir, QUEUE_ACTIVE) == 0)
			moved[nmoved++] = i;
	}
	/*
	 * One sync of each directory for the whole batch, active/ first:
	 * nothing is delivered before every moved file is durable there.
	 */
	if (nmoved > 0) {
		path = xasprintf("%s/%s", q->spool, QUEUE_ACTIVE);
		r = queue_dir_sync(path);
		free(path);
		if (r == 0) {
			path = xasprintf("%s/%s", q->spool, dir);
			r = queue_dir_sync(path);
			free(path);
		}
		if (r < 0) {
			log_error("cannot sync %s/ after moving %zu messages "
			    "to %s/: %s; they are scheduled at the next start",
			    dir, nmoved, QUEUE_ACTIVE, strerror(-r));
			nmoved = 0;
		}
	}
	for (size_t k = 0; k < nmoved; k++)
		qmgr_msg_activate(q, ids[moved[k]]);
	free(moved);
	return n - i;
}

int
qmgr_scan_take(struct qmgr *q, const char *dir, const char *id)
{
	int r;

	if ((long long)q->nactive >= conf_int(q->conf, "qmgr_active_limit"))
		return -EAGAIN;
	if ((r = queue_move(q->spool, id, dir, QUEUE_ACTIVE)) < 0)
		return r;
	return qmgr_msg_activate(q, id);
}

/*
 * Whether the file id in dir is due for a retry; an unreadable one is, so
 * that activation moves it to corrupt/.
 */
static int
qmgr_scan_due(struct qmgr *q, const char *dir, const char *id, int64_t now)
{
	struct queue_file *qf = NULL;
	const char *errstr;
	char *path = queue_path(q->spool, dir, id);
	int r = queue_file_open(path, 0, &qf, &errstr);
	int due = r < 0 || queue_file_env(qf)->next_retry <= now;

	free(path);
	queue_file_free(&qf);
	return due;
}

void
qmgr_scan_dir(struct qmgr *q, const char *dir, int due_only)
{
	char **ids = NULL;
	size_t n = 0, k = 0;
	int64_t now = qmgr_msg_now();

	if ((long long)q->nactive >= conf_int(q->conf, "qmgr_active_limit") ||
	    queue_scan(q->spool, dir, &ids, &n) < 0)
		return;
	/* Keep the due ones, in order, at the front; free the others. */
	for (size_t i = 0; i < n; i++) {
		if (due_only && !qmgr_scan_due(q, dir, ids[i], now)) {
			free(ids[i]);
			continue;
		}
		ids[k++] = ids[i];
	}
	ids[k] = NULL;
	qmgr_scan_take_many(q, dir, ids, k);
	queue_ids_free(&ids);
}

void
qmgr_scan_recover(struct qmgr *q)
{
	char **ids = NULL;
	size_t n = 0;

	if (queue_scan(q->spool, QUEUE_ACTIVE, &ids, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		qmgr_msg_activate(q, ids[i]);
	queue_ids_free(&ids);
}

/* The announcements of one loop iteration, taken as one batch. */
static void
qmgr_scan_announced_cb(uv_timer_t *t)
{
	struct qmgr *q = t->data;
	char **ids = q->announced;
	size_t n = q->nannounced;

	q->announced = NULL;
	q->nannounced = q->announced_cap = 0;
	/* What the active queue has no room for, the next scan finds. */
	qmgr_scan_take_many(q, QUEUE_INCOMING, ids, n);
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

void
qmgr_scan_announce(struct qmgr *q, const char *id)
{
	if (q->stopping)
		return;
	if (q->nannounced == q->announced_cap) {
		q->announced_cap = q->announced_cap ? q->announced_cap * 2 : 64;
		q->announced = xreallocarray(q->announced, q->announced_cap,
		    sizeof(*q->announced));
	}
	q->announced[q->nannounced++] = xstrdup(id);
	if (q->nannounced == 1)
		uv_timer_start(&q->announce_timer, qmgr_scan_announced_cb, 0,
		    0);
}

static void
qmgr_scan_incoming_cb(uv_timer_t *t)
{
	qmgr_scan_dir(t->data, QUEUE_INCOMING, 0);
}

static void
qmgr_scan_deferred_cb(uv_timer_t *t)
{
	qmgr_scan_dir(t->data, QUEUE_DEFERRED, 1);
}

void
qmgr_scan_start(struct qmgr *q)
{
	uv_timer_init(q->loop, &q->scan_timer);
	q->scan_timer.data = q;
	uv_timer_init(q->loop, &q->defer_timer);
	q->defer_timer.data = q;
	uv_timer_init(q->loop, &q->announce_timer);
	q->announce_timer.data = q;
	uv_timer_start(&q->scan_timer, qmgr_scan_incoming_cb, 0,
	    (uint64_t)conf_time(q->conf, "qmgr_scan_interval") * 1000);
	uv_timer_start(&q->defer_timer, qmgr_scan_deferred_cb, 0,
	    (uint64_t)conf_time(q->conf, "queue_run_delay") * 1000);
}

void
qmgr_scan_stop(struct qmgr *q)
{
	uv_close((uv_handle_t *)&q->scan_timer, NULL);
	uv_close((uv_handle_t *)&q->defer_timer, NULL);
	/* Announced files stay in incoming/ for the next start. */
	uv_close((uv_handle_t *)&q->announce_timer, NULL);
	for (size_t i = 0; i < q->nannounced; i++)
		free(q->announced[i]);
	free(q->announced);
	q->announced = NULL;
	q->nannounced = q->announced_cap = 0;
}
