/*
 * Snapshots, clones and rollback: catalog records that share a mapping tree.
 *
 * A snapshot is a read-only record (VOLF_SNAPSHOT, parent_id = its volume) holding one more
 * reference to the volume's mapping root: O(1) whatever the volume's size. Both records are
 * marked VOLF_SHARED, so that a write touches its leaf (taking the lazily shared references)
 * before judging whether data may be overwritten in place. A clone is a writable record
 * sharing a snapshot's root; rollback points a volume at its snapshot's root and drops the
 * old one. Deleting a snapshot is deleting its record (catalog.c): what only it held is freed.
 *
 * A snapshot of a volume in use contains exactly the writes completed before it: the volume
 * is quiesced (no request in flight, new ones held back), the records are made and committed,
 * then the volume resumes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "snapshots/snapshots.h"
#include "volumes/vol_priv.h"

static uint64_t now_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void set_name(struct disk_volume *rec, const char *name)
{
    memset(rec->name, 0, sizeof(rec->name));
    memcpy(rec->name, name, strnlen(name, NAME_MAX_LEN));
}

static int put_new(struct pool *pool, const struct disk_volume *rec)
{
    return catalog_put(pool, pool_next_id(pool), rec, false);
}

static int check_snap_name(struct pool *pool, const char *vol, const char *snap)
{
    const char *why;
    if (name_check(snap, &why) < 0) {
        log_err("pool %s: snapshot name \"%s@%s\": %s", pool_name(pool), vol, snap, why);
        return -EINVAL;
    }
    return 0;
}

static int cmp_by_id(const void *a, const void *b)
{
    const struct vol *x = *(struct vol *const *)a, *y = *(struct vol *const *)b;
    return x->vs->id < y->vs->id ? -1 : x->vs->id > y->vs->id;
}

int vol_snapshot(struct pool *pool, const struct vol_snap_spec *specs, unsigned n)
{
    if (n == 0)
        return -EINVAL;
    struct vol **v = calloc(n, sizeof(*v));
    struct ioreq **q = calloc(n, sizeof(*q));
    int r = v && q ? 0 : -ENOMEM;
    for (unsigned i = 0; i < n && r == 0; i++) {
        r = check_snap_name(pool, specs[i].vol, specs[i].snap);
        if (r == 0 && strchr(specs[i].vol, '@'))
            r = -EINVAL; /* a snapshot of a snapshot: clone it first */
        if (r == 0)
            r = vol_open(pool, specs[i].vol, 0, &v[i]);
        for (unsigned j = 0; j < i && r == 0; j++)
            if (v[j]->vs == v[i]->vs) {
                log_err("pool %s: volume %s named twice in one snapshot", pool_name(pool),
                        specs[i].vol);
                r = -EINVAL;
            }
    }
    /* Quiesce in id order, so that two snapshots of overlapping sets never wait on each
     * other. Sorting the handles keeps each spec with its own handle through a lookup. */
    struct vol **order = r == 0 ? malloc(n * sizeof(*order)) : NULL;
    if (r == 0 && !order)
        r = -ENOMEM;
    if (r == 0) {
        memcpy(order, v, n * sizeof(*order));
        qsort(order, n, sizeof(*order), cmp_by_id);
        for (unsigned i = 0; i < n && r == 0; i++)
            if (!(q[i] = vstate_quiesce(order[i]->vs)))
                r = -ENOMEM;
    }
    if (r == 0) {
        pool_md_lock(pool);
        /* Every check before the first change, so a refusal changes nothing. */
        for (unsigned i = 0; i < n && r == 0; i++) {
            uint64_t id;
            struct disk_volume rec;
            char full[2 * NAME_MAX_LEN + 2];
            snprintf(full, sizeof(full), "%s@%s", specs[i].vol, specs[i].snap);
            if (catalog_find(pool, full, &id, &rec) == 0) {
                log_err("snapshot %s/%s already exists", pool_name(pool), full);
                r = -EEXIST;
            }
        }
        uint64_t now = now_wall_ns();
        for (unsigned i = 0; i < n && r == 0; i++) {
            struct vstate *vs = v[i]->vs;
            struct disk_volume rec = vs->rec;
            r = btree_share(pool, vs->root);
            if (r < 0) {
                /* The group's earlier snapshots are in the transaction: all or none. */
                if (i > 0)
                    pool_poison(pool, r, "snapshot");
                break;
            }
            rec.map_root = vs->root.v;
            rec.flags = VOLF_SNAPSHOT | VOLF_SHARED; /* and no LUN until given one */
            rec.lun = 0;
            rec.parent_id = vs->id;
            rec.origin_id = 0;
            rec.created_ns = now;
            set_name(&rec, specs[i].snap);
            r = put_new(pool, &rec);
            vs->rec.flags |= VOLF_SHARED;
            vs->dirty = true;
            if (r < 0)
                pool_poison(pool, r, "snapshot");
        }
        if (r == 0)
            r = pool_commit_locked(pool);
        pool_md_unlock(pool);
    }
    for (unsigned i = 0; q && i < n; i++)
        vstate_resume(q[i]);
    for (unsigned i = 0; v && i < n; i++)
        vol_close(v[i]);
    free(order);
    free(q);
    free(v);
    return r;
}

