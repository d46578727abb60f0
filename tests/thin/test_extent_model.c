/*
 * The extent map (thin/) of a real pool against an array model: grain -> physical block.
 *
 * Four maps with grains of 1, 16, 16 and 256 blocks hang from a root table (roottable.h) so
 * that pool_check reaches them. Random operations: writes of grain ranges (runs reserved
 * through the map's cursor and taken, possibly in several pieces when the reservation comes
 * back short), compressed grains (one grain, a shorter physical run), remaps of grains onto
 * runs already mapped elsewhere in the same map or the other map with the same grain (one
 * more reference taken, as dedup will), removals of ranges, lookups, walks of ranges, usage,
 * commits and reopens (clean, or abandoned: the map must come back as committed).
 *
 * After every change the changed map is walked whole and compared grain by grain with the
 * model: every grain maps where the model says, extents never overlap, and they are exactly
 * the model's maximal runs of grains that continue each other physically (so neighbours are
 * merged, and a sequential fill is one extent); thin_map_usage agrees, and the reference count
 * of every block the change touched equals the number of grains (over all maps) mapping it.
 * After every commit: pool_check, then every map and every block's count. At the end every
 * map is dropped and the pool's allocated blocks must be back to those of the new pool.
 *
 * Members live under $TMPDIR, or /dev/shm when TMPDIR is unset and that exists (every
 * metadata write is O_DIRECT, which a disk-backed file system makes far slower).
 *
 *   EXTENT_SEED=n  replay a run      EXTENT_OPS=n  operations (default 200000,
 *                  a quarter of that under sanitizers)
 *   EXTENT_TRACE=1 print each operation
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common/common.h"
#include "tests/pool/roottable.h"
#include "tests/testutil.h"
#include "thin/thin.h"

/* Sanitized builds (SANITIZED, tests/testutil.h) default to a quarter of the operations. */
#ifdef SANITIZED
#define DEFAULT_OPS (200000 / 4)
#else
#define DEFAULT_OPS 200000
#endif

#define MEMBER_BLOCKS (1u << 18) /* 1 GiB */
#define PER_MEMBER (MEMBER_BLOCKS - CS_FIRST_DATA_BLOCK - 1u)
#define NMAPS 4u

static const uint32_t map_gb[NMAPS] = {1, 16, 16, 256};
static const uint64_t map_grains[NMAPS] = {8192, 1024, 1024, 64};

struct mgrain {
    uint64_t p;    /* pblk of the grain's first block; 0: unmapped */
    uint32_t plen; /* blocks: the grain's size, or less when compressed */
    bool comp;
};

struct mmap {
    uint32_t gb;
    uint64_t n;
    uint64_t id;
    pblk_t root;
    struct alloc_cursor cur;
    struct mgrain *g;
};

struct world {
    struct scratch s;
    struct pool *pool;
    struct rng rng;
    struct mmap m[NMAPS];
    uint32_t *count; /* per block of member 0: grains mapping it */
    /* as of the last commit */
    struct mgrain *committed_g[NMAPS];
    pblk_t committed_root[NMAPS];
    uint32_t *committed_count;
    uint64_t op;
    /* statistics */
    uint64_t commits, reopens, abandons, writes, remaps, removes, max_extents[NMAPS];
    uint64_t baseline; /* allocated blocks of the new pool */
};

#define FAIL(w, ...)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "op %llu: ", (unsigned long long)(w)->op);                                 \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)

