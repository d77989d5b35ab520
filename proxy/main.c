/* SPDX-License-Identifier: MIT */
/* switchyard: the daemon. Loads and checks the routing file, replays the overrides journal
 * over it, starts the workers, and runs the control loop on the main thread: a change of the
 * file (inotify, debounced) or SIGHUP re-reads it and publishes a new snapshot (requests in
 * flight keep the one they started with; the overrides apply again over the new file); the
 * admin socket takes operators' commands; SIGTERM and SIGINT drain and stop. With -t it checks
 * a file and, when the file's admin socket answers, shows what it would change. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "mem.h"
#include "switchyard/access_log.h"
#include "switchyard/admin.h"
#include "switchyard/admin_http.h"
#include "switchyard/apps_dir.h"
#include "switchyard/config.h"
#include "switchyard/exclusive.h"
#include "switchyard/fleet.h"
#include "switchyard/guard_engine.h"
#include "switchyard/health_check.h"
#include "switchyard/notify.h"
#include "switchyard/proxy.h"
#include "switchyard/ramp.h"
#include "switchyard/routing.h"
#include "switchyard/state.h"
#include "switchyard/upgrade.h"
#include "switchyard/watch.h"
#include "sy_config.h"

/* A burst of writes (an editor, kubelet's symlink dance) becomes one reload. */
#define WATCH_DEBOUNCE_MS 200

/* The log queue between every thread and the writer of stderr (sy_log_start): about two
 * thousand lines; a reader slower than that loses lines (counted), never stalls a worker. */
#define LOG_BUFFER_BYTES (256 << 10)
/* How long the exit waits for stderr to take what is still queued. */
#define LOG_EXIT_FLUSH_MS 2000

enum { N_SIGNALS = 4 };

struct control {
    SSL_CTX *fleet_ssl; /* etcd's client context (fleet.etcd.tls), or NULL */
    struct event_base *base;
    struct sy_state *state;
    struct sy_workers *workers;
    struct sy_watch *watch;
    struct event *watch_ev;
    struct event *debounce;
    bool files_changed;         /* a TLS file changed since the last reload: force the next one */
    struct event *ticket_timer; /* rotates the session ticket keys */
    unsigned ticket_rotate_ms;  /* the period it runs with */
    struct event *tidy_timer;   /* gives free heap back after a burst (tidy_cb) */
    struct event *tidy_soon;    /* the same, 2 s after a publication */
    size_t tidy_rss, tidy_free; /* resident bytes and free heap after the last trim */
    struct sy_admin *admin;
    struct sy_admin_routing admin_env;
    struct sy_admin_http *http; /* admin.http: /metrics, /status, /healthz, /readyz */
    bool stopping;
    struct sy_notify *notify;         /* systemd's NOTIFY_SOCKET; NULL without it */
    struct sy_apps_watch *apps_watch; /* apps_dir of the table in force; NULL: not watched */
    struct event *apps_watch_ev;
    struct event *stop_delay; /* shutdown.delay: listeners still accept until it fires */
    bool draining;            /* begin_drain ran */
    bool upgraded;            /* a new process took over: its drain is sy_workers_drain_upgraded */
    struct sy_upgrade *upgrade;       /* the upgrade socket (proxy/upgrade.c); NULL: none */
    struct event *sigs[N_SIGNALS];    /* HUP, TERM, INT, USR2 */
    struct event *usr1;               /* the access log's reopen */
    struct sy_health_checker *health; /* the clusters' active health checks */
};

/* What SIGUSR2 starts: this binary's path (the file there now: a package upgrade replaced
 * it), the config's absolute path and the log level, read at start; and the systemd
 * variables sy_notify_new takes out of the environment, put back for the new process. */
static char exe_path[4096], config_abs[4096];
static const char *level_arg;
static char *saved_notify_socket, *saved_watchdog_usec;

static void usage(FILE *f)
{
    fprintf(f, "usage: switchyard [-t] -c FILE [-l debug|info|warn|error] [--discard-state]\n"
               "                  [--upgrade]\n"
               "  -c, --config FILE   the routing table (YAML); changes are picked up live\n"
               "  -t, --check         check FILE and exit: 0 when valid, 1 with every error;\n"
               "                      when FILE's admin socket answers, also show what FILE\n"
               "                      would change in the running table\n"
               "  -l, --log-level L   log level (default info)\n"
               "      --discard-state start even when the overrides journal cannot be read:\n"
               "                      it is moved aside and every override in it is LOST\n"
               "      --upgrade       take over from the switchyard running with FILE's admin\n"
               "                      socket (or journal): its listening sockets, journal and\n"
               "                      admin socket; it drains once this one serves\n"
               "  -V, --version       print the version\n");
}

static void guards(void *arg, sy_guard_app_cb cb, void *cb_arg)
{
    sy_guard_each(arg, cb, cb_arg);
}

static void traffic(void *arg, sy_traffic_cb cb, void *cb_arg)
{
    sy_workers_traffic(arg, cb, cb_arg);
}

static void connect_errors(void *arg, sy_endpoint_errors_cb cb, void *cb_arg)
{
    sy_workers_connect_errors(arg, cb, cb_arg);
}

static void listener_stats(void *arg, sy_listener_stats_cb cb, void *cb_arg)
{
    sy_workers_listener_stats(arg, cb, cb_arg);
}

static size_t workers_health(void *arg, struct sy_worker_health *v, size_t max)
{
    return sy_workers_health(arg, v, max);
}

/* -t: asks the running daemon (FILE's admin socket) what FILE would change. Informational:
 * the exit status stays the local check's, whatever the daemon says. */
