/*
 * Volume I/O: the request engine behind vol_submit().
 *
 * A request runs on one reactor as a small state machine:
 *
 *   LOCK   wait for the grain lock over the grains it touches (reads share, every other
 *          request excludes), granted in arrival order;
 *   PLAN   under the md lock, look at the map and split the request into segments:
 *            READ     a mapped range read into the caller's buffer (or staged when not
 *                     4K-aligned); unmapped ranges are zero-filled;
 *            INPLACE  grains referenced only by this volume (now and in the committed
 *                     state): overwritten where they are;
 *            NEW      grains that get a new physical run: unmapped ones being written,
 *                     and shared ones (copy on write); a partly written grain is first
 *                     filled from its old data (or zeros) and written whole;
 *            UNMAP    whole grains written with zeros: unmapped rather than stored;
 *          new runs are reserved here;
 *   READ   the reads the plan needs (data for READ, old data for merges);
 *   WRITE  the writes;
 *   MAP    under the md lock, take the new runs into use and change the map;
 *   FLUSH  for FUA (and FLUSH requests): wait for a commit on the committer thread;
 *   DONE   release the grain lock (starting whoever waited) and complete.
 *
 * Nothing here blocks a reactor except the md lock (and metadata cache misses under it).
 * Data reaches a new run before the map points at it, so no read ever sees a run's stale
 * contents; the grain lock keeps a run from being freed while a read of it is in flight.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "volumes/vol_priv.h"

enum seg_kind { SEG_READ, SEG_INPLACE, SEG_NEW, SEG_UNMAP };

struct seg {
    enum seg_kind kind;
    uint64_t grain;   /* first grain (NEW, UNMAP) */
    uint32_t ngrains;
    uint64_t vstart, vend; /* request bytes this segment reads or writes */
    const void *src;  /* WRITE data for [vstart, vend), NULL for zeros */
    void *dst;        /* READ destination for [vstart, vend) */
    pblk_t run;       /* physical run: READ/INPLACE at the grain of vstart's base, NEW new */
    uint64_t run_base; /* virtual byte that run's first block holds */
    pblk_t old;       /* NEW merge: the grain's old run, or none for zeros */
    void *stage;      /* staging buffer, or NULL when direct */
    uint64_t stage_v; /* virtual byte of stage[0] */
    size_t stage_len;
    struct io_op op;
    struct ioreq *rq;
};

enum rq_state { RQ_LOCK, RQ_READING, RQ_WRITING };

struct ioreq {
    struct vol_req *req;
    struct vol *v;
    struct vstate *vs;
    struct pool *pool;
    struct reactor *reactor;
    struct reactor_work work;
    TAILQ_ENTRY(ioreq) link;
    struct ioreq *start_next; /* granted by the same release */
    uint64_t g0, g1; /* grains [g0, g1) */
    bool exclusive, granted, locked;
    bool retried;    /* planned again after a commit, for space */
    bool quiesce;    /* vstate_quiesce's: granted by a signal, not run */
    enum rq_state state;
    int pending;
    int err;
    struct seg *segs;
    size_t nsegs, capsegs;
    struct pool_flush flush;
};

static void *zero_block; /* VOL_MAX_GRAIN bytes of zeros, for writes of zeros */

static void zero_block_init(void)
{
    zero_block = aligned_alloc(CS_BLOCK_SIZE, VOL_MAX_GRAIN);
    if (zero_block)
        memset(zero_block, 0, VOL_MAX_GRAIN);
}

static int zero_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, zero_block_init);
    return zero_block ? 0 : -ENOMEM;
}

/* ------------------------------------------------------------------------------------------
 * Grain locks
 */

static bool conflicts(const struct ioreq *a, const struct ioreq *b)
{
    return (a->exclusive || b->exclusive) && a->g0 < b->g1 && b->g0 < a->g1;
}

