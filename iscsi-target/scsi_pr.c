/*
 * scsi_pr.c - reservations: persistent reservations (SPC-4 5.13, PERSISTENT RESERVE IN and
 * OUT) and the older RESERVE / RELEASE (SPC-2), and the conflict check every command goes
 * through.
 *
 * Model
 *   A registration is an I_T nexus named by its initiator and target port names (so it
 *   outlives the session that made it) with a reservation key. The reservation is either
 *   none, held by one registration (WRITE EXCLUSIVE, EXCLUSIVE ACCESS and their REGISTRANTS
 *   ONLY forms), or held by every registration (the ALL REGISTRANTS forms; holder NULL).
 *   An SPC-2 reservation is held by one nexus state and never coexists with persistent
 *   ones. Everything lives in memory and under lu->lock, and is kept when the LU object
 *   goes (pr_close). With APTPL the state is also written to a file, and read back when the
 *   daemon starts again (PTPL_C 1 when the LU has a state directory). ALL_TG_PT and
 *   SPEC_I_PT are refused (ATP_C, SIP_C 0), as REPORT CAPABILITIES says.
 *
 * Conflicts (SPC-4 table 62 and SBC-3 table 13), for a nexus that does not hold the
 * reservation; the command's class comes from its table entry:
 *
 *                        read class         write class
 *   WE                   allowed            conflict
 *   EA                   conflict           conflict
 *   WE_RO, WE_AR         allowed            conflict unless registered
 *   EA_RO, EA_AR         conflict unless registered (both)
 *
 * Unit attentions go to the nexuses attached now whose names match the registrations
 * concerned: REGISTRATIONS PREEMPTED to those preempted or cleared, RESERVATIONS RELEASED
 * to the registrants when a REGISTRANTS ONLY or ALL REGISTRANTS reservation is released,
 * RESERVATIONS PREEMPTED on CLEAR.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iscsi-target/scsi-priv.h"

#define PR_MAX_REGS 256

#define PRO_REGISTER 0x00
#define PRO_RESERVE 0x01
#define PRO_RELEASE 0x02
#define PRO_CLEAR 0x03
#define PRO_PREEMPT 0x04
#define PRO_PREEMPT_ABORT 0x05
#define PRO_REGISTER_IGNORE 0x06
#define PRO_REGISTER_MOVE 0x07

static bool type_valid(uint8_t t)
{
    return t == PR_TYPE_WE || t == PR_TYPE_EA || t == PR_TYPE_WE_RO || t == PR_TYPE_EA_RO ||
           t == PR_TYPE_WE_AR || t == PR_TYPE_EA_AR;
}

static bool type_all_regs(uint8_t t) { return t == PR_TYPE_WE_AR || t == PR_TYPE_EA_AR; }

static bool reg_is_nexus(const struct pr_reg *r, const struct scsi_nexus *nx)
{
    return strcmp(r->initiator, nx->initiator_port) == 0 && strcmp(r->target, nx->target_port) == 0;
}

static struct pr_reg *reg_find(struct pr_state *pr, const struct scsi_nexus *nx)
{
    struct pr_reg *r;
    if (!nx)
        return NULL;
    LIST_FOREACH(r, &pr->regs, link)
        if (reg_is_nexus(r, nx))
            return r;
    return NULL;
}

static bool reg_holds(const struct pr_state *pr, const struct pr_reg *r)
{
    if (!r || !pr->type)
        return false;
    return type_all_regs(pr->type) || pr->holder == r;
}

/* Queues @asc for every attached nexus that @r names. */
static void ua_reg(struct scsi_lu *lu, const struct pr_reg *r, struct nexus_state *except,
                   uint16_t asc)
{
    struct nexus_state *ns;
    LIST_FOREACH(ns, &lu->nexuses, link)
        if (ns != except && reg_is_nexus(r, ns->nx))
            scsi_ua_queue_locked(ns, asc);
}

static void ua_regs(struct scsi_lu *lu, const struct pr_reg *except_reg,
                    struct nexus_state *except, uint16_t asc)
{
    struct pr_reg *r;
    LIST_FOREACH(r, &lu->pr.regs, link)
        if (r != except_reg)
            ua_reg(lu, r, except, asc);
}

