/* SPDX-License-Identifier: MIT */
/* The overrides journal. Each change is one line of JSON ending in a CRC-32 of the line, so
 * that damage is told from a crash: a record is written with one write(2) and fsynced before
 * the caller says `ok`, and a crash can only leave a last line without its newline (never
 * acknowledged: ignored and cut off). Anything else that does not read back stops the start,
 * unless the operator chose to discard the file: silently losing an emergency revert is the
 * one thing that must never happen. When the journal has grown, it is rewritten as one
 * snapshot record (temp file, fsync, rename, fsync of the directory) and the old file is kept
 * as PATH.old for `history`; the temporary file is created new (O_EXCL, O_NOFOLLOW) in a
 * directory that no other user can write (checked at open), and until the directory's fsync
 * has made the rename durable no further change is acknowledged. A record's sequence number
 * counts changes; a snapshot carries the number of the last change it includes. */
#include "switchyard/overrides.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "switchyard/json.h"

#define FORMAT_VERSION 1
#define MAX_FILE_BYTES (256u << 20)
#define CRC_SUFFIX_LEN 18 /* ,"crc":"xxxxxxxx"} */

/* -- the set ------------------------------------------------------------------------------- */

void sy_overrides_init(struct sy_overrides *s)
{
    memset(s, 0, sizeof(*s));
}

static void override_dispose(struct sy_override *o)
{
    for (size_t i = 0; i < o->n_weights; i++)
        free((char *)o->weights[i].cluster);
    free(o->weights);
    free(o->app);
    free(o->command);
    free(o->instance);
}

void sy_overrides_dispose(struct sy_overrides *s)
{
    for (size_t i = 0; i < s->n; i++)
        override_dispose(&s->v[i]);
    free(s->v);
    sy_overrides_init(s);
}

/* Copies the non-zero weights, names included. */
static size_t copy_weights(struct sy_route_weight **out, const struct sy_route_weight *w, size_t n)
{
    *out = sy_xcalloc(n ? n : 1, sizeof(**out));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i].weight == 0)
            continue;
        (*out)[k].cluster = sy_xstrdup(w[i].cluster);
        (*out)[k].weight = w[i].weight;
        k++;
    }
    return k;
}

static void override_copy(struct sy_override *dst, const struct sy_override *src)
{
    *dst = *src;
    dst->app = sy_xstrdup(src->app);
    dst->command = sy_xstrdup(src->command ? src->command : "");
    dst->instance = src->instance ? sy_xstrdup(src->instance) : NULL;
    dst->n_weights = copy_weights(&dst->weights, src->weights, src->n_weights);
}

void sy_overrides_copy(struct sy_overrides *dst, const struct sy_overrides *src)
{
    sy_overrides_dispose(dst);
    if (src->n == 0)
        return;
    dst->v = sy_xcalloc(src->n, sizeof(*dst->v));
    dst->cap = src->n;
    for (size_t i = 0; i < src->n; i++)
        override_copy(&dst->v[i], &src->v[i]);
    dst->n = src->n;
}

static struct sy_override *find(const struct sy_overrides *s, const char *app)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].app, app) == 0)
            return &s->v[i];
    return NULL;
}

const struct sy_override *sy_overrides_find(const struct sy_overrides *s, const char *app)
{
    return find(s, app);
}

struct sy_route_override *sy_overrides_view(const struct sy_overrides *s)
{
    if (s->n == 0)
        return NULL;
    struct sy_route_override *v = sy_xcalloc(s->n, sizeof(*v));
    for (size_t i = 0; i < s->n; i++) {
        v[i].app = s->v[i].app;
        v[i].weights = s->v[i].weights;
        v[i].n_weights = s->v[i].n_weights;
    }
    return v;
}

static uint64_t app_hash(const char *app)
{
    return sy_fnv1a(SY_FNV1A_INIT, app, strlen(app));
}

/* Slot of `app` in `slots` (entries are index + 1 into s->v, 0 empty; mask + 1 slots): where it
 * is, or the empty one where it goes. */
static size_t app_slot(const struct sy_overrides *s, const size_t *slots, size_t mask,
                       const char *app)
{
    size_t k = app_hash(app) & mask;
    while (slots[k] && strcmp(s->v[slots[k] - 1].app, app) != 0)
        k = (k + 1) & mask;
    return k;
}

void sy_overrides_apply(struct sy_overrides *s, const struct sy_override_change *ch, size_t n,
                        uint64_t seq, const struct sy_actor *who)
{
    /* The set's apps by hash for this change: `revert --all` names every app, and a search per
     * app was quadratic. A release only marks its entry (app NULL); the set is compacted at the
     * end, in order, so that a later set of the same app is appended as before. */
    size_t mask = 15;
    while (mask + 1 < 2 * (s->n + n))
        mask = 2 * mask + 1;
    size_t *slots = sy_xcalloc(mask + 1, sizeof(*slots));
    for (size_t i = 0; i < s->n; i++)
        slots[app_slot(s, slots, mask, s->v[i].app)] = i + 1;
    bool released = false;
    for (size_t i = 0; i < n; i++) {
        size_t k = app_slot(s, slots, mask, ch[i].app);
        struct sy_override *o = slots[k] ? &s->v[slots[k] - 1] : NULL;
        if (ch[i].release) {
            if (o) {
                override_dispose(o);
                o->app = NULL;
                slots[k] = 0;
                /* Open addressing: put back what followed in the run, so it stays found. */
                for (size_t j = (k + 1) & mask; slots[j]; j = (j + 1) & mask) {
                    size_t v = slots[j];
                    slots[j] = 0;
                    slots[app_slot(s, slots, mask, s->v[v - 1].app)] = v;
                }
                released = true;
            }
            continue;
        }
        if (o) {
            override_dispose(o);
        } else {
            sy_xgrow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v));
            o = &s->v[s->n++];
            slots[k] = s->n;
        }
        memset(o, 0, sizeof(*o));
        o->app = sy_xstrdup(ch[i].app);
        o->n_weights = copy_weights(&o->weights, ch[i].weights, ch[i].n_weights);
        o->seq = seq;
        o->time_ms = who->time_ms;
        o->uid = who->uid;
        o->pid = who->pid;
        o->command = sy_xstrdup(who->command ? who->command : "");
        o->rev = who->rev;
        o->instance = who->instance ? sy_xstrdup(who->instance) : NULL;
        o->local = who->local;
    }
    free(slots);
    if (released) {
        size_t k = 0;
        for (size_t i = 0; i < s->n; i++)
            if (s->v[i].app)
                s->v[k++] = s->v[i];
        s->n = k;
    }
}

/* -- the guard switch ------------------------------------------------------------------------- */

/* What a `guard` record (numbered `seq`, by `who`) does to the switch. */
static void guard_apply(struct sy_guard_pause *g, bool paused, uint64_t seq,
                        const struct sy_actor *who)
{
    free(g->command);
    g->paused = paused;
    g->seq = seq;
    g->time_ms = who->time_ms;
    g->uid = who->uid;
    g->pid = who->pid;
    g->command = sy_xstrdup(who->command ? who->command : "");
}

/* -- ramps ----------------------------------------------------------------------------------- */

const char *sy_ramp_state_name(enum sy_ramp_state s)
{
    static const char *const names[] = {"running", "paused", "done", "aborted", "reverted"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "aborted";
}

static bool ramp_state_of(const char *s, enum sy_ramp_state *out)
{
    for (int i = SY_RAMP_RUNNING; i <= SY_RAMP_REVERTED; i++)
        if (s && strcmp(s, sy_ramp_state_name((enum sy_ramp_state)i)) == 0) {
            *out = (enum sy_ramp_state)i;
            return true;
        }
    return false;
}

void sy_ramp_dispose(struct sy_ramp *r)
{
    free(r->app);
    free(r->cluster);
    free(r->why);
    free(r->command);
    memset(r, 0, sizeof(*r));
}

void sy_ramps_dispose(struct sy_ramps *s)
{
    for (size_t i = 0; i < s->n; i++)
        sy_ramp_dispose(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

const struct sy_ramp *sy_ramps_find(const struct sy_ramps *s, const char *app)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].app, app) == 0)
            return &s->v[i];
    return NULL;
}

