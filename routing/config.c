/* SPDX-License-Identifier: MIT */
/* The routing file loader: YAML text in, a checked struct sy_config out. One pass over libyaml's
 * events (yaml_doc.c) refuses syntax errors, aliases and a second document and builds a node tree
 * with a mark on every node, which we walk against the schema. A problem is
 * recorded with the line and column of the node at fault (the key for an unknown key, the value
 * for a bad value) and the walk goes on, so one pass reports every problem. Apps are read after
 * the rest of the file because their weights name clusters; host+path pairs shared by two apps
 * are found at the end (config_apps.c). The diagnostics are finally put in file order. This
 * file holds the entry points, the top level and apps_dir; the walk's helpers are in
 * config_walk.c and each section's schema in config_<section>.c (config_internal.h). */
#include "switchyard/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <yaml.h>

#include "switchyard/apps_dir.h"
#include "switchyard/health.h"

#include "config_internal.h"
#include "yaml_doc.h"

bool sy_cfg_resolve_names = true;

void sy_config_set_resolve(bool on)
{
    sy_cfg_resolve_names = on;
}

static void parse_workers(struct ctx *c, const struct sy_ynode *v)
{
    uint64_t n;
    if (!sy_cfg_parse_uint(v, MAX_WORKERS, &n)) {
        sy_cfg_report(c, v, "workers must be an integer 0..%d, got %s", MAX_WORKERS,
                      sy_cfg_show_value(v).s);
        return;
    }
    c->cfg->workers = (unsigned)n;
}

/* -- apps_dir: one file of apps per tenant --------------------------------------------------- */

static int read_file(const char *path, struct sy_diags *diags, char **out, size_t *out_len);
static void syntax_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len);
static void refuse_yaml(void *arg, yaml_mark_t mark, const char *why);

/* The content hash goes on over each apps_dir file: its path (so that a rename counts) and
 * its bytes. */
static uint64_t hash_apps_file(uint64_t h, const char *path, const char *text, size_t len)
{
    return sy_fnv1a(sy_fnv1a(h, path, strlen(path) + 1), text, len);
}

/* The apps of one apps_dir file, already read: a YAML list of `apps:` entries. Its own
 * document replaces the routing file's while it is walked; diagnostics name `path`. */
static void parse_apps_text(struct ctx *c, const char *path, const char *text, size_t len)
{
    struct sy_yaml_doc routing_file = c->yaml;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        sy_diags_add(c->diags, path, 0, 0, "out of memory while parsing the yaml");
        return;
    }
    memset(&c->yaml, 0, sizeof(c->yaml));
    enum sy_yaml_result built = sy_yaml_doc_build(&p, text, len, &c->yaml, refuse_yaml, c);
    if (built == SY_YAML_SYNTAX)
        syntax_error(c, &p, text, len);
    yaml_parser_delete(&p);
    if (built == SY_YAML_OK) {
        const struct sy_ynode *root = sy_yaml_root(&c->yaml);
        /* An empty file is more likely a write caught half way than a tenant with no apps. */
        if (!root)
            sy_diags_add(c->diags, path, 1, 1,
                         "an apps_dir file must be a list of apps (write [] for none)");
        else if (root->type != YAML_SEQUENCE_NODE)
            sy_cfg_report(c, root, "an apps_dir file must be a list of apps, got %s",
                          sy_cfg_show_value(root).s);
        else
            sy_cfg_parse_apps(c, root);
        sy_yaml_doc_free(&c->yaml);
    }
    c->yaml = routing_file;
}

/* `apps_dir: DIR`: every apps file there (sy_apps_dir_list), in name order. The config keeps
 * the files' paths, which its apps and the diagnostics point to. */
