/*
 * login.c - the login phase (RFC 7143 6.3, 11.12-11.13) as a small state machine over
 * Login Request PDUs:
 *
 *   (first request)  version, ISID, TSIH, CID, CmdSN taken; the declarations InitiatorName,
 *                    SessionType and TargetName checked, and the daemon asked whether the
 *                    target exists and this initiator may reach it and how it must
 *                    authenticate (iscsi_targets.login)
 *   SECURITY (CSG 0) AuthMethod: CHAP when the target has a CHAP secret, None only when it
 *                    allows it;
 *                      AUTH_CHAP_A  CHAP_A must offer 5 (MD5): CHAP_A, CHAP_I, CHAP_C sent
 *                      AUTH_CHAP_R  CHAP_N and CHAP_R checked; with CHAP_I and CHAP_C the
 *                                   initiator asks for mutual CHAP: CHAP_N and CHAP_R sent
 *                      AUTH_DONE    the stage may end (T bit)   -> OPERATIONAL or FULL
 *   OPERATIONAL (1)  the operational keys (text.c); our MaxRecvDataSegmentLength declared
 *                                                                 -> FULL
 *   FULL (3)         the final response carries the TSIH; the session is registered (and a
 *                    session with the same ISID reinstated); digests start with the next PDU
 *
 * A request with the C bit continues in the next one: its text is gathered (up to
 * ISCSI_LOGIN_DATA_MAX) and each part answered with an empty response. Any failure sends a
 * Login Response with the status class and detail of the RFC and ends the connection once
 * it is sent. CHAP uses MD5 through OpenSSL's EVP interface; responses are compared in
 * constant time, and an initiator's challenge equal to ours (a reflection) is refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/iscsi-priv.h"

#define LOGIN_MAX_KEYS 256
#define CHAP_CHALLENGE_LEN 16
#define CHAP_MAX_BIN 1024 /* longest challenge or response we decode */

enum auth_state { AUTH_START, AUTH_CHAP_A, AUTH_CHAP_R, AUTH_DONE };

struct login_state {
    bool started;      /* the first request's fields are taken */
    bool checked;      /* the target and initiator were checked */
    uint8_t csg;       /* the stage the next request must be in */
    uint16_t tsih_in;  /* the TSIH the initiator asked for */
    enum auth_state auth;
    bool auth_offered; /* AuthMethod was negotiated */
    struct iscsi_auth cfg;
    uint8_t chap_id;
    uint8_t challenge[CHAP_CHALLENGE_LEN];
    uint32_t seen;      /* operational keys negotiated */
    bool mrdsl_declared, tpgt_sent;
    char *acc;          /* text of a continued request */
    size_t acc_len;
};

void iscsi_login_free(struct iscsi_conn *c)
{
    if (!c->login)
        return;
    free(c->login->acc);
    OPENSSL_cleanse(&c->login->cfg, sizeof c->login->cfg);
    free(c->login);
    c->login = NULL;
}

/* ------------------------------------------------------------------------------------------
 * Responses
 */

static void login_respond(struct iscsi_conn *c, uint8_t flags, uint16_t status, const char *text,
                          size_t len)
{
    const uint8_t *rq = c->bhs;
    uint8_t h[ISCSI_BHS_SIZE];
    memset(h, 0, sizeof h);
    h[0] = ISCSI_OP_LOGIN_RSP;
    h[1] = flags;
    h[LOGIN_VMAX] = 0;
    h[LOGIN_VMIN] = 0; /* VersionActive */
    memcpy(h + LOGIN_ISID, rq + LOGIN_ISID, 6);
    iscsi_put16(h + LOGIN_TSIH, status == LOGIN_OK && (flags & LOGIN_FLAG_TRANSIT) &&
                                        LOGIN_NSG(flags) == STAGE_FULL_FEATURE
                                    ? c->tsih
                                    : 0);
    memcpy(h + BHS_ITT, rq + BHS_ITT, 4);
    iscsi_put32(h + LOGIN_STATSN, c->statsn++);
    iscsi_put32(h + LOGIN_EXPCMDSN, c->exp_cmdsn);
    iscsi_put32(h + LOGIN_MAXCMDSN, c->max_cmdsn);
    h[LOGIN_STATUS_CLASS] = (uint8_t)(status >> 8);
    h[LOGIN_STATUS_DETAIL] = (uint8_t)status;
    iscsi_send_pdu(c, h, text, (uint32_t)len, true, NULL);
}

