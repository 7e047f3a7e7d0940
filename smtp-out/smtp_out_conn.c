/*
 * smtp_out_conn.c - one SMTP client connection on a worker thread:
 * non-blocking connect and I/O with a deadline per command (RFC 5321
 * 4.5.3.2), reply reading, STARTTLS (RFC 3207) through lib/tls, and the
 * connection cache. Every failure is a negative errno plus a text for the
 * log line and the DSN; nothing here exits.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "log.h"
#include "smtp_out.h"
#include "tls.h"
#include "xalloc.h"

/* Idle connections kept at most, over all destinations. */
#define SO_CACHE_MAX 256

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct so_conn *cache_head;
static size_t cache_count;

int64_t
so_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
set_err(struct so_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
set_err(struct so_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

/* Wait for events on the socket until deadline: 0, or -ETIMEDOUT. */
static int
conn_wait(struct so_conn *c, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = {c->fd, events, 0};
		int64_t left = deadline - so_now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int
send_raw(struct so_conn *c, const char *p, size_t n, int64_t deadline)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		int r;

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((r = conn_wait(c, POLLOUT, deadline)) < 0)
			return r;
	}
	return 0;
}

static int
tls_flush(struct so_conn *c, int64_t deadline)
{
	char tmp[16384];

	while (tls_out_pending(c->tls) > 0) {
		size_t n = tls_out_take(c->tls, tmp, sizeof(tmp));
		int r;

		if ((r = send_raw(c, tmp, n, deadline)) < 0)
			return r;
	}
	return 0;
}

/* Read some ciphertext or plaintext off the socket: bytes, 0 at EOF. */
static ssize_t
recv_raw(struct so_conn *c, char *p, size_t n, int64_t deadline)
{
	for (;;) {
		ssize_t r = recv(c->fd, p, n, 0);
		int w;

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((w = conn_wait(c, POLLIN, deadline)) < 0)
			return w;
	}
}

int
so_conn_write(struct so_conn *c, const char *p, size_t n, int64_t deadline)
{
	int r;

	if (c->tls == NULL)
		r = send_raw(c, p, n, deadline);
	else {
		r = 0;
		while (n > 0 && r == 0) {
			size_t k = n > 16384 ? 16384 : n;

			if ((r = tls_write(c->tls, p, k)) == 0)
				r = tls_flush(c, deadline);
			p += k;
			n -= k;
		}
	}
	if (r < 0)
		set_err(c, "lost connection with %s while sending: %s",
		    c->relay, r == -EPROTO ? tls_error(c->tls) :
		    r == -ETIMEDOUT ? "timeout" : strerror(-r));
	return r;
}

/* Append more plaintext to c->in: 0, -ECONNRESET at EOF, or -errno. */
static int
conn_fill(struct so_conn *c, int64_t deadline)
{
	char tmp[16384];
	ssize_t n;

	for (;;) {
		if (c->tls != NULL) {
			long t = tls_read(c->tls, tmp, sizeof(tmp));

			if (t > 0)
				return buf_append(&c->in, tmp, (size_t)t) < 0 ?
				    -ENOBUFS : 0;
			if (t == 0)
				return -ECONNRESET;
			if (t != -EAGAIN)
				return -EPROTO;
			/* Post-handshake messages (tickets) may want out. */
			if (tls_flush(c, deadline) < 0)
				return -EIO;
		}
		if ((n = recv_raw(c, tmp, sizeof(tmp), deadline)) < 0)
			return (int)n;
		if (n == 0)
			return -ECONNRESET;
		if (c->tls == NULL)
			return buf_append(&c->in, tmp, (size_t)n) < 0 ?
			    -ENOBUFS : 0;
		if (tls_feed(c->tls, tmp, (size_t)n) < 0)
			return -ENOMEM;
	}
}

int
so_conn_reply(struct so_conn *c, struct so_reply *rep, const char *what,
    int64_t deadline)
{
	const char *errstr = NULL;
	int r;

	so_reply_release(rep);
	so_reply_init(rep);
	for (;;) {
		long len = buf_line(&c->in, SO_REPLY_LINE_MAX);

		if (len < 0) {
			set_err(c, "reply line too long from %s after %s",
			    c->relay, what);
			return -EPROTO;
		}
		if (len > 0) {
			size_t n = (size_t)len - 1;

			if (n > 0 && c->in.data[n - 1] == '\r')
				n--;
			r = so_reply_line(rep, c->in.data, n, &errstr);
			buf_consume(&c->in, (size_t)len);
			if (r < 0) {
				set_err(c, "bad reply from %s after %s: %s",
				    c->relay, what, errstr);
				return -EPROTO;
			}
			if (r == 1)
				return 0;
			continue;
		}
		if ((r = conn_fill(c, deadline)) < 0) {
			set_err(c, "%s with %s while waiting for reply to %s",
			    r == -ETIMEDOUT ? "conversation timed out" :
			    "lost connection", c->relay, what);
			return r;
		}
	}
}

int
so_conn_open(const struct so_host *h, unsigned timeout, struct so_conn **c_r,
    char *err, size_t errsize)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	struct so_conn *c;
	char addr[64];
	int fd, r, soerr = 0;
	socklen_t elen = sizeof(soerr);

	memset(&ss, 0, sizeof(ss));
	dns_addr_format(&h->addr, addr, sizeof(addr));
	if (h->addr.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)h->port);
		memcpy(&sin->sin_addr, h->addr.addr, 4);
		slen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)h->port);
		memcpy(&sin6->sin6_addr, h->addr.addr, 16);
		slen = sizeof(*sin6);
	}
	c = xcalloc(1, sizeof(*c));
	c->fd = -1;
	buf_init(&c->in, 65536);
	snprintf(c->relay, sizeof(c->relay), "%s[%s]:%d", h->name, addr,
	    h->port);
	fd = socket(h->addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		snprintf(err, errsize, "socket: %s", strerror(errno));
		so_conn_free(&c);
		return -errno;
	}
	c->fd = fd;
	if (connect(fd, (struct sockaddr *)&ss, slen) < 0 &&
	    errno != EINPROGRESS) {
		r = -errno;
		goto fail;
	}
	if ((r = conn_wait(c, POLLOUT, so_now_ms() + timeout * 1000LL)) < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0)
		soerr = errno;
	if (soerr != 0) {
		r = -soerr;
		goto fail;
	}
	*c_r = c;
	return 0;
