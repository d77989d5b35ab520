/* SPDX-License-Identifier: MIT */
/* The control plane's state: the config that was last loaded without error, the operator's
 * overrides (replayed from the journal), and the snapshot compiled from both. Every change
 * builds a whole candidate snapshot first; a reload that fails is counted and logged with
 * file:line:column and the running snapshot stays. An operator's change is appended to the
 * journal and fsynced only once its snapshot compiled, and published only once it is durable,
 * so a change that fails leaves no trace and one that succeeded survives a crash. A reload
 * applies the overrides again over the new file: one that no longer fits is kept and shown as
 * stale, never dropped. A reload whose bytes equal the file in force is recognised by its
 * content hash, so a touch or a burst of watch events does not publish a new generation. */
#include "switchyard/state.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "switchyard/health.h"

struct sy_state {
    const char *path;
    sy_state_check_cb check;
    void *check_arg;
    sy_state_publish_cb publish;
    void *publish_arg;
    sy_state_reload_cb reload_hook;
    void *reload_hook_arg;
    struct sy_config *cfg;        /* the file in force */
    struct sy_route_table *table; /* the snapshot in force */
    uint64_t generation;
    uint64_t reload_failures;
    char *last_reload_error;
    struct sy_journal *journal; /* NULL: no state file */
    char *journal_path;         /* what the journal's diagnostics name */
    struct sy_overrides none;   /* the empty set, for a state without a journal */
    uint64_t reloads_ok;        /* reloads that published (a new file or a forced reload) */
    uint64_t last_load_ok_ms;   /* unix ms of the last load that published (start included) */
    struct sy_reload_rejection rejection; /* the last refused reload (rejection.time_ms 0: none) */
};

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int load(struct sy_state *st, struct sy_diags *d, struct sy_config **out)
{
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(st->path, d, &cfg);
    if (rc)
        return rc;
    if (st->check && (rc = st->check(cfg, st->path, d, st->check_arg)) != 0) {
        sy_config_free(cfg);
        return rc;
    }
    /* Before the compile: the snapshot's endpoints carry their shared health. */
    sy_health_attach(cfg);
    *out = cfg;
    return 0;
}

const struct sy_overrides *sy_state_overrides(const struct sy_state *st)
{
    return st->journal ? sy_journal_overrides(st->journal) : &st->none;
}

static int build(struct sy_config *cfg, const struct sy_overrides *ov, uint64_t generation,
                 struct sy_route_table **out)
{
    struct sy_route_override *view = sy_overrides_view(ov);
    int rc = sy_route_table_build(cfg, view, ov->n, generation, out);
    free(view);
    return rc;
}

static struct sy_maints no_maints;

const struct sy_maints *sy_state_maintenance(const struct sy_state *st)
{
    return st->journal ? sy_journal_maintenance(st->journal) : &no_maints;
}

/* Puts the apps of `set` in maintenance in `t` (not yet published). */
static void attach_maintenance(struct sy_route_table *t, const struct sy_maints *set)
{
    struct sy_route_maint *m = sy_xcalloc(set->n ? set->n : 1, sizeof(*m));
    for (size_t i = 0; i < set->n; i++)
        m[i] = (struct sy_route_maint){set->v[i].app, set->v[i].retry_after, set->v[i].message};
    sy_route_table_set_maintenance(t, m, set->n);
    free(m);
}

static int compile(struct sy_state *st, struct sy_config *cfg, uint64_t generation,
                   struct sy_diags *d, struct sy_route_table **out)
{
    int rc = build(cfg, sy_state_overrides(st), generation, out);
    if (rc == 0)
        attach_maintenance(*out, sy_state_maintenance(st));
    if (rc)
        sy_diags_add(d, st->path, 0, 0, "cannot compile the routing table: %s", sy_strerror(rc));
    return rc;
}

int sy_state_open(const char *path, sy_state_check_cb check, void *arg, struct sy_diags *d,
                  struct sy_state **out)
{
    struct sy_state *st = sy_xcalloc(1, sizeof(*st));
    st->path = path;
    st->check = check;
    st->check_arg = arg;
    sy_overrides_init(&st->none);
    int rc = load(st, d, &st->cfg);
    if (rc == 0 && (rc = compile(st, st->cfg, 1, d, &st->table)) != 0)
        sy_config_free(st->cfg);
    if (rc) {
        free(st);
        return rc;
    }
    st->generation = 1;
    st->last_load_ok_ms = unix_ms();
    *out = st;
    return 0;
}

void sy_state_set_publish(struct sy_state *st, sy_state_publish_cb publish, void *arg)
{
    st->publish = publish;
    st->publish_arg = arg;
}

void sy_state_set_reload_hook(struct sy_state *st, sy_state_reload_cb cb, void *arg)
{
    st->reload_hook = cb;
    st->reload_hook_arg = arg;
}

