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
    size_t n_clients;
};

/** Appends `s` as a JSON string (quoted, escaped) to the reply's bytes, whatever its mode. */
void sy_admin_json_escape(struct sy_reply *r, const char *s);

#endif
