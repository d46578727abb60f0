/*
 * The copy-on-write B+tree (pool/btree.c) over the in-memory transaction manager of
 * fake_tm.c: each operation, lookups across leaf boundaries, growth to three levels and
 * back, sharing and nested trees, the checker fed garbage, a failure injected into every
 * call an operation makes, and a model-based random test with snapshots and commits that
 * recomputes every reference count from the trees and compares it with the fake's.
 *
 * Environment: BTREE_SEED sets the random test's seed (printed either way), BTREE_OPS its
 * number of operations (default 1,000,000).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/pool/fake_tm.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Test values --------------------------------------------------------------------- */

/*
 * A value of 16 bytes or more starts with a data run it holds a reference to (start 0:
 * none), then bytes derived from its tag, so a value moved to the wrong place or cut shows.
 * An 8-byte value is its tag and holds nothing.
 */
struct tval {
    uint64_t start;
    uint32_t nblocks;
    uint32_t tag;
};

static uint32_t mapping_vs; /* value size of the TREE_MAPPING type registered now */

static unsigned tval_refs(const void *value, struct value_ref *out)
{
    struct tval v;

    memcpy(&v, value, sizeof(v));
    if (v.start == 0)
        return 0;
    out[0] = (struct value_ref){.start = {v.start}, .nblocks = v.nblocks};
    return 1;
}

static void tval_make(void *buf, uint32_t vs, uint64_t start, uint32_t nblocks, uint32_t tag)
{
    uint8_t *p = buf;

    memset(buf, 0, vs);
    if (vs < sizeof(struct tval)) {
        uint64_t x = tag | (uint64_t)0x5eed << 32;
        memcpy(buf, &x, sizeof(x));
        return;
    }
    memcpy(buf, &(struct tval){start, nblocks, tag}, sizeof(struct tval));
    for (uint32_t i = sizeof(struct tval); i < vs; i++)
        p[i] = (uint8_t)(tag * 7u + i);
}

static int tval_check(uint64_t key, const void *value, char *why, size_t len)
{
    uint8_t expect[512];
    struct tval v;

    (void)key;
    if (mapping_vs < sizeof(struct tval))
        return 0;
    memcpy(&v, value, sizeof(v));
    tval_make(expect, mapping_vs, v.start, v.nblocks, v.tag);
    if (memcmp(expect, value, mapping_vs) == 0)
        return 0;
    snprintf(why, len, "value of tag %u damaged", v.tag);
    return -EUCLEAN;
}

static void use_mapping(uint32_t vs)
{
    struct btree_type t = {
        .type = TREE_MAPPING,
        .value_size = vs,
        .name = "mapping",
        .refs = vs >= sizeof(struct tval) ? tval_refs : NULL,
        .check = tval_check,
    };

    mapping_vs = vs;
    btree_type_register(&t);
}

/* A catalog value holds the root of a mapping tree. */
static unsigned catalog_refs(const void *value, struct value_ref *out)
{
    uint64_t root;

    memcpy(&root, value, sizeof(root));
    out[0] = (struct value_ref){.start = {root}, .nblocks = 1, .tree_type = TREE_MAPPING};
    return 1;
}

static void use_catalog(void)
{
    struct btree_type t = {
        .type = TREE_CATALOG, .value_size = 16, .name = "catalog", .refs = catalog_refs};

    btree_type_register(&t);
}

/* ---- Helpers ------------------------------------------------------------------------- */

static int setup(void **state)
{
    *state = fake_pool_create();
    return 0;
}

static int teardown(void **state)
{
    struct pool *pool = *state;
    unsigned violations = fake_violations(pool), pins = fake_pinned(pool);

    fake_pool_destroy(pool);
    assert_int_equal(violations, 0);
    assert_int_equal(pins, 0);
    return 0;
}

/* Inserts @key with a value made from @tag (and a new data run when the value holds one). */
static pblk_t put(struct pool *pool, pblk_t root, uint64_t key, uint32_t tag)
{
    uint8_t v[512];
    uint32_t n = 1 + tag % 3;
    pblk_t data = mapping_vs >= sizeof(struct tval) ? fake_data_alloc(pool, n) : PBLK_NONE;

    tval_make(v, mapping_vs, data.v, n, tag);
    assert_int_equal(btree_insert(pool, TREE_MAPPING, root, key, v, &root), 0);
    return root;
}

static uint32_t tag_of(const void *value)
{
    struct tval v;
    uint64_t x;

    if (mapping_vs < sizeof(struct tval)) {
        memcpy(&x, value, sizeof(x));
        return (uint32_t)x;
    }
    memcpy(&v, value, sizeof(v));
    return v.tag;
}

static void expect_tag(struct pool *pool, pblk_t root, uint64_t key, uint32_t tag)
{
    uint8_t v[512];

    assert_int_equal(btree_lookup(pool, TREE_MAPPING, root, key, v), 0);
    assert_int_equal(tag_of(v), tag);
    assert_int_equal(tval_check(key, v, (char[64]){0}, 64), 0);
}

static pblk_t del(struct pool *pool, pblk_t root, uint64_t key)
{
    assert_int_equal(btree_remove(pool, TREE_MAPPING, root, key, &root), 0);
    return root;
}

static unsigned height(struct pool *pool, pblk_t root)
{
    const struct disk_node_header *h = fake_node_data(pool, root);

    assert_non_null(h);
    return h->level + 1;
}

static uint64_t count(struct pool *pool, pblk_t root)
{
    uint64_t n;

    assert_int_equal(btree_count(pool, TREE_MAPPING, root, &n), 0);
    return n;
}

/*
 * Recomputes every reference count from the trees at @roots (each held once by the
 * caller), as pool_check does, and compares it with the fake's counts: a leak or a double
 * drop anywhere shows as a difference. Runs btree_check on the way and fails on any problem.
 * Returns the number of blocks the trees hold.
 */
struct refs_walk {
    struct pool *pool;
    uint32_t *expected;
    uint8_t *visited;
    uint64_t limit;
    unsigned problems;
    const struct btree_check_ops *ops;
};

static uint64_t slot(struct refs_walk *w, pblk_t b)
{
    if (b.v < FAKE_BASE || b.v - FAKE_BASE >= w->limit) {
        fprintf(stderr, "reference to 0x%" PRIx64 ", outside the fake\n", b.v);
        w->problems++;
        return UINT64_MAX;
    }
    return b.v - FAKE_BASE;
}

