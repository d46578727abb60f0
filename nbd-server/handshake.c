/*
 * handshake.c - the fixed newstyle handshake, as states of the connection:
 *
 *   START         the server's greeting is queued             -> CLIENT_FLAGS
 *   CLIENT_FLAGS  4 bytes of client flags; unknown bits: dead  -> OPT_HEADER
 *   OPT_HEADER    IHAVEOPT, option, length (16 bytes); bad magic or a length past
 *                 NBD_OPT_SKIP_MAX: dead; past NBD_OPT_MAX      -> OPT_SKIP, else OPT_DATA
 *   OPT_SKIP      the option's data, discarded; NBD_REP_ERR_TOO_BIG -> OPT_HEADER
 *   OPT_DATA      the option's data, then its answer:
 *                   GO, EXPORT_NAME (export opened)            -> TX_HEADER
 *                   STARTTLS (ACK sent)                        -> TLS_HANDSHAKE
 *                   ABORT (ACK queued)                         -> CLOSING
 *                   EXPORT_NAME of an unknown export           -> dead
 *                   anything else                              -> OPT_HEADER
 *   TLS_HANDSHAKE OpenSSL's handshake (conn.c drives it)        -> OPT_HEADER
 *
 * Every length inside an option's data is checked against the data actually received
 * before it is used; a malformed option is answered NBD_REP_ERR_INVALID and the handshake
 * goes on. With tls_required, every option but STARTTLS and ABORT is refused with
 * NBD_REP_ERR_TLS_REQD until TLS is up (and EXPORT_NAME, which cannot be refused, closes).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd-server/nbd-priv.h"

#define NBD_DESC_MAX 256

/* ------------------------------------------------------------------------------------------
 * Replies
 */

/* Option reply header: magic(8) option(4) type(4) length(4) */
static void opt_reply(struct nbd_conn *c, uint32_t type, const void *data, uint32_t len)
{
    uint8_t h[20], *p = h;
    p = nbd_put64(p, NBD_REP_MAGIC);
    p = nbd_put32(p, c->opt);
    p = nbd_put32(p, type);
    nbd_put32(p, len);
    stream_send_copy(&c->s, h, sizeof h);
    if (len)
        stream_send_copy(&c->s, data, len);
}

