/*
 * uuid.c - random UUIDs (RFC 4122 version 4) for pools, members and volumes, and their
 * usual text form.
 *
 * getrandom(2) without flags blocks only until the kernel's pool is first initialised,
 * early in boot, and then cannot fail except by a signal; /dev/urandom is kept as a
 * fallback for kernels or sandboxes without the system call.
 */
#include "common/common.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static bool fill_getrandom(uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool fill_urandom(uint8_t *p, size_t len)
{
    CLEANUP_CLOSE int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return false;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

void uuid_generate_random16(uint8_t out[16])
{
    if (!fill_getrandom(out, 16) && !fill_urandom(out, 16)) {
        /* No source of randomness at all: identities would collide, so stop here. */
        log_err("no random numbers: getrandom(2) and /dev/urandom both failed: %m");
        abort();
    }
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40); /* version 4: random */
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80); /* variant: RFC 4122 */
}

void uuid_format(const uint8_t u[16], char out[UUID_STR_LEN])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[u[i] >> 4];
        *p++ = hex[u[i] & 0xf];
    }
    *p = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int uuid_parse(const char *s, uint8_t out[16])
{
    uint8_t u[16];
    int i = 0;

    if (s == NULL)
        return -EINVAL;
    for (int pos = 0; pos < 36; pos++) {
        if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
            if (s[pos] != '-')
                return -EINVAL;
            continue;
        }
        int hi = hex_value(s[pos]);
        int lo = hi < 0 ? -1 : hex_value(s[pos + 1]);
        if (lo < 0)
            return -EINVAL;
        u[i++] = (uint8_t)(hi << 4 | lo);
        pos++;
    }
    if (s[36] != '\0')
        return -EINVAL;
    memcpy(out, u, 16);
    return 0;
}
