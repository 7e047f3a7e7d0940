/*
 * pochta_queue.c - `pochta queue` and mailq(1) (pochta-queue(8)): list and
 * show queue files (pochta-queue(5)) by reading them, never changing them;
 * every change is a request to qmgr (pochta-protocol(7)), so the command
 * never races it. A file that vanishes while listed was moved by qmgr and
 * is skipped; a corrupt one is listed as such, never a crash or a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "attr.h"
#include "conf.h"
#include "ipc.h"
#include "pochta.h"
#include "queue.h"
#include "queue_file.h"
#include "xalloc.h"

/* qmgr may be busy with a large queue before it gets to answer. */
#define QCLI_TIMEOUT_MS 30000
/* Bytes of message copied to stdout at a time by `show`. */
#define QCLI_CHUNK 65536
/* How often `show` looks through the queues for a file qmgr keeps moving. */
#define QCLI_SHOW_PASSES 3

/*
 * The queues listed, in the order qmgr normally moves a message through
 * them: a file qmgr moves on while we list is found again in its new queue
 * rather than missed, and not listed twice.
 */
static const char *const qcli_dirs[] = {
	QUEUE_INCOMING, QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT,
};
#define QCLI_NDIRS (sizeof(qcli_dirs) / sizeof(qcli_dirs[0]))

/* One message as listed, readable or not. */
struct qcli_entry {
	const char *id;
	const char *queue;
	uint64_t size;
	int64_t arrival;
	int corrupt;			/* in corrupt/, or failed to parse */
	const char *error;		/* why it cannot be read, or NULL */
	const struct queue_env *env;	/* NULL when it cannot be read */
};

struct qcli_list {
	const char *spool;
	int json;
	char **ids[QCLI_NDIRS];		/* each queue's scan, sorted */
	size_t nids[QCLI_NDIRS];
	char *listed[QCLI_NDIRS];	/* whether ids[d][i] was listed */
	size_t count;
	uint64_t bytes;
	int rc;
};

static int
qcli_usage(void)
{
	fprintf(stderr, "usage: pochta queue list [--json]\n"
	    "       pochta queue show ID\n"
	    "       pochta queue flush\n"
	    "       pochta queue hold|release|delete|requeue ID|ALL\n"
	    "       mailq [-C DIR]\n");
	return EXIT_USAGE;
}

/*
 * The length of the valid UTF-8 sequence at s (n bytes left), its code
 * point in *cp; 0 when the bytes there are not UTF-8 (overlong forms,
 * surrogates and values past U+10FFFF are not).
 */
static size_t
qcli_utf8(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		c &= 0x1f;
		min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		c &= 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		c &= 0x07;
		min = 0x10000;
	} else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Whether code point c would drive a terminal: C0, DEL or C1. */
static int
qcli_cp_is_control(uint32_t c)
{
	return c < 0x20 || (c >= 0x7f && c < 0xa0);
}

/*
 * Write s for a terminal: envelope values come from SMTP clients, so
 * control characters and bytes that are not UTF-8 become %XX, and no value
 * can break a line or send escape sequences.
 */
static void
qcli_put_text(FILE *fp, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);

	while (left > 0) {
		uint32_t c;
		size_t len = qcli_utf8(p, left, &c);

		if (len == 0 || qcli_cp_is_control(c)) {
			if (len == 0)
				len = 1;
			for (size_t i = 0; i < len; i++)
				fprintf(fp, "%%%02X", p[i]);
		} else
			fwrite(p, 1, len, fp);
		p += len;
		left -= len;
	}
}

/*
 * Write s as a JSON string (RFC 8259 7). Bytes that are not UTF-8 become
 * U+FFFD, so the document is always valid UTF-8; controls are \u escapes.
 */
