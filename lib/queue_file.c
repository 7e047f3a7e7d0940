/*
 * queue_file.c - reading and updating queue files (queue_file.h, the format
 * in pochta-queue(5)): a fixed-width first line, the envelope, a blank line,
 * the message, then recipient records, an end record and what qmgr appends.
 * Anything malformed is -EBADMSG with a constant message; the reader never
 * trusts a number or a length from the file before checking it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "queue_file.h"
#include "xalloc.h"

struct queue_file {
	int fd;
	int writable;
	struct queue_env env;
	size_t rcpt_cap;
	off_t msg_off;
	off_t tail_off;		/* just past the message */
	off_t end_off;		/* end of the last complete record */
	off_t file_size;
};

/* A parse error: the message for *errstr_r. */
#define BAD(msg) (*errstr_r = (msg), -EBADMSG)

static const char hexdig[] = "0123456789ABCDEF";

int
queue_file_escape(struct buf *out, const char *src, size_t n)
{
	size_t start = out->len;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		char e[3] = { '%', hexdig[c >> 4], hexdig[c & 15] };
		int r;

		if (c < 0x21 || c == 0x7f || c == '%')
			r = buf_append(out, e, 3);
		else
			r = buf_append(out, &src[i], 1);
		if (r < 0) {
			out->len = start;
			if (out->data != NULL)
				out->data[start] = '\0';
			return r;
		}
	}
	return 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
queue_file_unescape(const char *src, size_t n, char **dst_r)
{
	char *d = xmalloc(n + 1);
	size_t j = 0;

	*dst_r = NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c < 0x21 || c == 0x7f)
			goto bad;
		if (c == '%') {
			int h, l;

			if (n - i < 3 || (h = hexval(src[i + 1])) < 0 ||
			    (l = hexval(src[i + 2])) < 0 || (h | l) == 0)
				goto bad;
			c = (unsigned char)(h << 4 | l);
			i += 2;
		}
		d[j++] = (char)c;
	}
	d[j] = '\0';
	*dst_r = d;
	return 0;
bad:
	free(d);
	return -EBADMSG;
}

const char *
queue_file_notify_str(unsigned notify, char *tmp, size_t size)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ QUEUE_NOTIFY_NEVER, "NEVER" },
		{ QUEUE_NOTIFY_SUCCESS, "SUCCESS" },
		{ QUEUE_NOTIFY_FAILURE, "FAILURE" },
		{ QUEUE_NOTIFY_DELAY, "DELAY" },
	};
	size_t len = 0;

	if (size == 0)
		return "";
	tmp[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((notify & names[i].bit) == 0)
			continue;
		int n = snprintf(tmp + len, size - len, "%s%s",
		    len ? "," : "", names[i].name);
		if (n < 0 || (size_t)n >= size - len)
			break;
		len += (size_t)n;
	}
	return tmp;
}

/* Parse a NOTIFY list as written by queue_file_notify_str. */
static int
parse_notify(const char *s, unsigned *notify_r)
{
	unsigned v = 0;

	while (*s != '\0') {
		size_t n = strcspn(s, ",");
		unsigned bit;

		if (n == 5 && strncmp(s, "NEVER", 5) == 0)
			bit = QUEUE_NOTIFY_NEVER;
		else if (n == 7 && strncmp(s, "SUCCESS", 7) == 0)
			bit = QUEUE_NOTIFY_SUCCESS;
		else if (n == 7 && strncmp(s, "FAILURE", 7) == 0)
			bit = QUEUE_NOTIFY_FAILURE;
		else if (n == 5 && strncmp(s, "DELAY", 5) == 0)
			bit = QUEUE_NOTIFY_DELAY;
		else
			return -1;
		if (v & bit)
			return -1;
		v |= bit;
		s += n;
		if (*s == ',' && *++s == '\0')
			return -1;
	}
	/* RFC 3461 4.1: NEVER stands alone. */
	if (v == 0 || ((v & QUEUE_NOTIFY_NEVER) && v != QUEUE_NOTIFY_NEVER))
		return -1;
	*notify_r = v;
	return 0;
}

