/*
 * pochta_ctl.c - `pochta start|stop|reload|status`: run master and talk to
 * the running one through its pid file lock, signals and the status socket
 * spool/private/master (pochta-master(8)). Every wait is bounded; master
 * being down is an error for stop, reload and status.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attr.h"
#include "buf.h"
#include "conf.h"
#include "log.h"
#include "master_conf.h"
#include "pochta.h"
#include "xalloc.h"

#define START_TIMEOUT_MS 30000
#define STATUS_TIMEOUT_MS 10000
#define STATUS_REPLY_MAX (4 * 1024 * 1024)

static struct conf *
ctl_conf(const char *confdir)
{
	struct conf *conf = NULL;
	char *err = NULL;

	if (confdir == NULL)
		confdir = conf_default_dir();
	if (conf_load(confdir, NULL, 0, &conf, &err) < 0) {
		pochta_err("%s", err);
		free(err);
		return NULL;
	}
	return conf;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* The pid of the master holding the spool's pid file lock, or 0. */
static pid_t
master_pid(const struct conf *conf)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	char *path = xasprintf("%s/pid/master.pid",
	    conf_str(conf, "queue_directory"));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	pid_t pid = 0;

	free(path);
	if (fd < 0)
		return 0;
	if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
		pid = fl.l_pid;
	close(fd);
	return pid;
}

/*
 * Send request=what to the status socket and read the whole reply into
 * out. 0, or -1 with a message printed.
 */
static int
status_request(const struct conf *conf, const char *what, struct buf *out)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char *req = xasprintf("request=%s\n\n", what);
	long long deadline = now_ms() + STATUS_TIMEOUT_MS;
	int fd, r = -1;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/private/master",
	    conf_str(conf, "queue_directory"));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		pochta_err("%s: %s", sun.sun_path, strerror(errno));
		goto out;
	}
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		long long left = deadline - now_ms();
		char *space;
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			pochta_err("master did not answer in time");
			break;
		}
		if ((space = buf_space(out, 4096)) == NULL) {
			pochta_err("master's answer is too long");
			break;
		}
		if ((n = read(fd, space, 4096)) < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			pochta_err("%s: %s", sun.sun_path, strerror(errno));
			break;
		}
		if (n == 0) {
			r = 0;
			break;
		}
		buf_commit(out, (size_t)n);
	}
out:
	if (fd >= 0)
		close(fd);
	free(req);
	return r;
}

/* The messages of a reply, NULL-terminated; NULL if malformed. */
static struct attr_list **
parse_reply(struct buf *in)
{
	struct attr_list **msgs = NULL, *l;
	size_t n = 0, used;
	const char *err;
	int r;

	while ((r = attr_parse(in, NULL, &l, &used, &err)) == 1) {
		msgs = xreallocarray(msgs, n + 2, sizeof(*msgs));
		msgs[n++] = l;
		msgs[n] = NULL;
		buf_consume(in, used);
	}
	if (r < 0 || n == 0) {
		pochta_err("bad answer from master: %s",
		    r < 0 ? err : "empty");
		for (size_t i = 0; i < n; i++)
			attr_list_free(&msgs[i]);
		free(msgs);
		return NULL;
	}
	return msgs;
}

static void
free_reply(struct attr_list ***msgs)
{
	for (size_t i = 0; (*msgs)[i] != NULL; i++)
		attr_list_free(&(*msgs)[i]);
	free(*msgs);
	*msgs = NULL;
}

static int
master_ready(const struct conf *conf)
{
	struct attr_list **msgs;
	struct buf in;
	int ready = 0;

	buf_init(&in, STATUS_REPLY_MAX);
	if (status_request(conf, "ready", &in) == 0 &&
	    (msgs = parse_reply(&in)) != NULL) {
		const char *v = attr_get_str(msgs[0], "ready");

		ready = v != NULL && strcmp(v, "yes") == 0;
		free_reply(&msgs);
	}
	buf_release(&in);
	return ready;
}

static char *
master_path(const struct conf *conf)
{
	return xasprintf("%s/master", conf_str(conf, "daemon_directory"));
}

