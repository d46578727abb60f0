/*
 * The physical allocator and reference counts of a real pool against a per-block model.
 *
 * The pool is small (two members of 4 MiB) so that it fills up and ENOSPC is common. For
 * every allocatable block the model keeps its count now, its count at the last commit, and
 * whether it is reserved, or was taken in the open transaction. Random operations:
 * pool_reserve through one of several cursors (various want and min), pool_unreserve and
 * pool_ref_take of parts of reserved runs, pool_ref_inc and pool_ref_dec of runs in use,
 * pool_ref_count and pool_ref_exclusive queries, commits, and reopens (clean, or abandoned:
 * the open transaction must vanish). After each operation:
 *   - the counts of the blocks it touched (and a few others) are the model's;
 *   - pool_ref_exclusive answers as pool.h defines it: every block has one reference now
 *     and had at most one at the last commit;
 *   - a reserved run was free in the model: not in use, not reserved, not freed in the open
 *     transaction (DESIGN.md: freed blocks are reusable only after the commit), not a node;
 *   - ENOSPC comes exactly when the model has no free run of @min blocks, or fewer free
 *     blocks than the pool's reserve plus @min; a run's length is what the model predicts;
 *   - reservations through one cursor continue where its last one ended when the model has
 *     room there (sequential allocations stay sequential);
 *   - pool_stat: free blocks equal the model's; allocated + pending free + free + reserved
 *     equal the total.
 *
 * Tree nodes (the reference-count tree's, and the holder's below) change only at commits,
 * so between commits the model knows them too: after every commit a scan of every block's
 * count records which blocks are nodes, and checks the data counts.
 *
 * pool_check must pass after every commit, so the references the model holds must be held
 * by a tree: just before each commit a "holder" tree (TREE_DEDUP, in POOL_ROOT_DEDUP) is
 * rebuilt from the model, one value per run of equal counts holding that run up to four
 * times. Rebuilding first detaches the old holder's values (raw replacement by values
 * holding nothing), so building it never changes a count.
 *
 * Members live under $TMPDIR, or /dev/shm when TMPDIR is unset and that exists (every
 * metadata write is O_DIRECT, which a disk-backed file system makes far slower).
 *
 *   SPACEMAP_SEED=n  replay a run      SPACEMAP_OPS=n  operations (default 1000000,
 *                  a quarter of that under sanitizers)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common/common.h"
#include "pool/pool.h"
#include "tests/testutil.h"

/* Sanitized builds (SANITIZED, tests/testutil.h) default to a quarter of the operations. */
#ifdef SANITIZED
#define DEFAULT_OPS (1000000 / 4)
#else
#define DEFAULT_OPS 1000000
#endif

#define NMEMBERS 2u
#define MEMBER_BLOCKS 1024u
#define PER_MEMBER (MEMBER_BLOCKS - CS_FIRST_DATA_BLOCK - 1u) /* allocatable blocks */
#define NB (NMEMBERS * PER_MEMBER)
#define NCURSORS 3u
#define HOLD_MAX 4u /* references one holder value holds (at most VALUE_MAX_REFS) */

/* ---- The holder tree ---------------------------------------------------------------- */

struct hold {
    uint64_t start;
    uint32_t len;
    uint16_t nrefs;  /* times the run is held */
    uint16_t active; /* 0: detached, holds nothing */
};

static unsigned hold_refs(const void *value, struct value_ref *out)
{
    struct hold h;
    memcpy(&h, value, sizeof(h));
    if (!h.active)
        return 0;
    for (unsigned i = 0; i < h.nrefs; i++)
        out[i] = (struct value_ref){.start = {h.start}, .nblocks = h.len};
    return h.nrefs;
}

static void register_holder(void)
{
    static const struct btree_type t = {
        .type = TREE_DEDUP, .value_size = sizeof(struct hold), .name = "holder", .refs = hold_refs};
    btree_type_register(&t);
}

/* ---- The model ---------------------------------------------------------------------- */

enum { F_RES = 1, F_FRESH = 2, F_NODE = 4 };

struct mblk {
    uint32_t cur, com;
    uint8_t flags;
};

