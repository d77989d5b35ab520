/* SPDX-License-Identifier: MIT */
/* Unit tests for routing/config_fleet.c, the `fleet:` section (issue #17): its defaults, each
 * endpoint form (host:port, http://, https://, IPv6 in brackets, a final '/'), TLS implied by
 * https:// or by a tls: block, the prefix's final '/', each bound accepted at its edge, and a
 * table of broken sections, each reported once at the right line and column with the right
 * words and nothing else. Endpoint names resolve only through /etc/hosts (localhost). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "switchyard/config.h"

#include "diags.h"

#ifndef SY_FIXTURES
#define SY_FIXTURES "tests/fixtures"
#endif

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char test_name[] = "test.yaml";

/* Five lines; `fleet:` goes on line 6. */
#define BASE                                                                                       \
    "listen:\n"                                                                                    \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "clusters:\n"                                                                                  \
    "  blue: {endpoints: [127.0.0.1:9001]}\n"                                                      \
    "apps: []\n"

/* Lines 6 and 7: a good fleet with one endpoint; its other keys go on line 8. */
#define FLEET_HEAD                                                                                 \
    "fleet:\n"                                                                                     \
    "  etcd: {endpoints: [127.0.0.1:2379]}\n"

/* Lines 6 and 7: fleet.etcd's keys go on line 8 on, indented by four. */
#define ETCD_HEAD                                                                                  \
    "fleet:\n"                                                                                     \
    "  etcd:\n"

#define ONE_ENDPOINT "    endpoints: [127.0.0.1:2379]\n"

#define A10  "aaaaaaaaaa"
#define A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10

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

/* `e` resolved to `ip` (either family) and `port`. */
static void assert_addr(const struct sy_fleet_endpoint *e, const char *ip, unsigned port)
{
    char buf[INET6_ADDRSTRLEN];
    if (e->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&e->addr;
        assert_int_equal(e->addrlen, sizeof(*a));
        assert_non_null(inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)));
        assert_int_equal(ntohs(a->sin_port), port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&e->addr;
        assert_int_equal(e->addr.ss_family, AF_INET6);
        assert_int_equal(e->addrlen, sizeof(*a));
        assert_non_null(inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)));
        assert_int_equal(ntohs(a->sin6_port), port);
    }
    assert_string_equal(buf, ip);
}

static void test_fleet_is_off_with_the_defaults_when_absent(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE);
    const struct sy_fleet_spec *f = &cfg->fleet;
    assert_false(f->on);
    assert_null(f->endpoints);
    assert_int_equal(f->n_endpoints, 0);
    assert_null(f->prefix);
    assert_null(f->instance);
    assert_false(f->tls.on);
    assert_true(f->tls.verify);
    assert_int_equal(f->timeout_ms, SY_FLEET_TIMEOUT_DEFAULT_MS);
    assert_int_equal(f->lease_ttl_ms, SY_FLEET_LEASE_DEFAULT_MS);
    assert_int_equal(f->wait_ms, SY_FLEET_WAIT_DEFAULT_MS);
    sy_config_free(cfg);

    struct sy_fleet_spec d;
    memset(&d, 0xff, sizeof(d));
    sy_config_fleet_defaults(&d);
    assert_false(d.on);
    assert_null(d.endpoints);
    assert_null(d.prefix);
    assert_true(d.tls.verify);
    assert_int_equal(d.timeout_ms, SY_FLEET_TIMEOUT_DEFAULT_MS);
}

