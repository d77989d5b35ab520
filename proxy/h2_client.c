/* SPDX-License-Identifier: MIT */
/* HTTP/2 to the clusters (protocol h2c, or h2 over TLS), with nghttp2's client session. One
 * connection carries many exchanges, up to the server's SETTINGS_MAX_CONCURRENT_STREAMS; when
 * every connection of a pool is full (or going away) another is opened. A GOAWAY from the
 * server lets the streams it took finish; the ones it did not take come back unprocessed and
 * go once more on another connection, as does a request that failed before any byte of it was
 * sent.
 *
 * Flow control is the backpressure: response DATA is given back to the window only when the
 * client has taken it (to half of buffer_bytes), and the request body is pulled from the
 * client only when nghttp2 can send it and the socket is not backed up.
 *
 * nghttp2 calls back while we are inside it; an exchange may end in such a callback, so the
 * session is never freed there: `in_io` defers that, and any flush asked for, to the end of
 * the outermost call. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2_internal.h"
#include "proxy_internal.h"

/* Until the server's SETTINGS arrive: what nghttp2 itself assumes. */
#define H2_INITIAL_STREAMS 100

struct h2_up {
    struct sy_worker *w;
    struct pool *pool;
    struct sy_sock *sock;
    nghttp2_session *ng;
    bool connected;     /* TCP, and TLS with ALPN h2, are up */
    bool settings_seen; /* the server's first SETTINGS arrived */
    bool closing;       /* no new streams: GOAWAY either way, or the connection failed */
    bool in_io;         /* inside nghttp2: frees and flushes wait */
    bool want_flush;
    bool dead;        /* free once the outermost call returns */
    size_t n_streams; /* streams attached, submitted or waiting for the connection */
    struct h2_stream *streams;
    size_t budget; /* bytes queued towards the server before we stop producing */
    struct event *idle_timer;
    struct event *flush_ev; /* a flush on the next loop turn */
    struct h2_up *next;     /* in the pool */
};

/* One request's HTTP/2 state (ex->ups), the nghttp2 stream's user data. Recycled per worker
 * thread with its buffers and timer. */
struct h2_stream {
    struct exchange *ex;
    struct h2_up *h;               /* the connection carrying the stream, or NULL */
    struct h2_stream *next, *prev; /* on that connection; `next` also in the spare list */
    struct h2_up *avoid;           /* a retry does not go back to this one (compared only) */
    int32_t id;                    /* 0 until the request is submitted */
    nghttp2_nv *nva;               /* the request's fields, kept for a retry */
    size_t n_nva, nva_cap;
    char *store; /* their bytes */
    size_t store_cap;
    struct evbuffer *hdrs; /* the response header block being received, "name\0value\0"... */
    bool deferred;         /* the body provider waits for the client */
    bool sent;             /* the HEADERS went out: the cluster may have acted on it */
    bool end_sent;         /* our side of the stream is closed */
    bool req_eof;          /* the client's body ended (pulled to the end) */
    struct timeval seen;   /* the stream's last sign of life */
    size_t unconsumed;     /* response DATA not yet given back to the flow window */
    struct event *timer;   /* upstream_response for the stream */
};

#if defined(__SANITIZE_ADDRESS__)
static const bool spare_on = false;
#else
static const bool spare_on = true;
#endif
#define H2_SPARE_MAX 1024
static _Thread_local struct h2_stream *spare;
static _Thread_local size_t n_spare;

static bool flush(struct h2_up *h);
static void conn_fail(struct h2_up *h, const char *why);

static struct h2_stream *stream_get(struct h2_up *h, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(h->ng, id) : NULL;
}

/* The stream failed: the exchange hears of it with the cluster and endpoint named (it may go
 * again on another connection, or end). */
static void report_failure(struct h2_stream *s, struct h2_up *from, bool unprocessed, int status,
                           const char *why)
{
    struct exchange *ex = s->ex;
    char msg[400];
    snprintf(msg, sizeof(msg), "cluster %s (%s) %s", exchange_cluster_name(ex),
             ex->endpoint->address, why);
    s->avoid = from;
    exchange_on_error(ex, unprocessed, status, msg);
}

