/*
 * cistern-bench-snap: what snapshots cost, measured through the volume API.
 *
 *   create   Snapshot creation time against the size of the map. Makes a pool on --file,
 *            a volume of 2 x --grains 4 KiB grains, and writes every other grain (1 MiB
 *            requests whose odd grains are zeros, which the volume leaves unmapped), so the
 *            map holds --grains extents that never merge. Then --count times: --between
 *            random 4 KiB overwrites of mapped grains (untimed: a volume in use), their
 *            commit (vol_flush, timed apart: it follows the writes and the depth of the map,
 *            and a snapshot of a volume with writes pending pays it first), and one timed
 *            vol_snapshot. Prints every creation and commit time and their medians.
 *
 *   io       I/O after a snapshot and with many. Two volumes of --span bytes in one pool,
 *            "plain" and "snapped", written whole; then --snaps rounds of --between random
 *            4 KiB writes at the same offsets on both, each round ending with a snapshot of
 *            "snapped" only (timed: creation time as snapshots accumulate). Then, in
 *            --rounds interleaved rounds of --time seconds per target:
 *              reads    4 KiB random reads at --qd on plain, snapped, and snapped's oldest
 *                       snapshot;
 *              overwrites  4 KiB random writes at --qd on plain and on snapped once every
 *                       grain of snapped has been copied since its last snapshot (a
 *                       sequential pass first): no write copies, and the snapshots are
 *                       all that differs;
 *              writes   4 KiB random writes at --qd on plain (overwritten in place), and on
 *                       snapped right after a new snapshot of it (each first write to a
 *                       grain copies it); the space each write allocated is reported.
 *
 *   prepare  The setup of io alone, on the pool of an existing member file (made by
 *            `cistern pool create`), left for `cistern serve` to export.
 *
 * Output is JSON (one object); nothing is asserted. The backing file of io should hold
 * written blocks (see vol_bench.c): --fill fills it first.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench_job.h"
#include "common/common.h"
#include "pool/pool.h"
#include "volumes/volumes.h"

const char *bench_prog = "cistern-bench-snap";

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define GRAIN 4096u

struct opts {
    const char *mode;
    const char *file;
    uint64_t grains;  /* create: mapped grains */
    unsigned count;   /* create: snapshots timed */
    unsigned between; /* 4 KiB writes before each snapshot */
    uint64_t span;    /* io, prepare: bytes of each volume */
    unsigned snaps;   /* io, prepare: snapshots of "snapped" */
    double seconds;   /* io: per target and round */
    unsigned rounds;  /* io */
    unsigned qd;
    uint64_t cache; /* metadata cache bytes; 0: the default */
    bool fill;      /* io: fill the backing file first */
    uint64_t seed;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cistern-bench-snap create --file PATH --grains N [--count K] [--between W]\n"
               "       cistern-bench-snap io --file PATH [--span SIZE] [--snaps N] [--between W]\n"
               "                             [--time S] [--rounds R] [--qd N] [--fill]\n"
               "       cistern-bench-snap prepare --file MEMBER [--span SIZE] [--snaps N]\n"
               "                                  [--between W]\n"
               "\n"
               "  --file PATH     create, io: the pool is made on it (its contents are lost);\n"
               "                  prepare: a member of an existing pool, not open elsewhere\n"
               "  --grains N      create: grains mapped, every other one of the volume\n"
               "  --count K       create: snapshots timed (default 20)\n"
               "  --between W     random 4K writes before each snapshot (default 64)\n"
               "  --span SIZE     io, prepare: size of each volume, written whole (default 2G)\n"
               "  --snaps N       io, prepare: snapshots of the volume \"snapped\" (default 1000)\n"
               "  --time S        io: seconds per target and round (default 10)\n"
               "  --rounds R      io: interleaved rounds (default 3)\n"
               "  --qd N          io: requests in flight (default 32)\n"
               "  --cache SIZE    metadata cache of the pool (default: the pool's default)\n"
               "  --fill          io: write every block of the backing file first\n"
               "  --seed N        random seed (default 1)\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},  {"grains", required_argument, NULL, 'g'},
        {"count", required_argument, NULL, 'c'}, {"between", required_argument, NULL, 'b'},
        {"span", required_argument, NULL, 'S'},  {"snaps", required_argument, NULL, 'n'},
        {"time", required_argument, NULL, 't'},  {"rounds", required_argument, NULL, 'r'},
        {"qd", required_argument, NULL, 'q'},    {"cache", required_argument, NULL, 'C'},
        {"fill", no_argument, NULL, 'F'},        {"seed", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){
        .count = 20,
        .between = 64,
        .span = 2 * GiB,
        .snaps = 1000,
        .seconds = 10,
        .rounds = 3,
        .qd = 32,
        .seed = 1,
    };
    if (argc < 2 || argv[1][0] == '-') {
        usage(stderr);
        return -EINVAL;
    }
    o->mode = argv[1];
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end = NULL;
        unsigned long long v = 0;
        if (c != 'f' && c != 'S' && c != 'C' && c != 'F' && c != 'h' && c != 't' && optarg) {
            errno = 0;
            v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end) {
                fprintf(stderr, "%s: '%s' is not a number\n", bench_prog, optarg);
                return -EINVAL;
            }
        }
        switch (c) {
        case 'f':
            o->file = optarg;
            break;
        case 'g':
            o->grains = v;
            break;
        case 'c':
            o->count = (unsigned)MIN(v, 100000ull);
            break;
        case 'b':
            o->between = (unsigned)MIN(v, 1000000ull);
            break;
        case 'S':
        case 'C': {
            uint64_t s;
            if (parse_size(optarg, &s) < 0) {
                fprintf(stderr, "%s: '%s' is not a size\n", bench_prog, optarg);
                return -EINVAL;
            }
            *(c == 'S' ? &o->span : &o->cache) = s;
            break;
        }
        case 'n':
            o->snaps = (unsigned)MIN(v, 100000ull);
            break;
        case 't':
            o->seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(o->seconds > 0 && o->seconds <= 3600)) {
                fprintf(stderr, "%s: --time: seconds, above 0, at most 3600\n", bench_prog);
                return -EINVAL;
            }
            break;
        case 'r':
            o->rounds = (unsigned)MAX(1ull, MIN(v, 100ull));
            break;
        case 'q':
            o->qd = (unsigned)MAX(1ull, MIN(v, 1024ull));
            break;
        case 'F':
            o->fill = true;
            break;
        case 'e':
            o->seed = v ? v : 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind != argc || !o->file) {
        usage(stderr);
        return -EINVAL;
    }
    if (strcmp(o->mode, "create") == 0 && o->grains == 0) {
        fprintf(stderr, "%s: create needs --grains\n", bench_prog);
        return -EINVAL;
    }
    o->span = ROUND_DOWN(o->span, MiB);
    if (o->span == 0) {
        fprintf(stderr, "%s: --span: at least 1M\n", bench_prog);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Helpers
 */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median of @n values (sorts them). */
static uint64_t median(uint64_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u64);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int open_pool(const char *file, bool create, uint64_t cache, struct pool **pool)
{
    const char *members[] = {file};
    struct pool_settings s;
    pool_settings_default(&s);
    if (cache)
        s.cache_bytes = cache;
    int r = create ? pool_create("snapbench", members, 1, &s, true) : 0;
    if (r == 0)
        r = pool_open(members, 1, 0, pool);
    if (r == 0)
        r = volumes_attach(*pool);
    if (r == 0 && cache && !create) {
        pool_md_lock(*pool);
        pool_set_settings(*pool, &s);
        pool_md_unlock(*pool);
    }
    if (r < 0)
        fprintf(stderr, "%s: %s: cannot %s the pool: %s\n", bench_prog, file,
                create ? "create" : "open", strerror(-r));
    return r;
}

/* Runs a job of @op over [0, span) of @v to its end (max_ops or deadline). */
static int run(struct vol *v, enum vol_op op, enum pattern pat, uint32_t bs, unsigned qd,
               uint64_t seed, uint64_t span, uint64_t max_ops, double seconds, bool zero_odd,
               struct result *res)
{
    struct job j;
    job_setup(&j, v, op, pat, bs, qd, SUBMIT_REACTOR, seed);
    j.span_len = span;
    j.max_ops = max_ops;
    j.deadline = seconds > 0 ? deadline_in(seconds) : 0;
    j.zero_odd_grains = zero_odd;
    struct result dummy;
    int r = job_run(&j, res ? res : &dummy);
    if (r < 0)
        fprintf(stderr, "%s: %s: %s\n", bench_prog, vol_name(v), strerror(-r));
    return r;
}

static int snapshot(struct pool *pool, const char *vol, const char *name, uint64_t *ns)
{
    struct vol_snap_spec spec = {vol, name};
    uint64_t t0 = now_ns();
    int r = vol_snapshot(pool, &spec, 1);
    *ns = now_ns() - t0;
    if (r < 0)
        fprintf(stderr, "%s: snapshot %s@%s: %s\n", bench_prog, vol, name, strerror(-r));
    return r;
}

static void print_times(const char *key, const uint64_t *ns, size_t n)
{
    printf("  \"%s\": [", key);
    for (size_t i = 0; i < n; i++)
        printf("%s%.3f", i ? ", " : "", (double)ns[i] / 1e6);
    printf("],\n");
}

/* ------------------------------------------------------------------------------------------
 * create
 */

struct count_map {
    uint64_t root;
    unsigned found;
};

/* Finds the mapping root among the references a catalog value holds (as pool_check does). */
static int find_map_root(void *ctx, uint64_t key, const void *value)
{
    struct count_map *f = ctx;
    const struct btree_type *t = btree_type_get(TREE_CATALOG);
    struct value_ref refs[VALUE_MAX_REFS];
    (void)key;
    unsigned n = t && t->refs ? t->refs(value, refs) : 0;
    for (unsigned i = 0; i < n; i++)
        if (refs[i].tree_type == TREE_MAPPING) {
            f->root = refs[i].start.v;
            f->found++;
        }
    return 0;
}

/* Entries of the only volume's map (committed state). */
static int count_extents(struct pool *pool, uint64_t *extents)
{
    struct count_map f = {0};
    pool_md_lock(pool);
    int r = btree_iterate(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), 0,
                          find_map_root, &f);
    if (r == 0 && f.found != 1)
        r = -ENOENT;
    if (r == 0)
        r = btree_count(pool, TREE_MAPPING, (pblk_t){f.root}, extents);
    pool_md_unlock(pool);
    return r;
}

