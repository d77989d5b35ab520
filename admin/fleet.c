/* SPDX-License-Identifier: MIT */
/* The fleet engine (switchyard/fleet.h), on the control thread.
 *
 * Keys under the prefix P:
 *   P apps/APP       {"v":1,"override":{"blue":100}|null,"time":..,"uid":..,"pid":..,"cmd":..,
 *                     "instance":..}: the app's override (null: released), who, when, how.
 *   P members/NAME   {"instance":..,"version":..,"rev":R,"generation":G,"time":..}, bound to
 *                    this replica's lease: what it has applied.
 *
 * Reading: at start and after a compaction, one range over P (sync); then one watch from the
 * revision after it. Events of one revision (one transaction: `revert --all` is one) are
 * applied as one change: sy_state_apply() journals it with its revision (the journal is the
 * cache of the fleet state: a restart while etcd is unreachable starts from it) and
 * publishes it. A broken watch is opened again from the revision after the last applied, on
 * the next endpoint that answers.
 *
 * Writing: a change is checked against this replica's file, then sent as one transaction
 * whose compares are the mod revisions of its keys as this replica last applied them; when
 * another change came first, the transaction fails, this replica waits until its watch has
 * applied the newer revision, checks again and sends again (both changes succeed, in etcd's
 * order). The answer waits for the watch to apply the committed revision here, and, with
 * --wait, for every member's key to say it has applied it too. */
#include "switchyard/fleet.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "switchyard/etcd.h"
#include "switchyard/json.h"

#define APPS_DIR       "apps/"
#define MEMBERS_DIR    "members/"
#define RAMPS_DIR      "ramps/"
#define LEADER_KEY     "leader"
#define TXN_ATTEMPTS   8
#define RESYNC_MIN_MS  200
#define RESYNC_MAX_MS  2000
#define RECORD_VERSION 1
#define MAX_KEY        512

/* The fleet's record of one app, as last applied here (or seen, for an app with a local
 * override). */
struct app_rec {
    char *app;
    uint64_t rev;   /* the key's mod revision: a change's compare */
    unsigned epoch; /* the last sync that saw its key */
    struct app_rec *next;
};

struct member {
    char *instance, *version;
    uint64_t rev, generation, seen_ms;
};

enum change_state {
    CH_SENT = 0, /* the transaction is out */
    CH_CATCH_UP, /* it lost to a newer change: waiting for the watch to apply `catch_up` */
    CH_APPLY,    /* committed: waiting for the watch to apply it here */
    CH_MEMBERS,  /* applied here: waiting for the other members */
};

struct confirm {
    char *instance;
    uint64_t delay_ms;
};

struct change {
    struct sy_fleet *f;
    struct change *prev, *next;
    struct sy_state_edit *edits;
    size_t n;
    bool has_ramp;       /* the change writes a ramp's record too (in the same transaction) */
    struct sy_ramp ramp; /* owned */
    bool ramp_begins;
    char *step_cmd; /* the command the override records carry, when not who.command */
    struct sy_actor who;
    bool wait;
    bool expired; /* fleet.wait passed while a transaction was in flight */
    sy_fleet_done_cb done;
    void *arg;
    enum change_state state;
    unsigned attempts;
    uint64_t rev, catch_up;
    uint64_t start_ms, commit_ms; /* monotonic: when asked, and when etcd answered */
    struct sy_etcd_call *call;
    struct event *deadline;
    struct confirm *conf;
    size_t n_conf, cap_conf;
};

struct sy_fleet {
    struct event_base *base;
    struct sy_state *st;
    const struct sy_fleet_spec *spec; /* the config's, kept alive by `cfg` */
    struct sy_config *cfg;            /* a reference: the spec must outlive reloads */
    struct sy_etcd *etcd;
    char *instance, *version;
    char *apps_prefix, *members_prefix;
    size_t prefix_len;
    /* the fleet's records by app: chained hash */
    struct app_rec **slots;
    size_t n_slots, n_apps;
    struct member *members;
    size_t n_members, cap_members;
    struct change *changes;
    uint64_t applied; /* the etcd revision applied here */
    bool synced;      /* the prefix was read since start (or since the last compaction) */
    bool ready;
    bool connected;
    uint64_t since_ms;
    char last_error[256];
    char endpoint[128];
    struct sy_etcd_call *sync_call, *lease_call, *member_call;
    struct sy_etcd_watch *watch;
    struct event *retry_ev, *keepalive_ev;
    uint64_t retry_ms;
    uint64_t lease;
    bool member_dirty; /* the member key must be written again (a put in flight meanwhile) */
    uint64_t n_changes, n_refused, n_resyncs;
    uint64_t last_change; /* the highest revision of an app record seen */
    char *leader;         /* the instance that advances the ramps (PREFIX leader), or NULL */
    struct sy_etcd_call *leader_call;
    bool syncing; /* applying what a sync read (no record then replaces a --local override) */
    unsigned sync_epoch;          /* counts syncs: marks the apps a sync saw */
    struct sy_fleet_member *view; /* sy_fleet_view's members */
    size_t cap_view;
};

static void start_sync(struct sy_fleet *f);
static void start_watch(struct sy_fleet *f);
static void put_member(struct sy_fleet *f);
static void changes_progress(struct sy_fleet *f);
static void try_lead(struct sy_fleet *f);

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = sy_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* -- the records by app --------------------------------------------------------------------- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct app_rec *rec_find(const struct sy_fleet *f, const char *app)
{
    for (struct app_rec *r = f->slots[name_hash(app) & (f->n_slots - 1)]; r; r = r->next)
        if (strcmp(r->app, app) == 0)
            return r;
    return NULL;
}

static void rec_grow(struct sy_fleet *f)
{
    size_t n = f->n_slots * 2;
    struct app_rec **slots = sy_xcalloc(n, sizeof(*slots));
    for (size_t i = 0; i < f->n_slots; i++)
        for (struct app_rec *r = f->slots[i], *next; r; r = next) {
            next = r->next;
            size_t k = name_hash(r->app) & (n - 1);
            r->next = slots[k];
            slots[k] = r;
        }
    free(f->slots);
    f->slots = slots;
    f->n_slots = n;
}

static struct app_rec *rec_get(struct sy_fleet *f, const char *app);

/* The record of key DIR NAME below the prefix ("apps/web"), made when `make`. */
static struct app_rec *rec_of(struct sy_fleet *f, const char *dir, const char *name, bool make)
{
    char key[MAX_KEY];
    snprintf(key, sizeof(key), "%s%s", dir, name);
    return make ? rec_get(f, key) : rec_find(f, key);
}

static struct app_rec *rec_get(struct sy_fleet *f, const char *app)
{
    struct app_rec *r = rec_find(f, app);
    if (r)
        return r;
    if (f->n_apps + 1 > f->n_slots)
        rec_grow(f);
    r = sy_xcalloc(1, sizeof(*r));
    r->app = sy_xstrdup(app);
    size_t k = name_hash(app) & (f->n_slots - 1);
    r->next = f->slots[k];
    f->slots[k] = r;
    f->n_apps++;
    return r;
}