static int refs_node(void *ctx, pblk_t b, enum tree_type type)
{
    struct refs_walk *w = ctx;
    uint64_t i = slot(w, b);

    (void)type;
    if (i == UINT64_MAX)
        return 0;
    w->expected[i]++;
    if (w->visited[i])
        return 0;
    w->visited[i] = 1;
    return 1;
}

static int refs_value(void *ctx, enum tree_type type, uint64_t key, const void *value)
{
    struct refs_walk *w = ctx;
    const struct btree_type *t = btree_type_get(type);
    struct value_ref refs[VALUE_MAX_REFS];
    unsigned n = t->refs ? t->refs(value, refs) : 0;

    (void)key;
    for (unsigned i = 0; i < n; i++) {
        if (refs[i].tree_type != TREE_NONE) {
            int r = btree_check(w->pool, refs[i].tree_type, refs[i].start, w->ops, w);
            if (r < 0)
                return r;
            continue;
        }
        for (uint64_t k = 0; k < refs[i].nblocks; k++) {
            uint64_t s = slot(w, pblk_add(refs[i].start, k));
            if (s != UINT64_MAX)
                w->expected[s]++;
        }
    }
    return 0;
}

static void refs_problem(void *ctx, const char *fmt, ...)
{
    struct refs_walk *w = ctx;
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "check: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    w->problems++;
}

static const struct btree_check_ops refs_ops = {
    .node = refs_node, .value = refs_value, .problem = refs_problem};

static uint64_t verify_refs(struct pool *pool, const pblk_t *roots, const enum tree_type *types,
                            unsigned n)
{
    struct refs_walk w = {.pool = pool, .limit = fake_block_limit(pool), .ops = &refs_ops};
    uint64_t held = 0, wrong = 0;

    w.expected = calloc(w.limit + 1, sizeof(*w.expected));
    w.visited = calloc(w.limit + 1, 1);
    assert_non_null(w.expected);
    assert_non_null(w.visited);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(btree_check(pool, types[i], roots[i], &refs_ops, &w), 0);
    for (uint64_t i = 0; i < w.limit; i++) {
        uint32_t c = 0;
        bool node;

        if (!fake_block_info(pool, i, &c, &node))
            c = 0;
        if (c != w.expected[i] && wrong++ < 10)
            fprintf(stderr, "block 0x%" PRIx64 ": count %u, the trees hold %u\n", FAKE_BASE + i, c,
                    w.expected[i]);
        held += w.expected[i] != 0;
    }
    free(w.expected);
    free(w.visited);
    assert_int_equal(w.problems, 0);
    assert_int_equal(wrong, 0);
    assert_int_equal(fake_pinned(pool), 0);
    return held;
}

static void verify_one(struct pool *pool, pblk_t root)
{
    verify_refs(pool, &root, (enum tree_type[]){TREE_MAPPING}, 1);
}

/* Drops @root, commits, and expects nothing left. */
static void drop_all(struct pool *pool, pblk_t root)
{
    assert_int_equal(btree_drop(pool, TREE_MAPPING, root), 0);
    fake_commit(pool);
    assert_int_equal(fake_held_blocks(pool), 0);
}

/* ---- Unit tests ---------------------------------------------------------------------- */

static void test_empty(void **state)
{
    struct pool *pool = *state;
    uint8_t v[64];
    uint64_t found;
    pblk_t root, r2;

    use_mapping(32);
    assert_int_equal(btree_create(pool, TREE_MAPPING, &root), 0);
    assert_int_equal(height(pool, root), 1);
    assert_int_equal(btree_lookup(pool, TREE_MAPPING, root, 0, v), -ENOENT);
    assert_int_equal(btree_lookup_le(pool, TREE_MAPPING, root, UINT64_MAX, &found, v), -ENOENT);
    assert_int_equal(btree_lookup_ge(pool, TREE_MAPPING, root, 0, &found, v), -ENOENT);
    assert_int_equal(btree_remove(pool, TREE_MAPPING, root, 5, &r2), -ENOENT);
    assert_true(pblk_eq(r2, root));
    assert_int_equal(count(pool, root), 0);
    verify_one(pool, root);
    fake_commit(pool);
    verify_one(pool, root);
    drop_all(pool, root);
}

static void test_bad_type(void **state)
{
    struct pool *pool = *state;
    pblk_t root;

    assert_null(btree_type_get(TREE_DEDUP));
    assert_null(btree_type_get((enum tree_type)99));
    assert_int_equal(btree_create(pool, TREE_DEDUP, &root), -EINVAL);
    /* Refused registrations leave the type unregistered. */
    btree_type_register(&(struct btree_type){.type = TREE_DEDUP, .value_size = 513});
    btree_type_register(&(struct btree_type){.type = TREE_DEDUP, .value_size = 0});
    btree_type_register(&(struct btree_type){.type = TREE_NONE, .value_size = 8});
    assert_null(btree_type_get(TREE_DEDUP));
    assert_null(btree_type_get(TREE_NONE));
}

static void test_basic(void **state)
{
    struct pool *pool = *state;
    uint8_t v[64];
    pblk_t root, before;

    use_mapping(32);
    assert_int_equal(btree_create(pool, TREE_MAPPING, &root), 0);
    root = put(pool, root, 10, 1);
    root = put(pool, root, 5, 2);
    root = put(pool, root, UINT64_MAX, 3);
    root = put(pool, root, 0, 4);
    expect_tag(pool, root, 10, 1);
    expect_tag(pool, root, 5, 2);
    expect_tag(pool, root, UINT64_MAX, 3);
    expect_tag(pool, root, 0, 4);
    assert_int_equal(btree_lookup(pool, TREE_MAPPING, root, 6, v), -ENOENT);
    assert_int_equal(count(pool, root), 4);
    verify_one(pool, root);

    /* Replacing drops the old value's data run. */
    fake_commit(pool);
    before = root;
    root = put(pool, root, 10, 7);
    assert_false(pblk_eq(root, before)); /* committed: shadowed to a new place */
    expect_tag(pool, root, 10, 7);
    assert_int_equal(count(pool, root), 4);
    verify_one(pool, root);

    root = del(pool, root, 5);
    assert_int_equal(btree_lookup(pool, TREE_MAPPING, root, 5, v), -ENOENT);
    before = root;
    assert_int_equal(btree_remove(pool, TREE_MAPPING, root, 5, &root), -ENOENT);
    assert_true(pblk_eq(root, before));
    assert_int_equal(count(pool, root), 3);
    verify_one(pool, root);
    root = del(pool, root, 0);
    root = del(pool, root, 10);
    root = del(pool, root, UINT64_MAX);
    assert_int_equal(count(pool, root), 0);
    verify_one(pool, root);
    fake_commit(pool);
    assert_int_equal(fake_live_blocks(pool), 1); /* the empty leaf */
    drop_all(pool, root);
}

