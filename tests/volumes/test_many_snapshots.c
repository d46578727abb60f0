/*
 * A volume with 1,000 snapshots, against a model of what every snapshot must read.
 *
 * Rounds of random writes (512-byte and 4 KiB aligned, some all zeros), discards and
 * write-zeroes on one volume, each followed by a snapshot, 1,000 times. The model keeps, per
 * 512-byte sector, a tag naming the write that last filled it (0: zeros); a sector's bytes
 * are a pure function of its tag and index, so one array of tags per snapshot is the whole
 * expected image. Then:
 *
 *   - every snapshot is read back in sampled ranges, and the oldest, middle and newest ones
 *     (plus a random sample) whole;
 *   - vol_snap_list returns all 1,000, oldest first;
 *   - the live volume keeps working (writes, reads, discard of everything, which must leave
 *     every snapshot as it was);
 *   - clones of old snapshots are written and read, and their snapshots stay unchanged,
 *     also after the snapshot a clone came from is deleted;
 *   - 300 snapshots are deleted in random order, checking their neighbours as they go; the
 *     700 left are listed in order and read back;
 *   - pool_check passes after commits along the way, at the end and after a reopen.
 *
 *   MANY_SEED=n   replay a run
 *   MANY_SNAPS=n  snapshots (default 1000); MANY_DELETE=n deleted of them (default 300)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define MEMBER_BYTES (1ull << 30)
#define VOLSIZE (16ull << 20)
#define SECTOR 512u
#define NSECT (VOLSIZE / SECTOR)
#define MAX_WRITE (128u << 10)
#define NCLONES 4

struct snap {
    char name[16];
    uint32_t *tags; /* the model: NSECT tags; NULL once deleted */
};

struct clone {
    char name[16];
    int origin; /* index of the snapshot it was cloned from */
    struct vol *h;
    uint32_t *tags;
};

struct env {
    struct scratch s;
    struct pool *pool;
    struct vol *v; /* the live volume */
    uint32_t *live;
    struct snap *snaps;
    unsigned nsnaps, ndeleted;
    struct clone clones[NCLONES];
    struct rng rng;
    uint32_t next_tag;
    uint8_t *buf, *expect;
};

/* ------------------------------------------------------------------------------------------
 * The model
 */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The bytes of sector @s when written by write @tag (0: zeros). */
static void sector_fill(uint8_t *p, uint32_t tag, uint64_t s)
{
    if (tag == 0) {
        memset(p, 0, SECTOR);
        return;
    }
    uint64_t base = mix(((uint64_t)tag << 32) ^ s);
    for (unsigned i = 0; i < SECTOR / 8; i++) {
        uint64_t w = mix(base + i) | 1; /* never an all-zero sector */
        memcpy(p + i * 8, &w, 8);
    }
}

static void expect_fill(uint8_t *out, const uint32_t *tags, uint64_t off, uint64_t len)
{
    for (uint64_t s = off / SECTOR; s < (off + len) / SECTOR; s++)
        sector_fill(out + (s * SECTOR - off), tags[s], s);
}

/* Reads [off, off + len) of @v and compares it with @tags. */
static void check_range(struct env *e, struct vol *v, const char *what, const uint32_t *tags,
                        uint64_t off, uint64_t len)
{
    assert_int_equal(vol_pread(v, e->buf, len, off), 0);
    expect_fill(e->expect, tags, off, len);
    if (memcmp(e->buf, e->expect, len) == 0)
        return;
    for (uint64_t b = 0; b < len; b++)
        if (e->buf[b] != e->expect[b])
            fail_msg("%s: byte %llu reads %#x, expected %#x (sector written by write %u)", what,
                     (unsigned long long)(off + b), e->buf[b], e->expect[b],
                     tags[(off + b) / SECTOR]);
}

static void check_snap_ranges(struct env *e, unsigned i, unsigned nranges, uint64_t maxlen)
{
    struct snap *s = &e->snaps[i];
    char full[32];
    struct vol *v;
    snprintf(full, sizeof(full), "v@%s", s->name);
    assert_int_equal(vol_open(e->pool, full, VOL_OPEN_RDONLY, &v), 0);
    if (nranges == 0) {
        check_range(e, v, full, s->tags, 0, VOLSIZE);
    } else {
        for (unsigned k = 0; k < nranges; k++) {
            uint64_t len = ROUND_UP(rng_below(&e->rng, maxlen) + 1, SECTOR);
            uint64_t off = ROUND_DOWN(rng_below(&e->rng, VOLSIZE - len + 1), SECTOR);
            check_range(e, v, full, s->tags, off, len);
        }
    }
    assert_int_equal(vol_close(v), 0);
}

