/* SPDX-License-Identifier: MIT */
/* Unit tests for the HTTP/1.1 parser: table-driven request and response heads (one case per
 * rejection, with the status it must produce), every byte class checked against the RFC
 * grammar, every prefix of a valid head reported as incomplete, and the chunked decoder fed
 * whole, byte by byte and in every split size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/h1.h"

#define S(lit) lit, sizeof(lit) - 1

static const struct sy_h1_limits lim = {1024, 4096, 32};
static struct sy_header hdrs[64];

static ssize_t parse_req(const char *p, size_t len, struct sy_h1_request *req)
{
    req->headers = hdrs;
    return sy_h1_parse_request(p, len, &lim, req);
}

static ssize_t parse_resp(const char *p, size_t len, bool head, struct sy_h1_response *resp)
{
    resp->headers = hdrs;
    return sy_h1_parse_response(p, len, &lim, head, resp);
}

static bool slice_eq(struct sy_slice s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

#define assert_slice(s, want)                                                                      \
    do {                                                                                           \
        if (!slice_eq((s), (want)))                                                                \
            fail_msg("slice '%.*s' != '%s'", (int)(s).len, (s).p, (want));                         \
    } while (0)

/* -- origin-form ------------------------------------------------------------------------- */

/* Parses "GET TARGET HTTP/1.1" and returns the origin-form the upstream would get. */
static void origin_form_of(const char *target, char *out, size_t size)
{
    char r[512];
    snprintf(r, sizeof(r), "GET %s HTTP/1.1\r\nHost: h.test\r\n\r\n", target);
    struct sy_h1_request req;
    assert_true(parse_req(r, strlen(r), &req) > 0);
    bool slash = true;
    struct sy_slice o = sy_h1_origin_form(req.target, &slash);
    snprintf(out, size, "%s%.*s", slash ? "/" : "", (int)o.len, o.p);
}

static void test_origin_form_of_absolute_targets(void **state)
{
    static const char *const cases[][2] = {
        {"/a/b?c", "/a/b?c"},
        {"http://a", "/"},
        {"http://a/", "/"},
        {"http://a/p?q=1", "/p?q=1"},
        {"http://a:8080/p", "/p"},
        {"HTTPS://a.test/x", "/x"},
        /* a query with no path: the path is "/" (RFC 9112 §3.2.1), not the authority */
        {"http://a?x", "/?x"},
        {"http://a:81?x=1&y", "/?x=1&y"},
        {"http://[::1]:81?x", "/?x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char got[256];
        origin_form_of(cases[i][0], got, sizeof(got));
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("origin-form of '%s' is '%s', want '%s'", cases[i][0], got, cases[i][1]);
    }
}

static void test_origin_form_of_asterisk_is_kept(void **state)
{
    bool slash = true;
    struct sy_slice o = sy_h1_origin_form(sy_slice_of("*", 1), &slash);
    assert_false(slash);
    assert_slice(o, "*");
}

/* -- good requests ------------------------------------------------------------------------- */

static void test_get_is_parsed_into_slices(void **state)
{
    static const char r[] = "GET /a/b?c=d HTTP/1.1\r\nHost: app.test\r\nUser-Agent:  x y \t\r\n"
                            "X-Empty:\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), sizeof(r) - 1);
    assert_slice(req.method, "GET");
    assert_slice(req.target, "/a/b?c=d");
    assert_int_equal(req.minor, 1);
    assert_int_equal(req.n_headers, 3);
    assert_slice(req.headers[0].name, "Host");
    assert_slice(req.headers[0].value, "app.test");
    assert_slice(req.headers[1].value, "x y");
    assert_slice(req.headers[2].name, "X-Empty");
    assert_int_equal(req.headers[2].value.len, 0);
    assert_slice(req.host, "app.test");
    assert_int_equal(req.framing, SY_H1_BODY_NONE);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_int_equal(req.conn_flags, 0);
    assert_int_equal(req.upgrade.len, 0);
    assert_null(req.why);
}

static void test_post_with_content_length_has_length_framing(void **state)
{
    static const char r[] = "POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 0005\r\n\r\nhello";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), sizeof(r) - 1 - 5);
    assert_int_equal(req.framing, SY_H1_BODY_LENGTH);
    assert_int_equal(req.content_length, 5);
}

static void test_equal_content_lengths_are_accepted(void **state)
{
    static const char a[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n";
    static const char b[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                            "Content-Length: 5\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(a, sizeof(a) - 1, &req), sizeof(a) - 1);
    assert_int_equal(req.content_length, 5);
    assert_int_equal(parse_req(b, sizeof(b) - 1, &req), sizeof(b) - 1);
    assert_int_equal(req.framing, SY_H1_BODY_LENGTH);
    assert_int_equal(req.content_length, 5);
}

static void test_largest_content_length_is_int64_max(void **state)
{
    static const char r[] =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), sizeof(r) - 1);
    assert_int_equal(req.content_length, INT64_MAX);
}

static void test_chunked_is_case_insensitive_and_may_carry_ows(void **state)
{
    static const char a[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n";
    static const char b[] = "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: , chunked \r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(a, sizeof(a) - 1, &req), sizeof(a) - 1);
    assert_int_equal(req.framing, SY_H1_BODY_CHUNKED);
    assert_int_equal(parse_req(b, sizeof(b) - 1, &req), sizeof(b) - 1);
    assert_int_equal(req.framing, SY_H1_BODY_CHUNKED);
}

static void test_pipelined_bytes_are_not_part_of_the_head(void **state)
{
    static const char r[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), 28);
    assert_slice(req.target, "/1");
    assert_int_equal(parse_req(r + 28, sizeof(r) - 1 - 28, &req), 28);
    assert_slice(req.target, "/2");
}

static void test_absolute_form_takes_host_from_the_target(void **state)
{
    static const char a[] = "GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: other.test\r\n\r\n";
    static const char b[] = "GET HTTPS://b.test?x HTTP/1.1\r\nHost: b.test\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(a, sizeof(a) - 1, &req), sizeof(a) - 1);
    assert_slice(req.target, "http://Example.com:8080/p?q");
    assert_slice(req.host, "Example.com:8080");
    assert_int_equal(parse_req(b, sizeof(b) - 1, &req), sizeof(b) - 1);
    assert_slice(req.host, "b.test");
}

