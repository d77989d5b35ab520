/* SPDX-License-Identifier: MIT */
/* Unit tests for the base library: slices, diagnostics and array growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "switchyard/base.h"

static void test_slice_ieq_ignores_ascii_case_only(void **state)
{
    assert_true(sy_slice_ieq(sy_slice_of("Content-Length", 14), "content-length"));
    assert_false(sy_slice_ieq(sy_slice_of("Content-Lengt", 13), "content-length"));
    assert_false(sy_slice_ieq(sy_slice_of("x-a", 3), "x-b"));
    assert_true(sy_slice_ieq_slice(sy_slice_of("KEEP", 4), sy_slice_of("keep", 4)));
    /* '@' and '`' differ from 'A'/'a' by 32 but are not letters. */
    assert_false(sy_slice_ieq(sy_slice_of("@", 1), "`"));
}

static void test_diag_formats_file_line_and_column(void **state)
{
    struct sy_diags d;
    sy_diags_init(&d);
    sy_diags_add(&d, "routes.yaml", 14, 7, "weight must be 0..100, got %d", 120);
    sy_diags_add(&d, "routes.yaml", 0, 0, "cannot read");
    assert_int_equal(d.n, 2);
    char buf[300];
    sy_diag_format(&d.v[0], buf, sizeof(buf));
    assert_string_equal(buf, "routes.yaml:14:7: weight must be 0..100, got 120");
    sy_diag_format(&d.v[1], buf, sizeof(buf));
    assert_string_equal(buf, "routes.yaml: cannot read");
    sy_diags_dispose(&d);
    assert_int_equal(d.n, 0);
}

static void test_xgrow_keeps_contents_and_grows_geometrically(void **state)
{
    int *v = NULL;
    size_t cap = 0;
    for (int i = 0; i < 1000; i++) {
        sy_xgrow((void **)&v, &cap, (size_t)i + 1, sizeof(*v));
        v[i] = i;
    }
    assert_true(cap >= 1000 && cap < 2048);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(v[i], i);
    free(v);
}

static void test_strerror_names_every_error(void **state)
{
    for (int e = SY_ERR_AGAIN; e <= SY_OK; e++)
        assert_string_not_equal(sy_strerror(e), "unknown error");
    assert_string_equal(sy_strerror(-99), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slice_ieq_ignores_ascii_case_only),
        cmocka_unit_test(test_diag_formats_file_line_and_column),
        cmocka_unit_test(test_xgrow_keeps_contents_and_grows_geometrically),
        cmocka_unit_test(test_strerror_names_every_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