static void reg_remove(struct pr_state *pr, struct pr_reg *r)
{
    if (pr->holder == r) {
        pr->holder = NULL;
        if (!type_all_regs(pr->type))
            pr->type = 0;
    }
    LIST_REMOVE(r, link);
    pr->nregs--;
    free(r);
    if (pr->nregs == 0)
        pr->type = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Conflicts                                                                                  */
/* ---------------------------------------------------------------------------------------- */

bool pr_conflict_locked(struct scsi_cmd *cmd, const struct scsi_op *op)
{
    struct scsi_lu *lu = cmd->lu;
    struct pr_state *pr = &lu->pr;
    struct nexus_state *ns = scsi_ns(cmd);
    if (pr->spc2_holder) {
        if (pr->spc2_holder == ns || (op->flags & OPF_SPC2_ALLOW))
            return false;
        return true;
    }
    if (!pr->type || (op->flags & (OPF_PR_ALLOW | OPF_PR_OWN)))
        return false;
    struct pr_reg *r = reg_find(pr, cmd->nx);
    if (reg_holds(pr, r))
        return false;
    bool write = op->flags & OPF_PR_WRITE;
    switch (pr->type) {
    case PR_TYPE_WE:
        return write;
    case PR_TYPE_EA:
        return true;
    case PR_TYPE_WE_RO:
    case PR_TYPE_WE_AR:
        return write && !r;
    default: /* EA_RO, EA_AR */
        return !r;
    }
}

void pr_nexus_gone_locked(struct scsi_lu *lu, struct nexus_state *ns)
{
    if (lu->pr.spc2_holder == ns)
        lu->pr.spc2_holder = NULL;
}

void pr_reset_locked(struct scsi_lu *lu) { lu->pr.spc2_holder = NULL; }

/*
 * Registrations outlive the LU object: an LU is destroyed when the last session using it
 * logs out, but an I_T nexus loss does not end a registration or a reservation (SPC-4
 * 5.13.1), so a cluster node whose session drops still holds its reservation when it, or
 * another node, logs in again. pr_close keeps the state of an LU with registrations in a
 * list of the process, by the LU's identity (pool uuid and volume id); pr_open takes it
 * back, with its PRgeneration. A stop of the target (a power loss, to the initiators)
 * forgets them: scsi_pr_forget.
 */
struct pr_kept {
    LIST_ENTRY(pr_kept) link;
    uint8_t pool_uuid[16];
    uint64_t vol_id;
    struct pr_state pr;
};

static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, pr_kept) kept = LIST_HEAD_INITIALIZER(kept);

/* Moves @src's registrations, in order, and its reservation to @dst (empty). */
static void pr_move(struct pr_state *dst, struct pr_state *src)
{
    struct pr_reg *r, *last = NULL;
    LIST_INIT(&dst->regs);
    while ((r = LIST_FIRST(&src->regs))) {
        LIST_REMOVE(r, link);
        if (last)
            LIST_INSERT_AFTER(last, r, link);
        else
            LIST_INSERT_HEAD(&dst->regs, r, link);
        last = r;
    }
    dst->nregs = src->nregs;
    dst->generation = src->generation;
    dst->aptpl = src->aptpl;
    dst->type = src->type;
    dst->holder = src->holder;
    dst->spc2_holder = NULL; /* held by a nexus, which is gone */
    src->nregs = 0;
    src->type = 0;
    src->holder = NULL;
}

static void pr_clear_regs(struct pr_state *pr)
{
    struct pr_reg *r;
    while ((r = LIST_FIRST(&pr->regs))) {
        LIST_REMOVE(r, link);
        free(r);
    }
    pr->nregs = 0;
    pr->type = 0;
    pr->holder = NULL;
}

static struct pr_kept *kept_find(const uint8_t uuid[16], uint64_t vol_id)
{
    struct pr_kept *k;
    LIST_FOREACH(k, &kept, link)
        if (k->vol_id == vol_id && memcmp(k->pool_uuid, uuid, 16) == 0)
            return k;
    return NULL;
}

static void pr_load(struct scsi_lu *lu);

void pr_open(struct scsi_lu *lu)
{
    LIST_INIT(&lu->pr.regs);
    pthread_mutex_lock(&kept_lock);
    struct pr_kept *k = kept_find(lu->pool_uuid, lu->vol_id);
    if (k)
        LIST_REMOVE(k, link);
    pthread_mutex_unlock(&kept_lock);
    if (k) {
        pr_move(&lu->pr, &k->pr);
        free(k);
    } else {
        pr_load(lu); /* what APTPL kept over a restart */
    }
}

void scsi_pr_forget(void)
{
    SCOPED_LOCK(&kept_lock);
    struct pr_kept *k;
    while ((k = LIST_FIRST(&kept))) {
        LIST_REMOVE(k, link);
        pr_clear_regs(&k->pr);
        free(k);
    }
}

