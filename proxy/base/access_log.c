/* SPDX-License-Identifier: MIT */
/* The access log's transport: per-worker single-producer single-consumer byte rings and the
 * writer thread that drains them. A ring's `head` (bytes ever written) is stored by its worker
 * only, after the line's bytes (release); its `tail` (bytes ever consumed) by the writer only,
 * after their write. Each side reads the other's counter with acquire, so a line is seen whole
 * or not at all and no lock is taken. The writer writes one ring's pending bytes completely
 * (blocking writes, retried on short writes) before it moves to the next ring, so lines of two
 * workers never interleave; when every ring is empty it sleeps 10 ms. SIGUSR1 only sets a flag
 * the writer reads between passes. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "switchyard/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "switchyard/base.h"

struct sy_access_ring {
    char *buf;
    size_t cap;
    alignas(64) _Atomic uint64_t head; /* producer's cache line */
    _Atomic uint64_t dropped, lines;
    alignas(64) _Atomic uint64_t tail; /* consumer's */
};

struct sy_access_ring *sy_access_ring_new(size_t cap)
{
    struct sy_access_ring *r = sy_xcalloc(1, sizeof(*r));
    r->cap = cap ? cap : 1;
    r->buf = sy_xmalloc(r->cap);
    return r;
}

void sy_access_ring_free(struct sy_access_ring *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

/* Only its own thread writes each counter: load-add-store, no locked instruction. */
static void bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

bool sy_access_ring_put(struct sy_access_ring *r, const char *line, size_t len)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (len > r->cap - (size_t)(head - tail)) {
        bump(&r->dropped);
        return false;
    }
    size_t at = (size_t)(head % r->cap), first = r->cap - at < len ? r->cap - at : len;
    memcpy(r->buf + at, line, first);
    memcpy(r->buf, line + first, len - first);
    atomic_store_explicit(&r->head, head + len, memory_order_release);
    bump(&r->lines);
    return true;
}

size_t sy_access_ring_peek(struct sy_access_ring *r, const char **p1, size_t *n1, const char **p2,
                           size_t *n2)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t n = (size_t)(head - tail), at = (size_t)(tail % r->cap);
    *p1 = r->buf + at;
    *n1 = r->cap - at < n ? r->cap - at : n;
    *p2 = r->buf;
    *n2 = n - *n1;
    return n;
}

void sy_access_ring_consume(struct sy_access_ring *r, size_t n)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail + n, memory_order_release);
}

uint64_t sy_access_ring_dropped(const struct sy_access_ring *r)
{
    return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}

uint64_t sy_access_ring_lines(const struct sy_access_ring *r)
{
    return atomic_load_explicit(&r->lines, memory_order_relaxed);
}

/* -- the writer ----------------------------------------------------------------------------- */

static struct {
    struct sy_access_ring **rings;
    unsigned n_rings;
    char *path; /* NULL: stdout */
    int fd;
    pthread_t thread;
    _Atomic bool on, stop, reopen, done;
} alog = {.fd = -1};

static int open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1)
        sy_log_errno(SY_LOG_ERROR, "access", "cannot open access log %s", path);
    return fd;
}

/* Writes both pieces completely. False when the file refuses them (logged once per run of
 * failures): the bytes are given up, the ring must not stall the workers behind a bad file. */
