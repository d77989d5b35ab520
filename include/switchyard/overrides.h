/* SPDX-License-Identifier: MIT */
/* The operator's overrides and the journal that makes them durable. An override gives one app
 * weights by cluster name, above the file's; the set of overrides in force is what replaying
 * the journal (the `state` file) yields. Every change is one appended record, fsynced before
 * the caller acknowledges it; the journal is compacted into one snapshot record when it grows.
 * Control thread only (nothing here locks). */
#ifndef SWITCHYARD_OVERRIDES_H
#define SWITCHYARD_OVERRIDES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "switchyard/base.h"
#include "switchyard/routing.h"

/** Records after which the journal is rewritten as one snapshot record (the default). */
#define SY_JOURNAL_COMPACT_AFTER 1000
/** A journal larger than this is compacted whatever its record count. */
#define SY_JOURNAL_COMPACT_BYTES (8u << 20)
/** Longest journal line read back (a snapshot of many apps is one line). */
#define SY_JOURNAL_MAX_LINE (16u << 20)
/** Longest command text kept with a change. */
#define SY_ACTOR_COMMAND_MAX 4096

/** Who made a change, when, and with which command. Borrowed by the calls that take it. */
struct sy_actor {
    uint64_t time_ms;    /* unix time in milliseconds */
    uint32_t uid;        /* the peer's uid (SO_PEERCRED) */
    int32_t pid;         /* the peer's pid, 0 when unknown */
    const char *command; /* the command as received: printable ASCII */
    /* Where the change came from in a fleet (admin/fleet.c); all zero without `fleet:`. */
    uint64_t rev;         /* the etcd revision that committed it (0: not from etcd) */
    const char *instance; /* the replica whose admin socket or guard made it, or NULL */
    bool local;           /* `--local`: this replica only, never written to etcd */
};

/** One app's override in force. Every field is owned by the set that holds it. */
struct sy_override {
    char *app;
    struct sy_route_weight *weights; /* the non-zero weights, by cluster name (names owned) */
    size_t n_weights;
    uint64_t seq; /* the journal record that set it */
    uint64_t time_ms;
    uint32_t uid;
    int32_t pid;
    char *command;
    uint64_t rev;   /* the etcd revision it came from (0: not from the fleet) */
    char *instance; /* the replica that made it (fleet), or NULL */
    bool local;     /* made with `--local` while in a fleet: this replica only */
};

/** A set of overrides, at most one per app, in the order they were first set. */
struct sy_overrides {
    struct sy_override *v;
    size_t n, cap;
};

void sy_overrides_init(struct sy_overrides *s);
void sy_overrides_dispose(struct sy_overrides *s);
/** Makes `dst` (initialised or disposed) a deep copy of `src`. */
void sy_overrides_copy(struct sy_overrides *dst, const struct sy_overrides *src);
/** The override of `app`, or NULL. Valid until the set changes. */
const struct sy_override *sy_overrides_find(const struct sy_overrides *s, const char *app);

/**
 * The set as sy_route_table_build() takes it: a new array of s->n entries (free() it; the
 * entries borrow from `s` and are valid until it changes). NULL when the set is empty.
 */
struct sy_route_override *sy_overrides_view(const struct sy_overrides *s);

/** One app's part of a change. */
struct sy_override_change {
    const char *app;
    bool release;                          /* drop the app's override; `override` is ignored */
    const struct sy_route_weight *weights; /* the new override by cluster name (zeros dropped) */
    size_t n_weights;
    /* For the audit only: the weights in force before and after the change, every cluster. */
    const struct sy_route_weight *from, *to;
    size_t n_from, n_to;
};

/** Applies a change (record `seq` by `who`) to a set: what replay does with each record. */
void sy_overrides_apply(struct sy_overrides *s, const struct sy_override_change *ch, size_t n,
                        uint64_t seq, const struct sy_actor *who);

/** Longest `maintenance --message` kept (bytes of printable ASCII). */
#define SY_MAINT_MESSAGE_MAX 256

/**
 * An app in maintenance (in a set), or the `maintenance` command that put an app in or took it
 * out (in a record: `on`). Every field is owned by the set or record that holds it.
 */
