/* SPDX-License-Identifier: MIT */
/* A test helper (not installed) that drives the etcd gateway client (switchyard/etcd.h)
 * against a real etcd for tests/e2e/test_93_etcd_client.py: one command per run, one line of
 * output per result, flushed at once so that the test can act between lines (kill the watch's
 * member, then see the rest).
 *
 *   etcd_probe [-t MS] HOST:PORT[,HOST:PORT...] put KEY VALUE
 *                                               range PREFIX
 *                                               txn KEY MOD_REVISION VALUE
 *                                               call PATH JSON
 *                                               watch PREFIX FROM_REVISION N [resume]
 *
 * Unary results: `ok ...` (exit 0) or `error rc=N ms=T why=...` (exit 2). A watch prints
 * `created ep=I`, `event TYPE KEY VALUE MOD_REVISION`, `canceled compact=N` and `end WHY`; with
 * `resume` it opens a new watch from the last event's revision + 1 when one ends (`resume
 * from=R`), as the fleet engine will; it exits 0 after N events (`done`), 3 at an end that is
 * not resumed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "switchyard/base.h"
#include "switchyard/etcd.h"
#include "switchyard/json.h"

static struct event_base *base;
static struct sy_etcd *etcd;
static int exit_code = 1;
static struct timespec t0;

/* watch state */
static const char *w_prefix;
static uint64_t w_next;
static long w_left;
static bool w_resume;
static struct sy_etcd_watch *w;

static long elapsed_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
}

static void stop(int code)
{
    exit_code = code;
    event_base_loopbreak(base);
}

/* A base64 field as text (the tests' keys and values are printable). */
static void print_b64(const struct sy_jv *v)
{
    size_t len = 0;
    const char *s = sy_jv_str(v);
    char *raw = s ? sy_etcd_unb64(s, &len) : NULL;
    printf(" %s", raw && len ? raw : "-");
    free(raw);
}

static void unary_done(int rc, const struct sy_jv *res, const char *why, void *arg)
{
    const char *cmd = arg;
    if (rc != 0) {
        printf("error rc=%d ms=%ld why=%s\n", rc, elapsed_ms(), why);
        stop(2);
        return;
    }
    const struct sy_jv *kvs = sy_jv_get(res, "kvs");
    for (size_t i = 0; i < sy_jv_len(kvs); i++) {
        const struct sy_jv *kv = sy_jv_at(kvs, i);
        printf("kv");
        print_b64(sy_jv_get(kv, "key"));
        print_b64(sy_jv_get(kv, "value"));
        printf(" %llu\n", (unsigned long long)sy_etcd_u64(sy_jv_get(kv, "mod_revision"), 0));
    }
    printf("ok");
    if (strcmp(cmd, "txn") == 0)
        printf(" succeeded=%d", sy_jv_bool(sy_jv_get(res, "succeeded")));
    if (strcmp(cmd, "range") == 0)
        printf(" count=%llu", (unsigned long long)sy_etcd_u64(sy_jv_get(res, "count"), 0));
    printf(" rev=%llu ep=%zu ms=%ld\n",
           (unsigned long long)sy_etcd_u64(sy_jv_get(sy_jv_get(res, "header"), "revision"), 0),
           sy_etcd_current(etcd), elapsed_ms());
    stop(0);
}

static void watch_open(void);

static void watch_msg(const struct sy_jv *result, void *arg)
{
    if (sy_jv_bool(sy_jv_get(result, "created")))
        printf("created ep=%zu\n", sy_etcd_current(etcd));
    if (sy_jv_bool(sy_jv_get(result, "canceled"))) {
        printf("canceled compact=%llu\n",
               (unsigned long long)sy_etcd_u64(sy_jv_get(result, "compact_revision"), 0));
        sy_etcd_watch_cancel(w); /* from inside its own callback: must be safe */
        w = NULL;
        stop(0);
        return;
    }
    const struct sy_jv *evs = sy_jv_get(result, "events");
    for (size_t i = 0; i < sy_jv_len(evs); i++) {
        const struct sy_jv *ev = sy_jv_at(evs, i);
        const struct sy_jv *kv = sy_jv_get(ev, "kv");
        const char *type = sy_jv_str(sy_jv_get(ev, "type"));
        uint64_t rev = sy_etcd_u64(sy_jv_get(kv, "mod_revision"), 0);
        printf("event %s", type ? type : "PUT");
        print_b64(sy_jv_get(kv, "key"));
        print_b64(sy_jv_get(kv, "value"));
        printf(" %llu\n", (unsigned long long)rev);
        if (rev >= w_next)
            w_next = rev + 1;
        if (--w_left == 0) {
            printf("done\n");
            sy_etcd_watch_cancel(w);
            w = NULL;
            stop(0);
            return;
        }
    }
}

static void watch_end(const char *why, void *arg)
{
    w = NULL;
    printf("end %s\n", why);
    if (!w_resume) {
        stop(3);
        return;
    }
    printf("resume from=%llu\n", (unsigned long long)w_next);
    watch_open();
}

static void watch_open(void)
{
    char *key = sy_etcd_b64(w_prefix, strlen(w_prefix));
    char *end_raw = sy_etcd_prefix_end(w_prefix);
    char *end = sy_etcd_b64(end_raw, *end_raw ? strlen(end_raw) : 1);
    struct sy_jw j;
    sy_jw_init(&j);
    sy_jw_begin_object(&j, NULL);
    sy_jw_begin_object(&j, "create_request");
    sy_jw_str(&j, "key", key);
    sy_jw_str(&j, "range_end", end);
    char rev[32];
    snprintf(rev, sizeof(rev), "%llu", (unsigned long long)w_next);
    sy_jw_str(&j, "start_revision", rev);
    sy_jw_end_object(&j);
    sy_jw_end_object(&j);
    w = sy_etcd_watch(etcd, j.p, j.len, watch_msg, watch_end, NULL);
    sy_jw_dispose(&j);
    free(key);
    free(end_raw);
    free(end);
}

