/* SPDX-License-Identifier: MIT */
/* The downstream HTTP/2 codec (RFC 9113) on nghttp2's server session. Every stream becomes
 * its own request in the codec-neutral form and its own exchange, so each stream is routed on
 * its own. Flow control is the backpressure: automatic WINDOW_UPDATEs are off and request body
 * bytes are acknowledged only as the exchange takes them for the upstream, so a slow cluster
 * stalls the client's upload instead of filling the proxy. Frames are produced with
 * nghttp2_session_mem_send from a deferred flush event, never from inside nghttp2's own
 * callbacks, and stop while the socket's output holds more than one buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2_internal.h"
#include "proxy_internal.h"

#define OUTPUT_HIGH (64 * 1024)
/* The most settings of the client's SETTINGS frame a parked connection keeps (RFC 9113
 * defines 6, extensions 3 more); a longer frame keeps the session. */
#define PEER_IV_MAX 12
/* A parked connection woken this often without opening a stream keeps its session: a client
 * that pings now and then should not cost a session built and freed for every PING. */
#define MAX_WAKES   8
#define FRAME_HDLEN 9

struct h2_session;

/* Where a field's name and value sit in the stream's arena. */
struct field_ref {
    uint32_t name, name_len, value, value_len;
};

struct h2_stream {
    struct downstream down; /* first */
    struct h2_session *s;
    int32_t id;
    struct h2_stream *next, *prev;

    /* Request head, collected field by field. */
    char *arena;
    size_t arena_len, arena_cap;
    struct field_ref *fields;
    size_t n_fields, cap_fields;
    size_t header_bytes;
    bool too_large;
    int method, path, authority; /* field indices of the pseudo-headers, -1 when absent */
    bool end_stream;             /* the client's half is complete */
    bool head_done;              /* the request HEADERS are in: start at the end of the read */
    bool head_end_stream;        /* ...and they ended the stream (no body) */
    bool started;                /* handed to an exchange (or answered) */

    struct evbuffer *req_body; /* DATA received, not yet taken by the exchange */
    struct evbuffer *req_trailers;

    struct evbuffer *resp_body; /* response bytes waiting for the data provider */
    struct evbuffer *resp_trailers;
    bool resp_submitted;
    bool resp_end;
    bool deferred;      /* the data provider is waiting for bytes */
    bool want_drain;    /* tell the exchange that resp_body has room again */
    bool rst_after_end; /* the request body was not read: reset once the response is out */
    bool resp_lost;     /* response bytes could not be buffered: the stream is reset */
    bool req_lost;      /* request body bytes could not be buffered: pull_body fails (503) */
    bool resp_end_sent; /* END_STREAM went out */
    bool timed_out;     /* reset by its own deadline */

    /* The stream's client deadlines, checked lazily by one timer: the head (client_header),
     * the request body (client_body: no DATA while the window is open) and the response
     * (client_send: bytes wait and the client's window takes none). */
    struct event *timer;
    struct timeval timer_at;  /* when the timer, if pending, fires */
    struct timeval body_seen; /* request body progress, or when the window last reopened */
    struct timeval send_seen; /* response progress, or when bytes began to wait */
};

struct h2_session {
    struct conn conn; /* first */
    nghttp2_session *ng;
    struct sy_sock *sock;
    struct event *flush_ev;
    struct event *start_ev; /* starts streams a turn later once the client has reset any */
    struct event *idle_timer;
    struct event *notice_ev; /* drain after an upgrade: the GOAWAY, if not idle before */
    struct h2_stream *streams;
    size_t n_streams;
    bool goaway;
    bool closing;
    /* Rapid reset toward the clusters: requests the client reset after they went to a
     * cluster and before their answer began, against all it sent (limits.h2_early_resets). */
    size_t n_requests, n_early_resets;
    size_t n_resets; /* RST_STREAM frames from the client */
    char *nv_buf;    /* lower-cased response field names */
    size_t nv_cap;
    /* Stream ids the client used (RFC 9113 §5.1.1): the highest, and which of the 256 odd ids
     * up to it opened a stream (bit (id / 2) % 256), to tell trailers for a stream that closed
     * from a new stream below one already used. */
    int32_t max_id;
    uint64_t used_ids[4];

    /* Parking (see session_park): a connection that has only exchanged SETTINGS, PING and
     * connection WINDOW_UPDATEs is held without its nghttp2 session (ng NULL), which costs
     * more than all the rest. What a new session needs to be the same one again: the client's
     * one SETTINGS frame and the window it gave us. */
    bool busy;               /* any other frame came (or too many wakes): never parked again */
    bool settings_acked;     /* the client acknowledged our SETTINGS */
    bool waking;             /* the replay into a new session is running: not counted */
    bool parked_counted;     /* counted in the listener's h2_parked gauge */
    uint8_t n_peer_settings; /* SETTINGS frames (not ACKs) from the client */
    uint8_t n_peer_iv;
    uint8_t n_wakes;
    int32_t peer_window;  /* the connection window the client gave us, when parked */
    uint64_t fed, framed; /* bytes given to nghttp2, and the magic and frames begun: equal
                             only at a frame boundary */
    /* What our SETTINGS said (a reload changes the config, not what the client was told). */
    uint32_t sent_streams, sent_window, sent_header_bytes;
    int32_t sent_conn_window;
    nghttp2_settings_entry peer_iv[PEER_IV_MAX];
};

static void session_free(struct h2_session *s);

static void schedule_flush(struct h2_session *s)
{
    event_active(s->flush_ev, 0, 0);
}

static const struct sy_config *session_config(const struct h2_session *s)
{
    return worker_config(s->conn.w);
}

/* A draining worker gives an idle connection this long (instead of timeouts.client_idle)
 * before it closes. */
#define DRAIN_IDLE_MS 1000

static void arm_idle(struct h2_session *s)
{
    unsigned ms = session_config(s)->timeouts.client_idle_ms;
    if (s->conn.w->draining && ms > DRAIN_IDLE_MS)
        ms = DRAIN_IDLE_MS;
    struct timeval tv = ms_tv(ms);
    evtimer_add(s->idle_timer, &tv);
}

static void now_tv(const struct h2_session *s, struct timeval *tv)
{
    event_base_gettimeofday_cached(s->conn.w->base, tv);
}

static void stream_timer_cb(evutil_socket_t fd, short what, void *arg);

/* The stream's timer fires `ms` from now. */
static void stream_timer_set(struct h2_stream *st, unsigned ms)
{
    struct timeval now, tv = ms_tv(ms);
    now_tv(st->s, &now);
    timeradd(&now, &tv, &st->timer_at);
    evtimer_add(st->timer, &tv);
}

/* Streams */

/* Ended streams this worker thread keeps for reuse with their buffers, their head's arena and
 * field array and their timer, so that a stream costs no allocation once the worker is warm.
 * None under AddressSanitizer (as for exchanges), so that a use after the end is still caught
 * there. A stream whose head grew its arena past SPARE_ARENA_MAX is not kept. */
