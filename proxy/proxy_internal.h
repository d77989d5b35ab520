/* SPDX-License-Identifier: MIT */
/* Shared inside proxy/: the worker, the two downstream codecs (HTTP/1.1 and HTTP/2), the
 * upstream connection and its pool, and the exchange that links one downstream request to one
 * upstream connection. The codecs meet the exchange only through struct downstream and the
 * codec-neutral request and response heads below: no codec knows about the other. */
#ifndef SWITCHYARD_PROXY_INTERNAL_H
#define SWITCHYARD_PROXY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "switchyard/access_log.h"
#include "switchyard/h1.h"
#include "switchyard/proxy.h"
#include "switchyard/routing.h"

#include "mem.h"
#include "sock.h"

struct exchange;
struct upstream;
struct h1_conn;

/* Connections to one endpoint spoken to one way (address, protocol and TLS settings), owned by
 * one worker: idle HTTP/1.1 keep-alive connections, and every HTTP/2 connection. */
struct h2_up;
struct pool {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    enum sy_upstream_proto proto;
    bool tls_on; /* with TLS; the settings below tell pools apart */
    bool tls_verify;
    char *tls_ca, *tls_cert, *tls_key;
    char *tls_name;        /* server name sent (SNI) and verified, or NULL */
    char *tls_ip;          /* with no name: the IP address verified against the certificate */
    SSL_CTX *tls;          /* the control thread's context for these settings (a reference) */
    SSL_SESSION *session;  /* the last session the server gave us, for resumption */
    struct upstream *idle; /* most recently used first */
    size_t n_idle;
    size_t n_conns; /* HTTP/1.1 connections, idle or in use */
    /* The most HTTP/1.1 connections in use at once in this 10 s window and the one before
     * (limits.upstream_keepalive: auto keeps that many idle). */
    size_t busy_peak, busy_prev;
    uint64_t busy_window;
    struct h2_up *h2;        /* HTTP/2 connections, newest first */
    uint32_t h2_max_streams; /* the server's last SETTINGS_MAX_CONCURRENT_STREAMS, 0: unknown */
    bool retired;            /* the endpoint left the routing table: keep nothing idle */
    /* Requests waiting for a connection (clusters.NAME.max_connections), oldest first. */
    struct exchange *q_head, *q_tail;
    size_t n_queued;
    struct event *q_ev;   /* serves the queue on the next loop turn; made with the first wait */
    struct ep_stat *stat; /* /metrics: its open and idle counts (the cluster that made it) */
    struct pool *next;
};

/* One listening address of a worker. */
struct listener {
    struct sy_worker *w;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct evconnlistener *ev; /* owns the socket */
    SSL_CTX *tls;              /* NULL: cleartext (HTTP/1.1 and h2c by prior knowledge) */
    /* Out of descriptors: accepting pauses (pause_ev enables it again); `pauses` counts a run
     * of them, logged at its start and its end. */
    struct event *pause_ev;
    unsigned pauses;
    struct lis_stat *stat; /* its counters, found at the first accept */
};

/* A message from the control thread: a new snapshot and the listener set that goes with it
 * (`fd` is a new socket for an address the worker does not listen on yet, else -1; `tls` is
 * a reference for the worker). */
struct listener_plan {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fd;
    SSL_CTX *tls;
    bool keep_tls; /* the new context could not be built: the listener keeps its own */
};

/* A TLS context for the clusters that speak TLS one way (the settings pools are told apart
 * by), built by the control thread; `ctx` is a reference for the worker. */
struct tls_client_plan {
    char *ca, *cert, *key;
    bool verify, h2;
    SSL_CTX *ctx;
};

struct worker_msg {
    struct sy_route_table *table;
    struct listener_plan *plan;
    size_t n_plan;
    struct tls_client_plan *clients; /* taken by the worker with the table */
    size_t n_clients;
    struct worker_msg *next;
};

/* Counters of one app on one cluster in one worker. Written by the worker only (plain
 * load-add-store on atomics: no locked instruction on the request path), read by the control
 * thread. Slots are never freed before the worker is, so an exchange keeps its slot across
 * reloads. */
struct traffic_slot {
    char *app, *cluster;
    _Atomic uint64_t requests, responses_5xx, in_flight, tunnels;
    _Atomic uint64_t own[SY_OWN_N];    /* answers of our own, by status (sy_own_status) */
    _Atomic uint64_t queued;           /* waiting for a connection now (max_connections) */
    _Atomic uint64_t queue_503;        /* answered 503: the queue was full or the wait ran out */
    _Atomic uint64_t upstream_refused; /* answered 503: limits.max_upstream_connections */
    /* The exclusive switch (hold.c), on the slot of the cluster a held request waits for. */
    _Atomic uint64_t held;             /* held now */
    _Atomic uint64_t held_released;    /* released to their cluster */
    _Atomic uint64_t held_503;         /* answered 503: exclusive.hold ran out, or max_held */
    _Atomic uint64_t held_wait_max_ms; /* the longest a request waited, released or not */
    /* For /metrics (admin/metrics.c), counted when an exchange ends. */
    _Atomic uint64_t by_class[SY_CLASS_N]; /* by status / 100; [0]: no status (client gone) */
    _Atomic uint64_t dur[SY_LAT_N + 1];    /* request duration, by bucket (not cumulative) */
    _Atomic uint64_t dur_sum_us;
    _Atomic uint64_t head_lat[SY_LAT_N + 1]; /* time to the response head, by bucket */
    _Atomic uint64_t head_sum_us, head_count;
    _Atomic uint64_t bytes_in, bytes_out; /* request and response body bytes */
    struct traffic_slot *next;
};

