/* pochta_map.c - placeholder until the subcommand is written. */
#include "pochta.h"

int
pochta_map_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("map: not built yet");
	return 1;
}

