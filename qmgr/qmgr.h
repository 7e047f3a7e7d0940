/*
 * qmgr.h - the queue manager's private structures and the functions its
 * modules share: qmgr_msg (message life), qmgr_scan (queue scans),
 * qmgr_route (aliases, routing), qmgr_deliver (agent requests), qmgr_notify
 * (RFC 3464 notices), qmgr_ctl (operator requests), qmgr_backoff.
 */
#ifndef QMGR_H
#define QMGR_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "attr.h"
#include "dsn.h"
#include "queue.h"
#include "queue_file.h"

struct conf;
struct ipc_conn;
struct ipc_listener;
struct resolve;
struct service;

/* What an operator asked for a message that is busy, done when idle. */
enum qmgr_action { QMGR_ACT_NONE, QMGR_ACT_HOLD, QMGR_ACT_DELETE };

struct qmgr;

/* A message in active/. */
struct qmgr_msg {
	struct qmgr *q;
	char id[QUEUE_ID_SIZE];
	struct queue_file *qf;
	unsigned njobs;		/* requests outstanding */
	enum qmgr_action action;
	int64_t prev_attempt;	/* last deferral before this activation */
	struct dsn_rcpt *fail;	/* failures to report when idle */
	size_t nfail;
	size_t *fail_idx;
	struct dsn_rcpt *ok;	/* NOTIFY=SUCCESS deliveries */
	size_t nok;
	struct qmgr_msg *next, **pprev;	/* in q->msgs */
	struct qmgr_msg *hnext;		/* in q->msg_hash */
};

/* Buckets of the index of active messages by queue ID. */
#define QMGR_MSG_HASH_SIZE 4096

/*
 * Concurrency accounting per transport (tdest NULL, limit from
 * <transport>_process_limit) and per (transport, next hop) (tdest its
 * transport's, limit from <transport>_destination_concurrency_limit).
 * Limits are read when the entry is made and at reload.
 */
struct qmgr_dest {
	char *key;
	char *transport;
	struct qmgr_dest *tdest;
	long long limit;
	unsigned inflight;
	size_t queued;		/* jobs waiting in q->queue_head */
	struct qmgr_dest *next;
};

/* One delivery request: recipients of one message to one next hop. */
struct qmgr_job {
	struct qmgr_msg *m;
	char *transport;
	char *nexthop;
	size_t *idx;
	char *done;
	size_t n;
	struct qmgr_dest *dest, *tdest;
	struct ipc_conn *conn;
	uv_timer_t timer;
	struct qmgr_job *next;
	struct qmgr_job *inext, **iprev; /* in q->inflight while started */
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
	uv_timer_t scan_timer, defer_timer, announce_timer;
	char **announced;	/* queue_new IDs not yet taken */
	size_t nannounced, announced_cap;
	struct qmgr_msg *msgs;
	struct qmgr_msg *msg_hash[QMGR_MSG_HASH_SIZE];
	size_t nactive;
	struct qmgr_job *queue_head, **queue_tail;
	struct qmgr_dest *dests;
	struct qmgr_job *inflight;
	int dispatching, dispatch_again;
	int stopping;
};

/* ---- qmgr_backoff.c ---- */

/*
 * The delay before retry number ndefer (1 for the first deferral):
 * minimal doubled (ndefer - 1) times, never above maximal.
 */
int64_t qmgr_backoff(unsigned ndefer, int64_t minimal, int64_t maximal);

/* ---- qmgr_msg.c ---- */

/* Seconds since 1970. */
int64_t qmgr_msg_now(void);

/* The message id if it is in active/ and ours, else NULL. */
struct qmgr_msg *qmgr_msg_find(struct qmgr *q, const char *id);

/*
 * Take the file id, already in active/, into scheduling: parse it (a
 * corrupt file goes to corrupt/), expand aliases, queue its requests.
 * 0, or a negative errno (-ENOENT: no such file).
 */
int qmgr_msg_activate(struct qmgr *q, const char *id);

/*
 * Record recipient i's outcome from relay: dsn 2.x.x delivered, 5.x.x
 * bounced (noted for the notice sent when idle), anything else deferred.
 * Ignored when i is not pending.
 */
void qmgr_msg_outcome(struct qmgr_msg *m, size_t i, const char *relay,
    const char *dsn, const char *text);

/*
 * No request is out: send the notices, bounce expired recipients, then
 * remove the file or park it in deferred/ or hold/, and free m.
 */
void qmgr_msg_idle(struct qmgr_msg *m);

/* Unlink m from q and free it (the file stays where it is). */
void qmgr_msg_free(struct qmgr_msg *m);

/* ---- qmgr_scan.c ---- */

/*
 * Move id from dir to active/ and schedule it. -EAGAIN when the active
 * queue is full (qmgr_active_limit), else as qmgr_msg_activate or the move.
 */
