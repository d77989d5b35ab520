/* SPDX-License-Identifier: MIT */
/* Worker threads. Each worker owns an event_base, one SO_REUSEPORT listening socket per
 * `listen` address (the kernel spreads connections over them), its upstream pools and its own
 * reference to the current routing snapshot. The control thread talks to a worker only
 * through a mutex-guarded mailbox rung with an eventfd: the request path never takes a lock,
 * and libevent itself runs without locks. */
#define _GNU_SOURCE /* pthread_setname_np: before any header */
#include "switchyard/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "switchyard/proxy_proto.h"

#include "proxy_internal.h"

/* The listen addresses every worker has (or is about to have), as the control thread knows
 * them. */
struct bound {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int *fds; /* a duplicate of every worker's socket for it, for an upgrade to hand over */
    size_t n_fds;
};

/* Listening sockets handed over by the process this one replaces (sy_workers_inherit), not
 * taken yet: each goes to a worker listening on its address when the workers are made. */
struct inherited {
    int fd;
    struct sockaddr_storage addr;
};
static struct inherited *inherited;
static size_t n_inherited;

/* Out of descriptors, a listener stops accepting this long, then tries again. */
#define ACCEPT_PAUSE_MS 100

/* RLIMIT_NOFILE's soft limit, read once before the workers start (main raises it first). */
static int fd_limit = INT_MAX;

struct sy_workers {
    struct sy_worker *v;
    size_t n;
    struct bound *bound;
    size_t n_bound;
    struct tls_store *tls; /* every TLS context, kept while its files are unchanged */
};

const struct sy_config *worker_config(const struct sy_worker *w)
{
    return sy_route_table_config(w->table);
}

