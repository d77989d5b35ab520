/* SPDX-License-Identifier: MIT */
/* The clusters: section of the routing file: each cluster's name, endpoints (host:port, resolved
 * at load unless sy_config_set_resolve(false)), upstream protocol, connection limit and queue;
 * and the lookup of a cluster by name for the apps that weigh it. */
#include "switchyard/config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "config_internal.h"
#include "yaml_doc.h"

static bool is_cluster_name(const char *s, size_t len)
{
    if (len == 0 || len > MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                  (i > 0 && (ch == '_' || ch == '-'));
        if (!ok)
            return false;
    }
    return true;
}

static void parse_endpoints(struct ctx *c, struct sy_cluster_spec *cl, const struct sy_ynode *v)
{
    if (!sy_cfg_is_list(c, v, "endpoints"))
        return;
    if (!sy_cfg_has_items(v)) {
        sy_cfg_report(c, v, "endpoints must have at least one entry");
        return;
    }
    size_t cap = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        const struct sy_ynode *n = sy_cfg_node_at(c, *it);
        const char *s = sy_cfg_string_value(c, n, "endpoint");
        if (!s)
            continue;
        struct sy_endpoint_spec e;
        memset(&e, 0, sizeof(e));
        const char *why;
        if (s[0] == ':') {
            sy_cfg_report(c, n, "bad endpoint '%s': an endpoint needs a host", sy_cfg_show(n).s);
            continue;
        }
        if (sy_parse_hostport(s, sy_cfg_resolve_names, &e.addr, &e.addrlen, &why) != SY_OK) {
            sy_cfg_report(c, n, "bad endpoint '%s': %s", sy_cfg_show(n).s, why);
            continue;
        }
        e.address = sy_xstrdup(s);
        e.mark = sy_cfg_mark_of(n);
        sy_xgrow((void **)&cl->endpoints, &cap, cl->n_endpoints + 1, sizeof(e));
        cl->endpoints[cl->n_endpoints++] = e;
    }
}

const char *sy_upstream_proto_name(enum sy_upstream_proto p)
{
    switch (p) {
    case SY_PROTO_H2C:
        return "h2c";
    case SY_PROTO_H2:
        return "h2";
    case SY_PROTO_HTTP1:
        break;
    }
    return "http1";
}

/* `protocol: http1 | h2c | h2`. */
static void parse_protocol(struct ctx *c, struct sy_cluster_spec *cl, const struct sy_ynode *v,
                           bool has_tls)
{
    const char *s = sy_cfg_is_scalar(v) ? sy_cfg_text(v) : NULL;
    if (s && strcmp(s, "http1") == 0) {
        cl->protocol = SY_PROTO_HTTP1;
    } else if (s && strcmp(s, "h2c") == 0) {
        cl->protocol = SY_PROTO_H2C;
        if (has_tls)
            sy_cfg_report(c, v,
                          "protocol h2c is cleartext HTTP/2 and cannot have a 'tls' block; use "
                          "protocol h2 for HTTP/2 over TLS");
    } else if (s && strcmp(s, "h2") == 0) {
        cl->protocol = SY_PROTO_H2;
    } else {
        sy_cfg_report(c, v, "protocol must be http1, h2c or h2, got %s", sy_cfg_show_value(v).s);
    }
}

/* A cluster's `max_connections: N` (0: no cap). Returns false when it is not a number. */
static bool parse_max_connections(struct ctx *c, struct sy_cluster_spec *cl,
                                  const struct sy_ynode *v)
{
    uint64_t n;
    if (!sy_cfg_parse_uint(v, SY_CLUSTER_CAP_MAX, &n)) {
        sy_cfg_report(c, v, "max_connections must be an integer 0..%d (0: no cap), got %s",
                      SY_CLUSTER_CAP_MAX, sy_cfg_show_value(v).s);
        return false;
    }
    cl->max_connections = (size_t)n;
    return true;
}

