/* SPDX-License-Identifier: MIT */
/* TLS for the listeners (OpenSSL 3 on the socket itself, proxy/sock.c): TLS 1.2 and 1.3
 * only, forward-secret AEAD suites for 1.2, ALPN with h2 preferred over http/1.1. The
 * handshake runs under the client_header deadline (a total time from the accept, which a
 * ClientHello trickled a byte at a time does not extend); when it completes the connection
 * goes to the codec ALPN chose.
 *
 * TLS state outlives publications: the control thread keeps every context it built (for
 * listeners and for clusters) in a store keyed by the SHA-256 of its files' contents, and a
 * publication whose files are unchanged hands the workers the same contexts, with their
 * session caches. Session tickets are sealed with keys of our own, shared by every server
 * context and every worker, rotated on timeouts.tls_ticket_rotate (the two previous keys still
 * open tickets), so a ticket resumes on any worker, across reloads and certificate renewals.
 * Workers never build a context: nothing here touches the disk on a worker. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

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

/* Session ticket keys: the current one seals, it and the previous ones open. Read under a
 * read lock once per ticket (a handshake, not a request: OpenSSL's session cache takes its own
 * lock there too); rotated by the control thread. */
#define TICKET_KEYS 3

struct ticket_key {
    unsigned char name[16], aes[32], hmac[32];
};

static pthread_rwlock_t ticket_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct ticket_key ticket_keys[TICKET_KEYS];
static size_t n_ticket_keys;

static bool ticket_key_make(struct ticket_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
           RAND_bytes(k->hmac, sizeof(k->hmac)) == 1;
}

void sy_tls_tickets_rotate(void)
{
    struct ticket_key k;
    if (!ticket_key_make(&k)) {
        sy_log(SY_LOG_ERROR, "tls", "%s", openssl_error("no new session ticket key"));
        return;
    }
    pthread_rwlock_wrlock(&ticket_lock);
    memmove(&ticket_keys[1], &ticket_keys[0], (TICKET_KEYS - 1) * sizeof(ticket_keys[0]));
    ticket_keys[0] = k;
    if (n_ticket_keys < TICKET_KEYS)
        n_ticket_keys++;
    pthread_rwlock_unlock(&ticket_lock);
    OPENSSL_cleanse(&k, sizeof(k));
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb: seals a ticket under the current key (enc), or finds
 * the key a ticket names: 1 when it is the current one, 2 for a previous one (the client gets
 * a new ticket), 0 for none (a full handshake). TLS 1.2 and 1.3 alike. */
static int ticket_key_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key k;
    int rc = 1;
    pthread_rwlock_rdlock(&ticket_lock);
    if (enc) {
        k = ticket_keys[0];
    } else {
        size_t i = 0;
        while (i < n_ticket_keys && memcmp(ticket_keys[i].name, name, 16) != 0)
            i++;
        if (i == n_ticket_keys) {
            pthread_rwlock_unlock(&ticket_lock);
            return 0;
        }
        k = ticket_keys[i];
        rc = i == 0 ? 1 : 2;
    }
    pthread_rwlock_unlock(&ticket_lock);
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1)
            rc = -1;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (rc > 0 && (EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv, enc) != 1 ||
                   EVP_MAC_CTX_set_params(hctx, params) != 1))
        rc = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
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
    pthread_rwlock_rdlock(&ticket_lock);
    bool have_keys = n_ticket_keys > 0;
    pthread_rwlock_unlock(&ticket_lock);
    if (!have_keys)
        sy_tls_tickets_rotate();
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
    return ctx;
}

/* The system's CA bundle as one file (OpenSSL's default, or $SSL_CERT_FILE), or NULL when
 * there is none. */
static const char *system_ca_file(void)
{
    const char *f = getenv(X509_get_default_cert_file_env());
    if (!f || !*f)
        f = X509_get_default_cert_file();
    return access(f, R_OK) == 0 ? f : NULL;
}