/* May @rq start, given every request that arrived before it? vs->lock held. */
static bool can_start(struct vstate *vs, struct ioreq *rq)
{
    struct ioreq *o;
    TAILQ_FOREACH(o, &vs->reqs, link) {
        if (o == rq)
            return true;
        if (conflicts(o, rq))
            return false;
    }
    return true;
}

static void rq_run(struct ioreq *rq);

static void rq_run_work(struct reactor_work *w)
{
    rq_run(container_of(w, struct ioreq, work));
}

/* Queues @rq for its grains in arrival order; true when it may start now, otherwise it is
 * started by the lock_release that grants it. */
static bool lock_acquire(struct ioreq *rq)
{
    struct vstate *vs = rq->vs;
    pthread_mutex_lock(&vs->lock);
    TAILQ_INSERT_TAIL(&vs->reqs, rq, link);
    rq->locked = true;
    bool granted = rq->granted = can_start(vs, rq);
    pthread_mutex_unlock(&vs->lock);
    /* Not rq->granted: once unlocked, a release on another thread may grant, run and free
     * a request that had to wait. */
    return granted;
}

static void lock_release(struct ioreq *rq);

/*
 * Quiescing: a request over every grain, queued like any other, that never runs on a reactor:
 * once granted, no request of the volume is in flight, and those that arrive wait behind it.
 */
struct ioreq *vstate_quiesce(struct vstate *vs)
{
    struct ioreq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->vs = vs;
    q->pool = vs->vols->pool;
    q->exclusive = true;
    q->quiesce = true;
    q->g0 = 0;
    q->g1 = UINT64_MAX;
    if (!lock_acquire(q)) {
        pthread_mutex_lock(&vs->lock);
        while (!q->granted)
            pthread_cond_wait(&vs->idle, &vs->lock);
        pthread_mutex_unlock(&vs->lock);
    }
    return q;
}

void vstate_resume(struct ioreq *q)
{
    if (!q)
        return;
    lock_release(q);
    free(q);
}

static void lock_release(struct ioreq *rq)
{
    struct vstate *vs = rq->vs;
    if (!rq->locked)
        return;
    struct ioreq *start = NULL, **tail = &start;
    pthread_mutex_lock(&vs->lock);
    TAILQ_REMOVE(&vs->reqs, rq, link);
    rq->locked = false;
    struct ioreq *o;
    TAILQ_FOREACH(o, &vs->reqs, link) {
        if (!o->granted && can_start(vs, o)) {
            o->granted = true;
            *tail = o;
            tail = &o->start_next;
        }
    }
    *tail = NULL;
    pthread_mutex_unlock(&vs->lock);
    while (start) {
        struct ioreq *next = start->start_next;
        if (start->quiesce) {
            pthread_mutex_lock(&vs->lock);
            pthread_cond_broadcast(&vs->idle);
            pthread_mutex_unlock(&vs->lock);
        } else {
            start->work.fn = rq_run_work;
            pool_reactor_post(start->reactor, &start->work);
        }
        start = next;
    }
}

/* ------------------------------------------------------------------------------------------
 * Completion
 */

static void rq_free(struct ioreq *rq)
{
    for (size_t i = 0; i < rq->nsegs; i++)
        free(rq->segs[i].stage);
    free(rq->segs);
    free(rq);
}

static void rq_complete(struct ioreq *rq, int err)
{
    struct vstate *vs = rq->vs;
    struct vol_req *req = rq->req;
    lock_release(rq);
    rq_free(rq);
    req->internal = NULL;
    req->done(req, err);
    pthread_mutex_lock(&vs->lock);
    if (--vs->inflight == 0)
        pthread_cond_broadcast(&vs->idle);
    pthread_mutex_unlock(&vs->lock);
}

