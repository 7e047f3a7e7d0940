/*
 * conf_params_smtpd.c - parameters of smtpd (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_smtpd[] = {
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
