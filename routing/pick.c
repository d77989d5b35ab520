/* SPDX-License-Identifier: MIT */
/* The choice of a cluster for one request: force, then sticky key, then smooth weighted
 * round-robin (docs/routing.md). A sticky key is hashed with SipHash-2-4 under a fixed key into
 * one of 10000 buckets, and each of the app's clusters owns a run of buckets proportional to its
 * weight, laid out in the table's cluster order. The answer depends only on the app name, the
 * key and the weights, so every replica and every restart agrees, and moving weight from one
 * cluster to the next moves only the keys whose buckets change hands. The request path neither
 * locks nor allocates, except to check the HMAC of a signed force value. */
#include "switchyard/routing.h"

#include <assert.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "switchyard/health.h"

#include "table_internal.h"

#define MAC_HEX_LEN   64 /* HMAC-SHA256, lower-case hex */
#define EXPIRY_DIGITS 20 /* UINT64_MAX has 20 */

/* The longest Set-Cookie value new_cookie() writes: NAME=KEY; Path=/; Max-Age=N; HttpOnly;
 * SameSite=Lax; Secure, with N at most 8 digits (400 days). */
_Static_assert(SY_COOKIE_NAME_MAX + 1 + 16 + sizeof("; Path=/; Max-Age=") - 1 + 8 +
                       sizeof("; HttpOnly; SameSite=Lax; Secure") - 1 <
                   SY_SET_COOKIE_MAX,
               "SY_SET_COOKIE_MAX cannot hold the longest cookie");
_Static_assert(SY_STICKY_MAX_AGE_MAX <= 99999999, "max_age has more than 8 digits");
_Static_assert(sizeof(SY_STICKY_HASH_KEY) == 16 + 1, "the SipHash key is 16 bytes");

/* -- SipHash-2-4 ---------------------------------------------------------------------------- */

/* Written from the paper (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012),
 * streaming so that the app name and the key are hashed without being copied together. */
struct sip {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* the bytes of an unfinished word, little-endian */
    size_t len;    /* bytes absorbed so far */
};

static inline uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* `rounds` SipRounds. The state is copied into locals and back, which keeps unoptimised and
 * sanitizer builds (the unit tests hash millions of keys) from touching memory each step. */
