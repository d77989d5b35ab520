/* SPDX-License-Identifier: MIT */
/* The PROXY protocol header parser (versions 1 and 2). It works on whatever prefix of the
 * connection has arrived and says DONE, NEED_MORE or ERROR; NEED_MORE is only said while every
 * byte seen can still be part of a valid header, so the caller may consume them all and never
 * eats a byte of the client's own stream. Lengths are checked before each read: a v2 header
 * whose length runs past the data is NEED_MORE (up to the 16-bit maximum), a v2 address block
 * shorter than its family needs or a TLV that overruns the block is an ERROR. */
#include "switchyard/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static enum sy_pp_status fail(struct sy_pp_result *r, const char *why)
{
    r->why = why;
    return SY_PP_ERROR;
}

static void set_in4(struct sockaddr_storage *ss, socklen_t *len, const unsigned char *a,
                    const unsigned char *port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, a, 4);
    memcpy(&sin->sin_port, port, 2); /* both in network order */
    *len = sizeof(*sin);
}

static void set_in6(struct sockaddr_storage *ss, socklen_t *len, const unsigned char *a,
                    const unsigned char *port)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, a, 16);
    memcpy(&sin6->sin6_port, port, 2);
    *len = sizeof(*sin6);
}

/* Spec §2.2: after the 16 fixed bytes, the addresses for the family, then TLVs
 * (type, 16-bit length, value) to the end of the block. */
static enum sy_pp_status parse_v2(const unsigned char *p, size_t len, struct sy_pp_result *r)
{
    size_t sig = len < 12 ? len : 12;
    if (memcmp(p, v2_sig, sig) != 0)
        return fail(r, "not a PROXY protocol v2 signature");
    r->version = 2;
    if (len < 16)
        return SY_PP_NEED_MORE;
    unsigned ver = p[12] >> 4, cmd = p[12] & 0x0F;
    unsigned fam = p[13] >> 4, proto = p[13] & 0x0F;
    size_t body = ((size_t)p[14] << 8) | p[15];
    if (ver != 2)
        return fail(r, "PROXY v2: unknown version");
    if (cmd > 1)
        return fail(r, "PROXY v2: unknown command");
    if (fam > 3 || proto > 2)
        return fail(r, "PROXY v2: unknown address family or transport");
    static const size_t addr_len[4] = {0, 12, 36, 216};
    bool proxy = cmd == 1;
    if (proxy && body < addr_len[fam])
        return fail(r, "PROXY v2: address block shorter than its family needs");
    if (proxy && fam != 0 && proto != 1)
        return fail(r, "PROXY v2: not a stream transport");
    if (len < 16 + body) {
        r->need = 16 + body;
        return SY_PP_NEED_MORE;
    }
    r->consumed = 16 + body;
    if (!proxy) {
        /* LOCAL: the balancer speaking for itself; whatever the block holds is ignored. */
        r->local = true;
        return SY_PP_DONE;
    }
    const unsigned char *a = p + 16;
    if (fam == 1) {
        set_in4(&r->src, &r->src_len, a, a + 8);
        set_in4(&r->dst, &r->dst_len, a + 4, a + 10);
        r->has_addr = true;
    } else if (fam == 2) {
        set_in6(&r->src, &r->src_len, a, a + 32);
        set_in6(&r->dst, &r->dst_len, a + 16, a + 34);
        r->has_addr = true;
    }
    /* TLVs: skipped, but each must fit in the block. */
    size_t off = addr_len[fam];
    while (off < body) {
        if (body - off < 3)
            return fail(r, "PROXY v2: truncated TLV");
        size_t tlen = ((size_t)a[off + 1] << 8) | a[off + 2];
        if (tlen > body - off - 3)
            return fail(r, "PROXY v2: TLV runs past the header");
        off += 3 + tlen;
    }
    return SY_PP_DONE;
}

/* A decimal port, 0..65535, without a leading zero (spec §2.1). */
static bool parse_port(const char *s, size_t n, unsigned char out[2])
{
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    out[0] = (unsigned char)(v >> 8);
    out[1] = (unsigned char)(v & 0xFF);
    return true;
}

