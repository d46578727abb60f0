/*
 * test_uuid.c - UUID generation, formatting and parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

static void test_format_known(void **state UNUSED)
{
    const uint8_t u[16] = {0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3,
                           0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0xff};
    const uint8_t zero[16] = {0};
    char s[UUID_STR_LEN];

    memset(s, 'x', sizeof s);
    uuid_format(u, s);
    assert_string_equal(s, "123e4567-e89b-12d3-a456-4266141740ff");
    uuid_format(zero, s);
    assert_string_equal(s, "00000000-0000-0000-0000-000000000000");
}

static void test_parse_known(void **state UNUSED)
{
    const uint8_t expected[16] = {0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3,
                                  0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0xff};
    uint8_t u[16];

    assert_int_equal(uuid_parse("123e4567-e89b-12d3-a456-4266141740ff", u), 0);
    assert_memory_equal(u, expected, 16);
    memset(u, 0, sizeof u);
    assert_int_equal(uuid_parse("123E4567-E89B-12D3-A456-4266141740FF", u), 0);
    assert_memory_equal(u, expected, 16);
}

static void test_parse_invalid(void **state UNUSED)
{
    static const char *const bad[] = {
        "",
        "123e4567",
        "123e4567-e89b-12d3-a456-4266141740f",    /* short */
        "123e4567-e89b-12d3-a456-4266141740ff0",  /* long */
        "123e4567-e89b-12d3-a456-4266141740fg",   /* not hex */
        "123e4567e89b-12d3-a456-4266141740ff0",   /* dash missing */
        "123e4567-e89b-12d3-a4564-266141740ff",   /* dash misplaced */
        "123e4567_e89b_12d3_a456_4266141740ff",   /* wrong separator */
        "123e4567e89b12d3a4564266141740ff",       /* no dashes */
        "{123e4567-e89b-12d3-a456-4266141740ff}", /* braces */
        " 123e4567-e89b-12d3-a456-4266141740ff",
        "123e4567-e89b-12d3-a456-4266141740f\n",
        "123e4567-e89b-12d3-a456-4266141740 f",
    };
    uint8_t u[16], orig[16];

    memset(u, 0x5a, sizeof u);
    memcpy(orig, u, sizeof u);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (uuid_parse(bad[i], u) != -EINVAL)
            fail_msg("uuid_parse(\"%s\") accepted", bad[i]);
        assert_memory_equal(u, orig, 16); /* untouched */
    }
    assert_int_equal(uuid_parse(NULL, u), -EINVAL);
}

static void test_random(void **state UNUSED)
{
    enum { N = 1000 };
    static uint8_t seen[N][16];
    char s[UUID_STR_LEN];
    uint8_t back[16];

    for (int i = 0; i < N; i++) {
        uuid_generate_random16(seen[i]);
        /* Version 4, RFC 4122 variant. */
        assert_int_equal(seen[i][6] >> 4, 4);
        assert_int_equal(seen[i][8] >> 6, 2);
        /* Round trip through the text form. */
        uuid_format(seen[i], s);
        assert_int_equal(strlen(s), 36);
        assert_int_equal(s[14], '4');
        assert_int_equal(uuid_parse(s, back), 0);
        assert_memory_equal(back, seen[i], 16);
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(seen[i], seen[j], 16);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_known),
        cmocka_unit_test(test_parse_known),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
