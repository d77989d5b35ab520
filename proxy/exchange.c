/* SPDX-License-Identifier: MIT */
/* One request in flight, from a downstream request (an HTTP/1.1 connection's current request
 * or an HTTP/2 stream) to one upstream HTTP/1.1 connection and back. The request is routed
 * once, from its head; the head is rewritten for the upstream (hop-by-hop fields dropped,
 * X-Forwarded-* and Via added, framing restated) and the bodies stream through in both
 * directions, chunked bodies decoded and re-encoded so that only framing we validated leaves
 * the proxy. Backpressure: a direction stops reading when the other side holds buffer_bytes,
 * and resumes when that drains to half. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "proxy_internal.h"

#define MAX_CONN_TOKENS 16

/* Finished exchanges a worker keeps for reuse. None under AddressSanitizer, so that a use
 * after the end of an exchange is still caught there. */
#if defined(__SANITIZE_ADDRESS__)
static const bool exchange_cache_on = false;
#else
static const bool exchange_cache_on = true;
#endif
#define EXCHANGE_CACHE 64

static void answer_maintenance(struct downstream *d, const struct req_head *req,
                               struct sy_route_table *t, const struct sy_route_app *app,
                               const struct sy_route_maint_answer *m);

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

/* Monotonic microseconds (vDSO: no system call). */
static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The exchange's figures for /metrics: status class, duration, time to head, bytes. Only
 * this worker writes its slot. */
static void count_end(struct exchange *ex)
{
    struct traffic_slot *s = ex->slot;
    int cls = ex->status >= 100 && ex->status < 600 ? ex->status / 100 : 0;
    counter_add(&s->by_class[cls], 1);
    uint64_t now = mono_us();
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
        if (!ex->tmp || !ex->trailers) {
            if (ex->tmp)
                evbuffer_free(ex->tmp);
            if (ex->trailers)
                evbuffer_free(ex->trailers);
            free(ex);
            return NULL;
        }
        return ex;
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

/* Ends the exchange; the downstream goes on when `reusable`. */
static void finish(struct exchange *ex, bool reusable)
{
    struct downstream *d = ex->down;
    up_cancel(ex, reusable && ex->req_done);
    d->ex = NULL;
    exchange_free(ex);
    d->ops->finish(d, reusable);
}

/* Ends the exchange on an error: an answer of our own if the response has not started,
 * otherwise the response is cut (a truncated response must not look complete). */
static void fail(struct exchange *ex, int status, const char *why)
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

/* No connection could be had for the exchange: 503 when limits.max_upstream_connections said
 * no (the cluster was not tried), 502 when the cluster cannot be reached. */
static void fail_connect(struct exchange *ex, const char *why)
{
    char msg[320];
    if (why == upstream_limit_reason) {
        ex->generated = "upstream_limit";
        counter_add(&ex->slot->upstream_refused, 1);
        snprintf(msg, sizeof(msg), "cluster %s (%s) not tried: %s", cluster_name(ex),
                 ex->endpoint->address, why);
        fail(ex, 503, msg);
        return;
    }
    ex->generated = "upstream_connect";
    snprintf(msg, sizeof(msg), "cluster %s (%s) cannot be reached: %s", cluster_name(ex),
             ex->endpoint->address, why ? why : "no connection");
    fail(ex, 502, msg);
}

void exchange_queue_expired(struct exchange *ex, const char *why)
{
    fail(ex, 503, why);
}

void exchange_downstream_gone(struct exchange *ex)
{
    up_cancel(ex, false);
    ex->down->ex = NULL;
    exchange_free(ex);
}

/* Field classes for rewriting a request head. */
enum field {
    F_FORWARD = 0,
    F_DROP, /* hop-by-hop, or restated by us */
    F_XFF,
    F_VIA,
    F_TE,
    F_FWD, /* Forwarded: kept (and appended to) only from a trusted peer */
    F_XFP, /* X-Forwarded-Proto: believed only from a trusted peer */
    F_RID, /* X-Request-Id: replaced by the exchange's request id (access.c) */
};

static bool is_hop_by_hop(struct sy_slice n)
{
    switch (n.len) {
    case 7:
        return sy_slice_ieq(n, "upgrade");
    case 10:
        return sy_slice_ieq(n, "connection") || sy_slice_ieq(n, "keep-alive");
    case 14:
        return sy_slice_ieq(n, "content-length");
    case 16:
        return sy_slice_ieq(n, "proxy-connection");
    case 17:
        return sy_slice_ieq(n, "transfer-encoding");
    }
    return false;
}

static enum field classify_request(struct sy_slice n)
{
    if (is_hop_by_hop(n))
        return F_DROP;
    switch (n.len) {
    case 2:
        if (sy_slice_ieq(n, "te"))
            return F_TE;
        break;
    case 3:
        if (sy_slice_ieq(n, "via"))
            return F_VIA;
        break;
    case 4:
        if (sy_slice_ieq(n, "host"))
            return F_DROP;
        break;
    case 6:
        if (sy_slice_ieq(n, "expect"))
            return F_DROP;
        break;
    case 9:
        if (sy_slice_ieq(n, "forwarded"))
            return F_FWD;
        break;
    case 12:
        if (sy_slice_ieq(n, "x-request-id"))
            return F_RID;
        break;
    case 15:
        if (sy_slice_ieq(n, "x-forwarded-for"))
            return F_XFF;
        break;
    case 16:
        if (sy_slice_ieq(n, "x-forwarded-host"))
            return F_DROP;
        break;
    case 17:
        if (sy_slice_ieq(n, "x-forwarded-proto"))
            return F_XFP;
        break;
    }
    /* Proxy-Authorization and the like are meant for a proxy, never forwarded. */
    if (n.len > 6 && sy_slice_ieq(sy_slice_of(n.p, 6), "proxy-"))
        return F_DROP;
    return F_FORWARD;
}

/* The field names listed in Connection (RFC 9110 §7.6.1): hop-by-hop as well. */
static size_t connection_tokens(const struct sy_header *h, size_t n, struct sy_slice *tok)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sy_slice_ieq(h[i].name, "connection"))
            continue;
        const char *p = h[i].value.p, *end = p + h[i].value.len;
        while (p < end && count < MAX_CONN_TOKENS) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > s)
                tok[count++] = sy_slice_of(s, (size_t)(p - s));
        }
    }
    return count;
}

