/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 message parsing (RFC 9112), strict: request and response heads parsed in place into
 * slices, and an incremental chunked-body decoder. No I/O, no allocation: the proxy feeds it
 * bytes it has buffered. Anything ambiguous that could be read two ways by two parsers
 * (request smuggling) is rejected. */
#ifndef SWITCHYARD_H1_H
#define SWITCHYARD_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "switchyard/base.h"

/* Header fields are struct sy_header (base.h); values come without leading/trailing OWS. */

struct sy_h1_limits {
    size_t max_request_line; /* request line (or status line) bytes, CRLF excluded */
    size_t max_head;         /* whole head, through the empty line */
    size_t max_headers;      /* header fields; also the capacity of the caller's array */
};

enum sy_h1_framing {
    SY_H1_BODY_NONE = 0, /* no body */
    SY_H1_BODY_LENGTH,   /* content_length bytes */
    SY_H1_BODY_CHUNKED,  /* chunked transfer coding */
    SY_H1_BODY_CLOSE,    /* responses only: until the connection closes */
};

/* Connection-level facts gathered while parsing the head. */
enum {
    SY_H1_CONN_CLOSE = 1 << 0,      /* Connection: close */
    SY_H1_CONN_KEEP_ALIVE = 1 << 1, /* Connection: keep-alive */
    SY_H1_CONN_UPGRADE = 1 << 2,    /* Connection: upgrade */
};

struct sy_h1_request {
    struct sy_slice method, target;
    int minor;                 /* HTTP/1.<minor>: 0 or 1 */
    struct sy_header *headers; /* caller's array of limits->max_headers entries */
    size_t n_headers;
    enum sy_h1_framing framing; /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;
    struct sy_slice host;    /* the Host field value (empty slice when absent); for an
                                absolute-form or CONNECT target, the target's authority */
    unsigned conn_flags;     /* SY_H1_CONN_* */
    bool keep_alive;         /* after this request, per version and Connection */
    bool expect_continue;    /* Expect: 100-continue */
    struct sy_slice upgrade; /* first Upgrade field value, empty when absent */
    const char *why;         /* on error: short reason (static text) */
};

struct sy_h1_response {
    int status;
    int minor;
    struct sy_slice reason;
    struct sy_header *headers;
    size_t n_headers;
    enum sy_h1_framing framing;
    uint64_t content_length;
    unsigned conn_flags;
    bool keep_alive; /* the upstream connection may be reused after this response */
    const char *why;
};

/**
 * Parses one request head from p[0..len). `req->headers` must point at an array of
 * lim->max_headers entries. Returns:
 *   > 0  the head is complete; the value is its length in bytes (through the blank line);
 *   0    incomplete: call again with more bytes (limits are already checked: an incomplete
 *        head that already exceeds a limit is an error, not 0);
 *   < 0  the negated HTTP status to answer with (-400, -414, -417, -431, -501, -505); req->why
 *        says why. The connection must be closed after answering.
 * Slices point into p. Rejected (400): Content-Length together with Transfer-Encoding, two
 * different Content-Length values, Transfer-Encoding on HTTP/1.0, a Transfer-Encoding list
 * where chunked is repeated or not last, whitespace before a colon, obs-fold, control
 * characters or bare CR/LF in fields, a missing or repeated Host on HTTP/1.1, an invalid Host,
 * a malformed request line. A Transfer-Encoding naming any coding but chunked (`gzip`,
 * `gzip, chunked`) is 501; an Expect other than 100-continue is 417 (RFC 9110 §10.1.1).
 * Empty lines before the request line are skipped and counted in the head (RFC 9112 §2.2).
 */
ssize_t sy_h1_parse_request(const char *p, size_t len, const struct sy_h1_limits *lim,
                            struct sy_h1_request *req);

/**
 * Parses one response head. `head_request` says the request was HEAD (no body follows);
 * 1xx, 204 and 304 never have a body. Returns like sy_h1_parse_request; errors are -502
 * (the upstream sent something we cannot relay), including Transfer-Encoding with
 * Content-Length, any coding but a lone chunked, and Transfer-Encoding on HTTP/1.0 (ignored
 * when there is no body). Content-Length is checked even when there is no body.
 */
ssize_t sy_h1_parse_response(const char *p, size_t len, const struct sy_h1_limits *lim,
                             bool head_request, struct sy_h1_response *resp);

/**
 * The origin-form of a request-target that sy_h1_parse_request accepted (RFC 9112 §3.2.2: an
 * absolute-form target is sent on as its path and query; its authority is already the Host):
 * origin-form and asterisk-form come back as they are, `http://a/p?q` as `/p?q`, `http://a`
 * as `/`. When the absolute form has a query but no path (`http://a?q`), the origin-form is
 * `/` followed by the returned slice (`?q`) and *slash is set; otherwise it is cleared. The
 * slice borrows `target`.
 */
struct sy_slice sy_h1_origin_form(struct sy_slice target, bool *slash);

/** Finds header `name` (case-insensitive); returns its index or -1. */
ssize_t sy_h1_find_header(const struct sy_header *h, size_t n, const char *name);

/* Incremental chunked decoder (RFC 9112 §7.1). */
enum sy_h1_chunk_event {
    SY_H1_CHUNK_FRAMING = 0, /* `consumed` bytes of framing: drop them */
    SY_H1_CHUNK_DATA,        /* `consumed` bytes of body data at the start of p: pass them on */
    SY_H1_CHUNK_TRAILER,     /* one trailer field (consumed includes its CRLF); see `trailer` */
    SY_H1_CHUNK_DONE,        /* the final CRLF was read (consumed includes it): body complete */
};

struct sy_h1_chunked {
    int state;                /* private */
    uint64_t remaining;       /* private: bytes left in the current chunk */
    size_t trailer_bytes;     /* private: trailer section size so far */
    size_t max_trailer_bytes; /* set before use (0 = 8192): trailer field lines, CRLFs included */
    struct sy_header trailer; /* valid with SY_H1_CHUNK_TRAILER, points into p */
    const char *why;
};

void sy_h1_chunked_init(struct sy_h1_chunked *c, size_t max_trailer_bytes);

/**
 * Decodes from p[0..len). Returns 0 and sets *event and *consumed (> 0) for one step, or
 * SY_ERR_AGAIN when p holds too little to make progress (a framing line not yet complete; the
 * caller must provide more bytes, and can give up once an unfinished line passes 4096 bytes:
 * the decoder then returns SY_ERR_INVALID itself), or SY_ERR_INVALID with c->why set for
 * malformed framing (bad hex, chunk size overflow, bare LF or CR, missing CRLF after data,
 * invalid trailer field). Data events never span more than len bytes. After DONE, the next
 * call returns SY_ERR_INVALID.
 */
int sy_h1_chunked_step(struct sy_h1_chunked *c, const char *p, size_t len,
                       enum sy_h1_chunk_event *event, size_t *consumed);

#endif
