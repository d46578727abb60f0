/*
 * stream.c - a network connection's byte stream on its reactor: the input pump, the output
 * queue and the end of a connection, shared by the NBD server and the iSCSI target. The
 * design (wishes, chunks, one recv and one send in flight, the release rule) is described
 * in stream.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "pool/stream.h"

/* A piece of output: bytes @data[off..len). @done goes to ops->sent once the chunk is sent. */
struct stream_chunk {
    struct stream_chunk *next;
    const uint8_t *data;
    size_t len, off;
    void *done;
    bool copied;     /* counted in out_copied (inline bytes, the filter's output) */
    uint8_t bytes[]; /* inline data when data == bytes */
};

int stream_init(struct stream *s, int fd, const char *proto, const char *peer,
                const struct stream_ops *ops)
{
    memset(s, 0, sizeof(*s));
    s->in = malloc(STREAM_IN_SIZE);
    s->stage = malloc(STREAM_STAGE_SIZE);
    if (!s->in || !s->stage) {
        free(s->in);
        free(s->stage);
        return -ENOMEM;
    }
    s->fd = fd;
    s->proto = proto;
    s->peer = peer;
    s->ops = ops;
    s->state = STREAM_OPEN;
    s->out_tail = &s->out_head;
    return 0;
}

void stream_free(struct stream *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    while (s->out_head) {
        struct stream_chunk *ch = s->out_head;
        s->out_head = ch->next;
        free(ch);
    }
    free(s->in);
    free(s->stage);
    free(s->raw);
    s->in = s->stage = s->raw = NULL;
}

/* ------------------------------------------------------------------------------------------
 * Entry points and release
 */

void stream_enter(struct stream *s)
{
    s->busy++;
}

void stream_leave(struct stream *s)
{
    s->busy--;
    if (s->busy || s->released || s->state != STREAM_DEAD || s->rx_pending || s->tx_pending ||
        s->cancel_pending || !s->ops->idle(s))
        return;
    s->released = true;
    if (!s->ops->release(s)) /* when it returns true, s may be freed by now */
        s->released = false;
}

/* ------------------------------------------------------------------------------------------
 * Output
 */

static void chunk_release(struct stream *s, struct stream_chunk *ch)
{
    void *done = ch->done;
    s->out_bytes -= ch->len;
    if (ch->copied)
        s->out_copied -= ch->len;
    free(ch);
    if (done)
        s->ops->sent(s, done);
}

static void enqueue(struct stream *s, struct stream_chunk *ch)
{
    ch->next = NULL;
    *s->out_tail = ch;
    s->out_tail = &ch->next;
    s->out_bytes += ch->len;
    if (ch->copied)
        s->out_copied += ch->len;
}

static struct stream_chunk *dequeue(struct stream *s)
{
    struct stream_chunk *ch = s->out_head;
    if (ch) {
        s->out_head = ch->next;
        if (!s->out_head)
            s->out_tail = &s->out_head;
    }
    return ch;
}

/* Drops queued output, except a chunk a pending send is reading. */
static void drop_output(struct stream *s)
{
    struct stream_chunk *keep = s->tx_pending ? s->tx_chunk : NULL;
    struct stream_chunk *list = s->out_head;
    s->out_head = NULL;
    s->out_tail = &s->out_head;
    if (keep) {
        if (list != keep) {
            /* The chunk being sent is always the head of the queue. */
            log_err("%s: %s: send queue out of order", s->proto, s->peer);
            abort();
        }
        list = keep->next;
        keep->next = NULL;
        s->out_head = keep; /* it stays queued, and counted */
        s->out_tail = &keep->next;
    }
    while (list) {
        struct stream_chunk *next = list->next;
        chunk_release(s, list);
        list = next;
    }
    if (!s->tx_pending)
        s->stage_len = s->stage_off = 0;
}

void stream_send_raw(struct stream *s, const void *data, size_t len)
{
    if (s->state == STREAM_DEAD || len == 0)
        return;
    struct stream_chunk *ch = malloc(sizeof(*ch) + len);
    if (!ch) {
        stream_kill(s, "out of memory for output");
        return;
    }
    memcpy(ch->bytes, data, len);
    ch->data = ch->bytes;
    ch->len = len;
    ch->off = 0;
    ch->done = NULL;
    ch->copied = true;
    enqueue(s, ch);
}

static void filter_write(struct stream *s, const void *data, size_t len)
{
    if (s->filter->write(s, data, len) < 0) {
        char why[64];
        snprintf(why, sizeof why, "%s encryption failed", s->filter->name);
        stream_kill(s, why);
    }
}

void stream_send_copy(struct stream *s, const void *data, size_t len)
{
    if (s->state == STREAM_DEAD || len == 0)
        return;
    if (s->filter_on)
        filter_write(s, data, len);
    else
        stream_send_raw(s, data, len);
}

