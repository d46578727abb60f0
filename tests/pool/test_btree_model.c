/*
 * The copy-on-write B+tree of a real pool (sparse member files, real transactions, cache and
 * reference counts) against an in-memory ordered map per tree.
 *
 * Three test tree types (ids 5 to 7, free for tests) give three node shapes: 16-byte values
 * holding a data run (126 per leaf), 512-byte values holding a data run (7 per leaf, so a
 * few thousand keys make three levels) and 8-byte values holding nothing (253 per leaf).
 * Data runs are reserved and taken from the pool before a value holding them is inserted;
 * some values share a part of another value's run (one more reference taken).
 *
 * Random operations: insert, replace, remove (present and absent keys), bulk insert and
 * remove of key ranges, lookup, lookup_le / lookup_ge (exact keys, neighbours, extremes),
 * partial iterations, snapshots (btree_share: a second root, modified independently with its
 * own model from then on), drops of trees, commits and reopens (clean, or abandoned: the pool
 * must come back as of the last commit). Every tree hangs from a root table (roottable.h) so
 * that pool_check reaches it. After every commit: pool_check (reference counts recomputed
 * from the trees), then every tree compared with its model. At the end every tree is dropped
 * and the blocks still allocated must be the reference-count tree's nodes alone, as many as
 * in the new pool.
 *
 * Members live under $TMPDIR, or /dev/shm when TMPDIR is unset and that exists (every
 * metadata write is O_DIRECT, which a disk-backed file system makes far slower).
 *
 *   BTREE_MODEL_SEED=n  replay a run      BTREE_MODEL_OPS=n  operations (default 1000000,
 *                  a quarter of that under sanitizers)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common/common.h"
#include "pool/internal.h"
#include "tests/pool/roottable.h"
#include "tests/testutil.h"

/* Sanitized builds (SANITIZED, tests/testutil.h) default to a quarter of the operations. */
#ifdef SANITIZED
#define DEFAULT_OPS (1000000 / 4)
#else
#define DEFAULT_OPS 1000000
#endif

#define MEMBER_BYTES (1ull << 30)
#define NSLOTS 4096u /* keys a tree can hold: slot s has key keys[s], increasing with s */
#define MAXTREES 10u
#define NTYPES 3u

#define TYPE_SMALL ((enum tree_type)5)
#define TYPE_WIDE ((enum tree_type)6)
#define TYPE_TINY ((enum tree_type)7)

static const enum tree_type types[NTYPES] = {TYPE_SMALL, TYPE_WIDE, TYPE_TINY};

/* ---- Values ----------------------------------------------------------------------------- */

/* The head of a value of the small and wide types: the data run it holds (start 0: none)
 * and a tag; the rest of a wide value is bytes derived from the tag, so a value moved to the
 * wrong place or cut shows. A tiny value is its tag alone. */
struct tv {
    uint64_t start;
    uint32_t nblocks;
    uint32_t tag;
};

static uint32_t value_size(enum tree_type t)
{
    return t == TYPE_SMALL ? 16u : t == TYPE_WIDE ? 512u : 8u;
}

static void value_make(enum tree_type t, const struct tv *m, uint8_t *out)
{
    uint32_t vs = value_size(t);
    if (t == TYPE_TINY) {
        uint64_t x = m->tag | 0x71e5ull << 40;
        memcpy(out, &x, 8);
        return;
    }
    memcpy(out, m, sizeof(*m));
    for (uint32_t i = sizeof(*m); i < vs; i++)
        out[i] = (uint8_t)(m->tag * 13u + i);
}

static unsigned tv_refs(const void *value, struct value_ref *out)
{
    struct tv v;
    memcpy(&v, value, sizeof(v));
    if (v.start == 0)
        return 0;
    out[0] = (struct value_ref){.start = {v.start}, .nblocks = v.nblocks};
    return 1;
}

static int wide_check(uint64_t key, const void *value, char *why, size_t len)
{
    uint8_t expect[512];
    struct tv v;
    (void)key;
    memcpy(&v, value, sizeof(v));
    value_make(TYPE_WIDE, &v, expect);
    if (memcmp(expect, value, 512) == 0)
        return 0;
    snprintf(why, len, "value of tag %u damaged", v.tag);
    return -EUCLEAN;
}