static void sip_rounds(struct sip *s, int rounds)
{
    uint64_t v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3;
    for (int i = 0; i < rounds; i++) {
        v0 += v1;
        v1 = rotl(v1, 13);
        v1 ^= v0;
        v0 = rotl(v0, 32);
        v2 += v3;
        v3 = rotl(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = rotl(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = rotl(v1, 17);
        v1 ^= v2;
        v2 = rotl(v2, 32);
    }
    s->v0 = v0;
    s->v1 = v1;
    s->v2 = v2;
    s->v3 = v3;
}

/* One message word: c = 2 compression rounds. */
static inline void sip_word(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_rounds(s, 2);
    s->v0 ^= m;
}

static void sip_init(struct sip *s, const unsigned char key[16])
{
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    s->v0 = k0 ^ 0x736f6d6570736575ULL; /* "somepseudorandomlygeneratedbytes" */
    s->v1 = k1 ^ 0x646f72616e646f6dULL;
    s->v2 = k0 ^ 0x6c7967656e657261ULL;
    s->v3 = k1 ^ 0x7465646279746573ULL;
    s->tail = 0;
    s->len = 0;
}

static void sip_update(struct sip *s, const void *p, size_t n)
{
    const unsigned char *b = p, *end = b + n;
    /* Finish a word begun by the previous update, then whole words, then a new tail. */
    while (b < end && (s->len & 7) != 0) {
        s->tail |= (uint64_t)*b++ << (8 * (s->len & 7));
        if ((++s->len & 7) == 0) {
            sip_word(s, s->tail);
            s->tail = 0;
        }
    }
    for (; end - b >= 8; b += 8, s->len += 8)
        sip_word(s, load_le64(b));
    for (unsigned shift = 0; b < end; shift += 8, s->len++)
        s->tail |= (uint64_t)*b++ << shift;
}

static uint64_t sip_final(struct sip *s)
{
    /* The last word carries the length mod 256 in its top byte; then d = 4 final rounds. */
    sip_word(s, ((uint64_t)(s->len & 0xff) << 56) | s->tail);
    s->v2 ^= 0xff;
    sip_rounds(s, 4);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t sy_pick_siphash24(const unsigned char key[16], const void *p, size_t len)
{
    struct sip s;
    sip_init(&s, key);
    sip_update(&s, p, len);
    return sip_final(&s);
}

unsigned sy_route_sticky_bucket(const char *app_name, const void *key, size_t len)
{
    struct sip s;
    sip_init(&s, (const unsigned char *)SY_STICKY_HASH_KEY);
    /* The name with its NUL: app names hold no NUL, so (name, key) pairs never collide by
     * shifting bytes from one to the other. */
    sip_update(&s, app_name, strlen(app_name) + 1);
    sip_update(&s, key, len);
    return (unsigned)(sip_final(&s) % SY_STICKY_BUCKETS);
}

/* -- compile ------------------------------------------------------------------------------- */

static EVP_MAC_CTX *hmac_sha256_new(const char *key, size_t len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!mac)
        return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (!ctx)
        return NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_init(ctx, (const unsigned char *)key, len, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int sy_pick_app_init(struct app_rt *a)
{
    const struct sy_app_spec *spec = a->spec;
    const struct sy_sticky_spec *st = &spec->sticky;
    if (st->by == SY_STICKY_COOKIE && (!st->name || strlen(st->name) > SY_COOKIE_NAME_MAX ||
                                       st->max_age_s == 0 || st->max_age_s > SY_STICKY_MAX_AGE_MAX))
        return SY_ERR_INVALID;
    if (st->by == SY_STICKY_HEADER && !st->name)
        return SY_ERR_INVALID;

    uint64_t total = 0;
    for (size_t i = 0; i < a->n_weights; i++)
        total += a->weights[i].weight;
    if (total == 0)
        return SY_ERR_INVALID;
    a->bucket_end = sy_xcalloc(a->n_weights, sizeof(*a->bucket_end));
    uint64_t sum = 0;
    for (size_t i = 0; i < a->n_weights; i++) {
        sum += a->weights[i].weight;
        a->bucket_end[i] = (uint32_t)(sum * SY_STICKY_BUCKETS / total);
    }

    if (spec->force.secret) {
        a->force_mac = hmac_sha256_new(spec->force.secret, spec->force.secret_len);
        if (!a->force_mac) {
            unsigned long e = ERR_get_error();
            char why[256];
            ERR_error_string_n(e, why, sizeof(why));
            sy_log(SY_LOG_ERROR, "route", "cannot set up hmac-sha256 for app '%s': %s",
                   a->pub.name ? a->pub.name : "?", e ? why : "unknown error");
            ERR_clear_error();
            return SY_ERR_SYS;
        }
    }
    return 0;
}

void sy_pick_app_dispose(struct app_rt *a)
{
    free(a->bucket_end);
    a->bucket_end = NULL;
    EVP_MAC_CTX_free(a->force_mac);
    a->force_mac = NULL;
}

/* -- request facts ------------------------------------------------------------------------- */

/* The first field named `name` (lower case); HTTP/2 and HTTP/1.1 fields alike. */
static bool find_header(const struct sy_route_req *req, const char *name, struct sy_slice *value)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (sy_slice_ieq(req->headers[i].name, name)) {
            *value = req->headers[i].value;
            return true;
        }
    }
    return false;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static struct sy_slice trimmed(const char *p, const char *end)
{
    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;
    return sy_slice_of(p, (size_t)(end - p));
}

bool sy_pick_find_cookie(const struct sy_route_req *req, const char *name, struct sy_slice *value)
{
    size_t name_len = strlen(name);
    /* HTTP/2 may split the cookies over several fields (RFC 9113 §8.2.3): read them all. */
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sy_header *h = &req->headers[i];
        if (h->value.len == 0 || !sy_slice_ieq(h->name, "cookie"))
            continue;
        const char *p = h->value.p, *end = p + h->value.len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *pair_end = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(pair_end - p));
            if (eq) {
                struct sy_slice n = trimmed(p, eq);
                if (n.len == name_len && memcmp(n.p, name, name_len) == 0) {
                    struct sy_slice v = trimmed(eq + 1, pair_end);
                    /* RFC 6265 §4.1.1: cookie-value may be a quoted string. */
                    if (v.len >= 2 && v.p[0] == '"' && v.p[v.len - 1] == '"') {
                        v.p++;
                        v.len -= 2;
                    }
                    *value = v;
                    return true;
                }
            }
            p = semi ? semi + 1 : end;
        }
    }
    return false;
}

