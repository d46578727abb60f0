/*
 * The catalog of volumes (TREE_CATALOG: volume id -> struct disk_volume) and volume handles.
 *
 * Names are unique within a pool; the catalog is small, so a name is found by walking it.
 * Each catalog operation commits before it returns, so a volume that "exists" for the user
 * survives a crash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "snapshots/snapshots.h"
#include "volumes/vol_priv.h"

static unsigned volume_refs(const void *value, struct value_ref *out)
{
    const struct disk_volume *v = value;
    out[0].start = (pblk_t){v->map_root};
    out[0].nblocks = 1;
    out[0].tree_type = TREE_MAPPING;
    return 1;
}

static int volume_check(uint64_t key, const void *value, char *why, size_t len)
{
    const struct disk_volume *v = value;
    char name[NAME_MAX_LEN + 1];
    memcpy(name, v->name, NAME_MAX_LEN);
    name[NAME_MAX_LEN] = 0;
    const char *bad;
    if (key == 0)
        snprintf(why, len, "volume id 0");
    else if (name_check(name, &bad) < 0)
        snprintf(why, len, "volume name: %s", bad);
    else if (!IS_POW2(v->grain_size) || v->grain_size < VOL_MIN_GRAIN ||
             v->grain_size > VOL_MAX_GRAIN)
        snprintf(why, len, "volume %s: bad grain size %u", name, v->grain_size);
    else if (v->size % CS_BLOCK_SIZE || v->size > VOL_MAX_SIZE)
        snprintf(why, len, "volume %s: bad size %llu", name, (unsigned long long)v->size);
    else if ((v->flags & VOLF_LUN) && v->lun > VOL_MAX_LUN)
        snprintf(why, len, "volume %s: bad LUN %u", name, v->lun);
    else if (v->map_root == 0)
        snprintf(why, len, "volume %s: no mapping tree", name);
    else
        return 0;
    return -EUCLEAN;
}

static const struct btree_type catalog_type = {
    .type = TREE_CATALOG,
    .value_size = sizeof(struct disk_volume),
    .name = "catalog",
    .refs = volume_refs,
    .check = volume_check,
};

static int vols_precommit(struct pool *pool, void *ctx)
{
    struct vols *vols = ctx;
    int r = 0;
    pthread_mutex_lock(&vols->lock);
    struct vstate *vs;
    LIST_FOREACH(vs, &vols->open, link)
        if (r == 0)
            r = vstate_store(pool, vs);
    pthread_mutex_unlock(&vols->lock);
    return r;
}

struct vols *vols_of(struct pool *pool) { return pool_get_user(pool); }

/* Handles still open when the pool goes away are the caller's leak to report; the state of
 * the volumes layer itself goes with the pool. */
static void vols_destroy(void *user)
{
    struct vols *vols = user;
    pthread_mutex_destroy(&vols->lock);
    names_free(&vols->names);
    free(vols);
}

int volumes_attach(struct pool *pool)
{
    thin_init();
    btree_type_register(&catalog_type);
    if (pool_get_user(pool))
        return 0;
    struct vols *vols = calloc(1, sizeof(*vols));
    if (!vols)
        return -ENOMEM;
    vols->pool = pool;
    pthread_mutex_init(&vols->lock, NULL);
    LIST_INIT(&vols->open);
    int r = 0;
    pool_md_lock(pool);
    if (pblk_is_none(pool_root_get(pool, POOL_ROOT_CATALOG))) {
        pblk_t root;
        r = btree_create(pool, TREE_CATALOG, &root);
        if (r == 0) {
            pool_root_set(pool, POOL_ROOT_CATALOG, root);
            r = pool_commit_locked(pool);
        }
    }
    if (r == 0) {
        pool_set_user(pool, vols, vols_destroy);
        pool_set_precommit(pool, vols_precommit, vols);
    }
    pool_md_unlock(pool);
    if (r < 0)
        free(vols);
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Lookups
 */

static void rec_name(const struct disk_volume *v, char out[NAME_MAX_LEN + 1])
{
    memcpy(out, v->name, NAME_MAX_LEN);
    out[NAME_MAX_LEN] = 0;
}

static int index_one(void *ctx, uint64_t key, const void *value)
{
    return names_put(ctx, key, value);
}

/* The index of names, read from the catalog on first need (and again after a failure, so
 * that an unreadable catalog fails each lookup the way it fails a walk). md lock. */
static struct name_index *catalog_names(struct pool *pool, int *err)
{
    struct name_index *ix = &vols_of(pool)->names;
    *err = 0;
    if (!ix->built) {
        *err = btree_iterate(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), 0,
                             index_one, ix);
        if (*err < 0) {
            names_free(ix);
            return NULL;
        }
        ix->built = true;
    }
    return ix;
}

