/*
 * cistern-bench-vol: the foundation benchmark of the volume I/O path.
 *
 * Creates a pool on one backing file, a volume in it, and measures through the asynchronous
 * volume API (vol_submit) with a window of --qd requests in flight:
 *
 *   seqwrite         1 MiB sequential writes into fresh space (the first pass over the span)
 *   seqread          1 MiB sequential reads of the written span
 *   randread         4 KiB random reads of the written span
 *   randwrite        4 KiB random overwrites of the written span
 *   randwrite-fresh  4 KiB random writes, each into a grain never written before
 *
 * Each runs for --time seconds, or until it runs out of span or of fresh space, and prints
 * IOPS and MB/s (10^6 bytes); nothing is asserted. The written span is the first half of the
 * backing file's size (--span), so a raw-device benchmark over the same span compares like
 * with like; fresh grains are drawn at random, without repetition, from a virtual range
 * beyond it four times the size of the file.
 *
 * --metadata measures instead what the extent map costs: it writes a sequential image and
 * a sparse image of 4 KiB writes each into a grain of its own, at the default grain and at
 * 4 KiB, then counts the mapping tree's nodes (by walking it into an empty cache) and every
 * tree node of the pool (pool_check), and extrapolates both per TiB mapped.
 *
 * How requests are submitted (--submit)
 *   reactor  (default) the window lives on one reactor thread: a completion posts its slot
 *            back to the same reactor, which submits the next request. One thread does all
 *            the work, as one NBD connection does, and as fio's single job does.
 *   thread   the main thread submits and waits on a condition variable while the window is
 *            full; completions arrive on every reactor. This adds a cross-thread hand-off per
 *            request (an eventfd write and a wake-up), which the reactor mode shows the cost
 *            of.
 *
 * The backing file should hold written blocks (the run script fills it): reads of a file
 * system's unwritten extents never reach the disk, and first writes into them pay for
 * extent conversion, which would measure the file system rather than the pool. A file
 * created here with --dir is filled before use and removed at the end.
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

const char *bench_prog = "cistern-bench-vol";

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)

#define BENCH_POOL "bench"
#define BENCH_VOL "bench"

/* ------------------------------------------------------------------------------------------
 * Options
 */

struct opts {
    const char *file; /* backing file (--file) */
    const char *dir;  /* or a directory to make one in (--dir) */
    uint64_t size;    /* size of a file made here */
    uint64_t span;    /* bytes written sequentially, then read and overwritten */
    uint32_t grain;
    unsigned qd;
    double seconds;    /* per workload */
    unsigned reactors; /* 0: the engine's default */
    enum submit_mode submit;
    const char *only; /* comma-separated workloads, or NULL for all */
    bool metadata;
    uint64_t md_random_grains; /* grains written by each random image of --metadata */
    uint64_t md_seq_bytes;     /* bytes of each sequential image of --metadata */
    bool json;
    uint64_t seed;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cistern-bench-vol (--file PATH | --dir DIR) [options]\n"
            "\n"
            "  --file PATH       backing file to create the pool on (its contents are lost;\n"
            "                    made at --size and filled when it does not exist)\n"
            "  --dir DIR         make a filled backing file of --size in DIR, removed at exit\n"
            "  --size SIZE       size of a backing file made here (default 4G)\n"
            "  --span SIZE       bytes written, then read and overwritten (default: half the\n"
            "                    backing file)\n"
            "  --grain SIZE      grain size of the volume (default %uK)\n"
            "  --qd N            requests in flight (default 32)\n"
            "  --time SECONDS    per workload (default 10)\n"
            "  --only LIST       workloads to print, comma-separated, from: seqwrite, seqread,\n"
            "                    randread, randwrite, randwrite-fresh (default: all)\n"
            "  --submit MODE     reactor (default) or thread: see the top of vol_bench.c\n"
            "  --reactors N      reactor threads (default: one per core)\n"
            "  --metadata        measure the extent map's metadata per TiB mapped instead\n"
            "  --md-grains N     grains written by each random image of --metadata\n"
            "                    (default 262144)\n"
            "  --md-seq SIZE     bytes of each sequential image of --metadata (default:\n"
            "                    half the backing file, at most 4G)\n"
            "  --seed N          random seed (default 1)\n"
            "  --json            machine-readable output\n",
            VOL_DEFAULT_GRAIN / 1024);
}

