/* SPDX-License-Identifier: MIT */
/* Ramps: a plan in the journal (`ramp` records: the steps, the interval, running or paused,
 * how many steps were taken) executed by a 100 ms timer on the control thread. A step is an
 * ordinary sy_state_change (CLUSTER gets the step's weight, the stable cluster the rest)
 * whose command begins "ramp step APP", then a `ramp` record that counts it. The step in
 * force is read from the override when the ramp's step set it, and from the count otherwise:
 * a crash between the two records leaves the override, which is what routes, as the truth.
 * The next step is taken when `every` has passed since the override was set and the app's
 * guard (its own, or the default one while it ramps) held over a whole window begun after the
 * step (sy_guard_restart): after a restart the guard's windows are empty, so a step whose time
 * passed while the daemon was down waits a window of fresh data. A change of the app by
 * anyone else (weights, switch, revert, release, the guard's revert) ends the ramp, with the
 * reason in its last record. */
#include "switchyard/ramp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "switchyard/admin.h"
#include "switchyard/fleet.h"
#include "switchyard/guard_engine.h"
#include "switchyard/state.h"

#include "admin_internal.h"

/* A failure logged once per app and reason (a journal handed over refuses every tick). */
struct said {
    char *app;
    char msg[512];
};

struct sy_ramper {
    struct event_base *base;
    struct event *tick;
    struct sy_admin_routing *env;
    struct said *said;
    size_t n_said, cap_said;
    /* In a fleet: a step or an end sent to etcd and not answered yet (nothing else is sent
     * meanwhile, so that a slow etcd never gets the same step twice). */
    unsigned in_flight;
};

static uint64_t unix_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* Logs `msg` for `app` unless it was the last thing said of it; "" forgets. */
static void say_once(struct sy_ramper *r, const char *app, const char *msg)
{
    size_t i = 0;
    while (i < r->n_said && strcmp(r->said[i].app, app) != 0)
        i++;
    if (i == r->n_said) {
        if (!*msg)
            return;
        sy_xgrow((void **)&r->said, &r->cap_said, r->n_said + 1, sizeof(*r->said));
        r->said[r->n_said].app = sy_xstrdup(app);
        r->said[r->n_said++].msg[0] = '\0';
    }
    if (*msg && strcmp(r->said[i].msg, msg) != 0)
        sy_log(SY_LOG_ERROR, "ramp", "app %s: %s", app, msg);
    snprintf(r->said[i].msg, sizeof(r->said[i].msg), "%s", msg);
}

/* Where a ramp stands. */
struct where {
    bool ended; /* the app left the ramp: `end` and `why` say how */
    enum sy_ramp_state end;
    char why[400];
    long k;            /* the step in force, -1: none taken yet */
    uint64_t since_ms; /* when it was taken (or the ramp began) */
    size_t ai, stable; /* the app's index; its stable cluster's index in the config */
};