/* -- members -------------------------------------------------------------------------------- */

static struct member *member_find(struct sy_fleet *f, const char *instance)
{
    for (size_t i = 0; i < f->n_members; i++)
        if (strcmp(f->members[i].instance, instance) == 0)
            return &f->members[i];
    return NULL;
}

static void member_remove(struct sy_fleet *f, const char *instance)
{
    struct member *m = member_find(f, instance);
    if (!m)
        return;
    free(m->instance);
    free(m->version);
    *m = f->members[--f->n_members];
}

static void members_clear(struct sy_fleet *f)
{
    while (f->n_members)
        member_remove(f, f->members[0].instance);
}

/* A member key's value (`json`, decoded) for `instance`. */
static void member_set(struct sy_fleet *f, const char *instance, const char *json, size_t len)
{
    struct sy_jv *v = NULL;
    const char *why;
    if (sy_jv_parse(json, len, &v, &why) != 0 || sy_jv_type(v) != SY_JV_OBJ) {
        sy_log(SY_LOG_WARN, "fleet", "member %s: its key is not a member record (%s): ignored",
               instance, v ? "not an object" : why);
        sy_jv_free(v);
        return;
    }
    struct member *m = member_find(f, instance);
    if (!m) {
        sy_xgrow((void **)&f->members, &f->cap_members, f->n_members + 1, sizeof(*f->members));
        m = &f->members[f->n_members++];
        memset(m, 0, sizeof(*m));
        m->instance = sy_xstrdup(instance);
    }
    free(m->version);
    const char *ver = sy_jv_str(sy_jv_get(v, "version"));
    m->version = sy_xstrdup(ver ? ver : "?");
    m->rev = sy_jv_uint(sy_jv_get(v, "rev"), 0);
    m->generation = sy_jv_uint(sy_jv_get(v, "generation"), 0);
    m->seen_ms = sy_now_ms();
    sy_jv_free(v);
}

/* -- applying what etcd holds ---------------------------------------------------------------- */

/* An app record decoded: the edit (weights owned here) and who made it. */
struct decoded {
    bool is_ramp;        /* a ramp's record (`ramp`), not an app's override (`edit`) */
    struct sy_ramp ramp; /* owned */
    bool begins;         /* the record that began the ramp */
    struct sy_state_edit edit;
    struct sy_route_weight *w;
    char *app, *cmd, *instance;
    uint64_t time_ms, rev;
    uint32_t uid;
    int32_t pid;
};

static void decoded_dispose(struct decoded *d)
{
    for (size_t i = 0; i < d->edit.n_weights; i++)
        free((char *)d->w[i].cluster);
    free(d->w);
    free(d->app);
    free(d->cmd);
    free(d->instance);
    sy_ramp_dispose(&d->ramp);
    memset(d, 0, sizeof(*d));
}

/* Who made a record (put_who): its command (checked present by the caller), replica, time,
 * uid and pid. */
static void read_who(const struct sy_jv *v, struct decoded *d)
{
    const char *inst = sy_jv_str(sy_jv_get(v, "instance"));
    d->cmd = sy_xstrdup(sy_jv_str(sy_jv_get(v, "cmd")));
    d->instance = inst ? sy_xstrdup(inst) : NULL;
    d->time_ms = sy_jv_uint(sy_jv_get(v, "time"), 0);
    d->uid = (uint32_t)sy_jv_uint(sy_jv_get(v, "uid"), 0);
    d->pid = (int32_t)sy_jv_uint(sy_jv_get(v, "pid"), 0);
}

/* Decodes app `app`'s value (NULL: the key was deleted, a release). Returns false when the
 * value is not a record (logged by the caller). */
static bool decode_record(const char *app, const char *json, size_t len, uint64_t rev,
                          struct decoded *d)
{
    memset(d, 0, sizeof(*d));
    d->app = sy_xstrdup(app);
    d->rev = rev;
    d->edit.app = d->app;
    if (!json) {
        d->edit.release = true;
        d->cmd = sy_xstrdup("(key deleted in etcd)");
        d->time_ms = unix_ms();
        return true;
    }
    struct sy_jv *v = NULL;
    const char *why;
    if (sy_jv_parse(json, len, &v, &why) != 0)
        return false;
    const struct sy_jv *ov = sy_jv_get(v, "override");
    const char *cmd = sy_jv_str(sy_jv_get(v, "cmd"));
    bool ok = sy_jv_type(v) == SY_JV_OBJ && sy_jv_uint(sy_jv_get(v, "v"), 0) == RECORD_VERSION &&
              (sy_jv_type(ov) == SY_JV_NULL || sy_jv_type(ov) == SY_JV_OBJ) && cmd;
    if (ok && sy_jv_type(ov) == SY_JV_OBJ) {
        size_t n = sy_jv_len(ov);
        d->w = sy_xcalloc(n ? n : 1, sizeof(*d->w));
        for (size_t i = 0; i < n && ok; i++) {
            const struct sy_jv *wv = sy_jv_at(ov, i);
            ok = sy_jv_type(wv) == SY_JV_UINT && sy_jv_uint(wv, 0) <= 100;
            if (ok) {
                d->w[i].cluster = sy_xstrdup(sy_jv_key_at(ov, i));
                d->w[i].weight = (unsigned)sy_jv_uint(wv, 0);
                d->edit.n_weights++;
            }
        }
        d->edit.weights = d->w;
        ok = ok && n > 0;
    } else {
        d->edit.release = true;
    }
    if (ok)
        read_who(v, d);
    sy_jv_free(v);
    return ok;
}

/* Decodes ramp `app`'s value (a deleted key is an aborted ramp with what we know of it). */
static bool decode_ramp(struct sy_fleet *f, const char *app, const char *json, size_t len,
                        uint64_t rev, struct decoded *d)
{
    memset(d, 0, sizeof(*d));
    d->is_ramp = true;
    d->rev = rev;
    d->app = sy_xstrdup(app);
    struct sy_jv *v = NULL;
    const char *why;
    if (!json || sy_jv_parse(json, len, &v, &why) != 0) {
        const struct sy_ramp *cur = sy_ramps_find(sy_state_ramps(f->st), app);
        if (json || !cur)
            return false;
        d->ramp = *cur; /* the key was deleted: the ramp ends */
        d->ramp.app = sy_xstrdup(cur->app);
        d->ramp.cluster = sy_xstrdup(cur->cluster);
        d->ramp.why = sy_xstrdup("its key was deleted in etcd");
        d->ramp.command = NULL;
        d->ramp.state = SY_RAMP_ABORTED;
        d->cmd = sy_xstrdup("(ramp key deleted in etcd)");
        d->time_ms = unix_ms();
        return true;
    }
    bool ok =
        sy_jv_uint(sy_jv_get(v, "v"), 0) == RECORD_VERSION && sy_jv_str(sy_jv_get(v, "cmd")) &&
        sy_ramp_from_json(sy_jv_get(v, "ramp"), &d->ramp, &why) && strcmp(d->ramp.app, app) == 0;
    if (ok) {
        d->begins = sy_jv_bool(sy_jv_get(v, "begins"));
        read_who(v, d);
    }
    sy_jv_free(v);
    return ok;
}