static bool named_by(struct sy_slice name, const struct sy_slice *tok, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sy_slice_ieq_slice(name, tok[i]))
            return true;
    return false;
}

static bool has_token(struct sy_slice v, const char *token)
{
    const char *p = v.p, *end = v.p + v.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        if (sy_slice_ieq(sy_slice_of(s, (size_t)(p - s)), token))
            return true;
        while (p < end && *p != ',')
            p++;
    }
    return false;
}

static size_t sink_pos(const struct head_sink *s)
{
    return evbuffer_get_length(s->hw.out) + s->hw.len;
}

static void sink_name(struct head_sink *s, struct sy_slice name)
{
    if (!s->h2) {
        hw_slice(&s->hw, name);
        hw_add(&s->hw, ": ", 2);
        return;
    }
    sy_xgrow((void **)&s->o, &s->cap, s->n + 1, sizeof(*s->o));
    struct nv_off *o = &s->o[s->n];
    o->name = sink_pos(s);
    o->name_len = name.len;
    char low[128];
    for (size_t i = 0; i < name.len;) {
        size_t m = name.len - i < sizeof(low) ? name.len - i : sizeof(low);
        for (size_t j = 0; j < m; j++) {
            char c = name.p[i + j];
            low[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        hw_add(&s->hw, low, m);
        i += m;
    }
    o->value = sink_pos(s);
}

static void sink_end(struct head_sink *s)
{
    if (!s->h2) {
        hw_add(&s->hw, "\r\n", 2);
        return;
    }
    s->o[s->n].value_len = sink_pos(s) - s->o[s->n].value;
    s->n++;
}

static void sink_field(struct head_sink *s, struct sy_slice name, struct sy_slice value)
{
    sink_name(s, name);
    hw_slice(&s->hw, value);
    sink_end(s);
}

static void sink_field_str(struct head_sink *s, const char *name, const char *value)
{
    sink_field(s, sy_slice_of(name, strlen(name)), sy_slice_of(value, strlen(value)));
}

/* The values of every field of class `cls`, each followed by ", " (earlier hops' entries). */
static void add_earlier(struct head_sink *s, const struct req_head *req, enum field cls,
                        size_t count)
{
    for (size_t i = 0; count && i < req->n_headers; i++) {
        if (classify_request(req->headers[i].name) == cls) {
            hw_slice(&s->hw, req->headers[i].value);
            hw_add(&s->hw, ", ", 2);
        }
    }
}

/* The request line (HTTP/1.1) or the pseudo-header fields (HTTP/2). */
static void rewrite_start(const struct req_head *req, struct head_sink *s, bool tls_up)
{
    if (s->h2) {
        sink_field(s, sy_slice_of(":method", 7), req->method);
        sink_field_str(s, ":scheme", tls_up ? "https" : "http");
        if (req->authority.len)
            sink_field(s, sy_slice_of(":authority", 10), req->authority);
        sink_field(s, sy_slice_of(":path", 5), req->target);
    } else {
        hw_slice(&s->hw, req->method);
        hw_add(&s->hw, " ", 1);
        hw_slice(&s->hw, req->target);
        hw_add(&s->hw, " HTTP/1.1\r\n", 11);
        sink_field(s, sy_slice_of("host", 4), req->authority);
    }
}

/* What the client's fields say about the hops before us, counted while they are copied. */
struct hops {
    bool te_trailers;
    size_t n_xff, n_via, n_fwd;
    struct sy_slice xfp;
};

/* Copies the end-to-end fields (not those the Connection field names) and counts the
 * forwarding ones. What earlier hops wrote is believed only from a peer in trusted_proxies
 * (after the PROXY protocol): from anyone else, X-Forwarded-For and Forwarded could name any
 * address, so they are replaced by the peer alone. */
static void rewrite_fields(const struct req_head *req, const struct conn *dc, struct head_sink *s,
                           struct hops *hp)
{
    struct sy_slice tok[MAX_CONN_TOKENS];
    size_t n_tok = connection_tokens(req->headers, req->n_headers, tok);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sy_header *h = &req->headers[i];
        switch (classify_request(h->name)) {
        case F_FORWARD:
            if (n_tok && named_by(h->name, tok, n_tok))
                break;
            sink_field(s, h->name, h->value);
            break;
        case F_TE:
            hp->te_trailers |= has_token(h->value, "trailers");
            break;
        case F_XFF:
            hp->n_xff += dc->trusted;
            break;
        case F_FWD:
            hp->n_fwd += dc->trusted;
            break;
        case F_XFP:
            if (dc->trusted && !hp->xfp.len)
                hp->xfp = h->value;
            break;
        case F_VIA:
            hp->n_via++;
            break;
        case F_DROP:
        case F_RID:
            break;
        }
    }
}

/* X-Forwarded-For, Forwarded, X-Forwarded-Proto and -Host: earlier hops (when trusted), then
 * this one. */
static void rewrite_forwarded(const struct req_head *req, const struct conn *dc,
                              struct head_sink *s, const struct hops *hp)
{
    sink_name(s, sy_slice_of("x-forwarded-for", 15));
    add_earlier(s, req, F_XFF, hp->n_xff);
    hw_str(&s->hw, dc->peer);
    sink_end(s);
    if (hp->n_fwd) {
        /* RFC 7239 §4: appended as a node; an IPv6 node is quoted and bracketed. */
        bool v6 = strchr(dc->peer, ':') != NULL;
        sink_name(s, sy_slice_of("forwarded", 9));
        add_earlier(s, req, F_FWD, hp->n_fwd);
        hw_str(&s->hw, v6 ? "for=\"[" : "for=");
        hw_str(&s->hw, dc->peer);
        if (v6)
            hw_str(&s->hw, "]\"");
        sink_end(s);
    }
    if (hp->xfp.len)
        sink_field(s, sy_slice_of("x-forwarded-proto", 17), hp->xfp);
    else
        sink_field_str(s, "x-forwarded-proto", dc->tls ? "https" : "http");
    if (req->authority.len)
        sink_field(s, sy_slice_of("x-forwarded-host", 16), req->authority);
}

void exchange_rewrite_head(struct exchange *ex, const struct req_head *req, struct head_sink *s,
                           bool tls_up)
{
    const struct conn *dc = ex->down->conn;
    struct hops hp = {0};
    rewrite_start(req, s, tls_up);
    rewrite_fields(req, dc, s, &hp);
    if (hp.te_trailers)
        sink_field_str(s, "te", "trailers");
    if (req->upgrade.len && !s->h2) {
        /* RFC 9110 §7.8: the one hop-by-hop pair we pass on, so the cluster can switch. */
        sink_field_str(s, "connection", "upgrade");
        sink_field(s, sy_slice_of("upgrade", 7), req->upgrade);
    }
    if (req->framing == SY_H1_BODY_LENGTH) {
        sink_name(s, sy_slice_of("content-length", 14));
        hw_uint(&s->hw, req->content_length, 10);
        sink_end(s);
    } else if (req->framing == SY_H1_BODY_CHUNKED && !s->h2) {
        sink_field_str(s, "transfer-encoding", "chunked");
    }
    rewrite_forwarded(req, dc, s, &hp);
    /* The request id the access log writes: the client's when it was sane, else ours. */
    sink_field(s, sy_slice_of("x-request-id", 12), sy_slice_of(ex->acc.id, ex->acc.id_len));
    sink_name(s, sy_slice_of("via", 3));
    add_earlier(s, req, F_VIA, hp.n_via);
    hw_str(&s->hw, req->version);
    hw_str(&s->hw, " switchyard");
    sink_end(s);
    if (!s->h2)
        hw_add(&s->hw, "\r\n", 2);
    hw_flush(&s->hw);
    ex->head_lost = s->hw.failed;
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

/* An exclusive app (apps[].mode): a forced request to the cluster that is not live is refused
 * unless force_while_exclusive; while a switch runs, requests are held (hold.c). Returns true
 * when the exchange was taken care of (held, or answered). */
static bool exclusive_gate(struct exchange *ex, const struct sy_config *cfg)
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
                 ex->app->name, cluster_name(ex));
        fail(ex, 503, msg);
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
    fail(ex, 503, msg);
    return true;
}

