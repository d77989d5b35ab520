/* SPDX-License-Identifier: MIT */
/* The connection layer of the data path (sock.h): a non-blocking socket with two persistent
 * events (read, write), an input and an output evbuffer, and OpenSSL directly on the socket.
 * The key idea is write-through: bytes added to the output during a loop pass put the socket
 * on its loop's list (an evbuffer callback), and one zero-delay event at the end of that pass
 * writes each listed socket once (an eager socket is on a second list, written as each socket
 * callback returns, so that its peer starts on the data while this thread handles the rest of
 * the pass; output added outside a socket callback waits for a second zero-delay event); the write
 * event is armed only for what the socket did not take, so a response costs one send and no epoll
 * change. Reads take up to read_max in one readv (no FIONREAD, unlike libevent 2.1's bufferevents),
 * within the read high watermark. Callbacks run straight from the event handlers; a socket freed
 * inside one is only marked (busy), and released when the handler unwinds. */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

#include "switchyard/base.h"

/* One TLS record: what an SSL_write takes at once (a smaller first chunk is pulled up to it,
 * so that a head and its body go out in one record and one write). */
#define TLS_RECORD 16384

struct sy_sock_loop {
    struct event_base *base;
    struct event *run_ev, *now_ev;
    struct sy_sock *list;     /* sockets with output to write at the end of this pass */
    struct sy_sock *now_list; /* eager sockets: written when the current callback returns */
};

struct sy_sock {
    struct sy_sock_loop *loop;
    int fd;
    SSL *ssl;
    struct event *ev_read, *ev_write; /* persistent, without timeouts */
    struct event *ev_timer;           /* both directions' timeouts, lazily (see schedule) */
    uint64_t rd_due, wr_due;          /* µs, monotonic: when the armed direction times out (0:
                                         no timeout) */
    uint64_t timer_due;               /* when ev_timer fires (0: not pending) */
    struct evbuffer *in, *out;
    struct evbuffer_cb_entry *in_cb, *out_cb; /* in_cb: only while suspended */
    sy_sock_data_cb rd_cb, wr_cb;
    sy_sock_event_cb ev_cb;
    void *arg;
    struct timeval tv_read, tv_write;
    bool has_tv_read, has_tv_write;
    short enabled;
    bool rd_armed, wr_armed;
    bool connecting, handshaking;
    bool hs_want_write; /* the handshake waits for EV_WRITE (else EV_READ) */
    bool blocked;       /* the last write left output: the write event waits for room */
    bool suspended;     /* reading held by the high watermark */
    bool rd_want_write; /* SSL_read needs the socket writable */
    bool wr_want_read;  /* SSL_write needs the socket readable */
    bool queued;        /* on the loop's write-through list */
    bool eager;         /* on now_list: written after the callback that filled it */
    bool refused;       /* the connect failed at once: reported from the write event */
    bool dead;          /* freed inside a callback */
    bool read_big;      /* the last read into an empty input was big: the next goes straight in */
    int busy;           /* callbacks on the stack */
    size_t read_high, write_low, read_max, read_first, write_max;
    int err;
    unsigned long tls_err;
    struct sy_sock *next; /* the loop's list */
    max_align_t ev_mem[]; /* the three events (event_get_struct_event_size each) */
};

static void arm(struct sy_sock *s);
static void retime(struct sy_sock *s, bool rd, bool wr);

/* ---- callbacks, guarded against a free inside them ---- */

static bool release_if_dead(struct sy_sock *s)
{
    if (!s->dead)
        return false;
    if (s->busy == 0)
        free(s);
    return true;
}

/* Each returns false when the socket was freed inside the callback. */
static bool call_data(struct sy_sock *s, sy_sock_data_cb cb)
{
    if (!cb)
        return true;
    s->busy++;
    cb(s, s->arg);
    s->busy--;
    return !release_if_dead(s);
}

static bool call_event(struct sy_sock *s, short what)
{
    if (!s->ev_cb)
        return true;
    s->busy++;
    errno = s->err;
    s->ev_cb(s, what, s->arg);
    s->busy--;
    return !release_if_dead(s);
}

/* EOF, an error or a timeout in one direction: that direction stops, then the user hears. */
static bool stop_dir(struct sy_sock *s, short what, int err)
{
    s->err = err;
    s->enabled &= (short)~((what & SY_SOCK_READING) ? EV_READ : EV_WRITE);
    arm(s);
    return call_event(s, what);
}