static int parse_size_opt(const char *name, const char *s, uint64_t *out)
{
    int r = parse_size(s, out);
    if (r < 0)
        fprintf(stderr, "cistern-bench-vol: %s: '%s' is not a size\n", name, s);
    return r;
}

static int parse_uint_opt(const char *name, const char *s, uint64_t min, uint64_t max,
                          uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr,
                "cistern-bench-vol: %s: '%s' is not a number from %" PRIu64 " to %" PRIu64 "\n",
                name, s, min, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},
        {"dir", required_argument, NULL, 'd'},
        {"size", required_argument, NULL, 's'},
        {"span", required_argument, NULL, 'S'},
        {"grain", required_argument, NULL, 'g'},
        {"qd", required_argument, NULL, 'q'},
        {"time", required_argument, NULL, 't'},
        {"only", required_argument, NULL, 'o'},
        {"submit", required_argument, NULL, 'm'},
        {"reactors", required_argument, NULL, 'r'},
        {"metadata", no_argument, NULL, 'M'},
        {"md-grains", required_argument, NULL, 'G'},
        {"md-seq", required_argument, NULL, 'Q'},
        {"seed", required_argument, NULL, 'e'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;

    *o = (struct opts){
        .size = 4 * GiB,
        .grain = VOL_DEFAULT_GRAIN,
        .qd = 32,
        .seconds = 10,
        .submit = SUBMIT_REACTOR,
        .md_random_grains = 262144,
        .seed = 1,
    };
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o->file = optarg;
            break;
        case 'd':
            o->dir = optarg;
            break;
        case 's':
            if (parse_size_opt("--size", optarg, &o->size) < 0)
                return -EINVAL;
            break;
        case 'S':
            if (parse_size_opt("--span", optarg, &o->span) < 0)
                return -EINVAL;
            break;
        case 'g':
            if (parse_size_opt("--grain", optarg, &v) < 0)
                return -EINVAL;
            if (!IS_POW2(v) || v < VOL_MIN_GRAIN || v > VOL_MAX_GRAIN) {
                fprintf(stderr, "cistern-bench-vol: --grain: a power of two from 4K to 1M\n");
                return -EINVAL;
            }
            o->grain = (uint32_t)v;
            break;
        case 'q':
            if (parse_uint_opt("--qd", optarg, 1, 4096, &v) < 0)
                return -EINVAL;
            o->qd = (unsigned)v;
            break;
        case 't': {
            char *end;
            o->seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(o->seconds > 0 && o->seconds <= 3600)) {
                fprintf(stderr, "cistern-bench-vol: --time: seconds, above 0, at most 3600\n");
                return -EINVAL;
            }
            break;
        }
        case 'o':
            o->only = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "reactor") == 0) {
                o->submit = SUBMIT_REACTOR;
            } else if (strcmp(optarg, "thread") == 0) {
                o->submit = SUBMIT_THREAD;
            } else {
                fprintf(stderr, "cistern-bench-vol: --submit: reactor or thread\n");
                return -EINVAL;
            }
            break;
        case 'r':
            if (parse_uint_opt("--reactors", optarg, 1, 1024, &v) < 0)
                return -EINVAL;
            o->reactors = (unsigned)v;
            break;
        case 'M':
            o->metadata = true;
            break;
        case 'G':
            if (parse_uint_opt("--md-grains", optarg, 1, 1ull << 32, &o->md_random_grains) < 0)
                return -EINVAL;
            break;
        case 'Q':
            if (parse_size_opt("--md-seq", optarg, &o->md_seq_bytes) < 0)
                return -EINVAL;
            break;
        case 'e':
            if (parse_uint_opt("--seed", optarg, 1, UINT64_MAX, &o->seed) < 0)
                return -EINVAL;
            break;
        case 'j':
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind != argc || (!o->file == !o->dir)) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The backing file
 */

