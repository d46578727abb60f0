/*
 * btree_diff: the keys whose values differ between two trees of one type, skipping every
 * subtree the two share.
 *
 * Each tree is read through a cursor whose head is either a leaf entry or a subtree not yet
 * opened (a child pointer and the smallest key under it). The heads are compared:
 *   - the same subtree block at the head of both: identical below, both skip it;
 *   - a subtree whose smallest key is not above the other head's key: it is opened (the
 *     higher one first, so equal subtrees at different depths are still met head to head);
 *   - two entries: the smaller key exists on one side only, equal keys are compared by value.
 * Two trees that share all but a few paths are therefore compared in time proportional to
 * those paths, whatever their size.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "pool/internal.h"

#define DIFF_MAX_LEVELS 16

struct level {
    struct block *blk;
    uint32_t idx, nr;
    bool leaf;
};

struct cursor {
    struct pool *pool;
    enum tree_type type;
    uint32_t value_size;
    struct level lv[DIFF_MAX_LEVELS];
    int depth; /* levels held; 0 = exhausted */
};

static int cursor_push(struct cursor *c, pblk_t b)
{
    if (c->depth == DIFF_MAX_LEVELS)
        return -EUCLEAN;
    struct block *blk;
    int r = tm_read(c->pool, b, c->type, &blk);
    if (r < 0)
        return r;
    struct disk_node_header *h = node_header(block_data(blk));
    if (h->nr_entries > h->max_entries) {
        tm_unlock(c->pool, blk);
        return -EUCLEAN;
    }
    c->lv[c->depth++] = (struct level){blk, 0, h->nr_entries, h->flags & NODE_FLAG_LEAF};
    return 0;
}

/* Drops exhausted nodes so that the top level has a head (or the cursor is exhausted). */
static void cursor_settle(struct cursor *c)
{
    while (c->depth > 0 && c->lv[c->depth - 1].idx >= c->lv[c->depth - 1].nr) {
        tm_unlock(c->pool, c->lv[c->depth - 1].blk);
        c->depth--;
        if (c->depth > 0)
            c->lv[c->depth - 1].idx++;
    }
}

static void cursor_close(struct cursor *c)
{
    while (c->depth > 0)
        tm_unlock(c->pool, c->lv[--c->depth].blk);
}

/* The head: key, and either a value (leaf) or a child block (subtree). */
static uint64_t head_key(struct cursor *c)
{
    struct level *l = &c->lv[c->depth - 1];
    return node_keys(block_data(l->blk))[l->idx];
}

static bool head_is_subtree(struct cursor *c) { return !c->lv[c->depth - 1].leaf; }

static pblk_t head_child(struct cursor *c)
{
    struct level *l = &c->lv[c->depth - 1];
    return (pblk_t){((uint64_t *)node_values(block_data(l->blk)))[l->idx]};
}

static const void *head_value(struct cursor *c)
{
    struct level *l = &c->lv[c->depth - 1];
    return (const char *)node_values(block_data(l->blk)) + (size_t)l->idx * c->value_size;
}

static int head_level(struct cursor *c)
{
    return (int)node_header(block_data(c->lv[c->depth - 1].blk))->level;
}

static void advance(struct cursor *c)
{
    c->lv[c->depth - 1].idx++;
    cursor_settle(c);
}

/* Opens the subtree at the head. */
static int open_head(struct cursor *c)
{
    pblk_t child = head_child(c);
    int r = cursor_push(c, child);
    if (r == 0)
        cursor_settle(c);
    return r;
}

int btree_diff(struct pool *pool, enum tree_type type, pblk_t a, pblk_t b, btree_diff_fn fn,
               void *ctx)
{
    const struct btree_type *t = btree_type_get(type);
    if (!t)
        return -EINVAL;
    if (pblk_eq(a, b))
        return 0;
    struct cursor ca = {pool, type, t->value_size, {{0}}, 0};
    struct cursor cb = ca;
    int r = cursor_push(&ca, a);
    if (r == 0)
        r = cursor_push(&cb, b);
    if (r == 0) {
        cursor_settle(&ca);
        cursor_settle(&cb);
    }
    while (r == 0 && (ca.depth > 0 || cb.depth > 0)) {
        if (ca.depth == 0 || cb.depth == 0) {
            struct cursor *c = ca.depth ? &ca : &cb;
            if (head_is_subtree(c)) {
                r = open_head(c);
                continue;
            }
            r = fn(ctx, head_key(c), c == &ca ? head_value(c) : NULL,
                   c == &cb ? head_value(c) : NULL);
            advance(c);
            continue;
        }
        bool sa = head_is_subtree(&ca), sb = head_is_subtree(&cb);
        uint64_t ka = head_key(&ca), kb = head_key(&cb);
        if (sa && sb && pblk_eq(head_child(&ca), head_child(&cb)) && ka == kb) {
            advance(&ca); /* shared below: nothing differs there */
            advance(&cb);
            continue;
        }
        if (sa || sb) {
            /* Open a subtree that starts at or before the other head; the higher first. */
            bool open_a = sa && (!sb ? ka <= kb : (ka < kb || (ka == kb && head_level(&ca) >= head_level(&cb))));
            bool open_b = sb && (!sa ? kb <= ka : (kb < ka || (ka == kb && head_level(&cb) >= head_level(&ca))));
            if (open_a) {
                r = open_head(&ca);
                continue;
            }
            if (open_b) {
                r = open_head(&cb);
                continue;
            }
            /* A subtree starts after the other side's entry: that entry is on one side. */
            struct cursor *c = sa ? &cb : &ca;
            r = fn(ctx, head_key(c), c == &ca ? head_value(c) : NULL,
                   c == &cb ? head_value(c) : NULL);
            advance(c);
            continue;
        }
        if (ka < kb) {
            r = fn(ctx, ka, head_value(&ca), NULL);
            advance(&ca);
        } else if (kb < ka) {
            r = fn(ctx, kb, NULL, head_value(&cb));
            advance(&cb);
        } else {
            if (memcmp(head_value(&ca), head_value(&cb), t->value_size) != 0)
                r = fn(ctx, ka, head_value(&ca), head_value(&cb));
            advance(&ca);
            advance(&cb);
        }
    }
    cursor_close(&ca);
    cursor_close(&cb);
    return r < 0 ? r : 0;
}