uint64_t worker_random(struct sy_worker *w)
{
    /* xorshift64* */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t alen,
                      const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* The same address and port (getsockname's answer against a parsed `listen` address). */
static bool same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

void sy_workers_inherit(const int *fds, size_t n)
{
    inherited = sy_xrealloc(inherited, (n_inherited + n + 1) * sizeof(*inherited));
    for (size_t i = 0; i < n; i++) {
        struct inherited *h = &inherited[n_inherited];
        socklen_t len = sizeof(h->addr);
        memset(&h->addr, 0, sizeof(h->addr));
        if (getsockname(fds[i], (struct sockaddr *)&h->addr, &len) == -1) {
            sy_log_errno(SY_LOG_WARN, "listen", "an inherited socket (fd %d)", fds[i]);
            close(fds[i]);
            continue;
        }
        h->fd = fds[i];
        n_inherited++;
    }
}

/* Moves the inherited sockets of `spec`'s address into fds[] (room for n_inherited); returns
 * how many. */
static size_t take_inherited(const struct sy_listen_spec *spec, int *fds)
{
    size_t k = 0, kept = 0;
    for (size_t i = 0; i < n_inherited; i++) {
        if (same_sockaddr(&inherited[i].addr, &spec->addr))
            fds[k++] = inherited[i].fd;
        else
            inherited[kept++] = inherited[i];
    }
    n_inherited = kept;
    return k;
}

/* Inherited sockets of addresses the new file no longer lists: closed (the process that had
 * them closes its own copies when it drains). */
static void drop_inherited(void)
{
    for (size_t i = 0; i < n_inherited; i++) {
        sy_log(SY_LOG_INFO, "listen", "an inherited listener is not in the file: closed");
        close(inherited[i].fd);
    }
    n_inherited = 0;
    free(inherited);
    inherited = NULL;
}

static int open_listener(const struct sy_listen_spec *ls)
{
    int fd = socket(ls->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        sy_log_errno(SY_LOG_ERROR, "listen", "socket for %s", ls->address);
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) {
        sy_log_errno(SY_LOG_ERROR, "listen", "setsockopt on %s", ls->address);
        close(fd);
        return -1;
    }
    if (ls->addr.ss_family == AF_INET6) {
        /* ":port" means every address, v4 included; "[::1]:port" only v6. */
        int v6only = 0;
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ls->addr;
        if (!IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr))
            v6only = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    if (bind(fd, (const struct sockaddr *)&ls->addr, ls->addrlen) == -1) {
        sy_log_errno(SY_LOG_ERROR, "listen", "cannot bind %s", ls->address);
        close(fd);
        return -1;
    }
    if (listen(fd, 1024) == -1) {
        sy_log_errno(SY_LOG_ERROR, "listen", "cannot listen on %s", ls->address);
        close(fd);
        return -1;
    }
    return fd;
}

void worker_conn_init(struct sy_worker *w, struct conn *c, const struct sockaddr *sa, int salen,
                      bool tls)
{
    c->w = w;
    c->tls = tls;
    /* Set by whoever hands the connection over (see sy_worker.accept_trusted), once. */
    c->trusted = w->accept_trusted;
    w->accept_trusted = false;
    c->lstat = w->accept_lstat;
    c->tls_version = w->accept_tls_version;
    w->accept_tls_version = NULL;
    if (salen > 0 && (size_t)salen <= sizeof(c->addr))
        memcpy(&c->addr, sa, (size_t)salen);
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof(c->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer,
                  sizeof(c->peer));
    else
        strcpy(c->peer, "unknown");
    worker_conn_add(w, c);
}

void worker_conn_add(struct sy_worker *w, struct conn *c)
{
    c->id = ++w->next_conn_id * 64 + w->id;
    c->prev = NULL;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
}

static void maybe_finish_drain(struct sy_worker *w);

void worker_conn_remove(struct sy_worker *w, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    maybe_finish_drain(w);
}

struct sy_header *worker_scratch(struct sy_worker *w)
{
    const struct sy_config *cfg = worker_config(w);
    if (w->scratch_cap < cfg->limits.max_headers) {
        free(w->scratch);
        w->scratch = sy_xcalloc(cfg->limits.max_headers, sizeof(*w->scratch));
        w->scratch_cap = cfg->limits.max_headers;
    }
    return w->scratch;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listener *ls = arg;
    evconnlistener_enable(ls->ev);
}

/* Out of descriptors: the connection that could not be taken waits in the backlog and keeps
 * the socket readable, so accepting again at once would spin (and log each turn). The
 * listener stops for ACCEPT_PAUSE_MS instead; the first pause of a run is logged, and the
 * accept that ends it. */
static void pause_accepting(struct listener *ls, const char *why)
{
    struct sy_worker *w = ls->w;
    if (ls->pauses++ == 0)
        sy_log(SY_LOG_WARN, "listen",
               "worker %u: out of file descriptors (%s): accepting paused, tried again every "
               "%d ms",
               w->id, why, ACCEPT_PAUSE_MS);
    evconnlistener_disable(ls->ev);
    if (!ls->pause_ev)
        ls->pause_ev = evtimer_new(w->base, resume_cb, ls);
    struct timeval tv = ms_tv(ACCEPT_PAUSE_MS);
    evtimer_add(ls->pause_ev, &tv);
}

/* The lowest descriptor a client connection may not have: the last limits.reserved_fds
 * (at most a quarter of the limit) stay free for the admin socket, reloads and upstream
 * connections. Linux hands out the lowest free number, so a number this high means that
 * nearly every descriptor is in use. */
static int client_fd_ceiling(const struct sy_config *cfg)
{
    size_t reserve = cfg->limits.reserved_fds;
    if (reserve > (size_t)fd_limit / 4)
        reserve = (size_t)fd_limit / 4;
    return fd_limit - (int)reserve;
}

/* Hands a new connection (its PROXY header, if any, read) to TLS or to the cleartext codecs,
 * with `sa` as the client's address: the one the header carried, else the TCP peer. */
static void accept_conn(struct sy_worker *w, SSL_CTX *tls, const struct sy_listen_spec *spec,
                        int fd, const struct sockaddr *sa, int salen)
{
    size_t n_trusted;
    const struct sy_cidr *trusted = sy_config_trusted(worker_config(w), spec, &n_trusted);
    w->accept_trusted = sy_cidr_match(trusted, n_trusted, sa);
    if (tls) {
        tls_accept(w, tls, fd, sa, salen);
        return;
    }
    struct sy_sock *sk = sy_sock_accepted(w->socks, fd, NULL);
    if (sk) /* else it closed fd */
        h1_accept(w, sk, sa, salen, false);
}

/* A connection on a `proxy_protocol` listener while its header is read: before TLS and before
 * any HTTP byte, under the client_header deadline from the accept (like a TLS handshake). The
 * socket is read with MSG_PEEK and only the bytes the parser calls header are taken from it,
 * so whatever follows (a ClientHello, a request, the HTTP/2 preface) stays in the kernel for
 * the codec that comes next. */
struct pp_wait {
    struct conn conn; /* first */
    struct event *read_ev;
    struct event *deadline;
    SSL_CTX *tls; /* a reference, kept across a reload that replaces the listener's */
    struct sockaddr_storage listen_addr;
    socklen_t listen_addrlen;
    enum sy_pp_accept accept;
    int fd;
    unsigned char *buf; /* `small`, or a heap buffer for a v2 header with long TLVs */
    size_t have, cap;
    unsigned char small[256];
};

static void pp_wait_free(struct pp_wait *pp, bool close_fd)
{
    event_free(pp->read_ev);
    event_free(pp->deadline);
    if (pp->tls)
        SSL_CTX_free(pp->tls);
    if (pp->buf != pp->small)
        free(pp->buf);
    if (close_fd)
        evutil_closesocket(pp->fd);
    worker_conn_remove(pp->conn.w, &pp->conn);
    free(pp);
}

static void pp_conn_free(struct conn *c)
{
    pp_wait_free((struct pp_wait *)c, true);
}

/* Once per source address a minute at most (a small table by address hash; a collision only
 * lets a line through early), and within limits.log_client_lines per second overall. */
static bool pp_should_log(struct sy_worker *w, const struct sockaddr_storage *addr)
{
    const unsigned char *p = (const unsigned char *)addr;
    size_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        /* The port changes with every connection: leave it out. */
        if (i == 2 || i == 3) /* sin_port and sin6_port alike */
            continue;
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec + 1; /* 0: never logged */
    size_t slot = (size_t)(h % PP_LOG_SLOTS);
    if (w->pp_logged[slot].at && w->pp_logged[slot].hash == h && now - w->pp_logged[slot].at < 60)
        return false;
    w->pp_logged[slot].hash = h;
    w->pp_logged[slot].at = now;
    return true;
}

static void pp_reject(struct pp_wait *pp, const char *why)
{
    struct sy_worker *w = pp->conn.w;
    counter_add(&w->pp_rejected, 1);
    if (pp_should_log(w, &pp->conn.addr)) {
        const struct sy_listen_spec *spec =
            sy_config_listen(worker_config(w), &pp->listen_addr, pp->listen_addrlen);
        sy_log_client(SY_LOG_WARN, "listen",
                      "conn %llu from %s on %s: %s: closed (proxy_protocol is on; the "
                      "next from this address is logged after a minute)",
                      (unsigned long long)pp->conn.id, pp->conn.peer,
                      spec ? spec->address : "a listener", why);
    }
    pp_wait_free(pp, true);
}

static void pp_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    pp_reject(arg, "no complete PROXY protocol header within timeouts.client_header");
}

static void pp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pp_wait *pp = arg;
    ssize_t n = recv(pp->fd, pp->buf + pp->have, pp->cap - pp->have, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* A bare TCP connect and close is a balancer's plain health check: not worth a line. */
        if (n == 0 && pp->have == 0) {
            pp_wait_free(pp, true);
            return;
        }
        pp_reject(pp, n == 0 ? "connection closed inside the PROXY protocol header"
                             : "read error inside the PROXY protocol header");
        return;
    }
    struct sy_pp_result r;
    enum sy_pp_status st = sy_pp_parse(pp->buf, pp->have + (size_t)n, pp->accept, &r);
    if (st == SY_PP_ERROR) {
        pp_reject(pp, r.why);
        return;
    }
    /* Every byte peeked is header (NEED_MORE), or the header ends inside them (DONE): take
     * exactly those from the socket; they are there, the peek saw them. */
    size_t take = st == SY_PP_DONE ? r.consumed - pp->have : (size_t)n;
    if (recv(pp->fd, pp->buf + pp->have, take, 0) != (ssize_t)take) {
        pp_reject(pp, "read error inside the PROXY protocol header");
        return;
    }
    pp->have += take;
    if (st == SY_PP_NEED_MORE) {
        if (r.need > pp->cap) {
            unsigned char *big = sy_xmalloc(r.need);
            memcpy(big, pp->buf, pp->have);
            if (pp->buf != pp->small)
                free(pp->buf);
            pp->buf = big;
            pp->cap = r.need;
        }
        return;
    }
    struct sy_worker *w = pp->conn.w;
    const struct sy_config *cfg = worker_config(w);
    const struct sy_listen_spec *spec = sy_config_listen(cfg, &pp->listen_addr, pp->listen_addrlen);
    struct sockaddr_storage client = pp->conn.addr;
    int salen = pp->conn.addr.ss_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6)
                                                    : (int)sizeof(struct sockaddr_in);
    if (r.has_addr) {
        client = r.src;
        salen = (int)r.src_len;
    }
    sy_log(SY_LOG_DEBUG, "listen", "conn %llu from %s: PROXY v%d %s",
           (unsigned long long)pp->conn.id, pp->conn.peer, r.version,
           r.has_addr ? "with the client's address"
           : r.local  ? "LOCAL"
                      : "without an address");
    SSL_CTX *tls = pp->tls;
    pp->tls = NULL;
    int sock = pp->fd;
    w->accept_lstat = pp->conn.lstat;
    pp_wait_free(pp, false);
    accept_conn(w, tls, spec, sock, (const struct sockaddr *)&client, salen);
    if (tls)
        SSL_CTX_free(tls); /* tls_accept's SSL holds its own reference */
}

static void pp_wait_start(struct sy_worker *w, struct listener *ls, enum sy_pp_accept accept,
                          int fd, const struct sockaddr *sa, int salen)
{
    struct pp_wait *pp = sy_xcalloc(1, sizeof(*pp));
    pp->fd = fd;
    pp->accept = accept;
    pp->buf = pp->small;
    pp->cap = sizeof(pp->small);
    pp->listen_addr = ls->addr;
    pp->listen_addrlen = ls->addrlen;
    if (ls->tls) {
        SSL_CTX_up_ref(ls->tls);
        pp->tls = ls->tls;
    }
    pp->conn.close_idle = pp_conn_free;
    pp->conn.free = pp_conn_free;
    w->accept_trusted = false;
    worker_conn_init(w, &pp->conn, sa, salen, ls->tls != NULL);
    pp->read_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, pp_read_cb, pp);
    pp->deadline = evtimer_new(w->base, pp_deadline_cb, pp);
    struct timeval tv = ms_tv(worker_config(w)->timeouts.client_header_ms);
    evtimer_add(pp->deadline, &tv);
    event_add(pp->read_ev, NULL);
}

