/*
 * A real crash: a child process opens the pool and runs a deterministic random workload of
 * writes (data, zeros, discards) and flushes over two volumes, writing the number of each op
 * whose vol_flush completed to a pipe. The parent SIGKILLs it at a random moment (after a
 * random number of flush reports, plus a random delay), then replays the same workload in
 * memory and checks the reopened pool:
 *   - every sector holds its value as of the last reported flush, or a value written to it
 *     after that flush (never garbage, never another sector's or volume's data);
 *   - pool_check passes.
 * Unlike the power-cut sweep (test_crash.c), what reaches the members here is decided by the
 * kernel when the process dies mid-I/O, with the committer thread and reactors running.
 *
 * Every child is forked before the parent starts any pool thread or reactor: the children of
 * all rounds run first, each on its own member files, and the parent verifies them after.
 *
 *   KILL_SEED=n  replay     KILL_ROUNDS=n  rounds (default 5)
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "common/common.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define MEMBER_BYTES (32ull << 20)
#define VOL_BYTES (4ull << 20)
#define SECTOR 512u
#define NSEC (VOL_BYTES / SECTOR)
#define NVOL 2
#define OPS 100000 /* more than any child reaches before it is killed */
#define MAX_ROUNDS 16
#define REPORT_TIMEOUT_MS 20000

static const char *vname(int i)
{
    return i == 0 ? "k4" : "k64";
}

/* ------------------------------------------------------------------------------------------
 * The workload: op i is derived from the seed alone, so the parent can replay it.
 */

enum op_kind { OP_WRITE, OP_ZEROES, OP_DISCARD, OP_FLUSH };

struct op {
    enum op_kind kind;
    int vol;
    uint64_t off, len;
    uint32_t flags;
};

/* Draws the next op; for writes, fills @buf with its data. */
static void next_op(struct rng *r, struct op *op, uint8_t *buf)
{
    op->vol = (int)rng_below(r, NVOL);
    uint64_t unit = rng_below(r, 3) == 0 ? SECTOR : 4096;
    op->len = ROUND_UP(rng_below(r, 256 << 10) + 1, unit);
    op->off = ROUND_DOWN(rng_below(r, VOL_BYTES - op->len), unit);
    op->flags = 0;
    unsigned k = (unsigned)rng_below(r, 100);
    if (k < 65) {
        op->kind = OP_WRITE;
        fill_random(r, buf, op->len);
        if (k < 4)
            memset(buf, 0, op->len);
        if (k % 13 == 0)
            op->flags = VOL_FUA;
    } else if (k < 75) {
        op->kind = OP_ZEROES;
        op->flags = k < 70 ? VOL_NO_UNMAP : 0;
    } else if (k < 85) {
        op->kind = OP_DISCARD;
    } else {
        op->kind = OP_FLUSH;
    }
}

/* ------------------------------------------------------------------------------------------
 * The child
 */

static void report(int fd, uint32_t v)
{
    ssize_t n = write(fd, &v, sizeof(v));
    if (n != sizeof(v))
        _exit(3);
}

#define REPORT_FAILED 0xffffffffu
#define REPORT_START 0x80000000u /* or'ed with an op number: the op is about to start */

static void child_fail(int fd, const char *what, int err)
{
    fprintf(stderr, "kill child: %s: %s\n", what, strerror(-err));
    report(fd, REPORT_FAILED);
    _exit(2);
}

/* Reports, in order: 0 when the volumes exist (committed); n | REPORT_START before op n
 * (from 1) starts; n when op n completed a flush (a FLUSH, or a FUA write). */
