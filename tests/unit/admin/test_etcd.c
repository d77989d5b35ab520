/* SPDX-License-Identifier: MIT */
/* The etcd gateway client (admin/etcd.c): its JSON helpers (base64 both ways, a prefix's range
 * end, the gateway's int64-as-string), its HTTP/1.1 framing (the response head, chunked
 * decoding at every split of the input, malformed and oversized input), and the client itself
 * against scripted servers on loopback in the test's own event loop: failover past a refused
 * connect, a 503 and "no leader", a 4xx as the result, keep-alive reuse with a chunked
 * answer, a watch whose lines straddle chunks, and callbacks that cancel or free. */
#define _GNU_SOURCE /* memmem, strcasestr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "switchyard/base.h"
#include "switchyard/etcd.h"
#include "switchyard/json.h"

/* -- helpers for the gateway's JSON -------------------------------------------------------------
 */

static void test_b64_matches_rfc4648_and_reads_back(void **state)
{
    static const char *const vec[][2] = {{"", ""},
                                         {"f", "Zg=="},
                                         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char *enc = sy_etcd_b64(vec[i][0], strlen(vec[i][0]));
        assert_string_equal(enc, vec[i][1]);
        size_t len = 99;
        char *dec = sy_etcd_unb64(enc, &len);
        assert_non_null(dec);
        assert_int_equal(len, strlen(vec[i][0]));
        assert_memory_equal(dec, vec[i][0], len);
        assert_int_equal(dec[len], '\0');
        free(enc);
        free(dec);
    }
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    for (size_t n = 0; n <= sizeof(all); n += 17) {
        char *enc = sy_etcd_b64(all, n);
        size_t len = 0;
        char *dec = sy_etcd_unb64(enc, &len);
        assert_int_equal(len, n);
        assert_memory_equal(dec, all, n);
        free(enc);
        free(dec);
    }
}

static void test_unb64_refuses_what_is_not_padded_base64(void **state)
{
    static const char *const bad[] = {"Zg",   "Zg=", "Z===",    "====", "Zg==Zg==", "Zm9v!A==",
                                      "Zm=v", "Zm9", "Z\x80==", "Zg =", "YQ==\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = 7;
        assert_null(sy_etcd_unb64(bad[i], &len));
        assert_int_equal(len, 7);
    }
}

static void test_prefix_end_increments_the_last_byte_below_0xff(void **state)
{
    static const char *const vec[][2] = {{"a", "b"},         {"/app/", "/app0"}, {"a\xff", "b"},
                                         {"a\x7f", "a\x80"}, {"\xff\xff", ""},   {"", ""}};
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char *end = sy_etcd_prefix_end(vec[i][0]);
        assert_string_equal(end, vec[i][1]);
        free(end);
    }
}

static uint64_t u64_of(const char *json)
{
    struct sy_jv *v = NULL;
    const char *why = NULL;
    assert_int_equal(sy_jv_parse(json, strlen(json), &v, &why), 0);
    uint64_t u = sy_etcd_u64(sy_jv_get(v, "n"), 42);
    sy_jv_free(v);
    return u;
}

static void test_u64_reads_strings_and_numbers_and_defaults_on_anything_else(void **state)
{
    assert_int_equal(u64_of("{\"n\":\"123\"}"), 123);
    assert_int_equal(u64_of("{\"n\":7}"), 7);
    assert_int_equal(u64_of("{\"n\":\"0\"}"), 0);
    assert_true(u64_of("{\"n\":\"18446744073709551615\"}") == UINT64_MAX);
    assert_int_equal(u64_of("{\"n\":\"18446744073709551616\"}"), 42);
    assert_int_equal(u64_of("{\"n\":\"-1\"}"), 42);
    assert_int_equal(u64_of("{\"n\":\"\"}"), 42);
    assert_int_equal(u64_of("{\"n\":\"12a\"}"), 42);
    assert_int_equal(u64_of("{\"n\":\" 1\"}"), 42);
    assert_int_equal(u64_of("{\"n\":true}"), 42);
    assert_int_equal(u64_of("{\"m\":\"1\"}"), 42);
    assert_int_equal(sy_etcd_u64(NULL, 5), 5);
}

/* -- the response head ------------------------------------------------------------------------ */

static long head(const char *text, struct sy_etcd_head *h)
{
    return sy_etcd_parse_head(text, strlen(text), h);
}

