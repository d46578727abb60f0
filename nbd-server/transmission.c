/*
 * transmission.c - the transmission phase: requests in, volume requests out, replies back.
 *
 *   TX_HEADER     28 bytes; bad magic: dead. Admitted when the connection has a free slot
 *                 (NBD_MAX_INFLIGHT requests, NBD_MAX_INFLIGHT_BYTES of buffers, and not
 *                 too much output waiting for the client)   -> TX_PAYLOAD (WRITE),
 *                                                              TX_SKIP (a refused WRITE),
 *                                                              CLOSING (DISC), TX_HEADER
 *                 else                                      -> TX_WAIT_SLOT
 *   TX_WAIT_SLOT  a request is freed                         -> as TX_HEADER
 *   TX_PAYLOAD    the WRITE's data, into its buffer; submit  -> TX_HEADER
 *   TX_SKIP       the data of a WRITE refused before it was read, discarded; its error
 *                                                            -> TX_HEADER
 *
 * A request is checked completely before anything is allocated for it or sent to the
 * volume: flags it may carry, length (non-zero; at most NBD_MAX_PAYLOAD for data), range
 * (NBD_ENOSPC for writes past the end, NBD_EINVAL for other commands), alignment to the
 * 512-byte minimum block size for writes, and permission. Many requests run at once and are
 * answered as they complete, in any order.
 *
 * READ under structured replies asks the extent map which parts of the range are holes and
 * sends those as NBD_REPLY_TYPE_OFFSET_HOLE chunks, the rest as OFFSET_DATA, so unallocated
 * space never crosses the wire as zeros. The map is consulted after the read: a concurrent
 * write may make the answer differ from what the read saw, which NBD allows for requests
 * in flight at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-server/nbd-priv.h"

uint32_t nbd_errno_to_wire(int err)
{
    switch (err) {
    case 0:
        return 0;
    case -EIO:
        return NBD_EIO;
    case -ENOSPC:
    case -EDQUOT:
        return NBD_ENOSPC;
    case -EROFS:
    case -EPERM:
    case -EACCES:
        return NBD_EPERM;
    case -EINVAL:
        return NBD_EINVAL;
    case -ENOMEM:
        return NBD_ENOMEM;
    case -EOPNOTSUPP:
        return NBD_ENOTSUP;
    case -ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

static const char *wire_error_text(uint32_t e)
{
    switch (e) {
    case NBD_EPERM:
        return "export is read-only";
    case NBD_EIO:
        return "input/output error";
    case NBD_ENOMEM:
        return "out of memory";
    case NBD_EINVAL:
        return "invalid request";
    case NBD_ENOSPC:
        return "no space (or beyond the end of the export)";
    case NBD_ENOTSUP:
        return "not supported quickly";
    default:
        return "error";
    }
}

void nbd_tx_begin(struct nbd_conn *c)
{
    c->state = CS_TX_HEADER;
    stream_want(&c->s, c->hdr, NBD_REQUEST_SIZE);
}

/* ------------------------------------------------------------------------------------------
 * Replies
 */

/* Simple reply: magic(4) error(4) cookie(8), then READ data. Frees @req once sent. */
static void reply_simple(struct nbd_req *req, uint32_t err, const void *data, size_t len)
{
    struct nbd_conn *c = req->c;
    uint8_t h[NBD_SIMPLE_REPLY_SIZE], *p = h;
    p = nbd_put32(p, NBD_SIMPLE_REPLY_MAGIC);
    p = nbd_put32(p, err);
    nbd_put64(p, req->cookie);
    stream_send_copy(&c->s, h, sizeof h);
    stream_send_ref(&c->s, data, len, req);
    stream_flush(&c->s);
}

/* Structured chunk header: magic(4) flags(2) type(2) cookie(8) length(4), then @extra
 * bytes of the payload (copied); the rest of the payload follows separately. */
static void chunk_header(struct nbd_req *req, uint16_t flags, uint16_t type, uint32_t len,
                         const void *extra, size_t extra_len)
{
    uint8_t h[NBD_STRUCTURED_REPLY_SIZE + 16], *p = h;
    p = nbd_put32(p, NBD_STRUCTURED_REPLY_MAGIC);
    p = nbd_put16(p, flags);
    p = nbd_put16(p, type);
    p = nbd_put64(p, req->cookie);
    p = nbd_put32(p, len);
    if (extra_len)
        memcpy(p, extra, extra_len);
    stream_send_copy(&req->c->s, h, NBD_STRUCTURED_REPLY_SIZE + extra_len);
}

