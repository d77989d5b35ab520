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
    bool held;     /* an exclusive switch holds the app's new requests (sy_route_app_change) */
};

/** An operator's split for one app, by names (it must outlive file changes that renumber). */
struct sy_route_weight {
    const char *cluster;
    unsigned weight;
};

struct sy_route_override {
    const char *app;
    const struct sy_route_weight *weights; /* clusters not named get 0 */
    size_t n_weights;
};

enum sy_override_state {
    SY_OVERRIDE_NONE = 0, /* the file's weights are in force */
    SY_OVERRIDE_APPLIED,  /* an override's weights are in force */
    SY_OVERRIDE_STALE,    /* an override exists but no longer fits the file (a cluster it names
                             is not one of the app's, or its sum is 0): the file's weights are in
                             force and the override is kept, to be released or fixed */
};

/**
 * Compiles `cfg` with `overrides` applied into a table with generation `generation` and one
 * reference. Takes a new reference to `cfg` (the caller keeps its own): snapshots that differ
 * only in overrides share one config. Overrides naming no app of the file are ignored here
 * (the caller shows them). Returns 0 or a negative sy_err; *out untouched on failure. Control
 * thread only.
 */
int sy_route_table_build(struct sy_config *cfg, const struct sy_route_override *overrides,
                         size_t n_overrides, uint64_t generation, struct sy_route_table **out);

/** One app's part of sy_route_table_update(). */
struct sy_route_app_change {
    size_t app;                               /* index in the table's config */
    const struct sy_route_override *override; /* the app's override now, or NULL (the file's) */
    bool held; /* the app's new requests are held (an exclusive switch runs) */
};

/**
 * A snapshot like `prev` (same config) in which the apps of `changes` have the overrides given
 * there, with generation `generation` and one reference. It shares `prev`'s config and
 * compiled host index, and the choice state of every app not named (its round-robin position
 * and counters go on); only the named apps' weights, schedules and sticky ranges are built, so
 * an operator's change costs in proportion to the apps it touches (plus a pointer per app).
 * Picks are those of sy_route_table_build() with the same overrides. Returns 0,
 * SY_ERR_INVALID (an index out of range, or the choice cannot serve an app) or another
 * negative sy_err; *out untouched on failure. Control thread only.
 */
int sy_route_table_update(const struct sy_route_table *prev,
                          const struct sy_route_app_change *changes, size_t n, uint64_t generation,
                          struct sy_route_table **out);

/**
 * Whether `a` and `b` share app `app`'s choice state (one was made from the other by
 * sy_route_table_update() without naming it): its weights are then the same in both.
 */
bool sy_route_table_shares_app(const struct sy_route_table *a, const struct sy_route_table *b,
                               size_t app);

/**
 * The weights in force for app `app` (index) in cluster order, and whether an override put
 * them there. Valid while the table reference is held.
 */
enum sy_override_state sy_route_app_weights(const struct sy_route_table *t, size_t app,
                                            const struct sy_weight_spec **weights, size_t *n);

/* -- queries: what the table says about an app, for workers, state and admin alike -------- */

/** App `name` of `t`, or NULL when the table's file has no such app. Any thread. */
const struct sy_route_app *sy_route_app_find(const struct sy_route_table *t, const char *name);

/**
 * The weights in force for app `app` (index) by cluster name, in file order, in a new array
 * (free() it; the names are borrowed from `t`, valid while its reference is held). Returns
 * their count; *state (when not NULL) gets whether an override put them there. Any thread.
 */
size_t sy_route_app_weights_named(const struct sy_route_table *t, size_t app,
                                  struct sy_route_weight **out, enum sy_override_state *state);

/**
 * The weight app `app` gives cluster `cluster` in `t` (both by name): -1 when the app is not
 * in the table, 0 when the cluster is not one of the app's. No allocation. Any thread.
 */
long sy_route_app_weight_of(const struct sy_route_table *t, const char *app, const char *cluster);