#if defined(__SANITIZE_ADDRESS__)
static const bool spare_on = false;
#else
static const bool spare_on = true;
#endif
#define SPARE_MAX       1024
#define SPARE_ARENA_MAX 4096
static _Thread_local struct h2_stream *spare;
static _Thread_local size_t n_spare;

/* A zeroed stream, from the spare list when it has one (what it owns is kept). */
static struct h2_stream *stream_alloc(struct h2_session *s)
{
    struct h2_stream *st = spare;
    if (!st) {
        st = sy_xcalloc(1, sizeof(*st));
        st->req_body = evbuffer_new();
        st->resp_body = evbuffer_new();
        st->timer = evtimer_new(s->conn.w->base, stream_timer_cb, st);
        return st;
    }
    spare = st->next;
    n_spare--;
    struct h2_stream keep = *st;
    memset(st, 0, sizeof(*st));
    st->arena = keep.arena;
    st->arena_cap = keep.arena_cap;
    st->fields = keep.fields;
    st->cap_fields = keep.cap_fields;
    st->req_body = keep.req_body;
    st->resp_body = keep.resp_body;
    st->timer = keep.timer;
    return st;
}

/* Keeps `st` (already unlinked, its trailers freed) on the spare list, or frees it. */
static void stream_release(struct h2_stream *st, bool draining)
{
    if (spare_on && n_spare < SPARE_MAX && !draining && st->arena_cap <= SPARE_ARENA_MAX) {
        evtimer_del(st->timer);
        evbuffer_drain(st->resp_body, evbuffer_get_length(st->resp_body));
        st->next = spare;
        spare = st;
        n_spare++;
        return;
    }
    event_free(st->timer);
    evbuffer_free(st->req_body);
    evbuffer_free(st->resp_body);
    free(st->arena);
    free(st->fields);
    free(st);
}

void h2_server_cache_free(void)
{
    while (spare) {
        struct h2_stream *st = spare;
        spare = st->next;
        n_spare--;
        stream_release(st, true);
    }
}

static struct h2_stream *stream_new(struct h2_session *s, int32_t id)
{
    struct h2_stream *st = stream_alloc(s);
    st->s = s;
    st->id = id;
    st->down.ops = NULL; /* set in h2_accept's table; see stream_start */
    st->down.conn = &s->conn;
    st->method = st->path = st->authority = -1;
    /* The header block (with its CONTINUATIONs) must complete within client_header. */
    stream_timer_set(st, session_config(s)->timeouts.client_header_ms);
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->n_streams++;
    evtimer_del(s->idle_timer);
    return st;
}

/* Request DATA nobody will take (the exchange ended, or never began): its bytes go back to the
 * connection window, or every stream that ends early would shrink that window for good. */
static void stream_drop_body(struct h2_stream *st)
{
    size_t n = evbuffer_get_length(st->req_body);
    if (n == 0)
        return;
    evbuffer_drain(st->req_body, n);
    nghttp2_session_consume(st->s->ng, st->id, n);
    schedule_flush(st->s);
}

static void stream_free(struct h2_stream *st)
{
    struct h2_session *s = st->s;
    if (st->down.ex)
        exchange_downstream_gone(st->down.ex);
    stream_drop_body(st);
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    s->n_streams--;
    if (st->req_trailers)
        evbuffer_free(st->req_trailers);
    if (st->resp_trailers)
        evbuffer_free(st->resp_trailers);
    stream_release(st, s->conn.w->draining);
    if (s->n_streams == 0 && !s->closing)
        arm_idle(s);
}

static uint32_t arena_add(struct h2_stream *st, const uint8_t *p, size_t len)
{
    sy_xgrow((void **)&st->arena, &st->arena_cap, st->arena_len + len + 1, 1);
    uint32_t off = (uint32_t)st->arena_len;
    memcpy(st->arena + off, p, len);
    st->arena_len += len;
    return off;
}

static struct sy_slice field_name(const struct h2_stream *st, size_t i)
{
    return sy_slice_of(st->arena + st->fields[i].name, st->fields[i].name_len);
}

static struct sy_slice field_value(const struct h2_stream *st, size_t i)
{
    return sy_slice_of(st->arena + st->fields[i].value, st->fields[i].value_len);
}

ssize_t trailer_lines_to_nv(struct evbuffer *lines, nghttp2_nv *nv, size_t max)
{
    size_t len = evbuffer_get_length(lines);
    if (len == 0)
        return 0;
    char *p = (char *)evbuffer_pullup(lines, (ssize_t)len);
    if (!p)
        return -1;
    ssize_t k = 0;
    char *line = p, *end = p + len;
    while (line < end && (size_t)k < max) {
        char *eol = memchr(line, '\r', (size_t)(end - line));
        char *colon = memchr(line, ':', (size_t)(end - line));
        if (!eol || !colon || colon > eol)
            break;
        for (char *q = line; q < colon; q++)
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q + 32);
        char *v = colon + 1;
        while (v < eol && *v == ' ')
            v++;
        nv[k].name = (uint8_t *)line;
        nv[k].namelen = (size_t)(colon - line);
        nv[k].value = (uint8_t *)v;
        nv[k].valuelen = (size_t)(eol - v);
        nv[k].flags = NGHTTP2_NV_FLAG_NONE;
        k++;
        line = eol + 2;
    }
    return k;
}

/* Response data provider: tells nghttp2 how much of what the exchange queued goes in the next
 * DATA frame; send_data_cb then moves those bytes to the socket's output by their buffer
 * chains (NO_COPY), instead of nghttp2 copying them into its frame buffer. */
static ssize_t data_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    struct h2_stream *st = source->ptr;
    size_t avail = evbuffer_get_length(st->resp_body);
    size_t n = avail < length ? avail : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && st->resp_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->resp_trailers && evbuffer_get_length(st->resp_trailers)) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_nv nv[64];
            ssize_t k = trailer_lines_to_nv(st->resp_trailers, nv, 64);
            if (k < 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* reset: never ended without them */
            nghttp2_submit_trailer(ng, id, nv, (size_t)k);
        }
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (st->down.ex)
        st->want_drain = true;
    return (ssize_t)n;
}

