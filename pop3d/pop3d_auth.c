/*
 * pop3d_auth.c - the AUTHORIZATION state: USER/PASS (RFC 1939 7) and AUTH
 * PLAIN and LOGIN (RFC 5034, RFC 4616) against the user tables. crypt(3)
 * and opening the maildrop run on the thread pool; failures are delayed
 * and counted per client address, and an unknown user costs the same hash
 * as a known one. Answers carry RFC 2449/3206 response codes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "base64.h"
#include "log.h"
#include "pop3d.h"
#include "resolve.h"
#include "stream.h"
#include "xalloc.h"

enum { MECH_PLAIN = 1, MECH_LOGIN = 2 };

void
pop3d_auth_cleanup(struct pop3d_session *s)
{
	free(s->login);
	if (s->pass != NULL) {
		explicit_bzero(s->pass, strlen(s->pass));
		free(s->pass);
	}
	free(s->hash);
	free(s->mailbox);
	s->login = s->pass = s->hash = s->mailbox = NULL;
	s->sasl_mech = 0;
}

static void
sasl_abort(struct pop3d_session *s, const char *reply)
{
	pop3d_auth_cleanup(s);
	s->state = POP3D_AUTHORIZATION;
	pop3d_reply_error(s, "%s", reply);
}

/* On the thread pool: the password, then the maildrop and its lock. */
static void
login_work(uv_work_t *w)
{
	struct pop3d_session *s = w->data;

	s->work_err[0] = '\0';
	s->work_result = auth_check_password(s->hash, s->pass);
	if (s->work_result != 0 || s->unknown) {
		s->work_result = -EACCES;
		return;
	}
	s->work_result = pop3d_maildrop_open(s, s->work_err,
	    sizeof(s->work_err));
	/* Not to be taken for a wrong password. */
	if (s->work_result == -EACCES)
		s->work_result = -EPERM;
}

static void
delay_done(uv_timer_t *t)
{
	struct pop3d_session *s = t->data;

	uv_timer_stop(t);
	if (s->stream != NULL)
		pop3d_reply_error(s, "-ERR [AUTH] authentication failed");
	pop3d_resume(s);
}

static void
login_failed(struct pop3d_session *s)
{
	log_info("%s: authentication failed for %s from [%s] method=%s",
	    s->id, s->login, s->addr, s->method);
	pop3d_auth_cleanup(s);
	unsigned delay = auth_throttle_fail(s->srv->throttle, s->addr);
	if (delay == 0) {
		pop3d_reply_error(s, "-ERR [AUTH] authentication failed");
		pop3d_resume(s);
		return;
	}
	if (s->delay_timer == NULL) {
		s->delay_timer = xcalloc(1, sizeof(*s->delay_timer));
		uv_timer_init(s->srv->loop, s->delay_timer);
		s->delay_timer->data = s;
	}
	/* Still busy: nothing is read until the delay is over. */
	uv_timer_start(s->delay_timer, delay_done, delay, 0);
}

static void
login_done(uv_work_t *w, int status)
{
	struct pop3d_session *s = w->data;
	int r = status < 0 ? -ECANCELED : s->work_result;

	s->state = POP3D_AUTHORIZATION;
	if (s->stream == NULL) {
		pop3d_maildrop_close(s);
		pop3d_auth_cleanup(s);
		pop3d_resume(s);	/* frees the session */
		return;
	}
	if (r == -EACCES)
		return login_failed(s);
	if (r == -EBUSY) {
		log_info("%s: maildrop of %s in use, login from [%s] refused",
		    s->id, s->login, s->addr);
		pop3d_auth_cleanup(s);
		pop3d_reply_error(s, "-ERR [IN-USE] maildrop in use by another "
				     "session");
		pop3d_resume(s);
		return;
	}
	if (r == -EAGAIN) {
		log_info("%s: login of %s from [%s] refused: login delay",
		    s->id, s->login, s->addr);
		pop3d_auth_cleanup(s);
		pop3d_reply_error(s, "-ERR [LOGIN-DELAY] minimum time between "
				     "logins not yet passed");
		pop3d_resume(s);
		return;
	}
	if (r < 0) {
		log_warn("%s: cannot open the maildrop of %s: %s", s->id,
		    s->login, s->work_err[0] ? s->work_err : strerror(-r));
		pop3d_auth_cleanup(s);
		/* RFC 3206 4: permissions need the administrator; anything
		 * else may pass. */
		if (r == -EPERM)
			pop3d_reply_error(s, "-ERR [SYS/PERM] mailbox not "
					     "accessible, contact the "
					     "administrator");
		else
			pop3d_reply_error(s, "-ERR [SYS/TEMP] cannot open "
					     "maildrop, try again later");
		pop3d_resume(s);
		return;
	}
	uint64_t size = 0;
	for (size_t i = 0; i < s->nmsgs; i++)
		size += s->msgs[i].vsize;
	s->login_user = s->login;
	s->login = NULL;
	log_info("%s: login user=%s client=[%s] method=%s tls=%s "
		 "messages=%zu size=%llu", s->id, s->login_user, s->addr,
	    s->method, s->tls ? "yes" : "no", s->nmsgs,
	    (unsigned long long)size);
	pop3d_auth_cleanup(s);
	s->state = POP3D_TRANSACTION;
	pop3d_reply(s, "+OK maildrop has %zu messages (%llu octets)",
	    s->nmsgs, (unsigned long long)size);
	pop3d_resume(s);
}