/*
 * Collect master's stderr until it closes it (start-up done) or exits.
 * Returns 0 once master says it is ready, else 1 with its words printed.
 */
static int
start_wait(const struct conf *conf, pid_t pid, int errfd)
{
	long long deadline = now_ms() + START_TIMEOUT_MS;
	struct buf text;
	int status, rc = 1;

	buf_init(&text, 65536);
	for (;;) {
		struct pollfd pfd = {.fd = errfd, .events = POLLIN};
		long long left = deadline - now_ms();
		char chunk[4096];
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
			break;
		if ((n = read(errfd, chunk, sizeof(chunk))) < 0 &&
		    errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_append(&text, chunk, (size_t)n);
	}
	while (now_ms() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "%s", text.len > 0 ? text.data :
			    "pochta: master exited during start-up\n");
			break;
		}
		if (master_ready(conf)) {
			printf("pochta: started (pid %ld)\n", (long)pid);
			rc = 0;
			break;
		}
		sleep_ms(100);
	}
	if (rc != 0 && now_ms() >= deadline)
		pochta_err("master did not get ready in %d s",
		    START_TIMEOUT_MS / 1000);
	buf_release(&text);
	return rc;
}

int
pochta_start_main(int argc, char **argv, const char *confdir)
{
	int ch, fg = 0, pfd[2], rc = 1;
	struct conf *conf;
	pid_t pid;

	while ((ch = getopt(argc, argv, "f")) != -1) {
		if (ch != 'f') {
			fprintf(stderr, "usage: pochta start [-f]\n");
			return EXIT_USAGE;
		}
		fg = 1;
	}
	if (optind != argc) {
		fprintf(stderr, "usage: pochta start [-f]\n");
		return EXIT_USAGE;
	}
	if ((conf = ctl_conf(confdir)) == NULL)
		return 1;
	if ((pid = master_pid(conf)) != 0) {
		pochta_err("already running (pid %ld)", (long)pid);
		conf_free(&conf);
		return 1;
	}
	char *prog = master_path(conf);
	char *args[] = {prog, "-c", (char *)conf_dir(conf), "-f", "-o",
	    "log_target=stderr", NULL};
	if (fg) {
		fflush(NULL);
		execv(prog, args);
		pochta_err("%s: %s", prog, strerror(errno));
		goto out;
	}
	args[3] = NULL;
	if (pipe2(pfd, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		pochta_err("cannot start master: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		/* A session of its own: no terminal signals reach it. */
		setsid();
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		execv(prog, args);
		fprintf(stderr, "pochta: %s: %s\n", prog, strerror(errno));
		_exit(1);
	}
	close(pfd[1]);
	rc = start_wait(conf, pid, pfd[0]);
	close(pfd[0]);
out:
	free(prog);
	conf_free(&conf);
	return rc;
}

/* The master's pid, or 0 with "not running" printed. */
static pid_t
running_or_complain(const struct conf *conf)
{
	pid_t pid = master_pid(conf);

	if (pid == 0)
		pochta_err("not running");
	return pid;
}

int
pochta_stop_main(int argc, char **argv, const char *confdir)
{
	struct conf *conf;
	long long deadline;
	pid_t pid;
	int rc = 1;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: pochta stop\n");
		return EXIT_USAGE;
	}
	if ((conf = ctl_conf(confdir)) == NULL)
		return 1;
	if ((pid = running_or_complain(conf)) == 0)
		goto out;
	if (kill(pid, SIGTERM) < 0) {
		pochta_err("kill %ld: %s", (long)pid, strerror(errno));
		goto out;
	}
	/* master lets workers finish for the grace time, then kills them. */
	deadline = now_ms() + conf_time(conf, "master_grace_time") * 1000 +
	    10000;
	while (now_ms() < deadline) {
		if (master_pid(conf) == 0 && kill(pid, 0) < 0) {
			rc = 0;
			goto out;
		}
		sleep_ms(50);
	}
	pochta_err("master (pid %ld) did not stop in time", (long)pid);
out:
	conf_free(&conf);
	return rc;
}

int
pochta_reload_main(int argc, char **argv, const char *confdir)
{
	struct conf *conf;
	pid_t pid;
	int rc = 1;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: pochta reload\n");
		return EXIT_USAGE;
	}
	if ((conf = ctl_conf(confdir)) == NULL)
		return 1;
	/* Say what is wrong here rather than only in master's log. */
	char *path = xasprintf("%s/master.conf", conf_dir(conf)), *err = NULL;
	struct master_conf *mconf = NULL;
	if (master_conf_load(path, geteuid() == 0, &mconf, &err) < 0) {
		pochta_err("%s", err);
		free(err);
	} else if ((pid = running_or_complain(conf)) != 0) {
		if (kill(pid, SIGHUP) == 0)
			rc = 0;
		else
			pochta_err("kill %ld: %s", (long)pid, strerror(errno));
	}
	master_conf_free(&mconf);
	free(path);
	conf_free(&conf);
	return rc;
}

