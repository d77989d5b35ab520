/* SPDX-License-Identifier: MIT */
/* Unit tests for the control state with its journal: operators' changes are checked against
 * the file and either apply whole (journal record, new generation, published snapshot) or
 * leave no trace; a reload and a restart apply the overrides again over the file, an override
 * that no longer fits becomes stale and is kept; and the `admin:` and `state:` keys. The
 * config is a real file in a temporary directory, loaded through the real loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "switchyard/state.h"

#include "diags.h"
#include "fixture.h"

static const char base_yaml[] = "listen:\n"
                                "  - address: 127.0.0.1:8080\n"
                                "admin:\n"
                                "  socket: admin.sock\n"
                                "clusters:\n"
                                "  blue:\n"
                                "    endpoints: [127.0.0.1:9001]\n"
                                "  green:\n"
                                "    endpoints: [127.0.0.1:9002]\n"
                                "  gray:\n"
                                "    endpoints: [127.0.0.1:9003]\n";

static const char apps_yaml[] = "apps:\n"
                                "  - name: chat\n"
                                "    hosts: [chat.test]\n"
                                "    weights: {blue: 50, green: 50}\n"
                                "  - name: web\n"
                                "    hosts: ['*']\n"
                                "    stable: green\n"
                                "    weights: {blue: 10, green: 90}\n";

struct fx {
    struct sy_fixture_dir tmp;
    struct sy_state *st;
    int published;
    uint64_t last_gen;
};

static void write_config(struct fx *f, const char *apps)
{
    assert_int_equal(sy_fixture_write(f->tmp.path, base_yaml, apps, NULL), 0);
}

static void on_publish(struct sy_route_table *t, void *arg)
{
    struct fx *f = arg;
    f->published++;
    f->last_gen = sy_route_table_generation(t);
}

static void open_state(struct fx *f)
{
    struct sy_diags d;
    sy_diags_init(&d);
    int rc = sy_state_open(f->tmp.path, NULL, NULL, &d, &f->st);
    if (rc == 0) {
        struct sy_journal_opts o = {.no_sync = true};
        rc = sy_state_open_journal(f->st, true, false, &o, &d);
    }
    if (rc)
        print_diags(&d);
    assert_int_equal(rc, 0);
    sy_diags_dispose(&d);
    sy_state_set_publish(f->st, on_publish, f);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (sy_fixture_dir_make(&f->tmp, "state", "sy.yaml") != 0)
        return -1;
    write_config(f, apps_yaml);
    open_state(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    sy_state_free(f->st);
    sy_fixture_dir_remove(&f->tmp);
    free(f);
    return 0;
}

static const struct sy_actor who = {1700000000000ull, 1000, 77, "test"};

static int change1(struct fx *f, const char *app, const struct sy_route_weight *w, size_t n,
                   char *err)
{
    struct sy_state_edit e = {.app = app, .weights = w, .n_weights = n};
    return sy_state_change(f->st, &e, 1, &who, err, 256);
}

/* The weight in force for `cluster` of `app`, and the override state. */
static unsigned in_force(struct fx *f, const char *app, const char *cluster,
                         enum sy_override_state *os)
{
    const struct sy_route_table *t = sy_state_table(f->st);
    const struct sy_config *cfg = sy_route_table_config(t);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        if (strcmp(cfg->apps[i].name, app) != 0)
            continue;
        const struct sy_weight_spec *w;
        size_t n;
        enum sy_override_state s = sy_route_app_weights(t, i, &w, &n);
        if (os)
            *os = s;
        for (size_t k = 0; k < n; k++)
            if (strcmp(cfg->clusters[w[k].cluster].name, cluster) == 0)
                return w[k].weight;
        return 0;
    }
    fail_msg("no app %s", app);
    return 0;
}

static void test_journal_defaults_to_the_config_path_dot_state(void **state)
{
    struct fx *f = *state;
    char want[256];
    snprintf(want, sizeof(want), "%s.state", f->tmp.path);
    assert_non_null(sy_state_journal(f->st));
    assert_string_equal(sy_journal_path(sy_state_journal(f->st)), want);
    assert_int_equal(access(want, F_OK), 0);
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(f->st));
    char sock[256];
    snprintf(sock, sizeof(sock), "%s/admin.sock", f->tmp.dir);
    assert_string_equal(cfg->admin.socket, sock);
}

