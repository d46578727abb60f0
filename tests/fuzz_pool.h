/*
 * fuzz_pool.h - what the libFuzzer targets share:
 *   fuzz_setup        the process and the pool they run against: errors only in the log,
 *                     SIGPIPE ignored, one reactor, a pool "fuzz" on one member file of
 *                     64 MiB under /tmp, created, opened without a lock and unlinked at once
 *                     (the pool keeps it open, so nothing is left behind however the fuzzer
 *                     ends), with a volume "vol" of 8 MiB;
 *   fuzz_converse     one client's byte stream into a server through a socketpair.
 * Both abort on any failure: a fuzzer cannot run without them.
 */
#ifndef CISTERN_TESTS_FUZZ_POOL_H
#define CISTERN_TESTS_FUZZ_POOL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "pool/pool.h"
#include "volumes/volumes.h"

static inline void fuzz_die(const char *what, int err)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, strerror(err < 0 ? -err : err));
    abort();
}

/* @grain: the volume's (0: the pool's default). Commits wait for a flush or a minute. */
static inline struct pool *fuzz_setup(uint32_t grain)
{
    char path[] = "/tmp/cistern-fuzz-XXXXXX";
    const char *members[] = {path};
    struct pool_settings ps;
    struct pool *pool;
    log_set_level(LOG_ERR);
    signal(SIGPIPE, SIG_IGN);
    pool_reactors_configure(1);
    pool_settings_default(&ps);
    ps.commit_interval_ms = 60000;
    int r, fd = mkstemp(path);
    if (fd < 0)
        fuzz_die("mkstemp", errno);
    if (ftruncate(fd, 64 << 20) < 0)
        fuzz_die("ftruncate", errno);
    close(fd);
    if ((r = pool_create("fuzz", members, 1, &ps, true)) < 0)
        fuzz_die("pool_create", r);
    if ((r = pool_open(members, 1, POOL_OPEN_NOLOCK, &pool)) < 0)
        fuzz_die("pool_open", r);
    unlink(path);
    if ((r = volumes_attach(pool)) < 0)
        fuzz_die("volumes_attach", r);
    if ((r = vol_create(pool, "vol", 8 << 20, grain, NULL)) < 0)
        fuzz_die("vol_create", r);
    return pool;
}

#define FUZZ_DEADLINE_NS (20ull * 1000 * 1000 * 1000)

/*
 * Sends @data as one client: @adopt gives the server its end of a socketpair; the client
 * writes everything (reading and dropping the replies meanwhile), half-closes, and waits for
 * the server to close the connection, then for @connections to reach 0 (the connection
 * freed). A server that takes longer than FUZZ_DEADLINE_NS for either is reported as a hang
 * by aborting.
 */
static inline void fuzz_converse(const uint8_t *data, size_t size, int (*adopt)(void *srv, int fd),
                                 unsigned (*connections)(void *srv), void *srv)
{
    static char sink[1 << 16];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        fuzz_die("socketpair", errno);
    if (adopt(srv, sv[0]) < 0)
        fuzz_die("adopting the connection", EIO);
    int fd = sv[1];
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    size_t off = 0;
    bool half_closed = false;
    uint64_t deadline = now_ns() + FUZZ_DEADLINE_NS;
    for (;;) {
        if (!half_closed && off == size) {
            shutdown(fd, SHUT_WR);
            half_closed = true;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (half_closed ? 0 : POLLOUT)};
        if (now_ns() > deadline) {
            fprintf(stderr, "fuzz: the server did not close the connection in time\n");
            abort();
        }
        if (poll(&p, 1, 100) < 0 && errno != EINTR)
            fuzz_die("poll", errno);
        if (p.revents & POLLOUT) {
            ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                off = size; /* the server is gone: stop sending */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(fd, sink, sizeof sink);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                break; /* the server closed the connection */
        }
    }
    close(fd);
    while (connections(srv) > 0) {
        if (now_ns() > deadline) {
            fprintf(stderr, "fuzz: a closed connection was never freed\n");
            abort();
        }
        usleep(100);
    }
}

#endif
