/*
 * Member I/O errors (pool_fault_set with fail_errno = EIO), as opposed to silent power cuts:
 *   - a write that hits the failing member completes with -EIO and is never acknowledged;
 *     what it would have changed reads as before, in place or copied;
 *   - once a member fails, no flush reports success, and closing says the changes were lost;
 *   - reads that fail return -EIO (open, volume reads, pool_check), never data or
 *     "corruption";
 *   - reopened without faults, the pool is consistent (pool_check) and every write
 *     acknowledged before a successful flush reads back. A sweep moves the failure over
 *     every kind of write (data, tree nodes, superblocks) of a random workload.
 *
 *   EIO_SEED=n  replay the sweep      EIO_POINTS=n  failure points (default 40)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define MEMBER_BYTES (32ull << 20)
#define VOL_BYTES (4ull << 20)
#define BASE_BYTES (1ull << 20) /* written and committed before any fault */
#define SECTOR 512u
#define NSEC (VOL_BYTES / SECTOR)
#define NVOL 2
#define OPS 120

static const char *vname(int i)
{
    return i == 0 ? "e4" : "e64";
}

struct env {
    struct scratch s;
    uint8_t *base[NVOL]; /* the committed contents of [0, BASE_BYTES) */
    uint8_t *buf, *rbuf;
};

static void base_pattern(uint8_t *p, int v)
{
    struct rng r = {0xba5e0000u + (uint64_t)v};
    fill_random(&r, p, BASE_BYTES);
}

/* A fresh pool with two volumes whose first MiB holds known data, committed and closed. */
static void fresh_pool(struct env *e)
{
    scratch_make(&e->s, 2, MEMBER_BYTES);
    struct pool_settings st;
    pool_settings_default(&st);
    st.commit_interval_ms = 3600 * 1000; /* commits only where the test asks */
    st.dirty_bound_bytes = 256 << 10;
    assert_int_equal(pool_create("eio", e->s.paths, e->s.n, &st, false), 0);
    struct pool *pool;
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &pool), 0);
    assert_int_equal(volumes_attach(pool), 0);
    for (int i = 0; i < NVOL; i++) {
        assert_int_equal(vol_create(pool, vname(i), VOL_BYTES, i ? 65536 : 4096, NULL), 0);
        struct vol *v;
        assert_int_equal(vol_open(pool, vname(i), 0, &v), 0);
        assert_int_equal(vol_pwrite(v, e->base[i], BASE_BYTES, 0, 0), 0);
        assert_int_equal(vol_close(v), 0);
    }
    assert_int_equal(pool_close(pool), 0);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    for (int i = 0; i < NVOL; i++) {
        e->base[i] = malloc(BASE_BYTES);
        base_pattern(e->base[i], i);
    }
    e->buf = aligned_alloc(4096, VOL_BYTES);
    e->rbuf = aligned_alloc(4096, VOL_BYTES);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    pool_fault_set(NULL);
    for (int i = 0; i < NVOL; i++)
        free(e->base[i]);
    free(e->buf);
    free(e->rbuf);
    free(e);
    return 0;
}

static struct pool *open_attached(struct env *e)
{
    struct pool *pool;
    int r = pool_open(e->s.paths, e->s.n, 0, &pool);
    if (r != 0)
        fail_msg("pool_open: %s", strerror(-r));
    assert_int_equal(volumes_attach(pool), 0);
    return pool;
}

/* Reopened without faults: consistent, and the committed base reads back (plus, beyond it,
 * zeros, unless @beyond_may_change). */
static void check_reopened(struct env *e, bool beyond_may_change)
{
    struct pool *pool = open_attached(e);
    struct pool_check_report rep;
    int r = pool_check(pool, &rep);
    if (r != 0)
        fail_msg("pool check after the errors: %d (%u problems)", r, rep.errors);
    for (int i = 0; i < NVOL; i++) {
        struct vol *v;
        assert_int_equal(vol_open(pool, vname(i), VOL_OPEN_RDONLY, &v), 0);
        assert_int_equal(vol_pread(v, e->rbuf, VOL_BYTES, 0), 0);
        if (memcmp(e->rbuf, e->base[i], BASE_BYTES) != 0)
            fail_msg("volume %s: committed data does not read back", vname(i));
        if (!beyond_may_change && !buf_is_zero(e->rbuf + BASE_BYTES, VOL_BYTES - BASE_BYTES))
            fail_msg("volume %s: a write that failed left data behind", vname(i));
        assert_int_equal(vol_close(v), 0);
    }
    assert_int_equal(pool_close(pool), 0);
}

