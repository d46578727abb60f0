/*
 * The job engine of the volume benchmarks: see bench_job.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_job.h"
#include "common/common.h"

#define MiB ((uint64_t)1 << 20)

struct slot {
    struct vol_req req;
    struct reactor_work work;
    struct job *job;
    uint64_t t_submit;
    struct slot *next_free;
};

/* The next request's offset, or false when the job has nothing more to do. */
static bool job_next(struct job *j, uint64_t *off)
{
    if (j->stop || (j->max_ops && j->issued >= j->max_ops))
        return false;
    switch (j->pat) {
    case PAT_RANDOM:
        *off = j->span_off + rng_below(&j->rng, j->span_len / j->bs) * j->bs;
        break;
    case PAT_SEQ:
        if (j->seq_pos + j->bs > j->span_len) {
            if (!j->wrap)
                return false;
            j->seq_pos = 0;
        }
        *off = j->span_off + j->seq_pos;
        j->seq_pos += j->bs;
        break;
    case PAT_FRESH: {
        /* max_ops is well below fresh_grains (see the callers), so this ends quickly. */
        uint64_t g;
        do
            g = rng_below(&j->rng, j->fresh_grains);
        while (j->fresh_map[g / 64] & (1ull << (g % 64)));
        j->fresh_map[g / 64] |= 1ull << (g % 64);
        *off = j->span_off + g * j->grain + rng_below(&j->rng, j->grain / j->bs) * j->bs;
        break;
    }
    }
    j->issued++;
    return true;
}

/* Counts a completion. Thread mode: with j->lock held. */
static void job_account(struct job *j, struct slot *s, int res, uint64_t now)
{
    if (res < 0 && j->err == 0) {
        j->err = res;
        j->stop = true;
    }
    if (res >= 0) {
        j->completed++;
        j->bytes += s->req.length;
        j->lat_sum_ns += now - s->t_submit;
    }
    j->t_last = now;
    if (j->deadline && now >= j->deadline)
        j->stop = true;
}

