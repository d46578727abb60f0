/*
 * Cistern thin: the per-volume extent map.
 *
 * A volume's virtual space is divided into grains (a power of two from 4 KiB to 1 MiB). The
 * map is a B+tree of the pool (TREE_MAPPING) keyed by the first grain of an extent; an extent
 * maps a run of grains to a contiguous physical run, so a sequentially written image costs a
 * handful of entries. A compressed grain is an extent of one grain whose physical length is
 * shorter than the grain. Unmapped grains read as zeros.
 *
 * Invariants: extents never overlap; an uncompressed extent's physical length is exactly
 * ngrains * grain_blocks; adjacent extents that continue each other physically are merged on
 * insert. Each extent holds one reference on each block of its physical run.
 *
 * Threads: every call needs the pool's md lock.
 */
#ifndef CISTERN_THIN_H
#define CISTERN_THIN_H

#include "pool/pool.h"

#define THIN_EXT_COMPRESSED 1u

#define THIN_MAX_EXTENT_GRAINS (1u << 20)

struct thin_extent {
    uint64_t grain;   /* first virtual grain */
    uint32_t ngrains; /* grains mapped */
    uint32_t flags;   /* THIN_EXT_* */
    pblk_t pstart;    /* first physical block */
    uint32_t plen;    /* physical blocks */
};

/* Value stored in the mapping tree (key: first grain). */
struct disk_extent {
    uint64_t pstart;  /* pblk of the physical run */
    uint32_t ngrains; /* grains in the extent */
    uint32_t plen;    /* blocks in the physical run */
    uint32_t flags;   /* THIN_EXT_* */
    uint32_t pad;
};
_Static_assert(sizeof(struct disk_extent) == 24, "mapping value is 24 bytes");

/* Registers the mapping tree type; idempotent. */
void thin_init(void);

/* Creates an empty map. */
int thin_map_create(struct pool *pool, pblk_t *root);

/* The extent covering @grain: 0, or -ENOENT when @grain is unmapped. */
int thin_map_lookup(struct pool *pool, pblk_t root, uint64_t grain, struct thin_extent *out);

/*
 * Calls @fn for each extent overlapping [grain, grain + ngrains), in order, clipped to the
 * range (a clipped uncompressed extent has pstart and plen adjusted; a compressed one is
 * never clipped, being one grain). Stops at a non-zero return, which it returns.
 */
typedef int (*thin_extent_fn)(void *ctx, const struct thin_extent *e);
int thin_map_walk(struct pool *pool, pblk_t root, uint64_t grain, uint64_t ngrains,
                  uint32_t grain_blocks, thin_extent_fn fn, void *ctx);

/*
 * Maps @e, replacing whatever mapped its grains (their references are dropped). The
 * references of @e's physical run pass to the map (the caller took them). Merges with a
 * neighbour that continues it physically.
 */
int thin_map_insert(struct pool *pool, pblk_t root, const struct thin_extent *e,
                    uint32_t grain_blocks, pblk_t *new_root);

/* Unmaps [grain, grain + ngrains), dropping the references of what was mapped there. */
int thin_map_remove(struct pool *pool, pblk_t root, uint64_t grain, uint64_t ngrains,
                    uint32_t grain_blocks, pblk_t *new_root);

/* Blocks of physical space the map references (walks the leaves). */
int thin_map_usage(struct pool *pool, pblk_t root, uint64_t *blocks, uint64_t *extents);
/* Blocks of data that dropping the map would free: those it alone references (reached
 * through nodes no other map shares, and referenced once). The cost follows that part. */
int thin_map_unique(struct pool *pool, pblk_t root, uint64_t *blocks);

#endif
