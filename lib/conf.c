/*
 * conf.c - pochta.conf reader (conf.h): logical lines, $name expansion and
 * typed validation against the declaration tables (conf_params.h). Every
 * problem in the file or an -o override is an error with its place
 * ("path:line: ..." or "-o name: ..."), never a crash; only programming
 * errors (an undeclared name or a wrong type asked of a getter) panic.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "log.h"
#include "xalloc.h"

enum expand_state {
	EXPAND_TODO,
	EXPAND_BUSY,	/* on the expansion stack: meeting it again is a loop */
	EXPAND_DONE,
};

struct conf_entry {
	const struct conf_param *param;
	char *raw;		/* as written; NULL: the default applies */
	int line;		/* where raw was set (the last time) */
	int override;		/* raw came from -o */
	char *value;		/* after expansion */
	long long num;		/* INT, TIME, SIZE: the number; BOOL: 0 or 1 */
	enum expand_state state;
};

struct conf {
	char *dir;
	char *path;		/* for messages */
	struct conf_entry *entries;	/* sorted by name */
	size_t n;
};

/* The expansion stack, for loop messages and for blaming the right line. */
struct expand_ctx {
	struct conf *conf;
	struct conf_entry **stack;
	size_t depth;
	char **errstr_r;
};

const char *
conf_default_dir(void)
{
	const char *env = getenv("POCHTA_CONF");

	if (env != NULL && *env != '\0')
		return env;
	return POCHTA_SYSCONFDIR;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct conf_entry *x = a, *y = b;

	return strcmp(x->param->name, y->param->name);
}

static int
entry_key_cmp(const void *key, const void *b)
{
	const struct conf_entry *y = b;

	return strcmp(key, y->param->name);
}

static struct conf_entry *
entry_find(const struct conf *conf, const char *name)
{
	return bsearch(name, conf->entries, conf->n, sizeof(*conf->entries),
	    entry_key_cmp);
}

static struct conf_entry *
entry_findn(const struct conf *conf, const char *name, size_t len)
{
	char key[128];

	if (len >= sizeof(key))
		return NULL;
	memcpy(key, name, len);
	key[len] = '\0';
	return entry_find(conf, key);
}

/* One entry per declared parameter, sorted, so lookups are bsearch. */
static struct conf *
conf_new(const char *dir, const char *path)
{
	struct conf *conf = xcalloc(1, sizeof(*conf));
	const struct conf_param_group *g;
	const struct conf_param *p;
	size_t n = 0;

	for (g = conf_param_groups; g->name != NULL; g++)
		for (p = g->params; p->name != NULL; p++)
			n++;
	conf->entries = xcalloc(n, sizeof(*conf->entries));
	for (g = conf_param_groups; g->name != NULL; g++)
		for (p = g->params; p->name != NULL; p++)
			conf->entries[conf->n++].param = p;
	qsort(conf->entries, conf->n, sizeof(*conf->entries), entry_cmp);
	for (size_t i = 1; i < conf->n; i++)
		if (strcmp(conf->entries[i - 1].param->name,
		    conf->entries[i].param->name) == 0)
			panic("parameter %s is declared twice",
			    conf->entries[i].param->name);
	conf->dir = xstrdup(dir);
	/* "-c /etc/pochta/" must not give "$config_directory//x". */
	for (size_t len = strlen(conf->dir); len > 1 &&
	    conf->dir[len - 1] == '/'; len--)
		conf->dir[len - 1] = '\0';
	conf->path = xstrdup(path);
	return conf;
}

void
conf_free(struct conf **confp)
{
	struct conf *conf = *confp;

	if (conf == NULL)
		return;
	for (size_t i = 0; i < conf->n; i++) {
		free(conf->entries[i].raw);
		free(conf->entries[i].value);
	}
	free(conf->entries);
	free(conf->dir);
	free(conf->path);
	free(conf);
	*confp = NULL;
}

/*
 * A value quoted for a message: at most 60 bytes, control characters as
 * '?', so a hostile file cannot garble the terminal or the log.
 */
