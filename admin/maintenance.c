/* SPDX-License-Identifier: MIT */
/* The `maintenance` admin command: `maintenance APP on [--retry-after S] [--message TEXT]` and
 * `maintenance APP off`. While on, the proxy answers every request for the app itself (503,
 * Retry-After, Cache-Control: no-store, the app's page or one line) and nothing reaches a
 * cluster. The state is durable like an override (journal record type "maintenance", through
 * sy_state_set_maintenance) and independent of the weights: revert, release and weights change
 * where traffic goes once maintenance ends, and never end it. Also the pieces of `status` and
 * `history` that show it. */
#include "switchyard/admin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "switchyard/state.h"

#include "admin_internal.h"

/* The Retry-After of `m` for app `app_index` (its own, or the file's default for the app). */
static unsigned retry_after_of(const struct sy_state *st, const struct sy_maint *m)
{
    if (m->retry_after)
        return m->retry_after;
    const struct sy_config *cfg = sy_route_table_config(sy_state_table(st));
    long ai = sy_config_app_index(cfg, m->app);
    return ai < 0 ? SY_MAINT_RETRY_AFTER_DEFAULT : cfg->apps[ai].maintenance_retry_after;
}

/* "S", "Ss", "Mm" or "Hh": seconds 1..86400. */
static bool parse_seconds(const char *s, unsigned *out)
{
    size_t len = strlen(s);
    unsigned mult = 1;
    if (len > 1 && (s[len - 1] == 's' || s[len - 1] == 'm' || s[len - 1] == 'h')) {
        mult = s[len - 1] == 's' ? 1 : s[len - 1] == 'm' ? 60 : 3600;
        len--;
    }
    unsigned v = 0;
    if (!sy_admin_parse_decimal(s, len, 6, &v))
        return false;
    v *= mult;
    if (v == 0 || v > 86400)
        return false;
    *out = v;
    return true;
}

void sy_admin_maintenance_status(struct sy_reply *r, const struct sy_state *st, const char *app,
                                 bool text, int indent)
{
    const struct sy_maint *m = sy_maints_find(sy_state_maintenance(st), app);
    if (!m) {
        if (!text)
            sy_json_null(r, "in_maintenance");
        return;
    }
    char since[32];
    sy_admin_iso8601(m->since_ms, since);
    unsigned ra = retry_after_of(st, m);
    if (text) {
        sy_reply_printf(r,
                        "%-*s   IN MAINTENANCE since %s (by uid %" PRIu32 " pid %" PRId32
                        ", seq %" PRIu64 "): answered 503, Retry-After %u%s%s%s\n",
                        indent, "", since, m->uid, m->pid, m->seq, ra, m->message ? ", \"" : "",
                        m->message ? m->message : "", m->message ? "\"" : "");
        return;
    }
    sy_json_begin_object(r, "in_maintenance");
    sy_json_str(r, "since", since);
    sy_json_uint(r, "since_ms", m->since_ms);
    char who[64];
    snprintf(who, sizeof(who), "uid %" PRIu32 " pid %" PRId32, m->uid, m->pid);
    sy_json_str(r, "who", who);
    sy_json_str(r, "command", m->command);
    sy_json_uint(r, "uid", m->uid);
    sy_json_int(r, "pid", m->pid);
    sy_json_uint(r, "seq", m->seq);
    sy_json_uint(r, "retry_after", ra);
    sy_json_str(r, "message", m->message);
    sy_json_end_object(r);
}

void sy_admin_maintenance_history(struct sy_reply *r, const struct sy_journal_record *rec)
{
    if (!rec->maintenance)
        return;
    const struct sy_maint *m = &rec->maint;
    char ra[32] = "the app's default";
    if (m->retry_after)
        snprintf(ra, sizeof(ra), "%u s", m->retry_after);
    if (m->on)
        sy_reply_printf(r, "         %s: maintenance on (Retry-After: %s)%s%s%s\n", m->app, ra,
                        m->message ? ": \"" : "", m->message ? m->message : "",
                        m->message ? "\"" : "");
    else
        sy_reply_printf(r, "         %s: maintenance off\n", m->app);
    sy_json_begin_object(r, "maintenance");
    sy_json_str(r, "app", m->app);
    sy_json_bool(r, "on", m->on);
    if (m->retry_after)
        sy_json_uint(r, "retry_after", m->retry_after);
    else
        sy_json_null(r, "retry_after");
    sy_json_str(r, "message", m->message);
    sy_json_end_object(r);
}

