/* pochta_ctl.c - placeholder until the subcommand is written. */
#include "pochta.h"

int
pochta_start_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("start: not built yet");
	return 1;
}

int
pochta_stop_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("stop: not built yet");
	return 1;
}

int
pochta_reload_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("reload: not built yet");
	return 1;
}

int
pochta_status_main(int argc, char **argv, const char *confdir)
{
	(void)argc;
	(void)argv;
	(void)confdir;
	pochta_err("status: not built yet");
	return 1;
}