static void register_types(void)
{
    static const struct btree_type small = {
        .type = TYPE_SMALL, .value_size = 16, .name = "model-small", .refs = tv_refs};
    static const struct btree_type wide = {.type = TYPE_WIDE,
                                           .value_size = 512,
                                           .name = "model-wide",
                                           .refs = tv_refs,
                                           .check = wide_check};
    static const struct btree_type tiny = {
        .type = TYPE_TINY, .value_size = 8, .name = "model-tiny"};
    btree_type_register(&small);
    btree_type_register(&wide);
    btree_type_register(&tiny);
    rt_register();
}

/* ---- The model ---------------------------------------------------------------------- */

struct mtree {
    bool live;
    enum tree_type type;
    uint64_t id; /* key in the root table */
    pblk_t root;
    bool grow;  /* mood: inserts outweigh removes, or the reverse */
    uint32_t n; /* keys present */
    uint64_t bits[NSLOTS / 64];
    struct tv v[NSLOTS];
};

struct world {
    struct scratch s;
    struct pool *pool;
    struct rng rng;
    uint64_t keys[NSLOTS];
    struct mtree t[MAXTREES];
    struct mtree committed[MAXTREES]; /* as of the last commit */
    uint64_t next_id, committed_next_id;
    uint32_t next_tag;
    struct alloc_cursor cur;
    uint64_t op;
    /* statistics */
    uint64_t commits, reopens, abandons, snapshots, drops, max_level[NTYPES + 1];
    uint64_t baseline; /* allocated blocks of the new pool */
};

static bool has(const struct mtree *m, uint32_t s)
{
    return m->bits[s / 64] >> (s % 64) & 1;
}

static void set_slot(struct mtree *m, uint32_t s, const struct tv *v)
{
    if (!has(m, s))
        m->n++;
    m->bits[s / 64] |= 1ull << (s % 64);
    m->v[s] = *v;
}

static void clear_slot(struct mtree *m, uint32_t s)
{
    if (has(m, s))
        m->n--;
    m->bits[s / 64] &= ~(1ull << (s % 64));
}

/* First present slot >= s, or NSLOTS. */
static uint32_t next_present(const struct mtree *m, uint32_t s)
{
    while (s < NSLOTS) {
        uint64_t w = m->bits[s / 64] >> (s % 64);
        if (w)
            return s + (uint32_t)__builtin_ctzll(w);
        s = ROUND_DOWN(s, 64u) + 64;
    }
    return NSLOTS;
}

/* Last present slot <= s (s < NSLOTS), or UINT32_MAX. */
static uint32_t prev_present(const struct mtree *m, uint32_t s)
{
    for (;;) {
        uint64_t w = m->bits[s / 64] << (63 - s % 64);
        if (w)
            return s - (uint32_t)__builtin_clzll(w);
        if (s < 64)
            return UINT32_MAX;
        s = ROUND_DOWN(s, 64u) - 1;
    }
}