/* ---- timeouts ----
 * The read and write events carry no timeout: a timeout restarts on every event and on most
 * state changes (a request restarts them about five times), and each restart of a libevent
 * timer is a heap update of some 250 instructions. Instead each direction keeps the time it
 * is due, and one timer per socket fires no later than the earlier of the two; a restart only
 * moves the due time later, which costs nothing until the timer fires early, finds nothing
 * due and is set again for what is. */

static uint64_t tv_us(const struct timeval *tv)
{
    return (uint64_t)tv->tv_sec * 1000000u + (uint64_t)tv->tv_usec;
}

/* The timer fires by the earlier due time (it may fire earlier still: timer_cb looks). */
static void schedule(struct sy_sock *s, uint64_t now)
{
    uint64_t next = s->rd_due;
    if (s->wr_due && (!next || s->wr_due < next))
        next = s->wr_due;
    if (!next || (s->timer_due && s->timer_due <= next))
        return;
    uint64_t wait = next > now ? next - now : 0;
    struct timeval tv = {(time_t)(wait / 1000000u), (suseconds_t)(wait % 1000000u)};
    event_add(s->ev_timer, &tv);
    s->timer_due = next;
}

/* A direction's timeout starts again (`timed` false: it has none). */
static void set_due(struct sy_sock *s, uint64_t *due, bool timed, const struct timeval *tv)
{
    if (!timed) {
        *due = 0;
        return;
    }
    uint64_t now = sy_clock_us();
    *due = now + tv_us(tv);
    if (!*due)
        *due = 1;
    schedule(s, now);
}

/* The timeout each direction has in the socket's state: a handshake has the connect's. */
static void read_timeout(const struct sy_sock *s, bool *timed, const struct timeval **tv)
{
    *timed = s->handshaking ? s->has_tv_write : s->has_tv_read;
    *tv = s->handshaking ? &s->tv_write : &s->tv_read;
}

static void restart_read(struct sy_sock *s)
{
    bool timed;
    const struct timeval *tv;
    read_timeout(s, &timed, &tv);
    set_due(s, &s->rd_due, s->rd_armed && timed, tv);
}

static void restart_write(struct sy_sock *s)
{
    set_due(s, &s->wr_due, s->wr_armed && s->has_tv_write, &s->tv_write);
}

/* ---- arming ---- */

/* True when the event was not pending (its timeout then starts: restart_read/_write). */
static bool add_ev(struct event *ev, bool *armed)
{
    if (*armed)
        return false;
    event_add(ev, NULL);
    *armed = true;
    return true;
}

static void del_ev(struct event *ev, bool *armed, uint64_t *due)
{
    *due = 0;
    if (!*armed)
        return;
    event_del(ev);
    *armed = false;
}

/* Which events the socket's state needs, applied (an event already pending keeps its timer). */
static void arm(struct sy_sock *s)
{
    if (s->dead)
        return;
    bool want_r, want_w;
    if (s->connecting) {
        want_r = false;
        want_w = true;
    } else if (s->handshaking) {
        /* The connect deadline (the write timeout) bounds the handshake, whichever way it
         * waits; a server's handshake has its own deadline (tls.c). */
        want_r = !s->hs_want_write;
        want_w = s->hs_want_write;
    } else {
        want_r = ((s->enabled & EV_READ) && !s->suspended) || s->wr_want_read;
        /* An SSL_write that waits for a read is retried by the read event, not spun on. */
        want_w = ((s->enabled & EV_WRITE) && s->blocked && evbuffer_get_length(s->out) > 0 &&
                  !s->wr_want_read) ||
                 s->rd_want_write;
    }
    bool was_r = s->rd_armed;
    if (want_r) {
        if (add_ev(s->ev_read, &s->rd_armed))
            restart_read(s);
    } else {
        del_ev(s->ev_read, &s->rd_armed, &s->rd_due);
    }
    if (want_w) {
        if (add_ev(s->ev_write, &s->wr_armed))
            restart_write(s);
    } else {
        del_ev(s->ev_write, &s->wr_armed, &s->wr_due);
    }
    /* Records OpenSSL has read already make no socket event: look at them now. */
    if (want_r && !was_r && s->ssl && !s->handshaking && SSL_has_pending(s->ssl))
        event_active(s->ev_read, EV_READ, 0);
}

