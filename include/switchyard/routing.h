/* SPDX-License-Identifier: MIT */
/* The compiled routing table: an immutable, reference-counted snapshot built from a checked
 * config. Requests look up their app by host and path and pick a cluster; nothing here locks. */
#ifndef SWITCHYARD_ROUTING_H
#define SWITCHYARD_ROUTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/base.h"
#include "switchyard/config.h"

struct sy_route_table;

/** An app as the data path sees it. Valid while the table reference is held. */
struct sy_route_app {
    const char *name;
    size_t index;  /* 0..n_apps-1 in file order */
    size_t stable; /* cluster index */
};

/**
 * Compiles `cfg` into a table with generation `generation` and one reference. Takes ownership
 * of `cfg` on success (freed with the table); on failure returns a negative sy_err, leaves
 * *out untouched and `cfg` with the caller. Control thread only.
 */
int sy_route_table_new(struct sy_config *cfg, uint64_t generation, struct sy_route_table **out);

/** Returns a new reference (any thread). */
struct sy_route_table *sy_route_table_acquire(struct sy_route_table *t);

/** Drops a reference; the last one frees the table (any thread). NULL is a no-op. */
void sy_route_table_release(struct sy_route_table *t);

uint64_t sy_route_table_generation(const struct sy_route_table *t);

/** The config the table was built from (borrowed, valid while the reference is held). */
const struct sy_config *sy_route_table_config(const struct sy_route_table *t);

/**
 * Finds the app for a request. `host` is the Host/:authority value (a port suffix and case are
 * ignored, as is one trailing dot); `path` is the request path (query excluded or not: only
 * the prefix matters). Host patterns are tried from most to least specific: exact name, then
 * the longest matching `*.suffix`, then `*`; at the first level where some app has a path
 * that is a prefix of `path`, the longest such prefix wins. Returns NULL when nothing matches.
 */
const struct sy_route_app *sy_route_match(const struct sy_route_table *t, struct sy_slice host,
                                          struct sy_slice path);

/** Why a cluster was chosen (shown by `explain` and in logs). */
enum sy_pick_reason {
    SY_PICK_WEIGHT = 0, /* smooth weighted round-robin */
};

/**
 * What a request offers to the choice beyond its app. The seam for forced and sticky choice:
 * today only the weights decide.
 */
struct sy_route_req {
    struct sy_slice host, path;
};

/**
 * Picks the cluster for one request to `app`: smooth weighted round-robin over the app's
 * weights, shared by all workers (one atomic increment), so that over any window of
 * sum-of-weights consecutive requests every cluster gets exactly its weight. Returns a cluster
 * index; `reason` (may be NULL) says why. Any thread.
 */
size_t sy_route_pick(const struct sy_route_table *t, const struct sy_route_app *app,
                     const struct sy_route_req *req, enum sy_pick_reason *reason);

/** Number of clusters and their names (index order = file order). */
size_t sy_route_cluster_count(const struct sy_route_table *t);
const struct sy_cluster_spec *sy_route_cluster(const struct sy_route_table *t, size_t i);

/**
 * Picks the next endpoint of cluster `i` in round-robin order (shared atomic counter).
 * Returns NULL when the cluster has no endpoints.
 */
const struct sy_endpoint_spec *sy_route_next_endpoint(const struct sy_route_table *t, size_t i);

#endif