int find_in(struct pool *pool, const char *name, uint64_t parent, uint64_t *id,
            struct disk_volume *rec)
{
    int r;
    struct name_index *ix = catalog_names(pool, &r);
    if (ix)
        r = names_find(ix, parent, name, id);
    if (r < 0)
        return r;
    r = btree_lookup(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), *id, rec);
    if (r == -ENOENT) {
        log_err("pool %s: the name %s names record %llu, which is not in the catalog",
                pool_name(pool), name, (unsigned long long)*id);
        r = -EUCLEAN;
    }
    return r;
}

/* Finds a volume ("VOL") or a snapshot ("VOL@SNAP") by name. md lock. */
int catalog_find(struct pool *pool, const char *name, uint64_t *id, struct disk_volume *rec)
{
    const char *at = strchr(name, '@');
    if (!at)
        return find_in(pool, name, 0, id, rec);
    char vol[NAME_MAX_LEN + 1];
    size_t n = (size_t)(at - name);
    if (n == 0 || n > NAME_MAX_LEN)
        return -ENOENT;
    memcpy(vol, name, n);
    vol[n] = 0;
    uint64_t pid;
    int r = find_in(pool, vol, 0, &pid, rec);
    return r < 0 ? r : find_in(pool, at + 1, pid, id, rec);
}

static struct vstate *open_state(struct vols *vols, uint64_t id)
{
    struct vstate *vs;
    LIST_FOREACH(vs, &vols->open, link)
        if (vs->id == id)
            return vs;
    return NULL;
}

static int check_name(struct pool *pool, const char *name)
{
    const char *why;
    if (name_check(name, &why) < 0) {
        log_err("pool %s: volume name \"%s\": %s", pool_name(pool), name, why);
        return -EINVAL;
    }
    return 0;
}

int catalog_put(struct pool *pool, uint64_t id, const struct disk_volume *rec, bool raw)
{
    int r;
    struct name_index *ix = catalog_names(pool, &r);
    if (!ix)
        return r; /* nothing changed */
    pblk_t root = pool_root_get(pool, POOL_ROOT_CATALOG), nr;
    r = raw ? btree_insert_raw(pool, TREE_CATALOG, root, id, rec, &nr)
            : btree_insert(pool, TREE_CATALOG, root, id, rec, &nr);
    if (r == 0) {
        pool_root_set(pool, POOL_ROOT_CATALOG, nr);
        r = names_put(ix, id, rec);
    }
    if (r < 0)
        pool_poison(pool, r, "catalog");
    return r;
}

int vstate_store(struct pool *pool, struct vstate *vs)
{
    if (!vs->dirty)
        return 0;
    vs->rec.map_root = vs->root.v;
    /* The reference to the root moved with it when it was shadowed: store it raw. */
    int r = catalog_put(pool, vs->id, &vs->rec, true);
    if (r == 0)
        vs->dirty = false;
    return r;
}

struct lun_ctx {
    uint8_t used[(VOL_MAX_LUN + 8) / 8];
    uint64_t owner_of; /* the id holding lun `want`, 0 for none */
    uint32_t want;
};

static int lun_one(void *ctx, uint64_t key, const void *value)
{
    struct lun_ctx *l = ctx;
    const struct disk_volume *v = value;
    if (!(v->flags & VOLF_LUN) || v->lun > VOL_MAX_LUN)
        return 0;
    l->used[v->lun / 8] |= (uint8_t)(1u << (v->lun % 8));
    if (v->lun == l->want)
        l->owner_of = key;
    return 0;
}