void
queue_file_header(char out[QUEUE_FILE_HEADER_LEN + 1], uint64_t msg_off,
    uint64_t msg_size)
{
	snprintf(out, QUEUE_FILE_HEADER_LEN + 1,
	    "pochta-queue %d %010llu %020llu\n", QUEUE_FILE_VERSION,
	    (unsigned long long)msg_off, (unsigned long long)msg_size);
}

int
queue_file_rcpt_record(struct buf *out, enum queue_rcpt_status status,
    const char *address, const char *orcpt, unsigned notify)
{
	size_t start = out->len;
	char tmp[64];
	int r;

	if (address == NULL || *address == '\0')
		return -EINVAL;
	r = buf_printf(out, "%c to=", (char)status);
	if (r == 0)
		r = queue_file_escape(out, address, strlen(address));
	if (r == 0 && orcpt != NULL) {
		r = buf_puts(out, " orcpt=");
		if (r == 0)
			r = queue_file_escape(out, orcpt, strlen(orcpt));
	}
	if (r == 0 && notify != 0)
		r = buf_printf(out, " notify=%s",
		    queue_file_notify_str(notify, tmp, sizeof(tmp)));
	if (r == 0)
		r = buf_puts(out, "\n");
	if (r == 0 && out->len - start > QUEUE_FILE_LINE_MAX)
		r = -EINVAL;
	if (r < 0) {
		out->len = start;
		if (out->data != NULL)
			out->data[start] = '\0';
	}
	return r;
}

/*
 * A decimal number of 1 to 19 digits, no sign, nothing else. Leading zeros
 * are fine (the first line is zero-padded).
 */
static int
parse_u64(const char *s, size_t n, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (max - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*v_r = v;
	return 0;
}

static int
parse_i64(const char *s, size_t n, int64_t *v_r)
{
	uint64_t v;

	if (parse_u64(s, n, INT64_MAX, &v) < 0)
		return -1;
	*v_r = (int64_t)v;
	return 0;
}

static int
pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EBADMSG;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One envelope record before the message. */
enum head_rec {
	H_ID,
	H_ARRIVAL,
	H_SENDER,
	H_CLIENT_ADDR,
	H_CLIENT_NAME,
	H_HELO,
	H_PROTOCOL,
	H_AUTH_USER,
	H_RET,
	H_ENVID,
	H_BODY,
	H_SMTPUTF8,
	H_COUNT
};

static const struct {
	const char *name;
	size_t str_off;		/* offset of a char * in queue_env, or 0 */
} head_recs[H_COUNT] = {
	[H_ID] = { "id", 0 },
	[H_ARRIVAL] = { "arrival", 0 },
	[H_SENDER] = { "sender", offsetof(struct queue_env, sender) },
	[H_CLIENT_ADDR] = { "client_addr",
	    offsetof(struct queue_env, client_addr) },
	[H_CLIENT_NAME] = { "client_name",
	    offsetof(struct queue_env, client_name) },
	[H_HELO] = { "helo", offsetof(struct queue_env, helo) },
	[H_PROTOCOL] = { "protocol", offsetof(struct queue_env, protocol) },
	[H_AUTH_USER] = { "auth_user", offsetof(struct queue_env, auth_user) },
	[H_RET] = { "ret", 0 },
	[H_ENVID] = { "envid", offsetof(struct queue_env, envid) },
	[H_BODY] = { "body", 0 },
	[H_SMTPUTF8] = { "smtputf8", 0 },
};

static int
is_word(const char *v, size_t n, const char *w)
{
	return strlen(w) == n && memcmp(v, w, n) == 0;
}

/* The value of a head record that is not a plain escaped string. */
static int
parse_head_special(struct queue_env *env, enum head_rec rec, const char *v,
    size_t n, const char **errstr_r)
{
	const char *dot;
	uint64_t u;

	switch (rec) {
	case H_ID:
		if (n != QUEUE_ID_LEN)
			return BAD("bad queue ID record");
		memcpy(env->id, v, n);
		env->id[n] = '\0';
		if (!queue_id_valid(env->id))
			return BAD("bad queue ID record");
		return 0;
	case H_ARRIVAL:
		dot = memchr(v, '.', n);
		if (dot == NULL || v + n - dot != 7 ||
		    parse_i64(v, (size_t)(dot - v), &env->arrival_sec) < 0 ||
		    parse_u64(dot + 1, 6, 999999, &u) < 0)
			return BAD("bad arrival record");
		env->arrival_usec = (long)u;
		return 0;
	case H_RET:
		if (is_word(v, n, "FULL"))
			env->ret = QUEUE_RET_FULL;
		else if (is_word(v, n, "HDRS"))
			env->ret = QUEUE_RET_HDRS;
		else
			return BAD("bad ret record");
		return 0;
	case H_BODY:
		if (is_word(v, n, "7BIT"))
			env->body = QUEUE_BODY_7BIT;
		else if (is_word(v, n, "8BITMIME"))
			env->body = QUEUE_BODY_8BITMIME;
		else if (is_word(v, n, "BINARYMIME"))
			env->body = QUEUE_BODY_BINARYMIME;
		else
			return BAD("bad body record");
		return 0;
	case H_SMTPUTF8:
		if (is_word(v, n, "yes"))
			env->smtputf8 = 1;
		else if (is_word(v, n, "no"))
			env->smtputf8 = 0;
		else
			return BAD("bad smtputf8 record");
		return 0;
	default:
		return BAD("bad envelope record");
	}
}

/*
 * Check one line (without its LF) for bytes no writer produces: a NUL or
 * another control character means corruption, not data.
 */
static int
check_line(const char *p, size_t n, const char **errstr_r)
{
	if (n + 1 > QUEUE_FILE_LINE_MAX)
		return BAD("envelope line too long");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\0')
			return BAD("NUL byte in envelope");
		if (c < 0x20 || c == 0x7f)
			return BAD("control character in envelope");
	}
	return 0;
}