static void reply_error(struct nbd_req *req, uint32_t err)
{
    struct nbd_conn *c = req->c;
    if (err != NBD_EINVAL && err != NBD_EPERM && err != NBD_ENOSPC && err != NBD_ENOTSUP)
        log_warn("nbd: %s: request %u at %llu+%u failed: %s", c->peer, req->type,
                 (unsigned long long)req->offset, req->length, wire_error_text(err));
    if (!c->structured || (req->type != NBD_CMD_READ && req->type != NBD_CMD_BLOCK_STATUS)) {
        reply_simple(req, err, NULL, 0);
        return;
    }
    /* NBD_REPLY_TYPE_ERROR: error(4) message_length(2) message */
    const char *msg = wire_error_text(err);
    size_t ml = strlen(msg);
    uint8_t e[6];
    nbd_put16(nbd_put32(e, err), (uint16_t)ml);
    chunk_header(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, (uint32_t)(6 + ml), e, 6);
    stream_send_copy(&c->s, msg, ml);
    stream_send_ref(&c->s, NULL, 0, req);
    stream_flush(&c->s);
}

static void reply_read_structured(struct nbd_req *req)
{
    struct nbd_conn *c = req->c;
    struct vol_extent ext[NBD_READ_MAX_CHUNKS];
    size_t n = 0;
    uint64_t pos = req->offset, end = req->offset + req->length;
    const uint8_t *data = req->buf + (req->offset - req->io_off);

    if (vol_block_status(c->vol, req->offset, req->length, ext, ARRAY_SIZE(ext), &n) < 0)
        n = 0; /* then it is all data: still a correct answer */
    for (size_t i = 0; i < n && pos < end; i++) {
        uint64_t s = MAX(ext[i].offset, pos), t = MIN(ext[i].offset + ext[i].length, end);
        if (s != pos)
            break; /* not contiguous: the rest goes as data */
        if (t <= s)
            continue;
        uint16_t done = t == end ? NBD_REPLY_FLAG_DONE : 0;
        uint8_t x[12];
        if (ext[i].flags & VOL_EXT_ZERO) {
            /* OFFSET_HOLE: offset(8) hole_size(4) */
            nbd_put32(nbd_put64(x, s), (uint32_t)(t - s));
            chunk_header(req, done, NBD_REPLY_TYPE_OFFSET_HOLE, 12, x, 12);
        } else {
            /* OFFSET_DATA: offset(8) data */
            nbd_put64(x, s);
            chunk_header(req, done, NBD_REPLY_TYPE_OFFSET_DATA, (uint32_t)(8 + t - s), x, 8);
            stream_send_ref(&c->s, data + (s - req->offset), t - s, NULL);
        }
        pos = t;
    }
    if (pos < end) {
        uint8_t x[8];
        nbd_put64(x, pos);
        chunk_header(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                     (uint32_t)(8 + end - pos), x, 8);
        stream_send_ref(&c->s, data + (pos - req->offset), end - pos, NULL);
    }
    stream_send_ref(&c->s, NULL, 0, req);
    stream_flush(&c->s);
}

static void reply_base_status(struct nbd_req *req);

struct changed_ctx {
    uint8_t *p;       /* next descriptor */
    size_t used, max;
    uint64_t pos;     /* bytes described so far end here */
};

static void changed_put(struct changed_ctx *x, uint64_t len, uint32_t flags)
{
    while (len > 0 && x->used < x->max) {
        uint32_t part = (uint32_t)MIN(len, (uint64_t)UINT32_MAX & ~4095u);
        x->p = nbd_put32(nbd_put32(x->p, part), flags);
        x->pos += part;
        len -= part;
        x->used++;
    }
}

static int changed_range(void *ctx, uint64_t off, uint64_t len)
{
    struct changed_ctx *x = ctx;
    if (off > x->pos)
        changed_put(x, off - x->pos, 0);
    changed_put(x, len, NBD_STATE_CHANGED);
    return x->used < x->max ? 0 : 1;
}

/* The cistern:changed:SNAP chunk: ranges changed since the snapshot, alternating with
 * unchanged ones. Returns its length, or a negative errno. */