static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data)
{
    struct h2_session *s = user_data;
    struct h2_stream *st = source->ptr;
    struct evbuffer *out = sy_sock_output(s->sock);
    /* A frame cut short leaves the connection's byte stream out of step: on any failure the
     * session fails (session_flush frees it, the output unsent). */
    if (evbuffer_add(out, framehd, 9) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    /* We never ask for padding; a frame that has some gets its length byte and zeros. */
    size_t pad = frame->data.padlen;
    if (pad > 0) {
        uint8_t padlen = (uint8_t)(pad - 1);
        if (evbuffer_add(out, &padlen, 1) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (!h1_move_body(st->resp_body, out, length))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    now_tv(s, &st->send_seen);
    if (pad > 1) {
        static const uint8_t zeros[256];
        if (evbuffer_add(out, zeros, pad - 1) != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static void submit_response(struct h2_stream *st, const nghttp2_nv *nv, size_t n, bool body)
{
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read_cb};
    nghttp2_submit_response(st->s->ng, st->id, nv, n, body ? &prd : NULL);
    st->resp_submitted = true;
    now_tv(st->s, &st->send_seen);
    schedule_flush(st->s);
}

/* An answer of our own with a one-line body. */
static void stream_error(struct h2_stream *st, int status, const char *why)
{
    char code[4], len[24];
    snprintf(code, sizeof(code), "%d", status);
    snprintf(len, sizeof(len), "%zu", strlen(why) + 1);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)code, 7, strlen(code), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"text/plain; charset=utf-8", 12, 25,
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"retry-after", NULL, 11, 0, NGHTTP2_NV_FLAG_NONE},
    };
    size_t n_nv = 3;
    char retry[16];
    if (st->down.retry_after_s) { /* sy_error_retry_after() */
        snprintf(retry, sizeof(retry), "%u", st->down.retry_after_s);
        nv[3].value = (uint8_t *)retry;
        nv[3].valuelen = strlen(retry);
        n_nv = 4;
    }
    st->down.retry_after_s = 0;
    evbuffer_add_printf(st->resp_body, "%s\n", why);
    st->resp_end = true;
    sy_log_client(SY_LOG_INFO, "http", "conn %llu stream %d: %d (%s)",
                  (unsigned long long)st->s->conn.id, st->id, status, why);
    worker_count_own(st->s->conn.w, st->down.own_slot, status);
    access_log_own(&st->down, status, true);
    st->down.own_slot = NULL;
    if (!st->end_stream)
        st->rst_after_end = true;
    stream_drop_body(st);
    submit_response(st, nv, n_nv, true);
}

/* struct downstream_ops */

static ssize_t d_pull_body(struct downstream *d, struct evbuffer *out, size_t max,
                           struct evbuffer *trailers, bool *done, const char **why)
{
    struct h2_stream *st = (struct h2_stream *)d;
    if (st->req_lost) {
        *why = exchange_nomem_reason;
        return -1;
    }
    size_t n = evbuffer_get_length(st->req_body);
    if (n > max)
        n = max;
    if (n) {
        bool moved = h1_move_body(st->req_body, out, n);
        /* Only now may the client send more: this is the upload's backpressure. The bytes
         * left req_body even when they were lost: the connection's window gets them back. */
        nghttp2_session_consume(st->s->ng, st->id, n);
        now_tv(st->s, &st->body_seen); /* client_body runs from here if nothing else is queued */
        schedule_flush(st->s);
        if (!moved) {
            *why = exchange_nomem_reason;
            return -1;
        }
    }
    *done = st->end_stream && evbuffer_get_length(st->req_body) == 0;
    if (*done && st->req_trailers)
        evbuffer_add_buffer(trailers, st->req_trailers);
    return (ssize_t)n;
}

static void d_send_continue(struct downstream *d)
{
    struct h2_stream *st = (struct h2_stream *)d;
    nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_headers(st->s->ng, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL);
    now_tv(st->s, &st->body_seen); /* the client may start its body now */
    schedule_flush(st->s);
}

static void d_send_head(struct downstream *d, const struct resp_head *h)
{
    struct h2_stream *st = (struct h2_stream *)d;
    struct h2_session *s = st->s;
    /* Names must be lower-case in HTTP/2 (RFC 9113 §8.2.1): copy them lowered. */
    size_t need = 64;
    for (size_t i = 0; i < h->n_headers; i++)
        need += h->headers[i].name.len;
    sy_xgrow((void **)&s->nv_buf, &s->nv_cap, need, 1);
    size_t n_nv = h->n_headers + 4;
    nghttp2_nv stack_nv[64];
    nghttp2_nv *nv = n_nv <= 64 ? stack_nv : sy_xcalloc(n_nv, sizeof(*nv));
    size_t k = 0, off = 0;
    char status[SY_U64_DIGITS];
    size_t status_len = sy_fmt_u64(status, (uint64_t)h->status);
    nv[k++] =
        (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, status_len, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < h->n_headers; i++) {
        struct sy_slice name = h->headers[i].name;
        char *lower = s->nv_buf + off;
        for (size_t j = 0; j < name.len; j++) {
            char c = name.p[j];
            lower[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        off += name.len;
        nv[k++] = (nghttp2_nv){(uint8_t *)lower, (uint8_t *)h->headers[i].value.p, name.len,
                               h->headers[i].value.len, NGHTTP2_NV_FLAG_NONE};
    }
    if (h->set_cookie)
        nv[k++] = (nghttp2_nv){(uint8_t *)"set-cookie", (uint8_t *)h->set_cookie, 10,
                               strlen(h->set_cookie), NGHTTP2_NV_FLAG_NONE};
    char cl[SY_U64_DIGITS];
    if (h->length_known || h->head_length) {
        size_t cl_len = sy_fmt_u64(cl, h->content_length);
        nv[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)cl, 14, cl_len,
                               NGHTTP2_NV_FLAG_NONE};
    }
    char retry[SY_U64_DIGITS];
    if (d->retry_after_s) { /* sy_error_retry_after() */
        size_t retry_len = sy_fmt_u64(retry, d->retry_after_s);
        nv[k++] = (nghttp2_nv){(uint8_t *)"retry-after", (uint8_t *)retry, 11, retry_len,
                               NGHTTP2_NV_FLAG_NONE};
        d->retry_after_s = 0;
    }
    submit_response(st, nv, k, h->has_body);
    if (nv != stack_nv)
        free(nv);
}

static size_t d_queued(struct downstream *d)
{
    return evbuffer_get_length(((struct h2_stream *)d)->resp_body);
}

static void resume(struct h2_stream *st)
{
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->s->ng, st->id);
    }
    schedule_flush(st->s);
}

/* Response bytes could not be buffered (out of memory): the stream is reset so that its
 * response does not end as if complete, and what the exchange still sends is dropped. The
 * exchange is the caller, so it hears of the reset when the stream closes, not here. */
static void stream_nomem(struct h2_stream *st)
{
    sy_log(SY_LOG_INFO, "http2", "conn %llu stream %d: response cut: %s",
           (unsigned long long)st->s->conn.id, st->id, exchange_nomem_reason);
    st->resp_lost = true;
    evbuffer_drain(st->resp_body, evbuffer_get_length(st->resp_body));
    st->resp_end = false; /* the data provider, if asked before the reset, sends nothing */
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    schedule_flush(st->s);
}

static void d_send_body(struct downstream *d, struct evbuffer *src, size_t n)
{
    struct h2_stream *st = (struct h2_stream *)d;
    if (st->resp_lost) {
        evbuffer_drain(src, n);
        return;
    }
    if (evbuffer_get_length(st->resp_body) == 0)
        now_tv(st->s, &st->send_seen); /* bytes begin to wait: client_send runs */
    if (!h1_move_body(src, st->resp_body, n)) {
        stream_nomem(st);
        return;
    }
    resume(st);
}

static void d_send_end(struct downstream *d, struct evbuffer *trailers)
{
    struct h2_stream *st = (struct h2_stream *)d;
    if (st->resp_lost)
        return;
    if (evbuffer_get_length(st->resp_body) == 0)
        now_tv(st->s, &st->send_seen); /* END_STREAM waits for the window too */
    if (trailers && evbuffer_get_length(trailers)) {
        st->resp_trailers = evbuffer_new();
        if (!st->resp_trailers) {
            stream_nomem(st); /* ended without them, the response would look complete */
            return;
        }
        evbuffer_add_buffer(st->resp_trailers, trailers);
    }
    st->resp_end = true;
    resume(st);
}

static void d_send_error(struct downstream *d, int status, const char *why)
{
    stream_error((struct h2_stream *)d, status, why);
}

static void d_finish(struct downstream *d, bool reusable)
{
    struct h2_stream *st = (struct h2_stream *)d;
    if (!reusable && !st->end_stream)
        st->rst_after_end = true;
    stream_drop_body(st);
}

static void d_abort(struct downstream *d)
{
    struct h2_stream *st = (struct h2_stream *)d;
    stream_drop_body(st);
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    schedule_flush(st->s);
}

static const struct downstream_ops h2_ops = {
    .pull_body = d_pull_body,
    .send_continue = d_send_continue,
    .send_head = d_send_head,
    .queued = d_queued,
    .send_body = d_send_body,
    .send_end = d_send_end,
    .send_error = d_send_error,
    .finish = d_finish,
    .abort = d_abort,
};

/* From now on the timer looks at least as often as the shorter of the two deadlines. The head's
 * timer, when it fires no later than that, is left to fire first (stream_timer_cb then looks
 * and sets it again): setting a timer costs a heap update, on every stream. */
static void stream_arm_deadlines(struct h2_stream *st)
{
    now_tv(st->s, &st->body_seen);
    const struct sy_config *tcfg = session_config(st->s);
    unsigned period = tcfg->timeouts.client_body_ms < tcfg->timeouts.client_send_ms
                          ? tcfg->timeouts.client_body_ms
                          : tcfg->timeouts.client_send_ms;
    struct timeval tv = ms_tv(period), due;
    timeradd(&st->body_seen, &tv, &due);
    if (evtimer_pending(st->timer, NULL) && !timercmp(&due, &st->timer_at, <))
        return;
    stream_timer_set(st, period);
}

/* The checks a head must pass before its fields are looked at; false once the stream has
 * been answered. */
static bool stream_head_acceptable(struct h2_stream *st)
{
    if (st->too_large) {
        stream_error(st, 431, "request header list is larger than limits.max_header_bytes");
        return false;
    }
    if (st->method < 0 || st->path < 0) {
        stream_error(st, 400, "missing :method or :path");
        return false;
    }
    struct sy_slice method = field_value(st, (size_t)st->method);
    if (sy_slice_ieq(method, "CONNECT")) {
        stream_error(st, 405, "CONNECT is not supported: switchyard is a reverse proxy");
        return false;
    }
    return true;
}

/* What the walk over a stream's fields learned besides the regular fields themselves. */
struct field_scan {
    size_t n; /* regular fields in the scratch array */
    size_t n_cookies;
    ssize_t host; /* an index: a slice would dangle once the cookie join moves the arena */
    bool has_cl;
    uint64_t cl;
};

/* nghttp2 checks the value against the DATA received; here only its digits are read. */
static void scan_content_length(struct sy_slice v, struct field_scan *sc)
{
    sc->cl = 0;
    size_t k = 0;
    for (; k < v.len && k < 19 && v.p[k] >= '0' && v.p[k] <= '9'; k++)
        sc->cl = sc->cl * 10 + (uint64_t)(v.p[k] - '0');
    sc->has_cl = k == v.len && k > 0;
}

/* Regular fields into the worker's scratch array `h`; false once the stream has been
 * answered. */
static bool collect_fields(struct h2_stream *st, struct sy_header *h, struct field_scan *sc)
{
    const struct sy_config *cfg = session_config(st->s);
    for (size_t i = 0; i < st->n_fields; i++) {
        struct sy_slice name = field_name(st, i);
        if (name.len && name.p[0] == ':')
            continue;
        if (sy_slice_ieq(name, "cookie")) {
            sc->n_cookies++;
            continue;
        }
        if (sy_slice_ieq(name, "host"))
            sc->host = (ssize_t)i;
        if (sy_slice_ieq(name, "content-length")) {
            scan_content_length(field_value(st, i), sc);
            continue; /* restated by the exchange */
        }
        if (sc->n >= cfg->limits.max_headers) {
            stream_error(st, 431, "more header fields than limits.max_headers");
            return false;
        }
        h[sc->n].name = name;
        h[sc->n].value = field_value(st, i);
        sc->n++;
    }
    return true;
}

/* Cookie crumbs joined into one field (RFC 9113 §8.2.3) appended to the arena; false once
 * the stream has been answered. */
static bool join_cookies(struct h2_stream *st, struct sy_header *h, struct field_scan *sc)
{
    const struct sy_config *cfg = session_config(st->s);
    size_t start = st->arena_len;
    bool first = true;
    for (size_t i = 0; i < st->n_fields; i++) {
        if (!sy_slice_ieq(field_name(st, i), "cookie"))
            continue;
        if (!first)
            arena_add(st, (const uint8_t *)"; ", 2);
        struct field_ref f = st->fields[i]; /* the arena may move */
        sy_xgrow((void **)&st->arena, &st->arena_cap, st->arena_len + f.value_len + 1, 1);
        memcpy(st->arena + st->arena_len, st->arena + f.value, f.value_len);
        st->arena_len += f.value_len;
        first = false;
    }
    if (sc->n >= cfg->limits.max_headers) {
        stream_error(st, 431, "more header fields than limits.max_headers");
        return false;
    }
    h[sc->n].name = sy_slice_of("cookie", 6);
    h[sc->n].value = sy_slice_of(st->arena + start, st->arena_len - start);
    sc->n++;
    return true;
}

/* Slices into the arena are taken only now that it no longer grows. */
static void reslice_fields(struct h2_stream *st, struct sy_header *h, size_t n)
{
    for (size_t i = 0, j = 0; i < st->n_fields && j < n; i++) {
        struct sy_slice name = field_name(st, i);
        if ((name.len && name.p[0] == ':') || sy_slice_ieq(name, "cookie") ||
            sy_slice_ieq(name, "content-length"))
            continue;
        h[j].name = name;
        h[j].value = field_value(st, i);
        j++;
    }
}

/* The neutral request head, its slices taken after the arena stopped moving. */
static struct req_head stream_req_head(struct h2_stream *st, struct sy_header *h,
                                       const struct field_scan *sc)
{
    struct req_head head = {
        .method = field_value(st, (size_t)st->method),
        .target = field_value(st, (size_t)st->path),
        .authority = st->authority >= 0 ? field_value(st, (size_t)st->authority)
                     : sc->host >= 0    ? field_value(st, (size_t)sc->host)
                                        : sy_slice_of(NULL, 0),
        .headers = h,
        .n_headers = sc->n,
        .framing = st->head_end_stream ? SY_H1_BODY_NONE
                   : sc->has_cl        ? SY_H1_BODY_LENGTH
                                       : SY_H1_BODY_CHUNKED,
        .content_length = sc->has_cl ? sc->cl : 0,
        .expect_continue = false,
        .version = "2",
    };
    for (size_t i = 0; i < sc->n; i++)
        if (sy_slice_ieq(h[i].name, "expect") && sy_slice_ieq(h[i].value, "100-continue"))
            head.expect_continue = !st->head_end_stream;
    return head;
}

/* The request head is complete: route it. */
static void stream_start(struct h2_stream *st)
{
    st->started = true;
    st->down.ops = &h2_ops;
    stream_arm_deadlines(st);
    if (!stream_head_acceptable(st))
        return;
    struct sy_header *h = worker_scratch(st->s->conn.w);
    struct field_scan sc = {.host = -1};
    if (!collect_fields(st, h, &sc))
        return;
    if (sc.n_cookies && !join_cookies(st, h, &sc))
        return;
    reslice_fields(st, h, sc.n);
    struct req_head head = stream_req_head(st, h, &sc);
    exchange_start(&st->down, &head);
    if (st->down.ex)
        exchange_body_ready(st->down.ex);
}

/* Deadlines */

static uint64_t ms_since(const struct timeval *now, const struct timeval *then)
{
    struct timeval d;
    timersub(now, then, &d);
    return d.tv_sec < 0 ? 0 : (uint64_t)d.tv_sec * 1000 + (uint64_t)d.tv_usec / 1000;
}

/* The stream is given up: its exchange (and upstream connection) is released now, what it
 * buffered is dropped, and the client gets RST_STREAM; the connection's other streams go on. */
static void stream_reset(struct h2_stream *st, uint32_t code, const char *why)
{
    struct h2_session *s = st->s;
    sy_log(SY_LOG_INFO, "http2", "conn %llu stream %d: reset: %s", (unsigned long long)s->conn.id,
           st->id, why);
    st->timed_out = true;
    if (st->down.ex)
        exchange_downstream_gone(st->down.ex);
    stream_drop_body(st);
    evbuffer_drain(st->resp_body, evbuffer_get_length(st->resp_body));
    st->resp_end = false; /* the data provider, if asked before the reset, sends nothing */
    nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, code);
    schedule_flush(s);
}

