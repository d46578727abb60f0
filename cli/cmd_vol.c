/*
 * cmd_vol.c - `cistern vol ...`: create, list, info, resize, rename, delete; import and export
 * are in transfer.c.
 *
 * Volume names on the command line are POOL/VOLUME. Each command is an operation of ops.c,
 * run on the pool main.c opened or in the daemon that holds it (op_call); this file prints
 * the result. While the daemon serves a volume over NBD, delete and shrink are refused
 * unless --force (and the volume layer refuses them even then while the volume is open).
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

static int check_info(const struct command *cmd, struct cli_args *a)
{
    if (a->npos < 1)
        return usage_error(cmd, "POOL/VOLUME: missing volume name");
    if (a->npos > 1)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[1]);
    return arg_vol_or_snap_name(cmd, "POOL/VOLUME[@SNAPSHOT]", a->pos[0], &a->obj);
}

static int check_vol_only(const struct command *cmd, struct cli_args *a)
{
    if (a->npos < 1)
        return usage_error(cmd, "POOL/VOLUME: missing volume name");
    if (a->npos > 1)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[1]);
    return arg_vol_name(cmd, "POOL/VOLUME", a->pos[0], &a->obj);
}

static struct json_object *jget(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;
    json_object_object_get_ex(o, key, &v);
    return v;
}

/* Runs an operation whose result is not printed. */
static int run_quiet_op(const struct cli *cli, const struct cli_args *a, const struct target *t,
                        const char *op)
{
    struct json_object *o;

    if (op_call(cli, t, op, a, &o) < 0)
        return EXIT_RUNTIME;
    json_object_put(o);
    return 0;
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

static int run_create(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_quiet_op(cli, a, t, "vol.create");
}

/* ---------------------------------------------------------------------------------------- */
/* list, info                                                                                */
/* ---------------------------------------------------------------------------------------- */

static void list_row(struct table *t, struct json_object *o, bool parsable)
{
    char b[6][SIZE_BUF];
    const char *row[7];

    row[0] = res_str(o, "name");
    row[1] = size_str(res_u64(o, "size"), parsable, b[0]);
    row[2] = size_str(res_u64(o, "mapped"), parsable, b[1]);
    row[3] = size_str(res_u64(o, "referenced"), parsable, b[2]);
    row[4] = size_str(res_u64(o, "unique"), parsable, b[3]);
    row[5] = size_str(res_u64(o, "written"), parsable, b[4]);
    row[6] = size_str(res_u64(o, "grain"), parsable, b[5]);
    table_add(t, row);
}

static int check_list(const struct command *cmd, struct cli_args *a)
{
    if (a->npos > 1)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[1]);
    if (a->npos == 1)
        return arg_pool_name(cmd, "POOL", a->pos[0], &a->obj);
    return 0;
}

struct vol_list {
    struct json_object *arr;
    int rc;
};

static void list_one(void *ctx, const char *name UNUSED, int open_err, struct json_object *res)
{
    struct vol_list *l = ctx;
    struct json_object *vols = res ? jget(res, "volumes") : NULL;

    if (open_err < 0 || vols == NULL) {
        l->rc = EXIT_RUNTIME;
        return;
    }
    for (size_t j = 0; j < json_object_array_length(vols); j++)
        json_object_array_add(l->arr, json_object_get(json_object_array_get_idx(vols, j)));
}

static int run_list(const struct cli *cli, const struct cli_args *a,
                    const struct target *unused UNUSED)
{
    static const char *const headers[] = {"NAME",   "SIZE",    "MAPPED", "REFER",
                                          "UNIQUE", "WRITTEN", "GRAIN"};
    struct vol_list l = {json_object_new_array(), 0};
    struct json_object *arr = l.arr;
    char **names = NULL;
    size_t n = 0;

    if (a->npos == 1) {
        names = calloc(2, sizeof *names);
        if (names == NULL || (names[0] = strdup(a->obj.pool)) == NULL) {
            free(names);
            json_object_put(arr);
            return EXIT_RUNTIME;
        }
        n = 1;
    } else if (registry_list(cli->state_dir, &names, &n) < 0) {
        json_object_put(arr);
        return EXIT_RUNTIME;
    }
    /* The volumes of pools the daemon holds come from the daemon. */
    if (cli_each_pool(cli, names, n, "vol.list", 0, list_one, &l) != 0)
        l.rc = EXIT_RUNTIME;
    registry_names_free(names);
    int rc = l.rc;

    if (a->json) {
        json_print(arr);
        return rc;
    }
    if (json_object_array_length(arr) > 0 || a->scripted) {
        struct table *t = table_new(ARRAY_SIZE(headers), headers, "lrrrrrr");
        for (size_t i = 0; i < json_object_array_length(arr); i++)
            list_row(t, json_object_array_get_idx(arr, i), a->parsable);
        table_print(t, stdout, a->scripted);
        table_free(t);
    } else if (rc == 0) {
        printf("no volumes\n");
    }
    json_object_put(arr);
    return rc;
}