void scsi_pr_drop(const char *pr_dir, const uint8_t pool_uuid[16], uint64_t vol_id)
{
    pthread_mutex_lock(&kept_lock);
    struct pr_kept *k = kept_find(pool_uuid, vol_id);
    if (k)
        LIST_REMOVE(k, link);
    pthread_mutex_unlock(&kept_lock);
    if (k) {
        pr_clear_regs(&k->pr);
        free(k);
    }
    char serial[SCSI_SERIAL_LEN], *path;
    scsi_serial(pool_uuid, vol_id, serial);
    if (pr_dir && (path = pr_file_path(pr_dir, serial))) {
        int r = file_remove(path);
        if (r < 0)
            log_warn("%s: %s", path, strerror(-r));
        free(path);
    }
}

char *pr_file_path(const char *pr_dir, const char *serial)
{
    char *path;
    return asprintf(&path, "%s/%s.pr.json", pr_dir, serial) < 0 ? NULL : path;
}

void pr_close(struct scsi_lu *lu)
{
    struct pr_kept *k = NULL;
    bool keep = lu->pr.nregs || lu->pr.generation; /* PRgeneration goes on too */
    if (keep)
        k = calloc(1, sizeof(*k));
    if (!k) {
        if (keep)
            log_err("iscsi: %s: out of memory keeping its persistent reservations", lu->name);
        pr_clear_regs(&lu->pr);
        return;
    }
    memcpy(k->pool_uuid, lu->pool_uuid, 16);
    k->vol_id = lu->vol_id;
    pr_move(&k->pr, &lu->pr);
    SCOPED_LOCK(&kept_lock);
    /* Another LU of the same volume (in another target) closed before: this one is newer. */
    struct pr_kept *old = kept_find(k->pool_uuid, k->vol_id);
    if (old) {
        LIST_REMOVE(old, link);
        pr_clear_regs(&old->pr);
        free(old);
    }
    LIST_INSERT_HEAD(&kept, k, link);
}

/* ---------------------------------------------------------------------------------------- */
/* PERSISTENT RESERVE IN                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* The iSCSI TransportID (format 01b) of a registration; returns its length (multiple of 4,
 * at least 24). */
static size_t transport_id(const struct pr_reg *r, uint8_t *p)
{
    size_t nl = strlen(r->initiator) + 1;
    size_t len = MAX(ROUND_UP(4 + nl, (size_t)4), (size_t)24);
    memset(p, 0, len);
    p[0] = 0x40 | 0x05;
    put_be16(p + 2, (uint16_t)(len - 4));
    memcpy(p + 4, r->initiator, nl - 1);
    return len;
}

