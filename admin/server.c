/* SPDX-License-Identifier: MIT */
/* The admin socket: a UNIX stream socket on the control thread's event loop (never a
 * worker's). Each connection is checked once, on accept, with SO_PEERCRED (and
 * SO_PEERGROUPS), before it may take one of the SY_ADMIN_MAX_CLIENTS slots: a refused peer
 * takes none, is told `error: permission denied` and closed within LINGER_S, and the last
 * SY_ADMIN_OWNER_RESERVE slots are kept for root and the daemon's uid. Then every
 * line is one command, run to the end before the next is read, so a client's commands apply
 * in order; many clients are served at once. A line without its newline when the client
 * goes away is never run, and a line longer than SY_ADMIN_LINE_MAX closes the connection
 * unrun. An answer to a change waits, when the daemon says how, until every worker holds the
 * new snapshot: `ok` then means that every request started after it is routed by it. */
#define _GNU_SOURCE /* accept4, struct ucred: before any header */
#include "switchyard/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "admin_internal.h"

#define IDLE_TIMEOUT_S  600  /* an admin connection with nothing to say for this long closes */
#define APPLIED_POLL_US 200  /* how often an answer waiting for the data path looks again */
#define APPLIED_WAIT_MS 2000 /* after this, the answer goes anyway (logged) */
#define MAX_GROUPS      256
/* After a refusal: how long the client's last bytes are drained, at most, whatever it sends. */
#define LINGER_S        2
#define ACCEPT_PAUSE_MS 100 /* out of descriptors: accepting stops this long, then tries again */
/* Answers queued for a client that does not read: beyond this, its next command waits until
 * they drain. */
#define OUTPUT_MAX (4u << 20)

struct client {
    struct sy_admin *a;
    struct client *prev, *next;
    struct bufferevent *bev;
    struct sy_peer peer;
    uint32_t groups[MAX_GROUPS];
    bool closing;   /* close once the output is flushed */
    bool lingering; /* our side is shut: what the peer still sends is read and dropped */
    bool eof;       /* the peer has closed its side: answer what is complete, then close */
    bool refused;   /* counted in n_refused, not n_clients */
    struct event *deadline_ev; /* the end of the linger, however much the peer sends */
    /* A command that announced a payload waits for it. */
    char *pending_line;
    size_t pending_len, payload_need;
    /* An answer that waits for the data path to hold generation `wait_gen`. */
    bool waiting;
    uint64_t wait_gen, wait_start_ms;
    char *wait_out;
    size_t wait_len;
    struct event *wait_ev;
    /* A command whose handler answers later (the fleet's changes): its line, as logged. */
    struct sy_admin_later *later;
    char later_line[204];
    struct event *free_ev;
};

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void client_free(struct client *c)
{
    struct sy_admin *a = c->a;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->refused)
        a->n_refused--;
    else
        a->n_clients--;
    if (c->later)
        sy_admin_later_bind(c->later, NULL, NULL); /* the change goes on; nobody hears it */
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->wait_ev)
        event_free(c->wait_ev);
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    event_free(c->free_ev);
    free(c->pending_line);
    free(c->wait_out);
    free(c);
}

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
    client_free(arg);
}

/* Never frees from inside the connection's own callback: a zero-delay event does it. */
static void client_close(struct client *c)
{
    if (c->bev)
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    event_active(c->free_ev, 0, 0);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    client_close(arg);
}

/* Closes the connection LINGER_S from now at the latest: a timer of its own, which nothing
 * the peer sends pushes back (a read timeout would be re-armed by every byte). */
static void arm_deadline(struct client *c)
{
    if (!c->deadline_ev)
        c->deadline_ev = evtimer_new(c->a->base, deadline_cb, c);
    if (evtimer_pending(c->deadline_ev, NULL))
        return;
    struct timeval tv = {LINGER_S, 0};
    evtimer_add(c->deadline_ev, &tv);
}

/* Once the output is out: closes, or, when the peer may still be sending (a refusal, an
 * overlong line), shuts our side and drops what it sends for at most LINGER_S, so that it
 * reads our answer instead of failing on a write to a closed socket (EPIPE). */
