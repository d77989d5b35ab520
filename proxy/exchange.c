/* SPDX-License-Identifier: MIT */
/* One request in flight, from a downstream request (an HTTP/1.1 connection's current request
 * or an HTTP/2 stream) to one upstream stream and back, each side behind its table of
 * operations (struct downstream, struct upstream_ops). What is the exchange's own is here: its
 * life (a per-worker cache, counters at its end), routing once from the head, the choice of
 * upstream client, the relay of the bodies both ways with their limits, the retry rule and the
 * end. Backpressure: a direction stops reading when the other side holds buffer_bytes, and
 * resumes when that drains to half. Steps with a concern of their own live beside it:
 * rewrite.c (the head as the cluster gets it), answer.c (the answers switchyard makes
 * itself), hold.c (exclusive apps), drain.c (drain_after). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "switchyard/health.h"

#include "exchange_internal.h"

/* Finished exchanges a worker keeps for reuse. None under AddressSanitizer, so that a use
 * after the end of an exchange is still caught there. */
#if defined(__SANITIZE_ADDRESS__)
static const bool exchange_cache_on = false;
#else
static const bool exchange_cache_on = true;
#endif
#define EXCHANGE_CACHE 1024

static const char *cluster_name(const struct exchange *ex)
{
    return sy_route_cluster(ex->table, ex->cluster)->name;
}

const char *exchange_cluster_name(const struct exchange *ex)
{
    return cluster_name(ex);
}

/* The exchange leaves its upstream stream, if it has one. */
static void up_cancel(struct exchange *ex, bool complete)
{
    if (ex->ups)
        ex->uops->cancel(ex, complete);
}

/* The exchange's figures for /metrics: status class, duration, time to head, bytes. Only
 * this worker writes its slot. */
static void count_end(struct exchange *ex)
{
    struct traffic_slot *s = ex->slot;
    int cls = ex->status >= 100 && ex->status < 600 ? ex->status / 100 : 0;
    counter_add(&s->by_class[cls], 1);
    uint64_t now = sy_clock_us();
    uint64_t dur = now > ex->start_us ? now - ex->start_us : 0;
    counter_add(&s->dur[sy_lat_bucket(dur)], 1);
    counter_add(&s->dur_sum_us, (int64_t)dur);
    if (ex->head_us) {
        uint64_t head = ex->head_us > ex->start_us ? ex->head_us - ex->start_us : 0;
        counter_add(&s->head_lat[sy_lat_bucket(head)], 1);
        counter_add(&s->head_sum_us, (int64_t)head);
        counter_add(&s->head_count, 1);
    }
    counter_add(&s->bytes_in, (int64_t)ex->req_body_bytes);
    counter_add(&s->bytes_out, (int64_t)ex->resp_bytes);
}

static void exchange_free(struct exchange *ex)
{
    if (ex->w->alog)
        access_log_exchange(ex);
    if (ex->w->drain_cut == ex)
        ex->w->drain_cut = NULL;
    queue_remove(ex); /* a client that goes away while waiting is forgotten */
    hold_remove(ex);  /* ... and so is one held by an exclusive switch */
    up_cancel(ex, false);
    if (ex->w_prev)
        ex->w_prev->w_next = ex->w_next;
    else if (ex->w->exchanges == ex)
        ex->w->exchanges = ex->w_next;
    if (ex->w_next)
        ex->w_next->w_prev = ex->w_prev;
    if (ex->slot) {
        counter_add(&ex->slot->in_flight, -1);
        if (ex->tunnel)
            counter_add(&ex->slot->tunnels, -1);
        if (ex->status >= 500)
            counter_add(&ex->slot->responses_5xx, 1);
        count_end(ex);
    }
    free(ex->set_cookie);
    sy_route_table_release(ex->table);
    struct sy_worker *w = ex->w;
    if (exchange_cache_on && w->n_ex_cache < EXCHANGE_CACHE && !w->draining) {
        /* Kept, with its two buffers emptied (their chains go back to malloc). */
        evbuffer_drain(ex->tmp, evbuffer_get_length(ex->tmp));
        evbuffer_drain(ex->trailers, evbuffer_get_length(ex->trailers));
        ex->w_next = w->ex_cache;
        w->ex_cache = ex;
        w->n_ex_cache++;
        return;
    }
    evbuffer_free(ex->tmp);
    evbuffer_free(ex->trailers);
    if (ex->q_timer)
        event_free(ex->q_timer);
    free(ex);
}

