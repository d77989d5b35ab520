/* SPDX-License-Identifier: MIT */
/* Shared by the files of the exchange only (exchange.c, rewrite.c, answer.c, drain.c, hold.c):
 * the exchange's life (new, finish, fail, go) and the steps one file lends another. Every
 * other file of proxy/ reaches the exchange through proxy_internal.h. Loop thread only. */
#ifndef SWITCHYARD_EXCHANGE_INTERNAL_H
#define SWITCHYARD_EXCHANGE_INTERNAL_H

#include "proxy_internal.h"

/* exchange.c */
/* A new exchange for the request `req` of `d` matched to `app` (taking the table reference
 * `t`), from the worker's cache of finished ones when it has one (then a request costs no
 * allocation for it). Its request id is made, HEAD and a request without a body are noted;
 * the caller fills in the rest and links it to `d`. NULL when its buffers could not be
 * allocated: `t` is then still the caller's, and the request is answered 503 with
 * exchange_nomem_reason (exchange_answer_own). */
struct exchange *exchange_new(struct downstream *d, const struct req_head *req,
                              struct sy_route_table *t, const struct sy_route_app *app);
/* Ends the exchange (freed on return); the downstream goes on when `reusable`. */
void exchange_finish(struct exchange *ex, bool reusable);
/* Ends the exchange (freed on return) on an error: an answer of our own with `status` and
 * `why` if the response has not started, otherwise the response is cut (a truncated response
 * must not look complete). */
void exchange_fail(struct exchange *ex, int status, const char *why);
/* The exchange has its cluster and its head: it takes a connection, or waits for one (it may
 * fail at once and be freed). `late`: the codec consumed the head long ago (a held request),
 * so the body may be pulled as soon as the connection is there. */
void exchange_go(struct exchange *ex, bool late);

/* answer.c: the answers switchyard makes itself. */
/* An answer of our own (`status`, `why`) for a request that has no exchange, counted on
 * cluster `c` of `app`; releases the table reference `t`. */
void exchange_answer_own(struct downstream *d, struct sy_route_table *t,
                         const struct sy_route_app *app, size_t c, int status, const char *why);
/* The 503 for a request whose cluster `c` has no endpoint up while `app` has failover: false;
 * releases the table reference `t`. */
void exchange_answer_cluster_down(struct downstream *d, struct sy_route_table *t,
                                  const struct sy_route_app *app, size_t c);
/* The 404 for a request no app matches under `path`; releases the table reference `t`. */
void exchange_answer_no_app(struct downstream *d, const struct req_head *req,
                            struct sy_route_table *t, struct sy_slice path);
/* App in maintenance (switchyardctl maintenance APP on): 503 with Retry-After, no-store, and
 * the app's page for browsers or one line for the rest; nothing goes to a cluster. Takes the
 * reference `t`. The exchange stays until the codec has consumed the head and the body is
 * dropped (exchange_maint_body_ready), so that the connection goes on. Counted as an own 503
 * on the app's stable cluster. */
void exchange_answer_maintenance(struct downstream *d, const struct req_head *req,
                                 struct sy_route_table *t, const struct sy_route_app *app,
                                 const struct sy_route_maint_answer *m);
/* The request body of a maintenance answer arrived: it is read and dropped so that the
 * connection can go on (and a close does not reset the answer away), up to 1 MiB; past that,
 * or with a 100-continue the answer refused, the connection (HTTP/2: the stream) does not go
 * on. Ends the exchange once the body is in, or given up. */
void exchange_maint_body_ready(struct exchange *ex);
/* No connection could be had for the exchange (`why` from upstream_ops.start): 503 when
 * limits.max_upstream_connections said no (the cluster was not tried), 502 when the cluster
 * cannot be reached. Ends the exchange. */
void exchange_fail_connect(struct exchange *ex, const char *why);

/* rewrite.c */
/* Only WebSocket is tunnelled. Any other protocol (h2c above all: a raw HTTP/2 connection to
 * the backend, past routing and revert) is not offered to the cluster; the request is served
 * as plain HTTP/1.1 (RFC 9110 §7.8: a server may ignore Upgrade). WebSocket offered among
 * others is offered alone. Returns `req`, or `stripped` filled in (borrowing from `req`). */
const struct req_head *exchange_websocket_only(const struct req_head *req,
                                               struct req_head *stripped);

/* hold.c: exclusive apps (apps[].mode). */
/* The exclusive switch's say on a routed exchange with its head built: a forced request to
 * the cluster that is not live is refused (503) unless force_while_exclusive; while a switch
 * runs, the request is held, or answered 503 with Retry-After past exclusive.max_held. Returns
 * true when the exchange was taken care of (held, or answered and freed). */
bool hold_gate(struct exchange *ex, const struct sy_config *cfg);

#endif
