/* SPDX-License-Identifier: MIT */
/* The routing commands of the admin socket: status, weights, switch, revert, release, reload,
 * explain, history, and diff (what `switchyard -t` shows). routing/ owns the state but knows
 * nothing of admin, so its command table lives here, registered by sy_admin_routing_init().
 * Every change goes through sy_state_change(): checked against the file, compiled, written to
 * the journal and fsynced, and only then published and answered. Each handler writes both
 * renderings through one reply: lines for people, members of one JSON object for scripts. */
#include "switchyard/admin.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "switchyard/access_log.h"
#include "switchyard/exclusive.h"
#include "switchyard/fleet.h"
#include "switchyard/guard_engine.h"
#include "switchyard/health.h"
#include "switchyard/ramp.h"

#include "admin_internal.h"

#define HISTORY_DEFAULT      20
#define HISTORY_MAX          1000
#define HISTORY_TEXT_CHANGES 10 /* apps of one record shown to people; JSON has them all */
#define EXPLAIN_MAX_HEADERS  64
#define STATUS_HISTORY       10 /* records in `status --json` */

/* -- helpers ------------------------------------------------------------------------------- */

static const struct sy_config *config_of(const struct sy_admin_routing *env)
{
    return sy_route_table_config(sy_state_table(env->state));
}

static void json_weights(struct sy_reply *r, const char *key, const struct sy_route_weight *w,
                         size_t n)
{
    sy_json_begin_object(r, key);
    for (size_t i = 0; i < n; i++)
        sy_json_uint(r, w[i].cluster, w[i].weight);
    sy_json_end_object(r);
}

/* Why override `o` no longer fits app `ai` of `cfg` (NULL: it fits). */
static const char *stale_reason(const struct sy_config *cfg, size_t ai, const struct sy_override *o,
                                char *buf, size_t size)
{
    size_t k = 0;
    switch (sy_route_override_fit(cfg, ai, o->weights, o->n_weights, &k)) {
    case SY_FIT_OK:
        return NULL;
    case SY_FIT_UNKNOWN_CLUSTER:
    case SY_FIT_NOT_APPS:
        snprintf(buf, size, "it names cluster '%s', which is not one of the app's",
                 o->weights[k].cluster);
        break;
    case SY_FIT_TWICE:
        snprintf(buf, size, "it names cluster '%s' twice", o->weights[k].cluster);
        break;
    case SY_FIT_OVER_100:
        snprintf(buf, size, "its weight of cluster '%s' is above 100", o->weights[k].cluster);
        break;
    case SY_FIT_ZERO_SUM:
        snprintf(buf, size, "its weights sum to 0");
        break;
    }
    return buf;
}

static void override_json(struct sy_reply *r, const struct sy_override *o, const char *state,
                          const char *problem)
{
    char when[32];
    sy_admin_iso8601(o->time_ms, when);
    sy_json_begin_object(r, "override");
    sy_json_str(r, "state", state);
    if (problem)
        sy_json_str(r, "problem", problem);
    json_weights(r, "weights", o->weights, o->n_weights);
    sy_json_uint(r, "seq", o->seq);
    sy_json_str(r, "time", when);
    sy_json_uint(r, "time_ms", o->time_ms);
    sy_json_uint(r, "uid", o->uid);
    sy_json_int(r, "pid", o->pid);
    sy_json_str(r, "command", o->command);
    if (o->rev)
        sy_json_uint(r, "fleet_revision", o->rev);
    if (o->instance)
        sy_json_str(r, "instance", o->instance);
    if (o->local)
        sy_json_bool(r, "local", true);
    sy_json_end_object(r);
}

static void override_text(struct sy_reply *r, const struct sy_override *o)
{
    char when[32];
    sy_admin_iso8601(o->time_ms, when);
    sy_reply_printf(r, "set by uid %" PRIu32 " pid %" PRId32 " at %s (seq %" PRIu64 "): %s", o->uid,
                    o->pid, when, o->seq, o->command);
    if (o->local)
        sy_reply_printf(r, " [LOCAL: this replica only, not the fleet's; `release %s --local`]",
                        o->app);
    else if (o->rev)
        sy_reply_printf(r, " [fleet revision %" PRIu64 " from %s]", o->rev,
                        o->instance ? o->instance : "etcd");
}

/* -- status -------------------------------------------------------------------------------- */

struct traffic_row {
    char *app, *cluster;
    uint64_t requests, responses_5xx, in_flight, tunnels, queued, queue_503, upstream_refused;
    uint64_t own[SY_OWN_N];
    /* For the status page: bytes and the latency histograms (not cumulative). */
    uint64_t bytes_in, bytes_out;
    uint64_t dur[SY_LAT_N + 1], head_lat[SY_LAT_N + 1];
};

struct traffic {
    struct traffic_row *v;
    size_t n, cap;
    uint64_t unrouted[SY_OWN_N]; /* answers of our own before routing */
    uint64_t pp_rejected;        /* connections closed for a bad PROXY protocol header */
};

static uint64_t own_total(const uint64_t *own)
{
    uint64_t n = 0;
    for (size_t i = 0; i < SY_OWN_N; i++)
        n += own[i];
    return n;
}

static const char *own_code(size_t i, char *buf, size_t len)
{
    if (!sy_own_status(i))
        return "other"; /* a status outside the list */
    snprintf(buf, len, "%d", sy_own_status(i));
    return buf;
}

/* Text mode: "502 x2, 504 x1". */
static void own_text(struct sy_reply *r, const uint64_t *own)
{
    const char *sep = "";
    for (size_t i = 0; i < SY_OWN_N; i++) {
        char buf[16];
        if (!own[i])
            continue;
        sy_reply_printf(r, "%s%s x%" PRIu64, sep, own_code(i, buf, sizeof(buf)), own[i]);
        sep = ", ";
    }
}

/* JSON mode: `key`: {"502": 2, "504": 1}. */
static void own_json(struct sy_reply *r, const char *key, const uint64_t *own)
{
    sy_json_begin_object(r, key);
    for (size_t i = 0; i < SY_OWN_N; i++) {
        char buf[16];
        if (own[i])
            sy_json_uint(r, own_code(i, buf, sizeof(buf)), own[i]);
    }
    sy_json_end_object(r);
}

static void traffic_cb(const struct sy_traffic *t, void *arg)
{
    struct traffic *acc = arg;
    if (!t->app) {
        for (size_t i = 0; i < SY_OWN_N; i++)
            acc->unrouted[i] += t->own[i];
        acc->pp_rejected += t->proxy_protocol_rejected;
        return;
    }
    sy_xgrow((void **)&acc->v, &acc->cap, acc->n + 1, sizeof(*acc->v));
    struct traffic_row *row = &acc->v[acc->n++];
    row->app = sy_xstrdup(t->app);
    row->cluster = sy_xstrdup(t->cluster);
    row->requests = t->requests;
    row->responses_5xx = t->responses_5xx;
    row->in_flight = t->in_flight;
    row->tunnels = t->tunnels;
    memcpy(row->own, t->own, sizeof(row->own));
    row->queued = t->queued;
    row->queue_503 = t->queue_503;
    row->upstream_refused = t->upstream_refused;
    row->bytes_in = t->bytes_in;
    row->bytes_out = t->bytes_out;
    memcpy(row->dur, t->dur, sizeof(row->dur));
    memcpy(row->head_lat, t->head_lat, sizeof(row->head_lat));
}

/* A latency histogram as the status page reads it: cumulative counts, one per bound of
 * `latency_le_ms` and a last one for all (p50 and p99 are read off them). */
static void latency_json(struct sy_reply *r, const char *key, const uint64_t *b)
{
    uint64_t cum = 0;
    sy_json_begin_array(r, key);
    for (size_t i = 0; i <= SY_LAT_N; i++) {
        cum += b ? b[i] : 0;
        sy_json_uint(r, NULL, cum);
    }
    sy_json_end_array(r);
}

/* JSON mode: `key`: ["a", "b"]. */
static void strings_json(struct sy_reply *r, const char *key, char *const *v, size_t n)
{
    sy_json_begin_array(r, key);
    for (size_t i = 0; i < n; i++)
        sy_json_str(r, NULL, v[i]);
    sy_json_end_array(r);
}

static int cmp_traffic(const void *a, const void *b)
{
    const struct traffic_row *x = a, *y = b;
    int r = strcmp(x->app, y->app);
    return r ? r : strcmp(x->cluster, y->cluster);
}

/* Sorts the rows so that traffic_find() is a binary search: status stays n log n in apps. */
static void traffic_sort(struct traffic *acc)
{
    if (acc->n > 1)
        qsort(acc->v, acc->n, sizeof(*acc->v), cmp_traffic);
}

static const struct traffic_row *traffic_find(const struct traffic *acc, const char *app,
                                              const char *cluster)
{
    struct traffic_row key = {.app = (char *)app, .cluster = (char *)cluster};
    return acc->n ? bsearch(&key, acc->v, acc->n, sizeof(*acc->v), cmp_traffic) : NULL;
}