/* Response bytes (or the END_STREAM after them) wait for the client's window. */
static bool send_waiting(const struct h2_stream *st)
{
    return st->resp_submitted &&
           (evbuffer_get_length(st->resp_body) > 0 || (st->resp_end && !st->resp_end_sent));
}

/* The exchange waits for request body the client may send (its window is open). */
static bool body_waiting(const struct h2_stream *st)
{
    return !st->end_stream && st->down.ex && evbuffer_get_length(st->req_body) == 0;
}

/* One timer per stream, checked lazily: progress only records a time, and the timer, when it
 * fires, either finds a deadline passed or sleeps until the nearest one could pass (at most
 * the shorter timeout, so that a wait that begins later is still seen in time). */
static void stream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_stream *st = arg;
    struct h2_session *s = st->s;
    const struct sy_config *cfg = session_config(s);
    if (st->timed_out || s->closing)
        return;
    if (!st->started) {
        /* RFC 9113 §6.10: nothing else may come on the connection until the header block
         * ends, so the whole connection is stuck: GOAWAY and close. */
        sy_log(SY_LOG_INFO, "http2",
               "conn %llu stream %d: header block not complete within timeouts.client_header",
               (unsigned long long)s->conn.id, st->id);
        nghttp2_session_terminate_session(s->ng, NGHTTP2_NO_ERROR);
        st->timed_out = true;
        schedule_flush(s);
        return;
    }
    struct timeval now;
    now_tv(s, &now);
    uint64_t body = cfg->timeouts.client_body_ms, send = cfg->timeouts.client_send_ms;
    uint64_t next = body < send ? body : send;
    if (send_waiting(st)) {
        uint64_t idle = ms_since(&now, &st->send_seen);
        if (idle >= send) {
            stream_reset(st, NGHTTP2_CANCEL,
                         "the client took no response bytes for "
                         "timeouts.client_send");
            return;
        }
        if (send - idle < next)
            next = send - idle;
    }
    if (body_waiting(st)) {
        uint64_t idle = ms_since(&now, &st->body_seen);
        if (idle >= body) {
            stream_reset(st, NGHTTP2_CANCEL, "no request body for timeouts.client_body");
            return;
        }
        if (body - idle < next)
            next = body - idle;
    }
    stream_timer_set(st, (unsigned)(next ? next : 1));
}