static int
parse_head_line(struct queue_env *env, const char *p, size_t n,
    unsigned *seen, const char **errstr_r)
{
	const char *sp = memchr(p, ' ', n);
	size_t nlen, vlen;
	int rec;

	if (sp == NULL)
		return BAD("envelope record without a value");
	nlen = (size_t)(sp - p);
	vlen = n - nlen - 1;
	for (rec = 0; rec < H_COUNT; rec++)
		if (is_word(p, nlen, head_recs[rec].name))
			break;
	if (rec == H_COUNT)
		return BAD("unknown envelope record");
	if (*seen & (1u << rec))
		return BAD("duplicate envelope record");
	*seen |= 1u << rec;
	if (head_recs[rec].str_off == 0)
		return parse_head_special(env, rec, sp + 1, vlen, errstr_r);
	if (queue_file_unescape(sp + 1, vlen,
	    (char **)((char *)env + head_recs[rec].str_off)) < 0)
		return BAD("bad escape in envelope record");
	return 0;
}

/* The first line and the envelope records, buf holding msg_off bytes. */
static int
parse_head(struct queue_file *qf, const char *buf, size_t len,
    const char **errstr_r)
{
	const unsigned required = 1u << H_ID | 1u << H_ARRIVAL |
	    1u << H_SENDER;
	unsigned seen = 0;
	size_t pos = QUEUE_FILE_HEADER_LEN;
	int r;

	/* The message follows a blank line, that is "\n\n". */
	if (len < QUEUE_FILE_HEADER_LEN + 1 || buf[len - 1] != '\n' ||
	    buf[len - 2] != '\n')
		return BAD("no blank line before the message");
	while (pos < len - 1) {
		const char *lf = memchr(buf + pos, '\n', len - 1 - pos);
		size_t n;

		if (lf == NULL)
			return BAD("no blank line before the message");
		n = (size_t)(lf - (buf + pos));
		if (n == 0)
			return BAD("blank line inside the envelope");
		if ((r = check_line(buf + pos, n, errstr_r)) < 0)
			return r;
		if ((r = parse_head_line(&qf->env, buf + pos, n, &seen,
		    errstr_r)) < 0)
			return r;
		pos += n + 1;
	}
	if ((seen & required) != required)
		return BAD("envelope lacks id, arrival or sender");
	return 0;
}

