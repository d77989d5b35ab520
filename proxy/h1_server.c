/* SPDX-License-Identifier: MIT */
/* The downstream HTTP/1.1 codec: reads request heads (strict parser, limits, head deadline),
 * hands each request to an exchange, decodes its body for the exchange, writes the response
 * back (re-framed for the client's version), and then waits for the next request (keep-alive,
 * pipelining). One request is in flight per connection; pipelined bytes wait in the input
 * buffer, which a read watermark keeps bounded, until the response is done. A cleartext
 * connection that opens with the HTTP/2 preface is handed to the HTTP/2 codec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy_internal.h"

/* RFC 9113 §3.4 */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

struct h1_conn {
    struct conn conn; /* first: a struct conn * is a struct h1_conn * */
    struct downstream down;
    struct sy_sock *sock;
    struct event *timer; /* request head deadline / keep-alive idle */
    uint64_t requests;   /* served on this connection */
    bool keep_alive;     /* after the current exchange */
    bool head_started;   /* bytes of a request head arrived: the head deadline runs */
    size_t head_scanned; /* bytes of an incomplete head already parsed, with no line end since */
    bool head_has_line;  /* the request line of that incomplete head is complete */
    bool proto_counted;  /* cleartext: counted as HTTP/1.1 on its listener (not h2c) */
    bool closing;        /* free once the output is flushed */
    bool linger;         /* ... after a lingering close (see finish_close) */
    bool lingering;      /* in that lingering close: c->timer is its deadline */
    size_t lingered;
    bool chunked_out; /* the current response is re-encoded as chunked */
    bool client_eof;  /* the client closed its side (a tunnel half-close) */
    bool out_lost;    /* response bytes could not be buffered: cut_response */
    int minor;        /* HTTP/1.<minor> of the current request */
    enum sy_h1_framing req_framing;
    uint64_t req_remaining;
    struct sy_h1_chunked req_chunked;
};

static void client_free(struct h1_conn *c)
{
    if (c->down.ex)
        exchange_downstream_gone(c->down.ex);
    if (c->timer)
        event_free(c->timer);
    sy_sock_free(c->sock); /* NULL once handed to the HTTP/2 codec */
    struct sy_worker *w = c->conn.w;
    worker_conn_remove(w, &c->conn);
    free(c);
}

static void conn_free(struct conn *conn)
{
    client_free((struct h1_conn *)conn);
}

/* Drain, for a connection with no request in flight: closing it at once races with the
 * client's next request (already sent, it would meet a reset: a failed request for a client
 * that does not retry), so it gets DRAIN_IDLE_MS more, as its idle deadline, to send one,
 * which is answered with `Connection: close`. */
#define DRAIN_IDLE_MS 1000

static void arm_timer(struct h1_conn *c, unsigned ms);

static void conn_close_idle(struct conn *conn)
{
    struct h1_conn *c = (struct h1_conn *)conn;
    c->keep_alive = false;
    if (!c->down.ex && !c->closing && !c->lingering && !c->head_started)
        arm_timer(c, DRAIN_IDLE_MS);
}

static void arm_timer(struct h1_conn *c, unsigned ms)
{
    struct timeval tv = ms_tv(ms);
    evtimer_add(c->timer, &tv);
}

/* Bytes read and dropped after an error answer before the connection is cut anyway. */
#define LINGER_MAX_BYTES (1 << 20)

static void linger_read_cb(struct sy_sock *sk, void *arg)
{
    struct h1_conn *c = arg;
    struct evbuffer *in = sy_sock_input(sk);
    c->lingered += evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (c->lingered > LINGER_MAX_BYTES)
        client_free(c);
}

static void linger_event_cb(struct sy_sock *sk, short what, void *arg)
{
    client_free(arg);
}

/* The answer is out. Closing a socket whose input still holds unread bytes makes the kernel
 * send a reset, which can destroy the answer before the client reads it; so after an error
 * answer we stop writing, read and drop what the client still sends for a short while, and
 * close on its EOF (a "lingering close"). timeouts.linger is a deadline from here, not a read
 * timeout: a client trickling a byte now and then must not keep the connection. */
