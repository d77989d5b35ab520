/* SPDX-License-Identifier: MIT */
/* Endpoint health as the data path reads it: per endpoint, what the active checks say (up or
 * down) and until when passive outlier ejection keeps it out; per cluster, the retry budget.
 * The objects are shared by every config that names the same cluster (and address), so a
 * reload keeps the state of the endpoints that stay; workers read them with relaxed atomic
 * loads, and only the control thread creates, finds and frees them. The pure rules (rise and
 * fall, the ejection backoff, the budget) are here too, with time as a parameter. */
#ifndef SWITCHYARD_HEALTH_H
#define SWITCHYARD_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switchyard/config.h"

/** Why an endpoint's state last changed (the low byte of sy_ep_health.reason). */
enum sy_health_reason {
    SY_HR_NONE = 0,      /* never changed: up since it appeared */
    SY_HR_OK,            /* probes passed */
    SY_HR_TIMEOUT,       /* the probe took longer than health.timeout */
    SY_HR_REFUSED,       /* the connect was refused */
    SY_HR_CONNECT,       /* another connect error (unreachable, reset) */
    SY_HR_STATUS,        /* an answer outside `expect` (the status is in bits 8..) */
    SY_HR_TLS,           /* the TLS handshake or verification failed */
    SY_HR_GARBAGE,       /* not an HTTP answer */
    SY_HR_CLOSED,        /* the connection closed before the status */
    SY_HR_EJECT_CONNECT, /* ejected: consecutive connect failures */
    SY_HR_EJECT_5XX,     /* ejected: consecutive 5xx answers */
    SY_HR_EJECT_END,     /* the ejection's time ran out */
};

/** "timeout", "refused", "status", ...: the words of the log, status and /metrics. */
const char *sy_health_reason_name(enum sy_health_reason r);

/** Writes "status 503", "timeout", ... for reason word `word` (as in sy_ep_health.reason). */
void sy_health_reason_text(uint32_t word, char *buf, size_t size);

/** The rise/fall counter of one endpoint's active checks. Starts up. */
struct sy_health_run {
    bool down;
    unsigned passes, failures; /* in a row */
};

/**
 * Counts one probe result: a down endpoint comes up after `rise` passes in a row, an up one goes
 * down after `fall` failures in a row. Returns true when the state changed.
 */
bool sy_health_run_step(struct sy_health_run *r, bool pass, unsigned rise, unsigned fall);

/** The shared state of one endpoint of one cluster. */
struct sy_ep_health {
    atomic_uint refs;
    char *cluster, *address;         /* the key */
    _Atomic uint32_t down;           /* 1: the active checks say down */
    _Atomic uint64_t eject_until_ms; /* sy_now_ms() clock; 0: not ejected */
    _Atomic uint32_t consec_failures;
    _Atomic uint32_t ejections;     /* ejections in a row: the backoff's exponent */
    _Atomic uint64_t last_until_ms; /* the end of the last ejection (kept after it ends) */
    _Atomic uint64_t ejected_total;
    _Atomic uint32_t reason;   /* enum sy_health_reason | status << 8, of the last change */
    _Atomic uint64_t since_ms; /* unix ms of the last change (0: since it appeared) */
    /* Control thread only. */
    struct sy_health_run run;
    uint64_t log_since; /* the flap damper: lines logged in the minute since this (ms) */
    unsigned log_lines, log_dropped;
    bool swept;
};

/** State-change lines logged per endpoint in the minute since the first of them (flap damper). */
#define SY_HEALTH_LOG_LINES_PER_MINUTE 6

/**
 * The flap damper: whether one more state-change line of `h` may be logged at monotonic time
 * `now_ms`. At most SY_HEALTH_LOG_LINES_PER_MINUTE in the minute since the first of them, a
 * minute that starts with a line (not a minute of the clock, which would let a flap across
 * hh:mm:59 -> hh:mm+1:00 log twice the limit within a second). A refused line is counted in
 * h->log_dropped. Control thread.
 */
bool sy_ep_log_take(struct sy_ep_health *h, uint64_t now_ms);

