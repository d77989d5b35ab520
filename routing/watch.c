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

struct sy_watch {
    int fd;
    int wd;
    char *base; /* the file's name within the directory */
};

int sy_watch_new(const char *path, struct sy_watch **out)
{
    const char *slash = strrchr(path, '/');
    char *dir =
        slash ? sy_xstrndup(path, (size_t)(slash - path) + (slash == path)) : sy_xstrdup(".");
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd == -1) {
        sy_log_errno(SY_LOG_ERROR, "watch", "inotify_init1");
        free(dir);
        return SY_ERR_SYS;
    }
    int wd = inotify_add_watch(fd, dir,
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB |
                                   IN_DELETE_SELF | IN_MOVE_SELF);
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
    w->base = sy_xstrdup(slash ? slash + 1 : path);
    *out = w;
    return 0;
}

int sy_watch_fd(const struct sy_watch *w)
{
    return w->fd;
}

bool sy_watch_read(struct sy_watch *w)
{
    bool relevant = false;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        if (n == -1) {
            if (errno != EAGAIN && errno != EINTR)
                sy_log_errno(SY_LOG_WARN, "watch", "reading inotify events");
            break;
        }
        if (n == 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF))
                relevant = true;
            else if (ev->len && (strcmp(ev->name, w->base) == 0 || strncmp(ev->name, "..", 2) == 0))
                relevant = true;
            p += sizeof(*ev) + ev->len;
        }
    }
    return relevant;
}

void sy_watch_free(struct sy_watch *w)
{
    if (!w)
        return;
    close(w->fd);
    free(w->base);
    free(w);
}
