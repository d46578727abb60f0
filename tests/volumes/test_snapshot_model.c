/*
 * Snapshots, clones, rollbacks and deletes against an in-memory model of every volume's and
 * every snapshot's contents: random writes, zeros and discards on the writable volumes,
 * snapshots (sometimes of several volumes at once), clones of snapshots, rollbacks, deletes
 * and reopens. After every step the touched object is compared; after every commit
 * pool_check recomputes each reference count from the trees; at the end every snapshot and
 * volume is read back whole. Space accounting is checked after every commit against the
 * physical blocks each map references, counted by walking every map.
 *
 *   SNAP_SEED=n  replay a run      SNAP_OPS=n  operations (default 3000)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/vol_priv.h"

#define MEMBER_BYTES (256ull << 20)
#define MAXOBJ 24
#define VOLSIZE (4ull << 20)

struct obj {
    bool used, snapshot;
    char name[80]; /* VOL or VOL@SNAP */
    int parent;    /* snapshots: index of their volume */
    unsigned born; /* creation order */
    char origin[80]; /* clones: the snapshot they came from */
    uint32_t grain;
    uint8_t *model;
};

struct env {
    struct scratch s;
    struct pool *pool;
    struct obj o[MAXOBJ];
    struct vol *h[MAXOBJ]; /* open handles of writable volumes */
    struct rng rng;
    uint8_t *buf;
    unsigned seq;
};

/* ---- Space accounting: an oracle from the maps themselves ---- */

struct blocks {
    uint64_t *b;
    size_t n, cap;
};

