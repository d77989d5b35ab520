/* SPDX-License-Identifier: MIT */
/* Unit tests for the connection layer (proxy/sock.c, included) over socketpairs and a loopback
 * listener: reads reach the read callback, output queued in a loop pass is written at its end
 * (once, write callback after) or, for an eager socket, as the callback that queued it returns,
 * what the socket does not take waits for EV_WRITE and the write
 * callback comes at the low watermark, the read high watermark pauses and resumes reading, the
 * read and write timeouts (restarted by progress, changed, taken away) and the peer's close
 * reach the event callback, a connect is reported, and a TLS
 * handshake (a self-signed certificate made here) carries data both ways with ALPN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* sock.c's writev calls, counted: which way a write went through the kernel. */
static int writev_calls;
static ssize_t counting_writev(int fd, const struct iovec *iov, int n)
{
    writev_calls++;
    return writev(fd, iov, n);
}
#define writev(...) counting_writev(__VA_ARGS__)

#include "../../../proxy/sock.c"

struct rec {
    struct event_base *base;
    int reads, writes, events;
    short last;
    bool drain;      /* the read callback empties the input */
    bool stop_on_rd; /* leave the loop after a read */
};

static void rec_read(struct sy_sock *s, void *arg)
{
    struct rec *r = arg;
    r->reads++;
    if (r->drain)
        evbuffer_drain(sy_sock_input(s), evbuffer_get_length(sy_sock_input(s)));
    if (r->stop_on_rd)
        event_base_loopbreak(r->base);
}

static void rec_write(struct sy_sock *s, void *arg)
{
    ((struct rec *)arg)->writes++;
}

