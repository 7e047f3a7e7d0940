/*
 * mailstore_index.c - the per-user LMDB index of lib/mailstore: environment
 * sharing within a process, rebuild of an invalid index, and the folder,
 * message, name and usage records. LMDB result codes become negative errnos
 * here (-ENOSPC when the map is full, -EIO for anything LMDB calls corrupt).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mailstore_private.h"
#include "xalloc.h"

/*
 * LMDB forbids opening one environment twice in a process (closing one
 * handle would drop the other's fcntl locks), so environments are shared
 * through this list, keyed by the mailbox directory. This is the module's
 * only static state; the pid check keeps a fork()ed child from using its
 * parent's handle, which LMDB does not allow either.
 */
static pthread_mutex_t envs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mailstore_env *envs;

/* Address space, not disk: the file grows only as far as it is used. 4 GiB
 * holds the cache of millions of messages; 1 GiB where addresses are few. */
#define INDEX_MAPSIZE (sizeof(size_t) > 4 ? (size_t)4 << 30 : (size_t)1 << 30)

int
mailstore_index_rc(int rc)
{
	if (rc == 0)
		return 0;
	if (rc > 0)
		return -rc;
	if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL)
		return -ENOSPC;
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc == MDB_READERS_FULL)
		return -EAGAIN;
	return -EIO;
}

void
mailstore_index_key(unsigned char *key, uint32_t fid, uint32_t uid)
{
	key[0] = fid >> 24;
	key[1] = fid >> 16;
	key[2] = fid >> 8;
	key[3] = fid;
	key[4] = uid >> 24;
	key[5] = uid >> 16;
	key[6] = uid >> 8;
	key[7] = uid;
}

uint32_t
mailstore_index_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static int
index_invalid(int rc)
{
	return rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ||
	    rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
	    rc == MDB_INCOMPATIBLE || rc == MDB_BAD_DBI;
}

/* Open the named databases and check the format version; *fresh_r tells
 * whether the index was just created. */
static int
index_setup(struct mailstore_env *e, int *fresh_r)
{
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	*fresh_r = 0;
	if ((rc = mdb_txn_begin(e->env, NULL, 0, &txn)) != 0)
		return rc;
	if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &e->meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "folders", MDB_CREATE, &e->folders)) != 0 ||
	    (rc = mdb_dbi_open(txn, "msgs", MDB_CREATE, &e->msgs)) != 0 ||
	    (rc = mdb_dbi_open(txn, "names", MDB_CREATE, &e->names)) != 0 ||
	    (rc = mdb_dbi_open(txn, "subs", MDB_CREATE, &e->subs)) != 0 ||
	    (rc = mdb_dbi_open(txn, "cache", MDB_CREATE, &e->cache)) != 0)
		goto fail;
	k.mv_data = "version";
	k.mv_size = 7;
	rc = mdb_get(txn, e->meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		v.mv_data = MAILSTORE_INDEX_VERSION;
		v.mv_size = strlen(MAILSTORE_INDEX_VERSION);
		if ((rc = mdb_put(txn, e->meta, &k, &v, 0)) != 0)
			goto fail;
		*fresh_r = 1;
	} else if (rc != 0)
		goto fail;
	else if (v.mv_size != strlen(MAILSTORE_INDEX_VERSION) ||
	    memcmp(v.mv_data, MAILSTORE_INDEX_VERSION, v.mv_size) != 0) {
		rc = MDB_VERSION_MISMATCH;
		goto fail;
	}
	return mdb_txn_commit(txn);
fail:
	mdb_txn_abort(txn);
	return rc;
}

