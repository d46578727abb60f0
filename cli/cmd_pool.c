/*
 * cmd_pool.c - `cistern pool ...`: create, import, export, add, list, status, check, destroy,
 * set.
 *
 * A pool is known to this host when the state directory has an entry for it (registry.c).
 * create and import add the entry after the pool opened cleanly; export and destroy remove
 * it. Member paths are stored absolute, so commands work from any directory.
 *
 * list, status, check, set and add are operations (ops.c): they run here or in the daemon
 * that holds the pool, and print the result. export, import and destroy of a pool the
 * daemon holds are refused: the daemon would go on using members that are no longer its.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Absolute paths of the members, checked to exist and to be distinct. */
static int resolve_members(const char *const *in, unsigned n, char ***out)
{
    char **v = calloc(n + 1, sizeof *v);

    if (v == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        v[i] = realpath(in[i], NULL);
        if (v[i] == NULL) {
            int r = -errno;
            log_err("member %s: %s", in[i], strerror(-r));
            registry_names_free(v);
            return r;
        }
        for (unsigned j = 0; j < i; j++)
            if (strcmp(v[i], v[j]) == 0) {
                log_err("member %s: given twice", in[i]);
                registry_names_free(v);
                return -EINVAL;
            }
    }
    *out = v;
    return 0;
}

/* Says which member already carries a label, after pool_create() or pool_add_member()
 * answered -EEXIST. */
static void report_labelled(const char *const *members, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct pool_label_info li;
        if (pool_read_label(members[i], &li) == 0) {
            log_err("member %s belongs to pool %s already: use --force to overwrite it", members[i],
                    li.pool_name);
            return;
        }
    }
    log_err("a member belongs to a pool already: use --force to overwrite it");
}

static int count_vol(void *ctx, const struct vol_info *vi UNUSED)
{
    (*(unsigned *)ctx)++;
    return 0;
}

static double pct(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0.0 : 100.0 * (double)part / (double)whole;
}

/* A string of the JSON object member @key of @o, or NULL. */
static struct json_object *jget(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;
    json_object_object_get_ex(o, key, &v);
    return v;
}

/* ---------------------------------------------------------------------------------------- */
/* create                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int check_create(const struct command *cmd, struct cli_args *a)
{
    int r;

    if (a->npos < 1)
        return usage_error(cmd, "POOL: missing pool name");
    r = arg_pool_name(cmd, "POOL", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    if (a->npos < 2)
        return usage_error(cmd, "MEMBER: at least one member is needed");
    if (a->npos - 1 > (int)CS_MAX_MEMBERS)
        return usage_error(cmd, "MEMBER: at most %u members", CS_MAX_MEMBERS);
    a->members = (const char *const *)a->pos + 1;
    a->nmembers = (unsigned)a->npos - 1;
    return 0;
}

/* Opens the pool from @members to learn its identity, then records it in the registry. */
static int register_pool(const struct cli *cli, const char *name, char **members, unsigned n)
{
    struct pool_entry e = {0};
    struct pool_stats st;
    struct pool *p;
    int r;

    r = pool_open((const char *const *)members, n, 0, &p);
    if (r < 0) {
        log_err("%s: %s", name, pool_open_cause(r));
        return r;
    }
    r = volumes_attach(p);
    if (r < 0) {
        log_err("%s: cannot read the volume catalog: %s", name, strerror(-r));
        pool_close(p);
        return r;
    }
    pool_stat(p, &st);
    r = pool_close(p);
    if (r < 0) {
        log_err("%s: %s", name, strerror(-r));
        return r;
    }

    snprintf(e.name, sizeof e.name, "%s", name);
    memcpy(e.uuid, st.uuid, sizeof e.uuid);
    e.members = members;
    e.nmembers = n;
    return registry_save(cli->state_dir, &e);
}

