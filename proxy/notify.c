/* SPDX-License-Identifier: MIT */
/* The systemd notify protocol without libsystemd: each state change is one datagram of
 * `KEY=VALUE` lines sent to the UNIX socket named by $NOTIFY_SOCKET (a path, or `@name` in
 * the abstract namespace). READY=1 is not sent when main() has merely started the threads but
 * when every worker has answered a ping from its own loop (so each has its snapshot and its
 * listeners); the watchdog is fed only while every worker answers the previous ping in time, so
 * a worker stuck in a loop gets the service restarted. All of it runs on the control thread;
 * nothing here touches a worker beyond sy_workers_ping. */
#include "switchyard/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "switchyard/base.h"

struct sy_notify {
    int fd; /* SOCK_DGRAM, unbound */
    struct sockaddr_un addr;
    socklen_t addrlen;
    struct event_base *base;
    struct sy_workers *ws;
    int pong_fd; /* eventfd the workers ring when they answer a ping */
    struct event *pong_ev;
    uint64_t seq;        /* the last ping asked */
    bool ready_pending;  /* READY=1 waits for every worker to answer `seq` */
    char *ready_status;  /* the STATUS= that goes with it */
    uint64_t wd_usec;    /* watchdog period; 0: none */
    struct event *wd_ev; /* every half period */
    bool wd_stalled;     /* logged that a worker did not answer */
    bool ready_sent;     /* the first READY=1 is out: the watchdog runs */
    bool stopping;
};

int sy_notify_addr(const char *value, struct sockaddr_un *sa, socklen_t *len)
{
    if (!value || (value[0] != '/' && value[0] != '@'))
        return SY_ERR_INVALID;
    size_t n = strlen(value);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (n < 2 || n > sizeof(a.sun_path) - (value[0] == '/' ? 1 : 0))
        return SY_ERR_INVALID;
    memcpy(a.sun_path, value, n);
    socklen_t l = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (value[0] == '@')
        a.sun_path[0] = '\0'; /* abstract: the name is exactly the n bytes, no NUL at the end */
    else
        l += 1; /* a path's length counts its NUL */
    *sa = a;
    *len = l;
    return 0;
}

uint64_t sy_notify_watchdog_usec(const char *usec, const char *pid, pid_t self)
{
    if (!usec || !*usec)
        return 0;
    if (pid && *pid) {
        char *end;
        errno = 0;
        unsigned long long p = strtoull(pid, &end, 10);
        if (errno || *end || p == 0 || p != (unsigned long long)self)
            return 0;
    }
    char *end;
    errno = 0;
    unsigned long long u = strtoull(usec, &end, 10);
    if (errno || *end || usec[0] == '-' || u == 0)
        return 0;
    return u;
}

int sy_notify_format_reloading(char *buf, size_t size, uint64_t monotonic_usec, const char *status)
{
    return snprintf(buf, size, "RELOADING=1\nMONOTONIC_USEC=%llu\n%s%s%s",
                    (unsigned long long)monotonic_usec, status ? "STATUS=" : "",
                    status ? status : "", status ? "\n" : "");
}

int sy_notify_send(struct sy_notify *n, const char *text)
{
    if (!n)
        return 0;
    ssize_t r;
    do
        r = sendto(n->fd, text, strlen(text), MSG_NOSIGNAL, (struct sockaddr *)&n->addr,
                   n->addrlen);
    while (r == -1 && errno == EINTR);
    if (r == -1) {
        /* systemd gone, or its queue full: the service goes on, the message is lost. */
        sy_log_errno(SY_LOG_WARN, "notify", "cannot send to NOTIFY_SOCKET");
        return SY_ERR_SYS;
    }
    return 0;
}

/* `head` and, when status is not NULL, `STATUS=status`, as one datagram. */
static void send_with_status(struct sy_notify *n, const char *head, const char *status)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s%s%s%s", head, status ? "STATUS=" : "", status ? status : "",
             status ? "\n" : "");
    sy_notify_send(n, buf);
}

static bool all_answered(const struct sy_notify *n)
{
    return sy_workers_answered(n->ws, n->seq) == sy_workers_count(n->ws);
}

/* Every half watchdog period: fed only when every worker answered the last ping, then pinged
 * again. A worker that misses a period stops the feeding; systemd restarts the service when
 * the whole period passes without it. */
