/*
 * Persistent reservations against a small model: random PERSISTENT RESERVE OUT (REGISTER,
 * REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT)
 * from several nexuses with keys drawn from a small set (so keys collide), then READ KEYS,
 * READ RESERVATION and READ FULL STATUS against the model, the unit attentions each nexus
 * got, and a READ and a WRITE from every nexus: conflict or not, per the SPC-4 tables.
 * Now and then every session goes and the LU object with them, and the nexuses come back to
 * a new one: the state must be the same. Also REGISTER AND MOVE, REPORT CAPABILITIES,
 * parameter list checks, SPC-2 RESERVE/RELEASE.
 *
 *   SCSI_SEED=n  replay      SCSI_PR_OPS=n  operations (default 1500)
 */
#include "tests/iscsi/scsi_test.h"

#include <glob.h>

#define NX T_MAX_NX

struct model {
    bool reg[NX];
    uint64_t key[NX];
    uint8_t type;
    int holder; /* nexus, or -1 (none, or every registrant for the AR types) */
    uint32_t gen;
    unsigned ua[NX]; /* bits: 1 REGISTRATIONS PREEMPTED, 2 RESERVATIONS RELEASED, 4 ... PREEMPTED */
};

#define UA_REG_PREEMPTED 1
#define UA_RES_RELEASED 2
#define UA_RES_PREEMPTED 4

enum expect { E_GOOD, E_CONFLICT, E_BAD_CDB, E_BAD_PARAM, E_BAD_RELEASE };

struct st {
    struct t_env *e;
    struct t_lu *l;
    struct rng rng;
    struct model m;
    uint8_t *in;
};

static int setup(void **state)
{
    struct st *s = calloc(1, sizeof(*s));
    s->e = t_env_new(64ull << 20);
    s->l = t_add_lu(s->e, "vol", 4u << 20, 4096, false);
    for (unsigned i = 0; i < NX; i++)
        t_clear_ua(s->e, s->l, i);
    s->in = t_alloc(65536);
    s->m.holder = -1;
    rng_seed_env(&s->rng, "SCSI_SEED");
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct st *s = *state;
    t_env_free(s->e);
    free(s->in);
    free(s);
    return 0;
}

static bool all_regs(uint8_t t) { return t == 7 || t == 8; }
static bool holds(const struct model *m, int i)
{
    return m->type && m->reg[i] && (all_regs(m->type) || m->holder == i);
}

static void ua_regs_but(struct model *m, int except, unsigned bit)
{
    for (int j = 0; j < NX; j++)
        if (j != except && m->reg[j])
            m->ua[j] |= bit;
}

static void unregister(struct model *m, int i)
{
    m->reg[i] = false;
    if (m->holder == i) {
        m->holder = -1;
        if (!all_regs(m->type))
            m->type = 0;
    }
    bool any = false;
    for (int j = 0; j < NX; j++)
        any |= m->reg[j];
    if (!any)
        m->type = 0;
}

/* Removes registrations with @key (but @keep); returns how many; UAs to them but @me. */
static unsigned remove_key(struct model *m, uint64_t key, int keep, int me)
{
    unsigned n = 0;
    for (int j = 0; j < NX; j++) {
        if (j == keep || !m->reg[j] || m->key[j] != key)
            continue;
        if (j != me)
            m->ua[j] |= UA_REG_PREEMPTED;
        m->reg[j] = false;
        if (m->holder == j)
            m->holder = -1;
        n++;
    }
    return n;
}

static bool type_ok(uint8_t t) { return t == 1 || t == 3 || t == 5 || t == 6 || t == 7 || t == 8; }

