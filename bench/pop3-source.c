/*
 * pop3-source.c - a POP3 client for benchmarks: one session that times
 * LIST, UIDL and RETR of every message and QUIT (RFC 1939, PIPELINING from
 * RFC 2449), or, with -i, many sessions that only read the greeting and
 * wait. Whatever the server sends, a bad reply ends the run with exit 1.
 */
#include <sys/resource.h>
#include <sys/socket.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "xalloc.h"

/* RFC 1939 3 allows 512 octets per reply line; message lines may be far
 * longer (RFC 5322 2.1.1 only asks for 998), but not without bound. */
#define MAX_LINE	(64 * 1024)
#define MAX_SESSIONS	100000
#define MAX_WINDOW	1000

struct conn {
	int		 fd;
	int		 timeout_ms;
	struct buf	 in;
	struct buf	 line;	/* the line read_line() returned */
};

struct totals {
	unsigned long	 messages;	/* from STAT */
	unsigned long	 listed;	/* LIST lines */
	unsigned long	 uidls;		/* UIDL lines */
	unsigned long	 retrieved;
	uint64_t	 list_octets;	/* sum of the sizes LIST gave */
	uint64_t	 retr_octets;	/* un-stuffed message bytes received */
	double		 login, list, uidl, retr, quit;
};

static volatile sig_atomic_t stop_flag;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: pop3-source [-j] -a user:password [-W window] "
	    "[-w timeout] host:port\n"
	    "       pop3-source -i [-c sessions] [-w timeout] host:port\n");
	exit(2);
}

/* The number arg of option opt, from 1 to hi; bad usage exits 2. */
static unsigned long
opt_count(int opt, const char *arg, unsigned long hi)
{
	unsigned long long v = 0;
	const char *p;

	for (p = arg; *p >= '0' && *p <= '9' && v <= hi; p++)
		v = v * 10 + (unsigned)(*p - '0');
	if (p == arg || *p != '\0' || v < 1 || v > hi) {
		fprintf(stderr, "pop3-source: -%c: expected 1 to %lu, not "
		    "\"%s\"\n", opt, hi, arg);
		exit(2);
	}
	return (unsigned long)v;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "pop3-source: %s%s%s\n", what,
	    detail != NULL ? ": " : "", detail != NULL ? detail : "");
	exit(1);
}

/* host:port or [v6]:port, resolved numerically or by name. */
static struct addrinfo *
parse_target(const char *arg)
{
	struct addrinfo hints, *res;
	char *host, *port;
	int r;

	host = xstrdup(arg[0] == '[' ? arg + 1 : arg);
	port = strrchr(host, arg[0] == '[' ? ']' : ':');
	if (port == NULL || (arg[0] == '[' && port[1] != ':')) {
		fprintf(stderr, "pop3-source: %s: expected host:port\n", arg);
		exit(2);
	}
	*port++ = '\0';
	if (*port == ':')
		port++;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	r = getaddrinfo(host, port, &hints, &res);
	free(host);
	if (r != 0) {
		fprintf(stderr, "pop3-source: %s: %s\n", arg, gai_strerror(r));
		exit(2);
	}
	return res;
}

/* Wait for fd to become ready for events; a timeout ends the run. */
static void
wait_fd(struct conn *c, short events)
{
	struct pollfd p = { .fd = c->fd, .events = events };
	int r;

	do
		r = poll(&p, 1, c->timeout_ms);
	while (r < 0 && errno == EINTR && !stop_flag);
	if (r == 0)
		fail("timeout", NULL);
	if (r < 0)
		fail("poll", strerror(errno));
}

static void
send_all(struct conn *c, const char *s, size_t n)
{
	ssize_t w;

	while (n > 0) {
		wait_fd(c, POLLOUT);
		w = send(c->fd, s, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w < 0)
			fail("send", strerror(errno));
		s += w;
		n -= (size_t)w;
	}
}

/*
 * The next line without its CRLF (or bare LF), NUL-terminated, in c->line
 * until the next call; *len_r is its length. A line longer than MAX_LINE,
 * the end of the connection and a timeout end the run.
 */