/* A ramp's record applied here: journalled as this replica's ramp record. A ramp this
 * replica saw begin keeps its start (the override its steps set comes after it); one that
 * began before this replica read the fleet starts at the journal's beginning, so that the
 * step override in force counts as the ramp's. */
static void apply_ramp(struct sy_fleet *f, struct decoded *d)
{
    const struct sy_ramp *cur = sy_ramps_find(sy_state_ramps(f->st), d->app);
    d->ramp.start_seq = d->begins ? 0 : cur ? cur->start_seq : 1;
    struct sy_actor who = {d->time_ms, d->uid, d->pid, d->cmd, d->rev, d->instance, false};
    char err[512];
    if (sy_state_set_ramp(f->st, &d->ramp, &who, err, sizeof(err)) != 0)
        sy_log(SY_LOG_ERROR, "fleet", "revision %" PRIu64 " (%s): ramp not applied here: %s",
               d->rev, d->cmd, err);
}

/* Applies the decoded records of one revision as one change here. Apps with a `--local`
 * override keep it (the fleet's record is remembered for their release). */
static void apply_group(struct sy_fleet *f, struct decoded *d, size_t n)
{
    if (n == 0)
        return;
    /* A ramp's record first: a step's override is counted as the ramp's only after it. */
    for (size_t i = 0; i < n; i++)
        if (d[i].is_ramp) {
            rec_of(f, RAMPS_DIR, d[i].app, true)->rev = d[i].rev;
            apply_ramp(f, &d[i]);
        }
    const struct sy_overrides *cur = sy_state_overrides(f->st);
    struct sy_state_edit *edits = sy_xcalloc(n, sizeof(*edits));
    size_t k = 0, first = n;
    for (size_t i = 0; i < n; i++) {
        if (d[i].is_ramp)
            continue;
        first = first < i ? first : i;
        struct app_rec *r = rec_of(f, APPS_DIR, d[i].app, true);
        r->rev = d[i].rev;
        r->epoch = f->sync_epoch;
        if (d[i].rev > f->last_change)
            f->last_change = d[i].rev;
        const struct sy_override *o = sy_overrides_find(cur, d[i].app);
        /* A change made through this replica (the watch brings it just after) replaces its
         * local override; a record read back by a sync is older than that override. */
        bool ours = !f->syncing && d[i].instance && strcmp(d[i].instance, f->instance) == 0;
        if (o && o->local && !ours) {
            sy_log(SY_LOG_WARN, "fleet",
                   "app %s keeps its --local override: the fleet's change at revision %" PRIu64
                   " (%s) is not applied here until `release %s --local`",
                   d[i].app, d[i].rev, d[i].cmd, d[i].app);
            continue;
        }
        /* Already here (the journal's cache, read back at start): nothing to do. */
        if (o && o->rev == d[i].rev)
            continue;
        if (!o && d[i].edit.release)
            continue;
        edits[k++] = d[i].edit;
    }
    if (k) {
        d += first;
        struct sy_actor who = {d[0].time_ms, d[0].uid,      d[0].pid, d[0].cmd,
                               d[0].rev,     d[0].instance, false};
        char err[512];
        if (sy_state_apply(f->st, edits, k, &who, err, sizeof(err)) != 0)
            sy_log(SY_LOG_ERROR, "fleet", "revision %" PRIu64 " (%s): not applied here: %s",
                   d[0].rev, d[0].cmd, err);
        else
            sy_log(SY_LOG_INFO, "fleet",
                   "revision %" PRIu64 " from %s applied: %s (%zu app%s), generation %" PRIu64,
                   d[0].rev, d[0].instance ? d[0].instance : "etcd", d[0].cmd, k, k == 1 ? "" : "s",
                   sy_state_generation(f->st));
    }
    free(edits);
}

/* The key's name below the prefix's `dir` ("apps/"), or NULL. */
static const char *below(const struct sy_fleet *f, const char *key, const char *dir)
{
    if (strncmp(key, f->spec->prefix, f->prefix_len) != 0)
        return NULL;
    key += f->prefix_len;
    size_t n = strlen(dir);
    return strncmp(key, dir, n) == 0 && key[n] ? key + n : NULL;
}

/* One kv of a range or an event: decoded into `out` when it is an app's (returns true). */
static bool take_kv(struct sy_fleet *f, const struct sy_jv *kv, bool deleted, struct decoded *out)
{
    size_t klen = 0, vlen = 0;
    char *key = sy_etcd_unb64(
        sy_jv_str(sy_jv_get(kv, "key")) ? sy_jv_str(sy_jv_get(kv, "key")) : "", &klen);
    if (!key)
        return false;
    const char *vs = sy_jv_str(sy_jv_get(kv, "value"));
    char *val = !deleted ? sy_etcd_unb64(vs ? vs : "", &vlen) : NULL;
    uint64_t rev = sy_etcd_u64(sy_jv_get(kv, "mod_revision"), 0);
    bool app = false;
    const char *name;
    if ((name = below(f, key, MEMBERS_DIR))) {
        if (deleted)
            member_remove(f, name);
        else if (val)
            member_set(f, name, val, vlen);
    } else if ((name = below(f, key, RAMPS_DIR))) {
        if (!decode_ramp(f, name, val, vlen, rev, out)) {
            sy_log(SY_LOG_WARN, "fleet",
                   "key %s at revision %" PRIu64 ": not a ramp record: ignored", key, rev);
            decoded_dispose(out);
        } else {
            app = true;
        }
    } else if (strncmp(key, f->spec->prefix, f->prefix_len) == 0 &&
               strcmp(key + f->prefix_len, LEADER_KEY) == 0) {
        free(f->leader);
        f->leader = deleted || !val ? NULL : sy_xstrdup(val);
    } else if ((name = below(f, key, APPS_DIR))) {
        if (!deleted && !val) {
            sy_log(SY_LOG_WARN, "fleet", "key %s: a value that is not base64: ignored", key);
        } else if (!decode_record(name, val, vlen, rev, out)) {
            sy_log(SY_LOG_WARN, "fleet",
                   "key %s at revision %" PRIu64 ": not an override record: ignored", key, rev);
            decoded_dispose(out);
        } else {
            app = true;
        }
    }
    free(key);
    free(val);
    return app;
}

/* Applies decoded records sorted by revision, one change per revision. */
static void apply_sorted(struct sy_fleet *f, struct decoded *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        while (j < n && d[j].rev == d[i].rev)
            j++;
        apply_group(f, d + i, j - i);
        i = j;
    }
}

static int cmp_rev(const void *a, const void *b)
{
    const struct decoded *x = a, *y = b;
    return x->rev < y->rev ? -1 : x->rev > y->rev;
}

/* -- connection state ------------------------------------------------------------------------ */

