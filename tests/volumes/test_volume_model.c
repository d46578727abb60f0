/*
 * The volume API against a flat byte-array model of each volume: random writes (data and
 * zeros, aligned and 512-byte aligned), write_zeroes with and without NO_UNMAP, discards,
 * flushes, resizes, reopens of the whole pool, and requests in flight together. Every read
 * is compared with the model; after commits `pool_check` (reference counts recomputed from
 * the trees) must pass.
 *
 *   VOL_SEED=n  replay a run      VOL_OPS=n  operations (default 20000)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define MEMBER_BYTES (384ull << 20)
#define NVOL 3

struct mvol {
    char name[32];
    uint64_t size;
    uint32_t grain;
    uint8_t *model;
    struct vol *v;
};

struct env {
    struct scratch s;
    struct pool *pool;
    struct mvol vols[NVOL];
    struct rng rng;
    uint8_t *buf, *rbuf;
};

static void open_pool(struct env *e)
{
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
    for (int i = 0; i < NVOL; i++)
        assert_int_equal(vol_open(e->pool, e->vols[i].name, 0, &e->vols[i].v), 0);
}

static void close_pool(struct env *e)
{
    for (int i = 0; i < NVOL; i++) {
        assert_int_equal(vol_close(e->vols[i].v), 0);
        e->vols[i].v = NULL;
    }
    assert_int_equal(pool_close(e->pool), 0);
    e->pool = NULL;
}

static void check_pool(struct env *e)
{
    assert_int_equal(pool_commit(e->pool), 0);
    struct pool_check_report rep;
    int r = pool_check(e->pool, &rep);
    if (r != 0)
        fail_msg("pool check failed: %d problems", rep.errors);
}

static void compare(struct env *e, struct mvol *m, uint64_t off, uint64_t len)
{
    assert_int_equal(vol_pread(m->v, e->rbuf, len, off), 0);
    if (memcmp(e->rbuf, m->model + off, len) != 0) {
        for (uint64_t i = 0; i < len; i++)
            if (e->rbuf[i] != m->model[off + i])
                fail_msg("volume %s: byte %llu reads %#x, expected %#x", m->name,
                         (unsigned long long)(off + i), e->rbuf[i], m->model[off + i]);
    }
}

static void compare_all(struct env *e)
{
    for (int i = 0; i < NVOL; i++) {
        struct mvol *m = &e->vols[i];
        for (uint64_t off = 0; off < m->size; off += 4u << 20)
            compare(e, m, off, MIN(4ull << 20, m->size - off));
    }
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    scratch_make(&e->s, 2, MEMBER_BYTES);
    assert_int_equal(pool_create("tank", e->s.paths, e->s.n, NULL, false), 0);
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
    static const uint32_t grains[NVOL] = {4096, 65536, 1u << 20};
    static const uint64_t sizes[NVOL] = {24u << 20, 40u << 20, 32u << 20};
    for (int i = 0; i < NVOL; i++) {
        struct mvol *m = &e->vols[i];
        snprintf(m->name, sizeof(m->name), "v%d", i);
        m->size = sizes[i];
        m->grain = grains[i];
        m->model = calloc(1, 64u << 20);
        assert_int_equal(vol_create(e->pool, m->name, m->size, m->grain, NULL), 0);
    }
    assert_int_equal(pool_close(e->pool), 0);
    e->buf = aligned_alloc(4096, 4u << 20);
    e->rbuf = aligned_alloc(4096, 4u << 20);
    rng_seed_env(&e->rng, "VOL_SEED");
    open_pool(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->pool)
        close_pool(e);
    scratch_remove(&e->s);
    for (int i = 0; i < NVOL; i++)
        free(e->vols[i].model);
    free(e->buf);
    free(e->rbuf);
    free(e);
    return 0;
}

/* A random range: mostly grain-aligned, sometimes 4K- or 512-aligned, sometimes long. */
static void random_range(struct env *e, struct mvol *m, uint64_t *off, uint64_t *len)
{
    uint64_t unit;
    switch (rng_below(&e->rng, 4)) {
    case 0: unit = 512; break;
    case 1: unit = 4096; break;
    default: unit = m->grain; break;
    }
    uint64_t max = MIN(m->size, 3ull << 20);
    *len = MAX(unit, ROUND_DOWN(rng_below(&e->rng, max / (rng_below(&e->rng, 8) + 1)) + 1, unit));
    if (*len > m->size)
        *len = ROUND_DOWN(m->size, unit);
    *off = ROUND_DOWN(rng_below(&e->rng, m->size - *len + 1), unit);
}