/* nghttp2 callbacks */

#define USED_IDS_SPAN 512 /* stream ids covered by used_ids */

static bool id_bit(const struct h2_session *s, int32_t id)
{
    unsigned b = ((unsigned)id >> 1) & 255;
    return (s->used_ids[b / 64] >> (b % 64)) & 1;
}

static void id_set_bit(struct h2_session *s, int32_t id, bool on)
{
    unsigned b = ((unsigned)id >> 1) & 255;
    if (on)
        s->used_ids[b / 64] |= (uint64_t)1 << (b % 64);
    else
        s->used_ids[b / 64] &= ~((uint64_t)1 << (b % 64));
}

/* RFC 9113 §5.1.1: a new stream's id must be higher than every id the client used before; an
 * id it skipped is closed. nghttp2 ignores HEADERS on such an id (it cannot tell them from
 * trailers that crossed our RST_STREAM), so the request would hang unanswered: we remember
 * which ids opened a stream and answer the others with a connection error. */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user_data)
{
    struct h2_session *s = user_data;
    int32_t id = hd->stream_id;
    if (hd->stream_id != 0 || (hd->type != NGHTTP2_SETTINGS && hd->type != NGHTTP2_PING &&
                               hd->type != NGHTTP2_WINDOW_UPDATE))
        s->busy = true; /* state of its own in the session: it stays */
    if (!s->waking)
        s->framed += FRAME_HDLEN + hd->length;
    if (hd->type != NGHTTP2_HEADERS || !(id & 1))
        return 0; /* even ids and other frames: nghttp2's checks */
    if (id > s->max_id) {
        if (id - s->max_id >= USED_IDS_SPAN) {
            memset(s->used_ids, 0, sizeof(s->used_ids));
        } else {
            for (int32_t k = s->max_id + 2; k < id; k += 2)
                id_set_bit(s, k, false); /* skipped: closed without being used */
        }
        s->max_id = id;
        id_set_bit(s, id, true);
        return 0;
    }
    if (nghttp2_session_find_stream(ng, id))
        return 0; /* open: trailers, or nghttp2's own error */
    /* Trailers end the stream; a block without END_STREAM opens one. Beyond the ids we
     * remember, trailers are given the benefit of the doubt (nghttp2 ignores them). */
    bool unused = s->max_id - id < USED_IDS_SPAN && !id_bit(s, id);
    if (!unused && (hd->flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    sy_log(SY_LOG_INFO, "http2",
           "conn %llu: HEADERS on stream %d, lower than stream %d already used: protocol error",
           (unsigned long long)s->conn.id, id, s->max_id);
    return NGHTTP2_ERR_CALLBACK_FAILURE; /* read_cb answers GOAWAY PROTOCOL_ERROR */
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    struct h2_session *s = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = stream_new(s, frame->hd.stream_id);
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    struct h2_session *s = user_data;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    /* RFC 9113 §6.5.2: the size of a field is its name, its value and 32. */
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > session_config(s)->limits.max_header_bytes)
        st->too_large = true;
    if (st->too_large)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* Trailers: kept as lines for the upstream's chunked trailer section. */
        if (!st->req_trailers)
            st->req_trailers = evbuffer_new();
        evbuffer_add_printf(st->req_trailers, "%.*s: %.*s\r\n", (int)namelen, (const char *)name,
                            (int)valuelen, (const char *)value);
        return 0;
    }
    sy_xgrow((void **)&st->fields, &st->cap_fields, st->n_fields + 1, sizeof(*st->fields));
    struct field_ref *f = &st->fields[st->n_fields];
    f->name = arena_add(st, name, namelen);
    f->name_len = (uint32_t)namelen;
    f->value = arena_add(st, value, valuelen);
    f->value_len = (uint32_t)valuelen;
    if (namelen == 7 && memcmp(name, ":method", 7) == 0)
        st->method = (int)st->n_fields;
    else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
        st->path = (int)st->n_fields;
    else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
        st->authority = (int)st->n_fields;
    st->n_fields++;
    return 0;
}