/* Keys 10, 20, ..., 10 * n with 512-byte values (seven to a leaf): many leaf boundaries. */
static pblk_t build_tens(struct pool *pool, unsigned n)
{
    pblk_t root;

    assert_int_equal(btree_create(pool, TREE_MAPPING, &root), 0);
    for (unsigned i = 1; i <= n; i++)
        root = put(pool, root, 10u * i, i);
    return root;
}

static void test_le_ge(void **state)
{
    struct pool *pool = *state;
    unsigned n = 400;
    uint8_t v[512];
    uint64_t found;
    pblk_t root;

    use_mapping(512);
    root = build_tens(pool, n);
    assert_true(height(pool, root) >= 2);
    for (uint64_t q = 0; q <= 10u * n + 10; q++) {
        uint64_t le = q / 10 * 10, ge = (q + 9) / 10 * 10;
        int r = btree_lookup_le(pool, TREE_MAPPING, root, q, &found, v);

        if (le == 0) {
            assert_int_equal(r, -ENOENT);
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(found, le < 10u * n ? le : 10u * n);
            assert_int_equal(tag_of(v), found / 10);
        }
        r = btree_lookup_ge(pool, TREE_MAPPING, root, q, &found, v);
        if (ge == 0)
            ge = 10;
        if (ge > 10u * n) {
            assert_int_equal(r, -ENOENT);
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(found, ge);
            assert_int_equal(tag_of(v), ge / 10);
        }
    }
    assert_int_equal(btree_lookup_ge(pool, TREE_MAPPING, root, UINT64_MAX, &found, v), -ENOENT);
    assert_int_equal(btree_lookup_le(pool, TREE_MAPPING, root, UINT64_MAX, &found, NULL), 0);
    assert_int_equal(found, 10u * n);
    /* The same after removing the first key of every other leaf-sized stretch. */
    for (unsigned i = 1; i <= n; i += 14)
        root = del(pool, root, 10u * i);
    for (uint64_t q = 0; q <= 10u * n + 10; q += 5) {
        uint64_t le = q / 10 < n ? q / 10 : n, ge = (q + 9) / 10;

        while (le >= 1 && (le - 1) % 14 == 0)
            le--;
        while (ge <= n && (ge == 0 || (ge - 1) % 14 == 0))
            ge++;
        if (le == 0) {
            assert_int_equal(btree_lookup_le(pool, TREE_MAPPING, root, q, &found, v), -ENOENT);
        } else {
            assert_int_equal(btree_lookup_le(pool, TREE_MAPPING, root, q, &found, v), 0);
            assert_int_equal(found, 10 * le);
        }
        if (ge > n) {
            assert_int_equal(btree_lookup_ge(pool, TREE_MAPPING, root, q, &found, v), -ENOENT);
        } else {
            assert_int_equal(btree_lookup_ge(pool, TREE_MAPPING, root, q, &found, v), 0);
            assert_int_equal(found, 10 * ge);
        }
    }
    verify_one(pool, root);
    drop_all(pool, root);
}

struct collect {
    uint64_t keys[1024];
    unsigned n, stop_after;
};

static int collect_fn(void *ctx, uint64_t key, const void *value)
{
    struct collect *c = ctx;

    assert_int_equal(tag_of(value), key / 10);
    c->keys[c->n++] = key;
    return c->n == c->stop_after ? 42 : 0;
}

static void test_iterate(void **state)
{
    struct pool *pool = *state;
    struct collect c;
    pblk_t root;

    use_mapping(512);
    root = build_tens(pool, 300);
    for (uint64_t from = 0; from <= 3020; from += 7) {
        memset(&c, 0, sizeof(c));
        assert_int_equal(btree_iterate(pool, TREE_MAPPING, root, from, collect_fn, &c), 0);
        uint64_t first = from <= 10 ? 10 : (from + 9) / 10 * 10;
        assert_int_equal(c.n, first > 3000 ? 0 : (3000 - first) / 10 + 1);
        for (unsigned i = 0; i < c.n; i++)
            assert_int_equal(c.keys[i], first + 10u * i);
    }
    /* A non-zero return stops the walk and comes back. */
    memset(&c, 0, sizeof(c));
    c.stop_after = 25;
    assert_int_equal(btree_iterate(pool, TREE_MAPPING, root, 1234, collect_fn, &c), 42);
    assert_int_equal(c.n, 25);
    assert_int_equal(c.keys[0], 1240);
    assert_int_equal(c.keys[24], 1480);
    assert_int_equal(count(pool, root), 300);
    drop_all(pool, root);
}

