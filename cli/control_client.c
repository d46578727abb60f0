/*
 * control_client.c - the commands' side of the daemon's control socket.
 *
 * A command connects to STATE_DIR/control.sock (or --control), asks "daemon.info" to learn
 * the daemon's pid, the pools it holds and where it serves NBD, and then sends the
 * operations of its pool there instead of opening the pool (see cli_target_open). One
 * request at a time: a line of JSON out, a line of JSON back with the same "id".
 *
 * No daemon is the common case and must cost nothing: a missing socket or a refused
 * connection is reported quietly to the caller, which then opens the pool itself.
 */
#include "cli/cli.h"

#include <json-c/json.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A reply may list many volumes; far more than any pool has. */
#define REPLY_MAX (64u << 20)
/* daemon.info is answered at once by a live daemon; a stuck one must not stall commands. */
#define INFO_TIMEOUT_MS 10000

struct ctl_client {
    int fd;
    char *path;
    int64_t next_id;
    long pid;
    char *nbd; /* the daemon's --nbd, or NULL */
    bool tls_required;
    struct json_object *pools; /* array of names */
    char *buf;                 /* bytes received past the last reply */
    size_t len, cap;
};

char *cli_control_path(const struct cli *cli)
{
    char *p;

    if (cli->control != NULL)
        return strdup(cli->control);
    if (asprintf(&p, "%s/%s", cli->state_dir, CLI_CONTROL_SOCKET) < 0)
        return NULL;
    return p;
}

void ctl_close(struct ctl_client *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->path);
    free(c->nbd);
    free(c->buf);
    json_object_put(c->pools);
    free(c);
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads one line (without its newline) into a new string; -ETIMEDOUT after @timeout_ms
 * (-1: none), -ECONNRESET when the daemon went away. */
static int recv_line(struct ctl_client *c, int timeout_ms, char **line)
{
    for (;;) {
        char *nl = c->len > 0 ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            *line = strndup(c->buf, n);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return *line != NULL ? 0 : -ENOMEM;
        }
        if (c->len == REPLY_MAX)
            return -EMSGSIZE;
        if (c->cap - c->len < 4096) {
            size_t cap = MIN(REPLY_MAX, c->cap < 65536 ? 65536 : c->cap * 2);
            char *b = realloc(c->buf, cap);
            if (b == NULL)
                return -ENOMEM;
            c->buf = b;
            c->cap = cap;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (pr == 0)
            return -ETIMEDOUT;
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -ECONNRESET;
        c->len += (size_t)n;
    }
}

static int call(struct ctl_client *c, const char *op, struct json_object *args, int timeout_ms,
                struct json_object **result, struct op_err *e)
{
    struct json_object *req = json_object_new_object(), *reply = NULL, *v, *err;
    int64_t id = ++c->next_id;
    char *line = NULL;
    const char *s;
    int r;