static void test_head_reads_status_and_framing(void **state)
{
    struct sy_etcd_head h;
    const char *a = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 111\r\n"
                    "\r\n{\"header\":{}}";
    assert_int_equal(head(a, &h), strstr(a, "{") - a);
    assert_int_equal(h.status, 200);
    assert_false(h.chunked);
    assert_false(h.close);
    assert_int_equal(h.content_length, 111);

    assert_true(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &h) > 0);
    assert_true(h.chunked);
    assert_int_equal(h.content_length, -1);

    /* RFC 9112 §6.3: chunked wins over Content-Length */
    assert_true(
        head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: Chunked\r\n\r\n", &h) > 0);
    assert_true(h.chunked);
    assert_int_equal(h.content_length, -1);

    const char *lf = "HTTP/1.1 404 Not Found\nConnection: keep-alive, Close\n\n";
    assert_int_equal(head(lf, &h), strlen(lf));
    assert_int_equal(h.status, 404);
    assert_true(h.close);

    assert_true(head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &h) > 0);
    assert_true(h.close);
    assert_true(head("HTTP/1.1 503\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", &h) > 0);
    assert_int_equal(h.status, 503);
    assert_int_equal(h.content_length, 2);
    assert_true(head("HTTP/1.1 100 Continue\r\n\r\n", &h) > 0);
    assert_int_equal(h.status, 100);
}

static void test_head_is_incomplete_at_every_prefix(void **state)
{
    const char *a = "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 3\r\n\r\n";
    struct sy_etcd_head h = {.status = 7};
    for (size_t n = 0; n < strlen(a); n++) {
        assert_int_equal(sy_etcd_parse_head(a, n, &h), 0);
        assert_int_equal(h.status, 7); /* untouched until it is whole */
    }
    assert_int_equal(sy_etcd_parse_head(a, strlen(a), &h), (long)strlen(a));
}

static void test_head_refuses_malformed_fields_and_status_lines(void **state)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 x\r\n\r\n",
        "HTTP/1.1 600 OK\r\n\r\n", /* beyond 599: found by fuzz_etcd */
        "http/1.1 200 OK\r\n\r\n",
        "\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n", /* obs-fold */
        "HTTP/1.1 200 OK\r\nX A: b\r\n\r\n",       /* no token */
        "HTTP/1.1 200 OK\r\nX-A b\r\n\r\n",        /* no colon */
        "HTTP/1.1 200 OK\r\nX-A: b\rc\r\n\r\n",    /* bare CR */
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sy_etcd_head h;
        if (head(bad[i], &h) != -1)
            fail_msg("accepted: %s", bad[i]);
    }
    struct sy_etcd_head h;
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: \0\r\n\r\n";
    assert_int_equal(sy_etcd_parse_head(nul, sizeof(nul) - 1, &h), -1);
}

static void test_head_over_16_kib_is_refused_and_just_under_is_read(void **state)
{
    size_t cap = SY_ETCD_MAX_HEAD + 64;
    char *p = malloc(cap);
    /* exactly SY_ETCD_MAX_HEAD bytes, blank line included */
    size_t n = (size_t)snprintf(p, cap, "HTTP/1.1 200 OK\r\nX-Pad: ");
    size_t pad = SY_ETCD_MAX_HEAD - n - 4;
    memset(p + n, 'a', pad);
    memcpy(p + n + pad, "\r\n\r\n", 4);
    struct sy_etcd_head h;
    assert_int_equal(sy_etcd_parse_head(p, SY_ETCD_MAX_HEAD, &h), SY_ETCD_MAX_HEAD);
    /* one byte more of padding: never complete within the limit */
    memset(p + n, 'a', pad + 1);
    memcpy(p + n + pad + 1, "\r\n\r\n", 4);
    assert_int_equal(sy_etcd_parse_head(p, SY_ETCD_MAX_HEAD - 1, &h), 0);
    assert_int_equal(sy_etcd_parse_head(p, SY_ETCD_MAX_HEAD + 1, &h), -1);
    free(p);
}

/* -- chunked bodies --------------------------------------------------------------------------- */

/* Decodes `in` fed in pieces of `step` bytes (0: at once, or split once at `split`). Returns the
 * decoded text (static) or NULL when malformed; *done as the decoder says. */
