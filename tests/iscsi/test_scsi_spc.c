/*
 * The SCSI layer's primary commands: standard INQUIRY (allocation lengths, version
 * descriptors), the VPD pages (supported list, serial, device identification with the NAA
 * designator, block limits, characteristics, provisioning), READ CAPACITY 10/16, MODE SENSE
 * 6/10 and MODE SELECT (pages, page control, what may change), REPORT LUNS, REPORT SUPPORTED
 * OPERATION CODES (all, one command, timeouts) and REPORT SUPPORTED TASK MANAGEMENT
 * FUNCTIONS.
 */
#include "tests/iscsi/scsi_test.h"

struct st {
    struct t_env *e;
    struct t_lu *l, *l2;
    uint8_t *in, *in2;
};

static int setup(void **state)
{
    struct st *s = calloc(1, sizeof(*s));
    s->e = t_env_new(128ull << 20);
    s->l = t_add_lu(s->e, "vol", 32u << 20, 65536, false);
    s->l2 = t_add_lu(s->e, "other", 8u << 20, 4096, false);
    s->in = t_alloc(1u << 16);
    s->in2 = t_alloc(1u << 16);
    for (unsigned i = 0; i < T_MAX_NX; i++)
        t_clear_ua(s->e, s->l, i);
    t_clear_ua(s->e, s->l2, 0);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct st *s = *state;
    t_env_free(s->e);
    free(s->in);
    free(s->in2);
    free(s);
    return 0;
}

static uint8_t inquiry(struct st *s, struct t_lu *l, bool evpd, uint8_t page, uint16_t alloc,
                       uint8_t *buf, struct t_res *r)
{
    uint8_t cdb[6] = {0x12, evpd, page, (uint8_t)(alloc >> 8), (uint8_t)alloc, 0};
    return t_cmd(s->e, l, 0, cdb, 6, NULL, 0, buf, 1u << 16, r);
}