static int run_create(const struct opts *o)
{
    struct pool *pool;
    struct vol *v = NULL;
    uint64_t vsize = ROUND_UP(2 * o->grains * GRAIN, MiB);
    uint64_t *ns = calloc(o->count ? o->count : 1, sizeof(*ns));
    uint64_t *commit_ns = calloc(o->count ? o->count : 1, sizeof(*commit_ns));
    int r = ns && commit_ns ? open_pool(o->file, true, o->cache, &pool) : -ENOMEM;
    if (r < 0) {
        free(ns);
        free(commit_ns);
        return r;
    }
    r = vol_create(pool, "v", vsize, GRAIN, NULL);
    if (r == 0)
        r = vol_open(pool, "v", 0, &v);
    /* Every other grain: 1 MiB writes whose odd grains are zeros, up to the grain count. */
    uint64_t t0 = now_ns();
    uint64_t reqs = DIV_ROUND_UP(o->grains, MiB / GRAIN / 2);
    if (r == 0)
        r = run(v, VOL_OP_WRITE, PAT_SEQ, MiB, 8, o->seed, vsize, reqs, 0, true, NULL);
    if (r == 0)
        r = vol_flush(v);
    double fill_s = (double)(now_ns() - t0) / 1e9;
    uint64_t extents = 0;
    struct vol_space vi = {0};
    if (r == 0)
        r = count_extents(pool, &extents);
    if (r == 0)
        r = vol_get_space(pool, "v", &vi);
    fprintf(stderr, "%s: %" PRIu64 " grains mapped in %" PRIu64 " extents (%.0f s)\n", bench_prog,
            vi.mapped_bytes / GRAIN, extents, fill_s);
    uint64_t span = reqs * MiB;
    for (unsigned i = 0; i < o->count && r == 0; i++) {
        char name[32];
        snprintf(name, sizeof(name), "s%u", i);
        if (o->between)
            r = run(v, VOL_OP_WRITE, PAT_RANDOM, 2 * GRAIN, 1, o->seed + i + 1, span, o->between, 0,
                    true, NULL);
        uint64_t t1 = now_ns();
        if (r == 0)
            r = vol_flush(v);
        commit_ns[i] = now_ns() - t1;
        if (r == 0)
            r = snapshot(pool, "v", name, &ns[i]);
    }
    if (r == 0) {
        printf("{\n  \"mode\": \"create\", \"grains\": %" PRIu64 ", \"mapped_grains\": %" PRIu64
               ", \"extents\": %" PRIu64 ", \"fill_seconds\": %.1f, \"between\": %u,\n",
               o->grains, vi.mapped_bytes / GRAIN, extents, fill_s, o->between);
        print_times("create_ms", ns, o->count);
        print_times("commit_ms", commit_ns, o->count);
        printf("  \"commit_median_ms\": %.3f,\n", (double)median(commit_ns, o->count) / 1e6);
        printf("  \"median_ms\": %.3f\n}\n", (double)median(ns, o->count) / 1e6);
    }
    int r2 = vol_close(v);
    int r3 = pool_close(pool);
    free(ns);
    free(commit_ns);
    return r ? r : r2 ? r2 : r3;
}

