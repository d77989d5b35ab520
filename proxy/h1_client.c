/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 to the clusters, behind struct upstream_ops: one request on one connection of the
 * pool (upstream.c) at a time. The request head is serialized once, when the exchange is
 * routed, and kept for one retry: a pooled connection the server had closed before it saw the
 * request is reported unprocessed and the request goes again on a fresh one. The response head
 * is parsed here, its body decoded (chunked bodies are re-framed by the downstream codec, so only
 * framing we validated leaves the proxy) and relayed at the client's pace: reading stops while
 * the client holds buffer_bytes, and resumes when that drains to half. After a 101 the
 * connection is a tunnel: raw bytes both ways, the client's close passed on as a half-close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy_internal.h"

/* One request's HTTP/1.1 state (ex->ups). Recycled per worker thread with its buffer. */
struct h1_stream {
    struct upstream *up;   /* the connection, or NULL before start */
    struct evbuffer *head; /* the serialized request head, kept until the response starts */
    bool fresh;            /* the next connection is a new one (a retry) */
    bool chunked_up;       /* the body goes upstream chunked (length unknown) */
    bool keep_alive;       /* the connection is reusable once the response ends */
    bool shutdown_pending; /* half-close the upstream once its output is written (tunnel) */
    bool eof;              /* the upstream closed; its input holds the last bytes */
    enum sy_h1_framing framing;
    uint64_t remaining;
    struct sy_h1_chunked chunked;
    struct h1_stream *next; /* in the spare list */
};

/* Streams kept for reuse by this worker thread. None under AddressSanitizer (as for
 * exchanges), so that a use after the end is still caught there. */
#if defined(__SANITIZE_ADDRESS__)
static const bool spare_on = false;
#else
static const bool spare_on = true;
#endif
#define H1_SPARE_MAX 1024
static _Thread_local struct h1_stream *spare;
static _Thread_local size_t n_spare;

static struct h1_stream *stream_of(struct exchange *ex)
{
    return ex->ups;
}

static void prepare(struct exchange *ex, const struct req_head *req, bool tls_up)
{
    struct h1_stream *s = spare;
    if (s) {
        spare = s->next;
        n_spare--;
        struct evbuffer *head = s->head;
        memset(s, 0, sizeof(*s));
        s->head = head;
    } else {
        s = sy_xcalloc(1, sizeof(*s));
        s->head = evbuffer_new();
        if (!s->head) { /* this request alone fails (503), as a head that could not be written */
            free(s);
            ex->head_lost = true;
            return;
        }
    }
    ex->ups = s;
    s->chunked_up = req->framing == SY_H1_BODY_CHUNKED;
    struct head_sink sink;
    sink_init(&sink, false, s->head);
    exchange_rewrite_head(ex, req, &sink, tls_up);
}

static void cancel(struct exchange *ex, bool complete)
{
    struct h1_stream *s = stream_of(ex);
    if (!s)
        return;
    ex->ups = NULL;
    if (s->up)
        upstream_release(s->up, complete && s->keep_alive);
    if (spare_on && n_spare < H1_SPARE_MAX) {
        evbuffer_drain(s->head, evbuffer_get_length(s->head));
        s->next = spare;
        spare = s;
        n_spare++;
        return;
    }
    evbuffer_free(s->head);
    free(s);
}

void h1up_cache_free(void)
{
    while (spare) {
        struct h1_stream *s = spare;
        spare = s->next;
        evbuffer_free(s->head);
        free(s);
    }
    n_spare = 0;
}

/* Sends the head (a copy while a retry may still need it) and arms the response clock.
 * Returns false when the copy could not be made (out of memory): nothing was queued. */
