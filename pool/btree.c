/*
 * Cistern pool: copy-on-write B+trees.
 *
 * Model
 *   A tree is a root node address. Every node is one block: a disk_node_header, then
 *   max_entries keys, then max_entries values. Leaves (level 0) hold the tree type's values;
 *   internal nodes hold child addresses as 8-byte values, and key i of an internal node is
 *   the smallest key of child i's subtree. An empty tree is one empty leaf.
 *
 *   Nothing reachable from a committed root is written in place: a change shadows every node
 *   on its path from the root (tm_shadow), re-points each parent at its child's shadow, and
 *   hands back the shadowed root. When tm_shadow reports that the original was shared, the
 *   copy is a new owner of everything the original pointed at, so each child (internal) or
 *   each value's references (leaf) gains one reference: that is how sharing stays lazy.
 *
 * Invariants (btree_check verifies them)
 *   - keys strictly increase within a node, and lie within [key i, key i+1) of the parent;
 *     the first key of a non-root node equals its separator in the parent;
 *   - a child is exactly one level below its parent; leaves, and only leaves, are level 0;
 *   - value_size, max_entries and tree_type match the tree type; nr_entries <= max_entries;
 *   - no non-root node is empty, nor an internal root.
 *
 * Balancing
 *   Insert splits full nodes on the way down (the root by moving its entries into a new
 *   child and splitting that), so a parent always has room for the separator of a split
 *   child. Remove works bottom-up: a node that falls below a third of its capacity is merged
 *   with, or takes entries from, a neighbour (also shadowed), and an internal root left with
 *   one child hands its place to that child, so an internal root keeps at least two.
 *
 * Threads: callers hold the pool's md lock. Errors: negative errno; tm errors pass through.
 * A failed change may leave shadowed nodes behind, but never reports a new root.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "pool/internal.h"

#define BTREE_VALUE_MAX 512u
#define CHILD_SIZE 8u /* an internal node's value: a child's pblk */
/* No real tree comes near this height (253^16 keys); a header claiming more is garbage,
 * and the bound keeps every recursion here shallow whatever the disk says. */
#define BTREE_MAX_LEVEL 16u
#define ANY_LEVEL (-1) /* a root: its level is whatever it says */

static struct btree_type types[TREE_TYPE_MAX];
static bool type_registered[TREE_TYPE_MAX];

void btree_type_register(const struct btree_type *t)
{
    /* TREE_NONE is excluded because a value_ref of that type means a data run. */
    if (t->type <= TREE_NONE || t->type >= TREE_TYPE_MAX || t->value_size == 0 ||
        t->value_size > BTREE_VALUE_MAX) {
        log_err("btree: cannot register tree type %u with %u-byte values", (unsigned)t->type,
                t->value_size);
        return;
    }
    types[t->type] = *t;
    type_registered[t->type] = true;
}

const struct btree_type *btree_type_get(enum tree_type type)
{
    if ((unsigned)type >= TREE_TYPE_MAX || !type_registered[type])
        return NULL;
    return &types[type];
}

static const struct btree_type *type_or_log(enum tree_type type)
{
    const struct btree_type *t = btree_type_get(type);

    if (!t)
        log_err("btree: tree type %u is not registered", (unsigned)type);
    return t;
}

static const char *type_name(const struct btree_type *t)
{
    return t->name ? t->name : "unnamed";
}

/* ---- Node layout --------------------------------------------------------------------- */

static uint32_t nr_of(void *d)
{
    return node_header(d)->nr_entries;
}
static bool is_leaf(void *d)
{
    return node_header(d)->flags & NODE_FLAG_LEAF;
}
static bool is_full(void *d)
{
    return nr_of(d) >= node_header(d)->max_entries;
}
/* Below a third full: merge or borrow. */
static bool is_underfull(void *d)
{
    return nr_of(d) * 3u < node_header(d)->max_entries;
}

static char *value_at(void *d, uint32_t i)
{
    return (char *)node_values(d) + (size_t)i * node_header(d)->value_size;
}

static pblk_t child_at(void *d, uint32_t i)
{
    pblk_t p;

    memcpy(&p.v, value_at(d, i), sizeof(p.v));
    return p;
}

