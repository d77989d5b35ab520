/* SPDX-License-Identifier: MIT */
/* Strict HTTP/1.1 parsing (RFC 9112): request and response heads into slices of the caller's
 * buffer, and an incremental chunked-body decoder. The key idea is one forward pass with a
 * byte-class table and no state kept between calls for heads: each call parses the head again
 * from its first byte (heads are small and bounded by max_head), checks the limits on the
 * bytes it has even when the head is unfinished, and decides the framing only from the
 * complete head. Every form that two parsers could read two ways (request smuggling) is an
 * error, never a guess. Nothing here allocates, does I/O, or reads past `len`. */
#include "switchyard/h1.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Byte classes. */
enum {
    C_TCHAR = 1 << 0,  /* tchar (RFC 9110 §5.6.2) */
    C_FIELD = 1 << 1,  /* field-vchar, SP or HTAB: field values (RFC 9110 §5.5) */
    C_TARGET = 1 << 2, /* visible ASCII: request-target (RFC 9112 §3.2, RFC 3986) */
    C_QDTEXT = 1 << 3, /* qdtext (RFC 9110 §5.6.4) */
    C_HEX = 1 << 4,    /* HEXDIG */
    C_AUTH = 1 << 5,   /* unreserved, sub-delims, ':', '[', ']', '%' (RFC 3986 §3.2) */
};

/* The classes above for every byte; the unit tests check each byte against the RFC grammar. */
static const unsigned char cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  10, 0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    10, 47, 6,  15, 47, 47, 47, 47, 46, 46, 47, 47, 46, 47, 47, 14, /* 0x20 */
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 46, 46, 14, 46, 14, 14, /* 0x30 */
    14, 63, 63, 63, 63, 63, 63, 47, 47, 47, 47, 47, 47, 47, 47, 47, /* 0x40 */
    47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 46, 6,  46, 15, 47, /* 0x50 */
    15, 63, 63, 63, 63, 63, 63, 47, 47, 47, 47, 47, 47, 47, 47, 47, /* 0x60 */
    47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 14, 15, 14, 47, 0,  /* 0x70 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0x80 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0x90 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0xa0 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0xb0 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0xc0 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0xd0 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0xe0 */
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, /* 0xf0 */
};

static inline bool is(char c, unsigned cl)
{
    return (cls[(unsigned char)c] & cl) != 0;
}

/* Where the run of field-value bytes (C_FIELD) from p[i] ends, at most at n. With SSE2 (every
 * x86-64) 16 bytes are looked at per step: a byte is out when it is a control other than HTAB
 * (at most 0x1f) or DEL; the scalar loop takes the rest. Values are most of a head's bytes. */
static size_t field_span(const char *p, size_t i, size_t n)
{
#if defined(__SSE2__)
    const __m128i ctl_max = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'),
                  del = _mm_set1_epi8(0x7f);
    while (n - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v);
        __m128i out =
            _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(v, tab), ctl), _mm_cmpeq_epi8(v, del));
        unsigned mask = (unsigned)_mm_movemask_epi8(out);
        if (mask)
            return i + (unsigned)__builtin_ctz(mask);
        i += 16;
    }
#endif
    while (i < n && is(p[i], C_FIELD))
        i++;
    return i;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Case-insensitive comparison of n input bytes with a lowercase literal. */
static bool ieq(const char *p, const char *lc, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != (unsigned char)lc[i])
            return false;
    }
    return true;
}

static inline bool slice_is(struct sy_slice s, const char *lc, size_t n)
{
    return s.len == n && ieq(s.p, lc, n);
}

static bool is_token(struct sy_slice s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!is(s.p[i], C_TCHAR))
            return false;
    return true;
}

/* The next non-empty element of a comma-separated list with OWS trimmed (RFC 9110 §5.6.1:
 * empty elements are skipped). A comma inside a quoted-string does not split. An unterminated
 * quote runs to the end; the callers' element checks then reject it. */
static bool next_element(const char **pp, const char *end, struct sy_slice *el)
{
    const char *p = *pp;
    while (p < end && (is_ows(*p) || *p == ','))
        p++;
    if (p == end) {
        *pp = p;
        return false;
    }
    const char *s = p;
    bool quoted = false;
    for (; p < end; p++) {
        if (quoted) {
            if (*p == '\\' && p + 1 < end)
                p++;
            else if (*p == '"')
                quoted = false;
        } else if (*p == '"') {
            quoted = true;
        } else if (*p == ',') {
            break;
        }
    }
    const char *e = p;
    while (e > s && is_ows(e[-1]))
        e--;
    *el = sy_slice_of(s, (size_t)(e - s));
    *pp = p;
    return true;
}