static char *
read_line(struct conn *c, size_t *len_r)
{
	long n;
	ssize_t r;
	char *p;

	for (;;) {
		n = buf_line(&c->in, MAX_LINE);
		if (n < 0)
			fail("reply line too long", NULL);
		if (n > 0)
			break;
		if ((p = buf_space(&c->in, 65536)) == NULL)
			fail("reply line too long", NULL);
		wait_fd(c, POLLIN);
		r = recv(c->fd, p, 65536, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			fail("recv", strerror(errno));
		if (r == 0)
			fail("connection closed by the server", NULL);
		buf_commit(&c->in, (size_t)r);
	}
	buf_reset(&c->line);
	buf_append(&c->line, c->in.data, (size_t)n);
	buf_consume(&c->in, (size_t)n);
	c->line.len -= 1;
	if (c->line.len > 0 && c->line.data[c->line.len - 1] == '\r')
		c->line.len--;
	c->line.data[c->line.len] = '\0';
	*len_r = c->line.len;
	return c->line.data;
}

/* A single-line reply; anything but +OK ends the run. */
static char *
expect_ok(struct conn *c, const char *what)
{
	size_t len;
	char *l = read_line(c, &len);

	if (strncmp(l, "+OK", 3) != 0)
		fail(what, l);
	return l;
}

static void
command(struct conn *c, const char *fmt, const char *arg)
{
	struct buf b;

	buf_init(&b, 2048);
	if (buf_printf(&b, fmt, arg) < 0)
		fail("command too long", NULL);
	send_all(c, b.data, b.len);
	buf_release(&b);
}

/*
 * Read a multi-line response body up to the terminating dot (RFC 1939 3),
 * undoing dot-stuffing. Returns the number of lines; *octets_r gets the
 * body's size counting each line end as CRLF, as LIST and RETR count it.
 */
static unsigned long
read_body(struct conn *c, uint64_t *octets_r, void (*each)(const char *,
    void *), void *arg)
{
	unsigned long lines = 0;
	uint64_t octets = 0;
	size_t len;
	char *l;

	for (;;) {
		l = read_line(c, &len);
		if (l[0] == '.') {
			if (len == 1)
				break;
			l++;
			len--;
		}
		octets += len + 2;
		lines++;
		if (each != NULL)
			each(l, arg);
	}
	if (octets_r != NULL)
		*octets_r = octets;
	return lines;
}

/* A LIST line "msg octets": add the octets. */
static void
list_line(const char *l, void *arg)
{
	struct totals *t = arg;
	unsigned long msg;
	unsigned long long octets;

	if (sscanf(l, "%lu %llu", &msg, &octets) != 2 || msg == 0)
		fail("bad LIST line", l);
	t->list_octets += octets;
}

static void
session_connect(struct conn *c, const struct addrinfo *ai, int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->timeout_ms = timeout_ms;
	buf_init(&c->in, MAX_LINE + 65536);
	buf_init(&c->line, 0);
	c->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
	if (c->fd < 0)
		fail("socket", strerror(errno));
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0)
		fail("connect", strerror(errno));
}

/* LIST, UIDL and RETR of every message with window commands in flight. */
static void
timed_session(const struct addrinfo *ai, const char *auth, unsigned window,
    int timeout_ms, struct totals *t)
{
	struct conn c;
	const char *colon = strchr(auth, ':');
	char *user, *l;
	unsigned long sent, got;
	uint64_t octets;
	double t0;

	if (colon == NULL || colon == auth)
		usage();
	user = xstrndup(auth, (size_t)(colon - auth));
	t0 = now();
	session_connect(&c, ai, timeout_ms);
	expect_ok(&c, "greeting");
	command(&c, "USER %s\r\n", user);
	expect_ok(&c, "USER");
	command(&c, "PASS %s\r\n", colon + 1);
	expect_ok(&c, "PASS");
	t->login = now() - t0;
	free(user);

	command(&c, "STAT\r\n", NULL);
	l = expect_ok(&c, "STAT");
	if (sscanf(l, "+OK %lu", &t->messages) != 1)
		fail("bad STAT reply", l);

	t0 = now();
	command(&c, "LIST\r\n", NULL);
	expect_ok(&c, "LIST");
	t->listed = read_body(&c, NULL, list_line, t);
	t->list = now() - t0;

	t0 = now();
	command(&c, "UIDL\r\n", NULL);
	expect_ok(&c, "UIDL");
	t->uidls = read_body(&c, NULL, NULL, NULL);
	t->uidl = now() - t0;
	if (t->listed != t->messages || t->uidls != t->messages)
		fail("LIST or UIDL does not match STAT", NULL);

	/* RFC 2449 6.6: with PIPELINING, commands may be sent ahead. */
	t0 = now();
	for (sent = got = 0; got < t->messages; got++) {
		char num[32];

		while (sent < t->messages && sent - got < window) {
			snprintf(num, sizeof(num), "%lu", ++sent);
			command(&c, "RETR %s\r\n", num);
		}
		expect_ok(&c, "RETR");
		read_body(&c, &octets, NULL, NULL);
		t->retr_octets += octets;
		t->retrieved++;
	}
	t->retr = now() - t0;
	if (t->retr_octets != t->list_octets)
		fail("RETR sizes do not add up to LIST's", NULL);

	/* QUIT enters UPDATE: every retrieved message is marked Seen. */
	t0 = now();
	command(&c, "QUIT\r\n", NULL);
	expect_ok(&c, "QUIT");
	t->quit = now() - t0;
	close(c.fd);
	buf_release(&c.in);
	buf_release(&c.line);
}

