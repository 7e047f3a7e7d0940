/*
 * smtpd.c - the SMTP server's main(): configuration, the listening sockets
 * master passed, and the event loop (RFC 5321, smtpd(8)). Configuration
 * errors are fatal at start and logged (old settings kept) on reload.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "cidr.h"
#include "conf.h"
#include "dns.h"
#include "log.h"
#include "resolve.h"
#include "service.h"
#include "smtpd.h"
#include "tls.h"
#include "xalloc.h"

static void
config_free(struct smtpd_config *cfg)
{
	free(cfg->hostname);
	free(cfg->banner);
	free(cfg->spool);
	memset(cfg, 0, sizeof(*cfg));
}

static int
config_read(const struct conf *conf, struct smtpd_config *cfg, char **err_r)
{
	const char *level = conf_str(conf, "smtpd_tls_security_level");
	char host[256];

	memset(cfg, 0, sizeof(*cfg));
	if (strcmp(level, "none") == 0)
		cfg->tls_level = TLS_LEVEL_NONE;
	else if (strcmp(level, "may") == 0)
		cfg->tls_level = TLS_LEVEL_MAY;
	else if (strcmp(level, "encrypt") == 0)
		cfg->tls_level = TLS_LEVEL_ENCRYPT;
	else {
		*err_r = xasprintf("smtpd_tls_security_level: '%s' is not "
				   "none, may or encrypt", level);
		return -EINVAL;
	}
	const char *name = conf_str(conf, "myhostname");
	if (name[0] == '\0') {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		name = host;
	}
	cfg->hostname = xstrdup(name);
	cfg->banner = xstrdup(conf_str(conf, "smtpd_banner"));
	cfg->spool = xstrdup(conf_str(conf, "queue_directory"));
	cfg->wrappermode = conf_bool(conf, "smtpd_tls_wrappermode");
	cfg->sasl_enable = conf_bool(conf, "smtpd_sasl_auth_enable");
	cfg->auth_required = conf_bool(conf, "smtpd_auth_required");
	cfg->plaintext_auth = conf_bool(conf, "smtpd_plaintext_auth");
	cfg->sender_login_check = conf_bool(conf, "smtpd_sender_login_check");
	cfg->vrfy_enable = conf_bool(conf, "smtpd_vrfy_enable");
	cfg->peername_lookup = conf_bool(conf, "smtpd_peername_lookup");
	cfg->rcpt_limit = (size_t)conf_int(conf, "smtpd_recipient_limit");
	cfg->max_line = (size_t)conf_int(conf, "smtpd_max_line_length");
	cfg->size_limit = (uint64_t)conf_size(conf, "message_size_limit");
	cfg->minfree = (uint64_t)conf_size(conf, "queue_minfree");
	cfg->timeout_ms = (unsigned)conf_time(conf, "smtpd_timeout") * 1000;
	cfg->greet_pause_ms =
	    (unsigned)conf_time(conf, "smtpd_greet_pause") * 1000;
	cfg->hard_error_limit = (int)conf_int(conf, "smtpd_hard_error_limit");
	cfg->client_limit =
	    (int)conf_int(conf, "smtpd_client_connection_limit");
	cfg->conn_limit = (int)conf_int(conf, "smtpd_connection_limit");
	cfg->auth_failure_limit =
	    (int)conf_int(conf, "smtpd_auth_failure_limit");
	return 0;
}

/* Everything derived from the configuration, built before it is swapped
 * in, so a reload that fails changes nothing. */
struct smtpd_setup {
	struct smtpd_config cfg;
	struct tls_ctx *tls;
	struct resolve *resolve;
	struct dns_resolver *dns;
	struct cidr_list *mynetworks;
};

static void
setup_free(struct smtpd_setup *su)
{
	config_free(&su->cfg);
	tls_ctx_free(&su->tls);
	resolve_free(&su->resolve);
	dns_resolver_free(&su->dns);
	cidr_list_free(&su->mynetworks);
}

static int
setup_build(uv_loop_t *loop, const struct conf *conf, struct smtpd_setup *su,
    char **err_r)
{
	const char *cerr = NULL;
	int r;

	memset(su, 0, sizeof(*su));
	if ((r = config_read(conf, &su->cfg, err_r)) < 0)
		goto fail;
	if (su->cfg.tls_level != TLS_LEVEL_NONE || su->cfg.wrappermode) {
		r = tls_ctx_server_new(conf_str(conf, "tls_cert_file"),
		    conf_str(conf, "tls_key_file"), &su->tls, err_r);
		if (r < 0)
			goto fail;
	}
	if ((r = resolve_open(conf, &su->resolve, err_r)) < 0)
		goto fail;
	size_t n;
	char **nets = conf_list(conf, "mynetworks", &n);
	r = cidr_list_parse(nets, n, &su->mynetworks, err_r);
	conf_list_free(&nets);
	if (r < 0) {
		char *e = *err_r;
		*err_r = xasprintf("mynetworks: %s", e);
		free(e);
		goto fail;
	}
	if (su->cfg.peername_lookup) {
		const char *servers = conf_str(conf, "dns_servers");
		struct dns_config dc = {
			.servers = servers,
			.timeout_ms = (unsigned)conf_time(conf, "dns_timeout") *
			    1000,
			.retries = (unsigned)conf_int(conf, "dns_retries"),
			.cache_size = 1000,
		};
		r = dns_resolver_new(loop, &dc, &su->dns, &cerr);
		if (r < 0) {
			/* No resolver is not fatal: names show as unknown. */
			log_warn("DNS resolver unavailable (%s): client names "
				 "are not looked up", cerr);
			su->dns = NULL;
		}
	}
	return 0;
fail:
	setup_free(su);
	return r < 0 ? r : -EINVAL;
}

