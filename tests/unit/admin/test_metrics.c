/* SPDX-License-Identifier: MIT */
/* The Prometheus exposition writer (admin/metrics.c): escaping of HELP text and label values,
 * sample names, integer and float values, and the whole /metrics document built from fake
 * counters: every sample belongs to a family announced once, with HELP and TYPE, before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/admin_http.h"

static void test_escapes_help_and_label_values(void **state)
{
    struct sy_prom m;
    sy_prom_init(&m);
    sy_prom_family(&m, "x_total", "counter", "a \\ b\nc \"q\"");
    const char *l[] = {"app", "we\"b\\\nx", "cluster", "blue"};
    sy_prom_sample_u64(&m, "", l, 2, NULL, 42);
    assert_string_equal(m.p, "# HELP x_total a \\\\ b\\nc \"q\"\n"
                             "# TYPE x_total counter\n"
                             "x_total{app=\"we\\\"b\\\\\\nx\",cluster=\"blue\"} 42\n");
    sy_prom_dispose(&m);
}

static void test_suffixes_le_and_values(void **state)
{
    struct sy_prom m;
    sy_prom_init(&m);
    sy_prom_family(&m, "h_seconds", "histogram", "h");
    const char *l[] = {"app", "a"};
    sy_prom_sample_u64(&m, "_bucket", l, 1, "0.25", 3);
    sy_prom_sample_u64(&m, "_bucket", NULL, 0, "+Inf", 18446744073709551615ull);
    sy_prom_sample(&m, "_sum", l, 1, NULL, 0.073);
    sy_prom_sample(&m, "", NULL, 0, NULL, INFINITY);
    sy_prom_sample(&m, "", NULL, 0, NULL, 1700000000.5);
    assert_string_equal(m.p, "# HELP h_seconds h\n"
                             "# TYPE h_seconds histogram\n"
                             "h_seconds_bucket{app=\"a\",le=\"0.25\"} 3\n"
                             "h_seconds_bucket{le=\"+Inf\"} 18446744073709551615\n"
                             "h_seconds_sum{app=\"a\"} 0.073\n"
                             "h_seconds +Inf\n"
                             "h_seconds 1700000000.5\n");
    sy_prom_dispose(&m);
}

static void fake_traffic(void *arg, sy_traffic_cb cb, void *cb_arg)
{
    struct sy_traffic t = {.app = "web", .cluster = "blue", .requests = 10, .in_flight = 1};
    t.by_class[2] = 9;
    t.by_class[5] = 1;
    t.dur[0] = 7;
    t.dur[3] = 2;
    t.dur[SY_LAT_N] = 1;
    t.dur_sum_us = 2500000;
    t.own[9] = 1; /* 503 */
    t.queue_503 = 1;
    cb(&t, cb_arg);
    struct sy_traffic u = {.app = NULL, .cluster = NULL};
    u.own[0] = 4; /* 400 before routing */
    cb(&u, cb_arg);
}

static size_t fake_health(void *arg, struct sy_worker_health *v, size_t max)
{
    v[0] = (struct sy_worker_health){.id = 0, .running = true, .beat_age_ms = 100};
    return 1;
}

static void fake_errors(void *arg, sy_endpoint_errors_cb cb, void *cb_arg)
{
    struct sy_endpoint_errors e = {.cluster = "blue", .endpoint = "127.0.0.1:9"};
    e.errors[SY_CONNERR_REFUSED] = 5;
    cb(&e, cb_arg);
}

/* The value of the sample line that starts with `prefix`, or -1. */
static double value_of(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, strlen(prefix)) == 0)
            return strtod(p + strlen(prefix), NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static void test_every_sample_follows_its_family_once(void **state)
{
    struct sy_admin_http_env env = {
        .traffic = fake_traffic,
        .health = fake_health,
        .connect_errors = fake_errors,
    };
    struct sy_prom m;
    sy_prom_init(&m);
    sy_admin_metrics(&m, &env, true);
    char *text = strdup(m.p);
    char family[128] = "";
    char *families[256];
    size_t n_families = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128];
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s", family), 1);
            for (size_t i = 0; i < n_families; i++)
                assert_string_not_equal(families[i], family); /* announced once */
            families[n_families++] = strdup(family);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s", name), 1);
            assert_string_equal(name, family);
            continue;
        }
        assert_int_equal(sscanf(line, "%127[^{ ]", name), 1);
        size_t fl = strlen(family);
        assert_true(strncmp(name, family, fl) == 0);
        const char *rest = name + fl;
        assert_true(!*rest || strcmp(rest, "_bucket") == 0 || strcmp(rest, "_sum") == 0 ||
                    strcmp(rest, "_count") == 0);
    }
    for (size_t i = 0; i < n_families; i++)
        free(families[i]);
    free(text);
    /* The figures. */
    assert_true(value_of(m.p, "switchyard_ready ") == 1);
    assert_true(value_of(m.p, "switchyard_requests_total{app=\"web\",cluster=\"blue\","
                              "code_class=\"2xx\"} ") == 9);
    assert_true(value_of(m.p, "switchyard_request_duration_seconds_bucket{app=\"web\","
                              "cluster=\"blue\",le=\"0.001\"} ") == 7);
    assert_true(value_of(m.p, "switchyard_request_duration_seconds_bucket{app=\"web\","
                              "cluster=\"blue\",le=\"0.01\"} ") == 9);
    assert_true(value_of(m.p, "switchyard_request_duration_seconds_bucket{app=\"web\","
                              "cluster=\"blue\",le=\"+Inf\"} ") == 10);
    assert_true(value_of(m.p, "switchyard_request_duration_seconds_count{app=\"web\","
                              "cluster=\"blue\"} ") == 10);
    assert_true(value_of(m.p, "switchyard_request_duration_seconds_sum{app=\"web\","
                              "cluster=\"blue\"} ") == 2.5);
    assert_true(value_of(m.p, "switchyard_generated_responses_total{app=\"web\","
                              "cluster=\"blue\",code=\"503\",reason=\"queue\"} ") == 1);
    assert_true(value_of(m.p, "switchyard_generated_responses_total{app=\"\",cluster=\"\","
                              "code=\"400\",reason=\"bad_request\"} ") == 4);
    assert_true(value_of(m.p, "switchyard_upstream_connect_errors_total{cluster=\"blue\","
                              "endpoint=\"127.0.0.1:9\",reason=\"refused\"} ") == 5);
    assert_true(value_of(m.p, "switchyard_worker_heartbeat_age_seconds{worker=\"0\"} ") == 0.1);
    assert_true(value_of(m.p, "process_open_fds ") > 0);
    sy_prom_dispose(&m);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes_help_and_label_values),
        cmocka_unit_test(test_suffixes_le_and_values),
        cmocka_unit_test(test_every_sample_follows_its_family_once),
    };
    return cmocka_run_group_tests_name("admin/metrics", tests, NULL, NULL);
}