struct sy_route_table *sy_state_table(const struct sy_state *st)
{
    return st->table;
}

uint64_t sy_state_generation(const struct sy_state *st)
{
    return st->generation;
}

uint64_t sy_state_reload_failures(const struct sy_state *st)
{
    return st->reload_failures;
}

uint64_t sy_state_reloads_ok(const struct sy_state *st)
{
    return st->reloads_ok;
}

uint64_t sy_state_last_load_ok_ms(const struct sy_state *st)
{
    return st->last_load_ok_ms;
}

const char *sy_state_last_reload_error(const struct sy_state *st)
{
    return st->last_reload_error;
}

const struct sy_reload_rejection *sy_state_last_rejection(const struct sy_state *st)
{
    return st->rejection.time_ms ? &st->rejection : NULL;
}

/* Keeps the first diagnostic of a refused reload, with its place, for sy_state_last_rejection. */
static void remember_rejection(struct sy_state *st, const struct sy_diag *dg)
{
    free(st->rejection.file);
    free(st->rejection.message);
    st->rejection.file = dg->file ? sy_xstrdup(dg->file) : NULL;
    st->rejection.line = dg->line;
    st->rejection.col = dg->col;
    st->rejection.message = sy_xstrdup(dg->msg);
    st->rejection.time_ms = unix_ms();
}

const char *sy_state_path(const struct sy_state *st)
{
    return st->path;
}

struct sy_journal *sy_state_journal(const struct sy_state *st)
{
    return st->journal;
}

uint64_t sy_state_journal_seq(const struct sy_state *st)
{
    return st->journal ? sy_journal_seq(st->journal) : 0;
}

/* Makes `t` the snapshot in force and hands it to the data path. */
static void install_table(struct sy_state *st, struct sy_route_table *t)
{
    sy_route_table_release(st->table);
    st->table = t;
    st->generation = sy_route_table_generation(t);
    if (st->publish)
        st->publish(t, st->publish_arg);
}

/* Makes `cfg` and `t` the state in force and hands `t` to the data path. */
static void install(struct sy_state *st, struct sy_config *cfg, struct sy_route_table *t)
{
    sy_config_free(st->cfg);
    st->cfg = cfg;
    sy_health_installed(cfg);
    install_table(st, t);
}

/* Logs, after a reload, each override whose fate the new file changed. */
static void log_override_fates(const struct sy_state *st, const struct sy_route_table *old,
                               const struct sy_route_table *t)
{
    const struct sy_overrides *ov = sy_state_overrides(st);
    const struct sy_config *ocfg = sy_route_table_config(old), *ncfg = sy_route_table_config(t);
    for (size_t i = 0; i < ov->n; i++) {
        const char *app = ov->v[i].app;
        long oi = sy_config_app_index(ocfg, app), ni = sy_config_app_index(ncfg, app);
        const struct sy_weight_spec *w;
        size_t n;
        enum sy_override_state was =
            oi < 0 ? SY_OVERRIDE_NONE : sy_route_app_weights(old, (size_t)oi, &w, &n);
        enum sy_override_state now =
            ni < 0 ? SY_OVERRIDE_NONE : sy_route_app_weights(t, (size_t)ni, &w, &n);
        if (was == now)
            continue;
        if (ni < 0)
            sy_log(SY_LOG_WARN, "override",
                   "app '%s' is no longer in the file: its override (seq %" PRIu64
                   ") is kept until released",
                   app, ov->v[i].seq);
        else if (now == SY_OVERRIDE_STALE)
            sy_log(SY_LOG_WARN, "override",
                   "the override of app '%s' (seq %" PRIu64
                   ") no longer fits the file: the file's weights apply until it is released "
                   "or set again",
                   app, ov->v[i].seq);
        else
            sy_log(SY_LOG_INFO, "override",
                   "the override of app '%s' (seq %" PRIu64 ") applies again", app, ov->v[i].seq);
    }
}

/* The access log's file and rings are made once, at start; its sample applies on reload. */
static void warn_access_log_restart(const struct sy_access_log_spec *o,
                                    const struct sy_access_log_spec *n)
{
    if ((o->path == NULL) != (n->path == NULL) || (o->path && strcmp(o->path, n->path) != 0))
        sy_log(SY_LOG_WARN, "reload", "access_log.path changes only on restart");
    else if (o->path && o->buffer_bytes != n->buffer_bytes)
        sy_log(SY_LOG_WARN, "reload", "access_log.buffer_bytes changes only on restart");
}

static bool same_text(const char *a, const char *b)
{
    return (a == NULL) == (b == NULL) && (!a || strcmp(a, b) == 0);
}

/* The first key of `fleet:` whose value differs between `o` and `n` (as written: a name that
 * now resolves elsewhere is not a change), or NULL when none does. */
