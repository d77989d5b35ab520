/* SPDX-License-Identifier: MIT */
/* The apps: section of the routing file: each app's name (and the name index), hosts, paths,
 * weights over the clusters, stable cluster, sticky and force keys, drain and maintenance
 * settings; and the final check that no two apps claim the same host+path pair, found by
 * sorting every pair. */
#include "switchyard/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <yaml.h>

#include "config_internal.h"
#include "yaml_doc.h"

/* Why host pattern `s` is unusable, or NULL when it is fine. */
const char *sy_cfg_host_problem(const char *s, size_t len)
{
    if (len == 1 && s[0] == '*')
        return NULL;
    if (s[0] == '[') {
        /* An IPv6 literal, as a Host header carries it: "[::1]". */
        const char *end = memchr(s, ']', len);
        if (end && end + 1 < s + len && end[1] == ':')
            return "a port is not allowed";
        char v6[INET6_ADDRSTRLEN];
        size_t n = end ? (size_t)(end - s - 1) : 0;
        struct in6_addr a;
        if (!end || end + 1 != s + len || n == 0 || n >= sizeof(v6))
            return "bad IPv6 literal";
        memcpy(v6, s + 1, n);
        v6[n] = '\0';
        if (inet_pton(AF_INET6, v6, &a) != 1)
            return "bad IPv6 literal";
        return NULL;
    }
    const char *name = s;
    if (len >= 2 && s[0] == '*' && s[1] == '.') {
        name += 2;
        len -= 2;
        if (len == 0)
            return "a wildcard needs a suffix after '*.'";
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch == ':')
            return "a port is not allowed";
        if (ch <= ' ' || ch == 0x7f)
            return "spaces and control characters are not allowed";
        if (ch == '*')
            return "'*' is allowed only as the whole host or as a leading '*.'";
        if (!sy_cfg_is_name_char((char)ch))
            return "only letters, digits, '-', '_' and '.' are allowed";
    }
    if (len > MAX_HOST)
        return "longer than 253 characters";
    if (name[len - 1] == '.')
        return "a trailing '.' is not allowed";
    if (name[0] == '.' || strstr(name, ".."))
        return "empty label";
    return NULL;
}

static void parse_hosts(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v)
{
    if (!sy_cfg_is_list(c, v, "hosts"))
        return;
    if (!sy_cfg_has_items(v)) {
        sy_cfg_report(c, v, "hosts must have at least one entry");
        return;
    }
    size_t cap = 0, cap_marks = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        const struct sy_ynode *n = sy_cfg_node_at(c, *it);
        const char *s = sy_cfg_string_value(c, n, "host");
        if (!s)
            continue;
        const char *why = sy_cfg_host_problem(s, n->data.scalar.length);
        if (why) {
            sy_cfg_report(c, n, "bad host '%s': %s", sy_cfg_show(n).s, why);
            continue;
        }
        char *host = sy_xstrdup(s);
        for (char *q = host; *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q + ('a' - 'A'));
        bool dup = false;
        for (size_t i = 0; i < app->n_hosts && !dup; i++) {
            if (strcmp(app->hosts[i], host) == 0) {
                sy_cfg_report(c, n, "duplicate host '%s' in app (first at line %d)",
                              sy_cfg_show(n).s, app->host_marks[i].line);
                dup = true;
            }
        }
        if (dup) {
            free(host);
            continue;
        }
        sy_xgrow((void **)&app->hosts, &cap, app->n_hosts + 1, sizeof(*app->hosts));
        sy_xgrow((void **)&app->host_marks, &cap_marks, app->n_hosts + 1, sizeof(*app->host_marks));
        app->hosts[app->n_hosts] = host;
        app->host_marks[app->n_hosts++] = sy_cfg_mark_of(n);
    }
}

static void add_path(struct sy_app_spec *app, size_t *cap, size_t *cap_marks, const char *path,
                     struct sy_mark mark)
{
    sy_xgrow((void **)&app->paths, cap, app->n_paths + 1, sizeof(*app->paths));
    sy_xgrow((void **)&app->path_marks, cap_marks, app->n_paths + 1, sizeof(*app->path_marks));
    app->paths[app->n_paths] = sy_xstrdup(path);
    app->path_marks[app->n_paths++] = mark;
}

