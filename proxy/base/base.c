/* SPDX-License-Identifier: MIT */
/* The base library: error strings, one-line logging to stderr, aborting allocators and the
 * diagnostics list. Everything here is thread-safe and allocation-light.
 *
 * Logging never makes a worker wait for whoever reads stderr: once sy_log_start() has run, a
 * line is copied into a buffer under a short lock and a writer thread writes the buffer out
 * (two buffers swapped, so producers append while the writer writes). A line that does not
 * fit is dropped and counted; the writer reports the drops once a second. Lines a client can
 * cause at will go through sy_log_client(), a per-thread token bucket whose overflow is
 * counted and reported the same way. */
#include "switchyard/base.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum sy_log_level log_level = SY_LOG_INFO;

/* The asynchronous log (sy_log_start). `cur` takes new lines; the writer swaps it with `out`
 * and writes `out` with the lock released. Sequence numbers count bytes ever queued and ever
 * written, so that a flush knows when what was queued before it is out. */
#define LOG_REPORT_MS 1000

struct log_async {
    pthread_mutex_t mu;
    pthread_cond_t wake;    /* the writer: a line, a flush or the stop */
    pthread_cond_t written; /* flushers: written_seq moved */
    pthread_t thread;
    bool on;       /* lines go through the buffer */
    bool stopping; /* the writer writes what is left and exits */
    bool idle;     /* the writer waits on `wake` */
    bool stuck;    /* stopped without draining: a write to stderr would block */
    char *cur, *out;
    size_t cap, len;
    uint64_t queued_seq, written_seq;
};

static struct log_async alog = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .written = PTHREAD_COND_INITIALIZER,
};

static atomic_uint_least64_t log_dropped, log_suppressed;
static atomic_uint log_client_rate = SY_LOG_CLIENT_RATE_DEFAULT;

const char *sy_strerror(int err)
{
    switch (err) {
    case SY_OK:
        return "success";
    case SY_ERR_NOMEM:
        return "out of memory";
    case SY_ERR_INVALID:
        return "invalid input";
    case SY_ERR_LIMIT:
        return "limit reached";
    case SY_ERR_SYS:
        return "system call failed";
    case SY_ERR_NOTFOUND:
        return "not found";
    case SY_ERR_AGAIN:
        return "incomplete input";
    }
    return "unknown error";
}

/* Eight bytes at once with 'A'..'Z' lowered: a byte's high bit, set by adding 0x3f to its low
 * seven bits, says it is at least 'A'; by adding 0x25, above 'Z'. Bytes of 0x80 and up stay. */
static inline uint64_t lower8(uint64_t x)
{
    const uint64_t high = 0x8080808080808080u;
    uint64_t low7 = x & ~high;
    uint64_t at_least_a = low7 + 0x3f3f3f3f3f3f3f3fu;
    uint64_t above_z = low7 + 0x2525252525252525u;
    uint64_t upper = at_least_a & ~above_z & ~x & high;
    return x | (upper >> 2);
}

static inline bool ieq8(uint64_t x, uint64_t y)
{
    return x == y || lower8(x) == lower8(y);
}

/* n (1..8) bytes at p, zero-extended: two loads that may overlap, never past the end. */
static inline uint64_t load_upto8(const char *p, size_t n)
{
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return (uint64_t)a | (uint64_t)b << 32;
    }
    unsigned char c0 = (unsigned char)p[0], c1 = (unsigned char)p[n / 2],
                  c2 = (unsigned char)p[n - 1];
    return (uint64_t)c0 | (uint64_t)c1 << 8 | (uint64_t)c2 << 16;
}

/* Eight bytes at a time, the last (or only) chunk taken so that it ends at the end: a field
 * name is compared in one to three steps, without a byte-at-a-time tail. */
bool sy_slice_ieq_slice(struct sy_slice a, struct sy_slice b)
{
    size_t n = a.len;
    if (n != b.len)
        return false;
    if (n < 8)
        return n == 0 || ieq8(load_upto8(a.p, n), load_upto8(b.p, n));
    for (size_t i = 0; i + 8 < n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a.p + i, 8);
        memcpy(&y, b.p + i, 8);
        if (!ieq8(x, y))
            return false;
    }
    uint64_t x, y;
    memcpy(&x, a.p + n - 8, 8);
    memcpy(&y, b.p + n - 8, 8);
    return ieq8(x, y);
}

void sy_log_set_level(enum sy_log_level level)
{
    log_level = level;
}

