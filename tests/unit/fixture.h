/* SPDX-License-Identifier: MIT */
/* The temporary directory the unit tests that need files work in: a fresh directory under /tmp
 * with the path of one file in it (a config or a journal), removed whole at the end. */
#ifndef SY_TESTS_FIXTURE_H
#define SY_TESTS_FIXTURE_H

struct sy_fixture_dir {
    char dir[64];   /* /tmp/sy-test-TAG-XXXXXX */
    char path[128]; /* dir/FILE */
};

/**
 * Makes a new directory /tmp/sy-test-`tag`-XXXXXX and sets `t->path` to `file` inside it (the
 * file is not created). Returns 0, or -1 when the directory could not be made or the names do
 * not fit.
 */
int sy_fixture_dir_make(struct sy_fixture_dir *t, const char *tag, const char *file);

/** Removes the files in `t->dir` (not subdirectories), then the directory itself. */
void sy_fixture_dir_remove(struct sy_fixture_dir *t);

/**
 * Writes the concatenation of the NULL-terminated list of texts to `path`, through `path`.tmp
 * and a rename, so that a reader never sees half a file. Returns 0, or -1 on any failure.
 */
int sy_fixture_write(const char *path, const char *text, ...);

#endif