static int
index_env_open(const char *file, struct mailstore_env *e, int *fresh_r)
{
	int rc;

	if ((rc = mdb_env_create(&e->env)) != 0)
		return rc;
	/* MDB_NOTLS: read transactions are not tied to a thread, since the
	 * libuv thread pool may run a store's calls on any of its threads. */
	rc = mdb_env_set_maxdbs(e->env, 8);
	if (rc == 0)
		rc = mdb_env_set_mapsize(e->env, INDEX_MAPSIZE);
	if (rc == 0)
		rc = mdb_env_open(e->env, file, MDB_NOSUBDIR | MDB_NOTLS, 0600);
	if (rc == 0)
		rc = index_setup(e, fresh_r);
	if (rc != 0) {
		mdb_env_close(e->env);
		e->env = NULL;
	}
	return rc;
}

/* Move an index LMDB will not read out of the way, for the operator. */
static void
index_set_aside(const char *file)
{
	char *bad = xasprintf("%s.corrupt", file);
	char *lock = xasprintf("%s-lock", file);

	if (rename(file, bad) == -1)
		log_warn("mailstore: rename %s: %s", file, strerror(errno));
	else
		log_warn("mailstore: index %s is invalid, kept as %s and "
			 "rebuilt with new UIDVALIDITYs",
		    file, bad);
	(void)unlink(lock);
	free(bad);
	free(lock);
}

int
mailstore_index_acquire(
    struct mailstore *s, int *fresh_r, const char **errstr_r)
{
	struct mailstore_env *e;
	struct stat st;
	char *file;
	int rc, dead;

	*fresh_r = 0;
	if (stat(s->path, &st) == -1)
		return mailstore_err(s, errstr_r, -errno, "stat %s: %s",
		    s->path, strerror(errno));
	pthread_mutex_lock(&envs_lock);
	for (e = envs; e != NULL; e = e->next)
		if (e->dev == st.st_dev && e->ino == st.st_ino &&
		    e->pid == getpid())
			break;
	if (e != NULL) {
		e->refs++;
		s->idx = e;
		pthread_mutex_unlock(&envs_lock);
		return 0;
	}
	e = xcalloc(1, sizeof(*e));
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->pid = getpid();
	e->refs = 1;
	file = xasprintf("%s/%s", s->path, MAILSTORE_INDEX_NAME);
	rc = index_env_open(file, e, fresh_r);
	if (index_invalid(rc)) {
		index_set_aside(file);
		rc = index_env_open(file, e, fresh_r);
	}
	free(file);
	if (rc != 0) {
		pthread_mutex_unlock(&envs_lock);
		free(e);
		return mailstore_err(s, errstr_r, mailstore_index_rc(rc),
		    "open index of %s: %s", s->path, mdb_strerror(rc));
	}
	/* Free the reader slots of processes that died in a transaction,
	 * or the file would grow without bound. */
	(void)mdb_reader_check(e->env, &dead);
	e->next = envs;
	envs = e;
	s->idx = e;
	pthread_mutex_unlock(&envs_lock);
	return 0;
}

void
mailstore_index_release(struct mailstore *s)
{
	struct mailstore_env **pp, *e = s->idx;

	if (e == NULL)
		return;
	s->idx = NULL;
	pthread_mutex_lock(&envs_lock);
	if (--e->refs == 0) {
		for (pp = &envs; *pp != NULL; pp = &(*pp)->next)
			if (*pp == e) {
				*pp = e->next;
				break;
			}
		mdb_env_close(e->env);
		free(e);
	}
	pthread_mutex_unlock(&envs_lock);
}

int
mailstore_index_begin(
    struct mailstore *s, int rdonly, MDB_txn **txn_r, const char **errstr_r)
{
	int rc;

	rc = mdb_txn_begin(s->idx->env, NULL, rdonly ? MDB_RDONLY : 0, txn_r);
	if (rc != 0)
		return mailstore_err(s, errstr_r, mailstore_index_rc(rc),
		    "index of %s: %s", s->path, mdb_strerror(rc));
	return 0;
}