static void traffic_dispose(struct traffic *acc)
{
    for (size_t i = 0; i < acc->n; i++) {
        free(acc->v[i].app);
        free(acc->v[i].cluster);
    }
    free(acc->v);
}

/* A histogram bound in milliseconds, as text ("2.5"). */
static const char *lat_bound_ms(size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "%g", (double)sy_lat_bound_us(i) / 1000.0);
    return buf;
}

/* "source": {"file": ..., "line": ...}: where app `app` is written (an apps_dir file, or the
 * routing file). */
static void source_json(struct sy_reply *r, const struct sy_config *cfg,
                        const struct sy_app_spec *app)
{
    const char *file = sy_config_app_file(cfg, app);
    sy_json_begin_object(r, "source");
    if (file)
        sy_json_str(r, "file", file);
    else
        sy_json_null(r, "file");
    sy_json_uint(r, "line", (uint64_t)app->mark.line);
    sy_json_end_object(r);
}

/* One cluster of one app, as `status` shows it. */
struct cluster_view {
    const char *name;
    const struct sy_cluster_spec *spec;
    bool stable, stale; /* stale: the app's override is not in force */
    unsigned file, effective;
    long override;                 /* -1: no override */
    const struct traffic_row *row; /* NULL: no traffic yet */
};

static const uint64_t no_own[SY_OWN_N];

/* Its row of the table, and the wait for a connection on a line of its own where there is
 * one to tell of. */
static void status_cluster_text(struct sy_reply *r, const struct cluster_view *v,
                                const char *app_col, int wname, int wcluster)
{
    const struct traffic_row *row = v->row;
    uint64_t qn = row ? row->queued : 0, q5 = row ? row->queue_503 : 0,
             rf = row ? row->upstream_refused : 0;
    char ovs[32];
    if (v->override < 0)
        snprintf(ovs, sizeof(ovs), "-");
    else
        snprintf(ovs, sizeof(ovs), "%ld%s", v->override, v->stale ? "!" : "");
    sy_reply_printf(
        r, "%-*s %-*s %c %4u %8s %9u %10" PRIu64 " %6" PRIu64 " %9" PRIu64 " %7" PRIu64 "\n", wname,
        app_col, wcluster, v->name, v->stable ? '*' : ' ', v->file, ovs, v->effective,
        row ? row->requests : 0, row ? row->responses_5xx : 0, row ? row->in_flight : 0,
        row ? row->tunnels : 0);
    const struct sy_cluster_spec *cs = v->spec;
    if (!cs->max_connections && !qn && !q5 && !rf)
        return;
    sy_reply_printf(r, "%-*s   %s: %" PRIu64 " queued now, %" PRIu64 " answered 503 by the queue",
                    wname, "", v->name, qn, q5);
    if (cs->max_connections)
        sy_reply_printf(r, " (max_connections %zu, queue.max %zu, queue.timeout %u ms)",
                        cs->max_connections, cs->queue_max, cs->queue_timeout_ms);
    if (rf)
        sy_reply_printf(r, "; %" PRIu64 " refused by limits.max_upstream_connections", rf);
    sy_reply_printf(r, "\n");
}

static void status_cluster_json(struct sy_reply *r, const struct cluster_view *v)
{
    const struct traffic_row *row = v->row;
    const uint64_t *own = row ? row->own : no_own;
    char lbuf[32];
    sy_json_begin_object(r, NULL);
    sy_json_str(r, "name", v->name);
    sy_json_bool(r, "stable", v->stable);
    sy_json_uint(r, "file", v->file);
    if (v->override < 0)
        sy_json_null(r, "override");
    else
        sy_json_uint(r, "override", (uint64_t)v->override);
    sy_json_uint(r, "effective", v->effective);
    sy_json_uint(r, "requests", row ? row->requests : 0);
    sy_json_uint(r, "responses_5xx", row ? row->responses_5xx : 0);
    sy_json_uint(r, "in_flight", row ? row->in_flight : 0);
    sy_json_uint(r, "tunnels", row ? row->tunnels : 0);
    sy_json_uint(r, "own_answers", own_total(own));
    own_json(r, "own", own);
    sy_json_uint(r, "queued", row ? row->queued : 0);
    sy_json_uint(r, "queue_503", row ? row->queue_503 : 0);
    sy_json_uint(r, "upstream_refused", row ? row->upstream_refused : 0);
    sy_json_uint(r, "max_connections", v->spec->max_connections);
    sy_json_uint(r, "bytes_in", row ? row->bytes_in : 0);
    sy_json_uint(r, "bytes_out", row ? row->bytes_out : 0);
    sy_json_begin_array(r, "latency_le_ms");
    for (size_t k = 0; k < SY_LAT_N; k++)
        sy_json_str(r, NULL, lat_bound_ms(k, lbuf, sizeof(lbuf)));
    sy_json_str(r, NULL, "+Inf");
    sy_json_end_array(r);
    latency_json(r, "latency_counts", row ? row->dur : NULL);
    latency_json(r, "head_latency_counts", row ? row->head_lat : NULL);
    sy_json_end_object(r);
}

static void status_app(struct sy_admin_routing *env, struct sy_reply *r, size_t ai,
                       const struct traffic *acc, int wname, int wcluster)
{
    struct sy_state *st = env->state;
    const struct sy_route_table *t = sy_state_table(st);
    const struct sy_config *cfg = sy_route_table_config(t);
    const struct sy_app_spec *app = &cfg->apps[ai];
    const struct sy_override *o = sy_overrides_find(sy_state_overrides(st), app->name);
    struct sy_route_weight *eff;
    enum sy_override_state ostate;
    size_t n_eff = sy_route_app_weights_named(t, ai, &eff, &ostate);
    char problem[160];
    const char *why = o && ostate == SY_OVERRIDE_STALE
                          ? stale_reason(cfg, ai, o, problem, sizeof(problem))
                          : NULL;

    sy_json_begin_object(r, NULL);
    sy_json_str(r, "name", app->name);
    sy_json_str(r, "stable", cfg->clusters[app->stable].name);
    if (o)
        override_json(r, o, ostate == SY_OVERRIDE_STALE ? "stale" : "applied", why);
    else
        sy_json_null(r, "override");
    sy_admin_maintenance_status(r, st, app->name, false, wname);
    sy_json_begin_array(r, "clusters");
    for (size_t i = 0; i < app->n_weights; i++) {
        struct cluster_view v = {
            .name = cfg->clusters[app->weights[i].cluster].name,
            .spec = &cfg->clusters[app->weights[i].cluster],
            .stable = app->weights[i].cluster == app->stable,
            .file = app->weights[i].weight,
            .override = -1,
            .stale = ostate == SY_OVERRIDE_STALE,
            .effective = i < n_eff ? eff[i].weight : 0,
        };
        if (o) {
            v.override = 0;
            for (size_t k = 0; k < o->n_weights; k++)
                if (strcmp(o->weights[k].cluster, v.name) == 0)
                    v.override = o->weights[k].weight;
        }
        v.row = traffic_find(acc, app->name, v.name);
        status_cluster_text(r, &v, i == 0 ? app->name : "", wname, wcluster);
        status_cluster_json(r, &v);
    }
    sy_json_end_array(r);
    sy_exclusive_status_app(env->exclusive, app, r, wname);
    /* Last, so that the fields before them keep their places. */
    strings_json(r, "hosts", app->hosts, app->n_hosts);
    strings_json(r, "paths", app->paths, app->n_paths);
    source_json(r, cfg, app);
    sy_guard_status_app(env->guard, app, r, wname); /* after them: added later */
    sy_ramper_status_app(env->ramper, app, r, wname);
    sy_json_end_object(r);
    /* Under the table's rows: the answers we made ourselves (a cluster's or a client's
     * fault), where there are any. */
    for (size_t i = 0; i < app->n_weights; i++) {
        const char *cname = cfg->clusters[app->weights[i].cluster].name;
        const struct traffic_row *row = traffic_find(acc, app->name, cname);
        if (!row || !own_total(row->own))
            continue;
        sy_reply_printf(r, "%-*s   own answers on %s: ", wname, "", cname);
        own_text(r, row->own);
        sy_reply_printf(r, "\n");
    }
    sy_admin_maintenance_status(r, st, app->name, true, wname);
    if (o) {
        sy_reply_printf(r, "%-*s   override%s: ", wname, "",
                        ostate == SY_OVERRIDE_STALE ? " (STALE: the file's weights apply)" : "");
        override_text(r, o);
        sy_reply_printf(r, "\n");
        if (why)
            sy_reply_printf(r, "%-*s   stale because %s: `release %s` or set it again\n", wname, "",
                            why, app->name);
    }
    free(eff);
}

/* Which apps `status` lists: all, one by name, names matching a glob, or those overridden. */
struct status_sel {
    const char *app;     /* status APP */
    const char *pattern; /* status --filter GLOB (fnmatch) */
    bool overridden;     /* status --overridden */
};

