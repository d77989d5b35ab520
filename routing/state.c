/* SPDX-License-Identifier: MIT */
/* The control plane's state. It keeps the config that was last loaded without error and
 * compiles every snapshot from it; a reload that fails is counted and logged with
 * file:line:column, and the running snapshot stays. A reload whose bytes equal the file in
 * force is recognised by its content hash, so a touch or a burst of watch events does not
 * publish a new generation. */
#include "switchyard/state.h"

#include <stdlib.h>
#include <string.h>

struct sy_state {
    const char *path;
    sy_state_check_cb check;
    void *check_arg;
    sy_state_publish_cb publish;
    void *publish_arg;
    struct sy_config *cfg;        /* the file in force */
    struct sy_route_table *table; /* the snapshot in force */
    uint64_t generation;
    uint64_t reload_failures;
};

static int load(struct sy_state *st, struct sy_diags *d, struct sy_config **out)
{
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(st->path, d, &cfg);
    if (rc)
        return rc;
    if (st->check && (rc = st->check(cfg, st->path, d, st->check_arg)) != 0) {
        sy_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

static int compile(struct sy_state *st, struct sy_config *cfg, uint64_t generation,
                   struct sy_diags *d, struct sy_route_table **out)
{
    int rc = sy_route_table_build(cfg, NULL, 0, generation, out);
    if (rc)
        sy_diags_add(d, st->path, 0, 0, "cannot compile the routing table: %s", sy_strerror(rc));
    return rc;
}

int sy_state_open(const char *path, sy_state_check_cb check, void *arg, struct sy_diags *d,
                  struct sy_state **out)
{
    struct sy_state *st = sy_xcalloc(1, sizeof(*st));
    st->path = path;
    st->check = check;
    st->check_arg = arg;
    int rc = load(st, d, &st->cfg);
    if (rc == 0 && (rc = compile(st, st->cfg, 1, d, &st->table)) != 0)
        sy_config_free(st->cfg);
    if (rc) {
        free(st);
        return rc;
    }
    st->generation = 1;
    *out = st;
    return 0;
}

void sy_state_set_publish(struct sy_state *st, sy_state_publish_cb publish, void *arg)
{
    st->publish = publish;
    st->publish_arg = arg;
}

struct sy_route_table *sy_state_table(const struct sy_state *st)
{
    return st->table;
}

uint64_t sy_state_generation(const struct sy_state *st)
{
    return st->generation;
}

uint64_t sy_state_reload_failures(const struct sy_state *st)
{
    return st->reload_failures;
}

/* Makes `cfg` and `t` the state in force and hands `t` to the data path. */
static void install(struct sy_state *st, struct sy_config *cfg, struct sy_route_table *t)
{
    sy_config_free(st->cfg);
    st->cfg = cfg;
    sy_route_table_release(st->table);
    st->table = t;
    st->generation = sy_route_table_generation(t);
    if (st->publish)
        st->publish(t, st->publish_arg);
}

enum sy_reload_result sy_state_reload(struct sy_state *st, bool force, struct sy_diags *d)
{
    size_t first = d->n;
    struct sy_config *cfg = NULL;
    struct sy_route_table *t = NULL;
    if (load(st, d, &cfg) != 0 || compile(st, cfg, st->generation + 1, d, &t) != 0) {
        sy_config_free(cfg);
        st->reload_failures++;
        char line[512];
        for (size_t i = first; i < d->n; i++) {
            sy_diag_format(&d->v[i], line, sizeof(line));
            sy_log(
                SY_LOG_ERROR, "reload", "rejected (generation %llu kept, %llu failed so far): %s",
                (unsigned long long)st->generation, (unsigned long long)st->reload_failures, line);
        }
        return SY_RELOAD_REJECTED;
    }
    if (!force && cfg->content_hash == st->cfg->content_hash) {
        sy_route_table_release(t);
        sy_config_free(cfg);
        sy_log(SY_LOG_DEBUG, "reload", "file unchanged (generation %llu kept)",
               (unsigned long long)st->generation);
        return SY_RELOAD_UNCHANGED;
    }
    if (cfg->workers != st->cfg->workers)
        sy_log(SY_LOG_WARN, "reload", "workers changes from %u to %u only on restart",
               st->cfg->workers, cfg->workers);
    install(st, cfg, t);
    sy_log(SY_LOG_INFO, "reload", "generation %llu published: %zu apps, %zu clusters",
           (unsigned long long)st->generation, cfg->n_apps, cfg->n_clusters);
    return SY_RELOAD_PUBLISHED;
}

void sy_state_free(struct sy_state *st)
{
    if (!st)
        return;
    sy_route_table_release(st->table);
    sy_config_free(st->cfg);
    free(st);
}