/* ------------------------------------------------------------------------------------------
 * Every write fails
 */

static void test_write_eio(void **state)
{
    struct env *e = *state;
    fresh_pool(e);
    struct pool_fault f = {.write_budget = 0, .fail_errno = EIO};
    pool_fault_set(&f);
    struct pool *pool = open_attached(e);
    struct vol *v;
    assert_int_equal(vol_open(pool, vname(1), 0, &v), 0);
    fill_random(&(struct rng){7}, e->buf, VOL_BYTES);

    /* Into unmapped grains (new runs), over committed grains referenced once (in place),
     * partial grains (merged), and with FUA. */
    assert_int_equal(vol_pwrite(v, e->buf, 256 << 10, 2 << 20, 0), -EIO);
    assert_int_equal(vol_pwrite(v, e->buf, 128 << 10, 0, 0), -EIO);
    assert_int_equal(vol_pwrite(v, e->buf, 4096, 65536 + 8192, 0), -EIO);
    assert_int_equal(vol_pwrite(v, e->buf, 1024, 512, 0), -EIO);
    assert_int_equal(vol_pwrite(v, e->buf, 65536, 3 << 20, VOL_FUA), -EIO);
    /* Nothing changed: the same handle reads what was there. */
    assert_int_equal(vol_pread(v, e->rbuf, VOL_BYTES, 0), 0);
    if (memcmp(e->rbuf, e->base[1], BASE_BYTES) != 0 ||
        !buf_is_zero(e->rbuf + BASE_BYTES, VOL_BYTES - BASE_BYTES))
        fail_msg("a write that failed changed what the volume reads");
    assert_int_equal(vol_flush(v), -EIO);
    vol_close(v);
    /* The failed flush poisoned the pool: closing says so. */
    assert_int_equal(pool_close(pool), -EIO);
    pool_fault_set(NULL);
    check_reopened(e, false);
    scratch_remove(&e->s);
}

/* Writes are acknowledged while the budget lasts; the flush that needs more fails, and the
 * close must report that acknowledged changes were lost. */
static void test_flush_eio_after_ack(void **state)
{
    struct env *e = *state;
    fresh_pool(e);
    /* One write: the data of one grain. The commit that follows cannot be written. */
    struct pool_fault f = {.write_budget = 1, .fail_errno = EIO};
    pool_fault_set(&f);
    struct pool *pool = open_attached(e);
    struct vol *v;
    assert_int_equal(vol_open(pool, vname(1), 0, &v), 0);
    memset(e->buf, 0x77, 65536);
    assert_int_equal(vol_pwrite(v, e->buf, 65536, 2 << 20, 0), 0);
    assert_int_equal(pool_fault_writes(), 1);
    assert_int_equal(vol_flush(v), -EIO);
    /* The pool is poisoned now: later changes fail too, even those needing no I/O yet. */
    int r = vol_pwrite(v, e->buf, 65536, 3 << 20, 0);
    assert_int_equal(r, -EIO);
    assert_true(vol_close(v) < 0);
    r = pool_close(pool);
    if (r == 0)
        fail_msg("pool_close reported success although acknowledged writes were never "
                 "committed");
    pool_fault_set(NULL);
    check_reopened(e, false);
    scratch_remove(&e->s);
}

/* ------------------------------------------------------------------------------------------
 * Reads fail
 */

static void snap(const struct scratch *s, uint32_t *crc)
{
    static uint8_t b[1 << 20];
    for (unsigned i = 0; i < s->n; i++) {
        FILE *fp = fopen(s->paths[i], "rb");
        assert_non_null(fp);
        uint32_t c = 0;
        size_t n;
        while ((n = fread(b, 1, sizeof(b), fp)) > 0)
            c = crc32c(c, b, n);
        fclose(fp);
        crc[i] = c;
    }
}

static void test_read_eio_open(void **state)
{
    struct env *e = *state;
    fresh_pool(e);
    uint32_t before[2], after[2];
    snap(&e->s, before);
    struct pool_fault f = {.write_budget = 0, .fail_errno = EIO, .fail_reads = true};
    pool_fault_set(&f);
    struct pool *pool = NULL;
    int r = pool_open(e->s.paths, e->s.n, 0, &pool);
    if (r == 0)
        pool_close(pool);
    assert_int_equal(r, -EIO);
    r = pool_open(e->s.paths, e->s.n, POOL_OPEN_RDONLY, &pool);
    if (r == 0)
        pool_close(pool);
    assert_int_equal(r, -EIO);
    pool_fault_set(NULL);
    snap(&e->s, after);
    assert_memory_equal(before, after, sizeof(before));
    check_reopened(e, false);
    scratch_remove(&e->s);
}