static void set_child(void *d, uint32_t i, pblk_t p)
{
    memcpy(value_at(d, i), &p.v, sizeof(p.v));
}

static void node_init(void *d, enum tree_type type, uint32_t level, uint32_t value_size)
{
    struct disk_node_header *h = node_header(d);

    h->flags = level == 0 ? NODE_FLAG_LEAF : 0;
    h->nr_entries = 0;
    h->max_entries = NODE_MAX_ENTRIES(value_size);
    h->value_size = value_size;
    h->tree_type = type;
    h->level = level;
}

/* First index whose key is >= @key, or > @key when @above (nr when none). */
static uint32_t bound(void *d, uint64_t key, bool above)
{
    const uint64_t *keys = node_keys(d);
    uint32_t lo = 0, hi = nr_of(d);

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < key || (above && keys[mid] == key))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The child whose range holds @key: the last whose separator is <= @key, else the first. */
static uint32_t child_for(void *d, uint64_t key)
{
    uint32_t i = bound(d, key, true);

    return i ? i - 1 : 0;
}

/* Moves @n entries from @src[si] to @dst[di]; the nodes have the same value size and may be
 * the same node. Entry counts are the caller's business. */
static void move_entries(void *dst, uint32_t di, void *src, uint32_t si, uint32_t n)
{
    size_t vs = node_header(dst)->value_size;

    memmove(node_keys(dst) + di, node_keys(src) + si, (size_t)n * 8u);
    memmove(value_at(dst, di), value_at(src, si), (size_t)n * vs);
}

static void insert_entry(void *d, uint32_t i, uint64_t key, const void *value)
{
    struct disk_node_header *h = node_header(d);

    move_entries(d, i + 1, d, i, h->nr_entries - i);
    node_keys(d)[i] = key;
    memcpy(value_at(d, i), value, h->value_size);
    h->nr_entries++;
}

static void delete_entry(void *d, uint32_t i)
{
    struct disk_node_header *h = node_header(d);

    move_entries(d, i, d, i + 1, h->nr_entries - i - 1);
    h->nr_entries--;
}

/*
 * Checks what the arrays' layout depends on, so nothing below reads past the block or
 * follows a node of the wrong shape. A good checksum only says the block is what was written.
 * @level is the level the parent implies, or ANY_LEVEL for a root. Returns NULL when sound,
 * else a reason written into @buf.
 */
static const char *node_fault(const struct btree_type *t, void *d, int level, char *buf, size_t len)
{
    const struct disk_node_header *h = node_header(d);
    bool leaf = h->flags & NODE_FLAG_LEAF;
    uint32_t vs = leaf ? t->value_size : CHILD_SIZE;

    if (h->tree_type != (uint32_t)t->type)
        snprintf(buf, len, "tree type %u, expected %u", h->tree_type, (unsigned)t->type);
    else if (h->flags & ~NODE_FLAG_LEAF)
        snprintf(buf, len, "unknown flags 0x%x", h->flags);
    else if (leaf != (h->level == 0))
        snprintf(buf, len, "%s at level %u", leaf ? "leaf" : "internal node", h->level);
    else if (h->level > BTREE_MAX_LEVEL)
        snprintf(buf, len, "level %u is above the limit %u", h->level, BTREE_MAX_LEVEL);
    else if (level != ANY_LEVEL && h->level != (uint32_t)level)
        snprintf(buf, len, "level %u, expected %d", h->level, level);
    else if (h->value_size != vs)
        snprintf(buf, len, "value size %u, expected %u", h->value_size, vs);
    else if (h->max_entries != NODE_MAX_ENTRIES(vs))
        snprintf(buf, len, "capacity %u, expected %u", h->max_entries, NODE_MAX_ENTRIES(vs));
    else if (h->nr_entries > h->max_entries)
        snprintf(buf, len, "%u entries, capacity %u", h->nr_entries, h->max_entries);
    else if (h->nr_entries == 0 && (level != ANY_LEVEL || !leaf))
        snprintf(buf, len, "empty %s", leaf ? "leaf" : "internal node");
    else
        return NULL;
    return buf;
}

