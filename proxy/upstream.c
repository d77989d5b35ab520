/* SPDX-License-Identifier: MIT */
/* Upstream connections and their per-worker pools. A pool is keyed by endpoint address,
 * protocol and TLS settings, so it outlives routing snapshots: a reload that keeps an endpoint
 * keeps its warm connections. Idle HTTP/1.1 connections sit in a LIFO list (the warmest is
 * reused first) watched for the server closing them, and are closed after upstream_idle;
 * HTTP/2 connections are h2_client.c's. With TLS, each pool keeps the last session the
 * server gave it, so a new connection resumes instead of a full handshake. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "switchyard/proxy_proto.h"

#include "proxy_internal.h"

struct sy_slice upstream_endpoint_host(const char *address)
{
    const char *p = address, *end;
    if (*p == '[') {
        p++;
        end = strchr(p, ']');
    } else {
        end = strrchr(p, ':');
    }
    if (!end)
        end = p + strlen(p);
    return sy_slice_of(p, (size_t)(end - p));
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Whether pool `p` speaks to `ep` the way `cl` says: looked up for every request, so it
 * compares in place and allocates nothing. */
static bool pool_matches(const struct pool *p, const struct sy_endpoint_spec *ep,
                         const struct sy_cluster_spec *cl)
{
    if (p->addrlen != ep->addrlen || memcmp(&p->addr, &ep->addr, ep->addrlen) != 0 ||
        p->proto != cl->protocol || p->tls_on != cl->tls.on)
        return false;
    if (!p->tls_on)
        return true;
    const struct sy_cluster_tls *t = &cl->tls;
    if (p->tls_verify != t->verify || !same_str(p->tls_ca, t->ca) ||
        !same_str(p->tls_cert, t->cert) || !same_str(p->tls_key, t->key))
        return false;
    if (t->sni)
        return same_str(p->tls_name, t->sni);
    struct sy_slice host = upstream_endpoint_host(ep->address);
    const char *name = p->tls_name ? p->tls_name : p->tls_ip;
    return name && strlen(name) == host.len && memcmp(name, host.p, host.len) == 0;
}

struct pool *upstream_pool(struct sy_worker *w, const struct sy_endpoint_spec *ep,
                           const struct sy_cluster_spec *cl)
{
    for (struct pool *p = w->pools; p; p = p->next) {
        if (pool_matches(p, ep, cl)) {
            p->retired = false;
            return p;
        }
    }
    struct pool *p = sy_xcalloc(1, sizeof(*p));
    memcpy(&p->addr, &ep->addr, ep->addrlen);
    p->addrlen = ep->addrlen;
    p->proto = cl->protocol;
    p->tls_on = cl->tls.on;
    if (p->tls_on) {
        const struct sy_cluster_tls *t = &cl->tls;
        p->tls_verify = t->verify;
        p->tls_ca = t->ca ? sy_xstrdup(t->ca) : NULL;
        p->tls_cert = t->cert ? sy_xstrdup(t->cert) : NULL;
        p->tls_key = t->key ? sy_xstrdup(t->key) : NULL;
        struct sy_slice host = upstream_endpoint_host(ep->address);
        char *h = sy_xstrndup(host.p, host.len);
        unsigned char buf[sizeof(struct in6_addr)];
        bool is_ip = inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
        if (t->sni) {
            p->tls_name = sy_xstrdup(t->sni);
            free(h);
        } else if (is_ip) {
            p->tls_ip = h;
        } else {
            p->tls_name = h;
        }
    }
    p->stat = worker_ep_stat(w, cl->name, ep->address);
    p->next = w->pools;
    w->pools = p;
    return p;
}

int upstream_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct pool *p = SSL_get_app_data(ssl);
    if (!p)
        return 0;
    /* A copy: OpenSSL marks the connection's own session not resumable when the connection
     * is freed without a close_notify (what a pooled connection's end looks like), and that
     * would spoil it for the next connection. */
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy)
        return 0;
    if (p->session)
        SSL_SESSION_free(p->session);
    p->session = copy;
    return 0; /* the library keeps its own reference */
}