/** Whether a split by cluster name fits an app of a file, and if not, the first reason. */
enum sy_override_fit {
    SY_FIT_OK = 0,
    SY_FIT_UNKNOWN_CLUSTER, /* names a cluster the file does not have */
    SY_FIT_NOT_APPS,        /* names a cluster of the file that is not one of the app's */
    SY_FIT_TWICE,           /* names a cluster twice */
    SY_FIT_OVER_100,        /* a weight above 100 */
    SY_FIT_ZERO_SUM,        /* the weights sum to 0 */
};

/**
 * Checks `w` (n weights by cluster name; clusters not named get 0) against app `app` (index)
 * of `cfg`: the one test behind an edit's refusal, a stale override and the table's choice of
 * the file's weights. The weights are checked in order, each for UNKNOWN_CLUSTER, NOT_APPS,
 * TWICE and OVER_100, then the sum; *bad (when not NULL) gets the index of the weight at
 * fault (0 for ZERO_SUM). Any thread.
 */
enum sy_override_fit sy_route_override_fit(const struct sy_config *cfg, size_t app,
                                           const struct sy_route_weight *w, size_t n, size_t *bad);

/**
 * Writes "blue=90,green=10" (or "-" for no weights) into buf, NUL-terminated and cut to
 * `size`. Any thread.
 */
void sy_route_weights_text(const struct sy_route_weight *w, size_t n, char *buf, size_t size);

/* -- the table diff: what `switchyard -t` shows before a reload -------------------------- */

/** One kind of difference between two tables; sy_route_diff_kind_name() gives its word. */
enum sy_route_diff_kind {
    SY_DIFF_APP_REMOVED = 0, /* an app of the old file is not in the new one */
    SY_DIFF_APP_ADDED,
    SY_DIFF_FILE_WEIGHTS,     /* the file's split of an app changes */
    SY_DIFF_HIDDEN,           /* ... and an override in force hides that change */
    SY_DIFF_OVERRIDE_STATE,   /* an override would become stale, or apply again */
    SY_DIFF_EFFECTIVE,        /* the weights in force change */
    SY_DIFF_EXCLUSIVE_SWITCH, /* an exclusive app would move: through an exclusive switch */
    SY_DIFF_STABLE,           /* the app's stable cluster changes */
    SY_DIFF_WINNER,           /* a host and path that the file names goes to another app */
    SY_DIFF_CLUSTER_REMOVED,
    SY_DIFF_CLUSTER_ADDED,
    SY_DIFF_ENDPOINTS,       /* a cluster's endpoint list changes */
    SY_DIFF_MAX_CONNECTIONS, /* a cluster's max_connections or queue changes */
    SY_DIFF_HEALTH, /* a cluster's health checks, outlier ejection or retry budget change */
};

/** "app_removed", "app_added", "file_weights", ... "max_connections" (never NULL). */
const char *sy_route_diff_kind_name(enum sy_route_diff_kind kind);

/** One line of a diff. Everything is borrowed for the callback only. */
struct sy_route_diff_line {
    enum sy_route_diff_kind kind;
    const char *app;  /* the app the line is about, or NULL (a cluster's line) */
    const char *text; /* for people, no newline: "~ app chat: file weights ... -> ..." */
};

typedef void (*sy_route_diff_cb)(const struct sy_route_diff_line *line, void *arg);

struct sy_overrides;

/**
 * Compares table `old` with table `neu` (built from the new file with the same overrides) and
 * calls `cb` once per difference, in a fixed order: apps removed; per app of the new file, in
 * file order, added or its file weights, hiding override, override state, weights in force,
 * exclusive switch and stable cluster; hosts and paths whose winner changes (those the old
 * file names, then those only the new one does); clusters removed, added and changed. `ov`
 * (may be NULL: no override) is the set of overrides in force, for what they hide. Returns
 * the number of lines. Control thread (it allocates); neither table is changed.
 */
size_t sy_route_diff(const struct sy_route_table *old, const struct sy_route_table *neu,
                     const struct sy_overrides *ov, sy_route_diff_cb cb, void *arg);

/** Whether app `app` (index) is held in `t` (an exclusive switch runs). Any thread. */
bool sy_route_app_is_held(const struct sy_route_table *t, size_t app);

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

/** The rule a request matched: the app's host pattern and path prefix, as the file writes them. */
struct sy_route_rule {
    const char *host;
    const char *path;
};

