/* SPDX-License-Identifier: MIT */
/* The JSON module (include/switchyard/json.h): one escaper with no allocation, one writer over
 * a growing buffer, one small strict reader. The writer keeps, per open container, whether a
 * member was written, so that callers only name members; the reader builds a tree of values
 * (an object keeps its keys in order) that accessors walk, each of them taking NULL for
 * "absent" so that a lookup chain needs no checks in between. */
#include "switchyard/json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/base.h"

size_t sy_json_escape(char *dst, size_t cap, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            if (o + 1 > cap)
                break;
            dst[o++] = (char)ch;
        } else if (ch == '"' || ch == '\\') {
            if (o + 2 > cap)
                break;
            dst[o++] = '\\';
            dst[o++] = (char)ch;
        } else {
            if (o + 6 > cap)
                break;
            memcpy(dst + o, "\\u00", 4);
            dst[o + 4] = hex[ch >> 4];
            dst[o + 5] = hex[ch & 15];
            o += 6;
        }
    }
    return o;
}

/* -- the writer ------------------------------------------------------------------------------ */

void sy_jw_init(struct sy_jw *w)
{
    memset(w, 0, sizeof(*w));
}

void sy_jw_dispose(struct sy_jw *w)
{
    free(w->p);
    w->p = NULL;
    w->len = w->cap = 0;
}

void sy_jw_append(struct sy_jw *w, const char *s, size_t n)
{
    sy_xgrow((void **)&w->p, &w->cap, w->len + n + 1, 1);
    if (n)
        memcpy(w->p + w->len, s, n);
    w->len += n;
    w->p[w->len] = '\0';
}

/* The length sy_json_escape gives `src` when it has room for all of it. */
static size_t escaped_len(const char *src, size_t len)
{
    size_t n = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == '"' || ch == '\\')
            n += 1;
        else if (ch < 0x20 || ch >= 0x7f)
            n += 5;
    }
    return n;
}

void sy_jw_quoted(struct sy_jw *w, const char *s)
{
    /* Measured first, so that the string is escaped straight into the buffer, grown once. */
    size_t len = strlen(s), n = escaped_len(s, len);
    sy_xgrow((void **)&w->p, &w->cap, w->len + n + 3, 1);
    w->p[w->len++] = '"';
    w->len += sy_json_escape(w->p + w->len, n, s, len);
    w->p[w->len++] = '"';
    w->p[w->len] = '\0';
}

/* The separator and key of the next member of the current container. */
static void member(struct sy_jw *w, const char *key)
{
    if (w->comma[w->depth])
        sy_jw_append(w, ",", 1);
    w->comma[w->depth] = true;
    if (key) {
        sy_jw_quoted(w, key);
        sy_jw_append(w, ":", 1);
    }
}

static void open_container(struct sy_jw *w, const char *key, char c)
{
    member(w, key);
    sy_jw_append(w, &c, 1);
    if (w->depth + 1 < SY_JW_MAX_DEPTH)
        w->depth++;
    w->comma[w->depth] = false;
}

static void close_container(struct sy_jw *w, char c)
{
    sy_jw_append(w, &c, 1);
    if (w->depth > 0)
        w->depth--;
}

void sy_jw_begin_object(struct sy_jw *w, const char *key)
{
    open_container(w, key, '{');
}

void sy_jw_end_object(struct sy_jw *w)
{
    close_container(w, '}');
}

void sy_jw_begin_array(struct sy_jw *w, const char *key)
{
    open_container(w, key, '[');
}

void sy_jw_end_array(struct sy_jw *w)
{
    close_container(w, ']');
}

void sy_jw_str(struct sy_jw *w, const char *key, const char *value)
{
    member(w, key);
    if (value)
        sy_jw_quoted(w, value);
    else
        sy_jw_append(w, "null", 4);
}

void sy_jw_uint(struct sy_jw *w, const char *key, uint64_t value)
{
    member(w, key);
    char b[32];
    int n = snprintf(b, sizeof(b), "%" PRIu64, value);
    sy_jw_append(w, b, (size_t)n);
}

void sy_jw_int(struct sy_jw *w, const char *key, int64_t value)
{
    member(w, key);
    char b[32];
    int n = snprintf(b, sizeof(b), "%" PRId64, value);
    sy_jw_append(w, b, (size_t)n);
}

void sy_jw_bool(struct sy_jw *w, const char *key, bool value)
{
    member(w, key);
    sy_jw_append(w, value ? "true" : "false", value ? 4 : 5);
}

