/* SPDX-License-Identifier: MIT */
/* The data path as main.c sees it: a set of worker threads, each with its own event loop,
 * listening sockets and upstream pools, fed routing snapshots by the control thread. */
#ifndef SWITCHYARD_PROXY_H
#define SWITCHYARD_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/counters.h"
#include "switchyard/routing.h"

struct sy_workers;

/**
 * Checks what only the proxy can check in a loaded config: that every TLS listener's
 * certificate and key load and match, and that the client TLS of every cluster and of
 * fleet.etcd (CA bundle, client certificate and key) loads. Appends one diagnostic per problem
 * (at the `tls` key, in `file`, which must outlive `d`) and returns 0 or SY_ERR_INVALID. Any
 * thread.
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

/**
 * Calls `cb` once for every cluster endpoint that has been used or had a connect error since
 * start (read without locks). Control thread.
 */
void sy_workers_connect_errors(struct sy_workers *ws, sy_endpoint_errors_cb cb, void *arg);

/** Calls `cb` once for every listen address that has accepted a connection. Control thread. */
void sy_workers_listener_stats(struct sy_workers *ws, sy_listener_stats_cb cb, void *arg);

/** Frees the workers (after join). NULL is a no-op. */
void sy_workers_free(struct sy_workers *ws);

/**
 * A TLS client context for a peer that is not a cluster (the fleet's etcd members), with a
 * cluster's `tls:` settings (CA, client certificate, verification) and ALPN http/1.1. NULL
 * with a reason in *why. Control thread.
 */
struct ssl_ctx_st *sy_proxy_tls_client_ctx(const struct sy_cluster_tls *t, const char **why);

#endif
