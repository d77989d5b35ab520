/* SPDX-License-Identifier: MIT */
/* The routing file as data: what the YAML says, checked, before it is compiled into a table.
 * routing/config.c fills it from libyaml; routing/table.c compiles it. */
#ifndef SWITCHYARD_CONFIG_H
#define SWITCHYARD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "switchyard/base.h"
#include "switchyard/proxy_proto.h" /* enum sy_pp_accept only */

struct sy_ep_health;
struct sy_cluster_health;

/** Where a value stood in the file (1-based). */
struct sy_mark {
    int line, col;
};

/** One block of `trusted_proxies`: "10.0.0.0/8", "2001:db8::/32", or one address. */
struct sy_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned bits;
    unsigned char addr[16]; /* network order, the bits past the prefix zero */
};

/** `listen:` entry. */
struct sy_listen_spec {
    char *address; /* as written: "127.0.0.1:8080", "[::1]:8080", ":8080" (all v4+v6) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *tls_cert; /* `tls: {cert, key}`: PEM files (relative to the config file's directory);
                       NULL for a cleartext listener */
    char *tls_key;
    struct sy_mark mark;
    struct sy_mark tls_mark;
    enum sy_pp_accept proxy_protocol; /* `proxy_protocol: v1 | v2 | any`, default off */
    bool has_trusted;        /* `trusted_proxies` given here: it replaces the top-level list */
    struct sy_cidr *trusted; /* `trusted_proxies` of this listener */
    size_t n_trusted;
};

/** One `host:port` of a cluster, resolved at load time. */
struct sy_endpoint_spec {
    char *address; /* as written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct sy_mark mark;
    struct sy_ep_health *hs; /* its health (shared by every config that has this cluster name
                                and address; switchyard/health.h), attached by the state
                                before the config is compiled; NULL: always up */
};

/** How a cluster is spoken to (`protocol:`). */
enum sy_upstream_proto {
    SY_PROTO_HTTP1 = 0, /* `http1` (default): HTTP/1.1, cleartext or over TLS with `tls:` */
    SY_PROTO_H2C,       /* `h2c`: HTTP/2 by prior knowledge, cleartext */
    SY_PROTO_H2,        /* `h2`: HTTP/2 over TLS, ALPN h2 (TLS even without a `tls:` block) */
};

/** `tls:` of a cluster. Paths are resolved against the config file's directory. */
struct sy_cluster_tls {
    bool on;     /* a `tls:` block, or protocol h2 */
    char *ca;    /* `ca`: CA bundle (PEM); NULL: the system trust store */
    char *sni;   /* `sni`: server name sent and verified; NULL: the endpoint's host if a name */
    bool verify; /* `verify`, default true */
    char *cert;  /* `cert` and `key`: a client certificate (mutual TLS), or both NULL */
    char *key;
    struct sy_mark mark; /* the `tls:` value (or `protocol:` when implied) */
};

/** An `expect:` range of a health check: statuses lo..hi inclusive. */
struct sy_status_range {
    unsigned lo, hi;
};

#define SY_HEALTH_EXPECT_MAX        8
#define SY_HEALTH_INTERVAL_DEFAULT  2000
#define SY_HEALTH_INTERVAL_MIN_MS   100
#define SY_HEALTH_TIMEOUT_DEFAULT   1000
#define SY_HEALTH_RISE_DEFAULT      2
#define SY_HEALTH_FALL_DEFAULT      3
#define SY_HEALTH_RUN_MAX           100
#define SY_HEALTH_PATH_DEFAULT      "/healthz"
#define SY_OUTLIER_FAILURES_DEFAULT 5
#define SY_OUTLIER_BASE_DEFAULT     30000
#define SY_OUTLIER_MAX_DEFAULT      300000
#define SY_RETRY_BUDGET_PCT_DEFAULT 20
#define SY_RETRY_BUDGET_WIN_DEFAULT 10000
#define SY_RETRY_BUDGET_MIN_DEFAULT 3

