/* SPDX-License-Identifier: MIT */
/* The control plane's state: the routing file as last loaded, the operator's overrides on top
 * of it, and the snapshot compiled from both. Every change (a reload, an override) builds a
 * whole new snapshot and publishes it in one step; a change that fails leaves everything as
 * it was. Control thread only. */
#ifndef SWITCHYARD_STATE_H
#define SWITCHYARD_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "switchyard/base.h"
#include "switchyard/config.h"
#include "switchyard/overrides.h"
#include "switchyard/routing.h"

struct sy_state;

/**
 * Extra checks the caller makes on a loaded config (e.g. TLS files); 0 or an sy_err. `file`
 * names the config in diagnostics and outlives them (the config may not).
 */
typedef int (*sy_state_check_cb)(const struct sy_config *cfg, const char *file, struct sy_diags *d,
                                 void *arg);

/** Hands a new snapshot to the data path (which takes its own references). */
typedef void (*sy_state_publish_cb)(struct sy_route_table *t, void *arg);

/**
 * Loads `path` and compiles generation 1 (not published: the caller starts its workers from
 * sy_state_table()). `check` may be NULL. Returns 0, or a negative sy_err with every problem in
 * `d`. `path` is borrowed for the state's life.
 */
int sy_state_open(const char *path, sy_state_check_cb check, void *arg, struct sy_diags *d,
                  struct sy_state **out);

/** Sets where new snapshots go (before the first change). */
void sy_state_set_publish(struct sy_state *st, sy_state_publish_cb publish, void *arg);

/**
 * Called by a reload that compiled `next` (one reference, not yet published) while `cur` is in
 * force: returns the snapshot to publish instead, `next` itself or one made from it with
 * sy_route_table_update() at the same generation (then `next`'s reference is the hook's to
 * drop). The exclusive switch holds the exclusive apps a reload moves (admin/exclusive.c).
 */
typedef struct sy_route_table *(*sy_state_reload_cb)(const struct sy_route_table *cur,
                                                     struct sy_route_table *next, void *arg);

/** Sets the reload hook (NULL: none). */
void sy_state_set_reload_hook(struct sy_state *st, sy_state_reload_cb cb, void *arg);

/** The current snapshot (borrowed; valid until the next change). */
struct sy_route_table *sy_state_table(const struct sy_state *st);

enum sy_reload_result {
    SY_RELOAD_PUBLISHED = 0,
    SY_RELOAD_UNCHANGED, /* same bytes as the file in force: nothing to do */
    SY_RELOAD_REJECTED,  /* the file has errors (in `d`); the running table stays */
};

/**
 * Re-reads the file. With `force` false an unchanged file (same content) is not republished.
 * On success the overrides are applied again over the new file and the result published.
 * Logs the outcome with the generation.
 */
enum sy_reload_result sy_state_reload(struct sy_state *st, bool force, struct sy_diags *d);

uint64_t sy_state_generation(const struct sy_state *st);
uint64_t sy_state_reload_failures(const struct sy_state *st);

/** Reloads that published a new snapshot since start. */
uint64_t sy_state_reloads_ok(const struct sy_state *st);

/** Unix time in milliseconds of the last load that published: the start, or a reload. */
uint64_t sy_state_last_load_ok_ms(const struct sy_state *st);

/**
 * The last reload's first error as `file:line:col: why` (borrowed; valid until the next
 * reload), or NULL when the last reload did not fail.
 */
const char *sy_state_last_reload_error(const struct sy_state *st);

/** The last reload that was refused, kept after later reloads succeed (for the status page). */
struct sy_reload_rejection {
    char *file;       /* where its first error is; NULL: no file named */
    int line, col;    /* 1-based; 0: not known */
    char *message;    /* the first error, without its place */
    uint64_t time_ms; /* unix time in milliseconds */
};

/**
 * The last refused reload since start (borrowed; valid until the next reload), or NULL when
 * none was refused. sy_state_last_reload_error() says whether it is still the latest word.
 */
const struct sy_reload_rejection *sy_state_last_rejection(const struct sy_state *st);

/** The routing file's path, as given to sy_state_open (borrowed). */
const char *sy_state_path(const struct sy_state *st);

/* -- overrides ------------------------------------------------------------------------------ */

/**
 * The journal `cfg` asks for, into buf: its `state:` or, when absent, `config_path` + ".state".
 * Returns SY_ERR_LIMIT when it does not fit.
 */
int sy_state_journal_path(const struct sy_config *cfg, const char *config_path, char *buf,
                          size_t size);

/**
 * Opens the overrides journal the file names (sy_state_journal_path) and replays it over the
 * file: the snapshot is compiled again, still generation 1 (call after sy_state_open, before
 * anything is published). With `create` (the daemon serves an admin socket) a missing journal
 * is created; without, a missing one means no overrides. A journal that cannot be read fails
 * the open with `path:line: why` in `d`, unless `discard` (it is then moved aside, loudly).
 * Returns 0 or a negative sy_err. `opts` may be NULL (defaults); its `create` and `discard`
 * are overridden by the arguments.
 */
int sy_state_open_journal(struct sy_state *st, bool create, bool discard,
                          const struct sy_journal_opts *opts, struct sy_diags *d);

/** The journal, or NULL when there is none (borrowed). */
struct sy_journal *sy_state_journal(const struct sy_state *st);

/** The overrides in force (borrowed; valid until the next change). Never NULL. */
const struct sy_overrides *sy_state_overrides(const struct sy_state *st);

/** The journal's sequence number (0 without a journal). */
uint64_t sy_state_journal_seq(const struct sy_state *st);

