/*
 * cli.h - what the files of the `cistern` command share.
 *
 * Shape of a command
 *   Every command is an entry of the table in main.c: its words ("vol create"), the options it
 *   accepts, a check() that turns the positional arguments and option strings into typed
 *   fields of struct cli_args (a bad argument is a usage error, exit 2, naming the argument),
 *   and a run() that does the work. Commands that act on one registered pool say so
 *   (CMD_OPENS_POOL): main.c opens that pool (cli_pool_open) and hands run() the struct pool;
 *   run() never opens it itself. That split is what lets a daemon, later, call the same run()
 *   with a pool it already holds open.
 *
 * Exit codes
 *   0 success, 1 a runtime error (reported as "cistern: error: OBJECT: CAUSE"), 2 a usage
 *   error (bad command, option or argument).
 *
 * Threads
 *   The command runs on the main thread. Volume I/O completions of import and export arrive
 *   on the pool's reactor threads and only touch the transfer window (transfer.c).
 */
#ifndef CISTERN_CLI_H
#define CISTERN_CLI_H

/* asprintf, getopt_long, SEEK_DATA, posix_memalign... (cli.h is every file's first include) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/common.h"
#include "pool/pool.h"
#include "volumes/volumes.h"

#ifndef CISTERN_VERSION
#define CISTERN_VERSION "0.1.0"
#endif

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

#define CLI_DEFAULT_STATE_DIR "/var/lib/cistern"

/* Global options, given before the command. */
struct cli {
    const char *state_dir;
    bool verbose;
};

/* ---------------------------------------------------------------------------------------- */
/* Arguments                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Options a command may accept (struct command.opts). */
enum {
    OPT_FORCE = 1u << 0,    /* -f, --force */
    OPT_JSON = 1u << 1,     /* --json */
    OPT_SIZE = 1u << 2,     /* -s, --size SIZE */
    OPT_GRAIN = 1u << 3,    /* -g, --grain SIZE */
    OPT_FORMAT = 1u << 4,   /* --format FMT */
    OPT_RESIZE = 1u << 5,   /* --resize */
    OPT_CREATE = 1u << 6,   /* --create */
    OPT_QUIET = 1u << 7,    /* -q, --quiet */
    OPT_SCRIPTED = 1u << 8, /* -H: no header, fields separated by one tab */
    OPT_PARSABLE = 1u << 9, /* -p: exact byte counts */
};

#define SETTINGS_MAX 8

/* One KEY=VALUE of `pool set`, checked. */
struct setting_arg {
    enum { SET_CACHE_BYTES, SET_COMMIT_INTERVAL_MS, SET_DIRTY_BOUND, SET_LOW_SPACE_PCT } key;
    uint64_t value;
};

/* Image formats of import and export. */
enum image_format { FMT_AUTO = 0, FMT_RAW, FMT_QCOW2, FMT_VMDK, FMT_VHDX, FMT_VDI };

struct cli_args {
    /* Option flags and raw option values, as given. */
    bool force, json, resize, create, quiet, scripted, parsable;
    const char *size_str;   /* NULL when --size was not given */
    const char *grain_str;  /* NULL when --grain was not given */
    const char *format_str; /* NULL when --format was not given */
    int npos;
    char **pos;

    /* Typed values, filled by the command's check(). */
    uint64_t size;  /* --size, bytes (its magnitude when relative) */
    int size_rel;   /* vol resize: +1 for +SIZE, -1 for -SIZE, 0 for an absolute size */
    uint32_t grain; /* --grain, bytes */
    enum image_format format;
    struct obj_name obj;             /* the POOL or POOL/VOL argument */
    char new_name[NAME_MAX_LEN + 1]; /* vol rename: the new volume name */
    const char *const *members;      /* pool create/import/add: member paths */
    unsigned nmembers;
    const char *location; /* import SOURCE, export DEST */
    struct setting_arg settings[SETTINGS_MAX];
    unsigned nsettings;
};

enum {
    CMD_OPENS_POOL = 1u << 0,  /* main opens args.obj.pool and passes it to run() */
    CMD_CLOSES_POOL = 1u << 1, /* run() disposes of the pool itself (pool destroy) */
};

struct command {
    const char *group; /* "pool", "vol", or NULL for a top-level command */
    const char *name;
    const char *synopsis; /* arguments after the command words */
    const char *summary;
    unsigned opts;  /* OPT_* accepted */
    unsigned flags; /* CMD_* */
    int (*check)(const struct command *cmd, struct cli_args *a);
    int (*run)(const struct cli *cli, const struct cli_args *a, struct pool *pool);
};

