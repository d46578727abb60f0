/*
 * Reactors: threads that each own an io_uring and run the completions of the I/O they issue
 * and the work posted to them. Data I/O of the pool goes through them; the network front ends
 * put their sockets on the same rings, so a request is a small state machine advanced by
 * completions on one thread.
 *
 * Another thread hands work to a reactor with pool_reactor_post(), which queues it under a
 * mutex and wakes the reactor through an eventfd read pending on its ring. Work a reactor
 * posts to itself goes on a list of its own, with neither, and runs in the same pass, after
 * the completions that posted it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "pool/priv.h"

#define RING_ENTRIES 512u

struct reactor {
    pthread_t thread;
    unsigned index;
    struct io_uring ring;
    int efd;
    uint64_t efd_val;
    struct io_op efd_op;
    pthread_mutex_t lock;
    struct reactor_work *head, *tail;     /* posted by other threads, under lock */
    struct reactor_work *own, **own_tail; /* posted by the reactor itself: no lock */
    bool stop;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reactor **g_reactors;
static unsigned g_count, g_configured;
static __thread struct reactor *t_self;

void pool_reactors_configure(unsigned n)
{
    pthread_mutex_lock(&g_lock);
    if (!g_reactors)
        g_configured = n;
    pthread_mutex_unlock(&g_lock);
}

struct reactor *pool_reactor_self(void) { return t_self; }

static struct io_uring_sqe *get_sqe(struct reactor *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    while (!sqe) {
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

static void efd_done(struct io_op *op, int res);

static void arm_efd(struct reactor *r)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_read(sqe, r->efd, &r->efd_val, sizeof(r->efd_val), 0);
    r->efd_op.done = efd_done;
    r->efd_op.expect = sizeof(r->efd_val);
    r->efd_op.fake = false;
    io_uring_sqe_set_data(sqe, &r->efd_op);
}

static void efd_done(struct io_op *op, int res)
{
    struct reactor *r = container_of(op, struct reactor, efd_op);
    (void)res;
    if (!r->stop)
        arm_efd(r);
}

#define OWN_ROUNDS 8 /* rounds of the reactor's own work in one pass, at most */

/* Runs the work other threads posted, then the reactor's own, including what that posts in
 * turn (a reply asks for its connection's output to be flushed once every reply of the pass
 * is queued), for a few rounds: work that keeps posting itself leaves the rest to the next
 * pass, which then does not wait for a completion. */
static void run_posted(struct reactor *r)
{
    pthread_mutex_lock(&r->lock);
    struct reactor_work *w = r->head;
    r->head = r->tail = NULL;
    pthread_mutex_unlock(&r->lock);
    for (unsigned round = 0;; round++) {
        while (w) {
            struct reactor_work *next = w->next;
            w->fn(w);
            w = next;
        }
        if (!r->own || round == OWN_ROUNDS)
            break;
        w = r->own;
        r->own = NULL;
        r->own_tail = &r->own;
    }
}

static void complete(struct io_uring_cqe *cqe)
{
    struct io_op *op = io_uring_cqe_get_data(cqe);
    int res = cqe->res;
    if (op->fake)
        res = op->fake_res;
    else if (res >= 0 && op->expect && (size_t)res != op->expect)
        res = -EIO; /* short data I/O; sockets ask for no such check (expect 0) */
    op->done(op, res);
}

static void *reactor_main(void *arg)
{
    struct reactor *r = arg;
    t_self = r;
    arm_efd(r);
    while (!r->stop) {
        if (r->own)
            io_uring_submit(&r->ring);
        else
            io_uring_submit_and_wait(&r->ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&r->ring, head, cqe) {
            complete(cqe);
            n++;
        }
        io_uring_cq_advance(&r->ring, n);
        run_posted(r);
    }
    return NULL;
}

static int reactor_start(struct reactor *r, unsigned index)
{
    r->index = index;
    r->own_tail = &r->own;
    pthread_mutex_init(&r->lock, NULL);
    r->efd = eventfd(0, EFD_CLOEXEC);
    if (r->efd < 0)
        return -errno;
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = RING_ENTRIES * 4;
    int err = io_uring_queue_init_params(RING_ENTRIES, &r->ring, &p);
    if (err < 0) {
        close(r->efd);
        return err;
    }
    err = -pthread_create(&r->thread, NULL, reactor_main, r);
    if (err < 0) {
        io_uring_queue_exit(&r->ring);
        close(r->efd);
    }
    return err;
}

static int start_group(void)
{
    unsigned n = g_configured;
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    g_reactors = calloc(n, sizeof(*g_reactors));
    if (!g_reactors)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        g_reactors[i] = calloc(1, sizeof(struct reactor));
        int err = g_reactors[i] ? reactor_start(g_reactors[i], i) : -ENOMEM;
        if (err < 0) {
            log_err("cannot start reactor %u: %s", i, strerror(-err));
            free(g_reactors[i]);
            if (i == 0) {
                free(g_reactors);
                g_reactors = NULL;
                return err;
            }
            n = i;
            break;
        }
    }
    g_count = n;
    return 0;
}

struct reactor *pool_reactor_get(unsigned i)
{
    pthread_mutex_lock(&g_lock);
    if (!g_reactors && start_group() < 0) {
        pthread_mutex_unlock(&g_lock);
        return NULL;
    }
    struct reactor *r = g_reactors[i % g_count];
    pthread_mutex_unlock(&g_lock);
    return r;
}

unsigned pool_reactor_count(void)
{
    pool_reactor_get(0);
    return g_count;
}