/** A cluster's active health check (`health:`); `on` false: no probes, endpoints stay up. */
struct sy_health_spec {
    bool on;
    char *path;           /* `path`, default "/healthz" (origin-form, begins with '/') */
    char *host;           /* `host`: the Host / :authority sent; NULL: the endpoint's address */
    unsigned interval_ms; /* `interval`, default 2 s; each probe is jittered by up to 10% */
    unsigned timeout_ms;  /* `timeout`, default 1 s: connect, TLS and the status line */
    unsigned rise, fall;  /* `rise` (2) passes bring a down endpoint up, `fall` (3) failures
                             take an up one down */
    struct sy_status_range expect[SY_HEALTH_EXPECT_MAX]; /* `expect`, default 200-399 */
    size_t n_expect;
    struct sy_mark mark;
};

/** A cluster's passive outlier ejection (`outlier:`); `on` false: nothing is ejected. */
struct sy_outlier_spec {
    bool on;
    unsigned consecutive_failures; /* connect failures or 5xx in a row that eject (5) */
    unsigned base_ms;              /* `base_ejection` (30 s): the first ejection's length,
                                      doubled for each ejection in a row */
    unsigned max_ms;               /* `max_ejection` (300 s): the longest ejection */
};

/** A cluster's retry budget (`retry_budget:`): retries of failed connects to another endpoint
 * within `window_ms` may be `percent` of the requests begun in it, or `min`, whichever is
 * more. */
struct sy_retry_budget_spec {
    unsigned percent;   /* `percent` 0..100, default 20 */
    unsigned window_ms; /* `window`, default 10 s */
    unsigned min;       /* `min`, default 3 */
};

/** `queue.max` default: requests that may wait per endpoint per worker. */
#define SY_QUEUE_MAX_DEFAULT 1000
/** `queue.timeout` default, in milliseconds. */
#define SY_QUEUE_TIMEOUT_DEFAULT_MS 5000
/** Largest `max_connections` and `queue.max` accepted. */
#define SY_CLUSTER_CAP_MAX 1000000

/** `clusters: NAME: {endpoints: [...], protocol, tls, max_connections, queue}`. Order is the
 * file's order. */
struct sy_cluster_spec {
    char *name;
    struct sy_endpoint_spec *endpoints;
    size_t n_endpoints;
    enum sy_upstream_proto protocol;
    struct sy_cluster_tls tls;
    size_t max_connections;    /* `max_connections`: connections to each endpoint per worker
                                  (HTTP/1.1: one per request in flight; HTTP/2: each carries
                                  up to the server's stream limit); 0 (default) = no cap */
    size_t queue_max;          /* `queue.max`: with a cap, requests that may wait for a
                                  connection per endpoint per worker (0: none wait, 503 at once);
                                  default SY_QUEUE_MAX_DEFAULT */
    unsigned queue_timeout_ms; /* `queue.timeout`: the longest a request waits (then 503);
                                  default SY_QUEUE_TIMEOUT_DEFAULT_MS */
    bool send_proxy_v2;        /* `proxy_protocol: v2`: each connection opens with a PROXY v2
                                  header naming the client, and carries that client only (never
                                  kept idle for another); http1 without tls only */
    struct sy_health_spec health;
    struct sy_outlier_spec outlier;
    struct sy_retry_budget_spec retry_budget;
    struct sy_cluster_health *hs; /* shared runtime state by cluster name (the retry budget,
                                     failover counts), attached like the endpoints'; or NULL */
    struct sy_mark mark;
};

/** The `protocol:` spelling of `p`. */
const char *sy_upstream_proto_name(enum sy_upstream_proto p);

/** `weights: {CLUSTER: N}` entry; `cluster` indexes sy_config.clusters. */
struct sy_weight_spec {
    size_t cluster;
    unsigned weight; /* 0..100 */
    struct sy_mark mark;
};

/** How an app's sticky key is found (`sticky:`). */
enum sy_sticky_by {
    SY_STICKY_NONE = 0,  /* no `sticky:`: every request is weighted round-robin */
    SY_STICKY_COOKIE,    /* `sticky: {cookie: NAME, max_age: DURATION}` */
    SY_STICKY_HEADER,    /* `sticky: {header: NAME}` */
    SY_STICKY_SOURCE_IP, /* `sticky: {source_ip: true}` */
};

