/* SPDX-License-Identifier: MIT */
/* The one-pass YAML document builder: see yaml_doc.h. */
#define _GNU_SOURCE /* mremap */

#include "yaml_doc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "switchyard/base.h"

#define CHUNK_BYTES ((size_t)64 << 10)

struct sy_yaml_chunk {
    struct sy_yaml_chunk *next;
    size_t used, cap, mapped;
    _Alignas(max_align_t) unsigned char data[];
};

/* An open collection: its node, and where its children start on the pending stack. */
struct frame {
    int node;
    size_t base;
};

struct builder {
    struct sy_yaml_chunk *chunks;
    size_t next_chunk;      /* bytes of the next chunk: the estimate first, then CHUNK_BYTES */
    struct sy_ynode *nodes; /* mapped; cap_nodes of them */
    size_t n_nodes, cap_nodes, mapped;
    int *pending; /* children of the open collections, innermost last */
    size_t n_pending, cap_pending;
    struct frame *frames;
    size_t n_frames, cap_frames;
};

/*
 * Memory for the tree is mapped, not taken from malloc: it is touched once, in order, and
 * given back whole when the walk is done. Each block is mapped with MAP_POPULATE, so its pages
 * come in one call instead of one fault each (on a virtual machine a fault costs microseconds:
 * faults were a third of a 10,000-app parse), and munmap returns them at once, where the heap
 * would keep them until the next trim.
 */
/*
 * The small blocks of the documents freed on this thread since the last sy_yaml_spares_drop,
 * kept for the next build: an apps_dir reload builds one small document per file, and an
 * munmap each (a TLB flush on every CPU the process runs on: hundreds of microseconds on a
 * virtual machine with the workers running) made 100 files cost half as much again as one.
 */
#define SPARES    2
#define SPARE_MAX ((size_t)1 << 20)

static __thread struct spare {
    void *p;
    size_t bytes;
} spares[SPARES];

/* A block of at least *bytes (a spare, or a new mapping); *bytes is set to its size. */
static void *map_block(size_t *bytes)
{
    for (int i = 0; i < SPARES; i++) {
        if (spares[i].p && spares[i].bytes >= *bytes) {
            void *p = spares[i].p;
            *bytes = spares[i].bytes;
            spares[i].p = NULL;
            return p;
        }
    }
    void *p = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED)
        sy_oom(*bytes);
    return p;
}

static void unmap_block(void *p, size_t bytes)
{
    for (int i = 0; i < SPARES && bytes <= SPARE_MAX; i++) {
        if (!spares[i].p) {
            spares[i] = (struct spare){p, bytes};
            return;
        }
    }
    munmap(p, bytes);
}

void sy_yaml_spares_drop(void)
{
    for (int i = 0; i < SPARES; i++) {
        if (spares[i].p)
            munmap(spares[i].p, spares[i].bytes);
        spares[i].p = NULL;
    }
}

static size_t page_round(size_t bytes)
{
    return (bytes + 4095) & ~(size_t)4095;
}