/* The counters of listen address `address` in worker `w` (made on its first connection). */
static struct lis_stat *lis_stat_get(struct sy_worker *w, const char *address)
{
    struct lis_stat *s = atomic_load_explicit(&w->lis_stats, memory_order_relaxed);
    for (; s; s = s->next)
        if (strcmp(s->address, address) == 0)
            return s;
    s = sy_xcalloc(1, sizeof(*s));
    s->address = sy_xstrdup(address);
    s->next = atomic_load_explicit(&w->lis_stats, memory_order_relaxed);
    atomic_store_explicit(&w->lis_stats, s, memory_order_release);
    return s;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct listener *ls = arg;
    struct sy_worker *w = ls->w;
    const struct sy_config *cfg = worker_config(w);
    if (w->draining || w->n_conns >= cfg->limits.max_connections) {
        evutil_closesocket(fd);
        return;
    }
    /* Short of descriptors, an idle connection to a cluster gives its own to the client. */
    if (fd >= client_fd_ceiling(cfg) && upstream_shed_idle(w, 1) == 0) {
        evutil_closesocket(fd);
        char why[96];
        snprintf(why, sizeof(why), "descriptor %d: the last %d of %d are kept in reserve", fd,
                 fd_limit - client_fd_ceiling(cfg), fd_limit);
        pause_accepting(ls, why);
        return;
    }
    if (ls->pauses) {
        sy_log(SY_LOG_INFO, "listen", "worker %u: accepting again after %u pauses", w->id,
               ls->pauses);
        ls->pauses = 0;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const struct sy_listen_spec *spec = sy_config_listen(cfg, &ls->addr, ls->addrlen);
    if (!ls->stat)
        ls->stat = lis_stat_get(w, spec ? spec->address : "unknown");
    w->accept_lstat = ls->stat;
    if (spec && spec->proxy_protocol != SY_PP_OFF) {
        pp_wait_start(w, ls, spec->proxy_protocol, fd, sa, salen);
        return;
    }
    accept_conn(w, ls->tls, spec, fd, sa, salen);
}

/* How many idle connections to clusters an accept that failed with EMFILE closes at once. */
#define EMFILE_SHED 16

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct listener *ls = arg;
    int e = errno;
    /* Out of descriptors with idle connections to clusters open: those go, and the next
     * accept takes one of theirs. */
    if ((e == EMFILE || e == ENFILE) && upstream_shed_idle(ls->w, EMFILE_SHED) > 0)
        return;
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        pause_accepting(ls, strerror(e));
        return;
    }
    /* Anything else: logged, and the next accept may succeed. */
    sy_log_errno(SY_LOG_WARN, "listen", "accept failed");
}

static void maybe_finish_drain(struct sy_worker *w)
{
    if (w->draining && w->n_conns == 0)
        event_base_loopbreak(w->base);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_worker *w = arg;
    sy_log(SY_LOG_WARN, "worker", "worker %u: drain timeout, closing %zu connections", w->id,
           w->n_conns);
    event_base_loopbreak(w->base);
}

static struct traffic_slot *slot_new(struct sy_worker *w, const char *app, const char *cluster)
{
    struct traffic_slot *s = sy_xcalloc(1, sizeof(*s));
    s->app = sy_xstrdup(app);
    s->cluster = sy_xstrdup(cluster);
    s->next = atomic_load_explicit(&w->slots, memory_order_relaxed);
    atomic_store_explicit(&w->slots, s, memory_order_release);
    return s;
}

void worker_count_own(struct sy_worker *w, struct traffic_slot *slot, int status)
{
    size_t i = 0;
    while (i < SY_OWN_N - 1 && sy_own_status(i) != status)
        i++;
    counter_add(&(slot ? slot : w->unrouted)->own[i], 1);
}

static uint64_t slot_hash(const char *app, const char *cluster)
{
    /* Over "app\0cluster": the NUL keeps ("ab", "c") apart from ("a", "bc"). */
    return sy_fnv1a(sy_fnv1a(SY_FNV1A_INIT, app, strlen(app) + 1), cluster, strlen(cluster));
}

/* An open-addressing map from (app, cluster) names to a slot or a sum, at most half full, so
 * that matching slots by name stays linear in their number. */
struct named {
    const char *app, *cluster;
    void *p; /* NULL: empty */
};

struct name_set {
    struct named *v;
    size_t mask;
};

static void name_set_init(struct name_set *ns, size_t n)
{
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    ns->v = sy_xcalloc(slots, sizeof(*ns->v));
    ns->mask = slots - 1;
}

/* The entry named (app, cluster): found (p set), or the empty one where it goes. */
static struct named *name_set_find(const struct name_set *ns, const char *app, const char *cluster)
{
    size_t s = slot_hash(app, cluster) & ns->mask;
    for (; ns->v[s].p; s = (s + 1) & ns->mask) {
        const struct named *e = &ns->v[s];
        if (strcmp(e->app, app) == 0 && strcmp(e->cluster, cluster) == 0)
            break;
    }
    return &ns->v[s];
}

static void name_set_put(struct named *e, const char *app, const char *cluster, void *p)
{
    e->app = app;
    e->cluster = cluster;
    e->p = p;
}

/* Points slot_index at the slots of the new table's app and cluster names, making the
 * missing ones. A table of the same config as `old` (an operator's change) keeps the index. */
/* Whether two configs name the same apps and clusters in the same order: then the slot index
 * of one serves the other. A reload that changes weights, hosts or paths but no name (the
 * common one) keeps the index instead of matching every name again (10-17 ms a worker at
 * 10,000 apps). */
static bool same_names(const struct sy_config *a, const struct sy_config *b)
{
    if (a == b)
        return true;
    if (a->n_apps != b->n_apps || a->n_clusters != b->n_clusters)
        return false;
    for (size_t i = 0; i < a->n_clusters; i++)
        if (strcmp(a->clusters[i].name, b->clusters[i].name) != 0)
            return false;
    for (size_t i = 0; i < a->n_apps; i++)
        if (strcmp(a->apps[i].name, b->apps[i].name) != 0)
            return false;
    return true;
}

static void index_slots(struct sy_worker *w, const struct sy_route_table *old)
{
    const struct sy_config *cfg = worker_config(w);
    if (!w->unrouted)
        w->unrouted = slot_new(w, "", ""); /* no app or cluster has an empty name */
    if (old && w->slot_index && same_names(sy_route_table_config(old), cfg))
        return;
    free(w->slot_index);
    w->slot_index = sy_xcalloc(cfg->n_apps * cfg->n_clusters + 1, sizeof(*w->slot_index));
    size_t n = 0;
    for (struct traffic_slot *s = w->slots; s; s = s->next)
        n++;
    struct name_set ns;
    name_set_init(&ns, n);
    for (struct traffic_slot *s = w->slots; s; s = s->next) {
        struct named *e = name_set_find(&ns, s->app, s->cluster);
        if (!e->p)
            name_set_put(e, s->app, s->cluster, s);
    }
    for (size_t a = 0; a < cfg->n_apps; a++) {
        for (size_t c = 0; c < cfg->n_clusters; c++) {
            const char *app = cfg->apps[a].name, *cluster = cfg->clusters[c].name;
            struct traffic_slot *s = name_set_find(&ns, app, cluster)->p;
            if (!s)
                s = slot_new(w, app, cluster);
            w->slot_index[a * cfg->n_clusters + c] = s;
        }
    }
    free(ns.v);
}