static void test_http10_closes_unless_keep_alive_is_asked(void **state)
{
    static const char a[] = "GET / HTTP/1.0\r\n\r\n";
    static const char b[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(a, sizeof(a) - 1, &req), sizeof(a) - 1);
    assert_int_equal(req.minor, 0);
    assert_false(req.keep_alive);
    assert_int_equal(req.host.len, 0);
    assert_int_equal(parse_req(b, sizeof(b) - 1, &req), sizeof(b) - 1);
    assert_true(req.keep_alive);
    assert_int_equal(req.conn_flags, SY_H1_CONN_KEEP_ALIVE);
}

static void test_connection_tokens_set_flags(void **state)
{
    static const char a[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                            "Connection: CLOSE\r\nUpgrade: websocket\r\n\r\n";
    static const char b[] = "GET / HTTP/1.0\r\nConnection: keep-alive,close\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(a, sizeof(a) - 1, &req), sizeof(a) - 1);
    assert_int_equal(req.conn_flags, SY_H1_CONN_CLOSE | SY_H1_CONN_KEEP_ALIVE | SY_H1_CONN_UPGRADE);
    assert_false(req.keep_alive);
    assert_slice(req.upgrade, "websocket");
    assert_int_equal(parse_req(b, sizeof(b) - 1, &req), sizeof(b) - 1);
    assert_false(req.keep_alive);
}

static void test_expect_100_continue_is_recognised_on_http11_only(void **state)
{
    static const char a[] = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
                            "Content-Length: 1\r\n\r\n";
    static const char b[] = "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(a, sizeof(a) - 1, &req), sizeof(a) - 1);
    assert_true(req.expect_continue);
    assert_int_equal(parse_req(b, sizeof(b) - 1, &req), sizeof(b) - 1);
    assert_false(req.expect_continue);
}

static void test_options_asterisk_and_connect_authority_are_accepted(void **state)
{
    static const char a[] = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char b[] = "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n";
    static const char c[] = "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(a, sizeof(a) - 1, &req), sizeof(a) - 1);
    assert_slice(req.target, "*");
    assert_int_equal(parse_req(b, sizeof(b) - 1, &req), sizeof(b) - 1);
    assert_slice(req.host, "app.test:443");
    assert_int_equal(parse_req(c, sizeof(c) - 1, &req), sizeof(c) - 1);
    assert_slice(req.host, "[::1]:443");
}

static void test_empty_lines_before_the_request_line_are_skipped(void **state)
{
    static const char r[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), sizeof(r) - 1);
    assert_slice(req.method, "GET");
}

static void test_obs_text_is_allowed_in_field_values(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), sizeof(r) - 1);
    assert_slice(req.headers[1].value, "caf\xc3\xa9");
}

/* Every excluded byte (controls but HTAB, and DEL) at every offset of a long value, next to
 * obs-text, is refused, and every allowed byte at every offset is kept (a guard for any
 * faster scan of values). */
static void test_every_value_byte_at_every_offset_of_a_long_value(void **state)
{
    char r[256], value[40];
    for (int b = 0; b < 256; b++) {
        bool ok = b == '\t' || b == ' ' || (b >= 0x21 && b != 0x7f);
        for (size_t at = 0; at < sizeof(value); at++) {
            for (size_t i = 0; i < sizeof(value); i++)
                value[i] = (char)(i % 2 ? 0xe9 : 'v');
            value[at] = (char)b;
            if (b == '\r' || ((b == ' ' || b == '\t') && (at == 0 || at == sizeof(value) - 1)))
                continue; /* a line end, or OWS that is trimmed: other tests */
            int n = sprintf(r, "GET / HTTP/1.1\r\nHost: a\r\nX-V: ");
            memcpy(r + n, value, sizeof(value));
            n += (int)sizeof(value);
            n += sprintf(r + n, "\r\n\r\n");
            struct sy_h1_request req;
            ssize_t got = parse_req(r, (size_t)n, &req);
            if (ok) {
                if (got != n)
                    fail_msg("byte 0x%02x at %zu refused (%zd)", b, at, got);
                assert_int_equal(req.headers[1].value.len, sizeof(value));
                assert_memory_equal(req.headers[1].value.p, value, sizeof(value));
            } else if (got >= 0) {
                fail_msg("byte 0x%02x at %zu accepted", b, at);
            }
        }
    }
}

static void test_empty_host_is_allowed(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost:\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), sizeof(r) - 1);
    assert_int_equal(req.host.len, 0);
}

/* Builds `GET /<target_pad> HTTP/1.1\r\nHost: a\r\n` + n_extra headers + padding header, so
 * that the head is exactly head_len bytes (when pad allows). */
