/*
 * serve_iscsi.c - the daemon's iSCSI target: `cistern serve --iscsi [ADDR:PORT]`.
 *
 * Targets and LUNs
 *   Each open pool is a target named iqn.2026-11.org.cistern:POOL; each volume or snapshot
 *   that has a LUN in the catalog (vol_info.lun; a volume gets one when created, a snapshot
 *   when given one with `cistern iscsi lun set`) is that LUN. Lookups read the catalog each
 *   time, so a volume created later is reachable at once; `iscsi lun set` and `clear` make
 *   sessions look their LUNs up again (iscsi_serve_luns_changed).
 *
 * Authentication
 *   From the configuration (iscsi-auth, iscsi-chap-user, iscsi-chap-secret,
 *   iscsi-mutual-user, iscsi-mutual-secret, iscsi-initiators) for every target and the
 *   discovery service, overridden per target by STATE_DIR/iscsi.json (`cistern iscsi auth`,
 *   `cistern iscsi initiator`), which is read again at each login so that changes apply to
 *   the next login. CHAP is required unless the effective auth setting is "none" (a
 *   target with a CHAP secret of its own requires CHAP unless it says auth=none itself);
 *   with neither a secret nor "none", logins are refused (and the log says why). An empty
 *   list of initiators allows any initiator.
 *
 * Served volumes
 *   The logical units' volume handles are counted by pool and record id, like the NBD
 *   connections in cmd_serve.c (a rename changes nothing), so that vol delete and shrinking
 *   resize refuse a volume in use.
 *
 * Threads
 *   login, list and luns run on reactor threads, lun_resolve, lun_open and lun_close on the
 *   target's service thread; the catalog calls take the pool's locks themselves, and the
 *   table of open handles has its own mutex.
 */
#include "cli/cli.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "iscsi-target/iscsi-target.h"

#define SERVE_DEFAULT_ISCSI "127.0.0.1:3260"

struct iscsi_serve {
    const struct cli *cli;
    struct pool *const *pools;
    size_t npools;
    bool readonly;
    struct iscsi_serve_opts o;
    struct iscsi_server *srv;

    pthread_mutex_t mu;
    struct open_lu {
        struct vol *v;
        bool closing;
        struct pool *pool;
        uint64_t id; /* the record opened: what the served counts go by */
        char name[2 * NAME_MAX_LEN + 2];
    } *open;
    size_t nopen, capopen;
};

static struct iscsi_serve *g_serve; /* for iscsi_serve_luns_changed (ops.c has no handle) */

/* ---------------------------------------------------------------------------------------- */
/* Options                                                                                   */
/* ---------------------------------------------------------------------------------------- */

int iscsi_serve_config_key(struct iscsi_serve_opts *o, const char *key, const char *val)
{
    if (strcmp(key, "iscsi") == 0)
        o->listen = val;
    else if (strcmp(key, "iscsi-auth") == 0) {
        if (strcmp(val, "chap") != 0 && strcmp(val, "none") != 0)
            return -1;
        o->auth = val;
    } else if (strcmp(key, "iscsi-physical-block") == 0) {
        if (strcmp(val, "logical") != 0 && strcmp(val, "grain") != 0)
            return -1;
        o->physical_block = val;
    } else if (strcmp(key, "iscsi-chap-user") == 0)
        o->chap_user = val;
    else if (strcmp(key, "iscsi-chap-secret") == 0)
        o->chap_secret = val;
    else if (strcmp(key, "iscsi-mutual-user") == 0)
        o->mutual_user = val;
    else if (strcmp(key, "iscsi-mutual-secret") == 0)
        o->mutual_secret = val;
    else if (strcmp(key, "iscsi-initiators") == 0)
        o->initiators = val;
    else if (strcmp(key, "iscsi-nop-interval") == 0 || strcmp(key, "iscsi-nop-timeout") == 0) {
        char *end;
        long n = strtol(val, &end, 10);
        if (*end || n < 1 || n > 3600)
            return -1;
        if (key[10] == 'i')
            o->nop_interval = val;
        else
            o->nop_timeout = val;
    } else
        return 0;
    if (strlen(val) > ISCSI_CHAP_MAX)
        return -1;
    return 1;
}