/* What a `ramp` record (numbered `seq`, by `who`) does to the set: a running or paused ramp
 * is put in (replacing the app's), an ended one taken out. */
static void ramps_apply(struct sy_ramps *s, const struct sy_ramp *r, uint64_t seq,
                        const struct sy_actor *who)
{
    size_t i = 0;
    while (i < s->n && strcmp(s->v[i].app, r->app) != 0)
        i++;
    bool keep = r->state == SY_RAMP_RUNNING || r->state == SY_RAMP_PAUSED;
    if (!keep) {
        if (i < s->n) {
            sy_ramp_dispose(&s->v[i]);
            memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
            s->n--;
        }
        return;
    }
    if (i == s->n) {
        sy_xgrow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v));
        memset(&s->v[s->n++], 0, sizeof(*s->v));
    } else {
        sy_ramp_dispose(&s->v[i]);
    }
    struct sy_ramp *e = &s->v[i];
    *e = *r;
    e->app = sy_xstrdup(r->app);
    e->cluster = sy_xstrdup(r->cluster);
    e->why = r->why ? sy_xstrdup(r->why) : NULL;
    e->start_seq = r->start_seq ? r->start_seq : seq;
    e->seq = seq;
    e->time_ms = who->time_ms;
    e->uid = who->uid;
    e->pid = who->pid;
    e->command = sy_xstrdup(who->command ? who->command : "");
}

/* -- maintenance ------------------------------------------------------------------------------ */

static void maint_dispose(struct sy_maint *m)
{
    free(m->app);
    free(m->message);
    free(m->command);
    memset(m, 0, sizeof(*m));
}

static void maint_copy(struct sy_maint *dst, const struct sy_maint *src)
{
    *dst = *src;
    dst->app = sy_xstrdup(src->app);
    dst->message = src->message ? sy_xstrdup(src->message) : NULL;
    dst->command = sy_xstrdup(src->command ? src->command : "");
}

void sy_maints_dispose(struct sy_maints *s)
{
    for (size_t i = 0; i < s->n; i++)
        maint_dispose(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

void sy_maints_copy(struct sy_maints *dst, const struct sy_maints *src)
{
    sy_maints_dispose(dst);
    if (src->n == 0)
        return;
    dst->v = sy_xcalloc(src->n, sizeof(*dst->v));
    dst->cap = src->n;
    for (size_t i = 0; i < src->n; i++)
        maint_copy(&dst->v[i], &src->v[i]);
    dst->n = src->n;
}

const struct sy_maint *sy_maints_find(const struct sy_maints *s, const char *app)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].app, app) == 0)
            return &s->v[i];
    return NULL;
}

void sy_maints_apply(struct sy_maints *s, const struct sy_maint *m, uint64_t seq,
                     const struct sy_actor *who)
{
    /* Few apps are ever in maintenance at once: a scan is enough. */
    size_t i = 0;
    while (i < s->n && strcmp(s->v[i].app, m->app) != 0)
        i++;
    if (!m->on) {
        if (i < s->n) {
            maint_dispose(&s->v[i]);
            memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
            s->n--;
        }
        return;
    }
    uint64_t since = who->time_ms;
    if (i < s->n) {
        since = s->v[i].since_ms; /* already in: a repeated `on` updates, keeps its start */
        maint_dispose(&s->v[i]);
    } else {
        sy_xgrow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v));
        i = s->n++;
    }
    struct sy_maint *e = &s->v[i];
    e->app = sy_xstrdup(m->app);
    e->on = true;
    e->retry_after = m->retry_after;
    e->message = m->message ? sy_xstrdup(m->message) : NULL;
    e->since_ms = since;
    e->seq = seq;
    e->time_ms = who->time_ms;
    e->uid = who->uid;
    e->pid = who->pid;
    e->command = sy_xstrdup(who->command ? who->command : "");
}

/* CRC-32 (IEEE 802.3, reflected, as zlib computes it), a bit at a time: records are small,
 * and no table means nothing to initialise across threads. */
uint32_t sy_journal_crc32(const char *p, size_t len)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c ^= (unsigned char)p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

/* -- writing records ----------------------------------------------------------------------- */

static void put_weights(struct sy_jw *b, const char *key, const struct sy_route_weight *w, size_t n,
                        bool skip_zero)
{
    sy_jw_begin_object(b, key);
    for (size_t i = 0; i < n; i++)
        if (!skip_zero || w[i].weight != 0)
            sy_jw_uint(b, w[i].cluster, w[i].weight);
    sy_jw_end_object(b);
}

/* Who made a change and when: the members every record and snapshot entry carries. */
static void put_actor(struct sy_jw *b, uint64_t seq, uint64_t time_ms, uint32_t uid, int32_t pid,
                      const char *command)
{
    sy_jw_uint(b, "seq", seq);
    sy_jw_uint(b, "time", time_ms);
    sy_jw_uint(b, "uid", uid);
    sy_jw_int(b, "pid", pid < 0 ? 0 : pid);
    sy_jw_str(b, "cmd", command ? command : "");
}

/* Where a change came from in a fleet: members written only when set, so that a journal of a
 * daemon without `fleet:` reads as before. */
static void put_origin(struct sy_jw *b, uint64_t rev, const char *instance, bool local)
{
    if (rev)
        sy_jw_uint(b, "rev", rev);
    if (instance)
        sy_jw_str(b, "instance", instance);
    if (local)
        sy_jw_bool(b, "local", true);
}

static void put_head(struct sy_jw *b, const char *type, uint64_t seq, uint64_t time_ms,
                     uint32_t uid, int32_t pid, const char *command)
{
    sy_jw_begin_object(b, NULL);
    sy_jw_uint(b, "v", FORMAT_VERSION);
    sy_jw_str(b, "type", type);
    put_actor(b, seq, time_ms, uid, pid, command);
}

/* The checksum of everything before it, the record's last member, and the newline. */
static void put_crc(struct sy_jw *b)
{
    char hex[16];
    snprintf(hex, sizeof(hex), "%08" PRIx32, sy_journal_crc32(b->p, b->len));
    sy_jw_str(b, "crc", hex);
    sy_jw_end_object(b);
    sy_jw_append(b, "\n", 1);
}

static void put_change_record(struct sy_jw *b, uint64_t seq, const struct sy_actor *who,
                              const struct sy_override_change *ch, size_t n)
{
    put_head(b, "change", seq, who->time_ms, who->uid, who->pid, who->command);
    put_origin(b, who->rev, who->instance, who->local);
    sy_jw_begin_array(b, "changes");
    for (size_t i = 0; i < n; i++) {
        sy_jw_begin_object(b, NULL);
        sy_jw_str(b, "app", ch[i].app);
        if (ch[i].release)
            sy_jw_null(b, "override");
        else
            put_weights(b, "override", ch[i].weights, ch[i].n_weights, true);
        put_weights(b, "from", ch[i].from, ch[i].n_from, false);
        put_weights(b, "to", ch[i].to, ch[i].n_to, false);
        sy_jw_end_object(b);
    }
    sy_jw_end_array(b);
    put_crc(b);
}

static void put_maint_record(struct sy_jw *b, uint64_t seq, const struct sy_actor *who,
                             const struct sy_maint *m)
{
    put_head(b, "maintenance", seq, who->time_ms, who->uid, who->pid, who->command);
    sy_jw_str(b, "app", m->app);
    sy_jw_bool(b, "on", m->on);
    sy_jw_uint(b, "retry_after", m->retry_after);
    sy_jw_str(b, "message", m->message);
    put_crc(b);
}

