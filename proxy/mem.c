/* SPDX-License-Identifier: MIT */
/* Small blocks for libevent and nghttp2, kept per thread (mem.h). Each request allocates and
 * frees a few of each library's blocks (evbuffer chains, streams, frames, header copies), in
 * bursts as wide as the requests in flight: wider than glibc's per-thread cache (7 blocks of a
 * size), so most of them took glibc's slower paths. Here a thread keeps freed blocks of each
 * glibc chunk size up to MAX_BLOCK (at most CLASS_MAX and CLASS_BYTES of a size, CACHE_BYTES in
 * all), and gives them back first.
 *
 * The key idea: a block's class is its usable size (malloc_usable_size), which glibc keeps in
 * the chunk, so a block needs no header and any block from malloc may join the cache; and a
 * request is rounded up to a usable size glibc hands out exactly (16k + 24), so that a block
 * made for a class comes back to it. A thread's blocks go back to malloc when it exits. */
#include "mem.h"

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

/* glibc's usable sizes below its mmap threshold are 24, 40, 56, ... (a 16-byte granule, less
 * the 8-byte size field). */
#define MIN_BLOCK 24u
#define GRANULE   16u
#define MAX_BLOCK 4104u /* a 4 KiB evbuffer chain and its header fit */
#define N_CLASSES ((MAX_BLOCK - MIN_BLOCK) / GRANULE + 1)
/* 16 connections of 32 streams keep 512 requests in flight, each with a few blocks of a size:
 * with 64 a class (and 512 KiB in all) most of a burst's blocks went back to glibc and came
 * from it again (callgrind, h2c -c16 -m32: 1,400 of 27,400 instructions a request in
 * _int_malloc, 1,000 in _int_free). */
#define CLASS_MAX   1024u       /* blocks kept per class */
#define CLASS_BYTES (64u << 10) /* bytes kept per class: all 1,024 to 56 bytes, 15 of 4 KiB */
#define CACHE_BYTES (2u << 20)  /* bytes kept per thread */

struct cache {
    void *head[N_CLASSES]; /* freed blocks, linked through their first word */
    unsigned n[N_CLASSES];
    size_t bytes;
    bool registered; /* the thread-exit destructor knows this cache */
    bool closing;    /* the thread is exiting: frees go to glibc */
};

static _Thread_local struct cache tc;
static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static bool key_ok;
static bool installed;
static _Atomic uint64_t flushed; /* blocks given back by exiting threads (for tests) */

static size_t class_of(size_t size)
{
    return size <= MIN_BLOCK ? 0 : (size - MIN_BLOCK + GRANULE - 1) / GRANULE;
}

static size_t class_size(size_t c)
{
    return MIN_BLOCK + c * GRANULE;
}

static void flush(struct cache *c)
{
    for (size_t i = 0; i < N_CLASSES; i++) {
        while (c->head[i]) {
            void *p = c->head[i];
            c->head[i] = *(void **)p;
            free(p);
            flushed++;
        }
        c->n[i] = 0;
    }
    c->bytes = 0;
}

static void thread_exit(void *arg)
{
    struct cache *c = arg;
    c->closing = true;
    flush(c);
}

static void make_key(void)
{
    key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

void *sy_mem_alloc(size_t size)
{
    if (size > MAX_BLOCK)
        return malloc(size);
    size_t k = class_of(size);
    void *p = tc.head[k];
    if (p) {
        tc.head[k] = *(void **)p;
        tc.n[k]--;
        tc.bytes -= class_size(k);
        return p;
    }
    return malloc(class_size(k));
}

void sy_mem_free(void *p)
{
    if (!p)
        return;
    size_t usable = malloc_usable_size(p);
    if (usable < MIN_BLOCK || usable > MAX_BLOCK || (usable - MIN_BLOCK) % GRANULE != 0 ||
        tc.closing) {
        free(p);
        return;
    }
    size_t k = (usable - MIN_BLOCK) / GRANULE;
    if (tc.n[k] >= CLASS_MAX || (tc.n[k] + 1) * usable > CLASS_BYTES ||
        tc.bytes + usable > CACHE_BYTES) {
        free(p);
        return;
    }
    if (!tc.registered) {
        /* The destructor runs only for a non-NULL value. */
        pthread_once(&key_once, make_key);
        if (!key_ok || pthread_setspecific(exit_key, &tc) != 0) {
            free(p);
            return;
        }
        tc.registered = true;
    }
    *(void **)p = tc.head[k];
    tc.head[k] = p;
    tc.n[k]++;
    tc.bytes += usable;
}

void *sy_mem_realloc(void *p, size_t size)
{
    if (!p)
        return sy_mem_alloc(size);
    size_t usable = malloc_usable_size(p);
    if (size <= usable)
        return p;
    if (size > MAX_BLOCK && usable > MAX_BLOCK)
        return realloc(p, size); /* both big: glibc may grow it in place */
    void *q = sy_mem_alloc(size);
    if (!q)
        return NULL;
    memcpy(q, p, usable);
    sy_mem_free(p);
    return q;
}

void *sy_mem_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = sy_mem_alloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

size_t sy_mem_cached_bytes(void)
{
    return tc.bytes;
}

uint64_t sy_mem_flushed(void)
{
    return flushed;
}

static void *ng_malloc(size_t size, void *ud)
{
    (void)ud;
    return sy_mem_alloc(size);
}

static void ng_free(void *p, void *ud)
{
    (void)ud;
    sy_mem_free(p);
}

static void *ng_calloc(size_t n, size_t size, void *ud)
{
    (void)ud;
    return sy_mem_calloc(n, size);
}

static void *ng_realloc(void *p, size_t size, void *ud)
{
    (void)ud;
    return sy_mem_realloc(p, size);
}

static nghttp2_mem ng_mem = {NULL, ng_malloc, ng_free, ng_calloc, ng_realloc};

void sy_mem_install(void)
{
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer sees every block freed and reused: no cache in front of it. */
    return;
#else
    if (installed)
        return;
    installed = true;
    event_set_mem_functions(sy_mem_alloc, sy_mem_realloc, sy_mem_free);
#endif
}

nghttp2_mem *sy_mem_nghttp2(void)
{
    return installed ? &ng_mem : NULL;
}
