/* SPDX-License-Identifier: MIT */
/* What a system call's flavour costs on loopback TCP: a process pings 100 bytes to a child
 * that echoes them, and reports its own CPU (user + system) per round trip. Mode 0 writes with
 * writev (2 extents) and reads with read, mode 2 writev with one extent, mode 1 send and recv,
 * which go to the socket without the VFS layer (no iovec copied in, no file position lock).
 * Mode 3 writev (2 extents) and recv, mode 4 the same 2 extents gathered by memcpy on the stack
 * and sent by send, then recv: what proxy/sock.c does with a small head and body.
 * Never part of the test suite; the machine is noisy, so interleave and take medians:
 *
 *   ninja -C build tests/bench_pingpong
 *   b=build/tests/bench_pingpong; for i in $(seq 20); do $b 2 20000; $b 1 20000; done
 *
 * Only 127.0.0.1; the child is stopped by closing the connection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static double cpu_s(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static void echo(const struct sockaddr_in *a)
{
    int c = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (c == -1 || connect(c, (const struct sockaddr *)a, sizeof(*a)) != 0)
        _exit(1);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char b[4096];
    for (;;) {
        ssize_t r = recv(c, b, sizeof(b), 0);
        if (r <= 0 || send(c, b, (size_t)r, 0) != r)
            break;
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr,
                "usage: %s MODE(0 writev+read, 1 send+recv, 2 writev-1+read, 3 writev+recv, "
                "4 gather+send+recv) N\n",
                argv[0]);
        return 2;
    }
    int mode = atoi(argv[1]);
    long n = atol(argv[2]);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (ls == -1 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0 || listen(ls, 1) != 0) {
        perror("listen");
        return 1;
    }
    pid_t child = fork();
    if (child == 0)
        echo(&a);
    int s = accept(ls, NULL, NULL), one = 1;
    if (s == -1) {
        perror("accept");
        return 1;
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char msg[100], b[4096];
    memset(msg, 'x', sizeof(msg));
    for (long i = 0; i < n + 2000; i++) {
        static double c0;
        if (i == 2000) /* warm */
            c0 = cpu_s();
        ssize_t w;
        if (mode == 1) {
            w = send(s, msg, sizeof(msg), 0);
        } else if (mode == 4) {
            char g[sizeof(msg)];
            memcpy(g, msg, 60);
            memcpy(g + 60, msg + 60, 40);
            w = send(s, g, sizeof(g), 0);
        } else {
            struct iovec v[2] = {{msg, mode == 2 ? 100 : 60}, {msg + 60, 40}};
            w = writev(s, v, mode == 2 ? 1 : 2);
        }
        if (w != (ssize_t)sizeof(msg))
            return 1;
        for (size_t got = 0; got < sizeof(msg);) {
            ssize_t r = mode == 1 || mode >= 3 ? recv(s, b, sizeof(b), 0) : read(s, b, sizeof(b));
            if (r <= 0)
                return 1;
            got += (size_t)r;
        }
        if (i == n + 1999)
            printf("mode %d: %.2f us CPU per round trip\n", mode, (cpu_s() - c0) * 1e6 / (double)n);
    }
    close(s);
    waitpid(child, NULL, 0);
    return 0;
}
