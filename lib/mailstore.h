/*
 * mailstore.h - the one module that reads and writes a user's mailbox: a
 * Maildir++ directory (cur/ new/ tmp/, folders as .Name) plus a per-user LMDB
 * index holding what Maildir cannot (UIDVALIDITY, UIDs, MODSEQs, subscriptions,
 * a per-message cache). The index is a cache of the Maildir and its UID
 * assignments: lost or corrupt, it is rebuilt with a new UIDVALIDITY.
 * The on-disk layout is documented for operators in pochta-mailstore(5).
 *
 * Errors: functions return 0 or a negative errno and set *errstr_r (when
 * errstr_r is not NULL) to a message valid until the next call on the same
 * store or anything opened from it. Notable codes:
 *   -EDQUOT   the user's mailbox is full: over the quota set with
 *             mailstore_set_quota(), or the file system's own quota
 *             (both mean RFC 3463 4.2.2 to a delivery agent)
 *   -ENOSPC   the file system is full (4.3.1)
 *   -EACCES   permission denied on the mailbox
 *   -ENOENT   no such folder or message (expunged meanwhile)
 *   -EINVAL   a folder name that cannot be stored
 *   -EIO      any other failure of the disk or the index
 *
 * Threads: a struct mailstore and everything opened from it may be used by
 * one thread at a time, and handed from thread to thread (the libuv thread
 * pool). Several stores may be open on the same mailbox in one process and in
 * many processes at once: the LMDB environment is opened once per process
 * and mailbox and shared by reference count, as LMDB requires, and every
 * change to the index happens inside one LMDB write transaction. Calls block
 * on disk I/O; daemons make them from the thread pool.
 */
#ifndef POCHTA_MAILSTORE_H
#define POCHTA_MAILSTORE_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct mailstore;
struct mailstore_folder;
struct mailstore_delivery;

/* The name of the root folder; matched without regard to case. */
#define MAILSTORE_INBOX "INBOX"

/* Longest folder name accepted, in bytes. */
#define MAILSTORE_FOLDER_MAX 200

/* The Maildir flags, written after ":2," in this (ASCII) order. */
#define MAILSTORE_F_DRAFT 0x01	 /* D */
#define MAILSTORE_F_FLAGGED 0x02 /* F */
#define MAILSTORE_F_PASSED 0x04	 /* P: forwarded, bounced */
#define MAILSTORE_F_REPLIED 0x08 /* R */
#define MAILSTORE_F_SEEN 0x10	 /* S */
#define MAILSTORE_F_TRASHED 0x20 /* T: IMAP \Deleted */
#define MAILSTORE_F_ALL 0x3f

/*
 * mailstore_folder_open() and mailstore_folder_sync() options.
 * NEW_TO_CUR: move new/ files to cur/, a reader took notice of them.
 * CLEAN_TMP: remove tmp/ files older than 36 hours, left by crashed writers
 * (Maildir); mailstore_folder_open() always does it.
 */
#define MAILSTORE_SYNC_NEW_TO_CUR 0x01
#define MAILSTORE_SYNC_CLEAN_TMP 0x02

/* One message of a folder snapshot. */
struct mailstore_msg {
	uint32_t uid;
	unsigned int flags; /* MAILSTORE_F_* */
	int in_new;	    /* still in new/: no reader claimed it */
	int recent;	    /* this handle moved it out of new/: IMAP
			     * \Recent for this session (RFC 3501
			     * 2.3.2), only one session gets it */
	uint64_t modseq;    /* RFC 7162 MODSEQ of the last change */
	uint64_t size;	    /* bytes in the file */
	uint64_t vsize;	    /* bytes with CRLF line ends: RFC822.SIZE,
			     * and the POP3 octet count */
	const char *base;   /* Maildir base name (no ":2,flags") */
	const char *path;   /* the file, as of the snapshot */
	const char *uidl;   /* POP3 UIDL, see mailstore_uidl() */
};

/*
 * Open the mailbox at path (a directory; created with mode 0700 with its
 * INBOX if missing) and its index <path>/pochta-index.lmdb. A missing index
 * is created and every folder found on disk synchronised into it; an index
 * that LMDB rejects as invalid is renamed to pochta-index.lmdb.corrupt and
 * rebuilt the same way. Free with mailstore_free().
 */
int mailstore_open(
    const char *path, struct mailstore **store_r, const char **errstr_r);

/* Close the store (and the index, when no other store in this process uses
 * it); *store becomes NULL. NULL is accepted. */
void mailstore_free(struct mailstore **store);

/*
 * Limit the whole mailbox (all folders) to max_bytes of message sizes and
 * max_msgs messages; 0 means no limit. Deliveries that would pass a limit fail
 * with -EDQUOT and leave nothing behind. Usage counts indexed messages.
 */
void mailstore_set_quota(
    struct mailstore *store, uint64_t max_bytes, uint64_t max_msgs);

