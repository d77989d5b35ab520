/* SPDX-License-Identifier: MIT */
/* inotify on the routing file's directory. Watching the directory rather than the file is
 * what lets every kind of update be seen: editors that write in place, tools that write a
 * temporary file and rename it over, and Kubernetes, which swaps a `..data` symlink inside
 * a ConfigMap volume while the file's own path stays a symlink through it. Any event that
 * names the file, or a name starting with "..", counts; the caller debounces bursts. */
#include "switchyard/watch.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "switchyard/base.h"

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |           \
     IN_MOVE_SELF)

/* One more watched file: its directory's watch and its name there. */
struct watched_file {
    int wd;
    char *base;
};

struct sy_watch {
    int fd;
    int wd;
    char *base; /* the file's name within the directory */
    struct watched_file *files;
    size_t n_files;
};

/* The directory of `path` (".", or "/" for a file at the root). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? sy_xstrndup(path, (size_t)(slash - path) + (slash == path)) : sy_xstrdup(".");
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Whether an event naming `name` may concern file `base` in that directory. */
static bool names(const char *name, const char *base)
{
    return strcmp(name, base) == 0 || strncmp(name, "..", 2) == 0;
}

int sy_watch_new(const char *path, struct sy_watch **out)
{
    char *dir = dir_of(path);
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd == -1) {
        sy_log_errno(SY_LOG_ERROR, "watch", "inotify_init1");
        free(dir);
        return SY_ERR_SYS;
    }
    int wd = inotify_add_watch(fd, dir, WATCH_MASK);
    if (wd == -1) {
        sy_log_errno(SY_LOG_ERROR, "watch", "cannot watch %s", dir);
        close(fd);
        free(dir);
        return SY_ERR_SYS;
    }
    free(dir);
    struct sy_watch *w = sy_xcalloc(1, sizeof(*w));
    w->fd = fd;
    w->wd = wd;
    w->base = sy_xstrdup(base_of(path));
    *out = w;
    return 0;
}

static void drop_files(struct sy_watch *w)
{
    for (size_t i = 0; i < w->n_files; i++) {
        /* The routing file's directory keeps its watch; a directory listed twice is removed
         * once (the second removal fails harmlessly). */
        if (w->files[i].wd != w->wd)
            inotify_rm_watch(w->fd, w->files[i].wd);
        free(w->files[i].base);
    }
    free(w->files);
    w->files = NULL;
    w->n_files = 0;
}

void sy_watch_set_files(struct sy_watch *w, const char *const *paths, size_t n)
{
    drop_files(w);
    if (n == 0)
        return;
    w->files = sy_xcalloc(n, sizeof(*w->files));
    for (size_t i = 0; i < n; i++) {
        char *dir = dir_of(paths[i]);
        /* The same mask as the routing file's: adding a directory already watched returns its
         * watch unchanged. */
        int wd = inotify_add_watch(w->fd, dir, WATCH_MASK);
        if (wd == -1) {
            sy_log_errno(SY_LOG_WARN, "watch", "cannot watch %s (a renewed %s needs SIGHUP)", dir,
                         paths[i]);
        } else {
            w->files[w->n_files].wd = wd;
            w->files[w->n_files].base = sy_xstrdup(base_of(paths[i]));
            w->n_files++;
        }
        free(dir);
    }
}

int sy_watch_fd(const struct sy_watch *w)
{
    return w->fd;
}

void sy_inotify_each(int fd, const char *who, void (*fn)(const struct inotify_event *ev, void *arg),
                     void *arg)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == -1) {
            if (errno != EAGAIN && errno != EINTR)
                sy_log_errno(SY_LOG_WARN, who, "reading inotify events");
            return;
        }
        if (n == 0)
            return;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            fn(ev, arg);
        }
    }
}

struct seen {
    struct sy_watch *w;
    unsigned bits;
};

static void file_event(const struct inotify_event *ev, void *arg)
{
    struct seen *s = arg;
    const struct sy_watch *w = s->w;
    if (ev->mask & IN_Q_OVERFLOW) {
        s->bits |= SY_WATCH_CONFIG | SY_WATCH_FILES;
        return;
    }
    bool self = (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) != 0;
    if (ev->wd == w->wd && (self || (ev->len && names(ev->name, w->base))))
        s->bits |= SY_WATCH_CONFIG;
    for (size_t i = 0; i < w->n_files; i++)
        if (ev->wd == w->files[i].wd && (self || (ev->len && names(ev->name, w->files[i].base))))
            s->bits |= SY_WATCH_FILES;
}

unsigned sy_watch_read(struct sy_watch *w)
{
    struct seen s = {.w = w};
    sy_inotify_each(w->fd, "watch", file_event, &s);
    return s.bits;
}

void sy_watch_free(struct sy_watch *w)
{
    if (!w)
        return;
    drop_files(w);
    close(w->fd);
    free(w->base);
    free(w);
}
