/*
 * Cistern pool: members, superblock, physical allocator and reference counts,
 * copy-on-write B+trees, transactions, block cache and the io_uring engine.
 *
 * Model
 *   A pool is one or more members (files or block devices) holding 4 KiB blocks. Its state is
 *   what the newest valid superblock references: the roots of copy-on-write B+trees (catalog,
 *   reference counts, dedup index, and through the catalog one mapping tree per volume). All
 *   metadata changes happen inside the pool's open transaction and become durable together at
 *   pool_commit(): data writes made durable, dirty nodes written to new places, made durable,
 *   then the superblock. A block referenced by the committed state is never overwritten, with
 *   one exception owned by the layers above: a data run referenced exactly once may be
 *   overwritten in place. A block freed in a transaction becomes allocatable only after that
 *   transaction commits.
 *
 * Reference counts
 *   Every allocated block (tree node or data) has a reference count, kept in the reference
 *   count tree as runs of equal counts. A tree node's count is the number of parents (nodes,
 *   superblock roots, values of other trees) that point at it. Sharing is taken lazily: making
 *   a second root share a tree costs one increment (btree_share); the first time a shared node
 *   is shadowed, its children (or its values' references) gain one reference each. Changes to
 *   counts made during a transaction are held in memory as deltas and folded into the
 *   reference-count tree at commit; folding allocates and frees nodes of that tree, whose
 *   own counts become further deltas, so the fold repeats until nothing is left to apply.
 *
 * Threads
 *   Metadata (trees, allocator, reference counts, cache) is guarded by one lock per pool:
 *   take it with pool_md_lock() around every call marked "md lock". Data I/O is issued from
 *   reactor threads (pool_reactor_*), each with its own io_uring; completions run on the
 *   reactor that issued them. A commit holds the md lock for its whole duration.
 *
 * Errors
 *   Every function returns 0 (or a documented non-negative value) or a negative errno. The
 *   cause is logged once, where it happens, naming the pool, member and block.
 */
#ifndef CISTERN_POOL_H
#define CISTERN_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/format.h"

/* ------------------------------------------------------------------------------------------
 * Physical addresses: a distinct type so they never mix silently with virtual numbers.
 */
typedef struct {
    uint64_t v;
} pblk_t;

#define PBLK_NONE ((pblk_t){0})

static inline pblk_t pblk_make(uint32_t member, uint64_t offset)
{
    return (pblk_t){((uint64_t)member << PBLK_MEMBER_SHIFT) | offset};
}
static inline uint32_t pblk_member(pblk_t p) { return (uint32_t)(p.v >> PBLK_MEMBER_SHIFT); }
static inline uint64_t pblk_offset(pblk_t p) { return p.v & PBLK_OFFSET_MASK; }
static inline pblk_t pblk_add(pblk_t p, uint64_t n) { return (pblk_t){p.v + n}; }
static inline bool pblk_is_none(pblk_t p) { return p.v == 0; }
static inline bool pblk_eq(pblk_t a, pblk_t b) { return a.v == b.v; }

struct pool;
struct reactor;

/* Work run on a reactor thread (see pool_reactor_post). */
struct reactor_work {
    void (*fn)(struct reactor_work *w);
    struct reactor_work *next;
};

/* ------------------------------------------------------------------------------------------
 * Lifecycle
 */
struct pool_settings {
    uint64_t cache_bytes;        /* metadata cache bound; default 256 MiB */
    uint64_t dirty_bound_bytes;  /* commit when dirty metadata passes this; default 64 MiB */
    uint32_t commit_interval_ms; /* commit at least this often while dirty; default 5000 */
    uint32_t low_space_pct;      /* report low space above this use; default 90 */
};

/* Fills *s with the defaults above. */
void pool_settings_default(struct pool_settings *s);

/*
 * Labels the members and writes an empty pool (generation 1) to them. Each member must exist
 * (a file is used at its current size) and carry no label of a pool unless @force.
 * Blocking. Errors: -EINVAL (bad name, too many or too small members), -EEXIST (a member
 * already belongs to a pool), -EBUSY (a member is open elsewhere), I/O errors.
 */
int pool_create(const char *name, const char *const *members, unsigned nmembers,
                const struct pool_settings *settings, bool force);

