/*
 * registry.c - the state directory: which pools this host knows, and their members.
 *
 *     DIR/pools/NAME.json   {"name": "tank", "uuid": "...", "members": ["/dev/sdb", ...]}
 *
 * Like zpool.cache, it only records where to find a pool: the members' labels remain the
 * truth, and opening a pool checks them (open.c). Each file is replaced atomically: written
 * to a temporary file in the same directory, fsynced, renamed over the old one, and the
 * directory fsynced, so a crash leaves either the old entry or the new one, never a torn
 * file. Temporary files start with '.' and are ignored by registry_list().
 */
#include "cli/cli.h"

#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REGISTRY_FILE_MAX (1u << 20) /* a pool file is a few hundred bytes */

void pool_entry_clear(struct pool_entry *e)
{
    if (e->members != NULL) {
        for (unsigned i = 0; i < e->nmembers; i++)
            free(e->members[i]);
        free(e->members);
    }
    memset(e, 0, sizeof *e);
}

static char *pools_dir(const char *dir)
{
    char *p;

    if (asprintf(&p, "%s/pools", dir) < 0)
        return NULL;
    return p;
}

static char *entry_path(const char *dir, const char *name)
{
    char *p;

    if (asprintf(&p, "%s/pools/%s.json", dir, name) < 0)
        return NULL;
    return p;
}

/* mkdir -p for the two levels we own; an existing directory is fine. */
static int make_dirs(const char *dir)
{
    CLEANUP_FREE char *pd = pools_dir(dir);

    if (pd == NULL)
        return -ENOMEM;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int r = -errno;
        log_err("state directory %s: %s", dir, strerror(-r));
        return r;
    }
    if (mkdir(pd, 0755) < 0 && errno != EEXIST) {
        int r = -errno;
        log_err("state directory %s: %s", pd, strerror(-r));
        return r;
    }
    return 0;
}