void sy_admin_maintenance_explain(struct sy_reply *r, const struct sy_route_table *t,
                                  const struct sy_route_app *app)
{
    const struct sy_route_maint_answer *m = sy_route_app_maintenance(t, app);
    if (!m) {
        sy_json_null(r, "maintenance");
        return;
    }
    sy_reply_printf(r,
                    "maintenance: app %s is in maintenance: the proxy answers 503 (Retry-After "
                    "%u) and no cluster is reached; the cluster above applies once it ends\n",
                    app->name, m->retry_after_s);
    sy_json_begin_object(r, "maintenance");
    sy_json_uint(r, "retry_after", m->retry_after_s);
    sy_json_end_object(r);
}

static int cmd_maintenance(struct sy_admin_req *req)
{
    struct sy_admin_routing *env = req->ctx;
    struct sy_reply *r = req->reply;
    static const char usage[] =
        "usage: maintenance APP on [--retry-after SECONDS] [--message TEXT] | maintenance APP off";
    if (req->argc < 3)
        return sy_reply_error(r, "%s", usage);
    const char *app = req->argv[1], *what = req->argv[2];
    bool on = strcmp(what, "on") == 0;
    if (!on && strcmp(what, "off") != 0)
        return sy_reply_error(r, "expected on or off, got '%.32s' (%s)", what, usage);
    unsigned retry_after = 0;
    const char *message = NULL;
    for (int i = 3; i < req->argc; i++) {
        const char *opt = req->argv[i];
        bool has_value = i + 1 < req->argc;
        if (on && strcmp(opt, "--retry-after") == 0 && has_value) {
            if (!parse_seconds(req->argv[++i], &retry_after))
                return sy_reply_error(r,
                                      "--retry-after must be 1..86400 seconds (120, 90s, 5m, 1h), "
                                      "got '%.32s'",
                                      req->argv[i]);
        } else if (on && strcmp(opt, "--message") == 0 && has_value) {
            message = req->argv[++i];
        } else {
            return sy_reply_error(r, "unexpected '%.32s' (%s)", opt, usage);
        }
    }
    struct sy_actor who = {req->now_ms, req->peer.uid, req->peer.pid, req->command};
    char err[512];
    bool changed = false;
    int rc = sy_state_set_maintenance(env->state, app, on, retry_after, message, &who, &changed,
                                      err, sizeof(err));
    if (rc)
        return sy_reply_error(r, "%s", err);
    sy_json_str(r, "app", app);
    sy_json_bool(r, "in_maintenance", on);
    sy_json_bool(r, "changed", changed);
    const struct sy_maint *m = sy_maints_find(sy_state_maintenance(env->state), app);
    if (m) {
        unsigned ra = retry_after_of(env->state, m);
        sy_json_uint(r, "retry_after", ra);
        sy_reply_printf(r, "%s: in maintenance: every request is answered 503 (Retry-After %u)\n",
                        app, ra);
    } else {
        sy_reply_printf(r, "%s: %s\n", app,
                        changed ? "out of maintenance: requests go to its clusters again"
                                : "was not in maintenance: nothing to do");
    }
    sy_reply_printf(r, "generation %" PRIu64 ", journal seq %" PRIu64 "\n",
                    sy_state_generation(env->state), sy_state_journal_seq(env->state));
    if (changed)
        req->published = sy_state_generation(env->state);
    return 0;
}

static const struct sy_admin_cmd maintenance_cmds[] = {
    {"maintenance",
     "maintenance APP on [--retry-after S] [--message TEXT] | maintenance APP off : the proxy "
     "answers 503 for the app (durable)",
     cmd_maintenance, NULL},
    {NULL, NULL, NULL, NULL},
};

void sy_admin_maintenance_init(struct sy_admin *a, struct sy_admin_routing *env)
{
    sy_admin_register(a, maintenance_cmds, env);
}
