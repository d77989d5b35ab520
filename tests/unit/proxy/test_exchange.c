/* SPDX-License-Identifier: MIT */
/* Unit tests for the exchange (proxy/exchange.c, rewrite.c, answer.c and h1_body.c, included)
 * between a fake downstream (struct downstream_ops) and fake upstream clients (h1_upstream_ops
 * and h2_upstream_ops are defined here), with the real routing table and no socket: routing and
 * the rewritten head, early answers, the body limit, the retry rule, and how each way of ending
 * tears down; and, with each allocation of libevent's failing in turn (failalloc.h), the
 * HTTP/1.1 request body decoder and a whole exchange. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/config.h"
#include "switchyard/health.h"

#include "failalloc.h"

#include "../../../proxy/answer.c"
#include "../../../proxy/exchange.c"
#include "../../../proxy/h1_body.c"
#include "../../../proxy/rewrite.c"

/* ---- fakes for what exchange.c calls outside itself -------------------------------------- */

const struct sy_config *worker_config(const struct sy_worker *w)
{
    return sy_route_table_config(w->table);
}

uint64_t worker_random(struct sy_worker *w)
{
    return 42;
}

static int own_count;
void worker_count_own(struct sy_worker *w, struct traffic_slot *slot, int status)
{
    own_count++;
}

void access_begin(struct downstream *d, const struct req_head *req)
{
}

void access_exchange_begin(struct exchange *ex, const struct req_head *req)
{
    memcpy(ex->acc.id, "rid-1", 5);
    ex->acc.id_len = 5;
}

void access_log_exchange(struct exchange *ex)
{
}

void queue_remove(struct exchange *ex)
{
}

void hold_remove(struct exchange *ex)
{
}

bool hold_gate(struct exchange *ex, const struct sy_config *cfg)
{
    return false;
}

enum queue_admit queue_admit(struct exchange *ex, struct pool *p, const struct sy_cluster_spec *cl)
{
    return QUEUE_GO;
}

bool queue_has_room(const struct pool *p, const struct sy_cluster_spec *cl)
{
    return true;
}

void queue_push_front(struct exchange *ex, struct pool *p)
{
}

static struct pool the_pool;
struct pool *upstream_pool(struct sy_worker *w, const struct sy_endpoint_spec *ep,
                           const struct sy_cluster_spec *cl)
{
    return &the_pool;
}

const char upstream_limit_reason[] = "limits.max_upstream_connections";

void h1up_cache_free(void)
{
}

void h2up_cache_free(void)
{
}

/* The fake upstream: records what the exchange asks of it. */
static struct {
    int prepared, starts, body_ready, drained, cancels;
    bool last_complete, start_fails;
    bool prepare_failed; /* an allocation for the head failed: start says so, as a client would */
    char head[2048];
    const char *last_endpoint;
} fu;

static void fu_prepare(struct exchange *ex, const struct req_head *req, bool tls_up)
{
    fu.prepared++;
    ex->ups = &fu;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        fu.prepare_failed = true;
        return;
    }
    struct head_sink s = {.h2 = false};
    hw_init(&s.hw, b);
    exchange_rewrite_head(ex, req, &s, tls_up);
    size_t n = evbuffer_get_length(b);
    assert_true(n < sizeof(fu.head));
    evbuffer_remove(b, fu.head, n);
    fu.head[n] = '\0';
    evbuffer_free(b);
}

static bool fu_start(struct exchange *ex, struct pool *p, const struct sy_cluster_spec *cl,
                     bool late, const char **why)
{
    fu.starts++;
    fu.last_endpoint = ex->endpoint->address;
    if (fu.start_fails) {
        *why = "connection refused";
        return false;
    }
    if (fu.prepare_failed) {
        *why = "out of memory";
        return false;
    }
    return true;
}

static void fu_body_ready(struct exchange *ex)
{
    fu.body_ready++;
}

static void fu_client_drained(struct exchange *ex)
{
    fu.drained++;
}

static void fu_cancel(struct exchange *ex, bool complete)
{
    fu.cancels++;
    fu.last_complete = complete;
    ex->ups = NULL;
}

const struct upstream_ops h1_upstream_ops = {
    fu_prepare, fu_start, fu_body_ready, fu_client_drained, fu_cancel, false,
};
const struct upstream_ops h2_upstream_ops = {
    fu_prepare, fu_start, fu_body_ready, fu_client_drained, fu_cancel, true,
};

/* The fake downstream: a request body to hand out, and what came back. */
struct fake_down {
    struct downstream d;
    struct conn conn;
    const char *body;
    size_t body_len, body_pos;
    bool body_bad;
    struct evbuffer *wire; /* when set, the body is decoded from here as h1_server.c does */
    struct sy_h1_chunked dec;
    uint64_t remaining;
    char sent[64]; /* the first bytes of the response body */
    int error_status, head_status;
    size_t got_body;
    int continues, ends, finishes, aborts, tunnels;
    bool last_reusable;
};