struct world {
    struct scratch s;
    struct pool *pool;
    struct rng rng;
    struct mblk b[NB];
    struct alloc_cursor cur[NCURSORS];
    uint64_t holder_keys; /* values in the holder: keys 0 .. holder_keys - 1 */
    uint64_t op;
    bool grow;
    uint64_t reserve_blocks;
    /* statistics */
    uint64_t commits, reopens, abandons, enospc, reserves, sequential, exclusive_yes, max_count;
    uint64_t fill_sum, fill_samples;
};

static pblk_t pb(uint32_t i)
{
    return pblk_make(i / PER_MEMBER, CS_FIRST_DATA_BLOCK + i % PER_MEMBER);
}

/* Index of @p, or UINT32_MAX when it is outside the allocatable space. */
static uint32_t idx(pblk_t p)
{
    uint32_t m = pblk_member(p);
    uint64_t off = pblk_offset(p);
    if (m >= NMEMBERS || off < CS_FIRST_DATA_BLOCK || off >= CS_FIRST_DATA_BLOCK + PER_MEMBER)
        return UINT32_MAX;
    return m * PER_MEMBER + (uint32_t)(off - CS_FIRST_DATA_BLOCK);
}

static bool same_member(uint32_t a, uint32_t b)
{
    return a / PER_MEMBER == b / PER_MEMBER;
}

/* Allocatable now: unreferenced, not reserved, not freed in the open transaction. */
static bool avail(const struct mblk *b)
{
    return b->cur == 0 && b->com == 0 && !(b->flags & (F_RES | F_FRESH));
}

static bool is_data(const struct mblk *b)
{
    return b->cur > 0 && !(b->flags & F_NODE);
}

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

/* Blocks [i, i + n) agree with the model. md lock. */
static void check_counts(struct world *w, uint32_t i, uint32_t n)
{
    for (uint32_t j = i; j < i + n && j < NB; j++) {
        uint32_t c;
        OK(w, pool_ref_count(w->pool, pb(j), &c));
        if (c != w->b[j].cur)
            FAIL(w, "block %#llx: count %u, the model says %u (committed %u, flags %#x)",
                 (unsigned long long)pb(j).v, c, w->b[j].cur, w->b[j].com, w->b[j].flags);
    }
}

/* The pool's space figures against the model. Takes the md lock (pool_stat). */
static void check_stat(struct world *w)
{
    uint64_t free = 0, reserved = 0, used = 0;
    for (uint32_t i = 0; i < NB; i++) {
        const struct mblk *b = &w->b[i];
        free += avail(b);
        reserved += (b->flags & F_RES) != 0;
        used += b->cur > 0 || b->com > 0 || (b->flags & F_FRESH);
    }
    struct pool_stats st;
    pool_stat(w->pool, &st);
    if (st.total_blocks != NB)
        FAIL(w, "total %llu blocks, expected %u", (unsigned long long)st.total_blocks, NB);
    if (st.free_blocks != free)
        FAIL(w, "%llu blocks free, the model says %llu", (unsigned long long)st.free_blocks,
             (unsigned long long)free);
    if (st.allocated_blocks + st.pending_free_blocks != used)
        FAIL(w, "allocated %llu + pending free %llu, the model says %llu in use or freed",
             (unsigned long long)st.allocated_blocks, (unsigned long long)st.pending_free_blocks,
             (unsigned long long)used);
    if (st.allocated_blocks + st.pending_free_blocks + st.free_blocks + reserved != st.total_blocks)
        FAIL(w, "allocated %llu + pending %llu + free %llu + reserved %llu != total %llu",
             (unsigned long long)st.allocated_blocks, (unsigned long long)st.pending_free_blocks,
             (unsigned long long)st.free_blocks, (unsigned long long)reserved,
             (unsigned long long)st.total_blocks);
    w->reserve_blocks = st.reserve_blocks;
}

/* Records every block's count after a commit or an open: data counts must match the model,
 * any other referenced block is a node, and the committed counts become the current ones.
 * md lock. */
