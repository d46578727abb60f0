/*
 * server.c - the NBD server: the listening socket, accepting, handing connections to
 * reactors, stopping, and the closing thread.
 *
 * The accept loop runs on one reactor (one reactor_accept pending at a time). Each new
 * connection goes to the next reactor in turn: it is listed (under the server lock) and its
 * start is posted to that reactor, where it then lives (conn.c).
 *
 * Evicting stops the connections in transmission on given volumes the same way, leaving
 * the others and the listener alone.
 *
 * Stopping: the accept is cancelled on its reactor; each listed connection gets a stop
 * posted to its reactor (stop_pending keeps it from being freed while that work is queued);
 * a connection in transmission finishes its requests and replies, one still negotiating is
 * dropped. Volumes are closed, and connections freed, on the closing thread: vol_close
 * waits for every request on the volume, including other connections' requests, which may
 * need the very reactor that would be waiting, so a reactor never closes a volume.
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

#include "nbd-server/nbd-priv.h"

struct close_item {
    struct close_item *next;
    struct vol *v;
    struct nbd_conn *c;
};

/* ------------------------------------------------------------------------------------------
 * The closing thread
 */

static void closer_push(struct nbd_server *srv, struct close_item *it)
{
    pthread_mutex_lock(&srv->lock);
    it->next = srv->close_head;
    srv->close_head = it;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

void nbd_close_vol_later(struct nbd_server *srv, struct vol *v)
{
    struct close_item *it = calloc(1, sizeof(*it));
    if (!it) {
        /* Rare; closing here risks waiting on our own reactor, but leaking the handle
         * would keep the volume open for good. */
        srv->ex.close(srv->ctx, v);
        return;
    }
    it->v = v;
    closer_push(srv, it);
}

void nbd_conn_free(struct nbd_conn *c)
{
    stream_free(&c->s);
    nbd_tls_conn_free(c);
    free(c->opt_data);
    free(c->meta_export);
    free(c->meta_changed);
    free(c->export_name);
    free(c);
}

bool nbd_conn_release(struct nbd_conn *c)
{
    struct nbd_server *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    if (c->stop_pending) {
        /* The stop work still refers to c; it releases again when it has run. */
        pthread_mutex_unlock(&srv->lock);
        return false;
    }
    LIST_REMOVE(c, link);
    pthread_mutex_unlock(&srv->lock);
    struct close_item *it = calloc(1, sizeof(*it));
    if (!it) {
        /* Nothing on this reactor refers to c any more: finish it here. */
        if (c->vol)
            srv->ex.close(srv->ctx, c->vol);
        nbd_conn_free(c);
        pthread_mutex_lock(&srv->lock);
        srv->nconns--;
        pthread_cond_broadcast(&srv->cond);
        pthread_mutex_unlock(&srv->lock);
        return true;
    }
    it->c = c;
    it->v = c->vol;
    c->vol = NULL;
    closer_push(srv, it);
    return true;
}

static void *closer_main(void *arg)
{
    struct nbd_server *srv = arg;
    pthread_mutex_lock(&srv->lock);
    for (;;) {
        while (!srv->close_head && !srv->closer_stop)
            pthread_cond_wait(&srv->cond, &srv->lock);
        struct close_item *it = srv->close_head;
        if (!it)
            break; /* stop, with nothing left */
        srv->close_head = it->next;
        pthread_mutex_unlock(&srv->lock);
        if (it->v)
            srv->ex.close(srv->ctx, it->v);
        if (it->c)
            nbd_conn_free(it->c);
        pthread_mutex_lock(&srv->lock);
        if (it->c) {
            srv->nconns--;
            pthread_cond_broadcast(&srv->cond);
        }
        free(it);
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Accepting
 */

static int conn_add(struct nbd_server *srv, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on Unix sockets */

    pthread_mutex_lock(&srv->lock);
    unsigned i = srv->next_reactor++;
    bool stopping = srv->stopping;
    pthread_mutex_unlock(&srv->lock);
    if (stopping) {
        close(fd);
        return -ESHUTDOWN;
    }
    struct reactor *r = pool_reactor_get(i);
    struct nbd_conn *c = r ? nbd_conn_new(srv, fd, r) : NULL;
    if (!c) {
        log_err("nbd: out of memory for a new connection");
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&srv->lock);
    if (srv->stopping) {
        pthread_mutex_unlock(&srv->lock);
        nbd_conn_free(c);
        return -ESHUTDOWN;
    }
    LIST_INSERT_HEAD(&srv->conns, c, link);
    srv->nconns++;
    /* Posted under the lock, so a stop posted later runs after the start. */
    pool_reactor_post(r, &c->start_work);
    pthread_mutex_unlock(&srv->lock);
    return 0;
}

int nbd_server_adopt(struct nbd_server *srv, int fd)
{
    return conn_add(srv, fd);
}

static void accept_done(struct io_op *op, int res);

static void accept_arm(struct nbd_server *srv)
{
    srv->accept_op.done = accept_done;
    reactor_accept(srv->lfd, &srv->accept_op);
}

static void listener_end(struct nbd_server *srv)
{
    close(srv->lfd);
    srv->lfd = -1;
    pthread_mutex_lock(&srv->lock);
    srv->listening = false;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static void accept_done(struct io_op *op, int res)
{
    struct nbd_server *srv = container_of(op, struct nbd_server, accept_op);
    pthread_mutex_lock(&srv->lock);
    bool stopping = srv->stopping;
    pthread_mutex_unlock(&srv->lock);
    if (res >= 0) {
        if (stopping)
            close(res);
        else
            conn_add(srv, res);
    } else if (!stopping && res != -ECANCELED) {
        log_warn("nbd: accept failed: %s", strerror(-res));
    }
    if (stopping || res == -ECANCELED) {
        listener_end(srv);
        return;
    }
    accept_arm(srv);
}

static void listener_start_work(struct reactor_work *w)
{
    struct nbd_server *srv = container_of(w, struct nbd_server, lstart_work);
    accept_arm(srv);
}

static void lcancel_done(struct io_op *op UNUSED, int res UNUSED)
{
}

static void listener_stop_work(struct reactor_work *w)
{
    struct nbd_server *srv = container_of(w, struct nbd_server, lstop_work);
    /* The accept completes with -ECANCELED (or with a connection, closed at once). */
    srv->lcancel_op.done = lcancel_done;
    reactor_cancel(&srv->accept_op, &srv->lcancel_op);
}

/* ------------------------------------------------------------------------------------------
 * Listening
 */

static int listen_unix(struct nbd_server *srv, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) == 0 || strlen(path) >= sizeof sa.sun_path) {
        log_err("nbd: unix socket path \"%s\": empty or too long", path);
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
        log_err("nbd: unix socket %s: %s", path, strerror(-e));
        close(fd);
        return e;
    }
    srv->unix_path = strdup(path);
    srv->lfd = fd;
    return 0;
}

static int listen_inet(struct nbd_server *srv, const char *addr)
{
    char host[256];
    const char *port;
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1]) {
        log_err("nbd: listen address \"%s\": expected ADDR:PORT or unix:PATH", addr);
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host)
        return -EINVAL;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    port = colon + 1;
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        h = host + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res;
    int g = getaddrinfo(*h ? h : NULL, port, &hints, &res);
    if (g != 0) {
        log_err("nbd: listen address \"%s\": %s", addr, gai_strerror(g));
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
        srv->lfd = fd;
        err = 0;
        break;
    }
    freeaddrinfo(res);
    if (err < 0)
        log_err("nbd: cannot listen on %s: %s", addr, strerror(-err));
    return err;
}

