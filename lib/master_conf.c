/*
 * master_conf.c - the master.conf parser (master_conf.h). Every problem is
 * reported as "path:line: message" and rejects the whole file: master keeps
 * its old table on reload rather than run half a configuration.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "master_conf.h"
#include "xalloc.h"

#define NAME_MAX_LEN 64

struct master_conf {
	struct master_service **svcs;
	size_t n;
};

static int
conf_error(char **errstr_r, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
conf_error(char **errstr_r, const char *path, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	*errstr_r = xasprintf("%s:%d: %s", path, line, msg);
	free(msg);
	return -EINVAL;
}

void
master_service_free(struct master_service **svcp)
{
	struct master_service *svc = *svcp;

	if (svc == NULL)
		return;
	free(svc->name);
	free(svc->listen);
	free(svc->host);
	free(svc->user);
	free(svc->chroot);
	for (size_t i = 0; i < svc->argc; i++)
		free(svc->argv[i]);
	free(svc->argv);
	free(svc);
	*svcp = NULL;
}

struct master_service *
master_service_dup(const struct master_service *src)
{
	struct master_service *svc = xcalloc(1, sizeof(*svc));

	svc->name = xstrdup(src->name);
	svc->type = src->type;
	svc->listen = xstrdup(src->listen);
	svc->host = src->host != NULL ? xstrdup(src->host) : NULL;
	svc->port = src->port;
	svc->user = src->user != NULL ? xstrdup(src->user) : NULL;
	svc->chroot = src->chroot != NULL ? xstrdup(src->chroot) : NULL;
	svc->procs = src->procs;
	svc->argc = src->argc;
	svc->argv = xcalloc(src->argc + 1, sizeof(char *));
	for (size_t i = 0; i < src->argc; i++)
		svc->argv[i] = xstrdup(src->argv[i]);
	svc->line = src->line;
	return svc;
}

void
master_conf_free(struct master_conf **confp)
{
	struct master_conf *conf = *confp;

	if (conf == NULL)
		return;
	for (size_t i = 0; i < conf->n; i++)
		master_service_free(&conf->svcs[i]);
	free(conf->svcs);
	free(conf);
	*confp = NULL;
}

size_t
master_conf_count(const struct master_conf *conf)
{
	return conf->n;
}

const struct master_service *
master_conf_service(const struct master_conf *conf, size_t i)
{
	return i < conf->n ? conf->svcs[i] : NULL;
}

const struct master_service *
master_conf_find(const struct master_conf *conf, const char *name)
{
	for (size_t i = 0; i < conf->n; i++)
		if (strcmp(conf->svcs[i]->name, name) == 0)
			return conf->svcs[i];
	return NULL;
}

static int
str_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

int
master_service_same_listen(const struct master_service *a,
    const struct master_service *b)
{
	if (a->type != b->type)
		return 0;
	if (a->type == MASTER_SERVICE_UNIX)
		return strcmp(a->listen, b->listen) == 0;
	return a->port == b->port && str_equal(a->host, b->host);
}

int
master_service_equal(const struct master_service *a,
    const struct master_service *b)
{
	if (strcmp(a->name, b->name) != 0 ||
	    !master_service_same_listen(a, b) ||
	    strcmp(a->listen, b->listen) != 0 || !str_equal(a->user, b->user) ||
	    !str_equal(a->chroot, b->chroot) || a->procs != b->procs || a->argc != b->argc)
		return 0;
	for (size_t i = 0; i < a->argc; i++)
		if (strcmp(a->argv[i], b->argv[i]) != 0)
			return 0;
	return 1;
}

/* Two services whose sockets could not both be bound. */
static int
listen_conflict(const struct master_service *a, const struct master_service *b)
{
	if (a->type != b->type)
		return 0;
	if (a->type == MASTER_SERVICE_UNIX)
		return strcmp(a->listen, b->listen) == 0;
	if (a->port != b->port)
		return 0;
	/* A wildcard takes the port on every address. */
	return a->host == NULL || b->host == NULL ||
	    strcmp(a->host, b->host) == 0;
}

static int
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > NAME_MAX_LEN)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		    *s == '.'))
			return 0;
	return 1;
}

/* A decimal number in [min, max], nothing else; -1 otherwise. */
static long
parse_number(const char *s, long min, long max)
{
	long v = 0;

	if (*s == '\0' || strlen(s) > 9)
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v >= min && v <= max ? v : -1;
}

