/*
 * endpoint.h - the far side of `vol import` and `vol export`: a file or block device, a pipe,
 * an NBD server, or a VM image served by qemu-nbd.
 *
 * An endpoint is used from the main thread only. Every function logs its failure once,
 * naming the endpoint ("disk.qcow2: ...", "standard input: ..."), and returns a negative
 * errno.
 */
#ifndef CISTERN_CLI_ENDPOINT_H
#define CISTERN_CLI_ENDPOINT_H

#include "cli/cli.h"

struct nbd_handle;

#define EP_EXTENTS 64

enum ep_kind {
    EP_FILE,   /* positioned I/O on a regular file or block device */
    EP_STREAM, /* sequential I/O on a pipe, terminal or character device */
    EP_NBD,    /* an NBD server, ours to connect to or a qemu-nbd we started */
};

struct endpoint {
    enum ep_kind kind;
    char *name; /* for messages */
    int fd;
    bool own_fd;
    bool regular;    /* a regular file: SEEK_DATA works, size can be set */
    bool fresh;      /* a destination that reads as zeros everywhere: holes need nothing */
    bool zero_cheap; /* zeroing costs no data transfer (NBD WRITE_ZEROES, fallocate) */
    bool size_known;
    uint64_t size; /* bytes, when size_known */
    uint64_t pos;  /* EP_STREAM: bytes read or written so far */

    struct nbd_handle *nbd;
    bool base_alloc; /* the server answers base:allocation block status */
    struct {
        uint64_t start, end;
        bool zero;
    } ext[EP_EXTENTS];
    unsigned next, n;
};

/* A source: a path (any format; FMT_AUTO detects), "-" for standard input, or an NBD URI. */
int ep_open_source(struct endpoint *ep, const char *loc, enum image_format fmt);

/*
 * A destination for @size bytes: a path (created or truncated to @size as a raw file, an
 * existing block device written in place, or a new image of @fmt), "-" for standard output,
 * or an NBD URI whose export must be at least @size.
 */
int ep_open_dest(struct endpoint *ep, const char *loc, enum image_format fmt, uint64_t size);

/*
 * From @off (< size), the length of the run that is all zeros (*zero) or may hold data.
 * Sources of known size only. Never fails: without a way to ask, everything is data.
 */
void ep_extent(struct endpoint *ep, uint64_t off, uint64_t *len, bool *zero);

/* Reads @len bytes at @off; *got < @len only at the end of a stream. */
int ep_read(struct endpoint *ep, void *buf, size_t len, uint64_t off, size_t *got);

/* Writes @len bytes at @off (streams: @off must be the current position). */
int ep_write(struct endpoint *ep, const void *buf, size_t len, uint64_t off);

/* Makes [@off, @off + @len) read as zeros: nothing on a fresh destination. */
int ep_zero(struct endpoint *ep, uint64_t off, uint64_t len);

/* Makes a destination durable (fsync, NBD flush) and releases everything. Returns the
 * first error. */
int ep_finish(struct endpoint *ep);

/* Releases without flushing (failure paths, sources). Accepts a zeroed endpoint. */
void ep_close(struct endpoint *ep);

/* Image formats (image.c). */

/* The format of an image from its first bytes (@len >= 512 of them). */
enum image_format image_detect(const unsigned char *head, size_t len);

/* Runs `qemu-img create -f FMT PATH SIZE`; logs and fails when it cannot. */
int image_create(enum image_format fmt, const char *path, uint64_t size);

#endif