/* Whether plan `t` is for the pool's TLS settings. */
static bool plan_matches(const struct tls_client_plan *t, const struct pool *p)
{
    return t->verify == p->tls_verify && t->h2 == (p->proto == SY_PROTO_H2) &&
           same_str(t->ca, p->tls_ca) && same_str(t->cert, p->tls_cert) &&
           same_str(t->key, p->tls_key);
}

/* Points the pool at the worker's context for its settings, if it has one. A different
 * context (new CA bundle or client certificate) also means a session that must not resume. */
static void pool_take_tls(struct sy_worker *w, struct pool *p)
{
    for (size_t i = 0; i < w->n_tls_clients; i++) {
        const struct tls_client_plan *t = &w->tls_clients[i];
        if (!plan_matches(t, p))
            continue;
        if (t->ctx == p->tls)
            return;
        if (p->tls)
            SSL_CTX_free(p->tls);
        SSL_CTX_up_ref(t->ctx);
        p->tls = t->ctx;
        if (p->session) {
            SSL_SESSION_free(p->session);
            p->session = NULL;
        }
        return;
    }
}

void tls_client_plans_free(struct tls_client_plan *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].ca);
        free(v[i].cert);
        free(v[i].key);
        SSL_CTX_free(v[i].ctx);
    }
    free(v);
}

void upstream_set_tls(struct sy_worker *w, struct tls_client_plan *v, size_t n)
{
    tls_client_plans_free(w->tls_clients, w->n_tls_clients);
    w->tls_clients = v;
    w->n_tls_clients = n;
    /* A pool whose settings left the table keeps the context it has, for what still runs. */
    for (struct pool *p = w->pools; p; p = p->next)
        if (p->tls_on)
            pool_take_tls(w, p);
}

const char upstream_limit_reason[] = "limits.max_upstream_connections reached in this worker";

/* /metrics reads the pool's counts from its endpoint's counters. */
static void pool_gauge(struct pool *p)
{
    if (!p->stat)
        return;
    atomic_store_explicit(&p->stat->open, p->n_conns, memory_order_relaxed);
    atomic_store_explicit(&p->stat->idle, p->n_idle, memory_order_relaxed);
}

/* What kept a connection to a cluster from being made, from its socket error. */
enum sy_connect_error upstream_connect_error_of(const struct pool *p, int err)
{
    switch (err) {
    case ECONNREFUSED:
        return SY_CONNERR_REFUSED;
    case ETIMEDOUT:
        return SY_CONNERR_TIMEOUT;
    case ECONNRESET:
    case EPIPE:
        return SY_CONNERR_RESET;
    case EHOSTUNREACH:
    case ENETUNREACH:
        return SY_CONNERR_UNREACHABLE;
    default:
        return p && p->tls_on ? SY_CONNERR_TLS : SY_CONNERR_OTHER;
    }
}

void upstream_count_connect_error(struct pool *p, enum sy_connect_error reason)
{
    if (p->stat)
        atomic_fetch_add_explicit(
            &p->stat->errors[reason < SY_CONNERR_N ? reason : SY_CONNERR_OTHER], 1,
            memory_order_relaxed);
}

static void unlink_idle(struct upstream *up);
static void upstream_free(struct upstream *up);

size_t upstream_shed_idle(struct sy_worker *w, size_t n)
{
    size_t shed = 0;
    for (struct pool *p = w->pools; p && shed < n; p = p->next) {
        while (p->idle && shed < n) {
            struct upstream *oldest = p->idle;
            while (oldest->next)
                oldest = oldest->next;
            unlink_idle(oldest);
            upstream_free(oldest);
            shed++;
        }
    }
    return shed;
}

/* Whether the worker may open one more connection to a cluster. At the limit, the oldest idle
 * keep-alive connection of some pool gives way: a request needs it more. */
