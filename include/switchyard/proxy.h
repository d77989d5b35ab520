/* SPDX-License-Identifier: MIT */
/* The data path as main.c sees it: a set of worker threads, each with its own event loop,
 * listening sockets and upstream pools, fed routing snapshots by the control thread. */
#ifndef SWITCHYARD_PROXY_H
#define SWITCHYARD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/routing.h"

struct sy_workers;

/**
 * Checks what only the proxy can check in a loaded config: that every TLS listener's
 * certificate and key load and match. Appends one diagnostic per problem (at the listener's
 * `tls` key, in `file`, which must outlive `d`) and returns 0 or SY_ERR_INVALID. Any thread.
 */
int sy_proxy_check(const struct sy_config *cfg, const char *file, struct sy_diags *d);

/**
 * Creates `n` workers and binds their listening sockets (SO_REUSEPORT, one per worker per
 * address) for every `listen` entry of `table`'s config. Each worker takes its own reference
 * to `table`. Returns 0, or a negative sy_err after logging what failed (a bind error names
 * the address). Threads are not started yet. Control thread only.
 */
int sy_workers_new(struct sy_route_table *table, unsigned n, struct sy_workers **out);

/**
 * Zero-downtime upgrade, new process: listening sockets received from the process this one
 * replaces (takes ownership of the fds). The next sy_workers_new gives each to a worker that
 * listens on its address (matched by getsockname), binds fresh sockets only for addresses
 * none matched (and for workers left without one), and closes those of addresses the file no
 * longer lists. Control thread, before sy_workers_new.
 */
void sy_workers_inherit(const int *fds, size_t n);

/**
 * Zero-downtime upgrade, old process: the listening sockets of every worker (copies the
 * control thread keeps: valid until the next publish or the drain), into out[0..max).
 * Returns how many there are (more than `max` means some were left out). Control thread.
 */
size_t sy_workers_listen_fds(const struct sy_workers *ws, int *out, size_t max);

/** Starts the worker threads. */
int sy_workers_start(struct sy_workers *ws);

/**
 * Hands a new snapshot to every worker (each takes its own reference; the caller keeps
 * its own) and returns once every worker routes with it (at most about a second). Requests
 * already routed keep the snapshot they started with. Control thread.
 */
void sy_workers_publish(struct sy_workers *ws, struct sy_route_table *table);

/**
 * Graceful stop: listeners close, idle connections close, requests in flight finish, then the
 * worker threads end; after `drain_ms` what is left is cut. Returns at once; sy_workers_join
 * waits.
 */
void sy_workers_drain(struct sy_workers *ws, unsigned drain_ms);

/**
 * The drain of the old process of an upgrade: as sy_workers_drain, except that an HTTP/2
 * connection in use gets its GOAWAY once idle for a moment or after half of `drain_ms` (the
 * new process serves the same listeners: nothing presses). Control thread.
 */
void sy_workers_drain_upgraded(struct sy_workers *ws, unsigned drain_ms);

/** One worker as /healthz and /readyz see it. */
struct sy_worker_health {
    unsigned id;          /* thread sy-worker-ID */
    bool running;         /* its loop has started */
    uint64_t beat_age_ms; /* since its loop last stamped its heartbeat (every 250 ms) */
    uint64_t installed;   /* generation of the snapshot it routes with, once it took one
                             published after the start (0: the one it started with) */
};

/**
 * Fills v[0..max) with the workers' health, read without locks; returns how many workers
 * there are. Any thread.
 */
size_t sy_workers_health(struct sy_workers *ws, struct sy_worker_health *v, size_t max);
/**
 * Asks every worker to answer `seq` (which must grow from one call to the next) from its
 * loop, once the mail posted before is taken (snapshots, listeners): a worker that answered
 * routes with the snapshot published before the call and its loop turns. Each answer writes
 * 1 (8 bytes) to `fd` when it is not -1 (an eventfd of the caller's, which must stay open
 * while workers run). Returns at once. Control thread.
 */