static uint64_t load(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Adds a slot's /metrics figures to `t`. */
static void add_metrics(struct sy_traffic *t, struct traffic_slot *s)
{
    for (size_t j = 0; j < SY_CLASS_N; j++)
        t->by_class[j] += load(&s->by_class[j]);
    for (size_t j = 0; j <= SY_LAT_N; j++) {
        t->dur[j] += load(&s->dur[j]);
        t->head_lat[j] += load(&s->head_lat[j]);
    }
    t->dur_sum_us += load(&s->dur_sum_us);
    t->head_sum_us += load(&s->head_sum_us);
    t->head_count += load(&s->head_count);
    t->bytes_in += load(&s->bytes_in);
    t->bytes_out += load(&s->bytes_out);
}

static void copy_metrics(struct sy_traffic *t, const struct sy_traffic *m)
{
    memcpy(t->by_class, m->by_class, sizeof(t->by_class));
    memcpy(t->dur, m->dur, sizeof(t->dur));
    memcpy(t->head_lat, m->head_lat, sizeof(t->head_lat));
    t->dur_sum_us = m->dur_sum_us;
    t->head_sum_us = m->head_sum_us;
    t->head_count = m->head_count;
    t->bytes_in = m->bytes_in;
    t->bytes_out = m->bytes_out;
}

/* One (app, cluster)'s counters summed across workers. */
struct traffic_agg {
    const char *app, *cluster;
    uint64_t requests, responses_5xx, in_flight, tunnels, queued, queue_503, refused;
    uint64_t own[SY_OWN_N];
    uint64_t held, held_released, held_503, held_wait_max_ms;
    struct sy_traffic more; /* the /metrics figures (by_class .. bytes_out) */
};

/* Each worker's list head, and how many slots they hold in all. Slots are only ever pushed at
 * the head: the lists from these heads are fixed (a slot a worker adds meanwhile waits for
 * the next sum). */
static struct traffic_slot **traffic_heads(struct sy_workers *ws, size_t *total)
{
    struct traffic_slot **heads = sy_xcalloc(ws->n ? ws->n : 1, sizeof(*heads));
    *total = 0;
    for (size_t i = 0; i < ws->n; i++) {
        heads[i] = atomic_load_explicit(&ws->v[i].slots, memory_order_acquire);
        for (struct traffic_slot *s = heads[i]; s; s = s->next)
            (*total)++;
    }
    return heads;
}

static void agg_add_slot(struct traffic_agg *g, struct traffic_slot *s)
{
    g->requests += atomic_load_explicit(&s->requests, memory_order_relaxed);
    g->responses_5xx += atomic_load_explicit(&s->responses_5xx, memory_order_relaxed);
    g->in_flight += atomic_load_explicit(&s->in_flight, memory_order_relaxed);
    g->tunnels += atomic_load_explicit(&s->tunnels, memory_order_relaxed);
    for (size_t j = 0; j < SY_OWN_N; j++)
        g->own[j] += atomic_load_explicit(&s->own[j], memory_order_relaxed);
    g->queued += atomic_load_explicit(&s->queued, memory_order_relaxed);
    g->queue_503 += atomic_load_explicit(&s->queue_503, memory_order_relaxed);
    g->refused += atomic_load_explicit(&s->upstream_refused, memory_order_relaxed);
    g->held += atomic_load_explicit(&s->held, memory_order_relaxed);
    g->held_released += atomic_load_explicit(&s->held_released, memory_order_relaxed);
    g->held_503 += atomic_load_explicit(&s->held_503, memory_order_relaxed);
    uint64_t wait = atomic_load_explicit(&s->held_wait_max_ms, memory_order_relaxed);
    if (wait > g->held_wait_max_ms)
        g->held_wait_max_ms = wait; /* the longest of all workers, not a sum */
    add_metrics(&g->more, s);
}

/* Hands one sum to `cb` unless it has seen no request at all. */
static void agg_report(const struct traffic_agg *g, sy_traffic_cb cb, void *arg)
{
    uint64_t own = 0;
    for (size_t j = 0; j < SY_OWN_N; j++)
        own += g->own[j];
    if (g->requests == 0 && own == 0)
        return;
    bool unrouted = g->app[0] == '\0';
    struct sy_traffic t = {
        .app = unrouted ? NULL : g->app,
        .cluster = unrouted ? NULL : g->cluster,
        .requests = g->requests,
        .responses_5xx = g->responses_5xx,
        .in_flight = g->in_flight,
        .tunnels = g->tunnels,
        .queued = g->queued,
        .queue_503 = g->queue_503,
        .upstream_refused = g->refused,
        .held = g->held,
        .held_released = g->held_released,
        .held_503 = g->held_503,
        .held_wait_max_ms = g->held_wait_max_ms,
    };
    memcpy(t.own, g->own, sizeof(t.own));
    copy_metrics(&t, &g->more);
    cb(&t, arg);
}

static void report_pp_rejected(struct sy_workers *ws, sy_traffic_cb cb, void *arg)
{
    uint64_t pp = 0;
    for (size_t i = 0; i < ws->n; i++)
        pp += atomic_load_explicit(&ws->v[i].pp_rejected, memory_order_relaxed);
    if (pp) {
        struct sy_traffic t = {.proxy_protocol_rejected = pp};
        cb(&t, arg);
    }
}

void sy_workers_traffic(struct sy_workers *ws, sy_traffic_cb cb, void *arg)
{
    /* Sum by name across workers: the first worker's list gives the order. */
    struct traffic_agg **v = NULL;
    size_t n = 0, cap = 0, total;
    struct traffic_slot **heads = traffic_heads(ws, &total);
    struct name_set ns;
    name_set_init(&ns, total);
    for (size_t i = 0; i < ws->n; i++) {
        for (struct traffic_slot *s = heads[i]; s; s = s->next) {
            struct named *e = name_set_find(&ns, s->app, s->cluster);
            struct traffic_agg *g = e->p;
            if (!g) {
                g = sy_xcalloc(1, sizeof(*g));
                *g = (struct traffic_agg){.app = s->app, .cluster = s->cluster};
                name_set_put(e, s->app, s->cluster, g);
                sy_xgrow((void **)&v, &cap, n + 1, sizeof(*v));
                v[n++] = g;
            }
            agg_add_slot(g, s);
        }
    }
    for (size_t k = 0; k < n; k++) {
        agg_report(v[k], cb, arg);
        free(v[k]);
    }
    free(v);
    free(ns.v);
    free(heads);
    report_pp_rejected(ws, cb, arg);
}

static void listener_free(struct listener *ls)
{
    if (ls->pause_ev)
        event_free(ls->pause_ev);
    if (ls->ev)
        evconnlistener_free(ls->ev); /* closes the socket */
    if (ls->tls)
        SSL_CTX_free(ls->tls);
    free(ls);
}

static void start_drain(struct sy_worker *w, unsigned drain_ms)
{
    if (w->draining)
        return;
    w->draining = true;
    for (size_t i = 0; i < w->n_listeners; i++)
        listener_free(w->listeners[i]);
    w->n_listeners = 0;
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        c->close_idle(c);
    }
    struct timeval tv = ms_tv(drain_ms);
    w->drain_timer = evtimer_new(w->base, drain_timeout_cb, w);
    evtimer_add(w->drain_timer, &tv);
    maybe_finish_drain(w);
}