/* A RST_STREAM from the client. One for a request that already went to a cluster and has no
 * answer yet cost the cluster a request (and an HTTP/1.1 cluster a connection): past
 * limits.h2_early_resets of them, when they are also more than half of the client's requests
 * (a client that cancels now and then is not one), the connection ends with
 * GOAWAY(ENHANCE_YOUR_CALM). nghttp2's reset rate limit bounds the rate; this bounds what a
 * client that stays under it can still make the clusters do. */
static void count_reset(struct h2_session *s, struct h2_stream *st)
{
    s->n_resets++;
    if (!st || !st->down.ex || st->resp_submitted || s->goaway)
        return;
    s->n_early_resets++;
    size_t limit = session_config(s)->limits.h2_early_resets;
    if (s->n_early_resets <= limit || s->n_early_resets * 2 <= s->n_requests)
        return;
    sy_log(SY_LOG_WARN, "http2",
           "conn %llu: %zu early resets of %zu requests (limits.h2_early_resets %zu): "
           "GOAWAY(ENHANCE_YOUR_CALM)",
           (unsigned long long)s->conn.id, s->n_early_resets, s->n_requests, limit);
    nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    s->goaway = true;
}

/* The client's SETTINGS, kept for a replay into a new session after parking. */
static void keep_settings(struct h2_session *s, const nghttp2_settings *f)
{
    if (s->waking)
        return;
    if (f->hd.flags & NGHTTP2_FLAG_ACK) {
        s->settings_acked = true;
        return;
    }
    if (++s->n_peer_settings > 1 || f->niv > PEER_IV_MAX) {
        s->busy = true; /* one frame replays exactly what the client sent; more may not */
        return;
    }
    if (f->niv > 0)
        memcpy(s->peer_iv, f->iv, f->niv * sizeof(*f->iv));
    s->n_peer_iv = (uint8_t)f->niv;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    if (frame->hd.type == NGHTTP2_SETTINGS) {
        keep_settings(user_data, &frame->settings);
        return 0;
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        count_reset(user_data, nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id));
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st)
        return 0;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        st->end_stream = true;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        /* Started once the whole read is parsed (read_cb): a RST_STREAM right behind the
         * HEADERS then closes the stream before it takes or opens a connection to a cluster,
         * so a rapid-reset client costs the clusters nothing. */
        st->head_done = true;
        st->head_end_stream = st->end_stream;
        st->s->n_requests++;
        return 0;
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && st->down.ex)
        exchange_body_ready(st->down.ex);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || st->req_lost || (st->started && !st->down.ex)) {
        /* Nobody will take it: give the window back at once. */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    if (evbuffer_add(st->req_body, data, len) != 0) {
        /* Out of memory: the request cannot go on without these bytes. Its exchange fails at
         * its next pull (503), and the window gets them back. */
        st->req_lost = true;
        nghttp2_session_consume(ng, id, len);
    }
    if (!st->started)
        return 0; /* read with its HEADERS: the exchange starts at the end of this read */
    now_tv(st->s, &st->body_seen);
    exchange_body_ready(st->down.ex);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (st)
        st->resp_end_sent = true;
    if (st && st->rst_after_end && !st->end_stream)
        /* RFC 9113 §8.1: a complete response lets the server stop the request body. */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user_data)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, id);
    if (st) {
        nghttp2_session_set_stream_user_data(ng, id, NULL);
        stream_free(st);
    }
    return 0;
}

/* The session, and parking */

static void count_parked(struct h2_session *s, bool on)
{
    if (s->parked_counted == on)
        return;
    s->parked_counted = on;
    if (s->conn.lstat)
        counter_add(&s->conn.lstat->h2_parked, on ? 1 : -1);
}

/* Builds the connection's nghttp2 session with our SETTINGS and connection window queued
 * (what h2_accept sends, and what a parked connection's new session believes it sent). */
static bool session_open(struct h2_session *s)
{
    const struct sy_config *cfg = session_config(s);
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return false;
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return false;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, cfg->limits.h2_max_continuations);
    nghttp2_option_set_stream_reset_rate_limit(opt, 2 * cfg->limits.h2_reset_rate,
                                               cfg->limits.h2_reset_rate);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    int rv = nghttp2_session_server_new3(&s->ng, cbs, s, opt, sy_mem_nghttp2());
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        s->ng = NULL;
        return false;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->sent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s->sent_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s->sent_header_bytes},
        /* RFC 9218: no RFC 7540 priority tree (deprecated by RFC 9113): streams are scheduled
         * round-robin by urgency, and a closed stream is freed, not kept in a tree. */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    rv = nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rv == 0 && s->sent_conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
        rv =
            nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, s->sent_conn_window);
    if (rv != 0) {
        nghttp2_session_del(s->ng);
        s->ng = NULL;
        return false;
    }
    return true;
}

/* An nghttp2 server session holds about 25 KB from its start (a 16 KiB frame buffer, HPACK
 * tables, the session itself) that an idle connection does not need. A connection that has
 * only exchanged SETTINGS, PINGs and connection WINDOW_UPDATEs (a preconnect, a client that
 * waits for our SETTINGS, a monitor) and now has nothing to send, nothing half read and no
 * stream is parked: its session is freed and what it agreed is kept here, about a hundred
 * bytes. Its HPACK tables are empty then, so the next bytes find a new session that is the
 * same one in every respect the client can see (session_wake). */
