/*
 * agent.h - the server side of qmgr's delivery agent protocol
 * (pochta-protocol(7)) for delivery agents: takes connections on the
 * master's listening sockets, parses each request (queue ID, next hop,
 * recipients, the queue file's descriptor), hands it to the agent and sends
 * the per-recipient answers in request order. A malformed request gets an
 * error reply; a broken stream is closed. Loop thread only.
 */
#ifndef POCHTA_AGENT_H
#define POCHTA_AGENT_H

#include <stddef.h>

#include <uv.h>

#include "queue.h"

struct agent;
struct service;
struct agent_client;

/* One recipient of a request and, once done, its outcome. */
struct agent_rcpt {
	size_t index;		/* recipient record in the queue file */
	char *address;		/* as qmgr sent it */
	char status[16];	/* RFC 3463 code; "" means 4.3.0 */
	char *text;		/* human readable reason, malloc'd or NULL */
	char *relay;		/* host[addr]:port that answered, or NULL */
};

/* One delivery request, owned by the agent module. */
struct agent_req {
	char queue_id[QUEUE_ID_SIZE];
	const char *nexthop;	/* never NULL; "" when not sent */
	int fd;			/* the queue file: take it, or -1 */
	struct agent_rcpt *rcpts;
	size_t nrcpt;
	void *data;		/* for the delivery agent */
	/* Private: */
	char *nexthop_buf;
	char *error;
	int done;
	struct agent_req *next;
	struct agent_client *client;
};

/*
 * Called with each well-formed request. The agent delivers it (now or
 * later) and then calls agent_req_done() exactly once.
 */
typedef void (*agent_start_fn)(struct agent_req *req, void *arg);

/*
 * Serve qmgr on the listening sockets fds[0..nfds-1] (from
 * service_listen_fd()) on loop. max_rcpts bounds the recipients of one
 * request. Returns 0 and *agent_r, or a negative errno and a malloc'd
 * *errstr_r (-EINVAL: no socket at all).
 */
int agent_new(uv_loop_t *loop, const int *fds, size_t nfds,
    size_t max_rcpts, agent_start_fn start, void *arg,
    struct agent **agent_r, char **errstr_r);

/* agent_new() on every listening socket master passed to svc. */
int agent_new_service(struct service *svc, size_t max_rcpts,
    agent_start_fn start, void *arg, struct agent **agent_r,
    char **errstr_r);

/* Change the recipient limit (after a reload). */
void agent_set_max_rcpts(struct agent *a, size_t max_rcpts);

/*
 * The request is finished: its answer goes out once every earlier request
 * on its connection is answered, and req is freed then (maybe at once).
 */
void agent_req_done(struct agent_req *req);

/* Set every recipient's status and text (copied), log it, and finish. */
void agent_req_fail(struct agent_req *req, const char *status,
    const char *text);

/*
 * Stop listening and close every connection; requests still running are
 * finished by the agent as usual and their answers dropped (qmgr retries
 * those recipients). Idempotent.
 */
void agent_stop(struct agent *a);

/* Stop and free, once no request is running; *a becomes NULL. */
void agent_free(struct agent **a);

#endif