static void go(struct exchange *ex, bool late);

void exchange_held_fail(struct exchange *ex, unsigned retry_after_s, const char *why)
{
    sy_error_retry_after(ex->down, retry_after_s);
    fail(ex, 503, why);
}

/* Whether table `t` (of another config than the exchange's) gives weight to the cluster the
 * held exchange was routed to, by names. */
static bool held_fits(const struct sy_route_table *t, const struct exchange *ex)
{
    const struct sy_config *cfg = sy_route_table_config(t);
    long ai = sy_config_app_index(cfg, ex->app->name);
    const char *name = cluster_name(ex);
    for (size_t c = 0; ai >= 0 && c < cfg->n_clusters; c++)
        if (strcmp(cfg->clusters[c].name, name) == 0)
            return weight_in(t, (size_t)ai, c) > 0;
    return false;
}

void exchange_held_go(struct exchange *ex)
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
            exchange_held_fail(ex, 1,
                               "the app's switch was undone by a reload while the request was "
                               "held: retry");
        else
            go(ex, true);
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
            exchange_held_fail(ex, 1,
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
    go(ex, true);
}

/* Only WebSocket is tunnelled. Any other protocol (h2c above all: a raw HTTP/2 connection to
 * the backend, past routing and revert) is not offered to the cluster; the request is served
 * as plain HTTP/1.1 (RFC 9110 §7.8: a server may ignore Upgrade). WebSocket offered among
 * others is offered alone. Returns `req`, or `stripped` filled in. */