static void parse_apps_dir(struct ctx *c, const struct sy_ynode *v)
{
    struct sy_config *cfg = c->cfg;
    char *dir = sy_cfg_path_value(c, v, "apps_dir", PATH_MAX - NAME_MAX - 2);
    if (!dir)
        return;
    cfg->apps_dir = dir;
    cfg->apps_dir_mark = sy_cfg_mark_of(v);
    struct sy_apps_dir_list l;
    int err = 0;
    int rc = sy_apps_dir_list(dir, cfg->path, cfg->limits.apps_dir_files, &l, &err);
    if (rc == SY_ERR_LIMIT) {
        sy_cfg_report(c, v,
                      "apps_dir '%s' holds more than limits.apps_dir_files (%zu) *.yaml files", dir,
                      cfg->limits.apps_dir_files);
        return;
    }
    if (rc) {
        sy_cfg_report(c, v, "cannot read apps_dir '%s': %s", dir, strerror(err));
        return;
    }
    cfg->apps_dir_block = l.block;
    cfg->apps_dir_files = l.paths;
    cfg->n_apps_dir_files = l.n;
    const char *routing_file = c->file;
    for (size_t i = 0; i < l.n; i++) {
        char *text;
        size_t len;
        if (read_file(l.paths[i], c->diags, &text, &len) != 0)
            continue;
        cfg->content_hash = hash_apps_file(cfg->content_hash, l.paths[i], text, len);
        c->file = c->dir_file = l.paths[i];
        parse_apps_text(c, l.paths[i], text, len);
        free(text);
    }
    c->file = routing_file;
    c->dir_file = NULL;
}

/* Whether the root mapping has `timeouts: {drain: ...}`. */
static bool has_timeouts_drain(struct ctx *c, const struct sy_ynode *root)
{
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const struct sy_ynode *k = sy_cfg_node_at(c, p->key), *v = sy_cfg_node_at(c, p->value);
        if (!sy_cfg_is_scalar(k) || strcmp(sy_cfg_text(k), "timeouts") != 0 || !v ||
            v->type != YAML_MAPPING_NODE)
            continue;
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            const struct sy_ynode *qk = sy_cfg_node_at(c, q->key);
            if (sy_cfg_is_scalar(qk) && strcmp(sy_cfg_text(qk), "drain") == 0)
                return true;
        }
    }
    return false;
}

/* An exclusive app's switch drains the requests of one replica before it releases the new
 * cluster; the replicas of a fleet cannot drain together yet, so the two are refused together
 * rather than letting a fleet-wide change move a stateful app without its drain. */
static void check_fleet_apps(struct ctx *c)
{
    const struct sy_config *cfg = c->cfg;
    if (!cfg->fleet.on)
        return;
    for (size_t i = 0; i < cfg->n_apps; i++)
        if (cfg->apps[i].mode == SY_APP_EXCLUSIVE) {
            sy_diags_add(c->diags, c->file, cfg->fleet.mark.line, cfg->fleet.mark.col,
                         "`fleet:` and exclusive apps (app '%s', mode: exclusive) cannot be "
                         "used together yet: an exclusive switch drains one replica, not the "
                         "fleet (docs/fleet.md)",
                         cfg->apps[i].name);
            return;
        }
}