static bool status_wants(const struct status_sel *sel, const char *name, bool has_override)
{
    if (sel->app)
        return strcmp(name, sel->app) == 0;
    if (sel->pattern)
        return fnmatch(sel->pattern, name, 0) == 0;
    if (sel->overridden)
        return has_override;
    return true;
}

/* JSON mode: the last refused reload, kept after a later reload succeeds (`current` false). */
static void status_rejection(struct sy_reply *r, const struct sy_reload_rejection *rj, bool current)
{
    if (!rj) {
        sy_json_null(r, "last_rejected_reload");
        return;
    }
    char when[32];
    sy_admin_iso8601(rj->time_ms, when);
    sy_json_begin_object(r, "last_rejected_reload");
    sy_json_str(r, "file", rj->file);
    sy_json_uint(r, "line", rj->line > 0 ? (uint64_t)rj->line : 0);
    sy_json_uint(r, "col", rj->col > 0 ? (uint64_t)rj->col : 0);
    sy_json_str(r, "message", rj->message);
    sy_json_str(r, "time", when);
    sy_json_uint(r, "time_ms", rj->time_ms);
    sy_json_bool(r, "current", current);
    sy_json_end_object(r);
}

static void history_cb(const struct sy_journal_record *rec, void *arg);

/* `history` of `status --json` as last written, and the journal and sequence it was read at:
 * reading a journal near its compaction costs tens of milliseconds of the control thread, and
 * the status page asks every 2 s. Control thread only; freed with the process. */
static struct {
    const struct sy_journal *j; /* NULL: nothing kept */
    char *path;                 /* the journal's, should another one get the same address */
    uint64_t seq;
    struct sy_reply json; /* the array, alone */
} status_history_cache;

/* JSON mode: "history": the last STATUS_HISTORY records, as `history --json` has them. A
 * journal that cannot be read leaves the list empty: status still answers. */
static void status_history(struct sy_reply *r, struct sy_journal *j, uint64_t seq)
{
    if (!j) {
        sy_json_begin_array(r, "history");
        sy_json_end_array(r);
        return;
    }
    struct sy_reply *c = &status_history_cache.json;
    const char *path = sy_journal_path(j);
    if (status_history_cache.j != j || status_history_cache.seq != seq ||
        strcmp(status_history_cache.path, path) != 0) {
        sy_reply_dispose(c);
        sy_reply_init(c, true);
        c->out.comma[0] = false; /* a value alone, not a member after others */
        sy_json_begin_array(c, NULL);
        bool ok = sy_journal_history(j, STATUS_HISTORY, history_cb, c) == 0;
        if (!ok) { /* an empty list, not kept: the next status reads again */
            sy_reply_dispose(c);
            sy_reply_init(c, true);
            c->out.comma[0] = false;
            sy_json_begin_array(c, NULL);
        }
        sy_json_end_array(c);
        free(status_history_cache.path);
        status_history_cache.path = sy_xstrdup(path);
        status_history_cache.j = ok ? j : NULL;
        status_history_cache.seq = seq;
    }
    sy_json_raw(r, "history", c->out.p, c->out.len);
}

/* The first lines: the generation, the journal, how the overrides stand, the last rejected
 * reload, and the log's and access log's drops. */
static void status_head(struct sy_admin_routing *env, struct sy_reply *r)
{
    struct sy_state *st = env->state;
    const struct sy_config *cfg = config_of(env);
    const struct sy_route_table *t = sy_state_table(st);
    const struct sy_overrides *ov = sy_state_overrides(st);
    struct sy_journal *j = sy_state_journal(st);
    const char *last_err = sy_state_last_reload_error(st);
    sy_reply_printf(r,
                    "generation %" PRIu64 ", journal seq %" PRIu64 " (%s), %zu apps, %zu "
                    "overrides, %" PRIu64 " reload failures\n",
                    sy_state_generation(st), sy_state_journal_seq(st),
                    j ? sy_journal_path(j) : "no journal", cfg->n_apps, ov->n,
                    sy_state_reload_failures(st));
    /* With thousands of apps, what is overridden is the first thing to know. */
    size_t n_applied = 0, n_stale = 0, n_orphans = 0;
    for (size_t i = 0; i < ov->n; i++) {
        long ai = sy_config_app_index(cfg, ov->v[i].app);
        const struct sy_weight_spec *w;
        size_t nw;
        if (ai < 0)
            n_orphans++;
        else if (sy_route_app_weights(t, (size_t)ai, &w, &nw) == SY_OVERRIDE_STALE)
            n_stale++;
        else
            n_applied++;
    }
    sy_reply_printf(r,
                    "apps with an override: %zu applied, %zu stale, %zu not in the file "
                    "(`status --overridden` lists them)\n",
                    n_applied, n_stale, n_orphans);
    sy_json_begin_object(r, "overridden");
    sy_json_uint(r, "applied", n_applied);
    sy_json_uint(r, "stale", n_stale);
    sy_json_uint(r, "orphans", n_orphans);
    sy_json_end_object(r);
    if (last_err)
        sy_reply_printf(r, "last reload rejected: %s\n", last_err);
    sy_json_str(r, "file", sy_state_path(st));
    sy_json_str(r, "journal", j ? sy_journal_path(j) : NULL);
    sy_json_uint(r, "reload_failures", sy_state_reload_failures(st));
    sy_json_str(r, "last_reload_error", last_err);
    status_rejection(r, sy_state_last_rejection(st), last_err != NULL);
    sy_json_str(r, "admin_socket",
                env->admin && env->admin->path ? env->admin->path : cfg->admin.socket);
    struct sy_log_stats ls;
    sy_log_stats(&ls);
    if (ls.dropped || ls.suppressed)
        sy_reply_printf(r,
                        "log: %" PRIu64 " lines dropped (stderr too slow), %" PRIu64
                        " client-caused lines suppressed (limits.log_client_lines)\n",
                        ls.dropped, ls.suppressed);
    sy_json_uint(r, "log_lines_dropped", ls.dropped);
    sy_json_uint(r, "log_lines_suppressed", ls.suppressed);
    sy_json_uint(r, "access_log_dropped", sy_access_log_dropped());
    sy_guard_status_head(env->guard, r);
    sy_fleet_status_head(env->fleet, r);
}

/* The table of the apps `sel` wants, under its header line; returns how many were shown. */
static size_t status_apps(struct sy_admin_routing *env, struct sy_reply *r,
                          const struct status_sel *sel, const struct traffic *acc)
{
    const struct sy_config *cfg = config_of(env);
    const struct sy_route_table *t = sy_state_table(env->state);
    int wname = 3, wcluster = 7;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        int n = (int)strlen(cfg->apps[i].name);
        if (n > wname)
            wname = n < 40 ? n : 40;
    }
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        int n = (int)strlen(cfg->clusters[i].name);
        if (n > wcluster)
            wcluster = n;
    }
    sy_reply_printf(r, "%-*s %-*s %c %4s %8s %9s %10s %6s %9s %7s\n", wname, "APP", wcluster,
                    "CLUSTER", ' ', "FILE", "OVERRIDE", "EFFECTIVE", "REQUESTS", "5XX", "IN-FLIGHT",
                    "TUNNELS");
    sy_json_begin_array(r, "apps");
    size_t shown = 0;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct sy_weight_spec *w;
        size_t nw;
        bool has = sel->overridden && sy_route_app_weights(t, i, &w, &nw) != SY_OVERRIDE_NONE;
        if (status_wants(sel, cfg->apps[i].name, has)) {
            status_app(env, r, i, acc, wname, wcluster);
            shown++;
        }
    }
    sy_json_end_array(r);
    return shown;
}

/* Answers made before a request had an app (bad requests, unknown hosts, head deadlines): a
 * client's fault, or a missing route; and the PROXY protocol refusals. */
static void status_unrouted(struct sy_reply *r, const struct status_sel *sel,
                            const struct traffic *acc)
{
    bool all = !sel->app && !sel->pattern && !sel->overridden;
    uint64_t unrouted = own_total(acc->unrouted);
    sy_json_begin_object(r, "unrouted");
    sy_json_uint(r, "own_answers", unrouted);
    own_json(r, "own", acc->unrouted);
    if (unrouted && all) {
        sy_reply_printf(r, "own answers before routing (no app): ");
        own_text(r, acc->unrouted);
        sy_reply_printf(r, "\n");
    }
    sy_json_uint(r, "proxy_protocol_rejected", acc->pp_rejected);
    if (acc->pp_rejected && all)
        sy_reply_printf(
            r, "connections closed for a missing or bad PROXY protocol header: %" PRIu64 "\n",
            acc->pp_rejected);
    sy_json_end_object(r);
}