static void session_park(struct h2_session *s)
{
    if (!s->ng || s->busy || s->goaway || s->closing || s->n_streams || !s->settings_acked ||
        s->n_peer_settings != 1 || s->fed != s->framed || s->conn.w->draining || s->notice_ev)
        return;
    if (nghttp2_session_want_write(s->ng) || !nghttp2_session_want_read(s->ng) ||
        evbuffer_get_length(sy_sock_output(s->sock)) > 0 ||
        evbuffer_get_length(sy_sock_input(s->sock)) > 0)
        return;
    s->peer_window = nghttp2_session_get_remote_window_size(s->ng);
    nghttp2_session_del(s->ng);
    s->ng = NULL;
    count_parked(s, true);
}

static void put_frame_hd(uint8_t *p, size_t len, uint8_t type, uint8_t flags)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    memset(p + 5, 0, 4); /* stream 0 */
}

/* nghttp2's output of a replay: what was sent before parking, dropped. */
static bool drop_output(struct h2_session *s)
{
    const uint8_t *data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(s->ng, &data)) > 0)
        ;
    return n == 0;
}

/* A new session for a parked connection, brought to where the old one was by replaying the
 * client's side of the exchange into it: the magic, its SETTINGS frame, its ACK of ours and
 * the window it gave. What the new session answers to that went out before; it is dropped. */
static bool session_wake(struct h2_session *s)
{
    if (!session_open(s))
        return false;
    uint8_t in[NGHTTP2_CLIENT_MAGIC_LEN + 3 * FRAME_HDLEN + 6 * PEER_IV_MAX + 4];
    size_t n = NGHTTP2_CLIENT_MAGIC_LEN;
    memcpy(in, NGHTTP2_CLIENT_MAGIC, n);
    ssize_t len = nghttp2_pack_settings_payload(in + n + FRAME_HDLEN, 6 * PEER_IV_MAX, s->peer_iv,
                                                s->n_peer_iv);
    bool ok = len >= 0;
    if (ok) {
        put_frame_hd(in + n, (size_t)len, NGHTTP2_SETTINGS, NGHTTP2_FLAG_NONE);
        n += FRAME_HDLEN + (size_t)len;
        put_frame_hd(in + n, 0, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK);
        n += FRAME_HDLEN;
        if (s->peer_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
            uint32_t inc = (uint32_t)(s->peer_window - NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE);
            put_frame_hd(in + n, 4, NGHTTP2_WINDOW_UPDATE, NGHTTP2_FLAG_NONE);
            uint8_t *v = in + n + FRAME_HDLEN;
            v[0] = (uint8_t)(inc >> 24);
            v[1] = (uint8_t)(inc >> 16);
            v[2] = (uint8_t)(inc >> 8);
            v[3] = (uint8_t)inc;
            n += FRAME_HDLEN + 4;
        }
        s->waking = true;
        ok = drop_output(s) && nghttp2_session_mem_recv(s->ng, in, n) == (ssize_t)n &&
             drop_output(s) && !nghttp2_session_want_write(s->ng) &&
             nghttp2_session_get_remote_window_size(s->ng) == s->peer_window;
        s->waking = false;
    }
    if (!ok) {
        nghttp2_session_del(s->ng);
        s->ng = NULL;
        return false;
    }
    count_parked(s, false);
    if (++s->n_wakes >= MAX_WAKES)
        s->busy = true;
    return true;
}

/* The session, woken if parked. False when it could not be (out of memory): the connection
 * is freed. */
static bool session_awake(struct h2_session *s)
{
    if (s->ng)
        return true;
    if (session_wake(s))
        return true;
    sy_log(SY_LOG_INFO, "http2", "conn %llu: parked session not restored: %s",
           (unsigned long long)s->conn.id, exchange_nomem_reason);
    session_free(s);
    return false;
}

/* I/O */

static void session_flush(struct h2_session *s)
{
    if (s->closing || !s->ng)
        return; /* parked: nothing to send */
    struct evbuffer *out = sy_sock_output(s->sock);
    for (int round = 0; round < 64; round++) {
        while (evbuffer_get_length(out) < OUTPUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(s->ng, &data);
            if (n < 0) {
                sy_log(SY_LOG_INFO, "http2", "conn %llu: %s", (unsigned long long)s->conn.id,
                       nghttp2_strerror((int)n));
                session_free(s);
                return;
            }
            if (n == 0)
                break;
            if (evbuffer_add(out, data, (size_t)n) != 0) {
                /* nghttp2 counts those bytes as sent: the connection cannot go on. */
                sy_log(SY_LOG_INFO, "http2", "conn %llu: %s", (unsigned long long)s->conn.id,
                       exchange_nomem_reason);
                session_free(s);
                return;
            }
        }
        /* Streams whose queue has room again pull from their upstream. */
        bool any = false;
        for (struct h2_stream *st = s->streams; st; st = st->next) {
            if (!st->want_drain)
                continue;
            st->want_drain = false;
            if (st->down.ex &&
                evbuffer_get_length(st->resp_body) < session_config(s)->limits.buffer_bytes / 2) {
                exchange_client_drained(st->down.ex);
                any = true;
            }
        }
        if (!any || evbuffer_get_length(out) >= OUTPUT_HIGH)
            break;
    }
    if (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng) &&
        evbuffer_get_length(out) == 0)
        session_free(s);
    else
        session_park(s);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    session_flush(arg);
}

/* Starts the streams whose request HEADERS this read brought and that are still open,
 * oldest first. */
static void start_streams(struct h2_session *s)
{
    struct h2_stream *st = s->streams;
    while (st && st->next)
        st = st->next;
    for (; st && !s->closing && nghttp2_session_want_read(s->ng); st = st->prev) {
        if (!st->head_done || st->started)
            continue;
        stream_start(st);
        size_t n = evbuffer_get_length(st->req_body);
        if (!st->down.ex && n) {
            /* Answered at once (an error): the DATA read with the HEADERS goes nowhere, and
             * its window is given back as on_data_chunk does for such streams. */
            evbuffer_drain(st->req_body, n);
            nghttp2_session_consume(s->ng, st->id, n);
        }
    }
}

/* Feeds what the input holds to nghttp2. False when the session is closing (freed, or about
 * to be once its GOAWAY is written). */
static bool recv_input(struct h2_session *s)
{
    struct sy_sock *sk = s->sock;
    struct evbuffer *in = sy_sock_input(sk);
    if (evbuffer_get_length(in) > 0 && !session_awake(s))
        return false;
    while (evbuffer_get_length(in) > 0 && !s->closing) {
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        ssize_t n = nghttp2_session_mem_recv(s->ng, v.iov_base, v.iov_len);
        if (n > 0)
            s->fed += (uint64_t)n;
        if (n < 0) {
            sy_log_client(SY_LOG_INFO, "http2", "conn %llu: closing: %s",
                          (unsigned long long)s->conn.id, nghttp2_strerror((int)n));
            /* nghttp2 queued a GOAWAY for protocol errors; send it, then close. */
            nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
            const uint8_t *data;
            ssize_t m;
            while ((m = nghttp2_session_mem_send(s->ng, &data)) > 0)
                evbuffer_add(sy_sock_output(sk), data, (size_t)m);
            s->closing = true;
            sy_sock_disable(sk, EV_READ);
            if (evbuffer_get_length(sy_sock_output(sk)) == 0)
                session_free(s);
            return false;
        }
        evbuffer_drain(in, (size_t)n);
    }
    return !s->closing;
}

