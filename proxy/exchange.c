/* SPDX-License-Identifier: MIT */
/* One request in flight, from the downstream connection to one upstream connection and back.
 * The request is routed once, from its head; the head is rewritten for the upstream (hop-by-hop
 * fields dropped, X-Forwarded-* and Via added, framing re-stated) and the body streams through
 * in both directions, chunked bodies decoded and re-encoded so that only framing we validated
 * ever leaves the proxy. Backpressure: a direction stops reading when the other side's output
 * holds buffer_bytes, and resumes when it drains to half of that. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "proxy_internal.h"

#define MAX_CONN_TOKENS 16

static struct timeval ms_tv(unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

void exchange_free(struct exchange *ex)
{
    if (ex->up_head)
        evbuffer_free(ex->up_head);
    if (ex->req_trailers)
        evbuffer_free(ex->req_trailers);
    free(ex->set_cookie);
    sy_route_table_release(ex->table);
    free(ex);
}

/* Ends the exchange with the client kept for the next request when `reusable`. */
static void finish(struct exchange *ex, bool reusable)
{
    struct client *c = ex->client;
    if (ex->up)
        upstream_release(ex->up, reusable && ex->resp_keep_alive && ex->req_done);
    c->ex = NULL;
    exchange_free(ex);
    client_exchange_done(c, reusable);
}

/* Ends the exchange on an error: an answer of our own if the response has not started,
 * otherwise the client connection is cut (a truncated response must not look complete). */
static void fail(struct exchange *ex, int status, const char *why)
{
    struct client *c = ex->client;
    bool started = ex->resp_started;
    if (ex->up)
        upstream_release(ex->up, false);
    c->ex = NULL;
    exchange_free(ex);
    if (started) {
        sy_log(SY_LOG_INFO, "http", "conn %llu: response cut: %s", (unsigned long long)c->id, why);
        client_abort(c);
    } else {
        client_send_error(c, status, why);
    }
}

void exchange_client_gone(struct exchange *ex)
{
    if (ex->up)
        upstream_release(ex->up, false);
    ex->client->ex = NULL;
    exchange_free(ex);
}

/* Field classes for rewriting a head. */
enum field {
    F_FORWARD = 0,
    F_DROP, /* hop-by-hop, or re-stated by us */
    F_XFF,
    F_VIA,
    F_TE,
};

static enum field classify(struct sy_slice n, bool request)
{
    switch (n.len) {
    case 2:
        if (sy_slice_ieq(n, "te"))
            return request ? F_TE : F_DROP;
        break;
    case 3:
        if (sy_slice_ieq(n, "via"))
            return request ? F_VIA : F_FORWARD;
        break;
    case 4:
        if (request && sy_slice_ieq(n, "host"))
            return F_DROP;
        break;
    case 6:
        if (request && sy_slice_ieq(n, "expect"))
            return F_DROP;
        break;
    case 7:
        if (sy_slice_ieq(n, "upgrade"))
            return F_DROP;
        break;
    case 10:
        if (sy_slice_ieq(n, "connection") || sy_slice_ieq(n, "keep-alive"))
            return F_DROP;
        break;
    case 14:
        if (sy_slice_ieq(n, "content-length"))
            return F_DROP;
        break;
    case 15:
        if (request && sy_slice_ieq(n, "x-forwarded-for"))
            return F_XFF;
        break;
    case 16:
        if (request && sy_slice_ieq(n, "x-forwarded-host"))
            return F_DROP;
        break;
    case 17:
        if (sy_slice_ieq(n, "transfer-encoding") || (request && sy_slice_ieq(n, "x-forwarded-proto")))
            return F_DROP;
        break;
    }
    /* Proxy-Connection, Proxy-Authorization, ...: meant for a proxy, never forwarded. */
    if (request && n.len > 6 && sy_slice_ieq(sy_slice_of(n.p, 6), "proxy-"))
        return F_DROP;
    if (!request && sy_slice_ieq(n, "proxy-connection"))
        return F_DROP;
    return F_FORWARD;
}

/* The field names listed in Connection (RFC 9110 §7.6.1): hop-by-hop as well. */
static size_t connection_tokens(const struct sy_h1_header *h, size_t n, struct sy_slice *tok)
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

/* The request-target in origin-form for the upstream (RFC 9112 §3.2.2: an absolute-form
 * target is rewritten, its authority already being the Host). */
