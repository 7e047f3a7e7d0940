/*
 * master_status.c - master's status socket, spool/private/master, spoken
 * with attribute lists (pochta-protocol(7)). request=status is answered by
 * one header message and one message per service; request=ready by one
 * message. A client that sends anything malformed or too long is dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attr.h"
#include "buf.h"
#include "log.h"
#include "master.h"
#include "xalloc.h"

#define STATUS_REQUEST_MAX 4096
#define STATUS_REPLY_MAX (4 * 1024 * 1024)

struct status_client {
	uv_pipe_t pipe;
	struct master *m;
	struct buf in;
	struct buf out;
	uv_write_t wr;
};

static const char *const state_names[] = {
	[MASTER_SVC_RUNNING] = "running",
	[MASTER_SVC_THROTTLED] = "throttled",
	[MASTER_SVC_STOPPING] = "stopped",
};

static void
client_free_cb(uv_handle_t *h)
{
	struct status_client *c = h->data;

	buf_release(&c->in);
	buf_release(&c->out);
	free(c);
}

static void
client_close(struct status_client *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->pipe))
		uv_close((uv_handle_t *)&c->pipe, client_free_cb);
}

static void
encode(struct attr_list **list, struct buf *out)
{
	/* Over the reply limit: the client sees a truncated reply, no crash. */
	(void)attr_encode(*list, out);
	attr_list_free(list);
}

static void
encode_service(struct master_svc *svc, time_t now, struct buf *out)
{
	struct attr_list *l = attr_list_new();
	struct buf pids;

	buf_init(&pids, 0);
	for (int i = 0; i < svc->conf->procs; i++)
		if (svc->slots[i].pid != 0)
			buf_printf(&pids, "%s%ld", pids.len > 0 ? "," : "",
			    (long)svc->slots[i].pid);
	attr_add_str(l, "name", svc->conf->name);
	attr_add_str(l, "type",
	    svc->conf->type == MASTER_SERVICE_INET ? "inet" : "unix");
	attr_add_str(l, "listen", svc->conf->listen);
	attr_add_str(l, "state", state_names[svc->state]);
	attr_add_str(l, "pids", pids.data != NULL ? pids.data : "");
	attr_addf(l, "procs", "%d", svc->conf->procs);
	attr_addf(l, "started", "%lld", (long long)svc->start_time);
	attr_addf(l, "uptime", "%lld", (long long)(now - svc->start_time));
	attr_addf(l, "restarts", "%u", svc->restarts);
	attr_addf(l, "crashes", "%u", svc->crashes);
	buf_release(&pids);
	encode(&l, out);
}

static void
answer(struct status_client *c, const struct attr_list *req)
{
	struct master *m = c->m;
	const char *what = attr_get_str(req, "request");
	struct attr_list *l = attr_list_new();
	time_t now = time(NULL);
	size_t n = 0;

	for (struct master_svc *s = m->svcs; s != NULL; s = s->next)
		n++;
	if (what != NULL && strcmp(what, "ready") == 0) {
		attr_add_str(l, "status", "ok");
		attr_add_str(l, "ready", m->ready ? "yes" : "no");
		attr_addf(l, "pid", "%ld", (long)getpid());
		encode(&l, &c->out);
	} else if (what != NULL && strcmp(what, "status") == 0) {
		attr_add_str(l, "status", "ok");
		attr_add_str(l, "ready", m->ready ? "yes" : "no");
		attr_addf(l, "pid", "%ld", (long)getpid());
		attr_addf(l, "services", "%zu", n);
		encode(&l, &c->out);
		for (struct master_svc *s = m->svcs; s != NULL; s = s->next)
			encode_service(s, now, &c->out);
	} else {
		attr_add_str(l, "status", "error");
		attr_add_str(l, "text", "unknown request");
		encode(&l, &c->out);
	}
}

static void
write_cb(uv_write_t *wr, int status)
{
	(void)status;
	client_close(wr->data);
}

static void
alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *ub)
{
	struct status_client *c = h->data;
	char *p = buf_space(&c->in, 512);

	(void)hint;
	ub->base = p;
	/* NULL past the request limit: libuv reports UV_ENOBUFS. */
	ub->len = p != NULL ? 512 : 0;
}

static void
read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *ub)
{
	struct status_client *c = st->data;
	struct attr_list *req = NULL;
	const char *err;
	size_t used;
	int r;

	(void)ub;
	if (nread < 0 || (nread == 0 && ub->base == NULL)) {
		client_close(c);
		return;
	}
	buf_commit(&c->in, (size_t)nread);
	if ((r = attr_parse(&c->in, NULL, &req, &used, &err)) == 0)
		return;
	uv_read_stop(st);
	if (r < 0) {
		log_warn("status socket: bad request: %s", err);
		client_close(c);
		return;
	}
	answer(c, req);
	attr_list_free(&req);
	uv_buf_t wb = uv_buf_init(c->out.data, (unsigned)c->out.len);
	c->wr.data = c;
	if (uv_write(&c->wr, st, &wb, 1, write_cb) < 0)
		client_close(c);
}

static void
connection_cb(uv_stream_t *server, int status)
{
	struct master *m = server->data;
	struct status_client *c;

	if (status < 0)
		return;
	c = xcalloc(1, sizeof(*c));
	c->m = m;
	buf_init(&c->in, STATUS_REQUEST_MAX);
	buf_init(&c->out, STATUS_REPLY_MAX);
	uv_pipe_init(m->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb) < 0)
		client_close(c);
}

int
master_status_listen(struct master *m, char **errstr_r)
{
	struct stat st;
	int r;

	m->status_path = xasprintf("%s/private/master",
	    conf_str(m->conf, "queue_directory"));
	/* Left by a master that died: the pid file lock says none runs. */
	if (lstat(m->status_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(m->status_path);
	uv_pipe_init(m->loop, &m->status, 0);
	m->status.data = m;
	if ((r = uv_pipe_bind(&m->status, m->status_path)) < 0 ||
	    (r = uv_listen((uv_stream_t *)&m->status, 16,
	    connection_cb)) < 0) {
		*errstr_r = xasprintf("cannot listen on %s: %s",
		    m->status_path, uv_strerror(r));
		return r;
	}
	chmod(m->status_path, 0600);
	return 0;
}

void
master_status_close(struct master *m)
{
	if (m->status_path == NULL)
		return;
	uv_close((uv_handle_t *)&m->status, NULL);
	unlink(m->status_path);
	free(m->status_path);
	m->status_path = NULL;
}
