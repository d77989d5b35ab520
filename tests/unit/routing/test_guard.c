/* SPDX-License-Identifier: MIT */
/* Unit tests for routing/guard.c, the guard's arithmetic: window sums from a ring of
 * cumulative samples, p99 from the difference of two histograms, the zero cases (no requests,
 * empty histograms, a stable cluster without errors), min_requests, and each limit's verdict
 * with its figures for people. Also the loader's `apps[].guard` keys (values and errors with
 * line:col). Nothing here reads a clock: samples are pushed as ticks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "switchyard/config.h"
#include "switchyard/guard.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static struct sy_guard_spec spec_default(void)
{
    return (struct sy_guard_spec){
        .on = true,
        .max_5xx_ratio = 0.05,
        .window_ms = 30000,
        .min_requests = 50,
    };
}

/* A cumulative sample: `req` requests, `err` of them 5xx, every one in latency bucket `b`. */
static struct sy_guard_sample sample(uint64_t req, uint64_t err, size_t b)
{
    struct sy_guard_sample s = {.requests = req, .errors = err};
    s.lat[b] = req;
    return s;
}

static struct sy_guard_figures figures(uint64_t req, uint64_t err, size_t b, size_t ticks)
{
    struct sy_guard_figures f = {.requests = req, .errors = err, .ticks = ticks};
    f.lat[b] = req;
    return f;
}

static void test_window_is_newest_minus_oldest_of_the_last_ticks(void **state)
{
    struct sy_guard_ring r;
    sy_guard_ring_init(&r, 3); /* a window of 3 ticks: 4 samples */
    for (uint64_t t = 0; t < 10; t++) {
        struct sy_guard_sample s = sample(100 * t, 10 * t, 2);
        sy_guard_ring_push(&r, &s);
    }
    struct sy_guard_figures f;
    sy_guard_ring_window(&r, &f);
    assert_int_equal(f.ticks, 3);
    assert_int_equal(f.requests, 300); /* 900 - 600 */
    assert_int_equal(f.errors, 30);
    assert_int_equal(f.lat[2], 300);
    assert_int_equal(f.lat[3], 0);
    sy_guard_ring_dispose(&r);
}

static void test_window_grows_until_full(void **state)
{
    struct sy_guard_ring r;
    sy_guard_ring_init(&r, 30);
    struct sy_guard_figures f;
    sy_guard_ring_window(&r, &f); /* empty */
    assert_int_equal(f.ticks, 0);
    assert_int_equal(f.requests, 0);
    struct sy_guard_sample s0 = sample(1000, 5, 0);
    sy_guard_ring_push(&r, &s0);
    sy_guard_ring_window(&r, &f); /* one sample is no window */
    assert_int_equal(f.ticks, 0);
    assert_int_equal(f.requests, 0);
    struct sy_guard_sample s1 = sample(1040, 7, 0);
    sy_guard_ring_push(&r, &s1);
    sy_guard_ring_window(&r, &f);
    assert_int_equal(f.ticks, 1);
    assert_int_equal(f.requests, 40);
    assert_int_equal(f.errors, 2);
    sy_guard_ring_dispose(&r);
}

static void test_cleared_ring_starts_a_new_window(void **state)
{
    struct sy_guard_ring r;
    sy_guard_ring_init(&r, 5);
    for (uint64_t t = 0; t < 4; t++) {
        struct sy_guard_sample s = sample(100 * t, 50 * t, 0); /* half are 5xx */
        sy_guard_ring_push(&r, &s);
    }
    sy_guard_ring_clear(&r);
    struct sy_guard_sample a = sample(300, 150, 0), b = sample(400, 150, 0);
    sy_guard_ring_push(&r, &a);
    sy_guard_ring_push(&r, &b);
    struct sy_guard_figures f;
    sy_guard_ring_window(&r, &f);
    assert_int_equal(f.ticks, 1);
    assert_int_equal(f.requests, 100);
    assert_int_equal(f.errors, 0); /* the bad seconds before the clear are not in it */
    sy_guard_ring_dispose(&r);
}