/*
 * Prints "cistern: GROUP NAME: message" and the command's usage line to stderr; returns
 * EXIT_USAGE so that check() can `return usage_error(...)`.
 */
int usage_error(const struct command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Checked parsing of single arguments; each reports a usage error naming @what and returns
 * 0 or EXIT_USAGE. */
int arg_size(const struct command *cmd, const char *what, const char *s, uint64_t *out);
int arg_pool_name(const struct command *cmd, const char *what, const char *s, struct obj_name *out);
int arg_vol_name(const struct command *cmd, const char *what, const char *s, struct obj_name *out);
int arg_pool_or_vol_name(const struct command *cmd, const char *what, const char *s,
                         struct obj_name *out);

/* The command tables of cmd_pool.c and cmd_vol.c. */
extern const struct command pool_commands[];
extern const size_t pool_ncommands;
extern const struct command vol_commands[];
extern const size_t vol_ncommands;

/* ---------------------------------------------------------------------------------------- */
/* Registry: the state directory, one file per known pool (registry.c)                       */
/* ---------------------------------------------------------------------------------------- */

struct pool_entry {
    char name[NAME_MAX_LEN + 1];
    uint8_t uuid[16];
    unsigned nmembers;
    char **members; /* absolute paths */
};

/* Frees what an entry holds (not the entry). Accepts a zeroed entry. */
void pool_entry_clear(struct pool_entry *e);

/* Reads DIR/pools/NAME.json. -ENOENT when the pool is not registered; other errors are
 * logged (a damaged file names itself). */
int registry_load(const char *dir, const char *name, struct pool_entry *out);

/* Writes the entry atomically (temporary file, fsync, rename, fsync of the directory). */
int registry_save(const char *dir, const struct pool_entry *e);

/* Removes the entry; -ENOENT when it is not there. */
int registry_remove(const char *dir, const char *name);

/* The registered pool names, sorted. *names is a NULL-terminated array to free with
 * registry_names_free. A missing state directory is an empty list. */
int registry_list(const char *dir, char ***names, size_t *n);
void registry_names_free(char **names);

/* ---------------------------------------------------------------------------------------- */
/* Opening pools (open.c)                                                                    */
/* ---------------------------------------------------------------------------------------- */

/*
 * Opens the registered pool @name and attaches its volumes. On failure logs
 * "NAME: cause" (unless @quiet) and returns a negative errno.
 */
int cli_pool_open(const struct cli *cli, const char *name, bool quiet, struct pool **out);

/* A short English cause for a pool_open() failure of pool @name (for listings). */
const char *pool_open_cause(int err);

/* Closes, reporting a failed final commit; returns 0 or EXIT_RUNTIME. */
int cli_pool_close(struct pool *pool);

/* The cause of a volume catalog error, in words. */
const char *vol_error_cause(int err);

/* ---------------------------------------------------------------------------------------- */
/* Output (output.c)                                                                         */
/* ---------------------------------------------------------------------------------------- */

struct table;

/* @align has one letter per column: 'l' or 'r'. */
struct table *table_new(unsigned ncols, const char *const *headers, const char *align);
/* Adds a row of @ncols strings (copied). */
void table_add(struct table *t, const char *const *cells);
/* Prints aligned columns with a header line, or (scripted) tab-separated without one. */
void table_print(const struct table *t, FILE *f, bool scripted);
void table_free(struct table *t);

/* A size for people ("1.5G"), or the exact byte count when @exact. @buf has 24 bytes. */
#define SIZE_BUF 24
const char *size_str(uint64_t bytes, bool exact, char buf[SIZE_BUF]);

struct json_object;
/* Prints @o pretty to stdout followed by a newline, and releases it. */
void json_print(struct json_object *o);

/* A progress line on stderr when it is a terminal; all calls are no-ops otherwise. */
struct progress {
    bool on;
    uint64_t total; /* 0 when unknown */
    uint64_t start_ns, last_ns;
    const char *what;
};
void progress_start(struct progress *p, const char *what, uint64_t total, bool quiet);
void progress_update(struct progress *p, uint64_t done);
void progress_end(struct progress *p);

/* ---------------------------------------------------------------------------------------- */
/* Import and export (transfer.c, endpoint.c)                                                */
/* ---------------------------------------------------------------------------------------- */

int cmd_vol_import(const struct cli *cli, const struct cli_args *a, struct pool *pool);
int cmd_vol_export(const struct cli *cli, const struct cli_args *a, struct pool *pool);

/* "qcow2" -> FMT_QCOW2; -EINVAL when unknown. */
int image_format_parse(const char *s, enum image_format *out);
const char *image_format_name(enum image_format f);

#endif