static void check_diff(const char *path, const struct sy_config *cfg)
{
    if (!cfg->admin.socket)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        fprintf(stderr, "switchyard: %s: %s\n", path, strerror(errno));
        return;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        sy_xgrow((void **)&text, &cap, len + 65536, 1);
        ssize_t n = read(fd, text + len, cap - len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len > SY_ADMIN_PAYLOAD_MAX)
            break;
    }
    close(fd);
    if (len == 0 || len > SY_ADMIN_PAYLOAD_MAX) {
        printf("(not compared with the running table: the file is empty or larger than %u "
               "bytes)\n",
               SY_ADMIN_PAYLOAD_MAX);
        free(text);
        return;
    }
    /* The daemon reads relative paths (TLS files) against the file's own directory. */
    char *abs = realpath(path, NULL);
    char size[32];
    snprintf(size, sizeof(size), "%zu", len);
    char verb[] = "diff";
    char *words[3] = {verb, size, abs ? abs : (char *)path};
    char line[SY_ADMIN_LINE_MAX + 1];
    struct sy_admin_answer a = {0};
    if (sy_admin_join(3, words, line, sizeof(line)) < 0) {
        printf("(not compared with the running table: the path is too long)\n");
    } else if (sy_admin_call(cfg->admin.socket, line, text, len, 10000, &a) != 0) {
        printf("(not compared with a running table: admin socket %s: %s)\n", cfg->admin.socket,
               a.why);
    } else {
        /* The answer's lines without its final `ok`; a refusal goes to stderr. */
        size_t end = a.len;
        while (end > 0 && a.text[end - 1] == '\n')
            end--;
        size_t last = end;
        while (last > 0 && a.text[last - 1] != '\n')
            last--;
        fwrite(a.text, 1, last, a.ok ? stdout : stderr);
        if (!a.ok)
            fprintf(stderr, "(not compared with the running table: %s answered %.*s)\n",
                    cfg->admin.socket, (int)(end - last), a.text + last);
    }
    sy_admin_answer_dispose(&a);
    free(abs);
    free(text);
}

/* -t: what the apps_dir gave, when there is one. */
static void print_apps_dir(const struct sy_config *cfg)
{
    if (!cfg->apps_dir)
        return;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_apps; i++)
        n += cfg->apps[i].source != NULL;
    printf("%s: %zu apps in %zu files\n", cfg->apps_dir, n, cfg->n_apps_dir_files);
}

/* -t's check of the journal's directory. The daemon refuses a directory that belongs to
 * another user than itself or root, but -t is often run as root on a file that the service's
 * own user will run (the packaged unit: User=switchyard, StateDirectory=switchyard): such a
 * directory passes, with a note naming the user the daemon must run as. */
static int check_journal_dir(const char *jpath, char *note, size_t size, struct sy_diags *d)
{
    uid_t owner;
    int rc = sy_journal_check_dir_any_owner(jpath, &owner, d);
    if (rc != 0 || owner == geteuid() || owner == 0)
        return rc;
    const struct passwd *pw = getpwuid(owner);
    char *dir = sy_xstrdup(jpath);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = '\0';
    snprintf(note, size,
             "note: %s (the overrides journal's directory) belongs to %s%s(uid %u): the daemon "
             "must run as that user (as uid %u it would refuse to keep its journal there)",
             slash ? dir : ".", pw ? pw->pw_name : "", pw ? " " : "", (unsigned)owner,
             (unsigned)geteuid());
    free(dir);
    return 0;
}

static int proxy_check(const struct sy_config *cfg, const char *file, struct sy_diags *d, void *arg)
{
    return sy_proxy_check(cfg, file, d);
}

/* Watches the TLS files `cfg` names, so that a renewed certificate (cert-manager writing a
 * Secret) reaches new connections without a signal. */
static void watch_tls_files(struct control *ctl, const struct sy_config *cfg)
{
    if (!ctl->watch)
        return;
    const char **paths = sy_xcalloc(2 * cfg->n_listens + 3 * cfg->n_clusters + 1, sizeof(*paths));
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_listens; i++) {
        if (cfg->listens[i].tls_cert) {
            paths[n++] = cfg->listens[i].tls_cert;
            paths[n++] = cfg->listens[i].tls_key;
        }
    }
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const struct sy_cluster_tls *t = &cfg->clusters[i].tls;
        const char *f[3] = {t->ca, t->cert, t->key};
        for (int k = 0; k < 3; k++)
            if (f[k])
                paths[n++] = f[k];
    }
    sy_watch_set_files(ctl->watch, paths, n);
    free(paths);
}

/* (Re)starts the ticket key rotation when timeouts.tls_ticket_rotate is not what it runs
 * with. */
static void arm_ticket_rotation(struct control *ctl, const struct sy_config *cfg)
{
    if (ctl->ticket_rotate_ms == cfg->timeouts.tls_ticket_rotate_ms)
        return;
    ctl->ticket_rotate_ms = cfg->timeouts.tls_ticket_rotate_ms;
    unsigned ms = ctl->ticket_rotate_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(ctl->ticket_timer, &tv);
}

static void ticket_cb(evutil_socket_t fd, short what, void *arg)
{
    sy_tls_tickets_rotate();
}

static void tidy_soon_cb(evutil_socket_t fd, short what, void *arg);

/* Follows the apps_dir of the table in force (or none). */
static void watch_apps_dir(struct control *ctl, const struct sy_config *cfg)
{
    if (ctl->apps_watch)
        sy_apps_watch_set(ctl->apps_watch, cfg->apps_dir);
}

static void publish(struct sy_route_table *t, void *arg)
{
    struct control *ctl = arg;
    sy_log_set_client_rate((unsigned)sy_route_table_config(t)->limits.log_client_lines);
    sy_workers_publish(ctl->workers, t);
    /* The config's own reference is taken by the checker (a new file: new probes). */
    sy_health_checker_apply(ctl->health, (struct sy_config *)sy_route_table_config(t));
    watch_tls_files(ctl, sy_route_table_config(t));
    watch_apps_dir(ctl, sy_route_table_config(t));
    arm_ticket_rotation(ctl, sy_route_table_config(t));
    /* The old snapshot is let go of by then: a reload's memory goes back without waiting for
     * the next tidy period. */
    struct timeval soon = {2, 0};
    if (ctl->tidy_soon)
        evtimer_add(ctl->tidy_soon, &soon);
}