/* Sets o->file to a usable backing file; *made says whether it is ours to remove. */
static int backing_prepare(struct opts *o, char *path, size_t pathlen, bool *made)
{
    struct stat st;
    *made = false;
    if (o->dir) {
        snprintf(path, pathlen, "%s/cistern-bench-XXXXXX", o->dir);
        int fd = mkstemp(path);
        if (fd < 0) {
            int err = -errno;
            fprintf(stderr, "cistern-bench-vol: cannot make a file in %s: %s\n", o->dir,
                    strerror(-err));
            return err;
        }
        close(fd);
        *made = true;
        o->file = path;
    } else if (stat(o->file, &st) == 0) {
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
            fprintf(stderr, "cistern-bench-vol: %s: not a file or a block device\n", o->file);
            return -EINVAL;
        }
        return 0;
    } else {
        int fd = open(o->file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0) {
            int err = -errno;
            fprintf(stderr, "cistern-bench-vol: %s: %s\n", o->file, strerror(-err));
            return err;
        }
        close(fd);
    }
    if (!o->json)
        fprintf(stderr, "cistern-bench-vol: filling %s (%" PRIu64 " MiB)\n", o->file,
                o->size / MiB);
    int r = fill_file(o->file, o->size);
    if (r < 0 && *made)
        unlink(path);
    return r;
}

/* ------------------------------------------------------------------------------------------
 * The pool and the volume
 */

struct bench {
    struct opts *o;
    uint64_t file_bytes;
    struct pool *pool;
    struct vol *v;
    uint64_t span;      /* written span: [0, span) */
    uint64_t fresh_off; /* fresh range: [fresh_off, fresh_off + fresh_len) */
    uint64_t fresh_len;
};

/* Creates a fresh pool on the backing file (whatever it held) with @cache_bytes of metadata
 * cache (0: the default), and a volume of @vsize bytes and @grain. */
static int bench_open(struct bench *b, uint64_t cache_bytes, uint64_t vsize, uint32_t grain)
{
    const char *members[] = {b->o->file};
    struct pool_settings s;
    struct vol_info vi;
    int r;

    pool_settings_default(&s);
    if (cache_bytes)
        s.cache_bytes = cache_bytes;
    r = pool_create(BENCH_POOL, members, 1, &s, true);
    if (r < 0) {
        fprintf(stderr, "cistern-bench-vol: %s: cannot create a pool: %s\n", b->o->file,
                strerror(-r));
        return r;
    }
    r = pool_open(members, 1, 0, &b->pool);
    if (r == 0)
        r = volumes_attach(b->pool);
    if (r == 0)
        r = vol_create(b->pool, BENCH_VOL, vsize, grain, &vi);
    if (r == 0)
        r = vol_open(b->pool, BENCH_VOL, 0, &b->v);
    if (r < 0)
        fprintf(stderr, "cistern-bench-vol: %s: cannot set up the volume: %s\n", b->o->file,
                strerror(-r));
    return r;
}

static int bench_close(struct bench *b)
{
    int r = vol_close(b->v);
    int r2 = pool_close(b->pool);
    b->v = NULL;
    b->pool = NULL;
    return r ? r : r2;
}

static void job_init(struct job *j, struct bench *b, enum vol_op op, enum pattern pat, uint32_t bs)
{
    job_setup(j, b->v, op, pat, bs, b->o->qd, b->o->submit, b->o->seed);
}

/* ------------------------------------------------------------------------------------------
 * Output
 */