/* Open flags. */
#define POOL_OPEN_RDONLY 1u  /* never write: for check and inspection */
#define POOL_OPEN_NOLOCK 2u  /* skip the exclusive lock (tests only) */

/*
 * Opens a pool from its members, given in any order: labels identify them. Takes an exclusive
 * lock on every member (flock), so a second opener gets -EBUSY. Reads the newest valid
 * superblock, checking that every member it lists is present and the same size or larger.
 * Blocking. Errors: -ENOENT (a member is missing), -EXDEV (members of different pools),
 * -EBUSY, -EUCLEAN (no valid superblock), -EPROTONOSUPPORT (format version), I/O errors.
 */
int pool_open(const char *const *members, unsigned nmembers, unsigned flags, struct pool **out);

/* Commits what is dirty and closes. Accepts NULL. Returns the commit's result. */
int pool_close(struct pool *pool);

/* Closes without committing: what was not committed is lost, as in a crash. Tests use it. */
void pool_abandon(struct pool *pool);

/* Adds a member (labelled now) and commits. Blocking; takes the md lock itself. */
int pool_add_member(struct pool *pool, const char *path, bool force);

/* Information from a member's label without opening the pool. */
struct pool_label_info {
    char pool_name[CS_POOL_NAME_MAX + 1];
    uint8_t pool_uuid[16];
    uint32_t member_index;
    uint64_t member_blocks;
};
int pool_read_label(const char *path, struct pool_label_info *out);

/* Erases the labels and superblocks of an open pool's members, then closes it. */
int pool_destroy(struct pool *pool);

const char *pool_name(const struct pool *pool);

struct pool_member_info {
    const char *path;
    uint64_t blocks;      /* size in blocks */
    uint64_t free_blocks; /* allocatable now */
};

struct pool_stats {
    uint64_t generation;       /* of the last commit */
    uint64_t total_blocks;     /* allocatable blocks over all members */
    uint64_t allocated_blocks; /* referenced, less what the open transaction freed of what
                                  it took itself (other frees count once committed) */
    uint64_t free_blocks;      /* allocatable now */
    uint64_t pending_free_blocks; /* freed, allocatable after the next commit */
    uint64_t reserve_blocks;   /* held back so delete and discard work on a full pool */
    uint64_t cache_bytes, cache_used_bytes, dirty_bytes;
    uint64_t commits;          /* since open */
    bool low_space;            /* used space is above the threshold */
    unsigned nmembers;
    uint8_t uuid[16];
    struct pool_settings settings;
};
/* Takes the md lock itself. */
void pool_stat(struct pool *pool, struct pool_stats *st);
/* @i < st.nmembers. */
void pool_member_info(struct pool *pool, unsigned i, struct pool_member_info *out);

/* Changes settings; takes effect now and is stored at the next commit. md lock. */
void pool_set_settings(struct pool *pool, const struct pool_settings *s);

/* ------------------------------------------------------------------------------------------
 * Transactions
 */

/* The md lock. Every call marked "md lock" below requires it held. */
void pool_md_lock(struct pool *pool);
void pool_md_unlock(struct pool *pool);

/*
 * Makes every change so far durable (see the model above). With the md lock held. Returns 0,
 * or a negative errno; after a failure the pool is poisoned: every later change fails with
 * -EIO until it is reopened, so nothing half-done can ever commit.
 */
int pool_commit_locked(struct pool *pool);

/* Marks the open transaction failed (a change was left half-done by @err): every later
 * change and commit fails until the pool is reopened, which yields the last commit. md lock. */
void pool_poison(struct pool *pool, int err, const char *what);

/* Takes the md lock and commits. Concurrent callers share one commit when they can. */
int pool_commit(struct pool *pool);

/* True when dirty metadata passed the bound: the caller should commit soon. md lock. */
bool pool_needs_commit(struct pool *pool);

/* An asynchronous commit: @work.fn runs on @reactor once a commit that started after this
 * call has finished, with @result set. For FLUSH and FUA from reactor threads, which must
 * never wait for a commit themselves. */
struct pool_flush {
    struct reactor_work work;
    struct reactor *reactor;
    int result;
    struct pool_flush *next;
};
void pool_flush_async(struct pool *pool, struct pool_flush *f);

/* Wakes the pool's committer thread to commit soon (thread-safe, never blocks). The committer
 * also commits every commit_interval_ms while anything is dirty. */
