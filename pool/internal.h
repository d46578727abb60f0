/*
 * Cistern pool: interfaces shared by the files of pool/ (not part of the public API).
 *
 * The transaction manager (tm.c) hands metadata blocks to the B+tree code (btree.c) through
 * the block cache (cache.c):
 *   - tm_read()   a committed or dirty node, checked (checksum, magic, own address, type);
 *   - tm_new()    a zeroed node allocated in this transaction (reference count 1);
 *   - tm_shadow() a writable copy of a node: the same block when it was allocated in this
 *                 transaction (it is dirty in the cache) and is referenced once, else a new
 *                 block holding a copy,
 *                 with the original's reference dropped. *shared tells the caller that the
 *                 original had other owners, so the copy's children (internal node) or its
 *                 values' references (leaf) must each gain one reference.
 * A block handed out stays pinned in the cache until tm_unlock(). Dirty blocks stay pinned
 * until the commit writes them. Nodes of the reference-count tree are never shared, which is
 * what lets the space map fold its deltas into that tree without asking it for counts.
 *
 * All of this runs under the pool's md lock.
 */
#ifndef CISTERN_POOL_INTERNAL_H
#define CISTERN_POOL_INTERNAL_H

#include <stdarg.h>

#include "pool/pool.h"

struct block;

/* The 4096 bytes of a block held through the cache. Writable only if obtained from tm_new or
 * tm_shadow. */
void *block_data(struct block *b);
pblk_t block_loc(const struct block *b);

int tm_read(struct pool *pool, pblk_t b, enum tree_type type, struct block **out);
int tm_new(struct pool *pool, enum tree_type type, struct block **out);
int tm_shadow(struct pool *pool, pblk_t b, enum tree_type type, struct block **out,
              bool *shared);
void tm_unlock(struct pool *pool, struct block *b);

/* Node layout helpers (format.h describes the header). */
#include "pool/format.h"
static inline struct disk_node_header *node_header(void *data)
{
    return (struct disk_node_header *)data;
}
static inline uint64_t *node_keys(void *data)
{
    return (uint64_t *)((char *)data + sizeof(struct disk_node_header));
}
static inline void *node_values(void *data)
{
    struct disk_node_header *h = node_header(data);
    return (char *)data + sizeof(struct disk_node_header) + 8u * h->max_entries;
}

/* Walks a tree for pool_check, verifying node invariants: keys strictly increasing, within
 * the bounds its parent gives, every leaf at level 0 and every child one level below its
 * parent, nr_entries <= max_entries, value_size and tree_type as expected, non-root nodes not
 * empty. */
struct btree_check_ops {
    /* Each reference to a node: return 1 to descend (first visit), 0 to skip (seen), <0 to
     * stop. */
    int (*node)(void *ctx, pblk_t b, enum tree_type type);
    /* Each value of a leaf visited. */
    int (*value)(void *ctx, enum tree_type type, uint64_t key, const void *value);
    /* A problem found (one line, no newline). */
    void (*problem)(void *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
};
/* Returns 0 when walked (problems go to ops->problem), <0 when an op stopped it. */
int btree_check(struct pool *pool, enum tree_type type, pblk_t root,
                const struct btree_check_ops *ops, void *ctx);

/* Adds one reference for each reference a value holds (used when a shared leaf is copied). */
int value_refs_inc(struct pool *pool, const struct btree_type *t, const void *value);
/* Drops them (replace, remove, drop). */
int value_refs_dec(struct pool *pool, const struct btree_type *t, const void *value);

#endif
