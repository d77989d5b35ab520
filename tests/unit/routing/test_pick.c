/* SPDX-License-Identifier: MIT */
/* Unit tests for routing/pick.c: the choice of a cluster. The sticky properties are checked over
 * 100,000 keys from a seeded generator at every weight of a ramp (share within one point, keys
 * only ever move towards the cluster gaining weight, replicas agree), the hash is pinned by
 * reference and regression vectors, and force values are checked signed and unsigned. Tables
 * are built from YAML through the real loader; time and randomness are parameters. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "switchyard/config.h"
#include "switchyard/routing.h"

#include "../../../routing/table_internal.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define N_KEYS       100000
#define KEY_LEN      16

/* Cluster indices in base_yaml's order. */
enum { BLUE = 0, GREEN = 1, GRAY = 2 };

static const char base_yaml[] = "listen:\n"
                                "  - address: 127.0.0.1:8080\n"
                                "clusters:\n"
                                "  blue:\n"
                                "    endpoints: [127.0.0.1:9001]\n"
                                "  green:\n"
                                "    endpoints: [127.0.0.1:9002]\n"
                                "  gray:\n"
                                "    endpoints: [127.0.0.1:9004]\n";

/* The secret of the signed-force app, and a token for green minted with the command in
 * docs/routing.md: printf 'green.1767225600' | openssl dgst -sha256 -hmac "$SECRET" -r */
#define SECRET     "an-example-secret-of-32-bytes!!!"
#define DOC_EXPIRY 1767225600u
#define DOC_MAC    "1f90d6282474b9d3bb2c0eb15d98dc461a303a9ff3e8e45150d608a43220661c"
#define DOC_TOKEN  "green.1767225600." DOC_MAC
#define BEFORE_DOC (DOC_EXPIRY - 3600)

static struct sy_route_table *table_from(const char *apps)
{
    char text[4096];
    snprintf(text, sizeof(text), "%s%s", base_yaml, apps);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse("test.yaml", text, strlen(text), &d, &cfg);
    for (size_t i = 0; i < d.n; i++) {
        char line[512];
        sy_diag_format(&d.v[i], line, sizeof(line));
        print_message("  diag: %s\n", line);
    }
    assert_int_equal(rc, 0);
    sy_diags_dispose(&d);
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 1, &t), 0);
    return t;
}

/* A table with one catch-all app named `name`: weights blue and green, then `extra` lines. */
static struct sy_route_table *split_table(const char *name, unsigned blue, unsigned green,
                                          const char *extra)
{
    char apps[1024];
    snprintf(apps, sizeof(apps),
             "apps:\n"
             "  - name: %s\n"
             "    hosts: ['*']\n"
             "    weights: {blue: %u, green: %u}\n"
             "%s",
             name, blue, green, extra ? extra : "");
    return table_from(apps);
}

static const struct sy_route_app *the_app(const struct sy_route_table *t)
{
    const struct sy_route_app *a = sy_route_match(t, sy_slice_of("x", 1), sy_slice_of("/", 1));
    assert_non_null(a);
    return a;
}

static struct sy_header hdr(const char *name, const char *value)
{
    struct sy_header h = {sy_slice_of(name, strlen(name)), sy_slice_of(value, strlen(value))};
    return h;
}

/* A request carrying `n` header fields, at time BEFORE_DOC. */
static struct sy_route_req req_with(const struct sy_header *h, size_t n)
{
    struct sy_route_req r;
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.n_headers = n;
    r.now = BEFORE_DOC;
    return r;
}

static struct sy_route_choice pick(const struct sy_route_table *t, const struct sy_route_req *r)
{
    struct sy_route_choice ch;
    memset(&ch, 0x5a, sizeof(ch));
    sy_route_pick(t, the_app(t), r, &ch);
    return ch;
}

/* Picks with one header field. */
static struct sy_route_choice pick1(const struct sy_route_table *t, const char *name,
                                    const char *value)
{
    struct sy_header h = hdr(name, value);
    struct sy_route_req r = req_with(&h, 1);
    return pick(t, &r);
}

/* splitmix64 (Steele, Lea and Flood, 2014): a seeded, reproducible stream. */
static uint64_t next_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* N_KEYS random keys of KEY_LEN lower-case hex digits, as a browser's sticky cookie holds. */
static char (*make_keys(uint64_t seed))[KEY_LEN + 1]
{
    char(*keys)[KEY_LEN + 1] = malloc(N_KEYS * sizeof(*keys));
    assert_non_null(keys);
    for (size_t i = 0; i < N_KEYS; i++)
        snprintf(keys[i], sizeof(keys[i]), "%016llx", (unsigned long long)next_rand(&seed));
    return keys;
}

/* The cluster of every key, header-sticky, at blue = 100 - green_weight. The loop calls
 * sy_route_pick() directly: 100,000 keys at 101 weights, also under the sanitizers. */