static void parse_paths(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v)
{
    size_t cap = 0, cap_marks = 0;
    if (!v) {
        add_path(app, &cap, &cap_marks, "/", app->mark);
        return;
    }
    if (!sy_cfg_is_list(c, v, "paths"))
        return;
    if (!sy_cfg_has_items(v)) {
        sy_cfg_report(c, v, "paths must have at least one entry (leave the key out for '/')");
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        const struct sy_ynode *n = sy_cfg_node_at(c, *it);
        const char *s = sy_cfg_string_value(c, n, "path");
        if (!s)
            continue;
        if (s[0] != '/') {
            sy_cfg_report(c, n, "bad path '%s': must start with '/'", sy_cfg_show(n).s);
            continue;
        }
        bool bad = false;
        for (const unsigned char *q = (const unsigned char *)s; *q && !bad; q++)
            bad = *q <= ' ' || *q == 0x7f;
        if (bad) {
            sy_cfg_report(c, n, "bad path '%s': spaces and control characters are not allowed",
                          sy_cfg_show(n).s);
            continue;
        }
        bool dup = false;
        for (size_t i = 0; i < app->n_paths && !dup; i++) {
            if (strcmp(app->paths[i], s) == 0) {
                sy_cfg_report(c, n, "duplicate path '%s' in app (first at line %d)",
                              sy_cfg_show(n).s, app->path_marks[i].line);
                dup = true;
            }
        }
        if (!dup)
            add_path(app, &cap, &cap_marks, s, sy_cfg_mark_of(n));
    }
}

static int cmp_weight(const void *a, const void *b)
{
    const struct sy_weight_spec *x = a, *y = b;
    return (x->cluster > y->cluster) - (x->cluster < y->cluster);
}

/* Returns true when every entry was valid (so that `stable` can be checked against them). */
static bool parse_weights(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "weights"))
        return false;
    if (!sy_cfg_has_pairs(v)) {
        sy_cfg_report(c, v, "weights must name at least one cluster");
        return false;
    }
    bool ok = true;
    size_t cap = 0;
    uint64_t sum = 0;
    struct sy_cfg_entry e = {.map = v};
    while (sy_cfg_next_entry(c, &e)) {
        struct sy_ynode *k = e.k, *pv = e.v;
        long cluster = sy_cfg_find_cluster(c, k);
        if (cluster < 0) {
            sy_cfg_report(c, k, "unknown cluster '%s'", sy_cfg_show(k).s);
            ok = false;
        }
        uint64_t w;
        if (!sy_cfg_parse_uint(pv, 100, &w)) {
            sy_cfg_report(c, pv, "weight must be an integer 0..100, got %s",
                          sy_cfg_show_value(pv).s);
            ok = false;
            continue;
        }
        if (cluster < 0)
            continue;
        sum += w;
        struct sy_weight_spec ws = {(size_t)cluster, (unsigned)w, sy_cfg_mark_of(k)};
        sy_xgrow((void **)&app->weights, &cap, app->n_weights + 1, sizeof(ws));
        app->weights[app->n_weights++] = ws;
    }
    ok = ok && !e.refused;
    /* Only when every entry was read: a weight of 120 is one error, not two. */
    if (ok && sum == 0) {
        sy_cfg_report(c, v, "all weights are zero");
        ok = false;
    }
    if (app->n_weights > 1)
        qsort(app->weights, app->n_weights, sizeof(*app->weights), cmp_weight);
    return ok;
}

static void parse_stable(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v,
                         bool weights_ok)
{
    if (!v) {
        if (app->n_weights > 0)
            app->stable = app->weights[0].cluster;
        return;
    }
    if (!sy_cfg_string_value(c, v, "stable"))
        return;
    long cluster = sy_cfg_find_cluster(c, v);
    if (cluster < 0) {
        sy_cfg_report(c, v, "unknown cluster '%s'", sy_cfg_show(v).s);
        return;
    }
    app->stable = (size_t)cluster;
    if (!weights_ok)
        return;
    for (size_t i = 0; i < app->n_weights; i++)
        if (app->weights[i].cluster == (size_t)cluster)
            return;
    sy_cfg_report(c, v, "stable cluster '%s' is not in weights", sy_cfg_show(v).s);
}

/* A cookie or header name: a token of at most `max` bytes. Returns a copy (lower-cased when
 * `lower`) or NULL after reporting. */
static char *token_name(struct ctx *c, const struct sy_ynode *v, const char *what, size_t max,
                        bool lower)
{
    const char *s = sy_cfg_string_value(c, v, what);
    if (!s)
        return NULL;
    size_t len = v->data.scalar.length;
    bool ok = len <= max;
    for (size_t i = 0; i < len && ok; i++)
        ok = sy_cfg_is_tchar((unsigned char)s[i]);
    if (!ok) {
        sy_cfg_report(
            c, v,
            "bad %s '%s': use letters, digits and !#$%%&'*+-.^_`|~ (an RFC 9110 token), at "
            "most %zu characters",
            what, sy_cfg_show(v).s, max);
        return NULL;
    }
    char *out = sy_xstrdup(s);
    for (char *q = out; lower && *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q + ('a' - 'A'));
    return out;
}