#define OK(w, expr)                                                                                \
    do {                                                                                           \
        int ok_r_ = (expr);                                                                        \
        if (ok_r_ != 0)                                                                            \
            FAIL(w, "%s: %d (%s)", #expr, ok_r_, strerror(-ok_r_));                                \
    } while (0)

static uint64_t bidx(uint64_t p)
{
    return pblk_offset((pblk_t){p}) - CS_FIRST_DATA_BLOCK;
}

/* ---- The model ---------------------------------------------------------------------- */

/* Grain @b of map @m continues grain @a physically (the map merges such neighbours). */
static bool continues(const struct mmap *m, uint64_t a, uint64_t b)
{
    const struct mgrain *x = &m->g[a], *y = &m->g[b];
    return x->p && y->p && !x->comp && !y->comp && y->p == x->p + m->gb;
}

/* The model's extent holding mapped grain @g: [*start, *end). */
static void model_extent(const struct mmap *m, uint64_t g, uint64_t *start, uint64_t *end)
{
    uint64_t s = g, e = g + 1;
    while (s > 0 && continues(m, s - 1, s))
        s--;
    while (e < m->n && continues(m, e - 1, e))
        e++;
    *start = s;
    *end = e;
}

static void count_add(struct world *w, const struct mgrain *gr, int d)
{
    if (!gr->p)
        return;
    for (uint64_t b = bidx(gr->p); b < bidx(gr->p) + gr->plen; b++)
        w->count[b] += (uint32_t)d;
}

/* Grain @g of map @m now maps @ng (NULL: unmapped). */
static void model_set(struct world *w, struct mmap *m, uint64_t g, const struct mgrain *ng)
{
    count_add(w, &m->g[g], -1);
    if (ng)
        m->g[g] = *ng;
    else
        memset(&m->g[g], 0, sizeof(m->g[g]));
    count_add(w, &m->g[g], 1);
}

/* ---- Checks ------------------------------------------------------------------------- */

/* Blocks [b, b + n) (indices) have the model's counts. md lock. */
static void check_counts(struct world *w, uint64_t b, uint64_t n)
{
    for (uint64_t i = b; i < b + n && i < PER_MEMBER; i++) {
        uint32_t c;
        OK(w, pool_ref_count(w->pool, pblk_make(0, CS_FIRST_DATA_BLOCK + i), &c));
        if (c != w->count[i])
            FAIL(w, "block %#llx: count %u, but %u grains map it",
                 (unsigned long long)(CS_FIRST_DATA_BLOCK + i), c, w->count[i]);
    }
}

struct walk_check {
    struct world *w;
    struct mmap *m;
    uint64_t lo, hi; /* the walked range */
    uint64_t next;   /* grains below this were covered by earlier extents */
    uint64_t extents, blocks;
};

static int walk_fn(void *ctx, const struct thin_extent *e)
{
    struct walk_check *c = ctx;
    struct world *w = c->w;
    struct mmap *m = c->m;
    if (e->ngrains == 0 || e->grain < c->next || e->grain + e->ngrains > c->hi || e->grain < c->lo)
        FAIL(w, "map %llu: walk of [%llu, %llu) returned extent %llu+%u after grain %llu",
             (unsigned long long)m->id, (unsigned long long)c->lo, (unsigned long long)c->hi,
             (unsigned long long)e->grain, e->ngrains, (unsigned long long)c->next);
    /* Grains skipped over must be unmapped. */
    for (uint64_t g = c->next; g < e->grain; g++)
        if (m->g[g].p)
            FAIL(w, "map %llu: grain %llu maps %#llx, but the walk skipped it",
                 (unsigned long long)m->id, (unsigned long long)g, (unsigned long long)m->g[g].p);
    /* The extent is the model's extent there, clipped to the range. */
    uint64_t s, end;
    if (!m->g[e->grain].p)
        FAIL(w, "map %llu: the walk maps grain %llu, unmapped in the model",
             (unsigned long long)m->id, (unsigned long long)e->grain);
    model_extent(m, e->grain, &s, &end);
    s = MAX(s, c->lo);
    end = MIN(end, c->hi);
    const struct mgrain *first = &m->g[e->grain];
    bool comp = (e->flags & THIN_EXT_COMPRESSED) != 0;
    uint64_t plen = comp ? first->plen : (uint64_t)e->ngrains * m->gb;
    if (e->grain != s || e->grain + e->ngrains != end || comp != first->comp ||
        e->pstart.v != first->p || e->plen != plen)
        FAIL(w,
             "map %llu: extent %llu+%u -> %#llx+%u%s, the model has %llu+%llu -> "
             "%#llx+%llu%s",
             (unsigned long long)m->id, (unsigned long long)e->grain, e->ngrains,
             (unsigned long long)e->pstart.v, e->plen, comp ? " compressed" : "",
             (unsigned long long)s, (unsigned long long)(end - s), (unsigned long long)first->p,
             (unsigned long long)plen, first->comp ? " compressed" : "");
    c->next = end;
    c->extents++;
    c->blocks += e->plen;
    return 0;
}

/* Walks [lo, hi) of map @m and compares every grain. md lock. */
static void check_walk(struct world *w, struct mmap *m, uint64_t lo, uint64_t hi)
{
    struct walk_check c = {.w = w, .m = m, .lo = lo, .hi = hi, .next = lo};
    OK(w, thin_map_walk(w->pool, m->root, lo, hi - lo, m->gb, walk_fn, &c));
    for (uint64_t g = c.next; g < hi; g++)
        if (m->g[g].p)
            FAIL(w, "map %llu: grain %llu maps %#llx, but the walk ended before it",
                 (unsigned long long)m->id, (unsigned long long)g, (unsigned long long)m->g[g].p);
    if (lo == 0 && hi == m->n) {
        uint64_t blocks, extents;
        OK(w, thin_map_usage(w->pool, m->root, &blocks, &extents));
        if (blocks != c.blocks || extents != c.extents)
            FAIL(w, "map %llu: usage %llu blocks in %llu extents, the model %llu in %llu",
                 (unsigned long long)m->id, (unsigned long long)blocks, (unsigned long long)extents,
                 (unsigned long long)c.blocks, (unsigned long long)c.extents);
        size_t mi = (size_t)(m - w->m);
        w->max_extents[mi] = MAX(w->max_extents[mi], extents);
    }
}

static void check_lookup(struct world *w, struct mmap *m, uint64_t g)
{
    struct thin_extent e;
    int r = thin_map_lookup(w->pool, m->root, g, &e);
    if (!m->g[g].p) {
        if (r != -ENOENT)
            FAIL(w, "map %llu: lookup of unmapped grain %llu: %d", (unsigned long long)m->id,
                 (unsigned long long)g, r);
        return;
    }
    OK(w, r);
    uint64_t s, end;
    model_extent(m, g, &s, &end);
    uint64_t p = e.pstart.v + ((e.flags & THIN_EXT_COMPRESSED) ? 0 : (g - e.grain) * m->gb);
    if (e.grain != s || e.grain + e.ngrains != end || p != m->g[g].p)
        FAIL(w,
             "map %llu: grain %llu: lookup gives extent %llu+%u -> %#llx (grain at %#llx), "
             "the model %llu+%llu, grain at %#llx",
             (unsigned long long)m->id, (unsigned long long)g, (unsigned long long)e.grain,
             e.ngrains, (unsigned long long)e.pstart.v, (unsigned long long)p,
             (unsigned long long)s, (unsigned long long)(end - s), (unsigned long long)m->g[g].p);
}

/* Remembers the runs of grains about to be replaced, to check their counts once the whole
 * change is in the model (a block may be mapped by several grains of one range). */
struct touched {
    uint64_t n;
    struct mgrain g[8192];
};

static void touch(struct touched *t, const struct mgrain *g)
{
    if (g->p)
        t->g[t->n++] = *g;
}

static void check_touched(struct world *w, const struct touched *t)
{
    for (uint64_t i = 0; i < t->n; i++)
        check_counts(w, bidx(t->g[i].p), t->g[i].plen);
}

/* ---- Pool plumbing ------------------------------------------------------------------ */

static void check_pool(struct world *w)
{
    struct pool_check_report rep;
    int r = pool_check(w->pool, &rep);
    if (r != 0)
        FAIL(w, "pool check: %d, %u problems", r, rep.errors);
}

static void store_root(struct world *w, struct mmap *m, pblk_t nr)
{
    if (pblk_eq(nr, m->root))
        return;
    m->root = nr;
    OK(w, rt_put(w->pool, m->id, nr, TREE_MAPPING, true));
}

static void save_committed(struct world *w)
{
    for (unsigned i = 0; i < NMAPS; i++) {
        memcpy(w->committed_g[i], w->m[i].g, w->m[i].n * sizeof(struct mgrain));
        w->committed_root[i] = w->m[i].root;
    }
    memcpy(w->committed_count, w->count, PER_MEMBER * sizeof(uint32_t));
}

/* Every map, the root table, and every block's count. md lock. */
static void check_all(struct world *w)
{
    for (unsigned i = 0; i < NMAPS; i++) {
        pblk_t root = PBLK_NONE;
        uint32_t type = 0;
        OK(w, rt_get(w->pool, w->m[i].id, &root, &type));
        if (!pblk_eq(root, w->m[i].root) || type != TREE_MAPPING)
            FAIL(w, "root table: map %u at %#llx, expected %#llx", i, (unsigned long long)root.v,
                 (unsigned long long)w->m[i].root.v);
        check_walk(w, &w->m[i], 0, w->m[i].n);
    }
    for (uint64_t b = 0; b < PER_MEMBER; b++)
        if (w->count[b])
            check_counts(w, b, 1);
}

static void commit(struct world *w)
{
    OK(w, pool_commit_locked(w->pool));
    pool_md_unlock(w->pool);
    check_pool(w);
    pool_md_lock(w->pool);
    check_all(w);
    save_committed(w);
    w->commits++;
}

static void reopen(struct world *w, bool abandon)
{
    pool_md_unlock(w->pool);
    if (abandon) {
        pool_abandon(w->pool);
        for (unsigned i = 0; i < NMAPS; i++) {
            memcpy(w->m[i].g, w->committed_g[i], w->m[i].n * sizeof(struct mgrain));
            w->m[i].root = w->committed_root[i];
        }
        memcpy(w->count, w->committed_count, PER_MEMBER * sizeof(uint32_t));
        w->abandons++;
    } else {
        OK(w, pool_close(w->pool));
        save_committed(w);
        w->reopens++;
    }
    w->pool = NULL;
    OK(w, pool_open(w->s.paths, w->s.n, 0, &w->pool));
    check_pool(w);
    pool_md_lock(w->pool);
    check_all(w);
}

/* ---- Operations (md lock held) -------------------------------------------------------- */

static void random_range(struct world *w, const struct mmap *m, uint64_t *g, uint64_t *n)
{
    uint64_t max = rng_below(&w->rng, 8) == 0 ? m->n : MIN(m->n, (uint64_t)64);
    *n = 1 + rng_below(&w->rng, rng_below(&w->rng, 2) ? max : MIN(max, (uint64_t)4));
    *g = rng_below(&w->rng, m->n - *n + 1);
}

/* Maps [g, g + n) to newly written runs. */
static void op_write(struct world *w, struct mmap *m, uint64_t g, uint64_t n)
{
    for (uint64_t done = 0; done < n;) {
        pblk_t start;
        uint64_t got;
        int r = pool_reserve(w->pool, &m->cur, (n - done) * m->gb, m->gb, &start, &got);
        if (r == -ENOSPC)
            return; /* a full pool: the model stays as far as it got */
        OK(w, r);
        uint64_t grains = got / m->gb;
        if (got % m->gb)
            pool_unreserve(w->pool, pblk_add(start, grains * m->gb), got % m->gb);
        OK(w, pool_ref_take(w->pool, start, grains * m->gb));
        struct thin_extent e = {.grain = g + done,
                                .ngrains = (uint32_t)grains,
                                .pstart = start,
                                .plen = (uint32_t)(grains * m->gb)};
        pblk_t nr;
        OK(w, thin_map_insert(w->pool, m->root, &e, m->gb, &nr));
        store_root(w, m, nr);
        static struct touched t;
        t.n = 0;
        for (uint64_t i = 0; i < grains; i++) {
            struct mgrain ng = {.p = pblk_add(start, i * m->gb).v, .plen = m->gb};
            touch(&t, &m->g[g + done + i]);
            model_set(w, m, g + done + i, &ng);
        }
        check_touched(w, &t);
        check_counts(w, bidx(start.v), grains * m->gb);
        done += grains;
    }
    w->writes++;
}

static void op_write_compressed(struct world *w, struct mmap *m, uint64_t g)
{
    pblk_t start;
    uint64_t got, plen = 1 + rng_below(&w->rng, m->gb - 1);
    int r = pool_reserve(w->pool, &m->cur, plen, plen, &start, &got);
    if (r == -ENOSPC)
        return;
    OK(w, r);
    OK(w, pool_ref_take(w->pool, start, plen));
    struct thin_extent e = {.grain = g,
                            .ngrains = 1,
                            .flags = THIN_EXT_COMPRESSED,
                            .pstart = start,
                            .plen = (uint32_t)plen};
    pblk_t nr;
    OK(w, thin_map_insert(w->pool, m->root, &e, m->gb, &nr));
    store_root(w, m, nr);
    struct mgrain old = m->g[g], ng = {.p = start.v, .plen = (uint32_t)plen, .comp = true};
    model_set(w, m, g, &ng);
    if (old.p)
        check_counts(w, bidx(old.p), old.plen);
    check_counts(w, bidx(start.v), plen);
}

/* Maps [g, g + n) onto a run some grains of @src map now (the same map or another with the
 * same grain size), taking one more reference on it. */
static void op_remap(struct world *w, struct mmap *m, struct mmap *src, uint64_t g, uint64_t n)
{
    uint64_t s = rng_below(&w->rng, src->n);
    for (uint64_t tries = 0; tries < src->n && !src->g[s].p; tries++)
        s = (s + 1) % src->n;
    if (!src->g[s].p)
        return;
    struct mgrain first = src->g[s];
    struct thin_extent e = {.grain = g, .pstart = {first.p}};
    if (first.comp) {
        e.ngrains = 1;
        e.flags = THIN_EXT_COMPRESSED;
        e.plen = first.plen;
    } else {
        uint64_t k = 1;
        while (k < n && s + k < src->n && continues(src, s + k - 1, s + k))
            k++;
        e.ngrains = (uint32_t)k;
        e.plen = (uint32_t)(k * m->gb);
    }
    if (g + e.ngrains > m->n)
        return;
    OK(w, pool_ref_inc(w->pool, e.pstart, e.plen));
    pblk_t nr;
    OK(w, thin_map_insert(w->pool, m->root, &e, m->gb, &nr));
    store_root(w, m, nr);
    static struct touched t;
    t.n = 0;
    for (uint64_t i = 0; i < e.ngrains; i++) {
        struct mgrain ng = first;
        ng.p += first.comp ? 0 : i * m->gb;
        touch(&t, &m->g[g + i]);
        model_set(w, m, g + i, &ng);
    }
    check_touched(w, &t);
    check_counts(w, bidx(e.pstart.v), e.plen);
    w->remaps++;
}

static void op_remove(struct world *w, struct mmap *m, uint64_t g, uint64_t n)
{
    pblk_t nr;
    OK(w, thin_map_remove(w->pool, m->root, g, n, m->gb, &nr));
    store_root(w, m, nr);
    static struct touched t;
    t.n = 0;
    for (uint64_t i = g; i < g + n; i++) {
        touch(&t, &m->g[i]);
        model_set(w, m, i, NULL);
    }
    check_touched(w, &t);
    w->removes++;
}

static void run(struct world *w, uint64_t ops)
{
    bool trace = env_u64("EXTENT_TRACE", 0) != 0; /* for bisecting a failure */
    pool_md_lock(w->pool);
    for (w->op = 0; w->op < ops; w->op++) {
        struct mmap *m = &w->m[rng_below(&w->rng, NMAPS)];
        uint64_t g, n;
        random_range(w, m, &g, &n);
        unsigned dice = (unsigned)rng_below(&w->rng, 1000);
        bool changed = true;
        if (trace)
            fprintf(stderr, "op %llu: map %u, grains %llu+%llu, dice %u\n",
                    (unsigned long long)w->op, (unsigned)(m - w->m), (unsigned long long)g,
                    (unsigned long long)n, dice);
        if (dice < 330)
            op_write(w, m, g, n);
        else if (dice < 400 && m->gb > 1)
            op_write_compressed(w, m, g);
        else if (dice < 520) {
            /* The maps with 16-block grains share runs with each other. */
            struct mmap *src = m;
            if (m->gb == 16 && rng_below(&w->rng, 2))
                src = m == &w->m[1] ? &w->m[2] : &w->m[1];
            op_remap(w, m, src, g, n);
        } else if (dice < 780)
            op_remove(w, m, g, n);
        else {
            changed = false;
            if (dice < 880)
                check_lookup(w, m, g);
            else if (dice < 990)
                check_walk(w, m, g, g + n);
            else if (dice < 994)
                commit(w);
            else if (dice < 995)
                reopen(w, rng_below(&w->rng, 2));
            else
                check_walk(w, m, 0, m->n);
        }
        if (changed)
            check_walk(w, m, 0, m->n);
    }
    commit(w);
    pool_md_unlock(w->pool);
}

/* ---- Setup and tests ------------------------------------------------------------------ */

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    thin_init();
    rt_register();
    scratch_make(&w->s, 1, (uint64_t)MEMBER_BLOCKS * CS_BLOCK_SIZE);
    struct pool_settings set;
    pool_settings_default(&set);
    set.commit_interval_ms = 3600u * 1000u; /* only the test commits */
    set.dirty_bound_bytes = 1ull << 40;
    OK(w, pool_create("extenttank", w->s.paths, w->s.n, &set, false));
    OK(w, pool_open(w->s.paths, w->s.n, 0, &w->pool));
    struct pool_stats st;
    pool_stat(w->pool, &st);
    w->baseline = st.allocated_blocks;
    w->count = calloc(PER_MEMBER, sizeof(uint32_t));
    w->committed_count = calloc(PER_MEMBER, sizeof(uint32_t));
    pool_md_lock(w->pool);
    OK(w, rt_create(w->pool));
    for (unsigned i = 0; i < NMAPS; i++) {
        struct mmap *m = &w->m[i];
        m->gb = map_gb[i];
        m->n = map_grains[i];
        m->id = i + 1;
        m->g = calloc(m->n, sizeof(struct mgrain));
        w->committed_g[i] = calloc(m->n, sizeof(struct mgrain));
        OK(w, thin_map_create(w->pool, &m->root));
        OK(w, rt_put(w->pool, m->id, m->root, TREE_MAPPING, false));
    }
    commit(w);
    pool_md_unlock(w->pool);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    /* A failed assertion may leave the md lock held: abandon, never commit. */
    if (w->pool)
        pool_abandon(w->pool);
    scratch_remove(&w->s);
    for (unsigned i = 0; i < NMAPS; i++) {
        free(w->m[i].g);
        free(w->committed_g[i]);
    }
    free(w->count);
    free(w->committed_count);
    free(w);
    return 0;
}

