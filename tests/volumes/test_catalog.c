/*
 * The catalog's refusals and bookkeeping: bad names for volumes, snapshots and renames; names
 * taken; rollback and clone of what is not a snapshot; LUN numbers (lowest free at creation,
 * none for snapshots until given, unique, kept across renames, reopens and open handles).
 * After every refusal the catalog is compared with a listing taken before: nothing changed.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define MEMBER_BYTES (64ull << 20)
#define VOLSIZE (1ull << 20)

struct env {
    struct scratch s;
    struct pool *pool;
};

/* A listing of every volume and snapshot: name, size and LUN, one line each. */
struct listing {
    char text[16384];
    size_t len;
    struct pool *pool;
};

static int add_line(struct listing *l, const char *prefix, const struct vol_info *vi)
{
    int n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s%s %llu %u\n", prefix,
                     vi->name, (unsigned long long)vi->size, vi->lun);
    assert_true(n > 0 && (size_t)n < sizeof(l->text) - l->len);
    l->len += (size_t)n;
    return 0;
}

static int snap_line(void *ctx, const struct vol_info *vi) { return add_line(ctx, "  @", vi); }

static int vol_line(void *ctx, const struct vol_info *vi)
{
    struct listing *l = ctx;
    add_line(l, "", vi);
    return vol_snap_list(l->pool, vi->name, snap_line, l);
}

static void take_listing(struct env *e, struct listing *l)
{
    memset(l, 0, sizeof(*l));
    l->pool = e->pool;
    assert_int_equal(vol_list(e->pool, vol_line, l), 0);
}

/* Asserts that the catalog still lists as @before. */
static void unchanged(struct env *e, const struct listing *before, const char *what)
{
    struct listing now;
    take_listing(e, &now);
    if (strcmp(now.text, before->text) != 0)
        fail_msg("%s changed the catalog:\n--- before\n%s--- after\n%s", what, before->text,
                 now.text);
}

static uint32_t lun_of(struct env *e, const char *name)
{
    struct vol_info vi;
    assert_int_equal(vol_get_info(e->pool, name, &vi), 0);
    return vi.lun;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    scratch_make(&e->s, 1, MEMBER_BYTES);
    assert_int_equal(pool_create("cat", e->s.paths, e->s.n, NULL, false), 0);
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
    assert_int_equal(vol_create(e->pool, "a", VOLSIZE, 0, NULL), 0);
    assert_int_equal(vol_create(e->pool, "b", VOLSIZE, 0, NULL), 0);
    struct vol_snap_spec specs[] = {{"a", "s1"}, {"b", "t1"}};
    assert_int_equal(vol_snapshot(e->pool, specs, 2), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    assert_int_equal(pool_close(e->pool), 0);
    scratch_remove(&e->s);
    free(e);
    return 0;
}

static const char *const bad_names[] = {
    "",         "x/y", "x@y", "/", "@", ".hidden", "-dash", "sp ace", "t\xc3\xa9st" /* UTF-8 é */,
    "\xff\xfe", /* not UTF-8 */
    "0123456789012345678901234567890123456789012345678901234567890123456789", /* overlong */
};

static void test_bad_names(void **state)
{
    struct env *e = *state;
    struct listing before;
    take_listing(e, &before);
    for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
        const char *n = bad_names[i];
        char full[128];
        assert_int_equal(vol_create(e->pool, n, VOLSIZE, 0, NULL), -EINVAL);
        struct vol_snap_spec spec = {"a", n};
        assert_int_equal(vol_snapshot(e->pool, &spec, 1), -EINVAL);
        assert_int_equal(vol_clone(e->pool, "a@s1", n), -EINVAL);
        assert_int_equal(vol_rename(e->pool, "a", n), -EINVAL);
        assert_int_equal(vol_rename(e->pool, "a@s1", n), -EINVAL);
        snprintf(full, sizeof(full), "a@%s", n);
        assert_int_not_equal(vol_rollback(e->pool, full), 0);
        unchanged(e, &before, n);
    }
}