static bool has_prefix(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static void where_is(const struct sy_state *st, const struct sy_ramp *rp, struct where *w)
{
    memset(w, 0, sizeof(*w));
    w->k = -1;
    w->since_ms = rp->time_ms;
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(st));
    long ai = sy_config_app_index(cfg, rp->app);
    if (ai < 0) {
        w->ended = true;
        w->end = SY_RAMP_ABORTED;
        snprintf(w->why, sizeof(w->why), "the app is no longer in the file");
        return;
    }
    const struct sy_app_spec *app = &cfg->apps[ai];
    bool found = false;
    for (size_t i = 0; i < app->n_weights; i++)
        if (strcmp(cfg->clusters[app->weights[i].cluster].name, rp->cluster) == 0 &&
            app->weights[i].cluster != app->stable)
            found = true;
    w->ai = (size_t)ai;
    w->stable = app->stable;
    if (!found) {
        w->ended = true;
        w->end = SY_RAMP_ABORTED;
        snprintf(w->why, sizeof(w->why),
                 "cluster %s is no longer one of the app's non-stable clusters in the file",
                 rp->cluster);
        return;
    }
    if (app->guard.set && !app->guard.on) {
        w->ended = true;
        w->end = SY_RAMP_ABORTED;
        snprintf(w->why, sizeof(w->why), "the file turned the app's guard off");
        return;
    }
    const struct sy_override *o = sy_overrides_find(sy_state_overrides(st), rp->app);
    char prefix[320];
    snprintf(prefix, sizeof(prefix), SY_RAMP_STEP_PREFIX "%s ", rp->app);
    bool after = o && o->seq > rp->start_seq;
    if (after && has_prefix(o->command, prefix)) {
        unsigned weight = 0;
        for (size_t i = 0; i < o->n_weights; i++)
            if (strcmp(o->weights[i].cluster, rp->cluster) == 0)
                weight = o->weights[i].weight;
        for (size_t k = 0; k < rp->n_steps; k++)
            if (rp->steps[k] == weight)
                w->k = (long)k;
        w->since_ms = o->time_ms;
        if (w->k < 0) {
            w->ended = true;
            w->end = SY_RAMP_ABORTED;
            snprintf(w->why, sizeof(w->why), "the override in force is no step of the ramp");
        }
        return;
    }
    if (rp->taken == 0 && !after)
        return; /* begun; its first step not taken yet */
    w->ended = true;
    if (o && has_prefix(o->command, SY_GUARD_REVERT_PREFIX)) {
        w->end = SY_RAMP_REVERTED;
        snprintf(w->why, sizeof(w->why), "%s", o->command);
    } else if (o) {
        w->end = SY_RAMP_ABORTED;
        snprintf(w->why, sizeof(w->why), "the app was changed by `%.300s` (uid %" PRIu32 ")",
                 o->command ? o->command : "", o->uid);
    } else {
        w->end = SY_RAMP_ABORTED;
        snprintf(w->why, sizeof(w->why), "the app's override was released");
    }
}

/* A copy of `rp` moved to `state` (borrows its strings). */
static struct sy_ramp moved(const struct sy_ramp *rp, enum sy_ramp_state state, const char *why,
                            unsigned taken)
{
    struct sy_ramp x = *rp;
    x.state = state;
    x.why = (char *)why;
    x.taken = taken;
    return x;
}

static void daemon_actor(struct sy_actor *who, const char *cmd)
{
    *who = (struct sy_actor){unix_ms(), (uint32_t)geteuid(), (int32_t)getpid(), cmd};
}

/* A ramp's step or end sent to the fleet by its leader. */
struct fleet_step {
    struct sy_ramper *r;
    char *app;
    bool step; /* a step (the guard's windows restart when it is in force) */
};

static void fleet_step_done(const struct sy_fleet_result *res, void *arg)
{
    struct fleet_step *fs = arg;
    fs->r->in_flight--;
    if (res->rc == 0 && fs->step)
        sy_guard_restart(fs->r->env->guard, fs->app);
    say_once(fs->r, fs->app, res->rc ? res->why : "");
    free(fs->app);
    free(fs);
}

/* Sends a step (`e`, or none) and the ramp's record `x` to the fleet as one transaction. */
static int fleet_step(struct sy_ramper *r, const struct sy_state_edit *e, const struct sy_ramp *x,
                      const struct sy_actor *who, char *err, size_t errlen)
{
    struct fleet_step *fs = sy_xcalloc(1, sizeof(*fs));
    fs->r = r;
    fs->app = sy_xstrdup(x->app);
    fs->step = e != NULL;
    int rc = sy_fleet_change_ramp(r->env->fleet, e, e ? 1 : 0, x, false, NULL, who, false,
                                  fleet_step_done, fs, err, errlen);
    if (rc) {
        free(fs->app);
        free(fs);
        return rc;
    }
    r->in_flight++;
    return 0;
}

/* Ends ramp `rp` (a copy: the set changes) with `state` and `why`. */
static int end_ramp(struct sy_ramper *r, const struct sy_ramp *rp, enum sy_ramp_state state,
                    const char *why, const struct sy_actor *who, char *err, size_t errlen)
{
    struct sy_ramp x = moved(rp, state, why, rp->taken);
    if (r->env->fleet)
        return fleet_step(r, NULL, &x, who, err, errlen);
    int rc = sy_state_set_ramp(r->env->state, &x, who, err, errlen);
    if (rc == 0)
        sy_log(state == SY_RAMP_DONE ? SY_LOG_INFO : SY_LOG_WARN, "ramp",
               "app %s: ramp to %s %s%s%s", rp->app, rp->cluster, sy_ramp_state_name(state),
               why ? ": " : "", why ? why : "");
    return rc;
}

