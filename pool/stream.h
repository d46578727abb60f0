/*
 * stream.h - one network connection's byte stream on its reactor, for the network front ends
 * (NBD, iSCSI): the input pump, the output queue and the end of a connection. The protocol
 * stays with the front end, which embeds a struct stream in its connection and is called
 * back through struct stream_ops.
 *
 * Input
 *   The front end's reading state asks for a number of bytes (stream_want) into a
 *   destination, or to be discarded (NULL). The pump satisfies the wish from the input
 *   buffer, then by one recv on the reactor's ring at a time: into the input buffer, or
 *   straight into the destination when a large payload is wanted (and no filter is on).
 *   When the wish is met, ops->input runs and sets the next wish, or none: a front end that
 *   wants nothing (its in-flight limit is reached, the peer said goodbye) is not read from.
 *
 * Output
 *   Output is queued as chunks, each message whole and in one go on the reactor thread, so
 *   messages never interleave. One send is in flight at a time; it gathers the chunks at
 *   the head of the queue, each from where it is (READ data is not copied), and it is issued
 *   once the reactor's pass has run, so that every reply of the pass goes out in it. A chunk
 *   may carry what it completes (a request, a task): ops->sent frees it once the chunk's
 *   last byte has been sent or the chunk is dropped, so a peer that does not read its
 *   replies soon holds no more requests and stops being read from.
 *
 * Filter
 *   A filter (TLS) may be put between the socket and the stream after the stream has begun
 *   (STARTTLS). It runs its own handshake first; from then on recv fills a buffer of received
 *   bytes which the filter takes in (feed) and decodes into the input buffer (read), and
 *   output is handed to the filter as it is queued (write), which queues what it produces
 *   with stream_send_raw. The send queue then holds only the filter's output, in order.
 *
 * End
 *   stream_finish: no more input (end of stream, a goodbye, a server stop): what the front end
 *   has in flight finishes and its output goes out (then the filter says goodbye), then the
 *   socket is shut down. stream_kill: the peer broke the protocol or the socket failed: the
 *   socket is shut down at once (which ends the pending recv and send) and queued output is
 *   dropped. Either way the stream is DEAD, and ops->release is called only when no recv,
 *   send or cancel refers to it, the front end is idle (ops->idle: no request refers to it)
 *   and no entry point is on the stack: every completion and posted work of the connection
 *   brackets its work with stream_enter and stream_leave, since a volume completion may run
 *   inside a submit and free what the caller still uses.
 *
 * Threads
 *   Everything here runs on the reactor that owns the connection; nothing is locked.
 *
 * Errors
 *   A failure of the socket or of memory kills the stream with a message naming the
 *   protocol, the peer and the cause; the front end sees the stream DEAD.
 */
#ifndef CISTERN_POOL_STREAM_H
#define CISTERN_POOL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "pool/pool.h"

#define STREAM_IN_SIZE (64u << 10)     /* the input buffer */
#define STREAM_TX_IOV 64               /* chunks gathered into one send */
#define STREAM_TX_MAX (1u << 20)       /* bytes gathered into one send */
#define STREAM_RAW_SIZE (64u << 10)    /* bytes received at once for a filter */

enum stream_state {
    STREAM_OPEN,    /* reading and writing */
    STREAM_CLOSING, /* no more input: finishing what is in flight and its output */
    STREAM_DEAD,    /* socket shut down: waiting for operations to end, then released */
};

struct stream;

/* The front end's part. Every callback runs on the stream's reactor; none may be NULL unless
 * said. */
struct stream_ops {
    /* The wish of stream_want is met: handle the bytes and set the next wish, or none. */
    void (*input)(struct stream *s);
    /* Input ended while OPEN: @res is 0 (end of stream) or a negative errno (a failed recv
     * or decoding). The front end finishes or kills the stream. */
    void (*input_ended)(struct stream *s, int res);
    /* Input stopped for good (finish, kill, or the last recv ended after them): drop what
     * was being read into, unless s->rx_pending says a recv still writes into it. */
    void (*input_stopped)(struct stream *s);
    /* The chunk carrying @done (stream_send_ref) was sent or dropped: free @done. */
    void (*sent)(struct stream *s, void *done);
    /* The send queue was looked at and chunks were released: input waiting for output to
     * drain may resume. NULL: nothing waits for that. */
    void (*flushed)(struct stream *s);
    /* True when nothing of the front end's (request, task) is in flight. */
    bool (*idle)(struct stream *s);
    /* CLOSING reached its end: the socket is shut down next (for the closing message). */
    void (*closed)(struct stream *s);
    /* DEAD, idle and unreferenced: hand the connection over to be freed (the stream may be
     * freed before this returns). Returns false when something posted to the reactor still
     * refers to the connection: release is asked again at the next stream_leave. */
    bool (*release)(struct stream *s);
    /* The front end's reading state, for messages. */
    const char *(*state_name)(struct stream *s);
};

