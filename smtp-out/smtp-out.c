/*
 * smtp-out.c - the SMTP delivery agent: serves qmgr's agent protocol
 * (pochta-smtp-out(8)) on its master socket, routes each request through
 * DNS on the loop (RFC 5321 5.1, RFC 7505), delivers it on a worker thread
 * and answers per recipient, in request order. A malformed request gets an
 * error reply; a broken stream is closed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <uv.h>

#include "agent.h"
#include "conf.h"
#include "log.h"
#include "service.h"
#include "smtp_out.h"
#include "xalloc.h"

/* DNS answers kept. */
#define SO_DNS_CACHE 4096

struct so_server {
	struct service *svc;
	uv_loop_t *loop;
	struct so_setup *setup;
	struct dns_resolver *dns;
	struct agent *agent;
	uv_async_t async;		/* a worker finished a job */
	uv_timer_t timer;		/* connection cache expiry */
	pthread_mutex_t lock;		/* finished and running */
	struct so_job *finished;
	size_t running;			/* worker threads alive */
	int stopping;
};

static struct so_server *the_srv;

static void
job_free(struct so_job *job)
{
	if (job->fd >= 0)
		close(job->fd);
	for (size_t i = 0; i < job->nrcpt; i++) {
		free(job->rcpts[i].text);
		free(job->rcpts[i].relay);
	}
	free(job->rcpts);
	so_hosts_free(&job->hosts, job->nhosts);
	free(job->domain);
	so_setup_unref(&job->setup);
	free(job);
}

/* Hand the outcome to the request, answer it and free the job. */
static void
job_finish(struct so_job *job)
{
	struct agent_req *req = job->req;

	for (size_t i = 0; i < job->nrcpt; i++) {
		struct so_rcpt *rc = &job->rcpts[i];
		struct agent_rcpt *ar = &req->rcpts[i];

		memcpy(ar->status, rc->status, sizeof(ar->status));
		ar->text = rc->text;
		ar->relay = rc->relay;
		rc->text = rc->relay = NULL;
	}
	job_free(job);
	agent_req_done(req);
}

/* Every recipient of the job cannot be delivered at all. */
static void
job_fail(struct so_job *job, const char *status, const char *text)
{
	struct agent_req *req = job->req;

	job_free(job);
	agent_req_fail(req, status, text);
}

static void *
worker(void *arg)
{
	struct so_job *job = arg;
	struct so_server *srv = the_srv;

	so_deliver_job(job);
	pthread_mutex_lock(&srv->lock);
	job->done_next = srv->finished;
	srv->finished = job;
	pthread_mutex_unlock(&srv->lock);
	uv_async_send(&srv->async);
	return NULL;
}

static void
job_start(struct so_job *job)
{
	struct so_server *srv = the_srv;
	pthread_attr_t attr;
	pthread_t t;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&srv->lock);
	srv->running++;
	pthread_mutex_unlock(&srv->lock);
	if ((r = pthread_create(&t, &attr, worker, job)) != 0) {
		pthread_mutex_lock(&srv->lock);
		srv->running--;
		pthread_mutex_unlock(&srv->lock);
		job_fail(job, "4.3.0", "cannot start a delivery thread");
	}
	pthread_attr_destroy(&attr);
}

static void
on_async(uv_async_t *h)
{
	struct so_server *srv = h->data;
	struct so_job *list, *job;

	pthread_mutex_lock(&srv->lock);
	list = srv->finished;
	srv->finished = NULL;
	pthread_mutex_unlock(&srv->lock);
	while ((job = list) != NULL) {
		list = job->done_next;
		pthread_mutex_lock(&srv->lock);
		srv->running--;
		pthread_mutex_unlock(&srv->lock);
		job_finish(job);
	}
	if (srv->stopping && srv->running == 0) {
		so_cache_expire(0);
		uv_close((uv_handle_t *)&srv->async, NULL);
		uv_close((uv_handle_t *)&srv->timer, NULL);
	}
}

static void
on_timer(uv_timer_t *t)
{
	(void)t;
	so_cache_expire(so_now_ms());
}

static void on_tlsa(struct dns_result *res, void *arg);

/*
 * RFC 7672 2.2.3: look up the TLSA records of each DANE candidate, one
 * name at a time (a name's addresses share them), then deliver.
 */
static void
dane_next(struct so_job *job)
{
	for (; job->dane_next < job->nhosts; job->dane_next++) {
		struct so_host *h = &job->hosts[job->dane_next];
		struct dns_result *res;
		int r;

		if (!h->dnssec || h->tlsa != NULL || h->tlsa_err != NULL ||
		    h->tls_level != SO_TLS_DANE)
			continue;	/* not a candidate, or done */
		r = dns_lookup_tlsa(the_srv->dns, h->name, h->port, on_tlsa,
		    job, &job->dns);
		if (r == 0)
			return;
		res = xcalloc(1, sizeof(*res));
		res->status = r;
		snprintf(res->errstr, sizeof(res->errstr), "%s",
		    dns_strerror(r));
		on_tlsa(res, job);
		return;
	}
	job_start(job);
}

