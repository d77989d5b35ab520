/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the HTTP/1.1 parser. The first byte picks the limits, whether the
 * response answers a HEAD request, and the seed for split sizes; the rest goes through the
 * request parser, the response parser and the chunked decoder. Besides the sanitizers, it
 * checks the contracts: results never exceed the input, slices stay inside the head, errors
 * carry a reason, a prefix of the input never contradicts the whole (a complete head stays
 * complete at the same length, an incomplete one is incomplete at every prefix), and the
 * chunked decoder gives the same bytes, trailers and outcome whether the body arrives whole or
 * in random pieces. A broken contract traps. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        __builtin_trap();
}

static bool inside(struct sy_slice s, const char *p, size_t n)
{
    return s.len == 0 || (s.p >= p && s.len <= n && s.p - p <= (ptrdiff_t)(n - s.len));
}

static struct sy_header hdrs[64];

static void check_request(const char *p, size_t len, const struct sy_h1_limits *lim, size_t k)
{
    struct sy_h1_request req = {.headers = hdrs};
    ssize_t n = sy_h1_parse_request(p, len, lim, &req);
    check(n <= (ssize_t)len);
    if (n > 0) {
        size_t h = (size_t)n;
        check(h <= lim->max_head && req.why == NULL);
        check(req.minor == 0 || req.minor == 1);
        check(req.framing == SY_H1_BODY_NONE || req.framing == SY_H1_BODY_LENGTH ||
              req.framing == SY_H1_BODY_CHUNKED);
        check(req.method.len > 0 && inside(req.method, p, h));
        check(req.target.len > 0 && inside(req.target, p, h));
        check(inside(req.host, p, h) && inside(req.upgrade, p, h));
        check(req.n_headers <= lim->max_headers);
        for (size_t i = 0; i < req.n_headers; i++)
            check(req.headers[i].name.len > 0 && inside(req.headers[i].name, p, h) &&
                  inside(req.headers[i].value, p, h));
        check(req.framing != SY_H1_BODY_LENGTH || req.content_length <= INT64_MAX);
        /* Bytes after the head change nothing; a shorter prefix is incomplete. */
        check(sy_h1_parse_request(p, h, lim, &req) == n);
        check(sy_h1_parse_request(p, h - 1, lim, &req) == 0);
        check(sy_h1_parse_request(p, k % h, lim, &req) == 0);
    } else if (n < 0) {
        check(req.why != NULL);
        check(n == -400 || n == -414 || n == -417 || n == -431 || n == -501 || n == -505);
        /* A prefix may be incomplete or already wrong, never complete. */
        if (len)
            check(sy_h1_parse_request(p, k % len, lim, &req) <= 0);
    } else {
        check(len <= lim->max_head);
        if (len)
            check(sy_h1_parse_request(p, k % len, lim, &req) == 0);
    }
}

static void check_response(const char *p, size_t len, const struct sy_h1_limits *lim, bool head,
                           size_t k)
{
    struct sy_h1_response resp = {.headers = hdrs};
    ssize_t n = sy_h1_parse_response(p, len, lim, head, &resp);
    check(n <= (ssize_t)len);
    if (n > 0) {
        size_t h = (size_t)n;
        check(h <= lim->max_head && resp.why == NULL);
        check(resp.status >= 100 && resp.status <= 599);
        check(inside(resp.reason, p, h) && resp.n_headers <= lim->max_headers);
        for (size_t i = 0; i < resp.n_headers; i++)
            check(inside(resp.headers[i].name, p, h) && inside(resp.headers[i].value, p, h));
        if (head || resp.status < 200 || resp.status == 204 || resp.status == 304)
            check(resp.framing == SY_H1_BODY_NONE);
        check(resp.framing != SY_H1_BODY_CLOSE || !resp.keep_alive);
        check(sy_h1_parse_response(p, h, lim, head, &resp) == n);
        check(sy_h1_parse_response(p, h - 1, lim, head, &resp) == 0);
        check(sy_h1_parse_response(p, k % h, lim, head, &resp) == 0);
    } else if (n < 0) {
        check(n == -502 && resp.why != NULL);
        if (len)
            check(sy_h1_parse_response(p, k % len, lim, head, &resp) <= 0);
    } else {
        check(len <= lim->max_head);
    }
}

