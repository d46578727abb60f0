/*
 * main.c - the `cistern` command: global options, dispatch to a command, usage.
 *
 *     cistern [--state-dir DIR] [--control PATH] [-v] COMMAND [ARGS...]
 *
 * Global options stop at the first word that is not an option (the command); the command's
 * own options may then come before, between or after its positional arguments. Parsing
 * and checking of every argument happen before anything is opened (see cli.h for the
 * shape of a command and the exit codes). When a daemon (`cistern serve`) holds the pool a
 * command needs, the command runs there, through the control socket.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int cmd_serve(const struct cli *cli, int argc, char **argv); /* cmd_serve.c */

static void usage_all(FILE *f)
{
    static const struct {
        const struct command *cmds;
        const size_t *n;
    } groups[] = {{pool_commands, &pool_ncommands},
                  {vol_commands, &vol_ncommands},
                  {snap_commands, &snap_ncommands},
                  {iscsi_commands, &iscsi_ncommands}};

    fprintf(f, "usage: cistern [--state-dir DIR] [--control PATH] [-v] COMMAND [ARGS...]\n"
               "\n"
               "Global options:\n"
               "  --state-dir DIR   where known pools are recorded (default: $CISTERN_STATE_DIR,\n"
               "                    else " CLI_DEFAULT_STATE_DIR ")\n"
               "  --control PATH    the daemon's control socket (default: $CISTERN_CONTROL,\n"
               "                    else DIR/" CLI_CONTROL_SOCKET ")\n"
               "  -v, --verbose     log debugging messages\n"
               "  -h, --help        show this help\n"
               "  --version         show the version\n"
               "\n"
               "Commands:\n");
    for (size_t g = 0; g < ARRAY_SIZE(groups); g++)
        for (size_t i = 0; i < *groups[g].n; i++) {
            const struct command *c = &groups[g].cmds[i];
            fprintf(f, "  %s %s %s\n", c->group, c->name, c->synopsis);
        }
    fprintf(f, "  serve [POOL...] [--config FILE] [--nbd ADDR:PORT|unix:PATH] [--control PATH]\n"
               "        [--tls-cert F --tls-key F [--tls-ca F] [--tls-required]] [--read-only]\n"
               "        [--threads N] [--syslog] [--log-level LEVEL] [--iscsi [ADDR:PORT]]\n");
    fprintf(f, "\nSizes take K, M, G, T suffixes (powers of 1024). Names are POOL and "
               "POOL/VOLUME.\n"
               "Run 'cistern GROUP COMMAND --help' for one command.\n");
}

static void usage_group(FILE *f, const char *group, const struct command *cmds, size_t n)
{
    fprintf(f, "usage: cistern %s COMMAND [ARGS...]\n\nCommands:\n", group);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].summary);
}

static void usage_command(FILE *f, const struct command *cmd)
{
    static const struct {
        unsigned opt;
        const char *text;
    } help[] = {
        {OPT_FORCE, "  -f, --force       go ahead despite the safety check described above"},
        {OPT_JSON, "  --json            print JSON (sizes in bytes)"},
        {OPT_SIZE, "  -s, --size SIZE   size of the volume"},
        {OPT_GRAIN, "  -g, --grain SIZE  allocation unit, a power of two from 4K to 1M"},
        {OPT_FORMAT, "  --format FMT      raw, qcow2, vmdk, vhdx or vdi (default: detected)"},
        {OPT_RESIZE, "  --resize          resize the volume to the source's size"},
        {OPT_CREATE, "  --create          create the volume (with --size, or the source's size)"},
        {OPT_QUIET, "  -q, --quiet       no progress line"},
        {OPT_SCRIPTED, "  -H                no header; fields separated by a tab"},
        {OPT_PARSABLE, "  -p                exact sizes in bytes"},
    };

    fprintf(f, "usage: cistern %s %s %s\n\n%s\n", cmd->group, cmd->name, cmd->synopsis,
            cmd->summary);
    if (cmd->opts != 0) {
        fprintf(f, "\nOptions:\n");
        for (size_t i = 0; i < ARRAY_SIZE(help); i++)
            if (cmd->opts & help[i].opt)
                fprintf(f, "%s\n", help[i].text);
    }
}