static void
on_tlsa(struct dns_result *res, void *arg)
{
	struct so_job *job = arg;
	struct so_host *h = &job->hosts[job->dane_next];

	job->dns = NULL;
	if (the_srv->stopping) {
		dns_result_free(&res);
		job_fail(job, "4.3.0", "mail system is stopping");
		return;
	}
	so_dane_apply(job->hosts, job->nhosts, h->name, res);
	if (h->tlsa_err != NULL)
		log_info("%s: %s", job->queue_id, h->tlsa_err);
	else
		log_info("%s: %s: TLS level %s (%zu usable TLSA of %zu%s)",
		    job->queue_id, h->name, so_tls_level_name(h->tls_level),
		    h->ntlsa, res->ntlsa, res->secure ? ", validated" :
		    ", not validated");
	dns_result_free(&res);
	job->dane_next++;
	dane_next(job);
}

/* RFC 5321 5.1 and RFC 7505: what a failed lookup means for the mail. */
static void
route_error(struct so_job *job, int status, const char *errstr)
{
	char text[400];

	if (status == DNS_E_NULLMX) {
		snprintf(text, sizeof(text), "domain %s does not accept mail "
		    "(null MX)", job->domain);
		job_fail(job, "5.1.10", text);
	} else if (dns_error_is_temporary(status)) {
		snprintf(text, sizeof(text), "Host or domain name lookup "
		    "failed for %s: %s", job->domain, errstr);
		job_fail(job, "4.4.3", text);
	} else {
		snprintf(text, sizeof(text), "Host or domain name not found: "
		    "%s: %s", job->domain, errstr);
		job_fail(job, "5.1.2", text);
	}
}

static void
on_dns(struct dns_result *res, void *arg)
{
	struct so_job *job = arg;
	int port = job->port != 0 ? job->port : job->setup->port;
	int n;

	job->dns = NULL;
	if (the_srv->stopping) {
		dns_result_free(&res);
		job_fail(job, "4.3.0", "mail system is stopping");
		return;
	}
	if (res->status != 0) {
		route_error(job, res->status, res->errstr);
		dns_result_free(&res);
		return;
	}
	if (job->explicit_host) {
		/* [host]: its own addresses, as one MX of preference 0. */
		struct dns_mx mx = {job->domain, 0, res->naddrs, res->addrs,
		    res->secure};

		res->nmx = 1;
		res->mx = xmalloc(sizeof(mx));
		res->mx[0] = mx;
		res->mx[0].host = xstrdup(job->domain);
		res->addrs = NULL;
		res->naddrs = 0;
	}
	n = so_hosts_from_mx(res, port, job->setup->own, job->setup->nown,
	    &job->hosts);
	dns_result_free(&res);
	if (n == -ELOOP) {
		char text[400];

		snprintf(text, sizeof(text), "mail for %s loops back to "
		    "myself", job->domain);
		job_fail(job, "5.4.6", text);
		return;
	}
	job->nhosts = (size_t)n;
	if (n == 0) {
		job_fail(job, "4.4.4", "no usable address for the next hop");
		return;
	}
	/* With "dane", hosts DNSSEC does not vouch for get "may". */
	for (size_t i = 0; i < job->nhosts; i++) {
		struct so_host *h = &job->hosts[i];

		h->tls_level = job->setup->tls_level;
		if (h->tls_level == SO_TLS_DANE && !h->dnssec)
			h->tls_level = SO_TLS_MAY;
	}
	dane_next(job);
}

/* Route a parsed job: DNS on the loop, then a worker thread. */
static void
job_route(struct so_job *job)
{
	struct so_server *srv = the_srv;
	struct dns_addr a;
	int r;

	if (so_nexthop_parse(job->nexthop, &job->domain, &job->explicit_host,
	    &job->port) < 0) {
		job_fail(job, "5.3.5", "malformed next hop");
		return;
	}
	if (job->explicit_host && dns_addr_parse(job->domain, &a) == 0) {
		struct dns_result *res = xcalloc(1, sizeof(*res));

		res->naddrs = 1;
		res->addrs = xmalloc(sizeof(a));
		res->addrs[0] = a;
		on_dns(res, job);
		return;
	}
	if (job->explicit_host)
		r = dns_lookup_addr(srv->dns, job->domain, on_dns, job,
		    &job->dns);
	else
		r = dns_resolve_mx_hosts(srv->dns, job->domain, on_dns, job,
		    &job->dns);
	if (r < 0)
		route_error(job, r, dns_strerror(r));
}

