/*
 * The space map: which blocks are free, and how many references every other block has.
 *
 * On disk, reference counts live in the reference-count tree (TREE_REFCOUNT) as runs of equal
 * counts keyed by their first pblk; a block with no run has count 0 and is free.
 *
 * In memory, during a transaction:
 *   - free runs per member (red-black trees), built at open from the gaps between counted
 *     runs. Allocation takes from them; nothing is ever returned to them before the commit
 *     that made it free (a block freed now may still be referenced by the committed state,
 *     and reusing it would let a crash show one volume's new data through another's map);
 *   - deltas: pending count changes per run. A run taken from the free runs in this
 *     transaction is "fresh": its delta is its whole count, so when decrements bring it back
 *     to zero it is known freed at once. Other runs are known freed when the commit folds
 *     their deltas into the tree and a count reaches zero;
 *   - the freed list, released to the free runs after the commit is durable.
 *
 * The fold (sm_fold, at commit) applies the deltas to the reference-count tree. Changing
 * that tree shadows and allocates its own nodes, which records further deltas; the fold
 * repeats until none are left. It terminates because nodes shadowed once in a transaction
 * are dirty and are modified in place afterwards. Nodes of this tree are never shared, so
 * the fold never needs a count from the tree it is changing.
 *
 * Threads: md lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pool/priv.h"

#define STRIPE_BLOCKS 256u /* 1 MiB: a volume's allocations move to the next member after this */

static int free_cmp(struct free_run *a, struct free_run *b)
{
    return a->start < b->start ? -1 : a->start > b->start;
}
RB_GENERATE_STATIC(free_tree, free_run, rb, free_cmp)

static int delta_cmp(struct delta_run *a, struct delta_run *b)
{
    return a->start < b->start ? -1 : a->start > b->start;
}
RB_GENERATE_STATIC(delta_tree, delta_run, rb, delta_cmp)

static int refcount_check(uint64_t key, const void *value, char *why, size_t len)
{
    const struct disk_refcount *v = value;
    if (v->len == 0 || v->count == 0 || key + v->len < key) {
        snprintf(why, len, "run %#llx+%llu with count %u", (unsigned long long)key,
                 (unsigned long long)v->len, v->count);
        return -EUCLEAN;
    }
    return 0;
}

static const struct btree_type refcount_type = {
    .type = TREE_REFCOUNT,
    .value_size = sizeof(struct disk_refcount),
    .name = "refcount",
    .refs = NULL, /* counts are not references */
    .check = refcount_check,
};

void sm_register(void) { btree_type_register(&refcount_type); }

/* ------------------------------------------------------------------------------------------
 * Free runs
 */

/* The run with the greatest start <= off, or NULL. */
static struct free_run *free_find_le(struct free_tree *t, uint64_t off)
{
    struct free_run key = {.start = off};
    struct free_run *r = RB_NFIND(free_tree, t, &key);
    if (r && r->start == off)
        return r;
    return r ? RB_PREV(free_tree, t, r) : RB_MAX(free_tree, t);
}

void sm_free_insert(struct pool *pool, uint32_t member, uint64_t start, uint64_t len)
{
    struct member *m = &pool->members[member];
    struct free_run *prev = free_find_le(&m->free, start);
    struct free_run *next = prev ? RB_NEXT(free_tree, &m->free, prev)
                                 : RB_MIN(free_tree, &m->free);
    m->free_blocks += len;
    if (prev && prev->start + prev->len == start) {
        prev->len += len;
        if (next && prev->start + prev->len == next->start) {
            prev->len += next->len;
            RB_REMOVE(free_tree, &m->free, next);
            free(next);
        }
        return;
    }
    if (next && start + len == next->start) {
        next->start = start; /* the order of keys is unchanged */
        next->len += len;
        return;
    }
    struct free_run *r = malloc(sizeof(*r));
    if (!r) {
        /* Out of memory: the space is lost until the pool is reopened, never corrupted. */
        m->free_blocks -= len;
        log_err("pool %s: out of memory tracking free space", pool->name);
        return;
    }
    r->start = start;
    r->len = len;
    RB_INSERT(free_tree, &m->free, r);
}

