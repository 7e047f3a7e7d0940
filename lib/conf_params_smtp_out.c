/*
 * conf_params_smtp_out.c - parameters of smtp-out (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_smtp_out[] = {
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
