/*
 * pop3d_cmd.c - POP3 commands (RFC 1939 4-7, RFC 2449 CAPA and response
 * codes, RFC 2595 STLS, RFC 5034 AUTH). One table; one gate checks the
 * state and whether a login may be sent in plaintext before any handler
 * runs. Message numbers refer to the snapshot taken at login (RFC 1939
 * 5); bad arguments and deleted messages get -ERR.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "pop3d.h"
#include "stream.h"
#include "xalloc.h"

#define ST(x) (1u << (x))
#define ST_AUTHZ ST(POP3D_AUTHORIZATION)
#define ST_TRANS ST(POP3D_TRANSACTION)

/* Gate flag: the command carries credentials, refused in plaintext
 * unless allowed (RFC 2595, RFC 8314). */
#define CMD_LOGIN 0x01

struct pop3d_cmd {
	const char *name;
	void (*handler)(struct pop3d_session *s, char *args);
	unsigned states;
	unsigned flags;
};

static void cmd_capa(struct pop3d_session *s, char *args);
static void cmd_stls(struct pop3d_session *s, char *args);
static void cmd_user(struct pop3d_session *s, char *args);
static void cmd_pass(struct pop3d_session *s, char *args);
static void cmd_auth(struct pop3d_session *s, char *args);
static void cmd_quit(struct pop3d_session *s, char *args);
static void cmd_stat(struct pop3d_session *s, char *args);
static void cmd_list(struct pop3d_session *s, char *args);
static void cmd_uidl(struct pop3d_session *s, char *args);
static void cmd_retr(struct pop3d_session *s, char *args);
static void cmd_top(struct pop3d_session *s, char *args);
static void cmd_dele(struct pop3d_session *s, char *args);
static void cmd_noop(struct pop3d_session *s, char *args);
static void cmd_rset(struct pop3d_session *s, char *args);

static const struct pop3d_cmd commands[] = {
	{"CAPA", cmd_capa, ST_AUTHZ | ST_TRANS, 0},	/* RFC 2449 5 */
	{"STLS", cmd_stls, ST_AUTHZ, 0},		/* RFC 2595 4 */
	{"USER", cmd_user, ST_AUTHZ, CMD_LOGIN},	/* RFC 1939 7 */
	{"PASS", cmd_pass, ST_AUTHZ, CMD_LOGIN},
	{"AUTH", cmd_auth, ST_AUTHZ, CMD_LOGIN},	/* RFC 5034 4 */
	{"QUIT", cmd_quit, ST_AUTHZ | ST_TRANS, 0},	/* RFC 1939 4, 6 */
	{"STAT", cmd_stat, ST_TRANS, 0},		/* RFC 1939 5 */
	{"LIST", cmd_list, ST_TRANS, 0},
	{"RETR", cmd_retr, ST_TRANS, 0},
	{"DELE", cmd_dele, ST_TRANS, 0},
	{"NOOP", cmd_noop, ST_TRANS, 0},
	{"RSET", cmd_rset, ST_TRANS, 0},
	{"TOP", cmd_top, ST_TRANS, 0},			/* RFC 1939 7 */
	{"UIDL", cmd_uidl, ST_TRANS, 0},
	{NULL, NULL, 0, 0},
};

static int
gate(struct pop3d_session *s, const struct pop3d_cmd *cmd)
{
	if (!(cmd->states & ST(s->state))) {
		pop3d_reply_error(s, "-ERR command not valid in this state");
		return 0;
	}
	if ((cmd->flags & CMD_LOGIN) && !pop3d_plaintext_ok(s)) {
		pop3d_reply_error(s, "-ERR [AUTH] plaintext authentication "
				     "disallowed on this connection, use STLS");
		return 0;
	}
	return 1;
}

void
pop3d_cmd_line(struct pop3d_session *s, char *line)
{
	size_t n = strcspn(line, " ");
	char *args = line + n;

	while (*args == ' ')
		args++;
	for (const struct pop3d_cmd *c = commands; c->name != NULL; c++) {
		if (strlen(c->name) == n && strncasecmp(line, c->name, n) ==
		    0) {
			if (gate(s, c))
				c->handler(s, args);
			return;
		}
	}
	pop3d_reply_error(s, "-ERR unknown command");
}

/* RFC 1939 3: a message number is decimal, 1 to the messages in the
 * maildrop. Returns the index, or -1 after replying. */
