/*
 * Pool lifecycle: labels, superblocks, create, open (members in any order, recognised by their
 * labels), commit, close, add a member, destroy; and the committer thread.
 *
 * Commit order (DESIGN.md): fold reference-count deltas into their tree, write every dirty
 * node to its (new) place, flush the members (this also makes completed data writes durable),
 * write the superblock slot holding the older generation on every member, flush again. A
 * crash before the second flush leaves the previous superblock the newest valid one, and
 * everything it references untouched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "pool/priv.h"

void pool_settings_default(struct pool_settings *s)
{
    s->cache_bytes = 256ull << 20;
    s->dirty_bound_bytes = 64ull << 20;
    s->commit_interval_ms = 5000;
    s->low_space_pct = 90;
}

static void settings_to_sb(struct disk_super *sb, const struct pool_settings *s)
{
    sb->cache_bytes = s->cache_bytes;
    sb->dirty_bound_bytes = s->dirty_bound_bytes;
    sb->commit_interval_ms = s->commit_interval_ms;
    sb->low_space_pct = s->low_space_pct;
}

static void settings_from_sb(const struct disk_super *sb, struct pool_settings *s)
{
    s->cache_bytes = sb->cache_bytes;
    s->dirty_bound_bytes = sb->dirty_bound_bytes;
    s->commit_interval_ms = sb->commit_interval_ms;
    s->low_space_pct = sb->low_space_pct;
}

const char *pool_name(const struct pool *pool) { return pool->name; }
void pool_md_lock(struct pool *pool) { pthread_mutex_lock(&pool->md_lock); }
void pool_md_unlock(struct pool *pool) { pthread_mutex_unlock(&pool->md_lock); }
uint64_t pool_generation(struct pool *pool) { return atomic_load(&pool->generation); }
void pool_set_user(struct pool *pool, void *user, void (*destroy)(void *user))
{
    pool->user = user;
    pool->user_destroy = destroy;
}
void *pool_get_user(struct pool *pool) { return pool->user; }

void pool_set_precommit(struct pool *pool, pool_precommit_fn fn, void *ctx)
{
    pool->precommit = fn;
    pool->precommit_ctx = ctx;
}

pblk_t pool_root_get(struct pool *pool, enum pool_root which)
{
    return (pblk_t){pool->sb.roots[which]};
}

void pool_root_set(struct pool *pool, enum pool_root which, pblk_t root)
{
    if (pool->sb.roots[which] != root.v) {
        pool->sb.roots[which] = root.v;
        pool->sb_dirty = true;
    }
}

uint64_t pool_next_id(struct pool *pool)
{
    pool->sb_dirty = true;
    return pool->sb.next_id++;
}

void pool_poison(struct pool *pool, int err, const char *what)
{
    if (!pool->poisoned) {
        log_err("pool %s: %s failed (%s): no further changes until it is reopened", pool->name,
                what, strerror(-err));
        pool->poisoned = err < 0 ? err : -EIO;
    }
}

/* ------------------------------------------------------------------------------------------
 * Labels
 */

static void *block_alloc(void)
{
    void *p = aligned_alloc(CS_BLOCK_SIZE, CS_BLOCK_SIZE);
    if (p)
        memset(p, 0, CS_BLOCK_SIZE);
    return p;
}

/* Reads and checks the label of an open member fd: copy A, else copy B. */
static int label_read_fd(int fd, uint64_t blocks, struct disk_label *out)
{
    int err = -ENODATA;
    for (int copy = 0; copy < 2; copy++) {
        uint64_t at = copy == 0 ? CS_LABEL_BLOCK : blocks - 1;
        if (blocks < CS_MIN_MEMBER_BLOCKS && copy == 1)
            break;
        int r = dev_pread_fd(fd, out, CS_BLOCK_SIZE, at * CS_BLOCK_SIZE);
        if (r < 0) {
            err = r;
            continue;
        }
        const char *why;
        if (md_verify(out, MD_MAGIC_LABEL, pblk_make(out->member_index, at), &why) == 0 &&
            (copy == 0 || out->member_blocks == blocks))
            return out->format_version == CS_FORMAT_VERSION ? 0 : -EPROTONOSUPPORT;
        if (out->h.magic == MD_MAGIC_LABEL)
            err = -EUCLEAN;
    }
    return err;
}