/** Longest cookie name accepted (sticky and force), so that a Set-Cookie value has a bound. */
#define SY_COOKIE_NAME_MAX 64
/** Longest header name accepted in `sticky:` and `force:`. */
#define SY_HEADER_NAME_MAX 64
/** `sticky.max_age` default: 30 days, in seconds. */
#define SY_STICKY_MAX_AGE_DEFAULT (30u * 24 * 60 * 60)
/** `sticky.max_age` ceiling: 400 days, the most browsers honour (RFC 6265bis). */
#define SY_STICKY_MAX_AGE_MAX (400u * 24 * 60 * 60)
/** Shortest `force.secret` accepted, in bytes. */
#define SY_FORCE_SECRET_MIN 16

/** `sticky:` of an app. */
struct sy_sticky_spec {
    enum sy_sticky_by by;
    char *name;          /* cookie name as written (an RFC 6265 token, compared exactly) or header
                            name in lower case; NULL for SY_STICKY_NONE and SY_STICKY_SOURCE_IP */
    unsigned max_age_s;  /* SY_STICKY_COOKIE only: Max-Age of the cookie the proxy sets */
    struct sy_mark mark; /* the `sticky:` value */
};

/** `force:` of an app. With neither header nor cookie the app has no force. */
struct sy_force_spec {
    char *header;        /* lower case; NULL when absent */
    char *cookie;        /* as written; NULL when absent */
    char *secret;        /* NULL: a bare cluster name forces; otherwise only a value signed with it
                            (CLUSTER.EXPIRY.HMAC) does. Never printed. */
    size_t secret_len;   /* >= SY_FORCE_SECRET_MIN when secret is set */
    struct sy_mark mark; /* the `force:` value */
};

/** `apps[].mode`. An exclusive app runs on one cluster at a time: its weights are 100 and 0,
 * and a move goes through the exclusive switch (hold, drain, ready, release). */
enum sy_app_mode {
    SY_APP_WEIGHTED = 0,
    SY_APP_EXCLUSIVE,
};

/** `exclusive:` defaults. */
#define SY_EXCLUSIVE_HOLD_DEFAULT_MS  10000u
#define SY_EXCLUSIVE_DRAIN_DEFAULT_MS 30000u
#define SY_EXCLUSIVE_MAX_HELD_DEFAULT 1000u
#define SY_EXCLUSIVE_READY_TIMEOUT_MS 60000u
#define SY_EXCLUSIVE_READY_EXPECT     200
#define SY_EXCLUSIVE_READY_URL_MAX    512

/** `exclusive:`: how the exclusive switch of every exclusive app runs. */
struct sy_exclusive_spec {
    unsigned hold_ms;  /* exclusive.hold, default 10s: the longest a request is held */
    unsigned drain_ms; /* exclusive.drain, default 30s: what still runs on the old cluster is
                          cut this long after the hold began */
    size_t max_held;   /* exclusive.max_held, default 1000: held requests per worker; beyond
                          it 503 with Retry-After */
    char *ready_url;   /* exclusive.ready.url: http://HOST:PORT/PATH polled before release, or
                          NULL (no ready check) */
    char *ready_host;  /* parsed from ready_url: numeric address and port, and the path */
    unsigned ready_port;
    char *ready_path;
    int ready_expect;          /* exclusive.ready.expect, default 200 */
    unsigned ready_timeout_ms; /* exclusive.ready.timeout, default 60s: then the switch goes on */
    struct sy_mark mark;
};

/** `apps[].guard` defaults and bounds. */
#define SY_GUARD_MAX_5XX_DEFAULT      0.05
#define SY_GUARD_WINDOW_DEFAULT_MS    30000u
#define SY_GUARD_WINDOW_MAX_MS        600000u
#define SY_GUARD_MIN_REQUESTS_DEFAULT 50u
#define SY_GUARD_MIN_REQUESTS_MAX     100000000u
#define SY_GUARD_RELATIVE_MAX         1000.0

