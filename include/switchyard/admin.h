/* SPDX-License-Identifier: MIT */
/* The admin socket: a UNIX stream socket served by the control thread's event loop, one
 * command per line of text, every answer ending with `ok` or `error: <why>` (or, for a
 * command prefixed with `json` or carrying `--json`, one line holding one JSON object). Peers
 * are checked with SO_PEERCRED. The commands come from tables that modules register; `help`
 * is built from them. This is the server side: the socket, the command set and the routing
 * commands; the client side (switchyardctl, `switchyard -t`) is switchyard/admin_client.h. */
#ifndef SWITCHYARD_ADMIN_H
#define SWITCHYARD_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "switchyard/admin_client.h"
#include "switchyard/base.h"
#include "switchyard/config.h"
#include "switchyard/counters.h"
#include "switchyard/json.h"
#include "switchyard/state.h"

/** Most words in one command. */
#define SY_ADMIN_MAX_ARGS 128
/** Largest payload (`diff`: the file to compare). */
#define SY_ADMIN_PAYLOAD_MAX (4u << 20)
/** Admin connections served at once; more are refused. */
#define SY_ADMIN_MAX_CLIENTS 64
/** Of those, how many only root and the daemon's own uid may take: the users of the allow
 * lists cannot lock them out. */
#define SY_ADMIN_OWNER_RESERVE 8
/** Refused peers being told so at once; more are closed without a word. They hold no slot. */
#define SY_ADMIN_MAX_REFUSED 16

/** The process at the other end of an admin connection (SO_PEERCRED, SO_PEERGROUPS). */
struct sy_peer {
    uint32_t uid, gid;
    int32_t pid;
    const uint32_t *groups; /* supplementary groups, when the kernel told them */
    size_t n_groups;
    bool read_only; /* admitted by admin.allow_read_*: only the commands that read run */
};

/** What a peer may do on the admin socket. */
enum sy_admin_access {
    SY_ADMIN_DENIED = 0,
    SY_ADMIN_READ,  /* status, explain, history, ident, help */
    SY_ADMIN_FULL,  /* every command */
    SY_ADMIN_OWNER, /* every command, and the slots kept for root and the daemon's uid */
};

/**
 * What `peer` may do on the admin socket of a daemon running as `euid`: root and the
 * daemon's own uid are SY_ADMIN_OWNER; a uid in `spec->allow_uids` or a primary or
 * supplementary gid in `spec->allow_gids` is SY_ADMIN_FULL; failing those, a uid in
 * `spec->allow_read_uids` or a gid in `spec->allow_read_gids` is SY_ADMIN_READ; anyone else
 * SY_ADMIN_DENIED. `spec` may be NULL (no lists). Any thread.
 */
enum sy_admin_access sy_admin_peer_access(const struct sy_admin_spec *spec, uint32_t euid,
                                          const struct sy_peer *peer);

/** Whether `peer` may run every command (sy_admin_peer_access() >= SY_ADMIN_FULL). */
bool sy_admin_peer_allowed(const struct sy_admin_spec *spec, uint32_t euid,
                           const struct sy_peer *peer);

/** Whether the command `name` only reads (a peer with SY_ADMIN_READ may run it). */
bool sy_admin_cmd_is_read_only(const char *name);

/* -- replies ---------------------------------------------------------------------------------- */

/** An answer being built: lines of text, or the members of one JSON object. */
struct sy_reply {
    bool json;
    /* Text lines, or JSON members (each preceded by ',' where one is needed: out.comma[0] is
     * set, the server's own members come first). */
    struct sy_jw out;
    bool failed;
    char error[512];              /* when failed: the reason (one line) */
    struct sy_admin_later *later; /* set when the handler answers later (sy_admin_defer) */
};

void sy_reply_init(struct sy_reply *r, bool json);
void sy_reply_dispose(struct sy_reply *r);

