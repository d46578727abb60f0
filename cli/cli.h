/*
 * cli.h - what the files of the `cistern` command share.
 *
 * Shape of a command
 *   Every command is an entry of the table in main.c: its words ("vol create"), the options it
 *   accepts, a check() that turns the positional arguments and option strings into typed
 *   fields of struct cli_args (a bad argument is a usage error, exit 2, naming the argument),
 *   and a run() that does the work. Commands that act on one registered pool say so
 *   (CMD_OPENS_POOL): main.c finds that pool (cli_target_open) and hands run() a struct
 *   target: the pool opened here under its exclusive lock, or, when a daemon (`cistern
 *   serve`) holds it, a connection to the daemon's control socket. run() never opens it
 *   itself.
 *
 * Operations
 *   The work of a command on an open pool is an operation of ops.c: a function taking the
 *   struct pool and the typed arguments and producing a json-c result. A command calls it
 *   through op_call(), which runs it here on target.pool, or sends it to the daemon, which
 *   runs the very same function on the pool it holds and replies with the same result
 *   (control.c). The command then prints the result as a table or, with --json, as it is.
 *
 * Exit codes
 *   0 success, 1 a runtime error (reported as "cistern: error: OBJECT: CAUSE"), 2 a usage
 *   error (bad command, option or argument).
 *
 * Threads
 *   The command runs on the main thread. Volume I/O completions of import and export arrive
 *   on the pool's reactor threads and only touch the transfer window (transfer.c). In the
 *   daemon, operations run on the control thread, concurrently with NBD requests on the
 *   reactors: the library calls they make take the pool's locks themselves.
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

#define CLI_CONTROL_SOCKET "control.sock" /* in the state directory */

/* Global options, given before the command. */
struct cli {
    const char *state_dir;
    const char *control; /* the daemon's control socket; NULL: STATE_DIR/control.sock */
    bool verbose;
};

/* The control socket's path for @cli (STATE_DIR/control.sock unless given). Free it. */
char *cli_control_path(const struct cli *cli);

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

#define SNAP_MAX_VOLUMES 16 /* volumes in one snap create */

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
    const char *member;   /* pool add: the member, as an absolute path (storage for members) */
    const char *location; /* import SOURCE, export DEST */
    struct setting_arg settings[SETTINGS_MAX];
    unsigned nsettings;
    char to[NAME_MAX_LEN + 1];                          /* snap diff: the later snapshot */
    char more[SNAP_MAX_VOLUMES - 1][NAME_MAX_LEN + 1]; /* snap create: more volumes */
    unsigned nmore;
    struct json_object *iscsi; /* iscsi.* operations: their settings (ARG_ISCSI), checked by
                                  the operation; not owned */
};

enum {
    CMD_OPENS_POOL = 1u << 0,  /* main finds args.obj.pool (here or in the daemon) for run() */
    CMD_CLOSES_POOL = 1u << 1, /* run() disposes of the pool itself (pool destroy) */
};

struct ctl_client;

/* Where a command's pool is: exactly one of the two is set (both NULL for commands that do
 * not open a pool). */
struct target {
    struct pool *pool;      /* opened by this process */
    struct ctl_client *ctl; /* held by the daemon, reached through its control socket */
};