/* Removes [off, off + len) from run @r, which contains it. */
static int free_carve(struct member *m, struct free_run *r, uint64_t off, uint64_t len)
{
    uint64_t end = off + len, rend = r->start + r->len;
    m->free_blocks -= len;
    if (off == r->start && end == rend) {
        RB_REMOVE(free_tree, &m->free, r);
        free(r);
    } else if (off == r->start) {
        r->start = end;
        r->len = rend - end;
    } else if (end == rend) {
        r->len = off - r->start;
    } else {
        struct free_run *tail = malloc(sizeof(*tail));
        if (!tail) {
            m->free_blocks += len;
            return -ENOMEM;
        }
        r->len = off - r->start;
        tail->start = end;
        tail->len = rend - end;
        RB_INSERT(free_tree, &m->free, tail);
    }
    return 0;
}

uint64_t sm_free_blocks(const struct pool *pool)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < pool->nmembers; i++)
        n += pool->members[i].free_blocks;
    return n;
}

void sm_compute_reserve(struct pool *pool)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < pool->nmembers; i++)
        total += pool->members[i].blocks - CS_FIRST_DATA_BLOCK - 1;
    /* 1% of the pool, between 1 MiB and 1 GiB: room for the metadata that deleting,
     * discarding and committing need when data has filled everything else. */
    uint64_t r = total / 100;
    pool->reserve_blocks = MIN(MAX(r, (uint64_t)256), (uint64_t)262144);
}

/*
 * Finds up to @want blocks (at least @min) in member @m from offset @hint on, wrapping
 * around. Prefers the run at the hint so that sequential allocations stay sequential.
 */
static int member_alloc(struct member *m, uint64_t hint, uint64_t want, uint64_t min,
                        uint64_t *start, uint64_t *got)
{
    if (m->free_blocks < min)
        return -ENOSPC;
    struct free_run *r = free_find_le(&m->free, hint);
    if (r && r->start + r->len > hint && r->start + r->len - hint >= min) {
        *start = hint;
        *got = MIN(want, r->start + r->len - hint);
        return free_carve(m, r, *start, *got);
    }
    /* First run at or after the hint long enough, then from the beginning. */
    struct free_run key = {.start = hint};
    for (int pass = 0; pass < 2; pass++) {
        for (r = pass ? RB_MIN(free_tree, &m->free) : RB_NFIND(free_tree, &m->free, &key); r;
             r = RB_NEXT(free_tree, &m->free, r)) {
            if (pass && r->start >= hint)
                break;
            if (r->len >= min) {
                *start = r->start;
                *got = MIN(want, r->len);
                return free_carve(m, r, *start, *got);
            }
        }
    }
    return -ENOSPC;
}

static int alloc_near(struct pool *pool, struct alloc_cursor *cur, uint64_t want, uint64_t min,
                      pblk_t *start, uint64_t *got)
{
    unsigned n = pool->nmembers;
    if (n > 1 && cur->stripe_left == 0) {
        /* Move to the next member, at the place this cursor last left it when it can. */
        uint32_t next = pblk_is_none(cur->next) ? pool->next_stripe_member++ % n
                                                : (pblk_member(cur->next) + 1) % n;
        cur->next = pblk_make(next, pool->members[next].hint);
        cur->stripe_left = STRIPE_BLOCKS;
    }
    if (n > 1)
        want = MIN(want, MAX(cur->stripe_left, min));
    uint32_t first = pblk_is_none(cur->next) ? 0 : pblk_member(cur->next);
    uint64_t hint = pblk_is_none(cur->next) ? CS_FIRST_DATA_BLOCK : pblk_offset(cur->next);
    for (unsigned i = 0; i < n; i++) {
        uint32_t mi = (first + i) % n;
        uint64_t s, g;
        int r = member_alloc(&pool->members[mi], i == 0 ? hint : CS_FIRST_DATA_BLOCK, want,
                             min, &s, &g);
        if (r == -ENOSPC)
            continue;
        if (r < 0)
            return r;
        *start = pblk_make(mi, s);
        *got = g;
        pool->members[mi].hint = s + g;
        cur->next = pblk_make(mi, s + g);
        cur->stripe_left = cur->stripe_left > g ? cur->stripe_left - g : 0;
        return 0;
    }
    return -ENOSPC;
}

