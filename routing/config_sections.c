/* SPDX-License-Identifier: MIT */
/* The smaller top-level sections of the routing file, each a table of keys or a short schema:
 * limits:, timeouts:, admin: (socket, uids and gids, the HTTP listener), exclusive: (with its
 * readiness URL) and access_log:. */
#include "switchyard/config.h"

#include <arpa/inet.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config_internal.h"
#include "yaml_doc.h"

struct limit_key {
    const char *key;
    size_t off;
    bool wide; /* a uint64_t field; otherwise size_t */
    uint64_t min, max;
    uint64_t def; /* the default, in the README's table too */
};

static const struct limit_key limit_keys[] = {
    {"max_request_line", offsetof(struct sy_limits, max_request_line), false, 1, UINT32_MAX, 8192},
    {"max_header_bytes", offsetof(struct sy_limits, max_header_bytes), false, 1, UINT32_MAX, 32768},
    {"max_headers", offsetof(struct sy_limits, max_headers), false, 1, UINT32_MAX, 100},
    {"max_body_bytes", offsetof(struct sy_limits, max_body_bytes), true, 0, UINT64_MAX, 0},
    {"max_connections", offsetof(struct sy_limits, max_connections), false, 1, UINT32_MAX, 10000},
    {"max_upstream_connections", offsetof(struct sy_limits, max_upstream_connections), false, 1,
     UINT32_MAX, 10000},
    {"buffer_bytes", offsetof(struct sy_limits, buffer_bytes), false, 1, UINT32_MAX, 65536},
    {"upstream_keepalive", offsetof(struct sy_limits, upstream_keepalive), false, 0, UINT32_MAX,
     SY_KEEPALIVE_AUTO},
    {"h2_max_streams", offsetof(struct sy_limits, h2_max_streams), false, 1, UINT32_MAX, 100},
    {"h2_reset_rate", offsetof(struct sy_limits, h2_reset_rate), false, 1, UINT32_MAX, 50},
    {"h2_max_continuations", offsetof(struct sy_limits, h2_max_continuations), false, 0, 1000, 8},
    {"reserved_fds", offsetof(struct sy_limits, reserved_fds), false, 0, 1000000, 32},
    {"log_client_lines", offsetof(struct sy_limits, log_client_lines), false, 0, 1000000,
     SY_LOG_CLIENT_RATE_DEFAULT},
    {"h2_early_resets", offsetof(struct sy_limits, h2_early_resets), false, 1, UINT32_MAX, 100},
    {"maintenance_page_bytes", offsetof(struct sy_limits, maintenance_page_bytes), false, 1,
     16u << 20, SY_MAINT_PAGE_BYTES_DEFAULT},
    {"apps_dir_files", offsetof(struct sy_limits, apps_dir_files), false, 1, 1000000,
     SY_APPS_DIR_FILES_DEFAULT},
};

static void store_limit(struct sy_limits *lim, const struct limit_key *lk, uint64_t n)
{
    char *field = (char *)lim + lk->off;
    if (lk->wide) {
        memcpy(field, &n, sizeof(n));
    } else {
        size_t z = (size_t)n;
        memcpy(field, &z, sizeof(z));
    }
}

/* One key of `limits:`, `entry` its row of limit_keys. */
static void parse_limit(struct ctx *c, const void *entry, const struct sy_ynode *pv)
{
    const struct limit_key *lk = entry;
    if (lk->off == offsetof(struct sy_limits, upstream_keepalive) && sy_cfg_is_scalar(pv) &&
        strcmp(sy_cfg_text(pv), "auto") == 0) {
        c->cfg->limits.upstream_keepalive = SY_KEEPALIVE_AUTO;
        return;
    }
    uint64_t n;
    if (!sy_cfg_parse_uint(pv, lk->max, &n) || n < lk->min) {
        if (lk->off == offsetof(struct sy_limits, upstream_keepalive))
            sy_cfg_report(c, pv, "upstream_keepalive must be auto or an integer 0..%llu, got %s",
                          (unsigned long long)lk->max, sy_cfg_show_value(pv).s);
        else if (lk->max == UINT64_MAX)
            sy_cfg_report(c, pv, "%s must be an integer >= %llu, got %s", lk->key,
                          (unsigned long long)lk->min, sy_cfg_show_value(pv).s);
        else
            sy_cfg_report(c, pv, "%s must be an integer %llu..%llu, got %s", lk->key,
                          (unsigned long long)lk->min, (unsigned long long)lk->max,
                          sy_cfg_show_value(pv).s);
        return;
    }
    store_limit(&c->cfg->limits, lk, n);
}

