/*
 * cmd_snap.c - `cistern snap ...` and `cistern clone`: snapshots of volumes, read-only points
 * in time named POOL/VOLUME@SNAPSHOT; clones, writable volumes that share a snapshot's data;
 * rollback; and the ranges changed between two points. The cores are the snap.* operations
 * of ops.c, run here or by the daemon that holds the pool.
 */
#include "cli/cli.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* POOL/VOLUME@SNAPSHOT, all three parts present. */
static int arg_snap_name(const struct command *cmd, const char *what, const char *s,
                         struct obj_name *out)
{
    const char *why = NULL;
    if (s == NULL || *s == '\0')
        return usage_error(cmd, "%s: missing name", what);
    if (obj_name_parse(s, out, &why) < 0)
        return usage_error(cmd, "%s: invalid name '%s': %s", what, s,
                           why != NULL ? why : "not a valid name");
    if (out->vol[0] == '\0' || out->snap[0] == '\0')
        return usage_error(cmd, "%s: '%s' is not a snapshot name (expected POOL/VOLUME@SNAPSHOT)",
                           what, s);
    return 0;
}

static int run_op(const struct cli *cli, const struct cli_args *a, const struct target *t,
                  const char *op, struct json_object **res)
{
    return op_call(cli, t, op, a, res) < 0 ? EXIT_RUNTIME : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* create                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int check_create(const struct command *cmd, struct cli_args *a)
{
    if (a->npos < 1)
        return usage_error(cmd, "POOL/VOLUME@SNAPSHOT: missing snapshot name");
    int r = arg_snap_name(cmd, "POOL/VOLUME@SNAPSHOT", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    if (a->npos - 1 > SNAP_MAX_VOLUMES - 1)
        return usage_error(cmd, "at most %u volumes in one snapshot", SNAP_MAX_VOLUMES);
    for (int i = 1; i < a->npos; i++) {
        struct obj_name o;
        r = arg_snap_name(cmd, "POOL/VOLUME@SNAPSHOT", a->pos[i], &o);
        if (r != 0)
            return r;
        if (strcmp(o.pool, a->obj.pool) != 0 || strcmp(o.snap, a->obj.snap) != 0)
            return usage_error(cmd,
                               "'%s': snapshots taken together are in one pool and share "
                               "one name (%s/...@%s)",
                               a->pos[i], a->obj.pool, a->obj.snap);
        snprintf(a->more[a->nmore++], sizeof a->more[0], "%s", o.vol);
    }
    return 0;
}

static int run_create(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *res = NULL;
    int rc = run_op(cli, a, t, "snap.create", &res);
    json_object_put(res);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* list                                                                                      */
/* ---------------------------------------------------------------------------------------- */

static int check_vol(const struct command *cmd, struct cli_args *a)
{
    if (a->npos != 1)
        return usage_error(cmd, a->npos ? "unexpected argument '%s'" : "POOL/VOLUME: missing",
                           a->npos ? a->pos[1] : "");
    return arg_vol_name(cmd, "POOL/VOLUME", a->pos[0], &a->obj);
}

static int run_list(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    static const char *const headers[] = {"NAME",    "SIZE",   "REFER",
                                          "UNIQUE",  "WRITTEN", "CREATED"};
    struct json_object *res = NULL, *arr;
    int rc = run_op(cli, a, t, "snap.list", &res);
    if (rc != 0)
        return rc;
    if (!json_object_object_get_ex(res, "snapshots", &arr)) {
        json_object_put(res);
        return EXIT_RUNTIME;
    }
    if (a->json) {
        json_print(json_object_get(arr)); /* it consumes a reference; res keeps its own */
    } else if (json_object_array_length(arr) == 0) {
        printf("no snapshots\n");
    } else {
        struct table *tb = table_new(ARRAY_SIZE(headers), headers, "lrrrrl");
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *o = json_object_array_get_idx(arr, i);
            char b[4][SIZE_BUF], when[32] = "-";
            time_t sec = (time_t)(res_u64(o, "created_ns") / 1000000000ull);
            struct tm tm;
            if (localtime_r(&sec, &tm))
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            const char *row[] = {res_str(o, "name"), size_str(res_u64(o, "size"), a->parsable, b[0]),
                                 size_str(res_u64(o, "referenced"), a->parsable, b[1]),
                                 size_str(res_u64(o, "unique"), a->parsable, b[2]),
                                 size_str(res_u64(o, "written"), a->parsable, b[3]), when};
            table_add(tb, row);
        }
        table_print(tb, stdout, a->scripted);
        table_free(tb);
    }
    json_object_put(res);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* delete, rollback                                                                          */
/* ---------------------------------------------------------------------------------------- */

static int check_snap_only(const struct command *cmd, struct cli_args *a)
{
    if (a->npos != 1)
        return usage_error(cmd, a->npos ? "unexpected argument '%s'"
                                        : "POOL/VOLUME@SNAPSHOT: missing snapshot name",
                           a->npos ? a->pos[1] : "");
    return arg_snap_name(cmd, "POOL/VOLUME@SNAPSHOT", a->pos[0], &a->obj);
}

static int run_delete(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *res = NULL;
    int rc = run_op(cli, a, t, "snap.delete", &res);
    json_object_put(res);
    return rc;
}

static int run_rollback(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *res = NULL;
    int rc = run_op(cli, a, t, "snap.rollback", &res);
    json_object_put(res);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* rename                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* POOL/VOLUME@OLD NEW, or POOL/VOLUME@OLD POOL/VOLUME@NEW: a snapshot keeps its volume. */
static int check_rename(const struct command *cmd, struct cli_args *a)
{
    if (a->npos != 2)
        return usage_error(cmd, "expected POOL/VOLUME@SNAPSHOT and the new snapshot name");
    int r = arg_snap_name(cmd, "POOL/VOLUME@SNAPSHOT", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    const char *to = a->pos[1], *why = NULL;
    if (strchr(to, '@') != NULL) {
        struct obj_name o;
        r = arg_snap_name(cmd, "NEWNAME", to, &o);
        if (r != 0)
            return r;
        if (strcmp(o.pool, a->obj.pool) != 0 || strcmp(o.vol, a->obj.vol) != 0)
            return usage_error(cmd, "'%s': a snapshot stays with its volume (%s/%s)", to,
                               a->obj.pool, a->obj.vol);
        to = a->pos[1] + (strchr(to, '@') - to) + 1;
    } else if (name_check(to, &why) < 0) {
        return usage_error(cmd, "NEWNAME: invalid snapshot name '%s': %s", to, why);
    }
    snprintf(a->new_name, sizeof a->new_name, "%s", to);
    return 0;
}

static int run_rename(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *res = NULL;
    int rc = run_op(cli, a, t, "snap.rename", &res);
    json_object_put(res);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* diff                                                                                      */
/* ---------------------------------------------------------------------------------------- */

static int check_diff(const struct command *cmd, struct cli_args *a)
{
    if (a->npos < 1 || a->npos > 2)
        return usage_error(cmd, a->npos ? "unexpected argument '%s'"
                                        : "POOL/VOLUME@A: missing snapshot name",
                           a->npos ? a->pos[2] : "");
    int r = arg_snap_name(cmd, "POOL/VOLUME@A", a->pos[0], &a->obj);
    if (r != 0 || a->npos == 1)
        return r;
    struct obj_name o;
    r = arg_snap_name(cmd, "POOL/VOLUME@B", a->pos[1], &o);
    if (r != 0)
        return r;
    if (strcmp(o.pool, a->obj.pool) != 0 || strcmp(o.vol, a->obj.vol) != 0)
        return usage_error(cmd, "'%s' and '%s' are not points of one volume", a->pos[0],
                           a->pos[1]);
    snprintf(a->to, sizeof a->to, "%s", o.snap);
    return 0;
}

static int run_diff(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *res = NULL, *arr;
    int rc = run_op(cli, a, t, "snap.diff", &res);
    if (rc != 0)
        return rc;
    if (!json_object_object_get_ex(res, "ranges", &arr)) {
        json_object_put(res);
        return EXIT_RUNTIME;
    }
    if (a->json) {
        json_print(json_object_get(arr)); /* it consumes a reference; res keeps its own */
    } else {
        uint64_t total = 0;
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *o = json_object_array_get_idx(arr, i);
            char b[SIZE_BUF];
            printf("%llu\t%s\n", (unsigned long long)res_u64(o, "offset"),
                   size_str(res_u64(o, "length"), a->parsable, b));
            total += res_u64(o, "length");
        }
        char b[SIZE_BUF];
        printf("%zu range(s), %s changed\n", json_object_array_length(arr),
               size_str(total, a->parsable, b));
    }
    json_object_put(res);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* clone                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static int check_clone(const struct command *cmd, struct cli_args *a)
{
    if (a->npos != 2)
        return usage_error(cmd, "expected POOL/VOLUME@SNAPSHOT and POOL/NEWVOLUME");
    int r = arg_snap_name(cmd, "POOL/VOLUME@SNAPSHOT", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    struct obj_name o;
    r = arg_vol_name(cmd, "POOL/NEWVOLUME", a->pos[1], &o);
    if (r != 0)
        return r;
    if (strcmp(o.pool, a->obj.pool) != 0)
        return usage_error(cmd, "'%s': a clone lives in its snapshot's pool (%s)", a->pos[1],
                           a->obj.pool);
    snprintf(a->new_name, sizeof a->new_name, "%s", o.vol);
    return 0;
}

static int run_clone(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *res = NULL;
    int rc = run_op(cli, a, t, "clone", &res);
    json_object_put(res);
    return rc;
}

const struct command snap_commands[] = {
    {"snap", "create", "POOL/VOLUME@SNAPSHOT [POOL/VOLUME2@SNAPSHOT...]",
     "Snapshot one or more volumes of a pool at one instant (O(1), read-only).", 0,
     CMD_OPENS_POOL, check_create, run_create},
    {"snap", "list", "POOL/VOLUME [--json] [-H] [-p]", "List a volume's snapshots, oldest first.",
     OPT_JSON | OPT_SCRIPTED | OPT_PARSABLE, CMD_OPENS_POOL, check_vol, run_list},
    {"snap", "delete", "POOL/VOLUME@SNAPSHOT",
     "Delete a snapshot, freeing what only it held (clones keep theirs).", 0, CMD_OPENS_POOL,
     check_snap_only, run_delete},
    {"snap", "rollback", "POOL/VOLUME@SNAPSHOT [--force]",
     "Point a volume back at its snapshot; later snapshots are kept. Refused while the\n"
     "volume is served.",
     OPT_FORCE, CMD_OPENS_POOL, check_snap_only, run_rollback},
    {"snap", "rename", "POOL/VOLUME@SNAPSHOT NEWNAME|POOL/VOLUME@NEWNAME",
     "Rename a snapshot (it stays a snapshot of its volume).", 0, CMD_OPENS_POOL, check_rename,
     run_rename},
    {"snap", "diff", "POOL/VOLUME@A [POOL/VOLUME@B] [--json] [-p]",
     "The byte ranges changed from snapshot A to snapshot B (default: the live volume).",
     OPT_JSON | OPT_PARSABLE, CMD_OPENS_POOL, check_diff, run_diff},
    {"snap", "clone", "POOL/VOLUME@SNAPSHOT POOL/NEWVOLUME",
     "A new writable volume sharing the snapshot's data (also: cistern clone).", 0,
     CMD_OPENS_POOL, check_clone, run_clone},
};
const size_t snap_ncommands = ARRAY_SIZE(snap_commands);
