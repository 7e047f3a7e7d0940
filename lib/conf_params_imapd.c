/*
 * conf_params_imapd.c - parameters of imapd (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_imapd[] = {
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