/* The defaults the issue and the README give, in numbers. */
static void test_a_minimal_fleet_takes_every_default(void **state)
{
    (void)state;
    assert_int_equal(SY_FLEET_TIMEOUT_DEFAULT_MS, 2000);
    assert_int_equal(SY_FLEET_LEASE_DEFAULT_MS, 10000);
    assert_int_equal(SY_FLEET_WAIT_DEFAULT_MS, 5000);
    struct sy_config *cfg = parse_ok(BASE FLEET_HEAD);
    const struct sy_fleet_spec *f = &cfg->fleet;
    assert_true(f->on);
    assert_mark(f->mark, 7, 3); /* a block mapping starts at its first key */
    assert_int_equal(f->n_endpoints, 1);
    const struct sy_fleet_endpoint *e = &f->endpoints[0];
    assert_string_equal(e->address, "127.0.0.1:2379");
    assert_string_equal(e->host, "127.0.0.1");
    assert_false(e->tls);
    assert_addr(e, "127.0.0.1", 2379);
    assert_mark(e->mark, 7, 22);
    assert_string_equal(f->prefix, "/switchyard/");
    assert_string_equal(f->prefix, SY_FLEET_PREFIX_DEFAULT);
    assert_false(f->tls.on);
    assert_true(f->tls.verify);
    assert_null(f->tls.ca);
    assert_null(f->tls.sni);
    assert_null(f->tls.cert);
    assert_null(f->tls.key);
    assert_null(f->instance);
    assert_int_equal(f->timeout_ms, 2000);
    assert_int_equal(f->lease_ttl_ms, 10000);
    assert_int_equal(f->wait_ms, 5000);
    sy_config_free(cfg);
}

static void test_parses_every_endpoint_form(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE ETCD_HEAD "    endpoints:\n"
                                                    "      - 127.0.0.1:2379\n"
                                                    "      - http://127.0.0.1:22379\n"
                                                    "      - http://127.0.0.1:22380/\n"
                                                    "      - '[::1]:2379'\n"
                                                    "      - http://[::1]:2380\n"
                                                    "      - HTTP://127.0.0.1:2381\n"
                                                    "      - localhost:2382\n");
    const struct sy_fleet_spec *f = &cfg->fleet;
    assert_int_equal(f->n_endpoints, 7);
    static const struct {
        const char *address, *host, *ip;
        unsigned port;
    } want[] = {
        {"127.0.0.1:2379", "127.0.0.1", "127.0.0.1", 2379},
        {"http://127.0.0.1:22379", "127.0.0.1", "127.0.0.1", 22379},
        {"http://127.0.0.1:22380/", "127.0.0.1", "127.0.0.1", 22380},
        {"[::1]:2379", "::1", "::1", 2379},
        {"http://[::1]:2380", "::1", "::1", 2380},
        {"HTTP://127.0.0.1:2381", "127.0.0.1", "127.0.0.1", 2381},
        {"localhost:2382", "localhost", NULL, 2382},
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        const struct sy_fleet_endpoint *e = &f->endpoints[i];
        assert_string_equal(e->address, want[i].address);
        assert_string_equal(e->host, want[i].host);
        assert_false(e->tls);
        if (want[i].ip)
            assert_addr(e, want[i].ip, want[i].port);
        assert_mark(e->mark, 9 + (int)i, 9);
    }
    /* localhost resolves to one of the loopback addresses, whichever /etc/hosts lists first. */
    assert_true(f->endpoints[6].addr.ss_family == AF_INET ||
                f->endpoints[6].addr.ss_family == AF_INET6);
    assert_false(f->tls.on);
    sy_config_free(cfg);
}

/* https:// alone: that endpoint speaks TLS against the system trust store; the others don't. */
static void test_https_implies_tls_with_the_system_store(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE ETCD_HEAD "    endpoints:\n"
                                                    "      - 127.0.0.1:2379\n"
                                                    "      - https://127.0.0.1:2380/\n"
                                                    "      - HTTPS://[::1]:2381\n");
    const struct sy_fleet_spec *f = &cfg->fleet;
    assert_int_equal(f->n_endpoints, 3);
    assert_false(f->endpoints[0].tls);
    assert_true(f->endpoints[1].tls);
    assert_string_equal(f->endpoints[1].host, "127.0.0.1");
    assert_addr(&f->endpoints[1], "127.0.0.1", 2380);
    assert_true(f->endpoints[2].tls);
    assert_string_equal(f->endpoints[2].host, "::1");
    assert_addr(&f->endpoints[2], "::1", 2381);
    assert_true(f->tls.on);
    assert_true(f->tls.verify);
    assert_null(f->tls.ca);
    assert_null(f->tls.cert);
    assert_mark(f->tls.mark, 10, 9); /* the first https:// endpoint */
    sy_config_free(cfg);
}