void sy_cfg_sticky_dispose(struct sy_sticky_spec *st)
{
    free(st->name);
    memset(st, 0, sizeof(*st));
}

void sy_cfg_force_dispose(struct sy_force_spec *f)
{
    free(f->header);
    free(f->cookie);
    if (f->secret) {
        explicit_bzero(f->secret, f->secret_len);
        free(f->secret);
    }
    memset(f, 0, sizeof(*f));
}

static void parse_max_age(struct ctx *c, struct sy_sticky_spec *st, const struct sy_ynode *k,
                          const struct sy_ynode *v, bool *bad)
{
    if (st->by != SY_STICKY_COOKIE) {
        if (st->by != SY_STICKY_NONE)
            sy_cfg_report(c, k, "max_age applies only to a sticky cookie");
        *bad = true;
        return;
    }
    unsigned s = 0;
    switch (sy_cfg_parse_seconds(v, SY_STICKY_MAX_AGE_MAX, &s)) {
    case DURATION_OK:
        break;
    case DURATION_SYNTAX:
        sy_cfg_report(c, v, "max_age must be a duration such as 3600s, 90m, 12h or 30d, got %s",
                      sy_cfg_show_value(v).s);
        *bad = true;
        return;
    case DURATION_TOO_LONG:
        sy_cfg_report(c, v, "max_age must be at most %ud, got %s", SY_STICKY_MAX_AGE_MAX / 86400,
                      sy_cfg_show_value(v).s);
        *bad = true;
        return;
    }
    if (s == 0) {
        sy_cfg_report(c, v, "max_age must be greater than 0");
        *bad = true;
        return;
    }
    st->max_age_s = s;
}

/* `sticky: {cookie: NAME, max_age: D} | {header: NAME} | {source_ip: true}`. */
static void parse_sticky(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "sticky"))
        return;
    struct sy_sticky_spec st;
    memset(&st, 0, sizeof(st));
    st.max_age_s = SY_STICKY_MAX_AGE_DEFAULT;
    st.mark = sy_cfg_mark_of(v);
    const struct sy_ynode *kind = NULL, *max_age = NULL, *max_age_key = NULL;
    bool bad = false;
    struct sy_cfg_entry e = {.map = v};
    while (sy_cfg_next_entry(c, &e)) {
        struct sy_ynode *k = e.k, *pv = e.v;
        const char *key = e.key;
        bool is_cookie = strcmp(key, "cookie") == 0, is_header = strcmp(key, "header") == 0;
        if (is_cookie || is_header || strcmp(key, "source_ip") == 0) {
            if (kind) {
                sy_cfg_report(c, k, "sticky takes only one of 'cookie', 'header' and 'source_ip'");
                bad = true;
                continue;
            }
            kind = k;
            if (is_cookie) {
                st.by = SY_STICKY_COOKIE;
                st.name = token_name(c, pv, "cookie name", SY_COOKIE_NAME_MAX, false);
                bad |= !st.name;
            } else if (is_header) {
                st.by = SY_STICKY_HEADER;
                st.name = token_name(c, pv, "header name", SY_HEADER_NAME_MAX, true);
                bad |= !st.name;
            } else {
                st.by = SY_STICKY_SOURCE_IP;
                if (!sy_cfg_is_scalar(pv) || pv->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    strcmp(sy_cfg_text(pv), "true") != 0) {
                    sy_cfg_report(c, pv,
                                  "source_ip must be true (leave sticky out for no key), got %s",
                                  sy_cfg_show_value(pv).s);
                    bad = true;
                }
            }
        } else if (strcmp(key, "max_age") == 0) {
            max_age_key = k;
            max_age = pv;
        } else {
            sy_cfg_report(c, k, "unknown key '%s' in sticky", sy_cfg_show(k).s);
            bad = true;
        }
    }
    bad |= e.refused;
    if (!kind) {
        sy_cfg_report(c, v, "sticky needs one of 'cookie', 'header' or 'source_ip'");
        bad = true;
    }
    if (max_age)
        parse_max_age(c, &st, max_age_key, max_age, &bad);
    if (bad) {
        sy_cfg_sticky_dispose(&st);
        return;
    }
    app->sticky = st;
}

