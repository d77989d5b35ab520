/* SPDX-License-Identifier: MIT */
/* The fleet: section of the routing file (issue #17): the etcd members the fleet's overrides,
 * ramps and membership live in (fleet.etcd: endpoints, prefix, tls, timeout), this instance's
 * name, its lease and how long a change waits for the others. An endpoint is `host:port`,
 * `http://host:port` or `https://host:port`, its address resolved at load like a cluster's
 * (sy_parse_hostport); a `tls:` block makes every endpoint TLS, so a cleartext http:// beside
 * it is refused rather than quietly upgraded. The section is read at start only
 * (routing/state.c warns when a reload changes it). */
#include "switchyard/config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "config_internal.h"
#include "yaml_doc.h"

/* Longest endpoint between the scheme and the optional final '/': a host name, brackets and a
 * port. */
#define FLEET_ENDPOINT_MAX (MAX_HOST + 8)

void sy_config_fleet_defaults(struct sy_fleet_spec *f)
{
    memset(f, 0, sizeof(*f));
    f->tls.verify = true;
    f->timeout_ms = SY_FLEET_TIMEOUT_DEFAULT_MS;
    f->lease_ttl_ms = SY_FLEET_LEASE_DEFAULT_MS;
    f->wait_ms = SY_FLEET_WAIT_DEFAULT_MS;
}

void sy_cfg_fleet_dispose(struct sy_fleet_spec *f)
{
    for (size_t i = 0; i < f->n_endpoints; i++) {
        free(f->endpoints[i].address);
        free(f->endpoints[i].host);
    }
    free(f->endpoints);
    free(f->prefix);
    free(f->tls.ca);
    free(f->tls.sni);
    free(f->tls.cert);
    free(f->tls.key);
    free(f->instance);
}

/* A duration of `key` from `min_ms` to `max_ms` (whole seconds when `whole_seconds`) into
 * *out; false after reporting. The syntax is every other duration's (10s, 500ms, 2m, or a
 * plain number of seconds). */
static bool fleet_duration(struct ctx *c, const struct sy_ynode *v, const char *key,
                           const char *bounds, unsigned min_ms, unsigned max_ms, bool whole_seconds,
                           uint64_t *out)
{
    unsigned ms = 0;
    if (!sy_cfg_duration_ms(c, v, key, DURATION_EXAMPLES, NULL, &ms))
        return false;
    if (ms < min_ms || ms > max_ms) {
        sy_cfg_report(c, v, "%s must be %s, got %s", key, bounds, sy_cfg_show_value(v).s);
        return false;
    }
    /* An etcd lease's TTL is a number of seconds (LeaseGrantRequest.TTL): 2500ms would be
     * rounded one way or the other behind the operator's back. */
    if (whole_seconds && ms % 1000 != 0) {
        sy_cfg_report(c, v, "%s must be whole seconds (etcd leases are), got %s", key,
                      sy_cfg_show_value(v).s);
        return false;
    }
    *out = ms;
    return true;
}

/* One entry of fleet.etcd.endpoints into *e; false after reporting. `has_tls`: a
 * fleet.etcd.tls block is written, so every endpoint speaks TLS. */