static void set_connected(struct sy_fleet *f, bool on, const char *why)
{
    if (!on && why)
        snprintf(f->last_error, sizeof(f->last_error), "%s", why);
    if (f->connected == on)
        return;
    f->connected = on;
    f->since_ms = unix_ms();
    if (on)
        sy_log(SY_LOG_INFO, "fleet", "etcd reached: watching %s from revision %" PRIu64,
               f->spec->prefix, f->applied + 1);
    else
        sy_log(SY_LOG_ERROR, "fleet",
               "etcd unreachable (%s): serving the last fleet state applied (revision %" PRIu64
               "); changes are refused except --local",
               why ? why : "?", f->applied);
}

static void retry_later(struct sy_fleet *f)
{
    f->retry_ms = f->retry_ms ? f->retry_ms * 2 : RESYNC_MIN_MS;
    if (f->retry_ms > RESYNC_MAX_MS)
        f->retry_ms = RESYNC_MAX_MS;
    struct timeval tv = {(time_t)(f->retry_ms / 1000), (suseconds_t)(f->retry_ms % 1000) * 1000};
    evtimer_add(f->retry_ev, &tv);
}

static void note_endpoint(struct sy_fleet *f)
{
    size_t i = sy_etcd_current(f->etcd);
    if (i < f->spec->n_endpoints)
        snprintf(f->endpoint, sizeof(f->endpoint), "%s", f->spec->endpoints[i].address);
}

/* -- sync: one range over the prefix ------------------------------------------------------ */

static void sync_done(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    struct sy_fleet *f = arg;
    f->sync_call = NULL;
    if (rc) {
        set_connected(f, false, why);
        retry_later(f);
        return;
    }
    note_endpoint(f);
    uint64_t rev = sy_etcd_u64(sy_jv_get(sy_jv_get(res, "header"), "revision"), 0);
    const struct sy_jv *kvs = sy_jv_get(res, "kvs");
    size_t n = sy_jv_len(kvs), k = 0;
    struct decoded *d = sy_xcalloc(n ? n : 1, sizeof(*d));
    members_clear(f);
    free(f->leader);
    f->leader = NULL;
    f->sync_epoch++;
    /* Every app the fleet has: what this replica holds from the fleet and etcd no longer
     * has (deleted meanwhile) is released. */
    for (size_t i = 0; i < n; i++)
        if (take_kv(f, sy_jv_at(kvs, i), false, &d[k]))
            k++;
    qsort(d, k, sizeof(*d), cmp_rev);
    f->syncing = true;
    apply_sorted(f, d, k);
    const struct sy_overrides *cur = sy_state_overrides(f->st);
    size_t n_gone = 0;
    struct decoded *gone = sy_xcalloc(cur->n ? cur->n : 1, sizeof(*gone));
    for (size_t i = 0; i < cur->n; i++) {
        const struct sy_override *o = &cur->v[i];
        const struct app_rec *r = rec_of(f, APPS_DIR, o->app, false);
        bool in_etcd = r && r->epoch == f->sync_epoch;
        if (!o->local && !in_etcd)
            decode_record(o->app, NULL, 0, rev, &gone[n_gone++]);
    }
    apply_group(f, gone, n_gone);
    f->syncing = false;
    for (size_t i = 0; i < n_gone; i++)
        decoded_dispose(&gone[i]);
    free(gone);
    for (size_t i = 0; i < k; i++)
        decoded_dispose(&d[i]);
    free(d);
    if (rev > f->applied)
        f->applied = rev;
    if (!f->synced)
        sy_log(SY_LOG_INFO, "fleet",
               "read the fleet state at revision %" PRIu64 ": %zu app%s, %zu member%s", rev, k,
               k == 1 ? "" : "s", f->n_members, f->n_members == 1 ? "" : "s");
    f->synced = true;
    f->ready = true;
    f->retry_ms = 0;
    put_member(f);
    start_watch(f);
    changes_progress(f);
}

static void start_sync(struct sy_fleet *f)
{
    struct sy_jw b;
    sy_jw_init(&b);
    char *key = sy_etcd_b64(f->spec->prefix, strlen(f->spec->prefix));
    char *pend = sy_etcd_prefix_end(f->spec->prefix);
    char *end = sy_etcd_b64(pend, strlen(pend));
    sy_jw_begin_object(&b, NULL);
    sy_jw_str(&b, "key", key);
    sy_jw_str(&b, "range_end", end);
    sy_jw_end_object(&b);
    f->n_resyncs++;
    f->sync_call = sy_etcd_call(f->etcd, "/v3/kv/range", b.p, b.len, sync_done, f);
    free(key);
    free(pend);
    free(end);
    sy_jw_dispose(&b);
}

/* -- the watch ------------------------------------------------------------------------------ */

static void watch_msg(const struct sy_jv *result, void *arg)
{
    struct sy_fleet *f = arg;
    if (sy_jv_bool(sy_jv_get(result, "canceled"))) {
        uint64_t compact = sy_etcd_u64(sy_jv_get(result, "compact_revision"), 0);
        sy_log(SY_LOG_WARN, "fleet",
               "watch canceled by etcd (compacted to revision %" PRIu64
               "): reading the prefix again",
               compact);
        sy_etcd_watch_cancel(f->watch);
        f->watch = NULL;
        f->synced = false;
        start_sync(f);
        return;
    }
    note_endpoint(f);
    set_connected(f, true, NULL);
    const struct sy_jv *ev = sy_jv_get(result, "events");
    size_t n = sy_jv_len(ev), k = 0;
    struct decoded *d = sy_xcalloc(n ? n : 1, sizeof(*d));
    uint64_t top = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sy_jv *e = sy_jv_at(ev, i);
        const struct sy_jv *kv = sy_jv_get(e, "kv");
        const char *type = sy_jv_str(sy_jv_get(e, "type"));
        bool deleted = type && strcmp(type, "DELETE") == 0;
        uint64_t rev = sy_etcd_u64(sy_jv_get(kv, "mod_revision"), 0);
        if (rev > top)
            top = rev;
        if (take_kv(f, kv, deleted, &d[k]))
            k++;
    }
    apply_sorted(f, d, k); /* events come in revision order */
    for (size_t i = 0; i < k; i++)
        decoded_dispose(&d[i]);
    free(d);
    /* No events: a progress notice says everything up to its header's revision has been sent
     * (not the creation notice: the events from our start revision follow it). */
    if (n == 0 && !sy_jv_bool(sy_jv_get(result, "created")))
        top = sy_etcd_u64(sy_jv_get(sy_jv_get(result, "header"), "revision"), 0);
    if (top > f->applied)
        f->applied = top;
    if (k)
        put_member(f);
    if (!f->leader)
        try_lead(f); /* the leader's key went with its lease: someone takes over now */
    changes_progress(f);
}

static void watch_end(const char *why, void *arg)
{
    struct sy_fleet *f = arg;
    f->watch = NULL;
    set_connected(f, false, why);
    retry_later(f);
}

