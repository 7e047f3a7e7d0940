/*
 * master_conf.h - master.conf, the service table: one service a line,
 * "name type listen user procs command [args...]", '#' comment lines, blank
 * lines, and indented continuation lines. Read by master and by
 * `pochta conf check`; the format is described in pochta-master.conf(5).
 */
#ifndef POCHTA_MASTER_CONF_H
#define POCHTA_MASTER_CONF_H

#include <stddef.h>

/* The largest master.conf accepted, and the most words on one service. */
#define MASTER_CONF_MAX_SIZE (1024 * 1024)
#define MASTER_CONF_MAX_WORDS 256
#define MASTER_CONF_MAX_PROCS 1000

enum master_service_type {
	MASTER_SERVICE_INET,
	MASTER_SERVICE_UNIX,
};

struct master_service {
	char *name;		/* unique within the file */
	enum master_service_type type;
	char *listen;		/* as written */
	/*
	 * inet: host is an IPv4 or IPv6 literal (without brackets), or NULL
	 * for the wildcard ("*:port" or a bare port: IPv4 and IPv6).
	 * unix: host is NULL and port 0; listen is "private/x" or "public/x".
	 */
	char *host;
	int port;
	char *user;		/* NULL for "-": the master's own user */
	char *chroot;		/* from "user:/dir", or NULL */
	int procs;		/* 1..MASTER_CONF_MAX_PROCS */
	char **argv;		/* command, then args; NULL-terminated */
	size_t argc;		/* at least 1 */
	int line;		/* where it was defined */
};

struct master_conf;

/*
 * Read and check path. Unless check_users is 0, a user column naming no
 * account is an error (master passes geteuid() == 0: only root switches
 * users). Returns 0 and a new *conf_r, or a negative errno and *errstr_r
 * (malloc'd, "path:line: message", or "path: message" for I/O errors).
 */
int master_conf_load(const char *path, int check_users,
    struct master_conf **conf_r, char **errstr_r);

/*
 * The same for text already in memory (len bytes, NUL bytes are an error);
 * path is only used in messages.
 */
int master_conf_parse(const char *path, const char *text, size_t len,
    int check_users, struct master_conf **conf_r, char **errstr_r);

/* Free the table and set *conf to NULL. NULL is allowed. */
void master_conf_free(struct master_conf **conf);

/* The number of services, and the i-th in file order (i < count). */
size_t master_conf_count(const struct master_conf *conf);
const struct master_service *master_conf_service(
    const struct master_conf *conf, size_t i);

/* The service called name, or NULL. */
const struct master_service *master_conf_find(const struct master_conf *conf,
    const char *name);

/*
 * Whether two services are the same in every column (the line number does
 * not count): on reload an equal service keeps its workers.
 */
int master_service_equal(const struct master_service *a,
    const struct master_service *b);

/*
 * Whether the two services listen on the same address, so the new one can
 * take over the old one's sockets on reload.
 */
int master_service_same_listen(const struct master_service *a,
    const struct master_service *b);

/* A deep copy, and its destructor (sets *svc to NULL; NULL is allowed). */
struct master_service *master_service_dup(const struct master_service *svc);
void master_service_free(struct master_service **svc);

#endif