static void give_up(evutil_socket_t fd, short what, void *arg)
{
    printf("error probe ran out of time\n");
    stop(4);
}

static int parse_endpoints(char *list, struct sy_etcd_endpoint *eps, size_t cap, size_t *n)
{
    *n = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        char *colon = strrchr(tok, ':');
        if (!colon || *n == cap)
            return -1;
        *colon = '\0';
        struct sockaddr_in *sin = (struct sockaddr_in *)&eps[*n].addr;
        memset(&eps[*n], 0, sizeof(eps[*n]));
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, tok, &sin->sin_addr) != 1)
            return -1;
        *colon = ':';
        eps[*n].addrlen = sizeof(*sin);
        eps[*n].host = tok;
        (*n)++;
    }
    return *n ? 0 : -1;
}

static char *kv_body(const char *key, const char *value)
{
    char *k = sy_etcd_b64(key, strlen(key)), *v = sy_etcd_b64(value, strlen(value));
    struct sy_jw j;
    sy_jw_init(&j);
    sy_jw_begin_object(&j, NULL);
    sy_jw_str(&j, "key", k);
    sy_jw_str(&j, "value", v);
    sy_jw_end_object(&j);
    free(k);
    free(v);
    return j.p;
}

int main(int argc, char **argv)
{
    uint64_t timeout_ms = 3000;
    int a = 1;
    if (a + 1 < argc && strcmp(argv[a], "-t") == 0) {
        timeout_ms = strtoull(argv[a + 1], NULL, 10);
        a += 2;
    }
    if (argc - a < 2) {
        fprintf(stderr, "usage: etcd_probe [-t MS] HOST:PORT[,...] COMMAND ARGS...\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    sy_log_set_level(SY_LOG_DEBUG);
    struct sy_etcd_endpoint eps[8];
    size_t n = 0;
    if (parse_endpoints(argv[a], eps, 8, &n) != 0) {
        fprintf(stderr, "bad endpoint list %s\n", argv[a]);
        return 1;
    }
    base = event_base_new();
    struct sy_etcd_opts o = {.endpoints = eps, .n_endpoints = n, .timeout_ms = timeout_ms};
    etcd = sy_etcd_new(base, &o);
    char *cmd = argv[a + 1];
    char **args = argv + a + 2;
    int nargs = argc - a - 2;
    char *body = NULL;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (strcmp(cmd, "put") == 0 && nargs == 2) {
        body = kv_body(args[0], args[1]);
        sy_etcd_call(etcd, "/v3/kv/put", body, strlen(body), unary_done, cmd);
    } else if (strcmp(cmd, "range") == 0 && nargs == 1) {
        char *key = sy_etcd_b64(args[0], strlen(args[0]));
        char *end_raw = sy_etcd_prefix_end(args[0]);
        char *end = sy_etcd_b64(end_raw, *end_raw ? strlen(end_raw) : 1);
        struct sy_jw j;
        sy_jw_init(&j);
        sy_jw_begin_object(&j, NULL);
        sy_jw_str(&j, "key", key);
        sy_jw_str(&j, "range_end", end);
        sy_jw_end_object(&j);
        body = j.p;
        free(key);
        free(end_raw);
        free(end);
        sy_etcd_call(etcd, "/v3/kv/range", body, strlen(body), unary_done, cmd);
    } else if (strcmp(cmd, "txn") == 0 && nargs == 3) {
        char *key = sy_etcd_b64(args[0], strlen(args[0]));
        char *put = kv_body(args[0], args[2]);
        struct sy_jw j;
        sy_jw_init(&j);
        sy_jw_begin_object(&j, NULL);
        sy_jw_begin_array(&j, "compare");
        sy_jw_begin_object(&j, NULL);
        sy_jw_str(&j, "key", key);
        sy_jw_str(&j, "target", "MOD");
        sy_jw_str(&j, "result", "EQUAL");
        sy_jw_str(&j, "mod_revision", args[1]);
        sy_jw_end_object(&j);
        sy_jw_end_array(&j);
        sy_jw_begin_array(&j, "success");
        sy_jw_begin_object(&j, NULL);
        sy_jw_raw(&j, "request_put", put, strlen(put));
        sy_jw_end_object(&j);
        sy_jw_end_array(&j);
        sy_jw_end_object(&j);
        body = j.p;
        free(key);
        free(put);
        sy_etcd_call(etcd, "/v3/kv/txn", body, strlen(body), unary_done, cmd);
    } else if (strcmp(cmd, "call") == 0 && nargs == 2) {
        sy_etcd_call(etcd, args[0], args[1], strlen(args[1]), unary_done, cmd);
    } else if (strcmp(cmd, "watch") == 0 && (nargs == 3 || nargs == 4)) {
        w_prefix = args[0];
        w_next = strtoull(args[1], NULL, 10);
        w_left = atol(args[2]);
        w_resume = nargs == 4 && strcmp(args[3], "resume") == 0;
        watch_open();
    } else {
        fprintf(stderr, "unknown command or wrong arguments: %s\n", cmd);
        return 1;
    }
    struct event *guard = evtimer_new(base, give_up, NULL);
    struct timeval tv = {30, 0};
    evtimer_add(guard, &tv);
    event_base_dispatch(base);
    /* Freeing with calls or a watch still open cancels them: ASan checks that too. */
    sy_etcd_free(etcd);
    event_free(guard);
    event_base_free(base);
    free(body);
    return exit_code;
}