static void start_watch(struct sy_fleet *f)
{
    if (f->watch)
        return;
    struct sy_jw b;
    sy_jw_init(&b);
    char *key = sy_etcd_b64(f->spec->prefix, strlen(f->spec->prefix));
    char *pend = sy_etcd_prefix_end(f->spec->prefix);
    char *end = sy_etcd_b64(pend, strlen(pend));
    char from[24];
    snprintf(from, sizeof(from), "%" PRIu64, f->applied + 1);
    sy_jw_begin_object(&b, NULL);
    sy_jw_begin_object(&b, "create_request");
    sy_jw_str(&b, "key", key);
    sy_jw_str(&b, "range_end", end);
    sy_jw_str(&b, "start_revision", from);
    sy_jw_bool(&b, "progress_notify", true);
    sy_jw_end_object(&b);
    sy_jw_end_object(&b);
    f->watch = sy_etcd_watch(f->etcd, b.p, b.len, watch_msg, watch_end, f);
    free(key);
    free(pend);
    free(end);
    sy_jw_dispose(&b);
}

/* A sync or a watch again, whichever is missing. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_fleet *f = arg;
    if (!f->synced) {
        if (!f->sync_call)
            start_sync(f);
    } else {
        start_watch(f);
    }
    if (!f->lease && !f->lease_call)
        put_member(f); /* grants the lease first */
}

/* -- the lease and the member key --------------------------------------------------------- */

static void member_put_done(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    struct sy_fleet *f = arg;
    f->member_call = NULL;
    if (rc == SY_ERR_INVALID)
        f->lease = 0; /* etcd refused the put: its lease expired; the next one is granted */
    if (rc) {
        f->member_dirty = true;
        return; /* the keep-alive tick writes it again */
    }
    if (f->member_dirty) {
        f->member_dirty = false;
        put_member(f);
    }
    try_lead(f);
}

static void write_member(struct sy_fleet *f)
{
    struct sy_jw v;
    sy_jw_init(&v);
    sy_jw_begin_object(&v, NULL);
    sy_jw_str(&v, "instance", f->instance);
    sy_jw_str(&v, "version", f->version);
    sy_jw_uint(&v, "rev", f->applied);
    sy_jw_uint(&v, "generation", sy_state_generation(f->st));
    sy_jw_uint(&v, "time", unix_ms());
    sy_jw_end_object(&v);
    char *mkey = xprintf("%s%s", f->members_prefix, f->instance);
    char *key = sy_etcd_b64(mkey, strlen(mkey));
    char *val = sy_etcd_b64(v.p, v.len);
    char lease[24];
    snprintf(lease, sizeof(lease), "%" PRIu64, f->lease);
    struct sy_jw b;
    sy_jw_init(&b);
    sy_jw_begin_object(&b, NULL);
    sy_jw_str(&b, "key", key);
    sy_jw_str(&b, "value", val);
    sy_jw_str(&b, "lease", lease);
    sy_jw_end_object(&b);
    f->member_call = sy_etcd_call(f->etcd, "/v3/kv/put", b.p, b.len, member_put_done, f);
    sy_jw_dispose(&b);
    sy_jw_dispose(&v);
    free(mkey);
    free(key);
    free(val);
}

static void lease_done(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    struct sy_fleet *f = arg;
    f->lease_call = NULL;
    uint64_t id = rc ? 0 : sy_etcd_u64(sy_jv_get(res, "ID"), 0);
    if (!id) {
        f->member_dirty = true;
        return;
    }
    f->lease = id;
    write_member(f);
}

static void grant_lease(struct sy_fleet *f)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"TTL\":%" PRIu64 "}", f->spec->lease_ttl_ms / 1000);
    f->lease_call = sy_etcd_call(f->etcd, "/v3/lease/grant", body, (size_t)n, lease_done, f);
}

/* Writes this replica's member key (granting the lease first when there is none). */
static void put_member(struct sy_fleet *f)
{
    if (!f->synced)
        return; /* nothing true to say yet */
    if (f->lease_call || f->member_call) {
        f->member_dirty = true;
        return;
    }
    if (!f->lease) {
        grant_lease(f);
        return;
    }
    write_member(f);
}

static void keepalive_done(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    struct sy_fleet *f = arg;
    f->lease_call = NULL;
    if (rc)
        return; /* unreachable: the next tick tries again; the lease may expire meanwhile */
    const struct sy_jv *r = sy_jv_get(res, "result");
    if (sy_etcd_u64(sy_jv_get(r ? r : res, "TTL"), 0) == 0) {
        sy_log(SY_LOG_WARN, "fleet",
               "lease %" PRIu64 " expired: this member's key is written again", f->lease);
        f->lease = 0;
        f->member_dirty = false;
        put_member(f);
        return;
    }
    if (f->member_dirty) {
        f->member_dirty = false;
        put_member(f);
    }
}

static void leader_done(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    struct sy_fleet *f = arg;
    f->leader_call = NULL;
    if (rc == 0 && sy_jv_bool(sy_jv_get(res, "succeeded")))
        sy_log(SY_LOG_INFO, "fleet", "%s leads the fleet's ramps (lease %" PRIu64 ")", f->instance,
               f->lease);
}

/* Takes the lead of the ramps when nobody holds it: the key `leader`, created only when it
 * does not exist, bound to this replica's lease (it goes with the lease). */
static void try_lead(struct sy_fleet *f)
{
    if (f->leader || !f->lease || f->leader_call || !f->synced)
        return;
    char *k = xprintf("%s%s", f->spec->prefix, LEADER_KEY);
    char *key = sy_etcd_b64(k, strlen(k));
    char *val = sy_etcd_b64(f->instance, strlen(f->instance));
    char lease[24];
    snprintf(lease, sizeof(lease), "%" PRIu64, f->lease);
    struct sy_jw b;
    sy_jw_init(&b);
    sy_jw_begin_object(&b, NULL);
    sy_jw_begin_array(&b, "compare");
    sy_jw_begin_object(&b, NULL);
    sy_jw_str(&b, "key", key);
    sy_jw_str(&b, "target", "CREATE");
    sy_jw_str(&b, "result", "EQUAL");
    sy_jw_str(&b, "create_revision", "0");
    sy_jw_end_object(&b);
    sy_jw_end_array(&b);
    sy_jw_begin_array(&b, "success");
    sy_jw_begin_object(&b, NULL);
    sy_jw_begin_object(&b, "request_put");
    sy_jw_str(&b, "key", key);
    sy_jw_str(&b, "value", val);
    sy_jw_str(&b, "lease", lease);
    sy_jw_end_object(&b);
    sy_jw_end_object(&b);
    sy_jw_end_array(&b);
    sy_jw_end_object(&b);
    f->leader_call = sy_etcd_call(f->etcd, "/v3/kv/txn", b.p, b.len, leader_done, f);
    sy_jw_dispose(&b);
    free(k);
    free(key);
    free(val);
}

bool sy_fleet_is_leader(const struct sy_fleet *f)
{
    return f->connected && f->leader && strcmp(f->leader, f->instance) == 0;
}