static const char *fleet_change(const struct sy_fleet_spec *o, const struct sy_fleet_spec *n)
{
    if (o->on != n->on)
        return "fleet";
    if (!o->on)
        return NULL;
    bool same = o->n_endpoints == n->n_endpoints;
    for (size_t i = 0; same && i < o->n_endpoints; i++)
        same = strcmp(o->endpoints[i].address, n->endpoints[i].address) == 0 &&
               o->endpoints[i].tls == n->endpoints[i].tls;
    if (!same)
        return "fleet.etcd.endpoints";
    if (!same_text(o->prefix, n->prefix))
        return "fleet.etcd.prefix";
    const struct sy_cluster_tls *ot = &o->tls, *nt = &n->tls;
    if (ot->on != nt->on || ot->verify != nt->verify || !same_text(ot->ca, nt->ca) ||
        !same_text(ot->sni, nt->sni) || !same_text(ot->cert, nt->cert) ||
        !same_text(ot->key, nt->key))
        return "fleet.etcd.tls";
    if (o->timeout_ms != n->timeout_ms)
        return "fleet.etcd.timeout";
    if (!same_text(o->instance, n->instance))
        return "fleet.instance";
    if (o->lease_ttl_ms != n->lease_ttl_ms)
        return "fleet.lease_ttl";
    if (o->wait_ms != n->wait_ms)
        return "fleet.wait";
    return NULL;
}

/* The fleet's etcd client, lease and membership are made once, at start (admin/fleet.c). */
static void warn_fleet_restart(const struct sy_fleet_spec *o, const struct sy_fleet_spec *n)
{
    const char *key = fleet_change(o, n);
    if (key)
        sy_log(SY_LOG_WARN, "reload", "%s changes only on restart", key);
}

/* What a reload changed is logged, up to this many lines (a file of many apps can change all). */
#define RELOAD_LOG_CHANGES 20

struct change_log {
    uint64_t generation;
    size_t n;
};

static void log_change(const struct sy_route_diff_line *line, void *arg)
{
    struct change_log *cl = arg;
    if (line->kind == SY_DIFF_OVERRIDE_STATE)
        return; /* log_override_fates() said it, with the override's record */
    if (cl->n++ < RELOAD_LOG_CHANGES)
        sy_log(SY_LOG_INFO, "reload", "generation %llu: %s", (unsigned long long)cl->generation,
               line->text);
}

/* Logs the lines that `switchyard -t` would have shown for the reload from `old`. */
static void log_changes(const struct sy_state *st, const struct sy_route_table *old)
{
    struct change_log cl = {st->generation, 0};
    sy_route_diff(old, st->table, sy_state_overrides(st), log_change, &cl);
    if (cl.n > RELOAD_LOG_CHANGES)
        sy_log(SY_LOG_INFO, "reload", "generation %llu: %zu more changes not logged",
               (unsigned long long)cl.generation, cl.n - RELOAD_LOG_CHANGES);
}

enum sy_reload_result sy_state_reload(struct sy_state *st, bool force, struct sy_diags *d)
{
    size_t first = d->n;
    if (!force && sy_config_is_current(st->path, st->cfg)) {
        /* The bytes in force: not worth a parse (a touch, or a watch event after `reload`). */
        free(st->last_reload_error);
        st->last_reload_error = NULL;
        sy_log(SY_LOG_DEBUG, "reload", "file unchanged (generation %llu kept)",
               (unsigned long long)st->generation);
        return SY_RELOAD_UNCHANGED;
    }
    struct sy_config *cfg = NULL;
    struct sy_route_table *t = NULL;
    if (load(st, d, &cfg) != 0 || compile(st, cfg, st->generation + 1, d, &t) != 0) {
        sy_config_free(cfg);
        st->reload_failures++;
        char line[512];
        for (size_t i = first; i < d->n; i++) {
            sy_diag_format(&d->v[i], line, sizeof(line));
            if (i == first) {
                free(st->last_reload_error);
                st->last_reload_error = sy_xstrdup(line);
                remember_rejection(st, &d->v[i]);
            }
            sy_log(
                SY_LOG_ERROR, "reload", "rejected (generation %llu kept, %llu failed so far): %s",
                (unsigned long long)st->generation, (unsigned long long)st->reload_failures, line);
        }
        return SY_RELOAD_REJECTED;
    }
    free(st->last_reload_error);
    st->last_reload_error = NULL;
    if (!force && cfg->content_hash == st->cfg->content_hash) {
        sy_route_table_release(t);
        sy_config_free(cfg);
        sy_log(SY_LOG_DEBUG, "reload", "file unchanged (generation %llu kept)",
               (unsigned long long)st->generation);
        return SY_RELOAD_UNCHANGED;
    }
    if (cfg->workers != st->cfg->workers)
        sy_log(SY_LOG_WARN, "reload", "workers changes from %u to %u only on restart",
               st->cfg->workers, cfg->workers);
    const char *os = st->cfg->admin.socket, *ns = cfg->admin.socket;
    if ((os == NULL) != (ns == NULL) || (os && strcmp(os, ns) != 0))
        sy_log(SY_LOG_WARN, "reload", "admin.socket changes only on restart");
    const char *oj = st->cfg->state, *nj = cfg->state;
    if ((oj == NULL) != (nj == NULL) || (oj && strcmp(oj, nj) != 0))
        sy_log(SY_LOG_WARN, "reload", "state (the journal's path) changes only on restart");
    warn_access_log_restart(&st->cfg->access_log, &cfg->access_log);
    warn_fleet_restart(&st->cfg->fleet, &cfg->fleet);
    log_override_fates(st, st->table, t);
    if (st->reload_hook)
        t = st->reload_hook(st->table, t, st->reload_hook_arg);
    struct sy_route_table *old = sy_route_table_acquire(st->table);
    install(st, cfg, t);
    st->reloads_ok++;
    st->last_load_ok_ms = unix_ms();
    sy_log(SY_LOG_INFO, "reload", "generation %llu published: %zu apps, %zu clusters",
           (unsigned long long)st->generation, cfg->n_apps, cfg->n_clusters);
    log_changes(st, old);
    sy_route_table_release(old);
    return SY_RELOAD_PUBLISHED;
}

