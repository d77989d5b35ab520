/* SPDX-License-Identifier: MIT */
/* Unit tests for routing/health.c and the health-aware choices of routing/pick.c and table.c:
 * the flap damper of the state-change log, the rise/fall counter, the ejection backoff and its
 * reset, the retry budget over sliding windows, the registry that keeps an endpoint's state
 * across configs, endpoint choice that skips down endpoints, and cluster failover (weights,
 * sticky keys, failover: false, force). Time is a parameter everywhere except the pick, whose
 * endpoints are forced down by their state word (not by time). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "switchyard/config.h"
#include "switchyard/health.h"
#include "switchyard/routing.h"

/* ---- the flap damper ---------------------------------------------------------------------- */

/* A flap of a change every 100 ms for 1.6 s, starting 0.8 s before a whole minute of the
 * clock: 6 lines, not 6 in each clock minute it touches. */
static void test_flap_across_a_clock_minute_logs_six_lines(void **st)
{
    struct sy_ep_health h = {0};
    uint64_t start = 10 * 60000 - 800;
    unsigned taken = 0;
    for (int i = 0; i < 16; i++)
        taken += sy_ep_log_take(&h, start + (uint64_t)i * 100);
    assert_int_equal(taken, SY_HEALTH_LOG_LINES_PER_MINUTE);
    assert_int_equal(h.log_dropped, 16 - SY_HEALTH_LOG_LINES_PER_MINUTE);
}

/* The minute runs from the first line: a line just before it ends is held back, one at its
 * end is logged and opens the next minute. */
static void test_the_damper_opens_a_minute_after_its_first_line(void **st)
{
    struct sy_ep_health h = {0};
    uint64_t t0 = 123456;
    for (int i = 0; i < SY_HEALTH_LOG_LINES_PER_MINUTE; i++)
        assert_true(sy_ep_log_take(&h, t0 + (uint64_t)i));
    assert_false(sy_ep_log_take(&h, t0 + 59999));
    assert_true(sy_ep_log_take(&h, t0 + 60000));
    for (int i = 1; i < SY_HEALTH_LOG_LINES_PER_MINUTE; i++)
        assert_true(sy_ep_log_take(&h, t0 + 60000 + 59000));
    assert_false(sy_ep_log_take(&h, t0 + 60000 + 59999));
    /* From the clock's start too (the unit tests' clock; a machine just booted). */
    struct sy_ep_health z = {0};
    assert_true(sy_ep_log_take(&z, 0));
}

/* ---- rise and fall ------------------------------------------------------------------------ */

static void test_fall_failures_in_a_row_take_it_down_and_rise_passes_bring_it_up(void **st)
{
    struct sy_health_run r = {0};
    assert_false(sy_health_run_step(&r, false, 2, 3));
    assert_false(sy_health_run_step(&r, false, 2, 3));
    assert_false(r.down);
    assert_true(sy_health_run_step(&r, false, 2, 3)); /* the third */
    assert_true(r.down);
    assert_false(sy_health_run_step(&r, false, 2, 3)); /* already down: no change */
    assert_false(sy_health_run_step(&r, true, 2, 3));
    assert_true(r.down);
    assert_true(sy_health_run_step(&r, true, 2, 3));
    assert_false(r.down);
}

static void test_a_flapping_endpoint_never_changes_state(void **st)
{
    struct sy_health_run r = {0};
    for (int i = 0; i < 100; i++)
        assert_false(sy_health_run_step(&r, i % 2 == 0, 2, 2));
    assert_false(r.down);
    r = (struct sy_health_run){.down = true};
    for (int i = 0; i < 100; i++)
        assert_false(sy_health_run_step(&r, i % 2 == 0, 2, 2));
    assert_true(r.down);
}

static void test_rise_and_fall_of_one_change_at_once(void **st)
{
    struct sy_health_run r = {0};
    assert_true(sy_health_run_step(&r, false, 1, 1));
    assert_true(sy_health_run_step(&r, true, 1, 1));
}

/* ---- ejection -------------------------------------------------------------------------------- */

