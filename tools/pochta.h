/*
 * pochta.h - the pochta command's subcommands. Each takes the arguments from
 * the subcommand's name on (argv[0] is "conf", "start", ...) and the
 * configuration directory from -c (NULL: conf_default_dir()). Exit codes:
 * 0 success, 1 failure, 2 usage error; errors go to stderr prefixed with
 * "pochta: ", data to stdout.
 */
#ifndef POCHTA_TOOL_H
#define POCHTA_TOOL_H

#define EXIT_USAGE 2

struct pochta_cmd {
	const char *name;
	int (*run)(int argc, char **argv, const char *confdir);
	const char *usage;	/* one line, without "pochta " */
};

int pochta_init_main(int argc, char **argv, const char *confdir);
int pochta_start_main(int argc, char **argv, const char *confdir);
int pochta_stop_main(int argc, char **argv, const char *confdir);
int pochta_reload_main(int argc, char **argv, const char *confdir);
int pochta_status_main(int argc, char **argv, const char *confdir);
int pochta_conf_main(int argc, char **argv, const char *confdir);
int pochta_map_main(int argc, char **argv, const char *confdir);
int pochta_user_main(int argc, char **argv, const char *confdir);
/* Also mailq(1), when argv[0]'s last component is "mailq". */
int pochta_queue_main(int argc, char **argv, const char *confdir);
/* sendmail(1) exits with sysexits(3) codes, not the ones above. */
int pochta_sendmail_main(int argc, char **argv, const char *confdir);

/* Print "pochta: " and the message to stderr. */
void pochta_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