static int node_verify(const struct btree_type *t, pblk_t b, void *d, int level)
{
    char buf[96];
    const char *why = node_fault(t, d, level, buf, sizeof(buf));

    if (!why)
        return 0;
    log_err("tree %s: node 0x%" PRIx64 ": %s", type_name(t), b.v, why);
    return -EUCLEAN;
}

static int read_node(struct pool *pool, const struct btree_type *t, pblk_t b, int level,
                     struct block **out)
{
    int r;

    if (pblk_is_none(b)) {
        log_err("tree %s: a node points at address 0", type_name(t));
        return -EUCLEAN;
    }
    r = tm_read(pool, b, t->type, out);
    if (r < 0)
        return r;
    r = node_verify(t, b, block_data(*out), level);
    if (r < 0) {
        tm_unlock(pool, *out);
        *out = NULL;
    }
    return r;
}

/* One more reference to everything a node points at: its copy became a second owner. */
static int take_refs(struct pool *pool, const struct btree_type *t, void *d)
{
    int r = 0;

    for (uint32_t i = 0; i < nr_of(d) && r == 0; i++)
        r = is_leaf(d) ? value_refs_inc(pool, t, value_at(d, i))
                       : pool_ref_inc(pool, child_at(d, i), 1);
    return r;
}

static int shadow_node(struct pool *pool, const struct btree_type *t, pblk_t b, int level,
                       struct block **out)
{
    bool shared = false;
    struct block *blk;
    int r = tm_shadow(pool, b, t->type, &blk, &shared);

    if (r < 0)
        return r;
    r = node_verify(t, b, block_data(blk), level);
    if (r == 0 && shared)
        r = take_refs(pool, t, block_data(blk));
    if (r < 0) {
        tm_unlock(pool, blk);
        return r;
    }
    *out = blk;
    return 0;
}

static int new_node(struct pool *pool, const struct btree_type *t, uint32_t level,
                    struct block **out)
{
    int r = tm_new(pool, t->type, out);

    if (r == 0)
        node_init(block_data(*out), t->type, level, level ? CHILD_SIZE : t->value_size);
    return r;
}

/* ---- Values holding references -------------------------------------------------------- */

/* Adds or drops the references a value holds. A reference to address 0 or to no blocks
 * names nothing (a hole) and is skipped. */
static int change_value_refs(struct pool *pool, const struct btree_type *t, const void *value,
                             bool inc)
{
    struct value_ref refs[VALUE_MAX_REFS];
    unsigned n = t->refs ? t->refs(value, refs) : 0;
    int r = 0;

    if (n > VALUE_MAX_REFS) {
        log_err("tree %s: a value lists %u references, more than %u", type_name(t), n,
                VALUE_MAX_REFS);
        return -EUCLEAN;
    }
    for (unsigned i = 0; i < n && r == 0; i++) {
        const struct value_ref *ref = &refs[i];
        bool tree = ref->tree_type != TREE_NONE;

        if (pblk_is_none(ref->start) || ref->nblocks == 0)
            continue;
        if (inc)
            r = pool_ref_inc(pool, ref->start, tree ? 1 : ref->nblocks);
        else if (tree)
            r = btree_drop(pool, (enum tree_type)ref->tree_type, ref->start);
        else
            r = pool_ref_dec(pool, ref->start, ref->nblocks);
    }
    return r;
}

int value_refs_inc(struct pool *pool, const struct btree_type *t, const void *value)
{
    return change_value_refs(pool, t, value, true);
}

int value_refs_dec(struct pool *pool, const struct btree_type *t, const void *value)
{
    return change_value_refs(pool, t, value, false);
}

/* ---- Creation and lookup ------------------------------------------------------------- */

int btree_create(struct pool *pool, enum tree_type type, pblk_t *root)
{
    const struct btree_type *t = type_or_log(type);
    struct block *blk;
    int r;

    if (!t)
        return -EINVAL;
    r = new_node(pool, t, 0, &blk);
    if (r < 0)
        return r;
    *root = block_loc(blk);
    tm_unlock(pool, blk);
    return 0;
}

enum find_mode { FIND_EXACT, FIND_LE, FIND_GE };