static bool send_head(struct exchange *ex, struct h1_stream *s)
{
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    struct upstream *up = s->up;
    struct evbuffer *out = sy_sock_output(up->sock);
    struct timeval tv = ms_tv(cfg->timeouts.upstream_response_ms);
    sy_sock_set_timeouts(up->sock, &tv, &tv);
    sy_sock_set_write_low(up->sock, cfg->limits.buffer_bytes / 2);
    if (up->reused && !s->fresh) {
        size_t len = evbuffer_get_length(s->head);
        const unsigned char *p = evbuffer_pullup(s->head, (ssize_t)len);
        return p && evbuffer_add(out, p, len) == 0; /* an evbuffer_add adds all or nothing */
    }
    return evbuffer_add_buffer(out, s->head) == 0;
}

static void body_ready(struct exchange *ex);
static int fail(struct exchange *ex, int status, const char *why);

void h1up_connected(struct exchange *ex)
{
    if (!send_head(ex, stream_of(ex))) {
        fail(ex, 503, exchange_nomem_reason);
        return;
    }
    exchange_on_sent(ex);
    body_ready(ex);
}

static bool start(struct exchange *ex, struct pool *p, const struct sy_cluster_spec *cl, bool late,
                  const char **why)
{
    struct h1_stream *s = stream_of(ex);
    s->up = upstream_get(ex->w, ex->endpoint, cl, ex, s->fresh, why);
    if (!s->up)
        return false;
    /* For the access log: whether the connection is new, and since when it connects. */
    ex->up_new = !s->up->reused;
    ex->up_used = true;
    ex->connect_start_us = ex->up_new ? sy_clock_us() : 0;
    ex->connect_us = 0;
    if (!s->up->connected)
        return true; /* h1up_connected goes on */
    if (late) {
        h1up_connected(ex);
        return true;
    }
    /* The body is pulled by the codec's exchange_body_ready once the head is consumed. */
    if (!send_head(ex, s)) {
        upstream_release(s->up, false);
        s->up = NULL;
        *why = exchange_nomem_reason; /* answered 503 by exchange_fail_connect */
        return false;
    }
    exchange_on_sent(ex);
    return true;
}

/* Request body: downstream -> upstream output. */
static void body_ready(struct exchange *ex)
{
    struct h1_stream *s = stream_of(ex);
    if (ex->req_done || !s->up || !s->up->connected)
        return;
    size_t budget = sy_route_table_config(ex->table)->limits.buffer_bytes;
    struct evbuffer *out = sy_sock_output(s->up->sock);
    for (;;) {
        size_t used = evbuffer_get_length(out);
        if (used >= budget)
            return; /* resumed by h1up_drained */
        bool done = false;
        ssize_t n = exchange_pull_body(ex, ex->tmp, budget - used, &done);
        if (n < 0)
            return; /* failed and gone */
        /* A cut chunk or last chunk would reach the cluster as a different request. */
        if (n > 0 && !(s->chunked_up ? h1_add_chunk(out, ex->tmp, (size_t)n)
                                     : evbuffer_add_buffer(out, ex->tmp) == 0)) {
            fail(ex, 503, exchange_nomem_reason);
            return;
        }
        if (done && ex->tunnel) {
            s->shutdown_pending = true;
            h1up_drained(ex);
            return;
        }
        if (done) {
            if (s->chunked_up && !h1_add_last_chunk(out, ex->trailers))
                fail(ex, 503, exchange_nomem_reason);
            return;
        }
        if (n == 0)
            return; /* the codec calls again when more arrives */
    }
}

void h1up_drained(struct exchange *ex)
{
    struct h1_stream *s = stream_of(ex);
    if (s->shutdown_pending) {
        if (evbuffer_get_length(sy_sock_output(s->up->sock)) == 0) {
            s->shutdown_pending = false;
            shutdown(sy_sock_fd(s->up->sock), SHUT_WR); /* the client's half-close */
        }
        return;
    }
    body_ready(ex);
}

static int fail(struct exchange *ex, int status, const char *why)
{
    exchange_on_error(ex, false, status, why);
    return -1;
}

/* The value of a HEAD or 304 answer's Content-Length (the parser validated it, and equal
 * repeated values, as numbers): the length of the representation it describes. */
