/*
 * pool_check: verifies every tree reachable from the superblock and recomputes every
 * reference count from the trees.
 *
 * Each reference found (a superblock root, a child pointer, a value's data run or tree root)
 * becomes a pair of events (+1 at its first block, -1 after its last); sorting and sweeping
 * the events yields the runs of equal counts the trees imply, which must equal the runs of
 * the reference-count tree exactly. A node is descended only on its first visit, since its
 * own children are referenced once by it however many parents share it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pool/priv.h"

struct event {
    uint64_t at;
    int64_t d;
};

struct run {
    uint64_t start, len;
    uint32_t count;
};

struct check {
    struct pool *pool;
    struct pool_check_report *rep;
    struct event *ev;
    size_t nev, capev;
    uint64_t *seen; /* open-addressing set of visited nodes */
    size_t capseen, nseen;
    struct run *rc; /* runs of the reference-count tree */
    size_t nrc, caprc;
    int err;
};

static void problem(void *ctx, const char *fmt, ...)
{
    struct check *c = ctx;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_err("pool %s: check: %s", c->pool->name, msg);
    c->rep->errors++;
}

static void add_ref(struct check *c, uint64_t start, uint64_t len)
{
    if (c->nev + 2 > c->capev) {
        size_t cap = c->capev ? c->capev * 2 : 4096;
        struct event *e = realloc(c->ev, cap * sizeof(*e));
        if (!e) {
            c->err = -ENOMEM;
            return;
        }
        c->ev = e;
        c->capev = cap;
    }
    c->ev[c->nev++] = (struct event){start, 1};
    c->ev[c->nev++] = (struct event){start + len, -1};
}

/* Returns true the first time @b is seen. */
static bool first_visit(struct check *c, uint64_t b)
{
    if (c->nseen * 2 >= c->capseen) {
        size_t cap = c->capseen ? c->capseen * 2 : 4096;
        uint64_t *s = calloc(cap, sizeof(*s));
        if (!s) {
            c->err = -ENOMEM;
            return false;
        }
        for (size_t i = 0; i < c->capseen; i++) {
            if (!c->seen[i])
                continue;
            size_t j = (c->seen[i] * 0x9e3779b97f4a7c15ull) & (cap - 1);
            while (s[j])
                j = (j + 1) & (cap - 1);
            s[j] = c->seen[i];
        }
        free(c->seen);
        c->seen = s;
        c->capseen = cap;
    }
    size_t j = (b * 0x9e3779b97f4a7c15ull) & (c->capseen - 1);
    while (c->seen[j]) {
        if (c->seen[j] == b)
            return false;
        j = (j + 1) & (c->capseen - 1);
    }
    c->seen[j] = b;
    c->nseen++;
    return true;
}

static bool in_space(struct pool *pool, uint64_t start, uint64_t len)
{
    pblk_t p = {start};
    uint32_t m = pblk_member(p);
    return m < pool->nmembers && pblk_offset(p) >= CS_FIRST_DATA_BLOCK && len > 0 &&
           pblk_offset(p) + len <= pool->members[m].blocks - 1;
}

static int check_node(void *ctx, pblk_t b, enum tree_type type)
{
    struct check *c = ctx;
    (void)type;
    if (!in_space(c->pool, b.v, 1)) {
        problem(c, "node address %#llx is outside the allocatable space",
                (unsigned long long)b.v);
        return 0;
    }
    add_ref(c, b.v, 1);
    bool first = first_visit(c, b.v);
    if (first)
        c->rep->nodes++;
    return c->err ? c->err : first;
}

static int walk_tree(struct check *c, enum tree_type type, pblk_t root);

static int check_value(void *ctx, enum tree_type type, uint64_t key, const void *value)
{
    struct check *c = ctx;
    const struct btree_type *t = btree_type_get(type);
    if (!t)
        return 0;
    char why[256];
    if (t->check && t->check(key, value, why, sizeof(why)) < 0)
        problem(c, "tree %s: key %llu: %s", t->name, (unsigned long long)key, why);
    if (type == TREE_REFCOUNT) {
        const struct disk_refcount *v = value;
        if (c->nrc == c->caprc) {
            size_t cap = c->caprc ? c->caprc * 2 : 1024;
            struct run *r = realloc(c->rc, cap * sizeof(*r));
            if (!r)
                return -ENOMEM;
            c->rc = r;
            c->caprc = cap;
        }
        c->rc[c->nrc++] = (struct run){key, v->len, v->count};
        return 0;
    }
    if (!t->refs)
        return 0;
    struct value_ref refs[VALUE_MAX_REFS];
    unsigned n = t->refs(value, refs);
    for (unsigned i = 0; i < n; i++) {
        if (refs[i].tree_type != TREE_NONE) {
            int r = walk_tree(c, refs[i].tree_type, refs[i].start);
            if (r < 0)
                return r;
            continue;
        }
        if (!in_space(c->pool, refs[i].start.v, refs[i].nblocks)) {
            problem(c, "tree %s: key %llu: data run %#llx+%llu outside the allocatable space",
                    t->name, (unsigned long long)key, (unsigned long long)refs[i].start.v,
                    (unsigned long long)refs[i].nblocks);
            continue;
        }
        add_ref(c, refs[i].start.v, refs[i].nblocks);
        c->rep->data_blocks += refs[i].nblocks;
    }
    return c->err;
}

