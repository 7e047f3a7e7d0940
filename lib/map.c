/*
 * map.c - lookup tables compiled from text to LMDB (see map.h and
 * pochta-maps(5)). Source errors are reported as "path:line: message" and
 * never leave a half-built table behind; a reader whose table is replaced,
 * removed or broken keeps serving the copy it has and says so once.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "map.h"
#include "xalloc.h"

/* Identity of a database file: a rebuild is a new file (new inode). */
struct map_ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

/* One open database file with its long-lived read transaction. */
struct map_db {
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	struct map_ident ident;
};

struct map {
	char *spec;
	char *src;
	char *db;
	struct map_db cur;
	struct map_ident bad;	/* a replacement we failed to open */
	int have_bad;
	int gone_logged;	/* told the log the file vanished */
	unsigned int interval_ms;
	uint64_t last_check_ms;
};

/* The state of one source file being compiled. */
struct map_parse {
	const char *src;
	FILE *fp;
	unsigned long lineno;
	struct buf line;
	struct buf key;
	struct buf value;
	unsigned long key_line;	/* line of the pending entry; 0: none */
	MDB_txn *txn;
	MDB_dbi dbi;
	char *err;
};

static int
map_errf(char **errstr_r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
map_errf(char **errstr_r, int err, const char *fmt, ...)
{
	va_list ap;

	if (errstr_r != NULL) {
		va_start(ap, fmt);
		*errstr_r = xvasprintf(fmt, ap);
		va_end(ap);
	}
	return err;
}

int
map_spec_paths(const char *spec, char **src_r, char **db_r,
    char **errstr_r)
{
	const char *path = spec, *colon, *p;

	/*
	 * A type is a run of letters and digits before a colon that comes
	 * before any slash; "./a:b" and "/x/a:b" stay plain paths.
	 */
	colon = strchr(spec, ':');
	if (colon != NULL && colon > spec) {
		for (p = spec; p < colon; p++)
			if (!((*p >= 'a' && *p <= 'z') ||
			    (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9')))
				break;
		if (p == colon) {
			if (colon - spec != 4 ||
			    strncasecmp(spec, "lmdb", 4) != 0)
				return map_errf(errstr_r, -EPROTONOSUPPORT,
				    "%s: unsupported table type '%.*s' "
				    "(only lmdb)", spec, (int)(colon - spec),
				    spec);
			path = colon + 1;
		}
	}
	if (*path == '\0')
		return map_errf(errstr_r, -EINVAL, "%s: empty table path",
		    spec);
	if (path[strlen(path) - 1] == '/')
		return map_errf(errstr_r, -EINVAL,
		    "%s: table path names a directory", spec);
	if (src_r != NULL)
		*src_r = xstrdup(path);
	if (db_r != NULL)
		*db_r = xasprintf("%s.lmdb", path);
	return 0;
}

/* ASCII-only case folding: the C locale's, whatever the environment. */
static void
map_fold(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] - 'A' + 'a');
}

static int
map_is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static int
map_parse_err(struct map_parse *p, unsigned long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
map_parse_err(struct map_parse *p, unsigned long line, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	p->err = xasprintf("%s:%lu: %s", p->src, line, msg);
	free(msg);
	return -EINVAL;
}

/*
 * Read one physical line into p->line without its LF. Returns 1 for a
 * line, 0 at end of file, or a negative errno with p->err set.
 */
static int
map_read_line(struct map_parse *p)
{
	int c, saw = 0;

	buf_reset(&p->line);
	p->lineno++;
	while ((c = getc(p->fp)) != EOF) {
		saw = 1;
		if (c == '\n')
			return 1;
		if (c == '\0')
			return map_parse_err(p, p->lineno, "NUL byte in line");
		if (buf_append(&p->line, &(char){(char)c}, 1) != 0)
			return map_parse_err(p, p->lineno,
			    "line longer than %d bytes", MAP_LINE_MAX);
	}
	if (ferror(p->fp)) {
		p->err = xasprintf("%s: read: %s", p->src, strerror(errno));
		return -EIO;
	}
	return saw;
}

/* Store the pending entry, if any. */
static int
map_flush(struct map_parse *p)
{
	MDB_val k, v;
	int rc;

	if (p->key_line == 0)
		return 0;
	if (p->value.len == 0)
		return map_parse_err(p, p->key_line,
		    "missing value for key '%.64s'", p->key.data);
	k.mv_data = p->key.data;
	k.mv_size = p->key.len;
	v.mv_data = p->value.data;
	v.mv_size = p->value.len;
	rc = mdb_put(p->txn, p->dbi, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST)
		return map_parse_err(p, p->key_line, "duplicate key '%.64s'",
		    p->key.data);
	if (rc != 0) {
		p->err = xasprintf("%s: writing the table: %s", p->src,
		    mdb_strerror(rc));
		return rc == MDB_MAP_FULL ? -EFBIG : -EIO;
	}
	p->key_line = 0;
	buf_reset(&p->key);
	buf_reset(&p->value);
	return 0;
}

/* Append trimmed text to the pending value, one space between parts. */
static int
map_add_value(struct map_parse *p, const char *s, size_t n)
{
	while (n > 0 && map_is_space((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && map_is_space((unsigned char)s[n - 1]))
		n--;
	if (n == 0)
		return 0;
	if ((p->value.len > 0 && buf_append(&p->value, " ", 1) != 0) ||
	    buf_append(&p->value, s, n) != 0)
		return map_parse_err(p, p->key_line,
		    "value longer than %d bytes", MAP_VALUE_MAX);
	return 0;
}

/* Handle one physical line: comment, blank, continuation or new entry. */
static int
map_parse_line(struct map_parse *p)
{
	const char *s = p->line.data != NULL ? p->line.data : "";
	size_t n = p->line.len, i = 0, klen;
	int rc;

	while (i < n && map_is_space((unsigned char)s[i]))
		i++;
	if (i == n || s[i] == '#')
		return 0;
	if (i > 0) {
		if (p->key_line == 0)
			return map_parse_err(p, p->lineno,
			    "continuation line without a key before it");
		return map_add_value(p, s + i, n - i);
	}
	if ((rc = map_flush(p)) != 0)
		return rc;
	for (klen = 0; klen < n && !map_is_space((unsigned char)s[klen]);
	    klen++)
		;
	if (klen > MAP_KEY_MAX)
		return map_parse_err(p, p->lineno,
		    "key longer than %d bytes", MAP_KEY_MAX);
	buf_append(&p->key, s, klen);
	map_fold(p->key.data, p->key.len);
	p->key_line = p->lineno;
	return map_add_value(p, s + klen, n - klen);
}

static int
map_parse_all(struct map_parse *p)
{
	int rc;

	while ((rc = map_read_line(p)) == 1)
		if ((rc = map_parse_line(p)) != 0)
			return rc;
	if (rc < 0)
		return rc;
	return map_flush(p);
}

static int
map_sync_dir(const char *path)
{
	char *dir, *slash;
	int fd, rc = 0;

	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || fsync(fd) == -1)
		rc = -errno;
	if (fd != -1)
		close(fd);
	free(dir);
	return rc;
}

/* Fill the empty database file tmp from the source. */
static int
map_write_db(struct map_parse *p, const char *tmp, size_t mapsize)
{
	MDB_env *env = NULL;
	int rc;

	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, mapsize)) != 0 ||
	    (rc = mdb_env_open(env, tmp, MDB_NOSUBDIR | MDB_NOLOCK,
	    0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, 0, &p->txn)) != 0 ||
	    (rc = mdb_dbi_open(p->txn, NULL, 0, &p->dbi)) != 0) {
		p->err = xasprintf("%s: %s", tmp, mdb_strerror(rc));
		rc = -EIO;
		goto out;
	}
	if ((rc = map_parse_all(p)) != 0)
		goto out;
	rc = mdb_txn_commit(p->txn);
	p->txn = NULL;
	/* The commit syncs the data; a second full sync costs nothing. */
	if (rc == 0)
		rc = mdb_env_sync(env, 1);
	if (rc != 0) {
		p->err = xasprintf("%s: %s", tmp, mdb_strerror(rc));
		rc = -EIO;
	}
out:
	if (p->txn != NULL)
		mdb_txn_abort(p->txn);
	p->txn = NULL;
	if (env != NULL)
		mdb_env_close(env);
	return rc;
}

/* A temporary file beside db with src's mode (and owner, as root). */
static int
map_make_tmp(const char *db, const struct stat *sst, char **tmp_r,
    char **errstr_r)
{
	char *tmp;
	int fd, rc;

	tmp = xasprintf("%s.tmpXXXXXX", db);
	if ((fd = mkstemp(tmp)) == -1) {
		rc = -errno;
		map_errf(errstr_r, rc, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return rc;
	}
	if (fchmod(fd, sst->st_mode & 0666) == -1 ||
	    (geteuid() == 0 && fchown(fd, sst->st_uid, sst->st_gid) == -1)) {
		rc = -errno;
		map_errf(errstr_r, rc, "%s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		free(tmp);
		return rc;
	}
	close(fd);
	*tmp_r = tmp;
	return 0;
}

int
map_build_file(const char *src, const char *db, char **errstr_r)
{
	struct map_parse p;
	struct stat st;
	char *tmp = NULL;
	size_t mapsize;
	int fd, rc;

	memset(&p, 0, sizeof(p));
	p.src = src;
	/* O_NONBLOCK: a FIFO in place of the source must not hang us. */
	if ((fd = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return map_errf(errstr_r, -errno, "%s: %s", src,
		    strerror(errno));
	if (fstat(fd, &st) == -1)
		rc = -errno;
	else
		rc = S_ISREG(st.st_mode) ? 0 : -EINVAL;
	if (rc != 0) {
		close(fd);
		return map_errf(errstr_r, rc, "%s: %s", src, rc == -EINVAL ?
		    "not a regular file" : strerror(-rc));
	}
	if ((p.fp = fdopen(fd, "r")) == NULL) {
		rc = -errno;
		close(fd);
		return map_errf(errstr_r, rc, "%s: %s", src, strerror(-rc));
	}
	/*
	 * Room for the worst case: every value just too big for a leaf
	 * shares no page, each page half empty after splits, plus branch
	 * pages. The map size only reserves address space; the file grows
	 * to what is used.
	 */
	mapsize = (size_t)st.st_size * 8 + ((size_t)64 << 20);
	if ((rc = map_make_tmp(db, &st, &tmp, errstr_r)) != 0) {
		fclose(p.fp);
		return rc;
	}
	buf_init(&p.line, MAP_LINE_MAX);
	buf_init(&p.key, MAP_KEY_MAX);
	buf_init(&p.value, MAP_VALUE_MAX);
	rc = map_write_db(&p, tmp, mapsize);
	if (rc == 0 && rename(tmp, db) == -1) {
		rc = -errno;
		p.err = xasprintf("rename %s to %s: %s", tmp, db,
		    strerror(errno));
	}
	if (rc == 0 && (rc = map_sync_dir(db)) != 0)
		p.err = xasprintf("%s: syncing the directory: %s", db,
		    strerror(-rc));
	if (rc != 0) {
		unlink(tmp);
		if (errstr_r != NULL)
			*errstr_r = p.err;
		else
			free(p.err);
	}
	free(tmp);
	buf_release(&p.line);
	buf_release(&p.key);
	buf_release(&p.value);
	fclose(p.fp);
	return rc;
}

int
map_build(const char *spec, char **errstr_r)
{
	char *src, *db;
	int rc;

	if ((rc = map_spec_paths(spec, &src, &db, errstr_r)) != 0)
		return rc;
	rc = map_build_file(src, db, errstr_r);
	free(src);
	free(db);
	return rc;
}

static void
map_db_close(struct map_db *d)
{
	if (d->txn != NULL)
		mdb_txn_abort(d->txn);
	if (d->env != NULL)
		mdb_env_close(d->env);
	memset(d, 0, sizeof(*d));
}

static void
map_ident_set(struct map_ident *id, const struct stat *st)
{
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime = st->st_mtim;
}

static int
map_ident_eq(const struct map_ident *a, const struct map_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Everything the file claims to use must exist in it. */
static int
map_db_check(struct map_db *d, const char *path, char **errstr_r)
{
	MDB_envinfo info;
	MDB_stat ms;
	struct stat st;
	int fd;

	if (mdb_env_get_fd(d->env, &fd) != 0 || fstat(fd, &st) == -1)
		return map_errf(errstr_r, -EIO, "%s: %s", path,
		    strerror(errno));
	if (mdb_env_info(d->env, &info) != 0 ||
	    mdb_env_stat(d->env, &ms) != 0 || ms.ms_psize == 0 ||
	    info.me_last_pgno >= (size_t)st.st_size / ms.ms_psize)
		return map_errf(errstr_r, -EINVAL,
		    "%s: truncated table file (rebuild it)", path);
	map_ident_set(&d->ident, &st);
	return 0;
}

/*
 * Open one database file read-only. A table file is never written after
 * the rename that installs it: a rebuild makes a new file. So there is no
 * writer to coordinate with, and MDB_NOLOCK is both safe and necessary:
 * with a lock file, readers of the old and the new file (same name) would
 * share one "name-lock" whose reader table describes a different file.
 * MDB_NORDAHEAD because lookups touch a few random pages; MDB_NOTLS
 * because a table may pass between threads (one at a time), and its read
 * transaction with it.
 */
static int
map_db_open(struct map_db *d, const char *path, char **errstr_r)
{
	struct stat st;
	int rc;

	memset(d, 0, sizeof(*d));
	if (stat(path, &st) == -1)
		return map_errf(errstr_r, -errno, "%s: %s%s", path,
		    strerror(errno), errno == ENOENT ?
		    " (build it with pochta map build)" : "");
	/* A FIFO or device would block or mislead mdb_env_open. */
	if (!S_ISREG(st.st_mode))
		return map_errf(errstr_r, -EINVAL, "%s: not a regular file",
		    path);
	if ((rc = mdb_env_create(&d->env)) != 0)
		return map_errf(errstr_r, -ENOMEM, "%s: %s", path,
		    mdb_strerror(rc));
	rc = mdb_env_open(d->env, path, MDB_RDONLY | MDB_NOLOCK |
	    MDB_NOSUBDIR | MDB_NORDAHEAD | MDB_NOTLS, 0);
	if (rc != 0) {
		map_db_close(d);
		if (rc == ENOENT && st.st_size > 0)
			return map_errf(errstr_r, -ENOENT, "%s: %s", path,
			    strerror(rc));
		return map_errf(errstr_r, -EINVAL,
		    "%s: not a valid table file: %s", path,
		    rc == ENOENT ? "empty" : mdb_strerror(rc));
	}
	if ((rc = map_db_check(d, path, errstr_r)) != 0) {
		map_db_close(d);
		return rc;
	}
	/*
	 * One read transaction for the file's lifetime: the file never
	 * changes, so the snapshot never goes stale.
	 */
	if ((rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &d->txn)) != 0 ||
	    (rc = mdb_dbi_open(d->txn, NULL, 0, &d->dbi)) != 0) {
		map_db_close(d);
		return map_errf(errstr_r, -EINVAL,
		    "%s: not a valid table file: %s", path, mdb_strerror(rc));
	}
	return 0;
}

static uint64_t
map_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
map_open(const char *spec, struct map **map_r, char **errstr_r)
{
	struct map *m;
	int rc;

	m = xcalloc(1, sizeof(*m));
	if ((rc = map_spec_paths(spec, &m->src, &m->db, errstr_r)) != 0 ||
	    (rc = map_db_open(&m->cur, m->db, errstr_r)) != 0) {
		free(m->src);
		free(m->db);
		free(m);
		return rc;
	}
	m->spec = xstrdup(spec);
	m->interval_ms = MAP_CHECK_INTERVAL_MS;
	m->last_check_ms = map_now_ms();
	*map_r = m;
	return 0;
}

void
map_free(struct map **mapp)
{
	struct map *m = *mapp;

	if (m == NULL)
		return;
	map_db_close(&m->cur);
	free(m->spec);
	free(m->src);
	free(m->db);
	free(m);
	*mapp = NULL;
}

const char *
map_spec(const struct map *map)
{
	return map->spec;
}

void
map_set_check_interval(struct map *map, unsigned int ms)
{
	map->interval_ms = ms;
}

/* Reopen the table if it was rebuilt; keep the old one on any trouble. */
static void
map_check(struct map *m)
{
	struct map_ident id;
	struct map_db nd;
	struct stat st;
	uint64_t now = map_now_ms();
	char *err = NULL;

	if (m->interval_ms > 0 && now - m->last_check_ms < m->interval_ms)
		return;
	m->last_check_ms = now;
	if (stat(m->db, &st) == -1) {
		if (!m->gone_logged)
			log_warn("table %s: %s: %s; still using the copy "
			    "opened before", m->spec, m->db, strerror(errno));
		m->gone_logged = 1;
		return;
	}
	m->gone_logged = 0;
	map_ident_set(&id, &st);
	if (map_ident_eq(&id, &m->cur.ident) ||
	    (m->have_bad && map_ident_eq(&id, &m->bad)))
		return;
	if (map_db_open(&nd, m->db, &err) != 0) {
		log_warn("table %s: cannot reopen: %s; still using the copy "
		    "opened before", m->spec, err);
		free(err);
		m->bad = id;
		m->have_bad = 1;
		return;
	}
	map_db_close(&m->cur);
	m->cur = nd;
	m->have_bad = 0;
	log_debug("table %s: reopened after a rebuild", m->spec);
}

int
map_lookup(struct map *map, const char *key, char **value_r)
{
	char kbuf[MAP_KEY_MAX];
	size_t n = strlen(key);
	MDB_val k, v;
	int rc;

	map_check(map);
	/* No key this long or this short can be in the table. */
	if (n == 0 || n > MAP_KEY_MAX)
		return -ENOENT;
	memcpy(kbuf, key, n);
	map_fold(kbuf, n);
	k.mv_data = kbuf;
	k.mv_size = n;
	rc = mdb_get(map->cur.txn, map->cur.dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc != 0) {
		log_error("table %s: lookup: %s", map->spec, mdb_strerror(rc));
		return -EIO;
	}
	*value_r = xstrndup(v.mv_data, v.mv_size);
	return 0;
}

int
map_walk(struct map *map,
    int (*fn)(const char *key, const char *value, void *arg), void *arg)
{
	MDB_cursor *cur;
	MDB_val k, v;
	char *ks, *vs;
	int rc, ret = 0;

	map_check(map);
	if ((rc = mdb_cursor_open(map->cur.txn, map->cur.dbi, &cur)) != 0) {
		log_error("table %s: %s", map->spec, mdb_strerror(rc));
		return -EIO;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		ks = xstrndup(k.mv_data, k.mv_size);
		vs = xstrndup(v.mv_data, v.mv_size);
		ret = fn(ks, vs, arg);
		free(ks);
		free(vs);
		if (ret != 0)
			break;
	}
	if (ret == 0 && rc != MDB_NOTFOUND) {
		log_error("table %s: %s", map->spec, mdb_strerror(rc));
		ret = -EIO;
	}
	mdb_cursor_close(cur);
	return ret;
}

struct map_list {
	struct map **maps;
	size_t n;
};

int
map_list_open(char *const *specs, size_t n, struct map_list **list_r,
    char **errstr_r)
{
	struct map_list *l = xcalloc(1, sizeof(*l));
	int rc;

	l->maps = xcalloc(n, sizeof(*l->maps));
	for (; l->n < n; l->n++) {
		if ((rc = map_open(specs[l->n], &l->maps[l->n],
		    errstr_r)) != 0) {
			map_list_free(&l);
			return rc;
		}
	}
	*list_r = l;
	return 0;
}

void
map_list_free(struct map_list **listp)
{
	struct map_list *l = *listp;

	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		map_free(&l->maps[i]);
	free(l->maps);
	free(l);
	*listp = NULL;
}

size_t
map_list_count(const struct map_list *list)
{
	return list->n;
}

struct map *
map_list_get(const struct map_list *list, size_t i)
{
	return i < list->n ? list->maps[i] : NULL;
}

int
map_list_lookup(struct map_list *list, const char *key, char **value_r)
{
	int rc;

	for (size_t i = 0; i < list->n; i++)
		if ((rc = map_lookup(list->maps[i], key, value_r)) != -ENOENT)
			return rc;
	return -ENOENT;
}