/* Which LUNs the pool's records hold, and who holds @l->want. md lock. */
static int scan_luns(struct pool *pool, struct lun_ctx *l)
{
    return btree_iterate(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), 0,
                         lun_one, l);
}

/* Gives a new volume's record the lowest free LUN, or none when all are taken. md lock. */
int assign_lun(struct pool *pool, struct disk_volume *rec)
{
    struct lun_ctx l = {.want = VOL_NO_LUN};
    int r = scan_luns(pool, &l);
    rec->flags &= ~VOLF_LUN;
    rec->lun = 0;
    for (uint32_t n = 0; r == 0 && n <= VOL_MAX_LUN; n++)
        if (!(l.used[n / 8] & (1u << (n % 8)))) {
            rec->flags |= VOLF_LUN;
            rec->lun = n;
            break;
        }
    return r;
}

/*
 * Rewrites record @id (found as @rec) after @edit changed fields other than its mapping
 * root. When the volume is open its state holds the newest record (size, live root): the
 * edit is made there and the result stored, keeping both in step. md lock.
 */
static int edit_record(struct pool *pool, uint64_t id, struct disk_volume *rec,
                       void (*edit)(struct disk_volume *rec, const void *arg), const void *arg)
{
    struct vols *vols = vols_of(pool);
    pthread_mutex_lock(&vols->lock);
    struct vstate *vs = open_state(vols, id);
    if (vs) {
        edit(&vs->rec, arg);
        rec_name(&vs->rec, vs->name);
        *rec = vs->rec;
        rec->map_root = vs->root.v; /* the live root; stored below */
        vs->dirty = false;
    } else {
        edit(rec, arg);
    }
    pthread_mutex_unlock(&vols->lock);
    /* The root is unchanged (its reference stays with the record): store it raw. */
    return catalog_put(pool, id, rec, true);
}

/* Commits, or poisons nothing and reports: catalog changes are whole or not at all. */
static int finish(struct pool *pool, int r)
{
    if (r == 0)
        r = pool_commit_locked(pool);
    pool_md_unlock(pool);
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Catalog operations
 */

struct list_ctx {
    struct vol_info *items;
    size_t n, cap;
    uint64_t parent; /* list the snapshots of this volume; 0: list volumes */
};

static int list_one(void *ctx, uint64_t key, const void *value)
{
    struct list_ctx *l = ctx;
    const struct disk_volume *v = value;
    if ((v->flags & VOLF_SNAPSHOT) != (l->parent ? VOLF_SNAPSHOT : 0) ||
        (l->parent && v->parent_id != l->parent))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct vol_info *p = realloc(l->items, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        l->items = p;
        l->cap = cap;
    }
    struct vol_info *vi = &l->items[l->n++];
    memset(vi, 0, sizeof(*vi));
    vi->id = key;
    rec_name(value, vi->name);
    return 0;
}

static int cmp_info_name(const void *a, const void *b)
{
    return strcmp(((const struct vol_info *)a)->name, ((const struct vol_info *)b)->name);
}


struct prev_ctx {
    uint64_t id;         /* the record whose previous point is sought */
    uint64_t parent;     /* the volume whose snapshots are candidates */
    uint64_t best;       /* the newest candidate so far (ids grow with time), 0 for none */
    uint64_t best_root;
};

static int prev_one(void *ctx, uint64_t key, const void *value)
{
    struct prev_ctx *p = ctx;
    const struct disk_volume *v = value;
    if ((v->flags & VOLF_SNAPSHOT) && v->parent_id == p->parent && key < p->id && key > p->best) {
        p->best = key;
        p->best_root = v->map_root;
    }
    return 0;
}

/* The point record @id was written from: its volume's snapshot just before it, or a clone's
 * origin. 0 for none. md lock. */
static int previous_point(struct pool *pool, uint64_t id, const struct disk_volume *rec,
                          pblk_t *root)
{
    bool snap = rec->flags & VOLF_SNAPSHOT;
    struct prev_ctx p = {.id = snap ? id : UINT64_MAX, .parent = snap ? rec->parent_id : id};
    int r = btree_iterate(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), 0,
                          prev_one, &p);
    if (r < 0)
        return r;
    if (p.best == 0 && rec->origin_id != 0) {
        struct disk_volume origin;
        if (btree_lookup(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG),
                         rec->origin_id, &origin) == 0) {
            *root = (pblk_t){origin.map_root};
            return 1;
        }
    }
    *root = (pblk_t){p.best_root};
    return p.best != 0;
}

