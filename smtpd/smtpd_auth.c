/*
 * smtpd_auth.c - SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN
 * mechanisms, against the user tables. Not before TLS unless the client is
 * on loopback or smtpd_plaintext_auth allows it (538 5.7.11). crypt(3) runs
 * on the thread pool; failures are delayed and counted per client address,
 * and an unknown user costs the same hash as a known one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "base64.h"
#include "log.h"
#include "resolve.h"
#include "smtpd.h"
#include "stream.h"
#include "xalloc.h"

enum { MECH_PLAIN = 1, MECH_LOGIN = 2 };

int
smtpd_auth_allowed(const struct smtpd_session *s)
{
	const struct smtpd_config *cfg = &s->srv->cfg;

	if (cfg->tls_level == TLS_LEVEL_ENCRYPT && !s->tls)
		return 0;	/* the gate would say 530: do not offer it */
	return cfg->sasl_enable && s->auth_user == NULL && !s->is_unix &&
	    (s->tls || s->loopback || cfg->plaintext_auth);
}

void
smtpd_auth_cleanup(struct smtpd_session *s)
{
	free(s->auth_login);
	if (s->auth_pass != NULL) {
		explicit_bzero(s->auth_pass, strlen(s->auth_pass));
		free(s->auth_pass);
	}
	free(s->auth_hash);
	s->auth_login = s->auth_pass = s->auth_hash = NULL;
	s->auth_mech = 0;
}

static void
auth_abort(struct smtpd_session *s, const char *reply)
{
	smtpd_auth_cleanup(s);
	s->state = SMTPD_READY;
	smtpd_reply_error(s, "%s", reply);
}

static void
check_work(uv_work_t *w)
{
	struct smtpd_session *s = w->data;

	s->work_result = auth_check_password(s->auth_hash, s->auth_pass);
}

static void
delay_done(uv_timer_t *t)
{
	struct smtpd_session *s = t->data;

	uv_timer_stop(t);
	if (s->stream != NULL)
		smtpd_reply_error(s, "535 5.7.8 Authentication credentials "
				     "invalid");
	smtpd_resume(s);
}

static void
check_done(uv_work_t *w, int status)
{
	struct smtpd_session *s = w->data;
	int ok = status == 0 && s->work_result == 0 && !s->auth_unknown;

	s->state = SMTPD_READY;
	if (s->stream == NULL) {
		smtpd_auth_cleanup(s);
		smtpd_resume(s);	/* frees the session */
		return;
	}
	if (ok) {
		s->auth_user = xstrdup(s->auth_login);
		log_info("%s: %s authenticated as %s", s->id,
		    smtpd_client_text(s), s->auth_user);
		smtpd_auth_cleanup(s);
		smtpd_reply(s, "235 2.7.0 Authentication successful");
		smtpd_resume(s);
		return;
	}
	log_info("%s: authentication failed for %s from %s", s->id,
	    s->auth_login, smtpd_client_text(s));
	smtpd_auth_cleanup(s);
	unsigned delay = auth_throttle_fail(s->srv->throttle, s->addr);
	if (delay == 0) {
		smtpd_reply_error(s, "535 5.7.8 Authentication credentials "
				     "invalid");
		smtpd_resume(s);
		return;
	}
	if (s->delay_timer == NULL) {
		s->delay_timer = xcalloc(1, sizeof(*s->delay_timer));
		uv_timer_init(s->srv->loop, s->delay_timer);
		s->delay_timer->data = s;
	}
	uv_timer_start(s->delay_timer, delay_done, delay, 0);
}

/* Look the user up and check the password on the thread pool. An unknown
 * user is checked against a dummy hash made at start-up, so the answer
 * takes as long as for a known one (no user enumeration by timing). */
static void
verify(struct smtpd_session *s, const char *user, const char *pass)
{
	char *value = NULL;
	struct auth_user *u = NULL;
	const char *err = NULL;

	s->auth_login = xstrdup(user);
	s->auth_pass = xstrdup(pass);
	s->auth_unknown = 0;
	if (resolve_user(s->srv->resolve, user, &value) == 0 &&
	    auth_user_parse(user, value, &u, &err) == 0) {
		s->auth_hash = xstrdup(u->hash);
		auth_user_free(&u);
	} else {
		s->auth_hash = xstrdup(s->srv->dummy_hash);
		s->auth_unknown = 1;
	}
	free(value);
	s->work.data = s;
	smtpd_pause(s);
	uv_queue_work(s->srv->loop, &s->work, check_work, check_done);
}