static void
setup_install(struct smtpd_server *srv, struct smtpd_setup *su)
{
	struct smtpd_setup old = {
		.cfg = srv->cfg,
		.tls = NULL,
		.resolve = srv->resolve,
		.dns = srv->dns,
		.mynetworks = srv->mynetworks,
	};

	srv->cfg = su->cfg;
	/* Sessions in a TLS handshake may still use the old context: keep
	 * it until exit. */
	if (srv->tls != NULL) {
		srv->old_tls = xreallocarray(srv->old_tls, srv->n_old_tls + 1,
		    sizeof(*srv->old_tls));
		srv->old_tls[srv->n_old_tls++] = srv->tls;
	}
	srv->tls = su->tls;
	srv->resolve = su->resolve;
	srv->dns = su->dns;
	srv->mynetworks = su->mynetworks;
	setup_free(&old);
}

static void
on_connection(uv_stream_t *listener, int status)
{
	struct smtpd_server *srv = listener->data;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	smtpd_session_accept(srv, listener,
	    listener->type == UV_NAMED_PIPE);
}

static void
listen_all(struct smtpd_server *srv)
{
	size_t n = service_listen_count(srv->svc);

	if (n == 0)
		fatal("no listening socket: smtpd runs under master "
		      "(see pochta-master(8))");
	srv->listeners = xcalloc(n, sizeof(*srv->listeners));
	for (size_t i = 0; i < n; i++) {
		int fd = service_listen_fd(srv->svc, i);
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		uv_stream_t *h;
		int r;

		if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
			fatal("listening socket %d: %s", fd, strerror(errno));
		if (ss.ss_family == AF_UNIX) {
			uv_pipe_t *p = xcalloc(1, sizeof(*p));
			uv_pipe_init(srv->loop, p, 0);
			r = uv_pipe_open(p, fd);
			h = (uv_stream_t *)p;
		} else {
			uv_tcp_t *t = xcalloc(1, sizeof(*t));
			uv_tcp_init(srv->loop, t);
			r = uv_tcp_open(t, fd);
			h = (uv_stream_t *)t;
		}
		if (r < 0)
			fatal("listening socket %d: %s", fd, uv_strerror(r));
		h->data = srv;
		if ((r = uv_listen(h, 511, on_connection)) < 0)
			fatal("listen on socket %d: %s", fd, uv_strerror(r));
		srv->listeners[srv->n_listeners++] = h;
	}
}

static void
on_stop(struct service *svc, void *arg)
{
	(void)svc;
	smtpd_server_stop(arg);
}

static void
on_reload(struct service *svc, const struct conf *old, void *arg)
{
	struct smtpd_server *srv = arg;
	struct smtpd_setup su;
	char *err = NULL;

	(void)old;
	srv->conf = service_conf(svc);
	if (setup_build(srv->loop, srv->conf, &su, &err) < 0) {
		log_error("reload: %s; keeping the old settings", err);
		free(err);
		return;
	}
	setup_install(srv, &su);
}

int
main(int argc, char **argv)
{
	struct smtpd_server srv;
	struct smtpd_setup su;
	char *err = NULL;

	memset(&srv, 0, sizeof(srv));
	srv.svc = service_init("smtpd", argc, argv);
	srv.loop = service_loop(srv.svc);
	srv.conf = service_conf(srv.svc);
	if (setup_build(srv.loop, srv.conf, &su, &err) < 0)
		fatal("%s", err);
	setup_install(&srv, &su);
	srv.throttle = auth_throttle_new(&(struct auth_throttle_conf){
	    .limit = (unsigned)srv.cfg.auth_failure_limit});
	if (auth_hash_password("unknown user", &srv.dummy_hash) < 0)
		fatal("cannot make a password hash: crypt(3) failed");
	srv.nbuckets = 1024;
	srv.clients = xcalloc(srv.nbuckets, sizeof(*srv.clients));
	listen_all(&srv);
	service_on_stop(srv.svc, on_stop, &srv);
	service_on_reload(srv.svc, on_reload, &srv);

	int status = service_run(srv.svc);

	struct smtpd_setup last = {.cfg = srv.cfg, .tls = srv.tls,
	    .resolve = srv.resolve, .dns = srv.dns,
	    .mynetworks = srv.mynetworks};
	setup_free(&last);
	for (size_t i = 0; i < srv.n_old_tls; i++)
		tls_ctx_free(&srv.old_tls[i]);
	free(srv.old_tls);
	auth_throttle_free(&srv.throttle);
	free(srv.dummy_hash);
	free(srv.clients);
	free(srv.listeners);
	return status;
}
