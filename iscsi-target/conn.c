/*
 * conn.c - one iSCSI connection on its reactor: the input pump, the send queue, and the end
 * of a connection. The same design as the NBD server's conn.c:
 *
 * Input
 *   Each reading state (pdu.c) asks for a number of bytes (iscsi_conn_want) into a
 *   destination, or to be discarded. The pump satisfies the wish from the input buffer,
 *   then by one recv on the reactor's ring at a time: into the input buffer, or straight
 *   into the destination when a large data segment (WRITE data) is wanted. When the wish is
 *   met, the state's handler runs and sets the next wish, or none.
 *
 * Output
 *   PDUs are queued as chunks, each PDU whole and in one go on the reactor thread. One send
 *   is in flight at a time: small chunks are gathered into a staging buffer, a large one
 *   (READ data) is sent from where it is. A chunk may carry the task it completes; the task
 *   is freed when its last byte has been sent.
 *
 * End
 *   iscsi_conn_finish: no more input (end of stream, logout, a server stop): tasks in flight
 *   finish and their responses go out, then the socket is shut down. iscsi_conn_kill: the
 *   initiator broke the protocol or the socket failed: the socket is shut down at once and
 *   queued output dropped. Either way the connection becomes DEAD, and is handed to the
 *   service thread only when no recv, send, cancel, task or job refers to it any more and no
 *   entry point is on the stack.
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

#include "iscsi-target/iscsi-priv.h"

static const char *const state_names[] = {
    [CS_BHS] = "BHS",   [CS_AHS] = "AHS",         [CS_DATA] = "DATA", [CS_TAIL] = "TAIL",
    [CS_WAIT] = "WAIT", [CS_CLOSING] = "CLOSING", [CS_DEAD] = "DEAD",
};

const char *iscsi_state_name(enum conn_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "?";
}

static void sock_name(int fd, bool local, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int r = local ? getsockname(fd, (struct sockaddr *)&ss, &sl)
                  : getpeername(fd, (struct sockaddr *)&ss, &sl);
    if (r < 0) {
        snprintf(buf, len, "%s", local ? "127.0.0.1:3260" : "?");
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, len, "%s", local ? "127.0.0.1:3260" : "local");
    }
}

static void start_work_fn(struct reactor_work *w);

struct iscsi_conn *iscsi_conn_new(struct iscsi_server *srv, int fd, struct reactor *r)
{
    struct iscsi_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->in = malloc(ISCSI_IN_SIZE);
    c->stage = malloc(ISCSI_OUT_STAGE);
    if (!c->in || !c->stage) {
        free(c->in);
        free(c->stage);
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->fd = fd;
    c->reactor = r;
    c->state = CS_BHS;
    c->phase = PH_LOGIN;
    c->out_tail = &c->out_head;
    TAILQ_INIT(&c->tasks);
    c->start_work.fn = start_work_fn;
    iscsi_params_default(&c->p);
    sock_name(fd, false, c->peer, sizeof c->peer);
    sock_name(fd, true, c->local, sizeof c->local);
    return c;
}

/* The buffer for data segments of PDUs other than Data-Out and commands (logins, NOP-Out
 * ping data, Text), allocated on first use: an idle session does not hold it. */
uint8_t *iscsi_conn_data_buf(struct iscsi_conn *c)
{
    if (!c->data && !(c->data = malloc(ISCSI_MAX_RECV_SEGMENT)))
        iscsi_conn_kill(c, "out of memory for a data segment");
    return c->data;
}

/* ------------------------------------------------------------------------------------------
 * Entry points and release
 */

void iscsi_conn_enter(struct iscsi_conn *c)
{
    c->busy++;
}

void iscsi_conn_leave(struct iscsi_conn *c)
{
    c->busy--;
    if (c->busy || c->released || c->state != CS_DEAD || c->rx_pending || c->tx_pending ||
        c->cancel_pending || c->ntasks || c->jobs)
        return;
    c->released = true;
    iscsi_conn_release(c); /* c may be freed by now */
}

static void start_work_fn(struct reactor_work *w)
{
    struct iscsi_conn *c = container_of(w, struct iscsi_conn, start_work);
    iscsi_conn_enter(c);
    log_debug("iscsi: %s: connected", c->peer);
    c->login_start_ns = c->last_rx_ns = now_ns();
    iscsi_rx_begin(c);
    iscsi_conn_pump(c);
    iscsi_conn_leave(c);
}

/* ------------------------------------------------------------------------------------------
 * Output
 */

static void chunk_release(struct iscsi_conn *c, struct out_chunk *ch)
{
    struct iscsi_task *t = ch->task;
    c->out_bytes -= ch->len; /* queued bytes, owned or referred to: the backpressure */
    free(ch);
    if (t)
        iscsi_task_free(t);
}

