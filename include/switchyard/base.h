/* SPDX-License-Identifier: MIT */
/* The small core every module links: error codes, logging, allocation, byte slices and the
 * diagnostics list that config and admin errors are reported through. */
#ifndef SWITCHYARD_BASE_H
#define SWITCHYARD_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/** True when the slice equals the C string `s`, compared case-insensitively (ASCII). */
bool sy_slice_ieq(struct sy_slice a, const char *s);

/** True when two slices are equal, compared case-insensitively (ASCII). */
bool sy_slice_ieq_slice(struct sy_slice a, struct sy_slice b);

enum sy_log_level {
    SY_LOG_DEBUG = 0,
    SY_LOG_INFO,
    SY_LOG_WARN,
    SY_LOG_ERROR,
};

/** Lines below this level are dropped. Default SY_LOG_INFO. Call before threads start. */
void sy_log_set_level(enum sy_log_level level);

/**
 * One line to stderr: `time level component: message`. Safe from any thread (one write(2)
 * per line, so lines never interleave).
 */
void sy_log(enum sy_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** As sy_log, with `: strerror(errno)` appended. */
void sy_log_errno(enum sy_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Allocation that logs and aborts on OOM: peers never reach it (limits are checked first). */
void *sy_xmalloc(size_t size);
void *sy_xcalloc(size_t n, size_t size);
void *sy_xrealloc(void *p, size_t size);
char *sy_xstrdup(const char *s);
char *sy_xstrndup(const char *s, size_t len);
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
};

void sy_diags_init(struct sy_diags *d);
void sy_diags_dispose(struct sy_diags *d);
/** Appends one diagnostic. `file` is borrowed and must outlive `d`. */
void sy_diags_add(struct sy_diags *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/** Formats diagnostic `i` as `file:line:col: msg` into buf (always NUL-terminated). */
void sy_diag_format(const struct sy_diag *dg, char *buf, size_t size);

/** Monotonic milliseconds. */
uint64_t sy_now_ms(void);

#endif