SSL_CTX *sy_proxy_tls_client_ctx(const struct sy_cluster_tls *t, const char **why)
{
    return tls_client_ctx_new(t, false, why);
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
        /* The system store is read now, as a file: a lookup directory would be read during
         * each verification, on a worker. */
        const char *sys = system_ca_file();
        int ok = t->ca ? SSL_CTX_load_verify_locations(ctx, t->ca, NULL)
                 : sys ? SSL_CTX_load_verify_locations(ctx, sys, NULL)
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
    /* Each pool keeps the last session its endpoint gave (upstream.c), not the context. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, upstream_new_session_cb);
    return ctx;
}

/* The store of contexts (control thread only). An entry is found by the digest of what made
 * it: the kind, the settings and the bytes of every file it read. The files are hashed first
 * and the context is then built from the paths: a file replaced in between gives a context
 * newer than its digest, which the next publication finds changed and builds again (the file
 * watcher brings that publication). */
struct tls_entry {
    unsigned char digest[32];
    SSL_CTX *ctx;
    uint64_t used; /* the last publication that asked for it */
    struct tls_entry *next;
};

struct tls_store {
    struct tls_entry *entries;
    uint64_t serial;
    bool failed; /* a context of this publication could not be built */
};

struct tls_store *tls_store_new(void)
{
    return sy_xcalloc(1, sizeof(struct tls_store));
}

void tls_store_free(struct tls_store *st)
{
    if (!st)
        return;
    while (st->entries) {
        struct tls_entry *e = st->entries;
        st->entries = e->next;
        SSL_CTX_free(e->ctx);
        free(e);
    }
    free(st);
}

void tls_store_begin(struct tls_store *st)
{
    st->serial++;
    st->failed = false;
}

void tls_store_end(struct tls_store *st)
{
    /* After a failure the older contexts stay: a renewal that is put right again (the old
     * files back) finds its context, and its sessions, still there. */
    if (st->failed)
        return;
    for (struct tls_entry **pp = &st->entries; *pp;) {
        struct tls_entry *e = *pp;
        if (e->used == st->serial) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        SSL_CTX_free(e->ctx);
        free(e);
    }
}

/* Adds `path`'s bytes (or, when it cannot be read, its name and the error) to the digest. */
static void digest_file(EVP_MD_CTX *md, const char *path)
{
    uint8_t tag = path ? 1 : 0;
    EVP_DigestUpdate(md, &tag, 1);
    if (!path)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        int err = errno;
        EVP_DigestUpdate(md, path, strlen(path) + 1);
        EVP_DigestUpdate(md, &err, sizeof(err));
        return;
    }
    char buf[16384];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        total += (uint64_t)n;
    }
    close(fd);
    EVP_DigestUpdate(md, &total, sizeof(total)); /* file boundaries are part of the content */
}

static struct tls_entry *store_find(struct tls_store *st, const unsigned char digest[32])
{
    for (struct tls_entry *e = st->entries; e; e = e->next)
        if (memcmp(e->digest, digest, 32) == 0)
            return e;
    return NULL;
}

/* The stored context for `digest` (a new reference), or `built` stored under it. */
static SSL_CTX *store_take(struct tls_store *st, const unsigned char digest[32], SSL_CTX *built)
{
    struct tls_entry *e = sy_xcalloc(1, sizeof(*e));
    memcpy(e->digest, digest, 32);
    e->ctx = built;
    e->used = st->serial;
    e->next = st->entries;
    st->entries = e;
    SSL_CTX_up_ref(built);
    return built;
}

static SSL_CTX *store_lookup(struct tls_store *st, const unsigned char digest[32])
{
    struct tls_entry *e = store_find(st, digest);
    if (!e)
        return NULL;
    e->used = st->serial;
    SSL_CTX_up_ref(e->ctx);
    return e->ctx;
}

/* A SHA-256 over what a context is made of, begun with `kind`; NULL (st->failed, *why set)
 * when OpenSSL cannot hash. */
static EVP_MD_CTX *digest_begin(struct tls_store *st, const char *kind, const char **why)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        *why = openssl_error("cannot hash the TLS files");
        st->failed = true;
        return NULL;
    }
    EVP_DigestUpdate(md, kind, strlen(kind));
    return md;
}

/* Ends the digest; the stored context made of the same contents (a new reference), or NULL
 * when it must be built. */
static SSL_CTX *digest_lookup(struct tls_store *st, EVP_MD_CTX *md, unsigned char digest[32])
{
    EVP_DigestFinal_ex(md, digest, NULL);
    EVP_MD_CTX_free(md);
    return store_lookup(st, digest);
}

/* Keeps a context just built under its digest (NULL: building failed). */
static SSL_CTX *store_built(struct tls_store *st, const unsigned char digest[32], SSL_CTX *ctx)
{
    if (!ctx) {
        st->failed = true;
        return NULL;
    }
    store_take(st, digest, ctx);
    return ctx;
}

SSL_CTX *tls_store_server(struct tls_store *st, const char *cert, const char *key, const char **why)
{
    unsigned char digest[32];
    EVP_MD_CTX *md = digest_begin(st, "server", why);
    if (!md)
        return NULL;
    digest_file(md, cert);
    digest_file(md, key);
    SSL_CTX *ctx = digest_lookup(st, md, digest);
    return ctx ? ctx : store_built(st, digest, tls_server_ctx_new(cert, key, why));
}

