/*
 * endpoint.c - reading and writing the far side of an import or export.
 *
 * Holes: a raw file source reports them through SEEK_DATA / SEEK_HOLE, an NBD source through
 * "base:allocation" block status (only runs flagged ZERO count, since an unallocated run of
 * some servers is not promised to read as zeros). A destination that was just created or
 * truncated reads as zeros already ("fresh"), so its holes cost nothing; otherwise zeros are
 * written the cheapest way the destination has: NBD WRITE_ZEROES, fallocate on a block
 * device, and plain zero buffers on a pipe.
 *
 * VM images are served by qemu-nbd, started by libnbd through systemd socket activation, so
 * it lives exactly as long as our connection and needs no socket path of ours.
 */
#include "cli/endpoint.h"

#include <fcntl.h>
#include <libnbd.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NBD_ZERO_MAX (1ull << 30) /* bytes per NBD WRITE_ZEROES or block status request */
#define ZERO_BUF_SIZE (1u << 20)

static const unsigned char zero_buf[ZERO_BUF_SIZE];

static bool is_nbd_uri(const char *s)
{
    const char *p = strstr(s, "://");

    if (p == NULL || strncmp(s, "nbd", 3) != 0)
        return false;
    for (const char *q = s; q < p; q++)
        if (!((*q >= 'a' && *q <= 'z') || *q == '+'))
            return false;
    return true;
}

static int ep_fail(struct endpoint *ep, int err, const char *what)
{
    log_err("%s: %s: %s", ep->name, what, strerror(-err));
    return err;
}

static void ep_init(struct endpoint *ep, const char *name)
{
    memset(ep, 0, sizeof *ep);
    ep->fd = -1;
    ep->name = strdup(name);
    if (ep->name == NULL)
        abort();
}