/*
 * Descends to the child whose range holds @key. Separators are exact minimums, so the answer
 * is normally there; when that subtree has nothing on the wanted side of @key (possible for
 * GE: every key of it is below @key), the answer is the first key of the next subtree (GE)
 * or the last of the previous one (LE), found by one more descent.
 */
static int find(struct pool *pool, const struct btree_type *t, pblk_t b, int level, uint64_t key,
                enum find_mode mode, uint64_t *found, void *value)
{
    struct block *blk;
    void *d;
    uint32_t i, nr;
    int r = read_node(pool, t, b, level, &blk);

    if (r < 0)
        return r;
    d = block_data(blk);
    nr = nr_of(d);
    if (is_leaf(d)) {
        r = -ENOENT;
        if (mode == FIND_LE) {
            i = bound(d, key, true);
            if (i > 0) {
                i--;
                r = 0;
            }
        } else {
            i = bound(d, key, false);
            if (i < nr && (mode == FIND_GE || node_keys(d)[i] == key))
                r = 0;
        }
        if (r == 0) {
            if (found)
                *found = node_keys(d)[i];
            if (value)
                memcpy(value, value_at(d, i), t->value_size);
        }
    } else if (key < node_keys(d)[0] && mode != FIND_GE) {
        r = -ENOENT; /* every key of the tree is above */
    } else {
        int child_level = (int)node_header(d)->level - 1;

        i = child_for(d, key);
        r = find(pool, t, child_at(d, i), child_level, key, mode, found, value);
        if (r == -ENOENT && mode == FIND_GE && i + 1 < nr)
            r = find(pool, t, child_at(d, i + 1), child_level, key, mode, found, value);
        else if (r == -ENOENT && mode == FIND_LE && i > 0)
            r = find(pool, t, child_at(d, i - 1), child_level, key, mode, found, value);
    }
    tm_unlock(pool, blk);
    return r;
}

int btree_lookup(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key, void *value)
{
    const struct btree_type *t = type_or_log(type);

    return t ? find(pool, t, root, ANY_LEVEL, key, FIND_EXACT, NULL, value) : -EINVAL;
}

int btree_lookup_le(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                    uint64_t *found, void *value)
{
    const struct btree_type *t = type_or_log(type);

    return t ? find(pool, t, root, ANY_LEVEL, key, FIND_LE, found, value) : -EINVAL;
}

int btree_lookup_ge(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                    uint64_t *found, void *value)
{
    const struct btree_type *t = type_or_log(type);

    return t ? find(pool, t, root, ANY_LEVEL, key, FIND_GE, found, value) : -EINVAL;
}

/* ---- Insert -------------------------------------------------------------------------- */

/* Child @i of @parent (held in @child) is full: its upper half moves to a new right sibling,
 * returned in *@sib. @parent has room (it was split on the way down if it was full). */
static int split_child(struct pool *pool, const struct btree_type *t, void *parent, uint32_t i,
                       struct block *child, struct block **sib)
{
    void *c = block_data(child), *s;
    uint32_t nr = nr_of(c), half = nr / 2;
    pblk_t sloc;
    int r = new_node(pool, t, node_header(c)->level, sib);

    if (r < 0)
        return r;
    s = block_data(*sib);
    move_entries(s, 0, c, half, nr - half);
    node_header(s)->nr_entries = nr - half;
    node_header(c)->nr_entries = half;
    sloc = block_loc(*sib);
    insert_entry(parent, i + 1, node_keys(s)[0], &sloc.v);
    return 0;
}

/* The root is full: its entries move to a new child, which is then split like any other,
 * and the root stays at its address one level up. */
static int split_root(struct pool *pool, const struct btree_type *t, void *root)
{
    uint32_t nr = nr_of(root), level = node_header(root)->level;
    struct block *child, *sib;
    pblk_t loc;
    int r = new_node(pool, t, level, &child);

    if (r < 0)
        return r;
    move_entries(block_data(child), 0, root, 0, nr);
    node_header(block_data(child))->nr_entries = nr;
    loc = block_loc(child);
    node_init(root, t->type, level + 1, CHILD_SIZE);
    insert_entry(root, 0, node_keys(block_data(child))[0], &loc.v);
    r = split_child(pool, t, root, 0, child, &sib);
    if (r == 0)
        tm_unlock(pool, sib);
    tm_unlock(pool, child);
    return r;
}