struct written_ctx {
    uint64_t grain_size, size, bytes;
};

static int written_range(void *ctx, uint64_t grain, uint64_t ngrains)
{
    struct written_ctx *w = ctx;
    uint64_t off = grain * w->grain_size;
    if (off < w->size)
        w->bytes += MIN(ngrains * w->grain_size, w->size - off);
    return 0;
}

/* Fills @out for record @id. */
static void fill_info(uint64_t id, const struct disk_volume *rec, struct vol_info *out)
{
    memset(out, 0, sizeof(*out));
    out->id = id;
    rec_name(rec, out->name);
    out->size = rec->size;
    out->grain_size = rec->grain_size;
    out->created_ns = rec->created_ns;
    out->lun = rec->flags & VOLF_LUN ? rec->lun : VOL_NO_LUN;
}

/* The space of record @id whose live mapping root is @root. md lock. */
static int fill_space(struct pool *pool, uint64_t id, const struct disk_volume *rec, pblk_t root,
                      struct vol_space *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t blocks = 0, extents = 0, unique = 0;
    int r = thin_map_usage(pool, root, &blocks, &extents);
    if (r == 0)
        r = thin_map_unique(pool, root, &unique);
    if (r < 0)
        return r;
    out->referenced_bytes = blocks * CS_BLOCK_SIZE;
    out->unique_bytes = unique * CS_BLOCK_SIZE;
    /* Until compression exists, every mapped byte uses one byte of space. */
    out->mapped_bytes = MIN(out->referenced_bytes, rec->size);
    pblk_t prev;
    r = previous_point(pool, id, rec, &prev);
    if (r < 0)
        return r;
    if (r == 0) {
        out->written_bytes = out->mapped_bytes;
        return 0;
    }
    struct written_ctx w = {rec->grain_size, rec->size, 0};
    r = snap_diff(pool, prev, root, rec->grain_size / CS_BLOCK_SIZE, written_range, &w);
    out->written_bytes = w.bytes;
    return r;
}

int vol_create(struct pool *pool, const char *name, uint64_t size, uint32_t grain,
               struct vol_info *out)
{
    int r = check_name(pool, name);
    if (r < 0)
        return r;
    if (grain == 0)
        grain = VOL_DEFAULT_GRAIN;
    if (!IS_POW2(grain) || grain < VOL_MIN_GRAIN || grain > VOL_MAX_GRAIN) {
        log_err("volume %s: grain size %u is not a power of two from 4K to 1M", name, grain);
        return -EINVAL;
    }
    if (size == 0 || size % CS_BLOCK_SIZE || size > VOL_MAX_SIZE) {
        log_err("volume %s: size %llu is not a positive multiple of 4K up to 1E", name,
                (unsigned long long)size);
        return -EINVAL;
    }
    pool_md_lock(pool);
    uint64_t id;
    struct disk_volume rec;
    r = catalog_find(pool, name, &id, &rec);
    if (r == 0) {
        log_err("volume %s/%s already exists", pool_name(pool), name);
        pool_md_unlock(pool);
        return -EEXIST;
    }
    if (r != -ENOENT) {
        pool_md_unlock(pool);
        return r;
    }
    memset(&rec, 0, sizeof(rec));
    pblk_t root;
    r = thin_map_create(pool, &root);
    if (r == 0) {
        rec.map_root = root.v;
        rec.size = size;
        rec.grain_size = grain;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        rec.created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        memcpy(rec.name, name, strnlen(name, NAME_MAX_LEN));
        r = assign_lun(pool, &rec);
    }
    if (r == 0) {
        id = pool_next_id(pool);
        r = catalog_put(pool, id, &rec, false);
    }
    if (r == 0 && out)
        fill_info(id, &rec, out);
    return finish(pool, r);
}