static void rec_event(struct sy_sock *s, short what, void *arg)
{
    struct rec *r = arg;
    r->events++;
    r->last = what;
    event_base_loopbreak(r->base);
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

static void run_for(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* A socket accepted on one end of a socketpair (the other end, `peer`, plays the client),
 * on its own base and write-through loop. */
struct fix {
    struct event_base *base;
    struct sy_sock_loop *l;
    struct sy_sock *s;
    int peer;
};

static struct fix fix_open(void)
{
    struct fix f = {.base = event_base_new()};
    f.l = sy_sock_loop_new(f.base);
    int sv[2];
    pair(sv);
    f.s = sy_sock_accepted(f.l, sv[0], NULL);
    f.peer = sv[1];
    return f;
}

/* The socket itself is the test's to free (some free it inside a callback). */
static void fix_close(struct fix *f)
{
    if (f->peer >= 0)
        close(f->peer);
    sy_sock_loop_free(f->l);
    event_base_free(f->base);
}

/* A fixture whose socket reports to `r`, with these timeouts (NULL: none), enabled for
 * `what`. */
static struct fix timed_open(struct rec *r, const struct timeval *rd, const struct timeval *wr,
                             short what)
{
    struct fix f = fix_open();
    *r = (struct rec){.base = f.base};
    sy_sock_setcb(f.s, rec_read, rec_write, rec_event, r);
    sy_sock_set_timeouts(f.s, rd, wr);
    sy_sock_enable(f.s, what);
    return f;
}

/* 8 MiB of output: more than a socketpair takes, so the write blocks. */
static void fill_output(struct sy_sock *s)
{
    static char big[1 << 20];
    for (int i = 0; i < 8; i++)
        evbuffer_add(sy_sock_output(s), big, sizeof(big));
}

static void test_read(void **state)
{
    struct fix f = fix_open();
    struct event_base *base = f.base;
    struct sy_sock *s = f.s;
    struct rec r = {.base = base, .stop_on_rd = true};
    sy_sock_setcb(s, rec_read, rec_write, rec_event, &r);
    sy_sock_enable(s, EV_READ | EV_WRITE);
    assert_int_equal(write(f.peer, "hello", 5), 5);
    run_for(base, 500);
    assert_int_equal(r.reads, 1);
    assert_int_equal(evbuffer_get_length(sy_sock_input(s)), 5);
    close(f.peer);
    f.peer = -1;
    run_for(base, 500);
    assert_int_equal(r.events, 1);
    assert_int_equal(r.last, SY_SOCK_READING | SY_SOCK_EOF);
    sy_sock_free(s);
    fix_close(&f);
}

/* Reads into an empty input: a small one goes through the scratch buffer, a client's first
 * read is small and a full one reads on, and after a big read the next goes straight into
 * reserved space (one extent for 20,000 bytes). The bytes arrive intact every way. */
static void read_round(struct fix *f, size_t n, int seed, int extents)
{
    static char out[20000];
    for (size_t i = 0; i < n; i++)
        out[i] = (char)((i * 7 + (size_t)seed) % 251);
    assert_int_equal(write(f->peer, out, n), (ssize_t)n);
    struct evbuffer *in = sy_sock_input(f->s);
    for (int i = 0; i < 20 && evbuffer_get_length(in) < n; i++)
        run_for(f->base, 100);
    assert_int_equal(evbuffer_get_length(in), n);
    assert_int_equal(evbuffer_peek(in, -1, NULL, NULL, 0), extents);
    assert_memory_equal(evbuffer_pullup(in, -1), out, n);
    evbuffer_drain(in, n);
}

static void test_read_sizes(void **state)
{
    struct rec r;
    struct fix f = timed_open(&r, NULL, NULL, EV_READ);
    r.stop_on_rd = true;
    sy_sock_set_read_max(f.s, SY_SOCK_READ_MAX, 1920);
    read_round(&f, 20000, 1, 2); /* 1,920 through the scratch buffer, then the rest */
    assert_true(f.s->read_big);
    read_round(&f, 20000, 2, 1); /* straight in */
    read_round(&f, 10, 3, 1);
    assert_false(f.s->read_big);
    read_round(&f, 20000, 4, 2);
    read_round(&f, 5000, 5, 1);
    sy_sock_free(f.s);
    fix_close(&f);
}

struct wt_case {
    struct sy_sock *s;
    int adds;
};

/* Adds three pieces in one loop pass: they go out in one write at the pass's end. */
static void add_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wt_case *c = arg;
    for (int i = 0; i < 3; i++, c->adds++)
        evbuffer_add(sy_sock_output(c->s), "abc", 3);
}

static void test_write_through(void **state)
{
    struct rec r;
    struct fix f = timed_open(&r, NULL, NULL, EV_READ | EV_WRITE);
    struct event_base *base = f.base;
    struct sy_sock *s = f.s;
    struct wt_case c = {.s = s};
    struct event *ev = evtimer_new(base, add_cb, &c);
    struct timeval zero = {0, 0};
    evtimer_add(ev, &zero);
    run_for(base, 50);
    assert_int_equal(c.adds, 3);
    assert_int_equal(r.writes, 1); /* one write, the callback once */
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), 0);
    char buf[16];
    assert_int_equal(read(f.peer, buf, sizeof(buf)), 9);
    assert_memory_equal(buf, "abcabcabc", 9);
    event_free(ev);
    sy_sock_free(s);
    fix_close(&f);
}

/* `count` pieces of `len` bytes from `p`, each moved in as a chain of its own. */
static void add_extents(struct sy_sock *s, const char *p, int count, size_t len)
{
    for (int i = 0; i < count; i++) {
        struct evbuffer *piece = evbuffer_new();
        evbuffer_add(piece, p + (size_t)i * len, len);
        evbuffer_add_buffer(sy_sock_output(s), piece); /* moves the chain: one extent each */
        evbuffer_free(piece);
    }
}

/* Reads exactly n bytes from the peer and compares them with `want`. */
static void peer_gets(int peer, const char *want, size_t n)
{
    static char got[1 << 16];
    assert_true(n <= sizeof(got));
    for (size_t have = 0; have < n;) {
        ssize_t k = read(peer, got + have, n - have);
        assert_true(k > 0);
        have += (size_t)k;
    }
    assert_memory_equal(got, want, n);
}

/* Output in one extent goes by send, in several by writev (WRITE_IOV at a time): 300 extents
 * of distinct bytes arrive whole and in order. */