static void scan(struct world *w)
{
    for (uint32_t i = 0; i < NB; i++) {
        struct mblk *b = &w->b[i];
        uint32_t c;
        OK(w, pool_ref_count(w->pool, pb(i), &c));
        if (is_data(b)) {
            if (c != b->cur)
                FAIL(w, "after commit: block %#llx has count %u, the model says %u",
                     (unsigned long long)pb(i).v, c, b->cur);
        } else if (c > 0) {
            if (b->flags & F_RES)
                FAIL(w, "after commit: reserved block %#llx has count %u",
                     (unsigned long long)pb(i).v, c);
            if (!(b->flags & F_NODE) && (b->com > 0 || (b->flags & F_FRESH)))
                FAIL(w, "block %#llx, freed in the transaction, was reused by its commit",
                     (unsigned long long)pb(i).v);
            b->flags |= F_NODE;
            b->cur = c;
        } else {
            b->flags &= (uint8_t)~F_NODE;
            b->cur = 0;
        }
        b->com = b->cur;
        b->flags &= (uint8_t)~F_FRESH;
    }
}

/* ---- Commits ------------------------------------------------------------------------ */

/* Rebuilds the holder tree from the model (see the top of the file). md lock. */
static void sync_holder(struct world *w)
{
    pblk_t root = pool_root_get(w->pool, POOL_ROOT_DEDUP), nr;
    struct hold none = {0};
    for (uint64_t k = 0; k < w->holder_keys; k++) {
        OK(w, btree_insert_raw(w->pool, TREE_DEDUP, root, k, &none, &nr));
        root = nr;
    }
    OK(w, btree_drop(w->pool, TREE_DEDUP, root));
    OK(w, btree_create(w->pool, TREE_DEDUP, &root));
    w->holder_keys = 0;
    for (uint32_t i = 0; i < NB;) {
        if (!is_data(&w->b[i])) {
            i++;
            continue;
        }
        uint32_t e = i + 1;
        while (e < NB && same_member(i, e) && is_data(&w->b[e]) && w->b[e].cur == w->b[i].cur)
            e++;
        for (uint32_t left = w->b[i].cur; left > 0;) {
            struct hold h = {.start = pb(i).v,
                             .len = e - i,
                             .nrefs = (uint16_t)MIN(left, HOLD_MAX),
                             .active = 1};
            OK(w, btree_insert(w->pool, TREE_DEDUP, root, w->holder_keys++, &h, &nr));
            root = nr;
            left -= h.nrefs;
        }
        i = e;
    }
    pool_root_set(w->pool, POOL_ROOT_DEDUP, root);
}

static void check_pool(struct world *w)
{
    struct pool_check_report rep;
    int r = pool_check(w->pool, &rep);
    if (r != 0)
        FAIL(w, "pool check: %d, %u problems", r, rep.errors);
}

/* md lock held on entry and exit. */
static void commit(struct world *w)
{
    sync_holder(w);
    OK(w, pool_commit_locked(w->pool));
    scan(w);
    pool_md_unlock(w->pool);
    check_pool(w);
    check_stat(w);
    pool_md_lock(w->pool);
    w->commits++;
}

static void reopen(struct world *w, bool abandon)
{
    if (abandon) {
        pool_md_unlock(w->pool);
        pool_abandon(w->pool);
        for (uint32_t i = 0; i < NB; i++) {
            w->b[i].cur = w->b[i].com;
            w->b[i].flags &= F_NODE;
        }
        w->abandons++;
    } else {
        sync_holder(w);
        pool_md_unlock(w->pool);
        OK(w, pool_close(w->pool));
        for (uint32_t i = 0; i < NB; i++)
            w->b[i].flags &= (uint8_t)~F_RES; /* reservations live in memory only */
        w->reopens++;
    }
    /* The holder's keys: as committed. */
    OK(w, pool_open(w->s.paths, w->s.n, 0, &w->pool));
    pool_md_lock(w->pool);
    uint64_t keys;
    OK(w, btree_count(w->pool, TREE_DEDUP, pool_root_get(w->pool, POOL_ROOT_DEDUP), &keys));
    w->holder_keys = keys;
    scan(w);
    pool_md_unlock(w->pool);
    check_pool(w);
    check_stat(w);
    pool_md_lock(w->pool);
}

/* ---- Operations (md lock held) -------------------------------------------------------- */

/* A run of up to @max blocks within one member, every block satisfying @pred; false when
 * none was found. */
