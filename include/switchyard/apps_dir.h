/* SPDX-License-Identifier: MIT */
/* apps_dir: one routing file per tenant. Which files of the directory count, in which order,
 * and the watch that turns a change among them into a reload. The files are parsed by
 * routing/config.c, as `apps:` entries. */
#ifndef SWITCHYARD_APPS_DIR_H
#define SWITCHYARD_APPS_DIR_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Whether a directory entry named `name` is an apps file: it ends in ".yaml" and does not
 * begin with '.'. So hidden files, editors' swap, backup and lock files (`.a.yaml.swp`,
 * `a.yaml~`, `#a.yaml#`, `.#a.yaml`, `a.yaml.tmp`) and Kubernetes' `..data` and `..2024_...`
 * entries are ignored.
 */
bool sy_apps_dir_is_file(const char *name);

/** The apps files of a directory, in name order (bytewise). */
struct sy_apps_dir_list {
    char *block;        /* every path ("DIR/NAME"), NUL-separated, in order */
    const char **paths; /* n pointers into block */
    size_t n;
};

/**
 * Lists the apps files of `dir` (sy_apps_dir_is_file), sorted by name, leaving out the file
 * `self` (the routing file, when it is in that directory: `apps_dir: .`; may be NULL).
 * Returns 0 and fills `out` (the caller frees out->block and out->paths), SY_ERR_SYS with
 * errno in `*err` when the directory cannot be read, or SY_ERR_LIMIT when it holds more than
 * `max` of them. Blocking.
 */
int sy_apps_dir_list(const char *dir, const char *self, size_t max, struct sy_apps_dir_list *out,
                     int *err);

struct sy_apps_watch;

/**
 * A watcher of one apps_dir (inotify, its own descriptor): files added, written, removed or
 * renamed there, a Kubernetes ConfigMap's `..data` swap, and the directory itself replaced or
 * removed (its parent is watched for its name). Returns 0 and the watcher, watching nothing
 * yet, or SY_ERR_SYS after logging why. Control thread only.
 */
int sy_apps_watch_new(struct sy_apps_watch **out);

/**
 * Watches `dir` (NULL: nothing), replacing what was watched. Called again with the same
 * directory, it follows a directory that was replaced. A directory that cannot be watched is
 * logged once and skipped (a change there then needs SIGHUP).
 */
void sy_apps_watch_set(struct sy_apps_watch *w, const char *dir);

/** The descriptor to poll for reading (non-blocking). */
int sy_apps_watch_fd(const struct sy_apps_watch *w);

/**
 * Reads the pending events. True when the directory's apps files may have changed (the
 * caller debounces, then reloads; unchanged bytes are recognised by the config's hash).
 */
bool sy_apps_watch_read(struct sy_apps_watch *w);

void sy_apps_watch_free(struct sy_apps_watch *w);

#endif