static int run_info(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *o;
    uint64_t size, mapped, created;
    char b[4][SIZE_BUF], when[64] = "-";

    if (op_call(cli, t, "vol.info", a, &o) < 0)
        return EXIT_RUNTIME;
    if (a->json) {
        json_print(o);
        return 0;
    }
    size = res_u64(o, "size");
    mapped = res_u64(o, "mapped");
    created = res_u64(o, "created_ns");
    if (created != 0) {
        time_t tt = (time_t)(created / 1000000000ull);
        struct tm tm;
        if (localtime_r(&tt, &tm) != NULL)
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm);
    }
    printf("name:       %s\n", res_str(o, "name"));
    printf("id:         %" PRIu64 "\n", res_u64(o, "id"));
    printf("size:       %s\n", size_str(size, a->parsable, b[0]));
    printf("mapped:     %s (%.1f%%)\n", size_str(mapped, a->parsable, b[1]),
           size == 0 ? 0.0 : 100.0 * (double)mapped / (double)size);
    printf("referenced: %s\n", size_str(res_u64(o, "referenced"), a->parsable, b[2]));
    printf("unique:     %s\n", size_str(res_u64(o, "unique"), a->parsable, b[2]));
    printf("written:    %s\n", size_str(res_u64(o, "written"), a->parsable, b[2]));
    printf("grain:      %s\n", size_str(res_u64(o, "grain"), a->parsable, b[3]));
    if (jget(o, "lun") != NULL)
        printf("lun:        %" PRIu64 "\n", res_u64(o, "lun"));
    printf("created:    %s\n", when);
    json_object_put(o);
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

static int run_resize(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_quiet_op(cli, a, t, "vol.resize");
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

static int run_rename(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_quiet_op(cli, a, t, "vol.rename");
}

static int run_delete(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_quiet_op(cli, a, t, "vol.delete");
}

/* ---------------------------------------------------------------------------------------- */
/* import, export: argument checks (the work is in transfer.c)                               */
/* ---------------------------------------------------------------------------------------- */

/* Export reads snapshots too; import writes volumes only. */
static int check_transfer(const struct command *cmd, struct cli_args *a, const char *what,
                          bool snapshots)
{
    int r;

    if (a->npos < 1)
        return usage_error(cmd, "POOL/VOLUME: missing volume name");
    r = snapshots ? arg_vol_or_snap_name(cmd, "POOL/VOLUME[@SNAPSHOT]", a->pos[0], &a->obj)
                  : arg_vol_name(cmd, "POOL/VOLUME", a->pos[0], &a->obj);
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
    int r = check_transfer(cmd, a, "SOURCE", false);

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
    return check_transfer(cmd, a, "DEST", true);
}

const struct command vol_commands[] = {
    {"vol", "create", "POOL/VOLUME --size SIZE [--grain SIZE]", "Create a thin volume.",
     OPT_SIZE | OPT_GRAIN, CMD_OPENS_POOL, check_create, run_create},
    {"vol", "list", "[POOL] [--json] [-H] [-p]", "List volumes (of one pool, or of all).",
     OPT_JSON | OPT_SCRIPTED | OPT_PARSABLE, 0, check_list, run_list},
    {"vol", "info", "POOL/VOLUME[@SNAPSHOT] [--json] [-p]",
     "Show a volume's or a snapshot's size, space (referenced, unique, written), grain and LUN.",
     OPT_JSON | OPT_PARSABLE, CMD_OPENS_POOL, check_info, run_info},
    {"vol", "resize", "POOL/VOLUME --size [+|-]SIZE [--force]",
     "Grow or shrink a volume (shrinking discards what lies beyond the new size; a volume\n"
     "served over NBD is shrunk only with --force).",
     OPT_SIZE | OPT_FORCE, CMD_OPENS_POOL, check_resize, run_resize},
    {"vol", "rename", "POOL/VOLUME NEWNAME", "Rename a volume (NEWNAME or POOL/NEWNAME).", 0,
     CMD_OPENS_POOL, check_rename, run_rename},
    {"vol", "delete", "POOL/VOLUME [--force]",
     "Delete a volume and free its space (one served over NBD only with --force).", OPT_FORCE,
     CMD_OPENS_POOL, check_vol_only, run_delete},
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