/* Overrides of apps the file no longer has: kept, shown, to be released. */
static void status_orphans(struct sy_admin_routing *env, struct sy_reply *r,
                           const struct status_sel *sel)
{
    const struct sy_config *cfg = config_of(env);
    const struct sy_overrides *ov = sy_state_overrides(env->state);
    sy_json_begin_array(r, "orphans");
    for (size_t i = 0; i < ov->n; i++) {
        const struct sy_override *o = &ov->v[i];
        if (sy_config_app_index(cfg, o->app) >= 0 || !status_wants(sel, o->app, true))
            continue;
        char w[1024];
        sy_route_weights_text(o->weights, o->n_weights, w, sizeof(w));
        sy_reply_printf(r, "override of app '%s', which the file does not have (%s): ", o->app, w);
        override_text(r, o);
        sy_reply_printf(r, "\n");
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "name", o->app);
        override_json(r, o, "stale", "the app is not in the file");
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
}

/* Endpoint health, kept small: state, reason, since; for the clusters with health checks or
 * outlier ejection (the others' endpoints are always up). Then each cluster's failovers and
 * retries, when there were any. */
static void status_health(struct sy_admin_routing *env, struct sy_reply *r)
{
    const struct sy_config *cfg = config_of(env);
    uint64_t now = sy_now_ms();
    sy_json_begin_array(r, "endpoints");
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        const struct sy_cluster_spec *cl = &cfg->clusters[c];
        if (!cl->health.on && !cl->outlier.on)
            continue;
        for (size_t e = 0; e < cl->n_endpoints; e++) {
            const struct sy_ep_health *h = cl->endpoints[e].hs;
            if (!h)
                continue;
            bool down = atomic_load_explicit(&h->down, memory_order_relaxed) != 0;
            const char *state = down ? "down" : sy_ep_is_up(h, now) ? "up" : "ejected";
            char reason[64], since[32] = "";
            sy_health_reason_text(atomic_load_explicit(&h->reason, memory_order_relaxed), reason,
                                  sizeof(reason));
            uint64_t ms = atomic_load_explicit(&h->since_ms, memory_order_relaxed);
            if (ms) {
                time_t secs = (time_t)(ms / 1000);
                struct tm tm;
                gmtime_r(&secs, &tm);
                strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
            }
            sy_reply_printf(r, "endpoint %s %s: %s (%s%s%s)\n", cl->name, cl->endpoints[e].address,
                            state, reason, ms ? ", since " : "", since);
            sy_json_begin_object(r, NULL);
            sy_json_str(r, "cluster", cl->name);
            sy_json_str(r, "endpoint", cl->endpoints[e].address);
            sy_json_str(r, "state", state);
            sy_json_str(r, "reason", reason);
            sy_json_str(r, "since", ms ? since : NULL);
            sy_json_end_object(r);
        }
    }
    sy_json_end_array(r);
    sy_json_begin_array(r, "cluster_health");
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        const struct sy_cluster_health *h = cfg->clusters[c].hs;
        if (!h)
            continue;
        uint64_t fo = atomic_load_explicit(&h->failovers, memory_order_relaxed);
        uint64_t d5 = atomic_load_explicit(&h->down_503, memory_order_relaxed);
        uint64_t rt = atomic_load_explicit(&h->retries, memory_order_relaxed);
        uint64_t rd = atomic_load_explicit(&h->retries_denied, memory_order_relaxed);
        if (fo || d5 || rt || rd)
            sy_reply_printf(r,
                            "cluster %s: %" PRIu64 " requests failed over, %" PRIu64
                            " answered 503 (down, failover off), %" PRIu64
                            " connect retries, %" PRIu64 " retries over budget\n",
                            cfg->clusters[c].name, fo, d5, rt, rd);
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "cluster", cfg->clusters[c].name);
        sy_json_bool(r, "up", sy_cluster_is_up(&cfg->clusters[c], now));
        sy_json_uint(r, "failover", fo);
        sy_json_uint(r, "down_503", d5);
        sy_json_uint(r, "retries", rt);
        sy_json_uint(r, "retries_denied", rd);
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
}

static int cmd_status(struct sy_admin_req *req)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    struct sy_state *st = env->state;
    struct status_sel sel = {0};
    if (req->argc == 3 && strcmp(req->argv[1], "--filter") == 0)
        sel.pattern = req->argv[2];
    else if (req->argc == 2 && strcmp(req->argv[1], "--overridden") == 0)
        sel.overridden = true;
    else if (req->argc == 2 && req->argv[1][0] != '-')
        sel.app = req->argv[1];
    else if (req->argc != 1)
        return sy_reply_error(r, "usage: status [APP | --filter GLOB | --overridden]");
    const struct sy_config *cfg = config_of(env);
    if (sel.app && sy_config_app_index(cfg, sel.app) < 0 &&
        !sy_overrides_find(sy_state_overrides(st), sel.app))
        return sy_reply_error(r, "unknown app '%.64s'", sel.app);

    struct traffic acc = {0};
    if (env->traffic)
        env->traffic(env->traffic_arg, traffic_cb, &acc);
    traffic_sort(&acc);
    status_head(env, r);
    size_t shown = status_apps(env, r, &sel, &acc);
    status_unrouted(r, &sel, &acc);
    status_orphans(env, r, &sel);
    status_health(env, r);
    /* The last changes, for the status page and `status --watch` (JSON only: people have
     * `history`). */
    if (r->json)
        status_history(r, sy_state_journal(st), sy_state_journal_seq(st));
    if (sel.pattern || sel.overridden)
        sy_reply_printf(r, "%zu of %zu apps shown\n", shown, cfg->n_apps);
    sy_reply_printf(r, "(* = stable cluster; ! = stale override, not in force)\n");
    traffic_dispose(&acc);
    return 0;
}

/* -- changes ------------------------------------------------------------------------------- */

/* Each app's weights before and after a change, for people and scripts. */
static void changes_lines(struct sy_reply *r, const struct sy_route_table *before,
                          const struct sy_route_table *after, const struct sy_state_edit *edits,
                          size_t n)
{
    const struct sy_config *bcfg = sy_route_table_config(before);
    const struct sy_config *acfg = sy_route_table_config(after);
    sy_json_begin_array(r, "changes");
    for (size_t i = 0; i < n; i++) {
        struct sy_route_weight *from = NULL, *to = NULL;
        size_t nf = 0, nt = 0;
        long bi = sy_config_app_index(bcfg, edits[i].app),
             ai = sy_config_app_index(acfg, edits[i].app);
        if (bi >= 0)
            nf = sy_route_app_weights_named(before, (size_t)bi, &from, NULL);
        if (ai >= 0)
            nt = sy_route_app_weights_named(after, (size_t)ai, &to, NULL);
        char fs[1024], ts[1024];
        sy_route_weights_text(from, nf, fs, sizeof(fs));
        sy_route_weights_text(to, nt, ts, sizeof(ts));
        sy_reply_printf(r, "%s: %s -> %s%s\n", edits[i].app, fs, ts,
                        edits[i].release ? " (released: the file's weights)" : "");
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "app", edits[i].app);
        sy_json_bool(r, "released", edits[i].release);
        json_weights(r, "from", from, nf);
        json_weights(r, "to", to, nt);
        sy_json_end_object(r);
        free(from);
        free(to);
    }
    sy_json_end_array(r);
}

/* A fleet change waiting for etcd and the members: what its answer needs. */
struct fleet_answer {
    struct sy_admin_later *later;
    struct sy_admin_routing *env;
    struct sy_route_table *before;
    struct sy_state_edit *edits; /* app names owned; weights unused */
    size_t n;
};

/* The members' confirmations of a fleet change. */
static void fleet_members(struct sy_reply *r, const struct sy_fleet_result *res)
{
    sy_json_begin_object(r, "fleet");
    sy_json_uint(r, "revision", res->rev);
    sy_json_uint(r, "commit_ms", res->commit_ms);
    sy_json_bool(r, "waited", res->waited);
    sy_json_begin_array(r, "members");
    if (res->rev)
        sy_reply_printf(r, "etcd revision %" PRIu64 " (committed in %" PRIu64 " ms)%s\n", res->rev,
                        res->commit_ms, res->waited ? "; members:" : "");
    for (size_t i = 0; i < res->n_members && res->waited; i++) {
        const struct sy_fleet_member *m = &res->members[i];
        if (m->applied)
            sy_reply_printf(r, "  %s: applied in %" PRIu64 " ms\n", m->instance, m->delay_ms);
        else
            sy_reply_printf(r, "  %s: NOT confirmed (at revision %" PRIu64 ")\n", m->instance,
                            m->rev);
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "instance", m->instance);
        sy_json_bool(r, "applied", m->applied);
        if (m->applied)
            sy_json_uint(r, "delay_ms", m->delay_ms);
        sy_json_uint(r, "revision", m->rev);
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
    sy_json_end_object(r);
}