static bool head_length(const struct sy_h1_response *resp, uint64_t *len)
{
    ssize_t i = sy_h1_find_header(resp->headers, resp->n_headers, "content-length");
    if (i < 0)
        return false;
    const struct sy_slice v = resp->headers[i].value;
    size_t k = 0;
    *len = 0;
    for (; k < v.len && k < 19 && v.p[k] >= '0' && v.p[k] <= '9'; k++)
        *len = *len * 10 + (uint64_t)(v.p[k] - '0');
    return k > 0;
}

/* Hands a parsed final head (`n` bytes of `in`) to the exchange. Returns 1, or -1 when the
 * exchange failed (and is gone). */
static int deliver_head(struct exchange *ex, struct h1_stream *s, struct sy_h1_response *resp,
                        struct evbuffer *in, ssize_t n)
{
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    bool switching = resp->status == 101;
    struct sy_slice upgrade = {0};
    if (switching) {
        /* The exchange checks that it was asked for, and for what. */
        ssize_t u = sy_h1_find_header(resp->headers, resp->n_headers, "upgrade");
        if (u >= 0)
            upgrade = resp->headers[u].value;
        resp->framing = SY_H1_BODY_CLOSE;
        resp->keep_alive = false;
    }
    s->framing = resp->framing;
    s->remaining = resp->content_length;
    s->keep_alive = resp->keep_alive && resp->framing != SY_H1_BODY_CLOSE;
    if (resp->framing == SY_H1_BODY_CHUNKED)
        sy_h1_chunked_init(&s->chunked, cfg->limits.max_header_bytes);
    uint64_t head_cl = 0;
    bool head_cl_ok = resp->framing == SY_H1_BODY_NONE && head_length(resp, &head_cl);
    struct resp_head h = {
        .status = resp->status,
        .reason = resp->reason,
        .headers = resp->headers,
        .n_headers = exchange_end_to_end(resp->headers, resp->n_headers),
        .has_body = resp->framing != SY_H1_BODY_NONE,
        .length_known = resp->framing == SY_H1_BODY_LENGTH,
        .content_length = resp->content_length,
        .upgrade = upgrade,
    };
    if (head_cl_ok && resp->status != 204) {
        h.head_length = true;
        h.content_length = head_cl;
    }
    if (switching) {
        /* Both sides idle out after timeouts.tunnel_idle; the client's bytes go raw. */
        struct timeval tv = ms_tv(cfg->timeouts.tunnel_idle_ms);
        sy_sock_set_timeouts(s->up->sock, &tv, &tv);
        s->chunked_up = false;
    }
    if (!exchange_on_head(ex, &h))
        return -1;
    evbuffer_drain(in, (size_t)n);
    evbuffer_drain(s->head, evbuffer_get_length(s->head)); /* no retry now */
    if (!h.has_body || (h.length_known && h.content_length == 0)) {
        exchange_on_end(ex, NULL);
        return -1; /* ended */
    }
    return 1;
}

/* Returns 1 when the head went to the client, 0 when more bytes are needed, -1 when the
 * exchange ended or failed (and is gone). */
static int parse_response_head(struct exchange *ex, struct h1_stream *s)
{
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    struct evbuffer *in = sy_sock_input(s->up->sock);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        struct sy_h1_limits lim = {cfg->limits.max_request_line, cfg->limits.max_header_bytes,
                                   cfg->limits.max_headers};
        size_t want = len < lim.max_head + 1 ? len : lim.max_head + 1;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
        if (!p)
            return fail(ex, 502, exchange_nomem_reason);
        struct sy_h1_response resp = {.headers = worker_scratch(ex->w)};
        ssize_t n = sy_h1_parse_response(p, want, &lim, ex->head_request, &resp);
        if (n == 0)
            return 0;
        if (n < 0) {
            char why[160];
            snprintf(why, sizeof(why), "cluster %s sent an invalid response: %s",
                     exchange_cluster_name(ex), resp.why ? resp.why : "malformed");
            return fail(ex, 502, why);
        }
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
            /* Interim answers: we sent our own 100 Continue; others are not relayed. */
            evbuffer_drain(in, (size_t)n);
            continue;
        }
        return deliver_head(ex, s, &resp, in, n);
    }
}