/* A cluster's `queue: {max: N, timeout: DURATION}`: requests waiting for a connection when
 * max_connections are all busy. */
static void parse_cluster_queue(struct ctx *c, struct sy_cluster_spec *cl, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "queue"))
        return;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *name;
        if (!sy_cfg_map_entry(c, v, p, &k, &pv, &name))
            continue;
        if (strcmp(name, "max") == 0) {
            uint64_t n;
            if (sy_cfg_parse_uint(pv, SY_CLUSTER_CAP_MAX, &n))
                cl->queue_max = (size_t)n;
            else
                sy_cfg_report(c, pv, "max must be an integer 0..%d (0: no request waits), got %s",
                              SY_CLUSTER_CAP_MAX, sy_cfg_show_value(pv).s);
        } else if (strcmp(name, "timeout") == 0) {
            sy_cfg_duration_ms(c, pv, "timeout", "5s, 500ms or 1m", "", &cl->queue_timeout_ms);
        } else {
            sy_cfg_report(c, k, "unknown key '%s' in queue", sy_cfg_show(k).s);
        }
    }
}

/* `expect: 200-399` or a list of such ranges (a single status, "200", is a range of one). */
static bool parse_range(const char *s, struct sy_status_range *r)
{
    unsigned lo = 0, hi = 0;
    int n = 0;
    if (sscanf(s, "%3u-%3u%n", &lo, &hi, &n) == 2 && s[n] == '\0' && n == 7) {
        r->lo = lo;
        r->hi = hi;
    } else if (sscanf(s, "%3u%n", &lo, &n) == 1 && s[n] == '\0' && n == 3) {
        r->lo = r->hi = lo;
    } else {
        return false;
    }
    return r->lo >= 100 && r->hi <= 599 && r->lo <= r->hi;
}

static void parse_expect_item(struct ctx *c, struct sy_health_spec *h, const struct sy_ynode *n)
{
    const char *s = sy_cfg_is_scalar(n) ? sy_cfg_text(n) : NULL;
    struct sy_status_range r;
    if (!s || !parse_range(s, &r)) {
        sy_cfg_report(c, n,
                      "expect must be a status or a range of statuses within 100..599, such as "
                      "200 or 200-399 (low first), got %s",
                      sy_cfg_show_value(n).s);
        return;
    }
    if (h->n_expect == SY_HEALTH_EXPECT_MAX) {
        sy_cfg_report(c, n, "expect has at most %d ranges", SY_HEALTH_EXPECT_MAX);
        return;
    }
    h->expect[h->n_expect++] = r;
}

static void parse_expect(struct ctx *c, struct sy_health_spec *h, const struct sy_ynode *v)
{
    h->n_expect = 0;
    if (v->type != YAML_SEQUENCE_NODE) {
        parse_expect_item(c, h, v);
        return;
    }
    if (!sy_cfg_has_items(v)) {
        sy_cfg_report(c, v, "expect must name at least one status range");
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++)
        parse_expect_item(c, h, sy_cfg_node_at(c, *it));
}

/* rise, fall: 1..SY_HEALTH_RUN_MAX. */
static void parse_run(struct ctx *c, const struct sy_ynode *v, const char *key, unsigned *out)
{
    uint64_t n;
    if (!sy_cfg_parse_uint(v, SY_HEALTH_RUN_MAX, &n) || n == 0) {
        sy_cfg_report(c, v, "%s must be an integer 1..%d, got %s", key, SY_HEALTH_RUN_MAX,
                      sy_cfg_show_value(v).s);
        return;
    }
    *out = (unsigned)n;
}

