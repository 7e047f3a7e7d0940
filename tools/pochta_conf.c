/*
 * pochta_conf.c - `pochta conf`, in the manner of postconf(1): show
 * parameters (effective, set, default or expanded), edit pochta.conf in
 * place (-e, -X) keeping every other line, and `check` both configuration
 * files. An edit is validated as a whole file before it replaces the old
 * one atomically (temporary file, fsync, rename): a refused edit changes
 * nothing.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "master_conf.h"
#include "pochta.h"
#include "xalloc.h"

#define CONF_USAGE \
	"usage: pochta conf [-dnvx] [-o name=value]... [NAME...]\n" \
	"       pochta conf -e NAME=VALUE...\n" \
	"       pochta conf -X NAME...\n" \
	"       pochta conf check\n"

enum conf_mode {
	MODE_SHOW,
	MODE_EDIT,
	MODE_REMOVE,
};

struct conf_opts {
	enum conf_mode mode;
	int defaults;		/* -d */
	int set_only;		/* -n */
	int expand;		/* -x */
	int describe;		/* -v */
	char **overrides;	/* -o, in order */
	size_t n_overrides;
};

/* One -e or -X argument. */
struct conf_edit {
	char *name;
	char *value;		/* NULL for -X */
	int done;		/* already written into the new text */
};

static int
conf_usage(void)
{
	fputs(CONF_USAGE, stderr);
	return EXIT_USAGE;
}

