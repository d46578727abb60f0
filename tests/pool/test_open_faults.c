/*
 * Opening a pool from damaged, missing, foreign or misused members. Each case starts from a
 * fresh pool on three sparse member files holding one volume with known data, committed and
 * closed, then damages or misuses the members and checks that:
 *   - the open (or the first read of the damaged tree) fails with the documented error and a
 *     log line that names the cause, or falls back to what is still valid (the other
 *     superblock slot, the label copy at the end);
 *   - nothing is written to the members when the pool refuses (contents and mtimes are
 *     compared before and after);
 *   - what still opens reads back the data of the state it opened, and pool_check agrees.
 * Run under ASan as well: none of this may crash or read out of bounds.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <sys/stat.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define NMEMBERS 3
#define MEMBER_BYTES (16ull << 20)
#define VOL_BYTES (4ull << 20)
#define GRAIN (64u << 10)
#define DATA_A_OFF 0ull
#define DATA_A_LEN (1ull << 20)
#define DATA_B_OFF (2ull << 20)
#define DATA_B_LEN (512ull << 10)

struct fx {
    struct scratch s;
    uint8_t *a, *b; /* the contents of the two data regions */
    uint8_t *rbuf;
    char log[1 << 16]; /* stderr captured around the last call checked */
};

/* ------------------------------------------------------------------------------------------
 * Helpers: stderr capture, raw member access, member snapshots
 */

static int saved_err = -1;
static FILE *cap;

static void capture_start(void)
{
    fflush(stderr);
    cap = tmpfile();
    assert_non_null(cap);
    saved_err = dup(STDERR_FILENO);
    assert_true(saved_err >= 0);
    assert_true(dup2(fileno(cap), STDERR_FILENO) >= 0);
}

/* Restores stderr, keeps what was logged in f->log and shows it on stderr too. */
static void capture_stop(struct fx *f)
{
    fflush(stderr);
    assert_true(dup2(saved_err, STDERR_FILENO) >= 0);
    close(saved_err);
    rewind(cap);
    size_t n = fread(f->log, 1, sizeof(f->log) - 1, cap);
    f->log[n] = 0;
    fclose(cap);
    fputs(f->log, stderr);
}

static void log_has(struct fx *f, const char *what)
{
    if (!strstr(f->log, what))
        fail_msg("expected the log to mention \"%s\"; it said:\n%s", what, f->log);
}

static void block_rw(const char *path, uint64_t blk, void *buf, bool write)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t at = (off_t)(blk * CS_BLOCK_SIZE);
    ssize_t n = write ? pwrite(fd, buf, CS_BLOCK_SIZE, at) : pread(fd, buf, CS_BLOCK_SIZE, at);
    assert_int_equal(n, CS_BLOCK_SIZE);
    if (write)
        assert_int_equal(fsync(fd), 0);
    close(fd);
}

static void block_read(const char *path, uint64_t blk, void *buf)
{
    block_rw(path, blk, buf, false);
}
static void block_write(const char *path, uint64_t blk, const void *buf)
{
    block_rw(path, blk, (void *)buf, true);
}

/* Flips @len bytes at @at in block @blk of @path. */
static void block_flip(const char *path, uint64_t blk, size_t at, size_t len)
{
    uint8_t buf[CS_BLOCK_SIZE];
    block_read(path, blk, buf);
    for (size_t i = at; i < at + len; i++)
        buf[i] ^= 0xa5;
    block_write(path, blk, buf);
}

/* Recomputes a metadata block's checksum after a deliberate edit (a "valid" hostile block). */
static void md_restamp(void *block)
{
    struct md_header *h = block;
    h->csum = crc32c(h->magic, (const char *)block + 4, CS_BLOCK_SIZE - 4);
}

/* The slot (0 or 1) of @path holding the newest superblock, and that superblock. */
static unsigned newest_super(const char *path, struct disk_super *out)
{
    struct disk_super s[2];
    for (unsigned i = 0; i < 2; i++) {
        block_read(path, CS_SUPER_BLOCK0 + i, &s[i]);
        assert_int_equal(s[i].h.magic, MD_MAGIC_SUPER);
    }
    unsigned best = s[1].h.generation > s[0].h.generation;
    *out = s[best];
    return best;
}

struct member_snap {
    uint32_t crc;
    off_t size;
    struct timespec mtime;
};