/* host:port, [v6]:port, *:port, or port. */
static const char *
parse_inet(struct master_service *svc)
{
	const char *s = svc->listen, *colon, *portstr;
	char *host = NULL;
	unsigned char addr[16];

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || end[1] != ':')
			return "bad listen address: expected [ipv6]:port";
		host = xstrndup(s + 1, (size_t)(end - s - 1));
		if (inet_pton(AF_INET6, host, addr) != 1) {
			free(host);
			return "bad listen address: not an IPv6 address";
		}
		portstr = end + 2;
	} else if ((colon = strrchr(s, ':')) != NULL) {
		if (strchr(s, ':') != colon)
			return "bad listen address: write IPv6 as [addr]:port";
		if (!(colon - s == 1 && s[0] == '*')) {
			host = xstrndup(s, (size_t)(colon - s));
			if (inet_pton(AF_INET, host, addr) != 1) {
				free(host);
				return "bad listen address: host must be an "
				       "IPv4 address, [IPv6] or *";
			}
		}
		portstr = colon + 1;
	} else {
		portstr = s;
	}
	long port = parse_number(portstr, 1, 65535);
	if (port < 0) {
		free(host);
		return "bad port: expected a number from 1 to 65535";
	}
	svc->host = host;
	svc->port = (int)port;
	return NULL;
}

/* private/NAME or public/NAME, no "..", no empty component. */
static const char *
parse_unix(struct master_service *svc)
{
	const char *s = svc->listen, *rest;

	if (strncmp(s, "private/", 8) == 0)
		rest = s + 8;
	else if (strncmp(s, "public/", 7) == 0)
		rest = s + 7;
	else
		return "bad listen path: must start with private/ or public/";
	if (*rest == '\0' || strchr(rest, '/') != NULL || strlen(rest) > 64 ||
	    strcmp(rest, ".") == 0 || strcmp(rest, "..") == 0)
		return "bad listen path: expected private/NAME or public/NAME";
	if (strcmp(s, "private/master") == 0)
		return "bad listen path: private/master is master's own";
	return NULL;
}

/*
 * The user column: USER or "-", optionally followed by ":DIR", the directory
 * the workers are chrooted into. Accounts and directories are only checked
 * where they will be used, by a master running as root.
 */
static const char *
parse_user(struct master_service *svc, const char *word, int check_users)
{
	const char *colon = strchr(word, ':');
	size_t ulen = colon != NULL ? (size_t)(colon - word) : strlen(word);
	struct stat st;

	if (ulen == 0)
		return "bad user: expected a user name or -";
	if (colon != NULL) {
		if (colon[1] != '/')
			return "bad chroot: expected an absolute directory "
			    "after the colon";
		svc->chroot = xstrdup(colon + 1);
		if (check_users && (stat(svc->chroot, &st) < 0 ||
		    !S_ISDIR(st.st_mode)))
			return "chroot directory does not exist";
	}
	if (ulen == 1 && word[0] == '-')
		return NULL;
	svc->user = xstrndup(word, ulen);
	if (check_users && getpwnam(svc->user) == NULL)
		return "unknown user";
	return NULL;
}

static int
parse_service(const char *path, int line, char **w, size_t nw,
    int check_users, struct master_service **svc_r, char **errstr_r)
{
	struct master_service *svc;
	const char *err = NULL, *word = w[2];

	if (nw < 6)
		return conf_error(errstr_r, path, line, "expected name type "
		    "listen user procs command [args...]");
	if (!valid_name(w[0]))
		return conf_error(errstr_r, path, line, "bad service name '%s'",
		    w[0]);
	svc = xcalloc(1, sizeof(*svc));
	svc->line = line;
	svc->name = xstrdup(w[0]);
	svc->listen = xstrdup(w[2]);
	if (strcmp(w[1], "inet") == 0) {
		svc->type = MASTER_SERVICE_INET;
		err = parse_inet(svc);
	} else if (strcmp(w[1], "unix") == 0) {
		svc->type = MASTER_SERVICE_UNIX;
		err = parse_unix(svc);
	} else {
		err = "bad type: expected inet or unix";
		word = w[1];
	}
	if (err == NULL && (err = parse_user(svc, w[3], check_users)) != NULL)
		word = w[3];
	if (err == NULL && (svc->procs = (int)parse_number(w[4], 1,
	    MASTER_CONF_MAX_PROCS)) < 0) {
		err = "bad procs: expected a number from 1 to 1000";
		word = w[4];
	}
	if (err == NULL && strchr(w[5], '/') != NULL && w[5][0] != '/') {
		err = "bad command: a program name or an absolute path";
		word = w[5];
	}
	if (err != NULL) {
		master_service_free(&svc);
		return conf_error(errstr_r, path, line, "%s '%s': %s", w[0],
		    word, err);
	}
	svc->argc = nw - 5;
	svc->argv = xcalloc(svc->argc + 1, sizeof(char *));
	for (size_t i = 0; i < svc->argc; i++)
		svc->argv[i] = xstrdup(w[5 + i]);
	*svc_r = svc;
	return 0;
}

