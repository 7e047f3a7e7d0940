/*
 * log.h - logging for every pochta program. A line is
 *   pochta/PROGRAM[PID]: [warning: |error: |fatal: |panic: ]TEXT
 * written with one write(2) so processes sharing a log file never interleave
 * (on stderr and files it is prefixed by an ISO 8601 local timestamp with
 * microseconds). Text about a message or session starts with its ID and uses
 * key=value pairs. Control characters in the text are escaped, so a client
 * cannot forge log lines. Safe to call from libuv thread-pool threads.
 */
#ifndef POCHTA_LOG_H
#define POCHTA_LOG_H

#include <stdarg.h>

enum log_level {
	LOGL_DEBUG,
	LOGL_INFO,
	LOGL_WARN,
	LOGL_ERROR,
};

/*
 * Name the program ("smtpd") for every following line; before this the name
 * is "pochta". The string is copied.
 */
void log_set_program(const char *program);

/*
 * Send lines to target: "stderr", "syslog" (facility mail, or the one
 * given as "syslog:local0"), or an absolute file path opened for append.
 * Returns 0, or a negative errno with *errstr_r set (the old target stays).
 */
int log_open(const char *target, const char **errstr_r);

/* Close the current target; lines go to stderr until the next log_open. */
void log_close(void);

/* Whether log_debug() lines are written (the -v flag, or a parameter). */
void log_set_verbose(int verbose);
int log_verbose(void);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_debug(...) \
	do { \
		if (log_verbose()) \
			log_msg(LOGL_DEBUG, __VA_ARGS__); \
	} while (0)
#define log_info(...) log_msg(LOGL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOGL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)

/*
 * Startup, configuration or environment errors, and malformed IPC from our
 * own processes: log and exit(1). Never for bad input from a network client.
 */
_Noreturn void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* A broken invariant: log and abort() for a core dump. */
_Noreturn void panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif
