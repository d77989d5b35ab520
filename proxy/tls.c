/* SPDX-License-Identifier: MIT */
/* TLS for the listeners (OpenSSL 3 through libevent's bufferevent_openssl): TLS 1.2 and 1.3
 * only, forward-secret AEAD suites for 1.2, ALPN with h2 preferred over http/1.1. The
 * handshake runs under the client_header deadline (a total time from the accept, which a
 * ClientHello trickled a byte at a time does not extend); when it completes the connection
 * goes to the codec ALPN chose. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

#include "proxy_internal.h"

/* ALPN wire format: length-prefixed protocol names, server preference first. */
static const unsigned char alpn_protos[] = "\x02h2\x08http/1.1";

static _Thread_local char tls_why[256];

static const char *openssl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char detail[200] = "unknown error";
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    snprintf(tls_why, sizeof(tls_why), "%s: %s", what, detail);
    return tls_why;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, alpn_protos, sizeof(alpn_protos) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no overlap: go on without ALPN (HTTP/1.1) */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_server_ctx_new(const char *cert, const char *key, const char **why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *why = openssl_error("cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* RFC 9113 §9.2.2 forbids the rest for h2 over TLS 1.2 anyway. */
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
        *why = openssl_error("cannot set the cipher list");
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        *why = openssl_error(cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        *why = openssl_error(key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *why = openssl_error("the key does not match the certificate");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    return ctx;
}

SSL_CTX *tls_client_ctx_new(const struct sy_cluster_tls *t, bool h2, const char **why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        *why = openssl_error("cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (t->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = t->ca ? SSL_CTX_load_verify_locations(ctx, t->ca, NULL)
                       : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            *why = openssl_error(t->ca ? t->ca : "the system trust store");
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    if (t->cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
            *why = openssl_error(t->cert);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
            *why = openssl_error(t->key);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            *why = openssl_error("the client key does not match its certificate");
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    /* Wire format, as for the server: the cluster must pick what we offer. */
    static const unsigned char alpn_h2[] = "\x02h2", alpn_h1[] = "\x08http/1.1";
    if (h2)
        SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2) - 1);
    else
        SSL_CTX_set_alpn_protos(ctx, alpn_h1, sizeof(alpn_h1) - 1);
    return ctx;
}

/* A private key that others on the machine can read is worth a word at every load (once it
 * loaded: a broken one has its own error), not a refusal: Kubernetes mounts Secrets 0644
 * unless told otherwise, and the file may be ours to read only through its group on purpose. */
static void warn_readable_key(const char *kind, const char *name, const char *key)
{
    struct stat st;
    if (!key || stat(key, &st) == -1)
        return; /* loading it reports what is wrong */
    if (st.st_mode & (S_IRGRP | S_IROTH))
        sy_log(SY_LOG_WARN, "tls", "%s %s: private key %s is readable by %s (mode %04o)", kind,
               name, key, (st.st_mode & S_IROTH) ? "others" : "its group",
               (unsigned)(st.st_mode & 07777));
}

int sy_proxy_check(const struct sy_config *cfg, const char *file, struct sy_diags *d)
{
    int rc = 0;
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const struct sy_cluster_spec *cl = &cfg->clusters[i];
        if (!cl->tls.on)
            continue;
        const char *why = NULL;
        SSL_CTX *ctx = tls_client_ctx_new(&cl->tls, cl->protocol == SY_PROTO_H2, &why);
        if (!ctx) {
            sy_diags_add(d, file, cl->tls.mark.line, cl->tls.mark.col, "cluster %s: %s", cl->name,
                         why);
            rc = SY_ERR_INVALID;
        } else {
            warn_readable_key("cluster", cl->name, cl->tls.key);
        }
        SSL_CTX_free(ctx);
    }
    for (size_t i = 0; i < cfg->n_listens; i++) {
        const struct sy_listen_spec *l = &cfg->listens[i];
        if (!l->tls_cert)
            continue;
        const char *why = NULL;
        SSL_CTX *ctx = tls_server_ctx_new(l->tls_cert, l->tls_key, &why);
        if (!ctx) {
            sy_diags_add(d, file, l->tls_mark.line, l->tls_mark.col, "listener %s: %s", l->address,
                         why);
            rc = SY_ERR_INVALID;
        } else {
            warn_readable_key("listener", l->address, l->tls_key);
        }
        SSL_CTX_free(ctx);
    }
    return rc;
}

/* A connection between accept and the end of its handshake. */
struct handshake {
    struct conn conn; /* first */
    struct bufferevent *bev;
    struct event *deadline; /* client_header from the accept */
    int salen;
};

static void handshake_free(struct conn *c)
{
    struct handshake *hs = (struct handshake *)c;
    event_free(hs->deadline);
    bufferevent_free(hs->bev);
    worker_conn_remove(c->w, c);
    free(hs);
}

static void handshake_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct handshake *hs = arg;
    if (!(what & BEV_EVENT_CONNECTED)) {
        handshake_free(&hs->conn);
        return;
    }
    struct sy_worker *w = hs->conn.w;
    worker_conn_remove(w, &hs->conn);
    const unsigned char *proto = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(bev), &proto, &len);
    bool h2 = len == 2 && memcmp(proto, "h2", 2) == 0;
    event_free(hs->deadline);
    if (h2)
        h2_accept(w, bev, (const struct sockaddr *)&hs->conn.addr, hs->salen, true);
    else
        h1_accept(w, bev, (const struct sockaddr *)&hs->conn.addr, hs->salen, true);
    free(hs);
}

static void handshake_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    handshake_free(arg);
}

void tls_accept(struct sy_worker *w, SSL_CTX *ctx, int fd, const struct sockaddr *sa, int salen)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        evutil_closesocket(fd);
        return;
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    struct handshake *hs = sy_xcalloc(1, sizeof(*hs));
    hs->bev = bev;
    hs->salen = salen;
    hs->conn.close_idle = handshake_free;
    hs->conn.free = handshake_free;
    worker_conn_init(w, &hs->conn, sa, salen, true);
    /* A deadline, not bufferevent timeouts: those re-arm on every byte read, so a client
     * sending one byte per client_header would hold the slot for as long as it liked. */
    hs->deadline = evtimer_new(w->base, handshake_deadline_cb, hs);
    struct timeval tv = ms_tv(worker_config(w)->timeouts.client_header_ms);
    evtimer_add(hs->deadline, &tv);
    bufferevent_setcb(bev, NULL, NULL, handshake_event_cb, hs);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}