static char *
quote(const char *s)
{
	size_t n = strlen(s), max = 60;
	char *q = xmalloc(max + 4);
	size_t i;

	for (i = 0; i < n && i < max; i++)
		q[i] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
	if (n > max) {
		memcpy(q + i, "...", 3);
		i += 3;
	}
	q[i] = '\0';
	return q;
}

/* Where e was set, as the start of a message. */
static char *
entry_where(const struct conf *conf, const struct conf_entry *e)
{
	if (e->override)
		return xasprintf("-o %s", e->param->name);
	if (e->raw != NULL)
		return xasprintf("%s:%d", conf->path, e->line);
	return xstrdup(conf->path);
}

static int
entry_error(const struct conf *conf, const struct conf_entry *e,
    char **errstr_r, const char *fmt, ...)
{
	char *where = entry_where(conf, e), *msg;
	va_list ap;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	*errstr_r = xasprintf("%s: parameter '%s'%s: %s", where,
	    e->param->name, e->raw == NULL ? " (default)" : "", msg);
	free(where);
	free(msg);
	return -EINVAL;
}

static int
name_char(int c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static int
blank_char(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

enum conf_line_kind
conf_line_kind(const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && blank_char(line[i]))
		i++;
	if (i == len)
		return CONF_LINE_BLANK;
	if (line[i] == '#')
		return CONF_LINE_COMMENT;
	if (i > 0)
		return CONF_LINE_CONT;
	return CONF_LINE_SETTING;
}

size_t
conf_line_name_len(const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && !blank_char(line[i]) && line[i] != '=')
		i++;
	return i;
}

/* The entry whose text is at fault: the innermost one the user set. */
static struct conf_entry *
expand_blame(struct expand_ctx *x)
{
	for (size_t i = x->depth; i > 0; i--)
		if (x->stack[i - 1]->raw != NULL)
			return x->stack[i - 1];
	return x->stack[x->depth - 1];
}

static int expand_entry(struct expand_ctx *x, struct conf_entry *e);

static int
expand_loop_error(struct expand_ctx *x, struct conf_entry *ref)
{
	struct buf chain;
	size_t i;
	int r;

	buf_init(&chain, 0);
	for (i = 0; i < x->depth && x->stack[i] != ref; i++)
		;
	for (; i < x->depth; i++)
		buf_printf(&chain, "%s -> ", x->stack[i]->param->name);
	buf_puts(&chain, ref->param->name);
	r = entry_error(x->conf, expand_blame(x), x->errstr_r,
	    "$name expansion loop: %s", chain.data);
	buf_release(&chain);
	return r;
}

/*
 * The entry named by s[0..len-1], expanded; NULL with *x->errstr_r set on
 * error. An undeclared name is an error (a typo would otherwise silently
 * expand to nothing), and so is meeting an entry that is still being
 * expanded: a loop.
 */
static struct conf_entry *
expand_ref(struct expand_ctx *x, const char *s, size_t len)
{
	struct conf_entry *ref = entry_findn(x->conf, s, len);

	if (ref == NULL) {
		char *name = xstrndup(s, len), *q = quote(name);

		entry_error(x->conf, expand_blame(x), x->errstr_r,
		    "unknown parameter '$%s'", q);
		free(q);
		free(name);
		return NULL;
	}
	if (ref->state == EXPAND_BUSY) {
		expand_loop_error(x, ref);
		return NULL;
	}
	if (expand_entry(x, ref) < 0)
		return NULL;
	return ref;
}

static int
expand_too_long(struct expand_ctx *x)
{
	return entry_error(x->conf, expand_blame(x), x->errstr_r,
	    "value longer than %d bytes after expansion", CONF_VALUE_MAX);
}

static int expand_text(struct expand_ctx *x, const char *text, size_t len,
    int nest, struct buf *out);

/*
 * At d: ${name} or $(name), or Postfix's ${name?text} (text if name is not
 * empty) and ${name:text} (text if it is); text is expanded in turn.
 * *next_r gets where the text after the closing bracket starts.
 */
