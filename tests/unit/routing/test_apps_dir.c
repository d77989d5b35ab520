/* SPDX-License-Identifier: MIT */
/* Unit tests for apps_dir (routing/apps_dir.c and its part of routing/config.c): tenant files
 * in a temporary directory, merged with the routing file's apps in name order; an error names
 * its own file, line and column; a host+path or a name claimed twice names both files; the
 * limit on the number of files; the content hash that tells a changed directory from a
 * touched one; and the watch, whose inotify events arrive before the writing call returns. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "switchyard/apps_dir.h"
#include "switchyard/config.h"

#include "diags.h"

#ifndef SY_FIXTURES
#define SY_FIXTURES "tests/fixtures"
#endif
#define SY_EXAMPLES SY_FIXTURES "/../../conf/examples"

#define MAIN_HEAD                                                                                  \
    "listen:\n"                                                                                    \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "clusters:\n"                                                                                  \
    "  blue: {endpoints: [127.0.0.1:9001]}\n"                                                      \
    "  green: {endpoints: [127.0.0.1:9002]}\n"

/* One app on lines 1 to 3 of a tenant file; its host at 3:11. */
#define APP(name, host) "- name: " name "\n  weights: {blue: 100}\n  hosts: [" host "]\n"

struct fixture {
    char dir[64];  /* the temporary directory: main.yaml and apps.d/ */
    char apps[96]; /* its apps.d */
    char main[96];
};

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static void remove_tree(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sy-apps-dir-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->apps, sizeof(fx->apps), "%s/apps.d", fx->dir);
    snprintf(fx->main, sizeof(fx->main), "%s/main.yaml", fx->dir);
    if (mkdir(fx->apps, 0700) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    remove_tree(fx->dir);
    free(fx);
    return 0;
}

/* Loads main.yaml (main_text written first); returns the config or NULL with `d` filled. */
static struct sy_config *load(struct fixture *fx, const char *main_text, struct sy_diags *d)
{
    write_file(fx->dir, "main.yaml", main_text);
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(fx->main, d, &cfg);
    if (rc != 0)
        print_diags(d);
    return rc == 0 ? cfg : NULL;
}

static struct sy_config *load_ok(struct fixture *fx, const char *main_text)
{
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = load(fx, main_text, &d);
    assert_non_null(cfg);
    assert_int_equal(d.n, 0);
    sy_diags_dispose(&d);
    return cfg;
}

/* "FILE:LINE:COL: MSG" of diagnostic i. */
static const char *diag_text(const struct sy_diags *d, size_t i, char *buf, size_t size)
{
    sy_diag_format(&d->v[i], buf, size);
    return buf;
}

static void test_names_that_count(void **state)
{
    static const char *yes[] = {"a.yaml", "team-b.yaml", "x.y.yaml", "#a.yaml"};
    static const char *no[] = {".a.yaml",     ".a.yaml.swp", "a.yaml~", "#a.yaml#", ".#a.yaml",
                               "a.yaml.tmp",  "a.yml",       ".yaml",   "..data",   "..2024_01",
                               "a.yaml.orig", "4913",        "yaml"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(sy_apps_dir_is_file(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (sy_apps_dir_is_file(no[i]))
            fail_msg("%s counts", no[i]);
    }
}

static void test_merges_files_in_name_order_after_the_routing_file(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "b.yaml", APP("bee", "b.example.com") APP("bee2", "b2.example.com"));
    write_file(fx->apps, "a.yaml", APP("ant", "a.example.com"));
    write_file(fx->apps, "c.yaml", "[]\n");
    /* Ignored: hidden, editors' files, other suffixes, a ConfigMap's entries. */
    write_file(fx->apps, ".a.yaml.swp", "not yaml: [");
    write_file(fx->apps, "a.yaml~", "not yaml: [");
    write_file(fx->apps, "notes.txt", "not yaml: [");
    char data[160];
    snprintf(data, sizeof(data), "%s/..2024_01_01", fx->apps);
    assert_int_equal(mkdir(data, 0700), 0);
    struct sy_config *cfg = load_ok(fx, MAIN_HEAD "apps_dir: apps.d\n"
                                                  "apps:\n"
                                                  "  - name: main\n"
                                                  "    hosts: [m.example.com]\n"
                                                  "    weights: {green: 1}\n");
    assert_string_equal(cfg->apps_dir, fx->apps);
    assert_int_equal(cfg->apps_dir_mark.line, 6);
    assert_int_equal(cfg->apps_dir_mark.col, 11);
    assert_int_equal(cfg->n_apps_dir_files, 3);
    assert_int_equal(cfg->n_apps, 4);
    static const char *names[] = {"main", "ant", "bee", "bee2"};
    static const char *files[] = {NULL, "a.yaml", "b.yaml", "b.yaml"};
    static const int lines[] = {8, 1, 1, 4};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(cfg->apps[i].name, names[i]);
        assert_int_equal(cfg->apps[i].mark.line, lines[i]);
        assert_int_equal(sy_config_app_index(cfg, names[i]), (long)i);
        const char *file = sy_config_app_file(cfg, &cfg->apps[i]);
        if (!files[i]) {
            assert_null(cfg->apps[i].source);
            assert_string_equal(file, fx->main);
        } else {
            char want[160];
            snprintf(want, sizeof(want), "%s/%s", fx->apps, files[i]);
            assert_string_equal(file, want);
        }
    }
    sy_config_free(cfg);
}

