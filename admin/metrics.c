/* SPDX-License-Identifier: MIT */
/* /metrics: the Prometheus text exposition format (version 0.0.4), written from the data
 * path's per-worker counters summed at scrape time (sy_workers_traffic), the routing state
 * (weights, overrides, generation, reloads, journal) and the process (/proc/self). Every
 * family has its HELP and TYPE lines, and its samples follow them together. Control
 * thread; nothing here runs on a worker. */
#include "switchyard/admin_http.h"

#include <dirent.h>
#include <inttypes.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "switchyard/access_log.h"
#include "switchyard/fleet.h"
#include "switchyard/health.h"
#include "sy_config.h"

/* -- the writer -------------------------------------------------------------------------------- */

void sy_prom_init(struct sy_prom *m)
{
    *m = (struct sy_prom){0};
}

void sy_prom_dispose(struct sy_prom *m)
{
    free(m->p);
    *m = (struct sy_prom){0};
}

static void put(struct sy_prom *m, const char *s, size_t len)
{
    sy_xgrow((void **)&m->p, &m->cap, m->len + len + 1, 1);
    memcpy(m->p + m->len, s, len);
    m->len += len;
    m->p[m->len] = '\0';
}

static void puts_(struct sy_prom *m, const char *s)
{
    put(m, s, strlen(s));
}

/* HELP text: backslash and newline are escaped. Label values: the double quote too. */
static void put_escaped(struct sy_prom *m, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && quote)
            esc = "\\\"";
        if (!esc)
            continue;
        put(m, run, (size_t)(s - run));
        puts_(m, esc);
        run = s + 1;
    }
    put(m, run, (size_t)(s - run));
}

void sy_prom_family(struct sy_prom *m, const char *name, const char *type, const char *help)
{
    m->family = name;
    puts_(m, "# HELP ");
    puts_(m, name);
    puts_(m, " ");
    put_escaped(m, help, false);
    puts_(m, "\n# TYPE ");
    puts_(m, name);
    puts_(m, " ");
    puts_(m, type);
    puts_(m, "\n");
}

static void sample_head(struct sy_prom *m, const char *suffix, const char *const *labels, size_t n,
                        const char *le)
{
    puts_(m, m->family);
    puts_(m, suffix);
    if (n || le) {
        puts_(m, "{");
        for (size_t i = 0; i < n; i++) {
            if (i)
                puts_(m, ",");
            puts_(m, labels[2 * i]);
            puts_(m, "=\"");
            put_escaped(m, labels[2 * i + 1] ? labels[2 * i + 1] : "", true);
            puts_(m, "\"");
        }
        if (le) {
            puts_(m, n ? ",le=\"" : "le=\"");
            puts_(m, le);
            puts_(m, "\"");
        }
        puts_(m, "}");
    }
    puts_(m, " ");
}

void sy_prom_sample(struct sy_prom *m, const char *suffix, const char *const *labels, size_t n,
                    const char *le, double value)
{
    char num[64];
    sample_head(m, suffix, labels, n, le);
    if (value != value)
        snprintf(num, sizeof(num), "NaN");
    else if (value > 1.7e308)
        snprintf(num, sizeof(num), "+Inf");
    else if (value < -1.7e308)
        snprintf(num, sizeof(num), "-Inf");
    else
        snprintf(num, sizeof(num), "%.15g", value);
    puts_(m, num);
    puts_(m, "\n");
}

void sy_prom_sample_u64(struct sy_prom *m, const char *suffix, const char *const *labels, size_t n,
                        const char *le, uint64_t value)
{
    char num[32];
    sample_head(m, suffix, labels, n, le);
    snprintf(num, sizeof(num), "%" PRIu64 "\n", value);
    puts_(m, num);
}

/* -- the figures ------------------------------------------------------------------------------ */

struct row {
    char *app, *cluster; /* app NULL: answers before routing */
    struct sy_traffic t;
};

struct rows {
    struct row *v;
    size_t n, cap;
    uint64_t pp_rejected;
};

