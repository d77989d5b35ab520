/* SPDX-License-Identifier: MIT */
/* The fleet's admin side: the `fleet` command (the members, what each has applied, and how
 * this replica reaches etcd) and the fleet lines of `status`. */
#include "switchyard/fleet.h"

#include <inttypes.h>
#include <stdio.h>

#include "switchyard/admin.h"

#include "admin_internal.h"

/* One line and one JSON object for this replica's link to etcd. */
static void link_lines(struct sy_reply *r, const struct sy_fleet_view *v)
{
    char since[32];
    sy_admin_iso8601(v->since_ms, since);
    if (v->connected)
        sy_reply_printf(r,
                        "fleet: instance %s, prefix %s, etcd connected (%s) since %s, revision "
                        "%" PRIu64 " applied\n",
                        v->instance, v->prefix, v->endpoint ? v->endpoint : "?", since, v->rev);
    else
        sy_reply_printf(r,
                        "fleet: instance %s, prefix %s, etcd UNREACHABLE since %s (%s): serving "
                        "revision %" PRIu64 ", changes refused except --local%s\n",
                        v->instance, v->prefix, since, v->last_error ? v->last_error : "?", v->rev,
                        v->ready ? "" : "; NOT READY (no fleet state read yet)");
    sy_json_begin_object(r, "fleet");
    sy_json_str(r, "instance", v->instance);
    sy_json_str(r, "prefix", v->prefix);
    sy_json_bool(r, "connected", v->connected);
    sy_json_bool(r, "ready", v->ready);
    sy_json_str(r, "endpoint", v->endpoint);
    sy_json_str(r, "since", since);
    sy_json_str(r, "last_error", v->last_error);
    sy_json_uint(r, "revision", v->rev);
    sy_json_str(r, "ramp_leader", v->leader);
    sy_json_uint(r, "changes", v->changes);
    sy_json_uint(r, "refused", v->refused);
    sy_json_uint(r, "syncs", v->resyncs);
}

void sy_fleet_status_head(struct sy_fleet *f, struct sy_reply *r)
{
    if (!f)
        return;
    struct sy_fleet_view v;
    sy_fleet_view(f, &v);
    link_lines(r, &v);
    sy_json_uint(r, "members", v.n_members);
    sy_json_end_object(r);
}

static int cmd_fleet(struct sy_admin_req *req)
{
    struct sy_fleet *f = req->ctx;
    struct sy_reply *r = req->reply;
    if (req->argc != 1)
        return sy_reply_error(r, "usage: fleet");
    if (!f)
        return sy_reply_error(r, "no fleet: the file has no `fleet:` section");
    struct sy_fleet_view v;
    sy_fleet_view(f, &v);
    link_lines(r, &v);
    sy_reply_printf(r, "%-24s %-10s %10s %10s %8s  %s\n", "MEMBER", "VERSION", "REVISION",
                    "GENERATION", "SEEN", "STATE");
    sy_json_begin_array(r, "members");
    size_t behind = 0;
    for (size_t i = 0; i < v.n_members; i++) {
        const struct sy_fleet_member *m = &v.members[i];
        uint64_t age = sy_now_ms() - m->seen_ms;
        behind += !m->applied;
        sy_reply_printf(r, "%-24s %-10s %10" PRIu64 " %10" PRIu64 " %6" PRIu64 "s  %s\n",
                        m->instance, m->version, m->rev, m->generation, age / 1000,
                        m->applied ? "up to date" : "BEHIND");
        sy_json_begin_object(r, NULL);
        sy_json_str(r, "instance", m->instance);
        sy_json_str(r, "version", m->version);
        sy_json_uint(r, "revision", m->rev);
        sy_json_uint(r, "generation", m->generation);
        sy_json_uint(r, "seen_ms_ago", age);
        sy_json_bool(r, "up_to_date", m->applied);
        sy_json_end_object(r);
    }
    sy_json_end_array(r);
    sy_json_end_object(r);
    sy_reply_printf(r, "%zu member%s, %zu behind; ramps advanced by %s\n", v.n_members,
                    v.n_members == 1 ? "" : "s", behind, v.leader ? v.leader : "nobody yet");
    return 0;
}

static const struct sy_admin_cmd fleet_cmds[] = {
    {"fleet", "fleet  : the fleet's members (etcd), what each has applied", cmd_fleet, NULL},
    {NULL, NULL, NULL, NULL},
};

void sy_fleet_admin_init(struct sy_admin *a, struct sy_fleet *f)
{
    sy_admin_register(a, fleet_cmds, f);
}