/* ------------------------------------------------------------------------------------------
 * io and prepare
 */

/* Writes both volumes whole, then o->snaps rounds of the same random writes on both, each
 * ending with their commit and a snapshot of "snapped"; @ns gets each snapshot's creation
 * time, @commit_ns (when not NULL) the commit of "snapped"'s writes before it. */
static int setup_volumes(struct pool *pool, const struct opts *o, struct vol **plain,
                         struct vol **snapped, uint64_t *ns, uint64_t *commit_ns)
{
    int r = 0;
    const char *names[2] = {"plain", "snapped"};
    struct vol **h[2] = {plain, snapped};
    for (int i = 0; i < 2 && r == 0; i++) {
        r = vol_create(pool, names[i], o->span, GRAIN, NULL);
        if (r == 0)
            r = vol_open(pool, names[i], 0, h[i]);
        if (r == 0)
            r = run(*h[i], VOL_OP_WRITE, PAT_SEQ, MiB, 8, o->seed, o->span, 0, 0, false, NULL);
        if (r == 0)
            r = vol_flush(*h[i]);
    }
    fprintf(stderr, "%s: %u snapshots of \"snapped\", %u writes of 4K before each\n", bench_prog,
            o->snaps, o->between);
    for (unsigned s = 0; s < o->snaps && r == 0; s++) {
        /* A commit is the pool's: each volume's writes are committed before the other's. */
        for (int i = 0; i < 2 && r == 0; i++) {
            if (o->between)
                r = run(*h[i], VOL_OP_WRITE, PAT_RANDOM, GRAIN, MIN(o->qd, o->between),
                        o->seed * 1000003 + s, o->span, o->between, 0, false, NULL);
            uint64_t t0 = now_ns();
            if (r == 0)
                r = vol_flush(*h[i]);
            if (i == 1 && commit_ns)
                commit_ns[s] = now_ns() - t0;
        }
        char name[32];
        snprintf(name, sizeof(name), "s%04u", s);
        if (r == 0)
            r = snapshot(pool, "snapped", name, &ns[s]);
    }
    if (r == 0)
        r = pool_commit(pool);
    return r;
}