static void login_fail(struct iscsi_conn *c, uint16_t status, const char *why)
{
    log_warn("iscsi: %s: login of %s to %s refused (status 0x%04x): %s", c->peer,
             c->initiator[0] ? c->initiator : "(unnamed initiator)",
             c->discovery ? "discovery" : (c->target[0] ? c->target : "(no target)"), status,
             why);
    uint8_t flags = c->bhs[1] & 0x0c; /* CSG as the request had it */
    login_respond(c, flags, status, NULL, 0);
    iscsi_login_free(c);
    stream_finish(&c->s); /* the response goes out, then the connection closes */
}

/* ------------------------------------------------------------------------------------------
 * CHAP
 */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes a CHAP binary value ("0x" hex or "0b" base64). Returns its length or -EINVAL. */
static int chap_decode(const char *v, uint8_t *out, size_t max)
{
    size_t n = 0;
    if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        const char *p = v + 2;
        size_t l = strlen(p);
        if (l == 0 || l > 2 * max)
            return -EINVAL;
        if (l & 1) { /* an odd count: a leading zero nibble */
            int d = hexval(*p++);
            if (d < 0)
                return -EINVAL;
            out[n++] = (uint8_t)d;
        }
        for (; *p; p += 2) {
            int hi = hexval(p[0]), lo = hexval(p[1]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            out[n++] = (uint8_t)(hi << 4 | lo);
        }
        return (int)n;
    }
    if (v[0] == '0' && (v[1] == 'b' || v[1] == 'B')) {
        const char *p = v + 2;
        size_t l = strlen(p);
        if (l == 0 || l % 4 != 0 || l / 4 * 3 > max + 2)
            return -EINVAL;
        uint8_t tmp[CHAP_MAX_BIN + 3];
        int r = EVP_DecodeBlock(tmp, (const unsigned char *)p, (int)l);
        if (r < 0)
            return -EINVAL;
        size_t len = (size_t)r;
        if (l >= 1 && p[l - 1] == '=')
            len--;
        if (l >= 2 && p[l - 2] == '=')
            len--;
        if (len == 0 || len > max)
            return -EINVAL;
        memcpy(out, tmp, len);
        return (int)len;
    }
    return -EINVAL;
}

static void chap_encode(const uint8_t *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    *out++ = '0';
    *out++ = 'x';
    for (size_t i = 0; i < n; i++) {
        *out++ = hex[b[i] >> 4];
        *out++ = hex[b[i] & 15];
    }
    *out = '\0';
}

/* MD5(id || secret || challenge) */
static int chap_md5(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
                    uint8_t out[16])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) && EVP_DigestUpdate(ctx, &id, 1) &&
             EVP_DigestUpdate(ctx, secret, strlen(secret)) &&
             EVP_DigestUpdate(ctx, chal, chal_len) && EVP_DigestFinal_ex(ctx, out, &len) &&
             len == 16;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -EIO;
}