/* /metrics reads an HTTP/2 pool's connections (idle: no stream) from its endpoint's
 * counters. Called when a connection comes or goes, or its first stream starts or last ends. */
static void h2_gauge(struct pool *p)
{
    if (!p->stat)
        return;
    uint64_t open = 0, idle = 0;
    for (struct h2_up *h = p->h2; h; h = h->next) {
        open++;
        idle += h->n_streams == 0;
    }
    atomic_store_explicit(&p->stat->open, open, memory_order_relaxed);
    atomic_store_explicit(&p->stat->idle, idle, memory_order_relaxed);
}

static void unlink_stream(struct h2_up *h, struct h2_stream *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
    s->h = NULL;
    if (--h->n_streams == 0)
        h2_gauge(h->pool);
    queue_kick(h->pool); /* a stream slot is free */
}

static void conn_free(struct h2_up *h)
{
    for (struct h2_up **pp = &h->pool->h2; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    h2_gauge(h->pool);
    if (h->idle_timer)
        event_free(h->idle_timer);
    if (h->flush_ev)
        event_free(h->flush_ev);
    nghttp2_session_del(h->ng);
    sy_sock_free(h->sock);
    h->w->n_upstream--;
    queue_kick(h->pool);
    free(h);
}

/* No stream left: close now if the connection is going away, else after upstream_idle. */
static void check_idle(struct h2_up *h)
{
    if (h->n_streams)
        return;
    if (h->closing || h->pool->retired || h->w->draining || !h->connected) {
        if (!h->connected || !nghttp2_session_want_write(h->ng)) {
            h->dead = true;
            return;
        }
        if (!h->closing) {
            h->closing = true;
            nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
        }
        return; /* freed once the GOAWAY is written */
    }
    struct timeval tv = ms_tv(worker_config(h->w)->timeouts.upstream_idle_ms);
    evtimer_add(h->idle_timer, &tv);
}

/* Ends the outermost call into nghttp2: flushes what was asked for and frees the connection
 * if it died meanwhile. */
static void io_done(struct h2_up *h)
{
    h->in_io = false;
    if (h->dead) {
        conn_free(h);
        return;
    }
    if (h->want_flush)
        flush(h);
}

/* Hands nghttp2's frames to the socket until budget bytes wait there. Returns false when the
 * connection is gone (freed). */
static bool flush(struct h2_up *h)
{
    if (h->in_io) {
        h->want_flush = true;
        return true;
    }
    h->want_flush = false;
    if (!h->connected && !h->dead)
        return true;
    h->in_io = true;
    struct evbuffer *out = sy_sock_output(h->sock);
    do {
        h->want_flush = false;
        while (!h->dead && evbuffer_get_length(out) < h->budget) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(h->ng, &p);
            if (n < 0) {
                h->in_io = false;
                conn_fail(h, nghttp2_strerror((int)n));
                return false;
            }
            if (n == 0)
                break;
            evbuffer_add(out, p, (size_t)n);
        }
    } while (!h->dead && h->want_flush && evbuffer_get_length(out) < h->budget);
    h->want_flush = false;
    h->in_io = false;
    if (!h->dead && !nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng) &&
        evbuffer_get_length(out) == 0 && h->n_streams == 0)
        h->dead = true;
    if (h->dead) {
        conn_free(h);
        return false;
    }
    return true;
}

/* The stream leaves the connection's books (nghttp2's stream, if any, no longer reaches it). */
static void forget_stream(struct h2_up *h, struct h2_stream *s)
{
    if (s->id)
        nghttp2_session_set_stream_user_data(h->ng, s->id, NULL);
    unlink_stream(h, s);
    if (s->timer)
        evtimer_del(s->timer); /* kept with the stream for its next use */
}

