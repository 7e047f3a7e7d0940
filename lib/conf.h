/*
 * conf.h - pochta.conf: "name = value" lines, '#' comments, indented
 * continuation lines, $name and ${name} expansion, -o name=value overrides.
 * Every parameter is declared once, in a table (conf_params.h); that table
 * drives parsing and validation (unknown name or bad value: "file:line:
 * message"), the typed getters, `pochta conf -d/-n`, and pochta.conf(5).
 */
#ifndef POCHTA_CONF_H
#define POCHTA_CONF_H

#include <stddef.h>

#include "conf_params.h"

struct conf;

/*
 * The configuration directory to use when no -c was given: $POCHTA_CONF if
 * set and non-empty, else the installed one. Never NULL; not to be freed.
 */
const char *conf_default_dir(void);

/*
 * Read DIR/pochta.conf, then apply overrides[0..n_overrides-1], each
 * "name=value" (the -o option). Every value is checked against its declared
 * type and bounds. The parameter config_directory is always DIR.
 * Returns 0 and a new *conf_r, or a negative errno and *errstr_r: a malloc'd
 * message of the form "path:line: text" (for an override, "-o name: text").
 */
int conf_load(const char *dir, char *const *overrides, size_t n_overrides,
    struct conf **conf_r, char **errstr_r);

/* Free the configuration and set *conf to NULL. NULL is allowed. */
void conf_free(struct conf **conf);

/* The directory this configuration was read from. */
const char *conf_dir(const struct conf *conf);

/*
 * Typed getters of a parameter's value after $name expansion. Asking for a
 * name that is not declared, or with the wrong type, is a programming error
 * (panic). Strings belong to conf and live until conf_free.
 * conf_time returns seconds (values take s, m, h, d, w suffixes),
 * conf_size bytes (k, m, g suffixes, powers of 1024).
 */
const char *conf_str(const struct conf *conf, const char *name);
long long conf_int(const struct conf *conf, const char *name);
int conf_bool(const struct conf *conf, const char *name);
long long conf_time(const struct conf *conf, const char *name);
long long conf_size(const struct conf *conf, const char *name);

/*
 * A CONF_LIST value split on commas and white space: a NULL-terminated
 * array, allocated; free with conf_list_free(). *n_r (if not NULL) gets the
 * count.
 */
char **conf_list(const struct conf *conf, const char *name, size_t *n_r);
void conf_list_free(char ***list);

/* Whether name was set in pochta.conf or by -o (not just defaulted). */
int conf_is_set(const struct conf *conf, const char *name);

/* The value as written (before expansion); the default text if unset. */
const char *conf_raw(const struct conf *conf, const char *name);

#endif