static void test_counter_going_down_counts_as_zero(void **state)
{
    struct sy_guard_ring r;
    sy_guard_ring_init(&r, 2);
    struct sy_guard_sample a = sample(500, 40, 1), b = sample(400, 10, 1);
    sy_guard_ring_push(&r, &a);
    sy_guard_ring_push(&r, &b);
    struct sy_guard_figures f;
    sy_guard_ring_window(&r, &f);
    assert_int_equal(f.requests, 0);
    assert_int_equal(f.errors, 0);
    assert_int_equal(f.lat[1], 0);
    assert_true(sy_guard_ratio(&f) == 0.0);
    sy_guard_ring_dispose(&r);
}

static void test_errors_never_exceed_requests(void **state)
{
    struct sy_guard_ring r;
    sy_guard_ring_init(&r, 1);
    struct sy_guard_sample a = sample(100, 0, 0), b = sample(110, 20, 0);
    sy_guard_ring_push(&r, &a);
    sy_guard_ring_push(&r, &b);
    struct sy_guard_figures f;
    sy_guard_ring_window(&r, &f);
    assert_int_equal(f.requests, 10);
    assert_int_equal(f.errors, 10);
    assert_true(sy_guard_ratio(&f) == 1.0);
    sy_guard_ring_dispose(&r);
}

static void test_ratio_of_no_requests_is_zero(void **state)
{
    struct sy_guard_figures f = {0};
    assert_true(sy_guard_ratio(&f) == 0.0);
    f.errors = 3; /* cannot happen; still no division */
    assert_true(sy_guard_ratio(&f) == 0.0);
}

static void test_quantile_of_empty_histogram_is_zero(void **state)
{
    uint64_t lat[SY_LAT_N + 1] = {0};
    assert_int_equal(sy_guard_quantile_us(lat, 0.99), 0);
    assert_int_equal(sy_guard_quantile_us(lat, 1.0), 0);
}

static void test_quantile_interpolates_inside_its_bucket(void **state)
{
    uint64_t lat[SY_LAT_N + 1] = {0};
    /* 100 requests in (100 ms, 250 ms]: the p99 is 99% of the way through the bucket. */
    lat[7] = 100;
    uint64_t p99 = sy_guard_quantile_us(lat, 0.99);
    assert_int_equal(p99, 100000 + (250000 - 100000) * 99 / 100);
    /* The median of 100 in the first bucket [0, 1 ms]. */
    uint64_t first[SY_LAT_N + 1] = {100};
    assert_int_equal(sy_guard_quantile_us(first, 0.5), 500);
}

static void test_p99_is_from_the_window_not_since_start(void **state)
{
    /* Since start: 10,000 fast requests. In the window: 100 slow ones, which only the
     * difference of the histograms shows (the cumulative p99 would be under 1 ms). */
    struct sy_guard_ring r;
    sy_guard_ring_init(&r, 1);
    struct sy_guard_sample a = {.requests = 10000}, b;
    a.lat[0] = 10000;
    b = a;
    b.requests += 100;
    b.lat[9] = 100; /* (500 ms, 1 s] */
    sy_guard_ring_push(&r, &a);
    sy_guard_ring_push(&r, &b);
    struct sy_guard_figures f;
    sy_guard_ring_window(&r, &f);
    uint64_t p99 = sy_guard_quantile_us(f.lat, 0.99);
    assert_true(p99 > 500000 && p99 <= 1000000);
    uint64_t cumulative = sy_guard_quantile_us(b.lat, 0.99);
    assert_true(cumulative <= 1000);
    sy_guard_ring_dispose(&r);
}

static void test_quantile_in_the_unbounded_bucket_is_the_last_bound(void **state)
{
    uint64_t lat[SY_LAT_N + 1] = {0};
    lat[SY_LAT_N] = 10;
    assert_int_equal(sy_guard_quantile_us(lat, 0.99), sy_lat_bound_us(SY_LAT_N - 1));
}