static bool parse_endpoint(struct ctx *c, const struct sy_ynode *n, bool has_tls,
                           struct sy_fleet_endpoint *e)
{
    const char *s = sy_cfg_string_value(c, n, "a fleet.etcd endpoint");
    if (!s)
        return false;
    const char *hp = s, *why = NULL;
    bool https = false, http = false;
    const char *sep = strstr(s, "://");
    if (sep) {
        size_t slen = (size_t)(sep - s);
        https = slen == 5 && strncasecmp(s, "https", 5) == 0;
        http = slen == 4 && strncasecmp(s, "http", 4) == 0;
        if (!http && !https) {
            sy_cfg_report(c, n,
                          "bad fleet.etcd endpoint '%s': the scheme must be http:// or https:// "
                          "(or none: host:port)",
                          sy_cfg_show(n).s);
            return false;
        }
        hp = sep + 3;
    }
    if (http && has_tls) {
        sy_cfg_report(c, n,
                      "fleet.etcd endpoint '%s' is cleartext http:// but fleet.etcd.tls is "
                      "written: every endpoint then speaks TLS (write https:// or host:port)",
                      sy_cfg_show(n).s);
        return false;
    }
    /* The gateway's paths (/v3/...) are ours to add: a base path would be dropped silently. */
    size_t len = strlen(hp);
    const char *slash = strchr(hp, '/');
    if (slash && slash != hp + len - 1) {
        sy_cfg_report(c, n, "bad fleet.etcd endpoint '%s': no path is allowed after host:port",
                      sy_cfg_show(n).s);
        return false;
    }
    if (slash)
        len--;
    if (len > FLEET_ENDPOINT_MAX) {
        sy_cfg_report(c, n, "bad fleet.etcd endpoint '%s': longer than %d bytes", sy_cfg_show(n).s,
                      FLEET_ENDPOINT_MAX);
        return false;
    }
    char addr[FLEET_ENDPOINT_MAX + 1];
    memcpy(addr, hp, len);
    addr[len] = '\0';
    if (addr[0] == ':') {
        sy_cfg_report(c, n, "bad fleet.etcd endpoint '%s': an endpoint needs a host",
                      sy_cfg_show(n).s);
        return false;
    }
    if (sy_parse_hostport(addr, sy_cfg_resolve_names, &e->addr, &e->addrlen, &why) != SY_OK) {
        sy_cfg_report(c, n, "bad fleet.etcd endpoint '%s': %s", sy_cfg_show(n).s, why);
        return false;
    }
    /* sy_parse_hostport took it, so there is a ':' before the port and an IPv6 host is
     * bracketed: the host is what is left, without the brackets. */
    char *colon = strrchr(addr, ':');
    *colon = '\0';
    char *host = addr;
    if (host[0] == '[') {
        host++;
        host[strlen(host) - 1] = '\0';
    }
    e->address = sy_xstrdup(s);
    e->host = sy_xstrdup(host);
    e->tls = https || has_tls;
    e->mark = sy_cfg_mark_of(n);
    return true;
}

/* fleet.etcd.endpoints: 1..SY_FLEET_MAX_ENDPOINTS. The first https:// endpoint marks where
 * TLS was asked for when no tls: block is written. */
static void parse_endpoints(struct ctx *c, struct sy_fleet_spec *f, const struct sy_ynode *v,
                            bool has_tls)
{
    if (!sy_cfg_is_list(c, v, "fleet.etcd.endpoints"))
        return;
    if (!sy_cfg_has_items(v)) {
        sy_cfg_report(c, v, "fleet.etcd.endpoints must have at least one entry");
        return;
    }
    size_t cap = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        const struct sy_ynode *n = sy_cfg_node_at(c, *it);
        if (it - v->data.sequence.items.start == SY_FLEET_MAX_ENDPOINTS) {
            sy_cfg_report(c, n, "fleet.etcd.endpoints has more than %d entries",
                          SY_FLEET_MAX_ENDPOINTS);
            return;
        }
        struct sy_fleet_endpoint e;
        memset(&e, 0, sizeof(e));
        if (!parse_endpoint(c, n, has_tls, &e))
            continue;
        if (e.tls && !f->tls.on) {
            /* https:// without a tls: block: the system trust store, the host's name. */
            f->tls.on = true;
            f->tls.mark = e.mark;
        }
        sy_xgrow((void **)&f->endpoints, &cap, f->n_endpoints + 1, sizeof(e));
        f->endpoints[f->n_endpoints++] = e;
    }
}

/* fleet.etcd.prefix: the keys' common prefix, stored with its final '/'. Printable ASCII
 * without spaces, so that it reads the same in etcdctl, the logs and a JSON key. */
static void parse_prefix(struct ctx *c, struct sy_fleet_spec *f, const struct sy_ynode *v)
{
    const char *s = sy_cfg_string_value(c, v, "fleet.etcd.prefix");
    if (!s)
        return;
    size_t len = strlen(s);
    bool ok = s[0] == '/';
    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f;
    if (!ok) {
        sy_cfg_report(c, v,
                      "fleet.etcd.prefix must begin with '/' and be printable ASCII without "
                      "spaces, got %s",
                      sy_cfg_show_value(v).s);
        return;
    }
    bool add_slash = s[len - 1] != '/';
    if (len + add_slash > SY_FLEET_PREFIX_MAX) {
        sy_cfg_report(c, v,
                      "fleet.etcd.prefix must be at most %d bytes with its final '/', got %zu",
                      SY_FLEET_PREFIX_MAX, len + add_slash);
        return;
    }
    char *p = sy_xmalloc(len + 2);
    memcpy(p, s, len);
    p[len] = '/';
    p[len + add_slash] = '\0';
    free(f->prefix);
    f->prefix = p;
}

