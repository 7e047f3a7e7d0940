/*
 * conf_params_smtpd.c - parameters of smtpd (see conf_params.h). The
 * services in master.conf differ by -o overrides: submission sets
 * smtpd_tls_security_level=encrypt and smtpd_auth_required=yes, smtps sets
 * smtpd_tls_wrappermode=yes.
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_smtpd[] = {
	{"smtpd_banner", CONF_STR, "$myhostname ESMTP pochta", 0, 0,
	    "text after 220 in the greeting"},
	{"smtpd_tls_security_level", CONF_STR, "may", 0, 0,
	    "none, may (offer STARTTLS) or encrypt (require TLS before MAIL "
	    "and AUTH)"},
	{"smtpd_tls_wrappermode", CONF_BOOL, "no", 0, 0,
	    "TLS from the first byte (port 465, RFC 8314)"},
	{"smtpd_sasl_auth_enable", CONF_BOOL, "yes", 0, 0,
	    "offer AUTH PLAIN and LOGIN against user_maps"},
	{"smtpd_auth_required", CONF_BOOL, "no", 0, 0,
	    "require AUTH before MAIL (submission)"},
	{"smtpd_plaintext_auth", CONF_BOOL, "no", 0, 0,
	    "allow AUTH without TLS from non-loopback clients"},
	{"smtpd_sender_login_maps", CONF_LIST, "", 0, 0,
	    "tables of sender address to the logins allowed to use it"},
	{"smtpd_sender_login_check", CONF_BOOL, "yes", 0, 0,
	    "authenticated users may send only as their own or listed "
	    "addresses"},
	{"smtpd_recipient_limit", CONF_INT, "1000", 1, 100000,
	    "most recipients accepted in one message"},
	{"smtpd_max_line_length", CONF_INT, "998", 0, 1000000,
	    "longest message text line accepted, sans CRLF (0: any)"},
	{"smtpd_timeout", CONF_TIME, "300s", 1, 86400,
	    "idle time before the session is closed (RFC 5321 4.5.3.2)"},
	{"smtpd_hard_error_limit", CONF_INT, "20", 1, 1000,
	    "client errors after which the session is closed"},
	{"smtpd_client_connection_limit", CONF_INT, "50", 1, 100000,
	    "concurrent sessions per client address and worker"},
	{"smtpd_connection_limit", CONF_INT, "5000", 1, 1000000,
	    "concurrent sessions per worker"},
	{"smtpd_greet_pause", CONF_TIME, "0s", 0, 60,
	    "wait before the greeting; a client talking first is refused"},
	{"smtpd_vrfy_enable", CONF_BOOL, "no", 0, 0,
	    "answer VRFY from the tables instead of 252"},
	{"smtpd_peername_lookup", CONF_BOOL, "yes", 0, 0,
	    "look up the client's reverse DNS name for logs and Received"},
	{"smtpd_auth_failure_limit", CONF_INT, "10", 1, 10000,
	    "failed AUTH attempts per client address before refusing AUTH"},
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