static void opt_error(struct nbd_conn *c, uint32_t type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void opt_error(struct nbd_conn *c, uint32_t type, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    log_debug("nbd: %s: option %u refused: %s", c->peer, c->opt, msg);
    opt_reply(c, type, msg, (uint32_t)MIN((size_t)n, sizeof msg - 1));
}

/* ------------------------------------------------------------------------------------------
 * Exports
 */

static uint16_t tx_flags_for(bool readonly)
{
    uint16_t f =
        NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;
    if (readonly)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
             NBD_FLAG_SEND_FAST_ZERO;
    return f;
}

struct opened {
    struct vol *v;
    bool readonly;
    char desc[NBD_DESC_MAX];
};

/* Opens @name through the daemon's callback; replies the error itself (unless EXPORT_NAME,
 * which has no error reply) and returns false on failure. */
static bool export_open(struct nbd_conn *c, const char *name, struct opened *o)
{
    struct nbd_server *srv = c->srv;
    memset(o, 0, sizeof(*o));
    if (c->stopping) {
        if (c->opt != NBD_OPT_EXPORT_NAME)
            opt_error(c, NBD_REP_ERR_SHUTDOWN, "server is shutting down");
        return false;
    }
    int r = srv->ex.open(srv->ctx, name, &o->v, &o->readonly, o->desc, sizeof o->desc);
    if (r == 0) {
        o->desc[sizeof o->desc - 1] = '\0';
        return true;
    }
    log_info("nbd: %s: export \"%s\": %s", c->peer, name,
             r == -ENOENT ? "no such export" : strerror(-r));
    if (c->opt == NBD_OPT_EXPORT_NAME)
        return false;
    if (r == -ENOENT || r == -EINVAL)
        opt_error(c, NBD_REP_ERR_UNKNOWN, "no export named \"%s\"", name);
    else
        opt_error(c, NBD_REP_ERR_PLATFORM, "cannot open export \"%s\": %s", name, strerror(-r));
    return false;
}

/* Enters transmission with @o's volume: the connection owns it from now on. */
static void export_attach(struct nbd_conn *c, const char *name, struct opened *o)
{
    c->vol = o->v;
    pthread_mutex_lock(&c->srv->lock);
    c->listed_vol = o->v;
    pthread_mutex_unlock(&c->srv->lock);
    c->readonly = o->readonly;
    c->size = vol_size(o->v);
    c->grain = vol_grain_size(o->v);
    c->tx_flags = tx_flags_for(o->readonly);
    c->export_name = strdup(name);
    if (c->meta_export && (!c->export_name || strcmp(c->meta_export, name) != 0))
    {
        c->meta_base = false; /* contexts were chosen for another export */
        free(c->meta_changed);
        c->meta_changed = NULL;
    }
    log_info("nbd: %s: serving \"%s\"%s%s%s", c->peer, name, o->readonly ? " read-only" : "",
             c->structured ? ", structured replies" : "", c->tls ? ", TLS" : "");
}

/* ------------------------------------------------------------------------------------------
 * Options
 */

static void opt_export_name(struct nbd_conn *c)
{
    struct opened o;
    if (c->opt_len > NBD_MAX_NAME || memchr(c->opt_data, 0, c->opt_len)) {
        stream_kill(&c->s, "EXPORT_NAME with an invalid name");
        return;
    }
    const char *name = (const char *)c->opt_data;
    if (!export_open(c, name, &o)) {
        stream_kill(&c->s, NULL); /* the only way to refuse EXPORT_NAME */
        return;
    }
    /* size(8) flags(2) [124 zeros] */
    uint8_t r[10 + 124] = {0};
    nbd_put16(nbd_put64(r, vol_size(o.v)), tx_flags_for(o.readonly));
    stream_send_copy(&c->s, r, (c->client_flags & NBD_FLAG_C_NO_ZEROES) ? 10 : sizeof r);
    export_attach(c, name, &o);
    nbd_tx_begin(c); /* -> TX_HEADER */
}

/* INFO and GO: namelen(4) name info_count(2) info_type(2)... */
static void opt_info_go(struct nbd_conn *c)
{
    const uint8_t *d = c->opt_data;
    uint32_t len = c->opt_len;
    if (len < 6) {
        opt_error(c, NBD_REP_ERR_INVALID, "option data too short");
        return;
    }
    uint32_t namelen = nbd_get32(d);
    if (namelen > len - 6 || namelen > NBD_MAX_NAME) {
        opt_error(c, NBD_REP_ERR_INVALID, "name length %u does not fit the option", namelen);
        return;
    }
    uint16_t nreq = nbd_get16(d + 4 + namelen);
    if ((uint64_t)len != 6 + (uint64_t)namelen + 2 * (uint64_t)nreq) {
        opt_error(c, NBD_REP_ERR_INVALID, "option length does not match its contents");
        return;
    }
    if (memchr(d + 4, 0, namelen)) {
        opt_error(c, NBD_REP_ERR_INVALID, "export name contains a NUL byte");
        return;
    }
    char *name = strndup((const char *)d + 4, namelen);
    if (!name) {
        opt_error(c, NBD_REP_ERR_PLATFORM, "out of memory");
        return;
    }
    bool want_name = false, want_desc = false;
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t t = nbd_get16(d + 6 + namelen + 2u * i);
        want_name |= t == NBD_INFO_NAME;
        want_desc |= t == NBD_INFO_DESCRIPTION;
    }

    struct opened o;
    if (!export_open(c, name, &o)) {
        free(name);
        return;
    }
    uint8_t b[14], *p;
    /* NBD_INFO_EXPORT: type(2) size(8) flags(2) */
    p = nbd_put16(b, NBD_INFO_EXPORT);
    p = nbd_put64(p, vol_size(o.v));
    nbd_put16(p, tx_flags_for(o.readonly));
    opt_reply(c, NBD_REP_INFO, b, 12);
    if (want_name) {
        uint8_t *nb = malloc(2 + namelen);
        if (nb) {
            nbd_put16(nb, NBD_INFO_NAME);
            memcpy(nb + 2, name, namelen);
            opt_reply(c, NBD_REP_INFO, nb, 2 + namelen);
            free(nb);
        }
    }
    size_t dl = strlen(o.desc);
    if (want_desc && dl) {
        uint8_t db[2 + NBD_DESC_MAX];
        nbd_put16(db, NBD_INFO_DESCRIPTION);
        memcpy(db + 2, o.desc, dl);
        opt_reply(c, NBD_REP_INFO, db, (uint32_t)(2 + dl));
    }
    /* NBD_INFO_BLOCK_SIZE: type(2) minimum(4) preferred(4) maximum(4). Always sent: 512 is
     * the volume layer's unit, whether the client asked or not. */
    uint32_t pref = MAX(4096u, vol_grain_size(o.v));
    p = nbd_put16(b, NBD_INFO_BLOCK_SIZE);
    p = nbd_put32(p, 512);
    p = nbd_put32(p, pref);
    nbd_put32(p, NBD_MAX_PAYLOAD);
    opt_reply(c, NBD_REP_INFO, b, 14);
    opt_reply(c, NBD_REP_ACK, NULL, 0);

    if (c->opt == NBD_OPT_INFO) {
        nbd_close_vol_later(c->srv, o.v);
    } else {
        export_attach(c, name, &o);
        nbd_tx_begin(c); /* -> TX_HEADER */
    }
    free(name);
}