static void job_finish(struct job *j)
{
    pthread_mutex_lock(&j->lock);
    j->finished = true;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

/* Reactor mode: runs on j->reactor only. */
static void slot_issue(struct slot *s)
{
    struct job *j = s->job;
    if (!job_next(j, &s->req.offset)) {
        if (--j->active == 0)
            job_finish(j);
        return;
    }
    s->t_submit = now_ns();
    vol_submit(j->v, &s->req);
}

static void slot_issue_work(struct reactor_work *w)
{
    slot_issue(container_of(w, struct slot, work));
}

static void slot_done_reactor(struct vol_req *req, int res)
{
    struct slot *s = container_of(req, struct slot, req);
    job_account(s->job, s, res, now_ns());
    /* Submitting from inside a completion could recurse without bound when requests complete
     * at once (reads of holes, errors); posting to our own reactor costs a mutex, no syscall,
     * and runs after the ring's current batch of completions. */
    pool_reactor_post(s->job->reactor, &s->work);
}

static void job_start_work(struct reactor_work *w)
{
    struct job *j = container_of(w, struct slot, work)->job;
    j->t_start = now_ns();
    j->active = j->qd;
    for (unsigned i = 0; i < j->qd; i++)
        slot_issue(&j->slots[i]);
}

static void run_reactor(struct job *j)
{
    struct slot starter = {.job = j};
    j->reactor = pool_reactor_get(0);
    for (unsigned i = 0; i < j->qd; i++) {
        j->slots[i].req.done = slot_done_reactor;
        j->slots[i].work.fn = slot_issue_work;
    }
    starter.work.fn = job_start_work;
    pool_reactor_post(j->reactor, &starter.work);
    pthread_mutex_lock(&j->lock);
    while (!j->finished)
        pthread_cond_wait(&j->cond, &j->lock);
    pthread_mutex_unlock(&j->lock);
}

static void slot_done_thread(struct vol_req *req, int res)
{
    struct slot *s = container_of(req, struct slot, req);
    struct job *j = s->job;
    uint64_t now = now_ns();
    pthread_mutex_lock(&j->lock);
    job_account(j, s, res, now);
    j->inflight--;
    s->next_free = j->free_slots;
    j->free_slots = s;
    if (j->waiting)
        pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

static void run_thread(struct job *j)
{
    for (unsigned i = 0; i < j->qd; i++) {
        j->slots[i].req.done = slot_done_thread;
        j->slots[i].next_free = j->free_slots;
        j->free_slots = &j->slots[i];
    }
    j->t_start = now_ns();
    pthread_mutex_lock(&j->lock);
    for (;;) {
        while (!j->free_slots && !j->stop) {
            j->waiting = true;
            pthread_cond_wait(&j->cond, &j->lock);
            j->waiting = false;
        }
        struct slot *s = j->free_slots;
        if (j->stop || !job_next(j, &s->req.offset))
            break;
        j->free_slots = s->next_free;
        j->inflight++;
        pthread_mutex_unlock(&j->lock);
        s->t_submit = now_ns();
        vol_submit(j->v, &s->req);
        pthread_mutex_lock(&j->lock);
        if (j->deadline && s->t_submit >= j->deadline)
            j->stop = true;
    }
    j->stop = true;
    while (j->inflight) {
        j->waiting = true;
        pthread_cond_wait(&j->cond, &j->lock);
        j->waiting = false;
    }
    pthread_mutex_unlock(&j->lock);
}

/* Runs @j to its end. Returns 0 or the first request's error. */
int job_run(struct job *j, struct result *res)
{
    int r = 0;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    j->slots = calloc(j->qd, sizeof(*j->slots));
    if (!j->slots)
        return -ENOMEM;
    for (unsigned i = 0; i < j->qd && r == 0; i++) {
        struct slot *s = &j->slots[i];
        s->job = j;
        s->req.op = j->op;
        s->req.length = j->bs;
        s->req.buf = aligned_alloc(CS_BLOCK_SIZE, j->bs);
        if (!s->req.buf) {
            r = -ENOMEM;
            break;
        }
        /* Data that is never all zeros (which the volume would unmap instead of writing). */
        uint64_t *w = s->req.buf;
        for (size_t k = 0; k < j->bs / sizeof(*w); k++)
            w[k] = rng_next(&j->rng) | 1;
        for (uint32_t g = 1; j->zero_odd_grains && (g + 1) * j->grain <= j->bs; g += 2)
            memset((char *)s->req.buf + (size_t)g * j->grain, 0, j->grain);
    }
    if (r == 0) {
        if (j->submit == SUBMIT_REACTOR)
            run_reactor(j);
        else
            run_thread(j);
        r = j->err;
    }
    for (unsigned i = 0; i < j->qd; i++)
        free(j->slots[i].req.buf);
    free(j->slots);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    if (res) {
        double secs = j->t_last > j->t_start ? (double)(j->t_last - j->t_start) / 1e9 : 0;
        res->bs = j->bs;
        res->ops = j->completed;
        res->bytes = j->bytes;
        res->seconds = secs;
        res->iops = secs > 0 ? (double)j->completed / secs : 0;
        res->mbps = secs > 0 ? (double)j->bytes / secs / 1e6 : 0;
        res->lat_us = j->completed ? (double)j->lat_sum_ns / (double)j->completed / 1e3 : 0;
        res->limited = !(j->deadline && j->t_last >= j->deadline);
    }
    return r;
}

void job_setup(struct job *j, struct vol *v, enum vol_op op, enum pattern pat, uint32_t bs,
               unsigned qd, enum submit_mode submit, uint64_t seed)
{
    *j = (struct job){
        .v = v,
        .op = op,
        .pat = pat,
        .bs = bs,
        .qd = qd,
        .submit = submit,
        .grain = vol_grain_size(v),
        .rng = {seed * 0x9E3779B97F4A7C15ull + (uint64_t)op * 7 + (uint64_t)pat},
    };
}

uint64_t deadline_in(double seconds)
{
    return now_ns() + (uint64_t)(seconds * 1e9);
}

/* Writes every block of @fd once (O_DIRECT, 1 MiB at a time), so that the file holds written
 * extents rather than holes or unwritten ones. */
int fill_file(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        int err = -errno;
        fprintf(stderr, "%s: %s: %s\n", bench_prog, path, strerror(-err));
        return err;
    }
    int err = posix_fallocate(fd, 0, (off_t)size);
    if (err) {
        fprintf(stderr, "%s: %s: cannot allocate %" PRIu64 " bytes: %s\n", bench_prog, path, size,
                strerror(err));
        close(fd);
        return -err;
    }
    void *buf = aligned_alloc(CS_BLOCK_SIZE, MiB);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    memset(buf, 0xa5, MiB);
    for (uint64_t off = 0; off < size; off += MiB) {
        size_t len = (size_t)MIN(MiB, size - off);
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n != (ssize_t)len) {
            err = n < 0 ? -errno : -EIO;
            fprintf(stderr, "%s: %s: write at %" PRIu64 ": %s\n", bench_prog, path, off,
                    strerror(-err));
            break;
        }
    }
    free(buf);
    if (close(fd) < 0 && err == 0)
        err = -errno;
    return err;
}

int file_size(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    off_t end = lseek(fd, 0, SEEK_END);
    int err = end < 0 ? -errno : 0;
    close(fd);
    if (err == 0)
        *size = (uint64_t)end;
    return err;
}
