/* SPDX-License-Identifier: MIT */
/* The shared health state of clusters and endpoints (switchyard/health.h): a registry on the
 * control thread keyed by cluster name and endpoint address, so that a reload hands the state
 * of an endpoint that stays to the new config; the rise/fall counter, the ejection backoff and
 * the retry budget, all with time as a parameter. Workers only read the state words and count
 * into them with relaxed atomics: nothing here takes a lock. */
#include "switchyard/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *sy_health_reason_name(enum sy_health_reason r)
{
    switch (r) {
    case SY_HR_NONE:
        return "none";
    case SY_HR_OK:
        return "ok";
    case SY_HR_TIMEOUT:
        return "timeout";
    case SY_HR_REFUSED:
        return "refused";
    case SY_HR_CONNECT:
        return "connect";
    case SY_HR_STATUS:
        return "status";
    case SY_HR_TLS:
        return "tls";
    case SY_HR_GARBAGE:
        return "garbage";
    case SY_HR_CLOSED:
        return "closed";
    case SY_HR_EJECT_CONNECT:
        return "ejected_connect";
    case SY_HR_EJECT_5XX:
        return "ejected_5xx";
    case SY_HR_EJECT_END:
        return "ejection_ended";
    }
    return "unknown";
}

void sy_health_reason_text(uint32_t word, char *buf, size_t size)
{
    enum sy_health_reason r = (enum sy_health_reason)(word & 0xff);
    unsigned status = word >> 8;
    if (r == SY_HR_STATUS || (r == SY_HR_EJECT_5XX && status))
        snprintf(buf, size, "%s %u", sy_health_reason_name(r), status);
    else
        snprintf(buf, size, "%s", sy_health_reason_name(r));
}

bool sy_health_run_step(struct sy_health_run *r, bool pass, unsigned rise, unsigned fall)
{
    if (pass) {
        r->failures = 0;
        if (r->passes < UINT32_MAX)
            r->passes++;
        if (r->down && r->passes >= rise) {
            r->down = false;
            return true;
        }
        return false;
    }
    r->passes = 0;
    if (r->failures < UINT32_MAX)
        r->failures++;
    if (!r->down && r->failures >= fall) {
        r->down = true;
        return true;
    }
    return false;
}

bool sy_cluster_is_up(const struct sy_cluster_spec *cl, uint64_t now_ms)
{
    for (size_t i = 0; i < cl->n_endpoints; i++)
        if (sy_ep_is_up(cl->endpoints[i].hs, now_ms))
            return true;
    return false;
}

uint64_t sy_outlier_backoff_ms(const struct sy_outlier_spec *o, unsigned n)
{
    uint64_t ms = o->base_ms;
    for (unsigned i = 1; i < n && ms < o->max_ms; i++)
        ms *= 2;
    return ms < o->max_ms ? ms : o->max_ms;
}

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sy_ep_set_reason(struct sy_ep_health *h, enum sy_health_reason why, int status)
{
    uint32_t word = (uint32_t)why | ((uint32_t)(status > 0 ? status : 0) << 8);
    atomic_store_explicit(&h->reason, word, memory_order_relaxed);
    atomic_store_explicit(&h->since_ms, unix_ms(), memory_order_relaxed);
}

uint64_t sy_ep_note(struct sy_ep_health *h, const struct sy_outlier_spec *o, bool failed,
                    enum sy_health_reason why, int status, uint64_t now_ms)
{
    if (!h || !o->on)
        return 0;
    if (!failed) {
        /* Read first: a steady stream of successes writes nothing. */
        if (atomic_load_explicit(&h->consec_failures, memory_order_relaxed) != 0)
            atomic_store_explicit(&h->consec_failures, 0, memory_order_relaxed);
        return 0;
    }
    uint32_t n = atomic_fetch_add_explicit(&h->consec_failures, 1, memory_order_relaxed) + 1;
    if (n != o->consecutive_failures)
        return 0; /* exactly one worker completes the run */
    atomic_store_explicit(&h->consec_failures, 0, memory_order_relaxed);
    /* An endpoint that stayed in for a whole max_ejection since its last ejection ended starts
     * again from the base length. */
    uint64_t last = atomic_load_explicit(&h->last_until_ms, memory_order_relaxed);
    uint32_t k = atomic_load_explicit(&h->ejections, memory_order_relaxed);
    if (last && now_ms > last + o->max_ms)
        k = 0;
    if (k < 64)
        k++;
    uint64_t len = sy_outlier_backoff_ms(o, k);
    atomic_store_explicit(&h->ejections, k, memory_order_relaxed);
    atomic_store_explicit(&h->last_until_ms, now_ms + len, memory_order_relaxed);
    atomic_store_explicit(&h->eject_until_ms, now_ms + len, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->ejected_total, 1, memory_order_relaxed);
    sy_ep_set_reason(h, why, status);
    return len;
}