static bool worker_has_room(struct sy_worker *w, const struct sy_config *cfg)
{
    if (w->n_upstream < cfg->limits.max_upstream_connections)
        return true;
    return upstream_shed_idle(w, 1) == 1 && w->n_upstream < cfg->limits.max_upstream_connections;
}

/* A client SSL for the pool's settings (its name or address, its last session), or NULL with
 * *why. */
static SSL *pool_ssl(struct sy_worker *w, struct pool *p, const struct sy_cluster_spec *cl,
                     const char **why)
{
    if (!p->tls)
        pool_take_tls(w, p);
    if (!p->tls) {
        /* The control thread builds every context; a pool made for settings no snapshot
         * of this worker has (an old exchange's, after a reload changed them) has none. */
        *why = "no TLS context for the cluster's settings (changed by a reload)";
        return NULL;
    }
    SSL *ssl = SSL_new(p->tls);
    if (!ssl) {
        *why = "cannot create a TLS connection";
        return NULL;
    }
    SSL_set_app_data(ssl, p);
    if (p->tls_name) {
        SSL_set_tlsext_host_name(ssl, p->tls_name);
        if (cl->tls.verify)
            SSL_set1_host(ssl, p->tls_name);
    } else if (p->tls_ip && cl->tls.verify) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), p->tls_ip);
    }
    if (p->session)
        SSL_set_session(ssl, p->session);
    return ssl;
}

struct sy_sock *upstream_connect(struct sy_worker *w, struct pool *p,
                                 const struct sy_cluster_spec *cl, const char **why)
{
    const struct sy_config *cfg = worker_config(w);
    if (!worker_has_room(w, cfg)) {
        *why = upstream_limit_reason;
        return NULL;
    }
    SSL *ssl = NULL;
    if (p->tls_on && !(ssl = pool_ssl(w, p, cl, why)))
        return NULL;
    struct sy_sock *sk = NULL;
    int err = sy_sock_connect(w->socks, (const struct sockaddr *)&p->addr, p->addrlen, ssl, &sk);
    if (err) {
        /* Immediate failure (e.g. no route): reported like a refused connection. */
        *why = strerror(err);
        return NULL;
    }
    size_t high = cfg->limits.buffer_bytes;
    if (high < cfg->limits.max_header_bytes + 1)
        high = cfg->limits.max_header_bytes + 1;
    sy_sock_set_read_high(sk, high);
    sy_sock_set_read_max(sk, SY_SOCK_READ_MAX, 0);
    sy_sock_set_write_max(sk, MAX_SINGLE_WRITE);
    /* A request goes to the cluster as soon as the callback that made it returns, not after
     * the rest of the pass: the cluster starts on it while this thread reads on. (An HTTP/2
     * connection, which many clients' callbacks share, turns this off to write once.) */
    sy_sock_set_eager(sk, true);
    /* The write timeout bounds the connect and the TLS handshake. */
    struct timeval tv = ms_tv(cfg->timeouts.upstream_connect_ms);
    sy_sock_set_timeouts(sk, NULL, &tv);
    return sk;
}

const char *upstream_error(struct sy_sock *sk, int err)
{
    static _Thread_local char buf[256];
    SSL *ssl = sy_sock_ssl(sk);
    if (ssl) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) {
            snprintf(buf, sizeof(buf), "TLS certificate verification failed: %s",
                     X509_verify_cert_error_string(v));
            return buf;
        }
        unsigned long e = sy_sock_tls_error(sk);
        if (e) {
            char detail[200];
            ERR_error_string_n(e, detail, sizeof(detail));
            snprintf(buf, sizeof(buf), "TLS: %s", detail);
            return buf;
        }
    }
    if (err == 0)
        return "connection closed";
    return strerror(err);
}

bool upstream_alpn_is(struct sy_sock *sk, const char *proto)
{
    return sy_sock_alpn_is(sk, proto);
}

static void unlink_idle(struct upstream *up)
{
    struct pool *p = up->pool;
    for (struct upstream **pp = &p->idle; *pp; pp = &(*pp)->next) {
        if (*pp == up) {
            *pp = up->next;
            p->n_idle--;
            pool_gauge(p);
            break;
        }
    }
    up->next = NULL;
}

