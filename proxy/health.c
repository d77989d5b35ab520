/* SPDX-License-Identifier: MIT */
/* Active health checks (`clusters.NAME.health`), run on the control thread's event_base, never
 * on a worker. Each endpoint of a checked cluster has a probe of its own that fires every
 * interval (each wait jittered by up to 10%, so replicas and endpoints do not probe in step):
 * a non-blocking connect, the TLS handshake with the cluster's own context (verification, CA,
 * client certificate, ALPN), then GET of the health path in the cluster's protocol (HTTP/1.1,
 * or HTTP/2 through an nghttp2 client session for h2c and h2), and the answer's status against
 * `expect`. One deadline (health.timeout) bounds the whole probe: a probe that hangs, answers
 * garbage or closes before its status is a failure, and never blocks anything. Results go
 * through the rise/fall counter into the endpoint's shared state word (switchyard/health.h),
 * which the workers read with a relaxed load; each change is logged once with its reason, and
 * a flapping endpoint's lines are limited per minute. */
#include "switchyard/health_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "switchyard/health.h"

#include "proxy_internal.h"

/* An HTTP/1.1 status line must arrive within this many bytes. */
#define STATUS_LINE_MAX 1024

struct target {
    struct sy_health_checker *hc;
    const struct sy_cluster_spec *cl;
    const struct sy_endpoint_spec *ep;
    struct sy_ep_health *hs;
    SSL_CTX *ctx;           /* the cluster's (borrowed from the checker), or NULL: cleartext */
    struct event *timer;    /* the next probe */
    struct event *deadline; /* the probe's timeout */
    struct event *io;       /* the probe's socket; NULL between probes */
    int fd;
    SSL *ssl;
    bool connecting;
    bool handshaking;
    nghttp2_session *ng;
    int32_t stream;
    bool stream_closed;
    struct evbuffer *out;
    char in[STATUS_LINE_MAX];
    size_t in_len;
    int status; /* the answer's, once known; 0 before */
};

struct sy_health_checker {
    struct event_base *base;
    struct sy_config *cfg; /* the config the targets point into (one reference) */
    struct target *targets;
    size_t n_targets;
    SSL_CTX **ctxs; /* per cluster of cfg, or NULL */
    struct event *tick;
    uint64_t rnd;
};