static void
qcli_put_json(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);

	putchar('"');
	while (left > 0) {
		uint32_t c;
		size_t len = qcli_utf8(p, left, &c);

		if (len == 0) {
			fputs("\\ufffd", stdout);
			len = 1;
		} else if (c == '"' || c == '\\')
			printf("\\%c", (int)c);
		else if (qcli_cp_is_control(c))
			printf("\\u%04" PRIx32, c);
		else
			fwrite(p, 1, len, stdout);
		p += len;
		left -= len;
	}
	putchar('"');
}

/* A JSON string, or null for NULL. */
static void
qcli_put_json_or_null(const char *s)
{
	if (s == NULL)
		fputs("null", stdout);
	else
		qcli_put_json(s);
}

/* Local time as strftime(3) fmt, "?" when it cannot be shown. */
static void
qcli_time(int64_t sec, const char *fmt, char *out, size_t size)
{
	time_t t = (time_t)sec;
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL || strftime(out, size, fmt, &tm) == 0)
		snprintf(out, size, "?");
}

static void
qcli_list_text(const struct qcli_entry *e)
{
	const char *reason = NULL;
	char when[64];

	qcli_time(e->arrival, "%a %b %e %H:%M:%S", when, sizeof(when));
	printf("%-20s %-8s %8" PRIu64 " %-20s ", e->id, e->queue, e->size,
	    when);
	if (e->env == NULL) {
		printf("(%s: ", e->corrupt ? "corrupt" : "unreadable");
		qcli_put_text(stdout, e->error);
		printf(")\n\n");
		return;
	}
	/* Postfix's mailq calls the null sender MAILER-DAEMON too. */
	qcli_put_text(stdout, e->env->sender[0] != '\0' ? e->env->sender :
	    "MAILER-DAEMON");
	putchar('\n');
	for (size_t i = 0; i < e->env->nrcpt; i++) {
		const struct queue_rcpt *r = &e->env->rcpts[i];

		if (r->status != QUEUE_RCPT_PENDING)
			continue;
		/* As Postfix: the reason once above the recipients it is
		 * shared by. */
		if (r->defer_reason != NULL && (reason == NULL ||
		    strcmp(reason, r->defer_reason) != 0)) {
			putchar('(');
			qcli_put_text(stdout, r->defer_reason);
			printf(")\n");
			reason = r->defer_reason;
		}
		printf("%60s", "");
		qcli_put_text(stdout, r->address);
		putchar('\n');
	}
	putchar('\n');
}

static void
qcli_list_json_rcpts(const struct queue_env *env)
{
	int first = 1;

	printf(", \"recipients\": [");
	for (size_t i = 0; env != NULL && i < env->nrcpt; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];

		if (r->status != QUEUE_RCPT_PENDING)
			continue;
		printf("%s{\"index\": %zu, \"address\": ", first ? "" : ", ",
		    i);
		qcli_put_json(r->address);
		printf(", \"delay_reason\": ");
		qcli_put_json_or_null(r->defer_reason);
		printf(", \"deferrals\": %u, \"last_deferred\": %" PRId64 "}",
		    r->ndefer, r->defer_time);
		first = 0;
	}
	putchar(']');
}

static void
qcli_list_json(const struct qcli_entry *e, int first)
{
	const struct queue_env *env = e->env;

	printf("%s{\"queue_name\": \"%s\", \"queue_id\": \"%s\", "
	    "\"arrival_time\": %" PRId64 ", \"message_size\": %" PRIu64
	    ", \"corrupt\": %s, \"error\": ", first ? "\n" : ",\n", e->queue,
	    e->id, e->arrival, e->size, e->corrupt ? "true" : "false");
	qcli_put_json_or_null(e->error);
	printf(", \"sender\": ");
	qcli_put_json_or_null(env != NULL ? env->sender : NULL);
	printf(", \"next_retry\": %" PRId64, env != NULL ? env->next_retry :
	    0);
	qcli_list_json_rcpts(env);
	putchar('}');
}

