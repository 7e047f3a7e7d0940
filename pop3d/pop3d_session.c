/*
 * pop3d_session.c - one POP3 connection: the greeting, command lines (RFC
 * 2449 4: at most 255 octets; longer ones get -ERR and are skipped to their
 * end), replies buffered per input batch so pipelined commands (RFC 2449
 * 6.6) are answered in order and in few writes, STLS and implicit TLS (RFC
 * 2595, RFC 8314), the error limit and the idle autologout (RFC 1939 3).
 * Client errors are replies, never exits.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "pop3d.h"
#include "queue.h"
#include "stream.h"
#include "tls.h"
#include "xalloc.h"

void
pop3d_reply(struct pop3d_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	buf_append(&s->out, "\r\n", 2);
}

void
pop3d_close_after_reply(struct pop3d_session *s)
{
	s->closing_after = 1;
	s->state = POP3D_UPDATE;
}

void
pop3d_reply_error(struct pop3d_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	buf_append(&s->out, "\r\n", 2);
	if (++s->errors >= s->srv->cfg.hard_error_limit &&
	    s->state != POP3D_UPDATE) {
		log_info("%s: too many errors from [%s]", s->id, s->addr);
		pop3d_reply(s, "-ERR too many errors, closing connection");
		pop3d_close_after_reply(s);
	}
}

void
pop3d_flush(struct pop3d_session *s)
{
	if (s->stream == NULL)
		return;
	if (s->out.len > 0) {
		stream_write(s->stream, s->out.data, s->out.len);
		buf_reset(&s->out);
	}
	if (s->closing_after && !s->busy && s->retr_fd < 0 &&
	    !stream_closing(s->stream))
		stream_close(s->stream);
}

void
pop3d_pause(struct pop3d_session *s)
{
	s->busy = 1;
	pop3d_flush(s);
	if (s->stream != NULL)
		stream_read_pause(s->stream);
}

static void session_free(struct pop3d_session *s);

/* After a thread-pool job, a delay or a RETR: free if the client is gone. */
void
pop3d_resume(struct pop3d_session *s)
{
	s->busy = 0;
	if (s->stream == NULL) {
		session_free(s);
		return;
	}
	pop3d_flush(s);
	if (s->stream != NULL && !stream_closing(s->stream))
		stream_read_resume(s->stream);
}

int
pop3d_plaintext_ok(const struct pop3d_session *s)
{
	const struct pop3d_config *cfg = &s->srv->cfg;

	return s->tls || cfg->plaintext_auth ||
	    (s->loopback && cfg->plaintext_auth_loopback);
}

static void
timer_closed(uv_handle_t *h)
{
	free(h);
}

static void
session_free(struct pop3d_session *s)
{
	struct pop3d_server *srv = s->srv;

	pop3d_retr_cleanup(s);
	pop3d_maildrop_close(s);
	pop3d_auth_cleanup(s);
	if (s->delay_timer != NULL) {
		uv_timer_stop(s->delay_timer);
		uv_close((uv_handle_t *)s->delay_timer, timer_closed);
	}
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (srv->sessions == s)
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	srv->nsessions--;
	free(s->user);
	buf_release(&s->out);
	free(s);
}

static void
on_close(struct stream *st, int error, const char *reason)
{
	struct pop3d_session *s = stream_arg(st);

	(void)error;
	log_info("%s: disconnect from [%s] (%s)", s->id, s->addr,
	    reason ? reason : "closed");
	s->stream = NULL;
	/* A thread-pool job or a timer still refers to the session: it
	 * frees it when it ends. */
	if (s->busy)
		return;
	session_free(s);
}

static void
greet(struct pop3d_session *s)
{
	s->state = POP3D_AUTHORIZATION;
	pop3d_reply(s, "+OK %s POP3 server ready", s->srv->cfg.hostname);
	pop3d_flush(s);
}

static void
on_idle(struct stream *st)
{
	struct pop3d_session *s = stream_arg(st);

	if (s->retr_fd >= 0) {
		/* In the middle of a message there is no room for a reply:
		 * the client stopped reading it. */
		log_info("%s: timeout sending a message to [%s]", s->id,
		    s->addr);
		stream_abort(st);
		return;
	}
	if (s->busy) {
		/* The job's answer comes first; then the session ends. */
		s->closing_after = 1;
		return;
	}
	/* RFC 1939 3: autologout does not enter UPDATE, so nothing marked
	 * for deletion is removed. */
	log_info("%s: autologout after idle time from [%s]", s->id, s->addr);
	pop3d_reply(s, "-ERR autologout: idle for too long");
	pop3d_close_after_reply(s);
	pop3d_flush(s);
}

static void
on_drain(struct stream *st)
{
	pop3d_retr_drain(stream_arg(st));
}

void
pop3d_tls_done(struct stream *st)
{
	struct pop3d_session *s = stream_arg(st);
	struct tls *t = stream_tls(st);

	s->tls = 1;
	s->starttls = 0;
	log_info("%s: TLS established with [%s]: %s with cipher %s", s->id,
	    s->addr, tls_version(t), tls_cipher(t));
	/* Implicit TLS: the greeting comes after the handshake. */
	if (s->state == POP3D_GREET)
		greet(s);
}

/* RFC 2449 4: -ERR for a line over the limit; in a SASL exchange it
 * also ends the exchange, so the rest is not taken as a response. */