/* Inserts or replaces; @drop_old: a replaced value's references are dropped (else the caller
 * has accounted for them, see btree_insert_raw). */
static int insert(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                  const void *value, pblk_t *new_root, bool drop_old)
{
    const struct btree_type *t = type_or_log(type);
    struct block *node, *child, *sib;
    pblk_t top;
    void *d;
    uint32_t i;
    int r;

    if (!t)
        return -EINVAL;
    r = shadow_node(pool, t, root, ANY_LEVEL, &node);
    if (r < 0)
        return r;
    top = block_loc(node);
    d = block_data(node);
    if (is_full(d)) {
        r = split_root(pool, t, d);
        if (r < 0)
            goto out;
    }

    while (!is_leaf(d)) {
        /* A new smallest key of this subtree becomes its separator here and below. */
        if (key < node_keys(d)[0])
            node_keys(d)[0] = key;
        i = child_for(d, key);
        r = shadow_node(pool, t, child_at(d, i), (int)node_header(d)->level - 1, &child);
        if (r < 0)
            goto out;
        set_child(d, i, block_loc(child));
        if (is_full(block_data(child))) {
            r = split_child(pool, t, d, i, child, &sib);
            if (r < 0) {
                tm_unlock(pool, child);
                goto out;
            }
            if (key >= node_keys(d)[i + 1]) {
                tm_unlock(pool, child);
                child = sib;
            } else {
                tm_unlock(pool, sib);
            }
        }
        tm_unlock(pool, node);
        node = child;
        d = block_data(node);
    }

    i = bound(d, key, false);
    if (i < nr_of(d) && node_keys(d)[i] == key) {
        r = drop_old ? value_refs_dec(pool, t, value_at(d, i)) : 0;
        if (r < 0)
            goto out;
        memcpy(value_at(d, i), value, t->value_size);
    } else {
        insert_entry(d, i, key, value);
    }
    *new_root = top;
out:
    tm_unlock(pool, node);
    return r;
}

int btree_insert(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                 const void *value, pblk_t *new_root)
{
    return insert(pool, type, root, key, value, new_root, true);
}

int btree_insert_raw(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                     const void *value, pblk_t *new_root)
{
    return insert(pool, type, root, key, value, new_root, false);
}

int btree_touch(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                pblk_t *new_root)
{
    const struct btree_type *t = type_or_log(type);
    struct block *node, *child;
    if (!t)
        return -EINVAL;
    int r = shadow_node(pool, t, root, ANY_LEVEL, &node);
    if (r < 0)
        return r;
    pblk_t top = block_loc(node);
    void *d = block_data(node);
    while (!is_leaf(d)) {
        uint32_t i = child_for(d, key);
        r = shadow_node(pool, t, child_at(d, i), (int)node_header(d)->level - 1, &child);
        if (r < 0)
            goto out;
        set_child(d, i, block_loc(child));
        tm_unlock(pool, node);
        node = child;
        d = block_data(node);
    }
    *new_root = top;
out:
    tm_unlock(pool, node);
    return r;
}

/* ---- Remove -------------------------------------------------------------------------- */

/*
 * Child @i of @parent (held in @child) fell below a third full. It is merged with a
 * neighbour when both fit in one node, else entries move over until the two hold half each.
 * A merge empties the right node of the pair and removes it from @parent; its address comes
 * back in *@gone for the caller to release once it has unlocked it.
 */
static int rebalance(struct pool *pool, const struct btree_type *t, void *parent, uint32_t i,
                     struct block *child, pblk_t *gone)
{
    uint32_t si = i > 0 ? i - 1 : i + 1, li = i > 0 ? i - 1 : i;
    struct block *sib;
    void *l, *r;
    uint32_t ln, rn, max, keep;
    int err;