static void print_result(const struct opts *o, const struct result *res, bool *first,
                         uint64_t alloc_per_op)
{
    if (o->json) {
        printf("%s\n    {\"name\": \"%s\", \"bs\": %u, \"ops\": %" PRIu64 ", \"bytes\": %" PRIu64
               ", \"seconds\": %.3f, \"iops\": %.0f, \"mbps\": %.1f, \"lat_us\": %.1f"
               ", \"ended_by\": \"%s\"",
               *first ? "" : ",", res->name, res->bs, res->ops, res->bytes, res->seconds, res->iops,
               res->mbps, res->lat_us, res->limited ? "size" : "time");
        if (alloc_per_op)
            printf(", \"alloc_bytes_per_op\": %" PRIu64, alloc_per_op);
        printf("}");
    } else {
        printf("%-16s %5uK %10.0f IOPS %9.1f MB/s %9.1f us  %7.2f s%s", res->name, res->bs / 1024,
               res->iops, res->mbps, res->lat_us, res->seconds,
               res->limited ? " (size-limited)" : "");
        if (alloc_per_op)
            printf("  %" PRIu64 "K allocated per write", alloc_per_op / 1024);
        printf("\n");
    }
    *first = false;
}

static bool wanted(const struct opts *o, const char *name)
{
    if (!o->only)
        return true;
    size_t n = strlen(name);
    for (const char *p = o->only; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (e != NULL);
    }
    return false;
}

/* ------------------------------------------------------------------------------------------
 * The I/O benchmark
 */

static uint64_t allocated_bytes(struct pool *pool)
{
    struct pool_stats st;
    pool_stat(pool, &st);
    return st.allocated_blocks * CS_BLOCK_SIZE;
}

