/*
 * pochta_user.c - `pochta user add|del|passwd|list`: edit the user table
 * named by user_maps (its first table) in place, keeping comments and
 * other entries, then rebuild its LMDB file (see pochta-user(8)). A table
 * that does not build is refused before anything is changed.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "conf.h"
#include "map.h"
#include "pochta.h"
#include "xalloc.h"

/* A user table bigger than this is not edited by this command. */
#define USER_TABLE_MAX	((size_t)256 << 20)

struct user_table {
	char *spec;
	char *src;
	char *db;
	int dirfd;		/* locked while we edit */
	struct buf text;	/* the source as read */
	int exists;
	struct stat st;
};

/* One physical line of the source. */
struct user_line {
	const char *p;
	size_t len;		/* including the LF, if any */
	enum { UL_OTHER, UL_CONT, UL_KEY } kind;
	const char *key;	/* UL_KEY: the key, keylen bytes */
	size_t keylen;
};

static int
user_usage(void)
{
	fprintf(stderr, "usage: pochta user add USER@DOMAIN [--password-stdin] "
	    "[--mailbox PATH] [--quota SIZE]\n"
	    "       pochta user del USER@DOMAIN\n"
	    "       pochta user passwd USER@DOMAIN [--password-stdin]\n"
	    "       pochta user list\n");
	return EXIT_USAGE;
}

static int
user_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Split the next line off text at *off; 0 at the end. */
static int
user_next_line(const struct buf *text, size_t *off, struct user_line *l)
{
	const char *s = text->data, *nl;
	size_t i = 0;

	if (*off >= text->len)
		return 0;
	l->p = s + *off;
	nl = memchr(l->p, '\n', text->len - *off);
	l->len = nl != NULL ? (size_t)(nl - l->p) + 1 : text->len - *off;
	*off += l->len;
	while (i < l->len && user_space((unsigned char)l->p[i]))
		i++;
	if (i == l->len || l->p[i] == '\n' || l->p[i] == '#')
		l->kind = UL_OTHER;
	else if (i > 0)
		l->kind = UL_CONT;
	else {
		l->kind = UL_KEY;
		l->key = l->p;
		for (l->keylen = 0; l->keylen < l->len &&
		    !user_space((unsigned char)l->p[l->keylen]) &&
		    l->p[l->keylen] != '\n'; l->keylen++)
			;
	}
	return 1;
}

static int
user_key_is(const struct user_line *l, const char *addr)
{
	return l->kind == UL_KEY && l->keylen == strlen(addr) &&
	    strncasecmp(l->key, addr, l->keylen) == 0;
}

/* Append trimmed text of a line to a value, one space between parts. */
static void
user_add_value(struct buf *v, const char *p, size_t n)
{
	while (n > 0 && (user_space((unsigned char)*p) || *p == '\n')) {
		p++;
		n--;
	}
	while (n > 0 && (user_space((unsigned char)p[n - 1]) ||
	    p[n - 1] == '\n'))
		n--;
	if (n == 0)
		return;
	if (v->len > 0)
		buf_append(v, " ", 1);
	buf_append(v, p, n);
}

/*
 * The value of addr's entry in *value_r and its key as written in *key_r
 * (if not NULL), both malloc'd; or -ENOENT.
 */
static int
user_find(const struct user_table *t, const char *addr, char **value_r,
    char **key_r)
{
	struct user_line l;
	struct buf v;
	size_t off = 0;
	int in = 0, found = 0;

	buf_init(&v, 0);
	while (user_next_line(&t->text, &off, &l)) {
		if (l.kind == UL_KEY) {
			if (found)
				break;
			in = found = user_key_is(&l, addr);
			if (in && key_r != NULL)
				*key_r = xstrndup(l.key, l.keylen);
			if (in)
				user_add_value(&v, l.p + l.keylen,
				    l.len - l.keylen);
		} else if (l.kind == UL_CONT && in) {
			user_add_value(&v, l.p, l.len);
		}
	}
	if (!found) {
		buf_release(&v);
		return -ENOENT;
	}
	*value_r = buf_steal(&v);
	return 0;
}