/* Takes step k of ramp `rp`: the change, then the record that counts it. */
static int take_step(struct sy_ramper *r, const struct sy_ramp *rp, size_t k, const char *stable,
                     char *err, size_t errlen)
{
    struct sy_state *st = r->env->state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), SY_RAMP_STEP_PREFIX "%s %s %u%% (%zu of %zu)", rp->app, rp->cluster,
             rp->steps[k], k + 1, rp->n_steps);
    struct sy_route_weight w[2] = {{rp->cluster, rp->steps[k]}, {stable, 100 - rp->steps[k]}};
    struct sy_state_edit e = {.app = rp->app, .weights = w, .n_weights = 2};
    struct sy_actor who;
    daemon_actor(&who, cmd);
    if (r->env->fleet) { /* the step and the count in one transaction */
        struct sy_ramp x = moved(rp, SY_RAMP_RUNNING, NULL, (unsigned)k + 1);
        return fleet_step(r, &e, &x, &who, err, errlen);
    }
    int rc = sy_state_change(st, &e, 1, &who, err, errlen);
    if (rc)
        return rc;
    sy_guard_restart(r->env->guard, rp->app);
    sy_log(SY_LOG_INFO, "ramp", "app %s: %s at %u%% (step %zu of %zu; generation %" PRIu64 ")",
           rp->app, rp->cluster, rp->steps[k], k + 1, rp->n_steps, sy_state_generation(st));
    /* The count is for a ramp whose first step was never taken; the override is the truth. */
    struct sy_ramp x = moved(rp, SY_RAMP_RUNNING, NULL, (unsigned)k + 1);
    snprintf(cmd, sizeof(cmd), "ramp %s: step %zu of %zu taken", rp->app, k + 1, rp->n_steps);
    daemon_actor(&who, cmd);
    return sy_state_set_ramp(st, &x, &who, err, errlen);
}

/* One running ramp; `rp` is a copy (the set changes under it). */
static void tick_one(struct sy_ramper *r, const struct sy_ramp *rp)
{
    struct sy_state *st = r->env->state;
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(st));
    struct where w;
    where_is(st, rp, &w);
    char err[512];
    struct sy_actor who;
    int rc = 0;
    if (w.ended) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "ramp end %s", rp->app);
        daemon_actor(&who, cmd);
        rc = end_ramp(r, rp, w.end, w.why, &who, err, sizeof(err));
    } else if (w.k == (long)rp->n_steps - 1) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "ramp done %s", rp->app);
        daemon_actor(&who, cmd);
        rc = end_ramp(r, rp, SY_RAMP_DONE, NULL, &who, err, sizeof(err));
    } else if (w.k < 0) {
        rc = take_step(r, rp, 0, cfg->clusters[w.stable].name, err, sizeof(err));
    } else {
        struct sy_guard_window gw;
        sy_guard_window(r->env->guard, rp->app, &gw);
        if (unix_ms() < w.since_ms + rp->every_ms || gw.held != 1)
            return; /* not due, or the guard has not held over a whole fresh window yet */
        rc = take_step(r, rp, (size_t)w.k + 1, cfg->clusters[w.stable].name, err, sizeof(err));
    }
    say_once(r, rp->app, rc ? err : "");
}

void sy_ramper_tick(struct sy_ramper *r)
{
    const struct sy_ramps *set = sy_state_ramps(r->env->state);
    if (set->n == 0)
        return;
    /* In a fleet one replica advances every ramp: the one that holds the lead. */
    if (r->env->fleet && (r->in_flight || !sy_fleet_is_leader(r->env->fleet)))
        return;
    /* A copy: every record changes the set. */
    size_t n = set->n;
    struct sy_ramp *v = sy_xcalloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        v[i] = set->v[i];
        v[i].app = sy_xstrdup(set->v[i].app);
        v[i].cluster = sy_xstrdup(set->v[i].cluster);
        v[i].command = sy_xstrdup(set->v[i].command ? set->v[i].command : "");
        v[i].why = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].state == SY_RAMP_RUNNING)
            tick_one(r, &v[i]);
        free(v[i].app);
        free(v[i].cluster);
        free(v[i].command);
    }
    free(v);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    sy_ramper_tick(arg);
}

