/* SPDX-License-Identifier: MIT */
/* Unit tests for the systemd notify code (proxy/notify.c, included): $NOTIFY_SOCKET parsing
 * (paths, abstract names, what is refused), $WATCHDOG_USEC/$WATCHDOG_PID, the RELOADING
 * message, and the notifier against a real datagram socket with fake workers: READY=1 waits
 * until every worker answered, the watchdog is fed only while they answer, nothing is armed
 * without NOTIFY_SOCKET. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../../proxy/notify.c"

/* Fake workers: sy_workers_ping records, answered is what the test says. */
struct sy_workers {
    size_t n, answered;
    uint64_t last_seq;
    int fd;
};

void sy_workers_ping(struct sy_workers *ws, uint64_t seq, int fd)
{
    ws->last_seq = seq;
    ws->fd = fd;
}

size_t sy_workers_answered(const struct sy_workers *ws, uint64_t seq)
{
    return ws->answered;
}

size_t sy_workers_count(const struct sy_workers *ws)
{
    return ws->n;
}

static void test_addr_path(void **state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    assert_int_equal(sy_notify_addr("/run/systemd/notify", &sa, &len), 0);
    assert_int_equal(sa.sun_family, AF_UNIX);
    assert_string_equal(sa.sun_path, "/run/systemd/notify");
    assert_int_equal(len,
                     offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
}

static void test_addr_abstract(void **state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    assert_int_equal(sy_notify_addr("@sd-notify/x", &sa, &len), 0);
    assert_int_equal(sa.sun_path[0], '\0');
    assert_memory_equal(sa.sun_path + 1, "sd-notify/x", 11);
    /* The abstract name is exactly its bytes: no NUL counted after it. */
    assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) + 12);
}

static void test_addr_refused(void **state)
{
    struct sockaddr_un sa;
    memset(&sa, 0x55, sizeof(sa));
    socklen_t len = 77;
    const char *bad[] = {"", "relative/path", "vsock:2:1234", "@", "/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sy_notify_addr(bad[i], &sa, &len), SY_ERR_INVALID);
        assert_int_equal(len, 77); /* untouched */
    }
    assert_int_equal(sy_notify_addr(NULL, &sa, &len), SY_ERR_INVALID);
    char longest[sizeof(sa.sun_path) + 2];
    /* A path fills sun_path with its NUL; an abstract name may use every byte. */
    memset(longest, 'a', sizeof(longest));
    longest[0] = '/';
    longest[sizeof(sa.sun_path) - 1] = '\0';
    assert_int_equal(sy_notify_addr(longest, &sa, &len), 0);
    longest[sizeof(sa.sun_path) - 1] = 'a';
    longest[sizeof(sa.sun_path)] = '\0';
    assert_int_equal(sy_notify_addr(longest, &sa, &len), SY_ERR_INVALID);
    longest[0] = '@';
    assert_int_equal(sy_notify_addr(longest, &sa, &len), 0);
    longest[sizeof(sa.sun_path)] = 'a';
    longest[sizeof(sa.sun_path) + 1] = '\0';
    assert_int_equal(sy_notify_addr(longest, &sa, &len), SY_ERR_INVALID);
}

static void test_watchdog_usec(void **state)
{
    assert_int_equal(sy_notify_watchdog_usec("30000000", NULL, 42), 30000000);
    assert_int_equal(sy_notify_watchdog_usec("30000000", "42", 42), 30000000);
    assert_int_equal(sy_notify_watchdog_usec("30000000", "", 42), 30000000);
    assert_int_equal(sy_notify_watchdog_usec("30000000", "43", 42), 0);
    assert_int_equal(sy_notify_watchdog_usec("30000000", "4x", 42), 0);
    assert_int_equal(sy_notify_watchdog_usec(NULL, "42", 42), 0);
    assert_int_equal(sy_notify_watchdog_usec("", NULL, 42), 0);
    assert_int_equal(sy_notify_watchdog_usec("0", NULL, 42), 0);
    assert_int_equal(sy_notify_watchdog_usec("-5", NULL, 42), 0);
    assert_int_equal(sy_notify_watchdog_usec("10s", NULL, 42), 0);
    assert_int_equal(sy_notify_watchdog_usec("99999999999999999999999", NULL, 42), 0);
}

static void test_format_reloading(void **state)
{
    char buf[128];
    int n = sy_notify_format_reloading(buf, sizeof(buf), 123456789, NULL);
    assert_string_equal(buf, "RELOADING=1\nMONOTONIC_USEC=123456789\n");
    assert_int_equal(n, (int)strlen(buf));
    sy_notify_format_reloading(buf, sizeof(buf), 5, "reloading");
    assert_string_equal(buf, "RELOADING=1\nMONOTONIC_USEC=5\nSTATUS=reloading\n");
    volatile size_t small = 8; /* too short: the return says how long it would be */
    assert_true(sy_notify_format_reloading(buf, small, 5, NULL) >= 8);
}