static void rows_cb(const struct sy_traffic *t, void *arg)
{
    struct rows *rs = arg;
    if (!t->app && !t->cluster && t->proxy_protocol_rejected) {
        rs->pp_rejected += t->proxy_protocol_rejected;
        return;
    }
    sy_xgrow((void **)&rs->v, &rs->cap, rs->n + 1, sizeof(*rs->v));
    struct row *r = &rs->v[rs->n++];
    r->t = *t;
    r->app = t->app ? sy_xstrdup(t->app) : NULL;
    r->cluster = t->cluster ? sy_xstrdup(t->cluster) : NULL;
    r->t.app = r->app;
    r->t.cluster = r->cluster;
}

static int cmp_row(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int r = strcmp(x->app ? x->app : "", y->app ? y->app : "");
    return r ? r : strcmp(x->cluster ? x->cluster : "", y->cluster ? y->cluster : "");
}

static void fmt_seconds_le(size_t i, char *buf, size_t size)
{
    if (i >= SY_LAT_N)
        snprintf(buf, size, "+Inf");
    else
        snprintf(buf, size, "%g", (double)sy_lat_bound_us(i) / 1e6);
}

static void histogram(struct sy_prom *m, const struct rows *rs, bool head)
{
    for (size_t k = 0; k < rs->n; k++) {
        const struct row *r = &rs->v[k];
        if (!r->app)
            continue;
        const char *l[] = {"app", r->app, "cluster", r->cluster};
        const uint64_t *b = head ? r->t.head_lat : r->t.dur;
        uint64_t cum = 0;
        for (size_t i = 0; i <= SY_LAT_N; i++) {
            char le[32];
            cum += b[i];
            fmt_seconds_le(i, le, sizeof(le));
            sy_prom_sample_u64(m, "_bucket", l, 2, le, cum);
        }
        sy_prom_sample(m, "_sum", l, 2, NULL,
                       (double)(head ? r->t.head_sum_us : r->t.dur_sum_us) / 1e6);
        sy_prom_sample_u64(m, "_count", l, 2, NULL, cum);
    }
}

static void class_metrics(struct sy_prom *m, const struct rows *rs)
{
    static const char *const cls[SY_CLASS_N] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    sy_prom_family(m, "switchyard_requests_total", "counter",
                   "Requests routed to a cluster and finished, by app, cluster and status class "
                   "(none: the client went away before an answer).");
    for (size_t k = 0; k < rs->n; k++) {
        const struct row *r = &rs->v[k];
        if (!r->app)
            continue;
        for (size_t c = 0; c < SY_CLASS_N; c++) {
            const char *l[] = {"app", r->app, "cluster", r->cluster, "code_class", cls[c]};
            sy_prom_sample_u64(m, "", l, 3, NULL, r->t.by_class[c]);
        }
    }
}

/* One sample of switchyard_generated_responses_total. */
static void generated_sample(struct sy_prom *m, const struct row *r, const char *code,
                             const char *reason, uint64_t n)
{
    const char *l[] = {"app",     r->app ? r->app : "",
                       "cluster", r->cluster ? r->cluster : "",
                       "code",    code,
                       "reason",  reason};
    sy_prom_sample_u64(m, "", l, 4, NULL, n);
}

/* Our own answers by status and reason; a 503 is told apart by its own counters: the queue,
 * limits.max_upstream_connections, and the rest. */
static void generated_metrics(struct sy_prom *m, const struct rows *rs)
{
    sy_prom_family(m, "switchyard_generated_responses_total", "counter",
                   "Answers switchyard made itself, by app, cluster, status and reason (app and "
                   "cluster empty: before routing).");
    for (size_t k = 0; k < rs->n; k++) {
        const struct row *r = &rs->v[k];
        for (size_t i = 0; i < SY_OWN_N; i++) {
            int status = sy_own_status(i);
            uint64_t n = r->t.own[i];
            char code[8];
            snprintf(code, sizeof(code), "%d", status);
            if (status == 503) {
                uint64_t q = r->t.queue_503 < n ? r->t.queue_503 : n;
                uint64_t u = r->t.upstream_refused < n - q ? r->t.upstream_refused : n - q;
                if (q)
                    generated_sample(m, r, code, "queue", q);
                if (u)
                    generated_sample(m, r, code, "upstream_limit", u);
                n -= q + u;
            }
            if (n)
                generated_sample(m, r, status ? code : "other", sy_own_reason(status), n);
        }
    }
}