/* Gives back runs reserved for NEW segments that never reached the map. */
static void unreserve_all(struct ioreq *rq)
{
    bool any = false;
    for (size_t i = 0; i < rq->nsegs; i++)
        any |= rq->segs[i].kind == SEG_NEW && !pblk_is_none(rq->segs[i].run);
    if (!any)
        return;
    pool_md_lock(rq->pool);
    for (size_t i = 0; i < rq->nsegs; i++) {
        struct seg *s = &rq->segs[i];
        if (s->kind == SEG_NEW && !pblk_is_none(s->run)) {
            pool_unreserve(rq->pool, s->run, (uint64_t)s->ngrains * rq->vs->grain_blocks);
            s->run = PBLK_NONE;
        }
    }
    pool_md_unlock(rq->pool);
}

static void flush_done(struct reactor_work *w)
{
    struct pool_flush *f = container_of(w, struct pool_flush, work);
    struct ioreq *rq = container_of(f, struct ioreq, flush);
    rq_complete(rq, f->result);
}

static void start_flush(struct ioreq *rq)
{
    rq->flush.work.fn = flush_done;
    rq->flush.reactor = rq->reactor;
    pool_flush_async(rq->pool, &rq->flush);
}

/* ------------------------------------------------------------------------------------------
 * Planning
 */

static struct seg *seg_add(struct ioreq *rq, enum seg_kind kind)
{
    if (rq->nsegs == rq->capsegs) {
        size_t cap = rq->capsegs ? rq->capsegs * 2 : 8;
        struct seg *s = realloc(rq->segs, cap * sizeof(*s));
        if (!s)
            return NULL;
        rq->segs = s;
        rq->capsegs = cap;
    }
    struct seg *s = &rq->segs[rq->nsegs++];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->rq = rq;
    return s;
}

static bool aligned(uint64_t a, uint64_t b) { return a % CS_BLOCK_SIZE == 0 && b % CS_BLOCK_SIZE == 0; }

struct read_plan {
    struct ioreq *rq;
    uint64_t next; /* request byte up to which the buffer is filled or planned */
    int err;
};

static int plan_read_extent(void *ctx, const struct thin_extent *e)
{
    struct read_plan *p = ctx;
    struct ioreq *rq = p->rq;
    struct vol_req *req = rq->req;
    uint64_t gsz = rq->vs->rec.grain_size;
    if (e->flags & THIN_EXT_COMPRESSED) {
        log_err("volume %s: compressed grain %llu cannot be read by this version",
                rq->vs->rec.name, (unsigned long long)e->grain);
        return -EIO;
    }
    uint64_t vs = MAX(req->offset, e->grain * gsz);
    uint64_t ve = MIN(req->offset + req->length, (e->grain + e->ngrains) * gsz);
    if (vs >= ve)
        return 0;
    if (vs > p->next) /* a hole before this extent */
        memset((char *)req->buf + (p->next - req->offset), 0, vs - p->next);
    struct seg *s = seg_add(rq, SEG_READ);
    if (!s)
        return -ENOMEM;
    s->vstart = vs;
    s->vend = ve;
    s->dst = (char *)req->buf + (vs - req->offset);
    s->run = e->pstart;
    s->run_base = e->grain * gsz;
    p->next = ve;
    return 0;
}

static int plan_read(struct ioreq *rq)
{
    struct vol_req *req = rq->req;
    struct read_plan p = {.rq = rq, .next = req->offset};
    int r;
    if (rq->g1 - rq->g0 == 1) {
        /* Within one grain (the common small read): one lookup, not a walk. */
        struct thin_extent e;
        r = thin_map_lookup(rq->pool, rq->vs->root, rq->g0, &e);
        if (r == 0)
            r = plan_read_extent(&p, &e);
        else if (r == -ENOENT)
            r = 0;
    } else {
        r = thin_map_walk(rq->pool, rq->vs->root, rq->g0, rq->g1 - rq->g0,
                          rq->vs->grain_blocks, plan_read_extent, &p);
    }
    uint64_t end = req->offset + req->length;
    if (r == 0 && p.next < end)
        memset((char *)req->buf + (p.next - req->offset), 0, end - p.next);
    return r;
}