/* Looks up the record with this id. md lock. */
static int record_by_id(struct pool *pool, uint64_t id, struct disk_volume *rec)
{
    return btree_lookup(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), id, rec);
}

static bool is_open(struct pool *pool, uint64_t id)
{
    struct vols *vols = vols_of(pool);
    bool open = false;
    pthread_mutex_lock(&vols->lock);
    struct vstate *vs;
    LIST_FOREACH(vs, &vols->open, link)
        open |= vs->id == id;
    pthread_mutex_unlock(&vols->lock);
    return open;
}

int vol_rollback(struct pool *pool, const char *snapshot)
{
    uint64_t sid, vid;
    struct disk_volume snap, vol;
    pool_md_lock(pool);
    int r = catalog_find(pool, snapshot, &sid, &snap);
    if (r == 0 && !(snap.flags & VOLF_SNAPSHOT)) {
        log_err("%s/%s is not a snapshot", pool_name(pool), snapshot);
        r = -EINVAL;
    }
    if (r == 0)
        r = record_by_id(pool, vid = snap.parent_id, &vol);
    if (r == 0 && is_open(pool, vid)) {
        log_err("volume of snapshot %s/%s is open: close it before rolling back",
                pool_name(pool), snapshot);
        r = -EBUSY;
    }
    if (r == 0)
        r = btree_share(pool, (pblk_t){snap.map_root});
    if (r == 0) {
        /* Replacing the record drops its reference to the old tree: what only the volume
         * held since the snapshot is freed; later snapshots keep theirs. */
        vol.map_root = snap.map_root;
        vol.size = snap.size;
        vol.flags |= VOLF_SHARED;
        r = catalog_put(pool, vid, &vol, false);
    }
    if (r == 0)
        r = pool_commit_locked(pool);
    pool_md_unlock(pool);
    return r;
}

int vol_clone(struct pool *pool, const char *snapshot, const char *name)
{
    const char *why;
    if (name_check(name, &why) < 0) {
        log_err("pool %s: volume name \"%s\": %s", pool_name(pool), name, why);
        return -EINVAL;
    }
    uint64_t sid, other;
    struct disk_volume snap, rec;
    pool_md_lock(pool);
    int r = catalog_find(pool, snapshot, &sid, &snap);
    if (r == 0 && !(snap.flags & VOLF_SNAPSHOT)) {
        log_err("%s/%s is not a snapshot: take one to clone from", pool_name(pool), snapshot);
        r = -EINVAL;
    }
    if (r == 0 && catalog_find(pool, name, &other, &rec) == 0) {
        log_err("volume %s/%s already exists", pool_name(pool), name);
        r = -EEXIST;
    }
    if (r == 0)
        r = btree_share(pool, (pblk_t){snap.map_root});
    if (r == 0) {
        rec = snap;
        rec.flags = VOLF_SHARED;
        rec.parent_id = 0;
        rec.origin_id = sid;
        rec.created_ns = now_wall_ns();
        set_name(&rec, name);
        r = assign_lun(pool, &rec);
        if (r == 0)
            r = put_new(pool, &rec);
        if (r < 0)
            pool_poison(pool, r, "clone");
    }
    if (r == 0)
        r = pool_commit_locked(pool);
    pool_md_unlock(pool);
    return r;
}

