/*
 * smtp_out_deliver.c - one delivery request over SMTP (RFC 5321 3.3, 4.1):
 * try the hosts in order, EHLO or HELO, STARTTLS (RFC 3207), AUTH (RFC
 * 4954), MAIL with SIZE, BODY, SMTPUTF8 and DSN parameters (RFC 1870, 6152,
 * 6531, 3461), RCPT with PIPELINING (RFC 2920), DATA. A host that fails
 * before any recipient is decided gives way to the next; 4xx defers, 5xx
 * bounces, each recipient with the remote reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "log.h"
#include "map.h"
#include "queue_file.h"
#include "smtp_out.h"
#include "tls.h"
#include "xalloc.h"

/* Transactions on one connection for 452 leftovers (RFC 5321 4.5.3.1.10). */
#define SO_MAX_ROUNDS 100

struct so_tx {
	struct so_job *job;
	struct queue_file *qf;
	const struct queue_env *env;
	struct so_setup *s;
	int needs_utf8;
	int tls_failed;		/* STARTTLS failed at the last host */
	struct so_reply rep;
	struct buf out;
};

static int64_t
deadline(unsigned seconds)
{
	return so_now_ms() + seconds * 1000LL;
}

/* The status of a reply: its enhanced code when consistent, else x.0.0. */
static void
reply_status(const struct so_reply *r, char *st, size_t size)
{
	int cls = r->code / 100;

	if (r->enh[0] != '\0' && r->enh[0] - '0' == cls)
		snprintf(st, size, "%s", r->enh);
	else
		snprintf(st, size, "%d.0.0", cls == 3 ? 2 : cls);
}

static void
rcpt_set(struct so_rcpt *rc, const char *status, const char *text,
    const char *relay)
{
	snprintf(rc->status, sizeof(rc->status), "%s", status);
	free(rc->text);
	rc->text = xstrdup(text);
	free(rc->relay);
	rc->relay = relay != NULL ? xstrdup(relay) : NULL;
	rc->retry = 0;
	rc->accepted = 0;
}

static void
rcpt_set_reply(struct so_rcpt *rc, const struct so_reply *r,
    const char *relay)
{
	char st[16];
	char *text = so_reply_oneline(r);

	reply_status(r, st, sizeof(st));
	rcpt_set(rc, st, text, relay);
	free(text);
}

/* Decide every recipient still open (accepted ones too, if all). */
static void
decide_open(struct so_tx *tx, const char *status, const char *text,
    const char *relay)
{
	for (size_t i = 0; i < tx->job->nrcpt; i++)
		if (tx->job->rcpts[i].status[0] == '\0')
			rcpt_set(&tx->job->rcpts[i], status, text, relay);
}

static size_t
open_count(const struct so_job *job)
{
	size_t n = 0;

	for (size_t i = 0; i < job->nrcpt; i++)
		n += job->rcpts[i].status[0] == '\0';
	return n;
}

/* Note in c->err that the host refused what, quoting its reply. */
static int
refused(struct so_conn *c, const struct so_reply *rep, const char *what)
{
	char *t = so_reply_oneline(rep);

	snprintf(c->err, sizeof(c->err), "host %s refused %s: %s", c->relay,
	    what, t);
	free(t);
	return -EPROTO;
}

/* Send one command line and read its reply. */
static int
command(struct so_conn *c, struct so_reply *rep, const char *line,
    const char *what, unsigned timeout)
{
	int64_t dl = deadline(timeout);
	int r;

	if ((r = so_conn_write(c, line, strlen(line), dl)) < 0 ||
	    (r = so_conn_reply(c, rep, what, dl)) < 0)
		return r;
	return 0;
}

static int
ehlo(struct so_tx *tx, struct so_conn *c)
{
	char line[600];
	int r;

	snprintf(line, sizeof(line), "EHLO %s\r\n", tx->s->helo_name);
	if ((r = command(c, &tx->rep, line, "EHLO",
	    tx->s->helo_timeout)) < 0)
		return r;
	if (tx->rep.code == 250) {
		so_caps_parse(tx->rep.text.data != NULL ?
		    tx->rep.text.data : "", &c->caps);
		return 0;
	}
	/* RFC 5321 4.1.4: a server without ESMTP may only know HELO. */
	memset(&c->caps, 0, sizeof(c->caps));
	snprintf(line, sizeof(line), "HELO %s\r\n", tx->s->helo_name);
	if ((r = command(c, &tx->rep, line, "HELO",
	    tx->s->helo_timeout)) < 0)
		return r;
	if (tx->rep.code != 250)
		return refused(c, &tx->rep, "to talk to me");
	return 0;
}