struct sy_maint {
    char *app;
    bool on;
    unsigned retry_after; /* seconds; 0: the app's apps[].maintenance_retry_after */
    char *message;        /* the one line answered to non-HTML clients; NULL: the default */
    uint64_t since_ms;    /* when the app went into maintenance (kept by a repeated `on`) */
    uint64_t seq;         /* the journal record that set it last */
    uint64_t time_ms;
    uint32_t uid;
    int32_t pid;
    char *command;
};

/** The apps in maintenance, at most one entry per app, in the order they went in. */
struct sy_maints {
    struct sy_maint *v;
    size_t n, cap;
};

void sy_maints_dispose(struct sy_maints *s);
/** Makes `dst` (zeroed or disposed) a deep copy of `src`. */
void sy_maints_copy(struct sy_maints *dst, const struct sy_maints *src);
/** The entry of `app`, or NULL. Valid until the set changes. */
const struct sy_maint *sy_maints_find(const struct sy_maints *s, const char *app);
/**
 * Applies one `maintenance` record (`m`, numbered `seq`, by `who`): `on` puts the app in (or
 * updates its retry_after and message, keeping `since_ms`), off takes it out. Copies.
 */
void sy_maints_apply(struct sy_maints *s, const struct sy_maint *m, uint64_t seq,
                     const struct sy_actor *who);

/**
 * The global guard switch (`guard pause|resume`): whether every app's guard is paused, and
 * the record that said so last. `command` is owned by the journal or record that holds it.
 */
struct sy_guard_pause {
    bool paused;
    uint64_t seq; /* 0: never set (the guards run) */
    uint64_t time_ms;
    uint32_t uid;
    int32_t pid;
    char *command;
};

/** Most steps of one ramp. */
#define SY_RAMP_MAX_STEPS 20

/** Where a ramp stands. The last three end it (it leaves the set). */
enum sy_ramp_state {
    SY_RAMP_RUNNING = 0,
    SY_RAMP_PAUSED,
    SY_RAMP_DONE,     /* its last step (100) was taken */
    SY_RAMP_ABORTED,  /* `ramp abort`, or ended because the app changed under it */
    SY_RAMP_REVERTED, /* its guard reverted the app */
};

/** The word of a ramp state in records and answers ("running", ...). */
const char *sy_ramp_state_name(enum sy_ramp_state s);

/**
 * A ramp (`ramp APP CLUSTER 1,5,25,50,100 --every 5m`): the plan in the journal, and in a
 * record the state it moves to. The step the ramp is on is not stored here: it is the weight
 * the ramp's last step override gave `cluster` (admin/ramp.c), so that a step is one record.
 * Every pointer is owned by the set or record that holds it.
 */
struct sy_ramp {
    char *app, *cluster;
    unsigned steps[SY_RAMP_MAX_STEPS]; /* strictly increasing, 1..100, the last 100 */
    size_t n_steps;
    uint64_t every_ms;
    enum sy_ramp_state state;
    uint64_t start_seq; /* the record that began it */
    unsigned taken;     /* steps taken (0: none yet); the step in force is steps[taken - 1] */
    char *why;          /* why it ended (a record's), or NULL */
    uint64_t seq;       /* the record that set it last */
    uint64_t time_ms;
    uint32_t uid;
    int32_t pid;
    char *command;
};

/** The ramps running or paused, at most one per app, in the order they began. */
struct sy_ramps {
    struct sy_ramp *v;
    size_t n, cap;
};

void sy_ramps_dispose(struct sy_ramps *s);
/** Frees what a ramp owns (its strings) and zeroes it. */
void sy_ramp_dispose(struct sy_ramp *r);

struct sy_jw;
struct sy_jv;
/** A ramp's plan and state as the members of a JSON object (the journal's names). */
void sy_ramp_json(struct sy_jw *b, const struct sy_ramp *r);
/** Reads what sy_ramp_json wrote into `r` (zeroed first; dispose it). false with `why`. */
bool sy_ramp_from_json(const struct sy_jv *o, struct sy_ramp *r, const char **why);
/** The ramp of `app`, or NULL. Valid until the set changes. */
const struct sy_ramp *sy_ramps_find(const struct sy_ramps *s, const char *app);

