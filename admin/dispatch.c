/* SPDX-License-Identifier: MIT */
/* The admin command machinery, without any socket: splitting a line into words, finding the
 * command in the registered tables, running it, and building the answer (text lines ending in
 * `ok` / `error: why`, or one JSON object). `help` is built from the tables. The peer check
 * lives here too, as a pure function of the peer's credentials and the allow lists. */
#include "switchyard/admin.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin_internal.h"
#include "sy_config.h"

static bool in_ids(const uid_t *uids, size_t n_uids, const gid_t *gids, size_t n_gids,
                   const struct sy_peer *peer)
{
    for (size_t i = 0; i < n_uids; i++)
        if ((uint32_t)uids[i] == peer->uid)
            return true;
    for (size_t i = 0; i < n_gids; i++) {
        uint32_t g = (uint32_t)gids[i];
        if (g == peer->gid)
            return true;
        for (size_t k = 0; k < peer->n_groups; k++)
            if (peer->groups[k] == g)
                return true;
    }
    return false;
}

enum sy_admin_access sy_admin_peer_access(const struct sy_admin_spec *spec, uint32_t euid,
                                          const struct sy_peer *peer)
{
    if (peer->uid == 0 || peer->uid == euid)
        return SY_ADMIN_OWNER;
    if (!spec)
        return SY_ADMIN_DENIED;
    if (in_ids(spec->allow_uids, spec->n_allow_uids, spec->allow_gids, spec->n_allow_gids, peer))
        return SY_ADMIN_FULL;
    if (in_ids(spec->allow_read_uids, spec->n_allow_read_uids, spec->allow_read_gids,
               spec->n_allow_read_gids, peer))
        return SY_ADMIN_READ;
    return SY_ADMIN_DENIED;
}

bool sy_admin_peer_allowed(const struct sy_admin_spec *spec, uint32_t euid,
                           const struct sy_peer *peer)
{
    return sy_admin_peer_access(spec, euid, peer) >= SY_ADMIN_FULL;
}

/* The commands a read-only peer may run: by name, so that a command added later is refused
 * to them until it is listed here. */
static const char *const read_only_cmds[] = {"status", "explain", "history",
                                             "ident",  "help",    "fleet"};

bool sy_admin_cmd_is_read_only(const char *name)
{
    for (size_t i = 0; i < sizeof(read_only_cmds) / sizeof(read_only_cmds[0]); i++)
        if (strcmp(name, read_only_cmds[i]) == 0)
            return true;
    return false;
}

/* -- replies ---------------------------------------------------------------------------------- */

void sy_reply_init(struct sy_reply *r, bool json)
{
    memset(r, 0, sizeof(*r));
    r->json = json;
    sy_jw_init(&r->out);
    r->out.comma[0] = true; /* the server's own members come first */
}

void sy_reply_dispose(struct sy_reply *r)
{
    sy_jw_dispose(&r->out);
}

struct sy_admin_later {
    struct sy_reply reply;
    sy_admin_later_cb cb;
    void *arg;
};

struct sy_admin_later *sy_admin_defer(struct sy_admin_req *req)
{
    struct sy_admin_later *l = sy_xcalloc(1, sizeof(*l));
    l->reply = *req->reply; /* takes its buffer */
    sy_reply_init(req->reply, l->reply.json);
    req->reply->later = l;
    return l;
}

struct sy_reply *sy_admin_later_reply(struct sy_admin_later *l)
{
    return &l->reply;
}

void sy_admin_later_bind(struct sy_admin_later *l, sy_admin_later_cb cb, void *arg)
{
    l->cb = cb;
    l->arg = arg;
}

void sy_admin_later_done(struct sy_admin_later *l, uint64_t published)
{
    if (l->cb)
        l->cb(&l->reply, published, l->arg);
    sy_reply_dispose(&l->reply);
    free(l);
}

