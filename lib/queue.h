/*
 * queue.h - the spool directory: queue IDs, paths, scanning, moving files
 * between queue directories, tmp/ recovery and the free space check
 * (pochta-queue(5)). Plain blocking calls, meant for the libuv thread pool;
 * thread-safe (the only shared state is an atomic counter). Errors are
 * negative errno values; nothing here logs.
 */
#ifndef POCHTA_QUEUE_H
#define POCHTA_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * A queue ID is QUEUE_ID_LEN characters of the base-32 alphabet
 * 0-9 A-H J K M N P-T V-Z (no I, L, O, U): 11 characters of arrival time in
 * microseconds, 5 of the process ID and 4 of a per-process counter. All
 * fields are fixed width and most significant first, so byte order of IDs is
 * arrival order (within one process strictly; across processes to the
 * microsecond).
 */
#define QUEUE_ID_LEN 20
#define QUEUE_ID_SIZE (QUEUE_ID_LEN + 1)

/* The queue directories under the spool, in pochta-queue(5). */
#define QUEUE_TMP "tmp"
#define QUEUE_INCOMING "incoming"
#define QUEUE_ACTIVE "active"
#define QUEUE_DEFERRED "deferred"
#define QUEUE_HOLD "hold"
#define QUEUE_CORRUPT "corrupt"

/* Write a new ID (NUL-terminated) into id. Never fails. */
void queue_id_new(char id[QUEUE_ID_SIZE]);

/* Whether s is exactly one well-formed queue ID (so it is a safe name). */
int queue_id_valid(const char *s);

/* The arrival time recorded in a valid ID, in microseconds since 1970. */
uint64_t queue_id_time_us(const char *id);

/* Whether name is one of the queue directories above. */
int queue_dir_valid(const char *name);

/*
 * "spooldir/dir/id" as a new string (caller frees). dir must be one of the
 * queue directories and id a valid ID, else NULL: a hostile ID from a
 * command line can never name a path outside the spool.
 */
char *queue_path(const char *spooldir, const char *dir, const char *id);

/*
 * Create the queue directories under spooldir (mode 0700) where missing.
 * 0 or a negative errno.
 */
int queue_mkdirs(const char *spooldir);

/*
 * fsync(2) the directory at path, so that a rename or unlink in it is on
 * stable storage. 0 or a negative errno.
 */
int queue_dir_sync(const char *path);

/*
 * Move the file id from queue directory from to queue directory to:
 * rename(2), then fsync of the target directory and of the source. The file
 * is always in exactly one directory, so a crash can never lose it.
 * 0, -ENOENT (no such file), -EINVAL (bad name) or another negative errno.
 */
int queue_move(const char *spooldir, const char *id, const char *from,
    const char *to);

/*
 * The rename(2) of queue_move() alone, for a caller that moves many files
 * and then makes them durable together with one queue_dir_sync() of each
 * directory (the target first). Until then a crash may leave a file in
 * either directory, never in none. Errors as queue_move().
 */
int queue_rename(const char *spooldir, const char *id, const char *from,
    const char *to);

/*
 * Remove the file id from queue directory dir (every recipient is done, or
 * the operator said so). No directory fsync: should a crash bring the file
 * back, its recipients are all marked done and qmgr removes it again.
 * 0, -ENOENT, -EINVAL (bad name) or another negative errno.
 */
int queue_remove(const char *spooldir, const char *dir, const char *id);

/*
 * The valid IDs in queue directory dir, sorted (that is by arrival). Other
 * names are ignored. *ids_r is a NULL-terminated array; free it with
 * queue_ids_free. 0 or a negative errno.
 */
int queue_scan(const char *spooldir, const char *dir, char ***ids_r,
    size_t *n_r);
void queue_ids_free(char ***ids);

/*
 * Remove the files in tmp/ last modified more than max_age seconds before
 * now: what a writer left behind when its process died (qmgr's start-up
 * recovery). *removed_r (may be NULL) counts them. 0 or a negative errno.
 */
int queue_tmp_cleanup(const char *spooldir, time_t max_age, time_t now,
    size_t *removed_r);

/*
 * Whether the file system of spooldir has room for needed more bytes while
 * keeping minfree bytes (and some inodes) free for the rest of the system:
 * 1 yes, 0 no (smtpd answers 452 4.3.1), or a negative errno from
 * statvfs(2).
 */
int queue_space_ok(const char *spooldir, uint64_t needed, uint64_t minfree);

#endif