/* A transformation between the socket and the stream's bytes (TLS). */
struct stream_filter {
    const char *name; /* for messages: "TLS" */
    /* Advances the filter's handshake: 1 done, 0 more received bytes are needed, or a
     * negative errno. May call stream_want (the front end's next wish) when it is done. */
    int (*handshake)(struct stream *s);
    /* Takes in @n received bytes: 0, or a negative errno. */
    int (*feed)(struct stream *s, const void *raw, size_t n);
    /* Decodes into @dst: bytes (> 0), 0 when more received bytes are needed, -ECONNRESET at
     * the peer's orderly end, another negative errno on failure. */
    long (*read)(struct stream *s, void *dst, size_t len);
    /* Encodes and queues (stream_send_raw) @len bytes: 0, or a negative errno. */
    int (*write)(struct stream *s, const void *p, size_t len);
    /* Queues the filter's goodbye (a TLS close_notify). */
    void (*shutdown)(struct stream *s);
};

struct stream_chunk;

/* Embedded in the front end's connection. The front end reads the fields marked so; the
 * rest is private. */
struct stream {
    int fd;                       /* read */
    enum stream_state state;      /* read */
    const char *proto, *peer;     /* for messages: "nbd", "127.0.0.1:40112" */
    const struct stream_ops *ops;
    const struct stream_filter *filter;
    bool filter_on;               /* read: handshake done, every byte goes through it */
    bool filter_shut;

    /* Input */
    uint8_t *in;                  /* read (bytes in_rd..in_wr not consumed yet) */
    size_t in_rd, in_wr;
    bool want_active;             /* read: a wish is set */
    uint8_t *want_dst;
    uint64_t want_len, want_got;  /* read: want_got bytes of the wish arrived */
    uint8_t *raw;                 /* received bytes for the filter */
    bool rx_pending;              /* read: a recv is in flight */
    bool rx_direct, rx_raw;
    struct io_op rx_op;
    bool in_pump, pump_again;
    uint64_t last_rx_ns;          /* read: when bytes last arrived (now_ns) */

    /* Output */
    struct stream_chunk *out_head, **out_tail;
    uint64_t out_bytes;           /* read: bytes queued and not yet sent */
    uint64_t out_copied;          /* read: of those, bytes copied (not referred to) */
    struct iovec tx_iov[STREAM_TX_IOV];
    struct msghdr tx_msg;
    unsigned tx_chunks;           /* chunks, from the head, the pending send reads from */
    bool tx_pending;
    struct io_op tx_op;
    struct io_op cancel_op;
    bool cancel_pending;
    bool flush_queued;
    struct reactor_work flush_work;

    unsigned busy; /* entry points on the stack */
    bool released;
};

/* Sets up @s on socket @fd (which it owns from now on: stream_free closes it). @proto and
 * @peer must outlive the stream. Returns 0 or -ENOMEM. Any thread; the stream is then used
 * only on one reactor. */
int stream_init(struct stream *s, int fd, const char *proto, const char *peer,
                const struct stream_ops *ops);
/* Frees the buffers and queued chunks (not what they carry) and closes the socket. For the
 * thread that frees the connection once it was released, or after a failed start. */
void stream_free(struct stream *s);

/* Bracket every entry point (a completion, posted work). Leave releases the stream when it
 * is DEAD and nothing refers to it any more. */
void stream_enter(struct stream *s);
void stream_leave(struct stream *s);

/* Waits for @len bytes into @dst (NULL: discard them); ops->input runs then. */
void stream_want(struct stream *s, void *dst, uint64_t len);
/* Resumes reading (a slot freed, a state changed), then sends what is queued. */
void stream_pump(struct stream *s);

/* Queues output. send_copy copies @len bytes; send_ref refers to them until sent and, when
 * @done is set, gives it to ops->sent once they are sent (at once when the stream is DEAD
 * or a filter has encoded them). send_raw queues bytes past the filter (its own output). */
void stream_send_copy(struct stream *s, const void *data, size_t len);
void stream_send_ref(struct stream *s, const void *data, size_t len, void *done);
void stream_send_raw(struct stream *s, const void *data, size_t len);
/* Sends what is queued once the reactor's current pass has run (at once off a reactor). */
void stream_flush(struct stream *s);

/* Puts @f between the socket and the stream: bytes already read but not consumed become
 * the filter's input, no wish is active, and the pump runs the filter's handshake. Returns
 * 0, or a negative errno (the stream is left as it was). */
int stream_filter_start(struct stream *s, const struct stream_filter *f);

/* See End above. @why (NULL: no message) names the cause for the warning. */
void stream_finish(struct stream *s);
void stream_kill(struct stream *s, const char *why);
/* CLOSING: when everything has ended, shut down (the front end calls it when a request
 * ends). */
void stream_check_closing(struct stream *s);

#endif