static void test_change_is_journaled_published_and_in_force(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct sy_route_weight w[] = {{"blue", 90}, {"green", 10}};
    assert_int_equal(change1(f, "chat", w, 2, err), 0);
    assert_int_equal(sy_state_generation(f->st), 2);
    assert_int_equal(sy_state_journal_seq(f->st), 1);
    assert_int_equal(f->published, 1);
    assert_int_equal(f->last_gen, 2);
    enum sy_override_state os;
    assert_int_equal(in_force(f, "chat", "blue", &os), 90);
    assert_int_equal(os, SY_OVERRIDE_APPLIED);
    const struct sy_override *o = sy_overrides_find(sy_state_overrides(f->st), "chat");
    assert_non_null(o);
    assert_int_equal(o->uid, 1000);
    assert_string_equal(o->command, "test");
}

static void test_invalid_changes_leave_no_trace(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *app;
        struct sy_route_weight w[3];
        size_t n;
        const char *why;
    } cases[] = {
        {"nope", {{"blue", 100}}, 1, "unknown app 'nope'"},
        {"chat", {{"purple", 100}}, 1, "unknown cluster 'purple'"},
        {"chat", {{"gray", 100}}, 1, "app 'chat' has no cluster 'gray'"},
        {"chat", {{"blue", 0}, {"green", 0}}, 2, "must sum above 0"},
        {"chat", {{"blue", 101}}, 1, "0..100"},
        {"chat", {{"blue", 50}, {"blue", 50}}, 2, "named twice"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "";
        int rc = change1(f, cases[i].app, cases[i].w, cases[i].n, err);
        if (rc != SY_ERR_INVALID || !strstr(err, cases[i].why))
            fail_msg("case %zu: rc %d err '%s', want '%s'", i, rc, err, cases[i].why);
    }
    struct sy_state_edit rel = {.app = "chat", .release = true};
    char err[256];
    assert_int_equal(sy_state_change(f->st, &rel, 1, &who, err, sizeof(err)), SY_ERR_INVALID);
    assert_non_null(strstr(err, "no override"));
    /* Two edits of one app in one change. */
    struct sy_route_weight w = {"blue", 100};
    struct sy_state_edit two[2] = {{.app = "chat", .weights = &w, .n_weights = 1},
                                   {.app = "chat", .release = true}};
    assert_int_equal(sy_state_change(f->st, two, 2, &who, err, sizeof(err)), SY_ERR_INVALID);
    assert_int_equal(sy_state_generation(f->st), 1);
    assert_int_equal(sy_state_journal_seq(f->st), 0);
    assert_int_equal(f->published, 0);
    assert_int_equal(sy_state_overrides(f->st)->n, 0);
    struct stat st;
    char jp[256];
    snprintf(jp, sizeof(jp), "%s.state", f->tmp.path);
    assert_int_equal(stat(jp, &st), 0);
    assert_int_equal(st.st_size, 0);
}

static void test_one_change_moves_every_app_in_one_generation(void **state)
{
    struct fx *f = *state;
    struct sy_route_weight blue = {"blue", 100}, green = {"green", 100};
    struct sy_state_edit e[2] = {{.app = "chat", .weights = &blue, .n_weights = 1},
                                 {.app = "web", .weights = &green, .n_weights = 1}};
    char err[256];
    assert_int_equal(sy_state_change(f->st, e, 2, &who, err, sizeof(err)), 0);
    assert_int_equal(f->published, 1);
    assert_int_equal(sy_state_journal_seq(f->st), 1);
    assert_int_equal(in_force(f, "chat", "blue", NULL), 100);
    assert_int_equal(in_force(f, "web", "green", NULL), 100);
    assert_int_equal(in_force(f, "web", "blue", NULL), 0);
}

static void test_release_hands_the_app_back_to_the_file(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct sy_route_weight w = {"green", 100};
    assert_int_equal(change1(f, "chat", &w, 1, err), 0);
    struct sy_state_edit rel = {.app = "chat", .release = true};
    assert_int_equal(sy_state_change(f->st, &rel, 1, &who, err, sizeof(err)), 0);
    enum sy_override_state os;
    assert_int_equal(in_force(f, "chat", "blue", &os), 50);
    assert_int_equal(os, SY_OVERRIDE_NONE);
    assert_int_equal(sy_state_journal_seq(f->st), 2);
    assert_int_equal(sy_state_overrides(f->st)->n, 0);
}

