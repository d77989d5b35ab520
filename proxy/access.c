/* SPDX-License-Identifier: MIT */
/* The access log's lines: one JSON object per request (an HTTP/1.1 request or an HTTP/2
 * stream), written when its exchange ends, or when the codec answers it itself before there is
 * one. A line is formatted into a buffer on the stack (no allocation) and copied into the
 * worker's ring (proxy/base/access_log.c), or dropped and counted when the ring is full. The
 * request id is kept (a sane x-request-id from the client) or made here, whether the log is on
 * or not, and goes to the cluster in x-request-id (exchange.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <time.h>

#include "switchyard/access_log.h"
#include "switchyard/base.h"
#include "switchyard/json.h"

#include "proxy_internal.h"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A client's x-request-id is kept when it is 1..128 printable ASCII bytes without spaces. */
static bool id_is_sane(struct sy_slice v)
{
    if (v.len == 0 || v.len > ACCESS_ID_MAX)
        return false;
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.p[i] <= 0x20 || (unsigned char)v.p[i] >= 0x7f)
            return false;
    return true;
}

/* splitmix64's finalizer: a bijection, so distinct counters give distinct ids. */
static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The client's sane x-request-id, else 16 hex digits of our own; returns its length. */
static size_t request_id(struct sy_worker *w, const struct req_head *req, char *id)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sy_header *h = &req->headers[i];
        if (h->name.len == 12 && sy_slice_ieq(h->name, "x-request-id") && id_is_sane(h->value)) {
            memcpy(id, h->value.p, h->value.len);
            return h->value.len;
        }
    }
    if (!w->rid_seed)
        w->rid_seed = worker_random(w) | 1;
    uint64_t v = mix(w->rid_seed + w->rid_next++);
    for (int i = 15; i >= 0; i--, v >>= 4)
        id[i] = hex[v & 15];
    return 16;
}

static size_t copy_cut(char *dst, size_t cap, struct sy_slice s)
{
    size_t n = s.len < cap ? s.len : cap;
    if (n)
        memcpy(dst, s.p, n);
    return n;
}

void access_begin(struct downstream *d, const struct req_head *req)
{
    struct access_rec *a = &d->acc;
    if (!d->conn->w->alog)
        return;
    a->state = ACCESS_BEGUN;
    a->head = req;
    a->start_us = sy_clock_us();
    a->wall_ms = wall_ms();
    if (req->version[0] == '2')
        a->proto = d->conn->tls ? "h2" : "h2c";
    else
        a->proto = req->version[2] == '0' ? "HTTP/1.0" : "HTTP/1.1";
}

void access_exchange_begin(struct exchange *ex, const struct req_head *req)
{
    struct access_req *a = &ex->acc;
    a->id_len = (uint8_t)request_id(ex->w, req, a->id);
    ex->down->acc.head = NULL; /* the exchange answers from here on */
    if (!ex->w->alog)
        return;
    a->method_len = (uint8_t)copy_cut(a->method, sizeof(a->method), req->method);
    a->authority_len = (uint8_t)copy_cut(a->authority, sizeof(a->authority), req->authority);
    a->path_len = (uint16_t)copy_cut(a->path, sizeof(a->path), req->target);
}

/* -- one line ------------------------------------------------------------------------------ */

/* A line's buffer, on the worker's stack. The copies are bounded (ACCESS_*_MAX) but an escape
 * takes up to 6 bytes a byte: a line that would not fit has its strings cut (each keeps 256
 * bytes for the fields after it) and is still one valid JSON object. */
#define LINE_MAX_BYTES 6144

struct line {
    char *p;
    size_t len, cap;
};