static void fleet_done(const struct sy_fleet_result *res, void *arg)
{
    struct fleet_answer *fa = arg;
    struct sy_reply *r = sy_admin_later_reply(fa->later);
    struct sy_state *st = fa->env->state;
    uint64_t published = 0;
    if (res->rev) { /* committed: applied here, maybe not everywhere */
        changes_lines(r, fa->before, sy_state_table(st), fa->edits, fa->n);
        fleet_members(r, res);
        sy_reply_printf(r, "generation %" PRIu64 ", journal seq %" PRIu64 "\n",
                        sy_state_generation(st), sy_state_journal_seq(st));
        published = sy_state_generation(st);
    }
    if (res->rc)
        sy_reply_error(r, "%s", res->why);
    sy_admin_later_done(fa->later, published);
    sy_route_table_release(fa->before);
    for (size_t i = 0; i < fa->n; i++)
        free((char *)fa->edits[i].app);
    free(fa->edits);
    free(fa);
}

/* A change for the whole fleet: answered once etcd has it and this replica (with --wait,
 * every member) has applied it. */
static int fleet_change(struct sy_admin_req *req, const struct sy_state_edit *edits, size_t n)
{
    struct sy_admin_routing *env = req->ctx;
    struct fleet_answer *fa = sy_xcalloc(1, sizeof(*fa));
    fa->env = env;
    fa->n = n;
    fa->edits = sy_xcalloc(n, sizeof(*fa->edits));
    for (size_t i = 0; i < n; i++) {
        fa->edits[i].app = sy_xstrdup(edits[i].app);
        fa->edits[i].release = edits[i].release;
    }
    fa->before = sy_route_table_acquire(sy_state_table(env->state));
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    char err[512];
    int rc = sy_fleet_change(env->fleet, edits, n, &who, env->req_wait, fleet_done, fa, err,
                             sizeof(err));
    if (rc) {
        sy_route_table_release(fa->before);
        for (size_t i = 0; i < n; i++)
            free((char *)fa->edits[i].app);
        free(fa->edits);
        free(fa);
        return sy_reply_error(req->reply, "%s", err);
    }
    fa->later = sy_admin_defer(req); /* fleet_done comes later, never from in here */
    return 0;
}

/* Takes the flags of a change out of the words: `--reason TEXT` (why: it stays in the command
 * text that the journal, `history` and a fleet's etcd record carry), and in a fleet `--local`
 * (this replica only), `--wait` and `--no-wait` (whether the answer waits for every member;
 * it does by default). */
static int change_flags(struct sy_admin_req *req)
{
    struct sy_admin_routing *env = req->ctx;
    env->req_local = false;
    env->req_wait = true;
    int k = 0;
    for (int i = 0; i < req->argc; i++) {
        const char *w = req->argv[i];
        if (i > 0 && strcmp(w, "--reason") == 0) {
            if (i + 1 >= req->argc || req->argv[i + 1][0] == '\0' ||
                strncmp(req->argv[i + 1], "--", 2) == 0)
                return sy_reply_error(req->reply,
                                      "--reason needs a text after it (quote it: --reason "
                                      "\"green 5xx after the deploy\")");
            i++;
            continue;
        }
        bool local = strcmp(w, "--local") == 0, wait = strcmp(w, "--wait") == 0,
             no_wait = strcmp(w, "--no-wait") == 0;
        if (i > 0 && (local || wait || no_wait)) {
            if (!env->fleet)
                return sy_reply_error(req->reply,
                                      "%s is for a fleet (`fleet:` in the file): without one, "
                                      "every change is this replica's only",
                                      w);
            env->req_local = env->req_local || local;
            env->req_wait = wait || (!no_wait && env->req_wait);
            continue;
        }
        req->argv[k++] = req->argv[i];
    }
    req->argc = k;
    return 0;
}

/* Makes one change and reports each app's weights before and after. */
static int change(struct sy_admin_req *req, const struct sy_state_edit *edits, size_t n)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    struct sy_state *st = env->state;
    /* A held app is switching: a change of its weights now would release what it holds
     * before the old cluster is quiet. */
    const struct sy_config *cfg = config_of(env);
    for (size_t i = 0; i < n; i++) {
        long ai = sy_config_app_index(cfg, edits[i].app);
        if (ai >= 0 && sy_route_app_is_held(sy_state_table(st), (size_t)ai))
            return sy_reply_error(r,
                                  "app '%s': switch in progress (let it finish, or `switch "
                                  "--abort %s`)",
                                  edits[i].app, edits[i].app);
    }
    if (env->fleet && !env->req_local)
        return fleet_change(req, edits, n);
    struct sy_route_table *before = sy_route_table_acquire(sy_state_table(st));
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    if (env->fleet) {
        who.local = true;
        who.instance = sy_fleet_instance(env->fleet);
    }
    char err[512];
    int rc = sy_state_change(st, edits, n, &who, err, sizeof(err));
    if (rc) {
        sy_route_table_release(before);
        return sy_reply_error(r, "%s", err);
    }
    changes_lines(r, before, sy_state_table(st), edits, n);
    if (env->fleet) {
        sy_reply_printf(r, "--local: this replica only; the fleet (etcd) is not changed\n");
        bool released = false;
        for (size_t i = 0; i < n; i++)
            released = released || edits[i].release;
        if (released) { /* what the local override hid comes back from etcd */
            sy_fleet_resync(env->fleet);
            sy_reply_printf(r, "released here: the fleet's override, if any, is read again "
                               "from etcd\n");
        }
    }
    sy_reply_printf(r, "generation %" PRIu64 ", journal seq %" PRIu64 "\n", sy_state_generation(st),
                    sy_state_journal_seq(st));
    sy_route_table_release(before);
    req->published = sy_state_generation(st);
    return 0;
}

/* "N": a decimal 0..100, nothing else. */
static bool parse_weight(const char *s, unsigned *out)
{
    unsigned v = 0;
    if (!sy_admin_parse_decimal(s, strlen(s), 3, &v) || v > 100)
        return false;
    *out = v;
    return true;
}

static int exclusive_switch(struct sy_admin_req *req, const char *app, const char *to);
static bool is_exclusive(struct sy_admin_req *req, const char *app);

static int cmd_weights(struct sy_admin_req *req)
{
    struct sy_reply *r = req->reply;
    if (change_flags(req))
        return SY_ERR_INVALID;
    if (req->argc < 3)
        return sy_reply_error(r, "usage: weights APP CLUSTER=N...");
    struct sy_route_weight w[SY_ADMIN_MAX_ARGS];
    size_t n = 0;
    for (int i = 2; i < req->argc; i++) {
        char *eq = strchr(req->argv[i], '=');
        if (!eq || eq == req->argv[i])
            return sy_reply_error(r, "malformed weight '%.64s' (want CLUSTER=N, N 0..100)",
                                  req->argv[i]);
        *eq = '\0';
        unsigned v;
        if (!parse_weight(eq + 1, &v))
            return sy_reply_error(r, "weight of '%.64s' must be an integer 0..100, got '%.16s'",
                                  req->argv[i], eq + 1);
        w[n].cluster = req->argv[i];
        w[n].weight = v;
        n++;
    }
    struct sy_state_edit e = {.app = req->argv[1], .weights = w, .n_weights = n};
    /* An exclusive app: a split is refused (sy_state_change says why); 100 on a cluster it
     * does not run on is a switch. */
    struct sy_admin_routing *env = req->ctx;
    if (is_exclusive(req, e.app)) {
        const char *to = NULL;
        for (size_t i = 0; i < n; i++)
            if (w[i].weight == 100)
                to = w[i].cluster;
        long ai = sy_config_app_index(config_of(env), e.app);
        struct sy_route_weight *eff;
        size_t n_eff =
            sy_route_app_weights_named(sy_state_table(env->state), (size_t)ai, &eff, NULL);
        bool there = false;
        for (size_t i = 0; i < n_eff && to; i++)
            there = there || (eff[i].weight == 100 && strcmp(eff[i].cluster, to) == 0);
        free(eff);
        bool split = false;
        for (size_t i = 0; i < n; i++)
            split = split || (w[i].weight != 0 && w[i].weight != 100);
        if (to && !there && !split)
            return exclusive_switch(req, e.app, to);
    }
    return change(req, &e, 1);
}

/* The `switch` member of an exclusive switch begun (to the file's cluster without `to`), and
 * the generation the answer waits for. */
static void switch_begun(struct sy_admin_req *req, const char *app, const char *to)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    sy_json_begin_object(r, "switch");
    sy_json_str(r, "app", app);
    if (to)
        sy_json_str(r, "to", to);
    sy_json_str(r, "phase", "drain");
    sy_json_end_object(r);
    req->published = sy_state_generation(env->state);
}

/* An exclusive app moves through the engine (admin/exclusive.c): `ok` once its new requests
 * are held; the move itself completes later (status shows the phase). */
static int exclusive_switch(struct sy_admin_req *req, const char *app, const char *to)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    char err[512];
    if (sy_exclusive_start(env->exclusive, app, to, &who, err, sizeof(err)) != 0)
        return sy_reply_error(r, "%s", err);
    sy_reply_printf(r,
                    "%s: exclusive switch to %s begun: new requests are held while the old "
                    "cluster drains (see `status %s`)\n",
                    app, to, app);
    switch_begun(req, app, to);
    return 0;
}