static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_fleet *f = arg;
    try_lead(f);
    if (f->lease && !f->lease_call) {
        char body[64];
        int n = snprintf(body, sizeof(body), "{\"ID\":\"%" PRIu64 "\"}", f->lease);
        f->lease_call =
            sy_etcd_call(f->etcd, "/v3/lease/keepalive", body, (size_t)n, keepalive_done, f);
    } else if (!f->lease && !f->lease_call && f->synced) {
        put_member(f);
    }
}

/* -- changes --------------------------------------------------------------------------------- */

static void change_free(struct change *c)
{
    struct sy_fleet *f = c->f;
    if (c->prev)
        c->prev->next = c->next;
    else
        f->changes = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->call)
        sy_etcd_call_cancel(c->call);
    if (c->deadline)
        event_free(c->deadline);
    for (size_t i = 0; i < c->n; i++) {
        free((char *)c->edits[i].app);
        for (size_t k = 0; k < c->edits[i].n_weights; k++)
            free((char *)c->edits[i].weights[k].cluster);
        free((void *)c->edits[i].weights);
    }
    free(c->edits);
    sy_ramp_dispose(&c->ramp);
    free(c->step_cmd);
    free((char *)c->who.command);
    free((char *)c->who.instance);
    for (size_t i = 0; i < c->n_conf; i++)
        free(c->conf[i].instance);
    free(c->conf);
    free(c);
}

static bool confirmed(const struct change *c, const char *instance)
{
    for (size_t i = 0; i < c->n_conf; i++)
        if (strcmp(c->conf[i].instance, instance) == 0)
            return true;
    return false;
}

static void confirm(struct change *c, const char *instance)
{
    if (confirmed(c, instance))
        return;
    sy_xgrow((void **)&c->conf, &c->cap_conf, c->n_conf + 1, sizeof(*c->conf));
    c->conf[c->n_conf].instance = sy_xstrdup(instance);
    c->conf[c->n_conf++].delay_ms = sy_now_ms() - c->commit_ms;
}

/* Answers and forgets the change. */
static void finish(struct change *c, int rc, const char *why)
{
    struct sy_fleet *f = c->f;
    size_t n = f->n_members;
    struct sy_fleet_member *ms = sy_xcalloc(n ? n : 1, sizeof(*ms));
    for (size_t i = 0; i < n; i++) {
        const struct member *m = &f->members[i];
        ms[i] = (struct sy_fleet_member){m->instance, m->version, m->rev, m->generation,
                                         m->seen_ms,  0,          false};
        if (strcmp(m->instance, f->instance) == 0) { /* our key may lag what we applied */
            ms[i].rev = f->applied;
            ms[i].generation = sy_state_generation(f->st);
        }
        for (size_t k = 0; k < c->n_conf; k++)
            if (strcmp(c->conf[k].instance, m->instance) == 0) {
                ms[i].applied = true;
                ms[i].delay_ms = c->conf[k].delay_ms;
            }
    }
    struct sy_fleet_result res = {
        rc, why, c->rev, c->commit_ms ? c->commit_ms - c->start_ms : 0, c->wait, ms, n,
    };
    if (rc == 0)
        f->n_changes++;
    else
        f->n_refused++;
    c->done(&res, c->arg);
    free(ms);
    change_free(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct change *c = arg;
    if (c->state == CH_SENT) { /* etcd's answer decides: it may have committed */
        c->expired = true;
        return;
    }
    char why[512];
    if (c->state == CH_MEMBERS) {
        size_t off = (size_t)snprintf(
            why, sizeof(why),
            "etcd revision %" PRIu64 " not confirmed within %" PRIu64 " ms by:", c->rev,
            c->f->spec->wait_ms);
        for (size_t i = 0; i < c->f->n_members && off < sizeof(why); i++)
            if (!confirmed(c, c->f->members[i].instance))
                off += (size_t)snprintf(why + off, sizeof(why) - off, " %s",
                                        c->f->members[i].instance);
        finish(c, SY_ERR_AGAIN, why);
        return;
    }
    snprintf(why, sizeof(why),
             c->state == CH_APPLY
                 ? "etcd committed revision %" PRIu64 " but this replica has not applied it "
                   "within %" PRIu64 " ms (its watch: %s)"
                 : "the change kept losing to newer ones (last at revision %" PRIu64
                   ") for %" PRIu64 " ms%s",
             c->state == CH_APPLY ? c->rev : c->catch_up, c->f->spec->wait_ms,
             c->state == CH_APPLY ? (c->f->connected ? "open" : c->f->last_error) : "");
    finish(c, SY_ERR_AGAIN, why);
}

static void arm_deadline(struct change *c)
{
    uint64_t ms = c->f->spec->wait_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->deadline, &tv);
}

static void send_txn(struct change *c);

/* Moves every change along after the watch applied up to f->applied. */
static void changes_progress(struct sy_fleet *f)
{
    for (struct change *c = f->changes, *next; c; c = next) {
        next = c->next;
        if (c->state == CH_CATCH_UP && f->applied >= c->catch_up) {
            char err[512];
            if (c->n && sy_state_check(f->st, c->edits, c->n, err, sizeof(err)) != 0) {
                finish(c, SY_ERR_INVALID, err);
                continue;
            }
            send_txn(c);
            continue;
        }
        if (c->state == CH_APPLY && f->applied >= c->rev) {
            confirm(c, f->instance);
            if (!c->wait) {
                finish(c, 0, NULL);
                continue;
            }
            c->state = CH_MEMBERS;
        }
        if (c->state == CH_MEMBERS) {
            bool all = true;
            for (size_t i = 0; i < f->n_members; i++) {
                const struct member *m = &f->members[i];
                if (m->rev >= c->rev)
                    confirm(c, m->instance);
                else if (strcmp(m->instance, f->instance) != 0)
                    all = false;
            }
            if (all)
                finish(c, 0, NULL);
        }
    }
}

static void txn_done(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    struct change *c = arg;
    struct sy_fleet *f = c->f;
    c->call = NULL;
    if (rc) {
        char msg[512];
        const char *pre = "etcd unreachable: ";
        if (strncmp(why, pre, strlen(pre)) == 0)
            why += strlen(pre);
        snprintf(msg, sizeof(msg),
                 rc == SY_ERR_AGAIN
                     ? "etcd is unreachable: %s: nothing was changed; `--local` changes this "
                       "replica only"
                     : "etcd refused the change: %s",
                 why);
        if (rc == SY_ERR_AGAIN)
            set_connected(f, false, why);
        finish(c, rc, msg);
        return;
    }
    note_endpoint(f);
    uint64_t rev = sy_etcd_u64(sy_jv_get(sy_jv_get(res, "header"), "revision"), 0);
    if (!sy_jv_bool(sy_jv_get(res, "succeeded"))) {
        /* Another change to these apps came first: wait until it is applied here, then check
         * and send again against its revisions. */
        if (++c->attempts >= TXN_ATTEMPTS || c->expired) {
            finish(c, SY_ERR_AGAIN, "the change kept losing to newer ones: try again");
            return;
        }
        uint64_t newest = 0;
        const struct sy_jv *rs = sy_jv_get(res, "responses");
        for (size_t i = 0; i < sy_jv_len(rs); i++) {
            const struct sy_jv *kvs =
                sy_jv_get(sy_jv_get(sy_jv_at(rs, i), "response_range"), "kvs");
            for (size_t k = 0; k < sy_jv_len(kvs); k++) {
                uint64_t m = sy_etcd_u64(sy_jv_get(sy_jv_at(kvs, k), "mod_revision"), 0);
                newest = m > newest ? m : newest;
            }
        }
        c->state = CH_CATCH_UP;
        if (!evtimer_pending(c->deadline, NULL))
            arm_deadline(c);
        /* A key deleted meanwhile leaves no revision to wait for: the store's then. */
        c->catch_up = newest ? newest : rev;
        changes_progress(f);
        return;
    }
    c->rev = rev;
    c->commit_ms = sy_now_ms();
    c->state = CH_APPLY;
    evtimer_del(c->deadline);
    arm_deadline(c);
    changes_progress(f);
}