/* `health: {path, interval, timeout, rise, fall, expect, host}`: the active check. */
static void parse_health(struct ctx *c, struct sy_cluster_spec *cl, const struct sy_ynode *v)
{
    struct sy_health_spec *h = &cl->health;
    h->interval_ms = SY_HEALTH_INTERVAL_DEFAULT;
    h->timeout_ms = SY_HEALTH_TIMEOUT_DEFAULT;
    h->rise = SY_HEALTH_RISE_DEFAULT;
    h->fall = SY_HEALTH_FALL_DEFAULT;
    h->expect[0] = (struct sy_status_range){200, 399};
    h->n_expect = 1;
    h->mark = sy_cfg_mark_of(v);
    if (!sy_cfg_is_mapping(c, v, "health"))
        return;
    h->on = true;
    const struct sy_ynode *path = NULL, *interval = NULL, *timeout = NULL, *rise = NULL,
                          *fall = NULL, *expect = NULL, *host = NULL;
    const struct sy_cfg_slot slots[] = {
        {"path", &path}, {"interval", &interval}, {"timeout", &timeout}, {"rise", &rise},
        {"fall", &fall}, {"expect", &expect},     {"host", &host},
    };
    sy_cfg_collect(c, v, slots, sizeof(slots) / sizeof(slots[0]), "health");
    if (path) {
        const char *s = sy_cfg_string_value(c, path, "path");
        bool ok = s && s[0] == '/';
        for (const char *p = s; ok && *p; p++)
            ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
        if (s && !ok)
            sy_cfg_report(c, path,
                          "path must begin with '/' and have no spaces or control characters, "
                          "got %s",
                          sy_cfg_show_value(path).s);
        else if (s)
            h->path = sy_xstrdup(s);
    }
    if (!h->path)
        h->path = sy_xstrdup(SY_HEALTH_PATH_DEFAULT);
    if (interval &&
        sy_cfg_duration_ms(c, interval, "interval", DURATION_EXAMPLES, "", &h->interval_ms) &&
        h->interval_ms < SY_HEALTH_INTERVAL_MIN_MS)
        sy_cfg_report(c, interval,
                      "interval must be at least %ums (probes that often are load, not checks), "
                      "got %s",
                      SY_HEALTH_INTERVAL_MIN_MS, sy_cfg_show_value(interval).s);
    if (timeout)
        sy_cfg_duration_ms(c, timeout, "timeout", DURATION_EXAMPLES, "", &h->timeout_ms);
    if (rise)
        parse_run(c, rise, "rise", &h->rise);
    if (fall)
        parse_run(c, fall, "fall", &h->fall);
    if (expect)
        parse_expect(c, h, expect);
    if (host) {
        /* A name, optionally with ":PORT" (the Host field's own form). */
        const char *s = sy_cfg_string_value(c, host, "host");
        size_t len = s ? strlen(s) : 0;
        const char *colon = s ? strrchr(s, ':') : NULL;
        const char *why = NULL;
        if (colon) {
            uint64_t port = 0;
            bool digits = colon[1] != '\0' && strlen(colon + 1) <= 5;
            for (const char *p = colon + 1; digits && *p; p++) {
                digits = *p >= '0' && *p <= '9';
                port = port * 10 + (uint64_t)(*p - '0');
            }
            if (!digits || port == 0 || port > 65535)
                why = "the port after ':' must be 1..65535";
            len = (size_t)(colon - s);
        }
        if (s && !why)
            why = sy_cfg_host_problem(s, len);
        if (why)
            sy_cfg_report(c, host, "bad health host %s: %s", sy_cfg_show_value(host).s, why);
        else if (s)
            h->host = sy_xstrdup(s);
    }
}

