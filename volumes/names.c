/*
 * names.c - the catalog's names, indexed in memory.
 *
 * The catalog is keyed by id; names are looked up far more often than records change
 * (every open, every create, snapshot and rename checks one), and walking the catalog for
 * each would make those operations grow with the number of volumes and snapshots. The index
 * maps (parent, name) to the id - parent 0 for volumes, the volume's id for its snapshots,
 * whose names are unique within their volume - and answers "no such name" as surely as
 * "this one". It is read from the catalog on first need (catalog.c) and follows every
 * change to the tree (catalog_put, vol_delete), under the pool's metadata lock like the
 * tree itself; a failed change poisons the pool, so the two never disagree on an open pool.
 *
 * Each entry is on two chains of one table: by (parent, name) and by id (a record that is
 * renamed, or rewritten, is found by its id to move it). The table doubles when it holds
 * as many entries as buckets.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "volumes/vol_priv.h"

struct name_entry {
    struct name_entry *by_key, *by_id;
    uint64_t id, parent;
    char name[NAME_MAX_LEN + 1];
};

static uint64_t key_hash(uint64_t parent, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull ^ parent; /* FNV-1a over the parent, then the name */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t id_hash(uint64_t id)
{
    return (id * 0x9e3779b97f4a7c15ull) >> 17;
}

static struct name_entry **key_slot(struct name_index *ix, uint64_t parent, const char *name)
{
    struct name_entry **p = &ix->by_key[key_hash(parent, name) & (ix->nbuckets - 1)];
    while (*p && ((*p)->parent != parent || strcmp((*p)->name, name) != 0))
        p = &(*p)->by_key;
    return p;
}

static struct name_entry **id_slot(struct name_index *ix, uint64_t id)
{
    struct name_entry **p = &ix->by_id[id_hash(id) & (ix->nbuckets - 1)];
    while (*p && (*p)->id != id)
        p = &(*p)->by_id;
    return p;
}

static int grow(struct name_index *ix)
{
    size_t n = ix->nbuckets ? ix->nbuckets * 2 : 64;
    struct name_entry **k = calloc(n, sizeof(*k)), **d = calloc(n, sizeof(*d));
    if (!k || !d) {
        free(k);
        free(d);
        return -ENOMEM;
    }
    for (size_t b = 0; b < ix->nbuckets; b++)
        for (struct name_entry *e = ix->by_key[b], *next; e; e = next) {
            next = e->by_key;
            size_t kb = key_hash(e->parent, e->name) & (n - 1), ib = id_hash(e->id) & (n - 1);
            e->by_key = k[kb];
            k[kb] = e;
            e->by_id = d[ib];
            d[ib] = e;
        }
    free(ix->by_key);
    free(ix->by_id);
    ix->by_key = k;
    ix->by_id = d;
    ix->nbuckets = n;
    return 0;
}

/* Takes @e off its name chain and its id chain. */
static void unlink_entry(struct name_index *ix, struct name_entry *e)
{
    *key_slot(ix, e->parent, e->name) = e->by_key;
    *id_slot(ix, e->id) = e->by_id;
}

int names_put(struct name_index *ix, uint64_t id, const struct disk_volume *rec)
{
    uint64_t parent = rec->flags & VOLF_SNAPSHOT ? rec->parent_id : 0;
    char name[NAME_MAX_LEN + 1];
    memcpy(name, rec->name, NAME_MAX_LEN);
    name[NAME_MAX_LEN] = 0;
    if (ix->nbuckets == 0 && grow(ix) < 0)
        return -ENOMEM;
    struct name_entry *e = *id_slot(ix, id);
    if (e && e->parent == parent && strcmp(e->name, name) == 0)
        return 0; /* the record changed, not its name */
    if (e) {
        unlink_entry(ix, e);
    } else {
        if (ix->count >= ix->nbuckets && grow(ix) < 0)
            return -ENOMEM;
        if (!(e = malloc(sizeof(*e))))
            return -ENOMEM;
        e->id = id;
        ix->count++;
    }
    e->parent = parent;
    memcpy(e->name, name, sizeof(name));
    struct name_entry **k = key_slot(ix, parent, name), **d = id_slot(ix, id);
    e->by_key = *k; /* NULL unless another record has the name (never, the callers check) */
    *k = e;
    e->by_id = *d;
    *d = e;
    return 0;
}

void names_remove(struct name_index *ix, uint64_t id)
{
    struct name_entry *e = ix->nbuckets ? *id_slot(ix, id) : NULL;
    if (!e)
        return;
    unlink_entry(ix, e);
    free(e);
    ix->count--;
}

int names_find(struct name_index *ix, uint64_t parent, const char *name, uint64_t *id)
{
    if (ix->nbuckets == 0 || strlen(name) > NAME_MAX_LEN)
        return -ENOENT;
    struct name_entry *e = *key_slot(ix, parent, name);
    if (!e)
        return -ENOENT;
    *id = e->id;
    return 0;
}

void names_free(struct name_index *ix)
{
    for (size_t b = 0; b < ix->nbuckets; b++)
        for (struct name_entry *e = ix->by_key[b], *next; e; e = next) {
            next = e->by_key;
            free(e);
        }
    free(ix->by_key);
    free(ix->by_id);
    memset(ix, 0, sizeof(*ix));
}