void sy_jw_null(struct sy_jw *w, const char *key)
{
    member(w, key);
    sy_jw_append(w, "null", 4);
}

void sy_jw_raw(struct sy_jw *w, const char *key, const char *json, size_t len)
{
    member(w, key);
    sy_jw_append(w, json, len);
}

/* -- the reader ------------------------------------------------------------------------------ */

struct sy_jv {
    enum sy_jv_type type;
    uint64_t u;
    bool b;
    char *s;             /* SY_JV_STR; NUL-terminated, no NUL inside */
    struct sy_jv *items; /* SY_JV_ARR and SY_JV_OBJ */
    char **keys;         /* SY_JV_OBJ */
    size_t n;
};

struct jparser {
    const char *p, *end;
    const char *why;
};

static void jfree(struct sy_jv *v)
{
    free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof(*v));
}

static void jskip_ws(struct jparser *jp)
{
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t'))
        jp->p++;
}

static bool jfail(struct jparser *jp, const char *why)
{
    if (!jp->why)
        jp->why = why;
    return false;
}

/* The byte an escape stands for (jp->p just after the backslash and its letter), or -1. */
static int junescape(struct jparser *jp, char e)
{
    static const char from[] = "\"\\/ntrbf", to[] = "\"\\/\n\t\r\b\f";
    const char *k = e ? strchr(from, e) : NULL;
    if (k)
        return (unsigned char)to[k - from];
    if (e != 'u')
        return jfail(jp, "bad escape in a string"), -1;
    /* Only what we write: \u00XX, a byte other than NUL. */
    int h[4] = {-1, -1, -1, -1};
    for (int i = 0; i < 4 && jp->p + i < jp->end; i++)
        h[i] = sy_hex_digit(jp->p[i]);
    if (h[0] != 0 || h[1] != 0 || h[2] < 0 || h[3] < 0 || (h[2] == 0 && h[3] == 0))
        return jfail(jp, "unsupported \\u escape"), -1;
    jp->p += 4;
    return h[2] * 16 + h[3];
}

static bool jstring(struct jparser *jp, char **out)
{
    jp->p++; /* the opening quote */
    struct sy_jw b;
    sy_jw_init(&b);
    sy_jw_append(&b, "", 0);
    while (jp->p < jp->end && *jp->p != '"') {
        unsigned char c = (unsigned char)*jp->p;
        if (c < 0x20) {
            sy_jw_dispose(&b);
            return jfail(jp, "control character in a string");
        }
        if (c != '\\') {
            sy_jw_append(&b, jp->p++, 1);
            continue;
        }
        if (jp->end - jp->p < 2) {
            sy_jw_dispose(&b);
            return jfail(jp, "unfinished escape");
        }
        char e = jp->p[1];
        jp->p += 2;
        int ch = junescape(jp, e);
        if (ch < 0) {
            sy_jw_dispose(&b);
            return false;
        }
        char byte = (char)ch;
        sy_jw_append(&b, &byte, 1);
    }
    if (jp->p >= jp->end) {
        sy_jw_dispose(&b);
        return jfail(jp, "unterminated string");
    }
    jp->p++;
    *out = b.p;
    return true;
}

static bool jvalue(struct jparser *jp, struct sy_jv *v, int depth);

/* An object's key and its colon. */
static bool jkey(struct jparser *jp, const struct sy_jv *v, char **out)
{
    char *key = NULL;
    if (jp->p >= jp->end || *jp->p != '"')
        return jfail(jp, "expected a key");
    if (!jstring(jp, &key))
        return false;
    for (size_t i = 0; i < v->n; i++) {
        if (strcmp(v->keys[i], key) == 0) {
            free(key);
            return jfail(jp, "duplicate key");
        }
    }
    jskip_ws(jp);
    if (jp->p >= jp->end || *jp->p != ':') {
        free(key);
        return jfail(jp, "expected ':'");
    }
    jp->p++;
    *out = key;
    return true;
}