int pool_read_label(const char *path, struct pool_label_info *info)
{
    int fd;
    uint64_t blocks;
    int r = dev_open_member(path, true, false, &fd, &blocks);
    if (r < 0)
        return r;
    struct disk_label *l = block_alloc();
    if (!l) {
        close(fd);
        return -ENOMEM;
    }
    r = blocks >= 1 ? label_read_fd(fd, blocks, l) : -ENODATA;
    if (r == 0) {
        memcpy(info->pool_name, l->pool_name, CS_POOL_NAME_MAX);
        info->pool_name[CS_POOL_NAME_MAX] = 0;
        memcpy(info->pool_uuid, l->pool_uuid, 16);
        info->member_index = l->member_index;
        info->member_blocks = l->member_blocks;
    }
    free(l);
    close(fd);
    return r;
}

static int label_write(struct pool *pool, struct member *m)
{
    struct disk_label *l = block_alloc();
    if (!l)
        return -ENOMEM;
    memcpy(l->pool_uuid, pool->uuid, 16);
    memcpy(l->member_uuid, m->uuid, 16);
    l->format_version = CS_FORMAT_VERSION;
    l->member_index = m->index;
    l->member_blocks = m->blocks;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    l->created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    memcpy(l->pool_name, pool->name, strnlen(pool->name, CS_POOL_NAME_MAX));
    int r = 0;
    for (int copy = 0; copy < 2 && r == 0; copy++) {
        uint64_t at = copy == 0 ? CS_LABEL_BLOCK : m->blocks - 1;
        md_stamp(l, MD_MAGIC_LABEL, pblk_make(m->index, at), 0);
        r = dev_write(pool, pblk_make(m->index, at), l, 1);
    }
    free(l);
    return r;
}

/* ------------------------------------------------------------------------------------------
 * The pool object
 */

static void *committer_main(void *arg);

static struct pool *pool_alloc(const char *name)
{
    sm_register();
    struct pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    snprintf(pool->name, sizeof(pool->name), "%s", name);
    pthread_mutex_init(&pool->md_lock, NULL);
    pthread_mutex_init(&pool->commit_lock, NULL);
    pthread_cond_init(&pool->commit_cond, NULL);
    RB_INIT(&pool->deltas);
    for (unsigned i = 0; i < CS_MAX_MEMBERS; i++)
        pool->members[i].fd = -1;
    dev_fault_attach(pool);
    return pool;
}

static void pool_free(struct pool *pool)
{
    if (!pool)
        return;
    if (pool->user_destroy)
        pool->user_destroy(pool->user);
    sm_unload(pool);
    cache_destroy(pool->cache);
    for (unsigned i = 0; i < CS_MAX_MEMBERS; i++) {
        if (pool->members[i].fd >= 0)
            close(pool->members[i].fd);
        free(pool->members[i].path);
    }
    pthread_mutex_destroy(&pool->md_lock);
    pthread_mutex_destroy(&pool->commit_lock);
    pthread_cond_destroy(&pool->commit_cond);
    free(pool);
}

static int start_committer(struct pool *pool)
{
    if (pool->open_flags & POOL_OPEN_RDONLY)
        return 0;
    int r = pthread_create(&pool->committer, NULL, committer_main, pool);
    if (r != 0)
        return -r;
    pool->committer_running = true;
    return 0;
}

static void stop_committer(struct pool *pool)
{
    if (!pool->committer_running)
        return;
    pthread_mutex_lock(&pool->commit_lock);
    pool->committer_stop = true;
    pthread_cond_signal(&pool->commit_cond);
    pthread_mutex_unlock(&pool->commit_lock);
    pthread_join(pool->committer, NULL);
    pool->committer_running = false;
}

static bool pool_dirty(struct pool *pool)
{
    return pool->sb_dirty || cache_dirty_bytes(pool->cache) > 0 || !RB_EMPTY(&pool->deltas) ||
           pool->freed;
}

/* ------------------------------------------------------------------------------------------
 * Commit
 */