/* -- the journal ----------------------------------------------------------------------------- */

int sy_state_journal_path(const struct sy_config *cfg, const char *config_path, char *buf,
                          size_t size)
{
    int n = cfg->state ? snprintf(buf, size, "%s", cfg->state)
                       : snprintf(buf, size, "%s.state", config_path);
    return n < 0 || (size_t)n >= size ? SY_ERR_LIMIT : 0;
}

int sy_state_open_journal(struct sy_state *st, bool create, bool discard,
                          const struct sy_journal_opts *opts, struct sy_diags *d)
{
    char buf[4096];
    if (sy_state_journal_path(st->cfg, st->path, buf, sizeof(buf)) != 0) {
        sy_diags_add(d, st->path, st->cfg->state_mark.line, st->cfg->state_mark.col,
                     "the state file's path is too long");
        return SY_ERR_LIMIT;
    }
    /* The diagnostics name it: it lives as long as the state. */
    free(st->journal_path);
    st->journal_path = sy_xstrdup(buf);
    const char *path = st->journal_path;
    struct sy_journal_opts o = {0};
    if (opts)
        o = *opts;
    o.create = create;
    o.discard = discard;
    struct sy_journal *j = NULL;
    int rc = sy_journal_open(path, &o, d, &j);
    if (rc == SY_ERR_NOTFOUND)
        return 0; /* no admin socket and no journal: nothing can have been overridden */
    if (rc)
        return rc;
    struct sy_route_table *t = NULL;
    sy_journal_close(st->journal);
    st->journal = j;
    if ((rc = compile(st, st->cfg, st->generation, d, &t)) != 0) {
        st->journal = NULL;
        sy_journal_close(j);
        return rc;
    }
    sy_route_table_release(st->table);
    st->table = t;
    const struct sy_overrides *ov = sy_journal_overrides(j);
    sy_log(SY_LOG_INFO, "journal", "%s: seq %" PRIu64 ", %zu overrides in force", path,
           sy_journal_seq(j), ov->n);
    for (size_t i = 0; i < ov->n; i++) {
        long ai = sy_config_app_index(st->cfg, ov->v[i].app);
        const struct sy_weight_spec *w;
        size_t n;
        const char *fate = "applied";
        if (ai < 0)
            fate = "kept, but the app is not in the file";
        else if (sy_route_app_weights(t, (size_t)ai, &w, &n) == SY_OVERRIDE_STALE)
            fate = "kept, but stale: it no longer fits the file, whose weights apply";
        sy_log(ai < 0 || strcmp(fate, "applied") != 0 ? SY_LOG_WARN : SY_LOG_INFO, "journal",
               "override of app '%s' (seq %" PRIu64 ", uid %" PRIu32 ": %s) %s", ov->v[i].app,
               ov->v[i].seq, ov->v[i].uid, ov->v[i].command, fate);
    }
    const struct sy_maints *ms = sy_journal_maintenance(j);
    for (size_t i = 0; i < ms->n; i++)
        sy_log(SY_LOG_WARN, "journal",
               "app '%s' is in maintenance (seq %" PRIu64 ", uid %" PRIu32
               ": %s): its requests are answered 503 until `maintenance %s off`%s",
               ms->v[i].app, ms->v[i].seq, ms->v[i].uid, ms->v[i].command, ms->v[i].app,
               sy_config_app_index(st->cfg, ms->v[i].app) < 0 ? " (the app is not in the file)"
                                                              : "");
    return 0;
}

