/* SPDX-License-Identifier: MIT */
/* `switchyardctl status --watch`: the status page's view in a terminal. Every interval it asks
 * the admin socket for `status --json`, reads the answer with the JSON reader (switchyard/json.h),
 * and draws one frame: per app and cluster the file / override / effective weights (stable marked),
 * the request rate since the previous poll, the 5xx share, p50 and p99 over the last minute
 * (from the difference of the cumulative latency histograms of the oldest poll in the minute
 * and the newest), in flight and tunnels; the override and the command that reverts the app;
 * the last rejected reload; the last changes. On a terminal each frame replaces the last (ANSI
 * home and clear); elsewhere frames are plain lines, one after the other. */
#include "watch_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "switchyard/admin_client.h"
#include "switchyard/base.h"
#include "switchyard/json.h"

#define WINDOW_MS     60000 /* p50 and p99 are over this much of the past (up to +10 s) */
#define CHECKPOINT_MS 10000 /* polls kept for the window are at least this far apart */
#define MAX_SAMPLES   16    /* polls kept: the window's checkpoints and the last one */
#define HISTORY_ROWS  5

struct sample {
    uint64_t at_ms; /* monotonic */
    struct sy_jv *status;
};

struct watch {
    const char *socket;
    int timeout_ms;
    FILE *out;
    bool tty;
    struct sample v[MAX_SAMPLES];
    size_t n;
};

/* The item of `list` named `name`, or NULL. Polls list apps and clusters in the same order,
 * so item `hint` is tried first: thousands of apps are not a quadratic search. */
static const struct sy_jv *find_named(const struct sy_jv *list, const char *name, size_t hint)
{
    const char *h = sy_jv_str(sy_jv_get(sy_jv_at(list, hint), "name"));
    if (h && strcmp(h, name) == 0)
        return sy_jv_at(list, hint);
    for (size_t i = 0; i < sy_jv_len(list); i++) {
        const char *s = sy_jv_str(sy_jv_get(sy_jv_at(list, i), "name"));
        if (s && strcmp(s, name) == 0)
            return sy_jv_at(list, i);
    }
    return NULL;
}

/* The same app's same cluster in an earlier status (where they were likely at `ai` and `ci`),
 * or NULL. */
static const struct sy_jv *cluster_in(const struct sy_jv *status, const char *app, size_t ai,
                                      const char *cluster, size_t ci)
{
    if (!status)
        return NULL;
    const struct sy_jv *a = find_named(sy_jv_get(status, "apps"), app, ai);
    return a ? find_named(sy_jv_get(a, "clusters"), cluster, ci) : NULL;
}

/* A bound of `latency_le_ms` ("2.5") in milliseconds; -1 for "+Inf" or anything else. */
static double bound_ms(const struct sy_jv *v)
{
    const char *s = sy_jv_str(v);
    char *end = NULL;
    double ms = s ? strtod(s, &end) : -1;
    return s && end != s && *end == '\0' && ms >= 0 ? ms : -1;
}

/* The q-quantile in milliseconds of the requests one cluster counted between two polls
 * (`old` may be NULL: since start), from `latency_le_ms` and the cumulative `latency_counts`,
 * interpolated inside the bucket as Prometheus does; -1 when there were none; in the +Inf
 * bucket: its lower bound. */
double sy_watch_quantile(const struct sy_jv *now, const struct sy_jv *old, double q)
{
    const struct sy_jv *le = sy_jv_get(now, "latency_le_ms");
    const struct sy_jv *cn = sy_jv_get(now, "latency_counts");
    const struct sy_jv *co = old ? sy_jv_get(old, "latency_counts") : NULL;
    size_t n = sy_jv_len(cn);
    if (n == 0 || sy_jv_len(le) != n || (co && sy_jv_len(co) != n))
        return -1;
    uint64_t last_now = sy_jv_uint(sy_jv_at(cn, n - 1), 0);
    uint64_t last_old = sy_jv_uint(sy_jv_at(co, n - 1), 0);
    if (last_now <= last_old)
        return -1;
    double rank = q * (double)(last_now - last_old), lower = 0, below = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = sy_jv_uint(sy_jv_at(cn, i), 0), b = sy_jv_uint(sy_jv_at(co, i), 0);
        double c = a > b ? (double)(a - b) : 0;
        double upper = bound_ms(sy_jv_at(le, i));
        if (upper < 0)
            return lower; /* the +Inf bucket */
        if (c >= rank) {
            double in = c - below;
            return in > 0 ? lower + (upper - lower) * (rank - below) / in : upper;
        }
        below = c;
        lower = upper;
    }
    return lower;
}

