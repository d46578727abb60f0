/*
 * Helpers for the C tests: a scratch directory with sparse member files, a seeded random
 * generator whose seed is printed (and can be set from the environment to replay a run),
 * and a pool opened on the members.
 */
#ifndef CISTERN_TESTUTIL_H
#define CISTERN_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool.h"

/* Sanitizers make the engine several times slower: long random tests take fewer operations
 * in such builds to stay within the suite's time limit. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

struct scratch {
    char dir[256];
    char member[8][300];
    const char *paths[8];
    unsigned n;
};

static inline int scratch_rm(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Makes a scratch directory under $TMPDIR (or the working directory) with @n sparse member
 * files of @bytes each. Aborts the test program on failure. */
static inline void scratch_make(struct scratch *s, unsigned n, uint64_t bytes)
{
    const char *base = getenv("TMPDIR");
    snprintf(s->dir, sizeof(s->dir), "%s/cistern-test-XXXXXX", base ? base : ".");
    if (!mkdtemp(s->dir)) {
        perror("mkdtemp");
        exit(1);
    }
    s->n = n;
    for (unsigned i = 0; i < n; i++) {
        snprintf(s->member[i], sizeof(s->member[i]), "%s/m%u", s->dir, i);
        int fd = open(s->member[i], O_CREAT | O_RDWR | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
            perror(s->member[i]);
            exit(1);
        }
        close(fd);
        s->paths[i] = s->member[i];
    }
}

static inline void scratch_remove(struct scratch *s)
{
    nftw(s->dir, scratch_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* xorshift64*: small, fast, and the same sequence for the same seed everywhere. */
struct rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t rng_below(struct rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

/* Seeds from $VAR when set, else from the clock; prints the seed so a failure can be
 * replayed with VAR=seed. */
static inline void rng_seed_env(struct rng *r, const char *var)
{
    const char *e = getenv(var);
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (seed == 0)
        seed = 1;
    fprintf(stderr, "%s=%llu\n", var, (unsigned long long)seed);
    r->s = seed;
}

static inline uint64_t env_u64(const char *var, uint64_t def)
{
    const char *e = getenv(var);
    return e ? strtoull(e, NULL, 0) : def;
}

static inline void fill_random(struct rng *r, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = rng_next(r);
        memcpy(p + i, &v, 8);
    }
    for (; i < len; i++)
        p[i] = (uint8_t)rng_next(r);
}

#endif