/* -- operators' changes ---------------------------------------------------------------------- */

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Checks one override against the file in force. */
/* An exclusive app runs on one cluster: an override puts 100 on one and 0 on the others. */
static int check_exclusive_edit(const struct sy_app_spec *app, const struct sy_state_edit *e,
                                char *err, size_t errlen)
{
    if (app->mode != SY_APP_EXCLUSIVE)
        return 0;
    size_t live = 0;
    for (size_t k = 0; k < e->n_weights; k++) {
        unsigned w = e->weights[k].weight;
        if (w != 0 && w != 100) {
            errf(err, errlen,
                 "app '%s' is exclusive: its weights must be 100 on one cluster and 0 on the "
                 "others (move it with `switch %s CLUSTER`)",
                 e->app, e->app);
            return SY_ERR_INVALID;
        }
        live += w == 100;
    }
    if (live != 1) {
        errf(err, errlen,
             "app '%s' is exclusive: its weights must be 100 on one cluster and 0 on the others "
             "(move it with `switch %s CLUSTER`)",
             e->app, e->app);
        return SY_ERR_INVALID;
    }
    return 0;
}

static int check_edit(const struct sy_config *cfg, const struct sy_overrides *ov,
                      const struct sy_state_edit *e, char *err, size_t errlen)
{
    if (e->release) {
        if (!sy_overrides_find(ov, e->app)) {
            errf(err, errlen, "app '%s' has no override to release", e->app);
            return SY_ERR_INVALID;
        }
        return 0;
    }
    long ai = sy_config_app_index(cfg, e->app);
    if (ai < 0) {
        errf(err, errlen, "unknown app '%s'", e->app);
        return SY_ERR_INVALID;
    }
    size_t k = 0;
    const char *name = e->n_weights ? e->weights[0].cluster : "";
    enum sy_override_fit fit = sy_route_override_fit(cfg, (size_t)ai, e->weights, e->n_weights, &k);
    if (fit != SY_FIT_OK && fit != SY_FIT_ZERO_SUM)
        name = e->weights[k].cluster;
    switch (fit) {
    case SY_FIT_OK:
        return check_exclusive_edit(&cfg->apps[ai], e, err, errlen);
    case SY_FIT_NOT_APPS:
        errf(err, errlen,
             "app '%s' has no cluster '%s' (add it to the app's weights in the file first)", e->app,
             name);
        break;
    case SY_FIT_UNKNOWN_CLUSTER:
        errf(err, errlen, "unknown cluster '%s'", name);
        break;
    case SY_FIT_TWICE:
        errf(err, errlen, "cluster '%s' is named twice", name);
        break;
    case SY_FIT_OVER_100:
        errf(err, errlen, "weight of '%s' must be 0..100, got %u", name, e->weights[k].weight);
        break;
    case SY_FIT_ZERO_SUM:
        errf(err, errlen, "the weights of app '%s' must sum above 0", e->app);
        break;
    }
    return SY_ERR_INVALID;
}

/* Every cluster of app `ai` with its weight in table `t`, by name (none when `ai` < 0). */
static size_t weights_of(const struct sy_route_table *t, long ai, struct sy_route_weight **out)
{
    *out = NULL;
    return ai < 0 ? 0 : sy_route_app_weights_named(t, (size_t)ai, out, NULL);
}

/* Checks every edit against the file in force, and that no app is named twice. */
static int check_edits(const struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                       char *err, size_t errlen)
{
    const struct sy_overrides *cur = sy_journal_overrides(st->journal);
    /* An app named twice: by index for the file's apps (`revert --all` names every one). */
    unsigned char *named = sy_xcalloc(st->cfg->n_apps ? st->cfg->n_apps : 1, 1);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        long ai = sy_config_app_index(st->cfg, edits[i].app);
        bool twice = ai >= 0 && named[ai]++;
        for (size_t j = 0; ai < 0 && j < i && !twice; j++)
            twice = strcmp(edits[i].app, edits[j].app) == 0;
        if (twice) {
            errf(err, errlen, "app '%s' is named twice", edits[i].app);
            rc = SY_ERR_INVALID;
        } else {
            rc = check_edit(st->cfg, cur, &edits[i], err, errlen);
        }
    }
    free(named);
    return rc;
}

/* The snapshot with change `ch` (n apps, record `seq` by `who`) applied to the overrides in
 * force. Only the edited apps are compiled again; the snapshot shares the rest with the one in
 * force (sy_route_table_update), so a change costs what it touches. */