static void fmt_ms(double ms, char *buf, size_t size)
{
    if (ms < 0)
        snprintf(buf, size, "-");
    else if (ms < 1)
        snprintf(buf, size, "%.0fus", ms * 1000);
    else if (ms < 1000)
        snprintf(buf, size, "%.1fms", ms);
    else
        snprintf(buf, size, "%.2fs", ms / 1000);
}

/* "blue=90,green=10" from an object of weights. */
static void weights_of(const struct sy_jv *w, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sy_jv_len(w) && off < size; i++) {
        int r = snprintf(buf + off, size - off, "%s%s=%" PRIu64, i ? "," : "", sy_jv_key_at(w, i),
                         sy_jv_uint(sy_jv_at(w, i), 0));
        if (r < 0)
            break;
        off += (size_t)r;
    }
    if (off == 0)
        snprintf(buf, size, "-");
}

static const char *str_or(const struct sy_jv *v, const char *dflt)
{
    return sy_jv_str(v) ? sy_jv_str(v) : dflt;
}

/* An exclusive app, its switch in progress, maintenance: a line each, where there is one. */
static void draw_modes(struct watch *w, const struct sy_jv *app)
{
    const struct sy_jv *sw = sy_jv_get(app, "switch"), *m = sy_jv_get(app, "in_maintenance");
    const char *mode = sy_jv_str(sy_jv_get(app, "mode"));
    if (mode && strcmp(mode, "weighted") != 0)
        fprintf(w->out, "%-16s   mode: %s\n", "", mode);
    if (sy_jv_type(sw) == SY_JV_OBJ)
        fprintf(w->out,
                "%-16s   SWITCH %s -> %s in progress: phase %s, %" PRIu64 " held, %" PRIu64
                " still on %s, %" PRIu64 " ms so far\n",
                "", str_or(sy_jv_get(sw, "from"), "?"), str_or(sy_jv_get(sw, "to"), "?"),
                str_or(sy_jv_get(sw, "phase"), "?"), sy_jv_uint(sy_jv_get(sw, "held"), 0),
                sy_jv_uint(sy_jv_get(sw, "old_in_flight"), 0), str_or(sy_jv_get(sw, "from"), "?"),
                sy_jv_uint(sy_jv_get(sw, "elapsed_ms"), 0));
    if (sy_jv_type(m) == SY_JV_OBJ)
        fprintf(w->out, "%-16s   MAINTENANCE since %s by %s: %s\n", "",
                str_or(sy_jv_get(m, "since"), "?"), str_or(sy_jv_get(m, "who"), "?"),
                str_or(sy_jv_get(m, "command"), "?"));
}

