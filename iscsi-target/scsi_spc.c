/*
 * scsi_spc.c - the primary commands (SPC-4) that do not touch the medium: TEST UNIT READY,
 * INQUIRY with its VPD pages, REQUEST SENSE, REPORT LUNS, MODE SENSE / MODE SELECT, REPORT
 * SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
 *
 * Every response is built whole in a local buffer and then cut to the allocation length
 * (scsi_data_in), so a short allocation length returns a prefix of the same bytes a long
 * one does.
 *
 * Mode pages: one set of current values per LU (SPC-4 allows a shared set); a change made
 * through one nexus gives the others MODE PARAMETERS CHANGED. What can change: WCE (caching
 * page; with WCE=0 every write is sent with FUA), D_SENSE and SWP (control page). Values are
 * never saved: MODE SENSE of saved values and MODE SELECT with SP get ILLEGAL REQUEST.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/scsi-priv.h"

#define VENDOR "CISTERN "
#define PRODUCT "thin volume    "
#define REVISION "0001"

void spc_test_unit_ready(struct scsi_cmd *cmd)
{
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* INQUIRY                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static size_t inquiry_standard(struct scsi_cmd *cmd, uint8_t *b)
{
    memset(b, 0, 96);
    if (!cmd->lu) {
        b[0] = 0x7F; /* peripheral qualifier 011b, type 1Fh: no LU at this LUN */
    } else {
        b[0] = 0x00; /* connected, direct access block device */
    }
    b[2] = 0x06; /* SPC-4 */
    b[3] = 0x12; /* HISUP, response data format 2 */
    b[4] = 96 - 5;
    b[5] = 0x08; /* 3PC: EXTENDED COPY */
    b[7] = 0x02; /* CMDQUE */
    memcpy(b + 8, VENDOR, 8);
    memcpy(b + 16, PRODUCT, 16);
    memcpy(b + 32, REVISION, 4);
    /* Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3. */
    put_be16(b + 58, 0x00A0);
    put_be16(b + 60, 0x0960);
    put_be16(b + 62, 0x0460);
    put_be16(b + 64, 0x04C0);
    return 96;
}

static const uint8_t vpd_pages[] = {0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2};

/* Appends one designation descriptor; returns its length. */
static size_t designator(uint8_t *p, uint8_t code_set, uint8_t assoc_type, bool piv,
                         const void *data, size_t len)
{
    p[0] = (uint8_t)(piv ? 0x50 : 0x00) | code_set; /* protocol iSCSI (5) when PIV */
    p[1] = (uint8_t)((piv ? 0x80 : 0) | assoc_type);
    p[2] = 0;
    p[3] = (uint8_t)len;
    memcpy(p + 4, data, len);
    return 4 + len;
}

static size_t vpd_device_id(struct scsi_cmd *cmd, uint8_t *b)
{
    struct scsi_lu *lu = cmd->lu;
    size_t n = 4;
    /* NAA (binary, LU association, type 3) */
    n += designator(b + n, 0x01, 0x03, false, lu->naa, SCSI_NAA_LEN);
    /* T10 vendor ID (ASCII, type 1): vendor, then the unit serial number */
    uint8_t t10[8 + sizeof(lu->serial)];
    memcpy(t10, VENDOR, 8);
    size_t sl = strlen(lu->serial);
    memcpy(t10 + 8, lu->serial, sl);
    n += designator(b + n, 0x02, 0x01, false, t10, 8 + sl);
    /* Vendor specific (ASCII, type 0): the volume's name */
    size_t nl = MIN(strlen(lu->name), (size_t)200);
    n += designator(b + n, 0x02, 0x00, false, lu->name, nl);
    if (cmd->nx) {
        /* Relative target port (binary, target port association 01b, type 4) */
        uint8_t rtp[4] = {0, 0, (uint8_t)(cmd->nx->rel_target_port >> 8),
                          (uint8_t)cmd->nx->rel_target_port};
        n += designator(b + n, 0x01, 0x14, true, rtp, 4);
        /* SCSI name string of the target port (UTF-8, target port, type 8): NUL-terminated,
         * padded to a multiple of 4 */
        size_t tl = strnlen(cmd->nx->target_port, sizeof(cmd->nx->target_port));
        if (tl > 0 && tl < 250) {
            uint8_t name[256] = {0};
            memcpy(name, cmd->nx->target_port, tl);
            n += designator(b + n, 0x03, 0x18, true, name, ROUND_UP(tl + 1, (size_t)4));
        }
    }
    put_be16(b + 2, (uint16_t)(n - 4));
    return n;
}