int qmgr_scan_take(struct qmgr *q, const char *dir, const char *id);

/*
 * Move ids[0..n-1] from dir to active/ and schedule them, in order, while
 * the active queue has room: all renames, then one fsync of active/ and
 * one of dir, then the activations. Returns how many were left for lack
 * of room. A file that is gone is skipped.
 */
size_t qmgr_scan_take_many(struct qmgr *q, const char *dir, char *const *ids,
    size_t n);

/*
 * smtpd announced id in incoming/: it is taken, with the other
 * announcements of this loop iteration, as one batch right after.
 */
void qmgr_scan_announce(struct qmgr *q, const char *id);

/* Take every file from incoming/, or the due ones from deferred/. */
void qmgr_scan_dir(struct qmgr *q, const char *dir, int due_only);

/* Crash recovery: schedule what a previous run left in active/. */
void qmgr_scan_recover(struct qmgr *q);

/* Start the periodic scans of incoming/ and deferred/. */
void qmgr_scan_start(struct qmgr *q);

/* Stop them (the timers are closed). */
void qmgr_scan_stop(struct qmgr *q);

/* ---- qmgr_route.c ---- */

/*
 * Expand the aliases of every pending recipient of m: targets appended to
 * the file, then the original marked F.
 */
void qmgr_route_expand(struct qmgr_msg *m);

/*
 * The routing decision, without lookups: addr's transport_maps value
 * (NULL: none), whether its domain is ours (local or virtual) and the
 * relayhost ("" for none). Sets malloc'd *transport_r and *nexthop_r.
 */
void qmgr_route_decide(const char *addr, const char *table, int ours,
    const char *relayhost, char **transport_r, char **nexthop_r);

/* Route addr with q's tables: malloc'd transport and next hop. */
void qmgr_route(struct qmgr *q, const char *addr, char **transport_r,
    char **nexthop_r);

/* ---- qmgr_deliver.c ---- */

/* One recipient's answer in an agent's reply. */
struct qmgr_deliver_answer {
	size_t index;		/* rcpt_index */
	const char *status;	/* "2.0.0" */
	const char *text;	/* never NULL */
	const char *relay;	/* relay=, or NULL */
};

/*
 * Parse an agent's reply to a request for the n recipient indexes idx:
 * answers[k] is filled and answered[k] set to 1 for each idx[k] the reply
 * gives a well-formed status for (first answer wins; unknown indexes,
 * repeats and malformed statuses are ignored). Strings point into reply.
 * Returns how many recipients were answered.
 */
size_t qmgr_deliver_parse(const struct attr_list *reply, const size_t *idx,
    size_t n, struct qmgr_deliver_answer *answers, char *answered);

/* Group m's pending recipients by (transport, next hop) into requests. */
void qmgr_deliver_schedule(struct qmgr_msg *m);

/* Start queued requests as far as the limits allow. */
void qmgr_deliver_dispatch(struct qmgr *q);

/* Read the concurrency limits again (after a reload). */
void qmgr_deliver_reload(struct qmgr *q);

/* Drop requests in flight (at stop; their recipients stay pending). */
void qmgr_deliver_stop(struct qmgr *q);

/* Free what is left after the loop ended. */
void qmgr_deliver_free(struct qmgr *q);

/* ---- qmgr_notify.c ---- */

/* Append one recipient report to *arr (strings copied). */
void qmgr_notify_add(struct dsn_rcpt **arr, size_t *n,
    const struct queue_rcpt *rc, const char *action, const char *status,
    const char *text, const char *remote_mta);

/* Free an array filled by qmgr_notify_add; *arr becomes NULL. */
void qmgr_notify_free(struct dsn_rcpt **arr, size_t *n);

/*
 * Queue a notice about rcpts of m's message to its sender (or, for a
 * bounce of our own bounce, to postmaster). 0 when queued or rightly
 * dropped, negative errno when it could not be queued.
 */
int qmgr_notify_send(struct qmgr_msg *m, struct dsn_rcpt *rcpts, size_t n);

/*
 * Whether a delay warning is due now for a message that arrived at
 * arrival, was last deferred at prev_attempt (0: never) before this
 * attempt, with delay_warning_time warn (0: off): the message's age
 * crossed warn since the previous attempt.
 */
int qmgr_notify_delay_due(int64_t arrival, int64_t prev_attempt, int64_t now,
    int64_t warn);

/* Send m's delay warning if one is due (called when m is idle). */
void qmgr_notify_delay(struct qmgr_msg *m);

/* ---- qmgr_ctl.c ---- */

/* Serve one connection on private/qmgr (fd is ours). */
void qmgr_ctl_accept(struct qmgr *q, int fd);

#endif
