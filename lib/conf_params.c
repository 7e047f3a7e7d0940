/*
 * conf_params.c - the list of parameter tables and lookup by name.
 */
#include <string.h>

#include "conf_params.h"

const struct conf_param_group conf_param_groups[] = {
	{"shared", conf_params_shared},
	{"master", conf_params_master},
	{"smtpd", conf_params_smtpd},
	{"qmgr", conf_params_qmgr},
	{"smtp-out", conf_params_smtp_out},
	{"local-deliver", conf_params_local},
	{"pop3d", conf_params_pop3d},
	{"imapd", conf_params_imapd},
	{NULL, NULL},
};

const struct conf_param *
conf_param_find(const char *name)
{
	for (const struct conf_param_group *g = conf_param_groups;
	     g->name != NULL; g++)
		for (const struct conf_param *p = g->params; p->name != NULL;
		     p++)
			if (strcmp(p->name, name) == 0)
				return p;
	return NULL;
}
