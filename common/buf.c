/*
 * buf.c - zero detection, on the write path of every grain (an all-zero grain is unmapped
 * rather than stored), so it must run near memory speed.
 *
 * Bytes up to the first 8-byte boundary, then 64 bytes at a time ORed together (the
 * compiler turns this into vector code) with one test per 64 bytes, then the tail. Data
 * that is not zero usually differs in its first bytes, which the head and first block
 * catch at once.
 */
#include "common/common.h"

#include <string.h>

bool buf_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        if (*p != 0)
            return false;
        p++;
        len--;
    }

    while (len >= 64) {
        uint64_t w[8], acc = 0;
        memcpy(w, p, 64); /* aligned here: the copy compiles to plain loads */
        for (int i = 0; i < 8; i++)
            acc |= w[i];
        if (acc != 0)
            return false;
        p += 64;
        len -= 64;
    }

    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w != 0)
            return false;
        p += 8;
        len -= 8;
    }

    while (len > 0) {
        if (*p != 0)
            return false;
        p++;
        len--;
    }
    return true;
}
