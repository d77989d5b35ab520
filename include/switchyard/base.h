/* SPDX-License-Identifier: MIT */
/* The small core every module links: error codes, logging, allocation, byte slices and the
 * diagnostics list that config and admin errors are reported through. */
#ifndef SWITCHYARD_BASE_H
#define SWITCHYARD_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/** Error codes: functions return 0 or a negative value of this enum. */
enum sy_err {
    SY_OK = 0,
    SY_ERR_NOMEM = -1,   /* allocation failed */
    SY_ERR_INVALID = -2, /* malformed input (config, protocol, command) */
    SY_ERR_LIMIT = -3,   /* a configured limit was reached */
    SY_ERR_SYS = -4,     /* a system call failed; errno was logged */
    SY_ERR_NOTFOUND = -5,
    SY_ERR_AGAIN = -6, /* not enough input yet */
};

/** Text for an sy_err value (never NULL). */
const char *sy_strerror(int err);

/** Borrowed bytes; never NUL-terminated by contract. */
struct sy_slice {
    const char *p;
    size_t len;
};

static inline struct sy_slice sy_slice_of(const char *p, size_t len)
{
    struct sy_slice s = {p, len};
    return s;
}

/**
 * One header field of a parsed message: the name as received and the value without leading or
 * trailing whitespace. Both borrow the message buffer.
 */
struct sy_header {
    struct sy_slice name, value;
};

/** True when two slices are equal, compared case-insensitively (ASCII). */
bool sy_slice_ieq_slice(struct sy_slice a, struct sy_slice b);

/** The value of a hexadecimal digit (either case), or -1. */
static inline int sy_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/** True when the slice equals the C string `s`, compared case-insensitively (ASCII). Inline:
 * `s` is nearly always a literal, whose length the compiler knows, so that a slice of
 * another length costs one comparison (header names are tested a few dozen times a request). */
static inline bool sy_slice_ieq(struct sy_slice a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && sy_slice_ieq_slice(a, sy_slice_of(s, n));
}

/** The offset basis of FNV-1a (64 bit): the `h` to start sy_fnv1a with. */
#define SY_FNV1A_INIT 0xcbf29ce484222325ULL

/**
 * FNV-1a (64 bit) of `len` bytes, continuing from `h` (SY_FNV1A_INIT to start), so that a key
 * made of several pieces hashes without being copied together. For hash tables, not for
 * anything an attacker must not steer.
 */
