/* SPDX-License-Identifier: MIT */
/* Unit tests for the compiled routing table: host and path lookup, the smooth weighted
 * round-robin schedule and endpoint rotation. Tables are built from YAML text through the
 * real loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/config.h"
#include "switchyard/routing.h"

static const char base_yaml[] = "listen:\n"
                                "  - address: 127.0.0.1:8080\n"
                                "clusters:\n"
                                "  blue:\n"
                                "    endpoints: [127.0.0.1:9001, 127.0.0.1:9003]\n"
                                "  green:\n"
                                "    endpoints: [127.0.0.1:9002]\n"
                                "  gray:\n"
                                "    endpoints: [127.0.0.1:9004]\n";

static struct sy_route_table *table_from(const char *apps)
{
    char text[4096];
    snprintf(text, sizeof(text), "%s%s", base_yaml, apps);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse("test.yaml", text, strlen(text), &d, &cfg);
    if (rc != 0) {
        char line[512];
        for (size_t i = 0; i < d.n; i++) {
            sy_diag_format(&d.v[i], line, sizeof(line));
            fprintf(stderr, "%s\n", line);
        }
    }
    assert_int_equal(rc, 0);
    sy_diags_dispose(&d);
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 7, &t), 0);
    assert_non_null(t);
    return t;
}

static const char *cluster_of(struct sy_route_table *t, const struct sy_route_app *app)
{
    struct sy_route_choice ch;
    sy_route_pick(t, app, NULL, &ch);
    assert_int_equal(ch.reason, SY_PICK_WEIGHT);
    return sy_route_cluster(t, ch.cluster)->name;
}

static const char *match(struct sy_route_table *t, const char *host, const char *path)
{
    const struct sy_route_app *a =
        sy_route_match(t, sy_slice_of(host, strlen(host)), sy_slice_of(path, strlen(path)));
    return a ? a->name : NULL;
}

static void test_split_90_10_is_exact_over_1000_requests(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {blue: 90, green: 10}\n");
    const struct sy_route_app *app = sy_route_match(t, sy_slice_of("x", 1), sy_slice_of("/", 1));
    assert_non_null(app);
    char picks[1000];
    int blue = 0;
    for (int i = 0; i < 1000; i++) {
        picks[i] = cluster_of(t, app)[0];
        blue += picks[i] == 'b';
    }
    assert_int_equal(blue, 900);
    /* Every window of 100 consecutive requests holds exactly 90 and 10. */
    for (int start = 0; start + 100 <= 1000; start++) {
        int b = 0;
        for (int i = start; i < start + 100; i++)
            b += picks[i] == 'b';
        assert_int_equal(b, 90);
    }
    sy_route_table_release(t);
}

static void test_zero_weight_cluster_never_chosen(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {blue: 0, green: 100}\n");
    const struct sy_route_app *app = sy_route_match(t, sy_slice_of("x", 1), sy_slice_of("/", 1));
    for (int i = 0; i < 500; i++)
        assert_string_equal(cluster_of(t, app), "green");
    sy_route_table_release(t);
}

static void test_three_way_split_is_spread_smoothly(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {blue: 50, green: 30, gray: 20}\n");
    const struct sy_route_app *app = sy_route_match(t, sy_slice_of("x", 1), sy_slice_of("/", 1));
    int counts[3] = {0};
    for (int i = 0; i < 10; i++) {
        const char *c = cluster_of(t, app);
        counts[c[0] == 'b' ? 0 : c[2] == 'e' ? 1 : 2]++;
    }
    /* gcd 10: one cycle of 10 holds 5, 3 and 2. */
    assert_int_equal(counts[0], 5);
    assert_int_equal(counts[1], 3);
    assert_int_equal(counts[2], 2);
    sy_route_table_release(t);
}