static void test_write_many_extents(void **state)
{
    struct rec r;
    struct fix f = timed_open(&r, NULL, NULL, EV_READ | EV_WRITE);
    struct sy_sock *s = f.s;
    enum { EXTENTS = 300, LEN = 100 };
    static char want[EXTENTS * LEN];
    for (int i = 0; i < EXTENTS; i++)
        memset(want + i * LEN, 'A' + i % 26, LEN);
    add_extents(s, want, EXTENTS, LEN);
    assert_true(evbuffer_peek(sy_sock_output(s), -1, NULL, NULL, 0) >= EXTENTS);
    run_for(f.base, 100);
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), 0);
    peer_gets(f.peer, want, sizeof(want));
    /* A hundred extents (an HTTP/2 pass of small answers) go in one system call: a partial
     * write would arm EPOLLOUT and wait a loop turn for the rest. */
    add_extents(s, want, 100, LEN);
    wt_unqueue(s);
    assert_true(do_write(s));
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), 0);
    assert_false(s->blocked);
    peer_gets(f.peer, want, 100 * LEN);
    /* And one extent alone. */
    evbuffer_add(sy_sock_output(s), "single", 6);
    run_for(f.base, 50);
    peer_gets(f.peer, "single", 6);
    sy_sock_free(s);
    fix_close(&f);
}

/* A few small extents (a rebuilt head and a short body) are gathered and go by send, not
 * writev; past WRITE_GATHER bytes, or with more extents than one call takes, writev. The bytes
 * arrive whole and in order every way. */
static void test_write_gather(void **state)
{
    struct rec r;
    struct fix f = timed_open(&r, NULL, NULL, EV_READ | EV_WRITE);
    struct sy_sock *s = f.s;
    static char want[4 * WRITE_GATHER];
    for (size_t i = 0; i < sizeof(want); i++)
        want[i] = (char)('a' + i % 23);

    writev_calls = 0;
    add_extents(s, want, 3, 90); /* 270 bytes in 3 chains */
    wt_unqueue(s);
    assert_true(do_write(s));
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), 0);
    assert_int_equal(writev_calls, 0);
    peer_gets(f.peer, want, 270);

    add_extents(s, want, 2, WRITE_GATHER / 2); /* exactly WRITE_GATHER: still gathered */
    wt_unqueue(s);
    assert_true(do_write(s));
    assert_int_equal(writev_calls, 0);
    peer_gets(f.peer, want, WRITE_GATHER);

    add_extents(s, want, 2, WRITE_GATHER / 2 + 1); /* one byte over each: writev */
    wt_unqueue(s);
    assert_true(do_write(s));
    assert_int_equal(writev_calls, 1);
    peer_gets(f.peer, want, WRITE_GATHER + 2);

    /* 200 extents of 9 bytes (HTTP/2 frame heads): under WRITE_GATHER bytes, but more extents
     * than one call takes. The first WRITE_IOV go at once, the rest after. */
    writev_calls = 0;
    add_extents(s, want, 200, 9);
    wt_unqueue(s);
    assert_true(do_write(s));
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), (200 - WRITE_IOV) * 9);
    run_for(f.base, 50);
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), 0);
    peer_gets(f.peer, want, 200 * 9);
    sy_sock_free(s);
    fix_close(&f);
}

/* Two sockets read in one pass; the first one's callback gives output to a third, the target,
 * and the second one's callback looks whether the target's peer has it yet. */
struct eager_case {
    struct sy_sock *target;
    int target_peer;
    int reads;
    int seen_by_second; /* bytes at the target's peer when the second callback ran */
};