struct sy_ramper *sy_ramper_new(struct event_base *base, struct sy_admin_routing *env)
{
    struct sy_ramper *r = sy_xcalloc(1, sizeof(*r));
    r->base = base;
    r->env = env;
    if (base) {
        r->tick = event_new(base, -1, EV_PERSIST, tick_cb, r);
        struct timeval tv = {0, SY_RAMP_TICK_MS * 1000};
        event_add(r->tick, &tv);
    }
    return r;
}

void sy_ramper_stop(struct sy_ramper *r)
{
    if (r && r->tick)
        event_del(r->tick);
}

void sy_ramper_free(struct sy_ramper *r)
{
    if (!r)
        return;
    if (r->tick)
        event_free(r->tick);
    for (size_t i = 0; i < r->n_said; i++)
        free(r->said[i].app);
    free(r->said);
    free(r);
}

/* -- status --------------------------------------------------------------------------------- */

static void steps_text(const struct sy_ramp *rp, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < rp->n_steps && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%u", i ? "," : "", rp->steps[i]);
}

void sy_ramper_status_app(const struct sy_ramper *r, const struct sy_app_spec *app,
                          struct sy_reply *reply, int indent)
{
    const struct sy_ramp *rp = r ? sy_ramps_find(sy_state_ramps(r->env->state), app->name) : NULL;
    if (!rp) {
        sy_json_null(reply, "ramp");
        return;
    }
    struct where w;
    where_is(r->env->state, rp, &w);
    struct sy_guard_window gw;
    sy_guard_window(r->env->guard, rp->app, &gw);
    uint64_t next = 0;
    if (!w.ended && w.k + 1 < (long)rp->n_steps) {
        next = w.k < 0 ? unix_ms() : w.since_ms + rp->every_ms;
        if (w.k >= 0 && gw.full_at_ms > next)
            next = gw.full_at_ms;
    }
    char steps[128], when[32] = "", every[32];
    steps_text(rp, steps, sizeof(steps));
    if (rp->every_ms % 1000 == 0)
        snprintf(every, sizeof(every), "%" PRIu64 " s", rp->every_ms / 1000);
    else
        snprintf(every, sizeof(every), "%" PRIu64 " ms", rp->every_ms);
    if (next)
        sy_admin_iso8601(next, when);
    unsigned at = w.k >= 0 ? rp->steps[w.k] : 0;
    sy_reply_printf(reply, "%-*s   ramp to %s %s: %u%% (step %ld of %zu: %s, every %s)", indent, "",
                    rp->cluster, sy_ramp_state_name(rp->state), at, w.k + 1, rp->n_steps, steps,
                    every);
    if (w.ended)
        sy_reply_printf(reply, ", ending: %s\n", w.why);
    else if (next && rp->state == SY_RAMP_RUNNING)
        sy_reply_printf(reply,
                        ", next %u%% not before %s, once the guard holds over a window%s%s\n",
                        rp->steps[w.k + 1], when, gw.why[0] ? ": " : "", gw.why);
    else
        sy_reply_printf(reply, "%s%s\n", gw.why[0] ? ": " : "", gw.why);
    sy_json_begin_object(reply, "ramp");
    sy_json_str(reply, "cluster", rp->cluster);
    sy_json_str(reply, "state", sy_ramp_state_name(rp->state));
    sy_json_begin_array(reply, "steps");
    for (size_t i = 0; i < rp->n_steps; i++)
        sy_json_uint(reply, NULL, rp->steps[i]);
    sy_json_end_array(reply);
    sy_json_uint(reply, "every_ms", rp->every_ms);
    sy_json_uint(reply, "step", (uint64_t)(w.k + 1)); /* 1-based; 0: none taken yet */
    sy_json_uint(reply, "weight", at);
    sy_json_uint(reply, "since_ms", w.since_ms);
    if (next && !w.ended && rp->state == SY_RAMP_RUNNING) {
        sy_json_uint(reply, "next_step_ms", next);
        sy_json_str(reply, "next_step", when);
    } else {
        sy_json_null(reply, "next_step_ms");
        sy_json_null(reply, "next_step");
    }
    sy_json_int(reply, "guard_held", gw.held);
    sy_json_str(reply, "guard_figures", gw.why[0] ? gw.why : NULL);
    sy_json_end_object(reply);
}

