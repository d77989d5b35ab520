/* SPDX-License-Identifier: MIT */
/* The read-only HTTP listener of `admin.http` (admin/http.c): /metrics (Prometheus text
 * format 0.0.4, admin/metrics.c), /status (the JSON of `switchyardctl status --json`), the
 * status page at /, /healthz and /readyz. It runs on the control thread's event loop, never
 * on a worker's, and reads the data path's counters through the callbacks below. */
#ifndef SWITCHYARD_ADMIN_HTTP_H
#define SWITCHYARD_ADMIN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/admin.h"
#include "switchyard/config.h"
#include "switchyard/counters.h"
#include "switchyard/guard_engine.h"
#include "switchyard/state.h"

/** Where the HTTP listener reads what it serves. Everything is borrowed for its life. */
struct sy_admin_http_env {
    struct sy_admin *admin; /* runs `status --json` for /status */
    struct sy_state *state;
    sy_admin_traffic_cb traffic; /* NULL: no traffic counters */
    void *traffic_arg;
    /* The workers' heartbeats (sy_workers_health); NULL: none (healthy, ready). */
    size_t (*health)(void *arg, struct sy_worker_health *v, size_t max);
    void *health_arg;
    /* Connect errors by cluster endpoint (sy_workers_connect_errors); NULL: none. */
    void (*connect_errors)(void *arg, sy_endpoint_errors_cb cb, void *cb_arg);
    void *connect_errors_arg;
    /* Connections by listen address (sy_workers_listener_stats); NULL: none. */
    void (*listener_stats)(void *arg, sy_listener_stats_cb cb, void *cb_arg);
    void *listener_stats_arg;
    /* The apps' guards (sy_guard_each); NULL: none. */
    void (*guards)(void *arg, sy_guard_app_cb cb, void *cb_arg);
    void *guards_arg;
    /* The fleet (`fleet:`): /readyz says 503 until it has the fleet state; NULL: none. */
    struct sy_fleet *fleet;
    /* Zero-downtime upgrade: with `has_inherited_fd`, serve `inherited_fd` (a listening
     * socket taken over from the process replaced; taken) instead of binding admin.http. */
    bool has_inherited_fd;
    int inherited_fd;
};

struct sy_admin_http;

/**
 * Binds `cfg->admin.http` and serves it on `base` (the control thread's loop). The head
 * limits and the client_header / client_idle deadlines are `cfg`'s, as on the data path.
 * Returns 0, or a negative sy_err after logging why. Control thread.
 */
int sy_admin_http_listen(struct event_base *base, const struct sy_config *cfg,
                         const struct sy_admin_http_env *env, struct sy_admin_http **out);

/** The listening socket's fd, or -1. For an upgrade to hand it over. */
int sy_admin_http_fd(const struct sy_admin_http *h);

/**
 * Stops accepting and closes our copy of the listening socket (the new process of an
 * upgrade serves it now); connections already open go on. NULL: no-op.
 */
void sy_admin_http_stop_accepting(struct sy_admin_http *h);

/** From now on /readyz answers 503 (the daemon drains or stops). */
void sy_admin_http_set_draining(struct sy_admin_http *h);

/** Closes the listener and every connection. NULL: no-op. */
void sy_admin_http_free(struct sy_admin_http *h);

/* -- the exposition format (admin/metrics.c) ------------------------------------------------ */

/** Prometheus text being written: families, each with its HELP, TYPE and samples. */
struct sy_prom {
    char *p;
    size_t len, cap;
    const char *family; /* the family being written (for the sample names) */
};

void sy_prom_init(struct sy_prom *m);
void sy_prom_dispose(struct sy_prom *m);

/** Starts a family: `# HELP name help` (escaped) and `# TYPE name type`. */
void sy_prom_family(struct sy_prom *m, const char *name, const char *type, const char *help);

/**
 * One sample of the current family: its name plus `suffix` ("" or "_bucket", "_sum",
 * "_count"), the labels (`labels` holds n pairs: name, value; values are escaped), and the
 * value. `le` (may be NULL) is added as a last label.
 */
void sy_prom_sample(struct sy_prom *m, const char *suffix, const char *const *labels, size_t n,
                    const char *le, double value);

/** The same, with an integer value written exactly. */
void sy_prom_sample_u64(struct sy_prom *m, const char *suffix, const char *const *labels, size_t n,
                        const char *le, uint64_t value);

/** Writes every switchyard and process metric. Control thread. */
void sy_admin_metrics(struct sy_prom *m, const struct sy_admin_http_env *env, bool ready);

#endif