/* The request's data for virtual byte @v, or NULL for zeros. */
static const void *src_at(struct ioreq *rq, uint64_t v)
{
    struct vol_req *req = rq->req;
    return req->op == VOL_OP_WRITE ? (const char *)req->buf + (v - req->offset) : NULL;
}

/* Does the request write zeros over [vs, ve)? */
static bool writes_zeros(struct ioreq *rq, uint64_t vs, uint64_t ve)
{
    const void *p = src_at(rq, vs);
    return !p || buf_is_zero(p, ve - vs);
}

/* Adds @g (covering [vs, ve) of it) to the last segment when it continues it. */
static bool extend_last(struct ioreq *rq, enum seg_kind kind, uint64_t g, uint64_t vs,
                        uint64_t ve, bool zeros, bool direct, pblk_t run, uint64_t run_base)
{
    if (rq->nsegs == 0)
        return false;
    struct seg *s = &rq->segs[rq->nsegs - 1];
    uint64_t gsz = rq->vs->rec.grain_size;
    if (s->kind != kind || s->grain + s->ngrains != g || s->vend != vs)
        return false;
    if (s->ngrains >= THIN_MAX_EXTENT_GRAINS / 2)
        return false;
    if (zeros && s->vend - s->vstart + (ve - vs) > VOL_MAX_GRAIN)
        return false; /* writes of zeros come from the zero block */
    switch (kind) {
    case SEG_UNMAP:
        break;
    case SEG_INPLACE:
        /* Physically contiguous, same kind of source, and no partial grain in the middle. */
        if ((s->src == NULL) != zeros || run.v - s->run.v != (run_base - s->run_base) / CS_BLOCK_SIZE ||
            s->vend % gsz != 0)
            return false;
        break;
    case SEG_NEW:
        /* Only whole grains written straight from the caller's buffer (or zeros) merge. */
        if (!direct || s->stage_len || (s->src == NULL) != zeros ||
            s->vend % gsz != 0 || vs % gsz != 0)
            return false;
        break;
    case SEG_READ:
        return false;
    }
    s->ngrains++;
    s->vend = ve;
    return true;
}

static int plan_grain(struct ioreq *rq, uint64_t g, const struct thin_extent *e, bool excl)
{
    struct vol_req *req = rq->req;
    struct vstate *vs = rq->vs;
    uint64_t gsz = vs->rec.grain_size;
    uint64_t gb = g * gsz, ge = gb + gsz;
    uint64_t s = MAX(req->offset, gb), t = MIN(req->offset + req->length, ge);
    bool whole = s == gb && t == ge;
    bool zeros = writes_zeros(rq, s, t);
    bool no_unmap = req->flags & VOL_NO_UNMAP;
    bool compressed = e && (e->flags & THIN_EXT_COMPRESSED);
    pblk_t run = PBLK_NONE;
    if (e && !compressed)
        run = pblk_add(e->pstart, (g - e->grain) * vs->grain_blocks);

    if (zeros && !no_unmap && (whole || !e)) {
        /* A grain of zeros, or zeros into a grain that already reads as zeros. */
        if (!e)
            return 0;
        if (extend_last(rq, SEG_UNMAP, g, s, t, true, false, PBLK_NONE, 0))
            return 0;
        struct seg *sg = seg_add(rq, SEG_UNMAP);
        if (!sg)
            return -ENOMEM;
        sg->grain = g;
        sg->ngrains = 1;
        sg->vstart = s;
        sg->vend = t;
        return 0;
    }
    const void *src = zeros && !no_unmap ? NULL : src_at(rq, s);
    if (e && excl && !compressed) {
        if (extend_last(rq, SEG_INPLACE, g, s, t, src == NULL, false, run, gb))
            return 0;
        struct seg *sg = seg_add(rq, SEG_INPLACE);
        if (!sg)
            return -ENOMEM;
        sg->grain = g;
        sg->ngrains = 1;
        sg->vstart = s;
        sg->vend = t;
        sg->src = src;
        sg->run = run;
        sg->run_base = gb;
        return 0;
    }
    if (compressed) {
        log_err("volume %s: compressed grain %llu cannot be rewritten by this version",
                vs->rec.name, (unsigned long long)g);
        return -EIO;
    }
    /* A new run: direct when whole and aligned, else staged (merge with old data). */
    bool direct = whole;
    if (extend_last(rq, SEG_NEW, g, s, t, src == NULL, direct, PBLK_NONE, 0))
        return 0;
    struct seg *sg = seg_add(rq, SEG_NEW);
    if (!sg)
        return -ENOMEM;
    sg->grain = g;
    sg->ngrains = 1;
    sg->vstart = s;
    sg->vend = t;
    sg->src = src;
    sg->run_base = gb;
    if (!direct) {
        sg->old = e ? run : PBLK_NONE;
        sg->stage_v = gb;
        sg->stage_len = gsz;
    }
    return 0;
}