static void clusters_at(unsigned green_weight, char (*keys)[KEY_LEN + 1], unsigned char *out)
{
    struct sy_route_table *t =
        split_table("chat", 100 - green_weight, green_weight, "    sticky: {header: x-user}\n");
    const struct sy_route_app *app = the_app(t);
    struct sy_header h = hdr("x-user", "");
    struct sy_route_req r = req_with(&h, 1);
    struct sy_route_choice ch;
    for (size_t i = 0; i < N_KEYS; i++) {
        h.value = sy_slice_of(keys[i], KEY_LEN);
        sy_route_pick(t, app, &r, &ch);
        if (ch.reason != SY_PICK_STICKY)
            fail_msg("key %s: reason %d", keys[i], ch.reason);
        out[i] = (unsigned char)ch.cluster;
    }
    sy_route_table_release(t);
}

/* -- the hash ------------------------------------------------------------------------------ */

static uint64_t openssl_siphash(const unsigned char key[16], const void *p, size_t len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    assert_non_null(mac);
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    size_t size = 8;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                           OSSL_PARAM_construct_end()};
    unsigned char out[8];
    size_t n = 0;
    assert_true(EVP_MAC_init(ctx, key, 16, params));
    assert_true(EVP_MAC_update(ctx, p, len));
    assert_true(EVP_MAC_final(ctx, out, &n, sizeof(out)));
    assert_int_equal(n, 8);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | out[i];
    return v;
}

