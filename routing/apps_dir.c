/* SPDX-License-Identifier: MIT */
/* apps_dir: listing a tenant directory and watching it. The listing keeps the names that
 * end in ".yaml" and do not begin with '.', sorts them bytewise (so that the order, and the
 * first of two claims, never depend on the locale or on readdir), and stops reading past the
 * limit, so that a directory of a million entries costs no more than the limit. The watch has
 * an inotify descriptor of its own, apart from the routing file's (routing/watch.c): it
 * watches the directory for its apps files and `..` entries (a ConfigMap's `..data` swap),
 * and the directory's parent for the directory's own name and `..` entries (the directory
 * being a ConfigMap's subdirectory, reached through `..data`), re-adding the watch when the
 * directory was replaced. */
#include "switchyard/apps_dir.h"
#include "switchyard/watch.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "switchyard/base.h"

#define SUFFIX     ".yaml"
#define SUFFIX_LEN (sizeof(SUFFIX) - 1)

bool sy_apps_dir_is_file(const char *name)
{
    size_t len = strlen(name);
    return name[0] != '.' && len > SUFFIX_LEN && strcmp(name + len - SUFFIX_LEN, SUFFIX) == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The sorted names into one block of "dir/name" paths. */
static void fill_list(const char *dir, char **names, size_t n, struct sy_apps_dir_list *out)
{
    size_t dlen = strlen(dir), total = 0;
    bool slash = dlen > 0 && dir[dlen - 1] == '/';
    for (size_t i = 0; i < n; i++)
        total += dlen + !slash + strlen(names[i]) + 1;
    out->block = sy_xmalloc(total ? total : 1);
    out->paths = sy_xcalloc(n ? n : 1, sizeof(*out->paths));
    out->n = n;
    char *p = out->block;
    for (size_t i = 0; i < n; i++) {
        out->paths[i] = p;
        memcpy(p, dir, dlen);
        p += dlen;
        if (!slash)
            *p++ = '/';
        size_t len = strlen(names[i]) + 1;
        memcpy(p, names[i], len);
        p += len;
    }
}

/* The name of `self` in `dir` when `self` is in that directory (the same inode), or NULL. */
static const char *self_name(DIR *d, const char *self)
{
    if (!self)
        return NULL;
    const char *slash = strrchr(self, '/');
    char *up =
        slash ? sy_xstrndup(self, (size_t)(slash - self) + (slash == self)) : sy_xstrdup(".");
    struct stat a, b;
    bool same = fstat(dirfd(d), &a) == 0 && stat(up, &b) == 0 && a.st_dev == b.st_dev &&
                a.st_ino == b.st_ino;
    free(up);
    return same ? (slash ? slash + 1 : self) : NULL;
}

int sy_apps_dir_list(const char *dir, const char *self, size_t max, struct sy_apps_dir_list *out,
                     int *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        *err = errno;
        return SY_ERR_SYS;
    }
    const char *skip = self_name(d, self);
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) {
                *err = errno;
                rc = SY_ERR_SYS;
            }
            break;
        }
        if (!sy_apps_dir_is_file(e->d_name) || (skip && strcmp(e->d_name, skip) == 0))
            continue;
        if (n == max) {
            rc = SY_ERR_LIMIT;
            break;
        }
        sy_xgrow((void **)&names, &cap, n + 1, sizeof(*names));
        names[n++] = sy_xstrdup(e->d_name);
    }
    closedir(d);
    if (rc == 0) {
        if (n > 1)
            qsort(names, n, sizeof(*names), cmp_names);
        fill_list(dir, names, n, out);
    }
    free_names(names, n);
    return rc;
}

/* -- the watch ------------------------------------------------------------------------------ */

#define DIR_MASK                                                                                   \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF)
#define PARENT_MASK (IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB)

struct sy_apps_watch {
    int fd;
    char *dir;   /* NULL: nothing watched */
    char *base;  /* the directory's name in its parent */
    int wd;      /* the directory's watch, or -1 */
    int wd_up;   /* its parent's, or -1 */
    bool warned; /* the directory could not be watched, and the log said so */
};