/* `force: {header: NAME, cookie: NAME, secret: STRING}`; after `sticky:`, which it must not
 * share a name with (one value cannot be both a cluster and a key). */
static void parse_force(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "force"))
        return;
    struct sy_force_spec f;
    memset(&f, 0, sizeof(f));
    f.mark = sy_cfg_mark_of(v);
    const struct sy_ynode *header = NULL, *cookie = NULL;
    bool bad = false;
    struct sy_cfg_entry e = {.map = v};
    while (sy_cfg_next_entry(c, &e)) {
        struct sy_ynode *k = e.k, *pv = e.v;
        const char *key = e.key;
        if (strcmp(key, "header") == 0) {
            header = pv;
            f.header = token_name(c, pv, "header name", SY_HEADER_NAME_MAX, true);
            bad |= !f.header;
        } else if (strcmp(key, "cookie") == 0) {
            cookie = pv;
            f.cookie = token_name(c, pv, "cookie name", SY_COOKIE_NAME_MAX, false);
            bad |= !f.cookie;
        } else if (strcmp(key, "secret") == 0) {
            /* The secret itself is never quoted back, only its length. */
            const char *s = sy_cfg_string_value(c, pv, "secret");
            if (!s) {
                bad = true;
            } else if (pv->data.scalar.length < SY_FORCE_SECRET_MIN) {
                sy_cfg_report(c, pv, "secret must be at least %d bytes, got %zu",
                              SY_FORCE_SECRET_MIN, (size_t)pv->data.scalar.length);
                bad = true;
            } else {
                f.secret = sy_xstrdup(s);
                f.secret_len = pv->data.scalar.length;
            }
        } else {
            sy_cfg_report(c, k, "unknown key '%s' in force", sy_cfg_show(k).s);
            bad = true;
        }
    }
    bad |= e.refused;
    if (!header && !cookie) {
        sy_cfg_report(c, v, "force needs 'header' or 'cookie' (or both)");
        bad = true;
    }
    const struct sy_sticky_spec *st = &app->sticky;
    if (f.cookie && st->by == SY_STICKY_COOKIE && strcmp(f.cookie, st->name) == 0) {
        sy_cfg_report(c, cookie, "force cookie '%s' is also the sticky cookie",
                      sy_cfg_show(cookie).s);
        bad = true;
    }
    if (f.header && st->by == SY_STICKY_HEADER && strcmp(f.header, st->name) == 0) {
        sy_cfg_report(c, header, "force header '%s' is also the sticky header",
                      sy_cfg_show(header).s);
        bad = true;
    }
    if (bad) {
        sy_cfg_force_dispose(&f);
        return;
    }
    app->force = f;
}

static bool is_app_name(const char *s, size_t len)
{
    if (len == 0 || len > MAX_APP_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || !sy_cfg_is_name_char(ch)))
            return false;
    }
    return true;
}

static uint64_t name_hash(const char *s)
{
    return sy_fnv1a(SY_FNV1A_INIT, s, strlen(s));
}

long sy_config_app_index(const struct sy_config *cfg, const char *name)
{
    if (!cfg->app_slots)
        return -1;
    for (size_t s = name_hash(name) & cfg->app_slots_mask; cfg->app_slots[s];
         s = (s + 1) & cfg->app_slots_mask) {
        size_t i = cfg->app_slots[s] - 1;
        if (strcmp(cfg->apps[i].name, name) == 0)
            return (long)i;
    }
    return -1;
}

/* Enters app `index` (named) in the name index, which stays at most half full. */
static void index_app(struct sy_config *cfg, size_t index, size_t *used)
{
    if (2 * (*used + 1) > (cfg->app_slots ? cfg->app_slots_mask + 1 : 0)) {
        size_t slots = cfg->app_slots ? 2 * (cfg->app_slots_mask + 1) : 64;
        size_t *v = sy_xcalloc(slots, sizeof(*v));
        for (size_t s = 0; cfg->app_slots && s <= cfg->app_slots_mask; s++) {
            if (!cfg->app_slots[s])
                continue;
            size_t k = name_hash(cfg->apps[cfg->app_slots[s] - 1].name) & (slots - 1);
            while (v[k])
                k = (k + 1) & (slots - 1);
            v[k] = cfg->app_slots[s];
        }
        free(cfg->app_slots);
        cfg->app_slots = v;
        cfg->app_slots_mask = slots - 1;
    }
    size_t k = name_hash(cfg->apps[index].name) & cfg->app_slots_mask;
    while (cfg->app_slots[k])
        k = (k + 1) & cfg->app_slots_mask;
    cfg->app_slots[k] = index + 1;
    (*used)++;
}

