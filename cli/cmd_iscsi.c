/*
 * cmd_iscsi.c - `cistern iscsi ...`: the iSCSI side of a pool. Its target's LUNs (stored with
 * the volumes in the catalog), how initiators authenticate to it, and which initiators may
 * log in (STATE_DIR/iscsi.json). Each command is an operation (iscsi.show, iscsi.lun,
 * iscsi.auth, iscsi.initiator), run here or by the daemon that holds the pool, whose target
 * applies the settings at the next login and the LUNs at the next command.
 *
 *     cistern iscsi show POOL [--json]
 *     cistern iscsi lun set POOL/VOL[@SNAP] N
 *     cistern iscsi lun clear POOL/VOL[@SNAP]
 *     cistern iscsi auth set POOL [auth=chap|none] [user=U secret=S]
 *                                 [mutual-user=U mutual-secret=S]
 *     cistern iscsi auth clear POOL
 *     cistern iscsi initiator allow|deny POOL IQN
 *
 * The settings object of an operation ("iscsi" in its arguments) is untrusted when it comes
 * through the control socket: every key, type and length is checked here.
 */
#include "cli/cli.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_MAX (1u << 20)
#define CHAP_MAX 255
#define IQN_MAX 223
#define MAX_INITIATORS 256

/* ---------------------------------------------------------------------------------------- */
/* STATE_DIR/iscsi.json                                                                      */
/* ---------------------------------------------------------------------------------------- */

