/*
 * pochta.c - the administration command: dispatches `pochta [-c DIR] [-v]
 * COMMAND [ARGS]` to the subcommand's module (tools/pochta_*.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pochta.h"

static const struct pochta_cmd commands[] = {
	{"init", pochta_init_main,
	    "init DIR [--domain D] [--listen ADDR] [--port-base N] [--force]"},
	{"start", pochta_start_main, "start [-f]"},
	{"stop", pochta_stop_main, "stop"},
	{"reload", pochta_reload_main, "reload"},
	{"status", pochta_status_main, "status [--json]"},
	{"conf", pochta_conf_main,
	    "conf [-dnvx] [-o name=value]... [NAME...] | conf -e NAME=VALUE... "
	    "| conf -X NAME... | conf check"},
	{"map", pochta_map_main,
	    "map build FILE | map query TABLE KEY | map list TABLE"},
	{"user", pochta_user_main,
	    "user add|del|passwd|list [USER] [--password-stdin]"},
	{"queue", pochta_queue_main,
	    "queue list [--json] | queue show ID | queue flush | "
	    "queue hold|release|delete|requeue ID|ALL"},
	{"sendmail", pochta_sendmail_main,
	    "sendmail [-itv] [-f SENDER] [-F NAME] [RECIPIENT...] < MESSAGE"},
	{NULL, NULL, NULL},
};

void
pochta_err(const char *fmt, ...)
{
	va_list ap;

	fputs("pochta: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int
usage(FILE *fp)
{
	fprintf(fp, "usage: pochta [-c DIR] [-v] COMMAND [ARGS]\n");
	for (const struct pochta_cmd *c = commands; c->name != NULL; c++)
		fprintf(fp, "       pochta %s\n", c->usage);
	return EXIT_USAGE;
}

int
main(int argc, char **argv)
{
	const char *confdir = NULL;
	const char *name = strrchr(argv[0], '/');
	int ch;

	/* Installed as sendmail(1): its own options, no subcommand. */
	name = name != NULL ? name + 1 : argv[0];
	if (strcmp(name, "sendmail") == 0)
		return pochta_sendmail_main(argc, argv, NULL);
	/* Installed as mailq(1): the queue listing, options of its own. */
	if (strcmp(name, "mailq") == 0)
		return pochta_queue_main(argc, argv, NULL);
	log_set_program("pochta");
	/* '+': stop at the subcommand, which parses its own options. */
	while ((ch = getopt(argc, argv, "+c:vh")) != -1) {
		switch (ch) {
		case 'c':
			confdir = optarg;
			break;
		case 'v':
			log_set_verbose(1);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usage(stderr);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		return usage(stderr);
	for (const struct pochta_cmd *c = commands; c->name != NULL; c++) {
		if (strcmp(c->name, argv[0]) == 0) {
			/* 0: a full getopt reset, so the subcommand's own
			 * option string decides argument ordering (glibc). */
			optind = 0;
			return c->run(argc, argv, confdir);
		}
	}
	pochta_err("unknown command '%s'", argv[0]);
	return usage(stderr);
}