static void enqueue(struct iscsi_conn *c, struct out_chunk *ch)
{
    ch->next = NULL;
    *c->out_tail = ch;
    c->out_tail = &ch->next;
    c->out_bytes += ch->len;
}

static struct out_chunk *dequeue(struct iscsi_conn *c)
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
static void drop_output(struct iscsi_conn *c)
{
    struct out_chunk *keep = c->tx_pending ? c->tx_chunk : NULL;
    struct out_chunk *list = c->out_head;
    c->out_head = NULL;
    c->out_tail = &c->out_head;
    if (keep) {
        if (list != keep) {
            log_err("iscsi: %s: send queue out of order", c->peer);
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

void iscsi_conn_send_copy(struct iscsi_conn *c, const void *data, size_t len)
{
    if (c->state == CS_DEAD || len == 0)
        return;
    struct out_chunk *ch = malloc(sizeof(*ch) + len);
    if (!ch) {
        iscsi_conn_kill(c, "out of memory for a response");
        return;
    }
    memcpy(ch->bytes, data, len);
    ch->data = ch->bytes;
    ch->len = len;
    ch->off = 0;
    ch->task = NULL;
    ch->owned = true;
    enqueue(c, ch);
}

void iscsi_conn_send_ref(struct iscsi_conn *c, const void *data, size_t len,
                         struct iscsi_task *task)
{
    if (c->state == CS_DEAD) {
        if (task)
            iscsi_task_free(task);
        return;
    }
    struct out_chunk *ch = malloc(sizeof(*ch));
    if (!ch) {
        if (task)
            iscsi_task_free(task);
        iscsi_conn_kill(c, "out of memory for a response");
        return;
    }
    ch->data = data;
    ch->len = len;
    ch->off = 0;
    ch->task = task;
    ch->owned = false;
    enqueue(c, ch);
}

static void tx_done(struct io_op *op, int res);

static void tx_issue(struct iscsi_conn *c, const void *p, size_t len)
{
    c->tx_pending = true;
    c->tx_op.done = tx_done;
    reactor_send(c->fd, p, len, MSG_NOSIGNAL, &c->tx_op);
}

void iscsi_conn_flush(struct iscsi_conn *c)
{
    if (c->tx_pending || c->state == CS_DEAD)
        return;
    if (c->stage_off < c->stage_len) {
        tx_issue(c, c->stage + c->stage_off, c->stage_len - c->stage_off);
        return;
    }
    c->stage_len = c->stage_off = 0;

    /* Chunks fully gathered are released after the send is issued: releasing frees tasks,
     * which may resume input and queue more output. */
    struct out_chunk *done = NULL, **done_tail = &done;
    while (c->out_head && c->out_head->off == c->out_head->len) {
        *done_tail = dequeue(c);
        done_tail = &(*done_tail)->next;
        *done_tail = NULL;
    }
    struct out_chunk *h = c->out_head;
    if (h && h->len - h->off >= ISCSI_OUT_STAGE / 2) {
        c->tx_chunk = h;
        tx_issue(c, h->data + h->off, h->len - h->off);
    } else if (h) {
        while ((h = c->out_head) && c->stage_len < ISCSI_OUT_STAGE) {
            if (c->stage_len > 0 && h->len - h->off >= ISCSI_OUT_STAGE / 2)
                break;
            size_t n = MIN(h->len - h->off, ISCSI_OUT_STAGE - c->stage_len);
            if (n)
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
        if (c->stage_len)
            tx_issue(c, c->stage, c->stage_len);
    }
    while (done) {
        struct out_chunk *next = done->next;
        chunk_release(c, done);
        done = next;
    }
    if (c->state == CS_WAIT && iscsi_rx_admit(c))
        iscsi_conn_pump(c);
    if (!c->tx_pending)
        iscsi_conn_check_closing(c);
}

static void tx_done(struct io_op *op, int res)
{
    struct iscsi_conn *c = container_of(op, struct iscsi_conn, tx_op);
    iscsi_conn_enter(c);
    c->tx_pending = false;
    struct out_chunk *ch = c->tx_chunk;
    c->tx_chunk = NULL;
    if (c->state == CS_DEAD) {
        drop_output(c);
    } else if (res <= 0) {
        char why[96];
        snprintf(why, sizeof why, "send failed: %s", res < 0 ? strerror(-res) : "no progress");
        iscsi_conn_kill(c, res == -EPIPE || res == -ECONNRESET ? NULL : why);
    } else if (ch) {
        ch->off += (size_t)res;
        if (ch->off == ch->len)
            chunk_release(c, dequeue(c));
        iscsi_conn_flush(c);
    } else {
        c->stage_off += (size_t)res;
        iscsi_conn_flush(c);
    }
    iscsi_conn_leave(c);
}

/* ------------------------------------------------------------------------------------------
 * Input
 */

static void rx_done(struct io_op *op, int res);

static void rx_issue(struct iscsi_conn *c, void *buf, size_t len, bool direct)
{
    c->rx_pending = true;
    c->rx_direct = direct;
    c->rx_op.done = rx_done;
    reactor_recv(c->fd, buf, len, 0, &c->rx_op);
}

void iscsi_conn_want(struct iscsi_conn *c, void *dst, uint64_t len)
{
    c->want_active = true;
    c->want_dst = dst;
    c->want_len = len;
    c->want_got = 0;
}

static void input_ended(struct iscsi_conn *c, int res)
{
    if (c->state == CS_CLOSING || c->state == CS_DEAD)
        return;
    if (res < 0 && res != -ECANCELED && res != -ECONNRESET)
        log_warn("iscsi: %s: receive failed: %s", c->peer, strerror(-res));
    else if ((c->want_got > 0 || c->state != CS_BHS) && !c->stopping)
        log_info("iscsi: %s: disconnected in the middle of a PDU (state %s)", c->peer,
                 iscsi_state_name(c->state));
    if (c->phase == PH_LOGIN) {
        log_debug("iscsi: %s: disconnected during login", c->peer);
        iscsi_conn_kill(c, NULL);
        return;
    }
    iscsi_conn_finish(c);
}

static void pump_once(struct iscsi_conn *c)
{
    for (;;) {
        if (c->state == CS_DEAD || c->state == CS_CLOSING || !c->want_active)
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
            iscsi_rx_input(c);
            continue;
        }
        if (c->rx_pending)
            return;
        uint64_t left = c->want_len - c->want_got;
        if (c->want_dst && left >= ISCSI_IN_SIZE / 2)
            rx_issue(c, c->want_dst + c->want_got, MIN(left, (uint64_t)1 << 30), true);
        else
            rx_issue(c, c->in, ISCSI_IN_SIZE, false);
        return;
    }
}

void iscsi_conn_pump(struct iscsi_conn *c)
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
    iscsi_conn_flush(c);
}

static void rx_done(struct io_op *op, int res)
{
    struct iscsi_conn *c = container_of(op, struct iscsi_conn, rx_op);
    iscsi_conn_enter(c);
    c->rx_pending = false;
    if (c->state == CS_DEAD || c->state == CS_CLOSING) {
        iscsi_ff_closing(c); /* a task whose buffer the recv was filling */
        iscsi_conn_check_closing(c);
    } else if (res <= 0) {
        input_ended(c, res);
    } else {
        c->last_rx_ns = now_ns();
        if (c->rx_direct)
            c->want_got += (uint64_t)res;
        else
            c->in_wr = (size_t)res;
        iscsi_conn_pump(c);
    }
    iscsi_conn_leave(c);
}

/* ------------------------------------------------------------------------------------------
 * The end
 */

static void cancel_done(struct io_op *op, int res UNUSED)
{
    struct iscsi_conn *c = container_of(op, struct iscsi_conn, cancel_op);
    iscsi_conn_enter(c);
    c->cancel_pending = false;
    iscsi_conn_leave(c);
}

static void cancel_rx(struct iscsi_conn *c)
{
    if (!c->rx_pending || c->cancel_pending)
        return;
    c->cancel_pending = true;
    c->cancel_op.done = cancel_done;
    reactor_cancel(&c->rx_op, &c->cancel_op);
}

void iscsi_conn_check_closing(struct iscsi_conn *c)
{
    if (c->state != CS_CLOSING || c->ntasks || c->rx_pending || c->tx_pending || c->out_head ||
        c->stage_off < c->stage_len)
        return;
    log_debug("iscsi: %s: closed after %llu commands", c->peer,
              (unsigned long long)c->commands);
    shutdown(c->fd, SHUT_RDWR);
    c->state = CS_DEAD;
}

void iscsi_conn_finish(struct iscsi_conn *c)
{
    if (c->state == CS_CLOSING || c->state == CS_DEAD)
        return;
    c->state = CS_CLOSING;
    c->want_active = false;
    cancel_rx(c);
    iscsi_ff_closing(c);
    iscsi_conn_flush(c);
    iscsi_conn_check_closing(c);
}

void iscsi_conn_kill(struct iscsi_conn *c, const char *why)
{
    if (c->state == CS_DEAD)
        return;
    if (why)
        log_warn("iscsi: %s: %s (state %s); disconnecting", c->peer, why,
                 iscsi_state_name(c->state));
    c->state = CS_DEAD;
    c->want_active = false;
    shutdown(c->fd, SHUT_RDWR);
    cancel_rx(c);
    drop_output(c);
    iscsi_ff_closing(c);
}