/* The usage counted against the quota. */
int mailstore_quota_usage(struct mailstore *store, uint64_t *bytes_r,
    uint64_t *msgs_r, const char **errstr_r);

/*
 * Folders. Names are IMAP mailbox names with "." as the hierarchy separator
 * ("Lists.pochta" is the directory .Lists.pochta); non-ASCII names are
 * expected in modified UTF-7 (RFC 3501 5.1.3), as Dovecot and Courier store
 * them, and are stored as given. Refused with -EINVAL: empty names, longer
 * than MAILSTORE_FOLDER_MAX, containing "/", a control character, an empty
 * level ("a..b", ".a", "a."), or beginning with "#".
 */

/* Every folder on disk, INBOX first then sorted; free with
 * mailstore_names_free(). */
int mailstore_folder_list(struct mailstore *store, char ***names_r,
    size_t *count_r, const char **errstr_r);

/* Free a name list; *names becomes NULL. */
void mailstore_names_free(char ***names, size_t count);

/* Create a folder (directories and maildirfolder, mode 0700); -EEXIST if it
 * exists. */
int mailstore_folder_create(
    struct mailstore *store, const char *name, const char **errstr_r);

/* Delete a folder with its messages and index records. -EBUSY for INBOX,
 * -ENOTEMPTY when it has subfolders, -ENOENT when missing. */
int mailstore_folder_delete(
    struct mailstore *store, const char *name, const char **errstr_r);

/* Rename a folder and its subfolders (RFC 3501 6.3.5); UIDs and UIDVALIDITY
 * are kept. -EBUSY for INBOX (either side), -EEXIST if to exists. */
int mailstore_folder_rename(struct mailstore *store, const char *from,
    const char *to, const char **errstr_r);

/* Subscribe (on != 0) or unsubscribe a name; it need not exist. */
int mailstore_subscribe(
    struct mailstore *store, const char *name, int on, const char **errstr_r);

/* The subscribed names, sorted; free with mailstore_names_free(). */
int mailstore_subscriptions(struct mailstore *store, char ***names_r,
    size_t *count_r, const char **errstr_r);

/*
 * Delivery, streaming: begin, write the message in chunks, then commit or
 * abort. The message goes to tmp/ (created O_EXCL under a unique Maildir name)
 * and, at commit, is fsynced, linked into new/ under its final name with
 * ,S=<size>,W=<vsize> (into cur/ with :2,<flags> when flags is not 0, as for
 * IMAP APPEND), that directory is fsynced, and the UID is assigned in the
 * index: only then does commit return 0. The folder is created on first
 * delivery. size_hint (0 if unknown) lets begin refuse an over-quota message
 * early. After commit or abort *d is NULL; on any failure nothing is left in
 * tmp/, new/ or cur/. An empty message is refused with -EINVAL.
 *
 * UID order: UIDs are handed out in the order in which messages enter the
 * index, inside its write transaction (one at a time for the whole mailbox,
 * across processes). A delivery's file is durable before its UID exists; if
 * a concurrent sync indexes the file first, the delivery gets that UID.
 */
int mailstore_deliver_begin(struct mailstore *store, const char *folder,
    uint64_t size_hint, struct mailstore_delivery **d_r, const char **errstr_r);
int mailstore_deliver_write(struct mailstore_delivery *d, const void *data,
    size_t len, const char **errstr_r);
int mailstore_deliver_commit(struct mailstore_delivery **d, unsigned int flags,
    uint32_t *uid_r, const char **errstr_r);
void mailstore_deliver_abort(struct mailstore_delivery **d);

/* Deliver what fd holds up to its end, the same way. */
int mailstore_deliver(struct mailstore *store, const char *folder, int fd,
    uint64_t size_hint, unsigned int flags, uint32_t *uid_r,
    const char **errstr_r);

/*
 * Open a folder: synchronise the index with the directory (see
 * mailstore_folder_sync()) and take a snapshot of its messages in UID order.
 * -ENOENT if the folder does not exist. Free with mailstore_folder_free().
 */
int mailstore_folder_open(struct mailstore *store, const char *name,
    unsigned int sync_flags, struct mailstore_folder **folder_r,
    const char **errstr_r);
void mailstore_folder_free(struct mailstore_folder **folder);

/*
 * Reconcile the index with new/ and cur/ and refresh the snapshot (earlier
 * mailstore_msg pointers become invalid). Files other Maildir tools added get
 * UIDs, in the order of their names (which begin with the delivery time);
 * renamed files keep their UID and get the new flags and a new MODSEQ;
 * vanished files are expunged from the index. Not messages, and skipped:
 * names beginning with ".", names with spaces or control characters,
 * anything but regular files, empty files, and a base name already seen in
 * the other directory.
 */
int mailstore_folder_sync(struct mailstore_folder *folder,
    unsigned int sync_flags, const char **errstr_r);

uint32_t mailstore_folder_uidvalidity(const struct mailstore_folder *folder);
uint32_t mailstore_folder_uidnext(const struct mailstore_folder *folder);
uint64_t mailstore_folder_highestmodseq(const struct mailstore_folder *folder);
size_t mailstore_folder_count(const struct mailstore_folder *folder);