static int run_io(struct bench *b)
{
    struct opts *o = b->o;
    uint32_t grain = o->grain;
    bool first = true;
    struct job j;
    struct result res;
    int r;

    b->span = o->span ? o->span : b->file_bytes / 2;
    b->span = ROUND_DOWN(b->span, MAX((uint64_t)grain, MiB));
    b->fresh_off = b->span;
    b->fresh_len = ROUND_DOWN(4 * b->file_bytes, grain);
    if (b->span == 0 || b->span + 64 * MiB > b->file_bytes) {
        fprintf(stderr, "cistern-bench-vol: the span must leave room in the backing file\n");
        return -EINVAL;
    }
    r = bench_open(b, 0, b->fresh_off + b->fresh_len, grain);
    if (r < 0)
        return r;

    if (o->json)
        printf("{\n  \"file_bytes\": %" PRIu64 ", \"span\": %" PRIu64 ", \"grain\": %u"
               ", \"qd\": %u, \"submit\": \"%s\", \"reactors\": %u,\n  \"results\": [",
               b->file_bytes, b->span, grain, o->qd,
               o->submit == SUBMIT_REACTOR ? "reactor" : "thread", pool_reactor_count());
    else
        printf("# cistern-bench-vol: grain %uK, qd %u, submit from %s, %u reactors, span %" PRIu64
               " MiB of a %" PRIu64 " MiB file, %.0f s per workload\n",
               grain / 1024, o->qd, o->submit == SUBMIT_REACTOR ? "a reactor" : "a thread",
               pool_reactor_count(), b->span / MiB, b->file_bytes / MiB, o->seconds);

    /* seqwrite: the first pass over the span, into fresh space. Whatever the clock leaves
     * unwritten is written untimed afterwards: the later workloads need all of it. */
    job_init(&j, b, VOL_OP_WRITE, PAT_SEQ, 1 << 20);
    j.span_len = b->span;
    j.deadline = deadline_in(o->seconds);
    res.name = "seqwrite";
    r = job_run(&j, &res);
    if (r == 0 && wanted(o, res.name))
        print_result(o, &res, &first, 0);
    if (r == 0 && j.seq_pos < b->span) {
        uint64_t from = j.seq_pos;
        job_init(&j, b, VOL_OP_WRITE, PAT_SEQ, 1 << 20);
        j.span_off = from;
        j.span_len = b->span - from;
        r = job_run(&j, NULL);
    }
    if (r == 0)
        r = vol_flush(b->v);

    if (r == 0 && wanted(o, "seqread")) {
        job_init(&j, b, VOL_OP_READ, PAT_SEQ, 1 << 20);
        j.span_len = b->span;
        j.wrap = true;
        j.deadline = deadline_in(o->seconds);
        res.name = "seqread";
        r = job_run(&j, &res);
        if (r == 0)
            print_result(o, &res, &first, 0);
    }
    if (r == 0 && wanted(o, "randread")) {
        job_init(&j, b, VOL_OP_READ, PAT_RANDOM, 4096);
        j.span_len = b->span;
        j.deadline = deadline_in(o->seconds);
        res.name = "randread";
        r = job_run(&j, &res);
        if (r == 0)
            print_result(o, &res, &first, 0);
    }
    if (r == 0 && wanted(o, "randwrite")) {
        job_init(&j, b, VOL_OP_WRITE, PAT_RANDOM, 4096);
        j.span_len = b->span;
        j.deadline = deadline_in(o->seconds);
        res.name = "randwrite";
        r = job_run(&j, &res);
        if (r == 0)
            print_result(o, &res, &first, 0);
        if (r == 0)
            r = vol_flush(b->v);
    }
    if (r == 0 && wanted(o, "randwrite-fresh")) {
        /* As many fresh grains as 80% of the free space holds, leaving room for metadata. */
        struct pool_stats st;
        pool_stat(b->pool, &st);
        uint64_t room = st.free_blocks * CS_BLOCK_SIZE / 10 * 8;
        job_init(&j, b, VOL_OP_WRITE, PAT_FRESH, 4096);
        j.span_off = b->fresh_off;
        j.fresh_grains = b->fresh_len / grain;
        j.max_ops = MIN(room / grain, j.fresh_grains / 4);
        j.fresh_map = calloc(DIV_ROUND_UP(j.fresh_grains, 64), sizeof(uint64_t));
        if (!j.fresh_map)
            r = -ENOMEM;
        if (j.max_ops == 0) { /* zero would mean "no limit" */
            fprintf(stderr, "cistern-bench-vol: no free space left for fresh writes\n");
            r = -ENOSPC;
        }
        j.deadline = deadline_in(o->seconds);
        res.name = "randwrite-fresh";
        uint64_t before = allocated_bytes(b->pool);
        if (r == 0)
            r = job_run(&j, &res);
        if (r == 0)
            r = vol_flush(b->v);
        free(j.fresh_map);
        /* Space taken per write, metadata included, once committed. */
        uint64_t per_op = res.ops ? (allocated_bytes(b->pool) - before) / res.ops : 0;
        if (r == 0)
            print_result(o, &res, &first, per_op);
    }
    if (o->json)
        printf("\n  ]\n}\n");
    if (r < 0)
        fprintf(stderr, "cistern-bench-vol: %s\n", strerror(-r));
    int r2 = bench_close(b);
    return r ? r : r2;
}

/* ------------------------------------------------------------------------------------------
 * Metadata per TiB mapped
 */

struct md_result {
    const char *layout;
    uint32_t grain;
    uint64_t mapped_bytes; /* virtual bytes the map covers */
    uint64_t extents;      /* entries of the mapping tree */
    uint64_t map_nodes;    /* nodes of the mapping tree */
    uint64_t all_nodes;    /* tree nodes of the whole pool (pool_check) */
    uint64_t data_blocks;
};

struct find_map {
    uint64_t root;
    unsigned found;
};

/* Finds the mapping tree's root among the references a catalog value holds: the same way
 * pool_check follows the catalog, without knowing the record's layout. */
static int find_map_root(void *ctx, uint64_t key, const void *value)
{
    struct find_map *f = ctx;
    const struct btree_type *t = btree_type_get(TREE_CATALOG);
    struct value_ref refs[VALUE_MAX_REFS];
    (void)key;
    unsigned n = t && t->refs ? t->refs(value, refs) : 0;
    for (unsigned i = 0; i < n; i++) {
        if (refs[i].tree_type == TREE_MAPPING) {
            f->root = refs[i].start.v;
            f->found++;
        }
    }
    return 0;
}