    *gone = PBLK_NONE;
    if (nr_of(parent) < 2)
        return 0; /* a root with one child: the caller shrinks the tree */
    err = shadow_node(pool, t, child_at(parent, si), (int)node_header(parent)->level - 1, &sib);
    if (err < 0)
        return err;
    set_child(parent, si, block_loc(sib));
    l = block_data(si < i ? sib : child);
    r = block_data(si < i ? child : sib);
    ln = nr_of(l);
    rn = nr_of(r);
    max = node_header(l)->max_entries;

    if (ln + rn <= max) {
        move_entries(l, ln, r, 0, rn);
        node_header(l)->nr_entries = ln + rn;
        node_header(r)->nr_entries = 0;
        *gone = child_at(parent, li + 1);
        delete_entry(parent, li + 1);
    } else {
        keep = (ln + rn) / 2; /* entries the left node ends with */
        if (ln < keep) {
            move_entries(l, ln, r, 0, keep - ln);
            move_entries(r, 0, r, keep - ln, rn - (keep - ln));
        } else {
            move_entries(r, ln - keep, r, 0, rn);
            move_entries(r, 0, l, keep, ln - keep);
        }
        node_header(l)->nr_entries = keep;
        node_header(r)->nr_entries = ln + rn - keep;
        node_keys(parent)[li + 1] = node_keys(r)[0];
    }
    node_keys(parent)[li] = node_keys(l)[0];
    tm_unlock(pool, sib);
    return 0;
}

/* Removes @key from the subtree of @d (shadowed), rebalancing on the way back up. */
static int remove_from(struct pool *pool, const struct btree_type *t, void *d, uint64_t key)
{
    struct block *child;
    pblk_t gone;
    void *c;
    uint32_t i;
    int r;

    if (is_leaf(d)) {
        i = bound(d, key, false);
        if (i == nr_of(d) || node_keys(d)[i] != key)
            return -ENOENT;
        r = value_refs_dec(pool, t, value_at(d, i));
        if (r == 0)
            delete_entry(d, i);
        return r;
    }

    i = child_for(d, key);
    r = shadow_node(pool, t, child_at(d, i), (int)node_header(d)->level - 1, &child);
    if (r < 0)
        return r;
    set_child(d, i, block_loc(child));
    c = block_data(child);
    r = remove_from(pool, t, c, key);
    gone = PBLK_NONE;
    if (r == 0 && nr_of(c) > 0)
        node_keys(d)[i] = node_keys(c)[0]; /* the removed key may have been the smallest */
    if (r == 0 && is_underfull(c))
        r = rebalance(pool, t, d, i, child, &gone);
    tm_unlock(pool, child);
    /* The merged-away node's entries now belong to its neighbour: only the node goes. */
    if (r == 0 && !pblk_is_none(gone))
        r = pool_ref_dec(pool, gone, 1);
    return r;
}

int btree_remove(struct pool *pool, enum tree_type type, pblk_t root, uint64_t key,
                 pblk_t *new_root)
{
    const struct btree_type *t = type_or_log(type);
    struct block *blk;
    pblk_t top, only;
    void *d;
    int r;

    if (!t)
        return -EINVAL;
    /* Look first: shadowing drops the caller's reference to the old root, which a caller
     * told -ENOENT still holds. */
    r = find(pool, t, root, ANY_LEVEL, key, FIND_EXACT, NULL, NULL);
    if (r == -ENOENT)
        *new_root = root;
    if (r < 0)
        return r;

    r = shadow_node(pool, t, root, ANY_LEVEL, &blk);
    if (r < 0)
        return r;
    top = block_loc(blk);
    d = block_data(blk);
    r = remove_from(pool, t, d, key);
    if (r < 0) {
        tm_unlock(pool, blk);
        return r;
    }
    /*
     * A root left with one child gives its place to it: the child's reference moves from the
     * root node to the caller, and the root node goes. One step is enough, since the child is
     * not a root and so holds at least a third of its capacity.
     */
    only = PBLK_NONE;
    if (!is_leaf(d) && nr_of(d) == 1)
        only = child_at(d, 0);
    tm_unlock(pool, blk);
    if (!pblk_is_none(only)) {
        r = pool_ref_dec(pool, top, 1);
        if (r < 0)
            return r;
        top = only;
    }
    *new_root = top;
    return 0;
}

/* ---- Walks --------------------------------------------------------------------------- */

