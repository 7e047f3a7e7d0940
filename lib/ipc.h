/*
 * ipc.h - connections of pochta's internal protocol (pochta-protocol(7)):
 * attribute lists (attr.h) over UNIX stream sockets, with file descriptors
 * passed as SCM_RIGHTS, on a libuv loop for daemons and blocking for the
 * CLI. A peer that sends garbage is disconnected with a reason; it never
 * crashes, blocks or grows the receiver past its limits.
 */
#ifndef POCHTA_IPC_H
#define POCHTA_IPC_H

#include <stddef.h>
#include <sys/types.h>

#include <uv.h>

#include "attr.h"

/* Most file descriptors one message may carry; extra ones are closed. */
#define IPC_MAX_FDS	8

/* Default most bytes of output queued on one connection (ipc_send). */
#define IPC_MAX_OUTPUT	(16 * 1024 * 1024)

struct ipc_conn;

/*
 * A received message. The callee takes what it wants to keep: it sets
 * attrs to NULL after taking the list, or an fds[i] to -1 after taking that
 * descriptor (ipc_msg_take_fd()). Whatever is left is freed and closed
 * when the callback returns. Descriptors are close-on-exec.
 */
struct ipc_msg {
	struct attr_list *attrs;
	int fds[IPC_MAX_FDS];
	size_t nfds;
};

/* The i-th descriptor of msg, now the caller's; -1 when there is none. */
int ipc_msg_take_fd(struct ipc_msg *msg, size_t i);

struct ipc_callbacks {
	/* A complete message arrived (required). May call ipc_send(),
	 * ipc_conn_finish() and ipc_conn_close() on conn. Messages are
	 * delivered in order. */
	void (*on_message)(struct ipc_conn *conn, struct ipc_msg *msg,
	    void *arg);
	/*
	 * The connection ended by itself: err is 0 when the peer closed it
	 * between messages, else a negative errno (-EPROTO for a peer that
	 * broke the protocol, -ECONNRESET for one that hung up mid-message,
	 * the connect or I/O error otherwise) with errstr, a constant
	 * string, saying why. Replies queued when the peer stopped sending
	 * are written first, as long as the peer still reads. conn is freed
	 * after this returns. Optional; not called after ipc_conn_close()
	 * or ipc_conn_finish().
	 */
	void (*on_close)(struct ipc_conn *conn, int err, const char *errstr,
	    void *arg);
};

/*
 * Serve or use the connected UNIX stream socket fd on loop. The connection
 * owns fd from this call on (it is closed on failure too) and makes it
 * non-blocking. cb is copied. Returns 0 and *conn_r, or a negative errno.
 */
int ipc_conn_new(uv_loop_t *loop, int fd, const struct ipc_callbacks *cb,
    void *arg, struct ipc_conn **conn_r);

/* Decode with other limits than attr.h's defaults (NULL: the defaults).
 * Call before the first message arrives. */
void ipc_conn_set_limits(struct ipc_conn *conn,
    const struct attr_limits *limits);

/* The socket, e.g. for ipc_peer_cred(). Still owned by conn. */
int ipc_conn_fd(const struct ipc_conn *conn);

/*
 * Queue list for sending, and with it fd unless fd is -1; the connection
 * owns fd from this call on and closes it once sent, or when it closes,
 * or when this fails. Output goes out as fast as the peer reads it.
 * Returns 0, -ENOBUFS when more than IPC_MAX_OUTPUT bytes would be queued,
 * -EPIPE when the connection is closing.
 */
int ipc_send(struct ipc_conn *conn, const struct attr_list *list, int fd);

/* Bytes queued and not yet written. */
size_t ipc_conn_pending(const struct ipc_conn *conn);

/*
 * Close the connection now: unsent output is dropped, the socket closed,
 * and conn freed once libuv lets go of it; on_close is not called.
 * *connp becomes NULL. Safe inside the connection's own callbacks.
 */
void ipc_conn_close(struct ipc_conn **connp);

/*
 * Stop reading, write what is queued, then close: the way to answer with
 * a last message (or a series ended by the close) and hang up. The
 * connection is the library's from now on: on_message and on_close are
 * not called again, and *connp becomes NULL. Output still queued when the
 * peer goes away is dropped.
 */