static struct sy_slice origin_form(struct sy_slice target)
{
    if (target.len == 0 || target.p[0] == '/' || target.p[0] == '*')
        return target;
    const char *p = memchr(target.p, ':', target.len);
    const char *end = target.p + target.len;
    if (!p || end - p < 3)
        return sy_slice_of("/", 1);
    p += 3; /* "://" */
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (p == end || *p == '?')
        return sy_slice_of("/", 1); /* a query without a path keeps no query: rare enough */
    return sy_slice_of(p, (size_t)(end - p));
}

static void write_request_head(struct exchange *ex, const struct sy_h1_request *req,
                               struct sy_slice origin)
{
    struct client *c = ex->client;
    struct evbuffer *out = ex->up_head;
    struct sy_slice tok[MAX_CONN_TOKENS];
    size_t n_tok = connection_tokens(req->headers, req->n_headers, tok);
    evbuffer_add_printf(out, "%.*s %.*s HTTP/1.1\r\nhost: %.*s\r\n", (int)req->method.len,
                        req->method.p, (int)origin.len, origin.p, (int)req->host.len,
                        req->host.p);
    bool te_trailers = false;
    size_t n_xff = 0, n_via = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sy_h1_header *h = &req->headers[i];
        switch (classify(h->name, true)) {
        case F_FORWARD:
            if (n_tok && named_by(h->name, tok, n_tok))
                break;
            evbuffer_add_printf(out, "%.*s: %.*s\r\n", (int)h->name.len, h->name.p,
                                (int)h->value.len, h->value.p);
            break;
        case F_TE:
            te_trailers |= has_token(h->value, "trailers");
            break;
        case F_XFF:
            n_xff++;
            break;
        case F_VIA:
            n_via++;
            break;
        case F_DROP:
            break;
        }
    }
    if (te_trailers)
        evbuffer_add(out, "te: trailers\r\n", 14);
    if (req->framing == SY_H1_BODY_LENGTH)
        evbuffer_add_printf(out, "content-length: %llu\r\n",
                            (unsigned long long)req->content_length);
    else if (req->framing == SY_H1_BODY_CHUNKED)
        evbuffer_add(out, "transfer-encoding: chunked\r\n", 28);
    /* X-Forwarded-For and Via keep what earlier hops wrote and add this one. */
    evbuffer_add(out, "x-forwarded-for: ", 17);
    for (size_t i = 0; n_xff && i < req->n_headers; i++)
        if (classify(req->headers[i].name, true) == F_XFF)
            evbuffer_add_printf(out, "%.*s, ", (int)req->headers[i].value.len,
                                req->headers[i].value.p);
    evbuffer_add_printf(out, "%s\r\nx-forwarded-proto: http\r\n", c->peer);
    if (req->host.len)
        evbuffer_add_printf(out, "x-forwarded-host: %.*s\r\n", (int)req->host.len, req->host.p);
    evbuffer_add(out, "via: ", 5);
    for (size_t i = 0; n_via && i < req->n_headers; i++)
        if (classify(req->headers[i].name, true) == F_VIA)
            evbuffer_add_printf(out, "%.*s, ", (int)req->headers[i].value.len,
                                req->headers[i].value.p);
    evbuffer_add_printf(out, "1.%d switchyard\r\n\r\n", req->minor);
}

static void send_head(struct exchange *ex);

