/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the admin command parser and the routing commands behind it: the input
 * is lines of commands, run one by one against a real state (a small config and its journal
 * in a temporary directory, fsync off, compaction every 50 records); a command that announces
 * a payload (`diff`) takes the rest of the input. Every answer must end in `ok` or `error:`
 * (or be one JSON object line), and a command that failed must have changed nothing: neither
 * the generation nor the journal. Name resolution is off, so each run stays offline. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "switchyard/admin.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sy_state *state;
static struct sy_admin *admin;
static struct sy_admin_routing env;
static char dir[] = "/tmp/sy-fuzz-admin-XXXXXX";

/* libFuzzer ends with exit(): the temporary directory goes with it. */
static void remove_dir(void)
{
    sy_admin_free(admin);
    sy_state_free(state);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || e->d_name[1] == '.'))
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static const char config_yaml[] = "listen:\n"
                                  "  - address: 127.0.0.1:8080\n"
                                  "admin: {socket: admin.sock}\n"
                                  "clusters:\n"
                                  "  blue: {endpoints: [127.0.0.1:9001]}\n"
                                  "  green: {endpoints: [127.0.0.1:9002]}\n"
                                  "apps:\n"
                                  "  - name: chat\n"
                                  "    hosts: [chat.test, '*.chat.test']\n"
                                  "    paths: [/, /api]\n"
                                  "    weights: {blue: 50, green: 50}\n"
                                  "    force: {header: x-cluster, cookie: sy_force}\n"
                                  "  - name: web\n"
                                  "    hosts: ['*']\n"
                                  "    stable: green\n"
                                  "    weights: {blue: 10, green: 90}\n"
                                  "    sticky: {cookie: sy_web}\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    sy_config_set_resolve(false);
    sy_log_set_level(SY_LOG_ERROR);
    static char path[64];
    if (!mkdtemp(dir))
        abort();
    atexit(remove_dir);
    snprintf(path, sizeof(path), "%s/sy.yaml", dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        abort();
    fputs(config_yaml, fp);
    fclose(fp);
    struct sy_diags d;
    sy_diags_init(&d);
    struct sy_journal_opts o = {.no_sync = true, .compact_after = 50};
    if (sy_state_open(path, NULL, NULL, &d, &state) != 0 ||
        sy_state_open_journal(state, true, false, &o, &d) != 0)
        abort();
    sy_diags_dispose(&d);
    admin = sy_admin_new(state);
    env.state = state;
    sy_admin_routing_init(admin, &env);
    return 0;
}

static void check_answer(const char *out, size_t len, bool failed)
{
    if (len == 0 || out[len - 1] != '\n')
        __builtin_trap();
    if (out[0] == '{') {
        bool ok = strncmp(out, "{\"ok\":true,", 11) == 0;
        if (ok == failed || memchr(out, '\n', len) != out + len - 1)
            __builtin_trap();
        return;
    }
    size_t start = len - 1;
    while (start > 0 && out[start - 1] != '\n')
        start--;
    const char *last = out + start;
    if (failed ? strncmp(last, "error: ", 7) != 0 : strcmp(last, "ok\n") != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    struct sy_peer peer = {0, 0, 1, NULL, 0};
    for (int n = 0; p < end && n < 16; n++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *next = nl ? nl + 1 : end;
        struct sy_reply r;
        sy_reply_init(&r, sy_admin_line_is_json(p, len));
        uint64_t gen = sy_state_generation(state), seq = sy_state_journal_seq(state), published;
        ssize_t need =
            sy_admin_exec(admin, p, len, NULL, 0, &peer, 1700000000000ull, &r, &published);
        if (need > 0) {
            size_t have = (size_t)(end - next);
            size_t take = have < (size_t)need ? have : (size_t)need;
            need = sy_admin_exec(admin, p, len, take ? next : "", take, &peer, 1700000000000ull, &r,
                                 &published);
            next += take;
        }
        if (need != 0)
            __builtin_trap();
        if (r.failed && (sy_state_generation(state) != gen || sy_state_journal_seq(state) != seq))
            __builtin_trap();
        size_t out_len;
        char *out = sy_admin_format(admin, &r, &out_len);
        check_answer(out, out_len, r.failed);
        free(out);
        sy_reply_dispose(&r);
        p = next;
    }
    return 0;
}