/** A record read back from the journal. Everything in it is owned by the record. */
struct sy_journal_record {
    uint64_t seq, time_ms;
    uint32_t uid;
    int32_t pid;
    char *command;
    uint64_t rev;   /* a change from the fleet: its etcd revision; a snapshot: the fleet's */
    char *instance; /* the replica that made it (fleet), or NULL */
    bool local;     /* a `--local` change */
    bool compact;   /* a snapshot written by compaction: `set` holds the overrides in force */
    struct sy_override_change *changes;
    size_t n_changes;
    struct sy_overrides set;
    /* A `maintenance` record (type "maintenance"): `maint` is the command's effect and
     * n_changes is 0. A snapshot record has the apps in maintenance in `maints`. */
    bool maintenance;
    struct sy_maint maint;
    struct sy_maints maints;
    /* A `guard` record (type "guard"): `guard_pause.paused` is the command's effect and
     * n_changes is 0. A snapshot record carries the switch in `guard_pause` when paused. */
    bool guard;
    struct sy_guard_pause guard_pause;
    /* A `ramp` record: `ramp` is the ramp in the state it moves to. A snapshot record has the
     * ramps running or paused in `ramps`. */
    bool is_ramp;
    struct sy_ramp ramp;
    struct sy_ramps ramps;
};

struct sy_journal;

struct sy_journal_opts {
    bool create;          /* create the file when it is missing (else SY_ERR_NOTFOUND) */
    bool discard;         /* a journal that cannot be read is renamed to PATH.corrupt-TIME and
                             a new one started (logged as an error), instead of failing */
    size_t compact_after; /* records; 0 means SY_JOURNAL_COMPACT_AFTER */
    bool no_sync;         /* tests and fuzzing only: no fsync */
};

/**
 * Opens the journal at `path` and replays it. A torn last line (no newline: a crash during a
 * write that was never acknowledged) is logged, ignored and cut off. Any other damage (a line
 * that is not a record, a bad checksum, a sequence gap) fails with `path:line: why` in `d`,
 * unless opts->discard. The file is locked (flock) so that two daemons cannot share it. Its
 * directory must pass sy_journal_check_dir(). Returns 0, SY_ERR_NOTFOUND (missing and not
 * opts->create), SY_ERR_INVALID (damaged), SY_ERR_SYS (I/O, also logged, or an unsafe
 * directory) or SY_ERR_AGAIN (locked by another process); *out untouched on failure. `path` is
 * copied; the diagnostics borrow it (keep it as long as `d`).
 */
int sy_journal_open(const char *path, const struct sy_journal_opts *opts, struct sy_diags *d,
                    struct sy_journal **out);

/**
 * Checks that the directory holding the journal at `path` is safe to write in: writable by
 * its owner only, and owned by this user or root (anyone else who can write there could plant
 * the names the journal takes, as links to files of ours). Returns 0, or SY_ERR_SYS with a
 * diagnostic naming the directory and its mode in `d` (which borrows `path`).
 */
int sy_journal_check_dir(const char *path, struct sy_diags *d);

/**
 * What `switchyard -t` checks of the same directory: it exists and is writable by its owner
 * only, whoever that owner is. -t cannot know which user the daemon will run as (the packaged
 * unit runs it as `switchyard`, while -t is often run as root), so the owner is not refused
 * but returned in *owner for the caller to name. Returns 0, or SY_ERR_SYS with a diagnostic
 * in `d` (which borrows `path`); *owner is set only on success.
 */
int sy_journal_check_dir_any_owner(const char *path, uid_t *owner, struct sy_diags *d);

/** The overrides the journal says are in force (borrowed; valid until the next append). */
const struct sy_overrides *sy_journal_overrides(const struct sy_journal *j);

/** The etcd revision of the last change the journal holds from the fleet (0: none). */
uint64_t sy_journal_fleet_rev(const struct sy_journal *j);

/** The sequence number of the last change (0 for a new journal). */
uint64_t sy_journal_seq(const struct sy_journal *j);

const char *sy_journal_path(const struct sy_journal *j);

/**
 * Appends one record (sequence sy_journal_seq() + 1) with the changes `ch`, fsyncs it and
 * only then applies it to the set. Compacts the journal when it has grown past its limits (a
 * failed compaction is logged; the record stays durable). A compaction whose rename could not
 * be made durable (fsync of the directory) makes every later append fail until that fsync
 * succeeds. On failure nothing was applied and the file is as it was; `err` says why. Returns
 * 0, SY_ERR_LIMIT (the record is too large) or SY_ERR_SYS.
 */
