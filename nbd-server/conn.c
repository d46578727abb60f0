/*
 * conn.c - one NBD connection on its reactor: the input pump, the send queue, and the end
 * of a connection.
 *
 * Input
 *   Each input state asks for a number of bytes (nbd_conn_want) into a destination, or to be
 *   discarded. The pump satisfies the wish from the input buffer, then by one recv on the
 *   reactor's ring at a time: into the input buffer, or straight into the destination when
 *   a large payload is wanted and the stream is not encrypted. When the wish is met, the
 *   state's handler (handshake.c, transmission.c) runs and sets the next wish, or none (the
 *   in-flight limit is reached, the client said goodbye). Under TLS, recv fills a
 *   ciphertext buffer and OpenSSL decrypts into the input buffer.
 *
 * Output
 *   Replies are queued as chunks, each reply whole and in one go on the reactor thread, so
 *   replies never interleave. One send is in flight at a time: small chunks are gathered
 *   into a staging buffer and sent together, a large one (READ data) is sent from where it
 *   is. A chunk may carry the request it completes; the request is freed when its last
 *   byte has been sent, and only then does its slot free up: a client that does not read
 *   its replies soon stops being read from.
 *
 * End
 *   nbd_conn_finish: no more input (end of stream, NBD_CMD_DISC, a server stop): requests
 *   in flight finish and their replies go out, then the socket is shut down.
 *   nbd_conn_kill: the client broke the protocol or the socket failed: the socket is shut
 *   down at once (which ends the pending recv and send) and queued output is dropped.
 *   Either way the connection is DEAD, and its memory is handed to the closing thread only
 *   when no recv, send, cancel or request refers to it any more and no entry point is on
 *   the stack (busy), since a volume completion may run inside vol_submit.
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

#define NBD_RAW_SIZE (64u << 10) /* ciphertext read at once */

