/*
 * conn.c - one NBD connection on its reactor: its part of the connection stream
 * (pool/stream.h, which reads, queues replies and ends the connection).
 *
 * Input
 *   Each input state asks for a number of bytes (stream_want); when they are in, the
 *   state's handler (handshake.c, transmission.c) runs and sets the next wish, or none (the
 *   in-flight limit is reached, the client said goodbye). Under TLS (tls.c, the stream's
 *   filter) recv fills a ciphertext buffer and OpenSSL decrypts into the input buffer.
 *
 * Output
 *   A reply's last chunk carries its request, which is freed when the chunk has been sent;
 *   only then does its slot free up: a client that does not read its replies soon stops
 *   being read from.
 *
 * End
 *   stream_finish: no more input (end of stream, NBD_CMD_DISC, a server stop): requests in
 *   flight finish and their replies go out, then the socket is shut down. stream_kill: the
 *   client broke the protocol or the socket failed. Either way the stream is DEAD, and the
 *   connection is handed to the closing thread once no request refers to it either.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd-server/nbd-priv.h"

static const char *const state_names[] = {
    [CS_START] = "START",           [CS_CLIENT_FLAGS] = "CLIENT_FLAGS",
    [CS_OPT_HEADER] = "OPT_HEADER", [CS_OPT_DATA] = "OPT_DATA",
    [CS_OPT_SKIP] = "OPT_SKIP",     [CS_TLS_HANDSHAKE] = "TLS_HANDSHAKE",
    [CS_TX_HEADER] = "TX_HEADER",   [CS_TX_WAIT_SLOT] = "TX_WAIT_SLOT",
    [CS_TX_PAYLOAD] = "TX_PAYLOAD", [CS_TX_SKIP] = "TX_SKIP",
};

const char *nbd_state_name(enum conn_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) && state_names[s] ? state_names[s] : "?";
}

static void peer_name(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN];

    snprintf(buf, len, "client");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, len, "client %s:%u", host, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "client [%s]:%u", host, ntohs(in6->sin6_port));
    } else if (ss.ss_family == AF_UNIX) {
        snprintf(buf, len, "client (unix socket, fd %d)", fd);
    }
}

static const struct stream_ops conn_ops;

struct nbd_conn *nbd_conn_new(struct nbd_server *srv, int fd, struct reactor *r)
{
    struct nbd_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (stream_init(&c->s, fd, "nbd", c->peer, &conn_ops) < 0) {
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->reactor = r;
    c->state = CS_START;
    c->start_work.fn = nbd_conn_start_work;
    c->stop_work.fn = nbd_conn_stop_work;
    peer_name(fd, c->peer, sizeof c->peer);
    return c;
}

/* ------------------------------------------------------------------------------------------
 * Entry points
 */

void nbd_conn_start_work(struct reactor_work *w)
{
    struct nbd_conn *c = container_of(w, struct nbd_conn, start_work);
    stream_enter(&c->s);
    log_debug("nbd: %s: connected", c->peer);
    nbd_hs_begin(c);
    stream_pump(&c->s);
    stream_leave(&c->s);
}

void nbd_conn_stop_work(struct reactor_work *w)
{
    struct nbd_conn *c = container_of(w, struct nbd_conn, stop_work);
    stream_enter(&c->s);
    pthread_mutex_lock(&c->srv->lock);
    c->stop_pending = false;
    pthread_mutex_unlock(&c->srv->lock);
    c->stopping = true;
    if (c->state < CS_TX_HEADER && c->s.state == STREAM_OPEN)
        stream_kill(&c->s, NULL); /* still negotiating: nothing to finish */
    else
        stream_finish(&c->s);
    /* The release may have been refused while the stop was pending. */
    stream_leave(&c->s);
}

/* ------------------------------------------------------------------------------------------
 * The stream's callbacks
 */

static void conn_input(struct stream *s)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    switch (c->state) {
    case CS_CLIENT_FLAGS:
    case CS_OPT_HEADER:
    case CS_OPT_DATA:
    case CS_OPT_SKIP:
        nbd_hs_input(c);
        break;
    case CS_TX_HEADER:
    case CS_TX_PAYLOAD:
    case CS_TX_SKIP:
        nbd_tx_input(c);
        break;
    default:
        log_err("nbd: %s: input arrived in state %s", c->peer, nbd_state_name(c->state));
        stream_kill(s, NULL);
        break;
    }
}

/* End of input (0), a receive error, or a failed decryption. */
static void conn_input_ended(struct stream *s, int res)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    bool mid = s->want_got > 0 || c->state == CS_TX_PAYLOAD || c->state == CS_TX_SKIP;
    if (c->state >= CS_TX_HEADER) {
        if (res < 0 && res != -ECANCELED && res != -ECONNRESET)
            log_warn("nbd: %s: receive failed: %s", c->peer, strerror(-res));
        else if (mid && !c->stopping)
            log_info("nbd: %s: disconnected in the middle of a request", c->peer);
        stream_finish(s);
        return;
    }
    log_debug("nbd: %s: disconnected during the handshake (state %s)", c->peer,
              nbd_state_name(c->state));
    stream_kill(s, NULL);
}

/* A request whose payload was being read when input stopped. */
static void conn_input_stopped(struct stream *s)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    if (s->rx_pending || !c->cur_req)
        return;
    struct nbd_req *req = c->cur_req;
    c->cur_req = NULL;
    nbd_req_free(req);
}

static void conn_sent(struct stream *s UNUSED, void *done)
{
    nbd_req_free(done);
}

static bool conn_idle(struct stream *s)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    return !c->inflight && !c->cur_req;
}

static void conn_closed(struct stream *s)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    log_debug("nbd: %s: closed after %llu requests", c->peer, (unsigned long long)c->requests);
}

static bool conn_release(struct stream *s)
{
    return nbd_conn_release(container_of(s, struct nbd_conn, s));
}

static const char *conn_state_name(struct stream *s)
{
    return nbd_state_name(container_of(s, struct nbd_conn, s)->state);
}

static const struct stream_ops conn_ops = {
    .input = conn_input,
    .input_ended = conn_input_ended,
    .input_stopped = conn_input_stopped,
    .sent = conn_sent,
    .idle = conn_idle,
    .closed = conn_closed,
    .release = conn_release,
    .state_name = conn_state_name,
};

/* ------------------------------------------------------------------------------------------
 * Requests
 */

void nbd_req_free(struct nbd_req *req)
{
    struct nbd_conn *c = req->c;
    free(req->buf);
    c->inflight--;
    c->inflight_bytes -= req->bufsize;
    free(req);
    if (c->state == CS_TX_WAIT_SLOT && c->s.state == STREAM_OPEN && nbd_tx_admit(c))
        stream_pump(&c->s);
    else if (c->s.state == STREAM_CLOSING)
        stream_check_closing(&c->s);
}