static int iterate(struct pool *pool, const struct btree_type *t, pblk_t b, int level,
                   uint64_t from, btree_iter_fn fn, void *ctx)
{
    struct block *blk;
    void *d;
    int r = read_node(pool, t, b, level, &blk);

    if (r < 0)
        return r;
    d = block_data(blk);
    if (is_leaf(d)) {
        for (uint32_t i = bound(d, from, false); i < nr_of(d) && r == 0; i++)
            r = fn(ctx, node_keys(d)[i], value_at(d, i));
    } else {
        for (uint32_t i = child_for(d, from); i < nr_of(d) && r == 0; i++)
            r = iterate(pool, t, child_at(d, i), (int)node_header(d)->level - 1, from, fn, ctx);
    }
    tm_unlock(pool, blk);
    return r;
}

int btree_iterate(struct pool *pool, enum tree_type type, pblk_t root, uint64_t from,
                  btree_iter_fn fn, void *ctx)
{
    const struct btree_type *t = type_or_log(type);

    return t ? iterate(pool, t, root, ANY_LEVEL, from, fn, ctx) : -EINVAL;
}

/* Below a node referenced more than once nothing is this tree's alone: stop there. */
static int walk_exclusive(struct pool *pool, const struct btree_type *t, pblk_t b, int level,
                          btree_iter_fn fn, void *ctx, uint64_t *nodes)
{
    struct block *blk;
    uint32_t count;
    void *d;
    int r = pool_ref_count(pool, b, &count);

    if (r < 0 || count != 1)
        return r;
    ++*nodes;
    r = read_node(pool, t, b, level, &blk);
    if (r < 0)
        return r;
    d = block_data(blk);
    for (uint32_t i = 0; i < nr_of(d) && r == 0; i++)
        r = is_leaf(d) ? fn(ctx, node_keys(d)[i], value_at(d, i))
                       : walk_exclusive(pool, t, child_at(d, i), (int)node_header(d)->level - 1,
                                        fn, ctx, nodes);
    tm_unlock(pool, blk);
    return r;
}

int btree_walk_exclusive(struct pool *pool, enum tree_type type, pblk_t root, btree_iter_fn fn,
                         void *ctx, uint64_t *nodes)
{
    const struct btree_type *t = type_or_log(type);

    *nodes = 0;
    return t ? walk_exclusive(pool, t, root, ANY_LEVEL, fn, ctx, nodes) : -EINVAL;
}

static int count_one(void *ctx, uint64_t key, const void *value)
{
    (void)key;
    (void)value;
    ++*(uint64_t *)ctx;
    return 0;
}

int btree_count(struct pool *pool, enum tree_type type, pblk_t root, uint64_t *count)
{
    *count = 0;
    return btree_iterate(pool, type, root, 0, count_one, count);
}

/* ---- Sharing ------------------------------------------------------------------------- */

int btree_share(struct pool *pool, pblk_t root)
{
    return pool_ref_inc(pool, root, 1);
}

/* A node still shared loses one reference; the last reference takes its contents along. */
static int drop_node(struct pool *pool, const struct btree_type *t, pblk_t b, int level)
{
    struct block *blk;
    uint32_t count;
    void *d;
    int r = pool_ref_count(pool, b, &count);

    if (r < 0)
        return r;
    if (count == 0) {
        log_err("tree %s: node 0x%" PRIx64 ": dropped while unreferenced", type_name(t), b.v);
        return -EUCLEAN;
    }
    if (count > 1)
        return pool_ref_dec(pool, b, 1);

    r = read_node(pool, t, b, level, &blk);
    if (r < 0)
        return r;
    d = block_data(blk);
    for (uint32_t i = 0; i < nr_of(d) && r == 0; i++)
        r = is_leaf(d) ? value_refs_dec(pool, t, value_at(d, i))
                       : drop_node(pool, t, child_at(d, i), (int)node_header(d)->level - 1);
    tm_unlock(pool, blk);
    return r < 0 ? r : pool_ref_dec(pool, b, 1);
}

int btree_drop(struct pool *pool, enum tree_type type, pblk_t root)
{
    const struct btree_type *t = type_or_log(type);

    return t ? drop_node(pool, t, root, ANY_LEVEL) : -EINVAL;
}

