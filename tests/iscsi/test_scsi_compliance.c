/*
 * What libiscsi's compliance suite (iscsi-test-cu) asks of the SCSI layer, one test per
 * finding, named after the suite's tests: Data-Out shorter than the CDB asks for on WRITE
 * (iSCSIResiduals.Write*Residuals), longer than it on WRITE SAME and COMPARE AND WRITE
 * (*.InvalidDataOutSize, CompareAndWrite.Simple), MAXIMUM TRANSFER LENGTH as large as the
 * transport's largest command (WriteSame16.Unmap), and the commands added for it:
 * ORWRITE(16), PRE-FETCH(10/16), START STOP UNIT and READ DEFECT DATA(10/12).
 */
#include "tests/iscsi/scsi_test.h"

#define LU_BYTES (64u << 20)
#define LU_BLOCKS (LU_BYTES / 512)

struct st {
    struct t_env *e;
    struct t_lu *l, *ro;
    uint8_t *in, *out;
};

static int setup(void **state)
{
    struct st *s = calloc(1, sizeof(*s));
    s->e = t_env_new(256ull << 20);
    s->l = t_add_lu(s->e, "v", LU_BYTES, 4096, false);
    s->ro = t_add_lu(s->e, "ro", 8u << 20, 4096, true);
    t_clear_ua(s->e, s->l, 0);
    t_clear_ua(s->e, s->ro, 0);
    s->in = t_alloc(33u << 20);
    s->out = t_alloc(33u << 20);
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

static uint8_t run(struct st *s, struct t_lu *l, const uint8_t *cdb, unsigned len,
                   const void *out, uint32_t out_len, struct t_res *r)
{
    return t_cmd(s->e, l, 0, cdb, len, out, out_len, s->in, 33u << 20, r);
}

/* Writes @n blocks of @byte at @lba with WRITE(16). */
static void fill(struct st *s, uint64_t lba, uint32_t n, uint8_t byte)
{
    uint8_t cdb[16];
    struct t_res r;
    memset(s->out, byte, (size_t)n * 512);
    t_rw_cdb(cdb, 0x8A, lba, n, 0);
    assert_int_equal(run(s, s->l, cdb, 16, s->out, n * 512, &r), SCSI_GOOD);
}

/* Asserts that the @n blocks at @lba all hold @byte. */
static void expect(struct st *s, uint64_t lba, uint32_t n, uint8_t byte)
{
    uint8_t cdb[16];
    struct t_res r;
    t_rw_cdb(cdb, 0x88, lba, n, 0);
    assert_int_equal(run(s, s->l, cdb, 16, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, n * 512);
    for (size_t i = 0; i < (size_t)n * 512; i++)
        if (s->in[i] != byte)
            fail_msg("block %llu byte %zu: %#x, expected %#x",
                     (unsigned long long)(lba + i / 512), i % 512, s->in[i], byte);
}

/* iSCSIResiduals.Write10Residuals and the others: an EDTL of fewer whole blocks than the CDB
 * asks for writes those blocks (the transport reports the overflow) and leaves the rest; a
 * part of a block is refused. */
static void test_write_short_data_out(void **state)
{
    struct st *s = *state;
    static const uint8_t ops[] = {0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E};
    for (size_t i = 0; i < sizeof ops; i++) {
        uint8_t cdb[16];
        struct t_res r;
        fill(s, 8, 2, 'a');
        memset(s->out, 'b', 1024);
        unsigned len = t_rw_cdb(cdb, ops[i], 8, 2, 0);
        assert_int_equal(run(s, s->l, cdb, len, s->out, 512, &r), SCSI_GOOD);
        assert_int_equal(r.xfer_len, 1024); /* the CDB's length: the transport's residual */
        expect(s, 8, 1, 'b');
        expect(s, 9, 1, 'a');
        /* No Data-Out at all: nothing written, GOOD. */
        len = t_rw_cdb(cdb, ops[i], 8, 1, 0);
        assert_int_equal(run(s, s->l, cdb, len, NULL, 0, &r), SCSI_GOOD);
        expect(s, 8, 1, 'b');
        /* Part of a block. */
        run(s, s->l, cdb, len, s->out, 200, &r);
        assert_sense(&r, 0x5, 0x0E, 0x03);
        /* Still checked against the CDB's whole range. */
        len = t_rw_cdb(cdb, ops[i], ops[i] == 0x0A ? 0x1FFFFF : LU_BLOCKS - 1, 2, 0);
        run(s, s->l, cdb, len, s->out, 512, &r);
        assert_sense(&r, 0x5, 0x21, 0x00);
    }
}

static uint32_t data_out_len(const uint8_t *cdb, unsigned len)
{
    struct scsi_cmd cmd = {0};
    memcpy(cmd.cdb, cdb, len);
    cmd.cdb_len = len;
    return scsi_data_out_len(&cmd);
}

/* WriteSame10/16.InvalidDataOutSize, CompareAndWrite.InvalidDataOutSize and .Simple: the
 * transport gathers all the Data-Out of WRITE SAME and COMPARE AND WRITE, so that more than
 * their CDB describes is refused rather than cut to size. */
static void test_data_out_longer(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t ws10[10] = {0x41, 0x08, 0, 0, 0, 0, 0, 0, 1, 0};
    uint8_t ws16[16] = {0x93, 0x08};
    ws16[13] = 1;
    uint8_t caw[16] = {0x89};
    caw[13] = 1;
    uint8_t w10[16];
    t_rw_cdb(w10, 0x2A, 0, 3, 0);
    assert_int_equal(data_out_len(ws10, 10), UINT32_MAX);
    assert_int_equal(data_out_len(ws16, 16), UINT32_MAX);
    assert_int_equal(data_out_len(caw, 16), UINT32_MAX);
    assert_int_equal(data_out_len(w10, 10), 3 * 512);
    ws16[1] = 0x09; /* NDOB: no Data-Out */
    assert_int_equal(data_out_len(ws16, 16), 0);
    ws16[1] = 0x08;

    memset(s->out, 0xA6, 1u << 20);
    run(s, s->l, ws10, 10, s->out, 1024, &r);
    assert_sense(&r, 0x5, 0x0E, 0x03);
    run(s, s->l, ws16, 16, s->out, 1024, &r);
    assert_sense(&r, 0x5, 0x0E, 0x03);
    /* NUMBER OF LOGICAL BLOCKS 1 with four blocks of Data-Out. */
    run(s, s->l, caw, 16, s->out, 2048, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 13);
    /* 256 blocks do not fit the field: it reads 0, with 256 KiB of Data-Out. */
    caw[13] = 0;
    run(s, s->l, caw, 16, s->out, 256 * 1024, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(run(s, s->l, caw, 16, NULL, 0, &r), SCSI_GOOD);
    /* Less than asked: refused as before. */
    caw[13] = 3;
    run(s, s->l, caw, 16, s->out, 2048, &r);
    assert_sense(&r, 0x5, 0x0E, 0x03);
}

/* WriteSame16.Unmap writes 65536 blocks at once: MAXIMUM TRANSFER LENGTH is the transport's
 * largest command, 32 MiB. */
static void test_max_transfer(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t inq[6] = {0x12, 0x01, 0xB0, 0, 255, 0};
    assert_int_equal(run(s, s->l, inq, 6, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in + 8, 4), 65536);
    uint8_t cdb[16];
    memset(s->out, 0x3C, 32u << 20);
    t_rw_cdb(cdb, 0x8A, 0, 65536, 0);
    assert_int_equal(run(s, s->l, cdb, 16, s->out, 32u << 20, &r), SCSI_GOOD);
    t_rw_cdb(cdb, 0x88, 0, 65536, 0);
    assert_int_equal(run(s, s->l, cdb, 16, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 32u << 20);
    assert_memory_equal(s->in, s->out, 32u << 20);
    t_rw_cdb(cdb, 0x88, 0, 65537, 0);
    run(s, s->l, cdb, 16, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 10);
}

/* OrWrite.*: ORWRITE(16) ORs the Data-Out into the blocks. */
static void test_orwrite(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t cdb[16];
    fill(s, 100, 4, 0x0F);
    memset(s->out, 0xA0, 4 * 512);
    t_rw_cdb(cdb, 0x8B, 100, 3, 0x08 | 0x10); /* FUA, DPO */
    assert_int_equal(run(s, s->l, cdb, 16, s->out, 3 * 512, &r), SCSI_GOOD);
    expect(s, 100, 3, 0xAF);
    expect(s, 103, 1, 0x0F);
    /* The last blocks of the LU; zero blocks; out of range. */
    fill(s, LU_BLOCKS - 2, 2, 0x5A);
    memset(s->out, 0xA0, 4 * 512);
    t_rw_cdb(cdb, 0x8B, LU_BLOCKS - 2, 2, 0);
    assert_int_equal(run(s, s->l, cdb, 16, s->out, 1024, &r), SCSI_GOOD);
    expect(s, LU_BLOCKS - 2, 2, 0xA0 | 0x5A);
    t_rw_cdb(cdb, 0x8B, 0, 0, 0);
    assert_int_equal(run(s, s->l, cdb, 16, NULL, 0, &r), SCSI_GOOD);
    t_rw_cdb(cdb, 0x8B, LU_BLOCKS - 1, 2, 0);
    run(s, s->l, cdb, 16, s->out, 1024, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
    t_rw_cdb(cdb, 0x8B, 0x8000000000000000ull, 1, 0);
    run(s, s->l, cdb, 16, s->out, 512, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
    /* ORPROTECT: no protection information. */
    for (uint8_t p = 1; p < 8; p++) {
        t_rw_cdb(cdb, 0x8B, 0, 1, (uint8_t)(p << 5));
        run(s, s->l, cdb, 16, s->out, 512, &r);
        assert_sense(&r, 0x5, 0x24, 0x00);
    }
    /* A read-only LU. */
    t_rw_cdb(cdb, 0x8B, 0, 1, 0);
    t_cmd(s->e, s->ro, 0, cdb, 16, s->out, 512, NULL, 0, &r);
    assert_int_equal(r.key, 0x7);
    /* REPORT SUPPORTED OPERATION CODES shows DPO and FUA. */
    uint8_t one[12] = {0xA3, 0x0C, 1, 0x8B, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0};
    assert_int_equal(run(s, s->l, one, 12, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(s->in[1] & 7, 3);
    assert_int_equal(s->in[4 + 1], 0x18);
}

/* Prefetch10/16.*: GOOD within the LU, LBA OUT OF RANGE beyond it. */
static void test_prefetch(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t p10[10] = {0x34};
    t_put_be(p10 + 7, 256, 2);
    assert_int_equal(run(s, s->l, p10, 10, NULL, 0, &r), SCSI_GOOD);
    p10[1] = 0x02; /* IMMED */
    p10[6] = 3;    /* group */
    assert_int_equal(run(s, s->l, p10, 10, NULL, 0, &r), SCSI_GOOD);
    t_put_be(p10 + 2, LU_BLOCKS - 1, 4);
    t_put_be(p10 + 7, 2, 2);
    run(s, s->l, p10, 10, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
    uint8_t p16[16] = {0x90};
    t_put_be(p16 + 2, LU_BLOCKS, 8);
    assert_int_equal(run(s, s->l, p16, 16, NULL, 0, &r), SCSI_GOOD); /* 0 blocks at the end */
    t_put_be(p16 + 2, LU_BLOCKS + 1, 8);
    run(s, s->l, p16, 16, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
    t_put_be(p16 + 2, LU_BLOCKS - 256, 8);
    t_put_be(p16 + 10, 256, 4);
    assert_int_equal(run(s, s->l, p16, 16, NULL, 0, &r), SCSI_GOOD);
}

/* StartStopUnit.*: STOP and START leave the shared LU ready; no medium to eject; no power
 * conditions. */
static void test_start_stop_unit(void **state)
{
    struct st *s = *state;
    struct t_res r;
    static const uint8_t tur[6] = {0};
    uint8_t ssu[6] = {0x1B, 0, 0, 0, 0x00, 0}; /* STOP */
    fill(s, 0, 1, 0x11);
    assert_int_equal(run(s, s->l, ssu, 6, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(run(s, s->l, tur, 6, NULL, 0, &r), SCSI_GOOD);
    expect(s, 0, 1, 0x11);
    ssu[1] = 0x01; /* IMMED */
    assert_int_equal(run(s, s->l, ssu, 6, NULL, 0, &r), SCSI_GOOD);
    ssu[4] = 0x04; /* NO_FLUSH */
    assert_int_equal(run(s, s->l, ssu, 6, NULL, 0, &r), SCSI_GOOD);
    ssu[4] = 0x01; /* START */
    assert_int_equal(run(s, s->l, ssu, 6, NULL, 0, &r), SCSI_GOOD);
    ssu[4] = 0x03; /* LOEJ and START: load, the medium is there */
    assert_int_equal(run(s, s->l, ssu, 6, NULL, 0, &r), SCSI_GOOD);
    ssu[4] = 0x02; /* LOEJ without START: eject */
    run(s, s->l, ssu, 6, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    ssu[4] = 0x11; /* POWER CONDITION ACTIVE */
    run(s, s->l, ssu, 6, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 4);
    assert_int_equal(run(s, s->l, tur, 6, NULL, 0, &r), SCSI_GOOD);
    /* Allowed on a read-only LU. */
    ssu[4] = 0x01;
    assert_int_equal(t_cmd(s->e, s->ro, 0, ssu, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
}

/* ReadDefectData10/12.Simple: empty lists, in the format asked for. */
static void test_read_defect_data(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t d10[10] = {0x37, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 32, 0};
    memset(s->in, 0xEE, 64);
    assert_int_equal(run(s, s->l, d10, 10, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 4);
    assert_int_equal(s->in[1], 0x1D);
    assert_int_equal(t_get_be(s->in + 2, 2), 0);
    d10[2] = 0;
    assert_int_equal(run(s, s->l, d10, 10, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(s->in[1], 0);
    uint8_t d12[12] = {0xB7, 0x08 | 0x03, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};
    memset(s->in, 0xEE, 64);
    assert_int_equal(run(s, s->l, d12, 12, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 8);
    assert_int_equal(s->in[1], 0x0B);
    assert_int_equal(t_get_be(s->in + 4, 4), 0);
    /* A short allocation length cuts the header. */
    d12[9] = 2;
    assert_int_equal(run(s, s->l, d12, 12, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_short_data_out),
        cmocka_unit_test(test_data_out_longer),
        cmocka_unit_test(test_max_transfer),
        cmocka_unit_test(test_orwrite),
        cmocka_unit_test(test_prefetch),
        cmocka_unit_test(test_start_stop_unit),
        cmocka_unit_test(test_read_defect_data),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
