/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the JSON reader (switchyard/json.h), which reads the journal at start-up
 * and the daemon's answers in switchyardctl. Contract checked besides the sanitizers: a parse
 * that fails says why and leaves its output untouched; a value that parses is walked whole
 * through the accessors, written again with the writer, and that text parses again to a value
 * that writes the same bytes (the reader and the writer agree). */
#include <stdlib.h>
#include <string.h>

#include "switchyard/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes `v` with the writer, as member `key` (NULL in arrays and at the top). */
static void rewrite(struct sy_jw *w, const char *key, const struct sy_jv *v)
{
    switch (sy_jv_type(v)) {
    case SY_JV_NULL:
        sy_jw_null(w, key);
        break;
    case SY_JV_BOOL:
        sy_jw_bool(w, key, sy_jv_bool(v));
        break;
    case SY_JV_UINT:
        sy_jw_uint(w, key, sy_jv_uint(v, 0));
        break;
    case SY_JV_STR:
        sy_jw_str(w, key, sy_jv_str(v));
        break;
    case SY_JV_ARR:
    case SY_JV_OBJ: {
        bool obj = sy_jv_type(v) == SY_JV_OBJ;
        if (obj)
            sy_jw_begin_object(w, key);
        else
            sy_jw_begin_array(w, key);
        for (size_t i = 0; i < sy_jv_len(v); i++) {
            if (obj && sy_jv_get(v, sy_jv_key_at(v, i)) != sy_jv_at(v, i))
                __builtin_trap(); /* keys are unique: a key finds its own value */
            rewrite(w, sy_jv_key_at(v, i), sy_jv_at(v, i));
        }
        if (obj)
            sy_jw_end_object(w);
        else
            sy_jw_end_array(w);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sy_jv *v = (struct sy_jv *)&v;
    const char *why = NULL;
    if (sy_jv_parse((const char *)data, size, &v, &why) != 0) {
        if (!why || v != (struct sy_jv *)&v)
            __builtin_trap();
        return 0;
    }
    struct sy_jw a, b;
    sy_jw_init(&a);
    sy_jw_init(&b);
    rewrite(&a, NULL, v);
    struct sy_jv *again = NULL;
    if (sy_jv_parse(a.p, a.len, &again, &why) != 0)
        __builtin_trap();
    rewrite(&b, NULL, again);
    if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
        __builtin_trap();
    sy_jv_free(again);
    sy_jv_free(v);
    sy_jw_dispose(&a);
    sy_jw_dispose(&b);
    return 0;
}
