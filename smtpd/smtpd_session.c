/*
 * smtpd_session.c - one SMTP connection: limits on connections per client
 * and in total, the greeting (and early-talker refusal), reading command
 * lines (RFC 5321 4.5.3.1.4: 512 octets; RFC 4954 4: 12288 for AUTH),
 * buffered replies for pipelining (RFC 2920), the error limit and the idle
 * timeout (RFC 5321 4.5.3.2). Client errors are replies, never exits.
 */
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "auth.h"
#include "cidr.h"
#include "dns.h"
#include "log.h"
#include "queue.h"
#include "smtpd.h"
#include "stream.h"
#include "tls.h"
#include "xalloc.h"

struct smtpd_client_count {
	struct smtpd_client_count *next;
	unsigned n;
	char addr[64];
};

static struct smtpd_client_count **
client_slot(struct smtpd_server *srv, const char *addr)
{
	uint32_t h = 2166136261u;

	for (const char *p = addr; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	struct smtpd_client_count **pp = &srv->clients[h % srv->nbuckets];
	while (*pp != NULL && strcmp((*pp)->addr, addr) != 0)
		pp = &(*pp)->next;
	return pp;
}

static unsigned
client_count(struct smtpd_server *srv, const char *addr)
{
	struct smtpd_client_count *c = *client_slot(srv, addr);

	return c ? c->n : 0;
}

static void
client_add(struct smtpd_server *srv, const char *addr, int delta)
{
	struct smtpd_client_count **pp = client_slot(srv, addr);

	if (*pp == NULL) {
		if (delta < 0)
			return;
		*pp = xcalloc(1, sizeof(**pp));
		snprintf((*pp)->addr, sizeof((*pp)->addr), "%s", addr);
	}
	(*pp)->n += (unsigned)delta;
	if ((*pp)->n == 0) {
		struct smtpd_client_count *c = *pp;
		*pp = c->next;
		free(c);
	}
}

/* "name[addr]" for log lines, kept in the session. */
static void
client_text_update(struct smtpd_session *s)
{
	if (s->is_unix)
		snprintf(s->client, sizeof(s->client), "local[uid=%ld %s]",
		    (long)s->peer_uid, s->peer_user ? s->peer_user : "?");
	else
		snprintf(s->client, sizeof(s->client), "%s[%s]",
		    s->name ? s->name : "unknown", s->addr);
}

const char *
smtpd_client_text(const struct smtpd_session *s)
{
	return s->client;
}

void
smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	buf_append(&s->out, "\r\n", 2);
}

void
smtpd_close_after_reply(struct smtpd_session *s)
{
	s->closing_after = 1;
	s->state = SMTPD_QUIT;
}

/* Append a reply and log it as a rejection of the current command. */
static void
reject(struct smtpd_session *s, const char *fmt, va_list ap)
{
	size_t start = s->out.len;

	buf_vprintf(&s->out, fmt, ap);
	log_info("%s: reject: %s from %s: %s", s->id,
	    s->cmd[0] ? s->cmd : "input", smtpd_client_text(s),
	    s->out.data + start);
	buf_append(&s->out, "\r\n", 2);
}

void
smtpd_reject(struct smtpd_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reject(s, fmt, ap);
	va_end(ap);
}

void
smtpd_reply_error(struct smtpd_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reject(s, fmt, ap);
	va_end(ap);
	if (++s->errors >= s->srv->cfg.hard_error_limit &&
	    s->state != SMTPD_QUIT) {
		log_info("%s: too many errors from %s", s->id,
		    smtpd_client_text(s));
		smtpd_reply(s, "421 4.7.0 %s Error: too many errors",
		    s->srv->cfg.hostname);
		smtpd_close_after_reply(s);
	}
}

void
smtpd_flush(struct smtpd_session *s)
{
	if (s->stream == NULL)
		return;
	if (s->out.len > 0) {
		stream_write(s->stream, s->out.data, s->out.len);
		buf_reset(&s->out);
	}
	if (s->closing_after && !stream_closing(s->stream))
		stream_close(s->stream);
}