static void snap_members(const char *const *paths, unsigned n, struct member_snap *out)
{
    static uint8_t buf[1 << 20];
    for (unsigned i = 0; i < n; i++) {
        int fd = open(paths[i], O_RDONLY);
        assert_true(fd >= 0);
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        out[i].size = st.st_size;
        out[i].mtime = st.st_mtim;
        uint32_t c = 0;
        ssize_t r;
        while ((r = read(fd, buf, sizeof(buf))) > 0)
            c = crc32c(c, buf, (size_t)r);
        assert_true(r == 0);
        out[i].crc = c;
        close(fd);
    }
}

static void same_members(const char *const *paths, unsigned n, const struct member_snap *before)
{
    struct member_snap after[8];
    snap_members(paths, n, after);
    for (unsigned i = 0; i < n; i++) {
        if (after[i].crc != before[i].crc || after[i].size != before[i].size)
            fail_msg("member %s was written although the pool refused to open", paths[i]);
        if (after[i].mtime.tv_sec != before[i].mtime.tv_sec ||
            after[i].mtime.tv_nsec != before[i].mtime.tv_nsec)
            fail_msg("member %s was modified (mtime) although the pool refused to open", paths[i]);
    }
}

/* Opens with @paths and expects @err, writing nothing; the log is kept in f->log. */
static void open_refused(struct fx *f, const char *const *paths, unsigned n, unsigned flags,
                         int err)
{
    struct member_snap before[8];
    snap_members(paths, n, before);
    struct pool *pool = NULL;
    capture_start();
    int r = pool_open(paths, n, flags, &pool);
    capture_stop(f);
    if (r == 0)
        pool_close(pool);
    if (r != err)
        fail_msg("pool_open returned %d (%s), expected %d (%s)", r, strerror(-r), err,
                 strerror(-err));
    same_members(paths, n, before);
}

/* ------------------------------------------------------------------------------------------
 * The pool every case starts from
 */

static void fill_pattern(uint8_t *p, size_t len, uint64_t seed)
{
    struct rng r = {seed};
    fill_random(&r, p, len);
}

