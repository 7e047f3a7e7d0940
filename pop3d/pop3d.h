/*
 * pop3d.h - pop3d's private structures: the per-worker server, the
 * per-connection session (RFC 1939 states) and the message output encoder.
 * See pochta-pop3d(8).
 */
#ifndef POCHTA_POP3D_H
#define POCHTA_POP3D_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

struct conf;
struct service;
struct stream;
struct tls_ctx;
struct resolve;
struct auth_throttle;
struct mailstore;
struct mailstore_folder;

/* RFC 2449 4: a command line is at most 255 octets with its CRLF. */
#define POP3D_LINE_MAX 255
/* A SASL continuation line (RFC 5034 4) is base64 of a response of at most
 * two names and a password: 4 KiB is ample. */
#define POP3D_AUTH_LINE_MAX 4096
/* Bytes of a message read from its file per step of RETR and TOP. */
#define POP3D_CHUNK (64 * 1024)
/* The lock file in the mailbox directory held while in TRANSACTION. */
#define POP3D_LOCK_NAME "pochta-pop3.lock"

struct pop3d_config {
	char *hostname;
	int tls_enable;
	int wrappermode;
	int plaintext_auth;
	int plaintext_auth_loopback;
	unsigned timeout_ms;
	unsigned login_delay;	/* seconds; 0: none */
	int hard_error_limit;
	int auth_failure_limit;
	int conn_limit;
	char *mail_directory;
};

struct pop3d_server {
	struct service *svc;
	uv_loop_t *loop;
	const struct conf *conf;
	struct pop3d_config cfg;
	struct tls_ctx *tls;
	struct tls_ctx **old_tls;	/* replaced by reloads, kept to exit */
	size_t n_old_tls;
	struct resolve *resolve;
	struct auth_throttle *throttle;
	char *dummy_hash;	/* for unknown users, see pop3d_auth.c */
	uv_stream_t **listeners;
	size_t n_listeners;
	size_t nsessions;
	struct pop3d_session *sessions;
	int stopping;
};

/* RFC 1939 3: the session states, plus a SASL exchange in progress. */
enum pop3d_state {
	POP3D_GREET,		/* implicit TLS: before the handshake */
	POP3D_AUTHORIZATION,
	POP3D_SASL,		/* AUTH waiting for a continuation line */
	POP3D_TRANSACTION,
	POP3D_UPDATE,		/* QUIT given; nothing more is read */
};

/*
 * RETR and TOP output (RFC 1939 3): every line end becomes CRLF whatever
 * the file holds, a line starting with "." gets another, and TOP stops
 * after the header and max_body lines of the body.
 */
struct pop3d_stuff {
	int bol;		/* at the start of a line */
	int cr;			/* a CR was read and not yet written */
	int in_body;		/* past the blank line after the header */
	int top;		/* counting body lines (TOP) */
	uint64_t max_body;	/* TOP's line count */
	uint64_t body_lines;	/* body lines written */
	int done;		/* TOP's limit reached: stop reading */
};

/* One message of the maildrop, as of the login (RFC 1939 5: the numbers
 * stay fixed for the session). */
struct pop3d_msg {
	uint32_t uid;
	uint64_t vsize;		/* octets with CRLF line ends */
	char *uidl;
	int deleted;
	int retrieved;
};

struct pop3d_session {
	struct pop3d_server *srv;
	struct pop3d_session *prev, *next;
	struct stream *stream;
	char id[24];
	char addr[64];
	enum pop3d_state state;
	int loopback;
	int tls;		/* TLS handshake completed */
	int starttls;		/* STLS handshake under way */
	int errors;
	int discard_line;	/* skipping the rest of an over-long line */
	int closing_after;
	struct buf out;		/* replies of this input batch */

	/* Authorization. */
	char *user;		/* USER's argument */
	int sasl_mech;		/* during AUTH: 1 PLAIN, 2 LOGIN */
	const char *method;	/* "USER", "PLAIN", "LOGIN" for the log */
	char *login;		/* the name being checked */
	char *pass;
	char *hash;
	char *mailbox;		/* absolute path of the user's mailbox */
	int unknown;		/* checking against the dummy hash */
	unsigned login_delay;	/* the configuration's, for the job */
	uv_timer_t *delay_timer;

	/* Thread-pool jobs. */
	int busy;		/* a job or a delay runs: input paused */
	uv_work_t work;
	int work_result;
	char work_err[256];

	/* The maildrop (TRANSACTION). */
	char *login_user;	/* authenticated name */
	struct mailstore *store;
	struct mailstore_folder *folder;
	int lock_fd;
	struct pop3d_msg *msgs;
	size_t nmsgs;
	uint64_t retr_count, retr_bytes;
	int updated;		/* UPDATE ran: 1 done, -1 failed part-way */

	/* RETR/TOP in progress. */
	int retr_fd;
	size_t retr_idx;
	int retr_top;
	uint64_t retr_lines;
	struct pop3d_stuff stuff;
};

/* pop3d_session.c */
void pop3d_session_accept(struct pop3d_server *srv, uv_stream_t *listener);
void pop3d_reply(struct pop3d_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pop3d_reply_error(struct pop3d_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pop3d_flush(struct pop3d_session *s);
void pop3d_pause(struct pop3d_session *s);
void pop3d_resume(struct pop3d_session *s);
void pop3d_close_after_reply(struct pop3d_session *s);
void pop3d_server_stop(struct pop3d_server *srv);
void pop3d_tls_done(struct stream *st);
int pop3d_plaintext_ok(const struct pop3d_session *s);

/* pop3d_cmd.c */
void pop3d_cmd_line(struct pop3d_session *s, char *line);

/* pop3d_auth.c */
void pop3d_auth_pass(struct pop3d_session *s, const char *user,
    const char *pass, const char *method);
void pop3d_auth_start(struct pop3d_session *s, char *args);
void pop3d_auth_line(struct pop3d_session *s, char *line);
void pop3d_auth_cleanup(struct pop3d_session *s);

/* pop3d_maildrop.c */
int pop3d_maildrop_open(struct pop3d_session *s, char *err, size_t errlen);
void pop3d_maildrop_close(struct pop3d_session *s);
void pop3d_maildrop_update(struct pop3d_session *s);
void pop3d_retr_start(struct pop3d_session *s, size_t idx, int top,
    uint64_t lines);
void pop3d_retr_drain(struct pop3d_session *s);
void pop3d_retr_cleanup(struct pop3d_session *s);

/* pop3d_stuff.c */
void pop3d_stuff_init(struct pop3d_stuff *st, int top, uint64_t max_body);
size_t pop3d_stuff_feed(struct pop3d_stuff *st, const char *in, size_t len,
    struct buf *out);
void pop3d_stuff_finish(struct pop3d_stuff *st, struct buf *out);

#endif
