/* SPDX-License-Identifier: MIT */
/* drain_after: when a worker installs a snapshot in which an app gives 0 to a cluster that had
 * weight before, a timer (a drain job) is armed for the app's drain_after (an exclusive app:
 * exclusive.drain); when it fires and the weight is still 0, every exchange of that app on
 * that cluster that was not forced is cut. The client connection is told first (HTTP/2:
 * GOAWAY, HTTP/1.1: no keep-alive) so that it comes back and follows the new weights. The
 * exchanges are found on the worker's list of those in flight (ex->w_next). Loop thread
 * only. */
#include <stdlib.h>
#include <string.h>

#include "exchange_internal.h"

/* A cluster an app no longer sends anything to is emptied of what still runs on it (tunnels,
 * long streams, slow answers), drain_after after the change. */
struct drain_job {
    struct sy_worker *w;
    char *app, *cluster;
    struct event *ev;
    struct drain_job *next;
};

static void drain_job_free(struct drain_job *j)
{
    struct sy_worker *w = j->w;
    for (struct drain_job **pp = &w->drain_jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    event_free(j->ev);
    free(j->app);
    free(j->cluster);
    free(j);
}

/* Cuts every exchange of `app` on `cluster` that was not forced. */
static void drain_cluster(struct sy_worker *w, const char *app, const char *cluster)
{
    size_t n = 0;
    for (struct exchange *ex = w->exchanges, *next; ex; ex = next) {
        next = ex->w_next;
        if (ex->forced || strcmp(ex->app->name, app) != 0 ||
            strcmp(exchange_cluster_name(ex), cluster) != 0)
            continue;
        /* An HTTP/2 client gets GOAWAY (it reconnects, and follows the new weights), an
         * HTTP/1.1 connection will not be kept alive; then the exchange is cut. The GOAWAY's
         * flush may end this very exchange (its stream's queued DATA goes out, the exchange
         * reads on and its response completes) or the whole connection: exchange_free then
         * clears drain_cut, and only an exchange still running is cut. */
        struct conn *c = ex->down->conn;
        w->drain_cut = ex;
        c->close_idle(c);
        if (w->drain_cut == ex) {
            exchange_fail(ex, 502, "the app left this cluster (drain_after)");
            n++;
        }
        w->drain_cut = NULL;
        /* The cut may free other exchanges of the same connection: start over. */
        next = w->exchanges;
    }
    if (n)
        sy_log(SY_LOG_INFO, "drain",
               "worker %u: closed %zu exchange(s) of app %s still on cluster "
               "%s (drain_after)",
               w->id, n, app, cluster);
}

static void drain_job_cb(evutil_socket_t fd, short what, void *arg)
{
    struct drain_job *j = arg;
    /* Only if the cluster is still out of the app's split (a switch back cancels it). */
    if (sy_route_app_weight_of(j->w->table, j->app, j->cluster) <= 0)
        drain_cluster(j->w, j->app, j->cluster);
    drain_job_free(j);
}

void drain_schedule(struct sy_worker *w, const struct sy_route_table *old,
                    const struct sy_route_table *new)
{
    if (!old)
        return;
    const struct sy_config *ocfg = sy_route_table_config(old), *ncfg = sy_route_table_config(new);
    for (size_t a = 0; a < ncfg->n_apps; a++) {
        const struct sy_app_spec *app = &ncfg->apps[a];
        /* An exclusive app that moves cuts what still runs on its old cluster after
         * exclusive.drain (its own drain_after, when set, wins). */
        unsigned drain_ms = app->drain_after_ms;
        if (!drain_ms && app->mode == SY_APP_EXCLUSIVE)
            drain_ms = ncfg->exclusive.drain_ms;
        if (!drain_ms)
            continue;
        for (size_t c = 0; c < ocfg->n_clusters; c++) {
            const char *cname = ocfg->clusters[c].name;
            if (sy_route_app_weight_of(old, app->name, cname) <= 0 ||
                sy_route_app_weight_of(new, app->name, cname) > 0)
                continue;
            struct drain_job *j = sy_xcalloc(1, sizeof(*j));
            j->w = w;
            j->app = sy_xstrdup(app->name);
            j->cluster = sy_xstrdup(cname);
            j->ev = evtimer_new(w->base, drain_job_cb, j);
            struct timeval tv = ms_tv(drain_ms);
            evtimer_add(j->ev, &tv);
            j->next = w->drain_jobs;
            w->drain_jobs = j;
            sy_log(SY_LOG_INFO, "drain",
                   "worker %u: app %s left cluster %s: what still runs there "
                   "closes in %u ms (drain_after)",
                   w->id, app->name, cname, drain_ms);
        }
    }
}

void drain_jobs_free(struct sy_worker *w)
{
    while (w->drain_jobs)
        drain_job_free(w->drain_jobs);
}