/* Every stream fails: `why` is the connection's reason. */
static void conn_fail(struct h2_up *h, const char *why)
{
    char reason[256];
    snprintf(reason, sizeof(reason), "%s", why);
    h->closing = true;
    h->in_io = true; /* the exchanges' ends must not free the connection under us */
    while (h->streams) {
        struct h2_stream *s = h->streams;
        forget_stream(h, s);
        /* A connection that never came up is a connect failure (exchange.c retry_connect:
         * once, within the cluster's retry budget), not a stream the server gave back:
         * libevent reported a loopback refusal as connected first. */
        s->ex->connect_failed = !h->connected;
        report_failure(s, h, h->connected && !s->sent, 502, reason);
    }
    h->dead = true;
    h->in_io = false;
    conn_free(h);
}

/* ---- the response ------------------------------------------------------------------------ */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_stream *s = stream_get(user, frame->hd.stream_id);
    if (s)
        evbuffer_drain(s->hdrs, evbuffer_get_length(s->hdrs));
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct h2_stream *s = stream_get(user, frame->hd.stream_id);
    if (!s)
        return 0;
    struct exchange *ex = s->ex;
    if (ex->resp_started) {
        /* Trailer fields, as lines for the downstream codec. */
        struct head_writer hw;
        hw_init(&hw, ex->trailers);
        hw_field(&hw, sy_slice_of((const char *)name, namelen),
                 sy_slice_of((const char *)value, valuelen));
        hw_flush(&hw);
        /* A field lost for want of memory: the stream is reset (502), not ended without it. */
        return hw.failed ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    if (evbuffer_get_length(s->hdrs) + namelen + valuelen + 2 > cfg->limits.max_header_bytes)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset: 502 */
    /* Out of memory: as over the limit (a head with a field cut or missing is another head). */
    if (evbuffer_add(s->hdrs, name, namelen) != 0 || evbuffer_add(s->hdrs, "", 1) != 0 ||
        evbuffer_add(s->hdrs, value, valuelen) != 0 || evbuffer_add(s->hdrs, "", 1) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* The response head in the codec-neutral form: framing from END_STREAM and content-length. */
static void head_framing(const struct exchange *ex, struct resp_head *h, bool end_stream,
                         bool has_length, uint64_t length)
{
    bool bodiless = ex->head_request || h->status == 204 || h->status == 304;
    h->has_body = !end_stream && !bodiless;
    if (bodiless) {
        if (has_length && h->status != 204) {
            h->head_length = true; /* the length of the representation HEAD/304 describes */
            h->content_length = length;
        }
    } else if (has_length || end_stream) {
        /* An HTTP/1.1 client needs the length, and an empty body has one. */
        h->length_known = true;
        h->content_length = end_stream ? 0 : length;
        if (end_stream)
            h->has_body = false;
    }
}

static void stream_nomem(struct h2_up *h, struct h2_stream *s);

/* The head collected in s->hdrs goes to the exchange (interim 1xx heads are dropped). */
static void deliver_head(struct h2_stream *s, bool end_stream)
{
    struct exchange *ex = s->ex;
    size_t len = evbuffer_get_length(s->hdrs);
    char *p = (char *)evbuffer_pullup(s->hdrs, (ssize_t)len);
    if (!p && len > 0) {
        stream_nomem(s->h, s);
        return;
    }
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    struct sy_header *fields = worker_scratch(ex->w);
    size_t n = 0, max = cfg->limits.max_headers;
    int status = 0;
    bool has_length = false;
    uint64_t length = 0;
    char *end = p + len;
    while (p < end) {
        char *name = p, *value = name + strlen(name) + 1;
        size_t nlen = (size_t)(value - 1 - name), vlen = strlen(value);
        p = value + vlen + 1;
        if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
            status = (vlen == 3) ? atoi(value) : 0;
        } else if (name[0] == ':') {
            continue;
        } else if (nlen == 14 && memcmp(name, "content-length", 14) == 0) {
            has_length = true; /* nghttp2 checked it is one number matching the DATA */
            length = strtoull(value, NULL, 10);
        } else if (n < max) {
            fields[n].name = sy_slice_of(name, nlen);
            fields[n].value = sy_slice_of(value, vlen);
            n++;
        }
    }
    if (status >= 100 && status < 200)
        return; /* interim: we answered 100 Continue ourselves */
    struct resp_head h = {.status = status, .headers = fields, .n_headers = n};
    head_framing(ex, &h, end_stream, has_length, length);
    exchange_on_head(ex, &h);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_up *h = user;
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
            h->settings_seen = true;
            /* New connections to this endpoint start from what it allows, not from 100. */
            h->pool->h2_max_streams =
                nghttp2_session_get_remote_settings(ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
            queue_kick(h->pool); /* the server may allow more streams than assumed */
        }
        return 0;
    case NGHTTP2_GOAWAY:
        /* Streams above last_stream_id come back closed with REFUSED_STREAM. */
        h->closing = true;
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    struct h2_stream *s = stream_get(h, frame->hd.stream_id);
    if (!s)
        return 0;
    event_base_gettimeofday_cached(h->w->base, &s->seen);
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && !s->ex->resp_started) {
        deliver_head(s, end);
        s = stream_get(h, frame->hd.stream_id); /* it may have ended there */
    }
    if (s && end && s->ex->resp_started) {
        struct exchange *ex = s->ex;
        exchange_on_end(ex, evbuffer_get_length(ex->trailers) ? ex->trailers : NULL);
    }
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                              size_t len, void *user)
{
    struct h2_up *h = user;
    struct h2_stream *s = stream_get(h, id);
    if (!s) {
        nghttp2_session_consume(ng, id, len); /* nobody wants it: keep the window open */
        return 0;
    }
    event_base_gettimeofday_cached(h->w->base, &s->seen);
    struct exchange *ex = s->ex;
    if (evbuffer_add(ex->tmp, data, len) != 0) {
        nghttp2_session_consume(ng, id, len);
        stream_nomem(h, s);
        return 0;
    }
    /* The exchange may end inside (the client went away): it is looked up again. */
    if (exchange_on_body(ex, ex->tmp, len))
        nghttp2_session_consume(ng, id, len);
    else if ((s = stream_get(h, id)) != NULL)
        s->unconsumed += len;
    else
        nghttp2_session_consume(ng, id, len);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_up *h = user;
    struct h2_stream *s = stream_get(h, frame->hd.stream_id);
    if (!s)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS)
        s->sent = true;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        s->end_sent = true;
    return 0;
}