static struct queue_rcpt *
rcpt_new(struct queue_file *qf)
{
	struct queue_env *env = &qf->env;

	if (env->nrcpt == qf->rcpt_cap) {
		qf->rcpt_cap = qf->rcpt_cap ? qf->rcpt_cap * 2 : 16;
		env->rcpts = xreallocarray(env->rcpts, qf->rcpt_cap,
		    sizeof(*env->rcpts));
	}
	memset(&env->rcpts[env->nrcpt], 0, sizeof(*env->rcpts));
	return &env->rcpts[env->nrcpt++];
}

/* "S to=ADDR [orcpt=X] [notify=LIST]", the status byte at off. */
static int
parse_rcpt(struct queue_file *qf, const char *p, size_t n, off_t off,
    const char **errstr_r)
{
	struct queue_rcpt *rc;
	const char *end = p + n;

	if (n < 5 || p[1] != ' ' || memcmp(p + 2, "to=", 3) != 0)
		return BAD("bad recipient record");
	if (qf->env.nrcpt >= QUEUE_FILE_RCPT_MAX)
		return BAD("too many recipients");
	rc = rcpt_new(qf);
	rc->status = p[0];
	rc->status_off = off;
	p += 2;
	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		const char *eq, *f_end = sp ? sp : end;
		char **dst = NULL, *v;

		if ((eq = memchr(p, '=', (size_t)(f_end - p))) == NULL)
			return BAD("bad recipient field");
		if (is_word(p, (size_t)(eq - p), "to"))
			dst = &rc->address;
		else if (is_word(p, (size_t)(eq - p), "orcpt"))
			dst = &rc->orcpt;
		else if (!is_word(p, (size_t)(eq - p), "notify"))
			return BAD("unknown recipient field");
		if (queue_file_unescape(eq + 1, (size_t)(f_end - eq - 1),
		    &v) < 0)
			return BAD("bad escape in recipient record");
		if (dst == NULL) {
			int bad = rc->notify != 0 || parse_notify(v,
			    &rc->notify) < 0;

			free(v);
			if (bad)
				return BAD("bad recipient notify field");
		} else if (*dst != NULL) {
			free(v);
			return BAD("duplicate recipient field");
		} else
			*dst = v;
		p = sp ? sp + 1 : end;
		if (sp != NULL && p == end)
			return BAD("bad recipient record");
	}
	if (rc->address == NULL || *rc->address == '\0')
		return BAD("recipient without address");
	return 0;
}

/* "defer INDEX TIME NEXT REASON" */
static int
parse_defer(struct queue_file *qf, const char *p, size_t n,
    const char **errstr_r)
{
	const char *f[4], *end = p + n;
	size_t flen[4];
	uint64_t idx;
	int64_t t, next;
	struct queue_rcpt *rc;
	char *reason;

	for (int i = 0; i < 4; i++) {
		const char *sp = i < 3 ? memchr(p, ' ', (size_t)(end - p))
		    : end;

		if (sp == NULL)
			return BAD("bad defer record");
		f[i] = p;
		flen[i] = (size_t)(sp - p);
		p = sp < end ? sp + 1 : end;
	}
	if (parse_u64(f[0], flen[0], SIZE_MAX, &idx) < 0 ||
	    idx >= qf->env.nrcpt)
		return BAD("bad recipient index in defer record");
	if (parse_i64(f[1], flen[1], &t) < 0 ||
	    parse_i64(f[2], flen[2], &next) < 0)
		return BAD("bad time in defer record");
	if (queue_file_unescape(f[3], flen[3], &reason) < 0)
		return BAD("bad escape in defer record");
	rc = &qf->env.rcpts[idx];
	free(rc->defer_reason);
	rc->defer_reason = reason;
	rc->defer_time = t;
	rc->ndefer++;
	qf->env.next_retry = next;
	return 0;
}

static int
is_status(char c)
{
	return c == QUEUE_RCPT_PENDING || c == QUEUE_RCPT_DELIVERED ||
	    c == QUEUE_RCPT_BOUNCED || c == QUEUE_RCPT_FORWARDED;
}

