/*
 * The SCSI block commands against an in-memory byte model of each LU's volume: random
 * READ/WRITE (6/10/12/16, FUA, DPO), WRITE AND VERIFY, VERIFY, WRITE SAME (pattern, zeroes,
 * UNMAP, NDOB), UNMAP, COMPARE AND WRITE (match and miscompare), EXTENDED COPY between LUs,
 * SYNCHRONIZE CACHE; the volume is compared with the model after every step (the touched
 * range) and wholly at the end. GET LBA STATUS must agree with the model's zero ranges.
 *
 *   SCSI_SEED=n  replay a run      SCSI_OPS=n  operations per LU (default 1500)
 */
#include "tests/iscsi/scsi_test.h"

#define NLU 2

struct st {
    struct t_env *e;
    struct t_lu *l[NLU];
    uint8_t *model[NLU];
    uint64_t size[NLU];
    uint8_t *in, *out;
    struct rng rng;
};

static int setup(void **state)
{
    struct st *s = calloc(1, sizeof(*s));
    s->e = t_env_new(256ull << 20);
    static const uint64_t sizes[NLU] = {24u << 20, 16u << 20};
    static const uint32_t grains[NLU] = {4096, 65536};
    for (int i = 0; i < NLU; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", i);
        s->l[i] = t_add_lu(s->e, name, sizes[i], grains[i], false);
        s->size[i] = sizes[i];
        s->model[i] = calloc(1, sizes[i]);
        t_clear_ua(s->e, s->l[i], 0);
        t_clear_ua(s->e, s->l[i], 1);
    }
    s->in = t_alloc(8u << 20);
    s->out = t_alloc(8u << 20);
    rng_seed_env(&s->rng, "SCSI_SEED");
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct st *s = *state;
    t_env_free(s->e);
    for (int i = 0; i < NLU; i++)
        free(s->model[i]);
    free(s->in);
    free(s->out);
    free(s);
    return 0;
}

/* Reads [lba, lba + n) through READ(16) and compares with the model. */
static void compare(struct st *s, int li, uint64_t lba, uint32_t n)
{
    struct t_res r;
    uint8_t cdb[16];
    while (n) {
        uint32_t k = MIN(n, 8192u);
        t_rw_cdb(cdb, 0x88, lba, k, 0);
        assert_int_equal(t_cmd(s->e, s->l[li], 0, cdb, 16, NULL, 0, s->in, k * 512, &r),
                         SCSI_GOOD);
        assert_int_equal(r.data_in_len, k * 512);
        const uint8_t *m = s->model[li] + lba * 512;
        if (memcmp(s->in, m, k * 512) != 0) {
            for (uint32_t i = 0; i < k * 512; i++)
                if (s->in[i] != m[i])
                    fail_msg("LU %d: byte %llu reads %#x, model has %#x", li,
                             (unsigned long long)(lba * 512 + i), s->in[i], m[i]);
        }
        lba += k;
        n -= k;
    }
}

static void compare_all(struct st *s)
{
    for (int i = 0; i < NLU; i++)
        compare(s, i, 0, (uint32_t)(s->size[i] / 512));
}

static void fill(struct st *s, uint8_t *p, size_t len)
{
    /* Some all-zero blocks, some random, some repeated bytes. */
    switch (rng_below(&s->rng, 4)) {
    case 0:
        memset(p, 0, len);
        break;
    case 1:
        memset(p, (int)rng_below(&s->rng, 256), len);
        break;
    default:
        fill_random(&s->rng, p, len);
        break;
    }
}

static void op_write(struct st *s, int li)
{
    static const uint8_t ops[] = {0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E};
    uint8_t op = ops[rng_below(&s->rng, sizeof ops)];
    uint64_t blocks = s->size[li] / 512;
    uint32_t n = (uint32_t)(1 + rng_below(&s->rng, rng_below(&s->rng, 4) ? 64 : 2048));
    if (op == 0x0A)
        n = MIN(n, 256u);
    uint64_t lba = rng_below(&s->rng, blocks - n + 1);
    if (op == 0x0A && lba > 0x1FFFFF)
        lba &= 0x1FFFFF;
    uint8_t flags = (uint8_t)(op == 0x0A ? 0 : (rng_below(&s->rng, 4) << 3) & 0x18);
    if ((op & 0x1F) == 0x0E)
        flags &= 0x10; /* WRITE AND VERIFY: DPO only */
    uint8_t cdb[16];
    unsigned len = t_rw_cdb(cdb, op, lba, n == 256 && op == 0x0A ? 0 : n, flags);
    /* Unaligned Data-Out now and then. */
    uint8_t *data = s->out + (rng_below(&s->rng, 3) == 0 ? 512 : 0);
    fill(s, data, n * 512);
    struct t_res r;
    assert_int_equal(t_cmd(s->e, s->l[li], rng_below(&s->rng, 2), cdb, len, data, n * 512,
                           NULL, 0, &r),
                     SCSI_GOOD);
    memcpy(s->model[li] + lba * 512, data, n * 512);
    compare(s, li, lba, n);
}