static int
add_service(struct master_conf *conf, const char *path, int line,
    struct buf *logical, int check_users, char **errstr_r)
{
	char *w[MASTER_CONF_MAX_WORDS], *save = NULL, *tok;
	struct master_service *svc = NULL;
	size_t nw = 0;
	int r;

	for (tok = strtok_r(logical->data, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (nw == MASTER_CONF_MAX_WORDS)
			return conf_error(errstr_r, path, line,
			    "too many words (at most %d)",
			    MASTER_CONF_MAX_WORDS);
		w[nw++] = tok;
	}
	if ((r = parse_service(path, line, w, nw, check_users, &svc,
	    errstr_r)) < 0)
		return r;
	for (size_t i = 0; i < conf->n; i++) {
		const struct master_service *o = conf->svcs[i];

		if (strcmp(o->name, svc->name) == 0)
			r = conf_error(errstr_r, path, line,
			    "duplicate service name '%s' (first on line %d)",
			    svc->name, o->line);
		else if (listen_conflict(o, svc))
			r = conf_error(errstr_r, path, line,
			    "duplicate listen address '%s' (service '%s' on "
			    "line %d)", svc->listen, o->name, o->line);
		if (r < 0) {
			master_service_free(&svc);
			return r;
		}
	}
	conf->svcs = xreallocarray(conf->svcs, conf->n + 1,
	    sizeof(*conf->svcs));
	conf->svcs[conf->n++] = svc;
	return 0;
}

int
master_conf_parse(const char *path, const char *text, size_t len,
    int check_users, struct master_conf **conf_r, char **errstr_r)
{
	struct master_conf *conf = xcalloc(1, sizeof(*conf));
	struct buf logical;
	int line = 0, start_line = 0, r = 0;
	const char *p = text, *end = text + len;

	if (memchr(text, '\0', len) != NULL) {
		master_conf_free(&conf);
		*errstr_r = xasprintf("%s: contains a NUL byte", path);
		return -EINVAL;
	}
	buf_init(&logical, 0);
	while (p < end && r == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		const char *q = p;

		line++;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		while (q < p + n && (*q == ' ' || *q == '\t'))
			q++;
		if (q == p + n || *q == '#') {
			/* Blank or comment: neither ends nor continues. */
		} else if (q != p) {
			if (logical.len == 0) {
				r = conf_error(errstr_r, path, line,
				    "continuation line without a service");
			} else {
				buf_append(&logical, " ", 1);
				buf_append(&logical, q, (size_t)(p + n - q));
			}
		} else {
			if (logical.len > 0)
				r = add_service(conf, path, start_line,
				    &logical, check_users, errstr_r);
			buf_reset(&logical);
			start_line = line;
			buf_append(&logical, p, n);
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (r == 0 && logical.len > 0)
		r = add_service(conf, path, start_line, &logical, check_users,
		    errstr_r);
	buf_release(&logical);
	if (r < 0) {
		master_conf_free(&conf);
		return r;
	}
	*conf_r = conf;
	return 0;
}

int
master_conf_load(const char *path, int check_users,
    struct master_conf **conf_r, char **errstr_r)
{
	struct buf text;
	struct stat st;
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		r = -errno;
		*errstr_r = xasprintf("%s: %s", path, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		*errstr_r = xasprintf("%s: not a regular file", path);
		return -EINVAL;
	}
	buf_init(&text, MASTER_CONF_MAX_SIZE);
	for (;;) {
		char *space = buf_space(&text, 8192);
		ssize_t got;

		if (space == NULL) {
			r = -EFBIG;
			*errstr_r = xasprintf("%s: larger than %d bytes", path,
			    MASTER_CONF_MAX_SIZE);
			break;
		}
		got = read(fd, space, 8192);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = -errno;
			*errstr_r = xasprintf("%s: %s", path, strerror(-r));
			break;
		}
		if (got == 0) {
			r = master_conf_parse(path, text.data != NULL ?
			    text.data : "", text.len, check_users, conf_r,
			    errstr_r);
			break;
		}
		buf_commit(&text, (size_t)got);
	}
	close(fd);
	buf_release(&text);
	return r;
}