static void test_smooth_schedule_never_bunches_the_minority(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {blue: 50, green: 50}\n");
    const struct sy_route_app *app = sy_route_match(t, sy_slice_of("x", 1), sy_slice_of("/", 1));
    char prev = 0;
    for (int i = 0; i < 100; i++) {
        char c = cluster_of(t, app)[0];
        assert_int_not_equal(c, prev); /* 50/50 alternates */
        prev = c;
    }
    sy_route_table_release(t);
}

static const char routes_yaml[] = "apps:\n"
                                  "  - name: exact\n"
                                  "    hosts: [chat.example.com]\n"
                                  "    paths: [/api]\n"
                                  "    weights: {blue: 1}\n"
                                  "  - name: exact-root\n"
                                  "    hosts: [www.example.com]\n"
                                  "    weights: {blue: 1}\n"
                                  "  - name: wild\n"
                                  "    hosts: ['*.example.com']\n"
                                  "    weights: {green: 1}\n"
                                  "  - name: deeper-wild\n"
                                  "    hosts: ['*.eu.example.com']\n"
                                  "    weights: {green: 1}\n"
                                  "  - name: api-v2\n"
                                  "    hosts: ['*.example.com']\n"
                                  "    paths: [/api/v2]\n"
                                  "    weights: {green: 1}\n"
                                  "  - name: any\n"
                                  "    hosts: ['*']\n"
                                  "    paths: [/static]\n"
                                  "    weights: {gray: 1}\n";

static void test_exact_host_beats_wildcard(void **state)
{
    struct sy_route_table *t = table_from(routes_yaml);
    assert_string_equal(match(t, "chat.example.com", "/api/users"), "exact");
    assert_string_equal(match(t, "www.example.com", "/anything"), "exact-root");
    sy_route_table_release(t);
}

static void test_host_match_ignores_case_port_and_trailing_dot(void **state)
{
    struct sy_route_table *t = table_from(routes_yaml);
    assert_string_equal(match(t, "CHAT.Example.COM:8080", "/api"), "exact");
    assert_string_equal(match(t, "chat.example.com.", "/api"), "exact");
    assert_string_equal(match(t, "chat.example.com.:443", "/api"), "exact");
    sy_route_table_release(t);
}

static void test_falls_back_to_wildcard_when_exact_host_has_no_matching_path(void **state)
{
    struct sy_route_table *t = table_from(routes_yaml);
    assert_string_equal(match(t, "chat.example.com", "/other"), "wild");
    sy_route_table_release(t);
}

static void test_longest_wildcard_suffix_wins(void **state)
{
    struct sy_route_table *t = table_from(routes_yaml);
    assert_string_equal(match(t, "a.eu.example.com", "/"), "deeper-wild");
    assert_string_equal(match(t, "a.us.example.com", "/"), "wild");
    sy_route_table_release(t);
}

static void test_wildcard_does_not_match_the_bare_domain(void **state)
{
    struct sy_route_table *t = table_from(routes_yaml);
    assert_null(match(t, "example.com", "/"));
    assert_string_equal(match(t, "example.com", "/static/x.css"), "any");
    sy_route_table_release(t);
}

static void test_longest_path_prefix_wins(void **state)
{
    struct sy_route_table *t = table_from(routes_yaml);
    assert_string_equal(match(t, "x.example.com", "/api/v2/users"), "api-v2");
    assert_string_equal(match(t, "x.example.com", "/api/v1/users"), "wild");
    sy_route_table_release(t);
}

static void test_catch_all_host_and_no_match(void **state)
{
    struct sy_route_table *t = table_from(routes_yaml);
    assert_string_equal(match(t, "other.org", "/static/app.js"), "any");
    assert_null(match(t, "other.org", "/"));
    assert_null(match(t, "", "/"));
    /* HTTP/1.0 without Host: an empty slice with no bytes behind it. */
    const struct sy_route_app *a =
        sy_route_match(t, sy_slice_of(NULL, 0), sy_slice_of("/static/x", 9));
    assert_non_null(a);
    assert_string_equal(a->name, "any");
    sy_route_table_release(t);
}