/* The STATUS= line systemd shows for the table in force. */
static void serving_status(struct control *ctl, char *buf, size_t size)
{
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(ctl->state));
    snprintf(buf, size, "serving generation %llu: %zu apps, %zu clusters, %zu listeners",
             (unsigned long long)sy_state_generation(ctl->state), cfg->n_apps, cfg->n_clusters,
             cfg->n_listens);
}

static void reload(struct control *ctl, bool force)
{
    struct sy_diags d;
    sy_diags_init(&d);
    /* systemd (Type=notify-reload, and `systemctl reload` in the journal) sees the reload
     * begin and end; sy_state_reload returns once every worker routes with the new table. */
    sy_notify_reloading(ctl->notify, "reloading");
    enum sy_reload_result r = sy_state_reload(ctl->state, force, &d); /* logs its outcome */
    char status[512];
    if (r == SY_RELOAD_REJECTED && d.n > 0) {
        char why[400];
        sy_diag_format(&d.v[0], why, sizeof(why));
        serving_status(ctl, status, sizeof(status));
        size_t len = strlen(status);
        snprintf(status + len, sizeof(status) - len, " (reload rejected: %s)", why);
    } else {
        serving_status(ctl, status, sizeof(status));
    }
    sy_notify_ready(ctl->notify, status);
    sy_diags_dispose(&d);
}

static void debounce_cb(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    bool force = ctl->files_changed;
    ctl->files_changed = false;
    if (force)
        sy_log(SY_LOG_INFO, "main", "a TLS file changed: reloading");
    reload(ctl, force);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    unsigned seen = sy_watch_read(ctl->watch);
    if (seen & SY_WATCH_FILES)
        ctl->files_changed = true;
    if (seen) {
        struct timeval tv = {0, WATCH_DEBOUNCE_MS * 1000};
        evtimer_add(ctl->debounce, &tv);
    }
}

/* A change among the apps_dir files reloads as an edit of the routing file does: debounced,
 * and not forced (unchanged bytes publish nothing). */
static void apps_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    if (sy_apps_watch_read(ctl->apps_watch)) {
        struct timeval tv = {0, WATCH_DEBOUNCE_MS * 1000};
        evtimer_add(ctl->debounce, &tv);
    }
}

static void start_apps_watch(struct control *ctl, const struct sy_config *cfg)
{
    if (sy_apps_watch_new(&ctl->apps_watch) != 0) {
        sy_log(SY_LOG_WARN, "main", "apps_dir changes will not be seen: reload with SIGHUP");
        return;
    }
    ctl->apps_watch_ev = event_new(ctl->base, sy_apps_watch_fd(ctl->apps_watch),
                                   EV_READ | EV_PERSIST, apps_watch_cb, ctl);
    event_add(ctl->apps_watch_ev, NULL);
    watch_apps_dir(ctl, cfg);
}

/* The second half of a graceful stop: the listeners close, idle connections close, HTTP/2
 * clients get GOAWAY and HTTP/1.1 answers carry `Connection: close` (the workers' drain);
 * what still runs after shutdown.grace is cut. The control loop ends here and main waits for
 * the workers while still taking signals. */
static void begin_drain(struct control *ctl)
{
    if (ctl->draining)
        return;
    ctl->draining = true;
    unsigned grace_ms = sy_route_table_config(sy_state_table(ctl->state))->shutdown.grace_ms;
    char status[128];
    snprintf(status, sizeof(status), "draining (at most %u ms)", grace_ms);
    sy_notify_status(ctl->notify, status);
    sy_log(SY_LOG_INFO, "main", "listeners closed: draining (at most %u ms)", grace_ms);
    if (ctl->upgraded)
        sy_workers_drain_upgraded(ctl->workers, grace_ms);
    else
        sy_workers_drain(ctl->workers, grace_ms);
    event_base_loopbreak(ctl->base);
}

static void stop_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    begin_drain(arg);
}

/* SIGTERM or SIGINT: /readyz turns 503 and systemd hears STOPPING at once; the listeners go
 * on accepting for shutdown.delay (a load balancer or Kubernetes takes that long to stop
 * sending), then the drain. */
static void graceful_stop(struct control *ctl, int sig)
{
    ctl->stopping = true;
    sy_admin_http_set_draining(ctl->http);
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(ctl->state));
    unsigned delay_ms = cfg->shutdown.delay_ms;
    char status[160];
    snprintf(status, sizeof(status), "draining (accepting for %u ms more, then at most %u ms)",
             delay_ms, cfg->shutdown.grace_ms);
    sy_notify_stopping(ctl->notify, status);
    sy_log(SY_LOG_INFO, "main",
           "signal %d: stopping (/readyz 503; accepting for %u ms more, then draining for at "
           "most %u ms)",
           sig, delay_ms, cfg->shutdown.grace_ms);
    if (delay_ms == 0) {
        begin_drain(ctl);
        return;
    }
    ctl->stop_delay = evtimer_new(ctl->base, stop_delay_cb, ctl);
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(ctl->stop_delay, &tv);
}

/* -- zero-downtime upgrade, the old process's side (proxy/upgrade.c calls these) ---------- */

static size_t up_listen_fds(void *arg, int *out, size_t max)
{
    struct control *ctl = arg;
    return sy_workers_listen_fds(ctl->workers, out, max);
}

static int up_admin_fd(void *arg)
{
    return sy_admin_socket_fd(((struct control *)arg)->admin);
}

static int up_http_fd(void *arg)
{
    return sy_admin_http_fd(((struct control *)arg)->http);
}

/* The journal is never written by two processes: admin commands wait in the socket's backlog
 * and any other writer (a ramp, the exclusive switch) is refused, then the file is closed,
 * which releases its lock, before the new process is told it may open it. */
static void up_release(void *arg)
{
    struct control *ctl = arg;
    sy_admin_pause_socket(ctl->admin, true);
    sy_journal_release(sy_state_journal(ctl->state));
}