void
smtpd_pause(struct smtpd_session *s)
{
	s->busy = 1;
	smtpd_flush(s);
	if (s->stream != NULL)
		stream_read_pause(s->stream);
}

static void session_free(struct smtpd_session *s);

/* After a thread-pool job or timer: free if the client is gone. */
void
smtpd_resume(struct smtpd_session *s)
{
	s->busy = 0;
	if (s->stream == NULL) {
		session_free(s);
		return;
	}
	smtpd_flush(s);
	if (s->stream != NULL && !stream_closing(s->stream))
		stream_read_resume(s->stream);
}

void
smtpd_transaction_reset(struct smtpd_session *s)
{
	smtpd_data_cleanup(s);
	free(s->sender);
	s->sender = NULL;
	smtpd_mail_params_clear(&s->mail);
	for (size_t i = 0; i < s->nrcpt; i++) {
		free(s->rcpts[i].address);
		free(s->rcpts[i].orcpt);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpt = 0;
	s->bdat_mode = s->bdat_failed = 0;
	if (s->state == SMTPD_MAIL || s->state == SMTPD_RCPT ||
	    s->state == SMTPD_DATA || s->state == SMTPD_BDAT)
		s->state = SMTPD_READY;
}

static void
timer_closed(uv_handle_t *h)
{
	free(h);
}

static void
session_free(struct smtpd_session *s)
{
	struct smtpd_server *srv = s->srv;

	smtpd_transaction_reset(s);
	smtpd_auth_cleanup(s);
	dns_cancel(&s->dns_req);
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
	if (s->addr[0] != '\0' && !s->is_unix)
		client_add(srv, s->addr, -1);
	srv->nsessions--;
	free(s->name);
	free(s->peer_user);
	free(s->helo);
	free(s->auth_user);
	buf_release(&s->out);
	buf_release(&s->chunk);
	free(s);
}

static void
on_close(struct stream *st, int error, const char *reason)
{
	struct smtpd_session *s = stream_arg(st);

	(void)error;
	log_info("%s: disconnect from %s (%s)", s->id, smtpd_client_text(s),
	    reason ? reason : "closed");
	s->stream = NULL;
	/* A thread-pool job still refers to the session: it frees it. */
	if (s->busy)
		return;
	session_free(s);
}

static void
greet(struct smtpd_session *s)
{
	s->state = SMTPD_INIT;
	smtpd_reply(s, "220 %s", s->srv->cfg.banner);
	smtpd_flush(s);
}

static void
greet_timer(uv_timer_t *t)
{
	struct smtpd_session *s = t->data;

	uv_close((uv_handle_t *)t, timer_closed);
	s->delay_timer = NULL;
	if (s->stream == NULL || s->state != SMTPD_GREET)
		return;
	/* Implicit TLS still in its handshake: smtpd_tls_done greets. */
	if (s->srv->cfg.wrappermode && !s->tls)
		return;
	greet(s);
}

static void
on_idle(struct stream *st)
{
	struct smtpd_session *s = stream_arg(st);

	log_info("%s: timeout after %s from %s", s->id,
	    s->state == SMTPD_DATA || s->state == SMTPD_BDAT ? "DATA" : "command",
	    smtpd_client_text(s));
	smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded",
	    s->srv->cfg.hostname);
	smtpd_close_after_reply(s);
	smtpd_flush(s);
}

void
smtpd_tls_done(struct stream *st)
{
	struct smtpd_session *s = stream_arg(st);
	struct tls *t = stream_tls(st);

	s->tls = 1;
	s->starttls = 0;
	log_info("%s: TLS established with %s: %s with cipher %s", s->id,
	    smtpd_client_text(s), tls_version(t), tls_cipher(t));
	/* Implicit TLS: the greeting comes after the handshake. */
	if (s->state == SMTPD_GREET && s->delay_timer == NULL)
		greet(s);
}