/* ---- write-through ---- */

static void wt_queue(struct sy_sock *s)
{
    if (s->queued || s->dead)
        return;
    s->queued = true;
    struct sy_sock_loop *l = s->loop;
    struct sy_sock **list = s->eager ? &l->now_list : &l->list;
    if (!*list)
        event_active(s->eager ? l->now_ev : l->run_ev, EV_WRITE, 0);
    s->next = *list;
    *list = s;
}

static void wt_unqueue(struct sy_sock *s)
{
    if (!s->queued)
        return;
    for (struct sy_sock **pp = s->eager ? &s->loop->now_list : &s->loop->list; *pp;
         pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    s->queued = false;
    s->next = NULL;
}

static void out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct sy_sock *s = arg;
    if (info->n_added && !s->connecting && !s->handshaking && !s->blocked && !s->wr_want_read)
        wt_queue(s);
}

/* Reading resumes, and the input's callback goes: every change to a buffer with a callback
 * runs libevent's callback machinery (some 50 instructions), and the input changes a few
 * times a request. */
static void resume(struct sy_sock *s)
{
    s->suspended = false;
    if (s->in_cb) {
        evbuffer_remove_cb_entry(s->in, s->in_cb);
        s->in_cb = NULL;
    }
    arm(s);
}

/* The input drained below the high watermark: reading resumes. */
static void in_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct sy_sock *s = arg;
    if (info->n_deleted && s->suspended && evbuffer_get_length(buf) < s->read_high)
        resume(s);
}

/* The input reached the high watermark: reading stops until in_cb sees it drained (without
 * the memory for that callback, reading goes on). */
static void suspend(struct sy_sock *s)
{
    if (!s->in_cb)
        s->in_cb = evbuffer_add_cb(s->in, in_cb, s);
    s->suspended = s->in_cb != NULL;
}

/* ---- writing ---- */

/* One SSL_write of the output's front, a chunk of at most a record: bytes written, or -1 with
 * errno (EAGAIN also when TLS waits for a read). */
static ssize_t tls_write(struct sy_sock *s, size_t max)
{
    size_t len = evbuffer_get_length(s->out);
    size_t want = len < max ? len : max;
    if (want > TLS_RECORD)
        want = TLS_RECORD;
    struct evbuffer_iovec v;
    if (evbuffer_peek(s->out, -1, NULL, &v, 1) < 1)
        return 0;
    const void *p = v.iov_base;
    if (v.iov_len < want)
        p = evbuffer_pullup(s->out, (ev_ssize_t)want);
    size_t n = 0;
    ERR_clear_error();
    if (p && SSL_write_ex(s->ssl, p, want, &n)) {
        evbuffer_drain(s->out, n);
        return (ssize_t)n;
    }
    int e = SSL_get_error(s->ssl, 0);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        s->wr_want_read = e == SSL_ERROR_WANT_READ;
        errno = EAGAIN;
        return -1;
    }
    s->tls_err = ERR_peek_error();
    if (e != SSL_ERROR_SYSCALL || errno == 0)
        errno = EPIPE;
    return -1;
}

/* Cleartext: the output's front, at most `max` bytes, in one system call. One extent goes by
 * send, which is a shorter way through the kernel than writev (no file position lock, no iovec
 * copied in). So do a few small extents (a rebuilt head and a short body: most answers),
 * gathered on the stack first: copying a few hundred bytes costs less than the longer path.
 * More or bigger go by writev. Returns what the call returned. */
#define WRITE_IOV    128  /* as libevent's writev: an HTTP/2 pass can queue a hundred extents */
#define WRITE_GATHER 2048 /* the most bytes gathered into one send */
static ssize_t plain_write(struct sy_sock *s, size_t max)
{
    struct evbuffer_iovec v[WRITE_IOV];
    int n = evbuffer_peek(s->out, (ev_ssize_t)max, NULL, v, WRITE_IOV);
    if (n <= 0)
        return 0;
    if (n > WRITE_IOV)
        n = WRITE_IOV;
    size_t total = evbuffer_get_length(s->out);
    ssize_t r;
    if (n == 1) {
        r = send(s->fd, v[0].iov_base, v[0].iov_len < max ? v[0].iov_len : max, MSG_NOSIGNAL);
    } else if (total <= WRITE_GATHER && total <= max) {
        char buf[WRITE_GATHER];
        size_t at = 0;
        for (int k = 0; k < n; k++) {
            memcpy(buf + at, v[k].iov_base, v[k].iov_len);
            at += v[k].iov_len;
        }
        r = send(s->fd, buf, at, MSG_NOSIGNAL);
    } else {
        struct iovec iov[WRITE_IOV];
        size_t left = max;
        int k = 0;
        for (; k < n && left; k++) {
            size_t len = v[k].iov_len < left ? v[k].iov_len : left;
            iov[k] = (struct iovec){v[k].iov_base, len};
            left -= len;
        }
        r = writev(s->fd, iov, k);
    }
    if (r > 0)
        evbuffer_drain(s->out, (size_t)r);
    return r;
}

