/*
 * master_service.c - one master.conf service at run time: its listening
 * sockets, its worker processes (fork, privilege drop, exec with the
 * sockets as fd 3...), and what happens when a worker exits. A crash is
 * restarted, with an exponential backoff when crashes come quickly; it never
 * affects another service. Failures in a child before exec exit 127.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "xalloc.h"

struct master_svc *
master_svc_new(struct master *m, const struct master_service *conf)
{
	struct master_svc *svc = xcalloc(1, sizeof(*svc));

	svc->conf = master_service_dup(conf);
	svc->slots = xcalloc((size_t)conf->procs, sizeof(*svc->slots));
	svc->state = MASTER_SVC_RUNNING;
	svc->start_time = time(NULL);
	uv_timer_init(m->loop, &svc->timer);
	svc->timer.data = svc;
	return svc;
}

static void
svc_free_cb(uv_handle_t *h)
{
	struct master_svc *svc = h->data;

	master_service_free(&svc->conf);
	free(svc->unix_path);
	free(svc->slots);
	free(svc);
}

static void
svc_close_sockets(struct master_svc *svc)
{
	for (int i = 0; i < svc->n_fds; i++)
		close(svc->fds[i]);
	svc->n_fds = 0;
	if (svc->unix_path != NULL)
		unlink(svc->unix_path);
	free(svc->unix_path);
	svc->unix_path = NULL;
}

void
master_svc_discard(struct master *m, struct master_svc *svc)
{
	(void)m;
	svc_close_sockets(svc);
	uv_close((uv_handle_t *)&svc->timer, svc_free_cb);
}

int
master_svc_take(struct master_svc *svc, struct master_svc *from)
{
	for (; from != NULL; from = from->next) {
		if (from->n_fds == 0 ||
		    !master_service_same_listen(from->conf, svc->conf))
			continue;
		memcpy(svc->fds, from->fds, sizeof(svc->fds));
		svc->n_fds = from->n_fds;
		svc->unix_path = from->unix_path;
		from->n_fds = 0;
		from->unix_path = NULL;
		return 1;
	}
	return 0;
}

static int
bind_inet(struct master_svc *svc, int family, const char *host,
    char **errstr_r)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)svc->conf->port);
		if (host != NULL)
			inet_pton(AF_INET, host, &sin->sin_addr);
		sslen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)svc->conf->port);
		if (host != NULL)
			inet_pton(AF_INET6, host, &sin6->sin6_addr);
		sslen = sizeof(*sin6);
	}
	if ((fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		int r = -errno;

		/* A host without IPv6 still serves the IPv4 wildcard. */
		if (host == NULL && family == AF_INET6)
			return 0;
		*errstr_r = xasprintf("socket: %s", strerror(-r));
		return r;
	}
	/* Restart without waiting for TIME_WAIT connections to expire. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* The wildcard is two sockets: keep :: from also taking IPv4. */
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		int r = -errno;

		close(fd);
		if (host == NULL && family == AF_INET6 &&
		    (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT))
			return 0;
		*errstr_r = xasprintf("service %s: cannot listen on %s: %s",
		    svc->conf->name, svc->conf->listen, strerror(-r));
		return r;
	}
	svc->fds[svc->n_fds++] = fd;
	return 0;
}

