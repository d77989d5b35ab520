/* SPDX-License-Identifier: MIT */
/* The table diff: what would change if a new file replaced the one in force, as `switchyard -t`
 * shows it before a reload. Apps are compared by name (added, removed, file weights, the weights
 * in force with the overrides applied, stable cluster, exclusive moves), every host and path
 * that either file names is asked of both tables (so a change of winner is found however it
 * comes about: a new app, a longer prefix, a wildcard), and clusters are compared by name. Each
 * difference is one line for people, handed to the caller with its kind and app. */
#include "switchyard/routing.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/overrides.h"

static const char *const kind_names[] = {
    [SY_DIFF_APP_REMOVED] = "app_removed",
    [SY_DIFF_APP_ADDED] = "app_added",
    [SY_DIFF_FILE_WEIGHTS] = "file_weights",
    [SY_DIFF_HIDDEN] = "hidden",
    [SY_DIFF_OVERRIDE_STATE] = "override_state",
    [SY_DIFF_EFFECTIVE] = "effective",
    [SY_DIFF_EXCLUSIVE_SWITCH] = "exclusive_switch",
    [SY_DIFF_STABLE] = "stable",
    [SY_DIFF_WINNER] = "winner",
    [SY_DIFF_CLUSTER_REMOVED] = "cluster_removed",
    [SY_DIFF_CLUSTER_ADDED] = "cluster_added",
    [SY_DIFF_ENDPOINTS] = "endpoints",
    [SY_DIFF_MAX_CONNECTIONS] = "max_connections",
    [SY_DIFF_HEALTH] = "health",
};

const char *sy_route_diff_kind_name(enum sy_route_diff_kind kind)
{
    if ((size_t)kind >= sizeof(kind_names) / sizeof(kind_names[0]) || !kind_names[kind])
        return "unknown";
    return kind_names[kind];
}

/* The override of `app` in `ov` (may be NULL), or NULL. */
static const struct sy_override *override_of(const struct sy_overrides *ov, const char *app)
{
    return ov ? sy_overrides_find(ov, app) : NULL;
}

struct diff {
    sy_route_diff_cb cb;
    void *arg;
    size_t n;
};

static void diff_line(struct diff *df, enum sy_route_diff_kind kind, const char *app,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void diff_line(struct diff *df, enum sy_route_diff_kind kind, const char *app,
                      const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    df->n++;
    struct sy_route_diff_line line = {kind, app, text};
    df->cb(&line, df->arg);
}

/* File weights of an app spec, by name, in a new array (free() it). */
static size_t file_weights(const struct sy_config *cfg, const struct sy_app_spec *a,
                           struct sy_route_weight **out)
{
    *out = sy_xcalloc(a->n_weights ? a->n_weights : 1, sizeof(**out));
    for (size_t i = 0; i < a->n_weights; i++) {
        (*out)[i].cluster = cfg->clusters[a->weights[i].cluster].name;
        (*out)[i].weight = a->weights[i].weight;
    }
    return a->n_weights;
}

static bool same_weights(const struct sy_route_weight *a, size_t na,
                         const struct sy_route_weight *b, size_t nb)
{
    /* Compared as splits: a cluster absent on one side counts as 0. */
    for (size_t i = 0; i < na; i++) {
        unsigned wb = 0;
        for (size_t k = 0; k < nb; k++)
            if (strcmp(a[i].cluster, b[k].cluster) == 0)
                wb = b[k].weight;
        if (wb != a[i].weight)
            return false;
    }
    for (size_t k = 0; k < nb; k++) {
        bool in_a = false;
        for (size_t i = 0; i < na && !in_a; i++)
            in_a = strcmp(a[i].cluster, b[k].cluster) == 0;
        if (!in_a && b[k].weight != 0)
            return false;
    }
    return true;
}

/* A host name that the pattern matches, to ask both tables with. */
static void probe_host(const char *pattern, char *buf, size_t size)
{
    if (strcmp(pattern, "*") == 0)
        snprintf(buf, size, "%s", "");
    else if (pattern[0] == '*' && pattern[1] == '.')
        snprintf(buf, size, "sy-probe%s", pattern + 1);
    else
        snprintf(buf, size, "%s", pattern);
}

/* The (host, path) pairs a config claims, sorted, so that asking is a binary search. */
struct claim_set {
    struct claim_pair {
        const char *host, *path;
    } * v;
    size_t n;
};

static int cmp_claim_pair(const void *a, const void *b)
{
    const struct claim_pair *x = a, *y = b;
    int r = strcmp(x->host, y->host);
    return r ? r : strcmp(x->path, y->path);
}

static void claim_set_init(struct claim_set *cs, const struct sy_config *cfg)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_apps; i++)
        n += cfg->apps[i].n_hosts * cfg->apps[i].n_paths;
    cs->v = sy_xcalloc(n ? n : 1, sizeof(*cs->v));
    cs->n = 0;
    for (size_t i = 0; i < cfg->n_apps; i++)
        for (size_t h = 0; h < cfg->apps[i].n_hosts; h++)
            for (size_t p = 0; p < cfg->apps[i].n_paths; p++)
                cs->v[cs->n++] = (struct claim_pair){cfg->apps[i].hosts[h], cfg->apps[i].paths[p]};
    qsort(cs->v, cs->n, sizeof(*cs->v), cmp_claim_pair);
}