static void child_main(struct scratch *s, uint64_t seed, int fd)
{
    struct pool *pool;
    int e = pool_open(s->paths, s->n, 0, &pool);
    if (e < 0)
        child_fail(fd, "pool_open", e);
    if ((e = volumes_attach(pool)) < 0)
        child_fail(fd, "volumes_attach", e);
    struct vol *v[NVOL];
    for (int i = 0; i < NVOL; i++) {
        if ((e = vol_create(pool, vname(i), VOL_BYTES, i ? 65536 : 4096, NULL)) < 0)
            child_fail(fd, "vol_create", e);
        if ((e = vol_open(pool, vname(i), 0, &v[i])) < 0)
            child_fail(fd, "vol_open", e);
    }
    report(fd, 0);
    uint8_t *buf = aligned_alloc(4096, 256 << 10);
    struct rng r = {seed};
    for (uint32_t n = 1; n <= OPS; n++) {
        struct op op;
        next_op(&r, &op, buf);
        report(fd, n | REPORT_START);
        switch (op.kind) {
        case OP_WRITE:
            e = vol_pwrite(v[op.vol], buf, op.len, op.off, op.flags);
            break;
        case OP_ZEROES:
            e = vol_write_zeroes(v[op.vol], op.off, op.len, op.flags);
            break;
        case OP_DISCARD:
            e = vol_discard(v[op.vol], op.off, op.len);
            break;
        case OP_FLUSH:
            e = vol_flush(v[op.vol]);
            break;
        }
        if (e < 0)
            child_fail(fd, "workload", e);
        if (op.kind == OP_FLUSH || (op.flags & VOL_FUA))
            report(fd, n);
    }
    /* Ran out of ops before the kill: wait for it. */
    for (;;)
        pause();
}

/* ------------------------------------------------------------------------------------------
 * The model: what each sector may hold (see test_crash.c for the same logic)
 */

#include "tests/volumes/sector_model.h"

/* Replays the workload: durable as of op @last_flush, later values for the ops after it up
 * to @upto (the child cannot have gone further). */
static void model_build(struct model *m, uint64_t seed, uint32_t last_flush, uint32_t upto)
{
    uint8_t *buf = aligned_alloc(4096, 256 << 10);
    struct rng r = {seed};
    model_init(m);
    for (uint32_t n = 1; n <= upto; n++) {
        struct op op;
        next_op(&r, &op, buf);
        if (op.kind == OP_WRITE)
            model_write(m, op.vol, op.off, buf, op.len, true);
        else if (op.kind != OP_FLUSH)
            model_write(m, op.vol, op.off, NULL, op.len, true);
        if (n == last_flush)
            model_flushed(m);
    }
    free(buf);
}

/* ------------------------------------------------------------------------------------------
 * The parent
 */

struct round {
    struct scratch s;
    uint64_t seed;
    uint32_t last_flush; /* op of the last reported flush (0: only the volumes) */
    uint32_t last_start; /* the last op the child started */
    unsigned reports;    /* flush reports */
    bool created;
};

static uint64_t ms_now(void)
{
    return now_ns() / 1000000;
}

/* Runs one child and kills it after @kill_after reports and @delay_us more. */
static void run_round(struct round *rd, unsigned kill_after, unsigned delay_us)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        child_main(&rd->s, rd->seed, p[1]);
        _exit(0);
    }
    close(p[1]);
    bool killed = false;
    uint64_t deadline = ms_now() + REPORT_TIMEOUT_MS;
    uint64_t kill_at = 0;
    for (;;) {
        int wait_ms = 100;
        if (killed)
            wait_ms = 1000;
        else if (kill_at)
            wait_ms = 0;
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int n = poll(&pf, 1, wait_ms);
        if (n > 0) {
            uint32_t v;
            ssize_t got = read(p[0], &v, sizeof(v));
            if (got == 0)
                break; /* the child is gone and the pipe drained */
            assert_int_equal(got, sizeof(v));
            if (v == REPORT_FAILED)
                fail_msg("the child's workload failed (see its message above)");
            if (v & REPORT_START) {
                rd->last_start = v & ~REPORT_START;
            } else if (v == 0) {
                rd->created = true;
            } else {
                rd->last_flush = v;
                rd->reports++;
            }
        }
        if (!killed && !kill_at && rd->created && rd->reports >= kill_after)
            kill_at = now_ns() / 1000 + delay_us;
        if (!killed && kill_at && now_ns() / 1000 >= kill_at) {
            kill(pid, SIGKILL);
            killed = true;
        }
        if (!killed && ms_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("the child made %u flush reports in %d ms, expected %u", rd->reports,
                     REPORT_TIMEOUT_MS, kill_after);
        }
    }
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("the child ended by itself (status %#x)", status);
}