static int write_run(void *ctx, struct block **run, size_t n)
{
    struct pool *pool = ctx;
    uint64_t gen = atomic_load(&pool->generation) + 1;
    void *bufs[n];
    for (size_t i = 0; i < n; i++) {
        md_stamp(block_data(run[i]), MD_MAGIC_NODE, block_loc(run[i]), gen);
        bufs[i] = block_data(run[i]);
    }
    return dev_writev_run(pool, block_loc(run[0]), bufs, n);
}

static int write_supers(struct pool *pool, uint64_t gen)
{
    struct disk_super *sb = block_alloc();
    if (!sb)
        return -ENOMEM;
    pool->sb.member_count = pool->nmembers;
    for (unsigned i = 0; i < pool->nmembers; i++) {
        memcpy(pool->sb.members[i].uuid, pool->members[i].uuid, 16);
        pool->sb.members[i].blocks = pool->members[i].blocks;
    }
    pool->sb.allocated_blocks = pool->allocated_blocks;
    int r = 0;
    for (unsigned i = 0; i < pool->nmembers && r == 0; i++) {
        memcpy(sb, &pool->sb, sizeof(*sb));
        pblk_t at = pblk_make(i, CS_SUPER_BLOCK0 + gen % CS_SUPER_SLOTS);
        md_stamp(sb, MD_MAGIC_SUPER, at, gen);
        r = dev_write(pool, at, sb, 1);
    }
    free(sb);
    return r;
}

int super_commit(struct pool *pool)
{
    if (pool->poisoned)
        return pool->poisoned;
    if (pool->open_flags & POOL_OPEN_RDONLY)
        return 0;
    int r = 0;
    if (pool->precommit)
        r = pool->precommit(pool, pool->precommit_ctx);
    if (r == 0 && !pool_dirty(pool)) {
        /* No metadata changed, but data overwritten in place must still become durable. */
        r = dev_sync(pool);
        if (r < 0)
            pool_poison(pool, r, "flush");
        return r;
    }
    if (r == 0)
        r = sm_fold(pool);
    if (r == 0)
        r = cache_write_dirty(pool->cache, write_run, pool);
    if (r == 0)
        r = dev_sync(pool);
    uint64_t gen = atomic_load(&pool->generation) + 1;
    if (r == 0)
        r = write_supers(pool, gen);
    if (r == 0)
        r = dev_sync(pool);
    if (r < 0) {
        pool_poison(pool, r, "commit");
        return r;
    }
    pool->sb.h.generation = gen;
    atomic_store(&pool->generation, gen);
    cache_mark_all_clean(pool->cache);
    sm_release_freed(pool);
    pool->committed_allocated = pool->allocated_blocks;
    pool->sb_dirty = false;
    pool->commits++;
    return 0;
}

int pool_commit_locked(struct pool *pool)
{
    pthread_mutex_lock(&pool->commit_lock);
    uint64_t t = ++pool->commit_requested;
    pthread_mutex_unlock(&pool->commit_lock);
    int r = super_commit(pool);
    pthread_mutex_lock(&pool->commit_lock);
    pool->commit_completed = t;
    pool->commit_result = r;
    pthread_mutex_unlock(&pool->commit_lock);
    return r;
}

int pool_commit(struct pool *pool)
{
    pthread_mutex_lock(&pool->commit_lock);
    uint64_t mine = ++pool->commit_requested;
    pthread_mutex_unlock(&pool->commit_lock);

    pthread_mutex_lock(&pool->md_lock);
    pthread_mutex_lock(&pool->commit_lock);
    /* A commit that started after this request arrived covers it. */
    if (pool->commit_completed >= mine) {
        int r = pool->commit_result;
        pthread_mutex_unlock(&pool->commit_lock);
        pthread_mutex_unlock(&pool->md_lock);
        return r;
    }
    uint64_t covers = pool->commit_requested;
    pthread_mutex_unlock(&pool->commit_lock);
    int r = super_commit(pool);
    pthread_mutex_lock(&pool->commit_lock);
    pool->commit_completed = covers;
    pool->commit_result = r;
    pthread_mutex_unlock(&pool->commit_lock);
    pthread_mutex_unlock(&pool->md_lock);
    return r;
}