static const char *dechunk(const char *in, size_t len, size_t split, bool *done)
{
    static char out[4096];
    size_t n = 0;
    struct sy_etcd_chunks d;
    memset(&d, 0, sizeof(d));
    size_t parts[2][2] = {{0, split}, {split, len}};
    for (int k = 0; k < 2; k++) {
        size_t off = parts[k][0], end = parts[k][1];
        while (off < end && !d.done) {
            struct sy_slice data;
            long c = sy_etcd_dechunk(&d, in + off, end - off, &data);
            if (c < 0)
                return NULL;
            assert_true(c > 0);
            assert_true(data.len <= (size_t)c);
            assert_true(data.len == 0 || (data.p >= in + off && data.p + data.len <= in + off + c));
            memcpy(out + n, data.p, data.len);
            n += data.len;
            off += (size_t)c;
        }
        if (d.done)
            break;
    }
    out[n] = '\0';
    *done = d.done;
    return out;
}

static void test_chunks_decode_at_every_split(void **state)
{
    /* a chunk of 0x8a bytes (a line of JSON and padding), one with an extension, one with
     * white space before a bare LF, the last with a trailer field */
    char in[512];
    int n0 = snprintf(in, sizeof(in), "8a\r\n{\"result\":1}\n");
    memset(in + n0, '.', 0x8a - 13);
    snprintf(in + n0 + 0x8a - 13, sizeof(in) - (size_t)n0 - 0x8a + 13,
             "\r\n3;ext=1\r\nabc\r\n1 \nd\n0\r\nTrailer: x\r\n\r\n");
    size_t len = strlen(in);
    bool done = false;
    const char *whole = dechunk(in, len, len, &done);
    assert_non_null(whole);
    assert_true(done);
    char expect[4096];
    snprintf(expect, sizeof(expect), "%s", whole);
    assert_int_equal(strlen(expect), 0x8a + 3 + 1);
    assert_memory_equal(expect + 0x8a, "abcd", 4);
    for (size_t split = 0; split <= len; split++) {
        const char *got = dechunk(in, len, split, &done);
        assert_non_null(got);
        assert_true(done);
        assert_string_equal(got, expect);
    }
    /* one byte at a time */
    struct sy_etcd_chunks d;
    memset(&d, 0, sizeof(d));
    size_t n = 0;
    for (size_t i = 0; i < len && !d.done; i++) {
        struct sy_slice data;
        assert_int_equal(sy_etcd_dechunk(&d, in + i, 1, &data), 1);
        n += data.len;
    }
    assert_true(d.done);
    assert_int_equal(n, strlen(expect));
}

static void test_chunks_stop_after_the_last_chunk(void **state)
{
    static const char in[] = "2\r\nab\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
    struct sy_etcd_chunks d;
    memset(&d, 0, sizeof(d));
    struct sy_slice data;
    long c = sy_etcd_dechunk(&d, in, strlen(in), &data);
    assert_int_equal(c, 5);
    assert_int_equal(data.len, 2);
    c += sy_etcd_dechunk(&d, in + c, strlen(in) - (size_t)c, &data);
    assert_true(d.done);
    assert_int_equal(c, strstr(in, "HTTP") - in);
    assert_int_equal(sy_etcd_dechunk(&d, in + c, strlen(in) - (size_t)c, &data), 0);
}

static void test_chunks_refuse_bad_hex_long_sizes_and_missing_crlf(void **state)
{
    static const char *const bad[] = {
        "g\r\n", /* not hex */
        "\r\n",  /* no size */
        "-1\r\n",
        "0x5\r\n",
        "11111111111111111\r\n", /* 17 digits */
        "2\r\nabX\r\n",          /* data not followed by CRLF */
        "2\r\nab\rX",
        "2\rX",
        "2 x\r\n",
        "2;\x01\r\n",
        "0\r\nX: \x01\r\n\r\n",
        "0\r\n\rX",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bool done;
        if (dechunk(bad[i], strlen(bad[i]), strlen(bad[i]), &done))
            fail_msg("accepted: %s", bad[i]);
    }
    bool done;
    assert_non_null(dechunk("ffffffffffffffff\r\n", 18, 18, &done)); /* 16 digits: size ok */
    assert_false(done);
}

