/*
 * conf.h - pochta.conf: "name = value" lines, '#' comments, indented
 * continuation lines, $name, ${name}, ${name?text} and ${name:text}
 * expansion as in Postfix, -o name=value overrides.
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
 * "name=value" (the -o option). Every value is expanded, then checked
 * against its declared type and bounds. The parameter config_directory is
 * always DIR (without trailing slashes) and cannot be set. A name set twice
 * takes the last value (as Postfix does). Unknown names, $name references
 * to undeclared parameters, expansion loops, bad values, control
 * characters (other than tab) in a value, lines without '=', NUL bytes, and
 * the limits below are errors: the whole load fails.
 * Returns 0 and a new *conf_r, or a negative errno and *errstr_r: a malloc'd
 * message of the form "path:line: text" (for an override, "-o name: text";
 * for an I/O error, "path: text"). -ENOENT: no pochta.conf.
 */
int conf_load(const char *dir, char *const *overrides, size_t n_overrides,
    struct conf **conf_r, char **errstr_r);

/*
 * The same for text already in memory (len bytes) instead of
 * DIR/pochta.conf; path is only used in messages. `pochta conf -e` checks
 * the edited text with this before it writes it, and text "" gives the
 * defaults.
 */
int conf_load_text(const char *dir, const char *path, const char *text,
    size_t len, char *const *overrides, size_t n_overrides,
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
 * conf_size bytes (k, m, g suffixes, powers of 1024). conf_str also takes
 * a CONF_LIST parameter (the whole list as one string).
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

/* The value after expansion, as text, whatever the parameter's type. */
const char *conf_value(const struct conf *conf, const char *name);

/*
 * Limits: the largest pochta.conf read, and the longest logical line (a
 * setting with its continuation lines) and expanded value.
 */
#define CONF_FILE_MAX (4 * 1024 * 1024)
#define CONF_LINE_MAX (64 * 1024)
#define CONF_VALUE_MAX (128 * 1024)

/*
 * What one physical line of pochta.conf is (without its LF; a trailing CR
 * counts as white space). Blank and comment lines may appear anywhere, even
 * between a setting and its continuation lines, and are ignored.
 */
enum conf_line_kind {
	CONF_LINE_BLANK,	/* empty or only white space */
	CONF_LINE_COMMENT,	/* the first non-blank character is '#' */
	CONF_LINE_CONT,		/* starts with white space: continues a value */
	CONF_LINE_SETTING,	/* anything else: starts "name = value" */
};
enum conf_line_kind conf_line_kind(const char *line, size_t len);

/*
 * The length of the parameter name at the start of a CONF_LINE_SETTING
 * line: the bytes before the first white space or '='.
 */
size_t conf_line_name_len(const char *line, size_t len);

#endif
