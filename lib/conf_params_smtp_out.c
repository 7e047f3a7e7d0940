/*
 * conf_params_smtp_out.c - parameters of smtp-out (see conf_params.h). The
 * timeouts are those of RFC 5321 4.5.3.2, with Postfix's defaults.
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_smtp_out[] = {
	{"smtp_out_port", CONF_INT, "25", 1, 65535,
	    "remote SMTP port unless the next hop names one"},
	{"smtp_helo_name", CONF_STR, "$myhostname", 0, 0,
	    "name sent in EHLO/HELO (empty: from gethostname)"},
	{"smtp_tls_security_level", CONF_STR, "may", 0, 0,
	    "outbound STARTTLS: none, may, encrypt, verify or dane"},
	{"smtp_tls_CAfile", CONF_STR, "", 0, 0,
	    "CA bundle for smtp_tls_security_level=verify (empty: system)"},
	{"smtp_connect_timeout", CONF_TIME, "30s", 1, 3600,
	    "time to wait for a TCP connection to a remote host"},
	{"smtp_helo_timeout", CONF_TIME, "300s", 1, 3600,
	    "time to wait for the greeting and the EHLO, STARTTLS, AUTH replies"},
	{"smtp_mail_timeout", CONF_TIME, "300s", 1, 3600,
	    "time to wait for the reply to MAIL FROM"},
	{"smtp_rcpt_timeout", CONF_TIME, "300s", 1, 3600,
	    "time to wait for the reply to RCPT TO"},
	{"smtp_data_init_timeout", CONF_TIME, "120s", 1, 3600,
	    "time to wait for the reply to DATA"},
	{"smtp_data_xfer_timeout", CONF_TIME, "180s", 1, 3600,
	    "time allowed to send each block of message content"},
	{"smtp_data_done_timeout", CONF_TIME, "600s", 1, 3600,
	    "time to wait for the reply to the final dot"},
	{"smtp_connection_cache_time_limit", CONF_TIME, "2s", 0, 300,
	    "how long an idle connection is kept for reuse (0: never)"},
	{"smtp_sasl_password_maps", CONF_LIST, "", 0, 0,
	    "tables of user:password keyed by next hop or host for AUTH"},
	{"smtp_recipient_limit", CONF_INT, "1000", 1, 100000,
	    "most recipients taken in one delivery request"},
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