/* Drops every map; what stays allocated must be the reference-count tree alone. */
static void drop_everything(struct world *w)
{
    pool_md_lock(w->pool);
    for (unsigned i = 0; i < NMAPS; i++)
        OK(w, rt_remove(w->pool, w->m[i].id));
    OK(w, rt_destroy(w->pool));
    OK(w, pool_commit_locked(w->pool));
    pool_md_unlock(w->pool);
    struct pool_check_report rep;
    OK(w, pool_check(w->pool, &rep));
    struct pool_stats st;
    pool_stat(w->pool, &st);
    if (st.allocated_blocks != rep.nodes || rep.data_blocks != 0)
        FAIL(w,
             "after dropping every map: %llu blocks allocated, the reference-count tree "
             "has %llu nodes, %llu data blocks referenced",
             (unsigned long long)st.allocated_blocks, (unsigned long long)rep.nodes,
             (unsigned long long)rep.data_blocks);
    if (st.allocated_blocks != w->baseline)
        FAIL(w, "after dropping every map: %llu blocks allocated, %llu in the new pool",
             (unsigned long long)st.allocated_blocks, (unsigned long long)w->baseline);
}

static int print_extent(void *ctx, const struct thin_extent *e)
{
    (void)ctx;
    fprintf(stderr, "  extent %llu+%u -> %#llx+%u\n", (unsigned long long)e->grain, e->ngrains,
            (unsigned long long)e->pstart.v, e->plen);
    return 0;
}

