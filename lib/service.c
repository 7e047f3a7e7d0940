/*
 * service.c - the daemon runtime (service.h): command line, configuration,
 * log, the sockets master passed, the loop and the stop/reload signals.
 * Start-up problems are fatal; a configuration that fails to reload is
 * logged and the running one kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "service.h"
#include "xalloc.h"

struct service {
	char *program;
	char *name;
	char *confdir;
	char **overrides;
	size_t n_overrides;
	struct conf *conf;
	int fds[SERVICE_MAX_LISTEN_FDS];
	size_t n_fds;
	uv_loop_t loop;
	uv_signal_t sig_term, sig_int, sig_hup;
	int stopping;
	void (*stop_cb)(struct service *, void *);
	void *stop_arg;
	void (*reload_cb)(struct service *, const struct conf *, void *);
	void *reload_arg;
};

static void
service_usage(const char *program)
{
	fatal("usage: %s [-v] [-c DIR] [-o name=value]...", program);
}

static void
parse_args(struct service *svc, int argc, char **argv)
{
	int ch;

	optind = 0;
	while ((ch = getopt(argc, argv, "c:o:v")) != -1) {
		switch (ch) {
		case 'c':
			free(svc->confdir);
			svc->confdir = xstrdup(optarg);
			break;
		case 'o':
			if (strchr(optarg, '=') == NULL)
				fatal("-o %s: expected name=value", optarg);
			svc->overrides = xreallocarray(svc->overrides,
			    svc->n_overrides + 1, sizeof(char *));
			svc->overrides[svc->n_overrides++] = xstrdup(optarg);
			break;
		case 'v':
			log_set_verbose(1);
			break;
		default:
			service_usage(svc->program);
		}
	}
	if (optind != argc)
		service_usage(svc->program);
	if (svc->confdir == NULL)
		svc->confdir = xstrdup(conf_default_dir());
}

/* fd 3... from master; a count that does not match open fds is fatal. */
static void
take_listen_fds(struct service *svc)
{
	const char *env = getenv("POCHTA_LISTEN_FDS");
	char *end;
	long n;

	if (env == NULL || *env == '\0')
		return;
	errno = 0;
	n = strtol(env, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0 || n > SERVICE_MAX_LISTEN_FDS)
		fatal("POCHTA_LISTEN_FDS=%s: not a count of sockets", env);
	for (long i = 0; i < n; i++) {
		int fd = 3 + (int)i, fl;

		if ((fl = fcntl(fd, F_GETFL)) < 0 ||
		    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
		    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			fatal("listening socket fd %d: %s", fd,
			    strerror(errno));
		svc->fds[svc->n_fds++] = fd;
	}
	/* Not for the daemon's own children. */
	unsetenv("POCHTA_LISTEN_FDS");
}

static void
reload(struct service *svc)
{
	struct conf *conf = NULL, *old;
	char *err = NULL;

	if (conf_load(svc->confdir, svc->overrides, svc->n_overrides, &conf,
	    &err) < 0) {
		log_error("reload failed, keeping the running configuration: "
		    "%s", err);
		free(err);
		return;
	}
	old = svc->conf;
	svc->conf = conf;
	log_info("configuration reloaded");
	if (svc->reload_cb != NULL)
		svc->reload_cb(svc, old, svc->reload_arg);
	conf_free(&old);
}

static void
signal_cb(uv_signal_t *h, int signum)
{
	struct service *svc = h->data;

	if (signum == SIGHUP) {
		reload(svc);
		return;
	}
	if (svc->stopping)
		return;
	svc->stopping = 1;
	log_debug("stopping on signal %d", signum);
	/* Our own handles must not keep the loop alive. */
	uv_close((uv_handle_t *)&svc->sig_term, NULL);
	uv_close((uv_handle_t *)&svc->sig_int, NULL);
	uv_close((uv_handle_t *)&svc->sig_hup, NULL);
	/* Closing the handles restored the default actions: a second signal
	 * (Ctrl-C reaches the workers and master forwards SIGTERM) must not
	 * kill the worker while it finishes. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (svc->stop_cb != NULL)
		svc->stop_cb(svc, svc->stop_arg);
	else
		uv_stop(&svc->loop);
}

static void
watch(struct service *svc, uv_signal_t *h, int signum)
{
	uv_signal_init(&svc->loop, h);
	h->data = svc;
	uv_signal_start(h, signal_cb, signum);
	/* Signal handles alone must not keep an idle loop running. */
	uv_unref((uv_handle_t *)h);
}

struct service *
service_init(const char *program, int argc, char **argv)
{
	struct service *svc = xcalloc(1, sizeof(*svc));
	const char *env, *logerr;
	char *err = NULL;
	sigset_t hup;

	svc->program = xstrdup(program);
	log_set_program(program);
	parse_args(svc, argc, argv);
	if (conf_load(svc->confdir, svc->overrides, svc->n_overrides,
	    &svc->conf, &err) < 0)
		fatal("%s", err);
	if (log_open(conf_str(svc->conf, "log_target"), &logerr) < 0)
		fatal("log_target %s: %s", conf_str(svc->conf, "log_target"),
		    logerr);
	if (conf_param_find("verbose") != NULL &&
	    conf_bool(svc->conf, "verbose"))
		log_set_verbose(1);
	env = getenv("POCHTA_SERVICE");
	svc->name = xstrdup(env != NULL && *env != '\0' ? env : program);
	take_listen_fds(svc);
	/* A client that hangs up must be an error return, not a death. */
	signal(SIGPIPE, SIG_IGN);
	/* The thread pool runs fsyncs, crypt(3) and DNS lookups; a few slow
	 * DNS servers must not hold up every queue file commit behind them.
	 * libuv reads this when the pool first starts; an operator's own
	 * setting wins. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	if (uv_loop_init(&svc->loop) < 0)
		fatal("cannot create the event loop");
	watch(svc, &svc->sig_term, SIGTERM);
	watch(svc, &svc->sig_int, SIGINT);
	watch(svc, &svc->sig_hup, SIGHUP);
	/* master starts workers with SIGHUP blocked (pochta-master(8)): a
	 * reload that came while this one was starting is handled now. */
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	sigprocmask(SIG_UNBLOCK, &hup, NULL);
	return svc;
}

uv_loop_t *
service_loop(struct service *svc)
{
	return &svc->loop;
}

const struct conf *
service_conf(const struct service *svc)
{
	return svc->conf;
}

const char *
service_name(const struct service *svc)
{
	return svc->name;
}

size_t
service_listen_count(const struct service *svc)
{
	return svc->n_fds;
}

int
service_listen_fd(const struct service *svc, size_t i)
{
	if (i >= svc->n_fds)
		panic("service_listen_fd: %zu of %zu", i, svc->n_fds);
	return svc->fds[i];
}

void
service_on_stop(struct service *svc,
    void (*cb)(struct service *, void *), void *arg)
{
	svc->stop_cb = cb;
	svc->stop_arg = arg;
}

void
service_on_reload(struct service *svc,
    void (*cb)(struct service *, const struct conf *, void *), void *arg)
{
	svc->reload_cb = cb;
	svc->reload_arg = arg;
}

int
service_privsep_drop(const char *user, char **errstr_r)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		*errstr_r = xasprintf("unknown user %s", user);
		return -ENOENT;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		int r = -errno;

		*errstr_r = xasprintf("cannot become %s: %s", user,
		    strerror(-r));
		return r;
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		*errstr_r = xasprintf("still root after becoming %s", user);
		return -EPERM;
	}
	return 0;
}

static void
close_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void
service_free(struct service **svcp)
{
	struct service *svc = *svcp;

	if (svc == NULL)
		return;
	uv_walk(&svc->loop, close_walk_cb, NULL);
	uv_run(&svc->loop, UV_RUN_DEFAULT);
	uv_loop_close(&svc->loop);
	conf_free(&svc->conf);
	for (size_t i = 0; i < svc->n_overrides; i++)
		free(svc->overrides[i]);
	free(svc->overrides);
	free(svc->program);
	free(svc->name);
	free(svc->confdir);
	free(svc);
	*svcp = NULL;
}

int
service_run(struct service *svc)
{
	uv_run(&svc->loop, UV_RUN_DEFAULT);
	log_debug("stopped");
	service_free(&svc);
	return 0;
}
