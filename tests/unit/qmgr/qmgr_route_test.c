/*
 * qmgr_route_test.c - unit tests for the routing decision: transport_maps
 * entries (transport:nexthop, bare transport, [host]:port), our domains
 * ignoring relayhost, and the relayhost for everything else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "qmgr.h"

static void
check(const char *addr, const char *table, int ours, const char *relayhost,
    const char *want_t, const char *want_h)
{
	char *t = NULL, *h = NULL;

	qmgr_route_decide(addr, table, ours, relayhost, &t, &h);
	assert_string_equal(t, want_t);
	assert_string_equal(h, want_h);
	free(t);
	free(h);
}

static void
test_qmgr_route_defaults(void **state)
{
	(void)state;
	check("bob@example.org", NULL, 0, "", "smtp", "example.org");
	check("alice@example.test", NULL, 1, "", "local", "local");
}

static void
test_qmgr_route_relayhost(void **state)
{
	(void)state;
	check("bob@example.org", NULL, 0, "[relay.test]:2525", "smtp",
	    "[relay.test]:2525");
	/* Our domains never go to the relayhost. */
	check("alice@example.test", NULL, 1, "[relay.test]:2525", "local",
	    "local");
}

static void
test_qmgr_route_transport_maps(void **state)
{
	(void)state;
	check("bob@example.org", "smtp:[10.0.0.1]:2525", 0, "relay.test",
	    "smtp", "[10.0.0.1]:2525");
	check("bob@example.org", "local", 0, "relay.test", "local", "local");
	check("bob@example.org", "smtp", 0, "relay.test", "smtp",
	    "example.org");
	check("bob@example.org", "smtp:", 0, "", "smtp", "example.org");
	check("bob@example.org", "uucp:gw.test trailing", 0, "", "uucp",
	    "gw.test");
	/* A table entry wins over our own domains. */
	check("alice@example.test", "smtp:mx.test", 1, "", "smtp", "mx.test");
}

static void
test_qmgr_route_bad_entries(void **state)
{
	(void)state;
	/* No transport in the entry: as if there were none. */
	check("bob@example.org", ":gw.test", 0, "", "smtp", "example.org");
	check("bob@example.org", "", 1, "", "local", "local");
	check("bob@example.org", " smtp", 0, "r.test", "smtp", "r.test");
	/* No domain at all. */
	check("postmaster", NULL, 0, "", "smtp", "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qmgr_route_defaults),
		cmocka_unit_test(test_qmgr_route_relayhost),
		cmocka_unit_test(test_qmgr_route_transport_maps),
		cmocka_unit_test(test_qmgr_route_bad_entries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