static struct pool *open_ok(const char *const *paths, unsigned n)
{
    struct pool *pool;
    int r = pool_open(paths, n, 0, &pool);
    if (r != 0)
        fail_msg("pool_open: %s", strerror(-r));
    assert_int_equal(volumes_attach(pool), 0);
    return pool;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->a = aligned_alloc(4096, DATA_A_LEN);
    f->b = aligned_alloc(4096, DATA_B_LEN);
    f->rbuf = aligned_alloc(4096, VOL_BYTES);
    fill_pattern(f->a, DATA_A_LEN, 0x5eed0001);
    fill_pattern(f->b, DATA_B_LEN, 0x5eed0002);
    scratch_make(&f->s, NMEMBERS, MEMBER_BYTES);
    assert_int_equal(pool_create("faults", f->s.paths, f->s.n, NULL, false), 0);
    struct pool *pool = open_ok(f->s.paths, f->s.n);
    assert_int_equal(vol_create(pool, "data", VOL_BYTES, GRAIN, NULL), 0);
    struct vol *v;
    assert_int_equal(vol_open(pool, "data", 0, &v), 0);
    assert_int_equal(vol_pwrite(v, f->a, DATA_A_LEN, DATA_A_OFF, 0), 0);
    assert_int_equal(vol_close(v), 0);
    assert_int_equal(pool_close(pool), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    scratch_remove(&f->s);
    free(f->a);
    free(f->b);
    free(f->rbuf);
    free(f);
    return 0;
}

/* Writes region B and commits: a second generation whose older slot holds the first. */
static uint64_t commit_region_b(struct fx *f)
{
    struct pool *pool = open_ok(f->s.paths, f->s.n);
    struct vol *v;
    assert_int_equal(vol_open(pool, "data", 0, &v), 0);
    assert_int_equal(vol_pwrite(v, f->b, DATA_B_LEN, DATA_B_OFF, 0), 0);
    assert_int_equal(vol_close(v), 0);
    uint64_t gen = pool_generation(pool);
    assert_int_equal(pool_close(pool), 0);
    return gen;
}

/* Checks the volume's contents: region A always, region B written or still zero. */
static void check_data(struct fx *f, struct pool *pool, bool with_b)
{
    struct vol *v;
    assert_int_equal(vol_open(pool, "data", VOL_OPEN_RDONLY, &v), 0);
    assert_int_equal(vol_pread(v, f->rbuf, VOL_BYTES, 0), 0);
    if (memcmp(f->rbuf + DATA_A_OFF, f->a, DATA_A_LEN) != 0)
        fail_msg("region A does not read back");
    if (with_b) {
        if (memcmp(f->rbuf + DATA_B_OFF, f->b, DATA_B_LEN) != 0)
            fail_msg("region B does not read back");
    } else if (!buf_is_zero(f->rbuf + DATA_B_OFF, DATA_B_LEN)) {
        fail_msg("region B holds data although the state opened predates it");
    }
    assert_int_equal(vol_close(v), 0);
    struct pool_check_report rep;
    if (pool_check(pool, &rep) != 0)
        fail_msg("pool check found %u problems", rep.errors);
}

/* ------------------------------------------------------------------------------------------
 * Damaged trees
 */

/* The catalog's root leaf: the first record's mapping root is the first 8 bytes of its
 * value. */
static uint64_t first_map_root(const char *const *paths, uint64_t catalog_root)
{
    uint8_t node[CS_BLOCK_SIZE];
    pblk_t p = {catalog_root};
    block_read(paths[pblk_member(p)], pblk_offset(p), node);
    const struct disk_node_header *h = (const void *)node;
    assert_true(h->flags & NODE_FLAG_LEAF);
    assert_int_equal(h->nr_entries, 1);
    uint64_t root;
    memcpy(&root, node + sizeof(*h) + 8u * h->max_entries, 8);
    return root;
}

static void node_name(uint64_t b, char *out, size_t len)
{
    snprintf(out, len, "node %#llx", (unsigned long long)b);
}

static void test_refcount_root_corrupt(void **state)
{
    struct fx *f = *state;
    struct disk_super sb;
    newest_super(f->s.paths[0], &sb);
    pblk_t root = {sb.roots[POOL_ROOT_REFCOUNT]};
    assert_false(pblk_is_none(root));
    block_flip(f->s.paths[pblk_member(root)], pblk_offset(root), 1000, 16);
    char name[64];
    node_name(root.v, name, sizeof(name));

    /* The space map is loaded at open: the open itself must fail, naming the node. */
    open_refused(f, f->s.paths, f->s.n, 0, -EUCLEAN);
    log_has(f, name);
    log_has(f, "checksum");
    open_refused(f, f->s.paths, f->s.n, POOL_OPEN_RDONLY, -EUCLEAN);
    log_has(f, name);
}

static void test_refcount_root_misdirected(void **state)
{
    struct fx *f = *state;
    struct disk_super sb;
    newest_super(f->s.paths[0], &sb);
    /* A valid node of another tree, written at the refcount root's address. */
    pblk_t root = {sb.roots[POOL_ROOT_REFCOUNT]}, cat = {sb.roots[POOL_ROOT_CATALOG]};
    uint8_t node[CS_BLOCK_SIZE];
    block_read(f->s.paths[pblk_member(cat)], pblk_offset(cat), node);
    block_write(f->s.paths[pblk_member(root)], pblk_offset(root), node);
    char name[64];
    node_name(root.v, name, sizeof(name));
    open_refused(f, f->s.paths, f->s.n, 0, -EUCLEAN);
    log_has(f, name);
    log_has(f, "misdirected");
}

static void test_catalog_root_corrupt(void **state)
{
    struct fx *f = *state;
    struct disk_super sb;
    newest_super(f->s.paths[0], &sb);
    pblk_t root = {sb.roots[POOL_ROOT_CATALOG]};
    assert_false(pblk_is_none(root));
    block_flip(f->s.paths[pblk_member(root)], pblk_offset(root), 300, 8);
    char name[64];
    node_name(root.v, name, sizeof(name));

    struct member_snap before[NMEMBERS];
    snap_members(f->s.paths, f->s.n, before);
    struct pool *pool = open_ok(f->s.paths, f->s.n);
    struct vol *v = NULL;
    capture_start();
    int r = vol_open(pool, "data", 0, &v);
    capture_stop(f);
    assert_int_equal(r, -EUCLEAN);
    log_has(f, name);
    /* A catalog change must fail the same way, and write nothing. */
    capture_start();
    r = vol_create(pool, "another", VOL_BYTES, GRAIN, NULL);
    capture_stop(f);
    assert_int_equal(r, -EUCLEAN);
    struct pool_check_report rep;
    capture_start();
    r = pool_check(pool, &rep);
    capture_stop(f);
    assert_int_equal(r, -EUCLEAN);
    assert_true(rep.errors > 0);
    log_has(f, name);
    assert_int_equal(pool_close(pool), 0);
    same_members(f->s.paths, f->s.n, before);
}

static void test_mapping_root_corrupt(void **state)
{
    struct fx *f = *state;
    struct disk_super sb;
    newest_super(f->s.paths[0], &sb);
    pblk_t root = {first_map_root(f->s.paths, sb.roots[POOL_ROOT_CATALOG])};
    assert_false(pblk_is_none(root));
    block_flip(f->s.paths[pblk_member(root)], pblk_offset(root), 64, 4);
    char name[64];
    node_name(root.v, name, sizeof(name));

    struct member_snap before[NMEMBERS];
    snap_members(f->s.paths, f->s.n, before);
    struct pool *pool = open_ok(f->s.paths, f->s.n);
    struct vol *v;
    assert_int_equal(vol_open(pool, "data", 0, &v), 0);
    capture_start();
    int r = vol_pread(v, f->rbuf, DATA_A_LEN, DATA_A_OFF);
    capture_stop(f);
    assert_int_equal(r, -EUCLEAN);
    log_has(f, name);
    /* Writes through the damaged map are refused before anything reaches the members. */
    capture_start();
    r = vol_pwrite(v, f->b, DATA_B_LEN, DATA_B_OFF, 0);
    capture_stop(f);
    assert_int_equal(r, -EUCLEAN);
    assert_int_equal(vol_close(v), 0);
    struct pool_check_report rep;
    capture_start();
    r = pool_check(pool, &rep);
    capture_stop(f);
    assert_int_equal(r, -EUCLEAN);
    log_has(f, name);
    assert_int_equal(pool_close(pool), 0);
    same_members(f->s.paths, f->s.n, before);
}

static void test_root_outside_members(void **state)
{
    struct fx *f = *state;
    /* A checksum-valid superblock whose refcount root points past every member. */
    for (unsigned i = 0; i < NMEMBERS; i++) {
        struct disk_super sb;
        unsigned slot = newest_super(f->s.paths[i], &sb);
        sb.roots[POOL_ROOT_REFCOUNT] = pblk_make(NMEMBERS + 7, 300).v;
        md_restamp(&sb);
        block_write(f->s.paths[i], CS_SUPER_BLOCK0 + slot, &sb);
    }
    open_refused(f, f->s.paths, f->s.n, 0, -EUCLEAN);
}

/* ------------------------------------------------------------------------------------------
 * Superblocks
 */

static void test_super_newest_corrupt(void **state)
{
    struct fx *f = *state;
    uint64_t gen = commit_region_b(f);
    for (unsigned i = 0; i < NMEMBERS; i++) {
        struct disk_super sb;
        unsigned slot = newest_super(f->s.paths[i], &sb);
        assert_int_equal(sb.h.generation, gen);
        block_flip(f->s.paths[i], CS_SUPER_BLOCK0 + slot, 200, 8);
    }
    struct pool *pool;
    capture_start();
    int r = pool_open(f->s.paths, f->s.n, 0, &pool);
    capture_stop(f);
    assert_int_equal(r, 0);
    log_has(f, "superblock slot");
    assert_int_equal(pool_generation(pool), gen - 1);
    assert_int_equal(volumes_attach(pool), 0);
    check_data(f, pool, false);
    /* The pool goes on from there: a new commit lands in the damaged slot. */
    struct vol *v;
    assert_int_equal(vol_open(pool, "data", 0, &v), 0);
    assert_int_equal(vol_pwrite(v, f->b, DATA_B_LEN, DATA_B_OFF, 0), 0);
    assert_int_equal(vol_close(v), 0);
    assert_int_equal(pool_close(pool), 0);
    pool = open_ok(f->s.paths, f->s.n);
    check_data(f, pool, true);
    assert_int_equal(pool_close(pool), 0);
}

static void test_super_one_copy_corrupt(void **state)
{
    struct fx *f = *state;
    uint64_t gen = commit_region_b(f);
    /* The newest slot of one member only: the other members still carry that generation. */
    struct disk_super sb;
    unsigned slot = newest_super(f->s.paths[1], &sb);
    block_flip(f->s.paths[1], CS_SUPER_BLOCK0 + slot, 100, 1);
    struct pool *pool;
    capture_start();
    int r = pool_open(f->s.paths, f->s.n, 0, &pool);
    capture_stop(f);
    assert_int_equal(r, 0);
    log_has(f, "superblock slot");
    assert_int_equal(pool_generation(pool), gen);
    assert_int_equal(volumes_attach(pool), 0);
    check_data(f, pool, true);
    assert_int_equal(pool_close(pool), 0);
}

static void test_super_both_corrupt(void **state)
{
    struct fx *f = *state;
    for (unsigned i = 0; i < NMEMBERS; i++)
        for (unsigned s = 0; s < CS_SUPER_SLOTS; s++)
            block_flip(f->s.paths[i], CS_SUPER_BLOCK0 + s, 500, 3);
    open_refused(f, f->s.paths, f->s.n, 0, -EUCLEAN);
    log_has(f, "no valid superblock");
    open_refused(f, f->s.paths, f->s.n, POOL_OPEN_RDONLY, -EUCLEAN);
}

static void test_super_newer_version(void **state)
{
    struct fx *f = *state;
    uint64_t gen = commit_region_b(f);
    /* The newest superblock, valid, but written by a newer format: it must not be skipped
     * in favour of the older slot (the next commit would overwrite the newer state). */
    for (unsigned i = 0; i < NMEMBERS; i++) {
        struct disk_super sb;
        unsigned slot = newest_super(f->s.paths[i], &sb);
        assert_int_equal(sb.h.generation, gen);
        sb.format_version = CS_FORMAT_VERSION + 1;
        md_restamp(&sb);
        block_write(f->s.paths[i], CS_SUPER_BLOCK0 + slot, &sb);
    }
    open_refused(f, f->s.paths, f->s.n, 0, -EPROTONOSUPPORT);
    log_has(f, "version");
}

/* ------------------------------------------------------------------------------------------
 * Members
 */

static void test_truncated_member(void **state)
{
    struct fx *f = *state;
    static const uint64_t sizes[] = {
        MEMBER_BYTES - 100,     /* a part of the last block (label copy B) */
        MEMBER_BYTES / 2,       /* half of it */
        CS_BLOCK_SIZE * 3 + 17, /* the label and the superblocks, no space */
    };
    for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
        assert_int_equal(truncate(f->s.paths[2], (off_t)sizes[i]), 0);
        open_refused(f, f->s.paths, f->s.n, 0, -EUCLEAN);
        log_has(f, f->s.paths[2]);
        log_has(f, "shorter");
        log_has(f, "truncated");
    }
    /* Given back its full size (the lost tail reads as zeros), the pool opens. */
    assert_int_equal(truncate(f->s.paths[2], (off_t)MEMBER_BYTES), 0);
}

