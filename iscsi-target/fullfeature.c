/*
 * fullfeature.c - the full feature phase: SCSI commands with their Data-Out (immediate,
 * unsolicited, solicited by R2T) and their Data-In and status; NOP-Out and NOP-In both
 * ways; Text (SendTargets); task management; logout.
 *
 * A task (one SCSI command) goes
 *   DATA_OUT  gathering Data-Out: immediate data with the command, unsolicited Data-Out
 *             PDUs until the command's F bit says none follow (or their F bit ends them),
 *             then R2Ts of at most MaxBurstLength each, MaxOutstandingR2T at a time, for
 *             what the command needs: min(EDTL, the CDB's transfer length)   -> READY
 *   READY     waiting for its CmdSN turn (commands are delivered in CmdSN order) and for its
 *             LUN to be looked up (session.c)                                 -> RUNNING
 *   RUNNING   in the SCSI layer (scsi_submit); done() is brought back to our reactor
 *                                                                             -> SENDING
 *   SENDING   Data-In PDUs (at most the initiator's MaxRecvDataSegmentLength each; the
 *             status rides in the last one when there is no sense data) or a SCSI Response
 *             with sense data and residuals (RFC 7143 11.4.5); freed once sent.
 *
 * Data-Out must arrive in order (DataPDUInOrder and DataSequenceInOrder are Yes): each
 * PDU's offset, DataSN and Target Transfer Tag are checked against the one sequence that
 * may continue; anything else is a protocol error that ends the connection at error
 * recovery level 0. Data-Out for a task we do not know (one that was aborted) is dropped.
 *
 * CmdSN: numbered PDUs outside [ExpCmdSN, MaxCmdSN] are dropped silently (RFC 7143
 * 4.2.2.1); a command ahead of ExpCmdSN waits until the gap is filled. MaxCmdSN is ExpCmdSN
 * plus the free slots of a window of ISCSI_CMD_WINDOW commands, and never goes back.
 *
 * Task management aborts tasks of this session: a task still gathering data is freed at
 * once; a task in the SCSI layer finishes there, its response is dropped, and the TMF
 * response waits for it (libiscsi's AbortTaskSimpleAsync wants no response for a task
 * whose abort succeeded).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/iscsi-priv.h"

static struct iscsi_task *task_find(struct iscsi_conn *c, uint32_t itt)
{
    struct iscsi_task *t;
    TAILQ_FOREACH(t, &c->tasks, link)
    {
        if (t->itt == itt)
            return t;
    }
    return NULL;
}

static void update_max_cmdsn(struct iscsi_conn *c)
{
    uint32_t cand = c->exp_cmdsn + ISCSI_CMD_WINDOW - 1 - c->nwindow;
    if (sn_lt(c->max_cmdsn, cand))
        c->max_cmdsn = cand;
}

static void leave_window(struct iscsi_task *t)
{
    if (!t->in_window)
        return;
    t->in_window = false;
    t->c->nwindow--;
    update_max_cmdsn(t->c);
}

static bool in_window(struct iscsi_conn *c, uint32_t sn)
{
    return sn_le(c->exp_cmdsn, sn) && sn_le(sn, c->max_cmdsn);
}

static void try_run(struct iscsi_task *t);

/* ExpCmdSN reached @sn's successor: deliver commands that were waiting for their turn. */
static void cmdsn_advance(struct iscsi_conn *c)
{
    bool again = true;
    while (again) {
        again = false;
        struct iscsi_task *t;
        TAILQ_FOREACH(t, &c->tasks, link)
        {
            if (!t->ordered && !t->immediate && t->cmdsn == c->exp_cmdsn) {
                t->ordered = true;
                c->exp_cmdsn++;
                again = true;
                try_run(t);
                break;
            }
        }
    }
    update_max_cmdsn(c);
}

/* A numbered non-command PDU (NOP-Out, Text, TMF, Logout without the I bit). Returns false
 * when it is out of the window and must be dropped. */