static void draw_app(struct watch *w, const struct sy_jv *app, size_t ai, const struct sy_jv *prev,
                     double dt_s, const struct sy_jv *oldest)
{
    const char *name = sy_jv_str(sy_jv_get(app, "name"));
    const struct sy_jv *clusters = sy_jv_get(app, "clusters");
    if (!name)
        return;
    for (size_t i = 0; i < sy_jv_len(clusters); i++) {
        const struct sy_jv *c = sy_jv_at(clusters, i);
        const char *cname = sy_jv_str(sy_jv_get(c, "name"));
        if (!cname)
            continue;
        const struct sy_jv *p = cluster_in(prev, name, ai, cname, i);
        const struct sy_jv *o = cluster_in(oldest, name, ai, cname, i);
        uint64_t req = sy_jv_uint(sy_jv_get(c, "requests"), 0);
        uint64_t x5 = sy_jv_uint(sy_jv_get(c, "responses_5xx"), 0);
        char rate[32], share[32], p50[32], p99[32], ov[16];
        if (p && dt_s > 0) {
            uint64_t dr = req - sy_jv_uint(sy_jv_get(p, "requests"), 0);
            snprintf(rate, sizeof(rate), "%.1f", (double)dr / dt_s);
        } else {
            snprintf(rate, sizeof(rate), "-");
        }
        /* The 5xx share over the window, like the percentiles. */
        uint64_t wr = req - sy_jv_uint(sy_jv_get(o, "requests"), 0);
        uint64_t w5 = x5 - sy_jv_uint(sy_jv_get(o, "responses_5xx"), 0);
        if (wr)
            snprintf(share, sizeof(share), "%.1f%%", 100.0 * (double)w5 / (double)wr);
        else
            snprintf(share, sizeof(share), "-");
        fmt_ms(sy_watch_quantile(c, o, 0.5), p50, sizeof(p50));
        fmt_ms(sy_watch_quantile(c, o, 0.99), p99, sizeof(p99));
        const struct sy_jv *ovv = sy_jv_get(c, "override");
        if (sy_jv_type(ovv) == SY_JV_UINT)
            snprintf(ov, sizeof(ov), "%" PRIu64, sy_jv_uint(ovv, 0));
        else
            snprintf(ov, sizeof(ov), "-");
        fprintf(w->out,
                "%-16.40s %-10.40s %c %4" PRIu64 " %8s %9" PRIu64 " %8s %6s %8s %8s %9" PRIu64
                " %7" PRIu64 "\n",
                i == 0 ? name : "", cname, sy_jv_bool(sy_jv_get(c, "stable")) ? '*' : ' ',
                sy_jv_uint(sy_jv_get(c, "file"), 0), ov, sy_jv_uint(sy_jv_get(c, "effective"), 0),
                rate, share, p50, p99, sy_jv_uint(sy_jv_get(c, "in_flight"), 0),
                sy_jv_uint(sy_jv_get(c, "tunnels"), 0));
    }
    const struct sy_jv *hosts = sy_jv_get(app, "hosts"), *paths = sy_jv_get(app, "paths");
    fprintf(w->out, "%-16s   hosts:", "");
    for (size_t i = 0; i < sy_jv_len(hosts); i++)
        fprintf(w->out, " %s", sy_jv_str(sy_jv_at(hosts, i)) ? sy_jv_str(sy_jv_at(hosts, i)) : "?");
    fprintf(w->out, "  paths:");
    for (size_t i = 0; i < sy_jv_len(paths); i++)
        fprintf(w->out, " %s", sy_jv_str(sy_jv_at(paths, i)) ? sy_jv_str(sy_jv_at(paths, i)) : "?");
    fprintf(w->out, "\n");
    draw_modes(w, app);
    const struct sy_jv *o = sy_jv_get(app, "override");
    if (sy_jv_type(o) == SY_JV_OBJ) {
        char ws[512];
        weights_of(sy_jv_get(o, "weights"), ws, sizeof(ws));
        const char *state = sy_jv_str(sy_jv_get(o, "state"));
        fprintf(w->out, "%-16s   OVERRIDE%s %s by uid %" PRIu64 " pid %" PRIu64 " at %s: %s\n", "",
                state && strcmp(state, "stale") == 0 ? " (stale, not in force)" : "", ws,
                sy_jv_uint(sy_jv_get(o, "uid"), 0), sy_jv_uint(sy_jv_get(o, "pid"), 0),
                sy_jv_str(sy_jv_get(o, "time")) ? sy_jv_str(sy_jv_get(o, "time")) : "?",
                sy_jv_str(sy_jv_get(o, "command")) ? sy_jv_str(sy_jv_get(o, "command")) : "?");
    }
    fprintf(w->out, "%-16s   to revert: switchyardctl -s %s revert %s\n", "", w->socket, name);
}

static void draw(struct watch *w, const struct sy_jv *st, const struct sy_jv *prev, double dt_s,
                 const struct sy_jv *oldest, double window_s)
{
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(now, sizeof(now), "%H:%M:%S", &tm);
    if (w->tty)
        fputs("\033[H\033[2J", w->out);
    fprintf(w->out, "switchyard %s  generation %" PRIu64 "  journal seq %" PRIu64 "  at %s\n",
            w->socket, sy_jv_uint(sy_jv_get(st, "generation"), 0),
            sy_jv_uint(sy_jv_get(st, "journal_seq"), 0), now);
    const struct sy_jv *rj = sy_jv_get(st, "last_rejected_reload");
    if (sy_jv_type(rj) == SY_JV_OBJ)
        fprintf(w->out, "last rejected reload%s: %s:%" PRIu64 ":%" PRIu64 ": %s (at %s)\n",
                sy_jv_bool(sy_jv_get(rj, "current")) ? "" : " (a later one succeeded)",
                sy_jv_str(sy_jv_get(rj, "file")) ? sy_jv_str(sy_jv_get(rj, "file")) : "?",
                sy_jv_uint(sy_jv_get(rj, "line"), 0), sy_jv_uint(sy_jv_get(rj, "col"), 0),
                sy_jv_str(sy_jv_get(rj, "message")) ? sy_jv_str(sy_jv_get(rj, "message")) : "",
                sy_jv_str(sy_jv_get(rj, "time")) ? sy_jv_str(sy_jv_get(rj, "time")) : "?");
    fprintf(w->out, "(rate since the last poll; 5xx, p50, p99 over the last %.0f s; * = stable)\n",
            window_s);
    fprintf(w->out, "%-16s %-10s %c %4s %8s %9s %8s %6s %8s %8s %9s %7s\n", "APP", "CLUSTER", ' ',
            "FILE", "OVERRIDE", "EFFECTIVE", "REQ/S", "5XX", "P50", "P99", "IN-FLIGHT", "TUNNELS");
    const struct sy_jv *apps = sy_jv_get(st, "apps");
    for (size_t i = 0; i < sy_jv_len(apps); i++)
        draw_app(w, sy_jv_at(apps, i), i, prev, dt_s, oldest);
    const struct sy_jv *hist = sy_jv_get(st, "history");
    size_t nh = sy_jv_len(hist);
    fprintf(w->out, "last changes:%s\n", nh ? "" : " none");
    for (size_t k = 0; k < nh && k < HISTORY_ROWS; k++) {
        const struct sy_jv *h = sy_jv_at(hist, nh - 1 - k); /* newest first */
        fprintf(w->out, "  seq %-5" PRIu64 " %s uid %-6" PRIu64 " %s\n",
                sy_jv_uint(sy_jv_get(h, "seq"), 0),
                sy_jv_str(sy_jv_get(h, "time")) ? sy_jv_str(sy_jv_get(h, "time")) : "?",
                sy_jv_uint(sy_jv_get(h, "uid"), 0),
                sy_jv_str(sy_jv_get(h, "command")) ? sy_jv_str(sy_jv_get(h, "command")) : "?");
    }
    if (!w->tty)
        fprintf(w->out, "\n");
    fflush(w->out);
}