/* `outlier: {consecutive_failures, base_ejection, max_ejection}`: passive ejection. */
static void parse_outlier(struct ctx *c, struct sy_cluster_spec *cl, const struct sy_ynode *v)
{
    struct sy_outlier_spec *o = &cl->outlier;
    o->consecutive_failures = SY_OUTLIER_FAILURES_DEFAULT;
    o->base_ms = SY_OUTLIER_BASE_DEFAULT;
    o->max_ms = SY_OUTLIER_MAX_DEFAULT;
    if (!sy_cfg_is_mapping(c, v, "outlier"))
        return;
    o->on = true;
    const struct sy_ynode *n = NULL, *base = NULL, *max = NULL;
    const struct sy_cfg_slot slots[] = {
        {"consecutive_failures", &n},
        {"base_ejection", &base},
        {"max_ejection", &max},
    };
    sy_cfg_collect(c, v, slots, sizeof(slots) / sizeof(slots[0]), "outlier");
    if (n) {
        uint64_t k;
        if (!sy_cfg_parse_uint(n, 1000, &k) || k == 0)
            sy_cfg_report(c, n, "consecutive_failures must be an integer 1..1000, got %s",
                          sy_cfg_show_value(n).s);
        else
            o->consecutive_failures = (unsigned)k;
    }
    bool base_ok = true, max_ok = true;
    if (base)
        base_ok = sy_cfg_duration_ms(c, base, "base_ejection", DURATION_EXAMPLES, "", &o->base_ms);
    if (max)
        max_ok = sy_cfg_duration_ms(c, max, "max_ejection", DURATION_EXAMPLES, "", &o->max_ms);
    if (base_ok && max_ok && o->max_ms < o->base_ms)
        sy_cfg_report(c, max ? max : base,
                      "max_ejection (%ums) must be at least base_ejection (%ums)", o->max_ms,
                      o->base_ms);
}

/* `retry_budget: {percent, window, min}`. */
static void parse_retry_budget(struct ctx *c, struct sy_cluster_spec *cl, const struct sy_ynode *v)
{
    struct sy_retry_budget_spec *b = &cl->retry_budget;
    if (!sy_cfg_is_mapping(c, v, "retry_budget"))
        return;
    const struct sy_ynode *pct = NULL, *window = NULL, *min = NULL;
    const struct sy_cfg_slot slots[] = {
        {"percent", &pct},
        {"window", &window},
        {"min", &min},
    };
    sy_cfg_collect(c, v, slots, sizeof(slots) / sizeof(slots[0]), "retry_budget");
    uint64_t k;
    if (pct) {
        if (!sy_cfg_parse_uint(pct, 100, &k))
            sy_cfg_report(c, pct, "percent must be an integer 0..100, got %s",
                          sy_cfg_show_value(pct).s);
        else
            b->percent = (unsigned)k;
    }
    if (window)
        sy_cfg_duration_ms(c, window, "window", DURATION_EXAMPLES, "", &b->window_ms);
    if (min) {
        if (!sy_cfg_parse_uint(min, 100000, &k))
            sy_cfg_report(c, min, "min must be an integer 0..100000, got %s",
                          sy_cfg_show_value(min).s);
        else
            b->min = (unsigned)k;
    }
}