/* Opens with reads failing once one write has been made; makes that write to a free block of
 * member 1 (data I/O outside every volume changes nothing), so the pool stays clean. */
static struct pool *open_then_fail_reads(struct env *e)
{
    struct pool_fault f = {.write_budget = 1, .fail_errno = EIO, .fail_reads = true};
    pool_fault_set(&f);
    struct pool *pool = open_attached(e);
    struct pool_member_info mi;
    pool_member_info(pool, 1, &mi);
    memset(e->buf, 0, 4096);
    assert_int_equal(pool_data_pwrite(pool, pblk_make(1, mi.blocks - 2), 0, e->buf, 4096), 0);
    assert_int_equal(pool_fault_writes(), 1);
    return pool;
}

static void test_read_eio_volume(void **state)
{
    struct env *e = *state;
    fresh_pool(e);
    /* Open the volumes (catalog read) while reads still work. */
    struct pool_fault f = {.write_budget = 1, .fail_errno = EIO, .fail_reads = true};
    pool_fault_set(&f);
    struct pool *pool = open_attached(e);
    struct vol *v[NVOL];
    for (int i = 0; i < NVOL; i++) {
        assert_int_equal(vol_open(pool, vname(i), 0, &v[i]), 0);
        assert_int_equal(vol_pread(v[i], e->rbuf, BASE_BYTES, 0), 0);
        assert_memory_equal(e->rbuf, e->base[i], BASE_BYTES);
    }
    /* One acknowledged write uses the budget; from then on reads fail. */
    memset(e->buf, 0x33, 65536);
    assert_int_equal(vol_pwrite(v[1], e->buf, 65536, 2 << 20, 0), 0);
    for (int i = 0; i < NVOL; i++) {
        assert_int_equal(vol_pread(v[i], e->rbuf, 8192, 0), -EIO);
        assert_int_equal(vol_pread(v[i], e->rbuf, 512, 4096 + 512), -EIO);
    }
    assert_int_equal(vol_pread(v[1], e->rbuf, 65536, 2 << 20), -EIO);
    /* A partial-grain write must read the old grain to merge it: it fails, unacknowledged. */
    assert_int_equal(vol_pwrite(v[1], e->buf, 4096, 8192, 0), -EIO);
    for (int i = 0; i < NVOL; i++)
        vol_close(v[i]);
    pool_close(pool);
    pool_fault_set(NULL);
    check_reopened(e, true);
    scratch_remove(&e->s);
}

static void test_read_eio_check(void **state)
{
    struct env *e = *state;
    fresh_pool(e);
    struct pool *pool = open_then_fail_reads(e);
    /* The catalog and mapping trees are not cached: the check must say it could not read
     * them (-EIO), not that they are damaged. */
    struct pool_check_report rep;
    int r = pool_check(pool, &rep);
    if (r != -EIO)
        fail_msg("pool_check with failing reads returned %d (%s), expected -EIO", r, strerror(-r));
    /* Opening a volume reads the catalog. */
    struct vol *v = NULL;
    r = vol_open(pool, vname(0), 0, &v);
    if (r == 0)
        vol_close(v);
    assert_int_equal(r, -EIO);
    pool_abandon(pool);
    pool_fault_set(NULL);
    check_reopened(e, false);
    scratch_remove(&e->s);
}

/* ------------------------------------------------------------------------------------------
 * The sweep: the first failing write moves over a whole workload
 */

#include "tests/volumes/sector_model.h"

/* The volumes start with their base contents, durably. */
static void model_init_base(struct env *e, struct model *m)
{
    model_init(m);
    for (int v = 0; v < NVOL; v++)
        for (uint64_t s = 0; s < NSEC && s * SECTOR < BASE_BYTES; s++)
            model_set(m, v, s, hash_sector(e->base[v] + s * SECTOR));
}

/* Runs the workload against a pool whose writes fail after @budget; returns the number of
 * writes it made when @budget is -1. */