static bool has_unstarted(const struct h2_session *s)
{
    for (const struct h2_stream *st = s->streams; st; st = st->next)
        if (st->head_done && !st->started)
            return true;
    return false;
}

static void read_cb(struct sy_sock *sk, void *arg)
{
    struct h2_session *s = arg;
    if (!recv_input(s))
        return;
    /* A read ends where the socket's bytes or the read size did, which may be between a
     * HEADERS and the RST_STREAM sent with it. A client that has reset streams has its new
     * ones started a loop turn later (start_cb), once what it sent along is read too; one
     * that never reset (nearly every client) pays nothing for that. */
    if (s->n_resets > 0 && has_unstarted(s)) {
        static const struct timeval zero = {0, 0};
        evtimer_add(s->start_ev, &zero);
    } else {
        start_streams(s);
    }
    session_flush(s);
}

/* A loop turn after a read: the socket has been polled again, so the rest of what the client
 * sent with those HEADERS is in the input (a read stops at the read size: the socket may
 * hold bytes read_cb has not seen yet), and a stream it reset is closed before it starts. */
static void start_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_session *s = arg;
    if (!recv_input(s))
        return;
    start_streams(s);
    session_flush(s);
}

static void write_cb(struct sy_sock *sk, void *arg)
{
    struct h2_session *s = arg;
    if (s->closing) {
        if (evbuffer_get_length(sy_sock_output(sk)) == 0)
            session_free(s);
        return;
    }
    session_flush(s);
}

static void event_cb(struct sy_sock *sk, short what, void *arg)
{
    struct h2_session *s = arg;
    if (what & SY_SOCK_TIMEOUT)
        sy_log(SY_LOG_INFO, "http2",
               "conn %llu: the client took no bytes for timeouts.client_send: closing",
               (unsigned long long)s->conn.id);
    session_free(s);
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_session *s = arg;
    if (s->n_streams || !session_awake(s))
        return;
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    s->goaway = true;
    session_flush(s);
    if (!s->closing && s->n_streams == 0) {
        s->closing = true;
        if (evbuffer_get_length(sy_sock_output(s->sock)) == 0)
            session_free(s);
    }
}

static void session_free(struct h2_session *s)
{
    while (s->streams)
        stream_free(s->streams);
    count_parked(s, false);
    nghttp2_session_del(s->ng);
    event_free(s->flush_ev);
    event_free(s->start_ev);
    event_free(s->idle_timer);
    if (s->notice_ev)
        event_free(s->notice_ev);
    sy_sock_free(s->sock);
    free(s->nv_buf);
    worker_conn_remove(s->conn.w, &s->conn);
    free(s);
}

static void conn_free(struct conn *c)
{
    session_free((struct h2_session *)c);
}

/* Drain: GOAWAY with the last stream taken; streams in flight finish, then the connection
 * closes. A stream that crosses it is refused (REFUSED_STREAM: safe for the client to retry
 * on a new connection, RFC 9113 §8.7). */
static void goaway_notice(struct h2_session *s)
{
    if (s->goaway)
        return;
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    s->goaway = true;
}

static void notice_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h2_session *s = arg;
    if (!session_awake(s))
        return;
    goaway_notice(s);
    session_flush(s);
}

/* After an upgrade the new process serves the same listeners, so nothing presses: a
 * connection in use is left to its client (many, h2load among them, do not move to a new
 * connection after GOAWAY, and count what they could not send as failed) until it has been
 * idle DRAIN_IDLE_MS (then it closes: idle_cb) or half the grace has passed (then the
 * GOAWAY). */
static void soft_drain(struct h2_session *s)
{
    if (!s->notice_ev) {
        s->notice_ev = evtimer_new(s->conn.w->base, notice_cb, s);
        struct timeval tv = ms_tv(s->conn.w->drain_ms / 2);
        if (!s->notice_ev || evtimer_add(s->notice_ev, &tv) != 0)
            goaway_notice(s);
    }
    if (s->n_streams == 0)
        arm_idle(s);
}

static void conn_close_idle(struct conn *c)
{
    struct h2_session *s = (struct h2_session *)c;
    if (!session_awake(s))
        return;
    if (c->w->drain_soft && !s->goaway)
        soft_drain(s);
    else
        goaway_notice(s);
    session_flush(s);
}

void h2_accept(struct sy_worker *w, struct sy_sock *sk, const struct sockaddr *sa, int salen,
               bool tls)
{
    const struct sy_config *cfg = worker_config(w);
    struct h2_session *s = sy_xcalloc(1, sizeof(*s));
    s->conn.close_idle = conn_close_idle;
    s->conn.free = conn_free;
    s->sock = sk;
    s->flush_ev = event_new(w->base, -1, 0, flush_cb, s);
    s->start_ev = evtimer_new(w->base, start_cb, s);
    s->idle_timer = evtimer_new(w->base, idle_cb, s);
    worker_conn_init(w, &s->conn, sa, salen, tls);

    s->framed = NGHTTP2_CLIENT_MAGIC_LEN;
    s->sent_streams = (uint32_t)cfg->limits.h2_max_streams;
    s->sent_window = (uint32_t)cfg->limits.buffer_bytes;
    s->sent_header_bytes = (uint32_t)cfg->limits.max_header_bytes;
    /* The connection window bounds what all streams together may have in flight. */
    uint64_t conn_window = (uint64_t)s->sent_window * s->sent_streams;
    s->sent_conn_window = (int32_t)(conn_window > 16u << 20 ? 16u << 20 : conn_window);
    if (!session_open(s)) {
        sy_log(SY_LOG_INFO, "http2", "conn %llu: %s", (unsigned long long)s->conn.id,
               exchange_nomem_reason);
        session_free(s);
        return;
    }

    sy_sock_set_write_low(sk, OUTPUT_HIGH / 2);
    sy_sock_set_read_max(sk, SY_SOCK_READ_MAX, CLIENT_FIRST_READ);
    sy_sock_set_write_max(sk, MAX_SINGLE_WRITE);
    sy_sock_setcb(sk, read_cb, write_cb, event_cb, s);
    /* A client that stops reading altogether: no frame, not even RST_STREAM, can reach it. */
    struct timeval send = ms_tv(cfg->timeouts.client_send_ms);
    sy_sock_set_timeouts(sk, NULL, &send);
    arm_idle(s);
    sy_sock_enable(sk, EV_READ | EV_WRITE);
    if (w->draining)
        conn_close_idle(&s->conn);
    if (evbuffer_get_length(sy_sock_input(sk)) > 0)
        read_cb(sk, s);
    else
        session_flush(s);
}