static int
param_cmp(const void *a, const void *b)
{
	const struct conf_param *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* Every declared parameter, sorted by name; NULL-terminated. */
static const struct conf_param **
params_sorted(void)
{
	const struct conf_param **all = NULL;
	size_t n = 0;

	for (const struct conf_param_group *g = conf_param_groups;
	     g->name != NULL; g++)
		for (const struct conf_param *p = g->params; p->name != NULL;
		     p++) {
			all = xreallocarray(all, n + 2, sizeof(*all));
			all[n++] = p;
		}
	if (all == NULL)
		all = xcalloc(1, sizeof(*all));
	qsort(all, n, sizeof(*all), param_cmp);
	all[n] = NULL;
	return all;
}

static const char *
type_name(enum conf_type type)
{
	switch (type) {
	case CONF_STR:
		return "string";
	case CONF_INT:
		return "integer";
	case CONF_BOOL:
		return "boolean";
	case CONF_TIME:
		return "time";
	case CONF_SIZE:
		return "size";
	case CONF_LIST:
		return "list";
	}
	return "?";
}

static void
print_param(const struct conf_opts *o, const struct conf_param *p,
    const char *value)
{
	if (o->describe)
		printf("# %s (%s): %s\n", p->name, type_name(p->type),
		    p->desc);
	if (*value == '\0')
		printf("%s =\n", p->name);
	else
		printf("%s = %s\n", p->name, value);
}

static int
flush_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		pochta_err("conf: writing to standard output: %s",
		    strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * Load the configuration for showing (for -d -x, the defaults alone). -o
 * arguments are checked against the defaults first, so a bad -o is told
 * apart (usage, exit 2) from a bad file (exit 1).
 */
static int
load_for_show(const struct conf_opts *o, const char *confdir,
    struct conf **conf_r)
{
	char *path = xasprintf("%s/pochta.conf", confdir), *err = NULL;
	int r, rc = 0;

	r = conf_load_text(confdir, path, "", 0, o->overrides,
	    o->n_overrides, conf_r, &err);
	if (r < 0) {
		rc = EXIT_USAGE;
	} else if (!o->defaults) {
		conf_free(conf_r);
		if (conf_load(confdir, o->overrides, o->n_overrides, conf_r,
		    &err) < 0)
			rc = 1;
	}
	if (rc != 0)
		pochta_err("conf: %s", err);
	free(err);
	free(path);
	return rc;
}

static int
conf_show(const struct conf_opts *o, int argc, char **argv,
    const char *confdir)
{
	const struct conf_param **list;
	struct conf *conf = NULL;
	int rc = 0;

	if (argc > 0) {
		list = xcalloc(argc + 1, sizeof(*list));
		for (int i = 0; i < argc; i++)
			if ((list[i] = conf_param_find(argv[i])) == NULL) {
				pochta_err("conf: unknown parameter '%s'",
				    argv[i]);
				free(list);
				return 1;
			}
	} else {
		list = params_sorted();
	}
	if ((!o->defaults || o->expand) &&
	    (rc = load_for_show(o, confdir, &conf)) != 0)
		goto out;
	for (size_t i = 0; list[i] != NULL; i++) {
		const struct conf_param *p = list[i];

		if (o->set_only && !conf_is_set(conf, p->name))
			continue;
		if (o->expand)
			print_param(o, p, conf_value(conf, p->name));
		else if (o->defaults)
			print_param(o, p, p->def);
		else
			print_param(o, p, conf_raw(conf, p->name));
	}
	rc = flush_stdout();
out:
	conf_free(&conf);
	free(list);
	return rc;
}

/*
 * Read path into b. A missing file is empty text (-e may create it):
 * *exists_r tells, and *st_r gets its mode and owner.
 */
static int
read_conf_file(const char *path, struct buf *b, struct stat *st_r,
    int *exists_r)
{
	char chunk[65536];
	size_t n;
	FILE *fp;
	int fd;

	*exists_r = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		if (errno == ENOENT)
			return 0;
		pochta_err("conf: %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st_r) < 0 || !S_ISREG(st_r->st_mode) ||
	    (fp = fdopen(fd, "r")) == NULL) {
		pochta_err("conf: %s: not a regular file", path);
		close(fd);
		return -1;
	}
	*exists_r = 1;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		if (buf_append(b, chunk, n) < 0) {
			pochta_err("conf: %s: larger than %d bytes", path,
			    CONF_FILE_MAX);
			fclose(fp);
			return -1;
		}
	if (ferror(fp)) {
		pochta_err("conf: %s: %s", path, strerror(errno));
		fclose(fp);
		return -1;
	}
	fclose(fp);
	return 0;
}

static struct conf_edit *
edit_find(struct conf_edit *edits, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(edits[i].name) == len &&
		    memcmp(edits[i].name, name, len) == 0)
			return &edits[i];
	return NULL;
}

static void
edit_emit(struct buf *out, const struct conf_edit *e)
{
	if (*e->value == '\0')
		buf_printf(out, "%s =\n", e->name);
	else
		buf_printf(out, "%s = %s\n", e->name, e->value);
}

/*
 * The new text: a setting named by an edit is replaced where it first
 * appears (its continuation lines go with it, later duplicates are
 * dropped), removals are dropped, other lines are kept byte for byte, and
 * new settings are appended.
 */
static void
edit_text(const struct buf *in, struct conf_edit *edits, size_t n_edits,
    struct buf *out)
{
	const char *p = in->data, *end = in->data + in->len, *nl;
	struct conf_edit *e;
	int skipping = 0;
	size_t len;

	for (; p < end; p = nl < end ? nl + 1 : end) {
		if ((nl = memchr(p, '\n', end - p)) == NULL)
			nl = end;
		len = nl - p;
		switch (conf_line_kind(p, len)) {
		case CONF_LINE_BLANK:
		case CONF_LINE_COMMENT:
			break;
		case CONF_LINE_CONT:
			if (skipping)
				continue;
			break;
		case CONF_LINE_SETTING:
			e = edit_find(edits, n_edits, p,
			    conf_line_name_len(p, len));
			skipping = e != NULL;
			if (e == NULL)
				break;
			if (e->value != NULL && !e->done)
				edit_emit(out, e);
			e->done = 1;
			continue;
		}
		buf_append(out, p, nl < end ? len + 1 : len);
		if (nl == end)
			buf_puts(out, "\n");
	}
	for (size_t i = 0; i < n_edits; i++)
		if (edits[i].value != NULL && !edits[i].done)
			edit_emit(out, &edits[i]);
}

/* Write text to a temporary file next to path, fsync, rename over path. */
static int
replace_file(const char *path, const struct buf *text, const struct stat *st,
    int exists)
{
	char *dir = xstrdup(path), *slash = strrchr(dir, '/'), *tmp;
	int fd, dfd, rc = -1;
	size_t off = 0;
	ssize_t n;

	if (slash == NULL) {
		free(dir);
		dir = xstrdup(".");
	} else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	tmp = xasprintf("%s/.pochta.conf.XXXXXX", dir);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		pochta_err("conf: %s: %s", tmp, strerror(errno));
		goto out;
	}
	/* Keep the old file's mode and, when we may, its owner. */
	if (fchmod(fd, exists ? st->st_mode & 07777 : 0644) < 0 ||
	    (exists && geteuid() == 0 &&
	    fchown(fd, st->st_uid, st->st_gid) < 0))
		goto fail;
	while (off < text->len) {
		if ((n = write(fd, text->data + off, text->len - off)) < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	/* The rename itself is durable only once the directory is synced. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = 0;
	goto out;
fail:
	pochta_err("conf: %s: %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	free(tmp);
	free(dir);
	return rc;
}

/* Split -e NAME=VALUE (or take -X NAME); 2 for a malformed argument. */
static int
parse_edit(const char *arg, int with_value, struct conf_edit *e)
{
	const char *eq = with_value ? strchr(arg, '=') : NULL, *v;
	size_t nlen, vlen;

	e->name = e->value = NULL;
	e->done = 0;
	if (with_value && eq == NULL) {
		pochta_err("conf: -e %s: expected NAME=VALUE", arg);
		return EXIT_USAGE;
	}
	while (isspace((unsigned char)*arg))
		arg++;
	nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
	while (nlen > 0 && isspace((unsigned char)arg[nlen - 1]))
		nlen--;
	e->name = xstrndup(arg, nlen);
	if (nlen == 0 || conf_line_name_len(e->name, nlen) != nlen) {
		pochta_err("conf: bad parameter name '%s'", e->name);
		return EXIT_USAGE;
	}
	if (!with_value)
		return 0;
	if (conf_param_find(e->name) == NULL) {
		pochta_err("conf: unknown parameter '%s'", e->name);
		return 1;
	}
	for (v = eq + 1; isspace((unsigned char)*v); v++)
		;
	for (vlen = strlen(v); vlen > 0 && isspace((unsigned char)v[vlen - 1]);
	    vlen--)
		;
	e->value = xstrndup(v, vlen);
	/* A newline would smuggle in another setting. */
	for (size_t i = 0; i < vlen; i++)
		if (iscntrl((unsigned char)v[i]) && v[i] != '\t') {
			pochta_err("conf: -e %s: control character in the "
			    "value", e->name);
			return 1;
		}
	return 0;
}

static void
edits_free(struct conf_edit *edits, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(edits[i].name);
		free(edits[i].value);
	}
	free(edits);
}

/* Apply the edits to the text, check the result, then replace the file. */
static int
conf_edit_file(const char *confdir, struct conf_edit *edits, size_t n)
{
	char *path = xasprintf("%s/pochta.conf", confdir), *real, *err = NULL;
	struct buf in, out;
	struct conf *conf = NULL;
	struct stat st;
	int exists, rc = 1;

	/* Follow a symbolic link: edit the file, keep the link. */
	if ((real = realpath(path, NULL)) == NULL)
		real = xstrdup(path);
	buf_init(&in, CONF_FILE_MAX);
	buf_init(&out, 0);
	if (read_conf_file(real, &in, &st, &exists) < 0)
		goto out;
	edit_text(&in, edits, n, &out);
	if (out.len > CONF_FILE_MAX) {
		pochta_err("conf: %s would be larger than %d bytes (nothing "
		    "changed)", path, CONF_FILE_MAX);
		goto out;
	}
	if (conf_load_text(confdir, path, out.data != NULL ? out.data : "",
	    out.len, NULL, 0, &conf, &err) < 0) {
		pochta_err("conf: %s (nothing changed)", err);
		goto out;
	}
	if (exists && in.len == out.len && (in.len == 0 ||
	    (out.data != NULL && memcmp(in.data, out.data, in.len) == 0)))
		rc = 0;
	else if (replace_file(real, &out, &st, exists) == 0)
		rc = 0;
out:
	conf_free(&conf);
	free(err);
	buf_release(&in);
	buf_release(&out);
	free(real);
	free(path);
	return rc;
}

static int
conf_edit(int argc, char **argv, const char *confdir, int with_value)
{
	struct conf_edit *edits = xcalloc(argc, sizeof(*edits)), *prev;
	size_t n = 0;
	int rc = 0, dfd;

	for (int i = 0; i < argc && rc == 0; i++) {
		struct conf_edit *e = &edits[n++];

		if ((rc = parse_edit(argv[i], with_value, e)) != 0)
			break;
		prev = edit_find(edits, n - 1, e->name, strlen(e->name));
		if (prev != NULL) {
			/* The last of several edits of one name wins. */
			free(prev->value);
			prev->value = e->value;
			free(e->name);
			e->name = e->value = NULL;
			n--;
		}
	}
	if (rc != 0) {
		edits_free(edits, n);
		return rc;
	}
	/* Two editors at once would lose one's change: take turns. */
	if ((dfd = open(confdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		pochta_err("conf: %s: %s", confdir, strerror(errno));
		edits_free(edits, n);
		return 1;
	}
	if (flock(dfd, LOCK_EX) < 0)
		pochta_err("conf: locking %s: %s", confdir, strerror(errno));
	rc = conf_edit_file(confdir, edits, n);
	close(dfd);
	edits_free(edits, n);
	return rc;
}

/* Both files; silent when all is well. */
static int
conf_check(const char *confdir)
{
	struct conf *conf = NULL;
	struct master_conf *mc = NULL;
	char *err = NULL, *path;
	int rc = 0;

	if (conf_load(confdir, NULL, 0, &conf, &err) < 0) {
		pochta_err("conf: %s", err);
		free(err);
		return 1;
	}
	conf_free(&conf);
	path = xasprintf("%s/master.conf", confdir);
	/* Only root switches users, so only then must the users exist. */
	if (master_conf_load(path, geteuid() == 0, &mc, &err) < 0) {
		pochta_err("conf: %s", err);
		free(err);
		rc = 1;
	}
	master_conf_free(&mc);
	free(path);
	return rc;
}

static int
parse_opts(int argc, char **argv, struct conf_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->overrides = xcalloc(argc, sizeof(*o->overrides));
	/* 0 makes getopt start afresh on the subcommand's arguments. */
	optind = 0;
	while ((ch = getopt(argc, argv, "+deno:vxXh")) != -1) {
		switch (ch) {
		case 'd':
			o->defaults = 1;
			break;
		case 'e':
		case 'X':
			if (o->mode != MODE_SHOW)
				return conf_usage();
			o->mode = ch == 'e' ? MODE_EDIT : MODE_REMOVE;
			break;
		case 'n':
			o->set_only = 1;
			break;
		case 'o':
			if (strchr(optarg, '=') == NULL) {
				pochta_err("conf: -o %s: expected name=value",
				    optarg);
				return EXIT_USAGE;
			}
			o->overrides[o->n_overrides++] = optarg;
			break;
		case 'v':
			o->describe = 1;
			break;
		case 'x':
			o->expand = 1;
			break;
		case 'h':
			fputs(CONF_USAGE, stdout);
			return -1;
		default:
			return conf_usage();
		}
	}
	/* Defaults are what the tables say: nothing set, nothing overridden. */
	if (o->defaults && (o->set_only || o->n_overrides > 0))
		return conf_usage();
	if (o->mode != MODE_SHOW && (o->defaults || o->set_only ||
	    o->expand || o->describe || o->n_overrides > 0 || optind == argc))
		return conf_usage();
	return 0;
}

int
pochta_conf_main(int argc, char **argv, const char *confdir)
{
	struct conf_opts o;
	int rc;

	if (confdir == NULL)
		confdir = conf_default_dir();
	if ((rc = parse_opts(argc, argv, &o)) != 0) {
		free(o.overrides);
		return rc < 0 ? 0 : rc;
	}
	argc -= optind;
	argv += optind;
	if (o.mode == MODE_SHOW && argc > 0 && strcmp(argv[0], "check") == 0) {
		if (argc > 1 || o.defaults || o.set_only || o.expand ||
		    o.describe || o.n_overrides > 0)
			rc = conf_usage();
		else
			rc = conf_check(confdir);
	} else if (o.mode == MODE_EDIT || o.mode == MODE_REMOVE) {
		rc = conf_edit(argc, argv, confdir, o.mode == MODE_EDIT);
	} else {
		rc = conf_show(&o, argc, argv, confdir);
	}
	free(o.overrides);
	return rc;
}
