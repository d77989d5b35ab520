/* SPDX-License-Identifier: MIT */
/* What the files of the routing file loader share (config.c and config_*.c): the walk's
 * context, its limits, and the helpers of more than one file, named sy_cfg_*. Private to
 * routing/. */
#ifndef SY_ROUTING_CONFIG_INTERNAL_H
#define SY_ROUTING_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "switchyard/config.h"

#include "yaml_doc.h"

/* A routing table is small; anything this large is a mistake, not a config. */
#define MAX_FILE_BYTES (16u << 20)
#define MAX_WORKERS    1024
#define MAX_NAME       63
#define MAX_APP_NAME   255
#define MAX_HOST       253
#define MAX_ALLOW      256 /* admin.allow_uids / allow_gids (and allow_read_*) entries */

/* Whether sy_parse_hostport may resolve names (sy_config_set_resolve). */
extern bool sy_cfg_resolve_names;

struct ctx {
    const char *file;
    struct sy_diags *diags;
    size_t first_diag; /* diags->n on entry: ours are the ones after it */
    struct sy_yaml_doc yaml;
    struct sy_config *cfg;
    size_t cap_listens, cap_clusters, cap_apps;
    size_t n_app_names;   /* in cfg's name index */
    const char *dir_file; /* the apps_dir file being read (c->file too), or NULL */
};

/* One host+path pair an app claims, for the check that no two apps claim the same one. */
struct claim {
    const char *host, *path;
    size_t app;
    struct sy_mark mark;
};

/* A node's text made safe to quote in a message: truncated, control bytes shown as '?'. */
struct shown {
    char s[72];
};

enum duration_result {
    DURATION_OK = 0,
    DURATION_SYNTAX,
    DURATION_TOO_LONG,
};