/* Who made a record, in its value (read_who reads it back). */
static void put_who(struct sy_jw *v, const struct sy_actor *who)
{
    sy_jw_uint(v, "time", who->time_ms);
    sy_jw_uint(v, "uid", who->uid);
    sy_jw_int(v, "pid", who->pid < 0 ? 0 : who->pid);
    sy_jw_str(v, "cmd", who->command ? who->command : "");
    sy_jw_str(v, "instance", who->instance);
}

/* The value of app key `e` made by `who`. */
static void record_json(struct sy_jw *v, const struct sy_state_edit *e, const struct sy_actor *who)
{
    sy_jw_begin_object(v, NULL);
    sy_jw_uint(v, "v", RECORD_VERSION);
    sy_jw_str(v, "app", e->app);
    if (e->release) {
        sy_jw_null(v, "override");
    } else {
        sy_jw_begin_object(v, "override");
        for (size_t k = 0; k < e->n_weights; k++)
            if (e->weights[k].weight)
                sy_jw_uint(v, e->weights[k].cluster, e->weights[k].weight);
        sy_jw_end_object(v);
    }
    put_who(v, who);
    sy_jw_end_object(v);
}

/* The value of a ramp's key. */
static void ramp_json(struct sy_jw *v, const struct sy_ramp *r, bool begins,
                      const struct sy_actor *who)
{
    sy_jw_begin_object(v, NULL);
    sy_jw_uint(v, "v", RECORD_VERSION);
    sy_jw_begin_object(v, "ramp");
    struct sy_ramp x = *r;
    x.start_seq = 0; /* a replica's own journal number: not the fleet's */
    sy_ramp_json(v, &x);
    sy_jw_end_object(v);
    sy_jw_bool(v, "begins", begins);
    put_who(v, who);
    sy_jw_end_object(v);
}

static void send_txn(struct change *c)
{
    struct sy_fleet *f = c->f;
    struct sy_jw b;
    sy_jw_init(&b);
    sy_jw_begin_object(&b, NULL);
    sy_jw_begin_array(&b, "compare");
    size_t nk = c->n + c->has_ramp;
    char **keys = sy_xcalloc(nk, sizeof(*keys));
    for (size_t i = 0; i < nk; i++) {
        bool ramp = i == c->n;
        const char *name = ramp ? c->ramp.app : c->edits[i].app;
        char *k = xprintf("%s%s%s", f->spec->prefix, ramp ? RAMPS_DIR : APPS_DIR, name);
        keys[i] = sy_etcd_b64(k, strlen(k));
        free(k);
        const struct app_rec *r = rec_of(f, ramp ? RAMPS_DIR : APPS_DIR, name, false);
        char rev[24];
        snprintf(rev, sizeof(rev), "%" PRIu64, r ? r->rev : 0);
        sy_jw_begin_object(&b, NULL);
        sy_jw_str(&b, "key", keys[i]);
        sy_jw_str(&b, "target", "MOD");
        sy_jw_str(&b, "result", "EQUAL");
        sy_jw_str(&b, "mod_revision", rev);
        sy_jw_end_object(&b);
    }
    sy_jw_end_array(&b);
    sy_jw_begin_array(&b, "success");
    for (size_t i = 0; i < nk; i++) {
        struct sy_jw v;
        sy_jw_init(&v);
        struct sy_actor step = c->who;
        if (c->step_cmd)
            step.command = c->step_cmd;
        if (i == c->n)
            ramp_json(&v, &c->ramp, c->ramp_begins, &c->who);
        else
            record_json(&v, &c->edits[i], &step);
        char *val = sy_etcd_b64(v.p, v.len);
        sy_jw_begin_object(&b, NULL);
        sy_jw_begin_object(&b, "request_put");
        sy_jw_str(&b, "key", keys[i]);
        sy_jw_str(&b, "value", val);
        sy_jw_end_object(&b);
        sy_jw_end_object(&b);
        free(val);
        sy_jw_dispose(&v);
    }
    sy_jw_end_array(&b);
    /* When a compare fails: each key as it is now, so that we know which revision to wait for
     * before checking and sending again. */
    sy_jw_begin_array(&b, "failure");
    for (size_t i = 0; i < nk; i++) {
        sy_jw_begin_object(&b, NULL);
        sy_jw_begin_object(&b, "request_range");
        sy_jw_str(&b, "key", keys[i]);
        sy_jw_end_object(&b);
        sy_jw_end_object(&b);
        free(keys[i]);
    }
    free(keys);
    sy_jw_end_array(&b);
    sy_jw_end_object(&b);
    c->state = CH_SENT;
    c->call = sy_etcd_call(f->etcd, "/v3/kv/txn", b.p, b.len, txn_done, c);
    sy_jw_dispose(&b);
}

int sy_fleet_change(struct sy_fleet *f, const struct sy_state_edit *edits, size_t n,
                    const struct sy_actor *who, bool wait, sy_fleet_done_cb done, void *arg,
                    char *err, size_t errlen)
{
    return sy_fleet_change_ramp(f, edits, n, NULL, false, NULL, who, wait, done, arg, err, errlen);
}

