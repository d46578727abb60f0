/*
 * cmd_pool.c - `cistern pool ...`: create, import, export, add, list, status, check, destroy,
 * set.
 *
 * A pool is known to this host when the state directory has an entry for it (registry.c).
 * create and import add the entry after the pool opened cleanly; export and destroy remove
 * it. Member paths are stored absolute, so commands work from any directory.
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

static int run_create(const struct cli *cli, const struct cli_args *a, struct pool *unused UNUSED)
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

static int run_import(const struct cli *cli, const struct cli_args *a, struct pool *unused UNUSED)
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

static int run_export(const struct cli *cli, const struct cli_args *a, struct pool *unused UNUSED)
{
    int r = registry_remove(cli->state_dir, a->obj.pool);

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

static int run_add(const struct cli *cli, const struct cli_args *a, struct pool *pool)
{
    const char *name = a->obj.pool;
    struct pool_entry e;
    char **members = NULL, **nm;
    int r;

    if (resolve_members(a->members, 1, &members) < 0)
        return EXIT_RUNTIME;
    r = registry_load(cli->state_dir, name, &e);
    if (r < 0) {
        registry_names_free(members);
        return EXIT_RUNTIME;
    }
    for (unsigned i = 0; i < e.nmembers; i++)
        if (strcmp(e.members[i], members[0]) == 0) {
            log_err("%s: %s is a member already", name, members[0]);
            goto fail;
        }

    r = pool_add_member(pool, members[0], a->force);
    if (r < 0) {
        if (r == -EEXIST)
            report_labelled((const char *const *)members, 1);
        else
            log_err("%s: cannot add member %s: %s", name, members[0], strerror(-r));
        goto fail;
    }

    nm = realloc(e.members, (e.nmembers + 1) * sizeof *nm);
    if (nm == NULL)
        goto fail;
    e.members = nm;
    e.members[e.nmembers++] = members[0];
    members[0] = NULL;
    r = registry_save(cli->state_dir, &e);
    pool_entry_clear(&e);
    registry_names_free(members);
    return r < 0 ? EXIT_RUNTIME : 0;

fail:
    pool_entry_clear(&e);
    registry_names_free(members);
    return EXIT_RUNTIME;
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

static int run_list(const struct cli *cli, const struct cli_args *a, struct pool *unused UNUSED)
{
    static const char *const headers[] = {"NAME", "SIZE",    "ALLOC", "FREE",
                                          "CAP",  "MEMBERS", "HEALTH"};
    char **names = NULL;
    size_t n = 0;
    struct table *t = NULL;
    struct json_object *arr = NULL;
    int rc = 0;

    if (a->npos > 0) {
        names = (char **)a->pos;
        n = (size_t)a->npos;
    } else if (registry_list(cli->state_dir, &names, &n) < 0) {
        return EXIT_RUNTIME;
    }

    if (a->json)
        arr = json_object_new_array();
    else
        t = table_new(ARRAY_SIZE(headers), headers, "lrrrrrl");

    for (size_t i = 0; i < n; i++) {
        struct pool_entry e;
        struct pool_stats st;
        struct pool *p = NULL;
        char b1[SIZE_BUF], b2[SIZE_BUF], b3[SIZE_BUF], cap[16], nm[16];
        const char *health = "ONLINE";
        int r;

        r = registry_load(cli->state_dir, names[i], &e);
        if (r < 0) {
            if (r == -ENOENT)
                log_err("%s: no such pool", names[i]);
            rc = EXIT_RUNTIME;
            continue;
        }
        r = cli_pool_open(cli, names[i], true, &p);
        if (r < 0)
            health = pool_open_cause(r);
        else
            pool_stat(p, &st);

        if (a->json) {
            struct json_object *o = json_object_new_object();
            json_object_object_add(o, "name", json_object_new_string(names[i]));
            json_object_object_add(o, "health", json_object_new_string(health));
            json_object_object_add(o, "members", json_object_new_int((int)e.nmembers));
            if (p != NULL) {
                uint64_t bs = CS_BLOCK_SIZE;
                json_object_object_add(o, "size", json_object_new_uint64(st.total_blocks * bs));
                json_object_object_add(o, "allocated",
                                       json_object_new_uint64(st.allocated_blocks * bs));
                json_object_object_add(o, "free", json_object_new_uint64(st.free_blocks * bs));
                json_object_object_add(
                    o, "capacity_pct",
                    json_object_new_int((int)pct(st.allocated_blocks, st.total_blocks)));
            }
            json_object_array_add(arr, o);
        } else {
            const char *row[7];
            snprintf(nm, sizeof nm, "%u", e.nmembers);
            row[0] = names[i];
            row[5] = nm;
            row[6] = health;
            if (p != NULL) {
                snprintf(cap, sizeof cap, "%u%%",
                         (unsigned)pct(st.allocated_blocks, st.total_blocks));
                row[1] = size_str(st.total_blocks * CS_BLOCK_SIZE, a->parsable, b1);
                row[2] = size_str(st.allocated_blocks * CS_BLOCK_SIZE, a->parsable, b2);
                row[3] = size_str(st.free_blocks * CS_BLOCK_SIZE, a->parsable, b3);
                row[4] = cap;
            } else {
                row[1] = row[2] = row[3] = row[4] = "-";
            }
            table_add(t, row);
        }
        pool_entry_clear(&e);
        if (p != NULL && cli_pool_close(p) != 0)
            rc = EXIT_RUNTIME;
    }

    if (a->json)
        json_print(arr);
    else if (n > 0 || a->scripted)
        table_print(t, stdout, a->scripted);
    else
        printf("no pools\n");
    table_free(t);
    if (a->npos == 0)
        registry_names_free(names);
    return rc;
}

static int run_status(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    static const char *const headers[] = {"MEMBER", "SIZE", "FREE"};
    const uint64_t bs = CS_BLOCK_SIZE;
    struct pool_stats st;
    char uuid[UUID_STR_LEN];
    char b[6][SIZE_BUF];
    unsigned nvols = 0;
    int r;

    pool_stat(pool, &st);
    uuid_format(st.uuid, uuid);
    r = vol_list(pool, count_vol, &nvols);
    if (r < 0) {
        log_err("%s: cannot list volumes: %s", a->obj.pool, strerror(-r));
        return EXIT_RUNTIME;
    }

    if (a->json) {
        struct json_object *o = json_object_new_object();
        struct json_object *m = json_object_new_array();
        struct json_object *s = json_object_new_object();

        json_object_object_add(o, "name", json_object_new_string(pool_name(pool)));
        json_object_object_add(o, "uuid", json_object_new_string(uuid));
        json_object_object_add(o, "health", json_object_new_string("ONLINE"));
        json_object_object_add(o, "generation", json_object_new_uint64(st.generation));
        json_object_object_add(o, "size", json_object_new_uint64(st.total_blocks * bs));
        json_object_object_add(o, "allocated", json_object_new_uint64(st.allocated_blocks * bs));
        json_object_object_add(o, "free", json_object_new_uint64(st.free_blocks * bs));
        json_object_object_add(o, "pending_free",
                               json_object_new_uint64(st.pending_free_blocks * bs));
        json_object_object_add(o, "reserve", json_object_new_uint64(st.reserve_blocks * bs));
        json_object_object_add(o, "cache_bytes", json_object_new_uint64(st.cache_bytes));
        json_object_object_add(o, "cache_used", json_object_new_uint64(st.cache_used_bytes));
        json_object_object_add(o, "dirty", json_object_new_uint64(st.dirty_bytes));
        json_object_object_add(o, "volumes", json_object_new_int((int)nvols));
        json_object_object_add(o, "low_space", json_object_new_boolean(st.low_space));
        for (unsigned i = 0; i < st.nmembers; i++) {
            struct pool_member_info mi;
            struct json_object *jm = json_object_new_object();
            pool_member_info(pool, i, &mi);
            json_object_object_add(jm, "path", json_object_new_string(mi.path));
            json_object_object_add(jm, "size", json_object_new_uint64(mi.blocks * bs));
            json_object_object_add(jm, "free", json_object_new_uint64(mi.free_blocks * bs));
            json_object_array_add(m, jm);
        }
        json_object_object_add(o, "members", m);
        json_object_object_add(s, "cache_bytes", json_object_new_uint64(st.settings.cache_bytes));
        json_object_object_add(s, "dirty_bound",
                               json_object_new_uint64(st.settings.dirty_bound_bytes));
        json_object_object_add(s, "commit_interval_ms",
                               json_object_new_uint64(st.settings.commit_interval_ms));
        json_object_object_add(s, "low_space_pct",
                               json_object_new_uint64(st.settings.low_space_pct));
        json_object_object_add(o, "settings", s);
        json_print(o);
        return 0;
    }

    printf("  pool: %s\n", pool_name(pool));
    printf("  uuid: %s\n", uuid);
    printf(" state: ONLINE\n");
    if (st.low_space)
        printf("warning: pool %s is above %u%% of its space: free space by deleting volumes "
               "or add a member\n",
               pool_name(pool), st.settings.low_space_pct);
    printf("\n");
    {
        struct table *t = table_new(3, headers, "lrr");
        for (unsigned i = 0; i < st.nmembers; i++) {
            struct pool_member_info mi;
            const char *row[3];
            pool_member_info(pool, i, &mi);
            row[0] = mi.path;
            row[1] = size_str(mi.blocks * bs, a->parsable, b[0]);
            row[2] = size_str(mi.free_blocks * bs, a->parsable, b[1]);
            table_add(t, row);
        }
        table_print(t, stdout, false);
        table_free(t);
    }
    printf("\n");
    printf("generation:   %" PRIu64 "\n", st.generation);
    printf("size:         %s\n", size_str(st.total_blocks * bs, a->parsable, b[0]));
    printf("allocated:    %s (%.1f%%)\n", size_str(st.allocated_blocks * bs, a->parsable, b[1]),
           pct(st.allocated_blocks, st.total_blocks));
    printf("free:         %s\n", size_str(st.free_blocks * bs, a->parsable, b[2]));
    if (st.pending_free_blocks > 0)
        printf("pending free: %s\n", size_str(st.pending_free_blocks * bs, a->parsable, b[3]));
    printf("reserve:      %s\n", size_str(st.reserve_blocks * bs, a->parsable, b[3]));
    printf("cache:        %s used of %s\n", size_str(st.cache_used_bytes, a->parsable, b[4]),
           size_str(st.cache_bytes, a->parsable, b[5]));
    printf("volumes:      %u\n", nvols);
    printf("settings:     cache_bytes=%s dirty_bound=%s commit_interval_ms=%" PRIu32
           " low_space_pct=%" PRIu32 "\n",
           size_str(st.settings.cache_bytes, a->parsable, b[0]),
           size_str(st.settings.dirty_bound_bytes, a->parsable, b[1]),
           st.settings.commit_interval_ms, st.settings.low_space_pct);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* check, destroy, set                                                                       */