const char exchange_nomem_reason[] = "out of memory";

/* A zeroed exchange with its two buffers, from the worker's cache when it has one: a
 * request then costs no allocation for its exchange. NULL when a buffer could not be had:
 * that request is answered 503 (exchange_nomem_reason) and the others go on. */
static struct exchange *exchange_alloc(struct sy_worker *w)
{
    struct exchange *ex = w->ex_cache;
    if (!ex) {
        ex = sy_xcalloc(1, sizeof(*ex));
        ex->tmp = evbuffer_new();
        ex->trailers = evbuffer_new();
        if (ex->tmp && ex->trailers)
            return ex;
        struct evbuffer *got = ex->tmp ? ex->tmp : ex->trailers; /* one at most, or none */
        if (got)
            evbuffer_free(got);
        free(ex);
        return NULL;
    }
    w->ex_cache = ex->w_next;
    w->n_ex_cache--;
    struct evbuffer *tmp = ex->tmp, *trailers = ex->trailers;
    struct event *q_timer = ex->q_timer;
    memset(ex, 0, sizeof(*ex));
    ex->tmp = tmp;
    ex->trailers = trailers;
    ex->q_timer = q_timer;
    return ex;
}

struct exchange *exchange_new(struct downstream *d, const struct req_head *req,
                              struct sy_route_table *t, const struct sy_route_app *app)
{
    struct sy_worker *w = d->conn->w;
    struct exchange *ex = exchange_alloc(w);
    if (!ex)
        return NULL;
    ex->down = d;
    ex->w = w;
    access_exchange_begin(ex, req);
    ex->table = t;
    ex->app = app;
    ex->head_request = sy_slice_ieq(req->method, "HEAD");
    ex->req_done = req->framing == SY_H1_BODY_NONE ||
                   (req->framing == SY_H1_BODY_LENGTH && req->content_length == 0);
    return ex;
}

void exchange_cache_free(struct sy_worker *w)
{
    while (w->ex_cache) {
        struct exchange *ex = w->ex_cache;
        w->ex_cache = ex->w_next;
        evbuffer_free(ex->tmp);
        evbuffer_free(ex->trailers);
        if (ex->q_timer)
            event_free(ex->q_timer);
        free(ex);
    }
    w->n_ex_cache = 0;
    h1up_cache_free();
    h2up_cache_free();
}

void exchange_finish(struct exchange *ex, bool reusable)
{
    struct downstream *d = ex->down;
    up_cancel(ex, reusable && ex->req_done);
    d->ex = NULL;
    exchange_free(ex);
    d->ops->finish(d, reusable);
}

void exchange_fail(struct exchange *ex, int status, const char *why)
{
    struct downstream *d = ex->down;
    struct traffic_slot *slot = ex->slot; /* slots outlive exchanges (worker.c) */
    bool started = ex->resp_started;
    if (!started) {
        ex->status = status;
        if (!ex->generated)
            ex->generated = sy_own_reason(status);
    }
    up_cancel(ex, false);
    d->ex = NULL;
    exchange_free(ex);
    if (started) {
        sy_log(SY_LOG_INFO, "http", "conn %llu: response cut: %s", (unsigned long long)d->conn->id,
               why);
        d->ops->abort(d);
    } else {
        d->own_slot = slot;
        d->ops->send_error(d, status, why);
    }
}

void exchange_queue_expired(struct exchange *ex, const char *why)
{
    exchange_fail(ex, 503, why);
}

void exchange_downstream_gone(struct exchange *ex)
{
    up_cancel(ex, false);
    ex->down->ex = NULL;
    exchange_free(ex);
}

/* The exchange for a request routed to `choice` (endpoint `ep`) of `app`, linked into the
 * worker's list and the downstream; it holds the table reference `t`. NULL as exchange_new. */
