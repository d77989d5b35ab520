/* SPDX-License-Identifier: MIT */
/* The etcd v3 gateway client (switchyard/etcd.h): HTTP/1.1 of our own on bufferevents over a
 * connect of our own, on the control thread. A request (a unary call or a watch) walks the
 * endpoints round robin from the last one that answered, one attempt at a time, each attempt
 * with its own timeout so that a hung member cannot eat the whole deadline; after a full round
 * of failures it pauses (50 ms doubling to 1 s) so that a dead cluster is not spun against. The
 * key idea for lifetimes: user callbacks run only from the request's own zero-delay event, never
 * from a bufferevent callback, and a request leaves the client's list before its last callback,
 * so that a callback may cancel anything or free the whole client; connections are closed onto a
 * list that another zero-delay event frees. */
#define _GNU_SOURCE /* memmem */
#include "switchyard/etcd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "switchyard/base.h"
#include "switchyard/json.h"

#define ATTEMPT_MIN_MS                                                                             \
    500                 /* an attempt's own timeout is the deadline over the endpoints, >= this */
#define PAUSE_MIN_MS 50 /* after a round of failures */
#define PAUSE_MAX_MS 1000
#define IDLE_MS      30000 /* a keep-alive connection unused this long is closed */
#define MAX_IDLE     8

struct endpoint {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *host; /* the Host header */
    char *name; /* the TLS server name: host without its port */
    bool tls, name_is_ip;
    char label[64]; /* address:port, for messages */
};

struct req;
struct conn;

struct sy_etcd {
    struct event_base *base;
    struct endpoint *eps;
    size_t n_eps;
    SSL_CTX *ssl;
    bool verify_host;
    uint64_t timeout_ms;
    size_t current;
    struct req *reqs;  /* live calls and watches, their last callback not started */
    struct conn *idle; /* keep-alive connections, the most recently used first */
    size_t n_idle;
    struct conn *dead; /* closed, freed by reap_ev */
    struct event *reap_ev;
};

enum resp_state { RS_HEAD = 0, RS_LENGTH, RS_CHUNKED, RS_UNTIL_CLOSE, RS_DONE };

struct conn {
    struct sy_etcd *e;
    size_t ep;
    int fd;                   /* until the bufferevent owns it */
    struct event *connect_ev; /* the socket's connect completing */
    struct bufferevent *bev;
    struct req *req; /* the request it carries; NULL while idle */
    struct conn *next;
    struct event *idle_ev;
    bool reused, got_bytes;
    enum resp_state rs;
    struct sy_etcd_head head;
    uint64_t left; /* RS_LENGTH: body bytes still to come */
    struct sy_etcd_chunks chunks;
    struct evbuffer *body; /* the body (a call, a refused watch) or the partial line (a watch) */
};

enum req_kind { REQ_CALL = 0, REQ_WATCH };

struct req {
    struct sy_etcd *e;
    enum req_kind kind;
    struct req *prev, *next;
    char *path, *body;
    size_t len;
    struct conn *conn;
    size_t ep;
    size_t failed; /* attempts failed since the last pause */
    unsigned pauses;
    bool retry_fresh; /* a reused connection was found closed: try the endpoint again */
    bool open;        /* a watch answered 200 */
    bool delivering;  /* its last callback runs: a cancel only marks it */
    bool *gone;       /* set when it is freed during a message callback */
    struct event *deadline_ev, *attempt_ev, *deliver_ev;
    char last[200]; /* the last attempt's failure */
    void *arg;
    /* a call's result */
    sy_etcd_cb cb;
    int rc;
    struct sy_jv *res;
    char why[320];
    /* a watch's messages (each a parsed line; `result` is delivered) and its end */
    sy_etcd_watch_msg_cb msg;
    sy_etcd_watch_end_cb end;
    struct sy_jv **queue;
    size_t q_head, q_len, q_cap;
    bool ended;
};

struct sy_etcd_call {
    struct req r;
};

struct sy_etcd_watch {
    struct req r;
};

static void attempt_cb(evutil_socket_t fd, short what, void *arg);
static void deadline_cb(evutil_socket_t fd, short what, void *arg);
static void deliver_cb(evutil_socket_t fd, short what, void *arg);
static void attempt_failed(struct req *r, const char *why);

/* -- connections ----------------------------------------------------------------------------- */

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_etcd *e = arg;
    while (e->dead) {
        struct conn *c = e->dead;
        e->dead = c->next;
        if (c->bev)
            bufferevent_free(c->bev);
        else if (c->fd != -1)
            close(c->fd);
        if (c->connect_ev)
            event_free(c->connect_ev);
        event_free(c->idle_ev);
        evbuffer_free(c->body);
        free(c);
    }
}

/* Closes `c` (out of every list but the dead one, which reap_cb empties). */
static void conn_close(struct conn *c)
{
    struct sy_etcd *e = c->e;
    if (c->req)
        c->req->conn = NULL;
    c->req = NULL;
    if (c->bev) {
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    }
    if (c->connect_ev)
        event_del(c->connect_ev);
    event_del(c->idle_ev);
    c->next = e->dead;
    e->dead = c;
    event_active(e->reap_ev, EV_TIMEOUT, 1);
}