struct command {
    const char *group; /* "pool", "vol", or NULL for a top-level command */
    const char *name;
    const char *synopsis; /* arguments after the command words */
    const char *summary;
    unsigned opts;  /* OPT_* accepted */
    unsigned flags; /* CMD_* */
    int (*check)(const struct command *cmd, struct cli_args *a);
    int (*run)(const struct cli *cli, const struct cli_args *a, const struct target *t);
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
/* POOL/VOLUME or POOL/VOLUME@SNAPSHOT: where a snapshot reads like a volume. */
int arg_vol_or_snap_name(const struct command *cmd, const char *what, const char *s,
                         struct obj_name *out);
/* "VOLUME" or "VOLUME@SNAPSHOT" of @o, as the volume layer names it (2 * NAME_MAX_LEN + 2). */
void obj_point(const struct obj_name *o, char *buf, size_t len);
int arg_pool_or_vol_name(const struct command *cmd, const char *what, const char *s,
                         struct obj_name *out);

/* The command tables of cmd_pool.c and cmd_vol.c. */
extern const struct command pool_commands[];
extern const size_t pool_ncommands;
extern const struct command vol_commands[];
extern const struct command snap_commands[];
extern const size_t snap_ncommands;
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

enum {
    OPEN_QUIET = 1u << 0,      /* log nothing */
    OPEN_QUIET_BUSY = 1u << 1, /* log nothing when the pool is in use (-EBUSY) */
};

/*
 * Opens the registered pool @name and attaches its volumes. On failure logs
 * "NAME: cause" (unless @flags say otherwise) and returns a negative errno.
 */
int cli_pool_open(const struct cli *cli, const char *name, unsigned flags, struct pool **out);

/*
 * Finds pool @name for a command: when the daemon holds it, a connection to the daemon;
 * otherwise the pool opened here (cli_pool_open). Logs the cause and returns a negative
 * errno when neither is possible.
 */
int cli_target_open(const struct cli *cli, const char *name, struct target *t);

/* Closes the pool or the connection; returns 0 or EXIT_RUNTIME (a failed final commit). */
int cli_target_close(struct target *t);

/*
 * For the listings over several pools: runs operation @op (no arguments but the pool) on
 * each pool of @names, through the daemon when it holds the pool (one connection for all),
 * else on the pool opened here (cli_pool_open with @open_flags), and gives @each the pool's
 * name and either the result (@res, to be released by the caller of @each: do not keep it
 * without json_object_get) or why there is none: @open_err < 0 when the pool could not be
 * opened, else 0 with @res NULL when the operation failed. Returns 0, or EXIT_RUNTIME when a
 * pool opened here failed to close.
 */
int cli_each_pool(const struct cli *cli, char *const *names, size_t n, const char *op,
                  unsigned open_flags,
                  void (*each)(void *ctx, const char *name, int open_err, struct json_object *res),
                  void *ctx);

/*
 * When the daemon holds pool @name, logs "pool NAME is served by the daemon (pid N): stop
 * it first" and returns true: for the commands that must not run while it is served
 * (pool export, import, destroy).
 */
bool cli_refuse_served(const struct cli *cli, const char *name);

/* A short English cause for a pool_open() failure of pool @name (for listings). */
const char *pool_open_cause(int err);

/* Closes, reporting a failed final commit; returns 0 or EXIT_RUNTIME. */
int cli_pool_close(struct pool *pool);

/* The cause of a volume catalog error, in words. */
const char *vol_error_cause(int err);

/* ---------------------------------------------------------------------------------------- */
/* Operations (ops.c): the cores shared by the command line and the daemon                    */
/* ---------------------------------------------------------------------------------------- */

struct json_object;

/* An operation's failure: a negative errno and the message that names the object. */
struct op_err {
    int err;
    char msg[512];
};

/* Fills @e and returns @err (negative). */
int op_fail(struct op_err *e, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* What an operation may need besides the pool. */
struct op_env {
    const char *state_dir; /* for the registry (pool.add) */
    /* How many NBD connections have volume @vol of @pool open; NULL when nothing is served
     * (outside the daemon). Thread-safe. */
    unsigned (*clients)(void *ctx, struct pool *pool, const char *vol);
    /* Disconnects the clients that have @vol of @pool open and waits (bounded) for them to
     * let go; returns how many still hold it. NULL outside the daemon. */
    unsigned (*evict)(void *ctx, struct pool *pool, const char *vol);
    void *ctx;
};

/* Arguments of an operation, as keys of the request's "args" object. */
enum {
    ARG_POOL = 1u << 0,     /* "pool": a pool name */
    ARG_VOLUME = 1u << 1,   /* "volume": a volume name (with "pool") */
    ARG_SIZE = 1u << 2,     /* "size": bytes, a positive multiple of 4096 */
    ARG_DELTA = 1u << 3,    /* "delta": signed bytes to grow (+) or shrink (-) by */
    ARG_GRAIN = 1u << 4,    /* "grain": bytes, a power of two from 4K to 1M */
    ARG_FORCE = 1u << 5,    /* "force": boolean */
    ARG_NEW_NAME = 1u << 6, /* "new_name": a volume name */
    ARG_MEMBER = 1u << 7,   /* "member": an absolute path */
    ARG_SETTINGS = 1u << 8, /* "settings": {"cache_bytes": N, ...} */
    ARG_SNAP = 1u << 9,     /* "snap": a snapshot name (of "volume") */
    ARG_TO = 1u << 10,      /* "to": a later snapshot name (snap diff) */
    ARG_VOLUMES = 1u << 11, /* "volumes": more volume names (snap create of several) */
    ARG_ISCSI = 1u << 12,   /* "iscsi": an object of iSCSI settings (cmd_iscsi.c) */
};

enum {
    OP_EACH_POOL = 1u << 0, /* without "pool", runs on every pool; results are concatenated */
};

struct op {
    const char *name;            /* "vol.create" */
    unsigned required, optional; /* ARG_* */
    unsigned flags;              /* OP_* */
    const char *list_key;        /* OP_EACH_POOL: the array of the result to concatenate */
    /* Runs on @pool (open, volumes attached) with checked arguments; sets *out (owned by
     * the caller) or fills @e. Returns 0 or a negative errno. */
    int (*run)(const struct op_env *env, struct pool *pool, const struct cli_args *a,
               struct json_object **out, struct op_err *e);
};

/* The operation named @name, or NULL. */
const struct op *op_find(const char *name);

/*
 * Fills @a from a request's "args" (untrusted): every key must be one @op takes, of the
 * right type and range; the required ones must be there. Strings in @a point into @args.
 * Returns 0, or -EINVAL with @e naming the argument.
 */
int op_args_decode(const struct op *op, struct json_object *args, struct cli_args *a,
                   struct op_err *e);

/* The "args" object of a request for @op from parsed command-line arguments. */
struct json_object *op_args_encode(const struct op *op, const struct cli_args *a);

/*
 * Runs operation @name for a command on @t: here, or in the daemon. On failure logs the
 * message once and returns the negative errno. *out is the result, to put.
 */
int op_call(const struct cli *cli, const struct target *t, const char *name,
            const struct cli_args *a, struct json_object **out);
/* The same, logging nothing: the failure is left in @e. */
int op_call_err(const struct cli *cli, const struct target *t, const char *name,
                const struct cli_args *a, struct json_object **out, struct op_err *e);

/* `pool set` keys: the id of @key (length @len), or -1. Ranges are checked by
 * setting_check. */
int setting_lookup(const char *key, size_t len);
const char *setting_name(int id);
bool setting_is_size(int id);
/* NULL when @v is in range for setting @id, else a reason ("1 to 100"). */
const char *setting_check(int id, uint64_t v);

/* Checks a volume size: NULL when fine, else why not. */
const char *vol_size_problem(uint64_t size);

/* Small readers of results: 0 (or "") when the key is absent. */
uint64_t res_u64(struct json_object *o, const char *key);
const char *res_str(struct json_object *o, const char *key);
bool res_bool(struct json_object *o, const char *key);

/* ---------------------------------------------------------------------------------------- */
/* The control socket (control.c: the daemon's side; control_client.c: the commands' side)   */
/* ---------------------------------------------------------------------------------------- */

#define CONTROL_MAX_LINE (64u << 10) /* bytes of one request, newline included */

/*
 * Connects to the daemon's control socket at @path and asks who it is (daemon.info).
 * Returns 0, or -ENOENT / -ECONNREFUSED when no daemon listens there (quietly), or another
 * negative errno (logged).
 */
int ctl_connect(const char *path, struct ctl_client **out);
void ctl_close(struct ctl_client *c); /* accepts NULL */

/* True when the daemon holds pool @name open. */
bool ctl_holds(const struct ctl_client *c, const char *name);
long ctl_pid(const struct ctl_client *c);
/* The NBD URI of export POOL/VOL of the daemon (to free), or NULL with the cause logged. */
char *ctl_nbd_uri(const struct ctl_client *c, const char *pool, const char *vol);

/*
 * Sends one request and waits for its reply. @args is consumed. On "ok": 0 and *result (to
 * put). On an error reply or a broken connection: the negative errno, with @e filled.
 */
int ctl_call(struct ctl_client *c, const char *op, struct json_object *args,
             struct json_object **result, struct op_err *e);

struct control_server;

struct control_config {
    const char *path;          /* where to listen */
    struct pool *const *pools; /* the pools the daemon holds */
    size_t npools;
    struct op_env env;
    const char *nbd_listen; /* for daemon.info; NULL when NBD is not served */
    bool nbd_tls_required, readonly;
};

/*
 * Binds the control socket (mode 0600; a stale socket nobody answers on is replaced, a live
 * one is -EADDRINUSE) and starts the control thread. @cfg must outlive the server. Errors
 * are logged.
 */
int control_start(const struct control_config *cfg, struct control_server **out);

/* Stops the thread, closes every connection and removes the socket. Accepts NULL. */
void control_stop(struct control_server *cs);

/*
 * Answers one request line (without its newline): the reply line, to free. Used by the
 * control thread; public for tests.
 */
char *control_handle(const struct control_config *cfg, const char *line, size_t len);

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

int cmd_vol_import(const struct cli *cli, const struct cli_args *a, const struct target *t);
int cmd_vol_export(const struct cli *cli, const struct cli_args *a, const struct target *t);

/* "qcow2" -> FMT_QCOW2; -EINVAL when unknown. */
int image_format_parse(const char *s, enum image_format *out);
const char *image_format_name(enum image_format f);

/* ---------------------------------------------------------------------------------------- */
/* iSCSI (serve_iscsi.c: the daemon's target; cmd_iscsi.c: `cistern iscsi`, its settings)    */
/* ---------------------------------------------------------------------------------------- */

#define ISCSI_IQN_PREFIX "iqn.2026-11.org.cistern:" /* + POOL: the pool's target */
#define ISCSI_CONF_FILE "iscsi.json"                /* per-target settings, in STATE_DIR */

/* The daemon's iSCSI settings (command line and configuration file); NULL when not given. */
struct iscsi_serve_opts {
    const char *listen; /* ADDR:PORT, "yes" (127.0.0.1:3260) or "none" */
    const char *auth;   /* "chap" (the default) or "none" */
    const char *chap_user, *chap_secret, *mutual_user, *mutual_secret;
    const char *initiators; /* allowed initiator names, separated by commas or spaces */
    const char *nop_interval, *nop_timeout; /* seconds: idle sessions pinged, dropped */
    const char *physical_block;             /* "logical" (the default) or "grain" */
};
/* A configuration key of the daemon's file: 1 taken, 0 not an iSCSI key, -1 a bad value. */
int iscsi_serve_config_key(struct iscsi_serve_opts *o, const char *key, const char *val);
void iscsi_serve_opts_merge(struct iscsi_serve_opts *o, const struct iscsi_serve_opts *file);
/* The address to listen on, or NULL when iSCSI is off. */
const char *iscsi_serve_listen(const struct iscsi_serve_opts *o);

struct iscsi_serve;
/* Starts the target over @pools (which must outlive it). Errors are logged. */
int iscsi_serve_start(const struct cli *cli, struct pool *const *pools, size_t npools,
                      bool readonly, const struct iscsi_serve_opts *o, struct iscsi_serve **out);
void iscsi_serve_stop(struct iscsi_serve *s); /* accepts NULL */
/* Logical units that have record @id (a volume or snapshot) of @pool open, whatever its
 * name is now. Thread-safe; accepts NULL. */
unsigned iscsi_serve_clients(struct iscsi_serve *s, struct pool *pool, uint64_t id);
/* Ends the iSCSI sessions that use record @id of @pool and waits (30 s at most) until its
 * LUs are closed. Returns how many LUs still hold it. Accepts NULL. */
unsigned iscsi_serve_evict(struct iscsi_serve *s, struct pool *pool, uint64_t id);
/* LUN numbers changed: sessions look their LUNs up again. No-op outside the daemon. */
void iscsi_serve_luns_changed(void);
/* Where persistent reservations made with APTPL are kept: STATE_DIR/iscsi-pr (malloc'd;
 * NULL when out of memory or @state_dir is NULL). */
char *iscsi_pr_dir(const char *state_dir);

/* STATE_DIR/iscsi.json: {"targets": {"POOL": {"auth", "chap_user", "chap_secret",
 * "mutual_user", "mutual_secret", "initiators": [...]}}}. Load gives {} when absent;
 * save replaces the file atomically (mode 0600: it holds secrets). */
int iscsi_conf_load(const char *state_dir, struct json_object **out);
int iscsi_conf_save(const char *state_dir, struct json_object *conf);

extern const struct command iscsi_commands[];
extern const size_t iscsi_ncommands;
/* The iscsi.* operations (iscsi.show, iscsi.lun, iscsi.auth, iscsi.initiator); op_find
 * finds them too. */
extern const struct op iscsi_ops[];
extern const size_t iscsi_nops;

#endif
