/*
 * cmd_vol.c - `cistern vol ...`: create, list, info, resize, rename, delete; import and export
 * are in transfer.c.
 *
 * Volume names on the command line are POOL/VOLUME; the catalog calls take the volume part
 * alone, on the pool that main.c opened for the command.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------- */
/* Shared checks                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* A volume size: a positive multiple of 4 KiB, at most VOL_MAX_SIZE. */
static int check_vol_size(const struct command *cmd, const char *what, uint64_t size)
{
    char b[SIZE_BUF];

    if (size == 0)
        return usage_error(cmd, "%s: the size must not be zero", what);
    if (size % CS_BLOCK_SIZE != 0)
        return usage_error(cmd, "%s: %" PRIu64 " bytes is not a multiple of 4K", what, size);
    if (size > VOL_MAX_SIZE)
        return usage_error(cmd, "%s: larger than the largest volume (%s)", what,
                           size_str(VOL_MAX_SIZE, false, b));
    return 0;
}

static int check_vol_only(const struct command *cmd, struct cli_args *a)
{
    if (a->npos < 1)
        return usage_error(cmd, "POOL/VOLUME: missing volume name");
    if (a->npos > 1)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[1]);
    return arg_vol_name(cmd, "POOL/VOLUME", a->pos[0], &a->obj);
}

static void vol_error(const struct cli_args *a, int err)
{
    log_err("%s/%s: %s", a->obj.pool, a->obj.vol, vol_error_cause(err));
}

/* ---------------------------------------------------------------------------------------- */
/* create                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int check_create(const struct command *cmd, struct cli_args *a)
{
    uint64_t grain = VOL_DEFAULT_GRAIN;
    int r;

    r = check_vol_only(cmd, a);
    if (r != 0)
        return r;
    if (a->size_str == NULL)
        return usage_error(cmd, "--size: missing (the volume's size is required)");
    r = arg_size(cmd, "--size", a->size_str, &a->size);
    if (r != 0)
        return r;
    r = check_vol_size(cmd, "--size", a->size);
    if (r != 0)
        return r;
    if (a->grain_str != NULL) {
        r = arg_size(cmd, "--grain", a->grain_str, &grain);
        if (r != 0)
            return r;
        if (!IS_POW2(grain) || grain < VOL_MIN_GRAIN || grain > VOL_MAX_GRAIN)
            return usage_error(cmd, "--grain: '%s' is not a power of two from 4K to 1M",
                               a->grain_str);
    }
    a->grain = (uint32_t)grain;
    return 0;
}

static int run_create(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    struct vol_info vi;
    int r = vol_create(pool, a->obj.vol, a->size, a->grain, &vi);

    if (r < 0) {
        vol_error(a, r);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* list, info                                                                                */
/* ---------------------------------------------------------------------------------------- */

static struct json_object *vol_json(const char *pool, const struct vol_info *vi)
{
    struct json_object *o = json_object_new_object();
    char full[2 * NAME_MAX_LEN + 2];

    snprintf(full, sizeof full, "%s/%s", pool, vi->name);
    json_object_object_add(o, "name", json_object_new_string(full));
    json_object_object_add(o, "pool", json_object_new_string(pool));
    json_object_object_add(o, "volume", json_object_new_string(vi->name));
    json_object_object_add(o, "id", json_object_new_uint64(vi->id));
    json_object_object_add(o, "size", json_object_new_uint64(vi->size));
    json_object_object_add(o, "mapped", json_object_new_uint64(vi->mapped_bytes));
    json_object_object_add(o, "used", json_object_new_uint64(vi->used_bytes));
    json_object_object_add(o, "grain", json_object_new_uint64(vi->grain_size));
    json_object_object_add(o, "created_ns", json_object_new_uint64(vi->created_ns));
    return o;
}

struct list_ctx {
    const char *pool;
    const struct cli_args *a;
    struct table *t;
    struct json_object *arr;
    unsigned n;
};