void exchange_start(struct client *c, const struct sy_h1_request *req)
{
    struct sy_worker *w = c->w;
    const struct sy_config *cfg = worker_config(w);
    if (sy_slice_ieq(req->method, "CONNECT")) {
        client_send_error(c, 405, "CONNECT is not supported: switchyard is a reverse proxy");
        return;
    }
    if (req->framing == SY_H1_BODY_LENGTH && cfg->limits.max_body_bytes &&
        req->content_length > cfg->limits.max_body_bytes) {
        client_send_error(c, 413, "request body is larger than limits.max_body_bytes");
        return;
    }
    struct sy_slice origin = origin_form(req->target);
    struct sy_slice path = origin;
    const char *q = memchr(path.p, '?', path.len);
    if (q)
        path.len = (size_t)(q - path.p);

    struct sy_route_table *t = sy_route_table_acquire(w->table);
    const struct sy_route_app *app = sy_route_match(t, req->host, path);
    if (!app) {
        char why[256];
        snprintf(why, sizeof(why), "no application for host '%.*s' and path '%.*s'",
                 (int)(req->host.len > 100 ? 100 : req->host.len), req->host.p,
                 (int)(path.len > 100 ? 100 : path.len), path.p);
        sy_route_table_release(t);
        client_send_error(c, 404, why);
        return;
    }
    /* sy_h1_header and sy_header are both a name and a value slice. */
    struct sy_route_req rreq = {
        .host = req->host,
        .path = path,
        .headers = (const struct sy_header *)req->headers,
        .n_headers = req->n_headers,
        .client = (const struct sockaddr *)&c->addr,
        .tls = false,
        .now = (uint64_t)time(NULL),
        .rnd = worker_random(w),
    };
    struct sy_route_choice choice;
    sy_route_pick(t, app, &rreq, &choice);
    size_t cluster = choice.cluster;
    const struct sy_endpoint_spec *ep = sy_route_next_endpoint(t, cluster);
    if (!ep) {
        sy_route_table_release(t);
        client_send_error(c, 502, "the chosen cluster has no endpoints");
        return;
    }

    struct exchange *ex = sy_xcalloc(1, sizeof(*ex));
    ex->client = c;
    ex->table = t;
    ex->app = app;
    ex->cluster = cluster;
    ex->endpoint = ep;
    ex->head_request = sy_slice_ieq(req->method, "HEAD");
    if (choice.set_cookie_len) {
        ex->set_cookie = sy_xstrndup(choice.set_cookie, choice.set_cookie_len);
    }
    ex->req_framing = req->framing;
    ex->req_remaining = req->content_length;
    if (req->framing == SY_H1_BODY_CHUNKED) {
        sy_h1_chunked_init(&ex->req_chunked, cfg->limits.max_header_bytes);
        ex->req_trailers = evbuffer_new();
    }
    ex->req_done = req->framing == SY_H1_BODY_NONE ||
                   (req->framing == SY_H1_BODY_LENGTH && req->content_length == 0);
    ex->expect_continue = req->expect_continue && !ex->req_done && req->minor == 1;
    ex->up_head = evbuffer_new();
    write_request_head(ex, req, origin);
    c->ex = ex;

    struct timeval body = ms_tv(cfg->timeouts.client_body_ms);
    bufferevent_set_timeouts(c->bev, &body, &body);
    if (ex->req_done)
        bufferevent_disable(c->bev, EV_READ); /* pipelined requests wait their turn */

    ex->up = upstream_get(w, ep, ex, false);
    if (!ex->up) {
        char why[256];
        snprintf(why, sizeof(why), "cluster %s (%s) cannot be reached",
                 sy_route_cluster(t, cluster)->name, ep->address);
        fail(ex, 502, why);
        return;
    }
    /* The body is pumped by the caller once the head has left the client's input. */
    if (ex->up->connected)
        send_head(ex);
}

/* Sends the head (a copy when a retry may still need it) and lets the client send its body. */
static void send_head(struct exchange *ex)
{
    const struct sy_config *cfg = worker_config(ex->client->w);
    struct upstream *up = ex->up;
    struct evbuffer *out = bufferevent_get_output(up->bev);
    struct timeval tv = ms_tv(cfg->timeouts.upstream_response_ms);
    bufferevent_set_timeouts(up->bev, &tv, &tv);
    bufferevent_setwatermark(up->bev, EV_WRITE, cfg->limits.buffer_bytes / 2, 0);
    if (up->reused && !ex->retried) {
        size_t len = evbuffer_get_length(ex->up_head);
        evbuffer_add(out, evbuffer_pullup(ex->up_head, (ssize_t)len), len);
    } else {
        evbuffer_add_buffer(out, ex->up_head);
    }
    if (ex->expect_continue) {
        /* RFC 9110 §10.1.1: the cluster is reachable, so let the client send its body. */
        ex->expect_continue = false;
        evbuffer_add(bufferevent_get_output(ex->client->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
}

void exchange_upstream_connected(struct exchange *ex)
{
    send_head(ex);
    exchange_client_readable(ex);
}

/* Moves decoded chunked body from `in` to `out`, re-encoding when `reencode`, until `out`
 * holds `budget` bytes or the input runs dry. Returns 0, or -1 on bad framing. */
static int pump_chunked(struct sy_h1_chunked *dec, struct evbuffer *in, struct evbuffer *out,
                        bool reencode, struct evbuffer *trailers, size_t budget, uint64_t *moved,
                        bool *done, const char **why)
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
            if (reencode)
                evbuffer_add_printf(out, "%zx\r\n", n);
            evbuffer_remove_buffer(in, out, n);
            if (reencode)
                evbuffer_add(out, "\r\n", 2);
            *moved += n;
            break;
        case SY_H1_CHUNK_TRAILER:
            if (trailers)
                evbuffer_add_printf(trailers, "%.*s: %.*s\r\n", (int)dec->trailer.name.len,
                                    dec->trailer.name.p, (int)dec->trailer.value.len,
                                    dec->trailer.value.p);
            evbuffer_drain(in, n);
            break;
        case SY_H1_CHUNK_DONE:
            evbuffer_drain(in, n);
            if (reencode) {
                evbuffer_add(out, "0\r\n", 3);
                if (trailers)
                    evbuffer_add_buffer(out, trailers);
                evbuffer_add(out, "\r\n", 2);
            }
            *done = true;
            return 0;
        }
    }
    return 0;
}