/* Reserves runs for NEW segments, splitting a segment when space comes in pieces. */
static int reserve_runs(struct ioreq *rq)
{
    struct vstate *vs = rq->vs;
    uint64_t gb = vs->grain_blocks, gsz = vs->rec.grain_size;
    for (size_t i = 0; i < rq->nsegs; i++) {
        struct seg *s = &rq->segs[i];
        if (s->kind != SEG_NEW)
            continue;
        pblk_t start;
        uint64_t got;
        int r = pool_reserve(rq->pool, &vs->cursor, s->ngrains * gb, gb, &start, &got);
        if (r < 0)
            return r;
        uint64_t grains = got / gb;
        if (got % gb)
            pool_unreserve(rq->pool, pblk_add(start, grains * gb), got % gb);
        s->run = start;
        if (grains < s->ngrains) {
            /* Split: the rest becomes the next segment, reserved on the next turn. */
            struct seg rest = *s;
            rest.grain += grains;
            rest.ngrains -= (uint32_t)grains;
            rest.vstart = rest.grain * gsz;
            rest.run = PBLK_NONE;
            rest.run_base = rest.vstart;
            if (rest.src)
                rest.src = (const char *)s->src + (rest.vstart - s->vstart);
            s->ngrains = (uint32_t)grains;
            s->vend = rest.vstart;
            struct seg *n = seg_add(rq, SEG_NEW);
            if (!n)
                return -ENOMEM;
            s = &rq->segs[i]; /* seg_add may move the array */
            memmove(&rq->segs[i + 2], &rq->segs[i + 1], (rq->nsegs - i - 2) * sizeof(*s));
            rq->segs[i + 1] = rest;
        }
    }
    return 0;
}

static int plan_write(struct ioreq *rq)
{
    struct vstate *vs = rq->vs;
    struct pool *pool = rq->pool;
    uint64_t g = rq->g0;
    while (g < rq->g1) {
        struct thin_extent e;
        int r = thin_map_lookup(pool, vs->root, g, &e);
        uint64_t n = 0;
        if (r == 0 && (vs->rec.flags & VOLF_SHARED)) {
            /* Sharing is taken lazily: until this volume's leaf is its own, the extent's
             * count does not say whether a snapshot or clone also maps it. */
            r = btree_touch(pool, TREE_MAPPING, vs->root, g, &vs->root);
            vs->dirty = true;
        }
        if (r == 0) {
            n = MIN(e.grain + e.ngrains, rq->g1) - g;
            int excl = 0;
            if (!(e.flags & THIN_EXT_COMPRESSED)) {
                pblk_t run = pblk_add(e.pstart, (g - e.grain) * vs->grain_blocks);
                excl = pool_ref_exclusive(pool, run, n * vs->grain_blocks);
                if (excl < 0)
                    return excl;
            }
            for (uint64_t i = 0; i < n && r == 0; i++)
                r = plan_grain(rq, g + i, &e, excl);
        } else if (r == -ENOENT) {
            uint64_t k;
            struct disk_extent dv;
            r = btree_lookup_ge(pool, TREE_MAPPING, vs->root, g, &k, &dv);
            if (r == -ENOENT)
                k = rq->g1;
            else if (r < 0)
                return r;
            n = MIN(k, rq->g1) - g;
            r = 0;
            /* Zeros into unmapped grains change nothing: skip the run whatever its size. */
            bool zeros_only = rq->req->op != VOL_OP_WRITE && !(rq->req->flags & VOL_NO_UNMAP);
            for (uint64_t i = 0; i < n && r == 0 && !zeros_only; i++)
                r = plan_grain(rq, g + i, NULL, false);
        }
        if (r < 0)
            return r;
        g += n;
    }
    return reserve_runs(rq);
}

