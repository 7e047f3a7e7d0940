/*
 * pop3d.c - the POP3 server's main(): configuration, the listening sockets
 * master passed, and the event loop (RFC 1939, pochta-pop3d(8)).
 * Configuration errors are fatal at start and logged (old settings kept)
 * on reload.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "log.h"
#include "pop3d.h"
#include "resolve.h"
#include "service.h"
#include "tls.h"
#include "xalloc.h"

static void
config_free(struct pop3d_config *cfg)
{
	free(cfg->hostname);
	free(cfg->mail_directory);
	memset(cfg, 0, sizeof(*cfg));
}

static void
config_read(const struct conf *conf, struct pop3d_config *cfg)
{
	char host[256];
	const char *name = conf_str(conf, "myhostname");

	memset(cfg, 0, sizeof(*cfg));
	if (name[0] == '\0') {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		name = host;
	}
	cfg->hostname = xstrdup(name);
	cfg->mail_directory = xstrdup(conf_str(conf, "mail_directory"));
	cfg->tls_enable = conf_bool(conf, "pop3d_tls_enable");
	cfg->wrappermode = conf_bool(conf, "pop3d_tls_wrappermode");
	cfg->plaintext_auth = conf_bool(conf, "pop3d_plaintext_auth");
	cfg->plaintext_auth_loopback =
	    conf_bool(conf, "pop3d_plaintext_auth_loopback");
	cfg->timeout_ms = (unsigned)conf_time(conf, "pop3d_timeout") * 1000;
	cfg->login_delay = (unsigned)conf_time(conf, "pop3d_login_delay");
	cfg->hard_error_limit = (int)conf_int(conf, "pop3d_hard_error_limit");
	cfg->auth_failure_limit =
	    (int)conf_int(conf, "pop3d_auth_failure_limit");
	cfg->conn_limit = (int)conf_int(conf, "pop3d_connection_limit");
}

/* Everything derived from the configuration, built before it is swapped
 * in, so a reload that fails changes nothing. */
struct pop3d_setup {
	struct pop3d_config cfg;
	struct tls_ctx *tls;
	struct resolve *resolve;
};

static void
setup_free(struct pop3d_setup *su)
{
	config_free(&su->cfg);
	tls_ctx_free(&su->tls);
	resolve_free(&su->resolve);
}

static int
setup_build(const struct conf *conf, struct pop3d_setup *su, char **err_r)
{
	int r;

	memset(su, 0, sizeof(*su));
	config_read(conf, &su->cfg);
	if (su->cfg.tls_enable || su->cfg.wrappermode) {
		r = tls_ctx_server_new(conf_str(conf, "tls_cert_file"),
		    conf_str(conf, "tls_key_file"), &su->tls, err_r);
		if (r < 0)
			goto fail;
	}
	if ((r = resolve_open(conf, &su->resolve, err_r)) < 0)
		goto fail;
	return 0;
fail:
	setup_free(su);
	return r < 0 ? r : -EINVAL;
}

static void
setup_install(struct pop3d_server *srv, struct pop3d_setup *su)
{
	struct pop3d_setup old = {
		.cfg = srv->cfg,
		.tls = NULL,
		.resolve = srv->resolve,
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
	setup_free(&old);
}

static void
on_connection(uv_stream_t *listener, int status)
{
	struct pop3d_server *srv = listener->data;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	pop3d_session_accept(srv, listener);
}

static void
listen_all(struct pop3d_server *srv)
{
	size_t n = service_listen_count(srv->svc);

	if (n == 0)
		fatal("no listening socket: pop3d runs under master "
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
	pop3d_server_stop(arg);
}

static void
on_reload(struct service *svc, const struct conf *old, void *arg)
{
	struct pop3d_server *srv = arg;
	struct pop3d_setup su;
	char *err = NULL;

	(void)old;
	srv->conf = service_conf(svc);
	if (setup_build(srv->conf, &su, &err) < 0) {
		log_error("reload: %s; keeping the old settings", err);
		free(err);
		return;
	}
	setup_install(srv, &su);
}

int
main(int argc, char **argv)
{
	struct pop3d_server srv;
	struct pop3d_setup su;
	char *err = NULL;

	memset(&srv, 0, sizeof(srv));
	srv.svc = service_init("pop3d", argc, argv);
	srv.loop = service_loop(srv.svc);
	srv.conf = service_conf(srv.svc);
	if (setup_build(srv.conf, &su, &err) < 0)
		fatal("%s", err);
	setup_install(&srv, &su);
	srv.throttle = auth_throttle_new(&(struct auth_throttle_conf){
	    .limit = (unsigned)srv.cfg.auth_failure_limit});
	if (auth_hash_password("unknown user", &srv.dummy_hash) < 0)
		fatal("cannot make a password hash: crypt(3) failed");
	listen_all(&srv);
	service_on_stop(srv.svc, on_stop, &srv);
	service_on_reload(srv.svc, on_reload, &srv);

	int status = service_run(srv.svc);

	struct pop3d_setup last = {.cfg = srv.cfg, .tls = srv.tls,
	    .resolve = srv.resolve};
	setup_free(&last);
	for (size_t i = 0; i < srv.n_old_tls; i++)
		tls_ctx_free(&srv.old_tls[i]);
	free(srv.old_tls);
	auth_throttle_free(&srv.throttle);
	free(srv.dummy_hash);
	free(srv.listeners);
	return status;
}
