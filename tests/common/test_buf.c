/*
 * test_buf.c - buf_is_zero() at every alignment and length, with a single non-zero byte
 * at every position; and now_ns().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/common.h"

static void test_zero_empty(void **state UNUSED)
{
    assert_true(buf_is_zero(NULL, 0));
    assert_true(buf_is_zero("x", 0));
}

/* Every offset within a word, every length to 300, a lone 1 at every position. */
static void test_zero_every_position(void **state UNUSED)
{
    uint8_t *buf = calloc(1, 512);

    assert_non_null(buf);
    for (size_t off = 0; off < 16; off++) {
        for (size_t len = 1; len <= 300; len++) {
            assert_true(buf_is_zero(buf + off, len));
            for (size_t pos = 0; pos < len; pos++) {
                buf[off + pos] = 1;
                if (buf_is_zero(buf + off, len))
                    fail_msg("off %zu len %zu: byte %zu not seen", off, len, pos);
                buf[off + pos] = 0;
            }
            /* Non-zero bytes just outside the range do not count. */
            if (off > 0)
                buf[off - 1] = 0xff;
            buf[off + len] = 0xff;
            assert_true(buf_is_zero(buf + off, len));
            if (off > 0)
                buf[off - 1] = 0;
            buf[off + len] = 0;
        }
    }
    free(buf);
}

static void test_zero_large(void **state UNUSED)
{
    const size_t len = 1 << 20;
    uint8_t *buf = calloc(1, len);

    assert_non_null(buf);
    assert_true(buf_is_zero(buf, len));
    buf[len - 1] = 0x80;
    assert_false(buf_is_zero(buf, len));
    buf[len - 1] = 0;
    buf[len / 2] = 1;
    assert_false(buf_is_zero(buf, len));
    free(buf);
}

static void test_now_ns(void **state UNUSED)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
    uint64_t a, b, c;

    a = now_ns();
    b = now_ns();
    assert_true(b >= a);
    nanosleep(&ts, NULL);
    c = now_ns();
    assert_true(c - b >= 20u * 1000 * 1000);
    assert_true(c - b < 10ull * 1000 * 1000 * 1000); /* and not absurdly more */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_empty),
        cmocka_unit_test(test_zero_every_position),
        cmocka_unit_test(test_zero_large),
        cmocka_unit_test(test_now_ns),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