static bool claims(const struct claim_set *cs, const char *host, const char *path)
{
    struct claim_pair key = {host, path};
    return cs->n && bsearch(&key, cs->v, cs->n, sizeof(*cs->v), cmp_claim_pair);
}

/* Whether app `b` claims the same hosts and paths as `a`, in the same order. */
static bool same_claims(const struct sy_app_spec *a, const struct sy_app_spec *b)
{
    if (a->n_hosts != b->n_hosts || a->n_paths != b->n_paths)
        return false;
    for (size_t h = 0; h < a->n_hosts; h++)
        if (strcmp(a->hosts[h], b->hosts[h]) != 0)
            return false;
    for (size_t p = 0; p < a->n_paths; p++)
        if (strcmp(a->paths[p], b->paths[p]) != 0)
            return false;
    return true;
}

/* Asks both tables who wins (host pattern, path) and says so when the answers differ. */
static void diff_winner(struct diff *df, const char *pattern, const char *path,
                        const struct sy_route_table *old, const struct sy_route_table *neu)
{
    char host[300];
    probe_host(pattern, host, sizeof(host));
    struct sy_slice hs = sy_slice_of(host, strlen(host));
    struct sy_slice ps = sy_slice_of(path, strlen(path));
    const struct sy_route_app *x = sy_route_match(old, hs, ps);
    const struct sy_route_app *y = sy_route_match(neu, hs, ps);
    const char *xn = x ? x->name : NULL, *yn = y ? y->name : NULL;
    if ((xn == NULL) == (yn == NULL) && (!xn || strcmp(xn, yn) == 0))
        return;
    diff_line(df, SY_DIFF_WINNER, yn ? yn : xn, "~ host %s path %s: %s -> %s", pattern, path,
              xn ? xn : "(no app: 404)", yn ? yn : "(no app: 404)");
}

/* Every (host, path) that `cfg` claims, asked of both tables; `skip` (may be NULL) lists
 * the pairs already asked. An app that `skip` has by the same name with the same hosts and
 * paths has nothing left to ask: the set of `skip`'s pairs is sorted only when some app
 * differs (a reload that changes weights alone never builds it). */
static void diff_winners(struct diff *df, const struct sy_config *cfg, const struct sy_config *skip,
                         const struct sy_route_table *old, const struct sy_route_table *neu)
{
    struct claim_set cs = {0};
    bool have_cs = false;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct sy_app_spec *a = &cfg->apps[i];
        if (skip) {
            long si = sy_config_app_index(skip, a->name);
            if (si >= 0 && same_claims(&skip->apps[si], a))
                continue;
            if (!have_cs)
                claim_set_init(&cs, skip);
            have_cs = true;
        }
        for (size_t h = 0; h < a->n_hosts; h++)
            for (size_t p = 0; p < a->n_paths; p++)
                if (!skip || !claims(&cs, a->hosts[h], a->paths[p]))
                    diff_winner(df, a->hosts[h], a->paths[p], old, neu);
    }
    free(cs.v);
}