static void finish(struct client *c)
{
    if (c->eof) {
        client_close(c);
        return;
    }
    c->lingering = true;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    arm_deadline(c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
}

/* Closes once what is queued has been written. */
static void close_after_flush(struct client *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        finish(c);
}

static void send_text(struct client *c, const char *s)
{
    bufferevent_write(c->bev, s, strlen(s));
}

static void process(struct client *c);

static void send_answer(struct client *c, const char *out, size_t len)
{
    bufferevent_write(c->bev, out, len);
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    struct sy_admin *a = c->a;
    bool done = a->applied(c->wait_gen, a->applied_arg);
    uint64_t waited = sy_now_ms() - c->wait_start_ms;
    if (!done && waited < APPLIED_WAIT_MS) {
        struct timeval tv = {0, APPLIED_POLL_US};
        evtimer_add(c->wait_ev, &tv);
        return;
    }
    if (!done)
        sy_log(SY_LOG_WARN, "admin",
               "generation %" PRIu64 " not installed by every worker after %" PRIu64
               " ms: answering anyway",
               c->wait_gen, waited);
    c->waiting = false;
    send_answer(c, c->wait_out, c->wait_len);
    free(c->wait_out);
    c->wait_out = NULL;
    process(c); /* the lines that came meanwhile */
}

/* The line as logged: at most 200 bytes, anything unprintable shown as '?'. */
static void loggable(const char *line, size_t len, char out[204])
{
    size_t n = len > 200 ? 200 : len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        out[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    if (len > n) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Logs a command's outcome and sends its answer, or holds it until the data path has
 * installed what it published. */
static void answer(struct client *c, const char *shown, const struct sy_reply *reply,
                   uint64_t published)
{
    struct sy_admin *a = c->a;
    if (reply->failed)
        sy_log(SY_LOG_INFO, "admin", "uid %" PRIu32 " pid %" PRId32 ": %s: error: %s", c->peer.uid,
               c->peer.pid, shown, reply->error);
    else
        sy_log(SY_LOG_DEBUG, "admin", "uid %" PRIu32 " pid %" PRId32 ": %s: ok", c->peer.uid,
               c->peer.pid, shown);
    size_t out_len;
    char *out = sy_admin_format(a, reply, &out_len);
    if (published && a->applied && !a->applied(published, a->applied_arg)) {
        c->waiting = true;
        c->wait_gen = published;
        c->wait_start_ms = sy_now_ms();
        c->wait_out = out;
        c->wait_len = out_len;
        if (!c->wait_ev)
            c->wait_ev = evtimer_new(a->base, wait_cb, c);
        struct timeval tv = {0, APPLIED_POLL_US};
        evtimer_add(c->wait_ev, &tv);
        return;
    }
    send_answer(c, out, out_len);
    free(out);
}

/* A deferred answer is complete (sy_admin_later_done). */
static void later_cb(struct sy_reply *reply, uint64_t published, void *arg)
{
    struct client *c = arg;
    c->later = NULL;
    c->waiting = false;
    answer(c, c->later_line, reply, published);
    if (!c->waiting)
        process(c); /* the lines that came meanwhile */
}

/* Runs one command (with its payload, when it has one) and sends or holds the answer. */
static void run(struct client *c, const char *line, size_t len, const char *payload,
                size_t payload_len)
{
    struct sy_admin *a = c->a;
    struct sy_reply reply;
    sy_reply_init(&reply, sy_admin_line_is_json(line, len));
    uint64_t published = 0;
    ssize_t need =
        sy_admin_exec(a, line, len, payload, payload_len, &c->peer, unix_ms(), &reply, &published);
    if (need > 0) {
        c->pending_line = sy_xstrndup(line, len);
        c->pending_len = len;
        c->payload_need = (size_t)need;
        bufferevent_setwatermark(c->bev, EV_READ, 0, c->payload_need);
        sy_reply_dispose(&reply);
        return;
    }
    char shown[204];
    loggable(line, len, shown);
    if (reply.later) {
        c->later = reply.later;
        c->waiting = true;
        memcpy(c->later_line, shown, sizeof(shown));
        sy_admin_later_bind(c->later, later_cb, c);
        sy_reply_dispose(&reply);
        return;
    }
    answer(c, shown, &reply, published);
    sy_reply_dispose(&reply);
}

static void process(struct client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (!c->waiting && !c->closing) {
        if (evbuffer_get_length(out) > OUTPUT_MAX)
            return; /* write_cb comes back once the client has read */
        size_t avail = evbuffer_get_length(in);
        if (c->payload_need) {
            if (avail < c->payload_need)
                break;
            size_t need = c->payload_need;
            char *payload = sy_xmalloc(need);
            evbuffer_remove(in, payload, need);
            char *line = c->pending_line;
            size_t len = c->pending_len;
            c->pending_line = NULL;
            c->payload_need = 0;
            bufferevent_setwatermark(c->bev, EV_READ, 0, SY_ADMIN_LINE_MAX + 2);
            run(c, line, len, payload, need);
            free(payload);
            free(line);
            continue;
        }
        size_t eol_len = 0;
        struct evbuffer_ptr pos = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        /* A line may end in CR LF: SY_ADMIN_LINE_MAX bytes, then at most a CR. */
        bool too_long = pos.pos == -1 ? avail > SY_ADMIN_LINE_MAX + 1
                                      : (size_t)pos.pos > SY_ADMIN_LINE_MAX + 1 ||
                                            ((size_t)pos.pos == SY_ADMIN_LINE_MAX + 1 &&
                                             evbuffer_pullup(in, pos.pos)[pos.pos - 1] != '\r');
        if (too_long) {
            sy_log(SY_LOG_INFO, "admin",
                   "uid %" PRIu32 " pid %" PRId32 ": line longer than %d bytes: closed unrun",
                   c->peer.uid, c->peer.pid, SY_ADMIN_LINE_MAX);
            send_text(c, "error: line too long\n");
            close_after_flush(c);
            return;
        }
        if (pos.pos == -1)
            break;
        size_t len = (size_t)pos.pos;
        char line[SY_ADMIN_LINE_MAX + 2];
        evbuffer_remove(in, line, len + eol_len);
        if (len > 0 && line[len - 1] == '\r')
            len--;
        run(c, line, len, NULL, 0);
    }
    if (c->eof && !c->waiting && !c->closing) {
        size_t left = evbuffer_get_length(in);
        if (left > 0)
            sy_log(SY_LOG_DEBUG, "admin",
                   "uid %" PRIu32 " pid %" PRId32 " closed with %zu bytes of an unfinished %s: "
                   "ignored",
                   c->peer.uid, c->peer.pid, left, c->payload_need ? "payload" : "line");
        close_after_flush(c);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (c->lingering) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    process(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (c->closing && !c->lingering)
        finish(c);
    else if (!c->closing && !c->lingering)
        process(c); /* commands held back while the client did not read */
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    if (c->lingering) {
        client_close(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        c->eof = true;
        process(c);
        return;
    }
    /* An error or the idle timeout: nothing more can be said. */
    client_close(c);
}

static void peer_of(int fd, struct client *c)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    c->peer.uid = UINT32_MAX; /* unknown: refused unless the kernel says otherwise */
    c->peer.gid = UINT32_MAX;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof(cred)) {
        c->peer.uid = cred.uid;
        c->peer.gid = cred.gid;
        c->peer.pid = cred.pid;
    }
#ifdef SO_PEERGROUPS
    gid_t groups[MAX_GROUPS];
    len = sizeof(groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
        size_t n = len / sizeof(gid_t);
        for (size_t i = 0; i < n && i < MAX_GROUPS; i++)
            c->groups[i] = groups[i];
        c->peer.groups = c->groups;
        c->peer.n_groups = n < MAX_GROUPS ? n : MAX_GROUPS;
    }
#endif
}

/* Whether a refusal may be logged now: at most one line a second, so that a peer looping on
 * connect() cannot fill the log. `more` receives what the line adds about the refusals
 * since the last one that were not logged (or ""). */
static bool refusal_log_due(struct sy_admin *a, char more[64])
{
    uint64_t now = sy_now_ms();
    if (a->refusal_log_ms && now - a->refusal_log_ms < 1000) {
        a->refusals_unlogged++;
        return false;
    }
    a->refusal_log_ms = now;
    more[0] = '\0';
    if (a->refusals_unlogged)
        snprintf(more, 64, " (and %u refusals not logged since the last line)",
                 a->refusals_unlogged);
    a->refusals_unlogged = 0;
    return true;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sy_admin *a = arg;
    event_add(a->accept_ev, NULL);
}

/* Out of descriptors: the connection stays in the backlog and the socket stays readable, so
 * accepting again at once would spin. Accepting stops for ACCEPT_PAUSE_MS; the first pause
 * of a run is logged, and the accept that ends the run. */
static void pause_accepting(struct sy_admin *a)
{
    if (a->accept_pauses++ == 0)
        sy_log_errno(SY_LOG_WARN, "admin",
                     "out of file descriptors: accepting paused, tried again every %d ms",
                     ACCEPT_PAUSE_MS);
    event_del(a->accept_ev);
    if (!a->pause_ev)
        a->pause_ev = evtimer_new(a->base, resume_cb, a);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(a->pause_ev, &tv);
}

/* Gives the accepted `fd` to `c` and serves it. False (fd closed, c freed) when the event
 * objects cannot be made. */
static bool client_open(struct sy_admin *a, struct client *c, int fd)
{
    c->bev = bufferevent_socket_new(a->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    c->free_ev = event_new(a->base, -1, 0, free_cb, c);
    if (!c->bev || !c->free_ev) {
        if (!c->bev)
            close(fd);
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->free_ev)
            event_free(c->free_ev);
        free(c);
        return false;
    }
    c->next = a->clients;
    if (a->clients)
        a->clients->prev = c;
    a->clients = c;
    if (c->refused)
        a->n_refused++;
    else
        a->n_clients++;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    struct timeval idle = {IDLE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &idle, &idle);
    bufferevent_setwatermark(c->bev, EV_READ, 0, SY_ADMIN_LINE_MAX + 2);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return true;
}

/* Says `text` and closes at once: for a peer that gets no slot. The socket is new and empty,
 * so the short write does not block; if it fails, the close says enough. */
static void say_and_close(int fd, const char *text)
{
    ssize_t n = write(fd, text, strlen(text));
    (void)n;
    close(fd);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    struct sy_admin *a = arg;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(a);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                     errno != ECONNABORTED)
                sy_log_errno(SY_LOG_WARN, "admin", "accept");
            return;
        }
        if (a->accept_pauses) {
            sy_log(SY_LOG_INFO, "admin", "accepting again after %u pauses (out of descriptors)",
                   a->accept_pauses);
            a->accept_pauses = 0;
        }
        /* Credentials first: a peer gets a slot only once it is known to be allowed one. */
        struct client *c = sy_xcalloc(1, sizeof(*c));
        c->a = a;
        peer_of(fd, c);
        const struct sy_admin_spec *spec = NULL;
        if (a->state)
            spec = &sy_route_table_config(sy_state_table(a->state))->admin;
        uint32_t euid = (uint32_t)geteuid();
        enum sy_admin_access access = sy_admin_peer_access(spec, euid, &c->peer);
        char more[64];
        if (access == SY_ADMIN_DENIED) {
            if (refusal_log_due(a, more))
                sy_log(SY_LOG_WARN, "admin",
                       "refused uid %" PRIu32 " gid %" PRIu32 " pid %" PRId32
                       ": not root, not our uid, not in admin.allow_uids, allow_gids, "
                       "allow_read_uids or allow_read_gids%s",
                       c->peer.uid, c->peer.gid, c->peer.pid, more);
            if (a->n_refused >= SY_ADMIN_MAX_REFUSED) {
                /* Enough refused peers are lingering already: this one is not drained. */
                say_and_close(fd, "error: permission denied\n");
                free(c);
                continue;
            }
            c->refused = true;
        } else {
            size_t cap = access == SY_ADMIN_OWNER ? SY_ADMIN_MAX_CLIENTS
                                                  : SY_ADMIN_MAX_CLIENTS - SY_ADMIN_OWNER_RESERVE;
            if (a->n_clients >= cap) {
                if (refusal_log_due(a, more))
                    sy_log(SY_LOG_WARN, "admin",
                           "refused uid %" PRIu32 " pid %" PRId32
                           ": %zu admin connections open, of %d (the last %d are kept for root "
                           "and uid %" PRIu32 ")%s",
                           c->peer.uid, c->peer.pid, a->n_clients, SY_ADMIN_MAX_CLIENTS,
                           SY_ADMIN_OWNER_RESERVE, euid, more);
                say_and_close(fd, "error: too many admin connections\n");
                free(c);
                continue;
            }
            c->peer.read_only = access == SY_ADMIN_READ;
        }
        if (!client_open(a, c, fd))
            continue;
        if (c->refused) {
            send_text(c, "error: permission denied\n");
            arm_deadline(c);
            close_after_flush(c);
        }
    }
}

/* A socket file already at `path`: a live daemon's (refuse) or a stale one (remove). */
static int clear_stale(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == -1)
        return errno == ENOENT ? 0 : SY_ERR_SYS;
    if (!S_ISSOCK(st.st_mode)) {
        sy_log(SY_LOG_ERROR, "admin", "%s exists and is not a socket: not replacing it", path);
        return SY_ERR_INVALID;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return SY_ERR_SYS;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    close(fd);
    if (rc == 0) {
        sy_log(SY_LOG_ERROR, "admin", "%s is in use by a running process (another switchyard?)",
               path);
        return SY_ERR_INVALID;
    }
    if (e != ECONNREFUSED && e != ENOENT) {
        errno = e;
        sy_log_errno(SY_LOG_ERROR, "admin", "cannot tell whether %s is in use", path);
        return SY_ERR_SYS;
    }
    if (unlink(path) == -1 && errno != ENOENT) {
        sy_log_errno(SY_LOG_ERROR, "admin", "cannot remove the stale socket %s", path);
        return SY_ERR_SYS;
    }
    return 0;
}

/* Serves the socket `fd` at `path` (its file is `st`): accepting starts on `base`. */
static void start_accepting(struct sy_admin *a, struct event_base *base, const char *path, int fd,
                            const struct stat *st)
{
    a->base = base;
    a->fd = fd;
    a->path = sy_xstrdup(path);
    a->inode = st->st_ino;
    a->dev = st->st_dev;
    a->accept_ev = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, a);
    event_add(a->accept_ev, NULL);
}