static const char *const state_names[] = {
    [CS_START] = "START",           [CS_CLIENT_FLAGS] = "CLIENT_FLAGS",
    [CS_OPT_HEADER] = "OPT_HEADER", [CS_OPT_DATA] = "OPT_DATA",
    [CS_OPT_SKIP] = "OPT_SKIP",     [CS_TLS_HANDSHAKE] = "TLS_HANDSHAKE",
    [CS_TX_HEADER] = "TX_HEADER",   [CS_TX_WAIT_SLOT] = "TX_WAIT_SLOT",
    [CS_TX_PAYLOAD] = "TX_PAYLOAD", [CS_TX_SKIP] = "TX_SKIP",
    [CS_CLOSING] = "CLOSING",       [CS_DEAD] = "DEAD",
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

struct nbd_conn *nbd_conn_new(struct nbd_server *srv, int fd, struct reactor *r)
{
    struct nbd_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->in = malloc(NBD_IN_SIZE);
    c->stage = malloc(NBD_OUT_STAGE);
    if (!c->in || !c->stage) {
        free(c->in);
        free(c->stage);
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->fd = fd;
    c->reactor = r;
    c->state = CS_START;
    c->out_tail = &c->out_head;
    c->start_work.fn = nbd_conn_start_work;
    c->stop_work.fn = nbd_conn_stop_work;
    peer_name(fd, c->peer, sizeof c->peer);
    return c;
}

/* ------------------------------------------------------------------------------------------
 * Entry points and release
 */

void nbd_conn_enter(struct nbd_conn *c)
{
    c->busy++;
}

void nbd_conn_leave(struct nbd_conn *c)
{
    c->busy--;
    if (c->busy || c->released || c->state != CS_DEAD || c->rx_pending || c->tx_pending ||
        c->cancel_pending || c->inflight)
        return;
    c->released = true;
    nbd_conn_release(c); /* c may be freed by now */
}

void nbd_conn_start_work(struct reactor_work *w)
{
    struct nbd_conn *c = container_of(w, struct nbd_conn, start_work);
    nbd_conn_enter(c);
    log_debug("nbd: %s: connected", c->peer);
    nbd_hs_begin(c);
    nbd_conn_pump(c);
    nbd_conn_leave(c);
}

void nbd_conn_stop_work(struct reactor_work *w)
{
    struct nbd_conn *c = container_of(w, struct nbd_conn, stop_work);
    nbd_conn_enter(c);
    pthread_mutex_lock(&c->srv->lock);
    c->stop_pending = false;
    pthread_mutex_unlock(&c->srv->lock);
    c->stopping = true;
    if (c->state < CS_TX_HEADER)
        nbd_conn_kill(c, NULL); /* still negotiating: nothing to finish */
    else
        nbd_conn_finish(c);
    /* The release may have been refused while the stop was pending. */
    nbd_conn_leave(c);
}

/* ------------------------------------------------------------------------------------------
 * Output
 */

static void chunk_release(struct nbd_conn *c, struct out_chunk *ch)
{
    struct nbd_req *req = ch->req;
    if (ch->owned)
        c->out_bytes -= ch->len;
    free(ch);
    if (req)
        nbd_req_free(req);
}

static void enqueue(struct nbd_conn *c, struct out_chunk *ch)
{
    ch->next = NULL;
    *c->out_tail = ch;
    c->out_tail = &ch->next;
    if (ch->owned)
        c->out_bytes += ch->len;
}

static struct out_chunk *dequeue(struct nbd_conn *c)
{
    struct out_chunk *ch = c->out_head;
    if (ch) {
        c->out_head = ch->next;
        if (!c->out_head)
            c->out_tail = &c->out_head;
    }
    return ch;
}

/* Drops queued output, except a chunk a pending send is reading. */
static void drop_output(struct nbd_conn *c)
{
    struct out_chunk *keep = c->tx_pending ? c->tx_chunk : NULL;
    struct out_chunk *list = c->out_head;
    c->out_head = NULL;
    c->out_tail = &c->out_head;
    if (keep) {
        if (list != keep) {
            /* The chunk being sent is always the head of the queue. */
            log_err("nbd: %s: send queue out of order", c->peer);
            abort();
        }
        list = keep->next;
        enqueue(c, keep);
    }
    while (list) {
        struct out_chunk *next = list->next;
        chunk_release(c, list);
        list = next;
    }
    if (!c->tx_pending)
        c->stage_len = c->stage_off = 0;
}

void nbd_conn_send_raw(struct nbd_conn *c, const void *data, size_t len)
{
    if (c->state == CS_DEAD || len == 0)
        return;
    struct out_chunk *ch = malloc(sizeof(*ch) + len);
    if (!ch) {
        nbd_conn_kill(c, "out of memory for a reply");
        return;
    }
    memcpy(ch->bytes, data, len);
    ch->data = ch->bytes;
    ch->len = len;
    ch->off = 0;
    ch->req = NULL;
    ch->owned = true;
    enqueue(c, ch);
}

void nbd_conn_send_copy(struct nbd_conn *c, const void *data, size_t len)
{
    if (c->state == CS_DEAD || len == 0)
        return;
    if (c->tls) {
        if (nbd_tls_write(c, data, len) < 0)
            nbd_conn_kill(c, "TLS encryption failed");
        return;
    }
    nbd_conn_send_raw(c, data, len);
}

void nbd_conn_send_ref(struct nbd_conn *c, const void *data, size_t len, struct nbd_req *req)
{
    if (c->state == CS_DEAD) {
        if (req)
            nbd_req_free(req);
        return;
    }
    if (c->tls) {
        if (len && nbd_tls_write(c, data, len) < 0)
            nbd_conn_kill(c, "TLS encryption failed");
        if (req)
            nbd_req_free(req);
        return;
    }
    struct out_chunk *ch = malloc(sizeof(*ch));
    if (!ch) {
        if (req)
            nbd_req_free(req);
        nbd_conn_kill(c, "out of memory for a reply");
        return;
    }
    ch->data = data;
    ch->len = len;
    ch->off = 0;
    ch->req = req;
    ch->owned = false;
    enqueue(c, ch);
}

static void tx_done(struct io_op *op, int res);

static void tx_issue(struct nbd_conn *c, const void *p, size_t len)
{
    c->tx_pending = true;
    c->tx_op.done = tx_done;
    reactor_send(c->fd, p, len, MSG_NOSIGNAL, &c->tx_op);
}

static void closing_check(struct nbd_conn *c);

void nbd_conn_flush(struct nbd_conn *c)
{
    if (c->tx_pending || c->state == CS_DEAD)
        return;
    if (c->stage_off < c->stage_len) {
        tx_issue(c, c->stage + c->stage_off, c->stage_len - c->stage_off);
        return;
    }
    c->stage_len = c->stage_off = 0;

    /* Chunks fully gathered are released after the send is issued: releasing frees
     * requests, which may resume input and queue more replies. */
    struct out_chunk *done = NULL, **done_tail = &done;
    while (c->out_head && c->out_head->off == c->out_head->len) {
        *done_tail = dequeue(c);
        done_tail = &(*done_tail)->next;
        *done_tail = NULL;
    }
    struct out_chunk *h = c->out_head;
    if (h && h->len - h->off >= NBD_OUT_STAGE / 2) {
        c->tx_chunk = h;
        tx_issue(c, h->data + h->off, h->len - h->off);
    } else if (h) {
        while ((h = c->out_head) && c->stage_len < NBD_OUT_STAGE) {
            /* A large chunk (read data) goes out in place once what is gathered before it
             * (its reply header) has gone: copying it would cost more than a second send. */
            if (c->stage_len > 0 && h->len - h->off >= NBD_OUT_STAGE / 2)
                break;
            size_t n = MIN(h->len - h->off, NBD_OUT_STAGE - c->stage_len);
            if (n) /* a chunk may be empty: it only carries its request */
                memcpy(c->stage + c->stage_len, h->data + h->off, n);
            c->stage_len += n;
            h->off += n;
            if (h->off < h->len)
                break;
            *done_tail = dequeue(c);
            done_tail = &(*done_tail)->next;
            *done_tail = NULL;
        }
        c->tx_chunk = NULL;
        tx_issue(c, c->stage, c->stage_len);
    }
    while (done) {
        struct out_chunk *next = done->next;
        chunk_release(c, done);
        done = next;
    }
    if (!c->tx_pending)
        closing_check(c);
}

static void tx_done(struct io_op *op, int res)
{
    struct nbd_conn *c = container_of(op, struct nbd_conn, tx_op);
    nbd_conn_enter(c);
    c->tx_pending = false;
    struct out_chunk *ch = c->tx_chunk;
    c->tx_chunk = NULL;
    if (c->state == CS_DEAD) {
        drop_output(c);
    } else if (res <= 0) {
        char why[96];
        snprintf(why, sizeof why, "send failed: %s", res < 0 ? strerror(-res) : "no progress");
        nbd_conn_kill(c, res == -EPIPE || res == -ECONNRESET ? NULL : why);
    } else if (ch) {
        ch->off += (size_t)res;
        if (ch->off == ch->len)
            chunk_release(c, dequeue(c));
        nbd_conn_flush(c);
    } else {
        c->stage_off += (size_t)res;
        nbd_conn_flush(c);
    }
    nbd_conn_leave(c);
}

/* ------------------------------------------------------------------------------------------
 * Input
 */

static void rx_done(struct io_op *op, int res);

static void rx_issue(struct nbd_conn *c, void *buf, size_t len, bool direct, bool raw)
{
    c->rx_pending = true;
    c->rx_direct = direct;
    c->rx_raw = raw;
    c->rx_op.done = rx_done;
    reactor_recv(c->fd, buf, len, 0, &c->rx_op);
}

void nbd_conn_want(struct nbd_conn *c, void *dst, uint64_t len)
{
    c->want_active = true;
    c->want_dst = dst;
    c->want_len = len;
    c->want_got = 0;
}

/* A request whose payload was being read when input stopped. */
static void drop_partial(struct nbd_conn *c)
{
    if (c->rx_pending || !c->cur_req)
        return;
    struct nbd_req *req = c->cur_req;
    c->cur_req = NULL;
    nbd_req_free(req);
}

static void input_done(struct nbd_conn *c)
{
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
        nbd_conn_kill(c, NULL);
        break;
    }
}

/* End of input (0), a receive error, or a failed decryption. */
static void input_ended(struct nbd_conn *c, int res)
{
    bool mid = c->want_got > 0 || c->state == CS_TX_PAYLOAD || c->state == CS_TX_SKIP;
    if (c->state >= CS_TX_HEADER && c->state <= CS_TX_SKIP) {
        if (res < 0 && res != -ECANCELED && res != -ECONNRESET)
            log_warn("nbd: %s: receive failed: %s", c->peer, strerror(-res));
        else if (mid && !c->stopping)
            log_info("nbd: %s: disconnected in the middle of a request", c->peer);
        nbd_conn_finish(c);
        return;
    }
    if (c->state == CS_CLOSING || c->state == CS_DEAD)
        return;
    log_debug("nbd: %s: disconnected during the handshake (state %s)", c->peer,
              nbd_state_name(c->state));
    nbd_conn_kill(c, NULL);
}

static void pump_once(struct nbd_conn *c)
{
    for (;;) {
        if (c->state == CS_DEAD || c->state == CS_CLOSING)
            return;
        if (c->state == CS_TLS_HANDSHAKE) {
            int r = nbd_tls_handshake(c);
            if (r < 0) {
                nbd_conn_kill(c, "TLS handshake failed");
                return;
            }
            if (r == 1) {
                nbd_hs_tls_done(c);
                continue;
            }
            if (!c->rx_pending)
                rx_issue(c, c->raw, NBD_RAW_SIZE, false, true);
            return;
        }
        if (!c->want_active)
            return;
        size_t avail = c->in_wr - c->in_rd;
        if (avail) {
            uint64_t n = MIN((uint64_t)avail, c->want_len - c->want_got);
            if (c->want_dst)
                memcpy(c->want_dst + c->want_got, c->in + c->in_rd, n);
            c->want_got += n;
            c->in_rd += n;
            if (c->in_rd == c->in_wr)
                c->in_rd = c->in_wr = 0;
        }
        if (c->want_got == c->want_len) {
            c->want_active = false;
            input_done(c);
            continue;
        }
        /* The input buffer is empty now. */
        if (c->rx_pending)
            return;
        if (c->tls) {
            long r = nbd_tls_read(c, c->in, NBD_IN_SIZE);
            if (r > 0) {
                c->in_wr = (size_t)r;
                continue;
            }
            if (r < 0) {
                input_ended(c, r == -ECONNRESET ? 0 : (int)r);
                return;
            }
            rx_issue(c, c->raw, NBD_RAW_SIZE, false, true);
            return;
        }
        uint64_t left = c->want_len - c->want_got;
        if (c->want_dst && left >= NBD_IN_SIZE / 2)
            rx_issue(c, c->want_dst + c->want_got, MIN(left, (uint64_t)1 << 30), true, false);
        else
            rx_issue(c, c->in, NBD_IN_SIZE, false, false);
        return;
    }
}

void nbd_conn_pump(struct nbd_conn *c)
{
    if (c->in_pump) {
        c->pump_again = true;
        return;
    }
    c->in_pump = true;
    do {
        c->pump_again = false;
        pump_once(c);
    } while (c->pump_again);
    c->in_pump = false;
    nbd_conn_flush(c);
}

static void rx_done(struct io_op *op, int res)
{
    struct nbd_conn *c = container_of(op, struct nbd_conn, rx_op);
    nbd_conn_enter(c);
    c->rx_pending = false;
    if (c->state == CS_DEAD || c->state == CS_CLOSING) {
        drop_partial(c);
        closing_check(c);
    } else if (res <= 0) {
        input_ended(c, res);
    } else {
        if (c->rx_raw) {
            if (nbd_tls_feed(c, c->raw, (size_t)res) < 0)
                nbd_conn_kill(c, "out of memory for TLS input");
        } else if (c->rx_direct) {
            c->want_got += (uint64_t)res;
        } else {
            c->in_wr = (size_t)res;
        }
        nbd_conn_pump(c);
    }
    nbd_conn_leave(c);
}

/* ------------------------------------------------------------------------------------------
 * The end
 */

static void cancel_done(struct io_op *op, int res UNUSED)
{
    struct nbd_conn *c = container_of(op, struct nbd_conn, cancel_op);
    nbd_conn_enter(c);
    c->cancel_pending = false;
    nbd_conn_leave(c);
}

static void cancel_rx(struct nbd_conn *c)
{
    if (!c->rx_pending || c->cancel_pending)
        return;
    c->cancel_pending = true;
    c->cancel_op.done = cancel_done;
    reactor_cancel(&c->rx_op, &c->cancel_op);
}

/* CLOSING and idle: say goodbye (TLS close_notify), then shut the socket down. */
static void closing_check(struct nbd_conn *c)
{
    if (c->state != CS_CLOSING || c->inflight || c->cur_req || c->rx_pending || c->tx_pending ||
        c->out_head || c->stage_off < c->stage_len)
        return;
    if (c->tls && !c->tls_shut) {
        c->tls_shut = true;
        nbd_tls_shutdown(c);
        if (c->out_head) {
            nbd_conn_flush(c);
            return;
        }
    }
    log_debug("nbd: %s: closed after %llu requests", c->peer, (unsigned long long)c->requests);
    shutdown(c->fd, SHUT_RDWR);
    c->state = CS_DEAD;
}

void nbd_conn_finish(struct nbd_conn *c)
{
    if (c->state == CS_CLOSING || c->state == CS_DEAD)
        return;
    c->state = CS_CLOSING;
    c->want_active = false;
    cancel_rx(c);
    drop_partial(c);
    nbd_conn_flush(c);
    closing_check(c);
}

void nbd_conn_kill(struct nbd_conn *c, const char *why)
{
    if (c->state == CS_DEAD)
        return;
    if (why)
        log_warn("nbd: %s: %s (state %s); disconnecting", c->peer, why, nbd_state_name(c->state));
    c->state = CS_DEAD;
    c->want_active = false;
    shutdown(c->fd, SHUT_RDWR);
    cancel_rx(c);
    drop_output(c);
    drop_partial(c);
}

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
    if (c->state == CS_TX_WAIT_SLOT && nbd_tx_admit(c))
        nbd_conn_pump(c);
    else if (c->state == CS_CLOSING)
        closing_check(c);
}