int sy_apps_watch_new(struct sy_apps_watch **out)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd == -1) {
        sy_log_errno(SY_LOG_ERROR, "apps_dir", "inotify_init1");
        return SY_ERR_SYS;
    }
    struct sy_apps_watch *w = sy_xcalloc(1, sizeof(*w));
    w->fd = fd;
    w->wd = w->wd_up = -1;
    *out = w;
    return 0;
}

static void unwatch(struct sy_apps_watch *w)
{
    /* A watch whose directory is gone was removed by the kernel: this fails harmlessly. */
    if (w->wd != -1)
        inotify_rm_watch(w->fd, w->wd);
    if (w->wd_up != -1 && w->wd_up != w->wd)
        inotify_rm_watch(w->fd, w->wd_up);
    w->wd = w->wd_up = -1;
}

/* (Re)adds the watches of w->dir: the same inode keeps its watch, a new one gets another. */
static void rewatch(struct sy_apps_watch *w)
{
    int wd = inotify_add_watch(w->fd, w->dir, DIR_MASK);
    if (wd != w->wd && w->wd != -1 && w->wd != w->wd_up)
        inotify_rm_watch(w->fd, w->wd);
    w->wd = wd;
    if (wd == -1 && !w->warned)
        sy_log_errno(SY_LOG_WARN, "apps_dir", "cannot watch %s (a change there needs SIGHUP)",
                     w->dir);
    w->warned = wd == -1;
    if (w->wd_up == -1) {
        const char *slash = strrchr(w->dir, '/');
        char *up = slash ? sy_xstrndup(w->dir, (size_t)(slash - w->dir) + (slash == w->dir))
                         : sy_xstrdup(".");
        w->wd_up = inotify_add_watch(w->fd, up, PARENT_MASK);
        free(up);
    }
}

void sy_apps_watch_set(struct sy_apps_watch *w, const char *dir)
{
    if (dir && w->dir && strcmp(dir, w->dir) == 0) {
        rewatch(w);
        return;
    }
    unwatch(w);
    free(w->dir);
    free(w->base);
    w->dir = w->base = NULL;
    w->warned = false;
    if (!dir)
        return;
    w->dir = sy_xstrdup(dir);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--; /* "apps.d/" is named "apps.d" in its parent */
    const char *end = dir + len, *b = end;
    while (b > dir && b[-1] != '/')
        b--;
    w->base = sy_xstrndup(b, (size_t)(end - b));
    rewatch(w);
}

int sy_apps_watch_fd(const struct sy_apps_watch *w)
{
    return w->fd;
}

/* Whether one event may change what the directory's apps files say. */
static bool matters(const struct sy_apps_watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return true;
    if (ev->wd == w->wd) {
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
            return true;
        return ev->len && (sy_apps_dir_is_file(ev->name) || strncmp(ev->name, "..", 2) == 0);
    }
    /* In the parent: the directory's own name, or a `..data` swap when the directory is a
     * ConfigMap's subdirectory (`apps.d -> ..data/apps.d`). */
    return ev->wd == w->wd_up && ev->len && w->base &&
           (strcmp(ev->name, w->base) == 0 || strncmp(ev->name, "..", 2) == 0);
}

struct apps_seen {
    const struct sy_apps_watch *w;
    bool seen;
};

static void apps_event(const struct inotify_event *ev, void *arg)
{
    struct apps_seen *s = arg;
    s->seen |= s->w->dir && matters(s->w, ev);
}

bool sy_apps_watch_read(struct sy_apps_watch *w)
{
    struct apps_seen s = {.w = w};
    sy_inotify_each(w->fd, "apps_dir", apps_event, &s);
    bool seen = s.seen;
    /* The directory may have been replaced (renamed over, or removed and made again). */
    if (seen && w->dir)
        rewatch(w);
    return seen;
}

void sy_apps_watch_free(struct sy_apps_watch *w)
{
    if (!w)
        return;
    close(w->fd);
    free(w->dir);
    free(w->base);
    free(w);
}
