/* SPDX-License-Identifier: MIT */
/* The control plane's state: the routing file as last loaded, the operator's overrides on top
 * of it, and the snapshot compiled from both. Every change (a reload, an override) builds a
 * whole new snapshot and publishes it in one step; a change that fails leaves everything as
 * it was. Control thread only. */
#ifndef SWITCHYARD_STATE_H
#define SWITCHYARD_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "switchyard/base.h"
#include "switchyard/config.h"
#include "switchyard/routing.h"

struct sy_state;

/**
 * Extra checks the caller makes on a loaded config (e.g. TLS files); 0 or an sy_err. `file`
 * names the config in diagnostics and outlives them (the config may not).
 */
typedef int (*sy_state_check_cb)(const struct sy_config *cfg, const char *file, struct sy_diags *d,
                                 void *arg);

/** Hands a new snapshot to the data path (which takes its own references). */
typedef void (*sy_state_publish_cb)(struct sy_route_table *t, void *arg);

/**
 * Loads `path` and compiles generation 1 (not published: the caller starts its workers from
 * sy_state_table()). `check` may be NULL. Returns 0, or a negative sy_err with every problem in
 * `d`. `path` is borrowed for the state's life.
 */
int sy_state_open(const char *path, sy_state_check_cb check, void *arg, struct sy_diags *d,
                  struct sy_state **out);

/** Sets where new snapshots go (before the first change). */
void sy_state_set_publish(struct sy_state *st, sy_state_publish_cb publish, void *arg);

/** The current snapshot (borrowed; valid until the next change). */
struct sy_route_table *sy_state_table(const struct sy_state *st);

enum sy_reload_result {
    SY_RELOAD_PUBLISHED = 0,
    SY_RELOAD_UNCHANGED, /* same bytes as the file in force: nothing to do */
    SY_RELOAD_REJECTED,  /* the file has errors (in `d`); the running table stays */
};

/**
 * Re-reads the file. With `force` false an unchanged file (same content) is not republished.
 * On success the overrides are applied again over the new file and the result published.
 * Logs the outcome with the generation.
 */
enum sy_reload_result sy_state_reload(struct sy_state *st, bool force, struct sy_diags *d);

uint64_t sy_state_generation(const struct sy_state *st);
uint64_t sy_state_reload_failures(const struct sy_state *st);

void sy_state_free(struct sy_state *st);

#endif