static void finish_close(struct h1_conn *c)
{
    if (!c->linger) {
        client_free(c);
        return;
    }
    c->linger = false;
    c->lingering = true;
    shutdown(sy_sock_fd(c->sock), SHUT_WR);
    sy_sock_set_timeouts(c->sock, NULL, NULL);
    arm_timer(c, worker_config(c->conn.w)->timeouts.linger_ms);
    sy_sock_setcb(c->sock, linger_read_cb, NULL, linger_event_cb, c);
    sy_sock_set_read_high(c->sock, 0);
    sy_sock_enable(c->sock, EV_READ);
}

/* Close once everything queued has been written. */
static void close_after_flush(struct h1_conn *c)
{
    c->closing = true;
    c->keep_alive = false;
    sy_sock_disable(c->sock, EV_READ);
    if (evbuffer_get_length(sy_sock_output(c->sock)) == 0)
        finish_close(c);
}

/* An answer of our own; the connection closes after it (the request's remaining bytes, if
 * any, cannot be trusted to be framed right). */
static void send_error(struct h1_conn *c, int status, const char *why)
{
    struct evbuffer *out = sy_sock_output(c->sock);
    char retry[40] = "";
    if (c->down.retry_after_s) /* sy_error_retry_after() */
        snprintf(retry, sizeof(retry), "retry-after: %u\r\n", c->down.retry_after_s);
    c->down.retry_after_s = 0;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                        "content-length: %zu\r\n%sconnection: close\r\n\r\n%s\n",
                        status, sy_http_reason_phrase(status), strlen(why) + 1, retry, why);
    sy_log_client(SY_LOG_INFO, "http", "conn %llu: %d %s (%s)", (unsigned long long)c->conn.id,
                  status, sy_http_reason_phrase(status), why);
    worker_count_own(c->conn.w, c->down.own_slot, status);
    access_log_own(&c->down, status, false);
    c->down.own_slot = NULL;
    c->linger = !c->conn.tls;
    close_after_flush(c);
}

/* Hands a connection that opened with the HTTP/2 preface to the HTTP/2 codec. Returns true
 * when it did, or when the bytes could not be looked at for want of memory (the client is gone
 * either way), false when this is HTTP/1.x. */
static bool sniff_h2(struct h1_conn *c, struct evbuffer *in, size_t len, bool *wait)
{
    *wait = false;
    size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
    if (!p) {
        client_free(c); /* out of memory: nothing was answered yet, so only a close is left */
        return true;
    }
    if (memcmp(p, h2_preface, n) != 0)
        return false;
    if (n < H2_PREFACE_LEN) {
        *wait = true;
        return false;
    }
    struct sy_sock *sk = c->sock;
    c->sock = NULL;
    c->conn.w->accept_trusted = c->conn.trusted;
    c->conn.w->accept_lstat = c->conn.lstat;
    if (c->conn.lstat)
        counter_add(&c->conn.lstat->conns[LPROTO_H2C], 1);
    h2_accept(c->conn.w, sk, (const struct sockaddr *)&c->conn.addr, sizeof(c->conn.addr), false);
    client_free(c);
    return true;
}

/* The first bytes of a cleartext connection: HTTP/2's preface goes to the HTTP/2 codec.
 * Returns false when the head is not to be read now (handed over, or a prefix of the
 * preface that needs more bytes). */
static bool sniff_first_bytes(struct h1_conn *c, struct evbuffer *in, size_t len)
{
    if (c->requests != 0 || c->conn.tls)
        return true;
    bool wait;
    if (sniff_h2(c, in, len, &wait))
        return false;
    if (wait)
        return false;
    if (!c->proto_counted && c->conn.lstat)
        counter_add(&c->conn.lstat->conns[LPROTO_H1], 1);
    c->proto_counted = true;
    return true;
}

/* A head trickling in: parse again only once a new line has ended (the parser is stateless,
 * so re-parsing at every byte would cost O(n^2)). Limits are still checked as soon as the
 * bytes pass them. True when no line has ended since the last parse. */