/* Makes the worker's listeners what the plan says: new sockets start accepting, addresses no
 * longer listed close (connections already accepted go on), TLS contexts are replaced so
 * that new connections get a renewed certificate. Takes ownership of the plan's fds and
 * contexts. */
static void apply_plan(struct sy_worker *w, struct listener_plan *plan, size_t n)
{
    struct listener **next = sy_xcalloc(n + w->n_listeners + 1, sizeof(*next));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct listener *ls = NULL;
        for (size_t j = 0; j < w->n_listeners && !ls; j++) {
            struct listener *old = w->listeners[j];
            if (old && same_addr(&old->addr, old->addrlen, &plan[i].addr, plan[i].addrlen)) {
                ls = old;
                w->listeners[j] = NULL;
            }
        }
        /* More sockets of the same address (taken over from the process this one replaced,
         * which had more workers): they stay, with the same TLS context. */
        for (size_t j = 0; ls && j < w->n_listeners; j++) {
            struct listener *old = w->listeners[j];
            if (old && same_addr(&old->addr, old->addrlen, &plan[i].addr, plan[i].addrlen)) {
                w->listeners[j] = NULL;
                if (!plan[i].keep_tls) {
                    if (old->tls)
                        SSL_CTX_free(old->tls);
                    if (plan[i].tls)
                        SSL_CTX_up_ref(plan[i].tls);
                    old->tls = plan[i].tls;
                }
                next[k++] = old;
            }
        }
        if (!ls && plan[i].fd == -1) {
            /* Not ours yet and no socket for it: the bind failed on the control thread. */
            if (plan[i].tls)
                SSL_CTX_free(plan[i].tls);
            continue;
        }
        if (!ls) {
            ls = sy_xcalloc(1, sizeof(*ls));
            ls->w = w;
            ls->addr = plan[i].addr;
            ls->addrlen = plan[i].addrlen;
            ls->ev =
                evconnlistener_new(w->base, accept_cb, ls, LEV_OPT_CLOSE_ON_FREE, -1, plan[i].fd);
            if (!ls->ev) {
                close(plan[i].fd);
                free(ls);
                if (plan[i].tls)
                    SSL_CTX_free(plan[i].tls);
                continue;
            }
            evconnlistener_set_error_cb(ls->ev, accept_error_cb);
        } else if (plan[i].fd != -1) {
            close(plan[i].fd);
        }
        if (!plan[i].keep_tls) {
            if (ls->tls)
                SSL_CTX_free(ls->tls);
            ls->tls = plan[i].tls;
        }
        next[k++] = ls;
    }
    for (size_t j = 0; j < w->n_listeners; j++)
        if (w->listeners[j])
            listener_free(w->listeners[j]);
    free(w->listeners);
    w->listeners = next;
    w->n_listeners = k;
}

static void msg_free(struct worker_msg *m)
{
    for (size_t i = 0; i < m->n_plan; i++) {
        if (m->plan[i].fd != -1)
            close(m->plan[i].fd);
        if (m->plan[i].tls)
            SSL_CTX_free(m->plan[i].tls);
    }
    free(m->plan);
    tls_client_plans_free(m->clients, m->n_clients);
    sy_route_table_release(m->table);
    free(m);
}

/* The mailbox: take every snapshot in order, then act on a drain request. */
/* The answer to sy_workers_ping, from the loop: the mail before it has been taken. */
static void answer_ping(struct sy_worker *w)
{
    uint64_t asked = atomic_load_explicit(&w->ping, memory_order_acquire);
    if (asked == atomic_load_explicit(&w->pong, memory_order_relaxed))
        return;
    atomic_store_explicit(&w->pong, asked, memory_order_release);
    int fd = atomic_load_explicit(&w->ping_fd, memory_order_acquire);
    if (fd != -1) {
        uint64_t one = 1;
        ssize_t n = write(fd, &one, sizeof(one));
        (void)n; /* an eventfd: EAGAIN only when its counter is full, and it is read anyway */
    }
}

static void msg_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_worker *w = arg;
    uint64_t count;
    ssize_t r = read(w->msg_fd, &count, sizeof(count)); /* resets the eventfd */
    (void)r;
    pthread_mutex_lock(&w->mu);
    struct worker_msg *m = w->inbox;
    w->inbox = NULL;
    w->inbox_tail = &w->inbox;
    bool drain = w->drain_requested;
    unsigned drain_ms = w->drain_ms;
    pthread_mutex_unlock(&w->mu);
    while (m) {
        struct worker_msg *next = m->next;
        struct sy_route_table *old = w->table;
        drain_schedule(w, old, m->table);
        w->table = m->table;
        m->table = NULL;
        index_slots(w, old);
        sy_route_table_release(old); /* after: index_slots compares the configs */
        atomic_store_explicit(&w->installed, sy_route_table_generation(w->table),
                              memory_order_release);
        if (!w->draining) {
            apply_plan(w, m->plan, m->n_plan);
            m->n_plan = 0; /* taken */
        }
        upstream_set_tls(w, m->clients, m->n_clients);
        m->clients = NULL;
        m->n_clients = 0;
        upstream_forget_endpoints(w);
        msg_free(m);
        m = next;
    }
    hold_table_changed(w); /* held requests whose app is no longer held go on */
    if (drain)
        start_drain(w, drain_ms);
    answer_ping(w);
}

/* The heartbeat: a loop that turns stamps it; /healthz reads how old the stamp is. */
#define BEAT_MS 250

static void beat_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_worker *w = arg;
    atomic_store_explicit(&w->beat_ms, sy_now_ms(), memory_order_relaxed);
}
/* Tests only (tests/e2e/test_18_systemd_notify.py): every worker waits this long before its
 * loop first turns, so that a test can see that READY=1 waits for the workers. */
static unsigned start_delay_ms;

