/*
 * text.c - key=value text (RFC 7143 6 and 13): parsing a data segment of "key=value\0"
 * pairs, building answers, negotiating the operational keys, and SendTargets.
 *
 * The target proposes nothing itself: it answers each key the initiator offers with the
 * result of the key's function (RFC 7143 6.2) and declares its own MaxRecvDataSegmentLength
 * (login.c). Keys this target does not know, and private X- keys, are NotUnderstood; keys
 * that do not apply to a discovery session are Irrelevant; a value out of the key's range,
 * or not a valid value of its type, is answered Reject. Offering a key twice in one login
 * is a protocol error, which fails the login.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/iscsi-priv.h"

#define KEY_MAX 63
#define VALUE_MAX 8192

int iscsi_kv_parse(char *text, size_t len, struct kv *kv, int max)
{
    int n = 0;
    size_t i = 0;
    text[len] = '\0'; /* the caller leaves room: a last pair without its NUL still ends */
    while (i < len) {
        char *s = text + i;
        size_t l = strlen(s);
        i += l + 1;
        if (l == 0)
            continue; /* padding, or an empty pair */
        char *eq = memchr(s, '=', l);
        if (!eq || eq == s || (size_t)(eq - s) > KEY_MAX || l - (size_t)(eq - s) - 1 > VALUE_MAX)
            return -EINVAL;
        if (n == max)
            return -EINVAL;
        *eq = '\0';
        kv[n].key = s;
        kv[n].value = eq + 1;
        n++;
    }
    return n;
}

