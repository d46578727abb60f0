/*
 * The extent map of a volume (see thin.h for the model and invariants).
 *
 * References: each extent holds one reference on each block of its physical run. Splitting an
 * extent (a write or discard in its middle) keeps the parts that stay mapped and drops the
 * part that goes: the parts' references are taken before the old value is replaced, which
 * drops the whole run once, so the net change is -1 on exactly the blocks unmapped.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "thin/thin.h"

static unsigned extent_refs(const void *value, struct value_ref *out)
{
    const struct disk_extent *v = value;
    out[0].start = (pblk_t){v->pstart};
    out[0].nblocks = v->plen;
    out[0].tree_type = TREE_NONE;
    return 1;
}

static int extent_check(uint64_t key, const void *value, char *why, size_t len)
{
    const struct disk_extent *v = value;
    if (v->ngrains == 0 || v->plen == 0)
        snprintf(why, len, "empty extent");
    else if (v->flags & ~THIN_EXT_COMPRESSED)
        snprintf(why, len, "unknown flags %#x", v->flags);
    else if ((v->flags & THIN_EXT_COMPRESSED) && v->ngrains != 1)
        snprintf(why, len, "compressed extent of %u grains", v->ngrains);
    else if (!(v->flags & THIN_EXT_COMPRESSED) && v->plen % v->ngrains)
        snprintf(why, len, "physical length %u is not a whole number of grains (%u)", v->plen,
                 v->ngrains);
    else if (key + v->ngrains < key)
        snprintf(why, len, "extent wraps around");
    else
        return 0;
    return -EUCLEAN;
}

static const struct btree_type mapping_type = {
    .type = TREE_MAPPING,
    .value_size = sizeof(struct disk_extent),
    .name = "mapping",
    .refs = extent_refs,
    .check = extent_check,
};

void thin_init(void)
{
    btree_type_register(&mapping_type);
}

static void to_extent(uint64_t key, const struct disk_extent *v, struct thin_extent *e)
{
    e->grain = key;
    e->ngrains = v->ngrains;
    e->flags = v->flags;
    e->pstart = (pblk_t){v->pstart};
    e->plen = v->plen;
}

static struct disk_extent to_disk(const struct thin_extent *e)
{
    return (struct disk_extent){
        .pstart = e->pstart.v, .ngrains = e->ngrains, .plen = e->plen, .flags = e->flags};
}

int thin_map_create(struct pool *pool, pblk_t *root)
{
    return btree_create(pool, TREE_MAPPING, root);
}

int thin_map_lookup(struct pool *pool, pblk_t root, uint64_t grain, struct thin_extent *out)
{
    struct disk_extent v;
    uint64_t k;
    int r = btree_lookup_le(pool, TREE_MAPPING, root, grain, &k, &v);
    if (r < 0)
        return r;
    if (grain >= k + v.ngrains)
        return -ENOENT;
    to_extent(k, &v, out);
    return 0;
}

/* The part of @e within [lo, hi). */
static void clip(struct thin_extent *e, uint64_t lo, uint64_t hi, uint32_t grain_blocks)
{
    if (e->flags & THIN_EXT_COMPRESSED)
        return;
    uint64_t s = MAX(e->grain, lo), end = MIN(e->grain + e->ngrains, hi);
    e->pstart = pblk_add(e->pstart, (s - e->grain) * grain_blocks);
    e->grain = s;
    e->ngrains = (uint32_t)(end - s);
    e->plen = e->ngrains * grain_blocks;
}

struct walk_ctx {
    uint64_t lo, hi;
    uint32_t grain_blocks;
    thin_extent_fn fn;
    void *ctx;
};

static int walk_one(void *ctx, uint64_t key, const void *value)
{
    struct walk_ctx *w = ctx;
    if (key >= w->hi)
        return 1;
    struct thin_extent e;
    to_extent(key, value, &e);
    if (e.grain + e.ngrains <= w->lo)
        return 0;
    clip(&e, w->lo, w->hi, w->grain_blocks);
    int r = w->fn(w->ctx, &e);
    return r;
}