void pr_in(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    uint8_t sa = cmd->cdb[1] & 0x1F;
    size_t cap = 8 + (size_t)(PR_MAX_REGS + 1) * (24 + 300);
    uint8_t *b = calloc(1, cap);
    if (!b) {
        scsi_sense_errno(cmd, -ENOMEM, false);
        scsi_complete(cmd);
        return;
    }
    size_t n = 8;
    pthread_mutex_lock(&lu->lock);
    struct pr_state *pr = &lu->pr;
    struct pr_reg *r;
    put_be32(b, pr->generation);
    switch (sa) {
    case 0x00: /* READ KEYS */
        LIST_FOREACH(r, &pr->regs, link) {
            put_be64(b + n, r->key);
            n += 8;
        }
        put_be32(b + 4, (uint32_t)(n - 8));
        break;
    case 0x01: /* READ RESERVATION */
        if (pr->type) {
            put_be64(b + 8, pr->holder ? pr->holder->key : 0);
            b[8 + 13] = pr->type; /* scope 0: LU */
            n += 16;
        }
        put_be32(b + 4, (uint32_t)(n - 8));
        break;
    case 0x02: /* REPORT CAPABILITIES */
        memset(b, 0, 8);
        put_be16(b, 8);
        b[2] = 0x10;        /* CRH: RESERVE/RELEASE coexist as SPC-4 5.13.3 says */
        if (lu->pr_file)
            b[2] |= 0x01;   /* PTPL_C */
        b[3] = 0x80 | 0x10; /* TMV; ALLOW COMMANDS 001b */
        if (pr->aptpl)
            b[3] |= 0x01;   /* PTPL_A */
        b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; /* WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX */
        b[5] = 0x01;                             /* EX_AC_AR */
        n = 8;
        break;
    default: /* 0x03 READ FULL STATUS */
        LIST_FOREACH(r, &pr->regs, link) {
            uint8_t *d = b + n;
            memset(d, 0, 24);
            put_be64(d, r->key);
            if (reg_holds(pr, r)) {
                d[12] = 0x01; /* R_HOLDER */
                d[13] = pr->type;
            }
            put_be16(d + 18, r->rel_target_port);
            size_t tl = transport_id(r, d + 24);
            put_be32(d + 20, (uint32_t)tl);
            n += 24 + tl;
        }
        put_be32(b + 4, (uint32_t)(n - 8));
        break;
    }
    pthread_mutex_unlock(&lu->lock);
    scsi_data_in(cmd, b, n);
    free(b);
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* PERSISTENT RESERVE OUT                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* The result of a PR OUT step, applied to the command once the lock is dropped. */
enum pro_res {
    PRO_GOOD,
    PRO_CONFLICT,
    PRO_BAD_CDB_TYPE, /* INVALID FIELD IN CDB: scope / type */
    PRO_BAD_PARAM,    /* INVALID FIELD IN PARAMETER LIST at byte `at` */
    PRO_BAD_RELEASE,  /* INVALID RELEASE OF PERSISTENT RESERVATION */
    PRO_NO_RESOURCES,
    PRO_NOMEM,
};

struct pro_ctx {
    struct scsi_cmd *cmd;
    struct scsi_lu *lu;
    struct nexus_state *ns;
    uint8_t sa, scope, type;
    uint64_t key, sa_key;
    const uint8_t *p;
    uint32_t len;
    unsigned at; /* field pointer for PRO_BAD_PARAM */
    int bit;
};

static struct pr_reg *reg_new(const char *initiator, const char *target, uint16_t rtp,
                              uint64_t key)
{
    struct pr_reg *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    snprintf(r->initiator, sizeof(r->initiator), "%s", initiator);
    snprintf(r->target, sizeof(r->target), "%s", target);
    r->rel_target_port = rtp;
    r->key = key;
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* APTPL: the state file                                                                      */
/* ---------------------------------------------------------------------------------------- */

/*
 * With APTPL set by the last REGISTER, every change is written to lu->pr_file before the
 * command completes (file_replace: a crash leaves the old state or the new one), and the
 * file is removed when a REGISTER clears APTPL. It is JSON:
 *
 *   {"format": "cistern-pr", "version": 1, "generation": 12, "type": 1, "holder": 0,
 *    "registrations": [{"key": "0x...", "initiator": "iqn...,i,0x...",
 *                       "target": "iqn...,t,0x1", "relative_target_port": 1}, ...]}
 *
 * "holder" indexes the registrations (-1: every registrant, or no reservation when type
 * is 0). The write happens on the reactor, under the LU's lock: PERSISTENT RESERVE OUT is
 * rare, and the file small.
 */
static char *pr_to_json(const struct pr_state *pr)
{
    struct json_object *o = json_object_new_object(), *regs = json_object_new_array();
    char *text = NULL;
    if (!o || !regs) {
        json_object_put(o);
        json_object_put(regs);
        return NULL;
    }
    int holder = -1, i = 0;
    const struct pr_reg *r;
    LIST_FOREACH(r, &pr->regs, link) {
        struct json_object *e = json_object_new_object();
        char key[24];
        snprintf(key, sizeof key, "0x%016" PRIx64, r->key);
        json_object_object_add(e, "key", json_object_new_string(key));
        json_object_object_add(e, "initiator", json_object_new_string(r->initiator));
        json_object_object_add(e, "target", json_object_new_string(r->target));
        json_object_object_add(e, "relative_target_port", json_object_new_int(r->rel_target_port));
        json_object_array_add(regs, e);
        if (pr->holder == r)
            holder = i;
        i++;
    }
    json_object_object_add(o, "format", json_object_new_string("cistern-pr"));
    json_object_object_add(o, "version", json_object_new_int(1));
    json_object_object_add(o, "generation", json_object_new_int64(pr->generation));
    json_object_object_add(o, "type", json_object_new_int(pr->type));
    json_object_object_add(o, "holder", json_object_new_int(holder));
    json_object_object_add(o, "registrations", regs);
    if (asprintf(&text, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY)) < 0)
        text = NULL;
    json_object_put(o);
    return text;
}

static bool json_get(struct json_object *o, const char *k, enum json_type t,
                     struct json_object **v)
{
    return json_object_object_get_ex(o, k, v) && json_object_is_type(*v, t);
}

/* Fills @pr (empty) from @text; false when it is not a state file of ours. */
static bool pr_from_json(struct pr_state *pr, const char *text)
{
    struct json_object *o = json_tokener_parse(text), *v, *regs;
    bool ok = o && json_get(o, "format", json_type_string, &v) &&
              strcmp(json_object_get_string(v), "cistern-pr") == 0 &&
              json_get(o, "version", json_type_int, &v) && json_object_get_int(v) == 1 &&
              json_get(o, "registrations", json_type_array, &regs) &&
              json_object_array_length(regs) <= PR_MAX_REGS;
    int64_t gen = 0, type = 0, holder = -1;
    if (ok && json_get(o, "generation", json_type_int, &v))
        gen = json_object_get_int64(v);
    if (ok && json_get(o, "type", json_type_int, &v))
        type = json_object_get_int64(v);
    if (ok && json_get(o, "holder", json_type_int, &v))
        holder = json_object_get_int64(v);
    size_t n = ok ? json_object_array_length(regs) : 0;
    ok = ok && gen >= 0 && gen <= UINT32_MAX && (type == 0 || type_valid((uint8_t)type)) &&
         holder >= -1 && holder < (int64_t)n && (type == 0 || n > 0) &&
         (holder >= 0) == (type != 0 && !type_all_regs((uint8_t)type));
    struct pr_reg *last = NULL;
    for (size_t i = 0; ok && i < n; i++) {
        struct json_object *e = json_object_array_get_idx(regs, i), *key, *ini, *tgt, *rtp;
        char *end;
        ok = json_get(e, "key", json_type_string, &key) &&
             json_get(e, "initiator", json_type_string, &ini) &&
             json_get(e, "target", json_type_string, &tgt) &&
             json_get(e, "relative_target_port", json_type_int, &rtp);
        if (!ok)
            break;
        errno = 0;
        uint64_t k = strtoull(json_object_get_string(key), &end, 16);
        const char *is = json_object_get_string(ini), *ts = json_object_get_string(tgt);
        int64_t port = json_object_get_int64(rtp);
        ok = errno == 0 && *end == 0 && k != 0 && *is && strlen(is) < sizeof(last->initiator) &&
             *ts && strlen(ts) < sizeof(last->target) && port >= 0 && port <= UINT16_MAX;
        struct pr_reg *r = ok ? reg_new(is, ts, (uint16_t)port, k) : NULL;
        if (!r) {
            ok = false;
            break;
        }
        if (last)
            LIST_INSERT_AFTER(last, r, link);
        else
            LIST_INSERT_HEAD(&pr->regs, r, link);
        last = r;
        pr->nregs++;
        if ((int64_t)i == holder)
            pr->holder = r;
    }
    json_object_put(o);
    if (!ok) {
        pr_clear_regs(pr);
        return false;
    }
    pr->generation = (uint32_t)gen;
    pr->type = (uint8_t)type;
    pr->aptpl = true;
    return true;
}

static void pr_load(struct scsi_lu *lu)
{
    if (!lu->pr_file)
        return;
    FILE *f = fopen(lu->pr_file, "re");
    if (!f) {
        if (errno != ENOENT)
            log_warn("iscsi: %s: %s: %s; its persistent reservations are lost", lu->name,
                     lu->pr_file, strerror(errno));
        return;
    }
    size_t cap = PR_MAX_REGS * 1024;
    CLEANUP_FREE char *buf = malloc(cap);
    size_t n = buf ? fread(buf, 1, cap - 1, f) : 0;
    bool whole = buf && feof(f) && !ferror(f);
    fclose(f);
    if (buf)
        buf[n] = 0;
    if (!whole || !pr_from_json(&lu->pr, buf)) {
        log_warn("iscsi: %s: %s is not a persistent reservation state this version reads; "
                 "its reservations are lost", lu->name, lu->pr_file);
        return;
    }
    log_info("iscsi: %s: %u persistent registrations kept through the restart (APTPL)",
             lu->name, lu->pr.nregs);
}

/* After a PERSISTENT RESERVE OUT that succeeded: the file follows the state. */
static int pr_save(struct scsi_lu *lu, bool was_aptpl)
{
    if (!lu->pr_file || (!lu->pr.aptpl && !was_aptpl))
        return 0;
    if (!lu->pr.aptpl)
        return file_remove(lu->pr_file);
    char *text = pr_to_json(&lu->pr);
    if (!text)
        return -ENOMEM;
    int r = file_replace(lu->pr_file, text, strlen(text), 0600);
    free(text);
    return r;
}

static enum pro_res pro_register(struct pro_ctx *c, struct pr_reg *me)
{
    struct pr_state *pr = &c->lu->pr;
    bool ignore = c->sa == PRO_REGISTER_IGNORE;
    if (!me) {
        if (!ignore && c->key != 0)
            return PRO_CONFLICT;
        if (c->sa_key == 0)
            return PRO_GOOD;
        if (pr->nregs >= PR_MAX_REGS)
            return PRO_NO_RESOURCES;
        struct scsi_nexus *nx = c->cmd->nx;
        struct pr_reg *r = reg_new(nx->initiator_port, nx->target_port, nx->rel_target_port,
                                   c->sa_key);
        if (!r)
            return PRO_NOMEM;
        LIST_INSERT_HEAD(&pr->regs, r, link);
        pr->nregs++;
        pr->generation++;
        return PRO_GOOD;
    }
    if (!ignore && c->key != me->key)
        return PRO_CONFLICT;
    if (c->sa_key) {
        me->key = c->sa_key;
        pr->generation++;
        return PRO_GOOD;
    }
    /* Unregister. A released REGISTRANTS ONLY reservation tells the other registrants; an
     * ALL REGISTRANTS one stays while any registrant is left. */
    uint8_t type = pr->type;
    bool held = pr->holder == me;
    reg_remove(pr, me);
    if (held && (type == PR_TYPE_WE_RO || type == PR_TYPE_EA_RO))
        ua_regs(c->lu, NULL, c->ns, ASC_RESERVATIONS_RELEASED);
    pr->generation++;
    return PRO_GOOD;
}

static enum pro_res pro_reserve(struct pro_ctx *c, struct pr_reg *me)
{
    struct pr_state *pr = &c->lu->pr;
    if (c->scope != 0 || !type_valid(c->type))
        return PRO_BAD_CDB_TYPE;
    if (pr->type) {
        if (!reg_holds(pr, me) || pr->type != c->type)
            return PRO_CONFLICT;
        return PRO_GOOD;
    }
    pr->type = c->type;
    pr->holder = type_all_regs(c->type) ? NULL : me;
    return PRO_GOOD;
}

static enum pro_res pro_release(struct pro_ctx *c, struct pr_reg *me)
{
    struct pr_state *pr = &c->lu->pr;
    if (!pr->type || !reg_holds(pr, me))
        return PRO_GOOD;
    if (c->scope != 0 || c->type != pr->type)
        return PRO_BAD_RELEASE;
    uint8_t type = pr->type;
    pr->type = 0;
    pr->holder = NULL;
    if (type != PR_TYPE_WE && type != PR_TYPE_EA)
        ua_regs(c->lu, me, c->ns, ASC_RESERVATIONS_RELEASED);
    return PRO_GOOD;
}

static enum pro_res pro_clear(struct pro_ctx *c, struct pr_reg *me)
{
    struct pr_state *pr = &c->lu->pr;
    ua_regs(c->lu, me, c->ns, ASC_RESERVATIONS_PREEMPTED);
    struct pr_reg *r;
    while ((r = LIST_FIRST(&pr->regs))) {
        LIST_REMOVE(r, link);
        free(r);
    }
    pr->nregs = 0;
    pr->type = 0;
    pr->holder = NULL;
    pr->generation++;
    return PRO_GOOD;
}

/* Removes every registration with key @key but @keep; returns how many. */
static unsigned remove_key(struct pro_ctx *c, uint64_t key, struct pr_reg *keep)
{
    struct pr_state *pr = &c->lu->pr;
    unsigned n = 0;
    struct pr_reg *r, *next;
    for (r = LIST_FIRST(&pr->regs); r; r = next) {
        next = LIST_NEXT(r, link);
        if (r == keep || r->key != key)
            continue;
        ua_reg(c->lu, r, c->ns, ASC_REGISTRATIONS_PREEMPTED);
        LIST_REMOVE(r, link);
        pr->nregs--;
        if (pr->holder == r)
            pr->holder = NULL;
        free(r);
        n++;
    }
    return n;
}

static enum pro_res pro_preempt(struct pro_ctx *c, struct pr_reg *me)
{
    struct pr_state *pr = &c->lu->pr;
    if (!pr->type) {
        /* No reservation: only registrations go. */
        if (c->sa_key == 0) {
            c->at = 8;
            c->bit = -1;
            return PRO_BAD_PARAM;
        }
        if (!remove_key(c, c->sa_key, NULL))
            return PRO_CONFLICT;
        pr->generation++;
        return PRO_GOOD;
    }
    if (c->scope != 0 || !type_valid(c->type))
        return PRO_BAD_CDB_TYPE;
    if (type_all_regs(pr->type)) {
        if (c->sa_key != 0) {
            /* Registrations go; the reservation stays with those left (and me). */
            if (!remove_key(c, c->sa_key, me))
                return PRO_CONFLICT;
            pr->generation++;
            return PRO_GOOD;
        }
        /* Every other registration goes; I hold a new reservation. */
        struct pr_reg *r, *next;
        for (r = LIST_FIRST(&pr->regs); r; r = next) {
            next = LIST_NEXT(r, link);
            if (r == me)
                continue;
            ua_reg(c->lu, r, c->ns, ASC_REGISTRATIONS_PREEMPTED);
            LIST_REMOVE(r, link);
            pr->nregs--;
            free(r);
        }
        pr->type = c->type;
        pr->holder = type_all_regs(c->type) ? NULL : me;
        pr->generation++;
        return PRO_GOOD;
    }
    struct pr_reg *holder = pr->holder;
    if (c->sa_key == 0) {
        c->at = 8;
        c->bit = -1;
        return PRO_BAD_PARAM;
    }
    if (holder && c->sa_key == holder->key) {
        /* Preempt the holder: its registrations (not mine) go, I hold a reservation of the
         * type asked; a change of type tells the registrants left. */
        uint8_t old = pr->type;
        remove_key(c, c->sa_key, me);
        pr->type = c->type;
        pr->holder = type_all_regs(c->type) ? NULL : me;
        if (old != c->type)
            ua_regs(c->lu, me, c->ns, ASC_RESERVATIONS_RELEASED);
        pr->generation++;
        return PRO_GOOD;
    }
    if (!remove_key(c, c->sa_key, NULL))
        return PRO_CONFLICT;
    pr->generation++;
    return PRO_GOOD;
}

/* Finds the target port name that relative port @rtp names among the attached nexuses. */
static const char *target_port_of(struct scsi_lu *lu, uint16_t rtp)
{
    struct nexus_state *ns;
    LIST_FOREACH(ns, &lu->nexuses, link)
        if (ns->nx->rel_target_port == rtp)
            return ns->nx->target_port;
    return NULL;
}

static enum pro_res pro_register_move(struct pro_ctx *c, struct pr_reg *me)
{
    struct pr_state *pr = &c->lu->pr;
    const uint8_t *p = c->p;
    if (!pr->type || type_all_regs(pr->type) || pr->holder != me)
        return PRO_CONFLICT;
    if (c->sa_key == 0) {
        c->at = 8;
        c->bit = -1;
        return PRO_BAD_PARAM;
    }
    if ((p[17] & 0x01) && !c->lu->pr_file) { /* APTPL, with nowhere to keep the state */
        c->at = 17;
        c->bit = 0;
        return PRO_BAD_PARAM;
    }
    bool unreg = p[17] & 0x02;
    uint16_t rtp = get_be16(p + 18);
    uint32_t tl = get_be32(p + 20);
    const uint8_t *t = p + 24;
    /* An iSCSI TransportID with an initiator port (format 01b). */
    if (tl < 8 || (t[0] & 0x0F) != 0x05 || (t[0] >> 6) != 1) {
        c->at = 24;
        c->bit = -1;
        return PRO_BAD_PARAM;
    }
    uint32_t al = get_be16(t + 2);
    if (al + 4 > tl) {
        c->at = 26;
        c->bit = -1;
        return PRO_BAD_PARAM;
    }
    char name[sizeof(me->initiator)];
    size_t nl = strnlen((const char *)t + 4, al);
    if (nl == 0 || nl >= sizeof(name)) {
        c->at = 28;
        c->bit = -1;
        return PRO_BAD_PARAM;
    }
    memcpy(name, t + 4, nl);
    name[nl] = 0;
    const char *tport = target_port_of(c->lu, rtp);
    if (!tport) {
        c->at = 18;
        c->bit = -1;
        return PRO_BAD_PARAM;
    }
    if (strcmp(name, me->initiator) == 0 && strcmp(tport, me->target) == 0) {
        c->at = 24;
        c->bit = -1;
        return PRO_BAD_PARAM;
    }
    struct pr_reg *dst = NULL, *r;
    LIST_FOREACH(r, &pr->regs, link)
        if (strcmp(r->initiator, name) == 0 && strcmp(r->target, tport) == 0)
            dst = r;
    if (!dst) {
        if (pr->nregs >= PR_MAX_REGS)
            return PRO_NO_RESOURCES;
        dst = reg_new(name, tport, rtp, c->sa_key);
        if (!dst)
            return PRO_NOMEM;
        LIST_INSERT_HEAD(&pr->regs, dst, link);
        pr->nregs++;
    } else {
        dst->key = c->sa_key;
    }
    pr->holder = dst;
    if (unreg)
        reg_remove(pr, me);
    pr->generation++;
    return PRO_GOOD;
}

void pr_out(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    const uint8_t *cdb = cmd->cdb;
    struct pro_ctx c = {
        .cmd = cmd,
        .lu = lu,
        .ns = scsi_ns(cmd),
        .sa = cdb[1] & 0x1F,
        .scope = cdb[2] >> 4,
        .type = cdb[2] & 0x0F,
        .p = cmd->data_out,
        .len = get_be32(cdb + 5),
    };
    if (!cmd->nx) {
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
        goto out;
    }
    /* The parameter list: 24 bytes, or more for REGISTER AND MOVE's TransportID. */
    if (c.sa == PRO_REGISTER_MOVE) {
        if (c.len < 24 || c.len < 24 + (uint64_t)get_be32(c.p + 20)) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
            goto out;
        }
    } else {
        if (c.len != 24) {
            scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_PARAMETER_LIST_LENGTH_ERROR);
            goto out;
        }
        uint8_t f = c.p[20];
        if (f & 0x08) { /* SPEC_I_PT: not supported (SIP_C 0) */
            scsi_bad_param(cmd, 20, 3);
            goto out;
        }
        if (f & 0x04) { /* ALL_TG_PT: not supported (ATP_C 0) */
            scsi_bad_param(cmd, 20, 2);
            goto out;
        }
        if ((f & 0x01) && !lu->pr_file) { /* APTPL, with nowhere to keep it (PTPL_C 0) */
            scsi_bad_param(cmd, 20, 0);
            goto out;
        }
    }
    c.key = get_be64(c.p);
    c.sa_key = get_be64(c.p + 8);

    pthread_mutex_lock(&lu->lock);
    enum pro_res res = PRO_GOOD;
    bool was_aptpl = lu->pr.aptpl;
    struct pr_reg *me = reg_find(&lu->pr, cmd->nx);
    if (lu->pr.spc2_holder && lu->pr.spc2_holder != c.ns) {
        res = PRO_CONFLICT;
    } else if (c.sa == PRO_REGISTER || c.sa == PRO_REGISTER_IGNORE) {
        res = pro_register(&c, me);
    } else if (!me || me->key != c.key) {
        res = PRO_CONFLICT;
    } else {
        switch (c.sa) {
        case PRO_RESERVE:
            res = pro_reserve(&c, me);
            break;
        case PRO_RELEASE:
            res = pro_release(&c, me);
            break;
        case PRO_CLEAR:
            res = pro_clear(&c, me);
            break;
        case PRO_PREEMPT:
        case PRO_PREEMPT_ABORT:
            /* PREEMPT AND ABORT: the transport aborts the preempted nexuses' tasks; here
             * both preempt alike. */
            res = pro_preempt(&c, me);
            break;
        default:
            res = pro_register_move(&c, me);
            break;
        }
    }
    int saved = 0;
    if (res == PRO_GOOD) {
        /* The APTPL bit of the last REGISTER of any kind holds for the whole state. */
        if (c.sa == PRO_REGISTER || c.sa == PRO_REGISTER_IGNORE)
            lu->pr.aptpl = c.p[20] & 0x01;
        else if (c.sa == PRO_REGISTER_MOVE)
            lu->pr.aptpl = c.p[17] & 0x01;
        saved = pr_save(lu, was_aptpl);
    }
    pthread_mutex_unlock(&lu->lock);
    if (saved < 0) {
        log_err("iscsi: %s: %s: cannot keep the persistent reservations: %s", lu->name,
                lu->pr_file, strerror(-saved));
        scsi_sense_errno(cmd, saved == -ENOMEM ? -EIO : saved, true);
        goto out;
    }

    switch (res) {
    case PRO_GOOD:
        break;
    case PRO_CONFLICT:
        cmd->status = SCSI_RESERVATION_CONFLICT;
        break;
    case PRO_BAD_CDB_TYPE:
        scsi_bad_cdb(cmd, 2, c.scope ? 7 : 3);
        break;
    case PRO_BAD_PARAM:
        scsi_bad_param(cmd, c.at, c.bit);
        break;
    case PRO_BAD_RELEASE:
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_OF_PR);
        break;
    case PRO_NO_RESOURCES:
        scsi_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REG_RESOURCES);
        break;
    case PRO_NOMEM:
        scsi_sense_errno(cmd, -ENOMEM, false);
        break;
    }
