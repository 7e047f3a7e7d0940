/*
 * mailstore_folder.c - an open folder of lib/mailstore (see mailstore.h):
 * synchronising the index with new/ and cur/, the snapshot, flags and
 * expunge (in batches), the per-message cache and POP3 UIDLs (RFC 1939 7).
 * Files other Maildir tools leave are trusted only as far as their names
 * parse; anything odd is skipped, never fatal.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "buf.h"
#include "log.h"
#include "mailstore_private.h"
#include "xalloc.h"

/* A file found in new/ or cur/. */
struct scan_ent {
	char *name;	  /* the file name */
	char *base;	  /* up to the first ":" */
	const char *info; /* the rest of name: ":2,FS" or "" */
	int in_new;
	int seen;     /* matched an index record */
	uint32_t uid; /* when indexed */
};

struct scan {
	struct scan_ent *ents;
	size_t n;
};

static void
scan_free(struct scan *sc)
{
	size_t i;

	for (i = 0; i < sc->n; i++) {
		free(sc->ents[i].name);
		free(sc->ents[i].base);
	}
	free(sc->ents);
	sc->ents = NULL;
	sc->n = 0;
}

/* Names that cannot be messages: dot files (Maildir tools' own state),
 * spaces and control characters (they would break POP3 UIDL and IMAP). */
static int
scan_name_ok(const char *name)
{
	const unsigned char *p;

	if (name[0] == '.' || name[0] == ':')
		return 0;
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

static int
scan_dir(struct scan *sc, const char *dir, int in_new)
{
	struct scan_ent *e;
	struct dirent *de;
	const char *colon;
	char *path;
	DIR *d;

	path = xasprintf("%s/%s", dir, in_new ? "new" : "cur");
	d = opendir(path);
	free(path);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) != NULL) {
		if (!scan_name_ok(de->d_name) ||
		    (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue;
		sc->ents =
		    xreallocarray(sc->ents, sc->n + 1, sizeof(*sc->ents));
		e = &sc->ents[sc->n++];
		memset(e, 0, sizeof(*e));
		e->name = xstrdup(de->d_name);
		colon = strchr(e->name, ':');
		e->base = colon != NULL ? xstrndup(e->name, colon - e->name)
					: xstrdup(e->name);
		e->info = e->name + strlen(e->base);
		e->in_new = in_new;
	}
	closedir(d);
	return 0;
}

static int
ent_base_only_cmp(const void *a, const void *b)
{
	const struct scan_ent *x = a, *y = b;

	return strcmp(x->base, y->base);
}

static int
ent_base_cmp(const void *a, const void *b)
{
	const struct scan_ent *x = a, *y = b;
	int c = strcmp(x->base, y->base);

	/* Of two files with one base name, the one in cur/ wins. */
	return c != 0 ? c : x->in_new - y->in_new;
}

/* Scan new/ before cur/: a file moved from new/ to cur/ meanwhile is then
 * seen at least once. Sorted by base name, duplicates dropped. */
static int
scan_folder(struct scan *sc, const char *dir)
{
	size_t i, o;
	int rc;

	if ((rc = scan_dir(sc, dir, 1)) < 0 || (rc = scan_dir(sc, dir, 0)) < 0)
		return rc;
	if (sc->n > 1)
		qsort(sc->ents, sc->n, sizeof(*sc->ents), ent_base_cmp);
	for (i = 0, o = 0; i < sc->n; i++) {
		if (o > 0 &&
		    strcmp(sc->ents[o - 1].base, sc->ents[i].base) == 0) {
			free(sc->ents[i].name);
			free(sc->ents[i].base);
			continue;
		}
		sc->ents[o++] = sc->ents[i];
	}
	sc->n = o;
	return 0;
}

static struct scan_ent *
scan_find(struct scan *sc, const char *base)
{
	struct scan_ent key;

	if (sc->n == 0)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.base = (char *)base;
	return bsearch(
	    &key, sc->ents, sc->n, sizeof(*sc->ents), ent_base_only_cmp);
}

/* The order of new UIDs among files found together: Maildir names begin
 * with the delivery time in seconds, so by that number, then by name. */
static int
ent_arrival_cmp(const void *a, const void *b)
{
	const struct scan_ent *x = *(struct scan_ent *const *)a;
	const struct scan_ent *y = *(struct scan_ent *const *)b;
	unsigned long long tx = strtoull(x->base, NULL, 10);
	unsigned long long ty = strtoull(y->base, NULL, 10);

	if (tx != ty)
		return tx < ty ? -1 : 1;
	return strcmp(x->base, y->base);
}

static const char *
info_letters(const char *info)
{
	return strncmp(info, ":2,", 3) == 0 ? info + 3 : "";
}

/* The ",W=" field of a base name, or 0. */
static uint64_t
base_vsize(const char *base)
{
	const char *p = strstr(base, ",W=");
	char *end;
	unsigned long long v;

	if (p == NULL)
		return 0;
	v = strtoull(p + 3, &end, 10);
	return end != p + 3 && (*end == '\0' || *end == ',') ? v : 0;
}

/* Size with CRLF line ends, by reading the file. */
static int
file_vsize(int fd, uint64_t *vsize_r)
{
	char chunk[65536], last = '\0';
	uint64_t v = 0;
	ssize_t n, i;

	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (i = 0; i < n; i++) {
			if (chunk[i] == '\n' &&
			    (i > 0 ? chunk[i - 1] : last) != '\r')
				v++;
		}
		last = chunk[n - 1];
		v += n;
	}
	*vsize_r = v;
	return 0;
}