static void test_reload_applies_overrides_over_the_new_file(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct sy_route_weight w = {"blue", 100};
    assert_int_equal(change1(f, "chat", &w, 1, err), 0);
    /* The file moves chat to 20/80: the override stays in force. */
    char apps[1024];
    snprintf(apps, sizeof(apps), "%s", apps_yaml);
    char *p = strstr(apps, "blue: 50, green: 50");
    memcpy(p, "blue: 20, green: 80", 19);
    write_config(f, apps);
    struct sy_diags d;
    sy_diags_init(&d);
    assert_int_equal(sy_state_reload(f->st, false, &d), SY_RELOAD_PUBLISHED);
    enum sy_override_state os;
    assert_int_equal(in_force(f, "chat", "blue", &os), 100);
    assert_int_equal(os, SY_OVERRIDE_APPLIED);

    /* A file in which the override no longer fits: stale, kept, the file's weights apply. */
    write_config(f, "apps:\n"
                    "  - name: chat\n"
                    "    hosts: [chat.test]\n"
                    "    weights: {green: 100}\n");
    assert_int_equal(sy_state_reload(f->st, false, &d), SY_RELOAD_PUBLISHED);
    assert_int_equal(in_force(f, "chat", "green", &os), 100);
    assert_int_equal(os, SY_OVERRIDE_STALE);
    assert_non_null(sy_overrides_find(sy_state_overrides(f->st), "chat"));

    /* And once the cluster is back, it applies again. */
    write_config(f, apps_yaml);
    assert_int_equal(sy_state_reload(f->st, false, &d), SY_RELOAD_PUBLISHED);
    assert_int_equal(in_force(f, "chat", "blue", &os), 100);
    assert_int_equal(os, SY_OVERRIDE_APPLIED);
    sy_diags_dispose(&d);
}

/* Runs a reload with stderr (the log, no writer thread here) in `log`, NUL-terminated. */
static enum sy_reload_result reload_logged(struct fx *f, char *log, size_t size)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/stderr", f->tmp.dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), saved = dup(STDERR_FILENO);
    assert_true(fd != -1 && saved != -1);
    assert_int_not_equal(dup2(fd, STDERR_FILENO), -1);
    struct sy_diags d;
    sy_diags_init(&d);
    enum sy_reload_result res = sy_state_reload(f->st, false, &d);
    sy_diags_dispose(&d);
    assert_int_not_equal(dup2(saved, STDERR_FILENO), -1);
    close(saved);
    ssize_t n = pread(fd, log, size - 1, 0);
    close(fd);
    assert_true(n >= 0);
    log[n] = '\0';
    fputs(log, stderr);
    return res;
}

/* A reload logs what changed, in the words of `switchyard -t`, after the generation it made. */
static void test_reload_logs_what_the_table_diff_finds(void **state)
{
    struct fx *f = *state;
    static char log[16384];
    write_config(f, "apps:\n"
                    "  - name: chat\n"
                    "    hosts: [chat.test]\n"
                    "    weights: {blue: 20, green: 80}\n");
    assert_int_equal(reload_logged(f, log, sizeof(log)), SY_RELOAD_PUBLISHED);
    const char *pub = strstr(log, "reload: generation 2 published");
    assert_non_null(pub);
    assert_non_null(strstr(pub, "reload: generation 2: - app web\n"));
    assert_non_null(strstr(pub, "reload: generation 2: ~ app chat: file weights "
                                "blue=50,green=50 -> blue=20,green=80\n"));
    assert_non_null(strstr(pub, "reload: generation 2: ~ host * path /: web -> (no app: 404)\n"));
    assert_null(strstr(log, "more changes not logged"));

    /* A file that changes more than RELOAD_LOG_CHANGES things says how many it did not log. */
    char apps[8192] = "apps:\n";
    for (int i = 0; i < 30; i++)
        snprintf(apps + strlen(apps), sizeof(apps) - strlen(apps),
                 "  - name: a%d\n    hosts: [a%d.test]\n    weights: {blue: 1}\n", i, i);
    write_config(f, apps);
    assert_int_equal(reload_logged(f, log, sizeof(log)), SY_RELOAD_PUBLISHED);
    assert_non_null(strstr(log, "reload: generation 3: - app chat\n"));
    /* 1 app removed, 30 added, 31 winners: 20 logged. */
    assert_non_null(strstr(log, "reload: generation 3: 42 more changes not logged\n"));
}

