/* SPDX-License-Identifier: MIT */
/* The active health checks of the clusters that have `health:` (proxy/health.c): probes run on
 * the event_base they are given (the control thread's), and their results go into the
 * endpoints' shared state (switchyard/health.h). */
#ifndef SWITCHYARD_HEALTH_CHECK_H
#define SWITCHYARD_HEALTH_CHECK_H

#include <event2/event.h>

#include "switchyard/config.h"

struct sy_health_checker;

/** A checker with no targets, on `base`; it also logs and clears ejections that end. */
struct sy_health_checker *sy_health_checker_new(struct event_base *base);

/**
 * Probes the endpoints of `cfg`'s clusters with `health:` from now on (takes a reference to
 * `cfg`; a config already applied changes nothing). Probes under way for the config before are
 * dropped; the endpoints' state stays in their shared objects. Loop thread of `base` only.
 */
void sy_health_checker_apply(struct sy_health_checker *hc, struct sy_config *cfg);

/** Stops every probe and frees the checker (NULL: no-op). Loop thread of `base` only. */
void sy_health_checker_free(struct sy_health_checker *hc);

#endif
