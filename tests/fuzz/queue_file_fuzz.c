/*
 * queue_file_fuzz.c - libFuzzer harness for the queue file reader
 * (lib/queue_file): any bytes must give a clean parse or a clean -EBADMSG
 * with a message, never a crash, over-read or leak. Link with
 * -fsanitize=fuzzer,address and lib/queue*.c lib/buf.c lib/xalloc.c
 * lib/log.c.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "queue_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_file *qf = NULL;
	const char *err = NULL;
	char buf[4096];
	int fd;

	fd = memfd_create("queue", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	if (queue_file_fdopen(fd, 0, &qf, &err) < 0) {
		if (err == NULL)
			abort();
		close(fd);
		return 0;
	}
	const struct queue_env *env = queue_file_env(qf);
	if (env->sender == NULL || env->nrcpt == 0)
		abort();
	for (uint64_t off = 0;;) {
		ssize_t n = queue_file_read_msg(qf, buf, sizeof(buf), off);

		if (n <= 0)
			break;
		off += (uint64_t)n;
	}
	queue_file_free(&qf);
	return 0;
}
