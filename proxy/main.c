/* SPDX-License-Identifier: MIT */
/* switchyard: the daemon. Loads and checks the routing file, starts the workers, and runs the
 * control loop on the main thread: SIGHUP re-reads the file and publishes a new snapshot (the
 * old one lives on in the requests that hold it), SIGTERM and SIGINT drain and stop. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "switchyard/config.h"
#include "switchyard/proxy.h"
#include "switchyard/routing.h"
#include "sy_config.h"

struct control {
    struct event_base *base;
    const char *path;
    struct sy_route_table *table; /* the current snapshot (control's reference) */
    struct sy_workers *workers;
    uint64_t generation;
    uint64_t reload_failures;
    bool stopping;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: switchyard [-t] -c FILE [-l debug|info|warn|error]\n"
               "  -c, --config FILE   the routing table (YAML)\n"
               "  -t, --check         check FILE and exit: 0 when valid, 1 with every error\n"
               "  -l, --log-level L   log level (default info)\n"
               "  -V, --version       print the version\n");
}

static void print_diags(const struct sy_diags *d)
{
    char line[512];
    for (size_t i = 0; i < d->n; i++) {
        sy_diag_format(&d->v[i], line, sizeof(line));
        fprintf(stderr, "%s\n", line);
    }
}

static int load(const char *path, uint64_t generation, struct sy_route_table **out,
                struct sy_diags *d)
{
    struct sy_config *cfg = NULL;
    int rc = sy_config_load(path, d, &cfg);
    if (rc)
        return rc;
    rc = sy_proxy_check(cfg, d);
    if (rc) {
        sy_config_free(cfg);
        return rc;
    }
    rc = sy_route_table_new(cfg, generation, out);
    if (rc) {
        sy_diags_add(d, path, 0, 0, "cannot compile the routing table: %s", sy_strerror(rc));
        sy_config_free(cfg);
    }
    return rc;
}

static void reload(struct control *ctl)
{
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_route_table *t = NULL;
    if (load(ctl->path, ctl->generation + 1, &t, &d) != 0) {
        ctl->reload_failures++;
        char line[512];
        for (size_t i = 0; i < d.n; i++) {
            sy_diag_format(&d.v[i], line, sizeof(line));
            sy_log(SY_LOG_ERROR, "reload", "rejected (generation %llu kept): %s",
                   (unsigned long long)ctl->generation, line);
        }
        sy_diags_dispose(&d);
        return;
    }
    sy_diags_dispose(&d);
    ctl->generation++;
    const struct sy_config *old = sy_route_table_config(ctl->table);
    const struct sy_config *cfg = sy_route_table_config(t);
    if (old->n_listens != cfg->n_listens || old->workers != cfg->workers)
        sy_log(SY_LOG_WARN, "reload", "listen addresses and workers change only on restart");
    sy_workers_publish(ctl->workers, t);
    sy_route_table_release(ctl->table);
    ctl->table = t;
    sy_log(SY_LOG_INFO, "reload", "generation %llu published: %zu apps, %zu clusters",
           (unsigned long long)ctl->generation, cfg->n_apps, cfg->n_clusters);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct control *ctl = arg;
    if (sig == SIGHUP) {
        reload(ctl);
        return;
    }
    if (ctl->stopping) {
        sy_log(SY_LOG_WARN, "main", "second signal: stopping now");
        exit(1);
    }
    ctl->stopping = true;
    unsigned drain_ms = sy_route_table_config(ctl->table)->timeouts.drain_ms;
    sy_log(SY_LOG_INFO, "main", "signal %d: draining (at most %u ms)", (int)sig, drain_ms);
    sy_workers_drain(ctl->workers, drain_ms);
    event_base_loopbreak(ctl->base);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool check = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tl:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'l':
            if (strcmp(optarg, "debug") == 0)
                sy_log_set_level(SY_LOG_DEBUG);
            else if (strcmp(optarg, "info") == 0)
                sy_log_set_level(SY_LOG_INFO);
            else if (strcmp(optarg, "warn") == 0)
                sy_log_set_level(SY_LOG_WARN);
            else if (strcmp(optarg, "error") == 0)
                sy_log_set_level(SY_LOG_ERROR);
            else {
                fprintf(stderr, "switchyard: unknown log level '%s'\n", optarg);
                return 2;
            }
            break;
        case 'V':
            printf("switchyard %s\n", SY_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 2;
    }

    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_route_table *table = NULL;
    if (load(path, 1, &table, &d) != 0) {
        print_diags(&d);
        sy_diags_dispose(&d);
        return 1;
    }
    sy_diags_dispose(&d);
    const struct sy_config *cfg = sy_route_table_config(table);
    if (check) {
        printf("%s: ok: %zu apps, %zu clusters, %zu listeners\n", path, cfg->n_apps,
               cfg->n_clusters, cfg->n_listens);
        sy_route_table_release(table);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() == -1) {
        sy_log(SY_LOG_ERROR, "main", "libevent has no pthreads support");
        return 1;
    }
    unsigned n = cfg->workers;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (unsigned)cores : 1;
    }
    struct control ctl = {.path = path, .table = table, .generation = 1};
    if (sy_workers_new(table, n, &ctl.workers) != 0) {
        sy_route_table_release(table);
        return 1;
    }
    ctl.base = event_base_new();
    struct event *sigs[3];
    const int signals[3] = {SIGHUP, SIGTERM, SIGINT};
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(ctl.base, signals[i], signal_cb, &ctl);
        event_add(sigs[i], NULL);
    }
    if (sy_workers_start(ctl.workers) != 0)
        return 1;
    for (size_t i = 0; i < cfg->n_listens; i++)
        sy_log(SY_LOG_INFO, "main", "listening on %s", cfg->listens[i].address);
    sy_log(SY_LOG_INFO, "main", "switchyard %s: generation 1, %zu apps, %zu clusters, %u workers",
           SY_VERSION, cfg->n_apps, cfg->n_clusters, n);
    event_base_dispatch(ctl.base);

    sy_workers_join(ctl.workers);
    sy_workers_free(ctl.workers);
    for (int i = 0; i < 3; i++)
        event_free(sigs[i]);
    event_base_free(ctl.base);
    sy_route_table_release(ctl.table);
    sy_log(SY_LOG_INFO, "main", "stopped");
    return 0;
}
