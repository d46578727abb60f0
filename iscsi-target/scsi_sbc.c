/*
 * scsi_sbc.c - the block commands (SBC-3) on the LU's volume: READ CAPACITY, READ and WRITE
 * (6/10/12/16), WRITE AND VERIFY, VERIFY, SYNCHRONIZE CACHE, WRITE SAME, UNMAP, COMPARE AND
 * WRITE and GET LBA STATUS.
 *
 * Logical blocks are 512 bytes; the volume's grain is the physical block (READ CAPACITY 16
 * exponent) and the unmap granularity. Each command is checked completely (range, transfer
 * limits, field values) before anything reaches the volume, then runs as a short chain of
 * vol_submit() steps on a struct scsi_io. Data buffers given to the volume are 4096-aligned:
 * Data-In and Data-Out are used in place when aligned and large enough, else through the
 * I/O's own buffer.
 *
 * Writes hold a shared range lock for their blocks, COMPARE AND WRITE an exclusive one
 * (scsi_lu.c), so the compare and the write of a COMPARE AND WRITE are atomic against every
 * write through the LU. With the caching page's WCE cleared every write carries VOL_FUA.
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
    struct scsi_io *io = scsi_io_new(cmd, 0);
    if (!io)
        return;
    if (cdb[1] & 0x02) {
        /* IMMED: GOOD now; the flush runs on, holding the LU, and its error (if any) can
         * only be logged. */
        io->detached = true;
        scsi_lu_get(cmd->lu);
        io->cmd = NULL;
        scsi_complete(cmd);
    }
    scsi_io_submit(io, VOL_OP_FLUSH, 0, 0, 0, NULL, sync_done);
}