static void parse_app_name(struct ctx *c, size_t index, const struct sy_ynode *v)
{
    const char *s = sy_cfg_string_value(c, v, "app name");
    if (!s)
        return;
    if (!is_app_name(s, v->data.scalar.length)) {
        sy_cfg_report(
            c, v,
            "bad app name '%s': use letters, digits, '_', '.' and '-', starting with a letter "
            "or digit, at most %d characters",
            sy_cfg_show(v).s, MAX_APP_NAME);
        return;
    }
    long first = sy_config_app_index(c->cfg, s);
    if (first >= 0 && c->cfg->apps[first].source != c->dir_file) {
        const struct sy_app_spec *o = &c->cfg->apps[first];
        sy_cfg_report(c, v, "duplicate app name '%s' (first in %s:%d:%d)", sy_cfg_show(v).s,
                      sy_config_app_file(c->cfg, o), o->mark.line, o->mark.col);
        return;
    }
    if (first >= 0) {
        sy_cfg_report(c, v, "duplicate app name '%s' (first at line %d)", sy_cfg_show(v).s,
                      c->cfg->apps[first].mark.line);
        return;
    }
    c->cfg->apps[index].name = sy_xstrdup(s);
    index_app(c->cfg, index, &c->n_app_names);
}

/* `drain_after: DURATION` of an app. */
static void parse_drain_after(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v)
{
    sy_cfg_duration_ms(c, v, "drain_after", "30s, 500ms, 2m or 1h",
                       " (leave it out to keep connections)", &app->drain_after_ms);
}

/* `maintenance_retry_after: DURATION` of an app: whole seconds (it becomes Retry-After). */
static void parse_maint_retry_after(struct ctx *c, struct sy_app_spec *app,
                                    const struct sy_ynode *v)
{
    unsigned ms = 0;
    enum duration_result r = sy_cfg_parse_duration(v, &ms);
    if (r != DURATION_OK || ms == 0 || ms % 1000 != 0 || ms / 1000 > 86400) {
        sy_cfg_report(
            c, v, "maintenance_retry_after must be whole seconds 1s..24h (120s, 5m, 120), got %s",
            sy_cfg_show_value(v).s);
        return;
    }
    app->maintenance_retry_after = ms / 1000;
}

/* `maintenance_page: FILE` of an app: read now, so that a missing or oversized page is this
 * file's error (limits come before apps: parse_root reads apps last). */
static void parse_maint_page(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v)
{
    const char *s = sy_cfg_string_value(c, v, "maintenance_page");
    if (!s)
        return;
    char *path = sy_cfg_file_path(c, s);
    size_t max = c->cfg->limits.maintenance_page_bytes;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd == -1 || fstat(fd, &st) == -1) {
        sy_cfg_report(c, v, "cannot read maintenance_page '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        sy_cfg_report(c, v, "maintenance_page '%s' is not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        sy_cfg_report(
            c, v,
            "maintenance_page '%s' is %lld bytes, more than limits.maintenance_page_bytes "
            "(%zu)",
            path, (long long)st.st_size, max);
        goto out;
    }
    char *buf = sy_xmalloc(max + 1);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, max + 1 - len);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            sy_cfg_report(c, v, "cannot read maintenance_page '%s': %s", path, strerror(errno));
            free(buf);
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            sy_cfg_report(c, v,
                          "maintenance_page '%s' is more than limits.maintenance_page_bytes (%zu)",
                          path, max);
            free(buf);
            goto out;
        }
    }
    free(app->maintenance_page);
    app->maintenance_page = buf;
    app->maintenance_page_len = len;
out:
    if (fd != -1)
        close(fd);
    free(path);
}

/* `mode: weighted | exclusive` and `force_while_exclusive: BOOL` of an app. An exclusive app
 * puts 100 on one cluster and 0 on the others: it runs in one place at a time. */
