/*
 * fuzz_pool.h - the pool the libFuzzer targets run against: one member file of @bytes under
 * /tmp, created, opened without a lock and unlinked at once (the pool keeps it open, so
 * nothing is left behind however the fuzzer ends), with the volumes layer attached. Aborts
 * on any failure: a fuzzer cannot run without it.
 */
#ifndef CISTERN_TESTS_FUZZ_POOL_H
#define CISTERN_TESTS_FUZZ_POOL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/pool.h"
#include "volumes/volumes.h"

static inline void fuzz_die(const char *what, int err)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, strerror(err < 0 ? -err : err));
    abort();
}

static inline struct pool *fuzz_pool_create(const char *name, uint64_t bytes,
                                            const struct pool_settings *ps)
{
    char path[] = "/tmp/cistern-fuzz-XXXXXX";
    const char *members[] = {path};
    struct pool *pool;
    int r, fd = mkstemp(path);
    if (fd < 0)
        fuzz_die("mkstemp", errno);
    if (ftruncate(fd, (off_t)bytes) < 0)
        fuzz_die("ftruncate", errno);
    close(fd);
    if ((r = pool_create(name, members, 1, ps, true)) < 0)
        fuzz_die("pool_create", r);
    if ((r = pool_open(members, 1, POOL_OPEN_NOLOCK, &pool)) < 0)
        fuzz_die("pool_open", r);
    unlink(path);
    if ((r = volumes_attach(pool)) < 0)
        fuzz_die("volumes_attach", r);
    return pool;
}

#endif
