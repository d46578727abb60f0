/*
 * name.c - object names: POOL, POOL/VOLUME, POOL/VOLUME@SNAPSHOT.
 *
 * A component is 1..NAME_MAX_LEN bytes of [A-Za-z0-9_.:+-] and does not start with '.'
 * (no hidden or relative-looking names) or '-' (no names that parse as options). The
 * rules are those of zfs and rbd, narrowed to what is safe in a path, a URL, an NBD export
 * name and an iSCSI IQN suffix. Reasons are static strings, so callers can keep them.
 */
#include "common/common.h"

#include <string.h>

enum reason {
    R_EMPTY,
    R_TOO_LONG,
    R_SLASH,
    R_AT,
    R_CHAR,
    R_START,
    R_COUNT,
};

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define REASONS(part)                                                                              \
    {                                                                                              \
        [R_EMPTY] = part "empty",                                                                  \
        [R_TOO_LONG] = part "longer than " STRINGIFY(NAME_MAX_LEN) " bytes",                       \
        [R_SLASH] = part "contains '/'", [R_AT] = part "contains '@'",                             \
        [R_CHAR] = part "contains a character that is not a letter, digit or one of _ . : + -",    \
        [R_START] = part "starts with '.' or '-'",                                                 \
    }

/* Row 0: a bare component (name_check); rows 1-3: a part of an object name. */
enum part { PART_NONE, PART_POOL, PART_VOL, PART_SNAP };
static const char *const reasons[][R_COUNT] = {
    [PART_NONE] = REASONS(""),
    [PART_POOL] = REASONS("pool name: "),
    [PART_VOL] = REASONS("volume name: "),
    [PART_SNAP] = REASONS("snapshot name: "),
};

static bool name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '+' || c == '-';
}

/* Checks the len bytes at s; returns R_COUNT when they form a valid component. */
static enum reason check_component(const char *s, size_t len)
{
    bool bad_char = false;

    if (len == 0)
        return R_EMPTY;
    if (len > NAME_MAX_LEN)
        return R_TOO_LONG;
    /* '/' and '@' get their own reasons: they are the likely mistakes. */
    if (memchr(s, '/', len) != NULL)
        return R_SLASH;
    if (memchr(s, '@', len) != NULL)
        return R_AT;
    for (size_t i = 0; i < len; i++)
        bad_char |= !name_char_ok((unsigned char)s[i]);
    if (bad_char)
        return R_CHAR;
    if (s[0] == '.' || s[0] == '-')
        return R_START;
    return R_COUNT;
}

static int fail(enum part part, enum reason r, const char **why)
{
    if (why != NULL)
        *why = reasons[part][r];
    return -EINVAL;
}

int name_check(const char *s, const char **why)
{
    enum reason r;

    if (s == NULL)
        return fail(PART_NONE, R_EMPTY, why);
    /* Never scan further than needed to know the name is too long. */
    r = check_component(s, strnlen(s, NAME_MAX_LEN + 1));
    return r == R_COUNT ? 0 : fail(PART_NONE, r, why);
}

/* Checks one part and copies it into dst (NAME_MAX_LEN + 1 bytes). */
static int take_part(enum part part, const char *s, size_t len, char *dst, const char **why)
{
    enum reason r = check_component(s, len);

    if (r != R_COUNT)
        return fail(part, r, why);
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

int obj_name_parse(const char *s, struct obj_name *out, const char **why)
{
    const char *slash, *at, *end;
    int ret;

    memset(out, 0, sizeof *out);
    if (s == NULL || *s == '\0') {
        if (why != NULL)
            *why = "empty";
        return -EINVAL;
    }
    end = s + strlen(s);

    slash = strchr(s, '/');
    if (slash == NULL) {
        if (strchr(s, '@') != NULL) {
            if (why != NULL)
                *why = "a snapshot needs a volume: POOL/VOLUME@SNAPSHOT";
            return -EINVAL;
        }
        ret = take_part(PART_POOL, s, (size_t)(end - s), out->pool, why);
        goto done;
    }
    if (strchr(slash + 1, '/') != NULL) {
        if (why != NULL)
            *why = "more than one '/': expected POOL/VOLUME or POOL/VOLUME@SNAPSHOT";
        return -EINVAL;
    }

    ret = take_part(PART_POOL, s, (size_t)(slash - s), out->pool, why);
    if (ret < 0)
        goto done;

    at = strchr(slash + 1, '@');
    if (at == NULL) {
        ret = take_part(PART_VOL, slash + 1, (size_t)(end - slash - 1), out->vol, why);
        goto done;
    }
    ret = take_part(PART_VOL, slash + 1, (size_t)(at - slash - 1), out->vol, why);
    if (ret < 0)
        goto done;
    ret = take_part(PART_SNAP, at + 1, (size_t)(end - at - 1), out->snap, why);

done:
    if (ret < 0)
        memset(out, 0, sizeof *out);
    return ret;
}