static void test_siphash_matches_the_reference_vectors(void **state)
{
    unsigned char key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (unsigned char)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
    /* From the SipHash paper (appendix A) and the reference implementation's vectors.h. */
    assert_true(sy_pick_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    assert_true(sy_pick_siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
    /* Every length 0..63 (every tail shape) against OpenSSL's independent SipHash-2-4. */
    for (size_t len = 0; len < sizeof(msg); len++)
        assert_true(sy_pick_siphash24(key, msg, len) == openssl_siphash(key, msg, len));
}

static void test_sticky_bucket_is_siphash_of_app_nul_key_mod_10000(void **state)
{
    uint64_t seed = 7;
    char(*keys)[KEY_LEN + 1] = make_keys(seed);
    const unsigned char *k = (const unsigned char *)SY_STICKY_HASH_KEY;
    for (size_t i = 0; i < 1000; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "chat%c%s", 0, keys[i]);
        uint64_t h = openssl_siphash(k, msg, (size_t)n);
        assert_int_equal(sy_route_sticky_bucket("chat", keys[i], KEY_LEN), h % 10000);
    }
    free(keys);
}

/* The regression vectors of docs/routing.md. If this fails, the hash changed and every user of
 * every replica would move: change the code back, never the numbers. */
static void test_sticky_bucket_regression_vectors(void **state)
{
    assert_string_equal(SY_STICKY_HASH_KEY, "switchyard.stick");
    assert_int_equal(SY_STICKY_BUCKETS, 10000);
    assert_int_equal(sy_route_sticky_bucket("chat", "user-42", 7), 8806);
    assert_int_equal(sy_route_sticky_bucket("chat", "0123456789abcdef", 16), 8882);
    assert_int_equal(sy_route_sticky_bucket("chat", "", 0), 235);
    const unsigned char v4[4] = {192, 0, 2, 1};
    assert_int_equal(sy_route_sticky_bucket("chat", v4, 4), 600);
    unsigned char v6[16];
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", v6), 1);
    assert_int_equal(sy_route_sticky_bucket("chat", v6, 16), 2889);
}

/* -- sticky properties --------------------------------------------------------------------- */

/* The ramp 0 -> 100 over one key set, walked once and read by the two tests that follow:
 * ramp[w][i] is the cluster of key i at green = w. */
static char (*ramp_keys)[KEY_LEN + 1];
static unsigned char *ramp[101];

static int ramp_setup(void **state)
{
    ramp_keys = make_keys(20240601);
    for (unsigned w = 0; w <= 100; w++) {
        ramp[w] = malloc(N_KEYS);
        assert_non_null(ramp[w]);
        clusters_at(w, ramp_keys, ramp[w]);
    }
    return 0;
}

static int ramp_teardown(void **state)
{
    for (unsigned w = 0; w <= 100; w++) {
        free(ramp[w]);
        ramp[w] = NULL;
    }
    free(ramp_keys);
    ramp_keys = NULL;
    return 0;
}

static void test_share_on_green_is_within_one_point_at_every_weight(void **state)
{
    double worst = 0;
    for (unsigned w = 0; w <= 100; w++) {
        size_t green = 0;
        for (size_t i = 0; i < N_KEYS; i++)
            green += ramp[w][i] == GREEN;
        double share = 100.0 * (double)green / N_KEYS;
        double off = share > w ? share - w : w - share;
        if (off > worst)
            worst = off;
        if (off > 1.0)
            fail_msg("green=%u: %.3f%% of keys on green", w, share);
    }
    print_message("  worst deviation over green=0..100: %.3f points\n", worst);
}

static void test_ramp_up_never_moves_a_key_from_green_to_blue(void **state)
{
    size_t moved = 0;
    for (unsigned w = 1; w <= 100; w++) {
        for (size_t i = 0; i < N_KEYS; i++) {
            if (ramp[w - 1][i] == GREEN && ramp[w][i] != GREEN)
                fail_msg("key %s moved from green to blue at green=%u", ramp_keys[i], w);
            moved += ramp[w - 1][i] != ramp[w][i];
        }
    }
    /* Each key moved exactly once (all start on blue and end on green): none went back. */
    assert_int_equal(moved, N_KEYS);
    for (size_t i = 0; i < N_KEYS; i++) {
        assert_int_equal(ramp[0][i], BLUE);
        assert_int_equal(ramp[100][i], GREEN);
    }
}

static void test_ramp_down_never_moves_a_key_from_blue_to_green(void **state)
{
    char(*keys)[KEY_LEN + 1] = make_keys(99);
    unsigned char *now = malloc(N_KEYS), *prev = malloc(N_KEYS);
    assert_non_null(now);
    assert_non_null(prev);
    for (int w = 100; w >= 0; w--) {
        clusters_at((unsigned)w, keys, now);
        for (size_t i = 0; w < 100 && i < N_KEYS; i++)
            if (prev[i] == BLUE && now[i] != BLUE)
                fail_msg("key %s moved from blue to green at green=%d", keys[i], w);
        unsigned char *tmp = prev;
        prev = now;
        now = tmp;
    }
    /* At 0 everything is back on blue: a revert strands no sticky user. */
    for (size_t i = 0; i < N_KEYS; i++)
        assert_int_equal(prev[i], BLUE);
    free(now);
    free(prev);
    free(keys);
}

static void test_replicas_agree_key_by_key(void **state)
{
    static const char extra[] = "    sticky: {header: x-user}\n";
    struct sy_route_table *a = split_table("chat", 50, 50, extra);
    /* The second replica has served other traffic first: round-robin state plays no part. */
    struct sy_route_table *b = split_table("chat", 50, 50, extra);
    for (int i = 0; i < 7; i++)
        pick(b, NULL);
    char(*keys)[KEY_LEN + 1] = make_keys(3);
    size_t green = 0;
    for (size_t i = 0; i < 10000; i++) {
        struct sy_route_choice x = pick1(a, "x-user", keys[i]);
        struct sy_route_choice y = pick1(b, "X-User", keys[i]);
        assert_int_equal(x.cluster, y.cluster);
        green += x.cluster == GREEN;
    }
    assert_in_range(green, 4800, 5200);
    free(keys);
    sy_route_table_release(a);
    sy_route_table_release(b);
}

static void test_buckets_follow_ratios_that_do_not_sum_to_100(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {gray: 2, green: 3, blue: 5}\n"
                                          "    sticky: {header: x-user}\n");
    char(*keys)[KEY_LEN + 1] = make_keys(11);
    size_t n[3] = {0};
    for (size_t i = 0; i < N_KEYS; i++) {
        struct sy_route_choice ch = pick1(t, "x-user", keys[i]);
        unsigned b = sy_route_sticky_bucket("chat", keys[i], KEY_LEN);
        /* Cluster order, not the order written: blue [0,5000), green [5000,8000), gray. */
        assert_int_equal(ch.cluster, b < 5000 ? BLUE : b < 8000 ? GREEN : GRAY);
        n[ch.cluster]++;
    }
    assert_in_range(n[BLUE], 49000, 51000);
    assert_in_range(n[GREEN], 29000, 31000);
    assert_in_range(n[GRAY], 19000, 21000);
    free(keys);
    sy_route_table_release(t);
}

/* -- force --------------------------------------------------------------------------------- */

static const char force_extra[] = "    sticky: {header: x-user}\n"
                                  "    force: {header: x-switchyard-cluster, cookie: sy_force}\n";

static void test_forced_header_reaches_a_weight_0_cluster(void **state)
{
    struct sy_route_table *t = split_table("chat", 100, 0, force_extra);
    struct sy_header h[] = {hdr("x-user", "u1"), hdr("X-Switchyard-Cluster", "green")};
    struct sy_route_req r = req_with(h, 2);
    for (int i = 0; i < 10; i++) {
        struct sy_route_choice ch = pick(t, &r);
        assert_int_equal(ch.cluster, GREEN);
        assert_int_equal(ch.reason, SY_PICK_FORCE);
        assert_int_equal(ch.set_cookie_len, 0);
    }
    /* Without the header the same user is sticky on blue, the only cluster with weight. */
    struct sy_route_choice ch = pick(t, &(struct sy_route_req){.headers = h, .n_headers = 1});
    assert_int_equal(ch.cluster, BLUE);
    assert_int_equal(ch.reason, SY_PICK_STICKY);
    assert_int_equal(sy_route_force_ignored(t, the_app(t)), 0);
    sy_route_table_release(t);
}

