/* SPDX-License-Identifier: MIT */
/* Zero-downtime upgrade (include/switchyard/upgrade.h): both ends of the exchange by which a
 * new process takes the listening sockets, the journal and the admin socket of the running
 * one. A UNIX SOCK_SEQPACKET socket keeps message boundaries, so each descriptor travels in a
 * message of its own (SCM_RIGHTS) with a one-letter tag. The old side runs on the control
 * loop and never blocks on the new one; the new side blocks, once, at start-up. */
#define _GNU_SOURCE /* struct ucred */
#include "switchyard/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "switchyard/base.h"
#include "switchyard/state.h"

#define MSG_MAX 256
/* The new process waits this long for each answer of the old one. */
#define CLIENT_TIMEOUT_S 30
/* The old process gives an upgrade this long from hello to ready. */
#define SERVE_TIMEOUT_S 120
#define MAX_FDS         4096

enum phase { P_HELLO = 0, P_SENT, P_RELEASED };

struct sy_upgrade {
    struct event_base *base;
    struct sy_upgrade_hooks hooks;
    int fd;
    char *path;
    dev_t dev;
    ino_t ino;
    bool handed_over;
    struct event *accept_ev;
    int conn; /* the new process, one at a time; -1: none */
    struct event *conn_ev, *timer;
    enum phase phase;
    pid_t peer;
};

int sy_upgrade_socket_path(const struct sy_config *cfg, const char *config_path, char *buf,
                           size_t size)
{
    char j[4096];
    const char *base = cfg->admin.socket;
    if (!base) {
        if (sy_state_journal_path(cfg, config_path, j, sizeof(j)) != 0)
            return SY_ERR_LIMIT;
        base = j;
    }
    struct sockaddr_un sa;
    size_t need = strlen(base) + sizeof(".upgrade");
    if (need > size || need > sizeof(sa.sun_path))
        return SY_ERR_LIMIT;
    snprintf(buf, size, "%s.upgrade", base);
    return 0;
}

/* One message, with `fd` attached when it is not -1. */
static int send_msg(int sock, const char *text, int fd)
{
    struct iovec iov = {(void *)text, strlen(text)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd != -1) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t r;
    do
        r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (r == -1 && errno == EINTR);
    return r == -1 ? SY_ERR_SYS : 0;
}

/* One message into buf (NUL-terminated) and the descriptor it carried (or -1). Returns its
 * length, 0 at EOF, or -1 (errno). */
static ssize_t recv_msg(int sock, char *buf, size_t size, int *fd)
{
    struct iovec iov = {buf, size - 1};
    union {
        char b[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
    ssize_t r;
    do
        r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (r == -1 && errno == EINTR);
    *fd = -1;
    if (r < 0)
        return -1;
    buf[r] = '\0';
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int f;
            memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*fd == -1)
                *fd = f;
            else
                close(f); /* one per message: anything more is not ours to keep */
        }
    }
    return r;
}

/* -- old process ------------------------------------------------------------------------------ */

static void conn_end(struct sy_upgrade *u)
{
    if (u->conn_ev)
        event_free(u->conn_ev);
    if (u->timer)
        event_free(u->timer);
    u->conn_ev = u->timer = NULL;
    if (u->conn != -1)
        close(u->conn);
    u->conn = -1;
}

/* The new process went away or gave up. */
static void conn_failed(struct sy_upgrade *u, const char *why)
{
    sy_log(SY_LOG_WARN, "upgrade", "pid %d did not take over: %s; this process serves on",
           (int)u->peer, why);
    bool released = u->phase == P_RELEASED;
    conn_end(u);
    if (released)
        u->hooks.failed(u->hooks.arg, why);
}

