/*
 * conf_params.h - the declaration of every pochta.conf parameter. One table
 * for shared parameters and one per program; conf_params_all() walks them
 * all. Adding a parameter means adding one row to one table, with its
 * default and its one-line description: pochta.conf(5) is checked against
 * these tables by `make test`.
 */
#ifndef POCHTA_CONF_PARAMS_H
#define POCHTA_CONF_PARAMS_H

enum conf_type {
	CONF_STR,	/* any text, after $name expansion */
	CONF_INT,	/* decimal integer within [min, max] */
	CONF_BOOL,	/* yes/no (also true/false, on/off, 1/0) */
	CONF_TIME,	/* seconds; suffixes s m h d w; within [min, max] */
	CONF_SIZE,	/* bytes; suffixes k m g (x1024); within [min, max] */
	CONF_LIST,	/* items separated by commas and/or white space */
};

struct conf_param {
	const char *name;
	enum conf_type type;
	const char *def;	/* default, as text; may use $other */
	long long min, max;	/* bounds for INT/TIME/SIZE; max 0: none */
	const char *desc;	/* one line for `pochta conf -d -v` and man */
};

struct conf_param_group {
	const char *name;	/* "shared", "master", "smtpd", ... */
	const struct conf_param *params;	/* ends with a NULL name */
};

/* The groups, ending with a NULL name. */
extern const struct conf_param_group conf_param_groups[];

/* Per-group tables, each in lib/conf_params_<group>.c. */
extern const struct conf_param conf_params_shared[];
extern const struct conf_param conf_params_master[];
extern const struct conf_param conf_params_smtpd[];
extern const struct conf_param conf_params_qmgr[];
extern const struct conf_param conf_params_smtp_out[];
extern const struct conf_param conf_params_local[];
extern const struct conf_param conf_params_pop3d[];
extern const struct conf_param conf_params_imapd[];

/* The declaration of name, or NULL. */
const struct conf_param *conf_param_find(const char *name);

#endif