bool sy_ep_log_take(struct sy_ep_health *h, uint64_t now_ms)
{
    if (h->log_lines == 0 || now_ms - h->log_since >= 60000) {
        h->log_since = now_ms;
        h->log_lines = 0;
    }
    if (h->log_lines >= SY_HEALTH_LOG_LINES_PER_MINUTE) {
        h->log_dropped++;
        return false;
    }
    h->log_lines++;
    return true;
}

bool sy_retry_budget_fits(const struct sy_retry_budget_spec *b, uint64_t requests, uint64_t retries)
{
    uint64_t allowed = requests * b->percent / 100;
    if (allowed < b->min)
        allowed = b->min;
    return retries < allowed;
}

/* Moves the budget's window to `now_ms`'s: the current counts become the previous ones (or
 * zero when a whole window passed). Counts added by another worker while this one rolls may be
 * lost: the budget is an estimate, never a lock. */
static void budget_roll(struct sy_cluster_health *h, const struct sy_retry_budget_spec *b,
                        uint64_t now_ms)
{
    uint64_t win = now_ms / (b->window_ms ? b->window_ms : 1);
    uint64_t cur = atomic_load_explicit(&h->window, memory_order_relaxed);
    if (win == cur)
        return;
    if (!atomic_compare_exchange_strong_explicit(&h->window, &cur, win, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    bool adjacent = win == cur + 1;
    uint32_t req = atomic_exchange_explicit(&h->req_cur, 0, memory_order_relaxed);
    uint32_t ret = atomic_exchange_explicit(&h->retry_cur, 0, memory_order_relaxed);
    atomic_store_explicit(&h->req_prev, adjacent ? req : 0, memory_order_relaxed);
    atomic_store_explicit(&h->retry_prev, adjacent ? ret : 0, memory_order_relaxed);
}

void sy_cluster_count_request(struct sy_cluster_health *h, const struct sy_retry_budget_spec *b,
                              uint64_t now_ms)
{
    if (!h)
        return;
    budget_roll(h, b, now_ms);
    atomic_fetch_add_explicit(&h->req_cur, 1, memory_order_relaxed);
}

bool sy_cluster_take_retry(struct sy_cluster_health *h, const struct sy_retry_budget_spec *b,
                           uint64_t now_ms)
{
    if (!h)
        return true;
    budget_roll(h, b, now_ms);
    /* A sliding window of two: the previous window's counts weigh what is left of it. */
    uint64_t w = b->window_ms ? b->window_ms : 1;
    uint64_t into = now_ms % w;
    uint64_t req = atomic_load_explicit(&h->req_cur, memory_order_relaxed) +
                   atomic_load_explicit(&h->req_prev, memory_order_relaxed) * (w - into) / w;
    uint64_t ret = atomic_load_explicit(&h->retry_cur, memory_order_relaxed) +
                   atomic_load_explicit(&h->retry_prev, memory_order_relaxed) * (w - into) / w;
    if (!sy_retry_budget_fits(b, req, ret)) {
        atomic_fetch_add_explicit(&h->retries_denied, 1, memory_order_relaxed);
        return false;
    }
    atomic_fetch_add_explicit(&h->retry_cur, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->retries, 1, memory_order_relaxed);
    return true;
}

void sy_cluster_retry_worked(struct sy_cluster_health *h)
{
    if (!h)
        return;
    uint32_t n = atomic_load_explicit(&h->retry_cur, memory_order_relaxed);
    while (n > 0 && !atomic_compare_exchange_weak_explicit(
                        &h->retry_cur, &n, n - 1, memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- the registry (control thread) ------------------------------------------------------- */

/* Each state object holds one reference for the registry; a config holds one per pointer. */
static struct sy_ep_health **eps;
static size_t n_eps, cap_eps;
static struct sy_cluster_health **cls;
static size_t n_cls, cap_cls;

static struct sy_cluster_health *cluster_state(const char *name)
{
    for (size_t i = 0; i < n_cls; i++)
        if (strcmp(cls[i]->name, name) == 0)
            return cls[i];
    struct sy_cluster_health *h = sy_xcalloc(1, sizeof(*h));
    h->name = sy_xstrdup(name);
    atomic_init(&h->refs, 1);
    sy_xgrow((void **)&cls, &cap_cls, n_cls + 1, sizeof(*cls));
    cls[n_cls++] = h;
    return h;
}

static struct sy_ep_health *ep_state(const char *cluster, const char *address)
{
    for (size_t i = 0; i < n_eps; i++)
        if (strcmp(eps[i]->cluster, cluster) == 0 && strcmp(eps[i]->address, address) == 0)
            return eps[i];
    struct sy_ep_health *h = sy_xcalloc(1, sizeof(*h));
    h->cluster = sy_xstrdup(cluster);
    h->address = sy_xstrdup(address);
    atomic_init(&h->refs, 1);
    sy_xgrow((void **)&eps, &cap_eps, n_eps + 1, sizeof(*eps));
    eps[n_eps++] = h;
    return h;
}

static void sweep(void)
{
    /* refs == 1: only the registry holds it, and only this thread could take another. */
    size_t j = 0;
    for (size_t i = 0; i < n_eps; i++) {
        if (atomic_load_explicit(&eps[i]->refs, memory_order_acquire) == 1) {
            free(eps[i]->cluster);
            free(eps[i]->address);
            free(eps[i]);
            continue;
        }
        eps[j++] = eps[i];
    }
    n_eps = j;
    j = 0;
    for (size_t i = 0; i < n_cls; i++) {
        if (atomic_load_explicit(&cls[i]->refs, memory_order_acquire) == 1) {
            free(cls[i]->name);
            free(cls[i]);
            continue;
        }
        cls[j++] = cls[i];
    }
    n_cls = j;
}

void sy_health_attach(struct sy_config *cfg)
{
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        struct sy_cluster_spec *cl = &cfg->clusters[c];
        if (!cl->hs) {
            cl->hs = cluster_state(cl->name);
            atomic_fetch_add_explicit(&cl->hs->refs, 1, memory_order_relaxed);
        }
        for (size_t e = 0; e < cl->n_endpoints; e++) {
            struct sy_endpoint_spec *ep = &cl->endpoints[e];
            if (ep->hs)
                continue;
            ep->hs = ep_state(cl->name, ep->address);
            atomic_fetch_add_explicit(&ep->hs->refs, 1, memory_order_relaxed);
        }
    }
    sweep();
}

void sy_health_installed(const struct sy_config *cfg)
{
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        const struct sy_cluster_spec *cl = &cfg->clusters[c];
        if (cl->health.on)
            continue;
        for (size_t e = 0; e < cl->n_endpoints; e++) {
            struct sy_ep_health *h = cl->endpoints[e].hs;
            if (h && atomic_load_explicit(&h->down, memory_order_relaxed)) {
                /* The checks were taken off: nothing would ever bring it back. */
                h->run = (struct sy_health_run){0};
                atomic_store_explicit(&h->down, 0, memory_order_relaxed);
                sy_ep_set_reason(h, SY_HR_NONE, 0);
            }
        }
    }
}

void sy_health_detach(struct sy_config *cfg)
{
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        struct sy_cluster_spec *cl = &cfg->clusters[c];
        if (cl->hs)
            atomic_fetch_sub_explicit(&cl->hs->refs, 1, memory_order_acq_rel);
        cl->hs = NULL;
        for (size_t e = 0; e < cl->n_endpoints; e++) {
            if (cl->endpoints[e].hs)
                atomic_fetch_sub_explicit(&cl->endpoints[e].hs->refs, 1, memory_order_acq_rel);
            cl->endpoints[e].hs = NULL;
        }
    }
}