static void parse_app_mode(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *mode,
                           const struct sy_ynode *fwe, bool weights_ok)
{
    if (mode) {
        const char *s = sy_cfg_is_scalar(mode) && mode->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                            ? sy_cfg_text(mode)
                            : "";
        if (strcmp(s, "exclusive") == 0)
            app->mode = SY_APP_EXCLUSIVE;
        else if (strcmp(s, "weighted") == 0)
            app->mode = SY_APP_WEIGHTED;
        else
            sy_cfg_report(c, mode, "mode must be weighted or exclusive, got %s",
                          sy_cfg_show_value(mode).s);
    }
    if (fwe)
        sy_cfg_bool(c, fwe, "force_while_exclusive", &app->force_while_exclusive);
    if (app->mode != SY_APP_EXCLUSIVE || !weights_ok)
        return;
    size_t live = 0;
    for (size_t i = 0; i < app->n_weights; i++) {
        unsigned w = app->weights[i].weight;
        if (w != 0 && w != 100) {
            sy_diags_add(c->diags, c->file, app->weights[i].mark.line, app->weights[i].mark.col,
                         "an exclusive app's weights must be 100 on one cluster and 0 on the "
                         "others, got %u",
                         w);
            return;
        }
        live += w == 100;
    }
    if (live != 1)
        sy_diags_add(c->diags, c->file, app->weights_mark.line, app->weights_mark.col,
                     "an exclusive app's weights must be 100 on one cluster and 0 on the "
                     "others");
}

/* A guard duration: written with its unit ("30s", "800ms"), since a bare 30 reads as seconds
 * to one person and milliseconds to the next. False after reporting. */
static bool guard_duration(struct ctx *c, const struct sy_ynode *v, const char *key,
                           unsigned min_ms, unsigned max_ms, bool whole_seconds, unsigned *out)
{
    const char *s = sy_cfg_is_scalar(v) ? sy_cfg_text(v) : "";
    size_t len = sy_cfg_is_scalar(v) ? v->data.scalar.length : 0;
    unsigned ms = 0;
    if (len == 0 || !(s[len - 1] >= 'a' && s[len - 1] <= 'z') ||
        sy_cfg_parse_duration(v, &ms) != DURATION_OK) {
        sy_cfg_report(c, v,
                      "guard.%s must be a duration with its unit (such as 30s, 800ms, 2m), got %s",
                      key, sy_cfg_show_value(v).s);
        return false;
    }
    if (ms < min_ms || ms > max_ms || (whole_seconds && ms % 1000 != 0)) {
        sy_cfg_report(c, v, "guard.%s must be %s%ums..%ums, got %s", key,
                      whole_seconds ? "whole seconds " : "", min_ms, max_ms,
                      sy_cfg_show_value(v).s);
        return false;
    }
    *out = ms;
    return true;
}

/* A plain number from `min` to `max` (written as 0.05 or 2); false after reporting. */
static bool guard_number(struct ctx *c, const struct sy_ynode *v, const char *key, double min,
                         double max, const char *what, double *out)
{
    char *end = NULL;
    double d = sy_cfg_is_scalar(v) && v->data.scalar.length &&
                       v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                   ? strtod(sy_cfg_text(v), &end)
                   : -1;
    if (!end || *end != '\0' || !(d >= min && d <= max)) {
        sy_cfg_report(c, v, "guard.%s must be %s, got %s", key, what, sy_cfg_show_value(v).s);
        return false;
    }
    *out = d;
    return true;
}

/* `guard: off | on | {max_5xx_ratio, max_p99, relative_to_stable, window, min_requests}` of an
 * app (after its weights and mode: a guard needs a cluster besides the stable one to watch,
 * and an exclusive app moves only through its switch). */