/* The slot with the greatest key <= q (UINT32_MAX when q < keys[0], never since keys[0] = 0). */
static uint32_t slot_le(const struct world *w, uint64_t q)
{
    uint32_t lo = 0, hi = NSLOTS;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (w->keys[mid] <= q)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

static void fail_at(struct world *w, const char *what, int r)
{
    fail_msg("op %llu: %s: %d (%s)", (unsigned long long)w->op, what, r, strerror(r < 0 ? -r : r));
}

#define OK(w, expr)                                                                                \
    do {                                                                                           \
        int ok_r_ = (expr);                                                                        \
        if (ok_r_ != 0)                                                                            \
            fail_at((w), #expr, ok_r_);                                                            \
    } while (0)

static void model_expect(struct world *w, const struct mtree *m, uint32_t s, const void *got)
{
    uint8_t want[512];
    value_make(m->type, &m->v[s], want);
    if (memcmp(want, got, value_size(m->type)) != 0)
        fail_msg("op %llu: tree %llu: key %#llx: value differs from the model (tag %u)",
                 (unsigned long long)w->op, (unsigned long long)m->id,
                 (unsigned long long)w->keys[s], m->v[s].tag);
}

/* ---- Pool and tree plumbing ---------------------------------------------------------- */

static void open_pool(struct world *w)
{
    OK(w, pool_open(w->s.paths, w->s.n, 0, &w->pool));
}

/* Stores tree @m's root in the root table after a change moved it. md lock. */
static void store_root(struct world *w, struct mtree *m, pblk_t nr)
{
    if (pblk_eq(nr, m->root))
        return;
    m->root = nr;
    OK(w, rt_put(w->pool, m->id, nr, m->type, true));
}

static uint32_t level_of(struct world *w, const struct mtree *m)
{
    struct block *b;
    OK(w, tm_read(w->pool, m->root, m->type, &b));
    uint32_t level = node_header(block_data(b))->level;
    tm_unlock(w->pool, b);
    return level;
}

struct cmp_ctx {
    struct world *w;
    const struct mtree *m;
    uint32_t s;     /* next slot expected */
    uint64_t limit; /* stop after this many */
    uint64_t seen;
};

static int cmp_fn(void *ctx, uint64_t key, const void *value)
{
    struct cmp_ctx *c = ctx;
    if (c->s >= NSLOTS)
        fail_msg("op %llu: tree %llu: iteration returned key %#llx past the model's last",
                 (unsigned long long)c->w->op, (unsigned long long)c->m->id,
                 (unsigned long long)key);
    if (key != c->w->keys[c->s])
        fail_msg("op %llu: tree %llu: iteration returned key %#llx, the model has %#llx",
                 (unsigned long long)c->w->op, (unsigned long long)c->m->id,
                 (unsigned long long)key, (unsigned long long)c->w->keys[c->s]);
    model_expect(c->w, c->m, c->s, value);
    c->s = next_present(c->m, c->s + 1);
    return ++c->seen >= c->limit ? 1 : 0;
}

/* Iterates tree @m from key @from for at most @limit keys and compares. md lock. */
static void compare_iter(struct world *w, const struct mtree *m, uint64_t from, uint64_t limit)
{
    uint32_t s = slot_le(w, from);
    if (w->keys[s] < from)
        s++;
    struct cmp_ctx c = {.w = w, .m = m, .s = next_present(m, s), .limit = limit};
    int r = btree_iterate(w->pool, m->type, m->root, from, cmp_fn, &c);
    if (r < 0)
        fail_at(w, "btree_iterate", r);
    if (r == 0 && c.s != NSLOTS)
        fail_msg("op %llu: tree %llu: iteration from %#llx ended before key %#llx",
                 (unsigned long long)w->op, (unsigned long long)m->id, (unsigned long long)from,
                 (unsigned long long)w->keys[c.s]);
}

/* Every tree, and the root table, against the models. md lock. */
static void compare_all(struct world *w)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < MAXTREES; i++) {
        struct mtree *m = &w->t[i];
        if (!m->live)
            continue;
        n++;
        pblk_t root = PBLK_NONE;
        uint32_t type = 0;
        OK(w, rt_get(w->pool, m->id, &root, &type));
        if (!pblk_eq(root, m->root) || type != (uint32_t)m->type)
            fail_msg("op %llu: root table entry %llu: %#llx type %u, expected %#llx type %u",
                     (unsigned long long)w->op, (unsigned long long)m->id,
                     (unsigned long long)root.v, type, (unsigned long long)m->root.v, m->type);
        compare_iter(w, m, 0, UINT64_MAX);
        uint64_t count;
        OK(w, btree_count(w->pool, m->type, m->root, &count));
        assert_int_equal(count, m->n);
        uint32_t level = level_of(w, m);
        unsigned ti = m->type == TYPE_SMALL ? 0 : m->type == TYPE_WIDE ? 1 : 2;
        w->max_level[ti] = MAX(w->max_level[ti], (uint64_t)level);
    }
    uint64_t entries;
    OK(w, btree_count(w->pool, TREE_DEDUP, pool_root_get(w->pool, POOL_ROOT_DEDUP), &entries));
    assert_int_equal(entries, n);
}

static void check_pool(struct world *w)
{
    struct pool_check_report rep;
    int r = pool_check(w->pool, &rep);
    if (r != 0)
        fail_msg("op %llu: pool check: %d, %u problems", (unsigned long long)w->op, r, rep.errors);
}