static void parse_root(struct ctx *c, const struct sy_ynode *root)
{
    if (!root) {
        sy_diags_add(c->diags, c->file, 1, 1, "config is empty");
        return;
    }
    if (!sy_cfg_is_mapping(c, root, "the config"))
        return;
    const struct sy_ynode *listen = NULL, *clusters = NULL, *apps = NULL, *apps_dir = NULL;
    bool grace_set = false;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        struct sy_ynode *k, *v;
        const char *key;
        if (!sy_cfg_map_entry(c, root, p, &k, &v, &key))
            continue;
        if (strcmp(key, "workers") == 0) {
            parse_workers(c, v);
        } else if (strcmp(key, "listen") == 0) {
            listen = v;
            sy_cfg_parse_listens(c, v);
        } else if (strcmp(key, "clusters") == 0) {
            clusters = v;
            sy_cfg_parse_clusters(c, v);
        } else if (strcmp(key, "apps") == 0) {
            apps = v; /* after the clusters, which may come later in the file */
        } else if (strcmp(key, "apps_dir") == 0) {
            apps_dir = v; /* after `apps:` and the limits */
        } else if (strcmp(key, "limits") == 0) {
            sy_cfg_parse_limits(c, v);
        } else if (strcmp(key, "timeouts") == 0) {
            sy_cfg_parse_timeouts(c, v);
        } else if (strcmp(key, "admin") == 0) {
            sy_cfg_parse_admin(c, v);
        } else if (strcmp(key, "trusted_proxies") == 0) {
            sy_cfg_parse_trusted(c, v, &c->cfg->trusted, &c->cfg->n_trusted);
        } else if (strcmp(key, "exclusive") == 0) {
            sy_cfg_parse_exclusive(c, v);
        } else if (strcmp(key, "access_log") == 0) {
            sy_cfg_parse_access_log(c, v);
        } else if (strcmp(key, "shutdown") == 0) {
            sy_cfg_parse_shutdown(c, v, &grace_set);
        } else if (strcmp(key, "fleet") == 0) {
            sy_cfg_parse_fleet(c, v);
        } else if (strcmp(key, "state") == 0) {
            c->cfg->state = sy_cfg_path_value(c, v, "state", PATH_MAX - 16);
            c->cfg->state_mark = sy_cfg_mark_of(v);
        } else {
            sy_cfg_report(c, k, "unknown key '%s' at top level", sy_cfg_show(k).s);
        }
    }
    if (!grace_set && has_timeouts_drain(c, root))
        c->cfg->shutdown.grace_ms = c->cfg->timeouts.drain_ms;
    if (!listen)
        sy_cfg_report(c, root, "missing required key 'listen'");
    if (!clusters)
        sy_cfg_report(c, root, "missing required key 'clusters'");
    if (apps)
        sy_cfg_parse_apps(c, apps);
    if (apps_dir)
        parse_apps_dir(c, apps_dir);
    if (apps || apps_dir)
        sy_cfg_check_claims(c);
    else
        sy_cfg_report(c, root, "missing required key 'apps' (or 'apps_dir')");
}

static void syntax_error(struct ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
    const char *problem = p->problem ? p->problem : "cannot parse the yaml";
    if (p->error == YAML_MEMORY_ERROR) {
        sy_diags_add(c->diags, c->file, 0, 0, "out of memory while parsing the yaml");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        sy_diags_add(c->diags, c->file, line, col, "%s", problem);
        return;
    }
    if (p->context)
        sy_cfg_error_mark(c, p->problem_mark, "%s (%s at line %d)", problem, p->context,
                          sy_cfg_clamp_int(p->context_mark.line + 1));
    else
        sy_cfg_error_mark(c, p->problem_mark, "%s", problem);
}

static void refuse_yaml(void *arg, yaml_mark_t mark, const char *why)
{
    sy_cfg_error_mark(arg, mark, "%s", why);
}

struct diag_order {
    size_t file; /* 0: the routing file; 1 + offset in cfg->apps_dir_block: that apps file */
    int line, col;
    size_t i;
};

static int cmp_diag_order(const void *a, const void *b)
{
    const struct diag_order *x = a, *y = b;
    if (x->file != y->file)
        return (x->file > y->file) - (x->file < y->file);
    if (x->line != y->line)
        return (x->line > y->line) - (x->line < y->line);
    if (x->col != y->col)
        return (x->col > y->col) - (x->col < y->col);
    return (x->i > y->i) - (x->i < y->i);
}

/* Puts our diagnostics in file order (stable), leaving any the caller had before in place:
 * the routing file's first, then each apps_dir file's in name order (`block`, the files'
 * paths in one allocation of `block_len` bytes in that order, or NULL). */
static void sort_diags(struct ctx *c, const char *block, size_t block_len)
{
    struct sy_diags *d = c->diags;
    size_t n = d->n - c->first_diag;
    if (n < 2)
        return;
    struct diag_order *o = sy_xmalloc(n * sizeof(*o));
    for (size_t i = 0; i < n; i++) {
        const char *f = d->v[c->first_diag + i].file;
        bool in_block = block && f && f >= block && f < block + block_len;
        o[i].file = in_block ? 1 + (size_t)(f - block) : 0;
        o[i].line = d->v[c->first_diag + i].line;
        o[i].col = d->v[c->first_diag + i].col;
        o[i].i = i;
    }
    qsort(o, n, sizeof(*o), cmp_diag_order);
    struct sy_diag *tmp = sy_xmalloc(n * sizeof(*tmp));
    for (size_t i = 0; i < n; i++)
        tmp[i] = d->v[c->first_diag + o[i].i];
    memcpy(d->v + c->first_diag, tmp, n * sizeof(*tmp));
    free(tmp);
    free(o);
}