static bool pick_run(struct world *w, bool (*pred)(const struct mblk *), uint32_t max,
                     uint32_t *start, uint32_t *n)
{
    for (int tries = 0; tries < 64; tries++) {
        uint32_t i = (uint32_t)rng_below(&w->rng, NB);
        if (!pred(&w->b[i]))
            continue;
        /* Sometimes from the start of the run, to cover whole runs too. */
        if (rng_below(&w->rng, 2))
            while (i > 0 && same_member(i - 1, i) && pred(&w->b[i - 1]))
                i--;
        uint32_t e = i + 1;
        while (e < NB && e - i < max && same_member(i, e) && pred(&w->b[e]))
            e++;
        *start = i;
        *n = e - i;
        return true;
    }
    return false;
}

static bool is_reserved(const struct mblk *b)
{
    return b->flags & F_RES;
}

/* Free run length from @i in the model. */
static uint32_t avail_run(const struct world *w, uint32_t i)
{
    uint32_t e = i;
    while (e < NB && same_member(i, e) && avail(&w->b[e]))
        e++;
    return e - i;
}

static void op_reserve(struct world *w)
{
    unsigned k = (unsigned)rng_below(&w->rng, NCURSORS);
    struct alloc_cursor *cur = &w->cur[k], before = *cur;
    uint64_t want, min;
    unsigned dice = (unsigned)rng_below(&w->rng, 100);
    want = 1 + rng_below(&w->rng, dice < 50 ? 8 : dice < 85 ? 64 : 600);
    dice = (unsigned)rng_below(&w->rng, 4);
    min = dice < 2 ? 1 : dice == 2 ? want : 1 + rng_below(&w->rng, want);

    uint64_t free = 0, longest = 0;
    for (uint32_t i = 0; i < NB;) {
        uint32_t r = avail_run(w, i);
        free += r;
        longest = MAX(longest, (uint64_t)r);
        i += r ? r : 1;
    }
    bool possible = free >= w->reserve_blocks + min && longest >= min;

    pblk_t start;
    uint64_t got;
    int r = pool_reserve(w->pool, cur, want, min, &start, &got);
    w->reserves++;
    if (r == -ENOSPC) {
        if (possible)
            FAIL(w,
                 "reserve(want %llu, min %llu): ENOSPC, but the model has %llu free blocks "
                 "(reserve %llu) and a free run of %llu",
                 (unsigned long long)want, (unsigned long long)min, (unsigned long long)free,
                 (unsigned long long)w->reserve_blocks, (unsigned long long)longest);
        w->enospc++;
        return;
    }
    OK(w, r);
    if (!possible)
        FAIL(w,
             "reserve(want %llu, min %llu) succeeded, but the model has %llu free blocks "
             "(reserve %llu) and no free run that long",
             (unsigned long long)want, (unsigned long long)min, (unsigned long long)free,
             (unsigned long long)w->reserve_blocks);
    uint32_t i = idx(start);
    if (i == UINT32_MAX || got < min || got > want || i + got > NB)
        FAIL(w, "reserve(want %llu, min %llu) gave %#llx+%llu", (unsigned long long)want,
             (unsigned long long)min, (unsigned long long)start.v, (unsigned long long)got);
    uint32_t run = avail_run(w, i);
    if (run < got) {
        const struct mblk *b = &w->b[i + run];
        FAIL(w,
             "reserve gave %#llx+%llu, but block %#llx is not free (count %u, committed "
             "%u, flags %#x)",
             (unsigned long long)start.v, (unsigned long long)got,
             (unsigned long long)pb(i + run).v, b->cur, b->com, b->flags);
    }
    /* The run is as long as the free space there allows, less what the request, the pool's
     * reserve and (with several members) the cursor's stripe cut off. */
    uint64_t limit = MIN(MIN(want, free - w->reserve_blocks), (uint64_t)run);
    if (got > limit)
        FAIL(w, "reserve gave %llu blocks, more than %llu", (unsigned long long)got,
             (unsigned long long)limit);
    if (before.stripe_left > 0 && got != MIN(limit, MAX(before.stripe_left, min)))
        FAIL(w, "reserve(want %llu, min %llu) gave %llu blocks, expected %llu",
             (unsigned long long)want, (unsigned long long)min, (unsigned long long)got,
             (unsigned long long)MIN(limit, MAX(before.stripe_left, min)));
    /* Sequential: the cursor continues its last run when there is room. */
    if (!pblk_is_none(before.next) && before.stripe_left > 0) {
        uint32_t h = idx(before.next);
        if (h != UINT32_MAX && avail_run(w, h) >= min) {
            if (i != h)
                FAIL(w,
                     "cursor %u: reserve(want %llu, min %llu) gave %#llx, but %#llx "
                     "continues its last run and has room",
                     k, (unsigned long long)want, (unsigned long long)min,
                     (unsigned long long)start.v, (unsigned long long)before.next.v);
            w->sequential++;
        }
    }
    for (uint32_t j = i; j < i + got; j++)
        w->b[j].flags |= F_RES;
    check_counts(w, i, (uint32_t)got);
}

