/* SPDX-License-Identifier: MIT */
/* The request head as a cluster gets it, and the response fields as a client gets them. The
 * hop-by-hop fields (and those the Connection field names) are dropped, the forwarding fields
 * (X-Forwarded-*, Forwarded, Via) are restated from what a trusted peer said and this hop, the
 * request id and the framing are written by us, and the head goes out either as HTTP/1.1 text
 * or as HTTP/2 fields into one sink (struct head_sink), so both upstream clients share one
 * rewrite. Nothing here allocates but the sink's offset array. */
#include <string.h>

#include "exchange_internal.h"

#define MAX_CONN_TOKENS 16

/* Field classes for rewriting a request head. */
enum field {
    F_FORWARD = 0,
    F_DROP, /* hop-by-hop, or restated by us */
    F_XFF,
    F_VIA,
    F_TE,
    F_FWD, /* Forwarded: kept (and appended to) only from a trusted peer */
    F_XFP, /* X-Forwarded-Proto: believed only from a trusted peer */
    F_RID, /* X-Request-Id: replaced by the exchange's request id (access.c) */
};

static bool is_hop_by_hop(struct sy_slice n)
{
    switch (n.len) {
    case 7:
        return sy_slice_ieq(n, "upgrade");
    case 10:
        return sy_slice_ieq(n, "connection") || sy_slice_ieq(n, "keep-alive");
    case 14:
        return sy_slice_ieq(n, "content-length");
    case 16:
        return sy_slice_ieq(n, "proxy-connection");
    case 17:
        return sy_slice_ieq(n, "transfer-encoding");
    }
    return false;
}

static enum field classify_request(struct sy_slice n)
{
    if (is_hop_by_hop(n))
        return F_DROP;
    switch (n.len) {
    case 2:
        if (sy_slice_ieq(n, "te"))
            return F_TE;
        break;
    case 3:
        if (sy_slice_ieq(n, "via"))
            return F_VIA;
        break;
    case 4:
        if (sy_slice_ieq(n, "host"))
            return F_DROP;
        break;
    case 6:
        if (sy_slice_ieq(n, "expect"))
            return F_DROP;
        break;
    case 9:
        if (sy_slice_ieq(n, "forwarded"))
            return F_FWD;
        break;
    case 12:
        if (sy_slice_ieq(n, "x-request-id"))
            return F_RID;
        break;
    case 15:
        if (sy_slice_ieq(n, "x-forwarded-for"))
            return F_XFF;
        break;
    case 16:
        if (sy_slice_ieq(n, "x-forwarded-host"))
            return F_DROP;
        break;
    case 17:
        if (sy_slice_ieq(n, "x-forwarded-proto"))
            return F_XFP;
        break;
    }
    /* Proxy-Authorization and the like are meant for a proxy, never forwarded. */
    if (n.len > 6 && sy_slice_ieq(sy_slice_of(n.p, 6), "proxy-"))
        return F_DROP;
    return F_FORWARD;
}

/* The field names listed in Connection (RFC 9110 §7.6.1): hop-by-hop as well. */
static size_t connection_tokens(const struct sy_header *h, size_t n, struct sy_slice *tok)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sy_slice_ieq(h[i].name, "connection"))
            continue;
        const char *p = h[i].value.p, *end = p + h[i].value.len;
        while (p < end && count < MAX_CONN_TOKENS) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > s)
                tok[count++] = sy_slice_of(s, (size_t)(p - s));
        }
    }
    return count;
}

static bool named_by(struct sy_slice name, const struct sy_slice *tok, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sy_slice_ieq_slice(name, tok[i]))
            return true;
    return false;
}

static bool has_token(struct sy_slice v, const char *token)
{
    const char *p = v.p, *end = v.p + v.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        if (sy_slice_ieq(sy_slice_of(s, (size_t)(p - s)), token))
            return true;
        while (p < end && *p != ',')
            p++;
    }
    return false;
}

static size_t sink_pos(const struct head_sink *s)
{
    return evbuffer_get_length(s->hw.out) + s->hw.len;
}