static void vaddf(struct sy_reply *r, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void vaddf(struct sy_reply *r, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0)
        return;
    struct sy_jw *w = &r->out;
    sy_xgrow((void **)&w->p, &w->cap, w->len + (size_t)n + 1, 1);
    vsnprintf(w->p + w->len, (size_t)n + 1, fmt, ap);
    w->len += (size_t)n;
}

void sy_reply_printf(struct sy_reply *r, const char *fmt, ...)
{
    if (r->json)
        return;
    va_list ap;
    va_start(ap, fmt);
    vaddf(r, fmt, ap);
    va_end(ap);
}

int sy_reply_error(struct sy_reply *r, const char *fmt, ...)
{
    if (r->failed)
        return SY_ERR_INVALID;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    /* One line, whatever the reason's sources said. */
    for (char *p = r->error; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return SY_ERR_INVALID;
}

/* The JSON members: switchyard/json.h's writer, in JSON mode only. */

void sy_json_begin_object(struct sy_reply *r, const char *key)
{
    if (r->json)
        sy_jw_begin_object(&r->out, key);
}

void sy_json_end_object(struct sy_reply *r)
{
    if (r->json)
        sy_jw_end_object(&r->out);
}

void sy_json_begin_array(struct sy_reply *r, const char *key)
{
    if (r->json)
        sy_jw_begin_array(&r->out, key);
}

void sy_json_end_array(struct sy_reply *r)
{
    if (r->json)
        sy_jw_end_array(&r->out);
}

void sy_json_str(struct sy_reply *r, const char *key, const char *value)
{
    if (r->json)
        sy_jw_str(&r->out, key, value);
}

void sy_json_uint(struct sy_reply *r, const char *key, uint64_t value)
{
    if (r->json)
        sy_jw_uint(&r->out, key, value);
}

void sy_json_int(struct sy_reply *r, const char *key, int64_t value)
{
    if (r->json)
        sy_jw_int(&r->out, key, value);
}

void sy_json_bool(struct sy_reply *r, const char *key, bool value)
{
    if (r->json)
        sy_jw_bool(&r->out, key, value);
}

void sy_json_null(struct sy_reply *r, const char *key)
{
    if (r->json)
        sy_jw_null(&r->out, key);
}

void sy_json_raw(struct sy_reply *r, const char *key, const char *json, size_t len)
{
    if (r->json)
        sy_jw_raw(&r->out, key, json, len);
}

/* -- the command set -------------------------------------------------------------------------- */

struct table {
    const struct sy_admin_cmd *cmds;
    void *ctx;
};

static int cmd_help(struct sy_admin_req *req);
static int cmd_ident(struct sy_admin_req *req);

static const struct sy_admin_cmd builtin_cmds[] = {
    {"help", "help                              : this list", cmd_help, NULL},
    {"ident", "ident                             : version, pid, generation, journal sequence",
     cmd_ident, NULL},
    {NULL, NULL, NULL, NULL},
};

struct sy_admin *sy_admin_new(struct sy_state *state)
{
    struct sy_admin *a = sy_xcalloc(1, sizeof(*a));
    a->state = state;
    a->fd = -1;
    sy_admin_register(a, builtin_cmds, a);
    return a;
}

void sy_admin_register(struct sy_admin *a, const struct sy_admin_cmd *table, void *ctx)
{
    sy_xgrow((void **)&a->tables, &a->cap_tables, a->n_tables + 1, sizeof(*a->tables));
    a->tables[a->n_tables].cmds = table;
    a->tables[a->n_tables].ctx = ctx;
    a->n_tables++;
}

void sy_admin_set_applied(struct sy_admin *a, sy_admin_applied_cb applied, void *arg)
{
    a->applied = applied;
    a->applied_arg = arg;
}

static int cmd_help(struct sy_admin_req *req)
{
    struct sy_admin *a = req->ctx;
    struct sy_reply *r = req->reply;
    if (req->argc > 1)
        return sy_reply_error(r, "usage: help");
    sy_json_begin_array(r, "commands");
    for (size_t t = 0; t < a->n_tables; t++) {
        for (const struct sy_admin_cmd *c = a->tables[t].cmds; c->name; c++) {
            if (!c->help)
                continue; /* internal: not listed */
            sy_reply_printf(r, "%s\n", c->help);
            sy_json_begin_object(r, NULL);
            sy_json_str(r, "name", c->name);
            sy_json_str(r, "help", c->help);
            sy_json_end_object(r);
        }
    }
    sy_json_end_array(r);
    sy_reply_printf(r, "(any command: prefix `json` or add `--json` for one line of JSON)\n");
    sy_reply_printf(r, "(weights, switch, revert, release: `--reason TEXT` says why; `history` "
                       "shows it)\n");
    return 0;
}

static int cmd_ident(struct sy_admin_req *req)
{
    struct sy_admin *a = req->ctx;
    struct sy_reply *r = req->reply;
    if (req->argc > 1)
        return sy_reply_error(r, "usage: ident");
    uint64_t gen = a->state ? sy_state_generation(a->state) : 0;
    uint64_t seq = a->state ? sy_state_journal_seq(a->state) : 0;
    sy_reply_printf(r, "switchyard %s pid %d generation %" PRIu64 " journal seq %" PRIu64 "\n",
                    SY_VERSION, (int)getpid(), gen, seq);
    sy_json_str(r, "version", SY_VERSION);
    sy_json_int(r, "pid", (int64_t)getpid());
    return 0;
}

int sy_admin_split(const char *line, size_t len, char *buf, char **argv, const char **why)
{
    int argc = 0;
    size_t i = 0, o = 0;
    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == len)
            break;
        if (argc == SY_ADMIN_MAX_ARGS) {
            *why = "too many words";
            return -1;
        }
        argv[argc++] = buf + o;
        bool quoted = false;
        while (i < len) {
            char c = line[i];
            if (!quoted && (c == ' ' || c == '\t'))
                break;
            i++;
            if (c == '"') {
                quoted = !quoted;
                continue;
            }
            if (quoted && c == '\\') {
                if (i == len || (line[i] != '"' && line[i] != '\\')) {
                    *why = "a backslash in quotes must escape \" or \\";
                    return -1;
                }
                c = line[i++];
            }
            buf[o++] = c;
        }
        if (quoted) {
            *why = "unterminated quote";
            return -1;
        }
        buf[o++] = '\0';
    }
    return argc;
}