/** `apps[].guard`: when the app's non-stable clusters break these over the window, the guard
 * reverts the app (admin/guard.c, docs/guard.md). Absent or `off`: no guard. */
struct sy_guard_spec {
    bool on;
    bool set;                  /* `guard:` is written (off included): a ramp of an app
                                  without one runs under the default guard */
    double max_5xx_ratio;      /* max_5xx_ratio, 0..1, default 0.05; 1 never breaks */
    unsigned max_p99_ms;       /* max_p99: a duration; 0 (default) = no absolute latency limit */
    double relative_to_stable; /* relative_to_stable: > 1, or 0 (default) = no relative limit */
    unsigned window_ms;        /* window: whole seconds 1s..10m, default 30s */
    unsigned min_requests;     /* min_requests: no verdict below it, default 50 (at least 1) */
    struct sy_mark mark;       /* the `guard:` value */
};

struct sy_app_spec {
    char *name;
    char **hosts; /* "chat.example.com", "*.example.com", or "*" */
    size_t n_hosts;
    struct sy_mark *host_marks;
    char **paths; /* each begins with '/'; default ["/"] when the key is absent */
    size_t n_paths;
    struct sy_mark *path_marks;
    size_t stable;                  /* cluster index; default: the first cluster in `weights` */
    struct sy_weight_spec *weights; /* in the order of sy_config.clusters, one per named cluster */
    size_t n_weights;
    struct sy_sticky_spec sticky;
    struct sy_force_spec force;
    unsigned drain_after_ms; /* `drain_after`: after a cluster's weight for this app drops to 0,
                                what still runs on it is closed this much later; 0 = never */
    struct sy_mark mark;
    /* Maintenance mode (`switchyardctl maintenance APP on`). */
    char *maintenance_page; /* apps[].maintenance_page: the HTML file's bytes, read at
                               load (at most limits.maintenance_page_bytes); NULL: none */
    size_t maintenance_page_len;
    unsigned maintenance_retry_after; /* apps[].maintenance_retry_after in seconds, default
                                         SY_MAINT_RETRY_AFTER_DEFAULT */
    enum sy_app_mode mode;            /* `mode`: weighted (default) or exclusive */
    bool force_while_exclusive;       /* `force_while_exclusive`: an exclusive app lets force reach
                                         the cluster that is not live; default false (503) */
    struct sy_mark weights_mark;      /* the `weights:` value */
    struct sy_guard_spec guard;       /* `guard:` */
    bool failover;                    /* `failover` (default true): when every endpoint of the
                                         picked cluster is down, the app's other clusters take its
                                         share by their weights; false: 503 */
    const char *source;               /* the apps_dir file the app is written in (one of
                                         sy_config.apps_dir_files), or NULL: the routing file itself;
                                         see sy_config_app_file() */
};

/** apps[].maintenance_retry_after when absent (seconds). */
#define SY_MAINT_RETRY_AFTER_DEFAULT 120
/** limits.maintenance_page_bytes when absent. */
#define SY_MAINT_PAGE_BYTES_DEFAULT 65536

/* limits.upstream_keepalive: `auto` keeps idle as many HTTP/1.1 connections to an endpoint
 * as were in use at once in the last 10 to 20 s (each still closed after
 * timeouts.upstream_idle), and never fewer than SY_KEEPALIVE_FLOOR: a burst wider than a fixed
 * cap would otherwise close its connections as it ends and open them again for the next. */
#define SY_KEEPALIVE_AUTO  SIZE_MAX
#define SY_KEEPALIVE_FLOOR 32

