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

static void op_write_same(struct st *s, int li)
{
    uint64_t blocks = s->size[li] / 512;
    bool sixteen = rng_below(&s->rng, 2);
    uint32_t n = (uint32_t)(1 + rng_below(&s->rng, rng_below(&s->rng, 4) ? 64 : 8192));
    uint64_t lba = rng_below(&s->rng, blocks - n + 1);
    bool unmap = rng_below(&s->rng, 2), ndob = sixteen && rng_below(&s->rng, 4) == 0;
    uint8_t *blk = s->out;
    if (ndob || rng_below(&s->rng, 2))
        memset(blk, 0, 512);
    else
        fill(s, blk, 512);
    uint8_t cdb[16] = {0};
    cdb[0] = sixteen ? 0x93 : 0x41;
    cdb[1] = (uint8_t)((unmap ? 0x08 : 0) | (ndob ? 0x01 : 0));
    if (sixteen) {
        t_put_be(cdb + 2, lba, 8);
        t_put_be(cdb + 10, n, 4);
    } else {
        t_put_be(cdb + 2, lba, 4);
        t_put_be(cdb + 7, n, 2);
    }
    struct t_res r;
    assert_int_equal(t_cmd(s->e, s->l[li], 0, cdb, sixteen ? 16 : 10, ndob ? NULL : blk,
                           ndob ? 0 : 512, NULL, 0, &r),
                     SCSI_GOOD);
    for (uint32_t i = 0; i < n; i++)
        memcpy(s->model[li] + (lba + i) * 512, ndob ? s->in : blk, 512);
    if (ndob)
        memset(s->model[li] + lba * 512, 0, (size_t)n * 512);
    compare(s, li, lba, n);
}

static void op_unmap(struct st *s, int li)
{
    uint64_t blocks = s->size[li] / 512;
    unsigned nd = (unsigned)rng_below(&s->rng, 5);
    uint8_t p[8 + 16 * 4] = {0};
    t_put_be(p, 6 + 16 * nd, 2);
    t_put_be(p + 2, 16 * nd, 2);
    for (unsigned i = 0; i < nd; i++) {
        uint32_t n = (uint32_t)rng_below(&s->rng, 4096);
        uint64_t lba = rng_below(&s->rng, blocks - n + 1);
        t_put_be(p + 8 + 16 * i, lba, 8);
        t_put_be(p + 8 + 16 * i + 8, n, 4);
        memset(s->model[li] + lba * 512, 0, (size_t)n * 512);
    }
    uint8_t cdb[10] = {0x42};
    t_put_be(cdb + 7, 8 + 16 * nd, 2);
    struct t_res r;
    assert_int_equal(t_cmd(s->e, s->l[li], 1, cdb, 10, p, 8 + 16 * nd, NULL, 0, &r), SCSI_GOOD);
    for (unsigned i = 0; i < nd; i++)
        compare(s, li, t_get_be(p + 8 + 16 * i, 8), (uint32_t)t_get_be(p + 16 + 16 * i, 4));
}

static void op_caw(struct st *s, int li)
{
    uint64_t blocks = s->size[li] / 512;
    uint32_t n = (uint32_t)(1 + rng_below(&s->rng, 16));
    uint64_t lba = rng_below(&s->rng, blocks - n + 1);
    size_t len = (size_t)n * 512;
    uint8_t *d = s->out;
    memcpy(d, s->model[li] + lba * 512, len);
    bool mis = rng_below(&s->rng, 3) == 0;
    size_t at = rng_below(&s->rng, len);
    if (mis)
        d[at] ^= (uint8_t)(1 + rng_below(&s->rng, 255));
    fill(s, d + len, len);
    uint8_t cdb[16] = {0x89};
    t_put_be(cdb + 2, lba, 8);
    cdb[13] = (uint8_t)n;
    cdb[1] = rng_below(&s->rng, 2) ? 0x08 : 0;
    struct t_res r;
    t_cmd(s->e, s->l[li], 0, cdb, 16, d, (uint32_t)(2 * len), NULL, 0, &r);
    if (mis) {
        assert_sense(&r, 0xE, 0x1D, 0x00);
        assert_int_equal(r.sense[0], 0xF0); /* VALID: INFORMATION holds the offset */
        assert_int_equal(t_get_be(r.sense + 3, 4), at);
    } else {
        assert_int_equal(r.status, SCSI_GOOD);
        memcpy(s->model[li] + lba * 512, d + len, len);
    }
    compare(s, li, lba, n);
}

