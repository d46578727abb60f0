/*
 * scsi_sense.c - sense data: fixed format (SPC-4 4.5.3) by default, descriptor format
 * (4.5.2) when the control mode page has D_SENSE set; and the sense for a volume error.
 *
 * Fixed format carries a 32-bit INFORMATION field: a larger value is left out there (VALID
 * clear), as SPC-4 requires, while the descriptor format always has room for 64 bits.
 */
#include <errno.h>
#include <string.h>

#include "iscsi-target/scsi-priv.h"

uint32_t scsi_sense_encode(uint8_t *b, const struct scsi_sense_spec *s, bool descriptor)
{
    memset(b, 0, 32);
    if (!descriptor) {
        b[0] = 0x70;
        if (s->info_valid && s->info <= UINT32_MAX) {
            b[0] |= 0x80;
            put_be32(b + 3, (uint32_t)s->info);
        }
        b[2] = s->key & 0x0F;
        b[7] = 10; /* additional sense length */
        b[12] = (uint8_t)(s->asc >> 8);
        b[13] = (uint8_t)s->asc;
        if (s->sks_valid) {
            b[15] = s->sks[0] | 0x80;
            b[16] = s->sks[1];
            b[17] = s->sks[2];
        }
        return 18;
    }
    b[0] = 0x72;
    b[1] = s->key & 0x0F;
    b[2] = (uint8_t)(s->asc >> 8);
    b[3] = (uint8_t)s->asc;
    uint32_t n = 8;
    if (s->info_valid) {
        /* Information descriptor: type 0, length 0x0A, VALID, INFORMATION(8) */
        b[n] = 0x00;
        b[n + 1] = 0x0A;
        b[n + 2] = 0x80;
        put_be64(b + n + 4, s->info);
        n += 12;
    }
    if (s->sks_valid) {
        /* Sense key specific descriptor: type 2, length 6, SKSV + 3 bytes */
        b[n] = 0x02;
        b[n + 1] = 0x06;
        b[n + 4] = s->sks[0] | 0x80;
        b[n + 5] = s->sks[1];
        b[n + 6] = s->sks[2];
        n += 8;
    }
    b[7] = (uint8_t)(n - 8);
    return n;
}

bool scsi_lu_d_sense(struct scsi_lu *lu)
{
    if (!lu)
        return false;
    SCOPED_LOCK(&lu->lock);
    return lu->mode.d_sense;
}

void scsi_sense_spec(struct scsi_cmd *cmd, const struct scsi_sense_spec *s)
{
    cmd->status = SCSI_CHECK_CONDITION;
    cmd->sense_len = scsi_sense_encode(cmd->sense, s, scsi_lu_d_sense(cmd->lu));
    cmd->data_in_len = 0;
}

void scsi_sense(struct scsi_cmd *cmd, uint8_t key, uint16_t asc)
{
    struct scsi_sense_spec s = {.key = key, .asc = asc};
    scsi_sense_spec(cmd, &s);
}

void scsi_sense_field(struct scsi_cmd *cmd, bool in_cdb, unsigned byte, int bit)
{
    struct scsi_sense_spec s = {
        .key = SK_ILLEGAL_REQUEST,
        .asc = in_cdb ? ASC_INVALID_FIELD_IN_CDB : ASC_INVALID_FIELD_IN_PARAM,
        .sks_valid = true,
    };
    /* Field pointer: C/D (bit 6), BPV (bit 3), BIT POINTER (2..0), FIELD POINTER (16). */
    s.sks[0] = (uint8_t)((in_cdb ? 0x40 : 0) | (bit >= 0 ? 0x08 | (bit & 7) : 0));
    put_be16(s.sks + 1, (uint16_t)MIN(byte, 0xFFFFu));
    scsi_sense_spec(cmd, &s);
}

void scsi_sense_lba(struct scsi_cmd *cmd)
{
    scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
}

void scsi_sense_errno(struct scsi_cmd *cmd, int err, bool write)
{
    switch (err) {
    case -EIO:
        scsi_sense(cmd, SK_MEDIUM_ERROR, write ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ_ERROR);
        return;
    case -ENOSPC:
    case -EDQUOT:
        scsi_sense(cmd, SK_DATA_PROTECT, ASC_SPACE_ALLOC_FAILED_WP);
        return;
    case -EROFS:
    case -EPERM:
        scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
        return;
    case -EINVAL:
        /* The volume refused a range we checked: it shrank under the command. */
        scsi_sense_lba(cmd);
        return;
    case -ENOMEM:
    case -EAGAIN:
        cmd->status = SCSI_BUSY;
        cmd->sense_len = 0;
        cmd->data_in_len = 0;
        return;
    default:
        scsi_sense(cmd, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
        return;
    }
}