static int
expand_braced(struct expand_ctx *x, const char *d, const char *end,
    int nest, struct buf *out, const char **next_r)
{
	char open = d[1], close = open == '{' ? '}' : ')';
	const char *name = d + 2, *n_end, *q;
	struct conf_entry *ref;
	int level;

	for (n_end = name; n_end < end && name_char(*n_end); n_end++)
		;
	if (n_end == name || n_end == end ||
	    (*n_end != close && *n_end != '?' && *n_end != ':'))
		return entry_error(x->conf, expand_blame(x), x->errstr_r,
		    "'$%c' without a name and '%c' (write $$ for a literal "
		    "'$')", open, close);
	if ((ref = expand_ref(x, name, n_end - name)) == NULL)
		return -EINVAL;
	if (*n_end == close) {
		*next_r = n_end + 1;
		return buf_puts(out, ref->value) < 0 ? expand_too_long(x) : 0;
	}
	for (q = n_end + 1, level = 1; q < end; q++)
		if (*q == open)
			level++;
		else if (*q == close && --level == 0)
			break;
	if (q == end)
		return entry_error(x->conf, expand_blame(x), x->errstr_r,
		    "'$%c%.*s%c' without its '%c'", open, (int)(n_end - name),
		    name, *n_end, close);
	if (nest >= 32)
		return entry_error(x->conf, expand_blame(x), x->errstr_r,
		    "'$%c%.*s%c' nested too deeply", open,
		    (int)(n_end - name), name, *n_end);
	*next_r = q + 1;
	if ((*n_end == '?') != (ref->value[0] != '\0'))
		return 0;
	return expand_text(x, n_end + 1, q - (n_end + 1), nest + 1, out);
}

/* Expand $name, ${name}, $(name), conditionals and $$ in len bytes. */
static int
expand_text(struct expand_ctx *x, const char *text, size_t len, int nest,
    struct buf *out)
{
	const char *p = text, *end = text + len, *d, *n_end;
	struct conf_entry *ref;
	int r;

	while ((d = memchr(p, '$', end - p)) != NULL) {
		if (buf_append(out, p, d - p) < 0)
			return expand_too_long(x);
		if (d + 1 < end && d[1] == '$') {
			if (buf_append(out, "$", 1) < 0)
				return expand_too_long(x);
			p = d + 2;
			continue;
		}
		if (d + 1 < end && (d[1] == '{' || d[1] == '(')) {
			if ((r = expand_braced(x, d, end, nest, out, &p)) < 0)
				return r;
			continue;
		}
		for (n_end = d + 1; n_end < end && name_char(*n_end); n_end++)
			;
		if (n_end == d + 1)
			return entry_error(x->conf, expand_blame(x),
			    x->errstr_r, "'$' without a parameter name "
			    "(write $$ for a literal '$')");
		if ((ref = expand_ref(x, d + 1, n_end - (d + 1))) == NULL)
			return -EINVAL;
		if (buf_puts(out, ref->value) < 0)
			return expand_too_long(x);
		p = n_end;
	}
	if (buf_append(out, p, end - p) < 0)
		return expand_too_long(x);
	return 0;
}

/*
 * Each entry is expanded once and remembered, so "a = $b $b $b..." chains
 * cost their output size, which the buffer limit bounds; the stack depth is
 * bounded by the number of declared parameters.
 */
static int
expand_entry(struct expand_ctx *x, struct conf_entry *e)
{
	const char *text;
	struct buf out;
	int r;

	if (e->state == EXPAND_DONE)
		return 0;
	if (strcmp(e->param->name, "config_directory") == 0) {
		/* The directory itself, never expanded: it may hold a '$'. */
		e->value = xstrdup(x->conf->dir);
		e->state = EXPAND_DONE;
		return 0;
	}
	e->state = EXPAND_BUSY;
	x->stack[x->depth++] = e;
	buf_init(&out, CONF_VALUE_MAX);
	text = e->raw != NULL ? e->raw : e->param->def;
	r = expand_text(x, text, strlen(text), 0, &out);
	x->depth--;
	if (r < 0) {
		buf_release(&out);
		return r;
	}
	e->value = buf_steal(&out);
	e->state = EXPAND_DONE;
	return 0;
}

