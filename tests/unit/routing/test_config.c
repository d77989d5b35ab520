/* SPDX-License-Identifier: MIT */
/* Unit tests for routing/config.c. A full fixture checks every field the loader fills; a table
 * of broken files checks that each mistake is reported once, at the right line and column, with
 * the right words, and that nothing else is reported alongside it; with each of libyaml's
 * allocations failing in turn (failalloc.h), a load is an error, never a crash or a leak.
 * Endpoint names resolve only through /etc/hosts (localhost), so the tests need no network. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "switchyard/config.h"

#include "diags.h"
#include "failalloc.h"

#ifndef SY_FIXTURES
#define SY_FIXTURES "tests/fixtures"
#endif
#define SY_CONF_DIR SY_FIXTURES "/../../conf"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char test_name[] = "test.yaml";

/* Five lines: two clusters, blue (index 0) and green (index 1); `apps:` goes on line 6. */
#define BASE                                                                                       \
    "listen:\n"                                                                                    \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "clusters:\n"                                                                                  \
    "  blue: {endpoints: [127.0.0.1:9001]}\n"                                                      \
    "  green: {endpoints: [127.0.0.1:9002]}\n"

/* Lines 6 to 9: one good app. */
#define WEB_APP                                                                                    \
    "apps:\n"                                                                                      \
    "  - name: web\n"                                                                              \
    "    hosts: [web.example.com]\n"                                                               \
    "    weights: {blue: 100}\n"

static struct sy_config *parse_ok(const char *yaml)
{
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse(test_name, yaml, strlen(yaml), &d, &cfg);
    if (rc != SY_OK || d.n != 0)
        print_diags(&d);
    assert_int_equal(rc, SY_OK);
    assert_int_equal(d.n, 0);
    assert_non_null(cfg);
    sy_diags_dispose(&d);
    return cfg;
}

static void assert_mark(struct sy_mark m, int line, int col)
{
    assert_int_equal(m.line, line);
    assert_int_equal(m.col, col);
}

static void assert_ipv4(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                        unsigned port)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    char buf[INET_ADDRSTRLEN];
    assert_int_equal(ss->ss_family, AF_INET);
    assert_int_equal(len, sizeof(*a));
    assert_non_null(inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(a->sin_port), port);
}

static void assert_ipv6(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                        unsigned port)
{
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(ss->ss_family, AF_INET6);
    assert_int_equal(len, sizeof(*a));
    assert_non_null(inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)));
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(a->sin6_port), port);
}

static void test_parses_every_field_of_a_full_config(void **state)
{
    const char *path = SY_FIXTURES "/config/full.yaml";
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(path, &d, &cfg);
    print_diags(&d);
    assert_int_equal(rc, SY_OK);
    assert_int_equal(d.n, 0);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->workers, 3);

    assert_int_equal(cfg->n_listens, 3);
    assert_string_equal(cfg->listens[0].address, "127.0.0.1:8080");
    assert_ipv4(&cfg->listens[0].addr, cfg->listens[0].addrlen, "127.0.0.1", 8080);
    assert_mark(cfg->listens[0].mark, 4, 14);
    assert_string_equal(cfg->listens[1].address, "[::1]:8443");
    assert_ipv6(&cfg->listens[1].addr, cfg->listens[1].addrlen, "::1", 8443);
    assert_mark(cfg->listens[1].mark, 5, 14);
    assert_string_equal(cfg->listens[2].address, ":9000");
    assert_ipv6(&cfg->listens[2].addr, cfg->listens[2].addrlen, "::", 9000);
    assert_mark(cfg->listens[2].mark, 6, 14);

    assert_int_equal(cfg->n_clusters, 3);
    const struct sy_cluster_spec *blue = &cfg->clusters[0], *green = &cfg->clusters[1],
                                 *gray = &cfg->clusters[2];
    assert_string_equal(blue->name, "blue");
    assert_mark(blue->mark, 8, 3);
    assert_int_equal(blue->n_endpoints, 2);
    assert_string_equal(blue->endpoints[0].address, "10.0.1.10:80");
    assert_ipv4(&blue->endpoints[0].addr, blue->endpoints[0].addrlen, "10.0.1.10", 80);
    assert_mark(blue->endpoints[0].mark, 9, 17);
    assert_string_equal(blue->endpoints[1].address, "10.0.1.11:8080");
    assert_ipv4(&blue->endpoints[1].addr, blue->endpoints[1].addrlen, "10.0.1.11", 8080);
    assert_mark(blue->endpoints[1].mark, 9, 31);
    assert_string_equal(green->name, "green");
    assert_mark(green->mark, 10, 3);
    assert_int_equal(green->n_endpoints, 1);
    assert_string_equal(green->endpoints[0].address, "[fd00::1]:81");
    assert_ipv6(&green->endpoints[0].addr, green->endpoints[0].addrlen, "fd00::1", 81);
    assert_mark(green->endpoints[0].mark, 12, 9);
    assert_string_equal(gray->name, "gray-2_x");
    assert_int_equal(gray->n_endpoints, 1);
    assert_ipv4(&gray->endpoints[0].addr, gray->endpoints[0].addrlen, "127.0.0.1", 7000);

    assert_int_equal(cfg->n_apps, 2);
    const struct sy_app_spec *chat = &cfg->apps[0];
    assert_string_equal(chat->name, "Chat.v2");
    assert_mark(chat->mark, 16, 5);
    assert_int_equal(chat->n_hosts, 2);
    assert_string_equal(chat->hosts[0], "chat.example.com");
    assert_string_equal(chat->hosts[1], "*.chat.example.com");
    assert_mark(chat->host_marks[0], 17, 13);
    assert_mark(chat->host_marks[1], 17, 31);
    assert_int_equal(chat->n_paths, 2);
    assert_string_equal(chat->paths[0], "/api/");
    assert_string_equal(chat->paths[1], "/ws");
    assert_mark(chat->path_marks[0], 18, 13);
    assert_mark(chat->path_marks[1], 18, 20);
    assert_int_equal(chat->stable, 1);
    /* Written green then blue; stored in cluster order. */
    assert_int_equal(chat->n_weights, 2);
    assert_int_equal(chat->weights[0].cluster, 0);
    assert_int_equal(chat->weights[0].weight, 70);
    assert_mark(chat->weights[0].mark, 20, 26);
    assert_int_equal(chat->weights[1].cluster, 1);
    assert_int_equal(chat->weights[1].weight, 30);
    assert_mark(chat->weights[1].mark, 20, 15);

    const struct sy_app_spec *fb = &cfg->apps[1];
    assert_string_equal(fb->name, "fallback");
    assert_int_equal(fb->n_hosts, 1);
    assert_string_equal(fb->hosts[0], "*");
    assert_int_equal(fb->n_paths, 1);
    assert_string_equal(fb->paths[0], "/");
    assert_mark(fb->path_marks[0], 21, 5);
    assert_int_equal(fb->n_weights, 2);
    assert_int_equal(fb->weights[0].cluster, 1);
    assert_int_equal(fb->weights[0].weight, 0);
    assert_int_equal(fb->weights[1].cluster, 2);
    assert_int_equal(fb->weights[1].weight, 1);
    /* No `stable:`: the first weighted cluster in cluster order (green), though its weight is 0. */
    assert_int_equal(fb->stable, 1);

    assert_int_equal(cfg->limits.max_request_line, 4096);
    assert_int_equal(cfg->limits.max_header_bytes, 16384);
    assert_int_equal(cfg->limits.max_headers, 50);
    assert_true(cfg->limits.max_body_bytes == 10737418240ULL);
    assert_int_equal(cfg->limits.max_connections, 2000);
    assert_int_equal(cfg->limits.buffer_bytes, 131072);
    assert_int_equal(cfg->limits.upstream_keepalive, 0);

    assert_int_equal(cfg->timeouts.client_header_ms, 5000);
    assert_int_equal(cfg->timeouts.client_idle_ms, 120000);
    assert_int_equal(cfg->timeouts.client_body_ms, 1500);
    assert_int_equal(cfg->timeouts.client_send_ms, 2500);
    assert_int_equal(cfg->timeouts.upstream_connect_ms, 1000);
    assert_int_equal(cfg->timeouts.upstream_response_ms, 3600000);
    assert_int_equal(cfg->timeouts.upstream_idle_ms, 45000);
    assert_int_equal(cfg->timeouts.drain_ms, 4294967295u);

    sy_config_free(cfg);
    sy_diags_dispose(&d);
}

static void test_parses_cluster_protocol_tls_and_drain_after(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok("listen:\n"
                                     "  - address: 127.0.0.1:8080\n"
                                     "clusters:\n"
                                     "  blue: {endpoints: [127.0.0.1:9001]}\n"
                                     "  green: {endpoints: [127.0.0.1:9002], protocol: h2c}\n"
                                     "  grpc:\n"
                                     "    endpoints: [127.0.0.1:9003]\n"
                                     "    protocol: h2\n"
                                     "  secure:\n"
                                     "    endpoints: [127.0.0.1:9004]\n"
                                     "    tls: {sni: api.example.com, verify: false}\n"
                                     "apps:\n"
                                     "  - name: web\n"
                                     "    hosts: [web.example.com]\n"
                                     "    weights: {blue: 100}\n"
                                     "    drain_after: 30s\n");
    assert_int_equal(cfg->clusters[0].protocol, SY_PROTO_HTTP1);
    assert_false(cfg->clusters[0].tls.on);
    assert_int_equal(cfg->clusters[1].protocol, SY_PROTO_H2C);
    assert_false(cfg->clusters[1].tls.on);
    /* h2 is TLS even without a block, verified against the system store. */
    assert_int_equal(cfg->clusters[2].protocol, SY_PROTO_H2);
    assert_true(cfg->clusters[2].tls.on);
    assert_true(cfg->clusters[2].tls.verify);
    assert_null(cfg->clusters[2].tls.ca);
    assert_int_equal(cfg->clusters[3].protocol, SY_PROTO_HTTP1);
    assert_true(cfg->clusters[3].tls.on);
    assert_false(cfg->clusters[3].tls.verify);
    assert_string_equal(cfg->clusters[3].tls.sni, "api.example.com");
    assert_string_equal(sy_upstream_proto_name(SY_PROTO_H2C), "h2c");
    assert_int_equal(cfg->apps[0].drain_after_ms, 30000);
    sy_config_free(cfg);
}

static void test_parses_cluster_max_connections_and_queue(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok("listen:\n"
                                     "  - address: 127.0.0.1:8080\n"
                                     "clusters:\n"
                                     "  blue: {endpoints: [127.0.0.1:9001]}\n"
                                     "  green:\n"
                                     "    endpoints: [127.0.0.1:9002]\n"
                                     "    max_connections: 64\n"
                                     "  grpc:\n"
                                     "    endpoints: [127.0.0.1:9003]\n"
                                     "    protocol: h2c\n"
                                     "    max_connections: 2\n"
                                     "    queue: {max: 0, timeout: 250ms}\n"
                                     "limits:\n"
                                     "  max_upstream_connections: 500\n"
                                     "apps: []\n");
    /* No cap by default; with one, the queue's defaults apply. */
    assert_int_equal(cfg->clusters[0].max_connections, 0);
    assert_int_equal(cfg->clusters[0].queue_max, SY_QUEUE_MAX_DEFAULT);
    assert_int_equal(cfg->clusters[1].max_connections, 64);
    assert_int_equal(cfg->clusters[1].queue_max, 1000);
    assert_int_equal(cfg->clusters[1].queue_timeout_ms, 5000);
    assert_int_equal(cfg->clusters[2].max_connections, 2);
    assert_int_equal(cfg->clusters[2].queue_max, 0);
    assert_int_equal(cfg->clusters[2].queue_timeout_ms, 250);
    assert_int_equal(cfg->limits.max_upstream_connections, 500);
    sy_config_free(cfg);
}

