/* SPDX-License-Identifier: MIT */
/* The admin module's shared layout: the command set (dispatch.c) that the socket server
 * (server.c) runs, and the helpers the unit tests reach. */
#ifndef SWITCHYARD_ADMIN_INTERNAL_H
#define SWITCHYARD_ADMIN_INTERNAL_H

#include <sys/types.h>

#include <event2/event.h>

#include "switchyard/admin.h"

struct table;
struct client;

struct sy_admin {
    struct sy_state *state;
    struct table *tables;
    size_t n_tables, cap_tables;
    sy_admin_applied_cb applied;
    void *applied_arg;
    /* The socket (server.c); unused without sy_admin_listen. */
    struct event_base *base;
    char *path;
    int fd;
    ino_t inode; /* the socket file we made: removed at exit only if it is still ours */
    dev_t dev;
    struct event *accept_ev;
    struct client *clients;
    size_t n_clients; /* connections served (refused ones are not counted) */
    size_t n_refused; /* refused peers being told so */
    /* Out of descriptors: accepting pauses (pause_ev brings it back); logged once a pause. */
    struct event *pause_ev;
    unsigned accept_pauses;
    /* Refusals logged at most once a second: when the last line was, and how many since. */
    uint64_t refusal_log_ms;
    unsigned refusals_unlogged;
};

/* `ms` since the epoch as "2024-11-26T20:00:00.123Z" (UTC, milliseconds), the time every
 * answer shows (dispatch.c). */
void sy_admin_iso8601(uint64_t ms, char buf[32]);
/* The first `len` bytes of `s` as a plain decimal of 1 to `max_digits` (at most 9) digits,
 * nothing else (dispatch.c). */
bool sy_admin_parse_decimal(const char *s, size_t len, size_t max_digits, unsigned *out);

/* admin/maintenance.c: what `status` shows of an app in maintenance (with `text`, a line
 * indented by `indent` for people; without, the `in_maintenance` member, null when it is not
 * in maintenance), and what `history`
 * shows of a maintenance record (nothing for another record). */
struct sy_state;
struct sy_journal_record;
void sy_admin_maintenance_status(struct sy_reply *r, const struct sy_state *st, const char *app,
                                 bool text, int indent);
void sy_admin_maintenance_history(struct sy_reply *r, const struct sy_journal_record *rec);
/* What `explain` adds for the app it found: the `maintenance` member (null, or the answer's
 * retry_after) and, when the app is in maintenance, a line saying no cluster is reached. */
struct sy_route_table;
struct sy_route_app;
void sy_admin_maintenance_explain(struct sy_reply *r, const struct sy_route_table *t,
                                  const struct sy_route_app *app);

#endif