static int list_one(void *ctx, const struct vol_info *vi)
{
    struct list_ctx *lc = ctx;
    char full[2 * NAME_MAX_LEN + 2], b[4][SIZE_BUF];
    const char *row[5];

    lc->n++;
    if (lc->arr != NULL) {
        json_object_array_add(lc->arr, vol_json(lc->pool, vi));
        return 0;
    }
    snprintf(full, sizeof full, "%s/%s", lc->pool, vi->name);
    row[0] = full;
    row[1] = size_str(vi->size, lc->a->parsable, b[0]);
    row[2] = size_str(vi->mapped_bytes, lc->a->parsable, b[1]);
    row[3] = size_str(vi->used_bytes, lc->a->parsable, b[2]);
    row[4] = size_str(vi->grain_size, lc->a->parsable, b[3]);
    table_add(lc->t, row);
    return 0;
}

static int check_list(const struct command *cmd, struct cli_args *a)
{
    if (a->npos > 1)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[1]);
    if (a->npos == 1)
        return arg_pool_name(cmd, "POOL", a->pos[0], &a->obj);
    return 0;
}

/* Lists the volumes of one open pool into @lc. */
static int list_pool(struct list_ctx *lc, struct pool *pool, const char *name)
{
    int r;

    lc->pool = name;
    r = vol_list(pool, list_one, lc);
    if (r < 0) {
        log_err("%s: cannot list volumes: %s", name, strerror(-r));
        return EXIT_RUNTIME;
    }
    return 0;
}

static int run_list(const struct cli *cli, const struct cli_args *a, struct pool *unused UNUSED)
{
    static const char *const headers[] = {"NAME", "SIZE", "MAPPED", "USED", "GRAIN"};
    struct list_ctx lc = {.a = a};
    char **names = NULL;
    size_t n = 0;
    int rc = 0;

    if (a->npos == 1) {
        names = calloc(2, sizeof *names);
        if (names == NULL || (names[0] = strdup(a->obj.pool)) == NULL) {
            free(names);
            return EXIT_RUNTIME;
        }
        n = 1;
    } else if (registry_list(cli->state_dir, &names, &n) < 0) {
        return EXIT_RUNTIME;
    }

    if (a->json)
        lc.arr = json_object_new_array();
    else
        lc.t = table_new(ARRAY_SIZE(headers), headers, "lrrrr");

    for (size_t i = 0; i < n; i++) {
        struct pool *p;
        if (cli_pool_open(cli, names[i], false, &p) < 0) {
            rc = EXIT_RUNTIME;
            continue;
        }
        if (list_pool(&lc, p, names[i]) != 0)
            rc = EXIT_RUNTIME;
        if (cli_pool_close(p) != 0)
            rc = EXIT_RUNTIME;
    }

    if (a->json)
        json_print(lc.arr);
    else if (lc.n > 0 || a->scripted)
        table_print(lc.t, stdout, a->scripted);
    else if (rc == 0)
        printf("no volumes\n");
    table_free(lc.t);
    registry_names_free(names);
    return rc;
}

static int run_info(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    struct vol_info vi;
    char b[4][SIZE_BUF], when[64] = "-";
    int r;

    r = vol_get_info(pool, a->obj.vol, &vi);
    if (r < 0) {
        vol_error(a, r);
        return EXIT_RUNTIME;
    }
    if (a->json) {
        json_print(vol_json(a->obj.pool, &vi));
        return 0;
    }
    if (vi.created_ns != 0) {
        time_t t = (time_t)(vi.created_ns / 1000000000ull);
        struct tm tm;
        if (localtime_r(&t, &tm) != NULL)
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm);
    }
    printf("name:    %s/%s\n", a->obj.pool, vi.name);
    printf("id:      %" PRIu64 "\n", vi.id);
    printf("size:    %s\n", size_str(vi.size, a->parsable, b[0]));
    printf("mapped:  %s (%.1f%%)\n", size_str(vi.mapped_bytes, a->parsable, b[1]),
           vi.size == 0 ? 0.0 : 100.0 * (double)vi.mapped_bytes / (double)vi.size);
    printf("used:    %s\n", size_str(vi.used_bytes, a->parsable, b[2]));
    printf("grain:   %s\n", size_str(vi.grain_size, a->parsable, b[3]));
    printf("created: %s\n", when);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* resize, rename, delete                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int check_resize(const struct command *cmd, struct cli_args *a)
{
    const char *s;
    int r;

    r = check_vol_only(cmd, a);
    if (r != 0)
        return r;
    if (a->size_str == NULL)
        return usage_error(cmd, "--size: missing (the new size, or +SIZE / -SIZE)");
    s = a->size_str;
    if (*s == '+' || *s == '-') {
        a->size_rel = *s == '+' ? 1 : -1;
        s++;
    }
    r = arg_size(cmd, "--size", s, &a->size);
    if (r != 0)
        return r;
    if (a->size_rel != 0) {
        if (a->size == 0 || a->size % CS_BLOCK_SIZE != 0)
            return usage_error(cmd, "--size: %s is not a positive multiple of 4K", a->size_str);
        return 0;
    }
    return check_vol_size(cmd, "--size", a->size);
}