static int collect(void *ctx, const struct thin_extent *x)
{
    struct blocks *bl = ctx;
    for (uint32_t i = 0; i < x->plen; i++) {
        if (bl->n == bl->cap) {
            bl->cap = bl->cap ? 2 * bl->cap : 4096;
            bl->b = realloc(bl->b, bl->cap * sizeof(*bl->b));
        }
        bl->b[bl->n++] = x->pstart.v + i;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Occurrences of @b in sorted @all. */
static size_t occurrences(const struct blocks *all, uint64_t b)
{
    size_t lo = 0, hi = all->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (all->b[mid] < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    while (lo + n < all->n && all->b[lo + n] == b)
        n++;
    return n;
}

/* The model's previous point of object @i (see vol_space.written_bytes), or -1. */
static int previous_point(struct env *e, int i)
{
    struct obj *o = &e->o[i];
    int vol = o->snapshot ? o->parent : i, best = -1;
    for (int k = 0; k < MAXOBJ; k++) {
        struct obj *c = &e->o[k];
        if (c->used && c->snapshot && c->parent == vol && (!o->snapshot || c->born < o->born) &&
            (best < 0 || c->born > e->o[best].born))
            best = k;
    }
    if (best < 0 && !o->snapshot && o->origin[0])
        for (int k = 0; k < MAXOBJ; k++)
            if (e->o[k].used && strcmp(e->o[k].name, o->origin) == 0)
                best = k;
    return best;
}

static void check_space(struct env *e)
{
    struct blocks own[MAXOBJ] = {0}, all = {0};
    pool_md_lock(e->pool);
    for (int i = 0; i < MAXOBJ; i++) {
        if (!e->o[i].used)
            continue;
        uint64_t id;
        struct disk_volume rec;
        assert_int_equal(catalog_find(e->pool, e->o[i].name, &id, &rec), 0);
        assert_int_equal(thin_map_walk(e->pool, (pblk_t){rec.map_root}, 0, UINT64_MAX / 2,
                                       rec.grain_size / CS_BLOCK_SIZE, collect, &own[i]),
                         0);
        for (size_t k = 0; k < own[i].n; k++)
            collect(&all, &(struct thin_extent){.pstart = {own[i].b[k]}, .plen = 1});
    }
    pool_md_unlock(e->pool);
    if (all.n) /* qsort wants a valid pointer even for nothing */
        qsort(all.b, all.n, sizeof(*all.b), cmp_u64);
    for (int i = 0; i < MAXOBJ; i++) {
        struct obj *o = &e->o[i];
        if (!o->used)
            continue;
        struct vol_space vi;
        assert_int_equal(vol_get_space(e->pool, o->name, &vi), 0);
        uint64_t unique = 0;
        for (size_t k = 0; k < own[i].n; k++)
            unique += occurrences(&all, own[i].b[k]) == 1;
        if (vi.referenced_bytes != own[i].n * CS_BLOCK_SIZE || vi.unique_bytes != unique * CS_BLOCK_SIZE)
            fail_msg("%s: referenced %llu unique %llu, expected %llu and %llu", o->name,
                     (unsigned long long)vi.referenced_bytes, (unsigned long long)vi.unique_bytes,
                     (unsigned long long)(own[i].n * CS_BLOCK_SIZE),
                     (unsigned long long)(unique * CS_BLOCK_SIZE));
        /* Written: at least every grain whose contents differ from the previous point. */
        int p = previous_point(e, i);
        if (p < 0) {
            assert_int_equal(vi.written_bytes, vi.mapped_bytes);
        } else {
            uint64_t differ = 0;
            for (uint64_t g = 0; g < VOLSIZE; g += o->grain)
                differ += memcmp(o->model + g, e->o[p].model + g, o->grain) != 0;
            if (vi.written_bytes < differ * o->grain || vi.written_bytes > VOLSIZE)
                fail_msg("%s: written %llu, but %llu bytes differ from %s", o->name,
                         (unsigned long long)vi.written_bytes,
                         (unsigned long long)(differ * o->grain), e->o[p].name);
        }
        free(own[i].b);
    }
    free(all.b);
}

static void check_pool(struct env *e)
{
    assert_int_equal(pool_commit(e->pool), 0);
    struct pool_check_report rep;
    if (pool_check(e->pool, &rep) != 0)
        fail_msg("pool check found %u problems", rep.errors);
    check_space(e);
}

static void compare(struct env *e, int i)
{
    struct obj *o = &e->o[i];
    struct vol *v = e->h[i];
    bool opened = false;
    if (!v) {
        assert_int_equal(vol_open(e->pool, o->name, VOL_OPEN_RDONLY, &v), 0);
        opened = true;
    }
    assert_int_equal(vol_pread(v, e->buf, VOLSIZE, 0), 0);
    if (memcmp(e->buf, o->model, VOLSIZE) != 0)
        for (uint64_t b = 0; b < VOLSIZE; b++)
            if (e->buf[b] != o->model[b])
                fail_msg("%s: byte %llu reads %#x, expected %#x", o->name,
                         (unsigned long long)b, e->buf[b], o->model[b]);
    if (opened)
        vol_close(v);
}

static int add_obj(struct env *e, const char *name, bool snapshot, int parent, uint32_t grain)
{
    for (int i = 0; i < MAXOBJ; i++)
        if (!e->o[i].used) {
            struct obj *o = &e->o[i];
            o->used = true;
            o->snapshot = snapshot;
            snprintf(o->name, sizeof(o->name), "%s", name);
            o->parent = parent;
            o->born = e->seq++;
            o->origin[0] = 0;
            o->grain = grain;
            if (!o->model)
                o->model = malloc(VOLSIZE);
            return i;
        }
    return -1;
}

static int pick(struct env *e, bool snapshot)
{
    int idx[MAXOBJ], n = 0;
    for (int i = 0; i < MAXOBJ; i++)
        if (e->o[i].used && e->o[i].snapshot == snapshot)
            idx[n++] = i;
    return n ? idx[rng_below(&e->rng, (uint64_t)n)] : -1;
}

static int nobj(struct env *e)
{
    int n = 0;
    for (int i = 0; i < MAXOBJ; i++)
        n += e->o[i].used;
    return n;
}

static void open_all(struct env *e)
{
    for (int i = 0; i < MAXOBJ; i++)
        if (e->o[i].used && !e->o[i].snapshot)
            assert_int_equal(vol_open(e->pool, e->o[i].name, 0, &e->h[i]), 0);
}

static void close_all(struct env *e)
{
    for (int i = 0; i < MAXOBJ; i++)
        if (e->h[i]) {
            assert_int_equal(vol_close(e->h[i]), 0);
            e->h[i] = NULL;
        }
}

static void op_write(struct env *e)
{
    int i = pick(e, false);
    if (i < 0)
        return;
    struct obj *o = &e->o[i];
    uint64_t unit = rng_below(&e->rng, 2) ? 4096 : 512;
    uint64_t len = ROUND_UP(rng_below(&e->rng, 256 << 10) + 1, unit);
    uint64_t off = ROUND_DOWN(rng_below(&e->rng, VOLSIZE - len + 1), unit);
    unsigned kind = (unsigned)rng_below(&e->rng, 10);
    if (kind < 7) {
        fill_random(&e->rng, e->buf, len);
        assert_int_equal(vol_pwrite(e->h[i], e->buf, len, off, 0), 0);
        memcpy(o->model + off, e->buf, len);
    } else {
        int r = kind == 7 ? vol_discard(e->h[i], off, len) : vol_write_zeroes(e->h[i], off, len, 0);
        assert_int_equal(r, 0);
        memset(o->model + off, 0, len);
    }
}

static void op_snapshot(struct env *e)
{
    int a = pick(e, false), b = pick(e, false);
    if (a < 0 || nobj(e) > MAXOBJ - 2)
        return;
    char snap[32];
    snprintf(snap, sizeof(snap), "s%u", e->seq++);
    struct vol_snap_spec specs[2] = {{e->o[a].name, snap}, {e->o[b].name, snap}};
    unsigned n = (b >= 0 && b != a && rng_below(&e->rng, 3) == 0) ? 2 : 1;
    /* Writes in flight on other threads are not part of this test: the handles are idle. */
    assert_int_equal(vol_snapshot(e->pool, specs, n), 0);
    for (unsigned k = 0; k < n; k++) {
        int v = k == 0 ? a : b;
        char full[80];
        snprintf(full, sizeof(full), "%s@%s", e->o[v].name, snap);
        int s = add_obj(e, full, true, v, e->o[v].grain);
        memcpy(e->o[s].model, e->o[v].model, VOLSIZE);
        compare(e, s);
    }
    /* Taking the same name again is refused and changes nothing. */
    assert_int_equal(vol_snapshot(e->pool, specs, 1), -EEXIST);
}

static void op_clone(struct env *e)
{
    int s = pick(e, true);
    if (s < 0 || nobj(e) > MAXOBJ - 1)
        return;
    char name[32];
    snprintf(name, sizeof(name), "c%u", e->seq++);
    assert_int_equal(vol_clone(e->pool, e->o[s].name, name), 0);
    int c = add_obj(e, name, false, -1, e->o[s].grain);
    memcpy(e->o[c].origin, e->o[s].name, sizeof(e->o[c].origin));
    memcpy(e->o[c].model, e->o[s].model, VOLSIZE);
    assert_int_equal(vol_open(e->pool, name, 0, &e->h[c]), 0);
    compare(e, c);
}

struct diff_seen {
    uint8_t *changed; /* per byte: inside a reported range */
};

static int on_range(void *ctx, uint64_t off, uint64_t len)
{
    struct diff_seen *d = ctx;
    assert_true(off + len <= VOLSIZE);
    memset(d->changed + off, 1, len);
    return 0;
}

/* vol_diff between a snapshot and its volume: every byte outside the reported ranges reads
 * the same in both (nothing is missed). */
static void op_diff(struct env *e)
{
    int s = pick(e, true);
    if (s < 0)
        return;
    int v = e->o[s].parent;
    struct diff_seen d = {calloc(1, VOLSIZE)};
    assert_int_equal(vol_diff(e->pool, e->o[s].name, e->o[v].name, on_range, &d), 0);
    for (uint64_t b = 0; b < VOLSIZE; b++)
        if (!d.changed[b] && e->o[s].model[b] != e->o[v].model[b])
            fail_msg("%s vs %s: byte %llu differs but is outside every reported range",
                     e->o[s].name, e->o[v].name, (unsigned long long)b);
    free(d.changed);
}

/* Precision: after a snapshot, one write; the diff is exactly the grains it touched. */
static void test_diff_exact(void **state)
{
    struct env *e = *state;
    int v = 0;
    fill_random(&e->rng, e->buf, VOLSIZE);
    assert_int_equal(vol_pwrite(e->h[v], e->buf, VOLSIZE, 0, 0), 0);
    struct vol_snap_spec spec = {e->o[v].name, "before"};
    assert_int_equal(vol_snapshot(e->pool, &spec, 1), 0);
    assert_int_equal(vol_pwrite(e->h[v], e->buf, 8192, 3 * 4096 + 512 * 0 + 40960, 0), 0);
    struct diff_seen d = {calloc(1, VOLSIZE)};
    assert_int_equal(vol_diff(e->pool, "v0@before", "v0", on_range, &d), 0);
    for (uint64_t b = 0; b < VOLSIZE; b++)
        if (d.changed[b] != (b >= 53248 && b < 53248 + 8192))
            fail_msg("byte %llu: reported %d", (unsigned long long)b, d.changed[b]);
    free(d.changed);
    /* Different volumes are not one lineage. */
    assert_int_equal(vol_diff(e->pool, "v0@before", "v1", on_range, &d), -EINVAL);
}

static void op_rollback(struct env *e)
{
    int s = pick(e, true);
    if (s < 0)
        return;
    int v = e->o[s].parent;
    assert_int_equal(vol_rollback(e->pool, e->o[s].name), -EBUSY); /* open */
    assert_int_equal(vol_close(e->h[v]), 0);
    e->h[v] = NULL;
    assert_int_equal(vol_rollback(e->pool, e->o[s].name), 0);
    memcpy(e->o[v].model, e->o[s].model, VOLSIZE);
    assert_int_equal(vol_open(e->pool, e->o[v].name, 0, &e->h[v]), 0);
    compare(e, v);
}

/* Copy by sharing between two writable volumes (or within one): whole grains of one grain
 * size are shared; anything else is refused with EXDEV and changes nothing. */
static void op_copy(struct env *e)
{
    int d = pick(e, false), s = pick(e, false);
    if (d < 0)
        return;
    struct obj *od = &e->o[d], *os = &e->o[s];
    uint64_t g = od->grain;
    uint64_t len = (rng_below(&e->rng, 24) + 1) * 4096;
    uint64_t doff = ROUND_DOWN(rng_below(&e->rng, VOLSIZE - len + 1), 4096);
    uint64_t soff = ROUND_DOWN(rng_below(&e->rng, VOLSIZE - len + 1), 4096);
    if (rng_below(&e->rng, 4) != 0) { /* mostly whole grains */
        len = ROUND_UP(len, g);
        doff = ROUND_DOWN(doff, g);
        soff = ROUND_DOWN(soff, g);
        if (doff + len > VOLSIZE || soff + len > VOLSIZE)
            return;
    }
    bool shareable = od->grain == os->grain && doff % g == 0 && soff % g == 0 && len % g == 0;
    int r = vol_copy(e->h[d], doff, e->h[s], soff, len);
    if (!shareable) {
        assert_int_equal(r, -EXDEV);
        return;
    }
    assert_int_equal(r, 0);
    uint8_t *tmp = malloc(len);
    memcpy(tmp, os->model + soff, len);
    memcpy(od->model + doff, tmp, len);
    free(tmp);
    compare(e, d);
}

/* Renames a snapshot within its volume; the old name is gone, the new one reads the same. */
static void op_rename_snapshot(struct env *e)
{
    int s = pick(e, true);
    if (s < 0)
        return;
    struct obj *o = &e->o[s];
    char snap[32], full[80];
    snprintf(snap, sizeof(snap), "r%u", e->seq++);
    assert_int_equal(vol_rename(e->pool, o->name, snap), 0);
    snprintf(full, sizeof(full), "%s@%s", e->o[o->parent].name, snap);
    for (int k = 0; k < MAXOBJ; k++) /* clones name their origin */
        if (e->o[k].used && strcmp(e->o[k].origin, o->name) == 0)
            memcpy(e->o[k].origin, full, sizeof(e->o[k].origin));
    struct vol_info vi;
    assert_int_equal(vol_get_info(e->pool, o->name, &vi), -ENOENT);
    memcpy(o->name, full, sizeof(o->name));
    compare(e, s);
}

static void op_delete_snapshot(struct env *e)
{
    int s = pick(e, true);
    if (s < 0)
        return;
    assert_int_equal(vol_delete(e->pool, e->o[s].name), 0);
    e->o[s].used = false;
}

static void op_delete_volume(struct env *e)
{
    int v = pick(e, false);
    if (v < 0)
        return;
    bool has_snaps = false;
    for (int i = 0; i < MAXOBJ; i++)
        has_snaps |= e->o[i].used && e->o[i].snapshot && e->o[i].parent == v;
    assert_int_equal(vol_close(e->h[v]), 0);
    e->h[v] = NULL;
    int r = vol_delete(e->pool, e->o[v].name);
    if (has_snaps) {
        assert_int_equal(r, -EBUSY);
        assert_int_equal(vol_open(e->pool, e->o[v].name, 0, &e->h[v]), 0);
        return;
    }
    assert_int_equal(r, 0);
    e->o[v].used = false;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    scratch_make(&e->s, 2, MEMBER_BYTES);
    assert_int_equal(pool_create("snaps", e->s.paths, e->s.n, NULL, false), 0);
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
    e->buf = aligned_alloc(4096, VOLSIZE);
    rng_seed_env(&e->rng, "SNAP_SEED");
    static const uint32_t grains[] = {4096, 65536, 4096};
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "v%d", i);
        assert_int_equal(vol_create(e->pool, name, VOLSIZE, grains[i], NULL), 0);
        int k = add_obj(e, name, false, -1, grains[i]);
        memset(e->o[k].model, 0, VOLSIZE);
    }
    open_all(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    close_all(e);
    pool_close(e->pool);
    scratch_remove(&e->s);
    for (int i = 0; i < MAXOBJ; i++)
        free(e->o[i].model);
    free(e->buf);
    free(e);
    return 0;
}

static void test_model(void **state)
{
    struct env *e = *state;
    uint64_t ops = env_u64("SNAP_OPS", 3000);
    for (uint64_t i = 0; i < ops; i++) {
        unsigned d = (unsigned)rng_below(&e->rng, 1000);
        if (d < 600)
            op_write(e);
        else if (d < 680)
            op_snapshot(e);
        else if (d < 720)
            op_clone(e);
        else if (d < 760)
            op_rollback(e);
        else if (d < 810)
            op_delete_snapshot(e);
        else if (d < 820)
            op_rename_snapshot(e);
        else if (d < 840)
            op_delete_volume(e);
        else if (d < 860)
            op_diff(e);
        else if (d < 870)
            op_copy(e);
        else if (d < 900) {
            int k = pick(e, rng_below(&e->rng, 2));
            if (k >= 0)
                compare(e, k);
        } else if (d < 960)
            check_pool(e);
        else {
            close_all(e);
            assert_int_equal(pool_close(e->pool), 0);
            assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
            assert_int_equal(volumes_attach(e->pool), 0);
            open_all(e);
        }
    }
    for (int i = 0; i < MAXOBJ; i++)
        if (e->o[i].used)
            compare(e, i);
    check_pool(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff_exact, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