/* fleet: is read at start only (its etcd client, lease and membership are made once): a reload
 * that changes it says so, naming the key, and one that only rewrites it the same way does not. */
static void test_reload_that_changes_fleet_says_it_takes_a_restart(void **state)
{
    struct fx *f = *state;
    static char log[16384];
    static const struct {
        const char *fleet, *want; /* want: NULL for no warning */
    } steps[] = {
        {"fleet:\n  etcd: {endpoints: [127.0.0.1:2379]}\n",
         "reload: fleet changes only on restart"},
        {"fleet:\n  etcd: {endpoints: [127.0.0.1:2380]}\n",
         "reload: fleet.etcd.endpoints changes only on restart"},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380']}\n",
         "reload: fleet.etcd.endpoints changes only on restart"},
        /* The same prefix written another way, and the same endpoint once more: no change. */
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /switchyard}\n", NULL},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /sy/}\n",
         "reload: fleet.etcd.prefix changes only on restart"},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /sy/, tls: {}}\n", NULL},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /sy/,\n"
         "         tls: {verify: false}}\n",
         "reload: fleet.etcd.tls changes only on restart"},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /sy/,\n"
         "         tls: {verify: false}, timeout: 3s}\n",
         "reload: fleet.etcd.timeout changes only on restart"},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /sy/,\n"
         "         tls: {verify: false}, timeout: 3s}\n  instance: a\n",
         "reload: fleet.instance changes only on restart"},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /sy/,\n"
         "         tls: {verify: false}, timeout: 3s}\n  instance: a\n  lease_ttl: 20s\n",
         "reload: fleet.lease_ttl changes only on restart"},
        {"fleet:\n  etcd: {endpoints: ['https://127.0.0.1:2380'], prefix: /sy/,\n"
         "         tls: {verify: false}, timeout: 3s}\n  instance: a\n  lease_ttl: 20s\n"
         "  wait: 1s\n",
         "reload: fleet.wait changes only on restart"},
        {"", "reload: fleet changes only on restart"},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        /* Each step also moves chat's weights, so that every reload publishes. */
        char text[2048];
        snprintf(text, sizeof(text),
                 "apps:\n  - name: chat\n    hosts: [chat.test]\n    weights: {blue: %zu, "
                 "green: 50}\n%s",
                 i + 1, steps[i].fleet);
        write_config(f, text);
        assert_int_equal(reload_logged(f, log, sizeof(log)), SY_RELOAD_PUBLISHED);
        if (steps[i].want)
            assert_non_null(strstr(log, steps[i].want));
        else
            assert_null(strstr(log, "fleet"));
        /* One warning: the first key that changed. */
        const char *first = strstr(log, "changes only on restart");
        assert_true(!first || !strstr(first + 1, "changes only on restart"));
    }
}

/* A reload hook as admin/exclusive.c has one: it holds app "chat" on cluster "blue". */
static struct sy_route_table *hold_chat(const struct sy_route_table *cur,
                                        struct sy_route_table *next, void *arg)
{
    int *calls = arg;
    (*calls)++;
    assert_non_null(cur);
    struct sy_route_weight w = {"blue", 100};
    struct sy_route_override ov = {"chat", &w, 1};
    struct sy_route_app_change ch = {.app = 0, .override = &ov, .held = true};
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_update(next, &ch, 1, sy_route_table_generation(next), &t), 0);
    sy_route_table_release(next);
    return t;
}

