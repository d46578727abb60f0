/*
 * control.c - the daemon's control socket: a Unix socket speaking one JSON object a line.
 *
 *     request  {"id": 7, "op": "vol.create", "args": {"pool": "tank", "volume": "vm1",
 *               "size": 1073741824}}
 *     reply    {"id": 7, "ok": true, "result": {...}}
 *              {"id": 7, "ok": false, "error": {"errno": 17, "message": "tank/vm1: ..."}}
 *
 * Operations are those of ops.c (pool.list, pool.status, pool.check, pool.set, pool.add,
 * vol.create, vol.list, vol.info, vol.resize, vol.rename, vol.delete), run on the pools the
 * daemon holds, plus daemon.info (pid, version, pools, NBD address). The "id" is echoed as
 * given (null when the request had none or could not be read).
 *
 * Thread
 *   One thread, not a reactor, serves every control connection: it polls the listening
 *   socket, the connections and a pipe that stop() writes to. Requests run one at a time, so
 *   operations never race each other; they do run concurrently with NBD requests on the
 *   reactors, and the library calls they make take the pool's locks themselves.
 *
 * Untrusted input
 *   The socket is mode 0600, yet every request is still checked: a line longer than
 *   CONTROL_MAX_LINE is discarded up to its newline and answered with EMSGSIZE; a line
 *   that is not a JSON object, an unknown op and bad arguments get an EINVAL or EOPNOTSUPP
 *   reply; the connection stays usable. A peer that does not read its replies is dropped
 *   after SEND_TIMEOUT_S rather than stalling the thread.
 */
#include "cli/cli.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONNS 64
#define SEND_TIMEOUT_S 5

struct conn {
    int fd;
    char *buf; /* CONTROL_MAX_LINE bytes */
    size_t len;
    bool discarding; /* inside a line that was too long: skip to its newline */
};

struct control_server {
    const struct control_config *cfg;
    int lfd;
    int wake[2]; /* stop() writes to wake[1] */
    pthread_t thread;
    struct conn conns[MAX_CONNS];
    size_t nconns;
};

/* ---------------------------------------------------------------------------------------- */
/* Requests                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static char *reply_string(struct json_object *reply)
{
    char *s = strdup(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(reply);
    if (s == NULL)
        abort();
    return s;
}

static char *reply_error(struct json_object *id, int err, const char *msg)
{
    struct json_object *r = json_object_new_object(), *e = json_object_new_object();

    json_object_object_add(r, "id", id);
    json_object_object_add(r, "ok", json_object_new_boolean(false));
    json_object_object_add(e, "errno", json_object_new_int(-err));
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(r, "error", e);
    return reply_string(r);
}

static char *reply_ok(struct json_object *id, struct json_object *result)
{
    struct json_object *r = json_object_new_object();

    json_object_object_add(r, "id", id);
    json_object_object_add(r, "ok", json_object_new_boolean(true));
    json_object_object_add(r, "result", result);
    return reply_string(r);
}

static struct json_object *daemon_info(const struct control_config *cfg)
{
    struct json_object *o = json_object_new_object(), *pools = json_object_new_array();

    json_object_object_add(o, "pid", json_object_new_int64((int64_t)getpid()));
    json_object_object_add(o, "version", json_object_new_string(CISTERN_VERSION));
    for (size_t i = 0; i < cfg->npools; i++)
        json_object_array_add(pools, json_object_new_string(pool_name(cfg->pools[i])));
    json_object_object_add(o, "pools", pools);
    json_object_object_add(
        o, "nbd", cfg->nbd_listen != NULL ? json_object_new_string(cfg->nbd_listen) : NULL);
    json_object_object_add(o, "tls_required", json_object_new_boolean(cfg->nbd_tls_required));
    json_object_object_add(o, "read_only", json_object_new_boolean(cfg->readonly));
    return o;
}

static struct pool *find_pool(const struct control_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (strcmp(pool_name(cfg->pools[i]), name) == 0)
            return cfg->pools[i];
    return NULL;
}

/* Runs @op on every pool and concatenates the op's list. */
static int run_each(const struct control_config *cfg, const struct op *op, const struct cli_args *a,
                    struct json_object **out, struct op_err *e)
{
    struct json_object *all = json_object_new_array();

    for (size_t i = 0; i < cfg->npools; i++) {
        struct json_object *res = NULL, *arr;
        int r = op->run(&cfg->env, cfg->pools[i], a, &res, e);
        if (r < 0) {
            json_object_put(all);
            return r;
        }
        if (json_object_object_get_ex(res, op->list_key, &arr))
            for (size_t j = 0; j < json_object_array_length(arr); j++)
                json_object_array_add(all, json_object_get(json_object_array_get_idx(arr, j)));
        json_object_put(res);
    }
    *out = json_object_new_object();
    json_object_object_add(*out, op->list_key, all);
    return 0;
}