/* RFC 4616 2: [authzid] NUL authcid NUL passwd. */
static void
plain_response(struct smtpd_session *s, const char *b64)
{
	char *data = NULL;
	size_t len;

	if (strcmp(b64, "=") == 0)
		b64 = "";
	if (base64_decode(b64, &data, &len) < 0)
		return auth_abort(s, "501 5.5.2 Cannot decode response");
	char *authcid = memchr(data, '\0', len);
	char *pass = authcid ? memchr(authcid + 1, '\0',
	    len - (size_t)(authcid + 1 - data)) : NULL;
	if (pass == NULL || memchr(pass + 1, '\0',
	    len - (size_t)(pass + 1 - data)) != NULL) {
		explicit_bzero(data, len);
		free(data);
		return auth_abort(s, "501 5.5.2 Invalid PLAIN response");
	}
	authcid++;
	pass++;
	/* Acting for another user (authzid) is not offered. */
	if (data[0] != '\0' && strcasecmp(data, authcid) != 0) {
		explicit_bzero(data, len);
		free(data);
		return auth_abort(s, "535 5.7.8 Authentication credentials "
				     "invalid");
	}
	verify(s, authcid, pass);
	explicit_bzero(data, len);
	free(data);
}

static void
login_response(struct smtpd_session *s, const char *b64)
{
	char *data = NULL;
	size_t len;

	if (base64_decode(b64, &data, &len) < 0)
		return auth_abort(s, "501 5.5.2 Cannot decode response");
	if (memchr(data, '\0', len) != NULL) {
		free(data);
		return auth_abort(s, "501 5.5.2 Invalid LOGIN response");
	}
	if (s->auth_login == NULL) {
		s->auth_login = data;
		/* "Password:" */
		smtpd_reply(s, "334 UGFzc3dvcmQ6");
		return;
	}
	char *user = s->auth_login;
	s->auth_login = NULL;
	verify(s, user, data);
	free(user);
	explicit_bzero(data, len);
	free(data);
}

void
smtpd_auth_line(struct smtpd_session *s, char *line)
{
	/* RFC 4954 4: "*" cancels the exchange. */
	if (strcmp(line, "*") == 0)
		return auth_abort(s, "501 5.7.0 Authentication aborted");
	if (s->auth_mech == MECH_PLAIN)
		plain_response(s, line);
	else
		login_response(s, line);
}

void
smtpd_auth_start(struct smtpd_session *s, char *args)
{
	const struct smtpd_config *cfg = &s->srv->cfg;
	char *mech = args, *initial = NULL;
	size_t n = strcspn(args, " ");

	if (args[n] != '\0') {
		args[n] = '\0';
		initial = args + n + 1;
	}
	if (!cfg->sasl_enable || s->is_unix) {
		smtpd_reply_error(s, "503 5.5.1 Error: authentication not "
				     "enabled");
		return;
	}
	if (s->auth_user != NULL) {
		smtpd_reply_error(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (!s->tls && !s->loopback && !cfg->plaintext_auth) {
		smtpd_reply_error(s, "538 5.7.11 Encryption required for "
				     "requested authentication mechanism");
		return;
	}
	if (auth_throttle_blocked(s->srv->throttle, s->addr)) {
		log_warn("%s: too many failed logins from %s", s->id,
		    smtpd_client_text(s));
		smtpd_reply_error(s, "454 4.7.0 Too many failed "
				     "authentications, try again later");
		return;
	}
	if (*mech == '\0') {
		smtpd_reply_error(s, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	if (strcasecmp(mech, "PLAIN") == 0)
		s->auth_mech = MECH_PLAIN;
	else if (strcasecmp(mech, "LOGIN") == 0)
		s->auth_mech = MECH_LOGIN;
	else {
		smtpd_reply_error(s, "504 5.5.4 Unsupported authentication "
				     "mechanism");
		return;
	}
	s->state = SMTPD_AUTH;
	if (initial != NULL && *initial != '\0') {
		smtpd_auth_line(s, initial);
		return;
	}
	/* "Username:" for LOGIN; an empty challenge for PLAIN. */
	smtpd_reply(s, s->auth_mech == MECH_PLAIN ? "334 " :
	    "334 VXNlcm5hbWU6");
}