static void test_reload_hook_replaces_the_snapshot_and_follow_file_releases_it(void **state)
{
    struct fx *f = *state;
    int calls = 0;
    sy_state_set_reload_hook(f->st, hold_chat, &calls);
    char apps[1024];
    snprintf(apps, sizeof(apps), "%s", apps_yaml);
    memcpy(strstr(apps, "blue: 50, green: 50"), "blue: 20, green: 80", 19);
    write_config(f, apps);
    struct sy_diags d;
    sy_diags_init(&d);
    assert_int_equal(sy_state_reload(f->st, false, &d), SY_RELOAD_PUBLISHED);
    sy_diags_dispose(&d);
    assert_int_equal(calls, 1);
    /* What the hook returned is what was published: held, on blue. */
    assert_true(sy_route_app_is_held(sy_state_table(f->st), 0));
    assert_int_equal(f->last_gen, sy_state_generation(f->st));
    enum sy_override_state os;
    assert_int_equal(in_force(f, "chat", "blue", &os), 100);
    sy_state_set_reload_hook(f->st, NULL, NULL);

    /* The release: the file's weights, not held, and a note in the journal (no override). */
    char err[256];
    uint64_t seq = sy_state_journal_seq(f->st);
    assert_int_equal(sy_state_follow_file(f->st, "chat", "blue", &who, err, sizeof(err)), 0);
    assert_false(sy_route_app_is_held(sy_state_table(f->st), 0));
    assert_int_equal(in_force(f, "chat", "green", &os), 80);
    assert_int_equal(os, SY_OVERRIDE_NONE);
    assert_int_equal(sy_state_journal_seq(f->st), seq + 1);
    assert_int_equal(sy_state_overrides(f->st)->n, 0);

    /* An app with an override is not noted (a release record would drop the override). */
    struct sy_route_weight w = {"green", 100};
    assert_int_equal(change1(f, "chat", &w, 1, err), 0);
    seq = sy_state_journal_seq(f->st);
    assert_int_equal(sy_state_follow_file(f->st, "chat", "blue", &who, err, sizeof(err)), 0);
    assert_int_equal(sy_state_journal_seq(f->st), seq);
    assert_non_null(sy_overrides_find(sy_state_overrides(f->st), "chat"));
    assert_int_equal(sy_state_follow_file(f->st, "nope", "blue", &who, err, sizeof(err)),
                     SY_ERR_INVALID);
}

static void test_override_of_a_removed_app_is_kept_and_releasable(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct sy_route_weight w = {"blue", 100};
    assert_int_equal(change1(f, "chat", &w, 1, err), 0);
    write_config(f, "apps:\n"
                    "  - name: web\n"
                    "    hosts: ['*']\n"
                    "    weights: {blue: 10, green: 90}\n");
    struct sy_diags d;
    sy_diags_init(&d);
    assert_int_equal(sy_state_reload(f->st, false, &d), SY_RELOAD_PUBLISHED);
    sy_diags_dispose(&d);
    assert_non_null(sy_overrides_find(sy_state_overrides(f->st), "chat"));
    struct sy_state_edit rel = {.app = "chat", .release = true};
    assert_int_equal(sy_state_change(f->st, &rel, 1, &who, err, sizeof(err)), 0);
    assert_int_equal(sy_state_overrides(f->st)->n, 0);
}

static void test_restart_replays_the_journal_before_the_first_snapshot(void **state)
{
    struct fx *f = *state;
    char err[256];
    struct sy_route_weight w = {"blue", 100};
    assert_int_equal(change1(f, "web", &w, 1, err), 0);
    sy_state_free(f->st);
    f->st = NULL;
    open_state(f);
    assert_int_equal(sy_state_generation(f->st), 1);
    assert_int_equal(sy_state_journal_seq(f->st), 1);
    enum sy_override_state os;
    assert_int_equal(in_force(f, "web", "blue", &os), 100);
    assert_int_equal(os, SY_OVERRIDE_APPLIED);
}

/* The maintenance answer of `app` in the snapshot in force, or NULL. */
static const struct sy_route_maint_answer *maint_of(struct fx *f, const char *app)
{
    const struct sy_route_table *t = sy_state_table(f->st);
    const struct sy_route_app *a =
        sy_route_match(t, sy_slice_of(app, strlen(app)), sy_slice_of("/", 1));
    assert_non_null(a);
    return sy_route_app_maintenance(t, a);
}