/* Connect errors to one endpoint of one cluster in one worker (worker.c): made on the first
 * error (an error path, not the request path), never freed before the worker. */
struct ep_stat {
    char *cluster, *endpoint;
    _Atomic uint64_t errors[SY_CONNERR_N];
    _Atomic uint64_t open, idle; /* HTTP/1.1 connections of the pool made for it (pool.stat) */
    struct ep_stat *next;
};

/* The counters of `endpoint` of `cluster` in worker `w` (made on first use). Worker thread. */
struct sy_worker;
struct ep_stat *worker_ep_stat(struct sy_worker *w, const char *cluster, const char *endpoint);

/* Connections taken by one listen address in one worker (worker.c), never freed before the
 * worker: a connection keeps a pointer to it (conn.lstat). */
enum { LPROTO_H1 = 0, LPROTO_H2, LPROTO_H2C, LPROTO_N };
struct lis_stat {
    char *address;
    _Atomic uint64_t conns[LPROTO_N];
    _Atomic uint64_t tls_ok, tls_failed;
    _Atomic uint64_t h2_parked; /* HTTP/2 connections held without their session now */
    struct lis_stat *next;
};

/* Counts a connect error of `reason` to `endpoint` of `cluster`. Worker thread. */
struct sy_worker;
void worker_count_connect_error(struct sy_worker *w, const char *cluster, const char *endpoint,
                                enum sy_connect_error reason);

static inline void counter_add(_Atomic uint64_t *c, int64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

/* Sources remembered per worker for the once-a-minute PROXY protocol rejection line. */
#define PP_LOG_SLOTS 64

struct sy_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct listener **listeners;
    size_t n_listeners;
    struct sy_route_table *table; /* this worker's reference to the current snapshot */

    /* Messages from the control thread. */
    pthread_mutex_t mu;
    struct worker_msg *inbox, **inbox_tail; /* in order */
    bool drain_requested;
    unsigned drain_ms;
    bool drain_soft; /* the drain follows an upgrade: the listeners live on in the new process */
    int msg_fd;      /* eventfd: the control thread rings it after posting */
    _Atomic uint64_t installed; /* generation of w->table, for the control thread to wait on */
    struct event *msg_ev;
    struct event *drain_timer;
    bool draining;
    /* sy_workers_ping: the control thread stores a number in `ping` and rings msg_fd; the
     * worker's loop copies it to `pong` (then its snapshot is installed and its loop turns)
     * and rings `ping_fd` when that is not -1. */
    _Atomic uint64_t ping, pong;
    _Atomic int ping_fd;

    struct pool *pools;
    struct tls_client_plan *tls_clients; /* the cluster TLS contexts that go with w->table */
    size_t n_tls_clients;
    size_t n_upstream; /* connections to clusters, idle or not (max_upstream_connections) */
    struct exchange *exchanges; /* every exchange in flight */
    struct exchange *ex_cache;  /* finished exchanges kept for reuse, with their buffers */
    size_t n_ex_cache;
    struct drain_job *drain_jobs; /* drain_after timers */
    struct exchange *drain_cut;   /* the exchange drain_after is about to cut: NULL once it
                                     ended (exchange_free), so that it is freed only once */
    /* Requests held by an exclusive switch (hold.c), oldest first. */
    struct exchange *held_head, *held_tail;
    size_t n_held;
    struct event *hold_timer;   /* exclusive.hold of the oldest */
    struct sy_sock_loop *socks; /* write-through of the worker's sockets (sock.h) */
    struct conn *conns;         /* every open downstream connection */
    /* The next worker_conn_init takes its conn.trusted from here (and clears it): the code
     * that hands a connection over (accept, TLS handshake, h2c upgrade) sets it just before,
     * so the accept functions keep their signatures. Loop thread only. */
    bool accept_trusted;
    _Atomic uint64_t pp_rejected; /* connections closed for a missing or bad PROXY header */
    struct {
        uint64_t hash, at; /* which source was last logged in this slot, and when (s + 1) */
    } pp_logged[PP_LOG_SLOTS];
    size_t n_conns;
    uint64_t next_conn_id;
    struct sy_header *scratch; /* header array for parsing, max_headers entries */
    size_t scratch_cap;
    uint64_t rng;                       /* xorshift state: keys for new sticky cookies */
    struct traffic_slot *_Atomic slots; /* every slot, newest first */
    struct traffic_slot **slot_index;   /* [app * n_clusters + cluster] for w->table */
    struct traffic_slot *unrouted;      /* answers before routing (app and cluster "") */
    _Atomic uint64_t beat_ms; /* sy_now_ms() at the loop's last heartbeat (0: not running) */
    struct event *beat_ev;    /* the heartbeat timer (/healthz) */
    struct ep_stat *_Atomic ep_stats;   /* connect errors by endpoint, newest first */
    struct lis_stat *_Atomic lis_stats; /* connections by listen address, newest first */
    /* The next worker_conn_init takes its conn.lstat from here: set, like accept_trusted, by
     * whoever hands a connection over (accept, PROXY header, TLS handshake, h2c preface). */
    struct lis_stat *accept_lstat;
    /* The next worker_conn_init takes its conn.tls_version from here (tls.c sets it). */
    const char *accept_tls_version;
    /* The access log (access.c): this worker's ring (NULL: off) and request id source. */
    struct sy_access_ring *alog;
    uint64_t rid_seed, rid_next;
};