static int
starttls(struct so_tx *tx, struct so_conn *c, const struct so_host *h)
{
	int r;

	if ((r = command(c, &tx->rep, "STARTTLS\r\n", "STARTTLS",
	    tx->s->helo_timeout)) < 0)
		return r;
	if (tx->rep.code != 220)
		return refused(c, &tx->rep, "STARTTLS");
	if ((r = so_conn_starttls(c, tx->s->tls_ctx, h,
	    deadline(tx->s->helo_timeout))) < 0)
		return r;
	/* Postfix's "Verified" (DANE), "Trusted" (PKIX), "Anonymous". */
	log_info("%s: TLS to %s: %s with cipher %s (%d bits)%s",
	    tx->job->queue_id, c->relay, tls_version(c->tls),
	    tls_cipher(c->tls), tls_cipher_bits(c->tls),
	    tls_peer_dane_verified(c->tls) ? ", dane-verified" :
	    tls_peer_verified(c->tls) ? ", verified" : "");
	/* RFC 3207 4.2: forget everything learnt before TLS. */
	return ehlo(tx, c);
}

/* user:password for the next hop or the host, malloc'd, or NULL. */
static char *
sasl_secret(struct so_tx *tx, const char *host)
{
	char *v = NULL;

	if (tx->s->sasl_maps == NULL)
		return NULL;
	pthread_mutex_lock(&tx->s->sasl_lock);
	for (size_t i = 0; i < map_list_count(tx->s->sasl_maps) &&
	    v == NULL; i++) {
		struct map *m = map_list_get(tx->s->sasl_maps, i);

		if (map_lookup(m, tx->job->nexthop, &v) != 0)
			v = NULL;
		if (v == NULL && map_lookup(m, host, &v) != 0)
			v = NULL;
	}
	pthread_mutex_unlock(&tx->s->sasl_lock);
	return v;
}


/* Send base64 of p (n bytes), then CRLF, and read the reply. */
static int
auth_step(struct so_tx *tx, struct so_conn *c, const char *prefix,
    const char *p, size_t n)
{
	struct buf b;
	char *enc;
	int r;

	buf_init(&b, 0);
	enc = base64_encode(p, n);
	buf_printf(&b, "%s%s\r\n", prefix, enc);
	free(enc);
	r = command(c, &tx->rep, b.data, "AUTH", tx->s->helo_timeout);
	explicit_bzero(b.data, b.len);
	buf_release(&b);
	return r;
}

static int
auth(struct so_tx *tx, struct so_conn *c, const char *host)
{
	char *secret = sasl_secret(tx, host), *colon;
	int r;

	if (secret == NULL)
		return 0;
	if ((colon = strchr(secret, ':')) == NULL) {
		snprintf(c->err, sizeof(c->err), "smtp_sasl_password_maps: "
		    "no user:password for %s", host);
		r = -EINVAL;
	} else if (c->tls == NULL) {
		snprintf(c->err, sizeof(c->err), "not sending credentials "
		    "to %s without TLS", c->relay);
		r = -EPERM;
	} else if (c->caps.flags & SO_CAP_AUTH_PLAIN) {
		size_t ul = (size_t)(colon - secret), pl = strlen(colon + 1);
		char *plain = xmalloc(ul + pl + 2);

		/* RFC 4616: authzid NUL authcid NUL password. */
		plain[0] = '\0';
		memcpy(plain + 1, secret, ul);
		plain[ul + 1] = '\0';
		memcpy(plain + ul + 2, colon + 1, pl);
		r = auth_step(tx, c, "AUTH PLAIN ", plain, ul + pl + 2);
		explicit_bzero(plain, ul + pl + 2);
		free(plain);
		if (r == 0 && tx->rep.code != 235)
			r = refused(c, &tx->rep, "SASL authentication");
	} else if (c->caps.flags & SO_CAP_AUTH_LOGIN) {
		r = auth_step(tx, c, "AUTH LOGIN ", secret,
		    (size_t)(colon - secret));
		if (r == 0 && tx->rep.code == 334)
			r = auth_step(tx, c, "", colon + 1, strlen(colon + 1));
		if (r == 0 && tx->rep.code != 235)
			r = refused(c, &tx->rep, "SASL authentication");
	} else {
		snprintf(c->err, sizeof(c->err), "%s offers no AUTH PLAIN "
		    "or LOGIN", c->relay);
		r = -EPROTO;
	}
	explicit_bzero(secret, strlen(secret));
	free(secret);
	return r;
}