void iscsi_serve_opts_merge(struct iscsi_serve_opts *o, const struct iscsi_serve_opts *file)
{
#define TAKE(f)                                                                                    \
    do {                                                                                           \
        if (o->f == NULL)                                                                          \
            o->f = file->f;                                                                        \
    } while (0)
    TAKE(listen);
    TAKE(auth);
    TAKE(chap_user);
    TAKE(chap_secret);
    TAKE(mutual_user);
    TAKE(mutual_secret);
    TAKE(initiators);
    TAKE(nop_interval);
    TAKE(nop_timeout);
    TAKE(physical_block);
#undef TAKE
}

const char *iscsi_serve_listen(const struct iscsi_serve_opts *o)
{
    if (o->listen == NULL || strcmp(o->listen, "none") == 0 || strcmp(o->listen, "no") == 0 ||
        strcmp(o->listen, "off") == 0)
        return NULL;
    if (strcmp(o->listen, "yes") == 0 || strcmp(o->listen, "on") == 0 ||
        strcmp(o->listen, "default") == 0)
        return SERVE_DEFAULT_ISCSI;
    return o->listen;
}

/* ---------------------------------------------------------------------------------------- */
/* Targets                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static struct pool *target_pool(struct iscsi_serve *s, const char *iqn)
{
    size_t pl = strlen(ISCSI_IQN_PREFIX);
    if (iqn == NULL || strncasecmp(iqn, ISCSI_IQN_PREFIX, pl) != 0)
        return NULL;
    for (size_t i = 0; i < s->npools; i++)
        if (strcasecmp(pool_name(s->pools[i]), iqn + pl) == 0)
            return s->pools[i];
    return NULL;
}

static bool in_list(const char *list, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        if ((size_t)(e - p) == nl && strncasecmp(p, name, nl) == 0)
            return true;
        p = e;
    }
    return false;
}

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

/* The effective settings of target POOL (NULL: discovery) for @initiator. */
static int effective_auth(struct iscsi_serve *s, const char *pool, const char *initiator,
                          struct iscsi_auth *auth)
{
    struct json_object *conf = NULL, *targets, *t = NULL, *v;
    const struct iscsi_serve_opts *o = &s->o;
    bool allowed;

    memset(auth, 0, sizeof *auth);
    auth->allow_none = o->auth != NULL && strcmp(o->auth, "none") == 0;
    copy_str(auth->user, sizeof auth->user, o->chap_user);
    copy_str(auth->secret, sizeof auth->secret, o->chap_secret);
    copy_str(auth->mutual_user, sizeof auth->mutual_user, o->mutual_user);
    copy_str(auth->mutual_secret, sizeof auth->mutual_secret, o->mutual_secret);
    allowed = o->initiators == NULL || *o->initiators == '\0' || in_list(o->initiators, initiator);