/* What every downstream connection has, whatever its protocol. */
struct conn {
    struct sy_worker *w;
    uint64_t id;
    struct sockaddr_storage addr;
    char peer[64];
    bool tls;
    bool trusted; /* the client address is in trusted_proxies: its X-Forwarded-* are kept */
    struct conn *next, *prev;
    struct lis_stat *lstat;             /* the listener's counters, or NULL */
    const char *tls_version;            /* "TLSv1.3"... (OpenSSL's static text), NULL: cleartext */
    void (*close_idle)(struct conn *c); /* drain: close if nothing is in flight */
    void (*free)(struct conn *c);       /* worker shutdown */
};

/* A request head in the codec-neutral form. Slices are valid during exchange_start only. */
struct req_head {
    struct sy_slice method;
    struct sy_slice target;    /* origin-form ("/path?q") or "*" */
    struct sy_slice authority; /* Host or :authority */
    const struct sy_header *headers;
    size_t n_headers;
    enum sy_h1_framing framing; /* NONE, LENGTH, or CHUNKED meaning "length unknown" */
    uint64_t content_length;
    bool expect_continue;
    struct sy_slice upgrade; /* HTTP/1.1 Upgrade the client asks for (with Connection: upgrade),
                                empty otherwise */
    const char *version;     /* for Via: "1.0", "1.1" or "2" */
};

/* A response head in the codec-neutral form. */
struct resp_head {
    int status;
    struct sy_slice reason;          /* HTTP/1.1 reason phrase, may be empty */
    const struct sy_header *headers; /* end-to-end fields only: framing and hop-by-hop removed */
    size_t n_headers;
    bool has_body;
    bool length_known;
    uint64_t content_length; /* with length_known, or the representation's length for HEAD/304 */
    bool head_length;        /* content_length describes a HEAD/304 representation */
    const char *set_cookie;  /* a Set-Cookie value to add, or NULL */
    struct sy_slice upgrade; /* with status 101: the protocol switched to */
};

/* One downstream request: an HTTP/1.1 connection's current request or an HTTP/2 stream. */
struct downstream;
struct downstream_ops {
    /* Moves up to `max` bytes of decoded request body into `out`, and trailer fields as
     * "name: value\r\n" lines into `trailers`. Sets *done at the end of the body. Returns the
     * bytes moved, or -1 with *why for a malformed body (answered with 400), or with *why
     * exchange_nomem_reason when a buffer could not grow (answered with 503). */
    ssize_t (*pull_body)(struct downstream *d, struct evbuffer *out, size_t max,
                         struct evbuffer *trailers, bool *done, const char **why);
    /* The cluster is reachable: a client waiting for 100 Continue may send its body. */
    void (*send_continue)(struct downstream *d);
    void (*send_head)(struct downstream *d, const struct resp_head *h);
    /* Response bytes queued towards the client and not yet written. */
    size_t (*queued)(struct downstream *d);
    /* Moves `n` bytes of response body from `src`. */
    void (*send_body)(struct downstream *d, struct evbuffer *src, size_t n);
    /* The response is complete; `trailers` ("name: value\r\n" lines) may be NULL. */
    void (*send_end)(struct downstream *d, struct evbuffer *trailers);
    /* An answer of our own (nothing was sent yet). */
    void (*send_error)(struct downstream *d, int status, const char *why);
    /* The exchange is over and freed; `reusable` is false when the request was not read to
     * its end (the connection, or the stream, cannot go on). */
    void (*finish)(struct downstream *d, bool reusable);
    /* The response cannot be completed: cut it so that it does not look complete. */
    void (*abort)(struct downstream *d);
    /* The upstream switched protocols (101): from now on pull_body hands over raw bytes
     * until the client closes, and send_body writes raw bytes. NULL: not supported. */
    void (*start_tunnel)(struct downstream *d);
};

/* The access log (access.c). A downstream keeps only what an answer of the codec's own needs
 * (a few words, since every client connection has one); the request id and the copies of the
 * request line live in the exchange (struct access_req), which exists only while a request is
 * in flight. The copies are made only when the log is on, cut to these sizes. */