static void eager_read(struct sy_sock *s, void *arg)
{
    struct eager_case *c = arg;
    evbuffer_drain(sy_sock_input(s), evbuffer_get_length(sy_sock_input(s)));
    if (++c->reads == 1) {
        evbuffer_add(sy_sock_output(c->target), "req", 3);
        return;
    }
    char buf[8];
    ssize_t n = recv(c->target_peer, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    c->seen_by_second = n > 0 ? (int)n : 0;
}

static void eager_case_run(bool eager, int *seen, int *got)
{
    struct event_base *base = event_base_new();
    struct sy_sock_loop *l = sy_sock_loop_new(base);
    int a[2], b[2], t[2];
    pair(a);
    pair(b);
    pair(t);
    struct sy_sock *sa = sy_sock_accepted(l, a[0], NULL);
    struct sy_sock *sb = sy_sock_accepted(l, b[0], NULL);
    struct sy_sock *st = sy_sock_accepted(l, t[0], NULL);
    struct eager_case c = {.target = st, .target_peer = t[1]};
    sy_sock_set_eager(st, eager);
    sy_sock_setcb(sa, eager_read, NULL, NULL, &c);
    sy_sock_setcb(sb, eager_read, NULL, NULL, &c);
    sy_sock_enable(sa, EV_READ);
    sy_sock_enable(sb, EV_READ);
    sy_sock_enable(st, EV_READ | EV_WRITE);
    /* Both readable before the loop runs: one epoll_wait returns both. */
    assert_int_equal(write(a[1], "1", 1), 1);
    assert_int_equal(write(b[1], "2", 1), 1);
    run_for(base, 50);
    assert_int_equal(c.reads, 2);
    *seen = c.seen_by_second;
    char buf[8];
    *got = (int)read(t[1], buf, sizeof(buf)); /* written by the pass's end either way */
    sy_sock_free(sa);
    sy_sock_free(sb);
    sy_sock_free(st);
    close(a[1]);
    close(b[1]);
    close(t[1]);
    sy_sock_loop_free(l);
    event_base_free(base);
}

/* An eager socket is written as the callback that filled it returns, before the next socket's
 * callback in the same pass; any other at the pass's end, after every callback. */
static void test_eager(void **state)
{
    int seen, got;
    eager_case_run(true, &seen, &got);
    assert_int_equal(seen, 3);
    assert_int_equal(got, 3);
    eager_case_run(false, &seen, &got);
    assert_int_equal(seen, 0);
    assert_int_equal(got, 3);
}

/* More than the socket takes: EPOLLOUT only for the rest, and the write callback once the
 * output is at the low watermark. */
static void test_write_blocked(void **state)
{
    struct fix f = fix_open();
    struct event_base *base = f.base;
    struct sy_sock *s = f.s;
    struct rec r = {.base = base};
    sy_sock_setcb(s, NULL, rec_write, rec_event, &r);
    sy_sock_set_write_low(s, 1000);
    sy_sock_enable(s, EV_WRITE);
    static char big[4 << 20];
    memset(big, 'z', sizeof(big));
    evbuffer_add(sy_sock_output(s), big, sizeof(big));
    run_for(base, 20);
    assert_true(evbuffer_get_length(sy_sock_output(s)) > 0);
    assert_true(s->blocked && s->wr_armed);
    assert_int_equal(r.writes, 0);
    size_t got = 0;
    char buf[65536];
    for (int i = 0; i < 2000 && got < sizeof(big); i++) {
        ssize_t n = read(f.peer, buf, sizeof(buf));
        if (n > 0)
            got += (size_t)n;
        run_for(base, 1);
    }
    assert_int_equal(got, sizeof(big));
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), 0);
    assert_true(r.writes >= 1);
    assert_false(s->wr_armed);
    assert_int_equal(r.events, 0);
    sy_sock_free(s);
    fix_close(&f);
}

static void test_watermark(void **state)
{
    struct fix f = fix_open();
    struct event_base *base = f.base;
    struct sy_sock *s = f.s;
    struct rec r = {.base = base};
    sy_sock_setcb(s, rec_read, NULL, rec_event, &r);
    sy_sock_set_read_high(s, 10);
    sy_sock_enable(s, EV_READ);
    assert_null(s->in_cb); /* the input has a callback only while reading is paused */
    char data[100];
    memset(data, 'x', sizeof(data));
    assert_int_equal(write(f.peer, data, sizeof(data)), 100);
    run_for(base, 50);
    assert_int_equal(evbuffer_get_length(sy_sock_input(s)), 10);
    assert_int_equal(r.reads, 1);
    assert_false(s->rd_armed); /* paused: no read event */
    assert_non_null(s->in_cb);
    evbuffer_drain(sy_sock_input(s), 5);
    assert_true(s->rd_armed);
    assert_null(s->in_cb);
    run_for(base, 50);
    assert_int_equal(evbuffer_get_length(sy_sock_input(s)), 10);
    assert_int_equal(r.reads, 2);
    r.drain = true;
    evbuffer_drain(sy_sock_input(s), 10);
    run_for(base, 50);
    assert_int_equal(r.reads, 2 + 9); /* the other 85 bytes, 10 at a time */
    assert_int_equal(r.events, 0);
    sy_sock_free(s);
    fix_close(&f);
}