void pool_kick_commit(struct pool *pool);

/* Called under the md lock at the start of every commit, before anything is written, so a
 * layer above can store what it keeps in memory (volume usage counters, say). One per pool. */
typedef int (*pool_precommit_fn)(struct pool *pool, void *ctx);
void pool_set_precommit(struct pool *pool, pool_precommit_fn fn, void *ctx);

/* A pointer the layer above may attach to the pool (the volumes layer's state); @destroy
 * (may be NULL) frees it when the pool is closed or abandoned. */
void pool_set_user(struct pool *pool, void *user, void (*destroy)(void *user));
void *pool_get_user(struct pool *pool);

/* Generation of the last commit; advances by one per commit. md lock not needed. */
uint64_t pool_generation(struct pool *pool);

/* The roots stored in the superblock. md lock. */
enum pool_root { POOL_ROOT_CATALOG = 0, POOL_ROOT_REFCOUNT = 1, POOL_ROOT_DEDUP = 2 };
pblk_t pool_root_get(struct pool *pool, enum pool_root which);
void pool_root_set(struct pool *pool, enum pool_root which, pblk_t root);

/* A monotonic id counter stored in the superblock (volume ids). md lock. */
uint64_t pool_next_id(struct pool *pool);

/* ------------------------------------------------------------------------------------------
 * Copy-on-write B+trees (md lock for all)
 *
 * Keys are uint64_t. Values are fixed-size per tree type. A value may hold references to
 * physical blocks (a data run) or to the root of another tree; a tree type describes them
 * with its refs() callback, which is how sharing, deletion and pool_check find them.
 * Inserting a value hands the references it holds to the tree (the caller took them);
 * replacing or removing a value drops them.
 * Every modifying call returns the new root through *new_root (the old root may stay valid
 * as another tree's root when shared).
 */
enum tree_type {
    TREE_NONE = 0,
    TREE_CATALOG = 1,  /* volume id -> volume record (volumes/) */
    TREE_MAPPING = 2,  /* grain index -> extent (thin/) */
    TREE_REFCOUNT = 3, /* pblk -> struct disk_refcount (pool/) */
    TREE_DEDUP = 4,    /* fingerprint prefix -> extent (dedup/) */
    TREE_TYPE_MAX = 8,
};

/* One reference held by a value: a run of blocks, or the root of a tree of type tree_type. */
struct value_ref {
    pblk_t start;
    uint64_t nblocks;   /* 1 for a tree root */
    uint32_t tree_type; /* TREE_NONE for a data run */
};

#define VALUE_MAX_REFS 4

struct btree_type {
    enum tree_type type;
    uint32_t value_size; /* bytes, at most 512 */
    const char *name;
    /* Lists the references held by @value into @out (at most VALUE_MAX_REFS); returns how
     * many. NULL when values hold none. */
    unsigned (*refs)(const void *value, struct value_ref *out);
    /* Checks a value for pool_check; returns 0 or writes a reason and returns -EUCLEAN.
     * May be NULL. */
    int (*check)(uint64_t key, const void *value, char *why, size_t whylen);
};

/* Registers a tree type (once per process; later registrations of the same type replace). */
void btree_type_register(const struct btree_type *t);
const struct btree_type *btree_type_get(enum tree_type type);

/* Creates an empty tree (one empty leaf). */
int btree_create(struct pool *pool, enum tree_type type, pblk_t *root);

/* Exact lookup: 0, or -ENOENT. */
int btree_lookup(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                 void *value);

/* Greatest key <= @key (lookup_le) or smallest key >= @key (lookup_ge); -ENOENT if none. */
int btree_lookup_le(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                    uint64_t *found, void *value);
int btree_lookup_ge(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                    uint64_t *found, void *value);

/* Inserts or replaces. */
int btree_insert(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                 const void *value, pblk_t *new_root);

/* Inserts or replaces without touching any value's references: the caller has accounted for
 * both the old value's and the new one's. A catalog uses it to store the new root of a tree
 * whose root moved by shadowing (the reference moved with it). Only for trees that are never
 * shared themselves (the catalog): a shared parent must be copied before its subtree moves. */
int btree_insert_raw(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                     const void *value, pblk_t *new_root);

/* Shadows the path from the root to the leaf where @key is or would be, changing nothing
 * else. Afterwards that leaf belongs to this root alone, and the references its values hold
 * count this tree's share: a caller deciding whether a value's data is shared asks after
 * touching. */
