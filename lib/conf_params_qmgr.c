/*
 * conf_params_qmgr.c - parameters of qmgr (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_qmgr[] = {
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