/** `limits:`. Sizes in bytes; 0 for max_body_bytes means no limit. */
struct sy_limits {
    size_t max_request_line; /* limits.max_request_line, default 8192 -> 414 */
    size_t max_header_bytes; /* limits.max_header_bytes, default 32768 (whole head) -> 431 */
    size_t max_headers;      /* limits.max_headers, default 100 -> 431 */
    uint64_t max_body_bytes; /* limits.max_body_bytes, default 0 (unlimited) -> 413 */
    size_t max_connections;  /* limits.max_connections: client connections per worker,
                                default 10000 */
    size_t max_upstream_connections; /* limits.max_upstream_connections: connections to the
                                        clusters per worker, all endpoints together (idle ones
                                        included), default 10000 -> 503 */
    size_t buffer_bytes; /* limits.buffer_bytes: per-direction high-water mark, default 65536 */
    size_t upstream_keepalive;   /* limits.upstream_keepalive: idle connections kept per endpoint
                                    per worker: a number, or SY_KEEPALIVE_AUTO (`auto`, the
                                    default): as many as were in use at once lately, at least
                                    SY_KEEPALIVE_FLOOR */
    size_t h2_max_streams;       /* limits.h2_max_streams: concurrent streams per HTTP/2
                                    connection (SETTINGS_MAX_CONCURRENT_STREAMS), default 100 */
    size_t h2_reset_rate;        /* limits.h2_reset_rate: RST_STREAMs a client may cause per
                                    second before GOAWAY (rapid reset), default 50; burst 2x */
    size_t h2_max_continuations; /* limits.h2_max_continuations per header block, default 8 */
    size_t reserved_fds;     /* limits.reserved_fds: descriptors a worker leaves free for the admin
                                socket, reloads and upstream connections (a client connection that
                                would take one is closed), default 32; at most a quarter of
                                RLIMIT_NOFILE is kept */
    size_t log_client_lines; /* limits.log_client_lines: lines a client can cause (its bad
                                requests, 404s, timeouts) logged per second per worker,
                                default SY_LOG_CLIENT_RATE_DEFAULT; 0 = no limit */
    size_t h2_early_resets;  /* limits.h2_early_resets: requests an HTTP/2 client may reset
                                after they went to a cluster and before their answer began,
                                per connection, default 100; past it, and when they are more
                                than half its requests, GOAWAY(ENHANCE_YOUR_CALM) */
    size_t maintenance_page_bytes; /* limits.maintenance_page_bytes: the largest
                                      apps[].maintenance_page, default 65536 */
    size_t apps_dir_files; /* limits.apps_dir_files: the most *.yaml files apps_dir may hold,
                              default SY_APPS_DIR_FILES_DEFAULT */
};

/** limits.apps_dir_files when absent. */
#define SY_APPS_DIR_FILES_DEFAULT 10000

/** `timeouts:`. All in milliseconds; written as "10s", "500ms", "2m" or a plain number of seconds.
 */
struct sy_timeouts {
    unsigned client_header_ms;    /* default 10000: whole request head must arrive */
    unsigned client_idle_ms;      /* default 60000: keep-alive idle between requests */
    unsigned client_body_ms;      /* default 60000: no request body byte from the client for this
                                     long (HTTP/1.1 and each HTTP/2 stream) */
    unsigned client_send_ms;      /* default 60000: response bytes wait and the client takes
                                     none for this long (its socket or its HTTP/2 window) */
    unsigned upstream_connect_ms; /* default 5000 -> 502 */
    unsigned
        upstream_response_ms;  /* default 60000: first response byte, and between reads -> 504 */
    unsigned upstream_idle_ms; /* default 30000: pooled keep-alive connection */
    unsigned drain_ms;         /* timeouts.drain, default 10000: SIGTERM waits this long for
                                  requests in flight */
    unsigned tunnel_idle_ms;   /* timeouts.tunnel_idle, default 3600000: an upgraded
                                  connection (WebSocket) with no byte either way closes */
    unsigned linger_ms;        /* timeouts.linger, default 2000: after an error answer the
                                  connection reads and drops what the client still sends for
                                  at most this long (a deadline from the answer) */
    unsigned tls_ticket_rotate_ms; /* timeouts.tls_ticket_rotate, default 43200000 (12h), at
                                      least 1s: a new session ticket key this often; the two
                                      previous ones still open tickets */
    unsigned worker_stale_ms;      /* timeouts.worker_stale, default 5000: a worker whose loop has
                                      not turned for this long makes /healthz answer 503 */
};

