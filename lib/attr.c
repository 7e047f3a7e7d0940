/*
 * attr.c - encoding and decoding of attribute lists (attr.h), the framing
 * of pochta-protocol(7). Input is hostile until proven otherwise: every
 * malformed or oversized message is an error with a message, and memory
 * use is bounded by the limits before anything is allocated.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr.h"
#include "buf.h"
#include "xalloc.h"

struct attr_item {
	char *name;	/* one allocation: name NUL value NUL */
	char *value;
	size_t len;
};

struct attr_list {
	struct attr_item *items;
	size_t n;
	size_t cap;
};

struct attr_decoder {
	struct attr_limits limits;
	struct attr_list *cur;	/* the message being decoded, or NULL */
	size_t size;		/* encoded bytes of cur so far */
	size_t scanned;		/* bytes of the pending line known LF-free */
};

static const char hexdigits[] = "0123456789ABCDEF";

struct attr_list *
attr_list_new(void)
{
	return xcalloc(1, sizeof(struct attr_list));
}

void
attr_list_free(struct attr_list **listp)
{
	struct attr_list *list = *listp;

	if (list == NULL)
		return;
	for (size_t i = 0; i < list->n; i++)
		free(list->items[i].name);
	free(list->items);
	free(list);
	*listp = NULL;
}

static int
name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
	    c == '-';
}

static int
name_valid_n(const char *name, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!name_char((unsigned char)name[i]))
			return 0;
	return 1;
}

int
attr_name_valid(const char *name)
{
	return name != NULL && name_valid_n(name, strlen(name));
}

/* Append an item whose name is already checked; returns its value buffer
 * of len + 1 bytes for the caller to fill. */
static char *
list_push(struct attr_list *list, const char *name, size_t nlen, size_t len)
{
	struct attr_item *it;

	if (list->n == list->cap) {
		list->cap = list->cap ? list->cap * 2 : 8;
		list->items = xreallocarray(list->items, list->cap,
		    sizeof(*list->items));
	}
	it = &list->items[list->n++];
	it->name = xmalloc(nlen + 1 + len + 1);
	memcpy(it->name, name, nlen);
	it->name[nlen] = '\0';
	it->value = it->name + nlen + 1;
	it->value[len] = '\0';
	it->len = len;
	return it->value;
}

int
attr_add(struct attr_list *list, const char *name, const void *value,
    size_t len)
{
	char *v;

	if (!attr_name_valid(name))
		return -EINVAL;
	v = list_push(list, name, strlen(name), len);
	if (len > 0)
		memcpy(v, value, len);
	return 0;
}

int
attr_add_str(struct attr_list *list, const char *name, const char *value)
{
	return attr_add(list, name, value, strlen(value));
}

int
attr_addf(struct attr_list *list, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	r = attr_add_str(list, name, s);
	free(s);
	return r;
}

size_t
attr_count(const struct attr_list *list)
{
	return list->n;
}

int
attr_at(const struct attr_list *list, size_t i, const char **name_r,
    const char **value_r, size_t *len_r)
{
	if (i >= list->n)
		return -ENOENT;
	*name_r = list->items[i].name;
	*value_r = list->items[i].value;
	if (len_r != NULL)
		*len_r = list->items[i].len;
	return 0;
}

const char *
attr_next(const struct attr_list *list, const char *name, size_t *iter,
    size_t *len_r)
{
	for (size_t i = *iter; i < list->n; i++) {
		if (strcmp(list->items[i].name, name) == 0) {
			*iter = i + 1;
			if (len_r != NULL)
				*len_r = list->items[i].len;
			return list->items[i].value;
		}
	}
	*iter = list->n;
	return NULL;
}

const char *
attr_get(const struct attr_list *list, const char *name, size_t *len_r)
{
	size_t iter = 0;

	return attr_next(list, name, &iter, len_r);
}