static struct fake_down *fd_of(struct downstream *d)
{
    return (struct fake_down *)d;
}

static ssize_t fd_pull_body(struct downstream *d, struct evbuffer *out, size_t max,
                            struct evbuffer *trailers, bool *done, const char **why)
{
    struct fake_down *f = fd_of(d);
    if (f->wire)
        return h1_decode_body(&f->dec, SY_H1_BODY_CHUNKED, &f->remaining, f->wire, out, max,
                              trailers, done, why);
    if (f->body_bad) {
        *why = "bad chunk";
        return -1;
    }
    size_t n = f->body_len - f->body_pos;
    if (n > max)
        n = max;
    evbuffer_add(out, f->body + f->body_pos, n);
    f->body_pos += n;
    *done = f->body_pos == f->body_len;
    return (ssize_t)n;
}

static void fd_send_continue(struct downstream *d)
{
    fd_of(d)->continues++;
}

static void fd_send_head(struct downstream *d, const struct resp_head *h)
{
    fd_of(d)->head_status = h->status;
}

static size_t fd_queued(struct downstream *d)
{
    return 0;
}

static void fd_send_body(struct downstream *d, struct evbuffer *src, size_t n)
{
    struct fake_down *f = fd_of(d);
    size_t at = f->got_body < sizeof(f->sent) - 1 ? f->got_body : sizeof(f->sent) - 1;
    size_t room = sizeof(f->sent) - 1 - at; /* sent[] stays NUL-terminated */
    evbuffer_copyout(src, f->sent + at, n < room ? n : room);
    f->got_body += n;
    evbuffer_drain(src, n);
}

static void fd_send_end(struct downstream *d, struct evbuffer *trailers)
{
    fd_of(d)->ends++;
}

static void fd_send_error(struct downstream *d, int status, const char *why)
{
    fd_of(d)->error_status = status;
}

static void fd_finish(struct downstream *d, bool reusable)
{
    fd_of(d)->finishes++;
    fd_of(d)->last_reusable = reusable;
}

static void fd_abort(struct downstream *d)
{
    fd_of(d)->aborts++;
}

static void fd_start_tunnel(struct downstream *d)
{
    fd_of(d)->tunnels++;
}

static const struct downstream_ops fd_ops = {
    .pull_body = fd_pull_body,
    .send_continue = fd_send_continue,
    .send_head = fd_send_head,
    .queued = fd_queued,
    .send_body = fd_send_body,
    .send_end = fd_send_end,
    .send_error = fd_send_error,
    .finish = fd_finish,
    .abort = fd_abort,
    .start_tunnel = fd_start_tunnel,
};

/* ---- the world: a worker with a table ----------------------------------------------------- */

static const char yaml[] = "listen:\n"
                           "  - address: 127.0.0.1:8080\n"
                           "limits:\n"
                           "  max_body_bytes: 100\n"
                           "clusters:\n"
                           "  blue:\n"
                           "    endpoints: [127.0.0.1:9001, 127.0.0.1:9003]\n"
                           "  green:\n"
                           "    protocol: h2c\n"
                           "    endpoints: [127.0.0.1:9002]\n"
                           "apps:\n"
                           "  - name: web\n"
                           "    hosts: [web.example]\n"
                           "    stable: blue\n"
                           "    weights: {blue: 100, green: 0}\n"
                           "  - name: api\n"
                           "    hosts: [api.example]\n"
                           "    stable: green\n"
                           "    weights: {blue: 0, green: 100}\n";

struct world {
    struct sy_worker w;
    struct traffic_slot slots[5];
    struct traffic_slot *index[5];
    struct fake_down f;
};

static int setup(void **state)
{
    struct world *wd = calloc(1, sizeof(*wd));
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    int rc = sy_config_parse("t.yaml", yaml, strlen(yaml), &d, &cfg);
    for (size_t i = 0; i < d.n; i++) {
        char line[512];
        sy_diag_format(&d.v[i], line, sizeof(line));
        print_message("  diag: %s\n", line);
    }
    sy_diags_dispose(&d);
    assert_int_equal(rc, 0);
    assert_int_equal(sy_route_table_new(cfg, 1, &wd->w.table), 0);
    for (size_t i = 0; i < 5; i++)
        wd->index[i] = &wd->slots[i];
    wd->w.slot_index = wd->index;
    wd->w.unrouted = &wd->slots[4];
    wd->f.d.ops = &fd_ops;
    wd->f.d.conn = &wd->f.conn;
    wd->f.conn.w = &wd->w;
    snprintf(wd->f.conn.peer, sizeof(wd->f.conn.peer), "192.0.2.7");
    memset(&fu, 0, sizeof(fu));
    own_count = 0;
    *state = wd;
    return 0;
}

static int teardown(void **state)
{
    struct world *wd = *state;
    assert_null(wd->w.exchanges); /* every exchange ended */
    sy_route_table_release(wd->w.table);
    exchange_cache_free(&wd->w);
    free(wd);
    return 0;
}