/*
 * Counts the mapping tree's nodes and entries: reopens the pool, so its cache is cold, and
 * walks the tree; the nodes the walk brings into the cache are the mapping tree's, and are
 * exactly what a cache must hold to serve every lookup without a read.
 */
static int md_count_map(struct bench *b, struct md_result *m)
{
    const char *members[] = {b->o->file};
    struct pool_stats st0, st1;
    struct find_map f = {0};
    int r = pool_open(members, 1, 0, &b->pool);
    if (r == 0)
        r = volumes_attach(b->pool);
    if (r < 0)
        return r;
    pool_md_lock(b->pool);
    r = btree_iterate(b->pool, TREE_CATALOG, pool_root_get(b->pool, POOL_ROOT_CATALOG), 0,
                      find_map_root, &f);
    pool_md_unlock(b->pool);
    if (r == 0 && f.found != 1)
        r = -ENOENT;
    pool_stat(b->pool, &st0);
    if (r == 0) {
        pool_md_lock(b->pool);
        r = btree_count(b->pool, TREE_MAPPING, (pblk_t){f.root}, &m->extents);
        pool_md_unlock(b->pool);
    }
    pool_stat(b->pool, &st1);
    m->map_nodes = (st1.cache_used_bytes - st0.cache_used_bytes) / CS_BLOCK_SIZE;
    if (st1.cache_used_bytes >= st1.cache_bytes)
        fprintf(stderr, "cistern-bench-vol: the cache filled up: the node count is low\n");
    int r2 = pool_close(b->pool);
    b->pool = NULL;
    return r ? r : r2;
}

static int md_image(struct bench *b, const char *layout, uint32_t grain, struct md_result *m)
{
    struct opts *o = b->o;
    struct job j;
    struct pool_check_report rep = {0};
    bool seq = strcmp(layout, "sequential") == 0;
    uint64_t seq_bytes = o->md_seq_bytes ? o->md_seq_bytes : MIN(b->file_bytes / 2, 4 * GiB);
    uint64_t grains = o->md_random_grains;
    int r;

    seq_bytes = ROUND_DOWN(seq_bytes, MAX((uint64_t)grain, MiB));
    /* Random images: one grain in 16 of the volume, so that no two written grains are
     * neighbours and every one is an extent of its own, as in a fully random image. */
    grains = MIN(grains, b->file_bytes / 10 * 7 / grain);
    if (grains == 0 || seq_bytes == 0) {
        fprintf(stderr, "cistern-bench-vol: the backing file is too small for --metadata\n");
        return -ENOSPC;
    }
    uint64_t vsize = seq ? seq_bytes : grains * 16 * grain;
    *m = (struct md_result){.layout = layout, .grain = grain};
    /* A cache large enough for every node, so the count below sees them all. */
    r = bench_open(b, MAX(b->file_bytes / 4, 256 * MiB), vsize, grain);
    if (r < 0)
        return r;
    if (seq) {
        job_init(&j, b, VOL_OP_WRITE, PAT_SEQ, 1 << 20);
        j.span_len = seq_bytes;
        m->mapped_bytes = seq_bytes;
    } else {
        job_init(&j, b, VOL_OP_WRITE, PAT_FRESH, 4096);
        j.fresh_grains = vsize / grain;
        j.max_ops = grains;
        j.fresh_map = calloc(DIV_ROUND_UP(j.fresh_grains, 64), sizeof(uint64_t));
        if (!j.fresh_map)
            r = -ENOMEM;
        m->mapped_bytes = grains * grain;
    }
    if (r == 0)
        r = job_run(&j, NULL);
    free(j.fresh_map);
    if (r == 0)
        r = vol_flush(b->v);
    int r2 = vol_close(b->v);
    b->v = NULL;
    if (r == 0)
        r = r2;
    if (r == 0) {
        r = pool_check(b->pool, &rep);
        m->all_nodes = rep.nodes;
        m->data_blocks = rep.data_blocks;
    }
    r2 = pool_close(b->pool);
    b->pool = NULL;
    if (r == 0)
        r = r2;
    if (r == 0)
        r = md_count_map(b, m);
    return r;
}