/* -- commands ------------------------------------------------------------------------------- */

/* "1,5,25,50,100": 1..100, strictly increasing, ending at 100. */
static bool parse_steps(const char *s, struct sy_ramp *rp, char *why, size_t len)
{
    rp->n_steps = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        unsigned v = 0;
        if (!sy_admin_parse_decimal(s, n, 3, &v) || v == 0 || v > 100) {
            snprintf(why, len, "each step must be a weight 1..100, got '%.*s'",
                     (int)(n > 16 ? 16 : n), s);
            return false;
        }
        if (rp->n_steps == SY_RAMP_MAX_STEPS) {
            snprintf(why, len, "at most %d steps", SY_RAMP_MAX_STEPS);
            return false;
        }
        if (rp->n_steps && v <= rp->steps[rp->n_steps - 1]) {
            snprintf(why, len, "steps must be strictly increasing: %u after %u", v,
                     rp->steps[rp->n_steps - 1]);
            return false;
        }
        rp->steps[rp->n_steps++] = v;
        if (!comma)
            break;
        s = comma + 1;
        if (!*s) {
            snprintf(why, len, "a step is missing after the last comma");
            return false;
        }
    }
    if (rp->n_steps == 0 || rp->steps[rp->n_steps - 1] != 100) {
        snprintf(why, len, "the last step must be 100");
        return false;
    }
    return true;
}

