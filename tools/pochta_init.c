/*
 * pochta_init.c - `pochta init DIR`: a complete, runnable instance in one
 * directory: conf/ (pochta.conf with absolute paths, master.conf, tables,
 * a self-signed certificate), spool/, mail/ and log/. Services whose daemon
 * is not installed are written commented out. An existing instance is only
 * overwritten with --force.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf_params.h"
#include "map.h"
#include "pochta.h"
#include "tls.h"
#include "xalloc.h"

#define CERT_DAYS 3650

struct init_opts {
	const char *dir;
	const char *domain;
	const char *listen;
	long port_base;
	int force;
};

static const struct {
	const char *name;
	int port;
	const char *user;	/* mail_owner or mail_store_owner */
	const char *prog;
	const char *args;
} inet_services[] = {
	{"smtp", 25, "pochta", "smtpd", ""},
	{"submission", 587, "pochta", "smtpd",
	    " -o smtpd_auth_required=yes -o smtpd_tls_security_level=encrypt"},
	{"smtps", 465, "pochta", "smtpd",
	    " -o smtpd_auth_required=yes -o smtpd_tls_wrappermode=yes"},
	{"pop3", 110, "vmail", "pop3d", ""},
	{"pop3s", 995, "vmail", "pop3d", " -o pop3d_tls_wrappermode=yes"},
	{"imap", 143, "vmail", "imapd", ""},
	{"imaps", 993, "vmail", "imapd", " -o imapd_tls_wrappermode=yes"},
};

static const struct {
	const char *name;
	const char *path;
	const char *user;
	const char *prog;
} unix_services[] = {
	{"qmgr", "private/qmgr", "pochta", "qmgr"},
	{"local", "private/local", "vmail", "local-deliver"},
	{"smtp-out", "private/smtp-out", "pochta", "smtp-out"},
	{"submit", "public/submit", "pochta", "smtpd"},
};

static int
mkdir_p(const char *path, mode_t mode)
{
	char *copy = xstrdup(path);

	for (char *p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
			free(copy);
			return -errno;
		}
		*p = '/';
	}
	free(copy);
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
write_file(const char *path, const char *text, mode_t mode)
{
	char *tmp = xasprintf("%s.tmp", path);
	FILE *fp;
	int ok;

	if ((fp = fopen(tmp, "w")) == NULL) {
		pochta_err("%s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	ok = fputs(text, fp) >= 0 && fchmod(fileno(fp), mode) == 0;
	ok = fclose(fp) == 0 && ok && rename(tmp, path) == 0;
	if (!ok) {
		pochta_err("%s: %s", path, strerror(errno));
		unlink(tmp);
	}
	free(tmp);
	return ok ? 0 : -1;
}

/* Where the daemons are: beside this pochta binary if master is there. */
static char *
daemon_directory(void)
{
	char exe[PATH_MAX], *dir, *master;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		dir = dirname(exe);
		master = xasprintf("%s/master", dir);
		if (access(master, X_OK) == 0) {
			free(master);
			return xstrdup(dir);
		}
		free(master);
	}
	return xstrdup(POCHTA_LIBEXECDIR);
}

/* One "name = value" line, if this build declares the parameter. */
static void
param(struct buf *b, const char *name, const char *value)
{
	if (conf_param_find(name) != NULL)
		buf_printf(b, "%s = %s\n", name, value);
}

static int
write_pochta_conf(const struct init_opts *o, const char *confdir,
    const char *daemons)
{
	struct buf b;
	char *v;
	int r;

	buf_init(&b, 0);
	buf_printf(&b, "# pochta.conf - written by `pochta init`; see "
	    "pochta.conf(5).\n# `pochta conf -n` lists what differs from the "
	    "defaults.\n\n");
	v = xasprintf("%s/spool", o->dir);
	param(&b, "queue_directory", v);
	free(v);
	v = xasprintf("%s/mail", o->dir);
	param(&b, "mail_directory", v);
	free(v);
	param(&b, "daemon_directory", daemons);
	v = xasprintf("%s/log/pochta.log", o->dir);
	param(&b, "log_target", v);
	free(v);
	v = xasprintf("mail.%s", o->domain);
	param(&b, "myhostname", v);
	free(v);
	param(&b, "mydomain", o->domain);
	param(&b, "mydestination", "$mydomain, $myhostname, localhost");
	v = xasprintf("lmdb:%s/users", confdir);
	param(&b, "user_maps", v);
	free(v);
	v = xasprintf("lmdb:%s/aliases", confdir);
	param(&b, "alias_maps", v);
	free(v);
	v = xasprintf("%s/tls/cert.pem", confdir);
	param(&b, "tls_cert_file", v);
	free(v);
	v = xasprintf("%s/tls/key.pem", confdir);
	param(&b, "tls_key_file", v);
	free(v);
	v = xasprintf("%s/pochta.conf", confdir);
	r = write_file(v, b.data, 0644);
	free(v);
	buf_release(&b);
	return r;
}

/* A service line, commented out when its program is not installed. */
static void
service_line(struct buf *b, const char *daemons, const char *name,
    const char *type, const char *listen, const char *user,
    const char *prog, const char *args)
{
	char *path = xasprintf("%s/%s", daemons, prog);
	int present = access(path, X_OK) == 0;

	/* Root switches users only to accounts that exist. */
	if (geteuid() == 0 && getpwnam(user) == NULL)
		user = "-";
	buf_printf(b, "%s%-11s %-4s %-22s %-6s %-2d %s%s\n",
	    present ? "" : "#", name, type, listen, user, 1, prog, args);
	free(path);
}

static int
write_master_conf(const struct init_opts *o, const char *confdir,
    const char *daemons)
{
	struct buf b;
	char *path;
	int r, v6 = strchr(o->listen, ':') != NULL;

	buf_init(&b, 0);
	buf_printf(&b, "# master.conf - the services master runs; see "
	    "pochta-master.conf(5).\n# Lines starting with # are services "
	    "whose daemon is not installed yet:\n# remove the # to enable "
	    "one, then `pochta reload`.\n#\n"
	    "# name      type listen                 user   procs command "
	    "[args]\n");
	for (size_t i = 0; i < sizeof(inet_services) /
	     sizeof(inet_services[0]); i++) {
		char *listen = xasprintf(v6 ? "[%s]:%ld" : "%s:%ld", o->listen,
		    o->port_base + inet_services[i].port);

		service_line(&b, daemons, inet_services[i].name, "inet",
		    listen, inet_services[i].user, inet_services[i].prog,
		    inet_services[i].args);
		free(listen);
	}
	for (size_t i = 0; i < sizeof(unix_services) /
	     sizeof(unix_services[0]); i++)
		service_line(&b, daemons, unix_services[i].name, "unix",
		    unix_services[i].path, unix_services[i].user,
		    unix_services[i].prog, "");
	path = xasprintf("%s/master.conf", confdir);
	r = write_file(path, b.data, 0644);
	free(path);
	buf_release(&b);
	return r;
}

static int
write_tables(const struct init_opts *o, const char *confdir)
{
	char *users = xasprintf("%s/users", confdir);
	char *aliases = xasprintf("%s/aliases", confdir);
	char *text = xasprintf("# aliases - see pochta-maps(5); run "
	    "`pochta map build` on this file after editing.\n"
	    "postmaster    admin@%s\n"
	    "abuse         postmaster\n", o->domain);
	char *err = NULL;
	int r;

	r = write_file(users, "# users - managed with `pochta user`; see "
	    "pochta-maps(5).\n", 0600);
	if (r == 0)
		r = write_file(aliases, text, 0644);
	for (int i = 0; r == 0 && i < 2; i++) {
		const char *src = i == 0 ? users : aliases;
		char *db = xasprintf("%s.lmdb", src);

		if ((r = map_build_file(src, db, &err)) < 0) {
			pochta_err("%s", err);
			free(err);
		}
		free(db);
	}
	free(users);
	free(aliases);
	free(text);
	return r < 0 ? -1 : 0;
}

static int
parse_opts(int argc, char **argv, struct init_opts *o)
{
	static const struct option longopts[] = {
		{"domain", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"port-base", required_argument, NULL, 'p'},
		{"force", no_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	char *end;
	int ch;

	o->domain = "example.test";
	o->listen = "127.0.0.1";
	/* 0, not 1: glibc then forgets the '+' of pochta's own options and
	 * lets DIR come before or after the options. */
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o->domain = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'p':
			errno = 0;
			o->port_base = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || o->port_base < 0 ||
			    o->port_base + 995 > 65535) {
				pochta_err("init: bad --port-base %s", optarg);
				return -1;
			}
			break;
		case 'f':
			o->force = 1;
			break;
		default:
			return -1;
		}
	}
	if (optind != argc - 1)
		return -1;
	o->dir = argv[optind];
	if (*o->domain == '\0' || strpbrk(o->domain, " \t\n/") != NULL ||
	    *o->listen == '\0' || strpbrk(o->listen, " \t\n[]") != NULL) {
		pochta_err("init: bad --domain or --listen");
		return -1;
	}
	return 0;
}

