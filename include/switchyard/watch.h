/* SPDX-License-Identifier: MIT */
/* Watching the routing file for changes (inotify on its directory). The watcher owns a file
 * descriptor the caller polls in its own event loop; routing/ stays free of any loop. */
#ifndef SWITCHYARD_WATCH_H
#define SWITCHYARD_WATCH_H

#include <stdbool.h>
#include <stddef.h>

struct sy_watch;

/**
 * Watches the directory that holds `path`, so that every way a file is replaced is seen: an
 * in-place write (IN_CLOSE_WRITE), a rename over it (IN_MOVED_TO), a new symlink, and a
 * Kubernetes ConfigMap update (the `..data` symlink renamed over). Returns 0 and the watcher,
 * or SY_ERR_SYS after logging why. Control thread only.
 */
int sy_watch_new(const char *path, struct sy_watch **out);

/** The descriptor to poll for reading (non-blocking). */
int sy_watch_fd(const struct sy_watch *w);

/** What sy_watch_read saw change (bits). */
#define SY_WATCH_CONFIG 1u /* the routing file */
#define SY_WATCH_FILES  2u /* one of the files given to sy_watch_set_files */

/**
 * Also watches `paths` (the TLS certificates, keys and CA bundles the routing file names), in
 * the same way as the routing file (their directories; a Kubernetes Secret's `..data` swap
 * counts), replacing the set given before. A directory that cannot be watched is logged and
 * skipped. Control thread only.
 */
void sy_watch_set_files(struct sy_watch *w, const char *const *paths, size_t n);

/**
 * Reads the pending events. Returns the SY_WATCH_* bits of what may have changed, 0 for
 * nothing (the caller debounces and then reloads; an unchanged routing file is recognised by
 * its content, so a change of the other files must force the reload).
 */
unsigned sy_watch_read(struct sy_watch *w);

struct inotify_event;
/** Reads every event queued on inotify descriptor `fd` (non-blocking) and hands each to `fn`;
 * a read error other than EAGAIN is logged under `who`. Both watches use it. */
void sy_inotify_each(int fd, const char *who, void (*fn)(const struct inotify_event *ev, void *arg),
                     void *arg);

void sy_watch_free(struct sy_watch *w);

#endif
