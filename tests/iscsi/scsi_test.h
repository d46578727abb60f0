/*
 * Helpers for the SCSI layer's tests: a real pool on scratch files with volumes and LUs over
 * them, nexuses, and a synchronous way to run one command through scsi_submit (done() may
 * come on a reactor thread, so the caller waits on a condition variable).
 */
#ifndef CISTERN_TESTS_SCSI_TEST_H
#define CISTERN_TESTS_SCSI_TEST_H

/* Must be the first include of a test (testutil.h needs _GNU_SOURCE for nftw). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/common.h"
#include "iscsi-target/scsi.h"
#include "tests/testutil.h"
#include "volumes/volumes.h"

#define T_MAX_LU 3
#define T_MAX_NX 4

struct t_lu {
    char name[32];
    struct vol *vol;
    struct scsi_lu *lu;
    uint64_t lun;
    struct scsi_lu_config cfg;
    struct scsi_nexus nx[T_MAX_NX];
};

struct t_env {
    struct scratch s;
    struct pool *pool;
    struct t_lu lus[T_MAX_LU];
    unsigned nlu;
    uint8_t pool_uuid[16];
    struct rng rng;
    bool logical_physical; /* LUs added from now on report a physical block of one logical
                              block (the daemon's default); else the grain */
};

/* What a command returned. */
struct t_res {
    uint8_t status;
    uint8_t key, asc, ascq;
    uint8_t sense[SCSI_SENSE_MAX];
    uint32_t sense_len;
    uint32_t xfer_len;
    uint32_t data_in_len;
};

struct t_wait {
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool done;
};

static inline void t_done(struct scsi_cmd *cmd)
{
    struct t_wait *w = cmd->priv;
    pthread_mutex_lock(&w->m);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
}

static inline void t_sense_parse(struct t_res *r)
{
    const uint8_t *s = r->sense;
    r->key = r->asc = r->ascq = 0;
    if (r->sense_len < 4)
        return;
    if ((s[0] & 0x7F) == 0x72 || (s[0] & 0x7F) == 0x73) {
        r->key = s[1] & 0x0F;
        r->asc = s[2];
        r->ascq = s[3];
    } else if (r->sense_len >= 14) {
        r->key = s[2] & 0x0F;
        r->asc = s[12];
        r->ascq = s[13];
    }
}

static inline size_t t_report_luns(void *ctx, uint64_t *luns, size_t max)
{
    struct t_env *e = ctx;
    for (size_t i = 0; i < e->nlu && i < max; i++)
        luns[i] = e->lus[i].lun;
    return e->nlu;
}

/*
 * Runs one command on LU @l (NULL: a LUN without an LU) through nexus @nx with Data-Out
 * @out/@out_len and a Data-In buffer @in of @in_max bytes (4096-aligned by the caller, or
 * NULL). Returns the status.
 */
static inline uint8_t t_cmd_lun(struct t_env *e, struct t_lu *l, unsigned nx, uint64_t lun,
                                const uint8_t *cdb, unsigned cdb_len, const void *out,
                                uint32_t out_len, void *in, uint32_t in_max, struct t_res *r)
{
    struct t_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    struct scsi_cmd *cmd = calloc(1, sizeof(*cmd));
    assert_non_null(cmd);
    cmd->lu = l ? l->lu : NULL;
    cmd->nx = l ? &l->nx[nx] : NULL;
    cmd->lun = l ? l->lun : lun;
    memcpy(cmd->cdb, cdb, cdb_len);
    cmd->cdb_len = cdb_len;
    cmd->attr = SCSI_ATTR_SIMPLE;
    cmd->data_out = (void *)out;
    cmd->data_out_len = out_len;
    cmd->data_in = in;
    cmd->data_in_max = in_max;
    cmd->report_luns = t_report_luns;
    cmd->report_luns_ctx = e;
    cmd->done = t_done;
    cmd->priv = &w;
    scsi_submit(cmd);
    pthread_mutex_lock(&w.m);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.m);
    pthread_mutex_unlock(&w.m);
    struct t_res rr = {0};
    struct t_res *res = r ? r : &rr;
    memset(res, 0, sizeof(*res));
    res->status = cmd->status;
    res->sense_len = cmd->sense_len;
    memcpy(res->sense, cmd->sense, MIN(cmd->sense_len, (uint32_t)SCSI_SENSE_MAX));
    res->xfer_len = cmd->xfer_len;
    res->data_in_len = cmd->data_in_len;
    assert_true(cmd->data_in_len <= in_max);
    if (cmd->status == SCSI_CHECK_CONDITION)
        assert_true(cmd->sense_len >= 8);
    else
        assert_int_equal(cmd->sense_len, 0);
    t_sense_parse(res);
    free(cmd);
    return res->status;
}

static inline uint8_t t_cmd(struct t_env *e, struct t_lu *l, unsigned nx, const uint8_t *cdb,
                            unsigned cdb_len, const void *out, uint32_t out_len, void *in,
                            uint32_t in_max, struct t_res *r)
{
    return t_cmd_lun(e, l, nx, l ? l->lun : 0, cdb, cdb_len, out, out_len, in, in_max, r);
}

/* Asserts CHECK CONDITION with @key/@asc/@ascq. */
#define assert_sense(r, k, a, q)                                                                   \
    do {                                                                                           \
        assert_int_equal((r)->status, SCSI_CHECK_CONDITION);                                       \
        assert_int_equal((r)->key, (k));                                                           \
        assert_int_equal((r)->asc, (a));                                                           \
        assert_int_equal((r)->ascq, (q));                                                          \
    } while (0)