/* fleet.instance: this daemon's name among the fleet's members. */
static void parse_instance(struct ctx *c, struct sy_fleet_spec *f, const struct sy_ynode *v)
{
    const char *s = sy_cfg_string_value(c, v, "fleet.instance");
    if (!s)
        return;
    size_t len = strlen(s);
    bool ok = len <= SY_FLEET_INSTANCE_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = sy_cfg_is_name_char(s[i]);
    if (!ok) {
        sy_cfg_report(c, v,
                      "bad fleet.instance '%s': use A-Z, a-z, 0-9, '.', '_' and '-', at most %d "
                      "characters",
                      sy_cfg_show(v).s, SY_FLEET_INSTANCE_MAX);
        return;
    }
    f->instance = sy_xstrdup(s);
}

/* `fleet.etcd: {endpoints, prefix, tls, timeout}`. */
static void parse_etcd(struct ctx *c, struct sy_fleet_spec *f, const struct sy_ynode *v)
{
    if (!sy_cfg_is_mapping(c, v, "fleet.etcd"))
        return;
    const struct sy_ynode *endpoints = NULL, *prefix = NULL, *tls = NULL, *timeout = NULL;
    const struct sy_cfg_slot slots[] = {
        {"endpoints", &endpoints},
        {"prefix", &prefix},
        {"tls", &tls},
        {"timeout", &timeout},
    };
    sy_cfg_collect(c, v, slots, sizeof(slots) / sizeof(slots[0]), "fleet.etcd");
    /* tls: first, whatever the order in the file: it decides what an endpoint speaks. */
    if (tls)
        sy_cfg_parse_cluster_tls(c, &f->tls, tls, "fleet.etcd.tls");
    if (endpoints)
        parse_endpoints(c, f, endpoints, tls != NULL);
    else
        sy_cfg_report(c, v, "missing required key 'endpoints' in fleet.etcd");
    if (prefix)
        parse_prefix(c, f, prefix);
    if (timeout)
        fleet_duration(c, timeout, "fleet.etcd.timeout", "100ms..60s", SY_FLEET_TIMEOUT_MIN_MS,
                       SY_FLEET_TIMEOUT_MAX_MS, false, &f->timeout_ms);
}

/* `fleet: {etcd: {...}, instance, lease_ttl, wait}`. */
void sy_cfg_parse_fleet(struct ctx *c, const struct sy_ynode *v)
{
    struct sy_fleet_spec *f = &c->cfg->fleet;
    if (!sy_cfg_is_mapping(c, v, "fleet"))
        return;
    f->on = true;
    f->mark = sy_cfg_mark_of(v);
    const struct sy_ynode *etcd = NULL, *instance = NULL, *lease = NULL, *wait = NULL;
    const struct sy_cfg_slot slots[] = {
        {"etcd", &etcd},
        {"instance", &instance},
        {"lease_ttl", &lease},
        {"wait", &wait},
    };
    sy_cfg_collect(c, v, slots, sizeof(slots) / sizeof(slots[0]), "fleet");
    if (etcd)
        parse_etcd(c, f, etcd);
    else
        sy_cfg_report(c, v, "missing required key 'etcd' in fleet");
    if (!f->prefix)
        f->prefix = sy_xstrdup(SY_FLEET_PREFIX_DEFAULT);
    if (instance)
        parse_instance(c, f, instance);
    if (lease)
        fleet_duration(c, lease, "fleet.lease_ttl", "2s..300s", SY_FLEET_LEASE_MIN_MS,
                       SY_FLEET_LEASE_MAX_MS, true, &f->lease_ttl_ms);
    if (wait)
        fleet_duration(c, wait, "fleet.wait", "100ms..600s", SY_FLEET_WAIT_MIN_MS,
                       SY_FLEET_WAIT_MAX_MS, false, &f->wait_ms);
}
