/*
 * Cistern pool: the pool object and the engine's internal calls, shared by the files of
 * pool/ that implement it (dev.c, cache.c, tm.c, spacemap.c, super.c, reactor.c, check.c).
 * The B+tree sees only internal.h.
 */
#ifndef CISTERN_POOL_PRIV_H
#define CISTERN_POOL_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
/* libbsd's tree.h marks generated functions __unused, which glibc does not define. */
#ifndef __unused
#define __unused __attribute__((unused))
#endif
#include <bsd/sys/tree.h>
#include <bsd/sys/queue.h>

#include "pool/internal.h"
#include "pool/pool.h"

/* ---- in-memory ordered maps (red-black trees of runs) ---- */

/* A free run within one member (offsets in blocks). */
struct free_run {
    RB_ENTRY(free_run) rb;
    uint64_t start, len;
};
RB_HEAD(free_tree, free_run);

/* A pending reference-count change over a run of pblks. */
struct delta_run {
    RB_ENTRY(delta_run) rb;
    uint64_t start, len; /* pblk .v, blocks */
    int64_t delta;
    bool fresh;          /* taken in this transaction: delta is the whole count */
};
RB_HEAD(delta_tree, delta_run);

/* A run freed in this transaction: allocatable after the commit. */
struct freed_run {
    struct freed_run *next;
    pblk_t start;
    uint64_t len;
};

struct member {
    char *path;
    int fd;
    uint32_t index;
    uint64_t blocks;          /* size in blocks, as in the superblock */
    uint8_t uuid[16];
    struct free_tree free;    /* allocatable runs */
    uint64_t free_blocks;
    uint64_t hint;            /* where the last allocation in this member ended */
};

struct cache; /* cache.c */

struct pool {
    char name[CS_POOL_NAME_MAX + 1];
    uint8_t uuid[16];
    unsigned open_flags;
    struct member members[CS_MAX_MEMBERS];
    unsigned nmembers;

    pthread_mutex_t md_lock;
    struct disk_super sb;       /* the state being built; sb.h.generation = last committed */
    atomic_uint_fast64_t generation; /* last committed */
    struct cache *cache;
    int poisoned;               /* negative errno of the failure that poisoned the pool */

    /* space map */
    struct delta_tree deltas;
    struct freed_run *freed;    /* freed in this transaction */
    uint64_t pending_free_blocks;
    uint64_t allocated_blocks;  /* count > 0, current transaction */
    uint64_t committed_allocated;
    uint64_t reserve_blocks;
    uint64_t reserved_blocks;   /* handed out by pool_reserve, not yet taken */
    struct alloc_cursor md_cursor;
    unsigned next_stripe_member;
    bool folding;               /* inside the commit's fold of deltas */

    /* committer thread */
    pthread_t committer;
    bool committer_running;
    pthread_mutex_t commit_lock; /* guards the fields below */
    pthread_cond_t commit_cond;
    bool commit_kick, committer_stop;
    struct pool_flush *flushes;  /* waiting for the next commit */
    uint64_t commits;
    uint64_t commit_requested, commit_completed; /* tickets: flushes share commits */
    int commit_result;
    bool sb_dirty;              /* roots or settings changed since the commit */

    pool_precommit_fn precommit;
    void *precommit_ctx;
    void *user;
    void (*user_destroy)(void *user);

    /* fault injection copied at open */
    bool fault_on;
    struct pool_fault fault;
};

/* ---- dev.c: member files ---- */
int dev_open_member(const char *path, bool rdonly, bool lock, int *fd, uint64_t *blocks);
int dev_read(struct pool *pool, pblk_t b, void *buf, size_t nblocks);
int dev_write(struct pool *pool, pblk_t b, const void *buf, size_t nblocks);
int dev_writev_run(struct pool *pool, pblk_t b, void *const *bufs, size_t nblocks);
int dev_sync(struct pool *pool);
/* Returns 0 to perform a write, 1 to drop it silently (power cut), or a negative errno. */
int dev_fault_write(struct pool *pool, int fd, uint64_t off, size_t len);
int dev_fault_read(struct pool *pool);
/* Gives a new pool the process's fault setting. */
void dev_fault_attach(struct pool *pool);
/* Raw, unchecked I/O on a member fd by byte offset (labels, superblocks at create). */
int dev_pread_fd(int fd, void *buf, size_t len, uint64_t off);
int dev_pwrite_fd(int fd, const void *buf, size_t len, uint64_t off);
/* Stamps and verifies metadata headers. */
void md_stamp(void *block, uint32_t magic, pblk_t self, uint64_t generation);
/* 0, or -EUCLEAN with *why set. */
int md_verify(const void *block, uint32_t magic, pblk_t self, const char **why);

/* ---- cache.c ---- */
int cache_create(uint64_t bound_bytes, struct cache **out);
void cache_destroy(struct cache *c);
void cache_set_bound(struct cache *c, uint64_t bound_bytes);
/* Pinned block for @loc, *fresh when its contents were not loaded (caller reads or fills). */
int cache_get(struct cache *c, pblk_t loc, struct block **out, bool *fresh);
void cache_put(struct cache *c, struct block *b);
/* Marks dirty (pinned until cache_clean). */
void cache_mark_dirty(struct cache *c, struct block *b);
bool cache_is_dirty(const struct block *b);
bool cache_is_checked(const struct block *b);
void cache_set_checked(struct block *b);
/* Drops a block that was never loaded or failed to load. */
void cache_discard(struct cache *c, struct block *b);
/* Forgets whatever is cached for [start, start + n), dirty or not (freed blocks). */
void cache_forget(struct cache *c, pblk_t start, uint64_t n);
/* Calls fn for every dirty block in ascending address order; then, when fn never failed,
 * marks them clean. */
int cache_write_dirty(struct cache *c, int (*fn)(void *ctx, struct block **run, size_t n),
                      void *ctx);
void cache_mark_all_clean(struct cache *c);
/* Drops every dirty block (abandon). */
void cache_drop_dirty(struct cache *c);
uint64_t cache_used_bytes(const struct cache *c);
uint64_t cache_dirty_bytes(const struct cache *c);
uint64_t cache_bound_bytes(const struct cache *c);

/* ---- spacemap.c ---- */
void sm_register(void);                   /* registers the reference-count tree type */
int sm_load(struct pool *pool);           /* builds the free runs from the refcount tree */
void sm_unload(struct pool *pool);
int sm_alloc_meta(struct pool *pool, pblk_t *b);  /* one block for a node, count 1 */
int sm_fold(struct pool *pool);           /* applies deltas to the refcount tree */
void sm_release_freed(struct pool *pool); /* after commit: freed runs become allocatable */
void sm_drop_pending(struct pool *pool);  /* abandon: forget deltas and freed runs */
void sm_free_insert(struct pool *pool, uint32_t member, uint64_t start, uint64_t len);
uint64_t sm_free_blocks(const struct pool *pool);
void sm_compute_reserve(struct pool *pool);
int sm_committed_count(struct pool *pool, pblk_t b, uint32_t *count, uint64_t *run_end);

/* ---- super.c ---- */
int super_commit(struct pool *pool);

#endif
