/* SPDX-License-Identifier: MIT */
/* The downstream HTTP/1.1 connection: reads request heads (strict parser, limits, head
 * deadline), hands each request to an exchange, and between requests waits for the next one
 * (keep-alive, pipelining). One request is in flight per connection; pipelined bytes wait in
 * the input buffer, which a read watermark keeps bounded, until the response is done. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy_internal.h"

static void client_free(struct client *c)
{
    struct sy_worker *w = c->w;
    if (c->ex)
        exchange_client_gone(c->ex);
    if (c->timer)
        event_free(c->timer);
    bufferevent_free(c->bev);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_clients--;
    free(c);
    worker_client_gone(w);
}

/* Close once everything queued has been written. */
static void client_close_after_flush(struct client *c)
{
    c->closing = true;
    c->keep_alive = false;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        client_free(c);
}

void client_abort(struct client *c)
{
    client_free(c);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Error";
}

/* An answer of our own; the connection closes after it (the request's remaining bytes, if
 * any, cannot be trusted to be framed right). */
void client_send_error(struct client *c, int status, const char *why)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                        "content-length: %zu\r\nconnection: close\r\n\r\n%s\n",
                        status, reason_phrase(status), strlen(why) + 1, why);
    sy_log(SY_LOG_INFO, "http", "conn %llu: %d %s (%s)", (unsigned long long)c->id, status,
           reason_phrase(status), why);
    client_close_after_flush(c);
}

static void arm_timer(struct client *c, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void try_read_head(struct client *c)
{
    struct sy_worker *w = c->w;
    const struct sy_config *cfg = worker_config(w);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (w->scratch_cap < cfg->limits.max_headers) {
        free(w->scratch);
        w->scratch = sy_xcalloc(cfg->limits.max_headers, sizeof(*w->scratch));
        w->scratch_cap = cfg->limits.max_headers;
    }
    struct sy_h1_limits lim = {cfg->limits.max_request_line, cfg->limits.max_header_bytes,
                               cfg->limits.max_headers};
    size_t want = len < lim.max_head + 1 ? len : lim.max_head + 1;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
    struct sy_h1_request req = {.headers = w->scratch};
    ssize_t n = sy_h1_parse_request(p, want, &lim, &req);
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
        client_send_error(c, (int)-n, req.why ? req.why : "malformed request");
        return;
    }
    c->minor = req.minor;
    c->keep_alive = req.keep_alive;
    exchange_start(c, &req); /* copies what it needs from p */
    evbuffer_drain(in, (size_t)n);
    if (c->ex)
        exchange_client_readable(c->ex); /* body bytes that came with the head */
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (c->closing)
        return;
    if (c->ex)
        exchange_client_readable(c->ex);
    else
        try_read_head(c);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (c->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            client_free(c);
        return;
    }
    if (c->ex)
        exchange_client_drained(c->ex);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (c->ex && (what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        /* A half-close after the whole request still deserves its response. */
        if (c->ex->req_done) {
            c->keep_alive = false;
            bufferevent_disable(bev, EV_READ);
            return;
        }
    }
    if (what & BEV_EVENT_TIMEOUT)
        sy_log(SY_LOG_INFO, "http", "conn %llu: client timed out %s", (unsigned long long)c->id,
               (what & BEV_EVENT_READING) ? "reading" : "writing");
    client_free(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    if (c->ex || c->closing)
        return;
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        client_send_error(c, 408, "request head not received in time");
        return;
    }
    client_free(c); /* keep-alive idle: close quietly */
}

/* Called when the exchange is over: wait for the next request or close. */
void client_exchange_done(struct client *c, bool reusable)
{
    c->ex = NULL;
    if (!reusable || !c->keep_alive || c->w->draining) {
        client_close_after_flush(c);
        return;
    }
    const struct sy_config *cfg = worker_config(c->w);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    arm_timer(c, cfg->timeouts.client_idle_ms);
    bufferevent_enable(c->bev, EV_READ);
    try_read_head(c); /* a pipelined request may be waiting */
}

void client_accept(struct sy_worker *w, int fd, const struct sockaddr *sa, int salen)
{
    const struct sy_config *cfg = worker_config(w);
    if (w->draining || w->n_clients >= cfg->limits.max_connections) {
        evutil_closesocket(fd);
        return;
    }
    struct client *c = sy_xcalloc(1, sizeof(*c));
    c->w = w;
    c->id = ++w->next_conn_id * 64 + w->id;
    c->keep_alive = true;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((size_t)salen <= sizeof(c->addr))
        memcpy(&c->addr, sa, (size_t)salen);
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer,
                  sizeof(c->peer));
    else
        strcpy(c->peer, "unknown");
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    /* Keep at most one head (or one buffer of body) waiting to be handled. */
    size_t high = cfg->limits.buffer_bytes;
    if (high < cfg->limits.max_header_bytes + 1)
        high = cfg->limits.max_header_bytes + 1;
    bufferevent_setwatermark(c->bev, EV_READ, 0, high);
    bufferevent_set_max_single_read(c->bev, high);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    c->timer = evtimer_new(w->base, timer_cb, c);
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->n_clients++;
    arm_timer(c, cfg->timeouts.client_idle_ms);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void client_close_idle(struct sy_worker *w)
{
    struct client *c = w->clients;
    while (c) {
        struct client *next = c->next;
        if (!c->ex && !c->closing)
            client_free(c);
        else
            c->keep_alive = false;
        c = next;
    }
}

void client_free_all(struct sy_worker *w)
{
    while (w->clients)
        client_free(w->clients);
}
