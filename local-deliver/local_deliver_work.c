/*
 * local_deliver_work.c - the blocking half of local-deliver: read the queue
 * file, find each recipient's mailbox in user_maps and stream the message
 * into its Maildir through lib/mailstore, with Return-Path: and
 * Delivered-To: prepended (RFC 5321 4.4). Every failure becomes a status
 * for the recipient (RFC 3463): temporary ones 4.x.x, so mail is never lost.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "address.h"
#include "agent.h"
#include "auth.h"
#include "buf.h"
#include "conf.h"
#include "local_deliver.h"
#include "log.h"
#include "mailstore.h"
#include "queue_file.h"
#include "resolve.h"
#include "xalloc.h"

/* Header bytes searched for Delivered-To: loops; a longer header is odd. */
#define LD_HEADER_MAX (256 * 1024)
/* Bytes copied per write into the mailbox. */
#define LD_CHUNK (64 * 1024)

int
ld_setup_new(const struct conf *conf, struct ld_setup **setup_r,
    char **errstr_r)
{
	struct ld_setup *s = xcalloc(1, sizeof(*s));
	int r;

	if ((r = resolve_open(conf, &s->resolve, errstr_r)) < 0) {
		free(s);
		return r;
	}
	pthread_mutex_init(&s->resolve_lock, NULL);
	s->mail_directory = xstrdup(conf_str(conf, "mail_directory"));
	s->delimiter = xstrdup(conf_str(conf, "recipient_delimiter"));
	s->plus_folders = conf_bool(conf, "local_plus_folders");
	s->quota_bounce = conf_bool(conf, "local_quota_bounce");
	s->max_rcpts = (size_t)conf_int(conf, "local_request_recipients");
	s->refs = 1;
	*setup_r = s;
	return 0;
}

void
ld_setup_unref(struct ld_setup **setup)
{
	struct ld_setup *s = *setup;

	*setup = NULL;
	if (s == NULL || --s->refs > 0)
		return;
	resolve_free(&s->resolve);
	pthread_mutex_destroy(&s->resolve_lock);
	free(s->mail_directory);
	free(s->delimiter);
	free(s);
}

