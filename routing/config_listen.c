/* SPDX-License-Identifier: MIT */
/* The listen: section of the routing file and the address helpers the proxy shares with it:
 * host:port parsing (sy_parse_hostport), listeners with their PROXY protocol and trusted
 * CIDRs, and the lookups of a listener's spec and trusted list at accept time. */
#include "switchyard/config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config_internal.h"
#include "yaml_doc.h"

/* Splits "host:port", "[v6]:port" or ":port" into the host (NUL-terminated in `host`) and the
 * port's text. */
static int split_hostport(const char *s, char *host, size_t host_size, size_t *out_hostlen,
                          const char **out_port, bool *out_bracketed, const char **why)
{
    size_t hostlen;
    const char *port;
    bool bracketed = s[0] == '[';
    if (bracketed) {
        const char *end = strchr(s, ']');
        if (!end) {
            *why = "missing ']' after the IPv6 address";
            return SY_ERR_INVALID;
        }
        if (end[1] != ':') {
            *why = "missing ':port'";
            return SY_ERR_INVALID;
        }
        hostlen = (size_t)(end - s - 1);
        if (hostlen == 0 || hostlen >= host_size) {
            *why = "bad IPv6 address";
            return SY_ERR_INVALID;
        }
        memcpy(host, s + 1, hostlen);
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            *why = "missing ':port'";
            return SY_ERR_INVALID;
        }
        hostlen = (size_t)(colon - s);
        if (memchr(s, ':', hostlen)) {
            *why = "an IPv6 address must be written in brackets, like [::1]:80";
            return SY_ERR_INVALID;
        }
        if (hostlen >= host_size) {
            *why = "host name is too long";
            return SY_ERR_INVALID;
        }
        memcpy(host, s, hostlen);
        port = colon + 1;
    }
    host[hostlen] = '\0';
    *out_hostlen = hostlen;
    *out_port = port;
    *out_bracketed = bracketed;
    return SY_OK;
}

/* The port 1..65535, or 0 when `port` is anything else. */
static unsigned long parse_port(const char *port)
{
    unsigned long pnum = 0;
    size_t plen = strlen(port);
    for (size_t i = 0; i < plen && pnum <= 65535; i++) {
        if (port[i] < '0' || port[i] > '9') {
            pnum = 0;
            break;
        }
        pnum = pnum * 10 + (unsigned long)(port[i] - '0');
    }
    return plen == 0 || pnum > 65535 ? 0 : pnum;
}

/* Resolves host name `host` (its first address, IPv4 or IPv6) into `ss`, port not set. */
static int resolve_host(const char *host, size_t hostlen, struct sockaddr_storage *ss,
                        socklen_t *out_len, const char **why)
{
    for (size_t i = 0; i < hostlen; i++) {
        if (!sy_cfg_is_name_char(host[i])) {
            *why = "bad host name";
            return SY_ERR_INVALID;
        }
    }
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        if (rc == EAI_NONAME)
            *why = "host name not found";
        else if (rc == EAI_AGAIN)
            *why = "temporary failure resolving the host name";
        else
            *why = "cannot resolve the host name";
        return SY_ERR_INVALID;
    }
    if (res->ai_addrlen > sizeof(*ss) ||
        (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
        freeaddrinfo(res);
        *why = "host name resolves to an unsupported address family";
        return SY_ERR_INVALID;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *out_len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return SY_OK;
}

int sy_parse_hostport(const char *s, bool resolve, struct sockaddr_storage *addr,
                      socklen_t *addrlen, const char **why)
{
    const char *unused;
    if (!why)
        why = &unused;
    if (!s || !*s) {
        *why = "empty address";
        return SY_ERR_INVALID;
    }
    char host[MAX_HOST + 1];
    size_t hostlen;
    const char *port;
    bool bracketed;
    int rc = split_hostport(s, host, sizeof(host), &hostlen, &port, &bracketed, why);
    if (rc != SY_OK)
        return rc;
    unsigned long pnum = parse_port(port);
    if (pnum == 0) {
        *why = "port must be a number 1..65535";
        return SY_ERR_INVALID;
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (bracketed || hostlen == 0) {
        /* ":port" is every address: the IPv6 wildcard, which the listener opens dual-stack. */
        if (bracketed && inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            *why = "bad IPv6 address";
            return SY_ERR_INVALID;
        }
        if (!bracketed)
            a6->sin6_addr = in6addr_any;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)pnum);
        len = sizeof(*a6);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)pnum);
        len = sizeof(*a4);
    } else if (sy_cfg_is_digits_and_dots(host)) {
        *why = "bad IPv4 address";
        return SY_ERR_INVALID;
    } else if (!resolve) {
        *why = "host must be a numeric IPv4 address or a bracketed IPv6 address";
        return SY_ERR_INVALID;
    } else {
        rc = resolve_host(host, hostlen, &ss, &len, why);
        if (rc != SY_OK)
            return rc;
        if (ss.ss_family == AF_INET)
            a4->sin_port = htons((uint16_t)pnum);
        else
            a6->sin6_port = htons((uint16_t)pnum);
    }
    *addr = ss;
    *addrlen = len;
    return SY_OK;
}

