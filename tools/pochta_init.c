/* pochta_init.c - placeholder until the subcommand is written. */
#include "pochta.h"

int
pochta_init_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("init: not built yet");
	return 1;
}