/* A tls: block, wherever it stands in fleet.etcd, makes every endpoint TLS. */
static void test_a_tls_block_makes_every_endpoint_tls(void **state)
{
    (void)state;
    /* Any readable file passes the load's check; its contents are -t's (sy_proxy_check). */
    struct sy_config *cfg =
        parse_ok(BASE ETCD_HEAD "    tls:\n"
                                "      ca: " SY_FIXTURES "/config/full.yaml\n"
                                "      cert: " SY_FIXTURES "/config/full.yaml\n"
                                "      key: " SY_FIXTURES "/config/full.yaml\n"
                                "      sni: etcd.internal\n"
                                "      verify: false\n"
                                "    endpoints: [127.0.0.1:2379, 'https://[::1]:2379/']\n");
    const struct sy_fleet_spec *f = &cfg->fleet;
    assert_true(f->tls.on);
    assert_mark(f->tls.mark, 9, 7);
    assert_string_equal(f->tls.ca, SY_FIXTURES "/config/full.yaml");
    assert_string_equal(f->tls.cert, SY_FIXTURES "/config/full.yaml");
    assert_string_equal(f->tls.key, SY_FIXTURES "/config/full.yaml");
    assert_string_equal(f->tls.sni, "etcd.internal");
    assert_false(f->tls.verify);
    assert_int_equal(f->n_endpoints, 2);
    assert_true(f->endpoints[0].tls);
    assert_true(f->endpoints[1].tls);
    assert_string_equal(f->endpoints[1].host, "::1");
    sy_config_free(cfg);

    /* An empty block: TLS with every default. */
    cfg = parse_ok(BASE ETCD_HEAD ONE_ENDPOINT "    tls: {}\n");
    assert_true(cfg->fleet.tls.on);
    assert_true(cfg->fleet.tls.verify);
    assert_null(cfg->fleet.tls.ca);
    assert_true(cfg->fleet.endpoints[0].tls);
    assert_mark(cfg->fleet.tls.mark, 9, 10);
    sy_config_free(cfg);
}

/* Paths in tls: are relative to the config file's directory, as a cluster's. */
static void test_tls_paths_are_resolved_against_the_config_directory(void **state)
{
    (void)state;
    static const char yaml[] = BASE ETCD_HEAD ONE_ENDPOINT "    tls: {ca: full.yaml}\n";
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    const char *name = SY_FIXTURES "/config/fleet-test.yaml"; /* not read: parsed from memory */
    int rc = sy_config_parse(name, yaml, strlen(yaml), &d, &cfg);
    print_diags(&d);
    assert_int_equal(rc, SY_OK);
    assert_string_equal(cfg->fleet.tls.ca, SY_FIXTURES "/config/full.yaml");
    sy_config_free(cfg);
    sy_diags_dispose(&d);
}

static void test_prefix_gets_its_final_slash(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {BASE ETCD_HEAD ONE_ENDPOINT "    prefix: /switchyard/prod\n", "/switchyard/prod/"},
        {BASE ETCD_HEAD ONE_ENDPOINT "    prefix: /switchyard/prod/\n", "/switchyard/prod/"},
        {BASE ETCD_HEAD ONE_ENDPOINT "    prefix: /\n", "/"},
        {BASE ETCD_HEAD ONE_ENDPOINT "    prefix: \"/a~b!c#d\"\n", "/a~b!c#d/"},
        /* 199 bytes and its slash: SY_FLEET_PREFIX_MAX. */
        {BASE ETCD_HEAD ONE_ENDPOINT "    prefix: /" A100 A10 A10 A10 A10 A10 A10 A10 A10 A10
                                     "aaaaaaaa\n",
         "/" A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 "aaaaaaaa/"},
        /* 200 bytes that already end in '/'. */
        {BASE ETCD_HEAD ONE_ENDPOINT "    prefix: /" A100 A10 A10 A10 A10 A10 A10 A10 A10 A10
                                     "aaaaaaaa/\n",
         "/" A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 "aaaaaaaa/"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sy_config *cfg = parse_ok(cases[i].yaml);
        assert_string_equal(cfg->fleet.prefix, cases[i].want);
        assert_true(strlen(cfg->fleet.prefix) <= SY_FLEET_PREFIX_MAX);
        sy_config_free(cfg);
    }
}