static struct sy_header get_fields[] = {
    {{"Host", 4}, {"web.example", 11}},
    {{"Connection", 10}, {"keep-alive, X-Secret", 20}},
    {{"X-Secret", 8}, {"hop", 3}},
    {{"Accept", 6}, {"*/*", 3}},
};

static struct req_head get_req(const char *host)
{
    struct req_head r = {
        .method = {"GET", 3},
        .target = {"/a?b=1", 6},
        .authority = {host, strlen(host)},
        .headers = get_fields,
        .n_headers = 4,
        .framing = SY_H1_BODY_NONE,
        .version = "1.1",
    };
    return r;
}

static struct req_head post_req(const char *host, uint64_t len)
{
    struct req_head r = get_req(host);
    r.method = sy_slice_of("POST", 4);
    r.framing = SY_H1_BODY_LENGTH;
    r.content_length = len;
    return r;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_routes_to_the_weighted_cluster_with_a_rewritten_head(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("web.example");
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    assert_non_null(ex);
    assert_int_equal(fu.prepared, 1);
    assert_int_equal(fu.starts, 1);
    assert_ptr_equal(ex->uops, &h1_upstream_ops);
    assert_string_equal(exchange_cluster_name(ex), "blue");
    /* Hop-by-hop fields (and the one Connection names) dropped, our fields added. */
    assert_non_null(strstr(fu.head, "GET /a?b=1 HTTP/1.1\r\nhost: web.example\r\n"));
    assert_null(strstr(fu.head, "X-Secret"));
    assert_null(strstr(fu.head, "Connection"));
    assert_non_null(strstr(fu.head, "Accept: */*\r\n"));
    assert_non_null(strstr(fu.head, "x-forwarded-for: 192.0.2.7\r\n"));
    assert_non_null(strstr(fu.head, "x-request-id: rid-1\r\n"));
    assert_non_null(strstr(fu.head, "via: 1.1 switchyard\r\n"));
    exchange_downstream_gone(ex);
}

static void test_h2_cluster_gets_the_h2_client(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("api.example");
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    assert_non_null(ex);
    assert_ptr_equal(ex->uops, &h2_upstream_ops);
    assert_string_equal(exchange_cluster_name(ex), "green");
    exchange_downstream_gone(ex);
}

static void test_no_app_is_404_without_an_exchange(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("nobody.example");
    exchange_start(&wd->f.d, &r);
    assert_null(wd->f.d.ex);
    assert_int_equal(wd->f.error_status, 404);
    assert_int_equal(fu.prepared, 0);
}

static void test_declared_body_over_the_limit_is_413_at_once(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("web.example", 101);
    exchange_start(&wd->f.d, &r);
    assert_null(wd->f.d.ex);
    assert_int_equal(wd->f.error_status, 413);
    assert_int_equal(fu.prepared, 0);
}

static void test_h2_cluster_refuses_an_upgrade(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("api.example");
    r.upgrade = sy_slice_of("websocket", 9);
    exchange_start(&wd->f.d, &r);
    assert_null(wd->f.d.ex);
    assert_int_equal(wd->f.error_status, 502);
    assert_int_equal(fu.starts, 0);
}

static void test_connect_failure_is_502(void **state)
{
    struct world *wd = *state;
    fu.start_fails = true;
    struct req_head r = get_req("web.example");
    exchange_start(&wd->f.d, &r);
    assert_null(wd->f.d.ex);
    assert_int_equal(wd->f.error_status, 502);
    assert_int_equal(fu.cancels, 1);
}

static void test_a_complete_exchange_finishes_reusable(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("web.example");
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    exchange_on_sent(ex);
    struct resp_head h = {
        .status = 200, .has_body = true, .length_known = true, .content_length = 5};
    assert_true(exchange_on_head(ex, &h));
    assert_int_equal(wd->f.head_status, 200);
    evbuffer_add(ex->tmp, "hello", 5);
    assert_true(exchange_on_body(ex, ex->tmp, 5));
    exchange_client_drained(ex);
    assert_int_equal(fu.drained, 1);
    exchange_on_end(ex, NULL);
    assert_null(wd->f.d.ex);
    assert_int_equal(wd->f.got_body, 5);
    assert_int_equal(wd->f.ends, 1);
    assert_int_equal(wd->f.finishes, 1);
    assert_true(wd->f.last_reusable);
    assert_true(fu.last_complete);
    assert_int_equal(wd->slots[0].by_class[2], 1);
}

static void test_response_before_the_request_body_ends_is_not_reusable(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("web.example", 10);
    wd->f.body = "0123456789";
    wd->f.body_len = 10;
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    bool done = false;
    assert_int_equal(exchange_pull_body(ex, ex->tmp, 4, &done), 4); /* 4 of 10 so far */
    assert_false(done);
    struct resp_head h = {.status = 204};
    assert_true(exchange_on_head(ex, &h));
    exchange_on_end(ex, NULL);
    assert_int_equal(wd->f.finishes, 1);
    assert_false(wd->f.last_reusable);
    assert_false(fu.last_complete);
}

static void test_body_over_the_limit_is_413(void **state)
{
    struct world *wd = *state;
    static char big[200];
    memset(big, 'x', sizeof(big));
    struct req_head r = get_req("web.example");
    r.method = sy_slice_of("POST", 4);
    r.framing = SY_H1_BODY_CHUNKED; /* length unknown: counted as it comes */
    wd->f.body = big;
    wd->f.body_len = sizeof(big);
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    bool done = false;
    assert_int_equal(exchange_pull_body(ex, ex->tmp, 64, &done), 64);
    assert_int_equal(exchange_pull_body(ex, ex->tmp, 64, &done), -1);
    assert_null(wd->f.d.ex);
    assert_int_equal(wd->f.error_status, 413);
}

static void test_malformed_body_is_400(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("web.example", 10);
    wd->f.body_bad = true;
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    bool done = false;
    assert_int_equal(exchange_pull_body(ex, ex->tmp, 64, &done), -1);
    assert_int_equal(wd->f.error_status, 400);
}

static void test_expect_continue_waits_for_the_cluster(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("web.example", 10);
    r.expect_continue = true;
    exchange_start(&wd->f.d, &r);
    assert_int_equal(wd->f.continues, 0);
    exchange_on_sent(wd->f.d.ex);
    assert_int_equal(wd->f.continues, 1);
    exchange_on_sent(wd->f.d.ex);
    assert_int_equal(wd->f.continues, 1); /* once */
    exchange_downstream_gone(wd->f.d.ex);
}

/* Four times as refused (a burst before a server's SETTINGS), then once more as a retry. */
static void test_unprocessed_goes_again_five_times_to_the_next_endpoint(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("web.example", 0); /* not safe, but unprocessed */
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    const char *first = fu.last_endpoint;
    for (int i = 0; i < 5; i++)
        assert_true(exchange_on_error(ex, true, 502, "refused"));
    assert_int_equal(fu.starts, 6);
    assert_string_not_equal(fu.last_endpoint, first);
    assert_false(exchange_on_error(ex, true, 502, "refused"));
    assert_int_equal(wd->f.error_status, 502);
    assert_null(wd->f.d.ex);
}

static void test_safe_request_retries_once_only_where_the_protocol_says(void **state)
{
    struct world *wd = *state;
    /* HTTP/1.1: a failure the cluster may have acted on is not repeated, even for GET. */
    struct req_head r = get_req("web.example");
    exchange_start(&wd->f.d, &r);
    assert_false(exchange_on_error(wd->f.d.ex, false, 502, "reset"));
    assert_int_equal(fu.starts, 1);
    assert_int_equal(wd->f.error_status, 502);
    /* HTTP/2: once. */
    r = get_req("api.example");
    exchange_start(&wd->f.d, &r);
    assert_true(exchange_on_error(wd->f.d.ex, false, 502, "reset"));
    assert_int_equal(fu.starts, 3);
    assert_false(exchange_on_error(wd->f.d.ex, false, 504, "late"));
    assert_int_equal(wd->f.error_status, 504);
}

static void test_no_retry_once_the_response_started_or_a_body_byte_went(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("api.example", 10);
    wd->f.body = "0123456789";
    wd->f.body_len = 10;
    exchange_start(&wd->f.d, &r);
    bool done = false;
    assert_int_equal(exchange_pull_body(wd->f.d.ex, wd->f.d.ex->tmp, 4, &done), 4);
    assert_false(exchange_on_error(wd->f.d.ex, true, 502, "refused"));
    assert_int_equal(fu.starts, 1);
    /* After the head: the response is cut, not answered. */
    r = get_req("api.example");
    exchange_start(&wd->f.d, &r);
    struct resp_head h = {.status = 200, .has_body = true};
    assert_true(exchange_on_head(wd->f.d.ex, &h));
    assert_false(exchange_on_error(wd->f.d.ex, true, 502, "reset"));
    assert_int_equal(wd->f.aborts, 1);
    assert_int_equal(fu.starts, 2);
}

static void test_a_failed_connect_goes_once_to_another_endpoint_for_any_method(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("web.example", 0);
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    char first[64];
    snprintf(first, sizeof(first), "%s", fu.last_endpoint);
    ex->connect_failed = true; /* as a client sets it */
    assert_true(exchange_on_error(ex, false, 502, "refused"));
    assert_int_equal(fu.starts, 2);
    assert_string_not_equal(fu.last_endpoint, first);
    ex->connect_failed = true;
    assert_false(exchange_on_error(ex, false, 502, "refused")); /* once only */
    assert_int_equal(fu.starts, 2);
    assert_int_equal(wd->f.error_status, 502);
    /* An HTTP/2 cluster with one endpoint: a GET (retry_safe) goes once more to it. */
    r = get_req("api.example");
    exchange_start(&wd->f.d, &r);
    wd->f.d.ex->connect_failed = true;
    assert_true(exchange_on_error(wd->f.d.ex, false, 502, "refused"));
    assert_int_equal(fu.starts, 4);
    wd->f.d.ex->connect_failed = true;
    assert_false(exchange_on_error(wd->f.d.ex, false, 502, "refused"));
}

static void test_a_failed_connect_is_not_retried_past_the_budget(void **state)
{
    struct world *wd = *state;
    struct sy_config *cfg = (struct sy_config *)sy_route_table_config(wd->w.table);
    sy_health_attach(cfg);
    struct sy_cluster_spec *blue = &cfg->clusters[0];
    /* Spend the budget: the minimum (3), no request counted yet. */
    uint64_t now = sy_now_ms();
    for (int i = 0; i < 3; i++)
        assert_true(sy_cluster_take_retry(blue->hs, &blue->retry_budget, now));
    struct req_head r = get_req("web.example");
    exchange_start(&wd->f.d, &r);
    wd->f.d.ex->connect_failed = true;
    assert_false(exchange_on_error(wd->f.d.ex, false, 502, "refused"));
    assert_int_equal(fu.starts, 1);
    assert_int_equal(wd->f.error_status, 502);
    assert_true(atomic_load(&blue->hs->retries_denied) >= 1);
    /* A retry that worked is given back: the next failed connect goes again. */
    sy_cluster_retry_worked(blue->hs);
    exchange_start(&wd->f.d, &r);
    wd->f.d.ex->connect_failed = true;
    assert_true(exchange_on_error(wd->f.d.ex, false, 502, "refused"));
    assert_int_equal(fu.starts, 3);
    assert_false(exchange_on_error(wd->f.d.ex, false, 502, "reset"));
}

static void test_a_reset_retry_is_bounded_by_the_budget_a_refused_stream_is_not(void **state)
{
    struct world *wd = *state;
    struct sy_config *cfg = (struct sy_config *)sy_route_table_config(wd->w.table);
    sy_health_attach(cfg);
    struct sy_cluster_spec *api = NULL;
    for (size_t i = 0; i < cfg->n_clusters; i++)
        if (cfg->clusters[i].protocol != SY_PROTO_HTTP1)
            api = &cfg->clusters[i];
    assert_non_null(api);
    uint64_t now = sy_now_ms();
    for (int i = 0; i < 3; i++) /* the minimum, no request counted yet */
        assert_true(sy_cluster_take_retry(api->hs, &api->retry_budget, now));
    /* A safe request whose connection was reset would go again, but the budget is spent. */
    struct req_head r = get_req("api.example");
    exchange_start(&wd->f.d, &r);
    assert_false(exchange_on_error(wd->f.d.ex, false, 502, "reset"));
    assert_int_equal(fu.starts, 1);
    assert_true(atomic_load(&api->hs->retries_denied) >= 1);
    /* A stream the cluster refused (unprocessed) goes again all the same. */
    exchange_start(&wd->f.d, &r);
    assert_true(exchange_on_error(wd->f.d.ex, true, 502, "refused"));
    assert_int_equal(fu.starts, 3);
    struct resp_head h = {.status = 200, .has_body = false};
    assert_true(exchange_on_head(wd->f.d.ex, &h));
    exchange_on_end(wd->f.d.ex, NULL);
    /* A reset retry that led to an answer is given back. */
    sy_cluster_retry_worked(api->hs);
    exchange_start(&wd->f.d, &r);
    assert_true(exchange_on_error(wd->f.d.ex, false, 502, "reset"));
    assert_int_equal(fu.starts, 5);
    assert_true(exchange_on_head(wd->f.d.ex, &h)); /* ... and gives its charge back */
    exchange_on_end(wd->f.d.ex, NULL);
    exchange_start(&wd->f.d, &r);
    assert_true(exchange_on_error(wd->f.d.ex, false, 502, "reset"));
    assert_false(exchange_on_error(wd->f.d.ex, false, 504, "late")); /* once only */
    assert_int_equal(wd->f.error_status, 504);
}

static void test_switch_not_asked_for_is_502(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("web.example");
    exchange_start(&wd->f.d, &r);
    struct resp_head h = {.status = 101, .upgrade = {"websocket", 9}};
    assert_false(exchange_on_head(wd->f.d.ex, &h));
    assert_int_equal(wd->f.error_status, 502);
    assert_int_equal(wd->f.tunnels, 0);
}

static void test_websocket_switch_starts_a_tunnel(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("web.example");
    r.upgrade = sy_slice_of("websocket", 9);
    exchange_start(&wd->f.d, &r);
    struct exchange *ex = wd->f.d.ex;
    assert_non_null(strstr(fu.head, "connection: upgrade\r\nupgrade: websocket\r\n"));
    struct resp_head h = {.status = 101, .has_body = true, .upgrade = {"websocket", 9}};
    assert_true(exchange_on_head(ex, &h));
    assert_int_equal(wd->f.tunnels, 1);
    assert_true(ex->tunnel);
    assert_false(ex->req_done);
    assert_int_equal(atomic_load(&wd->slots[0].tunnels), 1);
    exchange_downstream_gone(ex);
    assert_int_equal(atomic_load(&wd->slots[0].tunnels), 0);
}

static void test_invalid_status_is_502(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("api.example");
    exchange_start(&wd->f.d, &r);
    struct resp_head h = {.status = 0};
    assert_false(exchange_on_head(wd->f.d.ex, &h));
    assert_int_equal(wd->f.error_status, 502);
}

static void test_client_gone_cancels_the_stream_without_an_answer(void **state)
{
    struct world *wd = *state;
    struct req_head r = get_req("web.example");
    exchange_start(&wd->f.d, &r);
    exchange_downstream_gone(wd->f.d.ex);
    assert_null(wd->f.d.ex);
    assert_int_equal(fu.cancels, 1);
    assert_false(fu.last_complete);
    assert_int_equal(wd->f.finishes + wd->f.error_status + wd->f.aborts, 0);
    assert_int_equal(atomic_load(&wd->slots[0].in_flight), 0);
}

static void test_body_ready_reaches_the_client(void **state)
{
    struct world *wd = *state;
    struct req_head r = post_req("web.example", 10);
    exchange_start(&wd->f.d, &r);
    exchange_body_ready(wd->f.d.ex);
    assert_int_equal(fu.body_ready, 1);
    exchange_queue_expired(wd->f.d.ex, "queue.timeout");
    assert_int_equal(wd->f.error_status, 503);
}

/* ---- failing allocations (failalloc.h) ----------------------------------------------------- */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A chunked request as reads would deliver it, in pieces that cut framing lines (a chunk size,
 * its extension, a trailer field) so that the decoder has to make them contiguous. */
static const char *const chunked_request[] = {
    "POST /upload?x=1 HTTP/1.1\r\nHost: web.example\r\nUser-Agent: t/1\r\n",
    "Accept: */*\r\nTransfer-Encoding: chunked\r\nX-Trace: 7\r\n\r\n",
    "5\r",
    "\nhello\r\n1",
    "0;ext=v\r\n0123456789ABCDEF\r\n",
    "0\r\nX-Sum: 1a2b\r\nX-Ot",
    "her: y\r\n\r\n",
};
#define CHUNKED_HEAD_PIECES 2
#define CHUNKED_BODY        "hello0123456789ABCDEF"
#define CHUNKED_TRAILERS    "X-Sum: 1a2b\r\nX-Other: y\r\n"

/* The same body by Content-Length, in pieces that a 7-byte step cuts: part of a chain is
 * copied, not moved. */
static const char *const length_request[] = {
    "POST /upload HTTP/1.1\r\nHost: web.example\r\nContent-Length: 21\r\n\r\n",
    "hello0123",
    "456789ABCDEF",
};

/* A request for the parser pass: its pieces (the first `head_pieces` hold the head), and what
 * decoding them must give. */
struct h1_case {
    const char *const *pieces;
    size_t n_pieces, head_pieces, n_headers;
    enum sy_h1_framing framing;
    const char *body, *trailers;
};

static const struct h1_case h1_cases[] = {
    {chunked_request, ARRAY_LEN(chunked_request), CHUNKED_HEAD_PIECES, 5, SY_H1_BODY_CHUNKED,
     CHUNKED_BODY, CHUNKED_TRAILERS},
    {length_request, ARRAY_LEN(length_request), 1, 2, SY_H1_BODY_LENGTH, CHUNKED_BODY, ""},
};

/* Appends each piece as a chain of its own that has no room left, as reads that filled their
 * chains leave them: a framing line cut across two pieces cannot be pulled up in place, the
 * decoder needs a new chain for it. Returns 0, or -1 when an allocation failed: a read that
 * failed. */
static int feed(struct evbuffer *in, const char *const *pieces, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (evbuffer_add_reference(in, pieces[i], strlen(pieces[i]), NULL, NULL) != 0)
            return -1;
    return 0;
}

static void assert_buffer_equal(struct evbuffer *b, const char *s)
{
    char tmp[256];
    size_t len = evbuffer_get_length(b);
    assert_true(len < sizeof(tmp));
    evbuffer_copyout(b, tmp, len);
    tmp[len] = '\0';
    assert_string_equal(tmp, s);
}

struct fail_run {
    struct world *wd;
    const struct h1_case *c; /* parser pass: the request */
    unsigned long failed;    /* runs that stopped at the allocation that failed */
    char head[2048];         /* exchange: the head the cluster gets when nothing fails */
};

/* The end of a run over three buffers (any of them NULL when it could not be allocated): one
 * that stopped short must have met the allocation that failed. */
static void end_run(struct fail_run *r, bool stopped, struct evbuffer *const b[3])
{
    if (stopped) {
        assert_true(sy_failalloc_hit());
        r->failed++;
    }
    for (size_t i = 0; i < 3; i++)
        if (b[i])
            evbuffer_free(b[i]);
}

/* The request head parsed from what was read (pulled up as h1_server.c does), then the body
 * decoded in steps of at most 7 bytes. Whatever allocation fails, the run either ends with
 * the exact body and trailers or stops with an error that says out of memory; never with a
 * body that lost bytes. */
static void parse_once(void *arg)
{
    struct fail_run *r = arg;
    const struct h1_case *c = r->c;
    struct evbuffer *in = evbuffer_new(), *body = evbuffer_new(), *trailers = evbuffer_new();
    bool stopped = true;
    if (!in || !body || !trailers || feed(in, c->pieces, c->head_pieces) != 0)
        goto out;
    size_t len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)len);
    if (!p)
        goto out; /* the server closes the connection */
    struct sy_header fields[8];
    struct sy_h1_limits lim = {1024, 4096, ARRAY_LEN(fields)};
    struct sy_h1_request req = {.headers = fields};
    ssize_t n = sy_h1_parse_request(p, len, &lim, &req);
    assert_int_equal(n, len);
    assert_int_equal(req.framing, c->framing);
    assert_int_equal(req.n_headers, c->n_headers);
    assert_true(sy_slice_ieq(req.host, "web.example"));
    evbuffer_drain(in, (size_t)n);
    if (feed(in, c->pieces + c->head_pieces, c->n_pieces - c->head_pieces) != 0)
        goto out;
    struct sy_h1_chunked dec;
    sy_h1_chunked_init(&dec, 0);
    uint64_t remaining = req.content_length;
    bool done = false;
    while (!done) {
        const char *why = NULL;
        ssize_t got =
            h1_decode_body(&dec, req.framing, &remaining, in, body, 7, trailers, &done, &why);
        if (got < 0) {
            assert_ptr_equal(why, exchange_nomem_reason);
            goto out;
        }
        assert_true(got > 0 || done); /* all of it was read: every step gets somewhere */
    }
    assert_buffer_equal(body, c->body);
    assert_buffer_equal(trailers, c->trailers);
    assert_int_equal(evbuffer_get_length(in), 0);
    stopped = false;