/* Per app and cluster: requests by class, our own answers, the histograms, the counters and
 * gauges of one field each; and the PROXY protocol refusals. */
static void traffic_metrics(struct sy_prom *m, const struct rows *rs)
{
    class_metrics(m, rs);
    generated_metrics(m, rs);
    sy_prom_family(m, "switchyard_request_duration_seconds", "histogram",
                   "Time from the request head routed to the end of the exchange.");
    histogram(m, rs, false);
    sy_prom_family(m, "switchyard_response_head_duration_seconds", "histogram",
                   "Time from the request head routed to the response head sent to the client.");
    histogram(m, rs, true);
    struct {
        const char *name, *type, *help;
        size_t off;
    } simple[] = {
        {"switchyard_request_bytes_total", "counter", "Request body bytes sent to the cluster.",
         offsetof(struct sy_traffic, bytes_in)},
        {"switchyard_response_bytes_total", "counter", "Response body bytes sent to the client.",
         offsetof(struct sy_traffic, bytes_out)},
        {"switchyard_requests_in_flight", "gauge", "Exchanges not finished yet.",
         offsetof(struct sy_traffic, in_flight)},
        {"switchyard_tunnels_open", "gauge", "Upgraded connections (WebSocket) open now.",
         offsetof(struct sy_traffic, tunnels)},
        {"switchyard_queued_requests", "gauge",
         "Requests waiting for a connection (clusters.NAME.max_connections).",
         offsetof(struct sy_traffic, queued)},
        {"switchyard_held_requests", "gauge",
         "Requests of an exclusive app held now by a switch, by the cluster they wait for.",
         offsetof(struct sy_traffic, held)},
        {"switchyard_held_released_total", "counter",
         "Held requests released to their cluster when an exclusive switch ended.",
         offsetof(struct sy_traffic, held_released)},
        {"switchyard_held_rejected_total", "counter",
         "Held requests answered 503 (exclusive.hold ran out, or exclusive.max_held).",
         offsetof(struct sy_traffic, held_503)},
    };
    for (size_t s = 0; s < sizeof(simple) / sizeof(simple[0]); s++) {
        sy_prom_family(m, simple[s].name, simple[s].type, simple[s].help);
        for (size_t k = 0; k < rs->n; k++) {
            const struct row *r = &rs->v[k];
            if (!r->app)
                continue;
            const char *l[] = {"app", r->app, "cluster", r->cluster};
            uint64_t v;
            memcpy(&v, (const char *)&r->t + simple[s].off, sizeof(v));
            sy_prom_sample_u64(m, "", l, 2, NULL, v);
        }
    }
    sy_prom_family(m, "switchyard_proxy_protocol_rejected_total", "counter",
                   "Connections closed for a missing or bad PROXY protocol header.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, rs->pp_rejected);
}

static void connection_gauge_cb(const struct sy_endpoint_errors *e, void *arg)
{
    struct sy_prom *m = arg;
    const char *lo[] = {"cluster", e->cluster, "endpoint", e->endpoint, "state", "open"};
    const char *li[] = {"cluster", e->cluster, "endpoint", e->endpoint, "state", "idle"};
    sy_prom_sample_u64(m, "", lo, 3, NULL, e->open);
    sy_prom_sample_u64(m, "", li, 3, NULL, e->idle);
}

static void connect_error_cb(const struct sy_endpoint_errors *e, void *arg)
{
    struct sy_prom *m = arg;
    for (size_t i = 0; i < SY_CONNERR_N; i++) {
        const char *l[] = {"cluster",   e->cluster, "endpoint",
                           e->endpoint, "reason",   sy_connect_error_name(i)};
        sy_prom_sample_u64(m, "", l, 3, NULL, e->errors[i]);
    }
}

struct listeners {
    struct sy_listener_stats *v;
    size_t n, cap;
};

static void listener_cb(const struct sy_listener_stats *l, void *arg)
{
    struct listeners *ls = arg;
    sy_xgrow((void **)&ls->v, &ls->cap, ls->n + 1, sizeof(*ls->v));
    ls->v[ls->n] = *l;
    ls->v[ls->n].listener = sy_xstrdup(l->listener);
    ls->n++;
}

static void listener_metrics(struct sy_prom *m, const struct sy_admin_http_env *env)
{
    struct listeners ls = {0};
    if (env->listener_stats)
        env->listener_stats(env->listener_stats_arg, listener_cb, &ls);
    sy_prom_family(m, "switchyard_connections_total", "counter",
                   "Client connections by listen address and protocol (http/1.1 counted at its "
                   "first request, h2 by ALPN, h2c by the preface).");
    for (size_t i = 0; i < ls.n; i++) {
        const char *p[3] = {"http/1.1", "h2", "h2c"};
        uint64_t v[3] = {ls.v[i].http1, ls.v[i].h2, ls.v[i].h2c};
        for (size_t k = 0; k < 3; k++) {
            const char *l[] = {"listener", ls.v[i].listener, "protocol", p[k]};
            sy_prom_sample_u64(m, "", l, 2, NULL, v[k]);
        }
    }
    sy_prom_family(m, "switchyard_tls_handshakes_total", "counter",
                   "TLS handshakes with clients by listen address: ok, or failed (an error, a "
                   "close or the client_header deadline).");
    for (size_t i = 0; i < ls.n; i++) {
        const char *lo[] = {"listener", ls.v[i].listener, "result", "ok"};
        const char *lf[] = {"listener", ls.v[i].listener, "result", "failed"};
        sy_prom_sample_u64(m, "", lo, 2, NULL, ls.v[i].tls_ok);
        sy_prom_sample_u64(m, "", lf, 2, NULL, ls.v[i].tls_failed);
    }
    sy_prom_family(m, "switchyard_h2_parked_connections", "gauge",
                   "HTTP/2 client connections by listen address that have opened no stream yet "
                   "and are held without their HTTP/2 session (about 25 KB less each).");
    for (size_t i = 0; i < ls.n; i++) {
        const char *l[] = {"listener", ls.v[i].listener};
        sy_prom_sample_u64(m, "", l, 1, NULL, ls.v[i].h2_parked);
    }
    for (size_t i = 0; i < ls.n; i++)
        free((char *)ls.v[i].listener);
    free(ls.v);
}

static void who_of(uint32_t uid, char *buf, size_t size)
{
    struct passwd pw, *res = NULL;
    char tmp[1024];
    if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res)
        snprintf(buf, size, "%s", res->pw_name);
    else
        snprintf(buf, size, "%" PRIu32, uid);
}

