/* SPDX-License-Identifier: MIT */
/* The guard engine: once a tick (SY_GUARD_TICK_MS) on the control thread it sums the workers'
 * counters (the same callback `status` and /metrics use), pushes one cumulative sample per
 * cluster of every guarded app into that cluster's ring, and judges the window the ring holds
 * (routing/guard.c) for each non-stable cluster that has a share of the app's traffic in the
 * snapshot in force. A cluster that breaks a limit gets the app reverted: one sy_state_change
 * that puts 100 on the stable cluster, exactly the edit `revert APP` makes, journalled and
 * fsynced before it is published, whose command text ("guard revert APP: CLUSTER 5xx ...") is
 * what `history` and the override's `by` show. Nothing is written to the journal by the guard
 * except that revert. Windows start afresh whenever an app starts to send traffic to a
 * non-stable cluster again, so the data that tripped a guard never trips it a second time.
 * The stable cluster is the app's `stable:` (the one `revert` goes back to). */
#include "switchyard/guard_engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "switchyard/admin.h"
#include "switchyard/fleet.h"
#include "switchyard/guard.h"
#include "switchyard/state.h"

#include "admin_internal.h"

/* One guarded app. Its clusters are the app's `weights:` in file order. */
struct app_guard {
    char *app;
    struct sy_guard_spec spec;
    size_t n_clusters, stable;
    char **clusters;
    struct sy_guard_ring *rings;
    struct sy_guard_sample *cur; /* this tick's sums, per cluster */
    bool armed;                  /* last tick: a non-stable cluster had weight */
    enum sy_guard_state state;
    uint64_t reverts;
    /* The last judgement, for `status`: the cluster judged last (or that broke) and its
     * figures in words; per cluster figures of the window. */
    char why[200];
    const char *judged; /* one of `clusters`, or NULL */
    struct sy_guard_figures *figs;
    char last_error[512]; /* the last revert that failed, logged once */
    int held;             /* sy_guard_window's `held` as of the last tick */
    uint64_t restart_ms;  /* unix ms of the last restart of the window */
    size_t window_ticks;
};

struct sy_guard {
    struct event_base *base;
    struct event *tick;
    struct sy_admin_routing *env;
    const struct sy_config *cfg; /* the config `v` was made for (compared, never followed) */
    uint64_t seq;                /* and the journal's sequence (its ramps) */
    struct app_guard *v;
    size_t n;
    long *by_app; /* cfg app index -> index in v, or -1 */
    size_t n_by_app;
};

static uint64_t unix_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* The guard app `spec` runs under: its own, or for an app without `guard:` that a ramp moves,
 * the default one; `on` false: none. */
static struct sy_guard_spec guard_of(const struct sy_app_spec *spec, const struct sy_ramps *ramps)
{
    if (spec->guard.set || !sy_ramps_find(ramps, spec->name))
        return spec->guard;
    return (struct sy_guard_spec){
        .on = true,
        .max_5xx_ratio = SY_GUARD_MAX_5XX_DEFAULT,
        .window_ms = SY_GUARD_WINDOW_DEFAULT_MS,
        .min_requests = SY_GUARD_MIN_REQUESTS_DEFAULT,
    };
}

static void app_dispose(struct app_guard *a)
{
    for (size_t i = 0; i < a->n_clusters; i++) {
        free(a->clusters[i]);
        sy_guard_ring_dispose(&a->rings[i]);
    }
    free(a->clusters);
    free(a->rings);
    free(a->cur);
    free(a->figs);
    free(a->app);
    memset(a, 0, sizeof(*a));
}

/* Whether entry `a` watches app `spec` of `cfg` as it stands (same limits, same clusters in
 * the same order, same stable): then its windows are kept across the reload. */