/*
 * Digits, then an optional one-letter unit from units (case-insensitive),
 * which multiplies by its factor; bad_unit says what units are allowed.
 */
static int
parse_number(const char *s, const char *units, const long long *factors,
    const char *bad_unit, long long *num_r, const char **why_r)
{
	long long n = 0, f = 1;
	const char *p = s, *u;

	if (!isdigit((unsigned char)*p)) {
		*why_r = "not a number";
		return -EINVAL;
	}
	for (; isdigit((unsigned char)*p); p++) {
		if (n > (LLONG_MAX - (*p - '0')) / 10) {
			*why_r = "number too large";
			return -ERANGE;
		}
		n = n * 10 + (*p - '0');
	}
	if (*p != '\0') {
		u = units != NULL ? strchr(units, tolower((unsigned char)*p)) :
		    NULL;
		if (u == NULL || p[1] != '\0') {
			*why_r = units != NULL ? bad_unit : "not a number";
			return -EINVAL;
		}
		f = factors[u - units];
	}
	if (n > LLONG_MAX / f) {
		*why_r = "number too large";
		return -ERANGE;
	}
	*num_r = n * f;
	return 0;
}

static int
parse_int(const char *s, long long *num_r, const char **why_r)
{
	int neg = *s == '-';
	int r;

	if (*s == '-' || *s == '+')
		s++;
	if ((r = parse_number(s, NULL, NULL, NULL, num_r, why_r)) < 0)
		return r;
	if (neg)
		*num_r = -*num_r;
	return 0;
}

static int
parse_bool(const char *s, long long *num_r)
{
	static const char *const yes[] = {"yes", "true", "on", "1", NULL};
	static const char *const no[] = {"no", "false", "off", "0", NULL};

	for (size_t i = 0; yes[i] != NULL; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*num_r = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*num_r = 0;
			return 0;
		}
	}
	return -EINVAL;
}

/* Check the expanded value against the type and bounds; keep the number. */
static int
entry_check(const struct conf *conf, struct conf_entry *e, char **errstr_r)
{
	static const long long time_f[] = {1, 60, 3600, 86400, 604800};
	static const long long size_f[] = {1024, 1024 * 1024,
	    1024 * 1024 * 1024};
	const struct conf_param *p = e->param;
	const char *why = NULL;
	char *q;
	int r = 0;

	switch (p->type) {
	case CONF_STR:
	case CONF_LIST:
		return 0;
	case CONF_BOOL:
		if (parse_bool(e->value, &e->num) == 0)
			return 0;
		why = "not a boolean (yes, no, true, false, on, off, 1, 0)";
		r = -EINVAL;
		break;
	case CONF_INT:
		r = parse_int(e->value, &e->num, &why);
		break;
	case CONF_TIME:
		r = parse_number(e->value, "smhdw", time_f,
		    "bad unit (s, m, h, d or w)", &e->num, &why);
		break;
	case CONF_SIZE:
		r = parse_number(e->value, "kmg", size_f,
		    "bad unit (k, m or g)", &e->num, &why);
		break;
	}
	q = quote(e->value);
	if (r < 0)
		r = entry_error(conf, e, errstr_r, "'%s': %s", q, why);
	else if (e->num < p->min)
		r = entry_error(conf, e, errstr_r, "'%s' is less than %lld%s",
		    q, p->min, p->type == CONF_TIME ? "s" : "");
	else if (p->max != 0 && e->num > p->max)
		r = entry_error(conf, e, errstr_r, "'%s' is more than %lld%s",
		    q, p->max, p->type == CONF_TIME ? "s" : "");
	free(q);
	return r;
}