static void shuffle(uint64_t *a, size_t n, unsigned seed)
{
    srand(seed);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        uint64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Grows a tree to @n keys in random order, past three levels, and removes them all in
 * another order, checking on the way. */
static void grow_and_shrink(struct pool *pool, uint32_t vs, size_t n, unsigned min_height)
{
    uint64_t *keys = malloc(n * sizeof(*keys));
    unsigned max_height = 0;
    pblk_t root;

    assert_non_null(keys);
    use_mapping(vs);
    for (size_t i = 0; i < n; i++)
        keys[i] = (uint64_t)i * 1000003u;
    shuffle(keys, n, 1);
    assert_int_equal(btree_create(pool, TREE_MAPPING, &root), 0);
    for (size_t i = 0; i < n; i++) {
        root = put(pool, root, keys[i], (uint32_t)(keys[i] / 1000003u));
        if (i % 4096 == 0)
            fake_commit(pool);
    }
    max_height = height(pool, root);
    assert_true(max_height >= min_height);
    assert_int_equal(count(pool, root), n);
    verify_one(pool, root);
    for (size_t i = 0; i < n; i += n / 97)
        expect_tag(pool, root, keys[i], (uint32_t)(keys[i] / 1000003u));
    fake_commit(pool);

    shuffle(keys, n, 2);
    for (size_t i = 0; i < n; i++) {
        root = del(pool, root, keys[i]);
        if (i % 4096 == 0) {
            fake_commit(pool);
            if (i % (4096 * 4) == 0)
                verify_one(pool, root);
        }
    }
    assert_int_equal(height(pool, root), 1);
    assert_int_equal(count(pool, root), 0);
    verify_one(pool, root);
    fake_commit(pool);
    assert_int_equal(fake_live_blocks(pool), 1);
    drop_all(pool, root);
    free(keys);
}

static void test_height3_small(void **state)
{
    /* 253 entries a node: three levels need more than 253 * 253 / 2 keys. */
    grow_and_shrink(*state, 8, 100000, 3);
}

static void test_height3_256(void **state)
{
    /* 15 values a leaf: a few thousand keys make three levels. */
    grow_and_shrink(*state, 256, 12000, 3);
}

static void test_share(void **state)
{
    struct pool *pool = *state;
    pblk_t a, b;

    use_mapping(64);
    assert_int_equal(btree_create(pool, TREE_MAPPING, &a), 0);
    for (unsigned i = 0; i < 2000; i++)
        a = put(pool, a, i * 2, i);
    fake_commit(pool);
    assert_int_equal(btree_share(pool, a), 0);
    b = a;
    /* Change b everywhere; a must not see it. */
    for (unsigned i = 0; i < 2000; i += 3)
        b = put(pool, b, i * 2, 100000 + i);
    for (unsigned i = 0; i < 2000; i += 5)
        b = del(pool, b, i * 2);
    b = put(pool, b, 1, 7);
    verify_refs(pool, (pblk_t[]){a, b}, (enum tree_type[]){TREE_MAPPING, TREE_MAPPING}, 2);
    for (unsigned i = 0; i < 2000; i++)
        expect_tag(pool, a, i * 2, i);
    assert_int_equal(count(pool, a), 2000);
    fake_commit(pool);
    verify_refs(pool, (pblk_t[]){a, b}, (enum tree_type[]){TREE_MAPPING, TREE_MAPPING}, 2);
    /* Dropping a frees what only a held. */
    assert_int_equal(btree_drop(pool, TREE_MAPPING, a), 0);
    uint64_t held = verify_refs(pool, &b, (enum tree_type[]){TREE_MAPPING}, 1);
    fake_commit(pool);
    assert_int_equal(fake_live_blocks(pool), held);
    assert_int_equal(fake_held_blocks(pool), held);
    drop_all(pool, b);
}

/* A tree shared in the transaction that made it: its nodes are dirty but must still be
 * copied before either owner changes them. */
static void test_share_uncommitted(void **state)
{
    struct pool *pool = *state;
    pblk_t a, b;

    use_mapping(512);
    a = build_tens(pool, 100);
    assert_int_equal(btree_share(pool, a), 0);
    b = a;
    b = put(pool, b, 15, 999);
    b = del(pool, b, 20);
    a = del(pool, a, 500);
    expect_tag(pool, a, 20, 2);
    expect_tag(pool, b, 500, 50);
    assert_int_equal(btree_lookup(pool, TREE_MAPPING, a, 15, NULL), -ENOENT);
    assert_int_equal(count(pool, a), 99);
    assert_int_equal(count(pool, b), 100);
    verify_refs(pool, (pblk_t[]){a, b}, (enum tree_type[]){TREE_MAPPING, TREE_MAPPING}, 2);
    assert_int_equal(btree_drop(pool, TREE_MAPPING, b), 0);
    verify_one(pool, a);
    drop_all(pool, a);
}

static void test_nested(void **state)
{
    struct pool *pool = *state;
    enum tree_type tt[] = {TREE_CATALOG, TREE_CATALOG};
    pblk_t cat, snap, m;
    uint64_t v[2] = {0, 0};

    use_mapping(32);
    use_catalog();
    assert_int_equal(btree_create(pool, TREE_CATALOG, &cat), 0);
    for (unsigned id = 1; id <= 40; id++) {
        assert_int_equal(btree_create(pool, TREE_MAPPING, &m), 0);
        for (unsigned k = 0; k < 50 * id; k++)
            m = put(pool, m, k, k);
        v[0] = m.v; /* the catalog takes over our reference to m */
        assert_int_equal(btree_insert(pool, TREE_CATALOG, cat, id, v, &cat), 0);
    }
    verify_refs(pool, &cat, tt, 1);
    fake_commit(pool);

    /* A snapshot of the catalog: changing the copy shares every mapping tree. */
    assert_int_equal(btree_share(pool, cat), 0);
    snap = cat;
    assert_int_equal(btree_create(pool, TREE_MAPPING, &m), 0);
    v[0] = m.v;
    assert_int_equal(btree_insert(pool, TREE_CATALOG, cat, 100, v, &cat), 0);
    verify_refs(pool, (pblk_t[]){cat, snap}, tt, 2);
    /* Replacing and removing entries drop their trees: shared ones only lose a reference. */
    assert_int_equal(btree_create(pool, TREE_MAPPING, &m), 0);
    m = put(pool, m, 1, 1);
    v[0] = m.v;
    assert_int_equal(btree_insert(pool, TREE_CATALOG, cat, 3, v, &cat), 0);
    assert_int_equal(btree_remove(pool, TREE_CATALOG, cat, 4, &cat), 0);
    assert_int_equal(btree_remove(pool, TREE_CATALOG, cat, 100, &cat), 0);
    verify_refs(pool, (pblk_t[]){cat, snap}, tt, 2);
    fake_commit(pool);
    /* The snapshot alone held mapping trees 3 and 4: dropping it frees them. */
    assert_int_equal(btree_drop(pool, TREE_CATALOG, snap), 0);
    uint64_t held = verify_refs(pool, &cat, tt, 1);
    fake_commit(pool);
    assert_int_equal(fake_live_blocks(pool), held);
    assert_int_equal(btree_drop(pool, TREE_CATALOG, cat), 0);
    fake_commit(pool);
    assert_int_equal(fake_held_blocks(pool), 0);
}

/*
 * A catalog keeps the root of each mapping tree. Changing a mapping tree moves its root, and
 * with it the catalog's reference: the new root is stored with btree_insert_raw, which must
 * neither drop the old value's references nor take the new one's.
 */
static void test_insert_raw(void **state)
{
    struct pool *pool = *state;
    enum tree_type tt[] = {TREE_CATALOG};
    uint64_t v[2] = {0, 0};
    pblk_t cat, m;

    use_mapping(32);
    use_catalog();
    assert_int_equal(btree_create(pool, TREE_CATALOG, &cat), 0);
    for (unsigned id = 1; id <= 3; id++) {
        assert_int_equal(btree_create(pool, TREE_MAPPING, &m), 0);
        for (unsigned k = 0; k < 500; k++)
            m = put(pool, m, k, k);
        v[0] = m.v;
        assert_int_equal(btree_insert(pool, TREE_CATALOG, cat, id, v, &cat), 0);
    }
    fake_commit(pool);

    for (int round = 0; round < 3; round++) {
        /* Volume 2 writes: its tree's root moves, and the catalog follows it raw. */
        assert_int_equal(btree_lookup(pool, TREE_CATALOG, cat, 2, v), 0);
        m.v = v[0];
        for (unsigned k = 0; k < 600; k += 7)
            m = put(pool, m, k, 1000 + k);
        v[0] = m.v;
        assert_int_equal(btree_insert_raw(pool, TREE_CATALOG, cat, 2, v, &cat), 0);
        verify_refs(pool, &cat, tt, 1);
        if (round == 1) {
            /* A snapshot of volume 2: a new entry sharing its tree. Later writes copy. */
            assert_int_equal(btree_share(pool, m), 0);
            assert_int_equal(btree_insert(pool, TREE_CATALOG, cat, 20, v, &cat), 0);
            verify_refs(pool, &cat, tt, 1);
        }
        fake_commit(pool);
        verify_refs(pool, &cat, tt, 1);
    }
    assert_int_equal(btree_lookup(pool, TREE_CATALOG, cat, 20, v), 0);
    m.v = v[0];
    expect_tag(pool, m, 7, 1007);
    expect_tag(pool, m, 1, 1);
    assert_int_equal(btree_drop(pool, TREE_CATALOG, cat), 0);
    fake_commit(pool);
    assert_int_equal(fake_held_blocks(pool), 0);
}

/* ---- The checker on garbage ---------------------------------------------------------- */

struct problems {
    unsigned n;
    char text[4096];
};

static void note_problem(void *ctx, const char *fmt, ...)
{
    struct problems *p = ctx;
    size_t used = strlen(p->text);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->text + used, sizeof(p->text) - used, fmt, ap);
    va_end(ap);
    used = strlen(p->text);
    if (used + 1 < sizeof(p->text))
        strcat(p->text, "\n");
    p->n++;
}