const char *
attr_get_str(const struct attr_list *list, const char *name)
{
	size_t len;
	const char *v = attr_get(list, name, &len);

	if (v == NULL || memchr(v, '\0', len) != NULL)
		return NULL;
	return v;
}

int
attr_get_ull(const struct attr_list *list, const char *name,
    unsigned long long max, unsigned long long *v_r)
{
	unsigned long long v = 0;
	size_t len;
	const char *s = attr_get(list, name, &len);

	if (s == NULL)
		return -ENOENT;
	if (len == 0)
		return -EINVAL;
	/* By hand rather than strtoull(), which takes signs, blanks and
	 * wraps "-1" around to the largest value. */
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		d = (unsigned)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*v_r = v;
	return 0;
}

size_t
attr_count_name(const struct attr_list *list, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; i < list->n; i++)
		if (strcmp(list->items[i].name, name) == 0)
			n++;
	return n;
}

/* Bytes that must travel as %XX: the escape character itself and every
 * control character, so that neither LF nor CR nor NUL can appear raw. */
static int
needs_escape(unsigned char c)
{
	return c == '%' || c < 0x20 || c == 0x7f;
}

static int
encode_value(struct buf *out, const unsigned char *v, size_t len)
{
	size_t run = 0;
	char esc[3];
	int r;

	for (size_t i = 0; i < len; i++) {
		if (!needs_escape(v[i]))
			continue;
		if ((r = buf_append(out, v + run, i - run)) < 0)
			return r;
		esc[0] = '%';
		esc[1] = hexdigits[v[i] >> 4];
		esc[2] = hexdigits[v[i] & 0xf];
		if ((r = buf_append(out, esc, 3)) < 0)
			return r;
		run = i + 1;
	}
	return buf_append(out, v + run, len - run);
}

int
attr_encode(const struct attr_list *list, struct buf *out)
{
	size_t orig = out->len;
	int r = 0;

	for (size_t i = 0; i < list->n && r == 0; i++) {
		const struct attr_item *it = &list->items[i];

		if ((r = buf_puts(out, it->name)) < 0 ||
		    (r = buf_append(out, "=", 1)) < 0 ||
		    (r = encode_value(out, (const unsigned char *)it->value,
		    it->len)) < 0)
			break;
		r = buf_append(out, "\n", 1);
	}
	if (r == 0)
		r = buf_append(out, "\n", 1);
	if (r < 0 && out->data != NULL) {
		out->len = orig;
		out->data[orig] = '\0';
	}
	return r;
}

struct attr_decoder *
attr_decoder_new(const struct attr_limits *limits)
{
	struct attr_decoder *dec = xcalloc(1, sizeof(*dec));

	if (limits != NULL)
		dec->limits = *limits;
	if (dec->limits.max_line == 0)
		dec->limits.max_line = ATTR_MAX_LINE;
	if (dec->limits.max_attrs == 0)
		dec->limits.max_attrs = ATTR_MAX_ATTRS;
	if (dec->limits.max_size == 0)
		dec->limits.max_size = ATTR_MAX_SIZE;
	/* The empty line that ends a message must always fit. */
	if (dec->limits.max_line < 2)
		dec->limits.max_line = 2;
	return dec;
}

void
attr_decoder_reset(struct attr_decoder *dec)
{
	attr_list_free(&dec->cur);
	dec->size = 0;
	dec->scanned = 0;
}

int
attr_decoder_pending(const struct attr_decoder *dec)
{
	return dec->cur != NULL;
}

