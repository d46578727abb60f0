/*
 * Bad input to the SCSI layer, each with the sense SPC-4/SBC-3 ask for: truncated CDBs of
 * every supported command, LBAs past the end for every block command, lengths over the
 * limits, parameter lists whose inner lengths lie (UNMAP, MODE SELECT, EXTENDED COPY,
 * PERSISTENT RESERVE OUT), bad field values (WRITE SAME ANCHOR and zero blocks, VERIFY
 * BYTCHK 10b, COMPARE AND WRITE sizes, EXTENDED COPY descriptors); then random CDBs and
 * parameter data for every opcode of the table, where the only rules are: done() comes, the
 * sense is well formed, Data-In stays within its buffer, the volume is untouched by refused
 * writes (checked by the sanitizer builds for memory errors).
 *
 *   SCSI_SEED=n  replay      SCSI_FUZZ=n  random commands (default 20000)
 */
#include "tests/iscsi/scsi_test.h"

struct st {
    struct t_env *e;
    struct t_lu *l;
    uint8_t *in, *out;
    uint64_t blocks;
    struct rng rng;
};

static int setup(void **state)
{
    struct st *s = calloc(1, sizeof(*s));
    s->e = t_env_new(64ull << 20);
    s->l = t_add_lu(s->e, "vol", 16u << 20, 4096, false);
    s->blocks = (16u << 20) / 512;
    for (unsigned i = 0; i < T_MAX_NX; i++)
        t_clear_ua(s->e, s->l, i);
    s->in = t_alloc(1u << 20);
    s->out = t_alloc(1u << 20);
    rng_seed_env(&s->rng, "SCSI_SEED");
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct st *s = *state;
    t_env_free(s->e);
    free(s->in);
    free(s->out);
    free(s);
    return 0;
}

static struct t_res run(struct st *s, const uint8_t *cdb, unsigned len, const void *out,
                        uint32_t out_len)
{
    struct t_res r;
    t_cmd(s->e, s->l, 0, cdb, len, out, out_len, s->in, 1u << 20, &r);
    return r;
}

static void test_truncated(void **state)
{
    struct st *s = *state;
    /* Every opcode of each group with a CDB one byte short of its group's length. */
    static const uint8_t ops[] = {0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A,
                                  0x25, 0x28, 0x2A, 0x2E, 0x2F, 0x35, 0x41, 0x42, 0x55,
                                  0x56, 0x57, 0x5A, 0x5E, 0x5F, 0x83, 0x84, 0x88, 0x89,
                                  0x8A, 0x8E, 0x8F, 0x91, 0x93, 0x9E, 0xA0, 0xA3, 0xA8,
                                  0xAA, 0xAE, 0xAF, 0x1B, 0x34, 0x37, 0x8B, 0x90, 0xB7};
    for (size_t i = 0; i < sizeof ops; i++) {
        uint8_t cdb[16] = {ops[i]};
        unsigned full = ops[i] < 0x20 ? 6 : ops[i] < 0x60 ? 10 : ops[i] < 0xA0 ? 16 : 12;
        if (ops[i] == 0x9E || ops[i] == 0x5E || ops[i] == 0x5F || ops[i] == 0x83 ||
            ops[i] == 0x84 || ops[i] == 0xA3)
            cdb[1] = ops[i] == 0x9E ? 0x10 : ops[i] == 0xA3 ? 0x0C : 0;
        struct t_res r = run(s, cdb, full - 1, NULL, 0);
        assert_int_equal(r.status, SCSI_CHECK_CONDITION);
        assert_int_equal(r.key, 0x5);
        assert_int_equal(r.xfer_len, 0);
    }
}

