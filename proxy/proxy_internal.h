/* SPDX-License-Identifier: MIT */
/* Shared inside proxy/: the worker, the downstream HTTP/1.1 connection, the upstream
 * connection and its pool, and the exchange that links one request to one upstream. */
#ifndef SWITCHYARD_PROXY_INTERNAL_H
#define SWITCHYARD_PROXY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "switchyard/h1.h"
#include "switchyard/proxy.h"
#include "switchyard/routing.h"

struct client;
struct upstream;

/* Idle keep-alive connections to one endpoint, owned by one worker. */
struct pool {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct upstream *idle; /* most recently used first */
    size_t n_idle;
    struct pool *next;
};

struct sy_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    int *fds; /* listening sockets, until the thread wraps them in listeners */
    size_t n_fds;
    struct evconnlistener **listeners;
    struct sy_route_table *table; /* this worker's reference to the current snapshot */

    /* Messages from the control thread. */
    pthread_mutex_t mu;
    struct sy_route_table *pending; /* newest snapshot not yet taken */
    bool drain_requested;
    unsigned drain_ms;
    struct event *msg_ev;
    struct event *drain_timer;
    bool draining;

    struct pool *pools;
    struct client *clients; /* every open downstream connection */
    size_t n_clients;
    uint64_t next_conn_id;
    struct sy_h1_header *scratch; /* header array for parsing, max_headers entries */
    size_t scratch_cap;
    uint64_t rng; /* xorshift state: keys for new sticky cookies */
};

/* One request in flight: downstream connection, routing decision, upstream connection. */
struct exchange {
    struct client *client;
    struct sy_route_table *table; /* reference held until the exchange ends */
    const struct sy_route_app *app;
    size_t cluster;
    const struct sy_endpoint_spec *endpoint;
    struct upstream *up;
    struct evbuffer *up_head; /* serialized request head, kept for one retry */
    bool retried;
    bool head_request;
    char *set_cookie; /* a new sticky key for the response, or NULL */
    bool expect_continue; /* 100 Continue still to be sent */

    enum sy_h1_framing req_framing;
    uint64_t req_remaining;
    uint64_t req_body_bytes;
    struct sy_h1_chunked req_chunked;
    struct evbuffer *req_trailers;
    bool req_body_started; /* a body byte went upstream: no retry */
    bool req_done;

    bool resp_started; /* the response head went to the client */
    bool resp_done;
    int status;
    enum sy_h1_framing resp_framing;
    uint64_t resp_remaining;
    struct sy_h1_chunked resp_chunked;
    bool resp_chunked_out; /* re-encoded as chunked towards the client */
    bool resp_keep_alive;  /* upstream connection reusable afterwards */
    bool up_eof;           /* the upstream closed; its input holds the last bytes */
};

struct client {
    struct sy_worker *w;
    uint64_t id;
    struct bufferevent *bev;
    char peer[64];
    struct sockaddr_storage addr;
    struct exchange *ex;
    struct event *timer; /* request head deadline / keep-alive idle */
    bool keep_alive;     /* after the current exchange */
    bool head_started;   /* bytes of a request head arrived: the head deadline runs */
    bool closing;        /* free once the output is flushed */
    bool read_paused;    /* by backpressure from the upstream */
    int minor;           /* HTTP/1.<minor> of the current request */
    struct client *next, *prev;
};

struct upstream {
    struct sy_worker *w;
    struct pool *pool;
    struct bufferevent *bev;
    struct exchange *ex;
    bool connected;
    bool reused;
    bool read_paused;
    struct upstream *next; /* in the pool's idle list */
};

/* worker.c */
const struct sy_config *worker_config(const struct sy_worker *w);
/* 64 random bits (not for secrets: a sticky key only needs to be unpredictable enough to
 * spread users evenly, and is seeded from the kernel per worker). */
uint64_t worker_random(struct sy_worker *w);
void worker_client_gone(struct sy_worker *w);

/* client.c */
void client_accept(struct sy_worker *w, int fd, const struct sockaddr *sa, int salen);
void client_close_idle(struct sy_worker *w);
void client_free_all(struct sy_worker *w);

/* exchange.c: called by client.c and upstream.c */
void exchange_start(struct client *c, const struct sy_h1_request *req);
void exchange_client_readable(struct exchange *ex);
void exchange_client_drained(struct exchange *ex);
void exchange_client_gone(struct exchange *ex);
void exchange_free(struct exchange *ex);
void exchange_upstream_connected(struct exchange *ex);
void exchange_upstream_readable(struct exchange *ex);
void exchange_upstream_drained(struct exchange *ex);
void exchange_upstream_event(struct exchange *ex, short what);

/* client.c: called by exchange.c */
void client_send_error(struct client *c, int status, const char *why);
void client_exchange_done(struct client *c, bool reusable);
void client_abort(struct client *c);

/* upstream.c */
/* A pooled connection, or a new one (always new when `fresh`); NULL when a socket cannot be
 * made at all. */
struct upstream *upstream_get(struct sy_worker *w, const struct sy_endpoint_spec *ep,
                              struct exchange *ex, bool fresh);
void upstream_release(struct upstream *up, bool reusable);
void upstream_free_pools(struct sy_worker *w);

#endif