static uint64_t content_hash_of(const char *text, size_t len)
{
    return sy_fnv1a(SY_FNV1A_INIT, text, len);
}

int sy_config_parse(const char *name, const char *text, size_t len, struct sy_diags *diags,
                    struct sy_config **out)
{
    struct ctx c;
    memset(&c, 0, sizeof(c));
    c.file = name;
    c.diags = diags;
    c.first_diag = diags->n;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        sy_diags_add(diags, name, 0, 0, "out of memory while parsing the yaml");
        return SY_ERR_NOMEM;
    }
    enum sy_yaml_result built = sy_yaml_doc_build(&p, text, len, &c.yaml, refuse_yaml, &c);
    if (built == SY_YAML_SYNTAX)
        syntax_error(&c, &p, text, len);
    yaml_parser_delete(&p);
    if (built != SY_YAML_OK)
        goto out_invalid;
    c.cfg = sy_xcalloc(1, sizeof(*c.cfg));
    atomic_init(&c.cfg->refs, 1);
    c.cfg->content_hash = content_hash_of(text, len);
    c.cfg->path = name ? sy_xstrdup(name) : NULL;
    sy_config_defaults(&c.cfg->limits, &c.cfg->timeouts);
    sy_config_exclusive_defaults(&c.cfg->exclusive);
    sy_config_shutdown_defaults(&c.cfg->shutdown);
    sy_config_fleet_defaults(&c.cfg->fleet);
    c.cfg->access_log.sample = 1.0;
    c.cfg->access_log.buffer_bytes = SY_ACCESS_LOG_BUFFER_DEFAULT;
    parse_root(&c, sy_yaml_root(&c.yaml));
    check_fleet_apps(&c);
    sy_yaml_doc_free(&c.yaml);
    sy_yaml_spares_drop();
    if (diags->n == c.first_diag) {
        *out = c.cfg;
        return SY_OK;
    }
    /* The diagnostics point into the apps_dir files' paths: they keep them. */
    const char *block = c.cfg->apps_dir_block;
    size_t n_files = c.cfg->n_apps_dir_files;
    size_t block_len = n_files ? (size_t)(c.cfg->apps_dir_files[n_files - 1] - block) +
                                     strlen(c.cfg->apps_dir_files[n_files - 1]) + 1
                               : 0;
    sy_diags_keep(diags, c.cfg->apps_dir_block);
    c.cfg->apps_dir_block = NULL;
    sy_config_free(c.cfg);
    sort_diags(&c, block, block_len);
    return SY_ERR_INVALID;

out_invalid:
    sy_yaml_spares_drop();
    sort_diags(&c, NULL, 0);
    return SY_ERR_INVALID;
}

/* Reads the whole file at `path` into a new buffer (free() it). */
static int read_file(const char *path, struct sy_diags *diags, char **out, size_t *out_len)
{
    /* O_NONBLOCK: a FIFO (anyone who may write in an apps_dir can make one) must not hold
     * the control thread in open() or read(); it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd == -1) {
        sy_diags_add(diags, path, 0, 0, "cannot read: %s", strerror(errno));
        return SY_ERR_SYS;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct stat st;
    bool stated = fstat(fd, &st) == 0;
    if (stated && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        sy_diags_add(diags, path, 0, 0, "cannot read: not a regular file");
        close(fd);
        return SY_ERR_INVALID;
    }
    if (stated && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size <= MAX_FILE_BYTES)
        sy_xgrow((void **)&buf, &cap, (size_t)st.st_size + 1, 1); /* +1: the read that sees EOF */
    for (;;) {
        if (len == cap)
            sy_xgrow((void **)&buf, &cap, len + 4096, 1);
        ssize_t r = read(fd, buf + len, cap - len);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            sy_diags_add(diags, path, 0, 0, "cannot read: %s", strerror(errno));
            free(buf);
            close(fd);
            return SY_ERR_SYS;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > MAX_FILE_BYTES) {
            sy_diags_add(diags, path, 0, 0, "cannot read: larger than %u bytes", MAX_FILE_BYTES);
            free(buf);
            close(fd);
            return SY_ERR_INVALID;
        }
    }
    close(fd);
    *out = buf;
    *out_len = len;
    return 0;
}

