/*
 * The metadata block cache: 4 KiB blocks by physical address, bounded in bytes.
 *
 * A block is in one of three states: pinned (in use by a caller), dirty (written in this
 * transaction: never evicted until the commit writes it) or clean and unpinned (on the LRU
 * list, evictable). The bound limits clean blocks; dirty and pinned blocks may exceed it
 * for a while, which the dirty bound of the pool (a commit trigger) keeps short.
 *
 * Threads: guarded by the pool's md lock; no locking here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pool/priv.h"

enum block_list { LIST_NONE, LIST_LRU, LIST_DIRTY };

struct block {
    pblk_t loc;
    void *data;
    struct block *hnext;
    TAILQ_ENTRY(block) link; /* on the LRU or the dirty list */
    uint32_t pins;
    uint8_t list;            /* enum block_list */
    bool dirty, loaded, checked;
};

TAILQ_HEAD(block_list_head, block);

struct cache {
    struct block **buckets;
    size_t nbuckets; /* power of two */
    uint64_t nblocks, ndirty, max_blocks;
    struct block_list_head lru, dirty;
};

void *block_data(struct block *b) { return b->data; }
pblk_t block_loc(const struct block *b) { return b->loc; }
bool cache_is_dirty(const struct block *b) { return b->dirty; }
bool cache_is_checked(const struct block *b) { return b->checked; }
void cache_set_checked(struct block *b) { b->checked = b->loaded = true; }

static size_t bucket_of(const struct cache *c, pblk_t loc)
{
    uint64_t h = loc.v * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (c->nbuckets - 1);
}

static uint64_t bound_to_blocks(uint64_t bytes)
{
    return MAX(bytes / CS_BLOCK_SIZE, (uint64_t)64);
}

int cache_create(uint64_t bound_bytes, struct cache **out)
{
    struct cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->max_blocks = bound_to_blocks(bound_bytes);
    c->nbuckets = 1024;
    while (c->nbuckets < c->max_blocks && c->nbuckets < (1u << 22))
        c->nbuckets <<= 1;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    TAILQ_INIT(&c->lru);
    TAILQ_INIT(&c->dirty);
    *out = c;
    return 0;
}

static void list_remove(struct cache *c, struct block *b)
{
    if (b->list == LIST_LRU)
        TAILQ_REMOVE(&c->lru, b, link);
    else if (b->list == LIST_DIRTY)
        TAILQ_REMOVE(&c->dirty, b, link);
    b->list = LIST_NONE;
}

static void unhash(struct cache *c, struct block *b)
{
    struct block **pp = &c->buckets[bucket_of(c, b->loc)];
    while (*pp != b)
        pp = &(*pp)->hnext;
    *pp = b->hnext;
}

static void block_free(struct cache *c, struct block *b)
{
    list_remove(c, b);
    unhash(c, b);
    if (b->dirty)
        c->ndirty--;
    c->nblocks--;
    free(b->data);
    free(b);
}

void cache_destroy(struct cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct block *b = c->buckets[i];
        while (b) {
            struct block *next = b->hnext;
            free(b->data);
            free(b);
            b = next;
        }
    }
    free(c->buckets);
    free(c);
}

static void evict(struct cache *c)
{
    while (c->nblocks >= c->max_blocks && !TAILQ_EMPTY(&c->lru))
        block_free(c, TAILQ_FIRST(&c->lru));
}

void cache_set_bound(struct cache *c, uint64_t bound_bytes)
{
    c->max_blocks = bound_to_blocks(bound_bytes);
    evict(c);
}

static struct block *lookup(struct cache *c, pblk_t loc)
{
    for (struct block *b = c->buckets[bucket_of(c, loc)]; b; b = b->hnext)
        if (b->loc.v == loc.v)
            return b;
    return NULL;
}

