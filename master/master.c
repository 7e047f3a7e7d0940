/*
 * master.c - the supervisor (pochta-master(8)): reads pochta.conf and
 * master.conf, owns the spool's pid file, creates every listening socket,
 * runs the workers, reloads on SIGHUP and stops them all on SIGTERM.
 * Start-up errors are fatal; a bad configuration on reload is logged and the
 * running one kept whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "xalloc.h"

static const struct {
	const char *name;
	mode_t mode;
} spool_dirs[] = {
	{"tmp", 0700}, {"incoming", 0700}, {"active", 0700},
	{"deferred", 0700}, {"hold", 0700}, {"corrupt", 0700},
	{"private", 0700}, {"public", 0755}, {"pid", 0755},
};

static struct master master;
static int foreground;

/*
 * Fail before the loop runs. Without -f, `pochta start` is reading our
 * stderr, so the reason goes there as well as to the log.
 */
static _Noreturn void
startup_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static _Noreturn void
startup_fatal(const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	if (master.pid_path != NULL && master.pid_fd >= 0)
		unlink(master.pid_path);
	if (master.conf != NULL &&
	    strcmp(conf_str(master.conf, "log_target"), "stderr") != 0) {
		log_error("%s", msg);
		fprintf(stderr, "master: %s\n", msg);
		exit(1);
	}
	fatal("%s", msg);
}

static void
usage(void)
{
	fprintf(stderr, "usage: master [-fv] [-c DIR] [-o name=value]...\n");
	exit(2);
}

static void
make_spool(struct master *m)
{
	const char *spool = conf_str(m->conf, "queue_directory");
	struct passwd *owner = NULL;

	if (mkdir(spool, 0755) < 0 && errno != EEXIST)
		startup_fatal("cannot create %s: %s", spool, strerror(errno));
	if (m->privileged)
		owner = getpwnam(conf_str(m->conf, "mail_owner"));
	for (size_t i = 0; i < sizeof(spool_dirs) / sizeof(spool_dirs[0]);
	     i++) {
		char *dir = xasprintf("%s/%s", spool, spool_dirs[i].name);

		if (mkdir(dir, spool_dirs[i].mode) < 0 && errno != EEXIST)
			startup_fatal("cannot create %s: %s", dir,
			    strerror(errno));
		/* The queue belongs to mail_owner; pid/ stays root's. */
		if (owner != NULL && strcmp(spool_dirs[i].name, "pid") != 0 &&
		    chown(dir, owner->pw_uid, owner->pw_gid) < 0)
			startup_fatal("cannot chown %s: %s", dir,
			    strerror(errno));
		free(dir);
	}
}

/*
 * The pid file's lock, not its existence, says whether a master runs: a
 * file left by a crashed master is simply taken over.
 */
static void
lock_pid_file(struct master *m)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	char text[32];
	int fd;

	char *path = xasprintf("%s/pid/master.pid",
	    conf_str(m->conf, "queue_directory"));
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		startup_fatal("cannot open %s: %s", path, strerror(errno));
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		fl.l_type = F_WRLCK;
		if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			startup_fatal("already running (pid %ld) on %s",
			    (long)fl.l_pid, path);
		startup_fatal("cannot lock %s: %s", path, strerror(errno));
	}
	m->pid_fd = fd;
	m->pid_path = path;
	int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n)
		startup_fatal("cannot write %s: %s", path, strerror(errno));
}

int
master_load_config(struct master *m, struct conf **conf_r,
    struct master_conf **mconf_r, char **errstr_r)
{
	char *path;
	int r;

	if ((r = conf_load(m->confdir, m->overrides, m->n_overrides, conf_r,
	    errstr_r)) < 0)
		return r;
	path = xasprintf("%s/master.conf", m->confdir);
	r = master_conf_load(path, m->privileged, mconf_r, errstr_r);
	free(path);
	if (r < 0)
		conf_free(conf_r);
	return r;
}

static void
start_services(struct master *m)
{
	struct master_svc **tail = &m->svcs;
	char *err = NULL;

	for (size_t i = 0; i < master_conf_count(m->mconf); i++) {
		struct master_svc *svc = master_svc_new(m,
		    master_conf_service(m->mconf, i));

		*tail = svc;
		tail = &svc->next;
		if (master_svc_bind(m, svc, &err) < 0)
			startup_fatal("%s", err);
	}
}