static bool jcontainer(struct jparser *jp, struct sy_jv *v, int depth, bool obj)
{
    v->type = obj ? SY_JV_OBJ : SY_JV_ARR;
    char close = obj ? '}' : ']';
    size_t cap = 0, kcap = 0;
    jp->p++;
    jskip_ws(jp);
    if (jp->p < jp->end && *jp->p == close) {
        jp->p++;
        return true;
    }
    for (;;) {
        jskip_ws(jp);
        char *key = NULL;
        if (obj && !jkey(jp, v, &key))
            return false;
        sy_xgrow((void **)&v->items, &cap, v->n + 1, sizeof(*v->items));
        if (obj) {
            sy_xgrow((void **)&v->keys, &kcap, v->n + 1, sizeof(*v->keys));
            v->keys[v->n] = key;
        }
        memset(&v->items[v->n], 0, sizeof(v->items[v->n]));
        v->n++;
        if (!jvalue(jp, &v->items[v->n - 1], depth + 1))
            return false;
        jskip_ws(jp);
        if (jp->p < jp->end && *jp->p == ',') {
            jp->p++;
            continue;
        }
        if (jp->p < jp->end && *jp->p == close) {
            jp->p++;
            return true;
        }
        return jfail(jp, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static bool jnumber(struct jparser *jp, struct sy_jv *v)
{
    uint64_t u = 0;
    const char *start = jp->p;
    while (jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9') {
        unsigned d = (unsigned)(*jp->p - '0');
        if (u > (UINT64_MAX - d) / 10)
            return jfail(jp, "number too large");
        u = u * 10 + d;
        jp->p++;
    }
    if (jp->p - start > 1 && *start == '0')
        return jfail(jp, "number with a leading zero");
    if (jp->p < jp->end && (*jp->p == '.' || *jp->p == 'e' || *jp->p == 'E'))
        return jfail(jp, "numbers must be integers");
    v->type = SY_JV_UINT;
    v->u = u;
    return true;
}

static bool jvalue(struct jparser *jp, struct sy_jv *v, int depth)
{
    if (depth > SY_JV_MAX_DEPTH)
        return jfail(jp, "nested too deeply");
    jskip_ws(jp);
    if (jp->p >= jp->end)
        return jfail(jp, "unexpected end of line");
    char c = *jp->p;
    if (c == '{' || c == '[')
        return jcontainer(jp, v, depth, c == '{');
    if (c == '"') {
        v->type = SY_JV_STR;
        return jstring(jp, &v->s);
    }
    if (c >= '0' && c <= '9')
        return jnumber(jp, v);
    static const struct {
        const char *word;
        enum sy_jv_type type;
        bool b;
    } words[] = {
        {"null", SY_JV_NULL, false}, {"true", SY_JV_BOOL, true}, {"false", SY_JV_BOOL, false}};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t len = strlen(words[i].word);
        if ((size_t)(jp->end - jp->p) >= len && memcmp(jp->p, words[i].word, len) == 0) {
            jp->p += len;
            v->type = words[i].type;
            v->b = words[i].b;
            return true;
        }
    }
    return jfail(jp, c == '-' ? "negative number" : "unexpected character");
}

int sy_jv_parse(const char *text, size_t len, struct sy_jv **out, const char **why)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    struct jparser jp = {text, text + len, NULL};
    struct sy_jv *root = sy_xcalloc(1, sizeof(*root));
    bool ok = jvalue(&jp, root, 0);
    jskip_ws(&jp);
    if (ok && jp.p != jp.end)
        ok = jfail(&jp, "trailing bytes after the value");
    if (!ok) {
        *why = jp.why;
        sy_jv_free(root);
        return SY_ERR_INVALID;
    }
    *out = root;
    return 0;
}

void sy_jv_free(struct sy_jv *v)
{
    if (!v)
        return;
    jfree(v);
    free(v);
}

enum sy_jv_type sy_jv_type(const struct sy_jv *v)
{
    return v ? v->type : SY_JV_NULL;
}

const struct sy_jv *sy_jv_get(const struct sy_jv *obj, const char *key)
{
    if (!obj || obj->type != SY_JV_OBJ)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

size_t sy_jv_len(const struct sy_jv *v)
{
    return v && (v->type == SY_JV_ARR || v->type == SY_JV_OBJ) ? v->n : 0;
}

const struct sy_jv *sy_jv_at(const struct sy_jv *v, size_t i)
{
    return i < sy_jv_len(v) ? &v->items[i] : NULL;
}

const char *sy_jv_key_at(const struct sy_jv *v, size_t i)
{
    return v && v->type == SY_JV_OBJ && i < v->n ? v->keys[i] : NULL;
}

uint64_t sy_jv_uint(const struct sy_jv *v, uint64_t dflt)
{
    return v && v->type == SY_JV_UINT ? v->u : dflt;
}

const char *sy_jv_str(const struct sy_jv *v)
{
    return v && v->type == SY_JV_STR ? v->s : NULL;
}

bool sy_jv_bool(const struct sy_jv *v)
{
    return v && v->type == SY_JV_BOOL && v->b;
}