static uint64_t next_rnd(struct sy_health_checker *hc)
{
    /* splitmix64: jitter only, no secret. */
    uint64_t z = (hc->rnd += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- state changes ----------------------------------------------------------------------- */

/* Logs one state change of `h`, unless the flap damper (sy_ep_log_take) holds it back. */
static void log_change(struct sy_ep_health *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void log_change(struct sy_ep_health *h, int level, const char *fmt, ...)
{
    if (!sy_ep_log_take(h, sy_now_ms()))
        return;
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (h->log_dropped) {
        sy_log(level, "health", "%s (%u changes of this endpoint not logged: flapping)", line,
               h->log_dropped);
        h->log_dropped = 0;
    } else {
        sy_log(level, "health", "%s", line);
    }
}

static bool expected(const struct sy_health_spec *hs, int status)
{
    for (size_t i = 0; i < hs->n_expect; i++)
        if ((unsigned)status >= hs->expect[i].lo && (unsigned)status <= hs->expect[i].hi)
            return true;
    return false;
}

static void probe_close(struct target *t)
{
    if (t->io) {
        event_free(t->io);
        t->io = NULL;
    }
    if (t->deadline)
        evtimer_del(t->deadline);
    if (t->ng) {
        nghttp2_session_del(t->ng);
        t->ng = NULL;
    }
    if (t->ssl) {
        SSL_free(t->ssl);
        t->ssl = NULL;
    }
    if (t->fd != -1) {
        close(t->fd);
        t->fd = -1;
    }
    if (t->out)
        evbuffer_drain(t->out, evbuffer_get_length(t->out));
    t->in_len = 0;
    t->status = 0;
    t->stream_closed = false;
    t->connecting = false;
    t->handshaking = false;
}

static void schedule(struct target *t, unsigned ms)
{
    /* Up to 10% either way. */
    unsigned spread = ms / 5;
    if (spread)
        ms = ms - ms / 10 + (unsigned)(next_rnd(t->hc) % spread);
    struct timeval tv = ms_tv(ms);
    evtimer_add(t->timer, &tv);
}

/* The probe's outcome: `pass`, or the failure's reason (and status). */
static void probe_done(struct target *t, bool pass, enum sy_health_reason why, int status)
{
    probe_close(t);
    struct sy_ep_health *h = t->hs;
    const struct sy_health_spec *spec = &t->cl->health;
    char reason[64];
    if (sy_health_run_step(&h->run, pass, spec->rise, spec->fall)) {
        atomic_store_explicit(&h->down, h->run.down ? 1 : 0, memory_order_relaxed);
        sy_ep_set_reason(h, pass ? SY_HR_OK : why, status);
        sy_health_reason_text(atomic_load_explicit(&h->reason, memory_order_relaxed), reason,
                              sizeof(reason));
        if (h->run.down)
            log_change(h, SY_LOG_WARN, "cluster %s endpoint %s is down: %s (%u failed probes)",
                       t->cl->name, t->ep->address, reason, spec->fall);
        else
            log_change(h, SY_LOG_INFO, "cluster %s endpoint %s is up: %u probes passed",
                       t->cl->name, t->ep->address, spec->rise);
    }
    if (pass && atomic_load_explicit(&h->eject_until_ms, memory_order_relaxed)) {
        /* A passing probe ends an ejection (as Envoy's default does). */
        atomic_store_explicit(&h->eject_until_ms, 0, memory_order_relaxed);
        sy_ep_set_reason(h, SY_HR_OK, 0);
        log_change(h, SY_LOG_INFO, "cluster %s endpoint %s is back: a health probe passed",
                   t->cl->name, t->ep->address);
    }
    schedule(t, spec->interval_ms);
}

static void probe_status(struct target *t, int status)
{
    if (expected(&t->cl->health, status))
        probe_done(t, true, SY_HR_OK, status);
    else
        probe_done(t, false, SY_HR_STATUS, status);
}

/* ---- I/O --------------------------------------------------------------------------------- */

static void io_cb(evutil_socket_t fd, short what, void *arg);

static void wait_for(struct target *t, short what)
{
    if (t->io)
        event_del(t->io);
    else
        t->io = event_new(t->hc->base, t->fd, what, io_cb, t);
    if (!t->io)
        return; /* the deadline ends the probe */
    event_assign(t->io, t->hc->base, t->fd, what, io_cb, t);
    event_add(t->io, NULL);
}

/* What a failed TLS call means for the probe. */
static void tls_failed(struct target *t, int rc)
{
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        wait_for(t, EV_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        wait_for(t, EV_WRITE);
        return;
    }
    /* A close, a reset or a TLS error: during the handshake it is the TLS's (verification,
     * protocol), after it the answer's. The thread's error queue is left empty for the next
     * OpenSSL caller of the control thread. */
    ERR_clear_error();
    probe_done(t, false, t->handshaking ? SY_HR_TLS : SY_HR_CLOSED, 0);
}

/* Writes what t->out holds. Returns false when the probe ended. */
static bool flush_out(struct target *t)
{
    while (evbuffer_get_length(t->out) > 0) {
        size_t len = evbuffer_get_length(t->out);
        const unsigned char *p = evbuffer_pullup(t->out, (ssize_t)len);
        ssize_t n;
        if (t->ssl) {
            int rc = SSL_write(t->ssl, p, (int)len);
            if (rc <= 0) {
                tls_failed(t, rc);
                return false;
            }
            n = rc;
        } else {
            n = send(t->fd, p, len, MSG_NOSIGNAL);
            if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
                wait_for(t, EV_WRITE);
                return false;
            }
            if (n == -1) {
                probe_done(t, false, errno == ECONNREFUSED ? SY_HR_REFUSED : SY_HR_CLOSED, 0);
                return false;
            }
        }
        evbuffer_drain(t->out, (size_t)n);
    }
    return true;
}

static const char *probe_host(const struct target *t)
{
    return t->cl->health.host ? t->cl->health.host : t->ep->address;
}

static ssize_t h2_send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags,
                          void *user)
{
    struct target *t = user;
    return evbuffer_add(t->out, data, len) == 0 ? (ssize_t)len : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int h2_header_cb(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user)
{
    struct target *t = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != t->stream || t->status)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3) {
        int s = 0;
        for (size_t i = 0; i < 3; i++)
            s = s * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : -1000);
        t->status = s >= 100 ? s : -1;
    }
    return 0;
}