int pool_reserve(struct pool *pool, struct alloc_cursor *cur, uint64_t want, uint64_t min,
                 pblk_t *start, uint64_t *got)
{
    if (pool->poisoned)
        return pool->poisoned;
    if (min == 0 || want < min)
        return -EINVAL;
    if (sm_free_blocks(pool) < pool->reserve_blocks + min)
        return -ENOSPC;
    want = MIN(want, sm_free_blocks(pool) - pool->reserve_blocks);
    int r = alloc_near(pool, cur, want, min, start, got);
    if (r == 0)
        pool->reserved_blocks += *got;
    return r;
}

void pool_unreserve(struct pool *pool, pblk_t start, uint64_t n)
{
    pool->reserved_blocks -= n;
    sm_free_insert(pool, pblk_member(start), pblk_offset(start), n);
}

/* ------------------------------------------------------------------------------------------
 * Deltas
 */

static struct delta_run *delta_find_le(struct pool *pool, uint64_t x)
{
    struct delta_run key = {.start = x};
    struct delta_run *r = RB_NFIND(delta_tree, &pool->deltas, &key);
    if (r && r->start == x)
        return r;
    return r ? RB_PREV(delta_tree, &pool->deltas, r) : RB_MAX(delta_tree, &pool->deltas);
}

/* The first run that ends after @x (it may start after @x), or NULL. */
static struct delta_run *delta_first_after(struct pool *pool, uint64_t x)
{
    struct delta_run *r = delta_find_le(pool, x);
    if (!r)
        return RB_MIN(delta_tree, &pool->deltas);
    return r->start + r->len > x ? r : RB_NEXT(delta_tree, &pool->deltas, r);
}

static void note_freed(struct pool *pool, pblk_t start, uint64_t len)
{
    struct freed_run *f = malloc(sizeof(*f));
    if (!f) {
        log_err("pool %s: out of memory tracking freed space", pool->name);
        return;
    }
    f->start = start;
    f->len = len;
    f->next = pool->freed;
    pool->freed = f;
    pool->pending_free_blocks += len;
    cache_forget(pool->cache, start, len);
}

/* Cuts run @r at @x (inside it): @r keeps the part before, the part from @x is inserted and
 * returned (NULL: out of memory). */
static struct delta_run *delta_cut(struct pool *pool, struct delta_run *r, uint64_t x)
{
    struct delta_run *t = malloc(sizeof(*t));
    if (!t)
        return NULL;
    *t = *r;
    t->start = x;
    t->len = r->start + r->len - x;
    r->len = x - r->start;
    RB_INSERT(delta_tree, &pool->deltas, t);
    return t;
}

/* Joins run @r into the run before it when they touch and agree. Accepts NULL. */
static void delta_join_prev(struct pool *pool, struct delta_run *r)
{
    struct delta_run *p = r ? RB_PREV(delta_tree, &pool->deltas, r) : NULL;
    if (p && p->start + p->len == r->start && p->delta == r->delta && p->fresh == r->fresh) {
        p->len += r->len;
        RB_REMOVE(delta_tree, &pool->deltas, r);
        free(r);
    }
}

/*
 * Adds @d to the count of every block of [start, start + len). @take: the run comes from a
 * reservation and gets its first reference (fresh). One lookup finds the place; the runs of
 * the range are then walked in order, cut at its ends, and joined to their neighbours at
 * its ends when they agree.
 */