/* Per app: the stable cluster, exclusive mode, a switch running, maintenance. */
static void app_metrics(struct sy_prom *m, struct sy_state *st)
{
    const struct sy_route_table *t = sy_state_table(st);
    const struct sy_config *cfg = sy_route_table_config(t);
    sy_prom_family(m, "switchyard_app_stable", "gauge",
                   "1 for the cluster the routing file names as the app's stable one, else 0.");
    for (size_t a = 0; a < cfg->n_apps; a++) {
        const struct sy_app_spec *app = &cfg->apps[a];
        for (size_t i = 0; i < app->n_weights; i++) {
            const char *l[] = {"app", app->name, "cluster",
                               cfg->clusters[app->weights[i].cluster].name};
            sy_prom_sample_u64(m, "", l, 2, NULL, app->weights[i].cluster == app->stable);
        }
    }
    sy_prom_family(m, "switchyard_app_exclusive", "gauge",
                   "1 for an app with mode: exclusive (it runs on one cluster at a time), else 0.");
    for (size_t a = 0; a < cfg->n_apps; a++) {
        const char *l[] = {"app", cfg->apps[a].name};
        sy_prom_sample_u64(m, "", l, 1, NULL, cfg->apps[a].mode == SY_APP_EXCLUSIVE);
    }
    sy_prom_family(m, "switchyard_app_switching", "gauge",
                   "1 while an exclusive switch of the app runs (its new requests are held), "
                   "else 0.");
    for (size_t a = 0; a < cfg->n_apps; a++) {
        const char *l[] = {"app", cfg->apps[a].name};
        sy_prom_sample_u64(m, "", l, 1, NULL, sy_route_app_is_held(t, a));
    }
    const struct sy_maints *maint = sy_state_maintenance(st);
    sy_prom_family(m, "switchyard_app_in_maintenance", "gauge",
                   "1 for an app in maintenance (every request answered 503), else 0.");
    for (size_t a = 0; a < cfg->n_apps; a++) {
        const struct sy_maint *e = sy_maints_find(maint, cfg->apps[a].name);
        const char *l[] = {"app", cfg->apps[a].name};
        sy_prom_sample_u64(m, "", l, 1, NULL, e && e->on);
    }
}