static bool is_exclusive(struct sy_admin_req *req, const char *app)
{
    struct sy_admin_routing *env = req->ctx;
    return env->exclusive && sy_exclusive_is_app(config_of(env), app);
}

static int cmd_switch(struct sy_admin_req *req)
{
    struct sy_reply *r = req->reply;
    if (change_flags(req))
        return SY_ERR_INVALID;
    if (req->argc == 3 && strcmp(req->argv[1], "--abort") == 0) {
        struct sy_admin_routing *env = req->ctx;
        char err[512];
        if (!env->exclusive || sy_exclusive_abort(env->exclusive, req->argv[2], err, sizeof(err)))
            return sy_reply_error(r, "%s", env->exclusive ? err : "no exclusive switch here");
        sy_reply_printf(r, "%s: switch aborted: back where the journal says\n", req->argv[2]);
        req->published = sy_state_generation(env->state);
        return 0;
    }
    if (req->argc != 3)
        return sy_reply_error(r, "usage: switch APP CLUSTER | switch --abort APP");
    if (is_exclusive(req, req->argv[1]))
        return exclusive_switch(req, req->argv[1], req->argv[2]);
    struct sy_route_weight w = {req->argv[2], 100};
    struct sy_state_edit e = {.app = req->argv[1], .weights = &w, .n_weights = 1};
    return change(req, &e, 1);
}

/* Whether `revert --all` moves exclusive app `app` (it runs, or is switching, elsewhere than
 * `stable`): it then gets a switch of its own (revert_switches). */
static bool revert_moves(struct sy_admin_req *req, size_t ai, const char *stable)
{
    struct sy_admin_routing *env = req->ctx;
    const struct sy_route_table *t = sy_state_table(env->state);
    struct sy_route_weight *eff;
    size_t n = sy_route_app_weights_named(t, ai, &eff, NULL);
    bool there = false;
    for (size_t i = 0; i < n; i++)
        there = there || (eff[i].weight == 100 && strcmp(eff[i].cluster, stable) == 0);
    free(eff);
    /* A switch that runs (towards `stable` or not) is the engine's to settle. */
    return !there || sy_route_app_is_held(t, ai);
}

/* The exclusive apps of `revert --all` that must move: a switch each, all at once. An app
 * the engine cannot switch is reverted at once, as a weighted app is. */
static int revert_switches(struct sy_admin_req *req, const struct sy_config *cfg,
                           const unsigned char *moving, size_t n)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    sy_json_begin_array(r, "exclusive_switches");
    for (size_t i = 0; i < n; i++) {
        if (!moving[i])
            continue;
        const struct sy_app_spec *app = &cfg->apps[i];
        const char *stable = cfg->clusters[app->stable].name;
        char err[512];
        int rc = sy_exclusive_move(env->exclusive, app->name, stable, &who, err, sizeof(err));
        if (rc < 0) {
            struct sy_route_weight w = {stable, 100};
            struct sy_state_edit e = {.app = app->name, .weights = &w, .n_weights = 1};
            sy_log(SY_LOG_WARN, "exclusive", "revert --all: app %s cannot switch (%s): at once",
                   app->name, err);
            rc = sy_state_change(env->state, &e, 1, &who, err, sizeof(err));
            sy_reply_printf(r, "%s: no exclusive switch (%s): reverted at once%s%s\n", app->name,
                            err, rc ? ": " : "", rc ? err : "");
            continue;
        }
        if (rc)
            sy_reply_printf(r,
                            "%s: exclusive switch to %s begun: new requests are held while the "
                            "old cluster drains\n",
                            app->name, stable);
        else
            sy_reply_printf(r, "%s: on %s already (its switch elsewhere was aborted)\n", app->name,
                            stable);
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "app", app->name);
        sy_json_str(r, "to", stable);
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
    req->published = sy_state_generation(env->state);
    return 0;
}

/* The one argument of `revert` and `release`: APP, or --all (*all). 0, or the usage answered. */
static int app_or_all(struct sy_admin_req *req, bool *all)
{
    if (req->argc != 2)
        return sy_reply_error(req->reply, "usage: %s APP | %s --all", req->argv[0], req->argv[0]);
    *all = strcmp(req->argv[1], "--all") == 0;
    return 0;
}

static int cmd_revert(struct sy_admin_req *req)
{
    bool all = false;
    int rc = change_flags(req) ? SY_ERR_INVALID : app_or_all(req, &all);
    if (rc)
        return rc;
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    const struct sy_config *cfg = config_of(env);
    if (all && cfg->n_apps == 0)
        return sy_reply_error(r, "the file has no apps");
    long only = all ? -1 : sy_config_app_index(cfg, req->argv[1]);
    if (!all && only < 0)
        return sy_reply_error(r, "unknown app '%.64s'", req->argv[1]);
    if (!all && is_exclusive(req, req->argv[1]))
        return exclusive_switch(req, req->argv[1], cfg->clusters[cfg->apps[only].stable].name);
    size_t n = all ? cfg->n_apps : 1;
    struct sy_state_edit *e = sy_xcalloc(n, sizeof(*e));
    struct sy_route_weight *w = sy_xcalloc(n, sizeof(*w));
    unsigned char *moving = sy_xcalloc(n, 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sy_app_spec *app = &cfg->apps[all ? i : (size_t)only];
        if (all && app->mode == SY_APP_EXCLUSIVE && env->exclusive &&
            revert_moves(req, all ? i : (size_t)only, cfg->clusters[app->stable].name)) {
            moving[i] = 1;
            continue;
        }
        w[k].cluster = cfg->clusters[app->stable].name;
        w[k].weight = 100;
        e[k].app = app->name;
        e[k].weights = &w[k];
        e[k].n_weights = 1;
        k++;
    }
    /* One record and one snapshot for every app: they all move at the same instant, except
     * the exclusive apps that must move, each through a switch of its own. */
    rc = k ? change(req, e, k) : 0;
    if (rc == 0)
        rc = revert_switches(req, cfg, moving, n);
    free(moving);
    free(e);
    free(w);
    return rc;
}

/* `release APP` of an exclusive app whose override and file disagree: a switch to the file's
 * side (admin/exclusive.c). Returns 1 (begun), 0 (nothing to move: release as usual) or the
 * error answered. */
static int release_exclusive(struct sy_admin_req *req, const char *app)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    char err[512];
    int rc = sy_exclusive_release(env->exclusive, app, &who, err, sizeof(err));
    if (rc <= 0)
        return rc < 0 ? sy_reply_error(r, "%s", err) : 0;
    sy_reply_printf(r,
                    "%s: exclusive switch to the file's cluster begun: new requests are held "
                    "while the old cluster drains; the override is dropped at the release\n",
                    app);
    switch_begun(req, app, NULL);
    return 1;
}

static int cmd_release(struct sy_admin_req *req)
{
    bool all = false;
    int rc = change_flags(req) ? SY_ERR_INVALID : app_or_all(req, &all);
    if (rc)
        return rc;
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    if (!all) {
        struct sy_state_edit e = {.app = req->argv[1], .release = true};
        if (sy_config_app_index(config_of(env), e.app) < 0 &&
            !sy_overrides_find(sy_state_overrides(env->state), e.app))
            return sy_reply_error(r, "unknown app '%.64s'", e.app);
        rc = is_exclusive(req, e.app) ? release_exclusive(req, e.app) : 0;
        if (rc)
            return rc < 0 ? rc : 0;
        return change(req, &e, 1);
    }
    const struct sy_overrides *ov = sy_state_overrides(env->state);
    if (ov->n == 0) {
        sy_reply_printf(r, "no overrides: every app follows the file\n");
        sy_json_begin_array(r, "changes");
        sy_json_end_array(r);
        return 0;
    }
    size_t n = ov->n, k = 0, n_moving = 0;
    struct sy_state_edit *e = sy_xcalloc(n, sizeof(*e));
    char **names = sy_xcalloc(n, sizeof(*names)), **moving = sy_xcalloc(n, sizeof(*moving));
    for (size_t i = 0; i < n; i++) {
        char *name = sy_xstrdup(ov->v[i].app); /* the set changes under the edit */
        /* An exclusive app that the release moves gets a switch of its own. */
        if (env->exclusive && sy_exclusive_release_moves(env->exclusive, name)) {
            moving[n_moving++] = name;
            continue;
        }
        names[k] = name;
        e[k].app = name;
        e[k++].release = true;
    }
    rc = k ? change(req, e, k) : 0;
    sy_json_begin_array(r, "exclusive_switches");
    for (size_t i = 0; i < n_moving && rc == 0; i++) {
        struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
        char err[512];
        if (sy_exclusive_release(env->exclusive, moving[i], &who, err, sizeof(err)) < 0) {
            sy_reply_printf(r, "%s: not released: %s\n", moving[i], err);
            continue;
        }
        sy_reply_printf(r, "%s: exclusive switch to the file's cluster begun\n", moving[i]);
        sy_json_str(r, NULL, moving[i]);
        req->published = sy_state_generation(env->state);
    }
    sy_json_end_array(r);
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
        free(moving[i]);
    }
    free(names);
    free(moving);
    free(e);
    return rc;
}