static void snapshot_models(struct world *w)
{
    memcpy(w->committed, w->t, sizeof(w->t));
    w->committed_next_id = w->next_id;
}

/* Commits, checks the pool, compares every tree. Called with the md lock held. */
static void commit(struct world *w)
{
    OK(w, pool_commit_locked(w->pool));
    pool_md_unlock(w->pool);
    check_pool(w);
    pool_md_lock(w->pool);
    compare_all(w);
    snapshot_models(w);
    w->commits++;
}

/* Closes and reopens the pool, cleanly (a commit) or abandoning the open transaction, which
 * must then be forgotten. Called with the md lock held; returns with it held. */
static void reopen(struct world *w, bool abandon)
{
    if (abandon) {
        pool_md_unlock(w->pool);
        pool_abandon(w->pool);
        memcpy(w->t, w->committed, sizeof(w->t));
        w->next_id = w->committed_next_id;
        w->abandons++;
    } else {
        pool_md_unlock(w->pool);
        OK(w, pool_close(w->pool));
        snapshot_models(w);
        w->reopens++;
    }
    w->pool = NULL;
    memset(&w->cur, 0, sizeof(w->cur));
    open_pool(w);
    check_pool(w);
    pool_md_lock(w->pool);
    compare_all(w);
}

/* ---- Operations (md lock held) -------------------------------------------------------- */

static struct mtree *pick_live(struct world *w)
{
    unsigned live[MAXTREES], n = 0;
    for (unsigned i = 0; i < MAXTREES; i++)
        if (w->t[i].live)
            live[n++] = i;
    return n ? &w->t[live[rng_below(&w->rng, n)]] : NULL;
}

static unsigned live_count(const struct world *w)
{
    unsigned n = 0;
    for (unsigned i = 0; i < MAXTREES; i++)
        n += w->t[i].live;
    return n;
}

static struct mtree *free_tree(struct world *w)
{
    for (unsigned i = 0; i < MAXTREES; i++)
        if (!w->t[i].live)
            return &w->t[i];
    return NULL;
}

/* A slot: present or absent as the tree's mood prefers, within a random window so that
 * bulk operations and lookups meet dense and sparse regions alike. */
static uint32_t pick_slot(struct world *w, const struct mtree *m, bool want_present)
{
    for (int tries = 0; tries < 8; tries++) {
        uint32_t s = (uint32_t)rng_below(&w->rng, NSLOTS);
        if (has(m, s) == want_present)
            return s;
    }
    uint32_t s = (uint32_t)rng_below(&w->rng, NSLOTS);
    if (want_present && m->n) {
        uint32_t p = next_present(m, s);
        return p < NSLOTS ? p : next_present(m, 0);
    }
    return s;
}

/* A value for tree @m: a new data run, part of an existing value's run, or no run. */
static void make_value(struct world *w, const struct mtree *m, struct tv *v)
{
    memset(v, 0, sizeof(*v));
    v->tag = ++w->next_tag;
    if (m->type == TYPE_TINY)
        return;
    unsigned dice = (unsigned)rng_below(&w->rng, 100);
    if (dice < 20) {
        /* Share part of a run some tree holds now. */
        for (int tries = 0; tries < 4; tries++) {
            struct mtree *o = pick_live(w);
            if (o->type == TYPE_TINY || o->n == 0)
                continue;
            uint32_t s = pick_slot(w, o, true);
            if (!has(o, s) || o->v[s].start == 0)
                continue;
            uint32_t off = (uint32_t)rng_below(&w->rng, o->v[s].nblocks);
            uint32_t len = 1 + (uint32_t)rng_below(&w->rng, o->v[s].nblocks - off);
            v->start = o->v[s].start + off;
            v->nblocks = len;
            OK(w, pool_ref_inc(w->pool, (pblk_t){v->start}, len));
            return;
        }
    }
    if (dice < 75) {
        pblk_t start;
        uint64_t got, want = 1 + rng_below(&w->rng, rng_below(&w->rng, 4) ? 4 : 64);
        int r = pool_reserve(w->pool, &w->cur, want, 1, &start, &got);
        if (r == -ENOSPC)
            return;
        OK(w, r);
        OK(w, pool_ref_take(w->pool, start, got));
        v->start = start.v;
        v->nblocks = (uint32_t)got;
    }
}