/* Per app and cluster: the file's weight, the override's (while one is in force), and the
 * effective one. */
static void weight_metrics(struct sy_prom *m, struct sy_state *st)
{
    const struct sy_route_table *t = sy_state_table(st);
    const struct sy_config *cfg = sy_route_table_config(t);
    const struct sy_overrides *ov = sy_state_overrides(st);
    sy_prom_family(m, "switchyard_weight", "gauge",
                   "Weight of a cluster for an app: in the file, set by an override (while one "
                   "is in force), and in effect.");
    for (size_t a = 0; a < cfg->n_apps; a++) {
        const struct sy_app_spec *app = &cfg->apps[a];
        const struct sy_override *o = sy_overrides_find(ov, app->name);
        const struct sy_weight_spec *eff;
        size_t n_eff;
        enum sy_override_state os = sy_route_app_weights(t, a, &eff, &n_eff);
        for (size_t i = 0; i < app->n_weights; i++) {
            const char *cname = cfg->clusters[app->weights[i].cluster].name;
            const char *lf[] = {"app", app->name, "cluster", cname, "source", "file"};
            sy_prom_sample_u64(m, "", lf, 3, NULL, app->weights[i].weight);
            if (o && os != SY_OVERRIDE_STALE) {
                unsigned w = 0;
                for (size_t k = 0; k < o->n_weights; k++)
                    if (strcmp(o->weights[k].cluster, cname) == 0)
                        w = o->weights[k].weight;
                const char *lo[] = {"app", app->name, "cluster", cname, "source", "override"};
                sy_prom_sample_u64(m, "", lo, 3, NULL, w);
            }
            unsigned ew = 0;
            for (size_t k = 0; k < n_eff; k++)
                if (eff[k].cluster == app->weights[i].cluster)
                    ew = eff[k].weight;
            const char *le[] = {"app", app->name, "cluster", cname, "source", "effective"};
            sy_prom_sample_u64(m, "", le, 3, NULL, ew);
        }
    }
}

/* The operators' overrides in force: who, which command, since when. */
static void override_metrics(struct sy_prom *m, struct sy_state *st)
{
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(st));
    const struct sy_overrides *ov = sy_state_overrides(st);
    sy_prom_family(m, "switchyard_override_info", "gauge",
                   "1 for each operator's override in force: who set it, by which command, "
                   "since when (ISO 8601).");
    for (size_t i = 0; i < ov->n; i++) {
        const struct sy_override *o = &ov->v[i];
        if (sy_config_app_index(cfg, o->app) < 0)
            continue;
        char who[64], since[32];
        who_of(o->uid, who, sizeof(who));
        time_t secs = (time_t)(o->time_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
        const char *l[] = {"app",   o->app, "who", who, "command", o->command ? o->command : "",
                           "since", since};
        sy_prom_sample_u64(m, "", l, 4, NULL, 1);
    }
    sy_prom_family(m, "switchyard_override_since_seconds", "gauge",
                   "Unix time an override in force was set (time() minus it is its age).");
    for (size_t i = 0; i < ov->n; i++) {
        const struct sy_override *o = &ov->v[i];
        if (sy_config_app_index(cfg, o->app) < 0)
            continue;
        const char *l[] = {"app", o->app};
        sy_prom_sample(m, "", l, 1, NULL, (double)o->time_ms / 1000.0);
    }
}

