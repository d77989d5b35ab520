/* SPDX-License-Identifier: MIT */
/* The client side of the admin socket, for switchyardctl and `switchyard -t`: connect, send
 * one command line (and its payload), shut the sending side, and read the answer to the end
 * (the server closes once it has answered every complete line). Blocking, with one deadline
 * for the whole exchange. */
#include "switchyard/admin_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "switchyard/base.h"

#define MAX_ANSWER (64u << 20)

static void fail(struct sy_admin_answer *a, const char *what, int err)
{
    snprintf(a->why, sizeof(a->why), "%s: %s", what, strerror(err));
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = sy_now_ms();
        if (now >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -1;
        if (n > 0)
            return 0;
    }
}

static int send_all(int fd, const char *p, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline) == -1)
                return -1;
            continue;
        }
        if (n == -1)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Whether the answer's last line says ok. */
static bool answer_ok(const char *text, size_t len)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    size_t start = len;
    while (start > 0 && text[start - 1] != '\n')
        start--;
    const char *last = text + start;
    size_t n = len - start;
    return (n == 2 && memcmp(last, "ok", 2) == 0) ||
           (n >= 10 && memcmp(last, "{\"ok\":true", 10) == 0);
}

int sy_admin_call(const char *path, const char *line, const char *payload, size_t payload_len,
                  int timeout_ms, struct sy_admin_answer *a)
{
    memset(a, 0, sizeof(*a));
    uint64_t deadline = sy_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(a->why, sizeof(a->why), "socket path too long");
        return SY_ERR_INVALID;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        fail(a, "socket", errno);
        return SY_ERR_SYS;
    }
    /* A UNIX connect either completes or fails at once; EAGAIN means a full backlog. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && sy_now_ms() < deadline) {
            poll(NULL, 0, 5); /* a full backlog has no event to wait on */
            continue;
        }
        fail(a, "cannot connect", errno);
        close(fd);
        return SY_ERR_SYS;
    }
    a->reached = true;
    size_t llen = strlen(line);
    char *msg = sy_xmalloc(llen + 1);
    memcpy(msg, line, llen);
    msg[llen] = '\n';
    int rc = send_all(fd, msg, llen + 1, deadline);
    free(msg);
    if (rc == 0 && payload_len)
        rc = send_all(fd, payload, payload_len, deadline);
    /* A refused peer is told why and closed at once: what it could not send does not matter,
     * what it is told does. */
    int send_err = rc ? errno : 0;
    shutdown(fd, SHUT_WR);
    size_t cap = 0;
    for (;;) {
        sy_xgrow((void **)&a->text, &cap, a->len + 4096 + 1, 1);
        ssize_t n = recv(fd, a->text + a->len, cap - a->len - 1, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLIN, deadline) == -1) {
                fail(a, "no answer", errno);
                close(fd);
                return SY_ERR_SYS;
            }
            continue;
        }
        if (n == -1 && errno == ECONNRESET && a->len > 0)
            break;
        if (n == -1) {
            fail(a, "cannot read the answer", errno);
            close(fd);
            return SY_ERR_SYS;
        }
        if (n == 0)
            break;
        a->len += (size_t)n;
        if (a->len > MAX_ANSWER) {
            snprintf(a->why, sizeof(a->why), "answer larger than %u bytes", MAX_ANSWER);
            close(fd);
            return SY_ERR_LIMIT;
        }
    }
    close(fd);
    a->text[a->len] = '\0';
    if (a->len == 0) {
        fail(a, send_err ? "cannot send" : "closed without an answer", send_err ? send_err : EPIPE);
        return SY_ERR_SYS;
    }
    a->ok = answer_ok(a->text, a->len);
    return 0;
}

void sy_admin_answer_dispose(struct sy_admin_answer *a)
{
    free(a->text);
    memset(a, 0, sizeof(*a));
}

int sy_admin_join(int argc, char *const *argv, char *buf, size_t size)
{
    size_t o = 0;
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        bool quote = *w == '\0' || strpbrk(w, " \t\"\\") != NULL;
        size_t need = strlen(w) * 2 + 4;
        if (o + need >= size)
            return -1;
        if (i)
            buf[o++] = ' ';
        if (quote)
            buf[o++] = '"';
        for (; *w; w++) {
            if (quote && (*w == '"' || *w == '\\'))
                buf[o++] = '\\';
            buf[o++] = *w;
        }
        if (quote)
            buf[o++] = '"';
    }
    buf[o] = '\0';
    return (int)o;
}