struct outcome {
    int rc; /* 0 done, SY_ERR_AGAIN out of input, SY_ERR_INVALID */
    size_t used, n_out, n_trailers;
    uint64_t trailer_sum;
};

static uint32_t next_rand(uint32_t *s)
{
    /* xorshift32: deterministic per input */
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Decodes p[0..len) as the proxy would: `have` bytes have arrived, and each call sees a random
 * part of them (an evbuffer chain segment). With seed 0 everything arrives at once. */
static void decode(const char *p, size_t len, uint32_t seed, size_t max_trailer, char *out,
                   struct outcome *o)
{
    struct sy_h1_chunked c;
    sy_h1_chunked_init(&c, max_trailer);
    memset(o, 0, sizeof(*o));
    size_t pos = 0, have = seed ? 0 : len;
    for (;;) {
        size_t avail = have - pos;
        size_t w = seed && avail ? 1 + next_rand(&seed) % avail : avail;
        enum sy_h1_chunk_event ev;
        size_t n = 0;
        int rc = sy_h1_chunked_step(&c, p + pos, w, &ev, &n);
        if (rc == SY_ERR_AGAIN && w < avail)
            rc = sy_h1_chunked_step(&c, p + pos, w = avail, &ev, &n);
        if (rc == SY_ERR_AGAIN) {
            if (have == len) {
                o->rc = rc;
                return;
            }
            have += 1 + next_rand(&seed) % 97;
            if (have > len)
                have = len;
            continue;
        }
        if (rc != 0) {
            check(rc == SY_ERR_INVALID && c.why != NULL);
            o->rc = rc;
            return;
        }
        check(n > 0 && n <= w);
        switch (ev) {
        case SY_H1_CHUNK_FRAMING:
            break;
        case SY_H1_CHUNK_DATA:
            memcpy(out + o->n_out, p + pos, n);
            o->n_out += n;
            break;
        case SY_H1_CHUNK_TRAILER:
            check(c.trailer.name.len > 0 && inside(c.trailer.name, p + pos, n) &&
                  inside(c.trailer.value, p + pos, n));
            o->n_trailers++;
            o->trailer_sum = o->trailer_sum * 31 + c.trailer.name.len * 7 + c.trailer.value.len;
            break;
        case SY_H1_CHUNK_DONE:
            o->used = pos + n;
            o->rc = 0;
            check(sy_h1_chunked_step(&c, p + pos, w, &ev, &n) == SY_ERR_INVALID);
            return;
        default:
            check(false);
        }
        pos += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    struct sy_h1_limits lim = {
        .max_request_line = 16 + (ctl & 3u) * 300,
        .max_head = 64 + ((ctl >> 2) & 3u) * 1000,
        .max_headers = 1 + ((ctl >> 4) & 3u) * 20,
    };
    size_t k = (size_t)ctl * 2654435761u;
    check_request(p, len, &lim, k);
    check_response(p, len, &lim, ctl & 0x40, k);

    /* The decoder gives the same result whole and in pieces. */
    char *a = malloc(len + 1), *b = malloc(len + 1);
    size_t max_trailer = (ctl & 0x80) ? 0 : 64;
    struct outcome whole, split;
    decode(p, len, 0, max_trailer, a, &whole);
    decode(p, len, 0x9e3779b9u ^ ctl ^ (uint32_t)len, max_trailer, b, &split);
    check(whole.rc == split.rc && whole.n_out == split.n_out);
    check(memcmp(a, b, whole.n_out) == 0);
    check(whole.rc != 0 || (whole.used == split.used && whole.n_trailers == split.n_trailers &&
                            whole.trailer_sum == split.trailer_sum));
    free(a);
    free(b);
    return 0;
}