static void test_apps_may_be_only_in_the_directory(void **state)
{
    struct fixture *fx = *state;
    struct sy_config *cfg = load_ok(fx, MAIN_HEAD "apps_dir: apps.d/\n");
    assert_int_equal(cfg->n_apps, 0);
    sy_config_free(cfg);
    write_file(fx->apps, "a.yaml", APP("ant", "a.example.com"));
    char abs[512];
    snprintf(abs, sizeof(abs), MAIN_HEAD "apps_dir: %s\n", fx->apps);
    cfg = load_ok(fx, abs);
    assert_int_equal(cfg->n_apps, 1);
    sy_config_free(cfg);
}

/* `pattern` with each '@' replaced by `dir` and each '#' by `top`. */
static void expand(const char *pattern, const char *dir, const char *top, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 1 < size; p++) {
        if (*p == '@' || *p == '#') {
            o += (size_t)snprintf(out + o, size - o, "%s", *p == '@' ? dir : top);
            if (o >= size)
                o = size - 1;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static void test_the_routing_file_in_its_own_apps_dir_is_not_a_tenant(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->dir, "team.yaml", APP("ant", "a.example.com"));
    struct sy_config *cfg = load_ok(fx, MAIN_HEAD "apps_dir: .\n");
    assert_int_equal(cfg->n_apps_dir_files, 1);
    assert_int_equal(cfg->n_apps, 1);
    assert_true(sy_config_is_current(fx->main, cfg));
    sy_config_free(cfg);
}

static void test_a_tenant_file_names_files_relative_to_itself(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "page.html", "<p>back soon</p>");
    write_file(fx->apps, "a.yaml", APP("ant", "a.example.com") "  maintenance_page: page.html\n");
    struct sy_config *cfg = load_ok(fx, MAIN_HEAD "apps_dir: apps.d\n");
    assert_int_equal(cfg->apps[0].maintenance_page_len, 16);
    assert_memory_equal(cfg->apps[0].maintenance_page, "<p>back soon</p>", 16);
    sy_config_free(cfg);
}

/* Loads a config that must fail with exactly `n` diagnostics, `want[i]` a substring of each
 * formatted one ('@' in `want` is the path of apps.d, '#' the temporary directory's). */
static void load_fails(struct fixture *fx, const char *main_text, const char *const *want, size_t n)
{
    struct sy_diags d;
    sy_diags_init(&d);
    assert_null(load(fx, main_text, &d));
    if (d.n != n)
        fail_msg("%zu diagnostics, want %zu", d.n, n);
    for (size_t i = 0; i < n; i++) {
        char buf[512], w[512];
        expand(want[i], fx->apps, fx->dir, w, sizeof(w));
        if (!strstr(diag_text(&d, i, buf, sizeof(buf)), w))
            fail_msg("diag %zu is '%s', want '%s'", i, buf, w);
    }
    sy_diags_dispose(&d);
}