/* Every bound is accepted at its edge. */
static void test_accepts_each_bound(void **state)
{
    (void)state;
    struct sy_config *cfg = parse_ok(BASE ETCD_HEAD ONE_ENDPOINT "    timeout: 100ms\n"
                                                                 "  instance: a\n"
                                                                 "  lease_ttl: 2s\n"
                                                                 "  wait: 100ms\n");
    assert_int_equal(cfg->fleet.timeout_ms, SY_FLEET_TIMEOUT_MIN_MS);
    assert_int_equal(cfg->fleet.timeout_ms, 100);
    assert_string_equal(cfg->fleet.instance, "a");
    assert_int_equal(cfg->fleet.lease_ttl_ms, SY_FLEET_LEASE_MIN_MS);
    assert_int_equal(cfg->fleet.lease_ttl_ms, 2000);
    assert_int_equal(cfg->fleet.wait_ms, SY_FLEET_WAIT_MIN_MS);
    assert_int_equal(cfg->fleet.wait_ms, 100);
    sy_config_free(cfg);

    cfg = parse_ok(BASE ETCD_HEAD ONE_ENDPOINT "    timeout: 1m\n"
                                               "  instance: Replica-A.eu_west-1." A10 A10 A10 A10
                                               "abc\n"
                                               "  lease_ttl: 5m\n"
                                               "  wait: 10m\n");
    assert_int_equal(cfg->fleet.timeout_ms, SY_FLEET_TIMEOUT_MAX_MS);
    assert_int_equal(cfg->fleet.timeout_ms, 60000);
    assert_int_equal(strlen(cfg->fleet.instance), SY_FLEET_INSTANCE_MAX);
    assert_int_equal(cfg->fleet.lease_ttl_ms, SY_FLEET_LEASE_MAX_MS);
    assert_int_equal(cfg->fleet.lease_ttl_ms, 300000);
    assert_int_equal(cfg->fleet.wait_ms, SY_FLEET_WAIT_MAX_MS);
    assert_int_equal(cfg->fleet.wait_ms, 600000);
    sy_config_free(cfg);

    /* A plain number is seconds, as in every other duration; 3000ms is whole seconds. */
    cfg = parse_ok(BASE FLEET_HEAD "  lease_ttl: 30\n"
                                   "  wait: 2500ms\n");
    assert_int_equal(cfg->fleet.lease_ttl_ms, 30000);
    assert_int_equal(cfg->fleet.wait_ms, 2500);
    sy_config_free(cfg);
    cfg = parse_ok(BASE FLEET_HEAD "  lease_ttl: 3000ms\n");
    assert_int_equal(cfg->fleet.lease_ttl_ms, 3000);
    sy_config_free(cfg);

    /* SY_FLEET_MAX_ENDPOINTS endpoints. */
    char yaml[4096] = BASE ETCD_HEAD "    endpoints:\n";
    for (int i = 0; i < SY_FLEET_MAX_ENDPOINTS; i++)
        snprintf(yaml + strlen(yaml), sizeof(yaml) - strlen(yaml), "      - 127.0.0.1:%d\n",
                 2379 + i);
    cfg = parse_ok(yaml);
    assert_int_equal(cfg->fleet.n_endpoints, SY_FLEET_MAX_ENDPOINTS);
    assert_addr(&cfg->fleet.endpoints[15], "127.0.0.1", 2394);
    sy_config_free(cfg);
}