static void put_guard_record(struct sy_jw *b, uint64_t seq, const struct sy_actor *who, bool paused)
{
    put_head(b, "guard", seq, who->time_ms, who->uid, who->pid, who->command);
    sy_jw_bool(b, "paused", paused);
    put_crc(b);
}

/* A ramp's plan and state (in a record, or a snapshot's entry). */
static void put_ramp_fields(struct sy_jw *b, const struct sy_ramp *r, uint64_t start_seq)
{
    sy_jw_str(b, "app", r->app);
    sy_jw_str(b, "cluster", r->cluster);
    sy_jw_begin_array(b, "steps");
    for (size_t i = 0; i < r->n_steps; i++)
        sy_jw_uint(b, NULL, r->steps[i]);
    sy_jw_end_array(b);
    sy_jw_uint(b, "every_ms", r->every_ms);
    sy_jw_str(b, "state", sy_ramp_state_name(r->state));
    sy_jw_uint(b, "start_seq", start_seq);
    sy_jw_uint(b, "taken", r->taken);
    sy_jw_str(b, "why", r->why);
}

void sy_ramp_json(struct sy_jw *b, const struct sy_ramp *r)
{
    put_ramp_fields(b, r, r->start_seq);
}

static void put_ramp_record(struct sy_jw *b, uint64_t seq, const struct sy_actor *who,
                            const struct sy_ramp *r)
{
    put_head(b, "ramp", seq, who->time_ms, who->uid, who->pid, who->command);
    put_ramp_fields(b, r, r->start_seq ? r->start_seq : seq);
    put_crc(b);
}

/* The apps in maintenance, in a snapshot record. */
static void put_maints(struct sy_jw *b, const struct sy_maints *s)
{
    sy_jw_begin_array(b, "maintenance");
    for (size_t i = 0; i < s->n; i++) {
        const struct sy_maint *m = &s->v[i];
        sy_jw_begin_object(b, NULL);
        sy_jw_str(b, "app", m->app);
        sy_jw_uint(b, "retry_after", m->retry_after);
        sy_jw_str(b, "message", m->message);
        sy_jw_uint(b, "since", m->since_ms);
        put_actor(b, m->seq, m->time_ms, m->uid, m->pid, m->command);
        sy_jw_end_object(b);
    }
    sy_jw_end_array(b);
}

static void put_compact_record(struct sy_jw *b, uint64_t seq, uint64_t fleet_rev,
                               const struct sy_overrides *s, const struct sy_maints *maints,
                               const struct sy_guard_pause *gp, const struct sy_ramps *ramps)
{
    put_head(b, "compact", seq, (uint64_t)time(NULL) * 1000, (uint32_t)geteuid(), (int32_t)getpid(),
             "compact");
    put_origin(b, fleet_rev, NULL, false);
    sy_jw_begin_array(b, "set");
    for (size_t i = 0; i < s->n; i++) {
        const struct sy_override *o = &s->v[i];
        sy_jw_begin_object(b, NULL);
        sy_jw_str(b, "app", o->app);
        put_weights(b, "override", o->weights, o->n_weights, true);
        put_actor(b, o->seq, o->time_ms, o->uid, o->pid, o->command);
        put_origin(b, o->rev, o->instance, o->local);
        sy_jw_end_object(b);
    }
    sy_jw_end_array(b);
    if (maints && maints->n)
        put_maints(b, maints);
    if (gp && gp->paused) { /* absent: the guards run (what every older snapshot says) */
        sy_jw_begin_object(b, "guard_paused");
        put_actor(b, gp->seq, gp->time_ms, gp->uid, gp->pid, gp->command);
        sy_jw_end_object(b);
    }
    if (ramps && ramps->n) {
        sy_jw_begin_array(b, "ramps");
        for (size_t i = 0; i < ramps->n; i++) {
            const struct sy_ramp *r = &ramps->v[i];
            sy_jw_begin_object(b, NULL);
            put_ramp_fields(b, r, r->start_seq);
            put_actor(b, r->seq, r->time_ms, r->uid, r->pid, r->command);
            sy_jw_end_object(b);
        }
        sy_jw_end_array(b);
    }
    put_crc(b);
}

/* -- reading records (the JSON reader of switchyard/json.h) ---------------------------------- */

static bool get_uint(const struct sy_jv *obj, const char *key, uint64_t max, uint64_t *out)
{
    const struct sy_jv *v = sy_jv_get(obj, key);
    if (sy_jv_type(v) != SY_JV_UINT || sy_jv_uint(v, 0) > max)
        return false;
    *out = sy_jv_uint(v, 0);
    return true;
}

static const char *get_str(const struct sy_jv *obj, const char *key)
{
    return sy_jv_str(sy_jv_get(obj, key));
}

/* A cluster name as the config allows it: what a record names must be safe to show. */
static bool is_name(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* {"cluster": N, ...} into owned weights. */
static bool get_weights(const struct sy_jv *v, struct sy_route_weight **out, size_t *n,
                        const char **why)
{
    if (sy_jv_type(v) != SY_JV_OBJ) {
        *why = "weights must be an object";
        return false;
    }
    size_t len = sy_jv_len(v);
    *out = sy_xcalloc(len ? len : 1, sizeof(**out));
    *n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *key = sy_jv_key_at(v, i);
        const struct sy_jv *u = sy_jv_at(v, i);
        if (!is_name(key, 63) || sy_jv_type(u) != SY_JV_UINT || sy_jv_uint(u, 0) > 100) {
            *why = "a weight must be a cluster name and an integer 0..100";
            return false;
        }
        (*out)[i].cluster = sy_xstrdup(key);
        (*out)[i].weight = (unsigned)sy_jv_uint(u, 0);
        (*n)++;
    }
    return true;
}

static void free_weights(struct sy_route_weight *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)w[i].cluster);
    free(w);
}

void sy_journal_record_dispose(struct sy_journal_record *r)
{
    for (size_t i = 0; i < r->n_changes; i++) {
        struct sy_override_change *c = &r->changes[i];
        free((char *)c->app);
        free_weights((struct sy_route_weight *)c->weights, c->n_weights);
        free_weights((struct sy_route_weight *)c->from, c->n_from);
        free_weights((struct sy_route_weight *)c->to, c->n_to);
    }
    free(r->changes);
    free(r->command);
    free(r->instance);
    sy_overrides_dispose(&r->set);
    maint_dispose(&r->maint);
    sy_maints_dispose(&r->maints);
    free(r->guard_pause.command);
    sy_ramp_dispose(&r->ramp);
    sy_ramps_dispose(&r->ramps);
    memset(r, 0, sizeof(*r));
}

static bool read_head(const struct sy_jv *o, uint64_t *seq, uint64_t *time_ms, uint32_t *uid,
                      int32_t *pid, char **cmd, const char **why)
{
    uint64_t u, p;
    const char *c = get_str(o, "cmd");
    if (!get_uint(o, "seq", UINT64_MAX, seq) || !get_uint(o, "time", UINT64_MAX, time_ms) ||
        !get_uint(o, "uid", UINT32_MAX, &u) || !get_uint(o, "pid", INT32_MAX, &p) || !c) {
        *why = "missing or bad seq, time, uid, pid or cmd";
        return false;
    }
    *uid = (uint32_t)u;
    *pid = (int32_t)p;
    *cmd = sy_xstrdup(c);
    return true;
}

/* The optional origin members (put_origin). */
static bool read_origin(const struct sy_jv *o, uint64_t *rev, char **instance, bool *local,
                        const char **why)
{
    const struct sy_jv *rv = sy_jv_get(o, "rev"), *in = sy_jv_get(o, "instance"),
                       *lo = sy_jv_get(o, "local");
    if ((rv && sy_jv_type(rv) != SY_JV_UINT) ||
        (in && (!sy_jv_str(in) || !is_name(sy_jv_str(in), 255))) ||
        (lo && sy_jv_type(lo) != SY_JV_BOOL)) {
        *why = "bad rev, instance or local";
        return false;
    }
    *rev = sy_jv_uint(rv, 0);
    *instance = in ? sy_xstrdup(sy_jv_str(in)) : NULL;
    *local = sy_jv_bool(lo);
    return true;
}

