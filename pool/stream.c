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
    if (!s->in)
        return -ENOMEM;
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
    free(s->raw);
    s->in = s->raw = NULL;
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

/* Drops queued output, except the chunks a pending send is reading. */
static void drop_output(struct stream *s)
{
    struct stream_chunk **keep_end = &s->out_head;
    for (unsigned i = 0; s->tx_pending && i < s->tx_chunks; i++)
        keep_end = &(*keep_end)->next; /* they stay queued, and counted */
    struct stream_chunk *list = *keep_end;
    *keep_end = NULL;
    s->out_tail = keep_end;
    while (list) {
        struct stream_chunk *next = list->next;
        chunk_release(s, list);
        list = next;
    }
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

/* Releases the chunks at the head of the queue that have been sent whole. */
static void release_sent(struct stream *s)
{
    while (s->out_head && s->out_head->off == s->out_head->len)
        chunk_release(s, dequeue(s));
}

/* Sends the queue's head, gathered: up to STREAM_TX_IOV chunks and STREAM_TX_MAX bytes in
 * one sendmsg, each chunk from where it is. */
static void flush_now(struct stream *s)
{
    release_sent(s); /* which may free requests, and queue output */
    if (s->tx_pending || s->state == STREAM_DEAD)
        return;
    unsigned n = 0, chunks = 0;
    size_t bytes = 0;
    for (struct stream_chunk *ch = s->out_head; ch && n < STREAM_TX_IOV && bytes < STREAM_TX_MAX;
         ch = ch->next) {
        size_t len = MIN(ch->len - ch->off, STREAM_TX_MAX - bytes);
        chunks++;
        if (len == 0) /* a chunk may be empty: it only carries what it completes */
            continue;
        s->tx_iov[n].iov_base = (void *)(ch->data + ch->off);
        s->tx_iov[n].iov_len = len;
        n++;
        bytes += len;
    }
    if (n) {
        s->tx_pending = true;
        s->tx_chunks = chunks;
        memset(&s->tx_msg, 0, sizeof(s->tx_msg));
        s->tx_msg.msg_iov = s->tx_iov;
        s->tx_msg.msg_iovlen = n;
        s->tx_op.done = tx_done;
        reactor_sendmsg(s->fd, &s->tx_msg, MSG_NOSIGNAL, &s->tx_op);
    }
    if (s->ops->flushed)
        s->ops->flushed(s);
    if (!s->tx_pending)
        stream_check_closing(s);
}

/* Output queued in one pass of the reactor goes out together: the send is issued once every
 * completion and posted work of the pass has run (no sooner would it reach the socket: the
 * ring submits at the end of the pass). */
static void flush_work(struct reactor_work *w)
{
    struct stream *s = container_of(w, struct stream, flush_work);
    s->flush_queued = false;
    flush_now(s);
    stream_leave(s);
}

void stream_flush(struct stream *s)
{
    struct reactor *r = pool_reactor_self();
    if (!r) {
        flush_now(s);
        return;
    }
    if (s->flush_queued)
        return;
    s->flush_queued = true;
    stream_enter(s);
    s->flush_work.fn = flush_work;
    pool_reactor_post(r, &s->flush_work);
}

static void tx_done(struct io_op *op, int res)
{
    struct stream *s = container_of(op, struct stream, tx_op);
    stream_enter(s);
    s->tx_pending = false;
    if (s->state == STREAM_DEAD) {
        drop_output(s);
    } else if (res <= 0) {
        char why[96];
        snprintf(why, sizeof why, "send failed: %s", res < 0 ? strerror(-res) : "no progress");
        stream_kill(s, res == -EPIPE || res == -ECONNRESET ? NULL : why);
    } else {
        size_t left = (size_t)res;
        for (struct stream_chunk *ch = s->out_head; ch && left; ch = ch->next) {
            size_t n = MIN(left, ch->len - ch->off);
            ch->off += n;
            left -= n;
        }
        flush_now(s);
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
        s->out_head)
        return;
    if (s->filter_on && !s->filter_shut) {
        s->filter_shut = true;
        s->filter->shutdown(s);
        if (s->out_head) {
            flush_now(s);
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
    flush_now(s);
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
