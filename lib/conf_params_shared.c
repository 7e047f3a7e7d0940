/*
 * conf_params_shared.c - parameters every pochta program reads (see
 * conf_params.h). Paths default to the installed layout; `pochta init`
 * writes absolute paths for its instance.
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_shared[] = {
	{"config_directory", CONF_STR, "", 0, 0,
	    "directory of pochta.conf and master.conf (set by -c, read-only)"},
	{"queue_directory", CONF_STR, "/var/spool/pochta", 0, 0,
	    "the spool: queue directories, private/ and public/ sockets, pid/"},
	{"mail_directory", CONF_STR, "/var/mail/pochta", 0, 0,
	    "root of the mail store; relative mailbox paths start here"},
	{"daemon_directory", CONF_STR, POCHTA_LIBEXECDIR, 0, 0,
	    "where master finds the daemon programs named in master.conf"},
	{"log_target", CONF_STR, "syslog", 0, 0,
	    "stderr, syslog, syslog:FACILITY, or an absolute file path"},
	{"myhostname", CONF_STR, "", 0, 0,
	    "this host's fully qualified name (empty: from gethostname)"},
	{"mydomain", CONF_STR, "localdomain", 0, 0,
	    "the domain this host is in"},
	{"mydestination", CONF_LIST, "$myhostname, localhost", 0, 0,
	    "domains delivered to local mailboxes"},
	{"mail_owner", CONF_STR, "pochta", 0, 0,
	    "user the spool belongs to and queue daemons run as"},
	{"mail_store_owner", CONF_STR, "vmail", 0, 0,
	    "user the mail store belongs to and mailbox daemons run as"},
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
