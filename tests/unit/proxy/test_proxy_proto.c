/* SPDX-License-Identifier: MIT */
/* Unit tests for the PROXY protocol header parser: v1 and v2 headers that must parse (with the
 * addresses they carry), each malformed case the issue lists, every prefix of a valid header
 * reported as NEED_MORE (the split-into-1-byte-reads case), and the client's bytes right after
 * the header left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/proxy_proto.h"

#define S(lit) lit, sizeof(lit) - 1

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: command, family byte, the address block and TLV bytes as given. */
static size_t v2(unsigned char *out, unsigned cmd, unsigned fam, const void *body, size_t n)
{
    memcpy(out, sig, 12);
    out[12] = (unsigned char)(0x20 | cmd);
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(n >> 8);
    out[15] = (unsigned char)(n & 0xFF);
    memcpy(out + 16, body, n);
    return 16 + n;
}

static const char *src_ip(const struct sy_pp_result *r, char *buf, size_t n)
{
    if (r->src.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)&r->src)->sin_addr, buf, n);
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&r->src)->sin6_addr, buf, n);
}

static unsigned src_port(const struct sy_pp_result *r)
{
    if (r->src.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&r->src)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&r->src)->sin6_port);
}

/* Every strict prefix of a valid header is NEED_MORE, and the whole is DONE at `want`. */
static void assert_prefixes_need_more(const void *p, size_t n, enum sy_pp_accept acc)
{
    struct sy_pp_result r;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sy_pp_parse(p, i, acc, &r), SY_PP_NEED_MORE);
    assert_int_equal(sy_pp_parse(p, n, acc, &r), SY_PP_DONE);
    assert_int_equal(r.consumed, n);
}

static void test_v1_tcp4(void **state)
{
    static const char line[] = "PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(S(line), SY_PP_V1, &r), SY_PP_DONE);
    assert_int_equal(r.consumed, strlen("PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"));
    assert_true(r.has_addr);
    char buf[64];
    assert_string_equal(src_ip(&r, buf, sizeof(buf)), "192.0.2.7");
    assert_int_equal(src_port(&r), 56324);
    assert_int_equal(sy_pp_parse(S(line), SY_PP_ANY, &r), SY_PP_DONE);
    assert_int_equal(sy_pp_parse(S(line), SY_PP_V2, &r), SY_PP_ERROR);
}

static void test_v1_tcp6_and_unknown(void **state)
{
    static const char line[] = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(S(line), SY_PP_ANY, &r), SY_PP_DONE);
    char buf[64];
    assert_string_equal(src_ip(&r, buf, sizeof(buf)), "2001:db8::1");
    assert_int_equal(src_port(&r), 1);
    static const char unk[] = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX";
    assert_int_equal(sy_pp_parse(S(unk), SY_PP_V1, &r), SY_PP_DONE);
    assert_false(r.has_addr);
    assert_int_equal(r.consumed, sizeof(unk) - 2);
}

static void test_v1_bad(void **state)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4  1.2.3.5 1 2\r\n",
        "PROXY TCP4 2001:db8::1 1.2.3.5 1 2\r\n", /* family does not match the address */
        "PROXY TCP6 1.2.3.4 1.2.3.5 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.5 1 2\rX",
        "PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n",
        "PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n",
        "proxy TCP4 1.2.3.4 1.2.3.5 1 2\r\n",
    };
    struct sy_pp_result r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sy_pp_parse(bad[i], strlen(bad[i]), SY_PP_ANY, &r), SY_PP_ERROR);
        assert_non_null(r.why);
    }
}

