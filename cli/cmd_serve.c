/*
 * cmd_serve.c - `cistern serve`: the daemon. Opens pools, serves their volumes over NBD, and
 * answers the commands of `cistern` on a control socket, until SIGTERM or SIGINT.
 *
 *     cistern serve [POOL...] [--config FILE] [--nbd ADDR:PORT|unix:PATH|none]
 *                   [--control PATH] [--tls-cert FILE --tls-key FILE [--tls-ca FILE]
 *                   [--tls-required]] [--threads N] [--read-only] [--syslog]
 *                   [--log-level LEVEL]
 *
 * Settings come from the command line, then from the configuration file (--config, or
 * STATE_DIR/serve.conf when it exists): `key = value` lines with the options' names as keys
 * (nbd, control, tls-cert, tls-key, tls-ca, tls-required, threads, read-only, syslog,
 * log-level, pools), '#' comments. An option given on the command line wins over the file.
 *
 * Exports are the volumes of every open pool, named "POOL/VOL", and "VOL" alone when no
 * other open pool has a volume of that name. The export list is read from the catalogs
 * each time a client asks, so volumes created later (through the control socket) are served
 * at once. The daemon counts the NBD connections that have each volume open, so that
 * `vol delete`, shrinking `vol resize` and `snap rollback` refuse to pull a volume from under
 * its clients (ops.c), and with --force disconnect them first (evict).
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread (the mask is set before any
 * thread starts) and read from a signalfd by the main thread, which then stops the control
 * thread, stops the NBD server (requests in flight finish), closes the pools (which
 * commits) and exits 0.
 *
 * The command parses its own options: they are not those of the pool and vol commands.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nbd-server/nbd-server.h"

int cmd_serve(const struct cli *cli, int argc, char **argv);

#define SERVE_DEFAULT_NBD "127.0.0.1:10809"
#define SERVE_CONFIG "serve.conf" /* in the state directory */
#define CONFIG_MAX (64u << 10)    /* bytes of a configuration file */
#define EVICT_WAIT_S 30           /* how long evicted clients get to finish and let go */

static const struct command serve_command = {
    .group = NULL,
    .name = "serve",
    .synopsis = "[POOL...] [--config FILE] [--nbd ADDR:PORT|unix:PATH|none] [--control PATH] "
                "[--tls-cert FILE --tls-key FILE [--tls-ca FILE] [--tls-required]] "
                "[--threads N] [--read-only] [--syslog] [--log-level LEVEL] [--iscsi [ADDR:PORT]]",
    .summary = "Serve the volumes of pools over NBD, and the commands of cistern on a control "
               "socket, until SIGTERM or SIGINT.",
};

struct serve_ctx {
    struct pool **pools;
    size_t npools;
    bool readonly; /* --read-only: every export */

    pthread_mutex_t mu;  /* guards the handles below */
    struct served *open; /* volumes open by NBD connections, one entry per connection */
    struct iscsi_serve *iscsi; /* the iSCSI target (serve_iscsi.c), NULL when off */
    struct nbd_server *nbd;    /* NULL when NBD is not served */
    pthread_cond_t closed;     /* signalled when a served handle is closed */
    size_t nopen, capopen;
};

/* A volume handle of an NBD connection, known by its pool and catalog id (which renames do
 * not change). While it closes, these copies are read, never the handle (which is freed
 * when vol_close returns). */
struct served {
    struct vol *v;
    struct pool *pool;
    uint64_t id;
};

