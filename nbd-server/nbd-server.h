/*
 * Cistern NBD server: serves volumes to NBD clients (qemu, libnbd, nbd-client).
 *
 * Model
 *   The daemon supplies the exports through struct nbd_exports: a name resolves to an open
 *   volume handle, the server uses it for one connection and hands it back to close(). The
 *   server speaks the fixed newstyle handshake (LIST, INFO, GO, EXPORT_NAME, ABORT, STARTTLS,
 *   STRUCTURED_REPLY, LIST/SET_META_CONTEXT with "base:allocation") and the transmission
 *   commands READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS and DISC, with FUA.
 *   A FLUSH commits the whole pool, so several connections to one export are coherent
 *   (CAN_MULTI_CONN).
 *
 * Threads
 *   The listening socket is accepted on one reactor (pool_reactor_*); each connection is
 *   given to a reactor in turn and lives there: its socket I/O goes through that reactor's
 *   ring and its volume requests run there. Up to NBD_MAX_INFLIGHT requests (and
 *   NBD_MAX_INFLIGHT_BYTES of payload) are in flight per connection; beyond that the server
 *   stops reading from the client until one completes. Replies go out in completion order,
 *   each one whole. The callbacks of struct nbd_exports run on reactor threads (open, list)
 *   and on the server's own closing thread (close), never two at once for one connection.
 *
 * Untrusted input
 *   Every length and offset from a client is checked before use. A malformed request gets
 *   the protocol's error; a client that breaks the framing (bad magic, a lying length) is
 *   disconnected, after the requests it had in flight have finished. One client never
 *   affects another.
 *
 * Errors
 *   0 or a negative errno; causes are logged once, naming the client or the address.
 */
#ifndef CISTERN_NBD_SERVER_H
#define CISTERN_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct vol;
struct nbd_server;

#define NBD_MAX_INFLIGHT 64                /* requests per connection */
#define NBD_MAX_INFLIGHT_BYTES (64u << 20) /* payload bytes per connection */
#define NBD_MAX_PAYLOAD (32u << 20)        /* largest READ or WRITE; the maximum block size */
#define NBD_MAX_NAME 4096                  /* export names and descriptions, bytes */

struct nbd_exports {
    /*
     * Opens export @name ("POOL/VOL", or "VOL" when only one pool has it; "" is the default
     * export, which may not exist). Sets *v, *readonly and a NUL-terminated description of
     * at most @desclen bytes (may be left empty). Returns 0, -ENOENT when there is no such
     * export, or another negative errno. Runs on a reactor thread; may block briefly.
     */
    int (*open)(void *ctx, const char *name, struct vol **v, bool *readonly, char *desc,
                size_t desclen);
    /* Calls @fn for each export until it returns non-zero (returned). */
    int (*list)(void *ctx, int (*fn)(void *c, const char *name, const char *desc), void *c);
    /* Gives back a handle from open(). Runs on the server's closing thread, never on a
     * reactor: closing a volume waits for its requests and may commit. */
    void (*close)(void *ctx, struct vol *v);
};

struct nbd_config {
    const char *listen; /* "ADDR:PORT", "[ADDR6]:PORT", ":PORT", or "unix:PATH"; NULL: none
                           (connections come only from nbd_server_adopt) */
    const char *tls_cert, *tls_key; /* PEM files; both or neither */
    const char *tls_ca;             /* when set, clients must present a certificate it signed */
    bool tls_required;              /* refuse every option but STARTTLS and ABORT before TLS */
};

/*
 * Starts a server: binds and listens (before returning, so the caller may announce the
 * address), and starts accepting on a reactor. @exports and @ctx must outlive the server.
 * Errors: -EINVAL (a bad address, TLS files without a certificate or key), -EADDRINUSE,
 * other socket errors, -EPROTO (a certificate or key OpenSSL cannot load). Blocking.
 */
int nbd_server_start(const struct nbd_config *cfg, const struct nbd_exports *exports, void *ctx,
                     struct nbd_server **out);

/*
 * Serves one already connected stream socket (socket activation, tests, the fuzzer): the
 * server owns @fd from now on, even on failure. Thread-safe. Errors: -ESHUTDOWN when the
 * server is stopping, -ENOMEM.
 */
int nbd_server_adopt(struct nbd_server *srv, int fd);

/*
 * Asks every connection in transmission whose volume @match accepts to finish: its requests
 * in flight complete and are answered, then it is closed and its volume handed back through
 * close(), as nbd_server_stop does for all. Returns at once; the caller sees the handles come
 * back through close(). For pulling a volume from under its clients (delete, shrink,
 * rollback with --force). Thread-safe; @match runs under the server's lock.
 */
void nbd_server_evict(struct nbd_server *srv, bool (*match)(void *ctx, struct vol *v), void *ctx);

/* Connections not yet finished (closed and their volume handed back). Thread-safe. */
unsigned nbd_server_connections(struct nbd_server *srv);

/*
 * Stops accepting, lets every connection finish the requests it has in flight and send
 * their replies, closes the connections, hands every volume back through close(), and
 * frees the server. Returns when all of that is done. Must not be called on a reactor
 * thread. Accepts NULL.
 */
void nbd_server_stop(struct nbd_server *srv);

#endif