#define ACCESS_ID_MAX        128
#define ACCESS_METHOD_MAX    16
#define ACCESS_AUTHORITY_MAX 128
#define ACCESS_PATH_MAX      512
enum access_state {
    ACCESS_IDLE = 0, /* no request head seen (a parse error is logged from what the codec has) */
    ACCESS_BEGUN,    /* the head was seen: access_begin */
    ACCESS_LOGGED,   /* the exchange wrote its line: the codec's error answer adds none */
};
struct access_rec {
    uint8_t state;
    const char *proto;           /* "HTTP/1.1", "HTTP/1.0", "h2" or "h2c" */
    uint64_t start_us;           /* monotonic, when the head was seen */
    uint64_t wall_ms;            /* the same moment, unix milliseconds */
    const struct req_head *head; /* during exchange_start only (its own answers), else NULL */
};
struct access_req {
    uint8_t id_len, method_len, authority_len;
    uint16_t path_len;
    char id[ACCESS_ID_MAX];
    char method[ACCESS_METHOD_MAX];
    char authority[ACCESS_AUTHORITY_MAX];
    char path[ACCESS_PATH_MAX];
};

struct downstream {
    const struct downstream_ops *ops;
    struct conn *conn;
    struct exchange *ex; /* NULL when none is in flight */
    /* Where the next send_error is counted (worker_count_own): the exchange's app and
     * cluster, set just before it calls send_error; NULL: before routing. */
    struct traffic_slot *own_slot;
    /* Seconds for a Retry-After field on the next send_error or send_head (0: none), set just
     * before it by sy_error_retry_after() and cleared by it. */
    unsigned retry_after_s;
    struct access_rec acc;
};

/* The next answer of our own on `d` carries `Retry-After: seconds` (RFC 9110 §10.2.3): one
 * helper for every 503 that says when to come back (hold expiry, max_held, maintenance). */
static inline void sy_error_retry_after(struct downstream *d, unsigned seconds)
{
    d->retry_after_s = seconds;
}

/* One request's stream to a cluster, behind one table of operations like struct downstream:
 * HTTP/1.1 (h1_client.c) or HTTP/2 (h2_client.c). The exchange calls these; the client calls
 * back through the exchange_on_* functions below and keeps its own state in ex->ups (opaque to
 * the exchange, recycled with no allocation per request). */
struct upstream_ops {
    /* Makes ex->ups and the request head as the cluster gets it (exchange_rewrite_head into a
     * sink of the protocol's kind), kept for a retry. During exchange_start only. */
    void (*prepare)(struct exchange *ex, const struct req_head *req, bool tls_up);
    /* Puts the request on a connection of pool `p` (taking or opening one). `late`: the codec
     * consumed the head long ago, so the body may be pulled at once. After a failure the client
     * reported with exchange_on_error, the next start avoids the connection that failed.
     * Returns false with *why when no connection can be made (the caller fails the exchange). */
    bool (*start)(struct exchange *ex, struct pool *p, const struct sy_cluster_spec *cl, bool late,
                  const char **why);
    void (*body_ready)(struct exchange *ex);     /* request body bytes arrived */
    void (*client_drained)(struct exchange *ex); /* the client took response bytes */
    /* The exchange ends: the stream leaves its connection and ex->ups is recycled (NULL after).
     * `complete`: both request and response ended, so the connection may go on. */
    void (*cancel)(struct exchange *ex, bool complete);
    /* A failed safe request may go once more on another connection even when the cluster may
     * have acted on it (HTTP/2: a connection fails for all its streams at once). */
    bool retry_safe;
};
extern const struct upstream_ops h1_upstream_ops, h2_upstream_ops;

/* One request in flight: downstream, routing decision, upstream stream. No field here belongs to
 * one protocol: those are in ex->ups. */
struct exchange {
    struct downstream *down;
    struct sy_worker *w;
    struct sy_route_table *table; /* reference held until the exchange ends */
    const struct sy_route_app *app;
    size_t cluster;
    const struct sy_endpoint_spec *endpoint;
    const struct upstream_ops *uops; /* NULL until routed to a cluster */
    void *ups;                       /* the client's stream state, or NULL */
    struct traffic_slot *slot;
    struct evbuffer *tmp; /* body bytes between decoding and framing */
    struct evbuffer *trailers;
    bool retried;
    uint8_t refused;         /* times the cluster gave the request back unprocessed */
    bool connect_failed;     /* set by a client just before it reports a failed connect */
    bool connect_retried;    /* a failed connect was tried once on another endpoint */
    uint8_t retries_charged; /* retries taken from the cluster's retry budget (given back
                                when the answer comes) */
    bool head_request;
    bool head_lost; /* exchange_rewrite_head could not write all of the head (out of memory) */
    bool safe;      /* GET, HEAD, OPTIONS, TRACE: may be retried on a fresh connection */
    bool expect_continue; /* 100 Continue still to be sent */
    char *set_cookie;     /* a new sticky key for the response, or NULL */

    uint64_t req_body_bytes;
    uint64_t req_body_mark; /* req_body_bytes when the response clock last ran out: while the
                               upload is unfinished, only its progress restarts that clock */
    bool req_body_started;  /* a body byte went upstream: no retry */
    bool req_done;