static void test_backoff_doubles_and_is_capped(void **st)
{
    struct sy_outlier_spec o = {true, 5, 10000, 300000};
    assert_int_equal(sy_outlier_backoff_ms(&o, 1), 10000);
    assert_int_equal(sy_outlier_backoff_ms(&o, 2), 20000);
    assert_int_equal(sy_outlier_backoff_ms(&o, 3), 40000);
    assert_int_equal(sy_outlier_backoff_ms(&o, 5), 160000);
    assert_int_equal(sy_outlier_backoff_ms(&o, 6), 300000);
    assert_int_equal(sy_outlier_backoff_ms(&o, 64), 300000);
    assert_int_equal(sy_outlier_backoff_ms(&o, 1000000), 300000);
}

static void test_n_failures_in_a_row_eject_and_a_success_resets_the_run(void **st)
{
    struct sy_ep_health h;
    memset(&h, 0, sizeof(h));
    struct sy_outlier_spec o = {true, 3, 1000, 8000};
    uint64_t now = 1000000;
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_5XX, 503, now), 0);
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_5XX, 503, now), 0);
    assert_int_equal(sy_ep_note(&h, &o, false, SY_HR_NONE, 0, now), 0); /* resets */
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_5XX, 503, now), 0);
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_5XX, 503, now), 0);
    assert_true(sy_ep_is_up(&h, now));
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_5XX, 503, now), 1000);
    assert_false(sy_ep_is_up(&h, now));
    assert_false(sy_ep_is_up(&h, now + 999));
    assert_true(sy_ep_is_up(&h, now + 1000));
    assert_int_equal(atomic_load(&h.reason), SY_HR_EJECT_5XX | (503u << 8));
    char text[64];
    sy_health_reason_text(atomic_load(&h.reason), text, sizeof(text));
    assert_string_equal(text, "ejected_5xx 503");
}

static void test_ejection_grows_while_it_keeps_failing_and_resets_after_max_ejection(void **st)
{
    struct sy_ep_health h;
    memset(&h, 0, sizeof(h));
    struct sy_outlier_spec o = {true, 1, 1000, 4000};
    uint64_t now = 1000000;
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_CONNECT, 0, now), 1000);
    now += 1000;
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_CONNECT, 0, now), 2000);
    now += 2000;
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_CONNECT, 0, now), 4000);
    now += 4000;
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_CONNECT, 0, now), 4000); /* capped */
    /* In for longer than max_ejection since the last one ended: from the base again. */
    now += 4000 + 4001;
    assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_CONNECT, 0, now), 1000);
    assert_int_equal(atomic_load(&h.ejected_total), 5);
}

static void test_outlier_off_never_ejects(void **st)
{
    struct sy_ep_health h;
    memset(&h, 0, sizeof(h));
    struct sy_outlier_spec o = {false, 1, 1000, 4000};
    for (int i = 0; i < 10; i++)
        assert_int_equal(sy_ep_note(&h, &o, true, SY_HR_EJECT_CONNECT, 0, 5000), 0);
    assert_true(sy_ep_is_up(&h, 5000));
    assert_true(sy_ep_is_up(NULL, 5000));
}

/* ---- retry budget -------------------------------------------------------------------------- */

static void test_budget_is_a_share_of_requests_with_a_minimum(void **st)
{
    struct sy_retry_budget_spec b = {20, 10000, 3};
    assert_true(sy_retry_budget_fits(&b, 0, 0));
    assert_true(sy_retry_budget_fits(&b, 0, 2));
    assert_false(sy_retry_budget_fits(&b, 0, 3));
    assert_true(sy_retry_budget_fits(&b, 100, 19));
    assert_false(sy_retry_budget_fits(&b, 100, 20));
    struct sy_retry_budget_spec none = {0, 10000, 0};
    assert_false(sy_retry_budget_fits(&none, 1000, 0));
}