/* Writes once (TLS: a few records within write_max, one write per record). False when the
 * socket was freed by a callback. */
static bool do_write(struct sy_sock *s)
{
    if (!(s->enabled & EV_WRITE) || evbuffer_get_length(s->out) == 0) {
        s->blocked = false;
        arm(s);
        return true;
    }
    ssize_t n;
    if (s->ssl) {
        n = 0;
        while ((size_t)n < s->write_max && evbuffer_get_length(s->out) > 0) {
            ssize_t m = tls_write(s, s->write_max - (size_t)n);
            if (m <= 0) {
                if (n == 0)
                    n = m;
                break;
            }
            n += m;
        }
    } else {
        n = plain_write(s, s->write_max);
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return stop_dir(s, SY_SOCK_WRITING | SY_SOCK_ERROR, errno);
    s->blocked = evbuffer_get_length(s->out) > 0;
    arm(s);
    if (n > 0 && evbuffer_get_length(s->out) <= s->write_low)
        return call_data(s, s->wr_cb);
    return true;
}

static void write_list(struct sy_sock **list)
{
    while (*list) {
        struct sy_sock *s = *list;
        *list = s->next;
        s->next = NULL;
        s->queued = false;
        do_write(s);
    }
}

static void run_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_sock_loop *l = arg;
    sy_clock_hold();
    write_list(&l->list);
    sy_clock_release();
}

static void now_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_sock_loop *l = arg;
    sy_clock_hold();
    write_list(&l->now_list);
    sy_clock_release();
}

/* ---- reading ---- */

/* One readv into the input's tail, at most `want` bytes: what readv returned. */
static ssize_t read_into(struct evbuffer *in, int fd, size_t want)
{
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    if (nv <= 0) {
        errno = ENOMEM;
        return -1;
    }
    /* The reserved extents may be longer than asked: read no more than `want`. */
    struct iovec iov[2];
    size_t left = want;
    for (int i = 0; i < nv; i++) {
        size_t n = v[i].iov_len < left ? v[i].iov_len : left;
        iov[i] = (struct iovec){v[i].iov_base, n};
        v[i].iov_len = n;
        left -= n;
    }
    ssize_t r = nv == 1 ? recv(fd, iov[0].iov_base, iov[0].iov_len, 0) : readv(fd, iov, nv);
    size_t got = r > 0 ? (size_t)r : 0;
    int used = 0;
    for (int i = 0; i < nv && got; i++, used++) {
        if (v[i].iov_len > got)
            v[i].iov_len = got;
        got -= v[i].iov_len;
    }
    evbuffer_commit_space(in, v, used);
    return r;
}

/* Into an empty input: one read into the thread's scratch buffer, then only what came is
 * added, in a chain of its own size. Reading straight into reserved space costs a chain of
 * `want` (32 KiB) per read, allocated and freed again for every small answer or request. */
static ssize_t read_via_scratch(struct evbuffer *in, int fd, size_t want)
{
    static _Thread_local char scratch[SY_SOCK_READ_MAX];
    if (want > sizeof(scratch))
        want = sizeof(scratch);
    ssize_t r = recv(fd, scratch, want, 0);
    if (r > 0 && evbuffer_add(in, scratch, (size_t)r) != 0) {
        errno = ENOMEM;
        return -1;
    }
    return r;
}

/* A read into an empty input of at least this many bytes makes the socket's next such read go
 * straight into reserved space: for a large body the scratch buffer's copy (a whole 16 KiB
 * answer, say) costs more than the chain sized for `want`, and a socket that carried one big
 * read is likely to carry another. */
#define BIG_READ 4096

