/*
 * smtp_out.h - smtp-out's private interface: settings, one delivery
 * request (a job), the pure protocol helpers (reply parser, EHLO
 * capabilities, dot-stuffing, routing, DANE levels) and the blocking SMTP
 * session run on a worker thread. Agent protocol: pochta-smtp-out(8),
 * pochta-protocol(7).
 */
#ifndef SMTP_OUT_H
#define SMTP_OUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "dns.h"
#include "queue.h"

struct conf;
struct map_list;
struct tls_ctx;
struct tls;
struct agent_req;

/* The longest reply line taken, CRLF included (RFC 5321 4.5.3.1.5: 512). */
#define SO_REPLY_LINE_MAX	2048
/* The most lines and bytes of one reply; more is a hostile server. */
#define SO_REPLY_LINES_MAX	200
#define SO_REPLY_TEXT_MAX	16384
/* The longest remote text passed to qmgr for the log and the DSN. */
#define SO_TEXT_MAX		900

enum so_tls_level {
	SO_TLS_NONE,		/* never STARTTLS */
	SO_TLS_MAY,		/* STARTTLS when offered (RFC 7435) */
	SO_TLS_ENCRYPT,		/* STARTTLS required, any certificate */
	SO_TLS_VERIFY,		/* STARTTLS required, verified name */
	/*
	 * As a setting: DANE (RFC 7672) where DNSSEC says so, else "may".
	 * As a host's level: STARTTLS required, peer matches so_host.tlsa.
	 */
	SO_TLS_DANE,
};

/* One of our own SMTP listeners, for loop detection. */
struct so_listener {
	int wildcard;		/* any local address */
	struct dns_addr addr;
	int port;
};

/*
 * What a request needs from the configuration. Replaced on reload; jobs
 * hold a reference (refs is only touched on the loop thread).
 */
struct so_setup {
	unsigned refs;
	char *helo_name;
	int port;			/* smtp_out_port */
	enum so_tls_level tls_level;
	struct tls_ctx *tls_ctx;	/* NULL with SO_TLS_NONE */
	unsigned connect_timeout;	/* seconds, per RFC 5321 4.5.3.2 */
	unsigned helo_timeout;
	unsigned mail_timeout;
	unsigned rcpt_timeout;
	unsigned data_init_timeout;	/* the DATA command */
	unsigned data_timeout;		/* each block of content */
	unsigned data_done_timeout;	/* the final "." */
	unsigned cache_time;		/* connection cache; 0: off */
	struct map_list *sasl_maps;	/* NULL: no AUTH */
	pthread_mutex_t sasl_lock;	/* maps are not thread-safe */
	struct so_listener *own;
	size_t nown;
	size_t max_rcpts;
};

/* One recipient of a request and its outcome. */
struct so_rcpt {
	size_t index;		/* recipient record in the queue file */
	const char *address;	/* as qmgr sent it (the request's) */
	char status[16];	/* RFC 3463 code, "" while undecided */
	char *text;		/* reply text or reason */
	char *relay;		/* host[addr]:port that answered, or NULL */
	int retry;		/* 452: try again in a following transaction */
	int accepted;		/* RCPT got 250 in the current transaction */
};

/* One host to try, in order. */
struct so_host {
	char *name;
	struct dns_addr addr;
	int port;
	/* Validated MX (or [host], implicit MX) and addresses (RFC 7672
	 * 2.2.1, 2.2.2): a DANE candidate. */
	int dnssec;
	/* The TLS level for this host: the setting, or what DANE made of
	 * it (may, encrypt or dane); see so_dane_apply. */
	enum so_tls_level tls_level;
	struct dns_tlsa *tlsa;		/* usable records, with SO_TLS_DANE */
	size_t ntlsa;
	char *tlsa_err;			/* TLSA lookup failed: do not try */
};

