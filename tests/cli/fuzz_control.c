/*
 * fuzz_control.c - libFuzzer target for the daemon's control protocol: each input is split
 * at newlines into request lines, and each line goes through control_handle() as the control
 * thread would pass it, against a real pool ("fuzz", one 64 MiB file) holding a volume
 * "vol" with a snapshot "vol@s". Every reply must be one JSON object with "ok" and, when
 * not ok, an error with a negative errno and a message; anything else aborts.
 *
 * Operations run for real, so the fuzzer may create, resize, snapshot and delete volumes;
 * the pool is checked (pool_check) every CHECK_EVERY inputs, and a failed check aborts.
 * Built only with clang and -DFUZZ=ON (cli/CMakeLists.txt); tests/cli/test_fuzz_control.sh
 * runs it for a bounded time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tests/fuzz_pool.h"

#define CHECK_EVERY 256
#define MAX_LINE (64u << 10)

static struct pool *g_pool;
static struct control_config g_cfg;


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static struct pool *pools[1];
    int r;

    g_pool = fuzz_setup(0);
    struct vol_snap_spec spec = {"vol", "s"};
    if ((r = vol_snapshot(g_pool, &spec, 1)) < 0)
        fuzz_die("vol_snapshot", r);
    pools[0] = g_pool;
    g_cfg.path = "unused";
    g_cfg.pools = pools;
    g_cfg.npools = 1;
    g_cfg.env.state_dir = "/nonexistent"; /* pool.add cannot register anything */
    return 0;
}

/* A reply must be {"id": ..., "ok": true, "result": ...} or an error with errno < 0. */
static void check_reply(const char *reply)
{
    struct json_object *o = json_tokener_parse(reply), *ok, *err, *no, *msg;
    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "ok", &ok) || !json_object_is_type(ok, json_type_boolean))
        goto bad;
    if (!json_object_get_boolean(ok) &&
        (!json_object_object_get_ex(o, "error", &err) ||
         !json_object_object_get_ex(err, "errno", &no) ||
         !json_object_object_get_ex(err, "message", &msg) ||
         json_object_get_int(no) == 0 || json_object_get_string_len(msg) == 0))
        goto bad;
    json_object_put(o);
    return;
bad:
    fprintf(stderr, "fuzz_control: malformed reply: %s\n", reply);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned runs;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        if (len <= MAX_LINE) {
            char *reply = control_handle(&g_cfg, p, len);
            if (reply == NULL)
                fuzz_die("control_handle returned no reply", EINVAL);
            check_reply(reply);
            free(reply);
        }
        p += len + (nl != NULL);
    }
    if (++runs % CHECK_EVERY == 0) {
        struct pool_check_report rep;
        int r = pool_commit(g_pool);
        if (r < 0)
            fuzz_die("pool_commit", r);
        if (pool_check(g_pool, &rep) != 0) {
            fprintf(stderr, "fuzz_control: pool check found %u problems\n", rep.errors);
            abort();
        }
    }
    return 0;
}