/* The client's address bytes: 4 for IPv4, and for an IPv4-mapped IPv6 address (a dual-stack
 * listener's view of an IPv4 client), so both listeners agree; 16 for IPv6. */
static bool client_key(const struct sockaddr *sa, unsigned char buf[16], struct sy_slice *key)
{
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
        memcpy(buf, &a4->sin_addr, 4);
        *key = sy_slice_of((const char *)buf, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            memcpy(buf, a6->sin6_addr.s6_addr + 12, 4);
            *key = sy_slice_of((const char *)buf, 4);
        } else {
            memcpy(buf, a6->sin6_addr.s6_addr, 16);
            *key = sy_slice_of((const char *)buf, 16);
        }
        return true;
    }
    return false;
}

/* -- force --------------------------------------------------------------------------------- */

/* The index of the app's cluster (one in its weights, even at 0) named s[0..len), or SIZE_MAX. */
static size_t app_cluster_named(const struct sy_route_table *t, const struct app_rt *a,
                                const char *s, size_t len)
{
    for (size_t i = 0; i < a->n_weights; i++) {
        size_t c = a->weights[i].cluster;
        const char *name = t->cfg->clusters[c].name;
        if (strlen(name) == len && memcmp(name, s, len) == 0)
            return c;
    }
    return SIZE_MAX;
}

static bool parse_expiry(const char *p, size_t len, uint64_t *out)
{
    if (len == 0 || len > EXPIRY_DIGITS)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* HMAC-SHA256 of msg under the app's force secret, as lower-case hex. The keyed context made at
 * compile time is only ever read (copied), so workers share it without a lock. */
static bool force_mac_hex(const struct app_rt *a, const char *msg, size_t len,
                          char hex[MAC_HEX_LEN])
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(a->force_mac);
    unsigned char mac[32];
    size_t n = 0;
    bool ok = ctx && EVP_MAC_update(ctx, (const unsigned char *)msg, len) &&
              EVP_MAC_final(ctx, mac, &n, sizeof(mac)) && n == sizeof(mac);
    EVP_MAC_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return false;
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(mac); i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    return true;
}

/* The cluster a force value names, or SIZE_MAX when the value does not qualify. */
static size_t forced_cluster(const struct sy_route_table *t, const struct app_rt *a,
                             struct sy_slice v, uint64_t now)
{
    if (!a->force_mac)
        return app_cluster_named(t, a, v.p, v.len);
    /* CLUSTER.EXPIRY.MAC: cluster names hold no '.', EXPIRY is decimal unix seconds. Only the
     * MAC is secret, so the checks of the form may return early. */
    const char *end = v.p + v.len;
    const char *dot1 = memchr(v.p, '.', v.len);
    if (!dot1)
        return SIZE_MAX;
    const char *dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
    uint64_t expiry;
    if (!dot2 || end - (dot2 + 1) != MAC_HEX_LEN ||
        !parse_expiry(dot1 + 1, (size_t)(dot2 - dot1 - 1), &expiry))
        return SIZE_MAX;
    size_t c = app_cluster_named(t, a, v.p, (size_t)(dot1 - v.p));
    char want[MAC_HEX_LEN];
    if (c == SIZE_MAX || !force_mac_hex(a, v.p, (size_t)(dot2 - v.p), want))
        return SIZE_MAX;
    /* Constant time, so that the answer's timing never tells how much of a guess was right. */
    if (CRYPTO_memcmp(want, dot2 + 1, MAC_HEX_LEN) != 0 || expiry <= now)
        return SIZE_MAX;
    return c;
}

/* Whether force value `v` picks a cluster; a value that does not is counted (unless `peek`). */
static bool try_force(const struct sy_route_table *t, struct app_rt *a, struct sy_slice v,
                      uint64_t now, size_t *cluster, bool peek)
{
    size_t c = forced_cluster(t, a, v, now);
    if (c != SIZE_MAX) {
        *cluster = c;
        return true;
    }
    if (!peek)
        atomic_fetch_add_explicit(&a->force_ignored, 1, memory_order_relaxed);
    return false;
}