/* A request from qmgr (lib/agent.h): route it. */
static void
on_request(struct agent_req *req, void *arg)
{
	struct so_server *srv = arg;
	struct so_job *job;

	if (*req->nexthop == '\0') {
		agent_req_fail(req, "5.3.5", "request without a next hop");
		return;
	}
	job = xcalloc(1, sizeof(*job));
	job->req = req;
	job->queue_id = req->queue_id;
	job->nexthop = req->nexthop;
	job->fd = req->fd;
	req->fd = -1;
	job->setup = srv->setup;
	srv->setup->refs++;
	job->nrcpt = req->nrcpt;
	job->rcpts = xcalloc(req->nrcpt, sizeof(*job->rcpts));
	for (size_t i = 0; i < req->nrcpt; i++) {
		job->rcpts[i].index = req->rcpts[i].index;
		/* lib/agent refused line breaks: safe in RCPT TO:<...>. */
		job->rcpts[i].address = req->rcpts[i].address;
	}
	job_route(job);
}

static void
on_stop(struct service *svc, void *arg)
{
	struct so_server *srv = arg;

	(void)svc;
	srv->stopping = 1;
	/*
	 * Lookups still running finish with a deferral; deliveries on
	 * threads run to their end. Their answers are dropped and qmgr
	 * retries those recipients: at worst mail goes twice, never lost.
	 */
	agent_stop(srv->agent);
	dns_resolver_free(&srv->dns);
	uv_async_send(&srv->async);
}

static int
resolver_new(struct so_server *srv, const struct conf *conf,
    struct dns_resolver **r_out, char **errstr_r)
{
	struct dns_config cfg;
	const char *err = NULL;
	int r;

	memset(&cfg, 0, sizeof(cfg));
	cfg.servers = conf_str(conf, "dns_servers");
	cfg.timeout_ms = (unsigned)conf_time(conf, "dns_timeout") * 1000;
	cfg.retries = (unsigned)conf_int(conf, "dns_retries");
	cfg.cache_size = SO_DNS_CACHE;
	/* RFC 7672 2.1: DANE needs to know what DNSSEC validated. */
	cfg.dnssec = strcasecmp(conf_str(conf, "smtp_tls_security_level"),
	    "dane") == 0;
	if (strcmp(conf_str(conf, "inet_protocols"), "ipv4") == 0)
		cfg.families = DNS_INET4;
	else if (strcmp(conf_str(conf, "inet_protocols"), "ipv6") == 0)
		cfg.families = DNS_INET6;
	if ((r = dns_resolver_new(srv->loop, &cfg, r_out, &err)) < 0)
		*errstr_r = xasprintf("DNS resolver: %s", err != NULL ? err :
		    dns_strerror(r));
	return r;
}

static void
on_reload(struct service *svc, const struct conf *old, void *arg)
{
	struct so_server *srv = arg;
	struct dns_resolver *dns;
	struct so_setup *s;
	char *err = NULL;

	(void)old;
	if (so_setup_new(service_conf(svc), &s, &err) < 0 ||
	    resolver_new(srv, service_conf(svc), &dns, &err) < 0) {
		log_error("reload: %s; keeping the old settings", err);
		free(err);
		return;
	}
	so_setup_unref(&srv->setup);
	srv->setup = s;
	agent_set_max_rcpts(srv->agent, s->max_rcpts);
	dns_resolver_free(&srv->dns);
	srv->dns = dns;
	/* Connections made under the old settings are not reused. */
	so_cache_expire(0);
}

int
main(int argc, char **argv)
{
	struct so_server srv;
	char *err = NULL;
	int status;

	memset(&srv, 0, sizeof(srv));
	the_srv = &srv;
	pthread_mutex_init(&srv.lock, NULL);
	srv.svc = service_init("smtp-out", argc, argv);
	srv.loop = service_loop(srv.svc);
	if (so_setup_new(service_conf(srv.svc), &srv.setup, &err) < 0 ||
	    resolver_new(&srv, service_conf(srv.svc), &srv.dns, &err) < 0)
		fatal("%s", err);
	if (agent_new_service(srv.svc, srv.setup->max_rcpts, on_request,
	    &srv, &srv.agent, &err) < 0)
		fatal("%s", err);
	uv_async_init(srv.loop, &srv.async, on_async);
	srv.async.data = &srv;
	uv_timer_init(srv.loop, &srv.timer);
	uv_timer_start(&srv.timer, on_timer, 1000, 500);
	service_on_stop(srv.svc, on_stop, &srv);
	service_on_reload(srv.svc, on_reload, &srv);
	status = service_run(srv.svc);
	agent_free(&srv.agent);
	dns_resolver_free(&srv.dns);
	so_setup_unref(&srv.setup);
	pthread_mutex_destroy(&srv.lock);
	return status;
}