static int run_create(const struct cli *cli, const struct cli_args *a,
                      const struct target *unused UNUSED)
{
    const char *name = a->obj.pool;
    struct pool_settings s;
    struct pool_entry old;
    char **members = NULL;
    int r;

    r = registry_load(cli->state_dir, name, &old);
    if (r == 0) {
        pool_entry_clear(&old);
        log_err("%s: a pool of that name is already registered", name);
        return EXIT_RUNTIME;
    }
    if (r != -ENOENT)
        return EXIT_RUNTIME;

    if (resolve_members(a->members, a->nmembers, &members) < 0)
        return EXIT_RUNTIME;

    pool_settings_default(&s);
    r = pool_create(name, (const char *const *)members, a->nmembers, &s, a->force);
    if (r < 0) {
        if (r == -EEXIST)
            report_labelled((const char *const *)members, a->nmembers);
        else if (r == -EBUSY)
            log_err("%s: a member is in use by another process", name);
        else
            log_err("%s: cannot create the pool: %s", name, strerror(-r));
        registry_names_free(members);
        return EXIT_RUNTIME;
    }

    r = register_pool(cli, name, members, a->nmembers);
    registry_names_free(members);
    if (r < 0) {
        log_err("%s: the pool was created but not registered: run 'cistern pool import' "
                "with its members",
                name);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* import, export                                                                            */
/* ---------------------------------------------------------------------------------------- */

static int check_import(const struct command *cmd, struct cli_args *a)
{
    if (a->npos < 1)
        return usage_error(cmd, "MEMBER: at least one member is needed");
    if (a->npos > (int)CS_MAX_MEMBERS)
        return usage_error(cmd, "MEMBER: at most %u members", CS_MAX_MEMBERS);
    a->members = (const char *const *)a->pos;
    a->nmembers = (unsigned)a->npos;
    return 0;
}

static int run_import(const struct cli *cli, const struct cli_args *a,
                      const struct target *unused UNUSED)
{
    struct pool_label_info *li;
    struct pool_entry old;
    char **members = NULL;
    char uuid[UUID_STR_LEN];
    const char *name;
    int r, rc = EXIT_RUNTIME;

    if (resolve_members(a->members, a->nmembers, &members) < 0)
        return EXIT_RUNTIME;
    li = calloc(a->nmembers, sizeof *li);
    if (li == NULL)
        goto out;

    for (unsigned i = 0; i < a->nmembers; i++) {
        r = pool_read_label(members[i], &li[i]);
        if (r < 0) {
            log_err("member %s: no pool label: %s", members[i], strerror(-r));
            goto out;
        }
        if (memcmp(li[i].pool_uuid, li[0].pool_uuid, sizeof li[0].pool_uuid) != 0) {
            log_err("member %s belongs to pool %s, member %s to pool %s: import one pool at a "
                    "time",
                    members[i], li[i].pool_name, members[0], li[0].pool_name);
            goto out;
        }
    }
    name = li[0].pool_name;
    uuid_format(li[0].pool_uuid, uuid);
    if (cli_refuse_served(cli, name))
        goto out;

    /* Record the members in the pool's own order, whatever order they were given in. */
    for (unsigned i = 1; i < a->nmembers; i++)
        for (unsigned j = i; j > 0 && li[j - 1].member_index > li[j].member_index; j--) {
            struct pool_label_info tl = li[j];
            char *tm = members[j];
            li[j] = li[j - 1];
            members[j] = members[j - 1];
            li[j - 1] = tl;
            members[j - 1] = tm;
        }

    r = registry_load(cli->state_dir, name, &old);
    if (r == 0) {
        bool same = memcmp(old.uuid, li[0].pool_uuid, sizeof old.uuid) == 0;
        pool_entry_clear(&old);
        if (!same && !a->force) {
            log_err("%s: another pool of that name is registered: export it first, or use "
                    "--force to replace its entry",
                    name);
            goto out;
        }
    } else if (r != -ENOENT) {
        goto out;
    }

    r = register_pool(cli, name, members, a->nmembers);
    if (r == 0) {
        printf("imported pool %s (%s) with %u member%s\n", name, uuid, a->nmembers,
               a->nmembers == 1 ? "" : "s");
        rc = 0;
    } else if (r == -ENOENT) {
        log_err("%s: give every member of the pool", name);
    }
out:
    free(li);
    registry_names_free(members);
    return rc;
}

static int check_pool_only(const struct command *cmd, struct cli_args *a)
{
    if (a->npos < 1)
        return usage_error(cmd, "POOL: missing pool name");
    if (a->npos > 1)
        return usage_error(cmd, "unexpected argument '%s'", a->pos[1]);
    return arg_pool_name(cmd, "POOL", a->pos[0], &a->obj);
}

static int run_export(const struct cli *cli, const struct cli_args *a,
                      const struct target *unused UNUSED)
{
    int r;

    if (cli_refuse_served(cli, a->obj.pool))
        return EXIT_RUNTIME;
    r = registry_remove(cli->state_dir, a->obj.pool);

    if (r == -ENOENT)
        log_err("%s: no such pool", a->obj.pool);
    return r < 0 ? EXIT_RUNTIME : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* add                                                                                       */
/* ---------------------------------------------------------------------------------------- */

static int check_add(const struct command *cmd, struct cli_args *a)
{
    int r;

    if (a->npos < 1)
        return usage_error(cmd, "POOL: missing pool name");
    r = arg_pool_name(cmd, "POOL", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    if (a->npos < 2)
        return usage_error(cmd, "MEMBER: missing member");
    if (a->npos > 2)
        return usage_error(cmd, "unexpected argument '%s' (add one member at a time)", a->pos[2]);
    a->members = (const char *const *)a->pos + 1;
    a->nmembers = 1;
    return 0;
}

static int run_add(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *res;
    struct cli_args b = *a;
    char **members = NULL;
    int r;

    /* Relative to our directory, not the daemon's. */
    if (resolve_members(a->members, 1, &members) < 0)
        return EXIT_RUNTIME;
    b.member = members[0];
    b.members = &b.member;
    b.nmembers = 1;
    r = op_call(cli, t, "pool.add", &b, &res);
    json_object_put(res);
    registry_names_free(members);
    return r < 0 ? EXIT_RUNTIME : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* list, status                                                                              */
/* ---------------------------------------------------------------------------------------- */

static int check_list(const struct command *cmd, struct cli_args *a)
{
    for (int i = 0; i < a->npos; i++) {
        struct obj_name o;
        int r = arg_pool_name(cmd, "POOL", a->pos[i], &o);
        if (r != 0)
            return r;
    }
    return 0;
}

/* One row of `pool list` from a pool.list entry. */
static void list_row(struct table *t, struct json_object *o, bool parsable)
{
    char b1[SIZE_BUF], b2[SIZE_BUF], b3[SIZE_BUF], cap[16], nm[16];
    const char *row[7];

    snprintf(nm, sizeof nm, "%" PRIu64, res_u64(o, "members"));
    row[0] = res_str(o, "name");
    row[5] = nm;
    row[6] = res_str(o, "health");
    if (jget(o, "size") != NULL) {
        snprintf(cap, sizeof cap, "%" PRIu64 "%%", res_u64(o, "capacity_pct"));
        row[1] = size_str(res_u64(o, "size"), parsable, b1);
        row[2] = size_str(res_u64(o, "allocated"), parsable, b2);
        row[3] = size_str(res_u64(o, "free"), parsable, b3);
        row[4] = cap;
    } else {
        row[1] = row[2] = row[3] = row[4] = "-";
    }
    table_add(t, row);
}

struct pool_list {
    const struct cli *cli;
    struct json_object *arr;
    int rc;
};

static void list_one(void *ctx, const char *name, int open_err, struct json_object *res)
{
    struct pool_list *l = ctx;
    struct json_object *pools = res ? jget(res, "pools") : NULL;
    struct pool_entry e;

    if (pools != NULL && json_object_array_length(pools) == 1) {
        json_object_array_add(l->arr, json_object_get(json_object_array_get_idx(pools, 0)));
        return;
    }
    int r = registry_load(l->cli->state_dir, name, &e);
    if (r < 0) {
        if (r == -ENOENT)
            log_err("%s: no such pool", name);
        l->rc = EXIT_RUNTIME;
        return;
    }
    /* Not open: the cause stands in for the health. */
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "health", json_object_new_string(open_err < 0 ? pool_open_cause(open_err)
                                                                          : "UNAVAILABLE"));
    json_object_object_add(o, "members", json_object_new_int((int)e.nmembers));
    json_object_array_add(l->arr, o);
    if (open_err == 0)
        l->rc = EXIT_RUNTIME;
    pool_entry_clear(&e);
}

static int run_list(const struct cli *cli, const struct cli_args *a,
                    const struct target *unused UNUSED)
{
    static const char *const headers[] = {"NAME", "SIZE",    "ALLOC", "FREE",
                                          "CAP",  "MEMBERS", "HEALTH"};
    struct pool_list l = {cli, json_object_new_array(), 0};
    struct json_object *arr = l.arr;
    char **names = NULL;
    size_t n = 0;

    if (a->npos > 0) {
        names = (char **)a->pos;
        n = (size_t)a->npos;
    } else if (registry_list(cli->state_dir, &names, &n) < 0) {
        json_object_put(arr);
        return EXIT_RUNTIME;
    }
    /* Pools the daemon holds are listed by the daemon; the others are opened here. */
    if (cli_each_pool(cli, names, n, "pool.list", OPEN_QUIET, list_one, &l) != 0)
        l.rc = EXIT_RUNTIME;
    int rc = l.rc;

    if (a->json) {
        json_print(arr);
    } else {
        struct table *t = table_new(ARRAY_SIZE(headers), headers, "lrrrrrl");
        for (size_t i = 0; i < json_object_array_length(arr); i++)
            list_row(t, json_object_array_get_idx(arr, i), a->parsable);
        if (n > 0 || a->scripted)
            table_print(t, stdout, a->scripted);
        else
            printf("no pools\n");
        table_free(t);
        json_object_put(arr);
    }
    if (a->npos == 0)
        registry_names_free(names);
    return rc;
}

static int run_status(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    static const char *const headers[] = {"MEMBER", "SIZE", "FREE"};
    struct json_object *o, *members, *s;
    uint64_t total, alloc;
    char b[6][SIZE_BUF];

    if (op_call(cli, t, "pool.status", a, &o) < 0)
        return EXIT_RUNTIME;
    if (a->json) {
        json_print(o);
        return 0;
    }
    members = jget(o, "members");
    s = jget(o, "settings");
    total = res_u64(o, "size");
    alloc = res_u64(o, "allocated");

    printf("  pool: %s\n", res_str(o, "name"));
    printf("  uuid: %s\n", res_str(o, "uuid"));
    printf(" state: %s\n", res_str(o, "health"));
    if (res_bool(o, "low_space"))
        printf("warning: pool %s is above %" PRIu64 "%% of its space: free space by deleting "
               "volumes or add a member\n",
               res_str(o, "name"), res_u64(s, "low_space_pct"));
    printf("\n");
    {
        struct table *t = table_new(3, headers, "lrr");
        for (size_t i = 0; members != NULL && i < json_object_array_length(members); i++) {
            struct json_object *m = json_object_array_get_idx(members, i);
            const char *row[3];
            row[0] = res_str(m, "path");
            row[1] = size_str(res_u64(m, "size"), a->parsable, b[0]);
            row[2] = size_str(res_u64(m, "free"), a->parsable, b[1]);
            table_add(t, row);
        }
        table_print(t, stdout, false);
        table_free(t);
    }
    printf("\n");
    printf("generation:   %" PRIu64 "\n", res_u64(o, "generation"));
    printf("size:         %s\n", size_str(total, a->parsable, b[0]));
    printf("allocated:    %s (%.1f%%)\n", size_str(alloc, a->parsable, b[1]), pct(alloc, total));
    printf("free:         %s\n", size_str(res_u64(o, "free"), a->parsable, b[2]));
    if (res_u64(o, "pending_free") > 0)
        printf("pending free: %s\n", size_str(res_u64(o, "pending_free"), a->parsable, b[3]));
    printf("reserve:      %s\n", size_str(res_u64(o, "reserve"), a->parsable, b[3]));
    printf("cache:        %s used of %s\n", size_str(res_u64(o, "cache_used"), a->parsable, b[4]),
           size_str(res_u64(o, "cache_bytes"), a->parsable, b[5]));
    printf("volumes:      %" PRIu64 ", referencing %s, %s of it their own\n",
           res_u64(o, "volumes"), size_str(res_u64(o, "referenced"), a->parsable, b[0]),
           size_str(res_u64(o, "unique"), a->parsable, b[1]));
    printf("snapshots:    %" PRIu64 ", referencing %s, %s of it their own\n",
           res_u64(o, "snapshots"), size_str(res_u64(o, "snapshots_referenced"), a->parsable, b[2]),
           size_str(res_u64(o, "snapshots_unique"), a->parsable, b[3]));
    printf("settings:     cache_bytes=%s dirty_bound=%s commit_interval_ms=%" PRIu64
           " low_space_pct=%" PRIu64 "\n",
           size_str(res_u64(s, "cache_bytes"), a->parsable, b[0]),
           size_str(res_u64(s, "dirty_bound"), a->parsable, b[1]), res_u64(s, "commit_interval_ms"),
           res_u64(s, "low_space_pct"));
    if (t->ctl != NULL)
        printf("served by:    the daemon (pid %ld)\n", ctl_pid(t->ctl));
    json_object_put(o);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* check, destroy, set                                                                       */
/* ---------------------------------------------------------------------------------------- */

static int run_check(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *o;
    uint64_t errors;
    int rc = 0;

    if (op_call(cli, t, "pool.check", a, &o) < 0)
        return EXIT_RUNTIME;
    if (res_bool(o, "consistent")) {
        printf("pool %s: consistent (%" PRIu64 " nodes, %" PRIu64 " data blocks)\n", a->obj.pool,
               res_u64(o, "nodes"), res_u64(o, "data_blocks"));
    } else {
        errors = res_u64(o, "errors");
        printf("pool %s: %" PRIu64 " problem%s found (%" PRIu64 " nodes, %" PRIu64
               " data blocks)%s\n",
               a->obj.pool, errors, errors == 1 ? "" : "s", res_u64(o, "nodes"),
               res_u64(o, "data_blocks"), t->ctl != NULL ? "; the daemon's log names them" : "");
        rc = EXIT_RUNTIME;
    }
    json_object_put(o);
    return rc;
}

static int run_destroy(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct pool *pool = t->pool;
    unsigned nvols = 0;
    int r;

    if (t->ctl != NULL) {
        log_err("pool %s is served by the daemon (pid %ld): stop it first", a->obj.pool,
                ctl_pid(t->ctl));
        return EXIT_RUNTIME;
    }
    r = vol_list(pool, count_vol, &nvols);
    if (r < 0) {
        log_err("%s: cannot list volumes: %s", a->obj.pool, strerror(-r));
        pool_close(pool);
        return EXIT_RUNTIME;
    }
    if (nvols > 0 && !a->force) {
        log_err("%s: pool has %u volume%s: use --force to destroy it with them", a->obj.pool, nvols,
                nvols == 1 ? "" : "s");
        pool_close(pool);
        return EXIT_RUNTIME;
    }
    r = pool_destroy(pool);
    if (r < 0) {
        log_err("%s: cannot destroy: %s", a->obj.pool, strerror(-r));
        return EXIT_RUNTIME;
    }
    r = registry_remove(cli->state_dir, a->obj.pool);
    return r < 0 && r != -ENOENT ? EXIT_RUNTIME : 0;
}

static int check_set(const struct command *cmd, struct cli_args *a)
{
    int r;

    if (a->npos < 1)
        return usage_error(cmd, "POOL: missing pool name");
    r = arg_pool_name(cmd, "POOL", a->pos[0], &a->obj);
    if (r != 0)
        return r;
    if (a->npos < 2)
        return usage_error(cmd, "KEY=VALUE: nothing to set");
    if (a->npos - 1 > SETTINGS_MAX)
        return usage_error(cmd, "KEY=VALUE: at most %d settings at once", SETTINGS_MAX);

    for (int i = 1; i < a->npos; i++) {
        const char *arg = a->pos[i], *eq = strchr(arg, '='), *key, *range;
        int id;
        uint64_t v;

        if (eq == NULL)
            return usage_error(cmd, "'%s': expected KEY=VALUE", arg);
        id = setting_lookup(arg, (size_t)(eq - arg));
        if (id < 0)
            return usage_error(cmd,
                               "'%.*s': unknown setting (known: cache_bytes, dirty_bound, "
                               "commit_interval_ms, low_space_pct)",
                               (int)(eq - arg), arg);
        key = setting_name(id);
        if (setting_is_size(id)) {
            r = arg_size(cmd, key, eq + 1, &v);
            if (r != 0)
                return r;
        } else {
            char *end;
            if (eq[1] < '0' || eq[1] > '9')
                return usage_error(cmd, "%s: '%s' is not a number", key, eq + 1);
            errno = 0;
            v = strtoull(eq + 1, &end, 10);
            if (*end != '\0' || errno != 0)
                return usage_error(cmd, "%s: '%s' is not a number", key, eq + 1);
        }
        range = setting_check(id, v);
        if (range != NULL)
            return usage_error(cmd, "%s: %s is out of range (%s)", key, eq + 1, range);
        a->settings[a->nsettings].key = id;
        a->settings[a->nsettings].value = v;
        a->nsettings++;
    }
    return 0;
}

static int run_set(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    struct json_object *o;

    if (op_call(cli, t, "pool.set", a, &o) < 0)
        return EXIT_RUNTIME;
    json_object_put(o);
    return 0;
}

const struct command pool_commands[] = {
    {"pool", "create", "POOL MEMBER... [--force]",
     "Create a pool from members (files or block devices) and register it.", OPT_FORCE, 0,
     check_create, run_create},
    {"pool", "import", "MEMBER... [--force]",
     "Register the pool whose members are given (any order), after opening it.", OPT_FORCE, 0,
     check_import, run_import},
    {"pool", "export", "POOL", "Forget a pool on this host; its members are left untouched.", 0, 0,
     check_pool_only, run_export},
    {"pool", "add", "POOL MEMBER [--force]", "Add a member to a pool.", OPT_FORCE, CMD_OPENS_POOL,
     check_add, run_add},
    {"pool", "list", "[POOL...] [--json] [-H] [-p]", "List pools with their space and health.",
     OPT_JSON | OPT_SCRIPTED | OPT_PARSABLE, 0, check_list, run_list},
    {"pool", "status", "POOL [--json] [-p]",
     "Show a pool's members, space, metadata, cache and settings.", OPT_JSON | OPT_PARSABLE,
     CMD_OPENS_POOL, check_pool_only, run_status},
    {"pool", "check", "POOL",
     "Verify every checksum, tree and reference count of a pool (exit 1 when inconsistent).", 0,
     CMD_OPENS_POOL, check_pool_only, run_check},
    {"pool", "destroy", "POOL [--force]",
     "Erase a pool's labels and forget it (--force: even when it has volumes).", OPT_FORCE,
     CMD_OPENS_POOL | CMD_CLOSES_POOL, check_pool_only, run_destroy},
    {"pool", "set", "POOL KEY=VALUE...",
     "Change settings: cache_bytes=SIZE, dirty_bound=SIZE, commit_interval_ms=N, "
     "low_space_pct=N.",
     0, CMD_OPENS_POOL, check_set, run_set},
};
const size_t pool_ncommands = ARRAY_SIZE(pool_commands);
