/*
 * smtpd_data.c - the DATA and BDAT phases of an SMTP session (RFC 5321
 * 4.1.1.4, RFC 3030) and queueing: the queue file is created at DATA or the
 * first BDAT, the message streamed into it, and committed (fsync, rename
 * into incoming/, directory fsync) on the thread pool; only then 250.
 * Client errors are replies; a write error is 451 and leaves nothing queued.
 * Writes into the queue file are plain buffered write(2)s on the loop; the
 * fsyncs, which can block, are not.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "queue_writer.h"
#include "smtpd.h"
#include "stream.h"
#include "tls.h"
#include "xalloc.h"

/* Decoded bytes are handed to the queue writer in pieces of this size. */
#define CHUNK_FLUSH (64 * 1024)

void
smtpd_data_cleanup(struct smtpd_session *s)
{
	queue_writer_free(&s->qw);	/* unlinks an uncommitted file */
	buf_release(&s->chunk);
	s->queue_id[0] = '\0';
	s->write_error = 0;
	s->bdat_left = 0;
	s->bdat_last = 0;
}

/* RFC 3848 protocol names for the Received header and the queue file. */
static const char *
protocol_name(const struct smtpd_session *s)
{
	static const char *const names[] = {"ESMTP", "ESMTPA", "ESMTPS",
	    "ESMTPSA"};

	if (s->is_unix)
		return "local";
	if (!s->esmtp)
		return "SMTP";
	return names[(s->tls ? 2 : 0) + (s->auth_user ? 1 : 0)];
}

static void
rfc5322_date(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	char zone[8];

	localtime_r(&now, &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	snprintf(buf, size, "%s, %d %s %d %02d:%02d:%02d %s", days[tm.tm_wday],
	    tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, zone);
}

/* RFC 5321 4.4 trace information. */
static void
received_header(struct smtpd_session *s, struct buf *b)
{
	const struct smtpd_config *cfg = &s->srv->cfg;
	char date[64];

	rfc5322_date(date, sizeof(date));
	if (s->is_unix) {
		buf_printf(b, "Received: by %s (pochta, from userid %ld)\r\n"
			      "\tid %s; %s\r\n", cfg->hostname,
		    (long)s->peer_uid, s->queue_id, date);
		return;
	}
	buf_printf(b, "Received: from %s (%s [%s])\r\n",
	    s->helo ? s->helo : "unknown", s->name ? s->name : "unknown",
	    s->addr);
	if (s->tls && s->stream != NULL) {
		struct tls *t = stream_tls(s->stream);
		buf_printf(b, "\t(using %s with cipher %s (%d bits))\r\n",
		    tls_version(t), tls_cipher(t), tls_cipher_bits(t));
	}
	buf_printf(b, "\tby %s (pochta) with %s id %s", cfg->hostname,
	    protocol_name(s), s->queue_id);
	if (s->nrcpt == 1)
		buf_printf(b, "\r\n\tfor <%s>", s->rcpts[0].address);
	buf_printf(b, "; %s\r\n", date);
}

/* Create the queue file for the transaction. 0, or replied. */
static int
queue_open(struct smtpd_session *s)
{
	const char *err = NULL;
	struct queue_env env;
	struct buf hdr;

	memset(&env, 0, sizeof(env));
	env.sender = s->sender;
	env.client_addr = s->is_unix ? "local" : s->addr;
	env.client_name = s->is_unix ? s->peer_user : s->name;
	env.helo = s->helo;
	env.protocol = (char *)protocol_name(s);
	env.auth_user = s->auth_user;
	env.ret = s->mail.ret == RET_FULL ? QUEUE_RET_FULL :
	    s->mail.ret == RET_HDRS ? QUEUE_RET_HDRS : QUEUE_RET_NONE;
	env.envid = s->mail.envid;
	env.body = s->mail.body == BODY_TYPE_8BITMIME ? QUEUE_BODY_8BITMIME :
	    QUEUE_BODY_7BIT;
	env.smtputf8 = s->mail.smtputf8;
	int r = queue_writer_create(s->srv->cfg.spool, &env, &s->qw, &err);
	if (r < 0) {
		log_error("%s: cannot create queue file: %s", s->id, err);
		smtpd_reject(s, r == -ENOSPC || r == -EDQUOT ?
		    "452 4.3.1 Insufficient system storage" :
		    "451 4.3.0 Error: queue file write error");
		return -1;
	}
	snprintf(s->queue_id, sizeof(s->queue_id), "%s",
	    queue_writer_id(s->qw));
	for (size_t i = 0; i < s->nrcpt; i++) {
		if (queue_writer_add_rcpt(s->qw, s->rcpts[i].address,
		    s->rcpts[i].orcpt, (unsigned)s->rcpts[i].notify) < 0) {
			log_error("%s: cannot store recipient", s->queue_id);
			smtpd_reject(s, "451 4.3.0 Error: queue file write "
				       "error");
			queue_writer_free(&s->qw);
			return -1;
		}
	}
	log_info("%s: client=%s, session=%s%s%s", s->queue_id,
	    smtpd_client_text(s), s->id, s->auth_user ? ", sasl_username=" :
	    "", s->auth_user ? s->auth_user : "");
	buf_init(&hdr, 0);
	received_header(s, &hdr);
	if (queue_writer_write(s->qw, hdr.data, hdr.len) < 0)
		s->write_error = 1;
	buf_release(&hdr);
	buf_init(&s->chunk, 0);
	return 0;
}

static void
chunk_flush(struct smtpd_session *s)
{
	if (s->chunk.len == 0)
		return;
	if (!s->write_error && queue_writer_write(s->qw, s->chunk.data,
	    s->chunk.len) < 0)
		s->write_error = 1;
	buf_reset(&s->chunk);
}

/* Tell qmgr there is new mail; if it is not running it finds the file in
 * incoming/ when it starts, so failure here only costs latency. */
static void
notify_qmgr(struct smtpd_session *s)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char msg[128];

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path),
	    "%s/private/qmgr", s->srv->cfg.spool) >= sizeof(sun.sun_path))
		return;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return;
	int n = snprintf(msg, sizeof(msg), "request=queue_new\nqueue_id=%s"
					    "\n\n", s->queue_id);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    write(fd, msg, (size_t)n) != n)
		log_debug("%s: qmgr not notified: %s", s->queue_id,
		    strerror(errno));
	close(fd);
}