static void test_no_verdict_below_min_requests(void **state)
{
    struct sy_guard_spec s = spec_default();
    /* 49 requests, every one 5xx: still no verdict. */
    struct sy_guard_figures c = figures(49, 49, 0, 30);
    char why[200];
    assert_int_equal(sy_guard_judge(&s, &c, NULL, 1000, why, sizeof(why)), SY_GUARD_TOO_FEW);
    assert_false(sy_guard_verdict_breaks(SY_GUARD_TOO_FEW));
    assert_non_null(strstr(why, "n=49 < min_requests 50"));
    c = figures(50, 49, 0, 30);
    assert_int_equal(sy_guard_judge(&s, &c, NULL, 1000, NULL, 0), SY_GUARD_5XX);
}

static void test_no_requests_is_no_verdict_even_with_min_requests_zero(void **state)
{
    struct sy_guard_spec s = spec_default();
    s.min_requests = 0; /* the loader refuses 0; the arithmetic still never divides by it */
    struct sy_guard_figures c = {0};
    assert_int_equal(sy_guard_judge(&s, &c, &c, 1000, NULL, 0), SY_GUARD_TOO_FEW);
}

static void test_5xx_above_the_limit_breaks_with_its_figures(void **state)
{
    struct sy_guard_spec s = spec_default();
    struct sy_guard_figures c = figures(412, 51, 0, 30), st = figures(4000, 0, 0, 30);
    char why[200];
    assert_int_equal(sy_guard_judge(&s, &c, &st, 1000, why, sizeof(why)), SY_GUARD_5XX);
    assert_string_equal(why, "5xx 12.4% > 5% over 30 s, n=412");
}

static void test_5xx_at_the_limit_holds(void **state)
{
    struct sy_guard_spec s = spec_default();
    struct sy_guard_figures c = figures(100, 5, 0, 30);
    assert_int_equal(sy_guard_judge(&s, &c, NULL, 1000, NULL, 0), SY_GUARD_HELD);
}

static void test_ratio_one_never_breaks_on_5xx(void **state)
{
    struct sy_guard_spec s = spec_default();
    s.max_5xx_ratio = 1;
    struct sy_guard_figures c = figures(100, 100, 0, 30);
    assert_int_equal(sy_guard_judge(&s, &c, NULL, 1000, NULL, 0), SY_GUARD_HELD);
}

static void test_relative_5xx_breaks_against_a_stable_with_errors(void **state)
{
    struct sy_guard_spec s = spec_default();
    s.relative_to_stable = 2.0;
    struct sy_guard_figures c = figures(1000, 30, 0, 30);  /* 3%: under the 5% limit */
    struct sy_guard_figures st = figures(1000, 10, 0, 30); /* 1%: 3% is more than twice */
    char why[200];
    assert_int_equal(sy_guard_judge(&s, &c, &st, 1000, why, sizeof(why)), SY_GUARD_5XX_RELATIVE);
    assert_string_equal(why, "5xx 3% > 2x stable's 1% over 30 s, n=1000");
    st = figures(1000, 20, 0, 30); /* 2%: 3% is not more than twice */
    assert_int_equal(sy_guard_judge(&s, &c, &st, 1000, NULL, 0), SY_GUARD_HELD);
}

static void test_relative_limits_need_a_stable_figure(void **state)
{
    struct sy_guard_spec s = spec_default();
    s.relative_to_stable = 2.0;
    struct sy_guard_figures c = figures(1000, 30, 3, 30);
    /* A stable cluster without errors: twice nothing is nothing, the absolute limit rules. */
    struct sy_guard_figures st = figures(1000, 0, 3, 30);
    assert_int_equal(sy_guard_judge(&s, &c, &st, 1000, NULL, 0), SY_GUARD_HELD);
    /* A stable cluster below min_requests is not compared with. */
    st = figures(10, 1, 0, 30);
    assert_int_equal(sy_guard_judge(&s, &c, &st, 1000, NULL, 0), SY_GUARD_HELD);
    /* No stable figures at all. */
    assert_int_equal(sy_guard_judge(&s, &c, NULL, 1000, NULL, 0), SY_GUARD_HELD);
}