void sy_cfg_parse_limits(struct ctx *c, const struct sy_ynode *v)
{
    if (sy_cfg_is_mapping(c, v, "limits"))
        sy_cfg_each_key(c, v, "limits", limit_keys, sizeof(limit_keys) / sizeof(limit_keys[0]),
                        sizeof(limit_keys[0]), parse_limit);
}

struct timeout_key {
    const char *key;
    size_t off;
    unsigned def; /* the default in milliseconds */
};

static const struct timeout_key timeout_keys[] = {
    {"client_header", offsetof(struct sy_timeouts, client_header_ms), 10000},
    {"client_idle", offsetof(struct sy_timeouts, client_idle_ms), 60000},
    {"client_body", offsetof(struct sy_timeouts, client_body_ms), 60000},
    {"client_send", offsetof(struct sy_timeouts, client_send_ms), 60000},
    {"upstream_connect", offsetof(struct sy_timeouts, upstream_connect_ms), 5000},
    {"upstream_response", offsetof(struct sy_timeouts, upstream_response_ms), 60000},
    {"upstream_idle", offsetof(struct sy_timeouts, upstream_idle_ms), 30000},
    {"drain", offsetof(struct sy_timeouts, drain_ms), 10000},
    {"tunnel_idle", offsetof(struct sy_timeouts, tunnel_idle_ms), 3600000},
    {"linger", offsetof(struct sy_timeouts, linger_ms), 2000},
    {"tls_ticket_rotate", offsetof(struct sy_timeouts, tls_ticket_rotate_ms), 12 * 3600 * 1000},
    {"worker_stale", offsetof(struct sy_timeouts, worker_stale_ms), 5000},
};

/* One key of `timeouts:`, `entry` its row of timeout_keys. */
static void parse_timeout(struct ctx *c, const void *entry, const struct sy_ynode *pv)
{
    const struct timeout_key *tk = entry;
    unsigned ms = 0;
    if (!sy_cfg_duration_ms(c, pv, tk->key, DURATION_EXAMPLES, "", &ms))
        return;
    if (tk->off == offsetof(struct sy_timeouts, tls_ticket_rotate_ms) && ms < 1000) {
        /* A ticket opens for 2 to 3 rotations: below a second it is no resumption at all. */
        sy_cfg_report(c, pv, "%s must be at least 1s, got %s", tk->key, sy_cfg_show_value(pv).s);
        return;
    }
    memcpy((char *)&c->cfg->timeouts + tk->off, &ms, sizeof(ms));
}

void sy_cfg_parse_timeouts(struct ctx *c, const struct sy_ynode *v)
{
    if (sy_cfg_is_mapping(c, v, "timeouts"))
        sy_cfg_each_key(c, v, "timeouts", timeout_keys,
                        sizeof(timeout_keys) / sizeof(timeout_keys[0]), sizeof(timeout_keys[0]),
                        parse_timeout);
}

void sy_config_defaults(struct sy_limits *lim, struct sy_timeouts *to)
{
    for (size_t i = 0; lim && i < sizeof(limit_keys) / sizeof(limit_keys[0]); i++)
        store_limit(lim, &limit_keys[i], limit_keys[i].def);
    for (size_t i = 0; to && i < sizeof(timeout_keys) / sizeof(timeout_keys[0]); i++)
        memcpy((char *)to + timeout_keys[i].off, &timeout_keys[i].def, sizeof(unsigned));
}