static void check_snap_whole(struct env *e, unsigned i)
{
    check_snap_ranges(e, i, 0, 0);
}

/* ------------------------------------------------------------------------------------------
 * Operations on a writable handle and its model
 */

static void random_range(struct env *e, uint64_t *off, uint64_t *len)
{
    uint64_t unit = rng_below(&e->rng, 2) ? 4096 : SECTOR;
    *len = ROUND_UP(rng_below(&e->rng, MAX_WRITE) + 1, unit);
    *off = ROUND_DOWN(rng_below(&e->rng, VOLSIZE - *len + 1), unit);
}

static void op_write(struct env *e, struct vol *v, uint32_t *tags)
{
    uint64_t off, len;
    random_range(e, &off, &len);
    unsigned kind = (unsigned)rng_below(&e->rng, 20);
    if (kind < 14) { /* data */
        uint32_t tag = e->next_tag++;
        for (uint64_t s = off / SECTOR; s < (off + len) / SECTOR; s++) {
            sector_fill(e->buf + (s * SECTOR - off), tag, s);
            tags[s] = tag;
        }
        assert_int_equal(vol_pwrite(v, e->buf, len, off, 0), 0);
        return;
    }
    int r;
    if (kind < 15) { /* a write of a zero buffer: unmaps the whole grains */
        memset(e->buf, 0, len);
        r = vol_pwrite(v, e->buf, len, off, 0);
    } else if (kind < 18) {
        r = vol_discard(v, off, len);
    } else {
        r = vol_write_zeroes(v, off, len, kind == 19 ? VOL_NO_UNMAP : 0);
    }
    assert_int_equal(r, 0);
    for (uint64_t s = off / SECTOR; s < (off + len) / SECTOR; s++)
        tags[s] = 0;
}

static void check_pool(struct env *e)
{
    assert_int_equal(pool_commit(e->pool), 0);
    struct pool_check_report rep = {0};
    if (pool_check(e->pool, &rep) != 0)
        fail_msg("pool check found %u problems", rep.errors);
}

static void take_snapshot(struct env *e)
{
    struct snap *s = &e->snaps[e->nsnaps];
    snprintf(s->name, sizeof(s->name), "s%04u", e->nsnaps);
    struct vol_snap_spec spec = {"v", s->name};
    assert_int_equal(vol_snapshot(e->pool, &spec, 1), 0);
    s->tags = malloc(NSECT * sizeof(uint32_t));
    assert_non_null(s->tags);
    memcpy(s->tags, e->live, NSECT * sizeof(uint32_t));
    e->nsnaps++;
}

/* ------------------------------------------------------------------------------------------
 * Listing
 */

struct list_ctx {
    struct env *e;
    unsigned n, at; /* entries seen; next snapshot index expected */
};

static int on_snap(void *ctx, const struct vol_info *vi)
{
    struct list_ctx *l = ctx;
    struct env *e = l->e;
    while (l->at < e->nsnaps && !e->snaps[l->at].tags)
        l->at++; /* deleted */
    if (l->at >= e->nsnaps)
        fail_msg("snap list: unexpected %s after the last snapshot", vi->name);
    if (strcmp(vi->name, e->snaps[l->at].name) != 0)
        fail_msg("snap list: entry %u is %s, expected %s", l->n, vi->name, e->snaps[l->at].name);
    assert_int_equal(vi->size, VOLSIZE);
    l->n++;
    l->at++;
    return 0;
}

static void check_list(struct env *e)
{
    struct list_ctx l = {.e = e};
    assert_int_equal(vol_snap_list(e->pool, "v", on_snap, &l), 0);
    assert_int_equal(l.n, e->nsnaps - e->ndeleted);
}

/* ------------------------------------------------------------------------------------------
 * Setup
 */