/* ------------------------------------------------------------------------------------------
 * Execution
 */

static void seg_io_done(struct io_op *op, int res)
{
    struct seg *s = container_of(op, struct seg, op);
    struct ioreq *rq = s->rq;
    if (res < 0 && rq->err == 0) {
        /* Logged once per request: the member layer knows no volume, this layer does. */
        log_err("volume %s/%s: %s of %llu bytes at offset %llu (block %#llx) failed: %s",
                pool_name(rq->pool), rq->vs->name, rq->state == RQ_WRITING ? "write" : "read",
                (unsigned long long)(s->vend - s->vstart), (unsigned long long)s->vstart,
                (unsigned long long)s->run.v, strerror(-res));
        rq->err = res;
    }
    if (--rq->pending == 0)
        rq_run(rq);
}

static int stage_alloc(struct seg *s, uint64_t v, size_t len)
{
    s->stage = aligned_alloc(CS_BLOCK_SIZE, len);
    if (!s->stage)
        return -ENOMEM;
    s->stage_v = v;
    s->stage_len = len;
    return 0;
}

/* Issues the reads of the READ phase; returns how many. */
static int issue_reads(struct ioreq *rq)
{
    int n = 0;
    for (size_t i = 0; i < rq->nsegs; i++) {
        struct seg *s = &rq->segs[i];
        s->op.done = seg_io_done;
        if (s->kind == SEG_READ) {
            uint64_t off = s->vstart - s->run_base;
            if (aligned(s->vstart, s->vend) && ((uintptr_t)s->dst % CS_BLOCK_SIZE) == 0) {
                pool_data_read(rq->pool, s->run, off, s->dst, s->vend - s->vstart, &s->op);
            } else {
                uint64_t a = ROUND_DOWN(s->vstart, CS_BLOCK_SIZE);
                uint64_t b = ROUND_UP(s->vend, CS_BLOCK_SIZE);
                int r = stage_alloc(s, a, b - a);
                if (r < 0)
                    return r;
                pool_data_read(rq->pool, s->run, a - s->run_base, s->stage, b - a, &s->op);
            }
            n++;
        } else if (s->kind == SEG_INPLACE && !aligned(s->vstart, s->vend)) {
            uint64_t a = ROUND_DOWN(s->vstart, CS_BLOCK_SIZE);
            uint64_t b = ROUND_UP(s->vend, CS_BLOCK_SIZE);
            int r = stage_alloc(s, a, b - a);
            if (r < 0)
                return r;
            pool_data_read(rq->pool, s->run, a - s->run_base, s->stage, b - a, &s->op);
            n++;
        } else if (s->kind == SEG_NEW && s->stage_len && !s->stage) {
            int r = stage_alloc(s, s->stage_v, s->stage_len);
            if (r < 0)
                return r;
            if (pblk_is_none(s->old)) {
                memset(s->stage, 0, s->stage_len);
            } else {
                pool_data_read(rq->pool, s->old, 0, s->stage, s->stage_len, &s->op);
                n++;
            }
        }
    }
    return n;
}