/* Cleartext: one read (two when a small first read into an empty input fills up). */
static ssize_t plain_read(struct sy_sock *s, size_t have, size_t want, short *end)
{
    ssize_t r;
    size_t now = want;
    if (have > 0 || s->read_big) {
        r = read_into(s->in, s->fd, now);
    } else {
        if (s->read_first < want)
            now = s->read_first;
        r = read_via_scratch(s->in, s->fd, now);
    }
    if (r == (ssize_t)now && now < want) {
        /* Filled: read on. Whatever ends this second read the next event sees again. */
        ssize_t more = read_into(s->in, s->fd, want - now);
        if (more > 0)
            r += more;
    }
    if (have == 0)
        s->read_big = r >= BIG_READ; /* an EAGAIN (a reservation left behind) too: small */
    if (r == 0)
        *end = SY_SOCK_EOF;
    else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        *end = SY_SOCK_ERROR;
    return r > 0 ? r : 0;
}

/* TLS: SSL_read into reserved space until `want` bytes, or what OpenSSL's read-ahead buffer
 * held is taken. */
static ssize_t tls_read(struct sy_sock *s, size_t want, short *end)
{
    size_t got = 0;
    while (got < want) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(s->in, (ev_ssize_t)(want - got), &v, 1) < 1) {
            errno = ENOMEM;
            *end = SY_SOCK_ERROR;
            break;
        }
        size_t n = 0;
        ERR_clear_error();
        int ok =
            SSL_read_ex(s->ssl, v.iov_base, v.iov_len < want - got ? v.iov_len : want - got, &n);
        v.iov_len = ok ? n : 0;
        evbuffer_commit_space(s->in, &v, ok ? 1 : 0);
        if (ok) {
            got += n;
            /* Read ahead, OpenSSL asked the socket for a whole buffer: with nothing of it
             * left, the socket had no more (an EAGAIN read saved; the next event says). */
            if (!SSL_has_pending(s->ssl))
                break;
            continue;
        }
        int e = SSL_get_error(s->ssl, 0);
        if (e == SSL_ERROR_WANT_WRITE)
            s->rd_want_write = true;
        else if (e == SSL_ERROR_ZERO_RETURN)
            *end = SY_SOCK_EOF;
        else if (e != SSL_ERROR_WANT_READ) {
            s->tls_err = ERR_peek_error();
            if (e == SSL_ERROR_SYSCALL && errno == 0) {
                *end = SY_SOCK_EOF;
            } else {
                if (e != SSL_ERROR_SYSCALL)
                    errno = EPROTO;
                *end = SY_SOCK_ERROR;
            }
        }
        break;
    }
    if (*end == 0 && got >= want && SSL_has_pending(s->ssl) && !s->suspended)
        event_active(s->ev_read, EV_READ, 0); /* the rest on the next turn */
    return (ssize_t)got;
}

static void do_read(struct sy_sock *s)
{
    size_t have = evbuffer_get_length(s->in);
    size_t want = s->read_max;
    if (s->read_high) {
        if (have >= s->read_high) {
            suspend(s);
            if (s->suspended) {
                arm(s);
                return;
            }
        }
        if (want > s->read_high - have)
            want = s->read_high - have;
    }
    short end = 0;
    ssize_t r = s->ssl ? tls_read(s, want, &end) : plain_read(s, have, want, &end);
    int err = errno;
    if (s->read_high && evbuffer_get_length(s->in) >= s->read_high)
        suspend(s);
    if (s->rd_want_write || s->suspended)
        arm(s);
    if (r > 0 && !call_data(s, s->rd_cb))
        return;
    if (end && (s->enabled & EV_READ))
        stop_dir(s, SY_SOCK_READING | end, end == SY_SOCK_EOF ? 0 : err);
}

/* ---- connect and handshake ---- */