static void test_standard_inquiry(void **state)
{
    struct st *s = *state;
    struct t_res r;
    assert_int_equal(inquiry(s, s->l, false, 0, 512, s->in, &r), SCSI_GOOD);
    uint8_t *b = s->in;
    assert_true(r.data_in_len >= 36);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[2], 0x06);
    assert_int_equal(b[3] & 0x0F, 2);
    assert_int_equal(b[3] & 0xC0, 0); /* neither AERC nor TRMTSK */
    assert_int_equal(b[4] + 5, r.data_in_len);
    assert_int_equal(b[7] & 0x02, 0x02);
    for (int i = 8; i < 36; i++)
        assert_true(b[i] == 0 || (b[i] >= 0x20 && b[i] <= 0x7E));
    bool spc4 = false, sbc3 = false;
    for (int i = 58; i < 74; i += 2) {
        uint16_t v = (uint16_t)t_get_be(b + i, 2);
        spc4 |= v == 0x0460;
        sbc3 |= v == 0x04C0;
    }
    assert_true(spc4 && sbc3);
    /* Every allocation length gives a prefix of the same data. */
    uint8_t full[96];
    memcpy(full, b, 96);
    for (unsigned a = 0; a < 300; a++) {
        memset(s->in, 0xEE, 512);
        assert_int_equal(inquiry(s, s->l, false, 0, (uint16_t)a, s->in, &r), SCSI_GOOD);
        assert_int_equal(r.data_in_len, MIN(a, 96u));
        assert_int_equal(r.xfer_len, a);
        assert_memory_equal(s->in, full, r.data_in_len);
    }
    /* EVPD clear with a page code. */
    inquiry(s, s->l, false, 0x80, 255, s->in, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    /* CMDDT (obsolete) */
    uint8_t cdb[6] = {0x12, 0x02, 0, 0, 255, 0};
    t_cmd(s->e, s->l, 0, cdb, 6, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
}

static void test_vpd(void **state)
{
    struct st *s = *state;
    struct t_res r;
    assert_int_equal(inquiry(s, s->l, true, 0x00, 255, s->in, &r), SCSI_GOOD);
    unsigned np = s->in[3];
    uint8_t pages[64];
    assert_true(np >= 6 && np < sizeof pages);
    memcpy(pages, s->in + 4, np);
    for (unsigned i = 0; i < np; i++) {
        if (i)
            assert_true(pages[i] > pages[i - 1]);
        assert_int_equal(inquiry(s, s->l, true, pages[i], 255, s->in, &r), SCSI_GOOD);
        assert_int_equal(s->in[1], pages[i]);
        assert_int_equal(t_get_be(s->in + 2, 2) + 4, r.data_in_len);
    }
    /* Unit serial: the same for every call, different between LUs. */
    assert_int_equal(inquiry(s, s->l, true, 0x80, 255, s->in, &r), SCSI_GOOD);
    assert_int_equal(inquiry(s, s->l2, true, 0x80, 255, s->in2, &r), SCSI_GOOD);
    assert_true(s->in[3] > 0);
    assert_true(memcmp(s->in + 4, s->in2 + 4, s->in[3]) != 0);
    /* Device identification: an NAA 3 (locally assigned) designator with LU association. */
    assert_int_equal(inquiry(s, s->l, true, 0x83, 1024, s->in, &r), SCSI_GOOD);
    unsigned len = (unsigned)t_get_be(s->in + 2, 2);
    bool naa = false, t10 = false, rtp = false;
    for (unsigned off = 4; off < 4 + len;) {
        const uint8_t *d = s->in + off;
        unsigned type = d[1] & 0x0F, assoc = (d[1] >> 4) & 3;
        if (type == 3 && assoc == 0) {
            assert_int_equal(d[3], 8);
            assert_int_equal(d[4] >> 4, 3);
            naa = true;
        }
        if (type == 1)
            t10 = !memcmp(d + 4, "CISTERN ", 8);
        if (type == 4 && assoc == 1) {
            assert_int_equal(t_get_be(d + 6, 2), 1);
            rtp = true;
        }
        off += 4 + d[3];
    }
    assert_true(naa && t10 && rtp);
    /* Block limits */
    assert_int_equal(inquiry(s, s->l, true, 0xB0, 255, s->in, &r), SCSI_GOOD);
    assert_int_equal(s->in[3], 0x3C);
    assert_true(s->in[5] > 0);                         /* MAXIMUM COMPARE AND WRITE LENGTH */
    assert_int_equal(t_get_be(s->in + 6, 2), 65536 / 512); /* optimal granularity */
    assert_true(t_get_be(s->in + 20, 4) > 0);          /* MAXIMUM UNMAP LBA COUNT */
    assert_true(t_get_be(s->in + 24, 4) > 0);          /* ... BLOCK DESCRIPTOR COUNT */
    assert_int_equal(t_get_be(s->in + 28, 4), 128);
    assert_true(t_get_be(s->in + 36, 8) > 0);          /* MAXIMUM WRITE SAME LENGTH */
    assert_int_equal(inquiry(s, s->l, true, 0xB1, 255, s->in, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in + 4, 2), 1);
    assert_int_equal(inquiry(s, s->l, true, 0xB2, 255, s->in, &r), SCSI_GOOD);
    assert_int_equal(s->in[5] & 0xE4, 0xE4);
    assert_int_equal(s->in[6] & 0x07, 2);
    /* Unknown page */
    inquiry(s, s->l, true, 0x89, 255, s->in, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    assert_int_equal(t_get_be(r.sense + 16, 2), 2);
}

static void test_read_capacity(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t rc10[10] = {0x25};
    assert_int_equal(t_cmd(s->e, s->l, 0, rc10, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 8);
    assert_int_equal(t_get_be(s->in, 4), (32u << 20) / 512 - 1);
    assert_int_equal(t_get_be(s->in + 4, 4), 512);
    rc10[5] = 1; /* LBA without PMI */
    t_cmd(s->e, s->l, 0, rc10, 10, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    for (unsigned a = 0; a <= 40; a++) {
        uint8_t rc16[16] = {0x9E, 0x10};
        t_put_be(rc16 + 10, a, 4);
        memset(s->in, 0xEE, 64);
        assert_int_equal(t_cmd(s->e, s->l, 0, rc16, 16, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
        assert_int_equal(r.data_in_len, MIN(a, 32u));
        if (a >= 32) {
            assert_int_equal(t_get_be(s->in, 8), (32u << 20) / 512 - 1);
            assert_int_equal(t_get_be(s->in + 8, 4), 512);
            assert_int_equal(s->in[12], 0);       /* no protection */
            assert_int_equal(s->in[13] & 0x0F, 7); /* 64 KiB grain: 2^7 blocks */
            assert_int_equal(s->in[14] & 0xC0, 0xC0);
        }
    }
    uint8_t rc16[16] = {0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32};
    assert_int_equal(t_cmd(s->e, s->l2, 0, rc16, 16, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[13] & 0x0F, 3);
}

/* An LU configured to report a physical block of one logical block (the daemon's default):
 * exponent 0, and the grain still reaches the initiator as the optimal transfer and unmap
 * granularity. */
static void test_logical_physical_block(void **state)
{
    (void)state;
    struct t_env *e = t_env_new(64ull << 20);
    e->logical_physical = true;
    struct t_lu *l = t_add_lu(e, "logical", 8u << 20, 65536, false);
    t_clear_ua(e, l, 0);
    uint8_t *in = t_alloc(4096);
    struct t_res r;
    uint8_t rc16[16] = {0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32};
    assert_int_equal(t_cmd(e, l, 0, rc16, 16, NULL, 0, in, 4096, &r), SCSI_GOOD);
    assert_int_equal(in[13] & 0x0F, 0);
    assert_int_equal(in[14] & 0xC0, 0xC0); /* LBPME, LBPRZ */
    uint8_t b0[6] = {0x12, 0x01, 0xB0, 0, 64, 0};
    assert_int_equal(t_cmd(e, l, 0, b0, 6, NULL, 0, in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(in + 6, 2), 128);  /* optimal transfer length granularity */
    assert_int_equal(t_get_be(in + 28, 4), 128); /* optimal unmap granularity */
    free(in);
    t_env_free(e);
}

/* Walks the pages of a MODE SENSE answer; returns the offset of page @code or 0. */
static size_t find_page(const uint8_t *b, size_t n, bool ten, uint8_t code)
{
    size_t hdr = ten ? 8 : 4;
    size_t bdl = ten ? t_get_be(b + 6, 2) : b[3];
    for (size_t off = hdr + bdl; off + 2 <= n; off += 2 + b[off + 1])
        if ((b[off] & 0x3F) == code)
            return off;
    return 0;
}

static void test_mode_sense(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t ms6[6] = {0x1A, 0, 0x3F, 0, 255, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, ms6, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    size_t n = r.data_in_len;
    assert_int_equal(s->in[0] + 1, n);
    assert_int_equal(s->in[2] & 0x10, 0x10); /* DPOFUA */
    assert_int_equal(s->in[3], 8);
    assert_int_equal(t_get_be(s->in + 4, 4), (32u << 20) / 512);
    assert_int_equal(t_get_be(s->in + 9, 3), 512);
    size_t c = find_page(s->in, n, false, 0x08);
    assert_true(c);
    assert_int_equal(s->in[c + 2] & 0x04, 0x04); /* WCE */
    size_t ct = find_page(s->in, n, false, 0x0A);
    assert_true(ct);
    assert_true(find_page(s->in, n, false, 0x1C));
    uint8_t ctl_all[12];
    memcpy(ctl_all, s->in + ct, 12);
    /* One page; the same bytes as in the all-pages answer. */
    uint8_t one[6] = {0x1A, 0x08, 0x0A, 0, 255, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, one, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[3], 0);
    assert_memory_equal(s->in + 4, ctl_all, 12);
    /* Changeable values: WCE, D_SENSE, SWP. */
    one[2] = 0x40 | 0x3F;
    assert_int_equal(t_cmd(s->e, s->l, 0, one, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    c = find_page(s->in, r.data_in_len, false, 0x08);
    assert_int_equal(s->in[c + 2], 0x04);
    ct = find_page(s->in, r.data_in_len, false, 0x0A);
    assert_int_equal(s->in[ct + 2], 0x04);
    assert_int_equal(s->in[ct + 4], 0x08);
    /* Saved values: not supported. */
    one[2] = 0xC0 | 0x08;
    t_cmd(s->e, s->l, 0, one, 6, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x39, 0x00);
    /* Unknown page, unknown subpage. */
    one[2] = 0x05;
    t_cmd(s->e, s->l, 0, one, 6, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    one[2] = 0x3F;
    one[3] = 0x01;
    t_cmd(s->e, s->l, 0, one, 6, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    one[3] = 0xFF;
    assert_int_equal(t_cmd(s->e, s->l, 0, one, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    /* Short allocation length: no overflow, header only. */
    ms6[4] = 4;
    assert_int_equal(t_cmd(s->e, s->l, 0, ms6, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 4);
    /* MODE SENSE(10) with long LBA block descriptors. */
    uint8_t ms10[10] = {0x5A, 0x10, 0x3F, 0, 0, 0, 0, 0x10, 0x00, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, ms10, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 2) + 2, r.data_in_len);
    assert_int_equal(s->in[4] & 1, 1);
    assert_int_equal(t_get_be(s->in + 6, 2), 16);
    assert_int_equal(t_get_be(s->in + 8, 8), (32u << 20) / 512);
    assert_int_equal(t_get_be(s->in + 20, 4), 512);
    assert_true(find_page(s->in, r.data_in_len, true, 0x08));
}

static void test_mode_select(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t ms[6] = {0x1A, 0x08, 0x08, 0, 255, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, ms, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    uint8_t p[4 + 20];
    memcpy(p, s->in, sizeof p);
    p[0] = 0;
    p[2] = 0;
    /* Clear WCE: accepted, and MODE SENSE shows it. */
    p[4 + 2] &= (uint8_t)~0x04;
    uint8_t sel[6] = {0x15, 0x10, 0, 0, sizeof p, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, sel, 6, p, sizeof p, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 0, ms, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(s->in[4 + 2] & 0x04, 0);
    /* Writes still work (with FUA). */
    uint8_t *d = t_alloc(4096), cdb[16];
    t_rw_cdb(cdb, 0x2A, 8, 8, 0);
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 10, d, 4096, NULL, 0, &r), SCSI_GOOD);
    p[4 + 2] |= 0x04;
    assert_int_equal(t_cmd(s->e, s->l, 0, sel, 6, p, sizeof p, NULL, 0, &r), SCSI_GOOD);
    /* A bit that cannot change (RCD): INVALID FIELD IN PARAMETER LIST pointing at it. */
    p[4 + 2] |= 0x01;
    t_cmd(s->e, s->l, 0, sel, 6, p, sizeof p, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x26, 0x00);
    assert_int_equal(r.sense[15], 0x80 | 0x08 | 0);
    assert_int_equal(t_get_be(r.sense + 16, 2), 6);
    p[4 + 2] &= (uint8_t)~0x01;
    /* Wrong page length. */
    p[4 + 1] = 0x10;
    t_cmd(s->e, s->l, 0, sel, 6, p, sizeof p, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x26, 0x00);
    p[4 + 1] = 0x12;
    /* Parameter list cut inside the page. */
    sel[4] = 10;
    t_cmd(s->e, s->l, 0, sel, 6, p, 10, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    /* Shorter than the header. */
    sel[4] = 3;
    t_cmd(s->e, s->l, 0, sel, 6, p, 3, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    /* PF clear, SP set. */
    sel[4] = sizeof p;
    sel[1] = 0x00;
    t_cmd(s->e, s->l, 0, sel, 6, p, sizeof p, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    sel[1] = 0x11;
    t_cmd(s->e, s->l, 0, sel, 6, p, sizeof p, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    /* A block descriptor with another block length. */
    uint8_t pb[4 + 8 + 20] = {0, 0, 0, 8};
    t_put_be(pb + 4 + 5, 4096, 3);
    memcpy(pb + 12, p + 4, 20);
    uint8_t sel2[6] = {0x15, 0x10, 0, 0, sizeof pb, 0};
    t_cmd(s->e, s->l, 0, sel2, 6, pb, sizeof pb, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x26, 0x00);
    t_put_be(pb + 4 + 5, 512, 3);
    assert_int_equal(t_cmd(s->e, s->l, 0, sel2, 6, pb, sizeof pb, NULL, 0, &r), SCSI_GOOD);
    /* SWP: writes refused as DATA PROTECT, reads fine. */
    uint8_t mc[6] = {0x1A, 0x08, 0x0A, 0, 255, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, mc, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    uint8_t pc[16];
    memcpy(pc, s->in, 16);
    pc[0] = 0;
    pc[4 + 4] |= 0x08;
    uint8_t sel3[6] = {0x15, 0x10, 0, 0, 16, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, sel3, 6, pc, 16, NULL, 0, &r), SCSI_GOOD);
    t_cmd(s->e, s->l, 0, cdb, 10, d, 4096, NULL, 0, &r);
    assert_sense(&r, 0x7, 0x27, 0x02);
    t_rw_cdb(cdb, 0x28, 8, 8, 0);
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    pc[4 + 4] &= (uint8_t)~0x08;
    assert_int_equal(t_cmd(s->e, s->l, 0, sel3, 6, pc, 16, NULL, 0, &r), SCSI_GOOD);
    for (unsigned i = 1; i < T_MAX_NX; i++)
        t_clear_ua(s->e, s->l, i);
    free(d);
}

static void test_report_luns(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t rl[12] = {0xA0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rl, 12, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 4), 16);
    assert_int_equal(r.data_in_len, 24);
    assert_int_equal(t_get_be(s->in + 8, 8), 0);
    assert_int_equal(t_get_be(s->in + 16, 8), 1ull << 48);
    /* Room for one: the length still says two. */
    rl[9] = 16;
    rl[8] = 0;
    assert_int_equal(t_cmd(s->e, s->l, 0, rl, 12, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 4), 16);
    assert_int_equal(r.data_in_len, 16);
    /* Allocation length below 16. */
    rl[9] = 15;
    t_cmd(s->e, s->l, 0, rl, 12, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    /* Well-known LUs only: none. */
    rl[9] = 64;
    rl[2] = 1;
    assert_int_equal(t_cmd(s->e, s->l, 0, rl, 12, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 4), 0);
    rl[2] = 3;
    t_cmd(s->e, s->l, 0, rl, 12, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
}

static void test_report_opcodes(void **state)
{
    struct st *s = *state;
    struct t_res r;
    uint8_t c[12] = {0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, c, 12, NULL, 0, s->in, 65535, &r), SCSI_GOOD);
    unsigned len = (unsigned)t_get_be(s->in, 4);
    assert_int_equal(len + 4, r.data_in_len);
    assert_int_equal(len % 8, 0);
    unsigned nd = len / 8;
    assert_true(nd > 20);
    uint8_t desc[256][8];
    assert_true(nd <= 256);
    memcpy(desc, s->in + 4, 8 * nd);
    bool read10 = false;
    for (unsigned i = 0; i < nd; i++) {
        uint8_t op = desc[i][0];
        uint16_t sa = (uint16_t)t_get_be(desc[i] + 2, 2);
        bool servactv = desc[i][5] & 1;
        assert_int_equal(desc[i][5] & 2, 0); /* no CTDP without RCTD */
        if (!servactv)
            assert_int_equal(sa, 0);
        read10 |= op == 0x28;
        /* One command: reporting options 1 without service actions, 2 with. */
        uint8_t one[12] = {0xA3, 0x0C, servactv ? 2 : 1, op, (uint8_t)(sa >> 8), (uint8_t)sa,
                           0, 0, 0xFF, 0xFF, 0, 0};
        assert_int_equal(t_cmd(s->e, s->l, 0, one, 12, NULL, 0, s->in, 65535, &r), SCSI_GOOD);
        assert_int_equal(s->in[1] & 7, 3);
        unsigned cl = (unsigned)t_get_be(s->in + 2, 2);
        assert_int_equal(cl, t_get_be(desc[i] + 6, 2));
        assert_int_equal(s->in[4], op);
        one[2] = servactv ? 1 : 2;
        t_cmd(s->e, s->l, 0, one, 12, NULL, 0, s->in, 65535, &r);
        assert_sense(&r, 0x5, 0x24, 0x00);
        /* The usage mask is what the LU accepts: a CDB with every usage bit set is never
         * refused for a reserved bit. (Its values may be refused for other reasons.) */
    }
    assert_true(read10);
    /* READ(10): DPO and FUA in the usage data. */
    uint8_t one[12] = {0xA3, 0x0C, 1, 0x28, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, one, 12, NULL, 0, s->in, 65535, &r), SCSI_GOOD);
    assert_int_equal(s->in[4 + 1] & 0x18, 0x18);
    /* An unsupported opcode: SUPPORT 001b. */
    one[3] = 0xC7;
    assert_int_equal(t_cmd(s->e, s->l, 0, one, 12, NULL, 0, s->in, 65535, &r), SCSI_GOOD);
    assert_int_equal(s->in[1] & 7, 1);
    /* RCTD: every descriptor has CTDP and a timeouts descriptor of length 0Ah. */
    c[2] = 0x80;
    assert_int_equal(t_cmd(s->e, s->l, 0, c, 12, NULL, 0, s->in, 65535, &r), SCSI_GOOD);
    len = (unsigned)t_get_be(s->in, 4);
    assert_int_equal(len, nd * 20);
    for (unsigned i = 0; i < nd; i++) {
        const uint8_t *d = s->in + 4 + 20 * i;
        assert_int_equal(d[5] & 2, 2);
        assert_int_equal(t_get_be(d + 8, 2), 0x0A);
    }
    /* Reporting options 4..7 */
    c[2] = 0x05;
    t_cmd(s->e, s->l, 0, c, 12, NULL, 0, s->in, 65535, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    /* Task management functions. */
    uint8_t tmf[12] = {0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, tmf, 12, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 4);
    assert_true(s->in[0] & 0x80); /* ABORT TASK */
    assert_true(s->in[0] & 0x08); /* LU RESET */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_inquiry), cmocka_unit_test(test_vpd),
        cmocka_unit_test(test_read_capacity),    cmocka_unit_test(test_mode_sense),
        cmocka_unit_test(test_mode_select),      cmocka_unit_test(test_report_luns),
        cmocka_unit_test(test_report_opcodes),   cmocka_unit_test(test_logical_physical_block),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
