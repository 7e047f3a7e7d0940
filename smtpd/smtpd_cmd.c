/*
 * smtpd_cmd.c - SMTP commands (RFC 5321 4.1.1, 4.1.4; RFC 1869/5321 EHLO,
 * RFC 2920 PIPELINING, RFC 3207 STARTTLS, RFC 3030 CHUNKING, RFC 3461 DSN,
 * RFC 6531 SMTPUTF8, RFC 2034/3463 enhanced codes). One table; one gate
 * checks command order, TLS and authentication before any handler runs,
 * so handlers never repeat those checks. Relay control (no open relay,
 * ever) and recipient validation happen at RCPT.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "log.h"
#include "queue.h"
#include "resolve.h"
#include "smtpd.h"
#include "stream.h"
#include "xalloc.h"

#define ST(x) (1u << (x))
#define ST_ANY (ST(SMTPD_INIT) | ST(SMTPD_READY) | ST(SMTPD_MAIL) | \
		ST(SMTPD_RCPT))

/* Gate flags. */
#define CMD_NEED_HELO	0x01	/* HELO/EHLO first */
#define CMD_NEED_TLS	0x02	/* TLS first when smtpd_tls_security_level=encrypt */
#define CMD_NEED_AUTH	0x04	/* AUTH first when smtpd_auth_required */

struct smtpd_cmd {
	const char *name;
	void (*handler)(struct smtpd_session *s, char *args);
	unsigned states;	/* ST() bits in which it is allowed */
	unsigned flags;
	const char *bad_state;	/* the reply otherwise */
};

static void cmd_helo(struct smtpd_session *s, char *args);
static void cmd_ehlo(struct smtpd_session *s, char *args);
static void cmd_mail(struct smtpd_session *s, char *args);
static void cmd_rcpt(struct smtpd_session *s, char *args);
static void cmd_data(struct smtpd_session *s, char *args);
static void cmd_bdat(struct smtpd_session *s, char *args);
static void cmd_rset(struct smtpd_session *s, char *args);
static void cmd_noop(struct smtpd_session *s, char *args);
static void cmd_quit(struct smtpd_session *s, char *args);
static void cmd_help(struct smtpd_session *s, char *args);
static void cmd_vrfy(struct smtpd_session *s, char *args);
static void cmd_starttls(struct smtpd_session *s, char *args);
static void cmd_auth(struct smtpd_session *s, char *args);

static const struct smtpd_cmd commands[] = {
	{"HELO", cmd_helo, ST_ANY, 0, NULL},
	{"EHLO", cmd_ehlo, ST_ANY, 0, NULL},
	{"MAIL", cmd_mail, ST(SMTPD_READY),
	    CMD_NEED_HELO | CMD_NEED_TLS | CMD_NEED_AUTH,
	    "503 5.5.1 Error: nested MAIL command"},
	{"RCPT", cmd_rcpt, ST(SMTPD_MAIL) | ST(SMTPD_RCPT),
	    CMD_NEED_HELO | CMD_NEED_TLS | CMD_NEED_AUTH,
	    "503 5.5.1 Error: need MAIL command"},
	{"DATA", cmd_data, ST(SMTPD_RCPT),
	    CMD_NEED_HELO | CMD_NEED_TLS | CMD_NEED_AUTH, NULL},
	/* BDAT must read its chunk whatever the state: no gate here. */
	{"BDAT", cmd_bdat, ST_ANY, 0, NULL},
	{"RSET", cmd_rset, ST_ANY, 0, NULL},
	{"NOOP", cmd_noop, ST_ANY, 0, NULL},
	{"QUIT", cmd_quit, ST_ANY, 0, NULL},
	{"HELP", cmd_help, ST_ANY, 0, NULL},
	{"VRFY", cmd_vrfy, ST_ANY, 0, NULL},
	{"STARTTLS", cmd_starttls, ST(SMTPD_INIT) | ST(SMTPD_READY),
	    CMD_NEED_HELO,
	    "503 5.5.1 Error: STARTTLS not allowed in a mail transaction"},
	{"AUTH", cmd_auth, ST(SMTPD_READY), CMD_NEED_HELO | CMD_NEED_TLS,
	    "503 5.5.1 Error: AUTH not allowed in a mail transaction"},
	{NULL, NULL, 0, 0, NULL},
};