static int
parse_tail_line(struct queue_file *qf, const char *p, size_t n, off_t off,
    int *ended, const char **errstr_r)
{
	uint64_t cnt;

	if (n >= 2 && is_status(p[0]) && p[1] == ' ')
		return parse_rcpt(qf, p, n, off, errstr_r);
	if (n > 4 && memcmp(p, "end ", 4) == 0) {
		if (*ended)
			return BAD("duplicate end record");
		if (parse_u64(p + 4, n - 4, SIZE_MAX, &cnt) < 0 ||
		    cnt != qf->env.nrcpt)
			return BAD("end record does not match recipients");
		*ended = 1;
		return 0;
	}
	if (n > 6 && memcmp(p, "defer ", 6) == 0) {
		if (!*ended)
			return BAD("defer record before end record");
		return parse_defer(qf, p + 6, n - 6, errstr_r);
	}
	return BAD("unknown record after the message");
}

/*
 * The records after the message, starting at file offset base. A last line
 * without LF after the end record is an append torn by a crash: ignored,
 * and the next append overwrites it.
 */
static int
parse_tail(struct queue_file *qf, const char *buf, size_t len, off_t base,
    const char **errstr_r)
{
	size_t pos = 0;
	int ended = 0, r;

	while (pos < len) {
		const char *lf = memchr(buf + pos, '\n', len - pos);
		size_t n;

		if (lf == NULL) {
			if (!ended)
				return BAD("truncated queue file");
			break;
		}
		n = (size_t)(lf - (buf + pos));
		if ((r = check_line(buf + pos, n, errstr_r)) < 0)
			return r;
		if ((r = parse_tail_line(qf, buf + pos, n, base + (off_t)pos,
		    &ended, errstr_r)) < 0)
			return r;
		pos += n + 1;
	}
	if (!ended)
		return BAD("truncated queue file");
	if (qf->env.nrcpt == 0)
		return BAD("queue file without recipients");
	qf->end_off = base + (off_t)pos;
	return 0;
}

static int
parse_first_line(const char *p, uint64_t *off_r, uint64_t *size_r,
    const char **errstr_r)
{
	if (memcmp(p, "pochta-queue ", 13) != 0)
		return BAD("not a queue file");
	if (p[13] != '0' + QUEUE_FILE_VERSION || p[14] != ' ')
		return BAD("unsupported queue file version");
	if (p[25] != ' ' || p[46] != '\n' ||
	    parse_u64(p + 15, 10, QUEUE_FILE_HEAD_MAX, off_r) < 0 ||
	    parse_u64(p + 26, 20, INT64_MAX, size_r) < 0)
		return BAD("bad first line");
	if (*off_r < QUEUE_FILE_HEADER_LEN + 1)
		return BAD("bad message offset");
	return 0;
}

static int
load(struct queue_file *qf, const char **errstr_r)
{
	char first[QUEUE_FILE_HEADER_LEN];
	uint64_t off, size;
	struct stat st;
	char *head = NULL, *tail = NULL;
	size_t tlen;
	int r;

	if (fstat(qf->fd, &st) < 0)
		return *errstr_r = "cannot stat queue file", -errno;
	if (!S_ISREG(st.st_mode))
		return BAD("not a regular file");
	qf->file_size = st.st_size;
	if (st.st_size < QUEUE_FILE_HEADER_LEN)
		return BAD("truncated queue file");
	if ((r = pread_all(qf->fd, first, sizeof(first), 0)) < 0)
		return *errstr_r = "cannot read queue file", r;
	if ((r = parse_first_line(first, &off, &size, errstr_r)) < 0)
		return r;
	if (off > (uint64_t)st.st_size ||
	    size > (uint64_t)st.st_size - off)
		return BAD("truncated queue file");
	tlen = (size_t)((uint64_t)st.st_size - off - size);
	if (tlen > QUEUE_FILE_TAIL_MAX)
		return BAD("too many records after the message");
	head = xmalloc((size_t)off);
	tail = xmalloc(tlen + 1);
	if ((r = pread_all(qf->fd, head, (size_t)off, 0)) < 0 ||
	    (r = pread_all(qf->fd, tail, tlen, (off_t)(off + size))) < 0) {
		*errstr_r = r == -EBADMSG ? "truncated queue file" :
		    "cannot read queue file";
		goto out;
	}
	qf->msg_off = (off_t)off;
	qf->tail_off = (off_t)(off + size);
	qf->env.msg_size = size;
	if ((r = parse_head(qf, head, (size_t)off, errstr_r)) < 0)
		goto out;
	r = parse_tail(qf, tail, tlen, (off_t)(off + size), errstr_r);
out:
	free(head);
	free(tail);
	return r;
}