static size_t vpd_page(struct scsi_cmd *cmd, uint8_t page, uint8_t *b, bool *ok)
{
    struct scsi_lu *lu = cmd->lu;
    uint64_t blocks = scsi_lu_blocks(lu);
    memset(b, 0, 512);
    b[1] = page;
    *ok = true;
    switch (page) {
    case 0x00:
        memcpy(b + 4, vpd_pages, sizeof vpd_pages);
        b[3] = sizeof vpd_pages;
        return 4 + sizeof vpd_pages;
    case 0x80: {
        size_t sl = strlen(lu->serial);
        memcpy(b + 4, lu->serial, sl);
        b[3] = (uint8_t)sl;
        return 4 + sl;
    }
    case 0x83:
        return vpd_device_id(cmd, b);
    case 0xB0: { /* Block Limits (SBC-3 6.5.3) */
        uint32_t gblocks = lu->grain / SCSI_BLOCK;
        b[3] = 0x3C;
        b[4] = 0x01; /* WSNZ: WRITE SAME with 0 blocks is refused */
        b[5] = SCSI_MAX_CAW_BLOCKS;
        put_be16(b + 6, (uint16_t)MIN(gblocks, 0xFFFFu)); /* optimal xfer granularity */
        put_be32(b + 8, SCSI_MAX_XFER_BLOCKS);
        put_be32(b + 12, MAX(gblocks, 2048u));              /* optimal transfer length */
        put_be32(b + 20, SCSI_MAX_UNMAP_BLOCKS);
        put_be32(b + 24, SCSI_MAX_UNMAP_DESC);
        put_be32(b + 28, gblocks);                          /* optimal unmap granularity */
        put_be32(b + 32, 0x80000000u);                      /* UGAVALID, alignment 0 */
        put_be64(b + 36, MIN((uint64_t)SCSI_MAX_WS_BLOCKS, blocks));
        return 64;
    }
    case 0xB1: /* Block Device Characteristics */
        b[3] = 0x3C;
        put_be16(b + 4, 0x0001); /* non-rotating medium */
        return 64;
    case 0xB2: /* Logical Block Provisioning */
        b[3] = 0x04;
        b[5] = 0x80 | 0x40 | 0x20 | 0x04; /* LBPU, LBPWS, LBPWS10, LBPRZ */
        b[6] = 0x02;                      /* provisioning type: thin */
        return 8;
    default:
        *ok = false;
        return 0;
    }
}

void spc_inquiry(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    uint8_t b[512];
    size_t n;
    if (!(cdb[1] & 0x01)) {
        if (cdb[2]) {
            scsi_bad_cdb(cmd, 2, 7);
            scsi_complete(cmd);
            return;
        }
        n = inquiry_standard(cmd, b);
    } else {
        bool ok = false;
        n = cmd->lu ? vpd_page(cmd, cdb[2], b, &ok) : 0;
        if (!ok) {
            if (cmd->lu)
                scsi_bad_cdb(cmd, 2, 7);
            else
                scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LU_NOT_SUPPORTED);
            scsi_complete(cmd);
            return;
        }
    }
    scsi_data_in(cmd, b, n);
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* REQUEST SENSE, REPORT LUNS                                                                 */
/* ---------------------------------------------------------------------------------------- */