static void test_v1_over_107_bytes(void **state)
{
    char line[200];
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    struct sy_pp_result r;
    /* Without a CRLF in the first 107 bytes: an error as soon as 107 bytes are there. */
    assert_int_equal(sy_pp_parse(line, 106, SY_PP_V1, &r), SY_PP_NEED_MORE);
    assert_int_equal(sy_pp_parse(line, 107, SY_PP_V1, &r), SY_PP_ERROR);
    assert_int_equal(sy_pp_parse(line, sizeof(line), SY_PP_V1, &r), SY_PP_ERROR);
    /* The CRLF ending at byte 108: one too many. */
    memcpy(line + 106, "\r\n", 2);
    assert_int_equal(sy_pp_parse(line, 108, SY_PP_V1, &r), SY_PP_ERROR);
    /* Ending exactly at 107: the longest valid line. */
    memcpy(line + 105, "\r\n", 2);
    assert_prefixes_need_more(line, 107, SY_PP_V1);
}

static void test_v2_inet_with_tlvs(void **state)
{
    unsigned char body[12 + 3 + 2 + 3 + 0] = {
        198,  51,   100,  9,    10,   0,    0,   1,   0xC3,
        0x50, 0x01, 0xBB, 0x01, 0x00, 0x02, 'h', '2', /* ALPN TLV */
        0x04, 0x00, 0x00};                            /* NOOP, empty */
    unsigned char h[64];
    size_t n = v2(h, 1, 0x11, body, sizeof(body));
    memcpy(h + n, "\x16\x03\x01", 3); /* a TLS ClientHello right after */
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(h, n + 3, SY_PP_V2, &r), SY_PP_DONE);
    assert_int_equal(r.consumed, n);
    assert_true(r.has_addr);
    assert_false(r.local);
    char buf[64];
    assert_string_equal(src_ip(&r, buf, sizeof(buf)), "198.51.100.9");
    assert_int_equal(src_port(&r), 50000);
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V1, &r), SY_PP_ERROR);
    assert_prefixes_need_more(h, n, SY_PP_ANY);
}

static void test_v2_inet6_then_h2_preface(void **state)
{
    unsigned char body[36] = {0};
    body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 5;
    body[32] = 0x12, body[33] = 0x34;
    unsigned char h[128];
    size_t n = v2(h, 1, 0x21, body, sizeof(body));
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    memcpy(h + n, preface, sizeof(preface) - 1);
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(h, n + sizeof(preface) - 1, SY_PP_ANY, &r), SY_PP_DONE);
    assert_int_equal(r.consumed, n);
    char buf[64];
    assert_string_equal(src_ip(&r, buf, sizeof(buf)), "2001:db8::5");
    assert_int_equal(src_port(&r), 0x1234);
}

static void test_v2_local_keeps_peer(void **state)
{
    unsigned char h[64];
    size_t n = v2(h, 0, 0x00, "", 0);
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_true(r.local);
    assert_false(r.has_addr);
    assert_int_equal(r.consumed, 16);
    /* LOCAL with a block of any family: ignored, skipped whole. */
    n = v2(h, 0, 0x11, "abcdefghijklmn", 14);
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_false(r.has_addr);
    assert_int_equal(r.consumed, 30);
}

static void test_v2_unspec_and_unix_keep_peer(void **state)
{
    unsigned char h[300], body[216] = {0};
    size_t n = v2(h, 1, 0x00, "", 0);
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_false(r.has_addr);
    n = v2(h, 1, 0x31, body, sizeof(body));
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_false(r.has_addr);
    assert_int_equal(r.consumed, 16 + 216);
}

static void test_v2_bad(void **state)
{
    unsigned char h[64], body[12] = {0};
    struct sy_pp_result r;
    size_t n = v2(h, 1, 0x11, body, 12);
    h[12] = 0x11; /* version 1 in the binary form */
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
    h[12] = 0x22; /* command 2 */
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
    h[12] = 0x21;
    h[13] = 0x41; /* family 4 */
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
    h[13] = 0x12; /* INET over DGRAM */
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
    /* INET6 with a 12-byte block: family and length disagree. */
    n = v2(h, 1, 0x21, body, 12);
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
    /* INET with 11 bytes. */
    n = v2(h, 1, 0x11, body, 11);
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
    /* A bad signature byte. */
    n = v2(h, 1, 0x11, body, 12);
    h[7] = 'X';
    assert_int_equal(sy_pp_parse(h, 8, SY_PP_V2, &r), SY_PP_ERROR);
    assert_int_equal(sy_pp_parse(h, 7, SY_PP_V2, &r), SY_PP_NEED_MORE);
}