static bool take_cmdsn(struct iscsi_conn *c, const uint8_t *bhs)
{
    if (bhs[0] & ISCSI_FLAG_IMMEDIATE)
        return true;
    uint32_t sn = iscsi_get32(bhs + 24);
    if (!in_window(c, sn)) {
        log_debug("iscsi: %s: CmdSN %u outside [%u, %u]: dropped", c->peer, sn, c->exp_cmdsn,
                  c->max_cmdsn);
        return false;
    }
    if (sn == c->exp_cmdsn) {
        c->exp_cmdsn++;
        cmdsn_advance(c);
    }
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Tasks
 */

static void logout_respond(struct iscsi_conn *c);

void iscsi_task_free(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    TAILQ_REMOVE(&c->tasks, t, link);
    if (t->waiting) {
        TAILQ_REMOVE(&t->slu->waiting, t, wlink);
        t->waiting = false;
    }
    leave_window(t);
    if (t->immediate)
        c->nimmediate--;
    c->inflight_bytes -= t->charged;
    c->ntasks--;
    free(t->out);
    free(t->in);
    free(t);
    if (c->phase == PH_LOGOUT && c->ntasks == 0)
        logout_respond(c);
    if (c->s.state == STREAM_CLOSING)
        stream_check_closing(&c->s);
}

/* Fixed-format sense: ILLEGAL REQUEST with @asc/@ascq, for what the transport refuses. */
static void set_sense(struct iscsi_task *t, uint8_t key, uint8_t asc, uint8_t ascq)
{
    t->sc.status = SCSI_CHECK_CONDITION;
    memset(t->sc.sense, 0, 18);
    t->sc.sense[0] = 0x70;
    t->sc.sense[2] = key;
    t->sc.sense[7] = 10;
    t->sc.sense[12] = asc;
    t->sc.sense[13] = ascq;
    t->sc.sense_len = 18;
}

static void send_response(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    struct scsi_cmd *sc = &t->sc;
    uint8_t h[ISCSI_BHS_SIZE];
    uint8_t rflags = 0;
    uint32_t residual = 0;

    t->state = TS_SENDING;
    leave_window(t);
    if (sc->data_in_len > sc->data_in_max)
        sc->data_in_len = sc->data_in_max; /* never more than the buffer holds */
    if (sc->sense_len > SCSI_SENSE_MAX)
        sc->sense_len = SCSI_SENSE_MAX;
    /* Residuals (RFC 7143 11.4.5): against the CDB's length, and for reads against what was
     * actually transferred. */
    uint32_t edtl = t->edtl;
    if (sc->xfer_len > edtl) {
        rflags = RSP_FLAG_OVERFLOW;
        residual = sc->xfer_len - edtl;
    } else if (t->rd && !t->wr && sc->data_in_len < edtl) {
        rflags = RSP_FLAG_UNDERFLOW;
        residual = edtl - sc->data_in_len;
    } else if (!t->rd && sc->xfer_len < edtl) {
        rflags = RSP_FLAG_UNDERFLOW;
        residual = edtl - sc->xfer_len;
    }

    uint32_t len = t->rd ? sc->data_in_len : 0;
    bool status_in_data = len > 0 && sc->sense_len == 0;
    uint32_t seg = MIN(c->p.mrdsl_out, ISCSI_MAX_RECV_SEGMENT);
    uint32_t burst = c->p.max_burst;
    for (uint32_t off = 0; off < len;) {
        uint32_t n = MIN(seg, len - off);
        uint32_t burst_end = (off / burst + 1) * burst;
        if (off + n > burst_end)
            n = burst_end - off;
        bool last = off + n == len;
        memset(h, 0, sizeof h);
        h[0] = ISCSI_OP_DATA_IN;
        if (last || off + n == burst_end)
            h[1] |= ISCSI_FLAG_FINAL;
        iscsi_lun_encode(h + BHS_LUN, t->lun);
        iscsi_put32(h + BHS_ITT, t->itt);
        iscsi_put32(h + DATA_TTT, ISCSI_RSVD_TAG);
        if (last && status_in_data) {
            h[1] |= DATA_FLAG_STATUS | rflags;
            h[3] = sc->status;
            iscsi_fill_sn(c, h, true);
            iscsi_put32(h + DATA_RESIDUAL, residual);
        } else {
            iscsi_fill_sn(c, h, false);
            iscsi_put32(h + DATA_STATSN, 0);
        }
        iscsi_put32(h + DATA_DATASN, t->datasn_in++);
        iscsi_put32(h + DATA_OFFSET, off);
        off += n;
        if (last && status_in_data) {
            iscsi_send_pdu(c, h, t->in + off - n, n, false, t);
            stream_flush(&c->s);
            return;
        }
        iscsi_send_pdu(c, h, t->in + off - n, n, false, NULL);
    }
    memset(h, 0, sizeof h);
    h[0] = ISCSI_OP_SCSI_RSP;
    h[1] = ISCSI_FLAG_FINAL | rflags;
    h[RSP_RESPONSE] = ISCSI_RESPONSE_COMPLETED;
    h[RSP_STATUS] = sc->status;
    iscsi_put32(h + BHS_ITT, t->itt);
    iscsi_fill_sn(c, h, true);
    iscsi_put32(h + RSP_EXPDATASN, t->rd ? t->datasn_in : t->r2tsn);
    iscsi_put32(h + RSP_RESIDUAL, residual);
    if (sc->sense_len) {
        uint8_t sense[2 + SCSI_SENSE_MAX];
        iscsi_put16(sense, (uint16_t)sc->sense_len);
        memcpy(sense + 2, sc->sense, sc->sense_len);
        iscsi_send_pdu(c, h, sense, 2 + sc->sense_len, true, t);
    } else {
        iscsi_send_pdu(c, h, NULL, 0, false, t);
    }
    stream_flush(&c->s);
}

static void tmf_respond(struct iscsi_conn *c, struct iscsi_tmf *tmf);

static void task_done_work(struct reactor_work *w)
{
    struct iscsi_task *t = container_of(w, struct iscsi_task, done_work);
    struct iscsi_conn *c = t->c;
    stream_enter(&c->s);
    if (t->aborted || c->s.state == STREAM_DEAD || c->phase == PH_LOGIN) {
        struct iscsi_tmf *tmf = t->tmf;
        iscsi_task_free(t);
        if (tmf && --tmf->waiting == 0) {
            tmf_respond(c, tmf);
            free(tmf);
        }
    } else {
        send_response(t);
    }
    stream_leave(&c->s);
}

static void task_done(struct scsi_cmd *sc)
{
    struct iscsi_task *t = sc->priv;
    /* done() may run on another reactor, or inside scsi_submit: always come back through
     * our reactor's queue. */
    t->done_work.fn = task_done_work;
    pool_reactor_post(t->c->reactor, &t->done_work);
}

/* Answers a task without the SCSI layer (a transport refusal). */
static void task_answer(struct iscsi_task *t, uint8_t status)
{
    t->sc.status = status;
    t->sc.xfer_len = 0;
    t->sc.data_in_len = 0;
    if (status != SCSI_CHECK_CONDITION)
        t->sc.sense_len = 0;
    t->state = TS_RUNNING;
    task_done(&t->sc);
}

void iscsi_task_run(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    struct iscsi_binding *b = t->slu ? t->slu->b : NULL;
    if (t->in_size) {
        size_t sz = ROUND_UP((size_t)t->in_size, 4096);
        if (c->inflight_bytes + sz > ISCSI_MAX_INFLIGHT_BYTES && c->inflight_bytes > 0) {
            task_answer(t, SCSI_TASK_SET_FULL);
            return;
        }
        t->in = aligned_alloc(4096, sz);
        if (!t->in) {
            task_answer(t, SCSI_TASK_SET_FULL);
            return;
        }
        t->charged += sz;
        c->inflight_bytes += sz;
    }
    struct scsi_cmd *sc = &t->sc;
    sc->lu = b ? b->ilu->lu : NULL;
    sc->nx = b ? &b->nx : NULL;
    sc->lun = t->lun;
    sc->attr = (enum scsi_task_attr)t->attr;
    sc->data_out = t->out;
    sc->data_out_len = MIN(t->out_got, t->out_want);
    sc->data_in = t->in;
    sc->data_in_max = t->in_size;
    sc->report_luns = iscsi_report_luns;
    sc->report_luns_ctx = c;
    sc->done = task_done;
    sc->priv = t;
    t->state = TS_RUNNING;
    c->commands++;
    scsi_submit(sc);
}

/* A READY task: run it when its turn came and its LUN is known. */
static void try_run(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    if (t->state != TS_READY || !t->ordered || t->waiting)
        return;
    if (t->refused) {
        task_answer(t, t->refused); /* refused by the transport */
        return;
    }
    /* The target's LUN inventory changed since this session last looked: the next command
     * (but those that report LUNs and sense) gets REPORTED LUNS DATA HAS CHANGED, once, so
     * that the initiator rescans (SAM-5 target-wide unit attention, left to the transport). */
    uint64_t gen = iscsi_lun_gen(c->srv);
    if (gen != c->seen_gen) {
        c->seen_gen = gen;
        c->luns_ua = true;
    }
    uint8_t op = t->sc.cdb[0];
    if (c->luns_ua && op != 0x12 && op != 0xa0 && op != 0x03) {
        c->luns_ua = false;
        set_sense(t, 0x06, 0x3f, 0x0e); /* UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED */
        task_answer(t, SCSI_CHECK_CONDITION);
        return;
    }
    struct sess_lu *slu = iscsi_sess_lu(c, t->lun);
    if (!slu) {
        task_answer(t, SCSI_BUSY);
        return;
    }
    t->slu = slu;
    if (slu->state == SLU_READY && slu->gen == gen) {
        iscsi_task_run(t);
        return;
    }
    if (slu->state != SLU_OPENING) {
        slu->state = SLU_OPENING;
        slu->gen = gen;
        if (iscsi_lun_job(c, slu) < 0) {
            slu->state = SLU_NONE;
            task_answer(t, SCSI_BUSY);
            return;
        }
    }
    t->waiting = true;
    TAILQ_INSERT_TAIL(&slu->waiting, t, wlink);
}

static void send_r2ts(struct iscsi_task *t)
{
    struct iscsi_conn *c = t->c;
    uint32_t max = MIN(c->p.max_r2t, (uint32_t)ISCSI_MAX_OUTSTANDING_R2T);
    while (t->nr2t < max && t->r2t_next < t->out_want) {
        uint32_t len = MIN(c->p.max_burst, t->out_want - t->r2t_next);
        struct r2t *r = &t->r2ts[t->nr2t++];
        do {
            r->ttt = c->next_ttt++;
        } while (r->ttt == ISCSI_RSVD_TAG);
        r->off = t->r2t_next;
        r->len = len;
        r->got = 0;
        r->datasn = 0;
        uint8_t h[ISCSI_BHS_SIZE];
        memset(h, 0, sizeof h);
        h[0] = ISCSI_OP_R2T;
        h[1] = ISCSI_FLAG_FINAL;
        iscsi_lun_encode(h + BHS_LUN, t->lun);
        iscsi_put32(h + BHS_ITT, t->itt);
        iscsi_put32(h + R2T_TTT, r->ttt);
        iscsi_fill_sn(c, h, false);
        iscsi_put32(h + R2T_R2TSN, t->r2tsn++);
        iscsi_put32(h + R2T_OFFSET, r->off);
        iscsi_put32(h + R2T_LENGTH, r->len);
        iscsi_send_pdu(c, h, NULL, 0, false, NULL);
        t->r2t_next += len;
    }
    stream_flush(&c->s);
}

/* More Data-Out arrived (or none is needed): solicit the rest, or move on. */
static void task_progress(struct iscsi_task *t)
{
    if (t->state != TS_DATA_OUT || t->unsol_open)
        return;
    if (t->out_got < t->out_want) {
        if (t->r2t_next < t->out_got)
            t->r2t_next = t->out_got;
        send_r2ts(t);
        return;
    }
    if (t->nr2t > 0)
        return;
    t->state = TS_READY;
    try_run(t);
}

/* ------------------------------------------------------------------------------------------
 * SCSI Command and Data-Out headers
 */

static bool cmd_header(struct iscsi_conn *c)
{
    const uint8_t *h = c->bhs;
    bool imm = h[0] & ISCSI_FLAG_IMMEDIATE;
    uint32_t itt = iscsi_get32(h + BHS_ITT), sn = iscsi_get32(h + CMD_CMDSN);
    uint32_t edtl = iscsi_get32(h + CMD_EDTL);
    uint8_t f = h[1];

    if (c->discovery) {
        c->rx_reject = REJECT_PROTOCOL_ERROR;
        return true;
    }
    if (!imm && !in_window(c, sn)) {
        log_debug("iscsi: %s: command CmdSN %u outside [%u, %u]: dropped", c->peer, sn,
                  c->exp_cmdsn, c->max_cmdsn);
        c->rx_drop = true;
        return true;
    }
    if (imm && c->nimmediate >= ISCSI_MAX_IMMEDIATE) {
        c->rx_reject = REJECT_IMMEDIATE_REJECT;
        return true;
    }
    if (itt == ISCSI_RSVD_TAG || task_find(c, itt)) {
        c->rx_reject = itt == ISCSI_RSVD_TAG ? REJECT_INVALID_PDU_FIELD : REJECT_TASK_IN_PROGRESS;
        return true;
    }
    /* Additional header segments: an extended CDB, a bidirectional read length. */
    uint8_t cdb[SCSI_CDB_MAX];
    unsigned cdb_len = 16;
    uint32_t bidi_len = 0;
    memcpy(cdb, h + CMD_CDB, 16);
    for (uint32_t o = 0; o < c->ahs_len;) {
        if (c->ahs_len - o < 4) {
            c->rx_reject = REJECT_INVALID_PDU_FIELD;
            return true;
        }
        uint32_t al = iscsi_get16(c->ahs + o);
        uint8_t type = c->ahs[o + 2];
        uint32_t total = ROUND_UP(3 + al, 4);
        if (total > c->ahs_len - o) {
            c->rx_reject = REJECT_INVALID_PDU_FIELD;
            return true;
        }
        if (type == AHS_EXTENDED_CDB) {
            if (al < 2 || 16 + al - 1 > SCSI_CDB_MAX) {
                c->rx_reject = REJECT_INVALID_PDU_FIELD;
                return true;
            }
            memcpy(cdb + 16, c->ahs + o + 4, al - 1);
            cdb_len = 16 + al - 1;
        } else if (type == AHS_BIDI_READ_LEN && al == 5) {
            bidi_len = iscsi_get32(c->ahs + o + 4);
        }
        o += total;
    }
    bool wr = f & CMD_FLAG_WRITE, rd = f & CMD_FLAG_READ;
    if (c->dlen > 0 && (!wr || !c->p.immediate_data || c->dlen > c->p.first_burst ||
                        c->dlen > edtl)) {
        c->rx_reject = REJECT_PROTOCOL_ERROR;
        return true;
    }

    struct iscsi_task *t = calloc(1, sizeof(*t));
    if (!t) {
        c->rx_reject = REJECT_OUT_OF_RESOURCES;
        return true;
    }
    t->c = c;
    t->sc.priv = t;
    t->itt = itt;
    t->cmdsn = sn;
    t->edtl = edtl;
    t->lun = iscsi_lun_decode(h + BHS_LUN);
    t->attr = f & CMD_ATTR_MASK;
    t->immediate = imm;
    t->rd = rd;
    t->wr = wr;
    t->state = TS_DATA_OUT;
    memcpy(t->sc.cdb, cdb, cdb_len);
    t->sc.cdb_len = cdb_len;
    TAILQ_INSERT_TAIL(&c->tasks, t, link);
    c->ntasks++;
    if (imm) {
        c->nimmediate++;
        t->ordered = true;
    } else {
        t->in_window = true;
        c->nwindow++;
    }

    if (wr) {
        /* Unsolicited data: immediate data, then Data-Out PDUs unless the F bit says none
         * follow, up to FirstBurstLength. */
        t->unsol_end = c->p.initial_r2t ? c->dlen : MIN(c->p.first_burst, edtl);
        t->unsol_open = !(f & ISCSI_FLAG_FINAL) && !c->p.initial_r2t && c->dlen < t->unsol_end;
    }
    bool refuse = edtl > ISCSI_MAX_XFER || (rd && wr ? bidi_len : 0) > ISCSI_MAX_XFER;
    if (refuse) {
        log_info("iscsi: %s: a command of %u bytes: larger than %u", c->peer, edtl,
                 ISCSI_MAX_XFER);
        set_sense(t, 0x05, 0x24, 0x00); /* ILLEGAL REQUEST, INVALID FIELD IN CDB */
        /* Its data is read and dropped: no buffer. */
    } else {
        if (rd)
            t->in_size = wr ? bidi_len : edtl;
        if (wr) {
            t->out_want = MIN(edtl, scsi_data_out_len(&t->sc));
            if (edtl) {
                /* Aligned, so that the SCSI layer writes to the volume from it directly. */
                size_t sz = ROUND_UP((size_t)edtl, 4096);
                if (c->inflight_bytes > 0 && c->inflight_bytes + sz > ISCSI_MAX_INFLIGHT_BYTES) {
                    /* Too much data held by this session already: try again later. */
                    t->refused = SCSI_TASK_SET_FULL;
                    refuse = true;
                } else if (!(t->out = aligned_alloc(4096, sz))) {
                    set_sense(t, 0x05, 0x24, 0x00);
                    refuse = true;
                } else {
                    t->charged = sz;
                    c->inflight_bytes += sz;
                }
            }
        }
    }
    if (refuse) {
        t->out_want = 0;
        if (!t->refused)
            t->refused = SCSI_CHECK_CONDITION;
    }
    c->rx_task = t;
    c->data_dst = refuse ? NULL : t->out;
    if (!imm && sn == c->exp_cmdsn) {
        t->ordered = true;
        c->exp_cmdsn++;
        cmdsn_advance(c);
    }
    return true;
}

static bool dataout_header(struct iscsi_conn *c)
{
    const uint8_t *h = c->bhs;
    uint32_t itt = iscsi_get32(h + BHS_ITT), ttt = iscsi_get32(h + DATA_TTT);
    uint32_t datasn = iscsi_get32(h + DATA_DATASN), off = iscsi_get32(h + DATA_OFFSET);
    struct iscsi_task *t = task_find(c, itt);
    char why[160];

    if (c->discovery) {
        c->rx_reject = REJECT_PROTOCOL_ERROR;
        return true;
    }
    if (!t || t->state != TS_DATA_OUT) {
        log_debug("iscsi: %s: Data-Out for task 0x%x, which is not gathering data: dropped",
                  c->peer, itt);
        c->rx_drop = true;
        return true;
    }
    /* A sequence error fails the task with CHECK CONDITION and the PDU's data is dropped;
     * the framing is intact, so the connection goes on. No Reject as well: initiators
     * (libiscsi) end a task on a Reject of its Data-Out, and a response for it afterwards
     * would be one for a task they no longer know. */
    uint8_t ascq = 0xff;
    if (ttt == ISCSI_RSVD_TAG) {
        if (!t->unsol_open)
            ascq = 0x01; /* INVALID TARGET PORT TRANSFER TAG RECEIVED */
        else if (off != t->out_got)
            ascq = 0x05; /* DATA OFFSET ERROR */
        else if (c->dlen > t->unsol_end - off)
            ascq = 0x02; /* TOO MUCH WRITE DATA */
        else if (datasn != t->unsol_datasn)
            ascq = 0x00; /* DATA PHASE ERROR */
        if (ascq != 0xff)
            snprintf(why, sizeof why,
                     "unsolicited Data-Out of task 0x%x out of sequence (offset %u, DataSN %u; "
                     "expected %u, %u)",
                     itt, off, datasn, t->out_got, t->unsol_datasn);
    } else {
        struct r2t *r = t->nr2t ? &t->r2ts[0] : NULL;
        if (!r || r->ttt != ttt)
            ascq = 0x01;
        else if (off != t->out_got || off != r->off + r->got)
            ascq = 0x05;
        else if (c->dlen > r->len - r->got)
            ascq = 0x02;
        else if (datasn != r->datasn)
            ascq = 0x00;
        if (ascq != 0xff)
            snprintf(why, sizeof why,
                     "Data-Out of task 0x%x out of sequence (TTT 0x%x, offset %u, DataSN %u)",
                     itt, ttt, off, datasn);
    }
    if (ascq != 0xff) {
        log_info("iscsi: %s: %s: the command fails", c->peer, why);
        c->rx_drop = true;
        set_sense(t, 0x0b, 0x4b, ascq); /* ABORTED COMMAND, DATA PHASE ERROR family */
        t->nr2t = 0;
        task_answer(t, SCSI_CHECK_CONDITION);
        return true;
    }
    c->rx_task = t;
    c->data_dst = t->out ? t->out + off : NULL;
    return true;
}

static void dataout_pdu(struct iscsi_conn *c)
{
    struct iscsi_task *t = c->rx_task;
    const uint8_t *h = c->bhs;
    bool final = h[1] & ISCSI_FLAG_FINAL;
    t->out_got += c->dlen;
    if (iscsi_get32(h + DATA_TTT) == ISCSI_RSVD_TAG) {
        t->unsol_datasn++;
        if (final || t->out_got >= t->unsol_end)
            t->unsol_open = false;
    } else {
        struct r2t *r = &t->r2ts[0];
        r->got += c->dlen;
        r->datasn++;
        if (r->got == r->len) {
            t->nr2t--;
            memmove(t->r2ts, t->r2ts + 1, t->nr2t * sizeof(struct r2t));
        } else if (final) {
            stream_kill(&c->s, "a Data-Out sequence ends before its R2T's length");
            return;
        }
    }
    task_progress(t);
}

static void cmd_pdu(struct iscsi_conn *c)
{
    struct iscsi_task *t = c->rx_task;
    t->out_got = c->dlen;
    if (t->refused) {
        /* Refused: its data (none kept) must still all arrive before the answer. */
        if (!t->unsol_open) {
            t->state = TS_READY;
            try_run(t);
        }
        return;
    }
    task_progress(t);
}

/* ------------------------------------------------------------------------------------------
 * NOP, Text, Logout, TMF
 */

static void nop_pdu(struct iscsi_conn *c)
{
    const uint8_t *h = c->bhs;
    uint32_t itt = iscsi_get32(h + BHS_ITT), ttt = iscsi_get32(h + NOP_TTT);
    if (itt == ISCSI_RSVD_TAG) {
        /* The answer to our ping (or a ping that wants no answer). */
        if (ttt != ISCSI_RSVD_TAG && ttt == c->ping_ttt)
            c->ping_sent_ns = 0;
        return;
    }
    if (ttt != ISCSI_RSVD_TAG) {
        iscsi_send_reject(c, REJECT_INVALID_PDU_FIELD, h);
        return;
    }
    uint8_t r[ISCSI_BHS_SIZE];
    memset(r, 0, sizeof r);
    r[0] = ISCSI_OP_NOP_IN;
    r[1] = ISCSI_FLAG_FINAL;
    memcpy(r + BHS_LUN, h + BHS_LUN, 8);
    iscsi_put32(r + BHS_ITT, itt);
    iscsi_put32(r + NOP_TTT, ISCSI_RSVD_TAG);
    iscsi_fill_sn(c, r, true);
    uint32_t len = MIN(c->dlen, c->p.mrdsl_out);
    iscsi_send_pdu(c, r, c->data, c->data_dst ? len : 0, true, NULL);
    stream_flush(&c->s);
}

void iscsi_ff_tick(struct iscsi_conn *c, uint64_t now)
{
    struct iscsi_server *srv = c->srv;
    if (c->s.state != STREAM_OPEN || c->phase != PH_FULL)
        return;
    if (c->ping_sent_ns) {
        if (c->s.last_rx_ns < c->ping_sent_ns &&
            now - c->ping_sent_ns > (uint64_t)srv->nop_timeout_s * 1000000000ull)
            stream_kill(&c->s, "no answer to NOP-In: the initiator is gone");
        return;
    }
    if (now - c->s.last_rx_ns < (uint64_t)srv->nop_interval_s * 1000000000ull)
        return;
    uint8_t r[ISCSI_BHS_SIZE];
    memset(r, 0, sizeof r);
    r[0] = ISCSI_OP_NOP_IN;
    r[1] = ISCSI_FLAG_FINAL;
    iscsi_put32(r + BHS_ITT, ISCSI_RSVD_TAG);
    do {
        c->ping_ttt = c->next_ttt++;
    } while (c->ping_ttt == ISCSI_RSVD_TAG);
    iscsi_put32(r + NOP_TTT, c->ping_ttt);
    iscsi_fill_sn(c, r, false);
    c->ping_sent_ns = now;
    iscsi_send_pdu(c, r, NULL, 0, false, NULL);
    stream_flush(&c->s);
}

static void text_send(struct iscsi_conn *c, uint32_t itt)
{
    uint8_t r[ISCSI_BHS_SIZE];
    memset(r, 0, sizeof r);
    r[0] = ISCSI_OP_TEXT_RSP;
    size_t left = c->text_len - c->text_off;
    uint32_t n = (uint32_t)MIN(left, (size_t)c->p.mrdsl_out);
    bool more = n < left;
    r[1] = more ? TEXT_FLAG_CONTINUE : ISCSI_FLAG_FINAL;
    iscsi_put32(r + BHS_ITT, itt);
    if (more) {
        do {
            c->text_ttt = c->next_ttt++;
        } while (c->text_ttt == ISCSI_RSVD_TAG);
    }
    iscsi_put32(r + TEXT_TTT, more ? c->text_ttt : ISCSI_RSVD_TAG);
    iscsi_fill_sn(c, r, true);
    iscsi_send_pdu(c, r, c->text_rsp ? c->text_rsp + c->text_off : NULL, n, true, NULL);
    c->text_off += n;
    if (!more) {
        free(c->text_rsp);
        c->text_rsp = NULL;
        c->text_len = c->text_off = 0;
    }
    stream_flush(&c->s);
}

static void text_pdu(struct iscsi_conn *c)
{
    const uint8_t *h = c->bhs;
    uint32_t itt = iscsi_get32(h + BHS_ITT), ttt = iscsi_get32(h + TEXT_TTT);
    bool cont = h[1] & TEXT_FLAG_CONTINUE;

    if (ttt != ISCSI_RSVD_TAG) {
        /* The initiator asks for the rest of a long answer. */
        if (!c->text_rsp || ttt != c->text_ttt) {
            iscsi_send_reject(c, REJECT_INVALID_PDU_FIELD, h);
            return;
        }
        text_send(c, itt);
        return;
    }
    free(c->text_rsp); /* a new request abandons an answer not fetched */
    c->text_rsp = NULL;
    c->text_len = c->text_off = 0;
    if (c->text_req_len + c->dlen > ISCSI_LOGIN_DATA_MAX) {
        free(c->text_req);
        c->text_req = NULL;
        c->text_req_len = 0;
        iscsi_send_reject(c, REJECT_PROTOCOL_ERROR, h);
        return;
    }
    char *p = realloc(c->text_req, c->text_req_len + c->dlen + 1);
    if (!p) {
        iscsi_send_reject(c, REJECT_OUT_OF_RESOURCES, h);
        return;
    }
    c->text_req = p;
    if (c->dlen)
        memcpy(p + c->text_req_len, c->data, c->dlen);
    c->text_req_len += c->dlen;
    if (cont) {
        c->text_len = c->text_off = 0;
        text_send(c, itt); /* an empty answer asks for the rest */
        return;
    }
    struct kv kv[64];
    struct kvbuf rsp = {0};
    int n = iscsi_kv_parse(c->text_req, c->text_req_len, kv, (int)ARRAY_SIZE(kv));
    if (n < 0) {
        free(c->text_req);
        c->text_req = NULL;
        c->text_req_len = 0;
        iscsi_send_reject(c, REJECT_PROTOCOL_ERROR, h);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(kv[i].key, "SendTargets") == 0)
            iscsi_send_targets(c, kv[i].value, &rsp);
        else
            kvbuf_add(&rsp, kv[i].key, "NotUnderstood");
    }
    free(c->text_req);
    c->text_req = NULL;
    c->text_req_len = 0;
    if (rsp.oom) {
        kvbuf_free(&rsp);
        iscsi_send_reject(c, REJECT_OUT_OF_RESOURCES, h);
        return;
    }
    c->text_rsp = rsp.buf;
    c->text_len = rsp.len;
    c->text_off = 0;
    text_send(c, itt);
}