int
mailstore_index_commit(struct mailstore *s, MDB_txn *txn, const char **errstr_r)
{
	int rc;

	if ((rc = mdb_txn_commit(txn)) != 0)
		return mailstore_err(s, errstr_r, mailstore_index_rc(rc),
		    "commit index of %s: %s", s->path, mdb_strerror(rc));
	return 0;
}

static MDB_val
val_str(const char *str)
{
	MDB_val v;

	v.mv_data = (void *)str;
	v.mv_size = strlen(str);
	return v;
}

int
mailstore_index_folder_get(struct mailstore *s, MDB_txn *txn, const char *name,
    struct mailstore_folder_rec *rec)
{
	MDB_val k = val_str(name), v;
	int rc;

	if ((rc = mdb_get(txn, s->idx->folders, &k, &v)) != 0)
		return mailstore_index_rc(rc);
	if (v.mv_size != sizeof(*rec))
		return -EIO;
	memcpy(rec, v.mv_data, sizeof(*rec));
	return 0;
}

int
mailstore_index_folder_put(struct mailstore *s, MDB_txn *txn, const char *name,
    const struct mailstore_folder_rec *rec)
{
	MDB_val k = val_str(name), v;

	v.mv_data = (void *)rec;
	v.mv_size = sizeof(*rec);
	return mailstore_index_rc(mdb_put(txn, s->idx->folders, &k, &v, 0));
}

/*
 * A UIDVALIDITY larger than any this mailbox has had: the clock, or one more
 * than the last value handed out, which is kept outside the index so that it
 * survives the index's loss (RFC 3501 2.3.1.1: a rebuilt index must not
 * reuse a value). Called inside a write transaction, which serialises the
 * read-modify-write between processes.
 */
static uint32_t
index_new_uidvalidity(struct mailstore *s)
{
	char *file, *tmp, text[32];
	unsigned long long last = 0, now = (unsigned long long)time(NULL);
	uint32_t v;
	ssize_t n;
	int fd;

	file = xasprintf("%s/%s", s->path, MAILSTORE_UIDV_NAME);
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, text, sizeof(text) - 1);
		if (n > 0) {
			text[n] = '\0';
			last = strtoull(text, NULL, 10);
		}
		close(fd);
	}
	/* A garbled file must not wrap the value around. */
	if (last >= UINT32_MAX - 1)
		last = 0;
	v = (uint32_t)(now > last ? now : last + 1);
	if (v == 0)
		v = 1;
	tmp = xasprintf("%s.%ld.tmp", file, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd != -1) {
		n = snprintf(text, sizeof(text), "%" PRIu32 "\n", v);
		if (write(fd, text, n) != n || fsync(fd) == -1 ||
		    close(fd) == -1 || rename(tmp, file) == -1) {
			log_warn("mailstore: %s: %s", file, strerror(errno));
			(void)unlink(tmp);
		}
	} else
		log_warn("mailstore: %s: %s", tmp, strerror(errno));
	free(tmp);
	free(file);
	return v;
}

int
mailstore_index_folder_ensure(struct mailstore *s, MDB_txn *txn,
    const char *name, struct mailstore_folder_rec *rec)
{
	MDB_val k = val_str("next_fid"), v;
	uint32_t fid = 1;
	int rc;

	rc = mailstore_index_folder_get(s, txn, name, rec);
	if (rc != -ENOENT)
		return rc;
	rc = mdb_get(txn, s->idx->meta, &k, &v);
	if (rc == 0 && v.mv_size == sizeof(fid))
		memcpy(&fid, v.mv_data, sizeof(fid));
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return mailstore_index_rc(rc);
	memset(rec, 0, sizeof(*rec));
	rec->fid = fid++;
	rec->uidvalidity = index_new_uidvalidity(s);
	rec->uidnext = 1;
	rec->highestmodseq = 1;
	v.mv_data = &fid;
	v.mv_size = sizeof(fid);
	if ((rc = mdb_put(txn, s->idx->meta, &k, &v, 0)) != 0)
		return mailstore_index_rc(rc);
	return mailstore_index_folder_put(s, txn, name, rec);
}