static void upstream_free(struct upstream *up)
{
    up->pool->n_conns--;
    pool_gauge(up->pool);
    up->w->n_upstream--;
    sy_sock_free(up->sock);
    queue_kick(up->pool);
    free(up);
}

static void pool_free(struct pool *p)
{
    queue_pool_dispose(p);
    if (p->tls)
        SSL_CTX_free(p->tls);
    if (p->session)
        SSL_SESSION_free(p->session);
    free(p->tls_ca);
    free(p->tls_cert);
    free(p->tls_key);
    free(p->tls_name);
    free(p->tls_ip);
    free(p);
}

static void up_read_cb(struct sy_sock *sk, void *arg)
{
    struct upstream *up = arg;
    if (up->ex)
        h1up_readable(up->ex);
}

static void up_write_cb(struct sy_sock *sk, void *arg)
{
    struct upstream *up = arg;
    if (up->ex)
        h1up_drained(up->ex);
}

static void up_event_cb(struct sy_sock *sk, short what, void *arg)
{
    struct upstream *up = arg;
    if (what & SY_SOCK_CONNECTED) {
        up->connected = true;
        int one = 1;
        setsockopt(sy_sock_fd(sk), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (up->ex)
            h1up_connected(up->ex);
        return;
    }
    if (up->ex) {
        h1up_event(up->ex, what);
        return;
    }
    /* An idle connection closed by the server, or idle too long. */
    unlink_idle(up);
    upstream_free(up);
}

/* Anything an idle connection receives is a protocol error or a close: drop it. */
static void idle_read_cb(struct sy_sock *sk, void *arg)
{
    struct upstream *up = arg;
    unlink_idle(up);
    upstream_free(up);
}

#define BUSY_WINDOW_MS 10000

/* Notes how many HTTP/1.1 connections of the pool are in use now, for keepalive: auto. */
static void pool_note_busy(struct pool *p)
{
    uint64_t win = sy_clock_ms() / BUSY_WINDOW_MS;
    if (win != p->busy_window) {
        p->busy_prev = win == p->busy_window + 1 ? p->busy_peak : 0;
        p->busy_peak = 0;
        p->busy_window = win;
    }
    size_t busy = p->n_conns - p->n_idle;
    if (busy > p->busy_peak)
        p->busy_peak = busy;
}

/* How many idle connections the pool keeps: the fixed limit, or with `auto` as many as were in
 * use at once lately (a burst's connections then serve the next burst), at least the floor. */
static size_t pool_keep(struct pool *p, size_t limit)
{
    if (limit != SY_KEEPALIVE_AUTO)
        return limit;
    pool_note_busy(p);
    size_t keep = p->busy_peak > p->busy_prev ? p->busy_peak : p->busy_prev;
    return keep > SY_KEEPALIVE_FLOOR ? keep : SY_KEEPALIVE_FLOOR;
}

struct upstream *upstream_get(struct sy_worker *w, const struct sy_endpoint_spec *ep,
                              const struct sy_cluster_spec *cl, struct exchange *ex, bool fresh,
                              const char **why)
{
    struct pool *p = upstream_pool(w, ep, cl);
    /* A connection opened with one client's PROXY header is that client's only. */
    struct upstream *up = fresh || cl->send_proxy_v2 ? NULL : p->idle;
    if (up) {
        unlink_idle(up);
        up->ex = ex;
        up->reused = true;
        sy_sock_setcb(up->sock, up_read_cb, up_write_cb, up_event_cb, up);
        sy_sock_set_timeouts(up->sock, NULL, NULL);
        sy_sock_enable(up->sock, EV_READ | EV_WRITE);
        pool_note_busy(p);
        return up;
    }
    struct sy_sock *sk = upstream_connect(w, p, cl, why);
    if (!sk)
        return NULL;
    up = sy_xcalloc(1, sizeof(*up));
    up->w = w;
    up->pool = p;
    up->ex = ex;
    up->sock = sk;
    up->tls = p->tls_on;
    if (cl->send_proxy_v2 && ex && ex->down) {
        /* Queued before the request: the first bytes the cluster reads once connected. */
        unsigned char hdr[SY_PP_V2_OUT_MAX];
        size_t n = sy_pp_v2_write(hdr, (const struct sockaddr *)&ex->down->conn->addr,
                                  (const struct sockaddr *)&p->addr);
        evbuffer_add(sy_sock_output(sk), hdr, n);
        up->one_client = true;
    }
    p->n_conns++;
    pool_gauge(p);
    w->n_upstream++;
    pool_note_busy(p);
    sy_sock_setcb(up->sock, up_read_cb, up_write_cb, up_event_cb, up);
    sy_sock_enable(up->sock, EV_READ | EV_WRITE);
    return up;
}

void upstream_release(struct upstream *up, bool reusable)
{
    struct sy_worker *w = up->w;
    const struct sy_config *cfg = worker_config(w);
    up->ex = NULL;
    struct pool *p = up->pool;
    /* A connection that a waiting request will take is kept whatever upstream_keepalive says. */
    bool wanted = p->q_head != NULL;
    if (!reusable || up->one_client || w->draining || p->retired ||
        (p->n_idle >= pool_keep(p, cfg->limits.upstream_keepalive) && !wanted) ||
        evbuffer_get_length(sy_sock_input(up->sock)) > 0 ||
        evbuffer_get_length(sy_sock_output(up->sock)) > 0) {
        upstream_free(up);
        return;
    }
    up->reused = false;
    up->read_paused = false;
    unsigned ms = cfg->timeouts.upstream_idle_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    sy_sock_setcb(up->sock, idle_read_cb, NULL, up_event_cb, up);
    sy_sock_set_timeouts(up->sock, &tv, NULL);
    sy_sock_enable(up->sock, EV_READ);
    up->next = p->idle;
    p->idle = up;
    p->n_idle++;
    pool_gauge(p);
    queue_kick(p); /* a request waiting for a connection takes it */
}

static bool pool_in_use(const struct sy_config *cfg, const struct pool *p)
{
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        const struct sy_cluster_spec *cl = &cfg->clusters[c];
        if (cl->protocol != p->proto || cl->tls.on != p->tls_on)
            continue;
        for (size_t e = 0; e < cl->n_endpoints; e++) {
            const struct sy_endpoint_spec *ep = &cl->endpoints[e];
            if (ep->addrlen == p->addrlen && memcmp(&ep->addr, &p->addr, p->addrlen) == 0)
                return true;
        }
    }
    return false;
}