/* Index a file another tool put into the folder. 1 if indexed, 0 if it is
 * not a message (not a regular file, empty, gone meanwhile). */
static int
sync_add(struct mailstore *s, MDB_txn *txn, const char *dir,
    struct mailstore_folder_rec *frec, struct scan_ent *e)
{
	struct mailstore_msg_rec rec;
	struct stat st;
	char *path;
	int fd, rc;

	path = xasprintf("%s/%s/%s", dir, e->in_new ? "new" : "cur", e->name);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return 0;
	memset(&rec, 0, sizeof(rec));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return 0;
	}
	rec.size = st.st_size;
	/* Trust a W= only if it is possible: each byte gains at most a CR. */
	rec.vsize = base_vsize(e->base);
	if ((rec.vsize < rec.size || rec.vsize / 2 > rec.size) &&
	    (rc = file_vsize(fd, &rec.vsize)) < 0) {
		close(fd);
		return 0;
	}
	close(fd);
	if (frec->uidnext == UINT32_MAX)
		return -EOVERFLOW;
	rec.flags = mailstore_flags_parse(info_letters(e->info));
	rec.in_new = e->in_new;
	rec.modseq = ++frec->highestmodseq;
	e->uid = frec->uidnext++;
	if ((rc = mailstore_index_msg_put(
		 s, txn, frec->fid, e->uid, &rec, e->base, e->info, 1)) < 0)
		return rc;
	e->seen = 1;
	return 1;
}

/* Move a message a reader has noticed from new/ to cur/ (Maildir: new/
 * holds what no reader has seen). */
static int
sync_to_cur(struct mailstore *s, MDB_txn *txn, struct mailstore_folder *f,
    const char *dir, uint32_t fid, struct scan_ent *e)
{
	struct mailstore_msg_rec rec;
	char *from, *to, *info, *base;
	int rc;

	if ((rc = mailstore_index_msg_get(
		 s, txn, fid, e->uid, &rec, &base, NULL)) < 0)
		return rc;
	info = xasprintf(":2,%s", info_letters(e->info));
	from = xasprintf("%s/new/%s", dir, e->name);
	to = xasprintf("%s/cur/%s%s", dir, e->base, info);
	if ((rc = mailstore_rename(from, to)) == 0) {
		rec.in_new = 0;
		rc = mailstore_index_msg_put(
		    s, txn, fid, e->uid, &rec, base, info, 0);
		if (f != NULL) {
			f->recent = xreallocarray(
			    f->recent, f->nrecent + 1, sizeof(*f->recent));
			f->recent[f->nrecent++] = e->uid;
		}
	} else if (rc == -ENOENT || rc == -EEXIST) {
		/* Moved by another reader, or in the way of a file we have
		 * not seen: the next synchronisation sorts it out. */
		rc = 0;
	}
	free(base);
	free(info);
	free(from);
	free(to);
	return rc;
}

/* A message record whose file got a new name, to be written back. */
struct sync_upd {
	uint32_t uid;
	struct mailstore_msg_rec rec;
	char *base;
	const char *info; /* the scan entry's */
};

/* Split a message record value into its parts; -EIO if malformed. */
static int
rec_parse(const MDB_val *v, struct mailstore_msg_rec *rec, const char **base,
    const char **info)
{
	const char *p = (const char *)v->mv_data + sizeof(*rec);
	const char *end = (const char *)v->mv_data + v->mv_size;
	const char *nul;

	if (v->mv_size < sizeof(*rec) + 2 ||
	    (nul = memchr(p, '\0', end - p)) == NULL ||
	    memchr(nul + 1, '\0', end - nul - 1) == NULL)
		return -EIO;
	memcpy(rec, v->mv_data, sizeof(*rec));
	*base = p;
	*info = nul + 1;
	return 0;
}

/* Compare one index record with the scan: match, rename or gone. */
static void
sync_one(struct scan *sc, struct mailstore_folder_rec *frec, uint32_t uid,
    struct mailstore_msg_rec *rec, const char *base, const char *info,
    struct sync_upd **upd, size_t *nupd, uint32_t **gone, size_t *ngone)
{
	struct scan_ent *e;
	struct sync_upd *u;

	if ((e = scan_find(sc, base)) == NULL) {
		*gone = xreallocarray(*gone, *ngone + 1, sizeof(**gone));
		(*gone)[(*ngone)++] = uid;
		return;
	}
	e->seen = 1;
	e->uid = uid;
	if (strcmp(info, e->info) == 0 && (int)rec->in_new == e->in_new)
		return;
	/* A move between new/ and cur/ is no flag change: no new MODSEQ. */
	if (strcmp(info_letters(info), info_letters(e->info)) != 0)
		rec->modseq = ++frec->highestmodseq;
	rec->flags = mailstore_flags_parse(info_letters(e->info));
	rec->in_new = e->in_new;
	*upd = xreallocarray(*upd, *nupd + 1, sizeof(**upd));
	u = &(*upd)[(*nupd)++];
	u->uid = uid;
	u->rec = *rec;
	u->base = xstrdup(base);
	u->info = e->info;
}

