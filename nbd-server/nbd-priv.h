/*
 * nbd-priv.h - what the files of the NBD server share: the server, a connection and its
 * state machine, a request, and the calls between
 *
 *   server.c        starting, adopting, stopping, its part of the listener (pool/listener.h);
 *                   the closing thread
 *   conn.c          one connection: its states, its part of the stream (pool/stream.h)
 *   handshake.c     the handshake states: greeting, options, the answers to each option
 *   transmission.c  the transmission states: request headers, payloads, replies
 *   tls.c           STARTTLS with OpenSSL over memory BIOs
 *
 * Threads
 *   A connection is touched only by the reactor that owns it, except for two fields guarded
 *   by the server lock (stop_pending and its place in the server's list) and its final
 *   freeing, which the closing thread does once the reactor has let go of it.
 */
#ifndef CISTERN_NBD_PRIV_H
#define CISTERN_NBD_PRIV_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/common.h"
#include "nbd-server/nbd-proto.h"
#include "nbd-server/nbd-server.h"
#include "pool/listener.h"
#include "pool/pool.h"
#include "pool/stream.h"
#include "volumes/volumes.h"

#define NBD_OPT_MAX STREAM_IN_SIZE   /* longer options are discarded and refused as TOO_BIG */
#define NBD_OPT_SKIP_MAX (16u << 20) /* longer than this, an option is a lie: disconnect */
#define NBD_BASE_ALLOCATION "base:allocation"
#define NBD_META_ID_BASE 1u     /* our context id for base:allocation */
#define NBD_META_ID_CHANGED 2u  /* ... for cistern:changed:SNAP */
#define NBD_META_CHANGED "cistern:changed:"
#define NBD_STATE_CHANGED 1u    /* cistern:changed: the range changed since the snapshot */
#define NBD_BS_MAX_EXTENTS 1024 /* descriptors per BLOCK_STATUS reply */
#define NBD_READ_MAX_CHUNKS 64  /* hole and data chunks per structured READ reply */

/*
 * The states of a connection. Each input state names what it waits for; the transitions are
 * in handshake.c and transmission.c, each commented with the state it leads to.
 */
enum conn_state {
    CS_START,         /* greeting queued; nothing read yet */
    CS_CLIENT_FLAGS,  /* reading the client's 32-bit flags */
    CS_OPT_HEADER,    /* reading IHAVEOPT, option, length (16 bytes) */
    CS_OPT_DATA,      /* reading an option's data */
    CS_OPT_SKIP,      /* discarding an oversize option's data, then NBD_REP_ERR_TOO_BIG */
    CS_TLS_HANDSHAKE, /* after STARTTLS: OpenSSL's handshake over the ring */
    CS_TX_HEADER,     /* reading a request header (28 bytes) */
    CS_TX_WAIT_SLOT,  /* a header is read but the in-flight limit is reached */
    CS_TX_PAYLOAD,    /* reading a WRITE payload into its request's buffer */
    CS_TX_SKIP,       /* discarding the payload of a refused WRITE, then its error */
};
/* Closing and dead are the stream's states (c->s.state); c->state stays where input ended. */

const char *nbd_state_name(enum conn_state s);

struct nbd_conn;

/* One NBD request, from its header to the end of its reply's send. */
struct nbd_req {
    struct nbd_conn *c;
    uint16_t flags, type;
    uint64_t cookie, offset;
    uint32_t length;
    uint8_t *buf;    /* READ/WRITE data, 4 KiB aligned; NULL otherwise */
    size_t bufsize;  /* bytes charged to the connection's in-flight budget */
    uint64_t io_off; /* READ: the 512-aligned range actually read */
    uint64_t io_len;
    uint32_t err; /* an NBD error decided before the volume saw the request */
    struct vol_req vr;
};

struct nbd_conn {
    struct stream s; /* the socket, input buffer, send queue, end of life */
    struct nbd_server *srv;
    struct reactor *reactor;
    char peer[80]; /* for messages: "127.0.0.1:40112", "unix" */
    enum conn_state state;
    LIST_ENTRY(nbd_conn) link; /* in srv->conns, under the server lock */
    bool stop_pending;         /* stop_work posted and not yet run (server lock) */
    struct vol *listed_vol;    /* vol once in transmission, for nbd_server_evict (server lock) */
    bool stopping;             /* nbd_server_stop asked us to finish */
    struct reactor_work start_work, stop_work;

    /* Input */
    uint8_t hdr[32];         /* fixed-size headers are read here */
    struct nbd_req *cur_req; /* CS_TX_PAYLOAD, CS_TX_SKIP: the request being read */