static void handshake(struct sy_sock *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->handshaking = false;
        /* Re-armed afresh: the handshake's deadline gives way to the read and write timeouts,
         * and records that came with the handshake are looked at. */
        del_ev(s->ev_read, &s->rd_armed, &s->rd_due);
        del_ev(s->ev_write, &s->wr_armed, &s->wr_due);
        arm(s);
        if (!call_event(s, SY_SOCK_CONNECTED))
            return;
        if (evbuffer_get_length(s->out) > 0)
            do_write(s);
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        bool ww = e == SSL_ERROR_WANT_WRITE;
        if (ww != s->hs_want_write) {
            del_ev(s->ev_read, &s->rd_armed, &s->rd_due);
            del_ev(s->ev_write, &s->wr_armed, &s->wr_due);
            s->hs_want_write = ww;
        }
        arm(s);
        return;
    }
    s->tls_err = ERR_peek_error();
    int err = e == SSL_ERROR_SYSCALL && errno ? errno : EPROTO;
    s->handshaking = false;
    s->enabled = 0;
    s->err = err;
    arm(s);
    call_event(s, SY_SOCK_ERROR | (s->hs_want_write ? SY_SOCK_WRITING : SY_SOCK_READING));
}

static void connected(struct sy_sock *s)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (s->refused)
        err = ECONNREFUSED;
    else if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err == EINPROGRESS)
        return;
    s->connecting = false;
    if (err) {
        s->enabled = 0;
        s->err = err;
        arm(s);
        call_event(s, SY_SOCK_ERROR | SY_SOCK_WRITING);
        return;
    }
    if (s->ssl) {
        s->handshaking = true;
        s->hs_want_write = true;
        del_ev(s->ev_write, &s->wr_armed, &s->wr_due);
        handshake(s);
        return;
    }
    del_ev(s->ev_write, &s->wr_armed, &s->wr_due);
    arm(s);
    if (!call_event(s, SY_SOCK_CONNECTED))
        return;
    if (evbuffer_get_length(s->out) > 0)
        do_write(s);
}

/* ---- events ---- */

static void read_ev(struct sy_sock *s, short what)
{
    if (what & EV_READ)
        restart_read(s);
    if (what & EV_TIMEOUT) {
        if (s->handshaking) {
            /* The connect deadline ran out during the handshake. */
            s->handshaking = false;
            s->enabled = 0;
            stop_dir(s, SY_SOCK_WRITING | SY_SOCK_TIMEOUT, ETIMEDOUT);
            return;
        }
        stop_dir(s, SY_SOCK_READING | SY_SOCK_TIMEOUT, ETIMEDOUT);
        return;
    }
    if (s->handshaking) {
        handshake(s);
        return;
    }
    if (s->wr_want_read) {
        s->wr_want_read = false;
        s->busy++;
        do_write(s);
        s->busy--;
        if (release_if_dead(s))
            return;
    }
    if ((s->enabled & EV_READ) && !s->suspended)
        do_read(s);
    else
        arm(s);
}

static void write_ev(struct sy_sock *s, short what)
{
    if (what & EV_WRITE)
        restart_write(s);
    if (what & EV_TIMEOUT) {
        if (s->connecting || s->handshaking) {
            s->connecting = s->handshaking = false;
            s->enabled = 0;
        }
        stop_dir(s, SY_SOCK_WRITING | SY_SOCK_TIMEOUT, ETIMEDOUT);
        return;
    }
    if (s->connecting) {
        connected(s);
        return;
    }
    if (s->handshaking) {
        handshake(s);
        return;
    }
    if (s->rd_want_write) {
        s->rd_want_write = false;
        s->busy++;
        do_read(s);
        s->busy--;
        if (release_if_dead(s))
            return;
    }
    do_write(s);
}

/* The eager sockets a callback gave output are written as it returns (the socket itself may
 * be gone by then; its loop is not). */
static void read_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_sock *s = arg;
    struct sy_sock_loop *l = s->loop;
    sy_clock_hold();
    read_ev(s, what);
    write_list(&l->now_list);
    sy_clock_release();
}

static void write_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_sock *s = arg;
    struct sy_sock_loop *l = s->loop;
    sy_clock_hold();
    write_ev(s, what);
    write_list(&l->now_list);
    sy_clock_release();
}

/* Whichever direction is due times out (its timeout starts again, as a persistent event's
 * would, unless the report disarms it); the timer is set again for what is not due yet. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_sock *s = arg;
    struct sy_sock_loop *l = s->loop;
    s->timer_due = 0;
    sy_clock_hold();
    uint64_t now = sy_clock_us();
    s->busy++;
    if (s->rd_due && s->rd_due <= now) {
        restart_read(s);
        read_ev(s, EV_TIMEOUT);
    }
    if (!s->dead && s->wr_due && s->wr_due <= now) {
        restart_write(s);
        write_ev(s, EV_TIMEOUT);
    }
    s->busy--;
    if (!release_if_dead(s))
        schedule(s, now);
    write_list(&l->now_list);
    sy_clock_release();
}

/* ---- construction ---- */