static void
qcli_list_put(struct qcli_list *l, const struct qcli_entry *e)
{
	if (l->json)
		qcli_list_json(e, l->count == 0);
	else {
		if (l->count == 0)
			printf("%-20s %-8s %8s %-20s %s\n",
			    "-Queue ID-----------", "-Queue--", "--Size--",
			    "----Arrival Time----",
			    "-Sender/Recipient-------");
		qcli_list_text(e);
	}
	l->count++;
	l->bytes += e->size;
}

/*
 * Open the queue file at path read-only: 0 and *qf_r, or a negative errno
 * and *errstr_r (-ENOENT: it is gone). Not queue_file_open(): whatever an
 * accident left in the spool must not hang the command (a FIFO) or make it
 * read outside the spool (a symbolic link). *size_r gets the file's size.
 */
static int
qcli_open(const char *path, struct queue_file **qf_r, uint64_t *size_r,
    const char **errstr_r)
{
	struct stat st;
	int fd, flags, r;

	*size_r = 0;
	*errstr_r = NULL;
	if (path == NULL) {
		*errstr_r = "not a queue file name";
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || (flags = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*size_r = (uint64_t)st.st_size;
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		*errstr_r = "not a regular file";
		return -EINVAL;
	}
	if ((r = queue_file_fdopen(fd, 0, qf_r, errstr_r)) < 0) {
		close(fd);
		if (r != -EBADMSG)
			*errstr_r = NULL;
	}
	return r;
}

/* Why qcli_open() failed, for a person. */
static const char *
qcli_open_error(int r, const char *errstr)
{
	return errstr != NULL ? errstr : strerror(-r);
}

/*
 * List the file id of queue d. 1 when listed, 0 when it is gone (qmgr
 * moved or removed it since the scan).
 */
static int
qcli_list_one(struct qcli_list *l, size_t d, const char *id)
{
	struct qcli_entry e = {.id = id, .queue = qcli_dirs[d]};
	char *path = queue_path(l->spool, qcli_dirs[d], id);
	struct queue_file *qf = NULL;
	const char *err;
	int r;

	r = qcli_open(path, &qf, &e.size, &err);
	free(path);
	if (r == -ENOENT)
		return 0;
	e.corrupt = strcmp(qcli_dirs[d], QUEUE_CORRUPT) == 0;
	if (r < 0) {
		/* What is left to show of it comes from its name. */
		e.arrival = (int64_t)(queue_id_time_us(id) / 1000000);
		if (r == -EBADMSG)
			e.corrupt = 1;
		else
			l->rc = 1;
		e.error = qcli_open_error(r, err);
	} else {
		e.env = queue_file_env(qf);
		e.arrival = e.env->arrival_sec;
		e.size = queue_file_msg_size(qf);
	}
	qcli_list_put(l, &e);
	queue_file_free(&qf);
	return 1;
}

static int
qcli_id_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether id was already listed from a queue before d. */
static int
qcli_listed_before(const struct qcli_list *l, size_t d, const char *id)
{
	for (size_t j = 0; j < d; j++) {
		char **hit;

		if (l->nids[j] == 0)
			continue;
		hit = bsearch(&id, l->ids[j], l->nids[j], sizeof(char *),
		    qcli_id_cmp);
		if (hit != NULL && l->listed[j][hit - l->ids[j]])
			return 1;
	}
	return 0;
}

static void
qcli_list_queue(struct qcli_list *l, size_t d)
{
	int r;

	r = queue_scan(l->spool, qcli_dirs[d], &l->ids[d], &l->nids[d]);
	if (r < 0) {
		/* A queue directory not made yet holds nothing. */
		if (r != -ENOENT) {
			pochta_err("%s/%s: %s", l->spool, qcli_dirs[d],
			    strerror(-r));
			l->rc = 1;
		}
		l->ids[d] = NULL;
		l->nids[d] = 0;
		return;
	}
	l->listed[d] = xcalloc(l->nids[d] + 1, 1);
	for (size_t i = 0; i < l->nids[d]; i++) {
		if (!qcli_listed_before(l, d, l->ids[d][i]))
			l->listed[d][i] = (char)qcli_list_one(l, d,
			    l->ids[d][i]);
	}
}

static int
qcli_list(const char *spool, int json)
{
	struct qcli_list l = {.spool = spool, .json = json};
	struct stat st;

	/* Queue directories are made as needed, the spool is not. */
	if (stat(spool, &st) < 0) {
		pochta_err("%s: %s", spool, strerror(errno));
		return 1;
	}
	if (json)
		printf("{\"messages\": [");
	for (size_t d = 0; d < QCLI_NDIRS; d++)
		qcli_list_queue(&l, d);
	if (json)
		printf("%s], \"count\": %zu, \"bytes\": %" PRIu64 "}\n",
		    l.count > 0 ? "\n" : "", l.count, l.bytes);
	else if (l.count == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %" PRIu64 " Kbytes in %zu Request%s.\n",
		    (l.bytes + 1023) / 1024, l.count, l.count == 1 ? "" : "s");
	for (size_t d = 0; d < QCLI_NDIRS; d++) {
		if (l.ids[d] != NULL)
			queue_ids_free(&l.ids[d]);
		free(l.listed[d]);
	}
	return l.rc;
}

/* "name: value" for an optional envelope string. */
static void
qcli_show_str(const char *name, const char *value)
{
	if (value == NULL)
		return;
	printf("%s: ", name);
	qcli_put_text(stdout, value);
	putchar('\n');
}

static const char *
qcli_status_name(char status)
{
	switch (status) {
	case QUEUE_RCPT_PENDING:
		return "pending";
	case QUEUE_RCPT_DELIVERED:
		return "delivered";
	case QUEUE_RCPT_BOUNCED:
		return "bounced";
	case QUEUE_RCPT_FORWARDED:
		return "forwarded";
	}
	return "unknown";
}

static void
qcli_show_rcpt(size_t i, const struct queue_rcpt *r)
{
	char tmp[64], when[64];

	printf("rcpt: %zu %s ", i, qcli_status_name(r->status));
	qcli_put_text(stdout, r->address);
	if (r->orcpt != NULL) {
		printf(" orcpt=");
		qcli_put_text(stdout, r->orcpt);
	}
	if (r->notify != 0)
		printf(" notify=%s",
		    queue_file_notify_str(r->notify, tmp, sizeof(tmp)));
	putchar('\n');
	if (r->ndefer == 0)
		return;
	qcli_time(r->defer_time, "%a %b %e %H:%M:%S %Y", when, sizeof(when));
	printf("defer: %zu %u time%s, last %s: ", i, r->ndefer,
	    r->ndefer == 1 ? "" : "s", when);
	qcli_put_text(stdout, r->defer_reason != NULL ? r->defer_reason : "");
	putchar('\n');
}

/* The envelope as "name: value" lines, ended by an empty line. */
static void
qcli_show_env(const char *queue, const struct queue_env *env)
{
	static const char *const ret[] = {NULL, "FULL", "HDRS"};
	static const char *const body[] = {"7BIT", "8BITMIME", "BINARYMIME"};
	char when[64];

	printf("id: %s\nqueue: %s\n", env->id, queue);
	qcli_time(env->arrival_sec, "%a %b %e %H:%M:%S %Y %z", when,
	    sizeof(when));
	printf("arrival: %s (%" PRId64 ".%06ld)\n", when, env->arrival_sec,
	    env->arrival_usec);
	printf("size: %" PRIu64 "\n", env->msg_size);
	qcli_show_str("sender", env->sender[0] != '\0' ? env->sender : "<>");
	qcli_show_str("client_addr", env->client_addr);
	qcli_show_str("client_name", env->client_name);
	qcli_show_str("helo", env->helo);
	qcli_show_str("protocol", env->protocol);
	qcli_show_str("auth_user", env->auth_user);
	if (env->ret >= QUEUE_RET_FULL && env->ret <= QUEUE_RET_HDRS)
		qcli_show_str("ret", ret[env->ret]);
	qcli_show_str("envid", env->envid);
	if (env->body <= QUEUE_BODY_BINARYMIME)
		qcli_show_str("body", body[env->body]);
	qcli_show_str("smtputf8", env->smtputf8 ? "yes" : "no");
	if (env->next_retry != 0) {
		qcli_time(env->next_retry, "%a %b %e %H:%M:%S %Y %z", when,
		    sizeof(when));
		qcli_show_str("next_retry", when);
	}
	for (size_t i = 0; i < env->nrcpt; i++)
		qcli_show_rcpt(i, &env->rcpts[i]);
	putchar('\n');
}

/* Copy the message to stdout byte for byte. 0 or 1 with a message. */
static int
qcli_show_msg(struct queue_file *qf, const char *id)
{
	char *chunk = xmalloc(QCLI_CHUNK);
	uint64_t off = 0;
	ssize_t n;
	int rc = 0;

	while ((n = queue_file_read_msg(qf, chunk, QCLI_CHUNK, off)) > 0) {
		if (fwrite(chunk, 1, (size_t)n, stdout) != (size_t)n)
			break;
		off += (uint64_t)n;
	}
	if (n < 0) {
		fflush(stdout);
		pochta_err("%s: %s", id, n == -EBADMSG ?
		    "the file is shorter than its envelope says" :
		    strerror((int)-n));
		rc = 1;
	}
	free(chunk);
	return rc;
}

/*
 * Find id in the queues and show it. qmgr may move the file between our
 * looking in one queue and the next, so look a few times before saying it
 * is not there.
 */
static int
qcli_show(const char *spool, const char *id)
{
	for (int pass = 0; pass < QCLI_SHOW_PASSES; pass++) {
		for (size_t d = 0; d < QCLI_NDIRS; d++) {
			char *path = queue_path(spool, qcli_dirs[d], id);
			struct queue_file *qf = NULL;
			const char *err;
			uint64_t size;
			int r, rc;

			r = qcli_open(path, &qf, &size, &err);
			free(path);
			if (r == -ENOENT)
				continue;
			if (r < 0) {
				pochta_err("%s: %s in %s/: %s", id,
				    r == -EBADMSG ? "corrupt" : "unreadable",
				    qcli_dirs[d], qcli_open_error(r, err));
				return 1;
			}
			qcli_show_env(qcli_dirs[d], queue_file_env(qf));
			rc = qcli_show_msg(qf, id);
			queue_file_free(&qf);
			return rc;
		}
	}
	pochta_err("%s: no such message in the queue", id);
	return 1;
}

/* Print qmgr's answer: the text on stdout for 2.x.x, else on stderr. */
static int
qcli_control_reply(const struct attr_list *reply)
{
	const char *status = attr_get_str(reply, "status");
	const char *text = attr_get_str(reply, "text");

	if (status == NULL || (status[0] != '2' && status[0] != '4' &&
	    status[0] != '5') || status[1] != '.') {
		pochta_err("bad answer from the queue manager");
		return 1;
	}
	if (text == NULL)
		text = status;
	if (status[0] == '2') {
		qcli_put_text(stdout, text);
		putchar('\n');
		return 0;
	}
	fputs("pochta: ", stderr);
	qcli_put_text(stderr, text);
	fputc('\n', stderr);
	return 1;
}

/*
 * Send request (and queue_id=id unless id is NULL) to qmgr. Changes go
 * through qmgr only: it alone knows which files it is delivering.
 */
static int
qcli_control(const char *spool, const char *request, const char *id)
{
	char *path = xasprintf("%s/private/qmgr", spool);
	struct attr_list *req = attr_list_new(), *reply = NULL;
	const char *err = "";
	int r, rc = 1;

	attr_add_str(req, "request", request);
	if (id != NULL)
		attr_add_str(req, "queue_id", id);
	r = ipc_call(path, req, &reply, QCLI_TIMEOUT_MS, &err);
	if (r == -ENOENT || r == -ECONNREFUSED)
		pochta_err("the queue manager is not running");
	else if (r < 0)
		pochta_err("%s: %s: %s", path, err, strerror(-r));
	else
		rc = qcli_control_reply(reply);
	attr_list_free(&reply);
	attr_list_free(&req);
	free(path);
	return rc;
}

/* The spool directory from the configuration in confdir, or NULL. */
static char *
qcli_spool(const char *confdir)
{
	struct conf *conf = NULL;
	char *err = NULL, *spool;

	if (conf_load(confdir != NULL ? confdir : conf_default_dir(), NULL, 0,
	    &conf, &err) < 0) {
		pochta_err("%s", err);
		free(err);
		return NULL;
	}
	spool = xstrdup(conf_str(conf, "queue_directory"));
	conf_free(&conf);
	return spool;
}

/* Whether the data reached stdout; a full disk or closed pipe is an error. */
static int
qcli_flush_stdout(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		pochta_err("standard output: %s", strerror(errno));
		return 1;
	}
	return rc;
}