void spc_request_sense(struct scsi_cmd *cmd)
{
    bool desc = cmd->cdb[1] & 0x01;
    struct scsi_sense_spec s = {.key = SK_NO_SENSE, .asc = ASC_NO_ADDITIONAL};
    uint8_t b[SCSI_SENSE_MAX];
    uint32_t n = 0;
    struct scsi_lu *lu = cmd->lu;
    if (!lu) {
        s.key = SK_ILLEGAL_REQUEST;
        s.asc = ASC_LU_NOT_SUPPORTED;
    } else {
        pthread_mutex_lock(&lu->lock);
        struct nexus_state *ns = scsi_ns(cmd);
        if (ns && ns->nua) {
            s.key = SK_UNIT_ATTENTION;
            s.asc = ns->ua[0];
            ns->nua--;
            memmove(ns->ua, ns->ua + 1, sizeof(ns->ua[0]) * ns->nua);
        } else if (ns && ns->last_sense_len) {
            /* The sense of the last command that failed, once, in the format it was made;
             * converted when the other format is asked for. */
            const uint8_t *ls = ns->last_sense;
            bool ldesc = (ls[0] & 0x7F) == 0x72;
            if (ldesc == desc) {
                n = ns->last_sense_len;
                memcpy(b, ls, n);
            } else if (ldesc) {
                s.key = ls[1] & 0x0F;
                s.asc = get_be16(ls + 2);
            } else {
                s.key = ls[2] & 0x0F;
                s.asc = get_be16(ls + 12);
                s.info_valid = ls[0] & 0x80;
                s.info = get_be32(ls + 3);
                s.sks_valid = ls[15] & 0x80;
                memcpy(s.sks, ls + 15, 3);
                s.sks[0] &= 0x7F;
            }
            ns->last_sense_len = 0;
        }
        pthread_mutex_unlock(&lu->lock);
    }
    if (!n)
        n = scsi_sense_encode(b, &s, desc);
    scsi_data_in(cmd, b, n);
    scsi_complete(cmd);
}

/* SAM-5 single level LUN: peripheral device addressing below 256, flat space above. */
static void put_lun(uint8_t *p, uint64_t lun)
{
    memset(p, 0, 8);
    if (lun < 256) {
        p[1] = (uint8_t)lun;
    } else {
        p[0] = (uint8_t)(0x40 | ((lun >> 8) & 0x3F));
        p[1] = (uint8_t)lun;
    }
}