static void
print_json(const struct totals *t)
{
	printf("{\"messages\": %lu, \"octets\": %llu, \"login\": %.6f, "
	    "\"list\": %.6f, \"uidl\": %.6f, \"retr\": %.6f, \"quit\": %.6f, "
	    "\"retr_msgs_per_sec\": %.1f, \"retr_bytes_per_sec\": %.0f}\n",
	    t->messages, (unsigned long long)t->retr_octets, t->login,
	    t->list, t->uidl, t->retr, t->quit,
	    t->retr > 0 ? (double)t->retrieved / t->retr : 0.0,
	    t->retr > 0 ? (double)t->retr_octets / t->retr : 0.0);
}

static void
print_text(const struct totals *t)
{
	printf("messages %lu, %llu octets\n", t->messages,
	    (unsigned long long)t->retr_octets);
	printf("login %.3f s, LIST %.3f s, UIDL %.3f s, RETR all %.3f s, "
	    "QUIT %.3f s\n", t->login, t->list, t->uidl, t->retr, t->quit);
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* -i: open sessions, read each greeting, hold them until a signal. */
static int
idle_sessions(const struct addrinfo *ai, unsigned long sessions,
    int timeout_ms)
{
	struct conn *conns = xcalloc(sessions, sizeof(*conns));
	struct rlimit rl;
	unsigned long i;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (i = 0; i < sessions; i++) {
		session_connect(&conns[i], ai, timeout_ms);
		expect_ok(&conns[i], "greeting");
		buf_release(&conns[i].in);
		buf_release(&conns[i].line);
	}
	printf("connected %lu\n", sessions);
	fflush(stdout);
	while (!stop_flag)
		pause();
	for (i = 0; i < sessions; i++)
		close(conns[i].fd);
	free(conns);
	return 0;
}

int
main(int argc, char *argv[])
{
	struct totals t;
	struct addrinfo *ai;
	struct sigaction sa;
	const char *auth = NULL;
	unsigned long sessions = 1, window = 16, timeout = 60;
	int ch, idle = 0, json = 0;

	while ((ch = getopt(argc, argv, "a:c:ijW:w:")) != -1) {
		switch (ch) {
		case 'a':
			auth = optarg;
			break;
		case 'c':
			sessions = opt_count('c', optarg, MAX_SESSIONS);
			break;
		case 'i':
			idle = 1;
			break;
		case 'j':
			json = 1;
			break;
		case 'W':
			window = opt_count('W', optarg, MAX_WINDOW);
			break;
		case 'w':
			timeout = opt_count('w', optarg, 86400);
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 1 || (!idle && auth == NULL))
		usage();
	ai = parse_target(argv[optind]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (idle) {
		idle_sessions(ai, sessions, (int)timeout * 1000);
		freeaddrinfo(ai);
		return 0;
	}
	memset(&t, 0, sizeof(t));
	timed_session(ai, auth, (unsigned)window, (int)timeout * 1000, &t);
	freeaddrinfo(ai);
	if (json)
		print_json(&t);
	else
		print_text(&t);
	return 0;
}