static void test_an_error_names_its_own_file(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "a.yaml", APP("ant", "a.example.com"));
    write_file(fx->apps, "b.yaml", "- name: bee\n  hosts: [b.example.com]\n  weights: {red: 1}\n");
    write_file(fx->apps, "c.yaml", "- name: cat\n  hosts: [c.example.com\n");
    static const char *const want[] = {
        "@/b.yaml:3:13: unknown cluster 'red'",
        "@/c.yaml:3:1: did not find expected ',' or ']'",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\n", want, 2);
}

static void test_a_routing_file_error_comes_first(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "a.yaml", "- name: ant\n  hosts: [a.example.com]\n  weights: {red: 1}\n");
    static const char *const want[] = {
        "main.yaml:8:3: unknown key 'bogus' in limits",
        "@/a.yaml:3:13: unknown cluster 'red'",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\nlimits:\n  bogus: 1\n", want, 2);
}

static void test_a_host_claimed_by_two_files_names_both(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "a.yaml", APP("ant", "shared.example.com"));
    write_file(fx->apps, "b.yaml", "# b\n" APP("bee", "shared.example.com"));
    static const char *const want[] = {
        "@/b.yaml:4:11: host 'shared.example.com' with path '/' is already claimed by app "
        "'ant' in @/a.yaml:3:11",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\n", want, 1);
}

static void test_a_host_claimed_by_a_file_and_the_routing_file_names_both(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "a.yaml", APP("ant", "m.example.com"));
    static const char *const want[] = {
        "@/a.yaml:3:11: host 'm.example.com' with path '/' is already claimed by app 'main' in "
        "#/main.yaml:9:13",
    };
    load_fails(fx,
               MAIN_HEAD "apps_dir: apps.d\n"
                         "apps:\n"
                         "  - name: main\n"
                         "    hosts: [m.example.com]\n"
                         "    weights: {green: 1}\n",
               want, 1);
}

static void test_an_app_name_in_two_files_names_both(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "a.yaml", APP("ant", "a.example.com"));
    write_file(fx->apps, "b.yaml", "\n" APP("ant", "b.example.com"));
    static const char *const want[] = {
        "@/b.yaml:2:9: duplicate app name 'ant' (first in @/a.yaml:1:3)",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\n", want, 1);
}

static void test_refuses_more_files_than_the_limit(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "a.yaml", "[]\n");
    write_file(fx->apps, "b.yaml", "[]\n");
    write_file(fx->apps, "c.yaml", "[]\n");
    static const char *const want[] = {
        "main.yaml:6:11: apps_dir '@' holds more than limits.apps_dir_files (2) *.yaml files",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\nlimits: {apps_dir_files: 2}\n", want, 1);
    struct sy_config *cfg =
        load_ok(fx, MAIN_HEAD "apps_dir: apps.d\nlimits: {apps_dir_files: 3}\n");
    assert_int_equal(cfg->limits.apps_dir_files, 3);
    sy_config_free(cfg);
}

