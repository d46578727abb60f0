/*
 * ops.c - the operations: what a command does to an open pool, once, for both the command
 * line and the daemon.
 *
 * Each operation takes the struct pool and checked arguments (struct cli_args) and returns
 * a json-c object, or an error (a negative errno and a message naming the object). The
 * command line calls it on a pool it opened, or sends it to the daemon that holds the pool;
 * the daemon decodes the request's "args" into the same struct cli_args and calls the same
 * function (op_call here, control.c there). So the checks that guard a pool (a volume served
 * to NBD clients is neither deleted nor shrunk without --force) and the messages are the
 * same on both paths, and the command prints the same result either way.
 *
 * Arguments from the control socket are untrusted: op_args_decode checks every key, type and
 * range before an operation sees them; the command line's check() functions have checked
 * theirs already, with the same limits (vol_size_problem, setting_check).
 */
#include "cli/cli.h"
#include "iscsi-target/scsi.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int op_fail(struct op_err *e, int err, const char *fmt, ...)
{
    va_list ap;

    e->err = err;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Limits shared with the command line's checks                                              */
/* ---------------------------------------------------------------------------------------- */

static const struct {
    const char *key;
    bool is_size;
    uint64_t min, max;
    const char *range;
} settings[] = {
    [SET_CACHE_BYTES] = {"cache_bytes", true, 1u << 20, UINT64_MAX, "1M or more"},
    [SET_COMMIT_INTERVAL_MS] = {"commit_interval_ms", false, 1, UINT32_MAX, "1 to 4294967295"},
    [SET_DIRTY_BOUND] = {"dirty_bound", true, 1u << 20, UINT64_MAX, "1M or more"},
    [SET_LOW_SPACE_PCT] = {"low_space_pct", false, 1, 100, "1 to 100"},
};

int setting_lookup(const char *key, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(settings); i++)
        if (strlen(settings[i].key) == len && strncmp(settings[i].key, key, len) == 0)
            return (int)i;
    return -1;
}

const char *setting_name(int id)
{
    return settings[id].key;
}
bool setting_is_size(int id)
{
    return settings[id].is_size;
}

const char *setting_check(int id, uint64_t v)
{
    return v < settings[id].min || v > settings[id].max ? settings[id].range : NULL;
}

const char *vol_size_problem(uint64_t size)
{
    if (size == 0)
        return "the size must not be zero";
    if (size % CS_BLOCK_SIZE != 0)
        return "not a multiple of 4K";
    if (size > VOL_MAX_SIZE)
        return "larger than the largest volume (1E)";
    return NULL;
}

uint64_t res_u64(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (o == NULL || !json_object_object_get_ex(o, key, &v))
        return 0;
    return json_object_get_uint64(v);
}

const char *res_str(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_string))
        return "";
    return json_object_get_string(v);
}