static void test_taken_and_misdirected(void **state)
{
    struct env *e = *state;
    struct listing before;
    take_listing(e, &before);
    /* A snapshot name that exists, alone and as part of a consistent group: nothing made. */
    struct vol_snap_spec again = {"a", "s1"};
    assert_int_equal(vol_snapshot(e->pool, &again, 1), -EEXIST);
    struct vol_snap_spec group[] = {{"b", "s1"}, {"a", "s1"}};
    assert_int_equal(vol_snapshot(e->pool, group, 2), -EEXIST);
    /* A snapshot of a snapshot, and a volume named twice. */
    struct vol_snap_spec ofsnap = {"a@s1", "x"};
    assert_int_equal(vol_snapshot(e->pool, &ofsnap, 1), -EINVAL);
    struct vol_snap_spec twice[] = {{"a", "n"}, {"a", "n"}};
    assert_int_equal(vol_snapshot(e->pool, twice, 2), -EINVAL);
    /* Rollback to a snapshot of another volume: b has no snapshot s1. */
    assert_int_equal(vol_rollback(e->pool, "b@s1"), -ENOENT);
    assert_int_equal(vol_rollback(e->pool, "a"), -EINVAL);   /* not a snapshot */
    assert_int_equal(vol_clone(e->pool, "a", "c"), -EINVAL); /* clone of a volume */
    assert_int_equal(vol_clone(e->pool, "a@s1", "b"), -EEXIST);
    assert_int_equal(vol_rename(e->pool, "a", "b"), -EEXIST);
    assert_int_equal(vol_rename(e->pool, "nosuch", "c"), -ENOENT);
    assert_int_equal(vol_rename(e->pool, "nosuch@s1", "c"), -ENOENT);
    assert_int_equal(vol_diff(e->pool, "a@s1", "b", NULL, NULL), -EINVAL);
    unchanged(e, &before, "refused operations");

    /* A snapshot renamed keeps its volume; its old name is free again; names of another
     * volume's snapshots do not clash. */
    assert_int_equal(vol_rename(e->pool, "a@s1", "t1"), 0);
    struct vol_info vi;
    assert_int_equal(vol_get_info(e->pool, "a@s1", &vi), -ENOENT);
    assert_int_equal(vol_get_info(e->pool, "a@t1", &vi), 0);
    assert_int_equal(vol_snapshot(e->pool, &again, 1), 0);
    assert_int_equal(vol_rename(e->pool, "a@t1", "s1"), -EEXIST);
}

static void test_luns(void **state)
{
    struct env *e = *state;
    assert_int_equal(lun_of(e, "a"), 0);
    assert_int_equal(lun_of(e, "b"), 1);
    assert_int_equal(lun_of(e, "a@s1"), VOL_NO_LUN); /* snapshots: none until given */
    assert_int_equal(vol_create(e->pool, "c", VOLSIZE, 0, NULL), 0);
    assert_int_equal(lun_of(e, "c"), 2);
    /* The lowest free number is reused. */
    assert_int_equal(vol_set_lun(e->pool, "a", 7), 0);
    assert_int_equal(vol_clone(e->pool, "b@t1", "d"), 0);
    assert_int_equal(lun_of(e, "d"), 0);

    struct listing before;
    take_listing(e, &before);
    assert_int_equal(vol_set_lun(e->pool, "b", 7), -EEXIST);
    assert_int_equal(vol_set_lun(e->pool, "a@s1", 2), -EEXIST);
    assert_int_equal(vol_set_lun(e->pool, "b", VOL_MAX_LUN + 1), -EINVAL);
    assert_int_equal(vol_set_lun(e->pool, "nosuch", 9), -ENOENT);
    unchanged(e, &before, "refused LUN changes");

    /* A snapshot given a LUN; setting a volume's own LUN again is no conflict. */
    assert_int_equal(vol_set_lun(e->pool, "a@s1", 9), 0);
    assert_int_equal(vol_set_lun(e->pool, "a", 7), 0);
    assert_int_equal(lun_of(e, "a@s1"), 9);

    /* On an open volume the change survives its handle's close and precommit writes. */
    struct vol *v;
    assert_int_equal(vol_open(e->pool, "c", 0, &v), 0);
    assert_int_equal(vol_set_lun(e->pool, "c", 12), 0);
    static uint8_t buf[4096] __attribute__((aligned(4096)));
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(vol_pwrite(v, buf, sizeof(buf), 0, 0), 0);
    assert_int_equal(pool_commit(e->pool), 0);
    assert_int_equal(vol_close(v), 0);
    assert_int_equal(lun_of(e, "c"), 12);
    assert_int_equal(vol_rename(e->pool, "c", "c2"), 0);
    assert_int_equal(lun_of(e, "c2"), 12);

    /* Taken away, and everything as it was after a reopen. */
    assert_int_equal(vol_set_lun(e->pool, "b", VOL_NO_LUN), 0);
    take_listing(e, &before);
    assert_int_equal(pool_close(e->pool), 0);
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
    unchanged(e, &before, "a reopen");
    assert_int_equal(lun_of(e, "b"), VOL_NO_LUN);
    struct pool_check_report rep;
    assert_int_equal(pool_check(e->pool, &rep), 0);
}

