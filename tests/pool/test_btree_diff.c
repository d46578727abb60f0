/*
 * btree_diff against models: a tree is shared (O(1)) into a second root, both are changed at
 * random (few or many changes, small or large values), and the differences btree_diff
 * reports must be exactly those between the two models, in key order. Also: a tree against
 * itself, against an empty tree, and commits in between (shared nodes become committed ones).
 *
 *   DIFF_SEED=n  replay
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"

#define TREE_TEST 6
#define KEYSPACE 200000u

struct val {
    uint64_t a, b;
};

static const struct btree_type test_type = {
    .type = TREE_TEST, .value_size = sizeof(struct val), .name = "difftest"};

struct model {
    bool has[KEYSPACE];
    struct val v[KEYSPACE];
};

struct diff_ctx {
    struct model *ma, *mb;
    uint64_t next;  /* keys below this were checked */
    uint64_t calls;
};

/* Every key between the last reported one and this one must be equal in the models. */
static void assert_same_until(struct diff_ctx *d, uint64_t key)
{
    for (uint64_t k = d->next; k < key && k < KEYSPACE; k++) {
        bool same = d->ma->has[k] == d->mb->has[k] &&
                    (!d->ma->has[k] || memcmp(&d->ma->v[k], &d->mb->v[k], sizeof(struct val)) == 0);
        if (!same)
            fail_msg("key %llu differs but was not reported", (unsigned long long)k);
    }
}

static int on_diff(void *ctx, uint64_t key, const void *va, const void *vb)
{
    struct diff_ctx *d = ctx;
    if (key < d->next)
        fail_msg("key %llu reported out of order", (unsigned long long)key);
    assert_same_until(d, key);
    assert_true(key < KEYSPACE);
    if ((va != NULL) != d->ma->has[key] || (vb != NULL) != d->mb->has[key])
        fail_msg("key %llu: presence reported wrong", (unsigned long long)key);
    if (va && memcmp(va, &d->ma->v[key], sizeof(struct val)))
        fail_msg("key %llu: value a wrong", (unsigned long long)key);
    if (vb && memcmp(vb, &d->mb->v[key], sizeof(struct val)))
        fail_msg("key %llu: value b wrong", (unsigned long long)key);
    if (va && vb && !memcmp(va, vb, sizeof(struct val)))
        fail_msg("key %llu reported with equal values", (unsigned long long)key);
    d->next = key + 1;
    d->calls++;
    return 0;
}

static void change(struct pool *pool, pblk_t *root, struct model *m, struct rng *rng,
                   unsigned n, uint64_t span)
{
    uint64_t base = rng_below(rng, KEYSPACE - span);
    for (unsigned i = 0; i < n; i++) {
        uint64_t k = base + rng_below(rng, span);
        pblk_t nr;
        if (m->has[k] && rng_below(rng, 3) == 0) {
            assert_int_equal(btree_remove(pool, TREE_TEST, *root, k, &nr), 0);
            m->has[k] = false;
        } else {
            struct val v = {rng_next(rng), k};
            assert_int_equal(btree_insert(pool, TREE_TEST, *root, k, &v, &nr), 0);
            m->has[k] = true;
            m->v[k] = v;
        }
        *root = nr;
    }
}

static void check_diff(struct pool *pool, pblk_t a, pblk_t b, struct model *ma, struct model *mb)
{
    struct diff_ctx d = {ma, mb, 0, 0};
    assert_int_equal(btree_diff(pool, TREE_TEST, a, b, on_diff, &d), 0);
    assert_same_until(&d, KEYSPACE);
}

static void test_diff(void **state)
{
    (void)state;
    struct scratch s;
    scratch_make(&s, 1, 256ull << 20);
    btree_type_register(&test_type);
    assert_int_equal(pool_create("diff", s.paths, 1, NULL, false), 0);
    struct pool *pool;
    assert_int_equal(pool_open(s.paths, 1, 0, &pool), 0);
    struct rng rng;
    rng_seed_env(&rng, "DIFF_SEED");
    struct model *ma = calloc(1, sizeof(*ma)), *mb = calloc(1, sizeof(*mb));
    pool_md_lock(pool);
    pblk_t a, empty;
    assert_int_equal(btree_create(pool, TREE_TEST, &a), 0);
    assert_int_equal(btree_create(pool, TREE_TEST, &empty), 0);
    change(pool, &a, ma, &rng, 60000, KEYSPACE - 1);
    check_diff(pool, a, a, ma, ma);
    struct model *me = calloc(1, sizeof(*me));
    check_diff(pool, a, empty, ma, me);
    check_diff(pool, empty, a, me, ma);
    for (int round = 0; round < 40; round++) {
        /* b starts as a share of a; each side then changes on its own. */
        pblk_t b = a;
        assert_int_equal(btree_share(pool, a), 0);
        memcpy(mb, ma, sizeof(*mb));
        unsigned na = (unsigned)rng_below(&rng, round % 4 == 0 ? 2000 : 20);
        unsigned nb = (unsigned)rng_below(&rng, round % 4 == 1 ? 2000 : 20);
        uint64_t span = round % 2 ? 500 : KEYSPACE - 1;
        change(pool, &a, ma, &rng, na, span);
        change(pool, &b, mb, &rng, nb, span);
        check_diff(pool, a, b, ma, mb);
        check_diff(pool, b, a, mb, ma);
        if (round % 5 == 0)
            assert_int_equal(pool_commit_locked(pool), 0);
        assert_int_equal(btree_drop(pool, TREE_TEST, b), 0);
    }
    assert_int_equal(btree_drop(pool, TREE_TEST, a), 0);
    assert_int_equal(btree_drop(pool, TREE_TEST, empty), 0);
    pool_md_unlock(pool);
    /* No root holds these trees: what they used is free again after the commit. */
    assert_int_equal(pool_commit(pool), 0);
    struct pool_check_report rep;
    assert_int_equal(pool_check(pool, &rep), 0);
    assert_int_equal(pool_close(pool), 0);
    scratch_remove(&s);
    free(ma);
    free(mb);
    free(me);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_diff)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
