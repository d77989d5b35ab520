/* SPDX-License-Identifier: MIT */
/* `switchyardctl status --watch` (admin/watch.c), and what its unit test reaches. */
#ifndef SWITCHYARD_WATCH_INTERNAL_H
#define SWITCHYARD_WATCH_INTERNAL_H

#include <stdio.h>

#include "switchyard/json.h"

/**
 * Draws `status --json` of the admin socket at `socket` to `out` every `interval_s` seconds,
 * `count` times (0: until killed). On a terminal each frame replaces the last. Returns 0 when
 * the last poll was answered, 3 when it was not. Blocking.
 */
int sy_ctl_watch(const char *socket, int timeout_ms, double interval_s, unsigned long count,
                 FILE *out);

/**
 * The q-quantile, in milliseconds, of the requests one cluster counted between two polls: `now`
 * and `old` are that cluster's objects in two answers of `status --json` (`latency_le_ms`,
 * `latency_counts`; `old` may be NULL: since start), interpolated in its bucket; -1 when none.
 */
double sy_watch_quantile(const struct sy_jv *now, const struct sy_jv *old, double q);

#endif