int
queue_file_fdopen(int fd, int writable, struct queue_file **qf_r,
    const char **errstr_r)
{
	struct queue_file *qf = xcalloc(1, sizeof(*qf));
	int r;

	*qf_r = NULL;
	qf->fd = fd;
	qf->writable = writable;
	if ((r = load(qf, errstr_r)) < 0) {
		qf->fd = -1;
		queue_file_free(&qf);
		return r;
	}
	*qf_r = qf;
	return 0;
}

int
queue_file_open(const char *path, int writable, struct queue_file **qf_r,
    const char **errstr_r)
{
	int fd, r;

	*qf_r = NULL;
	/* O_NONBLOCK: a FIFO dropped into a queue directory must not hang
	 * the queue manager in open(2); anything but a regular file is
	 * refused. */
	fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC |
	    O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		*errstr_r = "cannot open queue file";
		return -errno;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    fcntl(fd, F_SETFL, 0) < 0) {
		*errstr_r = "not a regular file";
		close(fd);
		return -EBADMSG;
	}
	if ((r = queue_file_fdopen(fd, writable, qf_r, errstr_r)) < 0)
		close(fd);
	return r;
}

void
queue_env_clear(struct queue_env *env)
{
	free(env->sender);
	free(env->client_addr);
	free(env->client_name);
	free(env->helo);
	free(env->protocol);
	free(env->auth_user);
	free(env->envid);
	for (size_t i = 0; i < env->nrcpt; i++) {
		free(env->rcpts[i].address);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].defer_reason);
	}
	free(env->rcpts);
	memset(env, 0, sizeof(*env));
}

void
queue_file_free(struct queue_file **qf)
{
	if (*qf == NULL)
		return;
	if ((*qf)->fd >= 0)
		close((*qf)->fd);
	queue_env_clear(&(*qf)->env);
	free(*qf);
	*qf = NULL;
}

const struct queue_env *
queue_file_env(const struct queue_file *qf)
{
	return &qf->env;
}

int
queue_file_fd(const struct queue_file *qf)
{
	return qf->fd;
}

off_t
queue_file_msg_offset(const struct queue_file *qf)
{
	return qf->msg_off;
}

uint64_t
queue_file_msg_size(const struct queue_file *qf)
{
	return qf->env.msg_size;
}