void stream_send_ref(struct stream *s, const void *data, size_t len, void *done)
{
    if (s->state == STREAM_DEAD) {
        if (done)
            s->ops->sent(s, done);
        return;
    }
    if (s->filter_on) {
        /* Encoded (copied) now: what the bytes belong to is free to go. */
        if (len)
            filter_write(s, data, len);
        if (done)
            s->ops->sent(s, done);
        return;
    }
    struct stream_chunk *ch = malloc(sizeof(*ch));
    if (!ch) {
        if (done)
            s->ops->sent(s, done);
        stream_kill(s, "out of memory for output");
        return;
    }
    ch->data = data;
    ch->len = len;
    ch->off = 0;
    ch->done = done;
    ch->copied = false;
    enqueue(s, ch);
}

static void tx_done(struct io_op *op, int res);

static void tx_issue(struct stream *s, const void *p, size_t len)
{
    s->tx_pending = true;
    s->tx_op.done = tx_done;
    reactor_send(s->fd, p, len, MSG_NOSIGNAL, &s->tx_op);
}

void stream_flush(struct stream *s)
{
    if (s->tx_pending || s->state == STREAM_DEAD)
        return;
    if (s->stage_off < s->stage_len) {
        tx_issue(s, s->stage + s->stage_off, s->stage_len - s->stage_off);
        return;
    }
    s->stage_len = s->stage_off = 0;

    /* Chunks fully gathered are released after the send is issued: releasing frees
     * requests, which may resume input and queue more output. */
    struct stream_chunk *done = NULL, **done_tail = &done;
    while (s->out_head && s->out_head->off == s->out_head->len) {
        *done_tail = dequeue(s);
        done_tail = &(*done_tail)->next;
        *done_tail = NULL;
    }
    struct stream_chunk *h = s->out_head;
    if (h && h->len - h->off >= STREAM_STAGE_SIZE / 2) {
        s->tx_chunk = h;
        tx_issue(s, h->data + h->off, h->len - h->off);
    } else if (h) {
        while ((h = s->out_head) && s->stage_len < STREAM_STAGE_SIZE) {
            /* A large chunk (read data) goes out in place once what is gathered before it
             * (its header) has gone: copying it would cost more than a second send. */
            if (s->stage_len > 0 && h->len - h->off >= STREAM_STAGE_SIZE / 2)
                break;
            size_t n = MIN(h->len - h->off, STREAM_STAGE_SIZE - s->stage_len);
            if (n) /* a chunk may be empty: it only carries what it completes */
                memcpy(s->stage + s->stage_len, h->data + h->off, n);
            s->stage_len += n;
            h->off += n;
            if (h->off < h->len)
                break;
            *done_tail = dequeue(s);
            done_tail = &(*done_tail)->next;
            *done_tail = NULL;
        }
        s->tx_chunk = NULL;
        if (s->stage_len)
            tx_issue(s, s->stage, s->stage_len);
    }
    while (done) {
        struct stream_chunk *next = done->next;
        chunk_release(s, done);
        done = next;
    }
    if (s->ops->flushed)
        s->ops->flushed(s);
    if (!s->tx_pending)
        stream_check_closing(s);
}

static void tx_done(struct io_op *op, int res)
{
    struct stream *s = container_of(op, struct stream, tx_op);
    stream_enter(s);
    s->tx_pending = false;
    struct stream_chunk *ch = s->tx_chunk;
    s->tx_chunk = NULL;
    if (s->state == STREAM_DEAD) {
        drop_output(s);
    } else if (res <= 0) {
        char why[96];
        snprintf(why, sizeof why, "send failed: %s", res < 0 ? strerror(-res) : "no progress");
        stream_kill(s, res == -EPIPE || res == -ECONNRESET ? NULL : why);
    } else if (ch) {
        ch->off += (size_t)res;
        if (ch->off == ch->len)
            chunk_release(s, dequeue(s));
        stream_flush(s);
    } else {
        s->stage_off += (size_t)res;
        stream_flush(s);
    }
    stream_leave(s);
}

/* ------------------------------------------------------------------------------------------
 * Input
 */

static void rx_done(struct io_op *op, int res);

static void rx_issue(struct stream *s, void *buf, size_t len, bool direct, bool raw)
{
    s->rx_pending = true;
    s->rx_direct = direct;
    s->rx_raw = raw;
    s->rx_op.done = rx_done;
    reactor_recv(s->fd, buf, len, 0, &s->rx_op);
}

void stream_want(struct stream *s, void *dst, uint64_t len)
{
    s->want_active = true;
    s->want_dst = dst;
    s->want_len = len;
    s->want_got = 0;
}

int stream_filter_start(struct stream *s, const struct stream_filter *f)
{
    if (!s->raw && !(s->raw = malloc(STREAM_RAW_SIZE)))
        return -ENOMEM;
    /* Bytes the peer sent right after asking for the filter, already read, begin its input. */
    if (s->in_wr > s->in_rd) {
        int r = f->feed(s, s->in + s->in_rd, s->in_wr - s->in_rd);
        if (r < 0)
            return r;
        s->in_rd = s->in_wr = 0;
    }
    s->filter = f;
    s->want_active = false;
    return 0;
}