void spc_report_luns(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    uint8_t select = cdb[2];
    uint32_t alloc = get_be32(cdb + 6);
    if (select > 2 && select != 0x10 && select != 0x11 && select != 0x12) {
        scsi_bad_cdb(cmd, 2, 7);
        scsi_complete(cmd);
        return;
    }
    if (alloc < 16) {
        scsi_bad_cdb(cmd, 6, -1);
        scsi_complete(cmd);
        return;
    }
    /* 0: every LU; 2: every LU (no well-known LUs here); 1 and 0x11: well-known LUs only,
     * none; 0x10, 0x12: administrative / subsidiary LUs of the addressed one, none. */
    bool list = select == 0 || select == 2;
    size_t max = MIN((size_t)(alloc - 8) / 8, (size_t)(VOL_MAX_LUN + 1));
    uint64_t *luns = NULL;
    size_t total = 0;
    if (list) {
        luns = calloc(MAX(max, (size_t)1), sizeof(*luns));
        if (!luns) {
            scsi_sense_errno(cmd, -ENOMEM, false);
            scsi_complete(cmd);
            return;
        }
        if (cmd->report_luns) {
            total = cmd->report_luns(cmd->report_luns_ctx, luns, max);
        } else if (cmd->lu) {
            luns[0] = cmd->lun;
            total = 1;
        }
    }
    size_t shown = MIN(total, max);
    size_t len = 8 + 8 * shown;
    uint8_t *b = calloc(1, len);
    if (!b) {
        free(luns);
        scsi_sense_errno(cmd, -ENOMEM, false);
        scsi_complete(cmd);
        return;
    }
    put_be32(b, (uint32_t)MIN(total * 8, (size_t)UINT32_MAX - 8));
    for (size_t i = 0; i < shown; i++)
        put_lun(b + 8 + 8 * i, luns[i]);
    scsi_data_in(cmd, b, len);
    free(b);
    free(luns);
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* Mode pages                                                                                 */
/* ---------------------------------------------------------------------------------------- */

enum mode_pc { PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED };

/* Builds page @code (with its header) for @pc into @p; returns its length, 0 if unknown. */
static size_t mode_page(struct scsi_lu *lu, uint8_t code, enum mode_pc pc,
                        const struct mode_state *m, uint8_t *p)
{
    bool ch = pc == PC_CHANGEABLE;
    struct mode_state def = {.wce = true};
    if (pc == PC_DEFAULT)
        m = &def;
    (void)lu;
    switch (code) {
    case 0x01: /* Read-Write Error Recovery */
        memset(p, 0, 12);
        p[0] = 0x01;
        p[1] = 0x0A;
        if (!ch)
            p[2] = 0x80; /* AWRE */
        return 12;
    case 0x08: /* Caching */
        memset(p, 0, 20);
        p[0] = 0x08;
        p[1] = 0x12;
        if (ch)
            p[2] = 0x04;
        else if (m->wce)
            p[2] = 0x04; /* WCE */
        return 20;
    case 0x0A: /* Control */
        memset(p, 0, 12);
        p[0] = 0x0A;
        p[1] = 0x0A;
        if (ch) {
            p[2] = 0x04; /* D_SENSE */
            p[4] = 0x08; /* SWP */
        } else {
            p[2] = m->d_sense ? 0x04 : 0;
            p[3] = 0x10; /* QUEUE ALGORITHM MODIFIER 1: unrestricted reordering */
            p[4] = m->swp ? 0x08 : 0;
            put_be16(p + 8, 0xFFFF); /* busy timeout: unlimited */
        }
        return 12;
    case 0x1C: /* Informational Exceptions Control: nothing reported */
        memset(p, 0, 12);
        p[0] = 0x1C;
        p[1] = 0x0A;
        return 12;
    default:
        return 0;
    }
}

static const uint8_t mode_pages_all[] = {0x01, 0x08, 0x0A, 0x1C};

void spc_mode_sense(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    const uint8_t *cdb = cmd->cdb;
    bool ten = cdb[0] == OP_MODE_SENSE10;
    bool dbd = cdb[1] & 0x08;
    bool llbaa = ten && (cdb[1] & 0x10);
    enum mode_pc pc = cdb[2] >> 6;
    uint8_t code = cdb[2] & 0x3F, sub = cdb[3];
    if (pc == PC_SAVED) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
        scsi_complete(cmd);
        return;
    }
    struct mode_state m;
    pthread_mutex_lock(&lu->lock);
    m = lu->mode;
    pthread_mutex_unlock(&lu->lock);

    uint8_t b[512];
    memset(b, 0, sizeof b);
    size_t hdr = ten ? 8 : 4, n = hdr;
    /* Device-specific parameter: WP, DPOFUA. */
    uint8_t dsp = (uint8_t)((lu->readonly || m.swp ? 0x80 : 0) | 0x10);
    if (!dbd) {
        uint64_t blocks = scsi_lu_blocks(lu);
        if (llbaa) {
            put_be64(b + n, blocks);
            put_be32(b + n + 12, SCSI_BLOCK);
            n += 16;
        } else {
            put_be32(b + n, (uint32_t)MIN(blocks, (uint64_t)UINT32_MAX));
            put_be24(b + n + 5, SCSI_BLOCK);
            n += 8;
        }
    }
    size_t bdl = n - hdr;
    if (code == 0x3F) {
        if (sub != 0x00 && sub != 0xFF) {
            scsi_bad_cdb(cmd, 3, 7);
            scsi_complete(cmd);
            return;
        }
        for (size_t i = 0; i < sizeof mode_pages_all; i++)
            n += mode_page(lu, mode_pages_all[i], pc, &m, b + n);
    } else {
        size_t l = sub == 0 ? mode_page(lu, code, pc, &m, b + n) : 0;
        if (!l) {
            scsi_bad_cdb(cmd, sub ? 3 : 2, sub ? 7 : 5);
            scsi_complete(cmd);
            return;
        }
        n += l;
    }
    if (ten) {
        put_be16(b, (uint16_t)(n - 2));
        b[3] = dsp;
        b[4] = llbaa && !dbd ? 0x01 : 0x00; /* LONGLBA */
        put_be16(b + 6, (uint16_t)bdl);
    } else {
        b[0] = (uint8_t)(n - 1);
        b[2] = dsp;
        b[3] = (uint8_t)bdl;
    }
    scsi_data_in(cmd, b, n);
    scsi_complete(cmd);
}

