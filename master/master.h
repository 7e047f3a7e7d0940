/*
 * master.h - master's private structures: the running services with their
 * listening sockets and worker slots, shared by master.c (start-up, signals,
 * reload), master_service.c (sockets, spawning, reaping, throttling) and
 * master_status.c (the status socket of `pochta status`).
 */
#ifndef POCHTA_MASTER_H
#define POCHTA_MASTER_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

#include "conf.h"
#include "master_conf.h"

#define MASTER_MAX_FDS 2	/* a wildcard inet service: IPv4 and IPv6 */

enum master_svc_state {
	MASTER_SVC_RUNNING,
	MASTER_SVC_THROTTLED,	/* waiting out the backoff to restart */
	MASTER_SVC_STOPPING,	/* removed or replaced, workers draining */
};

struct master_slot {
	pid_t pid;		/* 0: no worker in this slot */
	time_t started;		/* wall clock, for status */
	uint64_t started_ms;	/* loop time, for the backoff */
	int stopping;		/* SIGTERM sent: its exit is no crash */
};

struct master_svc {
	struct master_service *conf;	/* owned copy of the row */
	int fds[MASTER_MAX_FDS];
	int n_fds;
	char *unix_path;	/* absolute socket path, unix services */
	struct master_slot *slots;	/* conf->procs of them */
	enum master_svc_state state;
	time_t start_time;	/* when the service was (re)configured */
	unsigned restarts;	/* workers started again after an exit */
	unsigned crashes;	/* unrequested worker exits */
	unsigned streak;	/* quick crashes in a row: the backoff */
	uv_timer_t timer;	/* backoff, or the grace time when stopping */
	struct master_svc *next;
};

struct master {
	uv_loop_t *loop;
	const char *confdir;
	struct conf *conf;
	struct master_conf *mconf;
	char **overrides;
	size_t n_overrides;
	struct master_svc *svcs;	/* the configured services */
	struct master_svc *draining;	/* stopped, waiting for workers */
	int shutting_down;
	int ready;		/* every service listening, workers started */
	int privileged;		/* euid 0: the user column is honoured */
	uv_pipe_t status;	/* spool/private/master */
	char *status_path;
	char *pid_path;
	int pid_fd;
	uv_timer_t kill_timer;	/* shutdown grace time */
	uv_signal_t sig_chld, sig_term, sig_int, sig_hup;
};

/*
 * master_service.c. A new service with no sockets yet; then either take
 * over the sockets of a service in the list `from` that listens on the same
 * address (1: taken, 0: none there), or bind new ones (0, or a negative
 * errno and *errstr_r, malloc'd).
 */
struct master_svc *master_svc_new(struct master *m,
    const struct master_service *conf);
int master_svc_take(struct master_svc *svc, struct master_svc *from);
int master_svc_bind(struct master *m, struct master_svc *svc,
    char **errstr_r);
/* Fork every missing worker. */
void master_svc_start(struct master *m, struct master_svc *svc);
/* SIGTERM the workers, close the sockets (unless taken over), drain. */
void master_svc_retire(struct master *m, struct master_svc *svc);
/* Close the sockets of a service that never ran, and free it. */
void master_svc_discard(struct master *m, struct master_svc *svc);
/* Reap every exited worker and act on it (the SIGCHLD handler). */
void master_svc_reap(struct master *m);
/* Workers alive in any service, configured or draining. */
size_t master_svc_live(const struct master *m);
/* Send sig to every worker. */
void master_svc_kill_all(struct master *m, int sig);

/* master_status.c: listen on spool/private/master. */
int master_status_listen(struct master *m, char **errstr_r);
void master_status_close(struct master *m);

/*
 * master.c: load pochta.conf and master.conf; on error a malloc'd message
 * and nothing changed.
 */
int master_load_config(struct master *m, struct conf **conf_r,
    struct master_conf **mconf_r, char **errstr_r);

/* master_reload.c: the SIGHUP handler. */
void master_reload(struct master *m);

/* Called from master_service.c when the last worker is gone. */
void master_maybe_exit(struct master *m);

#endif
