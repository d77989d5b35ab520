/* SPDX-License-Identifier: MIT */
/* The guard's arithmetic: a ring of cumulative samples taken once a tick, whose newest minus
 * oldest is the window's figures (so a window costs one subtraction per counter, whatever its
 * length), the p99 of the window from the difference of two latency histograms, and the
 * verdict of an app's limits. Every division is guarded: no requests is a share of 0, an
 * empty histogram a quantile of 0, and below min_requests there is no verdict at all. */
#include "switchyard/guard.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/base.h"

void sy_guard_ring_init(struct sy_guard_ring *r, size_t ticks)
{
    memset(r, 0, sizeof(*r));
    r->cap = ticks + 1;
    r->v = sy_xcalloc(r->cap, sizeof(*r->v));
}

void sy_guard_ring_dispose(struct sy_guard_ring *r)
{
    free(r->v);
    memset(r, 0, sizeof(*r));
}

void sy_guard_ring_clear(struct sy_guard_ring *r)
{
    r->n = 0;
    r->head = 0;
}

void sy_guard_ring_push(struct sy_guard_ring *r, const struct sy_guard_sample *s)
{
    if (r->cap == 0)
        return;
    if (r->n < r->cap) {
        r->v[(r->head + r->n) % r->cap] = *s;
        r->n++;
        return;
    }
    r->v[r->head] = *s; /* the oldest goes */
    r->head = (r->head + 1) % r->cap;
}

static uint64_t minus(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

void sy_guard_ring_window(const struct sy_guard_ring *r, struct sy_guard_figures *out)
{
    memset(out, 0, sizeof(*out));
    if (r->n < 2)
        return;
    const struct sy_guard_sample *old = &r->v[r->head];
    const struct sy_guard_sample *neu = &r->v[(r->head + r->n - 1) % r->cap];
    out->requests = minus(neu->requests, old->requests);
    out->errors = minus(neu->errors, old->errors);
    /* Finished requests and their 5xx are counted apart: never more errors than requests. */
    if (out->errors > out->requests)
        out->errors = out->requests;
    for (size_t i = 0; i <= SY_LAT_N; i++)
        out->lat[i] = minus(neu->lat[i], old->lat[i]);
    out->ticks = r->n - 1;
}

double sy_guard_ratio(const struct sy_guard_figures *f)
{
    return f->requests ? (double)f->errors / (double)f->requests : 0.0;
}

uint64_t sy_guard_quantile_us(const uint64_t *lat, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= SY_LAT_N; i++)
        total += lat[i];
    if (total == 0)
        return 0;
    if (q > 1)
        q = 1;
    double rank = q * (double)total;
    uint64_t below = 0;
    for (size_t i = 0; i <= SY_LAT_N; i++) {
        if (lat[i] == 0 || (double)(below + lat[i]) < rank) {
            below += lat[i];
            continue;
        }
        if (i == SY_LAT_N) /* unbounded: the last bound is all we know */
            return sy_lat_bound_us(SY_LAT_N - 1);
        uint64_t lo = i ? sy_lat_bound_us(i - 1) : 0, hi = sy_lat_bound_us(i);
        double frac = (rank - (double)below) / (double)lat[i];
        if (frac < 0)
            frac = 0;
        return lo + (uint64_t)((double)(hi - lo) * frac);
    }
    return sy_lat_bound_us(SY_LAT_N - 1);
}

/* "12.3%": a share for people, with as many decimals as it needs. */
static void pct(double v, char *buf, size_t size)
{
    snprintf(buf, size, "%.3g%%", v * 100.0);
}

enum sy_guard_verdict sy_guard_judge(const struct sy_guard_spec *spec,
                                     const struct sy_guard_figures *canary,
                                     const struct sy_guard_figures *stable, unsigned tick_ms,
                                     char *why, size_t whylen)
{
    char a[32], b[32];
    uint64_t over_ms = (uint64_t)canary->ticks * tick_ms;
    double ratio = sy_guard_ratio(canary);
    uint64_t p99 = sy_guard_quantile_us(canary->lat, 0.99);
    bool stable_ok = stable && stable->requests >= spec->min_requests && spec->min_requests > 0;
    double sratio = stable_ok ? sy_guard_ratio(stable) : 0;
    uint64_t sp99 = stable_ok ? sy_guard_quantile_us(stable->lat, 0.99) : 0;
    enum sy_guard_verdict v = SY_GUARD_HELD;
    if (canary->requests < spec->min_requests || canary->requests == 0)
        v = SY_GUARD_TOO_FEW;
    else if (ratio > spec->max_5xx_ratio)
        v = SY_GUARD_5XX;
    else if (spec->relative_to_stable > 0 && sratio > 0 &&
             ratio > spec->relative_to_stable * sratio)
        v = SY_GUARD_5XX_RELATIVE;
    else if (spec->max_p99_ms && p99 > (uint64_t)spec->max_p99_ms * 1000)
        v = SY_GUARD_P99;
    else if (spec->relative_to_stable > 0 && sp99 > 0 &&
             (double)p99 > spec->relative_to_stable * (double)sp99)
        v = SY_GUARD_P99_RELATIVE;
    if (!why || !whylen)
        return v;
    char over[48];
    if (over_ms % 1000 == 0)
        snprintf(over, sizeof(over), "%" PRIu64 " s", over_ms / 1000);
    else
        snprintf(over, sizeof(over), "%" PRIu64 " ms", over_ms);
    pct(ratio, a, sizeof(a));
    switch (v) {
    case SY_GUARD_5XX:
        pct(spec->max_5xx_ratio, b, sizeof(b));
        snprintf(why, whylen, "5xx %s > %s over %s, n=%" PRIu64, a, b, over, canary->requests);
        break;
    case SY_GUARD_5XX_RELATIVE:
        pct(sratio, b, sizeof(b));
        snprintf(why, whylen, "5xx %s > %gx stable's %s over %s, n=%" PRIu64, a,
                 spec->relative_to_stable, b, over, canary->requests);
        break;
    case SY_GUARD_P99:
        snprintf(why, whylen, "p99 %.1f ms > %u ms over %s, n=%" PRIu64, (double)p99 / 1000,
                 spec->max_p99_ms, over, canary->requests);
        break;
    case SY_GUARD_P99_RELATIVE:
        snprintf(why, whylen, "p99 %.1f ms > %gx stable's %.1f ms over %s, n=%" PRIu64,
                 (double)p99 / 1000, spec->relative_to_stable, (double)sp99 / 1000, over,
                 canary->requests);
        break;
    case SY_GUARD_TOO_FEW:
        snprintf(why, whylen, "n=%" PRIu64 " < min_requests %u over %s: no verdict",
                 canary->requests, spec->min_requests, over);
        break;
    case SY_GUARD_HELD:
        snprintf(why, whylen, "5xx %s, p99 %.1f ms over %s, n=%" PRIu64 ": held", a,
                 (double)p99 / 1000, over, canary->requests);
        break;
    }
    return v;
}