/* The i-th message of the snapshot (0-based, UID order), NULL past the end. */
const struct mailstore_msg *mailstore_folder_msg(
    const struct mailstore_folder *folder, size_t i);

/* The message with this UID, NULL if not in the snapshot. */
const struct mailstore_msg *mailstore_folder_find(
    const struct mailstore_folder *folder, uint32_t uid);

/* Open a message read-only; the caller closes *fd_r. If another tool renamed
 * the file, the folder is synchronised once and the open retried. */
int mailstore_msg_open(struct mailstore_folder *folder, uint32_t uid, int *fd_r,
    const char **errstr_r);

/* Replace a message's flags: the file is renamed (into cur/ if it was in
 * new/), the index gets a new MODSEQ (returned in *modseq_r if not NULL) and
 * the snapshot entry is updated. Setting the same flags changes nothing.
 * -ENOENT if the message is gone. If the index cannot record the change, the
 * file gets its old name back. The one-message form of
 * mailstore_msgs_set_flags(). */
int mailstore_msg_set_flags(struct mailstore_folder *folder, uint32_t uid,
    unsigned int flags, uint64_t *modseq_r, const char **errstr_r);

/* Remove a message: unlink the file, its index record and cache, and drop it
 * from the snapshot (later messages move down one place). -ENOENT if it was
 * gone already. A file unlinked whose record the index then fails to remove
 * is expunged by the next synchronisation. The one-message form of
 * mailstore_msgs_expunge(). */
int mailstore_msg_expunge(
    struct mailstore_folder *folder, uint32_t uid, const char **errstr_r);

/* Most messages the batch functions below change in one index transaction. */
#define MAILSTORE_BATCH_MAX 1000

/*
 * The same for many messages (POP3 QUIT, IMAP STORE or EXPUNGE of a range):
 * up to MAILSTORE_BATCH_MAX messages at a time, in the order given, are
 * changed in one index transaction with a single commit, instead of one
 * commit (one fsync) each, and the snapshot is updated as by the single
 * forms. Messages not in the index or whose file is gone (expunged by
 * another client) are skipped, which is not an error; a file another program
 * renamed meanwhile is found by one synchronisation and changed then. UIDs
 * may repeat. A failure stops the batch: what earlier transactions did
 * stays done, the failed transaction's renames are undone, and its unlinked
 * files are expunged from the index by the next synchronisation.
 *
 * mailstore_msgs_set_flags: each message's flags become (flags & ~remove) |
 * add (a flag in both ends up set), computed from the index rather than
 * the snapshot. The messages whose flags change in one transaction share
 * one new MODSEQ, and HIGHESTMODSEQ becomes that value (RFC 7162 3.1: a new
 * mod-sequence per STORE); moving a file out of new/ alone is no change.
 * modseqs_r, if not NULL, gets n values: each message's MODSEQ after the
 * call (changed or not), 0 for a message skipped. A repeated call is a
 * no-op and writes nothing.
 *
 * mailstore_msgs_expunge: *count_r (if not NULL) is how many messages this
 * call removed; HIGHESTMODSEQ rises once per transaction.
 */
int mailstore_msgs_set_flags(struct mailstore_folder *folder,
    const uint32_t *uids, size_t n, unsigned int add, unsigned int remove,
    uint64_t *modseqs_r, const char **errstr_r);
int mailstore_msgs_expunge(struct mailstore_folder *folder,
    const uint32_t *uids, size_t n, size_t *count_r, const char **errstr_r);

/*
 * The POP3 unique-id (RFC 1939 7) of a message: its Maildir base name when
 * that is 1 to 70 characters 0x21-0x7E, else 64 hex digits of the SHA-256 of
 * the base name. It never changes with flags, UIDs or UIDVALIDITY, so POP3
 * clients that leave mail on the server survive an index rebuild. The same
 * string as mailstore_msg.uidl; the result is valid as long as the snapshot.
 */
const char *mailstore_uidl(const struct mailstore_msg *msg);

/*
 * The per-message cache: named byte blobs (parsed envelope, body structure)
 * stored in the index, removed with the message. key is at most 64 bytes,
 * data at most 256 KiB (else -EINVAL); set fails with -ENOENT for a message
 * no longer indexed. get appends the blob to out: -ENOENT if there is none,
 * -ENOBUFS past out's limit.
 */
int mailstore_cache_set(struct mailstore_folder *folder, uint32_t uid,
    const char *key, const void *data, size_t len, const char **errstr_r);
int mailstore_cache_get(struct mailstore_folder *folder, uint32_t uid,
    const char *key, struct buf *out, const char **errstr_r);

/* Maildir flag letters for flags, in ASCII order, into out (at least 7
 * bytes); and the reverse (unknown letters ignored). */
void mailstore_flags_format(unsigned int flags, char *out);
unsigned int mailstore_flags_parse(const char *letters);

#endif