/** `shutdown:` defaults. */
#define SY_SHUTDOWN_DELAY_DEFAULT_MS 5000u
#define SY_SHUTDOWN_GRACE_DEFAULT_MS 30000u

/** `shutdown:`: how SIGTERM stops the daemon (proxy/main.c). */
struct sy_shutdown_spec {
    unsigned delay_ms; /* shutdown.delay, default 5s (0 allowed): after SIGTERM /readyz says 503
                          and the listeners keep accepting this long, so that load balancers
                          and Kubernetes endpoints stop sending first */
    unsigned grace_ms; /* shutdown.grace, default 30s: then requests in flight and tunnels have
                          this long before what is left is cut; without `shutdown.grace`, a
                          `timeouts.drain` written in the file gives it (its older name) */
};

/** Longest admin socket path (struct sockaddr_un.sun_path holds 108 bytes with the NUL). */
#define SY_ADMIN_SOCKET_MAX 107

/** `admin:`. Every path is resolved against the config file's directory. */
struct sy_admin_spec {
    char *socket;      /* `admin.socket`: the UNIX socket of the admin commands; NULL = none */
    uid_t *allow_uids; /* `admin.allow_uids`: peers allowed besides our own uid and root */
    size_t n_allow_uids;
    gid_t *allow_gids; /* `admin.allow_gids`: peers whose group (primary or supplementary) is
                          one of these are allowed too */
    size_t n_allow_gids;
    uid_t *allow_read_uids; /* `admin.allow_read_uids`: peers that may run the commands that
                               only read (status, explain, history, ident, help) */
    size_t n_allow_read_uids;
    gid_t *allow_read_gids; /* `admin.allow_read_gids`: the same, by group */
    size_t n_allow_read_gids;
    struct sy_mark mark; /* the `admin:` value */
    /* `admin.http`: "127.0.0.1:9901", the read-only HTTP listener (/metrics, /status,
     * /healthz, /readyz, the status page); NULL = none. Restart only. */
    char *http;
    struct sockaddr_storage http_addr;
    socklen_t http_addrlen;
    struct sy_cidr *http_allow; /* `admin.http_allow`: peers that may use it; required when
                                   admin.http is not a loopback address */
    size_t n_http_allow;
    bool has_http_allow;
};

/** access_log.buffer_bytes: default and bounds. */
#define SY_ACCESS_LOG_BUFFER_DEFAULT (1u << 20)
#define SY_ACCESS_LOG_BUFFER_MIN     4096u
#define SY_ACCESS_LOG_BUFFER_MAX     (1u << 30)

/** `access_log:` (off when absent). The path and the buffer are read at start only. */
struct sy_access_log_spec {
    char *path;          /* `access_log.path`: "stdout" or a file (resolved against the
                            config's directory); NULL = no access log */
    double sample;       /* `access_log.sample`: the share of requests logged, 0..1 (1.0);
                            answers of switchyard's own are always logged */
    size_t buffer_bytes; /* `access_log.buffer_bytes`: each worker's ring (1 MiB) */
};

/** `fleet.etcd.endpoints`: most entries. */
#define SY_FLEET_MAX_ENDPOINTS 16
/** `fleet.etcd.prefix`: longest (bytes, with its final '/'). */
#define SY_FLEET_PREFIX_MAX 200
/** `fleet.instance`: longest name. */
#define SY_FLEET_INSTANCE_MAX 63
/** `fleet.etcd.prefix` when absent. */
#define SY_FLEET_PREFIX_DEFAULT "/switchyard/"
/** `fleet.etcd.timeout`: default and bounds, in milliseconds. */
#define SY_FLEET_TIMEOUT_DEFAULT_MS 2000u
#define SY_FLEET_TIMEOUT_MIN_MS     100u
#define SY_FLEET_TIMEOUT_MAX_MS     60000u
/** `fleet.lease_ttl`: default and bounds, in milliseconds (whole seconds: etcd's lease TTL). */
#define SY_FLEET_LEASE_DEFAULT_MS 10000u
#define SY_FLEET_LEASE_MIN_MS     2000u
#define SY_FLEET_LEASE_MAX_MS     300000u
/** `fleet.wait`: default and bounds, in milliseconds. */
#define SY_FLEET_WAIT_DEFAULT_MS 5000u
#define SY_FLEET_WAIT_MIN_MS     100u
#define SY_FLEET_WAIT_MAX_MS     600000u

