/*
 * Power-cut sweep: the pool's writes stop reaching the members after the Nth write, and a
 * random subset of the writes made since the last flush is undone (a volatile disk cache
 * losing them), for many N across a random workload (writes, zero writes, discards, flushes,
 * FUA, volume creation, snapshots, snapshot deletes and rollbacks). After each cut the pool is
 * reopened and:
 *   - every sector of every volume reads as its value at the last flush acknowledged before
 *     the cut, or as a value written to it after that flush (never garbage, never another
 *     volume's data, never data from freed space);
 *   - every snapshot whose creation was acknowledged, and whose deletion was not, exists and
 *     reads exactly as its volume did when it was taken; one whose deletion was acknowledged
 *     is gone; one in between either is gone or reads exactly right;
 *   - pool_check passes.
 *
 *   CRASH_POINTS=n  cut points (default 300)     CRASH_SEED=n  replay a workload
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define MEMBER_BYTES (48ull << 20)
#define VOL_BYTES (6ull << 20)
#define SECTOR 512u
#define NSEC (VOL_BYTES / SECTOR)
#define NVOL 2
#define OPS 160
#define NSNAP 6 /* snapshots a workload takes at most */

#include "tests/volumes/sector_model.h"

struct run {
    struct scratch s;
    struct pool *pool;
    struct vol *v[NVOL];
    uint8_t *buf;
    bool existed[NVOL]; /* volume creation acknowledged (commits before returning) */
    struct snap {
        int vol;             /* -1: slot unused */
        char name[16];
        uint64_t *hash;      /* exact contents, per sector */
        bool created, gone;  /* creation / deletion acknowledged */
        bool deleting;       /* deletion started (maybe not acknowledged) */
    } snap[NSNAP];
    unsigned nsnap;
};

static const char *vname(int i) { return i == 0 ? "alpha" : "beta"; }

static void fresh_pool(struct run *r)
{
    scratch_make(&r->s, 2, MEMBER_BYTES);
    struct pool_settings st;
    pool_settings_default(&st);
    st.commit_interval_ms = 3600 * 1000; /* commits only where the workload asks */
    st.dirty_bound_bytes = 256 << 10;    /* ... or when dirty metadata passes this */
    assert_int_equal(pool_create("crash", r->s.paths, r->s.n, &st, false), 0);
}

static bool before_cut(bool cutting, uint64_t cut)
{
    return !cutting || pool_fault_writes() <= cut;
}

/* Snapshots commit: the snapshot holds exactly what reads return now, and all is durable. */
static void snapshot_op(struct run *r, struct model *m, int v, bool cutting, uint64_t cut)
{
    struct snap *sn = &r->snap[r->nsnap];
    snprintf(sn->name, sizeof(sn->name), "s%u", r->nsnap);
    r->nsnap++;
    sn->vol = v;
    sn->hash = malloc(NSEC * sizeof(uint64_t));
    memcpy(sn->hash, m->cur[v], NSEC * sizeof(uint64_t));
    struct vol_snap_spec spec = {vname(v), sn->name};
    assert_int_equal(vol_snapshot(r->pool, &spec, 1), 0);
    if (before_cut(cutting, cut)) {
        sn->created = true;
        model_flushed(m);
    }
}

static struct snap *pick_snap(struct run *r, struct rng *rng)
{
    struct snap *sn = &r->snap[rng_below(rng, r->nsnap)];
    return sn->deleting ? NULL : sn;
}

static void delete_snapshot_op(struct run *r, struct rng *rng, bool cutting, uint64_t cut)
{
    struct snap *sn = pick_snap(r, rng);
    if (!sn)
        return;
    char full[64];
    snprintf(full, sizeof(full), "%s@%s", vname(sn->vol), sn->name);
    sn->deleting = true;
    assert_int_equal(vol_delete(r->pool, full), 0);
    sn->gone = before_cut(cutting, cut);
}

/* A rollback commits: the volume reads as the snapshot, durably. Cut short, each sector may
 * read either way (a weaker claim than the truth, which is all or nothing). */