static struct exchange *exchange_begin(struct downstream *d, const struct req_head *req,
                                       struct sy_route_table *t, const struct sy_route_app *app,
                                       const struct sy_route_choice *choice,
                                       const struct sy_endpoint_spec *ep)
{
    struct sy_worker *w = d->conn->w;
    struct exchange *ex = exchange_new(d, req, t, app);
    if (!ex)
        return NULL;
    /* The slot index follows w->table; the exchange's table is the same one here. */
    ex->slot = w->slot_index[app->index * sy_route_cluster_count(t) + choice->cluster];
    counter_add(&ex->slot->requests, 1);
    counter_add(&ex->slot->in_flight, 1);
    ex->start_us = sy_clock_us();
    ex->cluster = choice->cluster;
    ex->endpoint = ep;
    /* RFC 9110 §9.2.2: only safe methods are retried on our own (the cluster may have acted
     * on the request before the connection closed). */
    ex->safe = ex->head_request || sy_slice_ieq(req->method, "GET") ||
               sy_slice_ieq(req->method, "OPTIONS") || sy_slice_ieq(req->method, "TRACE");
    if (choice->set_cookie_len)
        ex->set_cookie = sy_xstrndup(choice->set_cookie, choice->set_cookie_len);
    ex->expect_continue = req->expect_continue && !ex->req_done;
    ex->upgrade_asked = req->upgrade.len > 0;
    ex->forced = choice->reason == SY_PICK_FORCE;
    ex->rule = choice->rule;
    ex->w_next = w->exchanges;
    if (w->exchanges)
        w->exchanges->w_prev = ex;
    w->exchanges = ex;
    d->ex = ex;
    return ex;
}

void exchange_start(struct downstream *d, const struct req_head *req)
{
    struct sy_worker *w = d->conn->w;
    const struct sy_config *cfg = worker_config(w);
    access_begin(d, req);
    struct req_head stripped;
    req = exchange_websocket_only(req, &stripped);
    if (req->framing == SY_H1_BODY_LENGTH && cfg->limits.max_body_bytes &&
        req->content_length > cfg->limits.max_body_bytes) {
        d->ops->send_error(d, 413, "request body is larger than limits.max_body_bytes");
        return;
    }
    struct sy_slice path = req->target;
    const char *q = memchr(path.p, '?', path.len);
    if (q)
        path.len = (size_t)(q - path.p);

    struct sy_route_table *t = sy_route_table_acquire(w->table);
    const struct sy_route_app *app = sy_route_match(t, req->authority, path);
    if (!app) {
        exchange_answer_no_app(d, req, t, path);
        return;
    }
    const struct sy_route_maint_answer *maint = sy_route_app_maintenance(t, app);
    if (maint) {
        exchange_answer_maintenance(d, req, t, app, maint);
        return;
    }
    struct sy_route_req rreq = {
        .host = req->authority,
        .path = path,
        .headers = req->headers,
        .n_headers = req->n_headers,
        .client = (const struct sockaddr *)&d->conn->addr,
        .tls = d->conn->tls,
        .now = (uint64_t)time(NULL),
        .rnd = worker_random(w),
    };
    struct sy_route_choice choice;
    sy_route_pick(t, app, &rreq, &choice);
    if (choice.down) {
        exchange_answer_cluster_down(d, t, app, choice.cluster);
        return;
    }
    const struct sy_endpoint_spec *ep = sy_route_next_endpoint(t, choice.cluster);
    if (!ep) {
        exchange_answer_own(d, t, app, choice.cluster, 502, "the chosen cluster has no endpoints");
        return;
    }
    struct exchange *ex = exchange_begin(d, req, t, app, &choice, ep);
    if (!ex) {
        exchange_answer_own(d, t, app, choice.cluster, 503, exchange_nomem_reason);
        return;
    }
    const struct sy_cluster_spec *cl = sy_route_cluster(t, choice.cluster);
    sy_cluster_count_request(cl->hs, &cl->retry_budget, sy_clock_ms());
    if (cl->protocol != SY_PROTO_HTTP1 && ex->upgrade_asked) {
        char msg[320];
        snprintf(msg, sizeof(msg),
                 "cluster %s speaks HTTP/2: an HTTP/1.1 Upgrade (WebSocket) needs an http1 "
                 "cluster",
                 cl->name);
        exchange_fail(ex, 502, msg);
        return;
    }
    ex->uops = cl->protocol != SY_PROTO_HTTP1 ? &h2_upstream_ops : &h1_upstream_ops;
    ex->uops->prepare(ex, req, cl->tls.on);
    if (ex->head_lost) {
        /* A part of the head could not be buffered: sent, it would be another request. */
        exchange_fail(ex, 503, exchange_nomem_reason);
        return;
    }
    if (hold_gate(ex, cfg))
        return;
    exchange_go(ex, false);
}

