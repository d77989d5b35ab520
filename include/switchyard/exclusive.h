/* SPDX-License-Identifier: MIT */
/* The exclusive switch (admin/exclusive.c): moving an app of `mode: exclusive` from one cluster
 * to another with its new requests held on the workers while the old cluster drains, an
 * optional ready check on the new one, then one journaled change that releases them. Control
 * thread only. See docs/stateful-apps.md. */
#ifndef SWITCHYARD_EXCLUSIVE_H
#define SWITCHYARD_EXCLUSIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/config.h"
#include "switchyard/overrides.h"

struct event_base;
struct sy_admin_routing;
struct sy_reply;
struct sy_exclusive;

/**
 * The engine, on the control loop `base` (NULL: switches are refused, for tests without a
 * loop), over `env` (its state and traffic counters; borrowed for the engine's life).
 */
struct sy_exclusive *sy_exclusive_new(struct event_base *base, struct sy_admin_routing *env);

/** Frees the engine; switches still running are dropped (the journal has the old side). NULL
 * is a no-op. */
void sy_exclusive_free(struct sy_exclusive *x);

/** Whether `app` is an app of `cfg` with `mode: exclusive`. */
bool sy_exclusive_is_app(const struct sy_config *cfg, const char *app);

/**
 * Begins moving `app` to cluster `to`: its new requests are held from now on (the answer to
 * the command comes once every worker holds them). `who` is recorded with the journal record
 * written at release (its command text gets the phase timings). Returns 0, SY_ERR_AGAIN
 * ("switch in progress"), SY_ERR_INVALID (unknown app or cluster, already there),
 * SY_ERR_NOTFOUND (no journal), with `err` set for a person.
 */
int sy_exclusive_start(struct sy_exclusive *x, const char *app, const char *to,
                       const struct sy_actor *who, char *err, size_t errlen);

/**
 * Aborts the switch of `app` (release has not begun: it is one step): the app goes back to
 * the cluster the journal says and its held requests go there. A switch that a reload began
 * is aborted with an override (journalled) that keeps the app on its old cluster, since the
 * file no longer does. Returns 0, SY_ERR_NOTFOUND (no switch of it runs) or the error of
 * that change, with `err` set.
 */
int sy_exclusive_abort(struct sy_exclusive *x, const char *app, char *err, size_t errlen);

/**
 * `revert --all` for exclusive app `app`: makes it go to cluster `to` through a switch.
 * Returns 1 when a switch towards `to` runs (begun now, or already; one towards another
 * cluster is aborted first), 0 when the app runs on `to` already and no switch runs (the
 * caller records it with the other apps), or a negative sy_err from sy_exclusive_start() or
 * sy_exclusive_abort(), with `err` set.
 */
int sy_exclusive_move(struct sy_exclusive *x, const char *app, const char *to,
                      const struct sy_actor *who, char *err, size_t errlen);

/**
 * The cluster that `release APP` would move exclusive app `app` to through a switch (its
 * override puts it elsewhere than the file does), or NULL: not exclusive, no override, the
 * same side, or no control loop (the release is then an ordinary change).
 */
const char *sy_exclusive_release_moves(const struct sy_exclusive *x, const char *app);

/**
 * `release APP` of an exclusive app: when it moves the app (sy_exclusive_release_moves), a
 * switch towards the file's cluster begins, whose release drops the override (one journal
 * record, `who` with the phase timings). Returns 1 (begun), 0 (nothing to move: the caller
 * releases as usual), SY_ERR_AGAIN (a switch runs) or another negative sy_err, `err` set.
 */
int sy_exclusive_release(struct sy_exclusive *x, const char *app, const struct sy_actor *who,
                         char *err, size_t errlen);

/**
 * Lists (a line each, and the JSON array `exclusive_switches` of {app, from, to}) the switches
 * that reloads began and that still run: "begun" for those that the reload which published
 * `generation` began or retargeted, "in progress" for older ones. `x` may be NULL.
 */
void sy_exclusive_reload_report(const struct sy_exclusive *x, uint64_t generation,
                                struct sy_reply *r);

/**
 * Writes `mode` and `switch` ({phase, from, to, by_reload, held, answered_503, old_in_flight,
 * since, elapsed_ms} or null) into the app's status object, and a line of text while a switch runs
 * (`indent` columns in). `x` may be NULL.
 */
void sy_exclusive_status_app(const struct sy_exclusive *x, const struct sy_app_spec *app,
                             struct sy_reply *r, int indent);

#endif
