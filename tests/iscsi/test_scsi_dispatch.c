/*
 * The SCSI layer's dispatch and sense: unknown opcodes and service actions, reserved CDB
 * bits (with sense-key-specific field pointers), truncated CDBs, LUNs without an LU, unit
 * attentions (power on, LU reset, capacity change, mode parameters changed), REQUEST SENSE,
 * fixed and descriptor sense formats, transfer lengths for residuals, DATA PROTECT on a
 * read-only LU.
 */
#include "tests/iscsi/scsi_test.h"

struct st {
    struct t_env *e;
    struct t_lu *l, *ro;
    uint8_t *in;
};

static int setup(void **state)
{
    struct st *s = calloc(1, sizeof(*s));
    s->e = t_env_new(128ull << 20);
    s->l = t_add_lu(s->e, "vol", 16u << 20, 4096, false);
    s->ro = t_add_lu(s->e, "ro", 8u << 20, 65536, true);
    s->in = t_alloc(1u << 20);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct st *s = *state;
    t_env_free(s->e);
    free(s->in);
    free(s);
    return 0;
}

static const uint8_t TUR[6] = {0};

static void test_power_on_ua(void **state)
{
    struct st *s = *state;
    struct t_res r;
    /* INQUIRY neither reports nor clears it. */
    uint8_t inq[6] = {0x12, 0, 0, 0, 96, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, inq, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    t_cmd(s->e, s->l, 0, TUR, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x6, 0x29, 0x00);
    assert_int_equal(t_cmd(s->e, s->l, 0, TUR, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    /* Each nexus has its own. */
    t_cmd(s->e, s->l, 1, TUR, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x6, 0x29, 0x00);
    /* REQUEST SENSE reports and clears one. */
    uint8_t rs[6] = {0x03, 0, 0, 0, 252, 0};
    assert_int_equal(t_cmd(s->e, s->l, 2, rs, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[0] & 0x7F, 0x70);
    assert_int_equal(s->in[2] & 0x0F, 0x6);
    assert_int_equal(s->in[12], 0x29);
    assert_int_equal(t_cmd(s->e, s->l, 2, TUR, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    t_clear_ua(s->e, s->l, 3);
}

static void test_unknown_opcode(void **state)
{
    struct st *s = *state;
    struct t_res r;
    t_clear_ua(s->e, s->l, 0);
    uint8_t cdb[16] = {0xC7};
    t_cmd(s->e, s->l, 0, cdb, 16, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x20, 0x00);
    uint8_t cdb2[10] = {0x3B}; /* WRITE BUFFER: not supported */
    t_cmd(s->e, s->l, 0, cdb2, 10, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x20, 0x00);
    /* A known opcode with an unknown service action: INVALID FIELD IN CDB at byte 1. */
    uint8_t sai[16] = {0x9E, 0x1F};
    t_cmd(s->e, s->l, 0, sai, 16, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(r.sense[15] & 0x80, 0x80); /* SKSV */
    assert_int_equal(r.sense[15] & 0x40, 0x40); /* C/D: in the CDB */
    assert_int_equal(t_get_be(r.sense + 16, 2), 1);
}

static void test_reserved_bits(void **state)
{
    struct st *s = *state;
    struct t_res r;
    t_clear_ua(s->e, s->l, 0);
    /* READ(10) with RDPROTECT set: byte 1, bit 7. */
    uint8_t cdb[16];
    t_rw_cdb(cdb, 0x28, 0, 1, 0x20);
    t_cmd(s->e, s->l, 0, cdb, 10, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(r.sense[15], 0x80 | 0x40 | 0x08 | 5);
    assert_int_equal(t_get_be(r.sense + 16, 2), 1);
    /* TEST UNIT READY with a reserved byte set. */
    uint8_t tur[6] = {0, 0, 0, 0x10, 0, 0};
    t_cmd(s->e, s->l, 0, tur, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 3);
    /* NACA in the control byte. */
    uint8_t tur2[6] = {0, 0, 0, 0, 0, 0x04};
    t_cmd(s->e, s->l, 0, tur2, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 5);
    /* Truncated: READ(16) in 10 bytes. */
    t_rw_cdb(cdb, 0x88, 0, 1, 0);
    t_cmd(s->e, s->l, 0, cdb, 10, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(r.xfer_len, 0);
    /* No CDB at all. */
    t_cmd(s->e, s->l, 0, cdb, 0, NULL, 0, NULL, 0, &r);
    assert_int_equal(r.status, SCSI_CHECK_CONDITION);
}

static void test_no_lu(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t inq[6] = {0x12, 0, 0, 0, 96, 0};
    assert_int_equal(t_cmd_lun(s->e, NULL, 0, 7, inq, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[0], 0x7F);
    assert_true(r.data_in_len >= 36);
    t_cmd_lun(s->e, NULL, 0, 7, TUR, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x25, 0x00);
    uint8_t cdb[16];
    t_rw_cdb(cdb, 0x28, 0, 1, 0);
    t_cmd_lun(s->e, NULL, 0, 7, cdb, 10, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x25, 0x00);
    assert_int_equal(r.xfer_len, 512);
    uint8_t rs[6] = {0x03, 0, 0, 0, 252, 0};
    assert_int_equal(t_cmd_lun(s->e, NULL, 0, 7, rs, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[2] & 0x0F, 0x5);
    assert_int_equal(s->in[12], 0x25);
    uint8_t rl[12] = {0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    assert_int_equal(t_cmd_lun(s->e, NULL, 0, 7, rl, 12, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 4), 8 * s->e->nlu);
    /* VPD of a missing LU. */
    uint8_t vpd[6] = {0x12, 1, 0x80, 0, 255, 0};
    t_cmd_lun(s->e, NULL, 0, 7, vpd, 6, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x25, 0x00);
}

static void test_lu_reset_ua(void **state)
{
    struct st *s = *state;
    struct t_res r;
    for (unsigned i = 0; i < T_MAX_NX; i++)
        t_clear_ua(s->e, s->l, i);
    scsi_lu_reset(s->l->lu, &s->l->nx[0]);
    assert_int_equal(t_cmd(s->e, s->l, 0, TUR, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    for (unsigned i = 1; i < T_MAX_NX; i++) {
        t_cmd(s->e, s->l, i, TUR, 6, NULL, 0, NULL, 0, &r);
        assert_sense(&r, 0x6, 0x29, 0x03);
        assert_int_equal(t_cmd(s->e, s->l, i, TUR, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    }
}

static void test_capacity_changed(void **state)
{
    struct st *s = *state;
    struct t_res r;
    for (unsigned i = 0; i < 2; i++)
        t_clear_ua(s->e, s->l, i);
    assert_int_equal(vol_resize(s->e->pool, "vol", 20u << 20), 0);
    uint8_t rc[10] = {0x25};
    t_cmd(s->e, s->l, 0, rc, 10, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x6, 0x2A, 0x09);
    assert_int_equal(t_cmd(s->e, s->l, 0, rc, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 4), (20u << 20) / 512 - 1);
    t_cmd(s->e, s->l, 1, TUR, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x6, 0x2A, 0x09);
}

static void test_request_sense_last(void **state)
{
    struct st *s = *state;
    struct t_res r;
    t_clear_ua(s->e, s->l, 0);
    uint8_t cdb[16];
    t_rw_cdb(cdb, 0x88, UINT64_MAX, 1, 0);
    t_cmd(s->e, s->l, 0, cdb, 16, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
    /* The last sense, once, in the format asked for. */
    uint8_t rs[6] = {0x03, 1, 0, 0, 252, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rs, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[0], 0x72);
    assert_int_equal(s->in[1], 0x5);
    assert_int_equal(s->in[2], 0x21);
    rs[1] = 0;
    assert_int_equal(t_cmd(s->e, s->l, 0, rs, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[0], 0x70);
    assert_int_equal(s->in[2], 0x0);
    assert_int_equal(s->in[12], 0x00);
    /* Allocation length cuts it. */
    rs[4] = 8;
    assert_int_equal(t_cmd(s->e, s->l, 0, rs, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 8);
    assert_int_equal(r.xfer_len, 8);
}

/* D_SENSE through MODE SELECT: descriptor sense for every nexus; the others get MODE
 * PARAMETERS CHANGED. */
static void test_descriptor_sense(void **state)
{
    struct st *s = *state;
    struct t_res r;
    t_clear_ua(s->e, s->l, 0);
    t_clear_ua(s->e, s->l, 1);
    uint8_t ms[6] = {0x1A, 0x08, 0x0A, 0, 255, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, ms, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    uint8_t page[4 + 12];
    memcpy(page, s->in, sizeof page);
    page[0] = 0;
    page[2] = 0; /* device-specific parameter is reserved in MODE SELECT */
    page[4 + 2] |= 0x04;
    uint8_t sel[6] = {0x15, 0x10, 0, 0, sizeof page, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, sel, 6, page, sizeof page, NULL, 0, &r), SCSI_GOOD);
    uint8_t cdb[16];
    t_rw_cdb(cdb, 0x88, UINT64_MAX - 5, 1, 0);
    t_cmd(s->e, s->l, 0, cdb, 16, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x21, 0x00);
    assert_int_equal(r.sense[0], 0x72);
    t_cmd(s->e, s->l, 1, TUR, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x6, 0x2A, 0x01);
    assert_int_equal(r.sense[0], 0x72);
    /* A field pointer in descriptor format: the sense key specific descriptor. */
    uint8_t tur[6] = {0, 0, 0x01, 0, 0, 0};
    t_cmd(s->e, s->l, 0, tur, 6, NULL, 0, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(r.sense[7], 8);
    assert_int_equal(r.sense[8], 0x02);
    assert_int_equal(r.sense[12], 0x80 | 0x40 | 0x08 | 0);
    assert_int_equal(t_get_be(r.sense + 13, 2), 2);
    /* Back to fixed. */
    page[4 + 2] &= (uint8_t)~0x04;
    assert_int_equal(t_cmd(s->e, s->l, 0, sel, 6, page, sizeof page, NULL, 0, &r), SCSI_GOOD);
    t_cmd(s->e, s->l, 0, tur, 6, NULL, 0, NULL, 0, &r);
    assert_int_equal(r.sense[0], 0x70);
    t_clear_ua(s->e, s->l, 1);
}

static void test_xfer_len(void **state)
{
    struct st *s = *state;
    struct t_res r;
    t_clear_ua(s->e, s->l, 0);
    uint8_t cdb[16];
    /* READ(10) of 3 blocks into 1000 bytes: 1000 transferred, xfer_len says 1536. */
    t_rw_cdb(cdb, 0x28, 0, 3, 0);
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 10, NULL, 0, s->in, 1000, &r), SCSI_GOOD);
    assert_int_equal(r.xfer_len, 1536);
    assert_int_equal(r.data_in_len, 1000);
    /* READ(6) of 0 blocks means 256. */
    t_rw_cdb(cdb, 0x08, 0, 0, 0);
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 6, NULL, 0, s->in, 1u << 20, &r), SCSI_GOOD);
    assert_int_equal(r.xfer_len, 256 * 512);
    assert_int_equal(r.data_in_len, 256 * 512);
    /* A write with less Data-Out than asked, not whole blocks: INVALID FIELD IN COMMAND
     * INFORMATION UNIT, nothing written. (Whole blocks are written: test_scsi_compliance.) */
    t_rw_cdb(cdb, 0x2A, 0, 2, 0);
    uint8_t *data = t_alloc(1024);
    memset(data, 0x5A, 1024);
    t_cmd(s->e, s->l, 0, cdb, 10, data, 700, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x0E, 0x03);
    assert_int_equal(r.xfer_len, 1024);
    uint8_t *rd = t_alloc(1024);
    t_rw_cdb(cdb, 0x28, 0, 2, 0);
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 10, NULL, 0, rd, 1024, &r), SCSI_GOOD);
    for (int i = 0; i < 1024; i++)
        assert_int_not_equal(rd[i], 0x5A);
    /* INQUIRY: allocation length. */
    uint8_t inq[6] = {0x12, 0, 0, 0x01, 0x00, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, inq, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(r.xfer_len, 256);
    assert_int_equal(r.data_in_len, 96);
    free(data);
    free(rd);
}

static void test_readonly(void **state)
{
    struct st *s = *state;
    struct t_res r;
    t_clear_ua(s->e, s->ro, 0);
    uint8_t *data = t_alloc(4096);
    uint8_t cdb[16];
    static const uint8_t ops[] = {0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E};
    for (size_t i = 0; i < sizeof ops; i++) {
        unsigned len = t_rw_cdb(cdb, ops[i], 0, 1, 0);
        t_cmd(s->e, s->ro, 0, cdb, len, data, 512, NULL, 0, &r);
        assert_sense(&r, 0x7, 0x27, 0x00);
    }
    /* Reads work. */
    t_rw_cdb(cdb, 0x28, 0, 8, 0);
    assert_int_equal(t_cmd(s->e, s->ro, 0, cdb, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    /* WP in the mode parameter header. */
    uint8_t ms[6] = {0x1A, 0x08, 0x3F, 0, 255, 0};
    assert_int_equal(t_cmd(s->e, s->ro, 0, ms, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[2] & 0x80, 0x80);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_power_on_ua),
        cmocka_unit_test(test_unknown_opcode),
        cmocka_unit_test(test_reserved_bits),
        cmocka_unit_test(test_no_lu),
        cmocka_unit_test(test_lu_reset_ua),
        cmocka_unit_test(test_capacity_changed),
        cmocka_unit_test(test_request_sense_last),
        cmocka_unit_test(test_descriptor_sense),
        cmocka_unit_test(test_xfer_len),
        cmocka_unit_test(test_readonly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