int vol_delete(struct pool *pool, const char *name)
{
    struct vols *vols = vols_of(pool);
    pool_md_lock(pool);
    uint64_t id;
    struct disk_volume rec;
    int r = catalog_find(pool, name, &id, &rec);
    if (r == 0) {
        pthread_mutex_lock(&vols->lock);
        bool busy = open_state(vols, id) != NULL;
        pthread_mutex_unlock(&vols->lock);
        if (busy) {
            log_err("volume %s/%s is open", pool_name(pool), name);
            r = -EBUSY;
        }
    }
    if (r == 0 && !(rec.flags & VOLF_SNAPSHOT)) {
        struct list_ctx l = {.parent = id};
        r = btree_iterate(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), 0,
                          list_one, &l);
        free(l.items);
        if (r == 0 && l.n > 0) {
            log_err("volume %s/%s has %zu snapshot(s): delete them first", pool_name(pool), name,
                    l.n);
            r = -EBUSY;
        }
    }
    if (r == 0) {
        pblk_t nr;
        /* Removing the record drops its reference to the mapping tree, which frees every
         * node and extent only this volume (or snapshot) held. */
        r = btree_remove(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), id, &nr);
        if (r == 0) {
            pool_root_set(pool, POOL_ROOT_CATALOG, nr);
            names_remove(&vols_of(pool)->names, id);
        }
    }
    return finish(pool, r);
}

static void set_name_edit(struct disk_volume *rec, const void *arg)
{
    const char *name = arg;
    memset(rec->name, 0, sizeof(rec->name));
    memcpy(rec->name, name, strnlen(name, NAME_MAX_LEN));
}

int vol_rename(struct pool *pool, const char *from, const char *to)
{
    const char *why, *at = strchr(from, '@');
    if (name_check(to, &why) < 0) {
        log_err("pool %s: new %s name \"%s\" for %s: %s", pool_name(pool),
                at ? "snapshot" : "volume", to, from, why);
        return -EINVAL;
    }
    int r;
    pool_md_lock(pool);
    uint64_t id, other;
    struct disk_volume rec, orec;
    r = catalog_find(pool, from, &id, &rec);
    /* A snapshot's new name must be free among its volume's snapshots, a volume's among
     * the volumes. */
    if (r == 0 && find_in(pool, to, rec.flags & VOLF_SNAPSHOT ? rec.parent_id : 0, &other,
                          &orec) == 0) {
        log_err("%s %s already exists in pool %s",
                rec.flags & VOLF_SNAPSHOT ? "snapshot" : "volume", to, pool_name(pool));
        r = -EEXIST;
    }
    if (r == 0)
        r = edit_record(pool, id, &rec, set_name_edit, to);
    return finish(pool, r);
}

int vol_resize(struct pool *pool, const char *name, uint64_t new_size)
{
    if (new_size == 0 || new_size % CS_BLOCK_SIZE || new_size > VOL_MAX_SIZE) {
        log_err("volume %s: size %llu is not a positive multiple of 4K up to 1E", name,
                (unsigned long long)new_size);
        return -EINVAL;
    }
    struct vol *v;
    int r = vol_open(pool, name, 0, &v);
    if (r < 0)
        return r;
    struct vstate *vs = v->vs;
    uint64_t old = vs->rec.size;
    if (v->flags & VOL_OPEN_RDONLY) {
        log_err("%s/%s is a snapshot: it cannot be resized", pool_name(pool), name);
        vol_close(v);
        return -EROFS;
    }
    if (new_size < old) {
        struct vols *vols = vols_of(pool);
        pthread_mutex_lock(&vols->lock);
        int opens = vs->opens;
        pthread_mutex_unlock(&vols->lock);
        if (opens > 1) {
            log_err("volume %s/%s is open: it cannot shrink under its users", pool_name(pool),
                    name);
            vol_close(v);
            return -EBUSY;
        }
        /* Zero the part of a cut grain beyond the new end, so growing again later shows
         * zeros there, then unmap every grain past it. */
        uint64_t gsz = vs->rec.grain_size;
        uint64_t cut_end = MIN(ROUND_UP(new_size, gsz), old);
        if (cut_end > new_size)
            r = vol_write_zeroes(v, new_size, cut_end - new_size, 0);
        if (r == 0) {
            pool_md_lock(pool);
            uint64_t first = DIV_ROUND_UP(new_size, gsz);
            r = thin_map_remove(pool, vs->root, first, UINT64_MAX / 2 - first, vs->grain_blocks,
                                &vs->root);
            vs->dirty = true;
            pool_md_unlock(pool);
        }
    }
    if (r == 0) {
        pool_md_lock(pool);
        vs->rec.size = new_size;
        vs->dirty = true;
        r = vstate_store(pool, vs);
        r = finish(pool, r);
    }
    int c = vol_close(v);
    return r < 0 ? r : c;
}