/* ---------------------------------------------------------------------------------------- */
/* Exports                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void describe(struct pool *pool, const struct vol_info *vi, char *desc, size_t len)
{
    char s[SIZE_BUF], g[SIZE_BUF];
    snprintf(desc, len, "volume %s/%s, %s, grain %s", pool_name(pool), vi->name,
             size_str(vi->size, false, s), size_str(vi->grain_size, false, g));
}

static struct pool *find_pool(struct serve_ctx *sc, const char *name)
{
    for (size_t i = 0; i < sc->npools; i++)
        if (strcmp(pool_name(sc->pools[i]), name) == 0)
            return sc->pools[i];
    return NULL;
}

struct only_one {
    struct pool *pool;
    char name[NAME_MAX_LEN + 1];
    unsigned count;
};

static int count_vol(void *ctx, const struct vol_info *vi)
{
    struct only_one *o = ctx;
    if (o->count++ == 0)
        snprintf(o->name, sizeof o->name, "%s", vi->name);
    return 0;
}

static int export_open(void *ctx, const char *name, struct vol **v, bool *readonly, char *desc,
                       size_t desclen)
{
    struct serve_ctx *sc = ctx;
    struct pool *pool = NULL;
    char volname[2 * NAME_MAX_LEN + 2]; /* VOL, or VOL@SNAP */
    struct vol_info vi;

    *readonly = sc->readonly;
    if (*name == '\0') {
        /* The default export: the only volume, when there is exactly one. */
        struct only_one o = {0};
        for (size_t i = 0; i < sc->npools; i++) {
            unsigned before = o.count;
            vol_list(sc->pools[i], count_vol, &o);
            if (o.count > before && before == 0)
                o.pool = sc->pools[i];
        }
        if (o.count != 1)
            return -ENOENT;
        pool = o.pool;
        snprintf(volname, sizeof volname, "%s", o.name);
    } else if (strchr(name, '/')) {
        struct obj_name on;
        if (obj_name_parse(name, &on, NULL) < 0 || on.vol[0] == '\0')
            return -ENOENT;
        pool = find_pool(sc, on.pool);
        if (!pool)
            return -ENOENT;
        /* A snapshot is exported read-only under its full name, POOL/VOL@SNAP. */
        snprintf(volname, sizeof volname, "%s%s%s", on.vol, on.snap[0] ? "@" : "", on.snap);
        if (on.snap[0])
            *readonly = true;
    } else {
        if (name_check(name, NULL) < 0)
            return -ENOENT;
        for (size_t i = 0; i < sc->npools; i++) {
            if (vol_get_info(sc->pools[i], name, &vi) == 0) {
                if (pool) {
                    log_info("export \"%s\" is ambiguous: pools %s and %s both have it", name,
                             pool_name(pool), pool_name(sc->pools[i]));
                    return -ENOENT;
                }
                pool = sc->pools[i];
            }
        }
        if (!pool)
            return -ENOENT;
        snprintf(volname, sizeof volname, "%s", name);
    }
    int r = vol_get_info(pool, volname, &vi);
    if (r == 0)
        r = vol_open(pool, volname, *readonly ? VOL_OPEN_RDONLY : 0, v);
    if (r < 0)
        return r;
    pthread_mutex_lock(&sc->mu);
    if (sc->nopen == sc->capopen) {
        size_t cap = sc->capopen ? sc->capopen * 2 : 16;
        struct served *p = realloc(sc->open, cap * sizeof *p);
        if (p == NULL) {
            pthread_mutex_unlock(&sc->mu);
            vol_close(*v);
            *v = NULL;
            return -ENOMEM;
        }
        sc->open = p;
        sc->capopen = cap;
    }
    sc->open[sc->nopen++] = (struct served){.v = *v, .pool = pool, .id = vi.id};
    pthread_mutex_unlock(&sc->mu);
    describe(pool, &vi, desc, desclen);
    return 0;
}

struct list_ctx {
    struct pool *pool;
    int (*fn)(void *c, const char *name, const char *desc);
    void *c;
};

struct list_snap_ctx {
    struct list_ctx *l;
    const char *vol;
};

static int list_snap(void *ctx, const struct vol_info *vi)
{
    struct list_snap_ctx *ls = ctx;
    char name[3 * NAME_MAX_LEN + 3], desc[256];
    snprintf(name, sizeof name, "%s/%s@%s", pool_name(ls->l->pool), ls->vol, vi->name);
    snprintf(desc, sizeof desc, "snapshot %s (read-only)", name);
    return ls->l->fn(ls->l->c, name, desc);
}

