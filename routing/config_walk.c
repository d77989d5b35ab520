/* SPDX-License-Identifier: MIT */
/* Walking the routing file's YAML tree, for config.c and config_*.c: diagnostics with the file,
 * line and column of the node at fault (report, error_mark), a node's text made safe to quote
 * (show), the shape checks (is_scalar, is_mapping, map_entry...) and the parsers of scalar
 * values: integers, durations, seconds, names and paths. */
#include "switchyard/config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config_internal.h"
#include "yaml_doc.h"

int sy_cfg_clamp_int(size_t v)
{
    return v >= INT_MAX ? INT_MAX : (int)v;
}

struct sy_mark sy_cfg_mark_of(const struct sy_ynode *n)
{
    struct sy_mark m = {sy_cfg_clamp_int(n->start_mark.line + 1),
                        sy_cfg_clamp_int(n->start_mark.column + 1)};
    return m;
}

static void verror_at(struct ctx *c, int line, int col, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void verror_at(struct ctx *c, int line, int col, const char *fmt, va_list ap)
{
    char msg[sizeof(((struct sy_diag *)0)->msg)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    sy_diags_add(c->diags, c->file, line, col, "%s", msg);
}

void sy_cfg_error_mark(struct ctx *c, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror_at(c, sy_cfg_clamp_int(m.line + 1), sy_cfg_clamp_int(m.column + 1), fmt, ap);
    va_end(ap);
}

void sy_cfg_report(struct ctx *c, const struct sy_ynode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct sy_mark m = sy_cfg_mark_of(n);
    verror_at(c, m.line, m.col, fmt, ap);
    va_end(ap);
}

static struct shown show_as(const struct sy_ynode *n, bool mark_quoted)
{
    struct shown out;
    if (n->type == YAML_MAPPING_NODE) {
        snprintf(out.s, sizeof(out.s), "a mapping");
        return out;
    }
    if (n->type != YAML_SCALAR_NODE) {
        snprintf(out.s, sizeof(out.s), "a list");
        return out;
    }
    const unsigned char *p = n->data.scalar.value;
    size_t len = n->data.scalar.length, max = sizeof(out.s) - 6, o = 0;
    if (len == 0) {
        snprintf(out.s, sizeof(out.s), "%s", mark_quoted ? "nothing" : "");
        return out;
    }
    bool quoted = mark_quoted && n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    if (quoted)
        out.s[o++] = '"';
    size_t i = 0;
    for (; i < len && o < max; i++)
        out.s[o++] = p[i] < 0x20 || p[i] == 0x7f ? '?' : (char)p[i];
    if (i < len) {
        memcpy(out.s + o, "...", 3);
        o += 3;
    }
    if (quoted)
        out.s[o++] = '"';
    out.s[o] = '\0';
    return out;
}

/* A name or key as written, for quoting inside '...'. */
struct shown sy_cfg_show(const struct sy_ynode *n)
{
    return show_as(n, false);
}

/* A value after "got": a quoted scalar keeps its quotes, since "50" is a string, not 50. */
struct shown sy_cfg_show_value(const struct sy_ynode *n)
{
    return show_as(n, true);
}

struct sy_ynode *sy_cfg_node_at(struct ctx *c, int index)
{
    return sy_yaml_node(&c->yaml, index);
}

bool sy_cfg_is_scalar(const struct sy_ynode *n)
{
    return n->type == YAML_SCALAR_NODE;
}

const char *sy_cfg_text(const struct sy_ynode *n)
{
    return (const char *)n->data.scalar.value;
}

void sy_cfg_bool(struct ctx *c, const struct sy_ynode *n, const char *key, bool *out)
{
    const char *s = sy_cfg_is_scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                        ? sy_cfg_text(n)
                        : "";
    if (strcmp(s, "true") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0)
        *out = false;
    else
        sy_cfg_report(c, n, "%s must be true or false, got %s", key, sy_cfg_show_value(n).s);
}

/* The text of a scalar that must be a usable string: not a collection, not empty, no NUL. */
const char *sy_cfg_string_value(struct ctx *c, const struct sy_ynode *n, const char *what)
{
    if (!sy_cfg_is_scalar(n)) {
        sy_cfg_report(c, n, "%s must be a string, got %s", what, sy_cfg_show_value(n).s);
        return NULL;
    }
    if (n->data.scalar.length == 0) {
        sy_cfg_report(c, n, "%s must not be empty", what);
        return NULL;
    }
    if (strlen(sy_cfg_text(n)) != n->data.scalar.length) {
        sy_cfg_report(c, n, "%s must not contain NUL bytes", what);
        return NULL;
    }
    return sy_cfg_text(n);
}

/* A plain (unquoted) decimal integer no larger than `max`: YAML's quoted "5" is a string. */
bool sy_cfg_parse_uint(const struct sy_ynode *n, uint64_t max, uint64_t *out)
{
    if (!sy_cfg_is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const unsigned char *p = n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (len == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = p[i] - '0';
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

struct unit {
    const char *suffix;
    uint64_t factor;
};

/* A number followed by one of `units` (NULL-terminated), times that unit's factor, no larger
 * than `max`: the one reader behind durations in milliseconds and in seconds. */
static enum duration_result parse_scaled(const struct sy_ynode *n, uint64_t max,
                                         const struct unit *units, unsigned *out)
{
    if (!sy_cfg_is_scalar(n))
        return DURATION_SYNTAX;
    const char *p = sy_cfg_text(n), *end = p + n->data.scalar.length;
    uint64_t v = 0;
    bool too_long = false;
    const char *q = p;
    for (; q < end && *q >= '0' && *q <= '9'; q++) {
        v = v * 10 + (uint64_t)(*q - '0');
        if (v > max) {
            too_long = true;
            v = max;
        }
    }
    if (q == p)
        return DURATION_SYNTAX;
    size_t ulen = (size_t)(end - q);
    const struct unit *u = units;
    while (u->suffix && (strlen(u->suffix) != ulen || memcmp(u->suffix, q, ulen) != 0))
        u++;
    if (!u->suffix)
        return DURATION_SYNTAX;
    if (too_long || v * u->factor > max)
        return DURATION_TOO_LONG;
    *out = (unsigned)(v * u->factor);
    return DURATION_OK;
}

/* "10s", "500ms", "2m", "1h" or a plain number of seconds, as milliseconds. */
enum duration_result sy_cfg_parse_duration(const struct sy_ynode *n, unsigned *out)
{
    static const struct unit ms_units[] = {
        {"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}, {NULL, 0},
    };
    return parse_scaled(n, UINT_MAX, ms_units, out);
}

/* "3600", "3600s", "90m", "12h" or "30d", as seconds no larger than `max`. */
enum duration_result sy_cfg_parse_seconds(const struct sy_ynode *n, uint64_t max, unsigned *out)
{
    static const struct unit s_units[] = {
        {"", 1}, {"s", 1}, {"m", 60}, {"h", 60 * 60}, {"d", 24 * 60 * 60}, {NULL, 0},
    };
    return parse_scaled(n, max, s_units, out);
}

/* See config_internal.h. */
bool sy_cfg_duration_ms(struct ctx *c, const struct sy_ynode *v, const char *key,
                        const char *examples, const char *zero_hint, unsigned *out)
{
    unsigned ms = 0;
    switch (sy_cfg_parse_duration(v, &ms)) {
    case DURATION_OK:
        break;
    case DURATION_SYNTAX:
        sy_cfg_report(c, v, "%s must be a duration such as %s, got %s", key, examples,
                      sy_cfg_show_value(v).s);
        return false;
    case DURATION_TOO_LONG:
        sy_cfg_report(c, v, "%s must be at most %ums, got %s", key, UINT_MAX,
                      sy_cfg_show_value(v).s);
        return false;
    }
    if (ms == 0 && zero_hint) {
        sy_cfg_report(c, v, "%s must be greater than 0%s", key, zero_hint);
        return false;
    }
    *out = ms;
    return true;
}

/* RFC 9110 §5.6.2 tchar. An RFC 6265 §4.1.1 cookie-name is the same token (RFC 2616 §2.2). */
bool sy_cfg_is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/*
 * Reads one mapping entry into k, v and key. Reports and skips keys that are not strings and
 * keys already seen in the same mapping (quadratic, but mappings here are short).
 */
bool sy_cfg_map_entry(struct ctx *c, const struct sy_ynode *map, const yaml_node_pair_t *p,
                      struct sy_ynode **k, struct sy_ynode **v, const char **key)
{
    *k = sy_cfg_node_at(c, p->key);
    *v = sy_cfg_node_at(c, p->value);
    if (!sy_cfg_is_scalar(*k)) {
        sy_cfg_report(c, *k, "keys must be strings, got %s", sy_cfg_show(*k).s);
        return false;
    }
    if (strlen(sy_cfg_text(*k)) != (*k)->data.scalar.length) {
        sy_cfg_report(c, *k, "keys must not contain NUL bytes");
        return false;
    }
    for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        const struct sy_ynode *prev = sy_cfg_node_at(c, q->key);
        if (sy_cfg_is_scalar(prev) && prev->data.scalar.length == (*k)->data.scalar.length &&
            memcmp(sy_cfg_text(prev), sy_cfg_text(*k), prev->data.scalar.length) == 0) {
            sy_cfg_report(c, *k, "duplicate key '%s' (first at line %d)", sy_cfg_show(*k).s,
                          sy_cfg_mark_of(prev).line);
            return false;
        }
    }
    *key = sy_cfg_text(*k);
    return true;
}

bool sy_cfg_is_mapping(struct ctx *c, const struct sy_ynode *n, const char *what)
{
    if (n->type == YAML_MAPPING_NODE)
        return true;
    sy_cfg_report(c, n, "%s must be a mapping, got %s", what, sy_cfg_show_value(n).s);
    return false;
}

bool sy_cfg_is_list(struct ctx *c, const struct sy_ynode *n, const char *what)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return true;
    sy_cfg_report(c, n, "%s must be a list, got %s", what, sy_cfg_show_value(n).s);
    return false;
}

bool sy_cfg_has_pairs(const struct sy_ynode *map)
{
    return map->data.mapping.pairs.top > map->data.mapping.pairs.start;
}

bool sy_cfg_has_items(const struct sy_ynode *seq)
{
    return seq->data.sequence.items.top > seq->data.sequence.items.start;
}

bool sy_cfg_is_digits_and_dots(const char *s)
{
    for (; *s; s++)
        if (!(*s == '.' || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

bool sy_cfg_is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_';
}

/* A path in the file, relative to the file's own directory unless absolute. */
char *sy_cfg_file_path(struct ctx *c, const char *s)
{
    const char *base = c->dir_file ? c->dir_file : c->cfg->path ? c->cfg->path : "";
    const char *slash = strrchr(base, '/');
    if (s[0] == '/' || !slash)
        return sy_xstrdup(s);
    size_t dir = (size_t)(slash - base) + 1;
    char *p = sy_xmalloc(dir + strlen(s) + 1);
    memcpy(p, base, dir);
    strcpy(p + dir, s);
    return p;
}

/* A path key (admin.socket, state): a string, resolved against the config's directory. */
char *sy_cfg_path_value(struct ctx *c, const struct sy_ynode *v, const char *what, size_t max)
{
    const char *s = sy_cfg_string_value(c, v, what);
    if (!s)
        return NULL;
    char *p = sy_cfg_file_path(c, s);
    if (max && strlen(p) > max) {
        sy_cfg_report(c, v, "%s path '%s' is longer than %zu bytes", what, sy_cfg_show(v).s, max);
        free(p);
        return NULL;
    }
    return p;
}

/* The entry of `table` (`n` entries of `size` bytes, each beginning with its key's name as a
 * `const char *`) named `key`; NULL after reporting "unknown key 'K' in SECTION" at `k`. */
static const void *table_key(struct ctx *c, const struct sy_ynode *k, const char *key,
                             const void *table, size_t n, size_t size, const char *section)
{
    for (size_t i = 0; i < n; i++) {
        const void *e = (const char *)table + i * size;
        if (strcmp(key, *(const char *const *)e) == 0)
            return e;
    }
    sy_cfg_report(c, k, "unknown key '%s' in %s", sy_cfg_show(k).s, section);
    return NULL;
}

/* See config_internal.h. */
bool sy_cfg_next_entry(struct ctx *c, struct sy_cfg_entry *e)
{
    const yaml_node_pair_t *p = e->p ? e->p + 1 : e->map->data.mapping.pairs.start;
    for (; p < e->map->data.mapping.pairs.top; p++) {
        if (sy_cfg_map_entry(c, e->map, p, &e->k, &e->v, &e->key)) {
            e->p = p;
            return true;
        }
        e->refused = true;
    }
    e->p = p;
    return false;
}

/* See config_internal.h. */
void sy_cfg_each_key(struct ctx *c, const struct sy_ynode *map, const char *section,
                     const void *table, size_t n, size_t size, sy_cfg_key_cb cb)
{
    for (struct sy_cfg_entry e = {.map = map}; sy_cfg_next_entry(c, &e);) {
        const void *row = table_key(c, e.k, e.key, table, n, size, section);
        if (row)
            cb(c, row, e.v);
    }
}

static void fill_slot(struct ctx *c, const void *entry, const struct sy_ynode *v)
{
    *((const struct sy_cfg_slot *)entry)->node = v;
}

/* See config_internal.h. */
void sy_cfg_collect(struct ctx *c, const struct sy_ynode *map, const struct sy_cfg_slot *slots,
                    size_t n, const char *section)
{
    sy_cfg_each_key(c, map, section, slots, n, sizeof(*slots), fill_slot);
}
