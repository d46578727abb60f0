/*
 * file.c - small state files replaced whole: the daemon's settings, its pool registry, the
 * iSCSI target's persistent reservations. A reader sees the old file or the new one, never
 * a part, and after a crash the last replacement that returned 0 is what is there.
 */
#define _GNU_SOURCE
#include "common/common.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Syncs the directory holding @path, so that a rename or unlink in it is durable. */
static int sync_parent(const char *path)
{
    CLEANUP_FREE char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    CLEANUP_CLOSE int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return -errno;
    return 0;
}

int file_replace(const char *path, const void *data, size_t len, mode_t mode)
{
    CLEANUP_FREE char *tmp = NULL;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        return -ENOMEM;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    const char *p = data;
    while (r == 0 && len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno != EINTR)
            r = -errno;
        else if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    if (r == 0 && fchmod(fd, mode) < 0)
        r = -errno;
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    return sync_parent(path);
}

int file_remove(const char *path)
{
    if (unlink(path) < 0)
        return errno == ENOENT ? 0 : -errno;
    return sync_parent(path);
}
