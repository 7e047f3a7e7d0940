/*
 * tls.h - TLS for pochta's network daemons: OpenSSL 3 driven through memory
 * BIOs, so the engine never touches a socket (lib/stream moves the bytes).
 * TLS 1.2 is the minimum; compression and renegotiation are off. Errors are
 * negative errnos plus a text for the log line, never an abort or exit.
 */
#ifndef POCHTA_TLS_H
#define POCHTA_TLS_H

#include <stddef.h>

/* Shared settings for many connections (an SSL_CTX). */
struct tls_ctx;

/* One connection's TLS state machine. */
struct tls;

enum tls_role {
	TLS_SERVER,
	TLS_CLIENT,
};

enum tls_verify {
	/* Opportunistic (RFC 7435): encrypt, accept any certificate. */
	TLS_VERIFY_NONE,
	/* Require a chain to a trusted CA and a matching host name. */
	TLS_VERIFY_PEER,
};

/*
 * A server context with the certificate chain (PEM: the server certificate
 * first, then intermediates) and the private key (PEM). Returns 0 and
 * *ctx_r, or a negative errno (-ENOENT, -EACCES, -EINVAL) and *errstr_r: a
 * malloc'd message naming the file and giving OpenSSL's reason.
 */
int tls_ctx_server_new(const char *cert_file, const char *key_file,
    struct tls_ctx **ctx_r, char **errstr_r);

/*
 * A client context. With TLS_VERIFY_PEER the server's chain must verify
 * against ca_file (PEM bundle) or, when ca_file is NULL, the system store,
 * and match the name given to tls_new(); otherwise the handshake fails.
 * With TLS_VERIFY_NONE ca_file may still be given: tls_peer_verified() then
 * says whether the peer would have passed, for the log line.
 * Returns 0 and *ctx_r, or a negative errno and a malloc'd *errstr_r.
 */
int tls_ctx_client_new(enum tls_verify verify, const char *ca_file,
    struct tls_ctx **ctx_r, char **errstr_r);

/* The role a context was made for. */
enum tls_role tls_ctx_role(const struct tls_ctx *ctx);

/*
 * Free a context and set *ctx to NULL (NULL is allowed). Connections made
 * from it keep working: OpenSSL counts the references (so a reload may
 * replace the context while old sessions run on).
 */
void tls_ctx_free(struct tls_ctx **ctx);

/*
 * A new engine in the context's role. For a client, servername (may be
 * NULL) is sent as SNI (RFC 6066 3; not for an IP literal) and is the name
 * the certificate must match. Never NULL.
 */
struct tls *tls_new(struct tls_ctx *ctx, const char *servername);

/* Free an engine and set *t to NULL; NULL is allowed. */
void tls_free(struct tls **t);

/*
 * Hand ciphertext received from the peer to the engine. 0 or -ENOMEM. The
 * engine keeps what it cannot use yet; the caller bounds how much it feeds
 * before reading (lib/stream feeds one socket read at a time).
 */
int tls_feed(struct tls *t, const void *data, size_t len);

/*
 * Advance the handshake with what was fed. 0 when it is complete, -EAGAIN
 * when more input is needed, -EPROTO when it failed (tls_error() says why;
 * an alert may be waiting in the output: send it before closing). Send the
 * output (tls_out_take) after every call.
 */
int tls_handshake(struct tls *t);

/* Whether the handshake has completed. */
int tls_handshake_done(const struct tls *t);

/*
 * Decrypt up to len bytes of application data into p. Returns the number of
 * bytes (> 0), 0 when the peer sent close_notify, -EAGAIN when more input is
 * needed, -EPROTO on a protocol error (tls_error()).
 */
long tls_read(struct tls *t, void *p, size_t len);

/*
 * Encrypt len bytes of application data; the ciphertext waits in the output.
 * 0, -EAGAIN before the handshake completed, -EPIPE after tls_shutdown(),
 * or -EPROTO.
 */
int tls_write(struct tls *t, const void *data, size_t len);

/*
 * Queue our close_notify alert (RFC 8446 6.1). 0, or -EPROTO before the
 * handshake completed or after a fatal error (then there is nothing to
 * close politely).
 */
int tls_shutdown(struct tls *t);

/* Bytes of ciphertext waiting to be sent to the peer. */
size_t tls_out_pending(const struct tls *t);

/* Move up to len bytes of waiting ciphertext into p; returns how many. */
size_t tls_out_take(struct tls *t, void *p, size_t len);

/* The last error as text for a log line ("" if none). Lives as long as t. */
const char *tls_error(const struct tls *t);

/*
 * After the handshake: the protocol ("TLSv1.3"), cipher suite
 * ("TLS_AES_256_GCM_SHA384") and its secret bits (256), as written in log
 * lines and Received: headers. Before it: "", "" and 0. The strings are
 * OpenSSL's constants, valid for the program's life.
 */
const char *tls_version(const struct tls *t);
const char *tls_cipher(const struct tls *t);
int tls_cipher_bits(const struct tls *t);

/*
 * The peer certificate's subject common name as a malloc'd string (control
 * characters replaced by '?'), or NULL when there is no certificate or no
 * CN. Caller frees.
 */
char *tls_peer_cn(const struct tls *t);

/*
 * The server name from SNI: on a server what the client asked for, on a
 * client what was sent; NULL if none. Lives as long as t.
 */
const char *tls_servername(const struct tls *t);

/* Whether the peer presented a certificate that verified (and, for a
 * client given a servername, matched that name). */
int tls_peer_verified(const struct tls *t);

/*
 * DANE (RFC 6698, RFC 7672) on a client engine, before its handshake.
 * tls_dane_enable: verify the peer by the TLSA records added next instead
 * of the context's trust store; basedomain (the MX host name) is the
 * reference identifier for DANE-TA(2) name checks, DANE-EE(3) ignores
 * names and validity dates (RFC 7672 3.1.1, 3.2.2); a peer that matches no
 * record fails the handshake. 0 or -EPROTO (tls_error() says why).
 * tls_dane_add: add one record; 1 when added, 0 when OpenSSL finds it
 * unusable (bad digest length, ...), -EPROTO before tls_dane_enable.
 */
int tls_dane_enable(struct tls *t, const char *basedomain);
int tls_dane_add(struct tls *t, unsigned usage, unsigned selector,
    unsigned mtype, const unsigned char *data, size_t len);

/* Whether the handshake completed with a peer that matched a TLSA record. */
int tls_peer_dane_verified(const struct tls *t);

/*
 * Whether a TLSA record can authenticate an SMTP server (RFC 7672 3.1.3,
 * RFC 7218): usage DANE-TA(2) or DANE-EE(3), selector Cert(0) or SPKI(1),
 * matching type Full(0), SHA2-256(1) with 32 bytes or SHA2-512(2) with 64,
 * and some data. PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP. Pure.
 */
int tls_tlsa_usable(unsigned usage, unsigned selector, unsigned mtype,
    size_t len);

/*
 * Make a new EC P-256 key and a self-signed X.509 v3 certificate for
 * hostname (subject CN and subjectAltName DNS: or IP:), valid from now for
 * days days, and write them as PEM: key_path with mode 0600, cert_path 0644.
 * Each file is written to a temporary name, synced and renamed, so an
 * existing pair is replaced whole or not at all. Returns 0, or a negative
 * errno and a malloc'd *errstr_r.
 */
int tls_selfsigned_create(const char *cert_path, const char *key_path,
    const char *hostname, int days, char **errstr_r);

#endif
