/*
 * local-deliver.c - the local delivery agent: serves qmgr's agent protocol
 * (pochta-local-deliver(8)) on its master socket, hands each request to
 * the libuv thread pool and answers per recipient, in request order. A
 * malformed request gets an error reply; a broken stream is closed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "attr.h"
#include "conf.h"
#include "ipc.h"
#include "local_deliver.h"
#include "log.h"
#include "queue.h"
#include "service.h"
#include "xalloc.h"

/* Requests one connection may have in flight; more is a runaway peer. */
#define LD_MAX_JOBS 256

struct ld_server;

struct ld_client {
	struct ld_server *srv;
	struct ld_client *prev, *next;	/* the server's clients */
	struct ipc_conn *conn;		/* NULL once closed */
	struct ld_job *head, *tail;	/* requests, in arrival order */
	size_t njobs;
};

struct ld_server {
	struct service *svc;
	uv_loop_t *loop;
	struct ld_setup *setup;
	struct ipc_listener **listeners;
	size_t nlisteners;
	struct ld_client *clients;
	int stopping;
};

static void
job_free(struct ld_job **jobp)
{
	struct ld_job *job = *jobp;

	*jobp = NULL;
	if (job == NULL)
		return;
	if (job->fd >= 0)
		close(job->fd);
	for (size_t i = 0; i < job->nrcpt; i++) {
		free(job->rcpts[i].address);
		free(job->rcpts[i].text);
	}
	free(job->rcpts);
	free(job->error);
	ld_setup_unref(&job->setup);
	free(job);
}

/* Free the client once it is closed and no worker still uses a job. */
static void
client_maybe_free(struct ld_client *cl)
{
	struct ld_server *srv = cl->srv;

	if (cl->conn != NULL || cl->njobs > 0)
		return;
	if (cl->prev != NULL)
		cl->prev->next = cl->next;
	else
		srv->clients = cl->next;
	if (cl->next != NULL)
		cl->next->prev = cl->prev;
	free(cl);
}

static void
job_reply(struct ld_client *cl, struct ld_job *job)
{
	struct attr_list *reply = attr_list_new();

	if (job->error != NULL) {
		attr_add_str(reply, "status", "5.5.4");
		attr_add_str(reply, "text", job->error);
	}
	for (size_t i = 0; job->error == NULL && i < job->nrcpt; i++) {
		struct ld_rcpt *rc = &job->rcpts[i];

		attr_addf(reply, "rcpt_index", "%zu", rc->index);
		attr_add_str(reply, "rcpt", rc->address);
		attr_add_str(reply, "status", rc->status);
		attr_add_str(reply, "text", rc->text != NULL ? rc->text : "");
	}
	if (ipc_send(cl->conn, reply, -1) < 0) {
		log_warn("reply for %s not sent: connection closing or "
		    "output full", job->queue_id);
		ipc_conn_close(&cl->conn);
	}
	attr_list_free(&reply);
}

/* Answer finished jobs from the head: replies keep the request order. */
static void
client_flush(struct ld_client *cl)
{
	while (cl->head != NULL && cl->head->done) {
		struct ld_job *job = cl->head;

		cl->head = job->next;
		if (cl->head == NULL)
			cl->tail = NULL;
		cl->njobs--;
		if (cl->conn != NULL)
			job_reply(cl, job);
		job_free(&job);
	}
	client_maybe_free(cl);
}

static void
work_run(uv_work_t *req)
{
	ld_deliver_job(req->data);
}

static void
work_done(uv_work_t *req, int status)
{
	struct ld_job *job = req->data;

	(void)status;
	job->done = 1;
	client_flush(job->client);
}

/* Fill job from the request, or set job->error saying what is wrong. */
static void
job_parse(struct ld_job *job, struct ipc_msg *msg, size_t max_rcpts)
{
	const struct attr_list *a = msg->attrs;
	const char *req = attr_get_str(a, "request");
	const char *id = attr_get_str(a, "queue_id");
	size_t n, cap = 0;
	int have_index = 0;

	if (req == NULL || strcmp(req, "deliver") != 0) {
		job->error = xstrdup("unknown request");
		return;
	}
	if (id == NULL || !queue_id_valid(id)) {
		job->error = xstrdup("missing or bad queue_id");
		return;
	}
	snprintf(job->queue_id, sizeof(job->queue_id), "%s", id);
	n = attr_count(a);
	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t len;

		attr_at(a, i, &name, &value, &len);
		if (strcmp(name, "rcpt_index") == 0) {
			char *end;
			unsigned long long v;

			if (have_index || len == 0 || len > 9 ||
			    strspn(value, "0123456789") != len) {
				job->error = xstrdup("bad rcpt_index");
				return;
			}
			v = strtoull(value, &end, 10);
			if (job->nrcpt == max_rcpts) {
				job->error = xstrdup("too many recipients");
				return;
			}
			if (job->nrcpt == cap) {
				cap = cap ? cap * 2 : 8;
				job->rcpts = xreallocarray(job->rcpts, cap,
				    sizeof(*job->rcpts));
			}
			memset(&job->rcpts[job->nrcpt], 0,
			    sizeof(job->rcpts[0]));
			job->rcpts[job->nrcpt].index = (size_t)v;
			have_index = 1;
		} else if (strcmp(name, "rcpt") == 0) {
			if (!have_index || len == 0 ||
			    memchr(value, '\0', len) != NULL) {
				job->error = xstrdup("bad rcpt");
				return;
			}
			job->rcpts[job->nrcpt++].address = xstrdup(value);
			have_index = 0;
		}
	}
	if (have_index) {
		job->error = xstrdup("rcpt_index without rcpt");
		return;
	}
	if (job->nrcpt == 0) {
		job->error = xstrdup("no recipients");
		return;
	}
	if (msg->nfds != 1) {
		job->error = xstrdup(msg->nfds == 0 ? "no queue file passed" :
		    "more than one descriptor passed");
		return;
	}
	job->fd = ipc_msg_take_fd(msg, 0);
}