static bool app_same(const struct app_guard *a, const struct sy_config *cfg,
                     const struct sy_app_spec *spec, const struct sy_guard_spec *y)
{
    const struct sy_guard_spec *x = &a->spec;
    if (x->max_5xx_ratio != y->max_5xx_ratio || x->max_p99_ms != y->max_p99_ms ||
        x->relative_to_stable != y->relative_to_stable || x->window_ms != y->window_ms ||
        x->min_requests != y->min_requests || a->n_clusters != spec->n_weights)
        return false;
    for (size_t i = 0; i < a->n_clusters; i++) {
        if (strcmp(a->clusters[i], cfg->clusters[spec->weights[i].cluster].name) != 0)
            return false;
        if ((spec->weights[i].cluster == spec->stable) != (i == a->stable))
            return false;
    }
    return true;
}

static void app_init(struct app_guard *a, const struct sy_config *cfg,
                     const struct sy_app_spec *spec, const struct sy_guard_spec *gs)
{
    memset(a, 0, sizeof(*a));
    a->app = sy_xstrdup(spec->name);
    a->spec = *gs;
    a->n_clusters = spec->n_weights;
    a->clusters = sy_xcalloc(a->n_clusters, sizeof(*a->clusters));
    a->rings = sy_xcalloc(a->n_clusters, sizeof(*a->rings));
    a->cur = sy_xcalloc(a->n_clusters, sizeof(*a->cur));
    a->figs = sy_xcalloc(a->n_clusters, sizeof(*a->figs));
    size_t ticks = (gs->window_ms + SY_GUARD_TICK_MS - 1) / SY_GUARD_TICK_MS;
    a->window_ticks = ticks ? ticks : 1;
    a->restart_ms = unix_ms();
    for (size_t i = 0; i < a->n_clusters; i++) {
        a->clusters[i] = sy_xstrdup(cfg->clusters[spec->weights[i].cluster].name);
        sy_guard_ring_init(&a->rings[i], ticks ? ticks : 1);
        if (spec->weights[i].cluster == spec->stable)
            a->stable = i;
    }
    a->state = SY_GUARD_IDLE;
}

/* Makes the list follow the file in force: an app whose guard and clusters did not change
 * keeps its windows and its count of reverts; the others start afresh. */
static void follow_config(struct sy_guard *g, const struct sy_config *cfg)
{
    const struct sy_state *st = g->env->state;
    uint64_t seq = sy_state_journal_seq(st);
    if (g->cfg == cfg && g->seq == seq)
        return;
    const struct sy_ramps *ramps = sy_state_ramps(st);
    struct app_guard *nv = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_apps; i++)
        n += guard_of(&cfg->apps[i], ramps).on;
    nv = n ? sy_xcalloc(n, sizeof(*nv)) : NULL;
    free(g->by_app);
    g->by_app = sy_xcalloc(cfg->n_apps ? cfg->n_apps : 1, sizeof(*g->by_app));
    g->n_by_app = cfg->n_apps;
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct sy_app_spec *spec = &cfg->apps[i];
        struct sy_guard_spec gs = guard_of(spec, ramps);
        g->by_app[i] = -1;
        if (!gs.on)
            continue;
        struct app_guard *old = NULL;
        for (size_t j = 0; j < g->n && !old; j++)
            if (g->v[j].app && strcmp(g->v[j].app, spec->name) == 0)
                old = &g->v[j];
        if (old && app_same(old, cfg, spec, &gs)) {
            nv[k] = *old;
            memset(old, 0, sizeof(*old)); /* moved */
        } else {
            uint64_t reverts = old ? old->reverts : 0;
            app_init(&nv[k], cfg, spec, &gs);
            nv[k].reverts = reverts;
        }
        g->by_app[i] = (long)k++;
    }
    for (size_t j = 0; j < g->n; j++)
        app_dispose(&g->v[j]);
    free(g->v);
    g->v = nv;
    g->n = k;
    g->cfg = cfg;
    g->seq = seq;
}

struct sampling {
    struct sy_guard *g;
    const struct sy_config *cfg;
};