static void parse_guard(struct ctx *c, struct sy_app_spec *app, const struct sy_ynode *v,
                        bool weights_ok)
{
    struct sy_guard_spec *g = &app->guard;
    *g = (struct sy_guard_spec){
        .max_5xx_ratio = SY_GUARD_MAX_5XX_DEFAULT,
        .window_ms = SY_GUARD_WINDOW_DEFAULT_MS,
        .min_requests = SY_GUARD_MIN_REQUESTS_DEFAULT,
        .mark = sy_cfg_mark_of(v),
        .set = true,
    };
    if (sy_cfg_is_scalar(v) && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (strcmp(sy_cfg_text(v), "off") == 0 || strcmp(sy_cfg_text(v), "on") == 0)) {
        g->on = strcmp(sy_cfg_text(v), "on") == 0;
    } else if (sy_cfg_is_scalar(v) || !sy_cfg_is_mapping(c, v, "guard")) {
        if (sy_cfg_is_scalar(v))
            sy_cfg_report(c, v,
                          "guard must be off, on or a mapping {max_5xx_ratio, max_p99, "
                          "relative_to_stable, window, min_requests}, got %s",
                          sy_cfg_show_value(v).s);
        return;
    } else {
        g->on = true;
        const struct sy_ynode *ratio = NULL, *p99 = NULL, *rel = NULL, *window = NULL,
                              *minreq = NULL;
        const struct sy_cfg_slot slots[] = {
            {"max_5xx_ratio", &ratio}, {"max_p99", &p99},         {"relative_to_stable", &rel},
            {"window", &window},       {"min_requests", &minreq},
        };
        sy_cfg_collect(c, v, slots, sizeof(slots) / sizeof(slots[0]), "guard");
        if (ratio)
            guard_number(c, ratio, "max_5xx_ratio", 0, 1, "a number from 0 to 1 (0.05 is 5%)",
                         &g->max_5xx_ratio);
        if (p99)
            guard_duration(c, p99, "max_p99", 1, 60000, false, &g->max_p99_ms);
        if (rel &&
            guard_number(c, rel, "relative_to_stable", 0, SY_GUARD_RELATIVE_MAX,
                         "0 (off) or a factor from 1 to 1000", &g->relative_to_stable) &&
            g->relative_to_stable > 0 && g->relative_to_stable < 1)
            sy_cfg_report(c, rel,
                          "guard.relative_to_stable must be 0 (off) or a factor from 1 to 1000 "
                          "(below 1 a cluster as good as the stable one breaks it), got %s",
                          sy_cfg_show_value(rel).s);
        if (window)
            guard_duration(c, window, "window", 1000, SY_GUARD_WINDOW_MAX_MS, true, &g->window_ms);
        uint64_t n = 0;
        if (minreq && (!sy_cfg_parse_uint(minreq, SY_GUARD_MIN_REQUESTS_MAX, &n) || n == 0))
            sy_cfg_report(c, minreq, "guard.min_requests must be an integer 1..%u, got %s",
                          SY_GUARD_MIN_REQUESTS_MAX, sy_cfg_show_value(minreq).s);
        else if (minreq)
            g->min_requests = (unsigned)n;
    }
    if (!g->on || !weights_ok)
        return;
    if (app->n_weights < 2)
        sy_cfg_report(c, v,
                      "guard needs a cluster besides the stable one to watch: this app's "
                      "weights name one cluster (write `guard: off`, or leave it out)");
    else if (app->mode == SY_APP_EXCLUSIVE)
        sy_cfg_report(c, v,
                      "guard is not available on an exclusive app (it moves only through its "
                      "switch): leave it out");
}

static void parse_app(struct ctx *c, const struct sy_ynode *item)
{
    if (!sy_cfg_is_mapping(c, item, "app"))
        return;
    struct sy_config *cfg = c->cfg;
    sy_xgrow((void **)&cfg->apps, &c->cap_apps, cfg->n_apps + 1, sizeof(*cfg->apps));
    size_t index = cfg->n_apps++;
    struct sy_app_spec *app = &cfg->apps[index];
    memset(app, 0, sizeof(*app));
    app->mark = sy_cfg_mark_of(item);
    app->source = c->dir_file;

    const struct sy_ynode *name = NULL, *hosts = NULL, *paths = NULL, *stable = NULL,
                          *weights = NULL, *sticky = NULL, *force = NULL, *drain_after = NULL;
    const struct sy_ynode *maint_page = NULL, *maint_retry = NULL;
    const struct sy_ynode *mode = NULL, *force_while_exclusive = NULL, *guard = NULL;
    const struct sy_ynode *failover = NULL;
    const struct sy_cfg_slot slots[] = {
        {"failover", &failover},
        {"name", &name},
        {"hosts", &hosts},
        {"paths", &paths},
        {"stable", &stable},
        {"weights", &weights},
        {"sticky", &sticky},
        {"force", &force},
        {"drain_after", &drain_after},
        {"maintenance_page", &maint_page},
        {"maintenance_retry_after", &maint_retry},
        {"mode", &mode},
        {"force_while_exclusive", &force_while_exclusive},
        {"guard", &guard},
    };
    sy_cfg_collect(c, item, slots, sizeof(slots) / sizeof(slots[0]), "app");
    if (name)
        parse_app_name(c, index, name);
    else
        sy_cfg_report(c, item, "missing required key 'name' in app");
    if (hosts)
        parse_hosts(c, app, hosts);
    else
        sy_cfg_report(c, item, "missing required key 'hosts' in app");
    parse_paths(c, app, paths);
    bool weights_ok = false;
    if (weights)
        weights_ok = parse_weights(c, app, weights);
    else
        sy_cfg_report(c, item, "missing required key 'weights' in app");
    parse_stable(c, app, stable, weights_ok);
    if (sticky)
        parse_sticky(c, app, sticky);
    if (force)
        parse_force(c, app, force);
    if (drain_after)
        parse_drain_after(c, app, drain_after);
    app->maintenance_retry_after = SY_MAINT_RETRY_AFTER_DEFAULT;
    if (maint_retry)
        parse_maint_retry_after(c, app, maint_retry);
    if (maint_page)
        parse_maint_page(c, app, maint_page);
    if (weights)
        app->weights_mark = sy_cfg_mark_of(weights);
    parse_app_mode(c, app, mode, force_while_exclusive, weights_ok);
    if (guard)
        parse_guard(c, app, guard, weights_ok);
    app->failover = true;
    if (failover)
        sy_cfg_bool(c, failover, "failover", &app->failover);
}

