/*
 * Member devices: opening (with the exclusive lock), synchronous block I/O for metadata,
 * flushes, metadata block stamping and verification, and the fault hook every write of the
 * pool passes through (one mechanism for data, nodes, superblocks and labels).
 *
 * Members are opened with O_DIRECT: buffers are 4096-aligned and lengths whole blocks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/common.h"
#include "pool/priv.h"

#define DEV_LOCK_WAIT_MS 1000 /* how long a lock held by a process just gone is waited for */

static void unflushed_clear(void);

static struct pool_fault g_fault;
static bool g_fault_on;
static atomic_uint_fast64_t g_fault_writes;

void pool_fault_set(const struct pool_fault *f)
{
    if (f) {
        g_fault = *f;
        g_fault_on = true;
    } else {
        g_fault_on = false;
    }
    atomic_store(&g_fault_writes, 0);
    unflushed_clear();
}

uint64_t pool_fault_writes(void) { return atomic_load(&g_fault_writes); }

void dev_fault_attach(struct pool *pool)
{
    pool->fault_on = g_fault_on;
    pool->fault = g_fault;
}

/*
 * Writes made since the last flush, with what they overwrote, when the fault asks for
 * lose_unflushed: a power cut may then undo any of them, as a disk's volatile cache would.
 */
struct unflushed {
    struct unflushed *next; /* older */
    int fd;
    uint64_t off;
    size_t len;
    void *old;
};
static pthread_mutex_t g_unflushed_lock = PTHREAD_MUTEX_INITIALIZER;
static struct unflushed *g_unflushed;

static void unflushed_clear(void)
{
    pthread_mutex_lock(&g_unflushed_lock);
    struct unflushed *u = g_unflushed, *next;
    for (; u; u = next) {
        next = u->next;
        free(u->old);
        free(u);
    }
    g_unflushed = NULL;
    pthread_mutex_unlock(&g_unflushed_lock);
}

static void unflushed_log(int fd, uint64_t off, size_t len)
{
    struct unflushed *u = calloc(1, sizeof(*u));
    void *old = aligned_alloc(CS_BLOCK_SIZE, ROUND_UP(len, CS_BLOCK_SIZE));
    if (!u || !old || dev_pread_fd(fd, old, len, off) < 0) {
        free(u);
        free(old);
        return; /* a write we cannot undo is simply kept */
    }
    u->fd = fd;
    u->off = off;
    u->len = len;
    u->old = old;
    pthread_mutex_lock(&g_unflushed_lock);
    u->next = g_unflushed;
    g_unflushed = u;
    pthread_mutex_unlock(&g_unflushed_lock);
}

static bool overlaps(const struct unflushed *a, const struct unflushed *b)
{
    return a->fd == b->fd && a->off < b->off + b->len && b->off < a->off + a->len;
}

void pool_fault_power_loss(uint64_t seed)
{
    pthread_mutex_lock(&g_unflushed_lock);
    /* Newest first: a write is undone unless a newer write over the same bytes was kept
     * (the disk would have written that one over it). */
    struct unflushed *kept = NULL, *u = g_unflushed, *next;
    g_unflushed = NULL;
    pthread_mutex_unlock(&g_unflushed_lock);
    for (; u; u = next) {
        next = u->next;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        bool undo = (seed >> 33) & 1;
        for (struct unflushed *k = kept; k && undo; k = k->next)
            undo = !overlaps(u, k);
        if (undo) {
            dev_pwrite_fd(u->fd, u->old, u->len, u->off);
            free(u->old);
            free(u);
        } else {
            u->next = kept;
            kept = u;
        }
    }
    for (; kept; kept = next) {
        next = kept->next;
        free(kept->old);
        free(kept);
    }
}

/* Pools copy the process's fault at open (see super.c), so a sweep can run a fresh pool per
 * cut point. The write counter is shared: the budget counts every write of the process. */
int dev_fault_write(struct pool *pool, int fd, uint64_t off, size_t len)
{
    if (!pool->fault_on)
        return 0;
    uint64_t n = atomic_fetch_add(&g_fault_writes, 1);
    if (pool->fault.write_budget < 0 || n < (uint64_t)pool->fault.write_budget) {
        if (pool->fault.lose_unflushed)
            unflushed_log(fd, off, len);
        return 0;
    }
    return pool->fault.fail_errno > 0 ? -pool->fault.fail_errno : 1;
}

int dev_fault_read(struct pool *pool)
{
    if (pool->fault_on && pool->fault.fail_reads && pool->fault.fail_errno > 0) {
        uint64_t n = atomic_load(&g_fault_writes);
        if (pool->fault.write_budget >= 0 && n >= (uint64_t)pool->fault.write_budget)
            return -pool->fault.fail_errno;
    }
    return 0;
}

int dev_open_member(const char *path, bool rdonly, bool lock, int *fdp, uint64_t *blocks)
{
    int fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        int err = -errno;
        if (err == -EINVAL) /* a file system without O_DIRECT */
            log_err("member %s: O_DIRECT is not supported here", path);
        return err;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    uint64_t bytes;
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) {
            int err = -errno;
            close(fd);
            return err;
        }
    } else if (S_ISREG(st.st_mode)) {
        bytes = (uint64_t)st.st_size;
    } else {
        close(fd);
        log_err("member %s: not a regular file or block device", path);
        return -ENOTBLK;
    }
    /* A process that died with I/O in flight keeps its lock until the kernel has torn down
     * its io_uring, a moment after its exit: a restart right after a crash waits that out
     * (DEV_LOCK_WAIT_MS at most) rather than failing. */
    int lr = -1;
    for (unsigned waited = 0; lock && lr < 0; waited += 10) {
        lr = flock(fd, (rdonly ? LOCK_SH : LOCK_EX) | LOCK_NB);
        if (lr < 0 && (errno != EWOULDBLOCK || waited >= DEV_LOCK_WAIT_MS)) {
            int err = -errno;
            close(fd);
            return err == -EWOULDBLOCK ? -EBUSY : err;
        }
        if (lr < 0)
            usleep(10000);
    }
    *fdp = fd;
    *blocks = bytes / CS_BLOCK_SIZE;
    return 0;
}

