/* SPDX-License-Identifier: MIT */
/* Caps on the connections to each endpoint of a cluster (clusters.NAME.max_connections), and
 * the queue of requests that wait for one. Everything is per worker and per endpoint pool, so
 * nothing here takes a lock: a worker's pools are its own. A request that finds every
 * connection busy waits in its pool's queue (at most queue.max of them, each at most
 * queue.timeout, then 503); the queue is served in arrival order whenever a connection goes
 * back to the pool or closes (HTTP/1.1) or a stream slot frees up (HTTP/2). Serving runs from
 * a zero-delay event, never inside the callback that freed the connection, so that an
 * exchange never starts in the middle of another one's end. A new request queues behind the
 * waiting ones even when a connection is free at that moment: it is theirs. */
#include <stdio.h>
#include <stdlib.h>

#include "proxy_internal.h"

static void serve_cb(evutil_socket_t fd, short what, void *arg);

bool queue_has_room(const struct pool *p, const struct sy_cluster_spec *cl)
{
    if (!cl->max_connections)
        return true;
    if (p->proto == SY_PROTO_HTTP1)
        return p->n_idle > 0 || p->n_conns < cl->max_connections;
    return h2up_has_room(p, cl->max_connections);
}

static void expired_cb(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *ex = arg;
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    char why[320];
    snprintf(why, sizeof(why),
             "cluster %s (%s): no connection came free within queue.timeout (%u ms; "
             "max_connections %zu)",
             cl->name, ex->endpoint->address, cl->queue_timeout_ms, cl->max_connections);
    queue_remove(ex);
    counter_add(&ex->slot->queue_503, 1);
    exchange_queue_expired(ex, why);
}

static void push(struct exchange *ex, struct pool *p, bool front)
{
    struct sy_worker *w = ex->w;
    if (!p->q_ev)
        p->q_ev = event_new(w->base, -1, 0, serve_cb, p);
    if (!ex->q_timer)
        ex->q_timer = evtimer_new(w->base, expired_cb, ex);
    if (!p->q_ev || !ex->q_timer) {
        sy_log(SY_LOG_ERROR, "queue", "out of memory"); /* as sy_xcalloc does */
        abort();
    }
    ex->q_pool = p;
    if (front) {
        ex->q_prev = NULL;
        ex->q_next = p->q_head;
        if (p->q_head)
            p->q_head->q_prev = ex;
        else
            p->q_tail = ex;
        p->q_head = ex;
    } else {
        ex->q_next = NULL;
        ex->q_prev = p->q_tail;
        if (p->q_tail)
            p->q_tail->q_next = ex;
        else
            p->q_head = ex;
        p->q_tail = ex;
    }
    p->n_queued++;
    counter_add(&ex->slot->queued, 1);
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    struct timeval tv = ms_tv(cl->queue_timeout_ms);
    evtimer_add(ex->q_timer, &tv);
    /* Room may be there already (a retry that freed its own connection): look next turn. */
    if (front)
        queue_kick(p);
}

enum queue_admit queue_admit(struct exchange *ex, struct pool *p, const struct sy_cluster_spec *cl)
{
    if (!cl->max_connections)
        return QUEUE_GO;
    if (!p->q_head && queue_has_room(p, cl))
        return QUEUE_GO;
    if (p->n_queued >= cl->queue_max)
        return QUEUE_FULL;
    push(ex, p, false);
    return QUEUE_WAITING;
}

void queue_push_front(struct exchange *ex, struct pool *p)
{
    push(ex, p, true);
}

void queue_remove(struct exchange *ex)
{
    struct pool *p = ex->q_pool;
    if (!p)
        return;
    if (ex->q_prev)
        ex->q_prev->q_next = ex->q_next;
    else
        p->q_head = ex->q_next;
    if (ex->q_next)
        ex->q_next->q_prev = ex->q_prev;
    else
        p->q_tail = ex->q_prev;
    ex->q_next = ex->q_prev = NULL;
    ex->q_pool = NULL;
    p->n_queued--;
    counter_add(&ex->slot->queued, -1);
    evtimer_del(ex->q_timer);
}

/* Starts waiting exchanges, oldest first, while their cluster's cap leaves room. Starting
 * one takes or opens a connection (or a stream slot), so room is looked at again each time;
 * one that fails at once (502) makes room for the next. */
static void serve_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pool *p = arg;
    while (p->q_head) {
        struct exchange *ex = p->q_head;
        if (!queue_has_room(p, sy_route_cluster(ex->table, ex->cluster)))
            break;
        queue_remove(ex);
        exchange_dequeued(ex);
    }
}

void queue_pool_dispose(struct pool *p)
{
    if (p->q_ev)
        event_free(p->q_ev);
    p->q_ev = NULL;
}