static void logout_respond(struct iscsi_conn *c)
{
    if (c->logout_sent)
        return;
    c->logout_sent = true;
    uint8_t r[ISCSI_BHS_SIZE];
    memset(r, 0, sizeof r);
    r[0] = ISCSI_OP_LOGOUT_RSP;
    r[1] = ISCSI_FLAG_FINAL;
    r[2] = LOGOUT_RSP_OK;
    iscsi_put32(r + BHS_ITT, c->logout_itt);
    iscsi_fill_sn(c, r, true);
    iscsi_send_pdu(c, r, NULL, 0, false, NULL);
    stream_flush(&c->s);
}

static void logout_pdu(struct iscsi_conn *c)
{
    const uint8_t *h = c->bhs;
    uint8_t reason = h[1] & LOGOUT_REASON_MASK;
    uint16_t cid = iscsi_get16(h + LOGOUT_CID);
    uint8_t r[ISCSI_BHS_SIZE];
    memset(r, 0, sizeof r);
    r[0] = ISCSI_OP_LOGOUT_RSP;
    r[1] = ISCSI_FLAG_FINAL;
    iscsi_put32(r + BHS_ITT, iscsi_get32(h + BHS_ITT));
    if (reason == LOGOUT_REMOVE_FOR_RECOVERY ||
        (reason == LOGOUT_CLOSE_CONNECTION && cid != c->cid)) {
        r[2] = reason == LOGOUT_REMOVE_FOR_RECOVERY ? LOGOUT_RSP_NO_RECOVERY : LOGOUT_RSP_NO_CID;
        iscsi_fill_sn(c, r, true);
        iscsi_send_pdu(c, r, NULL, 0, false, NULL);
        stream_flush(&c->s);
        return;
    }
    if (reason != LOGOUT_CLOSE_SESSION && reason != LOGOUT_CLOSE_CONNECTION) {
        iscsi_send_reject(c, REJECT_INVALID_PDU_FIELD, h);
        return;
    }
    log_info("iscsi: %s: %s logs out of %s after %llu commands", c->peer, c->initiator,
             c->discovery ? "discovery" : c->target, (unsigned long long)c->commands);
    /* The response goes out when the tasks in flight are done; then the connection ends. */
    c->phase = PH_LOGOUT;
    c->logout_itt = iscsi_get32(h + BHS_ITT);
    if (c->ntasks == 0)
        logout_respond(c); /* queued before finish, so the connection waits for it */
    stream_finish(&c->s);
}

