/*
 * agent_test.c - lib/agent: requests from a blocking client on a thread
 * reach the start callback parsed, answers keep the request order whatever
 * order the requests finish in, and malformed requests get 5.5.4.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>
#include <uv.h>

#include "agent.h"
#include "attr.h"
#include "ipc.h"
#include "queue.h"

struct fixture {
	char dir[64];
	char path[96];
	uv_loop_t loop;
	uv_async_t async;
	struct agent *agent;
	struct agent_req *reqs[4];
	size_t nreqs;
	struct attr_list *replies[4];
	size_t nreplies;
	int client_err;
};

static int
listen_at(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);

	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 8), 0);
	return fd;
}

static struct attr_list *
request(const char *id, const char *nexthop, size_t nrcpt)
{
	struct attr_list *a = attr_list_new();

	attr_add_str(a, "request", "deliver");
	attr_add_str(a, "queue_id", id);
	if (nexthop != NULL)
		attr_add_str(a, "nexthop", nexthop);
	for (size_t i = 0; i < nrcpt; i++) {
		attr_addf(a, "rcpt_index", "%zu", i + 3);
		attr_addf(a, "rcpt", "user%zu@example.test", i);
	}
	return a;
}

/* The client: two good requests and a bad one, then their answers. */
static void *
client(void *arg)
{
	struct fixture *f = arg;
	struct ipc_client *cl;
	const char *err;
	struct attr_list *rq;
	int fd = open("/dev/null", O_RDONLY);

	char ids[3][QUEUE_ID_SIZE];

	for (size_t i = 0; i < 3; i++)
		queue_id_new(ids[i]);
	f->client_err = ipc_client_open(f->path, 5000, &cl, &err);
	if (f->client_err == 0) {
		rq = request(ids[0], "example.test", 2);
		f->client_err = ipc_client_send(cl, rq, fd, 5000, &err);
		attr_list_free(&rq);
		rq = request(ids[1], "[relay.test]:25", 1);
		f->client_err |= ipc_client_send(cl, rq, fd, 5000, &err);
		attr_list_free(&rq);
		/* No queue file: refused. */
		rq = request(ids[2], NULL, 1);
		f->client_err |= ipc_client_send(cl, rq, -1, 5000, &err);
		attr_list_free(&rq);
		for (size_t i = 0; i < 3 && f->client_err == 0; i++)
			f->client_err = ipc_client_recv(cl,
			    &f->replies[f->nreplies++], 5000, &err);
		ipc_client_free(&cl);
	}
	close(fd);
	uv_async_send(&f->async);
	return NULL;
}

static void
on_start(struct agent_req *req, void *arg)
{
	struct fixture *f = arg;

	f->reqs[f->nreqs++] = req;
	if (f->nreqs < 2)
		return;
	/* The second finishes first; its answer must wait for the first. */
	for (size_t k = 2; k-- > 0;) {
		struct agent_req *r = f->reqs[k];

		for (size_t i = 0; i < r->nrcpt; i++) {
			snprintf(r->rcpts[i].status,
			    sizeof(r->rcpts[i].status), "2.0.0");
			r->rcpts[i].text = strdup(k == 0 ? "first" : "second");
			if (k == 1)
				r->rcpts[i].relay = strdup("mx[192.0.2.1]:25");
		}
		agent_req_done(r);
	}
}

static void
on_async(uv_async_t *h)
{
	struct fixture *f = h->data;

	agent_free(&f->agent);
	uv_close((uv_handle_t *)h, NULL);
}

static void
test_agent_order_and_errors(void **state)
{
	struct fixture f;
	pthread_t t;
	char *err = NULL;
	int fd;

	(void)state;
	memset(&f, 0, sizeof(f));
	snprintf(f.dir, sizeof(f.dir), "/tmp/agent-test-XXXXXX");
	assert_non_null(mkdtemp(f.dir));
	snprintf(f.path, sizeof(f.path), "%.60s/sock", f.dir);
	uv_loop_init(&f.loop);
	uv_async_init(&f.loop, &f.async, on_async);
	f.async.data = &f;
	fd = listen_at(f.path);
	assert_int_equal(agent_new(&f.loop, &fd, 1, 10, on_start, &f,
	    &f.agent, &err), 0);
	assert_int_equal(pthread_create(&t, NULL, client, &f), 0);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	pthread_join(t, NULL);
	assert_int_equal(uv_loop_close(&f.loop), 0);

	assert_int_equal(f.client_err, 0);
	assert_int_equal(f.nreqs, 2);
	assert_int_equal(f.nreplies, 3);
	/* First request first, with its recipients in order. */
	assert_string_equal(attr_get_str(f.replies[0], "rcpt"),
	    "user0@example.test");
	assert_string_equal(attr_get_str(f.replies[0], "rcpt_index"), "3");
	assert_string_equal(attr_get_str(f.replies[0], "text"), "first");
	assert_null(attr_get_str(f.replies[0], "relay"));
	assert_int_equal(attr_count_name(f.replies[0], "rcpt"), 2);
	assert_string_equal(attr_get_str(f.replies[1], "text"), "second");
	assert_string_equal(attr_get_str(f.replies[1], "relay"),
	    "mx[192.0.2.1]:25");
	assert_string_equal(attr_get_str(f.replies[2], "status"), "5.5.4");
	assert_string_equal(attr_get_str(f.replies[2], "text"),
	    "no queue file passed");
	for (size_t i = 0; i < f.nreplies; i++)
		attr_list_free(&f.replies[i]);
	unlink(f.path);
	rmdir(f.dir);
}

static void
test_agent_no_socket(void **state)
{
	struct agent *a = NULL;
	char *err = NULL;
	uv_loop_t loop;

	(void)state;
	uv_loop_init(&loop);
	assert_int_equal(agent_new(&loop, NULL, 0, 10, on_start, NULL, &a,
	    &err), -EINVAL);
	assert_null(a);
	assert_non_null(strstr(err, "no listening socket"));
	free(err);
	uv_loop_close(&loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_agent_order_and_errors),
		cmocka_unit_test(test_agent_no_socket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