static const struct req_head *websocket_only(const struct req_head *req, struct req_head *stripped)
{
    if (!req->upgrade.len || sy_slice_ieq(req->upgrade, "websocket"))
        return req;
    *stripped = *req;
    stripped->upgrade =
        has_token(req->upgrade, "websocket") ? sy_slice_of("websocket", 9) : sy_slice_of(NULL, 0);
    return stripped;
}

/* The exchange for a request routed to `choice` (endpoint `ep`) of `app`, linked into the
 * worker's list and the downstream; it holds the table reference `t`. */
static struct exchange *exchange_begin(struct downstream *d, const struct req_head *req,
                                       struct sy_route_table *t, const struct sy_route_app *app,
                                       const struct sy_route_choice *choice,
                                       const struct sy_endpoint_spec *ep)
{
    struct sy_worker *w = d->conn->w;
    struct exchange *ex = exchange_alloc(w);
    if (!ex)
        return NULL;
    ex->down = d;
    ex->w = w;
    access_exchange_begin(ex, req);
    /* The slot index follows w->table; the exchange's table is the same one here. */
    ex->slot = w->slot_index[app->index * sy_route_cluster_count(t) + choice->cluster];
    counter_add(&ex->slot->requests, 1);
    counter_add(&ex->slot->in_flight, 1);
    ex->start_us = mono_us();
    ex->table = t;
    ex->app = app;
    ex->cluster = choice->cluster;
    ex->endpoint = ep;
    ex->head_request = sy_slice_ieq(req->method, "HEAD");
    /* RFC 9110 §9.2.2: only safe methods are retried on our own (the cluster may have acted
     * on the request before the connection closed). */
    ex->safe = ex->head_request || sy_slice_ieq(req->method, "GET") ||
               sy_slice_ieq(req->method, "OPTIONS") || sy_slice_ieq(req->method, "TRACE");
    if (choice->set_cookie_len)
        ex->set_cookie = sy_xstrndup(choice->set_cookie, choice->set_cookie_len);
    ex->req_done = req->framing == SY_H1_BODY_NONE ||
                   (req->framing == SY_H1_BODY_LENGTH && req->content_length == 0);
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

/* An answer of our own for a request that has no exchange, counted on cluster `c` of `app`;
 * the table reference `t` is released. */
static void answer_own(struct downstream *d, struct sy_route_table *t,
                       const struct sy_route_app *app, size_t c, int status, const char *why)
{
    struct sy_worker *w = d->conn->w;
    d->own_slot = w->slot_index[app->index * sy_route_cluster_count(t) + c];
    sy_route_table_release(t);
    d->ops->send_error(d, status, why);
}

/* The 404 for a request no app matches (the table reference is released). */
static void answer_no_app(struct downstream *d, const struct req_head *req,
                          struct sy_route_table *t, struct sy_slice path)
{
    char why[256];
    snprintf(why, sizeof(why), "no application for host '%.*s' and path '%.*s'",
             (int)(req->authority.len > 100 ? 100 : req->authority.len), req->authority.p,
             (int)(path.len > 100 ? 100 : path.len), path.p);
    sy_route_table_release(t);
    d->ops->send_error(d, 404, why);
}

void exchange_start(struct downstream *d, const struct req_head *req)
{
    struct sy_worker *w = d->conn->w;
    const struct sy_config *cfg = worker_config(w);
    access_begin(d, req);
    struct req_head stripped;
    req = websocket_only(req, &stripped);
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
        answer_no_app(d, req, t, path);
        return;
    }
    const struct sy_route_maint_answer *maint = sy_route_app_maintenance(t, app);
    if (maint) {
        answer_maintenance(d, req, t, app, maint);
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
    const struct sy_endpoint_spec *ep = sy_route_next_endpoint(t, choice.cluster);
    if (!ep) {
        answer_own(d, t, app, choice.cluster, 502, "the chosen cluster has no endpoints");
        return;
    }
    struct exchange *ex = exchange_begin(d, req, t, app, &choice, ep);
    if (!ex) {
        answer_own(d, t, app, choice.cluster, 503, exchange_nomem_reason);
        return;
    }
    const struct sy_cluster_spec *cl = sy_route_cluster(t, choice.cluster);
    if (cl->protocol != SY_PROTO_HTTP1 && ex->upgrade_asked) {
        char msg[320];
        snprintf(msg, sizeof(msg),
                 "cluster %s speaks HTTP/2: an HTTP/1.1 Upgrade (WebSocket) needs an http1 "
                 "cluster",
                 cl->name);
        fail(ex, 502, msg);
        return;
    }
    ex->uops = cl->protocol != SY_PROTO_HTTP1 ? &h2_upstream_ops : &h1_upstream_ops;
    ex->uops->prepare(ex, req, cl->tls.on);
    if (ex->head_lost) {
        /* A part of the head could not be buffered: sent, it would be another request. */
        fail(ex, 503, exchange_nomem_reason);
        return;
    }
    if (exclusive_gate(ex, cfg))
        return;
    go(ex, false);
}

/* The exchange has its cluster and its head: it takes a connection, or waits for one.
 * `late`: the codec consumed the head long ago (a held request), so the body may be pulled
 * as soon as the connection is there. */
static void go(struct exchange *ex, bool late)
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
            fail(ex, 503, msg);
            return;
        }
    }
    if (!ex->uops->start(ex, upstream_pool(w, ep, cl), cl, late, &why))
        fail_connect(ex, why);
}