out:
    end_run(r, stopped, (struct evbuffer *[3]){in, body, trailers});
}

static void test_every_failing_allocation_in_a_request_body_is_an_error(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(h1_cases); i++) {
        struct fail_run r = {*state, &h1_cases[i], 0, ""};
        unsigned long runs = sy_failalloc_each(parse_once, &r);
        print_message("  %s body: %lu runs\n",
                      h1_cases[i].framing == SY_H1_BODY_CHUNKED ? "chunked" : "length", runs);
        assert_true(runs > 5);
        assert_true(r.failed > 0);
    }
}

/* The chunked re-encoder, as h1_server.c writes a response body to an HTTP/1.1 client and
 * h1_client.c a request body to a cluster: the body from chains that 7-byte steps cut (so part
 * of a chain is copied), one chunk per step, then the last chunk with a trailer. Whatever
 * allocation fails, the run either writes the exact chunked body or an encoder call says it
 * could not; never a byte stream that lost a size line, data or a CRLF and looks complete. */
static void encode_once(void *arg)
{
    struct fail_run *r = arg;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new(), *trailers = evbuffer_new();
    bool stopped = true;
    if (!in || !out || !trailers ||
        feed(in, length_request + 1, ARRAY_LEN(length_request) - 1) != 0 ||
        evbuffer_add(trailers, "X-Sum: 1a2b\r\n", 13) != 0)
        goto out;
    while (evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_length(in) < 7 ? evbuffer_get_length(in) : 7;
        if (!h1_add_chunk(out, in, n))
            goto out;
    }
    if (!h1_add_last_chunk(out, trailers))
        goto out;
    assert_buffer_equal(out, "7\r\nhello01\r\n7\r\n2345678\r\n7\r\n9ABCDEF\r\n"
                             "0\r\nX-Sum: 1a2b\r\n\r\n");
    stopped = false;
out:
    end_run(r, stopped, (struct evbuffer *[3]){in, out, trailers});
}