fail:
	snprintf(err, errsize, "connect to %s: %s", c->relay,
	    r == -ETIMEDOUT ? "timed out" : strerror(-r));
	so_conn_free(&c);
	return r;
}

/* RFC 7672 3: the peer must match one of h's TLSA records. */
static int
dane_setup(struct so_conn *c, const struct so_host *h)
{
	size_t added = 0;
	int r;

	if ((r = tls_dane_enable(c->tls, h->name)) < 0) {
		set_err(c, "DANE for %s: %s", c->relay, tls_error(c->tls));
		return r;
	}
	for (size_t i = 0; i < h->ntlsa; i++) {
		const struct dns_tlsa *t = &h->tlsa[i];

		if ((r = tls_dane_add(c->tls, t->usage, t->selector, t->mtype,
		    t->data, t->len)) < 0) {
			set_err(c, "DANE for %s: %s", c->relay,
			    tls_error(c->tls));
			return r;
		}
		added += (size_t)r;
	}
	if (added == 0) {
		set_err(c, "DANE for %s: no TLSA record usable by the TLS "
		    "library", c->relay);
		return -EPROTO;
	}
	return 0;
}

int
so_conn_starttls(struct so_conn *c, struct tls_ctx *ctx,
    const struct so_host *h, int64_t deadline)
{
	char tmp[16384];
	int r;

	/* Nothing the server sent before the handshake may count after. */
	buf_reset(&c->in);
	c->tls = tls_new(ctx, h->name);
	if (h->tls_level == SO_TLS_DANE && (r = dane_setup(c, h)) < 0)
		return r;
	for (;;) {
		ssize_t n;

		r = tls_handshake(c->tls);
		if (tls_flush(c, deadline) < 0 && r != 0)
			r = -EPROTO;
		if (r == 0)
			return 0;
		if (r != -EAGAIN) {
			set_err(c, "TLS handshake with %s failed: %s",
			    c->relay, tls_error(c->tls));
			return -EPROTO;
		}
		if ((n = recv_raw(c, tmp, sizeof(tmp), deadline)) <= 0) {
			set_err(c, "TLS handshake with %s failed: %s",
			    c->relay, n == 0 ? "connection closed" :
			    n == -ETIMEDOUT ? "timeout" : strerror((int)-n));
			return n == 0 ? -ECONNRESET : (int)n;
		}
		if (tls_feed(c->tls, tmp, (size_t)n) < 0)
			return -ENOMEM;
	}
}

