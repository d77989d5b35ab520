/* SPDX-License-Identifier: MIT */
/* The data path's counters as the control side reads them: the types the workers fill
 * (proxy/) and /metrics, /status and `status` show (admin/), with the constant tables that
 * name their buckets. Types only: no functions to link, so that admin/ reads the counters
 * without an include of the proxy's header (the functions that sum them, sy_workers_*, are
 * proxy.h's, called through callbacks that main.c wires). */
#ifndef SWITCHYARD_COUNTERS_H
#define SWITCHYARD_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/** One worker as /healthz and /readyz see it. */
struct sy_worker_health {
    unsigned id;          /* thread sy-worker-ID */
    bool running;         /* its loop has started */
    uint64_t beat_age_ms; /* since its loop last stamped its heartbeat (every 250 ms) */
    uint64_t installed;   /* generation of the snapshot it routes with, once it took one
                             published after the start (0: the one it started with) */
};

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

/** Connections taken by one listen address, summed over the workers. */
struct sy_listener_stats {
    const char *listener;    /* the address as written in `listen:`; valid during the callback */
    uint64_t http1, h2, h2c; /* connections by protocol: HTTP/1.1 (TLS or cleartext, counted
                                at its first request), h2 (TLS, ALPN), h2c (the preface) */
    uint64_t tls_ok, tls_failed; /* TLS handshakes done, and failed or timed out */
    uint64_t h2_parked;          /* HTTP/2 connections parked now (no stream yet, no session) */
};

typedef void (*sy_listener_stats_cb)(const struct sy_listener_stats *l, void *arg);

#endif