static int run_prepare(const struct opts *o)
{
    struct pool *pool;
    struct vol *plain = NULL, *snapped = NULL;
    uint64_t *ns = calloc(o->snaps + 1, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    int r = open_pool(o->file, false, o->cache, &pool);
    if (r == 0) {
        r = setup_volumes(pool, o, &plain, &snapped, ns, NULL);
        int r2 = vol_close(plain), r3 = vol_close(snapped), r4 = pool_close(pool);
        r = r ? r : r2 ? r2 : r3 ? r3 : r4;
    }
    if (r == 0) {
        printf("{\n  \"mode\": \"prepare\", \"snaps\": %u, \"between\": %u,\n", o->snaps,
               o->between);
        print_times("create_ms", ns, o->snaps);
        printf("  \"median_ms\": %.3f\n}\n", (double)median(ns, o->snaps) / 1e6);
    }
    free(ns);
    return r;
}

/* "WHAT_first10_median_ms" and "WHAT_last10_median_ms": of the first and last ten of @ns. */
static void print_first_last(const char *what, const uint64_t *ns, unsigned n)
{
    uint64_t first = 0, last = 0, tmp[10];
    unsigned n10 = MIN(n / 2, 10u);
    if (n10) {
        memcpy(tmp, ns, n10 * sizeof(*tmp));
        first = median(tmp, n10);
        memcpy(tmp, ns + n - n10, n10 * sizeof(*tmp));
        last = median(tmp, n10);
    }
    printf("  \"%s_first10_median_ms\": %.3f, \"%s_last10_median_ms\": %.3f,\n", what,
           (double)first / 1e6, what, (double)last / 1e6);
}

static uint64_t allocated(struct pool *pool)
{
    struct pool_stats st;
    pool_stat(pool, &st);
    return st.allocated_blocks * CS_BLOCK_SIZE;
}

struct acc {
    uint64_t ops;
    double secs;
};

static void acc_add(struct acc *a, const struct result *res)
{
    a->ops += res->ops;
    a->secs += res->seconds;
}

static double acc_iops(const struct acc *a)
{
    return a->secs > 0 ? (double)a->ops / a->secs : 0;
}

static int run_io(const struct opts *o)
{
    struct pool *pool;
    struct vol *plain = NULL, *snapped = NULL, *oldest = NULL;
    uint64_t *ns = calloc(o->snaps + o->rounds + 1, sizeof(*ns));
    uint64_t *commit_ns = calloc(o->snaps + 1, sizeof(*commit_ns));
    if (!ns || !commit_ns) {
        free(ns);
        free(commit_ns);
        return -ENOMEM;
    }
    uint64_t fsize;
    int r = 0;
    if (o->fill) {
        r = file_size(o->file, &fsize);
        if (r == 0) {
            fprintf(stderr, "%s: filling %s\n", bench_prog, o->file);
            r = fill_file(o->file, fsize);
        }
    }
    if (r == 0)
        r = open_pool(o->file, true, o->cache, &pool);
    if (r < 0) {
        free(ns);
        free(commit_ns);
        return r;
    }
    r = setup_volumes(pool, o, &plain, &snapped, ns, commit_ns);
    if (r == 0 && o->snaps)
        r = vol_open(pool, "snapped@s0000", VOL_OPEN_RDONLY, &oldest);

    /* Reads, interleaved: plain, snapped, the oldest snapshot, in an order rotated per
     * round so that none always goes first. */
    struct vol *rt[3] = {plain, snapped, oldest};
    struct acc rd[3] = {{0}}, wr[2] = {{0}};
    unsigned ntargets = oldest ? 3 : 2;
    fprintf(stderr, "%s: random reads, %u rounds of %.0f s per target\n", bench_prog, o->rounds,
            o->seconds);
    for (unsigned k = 0; k < o->rounds && r == 0; k++)
        for (unsigned t = 0; t < ntargets && r == 0; t++) {
            unsigned i = (k + t) % ntargets;
            struct result res;
            r = run(rt[i], VOL_OP_READ, PAT_RANDOM, GRAIN, o->qd, o->seed + 7 * k + i, o->span, 0,
                    o->seconds, false, &res);
            acc_add(&rd[i], &res);
        }

    /* Writes on the volume with its snapshots once every grain has been copied since the
     * last one (a sequential pass first, untimed), interleaved with writes on plain: what
     * the number of snapshots costs a write that no longer copies. */
    struct acc steady[2] = {{0}};
    if (r == 0)
        r = run(snapped, VOL_OP_WRITE, PAT_SEQ, MiB, 8, o->seed + 5, o->span, 0, 0, false, NULL);
    if (r == 0)
        r = vol_flush(snapped);
    fprintf(stderr, "%s: random overwrites, %u rounds of %.0f s per target\n", bench_prog,
            o->rounds, o->seconds);
    for (unsigned k = 0; k < o->rounds && r == 0; k++)
        for (unsigned t = 0; t < 2 && r == 0; t++) {
            unsigned i = (k + t) % 2;
            struct result res;
            r = run(i ? snapped : plain, VOL_OP_WRITE, PAT_RANDOM, GRAIN, o->qd,
                    o->seed + 13 * k + i, o->span, 0, o->seconds, false, &res);
            if (r == 0)
                r = vol_flush(i ? snapped : plain);
            acc_add(&steady[i], &res);
        }

    /* Writes, interleaved: plain (in place), then snapped right after a new snapshot. */
    uint64_t alloc[2] = {0};
    fprintf(stderr, "%s: random writes, %u rounds of %.0f s per target\n", bench_prog, o->rounds,
            o->seconds);
    for (unsigned k = 0; k < o->rounds && r == 0; k++)
        for (unsigned t = 0; t < 2 && r == 0; t++) {
            unsigned i = (k + t) % 2;
            struct result res;
            if (i == 1) {
                char name[32];
                snprintf(name, sizeof(name), "w%u", k);
                r = snapshot(pool, "snapped", name, &ns[o->snaps + k]);
                if (r < 0)
                    break;
            }
            uint64_t before = allocated(pool);
            r = run(i ? snapped : plain, VOL_OP_WRITE, PAT_RANDOM, GRAIN, o->qd,
                    o->seed + 11 * k + i, o->span, 0, o->seconds, false, &res);
            if (r == 0)
                r = vol_flush(i ? snapped : plain); /* its commit lands here, not in the next */
            acc_add(&wr[i], &res);
            alloc[i] += allocated(pool) - before;
        }
    if (r == 0) {
        printf("{\n  \"mode\": \"io\", \"span\": %" PRIu64 ", \"snaps\": %u, \"between\": %u"
               ", \"qd\": %u, \"rounds\": %u, \"seconds\": %.1f,\n",
               o->span, o->snaps, o->between, o->qd, o->rounds, o->seconds);
        print_first_last("create", ns, o->snaps);
        print_first_last("commit", commit_ns, o->snaps);
        print_times("create_ms", ns, o->snaps);
        print_times("commit_ms", commit_ns, o->snaps);
        printf(
            "  \"read_iops\": {\"plain\": %.0f, \"snapped\": %.0f, \"oldest_snapshot\": %.0f},\n",
            acc_iops(&rd[0]), acc_iops(&rd[1]), acc_iops(&rd[2]));
        printf("  \"overwrite_iops\": {\"plain\": %.0f, \"snapped\": %.0f},\n",
               acc_iops(&steady[0]), acc_iops(&steady[1]));
        printf("  \"write_iops\": {\"plain\": %.0f, \"after_snapshot\": %.0f},\n", acc_iops(&wr[0]),
               acc_iops(&wr[1]));
        printf("  \"write_alloc_kib_per_op\": {\"plain\": %.2f, \"after_snapshot\": %.2f}\n}\n",
               wr[0].ops ? (double)alloc[0] / 1024 / (double)wr[0].ops : 0,
               wr[1].ops ? (double)alloc[1] / 1024 / (double)wr[1].ops : 0);
    }
    int r2 = vol_close(oldest), r3 = vol_close(plain), r4 = vol_close(snapped);
    int r5 = pool_close(pool);
    free(ns);
    free(commit_ns);
    return r ? r : r2 ? r2 : r3 ? r3 : r4 ? r4 : r5;
}

int main(int argc, char **argv)
{
    struct opts o;
    log_set_prefix(bench_prog);
    if (getenv("CISTERN_LOG") == NULL)
        log_set_level(LOG_WARN);
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    int r;
    if (strcmp(o.mode, "create") == 0) {
        r = run_create(&o);
    } else if (strcmp(o.mode, "io") == 0) {
        r = run_io(&o);
    } else if (strcmp(o.mode, "prepare") == 0) {
        r = run_prepare(&o);
    } else {
        usage(stderr);
        r = -EINVAL;
    }
    fflush(stdout);
    pool_reactors_shutdown();
    if (r < 0)
        fprintf(stderr, "%s: %s\n", bench_prog, strerror(-r));
    return r < 0 ? 1 : 0;
}