static void raw(struct line *l, const char *s, size_t n)
{
    if (l->len + n > l->cap)
        n = l->cap - l->len;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void lit(struct line *l, const char *s)
{
    raw(l, s, strlen(s));
}

/* ,"key": */
static void key(struct line *l, const char *k)
{
    raw(l, ",\"", 2);
    lit(l, k);
    raw(l, "\":", 2);
}

static void str_n(struct line *l, const char *k, const char *s, size_t n)
{
    key(l, k);
    if (!s) {
        raw(l, "null", 4);
        return;
    }
    raw(l, "\"", 1);
    /* Room is kept for the closing quote and the rest of the line's fixed text. */
    size_t room = l->cap - l->len > 256 ? l->cap - l->len - 256 : 0;
    l->len += sy_json_escape(l->p + l->len, room, s, n);
    raw(l, "\"", 1);
}

static void str(struct line *l, const char *k, const char *s)
{
    str_n(l, k, s, s ? strlen(s) : 0);
}

/* Decimal digits of `v`, at least `width` of them (zero-padded). No printf: a line has a
 * dozen numbers per request. */
static void digits(struct line *l, uint64_t v, int width)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
        width--;
    } while (v || width > 0);
    raw(l, tmp + i, sizeof(tmp) - i);
}

static void uint_(struct line *l, const char *k, uint64_t v)
{
    key(l, k);
    digits(l, v, 1);
}

/* Microseconds as milliseconds with three decimals, or null. */
static void ms(struct line *l, const char *k, bool known, uint64_t us)
{
    key(l, k);
    if (!known) {
        raw(l, "null", 4);
        return;
    }
    digits(l, us / 1000, 1);
    raw(l, ".", 1);
    digits(l, us % 1000, 3);
}

/* {"time":"2026-12-05T07:40:01.123Z" (RFC 3339, UTC); the date part is cached per thread. */
static void open_line(struct line *l, uint64_t at_ms)
{
    static _Thread_local time_t cached_s = -1;
    static _Thread_local char cached[24];
    time_t s = (time_t)(at_ms / 1000);
    if (s != cached_s) {
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_s = s;
    }
    lit(l, "{\"time\":\"");
    lit(l, cached);
    raw(l, ".", 1);
    digits(l, at_ms % 1000, 3);
    raw(l, "Z\"", 2);
}

/* The client's address and port ("[v6]:port"). conn.peer is inet_ntop's text: nothing in it
 * needs escaping. */
static void client(struct line *l, const struct conn *c)
{
    unsigned port = 0;
    if (c->addr.ss_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)&c->addr)->sin_port);
    else if (c->addr.ss_family == AF_INET6)
        port = ntohs(((const struct sockaddr_in6 *)&c->addr)->sin6_port);
    bool v6 = c->addr.ss_family == AF_INET6;
    key(l, "client");
    lit(l, v6 ? "\"[" : "\"");
    lit(l, c->peer);
    lit(l, v6 ? "]:" : ":");
    digits(l, port, 1);
    raw(l, "\"", 1);
}

/* The parts every line has: client, protocol, TLS, request line (slices: NULL for null). */
static void request_part(struct line *l, const struct downstream *d, const char *proto,
                         const struct sy_slice *m, const struct sy_slice *auth,
                         const struct sy_slice *path)
{
    client(l, d->conn);
    str(l, "protocol", proto);
    str(l, "tls", d->conn->tls_version);
    str_n(l, "method", m ? m->p : NULL, m ? m->len : 0);
    str_n(l, "authority", auth ? auth->p : NULL, auth ? auth->len : 0);
    str_n(l, "path", path ? path->p : NULL, path ? path->len : 0);
}

static void put_line(struct sy_worker *w, struct line *l)
{
    raw(l, "}\n", 2);
    if (l->p[l->len - 1] != '\n') /* cut: still one line */
        l->p[l->len - 1] = '\n';
    sy_access_ring_put(w->alog, l->p, l->len);
}

/* Whether a line that switchyard did not answer itself is kept (access_log.sample). */
static bool sampled(struct sy_worker *w)
{
    double s = worker_config(w)->access_log.sample;
    if (s >= 1.0)
        return true;
    if (s <= 0.0)
        return false;
    return (double)(worker_random(w) >> 11) < s * (double)(1ull << 53);
}

