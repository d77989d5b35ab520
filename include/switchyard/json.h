/* SPDX-License-Identifier: MIT */
/* The one JSON module of the tree: a string escaper that never allocates (the access log's), a
 * writer that builds compact JSON in a growing buffer (the admin answers, the journal's
 * records, switchyardctl's own lines), and a small strict reader (the journal at start-up,
 * switchyardctl's `status --watch` and fan-out headers). Everything it writes is ASCII: bytes
 * outside printable ASCII are written as \u00XX of the byte, and the reader reads back exactly
 * those escapes. */
#ifndef SWITCHYARD_JSON_H
#define SWITCHYARD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Writes `src` (`len` bytes) as the inside of a JSON string (RFC 8259 §7) into `dst`, which
 * holds `cap` bytes: `"` and `\\` are escaped, control bytes, DEL and every byte from 0x80 as
 * \u00XX of the byte's value (so that any input, valid UTF-8 or not, gives valid ASCII JSON;
 * request lines are ASCII, RFC 9112 §3). Stops before an escape that would not fit. Returns the
 * bytes written (no NUL). No allocation; any thread. The one JSON string escaper: the writer
 * below uses it too.
 */
size_t sy_json_escape(char *dst, size_t cap, const char *src, size_t len);

/* -- the writer ------------------------------------------------------------------------------ */

/** Containers open at once; deeper ones are written but share the last level's commas. */
#define SY_JW_MAX_DEPTH 16

/**
 * Compact JSON being written into `p` (NUL-terminated, `len` bytes; malloc'd). Members are
 * separated by ',' where one is needed: `comma[depth]` says whether the container being
 * written has a member already. Start with sy_jw_init(); set comma[0] to continue an object
 * whose first members someone else wrote.
 */
struct sy_jw {
    char *p;
    size_t len, cap;
    bool comma[SY_JW_MAX_DEPTH];
    int depth;
};

void sy_jw_init(struct sy_jw *w);
/** Frees the bytes (the writer can be used again after sy_jw_init()). */
void sy_jw_dispose(struct sy_jw *w);

/** Appends bytes as they are (text, or JSON written elsewhere). */
void sy_jw_append(struct sy_jw *w, const char *s, size_t n);
/** Appends `s` (NUL-terminated) as a JSON string: quoted and escaped (sy_json_escape). */
void sy_jw_quoted(struct sy_jw *w, const char *s);

/* Members of the current container. `key` is NULL inside arrays (and for the top value). */
void sy_jw_begin_object(struct sy_jw *w, const char *key);
void sy_jw_end_object(struct sy_jw *w);
void sy_jw_begin_array(struct sy_jw *w, const char *key);
void sy_jw_end_array(struct sy_jw *w);
void sy_jw_str(struct sy_jw *w, const char *key, const char *value); /* NULL -> null */
void sy_jw_uint(struct sy_jw *w, const char *key, uint64_t value);
void sy_jw_int(struct sy_jw *w, const char *key, int64_t value);
void sy_jw_bool(struct sy_jw *w, const char *key, bool value);
void sy_jw_null(struct sy_jw *w, const char *key);
/** A value already written as JSON (`json`, `len` bytes, is trusted). */
void sy_jw_raw(struct sy_jw *w, const char *key, const char *json, size_t len);

/* -- the reader ------------------------------------------------------------------------------ */

/** Containers nested deeper than this are refused. */
#define SY_JV_MAX_DEPTH 8

/* A parsed JSON value (opaque). The reader is strict and small: numbers are non-negative
 * integers that fit 64 bits, strings hold no NUL (\u0000 and escapes above \u00ff are
 * refused), an object's keys are unique, whitespace is spaces and tabs. */
struct sy_jv;

enum sy_jv_type {
    SY_JV_NULL = 0, /* null, or absent */
    SY_JV_BOOL,
    SY_JV_UINT,
    SY_JV_STR,
    SY_JV_ARR,
    SY_JV_OBJ,
};

/**
 * Parses one JSON value (a trailing newline is allowed) into a new value (sy_jv_free it).
 * Returns 0, or SY_ERR_INVALID with `why` (static text) set and `*out` untouched. Any thread.
 */
int sy_jv_parse(const char *text, size_t len, struct sy_jv **out, const char **why);
void sy_jv_free(struct sy_jv *v);
/* Accessors: each takes NULL (absent) and answers as for an absent value. */
enum sy_jv_type sy_jv_type(const struct sy_jv *v);
/** An object's member, or NULL. Borrowed from the root. */
const struct sy_jv *sy_jv_get(const struct sy_jv *obj, const char *key);
/** The number of items of an array or members of an object (0 otherwise). */
size_t sy_jv_len(const struct sy_jv *v);
/** Item `i` of an array or value of member `i` of an object, or NULL. */
const struct sy_jv *sy_jv_at(const struct sy_jv *v, size_t i);
/** The key of member `i` of an object, or NULL. */
const char *sy_jv_key_at(const struct sy_jv *v, size_t i);
/** A number's value, or `dflt`. */
uint64_t sy_jv_uint(const struct sy_jv *v, uint64_t dflt);
/** A string's bytes (NUL-terminated), or NULL. */
const char *sy_jv_str(const struct sy_jv *v);
/** true only for the value true. */
bool sy_jv_bool(const struct sy_jv *v);

#endif