static int h2_close_cb(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    struct target *t = user;
    if (id == t->stream)
        t->stream_closed = true;
    return 0;
}

/* HTTP/2: a client session, SETTINGS and one GET. */
static bool h2_start(struct target *t)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return false;
    nghttp2_session_callbacks_set_send_callback(cbs, h2_send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_close_cb);
    int rc = nghttp2_session_client_new(&t->ng, cbs, t);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return false;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(t->ng, NGHTTP2_FLAG_NONE, iv, 1);
    const char *host = probe_host(t), *path = t->cl->health.path;
    const char *scheme = t->ssl ? "https" : "http";
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[] = {
        NV(":method", "GET"),
        NV(":scheme", scheme),
        NV(":authority", host),
        NV(":path", path),
        NV("user-agent", "switchyard-health"),
    };
#undef NV
    t->stream = nghttp2_submit_request(t->ng, NULL, nv, sizeof(nv) / sizeof(nv[0]), NULL, NULL);
    return t->stream > 0 && nghttp2_session_send(t->ng) == 0;
}

/* The connection (and TLS) is up: the request goes. */
static void send_request(struct target *t)
{
    if (t->cl->protocol != SY_PROTO_HTTP1) {
        if (!h2_start(t)) {
            probe_done(t, false, SY_HR_GARBAGE, 0);
            return;
        }
    } else {
        evbuffer_add_printf(t->out,
                            "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: switchyard-health\r\n"
                            "Connection: close\r\n\r\n",
                            t->cl->health.path, probe_host(t));
    }
    if (flush_out(t))
        wait_for(t, EV_READ);
}

/* HTTP/1.1: "HTTP/1.x DDD" and the rest of the line. Returns the status, 0 for more bytes,
 * -1 for garbage. */
static int h1_status(const char *p, size_t len)
{
    const char *eol = memchr(p, '\n', len);
    size_t have = eol ? (size_t)(eol - p) : len;
    static const char prefix[] = "HTTP/1.";
    size_t k = have < 7 ? have : 7;
    if (memcmp(p, prefix, k) != 0)
        return -1;
    if (!eol)
        return len >= STATUS_LINE_MAX ? -1 : 0;
    if (have < 12 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return -1;
    int s = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        s = s * 10 + (p[i] - '0');
    }
    if (s < 100 || (have > 12 && p[12] != ' ' && p[12] != '\r'))
        return -1;
    return s;
}

static void on_readable(struct target *t)
{
    for (;;) {
        char buf[4096];
        ssize_t n;
        if (t->ssl) {
            int rc = SSL_read(t->ssl, buf, sizeof(buf));
            if (rc <= 0) {
                tls_failed(t, rc);
                return;
            }
            n = rc;
        } else {
            n = recv(t->fd, buf, sizeof(buf), 0);
            if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
                wait_for(t, EV_READ);
                return;
            }
            if (n <= 0) {
                probe_done(t, false, n == 0 ? SY_HR_CLOSED : SY_HR_CONNECT, 0);
                return;
            }
        }
        if (t->ng) {
            if (nghttp2_session_mem_recv(t->ng, (const uint8_t *)buf, (size_t)n) < 0) {
                probe_done(t, false, SY_HR_GARBAGE, 0);
                return;
            }
            if (t->status > 0) {
                probe_status(t, t->status);
                return;
            }
            if (t->status < 0) {
                probe_done(t, false, SY_HR_GARBAGE, 0);
                return;
            }
            if (t->stream_closed) {
                probe_done(t, false, SY_HR_CLOSED, 0);
                return;
            }
            if (nghttp2_session_send(t->ng) != 0 || !flush_out(t))
                return;
            continue;
        }
        size_t room = sizeof(t->in) - t->in_len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(t->in + t->in_len, buf, take);
        t->in_len += take;
        int s = h1_status(t->in, t->in_len);
        if (s > 0) {
            probe_status(t, s);
            return;
        }
        if (s < 0) {
            probe_done(t, false, SY_HR_GARBAGE, 0);
            return;
        }
    }
}