static void test_budget_bounds_retries_over_a_sliding_window(void **st)
{
    struct sy_cluster_health h;
    memset(&h, 0, sizeof(h));
    struct sy_retry_budget_spec b = {20, 10000, 3};
    uint64_t now = 10000 * 50; /* the start of a window */
    for (int i = 0; i < 100; i++)
        sy_cluster_count_request(&h, &b, now);
    int taken = 0;
    for (int i = 0; i < 100; i++)
        taken += sy_cluster_take_retry(&h, &b, now);
    assert_int_equal(taken, 20);
    assert_int_equal(atomic_load(&h.retries_denied), 80);
    /* Half-way through the next window, half of the previous one still counts. */
    now += 15000;
    taken = 0;
    for (int i = 0; i < 100; i++)
        taken += sy_cluster_take_retry(&h, &b, now);
    assert_int_equal(taken, 0); /* 10 of 50 requests' worth are retries already */
    for (int i = 0; i < 50; i++)
        sy_cluster_count_request(&h, &b, now);
    taken = 0;
    for (int i = 0; i < 100; i++)
        taken += sy_cluster_take_retry(&h, &b, now);
    assert_int_equal(taken, 10); /* 100 requests, 10 retries: room for 10 more */
    /* Two windows later, nothing of it counts: the minimum. */
    now += 20000;
    taken = 0;
    for (int i = 0; i < 100; i++)
        taken += sy_cluster_take_retry(&h, &b, now);
    assert_int_equal(taken, 3);
}

static void test_a_retry_that_worked_is_given_back(void **st)
{
    struct sy_cluster_health h;
    memset(&h, 0, sizeof(h));
    struct sy_retry_budget_spec b = {20, 10000, 3};
    uint64_t now = 10000 * 7;
    for (int i = 0; i < 1000; i++) {
        sy_cluster_count_request(&h, &b, now);
        assert_true(sy_cluster_take_retry(&h, &b, now));
        sy_cluster_retry_worked(&h);
    }
    assert_int_equal(atomic_load(&h.retries), 1000);
    sy_cluster_retry_worked(&h); /* never below 0 */
    assert_int_equal(atomic_load(&h.retry_cur), 0);
    assert_true(sy_cluster_take_retry(NULL, &b, now));
}

/* ---- the registry and the choices -------------------------------------------------------------
 */

static const char yaml_fmt[] = "listen:\n"
                               "  - address: 127.0.0.1:8080\n"
                               "clusters:\n"
                               "  blue:\n"
                               "    endpoints: [127.0.0.1:9001]\n"
                               "  green:\n"
                               "    endpoints: [%s]\n"
                               "    health: {}\n"
                               "apps:\n"
                               "  - name: web\n"
                               "    hosts: ['*']\n"
                               "    weights: { blue: 50, green: 50 }\n"
                               "    force: { header: x-force }\n"
                               "%s";

static struct sy_config *parse_attached(const char *text)
{
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse("t.yaml", text, strlen(text), &d, &cfg);
    for (size_t i = 0; i < d.n; i++) {
        char line[512];
        sy_diag_format(&d.v[i], line, sizeof(line));
        print_message("  diag: %s\n", line);
    }
    assert_int_equal(rc, 0);
    sy_diags_dispose(&d);
    sy_health_attach(cfg);
    return cfg;
}

static struct sy_config *config(const char *green, const char *app_extra)
{
    char text[2048];
    snprintf(text, sizeof(text), yaml_fmt, green, app_extra);
    return parse_attached(text);
}

/* As config(), with green's `health:` taken off. */
static struct sy_config *config_unchecked(const char *green)
{
    char text[2048];
    snprintf(text, sizeof(text), yaml_fmt, green, "");
    char *h = strstr(text, "    health: {}\n");
    assert_non_null(h);
    memmove(h, h + strlen("    health: {}\n"), strlen(h + strlen("    health: {}\n")) + 1);
    return parse_attached(text);
}

static void test_checks_taken_off_bring_it_up_only_once_in_force(void **st)
{
    struct sy_config *a = config("127.0.0.1:9005", "");
    struct sy_ep_health *h = a->clusters[1].endpoints[0].hs;
    atomic_store(&h->down, 1);
    struct sy_config *b = config_unchecked("127.0.0.1:9005");
    assert_false(b->clusters[1].health.on);
    assert_ptr_equal(b->clusters[1].endpoints[0].hs, h);
    /* Parsed, not in force (a reload refused at its compile): nothing changed. */
    assert_int_equal(atomic_load(&h->down), 1);
    sy_health_installed(b); /* in force: nothing would ever bring it back, so it is up */
    assert_int_equal(atomic_load(&h->down), 0);
    sy_config_free(a);
    sy_config_free(b);
}