static void test_out_of_range(void **state)
{
    struct st *s = *state;
    uint64_t B = s->blocks;
    memset(s->out, 0, 8192);
    /* WRITE SAME 10/16 */
    uint64_t lbas[] = {B, B + 1, 0x80000000ull, 0xFFFFFFFFull, UINT64_MAX};
    for (size_t i = 0; i < ARRAY_SIZE(lbas); i++) {
        uint8_t ws16[16] = {0x93};
        t_put_be(ws16 + 2, lbas[i], 8);
        t_put_be(ws16 + 10, 1, 4);
        struct t_res r = run(s, ws16, 16, s->out, 512);
        assert_sense(&r, 0x5, 0x21, 0x00);
        if (lbas[i] <= 0xFFFFFFFF) {
            uint8_t ws10[10] = {0x41};
            t_put_be(ws10 + 2, lbas[i], 4);
            t_put_be(ws10 + 7, 1, 2);
            r = run(s, ws10, 10, s->out, 512);
            assert_sense(&r, 0x5, 0x21, 0x00);
        }
        /* VERIFY, COMPARE AND WRITE, GET LBA STATUS, SYNCHRONIZE CACHE(16) */
        uint8_t cdb[16];
        unsigned len = t_rw_cdb(cdb, 0x8F, lbas[i], 1, 0x02);
        r = run(s, cdb, len, s->out, 512);
        assert_sense(&r, 0x5, 0x21, 0x00);
        uint8_t caw[16] = {0x89};
        t_put_be(caw + 2, lbas[i], 8);
        caw[13] = 1;
        r = run(s, caw, 16, s->out, 1024);
        assert_sense(&r, 0x5, 0x21, 0x00);
        uint8_t gls[16] = {0x9E, 0x12};
        t_put_be(gls + 2, lbas[i], 8);
        t_put_be(gls + 10, 24, 4);
        r = run(s, gls, 16, NULL, 0);
        assert_sense(&r, 0x5, 0x21, 0x00);
        uint8_t sc[16] = {0x91};
        t_put_be(sc + 2, lbas[i], 8);
        t_put_be(sc + 10, 1, 4);
        r = run(s, sc, 16, NULL, 0);
        assert_sense(&r, 0x5, 0x21, 0x00);
    }
    /* The last block and one more, through each command with a transfer length. */
    static const uint8_t ops[] = {0x28, 0x2A, 0x2E, 0x2F, 0xA8, 0xAA, 0xAE, 0xAF,
                                  0x88, 0x8A, 0x8E, 0x8F};
    for (size_t i = 0; i < sizeof ops; i++) {
        uint8_t cdb[16];
        unsigned len = t_rw_cdb(cdb, ops[i], B - 1, 2, (ops[i] & 0x0F) == 0x0F ? 0x02 : 0);
        struct t_res r = run(s, cdb, len, s->out, 1024);
        assert_sense(&r, 0x5, 0x21, 0x00);
    }
    /* UNMAP with one good and one bad descriptor: nothing unmapped. */
    uint8_t data[512];
    memset(data, 0x77, 512);
    uint8_t w[16];
    t_rw_cdb(w, 0x2A, 10, 1, 0);
    assert_int_equal(run(s, w, 10, data, 512).status, SCSI_GOOD);
    uint8_t p[8 + 32] = {0, 38, 0, 32};
    t_put_be(p + 8, 10, 8);
    t_put_be(p + 16, 1, 4);
    t_put_be(p + 24, B - 1, 8);
    t_put_be(p + 32, 2, 4);
    uint8_t um[10] = {0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0};
    struct t_res r = run(s, um, 10, p, 40);
    assert_sense(&r, 0x5, 0x21, 0x00);
    t_rw_cdb(w, 0x28, 10, 1, 0);
    assert_int_equal(run(s, w, 10, NULL, 0).status, SCSI_GOOD);
    assert_memory_equal(s->in, data, 512);
}