int sy_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, -1);
            continue;
        }
        if (n == 0)
            errno = EIO; /* nothing taken and no reason given: do not spin */
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static uint64_t count_lines(const char *p, size_t len)
{
    uint64_t n = 0;
    for (const char *end = p + len; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        n++;
    return n;
}

/* One finished line: into the buffer when the writer runs, else straight to stderr. */
static void emit(const char *line, size_t len)
{
    pthread_mutex_lock(&alog.mu);
    if (alog.on) {
        if (alog.cap - alog.len < len) {
            pthread_mutex_unlock(&alog.mu);
            atomic_fetch_add_explicit(&log_dropped, 1, memory_order_relaxed);
            return;
        }
        memcpy(alog.cur + alog.len, line, len);
        alog.len += len;
        alog.queued_seq += len;
        bool wake = alog.idle;
        alog.idle = false;
        pthread_mutex_unlock(&alog.mu);
        if (wake)
            pthread_cond_signal(&alog.wake);
        return;
    }
    bool stuck = alog.stuck;
    pthread_mutex_unlock(&alog.mu);
    if (stuck)
        atomic_fetch_add_explicit(&log_dropped, 1, memory_order_relaxed);
    else
        sy_write_all(STDERR_FILENO, line, len);
}

#define LOG_LINE_MAX 2048

/* Formats one record, `time level component: message[: strerror(err)]\n`, into line (of
 * LOG_LINE_MAX bytes). Returns its length, 0 when nothing could be formatted. */
__attribute__((format(printf, 4, 0))) static size_t format_line(enum sy_log_level level,
                                                                const char *component, int err,
                                                                const char *fmt, va_list ap,
                                                                char *line)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    const size_t size = LOG_LINE_MAX;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level], component);
    if (n < 0)
        return 0;
    size_t off = (size_t)n < size ? (size_t)n : size - 1;
    int m = vsnprintf(line + off, size - off, fmt, ap);
    if (m > 0)
        off += (size_t)m < size - off ? (size_t)m : size - off - 1;
    if (err && off < size - 1) {
        m = snprintf(line + off, size - off, ": %s", strerror(err));
        if (m > 0)
            off += (size_t)m < size - off ? (size_t)m : size - off - 1;
    }
    /* Keep one record on one line whatever the message held. */
    for (size_t i = 0; i < off; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    if (off > size - 2)
        off = size - 2;
    line[off++] = '\n';
    return off;
}

__attribute__((format(printf, 4, 0))) static void
vlog(enum sy_log_level level, const char *component, int err, const char *fmt, va_list ap)
{
    if (level < log_level)
        return;
    char line[LOG_LINE_MAX];
    size_t len = format_line(level, component, err, fmt, ap, line);
    if (len)
        emit(line, len);
}

__attribute__((format(printf, 4, 5))) static size_t
format_report(char *line, enum sy_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t len = format_line(level, component, 0, fmt, ap, line);
    va_end(ap);
    return len;
}

/* The writer's reports: lines dropped (the buffer was full) and client lines suppressed
 * (their rate limit), each since the last report. Appended to `batch` (which has room for
 * two lines beyond the buffer). */
static size_t add_reports(char *batch, size_t len, uint64_t *dropped_seen,
                          uint64_t *suppressed_seen)
{
    uint64_t dropped = atomic_load_explicit(&log_dropped, memory_order_relaxed);
    uint64_t suppressed = atomic_load_explicit(&log_suppressed, memory_order_relaxed);
    if (dropped != *dropped_seen && log_level <= SY_LOG_WARN)
        len += format_report(batch + len, SY_LOG_WARN, "log",
                             "%llu log lines dropped: stderr is not read fast enough (%llu in all)",
                             (unsigned long long)(dropped - *dropped_seen),
                             (unsigned long long)dropped);
    if (suppressed != *suppressed_seen && log_level <= SY_LOG_INFO)
        len += format_report(batch + len, SY_LOG_INFO, "log",
                             "suppressed %llu similar client-caused lines (%llu in all)",
                             (unsigned long long)(suppressed - *suppressed_seen),
                             (unsigned long long)suppressed);
    *dropped_seen = dropped;
    *suppressed_seen = suppressed;
    return len;
}