static int changed_chunk(struct nbd_req *req, uint8_t *b, size_t max)
{
    struct nbd_conn *c = req->c;
    struct changed_ctx x = {nbd_put32(b, NBD_META_ID_CHANGED), 0, max, req->offset};
    int r = vol_changed_since(c->vol, c->meta_changed, req->offset, req->length, changed_range,
                              &x);
    if (r < 0)
        return r;
    if (x.pos < req->offset + req->length && x.used < max)
        changed_put(&x, req->offset + req->length - x.pos, 0);
    return (int)(4 + 8 * x.used);
}

static void reply_block_status(struct nbd_req *req)
{
    if (req->c->meta_changed) {
        struct nbd_conn *c = req->c;
        size_t max = (req->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_BS_MAX_EXTENTS;
        uint8_t *b = malloc(4 + 8 * max);
        int len = b ? changed_chunk(req, b, max) : -ENOMEM;
        if (len < 0) {
            free(b);
            reply_error(req, nbd_errno_to_wire(len));
            return;
        }
        chunk_header(req, c->meta_base ? 0 : NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
                     (uint32_t)len, NULL, 0);
        stream_send_copy(&c->s, b, (size_t)len);
        free(b);
        if (!c->meta_base) {
            stream_send_ref(&c->s, NULL, 0, req);
            stream_flush(&c->s);
            return;
        }
    }
    reply_base_status(req);
}

static void reply_base_status(struct nbd_req *req)
{
    struct nbd_conn *c = req->c;
    size_t max = (req->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_BS_MAX_EXTENTS, n = 0;
    struct vol_extent *ext = malloc(max * sizeof(*ext));
    uint8_t *b = malloc(4 + 8 * max);
    int r = ext && b ? vol_block_status(c->vol, req->offset, req->length, ext, max, &n) : -ENOMEM;
    if (r == 0 && n == 0)
        r = -EIO;
    if (r < 0) {
        free(ext);
        free(b);
        reply_error(req, nbd_errno_to_wire(r));
        return;
    }
    /* BLOCK_STATUS: context_id(4) {length(4) flags(4)}... */
    uint8_t *p = nbd_put32(b, NBD_META_ID_BASE);
    uint64_t pos = req->offset, end = req->offset + req->length;
    size_t used = 0;
    for (size_t i = 0; i < n && pos < end; i++) {
        uint64_t t = MIN(ext[i].offset + ext[i].length, end);
        if (ext[i].offset != pos || t <= pos)
            break;
        uint32_t f = ((ext[i].flags & VOL_EXT_HOLE) ? NBD_STATE_HOLE : 0) |
                     ((ext[i].flags & VOL_EXT_ZERO) ? NBD_STATE_ZERO : 0);
        p = nbd_put32(nbd_put32(p, (uint32_t)(t - pos)), f);
        pos = t;
        used++;
    }
    free(ext);
    if (used == 0) {
        free(b);
        reply_error(req, NBD_EIO);
        return;
    }
    uint32_t len = (uint32_t)(4 + 8 * used);
    chunk_header(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, len, NULL, 0);
    stream_send_copy(&c->s, b, len);
    free(b);
    stream_send_ref(&c->s, NULL, 0, req);
    stream_flush(&c->s);
}

/* ------------------------------------------------------------------------------------------
 * Volume completions (entry points on the reactor)
 */

static void read_done(struct vol_req *vr, int res)
{
    struct nbd_req *req = vr->priv;
    struct nbd_conn *c = req->c;
    stream_enter(&c->s);
    if (c->s.state == STREAM_DEAD)
        nbd_req_free(req);
    else if (res < 0)
        reply_error(req, nbd_errno_to_wire(res));
    else if (c->structured)
        reply_read_structured(req);
    else
        reply_simple(req, 0, req->buf + (req->offset - req->io_off), req->length);
    stream_leave(&c->s);
}

static void simple_done(struct vol_req *vr, int res)
{
    struct nbd_req *req = vr->priv;
    struct nbd_conn *c = req->c;
    stream_enter(&c->s);
    if (c->s.state == STREAM_DEAD)
        nbd_req_free(req);
    else if (res < 0)
        reply_error(req, nbd_errno_to_wire(res));
    else
        reply_simple(req, 0, NULL, 0);
    stream_leave(&c->s);
}

static void submit(struct nbd_req *req, enum vol_op op, uint32_t flags, uint64_t off, uint64_t len,
                   void *buf, void (*done)(struct vol_req *, int))
{
    req->vr = (struct vol_req){
        .op = op,
        .flags = flags,
        .offset = off,
        .length = len,
        .buf = buf,
        .done = done,
        .priv = req,
    };
    vol_submit(req->c->vol, &req->vr);
}

/* ------------------------------------------------------------------------------------------
 * Requests
 */

/* The NBD error a request gets before it runs, or 0. */
static uint32_t check(struct nbd_conn *c, const struct nbd_req *req)
{
    uint16_t f = req->flags;
    uint64_t off = req->offset, len = req->length, size = c->size;
    bool past = off > size || len > size - off;
    bool aligned = off % 512 == 0 && len % 512 == 0;

    switch (req->type) {
    case NBD_CMD_READ:
        if (f & ~NBD_CMD_FLAG_FUA)
            return NBD_EINVAL; /* DF is not offered: reads may come in pieces */
        if (len == 0 || len > NBD_MAX_PAYLOAD || past)
            return NBD_EINVAL;
        return 0;
    case NBD_CMD_WRITE:
        if (f & ~NBD_CMD_FLAG_FUA)
            return NBD_EINVAL;
        if (c->readonly)
            return NBD_EPERM;
        if (len == 0 || len > NBD_MAX_PAYLOAD)
            return NBD_EINVAL;
        if (past)
            return NBD_ENOSPC;
        return aligned ? 0 : NBD_EINVAL;
    case NBD_CMD_FLUSH:
        return (f & ~NBD_CMD_FLAG_FUA) ? NBD_EINVAL : 0;
    case NBD_CMD_TRIM:
        if (f & ~NBD_CMD_FLAG_FUA)
            return NBD_EINVAL;
        if (c->readonly)
            return NBD_EPERM;
        return len == 0 || past ? NBD_EINVAL : 0;
    case NBD_CMD_WRITE_ZEROES:
        if (f & ~(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO))
            return NBD_EINVAL;
        if (c->readonly)
            return NBD_EPERM;
        if (len == 0)
            return NBD_EINVAL;
        if (past)
            return NBD_ENOSPC;
        if (!aligned)
            return NBD_EINVAL;
        /* Zeroing by unmapping is fast; zeroing that must stay allocated writes zeros. */
        if ((f & NBD_CMD_FLAG_FAST_ZERO) && (f & NBD_CMD_FLAG_NO_HOLE))
            return NBD_ENOTSUP;
        return 0;
    case NBD_CMD_CACHE:
        if (f & ~NBD_CMD_FLAG_FUA)
            return NBD_EINVAL;
        return len == 0 || past ? NBD_EINVAL : 0;
    case NBD_CMD_BLOCK_STATUS:
        if (f & ~NBD_CMD_FLAG_REQ_ONE)
            return NBD_EINVAL;
        if (!c->meta_base && !c->meta_changed)
            return NBD_EINVAL; /* no context negotiated */
        return len == 0 || past ? NBD_EINVAL : 0;
    default:
        return NBD_EINVAL;
    }
}

/* Runs a checked request (all but WRITE, whose payload comes first). */
static void dispatch(struct nbd_req *req)
{
    struct nbd_conn *c = req->c;
    uint32_t fua = (req->flags & NBD_CMD_FLAG_FUA) ? VOL_FUA : 0;
    switch (req->type) {
    case NBD_CMD_READ:
        submit(req, VOL_OP_READ, 0, req->io_off, req->io_len, req->buf, read_done);
        return;
    case NBD_CMD_WRITE:
        submit(req, VOL_OP_WRITE, fua, req->offset, req->length, req->buf, simple_done);
        return;
    case NBD_CMD_FLUSH:
        submit(req, VOL_OP_FLUSH, 0, 0, 0, NULL, simple_done);
        return;
    case NBD_CMD_TRIM: {
        /* A trim is advisory: only whole 512-byte sectors inside the range are unmapped. */
        uint64_t s = ROUND_UP(req->offset, 512), e = ROUND_DOWN(req->offset + req->length, 512);
        if (s >= e) {
            reply_simple(req, 0, NULL, 0);
            return;
        }
        submit(req, VOL_OP_DISCARD, fua, s, e - s, NULL, simple_done);
        return;
    }
    case NBD_CMD_WRITE_ZEROES: {
        uint32_t f = fua | ((req->flags & NBD_CMD_FLAG_NO_HOLE) ? VOL_NO_UNMAP : 0);
        submit(req, VOL_OP_WRITE_ZEROES, f, req->offset, req->length, NULL, simple_done);
        return;
    }
    case NBD_CMD_CACHE:
        /* Advisory; the volume has no cache of its own to warm. */
        reply_simple(req, 0, NULL, 0);
        return;
    case NBD_CMD_BLOCK_STATUS:
        reply_block_status(req);
        return;
    default:
        reply_error(req, NBD_EINVAL);
        (void)c;
        return;
    }
}

static uint64_t buffer_need(uint16_t type, uint32_t length)
{
    if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && length <= NBD_MAX_PAYLOAD)
        return ROUND_UP((uint64_t)length + 1024, 4096);
    return 0;
}

static int alloc_buf(struct nbd_req *req, uint64_t len)
{
    size_t size = ROUND_UP(len, 4096);
    req->buf = aligned_alloc(4096, size);
    if (!req->buf)
        return -ENOMEM;
    req->bufsize = size;
    req->c->inflight_bytes += size;
    return 0;
}

/* The header in c->hdr is admitted: make it a request and start it. */
static void start_request(struct nbd_conn *c)
{
    const uint8_t *h = c->hdr;
    struct nbd_req *req = calloc(1, sizeof(*req));
    if (!req) {
        stream_kill(&c->s, "out of memory for a request");
        return;
    }
    req->c = c;
    req->flags = nbd_get16(h + 4);
    req->type = nbd_get16(h + 6);
    req->cookie = nbd_get64(h + 8);
    req->offset = nbd_get64(h + 16);
    req->length = nbd_get32(h + 24);
    c->inflight++;
    c->requests++;

    if (req->type == NBD_CMD_DISC) {
        log_debug("nbd: %s: client disconnects", c->peer);
        stream_finish(&c->s); /* -> CLOSING: requests in flight still complete */
        nbd_req_free(req);
        return;
    }
    uint32_t err = check(c, req);
    if (req->type == NBD_CMD_WRITE) {
        if (err == 0 && alloc_buf(req, req->length) < 0)
            err = NBD_ENOMEM;
        req->err = err;
        c->cur_req = req;
        c->state = err ? CS_TX_SKIP : CS_TX_PAYLOAD;
        stream_want(&c->s, err ? NULL : req->buf, req->length);
        return;
    }
    nbd_tx_begin(c); /* -> TX_HEADER: the next request while this one runs */
    if (err == 0 && req->type == NBD_CMD_READ) {
        req->io_off = ROUND_DOWN(req->offset, 512);
        req->io_len = ROUND_UP(req->offset + req->length, 512) - req->io_off;
        if (req->io_off + req->io_len > c->size)
            err = NBD_EINVAL; /* an export whose size is not a multiple of 512 */
        else if (alloc_buf(req, req->io_len) < 0)
            err = NBD_ENOMEM;
    }
    if (err)
        reply_error(req, err);
    else
        dispatch(req);
}

bool nbd_tx_admit(struct nbd_conn *c)
{
    uint64_t need = buffer_need(nbd_get16(c->hdr + 6), nbd_get32(c->hdr + 24));
    if (c->inflight >= NBD_MAX_INFLIGHT)
        return false;
    if (c->inflight > 0 && (c->inflight_bytes + need > NBD_MAX_INFLIGHT_BYTES ||
                            c->s.out_copied > NBD_MAX_INFLIGHT_BYTES))
        return false;
    start_request(c);
    return true;
}

void nbd_tx_input(struct nbd_conn *c)
{
    switch (c->state) {
    case CS_TX_HEADER:
        if (nbd_get32(c->hdr) != NBD_REQUEST_MAGIC) {
            stream_kill(&c->s, "bad request magic");
            return;
        }
        if (!nbd_tx_admit(c))
            c->state = CS_TX_WAIT_SLOT; /* nbd_req_free admits it later */
        return;
    case CS_TX_PAYLOAD:
    case CS_TX_SKIP: {
        struct nbd_req *req = c->cur_req;
        c->cur_req = NULL;
        nbd_tx_begin(c); /* -> TX_HEADER */
        if (req->err)
            reply_error(req, req->err);
        else
            dispatch(req);
        return;
    }
    default:
        stream_kill(&c->s, "transmission input in a handshake state");
        return;
    }
}
