/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the etcd gateway client's response framing (admin/etcd.c): the head
 * parser and the chunked decoder, which read what an etcd member (or anything listening where
 * one was configured) sends. Contract checked besides the sanitizers: a head that parses has a
 * length within the input and a status 100..599; the decoder always consumes at least one byte
 * while input is left and it is not done, its data lies inside the input, and feeding the same
 * bytes one at a time gives the same data and the same end as feeding them at once. */
#include <stdlib.h>
#include <string.h>

#include "switchyard/etcd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes `p` in pieces of at most `step` bytes into out (cap size); -1 when malformed. */
static long decode(const char *p, size_t len, size_t step, char *out, size_t *out_len, bool *done)
{
    struct sy_etcd_chunks d;
    memset(&d, 0, sizeof(d));
    size_t off = 0, end = 0;
    *out_len = 0;
    while (off < len && !d.done) {
        end = end + step < len ? end + step : len;
        while (off < end && !d.done) {
            struct sy_slice s = {0};
            long n = sy_etcd_dechunk(&d, p + off, end - off, &s);
            if (n < 0)
                return -1;
            if (n == 0)
                break; /* needs more than this piece */
            if (s.len) {
                if (s.p < p + off || s.p + s.len > p + off + (size_t)n)
                    abort();
                memcpy(out + *out_len, s.p, s.len);
                *out_len += s.len;
            }
            off += (size_t)n;
        }
        if (end == len && off < len && !d.done) {
            struct sy_slice s = {0};
            if (sy_etcd_dechunk(&d, p + off, len - off, &s) == 0)
                break;
        }
    }
    *done = d.done;
    return (long)off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct sy_etcd_head h;
    long n = sy_etcd_parse_head(p, size, &h);
    if (n > 0 && ((size_t)n > size || h.status < 100 || h.status > 599))
        abort();
    char *a = malloc(size + 1), *b = malloc(size + 1);
    size_t la = 0, lb = 0;
    bool da = false, db = false;
    long ra = decode(p, size, size ? size : 1, a, &la, &da);
    long rb = decode(p, size, 1, b, &lb, &db);
    /* One byte at a time reads the same stream: the same verdict, data and end. */
    if ((ra < 0) != (rb < 0))
        abort();
    if (ra >= 0 && (da != db || (da && (la != lb || memcmp(a, b, la) != 0))))
        abort();
    free(a);
    free(b);
    return 0;
}