/* The generation, reloads by result, the last good load, the journal's sequence. */
static void reload_metrics(struct sy_prom *m, struct sy_state *st)
{
    sy_prom_family(m, "switchyard_config_generation", "gauge",
                   "Generation of the routing snapshot in force (every reload and change adds 1).");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, sy_state_generation(st));
    sy_prom_family(m, "switchyard_reloads_total", "counter",
                   "Reloads of the routing file that published (ok) or were refused (rejected).");
    const char *lok[] = {"result", "ok"}, *lrej[] = {"result", "rejected"};
    sy_prom_sample_u64(m, "", lok, 1, NULL, sy_state_reloads_ok(st));
    sy_prom_sample_u64(m, "", lrej, 1, NULL, sy_state_reload_failures(st));
    sy_prom_family(m, "switchyard_last_reload_success_timestamp_seconds", "gauge",
                   "Unix time the routing file was last loaded and published (the start, or a "
                   "reload).");
    sy_prom_sample(m, "", NULL, 0, NULL, (double)sy_state_last_load_ok_ms(st) / 1000.0);
    sy_prom_family(m, "switchyard_journal_sequence", "gauge",
                   "Sequence number of the last record of the overrides journal.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, sy_state_journal_seq(st));
}

/* Endpoint health (active checks, outlier ejection) and each cluster's failover and retries. */
static void health_metrics(struct sy_prom *m, struct sy_state *st)
{
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(st));
    uint64_t now = sy_now_ms();
    sy_prom_family(m, "switchyard_endpoint_up", "gauge",
                   "1 when a cluster endpoint takes traffic: its health checks pass (or it has "
                   "none) and it is not ejected.");
    for (size_t c = 0; c < cfg->n_clusters; c++)
        for (size_t e = 0; e < cfg->clusters[c].n_endpoints; e++) {
            const struct sy_endpoint_spec *ep = &cfg->clusters[c].endpoints[e];
            const char *l[] = {"cluster", cfg->clusters[c].name, "endpoint", ep->address};
            sy_prom_sample_u64(m, "", l, 2, NULL, sy_ep_is_up(ep->hs, now));
        }
    sy_prom_family(m, "switchyard_endpoint_ejections_total", "counter",
                   "Ejections of a cluster endpoint by outlier detection (clusters.NAME.outlier).");
    for (size_t c = 0; c < cfg->n_clusters; c++)
        for (size_t e = 0; e < cfg->clusters[c].n_endpoints; e++) {
            const struct sy_endpoint_spec *ep = &cfg->clusters[c].endpoints[e];
            const char *l[] = {"cluster", cfg->clusters[c].name, "endpoint", ep->address};
            sy_prom_sample_u64(
                m, "", l, 2, NULL,
                ep->hs ? atomic_load_explicit(&ep->hs->ejected_total, memory_order_relaxed) : 0);
        }
    static const struct {
        const char *name, *help;
        size_t offset;
    } fams[] = {
        {"switchyard_cluster_failover_total",
         "Requests a cluster with no endpoint up could not take, sent to another cluster of the "
         "app (apps[].failover).",
         offsetof(struct sy_cluster_health, failovers)},
        {"switchyard_cluster_down_rejected_total",
         "Requests answered 503 because the cluster had no endpoint up and the app has "
         "failover: false.",
         offsetof(struct sy_cluster_health, down_503)},
        {"switchyard_cluster_retries_total",
         "Requests tried again within the cluster's retry_budget: a failed connect (on another "
         "endpoint), or a safe request whose reused connection was reset.",
         offsetof(struct sy_cluster_health, retries)},
        {"switchyard_cluster_retries_denied_total",
         "Requests not tried again because the cluster's retry_budget was spent.",
         offsetof(struct sy_cluster_health, retries_denied)},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        sy_prom_family(m, fams[f].name, "counter", fams[f].help);
        for (size_t c = 0; c < cfg->n_clusters; c++) {
            const struct sy_cluster_health *h = cfg->clusters[c].hs;
            const char *l[] = {"cluster", cfg->clusters[c].name};
            uint64_t v = 0;
            if (h)
                v = atomic_load_explicit(
                    (_Atomic uint64_t *)((char *)(uintptr_t)h + fams[f].offset),
                    memory_order_relaxed);
            sy_prom_sample_u64(m, "", l, 1, NULL, v);
        }
    }
}

