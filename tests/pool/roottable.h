/*
 * A root table for the model tests: a tree of type TREE_DEDUP kept in the superblock's
 * POOL_ROOT_DEDUP slot, whose values hold the roots of the trees a test builds. pool_check
 * walks the superblock's roots only, so this is how it reaches (and recounts the references
 * of) every tree of a test without the volumes layer.
 *
 * Keys are the test's tree ids; a value names a root and its tree type, and holds one
 * reference to that root. As in the catalog (volumes/catalog.c), a tree whose root moved
 * by shadowing is stored back raw: its reference moved with the root. The table itself is
 * never shared.
 *
 * Threads: every function needs the pool's md lock.
 */
#ifndef CISTERN_TESTS_ROOTTABLE_H
#define CISTERN_TESTS_ROOTTABLE_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pool/pool.h"

struct rt_value {
    uint64_t root;
    uint32_t type; /* enum tree_type of the tree at root */
    uint32_t pad;
};

static unsigned rt_refs(const void *value, struct value_ref *out)
{
    struct rt_value v;
    memcpy(&v, value, sizeof(v));
    out[0] = (struct value_ref){.start = {v.root}, .nblocks = 1, .tree_type = v.type};
    return 1;
}

static int rt_check(uint64_t key, const void *value, char *why, size_t len)
{
    struct rt_value v;
    memcpy(&v, value, sizeof(v));
    (void)key;
    if (v.root == 0 || v.type == TREE_NONE || v.type >= TREE_TYPE_MAX || v.pad != 0) {
        snprintf(why, len, "root table entry %#llx type %u is malformed",
                 (unsigned long long)v.root, v.type);
        return -EUCLEAN;
    }
    return 0;
}

static inline void rt_register(void)
{
    static const struct btree_type t = {
        .type = TREE_DEDUP,
        .value_size = sizeof(struct rt_value),
        .name = "root-table",
        .refs = rt_refs,
        .check = rt_check,
    };
    btree_type_register(&t);
}

/* Creates an empty table in the superblock. */
static inline int rt_create(struct pool *pool)
{
    pblk_t root;
    int r = btree_create(pool, TREE_DEDUP, &root);
    if (r == 0)
        pool_root_set(pool, POOL_ROOT_DEDUP, root);
    return r;
}

/* Inserts (@raw false: a new entry, handing the caller's reference to @root over to the
 * table) or stores back a moved root (@raw true). */
static inline int rt_put(struct pool *pool, uint64_t id, pblk_t root, enum tree_type type, bool raw)
{
    struct rt_value v = {.root = root.v, .type = (uint32_t)type};
    pblk_t t = pool_root_get(pool, POOL_ROOT_DEDUP), nt;
    int r = raw ? btree_insert_raw(pool, TREE_DEDUP, t, id, &v, &nt)
                : btree_insert(pool, TREE_DEDUP, t, id, &v, &nt);
    if (r == 0)
        pool_root_set(pool, POOL_ROOT_DEDUP, nt);
    return r;
}

/* Removes an entry, dropping its tree. */
static inline int rt_remove(struct pool *pool, uint64_t id)
{
    pblk_t t = pool_root_get(pool, POOL_ROOT_DEDUP), nt;
    int r = btree_remove(pool, TREE_DEDUP, t, id, &nt);
    if (r == 0)
        pool_root_set(pool, POOL_ROOT_DEDUP, nt);
    return r;
}

static inline int rt_get(struct pool *pool, uint64_t id, pblk_t *root, uint32_t *type)
{
    struct rt_value v;
    int r = btree_lookup(pool, TREE_DEDUP, pool_root_get(pool, POOL_ROOT_DEDUP), id, &v);
    if (r == 0) {
        *root = (pblk_t){v.root};
        *type = v.type;
    }
    return r;
}

/* Drops the (emptied) table and clears the superblock slot. */
static inline int rt_destroy(struct pool *pool)
{
    int r = btree_drop(pool, TREE_DEDUP, pool_root_get(pool, POOL_ROOT_DEDUP));
    if (r == 0)
        pool_root_set(pool, POOL_ROOT_DEDUP, PBLK_NONE);
    return r;
}

#endif