void pool_reactor_post(struct reactor *r, struct reactor_work *w)
{
    w->next = NULL;
    if (t_self == r) {
        *r->own_tail = w;
        r->own_tail = &w->next;
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (r->tail)
        r->tail->next = w;
    else
        r->head = w;
    r->tail = w;
    pthread_mutex_unlock(&r->lock);
    uint64_t one = 1;
    ssize_t n = write(r->efd, &one, sizeof(one));
    (void)n;
}

static void stop_work(struct reactor_work *w)
{
    (void)w;
    t_self->stop = true;
}

void pool_reactors_shutdown(void)
{
    pthread_mutex_lock(&g_lock);
    for (unsigned i = 0; i < g_count; i++) {
        struct reactor *r = g_reactors[i];
        struct reactor_work w = {.fn = stop_work};
        pool_reactor_post(r, &w);
        pthread_join(r->thread, NULL);
        io_uring_queue_exit(&r->ring);
        close(r->efd);
        pthread_mutex_destroy(&r->lock);
        free(r);
    }
    free(g_reactors);
    g_reactors = NULL;
    g_count = 0;
    pthread_mutex_unlock(&g_lock);
}

/* ------------------------------------------------------------------------------------------
 * Data I/O
 */

static void submit_fake(struct reactor *r, struct io_op *op, int res)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_nop(sqe);
    op->fake = true;
    op->fake_res = res;
    io_uring_sqe_set_data(sqe, op);
}

/* Maps (start, off, len) to a member and byte offset; false when outside the member. */
static bool locate(struct pool *pool, pblk_t start, uint64_t off, size_t len, int *fd,
                   uint64_t *pos)
{
    uint32_t mi = pblk_member(start);
    if (mi >= pool->nmembers)
        return false;
    struct member *m = &pool->members[mi];
    uint64_t first = pblk_offset(start) * CS_BLOCK_SIZE + off;
    if (pblk_offset(start) < CS_FIRST_DATA_BLOCK || first + len > (m->blocks - 1) * CS_BLOCK_SIZE)
        return false;
    *fd = m->fd;
    *pos = first;
    return true;
}

static void data_rw(struct pool *pool, bool write, pblk_t start, uint64_t off, void *buf,
                    size_t len, struct io_op *op)
{
    struct reactor *r = t_self;
    int fd;
    uint64_t pos;
    op->expect = len;
    op->fake = false;
    if (!locate(pool, start, off, len, &fd, &pos)) {
        log_err("pool %s: data I/O at %#llx+%llu outside the members", pool->name,
                (unsigned long long)start.v, (unsigned long long)off);
        submit_fake(r, op, -EIO);
        return;
    }
    int f = write ? dev_fault_write(pool, fd, pos, len) : dev_fault_read(pool);
    if (f != 0) {
        submit_fake(r, op, f == 1 ? (int)len : f);
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(r);
    if (write)
        io_uring_prep_write(sqe, fd, buf, (unsigned)len, pos);
    else
        io_uring_prep_read(sqe, fd, buf, (unsigned)len, pos);
    io_uring_sqe_set_data(sqe, op);
}

void pool_data_read(struct pool *pool, pblk_t start, uint64_t off, void *buf, size_t len,
                    struct io_op *op)
{
    data_rw(pool, false, start, off, buf, len, op);
}

void pool_data_write(struct pool *pool, pblk_t start, uint64_t off, const void *buf, size_t len,
                     struct io_op *op)
{
    data_rw(pool, true, start, off, (void *)buf, len, op);
}

int pool_data_pread(struct pool *pool, pblk_t start, uint64_t off, void *buf, size_t len)
{
    int fd;
    uint64_t pos;
    if (!locate(pool, start, off, len, &fd, &pos))
        return -EIO;
    int f = dev_fault_read(pool);
    return f < 0 ? f : dev_pread_fd(fd, buf, len, pos);
}

int pool_data_pwrite(struct pool *pool, pblk_t start, uint64_t off, const void *buf, size_t len)
{
    int fd;
    uint64_t pos;
    if (!locate(pool, start, off, len, &fd, &pos))
        return -EIO;
    int f = dev_fault_write(pool, fd, pos, len);
    if (f == 1)
        return 0;
    return f < 0 ? f : dev_pwrite_fd(fd, buf, len, pos);
}

/* ------------------------------------------------------------------------------------------
 * Sockets
 */

static struct io_uring_sqe *sock_sqe(struct io_op *op)
{
    op->expect = 0;
    op->fake = false;
    struct io_uring_sqe *sqe = get_sqe(t_self);
    io_uring_sqe_set_data(sqe, op);
    return sqe;
}

void reactor_recv(int fd, void *buf, size_t len, int flags, struct io_op *op)
{
    io_uring_prep_recv(sock_sqe(op), fd, buf, len, flags);
}

void reactor_sendmsg(int fd, const struct msghdr *msg, int flags, struct io_op *op)
{
    io_uring_prep_sendmsg(sock_sqe(op), fd, msg, (unsigned)flags);
}

void reactor_accept(int fd, struct io_op *op)
{
    io_uring_prep_accept(sock_sqe(op), fd, NULL, NULL, SOCK_CLOEXEC);
}

void reactor_poll(int fd, unsigned poll_events, struct io_op *op)
{
    io_uring_prep_poll_add(sock_sqe(op), fd, poll_events);
}

void reactor_cancel(struct io_op *target, struct io_op *op)
{
    io_uring_prep_cancel(sock_sqe(op), target, 0);
}