/* The exchange is detached before it hears of the failure, so that the stream's end does not
 * reach it twice. */
static void stream_failed(struct h2_up *h, struct h2_stream *s, bool unprocessed, int status,
                          const char *why)
{
    forget_stream(h, s);
    report_failure(s, h, unprocessed, status, why);
    check_idle(h);
}

/* A buffer of the stream's response could not grow (out of memory): the stream is reset and
 * the exchange fails (502) rather than go on with bytes missing. */
static void stream_nomem(struct h2_up *h, struct h2_stream *s)
{
    nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    h->want_flush = true;
    stream_failed(h, s, false, 502, exchange_nomem_reason);
}

static int on_frame_not_send(nghttp2_session *ng, const nghttp2_frame *frame, int error, void *user)
{
    struct h2_up *h = user;
    struct h2_stream *s = stream_get(h, frame->hd.stream_id);
    if (s && frame->hd.type == NGHTTP2_HEADERS) {
        char why[160];
        snprintf(why, sizeof(why), "the request could not be sent: %s", nghttp2_strerror(error));
        stream_failed(h, s, true, 502, why);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    struct h2_up *h = user;
    struct h2_stream *s = stream_get(h, id);
    if (!s)
        return 0;
    /* Still attached: the stream ended without a complete response. */
    char why[200];
    snprintf(why, sizeof(why), "the cluster %s the stream (%s)",
             code == NGHTTP2_REFUSED_STREAM ? "refused" : "reset", nghttp2_http2_strerror(code));
    stream_failed(h, s, code == NGHTTP2_REFUSED_STREAM || !s->sent, 502, why);
    return 0;
}

/* ---- the request body -------------------------------------------------------------------- */

static ssize_t data_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct h2_up *h = user;
    struct h2_stream *s = stream_get(h, id);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    struct exchange *ex = s->ex;
    if (evbuffer_get_length(ex->tmp) == 0 && !s->req_eof) {
        bool done = false;
        if (exchange_pull_body(ex, ex->tmp, length, &done) < 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the exchange failed (and is gone) */
        s->req_eof = done;
    }
    ssize_t n = evbuffer_remove(ex->tmp, buf, length);
    if (n < 0)
        n = 0;
    if (s->req_eof && evbuffer_get_length(ex->tmp) == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (evbuffer_get_length(ex->trailers)) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_nv nv[64];
            ssize_t k = trailer_lines_to_nv(ex->trailers, nv, 64);
            if (k < 0) /* out of memory: reset, rather than ended without them */
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            nghttp2_submit_trailer(ng, id, nv, (size_t)k); /* copies the fields */
            evbuffer_drain(ex->trailers, evbuffer_get_length(ex->trailers));
            s->end_sent = true; /* the trailers end the stream */
        }
        return n;
    }
    if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return n;
}

