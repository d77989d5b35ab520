/* SPDX-License-Identifier: MIT */
/* The data path as main.c sees it: a set of worker threads, each with its own event loop,
 * listening sockets and upstream pools, fed routing snapshots by the control thread. */
#ifndef SWITCHYARD_PROXY_H
#define SWITCHYARD_PROXY_H

#include <stddef.h>

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

/** Frees the workers (after join). NULL is a no-op. */
void sy_workers_free(struct sy_workers *ws);

#endif
