/* SPDX-License-Identifier: MIT */
/* The compiled routing table. A checked config becomes an immutable snapshot: exact host names
 * in an open-addressing hash, `*.suffix` wildcards longest first, then the catch-all; under each
 * host its path prefixes longest first. Each app's weights become a precomputed smooth weighted
 * round-robin schedule, walked by one shared atomic counter, so every worker draws from the
 * same exact sequence and the request path takes no lock; pick.c adds the sticky bucket ranges
 * and the force key and makes the choice. */
#include "switchyard/routing.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "table_internal.h"

#define MAX_HOST 255

struct rule {
    const char *path;
    size_t path_len;
    struct app_rt *app;
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
    /* FNV-1a, 64 bit. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
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

static struct host_entry *entry_for(struct sy_route_table *t, const char *host)
{
    for (size_t i = 0; i < t->n_entries; i++)
        if (strcmp(t->entries[i].host, host) == 0)
            return &t->entries[i];
    struct host_entry *e = &t->entries[t->n_entries++];
    e->host = host;
    e->len = strlen(host);
    return e;
}

static int cmp_rule(const void *a, const void *b)
{
    const struct rule *x = a, *y = b;
    if (x->path_len != y->path_len)
        return x->path_len > y->path_len ? -1 : 1;
    return 0;
}

static int cmp_wild(const void *a, const void *b)
{
    const struct host_entry *x = *(struct host_entry *const *)a;
    const struct host_entry *y = *(struct host_entry *const *)b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return 0;
}

/* Frees a table, whole or half-built, but not the config it was built from. */
static void table_free(struct sy_route_table *t)
{
    for (size_t i = 0; i < t->cfg->n_apps; i++) {
        free(t->apps[i].schedule);
        free(t->apps[i].override_weights);
        sy_pick_app_dispose(&t->apps[i]);
    }
    for (size_t i = 0; i < t->n_entries; i++)
        free(t->entries[i].rules);
    free(t->apps);
    free(t->entries);
    free(t->exact);
    free(t->wild);
    free(t->endpoint_rr);
    free(t);
}

/* Puts the override's weights in force for `a` when it fits the app's clusters. */
static void apply_override(const struct sy_config *cfg, struct app_rt *a,
                           const struct sy_route_override *ov)
{
    const struct sy_app_spec *spec = a->spec;
    struct sy_weight_spec *w = sy_xcalloc(spec->n_weights, sizeof(*w));
    for (size_t i = 0; i < spec->n_weights; i++) {
        w[i] = spec->weights[i];
        w[i].weight = 0;
    }
    unsigned sum = 0;
    for (size_t j = 0; j < ov->n_weights; j++) {
        size_t i = 0;
        while (i < spec->n_weights &&
               strcmp(cfg->clusters[spec->weights[i].cluster].name, ov->weights[j].cluster) != 0)
            i++;
        if (i == spec->n_weights || ov->weights[j].weight > 100) {
            free(w);
            a->override = SY_OVERRIDE_STALE;
            return;
        }
        w[i].weight = ov->weights[j].weight;
        sum += w[i].weight;
    }
    if (sum == 0) {
        free(w);
        a->override = SY_OVERRIDE_STALE;
        return;
    }
    a->override_weights = w;
    a->weights = w;
    a->override = SY_OVERRIDE_APPLIED;
}

enum sy_override_state sy_route_app_weights(const struct sy_route_table *t, size_t app,
                                            const struct sy_weight_spec **weights, size_t *n)
{
    const struct app_rt *a = &t->apps[app];
    *weights = a->weights;
    *n = a->n_weights;
    return a->override;
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
    struct sy_route_table *t = sy_xcalloc(1, sizeof(*t));
    atomic_init(&t->refs, 1);
    t->generation = generation;
    t->cfg = sy_config_acquire(cfg);
    t->apps = sy_xcalloc(cfg->n_apps, sizeof(*t->apps));
    t->endpoint_rr = sy_xcalloc(cfg->n_clusters, sizeof(*t->endpoint_rr));

    size_t n_hosts = 0;
    for (size_t i = 0; i < cfg->n_apps; i++)
        n_hosts += cfg->apps[i].n_hosts;
    t->entries = sy_xcalloc(n_hosts, sizeof(*t->entries));

    for (size_t i = 0; i < cfg->n_apps; i++) {
        struct app_rt *a = &t->apps[i];
        a->spec = &cfg->apps[i];
        a->pub.name = a->spec->name;
        a->pub.index = i;
        a->pub.stable = a->spec->stable;
        atomic_init(&a->seq, 0);
        atomic_init(&a->force_ignored, 0);
        a->weights = a->spec->weights;
        a->n_weights = a->spec->n_weights;
        for (size_t o = 0; o < n_overrides; o++)
            if (strcmp(overrides[o].app, a->spec->name) == 0)
                apply_override(cfg, a, &overrides[o]);
        build_schedule(a);
        int rc = sy_pick_app_init(a);
        if (rc != 0) {
            table_free(t);
            sy_config_free(cfg); /* the reference the table took */
            return rc;
        }
        for (size_t h = 0; h < a->spec->n_hosts; h++) {
            const char *host = a->spec->hosts[h];
            if (host[0] == '*' && host[1] == '.')
                host++; /* wildcards keep the dot: ".example.com" */
            struct host_entry *e = entry_for(t, host);
            for (size_t p = 0; p < a->spec->n_paths; p++) {
                sy_xgrow((void **)&e->rules, &e->cap_rules, e->n_rules + 1, sizeof(*e->rules));
                struct rule *r = &e->rules[e->n_rules++];
                r->path = a->spec->paths[p];
                r->path_len = strlen(r->path);
                r->app = a;
                r->host = a->spec->hosts[h];
            }
        }
    }

    size_t slots = 8;
    while (slots < 2 * t->n_entries)
        slots *= 2;
    t->exact = sy_xcalloc(slots, sizeof(*t->exact));
    t->exact_mask = slots - 1;
    t->wild = sy_xcalloc(t->n_entries ? t->n_entries : 1, sizeof(*t->wild));
    for (size_t i = 0; i < t->n_entries; i++) {
        struct host_entry *e = &t->entries[i];
        /* Two different paths of one length cannot both prefix the same request path, so the
         * order among equal lengths does not matter. */
        qsort(e->rules, e->n_rules, sizeof(*e->rules), cmp_rule);
        if (strcmp(e->host, "*") == 0) {
            t->any = e;
        } else if (e->host[0] == '.') {
            t->wild[t->n_wild++] = e;
        } else {
            size_t s = hash_bytes(e->host, e->len) & t->exact_mask;
            while (t->exact[s])
                s = (s + 1) & t->exact_mask;
            t->exact[s] = e;
        }
    }
    qsort(t->wild, t->n_wild, sizeof(*t->wild), cmp_wild);
    *out = t;
    return 0;
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
    struct sy_config *cfg = t->cfg;
    table_free(t); /* reads cfg */
    sy_config_free(cfg);
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

static const struct rule *match(const struct sy_route_table *t, struct sy_slice host,
                                struct sy_slice path)
{
    char buf[MAX_HOST + 1];
    size_t len = normalize_host(host, buf);
    const struct rule *r = NULL;
    if (len != SIZE_MAX && len > 0) {
        size_t s = hash_bytes(buf, len) & t->exact_mask;
        for (const struct host_entry *e; (e = t->exact[s]); s = (s + 1) & t->exact_mask) {
            if (e->len == len && memcmp(e->host, buf, len) == 0) {
                r = match_paths(e, path);
                break;
            }
        }
        for (size_t i = 0; !r && i < t->n_wild; i++) {
            const struct host_entry *e = t->wild[i];
            if (e->len < len && memcmp(e->host, buf + len - e->len, e->len) == 0)
                r = match_paths(e, path);
        }
    }
    if (!r)
        r = match_paths(t->any, path);
    return r;
}

const struct sy_route_app *sy_route_match(const struct sy_route_table *t, struct sy_slice host,
                                          struct sy_slice path)
{
    const struct rule *r = match(t, host, path);
    return r ? &r->app->pub : NULL;
}

const struct sy_route_app *sy_route_match_rule(const struct sy_route_table *t, struct sy_slice host,
                                               struct sy_slice path, struct sy_route_rule *rule)
{
    const struct rule *r = match(t, host, path);
    if (!r)
        return NULL;
    rule->host = r->host;
    rule->path = r->path;
    return &r->app->pub;
}

size_t sy_route_cluster_count(const struct sy_route_table *t)
{
    return t->cfg->n_clusters;
}

const struct sy_cluster_spec *sy_route_cluster(const struct sy_route_table *t, size_t i)
{
    return &t->cfg->clusters[i];
}

const struct sy_endpoint_spec *sy_route_next_endpoint(const struct sy_route_table *t, size_t i)
{
    const struct sy_cluster_spec *c = &t->cfg->clusters[i];
    if (c->n_endpoints == 0)
        return NULL;
    unsigned n = atomic_fetch_add_explicit(&t->endpoint_rr[i], 1, memory_order_relaxed);
    return &c->endpoints[n % c->n_endpoints];
}