static enum expect model_apply(struct model *m, int i, uint8_t sa, uint8_t type, uint64_t key,
                               uint64_t sakey)
{
    if (sa == 0 || sa == 6) {
        if (!m->reg[i]) {
            if (sa == 0 && key != 0)
                return E_CONFLICT;
            if (sakey == 0)
                return E_GOOD;
            m->reg[i] = true;
            m->key[i] = sakey;
            m->gen++;
            return E_GOOD;
        }
        if (sa == 0 && key != m->key[i])
            return E_CONFLICT;
        if (sakey) {
            m->key[i] = sakey;
        } else {
            uint8_t t = m->type;
            bool held = m->holder == i;
            unregister(m, i);
            if (held && (t == 5 || t == 6))
                ua_regs_but(m, i, UA_RES_RELEASED);
        }
        m->gen++;
        return E_GOOD;
    }
    if (!m->reg[i] || m->key[i] != key)
        return E_CONFLICT;
    switch (sa) {
    case 1: /* RESERVE */
        if (!type_ok(type))
            return E_BAD_CDB;
        if (m->type)
            return holds(m, i) && m->type == type ? E_GOOD : E_CONFLICT;
        m->type = type;
        m->holder = all_regs(type) ? -1 : i;
        return E_GOOD;
    case 2: /* RELEASE */
        if (!m->type || !holds(m, i))
            return E_GOOD;
        if (type != m->type)
            return E_BAD_RELEASE;
        if (m->type != 1 && m->type != 3)
            ua_regs_but(m, i, UA_RES_RELEASED);
        m->type = 0;
        m->holder = -1;
        return E_GOOD;
    case 3: /* CLEAR */
        ua_regs_but(m, i, UA_RES_PREEMPTED);
        for (int j = 0; j < NX; j++)
            m->reg[j] = false;
        m->type = 0;
        m->holder = -1;
        m->gen++;
        return E_GOOD;
    default: /* PREEMPT, PREEMPT AND ABORT */
        if (!m->type) {
            if (sakey == 0)
                return E_BAD_PARAM;
            if (!remove_key(m, sakey, -1, i))
                return E_CONFLICT;
            m->gen++;
            return E_GOOD;
        }
        if (!type_ok(type))
            return E_BAD_CDB;
        if (all_regs(m->type)) {
            if (sakey) {
                if (!remove_key(m, sakey, i, i))
                    return E_CONFLICT;
                m->gen++;
                return E_GOOD;
            }
            for (int j = 0; j < NX; j++)
                if (j != i && m->reg[j]) {
                    m->reg[j] = false;
                    m->ua[j] |= UA_REG_PREEMPTED;
                }
            m->type = type;
            m->holder = all_regs(type) ? -1 : i;
            m->gen++;
            return E_GOOD;
        }
        if (sakey == 0)
            return E_BAD_PARAM;
        if (m->holder >= 0 && sakey == m->key[m->holder]) {
            uint8_t old = m->type;
            remove_key(m, sakey, i, i);
            m->type = type;
            m->holder = all_regs(type) ? -1 : i;
            if (old != type)
                ua_regs_but(m, i, UA_RES_RELEASED);
            m->gen++;
            return E_GOOD;
        }
        if (!remove_key(m, sakey, -1, i))
            return E_CONFLICT;
        m->gen++;
        return E_GOOD;
    }
}

static uint8_t prout(struct st *s, int i, uint8_t sa, uint8_t type, uint64_t key,
                     uint64_t sakey, uint8_t flags, struct t_res *r)
{
    uint8_t p[24] = {0};
    t_put_be(p, key, 8);
    t_put_be(p + 8, sakey, 8);
    p[20] = flags;
    uint8_t cdb[10] = {0x5F, sa, type, 0, 0, 0, 0, 0, 24, 0};
    return t_cmd(s->e, s->l, (unsigned)i, cdb, 10, p, 24, NULL, 0, r);
}

static void check_expect(enum expect ex, const struct t_res *r)
{
    switch (ex) {
    case E_GOOD:
        assert_int_equal(r->status, SCSI_GOOD);
        break;
    case E_CONFLICT:
        assert_int_equal(r->status, SCSI_RESERVATION_CONFLICT);
        break;
    case E_BAD_CDB:
        assert_sense(r, 0x5, 0x24, 0x00);
        break;
    case E_BAD_PARAM:
        assert_sense(r, 0x5, 0x26, 0x00);
        break;
    case E_BAD_RELEASE:
        assert_sense(r, 0x5, 0x26, 0x04);
        break;
    }
}

