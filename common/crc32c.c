/*
 * crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
 * metadata block.
 *
 * Two implementations compute the same function:
 *  - crc32c_hw(): the SSE4.2 crc32 instruction, 8 bytes at a time;
 *  - crc32c_sw(): slice-by-8 tables, for CPUs without SSE4.2 and as the reference the
 *    tests compare the instruction against.
 * crc32c() picks one the first time it runs (pthread_once), so it is safe to call from
 * any thread and from constructors.
 *
 * Both work on the raw register value; the public functions apply the standard initial
 * and final inversion, which is what makes calls chain.
 */
#include "common/common.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define CS_HAVE_SSE42_PATH 1
#endif

#define CRC32C_POLY 0x82F63B78u

/* table[k][b]: the CRC register after feeding byte b followed by k zero bytes. */
static uint32_t table[8][256];
static bool use_hw;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++)
            c = (c >> 1) ^ (CRC32C_POLY & -(c & 1));
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++)
            table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xff];

#ifdef CS_HAVE_SSE42_PATH
    /* May run before constructors have set up the CPU model: initialise it ourselves. */
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static inline uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t sw_update(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len >= 8) {
        uint32_t lo = crc ^ load_le32(p);
        uint32_t hi = load_le32(p + 4);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return crc;
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&init_once, crc32c_init);
    return ~sw_update(~crc, buf, len);
}

bool crc32c_hw_available(void)
{
    pthread_once(&init_once, crc32c_init);
    return use_hw;
}

#ifdef CS_HAVE_SSE42_PATH
__attribute__((target("sse4.2"))) static uint32_t hw_update(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c = crc;

    /* Align to 8 bytes so the word loads below never straddle a cache line. */
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    return ~hw_update(~crc, buf, len);
}
#else
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    /* No instruction on this architecture: crc32c_hw_available() is false. */
    return crc32c_sw(crc, buf, len);
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&init_once, crc32c_init);
#ifdef CS_HAVE_SSE42_PATH
    if (likely(use_hw))
        return ~hw_update(~crc, buf, len);
#endif
    return ~sw_update(~crc, buf, len);
}
