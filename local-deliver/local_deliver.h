/*
 * local_deliver.h - local-deliver's private interface: the settings shared
 * by requests, one delivery request (a job) and the blocking delivery work
 * run on the libuv thread pool. Agent protocol: pochta-local-deliver(8).
 */
#ifndef LOCAL_DELIVER_H
#define LOCAL_DELIVER_H

#include <pthread.h>
#include <stddef.h>

#include <uv.h>

struct agent_req;
struct conf;
struct resolve;

/*
 * What a request needs from the configuration. Replaced on reload; jobs
 * hold a reference so a reload never pulls tables from under a worker.
 * refs is only touched on the loop thread.
 */
struct ld_setup {
	unsigned refs;
	struct resolve *resolve;
	pthread_mutex_t resolve_lock;	/* resolve is not thread-safe */
	char *mail_directory;
	char *delimiter;		/* recipient_delimiter characters */
	int plus_folders;
	int quota_bounce;
	size_t max_rcpts;
};

/*
 * One request of lib/agent on its way through the thread pool, with the
 * settings it started under.
 */
struct ld_job {
	uv_work_t work;
	struct agent_req *req;
	struct ld_setup *setup;
};

/* Build the settings from conf: 0, or -errno and a malloc'd *errstr_r. */
int ld_setup_new(const struct conf *conf, struct ld_setup **setup_r,
    char **errstr_r);
void ld_setup_unref(struct ld_setup **setup);

/*
 * Deliver the request's message to each recipient and fill in its status
 * and text; logs one line per recipient. Blocking: thread pool only.
 * Closes the request's descriptor (job->req->fd becomes -1).
 */
void ld_deliver_job(struct ld_job *job);

/*
 * Split address into the user table key (lower case, extension removed,
 * in the queue's canonical form) and the extension (NULL if none). A quoted
 * local part is unquoted first, so the extension is cut where smtpd cut it.
 * 0, or -EINVAL for an address without '@', with an empty local part, or
 * with a quoted one that does not parse. Pure; exported for tests.
 */
int ld_address_split(const char *address, const char *delimiter,
    char **key_r, char **ext_r);

/*
 * Whether the header section of msg (len bytes, maybe cut short) holds a
 * Delivered-To: field equal to address, compared without regard to case
 * and ignoring angle brackets and white space. Pure; exported for tests.
 */
int ld_header_delivered_to(const char *msg, size_t len, const char *address);

#endif