int btree_touch(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                pblk_t *new_root);

/* Removes @key: 0 or -ENOENT (then *new_root = root). */
int btree_remove(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                 pblk_t *new_root);

/*
 * Calls @fn for each key >= @from in order, until it returns non-zero (which is returned:
 * a positive value stops the walk without error). @fn must not modify the tree.
 */
typedef int (*btree_iter_fn)(void *ctx, uint64_t key, const void *value);
int btree_iterate(struct pool *pool, enum tree_type type, pblk_t root, uint64_t from,
                  btree_iter_fn fn, void *ctx);

/*
 * Calls @fn, in key order, for every key whose value differs between the trees at @a and @b:
 * present on one side only (the other value pointer is NULL) or with other bytes. Subtrees
 * the two trees share are skipped, so the cost follows the differences, not the size. A
 * non-zero return from @fn stops the walk; a negative one is returned.
 */
typedef int (*btree_diff_fn)(void *ctx, uint64_t key, const void *va, const void *vb);
int btree_diff(struct pool *pool, enum tree_type type, pblk_t a, pblk_t b, btree_diff_fn fn,
               void *ctx);

/*
 * Calls @fn, in key order, for each value reachable from @root through nodes referenced
 * once only: the part of the tree that dropping @root would free (each value's own
 * references then decide whether its data goes too). *nodes counts those nodes. The cost
 * follows that part, not the tree's size. Space accounting uses it.
 */
int btree_walk_exclusive(struct pool *pool, enum tree_type type, pblk_t root, btree_iter_fn fn,
                         void *ctx, uint64_t *nodes);

/* Number of keys, by walking the leaves (tests and checks). */
int btree_count(struct pool *pool, enum tree_type type, pblk_t root, uint64_t *count);

/* O(1): one more reference to @root, so a second owner can hold the same tree. */
int btree_share(struct pool *pool, pblk_t root);

/* Drops one reference to the tree at @root, freeing every node and value reference that
 * only it reached. Cost follows what is freed, not what stays shared. */
int btree_drop(struct pool *pool, enum tree_type type, pblk_t root);

/* ------------------------------------------------------------------------------------------
 * Physical space and reference counts (md lock for all)
 */

/* Where a volume's next allocation goes: keeps its sequential writes sequential on disk and
 * stripes them over members. Zero-initialise; owned by the caller. */
struct alloc_cursor {
    pblk_t next;
    uint64_t stripe_left; /* blocks left before moving to the next member */
};

/*
 * Reserves a contiguous run of between @min and @want blocks for data, near @cur. The run is
 * held in memory only: take it into use with pool_ref_take, or give it back with
 * pool_unreserve. Returns 0, or -ENOSPC when the pool (less its reserve) has no such run.
 */
int pool_reserve(struct pool *pool, struct alloc_cursor *cur, uint64_t want, uint64_t min,
                 pblk_t *start, uint64_t *got);
void pool_unreserve(struct pool *pool, pblk_t start, uint64_t n);

/* Takes a reserved run into use: each block gets its first reference. */
int pool_ref_take(struct pool *pool, pblk_t start, uint64_t n);

/* Adds or drops one reference on each block of a run already in use. A run that reaches zero
 * becomes allocatable after the next commit. */
int pool_ref_inc(struct pool *pool, pblk_t start, uint64_t n);
int pool_ref_dec(struct pool *pool, pblk_t start, uint64_t n);

/* Reference count of one block in the current transaction. */
int pool_ref_count(struct pool *pool, pblk_t b, uint32_t *count);

/* How many blocks of the run have exactly one reference now: *single. */
int pool_ref_single(struct pool *pool, pblk_t start, uint64_t n, uint64_t *single);

/* True when every block of the run has one reference now and had at most one in the last
 * committed state: only then may data be overwritten in place (an overwrite must not change
 * what a committed snapshot, or a volume deleted in this transaction, would read after a
 * crash). Returns 1, 0, or a negative errno. */
int pool_ref_exclusive(struct pool *pool, pblk_t start, uint64_t n);

/* ------------------------------------------------------------------------------------------
 * Data I/O through io_uring
 *
 * Reactors are threads, each with its own ring; they run I/O completions and posted work.
 * The process has one group of them, started on first use (pool_reactors_configure sets how
 * many before that; the default is one per core).
 */