/*
 * Compare the index with one scan in one pass over the folder's records.
 * Known files whose name changed get the new flags; UIDs of records with no
 * file go to *gone.
 */
static int
sync_known(struct mailstore *s, MDB_txn *txn, struct scan *sc,
    struct mailstore_folder_rec *frec, uint32_t **gone, size_t *ngone)
{
	struct mailstore_msg_rec rec;
	struct sync_upd *upd = NULL;
	const char *base, *info;
	unsigned char key[8];
	size_t nupd = 0, i;
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	*ngone = 0;
	mailstore_index_key(key, frec->fid, 0);
	if ((rc = mdb_cursor_open(txn, s->idx->msgs, &c)) != 0)
		return mailstore_index_rc(rc);
	k.mv_data = key;
	k.mv_size = sizeof(key);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8 || memcmp(k.mv_data, key, 4) != 0)
			break;
		if (rec_parse(&v, &rec, &base, &info) < 0) {
			rc = MDB_CORRUPTED;
			break;
		}
		sync_one(sc, frec,
		    mailstore_index_be32((unsigned char *)k.mv_data + 4), &rec,
		    base, info, &upd, &nupd, gone, ngone);
	}
	mdb_cursor_close(c);
	rc = rc == MDB_NOTFOUND || rc == 0 ? 0 : mailstore_index_rc(rc);
	for (i = 0; i < nupd; i++) {
		if (rc == 0)
			rc = mailstore_index_msg_put(s, txn, frec->fid,
			    upd[i].uid, &upd[i].rec, upd[i].base, upd[i].info,
			    0);
		free(upd[i].base);
	}
	free(upd);
	return rc;
}

static int
sync_new(struct mailstore *s, MDB_txn *txn, struct scan *sc, const char *dir,
    struct mailstore_folder_rec *frec)
{
	struct scan_ent **add = NULL;
	size_t nadd = 0, i;
	int rc = 0, changed = 0;

	for (i = 0; i < sc->n; i++)
		if (!sc->ents[i].seen) {
			add = xreallocarray(add, nadd + 1, sizeof(*add));
			add[nadd++] = &sc->ents[i];
		}
	if (nadd > 1)
		qsort(add, nadd, sizeof(*add), ent_arrival_cmp);
	for (i = 0; i < nadd && rc >= 0; i++)
		if ((rc = sync_add(s, txn, dir, frec, add[i])) > 0)
			changed = 1;
	free(add);
	return rc < 0 ? rc : changed;
}

static int
uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Maildir: a file in tmp/ for 36 hours belongs to a writer that died. */
static void
clean_tmp(const char *dir)
{
	struct dirent *de;
	struct stat st;
	char *path;
	time_t old = time(NULL) - 36 * 3600;
	DIR *d;

	path = xasprintf("%s/tmp", dir);
	d = opendir(path);
	free(path);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
			0 &&
		    !S_ISDIR(st.st_mode) && st.st_mtime < old &&
		    unlinkat(dirfd(d), de->d_name, 0) == -1)
			log_warn("mailstore: unlink %s/tmp/%s: %s", dir,
			    de->d_name, strerror(errno));
	}
	closedir(d);
}

int
mailstore_folder_sync_txn(struct mailstore *s, MDB_txn *txn,
    struct mailstore_folder *f, const char *name, unsigned int sync_flags,
    struct mailstore_folder_rec *rec_r, const char **errstr_r)
{
	struct mailstore_folder_rec frec, orig;
	struct scan sc = {NULL, 0};
	uint32_t *gone = NULL;
	size_t ngone = 0, i;
	char *dir = mailstore_folder_dir(s, name);
	int rc, pass;

	if ((rc = mailstore_index_folder_ensure(s, txn, name, &frec)) < 0)
		goto out;
	orig = frec;
	/*
	 * readdir() may miss a file another program renames while we read
	 * (mutt setting a flag): a record whose file seems gone is expunged
	 * only if a second scan misses it too.
	 */
	for (pass = 0; pass < 2; pass++) {
		scan_free(&sc);
		if ((rc = scan_folder(&sc, dir)) < 0)
			goto out;
		free(gone);
		gone = NULL;
		if ((rc = sync_known(s, txn, &sc, &frec, &gone, &ngone)) < 0)
			goto out;
		if (ngone == 0)
			break;
	}
	for (i = 0; i < ngone && rc == 0; i++)
		rc = mailstore_index_msg_del(s, txn, frec.fid, gone[i]);
	if (rc < 0)
		goto out;
	if (ngone > 0)
		frec.highestmodseq++;
	if ((rc = sync_new(s, txn, &sc, dir, &frec)) < 0)
		goto out;
	for (i = 0; (sync_flags & MAILSTORE_SYNC_NEW_TO_CUR) && i < sc.n; i++) {
		if (!sc.ents[i].seen || !sc.ents[i].in_new)
			continue;
		rc = sync_to_cur(s, txn, f, dir, frec.fid, &sc.ents[i]);
		if (rc < 0)
			goto out;
	}
	if (f != NULL && f->nrecent > 1)
		qsort(f->recent, f->nrecent, sizeof(*f->recent), uid_cmp);
	if (sync_flags & MAILSTORE_SYNC_CLEAN_TMP)
		clean_tmp(dir);
	if (memcmp(&frec, &orig, sizeof(frec)) != 0)
		rc = mailstore_index_folder_put(s, txn, name, &frec);
	*rec_r = frec;
out:
	if (rc < 0)
		mailstore_err(
		    s, errstr_r, rc, "synchronise %s: %s", dir, strerror(-rc));
	scan_free(&sc);
	free(gone);
	free(dir);
	return rc < 0 ? rc : 0;
}

