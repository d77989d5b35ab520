/* SPDX-License-Identifier: MIT */
/* The unit tests' temporary directory (fixture.h): made with mkdtemp, files written through a
 * temporary name and a rename, and everything in it removed at the end. Plain libc, so that it
 * links into every unit test whatever module it tests. */
#include "fixture.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sy_fixture_dir_make(struct sy_fixture_dir *t, const char *tag, const char *file)
{
    int n = snprintf(t->dir, sizeof(t->dir), "/tmp/sy-test-%s-XXXXXX", tag);
    if (n < 0 || (size_t)n >= sizeof(t->dir) || !mkdtemp(t->dir))
        return -1;
    n = snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, file);
    if (n < 0 || (size_t)n >= sizeof(t->path)) {
        rmdir(t->dir);
        return -1;
    }
    return 0;
}

void sy_fixture_dir_remove(struct sy_fixture_dir *t)
{
    DIR *d = opendir(t->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || e->d_name[1] == '.'))
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", t->dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(t->dir);
}

int sy_fixture_write(const char *path, const char *text, ...)
{
    char tmp[512];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    FILE *fp = fopen(tmp, "w");
    if (!fp)
        return -1;
    va_list ap;
    va_start(ap, text);
    bool ok = true;
    for (const char *s = text; s; s = va_arg(ap, const char *))
        ok = fputs(s, fp) >= 0 && ok;
    va_end(ap);
    if (fclose(fp) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}