static void test_ipv6_literal_host_keeps_its_brackets(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: v6\n"
                                          "    hosts: ['[::1]']\n"
                                          "    weights: {blue: 1}\n");
    assert_string_equal(match(t, "[::1]:8080", "/"), "v6");
    assert_null(match(t, "[::2]", "/"));
    sy_route_table_release(t);
}

static void test_endpoints_rotate_round_robin(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {blue: 1}\n");
    const struct sy_endpoint_spec *a = sy_route_next_endpoint(t, 0);
    const struct sy_endpoint_spec *b = sy_route_next_endpoint(t, 0);
    const struct sy_endpoint_spec *c = sy_route_next_endpoint(t, 0);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(a, c);
    sy_route_table_release(t);
}

static void test_table_keeps_generation_and_lives_until_last_release(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {blue: 1}\n");
    assert_int_equal(sy_route_table_generation(t), 7);
    struct sy_route_table *ref = sy_route_table_acquire(t);
    sy_route_table_release(t);
    /* Still valid through the second reference (ASan would flag a use after free). */
    assert_string_equal(match(ref, "x", "/"), "chat");
    sy_route_table_release(ref);
    sy_route_table_release(NULL);
}

/* Every app of a big table found by its exact host, its wildcard and under a host two apps
 * share by path: the build's hashed host entries merge what the linear scan merged. */
static void test_many_apps_each_found_by_exact_wildcard_and_shared_host(void **state)
{
    enum { N = 3000 };
    size_t cap = strlen(base_yaml) + 64 + (size_t)N * 160;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t off = (size_t)snprintf(text, cap, "%sapps:\n", base_yaml);
    for (int i = 0; i < N; i++)
        off += (size_t)snprintf(text + off, cap - off,
                                "  - name: a%d\n"
                                "    hosts: [h%d.test, '*.h%d.test', shared.test]\n"
                                "    paths: [/p%d/]\n"
                                "    weights: {blue: 1}\n",
                                i, i, i, i);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    assert_int_equal(sy_config_parse("big.yaml", text, off, &d, &cfg), 0);
    sy_diags_dispose(&d);
    free(text);
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 1, &t), 0);
    char host[64], path[64], name[32];
    for (int i = 0; i < N; i += 7) {
        snprintf(name, sizeof(name), "a%d", i);
        snprintf(path, sizeof(path), "/p%d/x", i);
        snprintf(host, sizeof(host), "H%d.test", i);
        assert_string_equal(match(t, host, path), name);
        snprintf(host, sizeof(host), "x.h%d.test", i);
        assert_string_equal(match(t, host, path), name);
        assert_string_equal(match(t, "shared.test", path), name);
        assert_int_equal(sy_config_app_index(sy_route_table_config(t), name), i);
    }
    assert_null(match(t, "h1.test", "/p2/"));
    /* Wildcards by suffix lookup: any depth, never the suffix itself or a host that only
     * ends with its letters. */
    assert_string_equal(match(t, "a.b.c.h42.test", "/p42/"), "a42");
    assert_null(match(t, ".h42.test", "/p42/"));
    assert_null(match(t, "xh42.test", "/p42/"));
    assert_int_equal(sy_config_app_index(sy_route_table_config(t), "a3000"), -1);
    sy_route_table_release(t);
}

/* A longer wildcard whose paths do not match gives way to a shorter one, as a scan of the
 * wildcards longest first did. */
static void test_shorter_wildcard_when_the_longer_has_no_matching_path(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: deep\n"
                                          "    hosts: ['*.a.example.com']\n"
                                          "    paths: [/x]\n"
                                          "    weights: {blue: 1}\n"
                                          "  - name: wide\n"
                                          "    hosts: ['*.example.com']\n"
                                          "    weights: {blue: 1}\n");
    assert_string_equal(match(t, "q.a.example.com", "/x/1"), "deep");
    assert_string_equal(match(t, "q.a.example.com", "/y"), "wide");
    assert_string_equal(match(t, "a.example.com", "/x"), "wide");
    assert_null(match(t, "example.com", "/"));
    sy_route_table_release(t);
}