static void test_state_is_kept_by_cluster_and_address_across_configs(void **st)
{
    struct sy_config *a = config("127.0.0.1:9002, 127.0.0.1:9003", "");
    struct sy_ep_health *h2 = a->clusters[1].endpoints[0].hs;
    struct sy_ep_health *h3 = a->clusters[1].endpoints[1].hs;
    assert_non_null(h2);
    assert_ptr_not_equal(h2, h3);
    atomic_store(&h3->down, 1);
    struct sy_config *b = config("127.0.0.1:9003, 127.0.0.1:9004", "");
    assert_ptr_equal(b->clusters[1].endpoints[0].hs, h3); /* stays, down */
    assert_int_equal(atomic_load(&b->clusters[1].endpoints[0].hs->down), 1);
    assert_int_equal(atomic_load(&b->clusters[1].endpoints[1].hs->down), 0); /* new: up */
    assert_ptr_equal(b->clusters[1].hs, a->clusters[1].hs);
    sy_config_free(a);
    sy_config_free(b);
}

static void test_endpoint_choice_skips_down_endpoints(void **st)
{
    struct sy_config *cfg = config("127.0.0.1:9102, 127.0.0.1:9103, 127.0.0.1:9104", "");
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 1, &t), 0);
    atomic_store(&cfg->clusters[1].endpoints[1].hs->down, 1);
    for (int i = 0; i < 30; i++) {
        const struct sy_endpoint_spec *ep = sy_route_next_endpoint(t, 1);
        assert_ptr_not_equal(ep, &cfg->clusters[1].endpoints[1]);
    }
    bool up = true;
    const struct sy_endpoint_spec *avoid = &cfg->clusters[1].endpoints[0];
    for (int i = 0; i < 30; i++) {
        const struct sy_endpoint_spec *ep = sy_route_next_endpoint_avoiding(t, 1, avoid, &up);
        assert_ptr_equal(ep, &cfg->clusters[1].endpoints[2]);
        assert_true(up);
    }
    /* None up: the round robin's choice, reported as not up. */
    atomic_store(&cfg->clusters[1].endpoints[0].hs->down, 1);
    atomic_store(&cfg->clusters[1].endpoints[2].hs->down, 1);
    assert_non_null(sy_route_next_endpoint_avoiding(t, 1, NULL, &up));
    assert_false(up);
    for (int e = 0; e < 3; e++)
        atomic_store(&cfg->clusters[1].endpoints[e].hs->down, 0);
    sy_route_table_release(t);
}

static void green_down(struct sy_config *cfg, uint32_t down)
{
    for (size_t e = 0; e < cfg->clusters[1].n_endpoints; e++)
        atomic_store(&cfg->clusters[1].endpoints[e].hs->down, down);
}

static void test_a_cluster_with_no_endpoint_up_fails_over_by_weight(void **st)
{
    struct sy_config *cfg = config("127.0.0.1:9202", "");
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 1, &t), 0);
    const struct sy_route_app *app = sy_route_app_find(t, "web");
    struct sy_route_choice ch;
    green_down(cfg, 1);
    uint64_t failovers = atomic_load(&cfg->clusters[1].hs->failovers);
    for (int i = 0; i < 20; i++) {
        struct sy_route_req req = {.rnd = (uint64_t)i * 7919};
        sy_route_pick(t, app, &req, &ch);
        assert_int_equal(ch.cluster, 0);
        assert_false(ch.down);
        if (ch.rule == SY_RULE_FAILOVER)
            assert_int_equal(ch.from, 1);
    }
    assert_int_equal(atomic_load(&cfg->clusters[1].hs->failovers) - failovers, 10);
    assert_string_equal(sy_pick_rule_name(SY_RULE_FAILOVER), "failover");
    /* A forced request stays where it was sent. */
    struct sy_header force = {sy_slice_of("x-force", 7), sy_slice_of("green", 5)};
    struct sy_route_req freq = {.headers = &force, .n_headers = 1};
    sy_route_pick(t, app, &freq, &ch);
    assert_int_equal(ch.cluster, 1);
    assert_int_equal(ch.rule, SY_RULE_FORCE_HEADER);
    /* Every cluster down: nowhere better, it stays (and is tried as it is). */
    atomic_store(&cfg->clusters[0].endpoints[0].hs->down, 1);
    for (int i = 0; i < 4; i++) {
        sy_route_pick(t, app, NULL, &ch);
        assert_int_equal(ch.rule, SY_RULE_WEIGHTS);
        assert_false(ch.down);
    }
    atomic_store(&cfg->clusters[0].endpoints[0].hs->down, 0);
    green_down(cfg, 0);
    sy_route_table_release(t);
}