int thin_map_walk(struct pool *pool, pblk_t root, uint64_t grain, uint64_t ngrains,
                  uint32_t grain_blocks, thin_extent_fn fn, void *ctx)
{
    struct walk_ctx w = {grain, grain + ngrains, grain_blocks, fn, ctx};
    struct disk_extent v;
    uint64_t k, from = grain;
    int r = btree_lookup_le(pool, TREE_MAPPING, root, grain, &k, &v);
    if (r == 0 && k + v.ngrains > grain)
        from = k;
    else if (r < 0 && r != -ENOENT)
        return r;
    r = btree_iterate(pool, TREE_MAPPING, root, from, walk_one, &w);
    return r == 1 ? 0 : r;
}

/* Stores @v at @key, replacing whatever is there. */
static int put(struct pool *pool, pblk_t *root, uint64_t key, const struct disk_extent *v)
{
    pblk_t nr;
    int r = btree_insert(pool, TREE_MAPPING, *root, key, v, &nr);
    if (r == 0)
        *root = nr;
    return r;
}

/* A part [from, to) of extent @e (uncompressed), as a value holding its own references. */
static int part_of(struct pool *pool, const struct thin_extent *e, uint64_t from, uint64_t to,
                   uint32_t grain_blocks, struct disk_extent *out)
{
    struct thin_extent p = *e;
    clip(&p, from, to, grain_blocks);
    *out = to_disk(&p);
    return pool_ref_inc(pool, p.pstart, p.plen);
}

int thin_map_remove(struct pool *pool, pblk_t root, uint64_t grain, uint64_t ngrains,
                    uint32_t grain_blocks, pblk_t *new_root)
{
    uint64_t lo = grain, hi = grain + ngrains;
    int r = 0;
    while (lo < hi) {
        struct disk_extent v;
        uint64_t k;
        r = btree_lookup_le(pool, TREE_MAPPING, root, lo, &k, &v);
        if (r == 0 && k + v.ngrains <= lo)
            r = -ENOENT;
        if (r == -ENOENT) {
            r = btree_lookup_ge(pool, TREE_MAPPING, root, lo, &k, &v);
            if (r == -ENOENT || (r == 0 && k >= hi)) {
                r = 0;
                break;
            }
        }
        if (r < 0)
            break;
        struct thin_extent e;
        to_extent(k, &v, &e);
        uint64_t end = k + e.ngrains;
        struct disk_extent head, tail;
        bool has_head = k < lo, has_tail = end > hi;
        if ((has_head || has_tail) && (e.flags & THIN_EXT_COMPRESSED)) {
            r = -EUCLEAN; /* a one-grain extent cannot stick out of a grain range */
            break;
        }
        if (has_tail) {
            r = part_of(pool, &e, hi, end, grain_blocks, &tail);
            if (r == 0)
                r = put(pool, &root, hi, &tail);
        }
        if (r == 0 && has_head) {
            r = part_of(pool, &e, k, lo, grain_blocks, &head);
            if (r == 0)
                r = put(pool, &root, k, &head); /* replaces e, dropping its references */
        } else if (r == 0) {
            pblk_t nr;
            r = btree_remove(pool, TREE_MAPPING, root, k, &nr);
            if (r == 0)
                root = nr;
        }
        if (r < 0)
            break;
        lo = MIN(end, hi);
    }
    *new_root = root;
    return r;
}

/* True when @b continues @a physically and both are plain extents. */
static bool continues(const struct thin_extent *a, const struct thin_extent *b)
{
    return !(a->flags & THIN_EXT_COMPRESSED) && !(b->flags & THIN_EXT_COMPRESSED) &&
           a->grain + a->ngrains == b->grain && a->pstart.v + a->plen == b->pstart.v &&
           pblk_member(a->pstart) == pblk_member(b->pstart) &&
           (uint64_t)a->ngrains + b->ngrains <= THIN_MAX_EXTENT_GRAINS;
}

