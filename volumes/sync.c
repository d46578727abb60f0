/*
 * Synchronous volume calls for tools and tests, on top of vol_submit(), and block status.
 *
 * Large requests are cut into pieces of at most SYNC_CHUNK bytes kept SYNC_DEPTH at a time in
 * flight, so a tool copying an image gets the engine's parallelism without writing its own
 * window. Buffers that are not 4096-aligned go through an aligned bounce buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "volumes/vol_priv.h"

#define SYNC_CHUNK (1u << 20)
#define SYNC_DEPTH 8u
#define SYNC_ZERO_CHUNK (64u << 20)

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned pending;
    int err;
};

struct piece {
    struct vol_req req;
    struct waiter *w;
};

static void piece_done(struct vol_req *req, int res)
{
    struct piece *p = container_of(req, struct piece, req);
    struct waiter *w = p->w;
    pthread_mutex_lock(&w->lock);
    if (res < 0 && w->err == 0)
        w->err = res;
    w->pending--;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Runs @op over [off, off + len) in pieces of @chunk bytes, SYNC_DEPTH at a time. @buf may be
 * NULL for ops without data. */
static int run_sync(struct vol *v, enum vol_op op, void *buf, uint64_t len, uint64_t off,
                    uint32_t flags, uint64_t chunk)
{
    struct waiter w = {.pending = 0, .err = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    struct piece pieces[SYNC_DEPTH];
    uint64_t done = 0;
    do {
        unsigned n = 0;
        for (; n < SYNC_DEPTH && (done < len || (len == 0 && n == 0)); n++) {
            struct piece *p = &pieces[n];
            uint64_t part = MIN(chunk, len - done);
            memset(p, 0, sizeof(*p));
            p->w = &w;
            p->req.op = op;
            p->req.flags = flags;
            p->req.offset = off + done;
            p->req.length = part;
            p->req.buf = buf ? (char *)buf + done : NULL;
            p->req.done = piece_done;
            done += part;
        }
        pthread_mutex_lock(&w.lock);
        w.pending = n;
        pthread_mutex_unlock(&w.lock);
        for (unsigned i = 0; i < n; i++)
            vol_submit(v, &pieces[i].req);
        pthread_mutex_lock(&w.lock);
        while (w.pending)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
    } while (done < len && w.err == 0);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    return w.err;
}

static bool is_aligned(const void *p) { return ((uintptr_t)p % CS_BLOCK_SIZE) == 0; }

int vol_pread(struct vol *v, void *buf, uint64_t len, uint64_t off)
{
    if (is_aligned(buf))
        return run_sync(v, VOL_OP_READ, buf, len, off, 0, SYNC_CHUNK);
    void *b = aligned_alloc(CS_BLOCK_SIZE, ROUND_UP(MAX(len, (uint64_t)1), CS_BLOCK_SIZE));
    if (!b)
        return -ENOMEM;
    int r = run_sync(v, VOL_OP_READ, b, len, off, 0, SYNC_CHUNK);
    if (r == 0)
        memcpy(buf, b, len);
    free(b);
    return r;
}

int vol_pwrite(struct vol *v, const void *buf, uint64_t len, uint64_t off, uint32_t flags)
{
    if (is_aligned(buf))
        return run_sync(v, VOL_OP_WRITE, (void *)buf, len, off, flags, SYNC_CHUNK);
    void *b = aligned_alloc(CS_BLOCK_SIZE, ROUND_UP(MAX(len, (uint64_t)1), CS_BLOCK_SIZE));
    if (!b)
        return -ENOMEM;
    memcpy(b, buf, len);
    int r = run_sync(v, VOL_OP_WRITE, b, len, off, flags, SYNC_CHUNK);
    free(b);
    return r;
}

int vol_write_zeroes(struct vol *v, uint64_t off, uint64_t len, uint32_t flags)
{
    /* Unmapping costs no data I/O: one request. Allocated zeros are written: pieces. */
    uint64_t chunk = (flags & VOL_NO_UNMAP) ? SYNC_ZERO_CHUNK : MAX(len, (uint64_t)1);
    return run_sync(v, VOL_OP_WRITE_ZEROES, NULL, len, off, flags, chunk);
}

int vol_discard(struct vol *v, uint64_t off, uint64_t len)
{
    return run_sync(v, VOL_OP_DISCARD, NULL, len, off, 0, MAX(len, (uint64_t)1));
}

int vol_flush(struct vol *v)
{
    return run_sync(v, VOL_OP_FLUSH, NULL, 0, 0, 0, 1);
}

/* ------------------------------------------------------------------------------------------
 * Block status
 */

struct bs_ctx {
    struct vol_extent *out;
    size_t max, n;
    uint64_t next, end, gsz;
};

static void bs_add(struct bs_ctx *c, uint64_t off, uint64_t len, uint32_t flags)
{
    if (len == 0 || c->n > c->max)
        return;
    if (c->n > 0) {
        struct vol_extent *last = &c->out[c->n - 1];
        if (last->flags == flags && last->offset + last->length == off) {
            last->length += len;
            return;
        }
    }
    if (c->n == c->max) {
        c->n = c->max + 1; /* full: stop */
        return;
    }
    c->out[c->n++] = (struct vol_extent){off, len, flags};
}

static int bs_extent(void *ctx, const struct thin_extent *e)
{
    struct bs_ctx *c = ctx;
    uint64_t s = MAX(c->next, e->grain * c->gsz);
    uint64_t t = MIN(c->end, (e->grain + e->ngrains) * c->gsz);
    if (s > c->next)
        bs_add(c, c->next, s - c->next, VOL_EXT_HOLE | VOL_EXT_ZERO);
    bs_add(c, s, t - s, 0);
    c->next = t;
    return c->n > c->max ? 1 : 0;
}

int vol_block_status(struct vol *v, uint64_t off, uint64_t len, struct vol_extent *out,
                     size_t max, size_t *n)
{
    struct vstate *vs = v->vs;
    struct pool *pool = vs->vols->pool;
    *n = 0;
    if (off > vs->rec.size || len > vs->rec.size - off || max == 0)
        return -EINVAL;
    struct bs_ctx c = {.out = out, .max = max, .next = off, .end = off + len,
                       .gsz = vs->rec.grain_size};
    uint64_t g0 = off / c.gsz, g1 = DIV_ROUND_UP(off + len, c.gsz);
    pool_md_lock(pool);
    int r = thin_map_walk(pool, vs->root, g0, g1 - g0, vs->grain_blocks, bs_extent, &c);
    pool_md_unlock(pool);
    if (r < 0)
        return r;
    if (c.n <= c.max && c.next < c.end)
        bs_add(&c, c.next, c.end - c.next, VOL_EXT_HOLE | VOL_EXT_ZERO);
    *n = MIN(c.n, c.max);
    return 0;
}

struct copy_waiter {
    struct vol_copy c;
    struct waiter w;
};

static void copy_done(struct vol_copy *c, int res)
{
    struct copy_waiter *cw = container_of(c, struct copy_waiter, c);
    pthread_mutex_lock(&cw->w.lock);
    cw->w.err = res;
    cw->w.pending = 0;
    pthread_cond_signal(&cw->w.cond);
    pthread_mutex_unlock(&cw->w.lock);
}

int vol_copy(struct vol *dst, uint64_t dst_off, struct vol *src, uint64_t src_off, uint64_t len)
{
    struct copy_waiter cw = {.c = {.dst = dst, .src = src, .dst_off = dst_off, .src_off = src_off,
                                   .len = len, .done = copy_done},
                             .w = {.pending = 1}};
    pthread_mutex_init(&cw.w.lock, NULL);
    pthread_cond_init(&cw.w.cond, NULL);
    vol_copy_submit(&cw.c);
    pthread_mutex_lock(&cw.w.lock);
    while (cw.w.pending)
        pthread_cond_wait(&cw.w.cond, &cw.w.lock);
    pthread_mutex_unlock(&cw.w.lock);
    pthread_mutex_destroy(&cw.w.lock);
    pthread_cond_destroy(&cw.w.cond);
    return cw.w.err;
}