static int delta_add(struct pool *pool, pblk_t start, uint64_t len, int d, bool take)
{
    if (pool->poisoned)
        return pool->poisoned;
    if (len == 0)
        return 0;
    uint64_t s = start.v, e = start.v + len;
    struct delta_run *run = delta_find_le(pool, s);
    if (run && run->start < s && run->start + run->len > s) {
        if (!(run = delta_cut(pool, run, s)))
            return -ENOMEM;
    } else if (!run || run->start < s) {
        run = run ? RB_NEXT(delta_tree, &pool->deltas, run) : RB_MIN(delta_tree, &pool->deltas);
    }
    /* run: the first run that starts at or after s, or NULL. */
    struct delta_run *at_s = NULL; /* the run that starts at s once done */
    uint64_t cur = s;
    while (cur < e) {
        if (run && run->start == cur) {
            if (run->start + run->len > e && !delta_cut(pool, run, e))
                return -ENOMEM;
            struct delta_run *next = RB_NEXT(delta_tree, &pool->deltas, run);
            if (take) {
                log_err("pool %s: block %#llx taken while counted", pool->name,
                        (unsigned long long)cur);
                return -EUCLEAN;
            }
            run->delta += d;
            cur = run->start + run->len;
            if (run->fresh && run->delta < 0) {
                log_err("pool %s: reference count of block %#llx below zero", pool->name,
                        (unsigned long long)run->start);
                return -EUCLEAN;
            }
            if (run->delta == 0) {
                if (run->fresh) {
                    note_freed(pool, (pblk_t){run->start}, run->len);
                    pool->allocated_blocks -= run->len;
                }
                RB_REMOVE(delta_tree, &pool->deltas, run);
                free(run);
            } else if (run->start == s) {
                at_s = run;
            }
            run = next;
            continue;
        }
        uint64_t gap_end = run && run->start < e ? run->start : e;
        struct delta_run *n = malloc(sizeof(*n));
        if (!n)
            return -ENOMEM;
        n->start = cur;
        n->len = gap_end - cur;
        n->delta = d;
        n->fresh = take;
        if (take)
            pool->allocated_blocks += n->len;
        RB_INSERT(delta_tree, &pool->deltas, n);
        if (cur == s)
            at_s = n;
        cur = gap_end;
    }
    /* run: the run after the range, which starts at e when it touches it. */
    delta_join_prev(pool, run && run->start == e ? run : NULL);
    delta_join_prev(pool, at_s);
    return 0;
}

int pool_ref_take(struct pool *pool, pblk_t start, uint64_t n)
{
    int r = delta_add(pool, start, n, 1, true);
    if (r == 0)
        pool->reserved_blocks -= n;
    return r;
}

int pool_ref_inc(struct pool *pool, pblk_t start, uint64_t n)
{
    return delta_add(pool, start, n, 1, false);
}

int pool_ref_dec(struct pool *pool, pblk_t start, uint64_t n)
{
    return delta_add(pool, start, n, -1, false);
}

/*
 * Tree nodes grow down from the top of the members while data grows up from the bottom, so
 * that a commit's nodes never land in the middle of a volume's sequential data (which would
 * split its extents at every commit). A node goes just below the previous one when that
 * block is free, else at the top of the highest free run below it, else anywhere from the
 * top; members take turns.
 */
static int member_alloc_top(struct member *m, uint64_t below, uint64_t *off)
{
    struct free_run *r = free_find_le(&m->free, below ? below - 1 : 0);
    if (!below || !r)
        r = RB_MAX(free_tree, &m->free);
    if (!r)
        return -ENOSPC;
    uint64_t end = r->start + r->len;
    *off = (below && below - 1 >= r->start && below - 1 < end) ? below - 1 : end - 1;
    return free_carve(m, r, *off, 1);
}

int sm_alloc_meta(struct pool *pool, pblk_t *b)
{
    if (pool->poisoned)
        return pool->poisoned;
    unsigned n = pool->nmembers;
    uint32_t first = pblk_is_none(pool->md_cursor.next) ? 0 : pblk_member(pool->md_cursor.next);
    int r = -ENOSPC;
    for (unsigned i = 0; i < n && r == -ENOSPC; i++) {
        uint32_t mi = (first + i) % n;
        uint64_t below = !pblk_is_none(pool->md_cursor.next) && mi == first
                             ? pblk_offset(pool->md_cursor.next)
                             : 0;
        uint64_t off;
        r = member_alloc_top(&pool->members[mi], below, &off);
        if (r == 0)
            *b = pblk_make(mi, off);
    }
    if (r == -ENOSPC)
        log_err("pool %s: no space left for metadata", pool->name);
    if (r < 0)
        return r;
    pool->md_cursor.next = *b;
    pool->reserved_blocks += 1;
    return pool_ref_take(pool, *b, 1);
}

/* ------------------------------------------------------------------------------------------
 * Counts
 */

int sm_committed_count(struct pool *pool, pblk_t b, uint32_t *count, uint64_t *run_end)
{
    pblk_t root = pool_root_get(pool, POOL_ROOT_REFCOUNT);
    struct disk_refcount v;
    uint64_t k;
    *count = 0;
    *run_end = UINT64_MAX;
    int r = btree_lookup_le(pool, TREE_REFCOUNT, root, b.v, &k, &v);
    if (r == 0 && k + v.len > b.v) {
        *count = v.count;
        *run_end = k + v.len;
        return 0;
    }
    if (r < 0 && r != -ENOENT)
        return r;
    r = btree_lookup_ge(pool, TREE_REFCOUNT, root, b.v, &k, &v);
    if (r == 0)
        *run_end = k;
    return r == -ENOENT ? 0 : r;
}