static void handshake(struct target *t)
{
    int rc = SSL_do_handshake(t->ssl);
    if (rc != 1) {
        tls_failed(t, rc);
        return;
    }
    t->handshaking = false;
    if (t->cl->protocol == SY_PROTO_H2) {
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
        if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
            probe_done(t, false, SY_HR_TLS, 0);
            return;
        }
    }
    send_request(t);
}

static bool tls_begin(struct target *t)
{
    t->ssl = SSL_new(t->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, t->fd) != 1)
        return false;
    const struct sy_cluster_tls *tls = &t->cl->tls;
    char host[256];
    struct sy_slice h = upstream_endpoint_host(t->ep->address);
    snprintf(host, sizeof(host), "%.*s", (int)h.len, h.p);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    const char *name = tls->sni ? tls->sni : is_ip ? NULL : host;
    if (name) {
        SSL_set_tlsext_host_name(t->ssl, name);
        if (tls->verify)
            SSL_set1_host(t->ssl, name);
    } else if (tls->verify) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    }
    SSL_set_mode(t->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_connect_state(t->ssl);
    t->handshaking = true;
    return true;
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct target *t = arg;
    if (t->handshaking) {
        handshake(t);
        return;
    }
    if (t->connecting) {
        /* The connect's outcome. */
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err == EINPROGRESS)
            return;
        if (err) {
            probe_done(t, false, err == ECONNREFUSED ? SY_HR_REFUSED : SY_HR_CONNECT, 0);
            return;
        }
        t->connecting = false;
        if (t->cl->tls.on) {
            if (!t->ctx || !tls_begin(t)) {
                probe_done(t, false, SY_HR_TLS, 0);
                return;
            }
            handshake(t);
            return;
        }
        send_request(t);
        return;
    }
    if (evbuffer_get_length(t->out) > 0) {
        if (flush_out(t))
            wait_for(t, EV_READ);
        return;
    }
    on_readable(t);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    probe_done(arg, false, SY_HR_TIMEOUT, 0);
}

static void probe_cb(evutil_socket_t unused, short what, void *arg)
{
    struct target *t = arg;
    const struct sy_endpoint_spec *ep = t->ep;
    struct timeval tv = ms_tv(t->cl->health.timeout_ms);
    evtimer_add(t->deadline, &tv);
    t->fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd == -1) {
        probe_done(t, false, SY_HR_CONNECT, 0);
        return;
    }
    int one = 1;
    setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(t->fd, (const struct sockaddr *)&ep->addr, ep->addrlen) == -1 &&
        errno != EINPROGRESS) {
        probe_done(t, false, errno == ECONNREFUSED ? SY_HR_REFUSED : SY_HR_CONNECT, 0);
        return;
    }
    t->connecting = true;
    wait_for(t, EV_WRITE);
}

/* ---- ejections that end by time ------------------------------------------------------------ */

/* Once a second: an ejection whose time ran out is logged and cleared (the workers already
 * take the endpoint back by the time alone). */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_health_checker *hc = arg;
    if (!hc->cfg)
        return;
    uint64_t now = sy_now_ms();
    for (size_t c = 0; c < hc->cfg->n_clusters; c++) {
        const struct sy_cluster_spec *cl = &hc->cfg->clusters[c];
        for (size_t e = 0; e < cl->n_endpoints; e++) {
            struct sy_ep_health *h = cl->endpoints[e].hs;
            if (!h)
                continue;
            uint64_t until = atomic_load_explicit(&h->eject_until_ms, memory_order_relaxed);
            if (!until || now < until)
                continue;
            if (!atomic_compare_exchange_strong_explicit(
                    &h->eject_until_ms, &until, 0, memory_order_relaxed, memory_order_relaxed))
                continue;
            sy_ep_set_reason(h, SY_HR_EJECT_END, 0);
            log_change(h, SY_LOG_INFO, "cluster %s endpoint %s is back: its ejection ended",
                       cl->name, cl->endpoints[e].address);
        }
    }
}

