/* SPDX-License-Identifier: MIT */
/* A per-thread cache of small blocks in front of glibc's malloc, for the allocations libevent
 * and nghttp2 make on every request (proxy/mem.c). Blocks are plain malloc blocks: one from
 * malloc may be given to sy_mem_free, one from sy_mem_alloc to free. Off under
 * AddressSanitizer (sy_mem_install does nothing there). */
#ifndef SWITCHYARD_PROXY_MEM_H
#define SWITCHYARD_PROXY_MEM_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

/** Puts the cache under libevent (event_set_mem_functions), once, before any thread starts. */
void sy_mem_install(void);
/** The allocator for nghttp2 sessions (the *_new3 constructors): NULL (nghttp2's own) unless
 * sy_mem_install ran. */
nghttp2_mem *sy_mem_nghttp2(void);

void *sy_mem_alloc(size_t size);
void sy_mem_free(void *p);
void *sy_mem_realloc(void *p, size_t size);
void *sy_mem_calloc(size_t n, size_t size);

/** What this thread's cache holds, in bytes. */
size_t sy_mem_cached_bytes(void);
/** How many blocks exiting threads have given back to malloc so far. */
uint64_t sy_mem_flushed(void);

#endif
