/* SPDX-License-Identifier: MIT */
/* The exclusive switch: moving an app that may run in one place only (apps[].mode: exclusive)
 * from one cluster to another without ever running it on both. It runs on the control thread,
 * one small state machine per app, driven by a short timer:
 *   HOLD     a snapshot that holds the app's new requests on the workers (proxy/hold.c) and
 *            sends nothing more to the old cluster is published, not journaled
 *            (sy_state_hold); what still runs there finishes, or is cut after
 *            exclusive.drain by the workers' drain_after machinery;
 *   READY    optional: exclusive.ready.url is polled (non-blocking) until it answers
 *            exclusive.ready.expect, or exclusive.ready.timeout passes;
 *   RELEASE  an ordinary journaled change (sy_state_change) puts the app on the new cluster;
 *            its snapshot no longer holds the app, and the workers send the held requests on
 *            in arrival order.
 * The journal learns of the move only at RELEASE: a daemon killed during a switch comes back
 * on the old cluster. The phase timings go into the journal record's command text, so that
 * `history` shows them. */
#include "switchyard/exclusive.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "switchyard/admin.h"
#include "switchyard/state.h"

#define TICK_MS        20
#define READY_EVERY_MS 200
#define DRAIN_GRACE_MS 1000 /* past exclusive.drain, forced work no longer holds the switch */
#define DONE_KEPT      10

enum phase {
    PHASE_HOLD = 0,
    PHASE_READY,
};

static const char *phase_name(enum phase p)
{
    return p == PHASE_HOLD ? "drain" : "ready";
}

struct probe {
    int fd;
    struct event *ev;
    char buf[64];
    size_t len;
    bool sent;
};

struct xswitch {
    struct xswitch *next;
    char *app, *from, *to;
    char *command;
    uint32_t uid;
    int32_t pid;
    enum phase phase;
    uint64_t since_ms;   /* unix time the switch began */
    uint64_t start_mono; /* monotonic */
    uint64_t drained_mono, ready_mono;
    uint64_t base_503, base_released; /* counters on `to` when it began */
    bool drain_cut;                   /* exclusive.drain passed before the old side was quiet */
    bool ready_timed_out;
    struct probe probe;
    uint64_t next_probe_mono;
    int last_status;     /* of the ready check, 0: none yet */
    bool by_reload;      /* a reload began it: the release hands the app back to the file */
    bool drop_override;  /* `release` began it: the release drops the app's override */
    uint64_t generation; /* the snapshot that began it */
};

struct sy_exclusive {
    struct event_base *base;
    struct sy_admin_routing *env;
    struct event *tick;
    struct xswitch *running;
};

static struct xswitch *find(const struct sy_exclusive *x, const char *app)
{
    for (struct xswitch *s = x->running; s; s = s->next)
        if (strcmp(s->app, app) == 0)
            return s;
    return NULL;
}

static const struct sy_config *config_of(const struct sy_exclusive *x)
{
    return sy_route_table_config(sy_state_table(x->env->state));
}

/* -- the data path's counters ------------------------------------------------------------- */

struct counts {
    const char *app, *from, *to;
    uint64_t in_flight_from, held_to, held_503_to, released_to, wait_max_to;
};

static void counts_cb(const struct sy_traffic *t, void *arg)
{
    struct counts *c = arg;
    if (!t->app || strcmp(t->app, c->app) != 0)
        return;
    if (strcmp(t->cluster, c->from) == 0)
        c->in_flight_from += t->in_flight;
    if (strcmp(t->cluster, c->to) == 0) {
        c->held_to += t->held;
        c->held_503_to += t->held_503;
        c->released_to += t->held_released;
        c->wait_max_to = t->held_wait_max_ms;
    }
}

static struct counts count(const struct sy_exclusive *x, const struct xswitch *s)
{
    struct counts c = {.app = s->app, .from = s->from, .to = s->to};
    if (x->env->traffic)
        x->env->traffic(x->env->traffic_arg, counts_cb, &c);
    return c;
}

/* -- the ready check ------------------------------------------------------------------------ */