/* Printable ASCII and tabs only: what reaches the journal and the logs must be safe to show. */
static bool is_printable(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f)
            return false;
    }
    return true;
}

static const struct sy_admin_cmd *lookup(const struct sy_admin *a, const char *name, void **ctx)
{
    for (size_t t = 0; t < a->n_tables; t++) {
        for (const struct sy_admin_cmd *c = a->tables[t].cmds; c->name; c++) {
            if (strcmp(c->name, name) == 0) {
                *ctx = a->tables[t].ctx;
                return c;
            }
        }
    }
    return NULL;
}

bool sy_admin_line_is_json(const char *line, size_t len)
{
    /* Decided on the words, as sy_admin_exec decides; a line that does not split is text. */
    if (len > SY_ADMIN_LINE_MAX)
        return false;
    char buf[SY_ADMIN_LINE_MAX + 1];
    char *argv[SY_ADMIN_MAX_ARGS];
    const char *why;
    int argc = sy_admin_split(line, len, buf, argv, &why);
    for (int i = 0; i < argc; i++)
        if ((i == 0 && strcmp(argv[i], "json") == 0) || strcmp(argv[i], "--json") == 0)
            return true;
    return false;
}

ssize_t sy_admin_exec(struct sy_admin *a, const char *line, size_t len, const char *payload,
                      size_t payload_len, const struct sy_peer *peer, uint64_t now_ms,
                      struct sy_reply *reply, uint64_t *published)
{
    *published = 0;
    if (len > SY_ADMIN_LINE_MAX) {
        sy_reply_error(reply, "line too long (at most %d bytes)", SY_ADMIN_LINE_MAX);
        return 0;
    }
    if (!is_printable(line, len)) {
        sy_reply_error(reply, "a command is printable ASCII: no control characters, no bytes "
                              "above 0x7e");
        return 0;
    }
    char buf[SY_ADMIN_LINE_MAX + 1];
    char *argv[SY_ADMIN_MAX_ARGS];
    const char *why = NULL;
    int argc = sy_admin_split(line, len, buf, argv, &why);
    if (argc < 0) {
        sy_reply_error(reply, "%s", why);
        return 0;
    }
    /* `json CMD ...` or `--json` anywhere: the caller chose the mode from the same words. */
    int k = 0;
    for (int i = 0; i < argc; i++)
        if (!((i == 0 && strcmp(argv[i], "json") == 0) || strcmp(argv[i], "--json") == 0))
            argv[k++] = argv[i];
    argc = k;
    if (argc == 0) {
        sy_reply_error(reply, "empty command (try help)");
        return 0;
    }
    void *ctx = NULL;
    const struct sy_admin_cmd *cmd = lookup(a, argv[0], &ctx);
    if (!cmd) {
        sy_reply_error(reply, "unknown command '%.64s' (try help)", argv[0]);
        return 0;
    }
    if (peer->read_only && !sy_admin_cmd_is_read_only(argv[0])) {
        sy_reply_error(reply,
                       "permission denied: uid %" PRIu32 " may only read (admin.allow_read_uids "
                       "/ allow_read_gids): status, explain, history, ident, help; '%.64s' was "
                       "not run",
                       peer->uid, argv[0]);
        return 0;
    }
    if (cmd->payload && !payload) {
        ssize_t need = cmd->payload(argc, argv, reply);
        if (need != 0)
            return need < 0 ? 0 : need;
    }
    char command[SY_ADMIN_LINE_MAX + 1];
    size_t off = 0;
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (i)
            command[off++] = ' ';
        memcpy(command + off, argv[i], n);
        off += n;
    }
    command[off] = '\0';
    struct sy_admin_req req = {
        .argc = argc,
        .argv = argv,
        .command = command,
        .peer = *peer,
        .now_ms = now_ms,
        .payload = payload,
        .payload_len = payload_len,
        .reply = reply,
        .ctx = ctx,
    };
    int rc = cmd->handler(&req);
    if (rc != 0 && !reply->failed)
        sy_reply_error(reply, "%s", sy_strerror(rc));
    *published = req.published;
    return 0;
}

