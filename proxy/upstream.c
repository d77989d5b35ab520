/* SPDX-License-Identifier: MIT */
/* Upstream HTTP/1.1 connections and their per-worker pools. A pool is keyed by endpoint
 * address, so it outlives routing snapshots: a reload that keeps an endpoint keeps its warm
 * connections. Idle connections sit in a LIFO list (the warmest is reused first) watched for
 * the server closing them, and are closed after upstream_idle. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy_internal.h"

static struct pool *pool_for(struct sy_worker *w, const struct sockaddr_storage *addr,
                             socklen_t len)
{
    for (struct pool *p = w->pools; p; p = p->next)
        if (p->addrlen == len && memcmp(&p->addr, addr, len) == 0)
            return p;
    struct pool *p = sy_xcalloc(1, sizeof(*p));
    memcpy(&p->addr, addr, len);
    p->addrlen = len;
    p->next = w->pools;
    w->pools = p;
    return p;
}

static void unlink_idle(struct upstream *up)
{
    struct pool *p = up->pool;
    for (struct upstream **pp = &p->idle; *pp; pp = &(*pp)->next) {
        if (*pp == up) {
            *pp = up->next;
            p->n_idle--;
            break;
        }
    }
    up->next = NULL;
}

static void upstream_free(struct upstream *up)
{
    bufferevent_free(up->bev);
    free(up);
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct upstream *up = arg;
    if (up->ex)
        exchange_upstream_readable(up->ex);
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct upstream *up = arg;
    if (up->ex)
        exchange_upstream_drained(up->ex);
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct upstream *up = arg;
    if (what & BEV_EVENT_CONNECTED) {
        up->connected = true;
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (up->ex)
            exchange_upstream_connected(up->ex);
        return;
    }
    if (up->ex) {
        exchange_upstream_event(up->ex, what);
        return;
    }
    /* An idle connection closed by the server, or idle too long. */
    unlink_idle(up);
    upstream_free(up);
}

/* Anything an idle connection receives is a protocol error or a close: drop it. */
static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    struct upstream *up = arg;
    unlink_idle(up);
    upstream_free(up);
}

struct upstream *upstream_get(struct sy_worker *w, const struct sy_endpoint_spec *ep,
                              struct exchange *ex, bool fresh)
{
    const struct sy_config *cfg = worker_config(w);
    struct pool *p = pool_for(w, &ep->addr, ep->addrlen);
    p->retired = false;
    struct upstream *up = fresh ? NULL : p->idle;
    if (up) {
        unlink_idle(up);
        up->ex = ex;
        up->reused = true;
        bufferevent_setcb(up->bev, up_read_cb, up_write_cb, up_event_cb, up);
        bufferevent_set_timeouts(up->bev, NULL, NULL);
        bufferevent_enable(up->bev, EV_READ | EV_WRITE);
        return up;
    }
    up = sy_xcalloc(1, sizeof(*up));
    up->w = w;
    up->pool = p;
    up->ex = ex;
    up->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!up->bev) {
        free(up);
        return NULL;
    }
    size_t high = cfg->limits.buffer_bytes;
    if (high < cfg->limits.max_header_bytes + 1)
        high = cfg->limits.max_header_bytes + 1;
    bufferevent_setwatermark(up->bev, EV_READ, 0, high);
    bufferevent_set_max_single_read(up->bev, high);
    bufferevent_set_max_single_write(up->bev, MAX_SINGLE_WRITE);
    bufferevent_setcb(up->bev, up_read_cb, up_write_cb, up_event_cb, up);
    /* libevent times a connect with the write timeout. */
    unsigned ms = cfg->timeouts.upstream_connect_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    bufferevent_set_timeouts(up->bev, NULL, &tv);
    bufferevent_enable(up->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(up->bev, (const struct sockaddr *)&ep->addr, (int)ep->addrlen) ==
        -1) {
        /* Immediate failure (e.g. no route): reported like a refused connection. */
        bufferevent_free(up->bev);
        free(up);
        return NULL;
    }
    return up;
}

void upstream_release(struct upstream *up, bool reusable)
{
    struct sy_worker *w = up->w;
    const struct sy_config *cfg = worker_config(w);
    up->ex = NULL;
    struct pool *p = up->pool;
    if (!reusable || w->draining || p->retired || p->n_idle >= cfg->limits.upstream_keepalive ||
        evbuffer_get_length(bufferevent_get_input(up->bev)) > 0 ||
        evbuffer_get_length(bufferevent_get_output(up->bev)) > 0) {
        upstream_free(up);
        return;
    }
    up->reused = false;
    up->read_paused = false;
    unsigned ms = cfg->timeouts.upstream_idle_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    bufferevent_setcb(up->bev, idle_read_cb, NULL, up_event_cb, up);
    bufferevent_set_timeouts(up->bev, &tv, NULL);
    bufferevent_enable(up->bev, EV_READ);
    up->next = p->idle;
    p->idle = up;
    p->n_idle++;
}

void upstream_forget_endpoints(struct sy_worker *w)
{
    const struct sy_config *cfg = worker_config(w);
    for (struct pool *p = w->pools; p; p = p->next) {
        bool used = false;
        for (size_t c = 0; c < cfg->n_clusters && !used; c++)
            for (size_t e = 0; e < cfg->clusters[c].n_endpoints && !used; e++) {
                const struct sy_endpoint_spec *ep = &cfg->clusters[c].endpoints[e];
                used = ep->addrlen == p->addrlen && memcmp(&ep->addr, &p->addr, p->addrlen) == 0;
            }
        if (used || p->retired)
            continue;
        p->retired = true;
        while (p->idle) {
            struct upstream *up = p->idle;
            p->idle = up->next;
            p->n_idle--;
            upstream_free(up);
        }
    }
}

void upstream_free_pools(struct sy_worker *w)
{
    while (w->pools) {
        struct pool *p = w->pools;
        w->pools = p->next;
        while (p->idle) {
            struct upstream *up = p->idle;
            p->idle = up->next;
            upstream_free(up);
        }
        free(p);
    }
}
