/*
 * test_macros.c - the macros of common.h: values at the edges of their types, and single
 * evaluation where it is promised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/common.h"

/* <sys/param.h> again: it must not bring back its own MIN and MAX. */
#include <sys/param.h>
/* <syslog.h> again: it must not turn the log levels into syslog priorities. */
#include <syslog.h>

static void test_array_size(void **state UNUSED)
{
    int a[7];
    char s[] = "hello";
    struct {
        int x[3];
    } st;
    static const char *const names[] = {"a", "b", "c", "d"};

    assert_int_equal(ARRAY_SIZE(a), 7);
    assert_int_equal(ARRAY_SIZE(s), 6);
    assert_int_equal(ARRAY_SIZE(st.x), 3);
    assert_int_equal(ARRAY_SIZE(names), 4);
    /* Usable in a constant expression. */
    _Static_assert(ARRAY_SIZE(a) == 7, "ARRAY_SIZE is a constant");
    (void)a;
    (void)st;
}

static void test_min_max(void **state UNUSED)
{
    int i = 0;

    assert_int_equal(MIN(3, 5), 3);
    assert_int_equal(MAX(3, 5), 5);
    assert_int_equal(MIN(-1, 1), -1);
    assert_int_equal(MAX(UINT64_MAX, 0ull), UINT64_MAX);
    /* Each argument evaluated once. */
    assert_int_equal(MIN(i++, 10), 0);
    assert_int_equal(i, 1);
    assert_int_equal(MAX(i++, -10), 1);
    assert_int_equal(i, 2);
    /* Nested uses do not shadow each other. */
    assert_int_equal(MIN(MAX(1, 2), MIN(3, 4)), 2);
}

static void test_rounding(void **state UNUSED)
{
    uint64_t big = 0xffffffff00001001ull;
    uint32_t four_k = 4096;

    assert_int_equal(DIV_ROUND_UP(0, 4), 0);
    assert_int_equal(DIV_ROUND_UP(1, 4), 1);
    assert_int_equal(DIV_ROUND_UP(4, 4), 1);
    assert_int_equal(DIV_ROUND_UP(5, 4), 2);
    /* No overflow near the top of the type. */
    assert_int_equal(DIV_ROUND_UP(UINT64_MAX, 2), (UINT64_MAX >> 1) + 1);
    assert_int_equal(DIV_ROUND_UP(UINT32_MAX, 4096u), 1u << 20);

    assert_int_equal(ROUND_UP(0, 4096), 0);
    assert_int_equal(ROUND_UP(1, 4096), 4096);
    assert_int_equal(ROUND_UP(4096, 4096), 4096);
    assert_int_equal(ROUND_UP(4097, 4096), 8192);
    assert_int_equal(ROUND_DOWN(4095, 4096), 0);
    assert_int_equal(ROUND_DOWN(8191, 4096), 4096);
    /* A 64-bit value with a 32-bit alignment keeps its high bits. */
    assert_int_equal(ROUND_DOWN(big, four_k), 0xffffffff00001000ull);
    assert_int_equal(ROUND_UP(big, four_k), 0xffffffff00002000ull);

    assert_false(IS_POW2(0));
    assert_true(IS_POW2(1));
    assert_true(IS_POW2(2));
    assert_false(IS_POW2(3));
    assert_true(IS_POW2(4096));
    assert_false(IS_POW2(4097));
    assert_true(IS_POW2(1ull << 63));
    assert_false(IS_POW2(UINT64_MAX));
}

static void test_likely(void **state UNUSED)
{
    int x = 5;

    assert_true(likely(x == 5));
    assert_false(unlikely(x != 5));
    assert_int_equal(likely(x), 1); /* normalised to 0 or 1 */
    assert_int_equal(unlikely(0), 0);
}

struct outer {
    int a;
    char name[10];
    uint64_t inner;
};

static void test_container_of(void **state UNUSED)
{
    struct outer o;
    uint64_t *p = &o.inner;
    const char *n = o.name;

    assert_ptr_equal(container_of(p, struct outer, inner), &o);
    assert_ptr_equal(container_of(n, struct outer, name[0]), &o);
    assert_ptr_equal(container_of(&o.a, struct outer, a), &o);
}

static int unused_helper(int used, int ignored UNUSED)
{
    return used;
}

static void test_unused_and_syslog_names(void **state UNUSED)
{
    assert_int_equal(unused_helper(3, 4), 3);
    /* The levels keep their own values after <syslog.h>. */
    assert_int_equal(LOG_ERR, 0);
    assert_int_equal(LOG_WARN, 1);
    assert_int_equal(LOG_INFO, 2);
    assert_int_equal(LOG_DEBUG, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_size),   cmocka_unit_test(test_min_max),
        cmocka_unit_test(test_rounding),     cmocka_unit_test(test_likely),
        cmocka_unit_test(test_container_of), cmocka_unit_test(test_unused_and_syslog_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