static void test_forced_cookie_reaches_a_weight_0_cluster(void **state)
{
    struct sy_route_table *t = split_table("chat", 100, 0, force_extra);
    struct sy_route_choice ch = pick1(t, "cookie", "a=1; sy_force=green; b=2");
    assert_int_equal(ch.cluster, GREEN);
    assert_int_equal(ch.reason, SY_PICK_FORCE);
    sy_route_table_release(t);
}

static void test_force_header_comes_before_force_cookie(void **state)
{
    struct sy_route_table *t = split_table("chat", 100, 0, force_extra);
    struct sy_header both[] = {hdr("cookie", "sy_force=green"),
                               hdr("x-switchyard-cluster", "blue")};
    struct sy_route_req r = req_with(both, 2);
    assert_int_equal(pick(t, &r).cluster, BLUE);
    assert_int_equal(pick(t, &r).reason, SY_PICK_FORCE);
    /* A header that names no cluster is counted, and the cookie still decides. */
    struct sy_header bad[] = {hdr("cookie", "sy_force=green"),
                              hdr("x-switchyard-cluster", "purple")};
    r = req_with(bad, 2);
    assert_int_equal(pick(t, &r).cluster, GREEN);
    assert_int_equal(sy_route_force_ignored(t, the_app(t)), 1);
    sy_route_table_release(t);
}

static void test_unknown_force_value_is_ignored_and_counted(void **state)
{
    struct sy_route_table *t = table_from("apps:\n"
                                          "  - name: chat\n"
                                          "    hosts: ['*']\n"
                                          "    weights: {blue: 100, green: 0}\n"
                                          "    force: {header: x-sy}\n"
                                          "  - name: other\n"
                                          "    hosts: [other.example.com]\n"
                                          "    weights: {blue: 1}\n"
                                          "    force: {header: x-sy}\n");
    /* gray is a cluster of the file but not of this app; names are case-sensitive. */
    static const char *const bad[] = {"purple", "Green",     "gray",
                                      "green ", "green.1.2", "blue,green"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct sy_route_choice ch = pick1(t, "x-sy", bad[i]);
        assert_int_equal(ch.cluster, BLUE);
        assert_int_equal(ch.reason, SY_PICK_WEIGHT);
    }
    /* An empty value is no value, not a wrong one. */
    assert_int_equal(pick1(t, "x-sy", "").reason, SY_PICK_WEIGHT);
    assert_int_equal(sy_route_force_ignored(t, the_app(t)), ARRAY_LEN(bad));
    const struct sy_route_app *other =
        sy_route_match(t, sy_slice_of("other.example.com", 17), sy_slice_of("/", 1));
    assert_int_equal(sy_route_force_ignored(t, other), 0);
    sy_route_table_release(t);
}

static const char signed_extra[] =
    "    force: {header: x-sy, cookie: sy_force, secret: '" SECRET "'}\n";

/* CLUSTER.EXPIRY.MAC, the MAC computed here with OpenSSL's HMAC() one-shot. */
static void mint(char *out, size_t size, const char *cluster, unsigned long long expiry,
                 const char *secret)
{
    char msg[128];
    int n = snprintf(msg, sizeof(msg), "%s.%llu", cluster, expiry);
    unsigned char mac[32];
    unsigned mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, (size_t)n,
                         mac, &mac_len));
    assert_int_equal(mac_len, 32);
    int o = snprintf(out, size, "%s.", msg);
    for (unsigned i = 0; i < mac_len; i++)
        o += snprintf(out + o, size - (size_t)o, "%02x", mac[i]);
}

static void test_signed_force_value_is_accepted(void **state)
{
    struct sy_route_table *t = split_table("chat", 100, 0, signed_extra);
    char token[160];
    mint(token, sizeof(token), "green", BEFORE_DOC + 1, SECRET);
    struct sy_route_choice ch = pick1(t, "x-sy", token);
    assert_int_equal(ch.cluster, GREEN);
    assert_int_equal(ch.reason, SY_PICK_FORCE);
    char cookie[200];
    snprintf(cookie, sizeof(cookie), "sy_force=%s", token);
    assert_int_equal(pick1(t, "cookie", cookie).cluster, GREEN);
    /* blue is signed just as well. */
    mint(token, sizeof(token), "blue", BEFORE_DOC + 1, SECRET);
    assert_int_equal(pick1(t, "x-sy", token).reason, SY_PICK_FORCE);
    assert_int_equal(sy_route_force_ignored(t, the_app(t)), 0);
    sy_route_table_release(t);
}

static void test_force_token_minted_by_the_documented_command_is_accepted(void **state)
{
    struct sy_route_table *t = split_table("chat", 100, 0, signed_extra);
    struct sy_route_choice ch = pick1(t, "x-sy", DOC_TOKEN);
    assert_int_equal(ch.cluster, GREEN);
    assert_int_equal(ch.reason, SY_PICK_FORCE);
    char mine[160];
    mint(mine, sizeof(mine), "green", DOC_EXPIRY, SECRET);
    assert_string_equal(mine, DOC_TOKEN);
    sy_route_table_release(t);
}