/* ------------------------------------------------------------------------------------------
 * Start and stop
 */

int nbd_server_start(const struct nbd_config *cfg, const struct nbd_exports *exports, void *ctx,
                     struct nbd_server **out)
{
    *out = NULL;
    if (!exports || !exports->open || !exports->list || !exports->close)
        return -EINVAL;
    struct nbd_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->ex = *exports;
    srv->ctx = ctx;
    srv->lfd = -1;
    srv->tls_required = cfg->tls_required;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    LIST_INIT(&srv->conns);

    int r = nbd_tls_ctx_new(cfg, &srv->tls_ctx);
    if (r == 0 && cfg->listen) {
        if (strncmp(cfg->listen, "unix:", 5) == 0)
            r = listen_unix(srv, cfg->listen + 5);
        else
            r = listen_inet(srv, cfg->listen);
    }
    if (r == 0 && !pool_reactor_get(0))
        r = -ENOMEM;
    if (r == 0) {
        r = -pthread_create(&srv->closer, NULL, closer_main, srv);
        if (r < 0)
            log_err("nbd: cannot start the closing thread: %s", strerror(-r));
    }
    if (r < 0) {
        if (srv->lfd >= 0)
            close(srv->lfd);
        if (srv->unix_path)
            unlink(srv->unix_path);
        free(srv->unix_path);
        nbd_tls_ctx_free(srv->tls_ctx);
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->cond);
        free(srv);
        return r;
    }
    if (srv->lfd >= 0) {
        srv->listening = true;
        srv->lreactor = pool_reactor_get(0);
        srv->lstart_work.fn = listener_start_work;
        pool_reactor_post(srv->lreactor, &srv->lstart_work);
    }
    *out = srv;
    return 0;
}

unsigned nbd_server_connections(struct nbd_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    unsigned n = srv->nconns;
    pthread_mutex_unlock(&srv->lock);
    return n;
}

void nbd_server_evict(struct nbd_server *srv, bool (*match)(void *ctx, struct vol *v), void *ctx)
{
    pthread_mutex_lock(&srv->lock);
    struct nbd_conn *c;
    LIST_FOREACH(c, &srv->conns, link)
    {
        if (c->listed_vol && !c->stop_pending && match(ctx, c->listed_vol)) {
            log_info("nbd: %s: disconnecting from %s", c->peer, vol_name(c->listed_vol));
            c->stop_pending = true;
            pool_reactor_post(c->reactor, &c->stop_work);
        }
    }
    pthread_mutex_unlock(&srv->lock);
}

void nbd_server_stop(struct nbd_server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    if (srv->listening) {
        srv->lstop_work.fn = listener_stop_work;
        pool_reactor_post(srv->lreactor, &srv->lstop_work);
    }
    struct nbd_conn *c;
    LIST_FOREACH(c, &srv->conns, link)
    {
        if (!c->stop_pending) {
            c->stop_pending = true;
            pool_reactor_post(c->reactor, &c->stop_work);
        }
    }
    while (srv->listening || srv->nconns > 0)
        pthread_cond_wait(&srv->cond, &srv->lock);
    srv->closer_stop = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    pthread_join(srv->closer, NULL); /* it empties its queue first (INFO's volumes) */

    if (srv->unix_path)
        unlink(srv->unix_path);
    free(srv->unix_path);
    nbd_tls_ctx_free(srv->tls_ctx);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    free(srv);
}
