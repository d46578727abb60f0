/*
 * The in-memory transaction manager of fake_tm.h. Blocks are kept in an array indexed by
 * address - FAKE_BASE; allocation is next-fit over free slots, so addresses freed by a
 * commit are soon reused (a stale pointer then lands on someone else's block and shows).
 */
#include "tests/pool/fake_tm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

struct block {
    pblk_t loc;
    uint8_t *data; /* CS_BLOCK_SIZE bytes for a node, NULL for a data block */
    uint32_t count;
    unsigned pins;
    bool dirty;    /* allocated in the open transaction */
    bool bad_csum; /* broken on purpose by the test */
    uint32_t crc;  /* of a committed node, as stamped */
};

struct pool {
    struct block **blocks; /* by index; NULL = free */
    uint64_t limit, cap;   /* slots in use / allocated */
    uint64_t cursor;       /* next-fit position */
    uint64_t generation;
    unsigned violations;
    uint64_t calls;
    unsigned pins; /* outstanding over all blocks */
    long fail_at;  /* calls left before the injected failure; < 0: none */
    int fail_err;
    bool paranoid;
};

static void violation(struct pool *pool, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void violation(struct pool *pool, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "fake tm: violation: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    pool->violations++;
}

/* Counts the call and says whether it is the one to fail. */
static int injected(struct pool *pool)
{
    pool->calls++;
    if (pool->fail_at < 0)
        return 0;
    if (pool->fail_at-- > 0)
        return 0;
    return -pool->fail_err;
}

static struct block *lookup(struct pool *pool, pblk_t b)
{
    if (b.v < FAKE_BASE || b.v - FAKE_BASE >= pool->limit)
        return NULL;
    return pool->blocks[b.v - FAKE_BASE];
}

static uint32_t node_crc(const struct block *blk)
{
    return crc32c(MD_MAGIC_NODE, blk->data + 4, CS_BLOCK_SIZE - 4);
}

struct pool *fake_pool_create(void)
{
    struct pool *pool = calloc(1, sizeof(*pool));

    if (!pool)
        abort();
    pool->fail_at = -1;
    pool->generation = 1;
    pool->paranoid = true;
    return pool;
}

struct pool *fake_pool_clone(const struct pool *src)
{
    struct pool *pool = malloc(sizeof(*pool));

    if (!pool)
        abort();
    *pool = *src;
    pool->blocks = calloc(src->cap ? src->cap : 1, sizeof(*pool->blocks));
    if (!pool->blocks)
        abort();
    for (uint64_t i = 0; i < src->limit; i++) {
        const struct block *b = src->blocks[i];
        struct block *copy;

        if (!b)
            continue;
        copy = malloc(sizeof(*copy));
        if (!copy)
            abort();
        *copy = *b;
        if (b->data) {
            copy->data = malloc(CS_BLOCK_SIZE);
            if (!copy->data)
                abort();
            memcpy(copy->data, b->data, CS_BLOCK_SIZE);
        }
        pool->blocks[i] = copy;
    }
    return pool;
}

static void free_block(struct pool *pool, uint64_t i)
{
    free(pool->blocks[i]->data);
    free(pool->blocks[i]);
    pool->blocks[i] = NULL;
}

void fake_pool_destroy(struct pool *pool)
{
    if (!pool)
        return;
    for (uint64_t i = 0; i < pool->limit; i++)
        if (pool->blocks[i])
            free_block(pool, i);
    free(pool->blocks);
    free(pool);
}

/* @n consecutive free slots, next-fit from the cursor within a bounded scan, else at the
 * end (the bound keeps allocation cheap when the array is nearly full). */
static uint64_t alloc_slots(struct pool *pool, uint64_t n)
{
    uint64_t run = 0, scan = pool->limit < 4096 ? pool->limit : 4096;

    for (uint64_t k = 0; k < scan; k++) {
        uint64_t i = (pool->cursor + k) % pool->limit;

        if (i == 0)
            run = 0; /* a run does not wrap */
        run = pool->blocks[i] ? 0 : run + 1;
        if (run == n) {
            pool->cursor = i + 1;
            return i + 1 - n;
        }
    }
    if (pool->limit + n > pool->cap) {
        uint64_t cap = pool->cap ? pool->cap * 2 : 1024;

        while (cap < pool->limit + n)
            cap *= 2;
        pool->blocks = realloc(pool->blocks, cap * sizeof(*pool->blocks));
        if (!pool->blocks)
            abort();
        memset(pool->blocks + pool->cap, 0, (cap - pool->cap) * sizeof(*pool->blocks));
        pool->cap = cap;
    }
    pool->limit += n;
    pool->cursor = pool->limit;
    return pool->limit - n;
}

static struct block *new_block(struct pool *pool, uint64_t i, bool node)
{
    struct block *blk = calloc(1, sizeof(*blk));

    if (!blk || (node && !(blk->data = calloc(1, CS_BLOCK_SIZE))))
        abort();
    blk->loc.v = FAKE_BASE + i;
    blk->count = 1;
    blk->dirty = true;
    pool->blocks[i] = blk;
    return blk;
}

pblk_t fake_data_alloc(struct pool *pool, uint64_t n)
{
    uint64_t i = alloc_slots(pool, n);

    for (uint64_t k = 0; k < n; k++)
        new_block(pool, i + k, false);
    return (pblk_t){FAKE_BASE + i};
}

/* What tm_read and tm_shadow check before handing out a node. */
static int get_node(struct pool *pool, pblk_t b, enum tree_type type, const char *what,
                    struct block **out)
{
    struct block *blk = lookup(pool, b);
    const struct disk_node_header *h;

    if (!blk || !blk->data || blk->count == 0) {
        violation(pool, "%s of block 0x%" PRIx64 ", which is %s", what, b.v,
                  !blk         ? "free"
                  : !blk->data ? "a data block"
                               : "unreferenced");
        return -EUCLEAN;
    }
    h = (const struct disk_node_header *)blk->data;
    if (!blk->dirty) {
        if (node_crc(blk) != blk->crc || h->h.csum != blk->crc) {
            if (!blk->bad_csum)
                violation(pool, "committed node 0x%" PRIx64 " changed in place", b.v);
            return -EUCLEAN;
        }
        if (h->h.magic != MD_MAGIC_NODE || h->h.blocknr != b.v)
            return -EUCLEAN;
    }
    if (h->tree_type != (uint32_t)type)
        return -EUCLEAN;
    *out = blk;
    return 0;
}

int tm_read(struct pool *pool, pblk_t b, enum tree_type type, struct block **out)
{
    struct block *blk = NULL;
    int r = injected(pool);

    if (r == 0)
        r = get_node(pool, b, type, "read", &blk);
    if (r < 0)
        return r;
    blk->pins++;
    pool->pins++;
    *out = blk;
    return 0;
}

int tm_new(struct pool *pool, enum tree_type type, struct block **out)
{
    struct block *blk;
    int r = injected(pool);

    (void)type;
    if (r < 0)
        return r;
    blk = new_block(pool, alloc_slots(pool, 1), true);
    blk->pins = 1;
    pool->pins++;
    *out = blk;
    return 0;
}

int tm_shadow(struct pool *pool, pblk_t b, enum tree_type type, struct block **out, bool *shared)
{
    struct block *orig = NULL, *copy;
    int r = injected(pool);

    if (r == 0)
        r = get_node(pool, b, type, "shadow", &orig);
    if (r < 0)
        return r;
    /* Writable in place only when this transaction made it and nobody else holds it. */
    if (orig->dirty && orig->count == 1) {
        orig->pins++;
        pool->pins++;
        *shared = false;
        *out = orig;
        return 0;
    }
    copy = new_block(pool, alloc_slots(pool, 1), true);
    memcpy(copy->data, orig->data, CS_BLOCK_SIZE);
    memset(copy->data, 0, sizeof(struct md_header));
    copy->pins = 1;
    pool->pins++;
    *shared = orig->count > 1;
    orig->count--;
    *out = copy;
    return 0;
}

void tm_unlock(struct pool *pool, struct block *b)
{
    if (b->pins == 0) {
        violation(pool, "unlock of block 0x%" PRIx64 ", which is not pinned", b->loc.v);
        return;
    }
    if (pool->paranoid && !b->dirty && !b->bad_csum && node_crc(b) != b->crc)
        violation(pool, "committed node 0x%" PRIx64 " changed through a read", b->loc.v);
    b->pins--;
    pool->pins--;
}

void *block_data(struct block *b)
{
    return b->data;
}
pblk_t block_loc(const struct block *b)
{
    return b->loc;
}

static int change_refs(struct pool *pool, pblk_t start, uint64_t n, int delta)
{
    int r = injected(pool);

    if (r < 0)
        return r;
    for (uint64_t k = 0; k < n; k++) {
        struct block *blk = lookup(pool, pblk_add(start, k));

        if (!blk || blk->count == 0) {
            violation(pool, "reference %s on block 0x%" PRIx64 ", which is free",
                      delta > 0 ? "taken" : "dropped", start.v + k);
            return -EINVAL;
        }
    }
    for (uint64_t k = 0; k < n; k++)
        lookup(pool, pblk_add(start, k))->count += (uint32_t)delta;
    return 0;
}

int pool_ref_inc(struct pool *pool, pblk_t start, uint64_t n)
{
    return change_refs(pool, start, n, 1);
}

int pool_ref_dec(struct pool *pool, pblk_t start, uint64_t n)
{
    return change_refs(pool, start, n, -1);
}

int pool_ref_count(struct pool *pool, pblk_t b, uint32_t *count)
{
    struct block *blk;
    int r = injected(pool);

    if (r < 0)
        return r;
    blk = lookup(pool, b);
    *count = blk ? blk->count : 0;
    return 0;
}

static void stamp(struct pool *pool, struct block *blk)
{
    struct md_header *h = (struct md_header *)blk->data;

    h->magic = MD_MAGIC_NODE;
    h->blocknr = blk->loc.v;
    h->generation = pool->generation;
    blk->crc = h->csum = node_crc(blk);
    blk->bad_csum = false;
}

void fake_commit(struct pool *pool)
{
    for (uint64_t i = 0; i < pool->limit; i++) {
        struct block *blk = pool->blocks[i];

        if (!blk)
            continue;
        if (blk->pins)
            violation(pool, "block 0x%" PRIx64 " pinned at commit", blk->loc.v);
        if (blk->count == 0) {
            free_block(pool, i);
            continue;
        }
        if (blk->dirty && blk->data)
            stamp(pool, blk);
        blk->dirty = false;
    }
    pool->generation++;
}

void fake_fail_call(struct pool *pool, long n, int err)
{
    pool->fail_at = n;
    pool->fail_err = err;
}

uint64_t fake_calls(struct pool *pool)
{
    return pool->calls;
}
unsigned fake_violations(struct pool *pool)
{
    return pool->violations;
}
void fake_set_paranoid(struct pool *pool, bool on)
{
    pool->paranoid = on;
}
uint64_t fake_block_limit(struct pool *pool)
{
    return pool->limit;
}

unsigned fake_pinned(struct pool *pool)
{
    return pool->pins;
}

static uint64_t count_blocks(struct pool *pool, bool live, bool nodes)
{
    uint64_t n = 0;

    for (uint64_t i = 0; i < pool->limit; i++) {
        const struct block *blk = pool->blocks[i];

        n += blk && (!live || blk->count) && (!nodes || blk->data);
    }
    return n;
}

uint64_t fake_live_blocks(struct pool *pool)
{
    return count_blocks(pool, true, false);
}
uint64_t fake_live_nodes(struct pool *pool)
{
    return count_blocks(pool, true, true);
}
uint64_t fake_held_blocks(struct pool *pool)
{
    return count_blocks(pool, false, false);
}

bool fake_block_info(struct pool *pool, uint64_t i, uint32_t *count, bool *is_node)
{
    if (i >= pool->limit || !pool->blocks[i])
        return false;
    *count = pool->blocks[i]->count;
    *is_node = pool->blocks[i]->data != NULL;
    return true;
}

void *fake_node_data(struct pool *pool, pblk_t b)
{
    struct block *blk = lookup(pool, b);

    return blk ? blk->data : NULL;
}

void fake_restamp(struct pool *pool, pblk_t b)
{
    struct block *blk = lookup(pool, b);

    if (blk && blk->data && !blk->dirty)
        stamp(pool, blk);
}

void fake_break_checksum(struct pool *pool, pblk_t b)
{
    struct block *blk = lookup(pool, b);

    if (blk && blk->data && !blk->dirty) {
        blk->data[CS_BLOCK_SIZE - 1] ^= 0x5a;
        blk->bad_csum = true;
    }
}
