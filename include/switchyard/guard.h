/* SPDX-License-Identifier: MIT */
/* The guard's arithmetic (routing/guard.c): a ring of per-second samples of one app's
 * counters on one cluster, the figures of a window taken from it (requests, 5xx, p99 from the
 * latency histogram's difference), and the verdict of an app's `guard:` limits on a
 * non-stable cluster's figures against the stable cluster's. No I/O, no clock, no allocation
 * after the ring is made: the engine that samples the workers and reverts the app is
 * admin/guard.c. Any thread (an object belongs to its caller). */
#ifndef SWITCHYARD_GUARD_H
#define SWITCHYARD_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/config.h"
#include "switchyard/counters.h"

/** The counters of one app on one cluster at one instant, cumulative since start. */
struct sy_guard_sample {
    uint64_t requests;          /* finished requests (every status class, and none) */
    uint64_t errors;            /* of those, answered 5xx */
    uint64_t lat[SY_LAT_N + 1]; /* time to the response head, per bucket (not cumulative) */
};

/** A ring of the last samples, one per tick. Fields are the ring's own. */
struct sy_guard_ring {
    struct sy_guard_sample *v;
    size_t cap; /* samples kept: the window in ticks + 1 */
    size_t n, head;
};

/** Makes an empty ring that holds `ticks` + 1 samples (a window of `ticks` ticks). */
void sy_guard_ring_init(struct sy_guard_ring *r, size_t ticks);
void sy_guard_ring_dispose(struct sy_guard_ring *r);
/** Forgets every sample (a new window starts with the next push). */
void sy_guard_ring_clear(struct sy_guard_ring *r);
/** Adds the sample of this tick; the oldest goes when the ring is full. */
void sy_guard_ring_push(struct sy_guard_ring *r, const struct sy_guard_sample *s);

/** What a window holds: the differences between its newest sample and its oldest. */
struct sy_guard_figures {
    uint64_t requests, errors;
    uint64_t lat[SY_LAT_N + 1];
    size_t ticks; /* how many ticks the window spans (0: fewer than two samples) */
};

/**
 * The figures of the window that the ring holds: the newest sample minus the oldest. A
 * counter that went down (it cannot, but a sum over workers is not atomic) counts as 0. With
 * fewer than two samples every figure is 0.
 */
void sy_guard_ring_window(const struct sy_guard_ring *r, struct sy_guard_figures *out);

/** The 5xx share of `f`, 0 when it has no requests. */
double sy_guard_ratio(const struct sy_guard_figures *f);

/**
 * The `q` quantile (0 < q <= 1) of the histogram `lat` (SY_LAT_N + 1 buckets of
 * sy_lat_bound_us), in microseconds, interpolated linearly inside its bucket as Prometheus'
 * histogram_quantile does; a quantile in the last, unbounded bucket is the last bound.
 * 0 for an empty histogram.
 */
uint64_t sy_guard_quantile_us(const uint64_t *lat, double q);

/** Why a guard broke, or held. */
enum sy_guard_verdict {
    SY_GUARD_HELD = 0,     /* every limit held */
    SY_GUARD_TOO_FEW,      /* fewer than min_requests in the window: no verdict */
    SY_GUARD_5XX,          /* max_5xx_ratio broken */
    SY_GUARD_5XX_RELATIVE, /* the 5xx share is above relative_to_stable x the stable's */
    SY_GUARD_P99,          /* max_p99 broken */
    SY_GUARD_P99_RELATIVE, /* p99 above relative_to_stable x the stable's */
};

/** Whether a verdict breaks the guard (the app is reverted). */
static inline bool sy_guard_verdict_breaks(enum sy_guard_verdict v)
{
    return v >= SY_GUARD_5XX;
}

/**
 * The verdict of `spec` on `canary` (a non-stable cluster's window) against `stable` (the
 * stable cluster's, same window; NULL: none). No verdict (SY_GUARD_TOO_FEW) below
 * spec->min_requests requests. The relative limits are asked only when the stable cluster
 * has min_requests of its own in the window and its figure is above 0 (twice nothing is
 * nothing: the absolute limits cover a stable cluster without errors). Limits are checked in
 * the order of the enum; the first broken is returned. When `why` is not NULL it gets the
 * figures for people ("5xx 12.3% > 5% over 30 s, n=412"), whatever the verdict.
 */
enum sy_guard_verdict sy_guard_judge(const struct sy_guard_spec *spec,
                                     const struct sy_guard_figures *canary,
                                     const struct sy_guard_figures *stable, unsigned tick_ms,
                                     char *why, size_t whylen);

#endif
