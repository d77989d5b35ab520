/* SPDX-License-Identifier: MIT */
/* The PROXY protocol header (versions 1 and 2, haproxy.org/download/2.9/doc/proxy-protocol.txt)
 * that an L4 balancer sends before the client's first byte: a pure parser, no I/O and no
 * allocation. */
#ifndef SWITCHYARD_PROXY_PROTO_H
#define SWITCHYARD_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/** Which versions a listener accepts (`proxy_protocol:`). */
enum sy_pp_accept {
    SY_PP_OFF = 0, /* no header expected (default) */
    SY_PP_V1,      /* `v1`: the text line only */
    SY_PP_V2,      /* `v2`: the binary header only */
    SY_PP_ANY,     /* `any`: either, told apart by the first byte */
};

/** The longest v1 line, CRLF included (spec §2.1). */
#define SY_PP_V1_MAX 107
/** The longest v2 header: 16 fixed bytes and a 16-bit length. */
#define SY_PP_V2_MAX (16 + 65535)

enum sy_pp_status {
    SY_PP_DONE = 0,  /* a whole valid header: see the result */
    SY_PP_NEED_MORE, /* every byte so far may begin a valid header: read more */
    SY_PP_ERROR,     /* not a valid header: close the connection (`why` says why) */
};

/** What a header says. */
struct sy_pp_result {
    size_t consumed; /* DONE: the header's length; the bytes after it are the client's */
    size_t need;     /* NEED_MORE: the total length known to be needed, or 0 if unknown (v1) */
    int version;     /* 1 or 2 once known, else 0 */
    bool has_addr;   /* DONE: src and dst hold the client's addresses; false for v2 LOCAL, v2
                        UNSPEC/UNIX and v1 UNKNOWN: the connection keeps its peer address */
    bool local;      /* DONE: a v2 LOCAL command (the balancer's own health check) */
    struct sockaddr_storage src, dst;
    socklen_t src_len, dst_len;
    const char *why; /* ERROR: a static string */
};

/**
 * Parses the PROXY header at the start of `p` (`len` bytes, which may go on past the header)
 * as `accept` allows (not SY_PP_OFF). Fills *r and returns DONE, NEED_MORE or ERROR; reads no
 * byte at or past p + len. NEED_MORE means that every byte given is part of the header, so a
 * caller may consume them all. Any thread.
 */
enum sy_pp_status sy_pp_parse(const void *p, size_t len, enum sy_pp_accept accept,
                              struct sy_pp_result *r);

/** Room for any header sy_pp_v2_write makes. */
#define SY_PP_V2_OUT_MAX (16 + 36)

/**
 * Writes a PROXY v2 PROXY-command header for a stream from `src` to `dst` into `out` (at least
 * SY_PP_V2_OUT_MAX bytes) and returns its length. Two IPv4 addresses give an INET header;
 * with an IPv6 one, the IPv4 one is written IPv4-mapped (INET6); any other family gives an
 * UNSPEC header, which tells the receiver to keep the connection's own address. Any thread.
 */
size_t sy_pp_v2_write(unsigned char *out, const struct sockaddr *src, const struct sockaddr *dst);

#endif