void ipc_conn_finish(struct ipc_conn **connp);

/*
 * Connect to the socket at path without blocking and return the
 * connection at once; messages may be sent before the connection is
 * complete. A connect failure found later reaches on_close.
 * Returns 0 and *conn_r, -ENAMETOOLONG, or the connect(2) error (-EAGAIN
 * when the listener's backlog is full: try again later).
 */
int ipc_connect(uv_loop_t *loop, const char *path,
    const struct ipc_callbacks *cb, void *arg, struct ipc_conn **conn_r);

struct ipc_listener;

/*
 * Accept connections on listen_fd, already bound and listening (daemons
 * get theirs from the master as fd 3), handing each to on_conn as a new
 * non-blocking close-on-exec descriptor that on_conn owns (typically it
 * checks ipc_peer_cred() and calls ipc_conn_new()). The listener owns
 * listen_fd from this call on (closed on failure too). Running out of
 * descriptors pauses accepting briefly instead of spinning. Returns 0 and
 * *listener_r, or a negative errno.
 */
int ipc_listen(uv_loop_t *loop, int listen_fd,
    void (*on_conn)(struct ipc_listener *listener, int fd, void *arg),
    void *arg, struct ipc_listener **listener_r);

/* Stop accepting and close the listening socket; *listenerp becomes
 * NULL. Safe inside on_conn. */
void ipc_listener_free(struct ipc_listener **listenerp);

/*
 * A blocking connection for command-line tools, for exchanges of more than
 * one message (several requests, or a request answered by a series of
 * messages until the server closes). Each call waits at most timeout_ms
 * (negative: no limit). Errors come with *errstr_r saying what failed.
 */
struct ipc_client;

/* Connect to the socket at path: 0 and *cl_r, or a negative errno
 * (-ETIMEDOUT, the connect(2) error, -ENAMETOOLONG). */
int ipc_client_open(const char *path, int timeout_ms,
    struct ipc_client **cl_r, const char **errstr_r);

/* Send request, with fd unless it is -1 (fd stays the caller's).
 * Returns 0, -ETIMEDOUT, or the write error. */
int ipc_client_send(struct ipc_client *cl, const struct attr_list *request,
    int fd, int timeout_ms, const char **errstr_r);

/*
 * Read the next message into *reply_r (the caller frees it); replies to
 * pipelined requests come in order. Descriptors in replies are closed.
 * Returns 0, -ENOTCONN when the server closed the connection between
 * messages, -ECONNRESET when it closed in the middle of one, -EPROTO for a
 * malformed reply (the connection is of no further use), -ETIMEDOUT, or
 * the read error.
 */
int ipc_client_recv(struct ipc_client *cl, struct attr_list **reply_r,
    int timeout_ms, const char **errstr_r);

/* Close the connection; *clp becomes NULL. NULL is fine. */
void ipc_client_free(struct ipc_client **clp);

/*
 * A blocking request for command-line tools: connect to path, send
 * request, read one reply into *reply_r (the caller frees it). timeout_ms
 * bounds the whole exchange (negative: no limit). Descriptors that come
 * with the reply are closed. Returns 0, or a negative errno (-ETIMEDOUT,
 * -ECONNRESET when the server hangs up before a whole reply, -EPROTO for
 * a malformed reply, a connect or I/O error) with *errstr_r saying what
 * failed.
 */
int ipc_call(const char *path, const struct attr_list *request,
    struct attr_list **reply_r, int timeout_ms, const char **errstr_r);

/* ipc_call() sending fd with the request. fd stays the caller's. */
int ipc_call_fd(const char *path, const struct attr_list *request, int fd,
    struct attr_list **reply_r, int timeout_ms, const char **errstr_r);

/*
 * The credentials of the process at the other end of the UNIX socket fd
 * when it connected (SO_PEERCRED). Any result pointer may be NULL.
 * Returns 0 or a negative errno.
 */
int ipc_peer_cred(int fd, uid_t *uid_r, gid_t *gid_r, pid_t *pid_r);

#endif