/* One entry of admin.allow_uids, allow_gids, allow_read_uids or allow_read_gids (`what`): a
 * number, or a user or group name looked up now (like a cluster's host name, it is resolved
 * when the file is loaded). */
static bool parse_id(struct ctx *c, const struct sy_ynode *n, const char *what, bool group,
                     uint32_t *out)
{
    uint64_t v;
    if (sy_cfg_parse_uint(n, UINT32_MAX - 1, &v)) {
        *out = (uint32_t)v;
        return true;
    }
    const char *s = sy_cfg_string_value(c, n, group ? "a group" : "a user");
    if (!s)
        return false;
    char buf[4096];
    int rc;
    if (group) {
        struct group gr, *res = NULL;
        rc = getgrnam_r(s, &gr, buf, sizeof(buf), &res);
        if (rc == 0 && res) {
            *out = (uint32_t)res->gr_gid;
            return true;
        }
    } else {
        struct passwd pw, *res = NULL;
        rc = getpwnam_r(s, &pw, buf, sizeof(buf), &res);
        if (rc == 0 && res) {
            *out = (uint32_t)res->pw_uid;
            return true;
        }
    }
    if (rc != 0)
        sy_cfg_report(c, n, "%s: cannot look up '%s': %s", what, sy_cfg_show(n).s, strerror(rc));
    else
        sy_cfg_report(c, n, "%s: no %s named '%s'", what, group ? "group" : "user",
                      sy_cfg_show(n).s);
    return false;
}

/* A list of ids into a new array (*out, *n_out): uid_t and gid_t are both 32-bit ids. A key
 * given twice keeps its last list. */
static void parse_ids(struct ctx *c, const struct sy_ynode *v, const char *what, bool group,
                      uint32_t **out, size_t *n_out)
{
    if (!sy_cfg_is_list(c, v, what))
        return;
    size_t n = 0;
    uint32_t *ids = NULL;
    size_t cap = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        const struct sy_ynode *item = sy_cfg_node_at(c, *it);
        uint32_t id;
        if (n == MAX_ALLOW) {
            sy_cfg_report(c, item, "%s has more than %d entries", what, MAX_ALLOW);
            break;
        }
        if (!parse_id(c, item, what, group, &id))
            continue;
        sy_xgrow((void **)&ids, &cap, n + 1, sizeof(*ids));
        ids[n++] = id;
    }
    free(*out);
    *out = sy_xcalloc(n ? n : 1, sizeof(**out));
    if (n)
        memcpy(*out, ids, n * sizeof(*ids));
    *n_out = n;
    free(ids);
}

/* Whether `sa` is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z). */
static bool is_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->ss_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a))
        return true;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}

/* `admin.http: ADDRESS`: the read-only HTTP listener. */
static void parse_admin_http(struct ctx *c, const struct sy_ynode *v)
{
    struct sy_admin_spec *a = &c->cfg->admin;
    const char *s = sy_cfg_string_value(c, v, "admin.http");
    if (!s)
        return;
    const char *why = NULL;
    if (sy_parse_hostport(s, false, &a->http_addr, &a->http_addrlen, &why) != SY_OK) {
        sy_cfg_report(c, v, "bad admin.http address '%s': %s", sy_cfg_show(v).s, why);
        return;
    }
    free(a->http);
    a->http = sy_xstrdup(s);
}

/* `admin: {socket: PATH, allow_uids: [..], allow_gids: [..], allow_read_uids: [..],
 * allow_read_gids: [..], http: ADDRESS, http_allow: [CIDR, ..]}`. */