void sy_workers_ping(struct sy_workers *ws, uint64_t seq, int fd);

/** How many workers have answered `seq` (or a later ping). Any thread. */
size_t sy_workers_answered(const struct sy_workers *ws, uint64_t seq);

/** The number of workers. */
size_t sy_workers_count(const struct sy_workers *ws);

/** Waits for every worker thread to end. */
void sy_workers_join(struct sy_workers *ws);

/* The answers switchyard makes itself (sy_traffic.own) are counted by status: own[i] counts
 * status sy_own_status(i); the last entry, status 0, counts any other status. */
#define SY_OWN_N 13

static inline int sy_own_status(size_t i)
{
    static const int status[SY_OWN_N] = {400, 404, 405, 408, 413, 414, 431,
                                         501, 502, 503, 504, 505, 0};
    return i < SY_OWN_N ? status[i] : 0;
}

/* Why switchyard answered `status` itself, in one word: the `reason` label of
 * switchyard_generated_responses_total and the access log's `generated` when the code that
 * made the answer named nothing more precise. */
static inline const char *sy_own_reason(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 404:
        return "no_route";
    case 405:
        return "method_not_allowed";
    case 408:
        return "client_timeout";
    case 413:
        return "body_too_large";
    case 414:
        return "uri_too_long";
    case 431:
        return "head_too_large";
    case 501:
        return "not_implemented";
    case 502:
        return "upstream_failed";
    case 503:
        return "unavailable";
    case 504:
        return "upstream_timeout";
    case 505:
        return "version_not_supported";
    default:
        return "other";
    }
}

/* Latency histograms (sy_traffic.dur, head_lat) have SY_LAT_N buckets with these upper
 * bounds in microseconds, and one more for anything slower. */
#define SY_LAT_N 15

static inline uint64_t sy_lat_bound_us(size_t i)
{
    static const uint64_t b[SY_LAT_N] = {1000,    2500,    5000,     10000,    25000,
                                         50000,   100000,  250000,   500000,   1000000,
                                         2500000, 5000000, 10000000, 30000000, 60000000};
    return i < SY_LAT_N ? b[i] : UINT64_MAX;
}

/* The bucket of a duration of `us` microseconds. */
static inline size_t sy_lat_bucket(uint64_t us)
{
    size_t i = 0;
    while (i < SY_LAT_N && us > sy_lat_bound_us(i))
        i++;
    return i;
}

/* Finished requests by status class: [1] 1xx ... [5] 5xx, [0] none (the client went away
 * before an answer). */
#define SY_CLASS_N 6

/** Traffic counters of one app on one cluster, summed over the workers, since start. */
struct sy_traffic {
    const char *app, *cluster; /* valid during the callback; both NULL: before routing */
    uint64_t requests;         /* routed to this cluster */
    uint64_t responses_5xx;    /* answered 5xx, by the cluster or by us on its behalf */
    uint64_t in_flight;        /* exchanges not finished yet (requests, streams, tunnels) */
    uint64_t tunnels;          /* of those, upgraded connections (WebSocket) */
    uint64_t own[SY_OWN_N];    /* answers of our own (400, 408, 502, 504...), by status */
    uint64_t queued;           /* waiting for a connection now (clusters.NAME.max_connections) */
    uint64_t queue_503;        /* answered 503 by the queue: full, or queue.timeout ran out */
    uint64_t upstream_refused; /* answered 503: limits.max_upstream_connections reached */
    uint64_t proxy_protocol_rejected; /* with app NULL only: connections closed for a missing
                                         or bad PROXY protocol header */
    /* The exclusive switch, on the cluster held requests wait for: */
    uint64_t held;                 /* held now */
    uint64_t held_released;        /* released to the cluster, since start */
    uint64_t held_503;             /* answered 503 (exclusive.hold ran out, or max_held) */
    uint64_t held_wait_max_ms;     /* the longest wait of a held request (the most of any worker) */
    uint64_t by_class[SY_CLASS_N]; /* finished requests by status class */
    uint64_t dur[SY_LAT_N + 1];    /* request duration histogram (not cumulative) */
    uint64_t dur_sum_us;
    uint64_t head_lat[SY_LAT_N + 1]; /* time to response head histogram (not cumulative) */
    uint64_t head_sum_us, head_count;
    uint64_t bytes_in, bytes_out; /* request and response body bytes */
};

