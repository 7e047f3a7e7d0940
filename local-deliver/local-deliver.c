/*
 * local-deliver.c - the local delivery agent: lib/agent serves qmgr's
 * agent protocol (pochta-local-deliver(8)) on the master's socket, and each
 * well-formed request is delivered on the libuv thread pool. A request that
 * cannot even be queued is deferred (4.3.0), never dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "agent.h"
#include "conf.h"
#include "local_deliver.h"
#include "log.h"
#include "service.h"
#include "xalloc.h"

struct ld_server {
	struct service *svc;
	uv_loop_t *loop;
	struct ld_setup *setup;
	struct agent *agent;
};

static void
work_run(uv_work_t *work)
{
	ld_deliver_job(work->data);
}

static void
work_done(uv_work_t *work, int status)
{
	struct ld_job *job = work->data;

	(void)status;
	agent_req_done(job->req);
	ld_setup_unref(&job->setup);
	free(job);
}

/* A well-formed request from qmgr: deliver it on the thread pool. */
static void
on_request(struct agent_req *req, void *arg)
{
	struct ld_server *srv = arg;
	struct ld_job *job = xcalloc(1, sizeof(*job));
	char text[128];
	int r;

	job->req = req;
	job->setup = srv->setup;
	srv->setup->refs++;
	job->work.data = job;
	if ((r = uv_queue_work(srv->loop, &job->work, work_run,
	    work_done)) < 0) {
		ld_setup_unref(&job->setup);
		free(job);
		snprintf(text, sizeof(text), "cannot queue work: %s",
		    uv_strerror(r));
		agent_req_fail(req, "4.3.0", text);
	}
}

/*
 * Deliveries in the thread pool finish (the loop waits for them); their
 * replies are dropped and qmgr retries those recipients.
 */
static void
on_stop(struct service *svc, void *arg)
{
	struct ld_server *srv = arg;

	(void)svc;
	agent_stop(srv->agent);
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
	agent_set_max_rcpts(srv->agent, s->max_rcpts);
}

int
main(int argc, char **argv)
{
	struct ld_server srv;
	int fds[SERVICE_MAX_LISTEN_FDS];
	size_t nfds;
	char *err = NULL;
	int status;

	memset(&srv, 0, sizeof(srv));
	srv.svc = service_init("local-deliver", argc, argv);
	srv.loop = service_loop(srv.svc);
	if (ld_setup_new(service_conf(srv.svc), &srv.setup, &err) < 0)
		fatal("%s", err);
	nfds = service_listen_count(srv.svc);
	for (size_t i = 0; i < nfds; i++)
		fds[i] = service_listen_fd(srv.svc, i);
	if (agent_new(srv.loop, fds, nfds, srv.setup->max_rcpts, on_request,
	    &srv, &srv.agent, &err) < 0)
		fatal("%s", err);
	service_on_stop(srv.svc, on_stop, &srv);
	service_on_reload(srv.svc, on_reload, &srv);
	status = service_run(srv.svc);
	agent_free(&srv.agent);
	ld_setup_unref(&srv.setup);
	return status;
}
