/*
 * stream.h - a network connection over a libuv stream (TCP, or a UNIX
 * socket) with optional TLS: the transport of smtpd, pop3d, imapd and
 * smtp-out. Input is buffered with a hard limit and handed to the protocol,
 * which says how much it used; output is queued with a hard limit and
 * back-pressure. STARTTLS (RFC 3207 4.2, RFC 2595 3.1, RFC 9051 6.2.1)
 * discards pipelined plaintext. Peer misbehaviour closes the stream with a
 * reason text; nothing here exits or aborts.
 */
#ifndef POCHTA_STREAM_H
#define POCHTA_STREAM_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

#include "tls.h"

struct stream;

/*
 * What the protocol is told; data and close are required. Every callback
 * may call any stream function, including stream_close() and
 * stream_abort(); the stream is freed only after close() returns. The
 * program must ignore SIGPIPE (lib/service does), as writes to a socket the
 * peer has closed are errors to report, not signals.
 */
struct stream_ops {
	/* stream_connect() only: the connection is up (may be NULL). */
	void (*connected)(struct stream *s);
	/*
	 * Plaintext input: the len bytes buffered and not yet used (data[len]
	 * is a NUL, for convenience). Return how many were used, from the
	 * start; the rest is offered again, with what arrives next appended.
	 * Return 0 to wait for more input. When len has reached the input
	 * limit, using nothing closes the stream (-ENOBUFS), so a protocol
	 * that meets an over-long line consumes it and replies with an error.
	 * The callback is called again at once while it uses something and
	 * input remains, until reading is paused or the stream closes.
	 */
	size_t (*data)(struct stream *s, const char *data, size_t len);
	/* Optional: the write queue fell below half the high-water mark
	 * after it had passed it (see stream_write_full()). */
	void (*drain)(struct stream *s);
	/*
	 * The stream is closed, once, last thing: error is 0 after
	 * stream_close() or stream_abort(), UV_EOF when the peer closed,
	 * UV_ETIMEDOUT on a connect or handshake timeout, -EPROTO on a TLS
	 * failure, -ENOBUFS on input overflow, else the socket's error.
	 * reason is text for the log line ("connection closed by peer",
	 * "TLS handshake failed: wrong version number"). The stream is
	 * freed when this returns; do not touch it after.
	 */
	void (*close)(struct stream *s, int error, const char *reason);
};

/* Defaults, changeable per stream. */
#define STREAM_INPUT_LIMIT	(64 * 1024)
#define STREAM_WRITE_HIGH	(256 * 1024)
#define STREAM_WRITE_LIMIT	(16 * 1024 * 1024)
#define STREAM_HANDSHAKE_MS	(60 * 1000)
#define STREAM_CLOSE_MS		(10 * 1000)

/*
 * Accept one connection from a listening uv_tcp_t or uv_pipe_t and start
 * reading; input is offered from the event loop, never before this
 * returns, so set limits and timeouts (and, for implicit TLS, call
 * stream_starttls()) right after. Returns 0 and *s_r, or a negative errno
 * (UV_EAGAIN: nothing to accept; no callback follows). arg is the
 * caller's, see stream_arg().
 */
int stream_accept(uv_stream_t *listener, const struct stream_ops *ops,
    void *arg, struct stream **s_r);

/*
 * The same for a connected socket fd (TCP or UNIX, e.g. received over IPC);
 * the stream owns fd from here on, also on error.
 */
int stream_open_fd(uv_loop_t *loop, int fd, const struct stream_ops *ops,
    void *arg, struct stream **s_r);

/*
 * Connect to a TCP address (smtp-out). ops->connected is called once the
 * connection is up and reading; a failure or no connection within
 * timeout_ms (0: no timeout) calls only ops->close, with the error and a
 * reason naming the address. Returns 0 and *s_r, or a negative errno (bad
 * address family; then no callback is called).
 */
int stream_connect(uv_loop_t *loop, const struct sockaddr *addr,
    unsigned timeout_ms, const struct stream_ops *ops, void *arg,
    struct stream **s_r);

/* The arg given at creation; and a way to change it. */
void *stream_arg(const struct stream *s);
void stream_set_arg(struct stream *s, void *arg);

