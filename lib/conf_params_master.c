/*
 * conf_params_master.c - parameters of master (see conf_params.h): the
 * shutdown grace time and the restart throttle of crashing services.
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_master[] = {
	{"master_grace_time", CONF_TIME, "10s", 1, 3600,
	    "how long stopped workers may finish before they get SIGKILL"},
	{"master_backoff_min", CONF_TIME, "1s", 1, 3600,
	    "first delay before restarting a service that crashed quickly"},
	{"master_backoff_max", CONF_TIME, "60s", 1, 86400,
	    "the restart delay doubles up to this limit"},
	{"master_stable_time", CONF_TIME, "10s", 1, 86400,
	    "a worker that ran this long resets its service's restart delay"},
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
