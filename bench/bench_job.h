/*
 * The job engine of the volume benchmarks (cistern-bench-vol, cistern-bench-snap): a window
 * of --qd requests of one kind kept in flight through the asynchronous volume API
 * (vol_submit), and the helpers both tools need for their backing files.
 *
 * How requests are submitted
 *   SUBMIT_REACTOR  the window lives on one reactor thread: a completion posts its slot back
 *                   to the same reactor, which submits the next request. One thread does all
 *                   the work, as one NBD connection does, and as fio's single job does.
 *   SUBMIT_THREAD   the calling thread submits and waits on a condition variable while the
 *                   window is full; completions arrive on every reactor.
 *
 * A job is set up with job_setup() (or by hand), given its span or its limits, and run to
 * its end with job_run(), which blocks. Write data is random and never all zeros.
 */
#ifndef CISTERN_BENCH_JOB_H
#define CISTERN_BENCH_JOB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pool/pool.h"
#include "volumes/volumes.h"

/* The program's name, for messages. */
extern const char *bench_prog;

enum submit_mode { SUBMIT_REACTOR, SUBMIT_THREAD };

enum pattern {
    PAT_RANDOM, /* uniform over the span, bs-aligned */
    PAT_SEQ,    /* the span in order; wraps around when job.wrap */
    PAT_FRESH,  /* one request per grain never written, grains drawn without repetition */
};

struct rng {
    uint64_t s;
};

/* xorshift64*: small and fast; the quality of a benchmark's offsets needs no more. */
static inline uint64_t rng_next(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
    return n ? rng_next(r) % n : 0;
}

struct slot;

struct job {
    struct vol *v;
    enum vol_op op;
    enum pattern pat;
    uint32_t bs;
    unsigned qd;
    enum submit_mode submit;
    struct reactor *reactor; /* SUBMIT_REACTOR: where the window lives */

    /* What to touch. */
    uint64_t span_off, span_len; /* PAT_RANDOM, PAT_SEQ */
    uint64_t seq_pos;
    bool wrap;
    uint64_t *fresh_map; /* PAT_FRESH: bit per grain of [span_off, +fresh_grains), set when used */
    uint64_t fresh_grains;
    uint32_t grain;
    uint64_t max_ops;  /* 0: no limit */
    uint64_t deadline; /* now_ns() after which nothing more is submitted; 0: none */
    struct rng rng;
    bool zero_odd_grains; /* writes: every other grain of each buffer all zeros (which the
                             volume unmaps), so that written grains never merge */

    /* Progress. In reactor mode only the job's reactor touches these until it finishes;
     * in thread mode they are guarded by lock. */
    uint64_t issued, completed, bytes, lat_sum_ns;
    uint64_t t_start, t_last;
    int err;
    bool stop;
    unsigned active;   /* reactor mode: slots in flight or about to be */
    unsigned inflight; /* thread mode */
    struct slot *free_slots;
    bool waiting;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool finished;
    struct slot *slots;
};

struct result {
    const char *name;
    uint32_t bs;
    uint64_t ops, bytes;
    double seconds, iops, mbps, lat_us;
    bool limited; /* ended by the end of its span or of fresh space, not by the clock */
};

/* A job of @op over @v, @bs bytes per request, @qd in flight, seeded by @seed; the caller
 * sets span_off/span_len (or the PAT_FRESH fields), and deadline or max_ops. */
void job_setup(struct job *j, struct vol *v, enum vol_op op, enum pattern pat, uint32_t bs,
               unsigned qd, enum submit_mode submit, uint64_t seed);

/* Runs @j to its end; fills @res (may be NULL). Returns 0 or the first request's error. */
int job_run(struct job *j, struct result *res);

/* now_ns() @seconds from now. */
uint64_t deadline_in(double seconds);

/* Writes every block of the file at @path once up to @size (allocating it first). */
int fill_file(const char *path, uint64_t size);

/* The size of the file or block device at @path. */
int file_size(const char *path, uint64_t *size);

#endif
