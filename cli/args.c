/*
 * args.c - checked parsing of command-line arguments, and usage errors.
 *
 * Every bad argument ends here: the message names the command, the argument and what is
 * wrong with it, the command's usage line follows, and the exit code is 2. Nothing is
 * opened before all arguments are checked, so a usage error never leaves anything behind.
 */
#include "cli/cli.h"

#include <stdarg.h>
#include <string.h>

static void print_command_words(FILE *f, const struct command *cmd)
{
    if (cmd->group != NULL)
        fprintf(f, "%s %s", cmd->group, cmd->name);
    else
        fprintf(f, "%s", cmd->name);
}

int usage_error(const struct command *cmd, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("cistern: ", stderr);
    if (cmd != NULL) {
        print_command_words(stderr, cmd);
        fputs(": ", stderr);
    }
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cmd != NULL) {
        fputs("usage: cistern ", stderr);
        print_command_words(stderr, cmd);
        fprintf(stderr, " %s\n", cmd->synopsis);
    } else {
        fputs("Try 'cistern --help'.\n", stderr);
    }
    return EXIT_USAGE;
}

int arg_size(const struct command *cmd, const char *what, const char *s, uint64_t *out)
{
    int r;

    if (s == NULL || *s == '\0')
        return usage_error(cmd, "%s: missing size", what);
    r = parse_size(s, out);
    if (r == -ERANGE)
        return usage_error(cmd, "%s: size '%s' is too large", what, s);
    if (r < 0)
        return usage_error(cmd,
                           "%s: invalid size '%s' (expected a number of bytes with an optional "
                           "K, M, G, T or P suffix)",
                           what, s);
    return 0;
}

/* Parses @s as an object name and checks which parts it has. */
static int arg_name(const struct command *cmd, const char *what, const char *s,
                    struct obj_name *out, bool want_vol, bool allow_vol, bool allow_snap)
{
    const char *why = NULL;

    if (s == NULL || *s == '\0')
        return usage_error(cmd, "%s: missing name", what);
    if (obj_name_parse(s, out, &why) < 0)
        return usage_error(cmd, "%s: invalid name '%s': %s", what, s,
                           why != NULL ? why : "not a valid name");
    if (out->snap[0] != '\0' && !allow_snap)
        return usage_error(cmd, "%s: '%s' names a snapshot; a %s is expected here", what, s,
                           want_vol ? "volume (POOL/VOLUME)" : "pool");
    if (want_vol && out->vol[0] == '\0')
        return usage_error(cmd, "%s: '%s' is not a volume name (expected POOL/VOLUME)", what, s);
    if (!want_vol && !allow_vol && out->vol[0] != '\0')
        return usage_error(cmd, "%s: '%s' is not a pool name (expected POOL)", what, s);
    return 0;
}

int arg_pool_name(const struct command *cmd, const char *what, const char *s, struct obj_name *out)
{
    return arg_name(cmd, what, s, out, false, false, false);
}

int arg_vol_name(const struct command *cmd, const char *what, const char *s, struct obj_name *out)
{
    return arg_name(cmd, what, s, out, true, true, false);
}

int arg_vol_or_snap_name(const struct command *cmd, const char *what, const char *s,
                         struct obj_name *out)
{
    return arg_name(cmd, what, s, out, true, true, true);
}

void obj_point(const struct obj_name *o, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", o->vol, o->snap[0] ? "@" : "", o->snap);
}

int arg_pool_or_vol_name(const struct command *cmd, const char *what, const char *s,
                         struct obj_name *out)
{
    return arg_name(cmd, what, s, out, false, true, false);
}
