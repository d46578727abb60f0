/*
 * fuzz_nbd.c - libFuzzer target for the NBD server: each input is the byte stream of one
 * client, fed through a socketpair into one connection (nbd_server_adopt), handshake and
 * transmission alike. The other end's output is read and thrown away; when the input is
 * all sent, the client half-closes, and the server must close the connection (after the
 * requests in flight) within a bounded time: a connection that lingers is reported as a
 * hang by aborting.
 *
 * The server serves one 8 MiB volume on a pool in a temporary file, as "vol" (writable) and
 * "ro" (read-only). Built only with clang and -DFUZZ=ON (see nbd-server/CMakeLists.txt);
 * tests/nbd/test_fuzz.sh runs it for a bounded time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "nbd-server/nbd-server.h"
#include "pool/pool.h"
#include "tests/fuzz_pool.h"
#include "volumes/volumes.h"


static struct pool *g_pool;
static struct nbd_server *g_srv;

static int ex_open(void *ctx UNUSED, const char *name, struct vol **v, bool *readonly, char *desc,
                   size_t desclen)
{
    bool ro = strcmp(name, "ro") == 0;
    if (!ro && strcmp(name, "vol") != 0 && *name != '\0')
        return -ENOENT;
    *readonly = ro;
    snprintf(desc, desclen, "fuzz volume%s", ro ? " (read-only)" : "");
    return vol_open(g_pool, "vol", ro ? VOL_OPEN_RDONLY : 0, v);
}

static int ex_list(void *ctx UNUSED, int (*fn)(void *c, const char *name, const char *desc),
                   void *c)
{
    int r = fn(c, "vol", "fuzz volume");
    return r ? r : fn(c, "ro", "fuzz volume (read-only)");
}

static void ex_close(void *ctx UNUSED, struct vol *v)
{
    vol_close(v);
}

int LLVMFuzzerInitialize(int *argc UNUSED, char ***argv UNUSED);
int LLVMFuzzerInitialize(int *argc UNUSED, char ***argv UNUSED)
{
    static const struct nbd_exports ex = {ex_open, ex_list, ex_close};
    struct nbd_config cfg = {0};
    int r;

    g_pool = fuzz_setup(64 << 10);
    if ((r = nbd_server_start(&cfg, &ex, NULL, &g_srv)) < 0)
        fuzz_die("nbd_server_start", r);
    return 0;
}

static int adopt(void *srv, int fd) { return nbd_server_adopt(srv, fd); }
static unsigned connections(void *srv) { return nbd_server_connections(srv); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_converse(data, size, adopt, connections, g_srv);
    return 0;
}
