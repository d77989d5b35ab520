/* SPDX-License-Identifier: MIT */
/* Unit tests for the admin command machinery without a socket: splitting lines into words
 * (table-driven), the peer check, running commands from registered tables, the two answer
 * forms (text ending in ok / error, one JSON object line), payload announcements and the
 * refusals (unknown command, unprintable bytes, an overlong line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/admin.h"

/* -- splitting ------------------------------------------------------------------------------ */

static void test_split_words_table(void **state)
{
    static const struct {
        const char *line;
        int argc; /* -1: refused */
        const char *words[6];
    } cases[] = {
        {"", 0, {NULL}},
        {"   \t ", 0, {NULL}},
        {"status", 1, {"status"}},
        {"  weights  chat\tblue=90 green=10  ", 4, {"weights", "chat", "blue=90", "green=10"}},
        {"explain a.test / \"x-user: some one\"",
         4,
         {"explain", "a.test", "/", "x-user: some one"}},
        {"say \"a \\\"b\\\" \\\\ c\"", 2, {"say", "a \"b\" \\ c"}},
        {"x\"y z\"w", 1, {"xy zw"}},
        {"empty \"\"", 2, {"empty", ""}},
        {"a\\b", 1, {"a\\b"}},
        {"bad \"open", -1, {NULL}},
        {"bad \"\\n\"", -1, {NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256];
        char *argv[SY_ADMIN_MAX_ARGS];
        const char *why = NULL;
        int argc = sy_admin_split(cases[i].line, strlen(cases[i].line), buf, argv, &why);
        if (argc != cases[i].argc)
            fail_msg("case %zu '%s': argc %d, want %d (%s)", i, cases[i].line, argc, cases[i].argc,
                     why ? why : "");
        if (argc < 0) {
            assert_non_null(why);
            continue;
        }
        for (int k = 0; k < argc; k++)
            assert_string_equal(argv[k], cases[i].words[k]);
    }
}

static void test_split_refuses_too_many_words(void **state)
{
    char line[SY_ADMIN_MAX_ARGS * 2 + 8];
    size_t o = 0;
    for (int i = 0; i <= SY_ADMIN_MAX_ARGS; i++) {
        line[o++] = 'x';
        line[o++] = ' ';
    }
    char buf[sizeof(line) + 1];
    char *argv[SY_ADMIN_MAX_ARGS];
    const char *why = NULL;
    assert_int_equal(sy_admin_split(line, o, buf, argv, &why), -1);
    assert_string_equal(why, "too many words");
}

static void test_join_round_trips_through_split(void **state)
{
    char w0[] = "explain", w1[] = "a.test", w2[] = "/", w3[] = "x-user: some \"one\"", w4[] = "",
         w5[] = "back\\slash";
    char *words[] = {w0, w1, w2, w3, w4, w5};
    char line[256];
    assert_true(sy_admin_join(6, words, line, sizeof(line)) > 0);
    char buf[256];
    char *argv[SY_ADMIN_MAX_ARGS];
    const char *why;
    assert_int_equal(sy_admin_split(line, strlen(line), buf, argv, &why), 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(argv[i], words[i]);
    assert_int_equal(sy_admin_join(6, words, line, 10), -1);
}

/* -- the peer check ------------------------------------------------------------------------- */

static void test_peer_check_table(void **state)
{
    uid_t uids[] = {1001};
    gid_t gids[] = {2000};
    struct sy_admin_spec spec = {
        .allow_uids = uids, .n_allow_uids = 1, .allow_gids = gids, .n_allow_gids = 1};
    uint32_t sup[] = {5, 2000};
    uint32_t other[] = {5, 6};
    static const uint32_t daemon = 500;
    struct {
        struct sy_peer peer;
        const struct sy_admin_spec *spec;
        bool allowed;
    } cases[] = {
        {{0, 0, 1, NULL, 0}, NULL, true},                     /* root */
        {{500, 500, 1, NULL, 0}, NULL, true},                 /* the daemon's own uid */
        {{65534, 65534, 1, NULL, 0}, NULL, false},            /* nobody, no lists */
        {{65534, 65534, 1, NULL, 0}, &spec, false},           /* nobody, not listed */
        {{1001, 1001, 1, NULL, 0}, &spec, true},              /* allow_uids */
        {{1002, 2000, 1, NULL, 0}, &spec, true},              /* primary group in allow_gids */
        {{1002, 7, 1, sup, 2}, &spec, true},                  /* supplementary group */
        {{1002, 7, 1, other, 2}, &spec, false},               /* groups, none listed */
        {{UINT32_MAX, UINT32_MAX, 0, NULL, 0}, &spec, false}, /* unknown credentials */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (sy_admin_peer_allowed(cases[i].spec, daemon, &cases[i].peer) != cases[i].allowed)
            fail_msg("case %zu: want %s", i, cases[i].allowed ? "allowed" : "refused");
}

static void test_peer_access_levels(void **state)
{
    uid_t uids[] = {1001}, read_uids[] = {1001, 3001};
    gid_t gids[] = {2000}, read_gids[] = {4000};
    struct sy_admin_spec spec = {.allow_uids = uids,
                                 .n_allow_uids = 1,
                                 .allow_gids = gids,
                                 .n_allow_gids = 1,
                                 .allow_read_uids = read_uids,
                                 .n_allow_read_uids = 2,
                                 .allow_read_gids = read_gids,
                                 .n_allow_read_gids = 1};
    uint32_t sup[] = {5, 4000};
    static const uint32_t daemon = 500;
    struct {
        struct sy_peer peer;
        const struct sy_admin_spec *spec;
        enum sy_admin_access want;
    } cases[] = {
        {{0, 0, 1, NULL, 0, false}, &spec, SY_ADMIN_OWNER},          /* root */
        {{500, 500, 1, NULL, 0, false}, NULL, SY_ADMIN_OWNER},       /* the daemon's uid */
        {{1001, 1001, 1, NULL, 0, false}, &spec, SY_ADMIN_FULL},     /* in both: the wider */
        {{1002, 2000, 1, NULL, 0, false}, &spec, SY_ADMIN_FULL},     /* allow_gids */
        {{3001, 3001, 1, NULL, 0, false}, &spec, SY_ADMIN_READ},     /* allow_read_uids */
        {{3002, 4000, 1, NULL, 0, false}, &spec, SY_ADMIN_READ},     /* allow_read_gids */
        {{3002, 7, 1, sup, 2, false}, &spec, SY_ADMIN_READ},         /* supplementary group */
        {{3001, 3001, 1, NULL, 0, false}, NULL, SY_ADMIN_DENIED},    /* no lists */
        {{65534, 65534, 1, NULL, 0, false}, &spec, SY_ADMIN_DENIED}, /* not listed */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum sy_admin_access got = sy_admin_peer_access(cases[i].spec, daemon, &cases[i].peer);
        if (got != cases[i].want)
            fail_msg("case %zu: want %d, got %d", i, (int)cases[i].want, (int)got);
        if (sy_admin_peer_allowed(cases[i].spec, daemon, &cases[i].peer) !=
            (cases[i].want >= SY_ADMIN_FULL))
            fail_msg("case %zu: sy_admin_peer_allowed disagrees", i);
    }
}

/* -- running commands ----------------------------------------------------------------------- */

static int calls;

static int cmd_echo(struct sy_admin_req *req)
{
    calls++;
    for (int i = 1; i < req->argc; i++)
        sy_reply_printf(req->reply, "%s\n", req->argv[i]);
    sy_json_begin_array(req->reply, "words");
    for (int i = 1; i < req->argc; i++)
        sy_json_str(req->reply, NULL, req->argv[i]);
    sy_json_end_array(req->reply);
    sy_json_uint(req->reply, "uid", req->peer.uid);
    sy_json_str(req->reply, "command", req->command);
    return 0;
}

static int cmd_fail(struct sy_admin_req *req)
{
    calls++;
    sy_reply_printf(req->reply, "detail\n");
    return sy_reply_error(req->reply, "it failed\nbadly");
}

static ssize_t blob_payload(int argc, char **argv, struct sy_reply *r)
{
    if (argc != 2)
        return sy_reply_error(r, "usage: blob N");
    return atoi(argv[1]);
}

static int cmd_blob(struct sy_admin_req *req)
{
    calls++;
    sy_reply_printf(req->reply, "got %.*s\n", (int)req->payload_len, req->payload);
    return 0;
}

static const struct sy_admin_cmd test_cmds[] = {
    {"echo", "echo WORD...   : say the words", cmd_echo, NULL},
    {"fail", "fail           : always fails", cmd_fail, NULL},
    {"blob", NULL, cmd_blob, blob_payload},
    {NULL, NULL, NULL, NULL},
};

static const struct sy_peer root = {0, 0, 1, NULL, 0};

/* Runs `line` and returns the formatted answer (free it). */
static char *run(struct sy_admin *a, const char *line)
{
    struct sy_reply r;
    sy_reply_init(&r, sy_admin_line_is_json(line, strlen(line)));
    uint64_t published;
    ssize_t need = sy_admin_exec(a, line, strlen(line), NULL, 0, &root, 0, &r, &published);
    assert_int_equal(need, 0);
    assert_int_equal(published, 0);
    size_t len;
    char *out = sy_admin_format(a, &r, &len);
    assert_int_equal(strlen(out), len);
    sy_reply_dispose(&r);
    return out;
}

static struct sy_admin *new_admin(void)
{
    struct sy_admin *a = sy_admin_new(NULL);
    sy_admin_register(a, test_cmds, NULL);
    calls = 0;
    return a;
}

static const struct sy_admin_cmd fake_routing_cmds[] = {
    {"status", "status", cmd_echo, NULL},
    {"revert", "revert", cmd_echo, NULL},
    {NULL, NULL, NULL, NULL},
};

static void test_read_only_peer_runs_only_the_reading_commands(void **state)
{
    struct sy_admin *a = new_admin();
    sy_admin_register(a, fake_routing_cmds, NULL);
    struct sy_peer reader = {3001, 3001, 42, NULL, 0, true};
    static const char *const lines[] = {"status",       "json status", "help",   "ident",
                                        "revert --all", "echo hi",     "blob 5", "fail"};
    static const bool runs[] = {true, true, true, true, false, false, false, false};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct sy_reply r;
        sy_reply_init(&r, sy_admin_line_is_json(lines[i], strlen(lines[i])));
        uint64_t published;
        calls = 0;
        ssize_t need =
            sy_admin_exec(a, lines[i], strlen(lines[i]), NULL, 0, &reader, 0, &r, &published);
        assert_int_equal(need, 0); /* `blob` does not even get to announce its payload */
        if (runs[i] == r.failed)
            fail_msg("%s: %s", lines[i], r.failed ? r.error : "ran");
        if (!runs[i]) {
            assert_int_equal(calls, 0);
            assert_non_null(strstr(r.error, "permission denied"));
            assert_non_null(strstr(r.error, "may only read"));
        }
        sy_reply_dispose(&r);
    }
    assert_true(sy_admin_cmd_is_read_only("explain"));
    assert_true(sy_admin_cmd_is_read_only("history"));
    assert_false(sy_admin_cmd_is_read_only("weights"));
    assert_false(sy_admin_cmd_is_read_only("reload"));
    assert_false(sy_admin_cmd_is_read_only("diff"));
    sy_admin_free(a);
}

static void test_text_answer_ends_in_ok_or_error(void **state)
{
    struct sy_admin *a = new_admin();
    char *out = run(a, "echo one two");
    assert_string_equal(out, "one\ntwo\nok\n");
    free(out);
    out = run(a, "fail");
    assert_string_equal(out, "detail\nerror: it failed badly\n");
    free(out);
    assert_int_equal(calls, 2);
    sy_admin_free(a);
}

static void test_json_answer_is_one_object_line(void **state)
{
    struct sy_admin *a = new_admin();
    char *out = run(a, "json echo \"a b\" c");
    assert_string_equal(out, "{\"ok\":true,\"generation\":0,\"journal_seq\":0,\"words\":[\"a b\","
                             "\"c\"],\"uid\":0,\"command\":\"echo a b c\"}\n");
    free(out);
    out = run(a, "echo --json x");
    assert_string_equal(out, "{\"ok\":true,\"generation\":0,\"journal_seq\":0,\"words\":[\"x\"],"
                             "\"uid\":0,\"command\":\"echo x\"}\n");
    free(out);
    out = run(a, "fail --json");
    assert_string_equal(out, "{\"ok\":false,\"error\":\"it failed badly\",\"generation\":0,"
                             "\"journal_seq\":0}\n");
    free(out);
    sy_admin_free(a);
}

static void test_refusals_run_nothing(void **state)
{
    static const struct {
        const char *line;
        const char *answer;
    } cases[] = {
        {"nope", "error: unknown command 'nope' (try help)\n"},
        {"", "error: empty command (try help)\n"},
        {"json", "{\"ok\":false,\"error\":\"empty command (try help)\",\"generation\":0,"
                 "\"journal_seq\":0}\n"},
        {"echo \"open", "error: unterminated quote\n"},
        {"echo \x01", "error: a command is printable ASCII: no control characters, no bytes "
                      "above 0x7e\n"},
        {"echo \xc3\xa9", "error: a command is printable ASCII: no control characters, no bytes "
                          "above 0x7e\n"},
    };
    struct sy_admin *a = new_admin();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = run(a, cases[i].line);
        if (strcmp(out, cases[i].answer) != 0)
            fail_msg("case %zu: got '%s'", i, out);
        free(out);
    }
    char line[SY_ADMIN_LINE_MAX + 2];
    memset(line, 'x', sizeof(line) - 1);
    memcpy(line, "echo ", 5);
    line[sizeof(line) - 1] = '\0';
    char *out = run(a, line);
    assert_string_equal(out, "error: line too long (at most 4096 bytes)\n");
    free(out);
    assert_int_equal(calls, 0);
    sy_admin_free(a);
}

static void test_help_is_built_from_the_tables(void **state)
{
    struct sy_admin *a = new_admin();
    char *out = run(a, "help");
    assert_non_null(strstr(out, "help "));
    assert_non_null(strstr(out, "ident "));
    assert_non_null(strstr(out, "echo WORD...   : say the words\n"));
    assert_non_null(strstr(out, "fail           : always fails\n"));
    assert_null(strstr(out, "blob")); /* no help line: internal */
    assert_true(strlen(out) > 3 && strcmp(out + strlen(out) - 3, "ok\n") == 0);
    free(out);
    sy_admin_free(a);
}

static void test_payload_is_announced_then_run(void **state)
{
    struct sy_admin *a = new_admin();
    struct sy_reply r;
    sy_reply_init(&r, false);
    uint64_t published;
    assert_int_equal(sy_admin_exec(a, "blob 5", 6, NULL, 0, &root, 0, &r, &published), 5);
    assert_int_equal(calls, 0);
    assert_int_equal(sy_admin_exec(a, "blob 5", 6, "hello", 5, &root, 0, &r, &published), 0);
    assert_int_equal(calls, 1);
    size_t len;
    char *out = sy_admin_format(a, &r, &len);
    assert_string_equal(out, "got hello\nok\n");
    free(out);
    sy_reply_dispose(&r);
    char *bad = run(a, "blob");
    assert_string_equal(bad, "error: usage: blob N\n");
    free(bad);
    sy_admin_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_words_table),
        cmocka_unit_test(test_split_refuses_too_many_words),
        cmocka_unit_test(test_join_round_trips_through_split),
        cmocka_unit_test(test_peer_check_table),
        cmocka_unit_test(test_peer_access_levels),
        cmocka_unit_test(test_read_only_peer_runs_only_the_reading_commands),
        cmocka_unit_test(test_text_answer_ends_in_ok_or_error),
        cmocka_unit_test(test_json_answer_is_one_object_line),
        cmocka_unit_test(test_refusals_run_nothing),
        cmocka_unit_test(test_help_is_built_from_the_tables),
        cmocka_unit_test(test_payload_is_announced_then_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
