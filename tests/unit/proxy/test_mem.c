/* SPDX-License-Identifier: MIT */
/* Unit tests for the per-thread block cache (proxy/mem.c, included): every size gets a block
 * it fits in, a freed block comes back for the next request of its class, the cache stays
 * within its per-class and per-thread bounds, realloc keeps the bytes across classes and into
 * big blocks, blocks go both ways between it and plain malloc/free, and an exiting thread
 * gives its blocks back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "../../../proxy/mem.c"

/* Each test starts with this thread's cache empty. */
static int empty_cache(void **state)
{
    flush(&tc);
    return 0;
}

static void test_every_size_fits(void **state)
{
    for (size_t size = 0; size <= MAX_BLOCK + 64; size++) {
        unsigned char *p = sy_mem_alloc(size);
        assert_non_null(p);
        assert_true(malloc_usable_size(p) >= size);
        memset(p, 0xa5, size);
        sy_mem_free(p);
    }
    /* What the loop left: one block per class at most. */
    assert_true(sy_mem_cached_bytes() <= CACHE_BYTES);
}

static void test_a_freed_block_comes_back_for_its_class(void **state)
{
    void *p = sy_mem_alloc(100);
    size_t before = sy_mem_cached_bytes();
    sy_mem_free(p);
    assert_int_equal(sy_mem_cached_bytes(), before + malloc_usable_size(p));
    /* 97..104 round up to the same usable size: the same block, last in first out. */
    void *q = sy_mem_alloc(97);
    assert_ptr_equal(q, p);
    assert_int_equal(sy_mem_cached_bytes(), before);
    sy_mem_free(q);
}

static void test_bounds_per_class_and_per_thread(void **state)
{
    enum { N = CLASS_MAX + 100 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = sy_mem_alloc(40); /* CLASS_MAX of them fit in CLASS_BYTES */
    size_t k = class_of(40);
    for (int i = 0; i < N; i++)
        sy_mem_free(p[i]);
    assert_int_equal(tc.n[k], CLASS_MAX);
    /* 4 KiB blocks: as many as fit in CLASS_BYTES. */
    enum { BIG = CLASS_BYTES / 4000 + 8 };
    for (int i = 0; i < BIG; i++)
        p[i] = sy_mem_alloc(4000);
    for (int i = 0; i < BIG; i++)
        sy_mem_free(p[i]);
    k = class_of(4000);
    assert_int_equal(tc.n[k], CLASS_BYTES / class_size(k));
    /* Blocks of every class: the whole cache stays within CACHE_BYTES. */
    enum { M = 4096 };
    static void *q[M];
    size_t n = 0;
    for (size_t size = 24; size <= MAX_BLOCK; size += 16)
        for (int j = 0; j < 16 && n < M; j++)
            q[n++] = sy_mem_alloc(size);
    for (size_t i = 0; i < n; i++)
        sy_mem_free(q[i]);
    assert_true(sy_mem_cached_bytes() <= CACHE_BYTES);
    assert_true(sy_mem_cached_bytes() > CACHE_BYTES - MAX_BLOCK - 1);
}

static void test_realloc_keeps_the_bytes(void **state)
{
    unsigned char *p = sy_mem_realloc(NULL, 10);
    for (int i = 0; i < 10; i++)
        p[i] = (unsigned char)i;
    for (size_t size = 11; size < 3 * MAX_BLOCK; size = size * 3 / 2) {
        p = sy_mem_realloc(p, size);
        assert_non_null(p);
        for (int i = 0; i < 10; i++)
            assert_int_equal(p[i], i);
        p[size - 1] = 0x5a; /* the new size is all there */
    }
    assert_ptr_equal(sy_mem_realloc(p, 5), p); /* shrinking keeps the block */
    sy_mem_free(p);
}

static void test_calloc_zeroes_and_refuses_overflow(void **state)
{
    unsigned char *p = sy_mem_alloc(300);
    memset(p, 0xff, 300);
    sy_mem_free(p);
    unsigned char *z = sy_mem_calloc(30, 10); /* likely the block just freed */
    for (int i = 0; i < 300; i++)
        assert_int_equal(z[i], 0);
    sy_mem_free(z);
    assert_null(sy_mem_calloc(SIZE_MAX / 2, 4));
}

static void test_blocks_go_both_ways_with_malloc(void **state)
{
    for (size_t size = 1; size < 2 * MAX_BLOCK; size += 37) {
        void *p = malloc(size);
        sy_mem_free(p); /* cached or freed, by its usable size */
        void *q = sy_mem_alloc(size);
        free(q);
    }
}

static void *churn(void *arg)
{
    void *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = sy_mem_alloc(200);
    for (int i = 0; i < 10; i++)
        sy_mem_free(p[i]);
    *(size_t *)arg = sy_mem_cached_bytes();
    return NULL;
}

static void test_an_exiting_thread_gives_its_blocks_back(void **state)
{
    uint64_t before = sy_mem_flushed();
    size_t held = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn, &held), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(held >= 10 * 200);
    assert_int_equal(sy_mem_flushed() - before, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_every_size_fits, empty_cache),
        cmocka_unit_test_setup(test_a_freed_block_comes_back_for_its_class, empty_cache),
        cmocka_unit_test_setup(test_bounds_per_class_and_per_thread, empty_cache),
        cmocka_unit_test_setup(test_realloc_keeps_the_bytes, empty_cache),
        cmocka_unit_test_setup(test_calloc_zeroes_and_refuses_overflow, empty_cache),
        cmocka_unit_test_setup(test_blocks_go_both_ways_with_malloc, empty_cache),
        cmocka_unit_test_setup(test_an_exiting_thread_gives_its_blocks_back, empty_cache),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    flush(&tc);
    return rc;
}
