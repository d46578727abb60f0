/*
 * scsi_lu.c - logical units and I_T nexuses, and the path every command takes.
 *
 * Dispatch (scsi_submit)
 *   1. xfer_len from the CDB, before anything can fail, so residuals are right for every
 *      answer;
 *   2. no LU: only INQUIRY, REPORT LUNS and REQUEST SENSE run, anything else gets LOGICAL
 *      UNIT NOT SUPPORTED;
 *   3. a changed volume size queues CAPACITY DATA HAS CHANGED for every nexus; a pending
 *      unit attention is reported (and cleared) unless the opcode is one of the three above;
 *   4. the opcode (and service action) is looked up in the table (scsi_ops below): unknown
 *      ones get INVALID COMMAND OPERATION CODE / INVALID FIELD IN CDB;
 *   5. the CDB must be as long as the table says, and every bit outside the entry's CDB
 *      usage mask must be zero: so the masks REPORT SUPPORTED OPERATION CODES shows are
 *      exactly the fields that are checked, and a handler only checks values;
 *   6. reservation conflicts (scsi_pr.c) by the entry's reservation class;
 *   7. commands that change the medium are refused on a read-only LU (or with SWP set);
 *      a Data-Out shorter than the CDB asks for is refused (INVALID FIELD IN COMMAND
 *      INFORMATION UNIT) before a handler sees it, so no handler reads beyond data_out_len;
 *      except whole blocks for WRITE and WRITE AND VERIFY, which write what came
 *      (short_write_ok);
 *   8. the handler; it completes the command (scsi_complete) now or from a volume
 *      completion.
 *
 * The LU counts the commands in flight; scsi_lu_destroy waits for zero. Commands that touch
 * the volume carry a struct scsi_io (cmd->internal). Writes take a shared range lock and
 * COMPARE AND WRITE an exclusive one, so a COMPARE AND WRITE never sees a write through the
 * LU land between its read and its write; range locks are granted in arrival order.
 *
 * The registry is every LU of the process, found by NAA designator for EXTENDED COPY.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "iscsi-target/scsi-priv.h"

/* ---------------------------------------------------------------------------------------- */
/* The command table                                                                          */
/* ---------------------------------------------------------------------------------------- */

#define CTL 0x00 /* control byte: NACA and LINK are not supported */
#define FF 0xFF

/* Reservation classes: see OPF_PR_* in scsi-priv.h. */
#define RD (OPF_PR_READ)
#define WR (OPF_PR_WRITE | OPF_WRITE)