static void test_p99_above_max_breaks(void **state)
{
    struct sy_guard_spec s = spec_default();
    s.max_p99_ms = 800;
    struct sy_guard_figures c = figures(200, 0, 10, 30); /* (1 s, 2.5 s] */
    char why[200];
    assert_int_equal(sy_guard_judge(&s, &c, NULL, 1000, why, sizeof(why)), SY_GUARD_P99);
    assert_non_null(strstr(why, "> 800 ms over 30 s, n=200"));
    c = figures(200, 0, 8, 30); /* (250 ms, 500 ms] */
    assert_int_equal(sy_guard_judge(&s, &c, NULL, 1000, NULL, 0), SY_GUARD_HELD);
}

static void test_relative_p99_breaks(void **state)
{
    struct sy_guard_spec s = spec_default();
    s.relative_to_stable = 2.0;
    struct sy_guard_figures c = figures(200, 0, 7, 2);  /* (100, 250] ms */
    struct sy_guard_figures st = figures(200, 0, 4, 2); /* (10, 25] ms */
    char why[200];
    assert_int_equal(sy_guard_judge(&s, &c, &st, 1000, why, sizeof(why)), SY_GUARD_P99_RELATIVE);
    assert_non_null(strstr(why, "> 2x stable's"));
    assert_non_null(strstr(why, "over 2 s, n=200"));
    st = c;
    assert_int_equal(sy_guard_judge(&s, &c, &st, 1000, NULL, 0), SY_GUARD_HELD);
}

static void test_window_shorter_than_a_second_is_said_in_ms(void **state)
{
    struct sy_guard_spec s = spec_default();
    struct sy_guard_figures c = figures(100, 50, 0, 3);
    char why[200];
    sy_guard_judge(&s, &c, NULL, 250, why, sizeof(why));
    assert_string_equal(why, "5xx 50% > 5% over 750 ms, n=100");
}

/* -- the loader ----------------------------------------------------------------------------- */

static const char head[] = "listen:\n"
                           "  - address: 127.0.0.1:8080\n"
                           "clusters:\n"
                           "  blue: { endpoints: [127.0.0.1:9001] }\n"
                           "  green: { endpoints: [127.0.0.1:9002] }\n"
                           "apps:\n"
                           "  - name: chat\n"
                           "    hosts: [chat.example.com]\n";

static int load(const char *app_tail, struct sy_diags *d, struct sy_config **cfg)
{
    char text[2048];
    snprintf(text, sizeof(text), "%s%s", head, app_tail);
    sy_diags_init(d);
    return sy_config_parse("t.yaml", text, strlen(text), d, cfg);
}

static void test_guard_keys_are_read_with_defaults(void **state)
{
    struct sy_diags d;
    struct sy_config *cfg = NULL;
    assert_int_equal(load("    weights: { blue: 90, green: 10 }\n"
                          "    guard: { max_p99: 800ms, window: 2s }\n",
                          &d, &cfg),
                     0);
    const struct sy_guard_spec *g = &cfg->apps[0].guard;
    assert_true(g->on);
    assert_true(g->max_5xx_ratio == SY_GUARD_MAX_5XX_DEFAULT);
    assert_int_equal(g->max_p99_ms, 800);
    assert_int_equal(g->window_ms, 2000);
    assert_int_equal(g->min_requests, SY_GUARD_MIN_REQUESTS_DEFAULT);
    assert_true(g->relative_to_stable == 0);
    sy_config_free(cfg);
    sy_diags_dispose(&d);

    cfg = NULL;
    assert_int_equal(load("    weights: { blue: 90, green: 10 }\n    guard: off\n", &d, &cfg), 0);
    assert_false(cfg->apps[0].guard.on);
    sy_config_free(cfg);
    sy_diags_dispose(&d);
    cfg = NULL;
    assert_int_equal(load("    weights: { blue: 90, green: 10 }\n    guard: on\n", &d, &cfg), 0);
    assert_true(cfg->apps[0].guard.on);
    assert_int_equal(cfg->apps[0].guard.window_ms, SY_GUARD_WINDOW_DEFAULT_MS);
    sy_config_free(cfg);
    sy_diags_dispose(&d);
}