/* A maintenance page of `len` bytes in a new temporary file: its path (free() it). */
static char *page_file(size_t len)
{
    char *path = strdup("/tmp/sy-test-page-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd != -1);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
    return path;
}

static void test_reads_the_maintenance_page_within_its_limit(void **state)
{
    (void)state;
    char *small = page_file(100), *big = page_file(65537);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             BASE "limits: {maintenance_page_bytes: 100}\n"
                  "apps:\n"
                  "  - name: web\n"
                  "    hosts: [web.example.com]\n"
                  "    weights: {blue: 100}\n"
                  "    maintenance_page: %s\n"
                  "    maintenance_retry_after: 5m\n"
                  "  - name: api\n"
                  "    hosts: [api.example.com]\n"
                  "    weights: {blue: 100}\n",
             small);
    struct sy_config *cfg = parse_ok(yaml);
    assert_int_equal(cfg->limits.maintenance_page_bytes, 100);
    assert_int_equal(cfg->apps[0].maintenance_page_len, 100);
    assert_memory_equal(cfg->apps[0].maintenance_page, "xxxx", 4);
    assert_int_equal(cfg->apps[0].maintenance_retry_after, 300);
    /* Without the keys: no page, and the default Retry-After. */
    assert_null(cfg->apps[1].maintenance_page);
    assert_int_equal(cfg->apps[1].maintenance_retry_after, SY_MAINT_RETRY_AFTER_DEFAULT);
    assert_int_equal(SY_MAINT_RETRY_AFTER_DEFAULT, 120);
    sy_config_free(cfg);

    /* One byte over the default limit (64 KiB) is an error at the key's value. */
    snprintf(yaml, sizeof(yaml),
             BASE "apps:\n"
                  "  - name: web\n"
                  "    hosts: [web.example.com]\n"
                  "    weights: {blue: 100}\n"
                  "    maintenance_page: %s\n",
             big);
    struct sy_diags d;
    sy_diags_init(&d);
    cfg = NULL;
    assert_int_equal(sy_config_parse(test_name, yaml, strlen(yaml), &d, &cfg), SY_ERR_INVALID);
    assert_null(cfg);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 10);
    assert_int_equal(d.v[0].col, 23);
    assert_non_null(strstr(d.v[0].msg, "is 65537 bytes, more than limits.maintenance_page_bytes "
                                       "(65536)"));
    sy_diags_dispose(&d);
    unlink(small);
    unlink(big);
    free(small);
    free(big);
}

static void test_defaults_match_the_header(void **state)
{
    struct sy_limits lim;
    struct sy_timeouts to;
    /* Every field is set (the defaults are a column of the key tables). */
    memset(&lim, 0xa5, sizeof(lim));
    memset(&to, 0xa5, sizeof(to));
    sy_config_defaults(&lim, &to);
    assert_int_equal(lim.maintenance_page_bytes, 65536);
    assert_int_equal(lim.maintenance_page_bytes, SY_MAINT_PAGE_BYTES_DEFAULT);
    assert_int_equal(lim.apps_dir_files, 10000);
    assert_int_equal(lim.apps_dir_files, SY_APPS_DIR_FILES_DEFAULT);
    assert_int_equal(lim.max_request_line, 8192);
    assert_int_equal(lim.max_header_bytes, 32768);
    assert_int_equal(lim.max_headers, 100);
    assert_true(lim.max_body_bytes == 0);
    assert_int_equal(lim.max_connections, 10000);
    assert_int_equal(lim.max_upstream_connections, 10000);
    assert_int_equal(lim.buffer_bytes, 65536);
    assert_true(lim.upstream_keepalive == SY_KEEPALIVE_AUTO);
    assert_int_equal(lim.reserved_fds, 32);
    assert_int_equal(lim.log_client_lines, 100);
    assert_int_equal(to.client_header_ms, 10000);
    assert_int_equal(to.client_idle_ms, 60000);
    assert_int_equal(to.client_body_ms, 60000);
    assert_int_equal(to.client_send_ms, 60000);
    assert_int_equal(to.upstream_connect_ms, 5000);
    assert_int_equal(to.upstream_response_ms, 60000);
    assert_int_equal(to.upstream_idle_ms, 30000);
    assert_int_equal(to.drain_ms, 10000);
    assert_int_equal(to.linger_ms, 2000);
    assert_int_equal(to.worker_stale_ms, 5000);
    assert_int_equal(lim.h2_max_streams, 100);
    assert_int_equal(lim.h2_reset_rate, 50);
    assert_int_equal(lim.h2_max_continuations, 8);
    assert_int_equal(lim.h2_early_resets, 100);
    assert_int_equal(to.tunnel_idle_ms, 3600000);
    assert_int_equal(to.tls_ticket_rotate_ms, 12 * 3600 * 1000);
}

static void test_parses_admin_http_and_its_allow_list(void **state)
{
    struct sy_config *cfg = parse_ok(BASE WEB_APP "admin:\n"
                                                  "  http: 10.1.2.3:9901\n"
                                                  "  http_allow: [10.0.0.0/8, \"::1\"]\n"
                                                  "timeouts: {worker_stale: 2s}\n");
    assert_string_equal(cfg->admin.http, "10.1.2.3:9901");
    assert_ipv4(&cfg->admin.http_addr, cfg->admin.http_addrlen, "10.1.2.3", 9901);
    assert_true(cfg->admin.has_http_allow);
    assert_int_equal(cfg->admin.n_http_allow, 2);
    assert_int_equal(cfg->admin.http_allow[0].bits, 8);
    assert_int_equal(cfg->admin.http_allow[1].family, AF_INET6);
    assert_int_equal(cfg->timeouts.worker_stale_ms, 2000);
    sy_config_free(cfg);
    /* Loopback needs no list; absent, there is no listener and worker_stale is 5 s. */
    cfg = parse_ok(BASE WEB_APP "admin: {http: 127.0.0.1:9901}\n");
    assert_false(cfg->admin.has_http_allow);
    sy_config_free(cfg);
    cfg = parse_ok(BASE WEB_APP "admin: {http: \"[::1]:9901\"}\n");
    sy_config_free(cfg);
    cfg = parse_ok(BASE WEB_APP);
    assert_null(cfg->admin.http);
    assert_int_equal(cfg->timeouts.worker_stale_ms, 5000);
    sy_config_free(cfg);
}

static void test_applies_defaults_to_absent_keys(void **state)
{
    struct sy_config *cfg = parse_ok(BASE WEB_APP);
    struct sy_limits lim;
    struct sy_timeouts to;
    sy_config_defaults(&lim, &to);
    assert_string_equal(cfg->path, test_name);
    assert_int_equal(cfg->workers, 0);
    assert_memory_equal(&cfg->limits, &lim, sizeof(lim));
    assert_memory_equal(&cfg->timeouts, &to, sizeof(to));
    assert_int_equal(cfg->n_apps, 1);
    assert_int_equal(cfg->apps[0].n_paths, 1);
    assert_string_equal(cfg->apps[0].paths[0], "/");
    assert_int_equal(cfg->apps[0].stable, 0);
    sy_config_free(cfg);
}

static void test_stable_defaults_to_first_weighted_cluster_in_cluster_order(void **state)
{
    struct sy_config *cfg = parse_ok(BASE "apps:\n"
                                          "  - name: web\n"
                                          "    hosts: [web.example.com]\n"
                                          "    weights: {green: 10, blue: 90}\n"
                                          "  - name: api\n"
                                          "    hosts: [api.example.com]\n"
                                          "    weights: {green: 100}\n");
    assert_int_equal(cfg->apps[0].stable, 0);
    assert_int_equal(cfg->apps[0].weights[0].cluster, 0);
    assert_int_equal(cfg->apps[0].weights[0].weight, 90);
    assert_int_equal(cfg->apps[1].stable, 1);
    sy_config_free(cfg);
}

static void test_accepts_and_lower_cases_ipv6_literal_hosts(void **state)
{
    struct sy_config *cfg = parse_ok(BASE "apps:\n"
                                          "  - name: web\n"
                                          "    hosts: ['[::1]', '[FD00::A]', 127.0.0.1]\n"
                                          "    weights: {blue: 1}\n");
    assert_int_equal(cfg->apps[0].n_hosts, 3);
    assert_string_equal(cfg->apps[0].hosts[0], "[::1]");
    assert_string_equal(cfg->apps[0].hosts[1], "[fd00::a]");
    assert_string_equal(cfg->apps[0].hosts[2], "127.0.0.1");
    sy_config_free(cfg);
}

static void test_accepts_an_empty_app_list(void **state)
{
    struct sy_config *cfg = parse_ok(BASE "apps: []\n");
    assert_int_equal(cfg->n_apps, 0);
    assert_int_equal(cfg->n_clusters, 2);
    sy_config_free(cfg);
}

static void test_allows_one_host_in_two_apps_on_different_paths(void **state)
{
    struct sy_config *cfg = parse_ok(BASE "apps:\n"
                                          "  - name: web\n"
                                          "    hosts: [chat.example.com, '*']\n"
                                          "    weights: {blue: 1}\n"
                                          "  - name: api\n"
                                          "    hosts: [chat.example.com, '*.example.com']\n"
                                          "    paths: [/api]\n"
                                          "    weights: {blue: 1}\n");
    assert_int_equal(cfg->n_apps, 2);
    sy_config_free(cfg);
}

static void test_parses_every_duration_unit(void **state)
{
    static const struct {
        const char *text;
        unsigned ms;
    } cases[] = {
        {"10s", 10000},
        {"500ms", 500},
        {"2m", 120000},
        {"1h", 3600000},
        {"7", 7000},
        {"1ms", 1},
        {"'30s'", 30000},
        {"4294967s", 4294967000u},
        {"4294967295ms", 4294967295u},
        {"0010s", 10000},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml), BASE "apps: []\ntimeouts: {drain: %s}\n", cases[i].text);
        struct sy_config *cfg = parse_ok(yaml);
        if (cfg->timeouts.drain_ms != cases[i].ms)
            print_message("  duration %s\n", cases[i].text);
        assert_int_equal(cfg->timeouts.drain_ms, cases[i].ms);
        sy_config_free(cfg);
    }
}

static void test_resolves_endpoint_names(void **state)
{
    struct sy_config *cfg = parse_ok("listen: [{address: ':8080'}]\n"
                                     "clusters: {blue: {endpoints: [localhost:8081]}}\n"
                                     "apps: []\n");
    const struct sy_endpoint_spec *e = &cfg->clusters[0].endpoints[0];
    assert_string_equal(e->address, "localhost:8081");
    if (e->addr.ss_family == AF_INET) {
        assert_ipv4(&e->addr, e->addrlen, "127.0.0.1", 8081);
    } else {
        assert_ipv6(&e->addr, e->addrlen, "::1", 8081);
    }
    sy_config_free(cfg);
}