static bool head_line_pending(struct h1_conn *c, struct evbuffer *in, size_t want,
                              const struct sy_h1_limits *lim)
{
    if (!c->head_scanned || want > lim->max_head ||
        (!c->head_has_line && want > lim->max_request_line))
        return false;
    struct evbuffer_ptr from;
    evbuffer_ptr_set(in, &from, c->head_scanned - 1, EVBUFFER_PTR_SET);
    if (evbuffer_search(in, "\n", 1, &from).pos == -1) {
        c->head_scanned = want;
        return true;
    }
    return false;
}

/* The connection's state for the request just parsed. */
static void begin_request(struct h1_conn *c, const struct sy_h1_request *req,
                          const struct sy_config *cfg)
{
    c->requests++;
    c->minor = req->minor;
    c->keep_alive = req->keep_alive;
    c->chunked_out = false;
    c->req_framing = req->framing;
    c->req_remaining = req->content_length;
    if (req->framing == SY_H1_BODY_CHUNKED)
        sy_h1_chunked_init(&c->req_chunked, cfg->limits.max_header_bytes);
}

/* The neutral request head; `*slash` says its origin-form target needs a leading "/". */
static struct req_head h1_req_head(const struct sy_h1_request *req, bool *slash)
{
    struct req_head head = {
        .method = req->method,
        .target = sy_h1_origin_form(req->target, slash),
        .authority = req->host,
        .headers = req->headers,
        .n_headers = req->n_headers,
        .framing = req->framing,
        .content_length = req->content_length,
        .expect_continue = req->expect_continue && req->minor == 1,
        .upgrade = (req->conn_flags & SY_H1_CONN_UPGRADE) && req->framing == SY_H1_BODY_NONE &&
                           req->minor == 1
                       ? req->upgrade
                       : sy_slice_of(NULL, 0),
        .version = req->minor == 0 ? "1.0" : "1.1",
    };
    return head;
}

/* Reading stays on while the exchange runs: pipelined requests wait their turn in the input
 * (bounded by its watermark), a client's early close is seen at once, and the socket is not
 * taken out of epoll and put back for every request. Only a body being read has a read
 * deadline; a response the client does not take has client_send. */
static void set_request_timeouts(struct h1_conn *c, const struct sy_h1_request *req,
                                 const struct sy_config *cfg)
{
    struct timeval body = ms_tv(cfg->timeouts.client_body_ms);
    struct timeval send = ms_tv(cfg->timeouts.client_send_ms);
    bool has_body = req->framing == SY_H1_BODY_CHUNKED ||
                    (req->framing == SY_H1_BODY_LENGTH && req->content_length > 0);
    sy_sock_set_timeouts(c->sock, has_body ? &body : NULL, &send);
}

/* A parsed request goes to the exchange; the head's `n` bytes leave the input after it. */
static void start_request(struct h1_conn *c, const struct sy_h1_request *req, ssize_t n)
{
    const struct sy_config *cfg = worker_config(c->conn.w);
    struct evbuffer *in = sy_sock_input(c->sock);
    begin_request(c, req, cfg);
    /* RFC 9112 §3.2.2: an absolute-form target goes on in origin-form (its authority is
     * already the Host). "http://a?x" has an empty path, which origin-form writes "/": that
     * one target is copied (the exchange copies what it keeps before exchange_start returns). */
    bool slash;
    char *slashed = NULL;
    struct req_head head = h1_req_head(req, &slash);
    set_request_timeouts(c, req, cfg);
    if (slash) {
        slashed = sy_xmalloc(head.target.len + 1);
        slashed[0] = '/';
        memcpy(slashed + 1, head.target.p, head.target.len);
        head.target = sy_slice_of(slashed, head.target.len + 1);
    }
    exchange_start(&c->down, &head); /* copies what it needs from p */
    free(slashed);
    evbuffer_drain(in, (size_t)n);
    if (c->down.ex)
        exchange_body_ready(c->down.ex); /* body bytes that came with the head */
}