static void probe_close(struct probe *p)
{
    if (p->ev)
        event_free(p->ev);
    if (p->fd >= 0)
        close(p->fd);
    p->ev = NULL;
    p->fd = -1;
    p->len = 0;
    p->sent = false;
}

/* The status of a finished answer in p->buf, or 0. */
static int probe_status(const struct probe *p)
{
    int major, minor, status;
    if (sscanf(p->buf, "HTTP/%d.%d %d", &major, &minor, &status) == 3)
        return status;
    return 0;
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xswitch *s = arg;
    struct probe *p = &s->probe;
    if (!p->sent) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            s->last_status = -1;
            probe_close(p);
            return;
        }
        /* Filled in probe_start: the request fits a socket buffer, so one write will do. */
        p->sent = true;
        event_del(p->ev);
        event_assign(p->ev, event_get_base(p->ev), fd, EV_READ | EV_PERSIST, probe_cb, s);
        event_add(p->ev, NULL);
        ssize_t n = write(fd, p->buf, p->len);
        p->len = 0;
        if (n <= 0) {
            s->last_status = -1;
            probe_close(p);
        }
        return;
    }
    ssize_t n = read(fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
    if (n > 0)
        p->len += (size_t)n;
    p->buf[p->len] = '\0';
    if (n <= 0 || strchr(p->buf, '\n') || p->len == sizeof(p->buf) - 1) {
        s->last_status = probe_status(p);
        if (s->last_status == 0)
            s->last_status = -1;
        probe_close(p);
    }
}

static void probe_start(struct sy_exclusive *x, struct xswitch *s)
{
    const struct sy_exclusive_spec *ex = &config_of(x)->exclusive;
    struct probe *p = &s->probe;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ex->ready_host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)ex->ready_port);
        sl = sizeof(*in4);
    } else if (inet_pton(AF_INET6, ex->ready_host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)ex->ready_port);
        sl = sizeof(*in6);
    } else {
        s->last_status = -1;
        return;
    }
    p->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd == -1) {
        sy_log_errno(SY_LOG_WARN, "exclusive", "ready check socket");
        s->last_status = -1;
        return;
    }
    if (connect(p->fd, (struct sockaddr *)&ss, sl) == -1 && errno != EINPROGRESS) {
        s->last_status = -1;
        probe_close(p);
        return;
    }
    int n = snprintf(p->buf, sizeof(p->buf), "GET %.20s HTTP/1.0\r\n\r\n", ex->ready_path);
    p->len = n > 0 && (size_t)n < sizeof(p->buf) ? (size_t)n : 0;
    p->sent = false;
    p->ev = event_new(x->base, p->fd, EV_WRITE, probe_cb, s);
    event_add(p->ev, NULL);
}

/* -- the switch ----------------------------------------------------------------------------- */

static void switch_free(struct xswitch *s)
{
    probe_close(&s->probe);
    free(s->app);
    free(s->from);
    free(s->to);
    free(s->command);
    free(s);
}