static void test_rejects_endpoint_names_when_resolution_is_off(void **state)
{
    static const char yaml[] = "listen: [{address: ':8080'}]\n"
                               "clusters: {blue: {endpoints: [localhost:8081]}}\n"
                               "apps: []\n";
    sy_config_set_resolve(false);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse(test_name, yaml, strlen(yaml), &d, &cfg);
    sy_config_set_resolve(true);
    assert_int_equal(rc, SY_ERR_INVALID);
    assert_null(cfg);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 2);
    assert_int_equal(d.v[0].col, 31);
    assert_non_null(strstr(d.v[0].msg, "bad endpoint 'localhost:8081': host must be a numeric"));
    sy_diags_dispose(&d);
}

static void test_upstream_keepalive_takes_auto_or_a_number(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE "apps: []\nlimits: {upstream_keepalive: auto}\n");
    assert_true(cfg->limits.upstream_keepalive == SY_KEEPALIVE_AUTO);
    sy_config_free(cfg);
    cfg = parse_ok(BASE "apps: []\nlimits: {upstream_keepalive: 7}\n");
    assert_int_equal(cfg->limits.upstream_keepalive, 7);
    sy_config_free(cfg);
}

static void test_load_reports_an_unreadable_file_without_position(void **state)
{
    const char *path = SY_FIXTURES "/config/does-not-exist.yaml";
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = (struct sy_config *)&d; /* must stay untouched */
    assert_int_equal(sy_config_load(path, &d, &cfg), SY_ERR_SYS);
    assert_ptr_equal(cfg, &d);
    assert_int_equal(d.n, 1);
    assert_ptr_equal(d.v[0].file, path);
    assert_int_equal(d.v[0].line, 0);
    assert_string_equal(d.v[0].msg, "cannot read: No such file or directory");
    sy_diags_dispose(&d);
}

static void test_load_reports_a_directory_as_unreadable(void **state)
{
    const char *path = SY_FIXTURES "/config";
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    assert_int_equal(sy_config_load(path, &d, &cfg), SY_ERR_SYS);
    assert_null(cfg);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 0);
    assert_string_equal(d.v[0].msg, "cannot read: Is a directory");
    sy_diags_dispose(&d);
}

static void test_failure_leaves_out_untouched_and_keeps_earlier_diags(void **state)
{
    static const char yaml[] = "workers: x\n" BASE "apps: []\n";
    struct sy_diags d;
    sy_diags_init(&d);
    sy_diags_add(&d, "other", 99, 1, "earlier");
    struct sy_config *cfg = (struct sy_config *)&d;
    assert_int_equal(sy_config_parse(test_name, yaml, strlen(yaml), &d, &cfg), SY_ERR_INVALID);
    assert_ptr_equal(cfg, &d);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.v[0].msg, "earlier");
    assert_ptr_equal(d.v[1].file, test_name);
    assert_int_equal(d.v[1].line, 1);
    assert_int_equal(d.v[1].col, 10);
    sy_diags_dispose(&d);
}

static void test_shipped_configs_load(void **state)
{
    static const char *const files[] = {
        SY_CONF_DIR "/switchyard.yaml",
        SY_CONF_DIR "/examples/cutover.yaml",
    };
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        struct sy_diags d;
        sy_diags_init(&d);
        struct sy_config *cfg = NULL;
        int rc = sy_config_load(files[i], &d, &cfg);
        print_diags(&d);
        assert_int_equal(rc, SY_OK);
        assert_int_equal(d.n, 0);
        if (i == 0) {
            /* The demo: 127.0.0.1:8080 in front of blue :9001 and green :9002, 90/10. */
            assert_int_equal(cfg->n_listens, 1);
            assert_ipv4(&cfg->listens[0].addr, cfg->listens[0].addrlen, "127.0.0.1", 8080);
            assert_int_equal(cfg->n_clusters, 2);
            assert_string_equal(cfg->clusters[0].name, "blue");
            assert_ipv4(&cfg->clusters[0].endpoints[0].addr, cfg->clusters[0].endpoints[0].addrlen,
                        "127.0.0.1", 9001);
            assert_string_equal(cfg->clusters[1].name, "green");
            assert_ipv4(&cfg->clusters[1].endpoints[0].addr, cfg->clusters[1].endpoints[0].addrlen,
                        "127.0.0.1", 9002);
            assert_int_equal(cfg->n_apps, 1);
            assert_string_equal(cfg->apps[0].name, "demo");
            assert_string_equal(cfg->apps[0].hosts[0], "*");
            assert_string_equal(cfg->apps[0].paths[0], "/");
            assert_int_equal(cfg->apps[0].stable, 0);
            assert_int_equal(cfg->apps[0].weights[0].weight, 90);
            assert_int_equal(cfg->apps[0].weights[1].weight, 10);
        }
        sy_config_free(cfg);
        sy_diags_dispose(&d);
    }
}

static void test_parses_sticky_and_force(void **state)
{
    struct sy_config *cfg = parse_ok(BASE "apps:\n"
                                          "  - name: a\n"
                                          "    hosts: [a.example.com]\n"
                                          "    weights: {blue: 90, green: 10}\n"
                                          "    sticky: {cookie: Sy_A, max_age: 12h}\n"
                                          "    force: {header: X-Switchyard-Cluster, cookie: "
                                          "Sy_Force, secret: 0123456789abcdefXYZ}\n"
                                          "  - name: b\n"
                                          "    hosts: [b.example.com]\n"
                                          "    weights: {blue: 1}\n"
                                          "    sticky: {header: X-User-Id}\n"
                                          "    force: {cookie: sy_force}\n"
                                          "  - name: c\n"
                                          "    hosts: [c.example.com]\n"
                                          "    weights: {blue: 1}\n"
                                          "    sticky: {source_ip: true}\n"
                                          "  - name: d\n"
                                          "    hosts: [d.example.com]\n"
                                          "    weights: {blue: 1}\n"
                                          "    sticky: {cookie: sy}\n"
                                          "  - name: e\n"
                                          "    hosts: [e.example.com]\n"
                                          "    weights: {blue: 1}\n");
    assert_int_equal(cfg->n_apps, 5);
    const struct sy_app_spec *a = &cfg->apps[0], *b = &cfg->apps[1], *c = &cfg->apps[2],
                             *d = &cfg->apps[3], *e = &cfg->apps[4];
    assert_int_equal(a->sticky.by, SY_STICKY_COOKIE);
    assert_string_equal(a->sticky.name, "Sy_A"); /* cookie names keep their case */
    assert_int_equal(a->sticky.max_age_s, 12 * 3600);
    assert_mark(a->sticky.mark, 10, 13);
    assert_string_equal(a->force.header, "x-switchyard-cluster"); /* header names lower-case */
    assert_string_equal(a->force.cookie, "Sy_Force");
    assert_string_equal(a->force.secret, "0123456789abcdefXYZ");
    assert_int_equal(a->force.secret_len, 19);
    assert_mark(a->force.mark, 11, 12);

    assert_int_equal(b->sticky.by, SY_STICKY_HEADER);
    assert_string_equal(b->sticky.name, "x-user-id");
    assert_null(b->force.header);
    assert_string_equal(b->force.cookie, "sy_force");
    assert_null(b->force.secret);

    assert_int_equal(c->sticky.by, SY_STICKY_SOURCE_IP);
    assert_null(c->sticky.name);

    assert_int_equal(d->sticky.by, SY_STICKY_COOKIE);
    assert_int_equal(d->sticky.max_age_s, SY_STICKY_MAX_AGE_DEFAULT);
    assert_int_equal(SY_STICKY_MAX_AGE_DEFAULT, 30 * 86400);

    assert_int_equal(e->sticky.by, SY_STICKY_NONE);
    assert_null(e->sticky.name);
    assert_null(e->force.header);
    assert_null(e->force.cookie);
    assert_null(e->force.secret);
    sy_config_free(cfg);
}

static void test_parses_every_max_age_unit(void **state)
{
    static const struct {
        const char *text;
        unsigned s;
    } cases[] = {
        {"90", 90},
        {"90s", 90},
        {"2m", 120},
        {"3h", 10800},
        {"1d", 86400},
        {"400d", 400 * 86400},
        {"34560000", 34560000},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml), BASE WEB_APP "    sticky: {cookie: sy, max_age: %s}\n",
                 cases[i].text);
        struct sy_config *cfg = parse_ok(yaml);
        assert_int_equal(cfg->apps[0].sticky.max_age_s, cases[i].s);
        sy_config_free(cfg);
    }
}

static void test_never_quotes_the_force_secret(void **state)
{
    static const char yaml[] = BASE WEB_APP "    force: {header: x-sy, secret: hunter2-hunter}\n";
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    assert_int_equal(sy_config_parse(test_name, yaml, strlen(yaml), &d, &cfg), SY_ERR_INVALID);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.v[0].msg, "at least 16 bytes, got 14"));
    assert_null(strstr(d.v[0].msg, "hunter"));
    sy_diags_dispose(&d);
}

/* sy_parse_hostport on its own. */

struct hostport_case {
    const char *text;
    bool resolve;
    int family; /* 0 = must fail */
    const char *ip;
    unsigned port;
    const char *why;
};

static const struct hostport_case hostport_cases[] = {
    {"127.0.0.1:80", false, AF_INET, "127.0.0.1", 80, NULL},
    {"10.1.2.3:65535", false, AF_INET, "10.1.2.3", 65535, NULL},
    {"[::1]:8443", false, AF_INET6, "::1", 8443, NULL},
    {"[fd00::1:2]:1", false, AF_INET6, "fd00::1:2", 1, NULL},
    {":8080", false, AF_INET6, "::", 8080, NULL},
    {"", false, 0, NULL, 0, "empty address"},
    {"1.2.3.4", false, 0, NULL, 0, "missing ':port'"},
    {"1.2.3.4:", false, 0, NULL, 0, "port must be a number 1..65535"},
    {"1.2.3.4:0", false, 0, NULL, 0, "port must be a number 1..65535"},
    {"1.2.3.4:65536", false, 0, NULL, 0, "port must be a number 1..65535"},
    {"1.2.3.4:8o", false, 0, NULL, 0, "port must be a number 1..65535"},
    {"1.2.3.4:-1", false, 0, NULL, 0, "port must be a number 1..65535"},
    {"1.2.3:80", true, 0, NULL, 0, "bad IPv4 address"},
    {"1.2.3.256:80", true, 0, NULL, 0, "bad IPv4 address"},
    {"::1:80", false, 0, NULL, 0, "must be written in brackets"},
    {"[::1]80", false, 0, NULL, 0, "missing ':port'"},
    {"[::1:80", false, 0, NULL, 0, "missing ']'"},
    {"[]:80", false, 0, NULL, 0, "bad IPv6 address"},
    {"[example.com]:80", true, 0, NULL, 0, "bad IPv6 address"},
    {"example.com:80", false, 0, NULL, 0, "host must be a numeric"},
    {"bad_host!:80", true, 0, NULL, 0, "bad host name"},
    {"localhost:80", true, -1, NULL, 80, NULL}, /* either family */
};