static void pool_close_idle(struct pool *p)
{
    while (p->idle) {
        struct upstream *up = p->idle;
        p->idle = up->next;
        p->n_idle--;
        upstream_free(up); /* updates the gauge */
    }
}

void upstream_forget_endpoints(struct sy_worker *w)
{
    const struct sy_config *cfg = worker_config(w);
    for (struct pool **pp = &w->pools; *pp;) {
        struct pool *p = *pp;
        if (pool_in_use(cfg, p)) {
            pp = &p->next;
            continue;
        }
        p->retired = true;
        pool_close_idle(p);
        h2up_close_pool(p, false);
        /* Nothing refers to an empty retired pool: drop it (pod IPs churn). */
        if (!p->idle && !p->h2 && p->n_conns == 0 && !p->q_head) {
            *pp = p->next;
            pool_free(p);
            continue;
        }
        pp = &p->next;
    }
}

void upstream_free_pools(struct sy_worker *w)
{
    while (w->pools) {
        struct pool *p = w->pools;
        w->pools = p->next;
        pool_close_idle(p);
        h2up_close_pool(p, true);
        pool_free(p);
    }
    tls_client_plans_free(w->tls_clients, w->n_tls_clients);
    w->tls_clients = NULL;
    w->n_tls_clients = 0;
}