static void rollback_op(struct run *r, struct model *m, struct rng *rng, bool cutting,
                        uint64_t cut)
{
    struct snap *sn = pick_snap(r, rng);
    if (!sn)
        return;
    int v = sn->vol;
    char full[64];
    snprintf(full, sizeof(full), "%s@%s", vname(v), sn->name);
    assert_int_equal(vol_close(r->v[v]), 0); /* commits what it wrote */
    if (before_cut(cutting, cut))
        model_flushed(m);
    assert_int_equal(vol_rollback(r->pool, full), 0);
    for (uint64_t s = 0; s < NSEC; s++)
        model_set_later(m, v, s, sn->hash[s]);
    if (before_cut(cutting, cut))
        model_flushed(m);
    assert_int_equal(vol_open(r->pool, vname(v), 0, &r->v[v]), 0);
}

/* Runs the workload until it ends or the cut is passed. Returns whether the cut happened. */
static bool workload(struct run *r, struct model *m, uint64_t seed, uint64_t cut)
{
    struct rng rng = {seed};
    bool cutting = cut != UINT64_MAX;
    assert_int_equal(pool_open(r->s.paths, r->s.n, 0, &r->pool), 0);
    assert_int_equal(volumes_attach(r->pool), 0);
    int created = 0;
    for (int op = 0; op < OPS; op++) {
        if (cutting && pool_fault_writes() > cut)
            return true;
        if (created < NVOL && (op == 0 || rng_below(&rng, 20) == 0)) {
            /* Volume creation commits: acknowledged only if it completed before the cut. */
            int e = vol_create(r->pool, vname(created), VOL_BYTES, created ? 65536 : 4096, NULL);
            assert_int_equal(e, 0);
            assert_int_equal(vol_open(r->pool, vname(created), 0, &r->v[created]), 0);
            if (!cutting || pool_fault_writes() <= cut) {
                r->existed[created] = true;
                model_flushed(m); /* the commit made everything durable */
            }
            created++;
            continue;
        }
        int v = (int)rng_below(&rng, (uint64_t)created);
        unsigned sk = (unsigned)rng_below(&rng, 100);
        if (sk < 4 && r->nsnap < NSNAP) {
            snapshot_op(r, m, v, cutting, cut);
            continue;
        }
        if (sk < 6 && r->nsnap > 0) {
            delete_snapshot_op(r, &rng, cutting, cut);
            continue;
        }
        if (sk < 8 && r->nsnap > 0) {
            rollback_op(r, m, &rng, cutting, cut);
            continue;
        }
        uint64_t unit = rng_below(&rng, 3) == 0 ? SECTOR : 4096;
        uint64_t len = ROUND_UP(rng_below(&rng, 192 << 10) + 1, unit);
        uint64_t off = ROUND_DOWN(rng_below(&rng, VOL_BYTES - len), unit);
        unsigned kind = (unsigned)rng_below(&rng, 100);
        int e;
        if (kind < 55) {
            fill_random(&rng, r->buf, len);
            if (kind < 5)
                memset(r->buf, 0, len);
            uint32_t fl = kind % 11 == 0 ? VOL_FUA : 0;
            e = vol_pwrite(r->v[v], r->buf, len, off, fl);
            assert_int_equal(e, 0);
            model_write(m, v, off, r->buf, len, true);
            if (fl && (!cutting || pool_fault_writes() <= cut))
                model_flushed(m);
        } else if (kind < 75) {
            e = kind < 65 ? vol_discard(r->v[v], off, len)
                          : vol_write_zeroes(r->v[v], off, len, kind < 70 ? VOL_NO_UNMAP : 0);
            assert_int_equal(e, 0);
            model_write(m, v, off, NULL, len, true);
        } else if (kind < 90) {
            assert_int_equal(vol_flush(r->v[v]), 0);
            if (!cutting || pool_fault_writes() <= cut)
                model_flushed(m);
        } else {
            /* Reads while writing: what was acknowledged reads back now. */
            assert_int_equal(vol_pread(r->v[v], r->buf, len, off), 0);
            for (uint64_t s = 0; s < len / SECTOR; s++)
                if (hash_sector(r->buf + s * SECTOR) != m->cur[v][off / SECTOR + s])
                    fail_msg("volume %s: sector %llu does not read what was written", vname(v),
                             (unsigned long long)(off / SECTOR + s));
        }
    }
    return cutting && pool_fault_writes() > cut;
}

static void finish(struct run *r)
{
    for (int i = 0; i < NVOL; i++)
        if (r->v[i]) {
            vol_close(r->v[i]);
            r->v[i] = NULL;
        }
    pool_abandon(r->pool);
    r->pool = NULL;
}