/* A message as `maintenance --message` takes it: printable ASCII, at most
 * SY_MAINT_MESSAGE_MAX bytes. */
static bool is_message(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > SY_MAINT_MESSAGE_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

/* The maintenance fields of a record or of a snapshot entry: app, retry_after, message. */
static bool read_maint_fields(const struct sy_jv *o, struct sy_maint *m, const char **why)
{
    const char *app = get_str(o, "app");
    const struct sy_jv *msg = sy_jv_get(o, "message");
    uint64_t ra;
    if (!app || !is_name(app, 255) || !get_uint(o, "retry_after", UINT32_MAX, &ra) || !msg ||
        (sy_jv_type(msg) != SY_JV_NULL && (!sy_jv_str(msg) || !is_message(sy_jv_str(msg))))) {
        *why = "a maintenance entry needs an app, retry_after and message";
        return false;
    }
    m->app = sy_xstrdup(app);
    m->retry_after = (unsigned)ra;
    m->message = sy_jv_str(msg) ? sy_xstrdup(sy_jv_str(msg)) : NULL;
    return true;
}

/* `{"type":"maintenance",...,"app":A,"on":BOOL,"retry_after":S,"message":M|null}` */
static bool read_maint_record(const struct sy_jv *root, struct sy_journal_record *r,
                              const char **why)
{
    r->maintenance = true;
    const struct sy_jv *on = sy_jv_get(root, "on");
    if (sy_jv_type(on) != SY_JV_BOOL) {
        *why = "a maintenance record needs 'on'";
        return false;
    }
    r->maint.on = sy_jv_bool(on);
    if (!read_maint_fields(root, &r->maint, why))
        return false;
    return true;
}

/* `{"type":"guard",...,"paused":BOOL}` */
static bool read_guard_record(const struct sy_jv *root, struct sy_journal_record *r,
                              const char **why)
{
    r->guard = true;
    const struct sy_jv *p = sy_jv_get(root, "paused");
    if (sy_jv_type(p) != SY_JV_BOOL) {
        *why = "a guard record needs 'paused'";
        return false;
    }
    r->guard_pause.paused = sy_jv_bool(p);
    return true;
}

/* A ramp's fields (a record's, or a snapshot entry's). */
static bool read_ramp_fields(const struct sy_jv *o, struct sy_ramp *r, const char **why)
{
    const char *app = get_str(o, "app"), *cluster = get_str(o, "cluster");
    const struct sy_jv *steps = sy_jv_get(o, "steps"), *w = sy_jv_get(o, "why");
    uint64_t taken = 0;
    *why = "a ramp needs app, cluster, steps, every_ms, state, start_seq, taken and why";
    if (!app || !is_name(app, 255) || !cluster || !is_name(cluster, 63) ||
        sy_jv_type(steps) != SY_JV_ARR || sy_jv_len(steps) == 0 ||
        sy_jv_len(steps) > SY_RAMP_MAX_STEPS ||
        !get_uint(o, "every_ms", UINT32_MAX, &r->every_ms) ||
        !ramp_state_of(get_str(o, "state"), &r->state) ||
        !get_uint(o, "start_seq", UINT64_MAX, &r->start_seq) ||
        !get_uint(o, "taken", SY_RAMP_MAX_STEPS, &taken) || !w ||
        (sy_jv_type(w) != SY_JV_NULL && !sy_jv_str(w)))
        return false;
    for (size_t i = 0; i < sy_jv_len(steps); i++) {
        const struct sy_jv *v = sy_jv_at(steps, i);
        uint64_t x = sy_jv_uint(v, 0);
        if (sy_jv_type(v) != SY_JV_UINT || x == 0 || x > 100 || (i && x <= r->steps[i - 1])) {
            *why = "a ramp's steps must be 1..100, strictly increasing";
            return false;
        }
        r->steps[i] = (unsigned)x;
    }
    r->n_steps = sy_jv_len(steps);
    if (taken > r->n_steps) {
        *why = "a ramp cannot have taken more steps than it has";
        return false;
    }
    r->taken = (unsigned)taken;
    r->app = sy_xstrdup(app);
    r->cluster = sy_xstrdup(cluster);
    r->why = sy_jv_str(w) ? sy_xstrdup(sy_jv_str(w)) : NULL;
    *why = NULL;
    return true;
}

/* `{"type":"ramp",...,"app":A,"cluster":C,"steps":[..],"every_ms":N,"state":S,...}` */
bool sy_ramp_from_json(const struct sy_jv *o, struct sy_ramp *r, const char **why)
{
    memset(r, 0, sizeof(*r));
    if (read_ramp_fields(o, r, why))
        return true;
    sy_ramp_dispose(r);
    return false;
}

static bool read_ramp_record(const struct sy_jv *root, struct sy_journal_record *r,
                             const char **why)
{
    r->is_ramp = true;
    return read_ramp_fields(root, &r->ramp, why);
}

/* A snapshot's `ramps` (absent when none). */
static bool read_snapshot_ramps(const struct sy_jv *root, struct sy_journal_record *r,
                                const char **why)
{
    const struct sy_jv *l = r->compact ? sy_jv_get(root, "ramps") : NULL;
    if (l && sy_jv_type(l) != SY_JV_ARR) {
        *why = "a snapshot's 'ramps' must be a list";
        return false;
    }
    for (size_t i = 0; i < sy_jv_len(l); i++) {
        const struct sy_jv *e = sy_jv_at(l, i);
        struct sy_ramp x = {0};
        bool ok = sy_jv_type(e) == SY_JV_OBJ && read_ramp_fields(e, &x, why) &&
                  read_head(e, &x.seq, &x.time_ms, &x.uid, &x.pid, &x.command, why);
        if (ok && sy_ramps_find(&r->ramps, x.app)) {
            *why = "a snapshot's ramp is repeated";
            ok = false;
        }
        sy_xgrow((void **)&r->ramps.v, &r->ramps.cap, r->ramps.n + 1, sizeof(*r->ramps.v));
        r->ramps.v[r->ramps.n++] = x; /* disposed with the record, whole or not */
        if (!ok) {
            if (!*why)
                *why = "a snapshot's ramp needs its plan, seq, time, uid, pid and cmd";
            return false;
        }
    }
    return true;
}

/* A snapshot's `guard_paused` (absent: the guards run). */
static bool read_snapshot_guard(const struct sy_jv *root, struct sy_journal_record *r,
                                const char **why)
{
    const struct sy_jv *g = r->compact ? sy_jv_get(root, "guard_paused") : NULL;
    if (!g)
        return true;
    struct sy_guard_pause *gp = &r->guard_pause;
    if (sy_jv_type(g) != SY_JV_OBJ ||
        !read_head(g, &gp->seq, &gp->time_ms, &gp->uid, &gp->pid, &gp->command, why)) {
        *why = "a snapshot's 'guard_paused' needs seq, time, uid, pid and cmd";
        return false;
    }
    gp->paused = true;
    return true;
}

/* The entries of a change (`changes`) or of a snapshot (`set`). */
static bool read_entries(const struct sy_jv *root, struct sy_journal_record *r, const char **why)
{
    const struct sy_jv *list = sy_jv_get(root, r->compact ? "set" : "changes");
    if (sy_jv_type(list) != SY_JV_ARR) {
        *why = r->compact ? "a snapshot needs a 'set' list" : "a change needs a 'changes' list";
        return false;
    }
    if (!r->compact) {
        if (sy_jv_len(list) == 0) {
            *why = "a change must change something";
            return false;
        }
        r->changes = sy_xcalloc(sy_jv_len(list), sizeof(*r->changes));
    }
    for (size_t i = 0; i < sy_jv_len(list); i++) {
        const struct sy_jv *e = sy_jv_at(list, i);
        const char *app = get_str(e, "app");
        if (!app || !is_name(app, 255)) {
            *why = "an entry needs an app name";
            return false;
        }
        const struct sy_jv *ov = sy_jv_get(e, "override");
        if (!ov) {
            *why = "an entry needs an 'override'";
            return false;
        }
        if (r->compact) {
            if (sy_jv_type(ov) == SY_JV_NULL || find(&r->set, app)) {
                *why = "a snapshot entry is repeated or has no override weights";
                return false;
            }
            struct sy_override o = {0};
            bool ok = get_weights(ov, &o.weights, &o.n_weights, why) &&
                      read_head(e, &o.seq, &o.time_ms, &o.uid, &o.pid, &o.command, why) &&
                      read_origin(e, &o.rev, &o.instance, &o.local, why);
            o.app = sy_xstrdup(app);
            sy_xgrow((void **)&r->set.v, &r->set.cap, r->set.n + 1, sizeof(*r->set.v));
            r->set.v[r->set.n++] = o; /* disposed with the record, whole or not */
            if (!ok)
                return false;
            continue;
        }
        struct sy_override_change *c = &r->changes[r->n_changes++];
        c->app = sy_xstrdup(app);
        struct sy_route_weight *w = NULL;
        if (sy_jv_type(ov) == SY_JV_NULL) {
            c->release = true;
        } else {
            bool ok = get_weights(ov, &w, &c->n_weights, why);
            c->weights = w;
            if (!ok)
                return false;
        }
        bool ok = get_weights(sy_jv_get(e, "from"), &w, &c->n_from, why);
        c->from = w;
        if (!ok)
            return false;
        ok = get_weights(sy_jv_get(e, "to"), &w, &c->n_to, why);
        c->to = w;
        if (!ok)
            return false;
    }
    return true;
}

/* A snapshot's apps in maintenance (`maintenance`, absent when none). */
static bool read_snapshot_maints(const struct sy_jv *root, struct sy_journal_record *r,
                                 const char **why)
{
    const struct sy_jv *ml = r->compact ? sy_jv_get(root, "maintenance") : NULL;
    if (ml && sy_jv_type(ml) != SY_JV_ARR) {
        *why = "a snapshot's 'maintenance' must be a list";
        return false;
    }
    for (size_t i = 0; i < sy_jv_len(ml); i++) {
        const struct sy_jv *e = sy_jv_at(ml, i);
        struct sy_maint m = {0};
        uint64_t since = 0;
        bool ok = sy_jv_type(e) == SY_JV_OBJ && read_maint_fields(e, &m, why) &&
                  get_uint(e, "since", UINT64_MAX, &since) &&
                  read_head(e, &m.seq, &m.time_ms, &m.uid, &m.pid, &m.command, why);
        if (ok && sy_maints_find(&r->maints, m.app)) {
            *why = "a snapshot's maintenance entry is repeated";
            ok = false;
        }
        m.on = true;
        m.since_ms = since;
        sy_xgrow((void **)&r->maints.v, &r->maints.cap, r->maints.n + 1, sizeof(*r->maints.v));
        r->maints.v[r->maints.n++] = m; /* disposed with the record, whole or not */
        if (!ok) {
            if (!*why)
                *why = "a maintenance entry needs since, seq, time, uid, pid and cmd";
            return false;
        }
    }
    return true;
}

static bool read_record(const struct sy_jv *root, struct sy_journal_record *r, const char **why)
{
    uint64_t v;
    if (sy_jv_type(root) != SY_JV_OBJ) {
        *why = "a record must be a JSON object";
        return false;
    }
    if (!get_uint(root, "v", UINT32_MAX, &v) || v != FORMAT_VERSION) {
        *why = "unknown record version (written by a newer switchyard?)";
        return false;
    }
    const char *type = get_str(root, "type");
    bool maint = type && strcmp(type, "maintenance") == 0;
    bool guard = type && strcmp(type, "guard") == 0;
    bool ramp = type && strcmp(type, "ramp") == 0;
    if (!type || (strcmp(type, "change") != 0 && strcmp(type, "compact") != 0 && !maint && !guard &&
                  !ramp)) {
        *why = "unknown record type";
        return false;
    }
    if (!read_head(root, &r->seq, &r->time_ms, &r->uid, &r->pid, &r->command, why) ||
        !read_origin(root, &r->rev, &r->instance, &r->local, why))
        return false;
    if (maint)
        return read_maint_record(root, r, why);
    if (guard)
        return read_guard_record(root, r, why);
    if (ramp)
        return read_ramp_record(root, r, why);
    r->compact = strcmp(type, "compact") == 0;
    return read_entries(root, r, why) && read_snapshot_maints(root, r, why) &&
           read_snapshot_guard(root, r, why) && read_snapshot_ramps(root, r, why);
}

int sy_journal_parse_line(const char *line, size_t len, struct sy_journal_record *r,
                          const char **why)
{
    memset(r, 0, sizeof(*r));
    *why = NULL;
    static const char suffix_head[] = ",\"crc\":\"";
    if (len < CRC_SUFFIX_LEN + 2 || line[len - 1] != '}' || line[len - 2] != '"' ||
        memcmp(line + len - CRC_SUFFIX_LEN, suffix_head, sizeof(suffix_head) - 1) != 0) {
        *why = "not a record (no checksum at the end)";
        return SY_ERR_INVALID;
    }
    uint32_t want = 0;
    const char *hex = line + len - 10;
    for (int i = 0; i < 8; i++) {
        char c = hex[i];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (h < 0) {
            *why = "bad checksum field";
            return SY_ERR_INVALID;
        }
        want = want << 4 | (uint32_t)h;
    }
    if (sy_journal_crc32(line, len - CRC_SUFFIX_LEN) != want) {
        *why = "checksum mismatch (the record was damaged)";
        return SY_ERR_INVALID;
    }
    struct sy_jv *root = NULL;
    if (sy_jv_parse(line, len, &root, why) != 0)
        return SY_ERR_INVALID;
    bool ok = read_record(root, r, why);
    sy_jv_free(root);
    if (!ok) {
        if (!*why)
            *why = "malformed record";
        sy_journal_record_dispose(r);
        return SY_ERR_INVALID;
    }
    return 0;
}

/* -- the journal --------------------------------------------------------------------------- */

struct sy_journal {
    char *path;
    int fd;
    struct sy_journal_opts opts;
    struct sy_overrides set;
    struct sy_maints maint;      /* the apps in maintenance */
    struct sy_guard_pause guard; /* the global guard switch */
    struct sy_ramps ramps;       /* the ramps running or paused */
    uint64_t seq;
    uint64_t fleet_rev; /* the etcd revision of the last change from the fleet */
    size_t records;     /* in the current file */
    off_t size;         /* bytes of whole records in the current file */
    bool broken;        /* a failed write could not be undone: refuse appends until restart */
    /* A compaction's rename is not known to be durable: refuse appends until the directory's
     * fsync succeeds. */
    bool dir_unsynced;
    bool released; /* handed over to a new process (sy_journal_release): refuse appends */
    off_t released_size;
};

/* The directory that holds `path` (a new string). */
static char *dir_of(const char *path)
{
    char *dir = sy_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    return dir;
}

/* Returns 0, or SY_ERR_SYS with errno set (and logged). */
static int fsync_dir(const char *path)
{
    char *dir = dir_of(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0, e = 0;
    if (fd == -1 || fsync(fd) == -1) {
        e = errno;
        sy_log_errno(SY_LOG_ERROR, "journal", "cannot fsync directory %s", dir);
        rc = SY_ERR_SYS;
    }
    if (fd != -1)
        close(fd);
    free(dir);
    errno = e;
    return rc;
}

/* sy_journal_check_dir, and with `any_owner` the check of `switchyard -t`, which accepts a
 * directory of any owner and says whose it is in *owner. */
static int check_dir(const char *path, bool any_owner, uid_t *owner, struct sy_diags *d)
{
    char *dir = dir_of(path);
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) == -1) {
        sy_diags_add(d, path, 0, 0, "cannot use the directory %s of the overrides journal: %s", dir,
                     strerror(errno));
        rc = SY_ERR_SYS;
    } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        /* Another user could plant the names the journal is about to take (PATH.tmp, PATH.old,
         * PATH itself) as links to files of ours; a sticky bit does not stop that. */
        sy_diags_add(d, path, 0, 0,
                     "the directory %s of the overrides journal is writable by %s (mode %04o): "
                     "refusing to keep the journal there (chmod go-w %s, or set `state:` to a "
                     "file in a directory only this user can write)",
                     dir, st.st_mode & S_IWOTH ? "others" : "its group",
                     (unsigned)(st.st_mode & 07777), dir);
        rc = SY_ERR_SYS;
    } else if (!any_owner && st.st_uid != geteuid() && st.st_uid != 0) {
        sy_diags_add(d, path, 0, 0,
                     "the directory %s of the overrides journal belongs to uid %u, not to this "
                     "user (uid %u) or root: refusing to keep the journal there",
                     dir, (unsigned)st.st_uid, (unsigned)geteuid());
        rc = SY_ERR_SYS;
    } else if (owner) {
        *owner = st.st_uid;
    }
    free(dir);
    return rc;
}