static size_t build(char *buf, size_t cap, size_t target_pad, size_t n_extra, size_t head_len)
{
    size_t n = (size_t)snprintf(buf, cap, "GET /");
    memset(buf + n, 'a', target_pad);
    n += target_pad;
    n += (size_t)snprintf(buf + n, cap - n, " HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 0; i < n_extra; i++)
        n += (size_t)snprintf(buf + n, cap - n, "X-%zu: v\r\n", i);
    if (head_len) {
        /* "X-Pad: " + pad + "\r\n\r\n" */
        size_t pad = head_len - n - 7 - 4;
        memcpy(buf + n, "X-Pad: ", 7);
        n += 7;
        memset(buf + n, 'p', pad);
        memcpy(buf + n + pad, "\r\n", 2);
        n += pad + 2;
    }
    memcpy(buf + n, "\r\n", 2);
    return n + 2;
}

static void test_heads_at_the_limits_are_accepted(void **state)
{
    static char buf[8192];
    struct sy_h1_request req;
    /* request line of exactly max_request_line bytes */
    size_t n = build(buf, sizeof(buf), lim.max_request_line - 14, 0, 0);
    assert_int_equal(parse_req(buf, n, &req), n);
    assert_int_equal(req.target.len + 13, lim.max_request_line);
    /* max_headers fields */
    n = build(buf, sizeof(buf), 1, lim.max_headers - 1, 0);
    assert_int_equal(parse_req(buf, n, &req), n);
    assert_int_equal(req.n_headers, lim.max_headers);
    /* a head of exactly max_head bytes */
    n = build(buf, sizeof(buf), 1, 0, lim.max_head);
    assert_int_equal(n, lim.max_head);
    assert_int_equal(parse_req(buf, n, &req), n);
}

static void test_heads_one_past_the_limits_are_rejected(void **state)
{
    static char buf[8192];
    struct sy_h1_request req;
    size_t n = build(buf, sizeof(buf), lim.max_request_line - 13, 0, 0);
    assert_int_equal(parse_req(buf, n, &req), -414);
    n = build(buf, sizeof(buf), 1, lim.max_headers, 0);
    assert_int_equal(parse_req(buf, n, &req), -431);
    n = build(buf, sizeof(buf), 1, 0, lim.max_head + 1);
    assert_int_equal(parse_req(buf, n, &req), -431);
    assert_non_null(req.why);
}

static void test_incomplete_head_over_limit_is_431_before_it_ends(void **state)
{
    static char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ");
    memset(buf + n, 'p', sizeof(buf) - n);
    struct sy_h1_request req;
    assert_int_equal(parse_req(buf, lim.max_head, &req), 0);
    assert_int_equal(parse_req(buf, lim.max_head + 1, &req), -431);
    assert_int_equal(parse_req(buf, sizeof(buf), &req), -431);
}

static void test_incomplete_request_line_over_limit_is_414_before_it_ends(void **state)
{
    static char buf[2048];
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', sizeof(buf) - 5);
    struct sy_h1_request req;
    assert_int_equal(parse_req(buf, lim.max_request_line, &req), 0);
    assert_int_equal(parse_req(buf, lim.max_request_line + 1, &req), -414);
    assert_string_equal(req.why, "request line too long");
}

/* -- rejected requests ---------------------------------------------------------------------- */

struct bad {
    const char *name;
    const char *raw;
    size_t len;
    ssize_t status;
};

#define BAD(name, raw, st)                                                                         \
    {                                                                                              \
        name, raw, sizeof(raw) - 1, st                                                             \
    }
#define H11(fields) "POST / HTTP/1.1\r\nHost: a\r\n" fields "\r\n"

static const struct bad bad_requests[] = {
    /* framing */
    BAD("cl and te", H11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), -400),
    BAD("te and cl", H11("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), -400),
    BAD("two different cl", H11("Content-Length: 5\r\nContent-Length: 6\r\n"), -400),
    BAD("cl list differs", H11("Content-Length: 5, 6\r\n"), -400),
    BAD("cl negative", H11("Content-Length: -1\r\n"), -400),
    BAD("cl plus sign", H11("Content-Length: +5\r\n"), -400),
    BAD("cl hex", H11("Content-Length: 0x5\r\n"), -400),
    BAD("cl garbage", H11("Content-Length: 5a\r\n"), -400),
    BAD("cl inner space", H11("Content-Length: 1 2\r\n"), -400),
    BAD("cl empty", H11("Content-Length:\r\n"), -400),
    BAD("cl only commas", H11("Content-Length: ,\r\n"), -400),
    BAD("cl 2^63", H11("Content-Length: 9223372036854775808\r\n"), -400),
    BAD("cl 20 digits", H11("Content-Length: 99999999999999999999\r\n"), -400),
    BAD("te gzip", H11("Transfer-Encoding: gzip\r\n"), -501),
    BAD("te identity", H11("Transfer-Encoding: identity\r\n"), -501),
    BAD("te gzip then chunked", H11("Transfer-Encoding: gzip, chunked\r\n"), -501),
    BAD("te gzip line then chunked line",
        H11("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), -501),
    BAD("te xchunked", H11("Transfer-Encoding: xchunked\r\n"), -501),
    BAD("te chunked then gzip", H11("Transfer-Encoding: chunked, gzip\r\n"), -400),
    BAD("te chunked line then gzip line",
        H11("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), -400),
    BAD("te chunked twice", H11("Transfer-Encoding: chunked, chunked\r\n"), -400),
    BAD("te chunked in two lines",
        H11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), -400),
    BAD("te chunked with parameter", H11("Transfer-Encoding: chunked;q=1\r\n"), -400),
    BAD("te empty", H11("Transfer-Encoding:\r\n"), -400),
    BAD("te not a token", H11("Transfer-Encoding: chunked x\r\n"), -400),
    BAD("te on http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
    /* field syntax */
    BAD("space before colon", H11("Content-Length : 5\r\n"), -400),
    BAD("tab before colon", H11("Content-Length\t: 5\r\n"), -400),
    BAD("space before colon in host", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400),
    BAD("space in name", H11("X Foo: bar\r\n"), -400),
    BAD("empty name", H11(": bar\r\n"), -400),
    BAD("invalid name char", H11("X(: bar\r\n"), -400),
    BAD("no colon", H11("X-Foo\r\n"), -400),
    BAD("obs-fold", H11("X-Foo: a\r\n folded\r\n"), -400),
    BAD("obs-fold with tab", H11("X-Foo: a\r\n\tfolded\r\n"), -400),
    BAD("whitespace before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", -400),
    BAD("control char in value", H11("X-Foo: a\x01z\r\n"), -400),
    BAD("del in value", H11("X-Foo: a\x7fz\r\n"), -400),
    BAD("nul in value", H11("X-Foo: a\0z\r\n"), -400),
    BAD("nul in name", H11("X-F\0o: z\r\n"), -400),
    BAD("nul in target", "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("bare cr in value", H11("X-Foo: a\rb\r\n"), -400),
    BAD("bare cr ending a field", H11("X-Foo: a\rX-Bar: b\r\n"), -400),
    BAD("bare cr ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\rX", -400),
    BAD("bare cr in request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", -400),
    BAD("bare lf ending a field", H11("X-Foo: a\nX-Bar: b\r\n"), -400),
    BAD("bare lf ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", -400),
    BAD("bare lf everywhere", "GET / HTTP/1.1\nHost: a\n\n", -400),
    BAD("bare lf before request line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("malformed connection", H11("Connection: close;x\r\n"), -400),
    /* host */
    BAD("missing host", "GET / HTTP/1.1\r\n\r\n", -400),
    BAD("missing host with absolute form", "GET http://a/ HTTP/1.1\r\n\r\n", -400),
    BAD("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -400),
    BAD("two equal hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", -400),
    BAD("two hosts on http/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", -400),
    BAD("host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -400),
    BAD("host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -400),
    BAD("host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", -400),
    BAD("host with bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", -400),
    BAD("host with two colons", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", -400),
    BAD("host with bad escape", "GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", -400),
    BAD("host with unclosed bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", -400),
    /* request line */
    BAD("http/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505),
    BAD("http/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", -505),
    BAD("http/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", -505),
    BAD("h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", -505),
    BAD("lowercase http", "GET / http/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("version without dot", "GET / HTTP/11\r\nHost: a\r\n\r\n", -400),
    BAD("junk after version", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", -400),
    BAD("space after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400),
    BAD("http/0.9 request", "GET /\r\n\r\n", -400),
    BAD("bad method char", "GE@T / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("tab after method", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("non-ascii in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("asterisk for get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("authority form for get", "GET a.test:443 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("origin form for connect", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("connect without port", "CONNECT a.test HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("ftp scheme", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("userinfo in target", "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    BAD("empty authority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    /* limits */
    BAD("request line too long",
        "GET /" /* 1100 bytes: over the 1024 of the test limits */
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567"
        " HTTP/1.1\r\nHost: a\r\n\r\n",
        -414),
    /* expectations */
    BAD("unknown expectation", H11("Expect: 200-ok\r\n"), -417),
    BAD("100-continue with another expectation", H11("Expect: 100-continue, x\r\n"), -417),
};

static void test_each_bad_request_gets_its_status(void **state)
{
    for (size_t i = 0; i < sizeof(bad_requests) / sizeof(bad_requests[0]); i++) {
        const struct bad *b = &bad_requests[i];
        struct sy_h1_request req;
        ssize_t n = parse_req(b->raw, b->len, &req);
        if (n != b->status)
            fail_msg("%s: got %zd, want %zd (%s)", b->name, n, b->status,
                     req.why ? req.why : "no reason");
        if (!req.why)
            fail_msg("%s: no reason given", b->name);
    }
}

static void test_too_many_headers_is_431(void **state)
{
    static char buf[4096];
    size_t n = build(buf, sizeof(buf), 1, 40, 0);
    struct sy_h1_request req;
    assert_int_equal(parse_req(buf, n, &req), -431);
    assert_string_equal(req.why, "too many header fields");
}

/* -- byte classes ---------------------------------------------------------------------------- */

static bool rfc_tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool rfc_field_char(int c)
{
    return c == ' ' || c == '\t' || (c >= 0x21 && c <= 0x7e) || c >= 0x80;
}

static void test_field_value_bytes_follow_rfc9110(void **state)
{
    for (int c = 0; c < 256; c++) {
        char r[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a?b\r\n\r\n";
        *strchr(r, '?') = (char)c;
        struct sy_h1_request req;
        bool ok = parse_req(r, sizeof(r) - 1, &req) > 0;
        if (ok != rfc_field_char(c))
            fail_msg("byte 0x%02x in a field value: accepted=%d", c, ok);
    }
}

/* As for values: every byte at every offset of a long reason phrase. */
static void test_reason_bytes_at_every_offset(void **state)
{
    const size_t vlen = 40;
    for (size_t at = 0; at < vlen; at++) {
        for (int c = 0; c < 256; c++) {
            char r[128];
            memcpy(r, "HTTP/1.1 200 ", 13);
            memset(r + 13, 'r', vlen);
            r[13 + at] = (char)c;
            static const char rest[] = "\r\nContent-Length: 0\r\n\r\n";
            memcpy(r + 13 + vlen, rest, sizeof(rest) - 1);
            struct sy_h1_response resp;
            bool ok = parse_resp(r, 13 + vlen + sizeof(rest) - 1, false, &resp) > 0;
            if (ok != rfc_field_char(c))
                fail_msg("byte 0x%02x at offset %zu of a reason: accepted=%d", c, at, ok);
        }
    }
}

static void test_field_name_bytes_are_tchars(void **state)
{
    for (int c = 0; c < 256; c++) {
        char r[] = "GET / HTTP/1.1\r\nHost: a\r\nX?Y: v\r\n\r\n";
        *strchr(r, '?') = (char)c;
        struct sy_h1_request req;
        bool ok = parse_req(r, sizeof(r) - 1, &req) > 0 && req.headers[1].name.len == 3;
        if (ok != rfc_tchar(c))
            fail_msg("byte 0x%02x in a field name: accepted=%d", c, ok);
    }
}

static void test_method_bytes_are_tchars(void **state)
{
    for (int c = 0; c < 256; c++) {
        char r[] = "G?T / HTTP/1.1\r\nHost: a\r\n\r\n";
        r[1] = (char)c;
        struct sy_h1_request req;
        bool ok = parse_req(r, sizeof(r) - 1, &req) > 0;
        if (ok != rfc_tchar(c))
            fail_msg("byte 0x%02x in a method: accepted=%d", c, ok);
    }
}

static void test_target_bytes_are_visible_ascii(void **state)
{
    for (int c = 0; c < 256; c++) {
        char r[] = "GET /a?b HTTP/1.1\r\nHost: a\r\n\r\n";
        r[6] = (char)c;
        struct sy_h1_request req;
        bool ok = parse_req(r, sizeof(r) - 1, &req) > 0;
        if (ok != (c > 0x20 && c < 0x7f))
            fail_msg("byte 0x%02x in a target: accepted=%d", c, ok);
    }
}

/* -- incomplete heads ------------------------------------------------------------------------ */

static const char *const good_requests[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "\r\nPOST /x?y HTTP/1.1\r\nHost: a.test:8080\r\nContent-Length: 3\r\nX: y \r\n\r\n",
    ("PUT /c HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
     "Connection: keep-alive, upgrade\r\nUpgrade: h2c\r\n\r\n"),
    "GET http://a.test/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n",
};

static void test_every_prefix_of_a_valid_request_is_incomplete(void **state)
{
    for (size_t i = 0; i < sizeof(good_requests) / sizeof(good_requests[0]); i++) {
        const char *r = good_requests[i];
        size_t n = strlen(r);
        struct sy_h1_request req;
        assert_int_equal(parse_req(r, n, &req), n);
        for (size_t k = 0; k < n; k++) {
            ssize_t got = parse_req(r, k, &req);
            if (got != 0)
                fail_msg("request %zu, prefix %zu: got %zd (%s)", i, k, got, req.why);
        }
    }
}

/* -- responses ------------------------------------------------------------------------------- */

static void test_response_with_content_length_has_length_framing(void **state)
{
    static const char r[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: blue-1\r\n\r\nhello";
    struct sy_h1_response resp;
    assert_int_equal(parse_resp(r, sizeof(r) - 1, false, &resp), sizeof(r) - 1 - 5);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.minor, 1);
    assert_slice(resp.reason, "OK");
    assert_int_equal(resp.n_headers, 2);
    assert_int_equal(resp.framing, SY_H1_BODY_LENGTH);
    assert_int_equal(resp.content_length, 5);
    assert_true(resp.keep_alive);
}

static void test_chunked_response_has_chunked_framing(void **state)
{
    static const char r[] = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct sy_h1_response resp;
    assert_int_equal(parse_resp(r, sizeof(r) - 1, false, &resp), sizeof(r) - 1);
    assert_int_equal(resp.framing, SY_H1_BODY_CHUNKED);
    assert_true(resp.keep_alive);
}

static void test_response_without_length_is_delimited_by_close(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
    struct sy_h1_response resp;
    assert_int_equal(parse_resp(r, sizeof(r) - 1, false, &resp), sizeof(r) - 1);
    assert_int_equal(resp.framing, SY_H1_BODY_CLOSE);
    assert_false(resp.keep_alive);
}

static void test_bodiless_responses_have_no_framing(void **state)
{
    static const struct {
        const char *raw;
        bool head;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true},
        {"HTTP/1.1 204 No Content\r\n\r\n", false},
        {"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false},
        {"HTTP/1.1 100 Continue\r\n\r\n", false},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false},
        {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sy_h1_response resp;
        size_t n = strlen(cases[i].raw);
        ssize_t got = parse_resp(cases[i].raw, n, cases[i].head, &resp);
        if (got != (ssize_t)n || resp.framing != SY_H1_BODY_NONE || !resp.keep_alive)
            fail_msg("case %zu: got %zd framing %d (%s)", i, got, resp.framing, resp.why);
    }
}

static void test_response_keep_alive_follows_version_and_connection(void **state)
{
    struct sy_h1_response resp;
    static const char a[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    static const char b[] =
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
    static const char c[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_int_equal(parse_resp(a, sizeof(a) - 1, false, &resp), sizeof(a) - 1);
    assert_int_equal(resp.minor, 0);
    assert_false(resp.keep_alive);
    assert_int_equal(parse_resp(b, sizeof(b) - 1, false, &resp), sizeof(b) - 1);
    assert_true(resp.keep_alive);
    assert_int_equal(parse_resp(c, sizeof(c) - 1, false, &resp), sizeof(c) - 1);
    assert_false(resp.keep_alive);
    assert_int_equal(resp.conn_flags, SY_H1_CONN_CLOSE);
}

static void test_empty_reason_phrase_is_accepted(void **state)
{
    static const char r[] = "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n";
    struct sy_h1_response resp;
    assert_int_equal(parse_resp(r, sizeof(r) - 1, false, &resp), sizeof(r) - 1);
    assert_int_equal(resp.status, 404);
    assert_int_equal(resp.reason.len, 0);
}

static const struct bad bad_responses[] = {
    BAD("no space after status", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", -502),
    BAD("http/2.0", "HTTP/2.0 200 OK\r\n\r\n", -502),
    BAD("http/1.2", "HTTP/1.2 200 OK\r\n\r\n", -502),
    BAD("lowercase http", "http/1.1 200 OK\r\n\r\n", -502),
    BAD("two digit status", "HTTP/1.1 20 OK\r\n\r\n", -502),
    BAD("four digit status", "HTTP/1.1 2000 OK\r\n\r\n", -502),
    BAD("status 099", "HTTP/1.1 099 X\r\n\r\n", -502),
    BAD("status 600", "HTTP/1.1 600 X\r\n\r\n", -502),
    BAD("control char in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", -502),
    BAD("cl and te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        -502),
    BAD("te gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", -502),
    BAD("te gzip chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -502),
    BAD("te chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -502),
    BAD("te on http/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", -502),
    BAD("two different cl", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        -502),
    BAD("bad cl on 304", "HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n", -502),
    BAD("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", -502),
    BAD("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", -502),
    BAD("bare lf", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", -502),
    BAD("bare cr", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", -502),
    BAD("nul in value", "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", -502),
};

static void test_each_bad_response_is_502(void **state)
{
    for (size_t i = 0; i < sizeof(bad_responses) / sizeof(bad_responses[0]); i++) {
        const struct bad *b = &bad_responses[i];
        struct sy_h1_response resp;
        ssize_t n = parse_resp(b->raw, b->len, false, &resp);
        if (n != b->status || !resp.why)
            fail_msg("%s: got %zd, want %zd (%s)", b->name, n, b->status,
                     resp.why ? resp.why : "no reason");
    }
}

static void test_response_limits_give_502(void **state)
{
    static char buf[8192];
    struct sy_h1_response resp;
    /* a head that never ends */
    size_t n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nX: ");
    memset(buf + n, 'x', sizeof(buf) - n);
    assert_int_equal(parse_resp(buf, lim.max_head, false, &resp), 0);
    assert_int_equal(parse_resp(buf, lim.max_head + 1, false, &resp), -502);
    /* a status line that never ends */
    memset(buf + 13, 'x', sizeof(buf) - 13);
    assert_int_equal(parse_resp(buf, lim.max_request_line, false, &resp), 0);
    assert_int_equal(parse_resp(buf, lim.max_request_line + 1, false, &resp), -502);
    /* too many fields */
    n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\n");
    for (size_t i = 0; i <= lim.max_headers; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%zu: v\r\n", i);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    assert_int_equal(parse_resp(buf, n, false, &resp), -502);
}

static void test_every_prefix_of_a_valid_response_is_incomplete(void **state)
{
    static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
                            "Transfer-Encoding:\r\n\r\n";
    static const char c[] = "HTTP/1.0 204 \r\nX: y\r\n\r\n";
    struct sy_h1_response resp;
    /* The empty Transfer-Encoding is ignored because the response is to HEAD. */
    assert_int_equal(parse_resp(r, sizeof(r) - 1, true, &resp), sizeof(r) - 1);
    for (size_t k = 0; k < sizeof(r) - 1; k++)
        assert_int_equal(parse_resp(r, k, true, &resp), 0);
    assert_int_equal(parse_resp(c, sizeof(c) - 1, false, &resp), sizeof(c) - 1);
    for (size_t k = 0; k < sizeof(c) - 1; k++)
        assert_int_equal(parse_resp(c, k, false, &resp), 0);
}

static void test_find_header_ignores_case_and_returns_the_first(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
    struct sy_h1_request req;
    assert_int_equal(parse_req(r, sizeof(r) - 1, &req), sizeof(r) - 1);
    assert_int_equal(sy_h1_find_header(req.headers, req.n_headers, "x-A"), 1);
    assert_int_equal(sy_h1_find_header(req.headers, req.n_headers, "HOST"), 0);
    assert_int_equal(sy_h1_find_header(req.headers, req.n_headers, "x-b"), -1);
    assert_int_equal(sy_h1_find_header(req.headers, 0, "host"), -1);
}

/* -- chunked decoder ------------------------------------------------------------------------- */

struct decoded {
    char data[8192];
    size_t n_data;
    size_t n_trailers;
    char trailers[1024]; /* "name=value;" for each */
    size_t used;         /* bytes consumed through DONE */
    const char *why;
};

/* Feeds `in` the way the proxy does: `step` more bytes become visible each time the decoder
 * asks for more. Returns 0 after DONE, SY_ERR_AGAIN when the input ran out, SY_ERR_INVALID. */
static int decode(const char *in, size_t len, size_t step, size_t max_trailer, struct decoded *d)
{
    struct sy_h1_chunked c;
    sy_h1_chunked_init(&c, max_trailer);
    memset(d, 0, sizeof(*d));
    size_t pos = 0, have = step < len ? step : len;
    for (;;) {
        enum sy_h1_chunk_event ev;
        size_t n = 0;
        int rc = sy_h1_chunked_step(&c, in + pos, have - pos, &ev, &n);
        if (rc == SY_ERR_AGAIN) {
            if (have == len)
                return rc;
            have = have + step < len ? have + step : len;
            continue;
        }
        if (rc < 0) {
            d->why = c.why;
            assert_non_null(c.why);
            return rc;
        }
        assert_int_equal(rc, 0);
        assert_true(n > 0 && n <= have - pos);
        switch (ev) {
        case SY_H1_CHUNK_FRAMING:
            break;
        case SY_H1_CHUNK_DATA:
            assert_true(d->n_data + n <= sizeof(d->data));
            memcpy(d->data + d->n_data, in + pos, n);
            d->n_data += n;
            break;
        case SY_H1_CHUNK_TRAILER:
            assert_true(c.trailer.name.p >= in + pos && c.trailer.value.p >= in + pos);
            assert_true(c.trailer.value.p + c.trailer.value.len <= in + pos + n);
            snprintf(d->trailers + strlen(d->trailers), sizeof(d->trailers) - strlen(d->trailers),
                     "%.*s=%.*s;", (int)c.trailer.name.len, c.trailer.name.p,
                     (int)c.trailer.value.len, c.trailer.value.p);
            d->n_trailers++;
            break;
        case SY_H1_CHUNK_DONE:
            pos += n;
            d->used = pos;
            /* Nothing is accepted after the end of the body. */
            assert_int_equal(sy_h1_chunked_step(&c, "0\r\n", 3, &ev, &n), SY_ERR_INVALID);
            return 0;
        }
        pos += n;
    }
}

static void test_chunked_body_decodes_whole(void **state)
{
    static const char b[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    struct decoded d;
    assert_int_equal(decode(b, sizeof(b) - 1, sizeof(b) - 1, 0, &d), 0);
    assert_int_equal(d.n_data, 11);
    assert_memory_equal(d.data, "hello world", 11);
    assert_int_equal(d.used, 26);
    assert_int_equal(d.n_trailers, 0);
}

static void test_chunked_body_decodes_the_same_in_every_split(void **state)
{
    static const char b[] = "5;a=b\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n000\r\n"
                            "X-Sum: 1\r\n\r\n";
    for (size_t step = 1; step <= sizeof(b) - 1; step++) {
        struct decoded d;
        assert_int_equal(decode(b, sizeof(b) - 1, step, 0, &d), 0);
        assert_int_equal(d.n_data, 31);
        assert_memory_equal(d.data, "helloabcdefghijklmnopqrstuvwxyz", 31);
        assert_string_equal(d.trailers, "X-Sum=1;");
        assert_int_equal(d.used, sizeof(b) - 1);
    }
}

static void test_data_events_never_pass_the_bytes_given(void **state)
{
    struct sy_h1_chunked c;
    sy_h1_chunked_init(&c, 0);
    enum sy_h1_chunk_event ev;
    size_t n;
    assert_int_equal(sy_h1_chunked_step(&c, "a\r\n", 3, &ev, &n), 0);
    assert_int_equal(ev, SY_H1_CHUNK_FRAMING);
    assert_int_equal(n, 3);
    assert_int_equal(sy_h1_chunked_step(&c, "012", 3, &ev, &n), 0);
    assert_int_equal(ev, SY_H1_CHUNK_DATA);
    assert_int_equal(n, 3);
    assert_int_equal(sy_h1_chunked_step(&c, "3456789\r\n0", 10, &ev, &n), 0);
    assert_int_equal(ev, SY_H1_CHUNK_DATA);
    assert_int_equal(n, 7);
    assert_int_equal(sy_h1_chunked_step(&c, "\r", 1, &ev, &n), SY_ERR_AGAIN);
    assert_int_equal(sy_h1_chunked_step(&c, "", 0, &ev, &n), SY_ERR_AGAIN);
    assert_int_equal(sy_h1_chunked_step(&c, "\r\n0\r\n", 5, &ev, &n), 0);
    assert_int_equal(ev, SY_H1_CHUNK_FRAMING);
    assert_int_equal(n, 2);
}

static void test_chunk_extensions_are_accepted_and_dropped(void **state)
{
    static const char b[] = "5;a\r\nhello\r\n5 ; a = b ;c=\"q \\\" ; x\"\r\nworld\r\n"
                            "3;name=tok!#$\r\nabc\r\n0;last\r\n\r\n";
    struct decoded d;
    assert_int_equal(decode(b, sizeof(b) - 1, 1, 0, &d), 0);
    assert_int_equal(d.n_data, 13);
    assert_memory_equal(d.data, "helloworldabc", 13);
}

static void test_trailers_are_returned_one_by_one(void **state)
{
    static const char b[] = "1\r\nx\r\n0\r\nX-T: 1\r\nChecksum:  two words \t\r\nEmpty:\r\n\r\n";
    struct decoded d;
    assert_int_equal(decode(b, sizeof(b) - 1, sizeof(b) - 1, 0, &d), 0);
    assert_int_equal(d.n_trailers, 3);
    assert_string_equal(d.trailers, "X-T=1;Checksum=two words;Empty=;");
}

static void test_leading_zeros_do_not_count_towards_the_size_limit(void **state)
{
    static const char b[] = "00000000000000000000005\r\nhello\r\n0\r\n\r\n";
    struct decoded d;
    assert_int_equal(decode(b, sizeof(b) - 1, 3, 0, &d), 0);
    assert_int_equal(d.n_data, 5);
}

static void test_sixteen_hex_digits_are_the_largest_chunk(void **state)
{
    struct sy_h1_chunked c;
    sy_h1_chunked_init(&c, 0);
    enum sy_h1_chunk_event ev;
    size_t n;
    assert_int_equal(sy_h1_chunked_step(&c, S("FFFFFFFFFFFFFFFF\r\n"), &ev, &n), 0);
    assert_int_equal(n, 18);
    assert_int_equal(c.remaining, UINT64_MAX);
    assert_int_equal(sy_h1_chunked_step(&c, S("abc"), &ev, &n), 0);
    assert_int_equal(ev, SY_H1_CHUNK_DATA);
    assert_int_equal(n, 3);
}

struct bad_body {
    const char *name;
    const char *raw;
    size_t len;
};

#define BODY(name, raw)                                                                            \
    {                                                                                              \
        name, raw, sizeof(raw) - 1                                                                 \
    }

static const struct bad_body bad_bodies[] = {
    BODY("bad hex", "zz\r\nhello\r\n0\r\n\r\n"),
    BODY("empty size", "\r\nhello\r\n0\r\n\r\n"),
    BODY("negative size", "-5\r\nhello\r\n0\r\n\r\n"),
    BODY("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
    BODY("17 digit size", "10000000000000005\r\nhello\r\n0\r\n\r\n"),
    BODY("20 digit size", "FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"),
    BODY("bare lf after size", "5\nhello\r\n0\r\n\r\n"),
    BODY("bare cr after size", "5\rhello\r\n0\r\n\r\n"),
    BODY("space after size", "5 \r\nhello\r\n0\r\n\r\n"),
    BODY("tab after size", "5\t\r\nhello\r\n0\r\n\r\n"),
    BODY("data longer than size", "5\r\nhelloXX\r\n0\r\n\r\n"),
    BODY("bare lf after data", "5\r\nhello\n0\r\n\r\n"),
    BODY("bare cr after data", "5\r\nhello\r0\r\n\r\n"),
    BODY("extension without name", "5;=x\r\nhello\r\n0\r\n\r\n"),
    BODY("extension without value", "5;a=\r\nhello\r\n0\r\n\r\n"),
    BODY("control char in extension", "5;a=b\x01\r\nhello\r\n0\r\n\r\n"),
    BODY("control char in quoted extension", "5;a=\"b\x01\"\r\nhello\r\n0\r\n\r\n"),
    BODY("nul in quoted pair", "5;a=\"b\\\0\"\r\nhello\r\n0\r\n\r\n"),
    BODY("extension junk", "5;a b\r\nhello\r\n0\r\n\r\n"),
    BODY("bare lf after last chunk", "0\n\r\n"),
    BODY("bare lf ending the trailers", "0\r\n\n"),
    BODY("bare cr ending the trailers", "0\r\n\rX"),
    BODY("bare lf after a trailer", "0\r\nX: y\n\r\n"),
    BODY("trailer with space before colon", "0\r\nX : y\r\n\r\n"),
    BODY("trailer without colon", "0\r\nX-y\r\n\r\n"),
    BODY("obs-fold in trailers", "0\r\nX: y\r\n z\r\n\r\n"),
    BODY("control char in trailer", "0\r\nX: \x7f\r\n\r\n"),
};

static void test_each_bad_chunked_framing_is_invalid(void **state)
{
    for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++) {
        const struct bad_body *b = &bad_bodies[i];
        for (size_t step = 1; step <= b->len; step++) {
            struct decoded d;
            int rc = decode(b->raw, b->len, step, 0, &d);
            if (rc != SY_ERR_INVALID)
                fail_msg("%s (step %zu): got %d", b->name, step, rc);
        }
    }
}

static void test_framing_line_over_4096_bytes_is_invalid(void **state)
{
    static char b[5000];
    memcpy(b, "5;", 2);
    memset(b + 2, 'a', sizeof(b) - 2);
    struct sy_h1_chunked c;
    enum sy_h1_chunk_event ev;
    size_t n;
    sy_h1_chunked_init(&c, 0);
    assert_int_equal(sy_h1_chunked_step(&c, b, 4095, &ev, &n), SY_ERR_AGAIN);
    assert_int_equal(sy_h1_chunked_step(&c, b, 4096, &ev, &n), SY_ERR_INVALID);
    assert_string_equal(c.why, "chunk framing line too long");
    /* After an error the decoder stays failed. */
    assert_int_equal(sy_h1_chunked_step(&c, S("5\r\n"), &ev, &n), SY_ERR_INVALID);

    /* A trailer line too. */
    memcpy(b, "0\r\nX: ", 6);
    memset(b + 6, 'v', sizeof(b) - 6);
    sy_h1_chunked_init(&c, 1 << 20);
    assert_int_equal(sy_h1_chunked_step(&c, b, 3, &ev, &n), 0);
    assert_int_equal(sy_h1_chunked_step(&c, b + 3, 4095, &ev, &n), SY_ERR_AGAIN);
    assert_int_equal(sy_h1_chunked_step(&c, b + 3, 4096, &ev, &n), SY_ERR_INVALID);
}

static void test_trailer_section_over_its_limit_is_invalid(void **state)
{
    static const char b[] = "0\r\nX-A: 0123456789\r\nX-B: 0123456789\r\n\r\n";
    struct decoded d;
    /* Each trailer line is 17 bytes. */
    assert_int_equal(decode(b, sizeof(b) - 1, 1, 34, &d), 0);
    assert_int_equal(decode(b, sizeof(b) - 1, 1, 33, &d), SY_ERR_INVALID);
    assert_string_equal(d.why, "trailer section too large");
    assert_int_equal(decode(b, sizeof(b) - 1, sizeof(b) - 1, 33, &d), SY_ERR_INVALID);
}

static void test_unfinished_body_asks_for_more(void **state)
{
    static const char b[] = "5\r\nhello\r\n0\r\nX: y\r\n";
    for (size_t k = 0; k < sizeof(b) - 1; k++) {
        struct decoded d;
        assert_int_equal(decode(b, k, 1, 0, &d), SY_ERR_AGAIN);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin_form_of_absolute_targets),
        cmocka_unit_test(test_origin_form_of_asterisk_is_kept),
        cmocka_unit_test(test_get_is_parsed_into_slices),
        cmocka_unit_test(test_post_with_content_length_has_length_framing),
        cmocka_unit_test(test_equal_content_lengths_are_accepted),
        cmocka_unit_test(test_largest_content_length_is_int64_max),
        cmocka_unit_test(test_chunked_is_case_insensitive_and_may_carry_ows),
        cmocka_unit_test(test_pipelined_bytes_are_not_part_of_the_head),
        cmocka_unit_test(test_absolute_form_takes_host_from_the_target),
        cmocka_unit_test(test_http10_closes_unless_keep_alive_is_asked),
        cmocka_unit_test(test_connection_tokens_set_flags),
        cmocka_unit_test(test_expect_100_continue_is_recognised_on_http11_only),
        cmocka_unit_test(test_options_asterisk_and_connect_authority_are_accepted),
        cmocka_unit_test(test_empty_lines_before_the_request_line_are_skipped),
        cmocka_unit_test(test_obs_text_is_allowed_in_field_values),
        cmocka_unit_test(test_every_value_byte_at_every_offset_of_a_long_value),
        cmocka_unit_test(test_empty_host_is_allowed),
        cmocka_unit_test(test_heads_at_the_limits_are_accepted),
        cmocka_unit_test(test_heads_one_past_the_limits_are_rejected),
        cmocka_unit_test(test_incomplete_head_over_limit_is_431_before_it_ends),
        cmocka_unit_test(test_incomplete_request_line_over_limit_is_414_before_it_ends),
        cmocka_unit_test(test_each_bad_request_gets_its_status),
        cmocka_unit_test(test_too_many_headers_is_431),
        cmocka_unit_test(test_field_value_bytes_follow_rfc9110),
        cmocka_unit_test(test_reason_bytes_at_every_offset),
        cmocka_unit_test(test_field_name_bytes_are_tchars),
        cmocka_unit_test(test_method_bytes_are_tchars),
        cmocka_unit_test(test_target_bytes_are_visible_ascii),
        cmocka_unit_test(test_every_prefix_of_a_valid_request_is_incomplete),
        cmocka_unit_test(test_response_with_content_length_has_length_framing),
        cmocka_unit_test(test_chunked_response_has_chunked_framing),
        cmocka_unit_test(test_response_without_length_is_delimited_by_close),
        cmocka_unit_test(test_bodiless_responses_have_no_framing),
        cmocka_unit_test(test_response_keep_alive_follows_version_and_connection),
        cmocka_unit_test(test_empty_reason_phrase_is_accepted),
        cmocka_unit_test(test_each_bad_response_is_502),
        cmocka_unit_test(test_response_limits_give_502),
        cmocka_unit_test(test_every_prefix_of_a_valid_response_is_incomplete),
        cmocka_unit_test(test_find_header_ignores_case_and_returns_the_first),
        cmocka_unit_test(test_chunked_body_decodes_whole),
        cmocka_unit_test(test_chunked_body_decodes_the_same_in_every_split),
        cmocka_unit_test(test_data_events_never_pass_the_bytes_given),
        cmocka_unit_test(test_chunk_extensions_are_accepted_and_dropped),
        cmocka_unit_test(test_trailers_are_returned_one_by_one),
        cmocka_unit_test(test_leading_zeros_do_not_count_towards_the_size_limit),
        cmocka_unit_test(test_sixteen_hex_digits_are_the_largest_chunk),
        cmocka_unit_test(test_each_bad_chunked_framing_is_invalid),
        cmocka_unit_test(test_framing_line_over_4096_bytes_is_invalid),
        cmocka_unit_test(test_trailer_section_over_its_limit_is_invalid),
        cmocka_unit_test(test_unfinished_body_asks_for_more),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