/*
 * Connect and greet, STARTTLS (unless plain) and AUTH: 0 with *c_r, or
 * -errno and err.
 */
static int
session_open(struct so_tx *tx, const struct so_host *h, int plain,
    struct so_conn **c_r, char *err, size_t errsize)
{
	struct so_conn *c;
	int r;

	tx->tls_failed = 0;
	if (h->tlsa_err != NULL) {
		/* RFC 7672 2.2.3: never this host, and never in plain text. */
		snprintf(err, errsize, "%s", h->tlsa_err);
		return -EAGAIN;
	}
	if ((r = so_conn_open(h, tx->s->connect_timeout, &c, err,
	    errsize)) < 0)
		return r;
	log_info("%s: connected to %s", tx->job->queue_id, c->relay);
	r = so_conn_reply(c, &tx->rep, "greeting",
	    deadline(tx->s->helo_timeout));
	if (r == 0 && tx->rep.code != 220)
		r = refused(c, &tx->rep, "to talk to me");
	if (r == 0)
		r = ehlo(tx, c);
	if (r == 0 && !plain && h->tls_level != SO_TLS_NONE &&
	    (c->caps.flags & SO_CAP_STARTTLS)) {
		r = starttls(tx, c, h);
		tx->tls_failed = r < 0;
	} else if (r == 0 && h->tls_level >= SO_TLS_ENCRYPT) {
		snprintf(c->err, sizeof(c->err), "TLS is required, but %s "
		    "does not offer STARTTLS", c->relay);
		r = -EPROTO;
	}
	if (r == 0)
		r = auth(tx, c, h->name);
	if (r < 0) {
		snprintf(err, errsize, "%s", c->err);
		log_info("%s: %s", tx->job->queue_id, err);
		so_conn_free(&c);
		return r;
	}
	c->usable = 1;
	*c_r = c;
	return 0;
}

static void
mail_command(struct so_tx *tx, struct so_conn *c, struct buf *b)
{
	const struct queue_env *env = tx->env;
	int dsn = (c->caps.flags & SO_CAP_DSN) != 0;

	buf_printf(b, "MAIL FROM:<%s>", env->sender);
	if (c->caps.flags & SO_CAP_SIZE)
		buf_printf(b, " SIZE=%llu",
		    (unsigned long long)env->msg_size);
	if (env->body == QUEUE_BODY_8BITMIME &&
	    (c->caps.flags & SO_CAP_8BITMIME))
		buf_puts(b, " BODY=8BITMIME");
	if (tx->needs_utf8 && (c->caps.flags & SO_CAP_SMTPUTF8))
		buf_puts(b, " SMTPUTF8");
	if (dsn && env->ret != QUEUE_RET_NONE)
		buf_puts(b, env->ret == QUEUE_RET_FULL ? " RET=FULL" :
		    " RET=HDRS");
	if (dsn && env->envid != NULL) {
		buf_puts(b, " ENVID=");
		so_xtext(b, env->envid);
	}
	buf_puts(b, "\r\n");
}

static void
rcpt_command(struct so_tx *tx, struct so_conn *c, const struct so_rcpt *rc,
    struct buf *b)
{
	const struct queue_rcpt *q = NULL;
	char tmp[64];