/** One etcd member's client URL (`http://host:port`, `https://host:port` or `host:port`). */
struct sy_fleet_endpoint {
    char *address; /* as written */
    char *host;    /* the host part (the TLS server name when it is a name) */
    bool tls;      /* https://, or any endpoint while `fleet.etcd.tls` is written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct sy_mark mark;
};

/**
 * `fleet:` (off when absent): the overrides, ramps and membership kept in etcd, reached
 * through its v3 JSON gateway (admin/fleet.c). Read at start only: a reload that changes it
 * is published with a warning that it takes a restart.
 */
struct sy_fleet_spec {
    bool on;
    struct sy_fleet_endpoint *endpoints; /* `fleet.etcd.endpoints`, 1..SY_FLEET_MAX_ENDPOINTS */
    size_t n_endpoints;
    char *prefix;              /* `fleet.etcd.prefix`, always ending in '/' ("/switchyard/") */
    struct sy_cluster_tls tls; /* `fleet.etcd.tls`: {ca, cert, key, sni, verify}; on: https */
    uint64_t timeout_ms;       /* `fleet.etcd.timeout`: one request to etcd (2 s) */
    char *instance;            /* `fleet.instance`: NULL: the host name */
    uint64_t lease_ttl_ms;     /* `fleet.lease_ttl`: membership and leadership lease (10 s) */
    uint64_t wait_ms;          /* `fleet.wait`: how long a change waits for every member (5 s) */
    struct sy_mark mark;       /* the `fleet:` value */
};

struct sy_config {
    _Atomic unsigned refs; /* shared by the snapshots compiled from it */
    uint64_t content_hash; /* FNV-1a 64 of the file's bytes: tells a real change from a touch */
    char *path;            /* the file it came from (diagnostics point into it) */
    unsigned workers;      /* `workers:`; 0 = one per core */
    struct sy_listen_spec *listens;
    size_t n_listens;
    struct sy_cluster_spec *clusters;
    size_t n_clusters;
    struct sy_app_spec *apps;
    size_t n_apps;
    struct sy_limits limits;
    struct sy_timeouts timeouts;
    struct sy_admin_spec admin;
    struct sy_exclusive_spec exclusive;
    struct sy_access_log_spec access_log;
    struct sy_shutdown_spec shutdown;
    struct sy_fleet_spec fleet;
    char *state; /* `state:`: the overrides journal, resolved against the config's directory;
                    NULL when absent (the daemon then uses the config's path + ".state") */
    struct sy_mark state_mark;
    struct sy_cidr *trusted; /* `trusted_proxies`: peers whose X-Forwarded-For, Forwarded and
                                X-Forwarded-Proto are believed (kept); none by default */
    size_t n_trusted;
    /* Apps by name: open addressing over FNV-1a, each slot app index + 1 (0 = empty),
     * app_slots_mask + 1 slots. Built while parsing; read by sy_config_app_index(). */
    size_t *app_slots;
    size_t app_slots_mask;
    /* `apps_dir: DIR` (resolved against the config's directory), or NULL: every *.yaml file
     * there, in name order, is a list of apps added to `apps:` (routing/apps_dir.c says which
     * names count). content_hash covers their names and bytes too. */
    char *apps_dir;
    struct sy_mark apps_dir_mark;
    char *apps_dir_block;        /* the files' paths, NUL-separated, in name order */
    const char **apps_dir_files; /* n_apps_dir_files pointers into apps_dir_block */
    size_t n_apps_dir_files;
};

/** The file app `app` of `cfg` is written in: its apps_dir file, or the routing file. */
static inline const char *sy_config_app_file(const struct sy_config *cfg,
                                             const struct sy_app_spec *app)
{
    return app->source ? app->source : cfg->path;
}

/** Fills `ex` with the `exclusive:` defaults (no ready check). */
void sy_config_exclusive_defaults(struct sy_exclusive_spec *ex);

/** Fills `f` with the `fleet:` defaults (off, no endpoints, prefix NULL: set when `fleet:` is
 * written). */
void sy_config_fleet_defaults(struct sy_fleet_spec *f);

/** Fills `sd` with the `shutdown:` defaults. */
void sy_config_shutdown_defaults(struct sy_shutdown_spec *sd);

/** Fills `lim` and `to` with the defaults above. */
void sy_config_defaults(struct sy_limits *lim, struct sy_timeouts *to);

/**
 * Loads and checks the routing file at `path`. On success returns 0 and a new config in *out
 * (free with sy_config_free). On failure returns SY_ERR_INVALID (or SY_ERR_SYS when the file
 * cannot be read) with every problem found appended to `diags` (file:line:col, 1-based) and
 * leaves *out untouched. Any thread; blocking (reads the file, may resolve host names).
 * The diagnostics borrow `path` as their file name: keep it alive as long as `diags`.
 */
int sy_config_load(const char *path, struct sy_diags *diags, struct sy_config **out);

/**
 * Whether the file at `path` reads back with content hash `content_hash` (a config's): a
 * reload that would publish nothing new is then told without parsing. False when it cannot
 * be read. Blocking.
 */
bool sy_config_file_is(const char *path, uint64_t content_hash);

/**
 * Whether the routing file at `path` and the apps_dir files it names read back as `cfg` was
 * loaded from (the same names and bytes: its content hash), so that a reload may be skipped
 * without parsing. Without apps_dir, sy_config_file_is(path, cfg->content_hash). False when
 * anything cannot be read. Blocking.
 */
bool sy_config_is_current(const char *path, const struct sy_config *cfg);

/**
 * As sy_config_load, from memory; `name` (may be NULL) is used as the file name in diagnostics,
 * which borrow it, and copied into cfg->path.
 */
int sy_config_parse(const char *name, const char *text, size_t len, struct sy_diags *diags,
                    struct sy_config **out);

/**
 * The index in cfg->apps of the app named `name`, or -1. Constant time (a hash built when the
 * file was parsed), so that finding apps by name stays linear in their number. Any thread.
 */
long sy_config_app_index(const struct sy_config *cfg, const char *name);

/** Returns a new reference to `cfg` (configs are immutable once loaded). Any thread. */
struct sy_config *sy_config_acquire(struct sy_config *cfg);

/** Drops a reference; the last one frees the config. NULL is a no-op. Any thread. */
void sy_config_free(struct sy_config *cfg);

/**
 * Turns host name resolution for cluster endpoints on (the default) or off. When off, an
 * endpoint must be a numeric address and a name is an error; the fuzz target uses this to stay
 * offline. Process-wide: call before any thread loads a config.
 */
void sy_config_set_resolve(bool on);

/**
 * Parses "host:port", "[v6]:port" or ":port" into a socket address; numeric hosts only unless
 * `resolve` is true (then getaddrinfo, first result). Returns 0 or SY_ERR_INVALID with a reason
 * in `why` (static text).
 */
int sy_parse_hostport(const char *s, bool resolve, struct sockaddr_storage *addr,
                      socklen_t *addrlen, const char **why);

/**
 * True when `sa` (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as IPv4) is inside
 * one of the `n` blocks of `v`. Any thread.
 */
bool sy_cidr_match(const struct sy_cidr *v, size_t n, const struct sockaddr *sa);

/**
 * The `listen:` entry bound to `addr`, or NULL. Borrowed from `cfg`. Any thread.
 */
const struct sy_listen_spec *sy_config_listen(const struct sy_config *cfg,
                                              const struct sockaddr_storage *addr,
                                              socklen_t addrlen);

/** The trusted_proxies that apply on listener `l` (its own list, else the top-level one). */
const struct sy_cidr *sy_config_trusted(const struct sy_config *cfg, const struct sy_listen_spec *l,
                                        size_t *n);

#endif