struct io_op {
    /* Called on the reactor thread with the byte count or a negative errno. A short read or
     * write has already been turned into -EIO. */
    void (*done)(struct io_op *op, int res);
    /* Private to the engine. */
    size_t expect;
    int fake_res;
    bool fake;
};

void pool_reactors_configure(unsigned n);
unsigned pool_reactor_count(void);
/* The reactor running the calling thread, or NULL. */
struct reactor *pool_reactor_self(void);
/* Reactor @i % count, starting the group if needed. */
struct reactor *pool_reactor_get(unsigned i);
/* Runs @w->fn on reactor @r soon. Thread-safe. */
void pool_reactor_post(struct reactor *r, struct reactor_work *w);
/* Stops the reactor threads (at exit). */
void pool_reactors_shutdown(void);

/*
 * Reads or writes @len bytes (a multiple of 512, @buf aligned to 4096) at byte @off within
 * the data run that starts at @start. Must be called on a reactor thread; @op->done runs
 * there. The md lock is not needed: the caller guarantees the run stays allocated.
 */
void pool_data_read(struct pool *pool, pblk_t start, uint64_t off, void *buf, size_t len,
                    struct io_op *op);
void pool_data_write(struct pool *pool, pblk_t start, uint64_t off, const void *buf,
                     size_t len, struct io_op *op);

/*
 * Socket and file operations on the calling reactor's ring, for the network front ends. Must
 * be called on a reactor thread; @op->done runs there with the result as io_uring gives it
 * (byte counts may be short; 0 from recv is end of stream).
 */
void reactor_recv(int fd, void *buf, size_t len, int flags, struct io_op *op);
struct msghdr;
/* @msg, its iovecs and what they point to stay valid until @op completes. */
void reactor_sendmsg(int fd, const struct msghdr *msg, int flags, struct io_op *op);
void reactor_accept(int fd, struct io_op *op); /* res: the new fd, close-on-exec */
void reactor_poll(int fd, unsigned poll_events, struct io_op *op); /* one-shot */
/* Asks the kernel to cancel @target; @target completes (often with -ECANCELED), and @op
 * completes with the cancel's own result. */
void reactor_cancel(struct io_op *target, struct io_op *op);

/* Synchronous versions for tools (any thread, no reactor). */
int pool_data_pread(struct pool *pool, pblk_t start, uint64_t off, void *buf, size_t len);
int pool_data_pwrite(struct pool *pool, pblk_t start, uint64_t off, const void *buf,
                     size_t len);

/* ------------------------------------------------------------------------------------------
 * Checking
 */

/* A walker the layers above supply so the check can follow every tree from the catalog. */
struct pool_check_report {
    unsigned errors;   /* problems found */
    uint64_t nodes;    /* tree nodes visited */
    uint64_t data_blocks; /* data blocks referenced */
};

/*
 * Verifies every checksum and tree invariant reachable from the superblock, recomputes every
 * reference count from the trees and compares it with the reference-count tree, and checks
 * the free space. Each problem is logged as an error naming it. Returns 0 when the pool is
 * consistent, -EUCLEAN when not, or another negative errno when it could not check.
 * Takes the md lock itself; commits nothing.
 */
int pool_check(struct pool *pool, struct pool_check_report *report);

/* ------------------------------------------------------------------------------------------
 * Fault injection for tests: one mechanism for every write the pool issues.
 */
struct pool_fault {
    int64_t write_budget; /* writes allowed before the "power cut"; -1 = unlimited */
    int fail_errno;       /* when > 0, writes past the budget fail with -fail_errno instead
                             of being dropped silently */
    bool fail_reads;      /* reads fail with -EIO (when fail_errno > 0) */
    bool lose_unflushed;  /* remember writes since the last flush so that
                             pool_fault_power_loss() can undo some of them */
};
/* Sets the fault of every pool opened later in this process (NULL: none). */
void pool_fault_set(const struct pool_fault *f);
/* Writes issued so far by pools opened with a fault set (for sweeps). */
uint64_t pool_fault_writes(void);
/* Undoes a random subset (from @seed) of the writes made since the last flush, as losing
 * power with a volatile disk cache would; call after the pools are closed or abandoned. */
void pool_fault_power_loss(uint64_t seed);

#endif