static void tmf_respond(struct iscsi_conn *c, struct iscsi_tmf *tmf)
{
    uint8_t r[ISCSI_BHS_SIZE];
    memset(r, 0, sizeof r);
    r[0] = ISCSI_OP_TMF_RSP;
    r[1] = ISCSI_FLAG_FINAL;
    r[2] = tmf->response;
    iscsi_put32(r + BHS_ITT, tmf->itt);
    iscsi_fill_sn(c, r, true);
    iscsi_send_pdu(c, r, NULL, 0, false, NULL);
    stream_flush(&c->s);
    if (tmf->cold)
        stream_finish(&c->s); /* the response goes out, then the connection closes */
}

/* Aborts @t for @tmf: no response will be sent for it. */
static void abort_task(struct iscsi_task *t, struct iscsi_tmf *tmf)
{
    if (t->aborted || t->state == TS_SENDING)
        return;
    t->aborted = true;
    if (t->state == TS_RUNNING) {
        t->tmf = tmf;
        tmf->waiting++;
        leave_window(t);
        return;
    }
    iscsi_task_free(t);
}

static bool lun_exists(struct iscsi_conn *c, uint64_t lun)
{
    uint64_t luns[256];
    size_t n = c->srv->t.luns(c->srv->ctx, c->target, luns, ARRAY_SIZE(luns));
    for (size_t i = 0; i < MIN(n, ARRAY_SIZE(luns)); i++)
        if (luns[i] == lun)
            return true;
    if (n > ARRAY_SIZE(luns)) {
        uint64_t *all = malloc(n * sizeof(*all));
        bool found = false;
        if (all) {
            size_t m = c->srv->t.luns(c->srv->ctx, c->target, all, n);
            for (size_t i = 0; i < MIN(n, m); i++)
                found |= all[i] == lun;
            free(all);
        }
        return found;
    }
    return false;
}