static const char shared_apps[] = "apps:\n"
                                  "  - name: chat\n"
                                  "    hosts: [chat.test, '*.chat.test']\n"
                                  "    weights: {blue: 90, green: 10}\n"
                                  "  - name: shop\n"
                                  "    hosts: [shop.test]\n"
                                  "    paths: [/cart/, /]\n"
                                  "    weights: {blue: 70, green: 20, gray: 10}\n"
                                  "  - name: mail\n"
                                  "    hosts: ['*']\n"
                                  "    weights: {blue: 50, green: 50}\n";

/* sy_route_table_update: the snapshot of an operator's change shares the host index and every
 * untouched app with the one before, and picks exactly as a full build with the same
 * overrides does. */
static void test_update_shares_the_index_and_picks_as_a_full_build(void **state)
{
    struct sy_route_table *t1 = table_from(shared_apps);
    struct sy_config *cfg = (struct sy_config *)sy_route_table_config(t1);
    const struct sy_route_weight w[] = {{"green", 30}, {"gray", 70}};
    const struct sy_route_override ov = {"shop", w, 2};
    long shop = sy_config_app_index(cfg, "shop");
    assert_int_equal(shop, 1);
    /* Move chat's round-robin on: an untouched app keeps its position across the update. */
    const struct sy_route_app *chat =
        sy_route_match(t1, sy_slice_of("chat.test", 9), sy_slice_of("/", 1));
    for (int i = 0; i < 3; i++)
        cluster_of(t1, chat);

    const struct sy_route_app_change ch = {(size_t)shop, &ov};
    struct sy_route_table *t2 = NULL, *full = NULL;
    assert_int_equal(sy_route_table_update(t1, &ch, 1, 8, &t2), 0);
    assert_int_equal(sy_route_table_build(cfg, &ov, 1, 8, &full), 0);
    assert_int_equal(sy_route_table_generation(t2), 8);
    assert_ptr_equal(sy_route_table_config(t2), sy_route_table_config(t1));
    assert_true(sy_route_table_shares_app(t1, t2, 0));
    assert_false(sy_route_table_shares_app(t1, t2, 1));
    assert_true(sy_route_table_shares_app(t1, t2, 2));
    assert_false(sy_route_table_shares_app(t1, full, 0)); /* another index */

    /* The same apps for the same hosts and paths. */
    const char *probes[][2] = {
        {"chat.test", "/"},  {"a.chat.test", "/x"},  {"shop.test", "/cart/1"}, {"shop.test", "/"},
        {"other.test", "/"}, {"SHOP.test:80", "/c"}, {"chat.test.", "/"},      {"", "/"}};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
        assert_string_equal(match(t2, probes[i][0], probes[i][1]),
                            match(full, probes[i][0], probes[i][1]));

    /* The changed app: the override's weights, and the full build's sequence of picks. */
    const struct sy_weight_spec *wa, *wb;
    size_t na, nb;
    assert_int_equal(sy_route_app_weights(t2, 1, &wa, &na), SY_OVERRIDE_APPLIED);
    assert_int_equal(sy_route_app_weights(full, 1, &wb, &nb), SY_OVERRIDE_APPLIED);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(wa[i].cluster, wb[i].cluster);
        assert_int_equal(wa[i].weight, wb[i].weight);
    }
    const struct sy_route_app *s2 =
        sy_route_match(t2, sy_slice_of("shop.test", 9), sy_slice_of("/", 1));
    const struct sy_route_app *sf =
        sy_route_match(full, sy_slice_of("shop.test", 9), sy_slice_of("/", 1));
    for (int i = 0; i < 50; i++)
        assert_string_equal(cluster_of(t2, s2), cluster_of(full, sf));

    /* The untouched app goes on where t1 left it: pick 4 of the 9:1 cycle onwards. */
    struct sy_route_table *fresh = table_from(shared_apps);
    const struct sy_route_app *cf =
        sy_route_match(fresh, sy_slice_of("chat.test", 9), sy_slice_of("/", 1));
    for (int i = 0; i < 3; i++)
        cluster_of(fresh, cf);
    const struct sy_route_app *c2 =
        sy_route_match(t2, sy_slice_of("chat.test", 9), sy_slice_of("/", 1));
    for (int i = 0; i < 30; i++)
        assert_string_equal(cluster_of(t2, c2), cluster_of(fresh, cf));

    /* Release back to the file's weights; the old snapshots can go first. */
    const struct sy_route_app_change back = {(size_t)shop, NULL};
    struct sy_route_table *t3 = NULL;
    assert_int_equal(sy_route_table_update(t2, &back, 1, 9, &t3), 0);
    sy_route_table_release(t1);
    sy_route_table_release(t2);
    assert_int_equal(sy_route_app_weights(t3, 1, &wa, &na), SY_OVERRIDE_NONE);
    assert_int_equal(wa[0].weight, 70);
    assert_string_equal(match(t3, "x.chat.test", "/"), "chat");

    const struct sy_route_app_change bad = {3, NULL};
    struct sy_route_table *none = NULL;
    assert_int_equal(sy_route_table_update(t3, &bad, 1, 10, &none), SY_ERR_INVALID);
    assert_null(none);
    sy_route_table_release(t3);
    sy_route_table_release(full);
    sy_route_table_release(fresh);
}