    bool resp_started; /* the response head went to the client */
    bool resp_done;
    int status;
    bool upgrade_asked; /* the request asked to switch protocols */
    bool tunnel;        /* switched: raw bytes both ways until a side closes */

    /* Long-lived work, for drain_after. */
    struct exchange *w_next, *w_prev; /* every exchange of the worker */
    bool forced;                      /* routed by a force header or cookie */

    /* Waiting for a connection of q_pool (queue.c), or NULL. */
    struct pool *q_pool;
    struct exchange *q_next, *q_prev;
    struct event *q_timer; /* queue.timeout; kept with the exchange for its next wait */

    /* Answered by the proxy for an app in maintenance: no cluster, no upstream; ends when
     * the codec first calls exchange_body_ready (after the request head is consumed). */
    bool maint;
    /* Held by an exclusive switch (hold.c). */
    bool held;
    struct exchange *hold_next, *hold_prev;
    uint64_t hold_since_ms; /* monotonic */
    /* For the latency histograms and byte counters (traffic_slot). */
    uint64_t start_us;   /* monotonic, when the head was routed */
    uint64_t head_us;    /* when the response head went to the client, or 0 */
    uint64_t resp_bytes; /* response body bytes handed to the client */
    /* For the access log (access.c). */
    struct access_req acc;
    enum sy_pick_rule rule;
    const char *generated;     /* why switchyard answers itself (fail), or NULL */
    uint64_t connect_start_us; /* a new upstream connection was asked for, or 0 */
    uint64_t connect_us;       /* ...and took this long to connect (0: not measured) */
    bool up_new;               /* the upstream connection was opened for this exchange */
    bool up_used;              /* the exchange had an upstream connection or stream */
};

struct upstream {
    struct sy_worker *w;
    struct pool *pool;
    bool tls;
    struct sy_sock *sock;
    struct exchange *ex; /* the exchange it carries (its ups is h1_client.c's), or NULL */
    bool connected;
    bool reused;
    bool read_paused;
    bool one_client; /* opened with a PROXY header (clusters.NAME.proxy_protocol): never idle */
    struct upstream *next; /* in the pool's idle list */
};

/* libevent writes at most 16 KiB per call by default: a 16 KiB answer and its head took two
 * writev calls and two loop turns. The socket buffer is the real bound. */
#define MAX_SINGLE_WRITE (256 * 1024)

/* Builds a message head in a stack buffer and hands it to an evbuffer in large pieces: a printf
 * per field was the largest cost of rewriting a head. */
struct head_writer {
    struct evbuffer *out;
    size_t len;
    bool failed; /* an evbuffer_add failed: what `out` holds is not the whole head */
    char buf[4096];
};

static inline void hw_init(struct head_writer *hw, struct evbuffer *out)
{
    hw->out = out;
    hw->len = 0;
    hw->failed = false;
}

static inline void hw_flush(struct head_writer *hw)
{
    if (hw->len && evbuffer_add(hw->out, hw->buf, hw->len) != 0)
        hw->failed = true;
    hw->len = 0;
}

static inline void hw_add(struct head_writer *hw, const char *p, size_t n)
{
    if (n == 0)
        return; /* an empty slice may have no bytes behind it at all */
    if (hw->len + n > sizeof(hw->buf)) {
        hw_flush(hw);
        if (n > sizeof(hw->buf)) {
            if (evbuffer_add(hw->out, p, n) != 0)
                hw->failed = true;
            return;
        }
    }
    memcpy(hw->buf + hw->len, p, n);
    hw->len += n;
}

static inline void hw_str(struct head_writer *hw, const char *s)
{
    hw_add(hw, s, strlen(s));
}

static inline void hw_slice(struct head_writer *hw, struct sy_slice s)
{
    hw_add(hw, s.p, s.len);
}

static inline void hw_field(struct head_writer *hw, struct sy_slice name, struct sy_slice value)
{
    hw_slice(hw, name);
    hw_add(hw, ": ", 2);
    hw_slice(hw, value);
    hw_add(hw, "\r\n", 2);
}

static inline void hw_uint(struct head_writer *hw, uint64_t v, unsigned base)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = digits[v % base];
        v /= base;
    } while (v);
    hw_add(hw, tmp + i, sizeof(tmp) - i);
}

/* worker.c */
const struct sy_config *worker_config(const struct sy_worker *w);
/* 64 random bits (not for secrets: a sticky key only needs to spread users evenly; seeded
 * from the kernel per worker). */
uint64_t worker_random(struct sy_worker *w);
void worker_conn_add(struct sy_worker *w, struct conn *c);
void worker_conn_remove(struct sy_worker *w, struct conn *c);
/* Counts an answer of our own with `status` on `slot` (NULL: before routing). */
void worker_count_own(struct sy_worker *w, struct traffic_slot *slot, int status);
/* The parse scratch array, grown to the current max_headers. */
struct sy_header *worker_scratch(struct sy_worker *w);
static inline struct timeval ms_tv(unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* A client connection's first read into an empty input: a request head fits, and an idle
 * connection does not leave a 32 KiB chain's pages behind in the heap (an HTTP/2 client
 * connection costs 15.3 KiB idle this way, 17.6 with 32 KiB). A read that fills it reads on
 * at once. */