ssize_t
queue_file_read_msg(struct queue_file *qf, void *buf, size_t len,
    uint64_t off)
{
	ssize_t n;

	if (off >= qf->env.msg_size || len == 0)
		return 0;
	if (len > qf->env.msg_size - off)
		len = (size_t)(qf->env.msg_size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	do
		n = pread(qf->fd, buf, len, qf->msg_off + (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EBADMSG;
	return n;
}

size_t
queue_file_pending(const struct queue_file *qf)
{
	size_t n = 0;

	for (size_t i = 0; i < qf->env.nrcpt; i++)
		if (qf->env.rcpts[i].status == QUEUE_RCPT_PENDING)
			n++;
	return n;
}

int
queue_file_mark(struct queue_file *qf, size_t i,
    enum queue_rcpt_status status, const char **errstr_r)
{
	char c = (char)status;
	int r;

	if (!qf->writable)
		return *errstr_r = "queue file not open for writing", -EBADF;
	if (i >= qf->env.nrcpt || (status != QUEUE_RCPT_DELIVERED &&
	    status != QUEUE_RCPT_BOUNCED && status != QUEUE_RCPT_FORWARDED))
		return *errstr_r = "bad recipient index or status", -EINVAL;
	if (qf->env.rcpts[i].status != QUEUE_RCPT_PENDING)
		return *errstr_r = "recipient already done", -EALREADY;
	if ((r = pwrite_all(qf->fd, &c, 1, qf->env.rcpts[i].status_off)) < 0)
		return *errstr_r = "cannot write queue file", r;
	if (fdatasync(qf->fd) < 0)
		return *errstr_r = "cannot sync queue file", -errno;
	qf->env.rcpts[i].status = c;
	return 0;
}

/*
 * Append one complete record at the end of the last complete one (over a
 * torn line if there is one), cut off any torn rest, and fdatasync.
 */
static int
append_record(struct queue_file *qf, const struct buf *rec,
    const char **errstr_r)
{
	int r;

	/* Never grow the file past what a reader accepts. */
	if (qf->end_off - qf->tail_off + (off_t)rec->len > QUEUE_FILE_TAIL_MAX)
		return *errstr_r = "queue file records too large", -EFBIG;
	if ((r = pwrite_all(qf->fd, rec->data, rec->len, qf->end_off)) < 0)
		return *errstr_r = "cannot write queue file", r;
	if (qf->file_size > qf->end_off + (off_t)rec->len &&
	    ftruncate(qf->fd, qf->end_off + (off_t)rec->len) < 0)
		return *errstr_r = "cannot truncate queue file", -errno;
	if (fdatasync(qf->fd) < 0)
		return *errstr_r = "cannot sync queue file", -errno;
	qf->end_off += (off_t)rec->len;
	qf->file_size = qf->end_off;
	return 0;
}

int
queue_file_defer(struct queue_file *qf, size_t i, const char *reason,
    int64_t now, int64_t next_retry, const char **errstr_r)
{
	size_t rlen = reason ? strlen(reason) : 0;
	struct buf rec;
	int r;

	if (!qf->writable)
		return *errstr_r = "queue file not open for writing", -EBADF;
	if (i >= qf->env.nrcpt || now < 0 || next_retry < 0)
		return *errstr_r = "bad recipient index or time", -EINVAL;
	if (rlen > QUEUE_FILE_REASON_MAX) {
		rlen = QUEUE_FILE_REASON_MAX;
		/* Do not leave half a UTF-8 sequence at the cut. */
		while (rlen > 0 && ((unsigned char)reason[rlen] & 0xc0) == 0x80)
			rlen--;
	}
	buf_init(&rec, QUEUE_FILE_LINE_MAX);
	r = buf_printf(&rec, "defer %zu %lld %lld ", i, (long long)now,
	    (long long)next_retry);
	if (r == 0 && rlen > 0)
		r = queue_file_escape(&rec, reason, rlen);
	if (r == 0)
		r = buf_puts(&rec, "\n");
	if (r < 0) {
		buf_release(&rec);
		return *errstr_r = "deferral reason too long", -EINVAL;
	}
	r = append_record(qf, &rec, errstr_r);
	buf_release(&rec);
	if (r < 0)
		return r;
	struct queue_rcpt *rc = &qf->env.rcpts[i];
	free(rc->defer_reason);
	rc->defer_reason = xstrndup(reason ? reason : "", rlen);
	rc->defer_time = now;
	rc->ndefer++;
	qf->env.next_retry = next_retry;
	return 0;
}

int
queue_file_add_rcpt(struct queue_file *qf, const char *address,
    const char *orcpt, unsigned notify, const char **errstr_r)
{
	struct queue_rcpt *rc;
	struct buf rec;
	off_t off = qf->end_off;
	int r;

	if (!qf->writable)
		return *errstr_r = "queue file not open for writing", -EBADF;
	if (qf->env.nrcpt >= QUEUE_FILE_RCPT_MAX)
		return *errstr_r = "too many recipients", -E2BIG;
	buf_init(&rec, QUEUE_FILE_LINE_MAX);
	if ((r = queue_file_rcpt_record(&rec, QUEUE_RCPT_PENDING, address,
	    orcpt, notify)) < 0) {
		buf_release(&rec);
		return *errstr_r = "bad or overlong recipient", -EINVAL;
	}
	r = append_record(qf, &rec, errstr_r);
	buf_release(&rec);
	if (r < 0)
		return r;
	rc = rcpt_new(qf);
	rc->status = QUEUE_RCPT_PENDING;
	rc->address = xstrdup(address);
	rc->orcpt = orcpt ? xstrdup(orcpt) : NULL;
	rc->notify = notify;
	rc->status_off = off;
	return 0;
}
