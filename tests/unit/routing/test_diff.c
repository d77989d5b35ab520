/* SPDX-License-Identifier: MIT */
/* Unit tests for the table diff (routing/diff.c): one test per kind of difference, each
 * comparing two tables built from YAML text through the real loader, with the overrides in
 * force where the kind depends on them, and checking every line in order, word for word (the
 * text is what `switchyard -t` prints). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/config.h"
#include "switchyard/overrides.h"
#include "switchyard/routing.h"

#define LISTEN "listen:\n  - address: 127.0.0.1:8080\n"
#define CLUSTERS                                                                                   \
    "clusters:\n"                                                                                  \
    "  blue:\n"                                                                                    \
    "    endpoints: [127.0.0.1:9001]\n"                                                            \
    "  green:\n"                                                                                   \
    "    endpoints: [127.0.0.1:9002]\n"
#define CHAT(w) "  - name: chat\n    hosts: [chat.test]\n    weights: {" w "}\n"
#define WEB     "  - name: web\n    hosts: ['*.web.test']\n    paths: [/]\n    weights: {blue: 1}\n"

#define MAX_LINES 16

struct seen {
    size_t n;
    enum sy_route_diff_kind kind[MAX_LINES];
    char app[MAX_LINES][32];
    char text[MAX_LINES][256];
};

static void collect(const struct sy_route_diff_line *line, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < MAX_LINES);
    s->kind[s->n] = line->kind;
    snprintf(s->app[s->n], sizeof(s->app[0]), "%s", line->app ? line->app : "-");
    snprintf(s->text[s->n], sizeof(s->text[0]), "%s", line->text);
    s->n++;
}

static struct sy_route_table *table_of(const char *yaml, const struct sy_overrides *ov)
{
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse("test.yaml", yaml, strlen(yaml), &d, &cfg);
    for (size_t i = 0; i < d.n; i++) {
        char line[512];
        sy_diag_format(&d.v[i], line, sizeof(line));
        fprintf(stderr, "%s\n", line);
    }
    assert_int_equal(rc, 0);
    sy_diags_dispose(&d);
    struct sy_route_override *view = ov ? sy_overrides_view(ov) : NULL;
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_build(cfg, view, ov ? ov->n : 0, 1, &t), 0);
    free(view);
    sy_config_free(cfg); /* the table holds its own reference */
    return t;
}

/* The lines of the diff from file `a` to file `b`, both with the overrides `ov` (may be NULL). */
static void diff_of(const char *a, const char *b, const struct sy_overrides *ov, struct seen *s)
{
    struct sy_route_table *old = table_of(a, ov), *neu = table_of(b, ov);
    memset(s, 0, sizeof(*s));
    size_t n = sy_route_diff(old, neu, ov, collect, s);
    assert_int_equal(n, s->n);
    sy_route_table_release(old);
    sy_route_table_release(neu);
}

static void expect(const struct seen *s, size_t i, enum sy_route_diff_kind kind, const char *app,
                   const char *text)
{
    if (i >= s->n || strcmp(s->text[i], text) != 0)
        for (size_t k = 0; k < s->n; k++)
            fprintf(stderr, "line %zu: %s\n", k, s->text[k]);
    assert_true(i < s->n);
    assert_string_equal(sy_route_diff_kind_name(s->kind[i]), sy_route_diff_kind_name(kind));
    assert_string_equal(s->app[i], app);
    assert_string_equal(s->text[i], text);
}

/* An override of `app` with `w` (by name), as the journal's replay makes it. */
static void set_override(struct sy_overrides *ov, const char *app, const struct sy_route_weight *w,
                         size_t n, uint64_t seq, const char *command)
{
    const struct sy_override_change ch = {.app = app, .weights = w, .n_weights = n};
    const struct sy_actor who = {.time_ms = 1, .uid = 1000, .pid = 42, .command = command};
    sy_overrides_apply(ov, &ch, 1, seq, &who);
}