#define CLIENT_FIRST_READ (2048 - 128)

/* Fills the parts of `c` every codec shares (address, printable peer, tls) and links it into
 * the worker (which gives it its id). */
void worker_conn_init(struct sy_worker *w, struct conn *c, const struct sockaddr *sa, int salen,
                      bool tls);

/* h1_server.c: takes over `sk`. */
void h1_accept(struct sy_worker *w, struct sy_sock *sk, const struct sockaddr *sa, int salen,
               bool tls);

/* upstream.c: the host part of an endpoint's "host:port" or "[v6]:port", in place (for SNI,
 * verification and Host). */
struct sy_slice upstream_endpoint_host(const char *address);

/* h2_server.c: takes over `sk`, whose input may already hold the client preface. */
void h2_accept(struct sy_worker *w, struct sy_sock *sk, const struct sockaddr *sa, int salen,
               bool tls);

/* tls.c */
/* A client context for a cluster: TLS 1.2 and 1.3, verification as `t` says (on by default),
 * ALPN h2 or http/1.1. NULL with a reason in *why. */
SSL_CTX *tls_client_ctx_new(const struct sy_cluster_tls *t, bool h2, const char **why);
/* A server context for one listener: TLS 1.2 and 1.3, ALPN h2 then http/1.1. NULL with a
 * reason in *why (static storage, one per thread) when the certificate or key is unusable. */
SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, const char **why);
/* The control thread's store of TLS contexts, kept across publications while their files'
 * contents do not change (control thread only). A publication asks between begin and end;
 * end drops what it did not ask for. The getters return a new reference, or NULL with *why
 * (logged by the caller). */
struct tls_store;
struct tls_store *tls_store_new(void);
void tls_store_free(struct tls_store *st);
void tls_store_begin(struct tls_store *st);
void tls_store_end(struct tls_store *st);
SSL_CTX *tls_store_server(struct tls_store *st, const char *cert, const char *key,
                          const char **why);
SSL_CTX *tls_store_client(struct tls_store *st, const struct sy_cluster_tls *t, bool h2,
                          const char **why);
/* Runs the handshake on `fd`, then hands the connection to h2_accept or h1_accept by ALPN. */
void tls_accept(struct sy_worker *w, SSL_CTX *ctx, int fd, const struct sockaddr *sa, int salen);

/* access.c: the access log's lines. */
/* The request head was seen (first thing in exchange_start): the time and protocol, and the
 * head for an answer of our own before there is an exchange. */
void access_begin(struct downstream *d, const struct req_head *req);
/* The exchange for that head exists: it keeps (or makes) the request id, and with the log on
 * copies what the line needs. */
void access_exchange_begin(struct exchange *ex, const struct req_head *req);
/* The exchange ends (exchange_free): its line, sampled unless switchyard answered itself. */
void access_log_exchange(struct exchange *ex);
/* A codec's answer of its own (`status`); `h2`: the HTTP/2 codec. Adds the line unless the
 * exchange wrote it; resets the record for the next request. */
void access_log_own(struct downstream *d, int status, bool h2);

/* exchange.c: called by the codecs and upstream.c */
void exchange_start(struct downstream *d, const struct req_head *req);
void exchange_body_ready(struct exchange *ex);     /* request body bytes arrived */
void exchange_client_drained(struct exchange *ex); /* queued() fell to half the budget */
void exchange_downstream_gone(struct exchange *ex);
/* queue.c: the exchange's turn came (a connection of its pool is free, or may be opened):
 * start its upstream side now. */
void exchange_dequeued(struct exchange *ex);
/* queue.c: the exchange waited queue.timeout: answer 503 with `why`. */
void exchange_queue_expired(struct exchange *ex, const char *why);

/* upstream.c */
/* The pool for `ep` spoken to as cluster `cl` says. */
struct pool *upstream_pool(struct sy_worker *w, const struct sy_endpoint_spec *ep,
                           const struct sy_cluster_spec *cl);
/* A new connection to the pool's endpoint, connecting (and, with TLS, shaking hands: the
 * event callback sees SY_SOCK_CONNECTED once both are done). NULL with a reason in *why. */
struct sy_sock *upstream_connect(struct sy_worker *w, struct pool *p,
                                 const struct sy_cluster_spec *cl, const char **why);
/* The reason upstream_connect gives when the worker holds limits.max_upstream_connections
 * already (no idle one could give way): compared by address, answered 503. */
extern const char upstream_limit_reason[];
/* What kept a connection to the pool's endpoint from being made, from its socket error. */
enum sy_connect_error upstream_connect_error_of(const struct pool *p, int err);
/* Counts a connect error against the pool's endpoint (its /metrics counters). */
void upstream_count_connect_error(struct pool *p, enum sy_connect_error reason);
/* Why a connection to a cluster failed, with the TLS detail when there is one. */
const char *upstream_error(struct sy_sock *sk, int err);
/* With TLS: whether ALPN chose `proto` (e.g. "h2"). Cleartext: true. */
bool upstream_alpn_is(struct sy_sock *sk, const char *proto);
/* A pooled HTTP/1.1 connection, or a new one (always new when `fresh`); NULL when a socket
 * cannot be made at all (*why says why). */
