/*
 * queue.c - the spool directory (queue.h, pochta-queue(5)): IDs, paths,
 * scanning, moves with directory fsync, tmp/ recovery and the free space
 * check. Every failure is returned as a negative errno; callers log it with
 * the queue ID.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#include "queue.h"
#include "xalloc.h"

/* Crockford's base 32: no I, L, O or U to misread, and in ASCII order. */
static const char queue_b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#define ID_TIME_CHARS 11
#define ID_PID_CHARS 5
#define ID_SEQ_CHARS 4

static atomic_uint_fast32_t queue_seq;
static atomic_uint_fast64_t queue_last_us;

static void
put_b32(char *dst, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		dst[i] = queue_b32[v & 31];
		v >>= 5;
	}
}

static int
b32_value(char c)
{
	const char *p;

	if (c == '\0' || (p = strchr(queue_b32, c)) == NULL)
		return -1;
	return (int)(p - queue_b32);
}

void
queue_id_new(char id[QUEUE_ID_SIZE])
{
	struct timeval tv;
	uint64_t now, last;
	uint32_t seq;

	gettimeofday(&tv, NULL);
	now = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
	/*
	 * A wall clock stepped backwards must not reorder this process's
	 * IDs: never go below the last time used.
	 */
	last = atomic_load(&queue_last_us);
	do {
		if (now < last)
			now = last;
	} while (!atomic_compare_exchange_weak(&queue_last_us, &last, now));
	seq = (uint32_t)atomic_fetch_add(&queue_seq, 1);
	put_b32(id, now, ID_TIME_CHARS);
	put_b32(id + ID_TIME_CHARS, (uint64_t)getpid(), ID_PID_CHARS);
	put_b32(id + ID_TIME_CHARS + ID_PID_CHARS, seq, ID_SEQ_CHARS);
	id[QUEUE_ID_LEN] = '\0';
}

int
queue_id_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < QUEUE_ID_LEN; i++)
		if (b32_value(s[i]) < 0)
			return 0;
	return s[i] == '\0';
}

uint64_t
queue_id_time_us(const char *id)
{
	uint64_t v = 0;

	for (int i = 0; i < ID_TIME_CHARS; i++)
		v = v << 5 | (uint64_t)b32_value(id[i]);
	return v;
}

int
queue_dir_valid(const char *name)
{
	static const char *const dirs[] = { QUEUE_TMP, QUEUE_INCOMING,
		QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT };

	if (name == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (strcmp(name, dirs[i]) == 0)
			return 1;
	return 0;
}

char *
queue_path(const char *spooldir, const char *dir, const char *id)
{
	if (!queue_dir_valid(dir) || !queue_id_valid(id))
		return NULL;
	return xasprintf("%s/%s/%s", spooldir, dir, id);
}

int
queue_mkdirs(const char *spooldir)
{
	static const char *const dirs[] = { QUEUE_TMP, QUEUE_INCOMING,
		QUEUE_ACTIVE, QUEUE_DEFERRED, QUEUE_HOLD, QUEUE_CORRUPT };

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *p = xasprintf("%s/%s", spooldir, dirs[i]);
		int r = mkdir(p, 0700);

		free(p);
		if (r < 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

int
queue_dir_sync(const char *path)
{
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

int
queue_rename(const char *spooldir, const char *id, const char *from,
    const char *to)
{
	char *src, *dst;
	int r = 0;

	src = queue_path(spooldir, from, id);
	dst = queue_path(spooldir, to, id);
	if (src == NULL || dst == NULL)
		r = -EINVAL;
	else if (rename(src, dst) < 0)
		r = -errno;
	free(src);
	free(dst);
	return r;
}

int
queue_move(const char *spooldir, const char *id, const char *from,
    const char *to)
{
	char *dir;
	int r;

	if ((r = queue_rename(spooldir, id, from, to)) < 0)
		return r;
	/*
	 * The target directory first: once its new entry is durable the
	 * file survives a crash; syncing the source then makes the removal
	 * of the old entry durable too.
	 */
	dir = xasprintf("%s/%s", spooldir, to);
	r = queue_dir_sync(dir);
	free(dir);
	if (r == 0) {
		dir = xasprintf("%s/%s", spooldir, from);
		r = queue_dir_sync(dir);
		free(dir);
	}
	return r;
}

int
queue_remove(const char *spooldir, const char *dir, const char *id)
{
	char *path = queue_path(spooldir, dir, id);
	int r = 0;

	if (path == NULL)
		return -EINVAL;
	if (unlink(path) < 0)
		r = -errno;
	free(path);
	return r;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
queue_scan(const char *spooldir, const char *dir, char ***ids_r,
    size_t *n_r)
{
	struct dirent *de;
	char **ids = NULL, *path;
	size_t n = 0, cap = 0;
	DIR *d;

	*ids_r = NULL;
	if (n_r != NULL)
		*n_r = 0;
	if (!queue_dir_valid(dir))
		return -EINVAL;
	path = xasprintf("%s/%s", spooldir, dir);
	d = opendir(path);
	free(path);
	if (d == NULL)
		return -errno;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (!queue_id_valid(de->d_name))
			continue;
		if (n + 1 >= cap) {
			cap = cap ? cap * 2 : 64;
			ids = xreallocarray(ids, cap, sizeof(*ids));
		}
		ids[n++] = xstrdup(de->d_name);
		errno = 0;
	}
	if (errno != 0) {
		int r = -errno;

		closedir(d);
		ids = ids ? ids : xcalloc(1, sizeof(*ids));
		ids[n] = NULL;
		queue_ids_free(&ids);
		return r;
	}
	closedir(d);
	if (ids == NULL)
		ids = xcalloc(1, sizeof(*ids));
	ids[n] = NULL;
	qsort(ids, n, sizeof(*ids), cmp_str);
	*ids_r = ids;
	if (n_r != NULL)
		*n_r = n;
	return 0;
}

void
queue_ids_free(char ***ids)
{
	if (*ids == NULL)
		return;
	for (char **p = *ids; *p != NULL; p++)
		free(*p);
	free(*ids);
	*ids = NULL;
}

int
queue_tmp_cleanup(const char *spooldir, time_t max_age, time_t now,
    size_t *removed_r)
{
	struct dirent *de;
	struct stat st;
	size_t removed = 0;
	char *path;
	DIR *d;
	int dfd, r = 0;

	if (removed_r != NULL)
		*removed_r = 0;
	path = xasprintf("%s/%s", spooldir, QUEUE_TMP);
	d = opendir(path);
	free(path);
	if (d == NULL)
		return -errno;
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;	/* gone meanwhile */
		if (!S_ISREG(st.st_mode) || st.st_mtime > now - max_age)
			continue;
		if (unlinkat(dfd, de->d_name, 0) < 0) {
			if (errno != ENOENT && r == 0)
				r = -errno;
			continue;
		}
		removed++;
	}
	closedir(d);
	if (removed_r != NULL)
		*removed_r = removed;
	return r;
}

int
queue_space_ok(const char *spooldir, uint64_t needed, uint64_t minfree)
{
	struct statvfs sv;
	uint64_t avail;

	if (statvfs(spooldir, &sv) < 0)
		return -errno;
	avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	if (needed > UINT64_MAX - minfree || avail < needed + minfree)
		return 0;
	/* A file system out of inodes is as full as one out of blocks. */
	if (sv.f_files != 0 && sv.f_favail < 16)
		return 0;
	return 1;
}