static void unlink_switch(struct sy_exclusive *x, struct xswitch *s)
{
    for (struct xswitch **pp = &x->running; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
}

/* RELEASE: the journal, then the snapshot that lets the held requests go. */
static void release(struct sy_exclusive *x, struct xswitch *s)
{
    uint64_t now = sy_now_ms();
    struct counts c = count(x, s);
    uint64_t answered = c.held_503_to - s->base_503;
    uint64_t held = c.held_to + answered + (c.released_to - s->base_released);
    uint64_t hold_ms = now - s->start_mono;
    uint64_t drain_ms = s->drained_mono - s->start_mono;
    uint64_t ready_ms = s->ready_mono ? s->ready_mono - s->drained_mono : 0;
    char cmd[SY_ACTOR_COMMAND_MAX];
    snprintf(cmd, sizeof(cmd),
             "%s [exclusive switch %s -> %s: hold_ms=%" PRIu64 " drain_ms=%" PRIu64
             " ready_ms=%" PRIu64 " held=%" PRIu64 " answered_503=%" PRIu64 "%s%s]",
             s->command, s->from, s->to, hold_ms, drain_ms, ready_ms, held, answered,
             s->drain_cut ? " drain_cut" : "", s->ready_timed_out ? " ready_timed_out" : "");
    struct sy_route_weight w = {s->to, 100};
    struct sy_state_edit e = {.app = s->app, .weights = &w, .n_weights = 1};
    struct sy_actor who = {(uint64_t)time(NULL) * 1000, s->uid, s->pid, cmd};
    char err[512];
    int rc;
    if (s->by_reload) {
        /* The file puts it there: no override, only a note in the journal. */
        rc = sy_state_follow_file(x->env->state, s->app, s->from, &who, err, sizeof(err));
        if (rc)
            sy_log(SY_LOG_WARN, "exclusive", "app %s: release to %s: %s", s->app, s->to, err);
        rc = 0; /* published unless compiling failed (memory): the log says */
    } else {
        /* `release`: the file's side, by dropping the override. */
        struct sy_state_edit rel = {.app = s->app, .release = true};
        rc =
            sy_state_change(x->env->state, s->drop_override ? &rel : &e, 1, &who, err, sizeof(err));
    }
    if (rc) {
        /* Not durable: the app goes back where the journal says it is. */
        sy_log(SY_LOG_ERROR, "exclusive", "app %s: switch to %s not recorded (%s): back to %s",
               s->app, s->to, err, s->from);
        sy_state_hold(x->env->state, s->app, NULL, err, sizeof(err));
    } else {
        sy_log(SY_LOG_INFO, "exclusive",
               "app %s: on %s; hold %" PRIu64 " ms (drain %" PRIu64 " ms, ready %" PRIu64
               " ms), %" PRIu64 " request(s) held, %" PRIu64 " answered 503",
               s->app, s->to, hold_ms, drain_ms, ready_ms, held, answered);
    }
    unlink_switch(x, s);
    switch_free(s);
}

static void step(struct sy_exclusive *x, struct xswitch *s)
{
    const struct sy_config *cfg = config_of(x);
    const struct sy_exclusive_spec *ex = &cfg->exclusive;
    uint64_t now = sy_now_ms();
    long ai = sy_config_app_index(cfg, s->app);
    if (ai < 0) {
        sy_log(SY_LOG_WARN, "exclusive", "app %s left the file during its switch: dropped", s->app);
        unlink_switch(x, s);
        switch_free(s);
        return;
    }
    /* A reload compiles every app from the file and the journal: hold it again. */
    if (!sy_route_app_is_held(sy_state_table(x->env->state), (size_t)ai)) {
        char err[256];
        sy_state_hold(x->env->state, s->app, s->to, err, sizeof(err));
    }
    if (s->phase == PHASE_HOLD) {
        struct counts c = count(x, s);
        bool late = now - s->start_mono >= (uint64_t)ex->drain_ms + DRAIN_GRACE_MS;
        if (c.in_flight_from != 0 && !late)
            return;
        s->drain_cut = c.in_flight_from != 0 || now - s->start_mono >= ex->drain_ms;
        s->drained_mono = now;
        if (!ex->ready_url) {
            release(x, s);
            return;
        }
        s->phase = PHASE_READY;
        s->next_probe_mono = now;
    }
    if (s->phase == PHASE_READY) {
        if (s->last_status == ex->ready_expect) {
            s->ready_mono = now;
            release(x, s);
            return;
        }
        if (now - s->drained_mono >= ex->ready_timeout_ms) {
            sy_log(SY_LOG_WARN, "exclusive",
                   "app %s: %s did not answer %d within exclusive.ready.timeout (last: %d): "
                   "released all the same",
                   s->app, ex->ready_url, ex->ready_expect, s->last_status);
            s->ready_timed_out = true;
            s->ready_mono = now;
            release(x, s);
            return;
        }
        if (s->probe.fd < 0 && now >= s->next_probe_mono) {
            s->next_probe_mono = now + READY_EVERY_MS;
            probe_start(x, s);
        }
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_exclusive *x = arg;
    for (struct xswitch *s = x->running, *next; s; s = next) {
        next = s->next;
        step(x, s);
    }
    if (x->running) {
        struct timeval tv = {0, TICK_MS * 1000};
        evtimer_add(x->tick, &tv);
    }
}

static struct sy_route_table *reload_hook(const struct sy_route_table *cur,
                                          struct sy_route_table *next, void *arg);

struct sy_exclusive *sy_exclusive_new(struct event_base *base, struct sy_admin_routing *env)
{
    struct sy_exclusive *x = sy_xcalloc(1, sizeof(*x));
    x->base = base;
    x->env = env;
    x->tick = base ? evtimer_new(base, tick_cb, x) : NULL;
    if (env && env->state)
        sy_state_set_reload_hook(env->state, reload_hook, x);
    return x;
}

void sy_exclusive_free(struct sy_exclusive *x)
{
    if (!x)
        return;
    while (x->running) {
        struct xswitch *s = x->running;
        x->running = s->next;
        switch_free(s);
    }
    if (x->tick)
        event_free(x->tick);
    if (x->env && x->env->state)
        sy_state_set_reload_hook(x->env->state, NULL, NULL);
    free(x);
}

bool sy_exclusive_is_app(const struct sy_config *cfg, const char *app)
{
    long ai = sy_config_app_index(cfg, app);
    return ai >= 0 && cfg->apps[ai].mode == SY_APP_EXCLUSIVE;
}

/* The cluster app `ai` runs on now (weight 100), or NULL. */
static const char *live_cluster(const struct sy_route_table *t, size_t ai)
{
    const struct sy_weight_spec *w;
    size_t n;
    sy_route_app_weights(t, ai, &w, &n);
    const struct sy_config *cfg = sy_route_table_config(t);
    for (size_t i = 0; i < n; i++)
        if (w[i].weight > 0)
            return cfg->clusters[w[i].cluster].name;
    return NULL;
}

static struct xswitch *switch_new(struct sy_exclusive *x, const char *app, const char *from,
                                  const char *to, const struct sy_actor *who)
{
    struct xswitch *s = sy_xcalloc(1, sizeof(*s));
    s->app = sy_xstrdup(app);
    s->from = sy_xstrdup(from);
    s->to = sy_xstrdup(to);
    s->command = sy_xstrdup(who->command);
    s->uid = who->uid;
    s->pid = who->pid;
    s->since_ms = who->time_ms;
    s->start_mono = sy_now_ms();
    s->probe.fd = -1;
    struct counts c = count(x, s);
    s->base_503 = c.held_503_to;
    s->base_released = c.released_to;
    return s;
}

/* Links a switch whose hold is (being) published and starts the clock. */
static void switch_begin(struct sy_exclusive *x, struct xswitch *s)
{
    const struct sy_config *cfg = config_of(x);
    s->generation = sy_state_generation(x->env->state);
    s->next = x->running;
    x->running = s;
    sy_log(SY_LOG_INFO, "exclusive",
           "app %s: switch %s -> %s begins%s: new requests held (exclusive.hold %u ms), what "
           "runs on %s drains (exclusive.drain %u ms)",
           s->app, s->from, s->to, s->by_reload ? " (the file moved it)" : "",
           cfg->exclusive.hold_ms, s->from, cfg->exclusive.drain_ms);
    struct timeval tv = {0, TICK_MS * 1000};
    evtimer_add(x->tick, &tv);
}

int sy_exclusive_start(struct sy_exclusive *x, const char *app, const char *to,
                       const struct sy_actor *who, char *err, size_t errlen)
{
    const struct sy_route_table *t = sy_state_table(x->env->state);
    const struct sy_config *cfg = sy_route_table_config(t);
    long ai = sy_config_app_index(cfg, app);
    if (ai < 0) {
        snprintf(err, errlen, "unknown app '%s'", app);
        return SY_ERR_INVALID;
    }
    if (find(x, app)) {
        snprintf(err, errlen, "switch in progress");
        return SY_ERR_AGAIN;
    }
    if (!x->tick) {
        snprintf(err, errlen, "the exclusive switch needs the daemon's control loop");
        return SY_ERR_INVALID;
    }
    const struct sy_app_spec *spec = &cfg->apps[ai];
    bool known = false;
    for (size_t i = 0; i < spec->n_weights && !known; i++)
        known = strcmp(cfg->clusters[spec->weights[i].cluster].name, to) == 0;
    if (!known) {
        snprintf(err, errlen, "app '%s' has no cluster '%s'", app, to);
        return SY_ERR_INVALID;
    }
    const char *from = live_cluster(t, (size_t)ai);
    if (from && strcmp(from, to) == 0) {
        snprintf(err, errlen, "app '%s' runs on %s already", app, to);
        return SY_ERR_INVALID;
    }
    if (!sy_state_journal(x->env->state)) {
        snprintf(err, errlen, "no state file: the switch could not be made durable");
        return SY_ERR_NOTFOUND;
    }
    struct xswitch *s = switch_new(x, app, from ? from : "-", to, who);
    int rc = sy_state_hold(x->env->state, app, to, err, errlen);
    if (rc) {
        switch_free(s);
        return rc;
    }
    switch_begin(x, s);
    return 0;
}

/* -- reloads ------------------------------------------------------------------------------- */

/* Whether app `ai` of `cfg` has a cluster named `name`. */
static bool app_has_cluster(const struct sy_config *cfg, size_t ai, const char *name)
{
    const struct sy_app_spec *a = &cfg->apps[ai];
    for (size_t i = 0; i < a->n_weights; i++)
        if (strcmp(cfg->clusters[a->weights[i].cluster].name, name) == 0)
            return true;
    return false;
}

/* A switch that runs when a reload comes: whether it goes on (towards s->to). The newer
 * target wins: a switch a reload began follows the file (back to its old cluster: aborted;
 * to a third one: retargeted, since nothing was sent to the one it held for). An operator's
 * switch goes on unless the file dropped its cluster. */
static bool reload_keeps(struct sy_exclusive *x, struct xswitch *s, struct sy_route_table *next)
{
    const struct sy_config *nc = sy_route_table_config(next);
    long ai = sy_config_app_index(nc, s->app);
    const char *target = ai < 0 ? NULL : live_cluster(next, (size_t)ai);
    const char *why = NULL;
    if (ai < 0 || nc->apps[ai].mode != SY_APP_EXCLUSIVE)
        why = "the app is no longer exclusive in the file";
    else if (!s->by_reload && !app_has_cluster(nc, (size_t)ai, s->to))
        why = "the file no longer gives the app that cluster";
    else if (s->by_reload && (!target || strcmp(target, s->from) == 0))
        why = "the file puts it back where it runs";
    if (why) {
        sy_log(SY_LOG_WARN, "exclusive", "app %s: switch %s -> %s aborted by a reload: %s", s->app,
               s->from, s->to, why);
        unlink_switch(x, s);
        switch_free(s);
        return false;
    }
    if (s->by_reload && strcmp(target, s->to) != 0) {
        sy_log(SY_LOG_INFO, "exclusive", "app %s: a reload moves its switch's target from %s to %s",
               s->app, s->to, target);
        free(s->to);
        s->to = sy_xstrdup(target);
        s->generation = sy_route_table_generation(next);
    }
    return true;
}

/* Whether the reload from `cur` to `next` moves exclusive app `ai` (of next) from one cluster
 * to another: a switch then begins. */
static bool reload_moves(struct sy_exclusive *x, const struct sy_route_table *cur,
                         struct sy_route_table *next, size_t ai)
{
    const struct sy_config *nc = sy_route_table_config(next), *oc = sy_route_table_config(cur);
    const char *app = nc->apps[ai].name;
    long oi = sy_config_app_index(oc, app);
    /* An app held in `cur` was switching: reload_keeps() decided its fate. */
    if (nc->apps[ai].mode != SY_APP_EXCLUSIVE || oi < 0 || oc->apps[oi].mode != SY_APP_EXCLUSIVE ||
        find(x, app) || sy_route_app_is_held(cur, (size_t)oi))
        return false;
    const char *from = live_cluster(cur, (size_t)oi), *to = live_cluster(next, ai);
    if (!from || !to || strcmp(from, to) == 0)
        return false;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "reload (the file moves %.255s)", app);
    struct sy_actor who = {(uint64_t)time(NULL) * 1000, (uint32_t)geteuid(), (int32_t)getpid(),
                           cmd};
    struct xswitch *s = switch_new(x, app, from, to, &who);
    s->by_reload = true;
    switch_begin(x, s);
    s->generation = sy_route_table_generation(next);
    return true;
}

/* The state's reload hook: `next` with every exclusive app that is switching held. */
static struct sy_route_table *reload_hook(const struct sy_route_table *cur,
                                          struct sy_route_table *next, void *arg)
{
    struct sy_exclusive *x = arg;
    if (!x->tick)
        return next;
    const struct sy_config *nc = sy_route_table_config(next);
    for (struct xswitch *s = x->running, *after; s; s = after) {
        after = s->next;
        reload_keeps(x, s, next);
    }
    for (size_t i = 0; i < nc->n_apps; i++)
        reload_moves(x, cur, next, i);
    size_t n = 0;
    for (const struct xswitch *s = x->running; s; s = s->next)
        n++;
    if (n == 0)
        return next;
    struct sy_route_app_change *ch = sy_xcalloc(n, sizeof(*ch));
    struct sy_route_override *ov = sy_xcalloc(n, sizeof(*ov));
    struct sy_route_weight *w = sy_xcalloc(n, sizeof(*w));
    size_t k = 0;
    for (struct xswitch *s = x->running; s; s = s->next, k++) {
        w[k] = (struct sy_route_weight){s->to, 100};
        ov[k] = (struct sy_route_override){s->app, &w[k], 1};
        ch[k] = (struct sy_route_app_change){(size_t)sy_config_app_index(nc, s->app), &ov[k], true};
    }
    struct sy_route_table *t = NULL;
    int rc = sy_route_table_update(next, ch, n, sy_route_table_generation(next), &t);
    free(ch);
    free(ov);
    free(w);
    if (rc) {
        sy_log(SY_LOG_ERROR, "exclusive", "cannot hold the switching apps (%s): moved at once",
               sy_strerror(rc));
        return next;
    }
    sy_route_table_release(next);
    return t;
}

/* The cluster the file alone gives exclusive app `ai` (weight 100), or NULL. */
static const char *file_cluster(const struct sy_config *cfg, size_t ai)
{
    const struct sy_app_spec *a = &cfg->apps[ai];
    for (size_t i = 0; i < a->n_weights; i++)
        if (a->weights[i].weight == 100)
            return cfg->clusters[a->weights[i].cluster].name;
    return NULL;
}

const char *sy_exclusive_release_moves(const struct sy_exclusive *x, const char *app)
{
    const struct sy_route_table *t = sy_state_table(x->env->state);
    const struct sy_config *cfg = sy_route_table_config(t);
    long ai = sy_config_app_index(cfg, app);
    if (ai < 0 || cfg->apps[ai].mode != SY_APP_EXCLUSIVE || !x->tick ||
        !sy_overrides_find(sy_state_overrides(x->env->state), app))
        return NULL;
    const char *live = live_cluster(t, (size_t)ai), *to = file_cluster(cfg, (size_t)ai);
    return live && to && strcmp(live, to) != 0 ? to : NULL;
}

int sy_exclusive_release(struct sy_exclusive *x, const char *app, const struct sy_actor *who,
                         char *err, size_t errlen)
{
    if (find(x, app)) {
        snprintf(err, errlen, "switch in progress");
        return SY_ERR_AGAIN;
    }
    const char *to = sy_exclusive_release_moves(x, app);
    if (!to)
        return 0;
    const struct sy_route_table *t = sy_state_table(x->env->state);
    long ai = sy_config_app_index(sy_route_table_config(t), app);
    struct xswitch *s = switch_new(x, app, live_cluster(t, (size_t)ai), to, who);
    s->drop_override = true;
    int rc = sy_state_hold(x->env->state, app, s->to, err, errlen);
    if (rc) {
        switch_free(s);
        return rc;
    }
    switch_begin(x, s);
    return 1;
}

int sy_exclusive_move(struct sy_exclusive *x, const char *app, const char *to,
                      const struct sy_actor *who, char *err, size_t errlen)
{
    struct xswitch *s = find(x, app);
    if (s && strcmp(s->to, to) == 0)
        return 1;
    int rc = s ? sy_exclusive_abort(x, app, err, errlen) : 0;
    if (rc)
        return rc;
    const struct sy_route_table *t = sy_state_table(x->env->state);
    long ai = sy_config_app_index(sy_route_table_config(t), app);
    const char *live = ai < 0 ? NULL : live_cluster(t, (size_t)ai);
    if (live && strcmp(live, to) == 0)
        return 0;
    rc = sy_exclusive_start(x, app, to, who, err, errlen);
    return rc ? rc : 1;
}

void sy_exclusive_reload_report(const struct sy_exclusive *x, uint64_t generation,
                                struct sy_reply *r)
{
    sy_json_begin_array(r, "exclusive_switches");
    for (const struct xswitch *s = x ? x->running : NULL; s; s = s->next) {
        if (!s->by_reload)
            continue;
        sy_reply_printf(r,
                        "%s: exclusive switch %s -> %s %s: new requests are held while %s "
                        "drains (see `status %s`)\n",
                        s->app, s->from, s->to,
                        s->generation == generation ? "begun" : "in progress", s->from, s->app);
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "app", s->app);
        sy_json_str(r, "from", s->from);
        sy_json_str(r, "to", s->to);
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
}

int sy_exclusive_abort(struct sy_exclusive *x, const char *app, char *err, size_t errlen)
{
    struct xswitch *s = find(x, app);
    if (!s) {
        snprintf(err, errlen, "no switch of app '%s' in progress", app);
        return SY_ERR_NOTFOUND;
    }
    int rc;
    if (s->by_reload) {
        /* The file puts the app on s->to now: staying on s->from takes an override. */
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "switch --abort %.255s (stays on %.255s)", app, s->from);
        struct sy_actor who = {(uint64_t)time(NULL) * 1000, (uint32_t)geteuid(), (int32_t)getpid(),
                               cmd};
        struct sy_route_weight w = {s->from, 100};
        struct sy_state_edit e = {.app = app, .weights = &w, .n_weights = 1};
        rc = sy_state_change(x->env->state, &e, 1, &who, err, errlen);
    } else {
        rc = sy_state_hold(x->env->state, app, NULL, err, errlen);
    }
    if (rc)
        return rc;
    sy_log(SY_LOG_INFO, "exclusive", "app %s: switch to %s aborted in phase %s: back on %s", app,
           s->to, phase_name(s->phase), s->from);
    unlink_switch(x, s);
    switch_free(s);
    return 0;
}