static void test_bad_guard_values_are_errors_with_their_place(void **state)
{
    static const struct {
        const char *tail, *want;
    } cases[] = {
        {"    weights: { blue: 90, green: 10 }\n    guard: { max_5xx_ratio: 1.5 }\n",
         "t.yaml:10:29: guard.max_5xx_ratio must be a number from 0 to 1"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { max_5xx_ratio: \"0.1\" }\n",
         "t.yaml:10:29: guard.max_5xx_ratio must be"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { window: 30 }\n",
         "t.yaml:10:22: guard.window must be a duration with its unit"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { window: 1500ms }\n",
         "t.yaml:10:22: guard.window must be whole seconds 1000ms..600000ms"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { window: 11m }\n",
         "t.yaml:10:22: guard.window must be whole seconds"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { max_p99: 0ms }\n",
         "t.yaml:10:23: guard.max_p99 must be 1ms..60000ms"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { min_requests: 0 }\n",
         "t.yaml:10:28: guard.min_requests must be an integer 1..100000000"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { relative_to_stable: 0.5 }\n",
         "t.yaml:10:34: guard.relative_to_stable must be 0 (off) or a factor from 1 to 1000"},
        {"    weights: { blue: 90, green: 10 }\n    guard: { max_5xx: 0.1 }\n",
         "t.yaml:10:14: unknown key 'max_5xx' in guard"},
        {"    weights: { blue: 90, green: 10 }\n    guard: maybe\n",
         "t.yaml:10:12: guard must be off, on or a mapping"},
        {"    weights: { blue: 100 }\n    guard: on\n",
         "t.yaml:10:12: guard needs a cluster besides the stable one"},
        {"    mode: exclusive\n    weights: { blue: 100, green: 0 }\n    guard: on\n",
         "t.yaml:11:12: guard is not available on an exclusive app"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sy_diags d;
        struct sy_config *cfg = NULL;
        assert_int_not_equal(load(cases[i].tail, &d, &cfg), 0);
        assert_null(cfg);
        assert_true(d.n >= 1);
        char line[512];
        sy_diag_format(&d.v[0], line, sizeof(line));
        if (strncmp(line, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: got '%s', want '%s...'", i, line, cases[i].want);
        sy_diags_dispose(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_is_newest_minus_oldest_of_the_last_ticks),
        cmocka_unit_test(test_window_grows_until_full),
        cmocka_unit_test(test_cleared_ring_starts_a_new_window),
        cmocka_unit_test(test_counter_going_down_counts_as_zero),
        cmocka_unit_test(test_errors_never_exceed_requests),
        cmocka_unit_test(test_ratio_of_no_requests_is_zero),
        cmocka_unit_test(test_quantile_of_empty_histogram_is_zero),
        cmocka_unit_test(test_quantile_interpolates_inside_its_bucket),
        cmocka_unit_test(test_p99_is_from_the_window_not_since_start),
        cmocka_unit_test(test_quantile_in_the_unbounded_bucket_is_the_last_bound),
        cmocka_unit_test(test_no_verdict_below_min_requests),
        cmocka_unit_test(test_no_requests_is_no_verdict_even_with_min_requests_zero),
        cmocka_unit_test(test_5xx_above_the_limit_breaks_with_its_figures),
        cmocka_unit_test(test_5xx_at_the_limit_holds),
        cmocka_unit_test(test_ratio_one_never_breaks_on_5xx),
        cmocka_unit_test(test_relative_5xx_breaks_against_a_stable_with_errors),
        cmocka_unit_test(test_relative_limits_need_a_stable_figure),
        cmocka_unit_test(test_p99_above_max_breaks),
        cmocka_unit_test(test_relative_p99_breaks),
        cmocka_unit_test(test_window_shorter_than_a_second_is_said_in_ms),
        cmocka_unit_test(test_guard_keys_are_read_with_defaults),
        cmocka_unit_test(test_bad_guard_values_are_errors_with_their_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