static void upstream_closed(struct exchange *ex);

static void maybe_finish(struct exchange *ex)
{
    if (!ex->resp_done)
        return;
    /* A response that ends before its request body leaves both connections unusable. */
    finish(ex, ex->req_done);
}

/* Request body: client input -> upstream output. */
void exchange_client_readable(struct exchange *ex)
{
    struct client *c = ex->client;
    struct upstream *up = ex->up;
    if (ex->req_done || !up || !up->connected)
        return;
    const struct sy_config *cfg = worker_config(c->w);
    size_t budget = cfg->limits.buffer_bytes;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(up->bev);
    uint64_t moved = 0;
    if (ex->req_framing == SY_H1_BODY_LENGTH) {
        size_t have = evbuffer_get_length(in), room = evbuffer_get_length(out) < budget
                                                          ? budget - evbuffer_get_length(out)
                                                          : 0;
        size_t n = have < room ? have : room;
        if (n > ex->req_remaining)
            n = (size_t)ex->req_remaining;
        if (n) {
            evbuffer_remove_buffer(in, out, n);
            ex->req_remaining -= n;
            moved = n;
        }
        ex->req_done = ex->req_remaining == 0;
    } else if (ex->req_framing == SY_H1_BODY_CHUNKED) {
        const char *why = NULL;
        if (pump_chunked(&ex->req_chunked, in, out, true, ex->req_trailers, budget, &moved,
                         &ex->req_done, &why) < 0) {
            fail(ex, 400, why);
            return;
        }
    }
    if (moved)
        ex->req_body_started = true;
    ex->req_body_bytes += moved;
    if (cfg->limits.max_body_bytes && ex->req_body_bytes > cfg->limits.max_body_bytes) {
        fail(ex, 413, "request body is larger than limits.max_body_bytes");
        return;
    }
    if (ex->req_done) {
        bufferevent_disable(c->bev, EV_READ);
        c->read_paused = false;
        maybe_finish(ex);
        return;
    }
    if (evbuffer_get_length(out) >= budget) {
        bufferevent_disable(c->bev, EV_READ);
        c->read_paused = true;
    } else if (c->read_paused) {
        c->read_paused = false;
        bufferevent_enable(c->bev, EV_READ);
    }
}

void exchange_upstream_drained(struct exchange *ex)
{
    if (ex->client->read_paused)
        exchange_client_readable(ex);
}

static void write_response_head(struct exchange *ex, const struct sy_h1_response *resp)
{
    struct client *c = ex->client;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct sy_slice tok[MAX_CONN_TOKENS];
    size_t n_tok = connection_tokens(resp->headers, resp->n_headers, tok);
    evbuffer_add_printf(out, "HTTP/1.1 %d %.*s\r\n", resp->status, (int)resp->reason.len,
                        resp->reason.p);
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct sy_h1_header *h = &resp->headers[i];
        if (classify(h->name, false) != F_FORWARD || (n_tok && named_by(h->name, tok, n_tok)))
            continue;
        evbuffer_add_printf(out, "%.*s: %.*s\r\n", (int)h->name.len, h->name.p,
                            (int)h->value.len, h->value.p);
    }
    if (ex->set_cookie)
        evbuffer_add_printf(out, "set-cookie: %s\r\n", ex->set_cookie);
    switch (resp->framing) {
    case SY_H1_BODY_NONE: {
        /* HEAD and 304 answers keep the length of the representation they describe. */
        ssize_t i = sy_h1_find_header(resp->headers, resp->n_headers, "content-length");
        if (i >= 0)
            evbuffer_add_printf(out, "content-length: %.*s\r\n",
                                (int)resp->headers[i].value.len, resp->headers[i].value.p);
        break;
    }
    case SY_H1_BODY_LENGTH:
        evbuffer_add_printf(out, "content-length: %llu\r\n",
                            (unsigned long long)resp->content_length);
        break;
    case SY_H1_BODY_CHUNKED:
    case SY_H1_BODY_CLOSE:
        if (c->minor >= 1) {
            ex->resp_chunked_out = true;
            evbuffer_add(out, "transfer-encoding: chunked\r\n", 28);
        } else {
            c->keep_alive = false; /* HTTP/1.0: the close delimits the body */
        }
        break;
    }
    if (c->w->draining)
        c->keep_alive = false;
    if (!c->keep_alive)
        evbuffer_add(out, "connection: close\r\n", 19);
    else if (c->minor == 0)
        evbuffer_add(out, "connection: keep-alive\r\n", 24);
    evbuffer_add(out, "\r\n", 2);
}