void exchange_dequeued(struct exchange *ex)
{
    const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
    const char *why = NULL;
    /* The codec consumed the head long ago: the body may be pulled at once. */
    if (!ex->uops->start(ex, upstream_pool(ex->w, ex->endpoint, cl), cl, true, &why))
        fail_connect(ex, why);
}

static void maybe_finish(struct exchange *ex)
{
    if (ex->resp_done)
        finish(ex, ex->req_done); /* a response that ends before its request: no reuse */
}

/* The answer's bytes are the snapshot's: the chain holds a reference to it until it is sent. */
static void maint_body_done(const void *data, size_t len, void *arg)
{
    sy_route_table_release(arg);
}

/* Whether the request's Accept includes text/html (a browser). q-values are not weighed: a
 * client that lists text/html at all gets the page. */
static bool accepts_html(const struct req_head *req)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sy_header *h = &req->headers[i];
        if (!sy_slice_ieq(h->name, "accept") || h->value.len < 9)
            continue;
        for (size_t k = 0; k + 9 <= h->value.len; k++)
            if (sy_slice_ieq(sy_slice_of(h->value.p + k, 9), "text/html"))
                return true;
    }
    return false;
}

/* App in maintenance (switchyardctl maintenance APP on): 503 with Retry-After, no-store, and
 * the app's page for browsers or one line for the rest; nothing goes to a cluster. Takes the
 * reference `t`. The exchange stays until the codec has consumed the head and the body is
 * dropped (maint_body_ready), so that the connection goes on. Counted as an own 503 on the
 * app's stable cluster. */