static void test_every_failing_allocation_in_a_chunked_encoding_is_an_error(void **state)
{
    struct fail_run r = {*state, NULL, 0, ""};
    unsigned long runs = sy_failalloc_each(encode_once, &r);
    print_message("  %lu runs\n", runs);
    assert_true(runs > 5);
    assert_true(r.failed > 0);
}

/* One chunked POST through the exchange, as the codecs drive it: started, its body pulled
 * towards the cluster in steps of 7 bytes (decoded from the wire as h1_server.c does), a
 * 200 with a body back. With nothing failing it completes exactly; with one allocation
 * failing it completes exactly all the same, or is answered 5xx, or (once the response has
 * started) cut; every way, the exchange is gone at the end. */
static void exchange_once(void *arg)
{
    struct fail_run *r = arg;
    struct world *wd = r->wd;
    struct fake_down *f = &wd->f;
    exchange_cache_free(&wd->w); /* so that every run allocates its exchange's buffers */
    memset(&fu, 0, sizeof(fu));
    memset(&f->body, 0, sizeof(*f) - offsetof(struct fake_down, body));
    struct evbuffer *up = evbuffer_new(); /* what the cluster connection would write */
    f->wire = evbuffer_new();
    bool stopped = true;
    if (!up || !f->wire ||
        feed(f->wire, chunked_request + CHUNKED_HEAD_PIECES,
             ARRAY_LEN(chunked_request) - CHUNKED_HEAD_PIECES) != 0)
        goto out;
    sy_h1_chunked_init(&f->dec, 0);
    struct req_head q = get_req("web.example");
    q.method = sy_slice_of("POST", 4);
    q.framing = SY_H1_BODY_CHUNKED;
    exchange_start(&f->d, &q);
    struct exchange *ex = f->d.ex;
    if (!ex) {
        assert_true(f->error_status == 502 || f->error_status == 503);
        goto out;
    }
    if (r->head[0])
        assert_string_equal(fu.head, r->head);
    else
        memcpy(r->head, fu.head, sizeof(r->head));
    exchange_on_sent(ex);
    bool done = false;
    while (!done) {
        ssize_t n = exchange_pull_body(ex, up, 7, &done);
        if (n < 0) {
            assert_null(f->d.ex);
            assert_int_equal(f->error_status, 503);
            goto out;
        }
        assert_true(n > 0 || done);
    }
    assert_buffer_equal(up, CHUNKED_BODY);
    assert_buffer_equal(ex->trailers, CHUNKED_TRAILERS);
    evbuffer_drain(ex->trailers, evbuffer_get_length(ex->trailers)); /* sent on */
    struct resp_head h = {
        .status = 200, .has_body = true, .length_known = true, .content_length = 5};
    assert_true(exchange_on_head(ex, &h));
    if (evbuffer_add(ex->tmp, "world", 5) != 0) {
        /* The cluster client's read failed: it says so, and the response is cut. */
        assert_false(exchange_on_error(ex, false, 502, "out of memory"));
        assert_int_equal(f->aborts, 1);
        goto out;
    }
    exchange_on_body(ex, ex->tmp, 5);
    exchange_on_end(ex, NULL);
    assert_null(f->d.ex);
    assert_int_equal(f->finishes, 1);
    assert_string_equal(f->sent, "world");
    stopped = false;
out:
    if (stopped) {
        assert_true(sy_failalloc_hit());
        r->failed++;
    }
    assert_null(f->d.ex);
    assert_null(wd->w.exchanges);
    if (up)
        evbuffer_free(up);
    if (f->wire)
        evbuffer_free(f->wire);
    f->wire = NULL;
}