enum { LONG_JSON = 256, LONG_FORMAT, LONG_RESIZE, LONG_CREATE };

/* Parses the command's options and positional arguments into @a. */
static int parse_command_args(const struct command *cmd, int argc, char **argv, struct cli_args *a,
                              bool *help)
{
    static const struct option all[] = {
        {"force", no_argument, NULL, 'f'},
        {"json", no_argument, NULL, LONG_JSON},
        {"size", required_argument, NULL, 's'},
        {"grain", required_argument, NULL, 'g'},
        {"format", required_argument, NULL, LONG_FORMAT},
        {"resize", no_argument, NULL, LONG_RESIZE},
        {"create", no_argument, NULL, LONG_CREATE},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* Which OPT_* each option needs; the rest are refused as unknown for this command. */
    struct {
        int val;
        unsigned opt;
        const char *name;
    } const needs[] = {
        {'f', OPT_FORCE, "--force"},
        {LONG_JSON, OPT_JSON, "--json"},
        {'s', OPT_SIZE, "--size"},
        {'g', OPT_GRAIN, "--grain"},
        {LONG_FORMAT, OPT_FORMAT, "--format"},
        {LONG_RESIZE, OPT_RESIZE, "--resize"},
        {LONG_CREATE, OPT_CREATE, "--create"},
        {'q', OPT_QUIET, "--quiet"},
        {'H', OPT_SCRIPTED, "-H"},
        {'p', OPT_PARSABLE, "-p"},
    };
    int c;

    *help = false;
    optind = 0; /* full re-initialisation of getopt for this second pass */
    opterr = 0;
    /* argv[0] is the command's last word; options may be mixed with positional arguments. */
    while ((c = getopt_long(argc, argv, ":fs:g:qhHp", all, NULL)) != -1) {
        if (c == 'h') {
            *help = true;
            return 0;
        }
        if (c == '?') {
            if (optopt != 0)
                return usage_error(cmd, "unknown option '-%c'", optopt);
            return usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
        if (c == ':') {
            return usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        }
        for (size_t i = 0; i < ARRAY_SIZE(needs); i++) {
            if (needs[i].val != c)
                continue;
            if (!(cmd->opts & needs[i].opt))
                return usage_error(cmd, "option '%s' does not apply to this command",
                                   needs[i].name);
            break;
        }
        switch (c) {
        case 'f':
            a->force = true;
            break;
        case LONG_JSON:
            a->json = true;
            break;
        case 's':
            if (a->size_str != NULL)
                return usage_error(cmd, "--size given twice");
            a->size_str = optarg;
            break;
        case 'g':
            if (a->grain_str != NULL)
                return usage_error(cmd, "--grain given twice");
            a->grain_str = optarg;
            break;
        case LONG_FORMAT:
            a->format_str = optarg;
            break;
        case LONG_RESIZE:
            a->resize = true;
            break;
        case LONG_CREATE:
            a->create = true;
            break;
        case 'q':
            a->quiet = true;
            break;
        case 'H':
            a->scripted = true;
            break;
        case 'p':
            a->parsable = true;
            break;
        default:
            return usage_error(cmd, "unexpected option");
        }
    }
    a->npos = argc - optind;
    a->pos = argv + optind;
    return 0;
}

static const struct command *find_command(const struct command *cmds, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

static int run_command(const struct cli *cli, const struct command *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct target t = {0};
    bool help;
    int r, rc;

    memset(&a, 0, sizeof a);
    r = parse_command_args(cmd, argc, argv, &a, &help);
    if (r != 0)
        return r;
    if (help) {
        usage_command(stdout, cmd);
        return 0;
    }
    r = cmd->check(cmd, &a);
    if (r != 0)
        return r;

    if (!(cmd->flags & CMD_OPENS_POOL))
        return cmd->run(cli, &a, &t);

    /* The pool opened here, or the daemon that holds it (see cli.h). */
    if (cli_target_open(cli, a.obj.pool, &t) < 0)
        return EXIT_RUNTIME;
    rc = cmd->run(cli, &a, &t);
    if (cmd->flags & CMD_CLOSES_POOL)
        t.pool = NULL; /* run() disposed of it */
    r = cli_target_close(&t);
    if (rc == 0)
        rc = r;
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option global[] = {
        {"state-dir", required_argument, NULL, 'D'}, {"control", required_argument, NULL, 'C'},
        {"verbose", no_argument, NULL, 'v'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},         {NULL, 0, NULL, 0},
    };
    struct cli cli = {0};
    const struct command *cmds, *cmd;
    size_t ncmds;
    int c, rc;

    log_set_prefix("cistern");
    /* Only warnings and errors by default: informational engine messages would clutter
     * the output of a command; CISTERN_LOG or -v asks for more. */
    if (getenv("CISTERN_LOG") == NULL)
        log_set_level(LOG_WARN);
    /* A closed output pipe is an EPIPE error of the write, reported like any other. */
    signal(SIGPIPE, SIG_IGN);

    cli.state_dir = getenv("CISTERN_STATE_DIR");
    if (cli.state_dir == NULL || *cli.state_dir == '\0')
        cli.state_dir = CLI_DEFAULT_STATE_DIR;
    cli.control = getenv("CISTERN_CONTROL");
    if (cli.control != NULL && *cli.control == '\0')
        cli.control = NULL;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:vh", global, NULL)) != -1) {
        switch (c) {
        case 'D':
            if (*optarg == '\0')
                return usage_error(NULL, "--state-dir: empty directory name");
            cli.state_dir = optarg;
            break;
        case 'C':
            if (*optarg == '\0')
                return usage_error(NULL, "--control: empty path");
            cli.control = optarg;
            break;
        case 'v':
            cli.verbose = true;
            log_set_level(LOG_DEBUG);
            break;
        case 'h':
            usage_all(stdout);
            return 0;
        case 'V':
            printf("cistern %s\n", CISTERN_VERSION);
            return 0;
        case ':':
            return usage_error(NULL, "option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt != 0)
                return usage_error(NULL, "unknown option '-%c'", optopt);
            return usage_error(NULL, "unknown option '%s'", argv[optind - 1]);
        }
    }

    if (optind >= argc) {
        usage_all(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[optind], "pool") == 0) {
        cmds = pool_commands;
        ncmds = pool_ncommands;
    } else if (strcmp(argv[optind], "vol") == 0 || strcmp(argv[optind], "volume") == 0) {
        cmds = vol_commands;
        ncmds = vol_ncommands;
    } else if (strcmp(argv[optind], "snap") == 0 || strcmp(argv[optind], "snapshot") == 0) {
        cmds = snap_commands;
        ncmds = snap_ncommands;
    } else if (strcmp(argv[optind], "iscsi") == 0) {
        cmds = iscsi_commands;
        ncmds = iscsi_ncommands;
    } else if (strcmp(argv[optind], "clone") == 0) {
        /* cistern clone SNAP NEW is cistern snap clone SNAP NEW */
        cmd = find_command(snap_commands, snap_ncommands, "clone");
        rc = run_command(&cli, cmd, argc - optind, argv + optind);
        fflush(stdout);
        pool_reactors_shutdown();
        return rc;
    } else if (strcmp(argv[optind], "serve") == 0) {
        return cmd_serve(&cli, argc - optind, argv + optind);
    } else if (strcmp(argv[optind], "help") == 0) {
        usage_all(stdout);
        return 0;
    } else {
        return usage_error(NULL, "unknown command '%s'", argv[optind]);
    }

    if (optind + 1 >= argc) {
        usage_group(stderr, argv[optind], cmds, ncmds);
        return EXIT_USAGE;
    }
    if (strcmp(argv[optind + 1], "--help") == 0 || strcmp(argv[optind + 1], "-h") == 0 ||
        strcmp(argv[optind + 1], "help") == 0) {
        usage_group(stdout, argv[optind], cmds, ncmds);
        return 0;
    }
    cmd = find_command(cmds, ncmds, argv[optind + 1]);
    if (cmd == NULL)
        return usage_error(NULL, "unknown command '%s %s'", argv[optind], argv[optind + 1]);

    rc = run_command(&cli, cmd, argc - optind - 1, argv + optind + 1);

    if (fflush(stdout) != 0 && rc == 0) {
        log_err("standard output: %s", strerror(errno));
        rc = EXIT_RUNTIME;
    }
    pool_reactors_shutdown();
    return rc;
}