static void op_unreserve(struct world *w)
{
    uint32_t i, n;
    if (!pick_run(w, is_reserved, 1 + (uint32_t)rng_below(&w->rng, 64), &i, &n))
        return;
    pool_unreserve(w->pool, pb(i), n);
    for (uint32_t j = i; j < i + n; j++)
        w->b[j].flags &= (uint8_t)~F_RES;
    check_counts(w, i, n);
}

static void op_take(struct world *w)
{
    uint32_t i, n;
    if (!pick_run(w, is_reserved, 1 + (uint32_t)rng_below(&w->rng, 64), &i, &n))
        return;
    OK(w, pool_ref_take(w->pool, pb(i), n));
    for (uint32_t j = i; j < i + n; j++) {
        w->b[j].flags = (uint8_t)((w->b[j].flags & ~F_RES) | F_FRESH);
        w->b[j].cur = 1;
    }
    check_counts(w, i, n);
}

static void op_inc_dec(struct world *w, bool inc)
{
    uint32_t i, n;
    if (!pick_run(w, is_data, 1 + (uint32_t)rng_below(&w->rng, 32), &i, &n))
        return;
    if (inc)
        OK(w, pool_ref_inc(w->pool, pb(i), n));
    else
        OK(w, pool_ref_dec(w->pool, pb(i), n));
    for (uint32_t j = i; j < i + n; j++) {
        w->b[j].cur = inc ? w->b[j].cur + 1 : w->b[j].cur - 1;
        w->max_count = MAX(w->max_count, (uint64_t)w->b[j].cur);
    }
    check_counts(w, i > 0 ? i - 1 : 0, n + 2);
}

static void op_exclusive(struct world *w)
{
    uint32_t i, n = 1 + (uint32_t)rng_below(&w->rng, 16);
    if (rng_below(&w->rng, 4) == 0 || !pick_run(w, is_data, n, &i, &n))
        i = (uint32_t)rng_below(&w->rng, NB);
    while (i + n > NB || !same_member(i, i + n - 1))
        n--;
    bool expect = true;
    for (uint32_t j = i; j < i + n; j++)
        expect = expect && w->b[j].cur == 1 && w->b[j].com <= 1;
    int r = pool_ref_exclusive(w->pool, pb(i), n);
    if (r < 0)
        OK(w, r);
    if (r != expect) {
        fprintf(stderr, "blocks (count now / committed):");
        for (uint32_t j = i; j < i + n; j++)
            fprintf(stderr, " %u/%u", w->b[j].cur, w->b[j].com);
        fprintf(stderr, "\n");
        FAIL(w, "pool_ref_exclusive(%#llx, %u) = %d, the definition says %d",
             (unsigned long long)pb(i).v, n, r, expect);
    }
    w->exclusive_yes += r;
}

static void op_count(struct world *w)
{
    for (int k = 0; k < 8; k++)
        check_counts(w, (uint32_t)rng_below(&w->rng, NB), 1);
}

