/*
 * server.c - the NBD server: starting and stopping, the connections' list, evicting, and the
 * closing thread.
 *
 * Listening and accepting are pool/listener.h's: each new connection goes to the next
 * reactor in turn, where it then lives (conn.c); it is listed (under the server lock) and
 * its start posted there by listener_conn_start.
 *
 * Evicting stops the connections in transmission on given volumes the same way, leaving
 * the others and the listener alone.
 *
 * Stopping: the listener stops (its accept is cancelled on its reactor); each listed
 * connection gets a stop posted to its reactor (stop_pending keeps it from being freed while
 * that work is queued); a connection in transmission finishes its requests and replies, one
 * still negotiating is dropped. Volumes are closed, and connections freed, on the closing
 * thread: vol_close waits for every request on the volume, including other connections'
 * requests, which may need the very reactor that would be waiting, so a reactor never
 * closes a volume.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        listener_conn_gone(&srv->l);
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
        if (it->c) {
            nbd_conn_free(it->c);
            listener_conn_gone(&srv->l);
        }
        free(it);
        pthread_mutex_lock(&srv->lock);
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Accepting (pool/listener.h)
 */

static void *listener_conn_new(struct listener *l, int fd, struct reactor *r)
{
    return nbd_conn_new(container_of(l, struct nbd_server, l), fd, r);
}

static void listener_conn_start(struct listener *l, void *conn)
{
    struct nbd_server *srv = container_of(l, struct nbd_server, l);
    struct nbd_conn *c = conn;
    LIST_INSERT_HEAD(&srv->conns, c, link);
    pool_reactor_post(c->reactor, &c->start_work);
}

static void listener_conn_free(struct listener *l UNUSED, void *conn)
{
    nbd_conn_free(conn);
}

static const struct listener_ops listener_ops = {
    .conn_new = listener_conn_new,
    .conn_start = listener_conn_start,
    .conn_free = listener_conn_free,
};

int nbd_server_adopt(struct nbd_server *srv, int fd)
{
    return listener_add(&srv->l, fd);
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
    srv->tls_required = cfg->tls_required;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    LIST_INIT(&srv->conns);
    listener_init(&srv->l, "nbd", &listener_ops, &srv->lock, &srv->cond);

    int r = nbd_tls_ctx_new(cfg, &srv->tls_ctx);
    if (r == 0 && cfg->listen)
        r = listener_listen(&srv->l, cfg->listen, true);
    if (r == 0 && !pool_reactor_get(0))
        r = -ENOMEM;
    if (r == 0) {
        r = -pthread_create(&srv->closer, NULL, closer_main, srv);
        if (r < 0)
            log_err("nbd: cannot start the closing thread: %s", strerror(-r));
    }
    if (r < 0) {
        listener_close(&srv->l);
        nbd_tls_ctx_free(srv->tls_ctx);
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->cond);
        free(srv);
        return r;
    }
    listener_start(&srv->l);
    *out = srv;
    return 0;
}

unsigned nbd_server_connections(struct nbd_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    unsigned n = srv->l.nconns;
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
    listener_stop(&srv->l);
    struct nbd_conn *c;
    LIST_FOREACH(c, &srv->conns, link)
    {
        if (!c->stop_pending) {
            c->stop_pending = true;
            pool_reactor_post(c->reactor, &c->stop_work);
        }
    }
    listener_wait(&srv->l);
    srv->closer_stop = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    pthread_join(srv->closer, NULL); /* it empties its queue first (INFO's volumes) */

    listener_close(&srv->l);
    nbd_tls_ctx_free(srv->tls_ctx);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    free(srv);
}