void sy_cfg_parse_admin(struct ctx *c, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "admin"))
        return;
    struct sy_admin_spec *a = &c->cfg->admin;
    a->mark = sy_cfg_mark_of(v);
    const struct sy_ynode *http = NULL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *key;
        if (!sy_cfg_map_entry(c, v, p, &k, &pv, &key))
            continue;
        if (strcmp(key, "socket") == 0)
            a->socket = sy_cfg_path_value(c, pv, "admin.socket", SY_ADMIN_SOCKET_MAX);
        else if (strcmp(key, "allow_uids") == 0)
            parse_ids(c, pv, "allow_uids", false, &a->allow_uids, &a->n_allow_uids);
        else if (strcmp(key, "allow_gids") == 0)
            parse_ids(c, pv, "allow_gids", true, &a->allow_gids, &a->n_allow_gids);
        else if (strcmp(key, "allow_read_uids") == 0)
            parse_ids(c, pv, "allow_read_uids", false, &a->allow_read_uids, &a->n_allow_read_uids);
        else if (strcmp(key, "allow_read_gids") == 0)
            parse_ids(c, pv, "allow_read_gids", true, &a->allow_read_gids, &a->n_allow_read_gids);
        else if (strcmp(key, "http") == 0) {
            parse_admin_http(c, pv);
            http = pv;
        } else if (strcmp(key, "http_allow") == 0) {
            sy_cfg_parse_trusted(c, pv, &a->http_allow, &a->n_http_allow);
            a->has_http_allow = true;
        } else
            sy_cfg_report(c, k, "unknown key '%s' in admin", sy_cfg_show(k).s);
    }
    /* Metrics and status tell a lot about the traffic: off the loopback, say who may ask. */
    if (a->http && !is_loopback(&a->http_addr) && !a->has_http_allow)
        sy_cfg_report(c, http,
                      "admin.http '%s' is not a loopback address: list who may use it in "
                      "admin.http_allow (CIDR blocks)",
                      a->http);
}

void sy_config_exclusive_defaults(struct sy_exclusive_spec *ex)
{
    memset(ex, 0, sizeof(*ex));
    ex->hold_ms = SY_EXCLUSIVE_HOLD_DEFAULT_MS;
    ex->drain_ms = SY_EXCLUSIVE_DRAIN_DEFAULT_MS;
    ex->max_held = SY_EXCLUSIVE_MAX_HELD_DEFAULT;
    ex->ready_expect = SY_EXCLUSIVE_READY_EXPECT;
    ex->ready_timeout_ms = SY_EXCLUSIVE_READY_TIMEOUT_MS;
}

/* A duration of `exclusive:` greater than 0; false after reporting. */
static bool exclusive_duration(struct ctx *c, const struct sy_ynode *v, const char *key,
                               unsigned *out)
{
    return sy_cfg_duration_ms(c, v, key, DURATION_EXAMPLES, "", out);
}

/* `url: http://HOST:PORT/PATH`: a numeric address (the control thread polls it without
 * resolving names). */
static void parse_ready_url(struct ctx *c, struct sy_exclusive_spec *ex, const struct sy_ynode *v)
{
    const char *s = sy_cfg_string_value(c, v, "ready.url");
    if (!s)
        return;
    const char *why = NULL;
    size_t len = strlen(s);
    if (len > SY_EXCLUSIVE_READY_URL_MAX || strncmp(s, "http://", 7) != 0) {
        why = "want http://HOST:PORT/PATH";
    } else {
        const char *hp = s + 7, *slash = strchr(hp, '/');
        size_t hlen = slash ? (size_t)(slash - hp) : strlen(hp);
        char host[SY_EXCLUSIVE_READY_URL_MAX + 1];
        memcpy(host, hp, hlen);
        host[hlen] = '\0';
        struct sockaddr_storage ss;
        socklen_t sl;
        if (sy_parse_hostport(host, false, &ss, &sl, &why) == 0) {
            char *colon = strrchr(host, ':');
            *colon = '\0';
            char *h = host;
            if (h[0] == '[') {
                h++;
                h[strlen(h) - 1] = '\0';
            }
            free(ex->ready_url);
            free(ex->ready_host);
            free(ex->ready_path);
            ex->ready_url = sy_xstrdup(s);
            ex->ready_host = sy_xstrdup(h);
            ex->ready_port = (unsigned)strtoul(colon + 1, NULL, 10);
            ex->ready_path = sy_xstrdup(slash ? slash : "/");
            return;
        }
    }
    sy_cfg_report(c, v, "bad ready.url %s: %s", sy_cfg_show_value(v).s, why);
}