static void test_refuses_a_missing_directory_an_empty_file_and_a_mapping(void **state)
{
    struct fixture *fx = *state;
    static const char *const missing[] = {
        "main.yaml:6:11: cannot read apps_dir '@/nope': No such file or directory",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d/nope\n", missing, 1);
    write_file(fx->apps, "a.yaml", "");
    write_file(fx->apps, "b.yaml", "name: bee\n");
    static const char *const want[] = {
        "@/a.yaml:1:1: an apps_dir file must be a list of apps (write [] for none)",
        "@/b.yaml:1:1: an apps_dir file must be a list of apps, got a mapping",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\n", want, 2);
}

static void test_refuses_a_tenant_file_larger_than_the_routing_file_may_be(void **state)
{
    struct fixture *fx = *state;
    size_t big = (16u << 20) + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, '#', big);
    text[big] = '\0';
    write_file(fx->apps, "big.yaml", text);
    free(text);
    static const char *const want[] = {
        "@/big.yaml: cannot read: larger than 16777216 bytes",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\n", want, 1);
}

static void test_refuses_a_fifo_without_waiting_for_a_writer(void **state)
{
    struct fixture *fx = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s/f.yaml", fx->apps);
    assert_int_equal(mkfifo(path, 0600), 0);
    static const char *const want[] = {
        "@/f.yaml: cannot read: not a regular file",
    };
    load_fails(fx, MAIN_HEAD "apps_dir: apps.d\n", want, 1);
}

static void test_limit_default(void **state)
{
    struct sy_limits lim;
    sy_config_defaults(&lim, NULL);
    assert_int_equal(lim.apps_dir_files, 10000);
    assert_int_equal(lim.apps_dir_files, SY_APPS_DIR_FILES_DEFAULT);
}

static void test_content_hash_covers_the_directory(void **state)
{
    struct fixture *fx = *state;
    write_file(fx->apps, "a.yaml", APP("ant", "a.example.com"));
    struct sy_config *cfg = load_ok(fx, MAIN_HEAD "apps_dir: apps.d\n");
    assert_true(sy_config_is_current(fx->main, cfg));
    write_file(fx->apps, ".hidden.yaml", "junk");
    write_file(fx->apps, "a.yaml~", "junk");
    assert_true(sy_config_is_current(fx->main, cfg));
    write_file(fx->apps, "a.yaml", APP("ant", "a2.example.com"));
    assert_false(sy_config_is_current(fx->main, cfg));
    write_file(fx->apps, "a.yaml", APP("ant", "a.example.com"));
    assert_true(sy_config_is_current(fx->main, cfg));
    write_file(fx->apps, "b.yaml", "[]\n");
    assert_false(sy_config_is_current(fx->main, cfg));
    struct sy_config *two = load_ok(fx, MAIN_HEAD "apps_dir: apps.d\n");
    assert_true(two->content_hash != cfg->content_hash);
    char from[160], to[160];
    snprintf(from, sizeof(from), "%s/b.yaml", fx->apps);
    snprintf(to, sizeof(to), "%s/0.yaml", fx->apps);
    assert_int_equal(rename(from, to), 0); /* the same bytes under another name */
    assert_false(sy_config_is_current(fx->main, two));
    assert_int_equal(unlink(to), 0);
    assert_true(sy_config_is_current(fx->main, cfg));
    sy_config_free(two);
    sy_config_free(cfg);
}

static void test_watch_sees_apps_files_and_configmap_swaps_only(void **state)
{
    struct fixture *fx = *state;
    struct sy_apps_watch *w;
    assert_int_equal(sy_apps_watch_new(&w), 0);
    sy_apps_watch_set(w, fx->apps);
    assert_false(sy_apps_watch_read(w));
    write_file(fx->apps, ".a.yaml.swp", "x");
    write_file(fx->apps, "notes.txt", "x");
    assert_false(sy_apps_watch_read(w));
    write_file(fx->apps, "a.yaml", "[]\n");
    assert_true(sy_apps_watch_read(w));
    assert_false(sy_apps_watch_read(w));
    /* Kubernetes: a new ..data symlink renamed over the old one. */
    char tmp[160], data[160];
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", fx->apps);
    snprintf(data, sizeof(data), "%s/..data", fx->apps);
    assert_int_equal(symlink(".", tmp), 0);
    assert_int_equal(rename(tmp, data), 0);
    assert_true(sy_apps_watch_read(w));
    char a[160];
    snprintf(a, sizeof(a), "%s/a.yaml", fx->apps);
    assert_int_equal(unlink(a), 0);
    assert_true(sy_apps_watch_read(w));
    /* The directory replaced by another renamed over it: the new one is watched. */
    char next[160];
    snprintf(next, sizeof(next), "%s/apps.next", fx->dir);
    assert_int_equal(mkdir(next, 0700), 0);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mv '%s' '%s'", fx->apps, next, fx->apps);
    assert_int_equal(system(cmd), 0);
    assert_true(sy_apps_watch_read(w));
    write_file(fx->apps, "b.yaml", "[]\n");
    assert_true(sy_apps_watch_read(w));
    sy_apps_watch_set(w, NULL);
    write_file(fx->apps, "c.yaml", "[]\n");
    assert_false(sy_apps_watch_read(w));
    sy_apps_watch_free(w);
}

static void test_the_shipped_example_loads_both_tenants(void **state)
{
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(SY_EXAMPLES "/tenants.yaml", &d, &cfg);
    print_diags(&d);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->apps_dir, SY_EXAMPLES "/apps.d");
    assert_int_equal(cfg->n_apps_dir_files, 2);
    static const char *names[] = {"status-page", "checkout", "payments-api", "search",
                                  "search-api"};
    static const char *files[] = {"tenants.yaml", "apps.d/payments.yaml", "apps.d/payments.yaml",
                                  "apps.d/search.yaml", "apps.d/search.yaml"};
    assert_int_equal(cfg->n_apps, 5);
    for (size_t i = 0; i < 5; i++) {
        char want[512];
        snprintf(want, sizeof(want), "%s/%s", SY_EXAMPLES, files[i]);
        assert_string_equal(cfg->apps[i].name, names[i]);
        assert_string_equal(sy_config_app_file(cfg, &cfg->apps[i]), want);
    }
    sy_config_free(cfg);
    sy_diags_dispose(&d);
}

/* A ConfigMap whose items put the tenant files in a subdirectory: apps.d -> ..data/apps.d,
 * ..data -> ..1; the swap renames a new ..data over, and the old version stays a while. */
static void test_watch_follows_a_configmap_subdirectory_swap(void **state)
{
    struct fixture *fx = *state;
    char root[128], path[256];
    snprintf(root, sizeof(root), "%s/cm", fx->dir);
    assert_int_equal(mkdir(root, 0700), 0);
    for (int v = 1; v <= 2; v++) {
        snprintf(path, sizeof(path), "%s/..%d", root, v);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof(path), "%s/..%d/apps.d", root, v);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    snprintf(path, sizeof(path), "%s/..data", root);
    assert_int_equal(symlink("..1", path), 0);
    snprintf(path, sizeof(path), "%s/apps.d", root);
    assert_int_equal(symlink("..data/apps.d", path), 0);
    struct sy_apps_watch *w;
    assert_int_equal(sy_apps_watch_new(&w), 0);
    sy_apps_watch_set(w, path);
    char tmp[256], data[256];
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", root);
    snprintf(data, sizeof(data), "%s/..data", root);
    assert_int_equal(symlink("..2", tmp), 0);
    assert_int_equal(rename(tmp, data), 0);
    assert_true(sy_apps_watch_read(w));
    /* Now the new version's directory is the one watched. */
    snprintf(path, sizeof(path), "%s/..2/apps.d", root);
    write_file(path, "a.yaml", "[]\n");
    assert_true(sy_apps_watch_read(w));
    snprintf(path, sizeof(path), "%s/..1/apps.d", root);
    write_file(path, "a.yaml", "[]\n");
    assert_false(sy_apps_watch_read(w));
    sy_apps_watch_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_that_count),
        cmocka_unit_test(test_limit_default),
        cmocka_unit_test(test_the_shipped_example_loads_both_tenants),
        cmocka_unit_test_setup_teardown(test_merges_files_in_name_order_after_the_routing_file,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_apps_may_be_only_in_the_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_routing_file_in_its_own_apps_dir_is_not_a_tenant,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_tenant_file_names_files_relative_to_itself, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_error_names_its_own_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_routing_file_error_comes_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_host_claimed_by_two_files_names_both, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_host_claimed_by_a_file_and_the_routing_file_names_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_app_name_in_two_files_names_both, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_more_files_than_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_a_fifo_without_waiting_for_a_writer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_refuses_a_tenant_file_larger_than_the_routing_file_may_be, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_refuses_a_missing_directory_an_empty_file_and_a_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_hash_covers_the_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_sees_apps_files_and_configmap_swaps_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_watch_follows_a_configmap_subdirectory_swap, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
