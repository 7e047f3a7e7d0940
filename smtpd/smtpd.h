/*
 * smtpd.h - smtpd's private structures: the per-worker server and the
 * per-connection session (RFC 5321). See smtpd(8).
 */
#ifndef POCHTA_SMTPD_H
#define POCHTA_SMTPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "buf.h"
#include "smtpd_body.h"
#include "smtpd_param.h"

struct conf;
struct service;
struct stream;
struct tls_ctx;
struct resolve;
struct dns_resolver;
struct dns_request;
struct auth_throttle;
struct cidr_list;
struct queue_writer;

/* RFC 5321 4.5.3.1.4: a command line is at most 512 octets with CRLF. */
#define SMTPD_LINE_MAX 512
/* RFC 4954 4: an AUTH line may be up to 12288 octets. */
#define SMTPD_AUTH_LINE_MAX 12288

enum smtpd_tls_level { TLS_LEVEL_NONE, TLS_LEVEL_MAY, TLS_LEVEL_ENCRYPT };

struct smtpd_config {
	char *hostname;
	char *banner;
	char *spool;
	enum smtpd_tls_level tls_level;
	int wrappermode;
	int sasl_enable;
	int auth_required;
	int plaintext_auth;
	int sender_login_check;
	int vrfy_enable;
	int peername_lookup;
	size_t rcpt_limit;
	size_t max_line;
	uint64_t size_limit;
	uint64_t minfree;
	unsigned timeout_ms;
	unsigned greet_pause_ms;
	int hard_error_limit;
	int client_limit;
	int conn_limit;
	int auth_failure_limit;
};

/* Sessions per client address, for smtpd_client_connection_limit. */
struct smtpd_client_count;

struct smtpd_server {
	struct service *svc;
	uv_loop_t *loop;
	const struct conf *conf;
	struct smtpd_config cfg;
	struct tls_ctx *tls;
	struct tls_ctx **old_tls;	/* replaced by reloads, kept till exit */
	size_t n_old_tls;
	struct resolve *resolve;
	struct dns_resolver *dns;
	struct auth_throttle *throttle;
	char *dummy_hash;	/* for unknown users, see smtpd_auth.c */
	struct cidr_list *mynetworks;
	uv_stream_t **listeners;
	size_t n_listeners;
	size_t nsessions;
	struct smtpd_session *sessions;	/* all open sessions */
	struct smtpd_client_count **clients;	/* hash buckets */
	size_t nbuckets;
	int stopping;
};

/* RFC 5321 4.1.4 command order, plus the states of a transaction. */
enum smtpd_state {
	SMTPD_GREET,	/* before our greeting */
	SMTPD_INIT,	/* greeted; no HELO/EHLO yet */
	SMTPD_READY,	/* HELO/EHLO done, no transaction */
	SMTPD_MAIL,	/* MAIL accepted */
	SMTPD_RCPT,	/* at least one RCPT accepted */
	SMTPD_DATA,	/* reading DATA */
	SMTPD_BDAT,	/* reading a BDAT chunk */
	SMTPD_AUTH,	/* waiting for an AUTH continuation line */
	SMTPD_QUIT,	/* closing */
};

struct smtpd_rcpt {
	char *address;
	char *orcpt;
	int notify;
};

struct smtpd_session {
	struct smtpd_server *srv;
	struct smtpd_session *prev, *next;
	struct stream *stream;
	char id[24];		/* session ID for log lines */
	enum smtpd_state state;

	/* The client. */
	char addr[64];
	char client[400];	/* "name[addr]" for log lines */
	char *name;		/* reverse DNS, forward-confirmed, or NULL */
	struct dns_request *dns_req;
	int is_unix;		/* public/submit */
	uid_t peer_uid;
	char *peer_user;	/* local user of public/submit */
	int loopback;
	int trusted;		/* in mynetworks */

	/* Session state. */
	char *helo;
	int esmtp;
	int tls;		/* TLS handshake completed */
	char *auth_user;
	int starttls;		/* STARTTLS handshake under way */
	int auth_mech;		/* during AUTH: 1 PLAIN, 2 LOGIN */
	char *auth_login;	/* the user name being authenticated */
	char *auth_pass;
	char *auth_hash;
	int auth_unknown;	/* checking against the dummy hash */
	uv_timer_t *delay_timer;
	int errors;
	char cmd[16];		/* verb of the command being handled */
	int discard_line;	/* skipping the rest of an over-long line */

	/* The transaction. */
	char *sender;		/* NULL: no MAIL yet; "" for <> */
	struct smtpd_mail_params mail;
	struct smtpd_rcpt *rcpts;
	size_t nrcpt;
	struct smtpd_body body;
	struct buf chunk;	/* decoded message bytes not yet written */
	struct queue_writer *qw;
	uint64_t bdat_left;	/* octets of the BDAT chunk still to read */
	uint64_t bdat_size;	/* octets in the current chunk */
	int bdat_last;
	int bdat_mode;		/* this transaction uses BDAT */
	int bdat_failed;	/* a BDAT chunk failed; refuse the rest */
	const char *bdat_refused;	/* reply after this chunk, or NULL */
	enum smtpd_state bdat_resume_state;
	int write_error;	/* the queue file could not be written */
	int busy;		/* a thread-pool job runs: input paused */
	uv_work_t work;
	int work_result;
	const char *work_errstr;
	char queue_id[32];
	int closing_after;	/* close once the reply is sent */
	int freed_by_close;
	struct buf out;		/* replies of this input batch */
};

/* smtpd_session.c */
void smtpd_session_accept(struct smtpd_server *srv, uv_stream_t *listener,
    int is_unix);
void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A refusal: reply and log it; smtpd_reply_error also counts it toward
 * smtpd_hard_error_limit (client errors), smtpd_reject does not. */
void smtpd_reply_error(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtpd_reject(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void smtpd_flush(struct smtpd_session *s);
void smtpd_pause(struct smtpd_session *s);
void smtpd_resume(struct smtpd_session *s);
void smtpd_close_after_reply(struct smtpd_session *s);
void smtpd_transaction_reset(struct smtpd_session *s);
void smtpd_server_stop(struct smtpd_server *srv);
void smtpd_tls_done(struct stream *st);
const char *smtpd_client_text(const struct smtpd_session *s);

/* smtpd_cmd.c */
void smtpd_cmd_line(struct smtpd_session *s, char *line, size_t len);

/* smtpd_auth.c */
void smtpd_auth_start(struct smtpd_session *s, char *args);
void smtpd_auth_line(struct smtpd_session *s, char *line);
int smtpd_auth_allowed(const struct smtpd_session *s);
void smtpd_auth_cleanup(struct smtpd_session *s);

/* smtpd_data.c */
void smtpd_data_start(struct smtpd_session *s);
void smtpd_bdat_start(struct smtpd_session *s, char *args);
size_t smtpd_data_input(struct smtpd_session *s, const char *data,
    size_t len);
void smtpd_data_cleanup(struct smtpd_session *s);

#endif