static int
usage_add(struct mailstore *s, MDB_txn *txn, int64_t bytes, int64_t msgs)
{
	MDB_val k = val_str("usage"), v;
	uint64_t u[2] = {0, 0};
	int rc;

	rc = mdb_get(txn, s->idx->meta, &k, &v);
	if (rc == 0 && v.mv_size == sizeof(u))
		memcpy(u, v.mv_data, sizeof(u));
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return mailstore_index_rc(rc);
	u[0] = (int64_t)u[0] + bytes < 0 ? 0 : u[0] + bytes;
	u[1] = (int64_t)u[1] + msgs < 0 ? 0 : u[1] + msgs;
	v.mv_data = u;
	v.mv_size = sizeof(u);
	return mailstore_index_rc(mdb_put(txn, s->idx->meta, &k, &v, 0));
}

int
mailstore_index_usage(
    struct mailstore *s, MDB_txn *txn, uint64_t *bytes_r, uint64_t *msgs_r)
{
	MDB_val k = val_str("usage"), v;
	uint64_t u[2] = {0, 0};
	int rc;

	rc = mdb_get(txn, s->idx->meta, &k, &v);
	if (rc == 0 && v.mv_size == sizeof(u))
		memcpy(u, v.mv_data, sizeof(u));
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return mailstore_index_rc(rc);
	*bytes_r = u[0];
	*msgs_r = u[1];
	return 0;
}

/* Delete every key of dbi beginning with prefix; sizes of deleted message
 * records are summed into *bytes_r and counted in *msgs_r when not NULL. */
static int
index_del_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t len,
    uint64_t *bytes_r, uint64_t *msgs_r)
{
	struct mailstore_msg_rec rec;
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &c)) != 0)
		return mailstore_index_rc(rc);
	k.mv_data = (void *)prefix;
	k.mv_size = len;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size >= len &&
	    memcmp(k.mv_data, prefix, len) == 0) {
		if (bytes_r != NULL && v.mv_size >= sizeof(rec)) {
			memcpy(&rec, v.mv_data, sizeof(rec));
			*bytes_r += rec.size;
			(*msgs_r)++;
		}
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
		k.mv_data = (void *)prefix;
		k.mv_size = len;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : mailstore_index_rc(rc);
}

int
mailstore_index_folder_drop(struct mailstore *s, MDB_txn *txn, const char *name)
{
	struct mailstore_folder_rec rec;
	unsigned char key[8];
	uint64_t bytes = 0, msgs = 0;
	MDB_val k = val_str(name);
	int rc;

	if ((rc = mailstore_index_folder_get(s, txn, name, &rec)) != 0)
		return rc == -ENOENT ? 0 : rc;
	mailstore_index_key(key, rec.fid, 0);
	rc = index_del_prefix(txn, s->idx->msgs, key, 4, &bytes, &msgs);
	if (rc == 0)
		rc = index_del_prefix(txn, s->idx->names, key, 4, NULL, NULL);
	if (rc == 0)
		rc = index_del_prefix(txn, s->idx->cache, key, 4, NULL, NULL);
	if (rc == 0)
		rc = usage_add(s, txn, -(int64_t)bytes, -(int64_t)msgs);
	if (rc < 0)
		return rc;
	return mailstore_index_rc(mdb_del(txn, s->idx->folders, &k, NULL));
}

