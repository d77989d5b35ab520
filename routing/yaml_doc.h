/* SPDX-License-Identifier: MIT */
/* A YAML document built from libyaml's event stream in one pass, private to routing/.
 *
 * libyaml's own loader (yaml_parser_load) makes several allocations per node (the default tag
 * string, a stack per collection) and cost 3-5 times what parsing the events does: at 10,000
 * apps, 95-155 ms for a 1.8 MB file whose events take 27 ms. Its node is 96 bytes, and writing
 * 230,000 of them was a fifth of a reload on its own. This builder walks the events once and lays
 * out a tree of 32-byte nodes in a few large blocks: the node array, and an arena for the
 * collections' item and pair arrays and the scalars' text. A node keeps what the schema walk in
 * config.c reads, under the names libyaml gives it (type, start_mark, data.scalar.value, length
 * and style, data.sequence.items, data.mapping.pairs): tags, end marks and the styles of
 * collections are not kept. Aliases and a second document are refused while building. */
#ifndef SY_ROUTING_YAML_DOC_H
#define SY_ROUTING_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

struct sy_yaml_chunk;

/** Where a node starts: 0-based, as libyaml's marks. */
struct sy_ymark {
    uint32_t line, column;
};

struct sy_ynode {
    yaml_node_type_t type;
    struct sy_ymark start_mark;
    union {
        struct {
            yaml_char_t *value; /* NUL-terminated; it may also hold a NUL of its own */
            uint32_t length;    /* the file is at most 16 MiB */
            yaml_scalar_style_t style;
        } scalar;
        struct {
            struct {
                yaml_node_item_t *start, *top; /* node indices */
            } items;
        } sequence;
        struct {
            struct {
                yaml_node_pair_t *start, *top;
            } pairs;
        } mapping;
    } data;
};

struct sy_yaml_doc {
    struct sy_ynode *nodes; /* mapped; node index i (1-based, as libyaml's) is nodes[i - 1] */
    size_t n_nodes, mapped;
    struct sy_yaml_chunk *chunks;
};

/** Node `index` (1-based), or NULL. */
static inline struct sy_ynode *sy_yaml_node(const struct sy_yaml_doc *d, int index)
{
    return index > 0 && (size_t)index <= d->n_nodes ? &d->nodes[index - 1] : NULL;
}

/** The root node, or NULL for an empty document. */
static inline struct sy_ynode *sy_yaml_root(const struct sy_yaml_doc *d)
{
    return sy_yaml_node(d, 1);
}

/** Called for a stream that parses but is refused (an alias, a second document). */
typedef void (*sy_yaml_refuse_fn)(void *arg, yaml_mark_t mark, const char *why);

enum sy_yaml_result {
    SY_YAML_OK,
    SY_YAML_SYNTAX,  /* p->error, p->problem and its marks say what and where */
    SY_YAML_REFUSED, /* refuse() was called at least once */
};

/**
 * Parses `text` with `p` (initialised by the caller, deleted by the caller) into `out`. On
 * anything but SY_YAML_OK `out` holds nothing to free. Otherwise free it with sy_yaml_doc_free.
 * Every refusal is reported (the scan goes on to the end); a syntax error stops it.
 */
enum sy_yaml_result sy_yaml_doc_build(yaml_parser_t *p, const char *text, size_t len,
                                      struct sy_yaml_doc *out, sy_yaml_refuse_fn refuse, void *arg);

/**
 * Frees a document. Its blocks, when small, are kept for the next sy_yaml_doc_build on this
 * thread, until sy_yaml_spares_drop gives them back.
 */
void sy_yaml_doc_free(struct sy_yaml_doc *d);

/** Unmaps the blocks this thread keeps for its next build (call when a load is done). */
void sy_yaml_spares_drop(void);

#endif