/* One command line, CRLF (or LF) removed. */
static void
line_in(struct smtpd_session *s, const char *p, size_t n)
{
	char line[SMTPD_AUTH_LINE_MAX + 1];

	if (memchr(p, '\0', n) != NULL) {
		smtpd_reply_error(s, "500 5.5.2 Error: NUL in command");
		return;
	}
	memcpy(line, p, n);
	line[n] = '\0';
	if (s->state != SMTPD_AUTH) {
		size_t v = strcspn(line, " ");
		snprintf(s->cmd, sizeof(s->cmd), "%.*s", (int)(v < 12 ? v : 12),
		    line);
		for (char *c = s->cmd; *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				*c = '?';
			else
				*c = (char)toupper((unsigned char)*c);
	}
	if (s->state == SMTPD_AUTH)
		smtpd_auth_line(s, line);
	else
		smtpd_cmd_line(s, line, n);
}

static size_t
on_data(struct stream *st, const char *data, size_t len)
{
	struct smtpd_session *s = stream_arg(st);
	size_t used = 0;

	if (s->state == SMTPD_GREET) {
		/* RFC 5321 4.3.1: the client waits for the greeting. */
		log_info("%s: early talker %s refused", s->id,
		    smtpd_client_text(s));
		smtpd_reply(s, "554 5.5.1 %s Error: talked before the "
			       "greeting", s->srv->cfg.hostname);
		smtpd_close_after_reply(s);
		smtpd_flush(s);
		return len;
	}
	while (used < len && !s->busy && s->state != SMTPD_QUIT &&
	    !s->starttls) {
		if (s->state == SMTPD_DATA || s->state == SMTPD_BDAT) {
			size_t n = smtpd_data_input(s, data + used,
			    len - used);
			used += n;
			if (n == 0)
				break;
			continue;
		}
		const char *lf = memchr(data + used, '\n', len - used);
		size_t max = s->state == SMTPD_AUTH ||
		    (len - used >= 5 && strncasecmp(data + used, "AUTH ", 5) ==
		    0) ? SMTPD_AUTH_LINE_MAX : SMTPD_LINE_MAX;
		if (lf == NULL) {
			if (len - used <= max)
				break;
			/* Over-long: drop it up to its end. */
			if (!s->discard_line)
				smtpd_reply_error(s, "500 5.5.2 Error: line "
						     "too long");
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
			smtpd_reply_error(s, "500 5.5.2 Error: line too long");
			continue;
		}
		n--;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		line_in(s, p, n);
	}
	smtpd_flush(s);
	/* Nothing after QUIT is read; nothing pipelined after STARTTLS
	 * survives it (CVE-2011-0411). */
	if (s->state == SMTPD_QUIT || s->starttls)
		return len;
	return used;
}

static const struct stream_ops session_ops = {
	.data = on_data,
	.close = on_close,
};

static void
on_ptr(struct dns_result *res, void *arg)
{
	struct smtpd_session *s = arg;

	s->dns_req = NULL;
	if (res->status == 0 && res->name != NULL) {
		s->name = xstrdup(res->name);
		client_text_update(s);
	} else
		log_debug("%s: no confirmed name for %s: %s", s->id, s->addr,
		    res->errstr);
	dns_result_free(&res);
}

static void
peer_cred(struct smtpd_session *s)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd = stream_fileno(s->stream);

	s->peer_uid = (uid_t)-1;
	if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred,
	    &len) == 0) {
		struct passwd pw, *pwp = NULL;
		char pwbuf[1024];

		s->peer_uid = cred.uid;
		if (getpwuid_r(cred.uid, &pw, pwbuf, sizeof(pwbuf), &pwp) ==
		    0 && pwp != NULL)
			s->peer_user = xstrdup(pw.pw_name);
	}
}