/* clang-format off */
const struct scsi_op scsi_ops[] = {
    {OP_TEST_UNIT_READY, 0, 6, OPF_PR_ALLOW,
     {0x00, 0, 0, 0, 0, CTL}, spc_test_unit_ready, "TEST UNIT READY"},
    {OP_REQUEST_SENSE, 0, 6, OPF_NO_LU | OPF_NO_UA | OPF_PR_ALLOW | OPF_SPC2_ALLOW,
     {0x03, 0x01, 0, 0, FF, CTL}, spc_request_sense, "REQUEST SENSE"},
    {OP_READ6, 0, 6, RD,
     {0x08, 0x1F, FF, FF, FF, CTL}, sbc_read, "READ(6)"},
    {OP_WRITE6, 0, 6, WR,
     {0x0A, 0x1F, FF, FF, FF, CTL}, sbc_write, "WRITE(6)"},
    {OP_INQUIRY, 0, 6, OPF_NO_LU | OPF_NO_UA | OPF_PR_ALLOW | OPF_SPC2_ALLOW,
     {0x12, 0x01, FF, FF, FF, CTL}, spc_inquiry, "INQUIRY"},
    {OP_MODE_SELECT6, 0, 6, OPF_PR_WRITE,
     {0x15, 0x11, 0, 0, FF, CTL}, spc_mode_select, "MODE SELECT(6)"},
    {OP_MODE_SENSE6, 0, 6, RD,
     {0x1A, 0x08, FF, FF, FF, CTL}, spc_mode_sense, "MODE SENSE(6)"},
    {OP_START_STOP_UNIT, 0, 6, OPF_PR_ALLOW,
     {0x1B, 0x01, 0, 0, 0x07, CTL}, sbc_start_stop_unit, "START STOP UNIT"},
    {OP_READ_CAPACITY10, 0, 10, OPF_PR_ALLOW,
     {0x25, 0, FF, FF, FF, FF, 0, 0, 0x01, CTL}, sbc_read_capacity10, "READ CAPACITY(10)"},
    {OP_READ10, 0, 10, RD,
     {0x28, 0x1A, FF, FF, FF, FF, 0x1F, FF, FF, CTL}, sbc_read, "READ(10)"},
    {OP_WRITE10, 0, 10, WR,
     {0x2A, 0x1A, FF, FF, FF, FF, 0x1F, FF, FF, CTL}, sbc_write, "WRITE(10)"},
    {OP_WRITE_VERIFY10, 0, 10, WR,
     {0x2E, 0x12, FF, FF, FF, FF, 0x1F, FF, FF, CTL}, sbc_write, "WRITE AND VERIFY(10)"},
    {OP_SYNC_CACHE10, 0, 10, WR & ~OPF_WRITE,
     {0x35, 0x06, FF, FF, FF, FF, 0x1F, FF, FF, CTL}, sbc_sync_cache, "SYNCHRONIZE CACHE(10)"},
    {OP_PREFETCH10, 0, 10, RD,
     {0x34, 0x02, FF, FF, FF, FF, 0x1F, FF, FF, CTL}, sbc_prefetch, "PRE-FETCH(10)"},
    {OP_READ_DEFECT_DATA10, 0, 10, RD,
     {0x37, 0, 0x1F, 0, 0, 0, 0, FF, FF, CTL}, sbc_read_defect_data, "READ DEFECT DATA(10)"},
    {OP_MODE_SELECT10, 0, 10, OPF_PR_WRITE,
     {0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, CTL}, spc_mode_select, "MODE SELECT(10)"},
    {OP_MODE_SENSE10, 0, 10, RD,
     {0x5A, 0x18, FF, FF, 0, 0, 0, FF, FF, CTL}, spc_mode_sense, "MODE SENSE(10)"},
    {OP_READ16, 0, 16, RD,
     {0x88, 0x1A, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_read,
     "READ(16)"},
    {OP_WRITE16, 0, 16, WR,
     {0x8A, 0x1A, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_write,
     "WRITE(16)"},
    {OP_ORWRITE16, 0, 16, WR,
     {0x8B, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_orwrite,
     "ORWRITE(16)"},
    {OP_WRITE_VERIFY16, 0, 16, WR,
     {0x8E, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_write,
     "WRITE AND VERIFY(16)"},
    {OP_PREFETCH16, 0, 16, RD,
     {0x90, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_prefetch,
     "PRE-FETCH(16)"},
    {OP_SYNC_CACHE16, 0, 16, WR & ~OPF_WRITE,
     {0x91, 0x06, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_sync_cache,
     "SYNCHRONIZE CACHE(16)"},
    {OP_SERVICE_ACTION_IN16, SA_READ_CAPACITY16, 16, OPF_SA | OPF_PR_ALLOW,
     {0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL}, sbc_read_capacity16,
     "READ CAPACITY(16)"},
    {OP_REPORT_LUNS, 0, 12, OPF_NO_LU | OPF_NO_UA | OPF_PR_ALLOW | OPF_SPC2_ALLOW,
     {0xA0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, CTL}, spc_report_luns, "REPORT LUNS"},
    {OP_MAINTENANCE_IN, SA_REPORT_SUPPORTED_OPCODES, 12, OPF_SA | OPF_PR_ALLOW,
     {0xA3, 0x1F, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, CTL}, spc_maintenance_in,
     "REPORT SUPPORTED OPERATION CODES"},
    {OP_MAINTENANCE_IN, SA_REPORT_SUPPORTED_TMF, 12, OPF_SA | OPF_PR_ALLOW,
     {0xA3, 0x1F, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, CTL}, spc_maintenance_in,
     "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS"},
    {OP_READ12, 0, 12, RD,
     {0xA8, 0x1A, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_read, "READ(12)"},
    {OP_WRITE12, 0, 12, WR,
     {0xAA, 0x1A, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_write, "WRITE(12)"},
    {OP_WRITE_VERIFY12, 0, 12, WR,
     {0xAE, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_write,
     "WRITE AND VERIFY(12)"},
    {OP_READ_DEFECT_DATA12, 0, 12, RD,
     {0xB7, 0x1F, FF, FF, FF, FF, FF, FF, FF, FF, 0, CTL}, sbc_read_defect_data,
     "READ DEFECT DATA(12)"},
    {OP_VERIFY10, 0, 10, RD,
     {0x2F, 0x16, FF, FF, FF, FF, 0x1F, FF, FF, CTL}, sbc_verify, "VERIFY(10)"},
    {OP_VERIFY12, 0, 12, RD,
     {0xAF, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_verify, "VERIFY(12)"},
    {OP_VERIFY16, 0, 16, RD,
     {0x8F, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_verify,
     "VERIFY(16)"},
    {OP_WRITE_SAME10, 0, 10, WR,
     {0x41, 0x18, FF, FF, FF, FF, 0x1F, FF, FF, CTL}, sbc_write_same, "WRITE SAME(10)"},
    {OP_WRITE_SAME16, 0, 16, WR,
     {0x93, 0x19, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1F, CTL}, sbc_write_same,
     "WRITE SAME(16)"},
    {OP_UNMAP, 0, 10, WR,
     {0x42, 0, 0, 0, 0, 0, 0x1F, FF, FF, CTL}, sbc_unmap, "UNMAP"},
    {OP_COMPARE_AND_WRITE, 0, 16, WR,
     {0x89, 0x1A, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, 0x1F, CTL},
     sbc_compare_and_write, "COMPARE AND WRITE"},
    {OP_SERVICE_ACTION_IN16, SA_GET_LBA_STATUS, 16, OPF_SA | RD,
     {0x9E, 0x1F, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, CTL}, sbc_get_lba_status,
     "GET LBA STATUS"},
#define PRIN(sa, name)                                                                             \
    {OP_PR_IN, sa, 10, OPF_SA | OPF_PR_ALLOW,                                                      \
     {0x5E, 0x1F, 0, 0, 0, 0, 0, FF, FF, CTL}, pr_in, "PERSISTENT RESERVE IN " name}
    PRIN(0x00, "(READ KEYS)"),
    PRIN(0x01, "(READ RESERVATION)"),
    PRIN(0x02, "(REPORT CAPABILITIES)"),
    PRIN(0x03, "(READ FULL STATUS)"),
#define PROUT(sa, name)                                                                            \
    {OP_PR_OUT, sa, 10, OPF_SA | OPF_PR_OWN,                                                       \
     {0x5F, 0x1F, FF, 0, 0, FF, FF, FF, FF, CTL}, pr_out, "PERSISTENT RESERVE OUT " name}
    PROUT(0x00, "(REGISTER)"),
    PROUT(0x01, "(RESERVE)"),
    PROUT(0x02, "(RELEASE)"),
    PROUT(0x03, "(CLEAR)"),
    PROUT(0x04, "(PREEMPT)"),
    PROUT(0x05, "(PREEMPT AND ABORT)"),
    PROUT(0x06, "(REGISTER AND IGNORE EXISTING KEY)"),
    PROUT(0x07, "(REGISTER AND MOVE)"),
    {OP_RESERVE6, 0, 6, OPF_PR_OWN,
     {0x16, 0, 0, 0, 0, CTL}, pr_reserve6, "RESERVE(6)"},
    {OP_RELEASE6, 0, 6, OPF_PR_OWN | OPF_SPC2_ALLOW,
     {0x17, 0, 0, 0, 0, CTL}, pr_release6, "RELEASE(6)"},
    {OP_RESERVE10, 0, 10, OPF_PR_OWN,
     {0x56, 0, 0, 0, 0, 0, 0, 0, 0, CTL}, pr_reserve6, "RESERVE(10)"},
    {OP_RELEASE10, 0, 10, OPF_PR_OWN | OPF_SPC2_ALLOW,
     {0x57, 0, 0, 0, 0, 0, 0, 0, 0, CTL}, pr_release6, "RELEASE(10)"},
    {OP_EXTENDED_COPY, 0x00, 16, OPF_SA | OPF_PR_WRITE,
     {0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL}, xcopy_extended_copy,
     "EXTENDED COPY(LID1)"},
    {OP_RECEIVE_COPY_RESULTS, SA_RCR_COPY_STATUS, 16, OPF_SA | RD,
     {0x84, 0x1F, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL}, xcopy_receive_copy_results,
     "RECEIVE COPY RESULTS (COPY STATUS)"},
    {OP_RECEIVE_COPY_RESULTS, SA_RCR_OPERATING_PARAMS, 16, OPF_SA | RD,
     {0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, CTL}, xcopy_receive_copy_results,
     "RECEIVE COPY RESULTS (OPERATING PARAMETERS)"},
};
/* clang-format on */
const size_t scsi_nops = ARRAY_SIZE(scsi_ops);

const struct scsi_op *scsi_op_find(uint8_t opcode, uint8_t sa, bool *opcode_known)
{
    bool known = false;
    for (size_t i = 0; i < scsi_nops; i++) {
        const struct scsi_op *op = &scsi_ops[i];
        if (op->opcode != opcode)
            continue;
        known = true;
        if (!(op->flags & OPF_SA) || op->sa == sa) {
            if (opcode_known)
                *opcode_known = true;
            return op;
        }
    }
    if (opcode_known)
        *opcode_known = known;
    return NULL;
}

/* The CDB length of an opcode by its group (SAM-5 5.2), 0 for groups we never accept. */
static unsigned cdb_group_len(uint8_t opcode)
{
    switch (opcode >> 5) {
    case 0:
        return 6;
    case 1:
    case 2:
        return 10;
    case 4:
        return 16;
    case 5:
        return 12;
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Transfer lengths                                                                           */
/* ---------------------------------------------------------------------------------------- */

static uint32_t blocks_bytes(uint64_t n)
{
    return n > UINT32_MAX / SCSI_BLOCK ? UINT32_MAX : (uint32_t)(n * SCSI_BLOCK);
}

void sbc_decode_rw(const uint8_t *cdb, uint64_t *lba, uint32_t *n)
{
    switch (cdb[0] >> 5) {
    case 0: /* 6-byte: 21-bit LBA, 0 blocks means 256 */
        *lba = get_be24(cdb + 1) & 0x1FFFFF;
        *n = cdb[4] ? cdb[4] : 256;
        return;
    case 1:
    case 2:
        *lba = get_be32(cdb + 2);
        *n = get_be16(cdb + 7);
        return;
    case 5:
        *lba = get_be32(cdb + 2);
        *n = get_be32(cdb + 6);
        return;
    default:
        *lba = get_be64(cdb + 2);
        *n = get_be32(cdb + 10);
        return;
    }
}

/* Data-Out bytes asked for by a CDB at least as long as its group needs. */
static uint32_t cdb_data_out(const uint8_t *cdb)
{
    uint64_t lba;
    uint32_t n;
    switch (cdb[0]) {
    case OP_WRITE6:
    case OP_WRITE10:
    case OP_WRITE12:
    case OP_WRITE16:
    case OP_WRITE_VERIFY10:
    case OP_WRITE_VERIFY12:
    case OP_WRITE_VERIFY16:
    case OP_ORWRITE16:
        sbc_decode_rw(cdb, &lba, &n);
        return blocks_bytes(n);
    case OP_VERIFY10:
    case OP_VERIFY12:
    case OP_VERIFY16:
        sbc_decode_rw(cdb, &lba, &n);
        switch ((cdb[1] >> 1) & 3) {
        case 1:
            return blocks_bytes(n);
        case 3:
            return n ? SCSI_BLOCK : 0;
        default:
            return 0;
        }
    case OP_WRITE_SAME10:
        return SCSI_BLOCK;
    case OP_WRITE_SAME16:
        return (cdb[1] & 0x01) ? 0 : SCSI_BLOCK; /* NDOB */
    case OP_COMPARE_AND_WRITE:
        return blocks_bytes(2ull * cdb[13]);
    case OP_UNMAP:
    case OP_MODE_SELECT10:
        return get_be16(cdb + 7);
    case OP_MODE_SELECT6:
        return cdb[4];
    case OP_PR_OUT:
        return get_be32(cdb + 5);
    case OP_EXTENDED_COPY:
        return get_be32(cdb + 10);
    default:
        return 0;
    }
}

/* Data-In bytes asked for (allocation length or read length). */
static uint32_t cdb_data_in(const uint8_t *cdb)
{
    uint64_t lba;
    uint32_t n;
    switch (cdb[0]) {
    case OP_READ6:
    case OP_READ10:
    case OP_READ12:
    case OP_READ16:
        sbc_decode_rw(cdb, &lba, &n);
        return blocks_bytes(n);
    case OP_INQUIRY:
        return get_be16(cdb + 3);
    case OP_REQUEST_SENSE:
    case OP_MODE_SENSE6:
        return cdb[4];
    case OP_MODE_SENSE10:
    case OP_PR_IN:
    case OP_READ_DEFECT_DATA10:
        return get_be16(cdb + 7);
    case OP_READ_DEFECT_DATA12:
        return get_be32(cdb + 6);
    case OP_READ_CAPACITY10:
        return 8;
    case OP_SERVICE_ACTION_IN16:
    case OP_RECEIVE_COPY_RESULTS:
        return get_be32(cdb + 10);
    case OP_REPORT_LUNS:
    case OP_MAINTENANCE_IN:
        return get_be32(cdb + 6);
    default:
        return 0;
    }
}

static bool cdb_complete(const struct scsi_cmd *cmd)
{
    unsigned need = cmd->cdb_len ? cdb_group_len(cmd->cdb[0]) : 0;
    return need && cmd->cdb_len >= need && cmd->cdb_len <= SCSI_CDB_MAX;
}

/* Whether the command must see a Data-Out longer than its CDB asks for, to refuse it: WRITE
 * SAME (one block of pattern, exactly) and COMPARE AND WRITE (exactly twice the blocks). */
static bool wants_all_data_out(const uint8_t *cdb)
{
    return cdb[0] == OP_WRITE_SAME10 || (cdb[0] == OP_WRITE_SAME16 && !(cdb[1] & 0x01)) ||
           cdb[0] == OP_COMPARE_AND_WRITE;
}

uint32_t scsi_data_out_len(const struct scsi_cmd *cmd)
{
    if (!cdb_complete(cmd))
        return 0;
    return wants_all_data_out(cmd->cdb) ? UINT32_MAX : cdb_data_out(cmd->cdb);
}

/* Whether a Data-Out shorter than the CDB asks for is written as far as it goes: for WRITE
 * and WRITE AND VERIFY, when it holds whole blocks. The initiator's EDTL was smaller than the
 * command (a residual overflow, RFC 7143 11.4.5.1): the blocks received are written, the rest
 * of the range is left as it was. Anything else short is refused. */
static bool short_write_ok(const struct scsi_cmd *cmd)
{
    switch (cmd->cdb[0]) {
    case OP_WRITE6:
    case OP_WRITE10:
    case OP_WRITE12:
    case OP_WRITE16:
    case OP_WRITE_VERIFY10:
    case OP_WRITE_VERIFY12:
    case OP_WRITE_VERIFY16:
        return cmd->data_out_len % SCSI_BLOCK == 0;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Registry                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, scsi_lu) registry = LIST_HEAD_INITIALIZER(registry);

void scsi_lu_get(struct scsi_lu *lu)
{
    SCOPED_LOCK(&lu->lock);
    lu->inflight++;
}

void scsi_lu_put(struct scsi_lu *lu)
{
    SCOPED_LOCK(&lu->lock);
    if (--lu->inflight == 0)
        pthread_cond_broadcast(&lu->idle);
}

struct scsi_lu *scsi_lu_lookup_naa(const uint8_t naa[SCSI_NAA_LEN])
{
    SCOPED_LOCK(&registry_lock);
    struct scsi_lu *lu;
    LIST_FOREACH(lu, &registry, reg_link) {
        if (memcmp(lu->naa, naa, SCSI_NAA_LEN) == 0) {
            scsi_lu_get(lu);
            return lu;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* LU lifetime                                                                                */
/* ---------------------------------------------------------------------------------------- */

/*
 * The NAA Locally Assigned designator (NAA 3h, SPC-4 7.8.6.6.3): 4 bits of NAA, then a
 * 60-bit locally administered value, taken from SHA-256 of pool uuid and volume id: the same
 * on every start and for every session, and different between volumes. The IEEE-based NAA
 * types (5h, 6h) need a Company ID assigned to the vendor, which Cistern does not have.
 */
void scsi_serial(const uint8_t pool_uuid[16], uint64_t vol_id, char out[SCSI_SERIAL_LEN])
{
    /* 32 hex digits of the pool, 16 of the volume: unique, and stable across restarts. */
    char u[UUID_STR_LEN];
    uuid_format(pool_uuid, u);
    size_t k = 0;
    for (const char *p = u; *p; p++)
        if (*p != '-')
            out[k++] = *p;
    snprintf(out + k, SCSI_SERIAL_LEN - k, "%016llx", (unsigned long long)vol_id);
}

static int make_naa(struct scsi_lu *lu)
{
    uint8_t in[24], md[32];
    unsigned mdlen = 0;
    memcpy(in, lu->pool_uuid, 16);
    put_be64(in + 16, lu->vol_id);
    if (!EVP_Digest(in, sizeof in, md, &mdlen, EVP_sha256(), NULL))
        return -ENOMEM;
    lu->naa[0] = (uint8_t)(0x30 | (md[0] & 0x0F));
    memcpy(lu->naa + 1, md + 1, SCSI_NAA_LEN - 1);
    return 0;
}

int scsi_lu_create(const struct scsi_lu_config *cfg, struct scsi_lu **out)
{
    *out = NULL;
    if (!cfg || !cfg->vol)
        return -EINVAL;
    uint32_t grain = vol_grain_size(cfg->vol);
    if (!IS_POW2(grain) || grain < SCSI_BLOCK)
        return -EINVAL;
    struct scsi_lu *lu = calloc(1, sizeof(*lu));
    if (!lu)
        return -ENOMEM;
    lu->vol = cfg->vol;
    lu->readonly = cfg->readonly;
    lu->lun = cfg->lun;
    memcpy(lu->pool_uuid, cfg->pool_uuid, 16);
    lu->vol_id = cfg->vol_id;
    snprintf(lu->name, sizeof(lu->name), "%s", cfg->name ? cfg->name : vol_name(cfg->vol));
    lu->grain = grain;
    if (cfg->grain_physical)
        lu->lbppbe = MIN((unsigned)__builtin_ctz(grain) - SCSI_BLOCK_SHIFT, 15u);
    scsi_serial(lu->pool_uuid, lu->vol_id, lu->serial);
    int r = make_naa(lu);
    if (r == 0 && cfg->pr_dir && !(lu->pr_file = pr_file_path(cfg->pr_dir, lu->serial)))
        r = -ENOMEM;
    if (r < 0) {
        free(lu);
        return r;
    }
    pthread_mutex_init(&lu->lock, NULL);
    pthread_cond_init(&lu->idle, NULL);
    lu->size = vol_size(lu->vol);
    LIST_INIT(&lu->nexuses);
    pr_open(lu);
    TAILQ_INIT(&lu->ranges);
    lu->mode.wce = true;
    pthread_mutex_lock(&registry_lock);
    LIST_INSERT_HEAD(&registry, lu, reg_link);
    pthread_mutex_unlock(&registry_lock);
    *out = lu;
    return 0;
}

void scsi_lu_destroy(struct scsi_lu *lu)
{
    if (!lu)
        return;
    pthread_mutex_lock(&registry_lock);
    LIST_REMOVE(lu, reg_link);
    pthread_mutex_unlock(&registry_lock);
    pthread_mutex_lock(&lu->lock);
    while (lu->inflight)
        pthread_cond_wait(&lu->idle, &lu->lock);
    struct nexus_state *ns;
    while ((ns = LIST_FIRST(&lu->nexuses))) {
        LIST_REMOVE(ns, link);
        ns->nx->priv = NULL;
        free(ns);
    }
    pthread_mutex_unlock(&lu->lock);
    pr_close(lu);
    free(lu->pr_file);
    pthread_cond_destroy(&lu->idle);
    pthread_mutex_destroy(&lu->lock);
    free(lu);
}

/* ---------------------------------------------------------------------------------------- */
/* Nexuses and unit attentions                                                                */
/* ---------------------------------------------------------------------------------------- */

void scsi_ua_queue_locked(struct nexus_state *ns, uint16_t asc)
{
    for (unsigned i = 0; i < ns->nua; i++)
        if (ns->ua[i] == asc)
            return;
    if (ns->nua == SCSI_UA_MAX) {
        /* Full: the oldest goes (SPC-4 lets a device drop UAs it cannot hold). */
        memmove(ns->ua, ns->ua + 1, sizeof(ns->ua[0]) * (SCSI_UA_MAX - 1));
        ns->nua--;
    }
    ns->ua[ns->nua++] = asc;
}

void scsi_ua_all_locked(struct scsi_lu *lu, struct nexus_state *except, uint16_t asc)
{
    struct nexus_state *ns;
    LIST_FOREACH(ns, &lu->nexuses, link)
        if (ns != except)
            scsi_ua_queue_locked(ns, asc);
}

int scsi_nexus_attach(struct scsi_lu *lu, struct scsi_nexus *nx)
{
    struct nexus_state *ns = calloc(1, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    ns->nx = nx;
    ns->lu = lu;
    ns->ua[ns->nua++] = ASC_POWER_ON_RESET;
    SCOPED_LOCK(&lu->lock);
    LIST_INSERT_HEAD(&lu->nexuses, ns, link);
    nx->priv = ns;
    return 0;
}

void scsi_nexus_detach(struct scsi_lu *lu, struct scsi_nexus *nx)
{
    struct nexus_state *ns = nx->priv;
    if (!lu || !ns)
        return;
    pthread_mutex_lock(&lu->lock);
    pr_nexus_gone_locked(lu, ns);
    LIST_REMOVE(ns, link);
    nx->priv = NULL;
    pthread_mutex_unlock(&lu->lock);
    free(ns);
}

void scsi_lu_reset(struct scsi_lu *lu, struct scsi_nexus *from)
{
    if (!lu)
        return;
    SCOPED_LOCK(&lu->lock);
    pr_reset_locked(lu);
    scsi_ua_all_locked(lu, from ? from->priv : NULL, ASC_BUS_DEVICE_RESET);
}

/* ---------------------------------------------------------------------------------------- */
/* Completion and helpers                                                                     */
/* ---------------------------------------------------------------------------------------- */

void scsi_complete(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    cmd->internal = NULL;
    if (cmd->status != SCSI_CHECK_CONDITION)
        cmd->sense_len = 0;
    if (lu) {
        pthread_mutex_lock(&lu->lock);
        struct nexus_state *ns = scsi_ns(cmd);
        /* The sense REQUEST SENSE returns later; not a unit attention's, whose condition
         * was cleared by reporting it. */
        bool ua = cmd->sense_len > 13 && ((cmd->sense[0] & 0x7F) == 0x72
                                              ? (cmd->sense[1] & 0x0F) == SK_UNIT_ATTENTION
                                              : (cmd->sense[2] & 0x0F) == SK_UNIT_ATTENTION);
        if (ns && cmd->status == SCSI_CHECK_CONDITION && !ua) {
            memcpy(ns->last_sense, cmd->sense, cmd->sense_len);
            ns->last_sense_len = cmd->sense_len;
        }
        if (--lu->inflight == 0)
            pthread_cond_broadcast(&lu->idle);
        pthread_mutex_unlock(&lu->lock);
    }
    cmd->done(cmd);
}

void scsi_data_in(struct scsi_cmd *cmd, const void *buf, size_t len)
{
    size_t n = MIN(MIN(len, (size_t)cmd->xfer_len), (size_t)cmd->data_in_max);
    if (n)
        memcpy(cmd->data_in, buf, n);
    cmd->data_in_len = (uint32_t)n;
    cmd->status = SCSI_GOOD;
}

bool scsi_check_range(struct scsi_cmd *cmd, uint64_t lba, uint64_t n)
{
    uint64_t blocks = scsi_lu_blocks(cmd->lu);
    if (lba > blocks || n > blocks - lba) {
        scsi_sense_lba(cmd);
        return false;
    }
    return true;
}

bool scsi_check_writable(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    if (lu->readonly) {
        scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
        return false;
    }
    bool swp;
    pthread_mutex_lock(&lu->lock);
    swp = lu->mode.swp;
    pthread_mutex_unlock(&lu->lock);
    if (swp) {
        scsi_sense(cmd, SK_DATA_PROTECT, ASC_SOFTWARE_WRITE_PROTECTED);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* I/O and range locks                                                                        */
/* ---------------------------------------------------------------------------------------- */

struct scsi_io *scsi_io_new(struct scsi_cmd *cmd, size_t buf_len)
{
    struct scsi_io *io = calloc(1, sizeof(*io));
    if (io && buf_len) {
        io->buf_len = ROUND_UP(buf_len, (size_t)4096);
        io->buf = aligned_alloc(4096, io->buf_len);
        if (!io->buf) {
            free(io);
            io = NULL;
        }
    }
    if (!io) {
        scsi_sense_errno(cmd, -ENOMEM, false);
        scsi_complete(cmd);
        return NULL;
    }
    io->cmd = cmd;
    io->lu = cmd->lu;
    io->vol = cmd->lu->vol;
    cmd->internal = io;
    return io;
}

/*
 * On a reactor, vol_submit may complete before it returns (reads of holes, unmaps), and the
 * multi-step commands (WRITE SAME, UNMAP, EXTENDED COPY) submit their next step from the
 * completion: completions nested deeper than this go through the reactor's queue instead,
 * so the stack unwinds however many steps a command has.
 */
#define IO_MAX_NESTING 16
static __thread unsigned io_nesting;

static void io_next_work(struct reactor_work *w)
{
    struct scsi_io *io = container_of(w, struct scsi_io, work);
    io->next(io, io->res);
}

static void io_vol_done(struct vol_req *vr, int res)
{
    struct scsi_io *io = vr->priv;
    struct reactor *self;
    if (io_nesting >= IO_MAX_NESTING && (self = pool_reactor_self())) {
        io->res = res;
        io->work = (struct reactor_work){.fn = io_next_work};
        pool_reactor_post(self, &io->work);
        return;
    }
    io_nesting++;
    io->next(io, res);
    io_nesting--;
}

void scsi_io_submit(struct scsi_io *io, enum vol_op op, uint32_t flags, uint64_t off,
                    uint64_t len, void *buf, void (*next)(struct scsi_io *io, int res))
{
    io->next = next;
    io->vr = (struct vol_req){
        .op = op,
        .flags = flags,
        .offset = off,
        .length = len,
        .buf = buf,
        .done = io_vol_done,
        .priv = io,
    };
    vol_submit(io->vol, &io->vr);
}

static bool ranges_conflict(const struct range_lock *a, const struct range_lock *b)
{
    if (!a->exclusive && !b->exclusive)
        return false;
    return a->lba < b->lba + b->n && b->lba < a->lba + a->n;
}

/* Whether @rl may be granted: no earlier entry (held or waiting) conflicts. */
static bool range_grantable(struct scsi_lu *lu, struct range_lock *rl)
{
    struct range_lock *e;
    TAILQ_FOREACH(e, &lu->ranges, link) {
        if (e == rl)
            return true;
        if (ranges_conflict(e, rl))
            return false;
    }
    return true;
}

static void io_range_granted(struct range_lock *rl)
{
    struct scsi_io *io = container_of(rl, struct scsi_io, rl);
    io->lock_cont(io);
}

void scsi_io_lock_on(struct scsi_io *io, struct scsi_lu *lu, uint64_t lba, uint64_t n,
                     bool exclusive, void (*cont)(struct scsi_io *io))
{
    assert(!io->locked);
    io->rl = (struct range_lock){.lu = lu, .lba = lba, .n = n ? n : 1, .exclusive = exclusive};
    io->rl.granted_fn = io_range_granted;
    io->lock_cont = cont;
    io->locked = true;
    pthread_mutex_lock(&lu->lock);
    TAILQ_INSERT_TAIL(&lu->ranges, &io->rl, link);
    io->rl.granted = range_grantable(lu, &io->rl);
    bool now = io->rl.granted;
    pthread_mutex_unlock(&lu->lock);
    if (now)
        io_range_granted(&io->rl);
}

void scsi_io_lock(struct scsi_io *io, uint64_t lba, uint64_t n, bool exclusive,
                  void (*cont)(struct scsi_io *io))
{
    scsi_io_lock_on(io, io->lu, lba, n, exclusive, cont);
}

/* Releases @io's range lock and grants what waited for it, in arrival order. A grant
 * starts the waiter's next step, so it is made after lu->lock is dropped. */
void scsi_io_unlock(struct scsi_io *io)
{
    if (!io->locked)
        return;
    struct scsi_lu *lu = io->rl.lu;
    struct range_lock *start[16];
    size_t nstart = 0;
    pthread_mutex_lock(&lu->lock);
    TAILQ_REMOVE(&lu->ranges, &io->rl, link);
    io->locked = false;
    struct range_lock *e;
    TAILQ_FOREACH(e, &lu->ranges, link) {
        if (e->granted || !range_grantable(lu, e))
            continue;
        if (nstart == ARRAY_SIZE(start))
            break; /* the rest are granted by the next release of a lock they wait for */
        e->granted = true;
        start[nstart++] = e;
    }
    pthread_mutex_unlock(&lu->lock);
    for (size_t i = 0; i < nstart; i++)
        start[i]->granted_fn(start[i]);
}

void scsi_io_finish(struct scsi_io *io)
{
    struct scsi_cmd *cmd = io->cmd;
    struct scsi_lu *lu = io->lu;
    bool detached = io->detached;
    scsi_io_unlock(io);
    free(io->buf);
    free(io);
    if (detached)
        scsi_lu_put(lu);
    else
        scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* Dispatch                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Step 5: the CDB's length and reserved bits against the entry. Returns -1 when the CDB is
 * fine, else the field pointer: byte << 3 | bit (bit 7 with byte 0x1FFF: no bit). */
static int check_cdb(const struct scsi_cmd *cmd, const struct scsi_op *op)
{
    if (cmd->cdb_len < op->cdb_len)
        return (int)(cmd->cdb_len << 4 | 0x8);
    for (unsigned i = 1; i < op->cdb_len; i++) {
        uint8_t bad = cmd->cdb[i] & (uint8_t)~op->usage[i];
        if (bad)
            return (int)(i << 4 | (unsigned)(31 - __builtin_clz(bad)));
    }
    return -1;
}

static void bad_cdb_at(struct scsi_cmd *cmd, int where)
{
    scsi_bad_cdb(cmd, (unsigned)where >> 4, (where & 0x8) ? -1 : (where & 7));
}

void scsi_submit(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    cmd->status = SCSI_GOOD;
    cmd->data_in_len = 0;
    cmd->sense_len = 0;
    cmd->internal = NULL;
    cmd->xfer_len = 0;
    if (!lu)
        cmd->nx = NULL;

    bool complete = cdb_complete(cmd);
    if (complete) {
        uint32_t out = cdb_data_out(cmd->cdb);
        cmd->xfer_len = out ? out : cdb_data_in(cmd->cdb);
    }
    uint8_t opcode = cmd->cdb_len ? cmd->cdb[0] : 0xFF;
    uint8_t sa = cmd->cdb_len > 1 ? cmd->cdb[1] & 0x1F : 0;
    bool opcode_known = false;
    const struct scsi_op *op = cmd->cdb_len ? scsi_op_find(opcode, sa, &opcode_known) : NULL;
    int bad = op ? check_cdb(cmd, op) : -1;

    if (!lu) {
        if (!op || !(op->flags & OPF_NO_LU))
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LU_NOT_SUPPORTED);
        else if (bad >= 0)
            bad_cdb_at(cmd, bad);
        else {
            op->fn(cmd);
            return;
        }
        scsi_complete(cmd);
        return;
    }

    /* Steps 3 and 6 under one hold of the LU lock; the command counts as in flight from
     * here, so scsi_complete may be called on every path below. */
    bool ua_exempt = op ? (op->flags & OPF_NO_UA)
                        : (opcode == OP_INQUIRY || opcode == OP_REPORT_LUNS ||
                           opcode == OP_REQUEST_SENSE);
    uint16_t ua = 0;
    bool conflict = false;
    pthread_mutex_lock(&lu->lock);
    lu->inflight++;
    uint64_t size = vol_size(lu->vol);
    if (size != lu->size) {
        lu->size = size;
        scsi_ua_all_locked(lu, NULL, ASC_CAPACITY_CHANGED);
    }
    struct nexus_state *ns = scsi_ns(cmd);
    if (ns && ns->nua && !ua_exempt) {
        ua = ns->ua[0];
        ns->nua--;
        memmove(ns->ua, ns->ua + 1, sizeof(ns->ua[0]) * ns->nua);
    }
    if (!ua && op && bad < 0)
        conflict = pr_conflict_locked(cmd, op);
    pthread_mutex_unlock(&lu->lock);

    if (ua)
        scsi_sense(cmd, SK_UNIT_ATTENTION, ua);
    else if (!op && opcode_known)
        scsi_bad_cdb(cmd, 1, 4);
    else if (!op)
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    else if (bad >= 0)
        bad_cdb_at(cmd, bad);
    else if (conflict)
        cmd->status = SCSI_RESERVATION_CONFLICT;
    else if ((op->flags & OPF_WRITE) && !scsi_check_writable(cmd))
        ; /* DATA PROTECT, before the Data-Out is looked at */
    else if (cdb_data_out(cmd->cdb) > cmd->data_out_len && !short_write_ok(cmd))
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CIU);
    else {
        op->fn(cmd);
        return;
    }
    scsi_complete(cmd);
}