int sy_journal_check_dir(const char *path, struct sy_diags *d)
{
    return check_dir(path, false, NULL, d);
}

int sy_journal_check_dir_any_owner(const char *path, uid_t *owner, struct sy_diags *d)
{
    return check_dir(path, true, owner, d);
}

static int sync_fd(const struct sy_journal *j, int fd)
{
    if (j->opts.no_sync)
        return 0;
    return fdatasync(fd) == -1 ? -1 : 0;
}

/* Reads the whole file (bounded). */
static int slurp(int fd, const char *path, char **out, size_t *len)
{
    struct sy_jw b = {0};
    for (;;) {
        sy_xgrow((void **)&b.p, &b.cap, b.len + 65536, 1);
        ssize_t n = read(fd, b.p + b.len, b.cap - b.len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            sy_log_errno(SY_LOG_ERROR, "journal", "cannot read %s", path);
            free(b.p);
            return SY_ERR_SYS;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
        if (b.len > MAX_FILE_BYTES) {
            free(b.p);
            return SY_ERR_LIMIT;
        }
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* Replays `text` into j. Returns 0 with *good set to the length of the whole records, or
 * SY_ERR_INVALID with a diagnostic. */
static int replay(struct sy_journal *j, const char *file, const char *text, size_t len,
                  struct sy_diags *d, size_t *good)
{
    size_t off = 0;
    int line = 0;
    bool first = true;
    while (off < len) {
        const char *nl = memchr(text + off, '\n', len - off);
        if (!nl)
            break; /* the torn tail: the caller cuts it off */
        line++;
        size_t n = (size_t)(nl - (text + off));
        struct sy_journal_record r;
        const char *why = NULL;
        if (n > SY_JOURNAL_MAX_LINE) {
            sy_diags_add(d, file, line, 0, "record longer than %u bytes", SY_JOURNAL_MAX_LINE);
            return SY_ERR_INVALID;
        }
        if (sy_journal_parse_line(text + off, n, &r, &why) != 0) {
            sy_diags_add(d, file, line, 0, "%s", why);
            return SY_ERR_INVALID;
        }
        if (r.compact && !first) {
            sy_diags_add(d, file, line, 0, "a snapshot record after the first line");
            sy_journal_record_dispose(&r);
            return SY_ERR_INVALID;
        }
        uint64_t want = r.compact ? r.seq : j->seq + 1;
        if (r.seq != want) {
            sy_diags_add(d, file, line, 0, "sequence jumps from %" PRIu64 " to %" PRIu64, j->seq,
                         r.seq);
            sy_journal_record_dispose(&r);
            return SY_ERR_INVALID;
        }
        if (r.compact) {
            sy_overrides_dispose(&j->set);
            j->set = r.set;
            sy_overrides_init(&r.set);
            sy_maints_dispose(&j->maint);
            j->maint = r.maints;
            memset(&r.maints, 0, sizeof(r.maints));
            free(j->guard.command);
            j->guard = r.guard_pause;
            memset(&r.guard_pause, 0, sizeof(r.guard_pause));
            sy_ramps_dispose(&j->ramps);
            j->ramps = r.ramps;
            memset(&r.ramps, 0, sizeof(r.ramps));
            j->fleet_rev = r.rev;
        } else if (r.is_ramp) {
            struct sy_actor who = {r.time_ms, r.uid, r.pid, r.command};
            ramps_apply(&j->ramps, &r.ramp, r.seq, &who);
        } else if (r.guard) {
            struct sy_actor who = {r.time_ms, r.uid, r.pid, r.command};
            guard_apply(&j->guard, r.guard_pause.paused, r.seq, &who);
        } else if (r.maintenance) {
            struct sy_actor who = {r.time_ms, r.uid, r.pid, r.command};
            sy_maints_apply(&j->maint, &r.maint, r.seq, &who);
        } else {
            struct sy_actor who = {r.time_ms, r.uid, r.pid, r.command, r.rev, r.instance, r.local};
            sy_overrides_apply(&j->set, r.changes, r.n_changes, r.seq, &who);
            if (r.rev > j->fleet_rev)
                j->fleet_rev = r.rev;
        }
        j->seq = r.seq;
        j->records++;
        first = false;
        sy_journal_record_dispose(&r);
        off = (size_t)(nl - text) + 1;
    }
    *good = off;
    return 0;
}

/* Moves a damaged journal aside: PATH.corrupt-UNIXTIME. */
static int set_aside(const char *path)
{
    char aside[PATH_MAX];
    int n = snprintf(aside, sizeof(aside), "%s.corrupt-%lld", path, (long long)time(NULL));
    if (n < 0 || (size_t)n >= sizeof(aside) || rename(path, aside) == -1) {
        sy_log_errno(SY_LOG_ERROR, "journal", "cannot move %s aside", path);
        return SY_ERR_SYS;
    }
    sy_log(SY_LOG_ERROR, "journal",
           "DISCARDED the overrides journal %s (moved to %s): every override it held is gone "
           "and the file's weights apply",
           path, aside);
    return 0;
}

static int open_locked(const char *path, bool create, int *out)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd == -1)
        return errno == ENOENT && !create ? SY_ERR_NOTFOUND : SY_ERR_SYS;
    if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return e == EWOULDBLOCK ? SY_ERR_AGAIN : SY_ERR_SYS;
    }
    *out = fd;
    return 0;
}