int pool_ref_count(struct pool *pool, pblk_t b, uint32_t *count)
{
    struct delta_run *fd = delta_find_le(pool, b.v);
    if (fd && fd->fresh && fd->start + fd->len > b.v) {
        *count = (uint32_t)fd->delta; /* taken in this transaction: no committed count */
        return 0;
    }
    uint64_t end;
    int r = sm_committed_count(pool, b, count, &end);
    if (r < 0)
        return r;
    struct delta_run *d = delta_find_le(pool, b.v);
    if (d && d->start + d->len > b.v)
        *count = (uint32_t)((int64_t)*count + d->delta);
    return 0;
}

int pool_ref_single(struct pool *pool, pblk_t start, uint64_t n, uint64_t *single)
{
    /* Piece by piece, each piece within one committed run and one delta run (or the gap
     * before the next), so that its count is the same throughout. */
    uint64_t cur = start.v, e = start.v + n;
    *single = 0;
    while (cur < e) {
        struct delta_run *d = delta_first_after(pool, cur);
        bool in_d = d && d->start <= cur;
        uint32_t c = 0;
        uint64_t end = UINT64_MAX;
        if (in_d && d->fresh) {
            end = d->start + d->len; /* taken in this transaction: no committed count */
        } else {
            int r = sm_committed_count(pool, (pblk_t){cur}, &c, &end);
            if (r < 0)
                return r;
        }
        uint64_t stop = MIN(e, end);
        if (d)
            stop = MIN(stop, in_d ? d->start + d->len : d->start);
        if ((int64_t)c + (in_d ? d->delta : 0) == 1)
            *single += stop - cur;
        cur = stop;
    }
    return 0;
}