int sy_admin_listen(struct sy_admin *a, struct event_base *base, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        sy_log(SY_LOG_ERROR, "admin", "socket path %s is too long", path);
        return SY_ERR_INVALID;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int rc = clear_stale(path);
    if (rc)
        return rc;
    const struct sy_admin_spec *spec =
        a->state ? &sy_route_table_config(sy_state_table(a->state))->admin : NULL;
    bool lists = spec && (spec->n_allow_uids > 0 || spec->n_allow_gids > 0 ||
                          spec->n_allow_read_uids > 0 || spec->n_allow_read_gids > 0);
    mode_t mode = lists ? 0666 : 0600;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        sy_log_errno(SY_LOG_ERROR, "admin", "socket");
        return SY_ERR_SYS;
    }
    /* The socket is never reachable with a wider mode than it is meant to have: the umask
     * applies at bind, chmod then sets the final mode. */
    mode_t old = umask(0177);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (rc == -1) {
        errno = e;
        sy_log_errno(SY_LOG_ERROR, "admin", "cannot bind the admin socket %s", path);
        close(fd);
        return SY_ERR_SYS;
    }
    struct stat st;
    if (chmod(path, mode) == -1 || listen(fd, 64) == -1 || stat(path, &st) == -1) {
        sy_log_errno(SY_LOG_ERROR, "admin", "cannot set up the admin socket %s", path);
        close(fd);
        unlink(path);
        return SY_ERR_SYS;
    }
    start_accepting(a, base, path, fd, &st);
    sy_log(SY_LOG_INFO, "admin", "listening on %s (mode %04o%s)", path, (unsigned)mode,
           lists ? ": admin.allow_uids / allow_gids / allow_read_uids / allow_read_gids guard it"
                 : "");
    return 0;
}