/* `proxy_protocol: v1 | v2 | any` of a listener. */
static void parse_listen_pp(struct ctx *c, const struct sy_ynode *v, struct sy_listen_spec *l)
{
    const char *s = sy_cfg_is_scalar(v) ? sy_cfg_text(v) : NULL;
    if (s && strcmp(s, "v1") == 0)
        l->proxy_protocol = SY_PP_V1;
    else if (s && strcmp(s, "v2") == 0)
        l->proxy_protocol = SY_PP_V2;
    else if (s && strcmp(s, "any") == 0)
        l->proxy_protocol = SY_PP_ANY;
    else
        sy_cfg_report(c, v, "proxy_protocol must be v1, v2 or any (leave it out for none), got %s",
                      sy_cfg_show_value(v).s);
}

/* One `trusted_proxies` entry: "ADDR/BITS" or "ADDR" (a single host). The bits past the
 * prefix must be zero: "10.0.0.1/8" is more likely a typo than a wish. */
static bool parse_cidr(struct ctx *c, const struct sy_ynode *v, struct sy_cidr *out)
{
    const char *s = sy_cfg_string_value(c, v, "trusted_proxies entry");
    if (!s)
        return false;
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof(buf)) {
        sy_cfg_report(c, v, "bad trusted_proxies entry '%s': use an address or ADDRESS/BITS",
                      sy_cfg_show(v).s);
        return false;
    }
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->bits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = 128;
    } else {
        sy_cfg_report(c, v, "bad trusted_proxies entry '%s': use an address or ADDRESS/BITS",
                      sy_cfg_show(v).s);
        return false;
    }
    if (slash) {
        unsigned max = out->bits, bits = 0;
        const char *d = slash + 1;
        bool ok = *d != '\0' && strlen(d) <= 3;
        for (; ok && *d; d++) {
            ok = *d >= '0' && *d <= '9';
            bits = bits * 10 + (unsigned)(*d - '0');
        }
        if (!ok || bits > max) {
            sy_cfg_report(c, v, "bad prefix length in trusted_proxies entry '%s': 0 to %u",
                          sy_cfg_show(v).s, max);
            return false;
        }
        out->bits = bits;
    }
    size_t len = out->family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < len; i++) {
        unsigned keep = out->bits >= (i + 1) * 8 ? 8 : out->bits > i * 8 ? out->bits - i * 8 : 0;
        unsigned char mask = (unsigned char)(0xFF00u >> keep);
        if (out->addr[i] & ~mask) {
            sy_cfg_report(c, v, "trusted_proxies entry '%s' has bits set past its /%u prefix",
                          sy_cfg_show(v).s, out->bits);
            return false;
        }
    }
    return true;
}

void sy_cfg_parse_trusted(struct ctx *c, const struct sy_ynode *v, struct sy_cidr **out,
                          size_t *n_out)
{
    if (!sy_cfg_is_list(c, v, "trusted_proxies"))
        return;
    size_t n = 0, cap = 0;
    struct sy_cidr *list = NULL;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        struct sy_cidr one;
        if (!parse_cidr(c, sy_cfg_node_at(c, *it), &one))
            continue;
        sy_xgrow((void **)&list, &cap, n + 1, sizeof(*list));
        list[n++] = one;
    }
    free(*out);
    *out = list;
    *n_out = n;
}