void sy_cfg_parse_apps(struct ctx *c, const struct sy_ynode *v)
{
    if (!sy_cfg_is_list(c, v, "apps"))
        return;
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    sy_xgrow((void **)&c->cfg->apps, &c->cap_apps, c->cfg->n_apps + n, sizeof(*c->cfg->apps));
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++)
        parse_app(c, sy_cfg_node_at(c, *it));
}

/* A claim of `dup` on the pair `first` claimed, when either is written in an apps_dir file:
 * the diagnostic is in dup's file, and names first's file, line and column. */
static void claimed_elsewhere(struct ctx *c, const struct claim *first, const struct claim *dup)
{
    const struct sy_config *cfg = c->cfg;
    const struct sy_app_spec *owner = &cfg->apps[first->app];
    const char *file = sy_config_app_file(cfg, &cfg->apps[dup->app]);
    sy_diags_add(c->diags, file ? file : c->file, dup->mark.line, dup->mark.col,
                 "host '%.80s' with path '%.80s' is already claimed by app '%.64s' in %s:%d:%d",
                 dup->host, dup->path, owner->name ? owner->name : "(unnamed)",
                 sy_config_app_file(cfg, owner) ? sy_config_app_file(cfg, owner) : c->file,
                 first->mark.line, first->mark.col);
}

static uint64_t claim_hash(const struct claim *cl)
{
    return sy_fnv1a(sy_fnv1a(SY_FNV1A_INIT, cl->host, strlen(cl->host) + 1), cl->path,
                    strlen(cl->path));
}

/*
 * Two apps claiming one host+path would make routing depend on their order: refuse it. Claims
 * go into a hash set in file order, so the one already there is the earliest; a sort did this
 * before and cost a tenth of a 10,000-app reload.
 */
void sy_cfg_check_claims(struct ctx *c)
{
    const struct sy_config *cfg = c->cfg;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_apps; i++)
        n += cfg->apps[i].n_hosts * cfg->apps[i].n_paths;
    if (n < 2)
        return;
    struct claim *v = sy_xmalloc(n * sizeof(*v));
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    size_t *set = sy_xcalloc(slots, sizeof(*set)); /* claim index + 1; 0 = empty */
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const struct sy_app_spec *app = &cfg->apps[i];
        for (size_t h = 0; h < app->n_hosts; h++)
            for (size_t p = 0; p < app->n_paths; p++, k++) {
                v[k] = (struct claim){.host = app->hosts[h],
                                      .path = app->paths[p],
                                      .app = i,
                                      .mark = app->host_marks[h]};
                size_t s = claim_hash(&v[k]) & (slots - 1);
                for (; set[s]; s = (s + 1) & (slots - 1)) {
                    const struct claim *o = &v[set[s] - 1];
                    if (strcmp(o->host, v[k].host) == 0 && strcmp(o->path, v[k].path) == 0)
                        break;
                }
                if (!set[s]) {
                    set[s] = k + 1;
                    continue;
                }
                /* Within an app a pair is unique (its hosts and its paths are), so this is
                 * another app's claim. */
                const struct sy_app_spec *owner = &cfg->apps[v[set[s] - 1].app];
                if (owner->source || app->source)
                    claimed_elsewhere(c, &v[set[s] - 1], &v[k]);
                else if (owner->name)
                    sy_diags_add(c->diags, c->file, v[k].mark.line, v[k].mark.col,
                                 "host '%.80s' with path '%.80s' is already claimed by app "
                                 "'%.64s' at line %d",
                                 v[k].host, v[k].path, owner->name, owner->mark.line);
                else
                    sy_diags_add(c->diags, c->file, v[k].mark.line, v[k].mark.col,
                                 "host '%.80s' with path '%.80s' is already claimed by the app at "
                                 "line %d",
                                 v[k].host, v[k].path, owner->mark.line);
            }
    }
    free(set);
    free(v);
}