static int compile_change(const struct sy_state *st, const struct sy_override_change *ch, size_t n,
                          const struct sy_actor *who, struct sy_route_table **out)
{
    struct sy_overrides next;
    sy_overrides_init(&next);
    sy_overrides_copy(&next, sy_journal_overrides(st->journal));
    sy_overrides_apply(&next, ch, n, sy_journal_seq(st->journal) + 1, who);
    struct sy_route_app_change *rc_ch = sy_xcalloc(n, sizeof(*rc_ch));
    struct sy_route_override *rc_ov = sy_xcalloc(n, sizeof(*rc_ov));
    /* Each app's override by index: one pass, where a search per edit would be quadratic for
     * `revert --all`. */
    const struct sy_override **by_app =
        sy_xcalloc(st->cfg->n_apps ? st->cfg->n_apps : 1, sizeof(*by_app));
    for (size_t k = 0; k < next.n; k++) {
        long ai = sy_config_app_index(st->cfg, next.v[k].app);
        if (ai >= 0)
            by_app[ai] = &next.v[k];
    }
    size_t n_rc = 0;
    for (size_t i = 0; i < n; i++) {
        long ai = sy_config_app_index(st->cfg, ch[i].app);
        if (ai < 0)
            continue; /* the release of an app the file no longer has */
        const struct sy_override *o = by_app[ai];
        rc_ch[n_rc].app = (size_t)ai;
        if (o) {
            rc_ov[n_rc] = (struct sy_route_override){o->app, o->weights, o->n_weights};
            rc_ch[n_rc].override = &rc_ov[n_rc];
        }
        n_rc++;
    }
    int rc = sy_route_table_update(st->table, rc_ch, n_rc, st->generation + 1, out);
    free(by_app);
    free(rc_ch);
    free(rc_ov);
    sy_overrides_dispose(&next);
    return rc;
}

/* Journals change `ch` (its before and after filled in here from the snapshot in force and
 * `t`), then publishes `t` (taking the reference) and logs each app; on failure releases `t`. */
static int commit_change(struct sy_state *st, struct sy_override_change *ch, size_t n,
                         struct sy_route_table *t, const struct sy_actor *who, char *err,
                         size_t errlen)
{
    struct sy_route_weight **from = sy_xcalloc(n, sizeof(*from)), **to = sy_xcalloc(n, sizeof(*to));
    for (size_t i = 0; i < n; i++) {
        long ai = sy_config_app_index(st->cfg, ch[i].app);
        ch[i].n_from = weights_of(st->table, ai, &from[i]);
        ch[i].from = from[i];
        ch[i].n_to = weights_of(t, ai, &to[i]);
        ch[i].to = to[i];
    }
    int rc = sy_journal_append(st->journal, who, ch, n, err, errlen);
    if (rc)
        sy_route_table_release(t);
    else
        install_table(st, t);
    for (size_t i = 0; i < n; i++) {
        char before[256], after[256];
        sy_route_weights_text(ch[i].from, ch[i].n_from, before, sizeof(before));
        sy_route_weights_text(ch[i].to, ch[i].n_to, after, sizeof(after));
        if (rc == 0)
            sy_log(SY_LOG_INFO, "override",
                   "seq %" PRIu64 " generation %" PRIu64 " by uid %" PRIu32 " pid %" PRId32
                   " (%s): %s %s: %s -> %s",
                   sy_journal_seq(st->journal), st->generation, who->uid, who->pid, who->command,
                   ch[i].release ? "released" : "set", ch[i].app, before, after);
        free(from[i]);
        free(to[i]);
    }
    free(from);
    free(to);
    return rc;
}

/* Compiles, journals and publishes edits already checked (or committed elsewhere). */
static int apply_edits(struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                       const struct sy_actor *who, char *err, size_t errlen)
{
    /* The candidate: the overrides with this change applied, compiled. */
    struct sy_override_change *ch = sy_xcalloc(n, sizeof(*ch));
    for (size_t i = 0; i < n; i++) {
        ch[i].app = edits[i].app;
        ch[i].release = edits[i].release;
        ch[i].weights = edits[i].weights;
        ch[i].n_weights = edits[i].n_weights;
    }
    struct sy_route_table *t = NULL;
    int rc = compile_change(st, ch, n, who, &t);
    if (rc)
        errf(err, errlen, "cannot compile the routing table: %s", sy_strerror(rc));
    else
        rc = commit_change(st, ch, n, t, who, err, errlen); /* durable before it is published */
    free(ch);
    return rc;
}

static int need_journal(const struct sy_state *st, char *err, size_t errlen)
{
    if (st->journal)
        return 0;
    errf(err, errlen,
         "no state file: an override could not be made durable "
         "(configure `admin.socket`, or `state:`)");
    return SY_ERR_NOTFOUND;
}

int sy_state_check(const struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                   char *err, size_t errlen)
{
    int rc = need_journal(st, err, errlen);
    if (rc)
        return rc;
    if (n == 0) {
        errf(err, errlen, "nothing to change");
        return SY_ERR_INVALID;
    }
    return check_edits(st, edits, n, err, errlen);
}