void spc_mode_select(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    const uint8_t *cdb = cmd->cdb;
    bool ten = cdb[0] == OP_MODE_SELECT10;
    uint32_t len = ten ? get_be16(cdb + 7) : cdb[4];
    const uint8_t *p = cmd->data_out;
    if (!(cdb[1] & 0x10)) { /* PF: only the standard page format */
        scsi_bad_cdb(cmd, 1, 4);
        goto out;
    }
    if (cdb[1] & 0x01) { /* SP: nothing can be saved */
        scsi_bad_cdb(cmd, 1, 0);
        goto out;
    }
    if (len == 0)
        goto out;
    size_t hdr = ten ? 8 : 4;
    if (len < hdr) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
        goto out;
    }
    size_t bdl = ten ? get_be16(p + 6) : p[3];
    bool longlba = ten && (p[4] & 0x01);
    size_t bd_size = longlba ? 16 : 8;
    if (bdl % bd_size || hdr + bdl > len) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
        goto out;
    }
    /* Block descriptors may only restate the block length. */
    for (size_t off = hdr; off < hdr + bdl; off += bd_size) {
        uint32_t bl = longlba ? get_be32(p + off + 12) : get_be24(p + off + 5);
        if (bl != SCSI_BLOCK) {
            scsi_bad_param(cmd, (unsigned)(off + (longlba ? 12 : 5)), -1);
            goto out;
        }
    }
    struct mode_state m;
    pthread_mutex_lock(&lu->lock);
    m = lu->mode;
    pthread_mutex_unlock(&lu->lock);
    struct mode_state next = m;
    size_t off = hdr + bdl;
    while (off < len) {
        if (len - off < 2) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
            goto out;
        }
        uint8_t code = p[off] & 0x3F;
        if (p[off] & 0x40) { /* SPF: no subpages here */
            scsi_bad_param(cmd, (unsigned)off, 6);
            goto out;
        }
        uint8_t cur[64], chg[64];
        size_t plen = mode_page(lu, code, PC_CURRENT, &m, cur);
        mode_page(lu, code, PC_CHANGEABLE, &m, chg);
        if (!plen) {
            scsi_bad_param(cmd, (unsigned)off, 5);
            goto out;
        }
        if ((size_t)p[off + 1] + 2 != plen) {
            scsi_bad_param(cmd, (unsigned)off + 1, -1);
            goto out;
        }
        if (len - off < plen) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
            goto out;
        }
        for (size_t i = 2; i < plen; i++) {
            uint8_t diff = (p[off + i] ^ cur[i]) & (uint8_t)~chg[i];
            if (diff) {
                scsi_bad_param(cmd, (unsigned)(off + i), 31 - __builtin_clz(diff));
                goto out;
            }
        }
        if (code == 0x08)
            next.wce = p[off + 2] & 0x04;
        if (code == 0x0A) {
            next.d_sense = p[off + 2] & 0x04;
            next.swp = p[off + 4] & 0x08;
        }
        off += plen;
    }
    pthread_mutex_lock(&lu->lock);
    if (memcmp(&lu->mode, &next, sizeof next) != 0) {
        lu->mode = next;
        scsi_ua_all_locked(lu, scsi_ns(cmd), ASC_MODE_PARAMETERS_CHANGED);
    }
    pthread_mutex_unlock(&lu->lock);
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS                               */
/* ---------------------------------------------------------------------------------------- */

