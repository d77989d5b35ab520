/* SPDX-License-Identifier: MIT */
/* The fleet (`fleet:`): the overrides of every replica kept in etcd, under the prefix, one key
 * per app (`apps/APP`), each replica holding a lease-bound key of its own (`members/NAME`).
 * A change made through any replica is one etcd transaction guarded by the revisions of the
 * keys it writes; every replica watches the prefix and applies the changes in revision order
 * through its journal (the cache of the fleet state) and publishes each. Control thread. */
#ifndef SWITCHYARD_FLEET_H
#define SWITCHYARD_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "switchyard/overrides.h"
#include "switchyard/state.h"

struct event_base;
struct sy_fleet;

/**
 * Starts the fleet of the state's config (cfg->fleet.on) on `base`: the lease and member key,
 * the first read of the prefix, then the watch. `version` is what the member key says this
 * replica runs; `ssl` the client context of its TLS endpoints (borrowed; NULL: none is TLS).
 */
struct sy_fleet *sy_fleet_new(struct event_base *base, struct sy_state *st, const char *version,
                              SSL_CTX *ssl);
/** Revokes nothing (the lease expires by itself), cancels every call and frees. NULL: no-op. */
void sy_fleet_free(struct sy_fleet *f);

/** This replica's name in the fleet. */
const char *sy_fleet_instance(const struct sy_fleet *f);
/** Whether traffic may be taken: the fleet state was read once, or the journal holds it. */
bool sy_fleet_is_ready(const struct sy_fleet *f);
/** Whether the watch is open (changes from the fleet arrive). */
bool sy_fleet_is_connected(const struct sy_fleet *f);

/** One member as the last read of its key says. */
struct sy_fleet_member {
    const char *instance, *version;
    uint64_t rev;        /* the etcd revision it has applied */
    uint64_t generation; /* its snapshot generation */
    uint64_t seen_ms;    /* when its key last changed, by our clock */
    uint64_t delay_ms;   /* in a result: from the commit to its confirmation */
    bool applied;        /* in a result: it confirmed the change's revision; in a view: it
                            has applied the fleet's last change */
};

/** The outcome of a change (sy_fleet_change's callback). */
struct sy_fleet_result {
    int rc;             /* 0; or a negative sy_err with `why` */
    const char *why;    /* NULL when rc is 0 */
    uint64_t rev;       /* the etcd revision that committed the change (0: none) */
    uint64_t commit_ms; /* from the request to etcd's answer */
    bool waited;        /* members were waited for */
    const struct sy_fleet_member *members; /* live members, this one included */
    size_t n_members;
};

typedef void (*sy_fleet_done_cb)(const struct sy_fleet_result *res, void *arg);

/**
 * Makes a change for the whole fleet: checked against this replica's file (as
 * sy_state_change), then one etcd transaction; `done` is called (always later, never from
 * inside this call) once etcd has committed it and this replica has published it, and, with
 * `wait`, once every live member has confirmed it or fleet.wait has passed (then rc is
 * SY_ERR_AGAIN and the members that did not confirm are those without `applied`). Returns 0,
 * or a negative sy_err with `err` set when the change was refused at once (nothing sent).
 */
int sy_fleet_change(struct sy_fleet *f, const struct sy_state_edit *edits, size_t n,
                    const struct sy_actor *who, bool wait, sy_fleet_done_cb done, void *arg,
                    char *err, size_t errlen);

/**
 * The same with a ramp's record (`ramp`: its plan and the state it moves to; `begins` for
 * the record that starts it) written in the same transaction; `n` may be 0 (a ramp's state
 * alone: pause, resume, abort, done). `step_cmd`, when not NULL, is the command the overrides
 * record (a ramp's step: "ramp step APP ..."), the ramp's record keeping who->command.
 */
int sy_fleet_change_ramp(struct sy_fleet *f, const struct sy_state_edit *edits, size_t n,
                         const struct sy_ramp *ramp, bool begins, const char *step_cmd,
                         const struct sy_actor *who, bool wait, sy_fleet_done_cb done, void *arg,
                         char *err, size_t errlen);

/** Reads the prefix again and applies what differs (after `release APP --local`: the app
 * goes back to the fleet's record, which its local override hid). */
void sy_fleet_resync(struct sy_fleet *f);

/** Whether this replica advances the fleet's ramps now (it holds the `leader` key, bound to
 * its lease, and its watch is open). */
bool sy_fleet_is_leader(const struct sy_fleet *f);

/** What `fleet` and `status` show. */
struct sy_fleet_view {
    const char *instance, *prefix, *endpoint; /* endpoint: the last that answered */
    const char *leader;                       /* who advances the ramps, or NULL */
    bool connected, ready;
    uint64_t rev;           /* the etcd revision applied here */
    uint64_t since_ms;      /* when `connected` last changed */
    const char *last_error; /* why etcd was last unreachable, or NULL */
    const struct sy_fleet_member *members;
    size_t n_members;
    uint64_t changes, refused, resyncs;
};

/** Fills `v`; what it points to is valid until the next call or event. */
void sy_fleet_view(struct sy_fleet *f, struct sy_fleet_view *v);

struct sy_admin;
struct sy_reply;

/** Registers `fleet` (the members) against `f` (NULL: the command says there is no fleet). */
void sy_fleet_admin_init(struct sy_admin *a, struct sy_fleet *f);
/** The fleet's lines and `fleet` object in `status` (NULL: nothing). */
void sy_fleet_status_head(struct sy_fleet *f, struct sy_reply *r);

#endif