int dev_pread_fd(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO; /* past the end: the member is shorter than it should be */
        done += (size_t)r;
    }
    return 0;
}

int dev_pwrite_fd(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)r;
    }
    return 0;
}

static struct member *member_of(struct pool *pool, pblk_t b, size_t nblocks)
{
    uint32_t m = pblk_member(b);
    if (m >= pool->nmembers)
        return NULL;
    struct member *mem = &pool->members[m];
    if (pblk_offset(b) + nblocks > mem->blocks)
        return NULL;
    return mem;
}

int dev_read(struct pool *pool, pblk_t b, void *buf, size_t nblocks)
{
    struct member *m = member_of(pool, b, nblocks);
    if (!m) {
        log_err("pool %s: read of block %#llx outside every member", pool->name,
                (unsigned long long)b.v);
        return -EUCLEAN;
    }
    int r = dev_fault_read(pool);
    if (r == 0)
        r = dev_pread_fd(m->fd, buf, nblocks * CS_BLOCK_SIZE,
                         pblk_offset(b) * CS_BLOCK_SIZE);
    if (r < 0)
        log_err("pool %s: member %u (%s): read of block %llu failed: %s", pool->name, m->index,
                m->path, (unsigned long long)pblk_offset(b), strerror(-r));
    return r;
}

int dev_write(struct pool *pool, pblk_t b, const void *buf, size_t nblocks)
{
    struct member *m = member_of(pool, b, nblocks);
    if (!m)
        return -EUCLEAN;
    int r = dev_fault_write(pool, m->fd, pblk_offset(b) * CS_BLOCK_SIZE, nblocks * CS_BLOCK_SIZE);
    if (r == 1)
        return 0;
    if (r == 0)
        r = dev_pwrite_fd(m->fd, buf, nblocks * CS_BLOCK_SIZE, pblk_offset(b) * CS_BLOCK_SIZE);
    if (r < 0)
        log_err("pool %s: member %u (%s): write of block %llu failed: %s", pool->name,
                m->index, m->path, (unsigned long long)pblk_offset(b), strerror(-r));
    return r;
}

/* Writes a run of consecutive blocks held in separate buffers with as few calls as the
 * iovec limit allows. */
int dev_writev_run(struct pool *pool, pblk_t b, void *const *bufs, size_t nblocks)
{
    struct member *m = member_of(pool, b, nblocks);
    if (!m)
        return -EUCLEAN;
    size_t done = 0;
    while (done < nblocks) {
        size_t n = MIN(nblocks - done, (size_t)IOV_MAX);
        int r = dev_fault_write(pool, m->fd, (pblk_offset(b) + done) * CS_BLOCK_SIZE,
                                n * CS_BLOCK_SIZE);
        if (r == 1) {
            done += n;
            continue;
        }
        if (r < 0)
            return r;
        struct iovec iov[IOV_MAX];
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = bufs[done + i];
            iov[i].iov_len = CS_BLOCK_SIZE;
        }
        uint64_t off = (pblk_offset(b) + done) * CS_BLOCK_SIZE;
        size_t want = n * CS_BLOCK_SIZE;
        ssize_t w = pwritev(m->fd, iov, (int)n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 || (size_t)w != want) {
            r = w < 0 ? -errno : -EIO;
            log_err("pool %s: member %u (%s): write of %zu blocks at %llu failed: %s",
                    pool->name, m->index, m->path, n,
                    (unsigned long long)(pblk_offset(b) + done), strerror(-r));
            return r;
        }
        done += n;
    }
    return 0;
}

int dev_sync(struct pool *pool)
{
    /* After a power cut nothing reaches the members, flushes included. */
    if (pool->fault_on && pool->fault.write_budget >= 0 &&
        atomic_load(&g_fault_writes) >= (uint64_t)pool->fault.write_budget)
        return pool->fault.fail_errno > 0 ? -pool->fault.fail_errno : 0;
    if (pool->fault_on && pool->fault.lose_unflushed)
        unflushed_clear(); /* what came before this flush is durable */
    for (unsigned i = 0; i < pool->nmembers; i++) {
        struct member *m = &pool->members[i];
        if (fdatasync(m->fd) < 0) {
            int err = -errno;
            log_err("pool %s: member %u (%s): flush failed: %s", pool->name, i, m->path,
                    strerror(-err));
            return err;
        }
    }
    return 0;
}

static uint32_t md_csum(const void *block, uint32_t magic)
{
    return crc32c(magic, (const char *)block + 4, CS_BLOCK_SIZE - 4);
}

void md_stamp(void *block, uint32_t magic, pblk_t self, uint64_t generation)
{
    struct md_header *h = block;
    h->magic = magic;
    h->blocknr = self.v;
    h->generation = generation;
    h->csum = md_csum(block, magic);
}

int md_verify(const void *block, uint32_t magic, pblk_t self, const char **why)
{
    const struct md_header *h = block;
    if (h->magic != magic) {
        *why = "wrong magic (not the expected kind of block)";
        return -EUCLEAN;
    }
    if (h->csum != md_csum(block, magic)) {
        *why = "checksum mismatch";
        return -EUCLEAN;
    }
    if (h->blocknr != self.v) {
        *why = "block records another address (misdirected write)";
        return -EUCLEAN;
    }
    return 0;
}
