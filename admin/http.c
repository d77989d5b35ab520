/* SPDX-License-Identifier: MIT */
/* The read-only HTTP/1.1 listener of `admin.http`, on the control thread's event loop (never
 * a worker's): GET and HEAD of /metrics, /status, /, /healthz and /readyz. Request heads are
 * parsed by the data path's parser (proxy/h1.c) with the data path's limits
 * (limits.max_request_line, max_header_bytes, max_headers) and deadlines (a head within
 * timeouts.client_header, an idle keep-alive connection closed after timeouts.client_idle).
 * Peers outside admin.http_allow (when given) get 403. Every error is answered with a one-line
 * body and the connection closes after it: our side is shut for writing and what the client
 * still sends is read and dropped (at most LINGER_MS), so that a reset does not destroy the
 * answer before the client reads it. The settings are taken at start: admin.http is
 * restart-only. */
#include "switchyard/admin_http.h"

#include "switchyard/fleet.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "switchyard/h1.h"

#define MAX_CONNS 64   /* connections served at once; more are closed at accept */
#define LINGER_MS 2000 /* after an answer that closes: what the client sends is dropped */

/* The page at / (admin/status_page.html, embedded by admin/embed.py). */
extern const char sy_status_page[];
extern const size_t sy_status_page_len;

struct hconn;

struct sy_admin_http {
    struct event_base *base;
    struct evconnlistener *listener;
    struct sy_admin_http_env env;
    struct sy_h1_limits lim;
    unsigned header_ms, idle_ms, stale_ms;
    struct sy_cidr *allow; /* NULL: everyone who reaches the address */
    size_t n_allow;
    bool has_allow;
    bool draining;
    struct sy_header *headers; /* the parser's field array (one request at a time) */
    struct hconn *conns;
    size_t n_conns;
};

struct hconn {
    struct sy_admin_http *h;
    struct hconn *prev, *next;
    struct bufferevent *bev;
    struct event *deadline;
    struct sockaddr_storage peer;
    bool allowed;
    bool in_head;   /* bytes of a head arrived: the client_header deadline runs */
    bool closing;   /* close once the answer is written */
    bool lingering; /* our side is shut: reading and dropping until EOF or the deadline */
};

/* Exact comparison (methods and paths are case-sensitive). */
static bool slice_is(struct sy_slice a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && memcmp(a.p, s, n) == 0;
}

static void conn_free(struct hconn *c)
{
    struct sy_admin_http *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->n_conns--;
    event_free(c->deadline);
    bufferevent_free(c->bev);
    free(c);
}

static void arm(struct hconn *c, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(c->deadline, &tv);
}

static void linger(struct hconn *c)
{
    c->lingering = true;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_enable(c->bev, EV_READ);
    arm(c, LINGER_MS);
}

/* Queues one answer. `close` ends the connection after it. */
static void respond(struct hconn *c, int status, const char *type, const char *body, size_t len,
                    bool head, bool close, const char *extra)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n%s%s\r\n",
                        status, sy_http_reason_phrase(status), type, len, extra ? extra : "",
                        close ? "Connection: close\r\n" : "");
    if (!head)
        evbuffer_add(out, body, len);
    if (close) {
        c->closing = true;
        bufferevent_disable(c->bev, EV_READ);
        event_del(c->deadline);
    }
}

/* An answer with a one-line text body. */
static void respond_line(struct hconn *c, int status, bool head, bool close, const char *extra,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void respond_line(struct hconn *c, int status, bool head, bool close, const char *extra,
                         const char *fmt, ...)
{
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(body) - 2)
        n = (int)sizeof(body) - 2;
    body[n++] = '\n';
    body[n] = '\0';
    respond(c, status, "text/plain; charset=utf-8", body, (size_t)n, head, close, extra);
}

static void serve_status(struct hconn *c, bool head, bool close)
{
    struct sy_admin_http *h = c->h;
    if (!h->env.admin) {
        respond_line(c, 503, head, close, NULL, "status is not available");
        return;
    }
    struct sy_peer peer = {.uid = (uint32_t)geteuid(),
                           .gid = (uint32_t)getegid(),
                           .pid = (int32_t)getpid(),
                           .read_only = true};
    struct sy_reply reply;
    static const char line[] = "json status";
    sy_reply_init(&reply, true);
    uint64_t published = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    sy_admin_exec(h->env.admin, line, sizeof(line) - 1, NULL, 0, &peer, now_ms, &reply, &published);
    size_t len = 0;
    char *text = sy_admin_format(h->env.admin, &reply, &len);
    respond(c, reply.failed ? 500 : 200, "application/json", text, len, head, close, NULL);
    free(text);
    sy_reply_dispose(&reply);
}