int sy_state_change(struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                    const struct sy_actor *who, char *err, size_t errlen)
{
    int rc = sy_state_check(st, edits, n, err, errlen);
    return rc ? rc : apply_edits(st, edits, n, who, err, errlen);
}

int sy_state_apply(struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                   const struct sy_actor *who, char *err, size_t errlen)
{
    int rc = need_journal(st, err, errlen);
    if (rc)
        return rc;
    /* A release of an app without an override here changes nothing: left out. */
    const struct sy_overrides *cur = sy_journal_overrides(st->journal);
    struct sy_state_edit *kept = sy_xcalloc(n ? n : 1, sizeof(*kept));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!edits[i].release || sy_overrides_find(cur, edits[i].app))
            kept[k++] = edits[i];
    rc = k ? apply_edits(st, kept, k, who, err, errlen) : 0;
    free(kept);
    return rc;
}

int sy_state_set_maintenance(struct sy_state *st, const char *app, bool on, unsigned retry_after,
                             const char *message, const struct sy_actor *who, bool *changed,
                             char *err, size_t errlen)
{
    *changed = false;
    if (!st->journal) {
        errf(err, errlen,
             "no state file: maintenance could not be made durable "
             "(configure `admin.socket`, or `state:`)");
        return SY_ERR_NOTFOUND;
    }
    const struct sy_maints *cur = sy_journal_maintenance(st->journal);
    const struct sy_maint *was = sy_maints_find(cur, app);
    if (on && sy_config_app_index(st->cfg, app) < 0) {
        errf(err, errlen, "unknown app '%s'", app);
        return SY_ERR_INVALID;
    }
    if (!on && !was) {
        if (sy_config_app_index(st->cfg, app) < 0) {
            errf(err, errlen, "unknown app '%s'", app);
            return SY_ERR_INVALID;
        }
        return 0; /* not in maintenance: nothing to record */
    }
    if (message) {
        size_t len = strlen(message);
        bool ok = len > 0 && len <= SY_MAINT_MESSAGE_MAX;
        for (size_t i = 0; ok && i < len; i++)
            ok = message[i] >= 0x20 && message[i] <= 0x7e;
        if (!ok) {
            errf(err, errlen, "the message must be 1..%d bytes of printable ASCII",
                 SY_MAINT_MESSAGE_MAX);
            return SY_ERR_INVALID;
        }
    }
    struct sy_maint m = {.app = (char *)app,
                         .on = on,
                         .retry_after = on ? retry_after : 0,
                         .message = on ? (char *)message : NULL};
    /* The candidate: the set with this change, over a snapshot that shares everything else. */
    struct sy_maints next = {0};
    sy_maints_copy(&next, cur);
    sy_maints_apply(&next, &m, sy_journal_seq(st->journal) + 1, who);
    struct sy_route_table *t = NULL;
    int rc = sy_route_table_update(st->table, NULL, 0, st->generation + 1, &t);
    if (rc) {
        sy_maints_dispose(&next);
        errf(err, errlen, "cannot compile the routing table: %s", sy_strerror(rc));
        return rc;
    }
    attach_maintenance(t, &next);
    sy_maints_dispose(&next);
    /* Durable before it is published. */
    rc = sy_journal_append_maintenance(st->journal, who, &m, err, errlen);
    if (rc) {
        sy_route_table_release(t);
        return rc;
    }
    install_table(st, t);
    *changed = true;
    sy_log(SY_LOG_INFO, "maintenance",
           "seq %" PRIu64 " generation %" PRIu64 " by uid %" PRIu32 " pid %" PRId32
           " (%s): app %s %s",
           sy_journal_seq(st->journal), st->generation, who->uid, who->pid, who->command, app,
           on ? "in maintenance: answered 503 by the proxy" : "out of maintenance");
    return 0;
}

const struct sy_guard_pause *sy_state_guard_pause(const struct sy_state *st)
{
    static const struct sy_guard_pause never;
    return st->journal ? sy_journal_guard_pause(st->journal) : &never;
}

int sy_state_set_guard_paused(struct sy_state *st, bool paused, const struct sy_actor *who,
                              bool *changed, char *err, size_t errlen)
{
    *changed = false;
    if (!st->journal) {
        errf(err, errlen,
             "no state file: the guard switch could not be made durable "
             "(configure `admin.socket`, or `state:`)");
        return SY_ERR_NOTFOUND;
    }
    if (sy_journal_guard_pause(st->journal)->paused == paused)
        return 0;
    int rc = sy_journal_append_guard(st->journal, who, paused, err, errlen);
    if (rc)
        return rc;
    *changed = true;
    sy_log(SY_LOG_WARN, "guard", "seq %" PRIu64 " by uid %" PRIu32 " pid %" PRId32 " (%s): %s",
           sy_journal_seq(st->journal), who->uid, who->pid, who->command,
           paused ? "every guard paused: no app is reverted by its guard until `guard resume`"
                  : "guards resumed");
    return 0;
}

