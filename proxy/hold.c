/* SPDX-License-Identifier: MIT */
/* The exclusive switch's hold on the workers. While an exclusive app moves (admin/exclusive.c),
 * the control thread publishes a snapshot that marks the app held: a new request for it is
 * routed and its head built as usual, then parked here instead of being sent, in one list per
 * worker in arrival order, with the same backpressure as the connection queue (its body is not
 * read beyond the usual buffer; an HTTP/2 stream waits on its own). When a snapshot that no
 * longer holds the app is installed, the held requests go on, oldest first; when
 * exclusive.hold runs out first, they are answered 503 with Retry-After. The exchange asks
 * here (hold_gate) once it is routed, for every app of mode exclusive: a request forced to
 * the cluster that is not live is refused unless force_while_exclusive. A released request
 * goes on to the cluster it was routed to, or after an abort to the one the app runs on now
 * when its head fits that one. Everything here is the worker's own: no lock, and nothing is
 * allocated per request (the links live in the exchange). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exchange_internal.h"

static void hold_timer_cb(evutil_socket_t fd, short what, void *arg);

static unsigned hold_ms(const struct sy_worker *w)
{
    return worker_config(w)->exclusive.hold_ms;
}

static void arm(struct sy_worker *w)
{
    if (!w->held_head) {
        if (w->hold_timer)
            evtimer_del(w->hold_timer);
        return;
    }
    if (!w->hold_timer) {
        w->hold_timer = evtimer_new(w->base, hold_timer_cb, w);
        if (!w->hold_timer) {
            sy_log(SY_LOG_ERROR, "hold", "out of memory"); /* as sy_xcalloc does */
            abort();
        }
    }
    uint64_t now = sy_now_ms(), due = w->held_head->hold_since_ms + hold_ms(w);
    struct timeval tv = ms_tv(due > now ? (unsigned)(due - now) : 0);
    evtimer_add(w->hold_timer, &tv);
}

/* The longest wait seen on the slot: only this worker writes it. */
static void note_wait(struct exchange *ex)
{
    uint64_t waited = sy_now_ms() - ex->hold_since_ms;
    if (waited > atomic_load_explicit(&ex->slot->held_wait_max_ms, memory_order_relaxed))
        atomic_store_explicit(&ex->slot->held_wait_max_ms, waited, memory_order_relaxed);
}

static void unlink_held(struct exchange *ex)
{
    struct sy_worker *w = ex->w;
    if (ex->hold_prev)
        ex->hold_prev->hold_next = ex->hold_next;
    else
        w->held_head = ex->hold_next;
    if (ex->hold_next)
        ex->hold_next->hold_prev = ex->hold_prev;
    else
        w->held_tail = ex->hold_prev;
    ex->hold_next = ex->hold_prev = NULL;
    ex->held = false;
    w->n_held--;
    counter_add(&ex->slot->held, -1);
}

/* Holds `ex` (routed, head built). False when the worker holds exclusive.max_held already. */
static bool hold_add(struct exchange *ex)
{
    struct sy_worker *w = ex->w;
    if (w->n_held >= worker_config(w)->exclusive.max_held)
        return false;
    ex->held = true;
    ex->hold_since_ms = sy_now_ms();
    ex->hold_next = NULL;
    ex->hold_prev = w->held_tail;
    if (w->held_tail)
        w->held_tail->hold_next = ex;
    else
        w->held_head = ex;
    w->held_tail = ex;
    w->n_held++;
    counter_add(&ex->slot->held, 1);
    if (w->n_held == 1)
        arm(w);
    return true;
}

void hold_remove(struct exchange *ex)
{
    if (!ex->held)
        return;
    struct sy_worker *w = ex->w;
    bool head = w->held_head == ex;
    note_wait(ex);
    unlink_held(ex);
    if (head)
        arm(w);
}

/* Whether `ex`'s app is held in the worker's current snapshot. */
static bool still_held(const struct sy_worker *w, const struct exchange *ex)
{
    const struct sy_config *now = sy_route_table_config(w->table);
    if (now == sy_route_table_config(ex->table))
        return sy_route_app_is_held(w->table, ex->app->index);
    long ai = sy_config_app_index(now, ex->app->name);
    return ai >= 0 && sy_route_app_is_held(w->table, (size_t)ai);
}

/* The weight app `ex->app` gives cluster `c` in table `t` (same config as the exchange's). */
static unsigned weight_in(const struct sy_route_table *t, size_t app, size_t c)
{
    const struct sy_weight_spec *wt;
    size_t n;
    sy_route_app_weights(t, app, &wt, &n);
    for (size_t i = 0; i < n; i++)
        if (wt[i].cluster == c)
            return wt[i].weight;
    return 0;
}

/* Answers a held exchange 503 with Retry-After. */
static void held_fail(struct exchange *ex, unsigned retry_after_s, const char *why)
{
    sy_error_retry_after(ex->down, retry_after_s);
    exchange_fail(ex, 503, why);
}

/* Whether table `t` (of another config than the exchange's) gives weight to the cluster the
 * held exchange was routed to, by names. */
