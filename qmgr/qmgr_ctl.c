/*
 * qmgr_ctl.c - requests on private/qmgr: queue_new from smtpd, and the
 * operator's flush, hold, release, delete and requeue (pochta-queue(8)).
 * A busy message is acted upon when its requests are done, so no message
 * is lost or delivered twice. Bad requests get a 5.5.x reply.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attr.h"
#include "ipc.h"
#include "log.h"
#include "qmgr.h"
#include "queue.h"

/* Hold or delete id, wherever it is; NULL or why not. */
static const char *
qmgr_ctl_hold_delete(struct qmgr *q, const char *id, int del)
{
	static const char *dirs[] = { QUEUE_INCOMING, QUEUE_DEFERRED,
	    QUEUE_HOLD };
	struct qmgr_msg *m = qmgr_msg_find(q, id);

	if (m != NULL) {
		m->action = del ? QMGR_ACT_DELETE : QMGR_ACT_HOLD;
		if (m->njobs == 0)
			qmgr_msg_idle(m);
		return NULL;
	}
	for (size_t i = 0; i < 3; i++) {
		if (del && queue_remove(q->spool, dirs[i], id) == 0) {
			log_info("%s: removed (deleted by request)", id);
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

static const char *
qmgr_ctl_one(struct qmgr *q, const char *req, const char *id)
{
	if (strcmp(req, "hold") == 0 || strcmp(req, "delete") == 0)
		return qmgr_ctl_hold_delete(q, id, req[0] == 'd');
	if (strcmp(req, "release") == 0) {
		if (queue_move(q->spool, id, QUEUE_HOLD, QUEUE_INCOMING) < 0)
			return "no such message on hold";
		log_info("%s: released", id);
		qmgr_scan_take(q, QUEUE_INCOMING, id);
		return NULL;
	}
	/* requeue */
	if (qmgr_msg_find(q, id) != NULL)
		return NULL;
	if (queue_move(q->spool, id, QUEUE_DEFERRED, QUEUE_INCOMING) < 0 &&
	    queue_move(q->spool, id, QUEUE_HOLD, QUEUE_INCOMING) < 0) {
		char *path = queue_path(q->spool, QUEUE_INCOMING, id);
		int missing = access(path, F_OK) < 0;

		free(path);
		if (missing)
			return "no such message";
	}
	qmgr_scan_take(q, QUEUE_INCOMING, id);
	return NULL;
}

static void
qmgr_ctl_reply(struct ipc_conn *conn, const char *status, const char *text)
{
	struct attr_list *l = attr_list_new();

	attr_add_str(l, "status", status);
	attr_add_str(l, "text", text);
	ipc_send(conn, l, -1);
	attr_list_free(&l);
}

static void
qmgr_ctl_flush(struct qmgr *q, struct ipc_conn *conn)
{
	char **ids = NULL, text[64];
	size_t n = 0;

	if (queue_scan(q->spool, QUEUE_DEFERRED, &ids, &n) == 0) {
		qmgr_scan_take_many(q, QUEUE_DEFERRED, ids, n);
		queue_ids_free(&ids);
	}
	snprintf(text, sizeof(text), "flushed %zu messages", n);
	qmgr_ctl_reply(conn, "2.0.0", text);
}

static void
qmgr_ctl_all(struct qmgr *q, struct ipc_conn *conn, const char *req)
{
	static const char *dirs[] = { QUEUE_INCOMING, QUEUE_ACTIVE,
	    QUEUE_DEFERRED, QUEUE_HOLD };
	size_t done = 0;
	char text[64];

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
	qmgr_ctl_reply(conn, "2.0.0", text);
}

static void
qmgr_ctl_msg(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct qmgr *q = arg;
	const char *req = attr_get_str(msg->attrs, "request");
	const char *id = attr_get_str(msg->attrs, "queue_id");
	const char *err;
	char text[256];

	if (req == NULL) {
		qmgr_ctl_reply(conn, "5.5.2", "no request");
		return;
	}
	if (strcmp(req, "queue_new") == 0) {
		if (id != NULL && queue_id_valid(id))
			qmgr_scan_announce(q, id);
		return;
	}
	if (strcmp(req, "flush") == 0) {
		qmgr_ctl_flush(q, conn);
		return;
	}
	if (strcmp(req, "hold") != 0 && strcmp(req, "release") != 0 &&
	    strcmp(req, "delete") != 0 && strcmp(req, "requeue") != 0) {
		qmgr_ctl_reply(conn, "5.5.1", "unknown request");
		return;
	}
	if (id == NULL || (strcmp(id, "ALL") != 0 && !queue_id_valid(id))) {
		qmgr_ctl_reply(conn, "5.5.4", "bad or missing queue_id");
		return;
	}
	if (strcmp(id, "ALL") == 0) {
		qmgr_ctl_all(q, conn, req);
		return;
	}
	if ((err = qmgr_ctl_one(q, req, id)) != NULL) {
		qmgr_ctl_reply(conn, "5.1.0", err);
		return;
	}
	snprintf(text, sizeof(text), "%s: %s", req, id);
	qmgr_ctl_reply(conn, "2.0.0", text);
}

static const struct ipc_callbacks qmgr_ctl_cbs = { qmgr_ctl_msg, NULL };

void
qmgr_ctl_accept(struct qmgr *q, int fd)
{
	struct ipc_conn *conn;
	int r;

	if ((r = ipc_conn_new(q->loop, fd, &qmgr_ctl_cbs, q, &conn)) < 0) {
		log_warn("connection: %s", strerror(-r));
		close(fd);
	}
}
