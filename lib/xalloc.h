/*
 * xalloc.h - allocation that cannot fail. Out of memory is not an error a
 * mail daemon can recover from half-way through a request, so these log and
 * exit (the master restarts the worker); callers never check for NULL.
 */
#ifndef POCHTA_XALLOC_H
#define POCHTA_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

/* malloc(size); size 0 returns a unique pointer. Never returns NULL. */
void *xmalloc(size_t size);

/* calloc(n, size) with overflow check. Never returns NULL. */
void *xcalloc(size_t n, size_t size);

/* realloc(ptr, size); ptr may be NULL. Never returns NULL. */
void *xrealloc(void *ptr, size_t size);

/* reallocarray: n * size with overflow check. */
void *xreallocarray(void *ptr, size_t n, size_t size);

/* strdup(s). */
char *xstrdup(const char *s);

/* A NUL-terminated copy of at most n bytes of s. */
char *xstrndup(const char *s, size_t n);

/* A new string formatted like printf. Caller frees. */
char *xasprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));

#endif
