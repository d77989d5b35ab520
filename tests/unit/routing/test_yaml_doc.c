/* SPDX-License-Identifier: MIT */
/* Unit tests for the one-pass YAML document builder (routing/yaml_doc.c): for every input, the
 * tree it builds must be the one libyaml's own loader builds (types, text, scalar styles, start
 * marks, order of items and pairs), and aliases and a second document must be refused with their
 * marks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yaml_doc.h"

static void same_mark(struct sy_ymark a, yaml_mark_t b)
{
    assert_int_equal(a.line, b.line);
    assert_int_equal(a.column, b.column);
}

static void same_node(const struct sy_yaml_doc *ours, int i, yaml_document_t *theirs, int j)
{
    const struct sy_ynode *a = sy_yaml_node(ours, i);
    yaml_node_t *b = yaml_document_get_node(theirs, j);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->type, b->type);
    same_mark(a->start_mark, b->start_mark);
    if (a->type == YAML_SCALAR_NODE) {
        assert_int_equal(a->data.scalar.length, b->data.scalar.length);
        assert_memory_equal(a->data.scalar.value, b->data.scalar.value, b->data.scalar.length);
        assert_int_equal(a->data.scalar.value[a->data.scalar.length], '\0');
        assert_int_equal(a->data.scalar.style, b->data.scalar.style);
    } else if (a->type == YAML_SEQUENCE_NODE) {
        long n = b->data.sequence.items.top - b->data.sequence.items.start;
        assert_int_equal(a->data.sequence.items.top - a->data.sequence.items.start, n);
        for (long k = 0; k < n; k++)
            same_node(ours, a->data.sequence.items.start[k], theirs,
                      b->data.sequence.items.start[k]);
    } else {
        long n = b->data.mapping.pairs.top - b->data.mapping.pairs.start;
        assert_int_equal(a->data.mapping.pairs.top - a->data.mapping.pairs.start, n);
        for (long k = 0; k < n; k++) {
            same_node(ours, a->data.mapping.pairs.start[k].key, theirs,
                      b->data.mapping.pairs.start[k].key);
            same_node(ours, a->data.mapping.pairs.start[k].value, theirs,
                      b->data.mapping.pairs.start[k].value);
        }
    }
}

static void no_refusal(void *arg, yaml_mark_t mark, const char *why)
{
    fail_msg("refused at %zu:%zu: %s", mark.line + 1, mark.column + 1, why);
}

/* Builds `text` both ways and compares the trees. */
static void same_as_libyaml(const char *text, size_t len)
{
    yaml_parser_t p;
    assert_true(yaml_parser_initialize(&p));
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    yaml_document_t theirs;
    assert_true(yaml_parser_load(&p, &theirs));
    yaml_parser_delete(&p);

    assert_true(yaml_parser_initialize(&p));
    struct sy_yaml_doc ours;
    assert_int_equal(sy_yaml_doc_build(&p, text, len, &ours, no_refusal, NULL), SY_YAML_OK);
    yaml_parser_delete(&p);

    long n = theirs.nodes.top - theirs.nodes.start;
    assert_int_equal(ours.n_nodes, n);
    if (n)
        same_node(&ours, 1, &theirs, 1);
    else
        assert_null(sy_yaml_root(&ours));
    sy_yaml_doc_free(&ours);
    yaml_document_delete(&theirs);
}

