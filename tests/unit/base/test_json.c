/* SPDX-License-Identifier: MIT */
/* Unit tests for the JSON module: the escaper's bytes and its bound, the writer's separators,
 * numbers and nesting, and the reader on good and malformed input (each refusal says why and
 * leaves the output untouched). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard/base.h"
#include "switchyard/json.h"

static void test_escape_quotes_backslashes_controls_and_high_bytes(void **state)
{
    char out[64];
    const char in[] = "a\"b\\c\n\x01\x7f\xc3\xa9";
    size_t n = sy_json_escape(out, sizeof(out), in, sizeof(in) - 1);
    out[n] = '\0';
    assert_string_equal(out, "a\\\"b\\\\c\\u000a\\u0001\\u007f\\u00c3\\u00a9");
}

static void test_escape_stops_before_an_escape_that_does_not_fit(void **state)
{
    char out[8];
    size_t n = sy_json_escape(out, 8, "abc\x01", 4);
    assert_int_equal(n, 3); /* "abc" and no half of \u0001 */
    assert_memory_equal(out, "abc", 3);
}

static void test_writer_separates_members_and_nests(void **state)
{
    struct sy_jw w;
    sy_jw_init(&w);
    sy_jw_begin_object(&w, NULL);
    sy_jw_str(&w, "s", "x\"y");
    sy_jw_str(&w, "n", NULL);
    sy_jw_uint(&w, "u", UINT64_MAX);
    sy_jw_int(&w, "i", INT64_MIN);
    sy_jw_bool(&w, "t", true);
    sy_jw_bool(&w, "f", false);
    sy_jw_null(&w, "z");
    sy_jw_begin_array(&w, "a");
    sy_jw_uint(&w, NULL, 1);
    sy_jw_begin_object(&w, NULL);
    sy_jw_end_object(&w);
    sy_jw_begin_array(&w, NULL);
    sy_jw_end_array(&w);
    sy_jw_raw(&w, NULL, "{\"r\":2}", 7);
    sy_jw_end_array(&w);
    sy_jw_str(&w, "k\x01", "");
    sy_jw_end_object(&w);
    assert_string_equal(w.p, "{\"s\":\"x\\\"y\",\"n\":null,\"u\":18446744073709551615,"
                             "\"i\":-9223372036854775808,\"t\":true,\"f\":false,\"z\":null,"
                             "\"a\":[1,{},[],{\"r\":2}],\"k\\u0001\":\"\"}");
    assert_int_equal(w.len, strlen(w.p));
    sy_jw_dispose(&w);
    assert_null(w.p);
}

static void test_writer_continues_an_object_begun_elsewhere(void **state)
{
    struct sy_jw w;
    sy_jw_init(&w);
    w.comma[0] = true;
    sy_jw_uint(&w, "a", 1);
    sy_jw_uint(&w, "b", 2);
    assert_string_equal(w.p, ",\"a\":1,\"b\":2");
    sy_jw_dispose(&w);
}

static void test_writer_escapes_long_strings_whole(void **state)
{
    /* Longer than the writer's escaping slice, with escapes across its boundaries. */
    char in[300];
    for (size_t i = 0; i < sizeof(in) - 1; i++)
        in[i] = i % 7 == 0 ? '\n' : 'a' + (char)(i % 26);
    in[sizeof(in) - 1] = '\0';
    struct sy_jw w;
    sy_jw_init(&w);
    sy_jw_quoted(&w, in);
    struct sy_jv *v = NULL;
    const char *why = NULL;
    assert_int_equal(sy_jv_parse(w.p, w.len, &v, &why), 0);
    assert_string_equal(sy_jv_str(v), in);
    sy_jv_free(v);
    sy_jw_dispose(&w);
}

