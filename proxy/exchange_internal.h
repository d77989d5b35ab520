/* SPDX-License-Identifier: MIT */
/* Shared by the files of the exchange only (exchange.c, rewrite.c, answer.c, drain.c, hold.c):
 * the exchange's life (alloc, finish, fail, go) and the steps one file lends another. Every
 * other file of proxy/ reaches the exchange through proxy_internal.h. Loop thread only. */
#ifndef SWITCHYARD_EXCHANGE_INTERNAL_H
#define SWITCHYARD_EXCHANGE_INTERNAL_H

#include "proxy_internal.h"

/* rewrite.c */
/* Only WebSocket is tunnelled. Any other protocol (h2c above all: a raw HTTP/2 connection to
 * the backend, past routing and revert) is not offered to the cluster; the request is served
 * as plain HTTP/1.1 (RFC 9110 §7.8: a server may ignore Upgrade). WebSocket offered among
 * others is offered alone. Returns `req`, or `stripped` filled in (borrowing from `req`). */
const struct req_head *exchange_websocket_only(const struct req_head *req,
                                               struct req_head *stripped);

#endif