/* Names resolve like a cluster's endpoints: not at all when resolution is off. */
static void test_endpoint_names_follow_the_resolution_switch(void **state)
{
    (void)state;
    static const char yaml[] = BASE ETCD_HEAD "    endpoints: ['https://localhost:2379']\n";
    sy_config_set_resolve(false);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse(test_name, yaml, strlen(yaml), &d, &cfg);
    sy_config_set_resolve(true);
    print_diags(&d);
    assert_int_equal(rc, SY_ERR_INVALID);
    assert_null(cfg);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 8);
    assert_int_equal(d.v[0].col, 17);
    assert_non_null(strstr(d.v[0].msg, "bad fleet.etcd endpoint 'https://localhost:2379': host "
                                       "must be a numeric IPv4 address"));
    sy_diags_dispose(&d);

    cfg = parse_ok(yaml);
    assert_string_equal(cfg->fleet.endpoints[0].host, "localhost");
    assert_true(cfg->fleet.endpoints[0].tls);
    sy_config_free(cfg);
}

/* conf/examples/fleet.yaml, as the README points to it (test_00_check.py runs -t on it too). */
static void test_the_shipped_example_loads(void **state)
{
    (void)state;
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(SY_FIXTURES "/../../conf/examples/fleet.yaml", &d, &cfg);
    print_diags(&d);
    assert_int_equal(rc, SY_OK);
    const struct sy_fleet_spec *f = &cfg->fleet;
    assert_true(f->on);
    assert_int_equal(f->n_endpoints, 3);
    assert_addr(&f->endpoints[0], "127.0.0.1", 2379);
    assert_addr(&f->endpoints[1], "127.0.0.1", 22379);
    assert_addr(&f->endpoints[2], "127.0.0.1", 32379);
    assert_false(f->tls.on);
    assert_string_equal(f->prefix, "/switchyard/prod/");
    assert_string_equal(f->instance, "replica-a");
    assert_int_equal(f->lease_ttl_ms, 10000);
    sy_config_free(cfg);
    sy_diags_dispose(&d);
}

/*
 * Broken fleet sections. Each must report exactly these diagnostics, in this order, and
 * nothing else.
 */

struct want {
    int line, col;
    const char *msg; /* a substring of the message */
};

struct error_case {
    const char *name;
    const char *yaml;
    struct want want[3]; /* ends at the first NULL msg */
};