/* An exclusive app that a reload moves goes through a switch (admin/exclusive.c). */
static void diff_exclusive(struct diff *df, const struct sy_app_spec *oa,
                           const struct sy_app_spec *na, const struct sy_route_weight *ef_old,
                           size_t neo, const struct sy_route_weight *ef_new, size_t nen)
{
    if (oa->mode != SY_APP_EXCLUSIVE || na->mode != SY_APP_EXCLUSIVE)
        return;
    const char *from = NULL, *to = NULL;
    for (size_t i = 0; i < neo; i++)
        if (ef_old[i].weight == 100)
            from = ef_old[i].cluster;
    for (size_t i = 0; i < nen; i++)
        if (ef_new[i].weight == 100)
            to = ef_new[i].cluster;
    if (from && to && strcmp(from, to) != 0)
        diff_line(df, SY_DIFF_EXCLUSIVE_SWITCH, na->name,
                  "! app %s is exclusive: an exclusive switch moves it from %s to %s (its new "
                  "requests held while %s drains, then released to %s)",
                  na->name, from, to, from, to);
}

static void diff_apps(struct diff *df, const struct sy_config *oc, const struct sy_config *nc,
                      const struct sy_route_table *old, const struct sy_route_table *neu,
                      const struct sy_overrides *ov)
{
    for (size_t i = 0; i < oc->n_apps; i++)
        if (sy_config_app_index(nc, oc->apps[i].name) < 0)
            diff_line(df, SY_DIFF_APP_REMOVED, oc->apps[i].name, "- app %s%s", oc->apps[i].name,
                      override_of(ov, oc->apps[i].name)
                          ? " (its override is kept, shown as stale, until released)"
                          : "");
    for (size_t i = 0; i < nc->n_apps; i++) {
        const struct sy_app_spec *na = &nc->apps[i];
        long oi = sy_config_app_index(oc, na->name);
        if (oi < 0) {
            diff_line(df, SY_DIFF_APP_ADDED, na->name, "+ app %s (%zu hosts, %zu paths)", na->name,
                      na->n_hosts, na->n_paths);
            continue;
        }
        const struct sy_app_spec *oa = &oc->apps[oi];
        struct sy_route_weight *fw_old, *fw_new, *ef_old, *ef_new;
        size_t nfo = file_weights(oc, oa, &fw_old), nfn = file_weights(nc, na, &fw_new);
        enum sy_override_state so, sn;
        size_t neo = sy_route_app_weights_named(old, (size_t)oi, &ef_old, &so);
        size_t nen = sy_route_app_weights_named(neu, i, &ef_new, &sn);
        char a[1024], b[1024];
        if (!same_weights(fw_old, nfo, fw_new, nfn)) {
            sy_route_weights_text(fw_old, nfo, a, sizeof(a));
            sy_route_weights_text(fw_new, nfn, b, sizeof(b));
            diff_line(df, SY_DIFF_FILE_WEIGHTS, na->name, "~ app %s: file weights %s -> %s",
                      na->name, a, b);
            const struct sy_override *o = override_of(ov, na->name);
            if (sn == SY_OVERRIDE_APPLIED && o) {
                char w[1024];
                sy_route_weights_text(o->weights, o->n_weights, w, sizeof(w));
                diff_line(df, SY_DIFF_HIDDEN, na->name,
                          "! app %s: the override %s (seq %" PRIu64 ": %s) hides this change "
                          "until `release %s`",
                          na->name, w, o->seq, o->command, na->name);
            }
        }
        if (so != sn)
            diff_line(df, SY_DIFF_OVERRIDE_STATE, na->name, "! app %s: its override %s", na->name,
                      sn == SY_OVERRIDE_STALE
                          ? "would no longer fit: stale, the file's weights apply"
                          : "would apply again");
        if (!same_weights(ef_old, neo, ef_new, nen)) {
            sy_route_weights_text(ef_old, neo, a, sizeof(a));
            sy_route_weights_text(ef_new, nen, b, sizeof(b));
            diff_line(df, SY_DIFF_EFFECTIVE, na->name, "~ app %s: weights in force %s -> %s",
                      na->name, a, b);
            diff_exclusive(df, oa, na, ef_old, neo, ef_new, nen);
        }
        if (strcmp(oc->clusters[oa->stable].name, nc->clusters[na->stable].name) != 0)
            diff_line(df, SY_DIFF_STABLE, na->name, "~ app %s: stable cluster %s -> %s", na->name,
                      oc->clusters[oa->stable].name, nc->clusters[na->stable].name);
        free(fw_old);
        free(fw_new);
        free(ef_old);
        free(ef_new);
    }
}

/* A cluster's health settings in a line: "health /healthz every 2000 ms (timeout 1000 ms,
 * rise 2, fall 3, expect 200-399), outlier off, retry budget 20% of 10000 ms (min 3)". */
