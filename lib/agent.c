/*
 * agent.c - the delivery agents' side of qmgr's agent protocol
 * (pochta-protocol(7)): connections, request parsing, answers in request
 * order. A malformed request gets a 5.5.4 answer, a runaway or broken
 * peer is disconnected; nothing a peer sends makes the agent exit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "attr.h"
#include "ipc.h"
#include "log.h"
#include "service.h"
#include "xalloc.h"

/* Requests one connection may have in flight; more is a runaway peer. */
#define AGENT_MAX_JOBS 256

struct agent_client {
	struct agent *agent;
	struct agent_client *prev, *next;	/* the agent's clients */
	struct ipc_conn *conn;		/* NULL once closed */
	struct agent_req *head, *tail;	/* requests, in arrival order */
	size_t nreqs;
};

struct agent {
	uv_loop_t *loop;
	struct ipc_listener **listeners;
	size_t nlisteners;
	struct agent_client *clients;
	size_t max_rcpts;
	agent_start_fn start;
	void *arg;
	int stopping;
};

static void
req_free(struct agent_req **reqp)
{
	struct agent_req *req = *reqp;

	*reqp = NULL;
	if (req == NULL)
		return;
	if (req->fd >= 0)
		close(req->fd);
	for (size_t i = 0; i < req->nrcpt; i++) {
		free(req->rcpts[i].address);
		free(req->rcpts[i].text);
		free(req->rcpts[i].relay);
	}
	free(req->rcpts);
	free(req->nexthop_buf);
	free(req->error);
	free(req);
}

static void
client_maybe_free(struct agent_client *cl)
{
	struct agent *a = cl->agent;

	if (cl->conn != NULL || cl->nreqs > 0)
		return;
	if (cl->prev != NULL)
		cl->prev->next = cl->next;
	else
		a->clients = cl->next;
	if (cl->next != NULL)
		cl->next->prev = cl->prev;
	free(cl);
}

static void
req_reply(struct agent_client *cl, struct agent_req *req)
{
	struct attr_list *reply = attr_list_new();

	if (req->error != NULL) {
		attr_add_str(reply, "status", "5.5.4");
		attr_add_str(reply, "text", req->error);
	}
	for (size_t i = 0; req->error == NULL && i < req->nrcpt; i++) {
		struct agent_rcpt *rc = &req->rcpts[i];

		attr_addf(reply, "rcpt_index", "%zu", rc->index);
		attr_add_str(reply, "rcpt", rc->address);
		attr_add_str(reply, "status", rc->status[0] != '\0' ?
		    rc->status : "4.3.0");
		attr_add_str(reply, "text", rc->text != NULL ? rc->text : "");
		if (rc->relay != NULL)
			attr_add_str(reply, "relay", rc->relay);
	}
	if (ipc_send(cl->conn, reply, -1) < 0) {
		log_warn("reply for %s not sent: connection closing or "
		    "output full", req->queue_id);
		ipc_conn_close(&cl->conn);
	}
	attr_list_free(&reply);
}

/* Answer finished requests from the head: answers keep the order. */
static void
client_flush(struct agent_client *cl)
{
	while (cl->head != NULL && cl->head->done) {
		struct agent_req *req = cl->head;

		cl->head = req->next;
		if (cl->head == NULL)
			cl->tail = NULL;
		cl->nreqs--;
		if (cl->conn != NULL)
			req_reply(cl, req);
		req_free(&req);
	}
	client_maybe_free(cl);
}

void
agent_req_done(struct agent_req *req)
{
	req->done = 1;
	client_flush(req->client);
}

void
agent_req_fail(struct agent_req *req, const char *status, const char *text)
{
	for (size_t i = 0; i < req->nrcpt; i++) {
		snprintf(req->rcpts[i].status, sizeof(req->rcpts[i].status),
		    "%s", status);
		free(req->rcpts[i].text);
		req->rcpts[i].text = xstrdup(text);
	}
	log_info("%s: %s", req->queue_id, text);
	agent_req_done(req);
}

/* One rcpt_index/rcpt pair; 0, or -EINVAL with req->error set. */
static int
parse_rcpt(struct agent_req *req, const char *name, const char *value,
    size_t len, size_t max_rcpts, size_t *cap, int *have_index)
{
	if (strcmp(name, "rcpt_index") == 0) {
		if (*have_index || len == 0 || len > 9 ||
		    strspn(value, "0123456789") != len) {
			req->error = xstrdup("bad rcpt_index");
			return -EINVAL;
		}
		if (req->nrcpt == max_rcpts) {
			req->error = xstrdup("too many recipients");
			return -EINVAL;
		}
		if (req->nrcpt == *cap) {
			*cap = *cap ? *cap * 2 : 8;
			req->rcpts = xreallocarray(req->rcpts, *cap,
			    sizeof(*req->rcpts));
		}
		memset(&req->rcpts[req->nrcpt], 0, sizeof(req->rcpts[0]));
		req->rcpts[req->nrcpt].index =
		    (size_t)strtoull(value, NULL, 10);
		*have_index = 1;
	} else if (strcmp(name, "rcpt") == 0) {
		/* Agents may put it on a protocol line: no line breaks. */
		if (!*have_index || len == 0 ||
		    strcspn(value, "\r\n") != len) {
			req->error = xstrdup("bad rcpt");
			return -EINVAL;
		}
		req->rcpts[req->nrcpt++].address = xstrdup(value);
		*have_index = 0;
	}
	return 0;
}