static const struct btree_check_ops problem_ops = {.problem = note_problem};

enum damage {
    D_SWAP_KEYS,
    D_TOO_MANY,
    D_CAPACITY,
    D_LEAF_LEVEL,
    D_VALUE_SIZE,
    D_KEY_RANGE,
    D_EMPTY,
    D_FIRST_KEY,
    D_CHECKSUM,
    D_CHILD_ZERO,
    D_CHILD_FOREIGN,
    D_FLAGS,
    D_VALUE,
    D_LEVEL,
    D_NOISE,
    D_COUNT
};

static const char *const damage_text[D_COUNT] = {
    [D_SWAP_KEYS] = "keys not increasing at",
    [D_TOO_MANY] = "entries, capacity",
    [D_CAPACITY] = "capacity 99, expected",
    [D_LEAF_LEVEL] = "leaf at level 1",
    [D_VALUE_SIZE] = "value size 8, expected 512",
    [D_KEY_RANGE] = "outside the parent's range",
    [D_EMPTY] = "empty leaf",
    [D_FIRST_KEY] = "differs from the parent's key",
    [D_CHECKSUM] = "cannot read",
    [D_CHILD_ZERO] = "has no address",
    [D_CHILD_FOREIGN] = "cannot read",
    [D_FLAGS] = "unknown flags",
    [D_VALUE] = "value of tag",
    [D_LEVEL] = "level 1, expected 0",
    [D_NOISE] = "",
};

static void test_check_garbage(void **state)
{
    struct pool *pool = *state;
    uint8_t v[512];

    use_mapping(512);
    use_catalog();
    fake_set_paranoid(pool, false);
    for (int d = 0; d < D_COUNT; d++) {
        struct problems p = {0};
        pblk_t root = build_tens(pool, 200), other, leaf, inner;
        void *rd, *ld;
        uint64_t *keys;

        assert_int_equal(btree_create(pool, TREE_CATALOG, &other), 0);
        fake_commit(pool);
        assert_int_equal(height(pool, root), 2);
        rd = fake_node_data(pool, root);
        inner = root;
        memcpy(&leaf.v, (char *)node_values(rd) + 8 * 3, 8); /* the fourth leaf */
        ld = fake_node_data(pool, leaf);
        keys = node_keys(ld);
        switch ((enum damage)d) {
        case D_SWAP_KEYS: {
            uint64_t t = keys[1];
            keys[1] = keys[2];
            keys[2] = t;
            break;
        }
        case D_TOO_MANY:
            node_header(ld)->nr_entries = 1000;
            break;
        case D_CAPACITY:
            node_header(ld)->max_entries = 99;
            break;
        case D_LEAF_LEVEL:
            node_header(ld)->level = 1;
            break;
        case D_VALUE_SIZE:
            node_header(ld)->value_size = 8;
            break;
        case D_KEY_RANGE:
            keys[node_header(ld)->nr_entries - 1] = 1000000;
            break;
        case D_EMPTY:
            node_header(ld)->nr_entries = 0;
            break;
        case D_FIRST_KEY:
            keys[0]--;
            break;
        case D_CHECKSUM:
            fake_break_checksum(pool, leaf);
            break;
        case D_CHILD_ZERO:
            memset((char *)node_values(rd) + 8, 0, 8);
            break;
        case D_CHILD_FOREIGN:
            memcpy((char *)node_values(rd) + 8, &other.v, 8);
            break;
        case D_FLAGS:
            node_header(ld)->flags |= 0x80;
            break;
        case D_VALUE:
            ((uint8_t *)node_values(ld))[100] ^= 1;
            break;
        case D_LEVEL:
            node_header(ld)->flags = 0;
            node_header(ld)->level = 1;
            break;
        case D_NOISE:
            srand(7);
            for (size_t i = sizeof(struct md_header); i < CS_BLOCK_SIZE; i++)
                ((uint8_t *)ld)[i] = (uint8_t)rand();
            break;
        case D_COUNT:
            break;
        }
        if (d != D_CHECKSUM) {
            fake_restamp(pool, leaf);
            fake_restamp(pool, inner);
        }
        assert_int_equal(btree_check(pool, TREE_MAPPING, root, &problem_ops, &p), 0);
        if (p.n == 0 || !strstr(p.text, damage_text[d]))
            fail_msg("damage %d: expected \"%s\", got:\n%s", d, damage_text[d], p.text);
        assert_non_null(strstr(p.text, "tree mapping: node 0x"));
        /* The operations meet the damage too and must neither crash nor leak pins. */
        for (uint64_t k = 0; k <= 500; k += 7) {
            uint64_t found;
            int r = btree_lookup(pool, TREE_MAPPING, root, k, v);
            assert_true(r == 0 || r == -ENOENT || r == -EUCLEAN);
            r = btree_lookup_ge(pool, TREE_MAPPING, root, k, &found, v);
            assert_true(r == 0 || r == -ENOENT || r == -EUCLEAN);
        }
        assert_int_equal(fake_pinned(pool), 0);
        fake_pool_destroy(pool);
        pool = *state = fake_pool_create();
        fake_set_paranoid(pool, false);
    }
}