static void parse_listen_entry(struct ctx *c, const struct sy_ynode *item)
{
    if (!sy_cfg_is_mapping(c, item, "listen entry"))
        return;
    const struct sy_ynode *addr = NULL, *tls = NULL, *pp = NULL, *trusted = NULL;
    const struct sy_cfg_slot slots[] = {
        {"address", &addr},
        {"tls", &tls},
        {"proxy_protocol", &pp},
        {"trusted_proxies", &trusted},
    };
    sy_cfg_collect(c, item, slots, sizeof(slots) / sizeof(slots[0]), "listen entry");
    if (!addr) {
        sy_cfg_report(c, item, "missing required key 'address' in listen entry");
        return;
    }
    const char *s = sy_cfg_string_value(c, addr, "address");
    if (!s)
        return;
    struct sy_listen_spec l;
    memset(&l, 0, sizeof(l));
    const char *why;
    if (sy_parse_hostport(s, false, &l.addr, &l.addrlen, &why) != SY_OK) {
        sy_cfg_report(c, addr, "bad listen address '%s': %s", sy_cfg_show(addr).s, why);
        return;
    }
    struct sy_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->n_listens; i++) {
        if (cfg->listens[i].addrlen == l.addrlen &&
            memcmp(&cfg->listens[i].addr, &l.addr, l.addrlen) == 0) {
            sy_cfg_report(c, addr, "duplicate listen address '%s' (first at line %d)",
                          sy_cfg_show(addr).s, cfg->listens[i].mark.line);
            return;
        }
    }
    l.address = sy_xstrdup(s);
    l.mark = sy_cfg_mark_of(addr);
    if (tls)
        sy_cfg_parse_listen_tls(c, tls, &l);
    if (pp)
        parse_listen_pp(c, pp, &l);
    if (trusted) {
        l.has_trusted = true;
        sy_cfg_parse_trusted(c, trusted, &l.trusted, &l.n_trusted);
    }
    sy_xgrow((void **)&cfg->listens, &c->cap_listens, cfg->n_listens + 1, sizeof(l));
    cfg->listens[cfg->n_listens++] = l;
}

void sy_cfg_parse_listens(struct ctx *c, const struct sy_ynode *v)
{
    if (!sy_cfg_is_list(c, v, "listen"))
        return;
    if (!sy_cfg_has_items(v)) {
        sy_cfg_report(c, v, "listen must have at least one entry");
        return;
    }
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++)
        parse_listen_entry(c, sy_cfg_node_at(c, *it));
}

bool sy_cidr_match(const struct sy_cidr *v, size_t n, const struct sockaddr *sa)
{
    const unsigned char *a4 = NULL, *a6 = NULL;
    if (sa->sa_family == AF_INET) {
        a4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        a6 = (const unsigned char *)in6;
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
        if (IN6_IS_ADDR_V4MAPPED(in6))
            a4 = a6 + 12;
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *a = v[i].family == AF_INET ? a4 : a6;
        if (!a)
            continue;
        unsigned bits = v[i].bits, full = bits / 8, rest = bits % 8;
        if (memcmp(a, v[i].addr, full) != 0)
            continue;
        if (rest) {
            unsigned char mask = (unsigned char)(0xFF00u >> rest);
            if ((a[full] & mask) != v[i].addr[full])
                continue;
        }
        return true;
    }
    return false;
}

const struct sy_listen_spec *sy_config_listen(const struct sy_config *cfg,
                                              const struct sockaddr_storage *addr,
                                              socklen_t addrlen)
{
    for (size_t i = 0; i < cfg->n_listens; i++)
        if (cfg->listens[i].addrlen == addrlen && memcmp(&cfg->listens[i].addr, addr, addrlen) == 0)
            return &cfg->listens[i];
    return NULL;
}

const struct sy_cidr *sy_config_trusted(const struct sy_config *cfg, const struct sy_listen_spec *l,
                                        size_t *n)
{
    if (l && l->has_trusted) {
        *n = l->n_trusted;
        return l->trusted;
    }
    *n = cfg->n_trusted;
    return cfg->trusted;
}