static void routing_metrics(struct sy_prom *m, struct sy_state *st)
{
    app_metrics(m, st);
    weight_metrics(m, st);
    override_metrics(m, st);
    reload_metrics(m, st);
    health_metrics(m, st);
}

/* -- the access log ---------------------------------------------------------------------------- */

static void access_log_metrics(struct sy_prom *m)
{
    sy_prom_family(m, "switchyard_access_log_lines_total", "counter",
                   "Access log lines taken into the workers' rings (access_log).");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, sy_access_log_lines());
    sy_prom_family(m, "switchyard_access_log_dropped_total", "counter",
                   "Access log lines dropped because a worker's ring was full (the log's reader "
                   "is slower than the traffic).");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, sy_access_log_dropped());
}

/* -- the process ------------------------------------------------------------------------------ */

static void process_metrics(struct sy_prom *m)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long long utime = 0, stime = 0, start = 0;
    FILE *f = fopen("/proc/self/stat", "re");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        /* After the command name's closing parenthesis: field 3 on. */
        char *p = strrchr(buf, ')');
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                        "%*d %*d %llu",
                        &utime, &stime, &start) != 3)
            utime = stime = start = 0;
        fclose(f);
    }
    unsigned long long btime = 0;
    f = fopen("/proc/stat", "re");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "btime %llu", &btime) == 1)
                break;
        fclose(f);
    }
    unsigned long size = 0, resident = 0;
    f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    uint64_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.')
                fds++;
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    sy_prom_family(m, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.");
    sy_prom_sample(m, "", NULL, 0, NULL, (double)(utime + stime) / (double)(tick > 0 ? tick : 100));
    sy_prom_family(m, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, (uint64_t)resident * (uint64_t)page);
    sy_prom_family(m, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, (uint64_t)size * (uint64_t)page);
    sy_prom_family(m, "process_open_fds", "gauge", "Number of open file descriptors.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, fds);
    sy_prom_family(m, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, (uint64_t)rl.rlim_cur);
    sy_prom_family(m, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.");
    sy_prom_sample(m, "", NULL, 0, NULL,
                   (double)btime + (double)start / (double)(tick > 0 ? tick : 100));
}

static void guard_reverts_cb(const struct sy_guard_app_view *v, void *arg)
{
    const char *l[] = {"app", v->app};
    sy_prom_sample_u64(arg, "", l, 1, NULL, v->reverts);
}

static void guard_state_cb(const struct sy_guard_app_view *v, void *arg)
{
    for (int s = SY_GUARD_IDLE; s < SY_GUARD_STATE_N; s++) {
        const char *l[] = {"app", v->app, "state", sy_guard_state_name((enum sy_guard_state)s)};
        sy_prom_sample_u64(arg, "", l, 2, NULL, v->state == (enum sy_guard_state)s);
    }
}

/* The guards (docs/guard.md): reverts by app, each guard's state (one sample per state, 1 for
 * the one it is in), and the global pause. */
static void guard_metrics(struct sy_prom *m, const struct sy_admin_http_env *env)
{
    sy_prom_family(m, "switchyard_guard_reverts_total", "counter",
                   "Apps reverted to their stable cluster by their guard, since start.");
    if (env->guards)
        env->guards(env->guards_arg, guard_reverts_cb, m);
    sy_prom_family(m, "switchyard_guard_state", "gauge",
                   "1 for the state each app's guard is in (idle, watching, tripped, paused), "
                   "else 0.");
    if (env->guards)
        env->guards(env->guards_arg, guard_state_cb, m);
    sy_prom_family(m, "switchyard_guards_paused", "gauge",
                   "1 while every guard is paused (`guard pause`, durable), else 0.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL,
                       env->state && sy_state_guard_pause(env->state)->paused);
}

/* The fleet (docs/fleet.md): the link to etcd, the revision applied, the members. Only with
 * `fleet:`. */
static void fleet_metrics(struct sy_prom *m, const struct sy_admin_http_env *env)
{
    if (!env->fleet)
        return;
    struct sy_fleet_view v;
    sy_fleet_view(env->fleet, &v);
    sy_prom_family(m, "switchyard_fleet_connected", "gauge",
                   "1 while the watch of the fleet's etcd prefix is open, else 0 (changes are "
                   "refused except --local).");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, v.connected);
    sy_prom_family(m, "switchyard_fleet_revision", "gauge",
                   "The etcd revision of the fleet state this replica has applied.");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, v.rev);
    sy_prom_family(m, "switchyard_fleet_members", "gauge",
                   "Members of the fleet (live lease-bound keys), by whether each has applied "
                   "the fleet's last change.");
    size_t behind = 0;
    for (size_t i = 0; i < v.n_members; i++)
        behind += !v.members[i].applied;
    const char *up[] = {"state", "up_to_date"}, *be[] = {"state", "behind"};
    sy_prom_sample_u64(m, "", up, 1, NULL, v.n_members - behind);
    sy_prom_sample_u64(m, "", be, 1, NULL, behind);
    sy_prom_family(m, "switchyard_fleet_changes_total", "counter",
                   "Changes made through this replica that etcd committed, and that were refused "
                   "(etcd unreachable, lost to newer ones, not confirmed in time).");
    const char *ok[] = {"result", "committed"}, *no[] = {"result", "refused"};
    sy_prom_sample_u64(m, "", ok, 1, NULL, v.changes);
    sy_prom_sample_u64(m, "", no, 1, NULL, v.refused);
    sy_prom_family(m, "switchyard_fleet_leader", "gauge",
                   "1 while this replica advances the fleet's ramps (holds the leader key).");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, sy_fleet_is_leader(env->fleet));
}