static void test_unsigned_expired_and_tampered_force_values_are_ignored(void **state)
{
    struct sy_route_table *t = split_table("chat", 100, 0, signed_extra);
    char v[16][200];
    size_t n = 0;
    snprintf(v[n++], sizeof(v[0]), "green");                     /* unsigned */
    snprintf(v[n++], sizeof(v[0]), "green.%u", DOC_EXPIRY);      /* no MAC */
    mint(v[n++], sizeof(v[0]), "green", BEFORE_DOC, SECRET);     /* expires now: expired */
    mint(v[n++], sizeof(v[0]), "green", BEFORE_DOC - 1, SECRET); /* expired */
    mint(v[n++], sizeof(v[0]), "green", DOC_EXPIRY, "another-secret-of-32-bytes!!!!!!");
    mint(v[n++], sizeof(v[0]), "purple", DOC_EXPIRY, SECRET); /* not a cluster of the app */
    snprintf(v[n++], sizeof(v[0]), "%s", DOC_TOKEN);
    v[n - 1][strlen(v[n - 1]) - 1] ^= 1;                               /* last hex digit changed */
    snprintf(v[n++], sizeof(v[0]), "blue.%u.%s", DOC_EXPIRY, DOC_MAC); /* green's MAC */
    snprintf(v[n++], sizeof(v[0]), "green.%u.%s", DOC_EXPIRY + 1, DOC_MAC); /* later expiry */
    snprintf(v[n++], sizeof(v[0]), "green.0%u.%s", DOC_EXPIRY, DOC_MAC);    /* other digits */
    snprintf(v[n++], sizeof(v[0]),
             "green.1767225600.1F90D6282474B9D3BB2C0EB15D98DC461A303A9FF3E8E45150D608A43220661C");
    snprintf(v[n++], sizeof(v[0]), "%s0", DOC_TOKEN); /* too long */
    snprintf(v[n++], sizeof(v[0]), "green.+1767225600.%s", DOC_MAC);
    snprintf(v[n++], sizeof(v[0]), "green.99999999999999999999999.%s", DOC_MAC);
    snprintf(v[n++], sizeof(v[0]), "green..%s", DOC_MAC);
    for (size_t i = 0; i < n; i++) {
        struct sy_route_choice ch = pick1(t, "x-sy", v[i]);
        if (ch.cluster != BLUE || ch.reason != SY_PICK_WEIGHT)
            fail_msg("accepted %s", v[i]);
    }
    assert_int_equal(sy_route_force_ignored(t, the_app(t)), n);
    /* The documented token is good until its expiry, and not at it. */
    struct sy_header h = hdr("x-sy", DOC_TOKEN);
    struct sy_route_req r = req_with(&h, 1);
    r.now = DOC_EXPIRY - 1;
    assert_int_equal(pick(t, &r).reason, SY_PICK_FORCE);
    r.now = DOC_EXPIRY;
    assert_int_equal(pick(t, &r).reason, SY_PICK_WEIGHT);
    sy_route_table_release(t);
}

/* -- cookie sticky ------------------------------------------------------------------------- */

static const char cookie_extra[] = "    sticky: {cookie: sy_web, max_age: 1h}\n";

static void test_cookieless_request_gets_a_new_key_in_set_cookie(void **state)
{
    struct sy_route_table *t = split_table("chat", 50, 50, cookie_extra);
    struct sy_route_req r = req_with(NULL, 0);
    r.rnd = 0x0123456789abcdefULL;
    struct sy_route_choice ch = pick(t, &r);
    assert_int_equal(ch.reason, SY_PICK_STICKY);
    assert_string_equal(ch.set_cookie,
                        "sy_web=0123456789abcdef; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax");
    assert_int_equal(ch.set_cookie_len, strlen(ch.set_cookie));
    /* The new key decided this request: bucket 8882 of 10000 is green at 50/50. */
    assert_int_equal(ch.cluster, GREEN);

    /* Every fresh client is placed by its own key, and keeps its cluster once it sends it. */
    size_t seen[2] = {0};
    uint64_t seed = 5;
    for (int i = 0; i < 200; i++) {
        r.rnd = next_rand(&seed);
        struct sy_route_choice first = pick(t, &r);
        assert_true(first.set_cookie_len > 0);
        char cookie[64];
        snprintf(cookie, sizeof(cookie), "%.*s", (int)strcspn(first.set_cookie, ";"),
                 first.set_cookie);
        for (int j = 0; j < 5; j++) {
            struct sy_route_choice again = pick1(t, "Cookie", cookie);
            assert_int_equal(again.cluster, first.cluster);
            assert_int_equal(again.reason, SY_PICK_STICKY);
            assert_int_equal(again.set_cookie_len, 0);
            assert_string_equal(again.set_cookie, "");
        }
        seen[first.cluster]++;
    }
    assert_true(seen[BLUE] > 50 && seen[GREEN] > 50);
    sy_route_table_release(t);
}