int cache_get(struct cache *c, pblk_t loc, struct block **out, bool *fresh)
{
    struct block *b = lookup(c, loc);
    if (b) {
        if (b->list == LIST_LRU)
            list_remove(c, b);
        b->pins++;
        *fresh = !b->loaded;
        *out = b;
        return 0;
    }
    evict(c);
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->data = aligned_alloc(CS_BLOCK_SIZE, CS_BLOCK_SIZE);
    if (!b->data) {
        free(b);
        return -ENOMEM;
    }
    b->loc = loc;
    b->pins = 1;
    size_t i = bucket_of(c, loc);
    b->hnext = c->buckets[i];
    c->buckets[i] = b;
    c->nblocks++;
    *fresh = true;
    *out = b;
    return 0;
}

void cache_put(struct cache *c, struct block *b)
{
    if (--b->pins > 0)
        return;
    if (!b->loaded) {
        block_free(c, b);
        return;
    }
    if (!b->dirty) {
        b->list = LIST_LRU;
        TAILQ_INSERT_TAIL(&c->lru, b, link);
        evict(c);
    }
}

void cache_discard(struct cache *c, struct block *b)
{
    block_free(c, b);
}

void cache_mark_dirty(struct cache *c, struct block *b)
{
    b->loaded = true;
    b->checked = true;
    if (b->dirty)
        return;
    list_remove(c, b);
    b->dirty = true;
    b->list = LIST_DIRTY;
    TAILQ_INSERT_TAIL(&c->dirty, b, link);
    c->ndirty++;
}

void cache_forget(struct cache *c, pblk_t start, uint64_t n)
{
    if (c->nblocks == 0)
        return;
    if (n > c->nbuckets) {
        /* Cheaper to scan the table once than to probe every block of a long run. */
        for (size_t i = 0; i < c->nbuckets; i++) {
            struct block *b = c->buckets[i];
            while (b) {
                struct block *next = b->hnext;
                if (b->loc.v >= start.v && b->loc.v < start.v + n && b->pins == 0)
                    block_free(c, b);
                b = next;
            }
        }
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        struct block *b = lookup(c, pblk_add(start, i));
        if (b && b->pins == 0)
            block_free(c, b);
    }
}

static int cmp_block_loc(const void *a, const void *b)
{
    const struct block *x = *(struct block *const *)a, *y = *(struct block *const *)b;
    return x->loc.v < y->loc.v ? -1 : x->loc.v > y->loc.v;
}

int cache_write_dirty(struct cache *c, int (*fn)(void *ctx, struct block **run, size_t n),
                      void *ctx)
{
    if (c->ndirty == 0)
        return 0;
    struct block **all = malloc(c->ndirty * sizeof(*all));
    if (!all)
        return -ENOMEM;
    size_t n = 0;
    struct block *b;
    TAILQ_FOREACH(b, &c->dirty, link)
        all[n++] = b;
    qsort(all, n, sizeof(*all), cmp_block_loc);
    int r = 0;
    for (size_t i = 0; i < n && r == 0;) {
        size_t j = i + 1;
        while (j < n && all[j]->loc.v == all[j - 1]->loc.v + 1 &&
               pblk_member(all[j]->loc) == pblk_member(all[i]->loc))
            j++;
        r = fn(ctx, all + i, j - i);
        i = j;
    }
    free(all);
    return r;
}

void cache_mark_all_clean(struct cache *c)
{
    struct block *b;
    while ((b = TAILQ_FIRST(&c->dirty))) {
        list_remove(c, b);
        b->dirty = false;
        c->ndirty--;
        if (b->pins == 0) {
            b->list = LIST_LRU;
            TAILQ_INSERT_TAIL(&c->lru, b, link);
        }
    }
    evict(c);
}

void cache_drop_dirty(struct cache *c)
{
    struct block *b;
    while ((b = TAILQ_FIRST(&c->dirty)))
        block_free(c, b);
}

uint64_t cache_used_bytes(const struct cache *c) { return c->nblocks * CS_BLOCK_SIZE; }
uint64_t cache_dirty_bytes(const struct cache *c) { return c->ndirty * CS_BLOCK_SIZE; }
uint64_t cache_bound_bytes(const struct cache *c) { return c->max_blocks * CS_BLOCK_SIZE; }
