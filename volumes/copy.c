/*
 * Copy by sharing: a range of one volume made to read as a range of another (or of itself)
 * by pointing the destination's map at the source's physical runs, one more reference on
 * each, and no data read or written. The copy offload of EXTENDED COPY (VMware's clones).
 *
 * A copy changes two maps at one instant: both volumes are quiesced (their requests in flight
 * finish, new ones wait) in id order, so two copies in opposite directions never wait on
 * each other, the source's extents over the range are collected and referenced, the
 * destination's range is unmapped, and the collected extents are mapped there. Quiescing
 * blocks, so copies run on a thread of their own, one at a time, and complete on the reactor
 * that submitted them. Writes after the copy go to new space on either side, as after a
 * snapshot: a run referenced twice is never overwritten in place.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "volumes/vol_priv.h"

static struct {
    pthread_once_t once;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vol_copy *head, **tail;
    int err; /* the thread could not start */
} copier = {.once = PTHREAD_ONCE_INIT,
            .lock = PTHREAD_MUTEX_INITIALIZER,
            .cond = PTHREAD_COND_INITIALIZER};

struct collected {
    struct thin_extent *e;
    size_t n, cap;
};

static int collect_one(void *ctx, const struct thin_extent *e)
{
    struct collected *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        struct thin_extent *p = realloc(c->e, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        c->e = p;
        c->cap = cap;
    }
    c->e[c->n++] = *e;
    return 0;
}

/* The maps' part of a copy, both volumes quiesced. */
static int share_range(struct pool *pool, struct vstate *dst, uint64_t dg, struct vstate *src,
                       uint64_t sg, uint64_t ngrains)
{
    struct collected c = {0};
    pool_md_lock(pool);
    int r = thin_map_walk(pool, src->root, sg, ngrains, src->grain_blocks, collect_one, &c);
    size_t taken = 0;
    /* The references first: with source and destination overlapping in one volume, the
     * unmapping below must not free what is about to be mapped again. */
    for (; r == 0 && taken < c.n; taken++)
        r = pool_ref_inc(pool, c.e[taken].pstart, c.e[taken].plen);
    if (r == 0)
        r = thin_map_remove(pool, dst->root, dg, ngrains, dst->grain_blocks, &dst->root);
    for (size_t i = 0; r == 0 && i < c.n; i++) {
        struct thin_extent e = c.e[i];
        e.grain = e.grain - sg + dg;
        r = thin_map_insert(pool, dst->root, &e, dst->grain_blocks, &dst->root);
    }
    if (r < 0 && taken > 0)
        pool_poison(pool, r, "copy by sharing"); /* references taken, maps half changed */
    dst->dirty = true;
    dst->written = true;
    bool kick = pool_needs_commit(pool);
    pool_md_unlock(pool);
    if (kick)
        pool_kick_commit(pool);
    free(c.e);
    return r;
}

static int check(const struct vol_copy *c)
{
    struct vstate *d = c->dst->vs, *s = c->src->vs;
    if (c->dst->flags & VOL_OPEN_RDONLY)
        return -EROFS;
    if (d->vols != s->vols || d->rec.grain_size != s->rec.grain_size)
        return -EXDEV;
    uint64_t g = d->rec.grain_size;
    if (c->dst_off % g || c->src_off % g || c->len % g)
        return -EXDEV;
    if (c->len == 0 || c->dst_off > d->rec.size || c->len > d->rec.size - c->dst_off ||
        c->src_off > s->rec.size || c->len > s->rec.size - c->src_off)
        return -EINVAL;
    return 0;
}

static int run_copy(struct vol_copy *c)
{
    int r = check(c);
    if (r < 0)
        return r;
    struct vstate *d = c->dst->vs, *s = c->src->vs;
    struct vstate *first = d->id <= s->id ? d : s, *second = first == d ? s : d;
    struct ioreq *q1 = vstate_quiesce(first), *q2 = NULL;
    if (q1 && second != first)
        q2 = vstate_quiesce(second);
    if (!q1 || (second != first && !q2))
        r = -ENOMEM;
    else
        r = share_range(d->vols->pool, d, c->dst_off >> d->grain_shift, s,
                        c->src_off >> s->grain_shift, c->len >> d->grain_shift);
    vstate_resume(q2);
    vstate_resume(q1);
    return r;
}

static void settle(struct vstate *vs)
{
    pthread_mutex_lock(&vs->lock);
    if (--vs->inflight == 0)
        pthread_cond_broadcast(&vs->idle);
    pthread_mutex_unlock(&vs->lock);
}

/* On the submitter's reactor. */
static void copy_done_work(struct reactor_work *w)
{
    struct vol_copy *c = container_of(w, struct vol_copy, work);
    struct vstate *d = c->dst->vs, *s = c->src->vs;
    c->done(c, c->res);
    settle(d);
    settle(s);
}

static void *copier_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&copier.lock);
    for (;;) {
        while (!copier.head)
            pthread_cond_wait(&copier.cond, &copier.lock);
        struct vol_copy *c = copier.head;
        copier.head = c->next;
        if (!copier.head)
            copier.tail = &copier.head;
        pthread_mutex_unlock(&copier.lock);
        c->res = run_copy(c);
        pool_reactor_post(c->reactor, &c->work);
        pthread_mutex_lock(&copier.lock);
    }
    return NULL;
}

static void copier_start(void)
{
    pthread_t t;
    copier.tail = &copier.head;
    copier.err = -pthread_create(&t, NULL, copier_main, NULL);
    if (copier.err == 0)
        pthread_detach(t);
}

void vol_copy_submit(struct vol_copy *c)
{
    pthread_once(&copier.once, copier_start);
    struct reactor *self = pool_reactor_self();
    c->reactor = self ? self : pool_reactor_get(0);
    c->work.fn = copy_done_work;
    c->next = NULL;
    c->res = copier.err;
    if (c->res == 0 && !c->reactor)
        c->res = -ENOMEM;
    int pre = c->res == 0 ? check(c) : c->res;
    if (pre < 0) {
        c->done(c, pre);
        return;
    }
    /* Counted in flight on both, so that neither handle closes under the copy. */
    struct vstate *vss[2] = {c->dst->vs, c->src->vs};
    for (int i = 0; i < 2; i++) {
        pthread_mutex_lock(&vss[i]->lock);
        vss[i]->inflight++;
        pthread_mutex_unlock(&vss[i]->lock);
    }
    pthread_mutex_lock(&copier.lock);
    *copier.tail = c;
    copier.tail = &c->next;
    pthread_cond_signal(&copier.cond);
    pthread_mutex_unlock(&copier.lock);
}
