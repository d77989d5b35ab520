/* SPDX-License-Identifier: MIT */
/* The data path's connection layer (proxy/sock.c): one non-blocking socket on a worker's event
 * loop, with an input and an output evbuffer, and TLS through OpenSSL on the socket itself.
 * It replaces libevent's bufferevents on the data path: one read per event into the input
 * (readv, or SSL_read into reserved space), output written once at the end of the loop pass
 * that queued it (write-through, one send or writev) or, for an eager socket, as the socket
 * callback that queued it returns; the write event armed only for what the socket did not take.
 * Read high watermark, write low watermark and read/write timeouts behave as bufferevent users
 * expect. Loop thread only, everywhere. */
#ifndef SWITCHYARD_PROXY_SOCK_H
#define SWITCHYARD_PROXY_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

/* What an event callback is told (several may be set). */
enum {
    SY_SOCK_READING = 0x01,   /* while reading */
    SY_SOCK_WRITING = 0x02,   /* while writing (or connecting) */
    SY_SOCK_EOF = 0x10,       /* the peer closed its side */
    SY_SOCK_ERROR = 0x20,     /* a socket or TLS error: sy_sock_error, sy_sock_tls_error */
    SY_SOCK_TIMEOUT = 0x40,   /* the read or write timeout ran out */
    SY_SOCK_CONNECTED = 0x80, /* the connect (and the TLS handshake, with TLS) is done */
};

/* The most one read event takes by default: a 16 KiB answer and its head in one read, in one
 * evbuffer chain that stays below 32 KiB with its header (libevent rounds chains up to a power
 * of two). */
#define SY_SOCK_READ_MAX (32768 - 256)

struct sy_sock;
/* Write-through for the sockets of one event base: their queued output is written at the end
 * of the loop pass (an eager socket's: as the socket callback that queued it returns). */
struct sy_sock_loop;

typedef void (*sy_sock_data_cb)(struct sy_sock *s, void *arg);
typedef void (*sy_sock_event_cb)(struct sy_sock *s, short what, void *arg);

/** The write-through state of `base`. NULL when out of memory. sy_sock_loop_free(NULL) is a
 * no-op; free it after every socket made with it. */
struct sy_sock_loop *sy_sock_loop_new(struct event_base *base);
void sy_sock_loop_free(struct sy_sock_loop *l);

/** A socket for the connected (accepted) descriptor `fd`, which it takes (closed by
 * sy_sock_free, and on failure). With `ssl` (taken as well), the socket shakes hands as a
 * server once enabled and reports SY_SOCK_CONNECTED when done. Nothing is enabled: reading
 * and writing start with sy_sock_enable. NULL when out of memory. */
struct sy_sock *sy_sock_accepted(struct sy_sock_loop *l, int fd, SSL *ssl);

/** Starts a non-blocking connect to `sa` (and, with `ssl`, a TLS client handshake after it;
 * `ssl` is taken in any case). The write timeout bounds the connect and the handshake; the
 * event callback sees SY_SOCK_CONNECTED once both are done, or an error (a refusal found at
 * once is reported through the callback too). Output queued before that is written after.
 * Returns 0 and the socket in *out, or an errno value when no connect could start. */
int sy_sock_connect(struct sy_sock_loop *l, const struct sockaddr *sa, socklen_t salen, SSL *ssl,
                    struct sy_sock **out);

/** Closes the descriptor and frees the buffers and the SSL, whatever is still queued. With
 * TLS after a finished handshake, the session stays resumable (no close_notify is sent, as
 * with bufferevents). Safe inside the socket's own callbacks. NULL: no-op. */
void sy_sock_free(struct sy_sock *s);

/** The callbacks and their argument. `rd` runs after bytes were read; `wr` after a write left
 * the output at or below the write low watermark; `ev` with SY_SOCK_* flags. Any may be NULL.
 * On EOF, an error or a timeout the direction concerned is disabled before `ev` runs. */
void sy_sock_setcb(struct sy_sock *s, sy_sock_data_cb rd, sy_sock_data_cb wr, sy_sock_event_cb ev,
                   void *arg);
/** Enables or disables EV_READ and/or EV_WRITE. Enabling restarts that direction's timeout. */
void sy_sock_enable(struct sy_sock *s, short what);
void sy_sock_disable(struct sy_sock *s, short what);
/** The read and write timeouts (NULL: none). A read timeout counts while reading is enabled
 * and not held by the high watermark; a write timeout while output waits for the socket (and
 * during a connect). Each restarts on progress. */
void sy_sock_set_timeouts(struct sy_sock *s, const struct timeval *rd, const struct timeval *wr);
/** Reading pauses while the input holds `high` bytes or more (0: never) and resumes when it
 * drains below. */
void sy_sock_set_read_high(struct sy_sock *s, size_t high);
/** Eager: output added by a callback of any socket is written as that callback returns (else
 * at the end of the loop pass, with what later callbacks add to it). For a peer that can
 * start on its part at once: a cluster's HTTP/1.1 connection, a client's HTTP/1.1 one. */
void sy_sock_set_eager(struct sy_sock *s, bool eager);
/** The write callback runs when a write leaves at most `low` bytes queued. */
void sy_sock_set_write_low(struct sy_sock *s, size_t low);
/** The most one read event takes, and (when smaller) the first read into an empty input:
 * a small first read keeps idle connections from holding big chains; a read that fills it
 * reads on at once. */
void sy_sock_set_read_max(struct sy_sock *s, size_t max, size_t first);
/** The most one write takes. */
void sy_sock_set_write_max(struct sy_sock *s, size_t max);

/** The buffers: the caller drains the input and adds to the output; both are valid until
 * sy_sock_free. */
struct evbuffer *sy_sock_input(struct sy_sock *s);
struct evbuffer *sy_sock_output(struct sy_sock *s);
int sy_sock_fd(const struct sy_sock *s);
/** The TLS connection, or NULL for cleartext (borrowed). */
SSL *sy_sock_ssl(const struct sy_sock *s);
/** The errno of the last SY_SOCK_ERROR (0: the peer closed). */
int sy_sock_error(const struct sy_sock *s);
/** The first OpenSSL error of the last TLS failure, or 0; cleared by reading it. */
unsigned long sy_sock_tls_error(struct sy_sock *s);
/** With TLS: whether ALPN chose `proto`. Cleartext: true. */
bool sy_sock_alpn_is(const struct sy_sock *s, const char *proto);

#endif
