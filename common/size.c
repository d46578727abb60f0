/*
 * size.c - sizes as users type and read them: "20G" in, "1.5G" out.
 *
 * Multiples are binary (K = 1024) as in zfs, rbd and qemu-img. parse_size() takes integers
 * only, so a size typed is always an exact number of bytes; format_size() rounds, so its
 * output is for people, not for feeding back. Both use integer arithmetic only: no locale
 * can turn "1.5G" into "1,5G".
 */
#include "common/common.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The power of 1024 that the letter c stands for (K = 1 ... P = 5), or 0. */
static int unit_power(char c)
{
    switch (c) {
    case 'K':
    case 'k':
        return 1;
    case 'M':
    case 'm':
        return 2;
    case 'G':
    case 'g':
        return 3;
    case 'T':
    case 't':
        return 4;
    case 'P':
    case 'p':
        return 5;
    default:
        return 0;
    }
}

int parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    bool overflow = false;
    const char *p = s;
    int power;

    if (s == NULL || *s < '0' || *s > '9')
        return -EINVAL;

    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }

    /* Suffix: [KMGTP] then optional "B" or "iB"; or a lone "B". */
    power = unit_power(*p);
    if (power > 0) {
        p++;
        if ((p[0] == 'i' || p[0] == 'I') && (p[1] == 'B' || p[1] == 'b'))
            p += 2;
        else if (p[0] == 'B' || p[0] == 'b')
            p++;
    } else if (*p == 'B' || *p == 'b') {
        p++;
    }
    if (*p != '\0')
        return -EINVAL;

    /* Checked after the syntax, so that a malformed string is -EINVAL however long. */
    if (overflow || v > UINT64_MAX >> (10 * power))
        return -ERANGE;
    *out = v << (10 * power);
    return 0;
}

/* bytes / 1024^u with d decimals, as an integer (the value times 10^d), rounded half up. */
static uint64_t scaled_value(uint64_t bytes, int u, int d)
{
    static const unsigned pow10[] = {1, 10, 100};
    unsigned __int128 x = (unsigned __int128)bytes * pow10[d];
    int shift = 10 * u;

    return (uint64_t)((x + ((unsigned __int128)1 << (shift - 1))) >> shift);
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char units[] = "BKMGTPE";
    uint64_t scaled;
    int u = 0, d;

    if (len == 0)
        return;
    if (bytes < 1024) {
        snprintf(buf, len, "%" PRIu64 "B", bytes);
        return;
    }

    while (u < 6 && bytes >> (10 * (u + 1)) != 0)
        u++;

    /*
     * Pick the decimals for 3 significant digits from the whole part; rounding can carry
     * into a fourth digit (9.996 -> 10.00), then drop a decimal, or, past 1023, move to
     * the next unit (1023.9K -> 1M).
     */
    for (;;) {
        uint64_t whole = bytes >> (10 * u);
        d = whole < 10 ? 2 : whole < 100 ? 1 : 0;
        scaled = scaled_value(bytes, u, d);
        while (d > 0 && scaled >= 1000) {
            d--;
            scaled = scaled_value(bytes, u, d);
        }
        if (d == 0 && scaled >= 1024 && u < 6) {
            u++;
            continue;
        }
        break;
    }

    /* Print the fraction without its trailing zeros. */
    if (d == 2 && scaled % 10 == 0) {
        scaled /= 10;
        d = 1;
    }
    if (d == 1 && scaled % 10 == 0) {
        scaled /= 10;
        d = 0;
    }
    if (d == 2)
        snprintf(buf, len, "%" PRIu64 ".%02u%c", scaled / 100, (unsigned)(scaled % 100), units[u]);
    else if (d == 1)
        snprintf(buf, len, "%" PRIu64 ".%u%c", scaled / 10, (unsigned)(scaled % 10), units[u]);
    else
        snprintf(buf, len, "%" PRIu64 "%c", scaled, units[u]);
}