bool pool_needs_commit(struct pool *pool)
{
    return cache_dirty_bytes(pool->cache) >= pool->sb.dirty_bound_bytes;
}

void pool_kick_commit(struct pool *pool)
{
    pthread_mutex_lock(&pool->commit_lock);
    pool->commit_kick = true;
    pthread_cond_signal(&pool->commit_cond);
    pthread_mutex_unlock(&pool->commit_lock);
}

void pool_flush_async(struct pool *pool, struct pool_flush *f)
{
    if (!pool->committer_running) { /* read-only: nothing to commit */
        f->result = 0;
        pool_reactor_post(f->reactor, &f->work);
        return;
    }
    pthread_mutex_lock(&pool->commit_lock);
    f->next = pool->flushes;
    pool->flushes = f;
    pthread_cond_signal(&pool->commit_cond);
    pthread_mutex_unlock(&pool->commit_lock);
}

/* Commits for the flushes queued so far and posts their results. commit_lock held. */
static void serve_flushes(struct pool *pool)
{
    struct pool_flush *f = pool->flushes;
    pool->flushes = NULL;
    pthread_mutex_unlock(&pool->commit_lock);
    int r = pool_commit(pool);
    while (f) {
        struct pool_flush *next = f->next;
        f->result = r;
        pool_reactor_post(f->reactor, &f->work);
        f = next;
    }
    pthread_mutex_lock(&pool->commit_lock);
}