/* ---------------------------------------------------------------------------------------- */

static int run_check(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    struct pool_check_report rep = {0};
    int r = pool_check(pool, &rep);

    if (r == 0) {
        printf("pool %s: consistent (%" PRIu64 " nodes, %" PRIu64 " data blocks)\n", a->obj.pool,
               rep.nodes, rep.data_blocks);
        return 0;
    }
    if (r == -EUCLEAN) {
        printf("pool %s: %u problem%s found (%" PRIu64 " nodes, %" PRIu64 " data blocks)\n",
               a->obj.pool, rep.errors, rep.errors == 1 ? "" : "s", rep.nodes, rep.data_blocks);
        return EXIT_RUNTIME;
    }
    log_err("%s: check could not complete: %s", a->obj.pool, strerror(-r));
    return EXIT_RUNTIME;
}

static int run_destroy(const struct cli *cli, const struct cli_args *a, struct pool *pool)
{
    unsigned nvols = 0;
    int r;

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
    static const struct {
        const char *key;
        int id;
        bool is_size;
        uint64_t min, max;
    } keys[] = {
        {"cache_bytes", SET_CACHE_BYTES, true, 1u << 20, UINT64_MAX},
        {"dirty_bound", SET_DIRTY_BOUND, true, 1u << 20, UINT64_MAX},
        {"commit_interval_ms", SET_COMMIT_INTERVAL_MS, false, 1, UINT32_MAX},
        {"low_space_pct", SET_LOW_SPACE_PCT, false, 1, 100},
    };
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
        const char *arg = a->pos[i], *eq = strchr(arg, '=');
        size_t k;
        uint64_t v;

        if (eq == NULL)
            return usage_error(cmd, "'%s': expected KEY=VALUE", arg);
        for (k = 0; k < ARRAY_SIZE(keys); k++)
            if (strlen(keys[k].key) == (size_t)(eq - arg) &&
                strncmp(keys[k].key, arg, (size_t)(eq - arg)) == 0)
                break;
        if (k == ARRAY_SIZE(keys))
            return usage_error(cmd,
                               "'%.*s': unknown setting (known: cache_bytes, dirty_bound, "
                               "commit_interval_ms, low_space_pct)",
                               (int)(eq - arg), arg);
        if (keys[k].is_size) {
            r = arg_size(cmd, keys[k].key, eq + 1, &v);
            if (r != 0)
                return r;
        } else {
            char *end;
            if (eq[1] < '0' || eq[1] > '9')
                return usage_error(cmd, "%s: '%s' is not a number", keys[k].key, eq + 1);
            errno = 0;
            v = strtoull(eq + 1, &end, 10);
            if (*end != '\0' || errno != 0)
                return usage_error(cmd, "%s: '%s' is not a number", keys[k].key, eq + 1);
        }
        if (v < keys[k].min || v > keys[k].max)
            return usage_error(cmd, "%s: %s is out of range (%" PRIu64 " to %" PRIu64 ")",
                               keys[k].key, eq + 1, keys[k].min, keys[k].max);
        a->settings[a->nsettings].key = keys[k].id;
        a->settings[a->nsettings].value = v;
        a->nsettings++;
    }
    return 0;
}

static int run_set(const struct cli *cli UNUSED, const struct cli_args *a, struct pool *pool)
{
    struct pool_stats st;
    struct pool_settings s;
    int r;

    pool_stat(pool, &st);
    s = st.settings;
    for (unsigned i = 0; i < a->nsettings; i++) {
        uint64_t v = a->settings[i].value;
        switch (a->settings[i].key) {
        case SET_CACHE_BYTES:
            s.cache_bytes = v;
            break;
        case SET_DIRTY_BOUND:
            s.dirty_bound_bytes = v;
            break;
        case SET_COMMIT_INTERVAL_MS:
            s.commit_interval_ms = (uint32_t)v;
            break;
        case SET_LOW_SPACE_PCT:
            s.low_space_pct = (uint32_t)v;
            break;
        }
    }
    pool_md_lock(pool);
    pool_set_settings(pool, &s);
    pool_md_unlock(pool);
    r = pool_commit(pool);
    if (r < 0) {
        log_err("%s: cannot store the settings: %s", a->obj.pool, strerror(-r));
        return EXIT_RUNTIME;
    }
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
