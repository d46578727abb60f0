/*
 * Cistern volumes: the catalog of volumes by name, and the volume I/O API.
 *
 * Model
 *   The catalog is a tree of the pool (TREE_CATALOG): volume id -> record (name, virtual size,
 *   grain size, mapping root, usage). A volume's data lives in its extent map (thin/). Reads
 *   of unmapped grains return zeros; writing an all-zero grain unmaps it; discard unmaps whole
 *   grains and zeroes partial ones. A grain that is shared or compressed is copied on write
 *   (read-merge-write for partial grains); one referenced once is overwritten in place.
 *
 * I/O
 *   vol_submit() is asynchronous: the request runs on a reactor thread and req->done is called
 *   there with 0 or a negative errno. Requests that touch a common grain are ordered by arrival
 *   (a write excludes every other request on its grains; reads share); others run in
 *   parallel. A completed write is durable after a later FLUSH completes, or at once with
 *   VOL_FUA. The vol_p* calls are synchronous wrappers for tools and tests.
 *
 * Threads
 *   Catalog calls take the pool's md lock themselves. A struct vol may be used from any
 *   thread; vol_close() waits for its requests.
 *
 * Errors
 *   0 or a negative errno: -ENOENT (no such volume), -EEXIST (name taken), -EINVAL (bad name,
 *   size or range), -ENOSPC (pool full), -EROFS (read-only handle), -EBUSY (open elsewhere),
 *   -EIO (member I/O failed; nothing was acknowledged as written).
 */
#ifndef CISTERN_VOLUMES_H
#define CISTERN_VOLUMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "pool/pool.h"

#define VOL_MIN_GRAIN (4u << 10)
#define VOL_MAX_GRAIN (1u << 20)
/* 4 KiB: chosen by benchmark (docs/grain-size.md). A 4 KiB write into fresh space or after a
 * snapshot then writes 4 KiB, never a whole larger grain; extents keep sequentially written
 * images to a handful of map entries. */
#define VOL_DEFAULT_GRAIN (4u << 10)
#define VOL_MAX_SIZE (1ull << 60) /* bytes */

struct vol_info {
    uint64_t id;
    char name[NAME_MAX_LEN + 1];
    uint64_t size;          /* virtual size, bytes (a multiple of 4096) */
    uint32_t grain_size;    /* bytes */
    uint64_t created_ns;    /* wall clock, ns since the epoch */
    uint32_t lun;           /* its iSCSI LUN in the pool's target, or VOL_NO_LUN */
};

#define VOL_NO_LUN UINT32_MAX

/* Space, as zfs accounts it: exact as of the call. Data only; map nodes are metadata, which
 * pool_stat reports with the rest. */
struct vol_space {
    uint64_t mapped_bytes;     /* virtual bytes backed by space */
    uint64_t referenced_bytes; /* physical bytes its map references, shared or not */
    uint64_t unique_bytes;     /* of those, the bytes no other volume or snapshot references:
                                  what deleting it would free */
    uint64_t written_bytes;    /* virtual bytes written since its previous snapshot (a
                                  volume: since its latest; a clone without snapshots: since
                                  its origin); all it maps when there is none */
};
#define VOL_MAX_LUN 16383u /* LUNs 0..VOL_MAX_LUN (SAM-5 flat space addressing) */

/* Prepares the catalog of an open pool (creates it when new). Call once after pool_open. */
int volumes_attach(struct pool *pool);

/* Catalog operations. Blocking; each commits before returning. */
int vol_create(struct pool *pool, const char *name, uint64_t size, uint32_t grain_size,
               struct vol_info *out);
int vol_delete(struct pool *pool, const char *name);
int vol_rename(struct pool *pool, const char *from, const char *to);
/* Grows or shrinks; shrinking frees what lies beyond the new size. -EBUSY if open elsewhere
 * and shrinking. */
int vol_resize(struct pool *pool, const char *name, uint64_t new_size);
int vol_get_info(struct pool *pool, const char *name, struct vol_info *out);
/* The space of volume or snapshot @name. Walks its map (the unshared part twice) and the
 * changes since its previous snapshot: for listings a user asked for, not for hot paths. */
int vol_get_space(struct pool *pool, const char *name, struct vol_space *out);
/* Gives volume or snapshot @name the iSCSI LUN @lun, or takes its LUN away (VOL_NO_LUN).
 * A volume gets the lowest free LUN when created; a snapshot has none until given one.
 * -EEXIST when another volume of the pool has @lun, -EINVAL when @lun > VOL_MAX_LUN. */
int vol_set_lun(struct pool *pool, const char *name, uint32_t lun);
/* Calls @fn for each volume in name order until it returns non-zero (returned). */
int vol_list(struct pool *pool, int (*fn)(void *ctx, const struct vol_info *vi), void *ctx);

/* Snapshots and clones. A snapshot is named VOL@SNAP wherever a volume name is taken
 * (vol_open gives a read-only handle, vol_get_info and vol_delete work on it). */
struct vol_snap_spec {
    const char *vol;  /* VOL */
    const char *snap; /* SNAP */
};
/* Snapshots of several volumes at one instant: each contains exactly the writes completed
 * before the call. O(1) in the volumes' sizes. Commits. -EEXIST if a name is taken. */