/* One request: routed on the loop, delivered on a thread. */
struct so_job {
	struct agent_req *req;		/* what qmgr asked (lib/agent.h) */
	struct so_setup *setup;
	const char *queue_id;		/* req's */
	const char *nexthop;		/* req's, as qmgr sent it */
	char *domain;			/* the host or domain part */
	int explicit_host;		/* "[host]": no MX lookup */
	int port;			/* from the next hop, or 0 */
	int fd;				/* the queue file, read-only */
	struct so_rcpt *rcpts;
	size_t nrcpt;
	struct so_host *hosts;
	size_t nhosts;
	size_t dane_next;		/* next host for a TLSA lookup */
	struct dns_request *dns;
	struct so_job *done_next;	/* finished-list link (locked) */
};

/*
 * A reply being read: code, the first enhanced status code and the text of
 * every line (without the code), lines separated by LF.
 */
struct so_reply {
	int code;
	char enh[16];
	size_t nlines;
	int complete;
	struct buf text;
};

/* Set up an empty reply; so_reply_release frees its text. */
void so_reply_init(struct so_reply *r);
void so_reply_release(struct so_reply *r);

/*
 * Take one reply line (CRLF or LF already stripped, len bytes). Returns 1
 * when the reply is complete, 0 when more lines follow, -EPROTO for a
 * malformed line (*errstr_r says why) or -ENOBUFS past the limits above.
 */
int so_reply_line(struct so_reply *r, const char *line, size_t len,
    const char **errstr_r);

/*
 * The reply as one line for the log and the DSN: "550 5.1.1 text text",
 * control bytes replaced, cut to SO_TEXT_MAX. Caller frees.
 */
char *so_reply_oneline(const struct so_reply *r);

/* EHLO keywords (RFC 5321 4.1.1.1 and the extensions' RFCs). */
#define SO_CAP_PIPELINING	0x01
#define SO_CAP_SIZE		0x02
#define SO_CAP_8BITMIME		0x04
#define SO_CAP_SMTPUTF8		0x08
#define SO_CAP_DSN		0x10
#define SO_CAP_STARTTLS		0x20
#define SO_CAP_AUTH_PLAIN	0x40
#define SO_CAP_AUTH_LOGIN	0x80

struct so_caps {
	unsigned flags;
	uint64_t size;		/* SIZE limit, 0: none given */
};

/* Parse the text of a 250 EHLO reply (so_reply.text). Pure. */
void so_caps_parse(const char *text, struct so_caps *caps);

/* Dot-stuffing and line-end state across blocks of a message. */
struct so_dot {
	int bol;		/* at the beginning of a line */
	int cr;			/* the last byte was CR */
};

void so_dot_init(struct so_dot *d);

/*
 * Append n bytes of message to out for DATA (RFC 5321 4.5.2): a '.' at
 * the start of a line is doubled, a bare LF becomes CRLF. 0 or -ENOBUFS.
 */
int so_dot_stuff(struct so_dot *d, const char *in, size_t n, struct buf *out);

/* Close the data: CRLF if the last line was not ended, then ".CRLF". */
int so_dot_finish(struct so_dot *d, struct buf *out);

/*
 * Split a next hop: "domain", "host:port", "[host]" or "[host]:port".
 * *host_r is malloc'd; *explicit_r is 1 for the bracketed form (no MX
 * lookup, RFC 5321 5.1 literal routing as in Postfix); *port_r is 0 when
 * none was given. 0, or -EINVAL for a malformed next hop.
 */
int so_nexthop_parse(const char *nexthop, char **host_r, int *explicit_r,
    int *port_r);

/*
 * Turn a DNS result into the host list, each address its own entry, in
 * order; drop hosts that are us (an address:port of own[]) and every MX of
 * equal or lower preference (RFC 5321 5.1). Returns the number of hosts
 * (*hosts_r malloc'd, so_hosts_free frees them), or -ELOOP when the best
 * remaining MX is us. A host's dnssec is res->secure && its mx's secure;
 * its tls_level is SO_TLS_NONE, for the caller to set.
 */
int so_hosts_from_mx(const struct dns_result *res, int port,
    const struct so_listener *own, size_t nown, struct so_host **hosts_r);

/* Free n hosts and clear *hostsp. */
void so_hosts_free(struct so_host **hostsp, size_t n);