/* The query API: an app by name, its weights in force by cluster name, one weight by names. */
static void test_queries_answer_by_name_with_and_without_override(void **state)
{
    struct sy_route_table *t1 = table_from(shared_apps);
    const struct sy_route_app *shop = sy_route_app_find(t1, "shop");
    assert_non_null(shop);
    assert_int_equal(shop->index, 1);
    assert_string_equal(shop->name, "shop");
    assert_null(sy_route_app_find(t1, "nope"));

    struct sy_route_weight *w;
    enum sy_override_state st = SY_OVERRIDE_APPLIED;
    size_t n = sy_route_app_weights_named(t1, 1, &w, &st);
    char text[128];
    sy_route_weights_text(w, n, text, sizeof(text));
    assert_string_equal(text, "blue=70,green=20,gray=10");
    assert_int_equal(st, SY_OVERRIDE_NONE);
    free(w);
    assert_int_equal(sy_route_app_weight_of(t1, "shop", "green"), 20);
    assert_int_equal(sy_route_app_weight_of(t1, "chat", "gray"), 0); /* not one of chat's */
    assert_int_equal(sy_route_app_weight_of(t1, "nope", "blue"), -1);

    const struct sy_route_weight ow[] = {{"gray", 60}, {"green", 40}};
    const struct sy_route_app_change ch = {1, &(struct sy_route_override){"shop", ow, 2}};
    struct sy_route_table *t2 = NULL;
    assert_int_equal(sy_route_table_update(t1, &ch, 1, 8, &t2), 0);
    n = sy_route_app_weights_named(t2, 1, &w, &st);
    sy_route_weights_text(w, n, text, sizeof(text));
    assert_string_equal(text, "blue=0,green=40,gray=60"); /* file order, unnamed get 0 */
    assert_int_equal(st, SY_OVERRIDE_APPLIED);
    free(w);
    assert_int_equal(sy_route_app_weight_of(t2, "shop", "blue"), 0);
    assert_int_equal(sy_route_app_weight_of(t2, "shop", "gray"), 60);
    sy_route_weights_text(NULL, 0, text, sizeof(text));
    assert_string_equal(text, "-");
    sy_route_table_release(t1);
    sy_route_table_release(t2);
}

/* sy_route_override_fit: each reason, the weight at fault, and the order they are checked in;
 * an override that does not fit leaves the file's weights in force (stale). */