static void send_fds(struct sy_upgrade *u)
{
    int *fds = sy_xcalloc(MAX_FDS, sizeof(*fds));
    size_t n = u->hooks.listen_fds(u->hooks.arg, fds, MAX_FDS);
    if (n > MAX_FDS)
        n = MAX_FDS;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = send_msg(u->conn, "L", fds[i]);
    free(fds);
    int a = u->hooks.admin_fd(u->hooks.arg), h = u->hooks.http_fd(u->hooks.arg);
    if (rc == 0 && a != -1)
        rc = send_msg(u->conn, "A", a);
    if (rc == 0 && h != -1)
        rc = send_msg(u->conn, "H", h);
    if (rc == 0)
        rc = send_msg(u->conn, "U", u->fd);
    char end[32];
    snprintf(end, sizeof(end), "end %zu %d", n, (int)getpid());
    if (rc == 0)
        rc = send_msg(u->conn, end, -1);
    if (rc) {
        conn_failed(u, "cannot send the sockets");
        return;
    }
    sy_log(SY_LOG_INFO, "upgrade", "pid %d: sent %zu listening sockets%s%s", (int)u->peer, n,
           a != -1 ? ", the admin socket" : "", h != -1 ? ", admin.http" : "");
    u->phase = P_SENT;
}

static void on_message(struct sy_upgrade *u, const char *m)
{
    if (u->phase == P_HELLO && strncmp(m, "hello ", 6) == 0) {
        send_fds(u);
    } else if (u->phase == P_SENT && strcmp(m, "journal") == 0) {
        u->hooks.release(u->hooks.arg);
        u->phase = P_RELEASED;
        if (send_msg(u->conn, "released", -1) != 0)
            conn_failed(u, "cannot answer");
    } else if (u->phase == P_RELEASED && strcmp(m, "ready") == 0) {
        pid_t pid = u->peer;
        sy_log(SY_LOG_INFO, "upgrade", "pid %d serves: this process stops accepting and drains",
               (int)pid);
        u->handed_over = true;
        u->hooks.done(u->hooks.arg, pid);
        send_msg(u->conn, "bye", -1);
        conn_end(u);
        if (u->accept_ev)
            event_del(u->accept_ev);
    } else if (strncmp(m, "fail ", 5) == 0) {
        conn_failed(u, m + 5);
    } else {
        conn_failed(u, "unexpected message");
    }
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_upgrade *u = arg;
    if (what & EV_TIMEOUT) {
        conn_failed(u, "no ready within the time allowed");
        return;
    }
    char m[MSG_MAX];
    int extra;
    ssize_t r = recv_msg(u->conn, m, sizeof(m), &extra);
    if (extra != -1)
        close(extra);
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (r <= 0) {
        conn_failed(u, "it closed the connection (exited?)");
        return;
    }
    on_message(u, m);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_cb(-1, EV_TIMEOUT, arg);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_upgrade *u = arg;
    int c = accept4(u->fd, NULL, NULL, SOCK_CLOEXEC);
    if (c == -1)
        return;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 ||
        (cred.uid != geteuid() && cred.uid != 0)) {
        sy_log(SY_LOG_WARN, "upgrade", "refused a peer of another user");
        close(c);
        return;
    }
    if (u->conn != -1 || u->handed_over) {
        send_msg(c, "fail an upgrade is already under way", -1);
        close(c);
        return;
    }
    /* The sockets go out in one burst: a peer that does not read cannot hold this thread. */
    struct timeval snd = {5, 0};
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
    u->conn = c;
    u->peer = cred.pid;
    u->phase = P_HELLO;
    u->conn_ev = event_new(u->base, c, EV_READ | EV_PERSIST, conn_cb, u);
    u->timer = evtimer_new(u->base, timer_cb, u);
    struct timeval tv = {SERVE_TIMEOUT_S, 0};
    event_add(u->conn_ev, NULL);
    evtimer_add(u->timer, &tv);
    sy_log(SY_LOG_INFO, "upgrade", "pid %d asks to take over", (int)cred.pid);
}

/* A file at `path` that no process answers on is removed; a live one is an error. */
static int clear_stale(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == -1)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        sy_log(SY_LOG_ERROR, "upgrade", "%s exists and is not a socket: not replacing it", path);
        return SY_ERR_INVALID;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int rc = fd == -1 ? -1 : connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    if (fd != -1)
        close(fd);
    if (rc == 0) {
        sy_log(SY_LOG_ERROR, "upgrade", "%s is in use by a running process", path);
        return SY_ERR_INVALID;
    }
    unlink(path);
    return 0;
}