bool res_bool(struct json_object *o, const char *key)
{
    struct json_object *v;

    return o != NULL && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static void jadd_u64(struct json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

static void jadd_str(struct json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, json_object_new_string(v));
}

static double pct(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0.0 : 100.0 * (double)part / (double)whole;
}

static int vol_fail(struct op_err *e, const struct cli_args *a, int err)
{
    return op_fail(e, err, "%s/%s: %s", a->obj.pool, a->obj.vol, vol_error_cause(err));
}

/* Pool totals of the volumes' and snapshots' space (pool.status). */
struct totals {
    struct pool *pool;
    const char *vol; /* while walking its snapshots */
    unsigned volumes, snapshots;
    uint64_t referenced, unique, snap_referenced, snap_unique;
};

static int total_snap(void *ctx, const struct vol_info *vi)
{
    struct totals *t = ctx;
    char point[2 * NAME_MAX_LEN + 2];
    struct vol_space sp;
    snprintf(point, sizeof point, "%s@%s", t->vol, vi->name);
    int r = vol_get_space(t->pool, point, &sp);
    t->snapshots++;
    t->snap_referenced += sp.referenced_bytes;
    t->snap_unique += sp.unique_bytes;
    return r;
}

static int total_vol(void *ctx, const struct vol_info *vi)
{
    struct totals *t = ctx;
    struct vol_space sp;
    int r = vol_get_space(t->pool, vi->name, &sp);
    t->volumes++;
    t->referenced += sp.referenced_bytes;
    t->unique += sp.unique_bytes;
    t->vol = vi->name;
    return r < 0 ? r : vol_snap_list(t->pool, vi->name, total_snap, t);
}

/* NBD connections that have the volume open (0 outside the daemon). */
static unsigned served_to(const struct op_env *env, struct pool *pool, const char *vol)
{
    return env->clients != NULL ? env->clients(env->ctx, pool, vol) : 0;
}

/* For --force: disconnects the clients of @vol first. 0, or -EBUSY (with @e filled) when
 * some still hold it (or connected again at once). */
static int evict_clients(const struct op_env *env, struct pool *pool, const char *vol,
                         const char *what, struct op_err *e)
{
    unsigned left = env->evict != NULL ? env->evict(env->ctx, pool, vol) : served_to(env, pool, vol);
    if (left == 0)
        return 0;
    return op_fail(e, -EBUSY, "%s/%s: %u client(s) still hold it after being disconnected; %s",
                   pool_name(pool), vol, left, what);
}

/* A volume or snapshot was deleted: its LUN is gone, and the persistent reservations kept
 * for it (in the daemon, and in its APTPL file) go too. */
static void volume_gone(const struct op_env *env, struct pool *pool, uint64_t id)
{
    struct pool_stats st;
    CLEANUP_FREE char *pr_dir = iscsi_pr_dir(env->state_dir);
    iscsi_serve_luns_changed();
    pool_stat(pool, &st);
    scsi_pr_drop(pr_dir, st.uuid, id);
}

/* ---------------------------------------------------------------------------------------- */
/* Pools                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* {"pools": [{name, health, members, size, allocated, free, capacity_pct}]} */
static int op_pool_list(const struct op_env *env UNUSED, struct pool *pool,
                        const struct cli_args *a UNUSED, struct json_object **out,
                        struct op_err *e UNUSED)
{
    const uint64_t bs = CS_BLOCK_SIZE;
    struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
    struct pool_stats st;

    pool_stat(pool, &st);
    jadd_str(o, "name", pool_name(pool));
    jadd_str(o, "health", "ONLINE");
    json_object_object_add(o, "members", json_object_new_int((int)st.nmembers));
    jadd_u64(o, "size", st.total_blocks * bs);
    jadd_u64(o, "allocated", st.allocated_blocks * bs);
    jadd_u64(o, "free", st.free_blocks * bs);
    json_object_object_add(o, "capacity_pct",
                           json_object_new_int((int)pct(st.allocated_blocks, st.total_blocks)));
    json_object_array_add(arr, o);
    *out = json_object_new_object();
    json_object_object_add(*out, "pools", arr);
    return 0;
}

static int op_pool_status(const struct op_env *env UNUSED, struct pool *pool,
                          const struct cli_args *a UNUSED, struct json_object **out,
                          struct op_err *e)
{
    const uint64_t bs = CS_BLOCK_SIZE;
    struct json_object *o, *m, *s;
    struct pool_stats st;
    char uuid[UUID_STR_LEN];
    struct totals t = {.pool = pool};
    int r;

    pool_stat(pool, &st);
    uuid_format(st.uuid, uuid);
    r = vol_list(pool, total_vol, &t);
    if (r < 0)
        return op_fail(e, r, "%s: cannot list volumes: %s", pool_name(pool), strerror(-r));

    o = json_object_new_object();
    m = json_object_new_array();
    s = json_object_new_object();
    jadd_str(o, "name", pool_name(pool));
    jadd_str(o, "uuid", uuid);
    jadd_str(o, "health", "ONLINE");
    jadd_u64(o, "generation", st.generation);
    jadd_u64(o, "size", st.total_blocks * bs);
    jadd_u64(o, "allocated", st.allocated_blocks * bs);
    jadd_u64(o, "free", st.free_blocks * bs);
    jadd_u64(o, "pending_free", st.pending_free_blocks * bs);
    jadd_u64(o, "reserve", st.reserve_blocks * bs);
    jadd_u64(o, "cache_bytes", st.cache_bytes);
    jadd_u64(o, "cache_used", st.cache_used_bytes);
    jadd_u64(o, "dirty", st.dirty_bytes);
    json_object_object_add(o, "volumes", json_object_new_int((int)t.volumes));
    json_object_object_add(o, "snapshots", json_object_new_int((int)t.snapshots));
    /* Space as the volumes see it: what they reference (sharing counted in each), what only
     * they hold, and the same for the snapshots. */
    jadd_u64(o, "referenced", t.referenced);
    jadd_u64(o, "unique", t.unique);
    jadd_u64(o, "snapshots_referenced", t.snap_referenced);
    jadd_u64(o, "snapshots_unique", t.snap_unique);
    json_object_object_add(o, "low_space", json_object_new_boolean(st.low_space));
    for (unsigned i = 0; i < st.nmembers; i++) {
        struct pool_member_info mi;
        struct json_object *jm = json_object_new_object();
        pool_member_info(pool, i, &mi);
        jadd_str(jm, "path", mi.path);
        jadd_u64(jm, "size", mi.blocks * bs);
        jadd_u64(jm, "free", mi.free_blocks * bs);
        json_object_array_add(m, jm);
    }
    json_object_object_add(o, "members", m);
    jadd_u64(s, "cache_bytes", st.settings.cache_bytes);
    jadd_u64(s, "dirty_bound", st.settings.dirty_bound_bytes);
    jadd_u64(s, "commit_interval_ms", st.settings.commit_interval_ms);
    jadd_u64(s, "low_space_pct", st.settings.low_space_pct);
    json_object_object_add(o, "settings", s);
    *out = o;
    return 0;
}

/* A check needs a pool with nothing uncommitted; a served pool may be written between our
 * commit and the check, so try a few times. */
#define CHECK_ATTEMPTS 20

/* {"name", "consistent", "errors", "nodes", "data_blocks"}; an inconsistent pool is a
 * result, not a failure of the operation. */
static int op_pool_check(const struct op_env *env UNUSED, struct pool *pool,
                         const struct cli_args *a UNUSED, struct json_object **out,
                         struct op_err *e)
{
    struct pool_check_report rep = {0};
    int r = -EAGAIN;

    for (int i = 0; i < CHECK_ATTEMPTS && r == -EAGAIN; i++) {
        r = pool_commit(pool);
        if (r < 0)
            return op_fail(e, r, "%s: cannot commit before checking: %s", pool_name(pool),
                           strerror(-r));
        r = pool_check(pool, &rep);
    }
    if (r < 0 && r != -EUCLEAN)
        return op_fail(e, r, "%s: check could not complete: %s", pool_name(pool), strerror(-r));
    *out = json_object_new_object();
    jadd_str(*out, "name", pool_name(pool));
    json_object_object_add(*out, "consistent", json_object_new_boolean(r == 0));
    jadd_u64(*out, "errors", rep.errors);
    jadd_u64(*out, "nodes", rep.nodes);
    jadd_u64(*out, "data_blocks", rep.data_blocks);
    return 0;
}

static int op_pool_set(const struct op_env *env UNUSED, struct pool *pool, const struct cli_args *a,
                       struct json_object **out, struct op_err *e)
{
    struct pool_stats st;
    struct pool_settings s;
    struct json_object *js;
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
    if (r < 0)
        return op_fail(e, r, "%s: cannot store the settings: %s", pool_name(pool), strerror(-r));
    *out = json_object_new_object();
    js = json_object_new_object();
    jadd_u64(js, "cache_bytes", s.cache_bytes);
    jadd_u64(js, "dirty_bound", s.dirty_bound_bytes);
    jadd_u64(js, "commit_interval_ms", s.commit_interval_ms);
    jadd_u64(js, "low_space_pct", s.low_space_pct);
    jadd_str(*out, "name", pool_name(pool));
    json_object_object_add(*out, "settings", js);
    return 0;
}

/* Adds the member (an absolute path) to the pool and to its registry entry. */
static int op_pool_add(const struct op_env *env, struct pool *pool, const struct cli_args *a,
                       struct json_object **out, struct op_err *e)
{
    const char *name = pool_name(pool), *member = a->members[0];
    struct pool_entry pe;
    char **nm, *copy;
    int r;

    r = registry_load(env->state_dir, name, &pe);
    if (r < 0)
        return op_fail(e, r, "%s: cannot read the pool's registry entry: %s", name, strerror(-r));
    for (unsigned i = 0; i < pe.nmembers; i++)
        if (strcmp(pe.members[i], member) == 0) {
            pool_entry_clear(&pe);
            return op_fail(e, -EEXIST, "%s: %s is a member already", name, member);
        }

    r = pool_add_member(pool, member, a->force);
    if (r < 0) {
        struct pool_label_info li;
        pool_entry_clear(&pe);
        if (r == -EEXIST && pool_read_label(member, &li) == 0)
            return op_fail(e, r,
                           "member %s belongs to pool %s already: use --force to overwrite it",
                           member, li.pool_name);
        if (r == -EEXIST)
            return op_fail(e, r, "a member belongs to a pool already: use --force to overwrite it");
        return op_fail(e, r, "%s: cannot add member %s: %s", name, member, strerror(-r));
    }

    nm = realloc(pe.members, (pe.nmembers + 1) * sizeof *nm);
    copy = strdup(member);
    if (nm == NULL || copy == NULL) {
        free(copy);
        if (nm != NULL)
            pe.members = nm;
        pool_entry_clear(&pe);
        return op_fail(e, -ENOMEM, "%s: member %s added, but the registry was not updated: %s",
                       name, member, strerror(ENOMEM));
    }
    pe.members = nm;
    pe.members[pe.nmembers++] = copy;
    r = registry_save(env->state_dir, &pe);
    pool_entry_clear(&pe);
    if (r < 0)
        return op_fail(e, r, "%s: member %s added, but the registry was not updated: %s", name,
                       member, strerror(-r));
    *out = json_object_new_object();
    jadd_str(*out, "name", name);
    jadd_str(*out, "member", member);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Volumes                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* A volume's or snapshot's info and space; @point is "VOL" or "VOL@SNAP". The space is left
 * out if it cannot be read (the info alone is still worth showing). */
static struct json_object *vol_json(struct pool *pool, const char *point,
                                    const struct vol_info *vi)
{
    struct json_object *o = json_object_new_object();
    char full[3 * NAME_MAX_LEN + 3];
    struct vol_space sp;

    snprintf(full, sizeof full, "%s/%s", pool_name(pool), point);
    jadd_str(o, "name", full);
    jadd_str(o, "pool", pool_name(pool));
    jadd_str(o, "volume", point);
    jadd_u64(o, "id", vi->id);
    jadd_u64(o, "size", vi->size);
    if (vol_get_space(pool, point, &sp) == 0) {
        jadd_u64(o, "mapped", sp.mapped_bytes);
        jadd_u64(o, "referenced", sp.referenced_bytes);
        jadd_u64(o, "unique", sp.unique_bytes);
        jadd_u64(o, "written", sp.written_bytes);
    }
    jadd_u64(o, "grain", vi->grain_size);
    jadd_u64(o, "created_ns", vi->created_ns);
    if (vi->lun != VOL_NO_LUN)
        jadd_u64(o, "lun", vi->lun);
    return o;
}

/* The volume's info as a result, after a change. */
static int vol_result(struct pool *pool, const char *vol, const struct cli_args *a,
                      struct json_object **out, struct op_err *e)
{
    struct vol_info vi;
    int r = vol_get_info(pool, vol, &vi);

    if (r < 0)
        return op_fail(e, r, "%s/%s: %s", a->obj.pool, vol, vol_error_cause(r));
    *out = vol_json(pool, vol, &vi);
    return 0;
}

static int op_vol_create(const struct op_env *env UNUSED, struct pool *pool,
                         const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    struct vol_info vi;
    int r = vol_create(pool, a->obj.vol, a->size, a->grain, &vi);

    if (r < 0)
        return vol_fail(e, a, r);
    iscsi_serve_luns_changed(); /* a new LUN: iSCSI sessions are told to rescan */
    *out = vol_json(pool, vi.name, &vi);
    return 0;
}

struct list_ctx {
    struct pool *pool;
    struct json_object *arr;
};

static int list_one(void *ctx, const struct vol_info *vi)
{
    struct list_ctx *lc = ctx;

    json_object_array_add(lc->arr, vol_json(lc->pool, vi->name, vi));
    return 0;
}

/* {"volumes": [...]} in name order. */
static int op_vol_list(const struct op_env *env UNUSED, struct pool *pool,
                       const struct cli_args *a UNUSED, struct json_object **out, struct op_err *e)
{
    struct list_ctx lc = {pool, json_object_new_array()};
    int r = vol_list(pool, list_one, &lc);

    if (r < 0) {
        json_object_put(lc.arr);
        return op_fail(e, r, "%s: cannot list volumes: %s", pool_name(pool), strerror(-r));
    }
    *out = json_object_new_object();
    json_object_object_add(*out, "volumes", lc.arr);
    return 0;
}

static int op_vol_info(const struct op_env *env UNUSED, struct pool *pool, const struct cli_args *a,
                       struct json_object **out, struct op_err *e)
{
    char name[2 * NAME_MAX_LEN + 2];
    obj_point(&a->obj, name, sizeof name);
    return vol_result(pool, name, a, out, e);
}

static int op_vol_resize(const struct op_env *env, struct pool *pool, const struct cli_args *a,
                         struct json_object **out, struct op_err *e)
{
    char full[2 * NAME_MAX_LEN + 2], b1[SIZE_BUF], b2[SIZE_BUF];
    struct vol_info vi;
    uint64_t size = a->size;
    unsigned n;
    int r;

    snprintf(full, sizeof full, "%s/%s", a->obj.pool, a->obj.vol);
    r = vol_get_info(pool, a->obj.vol, &vi);
    if (r < 0)
        return vol_fail(e, a, r);
    if (a->size_rel < 0 && a->size >= vi.size)
        return op_fail(e, -EINVAL, "%s: cannot shrink by %s: the volume is %s", full,
                       size_str(a->size, false, b1), size_str(vi.size, false, b2));
    if (a->size_rel > 0 && a->size > VOL_MAX_SIZE - vi.size)
        return op_fail(e, -EFBIG, "%s: cannot grow by %s: larger than the largest volume", full,
                       size_str(a->size, false, b1));
    if (a->size_rel != 0)
        size = a->size_rel > 0 ? vi.size + a->size : vi.size - a->size;

    if (size < vi.size && (n = served_to(env, pool, a->obj.vol)) > 0) {
        if (!a->force)
            return op_fail(e, -EBUSY, "volume %s is served to %u client(s); use --force", full, n);
        /* The volume layer never shrinks a volume under an open handle: a client would go
         * on writing past the new end, into space freed for others. */
        r = evict_clients(env, pool, a->obj.vol, "not shrunk", e);
        if (r < 0)
            return r;
    }
    r = vol_resize(pool, a->obj.vol, size);
    if (r < 0)
        return vol_fail(e, a, r);
    return vol_result(pool, a->obj.vol, a, out, e);
}

static int op_vol_rename(const struct op_env *env UNUSED, struct pool *pool,
                         const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    int r = vol_rename(pool, a->obj.vol, a->new_name);

    if (r == -EEXIST)
        return op_fail(e, r, "%s/%s: a volume of that name exists", a->obj.pool, a->new_name);
    if (r < 0)
        return vol_fail(e, a, r);
    return vol_result(pool, a->new_name, a, out, e);
}

static int op_vol_delete(const struct op_env *env, struct pool *pool, const struct cli_args *a,
                         struct json_object **out, struct op_err *e)
{
    char full[2 * NAME_MAX_LEN + 2];
    unsigned n = served_to(env, pool, a->obj.vol);
    int r;

    snprintf(full, sizeof full, "%s/%s", a->obj.pool, a->obj.vol);
    if (n > 0 && !a->force)
        return op_fail(e, -EBUSY, "volume %s is served to %u client(s); use --force", full, n);
    /* With --force its clients are disconnected first: the volume layer never deletes an
     * open volume, whose clients would read and write freed space. */
    if (n > 0 && (r = evict_clients(env, pool, a->obj.vol, "not deleted", e)) < 0)
        return r;
    struct vol_info vi;
    r = vol_get_info(pool, a->obj.vol, &vi);
    if (r == 0)
        r = vol_delete(pool, a->obj.vol);
    if (r < 0)
        return vol_fail(e, a, r);
    volume_gone(env, pool, vi.id);
    *out = json_object_new_object();
    jadd_str(*out, "name", full);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The table, and arguments to and from JSON                                                 */
/* ---------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------- */
/* Snapshots and clones                                                                      */
/* ---------------------------------------------------------------------------------------- */

static void snap_full(const char *vol, const char *snap, char *buf, size_t len)
{
    snprintf(buf, len, "%s@%s", vol, snap);
}

static int op_snap_create(const struct op_env *env UNUSED, struct pool *pool,
                          const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    struct vol_snap_spec specs[SNAP_MAX_VOLUMES];
    unsigned n = 0;
    specs[n++] = (struct vol_snap_spec){a->obj.vol, a->obj.snap};
    for (unsigned i = 0; i < a->nmore; i++)
        specs[n++] = (struct vol_snap_spec){a->more[i], a->obj.snap};
    int r = vol_snapshot(pool, specs, n);
    if (r == -EEXIST)
        return op_fail(e, r, "%s: a snapshot named %s exists", a->obj.pool, a->obj.snap);
    if (r < 0)
        return op_fail(e, r, "%s/%s@%s: %s", a->obj.pool, a->obj.vol, a->obj.snap,
                       vol_error_cause(r));
    struct json_object *arr = json_object_new_array();
    for (unsigned i = 0; i < n; i++) {
        char full[3 * NAME_MAX_LEN + 3];
        snprintf(full, sizeof full, "%s/%s@%s", a->obj.pool, specs[i].vol, a->obj.snap);
        json_object_array_add(arr, json_object_new_string(full));
    }
    *out = json_object_new_object();
    json_object_object_add(*out, "snapshots", arr);
    return 0;
}

struct snap_list_ctx {
    struct pool *pool;
    const char *vol;
    struct json_object *arr;
};

static int snap_list_one(void *ctx, const struct vol_info *vi)
{
    struct snap_list_ctx *l = ctx;
    char point[2 * NAME_MAX_LEN + 2];
    snap_full(l->vol, vi->name, point, sizeof point);
    struct json_object *o = vol_json(l->pool, point, vi);
    json_object_object_add(o, "volume", json_object_new_string(l->vol));
    json_object_object_add(o, "snapshot", json_object_new_string(vi->name));
    json_object_array_add(l->arr, o);
    return 0;
}

static int op_snap_list(const struct op_env *env UNUSED, struct pool *pool,
                        const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    struct snap_list_ctx l = {pool, a->obj.vol, json_object_new_array()};
    int r = vol_snap_list(pool, a->obj.vol, snap_list_one, &l);
    if (r < 0) {
        json_object_put(l.arr);
        return vol_fail(e, a, r);
    }
    *out = json_object_new_object();
    json_object_object_add(*out, "snapshots", l.arr);
    return 0;
}

static int op_snap_delete(const struct op_env *env, struct pool *pool, const struct cli_args *a,
                          struct json_object **out, struct op_err *e)
{
    char name[2 * NAME_MAX_LEN + 2];
    snap_full(a->obj.vol, a->obj.snap, name, sizeof name);
    unsigned n = served_to(env, pool, name);
    if (n > 0)
        return op_fail(e, -EBUSY, "snapshot %s/%s is served to %u client(s)", a->obj.pool, name,
                       n);
    struct vol_info vi;
    int r = vol_get_info(pool, name, &vi);
    if (r == 0)
        r = vol_delete(pool, name);
    if (r < 0)
        return op_fail(e, r, "%s/%s: %s", a->obj.pool, name, vol_error_cause(r));
    volume_gone(env, pool, vi.id);
    *out = json_object_new_object();
    return 0;
}

static int op_snap_rename(const struct op_env *env UNUSED, struct pool *pool,
                          const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    char from[2 * NAME_MAX_LEN + 2], to[2 * NAME_MAX_LEN + 2];
    snap_full(a->obj.vol, a->obj.snap, from, sizeof from);
    snap_full(a->obj.vol, a->new_name, to, sizeof to);
    int r = vol_rename(pool, from, a->new_name);
    if (r == -EEXIST)
        return op_fail(e, r, "%s/%s: a snapshot of that name exists", a->obj.pool, to);
    if (r < 0)
        return op_fail(e, r, "%s/%s: %s", a->obj.pool, from, vol_error_cause(r));
    return vol_result(pool, to, a, out, e);
}

static int op_snap_rollback(const struct op_env *env, struct pool *pool,
                            const struct cli_args *a, struct json_object **out,
                            struct op_err *e)
{
    char name[2 * NAME_MAX_LEN + 2];
    snap_full(a->obj.vol, a->obj.snap, name, sizeof name);
    unsigned n = served_to(env, pool, a->obj.vol);
    /* Rolling back under a client would change its disk beneath its page cache: only with
     * --force, which disconnects the clients first. */
    if (n > 0 && !a->force)
        return op_fail(e, -EBUSY, "volume %s/%s is served to %u client(s); use --force",
                       a->obj.pool, a->obj.vol, n);
    if (n > 0) {
        int r = evict_clients(env, pool, a->obj.vol, "not rolled back", e);
        if (r < 0)
            return r;
    }
    int r = vol_rollback(pool, name);
    if (r < 0)
        return op_fail(e, r, "%s/%s: %s", a->obj.pool, name, vol_error_cause(r));
    return vol_result(pool, a->obj.vol, a, out, e);
}

static int diff_add(void *ctx, uint64_t off, uint64_t len)
{
    struct json_object *arr = ctx, *last;
    size_t n = json_object_array_length(arr);
    if (n > 0 && (last = json_object_array_get_idx(arr, n - 1)) != NULL &&
        res_u64(last, "offset") + res_u64(last, "length") == off) {
        json_object_object_add(last, "length", json_object_new_uint64(res_u64(last, "length") + len));
        return 0;
    }
    struct json_object *o = json_object_new_object();
    jadd_u64(o, "offset", off);
    jadd_u64(o, "length", len);
    json_object_array_add(arr, o);
    return 0;
}

static int op_snap_diff(const struct op_env *env UNUSED, struct pool *pool,
                        const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    char from[2 * NAME_MAX_LEN + 2], to[2 * NAME_MAX_LEN + 2];
    snap_full(a->obj.vol, a->obj.snap, from, sizeof from);
    if (a->to[0])
        snap_full(a->obj.vol, a->to, to, sizeof to);
    else
        snprintf(to, sizeof to, "%s", a->obj.vol);
    struct json_object *arr = json_object_new_array();
    int r = vol_diff(pool, from, to, diff_add, arr);
    if (r < 0) {
        json_object_put(arr);
        return op_fail(e, r, "%s/%s: %s", a->obj.pool, from, vol_error_cause(r));
    }
    *out = json_object_new_object();
    json_object_object_add(*out, "ranges", arr);
    return 0;
}

static int op_clone(const struct op_env *env UNUSED, struct pool *pool, const struct cli_args *a,
                    struct json_object **out, struct op_err *e)
{
    char name[2 * NAME_MAX_LEN + 2];
    snap_full(a->obj.vol, a->obj.snap, name, sizeof name);
    int r = vol_clone(pool, name, a->new_name);
    if (r == -EEXIST)
        return op_fail(e, r, "%s/%s: a volume of that name exists", a->obj.pool, a->new_name);
    if (r < 0)
        return op_fail(e, r, "%s/%s: %s", a->obj.pool, name, vol_error_cause(r));
    return vol_result(pool, a->new_name, a, out, e);
}

static const struct op ops[] = {
    {"pool.list", 0, ARG_POOL, OP_EACH_POOL, "pools", op_pool_list},
    {"pool.status", ARG_POOL, 0, 0, NULL, op_pool_status},
    {"pool.check", ARG_POOL, 0, 0, NULL, op_pool_check},
    {"pool.set", ARG_POOL | ARG_SETTINGS, 0, 0, NULL, op_pool_set},
    {"pool.add", ARG_POOL | ARG_MEMBER, ARG_FORCE, 0, NULL, op_pool_add},
    {"vol.create", ARG_POOL | ARG_VOLUME | ARG_SIZE, ARG_GRAIN, 0, NULL, op_vol_create},
    {"vol.list", 0, ARG_POOL, OP_EACH_POOL, "volumes", op_vol_list},
    {"vol.info", ARG_POOL | ARG_VOLUME, ARG_SNAP, 0, NULL, op_vol_info},
    {"vol.resize", ARG_POOL | ARG_VOLUME, ARG_SIZE | ARG_DELTA | ARG_FORCE, 0, NULL, op_vol_resize},
    {"vol.rename", ARG_POOL | ARG_VOLUME | ARG_NEW_NAME, 0, 0, NULL, op_vol_rename},
    {"vol.delete", ARG_POOL | ARG_VOLUME, ARG_FORCE, 0, NULL, op_vol_delete},
    {"snap.create", ARG_POOL | ARG_VOLUME | ARG_SNAP, ARG_VOLUMES, 0, NULL, op_snap_create},
    {"snap.list", ARG_POOL | ARG_VOLUME, 0, 0, NULL, op_snap_list},
    {"snap.delete", ARG_POOL | ARG_VOLUME | ARG_SNAP, 0, 0, NULL, op_snap_delete},
    {"snap.rename", ARG_POOL | ARG_VOLUME | ARG_SNAP | ARG_NEW_NAME, 0, 0, NULL, op_snap_rename},
    {"snap.rollback", ARG_POOL | ARG_VOLUME | ARG_SNAP, ARG_FORCE, 0, NULL, op_snap_rollback},
    {"snap.diff", ARG_POOL | ARG_VOLUME | ARG_SNAP, ARG_TO, 0, NULL, op_snap_diff},
    {"clone", ARG_POOL | ARG_VOLUME | ARG_SNAP | ARG_NEW_NAME, 0, 0, NULL, op_clone},
};

const struct op *op_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    for (size_t i = 0; i < iscsi_nops; i++) /* cmd_iscsi.c */
        if (strcmp(iscsi_ops[i].name, name) == 0)
            return &iscsi_ops[i];
    return NULL;
}

static const struct {
    unsigned bit;
    const char *key;
} arg_keys[] = {
    {ARG_POOL, "pool"},         {ARG_VOLUME, "volume"}, {ARG_SIZE, "size"},
    {ARG_DELTA, "delta"},       {ARG_GRAIN, "grain"},   {ARG_FORCE, "force"},
    {ARG_NEW_NAME, "new_name"}, {ARG_MEMBER, "member"}, {ARG_SETTINGS, "settings"},
    {ARG_SNAP, "snap"},         {ARG_TO, "to"},         {ARG_VOLUMES, "volumes"},
    {ARG_ISCSI, "iscsi"},
};

static int arg_name_field(struct json_object *v, const char *key, char *dst, size_t dstlen,
                          struct op_err *e)
{
    const char *s, *why = NULL;

    if (!json_object_is_type(v, json_type_string))
        return op_fail(e, -EINVAL, "argument '%s': expected a string", key);
    s = json_object_get_string(v);
    if (name_check(s, &why) < 0)
        return op_fail(e, -EINVAL, "argument '%s': invalid name '%.64s': %s", key, s,
                       why != NULL ? why : "not a valid name");
    snprintf(dst, dstlen, "%s", s);
    return 0;
}

/* An integer argument as int64 (json-c keeps integers past INT64_MAX as uint64, which
 * get_int64 clamps to INT64_MAX: every bound here is far below). */
static int arg_int(struct json_object *v, const char *key, int64_t *out, struct op_err *e)
{
    if (!json_object_is_type(v, json_type_int))
        return op_fail(e, -EINVAL, "argument '%s': expected an integer", key);
    *out = json_object_get_int64(v);
    return 0;
}

static int decode_settings(struct json_object *v, struct cli_args *a, struct op_err *e)
{
    if (!json_object_is_type(v, json_type_object))
        return op_fail(e, -EINVAL, "argument 'settings': expected an object");
    json_object_object_foreach(v, key, val)
    {
        int id = setting_lookup(key, strlen(key));
        int64_t n = 0;
        const char *why;

        if (id < 0)
            return op_fail(e, -EINVAL,
                           "settings: '%.64s': unknown setting (known: cache_bytes, "
                           "dirty_bound, commit_interval_ms, low_space_pct)",
                           key);
        if (a->nsettings == SETTINGS_MAX)
            return op_fail(e, -EINVAL, "settings: at most %d at once", SETTINGS_MAX);
        if (arg_int(val, key, &n, e) < 0)
            return e->err;
        if (n < 0 || (why = setting_check(id, (uint64_t)n)) != NULL)
            return op_fail(e, -EINVAL, "settings: %s: %" PRId64 " is out of range (%s)", key, n,
                           n < 0 ? "negative" : why);
        a->settings[a->nsettings].key = id;
        a->settings[a->nsettings].value = (uint64_t)n;
        a->nsettings++;
    }
    if (a->nsettings == 0)
        return op_fail(e, -EINVAL, "settings: nothing to set");
    return 0;
}

int op_args_decode(const struct op *op, struct json_object *args, struct cli_args *a,
                   struct op_err *e)
{
    unsigned seen = 0;
    int64_t n = 0;
    const char *why;

    memset(a, 0, sizeof *a);
    a->grain = VOL_DEFAULT_GRAIN;
    if (args != NULL && !json_object_is_type(args, json_type_object))
        return op_fail(e, -EINVAL, "\"args\" must be an object");

    if (args != NULL) {
        json_object_object_foreach(args, key, v)
        {
            unsigned bit = 0;
            for (size_t i = 0; i < ARRAY_SIZE(arg_keys); i++)
                if (strcmp(arg_keys[i].key, key) == 0)
                    bit = arg_keys[i].bit;
            if (bit == 0 || !((op->required | op->optional) & bit))
                return op_fail(e, -EINVAL, "%s: unknown argument '%.64s'", op->name, key);
            seen |= bit;
            switch (bit) {
            case ARG_POOL:
                if (arg_name_field(v, key, a->obj.pool, sizeof a->obj.pool, e) < 0)
                    return e->err;
                break;
            case ARG_VOLUME:
                if (arg_name_field(v, key, a->obj.vol, sizeof a->obj.vol, e) < 0)
                    return e->err;
                break;
            case ARG_NEW_NAME:
                if (arg_name_field(v, key, a->new_name, sizeof a->new_name, e) < 0)
                    return e->err;
                break;
            case ARG_SNAP:
                if (arg_name_field(v, key, a->obj.snap, sizeof a->obj.snap, e) < 0)
                    return e->err;
                break;
            case ARG_TO:
                if (arg_name_field(v, key, a->to, sizeof a->to, e) < 0)
                    return e->err;
                break;
            case ARG_VOLUMES:
                if (!json_object_is_type(v, json_type_array) ||
                    json_object_array_length(v) > SNAP_MAX_VOLUMES - 1)
                    return op_fail(e, -EINVAL, "argument 'volumes': expected an array of at "
                                               "most %u names",
                                   SNAP_MAX_VOLUMES - 1);
                a->nmore = (unsigned)json_object_array_length(v);
                for (unsigned i = 0; i < a->nmore; i++)
                    if (arg_name_field(json_object_array_get_idx(v, i), key, a->more[i],
                                       sizeof a->more[i], e) < 0)
                        return e->err;
                break;
            case ARG_SIZE:
                if (arg_int(v, key, &n, e) < 0)
                    return e->err;
                if (n <= 0 || (why = vol_size_problem((uint64_t)n)) != NULL)
                    return op_fail(e, -EINVAL, "argument 'size': %" PRId64 ": %s", n,
                                   n <= 0 ? "not a positive size" : why);
                a->size = (uint64_t)n;
                break;
            case ARG_DELTA:
                if (arg_int(v, key, &n, e) < 0)
                    return e->err;
                if (n == 0 || n == INT64_MIN || (uint64_t)(n < 0 ? -n : n) > VOL_MAX_SIZE ||
                    n % CS_BLOCK_SIZE != 0)
                    return op_fail(e, -EINVAL,
                                   "argument 'delta': %" PRId64
                                   " is not a non-zero multiple of 4K within 1E",
                                   n);
                a->size = (uint64_t)(n < 0 ? -n : n);
                a->size_rel = n < 0 ? -1 : 1;
                break;
            case ARG_GRAIN:
                if (arg_int(v, key, &n, e) < 0)
                    return e->err;
                if (n < VOL_MIN_GRAIN || n > VOL_MAX_GRAIN || !IS_POW2((uint64_t)n))
                    return op_fail(
                        e, -EINVAL,
                        "argument 'grain': %" PRId64 " is not a power of two from 4K to 1M", n);
                a->grain = (uint32_t)n;
                break;
            case ARG_FORCE:
                if (!json_object_is_type(v, json_type_boolean))
                    return op_fail(e, -EINVAL, "argument 'force': expected true or false");
                a->force = json_object_get_boolean(v);
                break;
            case ARG_MEMBER:
                if (!json_object_is_type(v, json_type_string) ||
                    json_object_get_string(v)[0] != '/')
                    return op_fail(e, -EINVAL, "argument 'member': expected an absolute path");
                a->member = json_object_get_string(v);
                a->members = &a->member;
                a->nmembers = 1;
                break;
            case ARG_SETTINGS:
                if (decode_settings(v, a, e) < 0)
                    return e->err;
                break;
            case ARG_ISCSI: /* checked key by key by the iscsi.* operation */
                if (!json_object_is_type(v, json_type_object))
                    return op_fail(e, -EINVAL, "argument 'iscsi': expected an object");
                a->iscsi = v;
                break;
            }
        }
    }

    for (size_t i = 0; i < ARRAY_SIZE(arg_keys); i++)
        if ((op->required & arg_keys[i].bit) && !(seen & arg_keys[i].bit))
            return op_fail(e, -EINVAL, "%s: missing argument '%s'", op->name, arg_keys[i].key);
    if (strcmp(op->name, "vol.resize") == 0 && !(seen & ARG_SIZE) == !(seen & ARG_DELTA))
        return op_fail(e, -EINVAL, "vol.resize: give one of 'size' and 'delta'");
    return 0;
}

struct json_object *op_args_encode(const struct op *op, const struct cli_args *a)
{
    struct json_object *o = json_object_new_object();
    unsigned want = op->required | op->optional;

    if ((want & ARG_POOL) && a->obj.pool[0] != '\0')
        jadd_str(o, "pool", a->obj.pool);
    if ((want & ARG_VOLUME) && a->obj.vol[0] != '\0')
        jadd_str(o, "volume", a->obj.vol);
    if ((want & ARG_SIZE) && a->size_rel == 0 && a->size != 0)
        jadd_u64(o, "size", a->size);
    if ((want & ARG_DELTA) && a->size_rel != 0)
        json_object_object_add(
            o, "delta",
            json_object_new_int64(a->size_rel < 0 ? -(int64_t)a->size : (int64_t)a->size));
    if ((want & ARG_GRAIN) && a->grain != 0)
        jadd_u64(o, "grain", a->grain);
    if ((want & ARG_FORCE) && a->force)
        json_object_object_add(o, "force", json_object_new_boolean(true));
    if ((want & ARG_NEW_NAME) && a->new_name[0] != '\0')
        jadd_str(o, "new_name", a->new_name);
    if ((want & ARG_SNAP) && a->obj.snap[0] != '\0')
        jadd_str(o, "snap", a->obj.snap);
    if ((want & ARG_TO) && a->to[0] != '\0')
        jadd_str(o, "to", a->to);
    if ((want & ARG_VOLUMES) && a->nmore > 0) {
        struct json_object *arr = json_object_new_array();
        for (unsigned i = 0; i < a->nmore; i++)
            json_object_array_add(arr, json_object_new_string(a->more[i]));
        json_object_object_add(o, "volumes", arr);
    }
    if ((want & ARG_MEMBER) && a->nmembers > 0)
        jadd_str(o, "member", a->members[0]);
    if ((want & ARG_ISCSI) && a->iscsi != NULL)
        json_object_object_add(o, "iscsi", json_object_get(a->iscsi));
    if ((want & ARG_SETTINGS) && a->nsettings > 0) {
        struct json_object *s = json_object_new_object();
        for (unsigned i = 0; i < a->nsettings; i++)
            jadd_u64(s, setting_name(a->settings[i].key), a->settings[i].value);
        json_object_object_add(o, "settings", s);
    }
    return o;
}

int op_call_err(const struct cli *cli, const struct target *t, const char *name,
                const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    const struct op *op = op_find(name);

    *out = NULL;
    e->err = 0;
    e->msg[0] = '\0';
    if (op == NULL)
        abort(); /* a command names an operation that does not exist */
    if (t->ctl != NULL)
        return ctl_call(t->ctl, op->name, op_args_encode(op, a), out, e);

    struct op_env env = {.state_dir = cli->state_dir};
    return op->run(&env, t->pool, a, out, e);
}

int op_call(const struct cli *cli, const struct target *t, const char *name,
            const struct cli_args *a, struct json_object **out)
{
    struct op_err e;
    int r = op_call_err(cli, t, name, a, out, &e);

    if (r < 0)
        log_err("%s", e.msg);
    return r;
}