int sy_fleet_change_ramp(struct sy_fleet *f, const struct sy_state_edit *edits, size_t n,
                         const struct sy_ramp *ramp, bool begins, const char *step_cmd,
                         const struct sy_actor *who, bool wait, sy_fleet_done_cb done, void *arg,
                         char *err, size_t errlen)
{
    int rc = n || !ramp ? sy_state_check(f->st, edits, n, err, errlen) : 0;
    if (rc)
        return rc;
    if (!f->synced) {
        snprintf(err, errlen,
                 "etcd is unreachable (%s): this replica has not read the fleet state yet; "
                 "nothing was changed; `--local` changes this replica only",
                 f->last_error[0] ? f->last_error : "not answered yet");
        f->n_refused++;
        return SY_ERR_AGAIN;
    }
    struct change *c = sy_xcalloc(1, sizeof(*c));
    c->f = f;
    c->edits = sy_xcalloc(n, sizeof(*c->edits));
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        c->edits[i] = edits[i];
        c->edits[i].app = sy_xstrdup(edits[i].app);
        struct sy_route_weight *w =
            sy_xcalloc(edits[i].n_weights ? edits[i].n_weights : 1, sizeof(*w));
        for (size_t k = 0; k < edits[i].n_weights; k++) {
            w[k].cluster = sy_xstrdup(edits[i].weights[k].cluster);
            w[k].weight = edits[i].weights[k].weight;
        }
        c->edits[i].weights = w;
    }
    if (ramp) {
        c->has_ramp = true;
        c->ramp_begins = begins;
        c->ramp = *ramp;
        c->ramp.app = sy_xstrdup(ramp->app);
        c->ramp.cluster = sy_xstrdup(ramp->cluster);
        c->ramp.why = ramp->why ? sy_xstrdup(ramp->why) : NULL;
        c->ramp.command = NULL;
        c->step_cmd = step_cmd ? sy_xstrdup(step_cmd) : NULL;
    }
    c->who = *who;
    c->who.command = sy_xstrdup(who->command ? who->command : "");
    c->who.instance = sy_xstrdup(f->instance);
    c->who.local = false;
    c->wait = wait;
    c->done = done;
    c->arg = arg;
    c->start_ms = sy_now_ms();
    c->deadline = evtimer_new(f->base, deadline_cb, c);
    c->next = f->changes;
    if (f->changes)
        f->changes->prev = c;
    f->changes = c;
    /* The transaction's deadline is the etcd client's (a transaction in flight may commit:
     * only etcd's answer says); fleet.wait bounds the catching up and the confirmations. */
    send_txn(c);
    return 0;
}

/* -- life -------------------------------------------------------------------------------------- */

struct sy_fleet *sy_fleet_new(struct event_base *base, struct sy_state *st, const char *version,
                              SSL_CTX *ssl)
{
    struct sy_config *cfg = (struct sy_config *)sy_route_table_config(sy_state_table(st));
    const struct sy_fleet_spec *spec = &cfg->fleet;
    struct sy_fleet *f = sy_xcalloc(1, sizeof(*f));
    f->base = base;
    f->st = st;
    f->cfg = sy_config_acquire(cfg);
    f->spec = spec;
    char host[256] = "";
    if (!spec->instance && gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "pid-%d", (int)getpid());
    f->instance = sy_xstrdup(spec->instance ? spec->instance : host);
    f->version = sy_xstrdup(version);
    f->apps_prefix = xprintf("%s%s", spec->prefix, APPS_DIR);
    f->members_prefix = xprintf("%s%s", spec->prefix, MEMBERS_DIR);
    f->prefix_len = strlen(spec->prefix);
    f->n_slots = 64;
    f->slots = sy_xcalloc(f->n_slots, sizeof(*f->slots));
    struct sy_etcd_endpoint *eps = sy_xcalloc(spec->n_endpoints, sizeof(*eps));
    for (size_t i = 0; i < spec->n_endpoints; i++) {
        eps[i].addr = spec->endpoints[i].addr;
        eps[i].addrlen = spec->endpoints[i].addrlen;
        eps[i].host = spec->endpoints[i].host;
        eps[i].tls = spec->endpoints[i].tls;
    }
    struct sy_etcd_opts o = {eps, spec->n_endpoints, ssl, spec->tls.verify, spec->timeout_ms};
    f->etcd = sy_etcd_new(base, &o);
    free(eps);
    f->retry_ev = evtimer_new(base, retry_cb, f);
    f->keepalive_ev = event_new(base, -1, EV_PERSIST, keepalive_cb, f);
    uint64_t ka = spec->lease_ttl_ms / 3;
    struct timeval tv = {(time_t)(ka / 1000), (suseconds_t)(ka % 1000) * 1000};
    evtimer_add(f->keepalive_ev, &tv);
    /* The journal's fleet state (a cache from an earlier run) serves until etcd answers. */
    struct sy_journal *j = sy_state_journal(st);
    f->applied = j ? sy_journal_fleet_rev(j) : 0;
    f->ready = f->applied > 0;
    snprintf(f->last_error, sizeof(f->last_error), "not answered yet");
    f->since_ms = unix_ms();
    sy_log(SY_LOG_INFO, "fleet",
           "instance %s, prefix %s, %zu etcd endpoint%s; cached fleet state: %s", f->instance,
           spec->prefix, spec->n_endpoints, spec->n_endpoints == 1 ? "" : "s",
           f->applied ? "yes" : "none (not ready until etcd answers)");
    start_sync(f);
    return f;
}

void sy_fleet_free(struct sy_fleet *f)
{
    if (!f)
        return;
    while (f->changes) {
        struct change *c = f->changes;
        c->done = NULL;
        change_free(c);
    }
    sy_etcd_free(f->etcd); /* cancels every call and the watch */
    free(f->leader);
    event_free(f->retry_ev);
    event_free(f->keepalive_ev);
    for (size_t i = 0; i < f->n_slots; i++)
        for (struct app_rec *r = f->slots[i], *next; r; r = next) {
            next = r->next;
            free(r->app);
            free(r);
        }
    free(f->slots);
    members_clear(f);
    free(f->members);
    free(f->view);
    free(f->instance);
    free(f->version);
    free(f->apps_prefix);
    free(f->members_prefix);
    sy_config_free(f->cfg); /* drops our reference */
    free(f);
}

void sy_fleet_resync(struct sy_fleet *f)
{
    if (f->synced && !f->sync_call)
        start_sync(f);
}

const char *sy_fleet_instance(const struct sy_fleet *f)
{
    return f->instance;
}

bool sy_fleet_is_ready(const struct sy_fleet *f)
{
    return f->ready;
}

bool sy_fleet_is_connected(const struct sy_fleet *f)
{
    return f->connected;
}

void sy_fleet_view(struct sy_fleet *f, struct sy_fleet_view *v)
{
    sy_xgrow((void **)&f->view, &f->cap_view, f->n_members + 1, sizeof(*f->view));
    struct sy_fleet_member *ms = f->view;
    for (size_t i = 0; i < f->n_members; i++) {
        const struct member *m = &f->members[i];
        ms[i] = (struct sy_fleet_member){m->instance,
                                         m->version,
                                         m->rev,
                                         m->generation,
                                         m->seen_ms,
                                         0,
                                         m->rev >= f->last_change};
    }
    *v = (struct sy_fleet_view){
        .instance = f->instance,
        .prefix = f->spec->prefix,
        .endpoint = f->endpoint[0] ? f->endpoint : NULL,
        .leader = f->leader,
        .connected = f->connected,
        .ready = f->ready,
        .rev = f->applied,
        .since_ms = f->since_ms,
        .last_error = f->connected ? NULL : f->last_error,
        .members = ms,
        .n_members = f->n_members,
        .changes = f->n_changes,
        .refused = f->n_refused,
        .resyncs = f->n_resyncs,
    };
}