static void test_basic(void **state)
{
    struct env *e = *state;
    struct mvol *m = &e->vols[1];
    /* Unmapped space reads as zeros and reports as a hole. */
    compare(e, m, 0, 1u << 20);
    struct vol_extent ext[8];
    size_t n;
    assert_int_equal(vol_block_status(m->v, 0, m->size, ext, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_true(ext[0].flags & VOL_EXT_HOLE);
    /* A write in the middle of a grain: the grain is allocated, the rest stays zero. */
    memset(e->buf, 0xab, 8192);
    assert_int_equal(vol_pwrite(m->v, e->buf, 8192, 65536 + 4096, 0), 0);
    memset(m->model + 65536 + 4096, 0xab, 8192);
    compare(e, m, 0, 1u << 20);
    assert_int_equal(vol_block_status(m->v, 0, m->size, ext, 8, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ext[1].offset, 65536);
    assert_int_equal(ext[1].length, 65536);
    assert_int_equal(ext[1].flags, 0);
    /* Zeros over the whole grain unmap it. */
    assert_int_equal(vol_write_zeroes(m->v, 65536, 65536, 0), 0);
    memset(m->model + 65536, 0, 65536);
    assert_int_equal(vol_block_status(m->v, 0, m->size, ext, 8, &n), 0);
    assert_int_equal(n, 1);
    /* A sequential write is one extent: block status shows one allocated range. */
    fill_random(&e->rng, e->buf, 4u << 20);
    assert_int_equal(vol_pwrite(m->v, e->buf, 4u << 20, 8u << 20, 0), 0);
    memcpy(m->model + (8u << 20), e->buf, 4u << 20);
    assert_int_equal(vol_block_status(m->v, 0, m->size, ext, 8, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ext[1].offset, 8u << 20);
    assert_int_equal(ext[1].length, 4u << 20);
    compare(e, m, 8u << 20, 4u << 20);
    /* Out of range and misaligned requests are refused. */
    assert_int_equal(vol_pwrite(m->v, e->buf, 4096, m->size, 0), -EINVAL);
    assert_int_equal(vol_pread(m->v, e->rbuf, 100, 0), -EINVAL);
    check_pool(e);
}

static void op_write(struct env *e, struct mvol *m)
{
    uint64_t off, len;
    random_range(e, m, &off, &len);
    int kind = (int)rng_below(&e->rng, 10);
    if (kind == 0)
        memset(e->buf, 0, len); /* zeros through write: unmaps whole grains */
    else
        fill_random(&e->rng, e->buf, len);
    if (kind == 1 && len >= 8192) /* a zero hole inside data */
        memset(e->buf + len / 4, 0, len / 2);
    uint32_t flags = rng_below(&e->rng, 20) == 0 ? VOL_FUA : 0;
    assert_int_equal(vol_pwrite(m->v, e->buf, len, off, flags), 0);
    memcpy(m->model + off, e->buf, len);
    compare(e, m, off, len);
}

static void op_zero(struct env *e, struct mvol *m)
{
    uint64_t off, len;
    random_range(e, m, &off, &len);
    switch (rng_below(&e->rng, 3)) {
    case 0: assert_int_equal(vol_write_zeroes(m->v, off, len, 0), 0); break;
    case 1: assert_int_equal(vol_write_zeroes(m->v, off, len, VOL_NO_UNMAP), 0); break;
    default: assert_int_equal(vol_discard(m->v, off, len), 0); break;
    }
    memset(m->model + off, 0, len);
    uint64_t from = off - MIN(off, (uint64_t)4096);
    compare(e, m, from, MIN(off + len + 4096, m->size) - from);
}

static void op_resize(struct env *e, struct mvol *m)
{
    uint64_t nsize = ROUND_UP(rng_below(&e->rng, 48u << 20) + 4096, 4096);
    assert_int_equal(vol_close(m->v), 0);
    assert_int_equal(vol_resize(e->pool, m->name, nsize), 0);
    assert_int_equal(vol_open(e->pool, m->name, 0, &m->v), 0);
    assert_int_equal(vol_size(m->v), nsize);
    if (nsize < m->size)
        memset(m->model + nsize, 0, m->size - nsize);
    m->size = nsize;
}

/* Several writes in flight over the same grains complete in arrival order. */
struct inflight {
    struct vol_req req;
    int done, res;
};

static void inflight_done(struct vol_req *req, int res)
{
    struct inflight *f = container_of(req, struct inflight, req);
    f->res = res;
    __atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
}

static void op_overlap(struct env *e, struct mvol *m)
{
    enum { N = 16 };
    struct inflight f[N];
    if (m->size < 131072)
        return; /* shrunk below the window this op works in */
    uint8_t *bufs = aligned_alloc(4096, N * 65536);
    uint64_t base = ROUND_DOWN(rng_below(&e->rng, m->size - 131072), 4096);
    for (int i = 0; i < N; i++) {
        uint64_t len = 4096 * (rng_below(&e->rng, 16) + 1);
        uint64_t off = base + 4096 * rng_below(&e->rng, 16);
        memset(&f[i], 0, sizeof(f[i]));
        fill_random(&e->rng, bufs + i * 65536, len);
        f[i].req.op = rng_below(&e->rng, 4) == 0 ? VOL_OP_READ : VOL_OP_WRITE;
        f[i].req.offset = off;
        f[i].req.length = len;
        f[i].req.buf = bufs + i * 65536;
        f[i].req.done = inflight_done;
    }
    for (int i = 0; i < N; i++)
        vol_submit(m->v, &f[i].req);
    for (int i = 0; i < N; i++) {
        while (!__atomic_load_n(&f[i].done, __ATOMIC_ACQUIRE))
            usleep(100);
        assert_int_equal(f[i].res, 0);
    }
    /* Replay on the model in arrival order; reads must have seen the model at their turn. */
    for (int i = 0; i < N; i++) {
        uint8_t *at = m->model + f[i].req.offset;
        if (f[i].req.op == VOL_OP_WRITE)
            memcpy(at, f[i].req.buf, f[i].req.length);
        else if (memcmp(at, f[i].req.buf, f[i].req.length) != 0)
            fail_msg("read %d in flight did not see the writes before it", i);
    }
    free(bufs);
    compare(e, m, base, MIN((uint64_t)131072, m->size - base));
}

static void test_model(void **state)
{
    struct env *e = *state;
    uint64_t ops = env_u64("VOL_OPS", 20000);
    bool check_each = env_u64("VOL_CHECK_EACH", 0) != 0; /* for bisecting a failure */
    for (uint64_t i = 0; i < ops; i++) {
        struct mvol *m = &e->vols[rng_below(&e->rng, NVOL)];
        unsigned dice = (unsigned)rng_below(&e->rng, 1000);
        if (check_each) {
            fprintf(stderr, "op %llu: volume %s dice %u\n", (unsigned long long)i, m->name, dice);
            check_pool(e);
        }
        if (dice < 550)
            op_write(e, m);
        else if (dice < 800)
            op_zero(e, m);
        else if (dice < 900) {
            uint64_t off, len;
            random_range(e, m, &off, &len);
            compare(e, m, off, len);
        } else if (dice < 940)
            op_overlap(e, m);
        else if (dice < 960)
            assert_int_equal(vol_flush(m->v), 0);
        else if (dice < 975)
            op_resize(e, m);
        else if (dice < 990)
            check_pool(e);
        else {
            close_pool(e);
            open_pool(e);
            compare_all(e);
        }
    }
    compare_all(e);
    check_pool(e);
    close_pool(e);
    open_pool(e);
    compare_all(e);
    check_pool(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