static void idle_unlink(struct conn *c)
{
    for (struct conn **pp = &c->e->idle; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            c->e->n_idle--;
            return;
        }
    }
}

static void idle_expired_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    idle_unlink(c);
    conn_close(c);
}

/* A keep-alive connection whose answer is read whole: kept for the next call on its endpoint. */
static void pool_put(struct conn *c)
{
    struct sy_etcd *e = c->e;
    if (c->req)
        c->req->conn = NULL;
    c->req = NULL;
    c->rs = RS_HEAD;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    c->next = e->idle;
    e->idle = c;
    e->n_idle++;
    if (e->n_idle > MAX_IDLE) {
        struct conn **pp = &e->idle;
        while ((*pp)->next)
            pp = &(*pp)->next;
        struct conn *oldest = *pp;
        *pp = NULL;
        e->n_idle--;
        conn_close(oldest);
    }
    struct timeval tv = {IDLE_MS / 1000, (IDLE_MS % 1000) * 1000};
    event_add(c->idle_ev, &tv);
}

static struct conn *pool_take(struct sy_etcd *e, size_t ep)
{
    for (struct conn *c = e->idle; c; c = c->next) {
        if (c->ep == ep) {
            idle_unlink(c);
            event_del(c->idle_ev);
            c->reused = true;
            c->got_bytes = false;
            return c;
        }
    }
    return NULL;
}

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* The connect completed (or failed): the socket gets its bufferevent, TLS or not. */
static void connected_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct sy_etcd *e = c->e;
    const struct endpoint *ep = &e->eps[c->ep];
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        char why[160];
        snprintf(why, sizeof(why), "connect: %s", strerror(err));
        attempt_failed(c->req, why);
        return;
    }
    if (ep->tls) {
        SSL *ssl = SSL_new(e->ssl);
        if (!ssl) {
            attempt_failed(c->req, "SSL_new failed");
            return;
        }
        if (ep->name && !ep->name_is_ip)
            SSL_set_tlsext_host_name(ssl, ep->name); /* RFC 6066 §3: no IP literal */
        if (e->verify_host && ep->name) {
            if (ep->name_is_ip)
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ep->name);
            else
                SSL_set1_host(ssl, ep->name);
            /* A name check means nothing unless a failed verification stops the handshake. */
            SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        }
        c->bev = bufferevent_openssl_socket_new(e->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (c->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        else
            SSL_free(ssl);
    } else {
        c->bev =
            bufferevent_socket_new(e->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    }
    if (!c->bev) {
        attempt_failed(c->req, "bufferevent_socket_new failed");
        return;
    }
    c->fd = -1;
    bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    struct req *r = c->req;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        r->path, ep->host, r->len);
    evbuffer_add(out, r->body, r->len);
}