const struct sy_ramps *sy_state_ramps(const struct sy_state *st)
{
    static const struct sy_ramps none;
    return st->journal ? sy_journal_ramps(st->journal) : &none;
}

int sy_state_set_ramp(struct sy_state *st, const struct sy_ramp *r, const struct sy_actor *who,
                      char *err, size_t errlen)
{
    if (!st->journal) {
        errf(err, errlen,
             "no state file: a ramp could not be made durable "
             "(configure `admin.socket`, or `state:`)");
        return SY_ERR_NOTFOUND;
    }
    int rc = sy_journal_append_ramp(st->journal, who, r, err, errlen);
    if (rc)
        return rc;
    sy_log(SY_LOG_INFO, "ramp",
           "seq %" PRIu64 " by uid %" PRIu32 " pid %" PRId32 " (%s): app %s to %s: %s%s%s",
           sy_journal_seq(st->journal), who->uid, who->pid, who->command, r->app, r->cluster,
           sy_ramp_state_name(r->state), r->why ? ": " : "", r->why ? r->why : "");
    return 0;
}

/* A snapshot like the one in force in which app `app` sends everything to `cluster` and is
 * held, or (cluster NULL) follows the journal's override or the file again, not held. *ai gets
 * the app's index; a failure is worded in `err`. */
static int hold_table(struct sy_state *st, const char *app, const char *cluster, long *ai,
                      struct sy_route_table **out, char *err, size_t errlen)
{
    *ai = sy_config_app_index(st->cfg, app);
    if (*ai < 0) {
        errf(err, errlen, "unknown app '%s'", app);
        return SY_ERR_INVALID;
    }
    struct sy_route_weight w = {cluster, 100};
    struct sy_route_override ov = {app, &w, 1};
    struct sy_route_app_change ch = {.app = (size_t)*ai, .held = cluster != NULL};
    if (cluster) {
        ch.override = &ov;
    } else {
        /* Back to what the journal says, not held. */
        const struct sy_override *o = sy_overrides_find(sy_state_overrides(st), app);
        if (o) {
            ov = (struct sy_route_override){o->app, o->weights, o->n_weights};
            ch.override = &ov;
        }
    }
    int rc = sy_route_table_update(st->table, &ch, 1, st->generation + 1, out);
    if (rc)
        errf(err, errlen, "cannot compile the routing table: %s", sy_strerror(rc));
    return rc;
}

int sy_state_hold(struct sy_state *st, const char *app, const char *cluster, char *err,
                  size_t errlen)
{
    long ai;
    struct sy_route_table *t = NULL;
    int rc = hold_table(st, app, cluster, &ai, &t, err, errlen);
    if (rc)
        return rc;
    install_table(st, t);
    sy_log(SY_LOG_INFO, "exclusive", "generation %" PRIu64 ": app %s %s", st->generation, app,
           cluster ? "held (its new requests wait)" : "no longer held");
    return 0;
}

int sy_state_follow_file(struct sy_state *st, const char *app, const char *from,
                         const struct sy_actor *who, char *err, size_t errlen)
{
    long ai;
    struct sy_route_table *t = NULL;
    int rc = hold_table(st, app, NULL, &ai, &t, err, errlen);
    if (rc)
        return rc;
    /* The note: a release of an app without override, which replay finds nothing to do for.
     * An app with an override (one that became stale, or fits again) gets no note: a release
     * would drop it. */
    rc = 0;
    if (st->journal && !sy_overrides_find(sy_state_overrides(st), app)) {
        struct sy_route_weight *fw = NULL, *to = NULL;
        struct sy_override_change ch = {.app = app, .release = true};
        ch.n_to = weights_of(t, ai, &to);
        ch.n_from = weights_of(t, ai, &fw);
        for (size_t i = 0; i < ch.n_from; i++)
            fw[i].weight = strcmp(fw[i].cluster, from) == 0 ? 100 : 0;
        ch.from = fw;
        ch.to = to;
        rc = sy_journal_append(st->journal, who, &ch, 1, err, errlen);
        free(fw);
        free(to);
    }
    /* Published either way: the file says so; only the note could be missing. */
    install_table(st, t);
    sy_log(SY_LOG_INFO, "exclusive", "generation %" PRIu64 ": app %s follows the file again%s",
           st->generation, app, rc ? " (not noted in the journal)" : "");
    return rc;
}

void sy_state_free(struct sy_state *st)
{
    if (!st)
        return;
    sy_route_table_release(st->table);
    sy_config_free(st->cfg);
    sy_journal_close(st->journal);
    free(st->journal_path);
    free(st->last_reload_error);
    free(st->rejection.file);
    free(st->rejection.message);
    free(st);
}
