/* SPDX-License-Identifier: MIT */
/* A client of etcd's v3 API through its HTTP/JSON gateway (POST /v3/kv/range, /v3/kv/txn,
 * /v3/watch, /v3/lease/grant, /v3/lease/keepalive, ...), on one event_base (the control
 * thread's). HTTP/1.1 of our own over bufferevents, cleartext or TLS (OpenSSL), keep-alive
 * connections reused between calls. A call that cannot reach a member (connect refused or
 * timed out, connection closed before an answer, 5xx, or etcd saying it has no leader) is
 * sent to the next endpoint, round robin, until the call's deadline; any other answer is the
 * call's result. Responses are parsed with sy_jv (switchyard/json.h). Control thread only. */
#ifndef SWITCHYARD_ETCD_H
#define SWITCHYARD_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "switchyard/base.h"
#include "switchyard/json.h"

struct event_base;

struct sy_etcd_endpoint {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *host; /* the Host header and, over TLS, the server name (borrowed) */
    bool tls;
};

struct sy_etcd_opts {
    const struct sy_etcd_endpoint *endpoints; /* copied */
    size_t n_endpoints;
    SSL_CTX *ssl;        /* for the tls endpoints (borrowed; the caller keeps it alive) */
    bool verify_host;    /* check the server certificate's name against `host` */
    uint64_t timeout_ms; /* a unary call's deadline, all its attempts included */
};

struct sy_etcd;

/** A client of the endpoints in `o` (copied, hosts included). Returns NULL when `o` lists no
 * endpoint, or a tls one without `ssl`. */
struct sy_etcd *sy_etcd_new(struct event_base *base, const struct sy_etcd_opts *o);
/** Cancels every call and watch (their callbacks are not called) and frees. NULL: no-op. */
void sy_etcd_free(struct sy_etcd *e);

/** The endpoint (index into the options' list) the last successful call was answered by. */
size_t sy_etcd_current(const struct sy_etcd *e);

/**
 * The result of a unary call. `rc` is 0 when etcd answered 200 with a JSON object (`res`,
 * borrowed for the callback only); otherwise a negative sy_err: SY_ERR_AGAIN (no member
 * answered before the deadline: etcd is unreachable), SY_ERR_INVALID (an answer that is not JSON,
 * or a 4xx: `res` holds etcd's error object when it sent one), with `why` a line for people (never
 * NULL).
 */
typedef void (*sy_etcd_cb)(int rc, const struct sy_jv *res, const char *why, void *arg);

struct sy_etcd_call;

/**
 * POSTs `body` (JSON, copied) to `path` ("/v3/kv/txn"). `cb` is called once, later (never from
 * inside this function). Returns a handle valid until the callback returns or
 * sy_etcd_call_cancel().
 */
struct sy_etcd_call *sy_etcd_call(struct sy_etcd *e, const char *path, const char *body, size_t len,
                                  sy_etcd_cb cb, void *arg);
/** Forgets the call: its callback will not be called. */
void sy_etcd_call_cancel(struct sy_etcd_call *c);

/** One message of a watch stream: the `result` member of a line ({"result":{...}}). */
typedef void (*sy_etcd_watch_msg_cb)(const struct sy_jv *result, void *arg);
/** The stream ended (closed, broken, timed out or refused by every member): `why` says how. */
typedef void (*sy_etcd_watch_end_cb)(const char *why, void *arg);

struct sy_etcd_watch;

/**
 * Opens a watch stream: POST /v3/watch with `body` (a {"create_request":{...}}), trying each
 * endpoint like a call until one answers 200, then delivers each message in order. The
 * stream has no deadline once open (etcd's progress notifications keep it alive); `end` is
 * called once when it ends, and never after sy_etcd_watch_cancel().
 */
struct sy_etcd_watch *sy_etcd_watch(struct sy_etcd *e, const char *body, size_t len,
                                    sy_etcd_watch_msg_cb msg, sy_etcd_watch_end_cb end, void *arg);
void sy_etcd_watch_cancel(struct sy_etcd_watch *w);

/* -- helpers for the JSON of the gateway ------------------------------------------------------ */

/** Base64 (standard alphabet, padded) of `len` bytes into a new string (free()). */
char *sy_etcd_b64(const void *p, size_t len);
/** Decodes base64 into a new NUL-terminated buffer (free()); NULL when it is not base64.
 * `*len` gets the decoded size. */
char *sy_etcd_unb64(const char *s, size_t *len);
/** The range end that makes a range or watch cover every key starting with `prefix`: the
 * prefix with its last byte incremented, trailing 0xff bytes dropped first, as etcd's
 * clientv3 does (a new string, free()). An empty answer (for "" or all 0xff) means "to the end
 * of the keyspace", whose range_end is the one byte 0: sy_etcd_b64("", 1), "AA==". */
char *sy_etcd_prefix_end(const char *prefix);
/** An int64 the gateway writes as a string ("123") or a number; `dflt` when absent or bad. */
uint64_t sy_etcd_u64(const struct sy_jv *v, uint64_t dflt);

/* -- HTTP/1.1 response framing (the client's, and its fuzz target's) ------------------------- */

#define SY_ETCD_MAX_HEAD 16384               /* a response's status line and header fields */
#define SY_ETCD_MAX_BODY (64u * 1024 * 1024) /* a response's body; a watch stream's line */

/** A response head, as sy_etcd_parse_head() read it. */
struct sy_etcd_head {
    int status;             /* 100..599 */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool close;             /* Connection: close, or HTTP/1.0: the connection is not reused */
    int64_t content_length; /* -1: none */
};

/**
 * Parses a status line and header fields at the front of `p` (`len` bytes). Returns the head's
 * length (> 0) with `*h` filled; 0 when the head is not complete yet; -1 when it is malformed
 * or longer than SY_ETCD_MAX_HEAD. Lines end in CRLF or LF. A Transfer-Encoding other than
 * chunked (last), a Content-Length that is not one decimal number (or two that differ) are
 * malformed; with both, chunked wins (RFC 9112 §6.3). Pure; any thread.
 */
long sy_etcd_parse_head(const char *p, size_t len, struct sy_etcd_head *h);

/** The state of a chunked body's decoding (RFC 9112 §7.1): zero it to start. */
struct sy_etcd_chunks {
    int state;
    uint64_t left;   /* data bytes left in the current chunk */
    unsigned digits; /* of the size being read */
    size_t line;     /* bytes of the current size line or of the trailer section */
    bool done;       /* the last chunk and the trailer section are read */
};

/**
 * Decodes chunked framing from `p` (`len` bytes, any split of the stream): consumes framing
 * up to and including at most one run of chunk data, which `*data` points to (inside `p`;
 * empty when there is none). Returns the bytes consumed (at least 1 while `len` > 0 and not
 * done; stops after the last chunk's trailer section, with `d->done` set), or -1 when the
 * framing is malformed (bad hex, a size over 16 digits, a size line over 4 KiB, a trailer
 * section over SY_ETCD_MAX_HEAD). Call again with the rest. Pure; any thread.
 */
long sy_etcd_dechunk(struct sy_etcd_chunks *d, const char *p, size_t len, struct sy_slice *data);

#endif