void sy_exclusive_status_app(const struct sy_exclusive *x, const struct sy_app_spec *app,
                             struct sy_reply *r, int indent)
{
    sy_json_str(r, "mode", app->mode == SY_APP_EXCLUSIVE ? "exclusive" : "weighted");
    const struct xswitch *s = x ? find(x, app->name) : NULL;
    if (!s) {
        sy_json_null(r, "switch");
        return;
    }
    struct counts c = count(x, s);
    uint64_t now = sy_now_ms();
    sy_json_begin_object(r, "switch");
    sy_json_str(r, "phase", phase_name(s->phase));
    sy_json_str(r, "from", s->from);
    sy_json_str(r, "to", s->to);
    sy_json_bool(r, "by_reload", s->by_reload);
    sy_json_uint(r, "held", c.held_to);
    sy_json_uint(r, "answered_503", c.held_503_to - s->base_503);
    sy_json_uint(r, "old_in_flight", c.in_flight_from);
    sy_json_uint(r, "since", s->since_ms);
    sy_json_uint(r, "elapsed_ms", now - s->start_mono);
    sy_json_end_object(r);
    sy_reply_printf(r,
                    "%-*s   exclusive switch %s -> %s: phase %s, %" PRIu64 " held, %" PRIu64
                    " still on %s, %" PRIu64 " ms so far\n",
                    indent, "", s->from, s->to, phase_name(s->phase), c.held_to, c.in_flight_from,
                    s->from, now - s->start_mono);
}