    /* Handshake */
    uint32_t client_flags;
    uint32_t opt, opt_len;
    uint8_t *opt_data;
    bool structured;
    bool meta_base;    /* base:allocation selected ... */
    char *meta_export; /* ... for this export name */
    char *meta_changed; /* cistern:changed:SNAP selected: SNAP, or NULL */

    /* TLS */
    SSL *ssl;
    BIO *rbio, *wbio; /* network side: rbio is fed from recv, wbio drained to send */
    bool tls;         /* STARTTLS done: every byte goes through ssl */

    /* Transmission */
    struct vol *vol;
    char *export_name;
    bool readonly;
    uint64_t size;
    uint32_t grain;
    uint16_t tx_flags;
    unsigned inflight;       /* requests allocated and not yet freed */
    uint64_t inflight_bytes; /* their buffers */
    uint64_t requests;       /* served, for the closing message */
};

struct nbd_server {
    struct nbd_exports ex;
    void *ctx;
    SSL_CTX *tls_ctx;
    bool tls_required;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct listener l;           /* accepting, and the count of connections not yet freed */
    LIST_HEAD(, nbd_conn) conns; /* (lock) */

    /* The closing thread: closes volumes and frees connections off the reactors. */
    pthread_t closer;
    bool closer_stop;
    struct close_item *close_head;
};

/* server.c */
/* Hands @v to the closing thread (close() runs there). Any thread. */
void nbd_close_vol_later(struct nbd_server *srv, struct vol *v);
/* The connection is finished on its reactor: unlist it and let the closing thread free it
 * (false: its stop is still posted; see stream_ops.release). */
bool nbd_conn_release(struct nbd_conn *c);
/* Frees a connection's memory (closing thread, or on a failed start). */
void nbd_conn_free(struct nbd_conn *c);

/* conn.c */
struct nbd_conn *nbd_conn_new(struct nbd_server *srv, int fd, struct reactor *r);
void nbd_conn_start_work(struct reactor_work *w); /* on its reactor: greeting, first read */
void nbd_conn_stop_work(struct reactor_work *w);  /* on its reactor: graceful stop */
/* Input, output and the end go through c->s (pool/stream.h): stream_want, stream_send_copy,
 * stream_send_ref (with the request its reply completes), stream_kill, stream_finish, and
 * stream_enter/stream_leave around every entry point. Replies never interleave: a reply's
 * chunks are queued one after another by one call chain on the reactor thread. */
/* The request is done (its reply sent or dropped): free it and resume reading. */
void nbd_req_free(struct nbd_req *req);

/* handshake.c: the handlers of CS_START .. CS_TLS_HANDSHAKE. */
void nbd_hs_begin(struct nbd_conn *c);
void nbd_hs_input(struct nbd_conn *c);    /* the wanted bytes of a handshake state arrived */
void nbd_hs_tls_done(struct nbd_conn *c); /* CS_TLS_HANDSHAKE ended well */

/* transmission.c */
void nbd_tx_begin(struct nbd_conn *c); /* enter CS_TX_HEADER */
void nbd_tx_input(struct nbd_conn *c); /* the wanted bytes of a transmission state arrived */
bool nbd_tx_admit(struct nbd_conn *c); /* CS_TX_WAIT_SLOT: retry; true when admitted */
uint32_t nbd_errno_to_wire(int err);   /* negative errno -> NBD_E* */

/* tls.c */
int nbd_tls_ctx_new(const struct nbd_config *cfg, SSL_CTX **out);
void nbd_tls_ctx_free(SSL_CTX *ctx);
/* Begins TLS on @c (after the ACK of STARTTLS is queued): puts the TLS filter on its stream;
 * bytes already read become the start of the TLS stream; the pump runs the handshake, and
 * nbd_hs_tls_done when it ends well. */
int nbd_tls_start(struct nbd_conn *c);
void nbd_tls_conn_free(struct nbd_conn *c);

/* Big-endian helpers */
static inline uint16_t nbd_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t nbd_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t nbd_get64(const uint8_t *p)
{
    return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4);
}
static inline uint8_t *nbd_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}
static inline uint8_t *nbd_put32(uint8_t *p, uint32_t v)
{
    nbd_put16(p, (uint16_t)(v >> 16));
    return nbd_put16(p + 2, (uint16_t)v);
}
static inline uint8_t *nbd_put64(uint8_t *p, uint64_t v)
{
    nbd_put32(p, (uint32_t)(v >> 32));
    return nbd_put32(p + 4, (uint32_t)v);
}

#endif