static void sample_cb(const struct sy_traffic *t, void *arg)
{
    struct sampling *s = arg;
    if (!t->app)
        return;
    long ai = sy_config_app_index(s->cfg, t->app);
    if (ai < 0 || (size_t)ai >= s->g->n_by_app || s->g->by_app[ai] < 0)
        return;
    struct app_guard *a = &s->g->v[s->g->by_app[ai]];
    for (size_t i = 0; i < a->n_clusters; i++) {
        if (strcmp(a->clusters[i], t->cluster) != 0)
            continue;
        struct sy_guard_sample *c = &a->cur[i];
        for (size_t k = 0; k < SY_CLASS_N; k++)
            c->requests += t->by_class[k];
        c->errors += t->responses_5xx;
        for (size_t k = 0; k <= SY_LAT_N; k++)
            c->lat[k] += t->head_lat[k];
        return;
    }
}

/* Whether the override of `app` in force was set by its guard. */
static bool tripped_by_guard(const struct sy_state *st, const char *app)
{
    const struct sy_override *o = sy_overrides_find(sy_state_overrides(st), app);
    return o && o->command &&
           strncmp(o->command, SY_GUARD_REVERT_PREFIX, strlen(SY_GUARD_REVERT_PREFIX)) == 0;
}

/* A guard's revert sent to the fleet: what its answer needs. */
struct fleet_revert {
    struct sy_state *st;
    struct sy_fleet *f;
    char *app, *stable, *cmd;
    struct sy_actor who;
};

/* The fleet's answer to a guard's revert: committed, every replica reverts; not committed
 * (etcd unreachable, or refused), this replica reverts alone (`--local`), since a guard that
 * tripped must not wait for etcd to come back. */
static void fleet_revert_done(const struct sy_fleet_result *res, void *arg)
{
    struct fleet_revert *fr = arg;
    if (res->rev) {
        sy_log(SY_LOG_WARN, "guard",
               "app %s: the guard's revert is the fleet's (etcd revision %" PRIu64 ")", fr->app,
               res->rev);
    } else {
        struct sy_route_weight w = {fr->stable, 100};
        struct sy_state_edit e = {.app = fr->app, .weights = &w, .n_weights = 1};
        fr->who.local = true;
        fr->who.instance = sy_fleet_instance(fr->f);
        char err[512];
        if (sy_state_change(fr->st, &e, 1, &fr->who, err, sizeof(err)) != 0)
            sy_log(SY_LOG_ERROR, "guard", "app %s: cannot revert to %s: %s (the fleet: %s)",
                   fr->app, fr->stable, err, res->why);
        else
            sy_log(SY_LOG_ERROR, "guard",
                   "app %s reverted to %s on this replica only (--local): the fleet could not "
                   "take the revert: %s",
                   fr->app, fr->stable, res->why);
    }
    free(fr->app);
    free(fr->stable);
    free(fr->cmd);
    free(fr);
}

/* Sends a guard's revert to the fleet (fleet_revert_done finishes it). */
static int fleet_revert(struct sy_guard *g, const struct sy_state_edit *e,
                        const struct sy_actor *who, char *err, size_t errlen)
{
    struct fleet_revert *fr = sy_xcalloc(1, sizeof(*fr));
    fr->st = g->env->state;
    fr->f = g->env->fleet;
    fr->app = sy_xstrdup(e->app);
    fr->stable = sy_xstrdup(e->weights[0].cluster);
    fr->cmd = sy_xstrdup(who->command);
    fr->who = *who;
    fr->who.command = fr->cmd;
    int rc = sy_fleet_change(g->env->fleet, e, 1, who, false, fleet_revert_done, fr, err, errlen);
    if (rc == SY_ERR_AGAIN) { /* etcd never answered since start: revert here alone now */
        struct sy_fleet_result res = {rc, err, 0, 0, false, NULL, 0};
        fleet_revert_done(&res, fr);
        return 0;
    }
    if (rc) {
        free(fr->app);
        free(fr->stable);
        free(fr->cmd);
        free(fr);
    }
    return rc;
}