static void pool_up(struct env *e)
{
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    scratch_make(&e->s, 1, MEMBER_BYTES);
    assert_int_equal(pool_create("many", e->s.paths, e->s.n, NULL, false), 0);
    pool_up(e);
    rng_seed_env(&e->rng, "MANY_SEED");
    e->buf = aligned_alloc(4096, VOLSIZE);
    e->expect = aligned_alloc(4096, VOLSIZE);
    e->live = calloc(NSECT, sizeof(uint32_t));
    unsigned n = (unsigned)env_u64("MANY_SNAPS", 1000);
    e->snaps = calloc(n + 1, sizeof(*e->snaps)); /* and one after the reopen */
    assert_true(e->buf && e->expect && e->live && e->snaps);
    e->next_tag = 1;
    assert_int_equal(vol_create(e->pool, "v", VOLSIZE, 4096, NULL), 0);
    assert_int_equal(vol_open(e->pool, "v", 0, &e->v), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    for (unsigned i = 0; i < NCLONES; i++) {
        vol_close(e->clones[i].h);
        free(e->clones[i].tags);
    }
    vol_close(e->v);
    pool_close(e->pool);
    scratch_remove(&e->s);
    for (unsigned i = 0; i < e->nsnaps; i++)
        free(e->snaps[i].tags);
    free(e->snaps);
    free(e->live);
    free(e->buf);
    free(e->expect);
    free(e);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The test
 */

/* Every snapshot in a few ranges; the oldest, middle and newest five, and @sample more at
 * random, whole. */
static void check_all_snaps(struct env *e, unsigned sample)
{
    unsigned n = e->nsnaps;
    for (unsigned i = 0; i < n; i++)
        if (e->snaps[i].tags)
            check_snap_ranges(e, i, 3, 128 << 10);
    for (unsigned k = 0; k < 5 && k < n; k++) {
        unsigned picks[3] = {k, n / 2 - MIN(n / 2, 2u) + k, n - 1 - k};
        for (unsigned j = 0; j < 3; j++)
            if (picks[j] < n && e->snaps[picks[j]].tags)
                check_snap_whole(e, picks[j]);
    }
    for (unsigned k = 0; k < sample; k++) {
        unsigned i = (unsigned)rng_below(&e->rng, n);
        if (e->snaps[i].tags)
            check_snap_whole(e, i);
    }
}

static void make_clone(struct env *e, unsigned c, unsigned origin)
{
    struct clone *cl = &e->clones[c];
    char full[32];
    snprintf(cl->name, sizeof(cl->name), "c%u", c);
    snprintf(full, sizeof(full), "v@%s", e->snaps[origin].name);
    assert_int_equal(vol_clone(e->pool, full, cl->name), 0);
    assert_int_equal(vol_open(e->pool, cl->name, 0, &cl->h), 0);
    cl->origin = (int)origin;
    cl->tags = malloc(NSECT * sizeof(uint32_t));
    assert_non_null(cl->tags);
    memcpy(cl->tags, e->snaps[origin].tags, NSECT * sizeof(uint32_t));
    check_range(e, cl->h, cl->name, cl->tags, 0, VOLSIZE);
    for (unsigned k = 0; k < 40; k++)
        op_write(e, cl->h, cl->tags);
    check_range(e, cl->h, cl->name, cl->tags, 0, VOLSIZE);
    check_snap_whole(e, origin); /* untouched by the clone's writes */
}

static void check_clones(struct env *e)
{
    for (unsigned c = 0; c < NCLONES; c++)
        if (e->clones[c].h)
            check_range(e, e->clones[c].h, e->clones[c].name, e->clones[c].tags, 0, VOLSIZE);
}

static void test_many_snapshots(void **state)
{
    struct env *e = *state;
    unsigned total = (unsigned)env_u64("MANY_SNAPS", 1000);
    unsigned ndelete = (unsigned)MIN(env_u64("MANY_DELETE", 300), total / 2);
    assert_true(total >= 20);
    uint64_t t0 = now_ns();

    /* 1. Rounds of writes, each followed by a snapshot; the new snapshot is spot-checked at
     * once, and now and then one is read whole and the pool checked. */
    for (unsigned round = 0; round < total; round++) {
        unsigned nops = 1 + (unsigned)rng_below(&e->rng, 8);
        for (unsigned k = 0; k < nops; k++)
            op_write(e, e->v, e->live);
        take_snapshot(e);
        check_snap_ranges(e, e->nsnaps - 1, 1, 64 << 10);
        if (round % 100 == 99) {
            check_snap_whole(e, (unsigned)rng_below(&e->rng, e->nsnaps));
            check_range(e, e->v, "v", e->live, 0, VOLSIZE);
            check_pool(e);
        }
    }
    print_message("%u snapshots taken in %.1f s\n", e->nsnaps, (now_ns() - t0) / 1e9);
    /* Taking a name again is refused. */
    struct vol_snap_spec dup = {"v", e->snaps[0].name};
    assert_int_equal(vol_snapshot(e->pool, &dup, 1), -EEXIST);

    /* 2. All of them, in order. */
    check_list(e);

    /* 3. What each holds. */
    check_all_snaps(e, 50);
    print_message("checked at %.1f s\n", (now_ns() - t0) / 1e9);

    /* 4. The live volume keeps working: writes and reads, then a discard of everything,
     * which takes nothing from any snapshot. */
    for (unsigned k = 0; k < 200; k++) {
        op_write(e, e->v, e->live);
        if (k % 20 == 0) {
            uint64_t off, len;
            random_range(e, &off, &len);
            check_range(e, e->v, "v", e->live, off, len);
        }
    }
    check_range(e, e->v, "v", e->live, 0, VOLSIZE);
    assert_int_equal(vol_discard(e->v, 0, VOLSIZE), 0);
    memset(e->live, 0, NSECT * sizeof(uint32_t));
    check_range(e, e->v, "v", e->live, 0, VOLSIZE);
    for (unsigned k = 0; k < 50; k++)
        op_write(e, e->v, e->live);
    check_range(e, e->v, "v", e->live, 0, VOLSIZE);
    check_pool(e);

    /* 5. Clones of old snapshots (and one of a middle one), written to. */
    unsigned origins[NCLONES] = {0, 1 + (unsigned)rng_below(&e->rng, 9),
                                 10 + (unsigned)rng_below(&e->rng, 90), total / 2};
    for (unsigned c = 0; c < NCLONES; c++)
        make_clone(e, c, origins[c]);
    check_pool(e);

    /* 6. Deletes in random order; the neighbours of each deleted snapshot are checked, and
     * the snapshot a clone came from goes too (the clone keeps its data). */
    unsigned *order = malloc(total * sizeof(unsigned));
    assert_non_null(order);
    for (unsigned i = 0; i < total; i++)
        order[i] = i;
    for (unsigned i = total - 1; i > 0; i--) {
        unsigned j = (unsigned)rng_below(&e->rng, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    bool clone_origin_gone = false;
    for (unsigned k = 0; k < ndelete; k++) {
        unsigned i = order[k];
        char full[32];
        snprintf(full, sizeof(full), "v@%s", e->snaps[i].name);
        assert_int_equal(vol_delete(e->pool, full), 0);
        free(e->snaps[i].tags);
        e->snaps[i].tags = NULL;
        e->ndeleted++;
        for (unsigned c = 0; c < NCLONES; c++)
            clone_origin_gone |= (unsigned)e->clones[c].origin == i;
        for (unsigned n = i; n-- > 0;)
            if (e->snaps[n].tags) {
                check_snap_ranges(e, n, 1, 64 << 10);
                break;
            }
        for (unsigned n = i + 1; n < total; n++)
            if (e->snaps[n].tags) {
                check_snap_ranges(e, n, 1, 64 << 10);
                break;
            }
        if (k % 100 == 99)
            check_pool(e);
    }
    if (!clone_origin_gone) {
        char full[32];
        unsigned i = (unsigned)e->clones[0].origin;
        snprintf(full, sizeof(full), "v@%s", e->snaps[i].name);
        assert_int_equal(vol_delete(e->pool, full), 0);
        free(e->snaps[i].tags);
        e->snaps[i].tags = NULL;
        e->ndeleted++;
    }
    free(order);
    char gone[32];
    for (unsigned i = 0; i < total; i++)
        if (!e->snaps[i].tags) {
            struct vol *v;
            snprintf(gone, sizeof(gone), "v@%s", e->snaps[i].name);
            assert_int_equal(vol_open(e->pool, gone, VOL_OPEN_RDONLY, &v), -ENOENT);
            break;
        }
    check_list(e);
    check_clones(e);
    for (unsigned c = 0; c < NCLONES; c++)
        for (unsigned k = 0; k < 10; k++)
            op_write(e, e->clones[c].h, e->clones[c].tags);
    check_clones(e);
    check_all_snaps(e, 10);
    check_range(e, e->v, "v", e->live, 0, VOLSIZE);
    check_pool(e);
    print_message("deleted and checked at %.1f s\n", (now_ns() - t0) / 1e9);

    /* 7. Reopened: the same. */
    for (unsigned c = 0; c < NCLONES; c++) {
        assert_int_equal(vol_close(e->clones[c].h), 0);
        e->clones[c].h = NULL;
    }
    assert_int_equal(vol_close(e->v), 0);
    e->v = NULL;
    assert_int_equal(pool_close(e->pool), 0);
    pool_up(e);
    struct pool_check_report rep = {0};
    if (pool_check(e->pool, &rep) != 0)
        fail_msg("pool check after reopening found %u problems", rep.errors);
    assert_int_equal(vol_open(e->pool, "v", 0, &e->v), 0);
    for (unsigned c = 0; c < NCLONES; c++)
        assert_int_equal(vol_open(e->pool, e->clones[c].name, 0, &e->clones[c].h), 0);
    check_list(e);
    check_clones(e);
    check_range(e, e->v, "v", e->live, 0, VOLSIZE);
    check_all_snaps(e, 10);
    for (unsigned k = 0; k < 20; k++)
        op_write(e, e->v, e->live);
    take_snapshot(e);
    check_snap_whole(e, e->nsnaps - 1);
    check_list(e);
    check_pool(e);
    print_message("done in %.1f s\n", (now_ns() - t0) / 1e9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_snapshots, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