/* Accepting stops for good (the socket itself is the caller's to close). */
static void stop_accepting(struct sy_admin *a)
{
    if (a->accept_ev)
        event_free(a->accept_ev);
    a->accept_ev = NULL;
    if (a->pause_ev)
        event_free(a->pause_ev);
    a->pause_ev = NULL;
}

void sy_admin_close_socket(struct sy_admin *a)
{
    if (!a)
        return;
    while (a->clients)
        client_free(a->clients);
    stop_accepting(a);
    if (a->path) {
        close(a->fd);
        /* Only our own socket: a newer daemon may have replaced it. */
        struct stat st;
        if (stat(a->path, &st) == 0 && st.st_ino == a->inode && st.st_dev == a->dev)
            unlink(a->path);
        free(a->path);
        a->path = NULL;
    }
}

void sy_admin_free(struct sy_admin *a)
{
    if (!a)
        return;
    sy_admin_close_socket(a);
    free(a->tables);
    free(a);
}

int sy_admin_listen_fd(struct sy_admin *a, struct event_base *base, const char *path, int fd)
{
    struct stat st;
    if (stat(path, &st) == -1) {
        sy_log_errno(SY_LOG_ERROR, "admin", "the admin socket %s taken over", path);
        close(fd);
        return SY_ERR_SYS;
    }
    start_accepting(a, base, path, fd, &st);
    sy_log(SY_LOG_INFO, "admin", "listening on %s (taken over from the process replaced)", path);
    return 0;
}

int sy_admin_socket_fd(const struct sy_admin *a)
{
    return a && a->path ? a->fd : -1;
}

void sy_admin_pause_socket(struct sy_admin *a, bool paused)
{
    if (!a || !a->accept_ev)
        return;
    if (paused)
        event_del(a->accept_ev);
    else
        event_add(a->accept_ev, NULL);
}

void sy_admin_hand_over_socket(struct sy_admin *a)
{
    if (!a || !a->path)
        return;
    /* The socket file is the new process's now: closed here, never unlinked. */
    stop_accepting(a);
    close(a->fd);
    free(a->path);
    a->path = NULL;
}