/* Passive health: one answer or failure of the exchange's endpoint, for outlier ejection. */
static void note_endpoint(struct exchange *ex, bool failed, int status)
{
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    struct sy_ep_health *h = ex->endpoint->hs;
    if (!h || !cl->outlier.on)
        return;
    enum sy_health_reason why = status ? SY_HR_EJECT_5XX : SY_HR_EJECT_CONNECT;
    uint64_t len = sy_ep_note(h, &cl->outlier, failed, why, status, sy_clock_ms());
    if (len)
        sy_log(SY_LOG_WARN, "health",
               "cluster %s endpoint %s ejected for %llu ms: %u %s in a row (ejection %u in a "
               "row)",
               cl->name, ex->endpoint->address, (unsigned long long)len,
               cl->outlier.consecutive_failures, status ? "5xx answers" : "connect failures",
               (unsigned)atomic_load_explicit(&h->ejections, memory_order_relaxed));
}

/* A connect that failed (nothing of the request reached the cluster) goes once more, to
 * another endpoint of the cluster that is up, whatever the method (or, for a request HTTP/2
 * may repeat, to the same one when no other is up), when the cluster's retry budget has
 * room. `body_kept`: the client kept what of the request body it had taken, so a
 * body begun does not forbid it; `late` as for start (false while the codec has not consumed
 * the head). Returns true when the retry is under way (or queued). */
static bool retry_connect(struct exchange *ex, bool body_kept, bool late)
{
    if (ex->connect_retried || ex->retried || ex->resp_started || ex->w->draining ||
        (ex->req_body_started && !body_kept))
        return false;
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    bool up = false;
    const struct sy_endpoint_spec *ep =
        sy_route_next_endpoint_avoiding(ex->table, ex->cluster, ex->endpoint, &up);
    if (!ep || !up || ep == ex->endpoint) {
        /* No other endpoint up: a request HTTP/2 may repeat (safe, no byte taken) goes once
         * more on a fresh connection to the same one, as it always did; within the budget. */
        if (!(ex->safe && ex->uops->retry_safe))
            return false;
        ep = ex->endpoint;
    }
    if (!sy_cluster_take_retry(cl->hs, &cl->retry_budget, sy_clock_ms()))
        return false;
    ex->retries_charged++;
    ex->connect_retried = true;
    const char *reason = NULL;
    struct pool *p = upstream_pool(ex->w, ep, cl);
    const struct sy_endpoint_spec *was = ex->endpoint;
    ex->endpoint = ep; /* what the next error names */
    if (!queue_has_room(p, cl)) {
        queue_push_front(ex, p);
        return true;
    }
    if (ex->uops->start(ex, p, cl, late, &reason))
        return true;
    ex->endpoint = was;
    return false;
}

void exchange_go(struct exchange *ex, bool late)
{
    struct sy_worker *w = ex->w;
    const struct sy_endpoint_spec *ep = ex->endpoint;
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    const char *why = NULL;
    char msg[320];
    if (cl->max_connections) {
        struct pool *p = upstream_pool(w, ep, cl);
        switch (queue_admit(ex, p, cl)) {
        case QUEUE_GO:
            break;
        case QUEUE_WAITING:
            return; /* exchange_dequeued goes on */
        case QUEUE_FULL:
            counter_add(&ex->slot->queue_503, 1);
            snprintf(msg, sizeof(msg),
                     "cluster %s (%s): all %zu connections are busy and %zu requests wait "
                     "already (queue.max)",
                     cl->name, ep->address, cl->max_connections, p->n_queued);
            exchange_fail(ex, 503, msg);
            return;
        }
    }
    if (ex->uops->start(ex, upstream_pool(w, ep, cl), cl, late, &why))
        return;
    if (why != exchange_nomem_reason && why != upstream_limit_reason) {
        /* The connect failed at once (no route, no descriptor): as a refusal. */
        note_endpoint(ex, true, 0);
        if (retry_connect(ex, false, late))
            return;
    }
    exchange_fail_connect(ex, why);
}