static void test_chunks_refuse_oversized_extensions_and_trailers(void **state)
{
    static char p[SY_ETCD_MAX_HEAD + 64];
    memcpy(p, "1;", 2);
    memset(p + 2, 'x', 5000);
    bool done;
    assert_null(dechunk(p, 5002, 5002, &done));
    memcpy(p, "0\r\nX: ", 6);
    memset(p + 6, 'y', SY_ETCD_MAX_HEAD);
    assert_null(dechunk(p, SY_ETCD_MAX_HEAD + 6, SY_ETCD_MAX_HEAD + 6, &done));
}

/* -- the client against scripted servers ------------------------------------------------------- */

struct answer {
    const char *bytes; /* NULL: close without answering */
    bool close;        /* close after answering */
};

struct fake {
    struct event_base *base;
    int fd;
    struct event *ev;
    const struct answer *script;
    size_t n_script, next;
    int accepts, requests;
    struct sockaddr_in addr;
    struct fake_conn *conns[32]; /* open ones, freed by fake_stop */
};

struct fake_conn {
    struct fake *f;
    struct bufferevent *bev;
    bool closing;
};

static void fake_conn_free(struct fake_conn *fc)
{
    for (size_t i = 0; i < 32; i++) {
        if (fc->f->conns[i] == fc)
            fc->f->conns[i] = NULL;
    }
    bufferevent_free(fc->bev);
    free(fc);
}

static void fake_write_cb(struct bufferevent *bev, void *arg)
{
    struct fake_conn *fc = arg;
    if (fc->closing)
        fake_conn_free(fc);
}

static void fake_event_cb(struct bufferevent *bev, short what, void *arg)
{
    fake_conn_free(arg);
}

static void fake_read_cb(struct bufferevent *bev, void *arg)
{
    struct fake_conn *fc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        const char *p = (const char *)evbuffer_pullup(in, -1);
        const char *end = p ? memmem(p, len, "\r\n\r\n", 4) : NULL;
        if (!end || fc->closing)
            return;
        const char *cl = strcasestr(p, "content-length:");
        size_t body = cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
        size_t total = (size_t)(end - p) + 4 + body;
        if (len < total)
            return;
        assert_non_null(strstr(p, "POST /v3/"));
        assert_non_null(strcasestr(p, "content-type: application/json\r\n"));
        evbuffer_drain(in, total);
        struct fake *f = fc->f;
        f->requests++;
        const struct answer *a = &f->script[f->next < f->n_script ? f->next : f->n_script - 1];
        f->next++;
        if (!a->bytes) {
            fake_conn_free(fc);
            return;
        }
        bufferevent_write(bev, a->bytes, strlen(a->bytes));
        if (a->close) {
            fc->closing = true;
            return;
        }
    }
}

static void fake_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fake *f = arg;
    int c = accept(fd, NULL, NULL);
    if (c == -1)
        return;
    evutil_make_socket_nonblocking(c);
    f->accepts++;
    struct fake_conn *fc = calloc(1, sizeof(*fc));
    fc->f = f;
    for (size_t i = 0; i < 32; i++) {
        if (!f->conns[i]) {
            f->conns[i] = fc;
            break;
        }
    }
    fc->bev = bufferevent_socket_new(f->base, c, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(fc->bev, fake_read_cb, fake_write_cb, fake_event_cb, fc);
    bufferevent_enable(fc->bev, EV_READ | EV_WRITE);
}

static void fake_start(struct fake *f, struct event_base *base, const struct answer *script,
                       size_t n)
{
    memset(f, 0, sizeof(*f));
    f->base = base;
    f->script = script;
    f->n_script = n;
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(f->fd != -1);
    f->addr.sin_family = AF_INET;
    f->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->fd, (struct sockaddr *)&f->addr, sizeof(f->addr)), 0);
    socklen_t len = sizeof(f->addr);
    getsockname(f->fd, (struct sockaddr *)&f->addr, &len);
    assert_int_equal(listen(f->fd, 16), 0);
    f->ev = event_new(base, f->fd, EV_READ | EV_PERSIST, fake_accept_cb, f);
    event_add(f->ev, NULL);
}

static void fake_stop(struct fake *f)
{
    for (size_t i = 0; i < 32; i++) {
        if (f->conns[i])
            fake_conn_free(f->conns[i]);
    }
    event_free(f->ev);
    close(f->fd);
}