static void *writer_main(void *arg)
{
    uint64_t dropped_seen = 0, suppressed_seen = 0, last_report = sy_now_ms();
    pthread_mutex_lock(&alog.mu);
    for (;;) {
        while (alog.len == 0 && !alog.stopping) {
            uint64_t now = sy_now_ms();
            if (now - last_report >= LOG_REPORT_MS &&
                (atomic_load(&log_dropped) != dropped_seen ||
                 atomic_load(&log_suppressed) != suppressed_seen))
                break;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            alog.idle = true;
            pthread_cond_timedwait(&alog.wake, &alog.mu, &until);
            alog.idle = false;
        }
        if (alog.len == 0 && alog.stopping)
            break;
        char *batch = alog.cur;
        size_t len = alog.len;
        alog.cur = alog.out;
        alog.out = batch;
        alog.len = 0;
        uint64_t seq = alog.queued_seq;
        pthread_mutex_unlock(&alog.mu);

        uint64_t now = sy_now_ms();
        if (now - last_report >= LOG_REPORT_MS) {
            len = add_reports(batch, len, &dropped_seen, &suppressed_seen);
            last_report = now;
        }
        if (sy_write_all(STDERR_FILENO, batch, len) != 0) /* the reader is gone */
            atomic_fetch_add_explicit(&log_dropped, count_lines(batch, len), memory_order_relaxed);

        pthread_mutex_lock(&alog.mu);
        alog.written_seq = seq;
        pthread_cond_broadcast(&alog.written);
    }
    pthread_mutex_unlock(&alog.mu);
    /* What the last second dropped or suppressed, written directly: nobody else logs now. */
    char report[2 * LOG_LINE_MAX];
    size_t len = add_reports(report, 0, &dropped_seen, &suppressed_seen);
    if (len)
        sy_write_all(STDERR_FILENO, report, len);
    return NULL;
}

int sy_log_start(size_t buffer_bytes)
{
    size_t cap = buffer_bytes < 2 * LOG_LINE_MAX ? 2 * LOG_LINE_MAX : buffer_bytes;
    /* The two buffers are swapped: each holds a batch and, past `cap`, the writer's reports. */
    char *a = sy_xmalloc(cap + 2 * LOG_LINE_MAX), *b = sy_xmalloc(cap + 2 * LOG_LINE_MAX);
    pthread_mutex_lock(&alog.mu);
    if (alog.on) {
        pthread_mutex_unlock(&alog.mu);
        free(a);
        free(b);
        return 0;
    }
    int rc = pthread_create(&alog.thread, NULL, writer_main, NULL);
    if (rc != 0) {
        pthread_mutex_unlock(&alog.mu);
        free(a);
        free(b);
        errno = rc;
        sy_log_errno(SY_LOG_ERROR, "log", "cannot start the log writer");
        return SY_ERR_SYS;
    }
    alog.cur = a;
    alog.out = b;
    alog.cap = cap;
    alog.len = 0;
    alog.stopping = false;
    alog.stuck = false;
    alog.on = true;
    pthread_mutex_unlock(&alog.mu);
    return 0;
}

/* Waits, with alog.mu held, until what was queued so far is written or `deadline` (realtime)
 * passes. Returns true when it was written. */
static bool wait_written(const struct timespec *deadline)
{
    uint64_t target = alog.queued_seq;
    if (alog.idle) {
        alog.idle = false;
        pthread_cond_signal(&alog.wake);
    }
    while (alog.written_seq < target)
        if (pthread_cond_timedwait(&alog.written, &alog.mu, deadline) == ETIMEDOUT)
            return alog.written_seq >= target;
    return true;
}

static struct timespec deadline_in(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

bool sy_log_flush(unsigned timeout_ms)
{
    pthread_mutex_lock(&alog.mu);
    bool ok = true;
    if (alog.on) {
        struct timespec deadline = deadline_in(timeout_ms);
        ok = wait_written(&deadline);
    }
    pthread_mutex_unlock(&alog.mu);
    return ok;
}

bool sy_log_stop(unsigned timeout_ms)
{
    pthread_mutex_lock(&alog.mu);
    if (!alog.on) {
        pthread_mutex_unlock(&alog.mu);
        return true;
    }
    struct timespec deadline = deadline_in(timeout_ms);
    bool ok = wait_written(&deadline);
    alog.on = false;
    if (!ok) {
        /* stderr does not take what we have: leave the writer blocked in write(2) (the process
         * is about to exit) and drop whatever comes after. */
        alog.stuck = true;
        pthread_mutex_unlock(&alog.mu);
        pthread_detach(alog.thread);
        return false;
    }
    alog.stopping = true;
    pthread_cond_signal(&alog.wake);
    pthread_mutex_unlock(&alog.mu);
    pthread_join(alog.thread, NULL);
    pthread_mutex_lock(&alog.mu);
    free(alog.cur);
    free(alog.out);
    alog.cur = alog.out = NULL;
    alog.cap = alog.len = 0;
    pthread_mutex_unlock(&alog.mu);
    return true;
}

void sy_log_set_client_rate(unsigned per_second)
{
    atomic_store_explicit(&log_client_rate, per_second, memory_order_relaxed);
}

void sy_log_stats(struct sy_log_stats *out)
{
    out->dropped = atomic_load_explicit(&log_dropped, memory_order_relaxed);
    out->suppressed = atomic_load_explicit(&log_suppressed, memory_order_relaxed);
}

/* The calling thread's token bucket for sy_log_client: `rate` lines a second, bursts of as
 * many. Tokens are kept in thousandths so that a slow rate refills smoothly. */
static bool client_line_allowed(void)
{
    static _Thread_local uint64_t tokens_milli, last_ms;
    static _Thread_local bool started;
    unsigned rate = atomic_load_explicit(&log_client_rate, memory_order_relaxed);
    if (rate == 0)
        return true;
    uint64_t now = sy_now_ms(), full = (uint64_t)rate * 1000;
    if (!started) {
        started = true;
        tokens_milli = full;
    } else {
        tokens_milli += (now - last_ms) * rate;
        if (tokens_milli > full)
            tokens_milli = full;
    }
    last_ms = now;
    if (tokens_milli < 1000) {
        atomic_fetch_add_explicit(&log_suppressed, 1, memory_order_relaxed);
        return false;
    }
    tokens_milli -= 1000;
    return true;
}

void sy_log_client(enum sy_log_level level, const char *component, const char *fmt, ...)
{
    if (level < log_level || !client_line_allowed())
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, component, 0, fmt, ap);
    va_end(ap);
}