/* The POP3 unique-id: see mailstore_uidl() in mailstore.h. */
static char *
make_uidl(const char *base)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	size_t len = strlen(base);
	char *out;

	for (i = 0; i < len; i++)
		if ((unsigned char)base[i] < 0x21 ||
		    (unsigned char)base[i] > 0x7e)
			break;
	if (len >= 1 && len <= 70 && i == len)
		return xstrdup(base);
	if (EVP_Digest(base, len, md, &mdlen, EVP_sha256(), NULL) != 1)
		panic("mailstore: SHA-256 unavailable");
	out = xmalloc(mdlen * 2 + 1);
	for (i = 0; i < mdlen; i++)
		snprintf(out + i * 2, 3, "%02x", md[i]);
	return out;
}

static void
msg_release(struct mailstore_msg *m)
{
	free((char *)m->base);
	free((char *)m->path);
	free((char *)m->uidl);
}

static void
snapshot_clear(struct mailstore_folder *f)
{
	size_t i;

	for (i = 0; i < f->count; i++)
		msg_release(&f->msgs[i]);
	free(f->msgs);
	f->msgs = NULL;
	f->count = 0;
}

static void
msg_fill(struct mailstore_folder *f, struct mailstore_msg *m, uint32_t uid,
    const struct mailstore_msg_rec *rec, const char *base, const char *info)
{
	msg_release(m);
	m->uid = uid;
	m->flags = rec->flags;
	m->in_new = rec->in_new != 0;
	m->recent = f->nrecent > 0 &&
	    bsearch(&uid, f->recent, f->nrecent, sizeof(*f->recent), uid_cmp) !=
		NULL;
	m->modseq = rec->modseq;
	m->size = rec->size;
	m->vsize = rec->vsize;
	m->base = xstrdup(base);
	m->path = xasprintf(
	    "%s/%s/%s%s", f->dir, rec->in_new ? "new" : "cur", base, info);
	m->uidl = make_uidl(base);
}

/* Reload the snapshot from the index, in UID order. */
static int
snapshot_load(struct mailstore_folder *f, MDB_txn *txn)
{
	struct mailstore *s = f->store;
	struct mailstore_folder_rec frec;
	struct mailstore_msg_rec rec;
	struct mailstore_msg *m;
	unsigned char key[8];
	const char *base, *info;
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	snapshot_clear(f);
	if ((rc = mailstore_index_folder_get(s, txn, f->name, &frec)) < 0)
		return rc;
	f->fid = frec.fid;
	f->uidvalidity = frec.uidvalidity;
	f->uidnext = frec.uidnext;
	f->highestmodseq = frec.highestmodseq;
	mailstore_index_key(key, frec.fid, 0);
	if ((rc = mdb_cursor_open(txn, s->idx->msgs, &c)) != 0)
		return mailstore_index_rc(rc);
	k.mv_data = key;
	k.mv_size = sizeof(key);
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 8 || memcmp(k.mv_data, key, 4) != 0)
			break;
		if (rec_parse(&v, &rec, &base, &info) < 0) {
			rc = MDB_CORRUPTED;
			break;
		}
		f->msgs =
		    xreallocarray(f->msgs, f->count + 1, sizeof(*f->msgs));
		m = &f->msgs[f->count++];
		memset(m, 0, sizeof(*m));
		msg_fill(f, m,
		    mailstore_index_be32((unsigned char *)k.mv_data + 4), &rec,
		    base, info);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : mailstore_index_rc(rc);
}

int
mailstore_folder_sync(
    struct mailstore_folder *f, unsigned int sync_flags, const char **errstr_r)
{
	struct mailstore *s = f->store;
	struct mailstore_folder_rec frec;
	MDB_txn *txn;
	int rc;

