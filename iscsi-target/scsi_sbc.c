/*
 * scsi_sbc.c - the block commands (SBC-3/SBC-4) on the LU's volume: READ CAPACITY, READ and
 * WRITE (6/10/12/16), WRITE AND VERIFY, VERIFY, SYNCHRONIZE CACHE, WRITE SAME, UNMAP, COMPARE
 * AND WRITE, ORWRITE, GET LBA STATUS, PRE-FETCH, START STOP UNIT and READ DEFECT DATA.
 *
 * Logical blocks are 512 bytes. The volume's grain is the optimal transfer and unmap
 * granularity (VPD B0h), and the physical block of READ CAPACITY (16) only when the LU is
 * configured so (scsi_lu_config.grain_physical). Each command is checked completely (range, transfer
 * limits, field values) before anything reaches the volume, then runs as a short chain of
 * vol_submit() steps on a struct scsi_io. Data buffers given to the volume are 4096-aligned:
 * Data-In and Data-Out are used in place when aligned and large enough, else through the
 * I/O's own buffer.
 *
 * Writes hold a shared range lock for their blocks, COMPARE AND WRITE and ORWRITE an
 * exclusive one (scsi_lu.c), so their read and their write are atomic against every write
 * through the LU. With the caching page's WCE cleared every write carries VOL_FUA.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/scsi-priv.h"

static bool lu_wce(struct scsi_lu *lu)
{
    SCOPED_LOCK(&lu->lock);
    return lu->mode.wce;
}

/* The CDB byte of the transfer length (for field pointers). */
static unsigned len_byte(uint8_t opcode)
{
    switch (opcode >> 5) {
    case 0:
        return 4;
    case 1:
    case 2:
        return 7;
    case 5:
        return 6;
    default:
        return 10;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* READ CAPACITY                                                                              */
/* ---------------------------------------------------------------------------------------- */

void sbc_read_capacity10(struct scsi_cmd *cmd)
{
    /* Without PMI the LBA field must be zero (SBC-3 5.15). */
    if (!(cmd->cdb[8] & 0x01) && get_be32(cmd->cdb + 2)) {
        scsi_bad_cdb(cmd, 2, -1);
        scsi_complete(cmd);
        return;
    }
    uint8_t b[8];
    uint64_t blocks = scsi_lu_blocks(cmd->lu);
    put_be32(b, blocks ? (uint32_t)MIN(blocks - 1, (uint64_t)UINT32_MAX) : 0);
    put_be32(b + 4, SCSI_BLOCK);
    scsi_data_in(cmd, b, sizeof b);
    scsi_complete(cmd);
}

void sbc_read_capacity16(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    uint8_t b[32] = {0};
    uint64_t blocks = scsi_lu_blocks(lu);
    put_be64(b, blocks ? blocks - 1 : 0);
    put_be32(b + 8, SCSI_BLOCK);
    b[13] = (uint8_t)lu->lbppbe; /* logical blocks per physical block exponent */
    b[14] = 0x80 | 0x40;         /* LBPME, LBPRZ; lowest aligned LBA 0 */
    scsi_data_in(cmd, b, sizeof b);
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* READ                                                                                       */
/* ---------------------------------------------------------------------------------------- */

static bool data_in_direct(const struct scsi_cmd *cmd, uint64_t len)
{
    return cmd->data_in && ((uintptr_t)cmd->data_in & 4095) == 0 && cmd->data_in_max >= len;
}

static void read_done(struct scsi_io *io, int res)
{
    struct scsi_cmd *cmd = io->cmd;
    if (res < 0) {
        scsi_sense_errno(cmd, res, false);
    } else {
        uint32_t n = (uint32_t)MIN((uint64_t)cmd->data_in_max, io->nblocks * SCSI_BLOCK);
        if (io->buf && n)
            memcpy(cmd->data_in, io->buf, n);
        cmd->data_in_len = n;
    }
    scsi_io_finish(io);
}

void sbc_read(struct scsi_cmd *cmd)
{
    uint64_t lba;
    uint32_t n;
    sbc_decode_rw(cmd->cdb, &lba, &n);
    if (!scsi_check_range(cmd, lba, n))
        goto out;
    if (n > SCSI_MAX_XFER_BLOCKS) {
        scsi_bad_cdb(cmd, len_byte(cmd->cdb[0]), -1);
        goto out;
    }
    if (n == 0)
        goto out;
    uint64_t len = (uint64_t)n * SCSI_BLOCK;
    bool direct = data_in_direct(cmd, len);
    struct scsi_io *io = scsi_io_new(cmd, direct ? 0 : len);
    if (!io)
        return;
    io->nblocks = n;
    scsi_io_submit(io, VOL_OP_READ, 0, lba * SCSI_BLOCK, len, direct ? cmd->data_in : io->buf,
                   read_done);
    return;
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* WRITE, WRITE AND VERIFY                                                                    */
/* ---------------------------------------------------------------------------------------- */

static void write_done(struct scsi_io *io, int res)
{
    if (res < 0)
        scsi_sense_errno(io->cmd, res, true);
    scsi_io_finish(io);
}

static void write_locked(struct scsi_io *io)
{
    scsi_io_submit(io, VOL_OP_WRITE, io->flags, io->lba * SCSI_BLOCK, io->nblocks * SCSI_BLOCK,
                   io->buf ? io->buf : io->cmd->data_out, write_done);
}

void sbc_write(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    uint64_t lba;
    uint32_t n;
    sbc_decode_rw(cdb, &lba, &n);
    /* WRITE AND VERIFY: BYTCHK 00b and 01b both mean "write"; the data written is the data
     * received, so the check after the write cannot fail. 10b is reserved. */
    if ((cdb[0] & 0x1F) == (OP_WRITE_VERIFY10 & 0x1F) && ((cdb[1] >> 1) & 3) >= 2) {
        scsi_bad_cdb(cmd, 1, 2);
        goto out;
    }
    if (!scsi_check_range(cmd, lba, n))
        goto out;
    if (n > SCSI_MAX_XFER_BLOCKS) {
        scsi_bad_cdb(cmd, len_byte(cdb[0]), -1);
        goto out;
    }
    /* A Data-Out of fewer whole blocks than the CDB asks for (the dispatch let it through):
     * those blocks are written, the rest of the range stays as it was. */
    n = (uint32_t)MIN((uint64_t)n, (uint64_t)(cmd->data_out_len / SCSI_BLOCK));
    if (n == 0)
        goto out;
    uint64_t len = (uint64_t)n * SCSI_BLOCK;
    bool direct = ((uintptr_t)cmd->data_out & 4095) == 0;
    struct scsi_io *io = scsi_io_new(cmd, direct ? 0 : len);
    if (!io)
        return;
    if (!direct)
        memcpy(io->buf, cmd->data_out, len);
    io->lba = lba;
    io->nblocks = n;
    bool fua = cdb[0] != OP_WRITE6 && (cdb[1] & 0x08);
    io->flags = fua || !lu_wce(cmd->lu) ? VOL_FUA : 0;
    scsi_io_lock(io, lba, n, false, write_locked);
    return;
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* SYNCHRONIZE CACHE                                                                          */
/* ---------------------------------------------------------------------------------------- */

static void sync_done(struct scsi_io *io, int res)
{
    if (res < 0 && io->detached)
        log_warn("scsi: LU %s: SYNCHRONIZE CACHE (IMMED) failed: %d", io->lu->name, res);
    else if (res < 0)
        scsi_sense_errno(io->cmd, res, true);
    scsi_io_finish(io);
}

/* Makes every write completed so far durable, then completes @cmd; with @immed, completes it
 * at once and lets the flush run on. */
static void flush_cmd(struct scsi_cmd *cmd, bool immed)
{
    struct scsi_io *io = scsi_io_new(cmd, 0);
    if (!io)
        return;
    if (immed) {
        /* IMMED: GOOD now; the flush runs on, holding the LU, and its error (if any) can
         * only be logged. */
        io->detached = true;
        scsi_lu_get(cmd->lu);
        io->cmd = NULL;
        scsi_complete(cmd);
    }
    scsi_io_submit(io, VOL_OP_FLUSH, 0, 0, 0, NULL, sync_done);
}

void sbc_sync_cache(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    bool sixteen = cdb[0] == OP_SYNC_CACHE16;
    uint64_t lba = sixteen ? get_be64(cdb + 2) : get_be32(cdb + 2);
    uint32_t n = sixteen ? get_be32(cdb + 10) : get_be16(cdb + 7);
    if (!scsi_check_range(cmd, lba, n)) {
        scsi_complete(cmd);
        return;
    }
    flush_cmd(cmd, cdb[1] & 0x02);
}

/* ---------------------------------------------------------------------------------------- */
/* PRE-FETCH, START STOP UNIT, READ DEFECT DATA                                               */
/* ---------------------------------------------------------------------------------------- */

/*
 * PRE-FETCH: the range is checked, and GOOD says that the cache could not take all of it
 * (CONDITION MET would promise the blocks are now cached: there is no cache of data above
 * the pool's, only of metadata).
 */
void sbc_prefetch(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    bool sixteen = cdb[0] == OP_PREFETCH16;
    uint64_t lba = sixteen ? get_be64(cdb + 2) : get_be32(cdb + 2);
    uint32_t n = sixteen ? get_be32(cdb + 10) : get_be16(cdb + 7);
    scsi_check_range(cmd, lba, n);
    scsi_complete(cmd);
}

/*
 * START STOP UNIT: a volume is shared by every initiator that reaches it, so one of them
 * cannot stop it for the others: START and STOP both leave the LU ready, and STOP makes the
 * writes so far durable first unless NO_FLUSH is set (what stopping a disk does to its
 * cache). There is no removable medium: LOEJ with START 0 (eject) is refused, LOEJ with
 * START 1 (load) finds the medium there. Power conditions are not supported (their CDB
 * fields are outside the usage mask).
 */
void sbc_start_stop_unit(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    bool immed = cdb[1] & 0x01, no_flush = cdb[4] & 0x04, loej = cdb[4] & 0x02,
         start = cdb[4] & 0x01;
    if (loej && !start) {
        scsi_bad_cdb(cmd, 4, 1);
        scsi_complete(cmd);
        return;
    }
    if (start || no_flush) {
        scsi_complete(cmd);
        return;
    }
    flush_cmd(cmd, immed);
}

/* READ DEFECT DATA (10, 12): a volume has no defects; both lists, when asked for, are
 * returned valid and empty, in the format asked for. */
void sbc_read_defect_data(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    uint8_t b[8] = {0};
    bool twelve = cdb[0] == OP_READ_DEFECT_DATA12;
    b[1] = (twelve ? cdb[1] : cdb[2]) & 0x1F; /* PLISTV, GLISTV, DEFECT LIST FORMAT */
    scsi_data_in(cmd, b, twelve ? 8 : 4);     /* DEFECT LIST LENGTH 0 */
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* VERIFY                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* MISCOMPARE DURING VERIFY OPERATION with the offset of the first differing byte. */
static void miscompare(struct scsi_cmd *cmd, uint64_t offset)
{
    struct scsi_sense_spec s = {
        .key = SK_MISCOMPARE,
        .asc = ASC_MISCOMPARE_DURING_VERIFY,
        .info_valid = true,
        .info = offset,
    };
    scsi_sense_spec(cmd, &s);
}

/* The offset of the first byte where @a and @b differ, or -1. */
static int64_t first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
    if (memcmp(a, b, len) == 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return (int64_t)i;
    return -1;
}

static void verify_done(struct scsi_io *io, int res)
{
    struct scsi_cmd *cmd = io->cmd;
    const uint8_t *data = cmd->data_out;
    size_t len = io->nblocks * SCSI_BLOCK;
    if (res < 0) {
        scsi_sense_errno(cmd, res, false);
    } else if (io->flags == 1) { /* BYTCHK 01b: the Data-Out against the blocks */
        int64_t d = first_diff(io->buf, data, len);
        if (d >= 0)
            miscompare(cmd, (uint64_t)d);
    } else { /* BYTCHK 11b: one block of Data-Out against every block */
        for (uint64_t i = 0; i < io->nblocks; i++) {
            int64_t d = first_diff(io->buf + i * SCSI_BLOCK, data, SCSI_BLOCK);
            if (d >= 0) {
                miscompare(cmd, i * SCSI_BLOCK + (uint64_t)d);
                break;
            }
        }
    }
    scsi_io_finish(io);
}

void sbc_verify(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    uint64_t lba;
    uint32_t n;
    sbc_decode_rw(cdb, &lba, &n);
    unsigned bytchk = (cdb[1] >> 1) & 3;
    if (bytchk == 2) {
        scsi_bad_cdb(cmd, 1, 2);
        goto out;
    }
    if (!scsi_check_range(cmd, lba, n))
        goto out;
    /* BYTCHK 00b: a medium verification; the volume checks every block it reads by its
     * checksums, and a thin volume has nothing more to verify. */
    if (bytchk == 0 || n == 0)
        goto out;
    if (n > SCSI_MAX_XFER_BLOCKS) {
        scsi_bad_cdb(cmd, len_byte(cdb[0]), -1);
        goto out;
    }
    struct scsi_io *io = scsi_io_new(cmd, (size_t)n * SCSI_BLOCK);
    if (!io)
        return;
    io->nblocks = n;
    io->flags = bytchk == 1 ? 1 : 3;
    scsi_io_submit(io, VOL_OP_READ, 0, lba * SCSI_BLOCK, (uint64_t)n * SCSI_BLOCK, io->buf,
                   verify_done);
    return;
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* WRITE SAME                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void ws_step(struct scsi_io *io, int res);

static void ws_locked(struct scsi_io *io)
{
    uint64_t off = io->lba * SCSI_BLOCK, len = io->nblocks * SCSI_BLOCK;
    if (!io->buf) {
        /* Zeros: UNMAP=1 deallocates (reads return zeros, LBPRZ); UNMAP=0 keeps the blocks
         * mapped, as SBC-3 asks. */
        if (io->write)
            scsi_io_submit(io, VOL_OP_DISCARD, 0, off, len, NULL, ws_step);
        else
            scsi_io_submit(io, VOL_OP_WRITE_ZEROES, io->flags | VOL_NO_UNMAP, off, len, NULL,
                           ws_step);
        return;
    }
    io->pos = off;
    io->end = off + len;
    ws_step(io, 0);
}

/* A pattern: io->buf holds whole copies of the block; written a chunk at a time. */
static void ws_step(struct scsi_io *io, int res)
{
    if (res < 0) {
        scsi_sense_errno(io->cmd, res, true);
        scsi_io_finish(io);
        return;
    }
    if (!io->buf || io->pos >= io->end) {
        if (io->buf == NULL && io->write && (io->flags & VOL_FUA)) {
            /* A discard has no FUA of its own: follow it with a flush. */
            io->write = false;
            scsi_io_submit(io, VOL_OP_FLUSH, 0, 0, 0, NULL, ws_step);
            return;
        }
        scsi_io_finish(io);
        return;
    }
    uint64_t k = MIN(io->end - io->pos, (uint64_t)io->buf_len);
    uint64_t off = io->pos;
    io->pos += k;
    scsi_io_submit(io, VOL_OP_WRITE, io->flags, off, k, io->buf, ws_step);
}

void sbc_write_same(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    bool sixteen = cdb[0] == OP_WRITE_SAME16;
    uint64_t lba = sixteen ? get_be64(cdb + 2) : get_be32(cdb + 2);
    uint32_t n = sixteen ? get_be32(cdb + 10) : get_be16(cdb + 7);
    unsigned nbyte = sixteen ? 10 : 7;
    bool unmap = cdb[1] & 0x08, ndob = sixteen && (cdb[1] & 0x01);
    if (cdb[1] & 0x10) { /* ANCHOR: anchored blocks are not supported (ANC_SUP 0) */
        scsi_bad_cdb(cmd, 1, 4);
        goto out;
    }
    /* WSNZ 1: zero blocks would mean "to the end of the LU", which one wrong field turns
     * into the loss of everything after the LBA; refused, as many arrays do. */
    if (n == 0 || n > SCSI_MAX_WS_BLOCKS) { /* WSNZ; MAXIMUM WRITE SAME LENGTH */
        scsi_bad_cdb(cmd, nbyte, -1);
        goto out;
    }
    if (!scsi_check_range(cmd, lba, n))
        goto out;
    if (!ndob && cmd->data_out_len != SCSI_BLOCK) {
        /* Exactly one block of Data-Out; more is as wrong as less (scsi_data_out_len has the
         * transport gather all of it). */
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CIU);
        goto out;
    }
    bool zero = ndob || buf_is_zero(cmd->data_out, SCSI_BLOCK);
    uint64_t len = (uint64_t)n * SCSI_BLOCK;
    struct scsi_io *io = scsi_io_new(cmd, zero ? 0 : MIN(len, (uint64_t)SCSI_WS_CHUNK));
    if (!io)
        return;
    if (!zero)
        for (size_t off = 0; off < io->buf_len; off += SCSI_BLOCK)
            memcpy(io->buf + off, cmd->data_out, SCSI_BLOCK);
    io->lba = lba;
    io->nblocks = n;
    io->write = zero && unmap; /* for zeros: deallocate */
    io->flags = lu_wce(cmd->lu) ? 0 : VOL_FUA;
    scsi_io_lock(io, lba, n, false, ws_locked);
    return;
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* UNMAP                                                                                      */
/* ---------------------------------------------------------------------------------------- */

static void unmap_next(struct scsi_io *io, int res)
{
    struct scsi_cmd *cmd = io->cmd;
    if (res < 0) {
        scsi_sense_errno(cmd, res, true);
        scsi_io_finish(io);
        return;
    }
    while (io->idx < io->count) {
        const uint8_t *d = io->param + 8 + 16 * io->idx++;
        uint64_t lba = get_be64(d);
        uint32_t n = get_be32(d + 8);
        if (n)
            return scsi_io_submit(io, VOL_OP_DISCARD, 0, lba * SCSI_BLOCK,
                                  (uint64_t)n * SCSI_BLOCK, NULL, unmap_next);
    }
    if (io->flags & VOL_FUA) {
        io->flags = 0;
        return scsi_io_submit(io, VOL_OP_FLUSH, 0, 0, 0, NULL, unmap_next);
    }
    scsi_io_finish(io);
}

static void unmap_locked(struct scsi_io *io) { unmap_next(io, 0); }

void sbc_unmap(struct scsi_cmd *cmd)
{
    uint32_t len = get_be16(cmd->cdb + 7);
    const uint8_t *p = cmd->data_out;
    if (len == 0)
        goto out;
    if (len < 8) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
        goto out;
    }
    uint32_t udl = get_be16(p), bddl = get_be16(p + 2);
    /* The lengths inside the list must fit in it. */
    if (udl + 2 > len) {
        scsi_bad_param(cmd, 0, -1);
        goto out;
    }
    if (bddl + 8 > len || bddl + 6 > udl) {
        scsi_bad_param(cmd, 2, -1);
        goto out;
    }
    uint32_t count = bddl / 16; /* a partial descriptor at the end is ignored */
    if (count > SCSI_MAX_UNMAP_DESC) {
        scsi_bad_param(cmd, 2, -1);
        goto out;
    }
    uint64_t blocks = scsi_lu_blocks(cmd->lu), total = 0, lo = UINT64_MAX, hi = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *d = p + 8 + 16 * i;
        uint64_t lba = get_be64(d);
        uint32_t n = get_be32(d + 8);
        if (lba > blocks || n > blocks - lba) {
            scsi_sense_lba(cmd);
            goto out;
        }
        total += n;
        if (total > SCSI_MAX_UNMAP_BLOCKS) {
            scsi_bad_param(cmd, 8 + 16 * i + 8, -1);
            goto out;
        }
        if (n) {
            lo = MIN(lo, lba);
            hi = MAX(hi, lba + n);
        }
    }
    if (total == 0)
        goto out;
    struct scsi_io *io = scsi_io_new(cmd, 0);
    if (!io)
        return;
    io->param = p;
    io->count = count;
    io->flags = lu_wce(cmd->lu) ? 0 : VOL_FUA;
    scsi_io_lock(io, lo, hi - lo, false, unmap_locked);
    return;
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* COMPARE AND WRITE                                                                          */
/* ---------------------------------------------------------------------------------------- */

static void caw_read_done(struct scsi_io *io, int res)
{
    struct scsi_cmd *cmd = io->cmd;
    size_t len = io->nblocks * SCSI_BLOCK;
    if (res < 0) {
        scsi_sense_errno(cmd, res, false);
        scsi_io_finish(io);
        return;
    }
    int64_t d = first_diff(io->buf, cmd->data_out, len);
    if (d >= 0) {
        miscompare(cmd, (uint64_t)d);
        scsi_io_finish(io);
        return;
    }
    memcpy(io->buf, (const uint8_t *)cmd->data_out + len, len);
    scsi_io_submit(io, VOL_OP_WRITE, io->flags, io->lba * SCSI_BLOCK, len, io->buf, write_done);
}

static void caw_locked(struct scsi_io *io)
{
    scsi_io_submit(io, VOL_OP_READ, 0, io->lba * SCSI_BLOCK, io->nblocks * SCSI_BLOCK, io->buf,
                   caw_read_done);
}

void sbc_compare_and_write(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    uint64_t lba = get_be64(cdb + 2);
    uint32_t n = cdb[13];
    if (n > SCSI_MAX_CAW_BLOCKS) {
        scsi_bad_cdb(cmd, 13, -1);
        goto out;
    }
    if (!scsi_check_range(cmd, lba, n))
        goto out;
    if (cmd->data_out_len > 2 * n * SCSI_BLOCK) {
        /* More Data-Out than NUMBER OF LOGICAL BLOCKS says (scsi_data_out_len has the
         * transport gather all of it): the field does not describe the data. */
        scsi_bad_cdb(cmd, 13, -1);
        goto out;
    }
    if (cmd->data_out_len != 2 * n * SCSI_BLOCK) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CIU);
        goto out;
    }
    if (n == 0)
        goto out;
    struct scsi_io *io = scsi_io_new(cmd, (size_t)n * SCSI_BLOCK);
    if (!io)
        return;
    io->lba = lba;
    io->nblocks = n;
    io->flags = (cdb[1] & 0x08) || !lu_wce(cmd->lu) ? VOL_FUA : 0;
    scsi_io_lock(io, lba, n, true, caw_locked);
    return;
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* ORWRITE                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* ORWRITE(16) (SBC-4 5.10): each block becomes the bitwise OR of itself and the Data-Out,
 * read and written under an exclusive range lock like COMPARE AND WRITE, so no write through
 * the LU lands between the read and the write. */
static void orwrite_read_done(struct scsi_io *io, int res)
{
    if (res < 0) {
        scsi_sense_errno(io->cmd, res, false);
        scsi_io_finish(io);
        return;
    }
    const uint8_t *d = io->cmd->data_out;
    size_t len = io->nblocks * SCSI_BLOCK;
    for (size_t i = 0; i < len; i++)
        io->buf[i] |= d[i];
    scsi_io_submit(io, VOL_OP_WRITE, io->flags, io->lba * SCSI_BLOCK, len, io->buf, write_done);
}

static void orwrite_locked(struct scsi_io *io)
{
    scsi_io_submit(io, VOL_OP_READ, 0, io->lba * SCSI_BLOCK, io->nblocks * SCSI_BLOCK, io->buf,
                   orwrite_read_done);
}

void sbc_orwrite(struct scsi_cmd *cmd)
{
    const uint8_t *cdb = cmd->cdb;
    uint64_t lba;
    uint32_t n;
    sbc_decode_rw(cdb, &lba, &n);
    if (!scsi_check_range(cmd, lba, n))
        goto out;
    if (n > SCSI_MAX_XFER_BLOCKS) {
        scsi_bad_cdb(cmd, len_byte(cdb[0]), -1);
        goto out;
    }
    if (n == 0)
        goto out;
    struct scsi_io *io = scsi_io_new(cmd, (size_t)n * SCSI_BLOCK);
    if (!io)
        return;
    io->lba = lba;
    io->nblocks = n;
    io->flags = (cdb[1] & 0x08) || !lu_wce(cmd->lu) ? VOL_FUA : 0;
    scsi_io_lock(io, lba, n, true, orwrite_locked);
    return;
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* GET LBA STATUS                                                                             */
/* ---------------------------------------------------------------------------------------- */

#define LBA_STATUS_MAX_DESC 64

void sbc_get_lba_status(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    uint64_t lba = get_be64(cmd->cdb + 2);
    uint32_t alloc = get_be32(cmd->cdb + 10);
    uint64_t blocks = scsi_lu_blocks(lu);
    if (lba >= blocks) {
        scsi_sense_lba(cmd);
        scsi_complete(cmd);
        return;
    }
    size_t max = alloc > 8 ? MIN((size_t)(alloc - 8) / 16, (size_t)LBA_STATUS_MAX_DESC) : 0;
    max = MAX(max, (size_t)1);
    struct vol_extent ext[LBA_STATUS_MAX_DESC];
    size_t n = 0;
    int r = vol_block_status(lu->vol, lba * SCSI_BLOCK, (blocks - lba) * SCSI_BLOCK, ext, max,
                             &n);
    if (r == 0 && n == 0)
        r = -EIO;
    if (r < 0) {
        scsi_sense_errno(cmd, r, false);
        scsi_complete(cmd);
        return;
    }
    uint8_t b[8 + 16 * LBA_STATUS_MAX_DESC];
    memset(b, 0, sizeof b);
    size_t used = 0;
    uint64_t pos = lba;
    for (size_t i = 0; i < n && used < max; i++) {
        uint64_t s = ext[i].offset / SCSI_BLOCK, e = (ext[i].offset + ext[i].length) / SCSI_BLOCK;
        if (s != pos || e <= s)
            break;
        uint8_t *d = b + 8 + 16 * used++;
        uint64_t cnt = MIN(e - s, (uint64_t)UINT32_MAX);
        put_be64(d, s);
        put_be32(d + 8, (uint32_t)cnt);
        d[12] = (ext[i].flags & VOL_EXT_HOLE) ? 0x01 : 0x00; /* deallocated : mapped */
        pos = s + cnt;
    }
    put_be32(b, (uint32_t)(4 + 16 * used));
    scsi_data_in(cmd, b, 8 + 16 * used);
    scsi_complete(cmd);
}
