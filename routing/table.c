/* SPDX-License-Identifier: MIT */
/* The compiled routing table. A checked config becomes an immutable snapshot: exact host names
 * and `*.suffix` wildcards in an open-addressing hash (a host's suffixes from each dot are
 * looked up longest first), then the catch-all; under each host its path prefixes longest
 * first. Each app's weights become a precomputed smooth weighted round-robin schedule, walked
 * by one shared atomic counter, so every worker draws from the same exact sequence and the
 * request path takes no lock; pick.c adds the sticky bucket ranges and the force key and
 * makes the choice. The host index is shared by the snapshots of one file, and each app's
 * choice state by the snapshots an operator's change did not touch it in. */
#include "switchyard/routing.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/health.h"

#include "table_internal.h"

#define MAX_HOST 255

struct rule {
    const char *path;
    size_t path_len;
    size_t app;       /* index in the config: the index is shared by snapshots, the apps are not */
    const char *host; /* the pattern as written in the file (for `explain`) */
};

/* All the rules of one host pattern, longest path first. */
struct host_entry {
    const char *host; /* lower-case; for wildcards the suffix with its leading dot */
    size_t len;
    struct rule *rules;
    size_t n_rules, cap_rules;
};

static uint64_t hash_bytes(const char *p, size_t len)
{
    return sy_fnv1a(SY_FNV1A_INIT, p, len);
}