static bool list_has(const char *list, const char *item)
{
    size_t il = strlen(item);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == il && strncmp(p, item, l) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static const char *kv_get(const struct kv *kv, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            return kv[i].value;
    return NULL;
}

/* The security keys of one request. Returns a login status; *done when auth is complete. */
static uint16_t security(struct iscsi_conn *c, const struct kv *kv, int n, struct kvbuf *rsp,
                         const char **why)
{
    struct login_state *ls = c->login;
    const char *am = kv_get(kv, n, "AuthMethod");
    bool has_chap = ls->cfg.secret[0] != '\0';

    if (am) {
        if (ls->auth_offered) {
            *why = "AuthMethod offered twice";
            return LOGIN_INITIATOR_ERROR;
        }
        ls->auth_offered = true;
        if (has_chap && list_has(am, "CHAP")) {
            kvbuf_add(rsp, "AuthMethod", "CHAP");
            ls->auth = AUTH_CHAP_A;
        } else if (ls->cfg.allow_none && list_has(am, "None")) {
            kvbuf_add(rsp, "AuthMethod", "None");
            ls->auth = AUTH_DONE;
        } else {
            kvbuf_add(rsp, "AuthMethod", "Reject");
            *why = has_chap ? "the initiator does not offer CHAP" :
                              "the target has no CHAP secret and does not allow logins without";
            return LOGIN_AUTH_FAILED;
        }
    }
    const char *a = kv_get(kv, n, "CHAP_A");
    const char *cn = kv_get(kv, n, "CHAP_N"), *cr = kv_get(kv, n, "CHAP_R");
    const char *ci = kv_get(kv, n, "CHAP_I"), *cc = kv_get(kv, n, "CHAP_C");
    if (a) {
        if (ls->auth != AUTH_CHAP_A) {
            *why = "CHAP_A out of turn";
            return LOGIN_INITIATOR_ERROR;
        }
        if (!list_has(a, "5")) {
            kvbuf_add(rsp, "CHAP_A", "Reject");
            *why = "the initiator does not offer CHAP with MD5 (CHAP_A=5)";
            return LOGIN_AUTH_FAILED;
        }
        char hex[2 * CHAP_CHALLENGE_LEN + 3];
        if (RAND_bytes(&ls->chap_id, 1) != 1 ||
            RAND_bytes(ls->challenge, CHAP_CHALLENGE_LEN) != 1) {
            *why = "no random numbers for the challenge";
            return LOGIN_TARGET_ERROR;
        }
        chap_encode(ls->challenge, CHAP_CHALLENGE_LEN, hex);
        kvbuf_add(rsp, "CHAP_A", "5");
        kvbuf_add(rsp, "CHAP_I", "%u", ls->chap_id);
        kvbuf_add(rsp, "CHAP_C", "%s", hex);
        ls->auth = AUTH_CHAP_R;
        return LOGIN_OK;
    }
    if (cn || cr) {
        if (ls->auth != AUTH_CHAP_R || !cn || !cr) {
            *why = "CHAP_N and CHAP_R out of turn";
            return LOGIN_INITIATOR_ERROR;
        }
        uint8_t got[CHAP_MAX_BIN], want[16];
        int gl = chap_decode(cr, got, sizeof got);
        if (gl < 0) {
            *why = "CHAP_R is not a hex or base64 value";
            return LOGIN_AUTH_FAILED;
        }
        if (chap_md5(ls->chap_id, ls->cfg.secret, ls->challenge, CHAP_CHALLENGE_LEN, want) < 0) {
            *why = "MD5 is not available";
            return LOGIN_TARGET_ERROR;
        }
        bool name_ok = strcmp(cn, ls->cfg.user) == 0;
        bool resp_ok = gl == 16 && CRYPTO_memcmp(got, want, 16) == 0;
        if (!name_ok || !resp_ok) {
            *why = !name_ok ? "unknown CHAP user name" : "wrong CHAP response (bad secret)";
            return LOGIN_AUTH_FAILED;
        }
        if (ci || cc) {
            /* Mutual CHAP: the initiator authenticates us. */
            uint64_t id;
            uint8_t chal[CHAP_MAX_BIN], resp[16];
            char *end;
            errno = 0;
            id = ci ? strtoull(ci, &end, 0) : 256;
            if (!ci || !cc || errno || *end || id > 255) {
                *why = "mutual CHAP without a valid CHAP_I and CHAP_C";
                return LOGIN_AUTH_FAILED;
            }
            int cl = chap_decode(cc, chal, sizeof chal);
            if (cl <= 0) {
                *why = "CHAP_C is not a hex or base64 value";
                return LOGIN_AUTH_FAILED;
            }
            if (cl == CHAP_CHALLENGE_LEN && memcmp(chal, ls->challenge, CHAP_CHALLENGE_LEN) == 0) {
                *why = "the initiator's challenge reflects ours";
                return LOGIN_AUTH_FAILED;
            }
            if (ls->cfg.mutual_secret[0] == '\0') {
                *why = "the initiator asks for mutual CHAP, but the target has no secret";
                return LOGIN_AUTH_FAILED;
            }
            if (chap_md5((uint8_t)id, ls->cfg.mutual_secret, chal, (size_t)cl, resp) < 0) {
                *why = "MD5 is not available";
                return LOGIN_TARGET_ERROR;
            }
            char hex[2 * 16 + 3];
            chap_encode(resp, 16, hex);
            kvbuf_add(rsp, "CHAP_N", "%s", ls->cfg.mutual_user);
            kvbuf_add(rsp, "CHAP_R", "%s", hex);
        }
        ls->auth = AUTH_DONE;
        log_debug("iscsi: %s: CHAP authenticated %s%s", c->peer, cn, ci ? " (mutual)" : "");
        return LOGIN_OK;
    }
    if (ci || cc) {
        *why = "CHAP_I or CHAP_C out of turn";
        return LOGIN_INITIATOR_ERROR;
    }
    return LOGIN_OK;
}

/* ------------------------------------------------------------------------------------------
 * Requests
 */

static bool is_security_key(const char *k)
{
    return strcmp(k, "AuthMethod") == 0 || strncmp(k, "CHAP_", 5) == 0;
}

static bool is_declaration(const char *k)
{
    return strcmp(k, "InitiatorName") == 0 || strcmp(k, "SessionType") == 0 ||
           strcmp(k, "TargetName") == 0;
}

/* The first complete request: the declarations, and the daemon's word on the target. */
static uint16_t first_request(struct iscsi_conn *c, const struct kv *kv, int n, const char **why)
{
    struct login_state *ls = c->login;
    const char *in = kv_get(kv, n, "InitiatorName");
    const char *st = kv_get(kv, n, "SessionType");
    const char *tn = kv_get(kv, n, "TargetName");
    if (!in) {
        *why = "no InitiatorName";
        return LOGIN_MISSING_PARAMETER;
    }
    if (!iscsi_name_valid(in)) {
        *why = "InitiatorName is not a valid iSCSI name";
        return LOGIN_INITIATOR_ERROR;
    }
    snprintf(c->initiator, sizeof c->initiator, "%s", in);
    if (st && strcmp(st, "Discovery") == 0) {
        c->discovery = true;
    } else if (st && strcmp(st, "Normal") != 0) {
        *why = "SessionType is neither Normal nor Discovery";
        return LOGIN_SESSION_TYPE;
    }
    if (!c->discovery) {
        if (!tn) {
            *why = "no TargetName in a normal session";
            return LOGIN_MISSING_PARAMETER;
        }
        if (strlen(tn) > ISCSI_NAME_MAX) {
            *why = "TargetName too long";
            return LOGIN_NOT_FOUND;
        }
        snprintf(c->target, sizeof c->target, "%s", tn);
    }
    int r = c->srv->t.login(c->srv->ctx, c->discovery ? NULL : c->target, c->initiator, &ls->cfg);
    if (r == -ENOENT) {
        *why = "no such target";
        return LOGIN_NOT_FOUND;
    }
    if (r == -EACCES) {
        *why = "the initiator is not allowed to reach this target";
        return LOGIN_FORBIDDEN;
    }
    if (r < 0) {
        *why = "the target cannot take logins now";
        return LOGIN_SERVICE_UNAVAILABLE;
    }
    ls->cfg.user[sizeof ls->cfg.user - 1] = '\0';
    ls->cfg.secret[sizeof ls->cfg.secret - 1] = '\0';
    ls->cfg.mutual_user[sizeof ls->cfg.mutual_user - 1] = '\0';
    ls->cfg.mutual_secret[sizeof ls->cfg.mutual_secret - 1] = '\0';
    ls->checked = true;
    return LOGIN_OK;
}

static void login_complete(struct iscsi_conn *c)
{
    c->phase = PH_FULL;
    c->seen_gen = iscsi_lun_gen(c->srv);
    c->hdigest = c->p.header_digest;
    c->ddigest = c->p.data_digest;
    if (c->p.first_burst > c->p.max_burst)
        c->p.first_burst = c->p.max_burst;
    iscsi_login_free(c);
    log_info("iscsi: %s: %s logged in to %s (TSIH %u)%s%s", c->peer, c->initiator,
             c->discovery ? "discovery" : c->target, c->tsih, c->hdigest ? ", header digest" : "",
             c->ddigest ? ", data digest" : "");
}

/* A whole request (continuations gathered) in @text. */
static void login_request(struct iscsi_conn *c, char *text, size_t len)
{
    struct login_state *ls = c->login;
    const uint8_t *h = c->bhs;
    uint8_t f = h[1];
    bool transit = f & LOGIN_FLAG_TRANSIT;
    uint8_t csg = LOGIN_CSG(f), nsg = LOGIN_NSG(f);
    const char *why = NULL;
    uint16_t st;
    struct kv kv[LOGIN_MAX_KEYS];
    struct kvbuf rsp = {0};

    int n = iscsi_kv_parse(text, len, kv, LOGIN_MAX_KEYS);
    if (n < 0) {
        login_fail(c, LOGIN_INITIATOR_ERROR, "malformed key=value text");
        return;
    }
    if (!ls->checked) {
        st = first_request(c, kv, n, &why);
        if (st != LOGIN_OK) {
            login_fail(c, st, why);
            return;
        }
        if (csg == STAGE_OPERATIONAL && !ls->cfg.allow_none) {
            login_fail(c, LOGIN_AUTH_FAILED, "the initiator skips authentication");
            return;
        }
        if (csg == STAGE_OPERATIONAL)
            ls->auth = AUTH_DONE;
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(kv[i].key, kv[j].key) == 0) {
                login_fail(c, LOGIN_INITIATOR_ERROR, "a key twice in one request");
                return;
            }
    }
    if (csg == STAGE_SECURITY) {
        st = security(c, kv, n, &rsp, &why);
        if (st != LOGIN_OK) {
            kvbuf_free(&rsp);
            login_fail(c, st, why);
            return;
        }
    }
    for (int i = 0; i < n; i++) {
        const char *k = kv[i].key;
        if (is_declaration(k)) {
            /* Only the first request declares; a later different value is an error. */
            if (strcmp(k, "InitiatorName") == 0 && strcmp(kv[i].value, c->initiator) != 0) {
                kvbuf_free(&rsp);
                login_fail(c, LOGIN_INITIATOR_ERROR, "InitiatorName changed during login");
                return;
            }
            continue;
        }
        if (is_security_key(k)) {
            if (csg != STAGE_SECURITY) {
                kvbuf_free(&rsp);
                login_fail(c, LOGIN_INITIATOR_ERROR, "security keys in the operational stage");
                return;
            }
            continue;
        }
        st = iscsi_negotiate_key(c, &kv[i], &rsp, &ls->seen);
        if (st != LOGIN_OK) {
            kvbuf_free(&rsp);
            login_fail(c, st, "a key negotiated twice");
            return;
        }
    }
    if (!ls->tpgt_sent && !c->discovery) {
        kvbuf_add(&rsp, "TargetPortalGroupTag", "%u", ISCSI_TPGT);
        ls->tpgt_sent = true;
    }

    /* The stage transition. */
    bool go = false;
    if (transit) {
        if (nsg <= csg || nsg == 2) {
            kvbuf_free(&rsp);
            login_fail(c, LOGIN_INITIATOR_ERROR, "an invalid next stage");
            return;
        }
        go = csg != STAGE_SECURITY || ls->auth == AUTH_DONE;
        if (csg == STAGE_SECURITY && ls->auth == AUTH_START) {
            /* Leaving security without AuthMethod: no authentication at all. */
            if (!ls->cfg.allow_none) {
                kvbuf_free(&rsp);
                login_fail(c, LOGIN_AUTH_FAILED, "the initiator skips authentication");
                return;
            }
            ls->auth = AUTH_DONE;
            go = true;
        }
    }
    if (go && nsg == STAGE_FULL_FEATURE) {
        if (!ls->mrdsl_declared)
            kvbuf_add(&rsp, "MaxRecvDataSegmentLength", "%u", ISCSI_MAX_RECV_SEGMENT);
        ls->mrdsl_declared = true;
        if (!c->discovery && c->p.max_conn > 1)
            c->p.max_conn = 1;
        st = iscsi_session_register(c, ls->tsih_in);
        if (st != LOGIN_OK) {
            kvbuf_free(&rsp);
            login_fail(c, st,
                       st == LOGIN_NO_SESSION ? "the session to join does not exist"
                                              : "the session has its connection already");
            return;
        }
    } else if (go || csg == STAGE_OPERATIONAL) {
        if (!ls->mrdsl_declared && (csg == STAGE_OPERATIONAL || nsg == STAGE_OPERATIONAL)) {
            kvbuf_add(&rsp, "MaxRecvDataSegmentLength", "%u", ISCSI_MAX_RECV_SEGMENT);
            ls->mrdsl_declared = true;
        }
    }
    if (rsp.oom) {
        kvbuf_free(&rsp);
        login_fail(c, LOGIN_OUT_OF_RESOURCES, "out of memory");
        return;
    }
    uint8_t flags = (uint8_t)(csg << 2);
    if (go)
        flags |= LOGIN_FLAG_TRANSIT | nsg;
    login_respond(c, flags, LOGIN_OK, rsp.buf, rsp.len);
    kvbuf_free(&rsp);
    if (go) {
        ls->csg = nsg;
        if (nsg == STAGE_FULL_FEATURE)
            login_complete(c);
    }
}