int sy_config_load(const char *path, struct sy_diags *diags, struct sy_config **out)
{
    char *buf;
    size_t len;
    int rc = read_file(path, diags, &buf, &len);
    if (rc)
        return rc;
    rc = sy_config_parse(path, buf, len, diags, out);
    free(buf);
    return rc;
}

bool sy_config_file_is(const char *path, uint64_t content_hash)
{
    struct sy_diags d;
    sy_diags_init(&d);
    char *buf;
    size_t len;
    bool same = read_file(path, &d, &buf, &len) == 0 && content_hash_of(buf, len) == content_hash;
    if (d.n == 0)
        free(buf);
    sy_diags_dispose(&d);
    return same;
}

bool sy_config_is_current(const char *path, const struct sy_config *cfg)
{
    if (!cfg->apps_dir)
        return sy_config_file_is(path, cfg->content_hash);
    struct sy_diags d;
    sy_diags_init(&d);
    char *buf;
    size_t len;
    if (read_file(path, &d, &buf, &len) != 0) {
        sy_diags_dispose(&d);
        return false;
    }
    uint64_t h = content_hash_of(buf, len);
    free(buf);
    struct sy_apps_dir_list l = {0};
    int err;
    bool same =
        sy_apps_dir_list(cfg->apps_dir, cfg->path, cfg->limits.apps_dir_files, &l, &err) == 0;
    for (size_t i = 0; same && i < l.n; i++) {
        same = read_file(l.paths[i], &d, &buf, &len) == 0;
        if (same) {
            h = hash_apps_file(h, l.paths[i], buf, len);
            free(buf);
        }
    }
    free(l.block);
    free(l.paths);
    sy_diags_dispose(&d);
    return same && h == cfg->content_hash;
}

struct sy_config *sy_config_acquire(struct sy_config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void sy_config_free(struct sy_config *cfg)
{
    if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (!cfg)
        return;
    sy_health_detach(cfg);
    for (size_t i = 0; i < cfg->n_listens; i++) {
        free(cfg->listens[i].address);
        free(cfg->listens[i].tls_cert);
        free(cfg->listens[i].tls_key);
        free(cfg->listens[i].trusted);
    }
    free(cfg->trusted);
    free(cfg->listens);
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        struct sy_cluster_spec *cl = &cfg->clusters[i];
        for (size_t j = 0; j < cl->n_endpoints; j++)
            free(cl->endpoints[j].address);
        free(cl->endpoints);
        free(cl->name);
        free(cl->tls.ca);
        free(cl->tls.sni);
        free(cl->tls.cert);
        free(cl->tls.key);
        free(cl->health.path);
        free(cl->health.host);
    }
    free(cfg->clusters);
    for (size_t i = 0; i < cfg->n_apps; i++) {
        struct sy_app_spec *app = &cfg->apps[i];
        free(app->name);
        for (size_t j = 0; j < app->n_hosts; j++)
            free(app->hosts[j]);
        free(app->hosts);
        free(app->host_marks);
        for (size_t j = 0; j < app->n_paths; j++)
            free(app->paths[j]);
        free(app->paths);
        free(app->path_marks);
        free(app->weights);
        free(app->maintenance_page);
        sy_cfg_sticky_dispose(&app->sticky);
        sy_cfg_force_dispose(&app->force);
    }
    free(cfg->apps);
    free(cfg->app_slots);
    free(cfg->apps_dir);
    free(cfg->apps_dir_block);
    free(cfg->apps_dir_files);
    free(cfg->admin.socket);
    free(cfg->admin.allow_uids);
    free(cfg->admin.allow_gids);
    free(cfg->admin.allow_read_uids);
    free(cfg->admin.allow_read_gids);
    free(cfg->admin.http);
    free(cfg->admin.http_allow);
    free(cfg->state);
    free(cfg->access_log.path);
    free(cfg->exclusive.ready_url);
    free(cfg->exclusive.ready_host);
    free(cfg->exclusive.ready_path);
    sy_cfg_fleet_dispose(&cfg->fleet);
    free(cfg->path);
    free(cfg);
}