static long
msg_arg(struct pop3d_session *s, const char *arg, int allow_deleted)
{
	unsigned long long v = 0;
	size_t i;

	for (i = 0; isdigit((unsigned char)arg[i]); i++) {
		if (i >= 10)
			break;
		v = v * 10 + (unsigned)(arg[i] - '0');
	}
	if (i == 0 || arg[i] != '\0') {
		pop3d_reply_error(s, "-ERR invalid message number");
		return -1;
	}
	if (v == 0 || v > s->nmsgs) {
		pop3d_reply_error(s, "-ERR no such message, only %zu messages "
				     "in maildrop", s->nmsgs);
		return -1;
	}
	if (!allow_deleted && s->msgs[v - 1].deleted) {
		pop3d_reply_error(s, "-ERR message %llu already deleted", v);
		return -1;
	}
	return (long)(v - 1);
}

/* Split one argument off args; NULL if there is none. */
static char *
next_arg(char **args)
{
	char *a = *args;

	if (*a == '\0')
		return NULL;
	size_t n = strcspn(a, " ");
	*args = a + n;
	if (**args != '\0') {
		**args = '\0';
		(*args)++;
		while (**args == ' ')
			(*args)++;
	}
	return a;
}

static void
maildrop_stat(const struct pop3d_session *s, size_t *n_r, uint64_t *size_r)
{
	*n_r = 0;
	*size_r = 0;
	for (size_t i = 0; i < s->nmsgs; i++) {
		if (s->msgs[i].deleted)
			continue;
		(*n_r)++;
		*size_r += s->msgs[i].vsize;
	}
}

static void
cmd_capa(struct pop3d_session *s, char *args)
{
	(void)args;
	pop3d_reply(s, "+OK capability list follows");
	pop3d_reply(s, "TOP");
	pop3d_reply(s, "UIDL");
	if (s->state == POP3D_AUTHORIZATION && pop3d_plaintext_ok(s)) {
		pop3d_reply(s, "USER");
		pop3d_reply(s, "SASL PLAIN LOGIN");
	}
	pop3d_reply(s, "RESP-CODES");
	pop3d_reply(s, "AUTH-RESP-CODE");
	pop3d_reply(s, "PIPELINING");
	/* RFC 2449 6.5: announced only when a delay is enforced. */
	if (s->srv->cfg.login_delay > 0)
		pop3d_reply(s, "LOGIN-DELAY %u", s->srv->cfg.login_delay);
	if (s->state == POP3D_AUTHORIZATION && s->srv->tls != NULL &&
	    s->srv->cfg.tls_enable && !s->tls && !s->starttls)
		pop3d_reply(s, "STLS");
	pop3d_reply(s, "IMPLEMENTATION pochta");
	pop3d_reply(s, ".");
}

static void
cmd_stls(struct pop3d_session *s, char *args)
{
	if (*args != '\0') {
		pop3d_reply_error(s, "-ERR STLS takes no argument");
		return;
	}
	if (s->tls) {
		pop3d_reply_error(s, "-ERR TLS already active");
		return;
	}
	if (s->srv->tls == NULL || !s->srv->cfg.tls_enable) {
		pop3d_reply_error(s, "-ERR TLS not available");
		return;
	}
	/* A USER given before belongs to the plaintext session. */
	free(s->user);
	s->user = NULL;
	pop3d_reply(s, "+OK begin TLS negotiation");
	pop3d_flush(s);
	s->starttls = 1;
	if (stream_starttls(s->stream, s->srv->tls, NULL, pop3d_tls_done) < 0)
		stream_abort(s->stream);
}

static void
cmd_user(struct pop3d_session *s, char *args)
{
	if (*args == '\0') {
		pop3d_reply_error(s, "-ERR USER needs a name");
		return;
	}
	free(s->user);
	s->user = xstrdup(args);
	pop3d_reply(s, "+OK send PASS");
}

static void
cmd_pass(struct pop3d_session *s, char *args)
{
	if (s->user == NULL) {
		pop3d_reply_error(s, "-ERR give USER first");
		return;
	}
	char *user = s->user;
	s->user = NULL;
	/* RFC 1939 7: the password is the rest of the line, spaces and
	 * all. */
	pop3d_auth_pass(s, user, args, "USER");
	free(user);
}

static void
cmd_auth(struct pop3d_session *s, char *args)
{
	if (*args == '\0') {
		/* The pre-RFC 5034 listing some clients still probe with. */
		pop3d_reply(s, "+OK methods follow");
		pop3d_reply(s, "PLAIN");
		pop3d_reply(s, "LOGIN");
		pop3d_reply(s, ".");
		return;
	}
	pop3d_auth_start(s, args);
}