/*
 * Look the user up and check the password on the thread pool. An unknown
 * user is checked against a dummy hash made at start-up, so the answer
 * takes as long as for a known one (no user enumeration by timing).
 */
void
pop3d_auth_pass(struct pop3d_session *s, const char *user,
    const char *pass, const char *method)
{
	struct auth_user *u = NULL;
	const char *err = NULL;
	char *value = NULL;

	if (auth_throttle_blocked(s->srv->throttle, s->addr)) {
		log_warn("%s: too many failed logins from [%s]", s->id,
		    s->addr);
		s->state = POP3D_AUTHORIZATION;
		pop3d_auth_cleanup(s);
		pop3d_reply_error(s, "-ERR [AUTH] too many failed logins, "
				     "try again later");
		return;
	}
	pop3d_auth_cleanup(s);
	s->method = method;
	s->login = xstrdup(user);
	s->pass = xstrdup(pass);
	s->unknown = 0;
	s->login_delay = s->srv->cfg.login_delay;
	if (resolve_user(s->srv->resolve, user, &value) == 0 &&
	    auth_user_parse(user, value, &u, &err) == 0) {
		s->hash = xstrdup(u->hash);
		s->mailbox = xasprintf("%s/%s", s->srv->cfg.mail_directory,
		    u->mailbox);
		auth_user_free(&u);
	} else {
		s->hash = xstrdup(s->srv->dummy_hash);
		s->unknown = 1;
	}
	free(value);
	s->work.data = s;
	pop3d_pause(s);
	uv_queue_work(s->srv->loop, &s->work, login_work, login_done);
}

/* RFC 4616 2: [authzid] NUL authcid NUL passwd. */
static void
plain_response(struct pop3d_session *s, const char *b64)
{
	char *data = NULL;
	size_t len;

	if (strcmp(b64, "=") == 0)
		b64 = "";
	if (base64_decode(b64, &data, &len) < 0)
		return sasl_abort(s, "-ERR cannot decode response");
	char *authcid = memchr(data, '\0', len);
	char *pass = authcid ? memchr(authcid + 1, '\0',
	    len - (size_t)(authcid + 1 - data)) : NULL;
	if (pass == NULL || memchr(pass + 1, '\0',
	    len - (size_t)(pass + 1 - data)) != NULL) {
		explicit_bzero(data, len);
		free(data);
		return sasl_abort(s, "-ERR invalid PLAIN response");
	}
	authcid++;
	pass++;
	/* Acting for another user (authzid) is not offered. */
	if (data[0] != '\0' && strcasecmp(data, authcid) != 0) {
		explicit_bzero(data, len);
		free(data);
		return sasl_abort(s, "-ERR [AUTH] authentication failed");
	}
	pop3d_auth_pass(s, authcid, pass, "PLAIN");
	explicit_bzero(data, len);
	free(data);
}

static void
login_response(struct pop3d_session *s, const char *b64)
{
	char *data = NULL;
	size_t len;

	if (base64_decode(b64, &data, &len) < 0)
		return sasl_abort(s, "-ERR cannot decode response");
	if (memchr(data, '\0', len) != NULL) {
		explicit_bzero(data, len);
		free(data);
		return sasl_abort(s, "-ERR invalid LOGIN response");
	}
	if (s->login == NULL) {
		s->login = data;
		/* "Password:" */
		pop3d_reply(s, "+ UGFzc3dvcmQ6");
		return;
	}
	char *user = s->login;
	s->login = NULL;
	pop3d_auth_pass(s, user, data, "LOGIN");
	free(user);
	explicit_bzero(data, len);
	free(data);
}

void
pop3d_auth_line(struct pop3d_session *s, char *line)
{
	/* RFC 5034 4: "*" cancels the exchange. */
	if (strcmp(line, "*") == 0)
		return sasl_abort(s, "-ERR authentication cancelled");
	if (s->sasl_mech == MECH_PLAIN)
		plain_response(s, line);
	else
		login_response(s, line);
}

void
pop3d_auth_start(struct pop3d_session *s, char *args)
{
	char *mech = args, *initial = NULL;
	size_t n = strcspn(args, " ");

	if (args[n] != '\0') {
		args[n] = '\0';
		initial = args + n + 1;
	}
	free(s->user);
	s->user = NULL;
	pop3d_auth_cleanup(s);
	if (strcasecmp(mech, "PLAIN") == 0)
		s->sasl_mech = MECH_PLAIN;
	else if (strcasecmp(mech, "LOGIN") == 0)
		s->sasl_mech = MECH_LOGIN;
	else {
		pop3d_reply_error(s, "-ERR unsupported authentication "
				     "mechanism");
		return;
	}
	s->state = POP3D_SASL;
	/* RFC 5034 4: an initial response; "=" is an empty one. */
	if (initial != NULL && *initial != '\0') {
		pop3d_auth_line(s, initial);
		return;
	}
	/* "Username:" for LOGIN; an empty challenge for PLAIN. */
	pop3d_reply(s, s->sasl_mech == MECH_PLAIN ? "+ " :
	    "+ VXNlcm5hbWU6");
}