static bool held_fits(const struct sy_route_table *t, const struct exchange *ex)
{
    const struct sy_config *cfg = sy_route_table_config(t);
    long ai = sy_config_app_index(cfg, ex->app->name);
    const char *name = exchange_cluster_name(ex);
    for (size_t c = 0; ai >= 0 && c < cfg->n_clusters; c++)
        if (strcmp(cfg->clusters[c].name, name) == 0)
            return weight_in(t, (size_t)ai, c) > 0;
    return false;
}

/* The hold of `ex` is over (hold_table_changed): it goes on to a cluster (and may fail at once
 * and be freed). */
static void held_go(struct exchange *ex)
{
    /* After an abort the cluster the request was routed to is out of the split: it goes to
     * the one the app runs on now, when the head built for the first one fits it (same
     * protocol and TLS), else it is answered 503. */
    struct sy_worker *w = ex->w;
    const struct sy_route_table *t = w->table;
    if (sy_route_table_config(t) != sy_route_table_config(ex->table)) {
        /* A reload came while it was held: the request can go on only to the cluster it was
         * routed to (the indexes of the new config are not the exchange's), when the app still
         * gives that one weight; a reload that sent the app back answers it 503. */
        if (!held_fits(t, ex))
            held_fail(ex, 1,
                      "the app's switch was undone by a reload while the request was "
                      "held: retry");
        else
            exchange_go(ex, true);
        return;
    }
    if (weight_in(t, ex->app->index, ex->cluster) == 0) {
        size_t n_c = sy_route_cluster_count(t), best = n_c;
        unsigned bw = 0;
        for (size_t c = 0; c < n_c; c++) {
            unsigned wt = weight_in(t, ex->app->index, c);
            if (wt > bw) {
                bw = wt;
                best = c;
            }
        }
        const struct sy_cluster_spec *from = sy_route_cluster(ex->table, ex->cluster);
        const struct sy_cluster_spec *to = best < n_c ? sy_route_cluster(t, best) : NULL;
        const struct sy_endpoint_spec *ep = to ? sy_route_next_endpoint(t, best) : NULL;
        if (!ep || to->protocol != from->protocol || to->tls.on != from->tls.on) {
            held_fail(ex, 1,
                      "the app's switch was aborted while the request was held: "
                      "retry");
            return;
        }
        counter_add(&ex->slot->in_flight, -1);
        ex->slot = w->slot_index[ex->app->index * n_c + best];
        counter_add(&ex->slot->requests, 1);
        counter_add(&ex->slot->in_flight, 1);
        ex->cluster = best;
        ex->endpoint = ep;
    }
    exchange_go(ex, true);
}

void hold_table_changed(struct sy_worker *w)
{
    if (!w->held_head)
        return;
    /* Released in arrival order. Sending one on may end others (a connection that fails
     * takes its streams with it), so the list is walked again from its head each time. */
    bool again = true;
    while (again) {
        again = false;
        for (struct exchange *ex = w->held_head; ex; ex = ex->hold_next) {
            if (still_held(w, ex))
                continue;
            note_wait(ex);
            unlink_held(ex);
            counter_add(&ex->slot->held_released, 1);
            held_go(ex);
            again = true;
            break;
        }
    }
    arm(w);
}

static void hold_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_worker *w = arg;
    unsigned ms = hold_ms(w);
    uint64_t now = sy_now_ms();
    size_t n = 0;
    while (w->held_head && w->held_head->hold_since_ms + ms <= now) {
        struct exchange *ex = w->held_head;
        note_wait(ex);
        unlink_held(ex);
        counter_add(&ex->slot->held_503, 1);
        char why[200];
        snprintf(why, sizeof(why),
                 "app %s is moving to another cluster and was not back within exclusive.hold "
                 "(%u ms): retry",
                 ex->app->name, ms);
        held_fail(ex, ms / 1000 ? ms / 1000 : 1, why);
        n++;
    }
    if (n)
        sy_log(SY_LOG_WARN, "hold", "worker %u: %zu held request(s) answered 503 (exclusive.hold)",
               w->id, n);
    arm(w);
}

bool hold_gate(struct exchange *ex, const struct sy_config *cfg)
{
    const struct sy_app_spec *spec = &sy_route_table_config(ex->table)->apps[ex->app->index];
    if (spec->mode != SY_APP_EXCLUSIVE)
        return false;
    char msg[320];
    if (ex->forced && spec->force_while_exclusive)
        return false;
    if (ex->forced && weight_in(ex->table, ex->app->index, ex->cluster) == 0) {
        snprintf(msg, sizeof(msg),
                 "app %s is exclusive and runs on another cluster: cluster %s cannot be forced "
                 "(force_while_exclusive is off)",
                 ex->app->name, exchange_cluster_name(ex));
        exchange_fail(ex, 503, msg);
        return true;
    }
    if (!ex->app->held)
        return false;
    if (hold_add(ex))
        return true;
    counter_add(&ex->slot->held_503, 1);
    snprintf(msg, sizeof(msg),
             "app %s is moving to another cluster and %zu requests wait already "
             "(exclusive.max_held): retry",
             ex->app->name, cfg->exclusive.max_held);
    unsigned s = cfg->exclusive.hold_ms / 1000;
    sy_error_retry_after(ex->down, s ? s : 1);
    exchange_fail(ex, 503, msg);
    return true;
}

void hold_dispose(struct sy_worker *w)
{
    if (w->hold_timer)
        event_free(w->hold_timer);
    w->hold_timer = NULL;
}