/* The revert: what `revert APP` does for a weighted app, with the guard as its author. */
static void revert(struct sy_guard *g, struct app_guard *a, const char *cluster)
{
    struct sy_state *st = g->env->state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), SY_GUARD_REVERT_PREFIX "%s: %s %s", a->app, cluster, a->why);
    struct sy_route_weight w = {a->clusters[a->stable], 100};
    struct sy_state_edit e = {.app = a->app, .weights = &w, .n_weights = 1};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct sy_actor who = {(uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000,
                           (uint32_t)geteuid(), (int32_t)getpid(), cmd};
    char err[512];
    int rc = g->env->fleet ? fleet_revert(g, &e, &who, err, sizeof(err))
                           : sy_state_change(st, &e, 1, &who, err, sizeof(err));
    if (rc != 0) {
        /* Tried again next tick; said once per reason (a journal handed over to a new
         * process refuses every tick). */
        if (strcmp(err, a->last_error) != 0)
            sy_log(SY_LOG_ERROR, "guard", "app %s: cannot revert to %s (%s): %s", a->app,
                   a->clusters[a->stable], cmd, err);
        snprintf(a->last_error, sizeof(a->last_error), "%s", err);
        return;
    }
    a->last_error[0] = '\0';
    a->reverts++;
    a->state = SY_GUARD_TRIPPED;
    sy_log(SY_LOG_WARN, "guard",
           "app %s reverted to %s by its guard: %s %s (generation %" PRIu64 ", journal seq %" PRIu64
           "; `release %s` hands it back to the file)",
           a->app, a->clusters[a->stable], cluster, a->why, sy_state_generation(st),
           sy_state_journal_seq(st), a->app);
}

static void restart(struct app_guard *a)
{
    for (size_t i = 0; i < a->n_clusters; i++)
        sy_guard_ring_clear(&a->rings[i]);
    a->restart_ms = unix_ms();
    a->held = 0;
}

/* One app's tick: its sample is in a->cur. */
static void judge_app(struct sy_guard *g, struct app_guard *a, size_t ai, bool paused)
{
    struct sy_state *st = g->env->state;
    const struct sy_route_table *t = sy_state_table(st);
    struct sy_route_weight *eff = NULL;
    size_t n_eff = sy_route_app_weights_named(t, ai, &eff, NULL);
    bool armed = false;
    for (size_t i = 0; i < a->n_clusters && i < n_eff; i++)
        if (i != a->stable && eff[i].weight > 0)
            armed = true;
    const struct sy_maint *m = sy_maints_find(sy_state_maintenance(st), a->app);
    if (sy_route_app_is_held(t, ai) || (m && m->on))
        armed = false;
    /* A window begins when the app starts to send traffic to a non-stable cluster: what ran
     * before (and what tripped the guard last time) is not judged again. */
    if (armed && !a->armed)
        restart(a);
    a->armed = armed;
    a->held = 0;
    for (size_t i = 0; i < a->n_clusters; i++) {
        sy_guard_ring_push(&a->rings[i], &a->cur[i]);
        sy_guard_ring_window(&a->rings[i], &a->figs[i]);
    }
    if (!armed) {
        a->state = tripped_by_guard(st, a->app) ? SY_GUARD_TRIPPED : SY_GUARD_IDLE;
        a->judged = NULL;
        a->why[0] = '\0';
        free(eff);
        return;
    }
    a->state = paused ? SY_GUARD_PAUSED : SY_GUARD_WATCHING;
    const struct sy_guard_figures *sf = &a->figs[a->stable];
    a->judged = NULL;
    int held = 1;
    for (size_t i = 0; i < a->n_clusters && i < n_eff; i++) {
        if (i == a->stable || eff[i].weight == 0)
            continue;
        char why[sizeof(a->why)];
        enum sy_guard_verdict v =
            sy_guard_judge(&a->spec, &a->figs[i], sf, SY_GUARD_TICK_MS, why, sizeof(why));
        if (sy_guard_verdict_breaks(v))
            held = -1;
        else if (v != SY_GUARD_HELD || a->figs[i].ticks < a->window_ticks)
            held = 0;
        if (!a->judged || sy_guard_verdict_breaks(v)) {
            a->judged = a->clusters[i];
            snprintf(a->why, sizeof(a->why), "%s", why);
        }
        if (sy_guard_verdict_breaks(v)) {
            a->held = -1;
            if (!paused)
                revert(g, a, a->clusters[i]);
            free(eff);
            return;
        }
    }
    a->held = held;
    free(eff);
}

