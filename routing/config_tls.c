/* SPDX-License-Identifier: MIT */
/* The TLS keys of the routing file and the checks of the files they name: a listener's
 * certificate and key (listen[].tls) and a cluster's upstream TLS (clusters.*.tls: ca, client
 * certificate, server name, verify; fleet.etcd.tls has the same keys), each file checked
 * readable at load time so that a missing or unreadable file is refused with the line of its
 * key. */
#include "switchyard/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "config_internal.h"
#include "yaml_doc.h"

/* A readable file named by `v` (resolved against the config's directory), or NULL. */
static char *readable_file(struct ctx *c, const struct sy_ynode *v, const char *what)
{
    const char *s = sy_cfg_string_value(c, v, what);
    if (!s)
        return NULL;
    char *path = sy_cfg_file_path(c, s);
    if (access(path, R_OK) != 0) {
        sy_cfg_report(c, v, "cannot read %s '%s': %s", what, path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

/* `tls: {cert: PATH, key: PATH}`: both PEM files must be readable (their contents are
 * checked when the listener is made, and by -t). */
void sy_cfg_parse_listen_tls(struct ctx *c, const struct sy_ynode *v, struct sy_listen_spec *l)
{
    if (!sy_cfg_is_mapping(c, v, "tls"))
        return;
    const struct sy_ynode *cert = NULL, *key = NULL;
    const struct sy_cfg_slot slots[] = {{"cert", &cert}, {"key", &key}};
    sy_cfg_collect(c, v, slots, 2, "tls");
    if (!cert || !key) {
        sy_cfg_report(c, v, "tls needs both 'cert' and 'key'");
        return;
    }
    char *paths[2] = {readable_file(c, cert, "certificate"), readable_file(c, key, "key")};
    l->tls_cert = paths[0];
    l->tls_key = paths[1];
    l->tls_mark = sy_cfg_mark_of(v);
}

/* A cluster's `tls: {ca, sni, verify, cert, key}`, or fleet.etcd.tls (the files are loaded,
 * and checked as certificates, when the TLS contexts are made and by -t). */
void sy_cfg_parse_cluster_tls(struct ctx *c, struct sy_cluster_tls *t, const struct sy_ynode *v,
                              const char *section)
{
    t->on = true;
    t->mark = sy_cfg_mark_of(v);
    if (!sy_cfg_is_mapping(c, v, section))
        return;
    const struct sy_ynode *cert = NULL, *key = NULL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        struct sy_ynode *k, *pv;
        const char *name;
        if (!sy_cfg_map_entry(c, v, p, &k, &pv, &name))
            continue;
        if (strcmp(name, "ca") == 0) {
            free(t->ca);
            t->ca = readable_file(c, pv, "CA bundle");
        } else if (strcmp(name, "sni") == 0) {
            const char *s = sy_cfg_string_value(c, pv, "sni");
            if (!s)
                continue;
            const char *bad = s[0] == '[' ? "an IP address is not a server name"
                                          : sy_cfg_host_problem(s, strlen(s));
            if (bad || strchr(s, '*'))
                sy_cfg_report(c, pv, "bad sni '%s': %s", sy_cfg_show(pv).s,
                              bad ? bad : "a server name cannot have a wildcard");
            else {
                free(t->sni);
                t->sni = sy_xstrdup(s);
            }
        } else if (strcmp(name, "verify") == 0) {
            sy_cfg_bool(c, pv, "verify", &t->verify);
        } else if (strcmp(name, "cert") == 0) {
            cert = pv;
        } else if (strcmp(name, "key") == 0) {
            key = pv;
        } else {
            sy_cfg_report(c, k, "unknown key '%s' in %s", sy_cfg_show(k).s, section);
        }
    }
    if ((cert == NULL) != (key == NULL)) {
        sy_cfg_report(c, cert ? cert : key,
                      "a client certificate needs both 'cert' and 'key' in %s", section);
        return;
    }
    if (cert) {
        t->cert = readable_file(c, cert, "certificate");
        t->key = readable_file(c, key, "key");
    }
}