static void test_v2_length_past_data(void **state)
{
    unsigned char h[64], body[12] = {0};
    size_t n = v2(h, 1, 0x11, body, 12);
    h[14] = 0xFF, h[15] = 0xFF; /* says 65535 bytes follow */
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_NEED_MORE);
    assert_int_equal(r.need, SY_PP_V2_MAX);
}

static void test_v2_tlv_overruns(void **state)
{
    unsigned char body[12 + 3] = {0};
    body[12] = 0x01, body[13] = 0x00, body[14] = 0x05; /* 5 bytes claimed, 0 there */
    unsigned char h[64];
    size_t n = v2(h, 1, 0x11, body, sizeof(body));
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
    n = v2(h, 1, 0x11, body, 14); /* 2 bytes of a TLV: no room for its length */
    assert_int_equal(sy_pp_parse(h, n, SY_PP_V2, &r), SY_PP_ERROR);
}

static void test_no_header(void **state)
{
    struct sy_pp_result r;
    assert_int_equal(sy_pp_parse(S("\x16\x03\x01\x02\x00"), SY_PP_ANY, &r), SY_PP_ERROR);
    assert_int_equal(sy_pp_parse(S("PRI * HTTP/2.0\r\n"), SY_PP_ANY, &r), SY_PP_ERROR);
    assert_int_equal(sy_pp_parse("", 0, SY_PP_ANY, &r), SY_PP_NEED_MORE);
}

/* What sy_pp_v2_write makes, the parser reads back: v4, v6, mixed (mapped), unknown. */
static void test_v2_write_round_trips(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(5555)};
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons(80)};
    struct sockaddr_in6 c = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    inet_pton(AF_INET, "203.0.113.5", &a.sin_addr);
    inet_pton(AF_INET, "10.0.0.2", &b.sin_addr);
    inet_pton(AF_INET6, "2001:db8::7", &c.sin6_addr);
    unsigned char out[SY_PP_V2_OUT_MAX];
    struct sy_pp_result r;
    char buf[64];
    size_t n = sy_pp_v2_write(out, (struct sockaddr *)&a, (struct sockaddr *)&b);
    assert_int_equal(n, 28);
    assert_int_equal(sy_pp_parse(out, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_string_equal(src_ip(&r, buf, sizeof(buf)), "203.0.113.5");
    assert_int_equal(src_port(&r), 5555);
    n = sy_pp_v2_write(out, (struct sockaddr *)&a, (struct sockaddr *)&c);
    assert_int_equal(n, 52);
    assert_int_equal(sy_pp_parse(out, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_string_equal(src_ip(&r, buf, sizeof(buf)), "::ffff:203.0.113.5");
    n = sy_pp_v2_write(out, (struct sockaddr *)&c, (struct sockaddr *)&b);
    assert_int_equal(sy_pp_parse(out, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_string_equal(src_ip(&r, buf, sizeof(buf)), "2001:db8::7");
    struct sockaddr un = {.sa_family = AF_UNIX};
    n = sy_pp_v2_write(out, &un, (struct sockaddr *)&b);
    assert_int_equal(n, 16);
    assert_int_equal(sy_pp_parse(out, n, SY_PP_V2, &r), SY_PP_DONE);
    assert_false(r.has_addr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6_and_unknown),
        cmocka_unit_test(test_v1_bad),
        cmocka_unit_test(test_v1_over_107_bytes),
        cmocka_unit_test(test_v2_inet_with_tlvs),
        cmocka_unit_test(test_v2_inet6_then_h2_preface),
        cmocka_unit_test(test_v2_local_keeps_peer),
        cmocka_unit_test(test_v2_unspec_and_unix_keep_peer),
        cmocka_unit_test(test_v2_bad),
        cmocka_unit_test(test_v2_length_past_data),
        cmocka_unit_test(test_v2_tlv_overruns),
        cmocka_unit_test(test_no_header),
        cmocka_unit_test(test_v2_write_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