static bool parse_ip(const char *s, size_t n, int af, unsigned char out[16])
{
    char tmp[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(af, tmp, out) == 1;
}

/* Spec §2.1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...\r\n", at most
 * 107 bytes with the CRLF. */
static enum sy_pp_status parse_v1(const unsigned char *p, size_t len, struct sy_pp_result *r)
{
    static const char prefix[] = "PROXY ";
    size_t pre = len < 6 ? len : 6;
    if (memcmp(p, prefix, pre) != 0)
        return fail(r, "not a PROXY protocol v1 line");
    r->version = 1;
    size_t scan = len < SY_PP_V1_MAX ? len : SY_PP_V1_MAX;
    size_t eol = 0;
    bool found = false;
    for (size_t i = 0; i < scan; i++) {
        if (p[i] == '\r') {
            if (i + 1 == len)
                break; /* the LF may follow */
            if (p[i + 1] != '\n')
                return fail(r, "PROXY v1: CR without LF");
            eol = i;
            found = true;
            break;
        }
        if (p[i] == '\n' || p[i] == '\0')
            return fail(r, "PROXY v1: bad byte in the line");
    }
    if (!found) {
        if (len >= SY_PP_V1_MAX)
            return fail(r, "PROXY v1: line over 107 bytes");
        return SY_PP_NEED_MORE;
    }
    if (eol + 2 > SY_PP_V1_MAX)
        return fail(r, "PROXY v1: line over 107 bytes");
    const char *s = (const char *)p + 6, *end = (const char *)p + eol;
    r->consumed = eol + 2;
    if ((size_t)(end - s) >= 7 && memcmp(s, "UNKNOWN", 7) == 0) {
        /* The balancer does not know the addresses: the peer's stand. */
        return SY_PP_DONE;
    }
    int af;
    if ((size_t)(end - s) >= 5 && memcmp(s, "TCP4 ", 5) == 0)
        af = AF_INET;
    else if ((size_t)(end - s) >= 5 && memcmp(s, "TCP6 ", 5) == 0)
        af = AF_INET6;
    else
        return fail(r, "PROXY v1: unknown protocol");
    s += 5;
    /* Four fields separated by single spaces. */
    const char *f[4];
    size_t fl[4];
    for (int i = 0; i < 4; i++) {
        const char *sp = s;
        while (sp < end && *sp != ' ')
            sp++;
        f[i] = s;
        fl[i] = (size_t)(sp - s);
        if (i < 3) {
            if (sp == end)
                return fail(r, "PROXY v1: missing field");
            s = sp + 1;
        } else if (sp != end) {
            return fail(r, "PROXY v1: extra field");
        }
    }
    unsigned char src[16], dst[16], sport[2], dport[2];
    if (!parse_ip(f[0], fl[0], af, src) || !parse_ip(f[1], fl[1], af, dst))
        return fail(r, "PROXY v1: bad address for the protocol");
    if (!parse_port(f[2], fl[2], sport) || !parse_port(f[3], fl[3], dport))
        return fail(r, "PROXY v1: bad port");
    if (af == AF_INET) {
        set_in4(&r->src, &r->src_len, src, sport);
        set_in4(&r->dst, &r->dst_len, dst, dport);
    } else {
        set_in6(&r->src, &r->src_len, src, sport);
        set_in6(&r->dst, &r->dst_len, dst, dport);
    }
    r->has_addr = true;
    return SY_PP_DONE;
}

enum sy_pp_status sy_pp_parse(const void *data, size_t len, enum sy_pp_accept accept,
                              struct sy_pp_result *r)
{
    const unsigned char *p = data;
    memset(r, 0, sizeof(*r));
    if (len == 0)
        return SY_PP_NEED_MORE;
    bool v1 = accept == SY_PP_V1 || accept == SY_PP_ANY;
    bool v2 = accept == SY_PP_V2 || accept == SY_PP_ANY;
    if (p[0] == 'P' && v1)
        return parse_v1(p, len, r);
    if (p[0] == v2_sig[0] && v2)
        return parse_v2(p, len, r);
    if (accept == SY_PP_OFF)
        return fail(r, "PROXY protocol is off");
    return fail(r, v1 && v2 ? "no PROXY protocol header"
                   : v1     ? "no PROXY protocol v1 header"
                            : "no PROXY protocol v2 header");
}

/* An address and port as 16 bytes of IPv6 (IPv4 mapped) or 4 of IPv4. */
static bool addr_bytes(const struct sockaddr *sa, bool v6, unsigned char out[16],
                       unsigned char port[2])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(port, &in->sin_port, 2);
        if (!v6) {
            memcpy(out, &in->sin_addr, 4);
            return true;
        }
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        memcpy(out, mapped, 12);
        memcpy(out + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6 && v6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(port, &in6->sin6_port, 2);
        memcpy(out, &in6->sin6_addr, 16);
        return true;
    }
    return false;
}

size_t sy_pp_v2_write(unsigned char *out, const struct sockaddr *src, const struct sockaddr *dst)
{
    memcpy(out, v2_sig, 12);
    out[12] = 0x21; /* version 2, PROXY */
    bool known = (src->sa_family == AF_INET || src->sa_family == AF_INET6) &&
                 (dst->sa_family == AF_INET || dst->sa_family == AF_INET6);
    bool v6 = src->sa_family == AF_INET6 || dst->sa_family == AF_INET6;
    unsigned char a[16], b[16], pa[2], pb[2];
    if (!known || !addr_bytes(src, v6, a, pa) || !addr_bytes(dst, v6, b, pb)) {
        out[13] = 0x00; /* UNSPEC */
        out[14] = out[15] = 0;
        return 16;
    }
    size_t alen = v6 ? 16 : 4, body = 2 * alen + 4;
    out[13] = v6 ? 0x21 : 0x11; /* INET6 or INET, STREAM */
    out[14] = 0;
    out[15] = (unsigned char)body;
    memcpy(out + 16, a, alen);
    memcpy(out + 16 + alen, b, alen);
    memcpy(out + 16 + 2 * alen, pa, 2);
    memcpy(out + 18 + 2 * alen, pb, 2);
    return 16 + body;
}