static const char *
attr_or(const struct attr_list *l, const char *name, const char *def)
{
	const char *v = attr_get_str(l, name);

	return v != NULL ? v : def;
}

static void
json_string(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
print_json(struct attr_list **msgs)
{
	static const char *const strs[] = {"name", "type", "listen", "state"};
	static const char *const nums[] = {"procs", "started", "uptime",
	    "restarts", "crashes"};

	printf("{\"pid\": %s, \"ready\": %s, \"services\": [",
	    attr_or(msgs[0], "pid", "0"),
	    strcmp(attr_or(msgs[0], "ready", "no"), "yes") == 0 ?
	    "true" : "false");
	for (size_t i = 1; msgs[i] != NULL; i++) {
		printf("%s{", i > 1 ? ", " : "");
		for (size_t k = 0; k < 4; k++) {
			printf("\"%s\": ", strs[k]);
			json_string(attr_or(msgs[i], strs[k], ""));
			printf(", ");
		}
		for (size_t k = 0; k < 5; k++)
			printf("\"%s\": %lld, ", nums[k],
			    strtoll(attr_or(msgs[i], nums[k], "0"), NULL, 10));
		/* pids is digits and commas, made by master itself. */
		printf("\"pids\": [%s]}", attr_or(msgs[i], "pids", ""));
	}
	printf("]}\n");
}

static void
print_table(struct attr_list **msgs)
{
	printf("%-14s %-5s %-24s %-10s %-16s %8s %8s\n", "SERVICE", "TYPE",
	    "LISTEN", "STATE", "PIDS", "UPTIME", "RESTARTS");
	for (size_t i = 1; msgs[i] != NULL; i++) {
		const struct attr_list *l = msgs[i];
		const char *pids = attr_or(l, "pids", "");

		printf("%-14s %-5s %-24s %-10s %-16s %7ss %8s\n",
		    attr_or(l, "name", "?"), attr_or(l, "type", "?"),
		    attr_or(l, "listen", "?"), attr_or(l, "state", "?"),
		    *pids != '\0' ? pids : "-", attr_or(l, "uptime", "0"),
		    attr_or(l, "restarts", "0"));
	}
}

int
pochta_status_main(int argc, char **argv, const char *confdir)
{
	struct attr_list **msgs;
	struct conf *conf;
	struct buf in;
	int json = 0, rc = 1;

	if (argc == 2 && strcmp(argv[1], "--json") == 0) {
		json = 1;
	} else if (argc != 1) {
		fprintf(stderr, "usage: pochta status [--json]\n");
		return EXIT_USAGE;
	}
	if ((conf = ctl_conf(confdir)) == NULL)
		return 1;
	buf_init(&in, STATUS_REPLY_MAX);
	if (running_or_complain(conf) != 0 &&
	    status_request(conf, "status", &in) == 0 &&
	    (msgs = parse_reply(&in)) != NULL) {
		if (json)
			print_json(msgs);
		else
			print_table(msgs);
		free_reply(&msgs);
		rc = 0;
	}
	buf_release(&in);
	conf_free(&conf);
	return rc;
}