static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_notify *n = arg;
    if (n->stopping || !n->ready_sent)
        return;
    if (all_answered(n)) {
        if (n->wd_stalled)
            sy_log(SY_LOG_INFO, "notify", "every worker answers again: watchdog fed");
        n->wd_stalled = false;
        sy_notify_send(n, "WATCHDOG=1\n");
    } else if (!n->wd_stalled) {
        n->wd_stalled = true;
        sy_log(SY_LOG_WARN, "notify",
               "%zu of %zu workers did not answer within %llu ms: watchdog not fed",
               sy_workers_count(n->ws) - sy_workers_answered(n->ws, n->seq),
               sy_workers_count(n->ws), (unsigned long long)(n->wd_usec / 2000));
    }
    if (!n->wd_stalled)
        sy_workers_ping(n->ws, ++n->seq, n->pong_fd);
}

static void pong_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_notify *n = arg;
    uint64_t count;
    ssize_t r = read(n->pong_fd, &count, sizeof(count)); /* resets the eventfd */
    (void)r;
    if (!n->ready_pending || !all_answered(n))
        return;
    n->ready_pending = false;
    n->ready_sent = true;
    send_with_status(n, "READY=1\n", n->ready_status);
    free(n->ready_status);
    n->ready_status = NULL;
    if (n->wd_usec) {
        uint64_t half = n->wd_usec / 2;
        struct timeval tv = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
        event_add(n->wd_ev, &tv);
        sy_log(SY_LOG_INFO, "notify", "watchdog: fed every %llu ms while every worker answers",
               (unsigned long long)(half / 1000));
    }
}

struct sy_notify *sy_notify_new(struct event_base *base, struct sy_workers *ws)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path)
        return NULL;
    struct sy_notify *n = sy_xcalloc(1, sizeof(*n));
    n->fd = -1;
    n->pong_fd = -1;
    if (sy_notify_addr(path, &n->addr, &n->addrlen) != 0) {
        sy_log(SY_LOG_WARN, "notify",
               "NOTIFY_SOCKET=%s is not an absolute path or @abstract name: not notifying", path);
        goto out_free;
    }
    n->wd_usec = sy_notify_watchdog_usec(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), getpid());
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd == -1) {
        sy_log_errno(SY_LOG_WARN, "notify", "socket(AF_UNIX): not notifying");
        goto out_free;
    }
    n->pong_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (n->pong_fd == -1) {
        sy_log_errno(SY_LOG_WARN, "notify", "eventfd: not notifying");
        goto out_free;
    }
    n->base = base;
    n->ws = ws;
    n->pong_ev = event_new(base, n->pong_fd, EV_READ | EV_PERSIST, pong_cb, n);
    n->wd_ev = event_new(base, -1, EV_PERSIST, watchdog_cb, n);
    if (!n->pong_ev || !n->wd_ev || event_add(n->pong_ev, NULL) != 0) {
        sy_log(SY_LOG_WARN, "notify", "cannot create events: not notifying");
        goto out_free;
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return n;

out_free:
    sy_notify_free(n);
    return NULL;
}

void sy_notify_ready_when_workers(struct sy_notify *n, const char *status)
{
    if (!n)
        return;
    free(n->ready_status);
    n->ready_status = status ? sy_xstrdup(status) : NULL;
    n->ready_pending = true;
    sy_workers_ping(n->ws, ++n->seq, n->pong_fd);
}

void sy_notify_reloading(struct sy_notify *n, const char *status)
{
    if (!n)
        return;
    char buf[1024];
    sy_notify_format_reloading(buf, sizeof(buf), sy_now_us(), status);
    sy_notify_send(n, buf);
}

void sy_notify_ready(struct sy_notify *n, const char *status)
{
    if (n)
        send_with_status(n, "READY=1\n", status);
}

void sy_notify_status(struct sy_notify *n, const char *status)
{
    if (n)
        send_with_status(n, "", status);
}

void sy_notify_stopping(struct sy_notify *n, const char *status)
{
    if (!n)
        return;
    n->stopping = true;
    n->ready_pending = false;
    if (n->wd_ev)
        event_del(n->wd_ev);
    send_with_status(n, "STOPPING=1\n", status);
}

void sy_notify_free(struct sy_notify *n)
{
    if (!n)
        return;
    if (n->pong_ev)
        event_free(n->pong_ev);
    if (n->wd_ev)
        event_free(n->wd_ev);
    if (n->pong_fd != -1)
        close(n->pong_fd);
    if (n->fd != -1)
        close(n->fd);
    free(n->ready_status);
    free(n);
}