static void up_failed(void *arg, const char *why)
{
    struct control *ctl = arg;
    /* A new process that died may not have released the lock yet: a moment's grace. */
    int rc = 0;
    for (int i = 0; i < 200; i++) {
        rc = sy_journal_retake(sy_state_journal(ctl->state));
        if (rc != SY_ERR_AGAIN)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc)
        sy_log(SY_LOG_ERROR, "upgrade",
               "cannot take the journal back (%s): admin changes are refused until restart",
               sy_strerror(rc));
    sy_admin_pause_socket(ctl->admin, false);
    char status[300];
    snprintf(status, sizeof(status), "upgrade failed (%s): still serving", why);
    sy_notify_status(ctl->notify, status);
}

/* The new process routes on every worker: systemd is told that it is the main process now,
 * the admin sockets are its own, and this one drains (a graceful stop without the delay: the
 * listeners are the new process's too, so nothing is refused). */
static void up_done(void *arg, pid_t pid)
{
    struct control *ctl = arg;
    char m[96];
    snprintf(m, sizeof(m), "MAINPID=%d\nSTATUS=upgraded: pid %d serves", (int)pid, (int)pid);
    sy_notify_send(ctl->notify, m);
    sy_notify_free(ctl->notify); /* no STOPPING=1 nor watchdog from here: pid is the service */
    ctl->notify = NULL;
    sy_admin_hand_over_socket(ctl->admin);
    sy_admin_http_stop_accepting(ctl->http);
    sy_admin_http_set_draining(ctl->http); /* its connections still open say 503 */
    if (ctl->stop_delay)
        event_del(ctl->stop_delay);
    ctl->stopping = true;
    ctl->upgraded = true;
    begin_drain(ctl);
}

static void serve_upgrades(struct control *ctl, const struct sy_config *cfg, const char *path,
                           int fd)
{
    char up[128];
    if (sy_upgrade_socket_path(cfg, path, up, sizeof(up)) != 0) {
        sy_log(SY_LOG_WARN, "upgrade", "no upgrade socket: its path would be too long");
        if (fd != -1)
            close(fd);
        return;
    }
    struct sy_upgrade_hooks h = {up_listen_fds, up_admin_fd, up_http_fd, up_release,
                                 up_failed,     up_done,     ctl};
    sy_upgrade_serve(ctl->base, up, fd, &h, &ctl->upgrade);
}

/* SIGUSR2: the same binary path, with --upgrade; it connects back to us. */
static void spawn_upgrade(struct control *ctl)
{
    if (ctl->stopping) {
        sy_log(SY_LOG_WARN, "upgrade", "SIGUSR2 while stopping: ignored");
        return;
    }
    if (!exe_path[0] || !config_abs[0]) {
        sy_log(SY_LOG_ERROR, "upgrade", "SIGUSR2: this binary's or the config's path is unknown");
        return;
    }
    if (saved_notify_socket)
        setenv("NOTIFY_SOCKET", saved_notify_socket, 1);
    if (saved_watchdog_usec)
        setenv("WATCHDOG_USEC", saved_watchdog_usec, 1);
    sy_upgrade_spawn(exe_path, config_abs, level_arg);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct control *ctl = arg;
    if (sig == SIGUSR2) {
        spawn_upgrade(ctl);
        return;
    }
    if (sig == SIGHUP) {
        if (!ctl->stopping)
            reload(ctl, true);
        return;
    }
    if (ctl->stopping) {
        /* _exit: the workers still run, so nothing at exit may free what they use. */
        sy_log(SY_LOG_WARN, "main", "second signal: stopping now");
        sy_log_stop(LOG_EXIT_FLUSH_MS);
        _exit(1);
    }
    graceful_stop(ctl, (int)sig);
}

static void usr1_cb(evutil_socket_t sig, short what, void *arg)
{
    if (!sy_access_log_is_on())
        return;
    sy_log(SY_LOG_INFO, "main", "signal %d: reopening the access log", (int)sig);
    sy_access_log_reopen();
}

/* Joins the workers off the control thread and wakes the control loop (an eventfd: the
 * control base has no locks for other threads) when they are done, so that the loop still
 * takes signals while the workers drain: a second SIGTERM or SIGINT stops at once. */
struct joiner {
    struct sy_workers *workers;
    int fd;
};

static void *join_main(void *arg)
{
    struct joiner *j = arg;
    sy_workers_join(j->workers);
    uint64_t one = 1;
    ssize_t n = write(j->fd, &one, sizeof(one));
    (void)n; /* an eventfd takes it */
    return NULL;
}