int vol_snapshot(struct pool *pool, const struct vol_snap_spec *specs, unsigned n);
/* Calls @fn for each snapshot of @vol, oldest first. */
int vol_snap_list(struct pool *pool, const char *vol,
                  int (*fn)(void *ctx, const struct vol_info *vi), void *ctx);
/* Points the volume of @snapshot (VOL@SNAP) back at it; later snapshots are kept. The volume
 * must not be open (-EBUSY). */
int vol_rollback(struct pool *pool, const char *snapshot);
/* A new writable volume @name sharing @snapshot's data. */
int vol_clone(struct pool *pool, const char *snapshot, const char *name);
/* Calls @fn for each byte range that may read differently in @to than in @from (VOL@SNAP,
 * VOL@SNAP or VOL: two points of one volume), in order, whole grains; ranges in which
 * nothing was written between the two points are never reported. Cost follows the changes.
 * Requests completed before the call are included for a live volume. */
int vol_diff(struct pool *pool, const char *from, const char *to,
             int (*fn)(void *ctx, uint64_t offset, uint64_t length), void *ctx);

/* Handles */
struct vol;

/* For incremental backup: calls @fn for each byte range within [off, off + len) of @v that
 * changed since @snap, a snapshot of @v's volume (by its own name), in order. -ENOENT when
 * there is no such snapshot (len 0 only checks that). */
int vol_changed_since(struct vol *v, const char *snap, uint64_t off, uint64_t len,
                      int (*fn)(void *ctx, uint64_t offset, uint64_t length), void *ctx);

#define VOL_OPEN_RDONLY 1u

int vol_open(struct pool *pool, const char *name, unsigned flags, struct vol **out);
/* Waits for requests in flight, commits if anything was written, and frees. Accepts NULL.
 * Blocking: never call it on a reactor thread (the requests it waits for may need that
 * reactor to finish). */
int vol_close(struct vol *v);
uint64_t vol_size(const struct vol *v);
uint32_t vol_grain_size(const struct vol *v);
const char *vol_name(const struct vol *v);
struct pool *vol_pool(const struct vol *v);

/* Asynchronous requests */
enum vol_op {
    VOL_OP_READ,
    VOL_OP_WRITE,
    VOL_OP_WRITE_ZEROES,
    VOL_OP_DISCARD,
    VOL_OP_FLUSH,
};

#define VOL_FUA 1u      /* durable before completion */
#define VOL_NO_UNMAP 2u /* write_zeroes: leave the range allocated (NBD NO_HOLE) */

struct vol_req {
    enum vol_op op;
    uint32_t flags;  /* VOL_FUA, VOL_NO_UNMAP */
    uint64_t offset; /* bytes; offset and length multiples of 512 */
    uint64_t length;
    void *buf;       /* read/write data, aligned to 4096 */
    void (*done)(struct vol_req *req, int res);
    void *priv;      /* the caller's */
    void *internal;  /* the volume layer's, while in flight */
};

/* Starts @req. Completion always comes through req->done, even for invalid requests. */
void vol_submit(struct vol *v, struct vol_req *req);

/*
 * Copy by sharing (copy offload): makes [dst_off, dst_off + len) of @dst read as
 * [src_off, src_off + len) of @src reads at the time of the copy, by mapping the source's
 * data into the destination (no data moves; writes after it go to new space on either
 * side). @src may be @dst, the ranges may overlap. Both volumes' requests in flight finish
 * first and new ones wait while the maps change. Durable after a later flush, like a write.
 * -EXDEV when sharing cannot do it (other pools, other grain sizes, offsets or length not
 * whole grains): copy the data instead. -EINVAL out of range, -EROFS into a read-only
 * handle. @done runs on a reactor thread (the caller's when it is one).
 */
struct vol_copy {
    struct vol *dst, *src;
    uint64_t dst_off, src_off, len;
    void (*done)(struct vol_copy *c, int res);
    void *priv; /* the caller's */
    /* The volume layer's. */
    struct reactor_work work;
    struct reactor *reactor;
    struct vol_copy *next;
    int res;
};
void vol_copy_submit(struct vol_copy *c);

/* Synchronous wrappers: any alignment of @buf. */
int vol_pread(struct vol *v, void *buf, uint64_t len, uint64_t off);
int vol_pwrite(struct vol *v, const void *buf, uint64_t len, uint64_t off, uint32_t flags);
int vol_write_zeroes(struct vol *v, uint64_t off, uint64_t len, uint32_t flags);
int vol_discard(struct vol *v, uint64_t off, uint64_t len);
int vol_flush(struct vol *v);
int vol_copy(struct vol *dst, uint64_t dst_off, struct vol *src, uint64_t src_off, uint64_t len);

/* Which ranges are allocated and which read as zeros (from the extent map alone). */
#define VOL_EXT_HOLE 1u /* not allocated */
#define VOL_EXT_ZERO 2u /* reads as zeros */

struct vol_extent {
    uint64_t offset, length;
    uint32_t flags;
};

/* Fills up to @max extents covering [off, off + len) from @off, merging equal neighbours;
 * *n says how many. Takes the md lock. */
int vol_block_status(struct vol *v, uint64_t off, uint64_t len, struct vol_extent *out,
                     size_t max, size_t *n);

#endif
