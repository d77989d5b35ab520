/* SPDX-License-Identifier: MIT */
/* The access log's transport (`access_log:`): one lock-free single-producer ring of bytes per
 * worker, and one writer thread that drains every ring to the log's file descriptor with
 * blocking writes. A worker never waits: a line that does not fit in its ring is dropped and
 * counted. The lines themselves are made by proxy/access.c. */
#ifndef SWITCHYARD_ACCESS_LOG_H
#define SWITCHYARD_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** One worker's ring: written by that worker only, read by the writer thread only. */
struct sy_access_ring;

/** A ring of `cap` bytes (at least 1). Aborts on OOM. */
struct sy_access_ring *sy_access_ring_new(size_t cap);
/** Frees a ring; NULL is a no-op. */
void sy_access_ring_free(struct sy_access_ring *r);

/**
 * Appends one line (`len` bytes, its newline included) to the ring, whole or not at all.
 * Returns false, and counts the line as dropped, when it does not fit in the free space.
 * Producer thread only; no lock, no allocation, no system call.
 */
bool sy_access_ring_put(struct sy_access_ring *r, const char *line, size_t len);

/**
 * The bytes waiting to be written, as at most two pieces (the ring wraps): `*p1`/`*n1` then
 * `*p2`/`*n2` (n2 may be 0). Returns n1 + n2. Consumer thread only; the pieces stay valid
 * until sy_access_ring_consume.
 */
size_t sy_access_ring_peek(struct sy_access_ring *r, const char **p1, size_t *n1, const char **p2,
                           size_t *n2);
/** Gives `n` bytes (at most what peek returned) back to the producer. Consumer thread only. */
void sy_access_ring_consume(struct sy_access_ring *r, size_t n);

/** Lines dropped by this ring (it was full), and lines it took. Any thread. */
uint64_t sy_access_ring_dropped(const struct sy_access_ring *r);
uint64_t sy_access_ring_lines(const struct sy_access_ring *r);

/**
 * Opens the access log: `path` is "stdout" or a file (opened O_APPEND, created 0644; a FIFO
 * waits for its reader), with one ring of `buffer_bytes` for each of `n_rings` workers, and
 * starts the writer thread. Returns 0, or SY_ERR_SYS (logged) when the file cannot be opened
 * or the thread started. Main thread, once, before the workers start.
 */
int sy_access_log_open(const char *path, size_t buffer_bytes, unsigned n_rings);

/** Whether the access log is open. Any thread. */
bool sy_access_log_is_on(void);

/** Worker `i`'s ring, or NULL when the log is off (or i is out of range). Any thread. */
struct sy_access_ring *sy_access_log_ring(unsigned i);

/**
 * Asks the writer thread to reopen the file by its path (SIGUSR1, after logrotate renamed
 * it). Async-signal-safe (one atomic store); a no-op for stdout or when the log is off.
 */
void sy_access_log_reopen(void);

/**
 * Writes what the rings hold (at most `timeout_ms` of waiting for the file) and stops the
 * writer. A reader that stopped reading leaves the writer blocked: it is abandoned, the process
 * is about to exit. Main thread, after the workers are joined.
 */
void sy_access_log_close(unsigned timeout_ms);

/** Lines dropped by every worker because its ring was full, since start. Any thread. */
uint64_t sy_access_log_dropped(void);

/** Lines taken into the rings, since start. Any thread. */
uint64_t sy_access_log_lines(void);

#endif
