/*
 * conf_params_master.c - parameters of master (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_master[] = {
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