/* Runs TEST UNIT READY until the nexus has no unit attention left. */
static inline void t_clear_ua(struct t_env *e, struct t_lu *l, unsigned nx)
{
    static const uint8_t tur[6] = {0};
    struct t_res r;
    for (int i = 0; i < 16; i++)
        if (t_cmd(e, l, nx, tur, 6, NULL, 0, NULL, 0, &r) == SCSI_GOOD)
            return;
    fail_msg("unit attentions do not clear");
}

static inline void t_nexus_names(struct scsi_nexus *nx, unsigned i)
{
    snprintf(nx->initiator_port, sizeof(nx->initiator_port),
             "iqn.2026-01.test:init%u,i,0x23d00000000%u", i, i);
    snprintf(nx->target_port, sizeof(nx->target_port), "iqn.2026-01.test:target,t,0x0001");
    nx->rel_target_port = 1;
}

/* Adds an LU over a new volume @name of @size bytes and @grain. */
static inline struct t_lu *t_add_lu(struct t_env *e, const char *name, uint64_t size,
                                    uint32_t grain, bool readonly)
{
    struct t_lu *l = &e->lus[e->nlu];
    snprintf(l->name, sizeof(l->name), "%s", name);
    assert_int_equal(vol_create(e->pool, name, size, grain, NULL), 0);
    struct vol_info vi;
    assert_int_equal(vol_get_info(e->pool, name, &vi), 0);
    assert_int_equal(vol_open(e->pool, name, readonly ? VOL_OPEN_RDONLY : 0, &l->vol), 0);
    struct scsi_lu_config cfg = {
        .vol = l->vol,
        .readonly = readonly,
        .grain_physical = !e->logical_physical,
        .lun = e->nlu,
        .vol_id = vi.id,
        .name = name,
    };
    memcpy(cfg.pool_uuid, e->pool_uuid, 16);
    cfg.name = l->name;
    l->cfg = cfg;
    assert_int_equal(scsi_lu_create(&cfg, &l->lu), 0);
    l->lun = e->nlu;
    for (unsigned i = 0; i < T_MAX_NX; i++) {
        memset(&l->nx[i], 0, sizeof(l->nx[i]));
        t_nexus_names(&l->nx[i], i);
        assert_int_equal(scsi_nexus_attach(l->lu, &l->nx[i]), 0);
    }
    e->nlu++;
    return l;
}

/* Every session logs out and the LU object goes, then they log in again: a new LU over the
 * same volume, the nexuses attached anew (each with a POWER ON unit attention). */
static inline void t_reopen_lu(struct t_lu *l)
{
    for (unsigned i = 0; i < T_MAX_NX; i++)
        scsi_nexus_detach(l->lu, &l->nx[i]);
    scsi_lu_destroy(l->lu);
    assert_int_equal(scsi_lu_create(&l->cfg, &l->lu), 0);
    for (unsigned i = 0; i < T_MAX_NX; i++)
        assert_int_equal(scsi_nexus_attach(l->lu, &l->nx[i]), 0);
}

static inline struct t_env *t_env_new(uint64_t member_bytes)
{
    struct t_env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    scratch_make(&e->s, 1, member_bytes);
    assert_int_equal(pool_create("tank", e->s.paths, e->s.n, NULL, false), 0);
    assert_int_equal(pool_open(e->s.paths, e->s.n, 0, &e->pool), 0);
    assert_int_equal(volumes_attach(e->pool), 0);
    uuid_generate_random16(e->pool_uuid);
    return e;
}

static inline void t_env_free(struct t_env *e)
{
    if (!e)
        return;
    for (unsigned i = 0; i < e->nlu; i++) {
        struct t_lu *l = &e->lus[i];
        for (unsigned j = 0; j < T_MAX_NX; j++)
            scsi_nexus_detach(l->lu, &l->nx[j]);
        scsi_lu_destroy(l->lu);
        assert_int_equal(vol_close(l->vol), 0);
    }
    assert_int_equal(pool_close(e->pool), 0);
    scratch_remove(&e->s);
    free(e);
}

/* CDB builders. */
static inline void t_put_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static inline uint64_t t_get_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* READ/WRITE-shaped CDB of @len bytes (10, 12, 16) for @opcode. */
static inline unsigned t_rw_cdb(uint8_t *cdb, uint8_t opcode, uint64_t lba, uint32_t n,
                                uint8_t flags)
{
    memset(cdb, 0, 16);
    cdb[0] = opcode;
    cdb[1] = flags;
    switch (opcode >> 5) {
    case 0:
        t_put_be(cdb + 1, lba & 0x1FFFFF, 3);
        cdb[4] = (uint8_t)n;
        return 6;
    case 1:
    case 2:
        t_put_be(cdb + 2, lba, 4);
        t_put_be(cdb + 7, n, 2);
        return 10;
    case 5:
        t_put_be(cdb + 2, lba, 4);
        t_put_be(cdb + 6, n, 4);
        return 12;
    default:
        t_put_be(cdb + 2, lba, 8);
        t_put_be(cdb + 10, n, 4);
        return 16;
    }
}

static inline void *t_alloc(size_t n)
{
    void *p = aligned_alloc(4096, ROUND_UP(MAX(n, (size_t)1), (size_t)4096));
    assert_non_null(p);
    memset(p, 0, ROUND_UP(MAX(n, (size_t)1), (size_t)4096));
    return p;
}

#endif
