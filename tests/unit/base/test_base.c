/* SPDX-License-Identifier: MIT */
/* Unit tests for the base library: slices, diagnostics, array growth, a log that never
 * waits for its reader, and sy_write_all. */
#define _GNU_SOURCE /* F_SETPIPE_SZ: before any header */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "switchyard/base.h"

/* stderr moved onto a pipe for one test, and put back. */
struct captured {
    int saved, rfd;
    char *text;
    size_t len;
    pthread_t reader;
};

static void capture_stderr(struct captured *c, int pipe_bytes)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    if (pipe_bytes)
        fcntl(p[1], F_SETPIPE_SZ, pipe_bytes);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
    close(p[1]);
    c->rfd = p[0];
    c->text = NULL;
    c->len = 0;
}

static void *read_all(void *arg)
{
    struct captured *c = arg;
    char buf[65536];
    ssize_t n;
    while ((n = read(c->rfd, buf, sizeof(buf))) > 0) {
        c->text = realloc(c->text, c->len + (size_t)n + 1);
        memcpy(c->text + c->len, buf, (size_t)n);
        c->len += (size_t)n;
        c->text[c->len] = '\0';
    }
    return NULL;
}

/* Reads the pipe from now on, in a thread (see restore_stderr). */
static void start_reading(struct captured *c)
{
    assert_int_equal(pthread_create(&c->reader, NULL, read_all, c), 0);
}

/* Puts stderr back (which closes the pipe's last write end) and waits for the reader. */
static void restore_stderr(struct captured *c)
{
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    pthread_join(c->reader, NULL);
    close(c->rfd);
}

static void test_log_lines_are_dropped_and_counted_while_stderr_is_full(void **state)
{
    struct captured c;
    capture_stderr(&c, 4096);
    struct sy_log_stats before, after;
    sy_log_stats(&before);
    assert_int_equal(sy_log_start(16384), 0);
    /* Nobody reads the one-page pipe: with a blocking write this loop would never end. */
    for (int i = 0; i < 2000; i++)
        sy_log(SY_LOG_WARN, "test", "line %d of a log that nobody reads yet", i);
    sy_log_stats(&after);
    start_reading(&c);
    assert_true(sy_log_stop(10000));
    restore_stderr(&c);
    assert_true(after.dropped - before.dropped > 1000);
    assert_non_null(c.text);
    /* The first lines made it, whole, and the loss is reported. */
    assert_non_null(strstr(c.text, " warn test: line 0 of a log that nobody reads yet\n"));
    assert_non_null(strstr(c.text, " warn log: "));
    assert_non_null(strstr(c.text, " log lines dropped: stderr is not read fast enough"));
    assert_int_equal(c.text[c.len - 1], '\n');
    free(c.text);
}

static void test_log_is_written_out_in_order_when_stopped(void **state)
{
    struct captured c;
    capture_stderr(&c, 0);
    start_reading(&c);
    struct sy_log_stats before, after;
    sy_log_stats(&before);
    assert_int_equal(sy_log_start(1 << 20), 0);
    for (int i = 0; i < 100; i++)
        sy_log(SY_LOG_WARN, "test", "ordered %d", i);
    assert_true(sy_log_flush(10000));
    assert_true(sy_log_stop(10000));
    sy_log(SY_LOG_WARN, "test", "after the writer stopped");
    restore_stderr(&c);
    sy_log_stats(&after);
    assert_true(after.dropped == before.dropped);
    const char *p = c.text;
    for (int i = 0; i < 100; i++) {
        char want[64];
        snprintf(want, sizeof(want), "ordered %d\n", i);
        p = strstr(p, want);
        assert_non_null(p);
    }
    assert_non_null(strstr(p, "after the writer stopped\n"));
    free(c.text);
}

static void test_client_lines_beyond_the_rate_are_suppressed_and_counted(void **state)
{
    struct captured c;
    capture_stderr(&c, 0);
    start_reading(&c);
    struct sy_log_stats s0, s1, s2;
    sy_log_stats(&s0);
    sy_log_set_client_rate(5);
    for (int i = 0; i < 20; i++)
        sy_log_client(SY_LOG_INFO, "test", "client line %d", i);
    sy_log_stats(&s1);
    sy_log_set_client_rate(0); /* no limit */
    for (int i = 0; i < 20; i++)
        sy_log_client(SY_LOG_INFO, "test", "unlimited line %d", i);
    sy_log_stats(&s2);
    sy_log_set_client_rate(SY_LOG_CLIENT_RATE_DEFAULT);
    restore_stderr(&c);
    /* A burst of 5, then at 5 a second: 15 of the 20 (one more token if this thread was
     * descheduled for 200 ms in between). */
    uint64_t suppressed = s1.suppressed - s0.suppressed;
    assert_true(suppressed >= 13 && suppressed <= 15);
    assert_true(s2.suppressed == s1.suppressed);
    assert_non_null(strstr(c.text, "client line 4\n"));
    assert_null(strstr(c.text, "client line 19\n"));
    assert_non_null(strstr(c.text, "unlimited line 19\n"));
    free(c.text);
}

