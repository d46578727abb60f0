/*
 * The transaction manager: hands tree nodes to the B+tree code through the cache, checking
 * every node read from a member, and implements shadowing (copy-on-write).
 *
 * A node is dirty exactly when it was allocated in the open transaction, since committed
 * nodes are never modified: a dirty node referenced once may be changed in place.
 *
 * Threads: md lock.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "pool/priv.h"

static const char *tree_name(enum tree_type type)
{
    const struct btree_type *t = btree_type_get(type);
    return t && t->name ? t->name : "?";
}

/* What only a fresh read can tell: the block is a node, intact, where it should be, and from
 * a committed transaction. Its shape is checked by the B+tree on every visit, where the
 * parent's level is known. */
static int node_verify(struct pool *pool, const void *data, pblk_t b, const char **why)
{
    if (md_verify(data, MD_MAGIC_NODE, b, why) < 0)
        return -EUCLEAN;
    const struct disk_node_header *h = data;
    if (h->h.generation > atomic_load(&pool->generation)) {
        *why = "written by a transaction that never committed";
        return -EUCLEAN;
    }
    return 0;
}

int tm_read(struct pool *pool, pblk_t b, enum tree_type type, struct block **out)
{
    if (pblk_is_none(b)) {
        log_err("pool %s: tree %s: reference to block 0", pool->name, tree_name(type));
        return -EUCLEAN;
    }
    struct block *blk;
    bool fresh;
    int r = cache_get(pool->cache, b, &blk, &fresh);
    if (r < 0)
        return r;
    if (fresh) {
        r = dev_read(pool, b, block_data(blk), 1);
        if (r < 0) {
            cache_discard(pool->cache, blk);
            return r;
        }
    }
    if (!cache_is_checked(blk)) {
        const char *why;
        if (node_verify(pool, block_data(blk), b, &why) < 0) {
            log_err("pool %s: tree %s: node %#llx: %s", pool->name, tree_name(type),
                    (unsigned long long)b.v, why);
            cache_discard(pool->cache, blk);
            return -EUCLEAN;
        }
        cache_set_checked(blk);
    }
    *out = blk;
    return 0;
}

int tm_new(struct pool *pool, enum tree_type type, struct block **out)
{
    pblk_t b;
    int r = sm_alloc_meta(pool, &b);
    if (r < 0)
        return r;
    struct block *blk;
    bool fresh;
    r = cache_get(pool->cache, b, &blk, &fresh);
    if (r < 0) {
        pool_ref_dec(pool, b, 1);
        return r;
    }
    memset(block_data(blk), 0, CS_BLOCK_SIZE);
    node_header(block_data(blk))->tree_type = type;
    cache_mark_dirty(pool->cache, blk);
    *out = blk;
    return 0;
}

int tm_shadow(struct pool *pool, pblk_t b, enum tree_type type, struct block **out,
              bool *shared)
{
    if (pool->poisoned)
        return pool->poisoned;
    struct block *orig;
    int r = tm_read(pool, b, type, &orig);
    if (r < 0)
        return r;
    *shared = false;
    /* Reference-count tree nodes are never shared (see internal.h); others may be, even when
     * written in this transaction (a snapshot taken right after a write). */
    uint32_t count = 1;
    if (type != TREE_REFCOUNT) {
        r = pool_ref_count(pool, b, &count);
        if (r < 0)
            goto fail;
    }
    if (cache_is_dirty(orig) && count == 1) {
        *out = orig;
        return 0;
    }
    struct block *copy;
    r = tm_new(pool, type, &copy);
    if (r < 0)
        goto fail;
    memcpy(block_data(copy), block_data(orig), CS_BLOCK_SIZE);
    cache_put(pool->cache, orig);
    r = pool_ref_dec(pool, b, 1);
    if (r < 0) {
        cache_put(pool->cache, copy);
        return r;
    }
    *shared = count > 1;
    *out = copy;
    return 0;
fail:
    cache_put(pool->cache, orig);
    return r;
}

void tm_unlock(struct pool *pool, struct block *b)
{
    cache_put(pool->cache, b);
}
