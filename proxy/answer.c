/* SPDX-License-Identifier: MIT */
/* The answers switchyard makes itself once a request head is routed, rather than the
 * cluster's: 404 when no app matches, the maintenance 503 (Retry-After, the app's page for a
 * browser or one line for the rest, the request body read and dropped so the connection goes
 * on), and 502/503 when no connection to the cluster could be had. The codec writes an error
 * answer (send_error); a maintenance answer goes through its ordinary head/body/end
 * operations. */
#include <stdio.h>
#include <string.h>

#include "exchange_internal.h"

void exchange_fail_connect(struct exchange *ex, const char *why)
{
    char msg[320];
    if (why == exchange_nomem_reason) {
        exchange_fail(ex, 503, why); /* the request could not be queued towards the cluster */
        return;
    }
    if (why == upstream_limit_reason) {
        ex->generated = "upstream_limit";
        counter_add(&ex->slot->upstream_refused, 1);
        snprintf(msg, sizeof(msg), "cluster %s (%s) not tried: %s", exchange_cluster_name(ex),
                 ex->endpoint->address, why);
        exchange_fail(ex, 503, msg);
        return;
    }
    ex->generated = "upstream_connect";
    snprintf(msg, sizeof(msg), "cluster %s (%s) cannot be reached: %s", exchange_cluster_name(ex),
             ex->endpoint->address, why ? why : "no connection");
    exchange_fail(ex, 502, msg);
}

void exchange_answer_cluster_down(struct downstream *d, struct sy_route_table *t,
                                  const struct sy_route_app *app, size_t c)
{
    char msg[320];
    snprintf(msg, sizeof(msg),
             "cluster %s has no endpoint up (health checks or outlier ejection) and app %s "
             "has failover: false",
             sy_route_cluster(t, c)->name, app->name);
    exchange_answer_own(d, t, app, c, 503, msg);
}

void exchange_answer_own(struct downstream *d, struct sy_route_table *t,
                         const struct sy_route_app *app, size_t c, int status, const char *why)
{
    struct sy_worker *w = d->conn->w;
    d->own_slot = w->slot_index[app->index * sy_route_cluster_count(t) + c];
    sy_route_table_release(t);
    d->ops->send_error(d, status, why);
}

void exchange_answer_no_app(struct downstream *d, const struct req_head *req,
                            struct sy_route_table *t, struct sy_slice path)
{
    char why[256];
    snprintf(why, sizeof(why), "no application for host '%.*s' and path '%.*s'",
             (int)(req->authority.len > 100 ? 100 : req->authority.len), req->authority.p,
             (int)(path.len > 100 ? 100 : path.len), path.p);
    sy_route_table_release(t);
    d->ops->send_error(d, 404, why);
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

void exchange_answer_maintenance(struct downstream *d, const struct req_head *req,
                                 struct sy_route_table *t, const struct sy_route_app *app,
                                 const struct sy_route_maint_answer *m)
{
    struct sy_worker *w = d->conn->w;
    struct exchange *ex = exchange_new(d, req, t, app);
    if (!ex) {
        exchange_answer_own(d, t, app, app->stable, 503, exchange_nomem_reason);
        return;
    }
    ex->maint = true;
    ex->status = 503;
    ex->resp_started = ex->resp_done = true;
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

/* The most request body a maintenance answer reads and drops before the connection (HTTP/2:
 * the stream) is given up rather than kept. */
#define MAINT_DISCARD_MAX (1u << 20)

void exchange_maint_body_ready(struct exchange *ex)
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
    exchange_finish(ex, ex->req_done);
}