static void fill_stage(struct seg *s)
{
    char *at = (char *)s->stage + (s->vstart - s->stage_v);
    if (s->src)
        memcpy(at, s->src, s->vend - s->vstart);
    else
        memset(at, 0, s->vend - s->vstart);
}

static int issue_writes(struct ioreq *rq)
{
    int n = 0;
    for (size_t i = 0; i < rq->nsegs; i++) {
        struct seg *s = &rq->segs[i];
        if (s->kind != SEG_INPLACE && s->kind != SEG_NEW)
            continue;
        const void *data;
        uint64_t v;
        size_t len;
        if (s->stage) {
            fill_stage(s);
            data = s->stage;
            v = s->stage_v;
            len = s->stage_len;
        } else {
            v = s->vstart;
            len = s->vend - s->vstart;
            data = s->src ? s->src : zero_block; /* zero segments stay within the block */
        }
        s->op.done = seg_io_done;
        pool_data_write(rq->pool, s->run, v - s->run_base, data, len, &s->op);
        n++;
    }
    return n;
}

static int apply_map(struct ioreq *rq)
{
    struct vstate *vs = rq->vs;
    struct pool *pool = rq->pool;
    int r = 0;
    bool changed = false;
    pool_md_lock(pool);
    for (size_t i = 0; i < rq->nsegs && r == 0; i++) {
        struct seg *s = &rq->segs[i];
        if (s->kind == SEG_NEW) {
            uint64_t plen = (uint64_t)s->ngrains * vs->grain_blocks;
            struct thin_extent e = {
                .grain = s->grain, .ngrains = s->ngrains, .pstart = s->run, .plen = (uint32_t)plen};
            r = pool_ref_take(pool, s->run, plen);
            s->run = PBLK_NONE; /* taken: no longer ours to give back */
            if (r == 0)
                r = thin_map_insert(pool, vs->root, &e, vs->grain_blocks, &vs->root);
            changed = true;
        } else if (s->kind == SEG_UNMAP) {
            r = thin_map_remove(pool, vs->root, s->grain, s->ngrains, vs->grain_blocks, &vs->root);
            changed = true;
        } else if (s->kind == SEG_INPLACE) {
            vs->written = true;
        }
    }
    if (changed) {
        vs->dirty = true;
        vs->written = true;
    }
    if (r < 0)
        pool_poison(pool, r, "map update");
    bool kick = pool_needs_commit(pool);
    pool_md_unlock(pool);
    if (kick)
        pool_kick_commit(pool);
    return r;
}

static void retry_done(struct reactor_work *w)
{
    struct pool_flush *f = container_of(w, struct pool_flush, work);
    struct ioreq *rq = container_of(f, struct ioreq, flush);
    if (f->result < 0) {
        rq_complete(rq, f->result);
        return;
    }
    rq_run(rq); /* plan again, with whatever the commit made free */
}

/*
 * Space freed in the open transaction becomes allocatable only when it commits: a write that
 * finds the pool full commits once and plans again before it reports -ENOSPC.
 */
static bool retry_after_commit(struct ioreq *rq)
{
    if (rq->retried)
        return false;
    rq->retried = true;
    unreserve_all(rq);
    rq->nsegs = 0;
    rq->state = RQ_LOCK;
    rq->flush.work.fn = retry_done;
    rq->flush.reactor = rq->reactor;
    pool_flush_async(rq->pool, &rq->flush);
    return true;
}

static void rq_fail(struct ioreq *rq, int err)
{
    unreserve_all(rq);
    rq_complete(rq, err);
}

