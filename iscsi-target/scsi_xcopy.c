/*
 * scsi_xcopy.c - EXTENDED COPY (LID1, SPC-4 6.4) and RECEIVE COPY RESULTS (operating
 * parameters, copy status).
 *
 * What is accepted: identification target descriptors (E4h) naming block LUs of this
 * process by their NAA designator (the registry in scsi_lu.c), and block-to-block segment
 * descriptors (02h). The whole parameter list is checked before any block moves: lengths,
 * descriptor counts and codes, target indexes, every segment's range on both LUs, and write
 * protection of every destination. Then the segments run in order, each under the destination
 * LU's range lock (so COMPARE AND WRITE stays atomic there too). A segment between volumes of
 * one pool, in whole grains, is copied by sharing (vol_copy_submit: the destination is mapped
 * to the source's data, nothing moves), all at once; any other is read from the source and
 * written to the destination a chunk at a time.
 *
 * Errors after the list was accepted are COPY ABORTED, with the segment reached; the outcome
 * is kept (per LU, the last XCOPY_STATUS_KEEP lists that asked for it) for RECEIVE COPY
 * RESULTS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/scsi-priv.h"

#define XCOPY_MAX_TGT 16
#define XCOPY_MAX_SEG 64
#define XCOPY_MAX_LIST_LEN 2048                  /* bytes of descriptors */
#define XCOPY_MAX_SEG_BLOCKS 65535u              /* the 16-bit field's limit */
#define XCOPY_CHUNK (1u << 20)

#define XD_TARGET_IDENT 0xE4
#define XD_SEG_B2B 0x02

struct xseg {
    unsigned src, dst; /* target indexes */
    uint64_t src_lba, dst_lba;
    uint32_t n;
};

struct xcopy {
    struct scsi_lu *tgt[XCOPY_MAX_TGT]; /* held (scsi_lu_put) */
    unsigned ntgt;
    struct xseg seg[XCOPY_MAX_SEG];
    unsigned nseg;
    unsigned cur;       /* segment running */
    uint64_t done;      /* blocks of it copied */
    uint64_t chunk;     /* blocks in flight */
    uint64_t at;        /* where they are in the segment */
    uint64_t bytes;     /* copied in all */
    uint8_t list_id;
    bool keep_status;
    bool no_share;      /* the current segment cannot be shared: move its data */
    struct vol_copy vc; /* a copy by sharing in flight */
    struct scsi_io *io;
};

/* ---------------------------------------------------------------------------------------- */
/* RECEIVE COPY RESULTS                                                                       */
/* ---------------------------------------------------------------------------------------- */

static void copy_status_record(struct scsi_cmd *cmd, const struct xcopy *x, bool ok)
{
    if (!x->keep_status || !cmd->nx)
        return;
    struct scsi_lu *lu = cmd->lu;
    SCOPED_LOCK(&lu->lock);
    struct xcopy_status *st = NULL;
    for (unsigned i = 0; i < XCOPY_STATUS_KEEP; i++)
        if (lu->xstat[i].used && lu->xstat[i].list_id == x->list_id &&
            strcmp(lu->xstat[i].initiator, cmd->nx->initiator_port) == 0)
            st = &lu->xstat[i];
    if (!st)
        st = &lu->xstat[lu->xstat_next++ % XCOPY_STATUS_KEEP];
    st->used = true;
    snprintf(st->initiator, sizeof(st->initiator), "%s", cmd->nx->initiator_port);
    st->list_id = x->list_id;
    st->status = ok ? 0x01 : 0x02;
    st->segments = (uint16_t)x->cur;
    st->bytes = x->bytes;
}