int
ld_address_split(const char *address, const char *delimiter, char **key_r,
    char **ext_r)
{
	struct address *a = NULL, *user = NULL;
	const char *local, *domain, *at, *errstr;
	size_t llen, cut;
	struct buf q;
	char *key;

	*key_r = *ext_r = NULL;
	if (address[0] == '"') {
		/*
		 * The queue holds a quoted local part as the client sent it
		 * ("alice+a b"@...); smtpd accepted it on the unquoted one,
		 * so user and extension are cut from that, too.
		 */
		if (address_parse_mailbox(address, strlen(address),
		    ADDRESS_SMTPUTF8, &a, &errstr) < 0)
			return -EINVAL;
		local = a->local;
		llen = strlen(local);
		domain = a->domain;
	} else {
		if ((at = strrchr(address, '@')) == NULL || at == address ||
		    at[1] == '\0')
			return -EINVAL;
		local = address;
		llen = (size_t)(at - address);
		domain = at + 1;
	}
	cut = llen;
	if (delimiter != NULL && *delimiter != '\0')
		for (size_t i = 0; i < llen; i++)
			if (strchr(delimiter, local[i]) != NULL) {
				cut = i;
				break;
			}
	/* "+tag@dom" has no user: keep it whole, the lookup will fail. */
	if (cut == 0)
		cut = llen;
	/*
	 * The key is the user part in the queue's canonical form: as it is
	 * when that parses (a dot-atom), else quoted as address.c quotes it.
	 * A part that fits neither (too long once quoted) is looked up as
	 * it is; no table key can match it.
	 */
	key = xasprintf("%.*s@%s", (int)cut, local, domain);
	if (address_parse_mailbox(key, strlen(key), ADDRESS_SMTPUTF8, &user,
	    &errstr) < 0) {
		buf_init(&q, 0);
		buf_puts(&q, "\"");
		for (size_t i = 0; i < cut; i++) {
			if (local[i] == '"' || local[i] == '\\')
				buf_puts(&q, "\\");
			buf_append(&q, &local[i], 1);
		}
		buf_printf(&q, "\"@%s", domain);
		if (address_parse_mailbox(q.data, q.len, ADDRESS_SMTPUTF8,
		    &user, &errstr) == 0) {
			free(key);
			key = xstrdup(user->canonical);
		}
		buf_release(&q);
	}
	address_free(&user);
	for (char *p = key; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	*key_r = key;
	if (cut < llen)
		*ext_r = xstrndup(local + cut + 1, llen - cut - 1);
	address_free(&a);
	return 0;
}

/* Compare a header value with address: case, <>, blanks ignored. */
static int
value_matches(const char *v, size_t n, const char *address)
{
	size_t alen = strlen(address);

	while (n > 0 && (isspace((unsigned char)*v) || *v == '<')) {
		v++;
		n--;
	}
	while (n > 0 && (isspace((unsigned char)v[n - 1]) || v[n - 1] == '>'))
		n--;
	return n == alen && strncasecmp(v, address, n) == 0;
}

int
ld_header_delivered_to(const char *msg, size_t len, const char *address)
{
	static const char name[] = "delivered-to:";
	const size_t nlen = sizeof(name) - 1;
	size_t i = 0;

	while (i < len) {
		size_t eol = i;

		while (eol < len && msg[eol] != '\n')
			eol++;
		/* An empty line ends the header section (RFC 5322 2.1). */
		if (eol == i || (eol == i + 1 && msg[i] == '\r'))
			return 0;
		if (eol - i > nlen && strncasecmp(msg + i, name, nlen) == 0) {
			/* Unfold: continuation lines begin with a blank. */
			struct buf v;
			size_t j = i + nlen;
			int hit;

			buf_init(&v, LD_HEADER_MAX);
			for (;;) {
				size_t e = eol;
				if (e > j && msg[e - 1] == '\r')
					e--;
				buf_append(&v, msg + j, e - j);
				if (eol + 1 >= len || (msg[eol + 1] != ' ' &&
				    msg[eol + 1] != '\t'))
					break;
				j = eol + 1;
				eol = j;
				while (eol < len && msg[eol] != '\n')
					eol++;
			}
			hit = value_matches(v.data != NULL ? v.data : "",
			    v.len, address);
			buf_release(&v);
			if (hit)
				return 1;
		}
		i = eol + 1;
	}
	return 0;
}

static void
rcpt_set(struct agent_rcpt *rc, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
rcpt_set(struct agent_rcpt *rc, const char *status, const char *fmt, ...)
{
	va_list ap;

	snprintf(rc->status, sizeof(rc->status), "%s", status);
	free(rc->text);
	va_start(ap, fmt);
	rc->text = xvasprintf(fmt, ap);
	va_end(ap);
}

/* The status for a mailstore failure: never a bounce but for quota. */
static void
store_failure(const struct ld_setup *s, struct agent_rcpt *rc, int r,
    const char *err)
{
	if (r == -EDQUOT)
		rcpt_set(rc, s->quota_bounce ? "5.2.2" : "4.2.2",
		    "mailbox full");
	else if (r == -ENOSPC)
		rcpt_set(rc, "4.3.1", "mail system full: %s", err);
	else
		rcpt_set(rc, "4.2.0", "cannot write mailbox: %s", err);
}

/* Header text is copied with control characters made harmless. */
static void
put_safe(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char ch = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		buf_append(b, &ch, 1);
	}
}

/* The folder a +tag delivery goes to: tag when it exists, else INBOX. */
static char *
plus_folder(struct mailstore *store, const char *ext)
{
	char **names = NULL;
	size_t n = 0;
	const char *err;
	char *folder = NULL;

	if (mailstore_folder_list(store, &names, &n, &err) < 0)
		return xstrdup(MAILSTORE_INBOX);
	for (size_t i = 0; i < n && folder == NULL; i++)
		if (strcmp(names[i], ext) == 0)
			folder = xstrdup(names[i]);
	for (size_t i = 0; i < n && folder == NULL; i++)
		if (strcasecmp(names[i], ext) == 0)
			folder = xstrdup(names[i]);
	mailstore_names_free(&names, n);
	return folder != NULL ? folder : xstrdup(MAILSTORE_INBOX);
}

/* Copy the message after the prepended header; 0 or mailstore's error. */
static int
copy_message(struct queue_file *qf, struct mailstore_delivery *d, char *chunk,
    const char **err_r)
{
	uint64_t off = 0;

	for (;;) {
		ssize_t n = queue_file_read_msg(qf, chunk, LD_CHUNK, off);
		int r;

		if (n == 0)
			return 0;
		if (n < 0) {
			*err_r = "cannot read the queue file";
			return -EIO;
		}
		if ((r = mailstore_deliver_write(d, chunk, (size_t)n,
		    err_r)) < 0)
			return r;
		off += (uint64_t)n;
	}
}

static void
deliver_one(struct ld_job *job, struct queue_file *qf, struct agent_rcpt *rc,
    const char *header, size_t hlen, const char *eol, char *chunk)
{
	struct ld_setup *s = job->setup;
	const struct queue_env *env = queue_file_env(qf);
	struct auth_user *user = NULL;
	struct mailstore *store = NULL;
	struct mailstore_delivery *d = NULL;
	char *key = NULL, *ext = NULL, *value = NULL, *path = NULL;
	char *folder = NULL;
	const char *err = "";
	struct buf pre;
	uint32_t uid;
	int r;

	buf_init(&pre, 0);
	if (rc->index >= env->nrcpt ||
	    strcmp(env->rcpts[rc->index].address, rc->address) != 0) {
		rcpt_set(rc, "5.5.4", "no such recipient in queue file");
		goto out;
	}
	if (ld_address_split(rc->address, s->delimiter, &key, &ext) < 0) {
		rcpt_set(rc, "5.1.3", "bad recipient address syntax");
		goto out;
	}
	pthread_mutex_lock(&s->resolve_lock);
	r = resolve_user(s->resolve, key, &value);
	pthread_mutex_unlock(&s->resolve_lock);
	if (r == -ENOENT) {
		rcpt_set(rc, "5.1.1", "no such user");
		goto out;
	}
	if (r < 0) {
		rcpt_set(rc, "4.3.0", "user table lookup failed");
		goto out;
	}
	if (auth_user_parse(key, value, &user, &err) < 0) {
		rcpt_set(rc, "4.3.5", "bad user table entry: %s", err);
		goto out;
	}
	if (ld_header_delivered_to(header, hlen, rc->address)) {
		rcpt_set(rc, "5.4.6", "mail forwarding loop for %s",
		    rc->address);
		goto out;
	}
	path = xasprintf("%s/%s", s->mail_directory, user->mailbox);
	if ((r = mailstore_open(path, &store, &err)) < 0) {
		store_failure(s, rc, r, err);
		goto out;
	}
	mailstore_set_quota(store, user->quota, 0);
	if (s->plus_folders && ext != NULL && *ext != '\0')
		folder = plus_folder(store, ext);
	else
		folder = xstrdup(MAILSTORE_INBOX);

	buf_puts(&pre, "Return-Path: <");
	put_safe(&pre, env->sender);
	buf_printf(&pre, ">%sDelivered-To: ", eol);
	put_safe(&pre, rc->address);
	buf_puts(&pre, eol);

	if ((r = mailstore_deliver_begin(store, folder,
	    pre.len + queue_file_msg_size(qf), &d, &err)) < 0 ||
	    (r = mailstore_deliver_write(d, pre.data, pre.len, &err)) < 0 ||
	    (r = copy_message(qf, d, chunk, &err)) < 0 ||
	    (r = mailstore_deliver_commit(&d, 0, &uid, &err)) < 0) {
		mailstore_deliver_abort(&d);
		store_failure(s, rc, r, err);
		goto out;
	}
	if (strcmp(folder, MAILSTORE_INBOX) == 0)
		rcpt_set(rc, "2.0.0", "delivered to maildir");
	else
		rcpt_set(rc, "2.0.0", "delivered to maildir folder %s",
		    folder);
out:
	mailstore_deliver_abort(&d);
	mailstore_free(&store);
	auth_user_free(&user);
	buf_release(&pre);
	free(folder);
	free(path);
	free(value);
	free(key);
	free(ext);
}

static void
log_result(const struct ld_job *job, const struct agent_rcpt *rc, double delay)
{
	const char *what = rc->status[0] == '2' ? "sent" :
	    rc->status[0] == '5' ? "bounced" : "deferred";

	log_info("%s: to=<%s>, relay=local, delay=%.2f, dsn=%s, "
	    "status=%s (%s)", job->req->queue_id, rc->address, delay, rc->status,
	    what, rc->text);
}

/* Read the header section (for loop detection) and guess the line end. */
static void
read_header(struct queue_file *qf, struct buf *hdr)
{
	uint64_t off = 0;

	while (hdr->len < LD_HEADER_MAX) {
		char *p = buf_space(hdr, LD_CHUNK);
		ssize_t n;

		if (p == NULL)
			break;
		n = queue_file_read_msg(qf, p, LD_CHUNK, off);
		if (n <= 0)
			break;
		buf_commit(hdr, (size_t)n);
		off += (uint64_t)n;
		if (memmem(hdr->data, hdr->len, "\n\n", 2) != NULL ||
		    memmem(hdr->data, hdr->len, "\n\r\n", 3) != NULL)
			break;
	}
}

void
ld_deliver_job(struct ld_job *job)
{
	struct queue_file *qf = NULL;
	const struct queue_env *env;
	const char *err = NULL;
	struct buf hdr;
	const char *eol = "\n";
	char *chunk;
	struct timeval now;
	double delay;
	int r;

	if ((r = queue_file_fdopen(job->req->fd, 0, &qf, &err)) < 0) {
		close(job->req->fd);
		job->req->fd = -1;
		for (size_t i = 0; i < job->req->nrcpt; i++) {
			rcpt_set(&job->req->rcpts[i], "4.3.0",
			    "cannot read queue file: %s", err);
			log_result(job, &job->req->rcpts[i], 0);
		}
		return;
	}
	job->req->fd = -1;
	env = queue_file_env(qf);
	if (strcmp(env->id, job->req->queue_id) != 0) {
		for (size_t i = 0; i < job->req->nrcpt; i++) {
			rcpt_set(&job->req->rcpts[i], "5.5.4",
			    "queue file is not %s", job->req->queue_id);
			log_result(job, &job->req->rcpts[i], 0);
		}
		queue_file_free(&qf);
		return;
	}
	buf_init(&hdr, LD_HEADER_MAX + LD_CHUNK + 1);
	read_header(qf, &hdr);
	if (hdr.len > 0) {
		char *nl = memchr(hdr.data, '\n', hdr.len);
		if (nl != NULL && nl > hdr.data && nl[-1] == '\r')
			eol = "\r\n";
	}
	chunk = xmalloc(LD_CHUNK);
	for (size_t i = 0; i < job->req->nrcpt; i++) {
		deliver_one(job, qf, &job->req->rcpts[i],
		    hdr.data != NULL ? hdr.data : "", hdr.len, eol, chunk);
		gettimeofday(&now, NULL);
		delay = (double)(now.tv_sec - env->arrival_sec) +
		    (double)(now.tv_usec - env->arrival_usec) / 1e6;
		if (delay < 0)
			delay = 0;
		log_result(job, &job->req->rcpts[i], delay);
	}
	free(chunk);
	buf_release(&hdr);
	queue_file_free(&qf);
}