/* An address nothing listens on: a port bound and released. */
static struct sockaddr_in dead_addr(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return a;
}

static struct sy_etcd_endpoint endpoint_of(struct sockaddr_in a)
{
    struct sy_etcd_endpoint ep;
    memset(&ep, 0, sizeof(ep));
    memcpy(&ep.addr, &a, sizeof(a));
    ep.addrlen = sizeof(a);
    ep.host = "etcd.test:2379";
    return ep;
}

struct result {
    struct event_base *base;
    int calls;
    int rc;
    char why[400];
    char member[64];
    bool returned; /* sy_etcd_call has returned */
    struct sy_etcd *free_me;
    struct sy_etcd_call *cancel_me;
};

static void on_result(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    struct result *r = arg;
    assert_true(r->returned);
    assert_non_null(why);
    r->calls++;
    r->rc = rc;
    snprintf(r->why, sizeof(r->why), "%s", why);
    const char *m = sy_jv_str(sy_jv_get(sy_jv_get(res, "header"), "member_id"));
    snprintf(r->member, sizeof(r->member), "%s", m ? m : "");
    if (r->cancel_me)
        sy_etcd_call_cancel(r->cancel_me);
    if (r->free_me)
        sy_etcd_free(r->free_me);
    event_base_loopbreak(r->base);
}

/* An answer with a Content-Length (free()). */
static char *resp(const char *status, const char *body)
{
    size_t cap = strlen(body) + 128;
    char *p = malloc(cap);
    snprintf(p, cap,
             "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             status, strlen(body), body);
    return p;
}

/* A chunked answer of one chunk per piece (static; the last one built). */
static const char *chunked(const char *const *pieces, size_t n)
{
    static char out[2048];
    size_t len =
        (size_t)snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, sizeof(out) - len, "%zx\r\n%s\r\n", strlen(pieces[i]),
                                pieces[i]);
    snprintf(out + len, sizeof(out) - len, "0\r\n\r\n");
    return out;
}

static void run(struct event_base *base)
{
    struct timeval tv = {5, 0};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void test_a_call_fails_over_past_refused_5xx_and_no_leader(void **state)
{
    struct event_base *base = event_base_new();
    char *ok = resp("200 OK", "{\"header\":{\"member_id\":\"3\"}}");
    char *no_leader =
        resp("400 Bad Request",
             "{\"error\":\"x\",\"message\":\"etcdserver: no leader\",\"code\":14}\r\n");
    char *unavailable = resp("503 Service Unavailable", "busy!");
    const struct answer busy[] = {{unavailable, false}};
    const struct answer leaderless[] = {{no_leader, false}};
    const struct answer good[] = {{ok, false}};
    struct fake f1, f2, f3;
    fake_start(&f1, base, busy, 1);
    fake_start(&f2, base, leaderless, 1);
    fake_start(&f3, base, good, 1);
    struct sy_etcd_endpoint eps[] = {endpoint_of(dead_addr()), endpoint_of(f1.addr),
                                     endpoint_of(f2.addr), endpoint_of(f3.addr)};
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = 4, .timeout_ms = 3000};
    struct sy_etcd *e = sy_etcd_new(base, &o);
    struct result r = {.base = base};
    sy_etcd_call(e, "/v3/kv/range", "{}", 2, on_result, &r);
    r.returned = true;
    run(base);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.member, "3");
    assert_int_equal(sy_etcd_current(e), 3);
    assert_int_equal(f1.requests, 1);
    assert_int_equal(f2.requests, 1);
    sy_etcd_free(e);
    fake_stop(&f1);
    fake_stop(&f2);
    fake_stop(&f3);
    event_base_free(base);
    free(ok);
    free(no_leader);
    free(unavailable);
}

static void test_a_4xx_is_the_result_with_etcds_message(void **state)
{
    struct event_base *base = event_base_new();
    char *text = resp("400 Bad Request", "{\"error\":\"e\",\"message\":\"bad\",\"code\":3}");
    const struct answer bad[] = {{text, false}};
    struct fake f1, f2;
    fake_start(&f1, base, bad, 1);
    fake_start(&f2, base, bad, 1);
    struct sy_etcd_endpoint eps[] = {endpoint_of(f1.addr), endpoint_of(f2.addr)};
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = 2, .timeout_ms = 3000};
    struct sy_etcd *e = sy_etcd_new(base, &o);
    struct result r = {.base = base};
    sy_etcd_call(e, "/v3/kv/txn", "{}", 2, on_result, &r);
    r.returned = true;
    run(base);
    assert_int_equal(r.rc, SY_ERR_INVALID);
    assert_non_null(strstr(r.why, "HTTP 400: bad"));
    assert_int_equal(f1.requests + f2.requests, 1);
    sy_etcd_free(e);
    fake_stop(&f1);
    fake_stop(&f2);
    event_base_free(base);
    free(text);
}