	if (rc->index < tx->env->nrcpt)
		q = &tx->env->rcpts[rc->index];
	buf_printf(b, "RCPT TO:<%s>", rc->address);
	if ((c->caps.flags & SO_CAP_DSN) && q != NULL) {
		const char *semi;

		if (q->notify != 0)
			buf_printf(b, " NOTIFY=%s", queue_file_notify_str(
			    q->notify, tmp, sizeof(tmp)));
		if (q->orcpt != NULL &&
		    (semi = strchr(q->orcpt, ';')) != NULL) {
			buf_printf(b, " ORCPT=%.*s;", (int)(semi - q->orcpt),
			    q->orcpt);
			so_xtext(b, semi + 1);
		}
	}
	buf_puts(b, "\r\n");
}

/* Stream the message, dot-stuffed, and the final dot. */
static int
send_body(struct so_tx *tx, struct so_conn *c)
{
	char blk[65536];
	struct so_dot d;
	uint64_t off = 0;
	ssize_t n;
	int r;

	so_dot_init(&d);
	for (;;) {
		n = queue_file_read_msg(tx->qf, blk, sizeof(blk), off);
		if (n < 0) {
			snprintf(c->err, sizeof(c->err), "cannot read the "
			    "queue file: %s", strerror((int)-n));
			c->usable = 0;
			return -EIO;
		}
		buf_reset(&tx->out);
		if (n == 0)
			r = so_dot_finish(&d, &tx->out);
		else
			r = so_dot_stuff(&d, blk, (size_t)n, &tx->out);
		if (r < 0 || (r = so_conn_write(c, tx->out.data, tx->out.len,
		    deadline(tx->s->data_timeout))) < 0)
			return r;
		if (n == 0)
			return 0;
		off += (uint64_t)n;
	}
}

/* Take the reply to one RCPT (RFC 5321 4.5.3.1.10: 452 is no failure). */
static void
rcpt_result(struct so_tx *tx, struct so_conn *c, struct so_rcpt *rc,
    size_t *naccept)
{
	rc->retry = 0;
	if (tx->rep.code / 100 == 2) {
		rc->accepted = 1;
		(*naccept)++;
	} else if (tx->rep.code == 452 || strcmp(tx->rep.enh, "4.5.3") == 0) {
		/* Kept for the deferral if no later transaction takes it. */
		rcpt_set_reply(rc, &tx->rep, c->relay);
		rc->status[0] = '\0';
		rc->retry = 2;
	} else
		rcpt_set_reply(rc, &tx->rep, c->relay);
}

/* MAIL, RCPTs and DATA; with PIPELINING as one group (RFC 2920 3.1). */
static int
envelope(struct so_tx *tx, struct so_conn *c, struct so_reply *mail,
    size_t *naccept)
{
	struct so_job *job = tx->job;
	int pipe = (c->caps.flags & SO_CAP_PIPELINING) != 0;
	int r;

	buf_reset(&tx->out);
	mail_command(tx, c, &tx->out);
	if (!pipe) {
		if ((r = command(c, mail, tx->out.data, "MAIL FROM",
		    tx->s->mail_timeout)) < 0)
			return r;
		if (mail->code / 100 != 2)
			return 0;
	}
	for (size_t i = 0; i < job->nrcpt; i++) {
		struct so_rcpt *rc = &job->rcpts[i];

		if (rc->status[0] != '\0' || rc->retry != 1)
			continue;
		if (!pipe) {
			buf_reset(&tx->out);
			rcpt_command(tx, c, rc, &tx->out);
			if ((r = command(c, &tx->rep, tx->out.data,
			    "RCPT TO", tx->s->rcpt_timeout)) < 0)
				return r;
			rcpt_result(tx, c, rc, naccept);
		} else
			rcpt_command(tx, c, rc, &tx->out);
	}
	if (!pipe) {
		if (*naccept == 0)
			return 0;
		return command(c, &tx->rep, "DATA\r\n", "DATA",
		    tx->s->data_init_timeout);
	}
	buf_puts(&tx->out, "DATA\r\n");
	if ((r = so_conn_write(c, tx->out.data, tx->out.len,
	    deadline(tx->s->mail_timeout))) < 0 ||
	    (r = so_conn_reply(c, mail, "MAIL FROM",
	    deadline(tx->s->mail_timeout))) < 0)
		return r;
	for (size_t i = 0; i < job->nrcpt; i++) {
		struct so_rcpt *rc = &job->rcpts[i];

		if (rc->status[0] != '\0' || rc->retry != 1)
			continue;
		if ((r = so_conn_reply(c, &tx->rep, "RCPT TO",
		    deadline(tx->s->rcpt_timeout))) < 0)
			return r;
		if (mail->code / 100 == 2)
			rcpt_result(tx, c, rc, naccept);
	}
	if ((r = so_conn_reply(c, &tx->rep, "DATA",
	    deadline(tx->s->data_init_timeout))) < 0)
		return r;
	if (tx->rep.code == 354 && (mail->code / 100 != 2 || *naccept == 0)) {
		/* Nothing to send, yet the server waits for data. */
		if ((r = so_conn_write(c, ".\r\n", 3,
		    deadline(tx->s->data_timeout))) < 0 ||
		    (r = so_conn_reply(c, &tx->rep, "end of data",
		    deadline(tx->s->data_done_timeout))) < 0)
			return r;
	}
	return 0;
}