static void *arena_alloc(struct builder *b, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    struct sy_yaml_chunk *c = b->chunks;
    if (!c || c->cap - c->used < size) {
        size_t want = b->next_chunk > CHUNK_BYTES ? b->next_chunk : CHUNK_BYTES;
        b->next_chunk = CHUNK_BYTES;
        size_t mapped = page_round(sizeof(*c) + (size > want ? size : want));
        c = map_block(&mapped);
        c->used = 0;
        c->cap = mapped - sizeof(*c);
        c->mapped = mapped;
        c->next = b->chunks;
        b->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

static void free_chunks(struct sy_yaml_chunk *c)
{
    while (c) {
        struct sy_yaml_chunk *next = c->next;
        unmap_block(c, c->mapped);
        c = next;
    }
}

static void grow_nodes(struct builder *b)
{
    size_t old = b->mapped;
    size_t bytes = old * 2;
    void *p = mremap(b->nodes, old, bytes, MREMAP_MAYMOVE);
    if (p == MAP_FAILED)
        sy_oom(bytes);
#ifdef MADV_POPULATE_WRITE
    (void)madvise((char *)p + old, bytes - old, MADV_POPULATE_WRITE);
#endif
    b->nodes = p;
    b->mapped = bytes;
    b->cap_nodes = bytes / sizeof(*b->nodes);
}

/* Appends a node and makes it a child of the innermost open collection; returns its index. */
static int add_node(struct builder *b, const struct sy_ynode *n)
{
    if (b->n_nodes >= INT32_MAX - 1)
        return 0; /* the 16 MiB file limit keeps us far from this */
    if (b->n_nodes == b->cap_nodes)
        grow_nodes(b);
    b->nodes[b->n_nodes++] = *n;
    int index = (int)b->n_nodes; /* 1-based, as libyaml's */
    if (b->n_frames) {
        sy_xgrow((void **)&b->pending, &b->cap_pending, b->n_pending + 1, sizeof(*b->pending));
        b->pending[b->n_pending++] = index;
    }
    return index;
}

static struct sy_ymark mark_of(const yaml_event_t *ev)
{
    /* Lines and columns of a file of at most 16 MiB fit. */
    return (struct sy_ymark){(uint32_t)ev->start_mark.line, (uint32_t)ev->start_mark.column};
}

static void open_collection(struct builder *b, const yaml_event_t *ev, yaml_node_type_t type)
{
    struct sy_ynode n;
    memset(&n, 0, sizeof(n));
    n.type = type;
    n.start_mark = mark_of(ev);
    int index = add_node(b, &n);
    sy_xgrow((void **)&b->frames, &b->cap_frames, b->n_frames + 1, sizeof(*b->frames));
    b->frames[b->n_frames++] = (struct frame){.node = index, .base = b->n_pending};
}

/* Moves the collection's children from the pending stack into the arena. */
static void close_collection(struct builder *b, const yaml_event_t *ev)
{
    if (!b->n_frames)
        return;
    struct frame f = b->frames[--b->n_frames];
    size_t n = b->n_pending - f.base;
    const int *kids = n ? b->pending + f.base : NULL; /* pending may be NULL */
    b->n_pending = f.base;
    if (!f.node)
        return;
    struct sy_ynode *node = &b->nodes[f.node - 1];
    if (node->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *items = n ? arena_alloc(b, n * sizeof(*items)) : NULL;
        if (n)
            memcpy(items, kids, n * sizeof(*items));
        node->data.sequence.items.start = items;
        node->data.sequence.items.top = n ? items + n : items; /* no arithmetic on NULL */
    } else {
        /* An alias refused inside a mapping leaves it a child short: drop the odd one. */
        size_t pairs = n / 2;
        yaml_node_pair_t *p = pairs ? arena_alloc(b, pairs * sizeof(*p)) : NULL;
        for (size_t i = 0; i < pairs; i++) {
            p[i].key = kids[2 * i];
            p[i].value = kids[2 * i + 1];
        }
        node->data.mapping.pairs.start = p;
        node->data.mapping.pairs.top = pairs ? p + pairs : p;
    }
}

static void add_scalar(struct builder *b, const yaml_event_t *ev)
{
    struct sy_ynode n;
    memset(&n, 0, sizeof(n));
    n.type = YAML_SCALAR_NODE;
    n.start_mark = mark_of(ev);
    size_t len = ev->data.scalar.length;
    yaml_char_t *value = arena_alloc(b, len + 1);
    if (len)
        memcpy(value, ev->data.scalar.value, len);
    value[len] = '\0';
    n.data.scalar.value = value;
    n.data.scalar.length = (uint32_t)len;
    n.data.scalar.style = ev->data.scalar.style;
    add_node(b, &n);
}

enum sy_yaml_result sy_yaml_doc_build(yaml_parser_t *p, const char *text, size_t len,
                                      struct sy_yaml_doc *out, sy_yaml_refuse_fn refuse, void *arg)
{
    struct builder b;
    memset(&b, 0, sizeof(b));
    memset(out, 0, sizeof(*out));
    /* A routing file has a node for every 8 bytes or so (10,000 apps: 1.8 MB, 230,000 nodes);
     * the scalars' text is shorter than the file, and an item or a pair per node is 8 bytes. */
    size_t est = len / 6 + 64;
    size_t bytes = page_round(est * sizeof(*b.nodes));
    b.nodes = map_block(&bytes);
    b.mapped = bytes;
    b.cap_nodes = bytes / sizeof(*b.nodes);
    b.next_chunk = len + est * 8 + 4096;
    yaml_parser_set_input_string(p, (const unsigned char *)text, len);
    enum sy_yaml_result result = SY_YAML_OK;
    size_t docs = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev)) {
            result = SY_YAML_SYNTAX;
            break;
        }
        yaml_event_type_t type = ev.type;
        switch (type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++docs == 2) {
                refuse(arg, ev.start_mark, "only one yaml document is allowed");
                result = SY_YAML_REFUSED;
            }
            break;
        case YAML_ALIAS_EVENT:
            refuse(arg, ev.start_mark, "aliases are not supported: write the value out");
            result = SY_YAML_REFUSED;
            break;
        case YAML_SCALAR_EVENT:
            if (docs == 1)
                add_scalar(&b, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            if (docs == 1)
                open_collection(&b, &ev, YAML_SEQUENCE_NODE);
            break;
        case YAML_MAPPING_START_EVENT:
            if (docs == 1)
                open_collection(&b, &ev, YAML_MAPPING_NODE);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (docs == 1)
                close_collection(&b, &ev);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
    }
    free(b.pending);
    free(b.frames);
    if (result != SY_YAML_OK) {
        unmap_block(b.nodes, b.mapped);
        free_chunks(b.chunks);
        memset(out, 0, sizeof(*out));
        return result;
    }
    out->nodes = b.nodes;
    out->n_nodes = b.n_nodes;
    out->mapped = b.mapped;
    out->chunks = b.chunks;
    return SY_YAML_OK;
}

void sy_yaml_doc_free(struct sy_yaml_doc *d)
{
    if (d->nodes)
        unmap_block(d->nodes, d->mapped);
    free_chunks(d->chunks);
    memset(d, 0, sizeof(*d));
}
