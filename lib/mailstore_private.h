/*
 * mailstore_private.h - what the lib/mailstore_*.c files share and nobody
 * else may use: the structs behind the opaque handles and the LMDB index
 * records (layout documented in pochta-mailstore(5)).
 */
#ifndef POCHTA_MAILSTORE_PRIVATE_H
#define POCHTA_MAILSTORE_PRIVATE_H

#include <sys/types.h>

#include <lmdb.h>
#include <stdint.h>

#include "mailstore.h"

#define MAILSTORE_INDEX_NAME "pochta-index.lmdb"
#define MAILSTORE_UIDV_NAME "pochta-uidvalidity"
#define MAILSTORE_INDEX_VERSION "1"

/* One LMDB environment per mailbox and process, shared by reference. */
struct mailstore_env {
	dev_t dev;
	ino_t ino;
	pid_t pid;
	int refs;
	MDB_env *env;
	MDB_dbi meta, folders, msgs, names, subs, cache;
	struct mailstore_env *next;
};

struct mailstore {
	char *path;
	struct mailstore_env *idx;
	char *host;	   /* escaped for Maildir names */
	unsigned long seq; /* the Q<n> of delivered names */
	uint64_t quota_bytes, quota_msgs;
	char err[512];
};

/* An index record of a folder; key: the folder name ("INBOX" for root). */
struct mailstore_folder_rec {
	uint32_t fid;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t pad;
	uint64_t highestmodseq;
};

/* An index record of a message; key: fid, uid (both big-endian). The value
 * is this struct followed by base NUL info NUL, info being the file name
 * after the base (":2,FS", or empty). */
struct mailstore_msg_rec {
	uint64_t modseq;
	uint64_t size;
	uint64_t vsize;
	uint32_t flags;
	uint32_t in_new;
};

struct mailstore_folder {
	struct mailstore *store;
	char *name;
	char *dir;
	uint32_t fid, uidvalidity, uidnext;
	uint64_t highestmodseq;
	struct mailstore_msg *msgs;
	size_t count;
	uint32_t *recent; /* UIDs this handle took from new/ */
	size_t nrecent;
};

/* mailstore.c */
int mailstore_err(struct mailstore *s, const char **errstr_r, int rc,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int mailstore_name_check(const char *name);
int mailstore_is_inbox(const char *name);
char *mailstore_folder_dir(const struct mailstore *s, const char *name);
int mailstore_folder_mkdirs(
    struct mailstore *s, const char *name, const char **errstr_r);
int mailstore_fsync_dir(const char *path);
int mailstore_rename(const char *from, const char *to);

/* mailstore_index.c */
int mailstore_index_acquire(
    struct mailstore *s, int *fresh_r, const char **errstr_r);
void mailstore_index_release(struct mailstore *s);
int mailstore_index_begin(
    struct mailstore *s, int rdonly, MDB_txn **txn_r, const char **errstr_r);
int mailstore_index_commit(
    struct mailstore *s, MDB_txn *txn, const char **errstr_r);
int mailstore_index_rc(int mdb_rc);
int mailstore_index_folder_get(struct mailstore *s, MDB_txn *txn,
    const char *name, struct mailstore_folder_rec *rec);
int mailstore_index_folder_put(struct mailstore *s, MDB_txn *txn,
    const char *name, const struct mailstore_folder_rec *rec);
int mailstore_index_folder_ensure(struct mailstore *s, MDB_txn *txn,
    const char *name, struct mailstore_folder_rec *rec);
int mailstore_index_folder_drop(
    struct mailstore *s, MDB_txn *txn, const char *name);
int mailstore_index_msg_get(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, struct mailstore_msg_rec *rec, char **base_r, char **info_r);
int mailstore_index_msg_put(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, const struct mailstore_msg_rec *rec, const char *base,
    const char *info, int is_new);
int mailstore_index_msg_del(
    struct mailstore *s, MDB_txn *txn, uint32_t fid, uint32_t uid);
int mailstore_index_name_uid(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    const char *base, uint32_t *uid_r);
int mailstore_index_usage(
    struct mailstore *s, MDB_txn *txn, uint64_t *bytes_r, uint64_t *msgs_r);
int mailstore_index_folder_rename(
    struct mailstore *s, MDB_txn *txn, const char *from, const char *to);
int mailstore_index_subscribe(
    struct mailstore *s, MDB_txn *txn, const char *name, int on);
int mailstore_index_subscriptions(
    struct mailstore *s, MDB_txn *txn, char ***names_r, size_t *count_r);
int mailstore_index_cache_put(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, const char *name, const void *data, size_t len);
int mailstore_index_cache_get(struct mailstore *s, MDB_txn *txn, uint32_t fid,
    uint32_t uid, const char *name, struct buf *out);
void mailstore_index_key(unsigned char *key, uint32_t fid, uint32_t uid);
uint32_t mailstore_index_be32(const unsigned char *p);

/* mailstore_folder.c */
int mailstore_folder_sync_txn(struct mailstore *s, MDB_txn *txn,
    struct mailstore_folder *f, const char *name, unsigned int sync_flags,
    struct mailstore_folder_rec *rec_r, const char **errstr_r);

#endif