void exchange_dequeued(struct exchange *ex)
{
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    const char *why = NULL;
    /* The codec consumed the head long ago: the body may be pulled at once. */
    if (!ex->uops->start(ex, upstream_pool(ex->w, ex->endpoint, cl), cl, true, &why))
        exchange_fail_connect(ex, why);
}

static void maybe_finish(struct exchange *ex)
{
    if (ex->resp_done)
        exchange_finish(ex, ex->req_done); /* a response that ends before its request: no reuse */
}

/* Request body: downstream -> upstream output. */
void exchange_body_ready(struct exchange *ex)
{
    if (ex->maint) {
        exchange_maint_body_ready(ex);
        return;
    }
    if (ex->ups)
        ex->uops->body_ready(ex);
}

void exchange_client_drained(struct exchange *ex)
{
    if (ex->ups)
        ex->uops->client_drained(ex);
}

/* ---- the upstream clients call these ---------------------------------------------------- */

void exchange_on_sent(struct exchange *ex)
{
    if (ex->connect_start_us && !ex->connect_us) {
        uint64_t now = sy_clock_us();
        ex->connect_us = now > ex->connect_start_us ? now - ex->connect_start_us : 1;
    }
    if (ex->expect_continue) {
        /* RFC 9110 §10.1.1: the cluster is reachable, so let the client send its body. */
        ex->expect_continue = false;
        ex->down->ops->send_continue(ex->down);
    }
}

/* A 101 from the cluster: only the WebSocket switch the client asked for is relayed. */
static bool switch_ok(struct exchange *ex, const struct resp_head *h)
{
    if (!ex->upgrade_asked || !ex->down->ops->start_tunnel) {
        exchange_fail(ex, 502, "the cluster switched protocols without being asked");
        return false;
    }
    if (!sy_slice_ieq(h->upgrade, "websocket")) {
        exchange_fail(ex, 502, "the cluster switched to a protocol other than websocket");
        return false;
    }
    return true;
}

/* After a 101: raw bytes both ways, each direction with its usual backpressure, until the
 * cluster closes (the client's close is passed on as a half-close). */
static void start_tunnel(struct exchange *ex)
{
    ex->tunnel = true;
    counter_add(&ex->slot->tunnels, 1);
    ex->req_done = false;
    ex->down->ops->start_tunnel(ex->down);
}

bool exchange_on_head(struct exchange *ex, const struct resp_head *head)
{
    if (head->status == 101 && !switch_ok(ex, head))
        return false;
    if (head->status != 101 && (head->status < 200 || head->status > 999)) {
        char why[160];
        snprintf(why, sizeof(why), "cluster %s sent an invalid response: status %d",
                 cluster_name(ex), head->status);
        exchange_fail(ex, 502, why);
        return false;
    }
    note_endpoint(ex, head->status >= 500, head->status >= 500 ? head->status : 0);
    if (ex->retries_charged && head->status < 500) {
        /* The retries worked: they cost the budget nothing (only failing retries are bounded). */
        const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
        for (; ex->retries_charged; ex->retries_charged--)
            sy_cluster_retry_worked(cl->hs);
    }
    struct resp_head h = *head;
    h.set_cookie = ex->set_cookie;
    ex->status = h.status;
    ex->down->ops->send_head(ex->down, &h);
    ex->resp_started = true;
    ex->head_us = sy_clock_us();
    if (h.status == 101)
        start_tunnel(ex);
    return true;
}

size_t exchange_body_room(struct exchange *ex)
{
    size_t budget = sy_route_table_config(ex->table)->limits.buffer_bytes;
    size_t queued = ex->down->ops->queued(ex->down);
    return queued < budget ? budget - queued : 0;
}