void sy_admin_metrics(struct sy_prom *m, const struct sy_admin_http_env *env, bool ready)
{
    sy_prom_family(m, "switchyard_build_info", "gauge", "1, with the version of switchyard.");
    const char *lb[] = {"version", SY_VERSION};
    sy_prom_sample_u64(m, "", lb, 1, NULL, 1);
    sy_prom_family(m, "switchyard_ready", "gauge",
                   "1 when every worker routes and the process is not draining (/readyz).");
    sy_prom_sample_u64(m, "", NULL, 0, NULL, ready);
    if (env->health) {
        struct sy_worker_health hv[256];
        size_t n = env->health(env->health_arg, hv, 256);
        if (n > 256)
            n = 256;
        sy_prom_family(m, "switchyard_worker_heartbeat_age_seconds", "gauge",
                       "Since each worker's event loop last turned (it stamps every 250 ms).");
        for (size_t i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof(id), "%u", hv[i].id);
            const char *l[] = {"worker", id};
            sy_prom_sample(m, "", l, 1, NULL, (double)hv[i].beat_age_ms / 1000.0);
        }
    }
    struct rows rs = {0};
    if (env->traffic)
        env->traffic(env->traffic_arg, rows_cb, &rs);
    if (rs.n > 1)
        qsort(rs.v, rs.n, sizeof(*rs.v), cmp_row);
    traffic_metrics(m, &rs);
    for (size_t i = 0; i < rs.n; i++) {
        free(rs.v[i].app);
        free(rs.v[i].cluster);
    }
    free(rs.v);
    sy_prom_family(m, "switchyard_upstream_connect_errors_total", "counter",
                   "Connections to a cluster endpoint that could not be made, by reason.");
    if (env->connect_errors)
        env->connect_errors(env->connect_errors_arg, connect_error_cb, m);
    sy_prom_family(
        m, "switchyard_upstream_connections", "gauge",
        "Pooled connections to a cluster endpoint: open (in use or idle) and idle (HTTP/2: "
        "no stream).");
    if (env->connect_errors)
        env->connect_errors(env->connect_errors_arg, connection_gauge_cb, m);
    listener_metrics(m, env);
    if (env->state)
        routing_metrics(m, env->state);
    guard_metrics(m, env);
    fleet_metrics(m, env);
    access_log_metrics(m);
    process_metrics(m);
}