static int run_resize(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    struct vol_info vi;
    uint64_t size = a->size;
    char b1[SIZE_BUF], b2[SIZE_BUF];
    int r;

    if (a->size_rel != 0) {
        r = vol_get_info(pool, a->obj.vol, &vi);
        if (r < 0) {
            vol_error(a, r);
            return EXIT_RUNTIME;
        }
        if (a->size_rel < 0 && a->size >= vi.size) {
            log_err("%s/%s: cannot shrink by %s: the volume is %s", a->obj.pool, a->obj.vol,
                    size_str(a->size, false, b1), size_str(vi.size, false, b2));
            return EXIT_RUNTIME;
        }
        if (a->size_rel > 0 && a->size > VOL_MAX_SIZE - vi.size) {
            log_err("%s/%s: cannot grow by %s: larger than the largest volume", a->obj.pool,
                    a->obj.vol, size_str(a->size, false, b1));
            return EXIT_RUNTIME;
        }
        size = a->size_rel > 0 ? vi.size + a->size : vi.size - a->size;
    }
    r = vol_resize(pool, a->obj.vol, size);
    if (r < 0) {
        vol_error(a, r);
        return EXIT_RUNTIME;
    }
    return 0;
}

static int check_rename(const struct command *cmd, struct cli_args *a)
{
    const char *to, *why = NULL;
    int r;

    if (a->npos < 1)
        return usage_error(cmd, "POOL/VOLUME: missing volume name");
    r = arg_vol_name(cmd, "POOL/VOLUME", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    if (a->npos < 2)
        return usage_error(cmd, "NEWNAME: missing new name");
    if (a->npos > 2)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[2]);
    to = a->pos[1];
    if (strchr(to, '/') != NULL || strchr(to, '@') != NULL) {
        struct obj_name o;
        r = arg_vol_name(cmd, "NEWNAME", to, &o);
        if (r != 0)
            return r;
        if (strcmp(o.pool, a->obj.pool) != 0)
            return usage_error(cmd, "NEWNAME: '%s' is in another pool than '%s'", to, a->pos[0]);
        snprintf(a->new_name, sizeof a->new_name, "%s", o.vol);
        return 0;
    }
    if (name_check(to, &why) < 0)
        return usage_error(cmd, "NEWNAME: invalid name '%s': %s", to, why);
    snprintf(a->new_name, sizeof a->new_name, "%s", to);
    return 0;
}

static int run_rename(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    int r = vol_rename(pool, a->obj.vol, a->new_name);

    if (r == -EEXIST) {
        log_err("%s/%s: a volume of that name exists", a->obj.pool, a->new_name);
        return EXIT_RUNTIME;
    }
    if (r < 0) {
        vol_error(a, r);
        return EXIT_RUNTIME;
    }
    return 0;
}