SSL_CTX *tls_store_client(struct tls_store *st, const struct sy_cluster_tls *t, bool h2,
                          const char **why)
{
    unsigned char digest[32];
    EVP_MD_CTX *md = digest_begin(st, "client", why);
    if (!md)
        return NULL;
    uint8_t flags[2] = {t->verify, h2};
    EVP_DigestUpdate(md, flags, sizeof(flags));
    digest_file(md, t->verify ? (t->ca ? t->ca : system_ca_file()) : NULL);
    digest_file(md, t->cert);
    digest_file(md, t->key);
    SSL_CTX *ctx = digest_lookup(st, md, digest);
    return ctx ? ctx : store_built(st, digest, tls_client_ctx_new(t, h2, why));
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
    /* fleet.etcd.tls: its files are checked as a cluster's are, so that -t (and a reload)
     * refuses a CA or client certificate the etcd client would fail on at start. */
    const struct sy_fleet_spec *f = &cfg->fleet;
    if (f->on && f->tls.on) {
        const char *why = NULL;
        SSL_CTX *ctx = tls_client_ctx_new(&f->tls, false, &why);
        if (!ctx) {
            sy_diags_add(d, file, f->tls.mark.line, f->tls.mark.col, "fleet.etcd.tls: %s", why);
            rc = SY_ERR_INVALID;
        } else {
            warn_readable_key("fleet", "etcd", f->tls.key);
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
    struct sy_sock *sock;
    struct event *deadline; /* client_header from the accept */
    int salen;
};

static void handshake_free(struct conn *c)
{
    struct handshake *hs = (struct handshake *)c;
    event_free(hs->deadline);
    sy_sock_free(hs->sock);
    worker_conn_remove(c->w, c);
    free(hs);
}

static void handshake_event_cb(struct sy_sock *sk, short what, void *arg)
{
    struct handshake *hs = arg;
    if (!(what & SY_SOCK_CONNECTED)) {
        if (hs->conn.lstat)
            counter_add(&hs->conn.lstat->tls_failed, 1);
        handshake_free(&hs->conn);
        return;
    }
    struct sy_worker *w = hs->conn.w;
    w->accept_lstat = hs->conn.lstat;
    worker_conn_remove(w, &hs->conn);
    const unsigned char *proto = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(sy_sock_ssl(sk), &proto, &len);
    bool h2 = len == 2 && memcmp(proto, "h2", 2) == 0;
    if (hs->conn.lstat) {
        counter_add(&hs->conn.lstat->tls_ok, 1);
        counter_add(&hs->conn.lstat->conns[h2 ? LPROTO_H2 : LPROTO_H1], 1);
    }
    event_free(hs->deadline);
    w->accept_trusted = hs->conn.trusted;
    w->accept_tls_version = SSL_get_version(sy_sock_ssl(sk));
    if (h2)
        h2_accept(w, sk, (const struct sockaddr *)&hs->conn.addr, hs->salen, true);
    else
        h1_accept(w, sk, (const struct sockaddr *)&hs->conn.addr, hs->salen, true);
    free(hs);
}

static void handshake_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct handshake *hs = arg;
    if (hs->conn.lstat)
        counter_add(&hs->conn.lstat->tls_failed, 1);
    handshake_free(arg);
}

/* Drain: a handshake under way finishes (its deadline is client_header), and the connection
 * it becomes is drained like any other: cutting it would fail a client that connected
 * before the listeners closed. */
static void handshake_drain(struct conn *c)
{
}

void tls_accept(struct sy_worker *w, SSL_CTX *ctx, int fd, const struct sockaddr *sa, int salen)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        evutil_closesocket(fd);
        return;
    }
    struct sy_sock *sk = sy_sock_accepted(w->socks, fd, ssl);
    if (!sk)
        return; /* it closed fd and freed ssl */
    struct handshake *hs = sy_xcalloc(1, sizeof(*hs));
    hs->sock = sk;
    hs->salen = salen;
    hs->conn.close_idle = handshake_drain;
    hs->conn.free = handshake_free;
    worker_conn_init(w, &hs->conn, sa, salen, true);
    /* A deadline, not read timeouts: those re-arm on every byte read, so a client
     * sending one byte per client_header would hold the slot for as long as it liked. */
    hs->deadline = evtimer_new(w->base, handshake_deadline_cb, hs);
    struct timeval tv = ms_tv(worker_config(w)->timeouts.client_header_ms);
    evtimer_add(hs->deadline, &tv);
    sy_sock_setcb(sk, NULL, NULL, handshake_event_cb, hs);
    sy_sock_enable(sk, EV_READ | EV_WRITE);
}