static int read_file(const char *path, char **out)
{
    CLEANUP_CLOSE int fd = open(path, O_RDONLY | O_CLOEXEC);
    CLEANUP_FREE char *buf = NULL;
    size_t len = 0;
    ssize_t n;

    if (fd < 0)
        return -errno;
    buf = malloc(REGISTRY_FILE_MAX + 1);
    if (buf == NULL)
        return -ENOMEM;
    while ((n = read(fd, buf + len, REGISTRY_FILE_MAX - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        len += (size_t)n;
        if (len == REGISTRY_FILE_MAX)
            return -EFBIG;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    return 0;
}

/* Fills @out from the parsed document; -EUCLEAN with *why set when it is not an entry. */
static int entry_from_json(struct json_object *root, const char *name, struct pool_entry *out,
                           const char **why)
{
    struct json_object *jname, *juuid, *jmembers;
    size_t n;

    if (!json_object_is_type(root, json_type_object) ||
        !json_object_object_get_ex(root, "name", &jname) ||
        !json_object_object_get_ex(root, "uuid", &juuid) ||
        !json_object_object_get_ex(root, "members", &jmembers) ||
        !json_object_is_type(jname, json_type_string) ||
        !json_object_is_type(juuid, json_type_string) ||
        !json_object_is_type(jmembers, json_type_array)) {
        *why = "not a pool entry (needs name, uuid and members)";
        return -EUCLEAN;
    }
    if (strcmp(json_object_get_string(jname), name) != 0) {
        *why = "the name inside differs from the file name";
        return -EUCLEAN;
    }
    if (uuid_parse(json_object_get_string(juuid), out->uuid) < 0) {
        *why = "invalid uuid";
        return -EUCLEAN;
    }
    n = json_object_array_length(jmembers);
    if (n == 0 || n > CS_MAX_MEMBERS) {
        *why = "bad number of members";
        return -EUCLEAN;
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    out->members = calloc(n, sizeof *out->members);
    if (out->members == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(jmembers, i);
        if (!json_object_is_type(m, json_type_string) || json_object_get_string_len(m) == 0) {
            *why = "a member is not a path";
            return -EUCLEAN;
        }
        out->members[i] = strdup(json_object_get_string(m));
        if (out->members[i] == NULL)
            return -ENOMEM;
        out->nmembers = (unsigned)i + 1;
    }
    return 0;
}

int registry_load(const char *dir, const char *name, struct pool_entry *out)
{
    CLEANUP_FREE char *path = entry_path(dir, name);
    CLEANUP_FREE char *text = NULL;
    struct json_tokener *tok;
    struct json_object *root;
    const char *why = NULL;
    int r;

    memset(out, 0, sizeof *out);
    if (path == NULL)
        return -ENOMEM;
    r = read_file(path, &text);
    if (r == -ENOENT)
        return r;
    if (r < 0) {
        log_err("%s: %s", path, strerror(-r));
        return r;
    }

    tok = json_tokener_new();
    if (tok == NULL)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, text, (int)strlen(text));
    if (root == NULL) {
        log_err("%s: invalid JSON: %s", path, json_tokener_error_desc(json_tokener_get_error(tok)));
        json_tokener_free(tok);
        return -EUCLEAN;
    }
    json_tokener_free(tok);

    r = entry_from_json(root, name, out, &why);
    json_object_put(root);
    if (r < 0) {
        if (r == -EUCLEAN)
            log_err("%s: %s", path, why);
        pool_entry_clear(out);
    }
    return r;
}

int registry_save(const char *dir, const struct pool_entry *e)
{
    CLEANUP_FREE char *path = entry_path(dir, e->name);
    CLEANUP_FREE char *text = NULL;
    struct json_object *root, *members;
    char uuid[UUID_STR_LEN];
    int r;

    if (path == NULL)
        return -ENOMEM;
    r = make_dirs(dir);
    if (r < 0)
        return r;

    uuid_format(e->uuid, uuid);
    root = json_object_new_object();
    members = json_object_new_array();
    if (root == NULL || members == NULL) {
        json_object_put(root);
        json_object_put(members);
        return -ENOMEM;
    }
    json_object_object_add(root, "name", json_object_new_string(e->name));
    json_object_object_add(root, "uuid", json_object_new_string(uuid));
    for (unsigned i = 0; i < e->nmembers; i++)
        json_object_array_add(members, json_object_new_string(e->members[i]));
    json_object_object_add(root, "members", members);
    r = asprintf(&text, "%s\n",
                 json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
                                                          JSON_C_TO_STRING_SPACED |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
    if (r < 0)
        return -ENOMEM;
    r = file_replace(path, text, strlen(text), 0644);
    if (r < 0)
        log_err("%s: %s", path, strerror(-r));
    return r;
}

int registry_remove(const char *dir, const char *name)
{
    CLEANUP_FREE char *path = entry_path(dir, name);

    if (path == NULL)
        return -ENOMEM;
    if (access(path, F_OK) < 0)
        return -errno;
    int r = file_remove(path);
    if (r < 0)
        log_err("%s: %s", path, strerror(-r));
    return r;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void registry_names_free(char **names)
{
    if (names == NULL)
        return;
    for (char **p = names; *p != NULL; p++)
        free(*p);
    free(names);
}

int registry_list(const char *dir, char ***names, size_t *n)
{
    CLEANUP_FREE char *pd = pools_dir(dir);
    char **v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    *names = NULL;
    *n = 0;
    if (pd == NULL)
        return -ENOMEM;
    d = opendir(pd);
    if (d == NULL) {
        int r = -errno;
        if (r == -ENOENT) {
            v = calloc(1, sizeof *v);
            if (v == NULL)
                return -ENOMEM;
            *names = v;
            return 0;
        }
        log_err("state directory %s: %s", pd, strerror(-r));
        return r;
    }
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        char *name;

        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        if (len + 2 > cap) {
            size_t ncap = cap == 0 ? 8 : cap * 2;
            char **nv = realloc(v, ncap * sizeof *nv);
            if (nv == NULL)
                goto nomem;
            v = nv;
            cap = ncap;
        }
        name = strndup(de->d_name, l - 5);
        if (name == NULL)
            goto nomem;
        if (name_check(name, NULL) < 0) { /* not ours */
            free(name);
            continue;
        }
        v[len++] = name;
    }
    closedir(d);
    if (v == NULL) {
        v = calloc(1, sizeof *v);
        if (v == NULL)
            return -ENOMEM;
    }
    v[len] = NULL;
    qsort(v, len, sizeof *v, cmp_names);
    *names = v;
    *n = len;
    return 0;

nomem:
    closedir(d);
    if (v != NULL) {
        v[len] = NULL;
        registry_names_free(v);
    }
    return -ENOMEM;
}