/* ---- the connection ---------------------------------------------------------------------- */

static void submit(struct h2_up *h, struct h2_stream *s)
{
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read_cb};
    int32_t id =
        nghttp2_submit_request(h->ng, NULL, s->nva, s->n_nva, s->ex->req_done ? NULL : &prd, s);
    if (id < 0) {
        /* Stream ids used up, or the session is going away: another connection. */
        h->closing = true;
        stream_failed(h, s, true, 502, nghttp2_strerror(id));
        return;
    }
    s->id = id;
    exchange_on_sent(s->ex);
}

static void read_cb(struct sy_sock *sk, void *arg)
{
    struct h2_up *h = arg;
    struct evbuffer *in = sy_sock_input(sk);
    h->in_io = true;
    while (evbuffer_get_length(in) && !h->dead) {
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        ssize_t n = nghttp2_session_mem_recv(h->ng, v.iov_base, v.iov_len);
        if (n < 0) {
            h->in_io = false;
            char why[160];
            snprintf(why, sizeof(why), "HTTP/2 error from the cluster: %s",
                     nghttp2_strerror((int)n));
            conn_fail(h, why);
            return;
        }
        evbuffer_drain(in, (size_t)n);
    }
    h->want_flush = true;
    io_done(h);
}

static void write_cb(struct sy_sock *sk, void *arg)
{
    struct h2_up *h = arg;
    if (!flush(h))
        return;
    if (h->closing && h->n_streams == 0 && evbuffer_get_length(sy_sock_output(sk)) == 0 &&
        !nghttp2_session_want_write(h->ng))
        conn_free(h); /* the GOAWAY is out */
}