/* Record name = value from the file or -o; where is "path:line" or "-o x". */
static int
conf_set(struct conf *conf, const char *name, size_t name_len,
    const char *value, size_t value_len, const char *where, int line,
    int override, char **errstr_r)
{
	struct conf_entry *e;
	char *q, *n;

	if (name_len == 0) {
		*errstr_r = xasprintf("%s: missing parameter name before '='",
		    where);
		return -EINVAL;
	}
	if ((e = entry_findn(conf, name, name_len)) == NULL) {
		n = xstrndup(name, name_len);
		q = quote(n);
		*errstr_r = xasprintf("%s: unknown parameter '%s'", where, q);
		free(q);
		free(n);
		return -EINVAL;
	}
	if (strcmp(e->param->name, "config_directory") == 0) {
		*errstr_r = xasprintf("%s: parameter 'config_directory' cannot "
		    "be set: it is the directory pochta.conf is read from",
		    where);
		return -EINVAL;
	}
	/* Escapes would reach logs and protocol replies through values. */
	for (size_t i = 0; i < value_len; i++)
		if (iscntrl((unsigned char)value[i]) && value[i] != '\t') {
			*errstr_r = xasprintf("%s: parameter '%s': control "
			    "character in the value", where, e->param->name);
			return -EINVAL;
		}
	/* A later setting replaces an earlier one, as in Postfix. */
	free(e->raw);
	e->raw = xstrndup(value, value_len);
	e->line = line;
	e->override = override;
	return 0;
}

/* Parse one logical line "name = value" (value already joined). */
static int
parse_setting(struct conf *conf, const char *s, size_t len, int line,
    char **errstr_r)
{
	size_t nlen = conf_line_name_len(s, len), i = nlen, end = len;
	char *where = xasprintf("%s:%d", conf->path, line);
	int r;

	while (i < len && blank_char(s[i]))
		i++;
	if (i == len || s[i] != '=') {
		*errstr_r = xasprintf("%s: expected 'name = value'", where);
		free(where);
		return -EINVAL;
	}
	for (i++; i < len && blank_char(s[i]); i++)
		;
	while (end > i && blank_char(s[end - 1]))
		end--;
	r = conf_set(conf, s, nlen, s + i, end - i, where, line, 0, errstr_r);
	free(where);
	return r;
}

static int
line_too_long(const struct conf *conf, int line, char **errstr_r)
{
	*errstr_r = xasprintf("%s:%d: logical line longer than %d bytes",
	    conf->path, line, CONF_LINE_MAX);
	return -EINVAL;
}

/* Split text into logical lines: a setting plus its continuation lines. */
static int
parse_text(struct conf *conf, const char *text, size_t len, char **errstr_r)
{
	const char *p = text, *end = text + len, *nl, *nul;
	struct buf logical;
	int line = 0, start = 0, r = 0;
	size_t n;

	if ((nul = memchr(text, '\0', len)) != NULL) {
		for (line = 1, p = text; p < nul; p++)
			line += *p == '\n';
		*errstr_r = xasprintf("%s:%d: NUL byte in the file",
		    conf->path, line);
		return -EINVAL;
	}
	buf_init(&logical, CONF_LINE_MAX);
	for (; p < end && r == 0; p = nl < end ? nl + 1 : end) {
		line++;
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		/* Trailing white space (and a CR) never belongs to a value. */
		for (n = nl - p; n > 0 && blank_char(p[n - 1]); n--)
			;
		switch (conf_line_kind(p, n)) {
		case CONF_LINE_BLANK:
		case CONF_LINE_COMMENT:
			break;
		case CONF_LINE_CONT:
			if (start == 0) {
				*errstr_r = xasprintf("%s:%d: continuation "
				    "line without a setting before it",
				    conf->path, line);
				r = -EINVAL;
				break;
			}
			while (blank_char(*p))
				p++, n--;
			if (buf_append(&logical, " ", 1) < 0 ||
			    buf_append(&logical, p, n) < 0)
				r = line_too_long(conf, start, errstr_r);
			break;
		case CONF_LINE_SETTING:
			if (start != 0)
				r = parse_setting(conf, logical.data,
				    logical.len, start, errstr_r);
			buf_reset(&logical);
			start = line;
			if (r == 0 && buf_append(&logical, p, n) < 0)
				r = line_too_long(conf, start, errstr_r);
			break;
		}
	}
	if (r == 0 && start != 0)
		r = parse_setting(conf, logical.data, logical.len, start,
		    errstr_r);
	buf_release(&logical);
	return r;
}