/* A pipe's reader, for sy_write_all: reads everything until the write end closes. */
struct drain {
    int fd;
    size_t len;
    unsigned char sum; /* a check of the order: sum of byte * position */
};

static void *drain_pipe(void *arg)
{
    struct drain *d = arg;
    unsigned char buf[4096];
    ssize_t n;
    while ((n = read(d->fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++)
            d->sum = (unsigned char)(d->sum + buf[i] * (unsigned char)(d->len + (size_t)i));
        d->len += (size_t)n;
    }
    return NULL;
}

static void test_write_all_waits_for_a_full_nonblocking_pipe_and_writes_everything(void **state)
{
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    size_t len = 1 << 20;
    unsigned char *data = malloc(len), want = 0;
    for (size_t i = 0; i < len; i++) {
        data[i] = (unsigned char)(i * 7 + (i >> 12));
        want = (unsigned char)(want + data[i] * (unsigned char)i);
    }
    int flags = fcntl(p[0], F_GETFL);
    fcntl(p[0], F_SETFL, flags & ~O_NONBLOCK); /* the reader blocks; the writer must poll */
    struct drain d = {.fd = p[0]};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_pipe, &d), 0);
    assert_int_equal(sy_write_all(p[1], (const char *)data, len), 0);
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    assert_int_equal(d.len, len);
    assert_int_equal(d.sum, want);
    free(data);
}