static uint64_t sweep_run(struct env *e, struct model *m, uint64_t seed, int64_t budget)
{
    struct pool_fault f = {.write_budget = budget, .fail_errno = EIO};
    pool_fault_set(&f);
    struct pool *pool = open_attached(e);
    struct vol *v[NVOL];
    for (int i = 0; i < NVOL; i++)
        assert_int_equal(vol_open(pool, vname(i), 0, &v[i]), 0);
    struct rng rng = {seed};
    bool failed = false;
    for (int op = 0; op < OPS; op++) {
        int vi = (int)rng_below(&rng, NVOL);
        uint64_t unit = rng_below(&rng, 3) == 0 ? SECTOR : 4096;
        uint64_t len = ROUND_UP(rng_below(&rng, 192 << 10) + 1, unit);
        uint64_t off = ROUND_DOWN(rng_below(&rng, VOL_BYTES - len), unit);
        unsigned kind = (unsigned)rng_below(&rng, 100);
        int r;
        if (kind < 60) {
            fill_random(&rng, e->buf, len);
            uint32_t fl = kind % 9 == 0 ? VOL_FUA : 0;
            r = vol_pwrite(v[vi], e->buf, len, off, fl);
            model_write(m, vi, off, e->buf, len, r == 0);
            if (r == 0 && fl)
                model_flushed(m);
        } else if (kind < 80) {
            r = kind < 70 ? vol_discard(v[vi], off, len)
                          : vol_write_zeroes(v[vi], off, len, kind < 75 ? VOL_NO_UNMAP : 0);
            model_write(m, vi, off, NULL, len, r == 0);
        } else {
            r = vol_flush(v[vi]);
            if (r == 0 && failed)
                fail_msg("budget %lld: a flush succeeded after the member had failed",
                         (long long)budget);
            if (r == 0)
                model_flushed(m);
        }
        if (r != 0 && r != -EIO)
            fail_msg("budget %lld: op %d failed with %d (%s), expected -EIO", (long long)budget, op,
                     r, strerror(-r));
        failed |= r != 0;
    }
    for (int i = 0; i < NVOL; i++)
        vol_close(v[i]);
    int r = pool_close(pool);
    if (budget >= 0 && failed && r == 0)
        fail_msg("budget %lld: pool_close reported success after the member had failed",
                 (long long)budget);
    uint64_t writes = pool_fault_writes();
    pool_fault_set(NULL);
    return writes;
}

static void sweep_verify(struct env *e, struct model *m, int64_t budget)
{
    struct pool *pool = open_attached(e);
    struct pool_check_report rep;
    int r = pool_check(pool, &rep);
    if (r != 0)
        fail_msg("budget %lld: pool check: %d (%u problems)", (long long)budget, r, rep.errors);
    for (int vi = 0; vi < NVOL; vi++) {
        struct vol *v;
        assert_int_equal(vol_open(pool, vname(vi), VOL_OPEN_RDONLY, &v), 0);
        assert_int_equal(vol_pread(v, e->rbuf, VOL_BYTES, 0), 0);
        for (uint64_t s = 0; s < NSEC; s++) {
            if (!model_allows(m, vi, s, hash_sector(e->rbuf + s * SECTOR)))
                fail_msg("budget %lld: volume %s sector %llu holds data neither flushed nor "
                         "written since",
                         (long long)budget, vname(vi), (unsigned long long)s);
        }
        assert_int_equal(vol_close(v), 0);
    }
    assert_int_equal(pool_close(pool), 0);
}

static void test_write_eio_sweep(void **state)
{
    struct env *e = *state;
    struct rng seeder;
    rng_seed_env(&seeder, "EIO_SEED");
    uint64_t seed = rng_next(&seeder) | 1;
    struct model *m = calloc(1, sizeof(*m));

    fresh_pool(e);
    model_init_base(e, m);
    uint64_t total = sweep_run(e, m, seed, -1);
    model_free(m);
    scratch_remove(&e->s);
    fprintf(stderr, "the workload makes %llu writes\n", (unsigned long long)total);
    assert_true(total > 40);

    uint64_t points = env_u64("EIO_POINTS", 40);
    for (uint64_t i = 0; i < points; i++) {
        int64_t budget =
            (int64_t)(total * i / points + rng_below(&seeder, MAX(total / points, (uint64_t)1)));
        fresh_pool(e);
        model_init_base(e, m);
        sweep_run(e, m, seed, budget);
        sweep_verify(e, m, budget);
        model_free(m);
        scratch_remove(&e->s);
    }
    free(m);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_write_eio),       T(test_flush_eio_after_ack), T(test_read_eio_open),
        T(test_read_eio_volume), T(test_read_eio_check),      T(test_write_eio_sweep),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