static int run_delete(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    int r = vol_delete(pool, a->obj.vol);

    if (r < 0) {
        vol_error(a, r);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* import, export: argument checks (the work is in transfer.c)                               */
/* ---------------------------------------------------------------------------------------- */

static int check_transfer(const struct command *cmd, struct cli_args *a, const char *what)
{
    int r;

    if (a->npos < 1)
        return usage_error(cmd, "POOL/VOLUME: missing volume name");
    r = arg_vol_name(cmd, "POOL/VOLUME", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    if (a->npos < 2)
        return usage_error(cmd, "%s: missing (a file, '-', or an nbd:// URI)", what);
    if (a->npos > 2)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[2]);
    a->location = a->pos[1];
    if (*a->location == '\0')
        return usage_error(cmd, "%s: empty", what);
    a->format = FMT_AUTO;
    if (a->format_str != NULL) {
        if (image_format_parse(a->format_str, &a->format) < 0)
            return usage_error(cmd, "--format: unknown format '%s' (raw, qcow2, vmdk, vhdx, vdi)",
                               a->format_str);
        if (strncmp(a->location, "nbd", 3) == 0 && strstr(a->location, "://") != NULL &&
            a->format != FMT_RAW)
            return usage_error(cmd, "--format: an NBD server exports raw data");
        if (strcmp(a->location, "-") == 0 && a->format != FMT_RAW)
            return usage_error(cmd, "--format: only raw data can go through a pipe");
    }
    return 0;
}

static int check_import(const struct command *cmd, struct cli_args *a)
{
    int r = check_transfer(cmd, a, "SOURCE");

    if (r != 0)
        return r;
    if (a->size_str != NULL) {
        if (!a->create)
            return usage_error(cmd, "--size: only with --create");
        r = arg_size(cmd, "--size", a->size_str, &a->size);
        if (r != 0)
            return r;
        r = check_vol_size(cmd, "--size", a->size);
        if (r != 0)
            return r;
    }
    if (a->grain_str != NULL) {
        uint64_t g;
        if (!a->create)
            return usage_error(cmd, "--grain: only with --create");
        r = arg_size(cmd, "--grain", a->grain_str, &g);
        if (r != 0)
            return r;
        if (!IS_POW2(g) || g < VOL_MIN_GRAIN || g > VOL_MAX_GRAIN)
            return usage_error(cmd, "--grain: '%s' is not a power of two from 4K to 1M",
                               a->grain_str);
        a->grain = (uint32_t)g;
    } else {
        a->grain = VOL_DEFAULT_GRAIN;
    }
    if (a->create && a->resize)
        return usage_error(cmd, "--resize: not with --create (a new volume gets the right size)");
    return 0;
}

static int check_export(const struct command *cmd, struct cli_args *a)
{
    return check_transfer(cmd, a, "DEST");
}

const struct command vol_commands[] = {
    {"vol", "create", "POOL/VOLUME --size SIZE [--grain SIZE]", "Create a thin volume.",
     OPT_SIZE | OPT_GRAIN, CMD_OPENS_POOL, check_create, run_create},
    {"vol", "list", "[POOL] [--json] [-H] [-p]", "List volumes (of one pool, or of all).",
     OPT_JSON | OPT_SCRIPTED | OPT_PARSABLE, 0, check_list, run_list},
    {"vol", "info", "POOL/VOLUME [--json] [-p]", "Show a volume's size, use and grain.",
     OPT_JSON | OPT_PARSABLE, CMD_OPENS_POOL, check_vol_only, run_info},
    {"vol", "resize", "POOL/VOLUME --size [+|-]SIZE",
     "Grow or shrink a volume (shrinking discards what lies beyond the new size).", OPT_SIZE,
     CMD_OPENS_POOL, check_resize, run_resize},
    {"vol", "rename", "POOL/VOLUME NEWNAME", "Rename a volume (NEWNAME or POOL/NEWNAME).", 0,
     CMD_OPENS_POOL, check_rename, run_rename},
    {"vol", "delete", "POOL/VOLUME", "Delete a volume and free its space.", 0, CMD_OPENS_POOL,
     check_vol_only, run_delete},
    {"vol", "import",
     "POOL/VOLUME SOURCE [--format FMT] [--resize] [--create [--size SIZE] [--grain SIZE]] "
     "[-q]",
     "Copy an image into a volume, which then reads exactly as the source (zeros past its "
     "end).\nSOURCE is a file, '-' for standard input, or an nbd:// or nbd+unix:// URI; "
     "qcow2, vmdk, vhdx\nand vdi files are read through qemu-nbd.",
     OPT_FORMAT | OPT_RESIZE | OPT_CREATE | OPT_SIZE | OPT_GRAIN | OPT_QUIET, CMD_OPENS_POOL,
     check_import, cmd_vol_import},
    {"vol", "export", "POOL/VOLUME DEST [--format FMT] [-q]",
     "Copy a volume out, keeping holes.\nDEST is a file (created, or truncated), '-' for "
     "standard output, or an nbd:// or\nnbd+unix:// URI; --format qcow2|vmdk|vhdx|vdi "
     "writes a new image through qemu-img and qemu-nbd.",
     OPT_FORMAT | OPT_QUIET, CMD_OPENS_POOL, check_export, cmd_vol_export},
};
const size_t vol_ncommands = ARRAY_SIZE(vol_commands);