static void parse_cluster(struct ctx *c, const struct sy_ynode *k, const struct sy_ynode *v)
{
    struct sy_config *cfg = c->cfg;
    /* A badly named cluster is still kept, so that apps naming it get no second error. */
    if (!is_cluster_name(sy_cfg_text(k), k->data.scalar.length))
        sy_cfg_report(c, k,
                      "bad cluster name '%s': use a-z, 0-9, '_' and '-', starting with a letter or "
                      "digit, at most %d characters",
                      sy_cfg_show(k).s, MAX_NAME);
    sy_xgrow((void **)&cfg->clusters, &c->cap_clusters, cfg->n_clusters + 1,
             sizeof(*cfg->clusters));
    struct sy_cluster_spec *cl = &cfg->clusters[cfg->n_clusters++];
    memset(cl, 0, sizeof(*cl));
    cl->name = sy_xstrndup(sy_cfg_text(k), k->data.scalar.length);
    cl->mark = sy_cfg_mark_of(k);

    cl->tls.verify = true;
    cl->queue_max = SY_QUEUE_MAX_DEFAULT;
    cl->queue_timeout_ms = SY_QUEUE_TIMEOUT_DEFAULT_MS;
    cl->outlier = (struct sy_outlier_spec){false, SY_OUTLIER_FAILURES_DEFAULT,
                                           SY_OUTLIER_BASE_DEFAULT, SY_OUTLIER_MAX_DEFAULT};
    cl->retry_budget = (struct sy_retry_budget_spec){
        SY_RETRY_BUDGET_PCT_DEFAULT, SY_RETRY_BUDGET_WIN_DEFAULT, SY_RETRY_BUDGET_MIN_DEFAULT};
    if (!sy_cfg_is_mapping(c, v, "cluster"))
        return;
    const struct sy_ynode *endpoints = NULL, *protocol = NULL, *tls = NULL, *cap = NULL,
                          *queue = NULL;
    const struct sy_ynode *pp = NULL, *health = NULL, *outlier = NULL, *budget = NULL;
    const struct sy_cfg_slot slots[] = {
        {"endpoints", &endpoints}, {"protocol", &protocol}, {"tls", &tls},
        {"max_connections", &cap}, {"queue", &queue},       {"proxy_protocol", &pp},
        {"health", &health},       {"outlier", &outlier},   {"retry_budget", &budget},
    };
    sy_cfg_collect(c, v, slots, sizeof(slots) / sizeof(slots[0]), "cluster");
    if (!endpoints)
        sy_cfg_report(c, v, "missing required key 'endpoints' in cluster");
    else
        parse_endpoints(c, cl, endpoints);
    if (protocol)
        parse_protocol(c, cl, protocol, tls != NULL);
    if (tls)
        sy_cfg_parse_cluster_tls(c, &cl->tls, tls, "tls");
    else if (cl->protocol == SY_PROTO_H2) {
        cl->tls.on = true; /* h2 is HTTP/2 over TLS: verified against the system store */
        cl->tls.mark = sy_cfg_mark_of(protocol);
    }
    if (pp) {
        /* One connection carries one client's header: HTTP/2 would multiplex many clients on
         * it, and TLS would need the header written under the handshake. */
        if (!sy_cfg_is_scalar(pp) || strcmp(sy_cfg_text(pp), "v2") != 0)
            sy_cfg_report(c, pp,
                          "proxy_protocol of a cluster must be v2 (leave it out for none), got %s",
                          sy_cfg_show_value(pp).s);
        else if (cl->protocol != SY_PROTO_HTTP1 || cl->tls.on)
            sy_cfg_report(c, pp,
                          "proxy_protocol needs a cleartext http1 cluster (no tls, no h2/h2c)");
        else
            cl->send_proxy_v2 = true;
    }
    if (health)
        parse_health(c, cl, health);
    if (outlier)
        parse_outlier(c, cl, outlier);
    if (budget)
        parse_retry_budget(c, cl, budget);
    bool cap_ok = cap ? parse_max_connections(c, cl, cap) : true;
    if (queue) {
        parse_cluster_queue(c, cl, queue);
        /* A queue without a cap would never hold anything: say so rather than ignore it. */
        if (cap_ok && !cl->max_connections)
            sy_cfg_report(c, queue, "queue needs max_connections (above 0) in the same cluster");
    }
}

void sy_cfg_parse_clusters(struct ctx *c, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "clusters"))
        return;
    if (!sy_cfg_has_pairs(v)) {
        sy_cfg_report(c, v, "clusters must have at least one cluster");
        return;
    }
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *key;
        if (sy_cfg_map_entry(c, v, p, &k, &pv, &key))
            parse_cluster(c, k, pv);
    }
}

/* Index of the cluster named by scalar `n`, or -1. */
long sy_cfg_find_cluster(struct ctx *c, const struct sy_ynode *n)
{
    if (!sy_cfg_is_scalar(n))
        return -1;
    for (size_t i = 0; i < c->cfg->n_clusters; i++) {
        const char *name = c->cfg->clusters[i].name;
        if (strlen(name) == n->data.scalar.length &&
            memcmp(name, sy_cfg_text(n), strlen(name)) == 0)
            return (long)i;
    }
    return -1;
}
