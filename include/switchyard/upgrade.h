/* SPDX-License-Identifier: MIT */
/* Zero-downtime upgrade: a new switchyard process takes the running one's listening sockets
 * (SCM_RIGHTS over a UNIX SOCK_SEQPACKET socket), its overrides journal and its admin socket,
 * and only once the new one routes on every worker does the old one stop accepting and drain.
 *
 * The exchange, new -> old and old -> new, one message each:
 *   hello PID          old: every socket, one per message: "L" (a listener of a worker),
 *                      "A" (admin socket), "H" (admin.http), "U" (this upgrade socket);
 *                      then "end N PID" (N listeners; PID its own)
 *   journal            old: closes its journal (the lock goes), pauses its admin socket;
 *                      "released"
 *   ready              old: MAINPID=new to systemd, stops accepting, "bye", drains
 *   fail WHY (or EOF)  old: takes its journal back and its admin socket, serves on */
#ifndef SWITCHYARD_UPGRADE_H
#define SWITCHYARD_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>

#include "switchyard/config.h"

/** What the old process's control thread does at each step (hooks of main.c). */
struct sy_upgrade_hooks {
    size_t (*listen_fds)(void *arg, int *out, size_t max); /* borrowed fds */
    int (*admin_fd)(void *arg);                            /* -1: none */
    int (*http_fd)(void *arg);                             /* -1: none */
    void (*release)(void *arg);                 /* stop writing the journal and release it */
    void (*failed)(void *arg, const char *why); /* take it back and serve on */
    void (*done)(void *arg, pid_t pid);         /* `pid` serves: hand over and drain */
    void *arg;
};

struct sy_upgrade;

/**
 * The upgrade socket of a config: `admin.socket` + ".upgrade", or without an admin socket
 * the journal's path + ".upgrade" (sy_state_journal_path). Returns 0 or SY_ERR_LIMIT (too
 * long for a UNIX socket).
 */
int sy_upgrade_socket_path(const struct sy_config *cfg, const char *config_path, char *buf,
                           size_t size);

/**
 * Old process: serves upgrades at `path` on `base`: binds it (mode 0600, a stale file
 * replaced) when `fd` is -1, else serves `fd` (taken over from the process this one
 * replaced; taken). Only peers of our own uid (or root) are served, one at a time. Returns 0
 * or a negative sy_err after logging why. Control thread.
 */
int sy_upgrade_serve(struct event_base *base, const char *path, int fd,
                     const struct sy_upgrade_hooks *hooks, struct sy_upgrade **out);

/** Closes the socket; removes its file unless a new process took it over. NULL: no-op. */
void sy_upgrade_free(struct sy_upgrade *u);

/** What the new process took from the old one (sy_upgrade_connect). */
struct sy_upgrade_taken {
    int conn;      /* the connection to the old process */
    pid_t old_pid; /* the peer's, from SO_PEERCRED */
    int *listen;   /* listening sockets of the old workers (owned until given away) */
    size_t n_listen;
    int admin_fd, http_fd, upgrade_fd; /* -1: not sent */
};

/**
 * New process: connects to `path`, says hello and receives every socket. Returns 0, or a
 * negative sy_err with `why` for a person (no process listens there, timeout...). Blocking,
 * at start-up.
 */
int sy_upgrade_connect(const char *path, struct sy_upgrade_taken *t, char *why, size_t n);

/** Asks the old process to release its journal and waits until it has. 0 or sy_err + why. */
int sy_upgrade_take_journal(struct sy_upgrade_taken *t, char *why, size_t n);

/**
 * Tells the old process that this one serves (every worker routes with its snapshot) and waits
 * for its goodbye (it has told systemd our pid and stopped accepting). 0 or sy_err + why.
 */
int sy_upgrade_ready(struct sy_upgrade_taken *t, char *why, size_t n);

/** Tells the old process that this one gives up (`why`), then closes the connection. */
void sy_upgrade_fail(struct sy_upgrade_taken *t, const char *why);

/** Closes whatever of `t` was not given away. */
void sy_upgrade_taken_dispose(struct sy_upgrade_taken *t);

/**
 * SIGUSR2: starts `exe -c config --upgrade [-l level]` (double fork: the new process is no
 * child of ours to reap; its stdout and stderr are ours). Returns the intermediate child's
 * status: 0 once the new process was forked, else a negative sy_err (logged).
 */
int sy_upgrade_spawn(const char *exe, const char *config, const char *level);

#endif