/*
 * One transaction for the recipients marked retry == 1. Returns 0 when
 * the connection is still in step with the server, -errno when it is not
 * (c->err says why). *progress: whether any recipient was decided.
 */
static int
transaction(struct so_tx *tx, struct so_conn *c, int *progress)
{
	struct so_job *job = tx->job;
	struct so_reply mail;
	size_t naccept = 0, before = open_count(job);
	int r;

	so_reply_init(&mail);
	c->usable = 0;
	if ((r = envelope(tx, c, &mail, &naccept)) < 0)
		goto out;
	if (mail.code / 100 != 2) {
		for (size_t i = 0; i < job->nrcpt; i++)
			if (job->rcpts[i].status[0] == '\0' &&
			    job->rcpts[i].retry == 1)
				rcpt_set_reply(&job->rcpts[i], &mail,
				    c->relay);
	} else if (naccept > 0 && tx->rep.code != 354) {
		for (size_t i = 0; i < job->nrcpt; i++)
			if (job->rcpts[i].accepted)
				rcpt_set_reply(&job->rcpts[i], &tx->rep,
				    c->relay);
	} else if (naccept > 0) {
		if ((r = send_body(tx, c)) < 0 ||
		    (r = so_conn_reply(c, &tx->rep, "end of data",
		    deadline(tx->s->data_done_timeout))) < 0)
			goto out;
		for (size_t i = 0; i < job->nrcpt; i++)
			if (job->rcpts[i].accepted)
				rcpt_set_reply(&job->rcpts[i], &tx->rep,
				    c->relay);
		c->usable = 1;
		c->uses++;
		goto out;
	}
	/* The transaction did not complete: clear it (RFC 5321 4.1.1.5). */
	if ((r = command(c, &tx->rep, "RSET\r\n", "RSET",
	    tx->s->helo_timeout)) == 0 && tx->rep.code / 100 == 2)
		c->usable = 1;
	r = 0;
out:
	so_reply_release(&mail);
	*progress = open_count(job) < before;
	for (size_t i = 0; i < job->nrcpt; i++) {
		job->rcpts[i].accepted = 0;
		/* A broken connection leaves its recipients open. */
		if (r < 0 || job->rcpts[i].retry == 1)
			job->rcpts[i].retry = 0;
	}
	return r;
}

/* Recipients needing SMTPUTF8 or too big for the server: decided here. */
static int
policy_check(struct so_tx *tx, struct so_conn *c)
{
	char text[800];

	if (tx->needs_utf8 && !(c->caps.flags & SO_CAP_SMTPUTF8)) {
		snprintf(text, sizeof(text), "host %s does not support "
		    "SMTPUTF8, which the message needs", c->relay);
		decide_open(tx, "5.6.7", text, c->relay);
		return 1;
	}
	if ((c->caps.flags & SO_CAP_SIZE) && c->caps.size > 0 &&
	    tx->env->msg_size > c->caps.size) {
		snprintf(text, sizeof(text), "message size %llu exceeds the "
		    "limit %llu of host %s",
		    (unsigned long long)tx->env->msg_size,
		    (unsigned long long)c->caps.size, c->relay);
		decide_open(tx, "5.3.4", text, c->relay);
		return 1;
	}
	return 0;
}