void
attr_decoder_free(struct attr_decoder **decp)
{
	if (*decp == NULL)
		return;
	attr_decoder_reset(*decp);
	free(*decp);
	*decp = NULL;
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode one line (without its line end) into list. */
static int
decode_line(struct attr_list *list, const char *line, size_t len,
    const char **errstr_r)
{
	const char *eq = memchr(line, '=', len);
	const unsigned char *v;
	size_t nlen, vlen, o = 0;
	char *out;

	if (eq == NULL) {
		*errstr_r = "line without '='";
		return -EBADMSG;
	}
	nlen = (size_t)(eq - line);
	if (!name_valid_n(line, nlen)) {
		*errstr_r = "attribute name is empty or not [a-z0-9_-]";
		return -EBADMSG;
	}
	v = (const unsigned char *)eq + 1;
	vlen = len - nlen - 1;
	/* The decoded value is never longer than the encoded one. */
	out = list_push(list, line, nlen, vlen);
	for (size_t i = 0; i < vlen; i++) {
		int hi, lo;

		if (v[i] == '%') {
			if (i + 2 >= vlen) {
				*errstr_r = "truncated %-escape in value";
				goto bad;
			}
			hi = hexval(v[i + 1]);
			lo = hexval(v[i + 2]);
			if (hi < 0 || lo < 0) {
				*errstr_r = "malformed %-escape in value";
				goto bad;
			}
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (v[i] < 0x20 || v[i] == 0x7f) {
			*errstr_r = "unescaped control character in value";
			goto bad;
		} else
			out[o++] = (char)v[i];
	}
	out[o] = '\0';
	list->items[list->n - 1].len = o;
	return 0;
bad:
	free(list->items[--list->n].name);
	return -EBADMSG;
}

static int
feed_error(struct attr_decoder *dec, int err, const char *msg,
    const char **errstr_r)
{
	attr_decoder_reset(dec);
	*errstr_r = msg;
	return err;
}

int
attr_decoder_feed(struct attr_decoder *dec, const char *data, size_t len,
    size_t *consumed_r, struct attr_list **list_r, const char **errstr_r)
{
	const struct attr_limits *lim = &dec->limits;
	size_t pos = 0;
	int r;

	*consumed_r = 0;
	if (len == 0)
		return 0;
	for (;;) {
		size_t rest = len - pos;
		size_t scan = rest < lim->max_line ? rest : lim->max_line;
		const char *lf;
		size_t linelen, clen;

		if (dec->scanned > scan)
			dec->scanned = 0;
		lf = memchr(data + pos + dec->scanned, '\n',
		    scan - dec->scanned);
		if (lf == NULL) {
			if (rest >= lim->max_line)
				return feed_error(dec, -EMSGSIZE,
				    "line too long", errstr_r);
			if (dec->size + rest > lim->max_size)
				return feed_error(dec, -EMSGSIZE,
				    "message too large", errstr_r);
			dec->scanned = rest;
			*consumed_r = pos;
			return 0;
		}
		dec->scanned = 0;
		linelen = (size_t)(lf - (data + pos)) + 1;
		if (dec->size + linelen > lim->max_size)
			return feed_error(dec, -EMSGSIZE, "message too large",
			    errstr_r);
		dec->size += linelen;
		clen = linelen - 1;
		if (clen > 0 && data[pos + clen - 1] == '\r')
			clen--;
		if (dec->cur == NULL)
			dec->cur = attr_list_new();
		if (clen == 0) {
			*list_r = dec->cur;
			dec->cur = NULL;
			dec->size = 0;
			*consumed_r = pos + linelen;
			return 1;
		}
		if (dec->cur->n >= lim->max_attrs)
			return feed_error(dec, -EMSGSIZE, "too many attributes",
			    errstr_r);
		if ((r = decode_line(dec->cur, data + pos, clen,
		    errstr_r)) < 0)
			return feed_error(dec, r, *errstr_r, errstr_r);
		pos += linelen;
	}
}

int
attr_parse(const struct buf *in, const struct attr_limits *limits,
    struct attr_list **list_r, size_t *consumed_r, const char **errstr_r)
{
	struct attr_decoder *dec = attr_decoder_new(limits);
	int r;

	r = attr_decoder_feed(dec, in->data ? in->data : "", in->len,
	    consumed_r, list_r, errstr_r);
	if (r == 0)
		*consumed_r = 0;
	attr_decoder_free(&dec);
	return r;
}
