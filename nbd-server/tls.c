/*
 * tls.c - STARTTLS with OpenSSL, over memory BIOs so that every byte still travels through
 * the reactor's ring.
 *
 * OpenSSL never touches the socket: TLS is the connection stream's filter (pool/stream.h).
 * Ciphertext received by recv is written into the read BIO (tls_feed); OpenSSL's output
 * lands in the write BIO, which tls_drain moves to the stream's send queue as raw chunks.
 * Plaintext replies are encrypted as they are queued (tls_write), so the send queue holds
 * only ciphertext and a reply's bytes stay in order. One SSL object per connection, used
 * only on the connection's reactor.
 *
 * Client certificates: with tls_ca, a client must present a certificate that CA signed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/err.h>
#include <string.h>

#include "nbd-server/nbd-priv.h"

static void log_ssl_errors(const char *what)
{
    unsigned long e;
    char buf[256];
    bool any = false;
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        log_err("nbd: TLS: %s: %s", what, buf);
        any = true;
    }
    if (!any)
        log_err("nbd: TLS: %s failed", what);
}

int nbd_tls_ctx_new(const struct nbd_config *cfg, SSL_CTX **out)
{
    *out = NULL;
    if (!cfg->tls_cert && !cfg->tls_key) {
        if (cfg->tls_required || cfg->tls_ca) {
            log_err("nbd: TLS required or a CA given, but no certificate and key");
            return -EINVAL;
        }
        return 0;
    }
    if (!cfg->tls_cert || !cfg->tls_key) {
        log_err("nbd: TLS needs both a certificate and a key");
        return -EINVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_errors("creating a context");
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Sessions are not resumed across connections: no session cache to bound or share. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        log_ssl_errors(cfg->tls_cert);
        SSL_CTX_free(ctx);
        return -EPROTO;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_errors(cfg->tls_key);
        SSL_CTX_free(ctx);
        return -EPROTO;
    }
    if (cfg->tls_ca) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
            log_ssl_errors(cfg->tls_ca);
            SSL_CTX_free(ctx);
            return -EPROTO;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    *out = ctx;
    return 0;
}

void nbd_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

/* Moves pending ciphertext from the write BIO to the send queue. */
static void tls_drain(struct nbd_conn *c)
{
    if (!c->wbio)
        return;
    uint8_t buf[16384];
    int n;
    while ((n = BIO_read(c->wbio, buf, sizeof buf)) > 0)
        stream_send_raw(&c->s, buf, (size_t)n);
}

static int tls_handshake(struct stream *s)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    tls_drain(c);
    if (r == 1) {
        c->tls = true;
        nbd_hs_tls_done(c);
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    char what[128];
    snprintf(what, sizeof what, "handshake with %s", c->peer);
    log_ssl_errors(what);
    return -EPROTO;
}

static int tls_feed(struct stream *s, const void *raw, size_t n)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    return BIO_write(c->rbio, raw, (int)n) == (int)n ? 0 : -ENOMEM;
}

static long tls_read(struct stream *s, void *dst, size_t len)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    ERR_clear_error();
    int r = SSL_read(c->ssl, dst, (int)MIN(len, (size_t)INT32_MAX));
    tls_drain(c); /* post-handshake messages, alerts */
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return -ECONNRESET;
    char what[128];
    snprintf(what, sizeof what, "reading from %s", c->peer);
    log_ssl_errors(what);
    return -EPROTO;
}

static int tls_write(struct stream *s, const void *p, size_t len)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    const uint8_t *b = p;
    while (len) {
        int n = (int)MIN(len, (size_t)1 << 30);
        ERR_clear_error();
        int r = SSL_write(c->ssl, b, n);
        if (r <= 0) {
            log_ssl_errors("encrypting a reply");
            return -EPROTO;
        }
        b += r;
        len -= (size_t)r;
        tls_drain(c);
    }
    return 0;
}

static void tls_shutdown(struct stream *s)
{
    struct nbd_conn *c = container_of(s, struct nbd_conn, s);
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    tls_drain(c);
}

static const struct stream_filter tls_filter = {
    .name = "TLS",
    .handshake = tls_handshake,
    .feed = tls_feed,
    .read = tls_read,
    .write = tls_write,
    .shutdown = tls_shutdown,
};

int nbd_tls_start(struct nbd_conn *c)
{
    c->ssl = SSL_new(c->srv->tls_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = c->wbio = NULL;
        return -ENOMEM;
    }
    /* An empty memory BIO reads as "retry", not as end of file. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns them now */
    SSL_set_accept_state(c->ssl);
    /* Bytes the client sent right after STARTTLS, already read, begin the TLS stream. */
    return stream_filter_start(&c->s, &tls_filter);
}

void nbd_tls_conn_free(struct nbd_conn *c)
{
    SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
}