static void set_lun_edit(struct disk_volume *rec, const void *arg)
{
    uint32_t lun = *(const uint32_t *)arg;
    rec->flags = lun == VOL_NO_LUN ? rec->flags & ~VOLF_LUN : rec->flags | VOLF_LUN;
    rec->lun = lun == VOL_NO_LUN ? 0 : lun;
}

int vol_set_lun(struct pool *pool, const char *name, uint32_t lun)
{
    if (lun > VOL_MAX_LUN && lun != VOL_NO_LUN) {
        log_err("%s/%s: LUN %u is out of range 0..%u", pool_name(pool), name, lun, VOL_MAX_LUN);
        return -EINVAL;
    }
    pool_md_lock(pool);
    uint64_t id;
    struct disk_volume rec;
    int r = catalog_find(pool, name, &id, &rec);
    if (r == 0 && lun != VOL_NO_LUN) {
        struct lun_ctx l = {.want = lun};
        r = scan_luns(pool, &l);
        if (r == 0 && l.owner_of != 0 && l.owner_of != id) {
            log_err("pool %s: LUN %u is taken by another volume", pool_name(pool), lun);
            r = -EEXIST;
        }
    }
    if (r == 0)
        r = edit_record(pool, id, &rec, set_lun_edit, &lun);
    return finish(pool, r);
}

/* Finds @name and its newest record and live root: its open state's when open. md lock. */
static int find_live(struct pool *pool, const char *name, uint64_t *id, struct disk_volume *rec,
                     pblk_t *root)
{
    int r = catalog_find(pool, name, id, rec);
    if (r < 0)
        return r;
    struct vols *vols = vols_of(pool);
    pthread_mutex_lock(&vols->lock);
    struct vstate *vs = open_state(vols, *id);
    *root = vs ? vs->root : (pblk_t){rec->map_root};
    if (vs)
        *rec = vs->rec;
    pthread_mutex_unlock(&vols->lock);
    return 0;
}

int vol_get_info(struct pool *pool, const char *name, struct vol_info *out)
{
    uint64_t id;
    struct disk_volume rec;
    pblk_t root;
    pool_md_lock(pool);
    int r = find_live(pool, name, &id, &rec, &root);
    pool_md_unlock(pool);
    if (r == 0)
        fill_info(id, &rec, out);
    return r;
}

int vol_get_space(struct pool *pool, const char *name, struct vol_space *out)
{
    uint64_t id;
    struct disk_volume rec;
    pblk_t root;
    pool_md_lock(pool);
    int r = find_live(pool, name, &id, &rec, &root);
    if (r == 0)
        r = fill_space(pool, id, &rec, root, out);
    pool_md_unlock(pool);
    return r;
}