/* The live root of record @id: its open state's when open, else the catalog's. md lock. */
static pblk_t live_root(struct pool *pool, uint64_t id, const struct disk_volume *rec)
{
    struct vols *vols = vols_of(pool);
    pblk_t root = {rec->map_root};
    pthread_mutex_lock(&vols->lock);
    struct vstate *vs;
    LIST_FOREACH(vs, &vols->open, link)
        if (vs->id == id)
            root = vs->root;
    pthread_mutex_unlock(&vols->lock);
    return root;
}

struct diff_ctx {
    uint64_t grain_size, size;
    int (*fn)(void *ctx, uint64_t offset, uint64_t length);
    void *ctx;
};

static int diff_range(void *ctx, uint64_t grain, uint64_t ngrains)
{
    struct diff_ctx *d = ctx;
    uint64_t off = grain * d->grain_size;
    if (off >= d->size)
        return 0;
    return d->fn(d->ctx, off, MIN(ngrains * d->grain_size, d->size - off));
}

int vol_diff(struct pool *pool, const char *from, const char *to,
             int (*fn)(void *ctx, uint64_t offset, uint64_t length), void *ctx)
{
    uint64_t ida, idb;
    struct disk_volume a, b;
    pool_md_lock(pool);
    int r = catalog_find(pool, from, &ida, &a);
    if (r == 0)
        r = catalog_find(pool, to, &idb, &b);
    if (r == 0) {
        /* One lineage: two snapshots of a volume, or a snapshot and its volume. */
        uint64_t la = a.flags & VOLF_SNAPSHOT ? a.parent_id : ida;
        uint64_t lb = b.flags & VOLF_SNAPSHOT ? b.parent_id : idb;
        if (la != lb) {
            log_err("pool %s: %s and %s are not points of one volume", pool_name(pool), from,
                    to);
            r = -EINVAL;
        }
    }
    if (r == 0) {
        struct diff_ctx d = {a.grain_size, MAX(a.size, b.size), fn, ctx};
        r = snap_diff(pool, live_root(pool, ida, &a), live_root(pool, idb, &b),
                      a.grain_size / CS_BLOCK_SIZE, diff_range, &d);
    }
    pool_md_unlock(pool);
    return r;
}

struct since_ctx {
    uint64_t grain_size, lo, hi;
    int (*fn)(void *ctx, uint64_t offset, uint64_t length);
    void *ctx;
};

static int since_range(void *ctx, uint64_t grain, uint64_t ngrains)
{
    struct since_ctx *d = ctx;
    uint64_t s = MAX(grain * d->grain_size, d->lo);
    uint64_t e = MIN((grain + ngrains) * d->grain_size, d->hi);
    if (grain * d->grain_size >= d->hi)
        return 1; /* past the range: stop */
    return s < e ? d->fn(d->ctx, s, e - s) : 0;
}

int vol_changed_since(struct vol *v, const char *snap, uint64_t off, uint64_t len,
                      int (*fn)(void *ctx, uint64_t offset, uint64_t length), void *ctx)
{
    struct vstate *vs = v->vs;
    struct pool *pool = vs->vols->pool;
    uint64_t vol_id = vs->rec.flags & VOLF_SNAPSHOT ? vs->rec.parent_id : vs->id, sid;
    struct disk_volume rec;
    pool_md_lock(pool);
    int r = find_in(pool, snap, vol_id, &sid, &rec);
    if (r == 0 && len > 0) {
        struct since_ctx d = {vs->rec.grain_size, off, off + len, fn, ctx};
        r = snap_diff(pool, (pblk_t){rec.map_root}, vs->root, vs->grain_blocks, since_range, &d);
    }
    pool_md_unlock(pool);
    return r;
}