static void health_text(const struct sy_cluster_spec *c, char *buf, size_t size)
{
    const struct sy_health_spec *h = &c->health;
    const struct sy_outlier_spec *o = &c->outlier;
    char expect[96] = "";
    size_t len = 0;
    for (size_t i = 0; i < h->n_expect && len < sizeof(expect); i++)
        len += (size_t)snprintf(expect + len, sizeof(expect) - len, "%s%u-%u", i ? "," : "",
                                h->expect[i].lo, h->expect[i].hi);
    int n = h->on
                ? snprintf(buf, size,
                           "health %s every %u ms (timeout %u ms, rise %u, fall %u, expect %s%s%s)",
                           h->path, h->interval_ms, h->timeout_ms, h->rise, h->fall, expect,
                           h->host ? ", host " : "", h->host ? h->host : "")
                : snprintf(buf, size, "health off");
    if (n < 0 || (size_t)n >= size)
        return;
    size_t at = (size_t)n;
    if (o->on)
        n = snprintf(buf + at, size - at, ", outlier %u in a row for %u..%u ms",
                     o->consecutive_failures, o->base_ms, o->max_ms);
    else
        n = snprintf(buf + at, size - at, ", outlier off");
    if (n < 0 || (size_t)n >= size - at)
        return;
    at += (size_t)n;
    snprintf(buf + at, size - at, ", retry budget %u%% of %u ms (min %u)", c->retry_budget.percent,
             c->retry_budget.window_ms, c->retry_budget.min);
}

static void diff_clusters(struct diff *df, const struct sy_config *oc, const struct sy_config *nc)
{
    for (size_t i = 0; i < oc->n_clusters; i++) {
        bool kept = false;
        for (size_t k = 0; k < nc->n_clusters && !kept; k++)
            kept = strcmp(oc->clusters[i].name, nc->clusters[k].name) == 0;
        if (!kept)
            diff_line(df, SY_DIFF_CLUSTER_REMOVED, NULL, "- cluster %s", oc->clusters[i].name);
    }
    for (size_t k = 0; k < nc->n_clusters; k++) {
        const struct sy_cluster_spec *n = &nc->clusters[k];
        char was[320], now[320];
        const struct sy_cluster_spec *o = NULL;
        for (size_t i = 0; i < oc->n_clusters && !o; i++)
            if (strcmp(oc->clusters[i].name, n->name) == 0)
                o = &oc->clusters[i];
        if (!o) {
            diff_line(df, SY_DIFF_CLUSTER_ADDED, NULL, "+ cluster %s (%zu endpoints)", n->name,
                      n->n_endpoints);
            continue;
        }
        bool same = o->n_endpoints == n->n_endpoints;
        for (size_t e = 0; same && e < n->n_endpoints; e++)
            same = strcmp(o->endpoints[e].address, n->endpoints[e].address) == 0;
        if (!same)
            diff_line(df, SY_DIFF_ENDPOINTS, NULL, "~ cluster %s: endpoints change (%zu -> %zu)",
                      n->name, o->n_endpoints, n->n_endpoints);
        if (o->max_connections != n->max_connections || o->queue_max != n->queue_max ||
            o->queue_timeout_ms != n->queue_timeout_ms)
            diff_line(df, SY_DIFF_MAX_CONNECTIONS, NULL,
                      "~ cluster %s: max_connections %zu -> %zu, queue.max %zu -> %zu, "
                      "queue.timeout %u -> %u ms",
                      n->name, o->max_connections, n->max_connections, o->queue_max, n->queue_max,
                      o->queue_timeout_ms, n->queue_timeout_ms);
        health_text(o, was, sizeof(was));
        health_text(n, now, sizeof(now));
        if (strcmp(was, now) != 0)
            diff_line(df, SY_DIFF_HEALTH, NULL, "~ cluster %s: %s -> %s", n->name, was, now);
    }
}

size_t sy_route_diff(const struct sy_route_table *old, const struct sy_route_table *neu,
                     const struct sy_overrides *ov, sy_route_diff_cb cb, void *arg)
{
    const struct sy_config *oc = sy_route_table_config(old), *nc = sy_route_table_config(neu);
    struct diff df = {cb, arg, 0};
    diff_apps(&df, oc, nc, old, neu, ov);
    diff_winners(&df, oc, NULL, old, neu);
    diff_winners(&df, nc, oc, old, neu);
    diff_clusters(&df, oc, nc);
    return df.n;
}