/** Appends text (text mode only: ignored in JSON mode). */
void sy_reply_printf(struct sy_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Marks the answer failed with a reason for a person (the first reason wins). Returns
 * SY_ERR_INVALID, for `return sy_reply_error(r, ...)`. */
int sy_reply_error(struct sy_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON members (JSON mode only: ignored in text mode), written by switchyard/json.h's writer.
 * `key` is NULL inside arrays. */
void sy_json_begin_object(struct sy_reply *r, const char *key);
void sy_json_end_object(struct sy_reply *r);
void sy_json_begin_array(struct sy_reply *r, const char *key);
void sy_json_end_array(struct sy_reply *r);
void sy_json_str(struct sy_reply *r, const char *key, const char *value); /* NULL -> null */
void sy_json_uint(struct sy_reply *r, const char *key, uint64_t value);
void sy_json_int(struct sy_reply *r, const char *key, int64_t value);
void sy_json_bool(struct sy_reply *r, const char *key, bool value);
void sy_json_null(struct sy_reply *r, const char *key);
/** A value already written as JSON (by another sy_reply's writer: `json` is trusted). */
void sy_json_raw(struct sy_reply *r, const char *key, const char *json, size_t len);

/* -- commands --------------------------------------------------------------------------------- */

/** One command as a handler sees it. Everything is borrowed for the call. */
struct sy_admin_req {
    int argc;
    char **argv;         /* argv[0] is the command's name; `json` and `--json` are removed */
    const char *command; /* the words joined by single spaces: what the journal records */
    struct sy_peer peer;
    uint64_t now_ms;     /* unix time in milliseconds */
    const char *payload; /* the bytes announced by a command that takes a payload, or NULL */
    size_t payload_len;
    struct sy_reply *reply;
    void *ctx; /* the registering module's context */
    /* Set by a handler that published a snapshot: the answer waits until the data path has
     * it (see sy_admin_set_applied). */
    uint64_t published;
};

struct sy_admin_later;

/**
 * Makes the answer to `req` wait: the handler returns 0 at once and fills the reply that
 * sy_admin_later_reply() gives (what it wrote into req->reply so far is moved there) when its
 * work is done (the fleet's: etcd committed, every member applied), then calls
 * sy_admin_later_done(). req->reply is left empty, with `later` set for the caller of
 * sy_admin_exec() to bind. Control thread.
 */
struct sy_admin_later *sy_admin_defer(struct sy_admin_req *req);
struct sy_reply *sy_admin_later_reply(struct sy_admin_later *l);
/** The answer is complete: hands it to whoever waits (then frees `l`). `published` as in
 * sy_admin_req. */
void sy_admin_later_done(struct sy_admin_later *l, uint64_t published);
typedef void (*sy_admin_later_cb)(struct sy_reply *reply, uint64_t published, void *arg);
/** Who gets the answer (the server, for its connection); NULL: nobody any more (the peer
 * left), the work still completes. */
void sy_admin_later_bind(struct sy_admin_later *l, sy_admin_later_cb cb, void *arg);

/** A command's handler: 0 when it succeeded (answer `ok`), or a negative sy_err after
 * sy_reply_error(). */
typedef int (*sy_admin_cmd_cb)(struct sy_admin_req *req);

/**
 * How many payload bytes the command line `argv` announces (0: none), or a negative sy_err
 * after sy_reply_error().
 */
typedef ssize_t (*sy_admin_payload_cb)(int argc, char **argv, struct sy_reply *reply);

struct sy_admin_cmd {
    const char *name;
    const char *help; /* one line: "words  : what it does" */
    sy_admin_cmd_cb handler;
    sy_admin_payload_cb payload; /* NULL for a command without a payload */
};

struct sy_admin;

/**
 * The command set without a socket (for the server, the tests and the fuzz target). `state`
 * gives `ident` its generation and journal sequence and the server its allow lists; it may be
 * NULL. Commands `help` and `ident` are built in.
 */
struct sy_admin *sy_admin_new(struct sy_state *state);

/**
 * Registers a table (ended by a {NULL} entry; borrowed for the admin's life) whose handlers get
 * `ctx`. Call before serving.
 */
void sy_admin_register(struct sy_admin *a, const struct sy_admin_cmd *table, void *ctx);

/** Splits a line into words (spaces and tabs; "double quotes" with \" and \\ keep a word
 * whole). Returns the count, or -1 with a reason in `why` (static text). `buf` receives the
 * words (size >= len + 1); argv has room for SY_ADMIN_MAX_ARGS. */
int sy_admin_split(const char *line, size_t len, char *buf, char **argv, const char **why);

/**
 * Runs one command line (without its newline) and fills `reply` (initialised by the caller;
 * its mode is chosen from the line). When the command announces a payload, returns its size
 * (> 0) without running it: call again with the payload. Otherwise returns 0 once the
 * command ran (reply->failed says how). `*published` is set to the generation a change
 * published (0: none). A command that does not only read, from a `peer->read_only` peer, is
 * refused before it runs (or announces a payload). Control thread.
 */
ssize_t sy_admin_exec(struct sy_admin *a, const char *line, size_t len, const char *payload,
                      size_t payload_len, const struct sy_peer *peer, uint64_t now_ms,
                      struct sy_reply *reply, uint64_t *published);

/** Whether `line` asks for a JSON answer (a `json` first word or `--json`). */
bool sy_admin_line_is_json(const char *line, size_t len);

/**
 * Formats a finished reply for the wire into a new string (free() it): the text lines then
 * `ok` / `error: why`, or one JSON object line {"ok":..,"generation":..,"journal_seq":..,...}.
 */
char *sy_admin_format(const struct sy_admin *a, const struct sy_reply *r, size_t *len);

typedef bool (*sy_admin_applied_cb)(uint64_t generation, void *arg);

/**
 * Makes answers to changes wait until `applied(generation)` is true (polled, at most 2 s):
 * the data path has installed the snapshot, so that every request started after `ok` sees
 * it. Without it (NULL), `ok` follows the publish at once.
 */
void sy_admin_set_applied(struct sy_admin *a, sy_admin_applied_cb applied, void *arg);

struct event_base;

/**
 * Creates the socket at `path` (mode 0600, or 0666 when the config has allow lists: the peer
 * check then guards it; a stale socket is replaced, a live one is an error) and serves it on
 * `base`. Returns 0 or a negative sy_err after logging why. Control thread.
 */
int sy_admin_listen(struct sy_admin *a, struct event_base *base, const char *path);

/**
 * Zero-downtime upgrade, new process: serves the listening socket `fd` (taken over, with its
 * file at `path`, from the process replaced) as sy_admin_listen would have. Takes `fd`.
 * Returns 0 or SY_ERR_SYS (fd closed). Control thread.
 */
int sy_admin_listen_fd(struct sy_admin *a, struct event_base *base, const char *path, int fd);

/** The listening socket's fd, or -1 (none). For an upgrade to hand it over. */
int sy_admin_socket_fd(const struct sy_admin *a);

/**
 * Stops (`paused`) or resumes accepting admin connections, the socket kept: while the
 * journal is handed over to a new process, commands wait in the backlog. NULL: no-op.
 */
void sy_admin_pause_socket(struct sy_admin *a, bool paused);

/**
 * The new process serves the socket now: stops accepting and closes our copy without
 * removing the file (connections already open still run). NULL: no-op.
 */
void sy_admin_hand_over_socket(struct sy_admin *a);

/** Closes the socket and every connection and removes the socket file; the command set stays
 * (sy_admin_exec still runs). NULL: no-op. */
void sy_admin_close_socket(struct sy_admin *a);

/** Closes the socket and every connection, removes the socket file, frees. NULL: no-op. */
void sy_admin_free(struct sy_admin *a);

/* -- the routing commands (admin/commands.c) ------------------------------------------------- */

/** Sums the data path's traffic counters (sy_workers_traffic, for a daemon). */
typedef void (*sy_admin_traffic_cb)(void *arg, sy_traffic_cb cb, void *cb_arg);

struct sy_exclusive;
struct sy_guard;
struct sy_ramper;
struct sy_fleet;

struct sy_admin_routing {
    struct sy_state *state;
    sy_admin_traffic_cb traffic; /* NULL: no counters */
    void *traffic_arg;
    const struct sy_admin *admin;   /* the socket `status` names as admin_socket; NULL: the
                                       file's admin.socket */
    struct sy_exclusive *exclusive; /* the exclusive switch (admin/exclusive.c); NULL: none */
    struct sy_guard *guard;         /* the guards (admin/guard.c); NULL: none */
    struct sy_ramper *ramper;       /* the ramps (admin/ramp.c); NULL: none */
    struct sy_fleet *fleet;         /* the fleet (admin/fleet.c); NULL: no `fleet:` */
    /* The fleet flags of the change being handled (`--local`, `--wait`, `--no-wait`). */
    bool req_local, req_wait;
};

/**
 * Registers status, weights, switch, revert, release, reload, explain, history and diff
 * against `env` (borrowed for the admin's life).
 */
void sy_admin_routing_init(struct sy_admin *a, struct sy_admin_routing *env);

/** Registers `maintenance` against `env` (admin/maintenance.c; sy_admin_routing_init calls it). */
void sy_admin_maintenance_init(struct sy_admin *a, struct sy_admin_routing *env);

#endif