static const struct btree_check_ops ops = {
    .node = check_node,
    .value = check_value,
    .problem = problem,
};

static int walk_tree(struct check *c, enum tree_type type, pblk_t root)
{
    if (!btree_type_get(type)) {
        problem(c, "reference to a tree of unknown type %u", type);
        return 0;
    }
    /* btree_check reports the root through ops.node too. */
    return btree_check(c->pool, type, root, &ops, c);
}

static int cmp_event(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* Compares the counts the trees imply with the reference-count tree's runs. */
static void compare_counts(struct check *c)
{
    qsort(c->ev, c->nev, sizeof(*c->ev), cmp_event);
    size_t ri = 0;      /* next run of the tree */
    uint64_t covered = 0; /* blocks of the tree's runs already matched */
    int64_t count = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < c->nev;) {
        uint64_t at = c->ev[i].at;
        while (i < c->nev && c->ev[i].at == at)
            count += c->ev[i++].d;
        if (count == 0 || i == c->nev)
            continue;
        uint64_t end = c->ev[i].at; /* [at, end) has @count references */
        total += end - at;
        for (uint64_t cur = at; cur < end;) {
            while (ri < c->nrc && c->rc[ri].start + c->rc[ri].len <= cur)
                ri++;
            if (ri == c->nrc || c->rc[ri].start > cur) {
                uint64_t stop = ri < c->nrc ? MIN(end, c->rc[ri].start) : end;
                problem(c, "blocks %#llx+%llu have %lld references but no reference count "
                           "(leak into free space)",
                        (unsigned long long)cur, (unsigned long long)(stop - cur),
                        (long long)count);
                cur = stop;
                continue;
            }
            uint64_t stop = MIN(end, c->rc[ri].start + c->rc[ri].len);
            if (c->rc[ri].count != count)
                problem(c, "blocks %#llx+%llu: reference count %u, but %lld references found",
                        (unsigned long long)cur, (unsigned long long)(stop - cur),
                        c->rc[ri].count, (long long)count);
            covered += stop - cur;
            cur = stop;
        }
    }
    uint64_t counted = 0;
    for (size_t i = 0; i < c->nrc; i++)
        counted += c->rc[i].len;
    if (counted != covered)
        problem(c, "%llu blocks have a reference count but nothing references them (leaked)",
                (unsigned long long)(counted - covered));
    if (c->pool->sb.allocated_blocks != counted)
        problem(c, "superblock says %llu blocks are allocated, the counts say %llu",
                (unsigned long long)c->pool->sb.allocated_blocks,
                (unsigned long long)counted);
    (void)total;
}

int pool_check(struct pool *pool, struct pool_check_report *rep)
{
    struct pool_check_report dummy;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof(*rep));
    struct check c = {.pool = pool, .rep = rep};
    pool_md_lock(pool);
    if (cache_dirty_bytes(pool->cache) || !RB_EMPTY(&pool->deltas) || pool->sb_dirty) {
        pool_md_unlock(pool);
        log_err("pool %s: check: uncommitted changes; commit first", pool->name);
        return -EAGAIN;
    }
    static const struct {
        enum pool_root root;
        enum tree_type type;
    } roots[] = {
        {POOL_ROOT_REFCOUNT, TREE_REFCOUNT},
        {POOL_ROOT_CATALOG, TREE_CATALOG},
        {POOL_ROOT_DEDUP, TREE_DEDUP},
    };
    int r = 0;
    for (size_t i = 0; i < ARRAY_SIZE(roots) && r == 0; i++) {
        pblk_t root = pool_root_get(pool, roots[i].root);
        if (pblk_is_none(root)) {
            if (roots[i].root == POOL_ROOT_REFCOUNT)
                problem(&c, "the superblock has no reference-count tree");
            continue;
        }
        r = walk_tree(&c, roots[i].type, root);
    }
    if (r == 0 && c.err == 0)
        compare_counts(&c);
    pool_md_unlock(pool);
    free(c.ev);
    free(c.seen);
    free(c.rc);
    if (r == 0)
        r = c.err;
    if (r < 0)
        return r;
    return rep->errors ? -EUCLEAN : 0;
}