/*
 * The text with addr's entry (its key line and continuation lines)
 * replaced by line, or removed when line is NULL. Comments stay.
 */
static void
user_edit(const struct user_table *t, const char *addr, const char *line,
    struct buf *out)
{
	struct user_line l;
	size_t off = 0;
	int in = 0;

	while (user_next_line(&t->text, &off, &l)) {
		if (l.kind == UL_KEY) {
			in = user_key_is(&l, addr);
			if (in && line != NULL)
				buf_puts(out, line);
			if (in)
				continue;
		} else if (l.kind == UL_CONT && in) {
			continue;
		}
		buf_append(out, l.p, l.len);
	}
}

/* An empty table, safe to close whatever happens next. */
static void
user_table_init(struct user_table *t)
{
	memset(t, 0, sizeof(*t));
	t->dirfd = -1;
	buf_init(&t->text, USER_TABLE_MAX);
}

static void
user_table_close(struct user_table *t)
{
	if (t->dirfd != -1)
		close(t->dirfd);
	buf_release(&t->text);
	free(t->spec);
	free(t->src);
	free(t->db);
}

static int
user_read_source(struct user_table *t)
{
	char *p;
	ssize_t n;
	int fd;

	if ((fd = open(t->src, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		if (errno == ENOENT)
			return 0;
		pochta_err("user: %s: %s", t->src, strerror(errno));
		return -1;
	}
	if (fstat(fd, &t->st) == -1 || !S_ISREG(t->st.st_mode)) {
		pochta_err("user: %s: not a regular file", t->src);
		close(fd);
		return -1;
	}
	t->exists = 1;
	for (;;) {
		if ((p = buf_space(&t->text, 65536)) == NULL) {
			pochta_err("user: %s: larger than %zu bytes", t->src,
			    USER_TABLE_MAX);
			close(fd);
			return -1;
		}
		if ((n = read(fd, p, 65536)) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		buf_commit(&t->text, (size_t)n);
	}
	if (n < 0)
		pochta_err("user: %s: %s", t->src, strerror(errno));
	close(fd);
	return n < 0 ? -1 : 0;
}

/* Find the table in user_maps, lock its directory and read it. */
static int
user_table_open(const char *confdir, struct user_table *t, int for_edit)
{
	struct conf *conf = NULL;
	char *err = NULL, **list, *dir, *slash;
	size_t n;

	if (conf_load(confdir != NULL ? confdir : conf_default_dir(), NULL, 0,
	    &conf, &err) != 0) {
		pochta_err("user: %s", err);
		free(err);
		return -1;
	}
	list = conf_list(conf, "user_maps", &n);
	if (n > 0)
		t->spec = xstrdup(list[0]);
	conf_list_free(&list);
	conf_free(&conf);
	if (t->spec == NULL) {
		pochta_err("user: user_maps is empty: no user table");
		return -1;
	}
	if (map_spec_paths(t->spec, &t->src, &t->db, &err) != 0) {
		pochta_err("user: user_maps: %s", err);
		free(err);
		return -1;
	}
	if (!for_edit)
		return 0;
	/*
	 * The source is replaced by rename, so lock the directory: two
	 * commands editing at once must not lose one's change.
	 */
	dir = xstrdup(t->src);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else
		slash[slash == dir] = '\0';
	t->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dirfd == -1 || flock(t->dirfd, LOCK_EX) == -1) {
		pochta_err("user: %s: %s", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	return user_read_source(t);
}

/* Write text over the source: temporary file, fsync, rename, fsync. */
static int
user_write_source(struct user_table *t, const struct buf *text)
{
	char *tmp = xasprintf("%s.tmpXXXXXX", t->src);
	size_t off = 0;
	ssize_t n;
	int fd, ok;

	if ((fd = mkstemp(tmp)) == -1) {
		pochta_err("user: %s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	/* Password hashes: not for everyone's eyes. */
	ok = fchmod(fd, t->exists ? (t->st.st_mode & 0777) : 0640) == 0 &&
	    (!t->exists || geteuid() != 0 ||
	    fchown(fd, t->st.st_uid, t->st.st_gid) == 0);
	while (ok && off < text->len) {
		n = write(fd, text->data + off, text->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		ok = n > 0;
		off += ok ? (size_t)n : 0;
	}
	ok = ok && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	ok = ok && rename(tmp, t->src) == 0;
	ok = ok && fsync(t->dirfd) == 0;
	if (!ok) {
		pochta_err("user: writing %s: %s", t->src, strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	return ok ? 0 : -1;
}

static int
user_build(const char *spec)
{
	char *err = NULL;

	if (map_build(spec, &err) != 0) {
		pochta_err("user: %s", err);
		free(err);
		return -1;
	}
	return 0;
}

/*
 * Write the source with addr's entry replaced by line (or removed when
 * line is NULL), or with line appended when addr is NULL; then rebuild.
 */
static int
user_commit(struct user_table *t, const char *addr, const char *line)
{
	struct buf out;
	int rc;

	buf_init(&out, 0);
	if (addr != NULL) {
		user_edit(t, addr, line, &out);
	} else {
		buf_append(&out, t->text.data, t->text.len);
		if (out.len > 0 && out.data[out.len - 1] != '\n')
			buf_puts(&out, "\n");
		buf_puts(&out, line);
	}
	rc = user_write_source(t, &out);
	buf_release(&out);
	if (rc == 0)
		rc = user_build(t->spec);
	return rc;
}

/* Read one line from fp into pw (at most AUTH_PASSWORD_MAX bytes). */
static int
user_read_line(FILE *fp, char *pw, size_t size)
{
	size_t n;

	if (fgets(pw, (int)size, fp) == NULL)
		return -1;
	n = strlen(pw);
	if (n > 0 && pw[n - 1] == '\n')
		pw[--n] = '\0';
	else if (n == size - 1 && !feof(fp))
		return -2;
	if (n > 0 && pw[n - 1] == '\r')
		pw[--n] = '\0';
	return 0;
}

/* The terminal state to restore if a signal ends us at the prompt. */
static struct termios user_tty_saved;
static volatile sig_atomic_t user_tty_fd = -1;

static void
user_tty_restore(int sig)
{
	if (user_tty_fd != -1)
		tcsetattr(user_tty_fd, TCSAFLUSH, &user_tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Prompt on the terminal with echo off; ^C leaves echo on again. */
static int
user_tty_prompt(FILE *tty, const char *prompt, char *pw, size_t size)
{
	static const int sigs[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGTSTP};
	struct sigaction sa, old_sa[5];
	struct termios quiet;
	int fd = fileno(tty), rc;

	if (tcgetattr(fd, &user_tty_saved) == -1)
		return -1;
	quiet = user_tty_saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = user_tty_restore;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 5; i++)
		sigaction(sigs[i], &sa, &old_sa[i]);
	user_tty_fd = fd;
	/* Echo off before the prompt, so no typed-ahead byte is flushed. */
	rc = tcsetattr(fd, TCSAFLUSH, &quiet);
	fputs(prompt, tty);
	fflush(tty);
	rc = rc == 0 ? user_read_line(tty, pw, size) : -1;
	tcsetattr(fd, TCSAFLUSH, &user_tty_saved);
	user_tty_fd = -1;
	for (size_t i = 0; i < 5; i++)
		sigaction(sigs[i], &old_sa[i], NULL);
	return rc;
}

static int
user_get_password(int from_stdin, char *pw, size_t size)
{
	char again[AUTH_PASSWORD_MAX + 2];
	FILE *tty;
	int rc;

	if (from_stdin) {
		rc = user_read_line(stdin, pw, size);
	} else {
		if ((tty = fopen("/dev/tty", "r+e")) == NULL) {
			pochta_err("user: no terminal to ask for the password "
			    "(use --password-stdin)");
			return -1;
		}
		rc = user_tty_prompt(tty, "New password: ", pw, size);
		if (rc == 0)
			rc = user_tty_prompt(tty, "Retype new password: ",
			    again, sizeof(again));
		if (rc == 0 && strcmp(pw, again) != 0) {
			pochta_err("user: the passwords differ");
			rc = -3;
		}
		explicit_bzero(again, sizeof(again));
		fclose(tty);
	}
	if (rc == -2)
		pochta_err("user: password longer than %d bytes",
		    AUTH_PASSWORD_MAX);
	else if (rc == -1 || (rc == 0 && pw[0] == '\0'))
		pochta_err("user: empty password refused");
	return rc == 0 && pw[0] != '\0' ? 0 : -1;
}

/* A new hash for the password the user gives; NULL on failure. */
static char *
user_new_hash(int from_stdin)
{
	char pw[AUTH_PASSWORD_MAX + 2], *hash = NULL;
	int rc;

	if (user_get_password(from_stdin, pw, sizeof(pw)) != 0)
		return NULL;
	rc = auth_hash_password(pw, &hash);
	explicit_bzero(pw, sizeof(pw));
	if (rc != 0)
		pochta_err("user: hashing the password: %s", strerror(-rc));
	return rc == 0 ? hash : NULL;
}

/* Check the address and that the table builds before changing it. */
static int
user_prepare(const char *confdir, const char *addr, struct user_table *t)
{
	const char *why;

	if (auth_address_check(addr, &why) != 0) {
		pochta_err("user: %s: invalid address: %s", addr, why);
		return -1;
	}
	if (user_table_open(confdir, t, 1) != 0)
		return -1;
	if (t->exists && user_build(t->spec) != 0) {
		pochta_err("user: fix %s first; nothing was changed", t->src);
		return -1;
	}
	return 0;
}

struct user_opts {
	int password_stdin;
	const char *mailbox;
	const char *quota;
};

static int
user_cmd_add(const char *confdir, const char *addr, const struct user_opts *o)
{
	struct user_table t;
	struct auth_user *u = NULL;
	struct buf line;
	const char *why;
	char *hash = NULL, *old = NULL;
	int ret = 1;

	user_table_init(&t);
	buf_init(&line, 0);
	if (o->mailbox != NULL && strpbrk(o->mailbox, " \t\r\n") != NULL) {
		pochta_err("user: --mailbox: white space is not allowed");
		goto out;
	}
	if (user_prepare(confdir, addr, &t) != 0)
		goto out;
	if (user_find(&t, addr, &old, NULL) == 0) {
		pochta_err("user: %s already exists in %s", addr, t.src);
		goto out;
	}
	/* Check the options with the parser the daemons use. */
	buf_printf(&line, "%s", "!");
	if (o->mailbox != NULL)
		buf_printf(&line, " mailbox=%s", o->mailbox);
	if (o->quota != NULL)
		buf_printf(&line, " quota=%s", o->quota);
	if (auth_user_parse(addr, line.data, &u, &why) != 0) {
		pochta_err("user: %s: %s", addr, why);
		goto out;
	}
	if ((hash = user_new_hash(o->password_stdin)) == NULL)
		goto out;
	buf_reset(&line);
	buf_printf(&line, "%s %s", addr, hash);
	if (o->mailbox != NULL)
		buf_printf(&line, " mailbox=%s", o->mailbox);
	if (o->quota != NULL)
		buf_printf(&line, " quota=%s", o->quota);
	buf_puts(&line, "\n");
	ret = user_commit(&t, NULL, line.data) == 0 ? 0 : 1;
out:
	auth_user_free(&u);
	free(hash);
	free(old);
	buf_release(&line);
	user_table_close(&t);
	return ret;
}

static int
user_cmd_del(const char *confdir, const char *addr)
{
	struct user_table t;
	char *old = NULL;
	int ret = 1;

	user_table_init(&t);
	if (user_prepare(confdir, addr, &t) != 0)
		goto out;
	if (user_find(&t, addr, &old, NULL) != 0) {
		pochta_err("user: %s: no such user in %s", addr, t.src);
		goto out;
	}
	ret = user_commit(&t, addr, NULL) == 0 ? 0 : 1;
out:
	free(old);
	user_table_close(&t);
	return ret;
}

static int
user_cmd_passwd(const char *confdir, const char *addr,
    const struct user_opts *o)
{
	struct user_table t;
	char *old = NULL, *key = NULL, *hash = NULL, *line = NULL, *rest;
	int ret = 1;

	user_table_init(&t);
	if (user_prepare(confdir, addr, &t) != 0)
		goto out;
	if (user_find(&t, addr, &old, &key) != 0) {
		pochta_err("user: %s: no such user in %s", addr, t.src);
		goto out;
	}
	if ((hash = user_new_hash(o->password_stdin)) == NULL)
		goto out;
	/* Keep the options after the old hash as they were. */
	rest = old + strcspn(old, " \t");
	line = xasprintf("%s %s%s\n", key, hash, rest);
	ret = user_commit(&t, addr, line) == 0 ? 0 : 1;
out:
	free(old);
	free(key);
	free(hash);
	free(line);
	user_table_close(&t);
	return ret;
}

static int
user_print(const char *key, const char *value, void *arg)
{
	struct auth_user *u = NULL;
	const char *why;
	int *bad = arg;

	if (auth_user_parse(key, value, &u, &why) != 0) {
		pochta_err("user list: %s: %s", key, why);
		*bad = 1;
		return 0;
	}
	printf("%s\t%s\t%" PRIu64 "\n", key, u->mailbox, u->quota);
	auth_user_free(&u);
	return 0;
}

static int
user_cmd_list(const char *confdir)
{
	struct user_table t;
	struct map *m = NULL;
	char *err = NULL;
	int bad = 0, rc, ret = 1;

	user_table_init(&t);
	if (user_table_open(confdir, &t, 0) != 0)
		goto out;
	if ((rc = map_open(t.spec, &m, &err)) != 0) {
		/* No table and no source yet: no users. */
		if (rc == -ENOENT && access(t.src, F_OK) == -1 &&
		    errno == ENOENT)
			ret = 0;
		else
			pochta_err("user: %s", err);
		free(err);
		goto out;
	}
	if ((rc = map_walk(m, user_print, &bad)) != 0)
		pochta_err("user list: %s: %s", t.spec, strerror(-rc));
	else if (fflush(stdout) != 0)
		pochta_err("user list: %s", strerror(errno));
	else
		ret = bad;
out:
	map_free(&m);
	user_table_close(&t);
	return ret;
}

int
pochta_user_main(int argc, char **argv, const char *confdir)
{
	static const struct option longopts[] = {
		{"password-stdin", no_argument, NULL, 'p'},
		{"mailbox", required_argument, NULL, 'm'},
		{"quota", required_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct user_opts o = {0, NULL, NULL};
	const char *cmd;
	int ch;

	if (argc < 2)
		return user_usage();
	cmd = argv[1];
	argc--;
	argv++;
	optind = 0;	/* a fresh scan, for GNU getopt's permutation */
	while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			o.password_stdin = 1;
			break;
		case 'm':
			o.mailbox = optarg;
			break;
		case 'q':
			o.quota = optarg;
			break;
		case 'h':
			user_usage();
			return 0;
		default:
			pochta_err("user: bad option '%s'", argv[optind - 1]);
			return user_usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "list") == 0 && argc == 0 && !o.password_stdin &&
	    o.mailbox == NULL && o.quota == NULL)
		return user_cmd_list(confdir);
	if (argc != 1)
		return user_usage();
	if (strcmp(cmd, "add") == 0)
		return user_cmd_add(confdir, argv[0], &o);
	if (o.mailbox != NULL || o.quota != NULL)
		return user_usage();
	if (strcmp(cmd, "passwd") == 0)
		return user_cmd_passwd(confdir, argv[0], &o);
	if (strcmp(cmd, "del") == 0 && !o.password_stdin)
		return user_cmd_del(confdir, argv[0]);
	if (strcmp(cmd, "del") != 0 && strcmp(cmd, "list") != 0)
		pochta_err("user: unknown subcommand '%s'", cmd);
	return user_usage();
}
