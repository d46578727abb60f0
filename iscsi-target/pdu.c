/*
 * pdu.c - reading PDUs, as states of the connection, and the pieces every response needs.
 *
 *   BHS    48 bytes. Too much output waiting for the initiator           -> WAIT
 *          else                                                            -> AHS or (header)
 *   WAIT   the output drained                                              -> as BHS
 *   AHS    TotalAHSLength words and the header digest; a bad digest: dead -> (header)
 *   (header) DataSegmentLength checked against what we declared (a longer one is a lie:
 *          dead); the phase decides where the data goes: the login buffer, a task's
 *          buffer (Data-Out, immediate data: no copy), the data buffer, or away
 *                                                                          -> DATA, or (pdu)
 *   DATA   the data segment                                                -> TAIL or (pdu)
 *   TAIL   padding and the data digest; a bad digest: dead                 -> (pdu)
 *   (pdu)  login.c or fullfeature.c handles the whole PDU                  -> BHS
 *
 * Digests are CRC32C, sent little-endian (as every initiator does), over the BHS and AHS and
 * over the data with its padding; they are in force from the first PDU after the login.
 * At error recovery level 0 a digest error cannot be recovered from: the connection ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/iscsi-priv.h"

#define ISCSI_OUT_LIMIT (64u << 20) /* queued output before we stop reading */

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void iscsi_rx_begin(struct iscsi_conn *c)
{
    c->state = CS_BHS;
    c->rx_task = NULL;
    c->data_dst = NULL;
    stream_want(&c->s, c->bhs, ISCSI_BHS_SIZE);
}

static void pdu_done(struct iscsi_conn *c)
{
    uint8_t op = c->bhs[0] & ISCSI_OPCODE_MASK;
    if (c->phase == PH_LOGIN && op == ISCSI_OP_LOGIN_REQ)
        iscsi_login_pdu(c);
    else
        iscsi_ff_pdu(c);
    if (c->s.state == STREAM_OPEN && c->state < CS_WAIT && !c->s.want_active)
        iscsi_rx_begin(c);
}

static void header_done(struct iscsi_conn *c)
{
    uint8_t op = c->bhs[0] & ISCSI_OPCODE_MASK;
    uint32_t max = c->phase == PH_LOGIN ? ISCSI_LOGIN_DATA_MAX : ISCSI_MAX_RECV_SEGMENT;
    if (c->dlen > max) {
        char why[128];
        snprintf(why, sizeof why, "opcode 0x%02x with a data segment of %u bytes (at most %u)",
                 op, c->dlen, max);
        stream_kill(&c->s, why);
        return;
    }
    c->data_dst = NULL;
    c->rx_task = NULL;
    if (c->phase == PH_LOGIN) {
        if (op != ISCSI_OP_LOGIN_REQ) {
            char why[96];
            snprintf(why, sizeof why, "opcode 0x%02x before the login completed", op);
            stream_kill(&c->s, why);
            return;
        }
        if (c->dlen && !iscsi_conn_data_buf(c))
            return;
        c->data_dst = c->data;
    } else if (!iscsi_ff_header(c)) {
        return;
    }
    if (c->dlen == 0) {
        pdu_done(c);
        return;
    }
    c->state = CS_DATA;
    stream_want(&c->s, c->data_dst, c->dlen);
}

bool iscsi_rx_admit(struct iscsi_conn *c)
{
    if (c->s.out_bytes > ISCSI_OUT_LIMIT)
        return false;
    if (c->ahs_len || c->hdigest) {
        c->state = CS_AHS;
        stream_want(&c->s, c->ahs, c->ahs_len + (c->hdigest ? ISCSI_DIGEST_SIZE : 0));
        return true;
    }
    header_done(c);
    return true;
}