static void
refuse(struct smtpd_session *s, const char *why)
{
	log_warn("%s: %s: refusing %s", s->id, why, smtpd_client_text(s));
	smtpd_reply(s, "421 4.7.0 %s Error: %s, try again later",
	    s->srv->cfg.hostname, why);
	smtpd_close_after_reply(s);
	smtpd_flush(s);
}

void
smtpd_session_accept(struct smtpd_server *srv, uv_stream_t *listener,
    int is_unix)
{
	struct smtpd_session *s = xcalloc(1, sizeof(*s));
	char qid[QUEUE_ID_SIZE];

	s->srv = srv;
	s->state = SMTPD_GREET;
	s->is_unix = is_unix;
	buf_init(&s->out, 0);
	buf_init(&s->chunk, 0);
	if (stream_accept(listener, &session_ops, s, &s->stream) < 0) {
		buf_release(&s->out);
		buf_release(&s->chunk);
		free(s);
		return;
	}
	srv->nsessions++;
	s->next = srv->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	srv->sessions = s;
	/* The session ID is a queue ID: unique and sortable. */
	queue_id_new(qid);
	snprintf(s->id, sizeof(s->id), "%s", qid);

	if (is_unix) {
		peer_cred(s);
		s->trusted = 1;
		s->loopback = 1;
	} else {
		snprintf(s->addr, sizeof(s->addr), "%s",
		    stream_peer_addr(s->stream));
		s->loopback = stream_peer_loopback(s->stream);
		s->trusted = cidr_list_match(srv->mynetworks, s->addr);
		client_add(srv, s->addr, 1);
	}
	client_text_update(s);
	log_info("%s: connect from %s", s->id, smtpd_client_text(s));
	stream_set_limits(s->stream, 64 * 1024, 0, 0);
	stream_set_idle_timeout(s->stream, srv->cfg.timeout_ms, on_idle);

	if (srv->stopping)
		return refuse(s, "service shutting down");
	if (srv->nsessions > (size_t)srv->cfg.conn_limit)
		return refuse(s, "too many connections");
	if (!is_unix &&
	    client_count(srv, s->addr) > (unsigned)srv->cfg.client_limit)
		return refuse(s, "too many connections from your address");

	if (!is_unix && srv->cfg.peername_lookup && srv->dns != NULL) {
		struct dns_addr da;
		if (dns_addr_parse(s->addr, &da) == 0)
			dns_lookup_ptr(srv->dns, &da, on_ptr, s, &s->dns_req);
	}
	if (srv->cfg.wrappermode && srv->tls != NULL)
		stream_starttls(s->stream, srv->tls, NULL, smtpd_tls_done);
	if (srv->cfg.greet_pause_ms > 0) {
		s->delay_timer = xcalloc(1, sizeof(*s->delay_timer));
		uv_timer_init(srv->loop, s->delay_timer);
		s->delay_timer->data = s;
		uv_timer_start(s->delay_timer, greet_timer,
		    srv->cfg.greet_pause_ms, 0);
	} else if (!srv->cfg.wrappermode) {
		greet(s);
	}
}

void
smtpd_server_stop(struct smtpd_server *srv)
{
	srv->stopping = 1;
	for (size_t i = 0; i < srv->n_listeners; i++)
		uv_close((uv_handle_t *)srv->listeners[i], timer_closed);
	srv->n_listeners = 0;
	for (struct smtpd_session *s = srv->sessions; s != NULL; s = s->next) {
		if (s->stream == NULL || stream_closing(s->stream))
			continue;
		if (s->busy) {
			/* Finish queueing first; close after the reply. */
			s->closing_after = 1;
			continue;
		}
		smtpd_reply(s, "421 4.3.2 %s Service shutting down",
		    srv->cfg.hostname);
		smtpd_close_after_reply(s);
		smtpd_flush(s);
	}
	dns_resolver_free(&srv->dns);
}
