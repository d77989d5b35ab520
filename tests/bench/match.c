/* SPDX-License-Identifier: MIT */
/* The cost of one host lookup by table size (issue #21): sy_route_match for an unknown host
 * (every wildcard is a candidate; the catch-all answers), a host under a wildcard and an exact
 * host, 100,000 times each, on the given routing files (tests/bench/gen_apps.py writes them).
 * Not a test: it prints nanoseconds per lookup. Built on demand:
 * ninja -C build tests/bench_match && ./build/tests/bench_match FILE...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "switchyard/config.h"
#include "switchyard/routing.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    sy_config_set_resolve(false);
    static const char *const hosts[] = {"zzz.unknown.example.org", "x.app77.example.com",
                                        "app77.example.com"};
    for (int a = 1; a < argc; a++) {
        struct sy_diags d;
        sy_diags_init(&d);
        struct sy_config *cfg = NULL;
        struct sy_route_table *t = NULL;
        if (sy_config_load(argv[a], &d, &cfg) != 0 || sy_route_table_new(cfg, 1, &t) != 0) {
            fprintf(stderr, "%s: does not load\n", argv[a]);
            return 1;
        }
        sy_diags_dispose(&d);
        printf("%s (%zu apps):", argv[a], sy_route_table_config(t)->n_apps);
        for (size_t h = 0; h < sizeof(hosts) / sizeof(hosts[0]); h++) {
            struct sy_slice hs = sy_slice_of(hosts[h], strlen(hosts[h]));
            const struct sy_route_app *app = NULL;
            double t0 = now();
            for (int i = 0; i < 100000; i++)
                app = sy_route_match(t, hs, sy_slice_of("/api/x", 6));
            printf("  %s -> %s %.0f ns", hosts[h], app ? app->name : "-",
                   (now() - t0) * 1e9 / 100000);
        }
        printf("\n");
        sy_route_table_release(t);
    }
    return 0;
}