/* ---- Failures injected into every call ----------------------------------------------- */

enum fault_op { F_INSERT, F_REPLACE, F_REMOVE, F_DROP, F_READS, F_COUNT };

static int run_op(struct pool *pool, enum fault_op op, pblk_t root, uint64_t key, pblk_t *out)
{
    uint8_t v[512];
    uint64_t n;

    tval_make(v, mapping_vs, 0, 0, 12345);
    switch (op) {
    case F_INSERT:
    case F_REPLACE:
        return btree_insert(pool, TREE_MAPPING, root, key, v, out);
    case F_REMOVE:
        return btree_remove(pool, TREE_MAPPING, root, key, out);
    case F_DROP:
        return btree_drop(pool, TREE_MAPPING, root);
    case F_READS: {
        struct collect c = {.stop_after = 1000};
        int r = btree_lookup_ge(pool, TREE_MAPPING, root, key, &n, v);
        if (r == 0)
            r = btree_lookup_le(pool, TREE_MAPPING, root, key, &n, v);
        if (r == 0)
            r = btree_count(pool, TREE_MAPPING, root, &n);
        if (r == 0)
            r = btree_iterate(pool, TREE_MAPPING, root, key, collect_fn, &c);
        return r;
    }
    case F_COUNT:
        break;
    }
    return -EINVAL;
}

static void test_faults(void **state)
{
    struct pool *pool = *state, *base;
    unsigned injected = 0;
    pblk_t root;

    use_mapping(512);
    root = build_tens(pool, 190);
    fake_commit(pool);
    for (int shared = 0; shared < 2; shared++) {
        /* Shared, the first shadow of every node takes references, which can fail too. */
        if (shared)
            assert_int_equal(btree_share(pool, root), 0);
        for (int op = 0; op < F_COUNT; op++) {
            for (uint64_t key = 5; key < 1890; key += 170) {
                uint64_t k = op == F_INSERT ? key : key / 10 * 10 + 10;

                for (long n = 0;; n++) {
                    pblk_t out = {0xdead};
                    int r;

                    base = fake_pool_clone(pool);
                    fake_fail_call(base, n, EIO);
                    r = run_op(base, op, root, k, &out);
                    assert_int_equal(fake_pinned(base), 0);
                    assert_int_equal(fake_violations(base), 0);
                    fake_pool_destroy(base);
                    if (r == 0)
                        break; /* n passed the number of calls the operation makes */
                    assert_int_equal(r, -EIO);
                    assert_int_equal(out.v, 0xdead);
                    injected++;
                }
            }
        }
    }
    assert_true(injected > 500);
    assert_int_equal(btree_drop(pool, TREE_MAPPING, root), 0);
    assert_int_equal(btree_drop(pool, TREE_MAPPING, root), 0);
}

/* ---- Model-based random test --------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

/* The expected content of one tree: slot s stands for key s * stride. */
struct mval {
    uint64_t start;
    uint32_t nblocks, tag;
};

struct model {
    uint64_t *bits;
    struct mval *v;
    uint64_t n;
};

struct world {
    struct pool *pool;
    uint32_t vs;
    uint64_t slots, stride;
    unsigned ntrees; /* 1, or 2 while a snapshot exists */
    pblk_t root[2];
    struct model m[2];
    uint32_t tag;
    double target; /* fill the current phase steers to */
    unsigned max_height, shrinks_to_one;
    uint64_t ops, commits, shares, drops, checks;
};

static bool has(const struct model *m, uint64_t s)
{
    return m->bits[s / 64] >> (s % 64) & 1;
}

/* The first slot >= @from that is present, or UINT64_MAX. */
static uint64_t next_set(const struct world *w, const struct model *m, uint64_t from)
{
    uint64_t words = (w->slots + 63) / 64, wi = from / 64, x;

    if (from >= w->slots)
        return UINT64_MAX;
    for (x = m->bits[wi] & (~0ull << (from % 64));; x = m->bits[wi]) {
        if (x)
            return wi * 64 + (uint64_t)__builtin_ctzll(x);
        if (++wi == words)
            return UINT64_MAX;
    }
}

/* A random slot that is present (or absent), or UINT64_MAX when there is none. */
static uint64_t pick(const struct world *w, const struct model *m, bool present)
{
    uint64_t from = rnd_below(w->slots);

    for (int pass = 0; pass < 2; pass++, from = 0) {
        for (uint64_t s = from; s < w->slots; s++) {
            uint64_t word = m->bits[s / 64];

            if (present ? word == 0 : word == ~0ull) {
                s |= 63; /* nothing to find in this word */
                continue;
            }
            if (has(m, s) == present)
                return s;
        }
    }
    return UINT64_MAX;
}