/**
 * As sy_route_match, and fills `rule` with the host pattern and path prefix that decided
 * (borrowed from the table). For `explain`. Any thread.
 */
const struct sy_route_app *sy_route_match_rule(const struct sy_route_table *t, struct sy_slice host,
                                               struct sy_slice path, struct sy_route_rule *rule);

/** Why a cluster was chosen (shown by `explain` and in logs). */
enum sy_pick_reason {
    SY_PICK_WEIGHT = 0, /* no key: smooth weighted round-robin */
    SY_PICK_STICKY,     /* the sticky key's bucket against the cumulative weights */
    SY_PICK_FORCE,      /* a force header or cookie named the cluster */
};

/** "weight", "sticky" or "force" (never NULL). */
const char *sy_pick_reason_name(enum sy_pick_reason reason);

/** Which rule decided, finer than sy_pick_reason: a force header and a force cookie apart. */
enum sy_pick_rule {
    SY_RULE_WEIGHTS = 0,
    SY_RULE_STICKY,
    SY_RULE_FORCE_HEADER,
    SY_RULE_FORCE_COOKIE,
    SY_RULE_FAILOVER, /* the rule's cluster had no endpoint up: another of the app's took it */
};

/** "weights", "sticky", "force_header", "force_cookie" or "failover" (never NULL): the access
 * log's words. */
const char *sy_pick_rule_name(enum sy_pick_rule rule);

/**
 * What a request offers to the choice beyond its app. Everything is borrowed for the call only.
 * A zeroed struct (or a NULL request) means "no key": the weights alone decide.
 */
struct sy_route_req {
    struct sy_slice host, path;
    const struct sy_header *headers; /* the request's header fields, as parsed */
    size_t n_headers;
    const struct sockaddr *client; /* the peer's address (AF_INET or AF_INET6), or NULL */
    bool tls;                      /* arrived on a TLS listener: a new cookie gets `Secure` */
    uint64_t now;                  /* unix time in seconds: force tokens expire against it */
    uint64_t rnd; /* uniformly random bits drawn by the caller; the key of a new sticky cookie */
};

/* "NAME=" + 16 hex digits + "; Path=/; Max-Age=34560000; HttpOnly; SameSite=Lax; Secure". */
#define SY_SET_COOKIE_MAX 160

/** The outcome of sy_route_pick(). */
struct sy_route_choice {
    size_t cluster; /* index into the table's clusters */
    enum sy_pick_reason reason;
    enum sy_pick_rule rule; /* the same decision, telling a force header from a cookie */
    /* When set_cookie_len > 0: the whole value of a Set-Cookie field the response must carry
     * (the request had no sticky cookie and was given a new key). NUL-terminated. */
    char set_cookie[SY_SET_COOKIE_MAX];
    size_t set_cookie_len;
    /* Health (switchyard/health.h). With rule SY_RULE_FAILOVER, `from` is the cluster the other
     * rules chose, which had no endpoint up. `down`: that cluster has no endpoint up and the
     * app's `failover` is false, so the request is to be answered 503 (cluster is `from`'s).
     * A forced request, and one whose app has no other cluster up, stays where it was. */
    size_t from;
    bool down;
};

/**
 * Picks the cluster for one request to `app` (docs/routing.md), first match wins:
 *   1. force: the app's force header, then its force cookie, naming one of the app's clusters
 *      (even one of weight 0). With `force.secret` the value must be CLUSTER.EXPIRY.MAC, MAC
 *      the lower-case hex HMAC-SHA256 of "CLUSTER.EXPIRY" under the secret and EXPIRY > now.
 *      A value that does not qualify is ignored and counted (sy_route_force_ignored()).
 *   2. sticky key (cookie value, header value or client address): bucket =
 *      sy_route_sticky_bucket(app name, key), held against the app's cumulative weights in the
 *      table's cluster order. A cookie-sticky request without the cookie gets a new key made
 *      from `req->rnd`, used for this request and returned in out->set_cookie.
 *   3. no key: smooth weighted round-robin over the app's weights, shared by all workers (one
 *      atomic increment), exact over any window of sum-of-weights consecutive requests.
 *   Then, for 2 and 3: when no endpoint of that cluster is up (sy_cluster_is_up) and the app
 *   has `failover`, the app's other clusters with weight and an endpoint up take the request
 *   by their weights (a sticky key keeps its place among them: the same users move, and come
 *   back when the cluster does); rule SY_RULE_FAILOVER.
 * Fills *out. `req` may be NULL (step 3 only). Any thread; no lock and no allocation, except
 * that checking a signed force value copies an HMAC context (a few small allocations).
 */