static void *worker_main(void *arg)
{
    struct sy_worker *w = arg;
    w->beat_ev = event_new(w->base, -1, EV_PERSIST, beat_cb, w);
    struct timeval beat = {0, BEAT_MS * 1000};
    event_add(w->beat_ev, &beat);
    beat_cb(-1, 0, w);
    if (start_delay_ms) {
        struct timespec ts = {start_delay_ms / 1000, (long)(start_delay_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    event_base_dispatch(w->base);
    event_free(w->beat_ev);
    w->beat_ev = NULL;
    drain_jobs_free(w);
    while (w->conns)
        w->conns->free(w->conns);
    hold_dispose(w);
    upstream_free_pools(w);
    exchange_cache_free(w);
    h2_server_cache_free();
    /* Bufferevents with deferred callbacks finish freeing themselves from the loop: give
     * it one more turn so nothing is left behind. */
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    return NULL;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The TLS contexts of `cfg`'s clusters, one per distinct setting, into every message. A
 * context that cannot be built is logged and left out: pools that have one keep it. */
static void plan_clients(struct sy_workers *ws, const struct sy_config *cfg,
                         struct worker_msg **msgs)
{
    struct tls_client_plan *v = sy_xcalloc(cfg->n_clusters ? cfg->n_clusters : 1, sizeof(*v));
    size_t n = 0;
    for (size_t c = 0; c < cfg->n_clusters; c++) {
        const struct sy_cluster_spec *cl = &cfg->clusters[c];
        const struct sy_cluster_tls *t = &cl->tls;
        bool h2 = cl->protocol == SY_PROTO_H2, dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = v[k].verify == t->verify && v[k].h2 == h2 && same_str(v[k].ca, t->ca) &&
                  same_str(v[k].cert, t->cert) && same_str(v[k].key, t->key);
        if (!t->on || dup)
            continue;
        const char *why = NULL;
        SSL_CTX *ctx = tls_store_client(ws->tls, t, h2, &why);
        if (!ctx) {
            sy_log(SY_LOG_ERROR, "tls", "cluster %s: %s (its pools keep their context)", cl->name,
                   why);
            continue;
        }
        v[n++] = (struct tls_client_plan){t->ca ? sy_xstrdup(t->ca) : NULL,
                                          t->cert ? sy_xstrdup(t->cert) : NULL,
                                          t->key ? sy_xstrdup(t->key) : NULL,
                                          t->verify,
                                          h2,
                                          ctx};
    }
    for (size_t i = 0; i < ws->n; i++) {
        struct tls_client_plan *copy = sy_xcalloc(n ? n : 1, sizeof(*copy));
        for (size_t j = 0; j < n; j++) {
            copy[j] = v[j];
            copy[j].ca = v[j].ca ? sy_xstrdup(v[j].ca) : NULL;
            copy[j].cert = v[j].cert ? sy_xstrdup(v[j].cert) : NULL;
            copy[j].key = v[j].key ? sy_xstrdup(v[j].key) : NULL;
            SSL_CTX_up_ref(v[j].ctx);
        }
        msgs[i]->clients = copy;
        msgs[i]->n_clients = n;
    }
    tls_client_plans_free(v, n);
}

/* The duplicates an upgrade hands over (sy_workers_listen_fds) for address `b`: of the
 * `n` new sockets, or, for an address bound before, the ones its old record has (moved). */
static void keep_bound_fds(struct sy_workers *ws, struct bound *b, const int *fds, size_t n)
{
    b->fds = NULL;
    b->n_fds = 0;
    if (!fds) {
        for (size_t i = 0; i < ws->n_bound; i++) {
            struct bound *old = &ws->bound[i];
            if (same_addr(&old->addr, old->addrlen, &b->addr, b->addrlen)) {
                b->fds = old->fds;
                b->n_fds = old->n_fds;
                old->fds = NULL;
                old->n_fds = 0;
                return;
            }
        }
        return;
    }
    b->fds = sy_xcalloc(n ? n : 1, sizeof(*b->fds));
    for (size_t i = 0; i < n; i++) {
        int d = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (d == -1)
            sy_log_errno(SY_LOG_WARN, "listen", "cannot keep a copy of a listener for upgrades");
        else
            b->fds[b->n_fds++] = d;
    }
}

static void close_bound_fds(struct bound *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < v[i].n_fds; j++)
            close(v[i].fds[j]);
        free(v[i].fds);
        v[i].fds = NULL;
        v[i].n_fds = 0;
    }
}

size_t sy_workers_listen_fds(const struct sy_workers *ws, int *out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < ws->n_bound; i++)
        for (size_t j = 0; j < ws->bound[i].n_fds; j++)
            if (k < max)
                out[k++] = ws->bound[i].fds[j];
            else
                k++;
    return k;
}

/* Every listener's TLS context, NULL for a cleartext one or one whose files do not load (then
 * *rc is SY_ERR_INVALID). */
static SSL_CTX **server_contexts(struct sy_workers *ws, const struct sy_config *cfg, int *rc)
{
    size_t n = cfg->n_listens;
    SSL_CTX **ctxs = sy_xcalloc(n ? n : 1, sizeof(*ctxs));
    for (size_t j = 0; j < n; j++) {
        const struct sy_listen_spec *spec = &cfg->listens[j];
        if (spec->tls_cert) {
            const char *why = NULL;
            ctxs[j] = tls_store_server(ws->tls, spec->tls_cert, spec->tls_key, &why);
            if (!ctxs[j]) {
                sy_log(SY_LOG_ERROR, "tls", "listener %s: %s", spec->address, why);
                *rc = SY_ERR_INVALID;
            }
        }
    }
    return ctxs;
}

static bool is_bound(const struct sy_workers *ws, const struct sy_listen_spec *spec)
{
    bool have = false;
    for (size_t b = 0; b < ws->n_bound && !have; b++)
        have = same_addr(&ws->bound[b].addr, ws->bound[b].addrlen, &spec->addr, spec->addrlen);
    return have;
}

/* Socket t goes to worker t % n: the inherited ones first (every one of them is accepted
 * from, or what waits in its queue would be lost), fresh ones for the workers left without.
 * An address bound before gets -1s. Returns *total sockets, or NULL (none left open) when
 * one cannot be bound. */
static int *listener_fds(struct sy_workers *ws, const struct sy_listen_spec *spec, bool have,
                         size_t *total)
{
    int *fds = sy_xcalloc(ws->n + n_inherited, sizeof(*fds));
    size_t k = have ? 0 : take_inherited(spec, fds);
    *total = k > ws->n ? k : ws->n;
    bool ok = true;
    for (size_t t = 0; t < *total; t++) {
        if (have)
            fds[t] = -1;
        else if (t >= k)
            fds[t] = open_listener(spec);
        if (!have && fds[t] == -1)
            ok = false;
    }
    if (ok)
        return fds;
    for (size_t t = 0; t < *total; t++)
        if (fds[t] != -1)
            close(fds[t]);
    free(fds);
    return NULL;
}

static void plan_to_workers(struct sy_workers *ws, struct worker_msg **msgs,
                            const struct sy_listen_spec *spec, const int *fds, size_t total,
                            SSL_CTX *tls, bool keep)
{
    for (size_t t = 0; t < total; t++) {
        struct worker_msg *m = msgs[t % ws->n];
        struct listener_plan *lp = &m->plan[m->n_plan++];
        lp->addr = spec->addr;
        lp->addrlen = spec->addrlen;
        lp->fd = fds[t];
        if (tls)
            SSL_CTX_up_ref(tls);
        lp->tls = tls;
        lp->keep_tls = keep;
    }
}

/* One listener into the workers' messages and, when it is served, into `bound[*n_bound]`.
 * Takes the reference on `tls`. Returns 0, or SY_ERR_SYS when it cannot be bound. */
static int plan_listener(struct sy_workers *ws, const struct sy_listen_spec *spec, SSL_CTX *tls,
                         bool strict, struct worker_msg **msgs, struct bound *bound,
                         size_t *n_bound)
{
    bool have = is_bound(ws, spec);
    /* The certificate and key do not make a pair right now (a renewal half done, or files
     * changed since the reload's check): a listener that already serves keeps its context
     * rather than close; a new one is not opened. */
    bool keep = spec->tls_cert && !tls;
    if (keep && (!have || strict))
        return 0;
    if (keep)
        sy_log(SY_LOG_WARN, "tls", "listener %s keeps its current certificate", spec->address);
    size_t total;
    int *fds = listener_fds(ws, spec, have, &total);
    if (!fds) {
        if (tls)
            SSL_CTX_free(tls);
        if (!strict)
            sy_log(SY_LOG_ERROR, "listen", "%s is not served: cannot bind it", spec->address);
        return SY_ERR_SYS;
    }
    plan_to_workers(ws, msgs, spec, fds, total, tls, keep);
    if (tls)
        SSL_CTX_free(tls);
    struct bound *b = &bound[(*n_bound)++];
    b->addr = spec->addr;
    b->addrlen = spec->addrlen;
    keep_bound_fds(ws, b, have ? NULL : fds, have ? 0 : total);
    free(fds);
    return 0;
}

/* Builds one message per worker for `table`: sockets for addresses not bound yet (one per
 * worker, SO_REUSEPORT), a TLS context per TLS listener and per cluster TLS setting (the
 * same contexts as before when their files are unchanged: their sessions and tickets go on).
 * An address that cannot be bound is logged and left out; at start-up (`strict`) that is
 * fatal. */
static int plan_listeners(struct sy_workers *ws, struct sy_route_table *table, bool strict,
                          struct worker_msg **msgs)
{
    const struct sy_config *cfg = sy_route_table_config(table);
    size_t n = cfg->n_listens;
    for (size_t i = 0; i < ws->n; i++) {
        msgs[i] = sy_xcalloc(1, sizeof(*msgs[i]));
        msgs[i]->table = sy_route_table_acquire(table);
        msgs[i]->plan = sy_xcalloc(n + n_inherited + 1, sizeof(*msgs[i]->plan));
    }
    struct bound *bound = sy_xcalloc(n ? n : 1, sizeof(*bound));
    size_t n_bound = 0;
    int rc = 0;
    /* Every TLS context first (reading and checking a key takes milliseconds), then every
     * socket: the ports start listening together, so a client that reaches one (a load
     * balancer's health check) does not find the next one still closed. */
    tls_store_begin(ws->tls);
    plan_clients(ws, cfg, msgs);
    SSL_CTX **ctxs = server_contexts(ws, cfg, &rc);
    for (size_t j = 0; j < n; j++) {
        int err = plan_listener(ws, &cfg->listens[j], ctxs[j], strict, msgs, bound, &n_bound);
        if (err)
            rc = err;
    }
    free(ctxs);
    tls_store_end(ws->tls);
    if (strict)
        drop_inherited();
    close_bound_fds(ws->bound, ws->n_bound);
    free(ws->bound);
    ws->bound = bound;
    ws->n_bound = n_bound;
    return rc;
}

/* Rings the worker's eventfd. The mailbox is the only thing two threads share, so libevent
 * runs without its own locks (no evthread_use_pthreads): every event operation on the request
 * path stays lock-free. */
static void wake(struct sy_worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->msg_fd, &one, sizeof(one));
    (void)n; /* EAGAIN means the counter is already non-zero: the worker will look anyway */
}