static void test_write_all_fails_with_errno_when_the_reader_is_gone(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    errno = 0;
    assert_int_equal(sy_write_all(p[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);
    close(p[1]);
}

/* Every length from 1 to 19 (sy_slice_ieq_slice takes short names, whole 8-byte chunks and a
 * last chunk that overlaps the one before by different paths), every offset, every byte pair. */
static void test_slice_ieq_every_byte_pair_at_every_offset(void **state)
{
    char a[19], b[19];
    for (size_t len = 1; len <= sizeof(a); len++) {
        for (size_t at = 0; at < len; at++) {
            for (int x = 0; x < 256; x++) {
                for (int y = 0; y < 256; y++) {
                    memset(a, 'k', sizeof(a));
                    memset(b, 'K', sizeof(b));
                    a[at] = (char)x;
                    b[at] = (char)y;
                    int lx = x >= 'A' && x <= 'Z' ? x + 32 : x;
                    int ly = y >= 'A' && y <= 'Z' ? y + 32 : y;
                    bool got = sy_slice_ieq_slice(sy_slice_of(a, len), sy_slice_of(b, len));
                    if (got != (lx == ly))
                        fail_msg("0x%02x vs 0x%02x at %zu of %zu: %d", x, y, at, len, got);
                }
            }
        }
    }
    /* A difference beyond the length does not count. */
    assert_true(sy_slice_ieq_slice(sy_slice_of("abcdefghX", 8), sy_slice_of("ABCDEFGHY", 8)));
    assert_true(sy_slice_ieq_slice(sy_slice_of("abcX", 3), sy_slice_of("ABCY", 3)));
    assert_true(sy_slice_ieq_slice(sy_slice_of("", 0), sy_slice_of("", 0)));
}

static void test_slice_ieq_ignores_ascii_case_only(void **state)
{
    assert_true(sy_slice_ieq(sy_slice_of("Content-Length", 14), "content-length"));
    assert_false(sy_slice_ieq(sy_slice_of("Content-Lengt", 13), "content-length"));
    assert_false(sy_slice_ieq(sy_slice_of("x-a", 3), "x-b"));
    assert_true(sy_slice_ieq_slice(sy_slice_of("KEEP", 4), sy_slice_of("keep", 4)));
    /* '@' and '`' differ from 'A'/'a' by 32 but are not letters. */
    assert_false(sy_slice_ieq(sy_slice_of("@", 1), "`"));
}

static void test_fmt_u64_writes_decimal_digits(void **state)
{
    char b[SY_U64_DIGITS];
    assert_int_equal(sy_fmt_u64(b, 0), 1);
    assert_string_equal(b, "0");
    assert_int_equal(sy_fmt_u64(b, 200), 3);
    assert_string_equal(b, "200");
    assert_int_equal(sy_fmt_u64(b, 1000000007), 10);
    assert_string_equal(b, "1000000007");
    assert_int_equal(sy_fmt_u64(b, UINT64_MAX), 20);
    assert_string_equal(b, "18446744073709551615");
}

static void test_diag_formats_file_line_and_column(void **state)
{
    struct sy_diags d;
    sy_diags_init(&d);
    sy_diags_add(&d, "routes.yaml", 14, 7, "weight must be 0..100, got %d", 120);
    sy_diags_add(&d, "routes.yaml", 0, 0, "cannot read");
    assert_int_equal(d.n, 2);
    char buf[300];
    sy_diag_format(&d.v[0], buf, sizeof(buf));
    assert_string_equal(buf, "routes.yaml:14:7: weight must be 0..100, got 120");
    sy_diag_format(&d.v[1], buf, sizeof(buf));
    assert_string_equal(buf, "routes.yaml: cannot read");
    sy_diags_dispose(&d);
    assert_int_equal(d.n, 0);
}

static void test_xgrow_keeps_contents_and_grows_geometrically(void **state)
{
    int *v = NULL;
    size_t cap = 0;
    for (int i = 0; i < 1000; i++) {
        sy_xgrow((void **)&v, &cap, (size_t)i + 1, sizeof(*v));
        v[i] = i;
    }
    assert_true(cap >= 1000 && cap < 2048);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(v[i], i);
    free(v);
}

static void test_strerror_names_every_error(void **state)
{
    for (int e = SY_ERR_AGAIN; e <= SY_OK; e++)
        assert_string_not_equal(sy_strerror(e), "unknown error");
    assert_string_equal(sy_strerror(-99), "unknown error");
}

/* Inside a hold the data path's clock is read once and stands still; outside, and once the
 * outermost hold is released, it moves with sy_now_us. */
static void test_clock_stands_still_inside_a_hold(void **state)
{
    (void)state;
    struct timespec ms = {0, 2000000};
    uint64_t a = sy_clock_us();
    nanosleep(&ms, NULL);
    uint64_t b = sy_clock_us();
    assert_true(b >= a + 2000); /* no hold: read each time */
    sy_clock_hold();
    uint64_t first = sy_clock_us();
    assert_true(first >= b);
    nanosleep(&ms, NULL);
    assert_true(sy_clock_us() == first);
    sy_clock_hold(); /* nested: the same reading */
    nanosleep(&ms, NULL);
    assert_true(sy_clock_us() == first);
    assert_true(sy_clock_ms() == first / 1000);
    sy_clock_release();
    assert_true(sy_clock_us() == first); /* the outer hold still stands */
    sy_clock_release();
    assert_true(sy_clock_us() >= first + 4000);
    assert_true(sy_now_us() >= first + 4000);
    sy_clock_hold(); /* a new section reads the clock again */
    assert_true(sy_clock_us() >= first + 4000);
    sy_clock_release();
    sy_clock_release(); /* an unmatched release is ignored */
    uint64_t c = sy_clock_us();
    nanosleep(&ms, NULL);
    assert_true(sy_clock_us() >= c + 2000);
}

static void test_reason_phrase_covers_what_proxy_and_admin_send(void **state)
{
    (void)state;
    assert_string_equal(sy_http_reason_phrase(200), "OK");
    assert_string_equal(sy_http_reason_phrase(403), "Forbidden");
    assert_string_equal(sy_http_reason_phrase(413), "Content Too Large");
    assert_string_equal(sy_http_reason_phrase(503), "Service Unavailable");
    assert_string_equal(sy_http_reason_phrase(505), "HTTP Version Not Supported");
    assert_string_equal(sy_http_reason_phrase(201), "Created");
    assert_string_equal(sy_http_reason_phrase(301), "Moved Permanently");
    assert_string_equal(sy_http_reason_phrase(299), ""); /* unregistered: no phrase */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slice_ieq_ignores_ascii_case_only),
        cmocka_unit_test(test_slice_ieq_every_byte_pair_at_every_offset),
        cmocka_unit_test(test_fmt_u64_writes_decimal_digits),
        cmocka_unit_test(test_write_all_waits_for_a_full_nonblocking_pipe_and_writes_everything),
        cmocka_unit_test(test_write_all_fails_with_errno_when_the_reader_is_gone),
        cmocka_unit_test(test_diag_formats_file_line_and_column),
        cmocka_unit_test(test_xgrow_keeps_contents_and_grows_geometrically),
        cmocka_unit_test(test_strerror_names_every_error),
        cmocka_unit_test(test_log_lines_are_dropped_and_counted_while_stderr_is_full),
        cmocka_unit_test(test_log_is_written_out_in_order_when_stopped),
        cmocka_unit_test(test_client_lines_beyond_the_rate_are_suppressed_and_counted),
        cmocka_unit_test(test_reason_phrase_covers_what_proxy_and_admin_send),
        cmocka_unit_test(test_clock_stands_still_inside_a_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
