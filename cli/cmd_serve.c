/*
 * cmd_serve.c - `cistern serve`: the daemon. Opens pools and serves their volumes over NBD
 * until SIGTERM or SIGINT.
 *
 *     cistern serve [POOL...] [--nbd ADDR:PORT|unix:PATH] [--tls-cert FILE --tls-key FILE
 *                   [--tls-ca FILE] [--tls-required]] [--threads N] [--read-only]
 *
 * Exports are the volumes of every open pool, named "POOL/VOL", and "VOL" alone when no
 * other open pool has a volume of that name. The export list is read from the catalogs
 * each time a client asks, so volumes created later are served too.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread (the mask is set before any
 * thread starts) and read from a signalfd by the main thread, which then stops the server
 * (requests in flight finish), closes the pools (which commits) and exits 0.
 *
 * The command parses its own options: they are not those of the pool and vol commands.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "nbd-server/nbd-server.h"

int cmd_serve(const struct cli *cli, int argc, char **argv);

#define SERVE_DEFAULT_NBD "127.0.0.1:10809"

static const struct command serve_command = {
    .group = NULL,
    .name = "serve",
    .synopsis = "[POOL...] [--nbd ADDR:PORT|unix:PATH] [--tls-cert FILE --tls-key FILE "
                "[--tls-ca FILE] [--tls-required]] [--threads N] [--read-only]",
    .summary = "Serve the volumes of pools over NBD until SIGTERM or SIGINT.",
};

struct serve_ctx {
    struct pool **pools;
    size_t npools;
    bool readonly; /* --read-only: every export */
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
    char volname[NAME_MAX_LEN + 1];
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
        if (obj_name_parse(name, &on, NULL) < 0 || on.vol[0] == '\0' || on.snap[0] != '\0')
            return -ENOENT;
        pool = find_pool(sc, on.pool);
        if (!pool)
            return -ENOENT;
        snprintf(volname, sizeof volname, "%s", on.vol);
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
        r = vol_open(pool, volname, sc->readonly ? VOL_OPEN_RDONLY : 0, v);
    if (r < 0)
        return r;
    describe(pool, &vi, desc, desclen);
    return 0;
}

struct list_ctx {
    struct pool *pool;
    int (*fn)(void *c, const char *name, const char *desc);
    void *c;
};

static int list_vol(void *ctx, const struct vol_info *vi)
{
    struct list_ctx *l = ctx;
    char name[2 * NAME_MAX_LEN + 2], desc[256];
    snprintf(name, sizeof name, "%s/%s", pool_name(l->pool), vi->name);
    describe(l->pool, vi, desc, sizeof desc);
    return l->fn(l->c, name, desc);
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

static void export_close(void *ctx UNUSED, struct vol *v)
{
    char name[NAME_MAX_LEN + 1];
    snprintf(name, sizeof name, "%s", vol_name(v));
    struct pool *pool = vol_pool(v);
    int r = vol_close(v);
    if (r < 0)
        log_err("%s/%s: closing the volume failed: %s", pool_name(pool), name, strerror(-r));
}

/* ---------------------------------------------------------------------------------------- */
/* The command                                                                               */
/* ---------------------------------------------------------------------------------------- */

static void serve_usage(FILE *f)
{
    fprintf(f,
            "usage: cistern serve %s\n\n%s\n\n"
            "Options:\n"
            "  --nbd ADDR:PORT|unix:PATH  where to listen (default " SERVE_DEFAULT_NBD ")\n"
            "  --tls-cert FILE            PEM certificate for STARTTLS\n"
            "  --tls-key FILE             its PEM private key\n"
            "  --tls-ca FILE              require client certificates signed by this CA\n"
            "  --tls-required             refuse clients that do not start TLS\n"
            "  --threads N                reactor threads (default: one per core)\n"
            "  --read-only                serve every volume read-only\n"
            "\nWith no POOL, every registered pool is served. Exports are POOL/VOLUME, and\n"
            "VOLUME alone when only one pool has it. Runs until SIGTERM or SIGINT.\n",
            serve_command.synopsis, serve_command.summary);
}

enum { SO_NBD = 256, SO_CERT, SO_KEY, SO_CA, SO_REQUIRED, SO_THREADS, SO_RDONLY };

static int parse(int argc, char **argv, struct nbd_config *cfg, unsigned *threads, bool *readonly,
                 bool *help)
{
    static const struct option opts[] = {
        {"nbd", required_argument, NULL, SO_NBD},
        {"tls-cert", required_argument, NULL, SO_CERT},
        {"tls-key", required_argument, NULL, SO_KEY},
        {"tls-ca", required_argument, NULL, SO_CA},
        {"tls-required", no_argument, NULL, SO_REQUIRED},
        {"threads", required_argument, NULL, SO_THREADS},
        {"read-only", no_argument, NULL, SO_RDONLY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct command *cmd = &serve_command;
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
            cfg->listen = optarg;
            break;
        case SO_CERT:
            cfg->tls_cert = optarg;
            break;
        case SO_KEY:
            cfg->tls_key = optarg;
            break;
        case SO_CA:
            cfg->tls_ca = optarg;
            break;
        case SO_REQUIRED:
            cfg->tls_required = true;
            break;
        case SO_RDONLY:
            *readonly = true;
            break;
        case SO_THREADS: {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n == 0 || n > 1024)
                return usage_error(cmd, "--threads: expected a number from 1 to 1024, not '%s'",
                                   optarg);
            *threads = (unsigned)n;
            break;
        }
        case ':':
            return usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt != 0)
                return usage_error(cmd, "unknown option '-%c'", optopt);
            return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!cfg->tls_cert != !cfg->tls_key)
        return usage_error(cmd, "--tls-cert and --tls-key go together");
    if ((cfg->tls_ca || cfg->tls_required) && !cfg->tls_cert)
        return usage_error(cmd, "--tls-ca and --tls-required need --tls-cert and --tls-key");
    for (int i = optind; i < argc; i++) {
        const char *why;
        if (name_check(argv[i], &why) < 0)
            return usage_error(cmd, "invalid pool name \"%s\": %s", argv[i], why);
    }
    return 0;
}

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