static void parse_exclusive_ready(struct ctx *c, struct sy_exclusive_spec *ex,
                                  const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "exclusive.ready"))
        return;
    bool has_url = false;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *key;
        if (!sy_cfg_map_entry(c, v, p, &k, &pv, &key))
            continue;
        if (strcmp(key, "url") == 0) {
            has_url = true;
            parse_ready_url(c, ex, pv);
        } else if (strcmp(key, "expect") == 0) {
            uint64_t n;
            if (!sy_cfg_parse_uint(pv, 599, &n) || n < 100)
                sy_cfg_report(c, pv, "expect must be an HTTP status 100..599, got %s",
                              sy_cfg_show_value(pv).s);
            else
                ex->ready_expect = (int)n;
        } else if (strcmp(key, "timeout") == 0) {
            exclusive_duration(c, pv, "ready.timeout", &ex->ready_timeout_ms);
        } else {
            sy_cfg_report(c, k, "unknown key '%s' in exclusive.ready", sy_cfg_show(k).s);
        }
    }
    if (!has_url)
        sy_cfg_report(c, v, "missing required key 'url' in exclusive.ready");
}

/* `exclusive: { hold, max_held, drain, ready: { url, expect, timeout } }`. */
void sy_cfg_parse_exclusive(struct ctx *c, const struct sy_ynode *v)
{
    struct sy_exclusive_spec *ex = &c->cfg->exclusive;
    if (!sy_cfg_is_mapping(c, v, "exclusive"))
        return;
    ex->mark = sy_cfg_mark_of(v);
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *key;
        if (!sy_cfg_map_entry(c, v, p, &k, &pv, &key))
            continue;
        if (strcmp(key, "hold") == 0) {
            exclusive_duration(c, pv, "hold", &ex->hold_ms);
        } else if (strcmp(key, "drain") == 0) {
            exclusive_duration(c, pv, "drain", &ex->drain_ms);
        } else if (strcmp(key, "max_held") == 0) {
            uint64_t n;
            if (!sy_cfg_parse_uint(pv, 1000000, &n) || n < 1)
                sy_cfg_report(c, pv, "max_held must be an integer 1..1000000, got %s",
                              sy_cfg_show_value(pv).s);
            else
                ex->max_held = (size_t)n;
        } else if (strcmp(key, "ready") == 0) {
            parse_exclusive_ready(c, ex, pv);
        } else {
            sy_cfg_report(c, k, "unknown key '%s' in exclusive", sy_cfg_show(k).s);
        }
    }
}

/* `access_log.buffer_bytes`: a plain integer, or one with a KiB / MiB suffix. */
static void parse_access_buffer(struct ctx *c, const struct sy_ynode *v, size_t *out)
{
    uint64_t n = 0, unit = 1;
    bool ok = sy_cfg_is_scalar(v);
    const char *s = ok ? sy_cfg_text(v) : "";
    size_t len = ok ? v->data.scalar.length : 0, digits = 0;
    for (; digits < len && s[digits] >= '0' && s[digits] <= '9' && n < (1ull << 40); digits++)
        n = n * 10 + (uint64_t)(s[digits] - '0');
    if (strcmp(s + digits, "KiB") == 0)
        unit = 1024;
    else if (strcmp(s + digits, "MiB") == 0)
        unit = 1024 * 1024;
    else if (s[digits] != '\0')
        ok = false;
    n *= unit;
    if (!ok || digits == 0 || n < SY_ACCESS_LOG_BUFFER_MIN || n > SY_ACCESS_LOG_BUFFER_MAX) {
        sy_cfg_report(
            c, v,
            "access_log.buffer_bytes must be %u..%u bytes (a number, or with KiB or MiB), "
            "got %s",
            SY_ACCESS_LOG_BUFFER_MIN, SY_ACCESS_LOG_BUFFER_MAX, sy_cfg_show_value(v).s);
        return;
    }
    *out = (size_t)n;
}