/* Deliver the open recipients over c; whether c may be reused. */
static int
deliver_on(struct so_tx *tx, struct so_conn *c, char *err, size_t errsize)
{
	int progress = 0;

	if (policy_check(tx, c))
		return c->usable;
	for (int round = 0; round < SO_MAX_ROUNDS; round++) {
		size_t want = 0;

		for (size_t i = 0; i < tx->job->nrcpt; i++) {
			struct so_rcpt *rc = &tx->job->rcpts[i];

			if (rc->status[0] == '\0' && (round == 0 ||
			    rc->retry == 2)) {
				rc->retry = 1;
				want++;
			}
		}
		if (want == 0)
			break;
		if (transaction(tx, c, &progress) < 0) {
			snprintf(err, errsize, "%s", c->err);
			log_info("%s: %s", tx->job->queue_id, err);
			return 0;
		}
		if (!progress) {
			/* Every recipient got 452: defer them (4.5.3). */
			for (size_t i = 0; i < tx->job->nrcpt; i++) {
				struct so_rcpt *rc = &tx->job->rcpts[i];

				if (rc->status[0] == '\0' && rc->retry == 2)
					snprintf(rc->status,
					    sizeof(rc->status), "4.5.3");
			}
			break;
		}
	}
	return c->usable;
}

static void
tx_init(struct so_tx *tx, struct so_job *job)
{
	memset(tx, 0, sizeof(*tx));
	tx->job = job;
	tx->s = job->setup;
	so_reply_init(&tx->rep);
	buf_init(&tx->out, 0);
}

void
so_deliver_job(struct so_job *job)
{
	struct so_tx tx;
	const char *errstr;
	char err[1100] = "no host to deliver to";
	const char **addrs;
	int r;

	tx_init(&tx, job);
	if ((r = queue_file_fdopen(job->fd, 0, &tx.qf, &errstr)) < 0) {
		snprintf(err, sizeof(err), "cannot read the queue file: %s",
		    errstr);
		decide_open(&tx, "4.3.0", err, NULL);
		goto done;
	}
	job->fd = -1;
	tx.env = queue_file_env(tx.qf);
	if (strpbrk(tx.env->sender, "\r\n") != NULL) {
		/* It would end the MAIL command: never put it on the wire. */
		decide_open(&tx, "5.1.7", "bad sender address syntax", NULL);
		goto done;
	}
	addrs = xcalloc(job->nrcpt + 1, sizeof(*addrs));
	for (size_t i = 0; i < job->nrcpt; i++)
		addrs[i] = job->rcpts[i].address;
	tx.needs_utf8 = tx.env->smtputf8 ||
	    so_needs_utf8(tx.env->sender, addrs, job->nrcpt);
	free(addrs);
	for (size_t h = 0; h < job->nhosts && open_count(job) > 0; h++) {
		struct so_conn *c = NULL;
		int reuse;

		if (h == 0 && (c = so_cache_take(job->nexthop)) != NULL) {
			/* A cached connection must still answer RSET. */
			if (command(c, &tx.rep, "RSET\r\n", "RSET",
			    tx.s->helo_timeout) < 0 || tx.rep.code != 250)
				so_conn_free(&c);
			else
				log_info("%s: reusing connection to %s "
				    "(use %u)", job->queue_id, c->relay,
				    c->uses + 1);
		}
		if (c == NULL && session_open(&tx, &job->hosts[h], 0, &c, err,
		    sizeof(err)) < 0) {
			/*
			 * Opportunistic TLS (RFC 7435): a server whose TLS is
			 * broken still gets the mail, in plain text.
			 */
			if (!tx.tls_failed ||
			    job->hosts[h].tls_level != SO_TLS_MAY)
				continue;
			log_info("%s: retrying %s without TLS", job->queue_id,
			    job->hosts[h].name);
			if (session_open(&tx, &job->hosts[h], 1, &c, err,
			    sizeof(err)) < 0)
				continue;
		}
		reuse = deliver_on(&tx, c, err, sizeof(err));
		if (reuse)
			so_cache_put(&c, job->nexthop, tx.s->cache_time);
		else
			so_conn_quit(&c);
	}
	decide_open(&tx, "4.4.1", err, NULL);
done:
	queue_file_free(&tx.qf);
	so_reply_release(&tx.rep);
	buf_release(&tx.out);
}