static void test_read_timeout(void **state)
{
    struct rec r;
    struct timeval tv = {0, 30000};
    struct fix f = timed_open(&r, &tv, NULL, EV_READ);
    run_for(f.base, 1000);
    assert_int_equal(r.events, 1);
    assert_int_equal(r.last, SY_SOCK_READING | SY_SOCK_TIMEOUT);
    assert_false(f.s->rd_armed); /* reading stopped */
    sy_sock_free(f.s);
    fix_close(&f);
}

/* Feeds the peer one byte per period, `left` times. */
struct feeder {
    struct event *ev;
    int peer, left;
};

static void feed_cb(evutil_socket_t fd, short what, void *arg)
{
    struct feeder *fd_ = arg;
    if (fd_->left-- > 0)
        assert_int_equal(write(fd_->peer, "x", 1), 1);
    else
        event_del(fd_->ev);
}

/* The timeout restarts on every read (the timer, set for the first due time, fires early and
 * is set again), and runs out once the bytes stop. */
static void test_timeout_restarts(void **state)
{
    struct rec r;
    struct timeval tv = {0, 150000};
    struct fix f = timed_open(&r, &tv, NULL, EV_READ);
    r.drain = true;
    struct feeder fd_ = {.peer = f.peer, .left = 8};
    fd_.ev = event_new(f.base, -1, EV_PERSIST, feed_cb, &fd_);
    struct timeval period = {0, 50000};
    event_add(fd_.ev, &period);
    run_for(f.base, 400); /* 8 bytes by 400 ms, 150 ms apart at most */
    assert_int_equal(r.events, 0);
    assert_true(r.reads >= 7);
    assert_true(f.s->rd_armed);
    run_for(f.base, 2000);
    assert_int_equal(r.events, 1);
    assert_int_equal(r.last, SY_SOCK_READING | SY_SOCK_TIMEOUT);
    assert_int_equal(r.reads, 8);
    event_free(fd_.ev);
    sy_sock_free(f.s);
    fix_close(&f);
}

/* A timeout made shorter while the timer waits for a later one still fires on time; one
 * taken away does not fire at all. */
static void test_timeout_changed(void **state)
{
    struct rec r;
    struct timeval longer = {30, 0}, shorter = {0, 40000};
    struct fix f = timed_open(&r, &longer, NULL, EV_READ);
    sy_sock_set_timeouts(f.s, &shorter, NULL);
    run_for(f.base, 2000);
    assert_int_equal(r.events, 1);
    assert_int_equal(r.last, SY_SOCK_READING | SY_SOCK_TIMEOUT);

    r.events = 0;
    sy_sock_set_timeouts(f.s, &shorter, NULL);
    sy_sock_enable(f.s, EV_READ);
    sy_sock_set_timeouts(f.s, NULL, NULL);
    run_for(f.base, 200);
    assert_int_equal(r.events, 0);
    assert_true(f.s->rd_armed);
    sy_sock_free(f.s);
    fix_close(&f);
}

/* Output the peer does not take: the write timeout reports it, and reading goes on. */
static void test_write_timeout(void **state)
{
    struct rec r;
    struct timeval tv = {0, 40000};
    struct fix f = timed_open(&r, NULL, &tv, EV_READ | EV_WRITE);
    fill_output(f.s);
    run_for(f.base, 2000);
    assert_int_equal(r.events, 1);
    assert_int_equal(r.last, SY_SOCK_WRITING | SY_SOCK_TIMEOUT);
    assert_false(f.s->wr_armed);
    assert_true(f.s->rd_armed);
    sy_sock_free(f.s);
    fix_close(&f);
}

/* Both directions due in one firing, and the first report frees the socket. */
static void free_on_event(struct sy_sock *s, short what, void *arg)
{
    struct rec *r = arg;
    r->events++;
    r->last = what;
    sy_sock_free(s);
}