static void
on_message(struct ipc_conn *conn, struct ipc_msg *msg, void *arg)
{
	struct ld_client *cl = arg;
	struct ld_server *srv = cl->srv;
	struct ld_job *job;
	int r;

	(void)conn;
	if (cl->njobs >= LD_MAX_JOBS) {
		log_warn("client sends more than %d requests at once; "
		    "disconnecting", LD_MAX_JOBS);
		ipc_conn_close(&cl->conn);
		client_maybe_free(cl);
		return;
	}
	job = xcalloc(1, sizeof(*job));
	job->fd = -1;
	job->client = cl;
	job->setup = srv->setup;
	srv->setup->refs++;
	job_parse(job, msg, srv->setup->max_rcpts);
	if (cl->tail != NULL)
		cl->tail->next = job;
	else
		cl->head = job;
	cl->tail = job;
	cl->njobs++;
	if (job->error != NULL) {
		log_warn("%s: bad delivery request: %s",
		    job->queue_id[0] != '\0' ? job->queue_id : "-",
		    job->error);
		job->done = 1;
		client_flush(cl);
		return;
	}
	job->work.data = job;
	if ((r = uv_queue_work(srv->loop, &job->work, work_run,
	    work_done)) < 0) {
		free(job->error);
		job->error = xasprintf("cannot queue work: %s",
		    uv_strerror(r));
		job->done = 1;
		client_flush(cl);
	}
}

static void
on_close(struct ipc_conn *conn, int err, const char *errstr, void *arg)
{
	struct ld_client *cl = arg;

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
	struct ld_server *srv = arg;
	struct ld_client *cl;
	int r;

	(void)listener;
	if (srv->stopping) {
		close(fd);
		return;
	}
	cl = xcalloc(1, sizeof(*cl));
	cl->srv = srv;
	if ((r = ipc_conn_new(srv->loop, fd, &cbs, cl, &cl->conn)) < 0) {
		log_warn("connection: %s", strerror(-r));
		free(cl);
		return;
	}
	cl->next = srv->clients;
	if (cl->next != NULL)
		cl->next->prev = cl;
	srv->clients = cl;
}

static void
on_stop(struct service *svc, void *arg)
{
	struct ld_server *srv = arg;
	struct ld_client *cl, *next;

	(void)svc;
	srv->stopping = 1;
	for (size_t i = 0; i < srv->nlisteners; i++)
		ipc_listener_free(&srv->listeners[i]);
	/*
	 * Deliveries in the thread pool finish (the loop waits for them);
	 * their replies are dropped and qmgr retries those recipients.
	 */
	for (cl = srv->clients; cl != NULL; cl = next) {
		next = cl->next;
		ipc_conn_close(&cl->conn);
		client_maybe_free(cl);
	}
}

static void
on_reload(struct service *svc, const struct conf *old, void *arg)
{
	struct ld_server *srv = arg;
	struct ld_setup *s;
	char *err = NULL;

	(void)old;
	if (ld_setup_new(service_conf(svc), &s, &err) < 0) {
		log_error("reload: %s; keeping the old settings", err);
		free(err);
		return;
	}
	ld_setup_unref(&srv->setup);
	srv->setup = s;
}

int
main(int argc, char **argv)
{
	struct ld_server srv;
	char *err = NULL;
	int status;

	memset(&srv, 0, sizeof(srv));
	srv.svc = service_init("local-deliver", argc, argv);
	srv.loop = service_loop(srv.svc);
	if (ld_setup_new(service_conf(srv.svc), &srv.setup, &err) < 0)
		fatal("%s", err);
	srv.nlisteners = service_listen_count(srv.svc);
	if (srv.nlisteners == 0)
		fatal("no listening socket: local-deliver runs under master "
		      "(see pochta-master(8))");
	srv.listeners = xcalloc(srv.nlisteners, sizeof(*srv.listeners));
	for (size_t i = 0; i < srv.nlisteners; i++) {
		int r = ipc_listen(srv.loop, service_listen_fd(srv.svc, i),
		    on_conn, &srv, &srv.listeners[i]);
		if (r < 0)
			fatal("listening socket: %s", strerror(-r));
	}
	service_on_stop(srv.svc, on_stop, &srv);
	service_on_reload(srv.svc, on_reload, &srv);
	status = service_run(srv.svc);
	for (size_t i = 0; i < srv.nlisteners; i++)
		ipc_listener_free(&srv.listeners[i]);
	free(srv.listeners);
	ld_setup_unref(&srv.setup);
	return status;
}
