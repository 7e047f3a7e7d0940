/* pochta_user.c - placeholder until the subcommand is written. */
#include "pochta.h"

int
pochta_user_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("user: not built yet");
	return 1;
}