struct upstream *upstream_get(struct sy_worker *w, const struct sy_endpoint_spec *ep,
                              const struct sy_cluster_spec *cl, struct exchange *ex, bool fresh,
                              const char **why);
void upstream_release(struct upstream *up, bool reusable);
/* After a new snapshot: endpoints no longer in any cluster lose their idle connections, and
 * connections still in use to them close when their exchange ends. */
void upstream_forget_endpoints(struct sy_worker *w);
/* Closes up to n idle keep-alive connections to clusters, the oldest of each pool first, and
 * says how many it closed: a worker short of descriptors gives them to clients. */
size_t upstream_shed_idle(struct sy_worker *w, size_t n);
/* Installs the cluster TLS contexts that go with the new snapshot (takes `v` and its
 * references): a pool whose context changed (a renewed CA bundle or client certificate) takes
 * the new one and forgets its session. */
void upstream_set_tls(struct sy_worker *w, struct tls_client_plan *v, size_t n);
/* Frees a list of TLS client plans and their references. */
void tls_client_plans_free(struct tls_client_plan *v, size_t n);
/* OpenSSL's new-session callback for cluster connections: the pool keeps the session. */
int upstream_new_session_cb(SSL *ssl, SSL_SESSION *sess);
void upstream_free_pools(struct sy_worker *w);

/* h2_client.c: HTTP/2 to the clusters. */
/* GOAWAY to every connection of the pool (worker shutdown and retired endpoints); idle ones
 * close now. */
void h2up_close_pool(struct pool *p, bool now);
/* Whether a stream can start on the pool now without more than `max_conns` connections: a
 * connection has a free stream slot, or fewer than `max_conns` are open. */
bool h2up_has_room(const struct pool *p, size_t max_conns);

/* queue.c: clusters.NAME.max_connections and the wait for a connection, per endpoint (pool)
 * per worker. Requests are served in arrival order. */
enum queue_admit {
    QUEUE_GO = 0, /* take or open a connection now */
    QUEUE_WAITING,
    QUEUE_FULL, /* every connection is busy and queue.max requests wait already: 503 */
};
/* Whether `ex` (routed to cluster `cl`, endpoint pool `p`) may have a connection now; if not,
 * it waits (QUEUE_WAITING) unless the queue is full. Without a cap: QUEUE_GO. */
enum queue_admit queue_admit(struct exchange *ex, struct pool *p, const struct sy_cluster_spec *cl);
/* Puts `ex` first in the pool's queue, whatever queue.max says: a retry that finds no room
 * (it arrived before everything that waits). */
void queue_push_front(struct exchange *ex, struct pool *p);
/* Whether `cl` lets a request of pool `p` have a connection now. */
bool queue_has_room(const struct pool *p, const struct sy_cluster_spec *cl);
/* The exchange leaves the queue (it ends: its client went away, drain_after...). */
void queue_remove(struct exchange *ex);
/* A connection of `p` was released or closed, or a stream slot freed: the queue is served
 * on the next loop turn. */
static inline void queue_kick(struct pool *p)
{
    if (p->q_head)
        event_active(p->q_ev, EV_WRITE, 0);
}
/* Pool teardown: its event. The queue is empty by then. */
void queue_pool_dispose(struct pool *p);

/* hold.c: the exclusive switch's hold, per worker. A request of a held app waits in arrival
 * order, routed but not sent, until a snapshot no longer holds its app (then it goes on to
 * the cluster it was routed to, or to the app's live one after an abort), or until
 * exclusive.hold (503 with Retry-After). */
/* The exchange leaves the hold (it ends: its client went away). */
void hold_remove(struct exchange *ex);
/* A new snapshot is installed: releases the held requests whose app it no longer holds. */
void hold_table_changed(struct sy_worker *w);
/* Worker exit. */
void hold_dispose(struct sy_worker *w);

/* exchange.c: called by the upstream clients (h1_client.c, h2_client.c). Each may end the
 * exchange (then ex->ups was recycled through cancel): the caller touches neither after that
 * unless the return value says the exchange goes on. */
/* Where exchange_rewrite_head writes: HTTP/1.1 text, or HTTP/2 fields (names lower-cased) whose
 * offsets are noted in `o` (the caller frees it) for an nghttp2_nv array. */
struct nv_off {
    size_t name, name_len, value;
    size_t value_len;
};
struct head_sink {
    struct head_writer hw;
    bool h2;
    struct nv_off *o;
    size_t n, cap;
};
/* An empty sink writing to `out`. (Not `= {...}`: that would clear hw.buf, 4 KiB a request.) */
static inline void sink_init(struct head_sink *s, bool h2, struct evbuffer *out)
{
    hw_init(&s->hw, out);
    s->h2 = h2;
    s->o = NULL;
    s->n = s->cap = 0;
}
/* rewrite.c: the request head as the cluster gets it: hop-by-hop fields dropped (and the ones
 * Connection names), X-Forwarded-* and Via added, the framing restated. During prepare only. */