static void op_verify(struct st *s, int li)
{
    uint64_t blocks = s->size[li] / 512;
    static const uint8_t ops[] = {0x2F, 0xAF, 0x8F};
    uint8_t op = ops[rng_below(&s->rng, 3)];
    uint32_t n = (uint32_t)(1 + rng_below(&s->rng, 64));
    uint64_t lba = rng_below(&s->rng, blocks - n + 1);
    unsigned bytchk = rng_below(&s->rng, 3) ? 1 : 3;
    const uint8_t *m = s->model[li] + lba * 512;
    uint8_t *d = s->out;
    int64_t expect = -1;
    if (bytchk == 1) {
        memcpy(d, m, (size_t)n * 512);
        if (rng_below(&s->rng, 2)) {
            size_t at = rng_below(&s->rng, (size_t)n * 512);
            d[at] ^= 0x40;
            expect = (int64_t)at;
        }
    } else {
        memcpy(d, m, 512);
        for (size_t i = 0; i < (size_t)n * 512 && expect < 0; i++)
            if (m[i] != d[i % 512])
                expect = (int64_t)i;
    }
    uint8_t cdb[16];
    unsigned len = t_rw_cdb(cdb, op, lba, n, (uint8_t)(bytchk << 1));
    struct t_res r;
    t_cmd(s->e, s->l[li], 0, cdb, len, d, bytchk == 1 ? n * 512 : 512, NULL, 0, &r);
    if (expect < 0) {
        assert_int_equal(r.status, SCSI_GOOD);
    } else {
        assert_sense(&r, 0xE, 0x1D, 0x00);
        assert_int_equal(t_get_be(r.sense + 3, 4), (uint64_t)expect);
    }
}

/* The NAA designator of an LU (8 bytes: NAA 3), from VPD page 83h. */
static void lu_naa(struct st *s, int li, uint8_t naa[8])
{
    uint8_t cdb[6] = {0x12, 1, 0x83, 4, 0, 0};
    struct t_res r;
    assert_int_equal(t_cmd(s->e, s->l[li], 0, cdb, 6, NULL, 0, s->in, 1024, &r), SCSI_GOOD);
    unsigned len = (unsigned)t_get_be(s->in + 2, 2);
    for (unsigned off = 4; off < 4 + len; off += 4 + s->in[off + 3]) {
        if ((s->in[off + 1] & 0x3F) == 0x03 && s->in[off + 3] == 8) {
            memcpy(naa, s->in + off + 4, 8);
            return;
        }
    }
    fail_msg("no NAA designator");
}