static void event_cb(struct sy_sock *sk, short what, void *arg)
{
    struct h2_up *h = arg;
    if (what & SY_SOCK_CONNECTED) {
        if (!upstream_alpn_is(sk, "h2")) {
            upstream_count_connect_error(h->pool, SY_CONNERR_TLS);
            conn_fail(h, "the cluster did not agree to HTTP/2 (ALPN h2)");
            return;
        }
        int one = 1;
        setsockopt(sy_sock_fd(sk), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        h->connected = true;
        sy_sock_set_timeouts(sk, NULL, NULL);
        const struct sy_config *cfg = worker_config(h->w);
        uint32_t window = cfg->limits.buffer_bytes < 65535 ? 65535 : cfg->limits.buffer_bytes;
        nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window},
        };
        nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, 2);
        /* The connection's window: every stream's, so one slow client stalls only itself. */
        size_t conn_window = (size_t)window * H2_INITIAL_STREAMS;
        if (conn_window > (1u << 30))
            conn_window = 1u << 30;
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_window);
        h->in_io = true;
        for (struct h2_stream *s = h->streams, *next; s; s = next) {
            next = s->next;
            if (s->id == 0)
                submit(h, s);
        }
        h->want_flush = true;
        io_done(h);
        return;
    }
    const char *reason;
    char why[256];
    if (what & SY_SOCK_TIMEOUT) {
        reason = h->connected ? "timed out" : "connect timed out";
        if (!h->connected)
            upstream_count_connect_error(h->pool, SY_CONNERR_TIMEOUT);
    } else {
        int err = (what & SY_SOCK_ERROR) ? EVUTIL_SOCKET_ERROR() : 0;
        reason = upstream_error(sk, err);
        /* A refusal can only be the connect's, even when libevent saw the socket connected
         * (a loopback refusal is reported so). */
        enum sy_connect_error cerr = upstream_connect_error_of(h->pool, err);
        if (!h->connected || cerr == SY_CONNERR_REFUSED || cerr == SY_CONNERR_UNREACHABLE)
            upstream_count_connect_error(h->pool, cerr);
    }
    snprintf(why, sizeof(why), "%s: %s",
             h->connected ? "the connection failed" : "cannot be reached", reason);
    conn_fail(h, why);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    flush(arg);
}

/* A flush on the next loop turn: a new request is submitted from exchange_start, whose codec
 * has not consumed the request head yet, so its body must not be pulled there and then. */
static void schedule_flush(struct h2_up *h)
{
    if (!event_pending(h->flush_ev, EV_TIMEOUT | EV_READ | EV_WRITE, NULL))
        event_active(h->flush_ev, EV_WRITE, 0);
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_up *h = arg;
    if (h->n_streams)
        return;
    h->closing = true;
    nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
    flush(h);
}

/* One set for the process (sessions copy it), made once: a thread-local one would be lost
 * with its worker. */
static nghttp2_session_callbacks *cbs;
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

static void make_callbacks(void)
{
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
}

static nghttp2_session_callbacks *callbacks(void)
{
    pthread_once(&cbs_once, make_callbacks);
    return cbs;
}

static struct h2_up *conn_new(struct sy_worker *w, struct pool *p, const struct sy_cluster_spec *cl,
                              const char **why)
{
    struct sy_sock *sk = upstream_connect(w, p, cl, why);
    if (!sk)
        return NULL;
    struct h2_up *h = sy_xcalloc(1, sizeof(*h));
    h->w = w;
    h->pool = p;
    h->sock = sk;
    h->budget = worker_config(w)->limits.buffer_bytes;
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, H2_INITIAL_STREAMS);
    nghttp2_session_client_new3(&h->ng, callbacks(), h, opt, sy_mem_nghttp2());
    nghttp2_option_del(opt);
    h->idle_timer = evtimer_new(w->base, idle_cb, h);
    h->flush_ev = event_new(w->base, -1, 0, flush_cb, h);
    sy_sock_set_write_low(sk, h->budget / 2);
    sy_sock_set_eager(sk, false); /* the frames of many callbacks go in one write */
    sy_sock_setcb(sk, read_cb, write_cb, event_cb, h);
    sy_sock_enable(sk, EV_READ | EV_WRITE);
    h->next = p->h2;
    p->h2 = h;
    h2_gauge(p);
    w->n_upstream++;
    return h;
}