	if ((rc = mailstore_index_begin(s, 0, &txn, errstr_r)) < 0)
		return rc;
	if ((rc = mailstore_folder_sync_txn(
		 s, txn, f, f->name, sync_flags, &frec, errstr_r)) < 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	if ((rc = snapshot_load(f, txn)) < 0) {
		mdb_txn_abort(txn);
		return mailstore_err(
		    s, errstr_r, rc, "index of %s: %s", f->dir, strerror(-rc));
	}
	return mailstore_index_commit(s, txn, errstr_r);
}

int
mailstore_folder_open(struct mailstore *store, const char *name,
    unsigned int sync_flags, struct mailstore_folder **folder_r,
    const char **errstr_r)
{
	struct mailstore_folder *f;
	struct stat st;
	int rc;

	*folder_r = NULL;
	if (mailstore_name_check(name) < 0)
		return mailstore_err(
		    store, errstr_r, -EINVAL, "invalid folder name");
	f = xcalloc(1, sizeof(*f));
	f->store = store;
	f->name = xstrdup(mailstore_is_inbox(name) ? MAILSTORE_INBOX : name);
	f->dir = mailstore_folder_dir(store, name);
	if (lstat(f->dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		mailstore_folder_free(&f);
		return mailstore_err(
		    store, errstr_r, -ENOENT, "no folder %s", name);
	}
	if ((rc = mailstore_folder_sync(
		 f, sync_flags | MAILSTORE_SYNC_CLEAN_TMP, errstr_r)) < 0) {
		mailstore_folder_free(&f);
		return rc;
	}
	*folder_r = f;
	return 0;
}

void
mailstore_folder_free(struct mailstore_folder **folder)
{
	struct mailstore_folder *f = *folder;

	if (f == NULL)
		return;
	snapshot_clear(f);
	free(f->recent);
	free(f->name);
	free(f->dir);
	free(f);
	*folder = NULL;
}

uint32_t
mailstore_folder_uidvalidity(const struct mailstore_folder *folder)
{
	return folder->uidvalidity;
}

uint32_t
mailstore_folder_uidnext(const struct mailstore_folder *folder)
{
	return folder->uidnext;
}

uint64_t
mailstore_folder_highestmodseq(const struct mailstore_folder *folder)
{
	return folder->highestmodseq;
}

size_t
mailstore_folder_count(const struct mailstore_folder *folder)
{
	return folder->count;
}

const struct mailstore_msg *
mailstore_folder_msg(const struct mailstore_folder *folder, size_t i)
{
	return i < folder->count ? &folder->msgs[i] : NULL;
}

/* Drop the messages with these UIDs from the snapshot in one pass (uids
 * gets sorted): an expunge of thousands must not be quadratic. */
static void
snapshot_drop(struct mailstore_folder *f, uint32_t *uids, size_t n)
{
	size_t i, o;

	if (n == 0)
		return;
	if (n > 1)
		qsort(uids, n, sizeof(*uids), uid_cmp);
	for (i = 0, o = 0; i < f->count; i++) {
		if (bsearch(&f->msgs[i].uid, uids, n, sizeof(*uids), uid_cmp) !=
		    NULL)
			msg_release(&f->msgs[i]);
		else
			f->msgs[o++] = f->msgs[i];
	}
	f->count = o;
}

static ssize_t
msg_index(const struct mailstore_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->count, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (f->msgs[mid].uid == uid)
			return mid;
		if (f->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

const struct mailstore_msg *
mailstore_folder_find(const struct mailstore_folder *folder, uint32_t uid)
{
	ssize_t i = msg_index(folder, uid);

	return i < 0 ? NULL : &folder->msgs[i];
}

const char *
mailstore_uidl(const struct mailstore_msg *msg)
{
	return msg->uidl;
}

static int
msg_check_fd(struct mailstore_folder *f, const struct mailstore_msg *m,
    int *fd_r, const char **errstr_r)
{
	struct stat st;
	int fl;

	if (fstat(*fd_r, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (fl = fcntl(*fd_r, F_GETFL)) == -1 ||
	    fcntl(*fd_r, F_SETFL, fl & ~O_NONBLOCK) == -1) {
		close(*fd_r);
		*fd_r = -1;
		return mailstore_err(f->store, errstr_r, -EIO,
		    "%s is not a regular file", m->path);
	}
	return 0;
}

int
mailstore_msg_open(
    struct mailstore_folder *f, uint32_t uid, int *fd_r, const char **errstr_r)
{
	const struct mailstore_msg *m;
	int tries, rc;

	*fd_r = -1;
	for (tries = 0; tries < 2; tries++) {
		if ((m = mailstore_folder_find(f, uid)) == NULL)
			break;
		/* Non-blocking, so that a FIFO put in place of a message
		 * cannot hang the reader; then only a regular file will do. */
		*fd_r = open(
		    m->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (*fd_r != -1)
			return msg_check_fd(f, m, fd_r, errstr_r);
		if (errno != ENOENT)
			return mailstore_err(f->store, errstr_r, -errno,
			    "open %s: %s", m->path, strerror(errno));
		/* Renamed by another program: find its new name. */
		if (tries == 0 &&
		    (rc = mailstore_folder_sync(f, 0, errstr_r)) < 0)
			return rc;
	}
	return mailstore_err(f->store, errstr_r, -ENOENT,
	    "no message UID %" PRIu32 " in %s", uid, f->name);
}

/* The info part for flags, keeping letters we do not know (Dovecot
 * keywords a-z, other tools' flags) in ASCII order as Maildir wants. */
static char *
info_with_flags(const char *old_info, unsigned int flags)
{
	char letters[64], known[8];
	const char *p;
	size_t n = 0, i, j;

	mailstore_flags_format(flags, known);
	for (i = 0; known[i] != '\0'; i++)
		letters[n++] = known[i];
	for (p = info_letters(old_info); *p != '\0' && n < sizeof(letters) - 1;
	     p++)
		if (strchr("DFPRST", *p) == NULL &&
		    memchr(letters, *p, n) == NULL)
			letters[n++] = *p;
	letters[n] = '\0';
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && letters[j - 1] > letters[j]; j--) {
			char c = letters[j];

			letters[j] = letters[j - 1];
			letters[j - 1] = c;
		}
	return xasprintf(":2,%s", letters);
}

/*
 * Flag changes and expunges go in batches, one index transaction for up to
 * MAILSTORE_BATCH_MAX messages: one commit, one fsync, for a POP3 QUIT or an
 * IMAP STORE on a range rather than one per message, while deliveries wait
 * for the mailbox's write lock a bounded time. A file is renamed or unlinked
 * before the transaction that records it commits; after a crash in between,
 * the next synchronisation takes the change for another program's.
 */
enum item_state {
	ITEM_TODO,
	ITEM_STALE, /* the file was not where the index said */
	ITEM_DONE,
	ITEM_GONE /* not in the index, or its file vanished */
};

struct batch_item {
	uint32_t uid;
	enum item_state state;
	uint64_t modseq; /* when done: the message's MODSEQ */
};

/* A file renamed in a transaction not committed yet. */
struct renamed {
	struct batch_item *item;
	struct mailstore_msg_rec rec;
	char *base, *info; /* the new name */
	char *from, *to;
};

struct batch {
	struct batch_item *items;
	size_t n;
	unsigned int add, remove; /* flag changes */
	size_t nexpunged;
	/* What the current transaction did, to finish or undo after it. */
	struct renamed *renamed; /* flag changes */
	uint32_t *unlinked;	 /* expunges */
	size_t ndone;
};

/* The two kinds of batch. */
struct batch_ops {
	/* Change one message inside txn: 2 if that takes the new MODSEQ
	 * modseq, 1 if done without one, 0 if there was nothing to do or the
	 * message was not found (it->state says which). */
	int (*one)(struct mailstore_folder *f, MDB_txn *txn, uint32_t fid,
	    uint64_t modseq, struct batch *b, struct batch_item *it,
	    const char **errstr_r);
	/* After the transaction, which ended with rc. */
	void (*end)(struct mailstore_folder *f, struct batch *b, int rc);
};

static void
batch_init(struct batch *b, const uint32_t *uids, size_t n)
{
	size_t i;

	memset(b, 0, sizeof(*b));
	b->items = xcalloc(n, sizeof(*b->items));
	b->n = n;
	for (i = 0; i < n; i++)
		b->items[i].uid = uids[i];
}

static void
batch_free(struct batch *b)
{
	free(b->items);
	free(b->renamed);
	free(b->unlinked);
}

/*
 * One transaction over up to MAILSTORE_BATCH_MAX items still to do, from
 * *next on. RFC 7162 3.1 asks for a new mod-sequence per STORE, not per
 * message: the messages changed together share one, one more than
 * HIGHESTMODSEQ was. A transaction with nothing to do writes nothing.
 */
static int
batch_txn(struct mailstore_folder *f, struct batch *b,
    const struct batch_ops *ops, size_t *next, const char **errstr_r)
{
	struct mailstore *s = f->store;
	struct mailstore_folder_rec frec;
	uint64_t modseq;
	size_t i, k;
	MDB_txn *txn;
	int rc;

	if ((rc = mailstore_index_begin(s, 0, &txn, errstr_r)) < 0)
		return rc;
	if ((rc = mailstore_index_folder_get(s, txn, f->name, &frec)) < 0) {
		mdb_txn_abort(txn);
		return mailstore_err(
		    s, errstr_r, rc, "index of %s: %s", f->dir, strerror(-rc));
	}
	modseq = frec.highestmodseq + 1;
	b->ndone = 0;
	for (i = *next, k = 0; i < b->n && k < MAILSTORE_BATCH_MAX && rc >= 0;
	     i++) {
		if (b->items[i].state != ITEM_TODO)
			continue;
		k++;
		rc = ops->one(
		    f, txn, frec.fid, modseq, b, &b->items[i], errstr_r);
		if (rc == 2)
			frec.highestmodseq = modseq;
	}
	*next = i;
	if (rc >= 0 && frec.highestmodseq == modseq &&
	    (rc = mailstore_index_folder_put(s, txn, f->name, &frec)) < 0)
		mailstore_err(
		    s, errstr_r, rc, "index of %s: %s", f->dir, strerror(-rc));
	if (rc >= 0 && b->ndone > 0)
		rc = mailstore_index_commit(s, txn, errstr_r);
	else
		mdb_txn_abort(txn);
	rc = rc < 0 ? rc : 0;
	ops->end(f, b, rc);
	if (rc == 0 && frec.highestmodseq == modseq)
		f->highestmodseq = modseq;
	return rc;
}

/*
 * Run transactions until no item is left to do; then, if some files were
 * not where the index said (another program renamed them), synchronise the
 * folder once to learn their names and try those again. What is still
 * missing then was expunged meanwhile: skipped.
 */
static int
batch_run(struct mailstore_folder *f, struct batch *b,
    const struct batch_ops *ops, const char **errstr_r)
{
	size_t i, nstale;
	int pass, rc;

	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < b->n;) {
			if (b->items[i].state != ITEM_TODO)
				i++;
			else if ((rc = batch_txn(f, b, ops, &i, errstr_r)) < 0)
				return rc;
		}
		for (i = 0, nstale = 0; i < b->n; i++)
			if (b->items[i].state == ITEM_STALE) {
				b->items[i].state =
				    pass == 0 ? ITEM_TODO : ITEM_GONE;
				nstale++;
			}
		if (nstale == 0 || pass == 1)
			break;
		if ((rc = mailstore_folder_sync(f, 0, errstr_r)) < 0)
			return rc;
	}
	return 0;
}

static int
uid_err(struct mailstore_folder *f, uint32_t uid, int rc, const char *what,
    const char **errstr_r)
{
	return mailstore_err(f->store, errstr_r, rc,
	    "%s UID %" PRIu32 " in %s: %s", what, uid, f->name, strerror(-rc));
}

/* Rename one message's file for its new flags (into cur/) and record it. */
static int
flags_one(struct mailstore_folder *f, MDB_txn *txn, uint32_t fid,
    uint64_t modseq, struct batch *b, struct batch_item *it,
    const char **errstr_r)
{
	struct mailstore *s = f->store;
	struct renamed *r = &b->renamed[b->ndone];
	struct mailstore_msg_rec rec;
	char *base = NULL, *info = NULL;
	unsigned int flags;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = mailstore_index_msg_get(s, txn, fid, it->uid, &rec, &base, &info);
	if (rc == -ENOENT)
		it->state = ITEM_GONE;
	if (rc < 0)
		goto out;
	flags = ((rec.flags & ~b->remove) | b->add) & MAILSTORE_F_ALL;
	r->info = info_with_flags(info, flags);
	if (rec.flags == flags && !rec.in_new && strcmp(info, r->info) == 0) {
		it->state = ITEM_DONE;
		it->modseq = rec.modseq;
		goto out;
	}
	r->from = xasprintf(
	    "%s/%s/%s%s", f->dir, rec.in_new ? "new" : "cur", base, info);
	r->to = xasprintf("%s/cur/%s%s", f->dir, base, r->info);
	if ((rc = mailstore_rename(r->from, r->to)) == -ENOENT)
		it->state = ITEM_STALE;
	if (rc < 0)
		goto out;
	b->ndone++;
	/* Only out of new/ is no flag change: no new MODSEQ. */
	if (rec.flags != flags)
		rec.modseq = modseq;
	rec.flags = flags;
	rec.in_new = 0;
	r->rec = rec;
	r->item = it;
	r->base = base;
	free(info);
	if ((rc = mailstore_index_msg_put(
		 s, txn, fid, it->uid, &rec, base, r->info, 0)) < 0)
		return mailstore_err(
		    s, errstr_r, rc, "index of %s: %s", f->dir, strerror(-rc));
	return rec.modseq == modseq ? 2 : 1;
out:
	free(r->info);
	free(r->from);
	free(r->to);
	memset(r, 0, sizeof(*r));
	free(base);
	free(info);
	if (rc < 0 && rc != -ENOENT)
		return uid_err(f, it->uid, rc, "set flags of", errstr_r);
	return 0;
}

/* Committed: into the snapshot. Failed: give the files their names back. */
static void
flags_end(struct mailstore_folder *f, struct batch *b, int rc)
{
	struct renamed *r;
	ssize_t at;
	size_t i;

	for (i = b->ndone; rc < 0 && i-- > 0;)
		if (mailstore_rename(b->renamed[i].to, b->renamed[i].from) < 0)
			log_warn("mailstore: cannot undo rename of %s",
			    b->renamed[i].from);
	for (i = 0; i < b->ndone; i++) {
		r = &b->renamed[i];
		if (rc == 0) {
			r->item->state = ITEM_DONE;
			r->item->modseq = r->rec.modseq;
			if ((at = msg_index(f, r->item->uid)) >= 0)
				msg_fill(f, &f->msgs[at], r->item->uid, &r->rec,
				    r->base, r->info);
		}
		free(r->base);
		free(r->info);
		free(r->from);
		free(r->to);
	}
}

/* Unlink one message's file and remove its record. */
static int
expunge_one(struct mailstore_folder *f, MDB_txn *txn, uint32_t fid,
    uint64_t modseq, struct batch *b, struct batch_item *it,
    const char **errstr_r)
{
	struct mailstore *s = f->store;
	struct mailstore_msg_rec rec;
	char *base, *info, *path;
	int rc;

	(void)modseq;
	rc = mailstore_index_msg_get(s, txn, fid, it->uid, &rec, &base, &info);
	if (rc == -ENOENT) {
		it->state = ITEM_GONE;
		return 0;
	}
	if (rc == 0) {
		path = xasprintf("%s/%s/%s%s", f->dir,
		    rec.in_new ? "new" : "cur", base, info);
		if (unlink(path) == -1)
			rc = -errno;
		free(path);
		free(base);
		free(info);
	}
	if (rc == -ENOENT) {
		it->state = ITEM_STALE;
		return 0;
	}
	if (rc == 0) {
		it->state = ITEM_DONE;
		b->unlinked[b->ndone++] = it->uid;
		rc = mailstore_index_msg_del(s, txn, fid, it->uid);
	}
	if (rc < 0)
		return uid_err(f, it->uid, rc, "expunge", errstr_r);
	return 2;
}

/* The files are gone whatever the index says now: out of the snapshot. A
 * failed commit is repaired by the next sync. */
static void
expunge_end(struct mailstore_folder *f, struct batch *b, int rc)
{
	snapshot_drop(f, b->unlinked, b->ndone);
	if (rc == 0)
		b->nexpunged += b->ndone;
}

static const struct batch_ops flags_ops = {flags_one, flags_end};
static const struct batch_ops expunge_ops = {expunge_one, expunge_end};

int
mailstore_msgs_set_flags(struct mailstore_folder *f, const uint32_t *uids,
    size_t n, unsigned int add, unsigned int remove, uint64_t *modseqs_r,
    const char **errstr_r)
{
	struct batch b;
	size_t i;
	int rc;

	if (n == 0)
		return 0;
	batch_init(&b, uids, n);
	b.add = add & MAILSTORE_F_ALL;
	b.remove = remove & MAILSTORE_F_ALL;
	b.renamed = xcalloc(MAILSTORE_BATCH_MAX, sizeof(*b.renamed));
	rc = batch_run(f, &b, &flags_ops, errstr_r);
	for (i = 0; rc == 0 && modseqs_r != NULL && i < n; i++)
		modseqs_r[i] =
		    b.items[i].state == ITEM_DONE ? b.items[i].modseq : 0;
	batch_free(&b);
	return rc;
}

int
mailstore_msg_set_flags(struct mailstore_folder *f, uint32_t uid,
    unsigned int flags, uint64_t *modseq_r, const char **errstr_r)
{
	uint64_t modseq = 0;
	int rc;

	if ((rc = mailstore_msgs_set_flags(
		 f, &uid, 1, flags, MAILSTORE_F_ALL, &modseq, errstr_r)) < 0)
		return rc;
	if (modseq == 0)
		return uid_err(f, uid, -ENOENT, "set flags of", errstr_r);
	if (modseq_r != NULL)
		*modseq_r = modseq;
	return 0;
}

int
mailstore_msgs_expunge(struct mailstore_folder *f, const uint32_t *uids,
    size_t n, size_t *count_r, const char **errstr_r)
{
	struct batch b;
	int rc;

	if (count_r != NULL)
		*count_r = 0;
	if (n == 0)
		return 0;
	batch_init(&b, uids, n);
	b.unlinked = xcalloc(MAILSTORE_BATCH_MAX, sizeof(*b.unlinked));
	rc = batch_run(f, &b, &expunge_ops, errstr_r);
	if (count_r != NULL)
		*count_r = b.nexpunged;
	batch_free(&b);
	return rc;
}

int
mailstore_msg_expunge(
    struct mailstore_folder *f, uint32_t uid, const char **errstr_r)
{
	size_t count;
	int rc;

	if ((rc = mailstore_msgs_expunge(f, &uid, 1, &count, errstr_r)) < 0)
		return rc;
	return count == 0 ? uid_err(f, uid, -ENOENT, "expunge", errstr_r) : 0;
}

#define CACHE_KEY_MAX 64
#define CACHE_DATA_MAX (256 * 1024)

int
mailstore_cache_set(struct mailstore_folder *f, uint32_t uid, const char *key,
    const void *data, size_t len, const char **errstr_r)
{
	struct mailstore *s = f->store;
	struct mailstore_msg_rec rec;
	MDB_txn *txn;
	size_t klen = strlen(key);
	int rc;

	if (klen == 0 || klen > CACHE_KEY_MAX || len > CACHE_DATA_MAX)
		return mailstore_err(
		    s, errstr_r, -EINVAL, "cache key or value too long");
	if ((rc = mailstore_index_begin(s, 0, &txn, errstr_r)) < 0)
		return rc;
	/* Only for a message still indexed: an expunge removes its cache,
	 * and a late writer must not leave an orphan behind. */
	if ((rc = mailstore_index_msg_get(
		 s, txn, f->fid, uid, &rec, NULL, NULL)) < 0 ||
	    (rc = mailstore_index_cache_put(
		 s, txn, f->fid, uid, key, data, len)) < 0) {
		mdb_txn_abort(txn);
		return mailstore_err(s, errstr_r, rc,
		    "cache of UID %" PRIu32 ": %s", uid, strerror(-rc));
	}
	return mailstore_index_commit(s, txn, errstr_r);
}

int
mailstore_cache_get(struct mailstore_folder *f, uint32_t uid, const char *key,
    struct buf *out, const char **errstr_r)
{
	struct mailstore *s = f->store;
	MDB_txn *txn;
	size_t klen = strlen(key);
	int rc;

	if (klen == 0 || klen > CACHE_KEY_MAX)
		return mailstore_err(
		    s, errstr_r, -EINVAL, "cache key too long");
	if ((rc = mailstore_index_begin(s, 1, &txn, errstr_r)) < 0)
		return rc;
	rc = mailstore_index_cache_get(s, txn, f->fid, uid, key, out);
	mdb_txn_abort(txn);
	if (rc < 0)
		return mailstore_err(s, errstr_r, rc,
		    "cache of UID %" PRIu32 ": %s", uid, strerror(-rc));
	return 0;
}