static int
gate(struct smtpd_session *s, const struct smtpd_cmd *cmd)
{
	const struct smtpd_config *cfg = &s->srv->cfg;

	if ((cmd->flags & CMD_NEED_HELO) && s->state == SMTPD_INIT) {
		smtpd_reply_error(s, "503 5.5.1 Error: send HELO/EHLO first");
		return 0;
	}
	if ((cmd->flags & CMD_NEED_TLS) && cfg->tls_level ==
	    TLS_LEVEL_ENCRYPT && !s->tls && !s->is_unix) {
		smtpd_reply_error(s, "530 5.7.0 Must issue a STARTTLS "
				     "command first");
		return 0;
	}
	if ((cmd->flags & CMD_NEED_AUTH) && cfg->auth_required &&
	    s->auth_user == NULL && !s->is_unix) {
		smtpd_reply_error(s, "530 5.7.0 Authentication required");
		return 0;
	}
	if (!(cmd->states & ST(s->state))) {
		smtpd_reply_error(s, "%s", cmd->bad_state ? cmd->bad_state :
		    "503 5.5.1 Error: bad sequence of commands");
		return 0;
	}
	return 1;
}

void
smtpd_cmd_line(struct smtpd_session *s, char *line, size_t len)
{
	size_t n = strcspn(line, " ");
	char *args = line + n;

	(void)len;
	while (*args == ' ')
		args++;
	/* An HTTP request is someone else's protocol: hang up (as
	 * Postfix does), so a browser form cannot drive SMTP. */
	if (s->state == SMTPD_INIT && (strncmp(line, "GET ", 4) == 0 ||
	    strncmp(line, "POST ", 5) == 0 ||
	    strncmp(line, "CONNECT ", 8) == 0)) {
		smtpd_reject(s, "521 5.5.1 Protocol error");
		smtpd_close_after_reply(s);
		return;
	}
	for (const struct smtpd_cmd *c = commands; c->name != NULL; c++) {
		if (strlen(c->name) == n && strncasecmp(line, c->name, n) ==
		    0) {
			if (gate(s, c))
				c->handler(s, args);
			return;
		}
	}
	smtpd_reply_error(s, "502 5.5.2 Error: command not recognized");
}

/* RFC 5321 4.1.1.1: a domain or an address literal; we only check that
 * it is one printable word, as Postfix does by default. */
static int
helo_ok(const char *arg)
{
	if (*arg == '\0' || strlen(arg) > 255)
		return 0;
	for (const char *p = arg; *p != '\0'; p++)
		if (!isgraph((unsigned char)*p) && !((unsigned char)*p & 0x80))
			return 0;
	return 1;
}

/* 1 when the greeting was accepted, 0 when refused (replied). */
static int
hello(struct smtpd_session *s, char *args, int esmtp)
{
	size_t n = strcspn(args, " ");

	args[n] = '\0';
	if (!helo_ok(args)) {
		smtpd_reply_error(s, "501 5.5.4 Syntax: %s hostname",
		    esmtp ? "EHLO" : "HELO");
		return 0;
	}
	smtpd_transaction_reset(s);
	free(s->helo);
	s->helo = xstrdup(args);
	s->esmtp = esmtp;
	s->state = SMTPD_READY;
	return 1;
}

static void
cmd_helo(struct smtpd_session *s, char *args)
{
	if (hello(s, args, 0))
		smtpd_reply(s, "250 %s", s->srv->cfg.hostname);
}

static int
tls_offered(const struct smtpd_session *s)
{
	return s->srv->tls != NULL && !s->tls && !s->is_unix &&
	    s->srv->cfg.tls_level != TLS_LEVEL_NONE;
}

static void
cmd_ehlo(struct smtpd_session *s, char *args)
{
	const struct smtpd_config *cfg = &s->srv->cfg;

	if (!hello(s, args, 1))
		return;
	smtpd_reply(s, "250-%s", cfg->hostname);
	smtpd_reply(s, "250-PIPELINING");
	smtpd_reply(s, "250-SIZE %llu", (unsigned long long)cfg->size_limit);
	if (cfg->vrfy_enable)
		smtpd_reply(s, "250-VRFY");
	if (tls_offered(s))
		smtpd_reply(s, "250-STARTTLS");
	if (smtpd_auth_allowed(s))
		smtpd_reply(s, "250-AUTH PLAIN LOGIN");
	smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
	smtpd_reply(s, "250-8BITMIME");
	smtpd_reply(s, "250-DSN");
	smtpd_reply(s, "250-SMTPUTF8");
	smtpd_reply(s, "250 CHUNKING");
}

/* "FROM:" or "TO:" then optional spaces, case-insensitive. */
static char *
skip_keyword(char *args, const char *kw)
{
	size_t n = strlen(kw);

	if (strncasecmp(args, kw, n) != 0)
		return NULL;
	args += n;
	while (*args == ' ')
		args++;
	return args;
}