static void
commit_work(uv_work_t *w)
{
	struct smtpd_session *s = w->data;

	s->work_errstr = NULL;
	s->work_result = queue_writer_commit(s->qw, &s->work_errstr);
}

static void
commit_done(uv_work_t *w, int status)
{
	struct smtpd_session *s = w->data;

	if (status == 0 && s->work_result == 0) {
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queued)",
		    s->queue_id, s->sender,
		    (unsigned long long)queue_writer_size(s->qw), s->nrcpt);
		notify_qmgr(s);
		if (s->stream != NULL)
			smtpd_reply(s, "250 2.0.0 Ok: queued as %s",
			    s->queue_id);
	} else {
		log_error("%s: queue file commit failed: %s", s->queue_id,
		    s->work_errstr ? s->work_errstr : "cancelled");
		if (s->stream != NULL)
			smtpd_reject(s, s->work_result == -ENOSPC ?
			    "452 4.3.1 Insufficient system storage" :
			    "451 4.3.0 Error: queue file write error");
	}
	smtpd_transaction_reset(s);
	s->state = SMTPD_READY;
	smtpd_resume(s);
}

/* The message is complete: refuse it, or commit it. */
static void
message_end(struct smtpd_session *s)
{
	enum smtpd_body_error e = smtpd_body_finish(&s->body);

	chunk_flush(s);
	if (e != SMTPD_BODY_OK) {
		log_info("%s: message from %s refused", s->queue_id,
		    smtpd_client_text(s));
		if (e == SMTPD_BODY_TOO_BIG)
			smtpd_reject(s, "%s", smtpd_body_reply(e));
		else
			smtpd_reply_error(s, "%s", smtpd_body_reply(e));
		smtpd_transaction_reset(s);
		s->state = SMTPD_READY;
		return;
	}
	if (s->write_error) {
		log_error("%s: queue file write error", s->queue_id);
		smtpd_reject(s, "451 4.3.0 Error: queue file write error");
		smtpd_transaction_reset(s);
		s->state = SMTPD_READY;
		return;
	}
	s->work.data = s;
	smtpd_pause(s);
	uv_queue_work(s->srv->loop, &s->work, commit_work, commit_done);
}