typedef void (*sy_traffic_cb)(const struct sy_traffic *t, void *arg);

/**
 * Calls `cb` once for every app and cluster pair that has seen traffic, with the counters
 * summed over the workers (read without locks: each figure is exact, the set is a moment's
 * view), and once with app and cluster NULL for the answers made before a request was routed
 * (bad requests, head deadlines, no app), if there were any, and once more with app NULL
 * and only proxy_protocol_rejected set when that is not 0. Control thread.
 */
void sy_workers_traffic(struct sy_workers *ws, sy_traffic_cb cb, void *arg);

/**
 * Makes a new session ticket key, the one every TLS listener seals tickets with from now on;
 * the two before it still open tickets. Call every timeouts.tls_ticket_rotate. Control thread.
 */
void sy_tls_tickets_rotate(void);

/* Why a connection to a cluster endpoint could not be made (/metrics
 * switchyard_upstream_connect_errors_total{reason}). */
enum sy_connect_error {
    SY_CONNERR_REFUSED = 0, /* "refused": ECONNREFUSED */
    SY_CONNERR_TIMEOUT,     /* "timeout": timeouts.upstream_connect ran out (or ETIMEDOUT) */
    SY_CONNERR_TLS,         /* "tls": the handshake or the certificate check failed */
    SY_CONNERR_RESET,       /* "reset": ECONNRESET, EPIPE during the connect */
    SY_CONNERR_UNREACHABLE, /* "unreachable": no route to the host or the network */
    SY_CONNERR_OTHER,       /* "other" */
    SY_CONNERR_N,
};

static inline const char *sy_connect_error_name(size_t i)
{
    static const char *const names[SY_CONNERR_N] = {"refused", "timeout",     "tls",
                                                    "reset",   "unreachable", "other"};
    return i < SY_CONNERR_N ? names[i] : "other";
}

/** Connect errors to one endpoint of one cluster, summed over the workers. */
struct sy_endpoint_errors {
    const char *cluster, *endpoint; /* valid during the callback */
    uint64_t errors[SY_CONNERR_N];
    uint64_t open, idle; /* HTTP/1.1 connections open now (in use or idle), and idle */
};

typedef void (*sy_endpoint_errors_cb)(const struct sy_endpoint_errors *e, void *arg);

/**
 * Calls `cb` once for every cluster endpoint that has been used or had a connect error since
 * start (read without locks). Control thread.
 */
void sy_workers_connect_errors(struct sy_workers *ws, sy_endpoint_errors_cb cb, void *arg);

/** Connections taken by one listen address, summed over the workers. */
struct sy_listener_stats {
    const char *listener;    /* the address as written in `listen:`; valid during the callback */
    uint64_t http1, h2, h2c; /* connections by protocol: HTTP/1.1 (TLS or cleartext, counted
                                at its first request), h2 (TLS, ALPN), h2c (the preface) */
    uint64_t tls_ok, tls_failed; /* TLS handshakes done, and failed or timed out */
};

typedef void (*sy_listener_stats_cb)(const struct sy_listener_stats *l, void *arg);

/** Calls `cb` once for every listen address that has accepted a connection. Control thread. */
void sy_workers_listener_stats(struct sy_workers *ws, sy_listener_stats_cb cb, void *arg);

/** Frees the workers (after join). NULL is a no-op. */
void sy_workers_free(struct sy_workers *ws);

#endif