/* Whether the authenticated user may use sender (RFC 6409 6.1). */
static int
sender_owned(struct smtpd_session *s, const char *sender)
{
	char *owners = NULL;
	int ok = 0;

	if (!s->srv->cfg.sender_login_check || sender[0] == '\0' ||
	    strcasecmp(sender, s->auth_user) == 0)
		return 1;
	if (resolve_lookup(s->srv->resolve, "smtpd_sender_login_maps",
	    sender, &owners) < 0) {
		/* Also try the whole domain: "@example.test  alice@...". */
		const char *at = strrchr(sender, '@');
		if (at == NULL || resolve_lookup(s->srv->resolve,
		    "smtpd_sender_login_maps", at, &owners) < 0)
			return 0;
	}
	for (char *save = NULL, *w = strtok_r(owners, ", \t", &save);
	     w != NULL; w = strtok_r(NULL, ", \t", &save))
		if (strcasecmp(w, s->auth_user) == 0)
			ok = 1;
	free(owners);
	return ok;
}

static void
cmd_mail(struct smtpd_session *s, char *args)
{
	const struct smtpd_config *cfg = &s->srv->cfg;
	struct address *a = NULL;
	const char *err = NULL, *reply = NULL;
	size_t end;
	char *p = skip_keyword(args, "FROM:");

	if (p == NULL || *p != '<') {
		smtpd_reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (address_parse_path(p, strlen(p), ADDRESS_ALLOW_NULL |
	    ADDRESS_SMTPUTF8, &a, &end, &err) < 0) {
		smtpd_reply_error(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (p[end] != '\0' && p[end] != ' ') {
		address_free(&a);
		smtpd_reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (smtpd_mail_params_parse(p + end, &s->mail, &reply) < 0) {
		address_free(&a);
		smtpd_reply_error(s, "%s", reply);
		return;
	}
	if ((a->flags & ADDRESS_F_UTF8) && !s->mail.smtputf8) {
		smtpd_reply_error(s, "553 5.6.7 Sender address needs SMTPUTF8");
		goto fail;
	}
	if (s->mail.size >= 0 && (uint64_t)s->mail.size > cfg->size_limit) {
		smtpd_reply_error(s, "552 5.3.4 Message size exceeds fixed "
				     "limit");
		goto fail;
	}
	int space = queue_space_ok(cfg->spool,
	    s->mail.size > 0 ? (uint64_t)s->mail.size : 0, cfg->minfree);
	if (space <= 0) {
		log_warn("%s: queue file system short of space", s->id);
		smtpd_reject(s, "452 4.3.1 Insufficient system storage");
		goto fail;
	}
	if (s->auth_user != NULL && !sender_owned(s, a->canonical)) {
		smtpd_reply_error(s, "553 5.7.1 <%s>: Sender address "
				     "rejected: not owned by user %s",
		    a->canonical, s->auth_user);
		goto fail;
	}
	s->sender = xstrdup(a->canonical);
	address_free(&a);
	s->state = SMTPD_MAIL;
	smtpd_reply(s, "250 2.1.0 Ok");
	return;
fail:
	address_free(&a);
	smtpd_mail_params_clear(&s->mail);
}

/* Relay control and recipient validation; 1 accepted, 0 replied. */
static int
rcpt_allowed(struct smtpd_session *s, const struct address *a)
{
	int authorized = s->auth_user != NULL || s->trusted;
	const char *domain = a->domain;

	if (a->flags & ADDRESS_F_POSTMASTER)
		return 1;	/* RFC 5321 4.5.1: <Postmaster> is ours */
	enum resolve_class cls = resolve_domain(s->srv->resolve, domain);
	if (cls == RESOLVE_REMOTE || address_has_routing_chars(a)) {
		/* user%other@ours, other!user@ours and "user@other"@ours
		 * are the old relay disguises: never ours to route. */
		if (!authorized) {
			smtpd_reply_error(s, "554 5.7.1 <%s>: Relay access "
					     "denied", a->canonical);
			return 0;
		}
		if (cls == RESOLVE_REMOTE)
			return 1;
	}
	int r = resolve_rcpt(s->srv->resolve, a->local, domain);
	if (r < 0) {
		smtpd_reject(s, "451 4.3.0 <%s>: Temporary lookup failure",
		    a->canonical);
		return 0;
	}
	if (r == 0) {
		smtpd_reply_error(s, "550 5.1.1 <%s>: Recipient address "
				     "rejected: User unknown", a->canonical);
		return 0;
	}
	return 1;
}

static void
cmd_rcpt(struct smtpd_session *s, char *args)
{
	struct address *a = NULL;
	struct smtpd_rcpt_params rp;
	const char *err = NULL, *reply = NULL;
	size_t end;
	char *p = skip_keyword(args, "TO:");

	if (p == NULL || *p != '<') {
		smtpd_reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->nrcpt >= s->srv->cfg.rcpt_limit) {
		smtpd_reject(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	unsigned flags = ADDRESS_ALLOW_POSTMASTER |
	    (s->mail.smtputf8 ? ADDRESS_SMTPUTF8 : 0);
	if (address_parse_path(p, strlen(p), flags, &a, &end, &err) < 0) {
		smtpd_reply_error(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (p[end] != '\0' && p[end] != ' ') {
		address_free(&a);
		smtpd_reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (smtpd_rcpt_params_parse(p + end, &rp, &reply) < 0) {
		address_free(&a);
		smtpd_reply_error(s, "%s", reply);
		return;
	}
	if (!rcpt_allowed(s, a)) {
		smtpd_rcpt_params_clear(&rp);
		address_free(&a);
		return;
	}
	s->rcpts = xreallocarray(s->rcpts, s->nrcpt + 1, sizeof(*s->rcpts));
	struct smtpd_rcpt *r = &s->rcpts[s->nrcpt++];
	if (a->flags & ADDRESS_F_POSTMASTER)
		r->address = xasprintf("postmaster@%s", s->srv->cfg.hostname);
	else
		r->address = xstrdup(a->canonical);
	r->orcpt = rp.orcpt;
	r->notify = rp.notify;
	address_free(&a);
	s->state = SMTPD_RCPT;
	smtpd_reply(s, "250 2.1.5 Ok");
}

static void
cmd_data(struct smtpd_session *s, char *args)
{
	if (*args != '\0') {
		smtpd_reply_error(s, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (s->bdat_mode) {
		smtpd_reply_error(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	smtpd_data_start(s);
}

static void
cmd_bdat(struct smtpd_session *s, char *args)
{
	smtpd_bdat_start(s, args);
}

static void
cmd_rset(struct smtpd_session *s, char *args)
{
	if (*args != '\0') {
		smtpd_reply_error(s, "501 5.5.4 Syntax: RSET");
		return;
	}
	smtpd_transaction_reset(s);
	smtpd_reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtpd_session *s, char *args)
{
	(void)args;
	smtpd_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtpd_session *s, char *args)
{
	(void)args;
	smtpd_reply(s, "221 2.0.0 Bye");
	smtpd_close_after_reply(s);
}

static void
cmd_help(struct smtpd_session *s, char *args)
{
	(void)args;
	smtpd_reply(s, "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT "
		       "RSET NOOP QUIT HELP VRFY STARTTLS AUTH");
}

static void
cmd_vrfy(struct smtpd_session *s, char *args)
{
	struct address *a = NULL;
	const char *err = NULL;

	if (*args == '\0') {
		smtpd_reply_error(s, "501 5.5.4 Syntax: VRFY address");
		return;
	}
	/* RFC 5321 3.5.3: 252 when we will not say (the default, so the
	 * tables cannot be harvested). */
	if (!s->srv->cfg.vrfy_enable) {
		smtpd_reply(s, "252 2.0.0 Cannot VRFY user, but will accept "
			       "message and attempt delivery");
		return;
	}
	char *p = args;
	int bracket = *p == '<';
	char *tmp = bracket ? xstrdup(p) : xasprintf("<%s>", p);
	if (address_parse_path(tmp, strlen(tmp), 0, &a, NULL, &err) < 0 ||
	    resolve_domain(s->srv->resolve, a->domain) == RESOLVE_REMOTE) {
		smtpd_reply_error(s, "553 5.1.3 Cannot verify this address");
	} else if (resolve_rcpt(s->srv->resolve, a->local, a->domain) == 1) {
		smtpd_reply(s, "250 2.1.5 <%s>", a->canonical);
	} else {
		smtpd_reply_error(s, "550 5.1.1 <%s>: User unknown",
		    a->canonical);
	}
	address_free(&a);
	free(tmp);
}

static void
cmd_starttls(struct smtpd_session *s, char *args)
{
	if (*args != '\0') {
		smtpd_reply_error(s, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->tls) {
		smtpd_reply_error(s, "554 5.5.1 Error: TLS already active");
		return;
	}
	if (!tls_offered(s)) {
		smtpd_reply_error(s, "502 5.5.1 Error: command not "
				     "implemented");
		return;
	}
	smtpd_reply(s, "220 2.0.0 Ready to start TLS");
	smtpd_flush(s);
	/* RFC 3207 4.2: forget everything, the client must EHLO again. */
	smtpd_transaction_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->state = SMTPD_INIT;
	s->starttls = 1;
	/* Anything pipelined after STARTTLS is dropped by the stream and by
	 * the caller (CVE-2011-0411). */
	stream_starttls(s->stream, s->srv->tls, NULL, smtpd_tls_done);
}

static void
cmd_auth(struct smtpd_session *s, char *args)
{
	smtpd_auth_start(s, args);
}