static void test_same_tree_as_libyaml(void **state)
{
    static const char *const inputs[] = {
        "",
        "# only a comment\n",
        "---\n...\n",
        "plain\n",
        "a: 1\nb: [x, 'y', \"z\"]\nc: {d: e, f: []}\ng: {}\n",
        "list:\n  - one\n  - two: 2\n    three: |\n      literal\n      text\n  - >\n    folded\n"
        "    text\n  -\n  - [[], [[]], {a: {b: {c: [1, 2, 3]}}}]\n",
        "? complex key\n: value\n\"quoted key\": 'single'\nempty:\n",
        "anchored: &a value\nother: &b {x: 1}\n", /* anchors without aliases are fine */
        "tagged: !!str 50\nlong: \"a\\tb\\u00e9\\n\"\n",
        "apps:\n  - name: app0\n    hosts: [app0.example.com, \"*.app0.example.com\"]\n"
        "    paths: [/api/, /]\n    weights: {blue: 90, green: 10}\n",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        same_as_libyaml(inputs[i], strlen(inputs[i]));
}

/* A document large enough that the node array and the arena grow past their first blocks. */
static void test_same_tree_as_libyaml_when_the_blocks_grow(void **state)
{
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "apps:\n");
    for (int i = 0; len + 512 < cap && i < 8000; i++) {
        /* Short scalars, a node for every 3 bytes: past the builder's first estimate of the
         * node array (a node for 6 bytes) and of its arena; a long one now and then. */
        len += (size_t)snprintf(text + len, cap - len,
                                "- [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s]\n");
        if (i % 50 == 0)
            len += (size_t)snprintf(text + len, cap - len, "- {x%d: \"%0300d\"}\n", i, i);
    }
    /* The file had to be made of the nodes it claims: check the walk reached its end. */
    assert_true(len > 200000);
    same_as_libyaml(text, len);
    free(text);
}

struct refusals {
    int n;
    yaml_mark_t marks[4];
    char why[4][80];
};

static void note_refusal(void *arg, yaml_mark_t mark, const char *why)
{
    struct refusals *r = arg;
    if (r->n < 4) {
        r->marks[r->n] = mark;
        snprintf(r->why[r->n], sizeof(r->why[0]), "%s", why);
    }
    r->n++;
}

static enum sy_yaml_result build(const char *text, struct refusals *r, yaml_parser_t *p)
{
    memset(r, 0, sizeof(*r));
    struct sy_yaml_doc d;
    enum sy_yaml_result res = sy_yaml_doc_build(p, text, strlen(text), &d, note_refusal, r);
    if (res == SY_YAML_OK)
        sy_yaml_doc_free(&d);
    else
        assert_null(d.nodes);
    return res;
}

static void test_aliases_and_a_second_document_are_refused_every_one(void **state)
{
    yaml_parser_t p;
    struct refusals r;

    assert_true(yaml_parser_initialize(&p));
    assert_int_equal(build("a: &x 1\nb: *x\nc: [*x]\n", &r, &p), SY_YAML_REFUSED);
    yaml_parser_delete(&p);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.marks[0].line, 1);
    assert_int_equal(r.marks[0].column, 3);
    assert_int_equal(r.marks[1].line, 2);
    assert_non_null(strstr(r.why[0], "aliases are not supported"));

    assert_true(yaml_parser_initialize(&p));
    assert_int_equal(build("a: 1\n---\nb: 2\n---\nc: 3\n", &r, &p), SY_YAML_REFUSED);
    yaml_parser_delete(&p);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.marks[0].line, 1);
    assert_non_null(strstr(r.why[0], "only one yaml document"));
}

static void test_a_syntax_error_stops_the_build_with_the_parsers_mark(void **state)
{
    yaml_parser_t p;
    struct refusals r;
    assert_true(yaml_parser_initialize(&p));
    assert_int_equal(build("a: [1, 2\nb: 3\n", &r, &p), SY_YAML_SYNTAX);
    assert_int_equal(p.error, YAML_PARSER_ERROR);
    assert_non_null(p.problem);
    assert_int_equal(p.problem_mark.line, 1);
    yaml_parser_delete(&p);
    assert_int_equal(r.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_tree_as_libyaml),
        cmocka_unit_test(test_same_tree_as_libyaml_when_the_blocks_grow),
        cmocka_unit_test(test_aliases_and_a_second_document_are_refused_every_one),
        cmocka_unit_test(test_a_syntax_error_stops_the_build_with_the_parsers_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