/* The first worker whose loop has not turned within timeouts.worker_stale, or that has not
 * started: its index into v, or -1. */
static long stale_worker(struct sy_admin_http *h, struct sy_worker_health *v, size_t *n)
{
    *n = 0;
    if (!h->env.health)
        return -1;
    *n = h->env.health(h->env.health_arg, v, 256);
    if (*n > 256)
        *n = 256;
    for (size_t i = 0; i < *n; i++)
        if (!v[i].running || v[i].beat_age_ms > h->stale_ms)
            return (long)i;
    return -1;
}

static bool is_ready(struct sy_admin_http *h, const char **why, long *worker)
{
    *worker = -1;
    if (h->draining) {
        *why = "draining";
        return false;
    }
    struct sy_worker_health v[256];
    size_t n;
    if (h->env.health) {
        n = h->env.health(h->env.health_arg, v, 256);
        for (size_t i = 0; i < n && i < 256; i++) {
            if (!v[i].running) {
                *why = "not started";
                *worker = (long)v[i].id;
                return false;
            }
        }
    }
    if (h->env.fleet && !sy_fleet_is_ready(h->env.fleet)) {
        *why = "the fleet state has not been read from etcd yet (and no cached state)";
        return false;
    }
    *why = "ready";
    return true;
}

static void route(struct hconn *c, struct sy_slice path, bool head, bool close)
{
    struct sy_admin_http *h = c->h;
    size_t plen = path.len;
    for (size_t i = 0; i < path.len; i++) {
        if (path.p[i] == '?') {
            plen = i;
            break;
        }
    }
    struct sy_slice p = {path.p, plen};
    if (slice_is(p, "/metrics")) {
        const char *why;
        long w;
        struct sy_prom m;
        sy_prom_init(&m);
        sy_admin_metrics(&m, &h->env, is_ready(h, &why, &w));
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", m.p ? m.p : "", m.len, head,
                close, NULL);
        sy_prom_dispose(&m);
    } else if (slice_is(p, "/status")) {
        serve_status(c, head, close);
    } else if (slice_is(p, "/") || slice_is(p, "/index.html")) {
        respond(c, 200, "text/html; charset=utf-8", sy_status_page, sy_status_page_len, head, close,
                NULL);
    } else if (slice_is(p, "/healthz")) {
        struct sy_worker_health v[256];
        size_t n;
        long i = stale_worker(h, v, &n);
        if (i < 0)
            respond_line(c, 200, head, close, NULL, "ok: %zu workers turning", n);
        else if (!v[i].running)
            respond_line(c, 503, head, close, NULL, "worker %u (sy-worker-%u) is not running",
                         v[i].id, v[i].id);
        else
            respond_line(c, 503, head, close, NULL,
                         "worker %u (sy-worker-%u) has not turned its loop for %llu ms "
                         "(timeouts.worker_stale %u ms)",
                         v[i].id, v[i].id, (unsigned long long)v[i].beat_age_ms, h->stale_ms);
    } else if (slice_is(p, "/readyz")) {
        const char *why;
        long w;
        if (is_ready(h, &why, &w))
            respond_line(c, 200, head, close, NULL, "ready");
        else if (w >= 0)
            respond_line(c, 503, head, close, NULL, "not ready: worker %ld %s", w, why);
        else
            respond_line(c, 503, head, close, NULL, "not ready: %s", why);
    } else {
        respond_line(c, 404, head, close, NULL,
                     "no such page: try /metrics, /status, /healthz, /readyz or /");
    }
}

static bool peer_allowed(const struct sy_admin_http *h, const struct sockaddr_storage *sa)
{
    return !h->has_allow || sy_cidr_match(h->allow, h->n_allow, (const struct sockaddr *)sa);
}

