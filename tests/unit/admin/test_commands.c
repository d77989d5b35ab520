/* SPDX-License-Identifier: MIT */
/* Unit tests for the routing commands, as dialogues over a real state (a config file and its
 * journal in a temporary directory) without a socket: each command's answer, and that a
 * refused change leaves the journal, the generation and the weights in force as they were. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "switchyard/admin.h"

#include "fixture.h"

static const char config_yaml[] = "listen:\n"
                                  "  - address: 127.0.0.1:8080\n"
                                  "admin:\n"
                                  "  socket: admin.sock\n"
                                  "clusters:\n"
                                  "  blue:\n"
                                  "    endpoints: [127.0.0.1:9001]\n"
                                  "  green:\n"
                                  "    endpoints: [127.0.0.1:9002]\n"
                                  "  gray:\n"
                                  "    endpoints: [127.0.0.1:9003]\n"
                                  "apps:\n"
                                  "  - name: chat\n"
                                  "    hosts: [chat.test]\n"
                                  "    weights: {blue: 50, green: 50}\n"
                                  "    force: {header: x-cluster, cookie: sy_force}\n"
                                  "  - name: web\n"
                                  "    hosts: ['*.web.test']\n"
                                  "    paths: [/, /static]\n"
                                  "    stable: green\n"
                                  "    weights: {blue: 10, green: 90}\n"
                                  "    sticky: {cookie: sy_web}\n";

struct fx {
    struct sy_fixture_dir tmp;
    struct sy_state *st;
    struct sy_admin *admin;
    struct sy_admin_routing env;
};

static void fake_traffic(void *arg, sy_traffic_cb cb, void *cb_arg)
{
    struct sy_traffic t = {"chat", "blue", 1234, 5, 2, 1};
    t.own[8] = 3;  /* 502 */
    t.own[10] = 1; /* 504 */
    cb(&t, cb_arg);
    struct sy_traffic before = {NULL, NULL, 0, 0, 0, 0};
    before.own[0] = 2;            /* 400 */
    before.own[SY_OWN_N - 1] = 1; /* a status outside the list */
    cb(&before, cb_arg);
    struct sy_traffic pp = {.proxy_protocol_rejected = 7};
    cb(&pp, cb_arg);
}

