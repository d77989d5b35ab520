/* SPDX-License-Identifier: MIT */
/* The compiled table's layout, shared by table.c (which builds it) and pick.c (which chooses a
 * cluster from it), plus the choice's helpers that the unit tests reach. */
#ifndef SWITCHYARD_ROUTING_TABLE_INTERNAL_H
#define SWITCHYARD_ROUTING_TABLE_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "switchyard/routing.h"

/* One app's choice state. Refcounted: a snapshot made by sy_route_table_update() shares it
 * with the one before for every app the change did not touch (its counters go on). */
struct app_rt {
    atomic_uint refs;
    struct sy_route_app pub;
    const struct sy_app_spec *spec;
    /* The weights in force: the file's, or an override's (same clusters, cluster order). */
    const struct sy_weight_spec *weights;
    size_t n_weights;
    struct sy_weight_spec *override_weights; /* owned; NULL when the file's are in force */
    enum sy_override_state override;
    uint32_t *schedule; /* cluster indices, one full SWRR cycle */
    size_t schedule_len;
    _Atomic uint64_t seq;
    /* Sticky: bucket_end[i] is the exclusive upper bucket of spec->weights[i] (cluster order);
     * the last one is SY_STICKY_BUCKETS. */
    uint32_t *bucket_end;
    EVP_MAC_CTX *force_mac; /* HMAC-SHA256 keyed with force.secret, never updated; or NULL */
    _Atomic uint64_t force_ignored;
};

struct host_entry;

/* The compiled host and path index of one config: what a request's host and path resolve to
 * (an app by index). It depends on the file only, so the snapshots that differ in overrides
 * share it (refcounted), and with it the config, which it holds. */
struct route_index {
    atomic_uint refs;
    struct sy_config *cfg;
    struct host_entry **exact; /* exact names and wildcard suffixes (".example.com"): open
                                  addressing, exact_mask + 1 slots */
    size_t exact_mask;
    struct host_entry *entries; /* every entry; exact and any point into it */
    size_t n_entries;
    struct host_entry *any;
};

/* The apps in maintenance of a table: an answer per app index, NULL when the app is not.
 * Refcounted: shared by the snapshots an operator's change to weights made (routing/maint.c). */
struct maint_set {
    atomic_uint refs;
    size_t n_apps;
    struct sy_route_maint_answer **by_app;
};

/** Drops a reference to a maintenance set; NULL is a no-op (routing/maint.c). */
void sy_route_maint_set_release(struct maint_set *m);

struct sy_route_table {
    atomic_uint refs;
    uint64_t generation;
    struct sy_config *cfg;         /* index->cfg */
    struct route_index *index;     /* a reference */
    struct app_rt **apps;          /* one reference each, cfg->n_apps */
    _Atomic unsigned *endpoint_rr; /* per cluster */
    struct maint_set *maint;       /* a reference, or NULL: no app in maintenance */
};

/**
 * Prepares what the choice needs for app `a` (a->spec set): the sticky bucket ranges and the
 * force HMAC key. Returns 0, SY_ERR_INVALID for a spec the choice cannot serve (a cookie name
 * over SY_COOKIE_NAME_MAX), or SY_ERR_SYS when OpenSSL fails (logged). Control thread.
 */
int sy_pick_app_init(struct app_rt *a);

/** Frees what sy_pick_app_init() made; safe on a zeroed or half-made app. */
void sy_pick_app_dispose(struct app_rt *a);

/** SipHash-2-4 (Aumasson and Bernstein, 2012) of p[0..len) under the 16-byte `key`. */
uint64_t sy_pick_siphash24(const unsigned char key[16], const void *p, size_t len);

/**
 * The value of cookie `name` (exact, case-sensitive match) in the request's Cookie fields, RFC
 * 6265 §4.2.1 `a=b; c=d`, one pair of surrounding double quotes removed. The first match wins.
 * Returns false when there is none.
 */
bool sy_pick_find_cookie(const struct sy_route_req *req, const char *name, struct sy_slice *value);

#endif
