/*
 * conf_params_pop3d.c - parameters of pop3d (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_pop3d[] = {
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
