/*
 * service_test.c - unit tests for lib/service: the command line, the
 * sockets taken from POCHTA_LISTEN_FDS, SIGHUP reloading (good and bad
 * files) and SIGTERM stopping through the callbacks.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "service.h"
#include "xalloc.h"

static char confdir[] = "/tmp/service_test.XXXXXX";

static void
write_conf(const char *text)
{
	char *path = xasprintf("%s/pochta.conf", confdir);
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	free(path);
}

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(confdir) == NULL)
		return -1;
	write_conf("myhostname = one.example\nlog_target = stderr\n");
	return 0;
}

static int
teardown(void **state)
{
	char *path = xasprintf("%s/pochta.conf", confdir);

	(void)state;
	unlink(path);
	free(path);
	rmdir(confdir);
	return 0;
}

struct events {
	int stops;
	int reloads;
	char old_host[64];
	char new_host[64];
};

static void
on_stop(struct service *svc, void *arg)
{
	struct events *ev = arg;

	(void)svc;
	ev->stops++;
	/* A daemon closes its handles here; this one has none. */
}

static void
on_reload(struct service *svc, const struct conf *old, void *arg)
{
	struct events *ev = arg;

	ev->reloads++;
	snprintf(ev->old_host, sizeof(ev->old_host), "%s",
	    conf_str(old, "myhostname"));
	snprintf(ev->new_host, sizeof(ev->new_host), "%s",
	    conf_str(service_conf(svc), "myhostname"));
}

static void
raise_cb(uv_timer_t *t)
{
	raise((int)(intptr_t)t->data);
}

/* Deliver signals one loop turn at a time, as a daemon would see them. */
static void
send_later(uv_loop_t *loop, uv_timer_t *t, int sig, uint64_t ms)
{
	uv_timer_init(loop, t);
	t->data = (void *)(intptr_t)sig;
	uv_timer_start(t, raise_cb, ms, 0);
}

static void
test_service_init_args_and_fds(void **state)
{
	char *argv[] = {"svc", "-c", confdir, "-o", "mydomain=two.example",
	    "-o", "myhostname=o.example", NULL};
	struct service *svc;
	int sv[2], fl;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(dup2(sv[0], 3), 3);
	setenv("POCHTA_LISTEN_FDS", "1", 1);
	setenv("POCHTA_SERVICE", "submission", 1);
	svc = service_init("svc", 7, argv);
	assert_string_equal(service_name(svc), "submission");
	assert_string_equal(conf_str(service_conf(svc), "mydomain"),
	    "two.example");
	assert_string_equal(conf_str(service_conf(svc), "myhostname"),
	    "o.example");
	assert_int_equal(service_listen_count(svc), 1);
	assert_int_equal(service_listen_fd(svc, 0), 3);
	fl = fcntl(3, F_GETFL);
	assert_true(fl & O_NONBLOCK);
	assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
	/* Not passed on to the daemon's own children. */
	assert_null(getenv("POCHTA_LISTEN_FDS"));
	assert_non_null(service_loop(svc));
	service_free(&svc);
	assert_null(svc);
	unsetenv("POCHTA_SERVICE");
	close(3);
	close(sv[0]);
	close(sv[1]);
}

static void
test_service_reload_and_stop(void **state)
{
	char *argv[] = {"svc", "-c", confdir, NULL};
	struct events ev = {0};
	uv_timer_t t1, t2, t3, t4, keep;
	struct service *svc;
	uv_loop_t *loop;

	(void)state;
	svc = service_init("svc", 3, argv);
	assert_string_equal(service_name(svc), "svc");
	assert_int_equal(service_listen_count(svc), 0);
	service_on_stop(svc, on_stop, &ev);
	service_on_reload(svc, on_reload, &ev);
	loop = service_loop(svc);
	/* Stands for a daemon's listener: signals alone keep no loop alive. */
	uv_timer_init(loop, &keep);
	uv_timer_start(&keep, raise_cb, 60000, 0);

	/* A good file is taken; the callback sees old and new. */
	write_conf("myhostname = three.example\nlog_target = stderr\n");
	send_later(loop, &t1, SIGHUP, 10);
	while (ev.reloads == 0)
		uv_run(loop, UV_RUN_ONCE);
	assert_string_equal(ev.old_host, "one.example");
	assert_string_equal(ev.new_host, "three.example");

	/* A bad file is logged and the running configuration kept. */
	write_conf("myhostname = four.example\nno_such_parameter = 1\n");
	send_later(loop, &t2, SIGHUP, 10);
	send_later(loop, &t3, SIGUSR2, 200);	/* ignored: a marker */
	signal(SIGUSR2, SIG_IGN);
	while (uv_is_active((uv_handle_t *)&t3))
		uv_run(loop, UV_RUN_ONCE);
	assert_int_equal(ev.reloads, 1);
	assert_string_equal(conf_str(service_conf(svc), "myhostname"),
	    "three.example");

	/* SIGTERM calls the stop callback once and lets the loop end. */
	send_later(loop, &t4, SIGTERM, 10);
	uv_close((uv_handle_t *)&t1, NULL);
	uv_close((uv_handle_t *)&t2, NULL);
	uv_close((uv_handle_t *)&t3, NULL);
	uv_close((uv_handle_t *)&keep, NULL);
	assert_int_equal(service_run(svc), 0);
	assert_int_equal(ev.stops, 1);
	write_conf("myhostname = one.example\nlog_target = stderr\n");
}

static void
test_service_privsep_drop_unprivileged(void **state)
{
	char *err = NULL;

	(void)state;
	if (geteuid() != 0) {
		/* Nothing to drop: success, no change. */
		assert_int_equal(service_privsep_drop("nobody", &err), 0);
		assert_null(err);
		return;
	}
	assert_int_equal(service_privsep_drop("no-such-user-x", &err),
	    -ENOENT);
	assert_string_equal(err, "unknown user no-such-user-x");
	free(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_init_args_and_fds),
		cmocka_unit_test(test_service_reload_and_stop),
		cmocka_unit_test(test_service_privsep_drop_unprivileged),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