/* "500ms", "1s", "5m", "1h": a duration with its unit. */
static bool parse_every(const char *s, uint64_t *out)
{
    size_t len = strlen(s), digits = 0;
    while (digits < len && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    unsigned v = 0;
    if (!sy_admin_parse_decimal(s, digits, 9, &v))
        return false;
    const char *unit = s + digits;
    uint64_t mult = strcmp(unit, "ms") == 0  ? 1
                    : strcmp(unit, "s") == 0 ? 1000
                    : strcmp(unit, "m") == 0 ? 60000
                    : strcmp(unit, "h") == 0 ? 3600000
                                             : 0;
    if (!mult)
        return false;
    uint64_t ms = (uint64_t)v * mult;
    if (ms < SY_RAMP_EVERY_MIN_MS || ms > SY_RAMP_EVERY_MAX_MS)
        return false;
    *out = ms;
    return true;
}

/* A ramp command sent to the fleet: the answer waits for etcd and the members. */
struct ramp_answer {
    struct sy_admin_later *later;
    char *text; /* the line answered once it is in force */
};

static void ramp_answer_done(const struct sy_fleet_result *res, void *arg)
{
    struct ramp_answer *ra = arg;
    struct sy_reply *rep = sy_admin_later_reply(ra->later);
    if (res->rev) {
        sy_reply_printf(rep, "%s", ra->text);
        sy_reply_printf(rep,
                        "etcd revision %" PRIu64 "; the ramp is advanced by the fleet's leader\n",
                        res->rev);
        sy_json_uint(rep, "fleet_revision", res->rev);
    }
    if (res->rc)
        sy_reply_error(rep, "%s", res->why);
    sy_admin_later_done(ra->later, 0);
    free(ra->text);
    free(ra);
}

/* Sends a ramp's record (with its first step `e`, or none) to the fleet; answers later. */
static int ramp_fleet(struct sy_admin_req *req, struct sy_ramper *r, const struct sy_state_edit *e,
                      const struct sy_ramp *x, bool begins, const char *step_cmd, const char *text)
{
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    struct ramp_answer *ra = sy_xcalloc(1, sizeof(*ra));
    ra->text = sy_xstrdup(text);
    char err[512];
    int rc = sy_fleet_change_ramp(r->env->fleet, e, e ? 1 : 0, x, begins, step_cmd, &who, true,
                                  ramp_answer_done, ra, err, sizeof(err));
    if (rc) {
        free(ra->text);
        free(ra);
        return sy_reply_error(req->reply, "%s", err);
    }
    ra->later = sy_admin_defer(req); /* ramp_answer_done comes later, never from in here */
    return 0;
}

/* A ramp begun in a fleet: its plan and its first step in one transaction. */
static int ramp_start_fleet(struct sy_admin_req *req, struct sy_ramper *r, struct sy_ramp *rp,
                            const char *stable)
{
    struct sy_route_weight w[2] = {{rp->cluster, rp->steps[0]}, {stable, 100 - rp->steps[0]}};
    char cmd[512], text[512];
    snprintf(cmd, sizeof(cmd), SY_RAMP_STEP_PREFIX "%s %s %u%% (1 of %zu)", rp->app, rp->cluster,
             rp->steps[0], rp->n_steps);
    struct sy_state_edit e = {.app = rp->app, .weights = w, .n_weights = 2};
    rp->taken = 1;
    snprintf(text, sizeof(text),
             "%s: ramp to %s begun: %u%% now, then %s every %s once the guard holds\n", rp->app,
             rp->cluster, rp->steps[0], req->argv[3], req->argv[5]);
    return ramp_fleet(req, r, &e, rp, true, cmd, text);
}

static int ramp_start(struct sy_admin_req *req)
{
    struct sy_ramper *r = req->ctx;
    struct sy_reply *rep = req->reply;
    struct sy_state *st = r->env->state;
    const char *name = req->argv[1], *cluster = req->argv[2];
    if (strcmp(req->argv[4], "--every") != 0)
        return sy_reply_error(rep, "usage: ramp APP CLUSTER STEPS --every DURATION");
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(st));
    long ai = sy_config_app_index(cfg, name);
    if (ai < 0)
        return sy_reply_error(rep, "unknown app '%.64s'", name);
    const struct sy_app_spec *app = &cfg->apps[ai];
    if (app->mode == SY_APP_EXCLUSIVE)
        return sy_reply_error(rep, "app '%s' is exclusive: it moves with `switch`, not by steps",
                              name);
    if (app->guard.set && !app->guard.on)
        return sy_reply_error(rep,
                              "app '%s' has `guard: off`: a ramp needs a guard (give it one, or "
                              "leave `guard:` out for the default guard)",
                              name);
    bool known = false;
    for (size_t i = 0; i < app->n_weights; i++)
        if (strcmp(cfg->clusters[app->weights[i].cluster].name, cluster) == 0)
            known = app->weights[i].cluster != app->stable ? true : false;
    if (!known)
        return sy_reply_error(rep, "cluster '%.64s' is not one of app %s's non-stable clusters",
                              cluster, name);
    if (sy_ramps_find(sy_state_ramps(st), name))
        return sy_reply_error(rep, "a ramp of app %s runs already (`ramp abort %s` first)", name,
                              name);
    if (sy_route_app_is_held(sy_state_table(st), (size_t)ai))
        return sy_reply_error(rep, "app '%s': switch in progress", name);
    struct sy_ramp rp = {.app = (char *)name, .cluster = (char *)cluster};
    char why[160];
    if (!parse_steps(req->argv[3], &rp, why, sizeof(why)))
        return sy_reply_error(rep, "bad steps '%.64s': %s", req->argv[3], why);
    if (!parse_every(req->argv[5], &rp.every_ms))
        return sy_reply_error(rep,
                              "--every must be a duration with its unit from 100ms to 24h "
                              "(500ms, 30s, 5m, 1h), got '%.32s'",
                              req->argv[5]);
    if (r->env->fleet)
        return ramp_start_fleet(req, r, &rp, cfg->clusters[app->stable].name);
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    char err[512];
    if (sy_state_set_ramp(st, &rp, &who, err, sizeof(err)) != 0)
        return sy_reply_error(rep, "%s", err);
    /* The first step at once, so that the answer shows it. */
    const struct sy_ramp *set = sy_ramps_find(sy_state_ramps(st), name);
    struct sy_ramp copy = *set;
    copy.app = sy_xstrdup(set->app);
    copy.cluster = sy_xstrdup(set->cluster);
    copy.command = NULL;
    copy.why = NULL;
    int rc = take_step(r, &copy, 0, cfg->clusters[app->stable].name, err, sizeof(err));
    free(copy.app);
    free(copy.cluster);
    if (rc)
        return sy_reply_error(rep,
                              "ramp begun (journal seq %" PRIu64 ") but its first step failed: "
                              "%s (tried again every %u ms)",
                              sy_state_journal_seq(st), err, SY_RAMP_TICK_MS);
    req->published = sy_state_generation(st);
    sy_reply_printf(rep, "%s: ramp to %s begun: %u%% now, then %s every ", name, cluster,
                    rp.steps[0], req->argv[3]);
    sy_reply_printf(rep, "%s once the guard holds\n", req->argv[5]);
    sy_json_str(rep, "app", name);
    sy_json_str(rep, "cluster", cluster);
    sy_json_uint(rep, "weight", rp.steps[0]);
    return 0;
}