char *control_handle(const struct control_config *cfg, const char *line, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *req, *id = NULL, *v, *args = NULL, *result = NULL;
    const struct op *op;
    struct cli_args a;
    struct op_err e = {0};
    struct pool *pool = NULL;
    const char *name;
    char *reply;
    int r;

    if (tok == NULL)
        abort();
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
        len--;
    req = json_tokener_parse_ex(tok, line, (int)len);
    if (req == NULL || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len) {
        json_tokener_free(tok);
        json_object_put(req);
        return reply_error(NULL, -EINVAL, "the request is not a JSON object");
    }
    json_tokener_free(tok);
    if (!json_object_is_type(req, json_type_object)) {
        json_object_put(req);
        return reply_error(NULL, -EINVAL, "the request is not a JSON object");
    }
    if (json_object_object_get_ex(req, "id", &v))
        id = json_object_get(v);
    if (!json_object_object_get_ex(req, "op", &v) || !json_object_is_type(v, json_type_string)) {
        reply = reply_error(id, -EINVAL, "the request has no \"op\"");
        goto out;
    }
    name = json_object_get_string(v);
    json_object_object_get_ex(req, "args", &args);

    if (strcmp(name, "daemon.info") == 0) {
        reply = reply_ok(id, daemon_info(cfg));
        goto out;
    }
    op = op_find(name);
    if (op == NULL) {
        char msg[128];
        snprintf(msg, sizeof msg, "unknown operation '%.64s'", name);
        reply = reply_error(id, -EOPNOTSUPP, msg);
        goto out;
    }
    r = op_args_decode(op, args, &a, &e);
    if (r == 0 && a.obj.pool[0] != '\0') {
        pool = find_pool(cfg, a.obj.pool);
        if (pool == NULL)
            r = op_fail(&e, -ENOENT, "%s: no such pool is served by this daemon", a.obj.pool);
    }
    if (r == 0) {
        log_debug("control: %s", name);
        if (pool == NULL && (op->flags & OP_EACH_POOL))
            r = run_each(cfg, op, &a, &result, &e);
        else
            r = op->run(&cfg->env, pool, &a, &result, &e);
    }
    if (r < 0) {
        log_debug("control: %s: %s", name, e.msg);
        reply = reply_error(id, r, e.msg);
    } else {
        log_info("control: %s%s%s%s%s", name, a.obj.pool[0] ? " " : "", a.obj.pool,
                 a.obj.vol[0] ? "/" : "", a.obj.vol);
        reply = reply_ok(id, result);
    }
out:
    json_object_put(req);
    return reply;
}

/* ---------------------------------------------------------------------------------------- */
/* The thread                                                                                */
/* ---------------------------------------------------------------------------------------- */

static void conn_drop(struct control_server *cs, size_t i)
{
    close(cs->conns[i].fd);
    free(cs->conns[i].buf);
    cs->conns[i] = cs->conns[--cs->nconns];
}

/* Sends @reply and a newline; false when the peer is gone or does not read. */
static bool send_reply(int fd, char *reply)
{
    size_t len = strlen(reply), done = 0;
    bool ok = true;

    reply[len] = '\n'; /* replaces the terminator; the length is known */
    while (done < len + 1) {
        ssize_t n = send(fd, reply + done, len + 1 - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ok = false;
            break;
        }
        done += (size_t)n;
    }
    free(reply);
    return ok;
}

/* Reads what is there and answers every complete line; false when the connection ends. */
static bool conn_read(struct control_server *cs, struct conn *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, CONTROL_MAX_LINE - c->len, 0);
    size_t start = 0;

    if (n < 0)
        return errno == EINTR || errno == EAGAIN;
    if (n == 0)
        return false;
    c->len += (size_t)n;
    for (;;) {
        char *nl = memchr(c->buf + start, '\n', c->len - start);
        if (nl == NULL)
            break;
        size_t end = (size_t)(nl - c->buf);
        if (c->discarding) {
            c->discarding = false;
        } else if (end > start) {
            if (!send_reply(c->fd, control_handle(cs->cfg, c->buf + start, end - start)))
                return false;
        }
        start = end + 1;
    }
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
    if (c->len == CONTROL_MAX_LINE) {
        /* No newline in a whole buffer: answer once, then skip to the end of that line. */
        c->len = 0;
        if (!c->discarding) {
            char msg[96];
            c->discarding = true;
            snprintf(msg, sizeof msg, "a request is longer than %u bytes", CONTROL_MAX_LINE);
            if (!send_reply(c->fd, reply_error(NULL, -EMSGSIZE, msg)))
                return false;
        }
    }
    return true;
}