    if (pool != NULL && iscsi_conf_load(s->cli->state_dir, &conf) == 0 &&
        json_object_object_get_ex(conf, "targets", &targets) &&
        json_object_object_get_ex(targets, pool, &t) && json_object_is_type(t, json_type_object)) {
        /* A target with a CHAP secret of its own requires CHAP, unless it says auth=none
         * itself: the daemon's "none" is for targets without settings. */
        if (json_object_object_get_ex(t, "chap_secret", &v))
            auth->allow_none = false;
        if (json_object_object_get_ex(t, "auth", &v)) {
            const char *a = json_object_get_string(v);
            if (strcmp(a, "none") == 0)
                auth->allow_none = true;
            else if (strcmp(a, "chap") == 0)
                auth->allow_none = false;
        }
        if (json_object_object_get_ex(t, "chap_user", &v))
            copy_str(auth->user, sizeof auth->user, json_object_get_string(v));
        if (json_object_object_get_ex(t, "chap_secret", &v))
            copy_str(auth->secret, sizeof auth->secret, json_object_get_string(v));
        if (json_object_object_get_ex(t, "mutual_user", &v))
            copy_str(auth->mutual_user, sizeof auth->mutual_user, json_object_get_string(v));
        if (json_object_object_get_ex(t, "mutual_secret", &v))
            copy_str(auth->mutual_secret, sizeof auth->mutual_secret, json_object_get_string(v));
        if (json_object_object_get_ex(t, "initiators", &v) &&
            json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0) {
            allowed = false;
            for (size_t i = 0; i < json_object_array_length(v); i++)
                if (strcasecmp(json_object_get_string(json_object_array_get_idx(v, i)),
                               initiator) == 0)
                    allowed = true;
        }
    }
    json_object_put(conf);
    if (!allowed)
        return -EACCES;
    if (!auth->allow_none && auth->secret[0] == '\0')
        log_warn("iscsi: %s%s requires CHAP but has no CHAP secret: set one (cistern iscsi auth "
                 "set) or allow logins without (iscsi-auth = none)",
                 pool ? "target of pool " : "the discovery service", pool ? pool : "");
    return 0;
}

static int t_login(void *ctx, const char *iqn, const char *initiator, struct iscsi_auth *auth)
{
    struct iscsi_serve *s = ctx;
    if (iqn == NULL)
        return effective_auth(s, NULL, initiator, auth);
    struct pool *pool = target_pool(s, iqn);
    if (pool == NULL)
        return -ENOENT;
    return effective_auth(s, pool_name(pool), initiator, auth);
}