/* The last slot <= @from that is present, or UINT64_MAX. */
static uint64_t prev_set(const struct model *m, uint64_t from)
{
    uint64_t wi = from / 64, b = from % 64;
    uint64_t x = m->bits[wi] & (b == 63 ? ~0ull : (1ull << (b + 1)) - 1);

    for (;; x = m->bits[wi]) {
        if (x)
            return wi * 64 + 63 - (uint64_t)__builtin_clzll(x);
        if (wi-- == 0)
            return UINT64_MAX;
    }
}

static void model_init(struct world *w, struct model *m)
{
    m->bits = calloc((w->slots + 63) / 64, 8);
    m->v = calloc(w->slots, sizeof(*m->v));
    m->n = 0;
    assert_non_null(m->bits);
    assert_non_null(m->v);
}

static void model_copy(struct world *w, struct model *dst, const struct model *src)
{
    memcpy(dst->bits, src->bits, (w->slots + 63) / 64 * 8);
    memcpy(dst->v, src->v, w->slots * sizeof(*dst->v));
    dst->n = src->n;
}

static void model_expect(struct world *w, const struct model *m, uint64_t s, const void *got)
{
    uint8_t want[512];
    const struct mval *mv = &m->v[s];

    tval_make(want, w->vs, mv->start, mv->nblocks, mv->tag);
    if (memcmp(want, got, w->vs) != 0)
        fail_msg("op %" PRIu64 ": wrong value at key %" PRIu64, w->ops, s * w->stride);
}

struct walk_cmp {
    struct world *w;
    const struct model *m;
    uint64_t next; /* slot the next key must be at or after */
    uint64_t left; /* keys to take before stopping */
};

static int cmp_fn(void *ctx, uint64_t key, const void *value)
{
    struct walk_cmp *c = ctx;
    uint64_t s = next_set(c->w, c->m, c->next);

    if (s == UINT64_MAX || key != s * c->w->stride)
        fail_msg("op %" PRIu64 ": iteration met key %" PRIu64 ", expected slot %" PRIu64, c->w->ops,
                 key, s);
    model_expect(c->w, c->m, s, value);
    c->next = s + 1;
    return --c->left == 0 ? 1 : 0;
}

/* Walks from @from for up to @limit keys and compares with the model. */
static void compare_walk(struct world *w, unsigned t, uint64_t from, uint64_t limit)
{
    uint64_t first = from / w->stride + (from % w->stride != 0);
    struct walk_cmp c = {.w = w, .m = &w->m[t], .next = first, .left = limit};
    int r = btree_iterate(w->pool, TREE_MAPPING, w->root[t], from, cmp_fn, &c);

    assert_true(r == 0 || r == 1);
    if (r == 0)
        assert_int_equal(next_set(w, &w->m[t], c.next), UINT64_MAX);
}

static void full_check(struct world *w)
{
    enum tree_type tt[2] = {TREE_MAPPING, TREE_MAPPING};

    for (unsigned t = 0; t < w->ntrees; t++) {
        uint64_t n;

        compare_walk(w, t, 0, UINT64_MAX);
        assert_int_equal(btree_count(w->pool, TREE_MAPPING, w->root[t], &n), 0);
        assert_int_equal(n, w->m[t].n);
    }
    verify_refs(w->pool, w->root, tt, w->ntrees);
    assert_int_equal(fake_violations(w->pool), 0);
    w->checks++;
}

static void commit(struct world *w)
{
    enum tree_type tt[2] = {TREE_MAPPING, TREE_MAPPING};

    fake_commit(w->pool);
    uint64_t held = verify_refs(w->pool, w->root, tt, w->ntrees);
    /* Freed blocks went at the commit: what is left is exactly what the trees hold. */
    assert_int_equal(fake_held_blocks(w->pool), held);
    w->commits++;
}

static void op_write(struct world *w, unsigned t, uint64_t s)
{
    struct model *m = &w->m[t];
    uint32_t n = 1 + (uint32_t)rnd_below(3);
    pblk_t data = fake_data_alloc(w->pool, n);
    uint8_t v[512];

    w->tag++;
    tval_make(v, w->vs, data.v, n, w->tag);
    assert_int_equal(btree_insert(w->pool, TREE_MAPPING, w->root[t], s * w->stride, v, &w->root[t]),
                     0);
    if (!has(m, s)) {
        m->bits[s / 64] |= 1ull << (s % 64);
        m->n++;
    }
    m->v[s] = (struct mval){data.v, n, w->tag};
}

static void op_remove(struct world *w, unsigned t, uint64_t s)
{
    struct model *m = &w->m[t];
    pblk_t before = w->root[t];
    int r = btree_remove(w->pool, TREE_MAPPING, w->root[t], s * w->stride, &w->root[t]);

    if (!has(m, s)) {
        assert_int_equal(r, -ENOENT);
        assert_true(pblk_eq(before, w->root[t]));
        return;
    }
    assert_int_equal(r, 0);
    m->bits[s / 64] &= ~(1ull << (s % 64));
    m->n--;
}

/* A key to query: a slot's key, one next to it, or anything. */
static uint64_t query_key(struct world *w)
{
    uint64_t k = rnd_below(w->slots) * w->stride;

    switch (rnd_below(8)) {
    case 0:
        return k + 1;
    case 1:
        return k - 1; /* wraps at 0 to UINT64_MAX on purpose */
    case 2:
        return rnd();
    case 3:
        return rnd_below(2) ? 0 : UINT64_MAX;
    default:
        return k;
    }
}

static void op_lookups(struct world *w, unsigned t, unsigned kind)
{
    struct model *m = &w->m[t];
    uint64_t q = query_key(w), found, s;
    uint8_t v[512];
    int r;

    switch (kind) {
    case 0: /* exact */
        r = btree_lookup(w->pool, TREE_MAPPING, w->root[t], q, v);
        s = q / w->stride;
        if (q % w->stride == 0 && s < w->slots && has(m, s)) {
            assert_int_equal(r, 0);
            model_expect(w, m, s, v);
        } else {
            assert_int_equal(r, -ENOENT);
        }
        break;
    case 1: /* le */
        r = btree_lookup_le(w->pool, TREE_MAPPING, w->root[t], q, &found, v);
        s = q / w->stride;
        s = prev_set(m, s < w->slots ? s : w->slots - 1);
        goto compare;
    case 2: /* ge */
        r = btree_lookup_ge(w->pool, TREE_MAPPING, w->root[t], q, &found, v);
        s = next_set(w, m, q / w->stride + (q % w->stride != 0));
    compare:
        if (s == UINT64_MAX) {
            assert_int_equal(r, -ENOENT);
        } else {
            assert_int_equal(r, 0);
            if (found != s * w->stride)
                fail_msg("op %" PRIu64 ": %s(%" PRIu64 ") found %" PRIu64 ", expected %" PRIu64,
                         w->ops, kind == 1 ? "le" : "ge", q, found, s * w->stride);
            model_expect(w, m, s, v);
        }
        break;
    default:
        compare_walk(w, t, q, 1 + rnd_below(64));
        break;
    }
}