static void test_missing_member(void **state)
{
    struct fx *f = *state;
    const char *without1[] = {f->s.paths[0], f->s.paths[2]};
    open_refused(f, without1, 2, 0, -ENOENT);
    log_has(f, "member 1 ");
    log_has(f, "missing");
    const char *without0[] = {f->s.paths[2], f->s.paths[1]};
    open_refused(f, without0, 2, 0, -ENOENT);
    log_has(f, "member 0 ");
    /* A path that does not exist at all. */
    char gone[400];
    snprintf(gone, sizeof(gone), "%s/nothing-here", f->s.dir);
    const char *withgone[] = {f->s.paths[0], f->s.paths[1], gone};
    struct pool *pool;
    capture_start();
    int r = pool_open(withgone, 3, 0, &pool);
    capture_stop(f);
    assert_int_equal(r, -ENOENT);
    log_has(f, gone);
}

static void test_foreign_member(void **state)
{
    struct fx *f = *state;
    struct scratch o;
    scratch_make(&o, 2, MEMBER_BYTES);
    assert_int_equal(pool_create("other", o.paths, o.n, NULL, false), 0);
    const char *mixed[] = {f->s.paths[0], f->s.paths[1], f->s.paths[2], o.paths[1]};
    open_refused(f, mixed, 4, 0, -EXDEV);
    log_has(f, o.paths[1]);
    const char *mixed2[] = {o.paths[0], f->s.paths[1], f->s.paths[2]};
    open_refused(f, mixed2, 3, 0, -EXDEV);
    /* A blank file among the members is not a member of anything. */
    struct scratch blank;
    scratch_make(&blank, 1, MEMBER_BYTES);
    const char *withblank[] = {f->s.paths[0], f->s.paths[1], f->s.paths[2], blank.paths[0]};
    struct member_snap before[4];
    snap_members(withblank, 4, before);
    struct pool *pool = NULL;
    capture_start();
    int r = pool_open(withblank, 4, 0, &pool);
    capture_stop(f);
    assert_true(r < 0);
    log_has(f, blank.paths[0]);
    same_members(withblank, 4, before);
    scratch_remove(&blank);
    scratch_remove(&o);
}