static int bind_socket(const char *path)
{
    if (clear_stale(path) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc == -1 || listen(fd, 4) == -1) {
        sy_log_errno(SY_LOG_ERROR, "upgrade", "cannot listen on %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

int sy_upgrade_serve(struct event_base *base, const char *path, int fd,
                     const struct sy_upgrade_hooks *hooks, struct sy_upgrade **out)
{
    bool taken = fd != -1;
    if (!taken && (fd = bind_socket(path)) == -1)
        return SY_ERR_SYS;
    struct stat st;
    if (stat(path, &st) == -1) {
        sy_log_errno(SY_LOG_ERROR, "upgrade", "%s", path);
        close(fd);
        return SY_ERR_SYS;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct sy_upgrade *u = sy_xcalloc(1, sizeof(*u));
    u->base = base;
    u->hooks = *hooks;
    u->fd = fd;
    u->conn = -1;
    u->path = sy_xstrdup(path);
    u->dev = st.st_dev;
    u->ino = st.st_ino;
    u->accept_ev = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, u);
    event_add(u->accept_ev, NULL);
    sy_log(SY_LOG_INFO, "upgrade", "upgrades (switchyard --upgrade, SIGUSR2) through %s%s", path,
           taken ? " (taken over)" : "");
    *out = u;
    return 0;
}

void sy_upgrade_free(struct sy_upgrade *u)
{
    if (!u)
        return;
    conn_end(u);
    if (u->accept_ev)
        event_free(u->accept_ev);
    close(u->fd);
    struct stat st;
    if (!u->handed_over && stat(u->path, &st) == 0 && st.st_dev == u->dev && st.st_ino == u->ino)
        unlink(u->path);
    free(u->path);
    free(u);
}

/* -- new process ------------------------------------------------------------------------------ */

/* The next message of the old process (blocking, CLIENT_TIMEOUT_S). */
static int client_recv(struct sy_upgrade_taken *t, char *m, size_t size, int *fd, char *why,
                       size_t n)
{
    ssize_t r = recv_msg(t->conn, m, size, fd);
    if (r > 0)
        return 0;
    if (r == 0)
        snprintf(why, n, "the running process (pid %d) closed the connection", (int)t->old_pid);
    else if (errno == EAGAIN || errno == EWOULDBLOCK)
        snprintf(why, n, "the running process (pid %d) did not answer within %d s", (int)t->old_pid,
                 CLIENT_TIMEOUT_S);
    else
        snprintf(why, n, "reading from the running process: %s", strerror(errno));
    return SY_ERR_SYS;
}

static int client_open(const char *path, struct sy_upgrade_taken *t, char *why, size_t n)
{
    t->conn = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (t->conn == -1 || connect(t->conn, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        snprintf(why, n, "no running switchyard answers on %s: %s", path, strerror(errno));
        return SY_ERR_NOTFOUND;
    }
    struct timeval tv = {CLIENT_TIMEOUT_S, 0};
    setsockopt(t->conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(t->conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        t->old_pid = cred.pid;
    char hello[64];
    snprintf(hello, sizeof(hello), "hello %d", (int)getpid());
    if (send_msg(t->conn, hello, -1) != 0) {
        snprintf(why, n, "cannot write to %s: %s", path, strerror(errno));
        return SY_ERR_SYS;
    }
    return 0;
}

int sy_upgrade_connect(const char *path, struct sy_upgrade_taken *t, char *why, size_t n)
{
    *t = (struct sy_upgrade_taken){.conn = -1, .admin_fd = -1, .http_fd = -1, .upgrade_fd = -1};
    int rc = client_open(path, t, why, n);
    if (rc)
        return rc;
    size_t cap = 0;
    for (;;) {
        char m[MSG_MAX];
        int fd;
        if ((rc = client_recv(t, m, sizeof(m), &fd, why, n)) != 0)
            return rc;
        if (strncmp(m, "end ", 4) == 0) {
            /* SO_PEERCRED names whoever first listened on the socket, not who serves it. */
            const char *sp = strchr(m + 4, ' ');
            if (sp && atoi(sp + 1) > 0)
                t->old_pid = (pid_t)atoi(sp + 1);
            break;
        }
        if (strncmp(m, "fail ", 5) == 0) {
            snprintf(why, n, "the running process (pid %d) refused: %s", (int)t->old_pid, m + 5);
            return SY_ERR_AGAIN;
        }
        if (fd == -1 || t->n_listen >= MAX_FDS) {
            snprintf(why, n, "unexpected message '%.32s' from the running process", m);
            if (fd != -1)
                close(fd);
            return SY_ERR_INVALID;
        }
        int *slot = m[0] == 'A'   ? &t->admin_fd
                    : m[0] == 'H' ? &t->http_fd
                    : m[0] == 'U' ? &t->upgrade_fd
                                  : NULL;
        if (slot) {
            if (*slot != -1)
                close(*slot);
            *slot = fd;
            continue;
        }
        sy_xgrow((void **)&t->listen, &cap, t->n_listen + 1, sizeof(*t->listen));
        t->listen[t->n_listen++] = fd;
    }
    return 0;
}

/* Sends `what` and waits for `want`. */
static int ask(struct sy_upgrade_taken *t, const char *what, const char *want, char *why, size_t n)
{
    if (send_msg(t->conn, what, -1) != 0) {
        snprintf(why, n, "cannot write to the running process: %s", strerror(errno));
        return SY_ERR_SYS;
    }
    char m[MSG_MAX];
    int fd;
    int rc = client_recv(t, m, sizeof(m), &fd, why, n);
    if (fd != -1)
        close(fd);
    if (rc)
        return rc;
    if (strcmp(m, want) != 0) {
        snprintf(why, n, "the running process answered '%.64s' to %s", m, what);
        return SY_ERR_INVALID;
    }
    return 0;
}

int sy_upgrade_take_journal(struct sy_upgrade_taken *t, char *why, size_t n)
{
    return ask(t, "journal", "released", why, n);
}

int sy_upgrade_ready(struct sy_upgrade_taken *t, char *why, size_t n)
{
    return ask(t, "ready", "bye", why, n);
}

void sy_upgrade_fail(struct sy_upgrade_taken *t, const char *why)
{
    if (t->conn == -1)
        return;
    char m[MSG_MAX];
    snprintf(m, sizeof(m), "fail %s", why);
    send_msg(t->conn, m, -1);
    close(t->conn);
    t->conn = -1;
}

void sy_upgrade_taken_dispose(struct sy_upgrade_taken *t)
{
    int *fds[] = {&t->conn, &t->admin_fd, &t->http_fd, &t->upgrade_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] != -1)
            close(*fds[i]);
        *fds[i] = -1;
    }
    for (size_t i = 0; i < t->n_listen; i++)
        close(t->listen[i]);
    free(t->listen);
    t->listen = NULL;
    t->n_listen = 0;
}

int sy_upgrade_spawn(const char *exe, const char *config, const char *level)
{
    pid_t child = fork();
    if (child == -1) {
        sy_log_errno(SY_LOG_ERROR, "upgrade", "fork");
        return SY_ERR_SYS;
    }
    if (child == 0) {
        /* Only async-signal-safe calls from here (the parent has threads). */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (fork() != 0)
            _exit(0);
        /* Nothing of ours but stdin, stdout and stderr: an accepted client connection (not
         * every descriptor is close-on-exec) kept open by the new process would never close. */
        if (close_range(3, ~0U, 0) == -1)
            for (int fd = 3; fd < 65536; fd++)
                close(fd);
        static char c_opt[] = "-c", up_opt[] = "--upgrade", l_opt[] = "-l";
        char *argv[8] = {(char *)exe, c_opt, (char *)config, up_opt, NULL, NULL, NULL, NULL};
        if (level) {
            argv[4] = l_opt;
            argv[5] = (char *)level;
        }
        execv(exe, argv);
        _exit(127);
    }
    int st;
    while (waitpid(child, &st, 0) == -1 && errno == EINTR)
        ;
    sy_log(SY_LOG_INFO, "upgrade", "started %s -c %s --upgrade", exe, config);
    return 0;
}