void sy_guard_tick(struct sy_guard *g)
{
    struct sy_state *st = g->env->state;
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(st));
    follow_config(g, cfg);
    if (g->n == 0)
        return;
    for (size_t i = 0; i < g->n; i++)
        memset(g->v[i].cur, 0, g->v[i].n_clusters * sizeof(*g->v[i].cur));
    struct sampling s = {g, cfg};
    if (g->env->traffic)
        g->env->traffic(g->env->traffic_arg, sample_cb, &s);
    bool paused = sy_state_guard_pause(st)->paused;
    for (size_t ai = 0; ai < cfg->n_apps; ai++) {
        /* A revert publishes a new table, maybe of the same config: the list stays. */
        if (g->by_app[ai] >= 0)
            judge_app(g, &g->v[g->by_app[ai]], ai, paused);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    sy_guard_tick(arg);
}

struct sy_guard *sy_guard_new(struct event_base *base, struct sy_admin_routing *env)
{
    struct sy_guard *g = sy_xcalloc(1, sizeof(*g));
    g->base = base;
    g->env = env;
    if (base) {
        g->tick = event_new(base, -1, EV_PERSIST, tick_cb, g);
        struct timeval tv = {SY_GUARD_TICK_MS / 1000, (SY_GUARD_TICK_MS % 1000) * 1000};
        event_add(g->tick, &tv);
    }
    return g;
}

void sy_guard_stop(struct sy_guard *g)
{
    if (g && g->tick)
        event_del(g->tick);
}

void sy_guard_free(struct sy_guard *g)
{
    if (!g)
        return;
    if (g->tick)
        event_free(g->tick);
    for (size_t i = 0; i < g->n; i++)
        app_dispose(&g->v[i]);
    free(g->v);
    free(g->by_app);
    free(g);
}

static const struct app_guard *find_app(const struct sy_guard *g, const char *app)
{
    for (size_t i = 0; g && i < g->n; i++)
        if (strcmp(g->v[i].app, app) == 0)
            return &g->v[i];
    return NULL;
}

void sy_guard_each(const struct sy_guard *g, sy_guard_app_cb cb, void *arg)
{
    for (size_t i = 0; g && i < g->n; i++) {
        struct sy_guard_app_view v = {g->v[i].app, g->v[i].state, g->v[i].reverts};
        cb(&v, arg);
    }
}

void sy_guard_window(const struct sy_guard *g, const char *app, struct sy_guard_window *out)
{
    memset(out, 0, sizeof(*out));
    const struct app_guard *a = find_app(g, app);
    if (!a)
        return;
    out->watched = true;
    out->held = a->held;
    out->full_at_ms = a->restart_ms + (uint64_t)a->window_ticks * SY_GUARD_TICK_MS;
    if (a->judged)
        snprintf(out->why, sizeof(out->why), "%s %s", a->judged, a->why);
}

void sy_guard_restart(struct sy_guard *g, const char *app)
{
    struct app_guard *a = (struct app_guard *)find_app(g, app);
    if (a)
        restart(a);
}

/* -- status --------------------------------------------------------------------------------- */