/* Advances the request; called to start it and after each phase's I/O completes. */
static void rq_run(struct ioreq *rq)
{
    struct vol_req *req = rq->req;
    int n;
    switch (rq->state) {
    case RQ_LOCK:
        pool_md_lock(rq->pool);
        n = req->op == VOL_OP_READ ? plan_read(rq) : plan_write(rq);
        pool_md_unlock(rq->pool);
        if (n == -ENOSPC && retry_after_commit(rq))
            return;
        if (n == 0)
            n = issue_reads(rq);
        if (n < 0) {
            rq_fail(rq, n);
            return;
        }
        rq->state = RQ_READING;
        rq->pending = n;
        if (n > 0)
            return;
        __attribute__((fallthrough));
    case RQ_READING:
        if (rq->err) {
            rq_fail(rq, rq->err);
            return;
        }
        if (req->op == VOL_OP_READ) {
            for (size_t i = 0; i < rq->nsegs; i++) {
                struct seg *s = &rq->segs[i];
                if (s->stage)
                    memcpy(s->dst, (char *)s->stage + (s->vstart - s->stage_v),
                           s->vend - s->vstart);
            }
            rq_complete(rq, 0);
            return;
        }
        n = issue_writes(rq);
        if (n < 0) {
            rq_fail(rq, n);
            return;
        }
        rq->state = RQ_WRITING;
        rq->pending = n;
        if (n > 0)
            return;
        __attribute__((fallthrough));
    case RQ_WRITING:
        if (rq->err) {
            rq_fail(rq, rq->err);
            return;
        }
        n = apply_map(rq);
        if (n < 0) {
            rq_fail(rq, n);
            return;
        }
        if (req->flags & VOL_FUA) {
            lock_release(rq);
            start_flush(rq);
            return;
        }
        rq_complete(rq, 0);
        return;
    }
}

static void rq_start_work(struct reactor_work *w)
{
    struct ioreq *rq = container_of(w, struct ioreq, work);
    if (rq->req->op == VOL_OP_FLUSH) {
        start_flush(rq);
        return;
    }
    rq_run(rq);
}

void vol_submit(struct vol *v, struct vol_req *req)
{
    struct vstate *vs = v->vs;
    int err = zero_init();
    uint64_t size = vs->rec.size;
    bool write = req->op != VOL_OP_READ && req->op != VOL_OP_FLUSH;
    if (err == 0 && write && (v->flags & VOL_OPEN_RDONLY))
        err = -EROFS;
    else if (err == 0 && req->op != VOL_OP_FLUSH &&
             (req->offset % 512 || req->length % 512 || req->offset > size ||
              req->length > size - req->offset))
        err = -EINVAL;
    else if (err == 0 && (req->op == VOL_OP_READ || req->op == VOL_OP_WRITE) && !req->buf)
        err = -EINVAL;
    if (err == 0 && req->length == 0 && req->op != VOL_OP_FLUSH) {
        req->done(req, 0);
        return;
    }
    struct ioreq *rq = NULL;
    if (err == 0) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            err = -ENOMEM;
    }
    struct reactor *self = pool_reactor_self();
    pthread_mutex_lock(&vs->lock);
    unsigned ri = vs->next_reactor++;
    pthread_mutex_unlock(&vs->lock);
    if (err == 0 && !self && !(rq->reactor = pool_reactor_get(ri)))
        err = -ENOMEM;
    if (err < 0) {
        free(rq);
        req->done(req, err);
        return;
    }
    if (self)
        rq->reactor = self;
    pthread_mutex_lock(&vs->lock);
    vs->inflight++;
    pthread_mutex_unlock(&vs->lock);
    rq->req = req;
    rq->v = v;
    rq->vs = vs;
    rq->pool = vs->vols->pool;
    rq->exclusive = req->op != VOL_OP_READ;
    rq->g0 = req->offset >> vs->grain_shift;
    rq->g1 = (req->offset + req->length + vs->rec.grain_size - 1) >> vs->grain_shift;
    req->internal = rq;
    rq->work.fn = rq_start_work;
    /* The grain lock is queued here, in the caller's order, whichever reactor runs it. */
    if (req->op != VOL_OP_FLUSH && !lock_acquire(rq))
        return;
    if (self)
        rq_start_work(&rq->work);
    else
        pool_reactor_post(rq->reactor, &rq->work);
}
