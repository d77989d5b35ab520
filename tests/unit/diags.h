/* SPDX-License-Identifier: MIT */
/* Prints a config's diagnostics (file:line:col: message) under a failing check, for the unit
 * tests that load configs or journals. Inline, so that fixture.c stays plain libc and links into
 * the tests that have no switchyard/base.h. */
#ifndef SY_TESTS_DIAGS_H
#define SY_TESTS_DIAGS_H

#include <stdio.h>

#include "switchyard/base.h"

static inline void print_diags(const struct sy_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        char buf[512];
        sy_diag_format(&d->v[i], buf, sizeof(buf));
        fprintf(stderr, "  diag: %s\n", buf);
    }
}

#endif