/* ---- the checker --------------------------------------------------------------------------- */

struct sy_health_checker *sy_health_checker_new(struct event_base *base)
{
    struct sy_health_checker *hc = sy_xcalloc(1, sizeof(*hc));
    hc->base = base;
    hc->rnd = sy_now_us() ^ ((uint64_t)getpid() << 32);
    hc->tick = event_new(base, -1, EV_PERSIST, tick_cb, hc);
    if (hc->tick) {
        struct timeval tv = {1, 0};
        evtimer_add(hc->tick, &tv);
    }
    return hc;
}

static void targets_free(struct sy_health_checker *hc)
{
    for (size_t i = 0; i < hc->n_targets; i++) {
        struct target *t = &hc->targets[i];
        probe_close(t);
        /* A target that could not be set up has some of these NULL. */
        if (t->timer)
            event_free(t->timer);
        if (t->deadline)
            event_free(t->deadline);
        if (t->out)
            evbuffer_free(t->out);
    }
    free(hc->targets);
    hc->targets = NULL;
    hc->n_targets = 0;
    if (hc->cfg) {
        for (size_t c = 0; c < hc->cfg->n_clusters; c++)
            if (hc->ctxs[c])
                SSL_CTX_free(hc->ctxs[c]);
        free(hc->ctxs);
        hc->ctxs = NULL;
        sy_config_free(hc->cfg);
        hc->cfg = NULL;
    }
}

void sy_health_checker_apply(struct sy_health_checker *hc, struct sy_config *cfg)
{
    if (cfg == hc->cfg)
        return; /* an operator's change: the same file, the same probes */
    targets_free(hc);
    hc->cfg = sy_config_acquire(cfg);
    hc->ctxs = sy_xcalloc(cfg->n_clusters ? cfg->n_clusters : 1, sizeof(*hc->ctxs));
    size_t n = 0;
    for (size_t c = 0; c < cfg->n_clusters; c++)
        if (cfg->clusters[c].health.on)
            n += cfg->clusters[c].n_endpoints;
    hc->targets = sy_xcalloc(n ? n : 1, sizeof(*hc->targets));
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        const struct sy_cluster_spec *cl = &cfg->clusters[c];
        if (!cl->health.on)
            continue;
        if (cl->tls.on) {
            const char *why = NULL;
            hc->ctxs[c] = tls_client_ctx_new(&cl->tls, cl->protocol == SY_PROTO_H2, &why);
            if (!hc->ctxs[c])
                sy_log(SY_LOG_ERROR, "health",
                       "cluster %s: no TLS context for its health checks (%s): its probes fail",
                       cl->name, why ? why : "unknown error");
        }
        for (size_t e = 0; e < cl->n_endpoints; e++) {
            struct target *t = &hc->targets[hc->n_targets++];
            t->hc = hc;
            t->cl = cl;
            t->ep = &cl->endpoints[e];
            t->hs = cl->endpoints[e].hs;
            t->ctx = hc->ctxs[c];
            t->fd = -1;
            t->out = evbuffer_new();
            t->timer = evtimer_new(hc->base, probe_cb, t);
            t->deadline = evtimer_new(hc->base, deadline_cb, t);
            if (!t->out || !t->timer || !t->deadline || !t->hs) {
                sy_log(SY_LOG_ERROR, "health", "cluster %s endpoint %s: cannot set up its probe",
                       cl->name, t->ep->address);
                continue;
            }
            /* The first probe soon, at a random point of the first interval (bounded to 1 s),
             * so that a restart learns the state quickly and endpoints do not probe in step. */
            unsigned first = cl->health.interval_ms < 1000 ? cl->health.interval_ms : 1000;
            struct timeval tv = ms_tv((unsigned)(next_rnd(hc) % (first + 1)));
            evtimer_add(t->timer, &tv);
        }
    }
}

void sy_health_checker_free(struct sy_health_checker *hc)
{
    if (!hc)
        return;
    targets_free(hc);
    if (hc->tick)
        event_free(hc->tick);
    free(hc);
}
