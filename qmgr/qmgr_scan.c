/*
 * qmgr_scan.c - finding work: the periodic scans of incoming/ (mail whose
 * announcement was missed) and deferred/ (mail due for a retry), the
 * active-queue limit, and the recovery of active/ after a crash or restart.
 * A directory that cannot be read is skipped until the next scan.
 */
#include <errno.h>
#include <stdlib.h>

#include "conf.h"
#include "qmgr.h"
#include "queue.h"
#include "queue_file.h"

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
	size_t n = 0;
	int64_t now = qmgr_msg_now();

	if (queue_scan(q->spool, dir, &ids, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (due_only && !qmgr_scan_due(q, dir, ids[i], now))
			continue;
		if (qmgr_scan_take(q, dir, ids[i]) == -EAGAIN)
			break;
	}
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
}
