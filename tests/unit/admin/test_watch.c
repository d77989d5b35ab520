/* SPDX-License-Identifier: MIT */
/* `status --watch`'s quantiles (admin/watch.c): p50 and p99 of the requests between two polls,
 * read off `latency_le_ms` and the cumulative `latency_counts` of one cluster in two answers
 * of `status --json`, interpolated inside the bucket; none when nothing was counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

#include "watch_internal.h"

#define LE "\"latency_le_ms\":[\"1\",\"2.5\",\"5\",\"+Inf\"]"

static struct sy_jv *parse(const char *text)
{
    struct sy_jv *v = NULL;
    const char *why = NULL;
    assert_int_equal(sy_jv_parse(text, strlen(text), &v, &why), 0);
    return v;
}

static double q(const char *now, const char *old, double quant)
{
    struct sy_jv *n = parse(now), *o = old ? parse(old) : NULL;
    double r = sy_watch_quantile(n, o, quant);
    sy_jv_free(n);
    sy_jv_free(o);
    return r;
}

static void test_since_start_interpolates_in_the_bucket(void **state)
{
    const char *now = "{" LE ",\"latency_counts\":[10,20,30,30]}";
    /* rank 15 of 30 falls in (1, 2.5], half-way through its 10 requests */
    assert_float_equal(q(now, NULL, 0.5), 1.75, 1e-9);
    /* rank 2 of 30 in the first bucket, from 0 */
    assert_float_equal(q(now, NULL, 2.0 / 30), 0.2, 1e-9);
    assert_float_equal(q(now, NULL, 1.0), 5, 1e-9);
}

static void test_the_window_is_the_difference_of_two_polls(void **state)
{
    const char *old = "{" LE ",\"latency_counts\":[10,10,10,10]}";
    const char *now = "{" LE ",\"latency_counts\":[10,20,30,30]}";
    /* 20 new requests: 10 in (1, 2.5], 10 in (2.5, 5] */
    assert_float_equal(q(now, old, 0.5), 2.5, 1e-9);
    assert_float_equal(q(now, old, 0.75), 3.75, 1e-9);
}

static void test_the_inf_bucket_answers_its_lower_bound(void **state)
{
    const char *now = "{" LE ",\"latency_counts\":[1,1,1,5]}";
    assert_float_equal(q(now, NULL, 0.99), 5, 1e-9);
    assert_float_equal(q(now, NULL, 0.1), 0.5, 1e-9);
}

static void test_nothing_counted_or_malformed_is_none(void **state)
{
    const char *now = "{" LE ",\"latency_counts\":[1,2,3,3]}";
    assert_true(q(now, now, 0.5) < 0); /* no new request */
    assert_true(q("{" LE ",\"latency_counts\":[0,0,0,0]}", NULL, 0.5) < 0);
    assert_true(q("{" LE ",\"latency_counts\":[1,2,3]}", NULL, 0.5) < 0); /* lengths differ */
    assert_true(q(now, "{" LE ",\"latency_counts\":[1]}", 0.5) < 0);
    assert_true(q("{\"latency_counts\":[1,2,3,3]}", NULL, 0.5) < 0); /* no bounds */
    assert_true(sy_watch_quantile(NULL, NULL, 0.5) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_since_start_interpolates_in_the_bucket),
        cmocka_unit_test(test_the_window_is_the_difference_of_two_polls),
        cmocka_unit_test(test_the_inf_bucket_answers_its_lower_bound),
        cmocka_unit_test(test_nothing_counted_or_malformed_is_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