void iscsi_rx_input(struct iscsi_conn *c)
{
    switch (c->state) {
    case CS_BHS:
        c->ahs_len = (uint32_t)c->bhs[BHS_AHSLEN] * 4;
        c->dlen = iscsi_get24(c->bhs + BHS_DLEN);
        if (!iscsi_rx_admit(c))
            c->state = CS_WAIT; /* iscsi_conn_flush admits it when the output drains */
        return;
    case CS_AHS:
        if (c->hdigest) {
            uint32_t crc = crc32c(crc32c(0, c->bhs, ISCSI_BHS_SIZE), c->ahs, c->ahs_len);
            if (crc != get_le32(c->ahs + c->ahs_len)) {
                stream_kill(&c->s, "header digest error");
                return;
            }
        }
        header_done(c);
        return;
    case CS_DATA: {
        uint32_t pad = (4 - (c->dlen & 3)) & 3;
        uint32_t tail = pad + (c->ddigest ? ISCSI_DIGEST_SIZE : 0);
        if (tail) {
            c->state = CS_TAIL;
            stream_want(&c->s, c->tail, tail);
            return;
        }
        pdu_done(c);
        return;
    }
    case CS_TAIL:
        if (c->ddigest && c->data_dst) {
            uint32_t pad = (4 - (c->dlen & 3)) & 3;
            uint32_t crc = crc32c(crc32c(0, c->data_dst, c->dlen), c->tail, pad);
            if (crc != get_le32(c->tail + pad)) {
                stream_kill(&c->s, "data digest error");
                return;
            }
        }
        pdu_done(c);
        return;
    default:
        stream_kill(&c->s, "input in a state that reads nothing");
        return;
    }
}

/* ------------------------------------------------------------------------------------------
 * Output
 */

void iscsi_fill_sn(struct iscsi_conn *c, uint8_t *bhs, bool advance)
{
    iscsi_put32(bhs + 24, c->statsn);
    if (advance)
        c->statsn++;
    iscsi_put32(bhs + 28, c->exp_cmdsn);
    iscsi_put32(bhs + 32, c->max_cmdsn);
}

void iscsi_send_pdu(struct iscsi_conn *c, uint8_t *bhs, const void *data, uint32_t len, bool copy,
                    struct iscsi_task *task)
{
    static const uint8_t zeros[4];
    uint8_t hd[ISCSI_BHS_SIZE + ISCSI_DIGEST_SIZE];
    iscsi_put24(bhs + BHS_DLEN, len);
    bhs[BHS_AHSLEN] = 0;
    memcpy(hd, bhs, ISCSI_BHS_SIZE);
    size_t hl = ISCSI_BHS_SIZE;
    if (c->hdigest) {
        put_le32(hd + ISCSI_BHS_SIZE, crc32c(0, bhs, ISCSI_BHS_SIZE));
        hl += ISCSI_DIGEST_SIZE;
    }
    stream_send_copy(&c->s, hd, hl);
    if (len == 0) {
        if (task)
            stream_send_ref(&c->s, NULL, 0, task);
        return;
    }
    uint32_t pad = (4 - (len & 3)) & 3;
    uint8_t tail[8];
    size_t tl = pad;
    memset(tail, 0, sizeof tail);
    if (c->ddigest) {
        put_le32(tail + pad, crc32c(crc32c(0, data, len), zeros, pad));
        tl += ISCSI_DIGEST_SIZE;
    }
    if (copy || len < 1024) {
        stream_send_copy(&c->s, data, len);
        if (tl)
            stream_send_copy(&c->s, tail, tl);
        if (task)
            stream_send_ref(&c->s, NULL, 0, task);
    } else if (tl) {
        stream_send_ref(&c->s, data, len, NULL);
        stream_send_copy(&c->s, tail, tl);
        if (task)
            stream_send_ref(&c->s, NULL, 0, task);
    } else {
        stream_send_ref(&c->s, data, len, task);
    }
}

void iscsi_send_reject(struct iscsi_conn *c, uint8_t reason, const uint8_t *bhs)
{
    uint8_t h[ISCSI_BHS_SIZE];
    memset(h, 0, sizeof h);
    h[0] = ISCSI_OP_REJECT;
    h[1] = ISCSI_FLAG_FINAL;
    h[REJECT_REASON] = reason;
    iscsi_put32(h + BHS_ITT, ISCSI_RSVD_TAG);
    iscsi_fill_sn(c, h, true);
    log_info("iscsi: %s: rejected a PDU (opcode 0x%02x): reason 0x%02x", c->peer,
             bhs[0] & ISCSI_OPCODE_MASK, reason);
    /* The data segment is the rejected PDU's header. */
    iscsi_send_pdu(c, h, bhs, ISCSI_BHS_SIZE, true, NULL);
}
