/*
 * test_size.c - parse_size() and format_size(): every suffix form, malformed input,
 * overflow at each multiple, and rounding at the unit boundaries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)
#define PiB (1ull << 50)

static void check_parse(const char *s, uint64_t expected)
{
    uint64_t v = 0xabababab;
    int ret = parse_size(s, &v);

    if (ret != 0)
        fail_msg("parse_size(\"%s\") = %d, expected 0", s, ret);
    if (v != expected)
        fail_msg("parse_size(\"%s\") gave %llu, expected %llu", s, (unsigned long long)v,
                 (unsigned long long)expected);
}

static void check_parse_fails(const char *s, int expected)
{
    uint64_t v = 42;
    int ret = parse_size(s, &v);

    if (ret != expected)
        fail_msg("parse_size(\"%s\") = %d, expected %d", s ? s : "(null)", ret, expected);
    assert_int_equal(v, 42); /* untouched */
}

static void test_parse_plain(void **state UNUSED)
{
    check_parse("0", 0);
    check_parse("4096", 4096);
    check_parse("007", 7);
    check_parse("100B", 100);
    check_parse("100b", 100);
    check_parse("18446744073709551615", UINT64_MAX);
}

static void test_parse_suffixes(void **state UNUSED)
{
    check_parse("64K", 64 * KiB);
    check_parse("64k", 64 * KiB);
    check_parse("64KB", 64 * KiB);
    check_parse("64kb", 64 * KiB);
    check_parse("64KiB", 64 * KiB);
    check_parse("64kib", 64 * KiB);
    check_parse("20G", 20 * GiB);
    check_parse("1GiB", GiB);
    check_parse("3M", 3 * MiB);
    check_parse("2T", 2 * TiB);
    check_parse("5P", 5 * PiB);
    check_parse("5pIb", 5 * PiB);
    check_parse("0G", 0);
}

static void test_parse_invalid(void **state UNUSED)
{
    static const char *const bad[] = {
        "",    "G",    "-1",   "+1",    " 1",
        "1 ",  "1.5G", "1,5G", "1e3",   "0x10",
        "1KK", "1iB",  "1Ki",  "1KiBB", "1BB",
        "1E",  "1Q",   "K1",   "1 G",   "12345678901234567890123X",
        "1 ",  "1\tK", "1K ",  "1@",
    };

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        check_parse_fails(bad[i], -EINVAL);
    check_parse_fails(NULL, -EINVAL);
}

static void test_parse_overflow(void **state UNUSED)
{
    char buf[64];

    check_parse_fails("18446744073709551616", -ERANGE);
    check_parse_fails("99999999999999999999999999999", -ERANGE);
    check_parse_fails("99999999999999999999999999999G", -ERANGE);
    check_parse_fails("16384P", -ERANGE);
    check_parse("16383P", 16383 * PiB);
    check_parse_fails("17179869184G", -ERANGE); /* 2^34 G = 2^64 */
    check_parse("17179869183G", 17179869183ull * GiB);
    check_parse_fails("18014398509481984K", -ERANGE); /* 2^54 K = 2^64 */

    /* The largest value for each multiple parses; one more overflows. */
    for (int power = 1; power <= 5; power++) {
        uint64_t max = UINT64_MAX >> (10 * power);
        snprintf(buf, sizeof buf, "%llu%c", (unsigned long long)max, "KMGTP"[power - 1]);
        check_parse(buf, max << (10 * power));
        snprintf(buf, sizeof buf, "%llu%c", (unsigned long long)max + 1, "KMGTP"[power - 1]);
        check_parse_fails(buf, -ERANGE);
    }
}

static void check_format(uint64_t bytes, const char *expected)
{
    char buf[32];

    memset(buf, 'x', sizeof buf);
    format_size(bytes, buf, sizeof buf);
    if (strcmp(buf, expected) != 0)
        fail_msg("format_size(%llu) = \"%s\", expected \"%s\"", (unsigned long long)bytes, buf,
                 expected);
}

static void test_format(void **state UNUSED)
{
    check_format(0, "0B");
    check_format(100, "100B");
    check_format(1023, "1023B");
    check_format(KiB, "1K");
    check_format(KiB + 1, "1K");
    check_format(1536, "1.5K");
    check_format(1280, "1.25K");
    check_format(512 * KiB, "512K");
    check_format(10 * KiB + 512, "10.5K");
    check_format(20 * GiB, "20G");
    check_format(GiB + GiB / 2, "1.5G");
    check_format(123456789, "118M"); /* 117.7M */
    check_format(4 * TiB, "4T");
    check_format(3 * PiB, "3P");
    check_format(UINT64_MAX, "16E");
    check_format(1ull << 60, "1E");
}

static void test_format_rounding(void **state UNUSED)
{
    /* 9.996K rounds to 10.00: shown with one decimal fewer. */
    check_format(10236, "10K");
    /* 99.96K rounds to 100.0. */
    check_format(102359, "100K");
    /* 1023.9K rounds to 1024K: shown as the next unit. */
    check_format(MiB - 1, "1M");
    check_format(GiB - 1, "1G");
    check_format(1000 * KiB, "1000K");
    check_format(MiB + MiB / 100, "1.01M");
    check_format(MiB + MiB / 1000, "1M"); /* 1.001M */
    check_format(2 * MiB - MiB / 2000, "2M");
}

static void test_format_small_buffer(void **state UNUSED)
{
    char buf[4] = "zzz";

    format_size(20 * GiB, buf, 0); /* len 0: nothing written */
    assert_string_equal(buf, "zzz");
    format_size(1536, buf, sizeof buf);
    assert_string_equal(buf, "1.5"); /* cut, but terminated */
    format_size(1536, buf, 1);
    assert_string_equal(buf, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_plain),
        cmocka_unit_test(test_parse_suffixes),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_overflow),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_rounding),
        cmocka_unit_test(test_format_small_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
