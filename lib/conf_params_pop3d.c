/*
 * conf_params_pop3d.c - parameters of pop3d (see conf_params.h). The pop3s
 * service in master.conf sets pop3d_tls_wrappermode=yes.
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_pop3d[] = {
	{"pop3d_tls_enable", CONF_BOOL, "yes", 0, 0,
	    "offer STLS (RFC 2595) with tls_cert_file and tls_key_file"},
	{"pop3d_tls_wrappermode", CONF_BOOL, "no", 0, 0,
	    "TLS from the first byte (port 995, RFC 8314)"},
	{"pop3d_plaintext_auth", CONF_BOOL, "no", 0, 0,
	    "allow USER/PASS and AUTH without TLS from any client"},
	{"pop3d_plaintext_auth_loopback", CONF_BOOL, "yes", 0, 0,
	    "allow USER/PASS and AUTH without TLS from loopback clients"},
	{"pop3d_timeout", CONF_TIME, "10m", 1, 86400,
	    "idle time before autologout (RFC 1939 3 asks for 10m or more)"},
	{"pop3d_login_delay", CONF_TIME, "0s", 0, 86400,
	    "least time between logins to one mailbox, LOGIN-DELAY (0: none)"},
	{"pop3d_hard_error_limit", CONF_INT, "20", 1, 1000,
	    "client errors after which the session is closed"},
	{"pop3d_auth_failure_limit", CONF_INT, "10", 1, 10000,
	    "failed logins per client address before logins are refused"},
	{"pop3d_connection_limit", CONF_INT, "1000", 1, 1000000,
	    "concurrent sessions per worker"},
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
