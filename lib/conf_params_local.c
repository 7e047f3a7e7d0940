/*
 * conf_params_local.c - parameters of local-deliver (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_local[] = {
	{"local_plus_folders", CONF_BOOL, "no", 0, 0,
	    "deliver user+tag mail into folder tag when that folder exists"},
	{"local_quota_bounce", CONF_BOOL, "no", 0, 0,
	    "bounce (5.2.2) instead of defer (4.2.2) mail to a full mailbox"},
	{"local_request_recipients", CONF_INT, "1000", 1, 100000,
	    "most recipients local-deliver accepts in one request"},
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