void
so_conn_free(struct so_conn **cp)
{
	struct so_conn *c = *cp;

	*cp = NULL;
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	tls_free(&c->tls);
	buf_release(&c->in);
	free(c->key);
	free(c);
}

void
so_conn_quit(struct so_conn **cp)
{
	struct so_conn *c = *cp;

	if (c == NULL)
		return;
	/* Polite but never waiting: the reply to QUIT tells us nothing. */
	if (c->fd >= 0 && c->usable) {
		if (c->tls != NULL) {
			char tmp[4096];

			if (tls_write(c->tls, "QUIT\r\n", 6) == 0)
				(void)tls_shutdown(c->tls);
			while (tls_out_pending(c->tls) > 0) {
				size_t n = tls_out_take(c->tls, tmp,
				    sizeof(tmp));

				(void)send(c->fd, tmp, n,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
			}
		} else
			(void)send(c->fd, "QUIT\r\n", 6,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	so_conn_free(cp);
}

void
so_cache_put(struct so_conn **cp, const char *key, unsigned seconds)
{
	struct so_conn *c = *cp, *old = NULL;

	*cp = NULL;
	if (c == NULL)
		return;
	if (seconds == 0 || !c->usable || c->in.len > 0) {
		so_conn_quit(&c);
		return;
	}
	free(c->key);
	c->key = xstrdup(key);
	c->expires = so_now_ms() + seconds * 1000LL;
	pthread_mutex_lock(&cache_lock);
	if (cache_count == SO_CACHE_MAX) {
		/* Full: the oldest one makes room (it is at the tail). */
		struct so_conn **pp = &cache_head;

		while ((*pp)->next != NULL)
			pp = &(*pp)->next;
		old = *pp;
		*pp = NULL;
		cache_count--;
	}
	c->next = cache_head;
	cache_head = c;
	cache_count++;
	pthread_mutex_unlock(&cache_lock);
	so_conn_quit(&old);
}

struct so_conn *
so_cache_take(const char *key)
{
	struct so_conn **pp, *c = NULL;
	int64_t now = so_now_ms();

	pthread_mutex_lock(&cache_lock);
	for (pp = &cache_head; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->expires > now && strcmp((*pp)->key, key) == 0) {
			c = *pp;
			*pp = c->next;
			c->next = NULL;
			cache_count--;
			break;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return c;
}

void
so_cache_expire(int64_t now)
{
	struct so_conn **pp, *gone = NULL, *c;

	pthread_mutex_lock(&cache_lock);
	for (pp = &cache_head; *pp != NULL;) {
		c = *pp;
		if (now == 0 || c->expires <= now) {
			*pp = c->next;
			c->next = gone;
			gone = c;
			cache_count--;
		} else
			pp = &c->next;
	}
	pthread_mutex_unlock(&cache_lock);
	while ((c = gone) != NULL) {
		gone = c->next;
		log_debug("closing cached connection to %s after %u uses",
		    c->relay, c->uses);
		so_conn_quit(&c);
	}
}