int
mailstore_index_msg_get(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, struct mailstore_msg_rec *rec, char **base_r, char **info_r)
{
	unsigned char key[8];
	const char *p, *end, *nul;
	MDB_val k, v;
	int rc;

	mailstore_index_key(key, fid, uid);
	k.mv_data = key;
	k.mv_size = sizeof(key);
	if ((rc = mdb_get(txn, s->idx->msgs, &k, &v)) != 0)
		return mailstore_index_rc(rc);
	if (v.mv_size < sizeof(*rec) + 2)
		return -EIO;
	memcpy(rec, v.mv_data, sizeof(*rec));
	p = (const char *)v.mv_data + sizeof(*rec);
	end = (const char *)v.mv_data + v.mv_size;
	if ((nul = memchr(p, '\0', end - p)) == NULL ||
	    memchr(nul + 1, '\0', end - nul - 1) == NULL)
		return -EIO;
	if (base_r != NULL)
		*base_r = xstrdup(p);
	if (info_r != NULL)
		*info_r = xstrdup(nul + 1);
	return 0;
}

int
mailstore_index_msg_put(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, const struct mailstore_msg_rec *rec, const char *base,
    const char *info, int is_new)
{
	unsigned char key[8], *val, *nkey;
	size_t blen = strlen(base), ilen = strlen(info);
	MDB_val k, v;
	int rc;

	mailstore_index_key(key, fid, uid);
	val = xmalloc(sizeof(*rec) + blen + ilen + 2);
	memcpy(val, rec, sizeof(*rec));
	memcpy(val + sizeof(*rec), base, blen + 1);
	memcpy(val + sizeof(*rec) + blen + 1, info, ilen + 1);
	k.mv_data = key;
	k.mv_size = sizeof(key);
	v.mv_data = val;
	v.mv_size = sizeof(*rec) + blen + ilen + 2;
	rc = mailstore_index_rc(mdb_put(txn, s->idx->msgs, &k, &v, 0));
	free(val);
	if (rc != 0 || !is_new)
		return rc;
	nkey = xmalloc(4 + blen);
	memcpy(nkey, key, 4);
	memcpy(nkey + 4, base, blen);
	k.mv_data = nkey;
	k.mv_size = 4 + blen;
	v.mv_data = key + 4;
	v.mv_size = 4;
	rc = mailstore_index_rc(mdb_put(txn, s->idx->names, &k, &v, 0));
	free(nkey);
	if (rc == 0)
		rc = usage_add(s, txn, (int64_t)rec->size, 1);
	return rc;
}

int
mailstore_index_msg_del(
    struct mailstore *s, MDB_txn *txn, uint32_t fid, uint32_t uid)
{
	struct mailstore_msg_rec rec;
	unsigned char key[8], *nkey;
	char *base;
	size_t blen;
	MDB_val k;
	int rc;

	if ((rc = mailstore_index_msg_get(
		 s, txn, fid, uid, &rec, &base, NULL)) != 0)
		return rc;
	mailstore_index_key(key, fid, uid);
	blen = strlen(base);
	nkey = xmalloc(4 + blen);
	memcpy(nkey, key, 4);
	memcpy(nkey + 4, base, blen);
	free(base);
	k.mv_data = nkey;
	k.mv_size = 4 + blen;
	rc = mdb_del(txn, s->idx->names, &k, NULL);
	free(nkey);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mailstore_index_rc(rc);
	k.mv_data = key;
	k.mv_size = sizeof(key);
	if ((rc = mdb_del(txn, s->idx->msgs, &k, NULL)) != 0)
		return mailstore_index_rc(rc);
	if ((rc = index_del_prefix(txn, s->idx->cache, key, 8, NULL, NULL)) !=
	    0)
		return rc;
	return usage_add(s, txn, -(int64_t)rec.size, -1);
}

int
mailstore_index_name_uid(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    const char *base, uint32_t *uid_r)
{
	size_t blen = strlen(base);
	unsigned char *nkey;
	MDB_val k, v;
	int rc;

	nkey = xmalloc(4 + blen);
	mailstore_index_key(nkey, fid, 0);
	memcpy(nkey + 4, base, blen);
	k.mv_data = nkey;
	k.mv_size = 4 + blen;
	rc = mdb_get(txn, s->idx->names, &k, &v);
	free(nkey);
	if (rc != 0)
		return mailstore_index_rc(rc);
	if (v.mv_size != 4)
		return -EIO;
	*uid_r = mailstore_index_be32(v.mv_data);
	return 0;
}