/* One contiguous run mapped grain by grain, each grain inserted on its own: the map merges
 * them into one extent, also across a commit. (Separate reservations through one cursor
 * need not be contiguous: tree nodes allocated in between may take the blocks that follow.) */
static void test_sequential_fill(void **state)
{
    struct world *w = *state;
    w->rng.s = 1;
    pool_md_lock(w->pool);
    for (unsigned i = 0; i < NMAPS; i++) {
        struct mmap *m = &w->m[i];
        uint64_t n = MIN(m->n, (uint64_t)1000), got;
        pblk_t start;
        OK(w, pool_reserve(w->pool, &m->cur, n * m->gb, n * m->gb, &start, &got));
        for (uint64_t g = 0; g < n; g++) {
            struct mgrain ng = {.p = pblk_add(start, g * m->gb).v, .plen = m->gb};
            OK(w, pool_ref_take(w->pool, (pblk_t){ng.p}, m->gb));
            struct thin_extent e = {.grain = g, .ngrains = 1, .pstart = {ng.p}, .plen = m->gb};
            pblk_t nr;
            OK(w, thin_map_insert(w->pool, m->root, &e, m->gb, &nr));
            store_root(w, m, nr);
            model_set(w, m, g, &ng);
            if (g == n / 2)
                commit(w);
        }
        check_walk(w, m, 0, m->n);
        uint64_t blocks, extents;
        OK(w, thin_map_usage(w->pool, m->root, &blocks, &extents));
        assert_int_equal(blocks, n * m->gb);
        if (extents != 1) {
            OK(w, thin_map_walk(w->pool, m->root, 0, m->n, m->gb, print_extent, NULL));
            FAIL(w,
                 "map %u (grain %u blocks): a sequential fill of %llu grains is %llu "
                 "extents",
                 i, m->gb, (unsigned long long)n, (unsigned long long)extents);
        }
    }
    /* A hole punched in the middle splits the extent; mapping it back where it was joins
     * it again. */
    struct mmap *m = &w->m[1];
    struct mgrain keep = m->g[500];
    OK(w, pool_ref_inc(w->pool, (pblk_t){keep.p}, m->gb)); /* keeps the blocks in use */
    count_add(w, &keep, 1);
    op_remove(w, m, 500, 1);
    check_walk(w, m, 0, m->n);
    struct thin_extent e = {.grain = 500, .ngrains = 1, .pstart = {keep.p}, .plen = m->gb};
    pblk_t nr;
    OK(w, thin_map_insert(w->pool, m->root, &e, m->gb, &nr));
    store_root(w, m, nr);
    model_set(w, m, 500, &keep);
    count_add(w, &keep, -1); /* the test's reference went to the map */
    uint64_t blocks, extents;
    OK(w, thin_map_usage(w->pool, m->root, &blocks, &extents));
    assert_int_equal(extents, 1);
    commit(w);
    pool_md_unlock(w->pool);
    drop_everything(w);
}

static void test_random(void **state)
{
    struct world *w = *state;
    rng_seed_env(&w->rng, "EXTENT_SEED");
    uint64_t ops = env_u64("EXTENT_OPS", DEFAULT_OPS);
    fprintf(stderr, "EXTENT_OPS=%llu\n", (unsigned long long)ops);
    run(w, ops);
    pool_md_lock(w->pool);
    reopen(w, false);
    pool_md_unlock(w->pool);
    fprintf(stderr,
            "commits %llu, reopens %llu, abandons %llu; writes %llu, remaps %llu, removes "
            "%llu; most extents per map: %llu %llu %llu %llu\n",
            (unsigned long long)w->commits, (unsigned long long)w->reopens,
            (unsigned long long)w->abandons, (unsigned long long)w->writes,
            (unsigned long long)w->remaps, (unsigned long long)w->removes,
            (unsigned long long)w->max_extents[0], (unsigned long long)w->max_extents[1],
            (unsigned long long)w->max_extents[2], (unsigned long long)w->max_extents[3]);
    drop_everything(w);
}

int main(void)
{
    struct stat st;
    if (!getenv("TMPDIR") && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
        setenv("TMPDIR", "/dev/shm", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sequential_fill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