static int list_vol(void *ctx, const struct vol_info *vi)
{
    struct list_ctx *l = ctx;
    char name[2 * NAME_MAX_LEN + 2], desc[256];
    snprintf(name, sizeof name, "%s/%s", pool_name(l->pool), vi->name);
    describe(l->pool, vi, desc, sizeof desc);
    int r = l->fn(l->c, name, desc);
    struct list_snap_ctx ls = {l, vi->name};
    return r != 0 ? r : vol_snap_list(l->pool, vi->name, list_snap, &ls);
}

static int export_list(void *ctx, int (*fn)(void *c, const char *name, const char *desc), void *c)
{
    struct serve_ctx *sc = ctx;
    for (size_t i = 0; i < sc->npools; i++) {
        struct list_ctx l = {sc->pools[i], fn, c};
        int r = vol_list(sc->pools[i], list_vol, &l);
        if (r != 0)
            return r;
    }
    return 0;
}

static void export_close(void *ctx, struct vol *v)
{
    struct serve_ctx *sc = ctx;
    char name[NAME_MAX_LEN + 1];
    struct pool *pool = vol_pool(v);
    int r;

    /* The volume counts as served until it is closed. The mutex is not held across
     * vol_close, which waits for requests that complete on the reactors, where export_open
     * may be waiting for the mutex. */
    snprintf(name, sizeof name, "%s", vol_name(v));
    r = vol_close(v);
    pthread_mutex_lock(&sc->mu);
    for (size_t i = 0; i < sc->nopen; i++)
        if (sc->open[i].v == v) {
            sc->open[i] = sc->open[--sc->nopen];
            break;
        }
    pthread_cond_broadcast(&sc->closed);
    pthread_mutex_unlock(&sc->mu);
    if (r < 0)
        log_err("%s/%s: closing the volume failed: %s", pool_name(pool), name, strerror(-r));
}

/* NBD connections that have record @id of @pool open. sc->mu held. */
static unsigned nbd_clients(struct serve_ctx *sc, struct pool *pool, uint64_t id)
{
    unsigned n = 0;
    for (size_t i = 0; i < sc->nopen; i++)
        n += sc->open[i].pool == pool && sc->open[i].id == id;
    return n;
}

/* struct op_env.clients: NBD connections and iSCSI LUs that have @vol of @pool open. */
static unsigned clients(void *ctx, struct pool *pool, const char *vol)
{
    struct serve_ctx *sc = ctx;
    struct vol_info vi;
    unsigned n = 0;

    if (vol_get_info(pool, vol, &vi) == 0) {
        pthread_mutex_lock(&sc->mu);
        n = nbd_clients(sc, pool, vi.id);
        pthread_mutex_unlock(&sc->mu);
        n += iscsi_serve_clients(sc->iscsi, pool, vi.id); /* and the iSCSI LUs */
    }
    return n;
}

struct evict_ctx {
    struct serve_ctx *sc;
    struct pool *pool;
    uint64_t id;
};

/* Runs under the NBD server's lock: looks at the served list, never at the handle. */
static bool evict_match(void *ctx, struct vol *v)
{
    struct evict_ctx *ec = ctx;
    bool match = false;
    pthread_mutex_lock(&ec->sc->mu);
    for (size_t i = 0; i < ec->sc->nopen; i++)
        if (ec->sc->open[i].v == v)
            match = ec->sc->open[i].pool == ec->pool && ec->sc->open[i].id == ec->id;
    pthread_mutex_unlock(&ec->sc->mu);
    return match;
}

/* struct op_env.evict: ends the iSCSI sessions using @vol of @pool (iscsi_serve_evict), then
 * disconnects its NBD clients and waits, EVICT_WAIT_S at most, until their handles are
 * closed. Returns how many clients still hold it. */
