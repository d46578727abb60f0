/*
 * snap_diff: the grains that map differently in two maps (see snapshots.h).
 *
 * First btree_diff lists the extents that differ as entries (key present on one side, or
 * with another value). The union of their grain ranges covers every grain that can differ,
 * since a grain mapped the same way on both sides is mapped by the same entry on both. Each
 * such range is then compared piece by piece: a piece is unchanged when both sides leave it
 * unmapped or map it to the same physical blocks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "snapshots/snapshots.h"
#include "thin/thin.h"

struct range {
    uint64_t lo, hi;
};

struct ranges {
    struct range *r;
    size_t n, cap;
};

static int ranges_add(struct ranges *rs, uint64_t lo, uint64_t hi)
{
    if (rs->n > 0 && lo <= rs->r[rs->n - 1].hi) { /* keys come in order: merge */
        rs->r[rs->n - 1].hi = MAX(rs->r[rs->n - 1].hi, hi);
        return 0;
    }
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        struct range *p = realloc(rs->r, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        rs->r = p;
        rs->cap = cap;
    }
    rs->r[rs->n++] = (struct range){lo, hi};
    return 0;
}

static int on_entry(void *ctx, uint64_t key, const void *va, const void *vb)
{
    const struct disk_extent *a = va, *b = vb;
    uint64_t n = MAX(a ? a->ngrains : 0u, b ? b->ngrains : 0u);
    return ranges_add(ctx, key, key + n);
}

struct exts {
    struct thin_extent *e;
    size_t n, cap;
};

static int collect(void *ctx, const struct thin_extent *e)
{
    struct exts *x = ctx;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        struct thin_extent *p = realloc(x->e, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        x->e = p;
        x->cap = cap;
    }
    x->e[x->n++] = *e;
    return 0;
}

/* How one side maps grain @g: *mapped, and the physical block there. Advances *i past
 * extents that end at or before @g; *end is where this answer stops holding. */
static void state_at(const struct exts *x, size_t *i, uint64_t g, uint32_t gb, bool *mapped,
                     uint64_t *phys, uint32_t *flags, uint64_t *end)
{
    while (*i < x->n && x->e[*i].grain + x->e[*i].ngrains <= g)
        (*i)++;
    if (*i < x->n && x->e[*i].grain <= g) {
        const struct thin_extent *e = &x->e[*i];
        *mapped = true;
        *flags = e->flags;
        *phys = e->flags & THIN_EXT_COMPRESSED ? e->pstart.v
                                               : e->pstart.v + (g - e->grain) * gb;
        *end = e->grain + e->ngrains;
    } else {
        *mapped = false;
        *phys = 0;
        *flags = 0;
        *end = *i < x->n ? x->e[*i].grain : UINT64_MAX;
    }
}

struct emitter {
    snap_diff_fn fn;
    void *ctx;
    uint64_t lo, hi; /* pending changed run, merged with what touches it */
    bool pending;
};

static int emit(struct emitter *em, uint64_t lo, uint64_t hi)
{
    if (em->pending && lo == em->hi) {
        em->hi = hi;
        return 0;
    }
    int r = em->pending ? em->fn(em->ctx, em->lo, em->hi - em->lo) : 0;
    em->lo = lo;
    em->hi = hi;
    em->pending = true;
    return r;
}

static int compare_range(struct pool *pool, pblk_t a, pblk_t b, uint32_t gb, struct range rg,
                         struct emitter *em)
{
    struct exts xa = {0}, xb = {0};
    int r = thin_map_walk(pool, a, rg.lo, rg.hi - rg.lo, gb, collect, &xa);
    if (r == 0)
        r = thin_map_walk(pool, b, rg.lo, rg.hi - rg.lo, gb, collect, &xb);
    size_t ia = 0, ib = 0;
    for (uint64_t g = rg.lo; r == 0 && g < rg.hi;) {
        bool ma, mb;
        uint64_t pa, pb, ea, eb;
        uint32_t fa, fb;
        state_at(&xa, &ia, g, gb, &ma, &pa, &fa, &ea);
        state_at(&xb, &ib, g, gb, &mb, &pb, &fb, &eb);
        uint64_t next = MIN(MIN(ea, eb), rg.hi);
        /* Within one extent on each side both advance one grain per grain: equal at g means
         * equal up to next. */
        bool same = ma == mb && (!ma || (pa == pb && fa == fb));
        if (!same)
            r = emit(em, g, next);
        g = next;
    }
    free(xa.e);
    free(xb.e);
    return r;
}

int snap_diff(struct pool *pool, pblk_t a, pblk_t b, uint32_t grain_blocks, snap_diff_fn fn,
              void *ctx)
{
    struct ranges rs = {0};
    int r = btree_diff(pool, TREE_MAPPING, a, b, on_entry, &rs);
    struct emitter em = {.fn = fn, .ctx = ctx};
    for (size_t i = 0; i < rs.n && r == 0; i++)
        r = compare_range(pool, a, b, grain_blocks, rs.r[i], &em);
    if (r == 0 && em.pending)
        r = fn(ctx, em.lo, em.hi - em.lo);
    free(rs.r);
    return r < 0 ? r : 0;
}