/** One app's part of an operator's change. */
struct sy_state_edit {
    const char *app;
    bool release;                          /* hand the app back to the file */
    const struct sy_route_weight *weights; /* the override: by cluster name; unnamed get 0 */
    size_t n_weights;
};

/**
 * Applies `n` edits as one change: each is checked against the file in force (an override's
 * app must be in the file, name only the app's own clusters, once each, with weights 0..100
 * that sum above 0; a release needs an override), the new snapshot is compiled, the change is
 * appended to the journal and fsynced, and only then the snapshot is published and the change
 * logged (who, the command, weights before and after). On failure nothing changed and `err`
 * says why, for a person. Returns 0, SY_ERR_INVALID (the edits), SY_ERR_NOTFOUND (no
 * journal) or SY_ERR_SYS / SY_ERR_NOMEM (compile or journal).
 */
int sy_state_change(struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                    const struct sy_actor *who, char *err, size_t errlen);

/** The checks of sy_state_change() alone: 0, or a negative sy_err with `err` set. */
int sy_state_check(const struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                   char *err, size_t errlen);

/**
 * Journals and publishes a change that was decided elsewhere (the fleet: etcd committed it),
 * without sy_state_change()'s checks against this replica's file: an app the file does not
 * have keeps its override by name (stale until a file has the app), and a release of an app
 * without an override here is left out. Returns 0 or a negative sy_err with `err` set.
 */
int sy_state_apply(struct sy_state *st, const struct sy_state_edit *edits, size_t n,
                   const struct sy_actor *who, char *err, size_t errlen);

/* -- maintenance ---------------------------------------------------------------------------- */

/** The apps in maintenance (borrowed; valid until the next change). Never NULL. */
const struct sy_maints *sy_state_maintenance(const struct sy_state *st);

/**
 * `maintenance APP on|off`: with `on`, app `app` (one of the file's) is answered 503 by the
 * proxy from the next request on (`retry_after` seconds, 0 for the app's default; `message`
 * the line for non-HTML clients, NULL for the default); a repeated `on` updates both and keeps
 * the start time. With off, it takes requests again. Journalled (record type "maintenance")
 * and fsynced before the new snapshot is published; weights and overrides are untouched.
 * Sets *changed to false, and writes nothing, for `off` of an app not in maintenance. Returns
 * 0, SY_ERR_INVALID (unknown app, bad message), SY_ERR_NOTFOUND (no journal) or another
 * negative sy_err with `err` for a person; on failure nothing changed.
 */
int sy_state_set_maintenance(struct sy_state *st, const char *app, bool on, unsigned retry_after,
                             const char *message, const struct sy_actor *who, bool *changed,
                             char *err, size_t errlen);
/**
 * The exclusive switch's hold (admin/exclusive.c): publishes a snapshot in which app `app`
 * sends everything to `cluster` and holds its new requests (sy_route_app.held), with nothing
 * written to the journal: a restart comes back to what the journal says. With `cluster` NULL,
 * the app goes back to the journal's (or the file's) weights, not held (an abort). The switch
 * ends with an ordinary sy_state_change(), whose snapshot no longer holds the app. Returns 0,
 * SY_ERR_INVALID (unknown app) or a compile error, with `err` set. Control thread.
 */
int sy_state_hold(struct sy_state *st, const char *app, const char *cluster, char *err,
                  size_t errlen);

/**
 * The end of an exclusive switch that a reload began: publishes a snapshot in which app `app`
 * is no longer held and follows the journal's override or, without one, the file; and, when
 * the app has no override, first appends a journal record that notes the move (a release
 * entry, which replay finds nothing to do for; `from` is the cluster the app ran on, `who`
 * says when and why). The snapshot is published even when the note cannot be written.
 * Returns 0, SY_ERR_INVALID (unknown app), a compile error (nothing published) or the
 * journal's error (published, not noted), with `err` set. Control thread.
 */
int sy_state_follow_file(struct sy_state *st, const char *app, const char *from,
                         const struct sy_actor *who, char *err, size_t errlen);

/* -- the guard switch ---------------------------------------------------------------------- */

/**
 * The global guard switch (borrowed; valid until the next change). Never NULL: without a
 * journal, a switch that was never set (the guards run).
 */
const struct sy_guard_pause *sy_state_guard_pause(const struct sy_state *st);

/**
 * `guard pause|resume`: pauses (`paused`) or resumes every app's guard, journalled (record
 * type "guard") and fsynced; no snapshot is published (the guard is the control thread's).
 * Sets *changed to false, and writes nothing, when the switch already says so. Returns 0,
 * SY_ERR_NOTFOUND (no journal) or the journal's error, with `err` for a person; on failure
 * nothing changed.
 */
int sy_state_set_guard_paused(struct sy_state *st, bool paused, const struct sy_actor *who,
                              bool *changed, char *err, size_t errlen);

/* -- ramps ---------------------------------------------------------------------------------- */

/** The ramps running or paused (borrowed; valid until the next change). Never NULL. */
const struct sy_ramps *sy_state_ramps(const struct sy_state *st);

/**
 * Begins ramp `r` (r->start_seq 0) or moves it to r->state: one journal record, fsynced, no
 * snapshot published (a ramp's steps are ordinary changes, sy_state_change). Returns 0,
 * SY_ERR_NOTFOUND (no journal) or the journal's error, with `err` for a person.
 */
int sy_state_set_ramp(struct sy_state *st, const struct sy_ramp *r, const struct sy_actor *who,
                      char *err, size_t errlen);

void sy_state_free(struct sy_state *st);

#endif