/* Opens (or creates, when the options say so) and locks the journal file at `path`. */
static int open_file(struct sy_journal *j, const char *path, struct sy_diags *d)
{
    struct stat st;
    bool existed = stat(path, &st) == 0;
    int rc;
    if (!existed && !j->opts.create)
        return SY_ERR_NOTFOUND;
    if ((rc = sy_journal_check_dir(path, d)) != 0)
        return rc;
    rc = open_locked(path, j->opts.create, &j->fd);
    if (rc == SY_ERR_AGAIN) {
        sy_diags_add(d, path, 0, 0,
                     "the overrides journal is locked by another process "
                     "(another switchyard with the same `state:` file?)");
        return rc;
    }
    if (rc == SY_ERR_NOTFOUND)
        return rc;
    if (rc) {
        sy_diags_add(d, path, 0, 0, "cannot open the overrides journal: %s", strerror(errno));
        return rc;
    }
    if (!existed && !j->opts.no_sync && fsync_dir(path) != 0) {
        sy_diags_add(d, path, 0, 0, "cannot make the new journal durable (fsync of its directory)");
        return SY_ERR_SYS;
    }
    return 0;
}

/* `discard`: the journal that could not be read is reported, set aside and started anew. */
static int discard_and_restart(struct sy_journal *j, const char *path, struct sy_diags *d,
                               size_t first_diag)
{
    int rc;
    close(j->fd);
    j->fd = -1;
    sy_overrides_dispose(&j->set);
    sy_maints_dispose(&j->maint);
    free(j->guard.command);
    memset(&j->guard, 0, sizeof(j->guard));
    sy_ramps_dispose(&j->ramps);
    j->seq = 0;
    j->records = 0;
    char line[512];
    for (size_t i = first_diag; i < d->n; i++) {
        sy_diag_format(&d->v[i], line, sizeof(line));
        sy_log(SY_LOG_ERROR, "journal", "cannot read: %s", line);
    }
    d->n = first_diag; /* reported above; the open goes on */
    if ((rc = set_aside(path)) != 0 || (rc = open_locked(path, true, &j->fd)) != 0 ||
        (!j->opts.no_sync && (rc = fsync_dir(path)) != 0)) {
        sy_diags_add(d, path, 0, 0, "cannot start a new overrides journal: %s", strerror(errno));
        return rc;
    }
    return 0;
}

