/*
 * pochta_map.c - `pochta map build|query|list`: compile text tables to
 * LMDB, look keys up and list entries the way the daemons see them (see
 * pochta-map(8)). Exit 0 on success, 1 on a failure or a key not found,
 * 2 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "pochta.h"

static int
map_usage(void)
{
	fprintf(stderr, "usage: pochta map build FILE...\n"
	    "       pochta map query TABLE KEY...\n"
	    "       pochta map list TABLE\n");
	return EXIT_USAGE;
}

static int
map_cmd_build(int argc, char **argv)
{
	char *err = NULL;
	int ret = 0;

	if (argc < 1)
		return map_usage();
	for (int i = 0; i < argc; i++) {
		if (map_build(argv[i], &err) != 0) {
			pochta_err("map build: %s", err);
			free(err);
			err = NULL;
			ret = 1;
		}
	}
	return ret;
}

static int
map_open_table(const char *spec, struct map **map_r)
{
	char *err = NULL;

	if (map_open(spec, map_r, &err) != 0) {
		pochta_err("map: %s", err);
		free(err);
		return -1;
	}
	/* A tool runs briefly; never serve a stale copy. */
	map_set_check_interval(*map_r, 0);
	return 0;
}

static int
map_cmd_query(int argc, char **argv)
{
	struct map *m;
	char *value;
	int ret = 0, rc;

	if (argc < 2)
		return map_usage();
	if (map_open_table(argv[0], &m) != 0)
		return 1;
	for (int i = 1; i < argc; i++) {
		rc = map_lookup(m, argv[i], &value);
		if (rc == 0) {
			printf("%s\n", value);
			free(value);
		} else {
			if (rc != -ENOENT)
				pochta_err("map query: %s: %s", argv[i],
				    strerror(-rc));
			ret = 1;
		}
	}
	map_free(&m);
	if (fflush(stdout) != 0) {
		pochta_err("map query: writing the output: %s",
		    strerror(errno));
		ret = 1;
	}
	return ret;
}

static int
map_print_entry(const char *key, const char *value, void *arg)
{
	(void)arg;
	return printf("%s\t%s\n", key, value) < 0 ? -EIO : 0;
}

static int
map_cmd_list(int argc, char **argv)
{
	struct map *m;
	int rc;

	if (argc != 1)
		return map_usage();
	if (map_open_table(argv[0], &m) != 0)
		return 1;
	rc = map_walk(m, map_print_entry, NULL);
	map_free(&m);
	if (fflush(stdout) != 0 && rc == 0)
		rc = -errno;
	if (rc != 0) {
		pochta_err("map list: %s: %s", argv[0], strerror(-rc));
		return 1;
	}
	return 0;
}

int
pochta_map_main(int argc, char **argv, const char *confdir)
{
	(void)confdir;
	if (argc < 2)
		return map_usage();
	if (strcmp(argv[1], "build") == 0)
		return map_cmd_build(argc - 2, argv + 2);
	if (strcmp(argv[1], "query") == 0)
		return map_cmd_query(argc - 2, argv + 2);
	if (strcmp(argv[1], "list") == 0)
		return map_cmd_list(argc - 2, argv + 2);
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		map_usage();
		return 0;
	}
	pochta_err("map: unknown subcommand '%s'", argv[1]);
	return map_usage();
}