static void tmf_pdu(struct iscsi_conn *c)
{
    const uint8_t *h = c->bhs;
    uint8_t fn = h[1] & TMF_FUNC_MASK;
    uint64_t lun = iscsi_lun_decode(h + BHS_LUN);
    struct iscsi_tmf *tmf = calloc(1, sizeof(*tmf));
    if (!tmf) {
        iscsi_send_reject(c, REJECT_OUT_OF_RESOURCES, h);
        return;
    }
    tmf->itt = iscsi_get32(h + BHS_ITT);
    tmf->response = TMF_RSP_COMPLETE;
    /* Counts as waiting itself until every abort is issued. */
    tmf->waiting = 1;
    struct iscsi_task *t, *next;
    switch (fn) {
    case TMF_ABORT_TASK:
        t = task_find(c, iscsi_get32(h + TMF_REF_ITT));
        if (!t || t->state == TS_SENDING || t->aborted)
            tmf->response = TMF_RSP_NO_TASK;
        else if (t->lun != lun)
            tmf->response = TMF_RSP_NO_TASK;
        else
            abort_task(t, tmf);
        break;
    case TMF_ABORT_TASK_SET:
    case TMF_CLEAR_TASK_SET:
    case TMF_LUN_RESET:
        if (!lun_exists(c, lun)) {
            tmf->response = TMF_RSP_NO_LUN;
            break;
        }
        for (t = TAILQ_FIRST(&c->tasks); t; t = next) {
            next = TAILQ_NEXT(t, link);
            if (t->lun == lun)
                abort_task(t, tmf);
        }
        if (fn == TMF_LUN_RESET) {
            for (unsigned i = 0; i < c->nluns; i++)
                if (c->luns[i]->lun == lun && c->luns[i]->b)
                    scsi_lu_reset(c->luns[i]->b->ilu->lu, NULL); /* every nexus: SAM-5 */
            log_info("iscsi: %s: LUN RESET of LUN %llu", c->peer, (unsigned long long)lun);
        }
        break;
    case TMF_TARGET_COLD_RESET:
        tmf->cold = true; /* as a warm reset, and then the session ends (RFC 7143 11.5.1) */
        /* fall through */
    case TMF_TARGET_WARM_RESET:
        for (t = TAILQ_FIRST(&c->tasks); t; t = next) {
            next = TAILQ_NEXT(t, link);
            abort_task(t, tmf);
        }
        for (unsigned i = 0; i < c->nluns; i++)
            if (c->luns[i]->b)
                scsi_lu_reset(c->luns[i]->b->ilu->lu, NULL); /* every nexus: SAM-5 */
        log_info("iscsi: %s: TARGET %s RESET", c->peer, tmf->cold ? "COLD" : "WARM");
        break;
    default:
        tmf->response = TMF_RSP_NOT_SUPPORTED;
        break;
    }
    if (--tmf->waiting == 0) {
        tmf_respond(c, tmf);
        free(tmf);
    }
}