void sy_log(enum sy_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, component, 0, fmt, ap);
    va_end(ap);
}

void sy_log_errno(enum sy_log_level level, const char *component, const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, component, err, fmt, ap);
    va_end(ap);
}

void sy_oom(size_t size)
{
    sy_log(SY_LOG_ERROR, "base", "out of memory allocating %zu bytes", size);
    sy_log_flush(1000);
    abort();
}

void *sy_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        sy_oom(size);
    return p;
}

void *sy_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        sy_oom(n * size);
    return p;
}

void *sy_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        sy_oom(size);
    return q;
}

char *sy_xstrdup(const char *s)
{
    return sy_xstrndup(s, strlen(s));
}

char *sy_xstrndup(const char *s, size_t len)
{
    char *p = sy_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

size_t sy_fmt_u64(char *out, uint64_t v)
{
    char tmp[SY_U64_DIGITS];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    size_t n = sizeof(tmp) - i;
    memcpy(out, tmp + i, n);
    out[n] = '\0';
    return n;
}

void sy_xgrow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    *v = sy_xrealloc(*v, n * size);
    *cap = n;
}

void sy_diags_init(struct sy_diags *d)
{
    d->v = NULL;
    d->n = d->cap = 0;
    d->kept = NULL;
    d->n_kept = d->cap_kept = 0;
}

void sy_diags_dispose(struct sy_diags *d)
{
    free(d->v);
    for (size_t i = 0; i < d->n_kept; i++)
        free(d->kept[i]);
    free(d->kept);
    sy_diags_init(d);
}

void sy_diags_add(struct sy_diags *d, const char *file, int line, int col, const char *fmt, ...)
{
    sy_xgrow((void **)&d->v, &d->cap, d->n + 1, sizeof(*d->v));
    struct sy_diag *dg = &d->v[d->n++];
    dg->file = file;
    dg->line = line;
    dg->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dg->msg, sizeof(dg->msg), fmt, ap);
    va_end(ap);
}

void sy_diags_keep(struct sy_diags *d, void *p)
{
    if (!p)
        return;
    sy_xgrow((void **)&d->kept, &d->cap_kept, d->n_kept + 1, sizeof(*d->kept));
    d->kept[d->n_kept++] = p;
}

void sy_diag_format(const struct sy_diag *dg, char *buf, size_t size)
{
    const char *file = dg->file ? dg->file : "<input>";
    if (dg->line > 0)
        snprintf(buf, size, "%s:%d:%d: %s", file, dg->line, dg->col, dg->msg);
    else
        snprintf(buf, size, "%s: %s", file, dg->msg);
}

uint64_t sy_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t sy_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static _Thread_local unsigned clock_depth; /* sy_clock_hold sections open on this thread */
static _Thread_local uint64_t clock_held;  /* their reading (0: not read yet) */

void sy_clock_hold(void)
{
    if (clock_depth++ == 0)
        clock_held = 0;
}

void sy_clock_release(void)
{
    if (clock_depth && --clock_depth == 0)
        clock_held = 0;
}

uint64_t sy_clock_us(void)
{
    if (!clock_depth)
        return sy_now_us();
    if (!clock_held)
        clock_held = sy_now_us();
    return clock_held;
}

/* RFC 9110's phrases (and 103, 425, 428, 429, 431, 451, 511 from their RFCs), by code. */
const char *sy_http_reason_phrase(int status)
{
    static const struct {
        int status;
        const char *phrase;
    } phrases[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {103, "Early Hints"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {305, "Use Proxy"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {407, "Proxy Authentication Required"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {425, "Too Early"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {511, "Network Authentication Required"},
    };
    for (size_t i = 0; i < sizeof(phrases) / sizeof(phrases[0]); i++)
        if (phrases[i].status == status)
            return phrases[i].phrase;
    return ""; /* the phrase is optional (RFC 9112 4): none rather than a wrong one */
}