static void op_xcopy(struct st *s)
{
    uint8_t p[16 + 32 * NLU + 28 * 3] = {0};
    unsigned nseg = (unsigned)(1 + rng_below(&s->rng, 3));
    p[0] = (uint8_t)rng_below(&s->rng, 256);
    t_put_be(p + 2, 32 * NLU, 2);
    t_put_be(p + 8, 28 * nseg, 4);
    for (int i = 0; i < NLU; i++) {
        uint8_t *d = p + 16 + 32 * i;
        d[0] = 0xE4;
        d[4] = 0x01; /* binary */
        d[5] = 0x03; /* LU, NAA */
        d[7] = 8;
        lu_naa(s, i, d + 8);
        t_put_be(d + 29, 512, 3);
    }
    struct {
        int src, dst;
        uint64_t sl, dl;
        uint32_t n;
    } seg[3];
    for (unsigned k = 0; k < nseg; k++) {
        seg[k].src = (int)rng_below(&s->rng, NLU);
        seg[k].dst = (int)rng_below(&s->rng, NLU);
        seg[k].n = (uint32_t)rng_below(&s->rng, 6000);
        uint64_t sb = s->size[seg[k].src] / 512, db = s->size[seg[k].dst] / 512;
        seg[k].sl = rng_below(&s->rng, sb - seg[k].n + 1);
        seg[k].dl = rng_below(&s->rng, db - seg[k].n + 1);
        if (rng_below(&s->rng, 2) == 0) { /* whole 4 KiB grains: copied by sharing */
            seg[k].n &= ~7u;
            seg[k].sl &= ~7ull;
            seg[k].dl &= ~7ull;
        }
        uint8_t *d = p + 16 + 32 * NLU + 28 * k;
        d[0] = 0x02;
        t_put_be(d + 2, 0x18, 2);
        t_put_be(d + 4, (uint64_t)seg[k].src, 2);
        t_put_be(d + 6, (uint64_t)seg[k].dst, 2);
        t_put_be(d + 10, seg[k].n, 2);
        t_put_be(d + 12, seg[k].sl, 8);
        t_put_be(d + 20, seg[k].dl, 8);
    }
    uint32_t plen = 16 + 32 * NLU + 28 * nseg;
    uint8_t cdb[16] = {0x83};
    t_put_be(cdb + 10, plen, 4);
    struct t_res r;
    int via = (int)rng_below(&s->rng, NLU);
    assert_int_equal(t_cmd(s->e, s->l[via], 0, cdb, 16, p, plen, NULL, 0, &r), SCSI_GOOD);
    /* Segment after segment, each as if read whole before it is written (whether it is
     * shared or moved in chunks). */
    for (unsigned k = 0; k < nseg; k++)
        memmove(s->model[seg[k].dst] + seg[k].dl * 512, s->model[seg[k].src] + seg[k].sl * 512,
                (size_t)seg[k].n * 512);
    for (unsigned k = 0; k < nseg; k++)
        compare(s, seg[k].dst, seg[k].dl, seg[k].n);
    /* Its status, by list identifier. */
    uint8_t rcr[16] = {0x84, 0x00, p[0]};
    t_put_be(rcr + 10, 64, 4);
    assert_int_equal(t_cmd(s->e, s->l[via], 0, rcr, 16, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[4] & 0x7F, 0x01);
    assert_int_equal(t_get_be(s->in + 5, 2), nseg);
}

/* GET LBA STATUS: contiguous descriptors from the LBA asked; deallocated ones read zero. */
static void op_lba_status(struct st *s, int li)
{
    uint64_t blocks = s->size[li] / 512;
    uint64_t lba = rng_below(&s->rng, blocks);
    uint8_t cdb[16] = {0x9E, 0x12};
    t_put_be(cdb + 2, lba, 8);
    t_put_be(cdb + 10, 8 + 16 * 32, 4);
    struct t_res r;
    assert_int_equal(t_cmd(s->e, s->l[li], 0, cdb, 16, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    unsigned len = (unsigned)t_get_be(s->in, 4);
    assert_int_equal(len + 4, r.data_in_len);
    assert_true(len >= 20 && (len - 4) % 16 == 0);
    uint64_t pos = lba;
    for (unsigned off = 8; off < len + 4; off += 16) {
        const uint8_t *d = s->in + off;
        uint64_t dl = t_get_be(d, 8), dn = t_get_be(d + 8, 4);
        assert_int_equal(dl, pos);
        assert_true(dn > 0 && dl + dn <= blocks);
        unsigned prov = d[12] & 0x0F;
        assert_true(prov == 0 || prov == 1);
        if (prov == 1)
            for (uint64_t b = dl * 512; b < (dl + dn) * 512; b++)
                if (s->model[li][b])
                    fail_msg("LU %d: deallocated block %llu is not zero in the model", li,
                             (unsigned long long)(b / 512));
        pos = dl + dn;
    }
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
        unsigned what = (unsigned)rng_below(&s->rng, 16);
        if (getenv("SCSI_TRACE"))
            fprintf(stderr, "op %llu: %u on LU %d\n", (unsigned long long)i, what, li);
        switch (what) {
        case 0:
            op_sync(s, li);
            break;
        case 8:
        case 9:
            op_write_same(s, li);
            break;
        case 10:
            op_unmap(s, li);
            break;
        case 11:
        case 12:
            op_caw(s, li);
            break;
        case 13:
            op_verify(s, li);
            break;
        case 14:
            op_xcopy(s);
            break;
        case 15:
            op_lba_status(s, li);
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
        /* More than the maximum transfer length (65536 blocks: more than a 10-byte CDB can
         * ask for). */
        if (ops[i] >> 5 != 1) {
            len = t_rw_cdb(cdb, ops[i], 0, 65537, 0);
            t_cmd(s->e, s->l[0], 0, cdb, len, NULL, 0, NULL, 0, &r);
            assert_int_equal(r.status, SCSI_CHECK_CONDITION);
            assert_int_equal(r.key, 0x5);
        }
    }
    /* SYNCHRONIZE CACHE of a range past the end. */
    uint8_t sc[10] = {0x35, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    t_put_be(sc + 2, blocks, 4);
    t_cmd(s->e, s->l[0], 0, sc, 10, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
}

struct caw_thread {
    struct st *s;
    unsigned nx;
    unsigned incs;
    unsigned miscompares;
};

/* Increments the counter in block 100 of LU 0 by COMPARE AND WRITE, retrying on
 * MISCOMPARE. */
static void *caw_worker(void *arg)
{
    struct caw_thread *t = arg;
    struct st *s = t->s;
    uint8_t *rd = t_alloc(4096), *d = t_alloc(4096);
    for (unsigned done = 0; done < t->incs;) {
        uint8_t cdb[16];
        struct t_res r;
        t_rw_cdb(cdb, 0x88, 100, 1, 0);
        if (t_cmd(s->e, s->l[0], t->nx, cdb, 16, NULL, 0, rd, 512, &r) != SCSI_GOOD)
            abort();
        memcpy(d, rd, 512);
        memcpy(d + 512, rd, 512);
        uint64_t v = t_get_be(rd, 8) + 1;
        t_put_be(d + 512, v, 8);
        uint8_t caw[16] = {0x89};
        t_put_be(caw + 2, 100, 8);
        caw[13] = 1;
        t_cmd(s->e, s->l[0], t->nx, caw, 16, d, 1024, NULL, 0, &r);
        if (r.status == SCSI_GOOD)
            done++;
        else if (r.key == 0xE)
            t->miscompares++;
        else
            abort();
    }
    free(rd);
    free(d);
    return NULL;
}

static void test_caw_atomic(void **state)
{
    struct st *s = *state;
    uint8_t *z = t_alloc(4096), cdb[16];
    struct t_res r;
    t_rw_cdb(cdb, 0x8A, 100, 1, 0);
    assert_int_equal(t_cmd(s->e, s->l[0], 0, cdb, 16, z, 512, NULL, 0, &r), SCSI_GOOD);
    for (unsigned i = 2; i < T_MAX_NX; i++)
        t_clear_ua(s->e, s->l[0], i);
    struct caw_thread t[T_MAX_NX];
    pthread_t th[T_MAX_NX];
    for (unsigned i = 0; i < T_MAX_NX; i++) {
        t[i] = (struct caw_thread){s, i, 40, 0};
        pthread_create(&th[i], NULL, caw_worker, &t[i]);
    }
    unsigned mis = 0;
    for (unsigned i = 0; i < T_MAX_NX; i++) {
        pthread_join(th[i], NULL);
        mis += t[i].miscompares;
    }
    t_rw_cdb(cdb, 0x88, 100, 1, 0);
    assert_int_equal(t_cmd(s->e, s->l[0], 0, cdb, 16, NULL, 0, s->in, 512, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 8), 40 * T_MAX_NX);
    fprintf(stderr, "COMPARE AND WRITE: %u increments, %u miscompares\n", 40 * T_MAX_NX, mis);
    memcpy(s->model[0] + 100 * 512, s->in, 512);
    free(z);
}

/* Commands of many steps (UNMAP with 256 descriptors, EXTENDED COPY of 64 segments of
 * holes): their steps complete inline on the reactor, deeper than the nesting limit. */
static void test_many_steps(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t p[8 + 16 * 256] = {0};
    t_put_be(p, 6 + 16 * 256, 2);
    t_put_be(p + 2, 16 * 256, 2);
    for (unsigned i = 0; i < 256; i++) {
        t_put_be(p + 8 + 16 * i, 64 * i, 8);
        t_put_be(p + 16 + 16 * i, 8, 4);
        memset(s->model[1] + 64 * i * 512, 0, 8 * 512);
    }
    uint8_t um[10] = {0x42};
    t_put_be(um + 7, sizeof p, 2);
    assert_int_equal(t_cmd(s->e, s->l[1], 0, um, 10, p, sizeof p, NULL, 0, &r), SCSI_GOOD);
    /* Zero the source range, then copy it in 64 segments. */
    uint8_t ws[16] = {0x93, 0x09};
    t_put_be(ws + 10, 64 * 512, 4);
    assert_int_equal(t_cmd(s->e, s->l[0], 0, ws, 16, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    memset(s->model[0], 0, 64 * 512 * 512);
    uint8_t x[16 + 32 * NLU + 28 * 64] = {0};
    x[1] = 0x18; /* LIST ID USAGE 11b */
    t_put_be(x + 2, 32 * NLU, 2);
    t_put_be(x + 8, 28 * 64, 4);
    for (int i = 0; i < NLU; i++) {
        uint8_t *d = x + 16 + 32 * i;
        d[0] = 0xE4;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = 8;
        lu_naa(s, i, d + 8);
        t_put_be(d + 29, 512, 3);
    }
    for (unsigned k = 0; k < 64; k++) {
        uint8_t *d = x + 16 + 32 * NLU + 28 * k;
        d[0] = 0x02;
        t_put_be(d + 2, 0x18, 2);
        t_put_be(d + 4, 0, 2);
        t_put_be(d + 6, 1, 2);
        t_put_be(d + 10, 512, 2);
        t_put_be(d + 12, 512 * k, 8);
        t_put_be(d + 20, 512 * k, 8);
        memset(s->model[1] + 512 * k * 512, 0, 512 * 512);
    }
    uint8_t xc[16] = {0x83};
    t_put_be(xc + 10, sizeof x, 4);
    assert_int_equal(t_cmd(s->e, s->l[0], 0, xc, 16, x, sizeof x, NULL, 0, &r), SCSI_GOOD);
    compare_all(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_rw),
        cmocka_unit_test(test_range_errors),
        cmocka_unit_test(test_caw_atomic),
        cmocka_unit_test(test_many_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
