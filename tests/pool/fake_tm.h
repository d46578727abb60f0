/*
 * An in-memory stand-in for the pool's transaction manager and reference counts, so the
 * B+tree (pool/btree.c) can be tested alone: it implements tm_read, tm_new, tm_shadow,
 * tm_unlock, block_data, block_loc (pool/internal.h) and pool_ref_inc, pool_ref_dec,
 * pool_ref_count (pool/pool.h) over blocks held in memory. A test linking it must not link
 * the pool library.
 *
 * It follows internal.h's contract and is stricter than the real thing: every misuse (a
 * read of a freed block, a reference taken on a free block or dropped below zero, a
 * committed block changed in place, an unbalanced unlock, a block still pinned at commit)
 * is printed and counted as a violation, which tests assert stays at zero.
 *
 * Blocks live at addresses FAKE_BASE + index. A block is "dirty" from its allocation until
 * the next fake_commit(); tm_shadow hands a dirty block that only one owner references back
 * unchanged and copies anything else. A block whose count reaches zero is freed at the next
 * fake_commit(), and only then can its address be handed out again.
 */
#ifndef CISTERN_TESTS_FAKE_TM_H
#define CISTERN_TESTS_FAKE_TM_H

#include <stdbool.h>
#include <stdint.h>

#include "pool/internal.h"

#define FAKE_BASE (((uint64_t)1 << PBLK_MEMBER_SHIFT) | 256u)

struct pool *fake_pool_create(void);
/* A deep copy of @src, to replay one starting state many times. */
struct pool *fake_pool_clone(const struct pool *src);
/* Frees everything, whatever its state. Accepts NULL. */
void fake_pool_destroy(struct pool *pool);

/* Ends the transaction: blocks with no reference are freed, dirty nodes are stamped
 * (magic, own address, generation, checksum) and become read-only. */
void fake_commit(struct pool *pool);

/* A run of @n data blocks (no contents), each with one reference, owned by the caller. */
pblk_t fake_data_alloc(struct pool *pool, uint64_t n);

/* The @n-th tm_* or pool_ref_* call from now (0 = the next) fails once with -@err. A
 * negative @n disables. */
void fake_fail_call(struct pool *pool, long n, int err);
/* tm_* and pool_ref_* calls made so far. */
uint64_t fake_calls(struct pool *pool);

unsigned fake_violations(struct pool *pool);
/* Pins outstanding (blocks handed out and not yet unlocked). */
unsigned fake_pinned(struct pool *pool);
/* Blocks with a count above zero: all of them, or nodes only. */
uint64_t fake_live_blocks(struct pool *pool);
uint64_t fake_live_nodes(struct pool *pool);
/* Blocks allocated and not yet freed by a commit (live ones and those freed since). */
uint64_t fake_held_blocks(struct pool *pool);

/* Addresses are FAKE_BASE + index, index < fake_block_limit(). */
uint64_t fake_block_limit(struct pool *pool);
/* Count of the block at index @i; false when there is none. */
bool fake_block_info(struct pool *pool, uint64_t i, uint32_t *count, bool *is_node);

/* A node's bytes, for inspection and for corrupting it on purpose; NULL for anything else. */
void *fake_node_data(struct pool *pool, pblk_t b);
/* After a deliberate change to a committed node: stamp it again, so its checksum holds. */
void fake_restamp(struct pool *pool, pblk_t b);
/* Breaks a committed node's checksum; reads of it fail with -EUCLEAN (not a violation). */
void fake_break_checksum(struct pool *pool, pblk_t b);

/* Check that committed nodes are unchanged at every unlock of a read (the default), or not. */
void fake_set_paranoid(struct pool *pool, bool on);

#endif
