/*
 * Cistern volumes: state shared by the files of volumes/ (catalog.c, io.c, sync.c).
 *
 * Every volume open in the process has one struct vstate, shared by its handles, so that
 * requests through any handle are ordered by the same grain locks. The mapping root in the
 * vstate is the live one; the catalog record is brought up to date before each commit (the
 * pool's precommit hook) and when the last handle closes.
 */
#ifndef CISTERN_VOL_PRIV_H
#define CISTERN_VOL_PRIV_H

#include <pthread.h>
#include <stddef.h>
#ifndef __unused
#define __unused __attribute__((unused))
#endif
#include <bsd/sys/queue.h>

#include "thin/thin.h"
#include "volumes/volumes.h"

/* Catalog record flags. */
#define VOLF_SNAPSHOT 1u /* a read-only point in time of volume parent_id */
#define VOLF_SHARED 2u   /* its map may share nodes with another record's (snapshot, clone):
                            a write touches its leaf before judging data exclusive */
#define VOLF_LUN 4u      /* lun holds its iSCSI LUN */

/* Catalog record: the value of TREE_CATALOG, keyed by volume id. */
struct disk_volume {
    uint64_t map_root;   /* pblk of the mapping tree (a reference held by this record) */
    uint64_t size;       /* virtual size, bytes */
    uint32_t grain_size; /* bytes */
    uint32_t flags;      /* VOLF_* */
    uint64_t created_ns; /* wall clock, ns since the epoch */
    uint64_t parent_id;  /* snapshots: the volume it was taken of; 0 for volumes */
    uint64_t origin_id;  /* clones: the snapshot it was cloned from; 0 otherwise */
    uint32_t lun;        /* with VOLF_LUN: its iSCSI LUN in the pool's target */
    uint32_t reserved0;
    uint64_t reserved[9];
    char name[NAME_MAX_LEN]; /* NUL-padded; not terminated when 64 bytes long */
};
_Static_assert(sizeof(struct disk_volume) == 192, "catalog value is 192 bytes");

struct ioreq;
TAILQ_HEAD(ioreq_list, ioreq);

struct vstate {
    struct vols *vols;
    LIST_ENTRY(vstate) link;
    uint64_t id;
    char name[NAME_MAX_LEN + 1];
    struct disk_volume rec; /* the catalog record, map_root kept current (md lock) */
    pblk_t root;            /* live mapping root (md lock) */
    bool dirty;             /* root or record changed since written to the catalog */
    uint32_t grain_blocks;
    unsigned grain_shift;   /* log2 of the grain size in bytes */
    struct alloc_cursor cursor;
    int opens;              /* handles (vols->lock) */
    bool written;           /* a handle wrote since the last commit (hint for close) */

    pthread_mutex_t lock;   /* guards the fields below */
    struct ioreq_list reqs; /* holding or waiting for grain locks, in arrival order */
    unsigned inflight;
    pthread_cond_t idle;
    unsigned next_reactor;
};

/* The catalog's names, indexed in memory (names.c). md lock. */
struct name_entry;
struct name_index {
    struct name_entry **by_key, **by_id; /* two chains over one set of entries */
    size_t nbuckets, count;
    bool built; /* read from the catalog (on first need: see catalog_names) */
};

/* Per pool: the volumes open in it, and the index of the catalog's names. */
struct vols {
    struct pool *pool;
    pthread_mutex_t lock;
    LIST_HEAD(, vstate) open;
    struct name_index names; /* md lock */
};

struct vol {
    struct vstate *vs;
    unsigned flags;
};

/* catalog.c */
struct vols *vols_of(struct pool *pool);
int catalog_find(struct pool *pool, const char *name, uint64_t *id, struct disk_volume *rec);
/* A volume (@parent 0) or a snapshot of volume @parent, by its own name. md lock. */
int find_in(struct pool *pool, const char *name, uint64_t parent, uint64_t *id,
            struct disk_volume *rec);
/* Writes record @id (new or changed) to the catalog and its name to the index; @raw: the
 * record's references moved with it (btree_insert_raw). A failure poisons the pool. md lock. */
int catalog_put(struct pool *pool, uint64_t id, const struct disk_volume *rec, bool raw);
/* Gives a new volume's record the lowest free LUN (none when all are taken). md lock. */
int assign_lun(struct pool *pool, struct disk_volume *rec);
/* Writes the vstate's record to the catalog if dirty. md lock. */
int vstate_store(struct pool *pool, struct vstate *vs);

/* names.c: (parent, name) -> id; parent 0 for volumes, the volume's id for snapshots. */
int names_put(struct name_index *ix, uint64_t id, const struct disk_volume *rec);
void names_remove(struct name_index *ix, uint64_t id);
int names_find(struct name_index *ix, uint64_t parent, const char *name, uint64_t *id);
void names_free(struct name_index *ix);

/* io.c */
/* Waits until no request of the volume is in flight and holds new ones back until
 * vstate_resume. Blocking; not on a reactor thread. NULL when out of memory. */
struct ioreq *vstate_quiesce(struct vstate *vs);
void vstate_resume(struct ioreq *q);

#endif