static void try_read_head(struct h1_conn *c)
{
    struct sy_worker *w = c->conn.w;
    const struct sy_config *cfg = worker_config(w);
    struct evbuffer *in = sy_sock_input(c->sock);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (!sniff_first_bytes(c, in, len))
        return;
    struct sy_h1_limits lim = {cfg->limits.max_request_line, cfg->limits.max_header_bytes,
                               cfg->limits.max_headers};
    size_t want = len < lim.max_head + 1 ? len : lim.max_head + 1;
    if (head_line_pending(c, in, want, &lim))
        return;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
    if (!p) {
        send_error(c, 503, exchange_nomem_reason);
        return;
    }
    struct sy_h1_request req = {.headers = worker_scratch(w)};
    ssize_t n = sy_h1_parse_request(p, want, &lim, &req);
    c->head_scanned = n == 0 ? want : 0;
    c->head_has_line = n == 0 && memchr(p, '\n', want) != NULL;
    if (n == 0) {
        /* The head has started: from now on it must complete within client_header. */
        if (!c->head_started) {
            c->head_started = true;
            arm_timer(c, cfg->timeouts.client_header_ms);
        }
        return;
    }
    c->head_started = false;
    evtimer_del(c->timer);
    if (n < 0) {
        send_error(c, (int)-n, req.why ? req.why : "malformed request");
        return;
    }
    if (sy_slice_ieq(req.method, "CONNECT")) {
        send_error(c, 405, "CONNECT is not supported: switchyard is a reverse proxy");
        return;
    }
    start_request(c, &req, n);
}

static void read_cb(struct sy_sock *sk, void *arg)
{
    struct h1_conn *c = arg;
    if (c->closing)
        return;
    if (c->down.ex)
        exchange_body_ready(c->down.ex);
    else
        try_read_head(c);
}

static void write_cb(struct sy_sock *sk, void *arg)
{
    struct h1_conn *c = arg;
    if (c->closing) {
        if (evbuffer_get_length(sy_sock_output(sk)) == 0)
            finish_close(c);
        return;
    }
    if (c->down.ex)
        exchange_client_drained(c->down.ex);
}

static void event_cb(struct sy_sock *sk, short what, void *arg)
{
    struct h1_conn *c = arg;
    if (c->down.ex && (what & SY_SOCK_EOF) && !(what & SY_SOCK_ERROR) && c->down.ex->req_done &&
        !c->down.ex->q_pool && !c->down.ex->held) {
        /* A half-close after the whole request still deserves its response. One while the
         * request waits for a connection (max_connections) is taken for a client that gave
         * up: it is forgotten rather than sent to a cluster whose connections are scarce; so
         * is one while an exclusive switch holds the request (proxy/hold.c). */
        c->keep_alive = false;
        return;
    }
    if (c->down.ex && (what & SY_SOCK_EOF) && !(what & SY_SOCK_ERROR) &&
        c->req_framing == SY_H1_BODY_CLOSE && !c->client_eof) {
        /* A tunnel's half-close: passed on to the cluster once what came before it is
         * written (shutdown(SHUT_WR)), and what the cluster still sends comes back. */
        c->client_eof = true;
        exchange_body_ready(c->down.ex);
        return;
    }
    if (what & SY_SOCK_TIMEOUT)
        sy_log_client(SY_LOG_INFO, "http", "conn %llu: client timed out %s",
                      (unsigned long long)c->conn.id,
                      (what & SY_SOCK_READING) ? "reading" : "writing");
    client_free(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct h1_conn *c = arg;
    if (c->lingering || c->out_lost) {
        client_free(c); /* the linger deadline, or a cut response (cut_response) */
        return;
    }
    if (c->down.ex || c->closing)
        return;
    if (evbuffer_get_length(sy_sock_input(c->sock)) > 0) {
        send_error(c, 408, "request head not received in time");
        return;
    }
    client_free(c); /* keep-alive idle: close quietly */
}

/* struct downstream_ops */

static ssize_t d_pull_body(struct downstream *d, struct evbuffer *out, size_t max,
                           struct evbuffer *trailers, bool *done, const char **why)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    struct evbuffer *in = sy_sock_input(c->sock);
    if (c->req_framing == SY_H1_BODY_CLOSE) {
        /* A tunnel: raw bytes until the client closes. */
        size_t n = evbuffer_get_length(in);
        if (n > max)
            n = max;
        if (!h1_move_body(in, out, n)) {
            *why = exchange_nomem_reason;
            return -1;
        }
        *done = c->client_eof && evbuffer_get_length(in) == 0;
        return (ssize_t)n;
    }
    ssize_t n = h1_decode_body(&c->req_chunked, c->req_framing, &c->req_remaining, in, out, max,
                               trailers, done, why);
    if (*done) {
        /* The body is in: no read deadline while the answer comes. */
        struct timeval tv = ms_tv(worker_config(c->conn.w)->timeouts.client_send_ms);
        sy_sock_set_timeouts(c->sock, NULL, &tv);
    }
    return n;
}