/* Answers every complete request in the input, one after the other. */
static void serve(struct hconn *c)
{
    struct sy_admin_http *h = c->h;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (!c->closing) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        if (!c->in_head) {
            c->in_head = true;
            arm(c, h->header_ms);
        }
        size_t want = len < h->lim.max_head + 1 ? len : h->lim.max_head + 1;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
        struct sy_h1_request req = {.headers = h->headers};
        ssize_t n = sy_h1_parse_request(p, want, &h->lim, &req);
        if (n == 0)
            return;
        if (n < 0) {
            int status = (int)-n;
            respond_line(c, status, false, true, NULL, "%s", req.why ? req.why : "bad request");
            return;
        }
        bool head = slice_is(req.method, "HEAD");
        bool close = !req.keep_alive;
        if (!c->allowed) {
            respond_line(c, 403, head, true, NULL,
                         "forbidden: your address is not in admin.http_allow");
        } else if (!head && !slice_is(req.method, "GET")) {
            respond_line(c, 405, false, true, "Allow: GET, HEAD\r\n",
                         "method not allowed: this listener only reads (GET, HEAD)");
        } else if (req.framing != SY_H1_BODY_NONE &&
                   !(req.framing == SY_H1_BODY_LENGTH && req.content_length == 0)) {
            respond_line(c, 400, head, true, NULL, "a request body is not accepted here");
        } else {
            /* The path is copied: the drain may free the bytes the slices point into. */
            char path[1024];
            size_t plen = req.target.len < sizeof(path) ? req.target.len : sizeof(path) - 1;
            memcpy(path, req.target.p, plen);
            evbuffer_drain(in, (size_t)n);
            c->in_head = false;
            route(c, (struct sy_slice){path, plen}, head, close);
            if (!c->closing)
                arm(c, h->idle_ms);
            continue;
        }
        return;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    if (c->closing && !c->lingering && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        linger(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct hconn *c = arg;
    if (c->lingering) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    serve(c);
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        linger(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hconn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hconn *c = arg;
    if (c->lingering || !c->in_head) {
        conn_free(c); /* idle, or the linger is over */
        return;
    }
    respond_line(c, 408, false, true, NULL, "the request head did not arrive in time");
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        linger(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct sy_admin_http *h = arg;
    if (h->n_conns >= MAX_CONNS) {
        close(fd);
        return;
    }
    struct hconn *c = sy_xcalloc(1, sizeof(*c));
    c->h = h;
    if (salen > 0 && (size_t)salen <= sizeof(c->peer))
        memcpy(&c->peer, sa, (size_t)salen);
    c->allowed = peer_allowed(h, &c->peer);
    c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->deadline = evtimer_new(h->base, deadline_cb, c);
    if (!c->bev || !c->deadline) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->deadline)
            event_free(c->deadline);
        free(c);
        return;
    }
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    /* A head that grows past the limit is refused by the parser; stop reading beyond it. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, h->lim.max_head + 1);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ);
    arm(c, h->header_ms);
    c->in_head = false;
}

int sy_admin_http_listen(struct event_base *base, const struct sy_config *cfg,
                         const struct sy_admin_http_env *env, struct sy_admin_http **out)
{
    const struct sy_admin_spec *a = &cfg->admin;
    struct sy_admin_http *h = sy_xcalloc(1, sizeof(*h));
    h->base = base;
    h->env = *env;
    h->lim = (struct sy_h1_limits){cfg->limits.max_request_line, cfg->limits.max_header_bytes,
                                   cfg->limits.max_headers};
    h->header_ms = cfg->timeouts.client_header_ms;
    h->idle_ms = cfg->timeouts.client_idle_ms;
    h->stale_ms = cfg->timeouts.worker_stale_ms;
    h->has_allow = a->has_http_allow;
    h->n_allow = a->n_http_allow;
    h->allow = sy_xcalloc(a->n_http_allow ? a->n_http_allow : 1, sizeof(*h->allow));
    if (a->n_http_allow)
        memcpy(h->allow, a->http_allow, a->n_http_allow * sizeof(*h->allow));
    h->headers = sy_xcalloc(h->lim.max_headers ? h->lim.max_headers : 1, sizeof(*h->headers));
    if (env->has_inherited_fd)
        h->listener =
            evconnlistener_new(base, accept_cb, h, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                               -1, env->inherited_fd);
    else
        h->listener = evconnlistener_new_bind(
            base, accept_cb, h, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
            128, (const struct sockaddr *)&a->http_addr, (int)a->http_addrlen);
    if (!h->listener) {
        sy_log_errno(SY_LOG_ERROR, "admin", "cannot listen on admin.http %s", a->http);
        free(h->allow);
        free(h->headers);
        free(h);
        return SY_ERR_SYS;
    }
    sy_log(SY_LOG_INFO, "admin", "http on %s: /metrics /status /healthz /readyz /", a->http);
    *out = h;
    return 0;
}

void sy_admin_http_set_draining(struct sy_admin_http *h)
{
    if (h)
        h->draining = true;
}

void sy_admin_http_free(struct sy_admin_http *h)
{
    if (!h)
        return;
    while (h->conns)
        conn_free(h->conns);
    if (h->listener)
        evconnlistener_free(h->listener);
    free(h->allow);
    free(h->headers);
    free(h);
}

int sy_admin_http_fd(const struct sy_admin_http *h)
{
    return h && h->listener ? evconnlistener_get_fd(h->listener) : -1;
}

void sy_admin_http_stop_accepting(struct sy_admin_http *h)
{
    if (!h || !h->listener)
        return;
    evconnlistener_free(h->listener); /* our copy: the new process has its own */
    h->listener = NULL;
}