/* Fill req from the request, or set req->error saying what is wrong. */
static void
req_parse(struct agent_req *req, struct ipc_msg *msg, size_t max_rcpts)
{
	const struct attr_list *a = msg->attrs;
	const char *type = attr_get_str(a, "request");
	const char *id = attr_get_str(a, "queue_id");
	const char *nh = attr_get_str(a, "nexthop");
	size_t n, cap = 0;
	int have_index = 0;

	if (type == NULL || strcmp(type, "deliver") != 0) {
		req->error = xstrdup("unknown request");
		return;
	}
	if (id == NULL || !queue_id_valid(id)) {
		req->error = xstrdup("missing or bad queue_id");
		return;
	}
	snprintf(req->queue_id, sizeof(req->queue_id), "%s", id);
	req->nexthop_buf = xstrdup(nh != NULL ? nh : "");
	req->nexthop = req->nexthop_buf;
	n = attr_count(a);
	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t len;

		attr_at(a, i, &name, &value, &len);
		if (memchr(value, '\0', len) != NULL) {
			req->error = xstrdup("NUL byte in request");
			return;
		}
		if (parse_rcpt(req, name, value, len, max_rcpts, &cap,
		    &have_index) < 0)
			return;
	}
	if (have_index)
		req->error = xstrdup("rcpt_index without rcpt");
	else if (req->nrcpt == 0)
		req->error = xstrdup("no recipients");
	else if (msg->nfds != 1)
		req->error = xstrdup(msg->nfds == 0 ? "no queue file passed" :
		    "more than one descriptor passed");
	else
		req->fd = ipc_msg_take_fd(msg, 0);
}

static void
on_message(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct agent_client *cl = arg;
	struct agent *a = cl->agent;
	struct agent_req *req;

	(void)conn;
	if (cl->nreqs >= AGENT_MAX_JOBS) {
		log_warn("client sends more than %d requests at once; "
		    "disconnecting", AGENT_MAX_JOBS);
		ipc_conn_close(&cl->conn);
		client_maybe_free(cl);
		return;
	}
	req = xcalloc(1, sizeof(*req));
	req->fd = -1;
	req->client = cl;
	req->nexthop = "";
	req_parse(req, msg, a->max_rcpts);
	if (cl->tail != NULL)
		cl->tail->next = req;
	else
		cl->head = req;
	cl->tail = req;
	cl->nreqs++;
	if (req->error != NULL) {
		log_warn("%s: bad delivery request: %s",
		    req->queue_id[0] != '\0' ? req->queue_id : "-",
		    req->error);
		agent_req_done(req);
		return;
	}
	a->start(req, a->arg);
}

static void
on_close(struct ipc_conn *conn, int err, const char *errstr, void *arg)
{
	struct agent_client *cl = arg;

	(void)conn;
	if (err < 0)
		log_warn("connection closed: %s", errstr);
	/* ipc frees conn after this returns. */
	cl->conn = NULL;
	client_maybe_free(cl);
}

static void
on_conn(struct ipc_listener *listener, int fd, void *arg)
{
	static const struct ipc_callbacks cbs = {on_message, on_close};
	struct agent *a = arg;
	struct agent_client *cl;
	int r;

	(void)listener;
	if (a->stopping) {
		close(fd);
		return;
	}
	cl = xcalloc(1, sizeof(*cl));
	cl->agent = a;
	if ((r = ipc_conn_new(a->loop, fd, &cbs, cl, &cl->conn)) < 0) {
		log_warn("connection: %s", strerror(-r));
		free(cl);
		return;
	}
	cl->next = a->clients;
	if (cl->next != NULL)
		cl->next->prev = cl;
	a->clients = cl;
}

int
agent_new(uv_loop_t *loop, const int *fds, size_t nfds, size_t max_rcpts,
    agent_start_fn start, void *arg, struct agent **agent_r,
    char **errstr_r)
{
	struct agent *a;

	if (nfds == 0) {
		*errstr_r = xstrdup("no listening socket: delivery agents "
		    "run under master (see pochta-master(8))");
		return -EINVAL;
	}
	a = xcalloc(1, sizeof(*a));
	a->loop = loop;
	a->max_rcpts = max_rcpts;
	a->start = start;
	a->arg = arg;
	a->nlisteners = nfds;
	a->listeners = xcalloc(a->nlisteners, sizeof(*a->listeners));
	for (size_t i = 0; i < a->nlisteners; i++) {
		int r = ipc_listen(a->loop, fds[i], on_conn, a,
		    &a->listeners[i]);

		if (r < 0) {
			*errstr_r = xasprintf("listening socket: %s",
			    strerror(-r));
			agent_free(&a);
			return r;
		}
	}
	*agent_r = a;
	return 0;
}

int
agent_new_service(struct service *svc, size_t max_rcpts,
    agent_start_fn start, void *arg, struct agent **agent_r,
    char **errstr_r)
{
	int fds[SERVICE_MAX_LISTEN_FDS];
	size_t n = service_listen_count(svc);

	for (size_t i = 0; i < n; i++)
		fds[i] = service_listen_fd(svc, i);
	return agent_new(service_loop(svc), fds, n, max_rcpts, start, arg,
	    agent_r, errstr_r);
}

void
agent_set_max_rcpts(struct agent *a, size_t max_rcpts)
{
	a->max_rcpts = max_rcpts;
}

void
agent_stop(struct agent *a)
{
	struct agent_client *cl, *next;

	a->stopping = 1;
	for (size_t i = 0; i < a->nlisteners; i++)
		ipc_listener_free(&a->listeners[i]);
	for (cl = a->clients; cl != NULL; cl = next) {
		next = cl->next;
		ipc_conn_close(&cl->conn);
		client_maybe_free(cl);
	}
}

void
agent_free(struct agent **ap)
{
	struct agent *a = *ap;

	*ap = NULL;
	if (a == NULL)
		return;
	agent_stop(a);
	free(a->listeners);
	free(a);
}