static int
bind_unix(struct master *m, struct master_svc *svc, char **errstr_r)
{
	const char *spool = conf_str(m->conf, "queue_directory");
	int public = strncmp(svc->conf->listen, "public/", 7) == 0;
	struct sockaddr_un sun;
	struct stat st;
	int fd, r;

	char *path = xasprintf("%s/%s", spool, svc->conf->listen);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*errstr_r = xasprintf("service %s: socket path too long: %s",
		    svc->conf->name, path);
		free(path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	/* A socket left by a master that died; never remove anything else. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, public ? 0666 : 0600) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		*errstr_r = xasprintf("service %s: cannot listen on %s: %s",
		    svc->conf->name, path, strerror(-r));
		free(path);
		return r;
	}
	svc->fds[svc->n_fds++] = fd;
	svc->unix_path = path;
	return 0;
}

int
master_svc_bind(struct master *m, struct master_svc *svc, char **errstr_r)
{
	int r;

	if (svc->conf->type == MASTER_SERVICE_UNIX)
		return bind_unix(m, svc, errstr_r);
	if (svc->conf->host != NULL)
		return bind_inet(svc, strchr(svc->conf->host, ':') != NULL ?
		    AF_INET6 : AF_INET, svc->conf->host, errstr_r);
	if ((r = bind_inet(svc, AF_INET, NULL, errstr_r)) < 0 ||
	    (r = bind_inet(svc, AF_INET6, NULL, errstr_r)) < 0) {
		svc_close_sockets(svc);
		return r;
	}
	return 0;
}

/* In the child: become the service's user. Only root can, and must. */
static void
child_drop(struct master *m, struct master_svc *svc)
{
	struct passwd *pw;

	if (!m->privileged || svc->conf->user == NULL)
		return;
	if ((pw = getpwnam(svc->conf->user)) == NULL) {
		log_error("service %s: unknown user %s", svc->conf->name,
		    svc->conf->user);
		_exit(127);
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
	    setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_error("service %s: cannot become %s: %s", svc->conf->name,
		    pw->pw_name, strerror(errno));
		_exit(127);
	}
	/* Never keep a way back to root. */
	if (setuid(0) == 0) {
		log_error("service %s: still root after setuid",
		    svc->conf->name);
		_exit(127);
	}
}

/*
 * In the child, while still root: enter the service's chroot directory. The
 * program, its libraries and the configuration are then found inside it,
 * under the same paths (pochta-master.conf(5)).
 */
static void
child_chroot(struct master *m, struct master_svc *svc)
{
	const char *dir = svc->conf->chroot;

	if (!m->privileged || dir == NULL)
		return;
	if (chroot(dir) < 0 || chdir("/") < 0) {
		log_error("service %s: cannot chroot to %s: %s",
		    svc->conf->name, dir, strerror(errno));
		_exit(127);
	}
}

/*
 * In the child: sockets to fd 3..., stdin from /dev/null (opened before any
 * chroot), nothing else.
 */
static void
child_fds(struct master_svc *svc, int null)
{
	int tmp[MASTER_MAX_FDS];

	/* Out of the way first: a socket or null may sit at fd 3 or 4. */
	if ((null = fcntl(null, F_DUPFD_CLOEXEC, 10)) < 0)
		_exit(127);
	for (int i = 0; i < svc->n_fds; i++)
		if ((tmp[i] = fcntl(svc->fds[i], F_DUPFD_CLOEXEC, 10)) < 0)
			_exit(127);
	for (int i = 0; i < svc->n_fds; i++)
		if (dup2(tmp[i], 3 + i) < 0)
			_exit(127);
	close_range(3 + (unsigned)svc->n_fds, ~0U, CLOSE_RANGE_CLOEXEC);
	if (dup2(null, STDIN_FILENO) < 0)
		_exit(127);
}

/* Signals master handles through its loop: blocked while it forks. */
static const int forked_blocked[] = {SIGHUP, SIGTERM, SIGINT, SIGCHLD};

static _Noreturn void
child_exec(struct master *m, struct master_svc *svc, pid_t master_pid)
{
	const struct master_service *c = svc->conf;
	char **argv = xcalloc(c->argc + 3 + 2 * m->n_overrides,
	    sizeof(char *));
	size_t n = 3;
	char nfds[16];
	sigset_t hup;
	int null;

	/* Undo what libuv did to signals in master. spawn() forked with
	 * these signals blocked, so none has reached master's handlers in
	 * this process (they would have told master's loop, not us). A
	 * pending SIGTERM now has its default effect; SIGHUP stays blocked
	 * across exec, so a reload that signals the worker before it has
	 * set up its own handler neither kills it nor gets lost: the worker
	 * unblocks it once its handler is in place and then reads its
	 * configuration again. */
	for (size_t i = 0; i < sizeof(forked_blocked) /
	    sizeof(forked_blocked[0]); i++)
		signal(forked_blocked[i], SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	sigprocmask(SIG_SETMASK, &hup, NULL);
	argv[0] = c->argv[0][0] == '/' ? xstrdup(c->argv[0]) :
	    xasprintf("%s/%s", conf_str(m->conf, "daemon_directory"),
	    c->argv[0]);
	if ((null = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		log_error("service %s: /dev/null: %s", c->name,
		    strerror(errno));
		_exit(127);
	}
	child_chroot(m, svc);
	/* Said while the log descriptor is surely still ours. */
	if (access(argv[0], X_OK) < 0) {
		log_error("service %s: cannot run %s: %s", c->name, argv[0],
		    strerror(errno));
		_exit(127);
	}
	child_drop(m, svc);
	child_fds(svc, null);
	snprintf(nfds, sizeof(nfds), "%d", svc->n_fds);
	if (setenv("POCHTA_LISTEN_FDS", nfds, 1) < 0 ||
	    setenv("POCHTA_SERVICE", c->name, 1) < 0 ||
	    setenv("POCHTA_CONF", m->confdir, 1) < 0)
		_exit(127);
	/* Set after setuid, which clears it: no orphan outlives master. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master_pid)
		_exit(0);
	argv[1] = "-c";
	argv[2] = (char *)m->confdir;
	/* master's own -o (e.g. log_target=stderr under `pochta start -f`)
	 * hold for the whole instance; the service's -o come later and
	 * win. */
	for (size_t i = 0; i < m->n_overrides; i++) {
		argv[n++] = "-o";
		argv[n++] = m->overrides[i];
	}
	for (size_t i = 1; i < c->argc; i++)
		argv[n++] = c->argv[i];
	execv(argv[0], argv);
	_exit(127);
}

static void backoff_cb(uv_timer_t *t);

static void
spawn(struct master *m, struct master_svc *svc, struct master_slot *slot)
{
	pid_t master_pid = getpid(), pid;
	sigset_t block, old;

	/*
	 * Until the child has reset them, master's signal handlers are the
	 * child's too, and they write to master's loop: a SIGHUP sent to the
	 * new worker in that moment would reload master instead and never
	 * reach the worker. Blocked here, such a signal waits in the child.
	 */
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(forked_blocked) /
	    sizeof(forked_blocked[0]); i++)
		sigaddset(&block, forked_blocked[i]);
	sigprocmask(SIG_BLOCK, &block, &old);
	pid = fork();
	if (pid != 0)
		sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		/* Like a crash: try again after the backoff. */
		log_error("service %s: fork: %s", svc->conf->name,
		    strerror(errno));
		if (svc->state != MASTER_SVC_THROTTLED) {
			svc->state = MASTER_SVC_THROTTLED;
			uv_timer_start(&svc->timer, backoff_cb,
			    (uint64_t)conf_time(m->conf, "master_backoff_min") *
			    1000, 0);
		}
		return;
	}
	if (pid == 0)
		child_exec(m, svc, master_pid);
	uv_update_time(m->loop);
	slot->pid = pid;
	slot->started = time(NULL);
	slot->started_ms = uv_now(m->loop);
	slot->stopping = 0;
	log_debug("service %s: started worker pid %ld", svc->conf->name,
	    (long)pid);
}

void
master_svc_start(struct master *m, struct master_svc *svc)
{
	svc->state = MASTER_SVC_RUNNING;
	for (int i = 0; i < svc->conf->procs; i++)
		if (svc->slots[i].pid == 0)
			spawn(m, svc, &svc->slots[i]);
}

static void
backoff_cb(uv_timer_t *t)
{
	struct master_svc *svc = t->data;
	struct master *m = t->loop->data;

	log_info("service %s: starting again after the backoff",
	    svc->conf->name);
	for (int i = 0; i < svc->conf->procs; i++)
		if (svc->slots[i].pid == 0)
			svc->restarts++;
	master_svc_start(m, svc);
}

static void
grace_cb(uv_timer_t *t)
{
	struct master_svc *svc = t->data;

	for (int i = 0; i < svc->conf->procs; i++)
		if (svc->slots[i].pid != 0) {
			log_warn("service %s: worker pid %ld did not stop in "
			    "time, killing it", svc->conf->name,
			    (long)svc->slots[i].pid);
			kill(svc->slots[i].pid, SIGKILL);
		}
}

static size_t
svc_live(const struct master_svc *svc)
{
	size_t n = 0;

	for (int i = 0; i < svc->conf->procs; i++)
		n += svc->slots[i].pid != 0;
	return n;
}

size_t
master_svc_live(const struct master *m)
{
	size_t n = 0;

	for (struct master_svc *s = m->svcs; s != NULL; s = s->next)
		n += svc_live(s);
	for (struct master_svc *s = m->draining; s != NULL; s = s->next)
		n += svc_live(s);
	return n;
}

void
master_svc_kill_all(struct master *m, int sig)
{
	for (int pass = 0; pass < 2; pass++)
		for (struct master_svc *s = pass ? m->draining : m->svcs;
		     s != NULL; s = s->next)
			for (int i = 0; i < s->conf->procs; i++)
				if (s->slots[i].pid != 0)
					kill(s->slots[i].pid, sig);
}

void
master_svc_retire(struct master *m, struct master_svc *svc)
{
	svc->state = MASTER_SVC_STOPPING;
	uv_timer_stop(&svc->timer);
	svc_close_sockets(svc);
	for (int i = 0; i < svc->conf->procs; i++) {
		if (svc->slots[i].pid == 0)
			continue;
		svc->slots[i].stopping = 1;
		kill(svc->slots[i].pid, SIGTERM);
	}
	if (svc_live(svc) == 0) {
		uv_close((uv_handle_t *)&svc->timer, svc_free_cb);
		return;
	}
	svc->next = m->draining;
	m->draining = svc;
	uv_timer_start(&svc->timer, grace_cb,
	    (uint64_t)conf_time(m->conf, "master_grace_time") * 1000, 0);
}

/* A worker's exit that master did not ask for. */
static void
svc_crashed(struct master *m, struct master_svc *svc,
    struct master_slot *slot)
{
	long long delay = conf_time(m->conf, "master_backoff_min");
	long long max = conf_time(m->conf, "master_backoff_max");
	uint64_t lived;

	uv_update_time(m->loop);
	lived = uv_now(m->loop) - slot->started_ms;
	svc->crashes++;
	slot->pid = 0;
	/* The pending backoff timer restarts this slot too. */
	if (svc->state == MASTER_SVC_THROTTLED)
		return;
	if (lived >= (uint64_t)conf_time(m->conf, "master_stable_time") *
	    1000) {
		/* It ran long enough: a fresh failure, not a loop. */
		svc->streak = 0;
		svc->restarts++;
		spawn(m, svc, slot);
		return;
	}
	svc->streak++;
	for (unsigned i = 1; i < svc->streak && delay < max; i++)
		delay *= 2;
	if (delay > max)
		delay = max;
	log_warn("service %s crashed %u time%s, next start in %lld s",
	    svc->conf->name, svc->streak, svc->streak == 1 ? "" : "s", delay);
	svc->state = MASTER_SVC_THROTTLED;
	uv_timer_start(&svc->timer, backoff_cb, (uint64_t)delay * 1000, 0);
}

static struct master_svc *
find_worker(struct master_svc *list, pid_t pid, struct master_slot **slot_r)
{
	for (; list != NULL; list = list->next)
		for (int i = 0; i < list->conf->procs; i++)
			if (list->slots[i].pid == pid) {
				*slot_r = &list->slots[i];
				return list;
			}
	return NULL;
}

static void
unlink_draining(struct master *m, struct master_svc *svc)
{
	for (struct master_svc **p = &m->draining; *p != NULL;
	     p = &(*p)->next)
		if (*p == svc) {
			*p = svc->next;
			uv_close((uv_handle_t *)&svc->timer, svc_free_cb);
			return;
		}
}

static void
worker_exited(struct master *m, pid_t pid, int status)
{
	struct master_slot *slot = NULL;
	struct master_svc *svc;
	int draining = 0;

	if ((svc = find_worker(m->svcs, pid, &slot)) == NULL) {
		if ((svc = find_worker(m->draining, pid, &slot)) == NULL)
			return;		/* not a worker of ours */
		draining = 1;
	}
	if (WIFSIGNALED(status))
		log_info("service %s: worker pid %ld killed by signal %d",
		    svc->conf->name, (long)pid, WTERMSIG(status));
	else
		log_info("service %s: worker pid %ld exited with status %d",
		    svc->conf->name, (long)pid, WEXITSTATUS(status));
	if (slot->stopping || draining || m->shutting_down) {
		slot->pid = 0;
		if (draining && svc_live(svc) == 0)
			unlink_draining(m, svc);
		return;
	}
	svc_crashed(m, svc, slot);
}

void
master_svc_reap(struct master *m)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		worker_exited(m, pid, status);
	master_maybe_exit(m);
}