int sy_journal_open(const char *path, const struct sy_journal_opts *opts, struct sy_diags *d,
                    struct sy_journal **out)
{
    size_t first_diag = d->n;
    struct sy_journal *j = sy_xcalloc(1, sizeof(*j));
    j->path = sy_xstrdup(path);
    j->fd = -1;
    if (opts)
        j->opts = *opts;
    if (j->opts.compact_after == 0)
        j->opts.compact_after = SY_JOURNAL_COMPACT_AFTER;
    sy_overrides_init(&j->set);

    int rc = open_file(j, path, d);
    if (rc)
        goto out_fail;

    char *text = NULL;
    size_t len = 0, good = 0;
    rc = slurp(j->fd, path, &text, &len);
    if (rc == SY_ERR_LIMIT) {
        sy_diags_add(d, path, 0, 0, "the overrides journal is larger than %u bytes",
                     MAX_FILE_BYTES);
        rc = SY_ERR_INVALID;
    } else if (rc) {
        sy_diags_add(d, path, 0, 0, "cannot read the overrides journal: %s", strerror(errno));
    } else {
        rc = replay(j, path, text, len, d, &good);
    }
    if (rc == SY_ERR_INVALID && j->opts.discard) {
        free(text);
        text = NULL;
        if ((rc = discard_and_restart(j, path, d, first_diag)) != 0)
            goto out_fail;
        len = good = 0;
    } else if (rc) {
        free(text);
        goto out_fail;
    }
    if (good < len) {
        /* Bytes after the last newline: a write cut short by a crash (a NUL-filled block, or a
         * record without its newline). It was never acknowledged. */
        sy_log(SY_LOG_WARN, "journal",
               "%s: ignoring a torn last record (%zu bytes after line %zu): a write cut short "
               "before it was acknowledged",
               path, len - good, j->records);
        if (ftruncate(j->fd, (off_t)good) == -1 || sync_fd(j, j->fd) == -1) {
            sy_diags_add(d, path, 0, 0, "cannot cut off the torn last record: %s", strerror(errno));
            free(text);
            rc = SY_ERR_SYS;
            goto out_fail;
        }
    }
    free(text);
    j->size = (off_t)good;
    *out = j;
    return 0;

out_fail:
    sy_journal_close(j);
    return rc;
}

const struct sy_overrides *sy_journal_overrides(const struct sy_journal *j)
{
    return &j->set;
}

uint64_t sy_journal_fleet_rev(const struct sy_journal *j)
{
    return j->fleet_rev;
}

uint64_t sy_journal_seq(const struct sy_journal *j)
{
    return j->seq;
}

const char *sy_journal_path(const struct sy_journal *j)
{
    return j->path;
}

/* Rewrites the journal as one snapshot record. The old file stays as PATH.old (a hard link
 * made before the rename, so that PATH always names a whole journal). */
static int compact(struct sy_journal *j)
{
    char tmp[PATH_MAX], old[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", j->path) >= sizeof(tmp) ||
        (size_t)snprintf(old, sizeof(old), "%s.old", j->path) >= sizeof(old))
        return SY_ERR_LIMIT;
    /* A temporary file left by a crash during an earlier compaction is ours to remove; any
     * other thing by that name is left alone, and O_EXCL | O_NOFOLLOW make sure that what we
     * write to is a new file of our own, never where a link points. */
    struct stat st;
    if (lstat(tmp, &st) == 0) {
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
            sy_log(SY_LOG_ERROR, "journal",
                   "compaction: %s exists and is not a file of ours (mode %06o, uid %u): left "
                   "alone, and the journal is not compacted until it is removed",
                   tmp, (unsigned)st.st_mode, (unsigned)st.st_uid);
            return SY_ERR_INVALID;
        }
        if (unlink(tmp) == -1) {
            sy_log_errno(SY_LOG_ERROR, "journal", "compaction: cannot remove the stale %s", tmp);
            return SY_ERR_SYS;
        }
    }
    struct sy_jw b = {0};
    put_compact_record(&b, j->seq, j->fleet_rev, &j->set, &j->maint, &j->guard, &j->ramps);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_APPEND | O_CLOEXEC, 0600);
    if (fd == -1) {
        sy_log_errno(SY_LOG_ERROR, "journal", "compaction: cannot create %s", tmp);
        free(b.p);
        return SY_ERR_SYS;
    }
    /* Locked before it takes the journal's name: no other process may take it over. */
    if (flock(fd, LOCK_EX | LOCK_NB) == -1 || sy_write_all(fd, b.p, b.len) == -1 ||
        sync_fd(j, fd) == -1) {
        sy_log_errno(SY_LOG_ERROR, "journal", "compaction: cannot write %s", tmp);
        close(fd);
        unlink(tmp);
        free(b.p);
        return SY_ERR_SYS;
    }
    if ((unlink(old) == -1 && errno != ENOENT) || link(j->path, old) == -1)
        sy_log_errno(SY_LOG_WARN, "journal", "compaction: cannot keep the old journal as %s", old);
    if (rename(tmp, j->path) == -1) {
        sy_log_errno(SY_LOG_ERROR, "journal", "compaction: cannot rename %s to %s", tmp, j->path);
        close(fd);
        unlink(tmp);
        free(b.p);
        return SY_ERR_SYS;
    }
    close(j->fd);
    j->fd = fd;
    j->size = (off_t)b.len;
    j->records = 1;
    free(b.p);
    /* The rename is done either way, and the record that led here is durable in both files.
     * But until the directory is on disk, a crash may bring back the old name, and whatever
     * is appended to the new file would vanish with it: nothing more is acknowledged until
     * the directory syncs (sy_journal_append tries again). */
    if (!j->opts.no_sync && fsync_dir(j->path) != 0) {
        j->dir_unsynced = true;
        sy_log(SY_LOG_ERROR, "journal",
               "compacted %s, but its new name is not durable: changes are refused until the "
               "directory can be synced",
               j->path);
        return SY_ERR_SYS;
    }
    sy_log(SY_LOG_INFO, "journal", "compacted %s: %zu overrides at seq %" PRIu64, j->path, j->set.n,
           j->seq);
    return 0;
}

/* Appends the record in `b` (numbered j->seq + 1; freed here) and fsyncs it; on success the
 * sequence moves on and the caller applies the record to its set, then calls compact_if_due().
 * On failure nothing was applied and the file is as it was; `err` says why. */