/*
 * Start TLS on the stream, in ctx's role; servername (client only, may be
 * NULL) is sent as SNI and checked against the certificate when ctx
 * verifies. Called right after creation this is implicit TLS (ports 465,
 * 993, 995): no plaintext is ever delivered. Called later this is STARTTLS:
 * the plaintext input buffered and not yet used is discarded at once and is
 * never delivered (CVE-2011-0411: a client must not pipeline commands into
 * the TLS session). The protocol must drop its own buffered input, if it
 * copied any, too. Write the "220 ready" reply before calling this: queued
 * writes go out in order, in plaintext; writes made during the handshake
 * wait and are encrypted after it. done (may be NULL) is called when the
 * handshake has completed; a failure or a timeout (stream_set_timeouts)
 * closes the stream instead (-EPROTO or UV_ETIMEDOUT). Returns 0, -EALREADY
 * if TLS is already on, -EPIPE if the stream is closing.
 */
int stream_starttls(struct stream *s, struct tls_ctx *ctx,
    const char *servername, void (*done)(struct stream *s));

/* The TLS engine once stream_starttls() was called (for tls_version()
 * and the other getters), else NULL. */
struct tls *stream_tls(const struct stream *s);

/* Whether the TLS handshake has completed. */
int stream_tls_active(const struct stream *s);

/*
 * Queue len bytes (copied) for the peer, encrypted when TLS is on. Returns
 * 0, -EPIPE when the stream is closing, or -ENOBUFS when the queue would
 * pass the hard write limit (nothing is queued; a protocol that stops
 * producing while stream_write_full() holds, and writes pieces well below
 * the limit, never gets this).
 */
int stream_write(struct stream *s, const void *data, size_t len);

/* The same with printf formatting. */
int stream_writef(struct stream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Bytes queued and not yet reported written (plaintext held during a
 * handshake included). */
size_t stream_write_queued(const struct stream *s);

/*
 * Whether the queue has passed the high-water mark. While it has, the
 * stream also stops reading, so a client that sends commands but does not
 * read the replies cannot make us buffer without bound; reading resumes and
 * ops->drain is called when the queue falls below half the mark.
 */
int stream_write_full(const struct stream *s);

/*
 * Limits: input buffer size (most bytes offered to ops->data), write queue
 * high-water mark and hard limit (at most 1 GiB). 0 keeps a value.
 */
void stream_set_limits(struct stream *s, size_t input_limit,
    size_t write_high, size_t write_limit);

/*
 * Stop and resume offering input to ops->data (e.g. while a command waits
 * for a disk or DNS answer). Input already buffered is offered again after
 * stream_read_resume(), from the event loop, not from within the call.
 */
void stream_read_pause(struct stream *s);
void stream_read_resume(struct stream *s);

/*
 * Time limits in milliseconds (0 keeps a value): the TLS handshake, and the
 * graceful close (after which the stream is aborted).
 */
void stream_set_timeouts(struct stream *s, unsigned handshake_ms,
    unsigned close_ms);

/*
 * Call cb when no input has arrived, and no output was taken by the peer,
 * for ms milliseconds (RFC 5321 4.5.3.2, RFC 9051 5.4); cb typically
 * writes a "421 timeout" reply and calls stream_close(). A NULL cb closes
 * the stream with UV_ETIMEDOUT. ms 0 turns the timer off. The timer
 * restarts on every read and completed write, and fires once per idle
 * period; it stops when the stream starts closing.
 */
void stream_set_idle_timeout(struct stream *s, unsigned ms,
    void (*cb)(struct stream *s));

/*
 * Close gracefully: stop reading, send what is queued, then TLS
 * close_notify, then shut down and close the socket; ops->close follows
 * with error 0. A peer that does not take the data within the close
 * timeout is cut off.
 */
void stream_close(struct stream *s);

/* Close now: queued output is dropped; ops->close follows with error 0. */
void stream_abort(struct stream *s);

/* Whether stream_close/abort was called or the stream is closing. */
int stream_closing(const struct stream *s);

/*
 * The peer's and our address as text ("192.0.2.1", "2001:db8::1", "local"
 * for a UNIX socket) and port (0 for UNIX). Valid as long as the stream.
 */
const char *stream_peer_addr(const struct stream *s);
int stream_peer_port(const struct stream *s);
const char *stream_local_addr(const struct stream *s);
int stream_local_port(const struct stream *s);

/*
 * The socket's file descriptor, for getsockopt(2) (SO_PEERCRED on a UNIX
 * socket), or -1 once the stream is closing. Still the stream's: never
 * read, write or close it.
 */
int stream_fileno(const struct stream *s);

/* Whether the peer is this host: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104,
 * or a UNIX socket. */
int stream_peer_loopback(const struct stream *s);

#endif