static void test_member_in_use(void **state)
{
    struct fx *f = *state;
    struct pool *first = open_ok(f->s.paths, f->s.n);
    struct member_snap before[NMEMBERS];
    snap_members(f->s.paths, f->s.n, before);
    struct pool *second = NULL;
    capture_start();
    int r = pool_open(f->s.paths, f->s.n, 0, &second);
    capture_stop(f);
    assert_int_equal(r, -EBUSY);
    log_has(f, "in use");
    /* Even one member held is enough, whichever it is. */
    const char *reordered[] = {f->s.paths[2], f->s.paths[0], f->s.paths[1]};
    capture_start();
    r = pool_open(reordered, 3, POOL_OPEN_RDONLY, &second);
    capture_stop(f);
    assert_int_equal(r, -EBUSY);
    /* Creating a pool on a member in use. */
    capture_start();
    r = pool_create("thief", f->s.paths, 1, NULL, true);
    capture_stop(f);
    assert_int_equal(r, -EBUSY);
    assert_int_equal(pool_close(first), 0);
    same_members(f->s.paths, f->s.n, before);
}

static void test_create_on_member(void **state)
{
    struct fx *f = *state;
    struct scratch fresh;
    scratch_make(&fresh, 1, MEMBER_BYTES);
    const char *paths[] = {fresh.paths[0], f->s.paths[1]};
    struct member_snap before[2];
    snap_members(paths, 2, before);
    capture_start();
    int r = pool_create("second", paths, 2, NULL, false);
    capture_stop(f);
    assert_int_equal(r, -EEXIST);
    log_has(f, f->s.paths[1]);
    log_has(f, "faults");
    same_members(paths, 2, before);
    /* The pool is untouched and still opens. */
    struct pool *pool = open_ok(f->s.paths, f->s.n);
    check_data(f, pool, false);
    assert_int_equal(pool_close(pool), 0);
    /* With force, the member is taken: the old pool loses it. */
    assert_int_equal(pool_create("second", paths, 2, NULL, true), 0);
    struct pool_label_info li;
    assert_int_equal(pool_read_label(f->s.paths[1], &li), 0);
    assert_string_equal(li.pool_name, "second");
    open_refused(f, f->s.paths, f->s.n, 0, -EXDEV);
    scratch_remove(&fresh);
}