static void test_timeout_free(void **state)
{
    struct rec r;
    struct fix f = timed_open(&r, NULL, NULL, EV_READ | EV_WRITE);
    sy_sock_setcb(f.s, NULL, NULL, free_on_event, &r);
    fill_output(f.s);
    run_for(f.base, 20); /* the output blocks */
    assert_true(f.s->wr_armed);
    struct timeval tv = {0, 30000};
    sy_sock_set_timeouts(f.s, &tv, &tv);
    f.s->wr_due = f.s->rd_due; /* due together */
    run_for(f.base, 300);
    assert_int_equal(r.events, 1);
    assert_int_equal(r.last, SY_SOCK_READING | SY_SOCK_TIMEOUT);
    fix_close(&f);
}

/* A callback that frees its socket: nothing touches it after. */
static void free_on_read(struct sy_sock *s, void *arg)
{
    (*(int *)arg)++;
    sy_sock_free(s);
}

static void test_free_in_callback(void **state)
{
    struct fix f = fix_open();
    struct event_base *base = f.base;
    struct sy_sock *s = f.s;
    int n = 0;
    sy_sock_setcb(s, free_on_read, NULL, NULL, &n);
    sy_sock_enable(s, EV_READ);
    assert_int_equal(write(f.peer, "x", 1), 1);
    run_for(base, 50);
    assert_int_equal(n, 1);
    char c;
    assert_int_equal(read(f.peer, &c, 1), 0); /* closed */
    fix_close(&f);
}

static int listen_loopback(struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(*sa);
    assert_int_equal(bind(fd, (struct sockaddr *)sa, len), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &len), 0);
    return fd;
}

static void test_connect(void **state)
{
    struct event_base *base = event_base_new();
    struct sy_sock_loop *l = sy_sock_loop_new(base);
    struct sockaddr_in sa;
    int lfd = listen_loopback(&sa);
    struct sy_sock *s = NULL;
    assert_int_equal(sy_sock_connect(l, (struct sockaddr *)&sa, sizeof(sa), NULL, &s), 0);
    struct rec r = {.base = base};
    sy_sock_setcb(s, rec_read, rec_write, rec_event, &r);
    evbuffer_add(sy_sock_output(s), "ping", 4); /* queued before the connect is done */
    sy_sock_enable(s, EV_READ | EV_WRITE);
    run_for(base, 1000);
    assert_int_equal(r.last, SY_SOCK_CONNECTED);
    run_for(base, 50);
    int fd = accept(lfd, NULL, NULL);
    char buf[8];
    assert_int_equal(read(fd, buf, sizeof(buf)), 4);
    assert_int_equal(r.writes, 1);
    close(fd);
    close(lfd);
    sy_sock_free(s);
    /* Nobody listens any more: the refusal reaches the event callback. */
    assert_int_equal(sy_sock_connect(l, (struct sockaddr *)&sa, sizeof(sa), NULL, &s), 0);
    r.events = 0;
    sy_sock_setcb(s, rec_read, rec_write, rec_event, &r);
    sy_sock_enable(s, EV_READ | EV_WRITE);
    run_for(base, 1000);
    assert_int_equal(r.events, 1);
    assert_true(r.last & SY_SOCK_ERROR);
    assert_int_equal(sy_sock_error(s), ECONNREFUSED);
    sy_sock_free(s);
    sy_sock_loop_free(l);
    event_base_free(base);
}

/* A self-signed EC certificate for a server context. */
static SSL_CTX *server_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    *out = (const unsigned char *)"h2";
    *outlen = 2;
    return SSL_TLSEXT_ERR_OK;
}

/* Bytes OpenSSL holds, counted through its allocator hooks (set first thing in main). */
static size_t tls_live;
#define HDR 16 /* keeps malloc's alignment */

static void *count_malloc(size_t n, const char *file, int line)
{
    char *p = malloc(n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof(n));
    tls_live += n;
    return p + HDR;
}

static void count_free(void *q, const char *file, int line)
{
    if (!q)
        return;
    char *p = (char *)q - HDR;
    size_t n;
    memcpy(&n, p, sizeof(n));
    tls_live -= n;
    free(p);
}

static void *count_realloc(void *q, size_t n, const char *file, int line)
{
    if (!q)
        return count_malloc(n, file, line);
    if (n == 0) {
        count_free(q, file, line);
        return NULL;
    }
    char *p = (char *)q - HDR;
    size_t old;
    memcpy(&old, p, sizeof(old));
    char *np = realloc(p, n + HDR);
    if (!np)
        return NULL;
    memcpy(np, &n, sizeof(n));
    tls_live = tls_live - old + n;
    return np + HDR;
}