static void answer_maintenance(struct downstream *d, const struct req_head *req,
                               struct sy_route_table *t, const struct sy_route_app *app,
                               const struct sy_route_maint_answer *m)
{
    struct sy_worker *w = d->conn->w;
    struct exchange *ex = exchange_alloc(w);
    if (!ex) {
        answer_own(d, t, app, app->stable, 503, exchange_nomem_reason);
        return;
    }
    ex->down = d;
    ex->w = w;
    access_exchange_begin(ex, req);
    ex->table = t;
    ex->app = app;
    ex->maint = true;
    ex->status = 503;
    ex->resp_started = ex->resp_done = true;
    ex->head_request = sy_slice_ieq(req->method, "HEAD");
    ex->req_done = req->framing == SY_H1_BODY_NONE ||
                   (req->framing == SY_H1_BODY_LENGTH && req->content_length == 0);
    /* RFC 9110 §10.1.1: no 100 Continue before a final answer; the client may not send it. */
    ex->expect_continue = req->expect_continue && !ex->req_done;
    bool html = m->page && accepts_html(req);
    const char *body = html ? m->page : m->text;
    size_t len = html ? m->page_len : m->text_len;
    const char *type = html ? "text/html; charset=utf-8" : "text/plain; charset=utf-8";
    struct sy_header fields[2] = {
        {sy_slice_of("cache-control", 13), sy_slice_of("no-store", 8)},
        {sy_slice_of("content-type", 12), sy_slice_of(type, strlen(type))},
    };
    struct resp_head h = {
        .status = 503,
        .headers = fields,
        .n_headers = 2,
        .has_body = !ex->head_request && len > 0,
        .length_known = !ex->head_request,
        .content_length = len,
        .head_length = ex->head_request,
    };
    worker_count_own(w, w->slot_index[app->index * sy_route_cluster_count(t) + app->stable], 503);
    d->ex = ex;
    sy_error_retry_after(d, m->retry_after_s);
    d->ops->send_head(d, &h);
    if (h.has_body) {
        evbuffer_add_reference(ex->tmp, body, len, maint_body_done, sy_route_table_acquire(t));
        d->ops->send_body(d, ex->tmp, len);
    }
    d->ops->send_end(d, NULL);
}

/* A maintenance answer is queued: the request's body, if any, is read and dropped so that
 * the connection can go on (and a close does not reset the answer away), up to
 * MAINT_DISCARD_MAX bytes; past that, or with a 100-continue the answer refused, the
 * connection (HTTP/2: the stream) does not go on. */