static unsigned evict(void *ctx, struct pool *pool, const char *vol)
{
    struct serve_ctx *sc = ctx;
    struct vol_info vi;

    if (vol_get_info(pool, vol, &vi) < 0)
        return 0; /* gone: nobody holds it by that name */
    iscsi_serve_evict(sc->iscsi, pool, vi.id); /* the iSCSI sessions using it end, and wait */
    if (sc->nbd == NULL)
        return clients(ctx, pool, vol);
    struct evict_ctx ec = {sc, pool, vi.id};
    nbd_server_evict(sc->nbd, evict_match, &ec);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += EVICT_WAIT_S;
    pthread_mutex_lock(&sc->mu);
    while (nbd_clients(sc, pool, vi.id) > 0 &&
           pthread_cond_timedwait(&sc->closed, &sc->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&sc->mu);
    return clients(ctx, pool, vol);
}

/* ---------------------------------------------------------------------------------------- */
/* The command                                                                               */
/* ---------------------------------------------------------------------------------------- */

static void serve_usage(FILE *f)
{
    fprintf(f,
            "usage: cistern serve %s\n\n%s\n\n"
            "Options:\n"
            "  --config FILE              settings file (default: STATE_DIR/" SERVE_CONFIG
            " when present)\n"
            "  --nbd ADDR:PORT|unix:PATH  where to serve NBD (default " SERVE_DEFAULT_NBD
            "; none: not at all)\n"
            "  --control PATH             control socket (default: STATE_DIR/" CLI_CONTROL_SOCKET
            ")\n"
            "  --tls-cert FILE            PEM certificate for STARTTLS\n"
            "  --tls-key FILE             its PEM private key\n"
            "  --tls-ca FILE              require client certificates signed by this CA\n"
            "  --tls-required             refuse clients that do not start TLS\n"
            "  --threads N                reactor threads (default: one per core)\n"
            "  --read-only                serve every volume read-only\n"
            "  --iscsi [ADDR:PORT]        serve iSCSI too (default 127.0.0.1:3260; see\n"
            "                             docs/iscsi.md for the iscsi-* settings)\n"
            "  --syslog                   log to syslog (facility daemon) instead of stderr\n"
            "  --log-level LEVEL          err, warn, info (default) or debug\n"
            "\nWith no POOL (and no 'pools' in the file), every registered pool is served.\n"
            "Exports are POOL/VOLUME, and VOLUME alone when only one pool has it. While the\n"
            "daemon runs, every cistern command on its pools goes through the control socket.\n"
            "The file holds 'key = value' lines; keys are the options' names (and 'pools').\n"
            "Runs until SIGTERM or SIGINT.\n",
            serve_command.synopsis, serve_command.summary);
}

/* Settings of the daemon: each NULL (or -1) when not given. */
struct serve_opts {
    const char *config, *nbd, *control, *tls_cert, *tls_key, *tls_ca, *log_level, *pools;
    int tls_required, readonly, syslog; /* -1, 0 or 1 */
    long threads;                       /* 0: not given */
    struct iscsi_serve_opts iscsi;      /* --iscsi and the iscsi* keys (serve_iscsi.c) */
};

#define SERVE_OPTS_UNSET                                                                           \
    {                                                                                              \
        .tls_required = -1, .readonly = -1, .syslog = -1                                           \
    }

static int parse_threads(const char *s, long *out)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || n < 1 || n > 1024)
        return -EINVAL;
    *out = n;
    return 0;
}

static int parse_level(const char *s, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {
        {"err", LOG_ERR},      {"error", LOG_ERR}, {"warn", LOG_WARN},
        {"warning", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG},
    };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    return -EINVAL;
}

enum {
    SO_NBD = 256,
    SO_CERT,
    SO_KEY,
    SO_CA,
    SO_REQUIRED,
    SO_THREADS,
    SO_RDONLY,
    SO_CONFIG,
    SO_CONTROL,
    SO_SYSLOG,
    SO_LEVEL,
    SO_ISCSI,
};

