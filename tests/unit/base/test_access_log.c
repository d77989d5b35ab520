/* SPDX-License-Identifier: MIT */
/* Unit tests for proxy/base/access_log.c's ring (whole lines or nothing, wrap-around, drops
 * counted) and for sy_json_escape (proxy/base/base.c), the one JSON string escaper for bytes
 * from the wire. A two-thread test runs a producer and a consumer at once and checks that
 * every line comes out whole and in order. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "switchyard/access_log.h"
#include "switchyard/base.h"
#include "switchyard/json.h"

/* Everything the ring holds, as one string (consumed). */
static size_t drain(struct sy_access_ring *r, char *out, size_t cap)
{
    const char *p1, *p2;
    size_t n1, n2;
    size_t n = sy_access_ring_peek(r, &p1, &n1, &p2, &n2);
    assert_true(n < cap);
    memcpy(out, p1, n1);
    memcpy(out + n1, p2, n2);
    out[n] = '\0';
    sy_access_ring_consume(r, n);
    return n;
}

static void test_ring_takes_whole_lines_and_drops_what_does_not_fit(void **state)
{
    (void)state;
    struct sy_access_ring *r = sy_access_ring_new(16);
    char out[64];
    assert_true(sy_access_ring_put(r, "abcdef\n", 7));
    assert_true(sy_access_ring_put(r, "ghijkl\n", 7));
    assert_false(sy_access_ring_put(r, "mnop\n", 5)); /* 14 + 5 > 16: dropped whole */
    assert_true(sy_access_ring_put(r, "q\n", 2));     /* exactly full */
    assert_int_equal(sy_access_ring_dropped(r), 1);
    assert_int_equal(sy_access_ring_lines(r), 3);
    assert_int_equal(drain(r, out, sizeof(out)), 16);
    assert_string_equal(out, "abcdef\nghijkl\nq\n");
    /* Now the write position is at 16 % 16 = 0; move it to 10 and wrap a line around. */
    assert_true(sy_access_ring_put(r, "0123456789", 10));
    assert_int_equal(drain(r, out, sizeof(out)), 10);
    assert_true(sy_access_ring_put(r, "wrap-around\n", 12));
    const char *p1, *p2;
    size_t n1, n2;
    assert_int_equal(sy_access_ring_peek(r, &p1, &n1, &p2, &n2), 12);
    assert_int_equal(n1, 6);
    assert_int_equal(n2, 6);
    assert_int_equal(drain(r, out, sizeof(out)), 12);
    assert_string_equal(out, "wrap-around\n");
    /* A line longer than the whole ring never fits. */
    assert_false(sy_access_ring_put(r, "0123456789abcdefg", 17));
    assert_int_equal(sy_access_ring_dropped(r), 2);
    sy_access_ring_free(r);
    sy_access_ring_free(NULL);
}

#define THREAD_LINES 200000

static void *producer(void *arg)
{
    struct sy_access_ring *r = arg;
    char line[32];
    for (unsigned i = 0; i < THREAD_LINES; i++) {
        int n = snprintf(line, sizeof(line), "%u\n", i);
        while (!sy_access_ring_put(r, line, (size_t)n))
            ; /* spins: this test wants every line, the proxy drops instead */
    }
    return NULL;
}

static void test_ring_hands_lines_across_threads_whole_and_in_order(void **state)
{
    (void)state;
    struct sy_access_ring *r = sy_access_ring_new(1000); /* not a power of two */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, producer, r), 0);
    unsigned next = 0;
    char partial[32];
    size_t plen = 0;
    while (next < THREAD_LINES) {
        const char *p[2];
        size_t n[2];
        size_t total = sy_access_ring_peek(r, &p[0], &n[0], &p[1], &n[1]);
        for (int k = 0; k < 2; k++) {
            for (size_t i = 0; i < n[k]; i++) {
                char ch = p[k][i];
                if (ch != '\n') {
                    assert_true(plen < sizeof(partial) - 1);
                    partial[plen++] = ch;
                    continue;
                }
                partial[plen] = '\0';
                assert_int_equal(strtoul(partial, NULL, 10), next);
                next++;
                plen = 0;
            }
        }
        sy_access_ring_consume(r, total);
    }
    pthread_join(t, NULL);
    assert_int_equal(sy_access_ring_lines(r), THREAD_LINES);
    sy_access_ring_free(r);
}

static void check_escape(const char *in, size_t len, const char *want)
{
    char out[256];
    size_t n = sy_json_escape(out, sizeof(out), in, len);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_json_escape_gives_valid_ascii_json_for_any_bytes(void **state)
{
    (void)state;
    check_escape("/plain/path?q=1", 15, "/plain/path?q=1");
    check_escape("a\"b\\c", 5, "a\\\"b\\\\c");
    check_escape("tab\there\nnl\r", 12, "tab\\u0009here\\u000anl\\u000d");
    check_escape("\x00\x1f\x7f", 3, "\\u0000\\u001f\\u007f");
    check_escape("caf\xc3\xa9", 5, "caf\\u00c3\\u00a9");
    check_escape("\xff", 1, "\\u00ff");
    check_escape("", 0, "");
}

static void test_json_escape_stops_before_an_escape_that_does_not_fit(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(sy_json_escape(out, 4, "abcdef", 6), 4);
    assert_memory_equal(out, "abcd", 4);
    /* "ab" then \u0001 needs 6 more: only "ab" fits in 7. */
    assert_int_equal(sy_json_escape(out, 7, "ab\x01", 3), 2);
    /* A quote needs two bytes. */
    assert_int_equal(sy_json_escape(out, 2, "a\"", 2), 1);
    assert_int_equal(sy_json_escape(out, 0, "a", 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_takes_whole_lines_and_drops_what_does_not_fit),
        cmocka_unit_test(test_ring_hands_lines_across_threads_whole_and_in_order),
        cmocka_unit_test(test_json_escape_gives_valid_ascii_json_for_any_bytes),
        cmocka_unit_test(test_json_escape_stops_before_an_escape_that_does_not_fit),
    };
    return cmocka_run_group_tests_name("base/access_log", tests, NULL, NULL);
}