/* Lists the volumes (@vol NULL, by name) or the snapshots of @vol (oldest first). */
static int list_records(struct pool *pool, const char *vol,
                        int (*fn)(void *ctx, const struct vol_info *vi), void *ctx)
{
    struct list_ctx l = {0};
    pool_md_lock(pool);
    int r = 0;
    if (vol) {
        struct disk_volume rec;
        r = find_in(pool, vol, 0, &l.parent, &rec);
    }
    if (r == 0)
        r = btree_iterate(pool, TREE_CATALOG, pool_root_get(pool, POOL_ROOT_CATALOG), 0,
                          list_one, &l);
    pool_md_unlock(pool);
    if (r < 0) {
        free(l.items);
        return r;
    }
    if (l.n > 1 && !vol) /* snapshots come in id order, which is creation order */
        qsort(l.items, l.n, sizeof(*l.items), cmp_info_name);
    for (size_t i = 0; i < l.n && r == 0; i++) {
        struct vol_info vi;
        char full[2 * NAME_MAX_LEN + 2];
        snprintf(full, sizeof(full), "%s%s%s", vol ? vol : "", vol ? "@" : "", l.items[i].name);
        r = vol_get_info(pool, full, &vi);
        if (r == 0)
            r = fn(ctx, &vi);
    }
    free(l.items);
    return r;
}

int vol_list(struct pool *pool, int (*fn)(void *ctx, const struct vol_info *vi), void *ctx)
{
    return list_records(pool, NULL, fn, ctx);
}

int vol_snap_list(struct pool *pool, const char *vol,
                  int (*fn)(void *ctx, const struct vol_info *vi), void *ctx)
{
    return list_records(pool, vol, fn, ctx);
}

/* ------------------------------------------------------------------------------------------
 * Handles
 */

int vol_open(struct pool *pool, const char *name, unsigned flags, struct vol **out)
{
    struct vols *vols = vols_of(pool);
    if (!vols)
        return -EINVAL;
    struct vol *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->flags = flags;
    pool_md_lock(pool);
    uint64_t id;
    struct disk_volume rec;
    int r = catalog_find(pool, name, &id, &rec);
    if (r < 0) {
        pool_md_unlock(pool);
        free(v);
        return r;
    }
    if (rec.flags & VOLF_SNAPSHOT)
        v->flags |= VOL_OPEN_RDONLY; /* snapshots are read-only */
    pthread_mutex_lock(&vols->lock);
    struct vstate *vs = open_state(vols, id);
    if (!vs) {
        vs = calloc(1, sizeof(*vs));
        if (!vs) {
            r = -ENOMEM;
        } else {
            vs->vols = vols;
            vs->id = id;
            vs->rec = rec;
            rec_name(&rec, vs->name);
            vs->root = (pblk_t){rec.map_root};
            vs->grain_blocks = rec.grain_size / CS_BLOCK_SIZE;
            vs->grain_shift = (unsigned)__builtin_ctz(rec.grain_size);
            pthread_mutex_init(&vs->lock, NULL);
            pthread_cond_init(&vs->idle, NULL);
            TAILQ_INIT(&vs->reqs);
            vs->next_reactor = (unsigned)id;
            LIST_INSERT_HEAD(&vols->open, vs, link);
        }
    }
    if (vs) {
        vs->opens++;
        v->vs = vs;
    }
    pthread_mutex_unlock(&vols->lock);
    pool_md_unlock(pool);
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    return 0;
}

int vol_close(struct vol *v)
{
    if (!v)
        return 0;
    struct vstate *vs = v->vs;
    struct vols *vols = vs->vols;
    struct pool *pool = vols->pool;
    pthread_mutex_lock(&vs->lock);
    while (vs->inflight)
        pthread_cond_wait(&vs->idle, &vs->lock);
    pthread_mutex_unlock(&vs->lock);
    int r = 0;
    pool_md_lock(pool);
    pthread_mutex_lock(&vols->lock);
    bool last = --vs->opens == 0;
    if (last) {
        r = vstate_store(pool, vs);
        LIST_REMOVE(vs, link);
    }
    pthread_mutex_unlock(&vols->lock);
    bool commit = last && vs->written;
    if (r == 0 && commit)
        r = pool_commit_locked(pool);
    pool_md_unlock(pool);
    if (last) {
        pthread_mutex_destroy(&vs->lock);
        pthread_cond_destroy(&vs->idle);
        free(vs);
    }
    free(v);
    return r;
}

uint64_t vol_size(const struct vol *v) { return v->vs->rec.size; }
uint32_t vol_grain_size(const struct vol *v) { return v->vs->rec.grain_size; }
const char *vol_name(const struct vol *v) { return v->vs->name; }
struct pool *vol_pool(const struct vol *v) { return v->vs->vols->pool; }
