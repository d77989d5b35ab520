/* SPDX-License-Identifier: MIT */
/* The guard engine (admin/guard.c): once a tick on the control thread it samples the workers'
 * counters of every app that has a `guard:`, keeps each cluster's window (switchyard/guard.h)
 * and, when a non-stable cluster that has a share of the app's traffic breaks a limit, reverts
 * the app to its stable cluster with an ordinary journalled change (sy_state_change, the path
 * of `revert APP`), whose command text names the guard and its figures. The override stays
 * until a person releases it. `guard pause|resume` (journalled) stops and restarts every
 * guard. Control thread only. See docs/guard.md. */
#ifndef SWITCHYARD_GUARD_ENGINE_H
#define SWITCHYARD_GUARD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/config.h"

/** How often the guard samples and judges, in milliseconds. */
#define SY_GUARD_TICK_MS 1000u

/** The command text of a guard's revert begins with this (`history`, the override's `by`). */
#define SY_GUARD_REVERT_PREFIX "guard revert "

/** Where an app's guard stands. */
enum sy_guard_state {
    SY_GUARD_OFF = 0, /* no guard: `guard:` absent or off */
    SY_GUARD_IDLE,    /* no share of the traffic on a non-stable cluster: nothing to watch */
    SY_GUARD_WATCHING,
    SY_GUARD_TRIPPED, /* reverted by its guard; the override stands until `release` */
    SY_GUARD_PAUSED,  /* every guard is paused (`guard pause`) */
    SY_GUARD_STATE_N,
};

static inline const char *sy_guard_state_name(enum sy_guard_state s)
{
    static const char *const names[SY_GUARD_STATE_N] = {"off", "idle", "watching", "tripped",
                                                        "paused"};
    return (unsigned)s < SY_GUARD_STATE_N ? names[s] : "off";
}

/** One app's guard as /metrics shows it. */
struct sy_guard_app_view {
    const char *app; /* valid during the callback */
    enum sy_guard_state state;
    uint64_t reverts; /* reverts by this guard since start */
};

typedef void (*sy_guard_app_cb)(const struct sy_guard_app_view *v, void *arg);

struct event_base;
struct sy_admin;
struct sy_admin_routing;
struct sy_reply;
struct sy_guard;

/**
 * The engine on the control loop `base` (NULL: no tick; sy_guard_tick() drives it, for
 * tests), over `env` (its state and counters; borrowed for the engine's life).
 */
struct sy_guard *sy_guard_new(struct event_base *base, struct sy_admin_routing *env);

/** Stops the tick (a drain): nothing is judged or reverted any more; status still reads the
 * last figures. NULL is a no-op. */
void sy_guard_stop(struct sy_guard *g);

/** Frees the engine. NULL is a no-op. */
void sy_guard_free(struct sy_guard *g);

/** Registers `guard pause|resume` against the engine `g`. */
void sy_guard_admin_init(struct sy_admin *a, struct sy_guard *g);

/** One tick: samples the counters, judges every guarded app, reverts those that broke. */
void sy_guard_tick(struct sy_guard *g);

/** Calls `cb` for every app of the file in force that has a guard. `g` may be NULL. */
void sy_guard_each(const struct sy_guard *g, sy_guard_app_cb cb, void *arg);

/**
 * Writes the app's `guard` member into its status object (null without a guard) and, for
 * people, a line `indent` columns in with its state and its figures. `g` may be NULL.
 */
void sy_guard_status_app(const struct sy_guard *g, const struct sy_app_spec *app,
                         struct sy_reply *r, int indent);

/** What a ramp asks of an app's guard (sy_guard_window). */
struct sy_guard_window {
    bool watched;        /* the app has a guard (its own, or the default one for a ramp) */
    int held;            /* 1: held over a whole window begun after the last restart; 0: not
                            yet (window not full, too few requests, nothing to watch); -1:
                            broke (the guard reverts the app unless paused) */
    uint64_t full_at_ms; /* unix ms at which the window since the last restart is full */
    char why[300];       /* the figures of the cluster judged last, for people ("": none) */
};

/**
 * How app `app`'s guard stands for a ramp's next step. `g` may be NULL (then not watched).
 */
void sy_guard_window(const struct sy_guard *g, const char *app, struct sy_guard_window *out);

/** Starts app `app`'s window afresh (a ramp took a step, or resumed). No-op when unwatched. */
void sy_guard_restart(struct sy_guard *g, const char *app);

/** Writes the global switch into the status head: a line when paused, and `guards_paused`. */
void sy_guard_status_head(const struct sy_guard *g, struct sy_reply *r);

#endif