static void sink_name(struct head_sink *s, struct sy_slice name)
{
    if (!s->h2) {
        hw_slice(&s->hw, name);
        hw_add(&s->hw, ": ", 2);
        return;
    }
    sy_xgrow((void **)&s->o, &s->cap, s->n + 1, sizeof(*s->o));
    struct nv_off *o = &s->o[s->n];
    o->name = sink_pos(s);
    o->name_len = name.len;
    char low[128];
    for (size_t i = 0; i < name.len;) {
        size_t m = name.len - i < sizeof(low) ? name.len - i : sizeof(low);
        for (size_t j = 0; j < m; j++) {
            char c = name.p[i + j];
            low[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        hw_add(&s->hw, low, m);
        i += m;
    }
    o->value = sink_pos(s);
}

static void sink_end(struct head_sink *s)
{
    if (!s->h2) {
        hw_add(&s->hw, "\r\n", 2);
        return;
    }
    s->o[s->n].value_len = sink_pos(s) - s->o[s->n].value;
    s->n++;
}

static void sink_field(struct head_sink *s, struct sy_slice name, struct sy_slice value)
{
    sink_name(s, name);
    hw_slice(&s->hw, value);
    sink_end(s);
}

static void sink_field_str(struct head_sink *s, const char *name, const char *value)
{
    sink_field(s, sy_slice_of(name, strlen(name)), sy_slice_of(value, strlen(value)));
}

/* The values of every field of class `cls`, each followed by ", " (earlier hops' entries). */
static void add_earlier(struct head_sink *s, const struct req_head *req, enum field cls,
                        size_t count)
{
    for (size_t i = 0; count && i < req->n_headers; i++) {
        if (classify_request(req->headers[i].name) == cls) {
            hw_slice(&s->hw, req->headers[i].value);
            hw_add(&s->hw, ", ", 2);
        }
    }
}

/* The request line (HTTP/1.1) or the pseudo-header fields (HTTP/2). */
static void rewrite_start(const struct req_head *req, struct head_sink *s, bool tls_up)
{
    if (s->h2) {
        sink_field(s, sy_slice_of(":method", 7), req->method);
        sink_field_str(s, ":scheme", tls_up ? "https" : "http");
        if (req->authority.len)
            sink_field(s, sy_slice_of(":authority", 10), req->authority);
        sink_field(s, sy_slice_of(":path", 5), req->target);
    } else {
        hw_slice(&s->hw, req->method);
        hw_add(&s->hw, " ", 1);
        hw_slice(&s->hw, req->target);
        hw_add(&s->hw, " HTTP/1.1\r\n", 11);
        sink_field(s, sy_slice_of("host", 4), req->authority);
    }
}

/* What the client's fields say about the hops before us, counted while they are copied. */
struct hops {
    bool te_trailers;
    size_t n_xff, n_via, n_fwd;
    struct sy_slice xfp;
};

/* Copies the end-to-end fields (not those the Connection field names) and counts the
 * forwarding ones. What earlier hops wrote is believed only from a peer in trusted_proxies
 * (after the PROXY protocol): from anyone else, X-Forwarded-For and Forwarded could name any
 * address, so they are replaced by the peer alone. */
static void rewrite_fields(const struct req_head *req, const struct conn *dc, struct head_sink *s,
                           struct hops *hp)
{
    struct sy_slice tok[MAX_CONN_TOKENS];
    size_t n_tok = connection_tokens(req->headers, req->n_headers, tok);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sy_header *h = &req->headers[i];
        switch (classify_request(h->name)) {
        case F_FORWARD:
            if (n_tok && named_by(h->name, tok, n_tok))
                break;
            sink_field(s, h->name, h->value);
            break;
        case F_TE:
            hp->te_trailers |= has_token(h->value, "trailers");
            break;
        case F_XFF:
            hp->n_xff += dc->trusted;
            break;
        case F_FWD:
            hp->n_fwd += dc->trusted;
            break;
        case F_XFP:
            if (dc->trusted && !hp->xfp.len)
                hp->xfp = h->value;
            break;
        case F_VIA:
            hp->n_via++;
            break;
        case F_DROP:
        case F_RID:
            break;
        }
    }
}

/* X-Forwarded-For, Forwarded, X-Forwarded-Proto and -Host: earlier hops (when trusted), then
 * this one. */
static void rewrite_forwarded(const struct req_head *req, const struct conn *dc,
                              struct head_sink *s, const struct hops *hp)
{
    sink_name(s, sy_slice_of("x-forwarded-for", 15));
    add_earlier(s, req, F_XFF, hp->n_xff);
    hw_str(&s->hw, dc->peer);
    sink_end(s);
    if (hp->n_fwd) {
        /* RFC 7239 §4: appended as a node; an IPv6 node is quoted and bracketed. */
        bool v6 = strchr(dc->peer, ':') != NULL;
        sink_name(s, sy_slice_of("forwarded", 9));
        add_earlier(s, req, F_FWD, hp->n_fwd);
        hw_str(&s->hw, v6 ? "for=\"[" : "for=");
        hw_str(&s->hw, dc->peer);
        if (v6)
            hw_str(&s->hw, "]\"");
        sink_end(s);
    }
    if (hp->xfp.len)
        sink_field(s, sy_slice_of("x-forwarded-proto", 17), hp->xfp);
    else
        sink_field_str(s, "x-forwarded-proto", dc->tls ? "https" : "http");
    if (req->authority.len)
        sink_field(s, sy_slice_of("x-forwarded-host", 16), req->authority);
}

void exchange_rewrite_head(struct exchange *ex, const struct req_head *req, struct head_sink *s,
                           bool tls_up)
{
    const struct conn *dc = ex->down->conn;
    struct hops hp = {0};
    rewrite_start(req, s, tls_up);
    rewrite_fields(req, dc, s, &hp);
    if (hp.te_trailers)
        sink_field_str(s, "te", "trailers");
    if (req->upgrade.len && !s->h2) {
        /* RFC 9110 §7.8: the one hop-by-hop pair we pass on, so the cluster can switch. */
        sink_field_str(s, "connection", "upgrade");
        sink_field(s, sy_slice_of("upgrade", 7), req->upgrade);
    }
    if (req->framing == SY_H1_BODY_LENGTH) {
        sink_name(s, sy_slice_of("content-length", 14));
        hw_uint(&s->hw, req->content_length, 10);
        sink_end(s);
    } else if (req->framing == SY_H1_BODY_CHUNKED && !s->h2) {
        sink_field_str(s, "transfer-encoding", "chunked");
    }
    rewrite_forwarded(req, dc, s, &hp);
    /* The request id the access log writes: the client's when it was sane, else ours. */
    sink_field(s, sy_slice_of("x-request-id", 12), sy_slice_of(ex->acc.id, ex->acc.id_len));
    sink_name(s, sy_slice_of("via", 3));
    add_earlier(s, req, F_VIA, hp.n_via);
    hw_str(&s->hw, req->version);
    hw_str(&s->hw, " switchyard");
    sink_end(s);
    if (!s->h2)
        hw_add(&s->hw, "\r\n", 2);
    hw_flush(&s->hw);
    ex->head_lost = s->hw.failed;
}

const struct req_head *exchange_websocket_only(const struct req_head *req,
                                               struct req_head *stripped)
{
    if (!req->upgrade.len || sy_slice_ieq(req->upgrade, "websocket"))
        return req;
    *stripped = *req;
    stripped->upgrade =
        has_token(req->upgrade, "websocket") ? sy_slice_of("websocket", 9) : sy_slice_of(NULL, 0);
    return stripped;
}

size_t exchange_end_to_end(struct sy_header *h, size_t n)
{
    struct sy_slice tok[MAX_CONN_TOKENS];
    size_t n_tok = connection_tokens(h, n, tok);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        struct sy_slice name = h[i].name;
        if (is_hop_by_hop(name) || sy_slice_ieq(name, "te") ||
            (n_tok && named_by(name, tok, n_tok)))
            continue;
        h[kept++] = h[i];
    }
    return kept;
}