static double per_tib(uint64_t bytes, uint64_t mapped)
{
    return mapped ? (double)bytes * (double)TiB / (double)mapped : 0;
}

static int run_metadata(struct bench *b)
{
    static const char *const layouts[] = {"sequential", "random-4k"};
    uint32_t grains[] = {VOL_DEFAULT_GRAIN, 4096};
    unsigned ngrains = VOL_DEFAULT_GRAIN == 4096 ? 1 : 2;
    bool first = true;
    int r = 0;

    if (b->o->json)
        printf("{\n  \"metadata\": [");
    else
        printf("# cistern-bench-vol: metadata per TiB mapped (mapping nodes are what a cache "
               "needs to hold the whole map; all nodes include the reference-count tree)\n"
               "%-11s %6s %10s %10s %10s %10s %14s %14s\n",
               "layout", "grain", "mapped", "extents", "map nodes", "all nodes", "map GiB/TiB",
               "disk GiB/TiB");
    for (unsigned l = 0; l < ARRAY_SIZE(layouts) && r == 0; l++) {
        for (unsigned g = 0; g < ngrains && r == 0; g++) {
            struct md_result m;
            r = md_image(b, layouts[l], grains[g], &m);
            if (r < 0)
                break;
            double map_tib = per_tib(m.map_nodes * CS_BLOCK_SIZE, m.mapped_bytes);
            double all_tib = per_tib(m.all_nodes * CS_BLOCK_SIZE, m.mapped_bytes);
            if (b->o->json) {
                printf("%s\n    {\"layout\": \"%s\", \"grain\": %u, \"mapped_bytes\": %" PRIu64
                       ", \"extents\": %" PRIu64 ", \"map_nodes\": %" PRIu64
                       ", \"all_nodes\": %" PRIu64 ", \"data_blocks\": %" PRIu64
                       ", \"map_bytes_per_tib\": %.0f, \"metadata_bytes_per_tib\": %.0f}",
                       first ? "" : ",", m.layout, m.grain, m.mapped_bytes, m.extents, m.map_nodes,
                       m.all_nodes, m.data_blocks, map_tib, all_tib);
            } else {
                printf("%-11s %5uK %9" PRIu64 "M %10" PRIu64 " %10" PRIu64 " %10" PRIu64
                       " %14.3f %14.3f\n",
                       m.layout, m.grain / 1024, m.mapped_bytes / MiB, m.extents, m.map_nodes,
                       m.all_nodes, map_tib / (double)GiB, all_tib / (double)GiB);
            }
            first = false;
            fflush(stdout);
        }
    }
    if (b->o->json)
        printf("\n  ]\n}\n");
    if (r < 0)
        fprintf(stderr, "cistern-bench-vol: metadata: %s\n", strerror(-r));
    return r;
}

int main(int argc, char **argv)
{
    struct opts o;
    char made_path[4096];
    bool made = false;
    struct bench b = {.o = &o};
    int r;

    log_set_prefix("cistern-bench-vol");
    if (getenv("CISTERN_LOG") == NULL)
        log_set_level(LOG_WARN);
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    if (o.reactors)
        pool_reactors_configure(o.reactors);
    r = backing_prepare(&o, made_path, sizeof(made_path), &made);
    if (r == 0)
        r = file_size(o.file, &b.file_bytes);
    if (r == 0)
        r = o.metadata ? run_metadata(&b) : run_io(&b);
    fflush(stdout);
    pool_reactors_shutdown();
    if (made)
        unlink(made_path);
    return r < 0 ? 1 : 0;
}