int cmd_serve(const struct cli *cli, int argc, char **argv)
{
    struct nbd_config cfg = {.listen = SERVE_DEFAULT_NBD};
    struct serve_ctx sc = {0};
    unsigned threads = 0;
    bool help = false;
    char **names = NULL;
    size_t nnames = 0;
    int rc;

    rc = parse(argc, argv, &cfg, &threads, &sc.readonly, &help);
    if (rc != 0)
        return rc;
    if (help) {
        serve_usage(stdout);
        return 0;
    }
    /* A daemon says what it does, unless asked to be quieter. */
    if (getenv("CISTERN_LOG") == NULL && !cli->verbose)
        log_set_level(LOG_INFO);

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
    if (threads)
        pool_reactors_configure(threads);

    if (optind < argc) {
        names = argv + optind;
        nnames = (size_t)(argc - optind);
    } else {
        int r = registry_list(cli->state_dir, &names, &nnames);
        if (r < 0) {
            log_err("%s: cannot list the registered pools: %s", cli->state_dir, strerror(-r));
            close(sfd);
            return EXIT_RUNTIME;
        }
        if (nnames == 0)
            log_warn("no registered pools in %s: serving nothing", cli->state_dir);
    }
    sc.pools = calloc(nnames ? nnames : 1, sizeof(*sc.pools));
    rc = sc.pools ? 0 : EXIT_RUNTIME;
    for (size_t i = 0; i < nnames && rc == 0; i++) {
        if (find_pool(&sc, names[i]))
            continue; /* named twice */
        if (cli_pool_open(cli, names[i], false, &sc.pools[sc.npools]) < 0)
            rc = EXIT_RUNTIME;
        else
            sc.npools++;
    }
    if (optind >= argc)
        registry_names_free(names);
    if (rc != 0) {
        close_pools(&sc);
        close(sfd);
        return rc;
    }

    static const struct nbd_exports exports = {
        .open = export_open,
        .list = export_list,
        .close = export_close,
    };
    struct nbd_server *srv;
    int r = nbd_server_start(&cfg, &exports, &sc, &srv);
    if (r < 0) {
        log_err("serve: cannot start the NBD server on %s: %s", cfg.listen, strerror(-r));
        close_pools(&sc);
        close(sfd);
        return EXIT_RUNTIME;
    }
    log_info("serving %zu pool%s over NBD on %s%s (%u reactor threads)", sc.npools,
             sc.npools == 1 ? "" : "s", cfg.listen,
             cfg.tls_cert ? (cfg.tls_required ? ", TLS required" : ", TLS offered") : "",
             pool_reactor_count());

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
    close(sfd);
    log_info("signal %u: stopping; requests in flight finish", si.ssi_signo);
    nbd_server_stop(srv);
    rc = close_pools(&sc);
    pool_reactors_shutdown();
    log_info("stopped");
    return rc;
}