static void test_parses_proxy_protocol_and_trusted_proxies(void **state)
{
    struct sy_config *cfg = parse_ok("listen:\n"
                                     "  - address: 127.0.0.1:8080\n"
                                     "    proxy_protocol: v2\n"
                                     "    trusted_proxies: ['10.1.0.0/16']\n"
                                     "  - address: 127.0.0.1:8081\n"
                                     "    proxy_protocol: any\n"
                                     "  - address: 127.0.0.1:8082\n"
                                     "  - address: 127.0.0.1:8083\n"
                                     "    proxy_protocol: v1\n"
                                     "    trusted_proxies: []\n"
                                     "clusters: {blue: {endpoints: [127.0.0.1:9001]},\n"
                                     "           pp: {endpoints: [127.0.0.1:9002],\n"
                                     "                proxy_protocol: v2}}\n"
                                     "apps: []\n"
                                     "trusted_proxies: [127.0.0.1, '2001:db8::/32', 0.0.0.0/0]\n");
    assert_true(cfg->clusters[1].send_proxy_v2);
    assert_int_equal(cfg->listens[0].proxy_protocol, SY_PP_V2);
    assert_false(cfg->clusters[0].send_proxy_v2);
    assert_int_equal(cfg->listens[1].proxy_protocol, SY_PP_ANY);
    assert_int_equal(cfg->listens[2].proxy_protocol, SY_PP_OFF);
    assert_int_equal(cfg->listens[3].proxy_protocol, SY_PP_V1);
    assert_int_equal(cfg->n_trusted, 3);
    assert_int_equal(cfg->trusted[0].bits, 32);
    assert_int_equal(cfg->trusted[1].bits, 32);
    assert_int_equal(cfg->trusted[2].bits, 0);
    size_t n;
    const struct sy_cidr *t = sy_config_trusted(cfg, &cfg->listens[0], &n);
    assert_int_equal(n, 1);
    struct sockaddr_in in = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.1.200.3", &in.sin_addr);
    assert_true(sy_cidr_match(t, n, (struct sockaddr *)&in));
    inet_pton(AF_INET, "10.2.0.1", &in.sin_addr);
    assert_false(sy_cidr_match(t, n, (struct sockaddr *)&in));
    /* A listener with an empty list of its own trusts nobody; one without, the top level. */
    t = sy_config_trusted(cfg, &cfg->listens[3], &n);
    assert_int_equal(n, 0);
    assert_false(sy_cidr_match(t, n, (struct sockaddr *)&in));
    t = sy_config_trusted(cfg, &cfg->listens[1], &n);
    assert_int_equal(n, 3);
    assert_true(sy_cidr_match(t, n, (struct sockaddr *)&in)); /* 0.0.0.0/0 */
    /* IPv4-mapped IPv6 (a dual-stack listener) matches IPv4 blocks; IPv6 its own. */
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:10.1.0.9", &in6.sin6_addr);
    assert_true(sy_cidr_match(cfg->listens[0].trusted, 1, (struct sockaddr *)&in6));
    inet_pton(AF_INET6, "2001:db8:ffff::1", &in6.sin6_addr);
    assert_true(sy_cidr_match(&cfg->trusted[1], 1, (struct sockaddr *)&in6));
    inet_pton(AF_INET6, "2001:db9::1", &in6.sin6_addr);
    assert_false(sy_cidr_match(cfg->trusted, 2, (struct sockaddr *)&in6));
    assert_ptr_equal(sy_config_listen(cfg, &cfg->listens[2].addr, cfg->listens[2].addrlen),
                     &cfg->listens[2]);
    sy_config_free(cfg);
}

static void test_parse_hostport_accepts_and_rejects_as_documented(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(hostport_cases); i++) {
        const struct hostport_case *tc = &hostport_cases[i];
        struct sockaddr_storage ss;
        socklen_t len = 0;
        const char *why = NULL;
        int rc = sy_parse_hostport(tc->text, tc->resolve, &ss, &len, &why);
        if ((rc == SY_OK) != (tc->family != 0) || (rc != SY_OK && !strstr(why, tc->why)))
            print_message("  hostport '%s': rc %d, %s\n", tc->text, rc, why ? why : "-");
        if (tc->family == 0) {
            assert_int_equal(rc, SY_ERR_INVALID);
            assert_non_null(why);
            assert_non_null(strstr(why, tc->why));
        } else if (tc->family == AF_INET) {
            assert_int_equal(rc, SY_OK);
            assert_ipv4(&ss, len, tc->ip, tc->port);
        } else if (tc->family == AF_INET6) {
            assert_int_equal(rc, SY_OK);
            assert_ipv6(&ss, len, tc->ip, tc->port);
        } else {
            assert_int_equal(rc, SY_OK);
            assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
        }
    }
}

/*
 * The error table: each file holds one mistake (or, where said, several) and the loader must
 * report exactly these diagnostics, in this order, and nothing else.
 */

struct want {
    int line, col;
    const char *msg; /* a substring of the message */
};

struct error_case {
    const char *name;
    const char *yaml;
    struct want want[6]; /* ends at the first NULL msg */
};