struct list_ctx {
    struct nbd_conn *c;
};

static int list_one(void *ctx, const char *name, const char *desc)
{
    struct list_ctx *l = ctx;
    size_t nl = strlen(name), dl = desc ? strlen(desc) : 0;
    if (nl > NBD_MAX_NAME)
        return 0;
    dl = MIN(dl, (size_t)NBD_MAX_NAME);
    /* NBD_REP_SERVER: namelen(4) name, then the description */
    uint8_t *b = malloc(4 + nl + dl);
    if (!b)
        return -ENOMEM;
    nbd_put32(b, (uint32_t)nl);
    memcpy(b + 4, name, nl);
    if (dl)
        memcpy(b + 4 + nl, desc, dl);
    opt_reply(l->c, NBD_REP_SERVER, b, (uint32_t)(4 + nl + dl));
    free(b);
    return 0;
}

static void opt_list(struct nbd_conn *c)
{
    if (c->opt_len != 0) {
        opt_error(c, NBD_REP_ERR_INVALID, "LIST takes no data");
        return;
    }
    struct list_ctx l = {c};
    int r = c->srv->ex.list(c->srv->ctx, list_one, &l);
    if (r < 0) {
        opt_error(c, NBD_REP_ERR_PLATFORM, "cannot list exports: %s", strerror(-r));
        return;
    }
    opt_reply(c, NBD_REP_ACK, NULL, 0);
}