/* A new connection to endpoint `ep` for `r`; NULL with `why` filled when the socket fails. */
static struct conn *conn_open(struct sy_etcd *e, size_t ep, struct req *r, char *why, size_t cap)
{
    const struct endpoint *p = &e->eps[ep];
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(why, cap, "socket: %s", strerror(errno));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (r->kind == REQ_WATCH) {
        /* The stream has no deadline once open: keepalives find a member that vanished
         * without a FIN (a cut cable, a frozen host) in about a minute. */
        int idle = 30, intvl = 10, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
    if (connect(fd, (const struct sockaddr *)&p->addr, p->addrlen) == -1 && errno != EINPROGRESS) {
        snprintf(why, cap, "connect: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    struct conn *c = sy_xcalloc(1, sizeof(*c));
    c->e = e;
    c->ep = ep;
    c->fd = fd;
    c->body = evbuffer_new();
    c->idle_ev = evtimer_new(e->base, idle_expired_cb, c);
    c->connect_ev = event_new(e->base, fd, EV_WRITE, connected_cb, c);
    if (!c->body || !c->idle_ev || !c->connect_ev)
        sy_oom(sizeof(*c));
    event_add(c->connect_ev, NULL);
    return c;
}

/* -- requests -------------------------------------------------------------------------------- */

static uint64_t attempt_ms(const struct sy_etcd *e)
{
    if (e->n_eps == 1)
        return e->timeout_ms;
    uint64_t ms = e->timeout_ms / e->n_eps;
    return ms < ATTEMPT_MIN_MS ? ATTEMPT_MIN_MS : ms;
}

static void arm_ms(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(ev, &tv);
}

static void req_unlink(struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (r->e->reqs == r)
        r->e->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Frees `r`, which is out of the client's list or about to be (sy_etcd_free). */
static void req_free(struct req *r)
{
    if (r->gone)
        *r->gone = true;
    if (r->conn)
        conn_close(r->conn);
    event_free(r->deadline_ev);
    event_free(r->attempt_ev);
    event_free(r->deliver_ev);
    for (size_t i = r->q_head; i < r->q_len; i++)
        sy_jv_free(r->queue[i]);
    free(r->queue);
    sy_jv_free(r->res);
    free(r->path);
    free(r->body);
    free(r);
}

static struct req *req_new(struct sy_etcd *e, enum req_kind kind, const char *path,
                           const char *body, size_t len, void *arg)
{
    struct req *r = sy_xcalloc(1, sizeof(*r));
    r->e = e;
    r->kind = kind;
    r->path = sy_xstrdup(path);
    r->body = sy_xmalloc(len + 1);
    memcpy(r->body, body, len);
    r->body[len] = '\0';
    r->len = len;
    r->arg = arg;
    r->ep = e->current;
    r->deadline_ev = evtimer_new(e->base, deadline_cb, r);
    r->attempt_ev = evtimer_new(e->base, attempt_cb, r);
    r->deliver_ev = evtimer_new(e->base, deliver_cb, r);
    if (!r->deadline_ev || !r->attempt_ev || !r->deliver_ev)
        sy_oom(sizeof(*r));
    r->next = e->reqs;
    if (e->reqs)
        e->reqs->prev = r;
    e->reqs = r;
    arm_ms(r->deadline_ev, e->timeout_ms);
    event_active(r->attempt_ev, EV_TIMEOUT, 1); /* the first attempt, out of the caller */
    return r;
}

/* Stops trying: the connection goes (or was pooled), the timers stop, the callback is due. */
static void req_settle(struct req *r)
{
    if (r->conn)
        conn_close(r->conn);
    event_del(r->deadline_ev);
    event_del(r->attempt_ev);
    event_active(r->deliver_ev, EV_TIMEOUT, 1);
}

static void call_finish(struct req *r, int rc, struct sy_jv *res, const char *why)
{
    r->rc = rc;
    r->res = res;
    snprintf(r->why, sizeof(r->why), "%s", why);
    req_settle(r);
}

static void watch_end(struct req *r, const char *why)
{
    if (r->ended)
        return;
    r->ended = true;
    snprintf(r->why, sizeof(r->why), "%s", why);
    req_settle(r);
}

static void unreachable(struct req *r)
{
    char why[sizeof(r->why)];
    snprintf(why, sizeof(why), "etcd unreachable: no member answered within %llu ms (last: %s)",
             (unsigned long long)r->e->timeout_ms, r->last[0] ? r->last : "none tried");
    if (r->kind == REQ_CALL)
        call_finish(r, SY_ERR_AGAIN, NULL, why);
    else
        watch_end(r, why);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    unreachable(arg);
}

/* The attempt on r->ep failed (`why`): on to the next endpoint, after a pause at a round's end. */
static void attempt_failed(struct req *r, const char *why)
{
    struct sy_etcd *e = r->e;
    snprintf(r->last, sizeof(r->last), "%s: %s", e->eps[r->ep].label, why);
    sy_log(SY_LOG_DEBUG, "etcd", "%s %s: %s", r->kind == REQ_CALL ? "call" : "watch", r->path,
           r->last);
    if (r->conn)
        conn_close(r->conn);
    r->retry_fresh = false;
    r->ep = (r->ep + 1) % e->n_eps;
    if (++r->failed < e->n_eps) {
        event_del(r->attempt_ev);
        event_active(r->attempt_ev, EV_TIMEOUT, 1);
        return;
    }
    r->failed = 0;
    uint64_t ms = PAUSE_MIN_MS << (r->pauses < 5 ? r->pauses : 5);
    r->pauses++;
    arm_ms(r->attempt_ev, ms < PAUSE_MAX_MS ? ms : PAUSE_MAX_MS);
}

/* attempt_ev: the next attempt is due, or the current one timed out. */
static void attempt_cb(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    struct sy_etcd *e = r->e;
    if (r->conn) {
        char why[96];
        snprintf(why, sizeof(why), "no answer within %llu ms", (unsigned long long)attempt_ms(e));
        attempt_failed(r, why);
        return;
    }
    struct conn *c = NULL;
    if (r->kind == REQ_CALL && !r->retry_fresh)
        c = pool_take(e, r->ep);
    r->retry_fresh = false;
    if (c) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        evbuffer_add_printf(out,
                            "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n",
                            r->path, e->eps[r->ep].host, r->len);
        evbuffer_add(out, r->body, r->len);
    } else {
        char why[160];
        c = conn_open(e, r->ep, r, why, sizeof(why));
        if (!c) {
            attempt_failed(r, why);
            return;
        }
    }
    c->req = r;
    r->conn = c;
    c->rs = RS_HEAD;
    arm_ms(r->attempt_ev, attempt_ms(e));
}

/* The message of an error answer ({"error":..,"message":..} or a stream's {"error":{...}}). */
static const char *error_text(const struct sy_jv *v)
{
    const char *s = sy_jv_str(sy_jv_get(v, "message"));
    if (!s)
        s = sy_jv_str(sy_jv_get(v, "error"));
    if (!s)
        s = sy_jv_str(sy_jv_get(sy_jv_get(v, "error"), "message"));
    return s;
}

/* Parses a body or a line: surrounding CR, LF, spaces and tabs go (the reader takes spaces and
 * tabs only, and a line may end in CRLF). */
static int parse_json(const char *p, size_t len, struct sy_jv **out, const char **why)
{
    while (len > 0 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
        len--;
    }
    while (len > 0 &&
           (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r' || p[len - 1] == '\n'))
        len--;
    return sy_jv_parse(p, len, out, why);
}

/* An answer other than 200 (`status`, its body whole in `body`): a member that cannot serve
 * (5xx, no leader) makes the attempt fail; anything else ends the request. */
static void refused(struct req *r, int status, struct evbuffer *body)
{
    size_t len = evbuffer_get_length(body);
    const char *p = len ? (const char *)evbuffer_pullup(body, -1) : "";
    struct sy_jv *v = NULL;
    const char *jwhy = NULL;
    if (len == 0 || parse_json(p, len, &v, &jwhy) != 0)
        v = NULL;
    const char *msg = error_text(v);
    char why[sizeof(r->why)];
    snprintf(why, sizeof(why), "HTTP %d%s%.200s", status, msg ? ": " : "", msg ? msg : "");
    bool no_leader =
        (msg && strstr(msg, "no leader")) || (!v && len > 0 && memmem(p, len, "no leader", 9));
    if (status >= 500 || no_leader) {
        sy_jv_free(v);
        attempt_failed(r, why);
        return;
    }
    char full[sizeof(r->why)];
    snprintf(full, sizeof(full), "etcd refused the %s: %.256s",
             r->kind == REQ_CALL ? "call" : "watch", why);
    if (r->kind == REQ_CALL && sy_jv_type(v) == SY_JV_OBJ) {
        call_finish(r, SY_ERR_INVALID, v, full);
        return;
    }
    sy_jv_free(v);
    if (r->kind == REQ_CALL)
        call_finish(r, SY_ERR_INVALID, NULL, full);
    else
        watch_end(r, full);
}

/* A watch stream's complete lines, out of c->body, onto the queue. */
static bool watch_lines(struct conn *c, struct req *r)
{
    for (;;) {
        struct evbuffer_ptr eol = evbuffer_search(c->body, "\n", 1, NULL);
        if (eol.pos < 0) {
            if (evbuffer_get_length(c->body) > SY_ETCD_MAX_BODY) {
                watch_end(r, "etcd sent a watch line over 64 MiB");
                return false;
            }
            return true;
        }
        size_t len = (size_t)eol.pos + 1;
        const char *p = (const char *)evbuffer_pullup(c->body, (ssize_t)len);
        struct sy_jv *v = NULL;
        const char *why = NULL;
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++)
            blank = p[i] == '\r' || p[i] == '\n' || p[i] == ' ' || p[i] == '\t';
        if (!blank && parse_json(p, len, &v, &why) != 0) {
            char text[sizeof(r->why)];
            snprintf(text, sizeof(text), "etcd sent a watch line that is not JSON: %s", why);
            watch_end(r, text);
            return false;
        }
        evbuffer_drain(c->body, len);
        if (!v)
            continue;
        if (sy_jv_type(sy_jv_get(v, "result")) == SY_JV_OBJ) {
            sy_xgrow((void **)&r->queue, &r->q_cap, r->q_len + 1, sizeof(*r->queue));
            r->queue[r->q_len++] = v;
            event_active(r->deliver_ev, EV_TIMEOUT, 1);
            continue;
        }
        const char *msg = error_text(v);
        if (sy_jv_get(v, "error")) {
            char text[sizeof(r->why)];
            snprintf(text, sizeof(text), "etcd ended the watch: %s", msg ? msg : "error");
            sy_jv_free(v);
            watch_end(r, text);
            return false;
        }
        sy_jv_free(v); /* neither a result nor an error: not ours to understand */
    }
}

/* The response on `c` is read whole. */
static void complete(struct conn *c)
{
    struct req *r = c->req;
    c->rs = RS_DONE;
    bool keep = !c->head.close && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0;
    if (r->kind == REQ_WATCH && r->open) {
        watch_end(r, "etcd ended the watch stream");
        return;
    }
    if (c->head.status != 200) {
        /* The body is read whole: the connection may serve another call, this one's included
         * when it fails over. */
        struct evbuffer *body = c->body;
        c->body = evbuffer_new();
        if (!c->body)
            sy_oom(sizeof(*c));
        if (keep)
            pool_put(c);
        refused(r, c->head.status, body);
        evbuffer_free(body);
        return;
    }
    size_t len = evbuffer_get_length(c->body);
    const char *p = (const char *)evbuffer_pullup(c->body, -1);
    struct sy_jv *v = NULL;
    const char *why = NULL;
    int rc = parse_json(p ? p : "", len, &v, &why);
    r->e->current = c->ep;
    if (keep)
        pool_put(c);
    if (rc != 0) {
        char text[sizeof(r->why)];
        snprintf(text, sizeof(text), "etcd answered with something that is not JSON: %s", why);
        call_finish(r, SY_ERR_INVALID, NULL, text);
    } else if (sy_jv_type(v) != SY_JV_OBJ) {
        sy_jv_free(v);
        call_finish(r, SY_ERR_INVALID, NULL, "etcd answered with JSON that is not an object");
    } else {
        call_finish(r, 0, v, "ok");
    }
}

/* Body bytes for `r`: a call's or a refused watch's are kept whole (to SY_ETCD_MAX_BODY), an open
 * watch's are split into lines. Returns false when the request ended. */
static bool body_bytes(struct conn *c, struct req *r)
{
    if (r->kind == REQ_WATCH && r->open)
        return watch_lines(c, r);
    if (evbuffer_get_length(c->body) > SY_ETCD_MAX_BODY) {
        if (r->kind == REQ_CALL)
            call_finish(r, SY_ERR_INVALID, NULL, "etcd's answer is over 64 MiB");
        else
            watch_end(r, "etcd's answer is over 64 MiB");
        return false;
    }
    return true;
}

/* Reads what arrived on `c` for its request, as far as it goes. */
static void conn_process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct req *r = c->req;
    while (c->req == r && r && c->rs != RS_DONE) {
        size_t avail = evbuffer_get_length(in);
        if (c->rs == RS_HEAD) {
            size_t n = avail < SY_ETCD_MAX_HEAD ? avail : SY_ETCD_MAX_HEAD;
            if (n == 0)
                return;
            const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
            long hl = sy_etcd_parse_head(p, n, &c->head);
            if (hl == 0)
                return;
            if (hl < 0 || c->head.status == 101) {
                attempt_failed(r, "malformed response head");
                return;
            }
            evbuffer_drain(in, (size_t)hl);
            if (c->head.status < 200)
                continue; /* RFC 9110 §15.2: an interim answer, the real one follows */
            memset(&c->chunks, 0, sizeof(c->chunks));
            evbuffer_drain(c->body, evbuffer_get_length(c->body));
            if (r->kind == REQ_WATCH && c->head.status == 200) {
                r->open = true;
                r->e->current = c->ep;
                event_del(r->deadline_ev);
                event_del(r->attempt_ev);
            }
            if (c->head.status == 204 || c->head.status == 304) {
                complete(c);
                return;
            }
            if (c->head.chunked) {
                c->rs = RS_CHUNKED;
            } else if (c->head.content_length >= 0) {
                if ((uint64_t)c->head.content_length > SY_ETCD_MAX_BODY) {
                    c->head.close = true;
                    if (r->kind == REQ_CALL)
                        call_finish(r, SY_ERR_INVALID, NULL, "etcd's answer is over 64 MiB");
                    else
                        watch_end(r, "etcd's answer is over 64 MiB");
                    return;
                }
                c->rs = RS_LENGTH;
                c->left = (uint64_t)c->head.content_length;
                if (c->left == 0) {
                    complete(c);
                    return;
                }
            } else {
                c->rs = RS_UNTIL_CLOSE; /* RFC 9112 §6.3 (8): the body ends at the close */
                c->head.close = true;
            }
            continue;
        }
        if (avail == 0)
            return;
        if (c->rs == RS_LENGTH) {
            size_t n = avail < c->left ? avail : (size_t)c->left;
            evbuffer_remove_buffer(in, c->body, n);
            c->left -= n;
            if (!body_bytes(c, r))
                return;
            if (c->left == 0) {
                complete(c);
                return;
            }
        } else if (c->rs == RS_CHUNKED) {
            struct evbuffer_iovec vec[16];
            int nv = evbuffer_peek(in, -1, NULL, vec, 16);
            size_t used = 0;
            bool bad = false;
            for (int i = 0; i < nv && i < 16 && !c->chunks.done && !bad; i++) {
                const char *p = vec[i].iov_base;
                size_t len = vec[i].iov_len, off = 0;
                while (off < len && !c->chunks.done) {
                    struct sy_slice data;
                    long k = sy_etcd_dechunk(&c->chunks, p + off, len - off, &data);
                    if (k < 0) {
                        bad = true;
                        break;
                    }
                    off += (size_t)k;
                    if (data.len)
                        evbuffer_add(c->body, data.p, data.len);
                }
                used += off;
            }
            evbuffer_drain(in, used);
            if (bad) {
                if (r->kind == REQ_WATCH && r->open)
                    watch_end(r, "etcd sent a malformed chunk");
                else
                    attempt_failed(r, "malformed chunked body");
                return;
            }
            if (!body_bytes(c, r))
                return;
            if (c->chunks.done) {
                complete(c);
                return;
            }
        } else if (c->rs == RS_UNTIL_CLOSE) {
            evbuffer_remove_buffer(in, c->body, avail);
            if (!body_bytes(c, r))
                return;
        }
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (!c->req || c->rs == RS_DONE) {
        /* an idle connection spoke: a close, or bytes nobody asked for */
        idle_unlink(c);
        conn_close(c);
        return;
    }
    c->got_bytes = true;
    conn_process(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct req *r = c->req;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (!r || c->rs == RS_DONE) {
        idle_unlink(c);
        conn_close(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && c->rs == RS_UNTIL_CLOSE) {
        conn_process(c);
        if (c->req == r)
            complete(c);
        return;
    }
    char why[160];
    unsigned long ssl_err = bufferevent_get_openssl_error(bev);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (ssl_err && verify != X509_V_OK) {
        snprintf(why, sizeof(why), "tls: certificate: %s", X509_verify_cert_error_string(verify));
    } else if (ssl_err) {
        char text[120];
        ERR_error_string_n(ssl_err, text, sizeof(text));
        snprintf(why, sizeof(why), "tls: %s", text);
    } else if (what & BEV_EVENT_ERROR) {
        snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR()));
    } else {
        snprintf(why, sizeof(why), "connection closed before the answer");
    }
    if (r->kind == REQ_WATCH && r->open) {
        char text[sizeof(r->why)];
        snprintf(text, sizeof(text), "etcd closed the watch stream (%s: %s)",
                 c->e->eps[c->ep].label, ssl_err || (what & BEV_EVENT_ERROR) ? why : "closed");
        watch_end(r, text);
        return;
    }
    if (c->reused && !c->got_bytes) {
        /* The member closed a keep-alive connection as we reused it: not its failure. */
        conn_close(c);
        r->retry_fresh = true;
        event_del(r->attempt_ev);
        event_active(r->attempt_ev, EV_TIMEOUT, 1);
        return;
    }
    attempt_failed(r, why);
}

/* -- delivery -------------------------------------------------------------------------------- */

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    if (r->kind == REQ_CALL) {
        req_unlink(r);
        r->delivering = true;
        r->cb(r->rc, r->res, r->why, r->arg);
        req_free(r);
        return;
    }
    bool gone = false;
    r->gone = &gone;
    while (r->q_head < r->q_len) {
        struct sy_jv *v = r->queue[r->q_head++];
        r->msg(sy_jv_get(v, "result"), r->arg);
        sy_jv_free(v);
        if (gone)
            return;
    }
    r->gone = NULL;
    r->q_head = r->q_len = 0;
    if (r->ended) {
        req_unlink(r);
        r->delivering = true;
        r->end(r->why, r->arg);
        req_free(r);
    }
}

/* -- the interface --------------------------------------------------------------------------- */

struct sy_etcd *sy_etcd_new(struct event_base *base, const struct sy_etcd_opts *o)
{
    if (o->n_endpoints == 0)
        return NULL;
    for (size_t i = 0; i < o->n_endpoints; i++) {
        if (o->endpoints[i].tls && !o->ssl)
            return NULL;
    }
    struct sy_etcd *e = sy_xcalloc(1, sizeof(*e));
    e->base = base;
    e->ssl = o->ssl;
    e->verify_host = o->verify_host;
    e->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
    e->n_eps = o->n_endpoints;
    e->eps = sy_xcalloc(e->n_eps, sizeof(*e->eps));
    for (size_t i = 0; i < e->n_eps; i++) {
        const struct sy_etcd_endpoint *src = &o->endpoints[i];
        struct endpoint *ep = &e->eps[i];
        ep->addr = src->addr;
        ep->addrlen = src->addrlen;
        ep->tls = src->tls;
        char ip[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        if (src->addr.ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&src->addr;
            inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
            port = ntohs(sin->sin_port);
            snprintf(ep->label, sizeof(ep->label), "%s:%u", ip, port);
        } else if (src->addr.ss_family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&src->addr;
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
            port = ntohs(sin6->sin6_port);
            snprintf(ep->label, sizeof(ep->label), "[%s]:%u", ip, port);
        }
        ep->host = sy_xstrdup(src->host && *src->host ? src->host : ep->label);
        /* The server name is the host without a port ("etcd-1:2379", "[::1]:2379"). */
        const char *h = ep->host;
        size_t n = strlen(h);
        if (h[0] == '[') {
            const char *close = strchr(h, ']');
            ep->name = sy_xstrndup(h + 1, close ? (size_t)(close - h - 1) : n - 1);
        } else {
            const char *colon = strchr(h, ':');
            bool one_colon = colon && !strchr(colon + 1, ':');
            ep->name = sy_xstrndup(h, one_colon ? (size_t)(colon - h) : n);
        }
        struct in6_addr tmp;
        ep->name_is_ip =
            inet_pton(AF_INET, ep->name, &tmp) == 1 || inet_pton(AF_INET6, ep->name, &tmp) == 1;
    }
    e->reap_ev = evtimer_new(base, reap_cb, e);
    if (!e->reap_ev)
        sy_oom(sizeof(*e));
    return e;
}

void sy_etcd_free(struct sy_etcd *e)
{
    if (!e)
        return;
    while (e->reqs) {
        struct req *r = e->reqs;
        req_unlink(r);
        req_free(r);
    }
    while (e->idle) {
        struct conn *c = e->idle;
        e->idle = c->next;
        c->next = NULL;
        e->n_idle--;
        conn_close(c);
    }
    reap_cb(-1, 0, e);
    event_free(e->reap_ev);
    for (size_t i = 0; i < e->n_eps; i++) {
        free(e->eps[i].host);
        free(e->eps[i].name);
    }
    free(e->eps);
    free(e);
}

size_t sy_etcd_current(const struct sy_etcd *e)
{
    return e->current;
}

struct sy_etcd_call *sy_etcd_call(struct sy_etcd *e, const char *path, const char *body, size_t len,
                                  sy_etcd_cb cb, void *arg)
{
    struct req *r = req_new(e, REQ_CALL, path, body, len, arg);
    r->cb = cb;
    return (struct sy_etcd_call *)r;
}

static void cancel(struct req *r)
{
    if (r->delivering)
        return; /* inside its last callback: freed when that returns */
    req_unlink(r);
    req_free(r);
}

void sy_etcd_call_cancel(struct sy_etcd_call *c)
{
    if (c)
        cancel(&c->r);
}

struct sy_etcd_watch *sy_etcd_watch(struct sy_etcd *e, const char *body, size_t len,
                                    sy_etcd_watch_msg_cb msg, sy_etcd_watch_end_cb end, void *arg)
{
    struct req *r = req_new(e, REQ_WATCH, "/v3/watch", body, len, arg);
    r->msg = msg;
    r->end = end;
    return (struct sy_etcd_watch *)r;
}

void sy_etcd_watch_cancel(struct sy_etcd_watch *w)
{
    if (w)
        cancel(&w->r);
}

/* -- helpers for the gateway's JSON ----------------------------------------------------------- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *sy_etcd_b64(const void *p, size_t len)
{
    const unsigned char *s = p;
    char *out = sy_xmalloc((len + 2) / 3 * 4 + 1), *o = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = b64_chars[v >> 18];
        *o++ = b64_chars[(v >> 12) & 63];
        *o++ = b64_chars[(v >> 6) & 63];
        *o++ = b64_chars[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = b64_chars[v >> 18];
        *o++ = b64_chars[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = b64_chars[v >> 18];
        *o++ = b64_chars[(v >> 12) & 63];
        *o++ = b64_chars[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_val(char c)
{
    const char *k = c ? strchr(b64_chars, c) : NULL;
    return k ? (int)(k - b64_chars) : -1;
}

char *sy_etcd_unb64(const char *s, size_t *len)
{
    size_t n = strlen(s);
    if (n % 4 != 0)
        return NULL;
    char *out = sy_xmalloc(n / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char ch = s[i + k];
            if (ch == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            v[k] = pad ? -1 : b64_val(ch); /* no data after padding */
            if (v[k] < 0) {
                free(out);
                return NULL;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (char)(w >> 16);
        if (pad < 2)
            out[o++] = (char)(w >> 8);
        if (pad < 1)
            out[o++] = (char)w;
    }
    out[o] = '\0';
    *len = o;
    return out;
}

char *sy_etcd_prefix_end(const char *prefix)
{
    char *end = sy_xstrdup(prefix);
    size_t n = strlen(end);
    while (n > 0 && (unsigned char)end[n - 1] == 0xff)
        n--;
    if (n > 0)
        end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    end[n] = '\0';
    return end;
}

uint64_t sy_etcd_u64(const struct sy_jv *v, uint64_t dflt)
{
    if (sy_jv_type(v) == SY_JV_UINT)
        return sy_jv_uint(v, dflt);
    const char *s = sy_jv_str(v);
    if (!s || !*s || strlen(s) > 20)
        return dflt;
    uint64_t u = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return dflt;
        unsigned d = (unsigned)(*s - '0');
        if (u > (UINT64_MAX - d) / 10)
            return dflt;
        u = u * 10 + d;
    }
    return u;
}

/* -- HTTP/1.1 framing ------------------------------------------------------------------------ */

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 §5.6.2 */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static struct sy_slice trim(const char *p, size_t len)
{
    while (len > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    return sy_slice_of(p, len);
}

/* Whether the comma-separated list `v` has `word` (case-insensitive); with `last`, as its last
 * element only. */
static bool list_has(struct sy_slice v, const char *word, bool last)
{
    bool found = false;
    size_t i = 0;
    while (i <= v.len) {
        size_t j = i;
        while (j < v.len && v.p[j] != ',')
            j++;
        struct sy_slice item = trim(v.p + i, j - i);
        if (item.len > 0)
            found = sy_slice_ieq(item, word) || (found && !last);
        i = j + 1;
    }
    return found;
}

long sy_etcd_parse_head(const char *p, size_t len, struct sy_etcd_head *h)
{
    size_t n = len < SY_ETCD_MAX_HEAD ? len : SY_ETCD_MAX_HEAD;
    size_t end = 0;
    for (size_t i = 0; i < n && !end; i++) {
        if (p[i] != '\n')
            continue;
        if (i + 1 < n && p[i + 1] == '\n')
            end = i + 2;
        else if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
            end = i + 3;
    }
    if (!end)
        return len >= SY_ETCD_MAX_HEAD ? -1 : 0;
    struct sy_etcd_head out = {.content_length = -1};
    size_t i = 0;
    bool first = true, seen_te = false;
    for (;;) {
        size_t j = i;
        while (p[j] != '\n')
            j++;
        size_t line_end = j + 1, l = j - i;
        if (l > 0 && p[i + l - 1] == '\r')
            l--;
        const char *s = p + i;
        for (size_t k = 0; k < l; k++) {
            unsigned char ch = (unsigned char)s[k];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return -1; /* a bare CR, NUL and other controls */
        }
        i = line_end;
        if (l == 0) {
            if (first)
                return -1;
            break;
        }
        if (first) {
            /* RFC 9112 §4: HTTP-version SP 3DIGIT SP [reason] */
            if (l < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
                s[8] != ' ')
                return -1;
            for (int k = 9; k < 12; k++) {
                if (s[k] < '0' || s[k] > '9')
                    return -1;
            }
            if (l > 12 && s[12] != ' ')
                return -1;
            out.status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
            if (out.status < 100 || out.status > 599)
                return -1;
            out.close = s[7] == '0';
            first = false;
            continue;
        }
        size_t colon = 0;
        while (colon < l && is_tchar((unsigned char)s[colon]))
            colon++;
        if (colon == 0 || colon >= l || s[colon] != ':')
            return -1; /* also obs-fold, RFC 9112 §5.2: a line starting with white space */
        struct sy_slice name = sy_slice_of(s, colon);
        struct sy_slice value = trim(s + colon + 1, l - colon - 1);
        if (sy_slice_ieq(name, "content-length")) {
            if (value.len == 0 || value.len > 18)
                return -1;
            int64_t cl = 0;
            for (size_t k = 0; k < value.len; k++) {
                if (value.p[k] < '0' || value.p[k] > '9')
                    return -1;
                cl = cl * 10 + (value.p[k] - '0');
            }
            if (out.content_length >= 0 && out.content_length != cl)
                return -1;
            out.content_length = cl;
        } else if (sy_slice_ieq(name, "transfer-encoding")) {
            /* A coding other than chunked we cannot undo; chunked must come last. */
            if (!list_has(value, "chunked", true) || seen_te)
                return -1;
            size_t k = 0, items = 0;
            while (k <= value.len) {
                size_t m = k;
                while (m < value.len && value.p[m] != ',')
                    m++;
                if (trim(value.p + k, m - k).len > 0)
                    items++;
                k = m + 1;
            }
            if (items != 1)
                return -1;
            seen_te = true;
            out.chunked = true;
        } else if (sy_slice_ieq(name, "connection")) {
            if (list_has(value, "close", false))
                out.close = true;
        }
    }
    if (out.chunked)
        out.content_length = -1; /* RFC 9112 §6.3 (3) */
    if (out.status < 200) {
        out.chunked = false;
        out.content_length = -1;
    }
    *h = out;
    return (long)end;
}

enum {
    CH_SIZE0 = 0, /* the first digit of a chunk size */
    CH_SIZE,      /* more digits */
    CH_SIZE_WS,   /* white space after the size */
    CH_EXT,       /* a chunk extension, skipped */
    CH_SIZE_LF,   /* the LF of the size line's CRLF */
    CH_DATA,
    CH_DATA_CR, /* the CRLF after a chunk's data */
    CH_DATA_LF,
    CH_TRAILER,      /* the start of a trailer line */
    CH_TRAILER_LINE, /* inside one */
    CH_TRAILER_LF,   /* the LF of a trailer line's CRLF */
    CH_END_LF,       /* the LF of the final CRLF */
};

#define CHUNK_LINE_MAX 4096

/* The end of a chunk-size line. */
static void size_line_done(struct sy_etcd_chunks *d)
{
    d->line = 0;
    d->state = d->left ? CH_DATA : CH_TRAILER;
}

long sy_etcd_dechunk(struct sy_etcd_chunks *d, const char *p, size_t len, struct sy_slice *data)
{
    *data = sy_slice_of(p, 0);
    size_t i = 0;
    while (i < len && !d->done) {
        char c = p[i];
        if (d->state == CH_DATA) {
            size_t n = len - i < d->left ? len - i : (size_t)d->left;
            *data = sy_slice_of(p + i, n);
            d->left -= n;
            i += n;
            if (d->left == 0)
                d->state = CH_DATA_CR;
            return (long)i;
        }
        i++;
        switch (d->state) {
        case CH_SIZE0:
        case CH_SIZE: {
            int v = sy_hex_digit(c);
            if (v >= 0) {
                if (++d->digits > 16)
                    return -1;
                d->left = d->left << 4 | (uint64_t)v;
                d->state = CH_SIZE;
                break;
            }
            if (d->state == CH_SIZE0)
                return -1;
            d->digits = 0;
            if (c == ' ' || c == '\t')
                d->state = CH_SIZE_WS;
            else if (c == ';')
                d->state = CH_EXT;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (c == '\n')
                size_line_done(d);
            else
                return -1;
            break;
        }
        case CH_SIZE_WS:
            if (c == ';')
                d->state = CH_EXT;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (c == '\n')
                size_line_done(d);
            else if (c != ' ' && c != '\t')
                return -1;
            break;
        case CH_EXT:
            if (++d->line > CHUNK_LINE_MAX)
                return -1;
            if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (c == '\n')
                size_line_done(d);
            else if (((unsigned char)c < 0x20 && c != '\t') || c == 0x7f)
                return -1;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return -1;
            size_line_done(d);
            break;
        case CH_DATA_CR:
            if (c == '\r')
                d->state = CH_DATA_LF;
            else if (c == '\n')
                d->state = CH_SIZE0;
            else
                return -1;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return -1;
            d->state = CH_SIZE0;
            break;
        case CH_TRAILER:
            if (c == '\r') {
                d->state = CH_END_LF;
            } else if (c == '\n') {
                d->done = true;
            } else {
                if (++d->line > SY_ETCD_MAX_HEAD)
                    return -1;
                d->state = CH_TRAILER_LINE;
            }
            break;
        case CH_TRAILER_LINE:
            if (++d->line > SY_ETCD_MAX_HEAD)
                return -1;
            if (c == '\r')
                d->state = CH_TRAILER_LF;
            else if (c == '\n')
                d->state = CH_TRAILER;
            else if (((unsigned char)c < 0x20 && c != '\t') || c == 0x7f)
                return -1;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return -1;
            d->state = CH_TRAILER;
            break;
        case CH_END_LF:
            if (c != '\n')
                return -1;
            d->done = true;
            break;
        default:
            return -1;
        }
    }
    return (long)i;
}