static void test_every_failing_allocation_in_an_exchange_ends_it_cleanly(void **state)
{
    struct fail_run r = {*state, NULL, 0, ""};
    exchange_once(&r); /* nothing fails: this one records the head the cluster gets */
    unsigned long runs = sy_failalloc_each(exchange_once, &r);
    print_message("  %lu runs\n", runs);
    assert_true(runs > 10);
    assert_true(r.failed > 0);
}

int main(void)
{
    sy_failalloc_install();
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_routes_to_the_weighted_cluster_with_a_rewritten_head),
        T(test_h2_cluster_gets_the_h2_client),
        T(test_no_app_is_404_without_an_exchange),
        T(test_declared_body_over_the_limit_is_413_at_once),
        T(test_h2_cluster_refuses_an_upgrade),
        T(test_connect_failure_is_502),
        T(test_a_complete_exchange_finishes_reusable),
        T(test_response_before_the_request_body_ends_is_not_reusable),
        T(test_body_over_the_limit_is_413),
        T(test_malformed_body_is_400),
        T(test_expect_continue_waits_for_the_cluster),
        T(test_unprocessed_goes_again_five_times_to_the_next_endpoint),
        T(test_safe_request_retries_once_only_where_the_protocol_says),
        T(test_no_retry_once_the_response_started_or_a_body_byte_went),
        T(test_a_failed_connect_goes_once_to_another_endpoint_for_any_method),
        T(test_a_failed_connect_is_not_retried_past_the_budget),
        T(test_a_reset_retry_is_bounded_by_the_budget_a_refused_stream_is_not),
        T(test_switch_not_asked_for_is_502),
        T(test_websocket_switch_starts_a_tunnel),
        T(test_invalid_status_is_502),
        T(test_client_gone_cancels_the_stream_without_an_answer),
        T(test_body_ready_reaches_the_client),
        T(test_every_failing_allocation_in_a_request_body_is_an_error),
        T(test_every_failing_allocation_in_a_chunked_encoding_is_an_error),
        T(test_every_failing_allocation_in_an_exchange_ends_it_cleanly),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
