/*
 * What each sector of a volume may hold after a crash: its value at the last acknowledged
 * flush ("durable"), or any value written to it since. Values are kept as hashes. Shared by
 * the crash tests (power cut, SIGKILL, member I/O errors).
 *
 * The including test defines SECTOR (bytes), NVOL and NSEC (sectors per volume) first.
 */
#ifndef CISTERN_TEST_SECTOR_MODEL_H
#define CISTERN_TEST_SECTOR_MODEL_H

struct sector_model {
    uint64_t durable;
    uint64_t *later;
    unsigned nlater, caplater;
};

struct model {
    struct sector_model sec[NVOL][NSEC];
    uint64_t cur[NVOL][NSEC]; /* what reads return now, for checks while running */
};

static inline uint64_t hash_sector(const uint8_t *p)
{
    uint64_t h = 1469598103934665603ull;
    for (unsigned i = 0; i < SECTOR; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 1099511628211ull;
        h ^= h >> 29;
    }
    return h;
}

static inline uint64_t hash_zero_sector(void)
{
    static const uint8_t zero[SECTOR];
    return hash_sector(zero);
}

/* Every sector reads as zeros, durably. */
static inline void model_init(struct model *m)
{
    uint64_t hz = hash_zero_sector();
    memset(m, 0, sizeof(*m));
    for (int v = 0; v < NVOL; v++)
        for (uint64_t s = 0; s < NSEC; s++)
            m->sec[v][s].durable = m->cur[v][s] = hz;
}

/* Sets a sector's durable (and current) contents, for a volume that starts with data. */
static inline void model_set(struct model *m, int v, uint64_t s, uint64_t hash)
{
    m->sec[v][s].durable = m->cur[v][s] = hash;
}

/* @h may be read after a crash: it was written since the last flush. */
static inline void later_add(struct sector_model *sm, uint64_t h)
{
    if (sm->nlater == sm->caplater) {
        sm->caplater = sm->caplater ? sm->caplater * 2 : 4;
        sm->later = realloc(sm->later, sm->caplater * sizeof(uint64_t));
    }
    sm->later[sm->nlater++] = h;
}

/* A write of @data (NULL: zeros) over [off, off + len); @acked: it completed, so reads now
 * return it (a failed write may still have reached some sectors). */
static inline void model_write(struct model *m, int v, uint64_t off, const uint8_t *data,
                               uint64_t len, bool acked)
{
    uint64_t hz = hash_zero_sector();
    for (uint64_t s = off / SECTOR; s < (off + len) / SECTOR; s++) {
        uint64_t h = data ? hash_sector(data + (s * SECTOR - off)) : hz;
        later_add(&m->sec[v][s], h);
        if (acked)
            m->cur[v][s] = h;
    }
}

/* Sector @s of volume @v now reads @hash, from something other than a write (a rollback):
 * like an acknowledged write of it. */
static inline void model_set_later(struct model *m, int v, uint64_t s, uint64_t hash)
{
    later_add(&m->sec[v][s], hash);
    m->cur[v][s] = hash;
}

/* A flush was acknowledged: what reads return now is durable. */
static inline void model_flushed(struct model *m)
{
    for (int v = 0; v < NVOL; v++)
        for (uint64_t s = 0; s < NSEC; s++) {
            m->sec[v][s].durable = m->cur[v][s];
            m->sec[v][s].nlater = 0;
        }
}

/* May sector @s of volume @v hold @hash after a crash? */
static inline bool model_allows(const struct model *m, int v, uint64_t s, uint64_t hash)
{
    const struct sector_model *sm = &m->sec[v][s];
    bool ok = hash == sm->durable;
    for (unsigned i = 0; i < sm->nlater && !ok; i++)
        ok = hash == sm->later[i];
    return ok;
}

static inline void model_free(struct model *m)
{
    for (int v = 0; v < NVOL; v++)
        for (uint64_t s = 0; s < NSEC; s++) {
            free(m->sec[v][s].later);
            m->sec[v][s].later = NULL;
            m->sec[v][s].nlater = m->sec[v][s].caplater = 0;
        }
}

#endif
