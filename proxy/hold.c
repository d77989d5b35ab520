/* SPDX-License-Identifier: MIT */
/* The exclusive switch's hold on the workers. While an exclusive app moves (admin/exclusive.c),
 * the control thread publishes a snapshot that marks the app held: a new request for it is
 * routed and its head built as usual, then parked here instead of being sent, in one list per
 * worker in arrival order, with the same backpressure as the connection queue (its body is not
 * read beyond the usual buffer; an HTTP/2 stream waits on its own). When a snapshot that no
 * longer holds the app is installed, the held requests go on, oldest first; when
 * exclusive.hold runs out first, they are answered 503 with Retry-After. Everything here is
 * the worker's own: no lock, and nothing is allocated per request (the links live in the
 * exchange). */
#include <stdio.h>
#include <stdlib.h>

#include "proxy_internal.h"

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

bool hold_add(struct exchange *ex)
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
            exchange_held_go(ex);
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
        exchange_held_fail(ex, ms / 1000 ? ms / 1000 : 1, why);
        n++;
    }
    if (n)
        sy_log(SY_LOG_WARN, "hold", "worker %u: %zu held request(s) answered 503 (exclusive.hold)",
               w->id, n);
    arm(w);
}

void hold_dispose(struct sy_worker *w)
{
    if (w->hold_timer)
        event_free(w->hold_timer);
    w->hold_timer = NULL;
}