static void test_lengths(void **state)
{
    struct st *s = *state;
    struct t_res r;
    memset(s->out, 0, 1u << 20);
    /* WRITE SAME: zero blocks (WSNZ), beyond MAXIMUM WRITE SAME LENGTH, ANCHOR, a Data-Out
     * of the wrong size. */
    uint8_t ws[16] = {0x93};
    r = run(s, ws, 16, s->out, 512);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 10);
    t_put_be(ws + 10, (1u << 21) + 1, 4);
    r = run(s, ws, 16, s->out, 512);
    assert_sense(&r, 0x5, 0x24, 0x00);
    t_put_be(ws + 10, 1, 4);
    ws[1] = 0x10 | 0x08;
    r = run(s, ws, 16, s->out, 512);
    assert_sense(&r, 0x5, 0x24, 0x00);
    ws[1] = 0x08;
    r = run(s, ws, 16, s->out, 1024);
    assert_int_equal(r.key, 0x5);
    r = run(s, ws, 16, s->out, 256);
    assert_int_equal(r.key, 0x5);
    /* VERIFY BYTCHK 10b */
    uint8_t cdb[16];
    t_rw_cdb(cdb, 0x2F, 0, 1, 0x04);
    r = run(s, cdb, 10, s->out, 512);
    assert_sense(&r, 0x5, 0x24, 0x00);
    /* COMPARE AND WRITE: over the maximum; Data-Out not twice the blocks. */
    uint8_t caw[16] = {0x89};
    caw[13] = 200;
    r = run(s, caw, 16, s->out, 200 * 1024);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 13);
    caw[13] = 1;
    r = run(s, caw, 16, s->out, 2048);
    assert_int_equal(r.key, 0x5);
    caw[13] = 3;
    r = run(s, caw, 16, s->out, 2048);
    assert_sense(&r, 0x5, 0x0E, 0x03);
    caw[13] = 0;
    assert_int_equal(run(s, caw, 16, NULL, 0).status, SCSI_GOOD);
    /* Reads over MAXIMUM TRANSFER LENGTH (and past the end of this LU: test_scsi_compliance
     * has one large enough). */
    t_rw_cdb(cdb, 0x88, 0, 65537, 0);
    r = run(s, cdb, 16, NULL, 0);
    assert_int_equal(r.key, 0x5);
    assert_int_equal(r.xfer_len, 65537 * 512);
    /* A 6-byte READ's 21-bit LBA. */
    t_rw_cdb(cdb, 0x08, 0x1FFFFF, 1, 0);
    r = run(s, cdb, 6, NULL, 0);
    assert_sense(&r, 0x5, 0x21, 0x00);
}

