/*
 * open.c - opening a registered pool for a command, with errors a person can act on.
 *
 * The registry says where the members are; the pool layer checks their labels and takes an
 * exclusive lock on each. When that fails, the cause is turned into words about this pool
 * ("member /dev/sdc is missing", "in use by another process") rather than a bare errno.
 *
 * A pool the daemon holds is not opened at all: cli_target_open asks the daemon's control
 * socket first, and once more when the pool turns out to be locked (a daemon that started
 * in between), and the command then sends its operation there.
 */
#include "cli/cli.h"

#include <json-c/json.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *pool_open_cause(int err)
{
    switch (err) {
    case -EBUSY:
        return "pool is in use by another process";
    case -ENOENT:
        return "a member is missing";
    case -EXDEV:
        return "members belong to different pools";
    case -EUCLEAN:
        return "no valid superblock (metadata damaged)";
    case -EPROTONOSUPPORT:
        return "on-disk format version not supported";
    case -EACCES:
    case -EPERM:
        return "permission denied on a member";
    default:
        return strerror(-err);
    }
}

/* Names the member behind an -ENOENT or -EXDEV when we can find it. */
static void report_member_problem(const char *name, const struct pool_entry *e, int err)
{
    for (unsigned i = 0; i < e->nmembers; i++) {
        struct pool_label_info li;

        if (access(e->members[i], F_OK) < 0) {
            log_err("%s: member %s is missing", name, e->members[i]);
            return;
        }
        if (pool_read_label(e->members[i], &li) < 0) {
            log_err("%s: member %s carries no pool label", name, e->members[i]);
            return;
        }
        if (memcmp(li.pool_uuid, e->uuid, sizeof li.pool_uuid) != 0) {
            log_err("%s: member %s now belongs to another pool (%s)", name, e->members[i],
                    li.pool_name);
            return;
        }
    }
    log_err("%s: %s", name, pool_open_cause(err));
}

int cli_pool_open(const struct cli *cli, const char *name, unsigned flags, struct pool **out)
{
    bool quiet = (flags & OPEN_QUIET) != 0;
    struct pool_entry e;
    struct pool_stats st;
    struct pool *p = NULL;
    int r;

    *out = NULL;
    r = registry_load(cli->state_dir, name, &e);
    if (r == -ENOENT) {
        if (!quiet)
            log_err("%s: no such pool (not registered in %s; see 'cistern pool import')", name,
                    cli->state_dir);
        return r;
    }
    if (r < 0)
        return r;

    r = pool_open((const char *const *)e.members, e.nmembers, 0, &p);
    if (r < 0) {
        if (!quiet && !(r == -EBUSY && (flags & OPEN_QUIET_BUSY))) {
            if (r == -ENOENT || r == -EXDEV)
                report_member_problem(name, &e, r);
            else
                log_err("%s: %s", name, pool_open_cause(r));
        }
        pool_entry_clear(&e);
        return r;
    }

    pool_stat(p, &st);
    if (memcmp(st.uuid, e.uuid, sizeof st.uuid) != 0 || strcmp(pool_name(p), name) != 0) {
        char u[UUID_STR_LEN];
        uuid_format(st.uuid, u);
        if (!quiet)
            log_err("%s: the registered members now hold pool %s (uuid %s): run 'cistern pool "
                    "export %s' and import the pool again",
                    name, pool_name(p), u, name);
        pool_close(p);
        pool_entry_clear(&e);
        return -EXDEV;
    }
    pool_entry_clear(&e);

    r = volumes_attach(p);
    if (r < 0) {
        if (!quiet)
            log_err("%s: cannot read the volume catalog: %s", name, strerror(-r));
        pool_close(p);
        return r;
    }
    *out = p;
    return 0;
}

/* A connection to the daemon when it holds pool @name, else NULL. */
static struct ctl_client *daemon_holding(const struct cli *cli, const char *name)
{
    struct ctl_client *c = NULL;
    char *path = cli_control_path(cli);

    if (path == NULL || ctl_connect(path, &c) < 0 || !ctl_holds(c, name)) {
        ctl_close(c);
        c = NULL;
    }
    free(path);
    return c;
}

int cli_target_open(const struct cli *cli, const char *name, struct target *t)
{
    int r;

    t->pool = NULL;
    t->ctl = daemon_holding(cli, name);
    if (t->ctl != NULL)
        return 0;
    r = cli_pool_open(cli, name, OPEN_QUIET_BUSY, &t->pool);
    if (r == -EBUSY) {
        /* A daemon may have taken the pool since we asked. */
        t->ctl = daemon_holding(cli, name);
        if (t->ctl != NULL)
            return 0;
        log_err("%s: %s", name, pool_open_cause(r));
    }
    return r;
}

int cli_target_close(struct target *t)
{
    int r = cli_pool_close(t->pool);

    ctl_close(t->ctl);
    t->pool = NULL;
    t->ctl = NULL;
    return r;
}

int cli_each_pool(const struct cli *cli, char *const *names, size_t n, const char *op,
                  unsigned open_flags,
                  void (*each)(void *ctx, const char *name, int open_err, struct json_object *res),
                  void *ctx)
{
    struct ctl_client *ctl = NULL;
    char *path = cli_control_path(cli);
    int rc = 0;

    if (path != NULL && ctl_connect(path, &ctl) < 0)
        ctl = NULL;
    free(path);
    for (size_t i = 0; i < n; i++) {
        struct cli_args b = {0};
        struct target t = {0};
        struct json_object *res = NULL;
        int r = 0;

        snprintf(b.obj.pool, sizeof b.obj.pool, "%s", names[i]);
        if (ctl != NULL && ctl_holds(ctl, names[i]))
            t.ctl = ctl;
        else
            r = cli_pool_open(cli, names[i], open_flags, &t.pool);
        if (r == 0 && op_call(cli, &t, op, &b, &res) < 0)
            res = NULL;
        each(ctx, names[i], r, res);
        json_object_put(res);
        if (t.pool != NULL && cli_pool_close(t.pool) != 0)
            rc = EXIT_RUNTIME;
    }
    ctl_close(ctl);
    return rc;
}

bool cli_refuse_served(const struct cli *cli, const char *name)
{
    struct ctl_client *c = daemon_holding(cli, name);

    if (c == NULL)
        return false;
    log_err("pool %s is served by the daemon (pid %ld): stop it first", name, ctl_pid(c));
    ctl_close(c);
    return true;
}

int cli_pool_close(struct pool *pool)
{
    char name[CS_POOL_NAME_MAX + 1];
    int r;

    if (pool == NULL)
        return 0;
    snprintf(name, sizeof name, "%s", pool_name(pool));
    r = pool_close(pool);
    if (r < 0) {
        log_err("%s: final commit failed: %s", name, strerror(-r));
        return EXIT_RUNTIME;
    }
    return 0;
}

const char *vol_error_cause(int err)
{
    switch (err) {
    case -ENOENT:
        return "no such volume";
    case -EEXIST:
        return "a volume of that name exists";
    case -ENOSPC:
        return "out of space in the pool";
    case -EBUSY:
        return "volume is in use";
    case -EROFS:
        return "volume is read-only";
    default:
        return strerror(-err);
    }
}