char *sy_admin_format(const struct sy_admin *a, const struct sy_reply *r, size_t *len)
{
    struct sy_jw out;
    sy_jw_init(&out);
    const struct sy_jw *body = &r->out;
    if (!r->json) {
        sy_jw_append(&out, body->p, body->len);
        if (body->len && body->p[body->len - 1] != '\n')
            sy_jw_append(&out, "\n", 1);
        if (r->failed) {
            sy_jw_append(&out, "error: ", 7);
            sy_jw_append(&out, r->error, strlen(r->error));
            sy_jw_append(&out, "\n", 1);
        } else {
            sy_jw_append(&out, "ok\n", 3);
        }
    } else {
        sy_jw_begin_object(&out, NULL);
        sy_jw_bool(&out, "ok", !r->failed);
        if (r->failed)
            sy_jw_str(&out, "error", r->error);
        sy_jw_uint(&out, "generation", a && a->state ? sy_state_generation(a->state) : 0);
        sy_jw_uint(&out, "journal_seq", a && a->state ? sy_state_journal_seq(a->state) : 0);
        sy_jw_append(&out, body->p, body->len); /* the members, each after its ',' */
        sy_jw_end_object(&out);
        sy_jw_append(&out, "\n", 1);
    }
    *len = out.len;
    return out.p;
}

void sy_admin_iso8601(uint64_t ms, char buf[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
}

bool sy_admin_parse_decimal(const char *s, size_t len, size_t max_digits, unsigned *out)
{
    if (len == 0 || len > max_digits)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}
