/*
 * test_crc32c.c - crc32c() against published vectors, and the SSE4.2 and table
 * implementations against each other on every alignment, length and split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

/* Vectors from RFC 3720 (iSCSI), appendix B.4, and the usual check value. */
static void check_vectors(crc_fn fn)
{
    uint8_t buf[32];

    assert_int_equal(fn(0, "123456789", 9), 0xE3069283u);

    memset(buf, 0, sizeof buf);
    assert_int_equal(fn(0, buf, sizeof buf), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(fn(0, buf, sizeof buf), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(fn(0, buf, sizeof buf), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(fn(0, buf, sizeof buf), 0x113FDB5Cu);

    /* Nothing to add leaves the value alone, whatever it is. */
    assert_int_equal(fn(0, NULL, 0), 0);
    assert_int_equal(fn(0x12345678u, buf, 0), 0x12345678u);
    assert_int_equal(fn(0, "a", 1), 0xC1D04330u);
}

static void test_dispatch_vectors(void **state UNUSED)
{
    check_vectors(crc32c);
}

static void test_sw_vectors(void **state UNUSED)
{
    check_vectors(crc32c_sw);
}

static void test_hw_vectors(void **state UNUSED)
{
    if (!crc32c_hw_available())
        skip();
    check_vectors(crc32c_hw);
}

static uint8_t *random_buffer(size_t len, unsigned seed)
{
    uint8_t *buf = malloc(len);

    assert_non_null(buf);
    srandom(seed);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)random();
    return buf;
}

/* Every offset mod 8 and every length up to 300, plus a 1 MiB buffer: both agree. */
static void test_hw_matches_sw(void **state UNUSED)
{
    const size_t big = 1 << 20;
    CLEANUP_FREE uint8_t *buf = random_buffer(big + 16, 1);

    if (!crc32c_hw_available())
        skip();
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len <= 300; len++)
            assert_int_equal(crc32c_hw(0, buf + off, len), crc32c_sw(0, buf + off, len));
    for (size_t off = 0; off < 16; off += 3)
        assert_int_equal(crc32c_hw(0xdeadbeef, buf + off, big),
                         crc32c_sw(0xdeadbeef, buf + off, big));
}

/* crc(a || b) == crc(crc(a), b), at every split point, for each implementation. */
static void check_chaining(crc_fn fn)
{
    const size_t len = 200;
    CLEANUP_FREE uint8_t *buf = random_buffer(len, 2);
    uint32_t whole = fn(0, buf, len);

    for (size_t split = 0; split <= len; split++)
        assert_int_equal(fn(fn(0, buf, split), buf + split, len - split), whole);
}

static void test_chaining(void **state UNUSED)
{
    check_chaining(crc32c);
    check_chaining(crc32c_sw);
    if (crc32c_hw_available())
        check_chaining(crc32c_hw);
}

/* A single flipped bit anywhere in a 4 KiB block changes the checksum. */
static void test_detects_bit_flips(void **state UNUSED)
{
    CLEANUP_FREE uint8_t *buf = random_buffer(4096, 3);
    uint32_t good = crc32c(0, buf, 4096);

    for (size_t bit = 0; bit < 4096 * 8; bit += 7) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_not_equal(crc32c(0, buf, 4096), good);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(crc32c(0, buf, 4096), good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_vectors), cmocka_unit_test(test_sw_vectors),
        cmocka_unit_test(test_hw_vectors),       cmocka_unit_test(test_hw_matches_sw),
        cmocka_unit_test(test_chaining),         cmocka_unit_test(test_detects_bit_flips),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