/* What sock_new made, on its failure (the caller closes the descriptor and frees the SSL). */
static void sock_release(struct sy_sock *s)
{
    if (s->in)
        evbuffer_free(s->in);
    if (s->out)
        evbuffer_free(s->out);
    free(s);
}

static struct sy_sock *sock_new(struct sy_sock_loop *l, int fd, SSL *ssl)
{
    /* The events live in the socket's own block: one allocation, not four. */
    size_t evsize = event_get_struct_event_size();
    evsize = (evsize + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    struct sy_sock *s = calloc(1, sizeof(*s) + 3 * evsize);
    if (!s)
        return NULL;
    s->ev_read = (struct event *)(void *)s->ev_mem;
    s->ev_write = (struct event *)(void *)((char *)s->ev_mem + evsize);
    s->ev_timer = (struct event *)(void *)((char *)s->ev_mem + 2 * evsize);
    s->loop = l;
    s->fd = fd;
    s->ssl = ssl;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    if (!s->in || !s->out) {
        sock_release(s);
        return NULL;
    }
    s->out_cb = evbuffer_add_cb(s->out, out_cb, s);
    if (!s->out_cb) {
        sock_release(s);
        return NULL;
    }
    if (event_assign(s->ev_read, l->base, fd, EV_READ | EV_PERSIST, read_ev_cb, s) != 0 ||
        event_assign(s->ev_write, l->base, fd, EV_WRITE | EV_PERSIST, write_ev_cb, s) != 0 ||
        event_assign(s->ev_timer, l->base, -1, 0, timer_cb, s) != 0) {
        sock_release(s);
        return NULL;
    }
    s->read_max = s->read_first = SY_SOCK_READ_MAX;
    s->write_max = 256 * 1024;
    if (ssl) {
        SSL_set_fd(ssl, fd);
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* One read of the socket per buffer, not two per record (header, then body). */
        SSL_set_read_ahead(ssl, 1);
    }
    return s;
}

struct sy_sock *sy_sock_accepted(struct sy_sock_loop *l, int fd, SSL *ssl)
{
    struct sy_sock *s = sock_new(l, fd, ssl);
    if (!s) {
        if (ssl)
            SSL_free(ssl);
        close(fd);
        return NULL;
    }
    if (ssl) {
        /* A client's connection spends most of its life idle: OpenSSL gives back its record
         * buffers (about 34 KB with read-ahead) whenever they are empty, as nginx has it. */
        SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
        SSL_set_accept_state(ssl);
        s->handshaking = true;
        s->hs_want_write = false;
        arm(s);
    }
    return s;
}

int sy_sock_connect(struct sy_sock_loop *l, const struct sockaddr *sa, socklen_t salen, SSL *ssl,
                    struct sy_sock **out)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        int err = errno;
        if (ssl)
            SSL_free(ssl);
        return err;
    }
    int r = connect(fd, sa, salen);
    int err = r == 0 ? 0 : errno;
    if (r == -1 && err != EINPROGRESS && err != EINTR && err != ECONNREFUSED) {
        if (ssl)
            SSL_free(ssl);
        close(fd);
        return err;
    }
    struct sy_sock *s = sock_new(l, fd, ssl);
    if (!s) {
        if (ssl)
            SSL_free(ssl);
        close(fd);
        return ENOMEM;
    }
    if (ssl)
        SSL_set_connect_state(ssl);
    s->connecting = true;
    s->refused = err == ECONNREFUSED;
    arm(s);
    if (r == 0 || s->refused)
        event_active(s->ev_write, EV_WRITE, 0); /* reported from the loop, callbacks set */
    *out = s;
    return 0;
}