/* ------------------------------------------------------------------------------------------
 * Dispatch
 */

bool iscsi_ff_header(struct iscsi_conn *c)
{
    uint8_t op = c->bhs[0] & ISCSI_OPCODE_MASK;
    c->rx_reject = 0;
    c->rx_drop = false;
    if (c->phase == PH_LOGOUT) {
        c->rx_drop = true; /* nothing after a logout */
        return true;
    }
    switch (op) {
    case ISCSI_OP_SCSI_CMD:
        return cmd_header(c);
    case ISCSI_OP_DATA_OUT:
        return dataout_header(c);
    case ISCSI_OP_NOP_OUT:
    case ISCSI_OP_TEXT_REQ:
    case ISCSI_OP_LOGOUT_REQ:
    case ISCSI_OP_TMF_REQ:
        if (op == ISCSI_OP_TMF_REQ && c->discovery) {
            c->rx_reject = REJECT_PROTOCOL_ERROR;
            return true;
        }
        if (c->dlen && !iscsi_conn_data_buf(c))
            return false;
        c->data_dst = c->data;
        return true;
    case ISCSI_OP_LOGIN_REQ:
        c->rx_reject = REJECT_PROTOCOL_ERROR; /* a login in the full feature phase */
        return true;
    case ISCSI_OP_SNACK:
        c->rx_reject = REJECT_SNACK_REJECT; /* error recovery level 0 */
        return true;
    default:
        c->rx_reject = REJECT_CMD_NOT_SUPPORTED;
        return true;
    }
}