static int ramp_control(struct sy_admin_req *req)
{
    struct sy_ramper *r = req->ctx;
    struct sy_reply *rep = req->reply;
    struct sy_state *st = r->env->state;
    const char *verb = req->argv[1], *name = req->argv[2];
    const struct sy_ramp *rp = sy_ramps_find(sy_state_ramps(st), name);
    if (!rp)
        return sy_reply_error(rep, "no ramp of app '%.64s' runs", name);
    enum sy_ramp_state to;
    if (strcmp(verb, "pause") == 0) {
        if (rp->state == SY_RAMP_PAUSED)
            return sy_reply_error(rep, "the ramp of app %s is paused already", name);
        to = SY_RAMP_PAUSED;
    } else if (strcmp(verb, "resume") == 0) {
        if (rp->state == SY_RAMP_RUNNING)
            return sy_reply_error(rep, "the ramp of app %s runs already", name);
        to = SY_RAMP_RUNNING;
    } else {
        to = SY_RAMP_ABORTED;
    }
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    char err[512], why[64];
    snprintf(why, sizeof(why), "aborted by uid %" PRIu32, req->peer.uid);
    struct sy_ramp x = moved(rp, to, to == SY_RAMP_ABORTED ? why : NULL, rp->taken);
    if (r->env->fleet) {
        char text[256];
        snprintf(text, sizeof(text), "ramp of %s %s\n", name, sy_ramp_state_name(to));
        return ramp_fleet(req, r, NULL, &x, false, NULL, text);
    }
    x.app = sy_xstrdup(rp->app); /* the set changes */
    x.cluster = sy_xstrdup(rp->cluster);
    int rc = sy_state_set_ramp(st, &x, &who, err, sizeof(err));
    if (rc == 0 && to == SY_RAMP_RUNNING)
        sy_guard_restart(r->env->guard, name); /* a whole window of data after the resume */
    free(x.app);
    free(x.cluster);
    if (rc)
        return sy_reply_error(rep, "%s", err);
    if (to == SY_RAMP_ABORTED)
        sy_reply_printf(rep,
                        "ramp of %s aborted: the weights stay where they are (`revert %s` "
                        "sends everything back, `release %s` hands it to the file)\n",
                        name, name, name);
    else
        sy_reply_printf(rep, "ramp of %s %s\n", name, sy_ramp_state_name(to));
    sy_json_str(rep, "state", sy_ramp_state_name(to));
    return 0;
}

static int cmd_ramp(struct sy_admin_req *req)
{
    if (req->argc == 3 &&
        (strcmp(req->argv[1], "pause") == 0 || strcmp(req->argv[1], "resume") == 0 ||
         strcmp(req->argv[1], "abort") == 0))
        return ramp_control(req);
    if (req->argc == 6)
        return ramp_start(req);
    return sy_reply_error(req->reply, "usage: ramp APP CLUSTER STEPS --every DURATION | ramp "
                                      "pause|resume|abort APP");
}

static const struct sy_admin_cmd ramp_cmds[] = {
    {"ramp",
     "ramp APP CLUSTER 1,5,25,50,100 --every 5m | ramp pause|resume|abort APP : move an app "
     "step by step while its guard holds (durable)",
     cmd_ramp, NULL},
    {NULL, NULL, NULL, NULL},
};

void sy_ramper_admin_init(struct sy_admin *a, struct sy_ramper *r)
{
    sy_admin_register(a, ramp_cmds, r);
}