int sy_cfg_clamp_int(size_t v);
struct sy_mark sy_cfg_mark_of(const struct sy_ynode *n);
void sy_cfg_error_mark(struct ctx *c, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sy_cfg_report(struct ctx *c, const struct sy_ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A name or key as written, for quoting inside '...'. */
struct shown sy_cfg_show(const struct sy_ynode *n);
/* A value after "got": a quoted scalar keeps its quotes, since "50" is a string, not 50. */
struct shown sy_cfg_show_value(const struct sy_ynode *n);
struct sy_ynode *sy_cfg_node_at(struct ctx *c, int index);
bool sy_cfg_is_scalar(const struct sy_ynode *n);
const char *sy_cfg_text(const struct sy_ynode *n);
/* A plain `true` or `false` into *out; anything else is reported as "KEY must be true or
 * false" and leaves *out as it was. */
void sy_cfg_bool(struct ctx *c, const struct sy_ynode *n, const char *key, bool *out);
/* The text of a scalar that must be a usable string: not a collection, not empty, no NUL. */
const char *sy_cfg_string_value(struct ctx *c, const struct sy_ynode *n, const char *what);
/* A plain (unquoted) decimal integer no larger than `max`: YAML's quoted "5" is a string. */
bool sy_cfg_parse_uint(const struct sy_ynode *n, uint64_t max, uint64_t *out);
/* "10s", "500ms", "2m", "1h" or a plain number of seconds, as milliseconds. */
enum duration_result sy_cfg_parse_duration(const struct sy_ynode *n, unsigned *out);
/* "3600", "3600s", "90m", "12h" or "30d", as seconds no larger than `max`. */
enum duration_result sy_cfg_parse_seconds(const struct sy_ynode *n, uint64_t max, unsigned *out);
/* One key of a mapping read by sy_cfg_collect: its name, and where its value node goes. */
struct sy_cfg_slot {
    const char *key;
    const struct sy_ynode **node;
};
/* Each pair of mapping `map` into the node of the slot (of `n`) its key names; a key named by
 * none is reported as "unknown key 'K' in SECTION". Bad and repeated keys are reported by
 * sy_cfg_map_entry and skipped. */
void sy_cfg_collect(struct ctx *c, const struct sy_ynode *map, const struct sy_cfg_slot *slots,
                    size_t n, const char *section);
#define DURATION_EXAMPLES "10s, 500ms, 2m or 1h"
/* A duration of `key` in milliseconds into *out; false after reporting. `examples` ends "must
 * be a duration such as ...". With `zero_hint` (NULL: 0 is allowed), 0 is refused as "KEY must
 * be greater than 0" followed by the hint ("" for none). */
bool sy_cfg_duration_ms(struct ctx *c, const struct sy_ynode *v, const char *key,
                        const char *examples, const char *zero_hint, unsigned *out);
/* A walk over the pairs of a mapping, `map`, that sy_cfg_map_entry accepts (it reports the
 * others): for (struct sy_cfg_entry e = {.map = m}; sy_cfg_next_entry(c, &e);) reads e.key,
 * e.k and e.v; `refused` says afterwards whether some key was refused. */
struct sy_cfg_entry {
    const struct sy_ynode *map;
    const yaml_node_pair_t *p; /* the pair last read: NULL before the first */
    struct sy_ynode *k, *v;
    const char *key;
    bool refused;
};
bool sy_cfg_next_entry(struct ctx *c, struct sy_cfg_entry *e);
/* Each pair of mapping `map` whose key names an entry of `table` (`n` entries of `size` bytes,
 * each beginning with its key's name as a `const char *`) is passed to `cb` with that entry;
 * another key is reported as "unknown key 'K' in SECTION", and keys sy_cfg_map_entry refuses
 * are skipped. */
typedef void (*sy_cfg_key_cb)(struct ctx *c, const void *entry, const struct sy_ynode *v);
void sy_cfg_each_key(struct ctx *c, const struct sy_ynode *map, const char *section,
                     const void *table, size_t n, size_t size, sy_cfg_key_cb cb);
/* RFC 9110 §5.6.2 tchar. An RFC 6265 §4.1.1 cookie-name is the same token (RFC 2616 §2.2). */
bool sy_cfg_is_tchar(unsigned char ch);
/*
 * Reads one mapping entry into k, v and key. Reports and skips keys that are not strings and
 * keys already seen in the same mapping (quadratic, but mappings here are short).
 */
bool sy_cfg_map_entry(struct ctx *c, const struct sy_ynode *map, const yaml_node_pair_t *p,
                      struct sy_ynode **k, struct sy_ynode **v, const char **key);
bool sy_cfg_is_mapping(struct ctx *c, const struct sy_ynode *n, const char *what);
bool sy_cfg_is_list(struct ctx *c, const struct sy_ynode *n, const char *what);
bool sy_cfg_has_pairs(const struct sy_ynode *map);
bool sy_cfg_has_items(const struct sy_ynode *seq);
bool sy_cfg_is_digits_and_dots(const char *s);
bool sy_cfg_is_name_char(char ch);
/* A path in the file, relative to the file's own directory unless absolute. */
char *sy_cfg_file_path(struct ctx *c, const char *s);
/* A path key (admin.socket, state): a string, resolved against the config's directory. */
char *sy_cfg_path_value(struct ctx *c, const struct sy_ynode *v, const char *what, size_t max);

/* Why host pattern `s` is unusable, or NULL when it is fine. */
const char *sy_cfg_host_problem(const char *s, size_t len);
/* `tls: {cert: PATH, key: PATH}`: both PEM files must be readable (their contents are
 * checked when the listener is made, and by -t). */
void sy_cfg_parse_listen_tls(struct ctx *c, const struct sy_ynode *v, struct sy_listen_spec *l);
/* A cluster's `tls: {ca, sni, verify, cert, key}` into `t`, or fleet.etcd.tls (the files are
 * loaded, and checked as certificates, when the TLS contexts are made and by -t). Sets t->on
 * and t->mark; t->verify keeps its default (true) unless written. `section` names the block
 * in the messages ("tls", "fleet.etcd.tls"). */
void sy_cfg_parse_cluster_tls(struct ctx *c, struct sy_cluster_tls *t, const struct sy_ynode *v,
                              const char *section);

void sy_cfg_parse_trusted(struct ctx *c, const struct sy_ynode *v, struct sy_cidr **out,
                          size_t *n_out);
void sy_cfg_parse_listens(struct ctx *c, const struct sy_ynode *v);

void sy_cfg_parse_clusters(struct ctx *c, const struct sy_ynode *v);
/* Index of the cluster named by scalar `n`, or -1. */
long sy_cfg_find_cluster(struct ctx *c, const struct sy_ynode *n);

void sy_cfg_sticky_dispose(struct sy_sticky_spec *st);
void sy_cfg_force_dispose(struct sy_force_spec *f);
void sy_cfg_parse_apps(struct ctx *c, const struct sy_ynode *v);
/*
 * Two apps claiming one host+path would make routing depend on their order: refuse it. Claims
 * go into a hash set in file order, so the one already there is the earliest; a sort did this
 * before and cost a tenth of a 10,000-app reload.
 */
void sy_cfg_check_claims(struct ctx *c);

void sy_cfg_parse_limits(struct ctx *c, const struct sy_ynode *v);
void sy_cfg_parse_timeouts(struct ctx *c, const struct sy_ynode *v);
/* `admin: {socket: PATH, allow_uids: [..], allow_gids: [..], allow_read_uids: [..],
 * allow_read_gids: [..], http: ADDRESS, http_allow: [CIDR, ..]}`. */
void sy_cfg_parse_admin(struct ctx *c, const struct sy_ynode *v);
/* `exclusive: { hold, max_held, drain, ready: { url, expect, timeout } }`. */
void sy_cfg_parse_exclusive(struct ctx *c, const struct sy_ynode *v);
/* `access_log: {path: stdout | FILE, sample: 1.0, buffer_bytes: 1MiB}`. */
void sy_cfg_parse_access_log(struct ctx *c, const struct sy_ynode *v);
/* `shutdown:`; *grace_set tells whether `grace` was written (else timeouts.drain is it). */
void sy_cfg_parse_shutdown(struct ctx *c, const struct sy_ynode *v, bool *grace_set);
/* `fleet: {etcd: {endpoints, prefix, tls, timeout}, instance, lease_ttl, wait}`. */
void sy_cfg_parse_fleet(struct ctx *c, const struct sy_ynode *v);
/* Frees what `fleet:` allocated (the struct itself is the config's). */
void sy_cfg_fleet_dispose(struct sy_fleet_spec *f);

#endif