void iscsi_ff_pdu(struct iscsi_conn *c)
{
    uint8_t op = c->bhs[0] & ISCSI_OPCODE_MASK;
    if (c->phase == PH_LOGIN) {
        stream_kill(&c->s, "a PDU other than Login during login");
        return;
    }
    if (c->rx_drop)
        return;
    if (c->rx_reject) {
        iscsi_send_reject(c, c->rx_reject, c->bhs);
        stream_flush(&c->s);
        return;
    }
    switch (op) {
    case ISCSI_OP_SCSI_CMD:
        cmd_pdu(c);
        break;
    case ISCSI_OP_DATA_OUT:
        dataout_pdu(c);
        break;
    case ISCSI_OP_NOP_OUT:
        if (take_cmdsn(c, c->bhs))
            nop_pdu(c);
        break;
    case ISCSI_OP_TEXT_REQ:
        if (take_cmdsn(c, c->bhs))
            text_pdu(c);
        break;
    case ISCSI_OP_LOGOUT_REQ:
        if (take_cmdsn(c, c->bhs))
            logout_pdu(c);
        break;
    case ISCSI_OP_TMF_REQ:
        if (take_cmdsn(c, c->bhs))
            tmf_pdu(c);
        break;
    default:
        break;
    }
    stream_flush(&c->s);
}

void iscsi_ff_closing(struct iscsi_conn *c)
{
    struct iscsi_task *t, *next;
    for (t = TAILQ_FIRST(&c->tasks); t; t = next) {
        next = TAILQ_NEXT(t, link);
        if (t == c->rx_task && c->s.rx_pending)
            continue; /* a recv writes into its buffer: freed when it ends */
        if (t->state == TS_DATA_OUT || (t->state == TS_READY && !t->waiting))
            iscsi_task_free(t);
    }
    if (c->rx_task && !c->s.rx_pending) {
        /* The task was freed above, or keeps going without us reading into it. */
        c->rx_task = NULL;
    }
}