static const struct error_case error_cases[] = {
    {"test_rejects_unknown_top_level_key",
     BASE "apps: []\n"
          "admins: {socket: /run/x.sock}\n",
     {{7, 1, "unknown key 'admins' at top level"}}},
    {"test_rejects_unknown_key_in_app",
     BASE WEB_APP "    stickiness: {cookie: sy}\n",
     {{10, 5, "unknown key 'stickiness' in app"}}},
    {"test_rejects_sticky_that_is_not_a_mapping",
     BASE WEB_APP "    sticky: sy_web\n",
     {{10, 13, "sticky must be a mapping, got sy_web"}}},
    {"test_rejects_sticky_without_a_key_source",
     BASE WEB_APP "    sticky: {max_age: 1d}\n",
     {{10, 13, "sticky needs one of 'cookie', 'header' or 'source_ip'"}}},
    {"test_rejects_sticky_with_two_key_sources",
     BASE WEB_APP "    sticky: {cookie: sy, header: x-user}\n",
     {{10, 26, "sticky takes only one of 'cookie', 'header' and 'source_ip'"}}},
    {"test_rejects_sticky_cookie_name_that_is_not_a_token",
     BASE WEB_APP "    sticky: {cookie: \"sy=web\"}\n",
     {{10, 22,
       "bad cookie name 'sy=web': use letters, digits and !#$%&'*+-.^_`|~ (an RFC 9110 "
       "token), at most 64 characters"}}},
    {"test_rejects_sticky_cookie_name_with_a_space",
     BASE WEB_APP "    sticky: {cookie: 'sy web'}\n",
     {{10, 22, "bad cookie name 'sy web'"}}},
    {"test_rejects_sticky_cookie_name_longer_than_64",
     BASE WEB_APP "    sticky: {cookie: "
                  "a123456789b123456789c123456789d123456789e123456789f123456789abcde}\n",
     {{10, 22,
       "bad cookie name 'a123456789b123456789c123456789d123456789e123456789f123456789abcde'"}}},
    {"test_rejects_empty_sticky_cookie_name",
     BASE WEB_APP "    sticky: {cookie: ''}\n",
     {{10, 22, "cookie name must not be empty"}}},
    {"test_rejects_sticky_header_name_that_is_not_a_token",
     BASE WEB_APP "    sticky: {header: 'x-user:'}\n",
     {{10, 22, "bad header name 'x-user:'"}}},
    {"test_rejects_source_ip_that_is_not_true",
     BASE WEB_APP "    sticky: {source_ip: yes}\n",
     {{10, 25, "source_ip must be true (leave sticky out for no key), got yes"}}},
    {"test_rejects_quoted_source_ip",
     BASE WEB_APP "    sticky: {source_ip: 'true'}\n",
     {{10, 25, "source_ip must be true (leave sticky out for no key), got \"true\""}}},
    {"test_rejects_max_age_on_a_sticky_header",
     BASE WEB_APP "    sticky: {header: x-user, max_age: 1d}\n",
     {{10, 30, "max_age applies only to a sticky cookie"}}},
    {"test_rejects_bad_max_age",
     BASE WEB_APP "    sticky: {cookie: sy, max_age: 10 days}\n",
     {{10, 35, "max_age must be a duration such as 3600s, 90m, 12h or 30d, got 10 days"}}},
    {"test_rejects_max_age_in_milliseconds",
     BASE WEB_APP "    sticky: {cookie: sy, max_age: 500ms}\n",
     {{10, 35, "max_age must be a duration such as 3600s, 90m, 12h or 30d, got 500ms"}}},
    {"test_rejects_zero_max_age",
     BASE WEB_APP "    sticky: {cookie: sy, max_age: 0s}\n",
     {{10, 35, "max_age must be greater than 0"}}},
    {"test_rejects_max_age_beyond_400_days",
     BASE WEB_APP "    sticky: {cookie: sy, max_age: 401d}\n",
     {{10, 35, "max_age must be at most 400d, got 401d"}}},
    {"test_rejects_huge_max_age_without_overflow",
     BASE WEB_APP "    sticky: {cookie: sy, max_age: 99999999999999999999999d}\n",
     {{10, 35, "max_age must be at most 400d"}}},
    {"test_rejects_unknown_key_in_sticky",
     BASE WEB_APP "    sticky: {cookie: sy, path: /}\n",
     {{10, 26, "unknown key 'path' in sticky"}}},
    {"test_rejects_force_that_is_not_a_mapping",
     BASE WEB_APP "    force: x-switchyard-cluster\n",
     {{10, 12, "force must be a mapping, got x-switchyard-cluster"}}},
    {"test_rejects_force_without_header_or_cookie",
     BASE WEB_APP "    force: {secret: 0123456789abcdef}\n",
     {{10, 12, "force needs 'header' or 'cookie' (or both)"}}},
    {"test_rejects_force_secret_shorter_than_16_bytes",
     BASE WEB_APP "    force: {header: x-sy, secret: 0123456789abcde}\n",
     {{10, 35, "secret must be at least 16 bytes, got 15"}}},
    {"test_rejects_force_secret_that_is_not_a_string",
     BASE WEB_APP "    force: {header: x-sy, secret: [a]}\n",
     {{10, 35, "secret must be a string, got a list"}}},
    {"test_rejects_force_header_name_that_is_not_a_token",
     BASE WEB_APP "    force: {header: 'x sy'}\n",
     {{10, 21, "bad header name 'x sy'"}}},
    {"test_rejects_force_cookie_name_that_is_not_a_token",
     BASE WEB_APP "    force: {cookie: 'sy;force'}\n",
     {{10, 21, "bad cookie name 'sy;force'"}}},
    {"test_rejects_unknown_key_in_force",
     BASE WEB_APP "    force: {header: x-sy, query: cluster}\n",
     {{10, 27, "unknown key 'query' in force"}}},
    {"test_rejects_force_cookie_that_is_the_sticky_cookie",
     BASE WEB_APP "    sticky: {cookie: sy}\n"
                  "    force: {cookie: sy}\n",
     {{11, 21, "force cookie 'sy' is also the sticky cookie"}}},
    {"test_rejects_force_header_that_is_the_sticky_header_in_any_case",
     BASE WEB_APP "    sticky: {header: X-User}\n"
                  "    force: {header: x-user}\n",
     {{11, 21, "force header 'x-user' is also the sticky header"}}},
    {"test_rejects_unknown_key_in_cluster",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001]\n"
     "    healthcheck: /healthz\n"
     "apps: []\n",
     {{6, 5, "unknown key 'healthcheck' in cluster"}}},
    {"test_rejects_bad_max_connections",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001]\n"
     "    max_connections: -1\n"
     "  green:\n"
     "    endpoints: [127.0.0.1:9002]\n"
     "    max_connections: \"8\"\n"
     "  red:\n"
     "    endpoints: [127.0.0.1:9003]\n"
     "    max_connections: 1000001\n"
     "apps: []\n",
     {{6, 22, "max_connections must be an integer 0..1000000 (0: no cap), got -1"},
      {9, 22, "max_connections must be an integer 0..1000000 (0: no cap), got \"8\""},
      {12, 22, "max_connections must be an integer 0..1000000 (0: no cap), got 1000001"}}},
    {"test_rejects_bad_cluster_queue",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001]\n"
     "    max_connections: 4\n"
     "    queue: {max: lots, timeout: soon, size: 3}\n"
     "  green:\n"
     "    endpoints: [127.0.0.1:9002]\n"
     "    max_connections: 4\n"
     "    queue: {timeout: 0s}\n"
     "  red:\n"
     "    endpoints: [127.0.0.1:9003]\n"
     "    max_connections: 4\n"
     "    queue: [1000, 5s]\n"
     "apps: []\n",
     {{7, 18, "max must be an integer 0..1000000 (0: no request waits), got lots"},
      {7, 33, "timeout must be a duration such as 5s, 500ms or 1m, got soon"},
      {7, 39, "unknown key 'size' in queue"},
      {11, 22, "timeout must be greater than 0"},
      {15, 12, "queue must be a mapping, got a list"}}},
    {"test_rejects_a_queue_without_max_connections",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001]\n"
     "    queue: {max: 10}\n"
     "  green:\n"
     "    endpoints: [127.0.0.1:9002]\n"
     "    max_connections: 0\n"
     "    queue: {timeout: 1s}\n"
     "apps: []\n",
     {{6, 12, "queue needs max_connections (above 0) in the same cluster"},
      {10, 12, "queue needs max_connections (above 0) in the same cluster"}}},
    {"test_rejects_bad_max_upstream_connections",
     BASE WEB_APP "limits:\n"
                  "  max_upstream_connections: 0\n",
     {{11, 29, "max_upstream_connections must be an integer 1..4294967295, got 0"}}},
    {"test_rejects_unknown_protocol",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001]\n"
     "    protocol: h3\n"
     "apps: []\n",
     {{6, 15, "protocol must be http1, h2c or h2, got h3"}}},
    {"test_rejects_tls_with_h2c",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001]\n"
     "    protocol: h2c\n"
     "    tls: {verify: false}\n"
     "apps: []\n",
     {{6, 15,
       "protocol h2c is cleartext HTTP/2 and cannot have a 'tls' block; use protocol h2 "
       "for HTTP/2 over TLS"}}},
    {"test_rejects_cluster_tls_problems",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001]\n"
     "    tls: {ca: /nonexistent/ca.pem, verify: maybe, sni: '*.x.com', cert: c.pem, mtls: 1}\n"
     "apps: []\n",
     {{6, 15, "cannot read CA bundle '/nonexistent/ca.pem': No such file or directory"},
      {6, 44, "verify must be true or false, got maybe"},
      {6, 56, "bad sni '*.x.com': a server name cannot have a wildcard"},
      {6, 73, "a client certificate needs both 'cert' and 'key' in tls"},
      {6, 80, "unknown key 'mtls' in tls"}}},
    {"test_rejects_split_weights_of_an_exclusive_app",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 90, green: 10}\n"
          "    mode: exclusive\n"
          "  - name: api\n"
          "    hosts: [api.example.com]\n"
          "    weights: {blue: 100, green: 100}\n"
          "    mode: exclusive\n"
          "  - name: db\n"
          "    hosts: [db.example.com]\n"
          "    weights: {blue: 100}\n"
          "    mode: singleton\n"
          "    force_while_exclusive: yes\n",
     {{9, 15, "an exclusive app's weights must be 100 on one cluster and 0 on the others, got 90"},
      {13, 14, "an exclusive app's weights must be 100 on one cluster and 0 on the others"},
      {18, 11, "mode must be weighted or exclusive, got singleton"},
      {19, 28, "force_while_exclusive must be true or false, got yes"}}},
    {"test_rejects_bad_exclusive_settings",
     BASE "apps: []\n"
          "exclusive:\n"
          "  hold: 0s\n"
          "  drain: soon\n"
          "  max_held: 0\n"
          "  ready: {url: 'ftp://x', expect: 42}\n"
          "  limit: 3\n",
     {{8, 9, "hold must be greater than 0"},
      {9, 10, "drain must be a duration such as 10s, 500ms, 2m or 1h, got soon"},
      {10, 13, "max_held must be an integer 1..1000000, got 0"},
      {11, 16, "bad ready.url \"ftp://x\": want http://HOST:PORT/PATH"},
      {11, 35, "expect must be an HTTP status 100..599, got 42"},
      {12, 3, "unknown key 'limit' in exclusive"}}},
    {"test_rejects_bad_shutdown_settings",
     BASE "apps: []\n"
          "shutdown:\n"
          "  delay: soon\n"
          "  grace: 0s\n"
          "  linger: 3s\n",
     {{8, 10, "delay must be a duration such as 10s, 500ms, 2m or 1h, got soon"},
      {9, 10, "grace must be greater than 0"},
      {10, 3, "unknown key 'linger' in shutdown"}}},
    {"test_rejects_a_shutdown_that_is_not_a_mapping",
     BASE "apps: []\n"
          "shutdown: 5s\n",
     {{7, 11, "shutdown must be a mapping"}}},
    {"test_rejects_bad_drain_after",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 100}\n"
          "    drain_after: soon\n"
          "  - name: api\n"
          "    hosts: [api.example.com]\n"
          "    weights: {blue: 100}\n"
          "    drain_after: 0s\n",
     {{10, 18, "drain_after must be a duration such as 30s, 500ms, 2m or 1h, got soon"},
      {14, 18, "drain_after must be greater than 0 (leave it out to keep connections)"}}},
    /* A refused key makes the weights unread: no "all weights are zero" on top of it. */
    {"test_a_repeated_weight_is_one_error",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 0, blue: 0}\n",
     {{9, 24, "duplicate key 'blue' (first at line 9)"}}},
    {"test_rejects_bad_maintenance_keys",
     BASE "limits: {maintenance_page_bytes: 0}\n"
          "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 100}\n"
          "    maintenance_page: /nonexistent/page.html\n"
          "    maintenance_retry_after: 1500ms\n"
          "  - name: api\n"
          "    hosts: [api.example.com]\n"
          "    weights: {blue: 100}\n"
          "    maintenance_retry_after: 0\n"
          "    maintenance_page: [a, b]\n",
     {{6, 34, "maintenance_page_bytes must be an integer 1..16777216, got 0"},
      {11, 23, "cannot read maintenance_page '/nonexistent/page.html': No such file"},
      {12, 30, "maintenance_retry_after must be whole seconds 1s..24h"},
      {16, 30, "maintenance_retry_after must be whole seconds 1s..24h"},
      {17, 23, "maintenance_page must be"}}},
    {"test_rejects_unknown_key_in_listen_entry",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "    backlog: 128\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{3, 5, "unknown key 'backlog' in listen entry"}}},
    {"test_rejects_cluster_proxy_protocol_other_than_v2_or_with_h2_or_tls",
     "listen: [{address: 127.0.0.1:8080}]\n"
     "clusters:\n"
     "  a: {endpoints: [127.0.0.1:9001], proxy_protocol: v1}\n"
     "  b: {endpoints: [127.0.0.1:9002], proxy_protocol: v2, protocol: h2c}\n"
     "  c: {endpoints: [127.0.0.1:9003], proxy_protocol: v2, tls: {verify: false}}\n"
     "apps: []\n",
     {{3, 52, "proxy_protocol of a cluster must be v2 (leave it out for none), got v1"},
      {4, 52, "proxy_protocol needs a cleartext http1 cluster (no tls, no h2/h2c)"},
      {5, 52, "proxy_protocol needs a cleartext http1 cluster"}}},
    {"test_rejects_proxy_protocol_that_is_not_a_version",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "    proxy_protocol: true\n"
     "  - address: 127.0.0.1:8081\n"
     "    proxy_protocol: [v1]\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{3, 21, "proxy_protocol must be v1, v2 or any (leave it out for none), got true"},
      {5, 21, "proxy_protocol must be v1, v2 or any"}}},
    {"test_rejects_bad_trusted_proxies",
     BASE "apps: []\n"
          "trusted_proxies: [10.0.0.0/8, 10.0.0.1/8, 1.2.3.4/33, 'fe80::/129', nothere,\n"
          "                  '2001:db8::/32', '1.2.3.4/', '1.2.3.4/x']\n",
     {{7, 31, "trusted_proxies entry '10.0.0.1/8' has bits set past its /8 prefix"},
      {7, 43, "bad prefix length in trusted_proxies entry '1.2.3.4/33': 0 to 32"},
      {7, 55, "bad prefix length in trusted_proxies entry 'fe80::/129': 0 to 128"},
      {7, 69, "bad trusted_proxies entry 'nothere': use an address or ADDRESS/BITS"},
      {8, 36, "bad prefix length in trusted_proxies entry '1.2.3.4/'"},
      {8, 48, "bad prefix length in trusted_proxies entry '1.2.3.4/x'"}}},
    {"test_rejects_trusted_proxies_that_is_not_a_list",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "    trusted_proxies: 10.0.0.0/8\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n"
     "trusted_proxies: ['']\n",
     {{3, 22, "trusted_proxies must be a list"},
      {6, 19, "trusted_proxies entry must not be empty"}}},
    {"test_rejects_tls_without_key",
     "listen:\n"
     "  - address: 127.0.0.1:8443\n"
     "    tls: {cert: /etc/hostname}\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{3, 10, "tls needs both 'cert' and 'key'"}}},
    {"test_rejects_unreadable_tls_certificate",
     "listen:\n"
     "  - address: 127.0.0.1:8443\n"
     "    tls: {cert: /nonexistent/server.pem, key: /etc/hostname}\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{3, 17, "cannot read certificate '/nonexistent/server.pem'"}}},
    {"test_rejects_unknown_key_in_limits",
     BASE "apps: []\n"
          "limits:\n"
          "  max_header: 100\n",
     {{8, 3, "unknown key 'max_header' in limits"}}},
    {"test_rejects_unknown_key_in_timeouts",
     BASE "apps: []\n"
          "timeouts: {idle: 5s}\n",
     {{7, 12, "unknown key 'idle' in timeouts"}}},
    {"test_rejects_weights_that_are_not_a_mapping",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: [blue]\n",
     {{9, 14, "weights must be a mapping, got a list"}}},
    {"test_rejects_hosts_that_are_not_a_list",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: web.example.com\n"
          "    weights: {blue: 1}\n",
     {{8, 12, "hosts must be a list, got web.example.com"}}},
    {"test_rejects_an_app_that_is_not_a_mapping",
     BASE "apps:\n"
          "  - web\n",
     {{7, 5, "app must be a mapping, got web"}}},
    {"test_rejects_a_config_that_is_not_a_mapping",
     "- listen\n"
     "- clusters\n",
     {{1, 1, "the config must be a mapping, got a list"}}},
    {"test_rejects_duplicate_app_name",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [a.example.com]\n"
          "    weights: {blue: 1}\n"
          "  - name: web\n"
          "    hosts: [b.example.com]\n"
          "    weights: {blue: 1}\n",
     {{10, 11, "duplicate app name 'web' (first at line 7)"}}},
    {"test_rejects_host_and_path_claimed_by_two_apps",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [a.example.com]\n"
          "    weights: {blue: 1}\n"
          "  - name: api\n"
          "    hosts: [b.example.com, A.Example.com]\n"
          "    paths: [/]\n"
          "    weights: {green: 1}\n",
     {{11, 28, "host 'a.example.com' with path '/' is already claimed by app 'web' at line 7"}}},
    {"test_rejects_catch_all_host_claimed_by_two_apps",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['*']\n"
          "    paths: [/, /x]\n"
          "    weights: {blue: 1}\n"
          "  - name: api\n"
          "    hosts: ['*']\n"
          "    paths: [/y, /x]\n"
          "    weights: {green: 1}\n",
     {{12, 13, "host '*' with path '/x' is already claimed by app 'web' at line 7"}}},
    {"test_rejects_duplicate_host_in_one_app",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [a.example.com, A.example.com]\n"
          "    weights: {blue: 1}\n",
     {{8, 28, "duplicate host 'A.example.com' in app (first at line 8)"}}},
    {"test_rejects_duplicate_path_in_one_app",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [a.example.com]\n"
          "    paths: [/a, /a]\n"
          "    weights: {blue: 1}\n",
     {{9, 17, "duplicate path '/a' in app (first at line 9)"}}},
    {"test_rejects_unknown_cluster_in_weights",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 50, purple: 50}\n",
     {{9, 25, "unknown cluster 'purple'"}}},
    {"test_rejects_all_zero_weights",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 0, green: 0}\n",
     {{9, 14, "all weights are zero"}}},
    {"test_rejects_empty_weights",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {}\n",
     {{9, 14, "weights must name at least one cluster"}}},
    {"test_rejects_weight_101",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 101}\n",
     {{9, 21, "weight must be an integer 0..100, got 101"}}},
    {"test_rejects_negative_weight",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: -5}\n",
     {{9, 21, "weight must be an integer 0..100, got -5"}}},
    {"test_rejects_quoted_weight",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: \"50\"}\n",
     {{9, 21, "weight must be an integer 0..100, got \"50\""}}},
    {"test_reports_yaml_syntax_error_at_libyaml_mark",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com\n"
          "    weights: {blue: 1}\n",
     {{9, 12, "did not find expected ',' or ']' (while parsing a flow sequence at line 8)"}}},
    {"test_reports_bad_indentation_as_yaml_error",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     " clusters: {}\n",
     {{3, 2, "did not find expected key"}}},
    {"test_rejects_invalid_utf8",
     BASE "apps: []\n"
          "# caf\xe9\n",
     {{7, 6, "UTF-8"}}},
    {"test_rejects_aliases",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: &h [web.example.com]\n"
          "    weights: {blue: 1}\n"
          "  - name: api\n"
          "    hosts: *h\n"
          "    paths: [/api]\n"
          "    weights: {blue: 1}\n",
     {{11, 12, "aliases are not supported"}}},
    {"test_rejects_a_second_document",
     BASE "apps: []\n"
          "---\n"
          "workers: 1\n",
     {{7, 1, "only one yaml document is allowed"}}},
    {"test_rejects_an_empty_file", "", {{1, 1, "config is empty"}}},
    {"test_rejects_a_file_of_comments", "# nothing\n\n", {{1, 1, "config is empty"}}},
    {"test_rejects_endpoint_without_port",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [127.0.0.1:9001, 127.0.0.1]\n"
     "apps: []\n",
     {{5, 33, "bad endpoint '127.0.0.1': missing ':port'"}}},
    {"test_rejects_endpoint_without_host",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue:\n"
     "    endpoints: [':9001']\n"
     "apps: []\n",
     {{5, 17, "bad endpoint ':9001': an endpoint needs a host"}}},
    {"test_rejects_cluster_without_endpoints",
     BASE "  gray: {}\n"
          "apps: []\n",
     {{6, 9, "missing required key 'endpoints' in cluster"}}},
    {"test_rejects_empty_endpoint_list",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters:\n"
     "  blue: {endpoints: []}\n"
     "apps: []\n",
     {{4, 21, "endpoints must have at least one entry"}}},
    {"test_rejects_empty_clusters",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters: {}\n"
     "apps: []\n",
     {{3, 11, "clusters must have at least one cluster"}}},
    {"test_rejects_bad_cluster_name",
     BASE "  Gray_1: {endpoints: [127.0.0.1:9003]}\n"
          "apps: []\n",
     {{6, 3, "bad cluster name 'Gray_1'"}}},
    {"test_rejects_cluster_name_longer_than_63",
     BASE "  a123456789b123456789c123456789d123456789e123456789f123456789abcd: {endpoints: "
          "[127.0.0.1:9003]}\n"
          "apps: []\n",
     {{6, 3,
       "bad cluster name 'a123456789b123456789c123456789d123456789e123456789f123456789abcd'"}}},
    {"test_rejects_duplicate_cluster",
     BASE "  blue: {endpoints: [127.0.0.1:9003]}\n"
          "apps: []\n",
     {{6, 3, "duplicate key 'blue' (first at line 4)"}}},
    {"test_rejects_duplicate_key",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [a.example.com]\n"
          "    weights: {blue: 1}\n"
          "    hosts: [b.example.com]\n",
     {{10, 5, "duplicate key 'hosts' (first at line 8)"}}},
    {"test_rejects_bad_duration",
     BASE "apps: []\n"
          "timeouts:\n"
          "  drain: 10 s\n",
     {{8, 10, "drain must be a duration such as 10s, 500ms, 2m or 1h, got 10 s"}}},
    {"test_rejects_fractional_duration",
     BASE "apps: []\n"
          "timeouts:\n"
          "  client_header: 1.5s\n",
     {{8, 18, "client_header must be a duration such as 10s, 500ms, 2m or 1h, got 1.5s"}}},
    {"test_rejects_zero_duration",
     BASE "apps: []\n"
          "timeouts:\n"
          "  client_idle: 0ms\n",
     {{8, 16, "client_idle must be greater than 0"}}},
    {"test_rejects_bad_client_send",
     BASE "apps: []\n"
          "timeouts:\n"
          "  client_send: soon\n",
     {{8, 16, "client_send must be a duration such as 10s, 500ms, 2m or 1h, got soon"}}},
    {"test_rejects_zero_client_send",
     BASE "apps: []\n"
          "timeouts:\n"
          "  client_send: 0s\n",
     {{8, 16, "client_send must be greater than 0"}}},
    {"test_rejects_log_client_lines_above_its_range",
     BASE "apps: []\n"
          "limits:\n"
          "  log_client_lines: 1000001\n",
     {{8, 21, "log_client_lines must be an integer 0..1000000, got 1000001"}}},
    {"test_rejects_an_upstream_keepalive_that_is_neither_auto_nor_a_number",
     BASE "apps: []\n"
          "limits:\n"
          "  upstream_keepalive: lots\n",
     {{8, 23, "upstream_keepalive must be auto or an integer 0..4294967295, got lots"}}},
    {"test_rejects_negative_log_client_lines",
     BASE "apps: []\n"
          "limits:\n"
          "  log_client_lines: -1\n",
     {{8, 21, "log_client_lines must be an integer 0..1000000, got -1"}}},
    {"test_rejects_zero_linger",
     BASE "apps: []\n"
          "timeouts:\n"
          "  linger: 0s\n",
     {{8, 11, "linger must be greater than 0"}}},
    {"test_rejects_bad_linger",
     BASE "apps: []\n"
          "timeouts:\n"
          "  linger: soon\n",
     {{8, 11, "linger must be a duration such as 10s, 500ms, 2m or 1h, got soon"}}},
    {"test_rejects_duration_beyond_unsigned_ms",
     BASE "apps: []\n"
          "timeouts:\n"
          "  upstream_response: 1200h\n",
     {{8, 22, "upstream_response must be at most 4294967295ms, got 1200h"}}},
    {"test_rejects_tls_ticket_rotate_below_a_second",
     BASE "apps: []\n"
          "timeouts:\n"
          "  tls_ticket_rotate: 500ms\n",
     {{8, 22, "tls_ticket_rotate must be at least 1s, got 500ms"}}},
    {"test_rejects_tls_ticket_rotate_that_is_not_a_duration",
     BASE "apps: []\n"
          "timeouts: {tls_ticket_rotate: daily}\n",
     {{7, 31, "tls_ticket_rotate must be a duration such as 10s, 500ms, 2m or 1h, got daily"}}},
    {"test_rejects_stable_not_in_weights",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    stable: green\n"
          "    weights: {blue: 100}\n",
     {{9, 13, "stable cluster 'green' is not in weights"}}},
    {"test_rejects_stable_naming_unknown_cluster",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    stable: purple\n"
          "    weights: {blue: 100}\n",
     {{9, 13, "unknown cluster 'purple'"}}},
    {"test_rejects_missing_listen",
     "clusters:\n"
     "  blue: {endpoints: [127.0.0.1:9001]}\n"
     "apps: []\n",
     {{1, 1, "missing required key 'listen'"}}},
    {"test_rejects_missing_clusters",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "apps: []\n",
     {{1, 1, "missing required key 'clusters'"}}},
    {"test_rejects_missing_apps", BASE, {{1, 1, "missing required key 'apps'"}}},
    {"test_rejects_app_without_name",
     BASE "apps:\n"
          "  - hosts: [web.example.com]\n"
          "    weights: {blue: 1}\n",
     {{7, 5, "missing required key 'name' in app"}}},
    {"test_rejects_app_without_hosts",
     BASE "apps:\n"
          "  - name: web\n"
          "    weights: {blue: 1}\n",
     {{7, 5, "missing required key 'hosts' in app"}}},
    {"test_rejects_app_without_weights",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n",
     {{7, 5, "missing required key 'weights' in app"}}},
    {"test_rejects_bad_app_name",
     BASE "apps:\n"
          "  - name: -web\n"
          "    hosts: [web.example.com]\n"
          "    weights: {blue: 1}\n",
     {{7, 11, "bad app name '-web'"}}},
    {"test_rejects_empty_listen",
     "listen: []\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{1, 9, "listen must have at least one entry"}}},
    {"test_rejects_listen_entry_without_address",
     "listen:\n"
     "  - port: 8080\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{2, 5, "unknown key 'port' in listen entry"},
      {2, 5, "missing required key 'address' in listen entry"}}},
    {"test_rejects_listen_address_without_port",
     "listen:\n"
     "  - address: 127.0.0.1\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{2, 14, "bad listen address '127.0.0.1': missing ':port'"}}},
    {"test_rejects_listen_host_name",
     "listen:\n"
     "  - address: localhost:8080\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{2, 14, "bad listen address 'localhost:8080': host must be a numeric"}}},
    {"test_rejects_unbracketed_ipv6_listen",
     "listen:\n"
     "  - address: '::1:8080'\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{2, 14, "must be written in brackets"}}},
    {"test_rejects_duplicate_listen_address",
     "listen:\n"
     "  - address: 127.0.0.1:8080\n"
     "  - address: 127.0.0.1:8080\n"
     "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
     "apps: []\n",
     {{3, 14, "duplicate listen address '127.0.0.1:8080' (first at line 2)"}}},
    {"test_rejects_host_with_port",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com:8080]\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host 'web.example.com:8080': a port is not allowed"}}},
    {"test_rejects_star_inside_host",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['web.*.com']\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host 'web.*.com': '*' is allowed only as the whole host or as a leading '*.'"}}},
    {"test_rejects_star_without_dot",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['*example.com']\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host '*example.com': '*' is allowed only"}}},
    {"test_rejects_wildcard_without_suffix",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['*.']\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host '*.': a wildcard needs a suffix after '*.'"}}},
    {"test_rejects_host_with_space",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['web example.com']\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host 'web example.com': spaces and control characters are not allowed"}}},
    {"test_rejects_empty_host",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['']\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "host must not be empty"}}},
    {"test_rejects_host_with_empty_label",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web..example.com]\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host 'web..example.com': empty label"}}},
    {"test_rejects_host_with_trailing_dot",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com.]\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host 'web.example.com.': a trailing '.' is not allowed"}}},
    {"test_names_the_line_of_an_unnamed_app_that_claimed_a_host_first",
     BASE "apps:\n"
          "  - hosts: [a.example.com]\n"
          "    weights: {blue: 1}\n"
          "  - name: api\n"
          "    hosts: [a.example.com]\n"
          "    weights: {blue: 1}\n",
     {{7, 5, "missing required key 'name' in app"},
      {10, 13, "host 'a.example.com' with path '/' is already claimed by the app at line 7"}}},
    {"test_rejects_empty_key",
     BASE "apps: []\n"
          "'': 1\n",
     {{7, 1, "unknown key '' at top level"}}},
    {"test_rejects_ipv6_literal_host_with_port",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['[::1]:8080']\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host '[::1]:8080': a port is not allowed"}}},
    {"test_rejects_bad_ipv6_literal_host",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: ['[::g]', '[::1']\n"
          "    weights: {blue: 1}\n",
     {{8, 13, "bad host '[::g]': bad IPv6 literal"}, {8, 22, "bad host '[::1': bad IPv6 literal"}}},
    {"test_rejects_empty_host_list",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: []\n"
          "    weights: {blue: 1}\n",
     {{8, 12, "hosts must have at least one entry"}}},
    {"test_rejects_path_without_leading_slash",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    paths: [api]\n"
          "    weights: {blue: 1}\n",
     {{9, 13, "bad path 'api': must start with '/'"}}},
    {"test_rejects_path_with_space",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    paths: ['/a b']\n"
          "    weights: {blue: 1}\n",
     {{9, 13, "bad path '/a b': spaces and control characters are not allowed"}}},
    {"test_rejects_path_with_control_character",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    paths: [\"/a\\tb\"]\n"
          "    weights: {blue: 1}\n",
     {{9, 13, "bad path '/a?b': spaces and control characters are not allowed"}}},
    {"test_rejects_path_with_nul_byte",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [web.example.com]\n"
          "    paths: [\"/a\\0b\"]\n"
          "    weights: {blue: 1}\n",
     {{9, 13, "path must not contain NUL bytes"}}},
    {"test_rejects_zero_max_headers",
     BASE "apps: []\n"
          "limits:\n"
          "  max_headers: 0\n",
     {{8, 16, "max_headers must be an integer 1..4294967295, got 0"}}},
    {"test_rejects_negative_max_body_bytes",
     BASE "apps: []\n"
          "limits: {max_body_bytes: -1}\n",
     {{7, 26, "max_body_bytes must be an integer >= 0, got -1"}}},
    {"test_rejects_negative_reserved_fds",
     BASE "apps: []\n"
          "limits: {reserved_fds: -1}\n",
     {{7, 24, "reserved_fds must be an integer 0..1000000, got -1"}}},
    {"test_rejects_reserved_fds_that_is_not_a_number",
     BASE "apps: []\n"
          "limits:\n"
          "  reserved_fds: many\n",
     {{8, 17, "reserved_fds must be an integer 0..1000000, got many"}}},
    {"test_rejects_allow_read_uids_that_is_not_a_list",
     BASE "apps: []\n"
          "admin: {allow_read_uids: 1000}\n",
     {{7, 26, "allow_read_uids must be a list"}}},
    {"test_rejects_unknown_user_in_allow_read_uids",
     BASE "apps: []\n"
          "admin:\n"
          "  allow_read_uids: [0, no-such-user-here]\n",
     {{8, 24, "allow_read_uids: no user named 'no-such-user-here'"}}},
    {"test_rejects_unknown_group_in_allow_read_gids",
     BASE "apps: []\n"
          "admin: {allow_read_gids: [no-such-group-here]}\n",
     {{7, 27, "allow_read_gids: no group named 'no-such-group-here'"}}},
    {"test_rejects_zero_h2_early_resets",
     BASE "apps: []\n"
          "limits:\n"
          "  h2_early_resets: 0\n",
     {{8, 20, "h2_early_resets must be an integer 1..4294967295, got 0"}}},
    {"test_rejects_zero_apps_dir_files",
     BASE "apps: []\n"
          "limits: {apps_dir_files: 0}\n",
     {{7, 26, "apps_dir_files must be an integer 1..1000000, got 0"}}},
    {"test_rejects_apps_dir_that_is_not_a_string",
     BASE "apps_dir: [a, b]\n",
     {{6, 11, "apps_dir must be a string, got a list"}}},
    {"test_rejects_apps_dir_that_cannot_be_read",
     BASE "apps_dir: /nonexistent/apps.d\n",
     {{6, 11, "cannot read apps_dir '/nonexistent/apps.d': No such file or directory"}}},
    {"test_rejects_h2_early_resets_that_is_not_a_number",
     BASE "apps: []\n"
          "limits: {h2_early_resets: many}\n",
     {{7, 27, "h2_early_resets must be an integer 1..4294967295, got many"}}},
    {"test_rejects_limits_that_are_not_a_mapping",
     BASE "apps: []\n"
          "limits: 100\n",
     {{7, 9, "limits must be a mapping, got 100"}}},
    {"test_rejects_workers_above_1024",
     "workers: 5000\n" BASE "apps: []\n",
     {{1, 10, "workers must be an integer 0..1024, got 5000"}}},
    {"test_rejects_non_string_key",
     BASE "apps: []\n"
          "[a]: 1\n",
     {{7, 1, "keys must be strings, got a list"}}},
    {"test_reports_every_error_in_one_pass_in_file_order",
     BASE "apps:\n"
          "  - name: web\n"
          "    hosts: [\"web.example.com:80\"]\n"
          "    weights: {blue: 120, purple: 1}\n"
          "timeouts: {drain: 0}\n"
          "extra: true\n",
     {{8, 13, "bad host 'web.example.com:80': a port is not allowed"},
      {9, 21, "weight must be an integer 0..100, got 120"},
      {9, 26, "unknown cluster 'purple'"},
      {10, 19, "drain must be greater than 0"},
      {11, 1, "unknown key 'extra' at top level"}}},
    {"test_rejects_admin_http_off_loopback_without_an_allow_list",
     BASE WEB_APP "admin:\n"
                  "  http: 0.0.0.0:9901\n",
     {{11, 9,
       "admin.http '0.0.0.0:9901' is not a loopback address: list who may use it in "
       "admin.http_allow"}}},
    {"test_rejects_admin_http_on_all_addresses_without_an_allow_list",
     BASE WEB_APP "admin: {http: \":9901\"}\n",
     {{10, 15, "admin.http ':9901' is not a loopback address"}}},
    {"test_rejects_a_bad_admin_http_address",
     BASE WEB_APP "admin: {http: \"localhost:99999\"}\n",
     {{10, 15, "bad admin.http address 'localhost:99999'"}}},
    {"test_rejects_a_bad_admin_http_allow_entry",
     BASE WEB_APP "admin: {http: 127.0.0.1:9901, http_allow: [10.0.0.1/33]}\n",
     {{10, 44, "bad prefix length in trusted_proxies entry '10.0.0.1/33'"}}},
    {"test_rejects_a_zero_worker_stale",
     BASE WEB_APP "timeouts: {worker_stale: 0}\n",
     {{10, 26, "worker_stale must be greater than 0"}}},
    {"test_rejects_an_access_log_without_a_path",
     BASE WEB_APP "access_log: {sample: 0.5}\n",
     {{10, 13, "access_log needs a path (stdout or a file)"}}},
    {"test_rejects_an_access_log_sample_out_of_range",
     BASE WEB_APP "access_log: {path: stdout, sample: 1.5}\n",
     {{10, 36, "access_log.sample must be a number from 0 to 1, got 1.5"}}},
    {"test_rejects_an_access_log_sample_that_is_not_a_number",
     BASE WEB_APP "access_log: {path: stdout, sample: half}\n",
     {{10, 36, "access_log.sample must be a number from 0 to 1, got half"}}},
    {"test_rejects_an_access_log_buffer_too_small",
     BASE WEB_APP "access_log: {path: stdout, buffer_bytes: 100}\n",
     {{10, 42, "access_log.buffer_bytes must be 4096..1073741824 bytes"}}},
    {"test_rejects_an_access_log_buffer_with_an_unknown_unit",
     BASE WEB_APP "access_log: {path: stdout, buffer_bytes: 1MB}\n",
     {{10, 42, "access_log.buffer_bytes must be 4096..1073741824 bytes"}}},
    {"test_rejects_an_unknown_access_log_key",
     BASE WEB_APP "access_log: {path: stdout, format: json}\n",
     {{10, 28, "unknown key 'format' in access_log"}}},
};

static void run_error_case(void **state)
{
    const struct error_case *tc = *state;
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse(test_name, tc->yaml, strlen(tc->yaml), &d, &cfg);
    size_t n_want = 0;
    while (n_want < ARRAY_LEN(tc->want) && tc->want[n_want].msg)
        n_want++;
    bool match = rc == SY_ERR_INVALID && cfg == NULL && d.n == n_want;
    for (size_t i = 0; match && i < n_want; i++)
        match = d.v[i].file == test_name && d.v[i].line == tc->want[i].line &&
                d.v[i].col == tc->want[i].col && strstr(d.v[i].msg, tc->want[i].msg);
    if (!match) {
        print_message("  rc %d, got %zu diagnostics:\n", rc, d.n);
        print_diags(&d);
        for (size_t i = 0; i < n_want; i++)
            print_message("  want: %d:%d: %s\n", tc->want[i].line, tc->want[i].col,
                          tc->want[i].msg);
    }
    sy_config_free(cfg);
    sy_diags_dispose(&d);
    assert_true(match);
}

/* The app-name index grows with the file: every app found by name, and a duplicate far
 * from its first (past several rehashes) still named with the first's line. */
static void test_app_names_are_indexed_and_duplicates_found_among_many(void **state)
{
    enum { N = 500 };
    size_t cap = 256 + (size_t)N * 96;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t off = (size_t)snprintf(text, cap,
                                  "listen:\n  - address: 127.0.0.1:8080\n"
                                  "clusters:\n  blue:\n    endpoints: [127.0.0.1:9001]\n"
                                  "apps:\n");
    for (int i = 0; i < N; i++)
        off += (size_t)snprintf(text + off, cap - off,
                                "  - name: app%d\n    hosts: [h%d.test]\n    weights: {blue: 1}\n",
                                i, i);
    struct sy_config *cfg = parse_ok(text);
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "app%d", i);
        assert_int_equal(sy_config_app_index(cfg, name), i);
    }
    assert_int_equal(sy_config_app_index(cfg, "app500"), -1);
    assert_int_equal(sy_config_app_index(cfg, ""), -1);
    sy_config_free(cfg);

    /* app3's name again as the last app: line 6 + 3*3 is app3's, the new one follows app499. */
    off += (size_t)snprintf(text + off, cap - off,
                            "  - name: app3\n    hosts: [again.test]\n    weights: {blue: 1}\n");
    struct sy_diags d;
    sy_diags_init(&d);
    cfg = NULL;
    assert_int_equal(sy_config_parse(test_name, text, off, &d, &cfg), SY_ERR_INVALID);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 7 + 3 * N);
    assert_string_equal(d.v[0].msg, "duplicate app name 'app3' (first at line 16)");
    sy_diags_dispose(&d);
    free(text);
}

static void test_parses_access_log_and_its_defaults(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE WEB_APP);
    assert_null(cfg->access_log.path); /* absent: off */
    assert_true(cfg->access_log.sample == 1.0);
    assert_int_equal(cfg->access_log.buffer_bytes, 1u << 20);
    assert_int_equal(cfg->access_log.buffer_bytes, SY_ACCESS_LOG_BUFFER_DEFAULT);
    sy_config_free(cfg);
    cfg = parse_ok(BASE WEB_APP "access_log: {path: stdout}\n");
    assert_string_equal(cfg->access_log.path, "stdout");
    sy_config_free(cfg);
    cfg = parse_ok(BASE WEB_APP "access_log: {path: /var/log/sy.log, sample: 0.1, "
                                "buffer_bytes: 64KiB}\n");
    assert_string_equal(cfg->access_log.path, "/var/log/sy.log");
    assert_true(cfg->access_log.sample == 0.1);
    assert_int_equal(cfg->access_log.buffer_bytes, 65536);
    sy_config_free(cfg);
    cfg = parse_ok(BASE WEB_APP "access_log: {path: logs/access.log, sample: 0, "
                                "buffer_bytes: 8192}\n");
    assert_string_equal(cfg->access_log.path, "logs/access.log"); /* relative to test.yaml */
    assert_true(cfg->access_log.sample == 0.0);
    assert_int_equal(cfg->access_log.buffer_bytes, 8192);
    sy_config_free(cfg);
    cfg = parse_ok(BASE WEB_APP "access_log: {path: stdout, buffer_bytes: 2MiB}\n");
    assert_int_equal(cfg->access_log.buffer_bytes, 2u << 20);
    sy_config_free(cfg);
}

static void test_parses_shutdown_and_its_defaults(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE "apps: []\n");
    assert_int_equal(cfg->shutdown.delay_ms, SY_SHUTDOWN_DELAY_DEFAULT_MS);
    assert_int_equal(cfg->shutdown.delay_ms, 5000);
    assert_int_equal(cfg->shutdown.grace_ms, SY_SHUTDOWN_GRACE_DEFAULT_MS);
    assert_int_equal(cfg->shutdown.grace_ms, 30000);
    sy_config_free(cfg);
    cfg = parse_ok(BASE "apps: []\n"
                        "shutdown: {delay: 0s, grace: 2m}\n");
    assert_int_equal(cfg->shutdown.delay_ms, 0);
    assert_int_equal(cfg->shutdown.grace_ms, 120000);
    sy_config_free(cfg);
    /* timeouts.drain is the grace's older name: it counts when `grace` is not written. */
    cfg = parse_ok(BASE "apps: []\n"
                        "timeouts: {drain: 7s}\n");
    assert_int_equal(cfg->shutdown.grace_ms, 7000);
    sy_config_free(cfg);
    cfg = parse_ok(BASE "apps: []\n"
                        "shutdown: {grace: 9s}\n"
                        "timeouts: {drain: 7s}\n");
    assert_int_equal(cfg->shutdown.grace_ms, 9000);
    sy_config_free(cfg);
}

static void test_parses_exclusive_mode_and_its_defaults(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE "apps:\n"
                                          "  - name: web\n"
                                          "    hosts: [web.example.com]\n"
                                          "    weights: {blue: 100, green: 0}\n"
                                          "    mode: exclusive\n"
                                          "    force_while_exclusive: true\n"
                                          "  - name: api\n"
                                          "    hosts: [api.example.com]\n"
                                          "    weights: {blue: 50, green: 50}\n");
    assert_int_equal(cfg->apps[0].mode, SY_APP_EXCLUSIVE);
    assert_true(cfg->apps[0].force_while_exclusive);
    assert_int_equal(cfg->apps[1].mode, SY_APP_WEIGHTED);
    assert_false(cfg->apps[1].force_while_exclusive);
    assert_int_equal(cfg->exclusive.hold_ms, SY_EXCLUSIVE_HOLD_DEFAULT_MS);
    assert_int_equal(cfg->exclusive.hold_ms, 10000);
    assert_int_equal(cfg->exclusive.drain_ms, 30000);
    assert_int_equal(cfg->exclusive.max_held, 1000);
    assert_null(cfg->exclusive.ready_url);
    sy_config_free(cfg);
    cfg =
        parse_ok(BASE "apps: []\n"
                      "exclusive:\n"
                      "  hold: 1s\n"
                      "  drain: 2s\n"
                      "  max_held: 5\n"
                      "  ready: {url: 'http://127.0.0.1:9002/ready', expect: 204, timeout: 3s}\n");
    assert_int_equal(cfg->exclusive.hold_ms, 1000);
    assert_int_equal(cfg->exclusive.drain_ms, 2000);
    assert_int_equal(cfg->exclusive.max_held, 5);
    assert_string_equal(cfg->exclusive.ready_host, "127.0.0.1");
    assert_int_equal(cfg->exclusive.ready_port, 9002);
    assert_string_equal(cfg->exclusive.ready_path, "/ready");
    assert_int_equal(cfg->exclusive.ready_expect, 204);
    assert_int_equal(cfg->exclusive.ready_timeout_ms, 3000);
    sy_config_free(cfg);
}

