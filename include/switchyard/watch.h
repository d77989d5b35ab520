/* SPDX-License-Identifier: MIT */
/* Watching the routing file for changes (inotify on its directory). The watcher owns a file
 * descriptor the caller polls in its own event loop; routing/ stays free of any loop. */
#ifndef SWITCHYARD_WATCH_H
#define SWITCHYARD_WATCH_H

#include <stdbool.h>

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

/**
 * Reads the pending events. Returns true when one of them may have changed the file (the
 * caller debounces and then reloads; an unchanged file is recognised by its content).
 */
bool sy_watch_read(struct sy_watch *w);

void sy_watch_free(struct sy_watch *w);

#endif
