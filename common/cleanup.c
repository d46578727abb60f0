/*
 * cleanup.c - the functions behind CLEANUP_FREE, CLEANUP_CLOSE and SCOPED_LOCK.
 *
 * GCC and Clang call them with a pointer to the variable leaving scope. They keep errno,
 * so an error path can return -errno after its cleanups have run.
 */
#include "common/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cleanup_free(void *ptr)
{
    int saved_errno = errno;

    free(*(void **)ptr);
    errno = saved_errno;
}

void cleanup_close(int *fd)
{
    int saved_errno = errno;

    if (*fd >= 0)
        close(*fd);
    errno = saved_errno;
}

/* A lock that cannot be taken or released means memory corruption or a bug: stop. */
static void mutex_fail(const char *what, int err)
{
    log_err("%s: %s", what, strerror(err));
    abort();
}

pthread_mutex_t *cleanup_mutex_lock(pthread_mutex_t *mutex)
{
    int err = pthread_mutex_lock(mutex);

    if (err != 0)
        mutex_fail("pthread_mutex_lock", err);
    return mutex;
}

void cleanup_mutex_unlock(pthread_mutex_t **mutex)
{
    int saved_errno = errno;
    int err = pthread_mutex_unlock(*mutex);

    if (err != 0)
        mutex_fail("pthread_mutex_unlock", err);
    errno = saved_errno;
}