static void
cmd_quit(struct pop3d_session *s, char *args)
{
	(void)args;
	if (s->state == POP3D_TRANSACTION) {
		pop3d_maildrop_update(s);
		return;
	}
	pop3d_reply(s, "+OK %s POP3 server signing off",
	    s->srv->cfg.hostname);
	pop3d_close_after_reply(s);
}

static void
cmd_stat(struct pop3d_session *s, char *args)
{
	size_t n;
	uint64_t size;

	(void)args;
	maildrop_stat(s, &n, &size);
	pop3d_reply(s, "+OK %zu %llu", n, (unsigned long long)size);
}

static void
cmd_list(struct pop3d_session *s, char *args)
{
	char *a = next_arg(&args);
	size_t n;
	uint64_t size;
	long i;

	if (a != NULL) {
		if (*args != '\0') {
			pop3d_reply_error(s, "-ERR too many arguments");
			return;
		}
		if ((i = msg_arg(s, a, 0)) < 0)
			return;
		pop3d_reply(s, "+OK %ld %llu", i + 1,
		    (unsigned long long)s->msgs[i].vsize);
		return;
	}
	maildrop_stat(s, &n, &size);
	pop3d_reply(s, "+OK %zu messages (%llu octets)", n,
	    (unsigned long long)size);
	for (size_t j = 0; j < s->nmsgs; j++)
		if (!s->msgs[j].deleted)
			pop3d_reply(s, "%zu %llu", j + 1,
			    (unsigned long long)s->msgs[j].vsize);
	pop3d_reply(s, ".");
}

static void
cmd_uidl(struct pop3d_session *s, char *args)
{
	char *a = next_arg(&args);
	long i;

	if (a != NULL) {
		if (*args != '\0') {
			pop3d_reply_error(s, "-ERR too many arguments");
			return;
		}
		if ((i = msg_arg(s, a, 0)) < 0)
			return;
		pop3d_reply(s, "+OK %ld %s", i + 1, s->msgs[i].uidl);
		return;
	}
	pop3d_reply(s, "+OK unique-id listing follows");
	for (size_t j = 0; j < s->nmsgs; j++)
		if (!s->msgs[j].deleted)
			pop3d_reply(s, "%zu %s", j + 1, s->msgs[j].uidl);
	pop3d_reply(s, ".");
}

static void
cmd_retr(struct pop3d_session *s, char *args)
{
	char *a = next_arg(&args);
	long i;

	if (a == NULL || *args != '\0') {
		pop3d_reply_error(s, "-ERR syntax: RETR msg");
		return;
	}
	if ((i = msg_arg(s, a, 0)) < 0)
		return;
	pop3d_retr_start(s, (size_t)i, 0, 0);
}

static void
cmd_top(struct pop3d_session *s, char *args)
{
	char *a = next_arg(&args);
	char *b = next_arg(&args);
	unsigned long long lines = 0;
	size_t k;
	long i;

	if (a == NULL || b == NULL || *args != '\0') {
		pop3d_reply_error(s, "-ERR syntax: TOP msg n");
		return;
	}
	for (k = 0; isdigit((unsigned char)b[k]) && k < 19; k++)
		lines = lines * 10 + (unsigned)(b[k] - '0');
	if (k == 0 || b[k] != '\0') {
		pop3d_reply_error(s, "-ERR invalid line count");
		return;
	}
	if ((i = msg_arg(s, a, 0)) < 0)
		return;
	pop3d_retr_start(s, (size_t)i, 1, lines);
}

static void
cmd_dele(struct pop3d_session *s, char *args)
{
	char *a = next_arg(&args);
	long i;

	if (a == NULL || *args != '\0') {
		pop3d_reply_error(s, "-ERR syntax: DELE msg");
		return;
	}
	if ((i = msg_arg(s, a, 0)) < 0)
		return;
	s->msgs[i].deleted = 1;
	pop3d_reply(s, "+OK message %ld deleted", i + 1);
}

static void
cmd_noop(struct pop3d_session *s, char *args)
{
	(void)args;
	pop3d_reply(s, "+OK");
}

static void
cmd_rset(struct pop3d_session *s, char *args)
{
	size_t n;
	uint64_t size;

	(void)args;
	for (size_t i = 0; i < s->nmsgs; i++)
		s->msgs[i].deleted = 0;
	maildrop_stat(s, &n, &size);
	pop3d_reply(s, "+OK maildrop has %zu messages (%llu octets)", n,
	    (unsigned long long)size);
}