static const struct error_case error_cases[] = {
    {"test_rejects_a_fleet_that_is_not_a_mapping",
     BASE "fleet: on\n",
     {{6, 8, "fleet must be a mapping, got on"}}},
    {"test_rejects_a_fleet_without_etcd",
     BASE "fleet: {instance: a}\n",
     {{6, 8, "missing required key 'etcd' in fleet"}}},
    {"test_rejects_an_unknown_key_in_fleet",
     BASE FLEET_HEAD "  lease: 10s\n",
     {{8, 3, "unknown key 'lease' in fleet"}}},
    {"test_rejects_etcd_that_is_not_a_mapping",
     BASE "fleet:\n  etcd: [127.0.0.1:2379]\n",
     {{7, 9, "fleet.etcd must be a mapping, got a list"}}},
    {"test_rejects_an_unknown_key_in_etcd",
     BASE ETCD_HEAD ONE_ENDPOINT "    prefx: /a/\n",
     {{9, 5, "unknown key 'prefx' in fleet.etcd"}}},
    {"test_rejects_etcd_without_endpoints",
     BASE ETCD_HEAD "    prefix: /a/\n",
     {{8, 5, "missing required key 'endpoints' in fleet.etcd"}}},
    {"test_rejects_endpoints_that_are_not_a_list",
     BASE ETCD_HEAD "    endpoints: 127.0.0.1:2379\n",
     {{8, 16, "fleet.etcd.endpoints must be a list, got 127.0.0.1:2379"}}},
    {"test_rejects_an_empty_endpoint_list",
     BASE ETCD_HEAD "    endpoints: []\n",
     {{8, 16, "fleet.etcd.endpoints must have at least one entry"}}},
    {"test_rejects_more_than_16_endpoints",
     BASE ETCD_HEAD "    endpoints: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, 127.0.0.1:4, "
                    "127.0.0.1:5, 127.0.0.1:6, 127.0.0.1:7, 127.0.0.1:8,\n"
                    "      127.0.0.1:9, 127.0.0.1:10, 127.0.0.1:11, 127.0.0.1:12, 127.0.0.1:13, "
                    "127.0.0.1:14, 127.0.0.1:15, 127.0.0.1:16, 127.0.0.1:17, 127.0.0.1:18]\n",
     {{9, 118, "fleet.etcd.endpoints has more than 16 entries"}}},
    {"test_rejects_an_endpoint_that_is_not_a_string",
     BASE ETCD_HEAD "    endpoints: [{host: a}]\n",
     {{8, 17, "a fleet.etcd endpoint must be a string, got a mapping"}}},
    {"test_rejects_another_scheme",
     BASE ETCD_HEAD "    endpoints: ['grpc://127.0.0.1:2379']\n",
     {{8, 17,
       "bad fleet.etcd endpoint 'grpc://127.0.0.1:2379': the scheme must be http:// or https:// "
       "(or none: host:port)"}}},
    {"test_rejects_an_endpoint_with_a_path",
     BASE ETCD_HEAD "    endpoints: ['https://127.0.0.1:2379/v3']\n",
     {{8, 17,
       "bad fleet.etcd endpoint 'https://127.0.0.1:2379/v3': no path is allowed after "
       "host:port"}}},
    {"test_rejects_an_endpoint_without_a_host",
     BASE ETCD_HEAD "    endpoints: ['http://:2379']\n",
     {{8, 17, "bad fleet.etcd endpoint 'http://:2379': an endpoint needs a host"}}},
    {"test_rejects_an_endpoint_with_a_bad_port",
     BASE ETCD_HEAD "    endpoints: [127.0.0.1:70000]\n",
     {{8, 17, "bad fleet.etcd endpoint '127.0.0.1:70000': port must be a number 1..65535"}}},
    {"test_rejects_an_endpoint_without_a_port",
     BASE ETCD_HEAD "    endpoints: ['https://127.0.0.1']\n",
     {{8, 17, "bad fleet.etcd endpoint 'https://127.0.0.1': "}}},
    {"test_rejects_a_bad_ipv6_endpoint",
     BASE ETCD_HEAD "    endpoints: ['[::g]:2379']\n",
     {{8, 17, "bad fleet.etcd endpoint '[::g]:2379': bad IPv6 address"}}},
    {"test_rejects_an_empty_endpoint",
     BASE ETCD_HEAD "    endpoints: ['']\n",
     {{8, 17, "a fleet.etcd endpoint must not be empty"}}},
    {"test_rejects_http_beside_a_tls_block",
     BASE ETCD_HEAD "    endpoints: [127.0.0.1:2379, 'http://127.0.0.1:2380']\n"
                    "    tls: {verify: false}\n",
     {{8, 33,
       "fleet.etcd endpoint 'http://127.0.0.1:2380' is cleartext http:// but fleet.etcd.tls "
       "is written: every endpoint then speaks TLS (write https:// or host:port)"}}},
    {"test_rejects_tls_that_is_not_a_mapping",
     BASE ETCD_HEAD ONE_ENDPOINT "    tls: true\n",
     {{9, 10, "fleet.etcd.tls must be a mapping, got true"}}},
    {"test_rejects_an_unknown_key_in_tls",
     BASE ETCD_HEAD ONE_ENDPOINT "    tls: {verify: false, ca_file: x}\n",
     {{9, 26, "unknown key 'ca_file' in fleet.etcd.tls"}}},
    {"test_rejects_a_tls_verify_that_is_not_a_bool",
     BASE ETCD_HEAD ONE_ENDPOINT "    tls: {verify: maybe}\n",
     {{9, 19, "verify must be true or false, got maybe"}}},
    {"test_rejects_a_tls_cert_without_its_key",
     BASE ETCD_HEAD ONE_ENDPOINT "    tls: {cert: c.pem}\n",
     {{9, 17, "a client certificate needs both 'cert' and 'key' in fleet.etcd.tls"}}},
    {"test_rejects_an_unreadable_tls_ca",
     BASE ETCD_HEAD ONE_ENDPOINT "    tls: {ca: /nonexistent/ca.pem}\n",
     {{9, 15, "cannot read CA bundle '/nonexistent/ca.pem'"}}},
    {"test_rejects_a_tls_sni_that_is_an_address",
     BASE ETCD_HEAD ONE_ENDPOINT "    tls: {sni: '[::1]'}\n",
     {{9, 16, "bad sni '[::1]': an IP address is not a server name"}}},
    {"test_rejects_a_prefix_without_a_leading_slash",
     BASE ETCD_HEAD ONE_ENDPOINT "    prefix: switchyard/\n",
     {{9, 13,
       "fleet.etcd.prefix must begin with '/' and be printable ASCII without spaces, got "
       "switchyard/"}}},
    {"test_rejects_a_prefix_with_a_space",
     BASE ETCD_HEAD ONE_ENDPOINT "    prefix: '/a b/'\n",
     {{9, 13,
       "fleet.etcd.prefix must begin with '/' and be printable ASCII without spaces, "
       "got \"/a b/\""}}},
    {"test_rejects_a_prefix_beyond_ascii",
     BASE ETCD_HEAD ONE_ENDPOINT "    prefix: \"/caf\xc3\xa9/\"\n",
     {{9, 13, "fleet.etcd.prefix must begin with '/' and be printable ASCII without spaces"}}},
    {"test_rejects_a_prefix_with_a_control_character",
     BASE ETCD_HEAD ONE_ENDPOINT "    prefix: \"/a\\tb/\"\n",
     {{9, 13, "fleet.etcd.prefix must begin with '/' and be printable ASCII without spaces"}}},
    {"test_rejects_an_empty_prefix",
     BASE ETCD_HEAD ONE_ENDPOINT "    prefix: ''\n",
     {{9, 13, "fleet.etcd.prefix must not be empty"}}},
    {"test_rejects_a_prefix_longer_than_200_bytes_with_its_slash",
     BASE ETCD_HEAD ONE_ENDPOINT "    prefix: /" A100 A10 A10 A10 A10 A10 A10 A10 A10 A10
                                 "aaaaaaaaa\n",
     {{9, 13, "fleet.etcd.prefix must be at most 200 bytes with its final '/', got 201"}}},
    {"test_rejects_a_timeout_that_is_not_a_duration",
     BASE ETCD_HEAD ONE_ENDPOINT "    timeout: soon\n",
     {{9, 14, "fleet.etcd.timeout must be a duration such as 10s, 500ms, 2m or 1h, got soon"}}},
    {"test_rejects_a_timeout_below_100ms",
     BASE ETCD_HEAD ONE_ENDPOINT "    timeout: 99ms\n",
     {{9, 14, "fleet.etcd.timeout must be 100ms..60s, got 99ms"}}},
    {"test_rejects_a_timeout_of_0",
     BASE ETCD_HEAD ONE_ENDPOINT "    timeout: 0s\n",
     {{9, 14, "fleet.etcd.timeout must be 100ms..60s, got 0s"}}},
    {"test_rejects_a_timeout_above_60s",
     BASE ETCD_HEAD ONE_ENDPOINT "    timeout: 60001ms\n",
     {{9, 14, "fleet.etcd.timeout must be 100ms..60s, got 60001ms"}}},
    {"test_rejects_an_instance_with_a_slash",
     BASE FLEET_HEAD "  instance: a/b\n",
     {{8, 13,
       "bad fleet.instance 'a/b': use A-Z, a-z, 0-9, '.', '_' and '-', at most 63 "
       "characters"}}},
    {"test_rejects_an_instance_longer_than_63",
     BASE FLEET_HEAD "  instance: " A10 A10 A10 A10 A10 A10 "abcd\n",
     {{8, 13, "bad fleet.instance '" A10 A10 A10 A10 A10 A10 "abcd'"}}},
    {"test_rejects_an_empty_instance",
     BASE FLEET_HEAD "  instance: ''\n",
     {{8, 13, "fleet.instance must not be empty"}}},
    {"test_rejects_an_instance_that_is_a_list",
     BASE FLEET_HEAD "  instance: [a]\n",
     {{8, 13, "fleet.instance must be a string, got a list"}}},
    {"test_rejects_a_lease_ttl_below_2s",
     BASE FLEET_HEAD "  lease_ttl: 1s\n",
     {{8, 14, "fleet.lease_ttl must be 2s..300s, got 1s"}}},
    {"test_rejects_a_lease_ttl_above_300s",
     BASE FLEET_HEAD "  lease_ttl: 301s\n",
     {{8, 14, "fleet.lease_ttl must be 2s..300s, got 301s"}}},
    {"test_rejects_a_lease_ttl_that_is_not_whole_seconds",
     BASE FLEET_HEAD "  lease_ttl: 2500ms\n",
     {{8, 14, "fleet.lease_ttl must be whole seconds (etcd leases are), got 2500ms"}}},
    {"test_rejects_a_lease_ttl_that_is_not_a_duration",
     BASE FLEET_HEAD "  lease_ttl: 10 s\n",
     {{8, 14, "fleet.lease_ttl must be a duration such as 10s, 500ms, 2m or 1h, got 10 s"}}},
    {"test_rejects_a_wait_below_100ms",
     BASE FLEET_HEAD "  wait: 99ms\n",
     {{8, 9, "fleet.wait must be 100ms..600s, got 99ms"}}},
    {"test_rejects_a_wait_above_600s",
     BASE FLEET_HEAD "  wait: 601s\n",
     {{8, 9, "fleet.wait must be 100ms..600s, got 601s"}}},
    {"test_rejects_a_wait_that_is_not_a_duration",
     BASE FLEET_HEAD "  wait: forever\n",
     {{8, 9, "fleet.wait must be a duration such as 10s, 500ms, 2m or 1h, got forever"}}},
    {"test_reports_every_fleet_mistake_at_once",
     BASE ETCD_HEAD "    endpoints: ['ftp://127.0.0.1:21']\n"
                    "    timeout: 1h\n"
                    "  lease_ttl: 0\n",
     {{8, 17, "the scheme must be http:// or https://"},
      {9, 14, "fleet.etcd.timeout must be 100ms..60s, got 1h"},
      {10, 14, "fleet.lease_ttl must be 2s..300s, got 0"}}},
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

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_fleet_is_off_with_the_defaults_when_absent),
        cmocka_unit_test(test_a_minimal_fleet_takes_every_default),
        cmocka_unit_test(test_parses_every_endpoint_form),
        cmocka_unit_test(test_https_implies_tls_with_the_system_store),
        cmocka_unit_test(test_a_tls_block_makes_every_endpoint_tls),
        cmocka_unit_test(test_tls_paths_are_resolved_against_the_config_directory),
        cmocka_unit_test(test_prefix_gets_its_final_slash),
        cmocka_unit_test(test_accepts_each_bound),
        cmocka_unit_test(test_endpoint_names_follow_the_resolution_switch),
        cmocka_unit_test(test_the_shipped_example_loads),
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
    return cmocka_run_group_tests_name("routing/config_fleet", tests, NULL, NULL);
}
