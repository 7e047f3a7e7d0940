/*
 * conf_params_local.c - parameters of local-deliver (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_local[] = {
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
