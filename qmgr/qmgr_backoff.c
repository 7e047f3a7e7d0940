/*
 * qmgr_backoff.c - exponential retry backoff for deferred mail: doubles
 * from minimal_backoff_time up to maximal_backoff_time, without overflow.
 */
#include "qmgr.h"

int64_t
qmgr_backoff(unsigned ndefer, int64_t minimal, int64_t maximal)
{
	int64_t d = minimal;

	if (minimal <= 0)
		d = 1;
	for (unsigned i = 1; i < ndefer && d < maximal; i++) {
		if (d > INT64_MAX / 2)
			return maximal;
		d *= 2;
	}
	return d > maximal ? maximal : d;
}