static void post(struct sy_worker *w, struct worker_msg *m)
{
    pthread_mutex_lock(&w->mu);
    *w->inbox_tail = m;
    w->inbox_tail = &m->next;
    pthread_mutex_unlock(&w->mu);
    wake(w);
}

/* An event loop whose epoll changes are collected over a loop turn and applied once: reading
 * is disabled and enabled again around requests, and EPOLLOUT comes and goes for what a write
 * left, and without the change list each of those was an epoll_ctl (6 per proxied request). A
 * change undone in the same turn costs nothing. Our fds are never dup()ed, the change
 * list's one caveat. */
static struct event_base *worker_base_new(void)
{
    struct event_config *ec = event_config_new();
    if (!ec)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

int sy_workers_new(struct sy_route_table *table, unsigned n, struct sy_workers **out)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)INT_MAX)
        fd_limit = (int)rl.rlim_cur;
    struct sy_workers *ws = sy_xcalloc(1, sizeof(*ws));
    ws->v = sy_xcalloc(n, sizeof(*ws->v));
    ws->n = n;
    ws->tls = tls_store_new();
    for (unsigned i = 0; i < n; i++) {
        struct sy_worker *w = &ws->v[i];
        w->id = i;
        w->msg_fd = -1;
        atomic_init(&w->ping_fd, -1);
        if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
            w->rng = sy_now_ms() * 0x9E3779B97F4A7C15ULL + i + 1;
        w->alog = sy_access_log_ring(i); /* NULL: no access log (opened before, by main) */
        w->table = sy_route_table_acquire(table);
        pthread_mutex_init(&w->mu, NULL);
        w->inbox_tail = &w->inbox;
        w->base = worker_base_new();
        if (!w->base) {
            sy_log(SY_LOG_ERROR, "worker", "cannot create an event base");
            sy_workers_free(ws);
            return SY_ERR_SYS;
        }
        w->socks = sy_sock_loop_new(w->base);
        if (!w->socks) {
            sy_log(SY_LOG_ERROR, "worker", "out of memory");
            sy_workers_free(ws);
            return SY_ERR_SYS;
        }
        w->msg_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->msg_fd == -1) {
            sy_log_errno(SY_LOG_ERROR, "worker", "eventfd");
            sy_workers_free(ws);
            return SY_ERR_SYS;
        }
        w->msg_ev = event_new(w->base, w->msg_fd, EV_READ | EV_PERSIST, msg_cb, w);
        event_add(w->msg_ev, NULL);
        index_slots(w, NULL);
    }
    struct worker_msg **msgs = sy_xcalloc(n, sizeof(*msgs));
    int rc = plan_listeners(ws, table, true, msgs);
    for (unsigned i = 0; i < n; i++) {
        if (rc == 0) {
            apply_plan(&ws->v[i], msgs[i]->plan, msgs[i]->n_plan), msgs[i]->n_plan = 0;
            upstream_set_tls(&ws->v[i], msgs[i]->clients, msgs[i]->n_clients);
            msgs[i]->clients = NULL;
            msgs[i]->n_clients = 0;
        }
        msg_free(msgs[i]);
    }
    free(msgs);
    if (rc) {
        sy_workers_free(ws);
        return rc;
    }
    *out = ws;
    return 0;
}

int sy_workers_start(struct sy_workers *ws)
{
    const char *delay = getenv("SWITCHYARD_TEST_WORKER_START_DELAY_MS");
    if (delay && *delay)
        start_delay_ms = (unsigned)strtoul(delay, NULL, 10) % 60000;
    for (size_t i = 0; i < ws->n; i++) {
        int err = pthread_create(&ws->v[i].thread, NULL, worker_main, &ws->v[i]);
        if (err) {
            errno = err;
            sy_log_errno(SY_LOG_ERROR, "worker", "cannot start worker %zu", i);
            return SY_ERR_SYS;
        }
        /* Named, so that top -H, perf and strace tell workers from the control thread. */
        char name[16]; /* the kernel keeps 15 bytes */
        snprintf(name, sizeof(name), "sy-worker-%u", (unsigned)(i % 100000));
        pthread_setname_np(ws->v[i].thread, name);
    }
    return 0;
}