static bool write_all(const char *p1, size_t n1, const char *p2, size_t n2)
{
    static bool failing;
    struct iovec iov[2] = {{(void *)p1, n1}, {(void *)p2, n2}};
    struct iovec *v = iov;
    int cnt = n2 ? 2 : 1;
    while (cnt > 0) {
        ssize_t w = writev(alog.fd, v, cnt);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (!failing)
                sy_log_errno(SY_LOG_WARN, "access", "cannot write the access log");
            failing = true;
            return false;
        }
        size_t left = (size_t)w;
        while (cnt > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            v++;
            cnt--;
        }
        if (cnt > 0) {
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
    failing = false;
    return true;
}

/* One pass over every ring; returns the bytes moved. */
static size_t drain_rings(void)
{
    size_t moved = 0;
    for (unsigned i = 0; i < alog.n_rings; i++) {
        const char *p1, *p2;
        size_t n1, n2;
        size_t n = sy_access_ring_peek(alog.rings[i], &p1, &n1, &p2, &n2);
        if (n == 0)
            continue;
        write_all(p1, n1, p2, n2);
        sy_access_ring_consume(alog.rings[i], n);
        moved += n;
    }
    return moved;
}

static void reopen_now(void)
{
    int fd = open_path(alog.path);
    if (fd == -1)
        return; /* keep writing to the old file */
    close(alog.fd);
    alog.fd = fd;
    sy_log(SY_LOG_INFO, "access", "access log reopened: %s", alog.path);
}

static void *writer_main(void *arg)
{
    for (;;) {
        if (atomic_exchange(&alog.reopen, false) && alog.path)
            reopen_now();
        bool stop = atomic_load(&alog.stop);
        size_t moved = drain_rings();
        if (stop && moved == 0)
            break;
        if (moved == 0) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    atomic_store(&alog.done, true);
    return NULL;
}

int sy_access_log_open(const char *path, size_t buffer_bytes, unsigned n_rings)
{
    bool out = strcmp(path, "stdout") == 0;
    int fd = out ? dup(STDOUT_FILENO) : open_path(path);
    if (fd == -1) {
        if (out)
            sy_log_errno(SY_LOG_ERROR, "access", "cannot use stdout for the access log");
        return SY_ERR_SYS;
    }
    alog.fd = fd;
    alog.path = out ? NULL : sy_xstrdup(path);
    alog.rings = sy_xcalloc(n_rings ? n_rings : 1, sizeof(*alog.rings));
    for (unsigned i = 0; i < n_rings; i++)
        alog.rings[i] = sy_access_ring_new(buffer_bytes);
    alog.n_rings = n_rings;
    int err = pthread_create(&alog.thread, NULL, writer_main, NULL);
    if (err != 0) {
        errno = err;
        sy_log_errno(SY_LOG_ERROR, "access", "cannot start the access log writer");
        return SY_ERR_SYS;
    }
    pthread_setname_np(alog.thread, "sy-access-log");
    atomic_store(&alog.on, true);
    return SY_OK;
}

bool sy_access_log_is_on(void)
{
    return atomic_load_explicit(&alog.on, memory_order_relaxed);
}

struct sy_access_ring *sy_access_log_ring(unsigned i)
{
    if (!sy_access_log_is_on() || i >= alog.n_rings)
        return NULL;
    return alog.rings[i];
}

void sy_access_log_reopen(void)
{
    atomic_store(&alog.reopen, true);
}

void sy_access_log_close(unsigned timeout_ms)
{
    if (!sy_access_log_is_on())
        return;
    atomic_store(&alog.stop, true);
    uint64_t until = sy_now_ms() + timeout_ms;
    while (!atomic_load(&alog.done) && sy_now_ms() < until) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!atomic_load(&alog.done)) {
        sy_log(SY_LOG_WARN, "access", "access log reader too slow: lines lost at exit");
        return; /* the writer is blocked in write(): leave it and everything it uses */
    }
    pthread_join(alog.thread, NULL);
    atomic_store(&alog.on, false);
    close(alog.fd);
}

static uint64_t sum(uint64_t (*get)(const struct sy_access_ring *))
{
    uint64_t n = 0;
    if (!sy_access_log_is_on())
        return 0;
    for (unsigned i = 0; i < alog.n_rings; i++)
        n += get(alog.rings[i]);
    return n;
}

uint64_t sy_access_log_dropped(void)
{
    return sum(sy_access_ring_dropped);
}

uint64_t sy_access_log_lines(void)
{
    return sum(sy_access_ring_lines);
}