#define MAINT_DISCARD_MAX (1u << 20)

static void maint_body_ready(struct exchange *ex)
{
    while (!ex->req_done && !ex->expect_continue) {
        bool done = false;
        const char *why = NULL;
        ssize_t n = ex->down->ops->pull_body(ex->down, ex->tmp, 65536, ex->trailers, &done, &why);
        if (n < 0)
            break; /* malformed: the connection cannot go on */
        evbuffer_drain(ex->tmp, evbuffer_get_length(ex->tmp));
        evbuffer_drain(ex->trailers, evbuffer_get_length(ex->trailers));
        ex->req_body_bytes += (uint64_t)n;
        if (done)
            ex->req_done = true;
        else if (ex->req_body_bytes > MAINT_DISCARD_MAX)
            break;
        else if (n == 0)
            return; /* the codec calls again when more arrives */
    }
    finish(ex, ex->req_done);
}

/* Request body: downstream -> upstream output. */
void exchange_body_ready(struct exchange *ex)
{
    if (ex->maint) {
        maint_body_ready(ex);
        return;
    }
    if (ex->ups)
        ex->uops->body_ready(ex);
}

const char exchange_nomem_reason[] = "out of memory";

/* Moves `n` bytes of body from `in` to `out`. evbuffer_remove_buffer copies the part of a chain
 * it cannot move whole with an evbuffer_add whose failure it ignores, draining `in` all the
 * same and counting the bytes as moved: only `out`'s length tells. Returns false when bytes
 * were lost that way. */
static bool move_body(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    size_t had = evbuffer_get_length(out);
    evbuffer_remove_buffer(in, out, n);
    return evbuffer_get_length(out) == had + n;
}

/* Moves decoded chunked body from `in` to `out` until `out` holds `budget` bytes or the input
 * runs dry; trailer fields go to `trailers` as lines. Returns 0, or -1 on bad framing or when
 * a buffer could not grow (*why is then exchange_nomem_reason). */
static int decode_chunked(struct sy_h1_chunked *dec, struct evbuffer *in, struct evbuffer *out,
                          struct evbuffer *trailers, size_t budget, bool *done, const char **why)
{
    while (evbuffer_get_length(out) < budget) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        enum sy_h1_chunk_event ev;
        size_t n = 0;
        int rc = sy_h1_chunked_step(dec, v.iov_base, v.iov_len, &ev, &n);
        if (rc == SY_ERR_AGAIN && v.iov_len < len) {
            /* A framing line split across buffer chains: make it contiguous. */
            size_t want = len < 4097 ? len : 4097;
            const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
            if (!p) {
                *why = exchange_nomem_reason;
                return -1;
            }
            rc = sy_h1_chunked_step(dec, p, want, &ev, &n);
        }
        if (rc == SY_ERR_AGAIN)
            return 0;
        if (rc < 0) {
            *why = dec->why ? dec->why : "malformed chunked framing";
            return -1;
        }
        switch (ev) {
        case SY_H1_CHUNK_FRAMING:
            evbuffer_drain(in, n);
            break;
        case SY_H1_CHUNK_DATA:
            /* At most one contiguous segment past the budget: the budget is a soft bound. */
            if (!move_body(in, out, n)) {
                *why = exchange_nomem_reason;
                return -1;
            }
            break;
        case SY_H1_CHUNK_TRAILER:
            if (trailers &&
                evbuffer_add_printf(trailers, "%.*s: %.*s\r\n", (int)dec->trailer.name.len,
                                    dec->trailer.name.p, (int)dec->trailer.value.len,
                                    dec->trailer.value.p) < 0) {
                *why = exchange_nomem_reason;
                return -1;
            }
            evbuffer_drain(in, n);
            break;
        case SY_H1_CHUNK_DONE:
            evbuffer_drain(in, n);
            *done = true;
            return 0;
        }
    }
    return 0;
}