/* Rename the folder from and every folder below it (from.*) to to. */
int
mailstore_index_folder_rename(
    struct mailstore *s, MDB_txn *txn, const char *from, const char *to)
{
	struct mailstore_folder_rec rec;
	size_t flen = strlen(from), n = 0, i;
	char **old = NULL, *newname;
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, s->idx->folders, &c)) != 0)
		return mailstore_index_rc(rc);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size < flen || memcmp(k.mv_data, from, flen) != 0 ||
		    (k.mv_size > flen && ((char *)k.mv_data)[flen] != '.'))
			continue;
		old = xreallocarray(old, n + 1, sizeof(*old));
		old[n++] = xstrndup(k.mv_data, k.mv_size);
	}
	mdb_cursor_close(c);
	rc = rc == MDB_NOTFOUND ? 0 : mailstore_index_rc(rc);
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = mailstore_index_folder_get(s, txn, old[i], &rec);
		if (rc == 0) {
			k = val_str(old[i]);
			rc = mailstore_index_rc(
			    mdb_del(txn, s->idx->folders, &k, NULL));
		}
		if (rc == 0) {
			newname = xasprintf("%s%s", to, old[i] + flen);
			rc = mailstore_index_folder_put(s, txn, newname, &rec);
			free(newname);
		}
		free(old[i]);
	}
	free(old);
	return rc;
}

/* Add (on) or remove a subscription. */
int
mailstore_index_subscribe(
    struct mailstore *s, MDB_txn *txn, const char *name, int on)
{
	MDB_val k = val_str(name), v;
	int rc;

	if (on) {
		v.mv_data = "";
		v.mv_size = 0;
		return mailstore_index_rc(
		    mdb_put(txn, s->idx->subs, &k, &v, 0));
	}
	rc = mdb_del(txn, s->idx->subs, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : mailstore_index_rc(rc);
}

/* Every subscribed name, in key order. */
int
mailstore_index_subscriptions(
    struct mailstore *s, MDB_txn *txn, char ***names_r, size_t *count_r)
{
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	*names_r = NULL;
	*count_r = 0;
	if ((rc = mdb_cursor_open(txn, s->idx->subs, &c)) != 0)
		return mailstore_index_rc(rc);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		*names_r =
		    xreallocarray(*names_r, *count_r + 1, sizeof(**names_r));
		(*names_r)[(*count_r)++] = xstrndup(k.mv_data, k.mv_size);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : mailstore_index_rc(rc);
}

/* The cache record key: fid, uid, then the key name. */
static unsigned char *
cache_key(uint32_t fid, uint32_t uid, const char *name, MDB_val *k)
{
	size_t nlen = strlen(name);
	unsigned char *key = xmalloc(8 + nlen);

	mailstore_index_key(key, fid, uid);
	memcpy(key + 8, name, nlen);
	k->mv_data = key;
	k->mv_size = 8 + nlen;
	return key;
}

int
mailstore_index_cache_put(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, const char *name, const void *data, size_t len)
{
	unsigned char *key;
	MDB_val k, v;
	int rc;

	key = cache_key(fid, uid, name, &k);
	v.mv_data = (void *)data;
	v.mv_size = len;
	rc = mailstore_index_rc(mdb_put(txn, s->idx->cache, &k, &v, 0));
	free(key);
	return rc;
}

int
mailstore_index_cache_get(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, const char *name, struct buf *out)
{
	unsigned char *key;
	MDB_val k, v;
	int rc;

	key = cache_key(fid, uid, name, &k);
	rc = mdb_get(txn, s->idx->cache, &k, &v);
	free(key);
	if (rc != 0)
		return mailstore_index_rc(rc);
	return buf_append(out, v.mv_data, v.mv_size);
}