static void test_set_cookie_is_secure_only_with_tls(void **state)
{
    struct sy_route_table *t = split_table("chat", 50, 50, "    sticky: {cookie: sy}\n");
    struct sy_route_req r = req_with(NULL, 0);
    r.rnd = 0xfedcba9876543210ULL;
    r.tls = true;
    struct sy_route_choice ch = pick(t, &r);
    assert_string_equal(ch.set_cookie, "sy=fedcba9876543210; Path=/; Max-Age=2592000; HttpOnly; "
                                       "SameSite=Lax; Secure");
    r.tls = false;
    ch = pick(t, &r);
    assert_null(strstr(ch.set_cookie, "Secure"));
    sy_route_table_release(t);
}

static void test_longest_set_cookie_fits(void **state)
{
    char extra[256];
    snprintf(extra, sizeof(extra), "    sticky: {cookie: %0*d, max_age: 400d}\n",
             SY_COOKIE_NAME_MAX, 7);
    struct sy_route_table *t = split_table("chat", 50, 50, extra);
    struct sy_route_req r = req_with(NULL, 0);
    r.tls = true;
    r.rnd = UINT64_MAX;
    struct sy_route_choice ch = pick(t, &r);
    assert_int_equal(ch.set_cookie_len, strlen(ch.set_cookie));
    assert_non_null(strstr(ch.set_cookie, "=ffffffffffffffff; Path=/; Max-Age=34560000; HttpOnly; "
                                          "SameSite=Lax; Secure"));
    sy_route_table_release(t);
}

struct cookie_case {
    const char *fields[2]; /* Cookie field values; NULL ends */
    const char *want;      /* value of sy_web, or NULL when absent */
};

static const struct cookie_case cookie_cases[] = {
    {{"sy_web=k1"}, "k1"},
    {{"a=1; sy_web=k2; b=2"}, "k2"},
    {{"a=1;sy_web=k3;b=2"}, "k3"},
    {{"sy_web2=x; xsy_web=y; sy_web=k4"}, "k4"},
    {{"a=1", "sy_web=k5"}, "k5"}, /* HTTP/2 sends one field per cookie */
    {{"sy_web=first; sy_web=second"}, "first"},
    {{"sy_web=\"k6\""}, "k6"},
    {{"  sy_web = k7 ;"}, "k7"},
    {{"sy_web=a=b"}, "a=b"},
    {{"SY_WEB=k8"}, NULL}, /* names are case-sensitive */
    {{"sy_web"}, NULL},
    {{"a=1; b=2"}, NULL},
    {{""}, NULL},
    {{"sy_web="}, ""},
};

static void test_cookie_is_found_by_exact_name_in_any_cookie_field(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(cookie_cases); i++) {
        const struct cookie_case *c = &cookie_cases[i];
        struct sy_header h[3] = {hdr("x-other", "sy_web=nope")};
        size_t n = 1;
        for (size_t j = 0; j < 2 && c->fields[j]; j++)
            h[n++] = hdr(j ? "COOKIE" : "cookie", c->fields[j]);
        struct sy_route_req r = req_with(h, n);
        struct sy_slice v;
        bool found = sy_pick_find_cookie(&r, "sy_web", &v);
        if (found != (c->want != NULL) ||
            (found && (v.len != strlen(c->want) || memcmp(v.p, c->want, v.len) != 0)))
            fail_msg("case %zu (%s): got %s '%.*s'", i, c->fields[0], found ? "found" : "none",
                     found ? (int)v.len : 0, found ? v.p : "");
    }
}

static void test_empty_or_foreign_cookie_gets_a_new_key(void **state)
{
    struct sy_route_table *t = split_table("chat", 50, 50, cookie_extra);
    static const char *const values[] = {"sy_web=", "SY_WEB=abc", "other=1"};
    for (size_t i = 0; i < ARRAY_LEN(values); i++) {
        struct sy_route_choice ch = pick1(t, "cookie", values[i]);
        assert_int_equal(ch.reason, SY_PICK_STICKY);
        assert_true(ch.set_cookie_len > 0);
    }
    /* A key the proxy did not mint is still a key: the cookie holds keys, never clusters. */
    struct sy_route_choice ch = pick1(t, "cookie", "sy_web=user-42");
    assert_int_equal(ch.set_cookie_len, 0);
    assert_int_equal(ch.cluster, GREEN); /* bucket 8806 of 10000 */
    sy_route_table_release(t);
}

/* -- header and source address ------------------------------------------------------------- */