static void test_param_lists(void **state)
{
    struct st *s = *state;
    struct t_res r;
    /* UNMAP: list shorter than its header, lengths that lie, too many descriptors. */
    uint8_t um[10] = {0x42};
    uint8_t p[8 + 16 * 300] = {0};
    t_put_be(um + 7, 4, 2);
    r = run(s, um, 10, p, 4);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    t_put_be(um + 7, 24, 2);
    t_put_be(p, 100, 2); /* UNMAP DATA LENGTH past the list */
    t_put_be(p + 2, 16, 2);
    r = run(s, um, 10, p, 24);
    assert_sense(&r, 0x5, 0x26, 0x00);
    t_put_be(p, 22, 2);
    t_put_be(p + 2, 64, 2); /* BLOCK DESCRIPTOR DATA LENGTH past the list */
    r = run(s, um, 10, p, 24);
    assert_sense(&r, 0x5, 0x26, 0x00);
    t_put_be(p, 6 + 16 * 257, 2);
    t_put_be(p + 2, 16 * 257, 2);
    t_put_be(um + 7, 8 + 16 * 257, 2);
    r = run(s, um, 10, p, 8 + 16 * 257);
    assert_sense(&r, 0x5, 0x26, 0x00);
    /* ANCHOR in the CDB */
    um[1] = 0x01;
    r = run(s, um, 10, p, 8 + 16 * 257);
    assert_sense(&r, 0x5, 0x24, 0x00);
    um[1] = 0;
    /* Zero-length list and zero-block descriptors: nothing to do. */
    t_put_be(um + 7, 0, 2);
    assert_int_equal(run(s, um, 10, NULL, 0).status, SCSI_GOOD);
    memset(p, 0, 24);
    t_put_be(p, 22, 2);
    t_put_be(p + 2, 16, 2);
    t_put_be(p + 8, s->blocks, 8);
    t_put_be(um + 7, 24, 2);
    assert_int_equal(run(s, um, 10, p, 24).status, SCSI_GOOD);
    /* MODE SELECT(10): block descriptor length past the list. */
    uint8_t ms[10] = {0x55, 0x10, 0, 0, 0, 0, 0, 0, 8, 0};
    uint8_t mp[64] = {0};
    t_put_be(mp + 6, 16, 2);
    r = run(s, ms, 10, mp, 8);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    /* A page code we do not have. */
    memset(mp, 0, sizeof mp);
    mp[8] = 0x19;
    mp[9] = 0x06;
    ms[8] = 16;
    r = run(s, ms, 10, mp, 16);
    assert_sense(&r, 0x5, 0x26, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 8);
    /* EXTENDED COPY: shorter than its header, descriptor lengths past the list, unknown
     * descriptor types, too many target descriptors, an unknown target. */
    uint8_t xc[16] = {0x83};
    uint8_t xp[16 + 32 * 20 + 28] = {0};
    t_put_be(xc + 10, 10, 4);
    r = run(s, xc, 16, xp, 10);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    t_put_be(xp + 2, 32, 2);
    t_put_be(xp + 8, 28, 4);
    t_put_be(xc + 10, 16 + 32 + 27, 4);
    r = run(s, xc, 16, xp, 16 + 32 + 27);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    uint8_t *td = xp + 16, *sd = xp + 16 + 32;
    td[0] = 0xE0;
    t_put_be(td + 29, 512, 3);
    sd[0] = 0x02;
    t_put_be(sd + 2, 0x18, 2);
    t_put_be(sd + 10, 1, 2);
    t_put_be(xc + 10, 16 + 32 + 28, 4);
    r = run(s, xc, 16, xp, 16 + 32 + 28);
    assert_sense(&r, 0x5, 0x26, 0x07);
    td[0] = 0xE4;
    sd[0] = 0x01;
    r = run(s, xc, 16, xp, 16 + 32 + 28);
    assert_sense(&r, 0x5, 0x26, 0x09);
    sd[0] = 0x02;
    /* The target: a designator no LU has. */
    td[4] = 0x01;
    td[5] = 0x03;
    td[7] = 16;
    memset(td + 8, 0x6A, 16);
    r = run(s, xc, 16, xp, 16 + 32 + 28);
    assert_sense(&r, 0xA, 0x0D, 0x02);
    /* 17 target descriptors */
    memset(xp, 0, sizeof xp);
    t_put_be(xp + 2, 32 * 17, 2);
    for (int i = 0; i < 17; i++)
        xp[16 + 32 * i] = 0xE4;
    t_put_be(xc + 10, 16 + 32 * 17, 4);
    r = run(s, xc, 16, xp, 16 + 32 * 17);
    assert_sense(&r, 0x5, 0x26, 0x06);
    /* An empty list: nothing. */
    t_put_be(xc + 10, 0, 4);
    assert_int_equal(run(s, xc, 16, NULL, 0).status, SCSI_GOOD);
    /* RECEIVE COPY RESULTS of a list never seen. */
    uint8_t rcr[16] = {0x84, 0x00, 0x99};
    t_put_be(rcr + 10, 64, 4);
    r = run(s, rcr, 16, NULL, 0);
    assert_sense(&r, 0x5, 0x24, 0x00);
    rcr[1] = 0x03;
    rcr[2] = 0;
    assert_int_equal(run(s, rcr, 16, NULL, 0).status, SCSI_GOOD);
    assert_int_equal(t_get_be(s->in + 8, 2), 16);
    assert_int_equal(t_get_be(s->in + 10, 2), 64);
}

