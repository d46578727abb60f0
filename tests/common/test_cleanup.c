/*
 * test_cleanup.c - CLEANUP_FREE, CLEANUP_CLOSE and SCOPED_LOCK release on every way out
 * of a scope, keep errno, and let ownership be handed on.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* The leak checker of the sanitizer build catches a missed free here. */
static void test_cleanup_free(void **state UNUSED)
{
    for (int i = 0; i < 3; i++) {
        CLEANUP_FREE char *p = malloc(100);
        CLEANUP_FREE char *null = NULL; /* free(NULL) is fine */
        assert_non_null(p);
        assert_null(null);
        memset(p, i, 100);
        if (i == 1)
            continue; /* leaving the scope early frees too */
    }
}

static char *hand_on(void)
{
    CLEANUP_FREE char *p = strdup("kept");
    char *ret;

    assert_non_null(p);
    ret = p;
    p = NULL; /* ownership passes to the caller */
    return ret;
}

static void test_cleanup_free_hand_on(void **state UNUSED)
{
    char *p = hand_on();

    assert_string_equal(p, "kept");
    free(p);
}

static int open_and_fail(int *seen_fd)
{
    CLEANUP_CLOSE int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    assert_true(fd >= 0);
    *seen_fd = fd;
    errno = EROFS;
    return -errno;
}

static void test_cleanup_close(void **state UNUSED)
{
    int fd = -1;

    assert_int_equal(open_and_fail(&fd), -EROFS);
    assert_false(fd_is_open(fd));

    {
        CLEANUP_CLOSE int none = -1; /* nothing to close */
        (void)none;
    }

    /* errno survives the cleanup. */
    errno = 0;
    {
        CLEANUP_CLOSE int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(f >= 0);
        errno = ENOSPC;
    }
    assert_int_equal(errno, ENOSPC);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void bump(int times)
{
    for (int i = 0; i < times; i++) {
        SCOPED_LOCK(&lock);
        long v = counter;
        counter = v + 1;
    }
}

static void *bump_thread(void *arg UNUSED)
{
    bump(50000);
    return NULL;
}

static int locked_return(void)
{
    SCOPED_LOCK(&lock);
    assert_int_equal(pthread_mutex_trylock(&lock), EBUSY);
    return 7;
}

static void test_scoped_lock(void **state UNUSED)
{
    pthread_t t[4];

    /* Released on return. */
    assert_int_equal(locked_return(), 7);
    assert_int_equal(pthread_mutex_trylock(&lock), 0);
    pthread_mutex_unlock(&lock);

    /* Two locks in one scope are fine (distinct hidden names). */
    {
        static pthread_mutex_t other = PTHREAD_MUTEX_INITIALIZER;
        SCOPED_LOCK(&lock);
        SCOPED_LOCK(&other);
        assert_int_equal(pthread_mutex_trylock(&other), EBUSY);
    }
    assert_int_equal(pthread_mutex_trylock(&lock), 0);
    pthread_mutex_unlock(&lock);

    /* Mutual exclusion under contention. */
    counter = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, bump_thread, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(counter, 4 * 50000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cleanup_free),
        cmocka_unit_test(test_cleanup_free_hand_on),
        cmocka_unit_test(test_cleanup_close),
        cmocka_unit_test(test_scoped_lock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