    *result = NULL;
    json_object_object_add(req, "id", json_object_new_int64(id));
    json_object_object_add(req, "op", json_object_new_string(op));
    json_object_object_add(req, "args", args != NULL ? args : json_object_new_object());
    s = json_object_to_json_string_ext(req,
                                       JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    r = send_all(c->fd, s, strlen(s));
    if (r == 0)
        r = send_all(c->fd, "\n", 1);
    json_object_put(req);
    if (r == 0)
        r = recv_line(c, timeout_ms, &line);
    if (r < 0)
        return op_fail(e, r, "daemon (control socket %s): %s", c->path, strerror(-r));

    reply = json_tokener_parse(line);
    free(line);
    if (reply == NULL || !json_object_is_type(reply, json_type_object) ||
        !json_object_object_get_ex(reply, "id", &v) || json_object_get_int64(v) != id ||
        !json_object_object_get_ex(reply, "ok", &v)) {
        json_object_put(reply);
        return op_fail(e, -EPROTO, "daemon (control socket %s): a reply that is not one", c->path);
    }
    if (json_object_get_boolean(v)) {
        if (json_object_object_get_ex(reply, "result", &v))
            *result = json_object_get(v);
        else
            *result = json_object_new_object();
        json_object_put(reply);
        return 0;
    }
    if (!json_object_object_get_ex(reply, "error", &err)) {
        json_object_put(reply);
        return op_fail(e, -EPROTO, "daemon (control socket %s): an error without a cause", c->path);
    }
    r = (int)res_u64(err, "errno");
    r = r > 0 && r < 4096 ? -r : -EIO;
    op_fail(e, r, "%s", res_str(err, "message"));
    json_object_put(reply);
    return r;
}

int ctl_call(struct ctl_client *c, const char *op, struct json_object *args,
             struct json_object **result, struct op_err *e)
{
    return call(c, op, args, -1, result, e);
}

int ctl_connect(const char *path, struct ctl_client **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct ctl_client *c;
    struct json_object *info, *v;
    struct op_err e;
    int r;

    *out = NULL;
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->path = strdup(path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || c->path == NULL) {
        r = c->path == NULL ? -ENOMEM : -errno;
        ctl_close(c);
        return r;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        r = -errno;
        ctl_close(c);
        /* No socket, a stale one, or one we may not use: no daemon for us. */
        if (r == -ENOENT || r == -ECONNREFUSED || r == -ENOTDIR)
            return r;
        log_debug("control socket %s: %s", path, strerror(-r));
        return r;
    }
    r = call(c, "daemon.info", NULL, INFO_TIMEOUT_MS, &info, &e);
    if (r < 0) {
        log_err("%s", e.msg);
        ctl_close(c);
        return r;
    }
    c->pid = (long)res_u64(info, "pid");
    if (json_object_object_get_ex(info, "nbd", &v) && json_object_is_type(v, json_type_string))
        c->nbd = strdup(json_object_get_string(v));
    c->tls_required = res_bool(info, "tls_required");
    if (json_object_object_get_ex(info, "pools", &v) && json_object_is_type(v, json_type_array))
        c->pools = json_object_get(v);
    json_object_put(info);
    *out = c;
    return 0;
}

bool ctl_holds(const struct ctl_client *c, const char *name)
{
    size_t n = c->pools != NULL ? json_object_array_length(c->pools) : 0;

    for (size_t i = 0; i < n; i++)
        if (strcmp(json_object_get_string(json_object_array_get_idx(c->pools, i)), name) == 0)
            return true;
    return false;
}

long ctl_pid(const struct ctl_client *c)
{
    return c->pid;
}

char *ctl_nbd_uri(const struct ctl_client *c, const char *pool, const char *vol)
{
    const char *addr = c->nbd, *colon;
    char *uri = NULL;
    int r;

    if (addr == NULL) {
        log_err("%s/%s: the daemon (pid %ld) holds the pool but serves no NBD: stop it first", pool,
                vol, c->pid);
        return NULL;
    }
    if (c->tls_required) {
        log_err("%s/%s: the daemon (pid %ld) requires TLS on NBD, which import and export do "
                "not speak: stop it first, or copy with an NBD client that has the certificates",
                pool, vol, c->pid);
        return NULL;
    }
    if (strncmp(addr, "unix:", 5) == 0) {
        r = asprintf(&uri, "nbd+unix:///%s/%s?socket=%s", pool, vol, addr + 5);
    } else {
        /* ADDR:PORT, [ADDR6]:PORT or :PORT; a wildcard address is reached on loopback. */
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            log_err("%s/%s: the daemon's NBD address '%s' is not understood", pool, vol, addr);
            return NULL;
        }
        int hlen = (int)(colon - addr);
        const char *host = addr;
        if (hlen == 0 || (hlen == 7 && strncmp(addr, "0.0.0.0", 7) == 0)) {
            host = "127.0.0.1";
            hlen = 9;
        } else if (hlen == 4 && strncmp(addr, "[::]", 4) == 0) {
            host = "[::1]";
            hlen = 5;
        }
        r = asprintf(&uri, "nbd://%.*s:%s/%s/%s", hlen, host, colon + 1, pool, vol);
    }
    if (r < 0) {
        log_err("%s/%s: %s", pool, vol, strerror(ENOMEM));
        return NULL;
    }
    return uri;
}