/* `access_log.sample`: a number from 0 to 1. */
static void parse_access_sample(struct ctx *c, const struct sy_ynode *v, double *out)
{
    char *end = NULL;
    double d = sy_cfg_is_scalar(v) && v->data.scalar.length ? strtod(sy_cfg_text(v), &end) : -1;
    if (!end || *end != '\0' || !(d >= 0 && d <= 1)) {
        sy_cfg_report(c, v, "access_log.sample must be a number from 0 to 1, got %s",
                      sy_cfg_show_value(v).s);
        return;
    }
    *out = d;
}

/* `access_log: {path: stdout | FILE, sample: 1.0, buffer_bytes: 1MiB}`. */
void sy_cfg_parse_access_log(struct ctx *c, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "access_log"))
        return;
    struct sy_access_log_spec *a = &c->cfg->access_log;
    bool has_path = false;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *key;
        if (!sy_cfg_map_entry(c, v, p, &k, &pv, &key))
            continue;
        if (strcmp(key, "path") == 0) {
            has_path = true;
            const char *s = sy_cfg_string_value(c, pv, "access_log.path");
            if (s && strcmp(s, "stdout") == 0)
                a->path = sy_xstrdup(s);
            else if (s)
                a->path = sy_cfg_path_value(c, pv, "access_log.path", PATH_MAX - 1);
        } else if (strcmp(key, "sample") == 0) {
            parse_access_sample(c, pv, &a->sample);
        } else if (strcmp(key, "buffer_bytes") == 0) {
            parse_access_buffer(c, pv, &a->buffer_bytes);
        } else {
            sy_cfg_report(c, k, "unknown key '%s' in access_log", sy_cfg_show(k).s);
        }
    }
    if (!has_path)
        sy_cfg_report(c, v, "access_log needs a path (stdout or a file)");
}

void sy_config_shutdown_defaults(struct sy_shutdown_spec *sd)
{
    sd->delay_ms = SY_SHUTDOWN_DELAY_DEFAULT_MS;
    sd->grace_ms = SY_SHUTDOWN_GRACE_DEFAULT_MS;
}

/* `shutdown: {delay: 5s, grace: 30s}`. The delay may be 0 (stop accepting at once); the grace
 * may not (nothing in flight could finish). Without `grace`, a `timeouts.drain` written in the
 * file (`timeouts` is parsed by then, whatever the order) is the grace: its older name. */
void sy_cfg_parse_shutdown(struct ctx *c, const struct sy_ynode *v, bool *grace_set)
{
    struct sy_shutdown_spec *sd = &c->cfg->shutdown;
    if (!sy_cfg_is_mapping(c, v, "shutdown"))
        return;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *key;
        if (!sy_cfg_map_entry(c, v, p, &k, &pv, &key))
            continue;
        bool grace = strcmp(key, "grace") == 0;
        if (!grace && strcmp(key, "delay") != 0) {
            sy_cfg_report(c, k, "unknown key '%s' in shutdown", sy_cfg_show(k).s);
            continue;
        }
        /* The delay may be 0, the grace may not. */
        unsigned ms = 0;
        if (!sy_cfg_duration_ms(c, pv, key, DURATION_EXAMPLES, grace ? "" : NULL, &ms))
            continue;
        if (grace) {
            sd->grace_ms = ms;
            *grace_set = true;
        } else {
            sd->delay_ms = ms;
        }
    }
}