static unsigned gcd(unsigned a, unsigned b)
{
    while (b) {
        unsigned t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* One cycle of smooth weighted round-robin: each step every cluster gains its weight, the
 * largest total wins and pays the sum back. Over the cycle each cluster appears exactly
 * weight/g times and the picks are spread as evenly as the weights allow. */
static void build_schedule(struct app_rt *a)
{
    const struct sy_weight_spec *weights = a->weights;
    size_t n = a->n_weights;
    unsigned g = 0;
    for (size_t i = 0; i < n; i++)
        g = gcd(g, weights[i].weight);
    assert(g > 0);
    unsigned total = 0;
    for (size_t i = 0; i < n; i++)
        total += weights[i].weight / g;
    a->schedule = sy_xcalloc(total, sizeof(*a->schedule));
    a->schedule_len = total;
    long *current = sy_xcalloc(n, sizeof(*current));
    for (unsigned step = 0; step < total; step++) {
        size_t best = 0;
        for (size_t i = 0; i < n; i++) {
            current[i] += weights[i].weight / g;
            if (current[i] > current[best])
                best = i;
        }
        current[best] -= total;
        a->schedule[step] = (uint32_t)weights[best].cluster;
    }
    free(current);
}

static int cmp_rule(const void *a, const void *b)
{
    const struct rule *x = a, *y = b;
    if (x->path_len != y->path_len)
        return x->path_len > y->path_len ? -1 : 1;
    return 0;
}

static void index_release(struct route_index *idx)
{
    if (!idx || atomic_fetch_sub_explicit(&idx->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < idx->n_entries; i++)
        free(idx->entries[i].rules);
    free(idx->entries);
    free(idx->exact);
    sy_config_free(idx->cfg);
    free(idx);
}

/* The entry of host pattern `host` (a wildcard as its suffix with the dot), made when it is
 * new. `seen` is an open-addressing hash of entry indices + 1 over `mask` + 1 slots, at most
 * half full (there are at most as many entries as hosts), so that building stays linear in the
 * number of hosts. */
static struct host_entry *entry_for(struct route_index *idx, size_t *seen, size_t mask,
                                    const char *host)
{
    size_t len = strlen(host);
    size_t s = hash_bytes(host, len) & mask;
    for (; seen[s]; s = (s + 1) & mask) {
        struct host_entry *e = &idx->entries[seen[s] - 1];
        if (e->len == len && memcmp(e->host, host, len) == 0)
            return e;
    }
    struct host_entry *e = &idx->entries[idx->n_entries++];
    seen[s] = idx->n_entries;
    e->host = host;
    e->len = len;
    return e;
}

/* Compiles the hosts and paths of `cfg` (takes a reference to it). */
static struct route_index *index_new(struct sy_config *cfg)
{
    struct route_index *idx = sy_xcalloc(1, sizeof(*idx));
    atomic_init(&idx->refs, 1);
    idx->cfg = sy_config_acquire(cfg);
    size_t n_hosts = 0;
    for (size_t i = 0; i < cfg->n_apps; i++)
        n_hosts += cfg->apps[i].n_hosts;
    idx->entries = sy_xcalloc(n_hosts ? n_hosts : 1, sizeof(*idx->entries));

    size_t slots = 8;
    while (slots < 2 * n_hosts)
        slots *= 2;
    size_t *seen = sy_xcalloc(slots, sizeof(*seen));
    /* Two passes: count each host's rules, then fill arrays of that size (a growing array and
     * a shrink per host were a tenth of a 10,000-app reload). */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < cfg->n_apps; i++) {
            const struct sy_app_spec *spec = &cfg->apps[i];
            for (size_t h = 0; h < spec->n_hosts; h++) {
                const char *host = spec->hosts[h];
                if (host[0] == '*' && host[1] == '.')
                    host++; /* wildcards keep the dot: ".example.com" */
                struct host_entry *e = entry_for(idx, seen, slots - 1, host);
                if (pass == 0) {
                    e->cap_rules += spec->n_paths;
                    continue;
                }
                for (size_t p = 0; p < spec->n_paths; p++) {
                    struct rule *r = &e->rules[e->n_rules++];
                    r->path = spec->paths[p];
                    r->path_len = strlen(r->path);
                    r->app = i;
                    r->host = spec->hosts[h];
                }
            }
        }
        if (pass == 0)
            for (size_t i = 0; i < idx->n_entries; i++)
                idx->entries[i].rules =
                    sy_xmalloc((idx->entries[i].cap_rules ? idx->entries[i].cap_rules : 1) *
                               sizeof(*idx->entries[i].rules));
    }
    free(seen);

    slots = 8;
    while (slots < 2 * idx->n_entries)
        slots *= 2;
    idx->exact = sy_xcalloc(slots, sizeof(*idx->exact));
    idx->exact_mask = slots - 1;
    for (size_t i = 0; i < idx->n_entries; i++) {
        struct host_entry *e = &idx->entries[i];
        /* Two different paths of one length cannot both prefix the same request path, so the
         * order among equal lengths does not matter. */
        qsort(e->rules, e->n_rules, sizeof(*e->rules), cmp_rule);
        if (strcmp(e->host, "*") == 0) {
            idx->any = e;
        } else {
            /* Exact names and wildcard suffixes (".example.com") share the hash: only a
             * wildcard's key begins with a dot. */
            size_t s = hash_bytes(e->host, e->len) & idx->exact_mask;
            while (idx->exact[s])
                s = (s + 1) & idx->exact_mask;
            idx->exact[s] = e;
        }
    }
    return idx;
}

static void app_release(struct app_rt *a)
{
    if (!a || atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(a->schedule);
    free(a->override_weights);
    sy_pick_app_dispose(a);
    free(a);
}

/* The position of cluster `name` among app `spec`'s weights, or spec->n_weights. */
static size_t app_slot(const struct sy_config *cfg, const struct sy_app_spec *spec,
                       const char *name)
{
    size_t i = 0;
    while (i < spec->n_weights && strcmp(cfg->clusters[spec->weights[i].cluster].name, name) != 0)
        i++;
    return i;
}

/* Why weight `k` of `w` does not fit app `spec` (SY_FIT_OK: it does). */
static enum sy_override_fit weight_fit(const struct sy_config *cfg, const struct sy_app_spec *spec,
                                       const struct sy_route_weight *w, size_t k)
{
    if (app_slot(cfg, spec, w[k].cluster) == spec->n_weights) {
        for (size_t c = 0; c < cfg->n_clusters; c++)
            if (strcmp(cfg->clusters[c].name, w[k].cluster) == 0)
                return SY_FIT_NOT_APPS;
        return SY_FIT_UNKNOWN_CLUSTER;
    }
    for (size_t j = 0; j < k; j++)
        if (strcmp(w[j].cluster, w[k].cluster) == 0)
            return SY_FIT_TWICE;
    return w[k].weight > 100 ? SY_FIT_OVER_100 : SY_FIT_OK;
}

enum sy_override_fit sy_route_override_fit(const struct sy_config *cfg, size_t app,
                                           const struct sy_route_weight *w, size_t n, size_t *bad)
{
    const struct sy_app_spec *spec = &cfg->apps[app];
    unsigned sum = 0;
    for (size_t k = 0; k < n; k++) {
        enum sy_override_fit f = weight_fit(cfg, spec, w, k);
        if (f != SY_FIT_OK) {
            if (bad)
                *bad = k;
            return f;
        }
        sum += w[k].weight;
    }
    if (bad)
        *bad = 0;
    return sum == 0 ? SY_FIT_ZERO_SUM : SY_FIT_OK;
}

/* Puts the override's weights in force for `a` when it fits the app's clusters. */
static void apply_override(const struct sy_config *cfg, struct app_rt *a,
                           const struct sy_route_override *ov)
{
    if (sy_route_override_fit(cfg, a->pub.index, ov->weights, ov->n_weights, NULL) != SY_FIT_OK) {
        a->override = SY_OVERRIDE_STALE;
        return;
    }
    const struct sy_app_spec *spec = a->spec;
    struct sy_weight_spec *w = sy_xcalloc(spec->n_weights, sizeof(*w));
    for (size_t i = 0; i < spec->n_weights; i++) {
        w[i] = spec->weights[i];
        w[i].weight = 0;
    }
    for (size_t j = 0; j < ov->n_weights; j++)
        w[app_slot(cfg, spec, ov->weights[j].cluster)].weight = ov->weights[j].weight;
    a->override_weights = w;
    a->weights = w;
    a->override = SY_OVERRIDE_APPLIED;
}

/* The choice state of app `i` of `cfg` under override `ov` (may be NULL). */
static int app_new(const struct sy_config *cfg, size_t i, const struct sy_route_override *ov,
                   struct app_rt **out)
{
    struct app_rt *a = sy_xcalloc(1, sizeof(*a));
    atomic_init(&a->refs, 1);
    a->spec = &cfg->apps[i];
    a->pub.name = a->spec->name;
    a->pub.index = i;
    a->pub.stable = a->spec->stable;
    atomic_init(&a->seq, 0);
    atomic_init(&a->force_ignored, 0);
    a->weights = a->spec->weights;
    a->n_weights = a->spec->n_weights;
    if (ov)
        apply_override(cfg, a, ov);
    build_schedule(a);
    int rc = sy_pick_app_init(a);
    if (rc != 0) {
        app_release(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Frees a table, whole or half-built (NULL apps are skipped), with its references to its apps,
 * its index and through it its config. */
static void table_free(struct sy_route_table *t)
{
    for (size_t i = 0; i < t->cfg->n_apps; i++)
        app_release(t->apps[i]);
    free(t->apps);
    free(t->endpoint_rr);
    sy_route_maint_set_release(t->maint);
    index_release(t->index);
    free(t);
}

/* A table over `idx` (takes the reference) with no apps yet. */
static struct sy_route_table *table_alloc(struct route_index *idx, uint64_t generation)
{
    struct sy_route_table *t = sy_xcalloc(1, sizeof(*t));
    atomic_init(&t->refs, 1);
    t->generation = generation;
    t->index = idx;
    t->cfg = idx->cfg;
    t->apps = sy_xcalloc(t->cfg->n_apps ? t->cfg->n_apps : 1, sizeof(*t->apps));
    t->endpoint_rr = sy_xcalloc(t->cfg->n_clusters, sizeof(*t->endpoint_rr));
    return t;
}

enum sy_override_state sy_route_app_weights(const struct sy_route_table *t, size_t app,
                                            const struct sy_weight_spec **weights, size_t *n)
{
    const struct app_rt *a = t->apps[app];
    *weights = a->weights;
    *n = a->n_weights;
    return a->override;
}

const struct sy_route_app *sy_route_app_find(const struct sy_route_table *t, const char *name)
{
    long ai = sy_config_app_index(t->cfg, name);
    return ai < 0 ? NULL : &t->apps[ai]->pub;
}

size_t sy_route_app_weights_named(const struct sy_route_table *t, size_t app,
                                  struct sy_route_weight **out, enum sy_override_state *state)
{
    const struct app_rt *a = t->apps[app];
    if (state)
        *state = a->override;
    *out = sy_xcalloc(a->n_weights ? a->n_weights : 1, sizeof(**out));
    for (size_t i = 0; i < a->n_weights; i++) {
        (*out)[i].cluster = t->cfg->clusters[a->weights[i].cluster].name;
        (*out)[i].weight = a->weights[i].weight;
    }
    return a->n_weights;
}

long sy_route_app_weight_of(const struct sy_route_table *t, const char *app, const char *cluster)
{
    const struct sy_route_app *pub = sy_route_app_find(t, app);
    if (!pub)
        return -1;
    const struct app_rt *a = t->apps[pub->index];
    for (size_t i = 0; i < a->n_weights; i++)
        if (strcmp(t->cfg->clusters[a->weights[i].cluster].name, cluster) == 0)
            return a->weights[i].weight;
    return 0;
}

void sy_route_weights_text(const struct sy_route_weight *w, size_t n, char *buf, size_t size)
{
    size_t off = 0;
    snprintf(buf, size, "%s", n ? "" : "-");
    for (size_t i = 0; i < n && off < size; i++) {
        int r = snprintf(buf + off, size - off, "%s%s=%u", i ? "," : "", w[i].cluster, w[i].weight);
        if (r < 0)
            break;
        off += (size_t)r;
    }
}

int sy_route_table_new(struct sy_config *cfg, uint64_t generation, struct sy_route_table **out)
{
    int rc = sy_route_table_build(cfg, NULL, 0, generation, out);
    if (rc == 0)
        sy_config_free(cfg); /* the table holds the reference now */
    return rc;
}

int sy_route_table_build(struct sy_config *cfg, const struct sy_route_override *overrides,
                         size_t n_overrides, uint64_t generation, struct sy_route_table **out)
{
    if (cfg->n_clusters == 0)
        return SY_ERR_INVALID;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        unsigned sum = 0;
        for (size_t j = 0; j < cfg->apps[i].n_weights; j++)
            sum += cfg->apps[i].weights[j].weight;
        if (sum == 0)
            return SY_ERR_INVALID;
    }
    /* Each app's override, found through the config's name index: one pass over each. */
    const struct sy_route_override **ov = sy_xcalloc(cfg->n_apps ? cfg->n_apps : 1, sizeof(*ov));
    for (size_t o = 0; o < n_overrides; o++) {
        long ai = sy_config_app_index(cfg, overrides[o].app);
        if (ai >= 0)
            ov[ai] = &overrides[o];
    }
    struct sy_route_table *t = table_alloc(index_new(cfg), generation);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        int rc = app_new(cfg, i, ov[i], &t->apps[i]);
        if (rc != 0) {
            free(ov);
            table_free(t);
            return rc;
        }
    }
    free(ov);
    *out = t;
    return 0;
}

int sy_route_table_update(const struct sy_route_table *prev,
                          const struct sy_route_app_change *changes, size_t n, uint64_t generation,
                          struct sy_route_table **out)
{
    const struct sy_config *cfg = prev->cfg;
    for (size_t k = 0; k < n; k++)
        if (changes[k].app >= cfg->n_apps)
            return SY_ERR_INVALID;
    atomic_fetch_add_explicit(&prev->index->refs, 1, memory_order_relaxed);
    struct sy_route_table *t = table_alloc(prev->index, generation);
    for (size_t k = 0; k < n; k++) {
        size_t i = changes[k].app;
        if (t->apps[i])
            continue; /* named twice: the first wins */
        int rc = app_new(cfg, i, changes[k].override, &t->apps[i]);
        if (rc != 0) {
            table_free(t);
            return rc;
        }
        t->apps[i]->pub.held = changes[k].held;
    }
    /* Every other app's choice state is shared: a pointer and a reference each. */
    for (size_t i = 0; i < cfg->n_apps; i++) {
        if (!t->apps[i]) {
            t->apps[i] = prev->apps[i];
            atomic_fetch_add_explicit(&t->apps[i]->refs, 1, memory_order_relaxed);
        }
    }
    /* Weights change, maintenance stays (only `maintenance` changes it). */
    t->maint = prev->maint;
    if (t->maint)
        atomic_fetch_add_explicit(&t->maint->refs, 1, memory_order_relaxed);
    *out = t;
    return 0;
}

bool sy_route_app_is_held(const struct sy_route_table *t, size_t app)
{
    return app < t->cfg->n_apps && t->apps[app]->pub.held;
}

bool sy_route_table_shares_app(const struct sy_route_table *a, const struct sy_route_table *b,
                               size_t app)
{
    return a->index == b->index && a->apps[app] == b->apps[app];
}

struct sy_route_table *sy_route_table_acquire(struct sy_route_table *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void sy_route_table_release(struct sy_route_table *t)
{
    if (!t)
        return;
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    table_free(t);
}

uint64_t sy_route_table_generation(const struct sy_route_table *t)
{
    return t->generation;
}

const struct sy_config *sy_route_table_config(const struct sy_route_table *t)
{
    return t->cfg;
}

static const struct rule *match_paths(const struct host_entry *e, struct sy_slice path)
{
    if (!e)
        return NULL;
    for (size_t i = 0; i < e->n_rules; i++) {
        const struct rule *r = &e->rules[i];
        if (r->path_len <= path.len && memcmp(r->path, path.p, r->path_len) == 0)
            return r;
    }
    return NULL;
}

/* Lower-cases the host into buf without its port and trailing dot; returns its length, or
 * SIZE_MAX when it cannot be a host name we route on. */
static size_t normalize_host(struct sy_slice host, char *buf)
{
    size_t len = host.len;
    if (len == 0)
        return 0;
    if (host.p[0] == '[') {
        /* IP literal: keep through the closing bracket. */
        const char *end = memchr(host.p, ']', len);
        if (!end)
            return SIZE_MAX;
        len = (size_t)(end - host.p) + 1;
    } else {
        const char *colon = memchr(host.p, ':', len);
        if (colon)
            len = (size_t)(colon - host.p);
    }
    if (len > 0 && host.p[len - 1] == '.')
        len--;
    if (len > MAX_HOST)
        return SIZE_MAX;
    for (size_t i = 0; i < len; i++) {
        char c = host.p[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return len;
}

static const struct host_entry *find_entry(const struct route_index *idx, const char *host,
                                           size_t len)
{
    size_t s = hash_bytes(host, len) & idx->exact_mask;
    for (const struct host_entry *e; (e = idx->exact[s]); s = (s + 1) & idx->exact_mask)
        if (e->len == len && memcmp(e->host, host, len) == 0)
            return e;
    return NULL;
}

static const struct rule *match(const struct sy_route_table *t, struct sy_slice host,
                                struct sy_slice path)
{
    const struct route_index *idx = t->index;
    char buf[MAX_HOST + 1];
    size_t len = normalize_host(host, buf);
    const struct rule *r = NULL;
    if (len != SIZE_MAX && len > 0) {
        const struct host_entry *e = buf[0] != '.' ? find_entry(idx, buf, len) : NULL;
        if (e)
            r = match_paths(e, path);
        /* Wildcards: each suffix that begins at a dot, longest first; "*.x" needs at least one
         * character before ".x", hence from 1. A lookup per dot, not a scan of every
         * wildcard: an unknown host costs the same among 100 apps as among 50,000. */
        for (size_t i = 1; !r && i < len; i++)
            if (buf[i] == '.' && (e = find_entry(idx, buf + i, len - i)))
                r = match_paths(e, path);
    }
    if (!r)
        r = match_paths(idx->any, path);
    return r;
}

const struct sy_route_app *sy_route_match(const struct sy_route_table *t, struct sy_slice host,
                                          struct sy_slice path)
{
    const struct rule *r = match(t, host, path);
    return r ? &t->apps[r->app]->pub : NULL;
}

const struct sy_route_app *sy_route_match_rule(const struct sy_route_table *t, struct sy_slice host,
                                               struct sy_slice path, struct sy_route_rule *rule)
{
    const struct rule *r = match(t, host, path);
    if (!r)
        return NULL;
    rule->host = r->host;
    rule->path = r->path;
    return &t->apps[r->app]->pub;
}

size_t sy_route_cluster_count(const struct sy_route_table *t)
{
    return t->cfg->n_clusters;
}

const struct sy_cluster_spec *sy_route_cluster(const struct sy_route_table *t, size_t i)
{
    return &t->cfg->clusters[i];
}

const struct sy_endpoint_spec *sy_route_next_endpoint_avoiding(const struct sy_route_table *t,
                                                               size_t i,
                                                               const struct sy_endpoint_spec *avoid,
                                                               bool *up)
{
    const struct sy_cluster_spec *c = &t->cfg->clusters[i];
    if (c->n_endpoints == 0)
        return NULL;
    unsigned n = atomic_fetch_add_explicit(&t->endpoint_rr[i], 1, memory_order_relaxed);
    const struct sy_endpoint_spec *first = &c->endpoints[n % c->n_endpoints];
    if (!c->health.on && !c->outlier.on && (!avoid || c->n_endpoints == 1)) {
        /* Nothing watches these endpoints: every one is up. */
        if (up)
            *up = first != avoid;
        return first;
    }
    uint64_t now = 0;
    for (size_t k = 0; k < c->n_endpoints; k++) {
        const struct sy_endpoint_spec *ep = &c->endpoints[(n + k) % c->n_endpoints];
        if (ep == avoid)
            continue;
        if (ep->hs && !now)
            now = sy_now_ms();
        if (sy_ep_is_up(ep->hs, now)) {
            if (up)
                *up = true;
            return ep;
        }
    }
    /* None up but the one to avoid, or none at all: the round robin's, as without checks. */
    if (up)
        *up = false;
    return first;
}

const struct sy_endpoint_spec *sy_route_next_endpoint(const struct sy_route_table *t, size_t i)
{
    return sy_route_next_endpoint_avoiding(t, i, NULL, NULL);
}