static void
line_too_long(struct pop3d_session *s)
{
	if (s->state == POP3D_SASL) {
		pop3d_auth_cleanup(s);
		s->state = POP3D_AUTHORIZATION;
	}
	pop3d_reply_error(s, "-ERR line too long");
}

/* One command line, CRLF (or LF) removed. */
static void
line_in(struct pop3d_session *s, const char *p, size_t n)
{
	char line[POP3D_AUTH_LINE_MAX + 1];

	if (memchr(p, '\0', n) != NULL) {
		if (s->state == POP3D_SASL) {
			pop3d_auth_cleanup(s);
			s->state = POP3D_AUTHORIZATION;
		}
		pop3d_reply_error(s, "-ERR NUL in command");
		return;
	}
	memcpy(line, p, n);
	line[n] = '\0';
	if (s->state == POP3D_SASL)
		pop3d_auth_line(s, line);
	else
		pop3d_cmd_line(s, line);
	explicit_bzero(line, n);
}

static int
input_stopped(const struct pop3d_session *s)
{
	return s->busy || s->retr_fd >= 0 || s->state == POP3D_UPDATE ||
	    s->starttls || s->state == POP3D_GREET;
}

static size_t
on_data(struct stream *st, const char *data, size_t len)
{
	struct pop3d_session *s = stream_arg(st);
	size_t used = 0;

	while (used < len && !input_stopped(s)) {
		const char *lf = memchr(data + used, '\n', len - used);
		size_t max = s->state == POP3D_SASL ? POP3D_AUTH_LINE_MAX :
		    POP3D_LINE_MAX;
		if (lf == NULL) {
			if (len - used < max)
				break;
			/* Over-long: drop it up to its end. */
			if (!s->discard_line)
				line_too_long(s);
			s->discard_line = 1;
			used = len;
			break;
		}
		size_t n = (size_t)(lf - (data + used)) + 1;
		const char *p = data + used;
		used += n;
		if (s->discard_line) {
			s->discard_line = 0;
			continue;
		}
		if (n > max) {
			line_too_long(s);
			continue;
		}
		n--;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		line_in(s, p, n);
	}
	pop3d_flush(s);
	/* Nothing after QUIT is read; nothing pipelined after STLS survives
	 * it (RFC 2595 4, CVE-2011-0411). */
	if (s->state == POP3D_UPDATE || s->starttls)
		return len;
	return used;
}

static const struct stream_ops session_ops = {
	.data = on_data,
	.drain = on_drain,
	.close = on_close,
};

void
pop3d_session_accept(struct pop3d_server *srv, uv_stream_t *listener)
{
	struct pop3d_session *s = xcalloc(1, sizeof(*s));
	char qid[QUEUE_ID_SIZE];

	s->srv = srv;
	s->state = POP3D_GREET;
	s->lock_fd = -1;
	s->retr_fd = -1;
	buf_init(&s->out, 0);
	if (stream_accept(listener, &session_ops, s, &s->stream) < 0) {
		buf_release(&s->out);
		free(s);
		return;
	}
	srv->nsessions++;
	s->next = srv->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	srv->sessions = s;
	queue_id_new(qid);
	snprintf(s->id, sizeof(s->id), "%s", qid);
	snprintf(s->addr, sizeof(s->addr), "%s", stream_peer_addr(s->stream));
	s->loopback = stream_peer_loopback(s->stream);
	log_info("%s: connect from [%s]", s->id, s->addr);
	stream_set_limits(s->stream, 16 * 1024, 0, 0);
	stream_set_idle_timeout(s->stream, srv->cfg.timeout_ms, on_idle);

	if (srv->stopping || srv->nsessions > (size_t)srv->cfg.conn_limit) {
		log_warn("%s: %s: refusing [%s]", s->id, srv->stopping ?
		    "service shutting down" : "too many connections", s->addr);
		pop3d_reply(s, "-ERR [SYS/TEMP] server busy, try again later");
		pop3d_close_after_reply(s);
		pop3d_flush(s);
		return;
	}
	if (srv->cfg.wrappermode) {
		if (srv->tls == NULL || stream_starttls(s->stream, srv->tls,
		    NULL, pop3d_tls_done) < 0)
			stream_abort(s->stream);
		return;
	}
	greet(s);
}

void
pop3d_server_stop(struct pop3d_server *srv)
{
	srv->stopping = 1;
	for (size_t i = 0; i < srv->n_listeners; i++)
		uv_close((uv_handle_t *)srv->listeners[i], timer_closed);
	srv->n_listeners = 0;
	for (struct pop3d_session *s = srv->sessions; s != NULL; s = s->next) {
		if (s->stream == NULL || stream_closing(s->stream))
			continue;
		if (s->retr_fd >= 0) {
			/* A client that reads slowly must not hold up the
			 * stop; without UPDATE nothing is lost. */
			stream_abort(s->stream);
			continue;
		}
		if (s->busy) {
			/* Finish the job first: its answer, then close. */
			s->closing_after = 1;
			continue;
		}
		/* No UPDATE: a stopped server removes nothing. */
		pop3d_reply(s, "-ERR [SYS/TEMP] server shutting down");
		pop3d_close_after_reply(s);
		pop3d_flush(s);
	}
}
