/* SPDX-License-Identifier: MIT */
/* Maintenance mode in the compiled table. An app in maintenance is answered by the proxy
 * itself (503 with Retry-After, a page or one line) and never reaches a cluster. The answers
 * are made here, on the control thread, once per snapshot: the data path finds its app's
 * answer by index in a per-table array, with no lock and no allocation. The set is
 * refcounted so that the snapshots of an operator's weight changes share it. */
#include "switchyard/routing.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table_internal.h"

void sy_route_maint_set_release(struct maint_set *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < m->n_apps; i++) {
        if (m->by_app[i])
            free((char *)m->by_app[i]->text);
        free(m->by_app[i]);
    }
    free(m->by_app);
    free(m);
}

void sy_route_table_set_maintenance(struct sy_route_table *t, const struct sy_route_maint *m,
                                    size_t n)
{
    const struct sy_config *cfg = t->cfg;
    struct maint_set *set = NULL;
    for (size_t k = 0; k < n; k++) {
        long ai = sy_config_app_index(cfg, m[k].app);
        if (ai < 0)
            continue; /* kept by the journal for an app the file no longer has */
        if (!set) {
            set = sy_xcalloc(1, sizeof(*set));
            atomic_init(&set->refs, 1);
            set->n_apps = cfg->n_apps;
            set->by_app = sy_xcalloc(cfg->n_apps, sizeof(*set->by_app));
        }
        if (set->by_app[ai])
            continue; /* named twice: the first wins */
        const struct sy_app_spec *app = &cfg->apps[ai];
        struct sy_route_maint_answer *a = sy_xcalloc(1, sizeof(*a));
        unsigned ra = m[k].retry_after ? m[k].retry_after : app->maintenance_retry_after;
        a->retry_after_s = ra;
        /* The message is printable ASCII of at most SY_MAINT_MESSAGE_MAX bytes, an app name
         * at most 255 bytes: 512 is room enough for either line. */
        char *text = sy_xmalloc(512);
        if (m[k].message)
            snprintf(text, 512, "%.400s\n", m[k].message);
        else
            snprintf(text, 512, "%.255s is down for maintenance: try again in %u seconds\n",
                     app->name, ra);
        a->text = text;
        a->text_len = strlen(text);
        a->page = app->maintenance_page;
        a->page_len = app->maintenance_page_len;
        set->by_app[ai] = a;
    }
    sy_route_maint_set_release(t->maint);
    t->maint = set;
}

const struct sy_route_maint_answer *sy_route_app_maintenance(const struct sy_route_table *t,
                                                             const struct sy_route_app *app)
{
    if (!t->maint)
        return NULL;
    return t->maint->by_app[app->index];
}