/* LIST_META_CONTEXT, SET_META_CONTEXT: namelen(4) name count(4) {len(4) query}... */
static void opt_meta(struct nbd_conn *c)
{
    const uint8_t *d = c->opt_data;
    uint32_t len = c->opt_len;
    bool set = c->opt == NBD_OPT_SET_META_CONTEXT;

    if (set && !c->structured) {
        opt_error(c, NBD_REP_ERR_INVALID, "SET_META_CONTEXT needs structured replies first");
        return;
    }
    if (len < 8) {
        opt_error(c, NBD_REP_ERR_INVALID, "option data too short");
        return;
    }
    uint32_t namelen = nbd_get32(d);
    if (namelen > len - 8 || namelen > NBD_MAX_NAME || memchr(d + 4, 0, namelen)) {
        opt_error(c, NBD_REP_ERR_INVALID, "bad export name length %u", namelen);
        return;
    }
    uint32_t nq = nbd_get32(d + 4 + namelen);
    /* Check every query's framing before answering any. */
    uint64_t pos = 8 + (uint64_t)namelen;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < 4) {
            opt_error(c, NBD_REP_ERR_INVALID, "query %u runs past the option", i);
            return;
        }
        uint32_t ql = nbd_get32(d + pos);
        if (ql > len - pos - 4) {
            opt_error(c, NBD_REP_ERR_INVALID, "query %u runs past the option", i);
            return;
        }
        pos += 4 + (uint64_t)ql;
    }
    if (pos != len) {
        opt_error(c, NBD_REP_ERR_INVALID, "option length does not match its contents");
        return;
    }
    char *name = strndup((const char *)d + 4, namelen);
    if (!name) {
        opt_error(c, NBD_REP_ERR_PLATFORM, "out of memory");
        return;
    }
    struct opened o;
    if (!export_open(c, name, &o)) {
        free(name);
        return;
    }

    static const char base[] = NBD_BASE_ALLOCATION, chg[] = NBD_META_CHANGED;
    const uint32_t bl = sizeof base - 1, cl = sizeof chg - 1;
    bool match = !set && nq == 0; /* LIST with no query lists everything */
    char *changed = NULL;         /* cistern:changed:SNAP asked for, SNAP a snapshot */
    pos = 8 + (uint64_t)namelen;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t ql = nbd_get32(d + pos);
        const char *q = (const char *)d + pos + 4;
        pos += 4 + (uint64_t)ql;
        if (ql == bl && memcmp(q, base, bl) == 0)
            match = true;
        else if (!set && ql == 5 && memcmp(q, "base:", 5) == 0)
            match = true;
        else if (ql > cl && ql - cl <= NAME_MAX_LEN && memcmp(q, chg, cl) == 0 && !changed) {
            /* Only a snapshot of this export's volume names a context. */
            char *snap = strndup(q + cl, ql - cl);
            if (snap && vol_changed_since(o.v, snap, 0, 0, NULL, NULL) == 0)
                changed = snap;
            else
                free(snap);
        }
    }
    /* The handle served only to check the queries against the export. */
    nbd_close_vol_later(c->srv, o.v);
    if (match) {
        /* NBD_REP_META_CONTEXT: id(4) name */
        uint8_t b[4 + sizeof base];
        nbd_put32(b, set ? NBD_META_ID_BASE : 0);
        memcpy(b + 4, base, bl);
        opt_reply(c, NBD_REP_META_CONTEXT, b, 4 + bl);
    }
    if (changed) {
        uint8_t b[4 + sizeof chg + NAME_MAX_LEN];
        size_t sl = strlen(changed);
        nbd_put32(b, set ? NBD_META_ID_CHANGED : 0);
        memcpy(b + 4, chg, cl);
        memcpy(b + 4 + cl, changed, sl);
        opt_reply(c, NBD_REP_META_CONTEXT, b, (uint32_t)(4 + cl + sl));
    }
    if (set) {
        c->meta_base = match;
        free(c->meta_changed);
        c->meta_changed = changed;
        changed = NULL;
        free(c->meta_export);
        c->meta_export = name;
        name = NULL;
    }
    free(changed);
    free(name);
    opt_reply(c, NBD_REP_ACK, NULL, 0);
}

