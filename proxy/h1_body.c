/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 body framing on the way through, for both ends that read HTTP/1.1: the client codec
 * (h1_server.c, a request body) and the cluster client (h1_client.c, a response body). A body
 * of known length is moved as it is; a chunked one is decoded by the parser's chunk machine
 * (proxy/h1.c) so that only framing we validated leaves the proxy, and its trailer fields are
 * kept as lines. Bodies move between evbuffers by chain, not copied. */
#include "proxy_internal.h"

/* evbuffer_remove_buffer copies the part of a chain it cannot move whole with an evbuffer_add
 * whose failure it ignores, draining `in` all the same and counting the bytes as moved: only
 * `out`'s length tells. */
bool h1_move_body(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    size_t had = evbuffer_get_length(out);
    evbuffer_remove_buffer(in, out, n);
    return evbuffer_get_length(out) == had + n;
}

bool h1_add_chunk(struct evbuffer *out, struct evbuffer *src, size_t n)
{
    struct head_writer hw;
    hw_init(&hw, out);
    hw_uint(&hw, n, 16);
    hw_add(&hw, "\r\n", 2);
    hw_flush(&hw);
    if (hw.failed || !h1_move_body(src, out, n))
        return false;
    return evbuffer_add(out, "\r\n", 2) == 0;
}

bool h1_add_last_chunk(struct evbuffer *out, struct evbuffer *trailers)
{
    if (evbuffer_add(out, "0\r\n", 3) != 0)
        return false;
    if (trailers && evbuffer_add_buffer(out, trailers) != 0)
        return false;
    return evbuffer_add(out, "\r\n", 2) == 0;
}

/* Moves decoded chunked body from `in` to `out` until `out` holds `budget` bytes or the input
 * runs dry; trailer fields go to `trailers` as lines. Returns 0, or -1 on bad framing or when
 * a buffer could not grow (*why is then exchange_nomem_reason). */
static int decode_chunked(struct sy_h1_chunked *dec, struct evbuffer *in, struct evbuffer *out,
                          struct evbuffer *trailers, size_t budget, bool *done, const char **why)
{
    while (evbuffer_get_length(out) < budget) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        enum sy_h1_chunk_event ev;
        size_t n = 0;
        int rc = sy_h1_chunked_step(dec, v.iov_base, v.iov_len, &ev, &n);
        if (rc == SY_ERR_AGAIN && v.iov_len < len) {
            /* A framing line split across buffer chains: make it contiguous. */
            size_t want = len < 4097 ? len : 4097;
            const char *p = (const char *)evbuffer_pullup(in, (ssize_t)want);
            if (!p) {
                *why = exchange_nomem_reason;
                return -1;
            }
            rc = sy_h1_chunked_step(dec, p, want, &ev, &n);
        }
        if (rc == SY_ERR_AGAIN)
            return 0;
        if (rc < 0) {
            *why = dec->why ? dec->why : "malformed chunked framing";
            return -1;
        }
        switch (ev) {
        case SY_H1_CHUNK_FRAMING:
            evbuffer_drain(in, n);
            break;
        case SY_H1_CHUNK_DATA:
            /* At most one contiguous segment past the budget: the budget is a soft bound. */
            if (!h1_move_body(in, out, n)) {
                *why = exchange_nomem_reason;
                return -1;
            }
            break;
        case SY_H1_CHUNK_TRAILER:
            if (trailers &&
                evbuffer_add_printf(trailers, "%.*s: %.*s\r\n", (int)dec->trailer.name.len,
                                    dec->trailer.name.p, (int)dec->trailer.value.len,
                                    dec->trailer.value.p) < 0) {
                *why = exchange_nomem_reason;
                return -1;
            }
            evbuffer_drain(in, n);
            break;
        case SY_H1_CHUNK_DONE:
            evbuffer_drain(in, n);
            *done = true;
            return 0;
        }
    }
    return 0;
}

ssize_t h1_decode_body(struct sy_h1_chunked *dec, enum sy_h1_framing framing, uint64_t *remaining,
                       struct evbuffer *in, struct evbuffer *out, size_t max,
                       struct evbuffer *trailers, bool *done, const char **why)
{
    size_t before = evbuffer_get_length(out);
    if (framing == SY_H1_BODY_LENGTH) {
        size_t n = evbuffer_get_length(in);
        if (n > max)
            n = max;
        if (n > *remaining)
            n = (size_t)*remaining;
        if (!h1_move_body(in, out, n)) {
            *why = exchange_nomem_reason;
            return -1;
        }
        *remaining -= n;
        *done = *remaining == 0;
        return (ssize_t)n;
    }
    if (framing == SY_H1_BODY_CHUNKED) {
        if (decode_chunked(dec, in, out, trailers, before + max, done, why) < 0)
            return -1;
        return (ssize_t)(evbuffer_get_length(out) - before);
    }
    *done = true;
    return 0;
}