/** The shared state of one cluster. */
struct sy_cluster_health {
    atomic_uint refs;
    char *name;
    /* Retry budget: requests and retries counted in the current and the previous window. */
    _Atomic uint64_t window; /* now_ms / window_ms of `cur` */
    _Atomic uint32_t req_cur, req_prev, retry_cur, retry_prev;
    _Atomic uint64_t retries, retries_denied;
    _Atomic uint64_t failovers; /* requests this cluster could not take, sent elsewhere */
    _Atomic uint64_t down_503;  /* requests answered 503 for it (failover false) */
    bool swept;
};

/** Whether `h` (NULL: no checks) may take traffic at monotonic time `now_ms`. Any thread. */
static inline bool sy_ep_is_up(const struct sy_ep_health *h, uint64_t now_ms)
{
    if (!h)
        return true;
    if (atomic_load_explicit(&h->down, memory_order_relaxed))
        return false;
    uint64_t until = atomic_load_explicit(&h->eject_until_ms, memory_order_relaxed);
    return until == 0 || now_ms >= until;
}

/** Whether some endpoint of `cl` is up. Any thread. */
bool sy_cluster_is_up(const struct sy_cluster_spec *cl, uint64_t now_ms);

/** The length of ejection number `n` (1, 2, ...) in a row: base doubled n-1 times, capped. */
uint64_t sy_outlier_backoff_ms(const struct sy_outlier_spec *o, unsigned n);

/**
 * A worker's report of one answer (`failed` false) or failure (a connect failure, reason
 * SY_HR_EJECT_CONNECT, or a 5xx, SY_HR_EJECT_5XX, with `status`) of endpoint `h` of a cluster
 * with outlier ejection `o`. The failure that completes o->consecutive_failures in a row ejects
 * the endpoint: returns the ejection's length in ms (the caller logs it), else 0. Any thread.
 */
uint64_t sy_ep_note(struct sy_ep_health *h, const struct sy_outlier_spec *o, bool failed,
                    enum sy_health_reason why, int status, uint64_t now_ms);

/** Sets the state's reason word and its time. Any thread. */
void sy_ep_set_reason(struct sy_ep_health *h, enum sy_health_reason why, int status);

/**
 * The retry budget's verdict: whether one more retry fits when `requests` requests and
 * `retries` retries were counted over the window, with `b`'s percent and minimum.
 */
bool sy_retry_budget_fits(const struct sy_retry_budget_spec *b, uint64_t requests,
                          uint64_t retries);

/** Counts a request of cluster `h` at `now_ms`. Any thread. */
void sy_cluster_count_request(struct sy_cluster_health *h, const struct sy_retry_budget_spec *b,
                              uint64_t now_ms);

/**
 * Takes one retry from cluster `h`'s budget at `now_ms`: true (counted) when it fits, false
 * (counted as denied) when not. NULL `h`: always true. Any thread.
 */
bool sy_cluster_take_retry(struct sy_cluster_health *h, const struct sy_retry_budget_spec *b,
                           uint64_t now_ms);

/** A retry taken from `h`'s budget worked: it is given back (the budget bounds the retries
 * that fail, so a cluster with one endpoint down still has every request retried while one
 * that refuses everywhere sees at most the budget). NULL: no-op. Any thread. */
void sy_cluster_retry_worked(struct sy_cluster_health *h);

/**
 * Points every cluster and endpoint of `cfg` at its shared state, found by cluster name and
 * endpoint address, or new (up, no history); frees the states no config holds any more. Control
 * thread only, before the config is compiled or published.
 */
void sy_health_attach(struct sy_config *cfg);

/** `cfg` is now in force: an endpoint of a cluster it no longer checks (`health:` taken off)
 * is marked up again, since nothing would ever bring it back. Not done by sy_health_attach,
 * so that a reload refused after its parse changes nothing. Control thread. */
void sy_health_installed(const struct sy_config *cfg);

/** Drops `cfg`'s references (sy_config_free calls it). Any thread. */
void sy_health_detach(struct sy_config *cfg);

#endif
