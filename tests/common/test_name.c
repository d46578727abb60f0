/*
 * test_name.c - name_check() with every reason it gives, and obj_name_parse() on the good
 * forms and the bad ones users actually type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

static void check_ok(const char *s)
{
    const char *why = "untouched";
    int ret = name_check(s, &why);

    if (ret != 0)
        fail_msg("name_check(\"%s\") = %d (%s), expected 0", s, ret, why);
    assert_string_equal(why, "untouched");
}

static void check_bad(const char *s, const char *reason)
{
    const char *why = NULL;
    int ret = name_check(s, &why);

    if (ret != -EINVAL)
        fail_msg("name_check(\"%s\") = %d, expected -EINVAL", s ? s : "(null)", ret);
    assert_non_null(why);
    if (strcmp(why, reason) != 0)
        fail_msg("name_check(\"%s\"): \"%s\", expected \"%s\"", s ? s : "(null)", why, reason);
    /* why may be NULL. */
    assert_int_equal(name_check(s, NULL), -EINVAL);
}

static void test_name_check_ok(void **state UNUSED)
{
    char max[NAME_MAX_LEN + 1];

    check_ok("a");
    check_ok("tank");
    check_ok("vm-disk_01");
    check_ok("2024.01.01");
    check_ok("host:vol+1");
    check_ok("a.");
    check_ok("a-");
    check_ok("_x");
    check_ok("0");
    memset(max, 'x', NAME_MAX_LEN);
    max[NAME_MAX_LEN] = '\0';
    check_ok(max);
}

static void test_name_check_reasons(void **state UNUSED)
{
    char long_name[NAME_MAX_LEN + 2];
    const char *bad_char = "contains a character that is not a letter, digit or one of _ . : + -";

    check_bad("", "empty");
    check_bad(NULL, "empty");

    memset(long_name, 'x', NAME_MAX_LEN + 1);
    long_name[NAME_MAX_LEN + 1] = '\0';
    check_bad(long_name, "longer than 64 bytes");

    check_bad("a/b", "contains '/'");
    check_bad("/", "contains '/'");
    check_bad("a@b", "contains '@'");
    check_bad("@", "contains '@'");

    check_bad("a b", bad_char);
    check_bad("a\tb", bad_char);
    check_bad("caf\xc3\xa9", bad_char); /* UTF-8 */
    check_bad("a*", bad_char);
    check_bad("a,b", bad_char);
    check_bad("a=b", bad_char);
    check_bad("x\\y", bad_char);
    check_bad("a\"b", bad_char);
    check_bad("a%b", bad_char);

    check_bad(".", "starts with '.' or '-'");
    check_bad("..", "starts with '.' or '-'");
    check_bad(".hidden", "starts with '.' or '-'");
    check_bad("-rf", "starts with '.' or '-'");
    check_bad("-", "starts with '.' or '-'");
}

static void check_parse(const char *s, const char *pool, const char *vol, const char *snap)
{
    struct obj_name n;
    const char *why = NULL;
    int ret;

    memset(&n, 'x', sizeof n);
    ret = obj_name_parse(s, &n, &why);
    if (ret != 0)
        fail_msg("obj_name_parse(\"%s\") = %d (%s), expected 0", s, ret, why ? why : "");
    assert_string_equal(n.pool, pool);
    assert_string_equal(n.vol, vol);
    assert_string_equal(n.snap, snap);
}

static void check_parse_bad(const char *s, const char *reason)
{
    struct obj_name n;
    const char *why = NULL;
    int ret;

    memset(&n, 'x', sizeof n);
    ret = obj_name_parse(s, &n, &why);
    if (ret != -EINVAL)
        fail_msg("obj_name_parse(\"%s\") = %d, expected -EINVAL", s ? s : "(null)", ret);
    assert_non_null(why);
    if (strcmp(why, reason) != 0)
        fail_msg("obj_name_parse(\"%s\"): \"%s\", expected \"%s\"", s ? s : "(null)", why, reason);
    /* Nothing half-parsed is left behind. */
    assert_string_equal(n.pool, "");
    assert_string_equal(n.vol, "");
    assert_string_equal(n.snap, "");
    assert_int_equal(obj_name_parse(s, &n, NULL), -EINVAL);
}