/* Space after a snapshot and a write: the snapshot holds what was overwritten uniquely. */
static void test_space(void **state)
{
    struct env *e = *state;
    static uint8_t buf[65536] __attribute__((aligned(4096)));
    struct vol *v;
    struct vol_space vi, si;
    assert_int_equal(vol_create(e->pool, "s", VOLSIZE, 0, NULL), 0);
    assert_int_equal(vol_open(e->pool, "s", 0, &v), 0);
    memset(buf, 1, sizeof(buf));
    assert_int_equal(vol_pwrite(v, buf, sizeof(buf), 0, 0), 0);
    assert_int_equal(vol_get_space(e->pool, "s", &vi), 0);
    assert_int_equal(vi.referenced_bytes, 65536);
    assert_int_equal(vi.unique_bytes, 65536);
    assert_int_equal(vi.written_bytes, 65536);
    struct vol_snap_spec spec = {"s", "p"};
    assert_int_equal(vol_snapshot(e->pool, &spec, 1), 0);
    assert_int_equal(vol_get_space(e->pool, "s", &vi), 0);
    assert_int_equal(vol_get_space(e->pool, "s@p", &si), 0);
    assert_int_equal(vi.unique_bytes, 0); /* all shared */
    assert_int_equal(si.unique_bytes, 0);
    assert_int_equal(vi.written_bytes, 0);
    assert_int_equal(si.written_bytes, 65536);
    memset(buf, 2, 8192);
    assert_int_equal(vol_pwrite(v, buf, 8192, 4096, 0), 0);
    assert_int_equal(vol_get_space(e->pool, "s", &vi), 0);
    assert_int_equal(vol_get_space(e->pool, "s@p", &si), 0);
    assert_int_equal(vi.referenced_bytes, 65536);
    assert_int_equal(vi.unique_bytes, 8192);
    assert_int_equal(vi.written_bytes, 8192);
    assert_int_equal(si.unique_bytes, 8192);
    assert_int_equal(vol_close(v), 0);
    /* Deleting the snapshot frees exactly its unique bytes (after the commit). */
    struct pool_stats a, b;
    assert_int_equal(pool_commit(e->pool), 0);
    pool_stat(e->pool, &a);
    assert_int_equal(vol_delete(e->pool, "s@p"), 0);
    assert_int_equal(pool_commit(e->pool), 0);
    pool_stat(e->pool, &b);
    assert_true(a.allocated_blocks - b.allocated_blocks >= si.unique_bytes / CS_BLOCK_SIZE);
    assert_int_equal(vol_get_space(e->pool, "s", &vi), 0);
    assert_int_equal(vi.unique_bytes, 65536);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_taken_and_misdirected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_luns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_space, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
