/*
 * fuzz_iscsi.c - libFuzzer target for the iSCSI target: each input is the byte stream of one
 * initiator, fed through a socketpair into one connection (iscsi_server_adopt): the PDU
 * reader, the login state machine (security and operational stages, CHAP), and the full
 * feature phase with a real logical unit behind it. The other end's output is read and
 * thrown away; when the input is all sent, the initiator half-closes, and the target must
 * close the connection (after the commands in flight) within a bounded time: a connection
 * that lingers is reported as a hang by aborting.
 *
 * Targets: "iqn.2026-11.org.cistern:fuzz" (no authentication; LUN 0 an 8 MiB volume, LUN 1
 * its read-only view) and "iqn.2026-11.org.cistern:chap" (CHAP user "u", secret
 * "fuzz-secret-1"; mutual CHAP as "t", "fuzz-secret-2"). Built only with clang and
 * -DFUZZ=ON (iscsi-target/CMakeLists.txt); tests/iscsi/test_fuzz.sh runs it for a bounded
 * time from the seeds of fuzz_seeds.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "iscsi-target/iscsi-target.h"
#include "pool/pool.h"
#include "tests/fuzz_pool.h"
#include "volumes/volumes.h"

#define T_OPEN "iqn.2026-11.org.cistern:fuzz"
#define T_CHAP "iqn.2026-11.org.cistern:chap"

static struct pool *g_pool;
static struct iscsi_server *g_srv;

static int t_login(void *ctx UNUSED, const char *iqn, const char *initiator UNUSED,
                   struct iscsi_auth *auth)
{
    memset(auth, 0, sizeof *auth);
    if (iqn == NULL || strcmp(iqn, T_OPEN) == 0) {
        auth->allow_none = true;
        return 0;
    }
    if (strcmp(iqn, T_CHAP) != 0)
        return -ENOENT;
    strcpy(auth->user, "u");
    strcpy(auth->secret, "fuzz-secret-1");
    strcpy(auth->mutual_user, "t");
    strcpy(auth->mutual_secret, "fuzz-secret-2");
    return 0;
}

static int t_list(void *ctx UNUSED, const char *initiator UNUSED,
                  int (*fn)(void *c, const char *iqn), void *c)
{
    int r = fn(c, T_OPEN);
    return r ? r : fn(c, T_CHAP);
}

static size_t t_luns(void *ctx UNUSED, const char *iqn UNUSED, uint64_t *luns, size_t max)
{
    for (size_t i = 0; i < 2 && i < max; i++)
        luns[i] = i;
    return 2;
}

static int t_resolve(void *ctx UNUSED, const char *iqn UNUSED, uint64_t lun, uint8_t uuid[16],
                     uint64_t *vol_id)
{
    if (lun > 1)
        return -ENOENT;
    memset(uuid, 0x5a, 16);
    *vol_id = 1 + lun;
    return 0;
}

static int t_open(void *ctx UNUSED, const char *iqn UNUSED, uint64_t lun,
                  struct iscsi_lu_info *out)
{
    if (lun > 1)
        return -ENOENT;
    int r = vol_open(g_pool, "vol", lun ? VOL_OPEN_RDONLY : 0, &out->vol);
    if (r < 0)
        return r;
    out->readonly = lun == 1;
    memset(out->pool_uuid, 0x5a, 16);
    out->vol_id = 1 + lun;
    snprintf(out->name, sizeof out->name, "fuzz/vol%s", lun ? " (read-only)" : "");
    return 0;
}

static void t_close(void *ctx UNUSED, struct vol *v)
{
    vol_close(v);
}

int LLVMFuzzerInitialize(int *argc UNUSED, char ***argv UNUSED);
int LLVMFuzzerInitialize(int *argc UNUSED, char ***argv UNUSED)
{
    static const struct iscsi_targets targets = {t_login,  t_list, t_luns,
                                                 t_resolve, t_open, t_close};
    struct iscsi_config cfg = {.nop_interval_s = 1, .nop_timeout_s = 2, .login_timeout_s = 5};
    int r;

    g_pool = fuzz_setup(4 << 10);
    if ((r = iscsi_server_start(&cfg, &targets, NULL, &g_srv)) < 0)
        fuzz_die("iscsi_server_start", r);
    return 0;
}

static int adopt(void *srv, int fd) { return iscsi_server_adopt(srv, fd); }
static unsigned connections(void *srv) { return iscsi_server_connections(srv); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_converse(data, size, adopt, connections, g_srv);
    return 0;
}
