/* SPDX-License-Identifier: MIT */
/* Shared by the two HTTP/2 files only, the codec for clients (h2_server.c) and the client for
 * clusters (h2_client.c): what both need of nghttp2 that the rest of proxy/ does not see. */
#ifndef SWITCHYARD_H2_INTERNAL_H
#define SWITCHYARD_H2_INTERNAL_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>

/* h2_server.c: "name: value\r\n" lines (lower-cased in place) as nghttp2 fields pointing into
 * `lines`, at most `max`. The fields are valid while `lines` is not changed. Returns how many,
 * or -1 when the lines could not be made contiguous (out of memory). */
ssize_t trailer_lines_to_nv(struct evbuffer *lines, nghttp2_nv *nv, size_t max);

#endif