void sy_workers_publish(struct sy_workers *ws, struct sy_route_table *table)
{
    struct worker_msg **msgs = sy_xcalloc(ws->n, sizeof(*msgs));
    plan_listeners(ws, table, false, msgs);
    for (size_t i = 0; i < ws->n; i++)
        post(&ws->v[i], msgs[i]);
    free(msgs);
    /* Return only when every worker routes with the new snapshot, so that "published" (and an
     * admin "ok") means every request that starts afterwards sees it. A worker takes its mail
     * at its next loop turn; a worker stuck longer than a second is logged, not waited for. */
    uint64_t gen = sy_route_table_generation(table);
    uint64_t deadline = sy_now_ms() + 1000;
    for (size_t i = 0; i < ws->n; i++) {
        while (atomic_load_explicit(&ws->v[i].installed, memory_order_acquire) < gen) {
            if (sy_now_ms() > deadline) {
                sy_log(SY_LOG_WARN, "worker", "worker %zu has not taken generation %llu yet", i,
                       (unsigned long long)gen);
                break;
            }
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
}

struct ep_stat *worker_ep_stat(struct sy_worker *w, const char *cluster, const char *endpoint)
{
    struct ep_stat *e = atomic_load_explicit(&w->ep_stats, memory_order_relaxed);
    for (; e; e = e->next)
        if (strcmp(e->cluster, cluster) == 0 && strcmp(e->endpoint, endpoint) == 0)
            return e;
    e = sy_xcalloc(1, sizeof(*e));
    e->cluster = sy_xstrdup(cluster);
    e->endpoint = sy_xstrdup(endpoint);
    e->next = atomic_load_explicit(&w->ep_stats, memory_order_relaxed);
    atomic_store_explicit(&w->ep_stats, e, memory_order_release);
    return e;
}

void worker_count_connect_error(struct sy_worker *w, const char *cluster, const char *endpoint,
                                enum sy_connect_error reason)
{
    struct ep_stat *e = worker_ep_stat(w, cluster, endpoint);
    counter_add(&e->errors[reason < SY_CONNERR_N ? reason : SY_CONNERR_OTHER], 1);
}

void sy_workers_connect_errors(struct sy_workers *ws, sy_endpoint_errors_cb cb, void *arg)
{
    /* Few entries (endpoints that failed): summed by a scan. */
    struct sy_endpoint_errors *v = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < ws->n; i++) {
        struct ep_stat *e = atomic_load_explicit(&ws->v[i].ep_stats, memory_order_acquire);
        for (; e; e = e->next) {
            size_t k = 0;
            while (k < n && !(strcmp(v[k].cluster, e->cluster) == 0 &&
                              strcmp(v[k].endpoint, e->endpoint) == 0))
                k++;
            if (k == n) {
                sy_xgrow((void **)&v, &cap, n + 1, sizeof(*v));
                v[n++] =
                    (struct sy_endpoint_errors){.cluster = e->cluster, .endpoint = e->endpoint};
            }
            for (size_t j = 0; j < SY_CONNERR_N; j++)
                v[k].errors[j] += atomic_load_explicit(&e->errors[j], memory_order_relaxed);
            v[k].open += atomic_load_explicit(&e->open, memory_order_relaxed);
            v[k].idle += atomic_load_explicit(&e->idle, memory_order_relaxed);
        }
    }
    for (size_t k = 0; k < n; k++)
        cb(&v[k], arg);
    free(v);
}

void sy_workers_listener_stats(struct sy_workers *ws, sy_listener_stats_cb cb, void *arg)
{
    struct sy_listener_stats *v = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < ws->n; i++) {
        struct lis_stat *s = atomic_load_explicit(&ws->v[i].lis_stats, memory_order_acquire);
        for (; s; s = s->next) {
            size_t k = 0;
            while (k < n && strcmp(v[k].listener, s->address) != 0)
                k++;
            if (k == n) {
                sy_xgrow((void **)&v, &cap, n + 1, sizeof(*v));
                v[n++] = (struct sy_listener_stats){.listener = s->address};
            }
            v[k].http1 += atomic_load_explicit(&s->conns[LPROTO_H1], memory_order_relaxed);
            v[k].h2 += atomic_load_explicit(&s->conns[LPROTO_H2], memory_order_relaxed);
            v[k].h2c += atomic_load_explicit(&s->conns[LPROTO_H2C], memory_order_relaxed);
            v[k].tls_ok += atomic_load_explicit(&s->tls_ok, memory_order_relaxed);
            v[k].tls_failed += atomic_load_explicit(&s->tls_failed, memory_order_relaxed);
            v[k].h2_parked += atomic_load_explicit(&s->h2_parked, memory_order_relaxed);
        }
    }
    for (size_t k = 0; k < n; k++)
        cb(&v[k], arg);
    free(v);
}

size_t sy_workers_health(struct sy_workers *ws, struct sy_worker_health *v, size_t max)
{
    uint64_t now = sy_now_ms();
    size_t n = ws->n < max ? ws->n : max;
    for (size_t i = 0; i < n; i++) {
        uint64_t beat = atomic_load_explicit(&ws->v[i].beat_ms, memory_order_relaxed);
        v[i] = (struct sy_worker_health){
            .id = ws->v[i].id,
            .running = beat != 0,
            .beat_age_ms = beat && now > beat ? now - beat : 0,
            .installed = atomic_load_explicit(&ws->v[i].installed, memory_order_acquire),
        };
    }
    return ws->n;
}

void sy_workers_ping(struct sy_workers *ws, uint64_t seq, int fd)
{
    for (size_t i = 0; i < ws->n; i++) {
        struct sy_worker *w = &ws->v[i];
        atomic_store_explicit(&w->ping_fd, fd, memory_order_release);
        atomic_store_explicit(&w->ping, seq, memory_order_release);
        wake(w);
    }
}

size_t sy_workers_answered(const struct sy_workers *ws, uint64_t seq)
{
    size_t n = 0;
    for (size_t i = 0; i < ws->n; i++)
        if (atomic_load_explicit(&ws->v[i].pong, memory_order_acquire) >= seq)
            n++;
    return n;
}

size_t sy_workers_count(const struct sy_workers *ws)
{
    return ws->n;
}

void sy_workers_drain(struct sy_workers *ws, unsigned drain_ms)
{
    /* The copies kept for an upgrade would keep the sockets open (queuing connections no one
     * accepts) once the workers close theirs. */
    close_bound_fds(ws->bound, ws->n_bound);
    for (size_t i = 0; i < ws->n; i++) {
        struct sy_worker *w = &ws->v[i];
        pthread_mutex_lock(&w->mu);
        w->drain_requested = true;
        w->drain_ms = drain_ms;
        pthread_mutex_unlock(&w->mu);
        wake(w);
    }
}

void sy_workers_drain_upgraded(struct sy_workers *ws, unsigned drain_ms)
{
    for (size_t i = 0; i < ws->n; i++) {
        pthread_mutex_lock(&ws->v[i].mu);
        ws->v[i].drain_soft = true;
        pthread_mutex_unlock(&ws->v[i].mu);
    }
    sy_workers_drain(ws, drain_ms);
}

void sy_workers_join(struct sy_workers *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        pthread_join(ws->v[i].thread, NULL);
}

void sy_workers_free(struct sy_workers *ws)
{
    if (!ws)
        return;
    for (size_t i = 0; i < ws->n; i++) {
        struct sy_worker *w = &ws->v[i];
        for (size_t j = 0; j < w->n_listeners; j++)
            listener_free(w->listeners[j]);
        free(w->listeners);
        free(w->scratch);
        free(w->slot_index);
        for (struct lis_stat *l = w->lis_stats, *next; l; l = next) {
            next = l->next;
            free(l->address);
            free(l);
        }
        for (struct ep_stat *e = w->ep_stats, *next; e; e = next) {
            next = e->next;
            free(e->cluster);
            free(e->endpoint);
            free(e);
        }
        for (struct traffic_slot *s = w->slots, *next; s; s = next) {
            next = s->next;
            free(s->app);
            free(s->cluster);
            free(s);
        }
        while (w->inbox) {
            struct worker_msg *m = w->inbox;
            w->inbox = m->next;
            msg_free(m);
        }
        if (w->drain_timer)
            event_free(w->drain_timer);
        sy_sock_loop_free(w->socks);
        if (w->msg_ev)
            event_free(w->msg_ev);
        if (w->msg_fd != -1)
            close(w->msg_fd);
        if (w->base)
            event_base_free(w->base);
        sy_route_table_release(w->table);
        pthread_mutex_destroy(&w->mu);
    }
    close_bound_fds(ws->bound, ws->n_bound);
    free(ws->bound);
    free(ws->v);
    tls_store_free(ws->tls);
    free(ws);
}