static void test_reader_reads_what_the_writer_writes(void **state)
{
    const char text[] =
        "{\"a\":[1,true,false,null,\"x\\u0001\\n\\/\"],\"o\":{\"k\":18446744073709551615},"
        " \"e\":{}, \"l\":[]}\n";
    struct sy_jv *v = NULL;
    const char *why = NULL;
    assert_int_equal(sy_jv_parse(text, sizeof(text) - 1, &v, &why), 0);
    assert_int_equal(sy_jv_type(v), SY_JV_OBJ);
    assert_int_equal(sy_jv_len(v), 4);
    assert_string_equal(sy_jv_key_at(v, 2), "e");
    const struct sy_jv *a = sy_jv_get(v, "a");
    assert_int_equal(sy_jv_len(a), 5);
    assert_int_equal(sy_jv_uint(sy_jv_at(a, 0), 0), 1);
    assert_true(sy_jv_bool(sy_jv_at(a, 1)));
    assert_false(sy_jv_bool(sy_jv_at(a, 2)));
    assert_int_equal(sy_jv_type(sy_jv_at(a, 3)), SY_JV_NULL);
    assert_string_equal(sy_jv_str(sy_jv_at(a, 4)), "x\x01\n/");
    assert_true(sy_jv_uint(sy_jv_get(sy_jv_get(v, "o"), "k"), 0) == UINT64_MAX);
    /* Absent and mistyped values answer as absent, all the way down a chain. */
    assert_null(sy_jv_get(v, "missing"));
    assert_null(sy_jv_str(sy_jv_get(sy_jv_get(v, "missing"), "x")));
    assert_int_equal(sy_jv_uint(sy_jv_get(v, "a"), 7), 7);
    assert_null(sy_jv_at(a, 5));
    assert_null(sy_jv_key_at(a, 0));
    sy_jv_free(v);
    sy_jv_free(NULL);
}

static void test_reader_refuses_malformed_input_and_says_why(void **state)
{
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"", "unexpected end of line"},
        {"{", "expected a key"},
        {"{\"a\"}", "expected ':'"},
        {"{\"a\":1,\"a\":2}", "duplicate key"},
        {"{\"a\":1 \"b\":2}", "expected ',' or '}'"},
        {"[1 2]", "expected ',' or ']'"},
        {"\"abc", "unterminated string"},
        {"\"a\x01\"", "control character in a string"},
        {"\"\\x\"", "bad escape in a string"},
        {"\"\\", "unfinished escape"},
        {"\"\\u0000\"", "unsupported \\u escape"},
        {"\"\\u0100\"", "unsupported \\u escape"},
        {"\"\\u00g0\"", "unsupported \\u escape"},
        {"-1", "negative number"},
        {"01", "number with a leading zero"},
        {"1.5", "numbers must be integers"},
        {"1e3", "numbers must be integers"},
        {"18446744073709551616", "number too large"},
        {"nul", "unexpected character"},
        {"1 2", "trailing bytes after the value"},
        {"[[[[[[[[[[]]]]]]]]]]", "nested too deeply"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sy_jv *v = (struct sy_jv *)&cases[i]; /* must stay untouched */
        const char *why = NULL;
        int rc = sy_jv_parse(cases[i].text, strlen(cases[i].text), &v, &why);
        if (rc != SY_ERR_INVALID || !why || strcmp(why, cases[i].why) != 0)
            fail_msg("case %zu (%s): rc %d, why '%s', want '%s'", i, cases[i].text, rc,
                     why ? why : "(null)", cases[i].why);
        assert_ptr_equal(v, (struct sy_jv *)&cases[i]);
    }
}

static void test_reader_takes_the_deepest_nesting_allowed(void **state)
{
    char text[64] = "";
    for (int i = 0; i <= SY_JV_MAX_DEPTH; i++)
        strcat(text, "[");
    for (int i = 0; i <= SY_JV_MAX_DEPTH; i++)
        strcat(text, "]");
    struct sy_jv *v = NULL;
    const char *why = NULL;
    assert_int_equal(sy_jv_parse(text, strlen(text), &v, &why), 0);
    sy_jv_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_quotes_backslashes_controls_and_high_bytes),
        cmocka_unit_test(test_escape_stops_before_an_escape_that_does_not_fit),
        cmocka_unit_test(test_writer_separates_members_and_nests),
        cmocka_unit_test(test_writer_continues_an_object_begun_elsewhere),
        cmocka_unit_test(test_writer_escapes_long_strings_whole),
        cmocka_unit_test(test_reader_reads_what_the_writer_writes),
        cmocka_unit_test(test_reader_refuses_malformed_input_and_says_why),
        cmocka_unit_test(test_reader_takes_the_deepest_nesting_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