bool exchange_on_body(struct exchange *ex, struct evbuffer *src, size_t n)
{
    struct downstream *d = ex->down;
    if (!ex->resp_started || ex->resp_done || ex->head_request) {
        evbuffer_drain(src, n);
        return true; /* nothing to relay (the client checked the framing) */
    }
    ex->resp_bytes += n;
    d->ops->send_body(d, src, n);
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    return d->ops->queued(d) < cfg->limits.buffer_bytes / 2;
}

void exchange_on_end(struct exchange *ex, struct evbuffer *trailers)
{
    if (ex->resp_done)
        return;
    ex->resp_done = true;
    ex->down->ops->send_end(ex->down, trailers);
    maybe_finish(ex);
}

/* Whether a failed request goes again: when the cluster did not act on it (a few times, as a
 * burst sent before a server's SETTINGS can meet its stream limit twice), or once when it is
 * safe to repeat and the protocol says so; never once the response started or a body byte
 * went, nor while the worker drains. */
static bool retry_wanted(struct exchange *ex, bool unprocessed)
{
    if (ex->resp_started || ex->w->draining || ex->req_body_started)
        return false;
    if (unprocessed && ex->refused < 4) {
        ex->refused++;
        return true;
    }
    /* One retry of a request the cluster may have acted on, whichever way it failed: after a
     * failed connect went again (retry_connect), its reset is not repeated, and the other way
     * round. */
    if (!ex->retried && !ex->connect_retried &&
        (unprocessed || (ex->safe && ex->uops->retry_safe))) {
        ex->retried = true;
        return true;
    }
    return false;
}

bool exchange_on_error(struct exchange *ex, bool unprocessed, int status, const char *why)
{
    if (ex->connect_failed) {
        /* Only the endpoint retry, within the budget, so that a failing cluster sees no
         * storm; the client kept what of the body it had taken (h1_client.c). */
        ex->connect_failed = false;
        note_endpoint(ex, true, 0);
        if (retry_connect(ex, true, true))
            return true;
        exchange_fail(ex, status, why);
        return false;
    }
    if (!ex->resp_started && !unprocessed && (status == 502 || status == 504))
        note_endpoint(ex, true, status); /* no answer, or not HTTP: the endpoint's 5xx */
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    /* A safe request whose reused connection was reset draws on the budget too, so that a
     * cluster that resets everything sees no storm. A stream the cluster refused unprocessed
     * does not: a burst sent before a server's SETTINGS meets its stream limit many times at
     * once, each at most four times (retry_wanted), and that is the protocol at work. */
    bool charge = !unprocessed;
    if (retry_wanted(ex, unprocessed) &&
        (!charge || sy_cluster_take_retry(cl->hs, &cl->retry_budget, sy_clock_ms()))) {
        if (charge)
            ex->retries_charged++;
        const struct sy_endpoint_spec *ep = sy_route_next_endpoint(ex->table, ex->cluster);
        const char *reason = NULL;
        struct pool *p = ep ? upstream_pool(ex->w, ep, cl) : NULL;
        if (p && !queue_has_room(p, cl)) {
            /* At max_connections: first in line for a connection. */
            ex->endpoint = ep;
            queue_push_front(ex, p);
            return true;
        }
        if (p) {
            const struct sy_endpoint_spec *was = ex->endpoint;
            ex->endpoint = ep; /* what the next error names */
            if (ex->uops->start(ex, p, cl, true, &reason))
                return true;
            ex->endpoint = was;
        }
    }
    exchange_fail(ex, status, why);
    return false;
}

ssize_t exchange_pull_body(struct exchange *ex, struct evbuffer *out, size_t max, bool *done)
{
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    const char *why = NULL;
    ssize_t n = ex->down->ops->pull_body(ex->down, out, max, ex->trailers, done, &why);
    if (n < 0) {
        exchange_fail(ex, why == exchange_nomem_reason ? 503 : 400,
                      why ? why : "malformed request body");
        return -1;
    }
    if (n > 0) {
        ex->req_body_started = true;
        ex->req_body_bytes += (uint64_t)n;
        if (cfg->limits.max_body_bytes && ex->req_body_bytes > cfg->limits.max_body_bytes) {
            exchange_fail(ex, 413, "request body is larger than limits.max_body_bytes");
            return -1;
        }
    }
    if (*done)
        ex->req_done = true;
    return n;
}