static void test_the_same_file_has_no_difference(void **state)
{
    static const char y[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 90, green: 10") WEB;
    struct seen s;
    diff_of(y, y, NULL, &s);
    assert_int_equal(s.n, 0);
}

static void test_apps_added_and_removed_say_what_becomes_of_an_override(void **state)
{
    static const char a[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 1") WEB;
    static const char b[] = LISTEN CLUSTERS "apps:\n"
                                            "  - name: api\n    hosts: [api.test, api2.test]\n"
                                            "    paths: [/v1, /v2, /v3]\n    weights: {green: 1}\n";
    struct sy_overrides ov;
    sy_overrides_init(&ov);
    const struct sy_route_weight w[] = {{"green", 100}};
    set_override(&ov, "web", w, 1, 1, "switch web green");
    struct seen s;
    diff_of(a, b, &ov, &s);
    expect(&s, 0, SY_DIFF_APP_REMOVED, "chat", "- app chat");
    expect(&s, 1, SY_DIFF_APP_REMOVED, "web",
           "- app web (its override is kept, shown as stale, until released)");
    expect(&s, 2, SY_DIFF_APP_ADDED, "api", "+ app api (2 hosts, 3 paths)");
    /* Every host and path of both files is asked of both tables. */
    expect(&s, 3, SY_DIFF_WINNER, "chat", "~ host chat.test path /: chat -> (no app: 404)");
    expect(&s, 4, SY_DIFF_WINNER, "web", "~ host *.web.test path /: web -> (no app: 404)");
    expect(&s, 5, SY_DIFF_WINNER, "api", "~ host api.test path /v1: (no app: 404) -> api");
    assert_int_equal(s.n, 3 + 2 + 6);
    sy_overrides_dispose(&ov);
}

static void test_file_weights_change_the_weights_in_force(void **state)
{
    static const char a[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 90, green: 10");
    static const char b[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 50, green: 50");
    static const char c[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 9, green: 1");
    struct seen s;
    diff_of(a, b, NULL, &s);
    assert_int_equal(s.n, 2);
    expect(&s, 0, SY_DIFF_FILE_WEIGHTS, "chat",
           "~ app chat: file weights blue=90,green=10 -> blue=50,green=50");
    expect(&s, 1, SY_DIFF_EFFECTIVE, "chat",
           "~ app chat: weights in force blue=90,green=10 -> blue=50,green=50");
    /* Compared as weights, not as ratios: 90:10 and 9:1 differ. */
    diff_of(a, c, NULL, &s);
    assert_int_equal(s.n, 2);
}

static void test_an_override_in_force_hides_a_file_weights_change(void **state)
{
    static const char a[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 90, green: 10");
    static const char b[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 50, green: 50");
    struct sy_overrides ov;
    sy_overrides_init(&ov);
    const struct sy_route_weight w[] = {{"blue", 100}};
    set_override(&ov, "chat", w, 1, 7, "revert chat");
    struct seen s;
    diff_of(a, b, &ov, &s);
    assert_int_equal(s.n, 2); /* no change of the weights in force */
    expect(&s, 0, SY_DIFF_FILE_WEIGHTS, "chat",
           "~ app chat: file weights blue=90,green=10 -> blue=50,green=50");
    expect(&s, 1, SY_DIFF_HIDDEN, "chat",
           "! app chat: the override blue=100 (seq 7: revert chat) hides this change until "
           "`release chat`");
    sy_overrides_dispose(&ov);
}

static void test_an_override_that_stops_fitting_or_fits_again_is_named(void **state)
{
    static const char a[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 90, green: 10");
    static const char b[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 100");
    struct sy_overrides ov;
    sy_overrides_init(&ov);
    const struct sy_route_weight w[] = {{"green", 100}};
    set_override(&ov, "chat", w, 1, 3, "switch chat green");
    struct seen s;
    diff_of(a, b, &ov, &s);
    assert_int_equal(s.n, 3);
    expect(&s, 0, SY_DIFF_FILE_WEIGHTS, "chat",
           "~ app chat: file weights blue=90,green=10 -> blue=100");
    expect(&s, 1, SY_DIFF_OVERRIDE_STATE, "chat",
           "! app chat: its override would no longer fit: stale, the file's weights apply");
    expect(&s, 2, SY_DIFF_EFFECTIVE, "chat",
           "~ app chat: weights in force blue=0,green=100 -> blue=100");
    diff_of(b, a, &ov, &s);
    assert_int_equal(s.n, 4); /* the override in force again hides the file's change */
    expect(&s, 1, SY_DIFF_HIDDEN, "chat",
           "! app chat: the override green=100 (seq 3: switch chat green) hides this change "
           "until `release chat`");
    expect(&s, 2, SY_DIFF_OVERRIDE_STATE, "chat", "! app chat: its override would apply again");
    expect(&s, 3, SY_DIFF_EFFECTIVE, "chat",
           "~ app chat: weights in force blue=100 -> blue=0,green=100");
    sy_overrides_dispose(&ov);
}

static void test_an_exclusive_app_that_moves_goes_through_a_switch(void **state)
{
    static const char a[] =
        LISTEN CLUSTERS "apps:\n" CHAT("blue: 100, green: 0") "    mode: exclusive\n";
    static const char b[] =
        LISTEN CLUSTERS "apps:\n" CHAT("blue: 0, green: 100") "    mode: exclusive\n";
    struct seen s;
    diff_of(a, b, NULL, &s);
    assert_int_equal(s.n, 3);
    expect(&s, 1, SY_DIFF_EFFECTIVE, "chat",
           "~ app chat: weights in force blue=100,green=0 -> blue=0,green=100");
    expect(&s, 2, SY_DIFF_EXCLUSIVE_SWITCH, "chat",
           "! app chat is exclusive: an exclusive switch moves it from blue to green (its new "
           "requests held while blue drains, then released to green)");
}

static void test_a_new_stable_cluster_is_named(void **state)
{
    static const char a[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 1, green: 1");
    static const char b[] =
        LISTEN CLUSTERS "apps:\n" CHAT("blue: 1, green: 1") "    stable: green\n";
    struct seen s;
    diff_of(a, b, NULL, &s);
    assert_int_equal(s.n, 1);
    expect(&s, 0, SY_DIFF_STABLE, "chat", "~ app chat: stable cluster blue -> green");
}

static void test_hosts_and_paths_whose_winner_changes(void **state)
{
    static const char a[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 1") WEB;
    /* A longer prefix takes /api of chat.test; an exact name takes one host of the wildcard. */
    static const char b[] = LISTEN CLUSTERS "apps:\n" CHAT("blue: 1") WEB
        "  - name: api\n    hosts: [chat.test, x.web.test]\n    paths: [/api]\n"
        "    weights: {green: 1}\n"
        "  - name: www\n    hosts: [sy-probe.web.test]\n    weights: {green: 1}\n";
    struct seen s;
    diff_of(a, b, NULL, &s);
    expect(&s, 0, SY_DIFF_APP_ADDED, "api", "+ app api (2 hosts, 1 paths)");
    expect(&s, 1, SY_DIFF_APP_ADDED, "www", "+ app www (1 hosts, 1 paths)");
    /* The wildcard is asked as sy-probe.web.test, which www now has. */
    expect(&s, 2, SY_DIFF_WINNER, "www", "~ host *.web.test path /: web -> www");
    expect(&s, 3, SY_DIFF_WINNER, "api", "~ host chat.test path /api: chat -> api");
    expect(&s, 4, SY_DIFF_WINNER, "api", "~ host x.web.test path /api: web -> api");
    /* Pairs only the new file names come after those of the old one. */
    expect(&s, 5, SY_DIFF_WINNER, "www", "~ host sy-probe.web.test path /: web -> www");
    assert_int_equal(s.n, 6);
}

static void test_clusters_added_removed_and_changed(void **state)
{
    static const char a[] = LISTEN "clusters:\n"
                                   "  blue:\n    endpoints: [127.0.0.1:9001]\n"
                                   "  green:\n    endpoints: [127.0.0.1:9002]\n"
                                   "  gray:\n    endpoints: [127.0.0.1:9003]\n"
                                   "apps:\n" CHAT("blue: 1");
    static const char b[] = LISTEN "clusters:\n"
                                   "  blue:\n    endpoints: [127.0.0.1:9001, 127.0.0.1:9011]\n"
                                   "  green:\n    endpoints: [127.0.0.1:9002]\n"
                                   "    max_connections: 8\n    queue: {max: 10, timeout: 1s}\n"
                                   "  pink:\n    endpoints: [127.0.0.1:9004, 127.0.0.1:9005]\n"
                                   "apps:\n" CHAT("blue: 1");
    struct seen s;
    diff_of(a, b, NULL, &s);
    assert_int_equal(s.n, 4);
    expect(&s, 0, SY_DIFF_CLUSTER_REMOVED, "-", "- cluster gray");
    expect(&s, 1, SY_DIFF_ENDPOINTS, "-", "~ cluster blue: endpoints change (1 -> 2)");
    expect(&s, 2, SY_DIFF_MAX_CONNECTIONS, "-",
           "~ cluster green: max_connections 0 -> 8, queue.max 1000 -> 10, queue.timeout 5000 -> "
           "1000 ms");
    expect(&s, 3, SY_DIFF_CLUSTER_ADDED, "-", "+ cluster pink (2 endpoints)");
}

static void test_health_settings_that_change(void **state)
{
    static const char a[] = LISTEN "clusters:\n"
                                   "  blue:\n    endpoints: [127.0.0.1:9001]\n"
                                   "apps:\n" CHAT("blue: 1");
    static const char b[] = LISTEN "clusters:\n"
                                   "  blue:\n    endpoints: [127.0.0.1:9001]\n"
                                   "    health: {fall: 2, expect: [200, 204-299]}\n"
                                   "    outlier: {consecutive_failures: 4, base_ejection: 5s}\n"
                                   "apps:\n" CHAT("blue: 1");
    struct seen s;
    diff_of(a, b, NULL, &s);
    assert_int_equal(s.n, 1);
    expect(&s, 0, SY_DIFF_HEALTH, "-",
           "~ cluster blue: health off, outlier off, retry budget 20% of 10000 ms (min 3) -> "
           "health /healthz every 2000 ms (timeout 1000 ms, rise 2, fall 2, expect "
           "200-200,204-299), outlier 4 in a row for 5000..300000 ms, retry budget 20% of 10000 "
           "ms (min 3)");
    diff_of(b, b, NULL, &s);
    assert_int_equal(s.n, 0);
}

static void test_every_kind_has_its_word(void **state)
{
    static const char *const words[] = {
        "app_removed",   "app_added",        "file_weights",    "hidden", "override_state",
        "effective",     "exclusive_switch", "stable",          "winner", "cluster_removed",
        "cluster_added", "endpoints",        "max_connections", "health"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        assert_string_equal(sy_route_diff_kind_name((enum sy_route_diff_kind)i), words[i]);
    assert_string_equal(sy_route_diff_kind_name((enum sy_route_diff_kind)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_same_file_has_no_difference),
        cmocka_unit_test(test_apps_added_and_removed_say_what_becomes_of_an_override),
        cmocka_unit_test(test_file_weights_change_the_weights_in_force),
        cmocka_unit_test(test_an_override_in_force_hides_a_file_weights_change),
        cmocka_unit_test(test_an_override_that_stops_fitting_or_fits_again_is_named),
        cmocka_unit_test(test_an_exclusive_app_that_moves_goes_through_a_switch),
        cmocka_unit_test(test_a_new_stable_cluster_is_named),
        cmocka_unit_test(test_hosts_and_paths_whose_winner_changes),
        cmocka_unit_test(test_clusters_added_removed_and_changed),
        cmocka_unit_test(test_health_settings_that_change),
        cmocka_unit_test(test_every_kind_has_its_word),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