void ep_close(struct endpoint *ep)
{
    if (ep->nbd != NULL) {
        nbd_close(ep->nbd); /* also reaps a qemu-nbd we started */
        ep->nbd = NULL;
    }
    if (ep->own_fd && ep->fd >= 0)
        close(ep->fd);
    ep->fd = -1;
    free(ep->name);
    ep->name = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* NBD                                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* Connects to @uri, or starts qemu-nbd with @argv (then @uri is NULL). */
static int nbd_open(struct endpoint *ep, const char *uri, char **argv, bool for_write)
{
    int64_t size;
    int r;

    ep->kind = EP_NBD;
    ep->nbd = nbd_create();
    if (ep->nbd == NULL) {
        log_err("%s: %s", ep->name, nbd_get_error());
        return -ENOMEM;
    }
    if (!for_write && nbd_add_meta_context(ep->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0)
        goto fail;
    if (uri != NULL)
        r = nbd_connect_uri(ep->nbd, uri);
    else
        r = nbd_connect_systemd_socket_activation(ep->nbd, argv);
    if (r < 0)
        goto fail;

    size = nbd_get_size(ep->nbd);
    if (size < 0)
        goto fail;
    ep->size = (uint64_t)size;
    ep->size_known = true;
    if (for_write) {
        if (nbd_is_read_only(ep->nbd) > 0) {
            log_err("%s: the NBD export is read-only", ep->name);
            return -EROFS;
        }
        ep->zero_cheap = nbd_can_zero(ep->nbd) > 0;
    } else {
        ep->base_alloc = nbd_can_meta_context(ep->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) > 0;
    }
    return 0;

fail:
    r = nbd_get_errno();
    log_err("%s: %s", ep->name, nbd_get_error());
    return r > 0 ? -r : -EIO;
}

/* qemu-nbd takes "proto:rest" as a protocol; a plain path with a colon gets "./". */
static char *qemu_path(const char *path)
{
    const char *colon = strchr(path, ':'), *slash = strchr(path, '/');
    char *p;

    if (colon != NULL && (slash == NULL || colon < slash)) {
        if (asprintf(&p, "./%s", path) < 0)
            return NULL;
        return p;
    }
    return strdup(path);
}

static int qemu_nbd_open(struct endpoint *ep, const char *path, enum image_format fmt,
                         bool for_write)
{
    CLEANUP_FREE char *qpath = qemu_path(path);
    char *argv[10];
    int i = 0;

    if (qpath == NULL)
        return -ENOMEM;
    argv[i++] = (char *)"qemu-nbd";
    argv[i++] = (char *)"-f";
    argv[i++] = (char *)image_format_name(fmt);
    if (for_write) {
        argv[i++] = (char *)"--discard=unmap";
        argv[i++] = (char *)"--cache=writeback";
    } else {
        argv[i++] = (char *)"--read-only";
    }
    argv[i++] = qpath;
    argv[i] = NULL;
    return nbd_open(ep, NULL, argv, for_write);
}

static int nbd_extents_cb(void *user_data, const char *metacontext, uint64_t offset,
                          uint32_t *entries, size_t nr_entries, int *error UNUSED)
{
    struct endpoint *ep = user_data;

    if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
        return 0;
    for (size_t i = 0; i + 1 < nr_entries && ep->n < EP_EXTENTS; i += 2) {
        bool zero = (entries[i + 1] & LIBNBD_STATE_ZERO) != 0;
        uint64_t len = entries[i];
        if (len == 0)
            break;
        if (ep->n > 0 && ep->ext[ep->n - 1].zero == zero && ep->ext[ep->n - 1].end == offset) {
            ep->ext[ep->n - 1].end += len;
        } else {
            ep->ext[ep->n].start = offset;
            ep->ext[ep->n].end = offset + len;
            ep->ext[ep->n].zero = zero;
            ep->n++;
        }
        offset += len;
    }
    return 0;
}

static void nbd_extent(struct endpoint *ep, uint64_t off, uint64_t *len, bool *zero)
{
    while (ep->next < ep->n && ep->ext[ep->next].end <= off)
        ep->next++;
    if (ep->next == ep->n || ep->ext[ep->next].start > off) {
        uint64_t count = MIN(ep->size - off, (uint64_t)NBD_ZERO_MAX);
        ep->n = ep->next = 0;
        if (nbd_block_status(ep->nbd, count, off,
                             (nbd_extent_callback){.callback = nbd_extents_cb, .user_data = ep},
                             0) < 0 ||
            ep->n == 0 || ep->ext[0].start > off) {
            /* No answer: read it as data, which is always correct. */
            log_debug("%s: block status at %llu: %s", ep->name, (unsigned long long)off,
                      nbd_get_error());
            ep->n = 0;
            *len = ep->size - off;
            *zero = false;
            return;
        }
    }
    *len = MIN(ep->ext[ep->next].end, ep->size) - off;
    *zero = ep->ext[ep->next].zero;
}

/* ---------------------------------------------------------------------------------------- */
/* Opening                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Size of an open file or block device. */
static int fd_size(struct endpoint *ep, const struct stat *st)
{
    off_t end;

    if (S_ISREG(st->st_mode)) {
        ep->size = (uint64_t)st->st_size;
    } else {
        end = lseek(ep->fd, 0, SEEK_END);
        if (end < 0)
            return ep_fail(ep, -errno, "size");
        ep->size = (uint64_t)end;
    }
    ep->size_known = true;
    return 0;
}

int ep_open_source(struct endpoint *ep, const char *loc, enum image_format fmt)
{
    struct stat st;
    int r;

    if (is_nbd_uri(loc)) {
        ep_init(ep, loc);
        return nbd_open(ep, loc, NULL, false);
    }

    if (strcmp(loc, "-") == 0) {
        ep_init(ep, "standard input");
        ep->fd = STDIN_FILENO;
        if (fstat(ep->fd, &st) < 0)
            return ep_fail(ep, -errno, "stat");
        /* A regular file redirected in whole can be read like a file, holes and all. */
        if (S_ISREG(st.st_mode) && lseek(ep->fd, 0, SEEK_CUR) == 0) {
            ep->kind = EP_FILE;
            ep->regular = true;
            return fd_size(ep, &st);
        }
        ep->kind = EP_STREAM;
        return 0;
    }

    ep_init(ep, loc);
    ep->fd = open(loc, O_RDONLY | O_CLOEXEC);
    if (ep->fd < 0)
        return ep_fail(ep, -errno, "open");
    ep->own_fd = true;
    if (fstat(ep->fd, &st) < 0)
        return ep_fail(ep, -errno, "stat");

    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        if (fmt != FMT_AUTO && fmt != FMT_RAW) {
            log_err("%s: a %s image must be a file", loc, image_format_name(fmt));
            return -EINVAL;
        }
        ep->kind = EP_STREAM;
        return 0;
    }

    if (fmt == FMT_AUTO) {
        unsigned char head[512];
        ssize_t n = pread(ep->fd, head, sizeof head, 0);
        if (n < 0)
            return ep_fail(ep, -errno, "read");
        fmt = image_detect(head, (size_t)n);
        if (fmt != FMT_RAW)
            log_debug("%s: %s image", loc, image_format_name(fmt));
    }
    if (fmt != FMT_RAW) {
        close(ep->fd);
        ep->fd = -1;
        ep->own_fd = false;
        return qemu_nbd_open(ep, loc, fmt, false);
    }

    ep->kind = EP_FILE;
    ep->regular = S_ISREG(st.st_mode);
    r = fd_size(ep, &st);
    return r;
}

int ep_open_dest(struct endpoint *ep, const char *loc, enum image_format fmt, uint64_t size)
{
    char have[SIZE_BUF], need[SIZE_BUF];
    struct stat st;
    int r;

    if (is_nbd_uri(loc)) {
        ep_init(ep, loc);
        r = nbd_open(ep, loc, NULL, true);
        if (r < 0)
            return r;
        goto check_size;
    }

    if (strcmp(loc, "-") == 0) {
        int fl;
        ep_init(ep, "standard output");
        ep->fd = STDOUT_FILENO;
        if (fstat(ep->fd, &st) < 0)
            return ep_fail(ep, -errno, "stat");
        fl = fcntl(ep->fd, F_GETFL);
        /* `> file` gives an empty regular file: fill it like a file, holes and all. */
        if (S_ISREG(st.st_mode) && st.st_size == 0 && fl >= 0 && !(fl & O_APPEND) &&
            lseek(ep->fd, 0, SEEK_CUR) == 0) {
            if (ftruncate(ep->fd, (off_t)size) < 0)
                return ep_fail(ep, -errno, "truncate");
            ep->kind = EP_FILE;
            ep->regular = ep->fresh = ep->zero_cheap = true;
            ep->size = size;
            ep->size_known = true;
            return 0;
        }
        ep->kind = EP_STREAM;
        return 0;
    }

    ep_init(ep, loc);
    if (fmt != FMT_AUTO && fmt != FMT_RAW) {
        r = image_create(fmt, loc, size);
        if (r < 0)
            return r;
        r = qemu_nbd_open(ep, loc, fmt, true);
        if (r < 0)
            return r;
        ep->fresh = true; /* a new image reads as zeros */
        goto check_size;
    }

    if (stat(loc, &st) == 0 && S_ISBLK(st.st_mode)) {
        ep->fd = open(loc, O_WRONLY | O_CLOEXEC);
        if (ep->fd < 0)
            return ep_fail(ep, -errno, "open");
        ep->own_fd = true;
        ep->kind = EP_FILE;
        ep->zero_cheap = true; /* fallocate, or zero buffers when the device refuses */
        r = fd_size(ep, &st);
        if (r < 0)
            return r;
        goto check_size;
    }
    if (stat(loc, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* A fifo or a character device: written in order, zeros included. */
        ep->fd = open(loc, O_WRONLY | O_CLOEXEC);
        if (ep->fd < 0)
            return ep_fail(ep, -errno, "open");
        ep->own_fd = true;
        ep->kind = EP_STREAM;
        return 0;
    }

    ep->fd = open(loc, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ep->fd < 0)
        return ep_fail(ep, -errno, "open");
    ep->own_fd = true;
    if (ftruncate(ep->fd, (off_t)size) < 0)
        return ep_fail(ep, -errno, "truncate");
    ep->kind = EP_FILE;
    ep->regular = ep->fresh = ep->zero_cheap = true;
    ep->size = size;
    ep->size_known = true;
    return 0;

check_size:
    if (ep->size < size) {
        log_err("%s: the destination is %s, the volume %s", ep->name,
                size_str(ep->size, false, have), size_str(size, false, need));
        return -ENOSPC;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* I/O                                                                                       */
/* ---------------------------------------------------------------------------------------- */

void ep_extent(struct endpoint *ep, uint64_t off, uint64_t *len, bool *zero)
{
    off_t data, hole;

    *zero = false;
    *len = ep->size - off;
    if (ep->kind == EP_NBD) {
        if (ep->base_alloc)
            nbd_extent(ep, off, len, zero);
        return;
    }
    if (ep->kind != EP_FILE || !ep->regular)
        return;

    data = lseek(ep->fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) { /* a hole up to the end */
            *zero = true;
            return;
        }
        return; /* no SEEK_DATA here: all data */
    }
    if ((uint64_t)data > off) {
        *zero = true;
        *len = MIN((uint64_t)data, ep->size) - off;
        return;
    }
    hole = lseek(ep->fd, (off_t)off, SEEK_HOLE);
    if (hole > (off_t)off)
        *len = MIN((uint64_t)hole, ep->size) - off;
}

int ep_read(struct endpoint *ep, void *buf, size_t len, uint64_t off, size_t *got)
{
    size_t done = 0;
    ssize_t n;

    *got = 0;
    if (ep->kind == EP_NBD) {
        if (nbd_pread(ep->nbd, buf, len, off, 0) < 0) {
            int e = nbd_get_errno();
            log_err("%s: read at %llu: %s", ep->name, (unsigned long long)off, nbd_get_error());
            return e > 0 ? -e : -EIO;
        }
        *got = len;
        return 0;
    }
    while (done < len) {
        if (ep->kind == EP_STREAM)
            n = read(ep->fd, (char *)buf + done, len - done);
        else
            n = pread(ep->fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ep_fail(ep, -errno, "read");
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    if (ep->kind == EP_STREAM) {
        ep->pos += done;
    } else if (done < len) {
        log_err("%s: the file shrank while being read (at %llu)", ep->name,
                (unsigned long long)(off + done));
        return -EIO;
    }
    *got = done;
    return 0;
}

int ep_write(struct endpoint *ep, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    ssize_t n;

    if (ep->kind == EP_NBD) {
        if (nbd_pwrite(ep->nbd, buf, len, off, 0) < 0) {
            int e = nbd_get_errno();
            log_err("%s: write at %llu: %s", ep->name, (unsigned long long)off, nbd_get_error());
            return e > 0 ? -e : -EIO;
        }
        return 0;
    }
    if (ep->kind == EP_STREAM && off != ep->pos) {
        log_err("%s: internal error: out of order write", ep->name);
        return -EINVAL;
    }
    while (done < len) {
        if (ep->kind == EP_STREAM)
            n = write(ep->fd, (const char *)buf + done, len - done);
        else
            n = pwrite(ep->fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ep_fail(ep, -errno, "write");
        }
        done += (size_t)n;
    }
    if (ep->kind == EP_STREAM)
        ep->pos += len;
    return 0;
}

static int write_zero_bufs(struct endpoint *ep, uint64_t off, uint64_t len)
{
    while (len > 0) {
        size_t n = (size_t)MIN(len, (uint64_t)ZERO_BUF_SIZE);
        int r = ep_write(ep, zero_buf, n, off);
        if (r < 0)
            return r;
        off += n;
        len -= n;
    }
    return 0;
}

int ep_zero(struct endpoint *ep, uint64_t off, uint64_t len)
{
    if (ep->fresh || len == 0)
        return 0;
    if (ep->kind == EP_NBD && ep->zero_cheap) {
        while (len > 0) {
            uint64_t n = MIN(len, (uint64_t)NBD_ZERO_MAX);
            if (nbd_zero(ep->nbd, n, off, 0) < 0) {
                int e = nbd_get_errno();
                log_err("%s: zero at %llu: %s", ep->name, (unsigned long long)off, nbd_get_error());
                return e > 0 ? -e : -EIO;
            }
            off += n;
            len -= n;
        }
        return 0;
    }
    if (ep->kind == EP_FILE && ep->zero_cheap &&
        fallocate(ep->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    return write_zero_bufs(ep, off, len);
}

int ep_finish(struct endpoint *ep)
{
    int r = 0;

    if (ep->kind == EP_NBD && ep->nbd != NULL) {
        if (nbd_flush(ep->nbd, 0) < 0 || nbd_shutdown(ep->nbd, 0) < 0) {
            int e = nbd_get_errno();
            log_err("%s: flush: %s", ep->name, nbd_get_error());
            r = e > 0 ? -e : -EIO;
        }
    } else if (ep->kind == EP_FILE && ep->fd >= 0) {
        if (fsync(ep->fd) < 0)
            r = ep_fail(ep, -errno, "sync");
    }
    if (ep->own_fd && ep->fd >= 0) {
        if (close(ep->fd) < 0 && r == 0)
            r = ep_fail(ep, -errno, "close");
        ep->fd = -1;
    }
    ep_close(ep);
    return r;
}