/* A bound abstract datagram socket standing in for systemd's, and NOTIFY_SOCKET naming it. */
static int listener(char *name, size_t size)
{
    snprintf(name, size, "@switchyard-unit-%d", (int)getpid());
    struct sockaddr_un sa;
    socklen_t len;
    assert_int_equal(sy_notify_addr(name, &sa, &len), 0);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_int_not_equal(fd, -1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    setenv("NOTIFY_SOCKET", name, 1);
    return fd;
}

/* The next datagram, or "" when none is waiting. */
static const char *next_msg(int fd)
{
    static char buf[1024];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void pong(struct sy_notify *n, struct event_base *base)
{
    uint64_t one = 1;
    assert_int_equal(write(n->pong_fd, &one, sizeof(one)), sizeof(one));
    event_base_loop(base, EVLOOP_NONBLOCK);
}

static void test_ready_waits_for_every_worker(void **state)
{
    char name[64];
    int fd = listener(name, sizeof(name));
    struct event_base *base = event_base_new();
    struct sy_workers ws = {.n = 3, .answered = 0};
    struct sy_notify *n = sy_notify_new(base, &ws);
    assert_non_null(n);
    assert_null(getenv("NOTIFY_SOCKET")); /* not handed to children */
    sy_notify_ready_when_workers(n, "serving generation 1");
    assert_int_equal(ws.last_seq, 1);
    assert_int_equal(ws.fd, n->pong_fd);
    ws.answered = 2;
    pong(n, base);
    assert_string_equal(next_msg(fd), "");
    ws.answered = 3;
    pong(n, base);
    assert_string_equal(next_msg(fd), "READY=1\nSTATUS=serving generation 1\n");
    pong(n, base); /* once only */
    assert_string_equal(next_msg(fd), "");

    sy_notify_reloading(n, NULL);
    assert_memory_equal(next_msg(fd), "RELOADING=1\nMONOTONIC_USEC=", 27);
    sy_notify_ready(n, "serving generation 2");
    assert_string_equal(next_msg(fd), "READY=1\nSTATUS=serving generation 2\n");
    sy_notify_stopping(n, "draining");
    assert_string_equal(next_msg(fd), "STOPPING=1\nSTATUS=draining\n");
    sy_notify_free(n);
    event_base_free(base);
    close(fd);
}

static void test_watchdog_fed_while_workers_answer(void **state)
{
    char name[64];
    int fd = listener(name, sizeof(name));
    setenv("WATCHDOG_USEC", "20000000", 1);
    struct event_base *base = event_base_new();
    struct sy_workers ws = {.n = 2, .answered = 2};
    struct sy_notify *n = sy_notify_new(base, &ws);
    assert_non_null(n);
    assert_int_equal(n->wd_usec, 20000000);
    assert_null(getenv("WATCHDOG_USEC"));
    /* No watchdog before READY. */
    watchdog_cb(-1, 0, n);
    sy_notify_ready_when_workers(n, NULL);
    pong(n, base);
    assert_string_equal(next_msg(fd), "READY=1\n");
    assert_true(evtimer_pending(n->wd_ev, NULL));
    /* The timer's period is exercised by the e2e test; here its callback is called. */
    uint64_t seq = ws.last_seq;
    watchdog_cb(-1, 0, n);
    assert_string_equal(next_msg(fd), "WATCHDOG=1\n");
    assert_int_equal(ws.last_seq, seq + 1);
    ws.answered = 1; /* one worker is stuck */
    watchdog_cb(-1, 0, n);
    assert_string_equal(next_msg(fd), "");
    assert_int_equal(ws.last_seq, seq + 1); /* not asked again while it owes an answer */
    watchdog_cb(-1, 0, n);
    assert_string_equal(next_msg(fd), "");
    ws.answered = 2;
    watchdog_cb(-1, 0, n);
    assert_string_equal(next_msg(fd), "WATCHDOG=1\n");
    sy_notify_stopping(n, NULL);
    assert_string_equal(next_msg(fd), "STOPPING=1\n");
    assert_false(evtimer_pending(n->wd_ev, NULL));
    watchdog_cb(-1, 0, n);
    assert_string_equal(next_msg(fd), "");
    sy_notify_free(n);
    event_base_free(base);
    close(fd);
}

static void test_nothing_without_notify_socket(void **state)
{
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "20000000", 1);
    struct event_base *base = event_base_new();
    struct sy_workers ws = {.n = 1};
    assert_null(sy_notify_new(base, &ws));
    /* Every call takes NULL. */
    sy_notify_ready_when_workers(NULL, "x");
    sy_notify_reloading(NULL, NULL);
    sy_notify_ready(NULL, NULL);
    sy_notify_status(NULL, "x");
    sy_notify_stopping(NULL, NULL);
    assert_int_equal(sy_notify_send(NULL, "READY=1\n"), 0);
    sy_notify_free(NULL);
    assert_int_equal(ws.last_seq, 0);
    setenv("NOTIFY_SOCKET", "relative", 1);
    assert_null(sy_notify_new(base, &ws));
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_path),
        cmocka_unit_test(test_addr_abstract),
        cmocka_unit_test(test_addr_refused),
        cmocka_unit_test(test_watchdog_usec),
        cmocka_unit_test(test_format_reloading),
        cmocka_unit_test(test_ready_waits_for_every_worker),
        cmocka_unit_test(test_watchdog_fed_while_workers_answer),
        cmocka_unit_test(test_nothing_without_notify_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