static void run(struct world *w, uint64_t ops)
{
    pool_md_lock(w->pool);
    for (w->op = 0; w->op < ops; w->op++) {
        /* The fill level swings between nearly empty and full, and back. */
        if (rng_below(&w->rng, 3000) == 0)
            w->grow = !w->grow;
        if ((w->op & 63) == 0) {
            uint32_t used = 0;
            for (uint32_t i = 0; i < NB; i++)
                used += !avail(&w->b[i]);
            w->fill_sum += used;
            w->fill_samples++;
            if (w->grow && used > NB - w->reserve_blocks / 2)
                w->grow = false;
            else if (!w->grow && used < NB / 10)
                w->grow = true;
        }
        int dice = (int)rng_below(&w->rng, 1000);
        int g = w->grow ? 60 : -60; /* a growing pool reserves and takes more */
        if (dice < 200 + g)
            op_reserve(w);
        else if (dice < 300 + g)
            op_unreserve(w);
        else if (dice < 450 + 2 * g)
            op_take(w);
        else if (dice < 580 + 2 * g)
            op_inc_dec(w, true);
        else if (dice < 800)
            op_inc_dec(w, false);
        else if (dice < 900)
            op_exclusive(w);
        else if (dice < 995)
            op_count(w);
        else if (dice < 999)
            commit(w);
        else if (rng_below(&w->rng, 8) == 0)
            reopen(w, rng_below(&w->rng, 2));
        else
            commit(w);
        pool_md_unlock(w->pool);
        check_stat(w);
        pool_md_lock(w->pool);
    }
    commit(w);
    pool_md_unlock(w->pool);
}

/* ---- Tests ---------------------------------------------------------------------------- */

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    register_holder();
    scratch_make(&w->s, NMEMBERS, (uint64_t)MEMBER_BLOCKS * CS_BLOCK_SIZE);
    struct pool_settings set;
    pool_settings_default(&set);
    set.commit_interval_ms = 3600u * 1000u; /* only the test commits */
    set.dirty_bound_bytes = 1ull << 40;
    OK(w, pool_create("spacetank", w->s.paths, w->s.n, &set, false));
    OK(w, pool_open(w->s.paths, w->s.n, 0, &w->pool));
    pool_md_lock(w->pool);
    pblk_t root;
    OK(w, btree_create(w->pool, TREE_DEDUP, &root));
    pool_root_set(w->pool, POOL_ROOT_DEDUP, root);
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
    free(w);
    return 0;
}

/* A run taken in one transaction and the run after it taken in the next: each block has one
 * reference now and had at most one at the last commit, so the whole run is exclusive. */
static void test_exclusive_across_commits(void **state)
{
    struct world *w = *state;
    struct alloc_cursor cur = {0};
    pblk_t a, b;
    uint64_t got;
    pool_md_lock(w->pool);
    OK(w, pool_reserve(w->pool, &cur, 4, 4, &a, &got));
    OK(w, pool_ref_take(w->pool, a, 4));
    for (uint32_t j = idx(a); j < idx(a) + 4; j++) {
        w->b[j].cur = 1;
        w->b[j].flags |= F_FRESH;
    }
    commit(w);
    OK(w, pool_reserve(w->pool, &cur, 4, 4, &b, &got));
    assert_int_equal(b.v, a.v + 4); /* sequential */
    OK(w, pool_ref_take(w->pool, b, 4));
    assert_int_equal(pool_ref_exclusive(w->pool, a, 4), 1);
    assert_int_equal(pool_ref_exclusive(w->pool, b, 4), 1);
    int r = pool_ref_exclusive(w->pool, a, 8);
    pool_md_unlock(w->pool);
    if (r != 1)
        fail_msg("pool_ref_exclusive over a run committed once and a run taken now: %d, "
                 "expected 1",
                 r);
}

static void test_random(void **state)
{
    struct world *w = *state;
    rng_seed_env(&w->rng, "SPACEMAP_SEED");
    uint64_t ops = env_u64("SPACEMAP_OPS", DEFAULT_OPS);
    fprintf(stderr, "SPACEMAP_OPS=%llu\n", (unsigned long long)ops);
    run(w, ops);
    fprintf(stderr,
            "commits %llu, reopens %llu, abandons %llu; reservations %llu, ENOSPC %llu, "
            "sequential %llu; exclusive runs %llu; highest count %llu; mean use %llu of %u "
            "blocks\n",
            (unsigned long long)w->commits, (unsigned long long)w->reopens,
            (unsigned long long)w->abandons, (unsigned long long)w->reserves,
            (unsigned long long)w->enospc, (unsigned long long)w->sequential,
            (unsigned long long)w->exclusive_yes, (unsigned long long)w->max_count,
            (unsigned long long)(w->fill_sum / MAX(w->fill_samples, (uint64_t)1)), NB);
}

int main(void)
{
    struct stat st;
    if (!getenv("TMPDIR") && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
        setenv("TMPDIR", "/dev/shm", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exclusive_across_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
