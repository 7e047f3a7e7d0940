/*
 * qmgr.h - the queue manager's shared pieces: retry backoff computation,
 * kept apart from the daemon so it can be unit-tested.
 */
#ifndef QMGR_H
#define QMGR_H

#include <stdint.h>

/*
 * The delay before retry number ndefer (1 for the first deferral):
 * minimal doubled (ndefer - 1) times, never above maximal.
 */
int64_t qmgr_backoff(unsigned ndefer, int64_t minimal, int64_t maximal);

#endif