static void verify(struct run *r, struct model *m, uint64_t cut)
{
    struct pool *pool;
    int e = pool_open(r->s.paths, r->s.n, 0, &pool);
    if (e != 0)
        fail_msg("cut %llu: reopen failed: %d", (unsigned long long)cut, e);
    assert_int_equal(volumes_attach(pool), 0);
    struct pool_check_report rep;
    if (pool_check(pool, &rep) != 0)
        fail_msg("cut %llu: pool check found %u problems", (unsigned long long)cut, rep.errors);
    for (int v = 0; v < NVOL; v++) {
        struct vol *h;
        e = vol_open(pool, vname(v), VOL_OPEN_RDONLY, &h);
        if (e == -ENOENT) {
            if (r->existed[v])
                fail_msg("cut %llu: volume %s was created and is gone", (unsigned long long)cut,
                         vname(v));
            continue;
        }
        assert_int_equal(e, 0);
        assert_int_equal(vol_pread(h, r->buf, VOL_BYTES, 0), 0);
        for (uint64_t s = 0; s < NSEC; s++) {
            if (!model_allows(m, v, s, hash_sector(r->buf + s * SECTOR)))
                fail_msg("cut %llu: volume %s sector %llu holds data never written there since "
                         "the last flush",
                         (unsigned long long)cut, vname(v), (unsigned long long)s);
        }
        vol_close(h);
    }
    for (unsigned i = 0; i < r->nsnap; i++) {
        struct snap *sn = &r->snap[i];
        char full[64];
        snprintf(full, sizeof(full), "%s@%s", vname(sn->vol), sn->name);
        struct vol *h;
        e = vol_open(pool, full, 0, &h);
        if (e == -ENOENT) {
            if (sn->created && !sn->deleting)
                fail_msg("cut %llu: snapshot %s was created and is gone",
                         (unsigned long long)cut, full);
            continue;
        }
        assert_int_equal(e, 0);
        if (sn->gone)
            fail_msg("cut %llu: snapshot %s was deleted and is back", (unsigned long long)cut,
                     full);
        assert_int_equal(vol_pread(h, r->buf, VOL_BYTES, 0), 0);
        for (uint64_t s = 0; s < NSEC; s++)
            if (hash_sector(r->buf + s * SECTOR) != sn->hash[s])
                fail_msg("cut %llu: snapshot %s sector %llu does not read as when it was taken",
                         (unsigned long long)cut, full, (unsigned long long)s);
        vol_close(h);
    }
    pool_close(pool);
}

static void snaps_reset(struct run *r)
{
    for (unsigned i = 0; i < r->nsnap; i++)
        free(r->snap[i].hash);
    memset(r->snap, 0, sizeof(r->snap));
    r->nsnap = 0;
}

static void test_sweep(void **state)
{
    (void)state;
    struct rng seeder;
    rng_seed_env(&seeder, "CRASH_SEED");
    uint64_t seed = rng_next(&seeder) | 1;
    struct run r = {0};
    r.buf = aligned_alloc(4096, VOL_BYTES);
    struct model *m = malloc(sizeof(*m));

    /* A run without a cut counts the writes the workload makes. */
    model_init(m);
    fresh_pool(&r);
    struct pool_fault counting = {.write_budget = -1};
    pool_fault_set(&counting);
    workload(&r, m, seed, UINT64_MAX);
    uint64_t total = pool_fault_writes();
    finish(&r);
    pool_fault_set(NULL);
    scratch_remove(&r.s);
    model_free(m);
    fprintf(stderr, "workload takes %u snapshots\n", r.nsnap);
    snaps_reset(&r);
    fprintf(stderr, "workload makes %llu writes\n", (unsigned long long)total);
    assert_true(total > 50);

    uint64_t points = env_u64("CRASH_POINTS", 300);
    for (uint64_t i = 0; i < points; i++) {
        uint64_t cut = total * i / points + rng_below(&seeder, MAX(total / points, (uint64_t)1));
        memset(r.existed, 0, sizeof(r.existed));
        model_init(m);
        fresh_pool(&r);
        struct pool_fault f = {.write_budget = (int64_t)cut, .lose_unflushed = true};
        pool_fault_set(&f);
        workload(&r, m, seed, cut);
        finish(&r);
        /* The disk's cache loses some of what was written since the last flush. */
        pool_fault_power_loss(seed ^ cut);
        pool_fault_set(NULL);
        verify(&r, m, cut);
        scratch_remove(&r.s);
        model_free(m);
        snaps_reset(&r);
    }
    free(m);
    free(r.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
