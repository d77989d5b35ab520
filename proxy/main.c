/* SPDX-License-Identifier: MIT */
/* switchyard: the daemon. Loads and checks the routing file, starts the workers, and runs the
 * control loop on the main thread: a change of the file (inotify, debounced) or SIGHUP
 * re-reads it and publishes a new snapshot (requests in flight keep the one they started
 * with); SIGTERM and SIGINT drain and stop. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "switchyard/config.h"
#include "switchyard/proxy.h"
#include "switchyard/routing.h"
#include "switchyard/state.h"
#include "switchyard/watch.h"
#include "sy_config.h"

/* A burst of writes (an editor, kubelet's symlink dance) becomes one reload. */
#define WATCH_DEBOUNCE_MS 200

struct control {
    struct event_base *base;
    struct sy_state *state;
    struct sy_workers *workers;
    struct sy_watch *watch;
    struct event *watch_ev;
    struct event *debounce;
    bool stopping;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: switchyard [-t] -c FILE [-l debug|info|warn|error]\n"
               "  -c, --config FILE   the routing table (YAML); changes are picked up live\n"
               "  -t, --check         check FILE and exit: 0 when valid, 1 with every error\n"
               "  -l, --log-level L   log level (default info)\n"
               "  -V, --version       print the version\n");
}

static int proxy_check(const struct sy_config *cfg, const char *file, struct sy_diags *d, void *arg)
{
    return sy_proxy_check(cfg, file, d);
}

static void publish(struct sy_route_table *t, void *arg)
{
    sy_workers_publish(arg, t);
}

static void reload(struct control *ctl, bool force)
{
    struct sy_diags d;
    sy_diags_init(&d);
    sy_state_reload(ctl->state, force, &d); /* logs its outcome */
    sy_diags_dispose(&d);
}

static void debounce_cb(evutil_socket_t fd, short what, void *arg)
{
    reload(arg, false);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    if (sy_watch_read(ctl->watch)) {
        struct timeval tv = {0, WATCH_DEBOUNCE_MS * 1000};
        evtimer_add(ctl->debounce, &tv);
    }
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct control *ctl = arg;
    if (sig == SIGHUP) {
        reload(ctl, true);
        return;
    }
    if (ctl->stopping) {
        sy_log(SY_LOG_WARN, "main", "second signal: stopping now");
        exit(1);
    }
    ctl->stopping = true;
    unsigned drain_ms = sy_route_table_config(sy_state_table(ctl->state))->timeouts.drain_ms;
    sy_log(SY_LOG_INFO, "main", "signal %d: draining (at most %u ms)", (int)sig, drain_ms);
    sy_workers_drain(ctl->workers, drain_ms);
    event_base_loopbreak(ctl->base);
}

static bool parse_level(const char *s)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            sy_log_set_level((enum sy_log_level)i);
            return true;
        }
    }
    return false;
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
            if (!parse_level(optarg)) {
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

    struct control ctl = {0};
    struct sy_diags d;
    sy_diags_init(&d);
    if (sy_state_open(path, proxy_check, NULL, &d, &ctl.state) != 0) {
        char line[512];
        for (size_t i = 0; i < d.n; i++) {
            sy_diag_format(&d.v[i], line, sizeof(line));
            fprintf(stderr, "%s\n", line);
        }
        sy_diags_dispose(&d);
        return 1;
    }
    sy_diags_dispose(&d);
    struct sy_route_table *table = sy_state_table(ctl.state);
    const struct sy_config *cfg = sy_route_table_config(table);
    if (check) {
        printf("%s: ok: %zu apps, %zu clusters, %zu listeners\n", path, cfg->n_apps,
               cfg->n_clusters, cfg->n_listens);
        sy_state_free(ctl.state);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    unsigned n = cfg->workers;
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (unsigned)cores : 1;
    }
    /* Signals are caught before the sockets are bound: a client that can connect may signal
     * us, and a SIGHUP must never find the default action (exit) in place. They are handled
     * once the loop runs, when the workers exist. */
    ctl.base = event_base_new();
    struct event *sigs[3];
    const int signals[3] = {SIGHUP, SIGTERM, SIGINT};
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(ctl.base, signals[i], signal_cb, &ctl);
        event_add(sigs[i], NULL);
    }
    if (sy_workers_new(table, n, &ctl.workers) != 0) {
        for (int i = 0; i < 3; i++)
            event_free(sigs[i]);
        event_base_free(ctl.base);
        sy_state_free(ctl.state);
        return 1;
    }
    sy_state_set_publish(ctl.state, publish, ctl.workers);
    ctl.debounce = evtimer_new(ctl.base, debounce_cb, &ctl);
    if (sy_watch_new(path, &ctl.watch) == 0) {
        ctl.watch_ev =
            event_new(ctl.base, sy_watch_fd(ctl.watch), EV_READ | EV_PERSIST, watch_cb, &ctl);
        event_add(ctl.watch_ev, NULL);
    } else {
        sy_log(SY_LOG_WARN, "main", "file changes will not be seen: reload with SIGHUP");
    }
    if (sy_workers_start(ctl.workers) != 0)
        return 1;
    for (size_t i = 0; i < cfg->n_listens; i++)
        sy_log(SY_LOG_INFO, "main", "listening on %s%s", cfg->listens[i].address,
               cfg->listens[i].tls_cert ? " (tls)" : "");
    sy_log(SY_LOG_INFO, "main", "switchyard %s: generation 1, %zu apps, %zu clusters, %u workers",
           SY_VERSION, cfg->n_apps, cfg->n_clusters, n);
    event_base_dispatch(ctl.base);

    sy_workers_join(ctl.workers);
    sy_workers_free(ctl.workers);
    for (int i = 0; i < 3; i++)
        event_free(sigs[i]);
    if (ctl.watch_ev)
        event_free(ctl.watch_ev);
    event_free(ctl.debounce);
    sy_watch_free(ctl.watch);
    event_base_free(ctl.base);
    sy_state_free(ctl.state);
    sy_log(SY_LOG_INFO, "main", "stopped");
    return 0;
}