void exchange_rewrite_head(struct exchange *ex, const struct req_head *req, struct head_sink *s,
                           bool tls_up);
/* rewrite.c: drops hop-by-hop fields (and the ones Connection names) from a response head,
 * compacting `h` in place. Returns how many are kept. */
size_t exchange_end_to_end(struct sy_header *h, size_t n);
/* The cluster's name, for messages. */
const char *exchange_cluster_name(const struct exchange *ex);
/* The request is on its way to the cluster (connected, or the stream submitted): the connect
 * time is taken and a client waiting for 100 Continue may send its body. */
void exchange_on_sent(struct exchange *ex);
/* The final response head (1xx other than 101 are the client's to drop). Returns false when the
 * exchange failed instead (an invalid status, a switch nobody asked for). With status 101 the
 * downstream becomes a tunnel. */
bool exchange_on_head(struct exchange *ex, const struct resp_head *h);
/* `n` response body bytes from `src` to the client. Returns whether the client holds less than
 * half of limits.buffer_bytes (an HTTP/2 window may open). */
bool exchange_on_body(struct exchange *ex, struct evbuffer *src, size_t n);
/* How many response bytes the client can take now (limits.buffer_bytes less what it holds). */
size_t exchange_body_room(struct exchange *ex);
/* The response ended; `trailers` ("name: value\r\n" lines, may be NULL). Ends the exchange when
 * the request is through. */
void exchange_on_end(struct exchange *ex, struct evbuffer *trailers);
/* The stream failed (the client left its connection first). `unprocessed`: the cluster did not
 * act on it (refused, above GOAWAY's last stream, never sent, or a pooled HTTP/1.1 connection
 * the server had closed), so it may go once more. Returns true when it went again (start). */
bool exchange_on_error(struct exchange *ex, bool unprocessed, int status, const char *why);
/* Decoded request body into `out` (at most `max` bytes), trailer lines into ex->trailers. Sets
 * *done at its end (ex->req_done). Returns the bytes moved, or -1 when the exchange failed (a
 * malformed body: 400; over limits.max_body_bytes: 413; out of memory: 503). */
ssize_t exchange_pull_body(struct exchange *ex, struct evbuffer *out, size_t max, bool *done);

/* The why of a body or head that could not be buffered for want of memory (exchange.c): the
 * peer did nothing wrong, so it is compared by address and answered 503 rather than 400. */
extern const char exchange_nomem_reason[];

/* h1_body.c: decodes a request or response body framed by `framing` from `in` into `out` (at
 * most `max` bytes, give or take one segment for chunked); see downstream_ops.pull_body. When
 * a buffer could not grow, returns -1 with *why set to exchange_nomem_reason. */
ssize_t h1_decode_body(struct sy_h1_chunked *dec, enum sy_h1_framing framing, uint64_t *remaining,
                       struct evbuffer *in, struct evbuffer *out, size_t max,
                       struct evbuffer *trailers, bool *done, const char **why);
/* h1_body.c: moves `n` bytes from `in` to `out` (by chain where it can). Returns false when a
 * copy could not be allocated: `in` was drained of all `n` bytes all the same, and `out` is
 * short of some of them, so the stream they belong to cannot go on. */
bool h1_move_body(struct evbuffer *in, struct evbuffer *out, size_t n);
/* h1_body.c: `n` bytes of `src` as one chunk (RFC 9112 §7.1: size line, data, CRLF) at the end
 * of `out`. Returns false when a buffer could not grow: `out` then ends in a cut chunk, and
 * the stream must be cut, never ended. */
bool h1_add_chunk(struct evbuffer *out, struct evbuffer *src, size_t n);
/* h1_body.c: the last chunk, `trailers` ("name: value\r\n" lines, moved; may be NULL) and the
 * final CRLF at the end of `out`. Returns false as h1_add_chunk does. */
bool h1_add_last_chunk(struct evbuffer *out, struct evbuffer *trailers);

/* h1_client.c, called by upstream.c for the connection an exchange has. */
void h1up_connected(struct exchange *ex);
void h1up_readable(struct exchange *ex);
void h1up_drained(struct exchange *ex);
void h1up_event(struct exchange *ex, short what);
/* Worker exit: the recycled streams. */
void h1up_cache_free(void);
void h2up_cache_free(void);
/* h2_server.c: the recycled client streams (worker exit). */
void h2_server_cache_free(void);

/* drain.c: drain_after, the end of long-lived exchanges after a cluster's weight drops to 0. */
/* A snapshot replaces `old` (NULL: the first): arms a drain job for every app that gives 0 in
 * `new` to a cluster it gave weight in `old` (when the app has drain_after, or is exclusive). */
void drain_schedule(struct sy_worker *w, const struct sy_route_table *old,
                    const struct sy_route_table *new);
/* Worker exit: the drain jobs not yet run. */
void drain_jobs_free(struct sy_worker *w);

/* exchange.c: frees the exchanges kept for reuse (worker exit). */
void exchange_cache_free(struct sy_worker *w);

#endif