void sy_sock_free(struct sy_sock *s)
{
    if (!s || s->dead)
        return;
    wt_unqueue(s);
    event_del(s->ev_read);
    event_del(s->ev_write);
    event_del(s->ev_timer);
    if (s->ssl) {
        /* Without SSL_shutdown OpenSSL drops the session of a connection from the cache (it
         * cannot tell a close from a cut); a fatal alert has dropped it already. */
        if (SSL_is_init_finished(s->ssl))
            SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    close(s->fd);
    s->fd = -1;
    evbuffer_free(s->in);
    evbuffer_free(s->out);
    s->in = s->out = NULL;
    s->dead = true;
    if (s->busy == 0)
        free(s);
}

/* ---- settings and accessors ---- */

void sy_sock_setcb(struct sy_sock *s, sy_sock_data_cb rd, sy_sock_data_cb wr, sy_sock_event_cb ev,
                   void *arg)
{
    s->rd_cb = rd;
    s->wr_cb = wr;
    s->ev_cb = ev;
    s->arg = arg;
}

void sy_sock_enable(struct sy_sock *s, short what)
{
    bool was_r = s->rd_armed, was_w = s->wr_armed;
    s->enabled |= what & (EV_READ | EV_WRITE);
    if ((what & EV_WRITE) && evbuffer_get_length(s->out) > 0 && !s->blocked && !s->connecting &&
        !s->handshaking)
        wt_queue(s);
    arm(s);
    /* Enabling restarts the timeout of an event that was pending already. */
    if (!s->connecting && !s->handshaking)
        retime(s, (what & EV_READ) && was_r, (what & EV_WRITE) && was_w);
}

void sy_sock_disable(struct sy_sock *s, short what)
{
    s->enabled &= (short)~(what & (EV_READ | EV_WRITE));
    arm(s);
}

/* The timers of the pending events restart with the timeouts the state calls for. */
static void retime(struct sy_sock *s, bool rd, bool wr)
{
    if (s->dead)
        return;
    /* A handshake has one deadline, the connect's (read_timeout). */
    if (rd)
        restart_read(s);
    if (wr)
        restart_write(s);
}

void sy_sock_set_timeouts(struct sy_sock *s, const struct timeval *rd, const struct timeval *wr)
{
    s->has_tv_read = rd != NULL;
    if (rd)
        s->tv_read = *rd;
    s->has_tv_write = wr != NULL;
    if (wr)
        s->tv_write = *wr;
    retime(s, true, true);
}

void sy_sock_set_read_high(struct sy_sock *s, size_t high)
{
    s->read_high = high;
    if (s->suspended && (high == 0 || evbuffer_get_length(s->in) < high))
        resume(s);
}

void sy_sock_set_eager(struct sy_sock *s, bool eager)
{
    if (s->eager == eager)
        return;
    bool queued = s->queued;
    wt_unqueue(s);
    s->eager = eager;
    if (queued)
        wt_queue(s);
}

void sy_sock_set_write_low(struct sy_sock *s, size_t low)
{
    s->write_low = low;
}

void sy_sock_set_read_max(struct sy_sock *s, size_t max, size_t first)
{
    s->read_max = max ? max : 1;
    s->read_first = first && first < s->read_max ? first : s->read_max;
}

void sy_sock_set_write_max(struct sy_sock *s, size_t max)
{
    s->write_max = max ? max : 1;
}

struct evbuffer *sy_sock_input(struct sy_sock *s)
{
    return s->in;
}

struct evbuffer *sy_sock_output(struct sy_sock *s)
{
    return s->out;
}

int sy_sock_fd(const struct sy_sock *s)
{
    return s->fd;
}

SSL *sy_sock_ssl(const struct sy_sock *s)
{
    return s->ssl;
}

int sy_sock_error(const struct sy_sock *s)
{
    return s->err;
}

unsigned long sy_sock_tls_error(struct sy_sock *s)
{
    unsigned long e = s->tls_err;
    s->tls_err = 0;
    return e;
}

bool sy_sock_alpn_is(const struct sy_sock *s, const char *proto)
{
    if (!s->ssl)
        return true;
    const unsigned char *sel = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(s->ssl, &sel, &len);
    return len == strlen(proto) && memcmp(sel, proto, len) == 0;
}

struct sy_sock_loop *sy_sock_loop_new(struct event_base *base)
{
    struct sy_sock_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->base = base;
    l->run_ev = event_new(base, -1, 0, run_cb, l);
    l->now_ev = event_new(base, -1, 0, now_cb, l);
    if (!l->run_ev || !l->now_ev) {
        sy_sock_loop_free(l);
        return NULL;
    }
    return l;
}

void sy_sock_loop_free(struct sy_sock_loop *l)
{
    if (!l)
        return;
    if (l->run_ev)
        event_free(l->run_ev);
    if (l->now_ev)
        event_free(l->now_ev);
    free(l);
}