/* ---- failing allocations (failalloc.h) ----------------------------------------------------- */

struct load_run {
    const char *path;
    unsigned long failed; /* runs in which the allocation to fail was reached */
};

/* One load of the file: with nothing failed it loads as it always does; with one of libyaml's
 * allocations failed, it is an error, said once, with no config and nothing leaked. */
static void load_once(void *arg)
{
    struct load_run *r = arg;
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(r->path, &d, &cfg);
    if (!sy_failalloc_hit()) {
        print_diags(&d);
        assert_int_equal(rc, SY_OK);
        assert_int_equal(d.n, 0);
        sy_config_free(cfg);
    } else {
        r->failed++;
        assert_int_not_equal(rc, SY_OK);
        assert_null(cfg);
        assert_int_equal(d.n, 1);
        assert_non_null(strstr(d.v[0].msg, "out of memory"));
    }
    sy_diags_dispose(&d);
}

/* Every libyaml allocation of loading a shipped file, the full fixture and an apps_dir (whose
 * files each have their own parser) fails in turn. */
static void test_every_failing_yaml_allocation_is_an_error(void **state)
{
    static const struct {
        const char *path;
        unsigned long min_runs;
    } files[] = {
        {SY_CONF_DIR "/examples/cutover.yaml", 20},
        {SY_CONF_DIR "/examples/tenants.yaml", 20},
        {SY_FIXTURES "/config/full.yaml", 20},
    };
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        struct load_run r = {files[i].path, 0};
        unsigned long runs = sy_failalloc_each(load_once, &r);
        print_message("  %s: %lu runs\n", files[i].path, runs);
        assert_true(runs > files[i].min_runs);
        assert_int_equal(r.failed, runs - 1);
    }
}