static int
apply_overrides(struct conf *conf, char *const *overrides, size_t n,
    char **errstr_r)
{
	for (size_t i = 0; i < n; i++) {
		const char *o = overrides[i], *eq, *v;
		size_t nlen, vlen;
		char *where, *q;
		int r;

		while (blank_char(*o))
			o++;
		if ((eq = strchr(o, '=')) == NULL) {
			q = quote(o);
			*errstr_r = xasprintf("-o %s: expected name=value", q);
			free(q);
			return -EINVAL;
		}
		for (nlen = eq - o; nlen > 0 && blank_char(o[nlen - 1]); nlen--)
			;
		for (v = eq + 1; blank_char(*v); v++)
			;
		for (vlen = strlen(v); vlen > 0 && blank_char(v[vlen - 1]);
		    vlen--)
			;
		q = xstrndup(o, nlen);
		where = quote(q);
		free(q);
		q = xasprintf("-o %s", where);
		r = conf_set(conf, o, nlen, v, vlen, q, 0, 1, errstr_r);
		free(q);
		free(where);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Expand every value, then check each against its type and bounds. */
static int
conf_finish(struct conf *conf, char **errstr_r)
{
	struct expand_ctx x;
	int r = 0, best = INT_MAX;

	x.conf = conf;
	x.stack = xcalloc(conf->n + 1, sizeof(*x.stack));
	x.depth = 0;
	x.errstr_r = errstr_r;
	for (size_t i = 0; i < conf->n && r == 0; i++)
		r = expand_entry(&x, &conf->entries[i]);
	free(x.stack);
	if (r < 0)
		return r;
	/*
	 * Report the bad value that comes first in the file (then -o, then
	 * defaults), not the first by name: that is the line one fixes first.
	 */
	for (size_t i = 0; i < conf->n; i++) {
		struct conf_entry *e = &conf->entries[i];
		int rank = e->override ? INT_MAX - 1 :
		    e->raw != NULL ? e->line : INT_MAX;
		char *err = NULL;
		int er;

		if ((er = entry_check(conf, e, &err)) == 0)
			continue;
		if (r == 0 || rank < best) {
			free(*errstr_r);
			*errstr_r = err;
			best = rank;
			r = er;
		} else {
			free(err);
		}
	}
	return r;
}

int
conf_load_text(const char *dir, const char *path, const char *text,
    size_t len, char *const *overrides, size_t n_overrides,
    struct conf **conf_r, char **errstr_r)
{
	struct conf *conf = conf_new(dir, path);
	int r;

	*conf_r = NULL;
	*errstr_r = NULL;
	if ((r = parse_text(conf, text, len, errstr_r)) < 0 ||
	    (r = apply_overrides(conf, overrides, n_overrides, errstr_r)) < 0 ||
	    (r = conf_finish(conf, errstr_r)) < 0) {
		conf_free(&conf);
		return r;
	}
	*conf_r = conf;
	return 0;
}

/* Read a regular file of at most CONF_FILE_MAX bytes into b. */
static int
read_file(const char *path, struct buf *b, char **errstr_r)
{
	struct stat st;
	ssize_t n;
	char *space;
	int fd, r = 0;

	/* O_NONBLOCK: a FIFO planted as pochta.conf must not hang us. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		r = -errno;
		*errstr_r = xasprintf("%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		*errstr_r = xasprintf("%s: %s", path, strerror(-r));
	} else if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		*errstr_r = xasprintf("%s: not a regular file", path);
	}
	while (r == 0) {
		size_t want = b->limit - b->len;
		char extra;

		if (want > 65536)
			want = 65536;
		/* At the limit, one more byte tells a full file from EOF. */
		space = want > 0 ? buf_space(b, want) : &extra;
		if ((n = read(fd, space, want > 0 ? want : 1)) < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			*errstr_r = xasprintf("%s: %s", path, strerror(-r));
		} else if (n == 0) {
			break;
		} else if (want == 0) {
			r = -EFBIG;
			*errstr_r = xasprintf("%s: larger than %d bytes", path,
			    CONF_FILE_MAX);
		} else {
			buf_commit(b, n);
		}
	}
	close(fd);
	return r;
}

int
conf_load(const char *dir, char *const *overrides, size_t n_overrides,
    struct conf **conf_r, char **errstr_r)
{
	char *path = xasprintf("%s/pochta.conf", dir);
	struct buf b;
	int r;

	*conf_r = NULL;
	*errstr_r = NULL;
	buf_init(&b, CONF_FILE_MAX);
	r = read_file(path, &b, errstr_r);
	if (r == 0)
		r = conf_load_text(dir, path, b.data != NULL ? b.data : "",
		    b.len, overrides, n_overrides, conf_r, errstr_r);
	buf_release(&b);
	free(path);
	return r;
}

const char *
conf_dir(const struct conf *conf)
{
	return conf->dir;
}

static const struct conf_entry *
entry_get(const struct conf *conf, const char *name)
{
	const struct conf_entry *e = entry_find(conf, name);

	if (e == NULL)
		panic("conf: parameter %s is not declared", name);
	return e;
}

static const struct conf_entry *
entry_typed(const struct conf *conf, const char *name, enum conf_type type)
{
	const struct conf_entry *e = entry_get(conf, name);

	if (e->param->type != type &&
	    !(type == CONF_STR && e->param->type == CONF_LIST))
		panic("conf: parameter %s asked for with the wrong type",
		    name);
	return e;
}

const char *
conf_str(const struct conf *conf, const char *name)
{
	return entry_typed(conf, name, CONF_STR)->value;
}

long long
conf_int(const struct conf *conf, const char *name)
{
	return entry_typed(conf, name, CONF_INT)->num;
}

int
conf_bool(const struct conf *conf, const char *name)
{
	return entry_typed(conf, name, CONF_BOOL)->num != 0;
}

long long
conf_time(const struct conf *conf, const char *name)
{
	return entry_typed(conf, name, CONF_TIME)->num;
}

long long
conf_size(const struct conf *conf, const char *name)
{
	return entry_typed(conf, name, CONF_SIZE)->num;
}

char **
conf_list(const struct conf *conf, const char *name, size_t *n_r)
{
	const char *s = entry_typed(conf, name, CONF_LIST)->value, *w;
	char **list = xcalloc(1, sizeof(*list));
	size_t n = 0;

	for (;;) {
		while (*s == ',' || isspace((unsigned char)*s))
			s++;
		if (*s == '\0')
			break;
		for (w = s; *s != '\0' && *s != ',' &&
		    !isspace((unsigned char)*s); s++)
			;
		list = xreallocarray(list, n + 2, sizeof(*list));
		list[n++] = xstrndup(w, s - w);
		list[n] = NULL;
	}
	if (n_r != NULL)
		*n_r = n;
	return list;
}

void
conf_list_free(char ***listp)
{
	char **list = *listp;

	if (list == NULL)
		return;
	for (size_t i = 0; list[i] != NULL; i++)
		free(list[i]);
	free(list);
	*listp = NULL;
}

int
conf_is_set(const struct conf *conf, const char *name)
{
	return entry_get(conf, name)->raw != NULL;
}

const char *
conf_raw(const struct conf *conf, const char *name)
{
	const struct conf_entry *e = entry_get(conf, name);

	if (strcmp(name, "config_directory") == 0)
		return e->value;
	return e->raw != NULL ? e->raw : e->param->def;
}

const char *
conf_value(const struct conf *conf, const char *name)
{
	return entry_get(conf, name)->value;
}