/* Returns 1 when the head went to the client, 0 when more bytes are needed, -1 when the
 * exchange failed (and was freed). */
static int parse_response_head(struct exchange *ex)
{
    struct sy_worker *w = ex->client->w;
    const struct sy_config *cfg = worker_config(w);
    struct evbuffer *in = bufferevent_get_input(ex->up->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        struct sy_h1_limits lim = {cfg->limits.max_request_line, cfg->limits.max_header_bytes,
                                   cfg->limits.max_headers};
        if (w->scratch_cap < lim.max_headers) {
            free(w->scratch);
            w->scratch = sy_xcalloc(lim.max_headers, sizeof(*w->scratch));
            w->scratch_cap = lim.max_headers;
        }
        size_t want = len < lim.max_head + 1 ? len : lim.max_head + 1;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
        struct sy_h1_response resp = {.headers = w->scratch};
        ssize_t n = sy_h1_parse_response(p, want, &lim, ex->head_request, &resp);
        if (n == 0)
            return 0;
        if (n < 0) {
            char why[160];
            snprintf(why, sizeof(why), "cluster %s sent an invalid response: %s",
                     sy_route_cluster(ex->table, ex->cluster)->name,
                     resp.why ? resp.why : "malformed");
            fail(ex, 502, why);
            return -1;
        }
        if (resp.status >= 100 && resp.status < 200) {
            /* Interim answers: we sent our own 100 Continue; others are not relayed. */
            evbuffer_drain(in, (size_t)n);
            continue;
        }
        ex->status = resp.status;
        ex->resp_framing = resp.framing;
        ex->resp_remaining = resp.content_length;
        ex->resp_keep_alive = resp.keep_alive && resp.framing != SY_H1_BODY_CLOSE;
        if (resp.framing == SY_H1_BODY_CHUNKED)
            sy_h1_chunked_init(&ex->resp_chunked, cfg->limits.max_header_bytes);
        write_response_head(ex, &resp);
        evbuffer_drain(in, (size_t)n);
        ex->resp_started = true;
        if (ex->up_head) {
            evbuffer_free(ex->up_head);
            ex->up_head = NULL;
        }
        ex->resp_done = resp.framing == SY_H1_BODY_NONE ||
                        (resp.framing == SY_H1_BODY_LENGTH && resp.content_length == 0);
        return 1;
    }
}