int main(void)
{
    sy_failalloc_install();
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_parses_every_field_of_a_full_config),
        cmocka_unit_test(test_defaults_match_the_header),
        cmocka_unit_test(test_reads_the_maintenance_page_within_its_limit),
        cmocka_unit_test(test_parses_cluster_protocol_tls_and_drain_after),
        cmocka_unit_test(test_parses_cluster_max_connections_and_queue),
        cmocka_unit_test(test_parses_exclusive_mode_and_its_defaults),
        cmocka_unit_test(test_parses_shutdown_and_its_defaults),
        cmocka_unit_test(test_applies_defaults_to_absent_keys),
        cmocka_unit_test(test_stable_defaults_to_first_weighted_cluster_in_cluster_order),
        cmocka_unit_test(test_accepts_and_lower_cases_ipv6_literal_hosts),
        cmocka_unit_test(test_accepts_an_empty_app_list),
        cmocka_unit_test(test_allows_one_host_in_two_apps_on_different_paths),
        cmocka_unit_test(test_parses_every_duration_unit),
        cmocka_unit_test(test_resolves_endpoint_names),
        cmocka_unit_test(test_rejects_endpoint_names_when_resolution_is_off),
        cmocka_unit_test(test_upstream_keepalive_takes_auto_or_a_number),
        cmocka_unit_test(test_load_reports_an_unreadable_file_without_position),
        cmocka_unit_test(test_load_reports_a_directory_as_unreadable),
        cmocka_unit_test(test_failure_leaves_out_untouched_and_keeps_earlier_diags),
        cmocka_unit_test(test_shipped_configs_load),
        cmocka_unit_test(test_parse_hostport_accepts_and_rejects_as_documented),
        cmocka_unit_test(test_parses_proxy_protocol_and_trusted_proxies),
        cmocka_unit_test(test_parses_sticky_and_force),
        cmocka_unit_test(test_parses_every_max_age_unit),
        cmocka_unit_test(test_never_quotes_the_force_secret),
        cmocka_unit_test(test_app_names_are_indexed_and_duplicates_found_among_many),
        cmocka_unit_test(test_parses_admin_http_and_its_allow_list),
        cmocka_unit_test(test_parses_access_log_and_its_defaults),
        cmocka_unit_test(test_every_failing_yaml_allocation_is_an_error),
    };
    /* One named test per row of the error table. */
    static struct CMUnitTest tests[ARRAY_LEN(fixed) + ARRAY_LEN(error_cases)];
    for (size_t i = 0; i < ARRAY_LEN(fixed); i++)
        tests[i] = fixed[i];
    for (size_t i = 0; i < ARRAY_LEN(error_cases); i++) {
        struct CMUnitTest *t = &tests[ARRAY_LEN(fixed) + i];
        t->name = error_cases[i].name;
        t->test_func = run_error_case;
        t->setup_func = NULL;
        t->teardown_func = NULL;
        t->initial_state = (void *)&error_cases[i];
    }
    return cmocka_run_group_tests_name("routing/config", tests, NULL, NULL);
}