int sy_journal_append(struct sy_journal *j, const struct sy_actor *who,
                      const struct sy_override_change *ch, size_t n, char *err, size_t errlen);

/** The apps the journal says are in maintenance (borrowed; valid until the next append). */
const struct sy_maints *sy_journal_maintenance(const struct sy_journal *j);

/**
 * Appends one `maintenance` record (sequence sy_journal_seq() + 1) for `m` (its app, on,
 * retry_after and message; the rest is taken from `who`), fsyncs it and only then applies it
 * to the set; compacts like sy_journal_append(). On failure nothing was applied and the file
 * is as it was; `err` says why. Returns 0, SY_ERR_LIMIT or SY_ERR_SYS.
 */
int sy_journal_append_maintenance(struct sy_journal *j, const struct sy_actor *who,
                                  const struct sy_maint *m, char *err, size_t errlen);

/** The global guard switch as the journal says (borrowed; valid until the next append). */
const struct sy_guard_pause *sy_journal_guard_pause(const struct sy_journal *j);

/**
 * Appends one `guard` record (sequence sy_journal_seq() + 1) that pauses (`paused`) or
 * resumes every guard, fsyncs it and only then applies it; compacts like sy_journal_append().
 * On failure nothing was applied and the file is as it was; `err` says why. Returns 0,
 * SY_ERR_LIMIT, SY_ERR_SYS or SY_ERR_AGAIN (handed over to a new process).
 */
int sy_journal_append_guard(struct sy_journal *j, const struct sy_actor *who, bool paused,
                            char *err, size_t errlen);

/** The ramps running or paused (borrowed; valid until the next append). */
const struct sy_ramps *sy_journal_ramps(const struct sy_journal *j);

/**
 * Appends one `ramp` record (sequence sy_journal_seq() + 1) that begins ramp `r` (its
 * start_seq 0: the record's own sequence is used) or moves it to r->state, fsyncs it and only
 * then applies it. Returns 0, SY_ERR_LIMIT, SY_ERR_SYS or SY_ERR_AGAIN (handed over to a new
 * process: a ramp step or state change is refused then), with `err` set; on failure nothing
 * was applied.
 */
int sy_journal_append_ramp(struct sy_journal *j, const struct sy_actor *who,
                           const struct sy_ramp *r, char *err, size_t errlen);

typedef void (*sy_journal_record_cb)(const struct sy_journal_record *r, void *arg);

/**
 * Calls `cb` for the last `last` change records (oldest first), read back from the journal and
 * from the file the last compaction set aside (PATH.old); snapshot records are skipped. Returns 0
 * or a negative sy_err (the journal could not be read). Blocking (reads files).
 */
int sy_journal_history(const struct sy_journal *j, size_t last, sy_journal_record_cb cb, void *arg);

/**
 * Zero-downtime upgrade, old process: closes the file (which releases its lock) and refuses
 * every append from now on (SY_ERR_AGAIN, "handed over"), the overrides kept in memory. NULL
 * or released: no-op.
 */
void sy_journal_release(struct sy_journal *j);

/**
 * The upgrade failed: opens and locks the file again and takes appends again. Returns 0,
 * SY_ERR_AGAIN (still locked by the new process) or another negative sy_err (still released).
 */
int sy_journal_retake(struct sy_journal *j);

/** Closes the file (and its lock). NULL is a no-op. */
void sy_journal_close(struct sy_journal *j);

/**
 * Parses one journal line (without its newline) into `r`. Returns 0, or SY_ERR_INVALID with a
 * reason in `why` (static text). Free `r` with sy_journal_record_dispose(). Any thread.
 */
int sy_journal_parse_line(const char *line, size_t len, struct sy_journal_record *r,
                          const char **why);

void sy_journal_record_dispose(struct sy_journal_record *r);

/**
 * The checksum of a journal line: CRC-32 (IEEE 802.3, reflected, as zlib computes it) of the
 * line's bytes before `,"crc":"`, written as 8 lower-case hex digits at its end.
 */
uint32_t sy_journal_crc32(const char *p, size_t len);

#endif