static void test_header_sticky_uses_the_header_value(void **state)
{
    struct sy_route_table *t = split_table("chat", 50, 50, "    sticky: {header: X-User-Id}\n");
    /* bucket("chat", "user-42") = 8806: green at 50/50. */
    for (int i = 0; i < 20; i++) {
        struct sy_route_choice ch = pick1(t, i & 1 ? "x-user-id" : "X-USER-ID", "user-42");
        assert_int_equal(ch.cluster, GREEN);
        assert_int_equal(ch.reason, SY_PICK_STICKY);
        assert_int_equal(ch.set_cookie_len, 0);
    }
    /* No header, or an empty one: no key, so the weights alternate. */
    struct sy_route_choice a = pick1(t, "x-other", "user-42");
    struct sy_route_choice b = pick1(t, "x-user-id", "");
    assert_int_equal(a.reason, SY_PICK_WEIGHT);
    assert_int_equal(b.reason, SY_PICK_WEIGHT);
    assert_int_not_equal(a.cluster, b.cluster);
    assert_int_equal(a.set_cookie_len + b.set_cookie_len, 0);
    sy_route_table_release(t);
}

static struct sy_route_choice pick_from(const struct sy_route_table *t, const struct sockaddr *sa)
{
    struct sy_route_req r = req_with(NULL, 0);
    r.client = sa;
    return pick(t, &r);
}

static void test_source_ip_sticky_over_ipv4_and_ipv6(void **state)
{
    struct sy_route_table *t = split_table("chat", 50, 50, "    sticky: {source_ip: true}\n");
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
    assert_int_equal(inet_pton(AF_INET, "192.0.2.1", &a4.sin_addr), 1);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(40001)};
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr), 1);
    struct sockaddr_in6 mapped = {.sin6_family = AF_INET6, .sin6_port = htons(40002)};
    assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.1", &mapped.sin6_addr), 1);

    /* Regression buckets: 192.0.2.1 -> 600 (blue), 2001:db8::1 -> 2889 (blue). */
    struct sy_route_choice ch = pick_from(t, (struct sockaddr *)&a4);
    assert_int_equal(ch.reason, SY_PICK_STICKY);
    assert_int_equal(ch.cluster, BLUE);
    ch = pick_from(t, (struct sockaddr *)&a6);
    assert_int_equal(ch.reason, SY_PICK_STICKY);
    assert_int_equal(ch.cluster, BLUE);

    /* Over many addresses each lands where its address bytes say, whatever the port. */
    uint64_t seed = 17;
    size_t green = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t x = next_rand(&seed);
        memcpy(&a4.sin_addr, &x, 4);
        a4.sin_port = (uint16_t)x;
        memcpy(a6.sin6_addr.s6_addr, &x, 8);
        memcpy(a6.sin6_addr.s6_addr + 8, &x, 8);
        memcpy(mapped.sin6_addr.s6_addr + 12, &x, 4);
        size_t c4 = pick_from(t, (struct sockaddr *)&a4).cluster;
        size_t c6 = pick_from(t, (struct sockaddr *)&a6).cluster;
        unsigned b4 = sy_route_sticky_bucket("chat", &a4.sin_addr, 4);
        unsigned b6 = sy_route_sticky_bucket("chat", a6.sin6_addr.s6_addr, 16);
        assert_int_equal(c4, b4 < 5000 ? BLUE : GREEN);
        assert_int_equal(c6, b6 < 5000 ? BLUE : GREEN);
        /* A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d: same key. */
        assert_int_equal(pick_from(t, (struct sockaddr *)&mapped).cluster, c4);
        green += c4 == GREEN;
    }
    assert_in_range(green, 800, 1200);

    /* No address, or not an IP one: no key. */
    assert_int_equal(pick_from(t, NULL).reason, SY_PICK_WEIGHT);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    assert_int_equal(pick_from(t, (struct sockaddr *)&un).reason, SY_PICK_WEIGHT);
    sy_route_table_release(t);
}

/* -- the rest ------------------------------------------------------------------------------ */

static void test_no_request_means_weights_only(void **state)
{
    struct sy_route_table *t = split_table("chat", 50, 50, cookie_extra);
    struct sy_route_choice a = pick(t, NULL), b = pick(t, NULL);
    assert_int_equal(a.reason, SY_PICK_WEIGHT);
    assert_int_equal(a.set_cookie_len, 0);
    assert_int_not_equal(a.cluster, b.cluster);
    sy_route_table_release(t);
}

static void test_table_refuses_a_sticky_cookie_name_too_long_for_set_cookie(void **state)
{
    static const char text[] = "listen: [{address: 127.0.0.1:8080}]\n"
                               "clusters: {blue: {endpoints: [127.0.0.1:9001]}}\n"
                               "apps:\n"
                               "  - name: chat\n"
                               "    hosts: ['*']\n"
                               "    weights: {blue: 1}\n"
                               "    sticky: {cookie: sy}\n";
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    assert_int_equal(sy_config_parse("t.yaml", text, strlen(text), &d, &cfg), 0);
    sy_diags_dispose(&d);
    /* A hand-made spec bypasses the loader's check; the table checks again. */
    free(cfg->apps[0].sticky.name);
    cfg->apps[0].sticky.name = malloc(SY_COOKIE_NAME_MAX + 2);
    memset(cfg->apps[0].sticky.name, 'a', SY_COOKIE_NAME_MAX + 1);
    cfg->apps[0].sticky.name[SY_COOKIE_NAME_MAX + 1] = '\0';
    struct sy_route_table *t = NULL;
    assert_int_equal(sy_route_table_new(cfg, 1, &t), SY_ERR_INVALID);
    assert_null(t);
    sy_config_free(cfg); /* still the caller's */
}

