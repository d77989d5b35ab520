/* SPDX-License-Identifier: MIT */
/* The base library: error strings, one-line logging to stderr, aborting allocators and the
 * diagnostics list. Everything here is thread-safe and allocation-light. */
#include "switchyard/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum sy_log_level log_level = SY_LOG_INFO;

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

bool sy_slice_ieq(struct sy_slice a, const char *s)
{
    return sy_slice_ieq_slice(a, sy_slice_of(s, strlen(s)));
}

bool sy_slice_ieq_slice(struct sy_slice a, struct sy_slice b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return false;
    }
    return true;
}

void sy_log_set_level(enum sy_log_level level)
{
    log_level = level;
}

__attribute__((format(printf, 4, 0))) static void
vlog(enum sy_log_level level, const char *component, int err, const char *fmt, va_list ap)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < log_level)
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level], component);
    if (n < 0)
        return;
    size_t off = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    int m = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
    if (m > 0)
        off += (size_t)m < sizeof(line) - off ? (size_t)m : sizeof(line) - off - 1;
    if (err && off < sizeof(line) - 1) {
        m = snprintf(line + off, sizeof(line) - off, ": %s", strerror(err));
        if (m > 0)
            off += (size_t)m < sizeof(line) - off ? (size_t)m : sizeof(line) - off - 1;
    }
    /* Keep one record on one line whatever the message held. */
    for (size_t i = 0; i < off; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    if (off > sizeof(line) - 2)
        off = sizeof(line) - 2;
    line[off++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, off);
    (void)w;
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

static void oom(size_t size)
{
    sy_log(SY_LOG_ERROR, "base", "out of memory allocating %zu bytes", size);
    abort();
}

void *sy_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        oom(size);
    return p;
}

void *sy_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *sy_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        oom(size);
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
}

void sy_diags_dispose(struct sy_diags *d)
{
    free(d->v);
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