/* Command timeouts descriptor (SPC-4 6.35.4): length 0Ah, nominal and recommended (s). */
static size_t put_timeouts(uint8_t *p)
{
    memset(p, 0, 12);
    put_be16(p, 0x0A);
    put_be32(p + 4, 0);  /* nominal: not specified */
    put_be32(p + 8, 30); /* recommended */
    return 12;
}

static void rsoc(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    bool rctd = cdb[2] & 0x80;
    unsigned opts = cdb[2] & 0x07;
    uint8_t req_op = cdb[3];
    uint16_t req_sa = get_be16(cdb + 4);
    size_t cap = 4 + scsi_nops * 20 + 64;
    uint8_t *b = calloc(1, cap);
    if (!b) {
        scsi_sense_errno(cmd, -ENOMEM, false);
        scsi_complete(cmd);
        return;
    }
    size_t n = 0;
    if (opts == 0) {
        n = 4;
        for (size_t i = 0; i < scsi_nops; i++) {
            const struct scsi_op *op = &scsi_ops[i];
            uint8_t *d = b + n;
            d[0] = op->opcode;
            put_be16(d + 2, (op->flags & OPF_SA) ? op->sa : 0);
            d[5] = (uint8_t)((op->flags & OPF_SA ? 0x01 : 0) | (rctd ? 0x02 : 0));
            put_be16(d + 6, op->cdb_len);
            n += 8;
            if (rctd)
                n += put_timeouts(b + n);
        }
        put_be32(b, (uint32_t)(n - 4));
    } else if (opts <= 3) {
        bool known = false, has_sa = false;
        const struct scsi_op *op = NULL;
        for (size_t i = 0; i < scsi_nops; i++) {
            const struct scsi_op *e = &scsi_ops[i];
            if (e->opcode != req_op)
                continue;
            known = true;
            has_sa = e->flags & OPF_SA;
            if ((!has_sa || e->sa == req_sa) && !op)
                op = e;
        }
        /* 001b: the opcode must have no service actions; 010b: it must have them; 011b:
         * either (the service action counts only where there are some). */
        if ((opts == 1 && has_sa) || (opts == 2 && known && !has_sa)) {
            free(b);
            scsi_bad_cdb(cmd, 2, 2);
            scsi_complete(cmd);
            return;
        }
        b[0] = 0;
        if (op) {
            b[1] = (uint8_t)(0x03 | (rctd ? 0x80 : 0)); /* SUPPORT 011b: as the standard */
            put_be16(b + 2, op->cdb_len);
            memcpy(b + 4, op->usage, op->cdb_len);
            n = 4 + op->cdb_len;
            if (rctd)
                n += put_timeouts(b + n);
        } else {
            b[1] = 0x01; /* SUPPORT 001b: not supported */
            n = 4;
        }
    } else {
        free(b);
        scsi_bad_cdb(cmd, 2, 2);
        scsi_complete(cmd);
        return;
    }
    scsi_data_in(cmd, b, n);
    free(b);
    scsi_complete(cmd);
}

static void rstmf(struct scsi_cmd *cmd)
{
    bool repd = cmd->cdb[2] & 0x80;
    uint8_t b[16] = {0};
    /* ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LUN RESET, TARGET RESET; QUERY TASK */
    b[0] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
    b[1] = 0x01;
    size_t n = 4;
    if (repd) {
        b[3] = 0x0C; /* additional data length */
        n = 16;
    }
    scsi_data_in(cmd, b, n);
    scsi_complete(cmd);
}

void spc_maintenance_in(struct scsi_cmd *cmd)
{
    if ((cmd->cdb[1] & 0x1F) == SA_REPORT_SUPPORTED_OPCODES)
        rsoc(cmd);
    else
        rstmf(cmd);
}