int
pochta_init_main(int argc, char **argv, const char *confdir_opt)
{
	char resolved[PATH_MAX], *confdir = NULL, *daemons = NULL, *p;
	struct init_opts o = {0};
	char *err = NULL;
	struct stat st;
	int rc = 1;

	(void)confdir_opt;
	if (parse_opts(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: pochta init DIR [--domain D] "
		    "[--listen ADDR] [--port-base N] [--force]\n");
		return EXIT_USAGE;
	}
	if (mkdir_p(o.dir, 0755) < 0 || realpath(o.dir, resolved) == NULL) {
		pochta_err("%s: %s", o.dir, strerror(errno));
		return 1;
	}
	o.dir = resolved;
	confdir = xasprintf("%s/conf", o.dir);
	p = xasprintf("%s/pochta.conf", confdir);
	if (stat(p, &st) == 0 && !o.force) {
		pochta_err("%s: an instance exists already (--force to "
		    "overwrite it)", o.dir);
		free(p);
		goto out;
	}
	free(p);
	static const char *const dirs[] = {"conf", "conf/tls", "spool", "mail",
	    "log"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		p = xasprintf("%s/%s", o.dir, dirs[i]);
		if (mkdir_p(p, strcmp(dirs[i], "conf/tls") == 0 ? 0700 :
		    0755) < 0) {
			pochta_err("%s: %s", p, strerror(errno));
			free(p);
			goto out;
		}
		free(p);
	}
	daemons = daemon_directory();
	if (write_pochta_conf(&o, confdir, daemons) < 0 ||
	    write_master_conf(&o, confdir, daemons) < 0 ||
	    write_tables(&o, confdir) < 0)
		goto out;
	char *cert = xasprintf("%s/tls/cert.pem", confdir);
	char *key = xasprintf("%s/tls/key.pem", confdir);
	char *host = xasprintf("mail.%s", o.domain);
	int r = tls_selfsigned_create(cert, key, host, CERT_DAYS, &err);
	free(cert);
	free(key);
	free(host);
	if (r < 0) {
		pochta_err("%s", err);
		free(err);
		goto out;
	}
	printf("pochta: instance created in %s\n"
	    "pochta: start it with: pochta -c %s start\n", o.dir, confdir);
	rc = 0;
out:
	free(confdir);
	free(daemons);
	return rc;
}