void xcopy_receive_copy_results(struct scsi_cmd *cmd)
{
    uint8_t sa = cmd->cdb[1] & 0x1F;
    uint8_t b[64] = {0};
    size_t n;
    if (sa == SA_RCR_OPERATING_PARAMS) {
        put_be16(b + 8, XCOPY_MAX_TGT);
        put_be16(b + 10, XCOPY_MAX_SEG);
        put_be32(b + 12, XCOPY_MAX_LIST_LEN);
        put_be32(b + 16, XCOPY_MAX_SEG_BLOCKS * SCSI_BLOCK); /* maximum segment length */
        put_be32(b + 20, 0);                                 /* no inline data */
        put_be32(b + 24, 0);                                 /* no held data */
        put_be16(b + 34, 1);                                 /* total concurrent copies */
        b[36] = 1;
        b[37] = SCSI_BLOCK_SHIFT; /* data segment granularity: 2^9 */
        b[43] = 2;                /* implemented descriptors: */
        b[44] = XD_SEG_B2B;
        b[45] = XD_TARGET_IDENT;
        n = 46;
        put_be32(b, (uint32_t)(n - 4));
    } else {
        /* COPY STATUS of the list named in byte 2, for this initiator. */
        struct scsi_lu *lu = cmd->lu;
        uint8_t id = cmd->cdb[2];
        struct xcopy_status st = {0};
        pthread_mutex_lock(&lu->lock);
        for (unsigned i = 0; i < XCOPY_STATUS_KEEP && cmd->nx; i++)
            if (lu->xstat[i].used && lu->xstat[i].list_id == id &&
                strcmp(lu->xstat[i].initiator, cmd->nx->initiator_port) == 0)
                st = lu->xstat[i];
        pthread_mutex_unlock(&lu->lock);
        if (!st.used) {
            scsi_bad_cdb(cmd, 2, -1);
            scsi_complete(cmd);
            return;
        }
        put_be32(b, 8);
        b[4] = st.status;
        put_be16(b + 5, st.segments);
        b[7] = 0xF1; /* transfer count in KiB */
        put_be32(b + 8, (uint32_t)MIN(st.bytes >> 10, (uint64_t)UINT32_MAX));
        n = 12;
    }
    scsi_data_in(cmd, b, n);
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* EXTENDED COPY                                                                              */
/* ---------------------------------------------------------------------------------------- */

static void xcopy_free(struct xcopy *x)
{
    if (!x)
        return;
    for (unsigned i = 0; i < x->ntgt; i++)
        if (x->tgt[i])
            scsi_lu_put(x->tgt[i]);
    free(x);
}

/* COPY ABORTED with @asc, the segment reached in COMMAND-SPECIFIC INFORMATION. */
static void copy_aborted(struct scsi_cmd *cmd, uint16_t asc, unsigned segment)
{
    struct scsi_sense_spec s = {.key = SK_COPY_ABORTED, .asc = asc};
    scsi_sense_spec(cmd, &s);
    if (cmd->sense[0] == 0x70 || cmd->sense[0] == 0xF0)
        put_be32(cmd->sense + 8, segment);
}

static void copy_aborted_errno(struct scsi_cmd *cmd, int err, bool write, unsigned segment)
{
    uint16_t asc = ASC_INTERNAL_TARGET_FAILURE;
    if (err == -EIO)
        asc = write ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ_ERROR;
    else if (err == -ENOSPC)
        asc = ASC_SPACE_ALLOC_FAILED_WP;
    else if (err == -EROFS)
        asc = ASC_WRITE_PROTECTED;
    copy_aborted(cmd, asc, segment);
}

static void xcopy_finish(struct scsi_io *io, bool ok)
{
    struct xcopy *x = io->ctx;
    copy_status_record(io->cmd, x, ok);
    io->ctx = NULL;
    xcopy_free(x);
    scsi_io_finish(io);
}

static void xcopy_next(struct scsi_io *io);

static void chunk_written(struct scsi_io *io, int res)
{
    struct xcopy *x = io->ctx;
    scsi_io_unlock(io);
    if (res < 0) {
        copy_aborted_errno(io->cmd, res, true, x->cur);
        xcopy_finish(io, false);
        return;
    }
    x->done += x->chunk;
    x->bytes += x->chunk * SCSI_BLOCK;
    xcopy_next(io);
}

static void chunk_dst_locked(struct scsi_io *io)
{
    struct xcopy *x = io->ctx;
    const struct xseg *s = &x->seg[x->cur];
    struct scsi_lu *dl = x->tgt[s->dst];
    pthread_mutex_lock(&dl->lock);
    uint32_t flags = dl->mode.wce ? 0 : VOL_FUA;
    pthread_mutex_unlock(&dl->lock);
    io->vol = dl->vol;
    scsi_io_submit(io, VOL_OP_WRITE, flags, (s->dst_lba + x->at) * SCSI_BLOCK,
                   x->chunk * SCSI_BLOCK, io->buf, chunk_written);
}

static void chunk_read(struct scsi_io *io, int res)
{
    struct xcopy *x = io->ctx;
    const struct xseg *s = &x->seg[x->cur];
    if (res < 0) {
        copy_aborted_errno(io->cmd, res, false, x->cur);
        xcopy_finish(io, false);
        return;
    }
    scsi_io_lock_on(io, x->tgt[s->dst], s->dst_lba + x->at, x->chunk, false,
                    chunk_dst_locked);
}

/* Copies the next chunk of the current segment by moving its data. */
static void copy_chunk_data(struct scsi_io *io)
{
    struct xcopy *x = io->ctx;
    const struct xseg *s = &x->seg[x->cur];
    x->chunk = MIN((uint64_t)(s->n - x->done), (uint64_t)(XCOPY_CHUNK / SCSI_BLOCK));
    /* A segment reads as if read whole before it is written: when it moves forward over
     * itself, the chunks go from its end. */
    bool backward = x->tgt[s->src] == x->tgt[s->dst] && s->dst_lba > s->src_lba &&
                    s->dst_lba < s->src_lba + s->n;
    x->at = backward ? s->n - x->done - x->chunk : x->done;
    io->vol = x->tgt[s->src]->vol;
    scsi_io_submit(io, VOL_OP_READ, 0, (s->src_lba + x->at) * SCSI_BLOCK,
                   x->chunk * SCSI_BLOCK, io->buf, chunk_read);
}

static void shared(struct vol_copy *vc, int res)
{
    struct xcopy *x = container_of(vc, struct xcopy, vc);
    struct scsi_io *io = x->io;
    if (res == -EXDEV) { /* not in whole grains of one pool: move the data */
        scsi_io_unlock(io);
        x->no_share = true;
        copy_chunk_data(io);
        return;
    }
    chunk_written(io, res);
}

static void share_dst_locked(struct scsi_io *io)
{
    struct xcopy *x = io->ctx;
    const struct xseg *s = &x->seg[x->cur];
    x->vc = (struct vol_copy){.dst = x->tgt[s->dst]->vol,
                              .src = x->tgt[s->src]->vol,
                              .dst_off = s->dst_lba * SCSI_BLOCK,
                              .src_off = s->src_lba * SCSI_BLOCK,
                              .len = (uint64_t)s->n * SCSI_BLOCK,
                              .done = shared};
    x->io = io;
    vol_copy_submit(&x->vc);
}

/* Copies what is left of the current segment: by sharing when it starts whole (the volume
 * layer says whether it can), else a chunk by moving data. */
static void copy_chunk(struct scsi_io *io)
{
    struct xcopy *x = io->ctx;
    const struct xseg *s = &x->seg[x->cur];
    if (x->done > 0 || x->no_share) {
        copy_chunk_data(io);
        return;
    }
    x->chunk = s->n;
    scsi_io_lock_on(io, x->tgt[s->dst], s->dst_lba, s->n, false, share_dst_locked);
}

static void xcopy_next(struct scsi_io *io)
{
    struct xcopy *x = io->ctx;
    while (x->cur < x->nseg && x->done >= x->seg[x->cur].n) {
        x->cur++;
        x->done = 0;
        x->no_share = false;
    }
    if (x->cur == x->nseg) {
        xcopy_finish(io, true);
        return;
    }
    copy_chunk(io);
}

/* Parses and checks the parameter list into @x; false with the sense set when refused. */
static bool xcopy_parse(struct scsi_cmd *cmd, struct xcopy *x)
{
    const uint8_t *p = cmd->data_out;
    uint32_t len = get_be32(cmd->cdb + 10);
    if (len < 16 || len > 16 + XCOPY_MAX_LIST_LEN) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
        return false;
    }
    x->list_id = p[0];
    /* LIST ID USAGE 11b: the initiator will not ask for the status. */
    x->keep_status = ((p[1] >> 3) & 3) != 3;
    uint32_t tdl = get_be16(p + 2), sdl = get_be32(p + 8), idl = get_be32(p + 12);
    if ((uint64_t)16 + tdl + sdl + idl > len) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
        return false;
    }
    if (idl) { /* no inline data (MAXIMUM INLINE DATA LENGTH 0) */
        scsi_bad_param(cmd, 12, -1);
        return false;
    }
    if (tdl % 32) {
        scsi_bad_param(cmd, 2, -1);
        return false;
    }
    if (tdl / 32 > XCOPY_MAX_TGT) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_TOO_MANY_TARGET_DESC);
        return false;
    }
    x->ntgt = tdl / 32;
    for (unsigned i = 0; i < x->ntgt; i++) {
        unsigned off = 16 + 32 * i;
        const uint8_t *d = p + off;
        if (d[0] != XD_TARGET_IDENT) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_UNSUPPORTED_TARGET_DESC);
            return false;
        }
        /* LU ID TYPE is ignored (SPC-4); a block device only; 512-byte blocks. */
        if ((d[1] & 0x1F) != 0) {
            scsi_bad_param(cmd, off + 1, 4);
            return false;
        }
        if (get_be24(d + 29) != SCSI_BLOCK) {
            scsi_bad_param(cmd, off + 29, -1);
            return false;
        }
        /* The designation descriptor: an NAA designator of our length names one of ours;
         * anything else names a device we cannot reach (found out below, when used). */
        const uint8_t *dd = d + 4;
        if ((dd[1] & 0x0F) == 3 && dd[3] == SCSI_NAA_LEN)
            x->tgt[i] = scsi_lu_lookup_naa(dd + 4);
    }
    unsigned off = 16 + tdl, end = 16 + tdl + sdl;
    while (off < end) {
        if (end - off < 4) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
            return false;
        }
        const uint8_t *d = p + off;
        if (d[0] != XD_SEG_B2B) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_UNSUPPORTED_SEGMENT_DESC);
            return false;
        }
        if (get_be16(d + 2) != 0x18) {
            scsi_bad_param(cmd, off + 2, -1);
            return false;
        }
        if (end - off < 28) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
            return false;
        }
        if (x->nseg == XCOPY_MAX_SEG) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_TOO_MANY_SEGMENT_DESC);
            return false;
        }
        struct xseg *s = &x->seg[x->nseg];
        s->src = get_be16(d + 4);
        s->dst = get_be16(d + 6);
        s->n = get_be16(d + 10);
        s->src_lba = get_be64(d + 12);
        s->dst_lba = get_be64(d + 20);
        x->nseg++;
        off += 28;
    }
    /* Targets and ranges, before anything is copied. */
    for (unsigned i = 0; i < x->nseg; i++) {
        const struct xseg *s = &x->seg[i];
        if (s->src >= x->ntgt || s->dst >= x->ntgt || !x->tgt[s->src] || !x->tgt[s->dst]) {
            copy_aborted(cmd, ASC_COPY_TARGET_NOT_REACHABLE, i);
            return false;
        }
        uint64_t sb = scsi_lu_blocks(x->tgt[s->src]), db = scsi_lu_blocks(x->tgt[s->dst]);
        if (s->src_lba > sb || s->n > sb - s->src_lba || s->dst_lba > db ||
            s->n > db - s->dst_lba) {
            copy_aborted(cmd, ASC_NO_ADDITIONAL, i);
            return false;
        }
        struct scsi_lu *dl = x->tgt[s->dst];
        bool swp;
        pthread_mutex_lock(&dl->lock);
        swp = dl->mode.swp;
        pthread_mutex_unlock(&dl->lock);
        if (s->n && (dl->readonly || swp)) {
            scsi_sense(cmd, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
            return false;
        }
    }
    return true;
}

void xcopy_extended_copy(struct scsi_cmd *cmd)
{
    if (get_be32(cmd->cdb + 10) == 0) {
        scsi_complete(cmd);
        return;
    }
    struct xcopy *x = calloc(1, sizeof(*x));
    if (!x) {
        scsi_sense_errno(cmd, -ENOMEM, false);
        scsi_complete(cmd);
        return;
    }
    if (!xcopy_parse(cmd, x)) {
        copy_status_record(cmd, x, false);
        xcopy_free(x);
        scsi_complete(cmd);
        return;
    }
    struct scsi_io *io = scsi_io_new(cmd, XCOPY_CHUNK);
    if (!io) {
        xcopy_free(x);
        return;
    }
    io->ctx = x;
    xcopy_next(io);
}