void sy_guard_status_app(const struct sy_guard *g, const struct sy_app_spec *app,
                         struct sy_reply *r, int indent)
{
    const struct app_guard *a = find_app(g, app->name);
    if (!app->guard.on && !a) {
        sy_json_null(r, "guard");
        return;
    }
    const struct sy_guard_spec *s = a ? &a->spec : &app->guard;
    enum sy_guard_state state = a ? a->state : SY_GUARD_IDLE;
    char limits[160], p99[32] = "", rel[40] = "";
    if (s->max_p99_ms)
        snprintf(p99, sizeof(p99), ", p99 %u ms", s->max_p99_ms);
    if (s->relative_to_stable > 0)
        snprintf(rel, sizeof(rel), ", %gx stable", s->relative_to_stable);
    snprintf(limits, sizeof(limits), "5xx %g%%%s%s over %u s, n>=%u", s->max_5xx_ratio * 100, p99,
             rel, s->window_ms / 1000, s->min_requests);
    sy_reply_printf(r, "%-*s   guard %s (%s)%s%s%s%s\n", indent, "", sy_guard_state_name(state),
                    limits, a && a->judged ? ": " : "", a && a->judged ? a->judged : "",
                    a && a->judged ? " " : "", a && a->judged ? a->why : "");
    if (state == SY_GUARD_TRIPPED)
        sy_reply_printf(r, "%-*s   reverted by its guard: `release %s` once it is fixed\n", indent,
                        "", app->name);
    sy_json_begin_object(r, "guard");
    sy_json_str(r, "state", sy_guard_state_name(state));
    sy_json_uint(r, "window_ms", s->window_ms);
    sy_json_uint(r, "min_requests", s->min_requests);
    sy_json_uint(r, "max_5xx_ratio_ppm", (uint64_t)(s->max_5xx_ratio * 1e6 + 0.5));
    sy_json_uint(r, "max_p99_ms", s->max_p99_ms);
    sy_json_uint(r, "relative_to_stable_milli", (uint64_t)(s->relative_to_stable * 1000 + 0.5));
    sy_json_uint(r, "reverts", a ? a->reverts : 0);
    sy_json_str(r, "judged", a ? a->judged : NULL);
    sy_json_str(r, "figures", a && a->judged ? a->why : NULL);
    sy_json_begin_array(r, "window");
    for (size_t i = 0; a && i < a->n_clusters; i++) {
        const struct sy_guard_figures *f = &a->figs[i];
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "cluster", a->clusters[i]);
        sy_json_bool(r, "stable", i == a->stable);
        sy_json_uint(r, "seconds", (uint64_t)f->ticks * SY_GUARD_TICK_MS / 1000);
        sy_json_uint(r, "requests", f->requests);
        sy_json_uint(r, "errors_5xx", f->errors);
        sy_json_uint(r, "p99_us", sy_guard_quantile_us(f->lat, 0.99));
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
    sy_json_end_object(r);
}

void sy_guard_status_head(const struct sy_guard *g, struct sy_reply *r)
{
    const struct sy_guard_pause *p = g ? sy_state_guard_pause(g->env->state) : NULL;
    bool paused = p && p->paused;
    if (paused) {
        char when[32];
        sy_admin_iso8601(p->time_ms, when);
        sy_reply_printf(r,
                        "guards PAUSED since %s by uid %" PRIu32 " (%s): no app is reverted by "
                        "its guard until `guard resume`\n",
                        when, p->uid, p->command ? p->command : "");
    }
    sy_json_bool(r, "guards_paused", paused);
}

/* -- commands ------------------------------------------------------------------------------- */

static int cmd_guard(struct sy_admin_req *req)
{
    struct sy_guard *g = req->ctx;
    struct sy_reply *r = req->reply;
    if (req->argc != 2 ||
        (strcmp(req->argv[1], "pause") != 0 && strcmp(req->argv[1], "resume") != 0))
        return sy_reply_error(r, "usage: guard pause | guard resume");
    bool paused = strcmp(req->argv[1], "pause") == 0;
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    char err[512];
    bool changed = false;
    if (sy_state_set_guard_paused(g->env->state, paused, &who, &changed, err, sizeof(err)) != 0)
        return sy_reply_error(r, "%s", err);
    if (!changed)
        sy_reply_printf(r, "guards already %s: nothing written\n", paused ? "paused" : "running");
    else if (paused)
        sy_reply_printf(r,
                        "every guard paused (journal seq %" PRIu64
                        "): no app is reverted by its guard until `guard resume`\n",
                        sy_state_journal_seq(g->env->state));
    else
        sy_reply_printf(r, "guards resumed (journal seq %" PRIu64 ")\n",
                        sy_state_journal_seq(g->env->state));
    sy_json_bool(r, "paused", paused);
    sy_json_bool(r, "changed", changed);
    return 0;
}

static const struct sy_admin_cmd guard_cmds[] = {
    {"guard", "guard pause | guard resume        : stop or restart every app's guard (durable)",
     cmd_guard, NULL},
    {NULL, NULL, NULL, NULL},
};

void sy_guard_admin_init(struct sy_admin *a, struct sy_guard *g)
{
    sy_admin_register(a, guard_cmds, g);
}
