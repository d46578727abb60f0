/*
 * A pool filled to the last grain. A small pool (two members of 24 MiB) is filled with random
 * data through a volume until writes fail with -ENOSPC, then:
 *   - the failing write is not acknowledged and changes nothing (its range reads as before);
 *   - every write acknowledged before reads back, after a flush and after a reopen;
 *   - the flush (a commit) succeeds and pool_check passes: metadata comes from the reserve;
 *   - overwriting in place, write_zeroes, discard and deleting a volume all work on the full
 *     pool; the space they free becomes writable after the next commit, not before;
 *   - pool_stat reports low_space above the threshold and not below it.
 *
 *   FULL_SEED=n  replay a run
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define MEMBER_BYTES (24ull << 20)
#define GRAIN (64u << 10)
#define FILL_BYTES (64ull << 20) /* virtual: more than the pool holds */
#define VICTIM_BYTES (8ull << 20)
#define CHUNK (1ull << 20)

struct mvol {
    const char *name;
    uint64_t size;
    uint8_t *model;
    struct vol *v;
};

struct env {
    struct scratch s;
    struct pool *pool;
    struct mvol fill, victim;
    struct rng rng;
    uint8_t *buf, *rbuf;
};

static void compare(struct env *e, struct mvol *m, uint64_t off, uint64_t len)
{
    for (uint64_t done = 0; done < len; done += CHUNK) {
        uint64_t n = MIN(CHUNK, len - done);
        int r = vol_pread(m->v, e->rbuf, n, off + done);
        if (r != 0)
            fail_msg("volume %s: read at %llu: %s", m->name, (unsigned long long)(off + done),
                     strerror(-r));
        if (memcmp(e->rbuf, m->model + off + done, n) != 0)
            fail_msg("volume %s: range %llu+%llu does not read back what was acknowledged", m->name,
                     (unsigned long long)(off + done), (unsigned long long)n);
    }
}

static void check_pool(struct env *e)
{
    assert_int_equal(pool_commit(e->pool), 0);
    struct pool_check_report rep;
    int r = pool_check(e->pool, &rep);
    if (r != 0)
        fail_msg("pool check: %d (%u problems)", r, rep.errors);
}

/* Writes [off, off + len) of @m with fresh random data; on success the model follows. */
static int write_random(struct env *e, struct mvol *m, uint64_t off, uint64_t len)
{
    fill_random(&e->rng, e->buf, len);
    int r = vol_pwrite(m->v, e->buf, len, off, 0);
    if (r == 0)
        memcpy(m->model + off, e->buf, len);
    return r;
}

static void stat_now(struct env *e, struct pool_stats *st)
{
    pool_stat(e->pool, st);
}

/* Fills @m from @from in pieces of @piece bytes until -ENOSPC; returns the offset reached.
 * The write that fails must leave its range as it was. */
static uint64_t fill_until_full(struct env *e, struct mvol *m, uint64_t from, uint64_t piece)
{
    uint64_t off = from;
    for (; off + piece <= m->size; off += piece) {
        int r = write_random(e, m, off, piece);
        if (r == -ENOSPC) {
            compare(e, m, off, piece);
            return off;
        }
        if (r != 0)
            fail_msg("write at %llu: %s", (unsigned long long)off, strerror(-r));
    }
    fail_msg("volume %s filled to its end without the pool running out", m->name);
    return off;
}