static void op_insert(struct world *w, struct mtree *m, uint32_t s)
{
    struct tv v;
    uint8_t buf[512], got[512];
    make_value(w, m, &v);
    value_make(m->type, &v, buf);
    pblk_t nr;
    OK(w, btree_insert(w->pool, m->type, m->root, w->keys[s], buf, &nr));
    store_root(w, m, nr);
    set_slot(m, s, &v);
    OK(w, btree_lookup(w->pool, m->type, m->root, w->keys[s], got));
    model_expect(w, m, s, got);
}

static void op_remove(struct world *w, struct mtree *m, uint32_t s)
{
    pblk_t nr;
    int r = btree_remove(w->pool, m->type, m->root, w->keys[s], &nr);
    if (!has(m, s)) {
        if (r != -ENOENT)
            fail_at(w, "btree_remove of an absent key", r);
        if (!pblk_eq(nr, m->root))
            fail_msg("op %llu: btree_remove of an absent key moved the root",
                     (unsigned long long)w->op);
        return;
    }
    OK(w, r);
    store_root(w, m, nr);
    clear_slot(m, s);
    uint8_t got[512];
    r = btree_lookup(w->pool, m->type, m->root, w->keys[s], got);
    if (r != -ENOENT)
        fail_at(w, "btree_lookup after remove", r);
}

static void op_lookup(struct world *w, struct mtree *m)
{
    uint32_t s = pick_slot(w, m, rng_below(&w->rng, 4) != 0);
    uint8_t got[512];
    int r = btree_lookup(w->pool, m->type, m->root, w->keys[s], got);
    if (has(m, s)) {
        OK(w, r);
        model_expect(w, m, s, got);
    } else if (r != -ENOENT) {
        fail_at(w, "btree_lookup of an absent key", r);
    }
}

/* A query key: a present or absent key, one of its neighbours, an extreme, or anything. */
static uint64_t query_key(struct world *w, const struct mtree *m)
{
    uint64_t k = w->keys[pick_slot(w, m, rng_below(&w->rng, 2))];
    switch (rng_below(&w->rng, 8)) {
    case 0:
        return k - 1;
    case 1:
        return k + 1;
    case 2:
        return 0;
    case 3:
        return UINT64_MAX;
    case 4:
        return rng_next(&w->rng);
    default:
        return k;
    }
}

static void op_lookup_le_ge(struct world *w, struct mtree *m)
{
    uint64_t q = query_key(w, m), found = 0;
    uint8_t got[512];
    if (rng_below(&w->rng, 2)) {
        int r = btree_lookup_le(w->pool, m->type, m->root, q, &found, got);
        uint32_t s = prev_present(m, slot_le(w, q));
        if (s == UINT32_MAX) {
            if (r != -ENOENT)
                fail_at(w, "btree_lookup_le with nothing below", r);
            return;
        }
        OK(w, r);
        if (found != w->keys[s])
            fail_msg("op %llu: lookup_le(%#llx) found %#llx, expected %#llx",
                     (unsigned long long)w->op, (unsigned long long)q, (unsigned long long)found,
                     (unsigned long long)w->keys[s]);
        model_expect(w, m, s, got);
    } else {
        int r = btree_lookup_ge(w->pool, m->type, m->root, q, &found, got);
        uint32_t s = slot_le(w, q);
        if (w->keys[s] < q)
            s++;
        s = s < NSLOTS ? next_present(m, s) : NSLOTS;
        if (s == NSLOTS) {
            if (r != -ENOENT)
                fail_at(w, "btree_lookup_ge with nothing above", r);
            return;
        }
        OK(w, r);
        if (found != w->keys[s])
            fail_msg("op %llu: lookup_ge(%#llx) found %#llx, expected %#llx",
                     (unsigned long long)w->op, (unsigned long long)q, (unsigned long long)found,
                     (unsigned long long)w->keys[s]);
        model_expect(w, m, s, got);
    }
}

/* Inserts or removes every slot of a range: fast growth to three levels and back. */
static void op_bulk(struct world *w, struct mtree *m)
{
    uint32_t len = 1 + (uint32_t)rng_below(&w->rng, 300);
    uint32_t s0 = (uint32_t)rng_below(&w->rng, NSLOTS - len + 1);
    for (uint32_t s = s0; s < s0 + len; s++) {
        if (m->grow)
            op_insert(w, m, s);
        else if (has(m, s))
            op_remove(w, m, s);
    }
}