out:
    scsi_complete(cmd);
}

/* ---------------------------------------------------------------------------------------- */
/* RESERVE / RELEASE (6 and 10)                                                               */
/* ---------------------------------------------------------------------------------------- */

void pr_reserve6(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    struct nexus_state *ns = scsi_ns(cmd);
    pthread_mutex_lock(&lu->lock);
    bool conflict = !ns || lu->pr.nregs || lu->pr.type ||
                    (lu->pr.spc2_holder && lu->pr.spc2_holder != ns);
    if (!conflict)
        lu->pr.spc2_holder = ns;
    pthread_mutex_unlock(&lu->lock);
    if (conflict)
        cmd->status = SCSI_RESERVATION_CONFLICT;
    scsi_complete(cmd);
}

void pr_release6(struct scsi_cmd *cmd)
{
    struct scsi_lu *lu = cmd->lu;
    struct nexus_state *ns = scsi_ns(cmd);
    pthread_mutex_lock(&lu->lock);
    bool conflict = lu->pr.nregs || lu->pr.type;
    if (!conflict && ns && lu->pr.spc2_holder == ns)
        lu->pr.spc2_holder = NULL;
    pthread_mutex_unlock(&lu->lock);
    if (conflict)
        cmd->status = SCSI_RESERVATION_CONFLICT;
    scsi_complete(cmd);
}