static int
qcli_is_control_cmd(const char *cmd)
{
	return strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0 ||
	    strcmp(cmd, "delete") == 0 || strcmp(cmd, "requeue") == 0;
}

/* Check the arguments of `pochta queue CMD ...` before reading any file. */
static int
qcli_check_args(int argc, char **argv)
{
	const char *cmd = argv[1];

	if (strcmp(cmd, "list") == 0) {
		if (argc == 2 || (argc == 3 && strcmp(argv[2], "--json") == 0))
			return 0;
	} else if (strcmp(cmd, "flush") == 0) {
		if (argc == 2)
			return 0;
	} else if (strcmp(cmd, "show") == 0 || qcli_is_control_cmd(cmd)) {
		if (argc != 3)
			return qcli_usage();
		if (queue_id_valid(argv[2]) ||
		    (strcmp(cmd, "show") != 0 && strcmp(argv[2], "ALL") == 0))
			return 0;
		pochta_err("'%s' is not a queue ID", argv[2]);
		return EXIT_USAGE;
	} else
		pochta_err("unknown queue command '%s'", cmd);
	return qcli_usage();
}

/* mailq [-C DIR]: the listing, as sendmail -bp gives it. */
static int
qcli_mailq(int argc, char **argv)
{
	const char *confdir = NULL;
	char *spool;
	int ch, rc;

	optind = 0;
	opterr = 0;
	while ((ch = getopt(argc, argv, "C:c:")) != -1) {
		if (ch != 'C' && ch != 'c')
			return qcli_usage();
		confdir = optarg;
	}
	if (optind != argc)
		return qcli_usage();
	if ((spool = qcli_spool(confdir)) == NULL)
		return 1;
	rc = qcli_list(spool, 0);
	free(spool);
	return qcli_flush_stdout(rc);
}

int
pochta_queue_main(int argc, char **argv, const char *confdir)
{
	const char *name = strrchr(argv[0], '/');
	char *spool;
	int rc;

	name = name != NULL ? name + 1 : argv[0];
	if (strcmp(name, "mailq") == 0)
		return qcli_mailq(argc, argv);
	if (argc < 2)
		return qcli_usage();
	if ((rc = qcli_check_args(argc, argv)) != 0)
		return rc;
	if ((spool = qcli_spool(confdir)) == NULL)
		return 1;
	if (strcmp(argv[1], "list") == 0)
		rc = qcli_list(spool, argc == 3);
	else if (strcmp(argv[1], "show") == 0)
		rc = qcli_show(spool, argv[2]);
	else
		rc = qcli_control(spool, argv[1], argc == 3 ? argv[2] : NULL);
	free(spool);
	return qcli_flush_stdout(rc);
}