/* The pick says which rule decided, so that `explain` and the access log never pick again. */
static void test_pick_reports_the_rule_that_decided(void **state)
{
    struct sy_route_table *t = split_table("chat", 100, 0, force_extra);
    struct sy_header both[] = {hdr("cookie", "sy_force=green"),
                               hdr("x-switchyard-cluster", "green")};
    struct sy_route_req r = req_with(both, 2);
    assert_int_equal(pick(t, &r).rule, SY_RULE_FORCE_HEADER);
    assert_int_equal(pick1(t, "cookie", "sy_force=green").rule, SY_RULE_FORCE_COOKIE);
    /* A force header that names no cluster: the cookie decides. */
    struct sy_header bad[] = {hdr("cookie", "sy_force=green"),
                              hdr("x-switchyard-cluster", "purple")};
    r = req_with(bad, 2);
    assert_int_equal(pick(t, &r).rule, SY_RULE_FORCE_COOKIE);
    assert_int_equal(pick1(t, "x-user", "u1").rule, SY_RULE_STICKY);
    assert_int_equal(pick1(t, "x-other", "u1").rule, SY_RULE_WEIGHTS);
    struct sy_route_choice ch;
    sy_route_pick_peek(t, the_app(t), &r, &ch);
    assert_int_equal(ch.rule, SY_RULE_FORCE_COOKIE);
    sy_route_table_release(t);
    assert_string_equal(sy_pick_rule_name(SY_RULE_WEIGHTS), "weights");
    assert_string_equal(sy_pick_rule_name(SY_RULE_STICKY), "sticky");
    assert_string_equal(sy_pick_rule_name(SY_RULE_FORCE_HEADER), "force_header");
    assert_string_equal(sy_pick_rule_name(SY_RULE_FORCE_COOKIE), "force_cookie");
}

static void test_reason_names(void **state)
{
    assert_string_equal(sy_pick_reason_name(SY_PICK_WEIGHT), "weight");
    assert_string_equal(sy_pick_reason_name(SY_PICK_STICKY), "sticky");
    assert_string_equal(sy_pick_reason_name(SY_PICK_FORCE), "force");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_matches_the_reference_vectors),
        cmocka_unit_test(test_pick_reports_the_rule_that_decided),
        cmocka_unit_test(test_sticky_bucket_is_siphash_of_app_nul_key_mod_10000),
        cmocka_unit_test(test_sticky_bucket_regression_vectors),
        cmocka_unit_test(test_ramp_down_never_moves_a_key_from_blue_to_green),
        cmocka_unit_test(test_replicas_agree_key_by_key),
        cmocka_unit_test(test_buckets_follow_ratios_that_do_not_sum_to_100),
        cmocka_unit_test(test_forced_header_reaches_a_weight_0_cluster),
        cmocka_unit_test(test_forced_cookie_reaches_a_weight_0_cluster),
        cmocka_unit_test(test_force_header_comes_before_force_cookie),
        cmocka_unit_test(test_unknown_force_value_is_ignored_and_counted),
        cmocka_unit_test(test_signed_force_value_is_accepted),
        cmocka_unit_test(test_force_token_minted_by_the_documented_command_is_accepted),
        cmocka_unit_test(test_unsigned_expired_and_tampered_force_values_are_ignored),
        cmocka_unit_test(test_cookieless_request_gets_a_new_key_in_set_cookie),
        cmocka_unit_test(test_set_cookie_is_secure_only_with_tls),
        cmocka_unit_test(test_longest_set_cookie_fits),
        cmocka_unit_test(test_cookie_is_found_by_exact_name_in_any_cookie_field),
        cmocka_unit_test(test_empty_or_foreign_cookie_gets_a_new_key),
        cmocka_unit_test(test_header_sticky_uses_the_header_value),
        cmocka_unit_test(test_source_ip_sticky_over_ipv4_and_ipv6),
        cmocka_unit_test(test_no_request_means_weights_only),
        cmocka_unit_test(test_table_refuses_a_sticky_cookie_name_too_long_for_set_cookie),
        cmocka_unit_test(test_reason_names),
    };
    /* These two read one walk of the ramp, made once by the group's setup. */
    const struct CMUnitTest ramp_tests[] = {
        cmocka_unit_test(test_share_on_green_is_within_one_point_at_every_weight),
        cmocka_unit_test(test_ramp_up_never_moves_a_key_from_green_to_blue),
    };
    int failed =
        cmocka_run_group_tests_name("routing/pick ramp", ramp_tests, ramp_setup, ramp_teardown);
    return failed + cmocka_run_group_tests_name("routing/pick", tests, NULL, NULL);
}