static void test_maintenance_is_journaled_published_and_kept_by_changes_and_reloads(void **state)
{
    struct fx *f = *state;
    char err[256];
    bool changed = false;
    assert_null(maint_of(f, "chat.test"));
    assert_int_equal(sy_state_set_maintenance(f->st, "chat", true, 0, "back soon", &who, &changed,
                                              err, sizeof(err)),
                     0);
    assert_true(changed);
    assert_int_equal(sy_state_generation(f->st), 2);
    assert_int_equal(sy_state_journal_seq(f->st), 1);
    assert_int_equal(f->published, 1);
    const struct sy_route_maint_answer *m = maint_of(f, "chat.test");
    assert_non_null(m);
    assert_int_equal(m->retry_after_s, 120); /* apps[].maintenance_retry_after's default */
    assert_string_equal(m->text, "back soon\n");
    assert_null(m->page);
    assert_null(maint_of(f, "other.test")); /* web: not in maintenance */

    /* A weight change (revert, switch, weights) keeps it; so does a reload of a new file. */
    struct sy_route_weight w = {"blue", 100};
    assert_int_equal(change1(f, "chat", &w, 1, err), 0);
    assert_non_null(maint_of(f, "chat.test"));
    write_config(f, "apps:\n"
                    "  - name: chat\n"
                    "    hosts: [chat.test]\n"
                    "    weights: {blue: 70, green: 30}\n"
                    "    maintenance_retry_after: 30\n");
    struct sy_diags d;
    sy_diags_init(&d);
    assert_int_equal(sy_state_reload(f->st, false, &d), SY_RELOAD_PUBLISHED);
    sy_diags_dispose(&d);
    m = maint_of(f, "chat.test");
    assert_non_null(m);
    assert_int_equal(m->retry_after_s, 30); /* the new file's default now */

    /* And a restart. */
    sy_state_free(f->st);
    f->st = NULL;
    open_state(f);
    assert_non_null(maint_of(f, "chat.test"));
    const struct sy_maint *e = sy_maints_find(sy_state_maintenance(f->st), "chat");
    assert_non_null(e);
    assert_int_equal(e->uid, 1000);
    assert_int_equal(e->since_ms, who.time_ms);

    /* Off: published, journaled; off again changes nothing and records nothing. */
    uint64_t seq = sy_state_journal_seq(f->st);
    assert_int_equal(
        sy_state_set_maintenance(f->st, "chat", false, 0, NULL, &who, &changed, err, sizeof(err)),
        0);
    assert_true(changed);
    assert_null(maint_of(f, "chat.test"));
    assert_int_equal(sy_state_journal_seq(f->st), seq + 1);
    assert_int_equal(
        sy_state_set_maintenance(f->st, "chat", false, 0, NULL, &who, &changed, err, sizeof(err)),
        0);
    assert_false(changed);
    assert_int_equal(sy_state_journal_seq(f->st), seq + 1);
}

static void test_bad_maintenance_changes_leave_no_trace(void **state)
{
    struct fx *f = *state;
    char err[256];
    bool changed = true;
    assert_int_equal(
        sy_state_set_maintenance(f->st, "nope", true, 0, NULL, &who, &changed, err, sizeof(err)),
        SY_ERR_INVALID);
    assert_false(changed);
    assert_string_equal(err, "unknown app 'nope'");
    assert_int_equal(sy_state_set_maintenance(f->st, "chat", true, 0, "tab\there", &who, &changed,
                                              err, sizeof(err)),
                     SY_ERR_INVALID);
    assert_non_null(strstr(err, "printable ASCII"));
    assert_int_equal(sy_state_journal_seq(f->st), 0);
    assert_int_equal(f->published, 0);
    assert_null(maint_of(f, "chat.test"));
}

static void test_without_a_journal_changes_are_refused(void **state)
{
    struct fx *f = *state;
    /* A state opened without its journal (no admin socket, no state file). */
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_state *st = NULL;
    assert_int_equal(sy_state_open(f->tmp.path, NULL, NULL, &d, &st), 0);
    struct sy_route_weight w = {"blue", 100};
    struct sy_state_edit e = {.app = "chat", .weights = &w, .n_weights = 1};
    char err[256];
    assert_int_equal(sy_state_change(st, &e, 1, &who, err, sizeof(err)), SY_ERR_NOTFOUND);
    assert_non_null(strstr(err, "no state file"));
    sy_state_free(st);
    sy_diags_dispose(&d);
}