static void test_sticky_users_move_together_and_come_back(void **st)
{
    struct sy_config *cfg = config("127.0.0.1:9302", "    sticky: { header: x-user }\n");
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 1, &t), 0);
    const struct sy_route_app *app = sy_route_app_find(t, "web");
    size_t before[64];
    for (int i = 0; i < 64; i++) {
        char key[16];
        snprintf(key, sizeof(key), "user-%d", i);
        struct sy_header hd = {sy_slice_of("x-user", 6), sy_slice_of(key, strlen(key))};
        struct sy_route_req req = {.headers = &hd, .n_headers = 1, .rnd = (uint64_t)i};
        struct sy_route_choice ch;
        sy_route_pick(t, app, &req, &ch);
        before[i] = ch.cluster;
        green_down(cfg, 1);
        sy_route_pick(t, app, &req, &ch);
        assert_int_equal(ch.cluster, 0);
        assert_int_equal(ch.rule, before[i] == 1 ? SY_RULE_FAILOVER : SY_RULE_STICKY);
        green_down(cfg, 0);
        sy_route_pick(t, app, &req, &ch);
        assert_int_equal(ch.cluster, before[i]);
        assert_int_equal(ch.rule, SY_RULE_STICKY);
    }
    sy_route_table_release(t);
}

static void test_failover_false_marks_the_request_down(void **st)
{
    struct sy_config *cfg = config("127.0.0.1:9402", "    failover: false\n");
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 1, &t), 0);
    const struct sy_route_app *app = sy_route_app_find(t, "web");
    green_down(cfg, 1);
    int down = 0;
    for (int i = 0; i < 20; i++) {
        struct sy_route_choice ch;
        sy_route_pick(t, app, NULL, &ch);
        if (ch.cluster == 1)
            down += ch.down;
        else
            assert_false(ch.down);
    }
    assert_int_equal(down, 10);
    assert_int_equal(atomic_load(&cfg->clusters[1].hs->down_503), 10);
    /* explain's peek shows it and counts nothing. */
    struct sy_route_choice ch;
    for (int i = 0; i < 2; i++)
        sy_route_pick_peek(t, app, NULL, &ch);
    assert_int_equal(atomic_load(&cfg->clusters[1].hs->down_503), 10);
    green_down(cfg, 0);
    sy_route_table_release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fall_failures_in_a_row_take_it_down_and_rise_passes_bring_it_up),
        cmocka_unit_test(test_a_flapping_endpoint_never_changes_state),
        cmocka_unit_test(test_rise_and_fall_of_one_change_at_once),
        cmocka_unit_test(test_backoff_doubles_and_is_capped),
        cmocka_unit_test(test_n_failures_in_a_row_eject_and_a_success_resets_the_run),
        cmocka_unit_test(test_ejection_grows_while_it_keeps_failing_and_resets_after_max_ejection),
        cmocka_unit_test(test_outlier_off_never_ejects),
        cmocka_unit_test(test_budget_is_a_share_of_requests_with_a_minimum),
        cmocka_unit_test(test_budget_bounds_retries_over_a_sliding_window),
        cmocka_unit_test(test_a_retry_that_worked_is_given_back),
        cmocka_unit_test(test_state_is_kept_by_cluster_and_address_across_configs),
        cmocka_unit_test(test_checks_taken_off_bring_it_up_only_once_in_force),
        cmocka_unit_test(test_endpoint_choice_skips_down_endpoints),
        cmocka_unit_test(test_a_cluster_with_no_endpoint_up_fails_over_by_weight),
        cmocka_unit_test(test_sticky_users_move_together_and_come_back),
        cmocka_unit_test(test_failover_false_marks_the_request_down),
        cmocka_unit_test(test_flap_across_a_clock_minute_logs_six_lines),
        cmocka_unit_test(test_the_damper_opens_a_minute_after_its_first_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
