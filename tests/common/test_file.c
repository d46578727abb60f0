/*
 * test_file.c - file_replace() and file_remove(): a new file and a replaced one hold exactly
 * the bytes given, with the mode given; no temporary file is left behind, on success or on
 * failure; a failed replacement leaves the old file as it was; removing is idempotent.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "cistern-test-file-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

static unsigned entries(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void assert_content(const char *path, const char *want, mode_t mode)
{
    char buf[256] = {0};
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_int_equal(n, strlen(want));
    assert_string_equal(buf, want);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, mode);
}

static void test_replace_and_remove(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/state.json", dir);
    assert_int_equal(file_replace(path, "first version, longer\n", 22, 0600), 0);
    assert_content(path, "first version, longer\n", 0600);
    assert_int_equal(file_replace(path, "second\n", 7, 0644), 0);
    assert_content(path, "second\n", 0644);
    assert_int_equal(file_replace(path, "", 0, 0600), 0);
    assert_content(path, "", 0600);
    assert_int_equal(entries(), 1); /* no temporary file left */
    assert_int_equal(file_remove(path), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(file_remove(path), 0); /* already gone */
    assert_int_equal(entries(), 0);
}

static void test_failure_keeps_the_old_file(void **state)
{
    (void)state;
    char path[128], bad[160];
    snprintf(path, sizeof path, "%s/kept", dir);
    assert_int_equal(file_replace(path, "old\n", 4, 0600), 0);
    /* Into a directory that does not exist: refused, nothing made. */
    snprintf(bad, sizeof bad, "%s/missing/file", dir);
    assert_int_equal(file_replace(bad, "x", 1, 0600), -ENOENT);
    /* Over a directory: the rename fails, the temporary file is removed. */
    snprintf(bad, sizeof bad, "%s/sub", dir);
    assert_int_equal(mkdir(bad, 0700), 0);
    assert_true(file_replace(bad, "x", 1, 0600) < 0);
    assert_int_equal(rmdir(bad), 0);
    assert_content(path, "old\n", 0600);
    assert_int_equal(entries(), 1);
    assert_int_equal(file_remove(path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replace_and_remove),
        cmocka_unit_test(test_failure_keeps_the_old_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