static void test_admin_and_state_keys_are_checked(void **state)
{
    static const struct {
        const char *yaml;
        const char *why; /* NULL: valid */
    } cases[] = {
        {"admin: {socket: /run/sy.sock, allow_uids: [0, 65534], allow_gids: [root]}\n", NULL},
        {"admin: {sock: x}\n", "unknown key 'sock' in admin"},
        {"admin: {allow_uids: [-1]}\n", "allow_uids"},
        {"admin: {allow_uids: [no-such-user-here]}\n", "no user named"},
        {"admin: {allow_gids: x}\n", "allow_gids must be a list"},
        {"admin: {allow_read_uids: [65534, root], allow_read_gids: [0]}\n", NULL},
        {"admin: {allow_read_uids: [-1]}\n", "allow_read_uids"},
        {"admin: {allow_read_gids: x}\n", "allow_read_gids must be a list"},
        {"admin: {socket: "
         "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock}\n",
         "longer than 107"},
        {"state: /var/lib/switchyard/state.json\n", NULL},
        {"state: [x]\n", "state must be a string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[2048];
        snprintf(text, sizeof(text),
                 "listen:\n  - address: 127.0.0.1:8080\nclusters:\n  blue:\n    endpoints: "
                 "[127.0.0.1:9001]\napps:\n  - name: a\n    hosts: ['*']\n    weights: {blue: "
                 "1}\n%s",
                 cases[i].yaml);
        struct sy_diags d;
        sy_diags_init(&d);
        struct sy_config *cfg = NULL;
        int rc = sy_config_parse("t.yaml", text, strlen(text), &d, &cfg);
        if (!cases[i].why) {
            if (rc != 0)
                print_diags(&d);
            assert_int_equal(rc, 0);
            sy_config_free(cfg);
        } else {
            bool found = false;
            for (size_t k = 0; k < d.n; k++)
                found |= strstr(d.v[k].msg, cases[i].why) != NULL;
            if (rc == 0 || !found) {
                print_diags(&d);
                fail_msg("case %zu: want an error with '%s'", i, cases[i].why);
            }
        }
        sy_diags_dispose(&d);
    }
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    const char *ok = "listen:\n  - address: 127.0.0.1:8080\nclusters:\n  blue:\n    endpoints: "
                     "[127.0.0.1:9001]\napps:\n  - name: a\n    hosts: ['*']\n    weights: "
                     "{blue: 1}\nadmin: {socket: run/a.sock, allow_uids: [0, 65534], "
                     "allow_gids: [root], allow_read_uids: [1000, 1001], allow_read_gids: "
                     "[5]}\nstate: st/journal\n";
    assert_int_equal(sy_config_parse("/etc/sy/t.yaml", ok, strlen(ok), &d, &cfg), 0);
    assert_string_equal(cfg->admin.socket, "/etc/sy/run/a.sock");
    assert_string_equal(cfg->state, "/etc/sy/st/journal");
    assert_int_equal(cfg->admin.n_allow_uids, 2);
    assert_int_equal(cfg->admin.allow_uids[1], 65534);
    assert_int_equal(cfg->admin.n_allow_gids, 1);
    assert_int_equal(cfg->admin.allow_gids[0], 0);
    assert_int_equal(cfg->admin.n_allow_read_uids, 2);
    assert_int_equal(cfg->admin.allow_read_uids[1], 1001);
    assert_int_equal(cfg->admin.n_allow_read_gids, 1);
    assert_int_equal(cfg->admin.allow_read_gids[0], 5);
    char path[256];
    assert_int_equal(sy_state_journal_path(cfg, "/etc/sy/t.yaml", path, sizeof(path)), 0);
    assert_string_equal(path, "/etc/sy/st/journal");
    sy_config_free(cfg);
    sy_diags_dispose(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_journal_defaults_to_the_config_path_dot_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_change_is_journaled_published_and_in_force, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalid_changes_leave_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_change_moves_every_app_in_one_generation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_release_hands_the_app_back_to_the_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_applies_overrides_over_the_new_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_logs_what_the_table_diff_finds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_reload_hook_replaces_the_snapshot_and_follow_file_releases_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_that_changes_fleet_says_it_takes_a_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_override_of_a_removed_app_is_kept_and_releasable,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_replays_the_journal_before_the_first_snapshot,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_a_journal_changes_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_maintenance_is_journaled_published_and_kept_by_changes_and_reloads, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_bad_maintenance_changes_leave_no_trace, setup,
                                        teardown),
        cmocka_unit_test(test_admin_and_state_keys_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