static void test_obj_name_parse_ok(void **state UNUSED)
{
    char buf[3 * NAME_MAX_LEN + 3];

    check_parse("tank", "tank", "", "");
    check_parse("tank/vm1", "tank", "vm1", "");
    check_parse("tank/vm1@daily.2024-01-01", "tank", "vm1", "daily.2024-01-01");
    check_parse("p/v@s", "p", "v", "s");

    /* Each part may be as long as a name may be. */
    memset(buf, 'p', NAME_MAX_LEN);
    buf[NAME_MAX_LEN] = '/';
    memset(buf + NAME_MAX_LEN + 1, 'v', NAME_MAX_LEN);
    buf[2 * NAME_MAX_LEN + 1] = '@';
    memset(buf + 2 * NAME_MAX_LEN + 2, 's', NAME_MAX_LEN);
    buf[3 * NAME_MAX_LEN + 2] = '\0';
    {
        struct obj_name n;
        assert_int_equal(obj_name_parse(buf, &n, NULL), 0);
        assert_int_equal(strlen(n.pool), NAME_MAX_LEN);
        assert_int_equal(strlen(n.vol), NAME_MAX_LEN);
        assert_int_equal(strlen(n.snap), NAME_MAX_LEN);
        assert_true(n.pool[0] == 'p' && n.vol[0] == 'v' && n.snap[0] == 's');
    }
}

static void test_obj_name_parse_bad(void **state UNUSED)
{
    char buf[2 * NAME_MAX_LEN + 4];
    const char *more_slashes = "more than one '/': expected POOL/VOLUME or POOL/VOLUME@SNAPSHOT";
    const char *snap_no_vol = "a snapshot needs a volume: POOL/VOLUME@SNAPSHOT";

    check_parse_bad("", "empty");
    check_parse_bad(NULL, "empty");

    check_parse_bad("a//b", more_slashes);
    check_parse_bad("a/b/c", more_slashes);
    check_parse_bad("a/b@c/d", more_slashes);
    check_parse_bad("//", more_slashes);

    check_parse_bad("@x", snap_no_vol);
    check_parse_bad("a@b", snap_no_vol);
    check_parse_bad("a@", snap_no_vol);

    check_parse_bad("/b", "pool name: empty");
    check_parse_bad("/", "pool name: empty");
    check_parse_bad("a/", "volume name: empty");
    check_parse_bad("a/@s", "volume name: empty");
    check_parse_bad("a/b@", "snapshot name: empty");
    check_parse_bad("a/b@c@d", "snapshot name: contains '@'");
    check_parse_bad("a@x/b", "pool name: contains '@'");
    check_parse_bad(".a/b", "pool name: starts with '.' or '-'");
    check_parse_bad("a/-b", "volume name: starts with '.' or '-'");
    check_parse_bad("a/b@.s", "snapshot name: starts with '.' or '-'");
    check_parse_bad("a b/c", "pool name: contains a character that is not a letter, digit or "
                             "one of _ . : + -");
    check_parse_bad("a/b c", "volume name: contains a character that is not a letter, digit "
                             "or one of _ . : + -");
    check_parse_bad("a/b@c d", "snapshot name: contains a character that is not a letter, "
                               "digit or one of _ . : + -");

    /* A part one byte too long. */
    memset(buf, 'v', sizeof buf);
    buf[0] = 'p';
    buf[1] = '/';
    buf[2 + NAME_MAX_LEN + 1] = '\0';
    check_parse_bad(buf, "volume name: longer than 64 bytes");
    buf[2 + NAME_MAX_LEN] = '\0';
    check_parse(buf, "p", buf + 2, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_check_ok),
        cmocka_unit_test(test_name_check_reasons),
        cmocka_unit_test(test_obj_name_parse_ok),
        cmocka_unit_test(test_obj_name_parse_bad),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