static int parse(int argc, char **argv, struct serve_opts *o, bool *help)
{
    static const struct option opts[] = {
        {"nbd", required_argument, NULL, SO_NBD},
        {"tls-cert", required_argument, NULL, SO_CERT},
        {"tls-key", required_argument, NULL, SO_KEY},
        {"tls-ca", required_argument, NULL, SO_CA},
        {"tls-required", no_argument, NULL, SO_REQUIRED},
        {"threads", required_argument, NULL, SO_THREADS},
        {"read-only", no_argument, NULL, SO_RDONLY},
        {"config", required_argument, NULL, SO_CONFIG},
        {"control", required_argument, NULL, SO_CONTROL},
        {"syslog", no_argument, NULL, SO_SYSLOG},
        {"log-level", required_argument, NULL, SO_LEVEL},
        {"iscsi", optional_argument, NULL, SO_ISCSI},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct command *cmd = &serve_command;
    enum log_level lvl;
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            *help = true;
            return 0;
        case SO_NBD:
            if (*optarg == '\0')
                return usage_error(cmd, "--nbd: empty address");
            o->nbd = optarg;
            break;
        case SO_CERT:
            o->tls_cert = optarg;
            break;
        case SO_KEY:
            o->tls_key = optarg;
            break;
        case SO_CA:
            o->tls_ca = optarg;
            break;
        case SO_REQUIRED:
            o->tls_required = 1;
            break;
        case SO_RDONLY:
            o->readonly = 1;
            break;
        case SO_SYSLOG:
            o->syslog = 1;
            break;
        case SO_CONFIG:
            if (*optarg == '\0')
                return usage_error(cmd, "--config: empty file name");
            o->config = optarg;
            break;
        case SO_CONTROL:
            if (*optarg == '\0')
                return usage_error(cmd, "--control: empty path");
            o->control = optarg;
            break;
        case SO_ISCSI:
            /* --iscsi alone: the default address; --iscsi ADDR:PORT or --iscsi=ADDR:PORT. */
            if (optarg == NULL && optind < argc && argv[optind][0] != '-' &&
                strchr(argv[optind], ':') != NULL)
                optarg = argv[optind++];
            o->iscsi.listen = optarg != NULL ? optarg : "yes";
            break;
        case SO_LEVEL:
            if (parse_level(optarg, &lvl) < 0)
                return usage_error(cmd, "--log-level: expected err, warn, info or debug, not '%s'",
                                   optarg);
            o->log_level = optarg;
            break;
        case SO_THREADS:
            if (parse_threads(optarg, &o->threads) < 0)
                return usage_error(cmd, "--threads: expected a number from 1 to 1024, not '%s'",
                                   optarg);
            break;
        case ':':
            return usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt != 0)
                return usage_error(cmd, "unknown option '-%c'", optopt);
            return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) {
        const char *why;
        if (name_check(argv[i], &why) < 0)
            return usage_error(cmd, "invalid pool name \"%s\": %s", argv[i], why);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The configuration file                                                                    */
/* ---------------------------------------------------------------------------------------- */

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/*
 * Reads @path into @o; *text keeps the strings @o points to (free it after use). An error
 * names the file and line and returns EXIT_USAGE (a bad setting) or EXIT_RUNTIME (the file
 * cannot be read). @must: a missing file is an error (given with --config), else it is
 * silently no file.
 */
static int read_config(const char *path, bool must, struct serve_opts *o, char **text)
{
    const struct command *cmd = &serve_command;
    FILE *f = fopen(path, "re");
    size_t len;
    char *line, *next;
    unsigned lineno = 0;
    enum log_level lvl;

    *text = NULL;
    if (f == NULL) {
        if (errno == ENOENT && !must)
            return 0;
        log_err("%s: %s", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    *text = malloc(CONFIG_MAX + 1);
    if (*text == NULL) {
        fclose(f);
        return EXIT_RUNTIME;
    }
    len = fread(*text, 1, CONFIG_MAX + 1, f);
    if (ferror(f) || len > CONFIG_MAX) {
        log_err("%s: %s", path, ferror(f) ? strerror(errno) : "larger than 64K");
        fclose(f);
        return EXIT_RUNTIME;
    }
    fclose(f);
    (*text)[len] = '\0';
    if (memchr(*text, '\0', len) != NULL)
        return usage_error(cmd, "%s: not a text file", path);

    for (line = *text; line != NULL; line = next) {
        char *hash, *eq, *key, *val;
        int b;

        lineno++;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        line = trim(line);
        if (*line == '\0')
            continue;
        eq = strchr(line, '=');
        if (eq == NULL)
            return usage_error(cmd, "%s:%u: expected 'key = value'", path, lineno);
        *eq = '\0';
        key = trim(line);
        val = trim(eq + 1);
        if (*val == '\0')
            return usage_error(cmd, "%s:%u: %s: missing value", path, lineno, key);

        if (strcmp(key, "nbd") == 0) {
            o->nbd = val;
        } else if (strcmp(key, "control") == 0) {
            o->control = val;
        } else if (strcmp(key, "tls-cert") == 0) {
            o->tls_cert = val;
        } else if (strcmp(key, "tls-key") == 0) {
            o->tls_key = val;
        } else if (strcmp(key, "tls-ca") == 0) {
            o->tls_ca = val;
        } else if (strcmp(key, "pools") == 0) {
            o->pools = val;
        } else if (strcmp(key, "log-level") == 0) {
            if (parse_level(val, &lvl) < 0)
                return usage_error(cmd, "%s:%u: log-level: expected err, warn, info or debug", path,
                                   lineno);
            o->log_level = val;
        } else if (strcmp(key, "threads") == 0) {
            if (parse_threads(val, &o->threads) < 0)
                return usage_error(cmd, "%s:%u: threads: expected a number from 1 to 1024", path,
                                   lineno);
        } else if ((b = iscsi_serve_config_key(&o->iscsi, key, val)) != 0) {
            if (b < 0)
                return usage_error(cmd, "%s:%u: %s: invalid value", path, lineno, key);
        } else if (strcmp(key, "tls-required") == 0 || strcmp(key, "read-only") == 0 ||
                   strcmp(key, "syslog") == 0) {
            b = parse_bool(val);
            if (b < 0)
                return usage_error(cmd, "%s:%u: %s: expected yes or no", path, lineno, key);
            if (strcmp(key, "tls-required") == 0)
                o->tls_required = b;
            else if (strcmp(key, "read-only") == 0)
                o->readonly = b;
            else
                o->syslog = b;
        } else {
            return usage_error(cmd, "%s:%u: unknown setting '%s'", path, lineno, key);
        }
    }
    return 0;
}

/* Fills what the command line left unset from the file's settings. */
static void merge(struct serve_opts *o, const struct serve_opts *file)
{
#define TAKE(f, unset)                                                                             \
    do {                                                                                           \
        if (o->f == unset)                                                                         \
            o->f = file->f;                                                                        \
    } while (0)
    TAKE(nbd, NULL);
    TAKE(control, NULL);
    TAKE(tls_cert, NULL);
    TAKE(tls_key, NULL);
    TAKE(tls_ca, NULL);
    TAKE(log_level, NULL);
    TAKE(pools, NULL);
    TAKE(tls_required, -1);
    TAKE(readonly, -1);
    TAKE(syslog, -1);
    TAKE(threads, 0);
    iscsi_serve_opts_merge(&o->iscsi, &file->iscsi);
#undef TAKE
}

/* Splits the file's "pools" (names separated by spaces or commas) into @names. */
static int split_pools(char *list, char ***names, size_t *n)
{
    const struct command *cmd = &serve_command;
    size_t cap = 0;
    char *save = NULL;

    *names = NULL;
    *n = 0;
    for (char *w = strtok_r(list, " \t,", &save); w != NULL; w = strtok_r(NULL, " \t,", &save)) {
        const char *why;
        if (name_check(w, &why) < 0) {
            free(*names);
            *names = NULL;
            return usage_error(cmd, "pools: invalid pool name \"%s\": %s", w, why);
        }
        if (*n + 1 >= cap) {
            cap = cap ? cap * 2 : 8;
            char **p = realloc(*names, cap * sizeof *p);
            if (p == NULL) {
                free(*names);
                *names = NULL;
                return EXIT_RUNTIME;
            }
            *names = p;
        }
        (*names)[(*n)++] = w;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The command                                                                               */
/* ---------------------------------------------------------------------------------------- */

static int close_pools(struct serve_ctx *sc)
{
    int rc = 0;
    for (size_t i = 0; i < sc->npools; i++)
        if (cli_pool_close(sc->pools[i]) != 0)
            rc = EXIT_RUNTIME;
    free(sc->pools);
    sc->pools = NULL;
    sc->npools = 0;
    return rc;
}

/* Opens the pools: @names, or every registered pool. */
static int open_pools(const struct cli *cli, struct serve_ctx *sc, char **names, size_t nnames,
                      bool all)
{
    int rc = 0;

    if (all) {
        int r = registry_list(cli->state_dir, &names, &nnames);
        if (r < 0) {
            log_err("%s: cannot list the registered pools: %s", cli->state_dir, strerror(-r));
            return EXIT_RUNTIME;
        }
        if (nnames == 0)
            log_warn("no registered pools in %s: serving nothing", cli->state_dir);
    }
    sc->pools = calloc(nnames ? nnames : 1, sizeof(*sc->pools));
    rc = sc->pools ? 0 : EXIT_RUNTIME;
    for (size_t i = 0; i < nnames && rc == 0; i++) {
        bool dup = false;
        for (size_t j = 0; j < sc->npools; j++)
            dup = dup || strcmp(pool_name(sc->pools[j]), names[i]) == 0;
        if (dup)
            continue; /* named twice */
        if (cli_pool_open(cli, names[i], 0, &sc->pools[sc->npools]) < 0)
            rc = EXIT_RUNTIME;
        else
            sc->npools++;
    }
    if (all)
        registry_names_free(names);
    return rc;
}

static int serve(const struct cli *cli, const struct serve_opts *o, char **names, size_t nnames,
                 bool all)
{
    struct nbd_config cfg = {0};
    struct serve_ctx sc = {0};
    struct control_config ccfg = {0};
    struct control_server *cs = NULL;
    struct nbd_server *srv = NULL;
    char *control = NULL;
    int rc, r;

    cfg.listen = o->nbd != NULL ? o->nbd : SERVE_DEFAULT_NBD;
    if (strcmp(cfg.listen, "none") == 0)
        cfg.listen = NULL;
    cfg.tls_cert = o->tls_cert;
    cfg.tls_key = o->tls_key;
    cfg.tls_ca = o->tls_ca;
    cfg.tls_required = o->tls_required == 1;
    sc.readonly = o->readonly == 1;
    pthread_mutex_init(&sc.mu, NULL);
    pthread_cond_init(&sc.closed, NULL);

    /* Before any thread exists, so that every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
        log_err("serve: cannot block signals");
        return EXIT_RUNTIME;
    }
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        log_err("serve: signalfd: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    if (o->threads)
        pool_reactors_configure((unsigned)o->threads);

    if (o->control != NULL) {
        control = strdup(o->control);
    } else {
        /* The state directory holds the socket even before any pool is registered. */
        if (mkdir(cli->state_dir, 0755) < 0 && errno != EEXIST)
            log_warn("state directory %s: %s", cli->state_dir, strerror(errno));
        if (asprintf(&control, "%s/%s", cli->state_dir, CLI_CONTROL_SOCKET) < 0)
            control = NULL;
    }
    if (control == NULL) {
        close(sfd);
        return EXIT_RUNTIME;
    }

    rc = open_pools(cli, &sc, names, nnames, all);
    if (rc != 0)
        goto out;

    static const struct nbd_exports exports = {
        .open = export_open,
        .list = export_list,
        .close = export_close,
    };
    if (cfg.listen != NULL) {
        r = nbd_server_start(&cfg, &exports, &sc, &srv);
        sc.nbd = srv;
        if (r < 0) {
            log_err("serve: cannot start the NBD server on %s: %s", cfg.listen, strerror(-r));
            rc = EXIT_RUNTIME;
            goto out;
        }
    }
    if (iscsi_serve_listen(&o->iscsi) != NULL) {
        r = iscsi_serve_start(cli, sc.pools, sc.npools, sc.readonly, &o->iscsi, &sc.iscsi);
        if (r < 0) {
            log_err("serve: cannot start the iSCSI target on %s: %s",
                    iscsi_serve_listen(&o->iscsi), strerror(-r));
            rc = EXIT_RUNTIME;
            goto out;
        }
        log_info("serving %zu pool%s over iSCSI on %s", sc.npools, sc.npools == 1 ? "" : "s",
                 iscsi_serve_listen(&o->iscsi));
    }

    ccfg.path = control;
    ccfg.pools = sc.pools;
    ccfg.npools = sc.npools;
    ccfg.env.state_dir = cli->state_dir;
    ccfg.env.clients = clients;
    ccfg.env.evict = evict;
    ccfg.env.ctx = &sc;
    ccfg.nbd_listen = cfg.listen;
    ccfg.nbd_tls_required = cfg.tls_required;
    ccfg.readonly = sc.readonly;
    if (control_start(&ccfg, &cs) < 0) {
        rc = EXIT_RUNTIME;
        goto out;
    }

    if (cfg.listen != NULL)
        log_info("serving %zu pool%s over NBD on %s%s (%u reactor threads); control socket %s",
                 sc.npools, sc.npools == 1 ? "" : "s", cfg.listen,
                 cfg.tls_cert ? (cfg.tls_required ? ", TLS required" : ", TLS offered") : "",
                 pool_reactor_count(), control);
    else
        log_info("holding %zu pool%s (no NBD); control socket %s", sc.npools,
                 sc.npools == 1 ? "" : "s", control);

    struct signalfd_siginfo si = {0};
    for (;;) {
        ssize_t n = read(sfd, &si, sizeof si);
        if (n == (ssize_t)sizeof si)
            break;
        if (n < 0 && errno != EINTR) {
            log_err("serve: reading signals: %s", strerror(errno));
            break;
        }
    }
    log_info("signal %u: stopping; requests in flight finish", si.ssi_signo);

out:
    /* The control thread first: no operation runs while the pools close. */
    control_stop(cs);
    iscsi_serve_stop(sc.iscsi);
    nbd_server_stop(srv);
    r = close_pools(&sc);
    if (rc == 0)
        rc = r;
    pool_reactors_shutdown();
    close(sfd);
    free(control);
    free(sc.open);
    pthread_mutex_destroy(&sc.mu);
    pthread_cond_destroy(&sc.closed);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

int cmd_serve(const struct cli *cli, int argc, char **argv)
{
    struct serve_opts o = SERVE_OPTS_UNSET, file = SERVE_OPTS_UNSET;
    char *text = NULL, *def = NULL, **names = NULL;
    size_t nnames = 0;
    enum log_level lvl;
    bool help = false, all;
    int rc;

    rc = parse(argc, argv, &o, &help);
    if (rc != 0)
        return rc;
    if (help) {
        serve_usage(stdout);
        return 0;
    }
    if (o.config != NULL)
        rc = read_config(o.config, true, &file, &text);
    else if (asprintf(&def, "%s/%s", cli->state_dir, SERVE_CONFIG) >= 0)
        rc = read_config(def, false, &file, &text);
    if (rc != 0)
        goto out;
    merge(&o, &file);

    if (!o.tls_cert != !o.tls_key) {
        rc = usage_error(&serve_command, "--tls-cert and --tls-key go together");
        goto out;
    }
    if ((o.tls_ca || o.tls_required == 1) && !o.tls_cert) {
        rc = usage_error(&serve_command,
                         "--tls-ca and --tls-required need --tls-cert and --tls-key");
        goto out;
    }

    /* Logging is set up before any thread starts (log_set_syslog requires it). A daemon
     * says what it does, unless asked to be quieter. */
    if (o.log_level != NULL && parse_level(o.log_level, &lvl) == 0)
        log_set_level(lvl);
    else if (getenv("CISTERN_LOG") == NULL && !cli->verbose)
        log_set_level(LOG_INFO);
    if (o.syslog == 1)
        log_set_syslog(true);
    if (text != NULL)
        log_debug("settings from %s", o.config != NULL ? o.config : def);

    all = false;
    if (optind < argc) {
        names = argv + optind;
        nnames = (size_t)(argc - optind);
    } else if (o.pools != NULL) {
        rc = split_pools((char *)o.pools, &names, &nnames);
        if (rc != 0)
            goto out;
    } else {
        all = true;
    }
    rc = serve(cli, &o, names, nnames, all);
    if (optind >= argc && !all)
        free(names);
out:
    free(text);
    free(def);
    return rc;
}
