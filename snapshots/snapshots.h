/*
 * Cistern snapshots: comparing mapping trees that share structure.
 *
 * Snapshots and clones share mapping trees (volumes/ keeps the catalog records; the pool's
 * reference counts keep the sharing). This layer answers what replication, incremental backup
 * and `cistern snap diff` ask: which virtual ranges differ between two maps of one lineage.
 * It walks both trees and skips every subtree they share (btree_diff), so its cost follows the
 * changes, not the volume's size; the extents found are then compared grain by grain, so that
 * an extent split by a write elsewhere does not report its unchanged parts.
 *
 * Threads: every call needs the pool's md lock.
 */
#ifndef CISTERN_SNAPSHOTS_H
#define CISTERN_SNAPSHOTS_H

#include "pool/pool.h"

/* Called for each changed range, in order, merged with its neighbours: grains
 * [grain, grain + ngrains) read differently in the two maps. Non-zero stops the walk. */
typedef int (*snap_diff_fn)(void *ctx, uint64_t grain, uint64_t ngrains);

/* The grains that map differently in @a and @b (maps of volumes with the same grain size). */
int snap_diff(struct pool *pool, pblk_t a, pblk_t b, uint32_t grain_blocks, snap_diff_fn fn,
              void *ctx);

#endif