static void joined_cb(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void wait_workers(struct control *ctl)
{
    struct joiner j = {ctl->workers, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    struct event *done =
        j.fd == -1 ? NULL : event_new(ctl->base, j.fd, EV_READ, joined_cb, ctl->base);
    pthread_t t;
    if (!done || event_add(done, NULL) != 0 || pthread_create(&t, NULL, join_main, &j) != 0) {
        sy_log_errno(SY_LOG_WARN, "main", "cannot watch the drain: a second signal will wait");
        sy_workers_join(ctl->workers);
    } else {
        event_base_dispatch(ctl->base);
        pthread_join(t, NULL);
    }
    if (done)
        event_free(done);
    if (j.fd != -1)
        close(j.fd);
}

static void log_stop_at_exit(void)
{
    sy_log_stop(LOG_EXIT_FLUSH_MS);
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

/* glibc gives the top of a heap back to the kernel once 128 KiB are free there, and serves
 * blocks from 128 KiB up (its dynamic threshold grows from there) with mmap: moving 16 KiB
 * answers through buffers of that order made the next buffer fault its pages back in (8-12%
 * of the samples). Keeping up to 16 MiB and mapping only from 1 MiB cost 4.9 -> 5.0 MiB of
 * peak RSS and saved a quarter of the CPU per 16 KiB request (24.6 -> 17.8 us). */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

/* That threshold keeps what a burst freed: 200 HTTP/2 clients that stopped reading left 24 MiB
 * of free heap resident after every one of them was gone (tests/e2e/test_95_abuse.py), and a
 * reload of 10,000 apps (libyaml's document, two configs and two snapshots) 25 MiB. Every
 * TIDY_PERIOD_MS the control thread compares the resident size and the free heap (all arenas)
 * with what they were after the last trim; when either grew by TIDY_BYTES, every free page
 * goes back. Both matter: a trim in the middle of a burst leaves a high resident size, and
 * only the free heap growing says the burst is over. Under steady load neither grows, so
 * nothing is given back only to be faulted in again; a trim holds each arena's lock for its
 * madvise calls, at most once a period. */
#define TIDY_PERIOD_MS 5000
#define TIDY_BYTES     (2u << 20)

static size_t resident_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void tidy_now(struct control *ctl)
{
    if (mallinfo2().fordblks >= TIDY_BYTES)
        malloc_trim(0);
    ctl->tidy_rss = resident_bytes();
    ctl->tidy_free = mallinfo2().fordblks;
}

static void tidy_cb(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    size_t rss = resident_bytes(), free_heap = mallinfo2().fordblks;
    if (rss < ctl->tidy_rss + TIDY_BYTES && free_heap < ctl->tidy_free + TIDY_BYTES) {
        /* Memory taken again since: measure growth from the lower mark. */
        if (rss < ctl->tidy_rss)
            ctl->tidy_rss = rss;
        if (free_heap < ctl->tidy_free)
            ctl->tidy_free = free_heap;
        return;
    }
    tidy_now(ctl);
}

/* 2 s after a publication: the old snapshot and the parse are gone by then, whatever the
 * marks say (a tidy in the middle of a burst of reloads leaves them high). */
static void tidy_soon_cb(evutil_socket_t fd, short what, void *arg)
{
    tidy_now(arg);
}

/* Every client, upstream and admin connection is a descriptor, and the soft limit is often
 * 1024: it goes up to the hard limit, and the figure is logged. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        sy_log_errno(SY_LOG_WARN, "main", "getrlimit(RLIMIT_NOFILE)");
        return;
    }
    unsigned long long was = (unsigned long long)rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
            sy_log_errno(SY_LOG_WARN, "main", "cannot raise the open files limit from %llu to %llu",
                         was, (unsigned long long)rl.rlim_max);
            return;
        }
        sy_log(SY_LOG_INFO, "main", "open files: at most %llu (soft limit raised from %llu)",
               (unsigned long long)rl.rlim_cur, was);
        return;
    }
    sy_log(SY_LOG_INFO, "main", "open files: at most %llu (the hard limit)", was);
}

/* -- zero-downtime upgrade, the new process's side ---------------------------------------- */

/* --upgrade: receives the running process's sockets (the listeners go to the workers made
 * next) and has it release the journal, which the caller opens next. 0, or 1 after saying
 * why on stderr. */
static int take_over(const struct sy_config *cfg, const char *path, struct sy_upgrade_taken *t)
{
    char up[128], why[512];
    if (sy_upgrade_socket_path(cfg, path, up, sizeof(up)) != 0) {
        fprintf(stderr, "switchyard: --upgrade: the upgrade socket's path would be too long\n");
        return 1;
    }
    if (sy_upgrade_connect(up, t, why, sizeof(why)) != 0 ||
        sy_upgrade_take_journal(t, why, sizeof(why)) != 0) {
        fprintf(stderr, "switchyard: --upgrade: %s\n", why);
        sy_upgrade_taken_dispose(t);
        return 1;
    }
    sy_log(SY_LOG_INFO, "upgrade", "taking over from pid %d: %zu listening sockets",
           (int)t->old_pid, t->n_listen);
    sy_workers_inherit(t->listen, t->n_listen);
    free(t->listen);
    t->listen = NULL;
    t->n_listen = 0;
    return 0;
}

/* admin.http's socket from the old process, when it listens on the address `cfg` names. */
static int taken_http_fd(struct sy_upgrade_taken *t, const struct sy_config *cfg)
{
    int fd = t->http_fd;
    t->http_fd = -1;
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof(ss);
    if (fd == -1 || !cfg->admin.http)
        return fd == -1 ? -1 : (close(fd), -1);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1 || len != cfg->admin.http_addrlen ||
        memcmp(&ss, &cfg->admin.http_addr, len) != 0) {
        close(fd);
        return -1; /* admin.http moved: bound afresh */
    }
    return fd;
}

/* Until every worker routes with its snapshot (it answered a ping from its loop), at most
 * 10 s. The ping's number is far above those sy_notify counts from 1 on: a worker answers
 * (and rings) any number other than its last, so the notifier's first ping is still
 * answered on its own descriptor. */
#define TAKE_OVER_PING (UINT64_C(1) << 62)

static bool workers_routing(struct sy_workers *ws)
{
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd == -1)
        return false;
    sy_workers_ping(ws, TAKE_OVER_PING, efd);
    uint64_t deadline = sy_now_ms() + 10000;
    while (sy_workers_answered(ws, TAKE_OVER_PING) < sy_workers_count(ws) &&
           sy_now_ms() < deadline) {
        uint64_t v;
        struct timespec ts = {0, 1000 * 1000};
        if (read(efd, &v, sizeof(v)) == -1)
            nanosleep(&ts, NULL);
    }
    /* The eventfd must stay open while a worker may still ring it: a late one is not waited
     * for, and the descriptor is left to the process (one, once). */
    bool ok = sy_workers_answered(ws, TAKE_OVER_PING) == sy_workers_count(ws);
    if (ok)
        close(efd);
    return ok;
}

/* The new process serves: the old one is told (it stops accepting and drains), then the
 * upgrade socket is ours. A failure here ends this process: the old one serves on. */
static void finish_take_over(struct control *ctl, const struct sy_config *cfg, const char *path,
                             struct sy_upgrade_taken *t)
{
    char why[512];
    if (!workers_routing(ctl->workers)) {
        snprintf(why, sizeof(why), "the workers did not take their snapshot within 10 s");
    } else if (sy_upgrade_ready(t, why, sizeof(why)) == 0) {
        sy_log(SY_LOG_INFO, "upgrade", "took over from pid %d: serving", (int)t->old_pid);
        serve_upgrades(ctl, cfg, path, t->upgrade_fd);
        t->upgrade_fd = -1;
        sy_upgrade_taken_dispose(t);
        return;
    }
    sy_log(SY_LOG_ERROR, "upgrade", "cannot take over: %s", why);
    sy_journal_release(sy_state_journal(ctl->state)); /* before the old one hears of it */
    sy_upgrade_fail(t, why);
    sy_log_stop(LOG_EXIT_FLUSH_MS);
    _exit(1);
}

/* --upgrade cannot go on (`why`): the journal is released, then the old process is told why
 * (it takes the journal back and serves on). No-op without an upgrade under way. */
static void give_up_take_over(struct control *ctl, struct sy_upgrade_taken *t, const char *why)
{
    if (t->conn == -1)
        return;
    sy_journal_release(sy_state_journal(ctl->state));
    sy_upgrade_fail(t, why);
    sy_upgrade_taken_dispose(t);
}

/* For SIGUSR2: what to exec, and the systemd variables sy_notify_new takes away. */
static void remember_paths(const char *path)
{
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
    exe_path[n > 0 ? n : 0] = '\0';
    size_t len = strlen(exe_path);
    const char *del = " (deleted)";
    if (len > strlen(del) && strcmp(exe_path + len - strlen(del), del) == 0)
        exe_path[len - strlen(del)] = '\0';
    char *abs = realpath(path, NULL);
    snprintf(config_abs, sizeof(config_abs), "%s", abs ? abs : "");
    free(abs);
    const char *v = getenv("NOTIFY_SOCKET");
    saved_notify_socket = v ? sy_xstrdup(v) : NULL;
    v = getenv("WATCHDOG_USEC");
    saved_watchdog_usec = v ? sy_xstrdup(v) : NULL;
}

/* What the command line asked for. */
struct args {
    const char *path;
    bool check, discard, upgrade;
};

/* Returns -1 to go on, else the exit status (after --help, --version or a usage error). */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"discard-state", no_argument, NULL, 'D'},
        {"upgrade", no_argument, NULL, 'U'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tl:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            a->path = optarg;
            break;
        case 't':
            a->check = true;
            break;
        case 'l':
            level_arg = optarg;
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
        case 'D':
            a->discard = true;
            break;
        case 'U':
            a->upgrade = true;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!a->path || optind != argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Every diagnostic on stderr, one line each; the list is emptied. */
static void print_diags(struct sy_diags *d)
{
    char line[512];
    for (size_t i = 0; i < d->n; i++) {
        sy_diag_format(&d->v[i], line, sizeof(line));
        fprintf(stderr, "%s\n", line);
    }
    sy_diags_dispose(d);
}

/* -t: the file is loaded (by now); the journal's directory is checked as the start would check
 * it (the journal is used when there is an admin socket or the file exists): -t says whether
 * it would start, save for the directory's owner, which only the user who will run it can
 * judge. Returns the exit status. */
static int run_check(struct control *ctl, const char *path, const struct sy_config *cfg)
{
    char jpath[4096];
    char owner_note[512] = "";
    struct sy_diags d;
    sy_diags_init(&d);
    if (sy_state_journal_path(cfg, path, jpath, sizeof(jpath)) == 0 &&
        (cfg->admin.socket || access(jpath, F_OK) == 0) &&
        check_journal_dir(jpath, owner_note, sizeof(owner_note), &d) != 0) {
        print_diags(&d);
        sy_state_free(ctl->state);
        return 1;
    }
    sy_diags_dispose(&d);
    printf("%s: ok: %zu apps, %zu clusters, %zu listeners\n", path, cfg->n_apps, cfg->n_clusters,
           cfg->n_listens);
    print_apps_dir(cfg);
    if (owner_note[0])
        printf("%s\n", owner_note);
    check_diff(path, cfg);
    sy_state_free(ctl->state);
    return 0;
}

/* The overrides before the first snapshot is served: a revert survives a restart. With an
 * admin socket the journal must exist (made now, so that a read-only place fails here, not
 * at the first revert). */
static int open_journal(struct control *ctl, const struct sy_config *cfg, bool discard,
                        struct sy_upgrade_taken *taken)
{
    struct sy_diags d;
    sy_diags_init(&d);
    int jrc = sy_state_open_journal(ctl->state, cfg->admin.socket != NULL, discard, NULL, &d);
    if (jrc == 0) {
        sy_diags_dispose(&d);
        return 0;
    }
    print_diags(&d);
    sy_upgrade_fail(taken, "cannot open the overrides journal");
    if (jrc == SY_ERR_INVALID)
        fprintf(stderr, "switchyard: cannot read the overrides journal: not starting, so that "
                        "no override is silently lost (fix or move the file, set `state:`, or "
                        "start with --discard-state to drop every override it holds)\n");
    else
        fprintf(stderr, "switchyard: cannot use the overrides journal: not starting\n");
    return -1;
}

/* How many workers: the file's number, or one per core. */
static unsigned worker_count(const struct sy_config *cfg)
{
    if (cfg->workers)
        return cfg->workers;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (unsigned)cores : 1;
}

/* Signals are caught before the sockets are bound: a client that can connect may signal us,
 * and a SIGHUP must never find the default action (exit) in place. They are handled once the
 * loop runs, when the workers exist. SIGUSR1 reopens the access log by its path (logrotate). */
static void catch_signals(struct control *ctl)
{
    const int signals[N_SIGNALS] = {SIGHUP, SIGTERM, SIGINT, SIGUSR2};
    for (int i = 0; i < N_SIGNALS; i++) {
        ctl->sigs[i] = evsignal_new(ctl->base, signals[i], signal_cb, ctl);
        event_add(ctl->sigs[i], NULL);
    }
    ctl->usr1 = evsignal_new(ctl->base, SIGUSR1, usr1_cb, NULL);
    event_add(ctl->usr1, NULL);
}

/* The control thread's timers: the file watch's debounce, ticket rotation, the tidy pass. */
static void start_timers(struct control *ctl, const struct sy_config *cfg)
{
    ctl->debounce = evtimer_new(ctl->base, debounce_cb, ctl);
    ctl->ticket_timer = event_new(ctl->base, -1, EV_PERSIST, ticket_cb, ctl);
    arm_ticket_rotation(ctl, cfg);
    ctl->tidy_timer = event_new(ctl->base, -1, EV_PERSIST, tidy_cb, ctl);
    struct timeval tidy_tv = {TIDY_PERIOD_MS / 1000, (TIDY_PERIOD_MS % 1000) * 1000};
    event_add(ctl->tidy_timer, &tidy_tv);
    ctl->tidy_soon = evtimer_new(ctl->base, tidy_soon_cb, ctl);
}

/* The admin command set, admin.http (served through the drain too: /readyz says 503 then)
 * and the admin socket, on descriptors a previous process handed over when there are. */
/* The fleet (`fleet:`): etcd's client context when an endpoint is TLS, then the engine. */
static int start_fleet(struct control *ctl, const struct sy_config *cfg)
{
    bool tls = false;
    for (size_t i = 0; i < cfg->fleet.n_endpoints; i++)
        tls = tls || cfg->fleet.endpoints[i].tls;
    if (tls) {
        const char *why = NULL;
        ctl->fleet_ssl = sy_proxy_tls_client_ctx(&cfg->fleet.tls, &why);
        if (!ctl->fleet_ssl) {
            fprintf(stderr, "switchyard: fleet.etcd.tls: %s\n", why ? why : "cannot be loaded");
            return -1;
        }
    }
    if (!sy_state_journal(ctl->state)) {
        fprintf(stderr, "switchyard: fleet: needs a state file (the fleet's cache): configure "
                        "`state:` or `admin.socket`\n");
        return -1;
    }
    ctl->admin_env.fleet = sy_fleet_new(ctl->base, ctl->state, SY_VERSION, ctl->fleet_ssl);
    return 0;
}

static int start_admin(struct control *ctl, const struct sy_config *cfg,
                       struct sy_upgrade_taken *taken)
{
    /* The command set also without a listener when there is a journal (an existing
     * `state:`) or a guard: the guard and the ramps run from it (without a journal, a guard's
     * revert is refused and logged). */
    bool guarded = false;
    for (size_t i = 0; i < cfg->n_apps && !guarded; i++)
        guarded = cfg->apps[i].guard.on;
    if (cfg->admin.socket || cfg->admin.http || sy_state_journal(ctl->state) || guarded ||
        cfg->fleet.on) {
        ctl->admin = sy_admin_new(ctl->state);
        ctl->admin_env.state = ctl->state;
        ctl->admin_env.traffic = traffic;
        ctl->admin_env.traffic_arg = ctl->workers;
        ctl->admin_env.admin = ctl->admin;
        ctl->admin_env.exclusive = sy_exclusive_new(ctl->base, &ctl->admin_env);
        ctl->admin_env.guard = sy_guard_new(ctl->base, &ctl->admin_env);
        sy_admin_routing_init(ctl->admin, &ctl->admin_env);
        sy_guard_admin_init(ctl->admin, ctl->admin_env.guard);
        ctl->admin_env.ramper = sy_ramper_new(ctl->base, &ctl->admin_env);
        sy_ramper_admin_init(ctl->admin, ctl->admin_env.ramper);
    }
    if (cfg->fleet.on && start_fleet(ctl, cfg) != 0) {
        give_up_take_over(ctl, taken, "cannot start the fleet");
        return -1;
    }
    if (ctl->admin) /* `fleet` answers without one too: it says there is none */
        sy_fleet_admin_init(ctl->admin, ctl->admin_env.fleet);
    if (cfg->admin.http) {
        struct sy_admin_http_env henv = {
            .admin = ctl->admin,
            .state = ctl->state,
            .traffic = traffic,
            .traffic_arg = ctl->workers,
            .health = workers_health,
            .health_arg = ctl->workers,
            .connect_errors = connect_errors,
            .connect_errors_arg = ctl->workers,
            .listener_stats = listener_stats,
            .listener_stats_arg = ctl->workers,
            .guards = guards,
            .guards_arg = ctl->admin_env.guard,
            .fleet = ctl->admin_env.fleet,
        };
        int hfd = taken_http_fd(taken, cfg);
        henv.has_inherited_fd = hfd != -1;
        henv.inherited_fd = hfd;
        if (sy_admin_http_listen(ctl->base, cfg, &henv, &ctl->http) != 0) {
            fprintf(stderr, "switchyard: cannot serve admin.http %s\n", cfg->admin.http);
            give_up_take_over(ctl, taken, "cannot serve admin.http");
            return -1;
        }
    }
    if (cfg->admin.socket) {
        int afd = taken->admin_fd;
        taken->admin_fd = -1;
        if ((afd != -1 ? sy_admin_listen_fd(ctl->admin, ctl->base, cfg->admin.socket, afd)
                       : sy_admin_listen(ctl->admin, ctl->base, cfg->admin.socket)) != 0) {
            fprintf(stderr, "switchyard: cannot serve the admin socket %s\n", cfg->admin.socket);
            give_up_take_over(ctl, taken, "cannot serve the admin socket");
            return -1;
        }
    }
    return 0;
}

/* The routing file, its TLS files and apps_dir are watched (inotify). */
static void start_watches(struct control *ctl, const char *path, const struct sy_config *cfg)
{
    if (sy_watch_new(path, &ctl->watch) == 0) {
        ctl->watch_ev =
            event_new(ctl->base, sy_watch_fd(ctl->watch), EV_READ | EV_PERSIST, watch_cb, ctl);
        event_add(ctl->watch_ev, NULL);
        watch_tls_files(ctl, cfg);
    } else {
        sy_log(SY_LOG_WARN, "main", "file changes will not be seen: reload with SIGHUP");
    }
    start_apps_watch(ctl, cfg);
}

/* Serving: the log lines, the upgrade socket (or the end of a take-over), and READY=1 for
 * systemd once every worker has answered from its own loop, not merely been started. */
static void announce(struct control *ctl, const struct sy_config *cfg, const char *path,
                     bool upgrade, struct sy_upgrade_taken *taken, unsigned n)
{
    for (size_t i = 0; i < cfg->n_listens; i++)
        sy_log(SY_LOG_INFO, "main", "listening on %s%s", cfg->listens[i].address,
               cfg->listens[i].tls_cert ? " (tls)" : "");
    sy_log(SY_LOG_INFO, "main", "switchyard %s: generation 1, %zu apps, %zu clusters, %u workers",
           SY_VERSION, cfg->n_apps, cfg->n_clusters, n);
    if (upgrade)
        finish_take_over(ctl, cfg, path, taken);
    else
        serve_upgrades(ctl, cfg, path, -1);
    ctl->notify = sy_notify_new(ctl->base, ctl->workers);
    if (ctl->notify && upgrade) {
        char m[48];
        snprintf(m, sizeof(m), "MAINPID=%d", (int)getpid());
        sy_notify_send(ctl->notify, m);
    }
    if (ctl->notify) {
        char status[512];
        serving_status(ctl, status, sizeof(status));
        sy_notify_ready_when_workers(ctl->notify, status);
    }
}

/* Draining: nothing but TERM and INT is served now (no reloads, no admin commands; a HUP is
 * caught and ignored); admin.http still answers (/readyz 503), its /status from the command
 * set kept until the workers are gone. Then everything is freed. */
static void finish(struct control *ctl)
{
    sy_admin_close_socket(ctl->admin);
    sy_upgrade_free(ctl->upgrade); /* no upgrade of a process that drains */
    ctl->upgrade = NULL;
    sy_exclusive_free(ctl->admin_env.exclusive); /* a switch not released: the journal's side */
    ctl->admin_env.exclusive = NULL;
    sy_guard_stop(ctl->admin_env.guard);   /* a drain reverts nothing; /status still reads it */
    sy_ramper_stop(ctl->admin_env.ramper); /* nor takes a step: the journal keeps the ramp */
    if (ctl->watch_ev)
        event_del(ctl->watch_ev);
    if (ctl->apps_watch_ev)
        event_del(ctl->apps_watch_ev);
    event_del(ctl->debounce);
    sy_health_checker_free(ctl->health);
    ctl->health = NULL;
    wait_workers(ctl);
    sy_access_log_close(LOG_EXIT_FLUSH_MS);
    event_free(ctl->usr1);
    sy_admin_http_free(ctl->http);
    ctl->http = NULL;
    sy_admin_free(ctl->admin);
    ctl->admin = NULL;
    sy_fleet_free(ctl->admin_env.fleet);
    SSL_CTX_free(ctl->fleet_ssl);
    sy_ramper_free(ctl->admin_env.ramper);
    ctl->admin_env.ramper = NULL;
    sy_guard_free(ctl->admin_env.guard);
    ctl->admin_env.guard = NULL;
    sy_workers_free(ctl->workers);
    sy_notify_free(ctl->notify);
    for (int i = 0; i < N_SIGNALS; i++)
        event_free(ctl->sigs[i]);
    if (ctl->watch_ev)
        event_free(ctl->watch_ev);
    event_free(ctl->debounce);
    if (ctl->stop_delay)
        event_free(ctl->stop_delay);
    event_free(ctl->ticket_timer);
    event_free(ctl->tidy_timer);
    event_free(ctl->tidy_soon);
    sy_watch_free(ctl->watch);
    if (ctl->apps_watch_ev)
        event_free(ctl->apps_watch_ev);
    sy_apps_watch_free(ctl->apps_watch);
    event_base_free(ctl->base);
    sy_state_free(ctl->state);
    sy_log(SY_LOG_INFO, "main", "stopped");
}

int main(int argc, char **argv)
{
    tune_malloc();
    sy_mem_install();
    struct args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc != -1)
        return rc;
    struct control ctl = {0};
    struct sy_diags d;
    sy_diags_init(&d);
    if (sy_state_open(a.path, proxy_check, NULL, &d, &ctl.state) != 0) {
        print_diags(&d);
        return 1;
    }
    sy_diags_dispose(&d);
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(ctl.state));
    if (a.check)
        return run_check(&ctl, a.path, cfg);

    remember_paths(a.path);
    struct sy_upgrade_taken taken = {.conn = -1, .admin_fd = -1, .http_fd = -1, .upgrade_fd = -1};
    if ((a.upgrade && take_over(cfg, a.path, &taken) != 0) ||
        open_journal(&ctl, cfg, a.discard, &taken) != 0) {
        sy_state_free(ctl.state);
        return 1;
    }
    struct sy_route_table *table = sy_state_table(ctl.state);
    cfg = sy_route_table_config(table);

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    /* From here on, no thread waits for whoever reads stderr; what is queued is written out
     * at exit (within LOG_EXIT_FLUSH_MS). */
    sy_log_set_client_rate((unsigned)cfg->limits.log_client_lines);
    if (sy_log_start(LOG_BUFFER_BYTES) == 0)
        atexit(log_stop_at_exit);
    unsigned n = worker_count(cfg);
    /* The access log's rings and writer exist before the workers, which take a ring each. */
    if (cfg->access_log.path &&
        sy_access_log_open(cfg->access_log.path, cfg->access_log.buffer_bytes, n) != 0) {
        sy_state_free(ctl.state);
        return 1;
    }
    ctl.base = event_base_new();
    catch_signals(&ctl);
    if (sy_workers_new(table, n, &ctl.workers) != 0) {
        give_up_take_over(&ctl, &taken, "cannot listen on every address of its file (see its log)");
        for (int i = 0; i < N_SIGNALS; i++)
            event_free(ctl.sigs[i]);
        event_free(ctl.usr1);
        event_base_free(ctl.base);
        sy_state_free(ctl.state);
        return 1;
    }
    sy_state_set_publish(ctl.state, publish, &ctl);
    ctl.health = sy_health_checker_new(ctl.base);
    sy_health_checker_apply(ctl.health, (struct sy_config *)cfg);
    start_timers(&ctl, cfg);
    if (start_admin(&ctl, cfg, &taken) != 0)
        return 1;
    start_watches(&ctl, a.path, cfg);
    if (sy_workers_start(ctl.workers) != 0)
        return 1;
    announce(&ctl, cfg, a.path, a.upgrade, &taken, n);
    event_base_dispatch(ctl.base);
    finish(&ctl);
    return 0;
}