static bool has_room(struct h2_up *h)
{
    if (h->closing || h->dead)
        return false;
    uint32_t max = h->pool->h2_max_streams ? h->pool->h2_max_streams : H2_INITIAL_STREAMS;
    if (h->settings_seen)
        max = nghttp2_session_get_remote_settings(h->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return h->n_streams < max;
}

bool h2up_has_room(const struct pool *p, size_t max_conns)
{
    size_t n = 0;
    for (struct h2_up *h = p->h2; h; h = h->next, n++)
        if (has_room(h))
            return true;
    return n < max_conns;
}

static void stream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_stream *s = arg;
    struct exchange *ex = s->ex;
    struct h2_up *h = s->h;
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    unsigned ms = cfg->timeouts.upstream_response_ms;
    struct timeval now, idle, left;
    event_base_gettimeofday_cached(h->w->base, &now);
    timersub(&now, &s->seen, &idle);
    uint64_t idle_ms = (uint64_t)idle.tv_sec * 1000 + (uint64_t)idle.tv_usec / 1000;
    if (!ex->req_done && ex->req_body_bytes != ex->req_body_mark) {
        /* Still uploading, and the upload moved: the clock starts again (a stalled upload
         * does not hold the stream for ever). */
        ex->req_body_mark = ex->req_body_bytes;
        s->seen = now;
        left = ms_tv(ms);
        evtimer_add(s->timer, &left);
        return;
    }
    if (idle_ms < ms) {
        /* Something arrived meanwhile. */
        left = ms_tv((unsigned)(ms - idle_ms));
        evtimer_add(s->timer, &left);
        return;
    }
    h->in_io = true;
    if (s->id)
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    stream_failed(h, s, false, h->connected ? 504 : 502,
                  h->connected ? "did not answer in time" : "cannot be reached: connect timed out");
    h->want_flush = true;
    io_done(h);
}

/* The request's fields as nghttp2 wants them, in the stream's own storage (grown, never
 * shrunk, so that a recycled stream allocates nothing). */
static void prepare(struct exchange *ex, const struct req_head *req, bool tls_up)
{
    struct h2_stream *s = spare;
    if (s) {
        spare = s->next;
        n_spare--;
        s->next = NULL;
    } else {
        s = sy_xcalloc(1, sizeof(*s));
        s->hdrs = evbuffer_new();
        if (!s->hdrs) {
            sy_log(SY_LOG_ERROR, "http", "out of memory"); /* as sy_xcalloc does */
            abort();
        }
    }
    s->ex = ex;
    s->h = NULL;
    s->avoid = NULL;
    s->id = 0;
    s->deferred = s->sent = s->end_sent = s->req_eof = false;
    s->unconsumed = 0;
    ex->ups = s;
    struct head_sink sink;
    sink_init(&sink, true, s->hdrs); /* empty, and unused until a response comes */
    exchange_rewrite_head(ex, req, &sink, tls_up);
    size_t len = evbuffer_get_length(s->hdrs);
    sy_xgrow((void **)&s->store, &s->store_cap, len ? len : 1, 1);
    evbuffer_remove(s->hdrs, s->store, len);
    sy_xgrow((void **)&s->nva, &s->nva_cap, sink.n ? sink.n : 1, sizeof(*s->nva));
    s->n_nva = sink.n;
    for (size_t i = 0; i < sink.n; i++) {
        const struct nv_off *o = &sink.o[i];
        s->nva[i] = (nghttp2_nv){(uint8_t *)s->store + o->name, (uint8_t *)s->store + o->value,
                                 o->name_len, o->value_len, NGHTTP2_NV_FLAG_NONE};
    }
    free(sink.o);
}

static void stream_free(struct h2_stream *s)
{
    evbuffer_free(s->hdrs);
    if (s->timer)
        event_free(s->timer);
    free(s->nva);
    free(s->store);
    free(s);
}

void h2up_cache_free(void)
{
    while (spare) {
        struct h2_stream *s = spare;
        spare = s->next;
        stream_free(s);
    }
    n_spare = 0;
}

/* Puts the stream on a connection of pool `p` with room for another stream, opening one when
 * none has (not the one a failure came from). */