static void test_full_pool(void **state)
{
    (void)state;
    struct env *e = calloc(1, sizeof(*e));
    rng_seed_env(&e->rng, "FULL_SEED");
    e->buf = aligned_alloc(4096, CHUNK);
    e->rbuf = aligned_alloc(4096, CHUNK);
    scratch_make(&e->s, 2, MEMBER_BYTES);
    struct pool_settings set;
    pool_settings_default(&set);
    set.commit_interval_ms = 3600 * 1000; /* commits only where the test asks for them */
    set.low_space_pct = 80;
    assert_int_equal(pool_create("full", e->s.paths, e->s.n, &set, false), 0);
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);

    e->fill = (struct mvol){.name = "fill", .size = FILL_BYTES};
    e->victim = (struct mvol){.name = "victim", .size = VICTIM_BYTES};
    struct mvol *vols[] = {&e->fill, &e->victim};
    for (unsigned i = 0; i < 2; i++) {
        vols[i]->model = calloc(1, vols[i]->size);
        assert_int_equal(vol_create(e->pool, vols[i]->name, vols[i]->size, GRAIN, NULL), 0);
        assert_int_equal(vol_open(e->pool, vols[i]->name, 0, &vols[i]->v), 0);
    }
    struct pool_stats st;
    stat_now(e, &st);
    assert_false(st.low_space);
    assert_true(st.reserve_blocks > 0);

    /* The victim, to be deleted later, then the fill: 1 MiB pieces, then grains. */
    for (uint64_t off = 0; off < VICTIM_BYTES; off += CHUNK)
        assert_int_equal(write_random(e, &e->victim, off, CHUNK), 0);
    uint64_t end = fill_until_full(e, &e->fill, 0, CHUNK);
    end = fill_until_full(e, &e->fill, end, GRAIN);
    fprintf(stderr, "pool full after %llu MiB of the fill volume\n",
            (unsigned long long)(end >> 20));
    /* Smaller writes into unmapped grains need a grain each: refused as well. */
    uint8_t small[4096];
    memset(small, 0x5a, sizeof(small));
    assert_int_equal(vol_pwrite(e->fill.v, small, sizeof(small), end + GRAIN, 0), -ENOSPC);
    compare(e, &e->fill, end, 2 * GRAIN);

    stat_now(e, &st);
    assert_true(st.low_space);
    assert_true(st.free_blocks < st.reserve_blocks + GRAIN / CS_BLOCK_SIZE);

    /* The commit on a full pool works (its metadata comes from the reserve), and everything
     * acknowledged is there. */
    assert_int_equal(vol_flush(e->fill.v), 0);
    assert_int_equal(vol_flush(e->victim.v), 0);
    check_pool(e);
    compare(e, &e->fill, 0, FILL_BYTES);
    compare(e, &e->victim, 0, VICTIM_BYTES);

    /* Overwrite in place: whole pieces, single blocks, and 512-byte sectors. */
    assert_int_equal(write_random(e, &e->fill, 0, CHUNK), 0);
    assert_int_equal(write_random(e, &e->fill, 3 * CHUNK + 8192, 4096), 0);
    fill_random(&e->rng, e->buf, 512);
    assert_int_equal(vol_pwrite(e->fill.v, e->buf, 512, 5 * CHUNK + 1536, 0), 0);
    memcpy(e->fill.model + 5 * CHUNK + 1536, e->buf, 512);
    compare(e, &e->fill, 0, 6 * CHUNK);

    /* Discard and write_zeroes free space, but only after the commit. */
    stat_now(e, &st);
    uint64_t free_before = st.free_blocks;
    assert_int_equal(vol_discard(e->fill.v, 8 * CHUNK, 4 * CHUNK), 0);
    memset(e->fill.model + 8 * CHUNK, 0, 4 * CHUNK);
    assert_int_equal(vol_write_zeroes(e->fill.v, 12 * CHUNK, CHUNK, 0), 0);
    memset(e->fill.model + 12 * CHUNK, 0, CHUNK);
    /* (Runs committed before are known free only when the commit folds their counts.) */
    stat_now(e, &st);
    assert_true(st.free_blocks <= free_before);
    uint64_t gen = st.generation;
    /* A write into the freed range needs that space: it may fail with -ENOSPC, or the engine
     * may commit to make it allocatable and go on; it must never take the space before a
     * commit (a crash would then show the new data through the committed map). */
    int r = write_random(e, &e->fill, 8 * CHUNK, CHUNK);
    fprintf(stderr, "write into space freed but not committed: %s\n",
            r == 0 ? "the engine committed first" : strerror(-r));
    if (r == -ENOSPC) {
        compare(e, &e->fill, 8 * CHUNK, 5 * CHUNK);
        assert_int_equal(vol_flush(e->fill.v), 0);
        stat_now(e, &st);
        assert_true(st.free_blocks >= free_before + 4 * CHUNK / CS_BLOCK_SIZE);
        assert_int_equal(st.pending_free_blocks, 0);
        assert_int_equal(write_random(e, &e->fill, 8 * CHUNK, CHUNK), 0);
    } else {
        assert_int_equal(r, 0);
        stat_now(e, &st);
        if (st.generation <= gen)
            fail_msg("a write used space freed in the open transaction before it committed");
    }
    for (uint64_t off = 9 * CHUNK; off < 12 * CHUNK; off += CHUNK)
        assert_int_equal(write_random(e, &e->fill, off, CHUNK), 0);
    check_pool(e);

    /* Deleting a volume on the full pool. */
    end = fill_until_full(e, &e->fill, end, GRAIN);
    assert_int_equal(vol_flush(e->fill.v), 0);
    assert_int_equal(vol_close(e->victim.v), 0);
    e->victim.v = NULL;
    assert_int_equal(vol_delete(e->pool, "victim"), 0);
    stat_now(e, &st);
    assert_true(st.free_blocks >= st.reserve_blocks + VICTIM_BYTES / CS_BLOCK_SIZE);
    uint64_t end2 = fill_until_full(e, &e->fill, end, CHUNK);
    assert_true(end2 + CHUNK >= end + VICTIM_BYTES);
    end2 = fill_until_full(e, &e->fill, end2, GRAIN);
    assert_int_equal(vol_flush(e->fill.v), 0);
    check_pool(e);
    stat_now(e, &st);
    assert_true(st.low_space);

    /* Below the threshold again once most of it is discarded and committed. */
    assert_int_equal(vol_discard(e->fill.v, 0, end2 / 2), 0);
    memset(e->fill.model, 0, end2 / 2);
    assert_int_equal(vol_flush(e->fill.v), 0);
    stat_now(e, &st);
    assert_false(st.low_space);

    /* What was acknowledged survives a reopen, and the pool checks clean. */
    assert_int_equal(vol_close(e->fill.v), 0);
    assert_int_equal(pool_close(e->pool), 0);
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
    assert_int_equal(vol_open(e->pool, "fill", VOL_OPEN_RDONLY, &e->fill.v), 0);
    compare(e, &e->fill, 0, FILL_BYTES);
    check_pool(e);
    assert_int_equal(vol_open(e->pool, "victim", 0, &e->victim.v), -ENOENT);
    assert_int_equal(vol_close(e->fill.v), 0);
    assert_int_equal(pool_close(e->pool), 0);

    scratch_remove(&e->s);
    free(e->fill.model);
    free(e->victim.model);
    free(e->buf);
    free(e->rbuf);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
