/* SPDX-License-Identifier: MIT */
/* Ramps (admin/ramp.c): `ramp APP CLUSTER 1,5,25,50,100 --every 5m` writes a plan to the
 * journal, and the control thread moves the app's weights one step at a time, each step only
 * once `every` has passed since the last one and the app's guard held over a whole window of
 * data taken since it (switchyard/guard_engine.h). A step is an ordinary change (the edit
 * `weights APP CLUSTER=S STABLE=100-S` makes) whose command says it is the ramp's; the step
 * a ramp is on is read back from that override, so a restart, a reload or `kill -9` never
 * moves it back or ahead. A guard that breaks reverts the app and the ramp ends. Control
 * thread only. See docs/guard.md. */
#ifndef SWITCHYARD_RAMP_H
#define SWITCHYARD_RAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/config.h"

/** How often the ramps are looked at, in milliseconds. */
#define SY_RAMP_TICK_MS 100u
/** Bounds of `--every`. */
#define SY_RAMP_EVERY_MIN_MS 100u
#define SY_RAMP_EVERY_MAX_MS (24u * 3600 * 1000)

/** The command text of a ramp's step begins with this. */
#define SY_RAMP_STEP_PREFIX "ramp step "

struct event_base;
struct sy_admin;
struct sy_admin_routing;
struct sy_reply;
struct sy_ramper;

/**
 * The ramps' engine on the control loop `base` (NULL: no timer; sy_ramper_tick() drives it),
 * over `env` (state, counters and env->guard; borrowed for the engine's life).
 */
struct sy_ramper *sy_ramper_new(struct event_base *base, struct sy_admin_routing *env);

/** Stops the timer (a drain): no step is taken any more. NULL is a no-op. */
void sy_ramper_stop(struct sy_ramper *r);

/** Frees the engine. NULL is a no-op. */
void sy_ramper_free(struct sy_ramper *r);

/** Registers `ramp APP CLUSTER STEPS --every D` and `ramp pause|resume|abort APP`. */
void sy_ramper_admin_init(struct sy_admin *a, struct sy_ramper *r);

/** Looks at every ramp once: ends those the app left, takes the steps that are due. */
void sy_ramper_tick(struct sy_ramper *r);

/**
 * Writes the app's `ramp` member into its status object (null without a ramp) and a line
 * for people `indent` columns in: the step, the next step's time and the guard's figures.
 * `r` may be NULL.
 */
void sy_ramper_status_app(const struct sy_ramper *r, const struct sy_app_spec *app,
                          struct sy_reply *reply, int indent);

#endif