void iscsi_login_pdu(struct iscsi_conn *c)
{
    const uint8_t *h = c->bhs;
    uint8_t f = h[1];
    bool transit = f & LOGIN_FLAG_TRANSIT, cont = f & LOGIN_FLAG_CONTINUE;
    uint8_t csg = LOGIN_CSG(f);

    if (!c->login) {
        c->login = calloc(1, sizeof(*c->login));
        if (!c->login) {
            stream_kill(&c->s, "out of memory for a login");
            return;
        }
    }
    struct login_state *ls = c->login;
    if (!ls->started) {
        ls->started = true;
        memcpy(c->isid, h + LOGIN_ISID, 6);
        ls->tsih_in = iscsi_get16(h + LOGIN_TSIH);
        c->cid = iscsi_get16(h + LOGIN_CID);
        c->exp_cmdsn = iscsi_get32(h + LOGIN_CMDSN);
        c->max_cmdsn = c->exp_cmdsn + ISCSI_CMD_WINDOW - 1;
        c->statsn = iscsi_get32(h + LOGIN_EXPSTATSN);
        ls->csg = csg;
        if (h[LOGIN_VMIN] > 0) {
            login_fail(c, LOGIN_UNSUPPORTED_VERSION, "VersionMin above 0");
            return;
        }
        if (csg != STAGE_SECURITY && csg != STAGE_OPERATIONAL) {
            login_fail(c, LOGIN_INITIATOR_ERROR, "the first request is not in a login stage");
            return;
        }
    } else if (memcmp(c->isid, h + LOGIN_ISID, 6) != 0 ||
               iscsi_get16(h + LOGIN_TSIH) != ls->tsih_in ||
               iscsi_get16(h + LOGIN_CID) != c->cid) {
        login_fail(c, LOGIN_INITIATOR_ERROR, "ISID, TSIH or CID changed during login");
        return;
    }
    if (csg != ls->csg) {
        login_fail(c, LOGIN_INITIATOR_ERROR, "a request in the wrong stage");
        return;
    }
    if (transit && cont) {
        login_fail(c, LOGIN_INITIATOR_ERROR, "both the T and C bits");
        return;
    }
    if (ls->acc_len + c->dlen > ISCSI_LOGIN_DATA_MAX) {
        login_fail(c, LOGIN_INITIATOR_ERROR, "login text too long");
        return;
    }
    if (cont || ls->acc) {
        char *p = realloc(ls->acc, ls->acc_len + c->dlen + 1);
        if (!p) {
            login_fail(c, LOGIN_OUT_OF_RESOURCES, "out of memory");
            return;
        }
        ls->acc = p;
        if (c->dlen)
            memcpy(ls->acc + ls->acc_len, c->data, c->dlen);
        ls->acc_len += c->dlen;
    }
    if (cont) {
        /* An empty answer asks for the rest. */
        login_respond(c, (uint8_t)(csg << 2), LOGIN_OK, NULL, 0);
        return;
    }
    if (ls->acc) {
        char *text = ls->acc;
        size_t len = ls->acc_len;
        ls->acc = NULL;
        ls->acc_len = 0;
        login_request(c, text, len);
        free(text);
        return;
    }
    /* A copy, with room for the terminating NUL: parsing writes into the text. */
    uint8_t *tmp = malloc(c->dlen + 1);
    if (!tmp) {
        login_fail(c, LOGIN_OUT_OF_RESOURCES, "out of memory");
        return;
    }
    if (c->dlen)
        memcpy(tmp, c->data, c->dlen);
    login_request(c, (char *)tmp, c->dlen);
    free(tmp);
}