/* Snapshot events: take one (main shared into the second root), drop one, or drop main and
 * keep going with the snapshot, as a rollback would. */
static void op_snapshot(struct world *w)
{
    enum tree_type tt[2] = {TREE_MAPPING, TREE_MAPPING};

    if (w->ntrees == 2) {
        unsigned gone = (unsigned)rnd_below(2);
        assert_int_equal(btree_drop(w->pool, TREE_MAPPING, w->root[gone]), 0);
        if (gone == 0) {
            w->root[0] = w->root[1];
            model_copy(w, &w->m[0], &w->m[1]);
        }
        w->ntrees = 1;
        w->drops++;
        verify_refs(w->pool, w->root, tt, 1);
        return;
    }
    assert_int_equal(btree_share(w->pool, w->root[0]), 0);
    w->root[1] = w->root[0];
    model_copy(w, &w->m[1], &w->m[0]);
    w->ntrees = 2;
    w->shares++;
}

static void random_run(uint64_t seed, uint64_t nops, uint32_t vs, uint64_t slots)
{
    /* Phases steer the fill up and down, so the tree grows to three levels, shrinks back to
     * one leaf, and lives in between. */
    static const double targets[] = {0.97, 0.02, 0.6, 0.0, 0.3};
    struct world w = {.vs = vs, .slots = slots, .stride = UINT64_MAX / (slots - 1)};
    uint64_t phase_end = 0, phase = 0;

    rng_state = seed;
    use_mapping(vs);
    w.pool = fake_pool_create();
    fake_set_paranoid(w.pool, false);
    model_init(&w, &w.m[0]);
    model_init(&w, &w.m[1]);
    w.ntrees = 1;
    assert_int_equal(btree_create(w.pool, TREE_MAPPING, &w.root[0]), 0);

    for (w.ops = 0; w.ops < nops; w.ops++) {
        unsigned t = w.ntrees == 2 && rnd_below(4) == 0 ? 1 : 0;
        uint64_t dice = rnd_below(1000), s;
        double fill = (double)w.m[t].n / (double)slots;

        if (w.ops == phase_end) {
            w.target = targets[phase++ % ARRAY_LEN(targets)];
            phase_end += slots * 3 + rnd_below(slots * 3);
        }
        /* Paranoid mode (committed nodes re-hashed at each unlock) for a sample of ops. */
        fake_set_paranoid(w.pool, (w.ops & 15) == 0);
        if (dice < 500) {
            unsigned kind = (unsigned)rnd_below(100);
            bool grow = kind < (fill < w.target ? 85u : 15u);

            if (kind >= 95) {
                op_write(&w, t, rnd_below(slots)); /* replace or insert */
            } else if (kind >= 90) {
                op_remove(&w, t, rnd_below(slots)); /* remove or -ENOENT */
            } else if (grow) {
                s = pick(&w, &w.m[t], false);
                if (s != UINT64_MAX)
                    op_write(&w, t, s);
            } else {
                s = pick(&w, &w.m[t], true);
                if (s != UINT64_MAX)
                    op_remove(&w, t, s);
            }
        } else if (dice < 990) {
            op_lookups(&w, t, (unsigned)((dice - 500) * 4 / 490));
        } else if (dice < 998) {
            if (rnd_below(12) == 0)
                commit(&w);
        } else if (rnd_below(10) == 0) {
            op_snapshot(&w);
        }
        for (unsigned i = 0; i < w.ntrees; i++) {
            unsigned h = height(w.pool, w.root[i]);
            if (h > w.max_height)
                w.max_height = h;
            if (h == 1 && w.max_height >= 3 && w.shrinks_to_one == 0)
                w.shrinks_to_one = 1;
        }
        if (w.ops % 5000 == 0)
            full_check(&w);
    }
    full_check(&w);
    commit(&w);

    printf("btree random: value size %u, %" PRIu64 " ops, %" PRIu64 " commits, %" PRIu64
           " snapshots, %" PRIu64 " drops, %" PRIu64 " full checks, height up to %u\n",
           vs, w.ops, w.commits, w.shares, w.drops, w.checks, w.max_height);
    /* A full-length run must have been everywhere; a short one (BTREE_OPS) may not. */
    if (nops >= 500000) {
        assert_true(w.max_height >= 3);
        assert_true(w.shrinks_to_one);
        assert_true(w.shares > 0 && w.drops > 0);
    }

    /* Everything goes when the last roots are dropped. */
    for (unsigned i = 0; i < w.ntrees; i++)
        assert_int_equal(btree_drop(w.pool, TREE_MAPPING, w.root[i]), 0);
    fake_commit(w.pool);
    assert_int_equal(fake_held_blocks(w.pool), 0);
    assert_int_equal(fake_violations(w.pool), 0);
    fake_pool_destroy(w.pool);
    free(w.m[0].bits);
    free(w.m[0].v);
    free(w.m[1].bits);
    free(w.m[1].v);
}

static void test_random(void **state)
{
    const char *s = getenv("BTREE_SEED"), *o = getenv("BTREE_OPS");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
    uint64_t nops = o ? strtoull(o, NULL, 0) : 1000000;

    (void)state;
    printf("btree random: BTREE_SEED=%" PRIu64 " BTREE_OPS=%" PRIu64 "\n", seed, nops);
    fflush(stdout);
    /* Big values (seven a leaf) churn leaves; small ones (84 a leaf) fill internal nodes. */
    random_run(seed, nops / 2, 512, 4000);
    random_run(seed ^ 0x5555, nops - nops / 2, 40, 20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_le_ge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iterate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_height3_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_height3_256, setup, teardown),
        cmocka_unit_test_setup_teardown(test_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_share_uncommitted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_faults, setup, teardown),
        cmocka_unit_test(test_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