static void pump_once(struct stream *s)
{
    for (;;) {
        if (s->state != STREAM_OPEN)
            return;
        if (s->filter && !s->filter_on) {
            int r = s->filter->handshake(s);
            if (r < 0) {
                char why[64];
                snprintf(why, sizeof why, "%s handshake failed", s->filter->name);
                stream_kill(s, why);
                return;
            }
            if (r == 1) {
                s->filter_on = true;
                continue;
            }
            if (!s->rx_pending)
                rx_issue(s, s->raw, STREAM_RAW_SIZE, false, true);
            return;
        }
        if (!s->want_active)
            return;
        size_t avail = s->in_wr - s->in_rd;
        if (avail) {
            uint64_t n = MIN((uint64_t)avail, s->want_len - s->want_got);
            if (s->want_dst)
                memcpy(s->want_dst + s->want_got, s->in + s->in_rd, n);
            s->want_got += n;
            s->in_rd += n;
            if (s->in_rd == s->in_wr)
                s->in_rd = s->in_wr = 0;
        }
        if (s->want_got == s->want_len) {
            s->want_active = false;
            s->ops->input(s);
            continue;
        }
        /* The input buffer is empty now. */
        if (s->rx_pending)
            return;
        if (s->filter_on) {
            long r = s->filter->read(s, s->in, STREAM_IN_SIZE);
            if (r > 0) {
                s->in_wr = (size_t)r;
                continue;
            }
            if (r < 0) {
                s->ops->input_ended(s, r == -ECONNRESET ? 0 : (int)r);
                return;
            }
            rx_issue(s, s->raw, STREAM_RAW_SIZE, false, true);
            return;
        }
        uint64_t left = s->want_len - s->want_got;
        if (s->want_dst && left >= STREAM_IN_SIZE / 2)
            rx_issue(s, s->want_dst + s->want_got, MIN(left, (uint64_t)1 << 30), true, false);
        else
            rx_issue(s, s->in, STREAM_IN_SIZE, false, false);
        return;
    }
}

void stream_pump(struct stream *s)
{
    if (s->in_pump) {
        s->pump_again = true;
        return;
    }
    s->in_pump = true;
    do {
        s->pump_again = false;
        pump_once(s);
    } while (s->pump_again);
    s->in_pump = false;
    stream_flush(s);
}

static void rx_done(struct io_op *op, int res)
{
    struct stream *s = container_of(op, struct stream, rx_op);
    stream_enter(s);
    s->rx_pending = false;
    if (s->state != STREAM_OPEN) {
        s->ops->input_stopped(s); /* what the recv was filling */
        stream_check_closing(s);
    } else if (res <= 0) {
        s->ops->input_ended(s, res);
    } else {
        s->last_rx_ns = now_ns();
        if (s->rx_raw) {
            if (s->filter->feed(s, s->raw, (size_t)res) < 0) {
                char why[64];
                snprintf(why, sizeof why, "out of memory for %s input", s->filter->name);
                stream_kill(s, why);
            }
        } else if (s->rx_direct) {
            s->want_got += (uint64_t)res;
        } else {
            s->in_wr = (size_t)res;
        }
        stream_pump(s);
    }
    stream_leave(s);
}

/* ------------------------------------------------------------------------------------------
 * The end
 */

static void cancel_done(struct io_op *op, int res UNUSED)
{
    struct stream *s = container_of(op, struct stream, cancel_op);
    stream_enter(s);
    s->cancel_pending = false;
    stream_leave(s);
}

static void cancel_rx(struct stream *s)
{
    if (!s->rx_pending || s->cancel_pending)
        return;
    s->cancel_pending = true;
    s->cancel_op.done = cancel_done;
    reactor_cancel(&s->rx_op, &s->cancel_op);
}

void stream_check_closing(struct stream *s)
{
    if (s->state != STREAM_CLOSING || !s->ops->idle(s) || s->rx_pending || s->tx_pending ||
        s->out_head || s->stage_off < s->stage_len)
        return;
    if (s->filter_on && !s->filter_shut) {
        s->filter_shut = true;
        s->filter->shutdown(s);
        if (s->out_head) {
            stream_flush(s);
            return;
        }
    }
    s->ops->closed(s);
    shutdown(s->fd, SHUT_RDWR);
    s->state = STREAM_DEAD;
}

void stream_finish(struct stream *s)
{
    if (s->state != STREAM_OPEN)
        return;
    s->state = STREAM_CLOSING;
    s->want_active = false;
    cancel_rx(s);
    s->ops->input_stopped(s);
    stream_flush(s);
    stream_check_closing(s);
}

void stream_kill(struct stream *s, const char *why)
{
    if (s->state == STREAM_DEAD)
        return;
    if (why)
        log_warn("%s: %s: %s (state %s); disconnecting", s->proto, s->peer, why,
                 s->state == STREAM_CLOSING ? "CLOSING" : s->ops->state_name(s));
    s->state = STREAM_DEAD;
    s->want_active = false;
    shutdown(s->fd, SHUT_RDWR);
    cancel_rx(s);
    drop_output(s);
    s->ops->input_stopped(s);
}