/* Response bytes could not be buffered: what the output holds is a cut response, which must
 * not look complete nor be followed by another. The connection closes from its timer, on the
 * next loop turn (the exchange is the caller), without flushing; the exchange sees its client
 * gone. Until then nothing more is written. */
static void cut_response(struct h1_conn *c)
{
    if (c->out_lost)
        return;
    sy_log_client(SY_LOG_INFO, "http", "conn %llu: response cut: %s",
                  (unsigned long long)c->conn.id, exchange_nomem_reason);
    c->out_lost = true;
    c->keep_alive = false;
    arm_timer(c, 0);
}

static void d_send_continue(struct downstream *d)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    /* A cut interim answer would be read as the start of the final one. */
    if (evbuffer_add(sy_sock_output(c->sock), "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
        cut_response(c);
}

static void d_send_head(struct downstream *d, const struct resp_head *h)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    struct head_writer hw;
    hw_init(&hw, sy_sock_output(c->sock));
    hw_add(&hw, "HTTP/1.1 ", 9);
    hw_uint(&hw, (uint64_t)h->status, 10);
    hw_add(&hw, " ", 1);
    if (h->reason.len)
        hw_slice(&hw, h->reason);
    else
        hw_str(&hw, sy_http_reason_phrase(h->status));
    hw_add(&hw, "\r\n", 2);
    for (size_t i = 0; i < h->n_headers; i++)
        hw_field(&hw, h->headers[i].name, h->headers[i].value);
    if (d->retry_after_s) { /* sy_error_retry_after() */
        hw_str(&hw, "retry-after: ");
        hw_uint(&hw, d->retry_after_s, 10);
        hw_add(&hw, "\r\n", 2);
        d->retry_after_s = 0;
    }
    if (h->status == 101) {
        hw_str(&hw, "connection: upgrade\r\n");
        hw_field(&hw, sy_slice_of("upgrade", 7), h->upgrade);
        hw_add(&hw, "\r\n", 2);
        hw_flush(&hw);
        c->keep_alive = false;
        if (hw.failed)
            cut_response(c);
        return;
    }
    if (h->set_cookie) {
        hw_str(&hw, "set-cookie: ");
        hw_str(&hw, h->set_cookie);
        hw_add(&hw, "\r\n", 2);
    }
    if (h->length_known || h->head_length) {
        hw_str(&hw, "content-length: ");
        hw_uint(&hw, h->content_length, 10);
        hw_add(&hw, "\r\n", 2);
    } else if (h->has_body) {
        if (c->minor >= 1) {
            c->chunked_out = true;
            hw_str(&hw, "transfer-encoding: chunked\r\n");
        } else {
            c->keep_alive = false; /* HTTP/1.0: the close delimits the body */
        }
    }
    if (c->conn.w->draining)
        c->keep_alive = false;
    if (!c->keep_alive)
        hw_str(&hw, "connection: close\r\n");
    else if (c->minor == 0)
        hw_str(&hw, "connection: keep-alive\r\n");
    hw_add(&hw, "\r\n", 2);
    hw_flush(&hw);
    if (hw.failed)
        cut_response(c);
}

static size_t d_queued(struct downstream *d)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    return evbuffer_get_length(sy_sock_output(c->sock));
}