static void write_config(const char *path, const char *text)
{
    assert_int_equal(sy_fixture_write(path, text, NULL), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (sy_fixture_dir_make(&f->tmp, "cmds", "sy.yaml") != 0)
        return -1;
    write_config(f->tmp.path, config_yaml);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal_opts o = {.no_sync = true};
    if (sy_state_open(f->tmp.path, NULL, NULL, &d, &f->st) != 0 ||
        sy_state_open_journal(f->st, true, false, &o, &d) != 0)
        return -1;
    sy_diags_dispose(&d);
    f->admin = sy_admin_new(f->st);
    f->env.state = f->st;
    f->env.traffic = fake_traffic;
    sy_admin_routing_init(f->admin, &f->env);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sy_admin_free(f->admin);
    sy_state_free(f->st);
    sy_fixture_dir_remove(&f->tmp);
    free(f);
    return 0;
}

static const struct sy_peer operator= {1000, 1000, 4242, NULL, 0};

/* Runs a command; returns its formatted answer (free it) and whether it published. */
static char *ask_payload(struct fx *f, const char *line, const char *payload, bool *published)
{
    struct sy_reply r;
    sy_reply_init(&r, sy_admin_line_is_json(line, strlen(line)));
    uint64_t gen = 0;
    ssize_t need =
        sy_admin_exec(f->admin, line, strlen(line), NULL, 0, &operator, 1700000000000ull, &r, &gen);
    if (need > 0) {
        assert_non_null(payload);
        assert_int_equal((size_t)need, strlen(payload));
        need = sy_admin_exec(f->admin, line, strlen(line), payload, strlen(payload), &operator,
                             1700000000000ull, &r, &gen);
    }
    assert_int_equal(need, 0);
    if (published)
        *published = gen != 0;
    size_t len;
    char *out = sy_admin_format(f->admin, &r, &len);
    sy_reply_dispose(&r);
    return out;
}

static char *ask(struct fx *f, const char *line)
{
    return ask_payload(f, line, NULL, NULL);
}

static bool ends_ok(const char *out)
{
    size_t n = strlen(out);
    return n >= 3 && strcmp(out + n - 3, "ok\n") == 0 && (n == 3 || out[n - 4] == '\n');
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("'%s' not in:\n%s", (needle), (hay));                                         \
    } while (0)

static void test_status_shows_file_override_effective_and_traffic(void **state)
{
    struct fx *f = *state;
    char *out = ask(f, "status");
    assert_true(ends_ok(out));
    assert_contains(out, "generation 1, journal seq 0");
    assert_contains(out, "APP  CLUSTER");
    assert_contains(out,
                    "chat blue    *   50        -        50       1234      5         2       1");
    assert_contains(out,
                    "web  blue        10        -        10          0      0         0       0\n"
                    "     green   *   90        -        90          0      0         0       0\n");
    free(out);
    out = ask(f, "status web --json");
    assert_contains(out, "{\"ok\":true,\"generation\":1,\"journal_seq\":0,");
    assert_contains(out, "\"apps\":[{\"name\":\"web\",\"stable\":\"green\",\"override\":null,");
    assert_null(strstr(out, "\"name\":\"chat\""));
    free(out);
    out = ask(f, "status nope");
    assert_string_equal(out, "error: unknown app 'nope'\n");
    free(out);
}

static void test_status_counts_own_answers_per_cluster_and_before_routing(void **state)
{
    struct fx *f = *state;
    assert_int_equal(sy_own_status(8), 502);
    assert_int_equal(sy_own_status(10), 504);
    char *out = ask(f, "status");
    assert_contains(out,
                    "     green       50        -        50          0      0         0       0\n"
                    "       own answers on blue: 502 x3, 504 x1\n");
    assert_contains(out, "own answers before routing (no app): 400 x2, other x1\n");
    assert_contains(out, "connections closed for a missing or bad PROXY protocol header: 7\n");
    free(out);
    out = ask(f, "status --json");
    assert_contains(out, "\"name\":\"blue\",\"stable\":true,\"file\":50,\"override\":null,"
                         "\"effective\":50,\"requests\":1234,\"responses_5xx\":5,\"in_flight\":2,"
                         "\"tunnels\":1,\"own_answers\":4,\"own\":{\"502\":3,\"504\":1},");
    assert_contains(out, "\"unrouted\":{\"own_answers\":3,\"own\":{\"400\":2,\"other\":1},"
                         "\"proxy_protocol_rejected\":7}");
    free(out);
    /* One app: the answers before routing are not that app's. */
    out = ask(f, "status chat");
    assert_contains(out, "own answers on blue: 502 x3, 504 x1");
    assert_null(strstr(out, "before routing"));
    free(out);
}

/* At thousands of apps: which apps have overrides comes first, and status lists one app, the
 * apps whose names match a glob, or only the overridden ones. */
static void test_status_filters_apps_and_counts_overrides_first(void **state)
{
    struct fx *f = *state;
    char *out = ask(f, "weights web blue=100");
    assert_true(ends_ok(out));
    free(out);
    out = ask(f, "status");
    assert_contains(out, "overrides, 0 reload failures\n"
                         "apps with an override: 1 applied, 0 stale, 0 not in the file");
    free(out);

    out = ask(f, "status --filter w*");
    assert_true(ends_ok(out));
    assert_contains(out, "web  blue        10      100       100");
    assert_null(strstr(out, "\nchat "));
    assert_contains(out, "1 of 2 apps shown\n");
    free(out);
    out = ask(f, "status --filter c?at --json");
    assert_contains(out, "\"overridden\":{\"applied\":1,\"stale\":0,\"orphans\":0}");
    assert_contains(out, "\"apps\":[{\"name\":\"chat\"");
    assert_null(strstr(out, "\"name\":\"web\""));
    free(out);
    out = ask(f, "status --filter nothing*");
    assert_true(ends_ok(out));
    assert_contains(out, "0 of 2 apps shown\n");
    free(out);

    out = ask(f, "status --overridden");
    assert_true(ends_ok(out));
    assert_contains(out, "web  blue        10      100       100");
    assert_null(strstr(out, "\nchat "));
    free(out);

    out = ask(f, "status --bogus");
    assert_string_equal(out, "error: usage: status [APP | --filter GLOB | --overridden]\n");
    free(out);
    out = ask(f, "status --filter");
    assert_string_equal(out, "error: usage: status [APP | --filter GLOB | --overridden]\n");
    free(out);
}

/* One record can name thousands of apps (revert --all): people get its first ten lines and
 * a count; JSON lists every app. */
static void test_history_shortens_a_record_of_many_apps_for_people(void **state)
{
    struct fx *f = *state;
    char text[8192];
    size_t off = (size_t)snprintf(text, sizeof(text), "%s", config_yaml);
    for (int i = 0; i < 30; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off,
                                "  - name: a%d\n    hosts: [a%d.test]\n"
                                "    weights: {blue: 50, green: 50}\n",
                                i, i);
    write_config(f->tmp.path, text);
    char *out = ask(f, "reload");
    assert_true(ends_ok(out));
    free(out);
    out = ask(f, "revert --all");
    assert_true(ends_ok(out));
    free(out);
    out = ask(f, "history 1");
    assert_true(ends_ok(out));
    assert_contains(out, "revert --all\n         chat: blue=50,green=50 -> blue=100,green=0\n");
    assert_contains(out, "         ... and 22 more apps (--json lists every one)\n");
    assert_null(strstr(out, "a29:"));
    free(out);
    out = ask(f, "history 1 --json");
    assert_contains(out, "{\"app\":\"a29\",\"override\":{\"blue\":100}");
    free(out);
}

static void test_weights_is_an_override_with_who_and_when(void **state)
{
    struct fx *f = *state;
    bool pub;
    char *out = ask_payload(f, "weights chat blue=90 green=10", NULL, &pub);
    assert_true(pub);
    assert_string_equal(out, "chat: blue=50,green=50 -> blue=90,green=10\n"
                             "generation 2, journal seq 1\nok\n");
    free(out);
    out = ask(f, "status chat");
    assert_contains(out, "chat blue    *   50       90        90");
    assert_contains(out, "override: set by uid 1000 pid 4242 at 2023-11-14T22:13:20.000Z (seq 1): "
                         "weights chat blue=90 green=10");
    free(out);
    out = ask(f, "json weights chat green=100");
    assert_contains(out, "\"changes\":[{\"app\":\"chat\",\"released\":false,\"from\":{\"blue\":90,"
                         "\"green\":10},\"to\":{\"blue\":0,\"green\":100}}]}");
    free(out);
}

static void test_malformed_changes_change_nothing(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *line;
        const char *answer;
    } cases[] = {
        {"weights chat", "error: usage: weights APP CLUSTER=N...\n"},
        {"weights chat blue", "error: malformed weight 'blue' (want CLUSTER=N, N 0..100)\n"},
        {"weights chat =5", "error: malformed weight '=5' (want CLUSTER=N, N 0..100)\n"},
        {"weights chat blue=x", "error: weight of 'blue' must be an integer 0..100, got 'x'\n"},
        {"weights chat blue=101", "error: weight of 'blue' must be an integer 0..100, got '101'\n"},
        {"weights chat blue=-1", "error: weight of 'blue' must be an integer 0..100, got '-1'\n"},
        {"weights chat blue=0x10",
         "error: weight of 'blue' must be an integer 0..100, got '0x10'\n"},
        {"weights chat blue=0 green=0", "error: the weights of app 'chat' must sum above 0\n"},
        {"weights chat blue=50 blue=50", "error: cluster 'blue' is named twice\n"},
        {"weights chat purple=100", "error: unknown cluster 'purple'\n"},
        {"weights chat gray=100", "error: app 'chat' has no cluster 'gray' (add it to the app's "
                                  "weights in the file first)\n"},
        {"weights nope blue=100", "error: unknown app 'nope'\n"},
        {"switch chat", "error: usage: switch APP CLUSTER | switch --abort APP\n"},
        {"switch chat purple", "error: unknown cluster 'purple'\n"},
        {"revert", "error: usage: revert APP | revert --all\n"},
        {"revert chat web", "error: usage: revert APP | revert --all\n"},
        {"release", "error: usage: release APP | release --all\n"},
        {"revert nope", "error: unknown app 'nope'\n"},
        {"release chat", "error: app 'chat' has no override to release\n"},
        {"release nope", "error: unknown app 'nope'\n"},
        {"history 0", "error: N must be an integer 1..1000\n"},
        {"history x", "error: N must be an integer 1..1000\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool pub = true;
        char *out = ask_payload(f, cases[i].line, NULL, &pub);
        if (strcmp(out, cases[i].answer) != 0 || pub)
            fail_msg("case %zu '%s': got '%s'", i, cases[i].line, out);
        free(out);
    }
    assert_int_equal(sy_state_generation(f->st), 1);
    assert_int_equal(sy_state_journal_seq(f->st), 0);
    assert_int_equal(sy_state_overrides(f->st)->n, 0);
}

static void test_switch_revert_and_release(void **state)
{
    struct fx *f = *state;
    char *out = ask(f, "switch chat green");
    assert_string_equal(out, "chat: blue=50,green=50 -> blue=0,green=100\n"
                             "generation 2, journal seq 1\nok\n");
    free(out);
    out = ask(f, "revert chat");
    assert_string_equal(out, "chat: blue=0,green=100 -> blue=100,green=0\n"
                             "generation 3, journal seq 2\nok\n");
    free(out);
    /* Every app to its own stable cluster, in one record and one generation. */
    out = ask(f, "revert --all");
    assert_string_equal(out, "chat: blue=100,green=0 -> blue=100,green=0\n"
                             "web: blue=10,green=90 -> blue=0,green=100\n"
                             "generation 4, journal seq 3\nok\n");
    free(out);
    out = ask(f, "release chat");
    assert_string_equal(out, "chat: blue=100,green=0 -> blue=50,green=50 (released: the file's "
                             "weights)\ngeneration 5, journal seq 4\nok\n");
    free(out);
    out = ask(f, "release --all");
    assert_string_equal(out, "web: blue=0,green=100 -> blue=10,green=90 (released: the file's "
                             "weights)\ngeneration 6, journal seq 5\nok\n");
    free(out);
    out = ask(f, "release --all");
    assert_string_equal(out, "no overrides: every app follows the file\nok\n");
    free(out);
    assert_int_equal(sy_state_journal_seq(f->st), 5);
}

static void test_history_lists_changes_with_before_and_after(void **state)
{
    struct fx *f = *state;
    free(ask(f, "weights chat blue=90 green=10"));
    free(ask(f, "revert --all"));
    char *out = ask(f, "history");
    assert_contains(out, "1      2023-11-14T22:13:20.000Z  uid 1000   pid 4242    weights chat "
                         "blue=90 green=10\n"
                         "         chat: blue=50,green=50 -> blue=90,green=10\n");
    assert_contains(out, "2      2023-11-14T22:13:20.000Z  uid 1000   pid 4242    revert --all\n"
                         "         chat: blue=90,green=10 -> blue=100,green=0\n"
                         "         web: blue=10,green=90 -> blue=0,green=100\n");
    assert_true(ends_ok(out));
    free(out);
    out = ask(f, "history 1 --json");
    assert_contains(out, "\"records\":[{\"seq\":2,");
    assert_null(strstr(out, "\"seq\":1,"));
    free(out);
}

static void test_explain_says_app_cluster_and_rule(void **state)
{
    struct fx *f = *state;
    char *out = ask(f, "explain chat.test /x");
    assert_string_equal(out, "app chat: host 'chat.test' path '/x' (rule: host chat.test, path "
                             "prefix /)\ncluster blue: weighted round-robin over blue=50,green=50 "
                             "(the file's): the next request without a key goes to blue\nok\n");
    free(out);
    /* explain does not move the round-robin: asked twice, the same answer. */
    out = ask(f, "explain chat.test /x");
    assert_contains(out, "goes to blue");
    free(out);
    out = ask(f, "explain chat.test / x-cluster:green");
    assert_contains(out, "cluster green: force header 'x-cluster' names it");
    free(out);
    out = ask(f, "explain chat.test / sy_force=green");
    assert_contains(out, "cluster green: force cookie 'sy_force' names it");
    free(out);
    out = ask(f, "explain a.web.test /static/x.css sy_web=0123456789abcdef");
    assert_contains(out, "(rule: host *.web.test, path prefix /static)");
    assert_contains(out, "sticky cookie 'sy_web': its bucket (of 10000) falls in");
    free(out);
    out = ask(f, "explain a.web.test /");
    assert_contains(out, "sticky cookie 'sy_web' absent: a new random key is given");
    free(out);
    out = ask(f, "explain other.test /");
    assert_string_equal(out,
                        "host other.test path /: no app matches (the proxy answers 404)\nok\n");
    free(out);
    out = ask(f, "json explain chat.test /");
    assert_contains(out, "\"app\":\"chat\",\"rule\":{\"host\":\"chat.test\",\"path\":\"/\"},"
                         "\"cluster\":\"blue\",\"reason\":\"weight\"");
    free(out);
    out = ask(f, "explain chat.test nopath");
    assert_string_equal(out, "error: the path must begin with '/'\n");
    free(out);
}

static void test_reload_answers_the_generation_or_the_error(void **state)
{
    struct fx *f = *state;
    bool pub;
    char *out = ask_payload(f, "reload", NULL, &pub);
    assert_string_equal(out, "generation 2 published\nok\n");
    assert_true(pub);
    free(out);
    write_config(f->tmp.path, "listen: [\n");
    out = ask_payload(f, "reload", NULL, &pub);
    assert_false(pub);
    assert_contains(out, "error: reload rejected (generation 2 kept): ");
    assert_contains(out, "sy.yaml:");
    free(out);
    out = ask(f, "status");
    assert_contains(out, "1 reload failures");
    assert_contains(out, "last reload rejected: ");
    free(out);
}

static void test_stale_override_is_shown_as_such(void **state)
{
    struct fx *f = *state;
    free(ask(f, "switch chat green"));
    char *text = strdup(config_yaml);
    char *p = strstr(text, "weights: {blue: 50, green: 50}");
    memcpy(p, "weights: {blue: 50, gray:  50}", 30);
    write_config(f->tmp.path, text);
    free(text);
    free(ask(f, "reload"));
    char *out = ask(f, "status chat");
    assert_contains(out, "override (STALE: the file's weights apply)");
    assert_contains(out, "stale because it names cluster 'green', which is not one of the app's");
    assert_contains(out, "chat blue    *   50       0!        50");
    free(out);
}

static void test_diff_shows_what_a_file_would_change(void **state)
{
    struct fx *f = *state;
    free(ask(f, "revert chat"));
    char *text = malloc(sizeof(config_yaml) + 256);
    strcpy(text, config_yaml);
    memcpy(strstr(text, "weights: {blue: 50, green: 50}"), "weights: {blue: 20, green: 80}", 30);
    strcat(text, "  - name: api\n    hosts: [chat.test]\n    paths: [/api]\n    weights: {gray: "
                 "100}\n");
    /* A cap on gray's connections, written after its endpoints. */
    static const char cap[] = "    max_connections: 8\n    queue: {max: 10, timeout: 1s}\n";
    char *after = strstr(text, "127.0.0.1:9003]\n") + strlen("127.0.0.1:9003]\n");
    memmove(after + strlen(cap), after, strlen(after) + 1);
    memcpy(after, cap, strlen(cap));
    char line[64];
    snprintf(line, sizeof(line), "diff %zu new.yaml", strlen(text));
    char *out = ask_payload(f, line, text, NULL);
    assert_contains(out, "against generation 2 (journal seq 1):\n");
    assert_contains(out, "~ app chat: file weights blue=50,green=50 -> blue=20,green=80\n");
    assert_contains(out, "! app chat: the override blue=100 (seq 1: revert chat) hides this change "
                         "until `release chat`\n");
    assert_contains(out, "+ app api (1 hosts, 1 paths)\n");
    assert_contains(out, "~ host chat.test path /api: chat -> api\n");
    assert_contains(out, "~ cluster gray: max_connections 0 -> 8, queue.max 1000 -> 10, "
                         "queue.timeout 5000 -> 1000 ms\n");
    assert_true(ends_ok(out));
    free(out);
    /* Nothing changes by asking. */
    assert_int_equal(sy_state_generation(f->st), 2);
    snprintf(line, sizeof(line), "diff %zu new.yaml", strlen(config_yaml));
    out = ask_payload(f, line, config_yaml, NULL);
    assert_contains(out, "no routing change\n");
    free(out);
    out = ask_payload(f, "diff 7 bad.yaml", "apps: [", NULL);
    assert_contains(out, "  bad.yaml:");
    assert_contains(out, "error: the file has errors\n");
    free(out);
    out = ask(f, "diff 0");
    assert_string_equal(out, "error: BYTES must be 1..4194304\n");
    free(out);
    free(text);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_status_shows_file_override_effective_and_traffic),
        T(test_status_counts_own_answers_per_cluster_and_before_routing),
        T(test_weights_is_an_override_with_who_and_when),
        T(test_malformed_changes_change_nothing),
        T(test_switch_revert_and_release),
        T(test_history_lists_changes_with_before_and_after),
        T(test_explain_says_app_cluster_and_rule),
        T(test_reload_answers_the_generation_or_the_error),
        T(test_stale_override_is_shown_as_such),
        T(test_diff_shows_what_a_file_would_change),
        T(test_status_filters_apps_and_counts_overrides_first),
        T(test_history_shortens_a_record_of_many_apps_for_people),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