int pool_ref_exclusive(struct pool *pool, pblk_t start, uint64_t n)
{
    /* One committed run at a time: a run may join blocks committed once to blocks taken in
     * this transaction (an extent that grew), and each part is judged by its own count. */
    uint64_t cur = start.v, e = start.v + n;
    while (cur < e) {
        uint32_t c;
        uint64_t end;
        int r = sm_committed_count(pool, (pblk_t){cur}, &c, &end);
        if (r < 0)
            return r;
        if (c > 1)
            return 0; /* shared when committed */
        uint64_t stop = MIN(end, e);
        /* Committed count c (0 or 1) over [cur, stop); now it must be 1 throughout. */
        struct delta_run *d = delta_first_after(pool, cur);
        if (c == 1 && d && d->start < stop)
            return 0;
        for (uint64_t x = cur; c == 0 && x < stop;) {
            if (!d || d->start > x || d->delta != 1)
                return 0;
            x = d->start + d->len;
            d = RB_NEXT(delta_tree, &pool->deltas, d);
        }
        cur = stop;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Folding deltas into the reference-count tree
 */

static int rc_set(struct pool *pool, uint64_t start, uint64_t len, uint32_t count)
{
    struct disk_refcount v = {.len = len, .count = count};
    pblk_t root = pool_root_get(pool, POOL_ROOT_REFCOUNT), nr;
    int r = btree_insert(pool, TREE_REFCOUNT, root, start, &v, &nr);
    if (r == 0)
        pool_root_set(pool, POOL_ROOT_REFCOUNT, nr);
    return r;
}

static int rc_remove(struct pool *pool, uint64_t start)
{
    pblk_t root = pool_root_get(pool, POOL_ROOT_REFCOUNT), nr;
    int r = btree_remove(pool, TREE_REFCOUNT, root, start, &nr);
    if (r == 0)
        pool_root_set(pool, POOL_ROOT_REFCOUNT, nr);
    return r;
}

/* Merges the run starting at @x with the run ending there when their counts are equal. */
static int rc_merge_at(struct pool *pool, uint64_t x)
{
    pblk_t root = pool_root_get(pool, POOL_ROOT_REFCOUNT);
    struct disk_refcount a, b;
    uint64_t ka;
    if (x == 0 || btree_lookup(pool, TREE_REFCOUNT, root, x, &b) < 0)
        return 0;
    int r = btree_lookup_le(pool, TREE_REFCOUNT, root, x - 1, &ka, &a);
    if (r == -ENOENT || (r == 0 && (ka + a.len != x || a.count != b.count)))
        return 0;
    if (r < 0)
        return r;
    if ((ka >> PBLK_MEMBER_SHIFT) != (x >> PBLK_MEMBER_SHIFT))
        return 0;
    r = rc_remove(pool, x);
    return r < 0 ? r : rc_set(pool, ka, a.len + b.len, a.count);
}

/* The count of a run changed by @d: the new count, or -EUCLEAN when out of range. */
static int64_t rc_new_count(struct pool *pool, uint64_t k, uint64_t len, uint32_t count, int64_t d)
{
    int64_t c = (int64_t)count + d;
    if (c < 0 || c > UINT32_MAX) {
        log_err("pool %s: reference count of blocks %#llx+%llu out of range (%lld)", pool->name,
                (unsigned long long)k, (unsigned long long)len, (long long)c);
        return -EUCLEAN;
    }
    return c;
}

static int rc_apply(struct pool *pool, uint64_t s, uint64_t len, int64_t d)
{
    uint64_t e = s + len, cur = s;
    /* An end that falls inside a run splits it: the pieces on either side keep the old
     * count, so nothing can merge across that end afterwards. */
    bool split_s = false, split_e = false;
    while (cur < e) {
        pblk_t root = pool_root_get(pool, POOL_ROOT_REFCOUNT);
        struct disk_refcount v;
        uint64_t k;
        int r = btree_lookup_le(pool, TREE_REFCOUNT, root, cur, &k, &v);
        if (r < 0 && r != -ENOENT)
            return r;
        if (r == 0 && k + v.len > cur) {
            uint64_t rend = k + v.len;
            int64_t c = rc_new_count(pool, k, v.len, v.count, d);
            if (c < 0)
                return (int)c;
            if (k < cur && rend > e && c > 0) {
                /* The common case, a change inside one run: three pieces, written once. */
                r = rc_set(pool, k, cur - k, v.count);
                if (r == 0)
                    r = rc_set(pool, cur, e - cur, (uint32_t)c);
                if (r == 0)
                    r = rc_set(pool, e, rend - e, v.count);
                return r;
            }
            if (k < cur) { /* split at cur */
                split_s |= cur == s;
                r = rc_set(pool, k, cur - k, v.count);
                if (r == 0)
                    r = rc_set(pool, cur, rend - cur, v.count);
                if (r < 0)
                    return r;
                continue;
            }
            if (rend > e) { /* split at e */
                split_e = true;
                r = rc_set(pool, k, e - k, v.count);
                if (r == 0)
                    r = rc_set(pool, e, rend - e, v.count);
                if (r < 0)
                    return r;
                rend = e;
            }
            if (c == 0) {
                r = rc_remove(pool, k);
                note_freed(pool, (pblk_t){k}, rend - k);
                pool->allocated_blocks -= rend - k;
            } else {
                r = rc_set(pool, k, rend - k, (uint32_t)c);
            }
            if (r < 0)
                return r;
            cur = rend;
            continue;
        }
        /* A gap: blocks with no references yet. */
        uint64_t gap_end = e;
        r = btree_lookup_ge(pool, TREE_REFCOUNT, root, cur, &k, &v);
        if (r == 0 && k < e)
            gap_end = k;
        else if (r < 0 && r != -ENOENT)
            return r;
        if (d <= 0) {
            log_err("pool %s: reference count of free blocks %#llx+%llu dropped", pool->name,
                    (unsigned long long)cur, (unsigned long long)(gap_end - cur));
            return -EUCLEAN;
        }
        r = rc_set(pool, cur, gap_end - cur, (uint32_t)d);
        if (r < 0)
            return r;
        cur = gap_end;
    }
    int r = split_s ? 0 : rc_merge_at(pool, s);
    return r < 0 || split_e ? r : rc_merge_at(pool, e);
}

int sm_fold(struct pool *pool)
{
    pool->folding = true;
    int r = 0;
    for (unsigned round = 0; !RB_EMPTY(&pool->deltas) && r == 0; round++) {
        struct delta_tree work = pool->deltas;
        RB_INIT(&pool->deltas);
        struct delta_run *d, *next;
        for (d = RB_MIN(delta_tree, &work); d; d = next) {
            next = RB_NEXT(delta_tree, &work, d);
            if (r == 0 && d->delta != 0)
                r = rc_apply(pool, d->start, d->len, d->delta);
            RB_REMOVE(delta_tree, &work, d);
            free(d);
        }
        if (round > 64 && r == 0) {
            log_err("pool %s: reference counts did not settle", pool->name);
            r = -EUCLEAN;
        }
    }
    pool->folding = false;
    return r;
}

void sm_release_freed(struct pool *pool)
{
    struct freed_run *f = pool->freed, *next;
    for (; f; f = next) {
        next = f->next;
        sm_free_insert(pool, pblk_member(f->start), pblk_offset(f->start), f->len);
        free(f);
    }
    pool->freed = NULL;
    pool->pending_free_blocks = 0;
}

void sm_drop_pending(struct pool *pool)
{
    struct delta_run *d, *next;
    for (d = RB_MIN(delta_tree, &pool->deltas); d; d = next) {
        next = RB_NEXT(delta_tree, &pool->deltas, d);
        RB_REMOVE(delta_tree, &pool->deltas, d);
        free(d);
    }
    struct freed_run *f, *fn;
    for (f = pool->freed; f; f = fn) {
        fn = f->next;
        free(f);
    }
    pool->freed = NULL;
}

/* ------------------------------------------------------------------------------------------
 * Loading
 */

struct load_ctx {
    struct pool *pool;
    uint32_t member;
    uint64_t next; /* first offset not yet accounted in member */
    int err;
};

static void load_gap_to(struct load_ctx *c, uint32_t member, uint64_t off)
{
    struct pool *pool = c->pool;
    while (c->member < member || (c->member == member && c->next < off)) {
        struct member *m = &pool->members[c->member];
        uint64_t end = m->blocks - 1; /* the last block is the second label */
        uint64_t stop = c->member == member ? MIN(off, end) : end;
        if (stop > c->next)
            sm_free_insert(pool, c->member, c->next, stop - c->next);
        if (c->member == member) {
            c->next = MAX(c->next, off);
            break;
        }
        c->member++;
        c->next = CS_FIRST_DATA_BLOCK;
        if (c->member >= pool->nmembers)
            break;
    }
}

static int load_run(void *ctx, uint64_t key, const void *value)
{
    struct load_ctx *c = ctx;
    const struct disk_refcount *v = value;
    pblk_t p = {key};
    uint32_t mi = pblk_member(p);
    if (mi >= c->pool->nmembers || pblk_offset(p) < CS_FIRST_DATA_BLOCK ||
        pblk_offset(p) + v->len > c->pool->members[mi].blocks - 1 || v->count == 0 ||
        (mi == c->member && pblk_offset(p) < c->next)) {
        log_err("pool %s: reference-count run %#llx+%llu is invalid", c->pool->name,
                (unsigned long long)key, (unsigned long long)v->len);
        c->err = -EUCLEAN;
        return 1;
    }
    load_gap_to(c, mi, pblk_offset(p));
    c->next = pblk_offset(p) + v->len;
    c->pool->allocated_blocks += v->len;
    return 0;
}

int sm_load(struct pool *pool)
{
    for (unsigned i = 0; i < pool->nmembers; i++) {
        RB_INIT(&pool->members[i].free);
        pool->members[i].free_blocks = 0;
    }
    RB_INIT(&pool->deltas);
    pool->allocated_blocks = 0;
    struct load_ctx c = {.pool = pool, .member = 0, .next = CS_FIRST_DATA_BLOCK};
    pblk_t root = pool_root_get(pool, POOL_ROOT_REFCOUNT);
    if (!pblk_is_none(root)) {
        int r = btree_iterate(pool, TREE_REFCOUNT, root, 0, load_run, &c);
        if (r < 0)
            return r;
        if (c.err)
            return c.err;
    }
    load_gap_to(&c, pool->nmembers, 0);
    pool->committed_allocated = pool->allocated_blocks;
    sm_compute_reserve(pool);
    return 0;
}

void sm_unload(struct pool *pool)
{
    for (unsigned i = 0; i < pool->nmembers; i++) {
        struct free_tree *t = &pool->members[i].free;
        struct free_run *r, *next;
        for (r = RB_MIN(free_tree, t); r; r = next) {
            next = RB_NEXT(free_tree, t, r);
            RB_REMOVE(free_tree, t, r);
            free(r);
        }
        pool->members[i].free_blocks = 0;
    }
    sm_drop_pending(pool);
}