void sy_route_pick(const struct sy_route_table *t, const struct sy_route_app *app,
                   const struct sy_route_req *req, struct sy_route_choice *out);

/**
 * As sy_route_pick, without side effects: the round-robin position does not move (the answer
 * is the cluster the next request without a key would get) and a force value that does not
 * qualify is not counted. For `explain`. Any thread.
 */
void sy_route_pick_peek(const struct sy_route_table *t, const struct sy_route_app *app,
                        const struct sy_route_req *req, struct sy_route_choice *out);

/**
 * The sticky bucket of `key` in app `app_name`: SipHash-2-4 under the fixed key
 * SY_STICKY_HASH_KEY of the bytes app_name, 0x00, key; the 64-bit result mod SY_STICKY_BUCKETS.
 * Never changes between versions (a regression test pins it). Any thread.
 */
unsigned sy_route_sticky_bucket(const char *app_name, const void *key, size_t len);

#define SY_STICKY_BUCKETS  10000u
#define SY_STICKY_HASH_KEY "switchyard.stick" /* 16 bytes: SipHash k0, k1 little-endian */

/**
 * Force values of `app` ignored since the table was built (unknown cluster, bad or expired
 * signature). Per table: a reload starts a new count. Any thread.
 */
uint64_t sy_route_force_ignored(const struct sy_route_table *t, const struct sy_route_app *app);

/** One app in maintenance, as sy_route_table_set_maintenance() takes it (borrowed). */
struct sy_route_maint {
    const char *app;
    unsigned retry_after; /* seconds; 0: the app's apps[].maintenance_retry_after */
    const char *message;  /* the line for non-HTML clients; NULL: the default */
};

/** What the data path answers for an app in maintenance (503). Valid with the table. */
struct sy_route_maint_answer {
    unsigned retry_after_s; /* the Retry-After value in seconds */
    const char *text;       /* one line ending in "\n": the message, or the default */
    size_t text_len;
    const char *page; /* apps[].maintenance_page (HTML), or NULL */
    size_t page_len;
};

/**
 * Puts the apps of `m` in maintenance in `t`, a table not yet published (one reference, as a
 * build or an update returns it); every other app is out of it. Apps the table's config does
 * not have are ignored. A table made by sy_route_table_update() starts with the maintenance of
 * the table it came from; one made by sy_route_table_build() with none. Control thread only.
 */
void sy_route_table_set_maintenance(struct sy_route_table *t, const struct sy_route_maint *m,
                                    size_t n);

/**
 * The answer for `app` when it is in maintenance in `t`, or NULL. No lock, no allocation. Any
 * thread.
 */
const struct sy_route_maint_answer *sy_route_app_maintenance(const struct sy_route_table *t,
                                                             const struct sy_route_app *app);

/** Number of clusters and their names (index order = file order). */
size_t sy_route_cluster_count(const struct sy_route_table *t);
const struct sy_cluster_spec *sy_route_cluster(const struct sy_route_table *t, size_t i);

/**
 * Picks the next endpoint of cluster `i` in round-robin order (shared atomic counter), skipping
 * the ones that are not up (switchyard/health.h) and `avoid` (NULL: none) while another is up;
 * with none up, the next one in order. Returns NULL when the cluster has no endpoints.
 */
const struct sy_endpoint_spec *sy_route_next_endpoint(const struct sy_route_table *t, size_t i);
const struct sy_endpoint_spec *sy_route_next_endpoint_avoiding(const struct sy_route_table *t,
                                                               size_t i,
                                                               const struct sy_endpoint_spec *avoid,
                                                               bool *up);

#endif
