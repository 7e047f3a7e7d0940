/*
 * map.h - lookup tables: users, aliases, virtual domains, transports. A
 * table is a text file of "key value" lines compiled into a read-only LMDB
 * file beside it (see pochta-maps(5) for the format). Readers notice a
 * rebuilt table and reopen it. Errors are negative errno values with a
 * human message; a broken table never crashes a reader.
 */
#ifndef POCHTA_MAP_H
#define POCHTA_MAP_H

#include <stddef.h>

/* Longest physical source line, and longest value after joining
 * continuation lines; longer is an error at build time. */
#define MAP_LINE_MAX	8192
#define MAP_VALUE_MAX	65536

/* LMDB's compiled-in key limit (mdb_env_get_maxkeysize). */
#define MAP_KEY_MAX	511

/* How often, at most, a reader stat()s its file for a rebuild (ms). */
#define MAP_CHECK_INTERVAL_MS	1000

struct map;

/*
 * Split a table spec, "lmdb:/path/name" or a bare "/path/name" (which
 * means lmdb too), into the text source path (*src_r, "/path/name") and
 * the database path (*db_r, "/path/name.lmdb"), both malloc'd. Either out
 * pointer may be NULL. A spec naming another type ("pgsql:...") or an
 * empty path gives -EPROTONOSUPPORT or -EINVAL and a malloc'd *errstr_r.
 */
int map_spec_paths(const char *spec, char **src_r, char **db_r,
    char **errstr_r);

/*
 * Compile the text table src into the database db. Keys are folded to
 * lower case (addresses and domains are case-insensitive); a duplicate key
 * is an error, as is a missing value, a key over MAP_KEY_MAX bytes, a NUL
 * byte, a line over MAP_LINE_MAX or a value over MAP_VALUE_MAX bytes. The
 * database is written to a temporary file in db's directory, synced, and
 * renamed over db, and the directory is synced: readers see the old table
 * or the new one, never a mix, and a failed build leaves the old one alone.
 * The new file gets src's permission bits (and owner, when run as root).
 * Returns 0, or a negative errno and a malloc'd *errstr_r, for source
 * errors of the form "src:line: message".
 */
int map_build_file(const char *src, const char *db, char **errstr_r);

/* map_build_file() on the paths a spec names. */
int map_build(const char *spec, char **errstr_r);

/*
 * Open a table for reading. Returns 0 and a new *map_r, or a negative
 * errno and a malloc'd *errstr_r: -ENOENT when the database does not exist
 * (it has not been built), -EINVAL when the file is not a valid table
 * (garbage, truncated), -EPROTONOSUPPORT for an unknown table type.
 * A struct map is for one thread at a time.
 */
int map_open(const char *spec, struct map **map_r, char **errstr_r);

/* Close the table and set *map to NULL. NULL is allowed. */
void map_free(struct map **map);

/* The spec the table was opened with. */
const char *map_spec(const struct map *map);

/*
 * Change how often the reader checks for a rebuilt table (milliseconds;
 * 0 checks before every lookup, for tools and tests).
 */
void map_set_check_interval(struct map *map, unsigned int ms);

/*
 * Look key up (folded to lower case first). Returns 0 and a malloc'd,
 * NUL-terminated copy of the value in *value_r (caller frees), -ENOENT when
 * the key is absent, or -EIO when the database cannot be read (logged).
 * At most every check interval it first stat()s the file and, if it was
 * replaced, reopens it; if the file vanished or the new one is broken it
 * keeps using the old one and logs that once.
 */
int map_lookup(struct map *map, const char *key, char **value_r);

/*
 * Call fn for every entry in key order, with NUL-terminated key and value
 * that live only during the call. A non-zero return from fn stops the walk
 * and is returned; otherwise 0, or -EIO on a read error.
 */
int map_walk(struct map *map,
    int (*fn)(const char *key, const char *value, void *arg), void *arg);

/*
 * A parameter such as user_maps names a list of tables, searched in order.
 * map_list_open opens all n specs (n may be 0: every lookup is -ENOENT);
 * any one failing fails the whole with its message. The list owns its
 * tables; it is for one thread at a time, as a single table is.
 */
struct map_list;

int map_list_open(char *const *specs, size_t n, struct map_list **list_r,
    char **errstr_r);

/* Free the list and its tables; set *list to NULL. NULL is allowed. */
void map_list_free(struct map_list **list);

/* The number of tables in the list, and the i-th of them. */
size_t map_list_count(const struct map_list *list);
struct map *map_list_get(const struct map_list *list, size_t i);

/*
 * map_lookup() in each table in turn; the first that has key answers.
 * Returns 0 and *value_r (caller frees), -ENOENT when no table has it, or
 * -EIO when a table cannot be read (later tables are not consulted, so a
 * broken table never lets a lower-priority entry win).
 */
int map_list_lookup(struct map_list *list, const char *key, char **value_r);

#endif