static void test_keep_alive_serves_calls_in_turn_on_one_connection(void **state)
{
    struct event_base *base = event_base_new();
    static const char *const pieces[] = {"{\"a\":", "\"1\"}", "\n"};
    char *second = resp("200 OK", "{\"a\":\"2\"}");
    const struct answer script[] = {{chunked(pieces, 3), false}, {second, false}};
    struct fake f;
    fake_start(&f, base, script, 2);
    struct sy_etcd_endpoint eps[] = {endpoint_of(f.addr)};
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 3000};
    struct sy_etcd *e = sy_etcd_new(base, &o);
    for (int i = 0; i < 3; i++) {
        struct result r = {.base = base};
        sy_etcd_call(e, "/v3/kv/range", "{}", 2, on_result, &r);
        r.returned = true;
        run(base);
        assert_int_equal(r.rc, 0);
    }
    assert_int_equal(f.accepts, 1);
    assert_int_equal(f.requests, 3);
    sy_etcd_free(e);
    fake_stop(&f);
    event_base_free(base);
    free(second);
}

static void test_the_deadline_answers_again_when_nobody_listens(void **state)
{
    struct event_base *base = event_base_new();
    struct sy_etcd_endpoint eps[] = {endpoint_of(dead_addr()), endpoint_of(dead_addr())};
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = 2, .timeout_ms = 200};
    struct sy_etcd *e = sy_etcd_new(base, &o);
    struct result r = {.base = base};
    sy_etcd_call(e, "/v3/kv/range", "{}", 2, on_result, &r);
    r.returned = true;
    run(base);
    assert_int_equal(r.rc, SY_ERR_AGAIN);
    assert_non_null(strstr(r.why, "unreachable"));
    sy_etcd_free(e);
    event_base_free(base);
}

static void test_a_callback_may_cancel_its_call_or_free_the_client(void **state)
{
    struct event_base *base = event_base_new();
    static const struct answer ok[] = {{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false}};
    struct fake f;
    fake_start(&f, base, ok, 1);
    struct sy_etcd_endpoint eps[] = {endpoint_of(f.addr)};
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 3000};
    struct sy_etcd *e = sy_etcd_new(base, &o);
    struct result r = {.base = base}, other = {.base = base};
    r.cancel_me = sy_etcd_call(e, "/v3/kv/range", "{}", 2, on_result, &r);
    r.returned = true;
    run(base);
    assert_int_equal(r.calls, 1);
    /* one call frees the client while another is on its way: that one is never called */
    r = (struct result){.base = base, .free_me = e};
    other.free_me = e;
    sy_etcd_call(e, "/v3/kv/range", "{}", 2, on_result, &r);
    sy_etcd_call(e, "/v3/kv/range", "{}", 2, on_result, &other);
    r.returned = other.returned = true;
    run(base);
    assert_int_equal(r.calls + other.calls, 1);
    /* a call cancelled before it ran is never called */
    e = sy_etcd_new(base, &o);
    r = (struct result){.base = base};
    sy_etcd_call_cancel(sy_etcd_call(e, "/v3/kv/range", "{}", 2, on_result, &r));
    struct timeval tv = {0, 50000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    assert_int_equal(r.calls, 0);
    sy_etcd_free(e);
    fake_stop(&f);
    event_base_free(base);
}

struct watch_log {
    struct event_base *base;
    int msgs, ends;
    uint64_t revs[8];
    char why[400];
    struct sy_etcd_watch *cancel_after_first;
};

static void on_msg(const struct sy_jv *result, void *arg)
{
    struct watch_log *l = arg;
    l->revs[l->msgs++ & 7] = sy_etcd_u64(sy_jv_get(sy_jv_get(result, "header"), "revision"), 0);
    if (l->cancel_after_first) {
        sy_etcd_watch_cancel(l->cancel_after_first);
        event_base_loopbreak(l->base);
    }
}