static bool start(struct exchange *ex, struct pool *p, const struct sy_cluster_spec *cl, bool late,
                  const char **why)
{
    (void)late; /* the body is pulled when nghttp2 asks for it */
    struct sy_worker *w = ex->w;
    struct h2_stream *s = ex->ups;
    struct h2_up *h = NULL;
    for (struct h2_up *c = p->h2; c && !h; c = c->next)
        if (c != s->avoid && has_room(c))
            h = c;
    if (!h) {
        h = conn_new(w, p, cl, why);
        if (!h)
            return false;
    }
    s->avoid = NULL;
    /* For the access log: a stream on a new connection counts its connect time. */
    ex->up_new = !h->connected;
    ex->up_used = true;
    ex->connect_start_us = ex->up_new ? sy_clock_us() : 0;
    ex->connect_us = 0;
    evtimer_del(h->idle_timer);
    s->h = h;
    s->id = 0;
    s->sent = s->end_sent = false;
    s->next = h->streams;
    s->prev = NULL;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    if (h->n_streams++ == 0)
        h2_gauge(h->pool);
    if (!s->timer)
        s->timer = evtimer_new(w->base, stream_timer_cb, s);
    event_base_gettimeofday_cached(w->base, &s->seen);
    const struct sy_config *cfg = sy_route_table_config(ex->table);
    /* Connecting: the connect timeout runs first; the response clock after. */
    struct timeval tv =
        ms_tv(cfg->timeouts.upstream_response_ms + cfg->timeouts.upstream_connect_ms);
    evtimer_add(s->timer, &tv);
    if (h->connected) {
        /* No nghttp2 callback runs in a submit; the frames go out on the next turn. */
        bool outer = !h->in_io;
        h->in_io = true;
        submit(h, s);
        h->in_io = !outer;
        if (h->dead && outer) {
            conn_free(h);
            return true; /* the exchange moved on (retried or failed) in submit */
        }
        schedule_flush(h);
    }
    return true;
}

/* The exchange leaves its stream: the stream is reset unless it ended both ways. */
static void detach(struct h2_stream *s)
{
    struct exchange *ex = s->ex;
    struct h2_up *h = s->h;
    bool outer = !h->in_io;
    h->in_io = true;
    if (s->id) {
        if (s->unconsumed)
            nghttp2_session_consume(h->ng, s->id, s->unconsumed);
        s->unconsumed = 0;
        /* A stream that did not end both ways is reset; after a complete response the
         * server learns it need not read the rest of our body. */
        if (!(ex->resp_done && s->end_sent) && nghttp2_session_find_stream(h->ng, s->id))
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id,
                                      ex->resp_done ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    }
    forget_stream(h, s);
    check_idle(h);
    h->want_flush = true;
    if (outer)
        io_done(h);
}

static void cancel(struct exchange *ex, bool complete)
{
    struct h2_stream *s = ex->ups;
    if (!s)
        return;
    if (s->h)
        detach(s);
    ex->ups = NULL;
    s->ex = NULL;
    s->avoid = NULL;
    if (spare_on && n_spare < H2_SPARE_MAX) {
        evbuffer_drain(s->hdrs, evbuffer_get_length(s->hdrs));
        s->next = spare;
        spare = s;
        n_spare++;
        return;
    }
    stream_free(s);
}

static void body_ready(struct exchange *ex)
{
    struct h2_stream *s = ex->ups;
    struct h2_up *h = s->h;
    if (!h || !s->id || !s->deferred)
        return;
    s->deferred = false;
    nghttp2_session_resume_data(h->ng, s->id);
    flush(h);
}

static void client_drained(struct exchange *ex)
{
    struct h2_stream *s = ex->ups;
    struct h2_up *h = s->h;
    if (!h || !s->id || !s->unconsumed)
        return;
    nghttp2_session_consume(h->ng, s->id, s->unconsumed);
    s->unconsumed = 0;
    flush(h);
}

const struct upstream_ops h2_upstream_ops = {
    .prepare = prepare,
    .start = start,
    .body_ready = body_ready,
    .client_drained = client_drained,
    .cancel = cancel,
    .retry_safe = true,
};

void h2up_close_pool(struct pool *p, bool now)
{
    for (struct h2_up *h = p->h2, *next; h; h = next) {
        next = h->next;
        if (now) {
            conn_fail(h, "the proxy is shutting down");
            continue;
        }
        if (!h->closing && h->connected) {
            h->closing = true;
            nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR,
                                  NULL, 0);
        }
        if (h->n_streams == 0) {
            h->dead = true;
            conn_free(h);
        } else {
            flush(h);
        }
    }
}