int thin_map_insert(struct pool *pool, pblk_t root, const struct thin_extent *e,
                    uint32_t grain_blocks, pblk_t *new_root)
{
    struct thin_extent m = *e, left;
    uint64_t end = e->grain + e->ngrains, k;
    struct disk_extent v;
    bool has_left = false;
    /* The extent starting last before our end tells whether anything maps into the range
     * (it starts inside or reaches into it) and, when nothing does, is the left neighbour:
     * writing into unmapped space costs one lookup, not a removal. */
    int r = btree_lookup_le(pool, TREE_MAPPING, root, end - 1, &k, &v);
    if (r == 0 && k + v.ngrains > e->grain) {
        r = thin_map_remove(pool, root, e->grain, e->ngrains, grain_blocks, &root);
        if (r == 0 && e->grain > 0)
            r = btree_lookup_le(pool, TREE_MAPPING, root, e->grain - 1, &k, &v);
        else if (r == 0)
            r = -ENOENT;
    }
    if (r == 0) {
        has_left = true; /* it ends at or before our start */
        to_extent(k, &v, &left);
    } else if (r == -ENOENT) {
        r = 0;
    }
    /* Merge with the left neighbour: it takes over our references, keeps its own. */
    if (r == 0 && has_left && continues(&left, &m)) {
        r = pool_ref_inc(pool, left.pstart, left.plen);
        m.grain = left.grain;
        m.ngrains += left.ngrains;
        m.pstart = left.pstart;
        m.plen += left.plen;
    }
    /* And with the right one, which must start exactly at our end to continue us. */
    if (r == 0) {
        struct disk_extent rv;
        int l = btree_lookup(pool, TREE_MAPPING, root, end, &rv);
        struct thin_extent right;
        to_extent(end, &rv, &right);
        if (l == 0 && continues(&m, &right)) {
            pblk_t nr;
            r = pool_ref_inc(pool, right.pstart, right.plen);
            if (r == 0)
                r = btree_remove(pool, TREE_MAPPING, root, right.grain, &nr);
            if (r == 0) {
                root = nr;
                m.ngrains += right.ngrains;
                m.plen += right.plen;
            }
        } else if (l < 0 && l != -ENOENT) {
            r = l;
        }
    }
    if (r == 0) {
        struct disk_extent v = to_disk(&m);
        r = put(pool, &root, m.grain, &v);
    }
    *new_root = root;
    return r;
}

struct usage_ctx {
    uint64_t blocks, extents;
};

static int usage_one(void *ctx, uint64_t key, const void *value)
{
    struct usage_ctx *u = ctx;
    const struct disk_extent *v = value;
    (void)key;
    u->blocks += v->plen;
    u->extents++;
    return 0;
}

int thin_map_usage(struct pool *pool, pblk_t root, uint64_t *blocks, uint64_t *extents)
{
    struct usage_ctx u = {0, 0};
    int r = btree_iterate(pool, TREE_MAPPING, root, 0, usage_one, &u);
    *blocks = u.blocks;
    *extents = u.extents;
    return r;
}

struct unique_ctx {
    struct pool *pool;
    uint64_t blocks;
};

static int unique_one(void *ctx, uint64_t key, const void *value)
{
    struct unique_ctx *u = ctx;
    const struct disk_extent *v = value;
    uint64_t single;
    (void)key;
    int r = pool_ref_single(u->pool, (pblk_t){v->pstart}, v->plen, &single);
    u->blocks += single;
    return r;
}

int thin_map_unique(struct pool *pool, pblk_t root, uint64_t *blocks)
{
    struct unique_ctx u = {pool, 0};
    uint64_t nodes;
    int r = btree_walk_exclusive(pool, TREE_MAPPING, root, unique_one, &u, &nodes);
    *blocks = u.blocks;
    return r;
}