static void op_snapshot(struct world *w)
{
    struct mtree *src = pick_live(w), *dst = free_tree(w);
    if (!src || !dst)
        return;
    OK(w, btree_share(w->pool, src->root));
    memcpy(dst, src, sizeof(*dst));
    dst->id = w->next_id++;
    dst->grow = rng_below(&w->rng, 2);
    OK(w, rt_put(w->pool, dst->id, dst->root, dst->type, false));
    w->snapshots++;
}

static void new_tree(struct world *w, enum tree_type type)
{
    struct mtree *m = free_tree(w);
    if (!m)
        return;
    memset(m, 0, sizeof(*m));
    m->live = true;
    m->type = type;
    m->id = w->next_id++;
    m->grow = true;
    OK(w, btree_create(w->pool, m->type, &m->root));
    OK(w, rt_put(w->pool, m->id, m->root, m->type, false));
}

static void op_new_tree(struct world *w)
{
    new_tree(w, types[rng_below(&w->rng, NTYPES)]);
}

static void op_drop(struct world *w)
{
    struct mtree *m = pick_live(w);
    if (!m)
        return;
    OK(w, rt_remove(w->pool, m->id));
    m->live = false;
    w->drops++;
}

static void run(struct world *w, uint64_t ops)
{
    pool_md_lock(w->pool);
    for (w->op = 0; w->op < ops; w->op++) {
        struct mtree *m = pick_live(w);
        if (!m || (rng_below(&w->rng, 2000) == 0 && free_tree(w))) {
            op_new_tree(w);
            continue;
        }
        if (rng_below(&w->rng, 4000) == 0)
            m->grow = !m->grow;
        /* An empty tree in a shrinking mood, or a full one growing, changes its mind. */
        if ((m->n == 0 && !m->grow) || (m->n > NSLOTS * 7 / 8 && m->grow))
            m->grow = !m->grow;
        unsigned dice = (unsigned)rng_below(&w->rng, 10000);
        if (dice < 3500)
            op_insert(w, m, pick_slot(w, m, m->grow ? rng_below(&w->rng, 5) == 0 : true));
        else if (dice < 5500)
            op_remove(w, m, pick_slot(w, m, m->grow ? true : rng_below(&w->rng, 10) != 0));
        else if (dice < 6700)
            op_lookup(w, m);
        else if (dice < 8400)
            op_lookup_le_ge(w, m);
        else if (dice < 9000)
            compare_iter(w, m, query_key(w, m), 1 + rng_below(&w->rng, 64));
        else if (dice < 9400)
            op_bulk(w, m);
        else if (dice < 9600)
            op_snapshot(w);
        else if (dice < 9700) {
            /* The last tree goes only now and then. */
            if (live_count(w) > 1 || rng_below(&w->rng, 3) == 0)
                op_drop(w);
        } else if (dice < 9710)
            commit(w);
        else if (dice < 9711)
            reopen(w, rng_below(&w->rng, 2));
        else if (dice < 9720) {
            /* A full comparison of one tree mid-transaction. */
            compare_iter(w, m, 0, UINT64_MAX);
        } else
            op_lookup(w, m);
    }
    commit(w);
    pool_md_unlock(w->pool);
}