int iscsi_conf_load(const char *state_dir, struct json_object **out)
{
    char *path = NULL, *buf = NULL;
    size_t len = 0;
    ssize_t n;
    int fd, r = 0;

    *out = NULL;
    if (asprintf(&path, "%s/%s", state_dir, ISCSI_CONF_FILE) < 0)
        return -ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = errno == ENOENT ? 0 : -errno;
        free(path);
        if (r == 0)
            *out = json_object_new_object();
        return r;
    }
    buf = malloc(CONF_MAX + 1);
    while (buf != NULL && (n = read(fd, buf + len, CONF_MAX - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        len += (size_t)n;
        if (len == CONF_MAX) {
            r = -EFBIG;
            break;
        }
    }
    close(fd);
    if (buf == NULL)
        r = -ENOMEM;
    if (r == 0) {
        buf[len] = '\0';
        *out = json_tokener_parse(buf);
        if (*out == NULL || !json_object_is_type(*out, json_type_object)) {
            log_err("%s: not a JSON object", path);
            json_object_put(*out);
            *out = NULL;
            r = -EUCLEAN;
        }
    }
    free(buf);
    free(path);
    return r;
}

int iscsi_conf_save(const char *state_dir, struct json_object *conf)
{
    CLEANUP_FREE char *path = NULL, *text = NULL;
    if (mkdir(state_dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    if (asprintf(&path, "%s/%s", state_dir, ISCSI_CONF_FILE) < 0 ||
        asprintf(&text, "%s\n", json_object_to_json_string_ext(conf, JSON_C_TO_STRING_PRETTY)) < 0)
        return -ENOMEM;
    int r = file_replace(path, text, strlen(text), 0600);
    if (r < 0)
        log_err("%s: cannot save the iSCSI settings: %s", path, strerror(-r));
    return r;
}

/* The settings object of @pool in @conf, created when @create. */
static struct json_object *conf_target(struct json_object *conf, const char *pool, bool create)
{
    struct json_object *targets, *t;
    if (!json_object_object_get_ex(conf, "targets", &targets) ||
        !json_object_is_type(targets, json_type_object)) {
        if (!create)
            return NULL;
        targets = json_object_new_object();
        json_object_object_add(conf, "targets", targets);
    }
    if (!json_object_object_get_ex(targets, pool, &t) || !json_object_is_type(t, json_type_object)) {
        if (!create)
            return NULL;
        t = json_object_new_object();
        json_object_object_add(targets, pool, t);
    }
    return t;
}

/* ---------------------------------------------------------------------------------------- */
/* Checks shared by the command line and the operations                                      */
/* ---------------------------------------------------------------------------------------- */

static bool iqn_ok(const char *s)
{
    size_t l = strlen(s);
    if (l < 5 || l > IQN_MAX)
        return false;
    if (strncmp(s, "iqn.", 4) != 0 && strncmp(s, "eui.", 4) != 0 && strncmp(s, "naa.", 4) != 0)
        return false;
    for (size_t i = 0; i < l; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == ',')
            return false;
    return true;
}

static bool chap_ok(const char *s)
{
    size_t l = strlen(s);
    if (l == 0 || l > CHAP_MAX)
        return false;
    for (size_t i = 0; i < l; i++)
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
            return false;
    return true;
}

/* A string member of the settings object; NULL when absent; -EINVAL via @e when not a
 * string. */
static int get_str(struct json_object *o, const char *key, const char **out, struct op_err *e)
{
    struct json_object *v;
    *out = NULL;
    if (o == NULL || !json_object_object_get_ex(o, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return op_fail(e, -EINVAL, "iscsi: '%s' must be a string", key);
    *out = json_object_get_string(v);
    return 0;
}

static int check_keys(struct json_object *o, const char *const *allowed, size_t n,
                      struct op_err *e)
{
    if (o == NULL || !json_object_is_type(o, json_type_object))
        return op_fail(e, -EINVAL, "argument 'iscsi': expected an object");
    json_object_object_foreach(o, key, val)
    {
        bool ok = false;
        (void)val;
        for (size_t i = 0; i < n; i++)
            ok |= strcmp(key, allowed[i]) == 0;
        if (!ok)
            return op_fail(e, -EINVAL, "iscsi: unknown setting '%.64s'", key);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Operations                                                                                */
/* ---------------------------------------------------------------------------------------- */

struct lun_list {
    struct pool *pool;
    struct json_object *arr;
    const char *vol;
};

static void lun_add(struct lun_list *l, const struct vol_info *vi, bool snap)
{
    char name[3 * NAME_MAX_LEN + 3];
    if (vi->lun == VOL_NO_LUN)
        return;
    if (snap)
        snprintf(name, sizeof name, "%s/%s@%s", pool_name(l->pool), l->vol, vi->name);
    else
        snprintf(name, sizeof name, "%s/%s", pool_name(l->pool), vi->name);
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "lun", json_object_new_int64(vi->lun));
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "size", json_object_new_uint64(vi->size));
    json_object_object_add(o, "read_only", json_object_new_boolean(snap));
    json_object_array_add(l->arr, o);
}

static int lun_snap(void *ctx, const struct vol_info *vi)
{
    lun_add(ctx, vi, true);
    return 0;
}

static int lun_vol(void *ctx, const struct vol_info *vi)
{
    struct lun_list *l = ctx;
    lun_add(l, vi, false);
    l->vol = vi->name;
    vol_snap_list(l->pool, vi->name, lun_snap, l);
    return 0;
}

static int lun_cmp(const void *a, const void *b)
{
    struct json_object *x = *(struct json_object *const *)a, *y = *(struct json_object *const *)b;
    uint64_t lx = res_u64(x, "lun"), ly = res_u64(y, "lun");
    return lx < ly ? -1 : lx > ly;
}

static int op_iscsi_show(const struct op_env *env, struct pool *pool,
                         const struct cli_args *a UNUSED, struct json_object **out,
                         struct op_err *e)
{
    struct json_object *conf = NULL, *t, *v, *o, *ini = json_object_new_array();
    struct lun_list l = {pool, json_object_new_array(), NULL};
    char iqn[IQN_MAX + 1];
    int r = iscsi_conf_load(env->state_dir, &conf);

    if (r < 0) {
        json_object_put(ini);
        json_object_put(l.arr);
        return op_fail(e, r, "%s/%s: cannot read the iSCSI settings: %s", env->state_dir,
                       ISCSI_CONF_FILE, strerror(-r));
    }
    r = vol_list(pool, lun_vol, &l);
    if (r < 0) {
        json_object_put(conf);
        json_object_put(ini);
        json_object_put(l.arr);
        return op_fail(e, r, "%s: cannot list volumes: %s", pool_name(pool), strerror(-r));
    }
    json_object_array_sort(l.arr, lun_cmp);
    t = conf_target(conf, pool_name(pool), false);
    o = json_object_new_object();
    snprintf(iqn, sizeof iqn, "%s%s", ISCSI_IQN_PREFIX, pool_name(pool));
    json_object_object_add(o, "target", json_object_new_string(iqn));
    json_object_object_add(o, "pool", json_object_new_string(pool_name(pool)));
    json_object_object_add(o, "auth",
                           json_object_new_string(t && json_object_object_get_ex(t, "auth", &v)
                                                      ? json_object_get_string(v)
                                                      : "default"));
    json_object_object_add(o, "chap_user",
                           json_object_new_string(t && json_object_object_get_ex(t, "chap_user", &v)
                                                      ? json_object_get_string(v)
                                                      : ""));
    json_object_object_add(o, "chap_secret_set",
                           json_object_new_boolean(t && json_object_object_get_ex(t, "chap_secret", &v)));
    json_object_object_add(
        o, "mutual_user",
        json_object_new_string(t && json_object_object_get_ex(t, "mutual_user", &v)
                                   ? json_object_get_string(v)
                                   : ""));
    json_object_object_add(o, "mutual_secret_set",
                           json_object_new_boolean(t && json_object_object_get_ex(t, "mutual_secret", &v)));
    if (t && json_object_object_get_ex(t, "initiators", &v) &&
        json_object_is_type(v, json_type_array))
        for (size_t i = 0; i < json_object_array_length(v); i++)
            json_object_array_add(ini, json_object_get(json_object_array_get_idx(v, i)));
    json_object_object_add(o, "initiators", ini);
    json_object_object_add(o, "luns", l.arr);
    json_object_put(conf);
    *out = o;
    return 0;
}

static int op_iscsi_lun(const struct op_env *env UNUSED, struct pool *pool,
                        const struct cli_args *a, struct json_object **out, struct op_err *e)
{
    static const char *const keys[] = {"lun"};
    struct json_object *v;
    char name[2 * NAME_MAX_LEN + 2];
    uint32_t lun;
    int r;

    if (check_keys(a->iscsi, keys, ARRAY_SIZE(keys), e) < 0)
        return e->err;
    if (!json_object_object_get_ex(a->iscsi, "lun", &v))
        return op_fail(e, -EINVAL, "iscsi: 'lun' is missing (a number, or null to clear)");
    if (json_object_is_type(v, json_type_null)) {
        lun = VOL_NO_LUN;
    } else if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0 &&
               json_object_get_int64(v) <= VOL_MAX_LUN) {
        lun = (uint32_t)json_object_get_int64(v);
    } else {
        return op_fail(e, -EINVAL, "iscsi: 'lun' must be a number from 0 to %u, or null",
                       VOL_MAX_LUN);
    }
    if (a->obj.snap[0])
        snprintf(name, sizeof name, "%s@%s", a->obj.vol, a->obj.snap);
    else
        snprintf(name, sizeof name, "%s", a->obj.vol);
    r = vol_set_lun(pool, name, lun);
    if (r == -EEXIST)
        return op_fail(e, r, "%s: LUN %u belongs to another volume", pool_name(pool), lun);
    if (r < 0)
        return op_fail(e, r, "%s/%s: %s", pool_name(pool), name, vol_error_cause(r));
    iscsi_serve_luns_changed();
    *out = json_object_new_object();
    json_object_object_add(*out, "name", json_object_new_string(name));
    json_object_object_add(*out, "lun",
                           lun == VOL_NO_LUN ? NULL : json_object_new_int64((int64_t)lun));
    return 0;
}

static int op_iscsi_auth(const struct op_env *env, struct pool *pool, const struct cli_args *a,
                         struct json_object **out, struct op_err *e)
{
    static const char *const keys[] = {"auth",        "chap_user",     "chap_secret",
                                       "mutual_user", "mutual_secret", "clear"};
    static const char *const strs[] = {"chap_user", "chap_secret", "mutual_user",
                                       "mutual_secret"};
    struct json_object *conf = NULL, *t, *v;
    const char *s;
    bool clear = false;
    int r;

    if (check_keys(a->iscsi, keys, ARRAY_SIZE(keys), e) < 0)
        return e->err;
    if (json_object_object_get_ex(a->iscsi, "clear", &v)) {
        if (!json_object_is_type(v, json_type_boolean))
            return op_fail(e, -EINVAL, "iscsi: 'clear' must be true or false");
        clear = json_object_get_boolean(v);
    }
    if (get_str(a->iscsi, "auth", &s, e) < 0)
        return e->err;
    if (s && strcmp(s, "chap") != 0 && strcmp(s, "none") != 0)
        return op_fail(e, -EINVAL, "iscsi: 'auth' must be chap or none");
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        if (get_str(a->iscsi, strs[i], &s, e) < 0)
            return e->err;
        if (s && !chap_ok(s))
            return op_fail(e, -EINVAL, "iscsi: '%s' must have 1 to %u printable characters",
                           strs[i], CHAP_MAX);
    }
    const char *u, *sec, *mu, *ms;
    get_str(a->iscsi, "chap_user", &u, e);
    get_str(a->iscsi, "chap_secret", &sec, e);
    get_str(a->iscsi, "mutual_user", &mu, e);
    get_str(a->iscsi, "mutual_secret", &ms, e);
    if (!u != !sec)
        return op_fail(e, -EINVAL, "iscsi: a CHAP user and its secret go together");
    if (!mu != !ms)
        return op_fail(e, -EINVAL, "iscsi: a mutual CHAP user and its secret go together");
    r = iscsi_conf_load(env->state_dir, &conf);
    if (r < 0)
        return op_fail(e, r, "%s/%s: cannot read the iSCSI settings: %s", env->state_dir,
                       ISCSI_CONF_FILE, strerror(-r));
    t = conf_target(conf, pool_name(pool), true);
    if (clear) {
        for (size_t i = 0; i < ARRAY_SIZE(keys) - 1; i++)
            json_object_object_del(t, keys[i]);
    }
    json_object_object_foreach(a->iscsi, key, val)
    {
        if (strcmp(key, "clear") != 0)
            json_object_object_add(t, key, json_object_get(val));
    }
    /* The secrets as they will be, new or kept: one secret both ways would let an attacker
     * reflect the target's challenge (RFC 7143 12.1.3). */
    get_str(t, "chap_secret", &sec, e);
    get_str(t, "mutual_secret", &ms, e);
    if (sec && ms && strcmp(sec, ms) == 0) {
        json_object_put(conf);
        return op_fail(e, -EINVAL, "iscsi: the mutual CHAP secret must differ from the "
                                   "initiator's (RFC 7143 12.1.3)");
    }
    r = iscsi_conf_save(env->state_dir, conf);
    json_object_put(conf);
    if (r < 0)
        return op_fail(e, r, "%s/%s: cannot save the iSCSI settings: %s", env->state_dir,
                       ISCSI_CONF_FILE, strerror(-r));
    return op_iscsi_show(env, pool, a, out, e);
}

static int op_iscsi_initiator(const struct op_env *env, struct pool *pool,
                              const struct cli_args *a, struct json_object **out,
                              struct op_err *e)
{
    static const char *const keys[] = {"allow", "deny"};
    struct json_object *conf = NULL, *t, *list, *nl;
    const char *allow, *deny, *name;
    int r;

    if (check_keys(a->iscsi, keys, ARRAY_SIZE(keys), e) < 0 ||
        get_str(a->iscsi, "allow", &allow, e) < 0 || get_str(a->iscsi, "deny", &deny, e) < 0)
        return e->err;
    if (!allow == !deny)
        return op_fail(e, -EINVAL, "iscsi: give one of 'allow' and 'deny'");
    name = allow ? allow : deny;
    if (!iqn_ok(name))
        return op_fail(e, -EINVAL, "iscsi: '%.64s' is not an iSCSI name (iqn., eui. or naa.)",
                       name);
    r = iscsi_conf_load(env->state_dir, &conf);
    if (r < 0)
        return op_fail(e, r, "%s/%s: cannot read the iSCSI settings: %s", env->state_dir,
                       ISCSI_CONF_FILE, strerror(-r));
    t = conf_target(conf, pool_name(pool), true);
    nl = json_object_new_array();
    if (json_object_object_get_ex(t, "initiators", &list) &&
        json_object_is_type(list, json_type_array))
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            struct json_object *x = json_object_array_get_idx(list, i);
            if (strcasecmp(json_object_get_string(x), name) != 0)
                json_object_array_add(nl, json_object_get(x));
        }
    if (allow) {
        if (json_object_array_length(nl) >= MAX_INITIATORS) {
            json_object_put(nl);
            json_object_put(conf);
            return op_fail(e, -ENOSPC, "%s: at most %u allowed initiators", pool_name(pool),
                           MAX_INITIATORS);
        }
        json_object_array_add(nl, json_object_new_string(name));
    }
    json_object_object_add(t, "initiators", nl);
    r = iscsi_conf_save(env->state_dir, conf);
    json_object_put(conf);
    if (r < 0)
        return op_fail(e, r, "%s/%s: cannot save the iSCSI settings: %s", env->state_dir,
                       ISCSI_CONF_FILE, strerror(-r));
    return op_iscsi_show(env, pool, a, out, e);
}

const struct op iscsi_ops[] = {
    {"iscsi.show", ARG_POOL, 0, 0, NULL, op_iscsi_show},
    {"iscsi.lun", ARG_POOL | ARG_VOLUME | ARG_ISCSI, ARG_SNAP, 0, NULL, op_iscsi_lun},
    {"iscsi.auth", ARG_POOL | ARG_ISCSI, 0, 0, NULL, op_iscsi_auth},
    {"iscsi.initiator", ARG_POOL | ARG_ISCSI, 0, 0, NULL, op_iscsi_initiator},
};
const size_t iscsi_nops = ARRAY_SIZE(iscsi_ops);

/* ---------------------------------------------------------------------------------------- */
/* The commands                                                                              */
/* ---------------------------------------------------------------------------------------- */

static int print_show(struct json_object *res, bool json)
{
    struct json_object *luns, *ini;
    if (json) {
        json_print(res);
        return 0;
    }
    printf("target      %s\n", res_str(res, "target"));
    const char *auth = res_str(res, "auth");
    printf("auth        %s", strcmp(auth, "default") == 0 ? "default (from the daemon's settings)"
                                                           : auth);
    if (*res_str(res, "chap_user"))
        printf(", CHAP user %s%s", res_str(res, "chap_user"),
               res_bool(res, "chap_secret_set") ? "" : " (no secret)");
    if (*res_str(res, "mutual_user"))
        printf(", mutual CHAP as %s", res_str(res, "mutual_user"));
    printf("\n");
    printf("initiators  ");
    if (json_object_object_get_ex(res, "initiators", &ini) && json_object_array_length(ini) > 0) {
        for (size_t i = 0; i < json_object_array_length(ini); i++)
            printf("%s%s", i ? ", " : "",
                   json_object_get_string(json_object_array_get_idx(ini, i)));
        printf("\n");
    } else {
        printf("any (or as the daemon's settings say)\n");
    }
    if (json_object_object_get_ex(res, "luns", &luns) && json_object_array_length(luns) > 0) {
        static const char *const headers[] = {"LUN", "VOLUME", "SIZE", "MODE"};
        struct table *tb = table_new(ARRAY_SIZE(headers), headers, "rlrl");
        for (size_t i = 0; i < json_object_array_length(luns); i++) {
            struct json_object *o = json_object_array_get_idx(luns, i);
            char lun[24], sz[SIZE_BUF];
            snprintf(lun, sizeof lun, "%llu", (unsigned long long)res_u64(o, "lun"));
            const char *row[] = {lun, res_str(o, "name"), size_str(res_u64(o, "size"), false, sz),
                                 res_bool(o, "read_only") ? "ro" : "rw"};
            table_add(tb, row);
        }
        printf("\n");
        table_print(tb, stdout, false);
        table_free(tb);
    } else {
        printf("no LUNs\n");
    }
    json_object_put(res);
    return 0;
}

static int run_op(const struct cli *cli, const struct cli_args *a, const struct target *t,
                  const char *op, bool show)
{
    struct json_object *res = NULL;
    int r = op_call(cli, t, op, a, &res);
    json_object_put(a->iscsi); /* built by check() */
    ((struct cli_args *)a)->iscsi = NULL;
    if (r < 0)
        return EXIT_RUNTIME;
    if (show)
        return print_show(res, a->json);
    if (a->json)
        json_print(res);
    else
        json_object_put(res);
    return 0;
}

/* show POOL */
static int check_show(const struct command *cmd, struct cli_args *a)
{
    if (a->npos != 1)
        return usage_error(cmd, a->npos ? "unexpected argument '%s'" : "POOL: missing",
                           a->npos ? a->pos[1] : "");
    return arg_pool_name(cmd, "POOL", a->pos[0], &a->obj);
}

static int run_show(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_op(cli, a, t, "iscsi.show", true);
}

/* lun set POOL/VOL[@SNAP] N | lun clear POOL/VOL[@SNAP] */
static int check_lun(const struct command *cmd, struct cli_args *a)
{
    const char *why = NULL;
    bool set;
    if (a->npos < 2)
        return usage_error(cmd, "expected 'set POOL/VOLUME[@SNAPSHOT] N' or 'clear "
                                "POOL/VOLUME[@SNAPSHOT]'");
    set = strcmp(a->pos[0], "set") == 0;
    if (!set && strcmp(a->pos[0], "clear") != 0)
        return usage_error(cmd, "'%s': expected set or clear", a->pos[0]);
    if (a->npos != (set ? 3 : 2))
        return usage_error(cmd, set ? "set: expected POOL/VOLUME[@SNAPSHOT] N"
                                    : "clear: expected POOL/VOLUME[@SNAPSHOT]");
    if (obj_name_parse(a->pos[1], &a->obj, &why) < 0 || a->obj.vol[0] == '\0')
        return usage_error(cmd, "'%s': expected POOL/VOLUME or POOL/VOLUME@SNAPSHOT%s%s",
                           a->pos[1], why ? ": " : "", why ? why : "");
    a->iscsi = json_object_new_object();
    if (set) {
        char *end;
        errno = 0;
        unsigned long n = strtoul(a->pos[2], &end, 10);
        if (a->pos[2][0] < '0' || a->pos[2][0] > '9' || *end || errno || n > VOL_MAX_LUN) {
            json_object_put(a->iscsi);
            a->iscsi = NULL;
            return usage_error(cmd, "LUN '%s': expected a number from 0 to %u", a->pos[2],
                               VOL_MAX_LUN);
        }
        json_object_object_add(a->iscsi, "lun", json_object_new_int64((int64_t)n));
    } else {
        json_object_object_add(a->iscsi, "lun", NULL);
    }
    return 0;
}

static int run_lun(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_op(cli, a, t, "iscsi.lun", false);
}

/* auth set POOL KEY=VALUE... | auth clear POOL */
static int check_auth(const struct command *cmd, struct cli_args *a)
{
    static const struct {
        const char *arg, *key;
    } map[] = {{"auth", "auth"},
               {"user", "chap_user"},
               {"secret", "chap_secret"},
               {"mutual-user", "mutual_user"},
               {"mutual-secret", "mutual_secret"}};
    bool set;
    int r;
    if (a->npos < 2)
        return usage_error(cmd, "expected 'set POOL KEY=VALUE...' or 'clear POOL'");
    set = strcmp(a->pos[0], "set") == 0;
    if (!set && strcmp(a->pos[0], "clear") != 0)
        return usage_error(cmd, "'%s': expected set or clear", a->pos[0]);
    r = arg_pool_name(cmd, "POOL", a->pos[1], &a->obj);
    if (r != 0)
        return r;
    if (!set && a->npos != 2)
        return usage_error(cmd, "clear: unexpected argument '%s'", a->pos[2]);
    if (set && a->npos == 2)
        return usage_error(cmd, "set: nothing to set (auth=chap|none, user=, secret=, "
                                "mutual-user=, mutual-secret=)");
    a->iscsi = json_object_new_object();
    if (!set)
        json_object_object_add(a->iscsi, "clear", json_object_new_boolean(true));
    for (int i = 2; i < a->npos; i++) {
        const char *eq = strchr(a->pos[i], '=');
        size_t kl = eq ? (size_t)(eq - a->pos[i]) : 0;
        const char *key = NULL;
        for (size_t j = 0; j < ARRAY_SIZE(map) && eq; j++)
            if (strlen(map[j].arg) == kl && strncmp(a->pos[i], map[j].arg, kl) == 0)
                key = map[j].key;
        if (key == NULL) {
            json_object_put(a->iscsi);
            a->iscsi = NULL;
            return usage_error(cmd, "'%s': expected auth=, user=, secret=, mutual-user= or "
                                    "mutual-secret=",
                               a->pos[i]);
        }
        json_object_object_add(a->iscsi, key, json_object_new_string(eq + 1));
    }
    return 0;
}

static int run_auth(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_op(cli, a, t, "iscsi.auth", true);
}

/* initiator allow|deny POOL IQN */
static int check_initiator(const struct command *cmd, struct cli_args *a)
{
    int r;
    if (a->npos != 3 || (strcmp(a->pos[0], "allow") != 0 && strcmp(a->pos[0], "deny") != 0))
        return usage_error(cmd, "expected 'allow POOL IQN' or 'deny POOL IQN'");
    r = arg_pool_name(cmd, "POOL", a->pos[1], &a->obj);
    if (r != 0)
        return r;
    if (!iqn_ok(a->pos[2]))
        return usage_error(cmd, "'%s' is not an iSCSI name (iqn., eui. or naa.)", a->pos[2]);
    a->iscsi = json_object_new_object();
    json_object_object_add(a->iscsi, a->pos[0], json_object_new_string(a->pos[2]));
    return 0;
}

static int run_initiator(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    return run_op(cli, a, t, "iscsi.initiator", true);
}

const struct command iscsi_commands[] = {
    {"iscsi", "show", "POOL [--json]",
     "Show the pool's iSCSI target: its name, authentication, allowed initiators and LUNs.",
     OPT_JSON, CMD_OPENS_POOL, check_show, run_show},
    {"iscsi", "lun", "set POOL/VOLUME[@SNAPSHOT] N | clear POOL/VOLUME[@SNAPSHOT]",
     "Give a volume or snapshot LUN N of its pool's target, or take its LUN away. Sessions "
     "see the change at their next command.",
     OPT_JSON, CMD_OPENS_POOL, check_lun, run_lun},
    {"iscsi", "auth",
     "set POOL [auth=chap|none] [user=U secret=S] [mutual-user=U mutual-secret=S] | clear POOL",
     "Set how initiators log in to the pool's target: CHAP with the initiator's user and "
     "secret, and mutual CHAP with the target's; auth=none allows logins without. Applies "
     "to the next login; clear returns to the daemon's settings.",
     OPT_JSON, CMD_OPENS_POOL, check_auth, run_auth},
    {"iscsi", "initiator", "allow|deny POOL IQN",
     "Allow an initiator to log in to the pool's target, or take it off the list. While the "
     "list is empty, any initiator may log in.",
     OPT_JSON, CMD_OPENS_POOL, check_initiator, run_initiator},
};
const size_t iscsi_ncommands = ARRAY_SIZE(iscsi_commands);