static int t_list(void *ctx, const char *initiator, int (*fn)(void *c, const char *iqn), void *c)
{
    struct iscsi_serve *s = ctx;
    for (size_t i = 0; i < s->npools; i++) {
        struct iscsi_auth auth;
        char iqn[ISCSI_NAME_MAX + 1];
        if (effective_auth(s, pool_name(s->pools[i]), initiator, &auth) < 0)
            continue; /* not shown to initiators that may not log in */
        snprintf(iqn, sizeof iqn, "%s%s", ISCSI_IQN_PREFIX, pool_name(s->pools[i]));
        int r = fn(c, iqn);
        if (r != 0)
            return r;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* LUNs: a walk over the volumes and their snapshots                                         */
/* ---------------------------------------------------------------------------------------- */

struct lun_walk {
    struct pool *pool;
    uint32_t want;        /* find this LUN (VOL_NO_LUN: collect all) */
    uint64_t *luns;       /* collect: up to max */
    size_t max, n;
    bool found;
    char name[2 * NAME_MAX_LEN + 2]; /* VOL or VOL@SNAP */
    uint64_t id;
    bool snap;
    const char *vol;      /* while walking a volume's snapshots */
};

static int walk_one(struct lun_walk *w, const struct vol_info *vi, bool snap)
{
    if (vi->lun == VOL_NO_LUN)
        return 0;
    if (w->want == VOL_NO_LUN) {
        if (w->n < w->max)
            w->luns[w->n] = vi->lun;
        w->n++;
        return 0;
    }
    if (vi->lun != w->want)
        return 0;
    w->found = true;
    w->id = vi->id;
    w->snap = snap;
    if (snap)
        snprintf(w->name, sizeof w->name, "%s@%s", w->vol, vi->name);
    else
        snprintf(w->name, sizeof w->name, "%s", vi->name);
    return 1;
}

static int walk_snap(void *ctx, const struct vol_info *vi)
{
    return walk_one(ctx, vi, true);
}

static int walk_vol(void *ctx, const struct vol_info *vi)
{
    struct lun_walk *w = ctx;
    int r = walk_one(w, vi, false);
    if (r != 0)
        return r;
    w->vol = vi->name;
    r = vol_snap_list(w->pool, vi->name, walk_snap, w);
    w->vol = NULL;
    return r < 0 ? 0 : r;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t t_luns(void *ctx, const char *iqn, uint64_t *luns, size_t max)
{
    struct iscsi_serve *s = ctx;
    struct pool *pool = target_pool(s, iqn);
    if (pool == NULL)
        return 0;
    /* Collect everything, sort, then hand out the first @max. */
    struct lun_walk w = {.pool = pool, .want = VOL_NO_LUN};
    vol_list(pool, walk_vol, &w);
    size_t total = w.n;
    uint64_t *all = calloc(total ? total : 1, sizeof *all);
    if (all == NULL)
        return 0;
    w = (struct lun_walk){.pool = pool, .want = VOL_NO_LUN, .luns = all, .max = total};
    vol_list(pool, walk_vol, &w);
    total = MIN(total, w.n);
    qsort(all, total, sizeof *all, cmp_u64);
    memcpy(luns, all, MIN(total, max) * sizeof *all);
    free(all);
    return total;
}

static int find_lun(struct iscsi_serve *s, const char *iqn, uint64_t lun, struct lun_walk *w)
{
    struct pool *pool = target_pool(s, iqn);
    if (pool == NULL || lun > VOL_MAX_LUN)
        return -ENOENT;
    *w = (struct lun_walk){.pool = pool, .want = (uint32_t)lun};
    vol_list(pool, walk_vol, w);
    return w->found ? 0 : -ENOENT;
}

static int t_lun_resolve(void *ctx, const char *iqn, uint64_t lun, uint8_t pool_uuid[16],
                         uint64_t *vol_id)
{
    struct iscsi_serve *s = ctx;
    struct lun_walk w;
    struct pool_stats st;
    int r = find_lun(s, iqn, lun, &w);
    if (r < 0)
        return r;
    pool_stat(w.pool, &st);
    memcpy(pool_uuid, st.uuid, 16);
    *vol_id = w.id;
    return 0;
}

static int t_lun_open(void *ctx, const char *iqn, uint64_t lun, struct iscsi_lu_info *out)
{
    struct iscsi_serve *s = ctx;
    struct lun_walk w;
    struct pool_stats st;
    struct vol *v;
    int r = find_lun(s, iqn, lun, &w);
    if (r < 0)
        return r;
    bool ro = s->readonly || w.snap;
    r = vol_open(w.pool, w.name, ro ? VOL_OPEN_RDONLY : 0, &v);
    if (r < 0)
        return r;
    pthread_mutex_lock(&s->mu);
    if (s->nopen == s->capopen) {
        size_t cap = s->capopen ? s->capopen * 2 : 16;
        struct open_lu *p = realloc(s->open, cap * sizeof *p);
        if (p == NULL) {
            pthread_mutex_unlock(&s->mu);
            vol_close(v);
            return -ENOMEM;
        }
        s->open = p;
        s->capopen = cap;
    }
    s->open[s->nopen] = (struct open_lu){.v = v, .pool = w.pool, .id = w.id};
    snprintf(s->open[s->nopen].name, sizeof s->open[0].name, "%s", w.name);
    s->nopen++;
    pthread_mutex_unlock(&s->mu);
    pool_stat(w.pool, &st);
    out->vol = v;
    out->readonly = ro;
    out->grain_physical = s->o.physical_block && strcmp(s->o.physical_block, "grain") == 0;
    memcpy(out->pool_uuid, st.uuid, 16);
    out->vol_id = w.id;
    snprintf(out->name, sizeof out->name, "%s/%s", pool_name(w.pool), w.name);
    return 0;
}

static void t_lun_close(void *ctx, struct vol *v)
{
    struct iscsi_serve *s = ctx;
    char name[2 * NAME_MAX_LEN + 2] = "";
    struct pool *pool = NULL;

    /* Counted as served until closed; the mutex is not held across vol_close. */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nopen; i++)
        if (s->open[i].v == v) {
            s->open[i].closing = true;
            pool = s->open[i].pool;
            memcpy(name, s->open[i].name, sizeof name);
            break;
        }
    pthread_mutex_unlock(&s->mu);
    int r = vol_close(v);
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nopen; i++)
        if (s->open[i].v == v && s->open[i].closing) {
            s->open[i] = s->open[--s->nopen];
            break;
        }
    pthread_mutex_unlock(&s->mu);
    if (r < 0 && pool != NULL)
        log_err("%s/%s: closing the volume failed: %s", pool_name(pool), name, strerror(-r));
}

unsigned iscsi_serve_clients(struct iscsi_serve *s, struct pool *pool, uint64_t id)
{
    unsigned n = 0;
    if (s == NULL)
        return 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nopen; i++)
        n += s->open[i].pool == pool && s->open[i].id == id;
    pthread_mutex_unlock(&s->mu);
    return n;
}