/*
 * RFC 7672 2.2.3: set the TLS level of every host named name among
 * hosts[0..n) from the result of its TLSA lookup. Validated records with a
 * usable one (tls_tlsa_usable): SO_TLS_DANE with copies of those; only
 * unusable ones: SO_TLS_ENCRYPT; unvalidated records, or none at all:
 * SO_TLS_MAY; a failed lookup (SERVFAIL, timeout, ...): tlsa_err, so the
 * host is skipped and never gets mail in plain text. Pure.
 */
void so_dane_apply(struct so_host *hosts, size_t n, const char *name,
    const struct dns_result *res);

/* The level's name as in smtp_tls_security_level ("may", "dane"). */
const char *so_tls_level_name(enum so_tls_level level);

/* Whether addr:port is one of own[]. Pure but for wildcard listeners. */
int so_is_own(const struct so_listener *own, size_t nown,
    const struct dns_addr *addr, int port);

/* Whether the message needs SMTPUTF8 (envelope addresses not ASCII). */
int so_needs_utf8(const char *sender, const char *const *rcpts, size_t n);

/* xtext (RFC 3461 4) of s onto out, for ENVID and ORCPT. */
int so_xtext(struct buf *out, const char *s);

/* One SMTP client connection, owned by one thread at a time. */
struct so_conn {
	int fd;
	struct tls *tls;		/* after STARTTLS */
	struct buf in;			/* plaintext received, not yet used */
	struct so_caps caps;		/* from the last EHLO */
	char relay[320];		/* name[addr]:port */
	char err[1024];			/* the last failure, for the DSN */
	int usable;			/* in a clean state between commands */
	unsigned uses;			/* transactions so far */
	char *key;			/* cache key while cached */
	int64_t expires;		/* cache deadline, so_now_ms() */
	struct so_conn *next;		/* cache list */
};

/* Milliseconds of the monotonic clock. */
int64_t so_now_ms(void);

/*
 * Connect to h with a timeout in seconds. 0 and *c_r, or a negative errno
 * and the reason in err.
 */
int so_conn_open(const struct so_host *h, unsigned timeout,
    struct so_conn **c_r, char *err, size_t errsize);

/* Send n bytes (through TLS once started) by deadline: 0 or -errno. */
int so_conn_write(struct so_conn *c, const char *p, size_t n,
    int64_t deadline);

/*
 * Read one whole reply into rep (re-initialized) by deadline; what names
 * the command for the error text. 0, or -errno with c->err set.
 */
int so_conn_reply(struct so_conn *c, struct so_reply *rep, const char *what,
    int64_t deadline);

/*
 * Run the TLS handshake with h after a 220 to STARTTLS, with DANE when
 * h->tls_level is SO_TLS_DANE: 0, or -errno and c->err.
 */
int so_conn_starttls(struct so_conn *c, struct tls_ctx *ctx,
    const struct so_host *h, int64_t deadline);

/* Close at once; and after a polite QUIT that is not waited for. */
void so_conn_free(struct so_conn **c);
void so_conn_quit(struct so_conn **c);

/*
 * The connection cache: put keeps an idle connection under key for
 * seconds (or QUITs it when it cannot be kept); take returns a live one
 * for key, or NULL. Both take *c / give ownership; thread-safe.
 */
void so_cache_put(struct so_conn **c, const char *key, unsigned seconds);
struct so_conn *so_cache_take(const char *key);

/* Build the settings from conf: 0, or -errno and a malloc'd *errstr_r. */
int so_setup_new(const struct conf *conf, struct so_setup **setup_r,
    char **errstr_r);
void so_setup_unref(struct so_setup **setup);

/*
 * Deliver the job's message over SMTP to the hosts in job->hosts and fill
 * in each recipient's status, text and relay. Blocking: a worker thread.
 * Closes job->fd.
 */
void so_deliver_job(struct so_job *job);

/* Close cached connections idle past their time (now == 0: all of them). */
void so_cache_expire(int64_t now);

#endif