static void d_send_body(struct downstream *d, struct evbuffer *src, size_t n)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    struct evbuffer *out = sy_sock_output(c->sock);
    if (c->out_lost) {
        evbuffer_drain(src, n);
        return;
    }
    bool ok = c->chunked_out ? h1_add_chunk(out, src, n) : h1_move_body(src, out, n);
    if (!ok)
        cut_response(c);
}

static void d_send_end(struct downstream *d, struct evbuffer *trailers)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    if (!c->chunked_out || c->out_lost)
        return;
    if (!h1_add_last_chunk(sy_sock_output(c->sock), trailers))
        cut_response(c);
}

static void d_send_error(struct downstream *d, int status, const char *why)
{
    send_error((struct h1_conn *)d->conn, status, why);
}

/* The exchange is over: wait for the next request or close. */
static void d_finish(struct downstream *d, bool reusable)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    if (c->out_lost) {
        client_free(c); /* the cut response is not flushed: see cut_response */
        return;
    }
    if (!reusable || !c->keep_alive || c->conn.w->draining) {
        close_after_flush(c);
        return;
    }
    const struct sy_config *cfg = worker_config(c->conn.w);
    sy_sock_set_timeouts(c->sock, NULL, NULL);
    arm_timer(c, cfg->timeouts.client_idle_ms);
    sy_sock_enable(c->sock, EV_READ);
    try_read_head(c); /* a pipelined request may be waiting */
}

static void d_abort(struct downstream *d)
{
    client_free((struct h1_conn *)d->conn);
}

static void d_start_tunnel(struct downstream *d)
{
    struct h1_conn *c = (struct h1_conn *)d->conn;
    const struct sy_config *cfg = worker_config(c->conn.w);
    c->req_framing = SY_H1_BODY_CLOSE;
    c->chunked_out = false;
    c->keep_alive = false;
    struct timeval tv = ms_tv(cfg->timeouts.tunnel_idle_ms);
    sy_sock_set_timeouts(c->sock, &tv, &tv);
    sy_sock_enable(c->sock, EV_READ);
}

static const struct downstream_ops h1_ops = {
    .pull_body = d_pull_body,
    .send_continue = d_send_continue,
    .send_head = d_send_head,
    .queued = d_queued,
    .send_body = d_send_body,
    .send_end = d_send_end,
    .send_error = d_send_error,
    .finish = d_finish,
    .abort = d_abort,
    .start_tunnel = d_start_tunnel,
};

void h1_accept(struct sy_worker *w, struct sy_sock *sk, const struct sockaddr *sa, int salen,
               bool tls)
{
    const struct sy_config *cfg = worker_config(w);
    struct h1_conn *c = sy_xcalloc(1, sizeof(*c));
    c->conn.close_idle = conn_close_idle;
    c->conn.free = conn_free;
    c->down.ops = &h1_ops;
    c->down.conn = &c->conn;
    c->sock = sk;
    c->keep_alive = true;
    /* Keep at most one head (or one buffer of body) waiting to be handled. */
    size_t high = cfg->limits.buffer_bytes;
    if (high < cfg->limits.max_header_bytes + 1)
        high = cfg->limits.max_header_bytes + 1;
    sy_sock_set_read_high(sk, high);
    sy_sock_set_write_low(sk, cfg->limits.buffer_bytes / 2);
    sy_sock_set_read_max(sk, SY_SOCK_READ_MAX, CLIENT_FIRST_READ);
    sy_sock_set_write_max(sk, MAX_SINGLE_WRITE);
    sy_sock_set_eager(sk, true); /* one answer at a time: nothing to gather */
    sy_sock_setcb(sk, read_cb, write_cb, event_cb, c);
    c->timer = evtimer_new(w->base, timer_cb, c);
    worker_conn_init(w, &c->conn, sa, salen, tls);
    arm_timer(c, cfg->timeouts.client_idle_ms);
    if (w->draining)
        conn_close_idle(&c->conn); /* a handshake that ended during the drain */
    sy_sock_enable(sk, EV_READ | EV_WRITE);
    /* A TLS handshake may have brought the first bytes already. */
    if (evbuffer_get_length(sy_sock_input(sk)) > 0)
        try_read_head(c);
}
