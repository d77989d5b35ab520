/* SPDX-License-Identifier: MIT */
/* A YAML document built from libyaml's event stream in one pass, private to routing/.
 *
 * libyaml's own loader (yaml_parser_load) makes several allocations per node (the default tag
 * string, a stack per collection) and cost 3-5 times what parsing the events does: at 10,000
 * apps, 95-155 ms for a 1.8 MB file whose events take 27 ms. This builder walks the events once
 * and lays the same yaml_document_t out in a few large blocks: the node array, and an arena for
 * the collections' item and pair arrays and the scalars' text. The schema walk in config.c reads
 * it exactly as it read libyaml's document (node indices, marks, scalar style); node tags are not
 * kept (always NULL), and aliases and a second document are refused while building. */
#ifndef SY_ROUTING_YAML_DOC_H
#define SY_ROUTING_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>

#include <yaml.h>

struct sy_yaml_chunk;

struct sy_yaml_doc {
    yaml_document_t doc; /* read it with libyaml's yaml_document_get_* functions */
    struct sy_yaml_chunk *chunks;
};

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

void sy_yaml_doc_free(struct sy_yaml_doc *d);

#endif