static int cmd_reload(struct sy_admin_req *req)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    if (req->argc != 1)
        return sy_reply_error(r, "usage: reload");
    struct sy_diags d;
    sy_diags_init(&d);
    enum sy_reload_result res = sy_state_reload(env->state, true, &d);
    int rc = 0;
    if (res == SY_RELOAD_REJECTED) {
        char line[512];
        sy_json_begin_array(r, "errors");
        for (size_t i = 0; i < d.n; i++) {
            sy_diag_format(&d.v[i], line, sizeof(line));
            sy_reply_printf(r, "  %s\n", line);
            sy_json_str(r, NULL, line);
        }
        sy_json_end_array(r);
        if (d.n)
            sy_diag_format(&d.v[0], line, sizeof(line));
        rc = sy_reply_error(r, "reload rejected (generation %" PRIu64 " kept): %s",
                            sy_state_generation(env->state), d.n ? line : "unknown error");
    } else {
        sy_reply_printf(r, "generation %" PRIu64 " published\n", sy_state_generation(env->state));
        req->published = sy_state_generation(env->state);
        if (res == SY_RELOAD_PUBLISHED)
            sy_exclusive_reload_report(env->exclusive, sy_state_generation(env->state), r);
    }
    sy_diags_dispose(&d);
    return rc;
}

/* -- explain ------------------------------------------------------------------------------- */

/* What `explain` was told of the request: its headers (and cookies, as one Cookie header) and
 * the client's address. */
struct explain_req {
    struct sy_header headers[EXPLAIN_MAX_HEADERS + 1];
    size_t nh;
    char cookies[SY_ADMIN_LINE_MAX + 1];
    size_t clen;
    struct sockaddr_storage from;
    bool have_from;
};

/* `--from ADDRESS`. */
static int explain_from(struct sy_reply *r, struct explain_req *e, const char *ip)
{
    memset(&e->from, 0, sizeof(e->from));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&e->from;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&e->from;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1)
        a4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1)
        a6->sin6_family = AF_INET6;
    else
        return sy_reply_error(r, "bad address '%.64s'", ip);
    e->have_from = true;
    return 0;
}

/* The arguments after HOST PATH: NAME:VALUE headers, NAME=VALUE cookies, --from ADDRESS. */
static int explain_args(struct sy_admin_req *req, struct explain_req *e)
{
    struct sy_reply *r = req->reply;
    for (int i = 3; i < req->argc; i++) {
        char *a = req->argv[i];
        if (strcmp(a, "--from") == 0) {
            if (i + 1 == req->argc)
                return sy_reply_error(r, "--from needs an address");
            int rc = explain_from(r, e, req->argv[++i]);
            if (rc)
                return rc;
            continue;
        }
        char *colon = strchr(a, ':'), *eq = strchr(a, '=');
        if (colon && (!eq || colon < eq) && colon != a) {
            if (e->nh == EXPLAIN_MAX_HEADERS)
                return sy_reply_error(r, "too many headers");
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            e->headers[e->nh].name = sy_slice_of(a, (size_t)(colon - a));
            e->headers[e->nh].value = sy_slice_of(v, strlen(v));
            e->nh++;
        } else if (eq && eq != a) {
            int n = snprintf(e->cookies + e->clen, sizeof(e->cookies) - e->clen, "%s%s",
                             e->clen ? "; " : "", a);
            if (n > 0)
                e->clen += (size_t)n;
        } else {
            return sy_reply_error(r,
                                  "'%.64s' is neither NAME:VALUE (a header) nor NAME=VALUE "
                                  "(a cookie)",
                                  a);
        }
    }
    if (e->clen)
        e->headers[e->nh++] =
            (struct sy_header){sy_slice_of("cookie", 6), sy_slice_of(e->cookies, e->clen)};
    return 0;
}

/* Why the pick chose `cluster`, in one sentence, from the pick's own reason and rule. */
static void explain_detail(const struct sy_app_spec *spec, const struct sy_route_choice *ch,
                           const char *cluster, const char *ws, enum sy_override_state ostate,
                           char *detail, size_t size)
{
    detail[0] = '\0';
    switch (ch->reason) {
    case SY_PICK_FORCE:
        /* The pick says which of the two decided (the header is tried first). */
        if (ch->rule == SY_RULE_FORCE_HEADER)
            snprintf(detail, size, "force header '%s' names it", spec->force.header);
        else
            snprintf(detail, size, "force cookie '%s' names it", spec->force.cookie);
        break;
    case SY_PICK_STICKY:
        if (ch->set_cookie_len > 0) {
            snprintf(detail, size,
                     "sticky cookie '%s' absent: a new random key is given, whose bucket falls "
                     "by the weights %s (this answer is one such draw)",
                     spec->sticky.name, ws);
        } else {
            const char *by = spec->sticky.by == SY_STICKY_COOKIE   ? "cookie"
                             : spec->sticky.by == SY_STICKY_HEADER ? "header"
                                                                   : "source address";
            snprintf(detail, size,
                     "sticky %s%s%s%s: its bucket (of %u) falls in %s's share of the weights %s",
                     by, spec->sticky.name ? " '" : "", spec->sticky.name ? spec->sticky.name : "",
                     spec->sticky.name ? "'" : "", SY_STICKY_BUCKETS, cluster, ws);
        }
        break;
    case SY_PICK_WEIGHT:
        snprintf(detail, size,
                 "weighted round-robin over %s (%s): the next request without a key goes to %s", ws,
                 ostate == SY_OVERRIDE_APPLIED
                     ? "override"
                     : (ostate == SY_OVERRIDE_STALE ? "the file's: the override is stale"
                                                    : "the file's"),
                 cluster);
        break;
    }
}

/* The app matched by `rule`, the pick made without moving anything, and why. */
static void explain_app(struct sy_admin_req *req, const struct sy_route_table *t,
                        const struct sy_route_app *app, const struct sy_route_rule *rule,
                        const struct explain_req *e)
{
    struct sy_reply *r = req->reply;
    const struct sy_config *cfg = sy_route_table_config(t);
    const char *host = req->argv[1], *path = req->argv[2];
    struct sy_route_req rreq = {
        .host = sy_slice_of(host, strlen(host)),
        .path = sy_slice_of(path, strlen(path)),
        .headers = e->headers,
        .n_headers = e->nh,
        .client = e->have_from ? (const struct sockaddr *)&e->from : NULL,
        .now = req->now_ms / 1000,
    };
    struct sy_route_choice ch;
    sy_route_pick_peek(t, app, &rreq, &ch);
    const char *cluster = sy_route_cluster(t, ch.cluster)->name;
    const struct sy_app_spec *spec = &cfg->apps[app->index];
    struct sy_route_weight *eff;
    enum sy_override_state ostate;
    size_t ne = sy_route_app_weights_named(t, app->index, &eff, &ostate);
    char ws[1024];
    sy_route_weights_text(eff, ne, ws, sizeof(ws));

    sy_reply_printf(r, "app %s: host '%s' path '%s' (rule: host %s, path prefix %s)\n", app->name,
                    host, path, rule->host, rule->path);
    sy_json_str(r, "app", app->name);
    if (spec->source)
        sy_reply_printf(r, "  written in %s:%d\n", spec->source, spec->mark.line);
    sy_json_begin_object(r, "rule");
    sy_json_str(r, "host", rule->host);
    sy_json_str(r, "path", rule->path);
    sy_json_end_object(r);
    sy_json_str(r, "cluster", cluster);
    sy_json_str(r, "reason", sy_pick_reason_name(ch.reason));
    sy_json_str(r, "decided_by", sy_pick_rule_name(ch.rule));
    json_weights(r, "weights", eff, ne);
    free(eff);
    sy_json_str(r, "weights_from",
                ostate == SY_OVERRIDE_APPLIED
                    ? "override"
                    : (ostate == SY_OVERRIDE_STALE ? "file (override stale)" : "file"));
    char detail[2048];
    explain_detail(spec, &ch, cluster, ws, ostate, detail, sizeof(detail));
    sy_reply_printf(r, "cluster %s: %s\n", cluster, detail);
    sy_json_str(r, "detail", detail);
    sy_admin_maintenance_explain(r, t, app);
    source_json(r, cfg, spec);
}

