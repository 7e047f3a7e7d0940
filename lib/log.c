/*
 * log.c - one-line-per-write logging to stderr, a file or syslog (log.h).
 * Errors writing a log line are ignored: logging must never take a daemon
 * down.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096

enum log_target { TARGET_STDERR, TARGET_FILE, TARGET_SYSLOG };

static char log_program[64] = "pochta";
static char log_ident[80] = "pochta";
static enum log_target log_target = TARGET_STDERR;
static int log_fd = -1;
static int log_is_verbose;

void
log_set_program(const char *program)
{
	snprintf(log_program, sizeof(log_program), "%s", program);
	snprintf(log_ident, sizeof(log_ident), "pochta/%s", program);
	if (strcmp(program, "pochta") == 0)
		snprintf(log_ident, sizeof(log_ident), "pochta");
}

static int
syslog_facility(const char *name)
{
	static const struct {
		const char *name;
		int facility;
	} facilities[] = {
		{"mail", LOG_MAIL}, {"daemon", LOG_DAEMON},
		{"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},
		{"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
		{"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
		{"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
	};
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcmp(facilities[i].name, name) == 0)
			return facilities[i].facility;
	return -1;
}

int
log_open(const char *target, const char **errstr_r)
{
	if (strcmp(target, "stderr") == 0) {
		log_close();
		return 0;
	}
	if (strcmp(target, "syslog") == 0 ||
	    strncmp(target, "syslog:", 7) == 0) {
		int facility = LOG_MAIL;

		if (target[6] == ':' &&
		    (facility = syslog_facility(target + 7)) < 0) {
			*errstr_r = "unknown syslog facility";
			return -EINVAL;
		}
		log_close();
		openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
		log_target = TARGET_SYSLOG;
		return 0;
	}
	if (target[0] != '/') {
		*errstr_r = "log target must be stderr, syslog[:facility] "
			    "or an absolute path";
		return -EINVAL;
	}
	int fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		int err = errno;
		*errstr_r = strerror(err);
		return -err;
	}
	log_close();
	log_fd = fd;
	log_target = TARGET_FILE;
	return 0;
}

void
log_close(void)
{
	if (log_target == TARGET_SYSLOG)
		closelog();
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	log_target = TARGET_STDERR;
}

void
log_set_verbose(int verbose)
{
	log_is_verbose = verbose;
}

int
log_verbose(void)
{
	return log_is_verbose;
}

static const char *
level_prefix(enum log_level level)
{
	switch (level) {
	case LOGL_DEBUG:
	case LOGL_INFO:
		return "";
	case LOGL_WARN:
		return "warning: ";
	case LOGL_ERROR:
		return "error: ";
	}
	return "";
}

/* Escape control characters in place-copy, so one call is one line. */
static size_t
sanitize(char *dst, size_t dstsize, const char *src)
{
	size_t n = 0;

	for (; *src != '\0' && n + 5 < dstsize; src++) {
		unsigned char c = (unsigned char)*src;

		if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(dst + n, dstsize - n, "\\x%02x", c);
		} else {
			dst[n++] = (char)c;
		}
	}
	dst[n] = '\0';
	return n;
}

static void
emit(enum log_level level, const char *prefix, const char *fmt, va_list ap)
{
	char text[LOG_LINE_MAX], clean[LOG_LINE_MAX], line[LOG_LINE_MAX + 200];
	int saved_errno = errno;

	vsnprintf(text, sizeof(text), fmt, ap);
	sanitize(clean, sizeof(clean), text);

	if (log_target == TARGET_SYSLOG) {
		static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING,
		    LOG_ERR};
		syslog(prio[level], "%s%s", prefix, clean);
		errno = saved_errno;
		return;
	}

	struct timeval tv;
	struct tm tm;
	char stamp[40], zone[8];

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	int len = snprintf(line, sizeof(line), "%s.%06ld%.3s:%s %s[%ld]: %s%s\n",
	    stamp, (long)tv.tv_usec, zone, zone + 3, log_ident,
	    (long)getpid(), prefix, clean);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line)) {
		len = sizeof(line) - 1;
		line[len - 1] = '\n';
	}
	ssize_t r = write(log_target == TARGET_FILE ? log_fd : STDERR_FILENO,
	    line, (size_t)len);
	(void)r;
	errno = saved_errno;
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	if (level == LOGL_DEBUG && !log_is_verbose)
		return;
	emit(level, level_prefix(level), fmt, ap);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOGL_ERROR, "fatal: ", fmt, ap);
	va_end(ap);
	exit(1);
}

void
panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(LOGL_ERROR, "panic: ", fmt, ap);
	va_end(ap);
	abort();
}