static void test_members_reordered(void **state)
{
    struct fx *f = *state;
    static const unsigned orders[][NMEMBERS] = {{2, 1, 0}, {1, 2, 0}, {2, 0, 1}};
    for (unsigned o = 0; o < ARRAY_SIZE(orders); o++) {
        const char *paths[NMEMBERS];
        for (unsigned i = 0; i < NMEMBERS; i++)
            paths[i] = f->s.paths[orders[o][i]];
        struct pool *pool = open_ok(paths, NMEMBERS);
        check_data(f, pool, false);
        struct pool_member_info mi;
        for (unsigned i = 0; i < NMEMBERS; i++) {
            pool_member_info(pool, i, &mi);
            assert_string_equal(mi.path, f->s.paths[i]);
        }
        assert_int_equal(pool_close(pool), 0);
    }
}

static void test_label_a_corrupt(void **state)
{
    struct fx *f = *state;
    block_flip(f->s.paths[1], CS_LABEL_BLOCK, 40, 16);
    struct pool_label_info li;
    assert_int_equal(pool_read_label(f->s.paths[1], &li), 0);
    assert_int_equal(li.member_index, 1);
    assert_string_equal(li.pool_name, "faults");
    struct pool *pool = open_ok(f->s.paths, f->s.n);
    check_data(f, pool, false);
    assert_int_equal(pool_close(pool), 0);
    /* Both copies gone: the member is not recognised, and nothing is written. */
    block_flip(f->s.paths[1], MEMBER_BYTES / CS_BLOCK_SIZE - 1, 40, 16);
    struct member_snap before[NMEMBERS];
    snap_members(f->s.paths, f->s.n, before);
    capture_start();
    int r = pool_open(f->s.paths, f->s.n, 0, &pool);
    capture_stop(f);
    assert_true(r < 0);
    log_has(f, f->s.paths[1]);
    log_has(f, "label");
    same_members(f->s.paths, f->s.n, before);
}