/* Drops everything; what stays allocated must be the reference-count tree alone. */
static void drop_everything(struct world *w)
{
    pool_md_lock(w->pool);
    for (unsigned i = 0; i < MAXTREES; i++) {
        if (w->t[i].live) {
            OK(w, rt_remove(w->pool, w->t[i].id));
            w->t[i].live = false;
        }
    }
    OK(w, rt_destroy(w->pool));
    OK(w, pool_commit_locked(w->pool));
    pool_md_unlock(w->pool);
    struct pool_check_report rep;
    OK(w, pool_check(w->pool, &rep));
    struct pool_stats st;
    pool_stat(w->pool, &st);
    if (st.allocated_blocks != rep.nodes || rep.data_blocks != 0)
        fail_msg("after dropping every tree: %llu blocks allocated, the reference-count tree "
                 "has %llu nodes, %llu data blocks referenced",
                 (unsigned long long)st.allocated_blocks, (unsigned long long)rep.nodes,
                 (unsigned long long)rep.data_blocks);
    if (st.allocated_blocks != w->baseline)
        fail_msg("after dropping every tree: %llu blocks allocated, %llu in the new pool",
                 (unsigned long long)st.allocated_blocks, (unsigned long long)w->baseline);
    if (st.free_blocks + st.allocated_blocks + st.pending_free_blocks != st.total_blocks)
        fail_msg("free %llu + allocated %llu + pending %llu != total %llu",
                 (unsigned long long)st.free_blocks, (unsigned long long)st.allocated_blocks,
                 (unsigned long long)st.pending_free_blocks, (unsigned long long)st.total_blocks);
}

/* ---- Tests ---------------------------------------------------------------------------- */

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    register_types();
    scratch_make(&w->s, 2, MEMBER_BYTES);
    struct pool_settings set;
    pool_settings_default(&set);
    set.commit_interval_ms = 3600u * 1000u; /* only the test commits */
    set.dirty_bound_bytes = 1ull << 40;
    OK(w, pool_create("modeltank", w->s.paths, w->s.n, &set, false));
    open_pool(w);
    struct pool_stats st;
    pool_stat(w->pool, &st);
    w->baseline = st.allocated_blocks;
    pool_md_lock(w->pool);
    OK(w, rt_create(w->pool));
    OK(w, pool_commit_locked(w->pool));
    pool_md_unlock(w->pool);
    w->next_id = 1;
    /* Keys spread over the whole 64-bit space, both ends included. */
    struct rng kr = {0x6b657973ull};
    const uint64_t stride = UINT64_MAX / NSLOTS;
    for (uint32_t s = 0; s < NSLOTS; s++)
        w->keys[s] = (uint64_t)s * stride + rng_below(&kr, stride / 2);
    w->keys[0] = 0;
    w->keys[NSLOTS - 1] = UINT64_MAX;
    snapshot_models(w);
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

/* Snapshots of a tree written in the same transaction, then both modified: each keeps its
 * own keys, and the data runs both hold survive the first drop. */
static void test_snapshot_basic(void **state)
{
    struct world *w = *state;
    w->rng.s = 12345;
    pool_md_lock(w->pool);
    new_tree(w, TYPE_WIDE); /* three levels with a few thousand keys */
    struct mtree *a = &w->t[0];
    for (uint32_t s = 0; s < NSLOTS; s += 2)
        op_insert(w, a, s);
    commit(w);
    assert_true(level_of(w, a) >= 2);
    op_snapshot(w);
    struct mtree *b = &w->t[1];
    for (uint32_t s = 1; s < NSLOTS; s += 4)
        op_insert(w, b, s);
    for (uint32_t s = 0; s < NSLOTS; s += 6)
        op_remove(w, a, s);
    commit(w);
    op_drop(w); /* one of the two at random */
    commit(w);
    pool_md_unlock(w->pool);
    drop_everything(w);
}

static void test_random(void **state)
{
    struct world *w = *state;
    rng_seed_env(&w->rng, "BTREE_MODEL_SEED");
    uint64_t ops = env_u64("BTREE_MODEL_OPS", DEFAULT_OPS);
    fprintf(stderr, "BTREE_MODEL_OPS=%llu\n", (unsigned long long)ops);
    run(w, ops);
    pool_md_lock(w->pool);
    reopen(w, false);
    pool_md_unlock(w->pool);
    fprintf(stderr,
            "commits %llu, reopens %llu, abandons %llu, snapshots %llu, drops %llu; "
            "highest root level: small %llu, wide %llu, tiny %llu\n",
            (unsigned long long)w->commits, (unsigned long long)w->reopens,
            (unsigned long long)w->abandons, (unsigned long long)w->snapshots,
            (unsigned long long)w->drops, (unsigned long long)w->max_level[0],
            (unsigned long long)w->max_level[1], (unsigned long long)w->max_level[2]);
    drop_everything(w);
}

int main(void)
{
    struct stat st;
    if (!getenv("TMPDIR") && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
        setenv("TMPDIR", "/dev/shm", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_snapshot_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