/* Response: upstream input -> client output. */
void exchange_upstream_readable(struct exchange *ex)
{
    struct client *c = ex->client;
    struct upstream *up = ex->up;
    if (!ex->resp_started) {
        int rc = parse_response_head(ex);
        if (rc < 0)
            return;
        if (rc == 0) {
            if (ex->up_eof)
                upstream_closed(ex);
            return;
        }
    }
    const struct sy_config *cfg = worker_config(c->w);
    size_t budget = cfg->limits.buffer_bytes;
    struct evbuffer *in = bufferevent_get_input(up->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint64_t moved = 0;
    switch (ex->resp_framing) {
    case SY_H1_BODY_NONE:
        break;
    case SY_H1_BODY_LENGTH: {
        size_t have = evbuffer_get_length(in), used = evbuffer_get_length(out);
        size_t n = used < budget ? budget - used : 0;
        if (n > have)
            n = have;
        if (n > ex->resp_remaining)
            n = (size_t)ex->resp_remaining;
        evbuffer_remove_buffer(in, out, n);
        ex->resp_remaining -= n;
        ex->resp_done = ex->resp_remaining == 0;
        break;
    }
    case SY_H1_BODY_CHUNKED: {
        const char *why = NULL;
        if (pump_chunked(&ex->resp_chunked, in, out, ex->resp_chunked_out, NULL, budget, &moved,
                         &ex->resp_done, &why) < 0) {
            fail(ex, 502, why);
            return;
        }
        break;
    }
    case SY_H1_BODY_CLOSE: {
        size_t have = evbuffer_get_length(in), used = evbuffer_get_length(out);
        size_t n = used < budget ? budget - used : 0;
        if (n > have)
            n = have;
        if (n && ex->resp_chunked_out)
            evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_remove_buffer(in, out, n);
        if (n && ex->resp_chunked_out)
            evbuffer_add(out, "\r\n", 2);
        break;
    }
    }
    if (ex->resp_done) {
        maybe_finish(ex);
        return;
    }
    if (ex->up_eof && evbuffer_get_length(in) == 0) {
        upstream_closed(ex);
        return;
    }
    if (evbuffer_get_length(out) >= budget && !ex->up_eof) {
        bufferevent_disable(up->bev, EV_READ);
        up->read_paused = true;
    }
}

void exchange_client_drained(struct exchange *ex)
{
    struct upstream *up = ex->up;
    if (!up)
        return;
    if (up->read_paused) {
        up->read_paused = false;
        bufferevent_enable(up->bev, EV_READ);
        exchange_upstream_readable(ex);
    } else if (ex->up_eof && ex->resp_started) {
        exchange_upstream_readable(ex); /* what came before the close, at the client's pace */
    }
}

/* The upstream closed and everything it sent has been relayed: a close-delimited body ends
 * here; anything else is cut short. */
static void upstream_closed(struct exchange *ex)
{
    if (ex->resp_started && ex->resp_framing == SY_H1_BODY_CLOSE) {
        if (ex->resp_chunked_out)
            evbuffer_add(bufferevent_get_output(ex->client->bev), "0\r\n\r\n", 5);
        ex->resp_done = true;
        ex->resp_keep_alive = false;
        maybe_finish(ex);
        return;
    }
    char why[256];
    snprintf(why, sizeof(why), "cluster %s (%s) closed the connection %s",
             sy_route_cluster(ex->table, ex->cluster)->name, ex->endpoint->address,
             ex->resp_started ? "mid-response" : "before answering");
    fail(ex, 502, why);
}

void exchange_upstream_event(struct exchange *ex, short what)
{
    struct upstream *up = ex->up;
    const char *cluster = sy_route_cluster(ex->table, ex->cluster)->name;
    char why[256];
    if (what & BEV_EVENT_TIMEOUT) {
        if ((what & BEV_EVENT_READING) && !ex->req_done) {
            /* Still uploading: the response clock starts when the request is complete. */
            bufferevent_enable(up->bev, EV_READ);
            return;
        }
        if (!up->connected) {
            snprintf(why, sizeof(why), "cluster %s (%s) cannot be reached: connect timed out",
                     cluster, ex->endpoint->address);
            fail(ex, 502, why);
        } else {
            snprintf(why, sizeof(why), "cluster %s (%s) did not answer in time", cluster,
                     ex->endpoint->address);
            fail(ex, 504, why);
        }
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    bool nothing_received =
        !ex->resp_started && evbuffer_get_length(bufferevent_get_input(up->bev)) == 0;
    if (up->reused && nothing_received && !ex->retried && !ex->req_body_started) {
        /* A pooled connection the server had closed before it saw our request: once more on
         * a fresh connection. */
        ex->retried = true;
        upstream_release(up, false);
        ex->up = upstream_get(ex->client->w, ex->endpoint, ex, true);
        if (!ex->up) {
            snprintf(why, sizeof(why), "cluster %s (%s) cannot be reached", cluster,
                     ex->endpoint->address);
            fail(ex, 502, why);
        }
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && up->connected) {
        /* Whatever arrived before the close is still to be relayed. */
        ex->up_eof = true;
        exchange_upstream_readable(ex);
        return;
    }
    if (!up->connected)
        snprintf(why, sizeof(why), "cluster %s (%s) cannot be reached: %s", cluster,
                 ex->endpoint->address, evutil_socket_error_to_string(err));
    else
        snprintf(why, sizeof(why), "cluster %s (%s) failed %s: %s", cluster,
                 ex->endpoint->address, ex->resp_started ? "mid-response" : "before answering",
                 evutil_socket_error_to_string(err));
    fail(ex, 502, why);
}