static void drain_ua(struct st *s, int i)
{
    unsigned got = 0;
    for (int k = 0; k < 16; k++) {
        uint8_t rs[6] = {0x03, 0, 0, 0, 18, 0};
        struct t_res r;
        assert_int_equal(t_cmd(s->e, s->l, (unsigned)i, rs, 6, NULL, 0, s->in, 4096, &r),
                         SCSI_GOOD);
        if ((s->in[2] & 0x0F) != 0x6)
            break;
        uint16_t asc = (uint16_t)(s->in[12] << 8 | s->in[13]);
        if (asc == 0x2A05)
            got |= UA_REG_PREEMPTED;
        else if (asc == 0x2A04)
            got |= UA_RES_RELEASED;
        else if (asc == 0x2A03)
            got |= UA_RES_PREEMPTED;
        else
            fail_msg("nexus %d: unexpected unit attention %04x", i, asc);
    }
    if (got != s->m.ua[i])
        fail_msg("nexus %d: unit attentions %#x, model %#x", i, got, s->m.ua[i]);
    s->m.ua[i] = 0;
}

static void check_state(struct st *s)
{
    struct model *m = &s->m;
    struct t_res r;
    /* Unit attentions first (PR IN would report them). */
    for (int i = 0; i < NX; i++)
        drain_ua(s, i);
    /* READ KEYS: the same multiset. */
    uint8_t rk[10] = {0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0x00, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rk, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 4), m->gen);
    unsigned nk = (unsigned)t_get_be(s->in + 4, 4) / 8, nm = 0;
    bool used[NX] = {false};
    for (int j = 0; j < NX; j++)
        nm += m->reg[j];
    assert_int_equal(nk, nm);
    for (unsigned k = 0; k < nk; k++) {
        uint64_t key = t_get_be(s->in + 8 + 8 * k, 8);
        bool found = false;
        for (int j = 0; j < NX && !found; j++)
            if (m->reg[j] && !used[j] && m->key[j] == key)
                found = used[j] = true;
        assert_true(found);
    }
    /* READ RESERVATION */
    rk[1] = 0x01;
    assert_int_equal(t_cmd(s->e, s->l, 0, rk, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    if (!m->type) {
        assert_int_equal(t_get_be(s->in + 4, 4), 0);
    } else {
        assert_int_equal(t_get_be(s->in + 4, 4), 16);
        assert_int_equal(s->in[21] & 0x0F, m->type);
        assert_int_equal(t_get_be(s->in + 8, 8), all_regs(m->type) ? 0 : m->key[m->holder]);
    }
    /* READ FULL STATUS: one descriptor per registration, holders marked. */
    rk[1] = 0x03;
    assert_int_equal(t_cmd(s->e, s->l, 0, rk, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    unsigned len = (unsigned)t_get_be(s->in + 4, 4), nd = 0;
    for (unsigned off = 8; off < 8 + len; nd++) {
        const uint8_t *d = s->in + off;
        const char *name = (const char *)d + 24 + 4;
        int who = -1;
        for (int j = 0; j < NX; j++)
            if (strcmp(name, s->l->nx[j].initiator_port) == 0)
                who = j;
        assert_true(who >= 0 && m->reg[who]);
        assert_int_equal(t_get_be(d, 8), m->key[who]);
        assert_int_equal(d[12] & 1, holds(m, who));
        off += 24 + (unsigned)t_get_be(d + 20, 4);
    }
    assert_int_equal(nd, nm);
    /* Conflicts. */
    for (int i = 0; i < NX; i++) {
        bool h = holds(m, i), reg = m->reg[i];
        bool rd_conf = false, wr_conf = false;
        if (m->type && !h) {
            switch (m->type) {
            case 1:
                wr_conf = true;
                break;
            case 3:
                rd_conf = wr_conf = true;
                break;
            case 5:
            case 7:
                wr_conf = !reg;
                break;
            default:
                rd_conf = wr_conf = !reg;
                break;
            }
        }
        uint8_t cdb[16];
        t_rw_cdb(cdb, 0x28, 0, 1, 0);
        t_cmd(s->e, s->l, (unsigned)i, cdb, 10, NULL, 0, s->in, 512, &r);
        assert_int_equal(r.status, rd_conf ? SCSI_RESERVATION_CONFLICT : SCSI_GOOD);
        t_rw_cdb(cdb, 0x2A, 0, 1, 0);
        t_cmd(s->e, s->l, (unsigned)i, cdb, 10, s->in + 4096, 512, NULL, 0, &r);
        assert_int_equal(r.status, wr_conf ? SCSI_RESERVATION_CONFLICT : SCSI_GOOD);
        /* Always allowed. */
        uint8_t tur[6] = {0};
        assert_int_equal(t_cmd(s->e, s->l, (unsigned)i, tur, 6, NULL, 0, NULL, 0, &r),
                         SCSI_GOOD);
    }
}

static void test_pr_model(void **state)
{
    struct st *s = *state;
    static const uint8_t types[] = {1, 3, 5, 6, 7, 8, 1, 3, 5, 6, 7, 8, 0, 2};
    uint64_t ops = env_u64("SCSI_PR_OPS", 1500);
#ifdef SANITIZED
    ops /= 3;
#endif
    for (uint64_t n = 0; n < ops; n++) {
        struct model *m = &s->m;
        int i = (int)rng_below(&s->rng, NX);
        static const uint8_t sas[] = {0, 0, 6, 1, 1, 1, 2, 2, 3, 4, 4, 5};
        uint8_t sa = sas[rng_below(&s->rng, sizeof sas)];
        uint8_t type = types[rng_below(&s->rng, sizeof types)];
        if (sa == 2 && m->type && rng_below(&s->rng, 4))
            type = m->type;
        uint64_t key = m->reg[i] && rng_below(&s->rng, 8) ? m->key[i] : rng_below(&s->rng, 4);
        uint64_t sakey = rng_below(&s->rng, 5);
        if ((sa == 4 || sa == 5) && rng_below(&s->rng, 2)) {
            int j = (int)rng_below(&s->rng, NX);
            if (m->reg[j])
                sakey = m->key[j];
        }
        enum expect ex = model_apply(m, i, sa, type, key, sakey);
        struct t_res r;
        prout(s, i, sa, type, key, sakey, 0, &r);
        if (getenv("SCSI_TRACE"))
            fprintf(stderr, "%llu: nexus %d sa %u type %u key %llu sakey %llu -> %u\n",
                    (unsigned long long)n, i, sa, type, (unsigned long long)key,
                    (unsigned long long)sakey, r.status);
        check_expect(ex, &r);
        check_state(s);
        if (rng_below(&s->rng, 50) == 0) {
            /* A LUN reset: persistent reservations survive it. */
            scsi_lu_reset(s->l->lu, &s->l->nx[0]);
            for (int j = 1; j < NX; j++) {
                uint8_t tur[6] = {0};
                t_cmd(s->e, s->l, (unsigned)j, tur, 6, NULL, 0, NULL, 0, &r);
                assert_sense(&r, 0x6, 0x29, 0x03);
            }
            check_state(s);
        }
        if (rng_below(&s->rng, 100) == 0) {
            /* Every session goes and comes back: registrations and the reservation stay. */
            t_reopen_lu(s->l);
            for (unsigned j = 0; j < NX; j++) {
                t_clear_ua(s->e, s->l, j);
                m->ua[j] = 0;
            }
            check_state(s);
        }
    }
}

static void clear_all(struct st *s)
{
    struct t_res r;
    prout(s, 0, 6, 0, 0, 77, 0, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    prout(s, 0, 3, 0, 77, 0, 0, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    memset(&s->m, 0, sizeof s->m);
    s->m.holder = -1;
    for (int i = 0; i < NX; i++)
        t_clear_ua(s->e, s->l, (unsigned)i);
    uint8_t rk[10] = {0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0x00, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rk, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    s->m.gen = (uint32_t)t_get_be(s->in, 4);
}

static void test_pr_params(void **state)
{
    struct st *s = *state;
    struct t_res r;
    clear_all(s);
    /* Parameter list length other than 24. */
    uint8_t p[32] = {0};
    t_put_be(p + 8, 5, 8);
    uint8_t cdb[10] = {0x5F, 0x06, 0, 0, 0, 0, 0, 0, 20, 0};
    t_cmd(s->e, s->l, 0, cdb, 10, p, 20, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    cdb[8] = 32;
    t_cmd(s->e, s->l, 0, cdb, 10, p, 32, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x1A, 0x00);
    /* Data-Out shorter than the list length. */
    cdb[8] = 24;
    t_cmd(s->e, s->l, 0, cdb, 10, p, 10, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x0E, 0x03);
    /* SPEC_I_PT, ALL_TG_PT, APTPL: refused, field pointers at byte 20. */
    static const uint8_t bits[] = {0x08, 0x04, 0x01};
    for (size_t k = 0; k < sizeof bits; k++) {
        prout(s, 0, 6, 0, 0, 5, bits[k], &r);
        assert_sense(&r, 0x5, 0x26, 0x00);
        assert_int_equal(t_get_be(r.sense + 16, 2), 20);
    }
    /* REPORT CAPABILITIES says so. */
    uint8_t rc[10] = {0x5E, 0x02, 0, 0, 0, 0, 0, 0, 8, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rc, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in, 2), 8);
    assert_int_equal(s->in[2] & 0x0D, 0); /* SIP_C, ATP_C, PTPL_C */
    assert_int_equal(s->in[4], 0xEA);
    assert_int_equal(s->in[5], 0x01);
    assert_true(((s->in[3] >> 4) & 7) <= 5);
    /* Unknown service actions of both. */
    uint8_t bad[10] = {0x5E, 0x04, 0, 0, 0, 0, 0, 0, 8, 0};
    t_cmd(s->e, s->l, 0, bad, 10, NULL, 0, s->in, 4096, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    uint8_t bad2[10] = {0x5F, 0x08, 0, 0, 0, 0, 0, 0, 24, 0};
    t_cmd(s->e, s->l, 0, bad2, 10, p, 24, NULL, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    /* RESERVE with a scope other than LU. */
    prout(s, 0, 6, 0, 0, 5, 0, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    prout(s, 0, 1, 0x11, 5, 0, 0, &r);
    assert_sense(&r, 0x5, 0x24, 0x00);
    /* READ KEYS cut by the allocation length: the length still counts every key. */
    prout(s, 1, 6, 0, 0, 6, 0, &r);
    uint8_t rk[10] = {0x5E, 0x00, 0, 0, 0, 0, 0, 0, 12, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rk, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(r.data_in_len, 12);
    assert_int_equal(t_get_be(s->in + 4, 4), 16);
    clear_all(s);
}

static void test_register_and_move(void **state)
{
    struct st *s = *state;
    struct t_res r;
    clear_all(s);
    prout(s, 0, 6, 0, 0, 10, 0, &r);
    prout(s, 0, 1, 1, 10, 0, 0, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    /* Move to nexus 2 with key 20, unregistering nexus 0. */
    uint8_t p[24 + 64] = {0};
    t_put_be(p, 10, 8);
    t_put_be(p + 8, 20, 8);
    p[17] = 0x02;
    t_put_be(p + 18, 1, 2);
    const char *name = s->l->nx[2].initiator_port;
    size_t nl = strlen(name) + 1, tl = ROUND_UP(4 + nl, (size_t)4);
    t_put_be(p + 20, tl, 4);
    p[24] = 0x45;
    t_put_be(p + 26, tl - 4, 2);
    memcpy(p + 28, name, nl - 1);
    uint8_t cdb[10] = {0x5F, 0x07, 0x01, 0, 0, 0, 0, 0, 0, 0};
    t_put_be(cdb + 5, 24 + tl, 4);
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 10, p, (uint32_t)(24 + tl), NULL, 0, &r),
                     SCSI_GOOD);
    uint8_t rr[10] = {0x5E, 0x01, 0, 0, 0, 0, 0, 0, 64, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rr, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_get_be(s->in + 8, 8), 20);
    /* Nexus 2 holds it now: it may write, nexus 0 (unregistered) may not. */
    uint8_t w[16];
    t_rw_cdb(w, 0x2A, 0, 1, 0);
    assert_int_equal(t_cmd(s->e, s->l, 2, w, 10, s->in + 4096, 512, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 0, w, 10, s->in + 4096, 512, NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    /* Nexus 0 is no longer registered: its move is a conflict. */
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 10, p, (uint32_t)(24 + tl), NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    /* A lying TransportID length: PARAMETER LIST LENGTH ERROR. */
    t_put_be(p, 20, 8);
    t_put_be(p + 20, 400, 4);
    assert_int_equal(t_cmd(s->e, s->l, 2, cdb, 10, p, (uint32_t)(24 + tl), NULL, 0, &r),
                     SCSI_CHECK_CONDITION);
    assert_int_equal(r.asc, 0x1A);
    clear_all(s);
}

/* REPORT CAPABILITIES: PTPL_C and PTPL_A. */
static void ptpl_bits(struct st *s, bool *c, bool *a)
{
    struct t_res r;
    uint8_t rc[10] = {0x5E, 0x02, 0, 0, 0, 0, 0, 0, 8, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rc, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    *c = s->in[2] & 0x01;
    *a = s->in[3] & 0x01;
}

/* A restart of the daemon: the target stops (the kept state goes), the LU comes back. */
static void restart(struct st *s)
{
    for (unsigned i = 0; i < NX; i++)
        scsi_nexus_detach(s->l->lu, &s->l->nx[i]);
    scsi_lu_destroy(s->l->lu);
    scsi_pr_forget();
    assert_int_equal(scsi_lu_create(&s->l->cfg, &s->l->lu), 0);
    for (unsigned i = 0; i < NX; i++) {
        assert_int_equal(scsi_nexus_attach(s->l->lu, &s->l->nx[i]), 0);
        t_clear_ua(s->e, s->l, i);
    }
}

static void test_aptpl(void **state)
{
    struct st *s = *state;
    struct t_res r;
    bool c, a;
    clear_all(s);
    /* Without a state directory: PTPL_C 0, and after a restart nothing is left. */
    ptpl_bits(s, &c, &a);
    assert_false(c);
    prout(s, 0, 6, 0, 0, 0x11, 0, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    restart(s);
    s->m = (struct model){.holder = -1};
    check_state(s);

    /* With one: APTPL=1 keeps registrations, the reservation and PRgeneration. */
    s->l->cfg.pr_dir = s->e->s.dir;
    restart(s);
    ptpl_bits(s, &c, &a);
    assert_true(c);
    assert_false(a);
    prout(s, 0, 6, 0, 0, 0x11, 0x01, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    prout(s, 1, 6, 0, 0, 0x22, 0x01, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    prout(s, 0, 1, 5, 0x11, 0, 0, &r); /* WRITE EXCLUSIVE - REGISTRANTS ONLY */
    assert_int_equal(r.status, SCSI_GOOD);
    ptpl_bits(s, &c, &a);
    assert_true(a);
    s->m = (struct model){.holder = 0, .type = 5, .reg = {true, true}, .key = {0x11, 0x22}};
    uint8_t rk[10] = {0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0x00, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, rk, 10, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    s->m.gen = (uint32_t)t_get_be(s->in, 4);
    restart(s);
    check_state(s); /* keys, holder, type, generation, and READ/WRITE conflicts */
    ptpl_bits(s, &c, &a);
    assert_true(a);

    /* A REGISTER with APTPL=0 ends it: the file goes, a restart forgets everything. */
    prout(s, 1, 6, 0, 0, 0x23, 0, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    ptpl_bits(s, &c, &a);
    assert_false(a);
    restart(s);
    s->m = (struct model){.holder = -1};
    check_state(s);

    /* A damaged file is refused whole: the LU starts with nothing. */
    prout(s, 0, 6, 0, 0, 0x11, 0x01, &r);
    assert_int_equal(r.status, SCSI_GOOD);
    char pattern[300], file[600];
    snprintf(pattern, sizeof pattern, "%s/*.pr.json", s->e->s.dir);
    glob_t g;
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    assert_int_equal(g.gl_pathc, 1);
    snprintf(file, sizeof file, "%s", g.gl_pathv[0]);
    globfree(&g);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("{\"format\": \"cistern-pr\", \"version\": 1, \"registrations\": [{\"key\": 7}]}", f);
    fclose(f);
    restart(s);
    check_state(s);
    ptpl_bits(s, &c, &a);
    assert_false(a);
    s->l->cfg.pr_dir = NULL;
    assert_int_equal(unlink(file), 0);
    restart(s);
}

static void test_spc2_reserve(void **state)
{
    struct st *s = *state;
    struct t_res r;
    clear_all(s);
    uint8_t res6[6] = {0x16}, rel6[6] = {0x17}, tur[6] = {0};
    uint8_t inq[6] = {0x12, 0, 0, 0, 36, 0};
    assert_int_equal(t_cmd(s->e, s->l, 0, res6, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    /* Another nexus: conflicts on everything but INQUIRY, REPORT LUNS, REQUEST SENSE and
     * RELEASE (which does nothing). */
    assert_int_equal(t_cmd(s->e, s->l, 1, tur, 6, NULL, 0, NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    assert_int_equal(t_cmd(s->e, s->l, 1, res6, 6, NULL, 0, NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    assert_int_equal(t_cmd(s->e, s->l, 1, inq, 6, NULL, 0, s->in, 4096, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 1, rel6, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 1, tur, 6, NULL, 0, NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    uint8_t p[24] = {0};
    uint8_t cdb[10] = {0x5F, 0x06, 0, 0, 0, 0, 0, 0, 24, 0};
    t_put_be(p + 8, 9, 8);
    assert_int_equal(t_cmd(s->e, s->l, 1, cdb, 10, p, 24, NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    /* The holder may do anything, RESERVE again included. */
    assert_int_equal(t_cmd(s->e, s->l, 0, res6, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 0, tur, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    /* A LUN reset releases it. */
    scsi_lu_reset(s->l->lu, NULL);
    for (int i = 0; i < NX; i++)
        t_clear_ua(s->e, s->l, (unsigned)i);
    assert_int_equal(t_cmd(s->e, s->l, 1, tur, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    /* RESERVE(10), released by RELEASE(10); a nexus that goes away releases too. */
    uint8_t res10[10] = {0x56}, rel10[10] = {0x57};
    assert_int_equal(t_cmd(s->e, s->l, 1, res10, 10, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 2, tur, 6, NULL, 0, NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    assert_int_equal(t_cmd(s->e, s->l, 1, rel10, 10, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 2, tur, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 3, res6, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    scsi_nexus_detach(s->l->lu, &s->l->nx[3]);
    assert_int_equal(t_cmd(s->e, s->l, 2, tur, 6, NULL, 0, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(scsi_nexus_attach(s->l->lu, &s->l->nx[3]), 0);
    t_clear_ua(s->e, s->l, 3);
    /* With a persistent registration, RESERVE conflicts. */
    assert_int_equal(t_cmd(s->e, s->l, 0, cdb, 10, p, 24, NULL, 0, &r), SCSI_GOOD);
    assert_int_equal(t_cmd(s->e, s->l, 1, res6, 6, NULL, 0, NULL, 0, &r),
                     SCSI_RESERVATION_CONFLICT);
    clear_all(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pr_model),
        cmocka_unit_test(test_pr_params),
        cmocka_unit_test(test_register_and_move),
        cmocka_unit_test(test_spc2_reserve),
        cmocka_unit_test(test_aptpl),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