/* Random CDBs for every opcode of the table, random Data-Out. */
static void test_fuzz(void **state)
{
    struct st *s = *state;
    static const uint8_t ops[] = {0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A,
                                  0x25, 0x28, 0x2A, 0x2E, 0x2F, 0x35, 0x41, 0x42, 0x55,
                                  0x56, 0x57, 0x5A, 0x5E, 0x5F, 0x83, 0x84, 0x88, 0x89,
                                  0x8A, 0x8E, 0x8F, 0x91, 0x93, 0x9E, 0xA0, 0xA3, 0xA8,
                                  0xAA, 0xAE, 0xAF, 0x1B, 0x34, 0x37, 0x8B, 0x90, 0xB7,
                                  0xC0, 0x7F};
    uint64_t n = env_u64("SCSI_FUZZ", 20000);
#ifdef SANITIZED
    n /= 4;
#endif
    for (uint64_t i = 0; i < n; i++) {
        uint8_t cdb[SCSI_CDB_MAX];
        fill_random(&s->rng, cdb, sizeof cdb);
        cdb[0] = ops[rng_below(&s->rng, sizeof ops)];
        /* Mostly sane lengths and fields, so commands get past the first checks. */
        if (rng_below(&s->rng, 2)) {
            for (int k = 1; k < 16; k++)
                if (rng_below(&s->rng, 3))
                    cdb[k] = 0;
            cdb[1] &= 0x1F;
        }
        if (rng_below(&s->rng, 2)) {
            /* small lengths where the lengths are */
            cdb[4] &= 0x0F;
            cdb[7] = 0;
            cdb[8] &= 0x3F;
            cdb[6] = cdb[10] = cdb[11] = 0;
            cdb[12] &= 0x03;
        }
        unsigned len = (unsigned)(1 + rng_below(&s->rng, 16));
        if (rng_below(&s->rng, 4))
            len = cdb[0] < 0x20 ? 6 : cdb[0] < 0x60 ? 10 : cdb[0] < 0xA0 ? 16 : 12;
        uint32_t out_len = (uint32_t)rng_below(&s->rng, 4096);
        fill_random(&s->rng, s->out, out_len);
        if (rng_below(&s->rng, 2))
            memset(s->out, 0, MIN(out_len, 8u));
        uint32_t in_max = (uint32_t)rng_below(&s->rng, 1u << 20);
        struct t_res r;
        unsigned nx = (unsigned)rng_below(&s->rng, T_MAX_NX);
        t_cmd(s->e, s->l, nx, cdb, len, s->out, out_len, s->in, in_max, &r);
        if (r.status == SCSI_CHECK_CONDITION) {
            assert_true(r.sense[0] == 0x70 || r.sense[0] == 0xF0 || r.sense[0] == 0x72);
            assert_true(r.key != 0);
        } else {
            assert_true(r.status == SCSI_GOOD || r.status == SCSI_RESERVATION_CONFLICT ||
                        r.status == SCSI_BUSY);
        }
    }
    /* Leave no reservation behind: RELEASE from every nexus (past its unit attentions),
     * then a CLEAR. */
    struct t_res r;
    for (unsigned i = 0; i < T_MAX_NX; i++) {
        uint8_t rel[6] = {0x17};
        for (int k = 0; k < 16; k++)
            if (t_cmd(s->e, s->l, i, rel, 6, NULL, 0, NULL, 0, &r) != SCSI_CHECK_CONDITION)
                break;
    }
    uint8_t p[24] = {0};
    t_put_be(p + 8, 1, 8);
    uint8_t reg[10] = {0x5F, 0x06, 0, 0, 0, 0, 0, 0, 24, 0};
    for (int k = 0; k < 16; k++)
        if (t_cmd(s->e, s->l, 0, reg, 10, p, 24, NULL, 0, &r) == SCSI_GOOD)
            break;
    assert_int_equal(r.status, SCSI_GOOD);
    t_put_be(p, 1, 8);
    uint8_t clear[10] = {0x5F, 0x03, 0, 0, 0, 0, 0, 0, 24, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, clear, 10, p, 24, NULL, 0, &r), SCSI_GOOD);
    for (unsigned i = 0; i < T_MAX_NX; i++)
        t_clear_ua(s->e, s->l, i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated),   cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_lengths),     cmocka_unit_test(test_param_lists),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
