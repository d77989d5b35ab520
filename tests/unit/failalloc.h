/* SPDX-License-Identifier: MIT */
/* Failing-allocation passes for the unit tests: fail the 1st, then the 2nd, ... allocation that
 * libevent or libyaml makes while a piece of code runs, until a run makes no more allocations
 * than the one that was to fail. Our own sy_x* allocations are not failed: they abort on OOM by
 * design (STYLE §6), so what a pass tests is that every library allocation whose failure the
 * code is meant to survive is checked. Link tests/unit/failalloc.c into the test to use it. */
#ifndef SY_TESTS_FAILALLOC_H
#define SY_TESTS_FAILALLOC_H

#include <stdbool.h>

/**
 * Routes libevent's allocations through the counter (event_set_mem_functions). Call first in
 * main(), before anything touches libevent: libevent requires it, and memory it allocated
 * before would be freed through the counter's free (harmless, but not counted).
 */
void sy_failalloc_install(void);

/** Starts counting from 0 and fails the `nth` counted allocation (1-based; 0: none fails). */
void sy_failalloc_arm(unsigned long nth);

/** Stops counting and failing; returns how many allocations were counted since the arm. */
unsigned long sy_failalloc_disarm(void);

/** True once the allocation that sy_failalloc_arm named has been failed. */
bool sy_failalloc_hit(void);

/** One run of the code under test. It asserts its own outcome: when sy_failalloc_hit() is
 * false nothing failed and the run must have succeeded in full; when it is true, the run must
 * have failed cleanly (an error returned, an error answer sent) or recovered. */
typedef void (*sy_failalloc_run_cb)(void *arg);

/**
 * Calls `run(arg)` with the 1st counted allocation failing, then the 2nd, and so on, until a
 * run completes without reaching the allocation meant to fail. Returns the number of runs
 * (the last one had no failure), so that a caller can check the pass was not vacuous, or 0
 * when 100,000 runs all reached their failure.
 * Under ASan, LSan reports whatever a failed run leaked when the process exits.
 */
unsigned long sy_failalloc_each(sy_failalloc_run_cb run, void *arg);

#endif