static void exchange_line(struct line *l, const struct exchange *ex, const char *gen)
{
    const struct downstream *d = ex->down;
    const struct access_req *a = &ex->acc;
    uint64_t start = d->acc.start_us, now = sy_clock_us();
    bool routed = !ex->maint;
    open_line(l, d->acc.wall_ms);
    str_n(l, "request_id", a->id, a->id_len);
    str(l, "app", ex->app ? ex->app->name : NULL);
    str(l, "cluster", routed ? sy_route_cluster(ex->table, ex->cluster)->name : NULL);
    str(l, "rule", routed ? sy_pick_rule_name(ex->rule) : NULL);
    str(l, "endpoint", routed && ex->endpoint ? ex->endpoint->address : NULL);
    struct sy_slice m = {a->method, a->method_len}, auth = {a->authority, a->authority_len},
                    path = {a->path, a->path_len};
    request_part(l, d, d->acc.proto, &m, &auth, &path);
    uint_(l, "status", (uint64_t)(ex->status > 0 ? ex->status : 0));
    uint_(l, "bytes_in", ex->req_body_bytes);
    uint_(l, "bytes_out", ex->resp_bytes);
    ms(l, "connect_ms", ex->connect_us != 0, ex->connect_us);
    key(l, "upstream_reused");
    lit(l, !ex->up_used ? "null" : ex->up_new ? "false" : "true");
    ms(l, "ttfb_ms", ex->head_us != 0, ex->head_us > start ? ex->head_us - start : 0);
    ms(l, "total_ms", true, now > start ? now - start : 0);
    key(l, "tunnel");
    lit(l, ex->tunnel ? "true" : "false");
    str(l, "generated", gen);
}

void access_log_exchange(struct exchange *ex)
{
    struct downstream *d = ex->down;
    struct sy_worker *w = ex->w;
    if (!w->alog || !d || d->acc.state != ACCESS_BEGUN)
        return;
    const char *gen = ex->maint ? "maintenance" : ex->generated;
    if (gen || sampled(w)) {
        char buf[LINE_MAX_BYTES];
        struct line l = {buf, 0, sizeof(buf)};
        exchange_line(&l, ex, gen);
        put_line(w, &l);
    }
    /* After fail() the codec's send_error follows: it adds no second line. */
    d->acc.state = ex->generated && !ex->resp_started ? ACCESS_LOGGED : ACCESS_IDLE;
}

void access_log_own(struct downstream *d, int status, bool h2)
{
    struct access_rec *a = &d->acc;
    struct sy_worker *w = d->conn->w;
    enum access_state was = a->state;
    const struct req_head *req = was == ACCESS_BEGUN ? a->head : NULL;
    a->state = ACCESS_IDLE;
    a->head = NULL;
    if (!w->alog || was == ACCESS_LOGGED)
        return;
    if (!req) {
        a->start_us = sy_clock_us();
        a->wall_ms = wall_ms();
        a->proto = h2 ? (d->conn->tls ? "h2" : "h2c") : "HTTP/1.1";
    }
    char id[ACCESS_ID_MAX];
    size_t id_len = req ? request_id(w, req, id) : 0;
    char buf[LINE_MAX_BYTES];
    struct line l = {buf, 0, sizeof(buf)};
    open_line(&l, a->wall_ms);
    str_n(&l, "request_id", req ? id : NULL, id_len);
    const struct traffic_slot *s = d->own_slot;
    str(&l, "app", s && s->app[0] ? s->app : NULL);
    str(&l, "cluster", s && s->cluster[0] ? s->cluster : NULL);
    str(&l, "rule", NULL);
    str(&l, "endpoint", NULL);
    request_part(&l, d, a->proto, req ? &req->method : NULL, req ? &req->authority : NULL,
                 req ? &req->target : NULL);
    uint_(&l, "status", (uint64_t)status);
    uint_(&l, "bytes_in", 0);
    uint_(&l, "bytes_out", 0);
    ms(&l, "connect_ms", false, 0);
    key(&l, "upstream_reused");
    lit(&l, "null");
    ms(&l, "ttfb_ms", false, 0);
    uint64_t now = sy_clock_us();
    ms(&l, "total_ms", true, now > a->start_us ? now - a->start_us : 0);
    key(&l, "tunnel");
    lit(&l, "false");
    str(&l, "generated", sy_own_reason(status));
    put_line(w, &l);
}