static int append_record(struct sy_journal *j, struct sy_jw *b, char *err, size_t errlen)
{
    if (j->released) {
        snprintf(err, errlen,
                 "the journal %s is handed over to a new switchyard process (an upgrade is "
                 "under way): try again",
                 j->path);
        free(b->p);
        return SY_ERR_AGAIN;
    }
    if (j->broken) {
        snprintf(err, errlen,
                 "the journal %s could not be repaired after an earlier write "
                 "error: restart switchyard",
                 j->path);
        free(b->p);
        return SY_ERR_SYS;
    }
    if (j->dir_unsynced) {
        if (fsync_dir(j->path) != 0) {
            char *dir = dir_of(j->path);
            snprintf(err, errlen,
                     "the journal %s is not durable since its last compaction (fsync of %s: "
                     "%s): the change is not made",
                     j->path, dir, strerror(errno));
            free(dir);
            free(b->p);
            return SY_ERR_SYS;
        }
        j->dir_unsynced = false;
        sy_log(SY_LOG_INFO, "journal", "the directory of %s is synced: changes are taken again",
               j->path);
    }
    if (b->len - 1 > SY_JOURNAL_MAX_LINE) {
        snprintf(err, errlen, "the change is too large to record");
        free(b->p);
        return SY_ERR_LIMIT;
    }
    if (sy_write_all(j->fd, b->p, b->len) == -1 || sync_fd(j, j->fd) == -1) {
        int e = errno;
        snprintf(err, errlen, "cannot write the journal %s: %s", j->path, strerror(e));
        sy_log(SY_LOG_ERROR, "journal", "%s", err);
        /* Undo what may have reached the file, so that it never replays a change we refused:
         * after a failed fsync, the state of the pages is unknown (so truncate and sync). */
        if (ftruncate(j->fd, j->size) == -1 || (!j->opts.no_sync && fsync(j->fd) == -1)) {
            sy_log_errno(SY_LOG_ERROR, "journal",
                         "cannot undo a failed write to %s: refusing changes until restart",
                         j->path);
            j->broken = true;
        }
        free(b->p);
        return SY_ERR_SYS;
    }
    j->seq++;
    j->size += (off_t)b->len;
    j->records++;
    free(b->p);
    return 0;
}

static void compact_if_due(struct sy_journal *j)
{
    if (j->records > j->opts.compact_after || j->size > (off_t)SY_JOURNAL_COMPACT_BYTES)
        compact(j);
}

int sy_journal_append(struct sy_journal *j, const struct sy_actor *who,
                      const struct sy_override_change *ch, size_t n, char *err, size_t errlen)
{
    struct sy_jw b = {0};
    put_change_record(&b, j->seq + 1, who, ch, n);
    int rc = append_record(j, &b, err, errlen);
    if (rc)
        return rc;
    sy_overrides_apply(&j->set, ch, n, j->seq, who);
    if (who->rev > j->fleet_rev)
        j->fleet_rev = who->rev;
    compact_if_due(j);
    return 0;
}

const struct sy_maints *sy_journal_maintenance(const struct sy_journal *j)
{
    return &j->maint;
}

int sy_journal_append_maintenance(struct sy_journal *j, const struct sy_actor *who,
                                  const struct sy_maint *m, char *err, size_t errlen)
{
    struct sy_jw b = {0};
    put_maint_record(&b, j->seq + 1, who, m);
    int rc = append_record(j, &b, err, errlen);
    if (rc)
        return rc;
    sy_maints_apply(&j->maint, m, j->seq, who);
    compact_if_due(j);
    return 0;
}

const struct sy_guard_pause *sy_journal_guard_pause(const struct sy_journal *j)
{
    return &j->guard;
}

int sy_journal_append_guard(struct sy_journal *j, const struct sy_actor *who, bool paused,
                            char *err, size_t errlen)
{
    struct sy_jw b = {0};
    put_guard_record(&b, j->seq + 1, who, paused);
    int rc = append_record(j, &b, err, errlen);
    if (rc)
        return rc;
    guard_apply(&j->guard, paused, j->seq, who);
    compact_if_due(j);
    return 0;
}

const struct sy_ramps *sy_journal_ramps(const struct sy_journal *j)
{
    return &j->ramps;
}

int sy_journal_append_ramp(struct sy_journal *j, const struct sy_actor *who,
                           const struct sy_ramp *r, char *err, size_t errlen)
{
    struct sy_jw b = {0};
    put_ramp_record(&b, j->seq + 1, who, r);
    int rc = append_record(j, &b, err, errlen);
    if (rc)
        return rc;
    ramps_apply(&j->ramps, r, j->seq, who);
    compact_if_due(j);
    return 0;
}

/* The records of one file, appended to a ring of the last `last`. */
struct ring {
    struct sy_journal_record *v;
    size_t last, n, head;
};

static void ring_push(struct ring *r, struct sy_journal_record *rec)
{
    size_t at = (r->head + r->n) % r->last;
    if (r->n == r->last) {
        sy_journal_record_dispose(&r->v[r->head]);
        r->head = (r->head + 1) % r->last;
        at = (r->head + r->n - 1) % r->last;
    } else {
        r->n++;
    }
    r->v[at] = *rec;
}

static int read_records(const char *path, struct ring *r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return errno == ENOENT ? 0 : SY_ERR_SYS;
    char *text = NULL;
    size_t len = 0;
    int rc = slurp(fd, path, &text, &len);
    close(fd);
    if (rc)
        return rc;
    size_t off = 0;
    while (off < len) {
        const char *nl = memchr(text + off, '\n', len - off);
        if (!nl)
            break;
        struct sy_journal_record rec;
        const char *why;
        if (sy_journal_parse_line(text + off, (size_t)(nl - text) - off, &rec, &why) == 0) {
            if (rec.compact)
                sy_journal_record_dispose(&rec); /* a summary of what came before */
            else
                ring_push(r, &rec);
        }
        off = (size_t)(nl - text) + 1;
    }
    free(text);
    return 0;
}

int sy_journal_history(const struct sy_journal *j, size_t last, sy_journal_record_cb cb, void *arg)
{
    if (last == 0)
        return 0;
    struct ring r = {sy_xcalloc(last, sizeof(struct sy_journal_record)), last, 0, 0};
    char old[PATH_MAX];
    int rc = 0;
    /* The file the last compaction set aside holds the changes before it. */
    if ((size_t)snprintf(old, sizeof(old), "%s.old", j->path) < sizeof(old))
        rc = read_records(old, &r);
    if (rc == 0)
        rc = read_records(j->path, &r);
    for (size_t i = 0; i < r.n; i++) {
        struct sy_journal_record *rec = &r.v[(r.head + i) % r.last];
        if (rc == 0)
            cb(rec, arg);
        sy_journal_record_dispose(rec);
    }
    free(r.v);
    return rc;
}

void sy_journal_close(struct sy_journal *j)
{
    if (!j)
        return;
    if (j->fd != -1)
        close(j->fd);
    sy_overrides_dispose(&j->set);
    sy_maints_dispose(&j->maint);
    free(j->guard.command);
    sy_ramps_dispose(&j->ramps);
    free(j->path);
    free(j);
}

void sy_journal_release(struct sy_journal *j)
{
    if (!j || j->released)
        return;
    struct stat st;
    j->released_size = fstat(j->fd, &st) == 0 ? st.st_size : -1;
    close(j->fd); /* the lock goes with it */
    j->fd = -1;
    j->released = true;
    sy_log(SY_LOG_INFO, "journal", "%s: released (closed, unlocked) for a new process", j->path);
}

int sy_journal_retake(struct sy_journal *j)
{
    if (!j || !j->released)
        return 0;
    int rc = open_locked(j->path, false, &j->fd);
    if (rc)
        return rc;
    j->released = false;
    /* The new process writes only once it serves; a file that changed anyway is not
     * re-read under our feet: changes are refused until a restart reads it. */
    struct stat st;
    if (fstat(j->fd, &st) != 0 || st.st_size != j->released_size) {
        j->broken = true;
        sy_log(SY_LOG_ERROR, "journal",
               "%s changed while it was handed over: changes are refused until restart", j->path);
    }
    sy_log(SY_LOG_INFO, "journal", "%s: taken back", j->path);
    return 0;
}