static void test_member_twice(void **state)
{
    struct fx *f = *state;
    const char *twice[] = {f->s.paths[0], f->s.paths[1], f->s.paths[2], f->s.paths[1]};
    open_refused(f, twice, 4, 0, -EINVAL);
    if (!strstr(f->log, "twice") && !strstr(f->log, "same member"))
        fail_msg("the log does not say a member was given twice:\n%s", f->log);
    /* The same file under another name. */
    char alias[400];
    snprintf(alias, sizeof(alias), "%s/./m1", f->s.dir);
    const char *aliased[] = {f->s.paths[0], f->s.paths[1], f->s.paths[2], alias};
    open_refused(f, aliased, 4, 0, -EINVAL);
    /* And at create time. */
    struct scratch fresh;
    scratch_make(&fresh, 1, MEMBER_BYTES);
    const char *ctwice[] = {fresh.paths[0], fresh.paths[0]};
    capture_start();
    int r = pool_create("dup", ctwice, 2, NULL, false);
    capture_stop(f);
    assert_int_equal(r, -EINVAL);
    scratch_remove(&fresh);
}

static void test_label_newer_version(void **state)
{
    struct fx *f = *state;
    struct disk_label l;
    block_read(f->s.paths[0], CS_LABEL_BLOCK, &l);
    l.format_version = CS_FORMAT_VERSION + 1;
    md_restamp(&l);
    block_write(f->s.paths[0], CS_LABEL_BLOCK, &l);
    open_refused(f, f->s.paths, f->s.n, 0, -EPROTONOSUPPORT);
    log_has(f, f->s.paths[0]);
    log_has(f, "version");
    /* Not reusable without force either. */
    struct member_snap before[1];
    snap_members(f->s.paths, 1, before);
    capture_start();
    int r = pool_create("again", f->s.paths, 1, NULL, false);
    capture_stop(f);
    assert_int_equal(r, -EEXIST);
    same_members(f->s.paths, 1, before);
}

static void test_label_hostile_index(void **state)
{
    struct fx *f = *state;
    /* Checksum-valid labels that lie: a member index out of range, a size larger than the
     * file. Neither may be followed. */
    struct disk_label l;
    block_read(f->s.paths[2], CS_LABEL_BLOCK, &l);
    l.member_index = 0xffff;
    l.h.blocknr = pblk_make(0xffff, CS_LABEL_BLOCK).v;
    md_restamp(&l);
    block_write(f->s.paths[2], CS_LABEL_BLOCK, &l);
    struct member_snap before[NMEMBERS];
    snap_members(f->s.paths, f->s.n, before);
    struct pool *pool = NULL;
    capture_start();
    int r = pool_open(f->s.paths, f->s.n, 0, &pool);
    capture_stop(f);
    if (r == 0) {
        /* Tolerated only if the superblock's table placed the member correctly. */
        assert_int_equal(volumes_attach(pool), 0);
        check_data(f, pool, false);
        pool_abandon(pool);
    }
    same_members(f->s.paths, f->s.n, before);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_refcount_root_corrupt),  T(test_refcount_root_misdirected),
        T(test_catalog_root_corrupt),   T(test_mapping_root_corrupt),
        T(test_root_outside_members),   T(test_super_newest_corrupt),
        T(test_super_one_copy_corrupt), T(test_super_both_corrupt),
        T(test_super_newer_version),    T(test_truncated_member),
        T(test_missing_member),         T(test_foreign_member),
        T(test_member_in_use),          T(test_create_on_member),
        T(test_members_reordered),      T(test_label_a_corrupt),
        T(test_member_twice),           T(test_label_newer_version),
        T(test_label_hostile_index),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