static void upstream_closed(struct exchange *ex, struct h1_stream *s);

/* Relays response body while the client has room. Returns false when the exchange ended. */
static bool relay_body(struct exchange *ex, struct h1_stream *s, struct evbuffer *in)
{
    for (;;) {
        size_t max = exchange_body_room(ex);
        if (max == 0)
            return true;
        ssize_t n;
        bool done = false;
        if (s->framing == SY_H1_BODY_CLOSE) {
            n = (ssize_t)evbuffer_get_length(in);
            if ((size_t)n > max)
                n = (ssize_t)max;
            if (!h1_move_body(in, ex->tmp, (size_t)n)) {
                fail(ex, 502, exchange_nomem_reason);
                return false;
            }
        } else {
            const char *why = NULL;
            n = h1_decode_body(&s->chunked, s->framing, &s->remaining, in, ex->tmp, max,
                               ex->trailers, &done, &why);
            if (n < 0) {
                fail(ex, 502, why);
                return false;
            }
        }
        if (n > 0)
            exchange_on_body(ex, ex->tmp, (size_t)n);
        if (done) {
            exchange_on_end(ex, evbuffer_get_length(ex->trailers) ? ex->trailers : NULL);
            return false;
        }
        if (n == 0)
            return true;
    }
}

/* Response: upstream input -> downstream. */
void h1up_readable(struct exchange *ex)
{
    struct h1_stream *s = stream_of(ex);
    struct upstream *up = s->up;
    if (!ex->resp_started) {
        int rc = parse_response_head(ex, s);
        if (rc < 0)
            return;
        if (rc == 0) {
            if (s->eof)
                upstream_closed(ex, s);
            return;
        }
    }
    struct evbuffer *in = sy_sock_input(up->sock);
    if (!relay_body(ex, s, in))
        return;
    if (s->eof && evbuffer_get_length(in) == 0) {
        upstream_closed(ex, s);
        return;
    }
    if (exchange_body_room(ex) == 0 && !up->read_paused && !s->eof) {
        sy_sock_disable(up->sock, EV_READ);
        up->read_paused = true;
    }
}

static void client_drained(struct exchange *ex)
{
    struct h1_stream *s = stream_of(ex);
    struct upstream *up = s ? s->up : NULL;
    if (!up || !ex->resp_started)
        return;
    if (up->read_paused) {
        up->read_paused = false;
        sy_sock_enable(up->sock, EV_READ);
        h1up_readable(ex);
    } else if (s->eof) {
        h1up_readable(ex); /* what came before the close, at the client's pace */
    }
}

/* The upstream closed and everything it sent has been relayed: a close-delimited body ends
 * here; anything else is cut short. */
static void upstream_closed(struct exchange *ex, struct h1_stream *s)
{
    if (ex->resp_started && s->framing == SY_H1_BODY_CLOSE) {
        s->keep_alive = false;
        exchange_on_end(ex, NULL);
        return;
    }
    char why[256];
    snprintf(why, sizeof(why), "cluster %s (%s) closed the connection %s",
             exchange_cluster_name(ex), ex->endpoint->address,
             ex->resp_started ? "mid-response" : "before answering");
    fail(ex, 502, why);
}

/* The connect failed: nothing of the request reached the cluster (a refused SYN takes no
 * byte, even when the socket was reported connected and the head, and what of the body
 * followed, were queued). The connection goes, and what it had queued goes back in front of
 * the head for a retry on another endpoint; a PROXY header in front of it leaves the request
 * as it is (no retry). */
static void connect_failed(struct exchange *ex, struct h1_stream *s)
{
    struct upstream *up = s->up;
    if (ex->resp_started)
        return;
    struct evbuffer *out = sy_sock_output(up->sock);
    if (evbuffer_get_length(out) > 0 &&
        (up->one_client || evbuffer_prepend_buffer(s->head, out) != 0))
        return;
    s->up = NULL;
    upstream_release(up, false);
    ex->connect_failed = true;
}