static inline uint64_t sy_fnv1a(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

enum sy_log_level {
    SY_LOG_DEBUG = 0,
    SY_LOG_INFO,
    SY_LOG_WARN,
    SY_LOG_ERROR,
};

/** Lines below this level are dropped. Default SY_LOG_INFO. Call before threads start. */
void sy_log_set_level(enum sy_log_level level);

/**
 * One line to stderr: `time level component: message`. Safe from any thread; lines never
 * interleave. Before sy_log_start() (and after sy_log_stop()) the line is written at once
 * with one write(2); in between it is only queued for the writer thread, and dropped (and
 * counted) when the queue is full: a caller never waits for whoever reads stderr.
 */
void sy_log(enum sy_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** As sy_log, with `: strerror(errno)` appended. */
void sy_log_errno(enum sy_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Default of limits.log_client_lines: client-caused lines per second per thread. */
#define SY_LOG_CLIENT_RATE_DEFAULT 100

/**
 * As sy_log, for a line a client can cause at will (its own malformed request, 404, timeout):
 * each thread logs at most the rate set by sy_log_set_client_rate() per second (bursts of as
 * many); the others are counted, and the log writer reports them once a second as
 * `suppressed N similar client-caused lines`.
 */
void sy_log_client(enum sy_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Lines per second per thread for sy_log_client; 0 = no limit. Any thread. */
void sy_log_set_client_rate(unsigned per_second);

/**
 * Starts the log writer thread: from now on lines are queued in a buffer of `buffer_bytes`
 * and written by that thread; a line that does not fit is dropped and counted, and the drops
 * are reported once a second (`N log lines dropped`). Returns 0, or SY_ERR_SYS (logged; lines
 * are then still written directly). Call once, before the threads that log start.
 */
int sy_log_start(size_t buffer_bytes);

/**
 * Waits until every line queued before the call is written, at most `timeout_ms`. Returns
 * true when they were (or no writer runs), false when stderr did not take them in time.
 */
bool sy_log_flush(unsigned timeout_ms);

/**
 * Flushes as sy_log_flush and stops the writer; later lines are written directly. When stderr
 * does not take what is queued within `timeout_ms`, the writer is left behind (the process is
 * about to exit), later lines are dropped, and false is returned.
 */
bool sy_log_stop(unsigned timeout_ms);

/** Lines lost since start: dropped for a full buffer, suppressed by sy_log_client's rate. */
struct sy_log_stats {
    uint64_t dropped, suppressed;
};

/** The counts so far. Any thread. */
void sy_log_stats(struct sy_log_stats *out);

/** Logs that `size` bytes could not be had, and aborts. */
_Noreturn void sy_oom(size_t size);
/** Allocation that logs and aborts on OOM: peers never reach it (limits are checked first). */
void *sy_xmalloc(size_t size);
void *sy_xcalloc(size_t n, size_t size);
void *sy_xrealloc(void *p, size_t size);
char *sy_xstrdup(const char *s);
char *sy_xstrndup(const char *s, size_t len);
/** The decimal digits of `v` into `out` (at least SY_U64_DIGITS bytes), NUL-terminated;
 * returns their count. For the request path, where snprintf costs ten times as much. */
#define SY_U64_DIGITS 21
size_t sy_fmt_u64(char *out, uint64_t v);
/** Grows an array `*v` of `*cap` elements of `size` so that it holds at least `need`. */
void sy_xgrow(void **v, size_t *cap, size_t need, size_t size);

/** One error for a person: `file:line:col: msg`. line and col are 1-based; 0 = unknown. */
struct sy_diag {
    char msg[256];
    const char *file;
    int line, col;
};

/** Every error found in one pass (a config check reports them all). */
struct sy_diags {
    struct sy_diag *v;
    size_t n, cap;
    void **kept; /* sy_diags_keep: freed with the list */
    size_t n_kept, cap_kept;
};

void sy_diags_init(struct sy_diags *d);
void sy_diags_dispose(struct sy_diags *d);
/** Appends one diagnostic. `file` is borrowed and must outlive `d`. */
void sy_diags_add(struct sy_diags *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/**
 * Takes ownership of `p` (malloc'd; NULL is a no-op) and frees it in sy_diags_dispose: for file
 * names that the diagnostics point to and that would otherwise go with the object that held
 * them (the apps_dir files of a config that failed to load).
 */
void sy_diags_keep(struct sy_diags *d, void *p);
/** Formats diagnostic `i` as `file:line:col: msg` into buf (always NUL-terminated). */
void sy_diag_format(const struct sy_diag *dg, char *buf, size_t size);

/** Monotonic milliseconds. */
uint64_t sy_now_ms(void);
/** The same clock in microseconds (vDSO: no system call). */
uint64_t sy_now_us(void);

/**
 * The data path's clock, sy_now_us's: inside a sy_clock_hold section (an event handler of the
 * connection layer) it is read once, when first asked for, and every later ask of the section
 * gets that reading; outside one it is read each time. A request sets some ten deadlines and
 * timings, each a clock read of about 30 ns on a vDSO clock (2% of the proxy's time on small
 * answers); a handler runs for microseconds, far below what any of them measures. Never for a
 * loop that waits for the clock to move (sy_now_ms is). Per thread; sections nest.
 */
void sy_clock_hold(void);
void sy_clock_release(void);
uint64_t sy_clock_us(void);
static inline uint64_t sy_clock_ms(void)
{
    return sy_clock_us() / 1000;
}

/** The reason phrase of a registered HTTP status (RFC 9110 §15 and the RFCs after it), or ""
 * for another (the phrase is optional): the proxy's own answers, the admin listener's, and
 * an HTTP/1.1 status line for a response that came without one (every HTTP/2 one). */
const char *sy_http_reason_phrase(int status);

/**
 * Writes all `len` bytes of `p` to `fd`: retries after EINTR and short writes, and waits in
 * poll(2) while a non-blocking `fd` is full. Returns 0, or -1 with errno set (EIO when write
 * took nothing and gave no reason). Blocking; any thread.
 */
int sy_write_all(int fd, const char *p, size_t len);

#endif
