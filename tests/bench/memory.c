/* SPDX-License-Identifier: MIT */
/* Bytes per app (issue #21), measured as glibc's in-use heap (mallinfo2) around each step, for
 * configs of the shape tests/bench/gen_apps.py writes (two hosts, two paths, a sticky cookie
 * per app): the parsed config, the compiled snapshot, the snapshot of an operator's change
 * (sy_route_table_update: shares all but one app), one worker's traffic counters (the
 * difference between two workers and one), and the heap in use after 100 reloads (parse,
 * compile, drop the old) against after the first. Not a test: it prints, tests/bench/scale.py
 * puts it in its report. Built on demand: ninja -C build tests/bench_memory.
 *
 *     bench_memory N...
 */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "switchyard/config.h"
#include "switchyard/proxy.h"
#include "switchyard/routing.h"

static size_t in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd == -1 || bind(fd, (struct sockaddr *)&a, sizeof(a)) == -1 ||
        getsockname(fd, (struct sockaddr *)&a, &len) == -1) {
        perror("free port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static char *config_text(size_t n, unsigned seed, size_t *len)
{
    size_t cap = 256 + n * 256;
    char *t = malloc(cap);
    size_t off = (size_t)snprintf(t, cap,
                                  "listen:\n  - address: 127.0.0.1:%d\n"
                                  "clusters:\n  blue:\n    endpoints: [127.0.0.1:9]\n"
                                  "  green:\n    endpoints: [127.0.0.1:9]\napps:\n",
                                  free_port());
    unsigned b = 90 - seed % 50;
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(t + off, cap - off,
                                "  - name: app%zu\n"
                                "    hosts: [app%zu.example.com, \"*.app%zu.example.com\"]\n"
                                "    paths: [/api/, /]\n"
                                "    stable: blue\n"
                                "    weights: {blue: %u, green: %u}\n"
                                "    sticky: {cookie: sy_app%zu}\n",
                                i, i, i, b, 100 - b, i);
    *len = off;
    return t;
}

static struct sy_config *parse(size_t n, unsigned seed)
{
    size_t len;
    char *text = config_text(n, seed, &len);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_config *cfg = NULL;
    if (sy_config_parse("bench.yaml", text, len, &d, &cfg) != 0) {
        fprintf(stderr, "bench config does not parse\n");
        exit(1);
    }
    sy_diags_dispose(&d);
    free(text);
    return cfg;
}

static struct sy_route_table *build(struct sy_config *cfg)
{
    struct sy_route_table *t = NULL;
    if (sy_route_table_build(cfg, NULL, 0, 1, &t) != 0) {
        fprintf(stderr, "bench table does not build\n");
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    sy_log_set_level(SY_LOG_WARN);
    sy_config_set_resolve(false);
    printf("apps\tconfig_B_per_app\tsnapshot_B_per_app\tupdate_B\tworker_counters_B_per_app\t"
           "heap_after_1_reload_B\theap_after_100_reloads_B\n");
    for (int a = 1; a < argc; a++) {
        size_t n = strtoul(argv[a], NULL, 10);
        malloc_trim(0);
        size_t h0 = in_use();
        struct sy_config *cfg = parse(n, 0);
        size_t h1 = in_use();
        struct sy_route_table *t = build(cfg);
        size_t h2 = in_use();
        const struct sy_route_weight w[] = {{"blue", 100}};
        const struct sy_route_override ov = {"app0", w, 1};
        const struct sy_route_app_change ch = {0, &ov};
        struct sy_route_table *u = NULL;
        sy_route_table_update(t, &ch, 1, 2, &u);
        size_t h3 = in_use();
        sy_route_table_release(u);

        struct sy_workers *ws1 = NULL, *ws2 = NULL;
        size_t h4 = in_use();
        if (sy_workers_new(t, 1, &ws1) != 0)
            return 1;
        size_t h5 = in_use();
        sy_workers_free(ws1);
        size_t h6 = in_use();
        if (sy_workers_new(t, 2, &ws2) != 0)
            return 1;
        size_t h7 = in_use();
        sy_workers_free(ws2);
        (void)h6;

        /* Reloads: a new file each time, the old snapshot and config dropped. */
        size_t after1 = 0;
        for (int r = 1; r <= 100; r++) {
            struct sy_config *c2 = parse(n, (unsigned)r);
            struct sy_route_table *t2 = build(c2);
            sy_config_free(c2);
            sy_route_table_release(t);
            sy_config_free(cfg);
            cfg = sy_config_acquire((struct sy_config *)sy_route_table_config(t2));
            t = t2;
            if (r == 1)
                after1 = in_use() - h0;
        }
        size_t after100 = in_use() - h0;
        printf("%zu\t%.0f\t%.0f\t%zu\t%.0f\t%zu\t%zu\n", n, (double)(h1 - h0) / n,
               (double)(h2 - h1) / n, h3 - h2, (double)((h7 - h4) - (h5 - h4)) / n, after1,
               after100);
        sy_route_table_release(t);
        sy_config_free(cfg);
    }
    return 0;
}
