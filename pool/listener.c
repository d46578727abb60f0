/*
 * listener.c - the accepting side of the network front ends: the listening socket, the
 * accept loop on one reactor, handing connections to reactors in turn, and the count a stop
 * waits for. The model (the front end's lock, the stop sequence) is described in
 * listener.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "pool/listener.h"

void listener_init(struct listener *l, const char *proto, const struct listener_ops *ops,
                   pthread_mutex_t *lock, pthread_cond_t *cond)
{
    memset(l, 0, sizeof(*l));
    l->proto = proto;
    l->ops = ops;
    l->lock = lock;
    l->cond = cond;
    l->fd = -1;
}

/* ------------------------------------------------------------------------------------------
 * Listening
 */

static int listen_unix(struct listener *l, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) == 0 || strlen(path) >= sizeof sa.sun_path) {
        log_err("%s: unix socket path \"%s\": empty or too long", l->proto, path);
        return -EINVAL;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    /* A socket left by a previous run is replaced; any other file is not touched. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0) {
        int e = -errno;
        log_err("%s: unix socket %s: %s", l->proto, path, strerror(-e));
        close(fd);
        return e;
    }
    l->unix_path = strdup(path);
    l->fd = fd;
    return 0;
}

static int listen_inet(struct listener *l, const char *addr, bool allow_unix)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1]) {
        log_err("%s: listen address \"%s\": expected ADDR:PORT%s", l->proto, addr,
                allow_unix ? " or unix:PATH" : "");
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host)
        return -EINVAL;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        h = host + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res;
    int g = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &res);
    if (g != 0) {
        log_err("%s: listen address \"%s\": %s", l->proto, addr, gai_strerror(g));
        return -EINVAL;
    }
    int err = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
            err = -errno;
            close(fd);
            continue;
        }
        l->fd = fd;
        err = 0;
        break;
    }
    freeaddrinfo(res);
    if (err < 0)
        log_err("%s: cannot listen on %s: %s", l->proto, addr, strerror(-err));
    return err;
}

int listener_listen(struct listener *l, const char *addr, bool allow_unix)
{
    if (allow_unix && strncmp(addr, "unix:", 5) == 0)
        return listen_unix(l, addr + 5);
    return listen_inet(l, addr, allow_unix);
}

void listener_close(struct listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    if (l->unix_path)
        unlink(l->unix_path);
    free(l->unix_path);
    l->unix_path = NULL;
}

/* ------------------------------------------------------------------------------------------
 * Connections
 */

int listener_add(struct listener *l, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on Unix sockets */

    pthread_mutex_lock(l->lock);
    unsigned i = l->next_reactor++;
    bool stopping = l->stopping;
    pthread_mutex_unlock(l->lock);
    if (stopping) {
        close(fd);
        return -ESHUTDOWN;
    }
    struct reactor *r = pool_reactor_get(i);
    void *conn = r ? l->ops->conn_new(l, fd, r) : NULL;
    if (!conn) {
        log_err("%s: out of memory for a new connection", l->proto);
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(l->lock);
    if (l->stopping) {
        pthread_mutex_unlock(l->lock);
        l->ops->conn_free(l, conn);
        return -ESHUTDOWN;
    }
    l->nconns++;
    /* Posted under the lock, so a stop posted later runs after the start. */
    l->ops->conn_start(l, conn);
    pthread_mutex_unlock(l->lock);
    return 0;
}

void listener_conn_gone(struct listener *l)
{
    pthread_mutex_lock(l->lock);
    l->nconns--;
    pthread_cond_broadcast(l->cond);
    pthread_mutex_unlock(l->lock);
}

/* ------------------------------------------------------------------------------------------
 * The accept loop, on l->reactor
 */

static void accept_done(struct io_op *op, int res);

static void accept_arm(struct listener *l)
{
    l->accept_op.done = accept_done;
    reactor_accept(l->fd, &l->accept_op);
}

static void loop_end(struct listener *l)
{
    close(l->fd);
    l->fd = -1;
    pthread_mutex_lock(l->lock);
    l->listening = false;
    pthread_cond_broadcast(l->cond);
    pthread_mutex_unlock(l->lock);
}

static void accept_done(struct io_op *op, int res)
{
    struct listener *l = container_of(op, struct listener, accept_op);
    pthread_mutex_lock(l->lock);
    bool stopping = l->stopping;
    pthread_mutex_unlock(l->lock);
    if (res >= 0) {
        if (stopping)
            close(res);
        else
            listener_add(l, res);
    } else if (!stopping && res != -ECANCELED) {
        log_warn("%s: accept failed: %s", l->proto, strerror(-res));
        if (res == -EMFILE || res == -ENFILE)
            usleep(10000); /* no descriptors: let connections end before trying again */
    }
    if (stopping || res == -ECANCELED) {
        loop_end(l);
        return;
    }
    accept_arm(l);
}

static void start_work_fn(struct reactor_work *w)
{
    accept_arm(container_of(w, struct listener, start_work));
}

static void cancel_done(struct io_op *op UNUSED, int res UNUSED)
{
}

static void stop_work_fn(struct reactor_work *w)
{
    struct listener *l = container_of(w, struct listener, stop_work);
    /* The accept completes with -ECANCELED (or with a connection, closed at once). */
    l->cancel_op.done = cancel_done;
    reactor_cancel(&l->accept_op, &l->cancel_op);
}

void listener_start(struct listener *l)
{
    if (l->fd < 0)
        return;
    l->listening = true;
    l->reactor = pool_reactor_get(0);
    l->start_work.fn = start_work_fn;
    pool_reactor_post(l->reactor, &l->start_work);
}

/* ------------------------------------------------------------------------------------------
 * Stopping
 */

void listener_stop(struct listener *l)
{
    l->stopping = true;
    if (l->listening) {
        l->stop_work.fn = stop_work_fn;
        pool_reactor_post(l->reactor, &l->stop_work);
    }
}

void listener_wait(struct listener *l)
{
    while (l->listening || l->nconns > 0)
        pthread_cond_wait(l->cond, l->lock);
}