/* The force header, then the force cookie. An empty value counts as none. */
/* Whether a force header or cookie decides; *rule says which. */
static bool pick_forced(const struct sy_route_table *t, struct app_rt *a,
                        const struct sy_route_req *req, size_t *cluster, bool peek,
                        enum sy_pick_rule *rule)
{
    const struct sy_force_spec *f = &a->spec->force;
    struct sy_slice v;
    *rule = SY_RULE_FORCE_HEADER;
    if (f->header && find_header(req, f->header, &v) && v.len > 0 &&
        try_force(t, a, v, req->now, cluster, peek))
        return true;
    *rule = SY_RULE_FORCE_COOKIE;
    return f->cookie && sy_pick_find_cookie(req, f->cookie, &v) && v.len > 0 &&
           try_force(t, a, v, req->now, cluster, peek);
}

/* -- sticky -------------------------------------------------------------------------------- */

static size_t cluster_of_bucket(const struct app_rt *a, unsigned bucket)
{
    for (size_t i = 0; i < a->n_weights; i++)
        if (bucket < a->bucket_end[i])
            return a->weights[i].cluster;
    assert(0 && "the last bucket_end is SY_STICKY_BUCKETS");
    return a->weights[a->n_weights - 1].cluster;
}

/* Writes the Set-Cookie value for a new key made from req->rnd; returns the key, which points
 * into out->set_cookie. */
static struct sy_slice new_cookie(const struct sy_sticky_spec *st, const struct sy_route_req *req,
                                  struct sy_route_choice *out)
{
    size_t name_len = strlen(st->name);
    int n = snprintf(out->set_cookie, sizeof(out->set_cookie),
                     "%s=%016" PRIx64 "; Path=/; Max-Age=%u; HttpOnly; SameSite=Lax%s", st->name,
                     req->rnd, st->max_age_s, req->tls ? "; Secure" : "");
    /* Cannot truncate: the name and max_age were bounded by sy_pick_app_init(). */
    assert(n > 0 && (size_t)n < sizeof(out->set_cookie));
    out->set_cookie_len = (size_t)n;
    return sy_slice_of(out->set_cookie + name_len + 1, 16);
}

static bool pick_sticky(struct app_rt *a, const struct sy_route_req *req,
                        struct sy_route_choice *out)
{
    const struct sy_sticky_spec *st = &a->spec->sticky;
    struct sy_slice key;
    unsigned char ip[16];
    switch (st->by) {
    case SY_STICKY_NONE:
        return false;
    case SY_STICKY_HEADER:
        if (!find_header(req, st->name, &key) || key.len == 0)
            return false;
        break;
    case SY_STICKY_SOURCE_IP:
        if (!client_key(req->client, ip, &key))
            return false;
        break;
    case SY_STICKY_COOKIE:
        if (!sy_pick_find_cookie(req, st->name, &key) || key.len == 0)
            key = new_cookie(st, req, out);
        break;
    default:
        return false;
    }
    out->cluster = cluster_of_bucket(a, sy_route_sticky_bucket(a->pub.name, key.p, key.len));
    out->reason = SY_PICK_STICKY;
    return true;
}

/* -- the choice ---------------------------------------------------------------------------- */

static void pick(const struct sy_route_table *t, const struct sy_route_app *app,
                 const struct sy_route_req *req, struct sy_route_choice *out, bool peek)
{
    struct app_rt *a = t->apps[app->index];
    out->set_cookie[0] = '\0';
    out->set_cookie_len = 0;
    if (req) {
        if (pick_forced(t, a, req, &out->cluster, peek, &out->rule)) {
            out->reason = SY_PICK_FORCE;
            return;
        }
        if (pick_sticky(a, req, out)) {
            out->rule = SY_RULE_STICKY;
            return;
        }
    }
    uint64_t n = peek ? atomic_load_explicit(&a->seq, memory_order_relaxed)
                      : atomic_fetch_add_explicit(&a->seq, 1, memory_order_relaxed);
    out->cluster = a->schedule[n % a->schedule_len];
    out->reason = SY_PICK_WEIGHT;
    out->rule = SY_RULE_WEIGHTS;
}

/* The cluster that takes `a`'s request from `down` (no endpoint up): among the app's other
 * clusters with weight and an endpoint up, by weight, at position `pos` of SY_STICKY_BUCKETS
 * (a sticky bucket, so that the same users move, or a random one). SIZE_MAX: none. */