static void test_tls(void **state)
{
    struct event_base *base = event_base_new();
    struct sy_sock_loop *l = sy_sock_loop_new(base);
    struct sockaddr_in sa;
    int lfd = listen_loopback(&sa);
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    SSL_CTX *sctx = server_ctx();
    SSL_CTX_set_alpn_select_cb(sctx, alpn_select, NULL);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *cssl = SSL_new(cctx);
    SSL_set_alpn_protos(cssl, (const unsigned char *)"\x02h2", 3);
    struct sy_sock *c = NULL;
    assert_int_equal(sy_sock_connect(l, (struct sockaddr *)&sa, sizeof(sa), cssl, &c), 0);
    struct rec rc = {.base = base}, rs = {.base = base};
    sy_sock_setcb(c, rec_read, rec_write, rec_event, &rc);
    evbuffer_add(sy_sock_output(c), "hello over tls", 14);
    sy_sock_enable(c, EV_READ | EV_WRITE);
    int fd = -1;
    while (fd == -1) {
        run_for(base, 10);
        fd = accept(lfd, NULL, NULL);
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct sy_sock *s = sy_sock_accepted(l, fd, SSL_new(sctx));
    sy_sock_setcb(s, rec_read, rec_write, rec_event, &rs);
    sy_sock_enable(s, EV_READ | EV_WRITE);
    for (int i = 0; i < 100 && (rc.last != SY_SOCK_CONNECTED || rs.reads == 0); i++)
        run_for(base, 10);
    assert_int_equal(rc.last, SY_SOCK_CONNECTED);
    assert_int_equal(rs.last, SY_SOCK_CONNECTED);
    assert_true(sy_sock_alpn_is(c, "h2"));
    assert_int_equal(evbuffer_get_length(sy_sock_input(s)), 14);
    /* A big answer back: more than a record, through the output's chains. */
    static char big[100000];
    memset(big, 'y', sizeof(big));
    evbuffer_add(sy_sock_output(s), "head", 4);
    evbuffer_add(sy_sock_output(s), big, sizeof(big));
    rc.drain = false;
    for (int i = 0; i < 200 && evbuffer_get_length(sy_sock_input(c)) < sizeof(big) + 4; i++)
        run_for(base, 10);
    assert_int_equal(evbuffer_get_length(sy_sock_input(c)), sizeof(big) + 4);
    /* The accepted side is idle now, its output written and its input read: OpenSSL holds no
     * record buffers for it (34 KB a connection with read-ahead, else). */
    assert_int_equal(evbuffer_get_length(sy_sock_output(s)), 0);
    size_t held = tls_live;
    assert_int_equal(SSL_free_buffers(sy_sock_ssl(s)), 1);
    print_message("  TLS record buffers held while idle: %zu bytes\n", held - tls_live);
    assert_true(held - tls_live < 1024);
    /* The client closes without close_notify (sy_sock_free sends none): a cut, not an end. */
    rs.events = 0;
    sy_sock_free(c);
    for (int i = 0; i < 100 && rs.events == 0; i++)
        run_for(base, 10);
    assert_int_equal(rs.last, SY_SOCK_READING | SY_SOCK_ERROR);
    assert_true(sy_sock_tls_error(s) != 0);
    sy_sock_free(s);
    close(lfd);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    sy_sock_loop_free(l);
    event_base_free(base);
}

int main(void)
{
    if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free)) {
        fprintf(stderr, "OpenSSL allocated before main\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_read_sizes),
        cmocka_unit_test(test_write_through),
        cmocka_unit_test(test_write_many_extents),
        cmocka_unit_test(test_write_gather),
        cmocka_unit_test(test_eager),
        cmocka_unit_test(test_write_blocked),
        cmocka_unit_test(test_watermark),
        cmocka_unit_test(test_read_timeout),
        cmocka_unit_test(test_timeout_restarts),
        cmocka_unit_test(test_timeout_changed),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_timeout_free),
        cmocka_unit_test(test_free_in_callback),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