static void op_read(struct st *s, int li)
{
    static const uint8_t ops[] = {0x08, 0x28, 0xA8, 0x88};
    uint8_t op = ops[rng_below(&s->rng, sizeof ops)];
    uint64_t blocks = s->size[li] / 512;
    uint32_t n = (uint32_t)(1 + rng_below(&s->rng, 1024));
    if (op == 0x08)
        n = MIN(n, 256u);
    uint64_t lba = rng_below(&s->rng, blocks - n + 1);
    if (op == 0x08)
        lba &= 0x1FFFFF;
    uint8_t cdb[16];
    unsigned len = t_rw_cdb(cdb, op, lba, n == 256 && op == 0x08 ? 0 : n,
                            op == 0x08 ? 0 : 0x18);
    /* Sometimes a Data-In buffer shorter than the read (EDTL < SPDTL). */
    uint32_t max = rng_below(&s->rng, 4) ? n * 512 : (uint32_t)rng_below(&s->rng, n * 512);
    struct t_res r;
    memset(s->in, 0xEE, n * 512);
    assert_int_equal(t_cmd(s->e, s->l[li], 0, cdb, len, NULL, 0, s->in, max, &r), SCSI_GOOD);
    assert_int_equal(r.xfer_len, n * 512);
    assert_int_equal(r.data_in_len, max);
    assert_memory_equal(s->in, s->model[li] + lba * 512, max);
}

static void op_sync(struct st *s, int li)
{
    uint8_t cdb[16] = {0};
    bool sixteen = rng_below(&s->rng, 2);
    cdb[0] = sixteen ? 0x91 : 0x35;
    cdb[1] = rng_below(&s->rng, 2) ? 0x02 : 0; /* IMMED */
    struct t_res r;
    assert_int_equal(t_cmd(s->e, s->l[li], 0, cdb, sixteen ? 16 : 10, NULL, 0, NULL, 0, &r),
                     SCSI_GOOD);
}

static void test_model_rw(void **state)
{
    struct st *s = *state;
    uint64_t ops = env_u64("SCSI_OPS", 1500);
#ifdef SANITIZED
    ops /= 3;
#endif
    for (uint64_t i = 0; i < ops; i++) {
        int li = (int)rng_below(&s->rng, NLU);
        switch (rng_below(&s->rng, 8)) {
        case 0:
            op_sync(s, li);
            break;
        case 1:
        case 2:
        case 3:
            op_read(s, li);
            break;
        default:
            op_write(s, li);
            break;
        }
    }
    compare_all(s);
}

static void test_range_errors(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t cdb[16];
    uint64_t blocks = s->size[0] / 512;
    static const uint8_t ops[] = {0x28, 0xA8, 0x88, 0x2A, 0xAA, 0x8A};
    for (size_t i = 0; i < sizeof ops; i++) {
        bool wr = ops[i] & 0x02;
        uint64_t lbas[] = {blocks, blocks - 1, blocks + 1, 0x80000000ull, 0xFFFFFFFFull,
                           UINT64_MAX};
        for (size_t j = 0; j < ARRAY_SIZE(lbas); j++) {
            if (ops[i] >> 5 != 4 && lbas[j] > 0xFFFFFFFFull)
                continue;
            unsigned len = t_rw_cdb(cdb, ops[i], lbas[j], 2, 0);
            t_cmd(s->e, s->l[0], 0, cdb, len, s->out, wr ? 1024 : 0, s->in, 1024, &r);
            assert_sense(&r, 0x5, 0x21, 0x00);
        }
        /* Zero blocks at the end: fine; past it: out of range. */
        unsigned len = t_rw_cdb(cdb, ops[i], blocks, 0, 0);
        assert_int_equal(t_cmd(s->e, s->l[0], 0, cdb, len, NULL, 0, NULL, 0, &r), SCSI_GOOD);
        assert_int_equal(r.xfer_len, 0);
        len = t_rw_cdb(cdb, ops[i], blocks + 1, 0, 0);
        t_cmd(s->e, s->l[0], 0, cdb, len, NULL, 0, NULL, 0, &r);
        assert_sense(&r, 0x5, 0x21, 0x00);
        /* More than the maximum transfer length. */
        len = t_rw_cdb(cdb, ops[i], 0, 16385, 0);
        if (ops[i] >> 5 == 1)
            len = t_rw_cdb(cdb, ops[i], 0, 16385, 0);
        t_cmd(s->e, s->l[0], 0, cdb, len, NULL, 0, NULL, 0, &r);
        assert_int_equal(r.status, SCSI_CHECK_CONDITION);
        assert_int_equal(r.key, 0x5);
    }
    /* SYNCHRONIZE CACHE of a range past the end. */
    uint8_t sc[10] = {0x35, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    t_put_be(sc + 2, blocks, 4);
    t_cmd(s->e, s->l[0], 0, sc, 10, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_rw),
        cmocka_unit_test(test_range_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
