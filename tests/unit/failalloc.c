/* SPDX-License-Identifier: MIT */
/* The allocation counter behind failalloc.h. Two libraries allocate on the paths under test
 * and each offers a seam that leaves malloc itself alone (interposing malloc would fight
 * ASan's own malloc, which the sanitized build depends on):
 *   - libevent: event_set_mem_functions(), its documented hook; every evbuffer chain and
 *     evbuffer goes through it.
 *   - libyaml: its allocations all go through yaml_malloc, yaml_realloc and yaml_strdup,
 *     which libyaml-0.so exports and calls through its PLT; the definitions below, in the
 *     test executable, take their place (the executable comes first in symbol lookup), with
 *     the same semantics as libyaml's own (src/api.c).
 * nghttp2 would take an nghttp2_mem, but none of the code these passes drive opens a session.
 * Our own allocations (sy_xmalloc and friends) are left alone: they abort on failure by
 * design. Single-threaded tests only: the counter is not atomic. */
#include "failalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <yaml.h>

static bool armed;
static unsigned long count, fail_at;
static bool hit;

/* true when this allocation is the one to fail */
static bool fail_now(void)
{
    if (!armed)
        return false;
    count++;
    if (count != fail_at)
        return false;
    hit = true;
    return true;
}

static void *counted_malloc(size_t size)
{
    return fail_now() ? NULL : malloc(size);
}

static void *counted_realloc(void *p, size_t size)
{
    return fail_now() ? NULL : realloc(p, size);
}

void sy_failalloc_install(void)
{
    event_set_mem_functions(counted_malloc, counted_realloc, free);
}

void sy_failalloc_arm(unsigned long nth)
{
    count = 0;
    fail_at = nth;
    hit = false;
    armed = true;
}

unsigned long sy_failalloc_disarm(void)
{
    armed = false;
    return count;
}

bool sy_failalloc_hit(void)
{
    return hit;
}

unsigned long sy_failalloc_each(sy_failalloc_run_cb run, void *arg)
{
    /* A bound so that a run whose allocations never end (a retry loop on failure) stops the
     * test instead of hanging it. */
    const unsigned long max_runs = 100000;
    /* SY_FAILALLOC_VERBOSE=1: each run says which allocation fails, so that an assertion that
     * stops the test can be traced to its run. */
    bool verbose = getenv("SY_FAILALLOC_VERBOSE") != NULL;
    for (unsigned long n = 1; n <= max_runs; n++) {
        if (verbose)
            fprintf(stderr, "failalloc: run %lu, allocation %lu fails\n", n, n);
        sy_failalloc_arm(n);
        run(arg);
        sy_failalloc_disarm();
        if (!hit)
            return n;
    }
    return 0;
}

/* libyaml's allocator (yaml_private.h, not installed: declared here). */
void *yaml_malloc(size_t size);
void *yaml_realloc(void *p, size_t size);
void yaml_free(void *p);
yaml_char_t *yaml_strdup(const yaml_char_t *s);

void *yaml_malloc(size_t size)
{
    return counted_malloc(size ? size : 1);
}

void *yaml_realloc(void *p, size_t size)
{
    if (!p)
        return yaml_malloc(size);
    return counted_realloc(p, size ? size : 1);
}

void yaml_free(void *p)
{
    free(p);
}

yaml_char_t *yaml_strdup(const yaml_char_t *s)
{
    if (!s)
        return NULL;
    size_t len = strlen((const char *)s) + 1;
    yaml_char_t *d = counted_malloc(len);
    if (d)
        memcpy(d, s, len);
    return d;
}