unsigned iscsi_serve_evict(struct iscsi_serve *s, struct pool *pool, uint64_t id)
{
    struct pool_stats st;
    if (s == NULL)
        return 0;
    pool_stat(pool, &st);
    iscsi_server_evict(s->srv, st.uuid, id);
    /* The sessions finish their commands, end, and their LUs close: bounded wait. */
    for (int i = 0; i < 300 && iscsi_serve_clients(s, pool, id) > 0; i++)
        usleep(100 * 1000);
    iscsi_server_evict_end(s->srv, st.uuid, id);
    return iscsi_serve_clients(s, pool, id);
}

void iscsi_serve_luns_changed(void)
{
    struct iscsi_serve *s = __atomic_load_n(&g_serve, __ATOMIC_ACQUIRE);
    if (s != NULL)
        iscsi_server_luns_changed(s->srv);
}

/* ---------------------------------------------------------------------------------------- */
/* Start and stop                                                                            */
/* ---------------------------------------------------------------------------------------- */

char *iscsi_pr_dir(const char *state_dir)
{
    char *dir;
    if (state_dir == NULL || asprintf(&dir, "%s/iscsi-pr", state_dir) < 0)
        return NULL;
    return dir;
}

int iscsi_serve_start(const struct cli *cli, struct pool *const *pools, size_t npools,
                      bool readonly, const struct iscsi_serve_opts *o, struct iscsi_serve **out)
{
    static const struct iscsi_targets targets = {
        .login = t_login,
        .list = t_list,
        .luns = t_luns,
        .lun_resolve = t_lun_resolve,
        .lun_open = t_lun_open,
        .lun_close = t_lun_close,
    };
    CLEANUP_FREE char *pr_dir = iscsi_pr_dir(cli->state_dir);
    if (pr_dir == NULL)
        return -ENOMEM;
    struct iscsi_config cfg = {
        .listen = iscsi_serve_listen(o),
        .pr_dir = pr_dir,
        .nop_interval_s = o->nop_interval ? (unsigned)atoi(o->nop_interval) : 0,
        .nop_timeout_s = o->nop_timeout ? (unsigned)atoi(o->nop_timeout) : 0,
    };
    struct iscsi_serve *s = calloc(1, sizeof *s);
    int r;

    *out = NULL;
    if (s == NULL)
        return -ENOMEM;
    s->cli = cli;
    s->pools = pools;
    s->npools = npools;
    s->readonly = readonly;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    r = iscsi_server_start(&cfg, &targets, s, &s->srv);
    if (r < 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return r;
    }
    if (s->o.auth == NULL || strcmp(s->o.auth, "none") != 0) {
        if (s->o.chap_secret == NULL)
            log_info("iscsi: CHAP is required and no default secret is configured: targets "
                     "without their own (cistern iscsi auth set) refuse logins");
    }
    __atomic_store_n(&g_serve, s, __ATOMIC_RELEASE);
    *out = s;
    return 0;
}

void iscsi_serve_stop(struct iscsi_serve *s)
{
    if (s == NULL)
        return;
    __atomic_store_n(&g_serve, NULL, __ATOMIC_RELEASE);
    iscsi_server_stop(s->srv);
    pthread_mutex_destroy(&s->mu);
    free(s->open);
    free(s);
}
