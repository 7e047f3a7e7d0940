/*
 * conf_params_qmgr.c - parameters of qmgr (see conf_params.h).
 */
#include <stddef.h>

#include "conf_params.h"

const struct conf_param conf_params_qmgr[] = {
	{"qmgr_scan_interval", CONF_TIME, "10s", 1, 0,
	    "how often qmgr scans incoming/ for mail it was not told about"},
	{"qmgr_active_limit", CONF_INT, "10000", 1, 1000000,
	    "most messages in active/ at once"},
	{"qmgr_delivery_timeout", CONF_TIME, "600s", 1, 0,
	    "how long qmgr waits for a delivery agent's reply"},
	{"default_destination_concurrency_limit", CONF_INT, "20", 1, 10000,
	    "most concurrent delivery requests to one next hop"},
	{"local_destination_concurrency_limit", CONF_INT,
	    "$default_destination_concurrency_limit", 1, 10000,
	    "most concurrent requests to local-deliver"},
	{"smtp_destination_concurrency_limit", CONF_INT,
	    "$default_destination_concurrency_limit", 1, 10000,
	    "most concurrent requests to smtp-out for one next hop"},
	{"default_process_limit", CONF_INT, "100", 1, 10000,
	    "most concurrent delivery requests to one transport"},
	{"local_process_limit", CONF_INT, "$default_process_limit", 1, 10000,
	    "most concurrent delivery requests to local-deliver"},
	{"smtp_process_limit", CONF_INT, "$default_process_limit", 1, 10000,
	    "most concurrent delivery requests to smtp-out"},
	{"delay_warning_time", CONF_TIME, "0s", 0, 0,
	    "age of deferred mail at which its sender is warned; 0: never"},
	{"minimal_backoff_time", CONF_TIME, "300s", 1, 0,
	    "first retry delay of a deferred message"},
	{"maximal_backoff_time", CONF_TIME, "4000s", 1, 0,
	    "longest retry delay of a deferred message"},
	{"queue_run_delay", CONF_TIME, "300s", 1, 0,
	    "how often qmgr scans deferred/ for mail due for a retry"},
	{"maximal_queue_lifetime", CONF_TIME, "5d", 1, 0,
	    "age after which undeliverable mail bounces"},
	{"bounce_queue_lifetime", CONF_TIME, "5d", 1, 0,
	    "age after which undeliverable mail with the null sender is dropped"},
	{NULL, CONF_STR, NULL, 0, 0, NULL},
};