static void accept_conn(struct control_server *cs)
{
    struct timeval tv = {.tv_sec = SEND_TIMEOUT_S};
    int fd = accept4(cs->lfd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return;
    if (cs->nconns == MAX_CONNS) {
        send_reply(fd, reply_error(NULL, -EMFILE, "too many control connections"));
        close(fd);
        return;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    cs->conns[cs->nconns].fd = fd;
    cs->conns[cs->nconns].len = 0;
    cs->conns[cs->nconns].discarding = false;
    cs->conns[cs->nconns].buf = malloc(CONTROL_MAX_LINE);
    if (cs->conns[cs->nconns].buf == NULL) {
        close(fd);
        return;
    }
    cs->nconns++;
}

static void *control_thread(void *arg)
{
    struct control_server *cs = arg;
    struct pollfd pfd[MAX_CONNS + 2];

    for (;;) {
        size_t n = cs->nconns;
        pfd[0] = (struct pollfd){.fd = cs->wake[0], .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = cs->lfd, .events = POLLIN};
        for (size_t i = 0; i < n; i++)
            pfd[i + 2] = (struct pollfd){.fd = cs->conns[i].fd, .events = POLLIN};
        if (poll(pfd, n + 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_err("control: poll: %s", strerror(errno));
            break;
        }
        if (pfd[0].revents)
            break;
        /* From the last, so that dropping (which moves the last into the hole) is safe. */
        for (size_t i = n; i-- > 0;)
            if (pfd[i + 2].revents && !conn_read(cs, &cs->conns[i]))
                conn_drop(cs, i);
        if (pfd[1].revents & POLLIN)
            accept_conn(cs);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Start and stop                                                                            */
/* ---------------------------------------------------------------------------------------- */

/* Binds @path, replacing a stale socket (one nobody answers on). */
static int bind_socket(const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    mode_t old;
    int fd, r;

    if (strlen(path) >= sizeof sa.sun_path) {
        log_err("control socket %s: path longer than %zu bytes", path, sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_err("control socket %s: exists and is not a socket", path);
            close(fd);
            return -EEXIST;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            log_err("control socket %s: another daemon answers there", path);
            close(fd);
            return -EADDRINUSE;
        }
        if (errno != ECONNREFUSED) {
            r = -errno;
            log_err("control socket %s: %s", path, strerror(-r));
            close(fd);
            return r;
        }
        log_info("control socket %s: stale (nobody answers): replacing it", path);
        unlink(path);
        close(fd);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
    }

    /* Only the daemon's user may connect: the socket is created 0600 (chmod after bind
     * would leave a moment where it is not). */
    old = umask(0177);
    r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0 || listen(fd, 16) < 0) {
        r = -errno;
        log_err("control socket %s: %s", path, strerror(-r));
        close(fd);
        return r;
    }
    *out = fd;
    return 0;
}

int control_start(const struct control_config *cfg, struct control_server **out)
{
    struct control_server *cs = calloc(1, sizeof *cs);
    int r;

    *out = NULL;
    if (cs == NULL)
        return -ENOMEM;
    cs->cfg = cfg;
    cs->wake[0] = cs->wake[1] = -1;
    r = bind_socket(cfg->path, &cs->lfd);
    if (r < 0) {
        free(cs);
        return r;
    }
    if (pipe2(cs->wake, O_CLOEXEC) < 0) {
        r = -errno;
        goto fail;
    }
    r = -pthread_create(&cs->thread, NULL, control_thread, cs);
    if (r < 0)
        goto fail;
    *out = cs;
    return 0;

fail:
    log_err("control socket %s: %s", cfg->path, strerror(-r));
    if (cs->wake[0] >= 0) {
        close(cs->wake[0]);
        close(cs->wake[1]);
    }
    close(cs->lfd);
    unlink(cfg->path);
    free(cs);
    return r;
}

void control_stop(struct control_server *cs)
{
    if (cs == NULL)
        return;
    while (write(cs->wake[1], "x", 1) < 0 && errno == EINTR)
        ;
    pthread_join(cs->thread, NULL);
    while (cs->nconns > 0)
        conn_drop(cs, cs->nconns - 1);
    close(cs->lfd);
    unlink(cs->cfg->path);
    close(cs->wake[0]);
    close(cs->wake[1]);
    free(cs);
}
