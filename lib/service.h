/*
 * service.h - the runtime every pochta daemon's main() is built on: the
 * command line (-c DIR, -o name=value, -v), the configuration, the log, the
 * listening sockets master passed (fd 3... per POCHTA_LISTEN_FDS), the libuv
 * loop, and SIGTERM (stop) and SIGHUP (reload) as callbacks. A daemon reads
 * top-down:
 *
 *	svc = service_init("smtpd", argc, argv);
 *	... set up what needs privilege ...
 *	service_privsep_drop(conf_str(service_conf(svc), "mail_owner"), ...);
 *	service_on_stop(svc, stop_cb, ctx);
 *	service_on_reload(svc, reload_cb, ctx);
 *	... uv_listen on service_listen_fd(svc, i) ...
 *	return service_run(svc);
 *
 * Start-up errors are fatal (logged, exit 1: master's backoff applies);
 * nothing after start-up exits on its own.
 */
#ifndef POCHTA_SERVICE_H
#define POCHTA_SERVICE_H

#include <stddef.h>
#include <uv.h>

#include "conf.h"

/* The most listening sockets a worker takes from master. */
#define SERVICE_MAX_LISTEN_FDS 64

struct service;

/*
 * Parse argv (`PROGRAM [-v] [-c DIR] [-o name=value]...`), load DIR's
 * pochta.conf with the overrides, name the program in log lines and open
 * log_target, take the listening sockets from the environment (made
 * non-blocking and close-on-exec) and create the loop. -c defaults to
 * conf_default_dir(). On any error: fatal(). Never returns NULL.
 */
struct service *service_init(const char *program, int argc, char **argv);

/* The loop: the daemon's handles go here. */
uv_loop_t *service_loop(struct service *svc);

/*
 * The current configuration. It is replaced on a successful SIGHUP reload:
 * do not keep pointers into it across a reload callback.
 */
const struct conf *service_conf(const struct service *svc);

/* The service name from master.conf (POCHTA_SERVICE), else the program. */
const char *service_name(const struct service *svc);

/* How many listening sockets master passed, and the i-th (i < count). */
size_t service_listen_count(const struct service *svc);
int service_listen_fd(const struct service *svc, size_t i);

/*
 * Called once, on the first SIGTERM or SIGINT: stop accepting, finish or
 * drop the connections, close every handle, so that the loop ends and
 * service_run() returns 0 (master counts exit status 0 as a requested
 * stop). Without a callback the loop is stopped at once.
 */
void service_on_stop(struct service *svc,
    void (*cb)(struct service *svc, void *arg), void *arg);

/*
 * Called on SIGHUP after pochta.conf was read again successfully, with the
 * new configuration already current and the old one still valid during
 * the call (freed after it returns). A file that does not load is logged
 * and the old configuration stays; the callback is then not called.
 */
void service_on_reload(struct service *svc,
    void (*cb)(struct service *svc, const struct conf *old, void *arg),
    void *arg);

/*
 * Become user (groups, gid, uid), for a daemon started by root directly;
 * under master the worker already runs as its master.conf user. Not root:
 * nothing to do, 0. Returns 0, or a negative errno and a malloc'd
 * *errstr_r. Afterwards getting root back is impossible (checked).
 */
int service_privsep_drop(const char *user, char **errstr_r);

/* Run the loop until it ends; free everything. Returns the exit status. */
int service_run(struct service *svc);

/* Free without running (tests). Sets *svc to NULL; NULL is allowed. */
void service_free(struct service **svc);

#endif