static void verify_round(struct round *rd, struct model *m, uint8_t *buf)
{
    /* Writes up to the last op started may have reached the members, in any part. */
    model_build(m, rd->seed, rd->last_flush, rd->last_start);
    struct pool *pool;
    int e = pool_open(rd->s.paths, rd->s.n, 0, &pool);
    if (e != 0)
        fail_msg("reopen after the kill: %s", strerror(-e));
    assert_int_equal(volumes_attach(pool), 0);
    struct pool_check_report rep;
    e = pool_check(pool, &rep);
    if (e != 0)
        fail_msg("pool check after the kill: %d (%u problems)", e, rep.errors);
    for (int v = 0; v < NVOL; v++) {
        struct vol *h;
        assert_int_equal(vol_open(pool, vname(v), VOL_OPEN_RDONLY, &h), 0);
        assert_int_equal(vol_pread(h, buf, VOL_BYTES, 0), 0);
        for (uint64_t s = 0; s < NSEC; s++) {
            if (!model_allows(m, v, s, hash_sector(buf + s * SECTOR)))
                fail_msg("volume %s sector %llu holds data it did not have at the flush of op "
                         "%u nor was given after it",
                         vname(v), (unsigned long long)s, rd->last_flush);
        }
        assert_int_equal(vol_close(h), 0);
    }
    assert_int_equal(pool_close(pool), 0);
}

static void test_kill(void **state)
{
    (void)state;
    struct rng seeder;
    rng_seed_env(&seeder, "KILL_SEED");
    unsigned rounds = (unsigned)MIN(env_u64("KILL_ROUNDS", 5), (uint64_t)MAX_ROUNDS);
    struct round *rd = calloc(rounds, sizeof(*rd));
    struct pool_settings st;
    pool_settings_default(&st);
    st.commit_interval_ms = 30;       /* the committer commits on its own, often */
    st.dirty_bound_bytes = 128 << 10; /* ... and when dirty metadata passes this */

    /* All children first: the parent starts no pool thread before the last fork. */
    uint64_t t0 = ms_now();
    for (unsigned i = 0; i < rounds; i++) {
        rd[i].seed = rng_next(&seeder) | 1;
        scratch_make(&rd[i].s, 2, MEMBER_BYTES);
        /* pool_create runs in this thread and starts none. */
        assert_int_equal(pool_create("killed", rd[i].s.paths, rd[i].s.n, &st, false), 0);
        unsigned after = 1 + (unsigned)rng_below(&seeder, 120);
        unsigned delay = (unsigned)rng_below(&seeder, 30000);
        run_round(&rd[i], after, delay);
        fprintf(stderr,
                "round %u: killed after %u flush reports (+%u us): last flush at op %u, "
                "last op started %u\n",
                i, rd[i].reports, delay, rd[i].last_flush, rd[i].last_start);
    }
    fprintf(stderr, "children ran for %llu ms\n", (unsigned long long)(ms_now() - t0));

    struct model *m = malloc(sizeof(*m));
    uint8_t *buf = aligned_alloc(4096, VOL_BYTES);
    for (unsigned i = 0; i < rounds; i++) {
        verify_round(&rd[i], m, buf);
        model_free(m);
        scratch_remove(&rd[i].s);
    }
    free(buf);
    free(m);
    free(rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
