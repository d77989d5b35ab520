/* SPDX-License-Identifier: MIT */
/* The client side of the admin socket (admin/client.c), for switchyardctl and `switchyard -t`:
 * send one command line, read the answer. What a client needs and nothing of the server's:
 * switchyardctl compiles against this header, the JSON module's and base's only. */
#ifndef SWITCHYARD_ADMIN_CLIENT_H
#define SWITCHYARD_ADMIN_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

/** Longest command line, newline excluded. A longer one is refused and the connection closed. */
#define SY_ADMIN_LINE_MAX 4096

/** The socket switchyardctl uses when neither -s nor $SWITCHYARD_SOCKET says. */
#define SY_ADMIN_DEFAULT_SOCKET "/run/switchyard/admin.sock"

/** One instance's answer. */
struct sy_admin_answer {
    char *text; /* everything received, NUL-terminated (the last line included) */
    size_t len;
    bool ok;       /* the last line is `ok` (or a JSON object with "ok":true) */
    char why[256]; /* when the instance could not be asked: why (connect, timeout, ...) */
    bool reached;
};

/**
 * Sends `line` (a newline is added) and `payload` (may be NULL) to the admin socket at `path`
 * and reads the answer, within `timeout_ms`. Returns 0 when an answer arrived (ok or not), or
 * a negative sy_err with answer->why set. Free with sy_admin_answer_dispose(). Blocking.
 */
int sy_admin_call(const char *path, const char *line, const char *payload, size_t payload_len,
                  int timeout_ms, struct sy_admin_answer *answer);

void sy_admin_answer_dispose(struct sy_admin_answer *answer);

/**
 * Joins words into one command line for sy_admin_split(): a word that is empty or holds a
 * space, a tab, a quote or a backslash is written in double quotes. Returns the length, or -1
 * when it does not fit in `size` (NUL included).
 */
int sy_admin_join(int argc, char *const *argv, char *buf, size_t size);

#endif