static void timed_out(struct exchange *ex, struct h1_stream *s, short what)
{
    struct upstream *up = s->up;
    char why[256];
    if (ex->tunnel) {
        fail(ex, 504, "tunnel idle for timeouts.tunnel_idle");
        return;
    }
    if ((what & SY_SOCK_READING) && !ex->req_done && ex->req_body_bytes != ex->req_body_mark) {
        /* Still uploading, and the upload moved: the response clock starts when the request
         * is complete. An upload that stalls for a whole period (a client that went quiet, a
         * cluster that stopped reading) ends here as a late answer would. */
        ex->req_body_mark = ex->req_body_bytes;
        sy_sock_enable(up->sock, EV_READ);
        return;
    }
    if (!up->connected) {
        worker_count_connect_error(ex->w, exchange_cluster_name(ex), ex->endpoint->address,
                                   SY_CONNERR_TIMEOUT);
        ex->generated = "upstream_connect_timeout";
        snprintf(why, sizeof(why), "cluster %s (%s) cannot be reached: connect timed out",
                 exchange_cluster_name(ex), ex->endpoint->address);
        connect_failed(ex, s);
        fail(ex, 502, why);
        return;
    }
    snprintf(why, sizeof(why), "cluster %s (%s) did not answer in time", exchange_cluster_name(ex),
             ex->endpoint->address);
    fail(ex, 504, why);
}

void h1up_event(struct exchange *ex, short what)
{
    struct h1_stream *s = stream_of(ex);
    struct upstream *up = s->up;
    if (what & SY_SOCK_TIMEOUT) {
        timed_out(ex, s, what);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    char why[256];
    bool nothing_received = !ex->resp_started && evbuffer_get_length(sy_sock_input(up->sock)) == 0;
    if (up->reused && nothing_received && !s->fresh && ex->safe && !ex->req_body_started) {
        /* A pooled connection the server had closed before it saw our request: it may go
         * once more, on a fresh connection. */
        s->fresh = true;
        s->up = NULL;
        upstream_release(up, false);
        snprintf(why, sizeof(why), "cluster %s (%s) closed the connection before answering",
                 exchange_cluster_name(ex), ex->endpoint->address);
        exchange_on_error(ex, true, 502, why);
        return;
    }
    if ((what & SY_SOCK_EOF) && !(what & SY_SOCK_ERROR) && up->connected) {
        /* Whatever arrived before the close is still to be relayed. */
        s->eof = true;
        h1up_readable(ex);
        return;
    }
    /* A refusal (an RST for our SYN) or an unreachable host can only be the connect's, even
     * when libevent has reported the socket connected already (a loopback refusal is). */
    enum sy_connect_error cerr = upstream_connect_error_of(up->pool, err);
    if (!up->connected || cerr == SY_CONNERR_REFUSED || cerr == SY_CONNERR_UNREACHABLE) {
        worker_count_connect_error(ex->w, exchange_cluster_name(ex), ex->endpoint->address, cerr);
        ex->generated = "upstream_connect";
    }
    if (!up->connected)
        snprintf(why, sizeof(why), "cluster %s (%s) cannot be reached: %s",
                 exchange_cluster_name(ex), ex->endpoint->address, upstream_error(up->sock, err));
    else
        snprintf(why, sizeof(why), "cluster %s (%s) failed %s: %s", exchange_cluster_name(ex),
                 ex->endpoint->address, ex->resp_started ? "mid-response" : "before answering",
                 upstream_error(up->sock, err));
    if (!up->connected || cerr == SY_CONNERR_REFUSED || cerr == SY_CONNERR_UNREACHABLE)
        connect_failed(ex, s);
    fail(ex, 502, why);
}

const struct upstream_ops h1_upstream_ops = {
    .prepare = prepare,
    .start = start,
    .body_ready = body_ready,
    .client_drained = client_drained,
    .cancel = cancel,
    .retry_safe = false,
};
