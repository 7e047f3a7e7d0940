/* pochta_conf.c - placeholder until the subcommand is written. */
#include "pochta.h"

int
pochta_conf_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("conf: not built yet");
	return 1;
}