void
smtpd_data_start(struct smtpd_session *s)
{
	if (queue_open(s) < 0) {
		smtpd_transaction_reset(s);
		return;
	}
	smtpd_body_init(&s->body, 1, s->srv->cfg.max_line,
	    s->srv->cfg.size_limit);
	s->state = SMTPD_DATA;
	smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* BDAT when it cannot be accepted: the chunk is still read, then this. */
static const char *
bdat_refusal(struct smtpd_session *s)
{
	const struct smtpd_config *cfg = &s->srv->cfg;

	if (s->state == SMTPD_INIT)
		return "503 5.5.1 Error: send HELO/EHLO first";
	if (cfg->tls_level == TLS_LEVEL_ENCRYPT && !s->tls && !s->is_unix)
		return "530 5.7.0 Must issue a STARTTLS command first";
	if (cfg->auth_required && s->auth_user == NULL && !s->is_unix)
		return "530 5.7.0 Authentication required";
	if (s->state == SMTPD_READY)
		return "503 5.5.1 Error: need MAIL command";
	if (s->state == SMTPD_MAIL)
		return "554 5.5.1 Error: no valid recipients";
	return NULL;
}

void
smtpd_bdat_start(struct smtpd_session *s, char *args)
{
	char *p = args, *end;
	unsigned long long size;

	/* RFC 3030 2: BDAT chunk-size [LAST]. Without a size we cannot
	 * tell data from commands, so the session must end. */
	if (*p < '0' || *p > '9' || strspn(p, "0123456789") > 18) {
		smtpd_reject(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		smtpd_reply(s, "421 4.7.0 %s Error: cannot continue",
		    s->srv->cfg.hostname);
		smtpd_close_after_reply(s);
		return;
	}
	size = strtoull(p, &end, 10);
	while (*end == ' ')
		end++;
	int last = strncasecmp(end, "LAST", 4) == 0 &&
	    (end[4] == '\0' || end[4] == ' ');
	if (last)
		end += 4;
	while (*end == ' ')
		end++;
	if (*end != '\0') {
		smtpd_reject(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		smtpd_reply(s, "421 4.7.0 %s Error: cannot continue",
		    s->srv->cfg.hostname);
		smtpd_close_after_reply(s);
		return;
	}
	s->bdat_refused = bdat_refusal(s);
	if (s->bdat_refused == NULL && s->qw == NULL && !s->bdat_failed) {
		if (queue_open(s) < 0) {
			/* Replied already: read and drop the chunk. */
			s->bdat_failed = 1;
			s->bdat_refused = "";
		} else {
			s->bdat_mode = 1;
			smtpd_body_init(&s->body, 0, s->srv->cfg.max_line,
			    s->srv->cfg.size_limit);
		}
	}
	s->bdat_resume_state = s->state;
	s->bdat_left = size;
	s->bdat_size = size;
	s->bdat_last = last;
	s->state = SMTPD_BDAT;
	if (size == 0)
		smtpd_data_input(s, "", 0);
}

static void
bdat_chunk_end(struct smtpd_session *s)
{
	s->state = s->bdat_resume_state;
	if (s->bdat_refused != NULL) {
		if (s->bdat_refused[0] != '\0')
			smtpd_reply_error(s, "%s", s->bdat_refused);
		s->bdat_refused = NULL;
		if (s->bdat_last && s->bdat_failed)
			smtpd_transaction_reset(s);
		return;
	}
	if (s->bdat_failed) {
		smtpd_reply_error(s, "554 5.5.0 Error: previous BDAT failed");
		if (s->bdat_last)
			smtpd_transaction_reset(s);
		return;
	}
	if (s->bdat_last) {
		message_end(s);
		return;
	}
	/* A refusal found early is reported at the last chunk, once. */
	smtpd_reply(s, "250 2.0.0 %llu octets received",
	    (unsigned long long)s->bdat_size);
}

size_t
smtpd_data_input(struct smtpd_session *s, const char *data, size_t len)
{
	if (s->state == SMTPD_DATA) {
		size_t n = smtpd_body_feed(&s->body, data, len, &s->chunk);
		if (s->chunk.len >= CHUNK_FLUSH)
			chunk_flush(s);
		if (s->body.done)
			message_end(s);
		return n;
	}
	/* BDAT: exactly bdat_left octets, no dot handling. */
	size_t n = len < s->bdat_left ? len : (size_t)s->bdat_left;
	if (s->bdat_refused == NULL && !s->bdat_failed && s->qw != NULL) {
		smtpd_body_feed(&s->body, data, n, &s->chunk);
		if (s->chunk.len >= CHUNK_FLUSH)
			chunk_flush(s);
	}
	s->bdat_left -= n;
	if (s->bdat_left == 0)
		bdat_chunk_end(s);
	return n;
}