/* ---- Check --------------------------------------------------------------------------- */

struct check_walk {
    struct pool *pool;
    const struct btree_type *t;
    const struct btree_check_ops *ops;
    void *ctx;
};

__attribute__((format(printf, 3, 4))) static void report(struct check_walk *w, pblk_t b,
                                                         const char *fmt, ...)
{
    char msg[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    w->ops->problem(w->ctx, "tree %s: node 0x%" PRIx64 ": %s", type_name(w->t), b.v, msg);
}

/* Keys of a non-root node must lie in [lo, hi) (hi only when @has_hi) and start at lo. */
struct key_range {
    bool is_root, has_hi;
    uint64_t lo, hi;
};

static void check_keys(struct check_walk *w, pblk_t b, void *d, const struct key_range *kr)
{
    const uint64_t *keys = node_keys(d);
    uint32_t nr = nr_of(d);

    for (uint32_t i = 1; i < nr; i++) {
        if (keys[i] <= keys[i - 1]) {
            report(w, b, "keys not increasing at %u", i);
            break;
        }
    }
    if (kr->is_root || nr == 0)
        return;
    if (keys[0] != kr->lo)
        report(w, b, "first key %" PRIu64 " differs from the parent's key %" PRIu64, keys[0],
               kr->lo);
    for (uint32_t i = 0; i < nr; i++) {
        if (keys[i] < kr->lo || (kr->has_hi && keys[i] >= kr->hi)) {
            report(w, b, "key %" PRIu64 " at %u outside the parent's range", keys[i], i);
            break;
        }
    }
}

static int check_node(struct check_walk *w, pblk_t b, int level, const struct key_range *kr)
{
    struct block *blk;
    char buf[96];
    const char *why;
    void *d;
    int r = w->ops->node ? w->ops->node(w->ctx, b, w->t->type) : 1;

    if (r <= 0)
        return r;
    r = tm_read(w->pool, b, w->t->type, &blk);
    if (r < 0 && r != -EUCLEAN)
        return r; /* could not check (I/O error, memory): not a finding about the tree */
    if (r < 0) {
        report(w, b, "cannot read: %s", strerror(-r));
        return 0;
    }
    d = block_data(blk);
    why = node_fault(w->t, d, kr->is_root ? ANY_LEVEL : level, buf, sizeof(buf));
    if (why) {
        /* The layout itself is wrong: nothing more in this node can be trusted. */
        report(w, b, "%s", why);
        goto out;
    }
    check_keys(w, b, d, kr);

    for (uint32_t i = 0; i < nr_of(d) && r >= 0; i++) {
        uint64_t key = node_keys(d)[i];

        if (is_leaf(d)) {
            if (w->t->check && w->t->check(key, value_at(d, i), buf, sizeof(buf)) < 0)
                report(w, b, "key %" PRIu64 ": %s", key, buf);
            if (w->ops->value)
                r = w->ops->value(w->ctx, w->t->type, key, value_at(d, i));
        } else if (pblk_is_none(child_at(d, i))) {
            report(w, b, "child %u has no address", i);
        } else {
            struct key_range ckr = {
                .is_root = false,
                .lo = key,
                .has_hi = i + 1 < nr_of(d) || kr->has_hi,
                .hi = i + 1 < nr_of(d) ? node_keys(d)[i + 1] : kr->hi,
            };
            r = check_node(w, child_at(d, i), (int)node_header(d)->level - 1, &ckr);
        }
    }
out:
    tm_unlock(w->pool, blk);
    return r < 0 ? r : 0;
}

int btree_check(struct pool *pool, enum tree_type type, pblk_t root,
                const struct btree_check_ops *ops, void *ctx)
{
    struct check_walk w = {.pool = pool, .t = btree_type_get(type), .ops = ops, .ctx = ctx};
    struct key_range kr = {.is_root = true};

    if (!w.t) {
        ops->problem(ctx, "tree type %u: not registered, root 0x%" PRIx64 " not checked",
                     (unsigned)type, root.v);
        return -EINVAL;
    }
    return check_node(&w, root, ANY_LEVEL, &kr);
}