static int cmd_explain(struct sy_admin_req *req)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    if (req->argc < 3)
        return sy_reply_error(r, "usage: explain HOST PATH [NAME:VALUE (header) | NAME=VALUE "
                                 "(cookie) | --from ADDRESS]...");
    const struct sy_route_table *t = sy_state_table(env->state);
    const char *host = req->argv[1], *path = req->argv[2];
    if (path[0] != '/')
        return sy_reply_error(r, "the path must begin with '/'");
    struct explain_req *e = sy_xcalloc(1, sizeof(*e));
    int rc = explain_args(req, e);
    if (rc == 0) {
        sy_json_str(r, "host", host);
        sy_json_str(r, "path", path);
        struct sy_route_rule rule;
        const struct sy_route_app *app = sy_route_match_rule(
            t, sy_slice_of(host, strlen(host)), sy_slice_of(path, strlen(path)), &rule);
        if (app) {
            explain_app(req, t, app, &rule, e);
        } else {
            sy_reply_printf(r, "host %s path %s: no app matches (the proxy answers 404)\n", host,
                            path);
            sy_json_null(r, "app");
        }
    }
    free(e);
    return rc;
}

/* -- history ------------------------------------------------------------------------------- */

static void history_cb(const struct sy_journal_record *rec, void *arg)
{
    struct sy_reply *r = arg;
    char when[32];
    sy_admin_iso8601(rec->time_ms, when);
    char origin[128] = "";
    if (rec->local)
        snprintf(origin, sizeof(origin), "  [local]");
    else if (rec->rev)
        snprintf(origin, sizeof(origin), "  [rev %" PRIu64 " from %s]", rec->rev,
                 rec->instance ? rec->instance : "etcd");
    sy_reply_printf(r, "%-6" PRIu64 " %s  uid %-6" PRIu32 " pid %-7" PRId32 " %s%s\n", rec->seq,
                    when, rec->uid, rec->pid, rec->command, origin);
    sy_json_begin_object(r, NULL);
    sy_json_uint(r, "seq", rec->seq);
    if (rec->rev)
        sy_json_uint(r, "fleet_revision", rec->rev);
    if (rec->instance)
        sy_json_str(r, "instance", rec->instance);
    if (rec->local)
        sy_json_bool(r, "local", true);
    sy_json_str(r, "time", when);
    sy_json_uint(r, "time_ms", rec->time_ms);
    sy_json_uint(r, "uid", rec->uid);
    sy_json_int(r, "pid", rec->pid);
    sy_json_str(r, "command", rec->command);
    sy_json_begin_array(r, "changes");
    for (size_t i = 0; i < rec->n_changes; i++) {
        const struct sy_override_change *c = &rec->changes[i];
        char fs[1024], ts[1024];
        sy_route_weights_text(c->from, c->n_from, fs, sizeof(fs));
        sy_route_weights_text(c->to, c->n_to, ts, sizeof(ts));
        /* `revert --all` of 10,000 apps is one record: people get its first lines. */
        if (i < HISTORY_TEXT_CHANGES)
            sy_reply_printf(r, "         %s: %s -> %s%s\n", c->app, fs, ts,
                            c->release ? " (released)" : "");
        else if (i == HISTORY_TEXT_CHANGES)
            sy_reply_printf(r, "         ... and %zu more apps (--json lists every one)\n",
                            rec->n_changes - HISTORY_TEXT_CHANGES);
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "app", c->app);
        if (c->release)
            sy_json_null(r, "override");
        else
            json_weights(r, "override", c->weights, c->n_weights);
        json_weights(r, "from", c->from, c->n_from);
        json_weights(r, "to", c->to, c->n_to);
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
    sy_admin_maintenance_history(r, rec);
    sy_json_end_object(r);
}

static int cmd_history(struct sy_admin_req *req)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    if (req->argc > 2)
        return sy_reply_error(r, "usage: history [N]");
    size_t n = HISTORY_DEFAULT;
    if (req->argc == 2) {
        const char *s = req->argv[1];
        size_t v = 0, len = strlen(s);
        if (len == 0 || len > 4)
            return sy_reply_error(r, "N must be an integer 1..%d", HISTORY_MAX);
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return sy_reply_error(r, "N must be an integer 1..%d", HISTORY_MAX);
            v = v * 10 + (size_t)(s[i] - '0');
        }
        if (v == 0 || v > HISTORY_MAX)
            return sy_reply_error(r, "N must be an integer 1..%d", HISTORY_MAX);
        n = v;
    }
    struct sy_journal *j = sy_state_journal(env->state);
    sy_json_begin_array(r, "records");
    if (!j) {
        sy_json_end_array(r);
        sy_reply_printf(r, "no journal: no overrides were ever made\n");
        return 0;
    }
    int rc = sy_journal_history(j, n, history_cb, r);
    sy_json_end_array(r);
    if (rc)
        return sy_reply_error(r, "cannot read the journal %s: %s", sy_journal_path(j),
                              sy_strerror(rc));
    return 0;
}

/* -- diff ---------------------------------------------------------------------------------- */

/* One line of sy_route_diff(): a line for people, an object of the "diff" array for scripts. */
static void diff_line(const struct sy_route_diff_line *line, void *arg)
{
    struct sy_reply *r = arg;
    sy_reply_printf(r, "%s\n", line->text);
    sy_json_begin_object(r, NULL);
    sy_json_str(r, "kind", sy_route_diff_kind_name(line->kind));
    sy_json_str(r, "app", line->app);
    sy_json_str(r, "text", line->text);
    sy_json_end_object(r);
}

static ssize_t diff_payload(int argc, char **argv, struct sy_reply *r)
{
    if (argc < 2 || argc > 3)
        return sy_reply_error(r, "usage: diff BYTES [NAME] (then BYTES bytes of YAML)");
    const char *s = argv[1];
    size_t v = 0, len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > SY_ADMIN_PAYLOAD_MAX) {
            v = SIZE_MAX;
            break;
        }
        v = v * 10 + (size_t)(s[i] - '0');
    }
    if (len == 0 || v == 0 || v > SY_ADMIN_PAYLOAD_MAX)
        return sy_reply_error(r, "BYTES must be 1..%u", SY_ADMIN_PAYLOAD_MAX);
    return (ssize_t)v;
}

static int cmd_diff(struct sy_admin_req *req)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    if (!req->payload)
        return sy_reply_error(r, "diff needs its payload");
    const char *name = req->argc == 3 ? req->argv[2] : "(diff)";
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    if (sy_config_parse(name, req->payload, req->payload_len, &d, &cfg) != 0) {
        char line[512];
        sy_json_begin_array(r, "errors");
        for (size_t i = 0; i < d.n; i++) {
            sy_diag_format(&d.v[i], line, sizeof(line));
            sy_reply_printf(r, "  %s\n", line);
            sy_json_str(r, NULL, line);
        }
        sy_json_end_array(r);
        sy_diags_dispose(&d);
        return sy_reply_error(r, "the file has errors");
    }
    sy_diags_dispose(&d);
    struct sy_state *st = env->state;
    const struct sy_route_table *old = sy_state_table(st);
    const struct sy_overrides *ov = sy_state_overrides(st);
    struct sy_route_override *view = sy_overrides_view(ov);
    struct sy_route_table *neu = NULL;
    int rc = sy_route_table_build(cfg, view, ov->n, 0, &neu);
    free(view);
    if (rc) {
        sy_config_free(cfg);
        return sy_reply_error(r, "cannot compile the file: %s", sy_strerror(rc));
    }
    sy_reply_printf(r, "against generation %" PRIu64 " (journal seq %" PRIu64 "):\n",
                    sy_state_generation(st), sy_state_journal_seq(st));
    sy_json_begin_array(r, "diff");
    size_t n = sy_route_diff(old, neu, ov, diff_line, r);
    sy_json_end_array(r);
    if (n == 0)
        sy_reply_printf(r, "no routing change\n");
    sy_route_table_release(neu);
    sy_config_free(cfg);
    return 0;
}

static const struct sy_admin_cmd routing_cmds[] = {
    {"status",
     "status [APP | --filter GLOB | --overridden] : file, override and effective weights, "
     "traffic",
     cmd_status, NULL},
    {"weights", "weights APP CLUSTER=N...          : set an app's split (durable override)",
     cmd_weights, NULL},
    {"switch",
     "switch APP CLUSTER | --abort APP  : send all of an app's traffic to one cluster "
     "(exclusive apps: hold, drain, release)",
     cmd_switch, NULL},
    {"revert",
     "revert APP | revert --all         : back to the stable cluster (--all: every app, "
     "at once)",
     cmd_revert, NULL},
    {"release", "release APP | release --all       : drop the override: the file's weights apply",
     cmd_release, NULL},
    {"reload", "reload                            : re-read the file now", cmd_reload, NULL},
    {"explain", "explain HOST PATH [H:V|C=V|--from IP]... : which app, cluster and rule decide",
     cmd_explain, NULL},
    {"history", "history [N]                       : the last N changes (default 20)", cmd_history,
     NULL},
    {"diff", NULL, cmd_diff, diff_payload}, /* `switchyard -t`: not listed */
    {NULL, NULL, NULL, NULL},
};

void sy_admin_routing_init(struct sy_admin *a, struct sy_admin_routing *env)
{
    sy_admin_register(a, routing_cmds, env);
    sy_admin_maintenance_init(a, env);
}