static void *committer_main(void *arg)
{
    struct pool *pool = arg;
    pthread_mutex_lock(&pool->commit_lock);
    while (!pool->committer_stop) {
        if (pool->flushes) {
            serve_flushes(pool);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ms = pool->sb.commit_interval_ms ? pool->sb.commit_interval_ms : 5000;
        ts.tv_sec += (time_t)(ms / 1000);
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!pool->commit_kick)
            pthread_cond_timedwait(&pool->commit_cond, &pool->commit_lock, &ts);
        if (pool->committer_stop)
            break;
        if (pool->flushes)
            continue;
        pool->commit_kick = false;
        pthread_mutex_unlock(&pool->commit_lock);
        pthread_mutex_lock(&pool->md_lock);
        bool dirty = pool_dirty(pool) && !pool->poisoned;
        pthread_mutex_unlock(&pool->md_lock);
        if (dirty)
            pool_commit(pool);
        pthread_mutex_lock(&pool->commit_lock);
    }
    if (pool->flushes)
        serve_flushes(pool);
    pthread_mutex_unlock(&pool->commit_lock);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Create
 */

/* Two paths naming the same file or device would otherwise be caught by our own exclusive
 * lock on the first and reported as "in use by another process": say what it is instead.
 * Paths that cannot be stat'ed are left to the open, which reports them. */
static int members_distinct(const char *const *paths, unsigned n)
{
    for (unsigned i = 1; i < n; i++) {
        struct stat a;
        if (stat(paths[i], &a) < 0)
            continue;
        for (unsigned j = 0; j < i; j++) {
            struct stat b;
            if (stat(paths[j], &b) < 0)
                continue;
            bool same = S_ISBLK(a.st_mode) && S_ISBLK(b.st_mode)
                            ? a.st_rdev == b.st_rdev
                            : a.st_dev == b.st_dev && a.st_ino == b.st_ino;
            if (same) {
                log_err("member %s given twice (the same %s as %s)", paths[i],
                        S_ISBLK(a.st_mode) ? "device" : "file", paths[j]);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int member_setup(struct pool *pool, unsigned index, const char *path, int fd,
                        uint64_t blocks)
{
    struct member *m = &pool->members[index];
    m->path = strdup(path);
    if (!m->path)
        return -ENOMEM;
    m->fd = fd;
    m->index = index;
    m->blocks = blocks;
    m->hint = CS_FIRST_DATA_BLOCK;
    return 0;
}

/* Opens a member that is to be labelled: exclusive, big enough, and not in a pool. */
static int open_new_member(const char *pool_name, const char *path, bool force, int *fd,
                           uint64_t *blocks)
{
    int r = dev_open_member(path, false, true, fd, blocks);
    if (r == -EBUSY) {
        log_err("member %s is in use by another process", path);
        return r;
    }
    if (r < 0) {
        log_err("member %s: %s", path, strerror(-r));
        return r;
    }
    if (*blocks < CS_MIN_MEMBER_BLOCKS) {
        log_err("member %s is too small (%llu KiB; at least %u KiB)", path,
                (unsigned long long)(*blocks * 4), CS_MIN_MEMBER_BLOCKS * 4);
        close(*fd);
        return -EINVAL;
    }
    if (*blocks > PBLK_OFFSET_MASK) {
        close(*fd);
        return -EFBIG;
    }
    struct disk_label *l = block_alloc();
    if (!l) {
        close(*fd);
        return -ENOMEM;
    }
    r = label_read_fd(*fd, *blocks, l);
    if ((r == 0 || r == -EPROTONOSUPPORT) && !force) {
        log_err("member %s belongs to pool %.64s (use --force to reuse it for pool %s)", path,
                l->pool_name, pool_name);
        free(l);
        close(*fd);
        return -EEXIST;
    }
    free(l);
    return 0;
}

/* Zeroes the superblock slots of a member so no old pool's state is ever mistaken for ours. */
static int wipe_supers(struct pool *pool, struct member *m)
{
    void *z = block_alloc();
    if (!z)
        return -ENOMEM;
    int r = 0;
    for (unsigned s = 0; s < CS_SUPER_SLOTS && r == 0; s++)
        r = dev_write(pool, pblk_make(m->index, CS_SUPER_BLOCK0 + s), z, 1);
    free(z);
    return r;
}

int pool_create(const char *name, const char *const *members, unsigned n,
                const struct pool_settings *settings, bool force)
{
    const char *why;
    if (name_check(name, &why) < 0) {
        log_err("pool name \"%s\": %s", name, why);
        return -EINVAL;
    }
    if (n == 0 || n > CS_MAX_MEMBERS) {
        log_err("pool %s: needs 1 to %u members", name, CS_MAX_MEMBERS);
        return -EINVAL;
    }
    if (members_distinct(members, n) < 0)
        return -EINVAL;
    struct pool *pool = pool_alloc(name);
    if (!pool)
        return -ENOMEM;
    struct pool_settings def;
    if (!settings) {
        pool_settings_default(&def);
        settings = &def;
    }
    int r = cache_create(settings->cache_bytes, &pool->cache);
    uuid_generate_random16(pool->uuid);
    for (unsigned i = 0; i < n && r == 0; i++) {
        for (unsigned j = 0; j < i; j++)
            if (strcmp(members[i], members[j]) == 0) {
                log_err("pool %s: member %s given twice", name, members[i]);
                r = -EINVAL;
            }
        int fd;
        uint64_t blocks;
        if (r == 0)
            r = open_new_member(name, members[i], force, &fd, &blocks);
        if (r == 0) {
            r = member_setup(pool, i, members[i], fd, blocks);
            if (r < 0)
                close(fd);
            else
                pool->nmembers++;
        }
    }
    if (r == 0) {
        memcpy(pool->sb.pool_uuid, pool->uuid, 16);
        pool->sb.format_version = CS_FORMAT_VERSION;
        pool->sb.next_id = 1;
        memcpy(pool->sb.pool_name, name, strnlen(name, CS_POOL_NAME_MAX));
        settings_to_sb(&pool->sb, settings);
        r = sm_load(pool); /* all free: the refcount tree does not exist yet */
    }
    for (unsigned i = 0; i < pool->nmembers && r == 0; i++) {
        uuid_generate_random16(pool->members[i].uuid);
        r = wipe_supers(pool, &pool->members[i]);
        if (r == 0)
            r = label_write(pool, &pool->members[i]);
    }
    if (r == 0) {
        pthread_mutex_lock(&pool->md_lock);
        pblk_t root;
        r = btree_create(pool, TREE_REFCOUNT, &root);
        if (r == 0) {
            pool_root_set(pool, POOL_ROOT_REFCOUNT, root);
            r = super_commit(pool);
        }
        pthread_mutex_unlock(&pool->md_lock);
    }
    pool_free(pool);
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Open
 */

struct cand {
    const char *path;
    int fd;
    uint64_t blocks;
    struct disk_label label;
};

static int read_best_super(struct pool *pool, struct cand *c, unsigned n, struct disk_super *best)
{
    struct disk_super *sb = block_alloc();
    if (!sb)
        return -ENOMEM;
    bool found = false;
    uint64_t newer_gen = 0; /* newest valid superblock of a format we cannot read */
    unsigned newer_version = 0;
    for (unsigned i = 0; i < n; i++) {
        for (unsigned s = 0; s < CS_SUPER_SLOTS; s++) {
            pblk_t at = pblk_make(c[i].label.member_index, CS_SUPER_BLOCK0 + s);
            if (dev_pread_fd(c[i].fd, sb, CS_BLOCK_SIZE, pblk_offset(at) * CS_BLOCK_SIZE) < 0)
                continue;
            const char *why;
            if (md_verify(sb, MD_MAGIC_SUPER, at, &why) < 0) {
                if (sb->h.magic == MD_MAGIC_SUPER)
                    log_warn("pool %s: member %s: superblock slot %u: %s; using the other",
                             pool->name, c[i].path, s, why);
                continue;
            }
            if (memcmp(sb->pool_uuid, pool->uuid, 16) == 0 &&
                sb->format_version != CS_FORMAT_VERSION && sb->h.generation >= newer_gen) {
                /* Skipping it would open an older state and let our next commit overwrite
                 * what a newer version wrote. */
                newer_gen = sb->h.generation;
                newer_version = sb->format_version;
                continue;
            }
            if (memcmp(sb->pool_uuid, pool->uuid, 16) != 0 ||
                sb->format_version != CS_FORMAT_VERSION ||
                sb->member_count == 0 || sb->member_count > CS_MAX_MEMBERS)
                continue;
            if (!found || sb->h.generation > best->h.generation) {
                memcpy(best, sb, sizeof(*sb));
                found = true;
            }
        }
    }
    free(sb);
    if (newer_version && (!found || newer_gen > best->h.generation)) {
        log_err("pool %s: superblock generation %llu has format version %u, which is not "
                "supported (this is %u)",
                pool->name, (unsigned long long)newer_gen, newer_version, CS_FORMAT_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (!found) {
        log_err("pool %s: no valid superblock on any member", pool->name);
        return -EUCLEAN;
    }
    return 0;
}

int pool_open(const char *const *paths, unsigned n, unsigned flags, struct pool **out)
{
    if (n == 0 || n > CS_MAX_MEMBERS)
        return -EINVAL;
    if (members_distinct(paths, n) < 0)
        return -EINVAL;
    bool rdonly = flags & POOL_OPEN_RDONLY;
    struct cand *c = aligned_alloc(CS_BLOCK_SIZE, ROUND_UP(sizeof(*c) * n, CS_BLOCK_SIZE));
    struct disk_label *lbuf = block_alloc();
    struct pool *pool = NULL;
    int r = (c && lbuf) ? 0 : -ENOMEM;
    unsigned opened = 0;
    for (unsigned i = 0; i < n && r == 0; i++) {
        c[i].path = paths[i];
        r = dev_open_member(paths[i], rdonly, !(flags & POOL_OPEN_NOLOCK), &c[i].fd,
                            &c[i].blocks);
        if (r == -EBUSY)
            log_err("member %s is in use by another process", paths[i]);
        else if (r < 0)
            log_err("member %s: %s", paths[i], strerror(-r));
        if (r < 0)
            break;
        opened++;
        r = c[i].blocks ? label_read_fd(c[i].fd, c[i].blocks, lbuf) : -ENODATA;
        if (r == -EPROTONOSUPPORT)
            log_err("member %s: format version %u is not supported (this is %u)", paths[i],
                    lbuf->format_version, CS_FORMAT_VERSION);
        else if (r < 0)
            log_err("member %s: no valid Cistern label", paths[i]);
        else
            c[i].label = *lbuf;
    }
    for (unsigned i = 1; i < n && r == 0; i++) {
        if (memcmp(c[i].label.pool_uuid, c[0].label.pool_uuid, 16) != 0) {
            log_err("member %s belongs to pool %.64s, member %s to pool %.64s", paths[i],
                    c[i].label.pool_name, paths[0], c[0].label.pool_name);
            r = -EXDEV;
        }
        for (unsigned j = 0; j < i && r == 0; j++)
            if (memcmp(c[i].label.member_uuid, c[j].label.member_uuid, 16) == 0) {
                log_err("members %s and %s are the same member", paths[j], paths[i]);
                r = -EINVAL;
            }
    }
    if (r == 0) {
        char nm[CS_POOL_NAME_MAX + 1];
        memcpy(nm, c[0].label.pool_name, CS_POOL_NAME_MAX);
        nm[CS_POOL_NAME_MAX] = 0;
        pool = pool_alloc(nm);
        r = pool ? 0 : -ENOMEM;
    }
    if (r == 0) {
        memcpy(pool->uuid, c[0].label.pool_uuid, 16);
        pool->open_flags = flags;
        r = read_best_super(pool, c, n, &pool->sb);
    }
    /* Place members by the superblock's table; every listed member must be here. */
    for (unsigned i = 0; r == 0 && i < pool->sb.member_count; i++) {
        struct disk_member *dm = &pool->sb.members[i];
        unsigned j;
        for (j = 0; j < n; j++)
            if (c[j].fd >= 0 && memcmp(c[j].label.member_uuid, dm->uuid, 16) == 0)
                break;
        if (j == n) {
            char u[37];
            uuid_format(dm->uuid, u);
            log_err("pool %s: member %u (uuid %s) is missing", pool->name, i, u);
            r = -ENOENT;
            break;
        }
        if (c[j].blocks < dm->blocks) {
            log_err("pool %s: member %s is shorter than the pool expects (%llu blocks, "
                    "expected %llu): truncated?",
                    pool->name, c[j].path, (unsigned long long)c[j].blocks,
                    (unsigned long long)dm->blocks);
            r = -EUCLEAN;
            break;
        }
        r = member_setup(pool, i, c[j].path, c[j].fd, dm->blocks);
        memcpy(pool->members[i].uuid, dm->uuid, 16);
        c[j].fd = -1;
        pool->nmembers++;
    }
    for (unsigned j = 0; r == 0 && j < n; j++)
        if (c[j].fd >= 0)
            log_warn("pool %s: member %s is labelled but not in the pool (an interrupted add?); "
                     "ignored",
                     pool->name, c[j].path);
    if (r == 0) {
        atomic_store(&pool->generation, pool->sb.h.generation);
        r = cache_create(pool->sb.cache_bytes, &pool->cache);
    }
    if (r == 0) {
        pthread_mutex_lock(&pool->md_lock);
        r = sm_load(pool);
        pthread_mutex_unlock(&pool->md_lock);
    }
    if (r == 0)
        r = start_committer(pool);
    for (unsigned i = 0; i < opened; i++)
        if (c[i].fd >= 0)
            close(c[i].fd);
    free(c);
    free(lbuf);
    if (r < 0) {
        pool_free(pool);
        return r;
    }
    *out = pool;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Close, add, destroy
 */

int pool_close(struct pool *pool)
{
    if (!pool)
        return 0;
    stop_committer(pool);
    /* A poisoned pool cannot commit: what changed since its last commit is lost, and the
     * caller must hear so rather than take the close for a successful commit. */
    int r = pool->poisoned;
    if (!(pool->open_flags & POOL_OPEN_RDONLY) && !pool->poisoned) {
        pthread_mutex_lock(&pool->md_lock);
        r = super_commit(pool);
        pthread_mutex_unlock(&pool->md_lock);
    }
    pool_free(pool);
    return r;
}

void pool_abandon(struct pool *pool)
{
    if (!pool)
        return;
    stop_committer(pool);
    cache_drop_dirty(pool->cache);
    pool_free(pool);
}

int pool_add_member(struct pool *pool, const char *path, bool force)
{
    if (pool->nmembers >= CS_MAX_MEMBERS)
        return -E2BIG;
    for (unsigned i = 0; i < pool->nmembers; i++)
        if (strcmp(pool->members[i].path, path) == 0) {
            log_err("pool %s: %s is already a member", pool->name, path);
            return -EEXIST;
        }
    int fd;
    uint64_t blocks;
    int r = open_new_member(pool->name, path, force, &fd, &blocks);
    if (r < 0)
        return r;
    pthread_mutex_lock(&pool->md_lock);
    unsigned i = pool->nmembers;
    r = member_setup(pool, i, path, fd, blocks);
    if (r < 0) {
        close(fd);
        pthread_mutex_unlock(&pool->md_lock);
        return r;
    }
    uuid_generate_random16(pool->members[i].uuid);
    RB_INIT(&pool->members[i].free);
    pool->nmembers++;
    r = wipe_supers(pool, &pool->members[i]);
    if (r == 0)
        r = label_write(pool, &pool->members[i]);
    if (r == 0) {
        sm_free_insert(pool, i, CS_FIRST_DATA_BLOCK, blocks - 1 - CS_FIRST_DATA_BLOCK);
        sm_compute_reserve(pool);
        pool->sb_dirty = true;
        r = super_commit(pool);
    } else {
        pool->nmembers--;
        close(pool->members[i].fd);
        pool->members[i].fd = -1;
        free(pool->members[i].path);
        pool->members[i].path = NULL;
    }
    pthread_mutex_unlock(&pool->md_lock);
    return r;
}

int pool_destroy(struct pool *pool)
{
    stop_committer(pool);
    void *z = block_alloc();
    int r = z ? 0 : -ENOMEM;
    for (unsigned i = 0; i < pool->nmembers && r == 0; i++) {
        struct member *m = &pool->members[i];
        uint64_t wipe[] = {CS_LABEL_BLOCK, CS_SUPER_BLOCK0, CS_SUPER_BLOCK0 + 1, m->blocks - 1};
        for (unsigned k = 0; k < ARRAY_SIZE(wipe) && r == 0; k++)
            r = dev_pwrite_fd(m->fd, z, CS_BLOCK_SIZE, wipe[k] * CS_BLOCK_SIZE);
    }
    if (r == 0)
        r = dev_sync(pool);
    free(z);
    cache_drop_dirty(pool->cache);
    pool_free(pool);
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Information
 */

void pool_stat(struct pool *pool, struct pool_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&pool->md_lock);
    st->generation = atomic_load(&pool->generation);
    for (unsigned i = 0; i < pool->nmembers; i++)
        st->total_blocks += pool->members[i].blocks - CS_FIRST_DATA_BLOCK - 1;
    st->allocated_blocks = pool->allocated_blocks;
    st->free_blocks = sm_free_blocks(pool);
    st->pending_free_blocks = pool->pending_free_blocks;
    st->reserve_blocks = pool->reserve_blocks;
    st->cache_bytes = cache_bound_bytes(pool->cache);
    st->cache_used_bytes = cache_used_bytes(pool->cache);
    st->dirty_bytes = cache_dirty_bytes(pool->cache);
    st->commits = pool->commits;
    st->nmembers = pool->nmembers;
    memcpy(st->uuid, pool->uuid, 16);
    settings_from_sb(&pool->sb, &st->settings);
    uint64_t used = st->total_blocks - st->free_blocks;
    st->low_space = st->total_blocks && used * 100 > st->total_blocks * st->settings.low_space_pct;
    pthread_mutex_unlock(&pool->md_lock);
}

void pool_member_info(struct pool *pool, unsigned i, struct pool_member_info *out)
{
    pthread_mutex_lock(&pool->md_lock);
    out->path = pool->members[i].path;
    out->blocks = pool->members[i].blocks;
    out->free_blocks = pool->members[i].free_blocks;
    pthread_mutex_unlock(&pool->md_lock);
}

void pool_set_settings(struct pool *pool, const struct pool_settings *s)
{
    settings_to_sb(&pool->sb, s);
    cache_set_bound(pool->cache, s->cache_bytes);
    pool->sb_dirty = true;
}
