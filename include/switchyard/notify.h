/* SPDX-License-Identifier: MIT */
/* The systemd notify protocol (sd_notify(3), without libsystemd): READY, RELOADING, STOPPING,
 * WATCHDOG and STATUS datagrams to $NOTIFY_SOCKET. With NOTIFY_SOCKET unset nothing is sent
 * and nothing is armed. */
#ifndef SWITCHYARD_NOTIFY_H
#define SWITCHYARD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <event2/event.h>

#include "switchyard/proxy.h"

/**
 * Turns $NOTIFY_SOCKET's value into a UNIX socket address: an absolute path, or `@name` for
 * an abstract name (the `@` becomes the leading NUL byte). Fills `sa` and `*len` (the length
 * to pass to sendto) and returns 0, or SY_ERR_INVALID (empty, relative, `vsock:`, or longer
 * than sun_path holds), leaving them untouched.
 */
int sy_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len);

/**
 * The watchdog period from $WATCHDOG_USEC and $WATCHDOG_PID (either may be NULL): 0 when
 * there is none for process `self` (no or bad WATCHDOG_USEC, or WATCHDOG_PID naming another
 * process), else the period in microseconds. A ping is due every half of it.
 */
uint64_t sy_notify_watchdog_usec(const char *usec, const char *pid, pid_t self);

/**
 * Formats the reload message, `RELOADING=1\nMONOTONIC_USEC=<usec>\n` (plus `STATUS=<status>`
 * when `status` is not NULL) into buf (NUL-terminated). Returns its length, or a value >=
 * `size` when it did not fit (as snprintf).
 */
int sy_notify_format_reloading(char *buf, size_t size, uint64_t monotonic_usec, const char *status);

/** The notifier of the daemon: one per process, control thread only. */
struct sy_notify;

/**
 * Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and unsets them (so that no child takes
 * them). Returns NULL when NOTIFY_SOCKET is unset; a bad value is logged and gives NULL too.
 * Every function below accepts NULL and then does nothing. `base` is the control loop and
 * `ws` the workers; both must outlive the notifier.
 */
struct sy_notify *sy_notify_new(struct event_base *base, struct sy_workers *ws);

/**
 * Sends `READY=1` with `STATUS=<status>` once every worker answers (sy_workers_ping: each
 * has its first snapshot and its loop turns), and from then on a `WATCHDOG=1` every half of
 * the watchdog period while every worker answers each ping in time. Call once, after
 * sy_workers_start. `status` is copied.
 */
void sy_notify_ready_when_workers(struct sy_notify *n, const char *status);

/** Sends `RELOADING=1` with `MONOTONIC_USEC` (and `STATUS=<status>` if not NULL). */
void sy_notify_reloading(struct sy_notify *n, const char *status);

/** Sends `READY=1` (and `STATUS=<status>` if not NULL): a reload is over. */
void sy_notify_ready(struct sy_notify *n, const char *status);

/** Sends `STATUS=<status>`. */
void sy_notify_status(struct sy_notify *n, const char *status);

/** Sends `STOPPING=1` (and `STATUS=<status>` if not NULL) and stops the watchdog pings. */
void sy_notify_stopping(struct sy_notify *n, const char *status);

/** Sends `text` as one datagram (NUL-free, at most a few KiB). Returns 0 or SY_ERR_SYS. */
int sy_notify_send(struct sy_notify *n, const char *text);

/** Frees the notifier and its sockets, once the workers have ended. NULL is a no-op. */
void sy_notify_free(struct sy_notify *n);

#endif