ssize_t exchange_decode_body(struct sy_h1_chunked *dec, enum sy_h1_framing framing,
                             uint64_t *remaining, struct evbuffer *in, struct evbuffer *out,
                             size_t max, struct evbuffer *trailers, bool *done, const char **why)
{
    size_t before = evbuffer_get_length(out);
    if (framing == SY_H1_BODY_LENGTH) {
        size_t n = evbuffer_get_length(in);
        if (n > max)
            n = max;
        if (n > *remaining)
            n = (size_t)*remaining;
        if (!move_body(in, out, n)) {
            *why = exchange_nomem_reason;
            return -1;
        }
        *remaining -= n;
        *done = *remaining == 0;
        return (ssize_t)n;
    }
    if (framing == SY_H1_BODY_CHUNKED) {
        if (decode_chunked(dec, in, out, trailers, before + max, done, why) < 0)
            return -1;
        return (ssize_t)(evbuffer_get_length(out) - before);
    }
    *done = true;
    return 0;
}

size_t exchange_end_to_end(struct sy_header *h, size_t n)
{
    struct sy_slice tok[MAX_CONN_TOKENS];
    size_t n_tok = connection_tokens(h, n, tok);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        struct sy_slice name = h[i].name;
        if (is_hop_by_hop(name) || sy_slice_ieq(name, "te") ||
            (n_tok && named_by(name, tok, n_tok)))
            continue;
        h[kept++] = h[i];
    }
    return kept;
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
        uint64_t now = mono_us();
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
        fail(ex, 502, "the cluster switched protocols without being asked");
        return false;
    }
    if (!sy_slice_ieq(h->upgrade, "websocket")) {
        fail(ex, 502, "the cluster switched to a protocol other than websocket");
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
        fail(ex, 502, why);
        return false;
    }
    struct resp_head h = *head;
    h.set_cookie = ex->set_cookie;
    ex->status = h.status;
    ex->down->ops->send_head(ex->down, &h);
    ex->resp_started = true;
    ex->head_us = mono_us();
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
    if (!ex->retried && (unprocessed || (ex->safe && ex->uops->retry_safe))) {
        ex->retried = true;
        return true;
    }
    return false;
}

bool exchange_on_error(struct exchange *ex, bool unprocessed, int status, const char *why)
{
    if (retry_wanted(ex, unprocessed)) {
        const struct sy_cluster_spec *cl = sy_route_cluster(ex->table, ex->cluster);
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
    fail(ex, status, why);
    return false;
}

ssize_t exchange_pull_body(struct exchange *ex, struct evbuffer *out, size_t max, bool *done)
{
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    const char *why = NULL;
    ssize_t n = ex->down->ops->pull_body(ex->down, out, max, ex->trailers, done, &why);
    if (n < 0) {
        fail(ex, why == exchange_nomem_reason ? 503 : 400, why ? why : "malformed request body");
        return -1;
    }
    if (n > 0) {
        ex->req_body_started = true;
        ex->req_body_bytes += (uint64_t)n;
        if (cfg->limits.max_body_bytes && ex->req_body_bytes > cfg->limits.max_body_bytes) {
            fail(ex, 413, "request body is larger than limits.max_body_bytes");
            return -1;
        }
    }
    if (*done)
        ex->req_done = true;
    return n;
}
void exchange_drain_cluster(struct sy_worker *w, const char *app, const char *cluster)
{
    size_t n = 0;
    for (struct exchange *ex = w->exchanges, *next; ex; ex = next) {
        next = ex->w_next;
        if (ex->forced || strcmp(ex->app->name, app) != 0 || strcmp(cluster_name(ex), cluster) != 0)
            continue;
        /* An HTTP/2 client gets GOAWAY (it reconnects, and follows the new weights), an
         * HTTP/1.1 connection will not be kept alive; then the exchange is cut. The GOAWAY's
         * flush may end this very exchange (its stream's queued DATA goes out, the exchange
         * reads on and its response completes) or the whole connection: exchange_free then
         * clears drain_cut, and only an exchange still running is cut. */
        struct conn *c = ex->down->conn;
        w->drain_cut = ex;
        c->close_idle(c);
        if (w->drain_cut == ex) {
            fail(ex, 502, "the app left this cluster (drain_after)");
            n++;
        }
        w->drain_cut = NULL;
        /* The cut may free other exchanges of the same connection: start over. */
        next = w->exchanges;
    }
    if (n)
        sy_log(SY_LOG_INFO, "drain",
               "worker %u: closed %zu exchange(s) of app %s still on cluster "
               "%s (drain_after)",
               w->id, n, app, cluster);
}