static size_t failover_cluster(const struct sy_route_table *t, const struct app_rt *a, size_t down,
                               unsigned pos, uint64_t now)
{
    unsigned total = 0;
    for (size_t i = 0; i < a->n_weights; i++) {
        size_t c = a->weights[i].cluster;
        if (c != down && a->weights[i].weight && sy_cluster_is_up(sy_route_cluster(t, c), now))
            total += a->weights[i].weight;
    }
    if (total == 0)
        return SIZE_MAX;
    unsigned at = (unsigned)((uint64_t)pos * total / SY_STICKY_BUCKETS), sum = 0;
    for (size_t i = 0; i < a->n_weights; i++) {
        size_t c = a->weights[i].cluster;
        if (c == down || !a->weights[i].weight || !sy_cluster_is_up(sy_route_cluster(t, c), now))
            continue;
        sum += a->weights[i].weight;
        if (at < sum)
            return c;
    }
    return SIZE_MAX; /* not reached: at < total */
}

/* The request's key as a sticky bucket, or a random one. */
static unsigned failover_pos(const struct app_rt *a, const struct sy_route_req *req,
                             const struct sy_route_choice *out)
{
    if (out->reason == SY_PICK_STICKY) {
        const struct sy_sticky_spec *st = &a->spec->sticky;
        struct sy_slice key;
        unsigned char ip[16];
        bool found = false;
        if (out->set_cookie_len) {
            key = sy_slice_of(out->set_cookie + strlen(st->name) + 1, 16);
            found = true;
        } else if (st->by == SY_STICKY_HEADER) {
            found = find_header(req, st->name, &key);
        } else if (st->by == SY_STICKY_SOURCE_IP) {
            found = client_key(req->client, ip, &key);
        } else if (st->by == SY_STICKY_COOKIE) {
            found = sy_pick_find_cookie(req, st->name, &key);
        }
        if (found)
            return sy_route_sticky_bucket(a->pub.name, key.p, key.len);
    }
    return req ? (unsigned)(req->rnd % SY_STICKY_BUCKETS) : 0;
}

/* Health: the chosen cluster's endpoints are all down. */
static void health_pick(const struct sy_route_table *t, const struct sy_route_app *app,
                        const struct sy_route_req *req, struct sy_route_choice *out, bool peek)
{
    out->from = out->cluster;
    out->down = false;
    if (out->reason == SY_PICK_FORCE)
        return;
    const struct sy_cluster_spec *cl = sy_route_cluster(t, out->cluster);
    if (!cl->hs || (!cl->health.on && !cl->outlier.on))
        return; /* never attached (tests, -t), or nothing watches it: always up */
    uint64_t now = sy_now_ms();
    if (sy_cluster_is_up(cl, now))
        return;
    struct app_rt *a = t->apps[app->index];
    if (!a->spec->failover) {
        out->down = true;
        if (!peek)
            atomic_fetch_add_explicit(&cl->hs->down_503, 1, memory_order_relaxed);
        return;
    }
    size_t c = failover_cluster(t, a, out->cluster, failover_pos(a, req, out), now);
    if (c == SIZE_MAX)
        return; /* nowhere better: the cluster is tried as it is */
    if (!peek)
        atomic_fetch_add_explicit(&cl->hs->failovers, 1, memory_order_relaxed);
    out->cluster = c;
    out->rule = SY_RULE_FAILOVER;
}

void sy_route_pick(const struct sy_route_table *t, const struct sy_route_app *app,
                   const struct sy_route_req *req, struct sy_route_choice *out)
{
    pick(t, app, req, out, false);
    health_pick(t, app, req, out, false);
}

void sy_route_pick_peek(const struct sy_route_table *t, const struct sy_route_app *app,
                        const struct sy_route_req *req, struct sy_route_choice *out)
{
    pick(t, app, req, out, true);
    health_pick(t, app, req, out, true);
}

const char *sy_pick_reason_name(enum sy_pick_reason reason)
{
    switch (reason) {
    case SY_PICK_WEIGHT:
        return "weight";
    case SY_PICK_STICKY:
        return "sticky";
    case SY_PICK_FORCE:
        return "force";
    }
    return "unknown";
}

const char *sy_pick_rule_name(enum sy_pick_rule rule)
{
    switch (rule) {
    case SY_RULE_WEIGHTS:
        return "weights";
    case SY_RULE_STICKY:
        return "sticky";
    case SY_RULE_FORCE_HEADER:
        return "force_header";
    case SY_RULE_FORCE_COOKIE:
        return "force_cookie";
    case SY_RULE_FAILOVER:
        return "failover";
    }
    return "unknown";
}

uint64_t sy_route_force_ignored(const struct sy_route_table *t, const struct sy_route_app *app)
{
    return atomic_load_explicit(&t->apps[app->index]->force_ignored, memory_order_relaxed);
}