static void on_end(const char *why, void *arg)
{
    struct watch_log *l = arg;
    l->ends++;
    snprintf(l->why, sizeof(l->why), "%s", why);
    event_base_loopbreak(l->base);
}

static void test_a_watch_delivers_lines_across_chunks_then_ends(void **state)
{
    struct event_base *base = event_base_new();
    /* lines split inside chunks, one ending in CRLF */
    static const char *const pieces[] = {"{\"result\":{\"",
                                         "header\":{\"revision\":\"2\"}}}\n{\"resul",
                                         "t\":{\"header\":{\"revision\":\"3\"}}}\r\n"};
    const struct answer stream[] = {{chunked(pieces, 3), true}};
    struct fake f;
    fake_start(&f, base, stream, 1);
    struct sy_etcd_endpoint eps[] = {endpoint_of(f.addr)};
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 3000};
    struct sy_etcd *e = sy_etcd_new(base, &o);
    struct watch_log l = {.base = base};
    sy_etcd_watch(e, "{}", 2, on_msg, on_end, &l);
    run(base);
    assert_int_equal(l.msgs, 2);
    assert_int_equal(l.revs[0], 2);
    assert_int_equal(l.revs[1], 3);
    assert_int_equal(l.ends, 1);
    assert_non_null(strstr(l.why, "ended"));
    /* cancelled from inside its first message: no second message, no end */
    l = (struct watch_log){.base = base};
    l.cancel_after_first = sy_etcd_watch(e, "{}", 2, on_msg, on_end, &l);
    run(base);
    struct timeval tv = {0, 50000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    assert_int_equal(l.msgs, 1);
    assert_int_equal(l.ends, 0);
    sy_etcd_free(e);
    fake_stop(&f);
    event_base_free(base);
}

static void test_a_watch_line_that_is_not_json_ends_it(void **state)
{
    struct event_base *base = event_base_new();
    static const struct answer stream[] = {
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnope\r\n1\r\n\n\r\n", false}};
    struct fake f;
    fake_start(&f, base, stream, 1);
    struct sy_etcd_endpoint eps[] = {endpoint_of(f.addr)};
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = 1, .timeout_ms = 3000};
    struct sy_etcd *e = sy_etcd_new(base, &o);
    struct watch_log l = {.base = base};
    sy_etcd_watch(e, "{}", 2, on_msg, on_end, &l);
    run(base);
    assert_int_equal(l.ends, 1);
    assert_non_null(strstr(l.why, "not JSON"));
    sy_etcd_free(e);
    fake_stop(&f);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_matches_rfc4648_and_reads_back),
        cmocka_unit_test(test_unb64_refuses_what_is_not_padded_base64),
        cmocka_unit_test(test_prefix_end_increments_the_last_byte_below_0xff),
        cmocka_unit_test(test_u64_reads_strings_and_numbers_and_defaults_on_anything_else),
        cmocka_unit_test(test_head_reads_status_and_framing),
        cmocka_unit_test(test_head_is_incomplete_at_every_prefix),
        cmocka_unit_test(test_head_refuses_malformed_fields_and_status_lines),
        cmocka_unit_test(test_head_over_16_kib_is_refused_and_just_under_is_read),
        cmocka_unit_test(test_chunks_decode_at_every_split),
        cmocka_unit_test(test_chunks_stop_after_the_last_chunk),
        cmocka_unit_test(test_chunks_refuse_bad_hex_long_sizes_and_missing_crlf),
        cmocka_unit_test(test_chunks_refuse_oversized_extensions_and_trailers),
        cmocka_unit_test(test_a_call_fails_over_past_refused_5xx_and_no_leader),
        cmocka_unit_test(test_a_4xx_is_the_result_with_etcds_message),
        cmocka_unit_test(test_keep_alive_serves_calls_in_turn_on_one_connection),
        cmocka_unit_test(test_the_deadline_answers_again_when_nobody_listens),
        cmocka_unit_test(test_a_callback_may_cancel_its_call_or_free_the_client),
        cmocka_unit_test(test_a_watch_delivers_lines_across_chunks_then_ends),
        cmocka_unit_test(test_a_watch_line_that_is_not_json_ends_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