void kvbuf_add(struct kvbuf *b, const char *key, const char *fmt, ...)
{
    char val[VALUE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    if (n < 0 || b->oom)
        return;
    size_t need = strlen(key) + 1 + strlen(val) + 1;
    if (b->len + need > b->cap) {
        size_t cap = MAX(b->cap * 2, b->len + need + 256);
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
    b->len += (size_t)sprintf(b->buf + b->len, "%s=%s", key, val) + 1;
}

void kvbuf_free(struct kvbuf *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}

void iscsi_params_default(struct iscsi_params *p)
{
    /* RFC 7143 defaults, until negotiated otherwise. */
    p->mrdsl_out = ISCSI_LOGIN_SEGMENT;
    p->max_burst = 262144;
    p->first_burst = 65536;
    p->max_r2t = 1;
    p->max_conn = 1;
    p->t2w = 2;
    p->t2r = 20;
    p->erl = 0;
    p->initial_r2t = true;
    p->immediate_data = true;
    p->header_digest = false;
    p->data_digest = false;
}

/* iSCSI names: iqn.YYYY-MM.reverse.domain[:anything], eui.16HEX, naa.16or32HEX. Characters
 * are checked loosely (RFC 3722 stringprep is not applied): printable ASCII, no spaces. */
bool iscsi_name_valid(const char *name)
{
    size_t l = strlen(name);
    if (l < 4 || l > ISCSI_NAME_MAX)
        return false;
    if (strncmp(name, "iqn.", 4) != 0 && strncmp(name, "eui.", 4) != 0 &&
        strncmp(name, "naa.", 4) != 0)
        return false;
    for (size_t i = 0; i < l; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Values
 */

static int parse_number(const char *v, uint64_t *out)
{
    uint64_t n = 0;
    const char *p = v;
    if (*p == '\0')
        return -EINVAL;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        p += 2;
        if (*p == '\0' || strlen(p) > 16)
            return -EINVAL;
        for (; *p; p++) {
            unsigned d;
            if (*p >= '0' && *p <= '9')
                d = (unsigned)(*p - '0');
            else if (*p >= 'a' && *p <= 'f')
                d = (unsigned)(*p - 'a' + 10);
            else if (*p >= 'A' && *p <= 'F')
                d = (unsigned)(*p - 'A' + 10);
            else
                return -EINVAL;
            n = n << 4 | d;
        }
    } else {
        if (strlen(p) > 19)
            return -EINVAL;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -EINVAL;
            n = n * 10 + (uint64_t)(*p - '0');
        }
    }
    *out = n;
    return 0;
}

static int parse_bool(const char *v)
{
    if (strcmp(v, "Yes") == 0)
        return 1;
    if (strcmp(v, "No") == 0)
        return 0;
    return -1;
}

/* ------------------------------------------------------------------------------------------
 * Keys
 */

enum key_type { KT_NUM_MIN, KT_NUM_MAX, KT_DECLARE_NUM, KT_AND, KT_OR, KT_DIGEST, KT_LIST };

enum key_id {
    K_HEADER_DIGEST,
    K_DATA_DIGEST,
    K_MAX_CONNECTIONS,
    K_INITIAL_R2T,
    K_IMMEDIATE_DATA,
    K_MRDSL,
    K_MAX_BURST,
    K_FIRST_BURST,
    K_T2W,
    K_T2R,
    K_MAX_R2T,
    K_PDU_IN_ORDER,
    K_SEQ_IN_ORDER,
    K_ERL,
    K_IF_MARKER,
    K_OF_MARKER,
    K_IF_MARK_INT,
    K_OF_MARK_INT,
    K_TASK_REPORTING,
    K_PROTOCOL_LEVEL,
    K_COUNT
};

static const struct key_def {
    const char *name;
    enum key_type type;
    uint64_t min, max, ours; /* range; our value (numbers and booleans) */
    bool normal_only;        /* Irrelevant in a discovery session */
} keys[K_COUNT] = {
    [K_HEADER_DIGEST] = {"HeaderDigest", KT_DIGEST, 0, 0, 0, false},
    [K_DATA_DIGEST] = {"DataDigest", KT_DIGEST, 0, 0, 0, false},
    [K_MAX_CONNECTIONS] = {"MaxConnections", KT_NUM_MIN, 1, 65535, 1, true},
    [K_INITIAL_R2T] = {"InitialR2T", KT_OR, 0, 1, 0, true},
    [K_IMMEDIATE_DATA] = {"ImmediateData", KT_AND, 0, 1, 1, true},
    [K_MRDSL] = {"MaxRecvDataSegmentLength", KT_DECLARE_NUM, 512, 16777215, 0, false},
    [K_MAX_BURST] = {"MaxBurstLength", KT_NUM_MIN, 512, 16777215, ISCSI_MAX_BURST, true},
    [K_FIRST_BURST] = {"FirstBurstLength", KT_NUM_MIN, 512, 16777215, ISCSI_FIRST_BURST, true},
    [K_T2W] = {"DefaultTime2Wait", KT_NUM_MAX, 0, 3600, 2, false},
    [K_T2R] = {"DefaultTime2Retain", KT_NUM_MIN, 0, 3600, 20, false},
    [K_MAX_R2T] = {"MaxOutstandingR2T", KT_NUM_MIN, 1, 65535, ISCSI_MAX_OUTSTANDING_R2T, true},
    [K_PDU_IN_ORDER] = {"DataPDUInOrder", KT_OR, 0, 1, 1, true},
    [K_SEQ_IN_ORDER] = {"DataSequenceInOrder", KT_OR, 0, 1, 1, true},
    [K_ERL] = {"ErrorRecoveryLevel", KT_NUM_MIN, 0, 2, 0, false},
    [K_IF_MARKER] = {"IFMarker", KT_AND, 0, 1, 0, false},
    [K_OF_MARKER] = {"OFMarker", KT_AND, 0, 1, 0, false},
    [K_IF_MARK_INT] = {"IFMarkInt", KT_LIST, 0, 0, 0, false},
    [K_OF_MARK_INT] = {"OFMarkInt", KT_LIST, 0, 0, 0, false},
    [K_TASK_REPORTING] = {"TaskReporting", KT_LIST, 0, 0, 0, true},
    [K_PROTOCOL_LEVEL] = {"iSCSIProtocolLevel", KT_NUM_MIN, 0, 31, 1, false},
};

/* Keys a target declares or that belong to other parts of the login: never an answer to a
 * key the initiator offers here. */
static bool is_reserved_key(const char *k)
{
    static const char *const names[] = {"TargetAddress", "TargetPortalGroupTag", "TargetAlias",
                                        "SendTargets"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcmp(k, names[i]) == 0)
            return true;
    return false;
}

static void set_param(struct iscsi_params *p, enum key_id id, uint64_t v)
{
    switch (id) {
    case K_MAX_CONNECTIONS:
        p->max_conn = (uint32_t)v;
        break;
    case K_INITIAL_R2T:
        p->initial_r2t = v != 0;
        break;
    case K_IMMEDIATE_DATA:
        p->immediate_data = v != 0;
        break;
    case K_MRDSL:
        p->mrdsl_out = (uint32_t)v;
        break;
    case K_MAX_BURST:
        p->max_burst = (uint32_t)v;
        break;
    case K_FIRST_BURST:
        p->first_burst = (uint32_t)v;
        break;
    case K_T2W:
        p->t2w = (uint32_t)v;
        break;
    case K_T2R:
        p->t2r = (uint32_t)v;
        break;
    case K_MAX_R2T:
        p->max_r2t = (uint32_t)v;
        break;
    case K_ERL:
        p->erl = (uint32_t)v;
        break;
    default:
        break;
    }
}

uint16_t iscsi_negotiate_key(struct iscsi_conn *c, const struct kv *kv, struct kvbuf *rsp,
                             uint32_t *seen)
{
    const char *k = kv->key, *v = kv->value;
    /* Answers to offers of ours (we make none) and declarations without an answer. */
    if (strcmp(v, "NotUnderstood") == 0 || strcmp(v, "Irrelevant") == 0 ||
        strcmp(v, "Reject") == 0)
        return LOGIN_OK;
    if (strcmp(k, "InitiatorAlias") == 0)
        return LOGIN_OK;
    if (is_reserved_key(k)) {
        kvbuf_add(rsp, k, "Reject");
        return LOGIN_OK;
    }
    int id = -1;
    for (int i = 0; i < K_COUNT; i++)
        if (strcmp(k, keys[i].name) == 0)
            id = i;
    if (id < 0) {
        kvbuf_add(rsp, k, "NotUnderstood");
        return LOGIN_OK;
    }
    if (*seen & (1u << id)) {
        log_info("iscsi: %s: key %s offered twice in one login", c->peer, k);
        return LOGIN_INITIATOR_ERROR;
    }
    *seen |= 1u << id;
    const struct key_def *d = &keys[id];
    if (d->normal_only && c->discovery) {
        kvbuf_add(rsp, k, "Irrelevant");
        return LOGIN_OK;
    }
    uint64_t n;
    int b;
    switch (d->type) {
    case KT_DIGEST: {
        /* A list: the first of the initiator's choices that we support. */
        char list[VALUE_MAX + 1];
        snprintf(list, sizeof list, "%s", v);
        char *save = NULL;
        const char *pick = NULL;
        for (char *w = strtok_r(list, ",", &save); w && !pick; w = strtok_r(NULL, ",", &save)) {
            if (strcmp(w, "CRC32C") == 0)
                pick = "CRC32C";
            else if (strcmp(w, "None") == 0)
                pick = "None";
        }
        if (!pick) {
            kvbuf_add(rsp, k, "Reject");
            return LOGIN_OK;
        }
        if (id == K_HEADER_DIGEST)
            c->p.header_digest = pick[0] == 'C';
        else
            c->p.data_digest = pick[0] == 'C';
        kvbuf_add(rsp, k, "%s", pick);
        return LOGIN_OK;
    }
    case KT_LIST:
        if (id == K_TASK_REPORTING) {
            /* Only the RFC 3720 behaviour: always in the initiator's list by definition. */
            kvbuf_add(rsp, k, "RFC3720");
        } else {
            /* Markers are not supported (RFC 7143 removed them). */
            kvbuf_add(rsp, k, "Irrelevant");
        }
        return LOGIN_OK;
    case KT_AND:
    case KT_OR:
        b = parse_bool(v);
        if (b < 0) {
            kvbuf_add(rsp, k, "Reject");
            return LOGIN_OK;
        }
        n = d->type == KT_AND ? (uint64_t)(b && d->ours) : (uint64_t)(b || d->ours);
        set_param(&c->p, (enum key_id)id, n);
        kvbuf_add(rsp, k, "%s", n ? "Yes" : "No");
        return LOGIN_OK;
    case KT_NUM_MIN:
    case KT_NUM_MAX:
    case KT_DECLARE_NUM:
        if (parse_number(v, &n) < 0 || n < d->min || n > d->max) {
            kvbuf_add(rsp, k, "Reject");
            return LOGIN_OK;
        }
        if (d->type == KT_DECLARE_NUM) {
            set_param(&c->p, (enum key_id)id, n); /* no answer: our own is declared apart */
            return LOGIN_OK;
        }
        n = d->type == KT_NUM_MIN ? MIN(n, d->ours) : MAX(n, d->ours);
        set_param(&c->p, (enum key_id)id, n);
        kvbuf_add(rsp, k, "%llu", (unsigned long long)n);
        return LOGIN_OK;
    }
    return LOGIN_OK;
}

/* ------------------------------------------------------------------------------------------
 * SendTargets
 */

struct st_ctx {
    struct iscsi_conn *c;
    struct kvbuf *rsp;
    const char *only; /* NULL: every target */
};

static int st_one(void *ctx, const char *iqn)
{
    struct st_ctx *x = ctx;
    if (x->only && strcmp(x->only, iqn) != 0)
        return 0;
    kvbuf_add(x->rsp, "TargetName", "%s", iqn);
    kvbuf_add(x->rsp, "TargetAddress", "%s,%u", x->c->local, ISCSI_TPGT);
    return 0;
}

void iscsi_send_targets(struct iscsi_conn *c, const char *which, struct kvbuf *rsp)
{
    struct st_ctx x = {c, rsp, NULL};
    if (strcmp(which, "All") == 0) {
        x.only = NULL;
    } else if (*which == '\0') {
        if (c->discovery)
            return; /* a discovery session has no target of its own */
        x.only = c->target;
    } else {
        x.only = which;
    }
    c->srv->t.list(c->srv->ctx, c->initiator, st_one, &x);
}