/* Asks for one status; 0 with the parsed answer, else prints why. */
static int poll_once(struct watch *w, struct sy_jv **out)
{
    struct sy_admin_answer a;
    if (sy_admin_call(w->socket, "json status", NULL, 0, w->timeout_ms, &a) != 0) {
        if (w->tty)
            fputs("\033[H\033[2J", w->out);
        fprintf(w->out, "switchyard %s: unreachable: %s\n", w->socket, a.why);
        fflush(w->out);
        sy_admin_answer_dispose(&a);
        return -1;
    }
    const char *why = NULL;
    int rc = a.ok ? sy_jv_parse(a.text, a.len, out, &why) : -1;
    if (rc != 0)
        fprintf(w->out, "switchyard %s: %s\n", w->socket,
                a.ok ? (why ? why : "bad answer") : a.text);
    fflush(w->out);
    sy_admin_answer_dispose(&a);
    return rc;
}

/* Forgets the polls older than the window, keeping one at or just past its start, and makes
 * room for one more. */
static void forget(struct watch *w, uint64_t at)
{
    while (w->n > 1 && (at - w->v[1].at_ms >= WINDOW_MS || w->n == MAX_SAMPLES)) {
        sy_jv_free(w->v[0].status);
        memmove(&w->v[0], &w->v[1], (w->n - 1) * sizeof(w->v[0]));
        w->n--;
    }
}

int sy_ctl_watch(const char *socket, int timeout_ms, double interval_s, unsigned long count,
                 FILE *out)
{
    struct watch w = {.socket = socket, .timeout_ms = timeout_ms, .out = out};
    w.tty = isatty(fileno(out));
    int rc = 0;
    double pause = interval_s;
    for (unsigned long frame = 0; count == 0 || frame < count; frame++) {
        if (frame > 0) {
            struct timespec ts = {(time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9)};
            while (nanosleep(&ts, &ts) == -1)
                ;
        }
        struct sy_jv *st = NULL;
        uint64_t at = sy_now_ms();
        int polled = poll_once(&w, &st);
        /* A status that takes long (thousands of apps) is asked less often: at most a fifth of
         * the daemon's control thread goes to one watcher. */
        double took = (double)(sy_now_ms() - at) / 1000.0;
        pause = took * 4 > interval_s ? took * 4 : interval_s;
        if (polled != 0) {
            rc = 3;
            continue;
        }
        rc = 0;
        forget(&w, at);
        const struct sample *prev = w.n ? &w.v[w.n - 1] : NULL;
        const struct sample *oldest = w.n ? &w.v[0] : NULL;
        double dt = prev ? (double)(at - prev->at_ms) / 1000.0 : 0;
        double window = oldest ? (double)(at - oldest->at_ms) / 1000.0 : 0;
        draw(&w, st, prev ? prev->status : NULL, dt, oldest ? oldest->status : NULL, window);
        /* The previous poll stays only as a checkpoint, CHECKPOINT_MS after the one before. */
        if (w.n >= 2 && w.v[w.n - 1].at_ms - w.v[w.n - 2].at_ms < CHECKPOINT_MS)
            sy_jv_free(w.v[--w.n].status);
        w.v[w.n++] = (struct sample){at, st};
    }
    for (size_t i = 0; i < w.n; i++)
        sy_jv_free(w.v[i].status);
    return rc;
}