void
master_maybe_exit(struct master *m)
{
	if (!m->shutting_down || master_svc_live(m) > 0)
		return;
	log_info("stopped");
	uv_stop(m->loop);
}

static void
kill_timer_cb(uv_timer_t *t)
{
	struct master *m = t->data;

	log_warn("workers still running after %lld s, killing them",
	    conf_time(m->conf, "master_grace_time"));
	master_svc_kill_all(m, SIGKILL);
}

static void
shutdown_master(struct master *m)
{
	struct master_svc *svc;

	if (m->shutting_down)
		return;
	m->shutting_down = 1;
	log_info("stopping: terminating all workers");
	master_status_close(m);
	while ((svc = m->svcs) != NULL) {
		m->svcs = svc->next;
		master_svc_retire(m, svc);
	}
	m->kill_timer.data = m;
	uv_timer_start(&m->kill_timer, kill_timer_cb,
	    (uint64_t)conf_time(m->conf, "master_grace_time") * 1000, 0);
	master_maybe_exit(m);
}

static void
signal_cb(uv_signal_t *h, int signum)
{
	struct master *m = h->data;

	switch (signum) {
	case SIGCHLD:
		master_svc_reap(m);
		break;
	case SIGHUP:
		if (!m->shutting_down)
			master_reload(m);
		break;
	default:
		shutdown_master(m);
		break;
	}
}

static void
watch_signal(struct master *m, uv_signal_t *h, int signum)
{
	uv_signal_init(m->loop, h);
	h->data = m;
	uv_signal_start(h, signal_cb, signum);
}

/* After start-up nobody reads our stderr any more (see startup_fatal). */
static void
detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

static void
parse_args(struct master *m, int argc, char **argv)
{
	char resolved[PATH_MAX];
	const char *dir = NULL;
	int ch;

	while ((ch = getopt(argc, argv, "c:fo:v")) != -1) {
		switch (ch) {
		case 'c':
			dir = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'o':
			m->overrides = xreallocarray(m->overrides,
			    m->n_overrides + 1, sizeof(char *));
			m->overrides[m->n_overrides++] = optarg;
			break;
		case 'v':
			log_set_verbose(1);
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (dir == NULL)
		dir = conf_default_dir();
	/* Workers get it after master changed nothing; still, be absolute. */
	if (realpath(dir, resolved) == NULL)
		fatal("%s: %s", dir, strerror(errno));
	m->confdir = xstrdup(resolved);
}

static void
close_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int
main(int argc, char **argv)
{
	struct master *m = &master;
	const char *logerr;
	char *err = NULL;

	log_set_program("master");
	m->pid_fd = -1;
	m->privileged = geteuid() == 0;
	parse_args(m, argc, argv);
	if (master_load_config(m, &m->conf, &m->mconf, &err) < 0)
		fatal("%s", err);
	if (log_open(conf_str(m->conf, "log_target"), &logerr) < 0)
		fatal("log_target %s: %s", conf_str(m->conf, "log_target"),
		    logerr);
	if (!m->privileged)
		log_info("running unprivileged: the user column of "
		    "master.conf is ignored");
	signal(SIGPIPE, SIG_IGN);
	m->loop = xmalloc(sizeof(*m->loop));
	uv_loop_init(m->loop);
	m->loop->data = m;
	uv_timer_init(m->loop, &m->kill_timer);

	make_spool(m);
	lock_pid_file(m);
	start_services(m);
	if (master_status_listen(m, &err) < 0)
		startup_fatal("%s", err);
	watch_signal(m, &m->sig_chld, SIGCHLD);
	watch_signal(m, &m->sig_term, SIGTERM);
	watch_signal(m, &m->sig_int, SIGINT);
	watch_signal(m, &m->sig_hup, SIGHUP);
	if (!foreground)
		detach_stdio();

	for (struct master_svc *s = m->svcs; s != NULL; s = s->next)
		master_svc_start(m, s);
	m->ready = 1;
	log_info("started: %zu services, pid %ld",
	    master_conf_count(m->mconf), (long)getpid());
	uv_run(m->loop, UV_RUN_DEFAULT);

	unlink(m->pid_path);
	uv_walk(m->loop, close_cb, NULL);
	uv_run(m->loop, UV_RUN_DEFAULT);
	uv_loop_close(m->loop);
	free(m->loop);
	free(m->pid_path);
	close(m->pid_fd);
	master_conf_free(&m->mconf);
	conf_free(&m->conf);
	free(m->overrides);
	free((char *)m->confdir);
	return 0;
}