/* authority = host [ ":" port ] (RFC 3986 §3.2) without userinfo (RFC 9110 §4.2.4: a
 * recipient treats userinfo in an http(s) URI as an error). Checks the characters, one port
 * of digits after the host, brackets only around an IP literal, and %XX escapes. */
static bool valid_authority(struct sy_slice a, bool need_host, bool need_port)
{
    const char *p = a.p, *end = a.p + a.len;
    if (p < end && *p == '[') {
        while (p < end && *p != ']') {
            if (!is(*p, C_AUTH) || (p > a.p && *p == '['))
                return false;
            p++;
        }
        if (p == end || p - a.p < 2)
            return false;
        p++;
    } else {
        while (p < end && *p != ':') {
            if (!is(*p, C_AUTH) || *p == '[' || *p == ']')
                return false;
            if (*p == '%') {
                if (end - p < 3 || !is(p[1], C_HEX) || !is(p[2], C_HEX))
                    return false;
                p += 2;
            }
            p++;
        }
    }
    if (need_host && p == a.p)
        return false;
    if (p == end)
        return !need_port;
    if (*p != ':')
        return false;
    p++;
    if (need_port && p == end)
        return false;
    for (; p < end; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* What the header fields say about framing and the connection, gathered in one pass. */
struct fields {
    bool has_cl;
    uint64_t cl;
    /* Transfer-Encoding lines form one list (RFC 9110 §5.3). The verdict waits for the end of
     * the head: a response that has no body ignores the field (RFC 9112 §6.3). */
    bool has_te, te_chunked, te_other;
    const char *te_bad; /* why the list is malformed (400), or NULL */
    unsigned n_host;
    struct sy_slice host;
    unsigned conn_flags;
    bool expect_continue, expect_other;
    bool has_upgrade;
    struct sy_slice upgrade;
};

/* Content-Length = 1*DIGIT (RFC 9110 §8.6). A list or repeated field is accepted only when
 * every value is the same; anything else could be read two ways. */
static int content_length(struct fields *f, struct sy_slice v, const char **why)
{
    const char *p = v.p, *end = v.p + v.len;
    struct sy_slice el;
    bool any = false;
    while (next_element(&p, end, &el)) {
        uint64_t n = 0;
        for (size_t i = 0; i < el.len; i++) {
            unsigned d = (unsigned)(unsigned char)el.p[i] - '0';
            if (d > 9) {
                *why = "content-length is not a decimal number";
                return -400;
            }
            if (n > ((uint64_t)INT64_MAX - d) / 10) {
                *why = "content-length is too large";
                return -400;
            }
            n = n * 10 + d;
        }
        if (f->has_cl && f->cl != n) {
            *why = "content-length values differ";
            return -400;
        }
        f->has_cl = true;
        f->cl = n;
        any = true;
    }
    if (!any) {
        *why = "empty content-length";
        return -400;
    }
    return 0;
}

/* transfer-coding = token *( OWS ";" OWS transfer-parameter ) (RFC 9112 §7). Only a final
 * chunked, applied once, is decoded (RFC 9112 §6.1, §6.3). */
static void transfer_encoding(struct fields *f, struct sy_slice v)
{
    const char *p = v.p, *end = v.p + v.len;
    struct sy_slice el;
    f->has_te = true;
    while (next_element(&p, end, &el)) {
        size_t n = 0;
        while (n < el.len && is(el.p[n], C_TCHAR))
            n++;
        size_t rest = n;
        while (rest < el.len && is_ows(el.p[rest]))
            rest++;
        bool params = rest < el.len;
        bool chunked = slice_is(sy_slice_of(el.p, n), "chunked", 7);
        const char *bad = NULL;
        if (n == 0 || (params && el.p[rest] != ';'))
            bad = "malformed transfer-encoding";
        else if (f->te_chunked && chunked)
            bad = "chunked applied more than once";
        else if (f->te_chunked)
            bad = "chunked is not the final transfer coding";
        else if (chunked && params)
            bad = "chunked takes no parameters";
        else if (chunked)
            f->te_chunked = true;
        else
            f->te_other = true;
        if (bad && !f->te_bad)
            f->te_bad = bad;
    }
}

/* Connection = #connection-option, each a token (RFC 9110 §7.6.1). */
static int connection(struct fields *f, struct sy_slice v, const char **why)
{
    const char *p = v.p, *end = v.p + v.len;
    struct sy_slice el;
    while (next_element(&p, end, &el)) {
        if (!is_token(el)) {
            *why = "malformed connection header";
            return -400;
        }
        if (slice_is(el, "close", 5))
            f->conn_flags |= SY_H1_CONN_CLOSE;
        else if (slice_is(el, "keep-alive", 10))
            f->conn_flags |= SY_H1_CONN_KEEP_ALIVE;
        else if (slice_is(el, "upgrade", 7))
            f->conn_flags |= SY_H1_CONN_UPGRADE;
    }
    return 0;
}

/* RFC 9110 §10.1.1: 100-continue is the only expectation defined; any other one may be
 * answered with 417, which we do once the rest of the head has been found valid. */
static void expect(struct fields *f, struct sy_slice v)
{
    const char *p = v.p, *end = v.p + v.len;
    struct sy_slice el;
    while (next_element(&p, end, &el)) {
        if (slice_is(el, "100-continue", 12))
            f->expect_continue = true;
        else
            f->expect_other = true;
    }
}

/* Acts on the fields that shape framing and routing; the rest are only stored. */
static int field_semantics(struct fields *f, const struct sy_header *h, bool request,
                           const char **why)
{
    const char *n = h->name.p;
    switch (h->name.len) {
    case 4:
        if (request && ieq(n, "host", 4)) {
            /* RFC 9112 §3.2: 400 for more than one Host line or an invalid Host value. */
            if (++f->n_host > 1) {
                *why = "more than one host header";
                return -400;
            }
            if (!valid_authority(h->value, false, false)) {
                *why = "invalid host header";
                return -400;
            }
            f->host = h->value;
        }
        break;
    case 6:
        if (request && ieq(n, "expect", 6))
            expect(f, h->value);
        break;
    case 7:
        if (ieq(n, "upgrade", 7) && !f->has_upgrade) {
            f->has_upgrade = true;
            f->upgrade = h->value;
        }
        break;
    case 10:
        if (ieq(n, "connection", 10))
            return connection(f, h->value, why);
        break;
    case 14:
        if (ieq(n, "content-length", 14))
            return content_length(f, h->value, why);
        break;
    case 17:
        if (ieq(n, "transfer-encoding", 17))
            transfer_encoding(f, h->value);
        break;
    }
    return 0;
}

/* field-line = field-name ":" OWS field-value OWS CRLF (RFC 9112 §5). Parses one line at
 * p[0..n), which must not start with CR or LF. Returns its length with the CRLF, 0 when it is
 * not complete in n bytes, or -400 with *why set. */
static ssize_t field_line(const char *p, size_t n, struct sy_header *h, const char **why)
{
    size_t i = 0;
    while (i < n && is(p[i], C_TCHAR))
        i++;
    if (i == n)
        return 0;
    if (p[i] != ':') {
        if (i == 0 && is_ows(p[0]))
            *why = "obs-fold or whitespace at the start of a field line"; /* RFC 9112 §5.2 */
        else if (is_ows(p[i]))
            *why = "whitespace between field name and colon"; /* RFC 9112 §5.1 */
        else if (p[i] == '\n' || p[i] == '\r')
            *why = "field line without a colon";
        else
            *why = "invalid character in field name";
        return -400;
    }
    if (i == 0) {
        *why = "empty field name";
        return -400;
    }
    h->name = sy_slice_of(p, i);
    i++;
    while (i < n && is_ows(p[i]))
        i++;
    size_t vs = i;
    i = field_span(p, i, n);
    if (i == n)
        return 0;
    /* RFC 9112 §2.2: a bare CR is an error; we also refuse a bare LF as a line end. */
    if (p[i] != '\r') {
        *why = p[i] == '\n' ? "bare LF in field line" : "control character in field value";
        return -400;
    }
    if (i + 1 == n)
        return 0;
    if (p[i + 1] != '\n') {
        *why = "bare CR in field line";
        return -400;
    }
    size_t ve = i;
    while (ve > vs && is_ows(p[ve - 1]))
        ve--;
    h->value = sy_slice_of(p + vs, ve - vs);
    return (ssize_t)(i + 2);
}

/* The field section at p[pos..end) through its empty line. Returns the offset after it, 0 when
 * more bytes are needed (pos > 0, so 0 is never a complete head), or a negative status. */
static ssize_t field_section(const char *p, size_t pos, size_t end, struct sy_header *hdrs,
                             size_t max, size_t *n_out, struct fields *f, bool request,
                             const char **why)
{
    size_t n = 0;
    for (;;) {
        *n_out = n;
        if (pos == end)
            return 0;
        if (p[pos] == '\r') {
            if (pos + 1 == end)
                return 0;
            if (p[pos + 1] != '\n') {
                *why = "bare CR in head";
                return -400;
            }
            return (ssize_t)(pos + 2);
        }
        if (p[pos] == '\n') {
            *why = "bare LF in head";
            return -400;
        }
        if (n == max) {
            *why = "too many header fields";
            return -431;
        }
        ssize_t r = field_line(p + pos, end - pos, &hdrs[n], why);
        if (r <= 0)
            return r;
        int rc = field_semantics(f, &hdrs[n], request, why);
        if (rc < 0)
            return rc;
        n++;
        pos += (size_t)r;
    }
}

/* "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3), at p[pos..stop). Returns the
 * offset after it, or 0 when cut by stop or malformed (then *bad is set). */
static size_t http_version(const char *p, size_t pos, size_t stop, bool *bad)
{
    static const char name[5] = {'H', 'T', 'T', 'P', '/'};
    for (size_t i = 0; i < 8; i++, pos++) {
        if (pos == stop)
            return 0;
        char c = p[pos];
        bool ok = i < 5 ? c == name[i] : i == 6 ? c == '.' : (c >= '0' && c <= '9');
        if (!ok) {
            *bad = true;
            return 0;
        }
    }
    return pos;
}

/* How far the start line at ls may be scanned: its content is at most max_line bytes, so its
 * CR is at ls + max_line at the latest. *cut says that reaching the returned bound without a
 * CR means the line is too long rather than unfinished. */
static size_t line_stop(size_t ls, size_t end, size_t max_line, bool *cut)
{
    *cut = end - ls > max_line;
    return *cut ? ls + max_line + 1 : end;
}

struct sy_slice sy_h1_origin_form(struct sy_slice target, bool *slash)
{
    *slash = false;
    if (target.len == 0 || target.p[0] == '/' || target.p[0] == '*')
        return target;
    const char *end = target.p + target.len;
    const char *p = memchr(target.p, ':', target.len);
    if (!p || end - p < 3)
        return sy_slice_of("/", 1);
    p += 3; /* "://" */
    while (p < end && *p != '/' && *p != '?')
        p++;
    if (p == end)
        return sy_slice_of("/", 1);
    *slash = *p == '?'; /* "http://a?x": the path is empty, and origin-form needs "/" */
    return sy_slice_of(p, (size_t)(end - p));
}

/* The request-target forms of RFC 9112 §3.2 and which methods may use them. Sets *authority
 * for the absolute and authority forms. */
static int target_form(struct sy_slice method, struct sy_slice t, struct sy_slice *authority,
                       const char **why)
{
    bool connect = method.len == 7 && memcmp(method.p, "CONNECT", 7) == 0;
    if (t.p[0] == '/') {
        if (!connect)
            return 0;
    } else if (t.len == 1 && t.p[0] == '*') {
        if (method.len == 7 && memcmp(method.p, "OPTIONS", 7) == 0)
            return 0;
    } else if (connect) {
        /* authority-form = uri-host ":" port (RFC 9112 §3.2.3) */
        if (valid_authority(t, true, true)) {
            *authority = t;
            return 0;
        }
    } else {
        /* absolute-form (RFC 9112 §3.2.2): only http and https, scheme case-insensitive. */
        size_t i = 0;
        if (t.len > 7 && ieq(t.p, "http://", 7))
            i = 7;
        else if (t.len > 8 && ieq(t.p, "https://", 8))
            i = 8;
        if (i) {
            size_t s = i;
            while (i < t.len && t.p[i] != '/' && t.p[i] != '?' && t.p[i] != '#')
                i++;
            struct sy_slice a = sy_slice_of(t.p + s, i - s);
            if (valid_authority(a, true, false)) {
                *authority = a;
                return 0;
            }
            *why = "invalid authority in request target";
            return -400;
        }
    }
    *why = "request target form not allowed for this method";
    return -400;
}

static ssize_t req_fail(struct sy_h1_request *req, ssize_t status, const char *why)
{
    req->why = why;
    return status;
}

/* A request head that has not ended: more bytes are wanted, unless the start line or the
 * head passed its limit. `line_cut` says the start line reached its bound without a CR. */
static ssize_t req_incomplete(struct sy_h1_request *req, bool line_cut, size_t len,
                              const struct sy_h1_limits *lim)
{
    if (line_cut)
        return req_fail(req, -414, "request line too long");
    if (len > lim->max_head)
        return req_fail(req, -431, "request head too large");
    return 0;
}

/* The request line, after any empty lines before it. Returns the offset after its CRLF, or
 * what sy_h1_parse_request returns for a head that is refused (< 0) or not complete (0). */
static ssize_t request_line(const char *p, size_t len, size_t end, const struct sy_h1_limits *lim,
                            struct sy_h1_request *req)
{
    size_t pos = 0;
    bool cut, bad = false;

    /* RFC 9112 §2.2: a server SHOULD ignore empty lines received before the request-line. */
    while (pos < end && p[pos] == '\r') {
        if (pos + 1 == end)
            return req_incomplete(req, false, len, lim);
        if (p[pos + 1] != '\n')
            return req_fail(req, -400, "bare CR before request line");
        pos += 2;
    }
    size_t ls = pos;
    size_t stop = line_stop(ls, end, lim->max_request_line, &cut);

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
    while (pos < stop && is(p[pos], C_TCHAR))
        pos++;
    if (pos == stop)
        return req_incomplete(req, cut, len, lim);
    if (p[pos] != ' ' || pos == ls)
        return req_fail(req, -400, "malformed request method");
    req->method = sy_slice_of(p + ls, pos - ls);
    size_t ts = ++pos;
    while (pos < stop && is(p[pos], C_TARGET))
        pos++;
    if (pos == stop)
        return req_incomplete(req, cut, len, lim);
    if (p[pos] != ' ' || pos == ts)
        return req_fail(req, -400, "malformed request target");
    req->target = sy_slice_of(p + ts, pos - ts);
    pos = http_version(p, pos + 1, stop, &bad);
    if (bad)
        return req_fail(req, -400, "malformed http version");
    if (pos == 0 || pos == stop)
        return req_incomplete(req, cut, len, lim);
    if (p[pos] != '\r')
        return req_fail(req, -400, "malformed request line end");
    if (pos + 1 == end)
        return req_incomplete(req, false, len, lim);
    if (p[pos + 1] != '\n')
        return req_fail(req, -400, "bare CR in request line");
    if (p[pos - 3] != '1' || p[pos - 1] > '1')
        return req_fail(req, -505, "http version not supported");
    req->minor = p[pos - 1] - '0';
    return (ssize_t)(pos + 2);
}

/* Framing (RFC 9112 §6.1, §6.3) and the connection's fate from the fields: 0, or a refusal
 * (< 0). Every case a second parser could read otherwise is 400. */
static ssize_t request_framing(struct sy_h1_request *req, const struct fields *f,
                               struct sy_slice authority)
{
    if (f->has_te) {
        if (req->minor == 0)
            return req_fail(req, -400, "transfer-encoding in an http/1.0 request");
        if (f->has_cl)
            return req_fail(req, -400, "both content-length and transfer-encoding");
        if (f->te_bad)
            return req_fail(req, -400, f->te_bad);
        if (!f->te_chunked && !f->te_other)
            return req_fail(req, -400, "empty transfer-encoding");
    }
    if (req->minor == 1 && f->n_host == 0)
        return req_fail(req, -400, "missing host header");
    /* RFC 9112 §6.1: a transfer coding the server does not understand is 501. A final coding
     * other than chunked (`gzip`) is that too: §6.3 asks for 400 there, but either way the
     * request is refused and the connection closed, and 501 tells the client why. */
    if (f->te_other)
        return req_fail(req, -501, "transfer coding other than chunked");
    if (f->expect_other)
        return req_fail(req, -417, "unsupported expectation");

    if (f->has_te) {
        req->framing = SY_H1_BODY_CHUNKED;
    } else if (f->has_cl) {
        req->framing = SY_H1_BODY_LENGTH;
        req->content_length = f->cl;
    }
    /* RFC 9112 §3.2.2: with an absolute-form target the Host field is ignored. */
    req->host = authority.p ? authority : f->host;
    req->conn_flags = f->conn_flags;
    req->keep_alive = !(f->conn_flags & SY_H1_CONN_CLOSE) &&
                      (req->minor == 1 || (f->conn_flags & SY_H1_CONN_KEEP_ALIVE));
    /* RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored. */
    req->expect_continue = f->expect_continue && req->minor == 1;
    req->upgrade = f->upgrade;
    return 0;
}

ssize_t sy_h1_parse_request(const char *p, size_t len, const struct sy_h1_limits *lim,
                            struct sy_h1_request *req)
{
    struct sy_header *hdrs = req->headers;
    memset(req, 0, sizeof(*req));
    req->headers = hdrs;
    size_t end = len < lim->max_head ? len : lim->max_head;

    ssize_t line = request_line(p, len, end, lim, req);
    if (line <= 0)
        return line;

    struct sy_slice authority = {NULL, 0};
    int rc = target_form(req->method, req->target, &authority, &req->why);
    if (rc < 0)
        return rc;

    struct fields f = {0};
    ssize_t n = field_section(p, (size_t)line, end, req->headers, lim->max_headers, &req->n_headers,
                              &f, true, &req->why);
    if (n < 0)
        return n;
    if (n == 0)
        return req_incomplete(req, false, len, lim);
    ssize_t refused = request_framing(req, &f, authority);
    return refused < 0 ? refused : n;
}

static ssize_t resp_fail(struct sy_h1_response *resp, const char *why)
{
    resp->why = why;
    return -502;
}

/* A response head that has not ended; as req_incomplete. */
static ssize_t resp_incomplete(struct sy_h1_response *resp, bool line_cut, size_t len,
                               const struct sy_h1_limits *lim)
{
    if (line_cut)
        return resp_fail(resp, "status line too long");
    if (len > lim->max_head)
        return resp_fail(resp, "response head too large");
    return 0;
}

/* The status line. Returns the offset after its CRLF, or what sy_h1_parse_response returns
 * for a head that is refused (< 0) or not complete (0). */
static ssize_t status_line(const char *p, size_t len, size_t end, const struct sy_h1_limits *lim,
                           struct sy_h1_response *resp)
{
    bool cut, bad = false;
    size_t stop = line_stop(0, end, lim->max_request_line, &cut);

    /* status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4) */
    size_t pos = http_version(p, 0, stop, &bad);
    if (bad)
        return resp_fail(resp, "malformed http version");
    if (pos == 0)
        return resp_incomplete(resp, cut, len, lim);
    if (p[5] != '1' || p[7] > '1')
        return resp_fail(resp, "http version not supported");
    resp->minor = p[7] - '0';
    /* SP 3DIGIT SP */
    for (size_t i = 0; i < 5; i++, pos++) {
        if (pos == stop)
            return resp_incomplete(resp, cut, len, lim);
        char c = p[pos];
        if ((i == 0 || i == 4) ? c != ' ' : (c < '0' || c > '9'))
            return resp_fail(resp, "malformed status line");
        if (i > 0 && i < 4)
            resp->status = resp->status * 10 + (c - '0');
    }
    /* RFC 9110 §15: status codes are 100..599. */
    if (resp->status < 100 || resp->status > 599)
        return resp_fail(resp, "status code out of range");
    size_t rs = pos;
    pos = field_span(p, pos, stop);
    if (pos == stop)
        return resp_incomplete(resp, cut, len, lim);
    if (p[pos] != '\r')
        return resp_fail(resp, "invalid character in reason phrase");
    if (pos + 1 == end)
        return resp_incomplete(resp, false, len, lim);
    if (p[pos + 1] != '\n')
        return resp_fail(resp, "bare CR in status line");
    resp->reason = sy_slice_of(p + rs, pos - rs);
    return (ssize_t)(pos + 2);
}

/* Framing from the status and the fields: 0, or -502 with resp->why. */
static ssize_t response_framing(struct sy_h1_response *resp, const struct fields *f,
                                bool head_request)
{
    resp->conn_flags = f->conn_flags;
    int s = resp->status;
    if (head_request || s < 200 || s == 204 || s == 304) {
        /* RFC 9112 §6.3 rule 1: no body, whatever the fields say. Content-Length was still
         * checked above: the proxy relays it in the answer to HEAD and 304. */
        resp->framing = SY_H1_BODY_NONE;
    } else if (f->has_te) {
        /* RFC 9112 §6.3 rule 3 lets Transfer-Encoding override Content-Length, but the
         * message may then have been read otherwise by someone else: refuse it. Any coding
         * but a lone chunked would reach the client undecoded. */
        if (resp->minor == 0)
            return resp_fail(resp, "transfer-encoding in an http/1.0 response");
        if (f->has_cl)
            return resp_fail(resp, "both content-length and transfer-encoding");
        if (f->te_bad)
            return resp_fail(resp, f->te_bad);
        if (!f->te_chunked || f->te_other)
            return resp_fail(resp, "transfer coding other than chunked");
        resp->framing = SY_H1_BODY_CHUNKED;
    } else if (f->has_cl) {
        resp->framing = SY_H1_BODY_LENGTH;
        resp->content_length = f->cl;
    } else {
        /* RFC 9112 §6.3 rule 8: the body runs until the connection closes. */
        resp->framing = SY_H1_BODY_CLOSE;
    }
    resp->keep_alive = resp->framing != SY_H1_BODY_CLOSE && !(f->conn_flags & SY_H1_CONN_CLOSE) &&
                       (resp->minor == 1 || (f->conn_flags & SY_H1_CONN_KEEP_ALIVE));
    return 0;
}

ssize_t sy_h1_parse_response(const char *p, size_t len, const struct sy_h1_limits *lim,
                             bool head_request, struct sy_h1_response *resp)
{
    struct sy_header *hdrs = resp->headers;
    memset(resp, 0, sizeof(*resp));
    resp->headers = hdrs;
    size_t end = len < lim->max_head ? len : lim->max_head;

    ssize_t line = status_line(p, len, end, lim, resp);
    if (line <= 0)
        return line;

    struct fields f = {0};
    const char *why = NULL;
    ssize_t n = field_section(p, (size_t)line, end, resp->headers, lim->max_headers,
                              &resp->n_headers, &f, false, &why);
    if (n < 0)
        return resp_fail(resp, why);
    if (n == 0)
        return resp_incomplete(resp, false, len, lim);
    ssize_t refused = response_framing(resp, &f, head_request);
    return refused < 0 ? refused : n;
}

ssize_t sy_h1_find_header(const struct sy_header *h, size_t n, const char *name)
{
    struct sy_slice s = sy_slice_of(name, strlen(name));
    for (size_t i = 0; i < n; i++)
        if (sy_slice_ieq_slice(h[i].name, s))
            return (ssize_t)i;
    return -1;
}

/* Chunked decoder states. */
enum {
    CS_SIZE = 0,  /* at a chunk-size line */
    CS_DATA,      /* inside chunk-data, `remaining` bytes left */
    CS_DATA_CRLF, /* at the CRLF after chunk-data */
    CS_TRAILER,   /* at a trailer field line or the final CRLF */
    CS_DONE,
    CS_FAILED,
};

/* Longest framing line (chunk-size line or trailer field line) with its CRLF. */
#define CHUNK_LINE_MAX 4096

static int chunk_fail(struct sy_h1_chunked *c, const char *why)
{
    c->state = CS_FAILED;
    c->why = why;
    return SY_ERR_INVALID;
}

/* A line is unfinished in p[0..len): wait, unless it is already longer than we accept. */
static int chunk_more(struct sy_h1_chunked *c, size_t len)
{
    if (len >= CHUNK_LINE_MAX)
        return chunk_fail(c, "chunk framing line too long");
    return SY_ERR_AGAIN;
}

static size_t skip_ows(const char *p, size_t i, size_t n)
{
    while (i < n && is_ows(p[i]))
        i++;
    return i;
}

static size_t skip_token(const char *p, size_t i, size_t n)
{
    while (i < n && is(p[i], C_TCHAR))
        i++;
    return i;
}

static unsigned hex_value(char c)
{
    if (c <= '9')
        return (unsigned)(c - '0');
    return (unsigned)((c | 0x20) - 'a' + 10);
}

/* chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1, §7.1.1), where
 * chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ). Extensions are
 * checked and dropped. Whitespace is accepted only where BWS is, so not before the CRLF. */
static int chunk_size_line(struct sy_h1_chunked *c, const char *p, size_t len, size_t *consumed)
{
    size_t n = len < CHUNK_LINE_MAX ? len : CHUNK_LINE_MAX;
    size_t i = 0, digits = 0;
    uint64_t v = 0;
    for (; i < n && is(p[i], C_HEX); i++) {
        /* 16 significant hex digits fill a uint64_t; leading zeros do not count. */
        if ((v != 0 || p[i] != '0') && ++digits > 16)
            return chunk_fail(c, "chunk size overflows");
        v = v << 4 | hex_value(p[i]);
    }
    if (i == 0)
        return chunk_fail(c, "chunk size is not hexadecimal");
    for (;;) {
        size_t j = skip_ows(p, i, n);
        if (j == n)
            return chunk_more(c, len);
        if (p[j] != ';') {
            if (j != i)
                return chunk_fail(c, "whitespace before the end of a chunk size line");
            break;
        }
        size_t k = skip_ows(p, j + 1, n);
        i = skip_token(p, k, n);
        if (i == n)
            return chunk_more(c, len);
        if (i == k)
            return chunk_fail(c, "chunk extension without a name");
        j = skip_ows(p, i, n);
        if (j == n)
            return chunk_more(c, len);
        if (p[j] != '=')
            continue;
        k = skip_ows(p, j + 1, n);
        if (k == n)
            return chunk_more(c, len);
        if (p[k] != '"') {
            i = skip_token(p, k, n);
            if (i == n)
                return chunk_more(c, len);
            if (i == k)
                return chunk_fail(c, "malformed chunk extension value");
            continue;
        }
        /* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4) */
        for (i = k + 1;; i++) {
            if (i == n)
                return chunk_more(c, len);
            if (p[i] == '"')
                break;
            if (p[i] == '\\') {
                if (++i == n)
                    return chunk_more(c, len);
                if (!is(p[i], C_FIELD))
                    return chunk_fail(c, "invalid quoted-pair in chunk extension");
            } else if (!is(p[i], C_QDTEXT)) {
                return chunk_fail(c, "invalid character in chunk extension");
            }
        }
        i++;
    }
    if (p[i] != '\r')
        return chunk_fail(c, p[i] == '\n' ? "bare LF in chunk size line"
                                          : "invalid character in chunk size line");
    if (i + 1 == n)
        return chunk_more(c, len);
    if (p[i + 1] != '\n')
        return chunk_fail(c, "bare CR in chunk size line");
    *consumed = i + 2;
    if (v == 0) {
        c->state = CS_TRAILER;
    } else {
        c->state = CS_DATA;
        c->remaining = v;
    }
    return 0;
}

/* trailer-section = *( field-line CRLF ), then CRLF (RFC 9112 §7.1.2). */
static int chunk_trailer(struct sy_h1_chunked *c, const char *p, size_t len,
                         enum sy_h1_chunk_event *event, size_t *consumed)
{
    size_t max = c->max_trailer_bytes ? c->max_trailer_bytes : 8192;
    if (p[0] == '\r') {
        if (len < 2)
            return SY_ERR_AGAIN;
        if (p[1] != '\n')
            return chunk_fail(c, "bare CR in trailer section");
        c->state = CS_DONE;
        *event = SY_H1_CHUNK_DONE;
        *consumed = 2;
        return 0;
    }
    if (p[0] == '\n')
        return chunk_fail(c, "bare LF in trailer section");
    size_t n = len < CHUNK_LINE_MAX ? len : CHUNK_LINE_MAX;
    const char *why = NULL;
    ssize_t r = field_line(p, n, &c->trailer, &why);
    if (r < 0)
        return chunk_fail(c, why);
    /* An unfinished line is at least n + 1 bytes long. */
    if ((r == 0 && c->trailer_bytes + n >= max) || c->trailer_bytes + (size_t)r > max)
        return chunk_fail(c, "trailer section too large");
    if (r == 0)
        return chunk_more(c, len);
    c->trailer_bytes += (size_t)r;
    *event = SY_H1_CHUNK_TRAILER;
    *consumed = (size_t)r;
    return 0;
}

void sy_h1_chunked_init(struct sy_h1_chunked *c, size_t max_trailer_bytes)
{
    memset(c, 0, sizeof(*c));
    c->state = CS_SIZE;
    c->max_trailer_bytes = max_trailer_bytes ? max_trailer_bytes : 8192;
}

int sy_h1_chunked_step(struct sy_h1_chunked *c, const char *p, size_t len,
                       enum sy_h1_chunk_event *event, size_t *consumed)
{
    if (c->state == CS_DONE)
        return chunk_fail(c, "chunked body already complete");
    if (c->state == CS_FAILED)
        return SY_ERR_INVALID;
    if (len == 0)
        return SY_ERR_AGAIN;
    switch (c->state) {
    case CS_SIZE:
        *event = SY_H1_CHUNK_FRAMING;
        return chunk_size_line(c, p, len, consumed);
    case CS_DATA: {
        size_t n = c->remaining < len ? (size_t)c->remaining : len;
        c->remaining -= n;
        if (c->remaining == 0)
            c->state = CS_DATA_CRLF;
        *event = SY_H1_CHUNK_DATA;
        *consumed = n;
        return 0;
    }
    case CS_DATA_CRLF:
        /* RFC 9112 §7.1: chunk-data is followed by exactly CRLF. */
        if (p[0] != '\r')
            return chunk_fail(c, "chunk data not followed by CRLF");
        if (len < 2)
            return SY_ERR_AGAIN;
        if (p[1] != '\n')
            return chunk_fail(c, "chunk data not followed by CRLF");
        c->state = CS_SIZE;
        *event = SY_H1_CHUNK_FRAMING;
        *consumed = 2;
        return 0;
    case CS_TRAILER:
        return chunk_trailer(c, p, len, event, consumed);
    }
    return chunk_fail(c, "corrupt decoder state");
}