static void opt_starttls(struct nbd_conn *c)
{
    if (c->opt_len != 0) {
        opt_error(c, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
        return;
    }
    if (c->tls) {
        opt_error(c, NBD_REP_ERR_INVALID, "TLS is already on");
        return;
    }
    if (!c->srv->tls_ctx) {
        opt_error(c, NBD_REP_ERR_POLICY, "this server has no TLS certificate");
        return;
    }
    opt_reply(c, NBD_REP_ACK, NULL, 0); /* in clear: TLS starts after it */
    if (nbd_tls_start(c) < 0) {
        stream_kill(&c->s, "cannot start TLS");
        return;
    }
    c->state = CS_TLS_HANDSHAKE; /* conn.c runs the handshake -> OPT_HEADER */
}

static void opt_dispatch(struct nbd_conn *c)
{
    uint32_t opt = c->opt;
    if (c->srv->tls_required && !c->tls && opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
        if (opt == NBD_OPT_EXPORT_NAME) {
            stream_kill(&c->s, "EXPORT_NAME without TLS, which this server requires");
            return;
        }
        opt_error(c, NBD_REP_ERR_TLS_REQD, "this server requires TLS: use STARTTLS");
        return;
    }
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        opt_export_name(c);
        return;
    case NBD_OPT_ABORT:
        opt_reply(c, NBD_REP_ACK, NULL, 0);
        stream_finish(&c->s); /* -> CLOSING */
        return;
    case NBD_OPT_LIST:
        opt_list(c);
        return;
    case NBD_OPT_STARTTLS:
        opt_starttls(c);
        return;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        opt_info_go(c);
        return;
    case NBD_OPT_STRUCTURED_REPLY:
        if (c->opt_len != 0) {
            opt_error(c, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
            return;
        }
        c->structured = true;
        opt_reply(c, NBD_REP_ACK, NULL, 0);
        return;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta(c);
        return;
    default:
        opt_error(c, NBD_REP_ERR_UNSUP, "option %u is not supported", opt);
        return;
    }
}

/* ------------------------------------------------------------------------------------------
 * States
 */

static void want_opt_header(struct nbd_conn *c)
{
    c->state = CS_OPT_HEADER;
    stream_want(&c->s, c->hdr, 16);
}

void nbd_hs_begin(struct nbd_conn *c)
{
    /* NBDMAGIC IHAVEOPT handshake-flags(2) */
    uint8_t g[18], *p = g;
    p = nbd_put64(p, NBD_MAGIC);
    p = nbd_put64(p, NBD_IHAVEOPT);
    nbd_put16(p, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    stream_send_copy(&c->s, g, sizeof g);
    c->state = CS_CLIENT_FLAGS;
    stream_want(&c->s, c->hdr, 4);
}

void nbd_hs_tls_done(struct nbd_conn *c)
{
    log_debug("nbd: %s: TLS is on (%s)", c->peer, SSL_get_version(c->ssl));
    want_opt_header(c);
}

void nbd_hs_input(struct nbd_conn *c)
{
    switch (c->state) {
    case CS_CLIENT_FLAGS:
        c->client_flags = nbd_get32(c->hdr);
        if (c->client_flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
            stream_kill(&c->s, "unknown client flags");
            return;
        }
        want_opt_header(c);
        return;

    case CS_OPT_HEADER: {
        if (nbd_get64(c->hdr) != NBD_IHAVEOPT) {
            stream_kill(&c->s, "bad option magic");
            return;
        }
        c->opt = nbd_get32(c->hdr + 8);
        c->opt_len = nbd_get32(c->hdr + 12);
        free(c->opt_data);
        c->opt_data = NULL;
        if (c->opt_len > NBD_OPT_SKIP_MAX) {
            stream_kill(&c->s, "option length too large to be true");
            return;
        }
        if (c->opt_len > NBD_OPT_MAX) {
            if (c->opt == NBD_OPT_EXPORT_NAME) {
                stream_kill(&c->s, "EXPORT_NAME too long");
                return;
            }
            c->state = CS_OPT_SKIP;
            stream_want(&c->s, NULL, c->opt_len);
            return;
        }
        c->opt_data = malloc(c->opt_len + 1);
        if (!c->opt_data) {
            stream_kill(&c->s, "out of memory for an option");
            return;
        }
        c->opt_data[c->opt_len] = '\0';
        c->state = CS_OPT_DATA;
        stream_want(&c->s, c->opt_data, c->opt_len);
        return;
    }

    case CS_OPT_SKIP:
        opt_error(c, NBD_REP_ERR_TOO_BIG, "option data of %u bytes is too large", c->opt_len);
        want_opt_header(c);
        return;

    case CS_OPT_DATA:
        /* Most options come back to OPT_HEADER; GO, EXPORT_NAME, STARTTLS and ABORT move
         * elsewhere, and a broken option kills. */
        want_opt_header(c);
        opt_dispatch(c);
        free(c->opt_data);
        c->opt_data = NULL;
        return;

    default:
        stream_kill(&c->s, "handshake input in a transmission state");
        return;
    }
}
