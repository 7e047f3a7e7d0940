/*
 * qmgr.c - the queue manager's main program: configuration, the
 * private/qmgr listener, crash recovery, the periodic scans, and reload and
 * stop (pochta-qmgr(8)). Startup problems are fatal; after that, errors on
 * one message defer or quarantine that message, never the queue.
 */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "conf.h"
#include "ipc.h"
#include "log.h"
#include "qmgr.h"
#include "queue.h"
#include "resolve.h"
#include "service.h"
#include "xalloc.h"

static void
qmgr_on_conn(struct ipc_listener *listener, int fd, void *arg)
{
	(void)listener;
	qmgr_ctl_accept(arg, fd);
}

static void
qmgr_on_stop(struct service *svc, void *arg)
{
	struct qmgr *q = arg;

	(void)svc;
	q->stopping = 1;
	for (size_t i = 0; i < q->nlisteners; i++)
		ipc_listener_free(&q->listeners[i]);
	qmgr_scan_stop(q);
	/*
	 * Requests in flight are dropped: their recipients are still pending
	 * in the files in active/, scheduled again at the next start.
	 */
	qmgr_deliver_stop(q);
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
	qmgr_deliver_reload(q);
}

/* Free what is left after the loop ended. */
static void
qmgr_free(struct qmgr *q)
{
	qmgr_deliver_free(q);
	while (q->msgs != NULL)
		qmgr_msg_free(q->msgs);
	free(q->listeners);
	resolve_free(&q->resolve);
}

int
main(int argc, char **argv)
{
	struct qmgr q;
	char *err = NULL;
	size_t removed = 0;
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
	queue_tmp_cleanup(q.spool, 86400, qmgr_msg_now(), &removed);
	q.listeners = xcalloc(q.nlisteners, sizeof(*q.listeners));
	for (size_t i = 0; i < q.nlisteners; i++)
		if (ipc_listen(q.loop, service_listen_fd(q.svc, i),
		    qmgr_on_conn, &q, &q.listeners[i]) < 0)
			fatal("cannot listen");
	qmgr_scan_recover(&q);
	qmgr_scan_start(&q);
	service_on_stop(q.svc, qmgr_on_stop, &q);
	service_on_reload(q.svc, qmgr_on_reload, &q);
	status = service_run(q.svc);
	qmgr_free(&q);
	return status;
}