static void test_override_fit_names_each_reason_and_a_misfit_is_stale(void **state)
{
    struct sy_route_table *t = table_from(shared_apps);
    const struct sy_config *cfg = sy_route_table_config(t);
    static const struct {
        struct sy_route_weight w[3];
        size_t n;
        enum sy_override_fit fit;
        size_t bad;
    } cases[] = {
        {{{"blue", 0}, {"green", 100}}, 2, SY_FIT_OK, 0},
        {{{"green", 1}}, 1, SY_FIT_OK, 0},
        {{{"blue", 10}, {"pink", 90}}, 2, SY_FIT_UNKNOWN_CLUSTER, 1},
        {{{"blue", 10}, {"gray", 90}}, 2, SY_FIT_NOT_APPS, 1}, /* gray is the file's, not chat's */
        {{{"green", 10}, {"blue", 5}, {"green", 5}}, 3, SY_FIT_TWICE, 2},
        {{{"green", 101}, {"pink", 1}}, 2, SY_FIT_OVER_100, 0},
        {{{"pink", 101}}, 1, SY_FIT_UNKNOWN_CLUSTER, 0},
        {{{"blue", 0}, {"green", 0}}, 2, SY_FIT_ZERO_SUM, 0},
        {{{"blue", 0}}, 0, SY_FIT_ZERO_SUM, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t bad = 99;
        assert_int_equal(sy_route_override_fit(cfg, 0, cases[i].w, cases[i].n, &bad), cases[i].fit);
        if (cases[i].fit != SY_FIT_OK)
            assert_int_equal(bad, cases[i].bad);
        const struct sy_route_override ov = {"chat", cases[i].w, cases[i].n};
        struct sy_route_table *o = NULL;
        assert_int_equal(sy_route_table_build((struct sy_config *)cfg, &ov, 1, 2, &o), 0);
        const struct sy_weight_spec *ws;
        size_t n;
        assert_int_equal(sy_route_app_weights(o, 0, &ws, &n),
                         cases[i].fit == SY_FIT_OK ? SY_OVERRIDE_APPLIED : SY_OVERRIDE_STALE);
        if (cases[i].fit != SY_FIT_OK)
            assert_int_equal(sy_route_app_weight_of(o, "chat", "blue"), 90);
        sy_route_table_release(o);
    }
    sy_route_table_release(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_90_10_is_exact_over_1000_requests),
        cmocka_unit_test(test_zero_weight_cluster_never_chosen),
        cmocka_unit_test(test_three_way_split_is_spread_smoothly),
        cmocka_unit_test(test_smooth_schedule_never_bunches_the_minority),
        cmocka_unit_test(test_exact_host_beats_wildcard),
        cmocka_unit_test(test_host_match_ignores_case_port_and_trailing_dot),
        cmocka_unit_test(test_falls_back_to_wildcard_when_exact_host_has_no_matching_path),
        cmocka_unit_test(test_longest_wildcard_suffix_wins),
        cmocka_unit_test(test_wildcard_does_not_match_the_bare_domain),
        cmocka_unit_test(test_longest_path_prefix_wins),
        cmocka_unit_test(test_catch_all_host_and_no_match),
        cmocka_unit_test(test_ipv6_literal_host_keeps_its_brackets),
        cmocka_unit_test(test_endpoints_rotate_round_robin),
        cmocka_unit_test(test_table_keeps_generation_and_lives_until_last_release),
        cmocka_unit_test(test_many_apps_each_found_by_exact_wildcard_and_shared_host),
        cmocka_unit_test(test_update_shares_the_index_and_picks_as_a_full_build),
        cmocka_unit_test(test_shorter_wildcard_when_the_longer_has_no_matching_path),
        cmocka_unit_test(test_queries_answer_by_name_with_and_without_override),
        cmocka_unit_test(test_override_fit_names_each_reason_and_a_misfit_is_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
