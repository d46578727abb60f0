/*
 * transfer.c - `vol import` and `vol export`: copying between a volume and an endpoint.
 *
 * Both directions move the data in chunks of at most CHUNK bytes (1 MiB, a multiple of every
 * grain size, and chunks start on CHUNK boundaries once the first is past, so the grains of
 * a chunk are whole) and keep up to WINDOW volume requests in flight through vol_submit(),
 * so the volume's reactors work in parallel while the main thread reads or writes the far
 * side. The far side itself is driven synchronously from the main thread.
 *
 * Import makes the volume read exactly as the source followed by zeros: runs the source
 * reports as holes, and whole grains of read data that are all zeros, become
 * VOL_OP_WRITE_ZEROES (which unmaps, so the volume stays thin); past the source's end the
 * volume is zeroed the same way. Into a volume created for the import (which reads as zeros
 * already) those zero requests are left out. A source larger than the volume is refused
 * unless --resize.
 *
 * Export walks the volume's extent map (vol_block_status): holes and zero runs are never
 * read, and become holes of a fresh destination file or image, WRITE_ZEROES on NBD, or zero
 * bytes on a pipe. Data is read in chunks in order and written out in the same order.
 *
 * Window: slot k of the ring carries chunk k; before a slot is reused its requests must
 * have completed (slot_wait). Completions run on reactor threads and touch only the slot's
 * counters, under the window's mutex.
 *
 * A volume of a pool the daemon holds is reached through the daemon's NBD server instead:
 * the volume is created or resized by operations sent to the daemon (the same ones as
 * here), and the data goes between two endpoints (copy_endpoints), the volume's being
 * nbd://.../POOL/VOL or nbd+unix:// as the daemon listens. The rules are the same: holes
 * stay holes, zero grains become WRITE_ZEROES, the volume reads as zeros past the source.
 */
#include "cli/endpoint.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (1u << 20)
/* The most one WRITE_ZEROES request covers: a request holds its grains while it runs, so a
 * huge one would stall every other request on the volume. */
#define ZERO_CHUNK (256ull << 20)
#define WINDOW 16
#define REQS_PER_SLOT (CHUNK / VOL_MIN_GRAIN + 2)
#define EXPORT_EXTENTS 64

struct window;

struct slot {
    struct window *w;
    void *buf; /* CHUNK bytes, aligned to 4096 */
    struct vol_req reqs[REQS_PER_SLOT];
    unsigned pending; /* requests not completed yet; guarded by w->mu */
    int err;          /* first error of those requests; guarded by w->mu */
    /* export: what the slot carries */
    uint64_t off, len;
    bool hole;
};

struct window {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct vol *v;
    struct slot slots[WINDOW];
};

static int window_init(struct window *w, struct vol *v)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->v = v;
    for (unsigned i = 0; i < WINDOW; i++) {
        w->slots[i].w = w;
        if (posix_memalign(&w->slots[i].buf, 4096, CHUNK) != 0)
            return -ENOMEM;
    }
    return 0;
}

static void req_done(struct vol_req *req, int res)
{
    struct slot *s = req->priv;
    struct window *w = s->w;

    pthread_mutex_lock(&w->mu);
    if (res < 0 && s->err == 0)
        s->err = res;
    if (--s->pending == 0)
        pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits for the slot's requests; returns their first error and clears it. */
static int slot_wait(struct slot *s)
{
    struct window *w = s->w;
    int r;

    pthread_mutex_lock(&w->mu);
    while (s->pending > 0)
        pthread_cond_wait(&w->cv, &w->mu);
    r = s->err;
    s->err = 0;
    pthread_mutex_unlock(&w->mu);
    return r;
}

/* Waits for every slot; returns the first error. */
static int window_drain(struct window *w)
{
    int first = 0;

    for (unsigned i = 0; i < WINDOW; i++) {
        int r = slot_wait(&w->slots[i]);
        if (r < 0 && first == 0)
            first = r;
    }
    return first;
}

static void window_free(struct window *w)
{
    window_drain(w);
    for (unsigned i = 0; i < WINDOW; i++)
        free(w->slots[i].buf);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* Starts the first @n requests of the slot (prepared by the caller). */
static void slot_submit(struct slot *s, unsigned n)
{
    struct window *w = s->w;

    if (n == 0)
        return;
    pthread_mutex_lock(&w->mu);
    s->pending = n; /* before any submission: a completion may come at once */
    pthread_mutex_unlock(&w->mu);
    for (unsigned i = 0; i < n; i++)
        vol_submit(w->v, &s->reqs[i]);
}

static void req_set(struct slot *s, unsigned i, enum vol_op op, uint64_t off, uint64_t len,
                    void *buf)
{
    struct vol_req *q = &s->reqs[i];

    memset(q, 0, sizeof *q);
    q->op = op;
    q->offset = off;
    q->length = len;
    q->buf = buf;
    q->done = req_done;
    q->priv = s;
}

/*
 * Splits the data at [@off, @off + @len) held in s->buf into requests: runs of whole or
 * partial grains that are all zeros become WRITE_ZEROES (left out when @fresh), the rest
 * WRITE. Returns how many requests were prepared.
 */
static unsigned split_data(struct slot *s, uint64_t off, uint64_t len, uint32_t grain, bool fresh)
{
    unsigned n = 0;
    uint64_t pos = off, end = off + len, run_start = off;
    int run_zero = -1; /* -1: no run yet */

    while (pos < end) {
        uint64_t piece_end = MIN(ROUND_DOWN(pos, (uint64_t)grain) + grain, end);
        bool zero = buf_is_zero((char *)s->buf + (pos - off), piece_end - pos);

        if (run_zero != -1 && (bool)run_zero != zero) {
            if (!(run_zero && fresh))
                req_set(s, n++, run_zero ? VOL_OP_WRITE_ZEROES : VOL_OP_WRITE, run_start,
                        pos - run_start, run_zero ? NULL : (char *)s->buf + (run_start - off));
            run_start = pos;
        }
        run_zero = zero;
        pos = piece_end;
    }
    if (run_zero != -1 && !(run_zero && fresh))
        req_set(s, n++, run_zero ? VOL_OP_WRITE_ZEROES : VOL_OP_WRITE, run_start, end - run_start,
                run_zero ? NULL : (char *)s->buf + (run_start - off));
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Import                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/*
 * Creates or resizes the volume as the options ask, through the operations (here or in the
 * daemon); sets *created, *vol_size and *grain.
 */
static int prepare_volume(const struct cli *cli, const struct cli_args *a, const struct target *t,
                          const struct endpoint *src, bool *created, uint64_t *vol_size,
                          uint32_t *grain)
{
    char full[2 * NAME_MAX_LEN + 2], b1[SIZE_BUF], b2[SIZE_BUF];
    struct json_object *vi = NULL;
    struct cli_args b = *a;
    struct op_err e = {0};
    uint64_t need = src->size_known ? ROUND_UP(src->size, (uint64_t)CS_BLOCK_SIZE) : 0;
    uint64_t size;
    int r;

    snprintf(full, sizeof full, "%s/%s", a->obj.pool, a->obj.vol);
    *created = false;
    r = op_call_err(cli, t, "vol.info", a, &vi, &e);
    if (r == -ENOENT) {
        size = a->size;
        if (!a->create) {
            log_err("%s: no such volume (use --create to make one)", full);
            return -ENOENT;
        }
        if (a->size_str == NULL) {
            if (!src->size_known) {
                log_err("%s: the size of %s is not known: give --size", full, src->name);
                return -EINVAL;
            }
            if (need == 0) {
                log_err("%s: %s is empty: give --size", full, src->name);
                return -EINVAL;
            }
            size = need;
        } else if (src->size_known && size < src->size) {
            log_err("%s: source is %s, --size is %s", full, size_str(src->size, false, b1),
                    size_str(size, false, b2));
            return -EFBIG;
        }
        b.size = size;
        b.size_rel = 0;
        r = op_call(cli, t, "vol.create", &b, &vi);
        if (r < 0)
            return r;
        *created = true;
        *vol_size = size;
        *grain = (uint32_t)res_u64(vi, "grain");
        json_object_put(vi);
        return 0;
    }
    if (r < 0) {
        log_err("%s", e.msg);
        return r;
    }
    size = res_u64(vi, "size");
    *grain = (uint32_t)res_u64(vi, "grain");
    json_object_put(vi);
    if (a->create) {
        log_err("%s: the volume exists (leave out --create to import into it)", full);
        return -EEXIST;
    }
    *vol_size = size;
    if (a->resize) {
        if (!src->size_known) {
            log_err("%s: --resize: the size of %s is not known", full, src->name);
            return -EINVAL;
        }
        if (need != size) {
            if (need == 0) {
                log_err("%s: %s is empty: a volume cannot have size 0", full, src->name);
                return -EINVAL;
            }
            b.size = need;
            b.size_rel = 0;
            b.force = false;
            r = op_call(cli, t, "vol.resize", &b, &vi);
            if (r < 0)
                return r;
            json_object_put(vi);
            *vol_size = need;
        }
    } else if (src->size_known && src->size > size) {
        log_err("%s: source is %s, volume %s is %s: use --resize", full,
                size_str(src->size, false, b1), full, size_str(size, false, b2));
        return -EFBIG;
    }
    return 0;
}

/* Copies the source into the open volume. */
static int import_data(struct endpoint *src, struct vol *v, uint64_t vol_size, bool fresh,
                       bool quiet, const char *full)
{
    struct window w;
    struct progress prog;
    uint32_t grain = vol_grain_size(v);
    uint64_t off = 0, src_end;
    unsigned k = 0;
    bool eof = false;
    int r;

    r = window_init(&w, v);
    if (r < 0) {
        window_free(&w);
        return r;
    }
    progress_start(&prog, "importing", src->size_known ? src->size : 0, quiet);

    while (!eof && (src->size_known ? off < src->size : true)) {
        struct slot *s = &w.slots[k++ % WINDOW];
        uint64_t len, want;
        size_t got;
        bool zero;

        r = slot_wait(s);
        if (r < 0)
            goto fail;
        progress_update(&prog, off);

        if (src->size_known) {
            ep_extent(src, off, &len, &zero);
            if (zero) {
                uint64_t hend = off + len >= src->size
                                    ? ROUND_UP(src->size, (uint64_t)CS_BLOCK_SIZE)
                                    : ROUND_DOWN(off + len, (uint64_t)CS_BLOCK_SIZE);
                hend = MIN(hend, ROUND_DOWN(off, ZERO_CHUNK) + ZERO_CHUNK);
                if (hend > off) {
                    if (!fresh) {
                        req_set(s, 0, VOL_OP_WRITE_ZEROES, off, hend - off, NULL);
                        slot_submit(s, 1);
                    }
                    off = hend;
                    continue;
                }
            }
            want = MIN(ROUND_DOWN(off, (uint64_t)CHUNK) + CHUNK, src->size) - off;
        } else {
            if (off >= vol_size) {
                /* The volume is full: the stream must be at its end. */
                char extra;
                r = ep_read(src, &extra, 1, off, &got);
                if (r < 0)
                    goto fail;
                if (got > 0) {
                    char b[SIZE_BUF];
                    log_err("%s: %s holds more than the volume's %s: use a larger volume", full,
                            src->name, size_str(vol_size, false, b));
                    r = -EFBIG;
                    goto fail;
                }
                break;
            }
            want = MIN(ROUND_DOWN(off, (uint64_t)CHUNK) + CHUNK, vol_size) - off;
        }

        r = ep_read(src, s->buf, (size_t)want, off, &got);
        if (r < 0)
            goto fail;
        if (got < want)
            eof = true; /* streams only */
        if (got == 0)
            break;
        /* The volume takes whole 512-byte sectors: pad the source's last bytes with zeros
         * (the volume reads as zeros past the source's end anyway). */
        len = ROUND_UP((uint64_t)got, (uint64_t)CS_BLOCK_SIZE);
        memset((char *)s->buf + got, 0, (size_t)(len - got));
        slot_submit(s, split_data(s, off, len, grain, fresh));
        off += got;
    }

    /* Past the source's end the volume reads as zeros. */
    for (src_end = ROUND_UP(off, (uint64_t)CS_BLOCK_SIZE); !fresh && src_end < vol_size;) {
        struct slot *s = &w.slots[k++ % WINDOW];
        uint64_t end = MIN(ROUND_DOWN(src_end, ZERO_CHUNK) + ZERO_CHUNK, vol_size);

        r = slot_wait(s);
        if (r < 0)
            goto fail;
        req_set(s, 0, VOL_OP_WRITE_ZEROES, src_end, end - src_end, NULL);
        slot_submit(s, 1);
        src_end = end;
    }
    r = window_drain(&w);
    if (r < 0)
        goto fail;
    progress_update(&prog, off);
    progress_end(&prog);
    window_free(&w);
    return 0;

fail:
    progress_end(&prog);
    window_drain(&w);
    window_free(&w);
    if (r != -EFBIG)
        log_err("%s: import failed at offset %" PRIu64 ": %s", full, off, strerror(-r));
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Between two endpoints: a volume the daemon serves, over NBD                                */
/* ---------------------------------------------------------------------------------------- */

/* Writes @len bytes of @buf at @off: runs of zero grains through ep_zero (holes of a fresh
 * file, WRITE_ZEROES on NBD), the rest as data. */
static int write_data(struct endpoint *dst, const char *buf, uint64_t off, uint64_t len,
                      uint32_t grain)
{
    uint64_t pos, end, run_start;
    int run_zero = -1, r;

    if (!dst->zero_cheap && !dst->fresh)
        return ep_write(dst, buf, (size_t)len, off);
    pos = run_start = off;
    end = off + len;
    while (pos <= end) {
        uint64_t piece_end = pos < end ? MIN(ROUND_DOWN(pos, (uint64_t)grain) + grain, end) : end;
        bool zero = pos < end && buf_is_zero(buf + (pos - off), piece_end - pos);

        if (run_zero != -1 && (pos == end || (bool)run_zero != zero)) {
            if (run_zero)
                r = ep_zero(dst, run_start, pos - run_start);
            else
                r = ep_write(dst, buf + (run_start - off), (size_t)(pos - run_start), run_start);
            if (r < 0)
                return r;
            run_start = pos;
        }
        if (pos == end)
            break;
        run_zero = zero;
        pos = piece_end;
    }
    return 0;
}

/*
 * Copies @src into @dst, at most @limit bytes from a stream (a larger stream is -EFBIG),
 * from the main thread; sets *copied. Holes of the source become ep_zero of the
 * destination (nothing on a fresh one). Data for an NBD destination is padded with zeros to
 * whole blocks, as the volume takes whole sectors.
 */
static int copy_endpoints(struct endpoint *src, struct endpoint *dst, uint64_t limit,
                          uint32_t grain, bool quiet, const char *what, uint64_t *copied)
{
    struct progress prog;
    uint64_t off = 0, len, want;
    bool eof = false, zero;
    size_t got;
    void *buf;
    int r = 0;

    if (posix_memalign(&buf, 4096, CHUNK) != 0)
        return -ENOMEM;
    progress_start(&prog, what, src->size_known ? src->size : 0, quiet);
    while (!eof && (src->size_known ? off < src->size : true)) {
        progress_update(&prog, off);
        if (src->size_known) {
            ep_extent(src, off, &len, &zero);
            if (zero) {
                uint64_t hend = off + len >= src->size
                                    ? ROUND_UP(src->size, (uint64_t)CS_BLOCK_SIZE)
                                    : ROUND_DOWN(off + len, (uint64_t)CS_BLOCK_SIZE);
                if (hend > off) {
                    r = ep_zero(dst, off, hend - off);
                    if (r < 0)
                        break;
                    off = hend;
                    continue;
                }
            }
            want = MIN(ROUND_DOWN(off, (uint64_t)CHUNK) + CHUNK, src->size) - off;
        } else {
            if (off >= limit) {
                char extra, b[SIZE_BUF];
                r = ep_read(src, &extra, 1, off, &got);
                if (r == 0 && got > 0) {
                    log_err("%s holds more than the volume's %s: use a larger volume", src->name,
                            size_str(limit, false, b));
                    r = -EFBIG;
                }
                break;
            }
            want = MIN(ROUND_DOWN(off, (uint64_t)CHUNK) + CHUNK, limit) - off;
        }
        r = ep_read(src, buf, (size_t)want, off, &got);
        if (r < 0)
            break;
        if (got < want)
            eof = true; /* streams only */
        if (got == 0)
            break;
        len = got;
        if (dst->kind == EP_NBD) {
            len = ROUND_UP((uint64_t)got, (uint64_t)CS_BLOCK_SIZE);
            memset((char *)buf + got, 0, (size_t)(len - got));
        }
        r = write_data(dst, buf, off, len, grain);
        if (r < 0)
            break;
        off += got;
    }
    progress_update(&prog, off);
    progress_end(&prog);
    free(buf);
    *copied = off;
    return r;
}

/* Import into a volume the daemon serves: the data goes over its NBD server. */
static int import_remote(const struct cli_args *a, const struct target *t, struct endpoint *src,
                         uint64_t vol_size, uint32_t grain, bool created, const char *full)
{
    struct endpoint dst;
    uint64_t copied = 0, end;
    char *uri;
    int r;

    memset(&dst, 0, sizeof dst);
    uri = ctl_nbd_uri(t->ctl, a->obj.pool, a->obj.vol);
    if (uri == NULL)
        return -ENOTCONN;
    r = ep_open_dest(&dst, uri, FMT_RAW, vol_size);
    free(uri);
    if (r < 0) {
        ep_close(&dst);
        return r;
    }
    dst.fresh = created; /* a new volume reads as zeros: its holes need nothing */
    r = copy_endpoints(src, &dst, vol_size, grain, a->quiet, "importing", &copied);
    /* Past the source's end the volume reads as zeros. */
    end = ROUND_UP(copied, (uint64_t)CS_BLOCK_SIZE);
    if (r == 0 && end < vol_size)
        r = ep_zero(&dst, end, vol_size - end);
    if (r == 0)
        r = ep_finish(&dst);
    else
        ep_close(&dst);
    if (r < 0 && r != -EFBIG)
        log_err("%s: import failed: %s", full, strerror(-r));
    return r;
}

int cmd_vol_import(const struct cli *cli, const struct cli_args *a, const struct target *t)
{
    char full[2 * NAME_MAX_LEN + 2];
    struct endpoint src;
    struct vol *v = NULL;
    uint64_t vol_size = 0;
    uint32_t grain = VOL_DEFAULT_GRAIN;
    bool created = false;
    int r;

    snprintf(full, sizeof full, "%s/%s", a->obj.pool, a->obj.vol);
    r = ep_open_source(&src, a->location, a->format);
    if (r < 0)
        goto out;
    r = prepare_volume(cli, a, t, &src, &created, &vol_size, &grain);
    if (r < 0)
        goto out;
    if (t->ctl != NULL) {
        r = import_remote(a, t, &src, vol_size, grain, created, full);
        goto out;
    }
    r = vol_open(t->pool, a->obj.vol, 0, &v);
    if (r < 0) {
        log_err("%s: %s", full, vol_error_cause(r));
        goto out;
    }
    r = import_data(&src, v, vol_size, created, a->quiet, full);
    if (r == 0)
        r = vol_flush(v);
    {
        int rc = vol_close(v);
        if (r == 0 && rc < 0) {
            log_err("%s: %s", full, strerror(-rc));
            r = rc;
        }
    }
out:
    ep_close(&src);
    if (r < 0 && created) {
        struct json_object *o = NULL;
        struct op_err e;
        int rd;
        /* Over NBD, the daemon lets go of the volume a moment after our disconnection. */
        for (int i = 0;; i++) {
            rd = op_call_err(cli, t, "vol.delete", a, &o, &e);
            json_object_put(o);
            if (rd != -EBUSY || t->ctl == NULL || i == 50)
                break;
            usleep(100000);
        }
        if (rd < 0)
            log_warn("%s: the volume created for the import is left: %s", full, e.msg);
    }
    return r < 0 ? EXIT_RUNTIME : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Export                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Hands out the volume's next segment: a hole of any length, or data up to the next CHUNK
 * boundary. */
struct segmenter {
    struct vol *v;
    uint64_t size, off;
    struct vol_extent ext[EXPORT_EXTENTS];
    size_t i, n;
};

static int next_segment(struct segmenter *sg, uint64_t *off, uint64_t *len, bool *hole)
{
    const struct vol_extent *e;

    while (sg->i < sg->n && sg->ext[sg->i].offset + sg->ext[sg->i].length <= sg->off)
        sg->i++;
    if (sg->i == sg->n) {
        int r =
            vol_block_status(sg->v, sg->off, sg->size - sg->off, sg->ext, EXPORT_EXTENTS, &sg->n);
        sg->i = 0;
        if (r < 0)
            return r;
        if (sg->n == 0 || sg->ext[0].offset > sg->off || sg->ext[0].length == 0) {
            /* Nothing said about sg->off: read it. */
            sg->ext[0].offset = sg->off;
            sg->ext[0].length = MIN(sg->size - sg->off, (uint64_t)CHUNK);
            sg->ext[0].flags = 0;
            sg->n = 1;
        }
    }
    e = &sg->ext[sg->i];
    *off = sg->off;
    *hole = (e->flags & (VOL_EXT_HOLE | VOL_EXT_ZERO)) != 0;
    *len = MIN(e->offset + e->length, sg->size) - sg->off;
    if (!*hole)
        *len = MIN(*len, ROUND_DOWN(sg->off, (uint64_t)CHUNK) + CHUNK - sg->off);
    sg->off += *len;
    return 0;
}

/* Writes out one completed segment. */
static int write_segment(struct endpoint *dst, struct slot *s, uint32_t grain)
{
    if (s->hole)
        return ep_zero(dst, s->off, s->len);
    return write_data(dst, s->buf, s->off, s->len, grain);
}

/* Export of a volume the daemon serves: read over its NBD server, holes from its block
 * status. */
static int export_remote(const struct cli_args *a, const struct target *t)
{
    char name[2 * NAME_MAX_LEN + 2];
    struct endpoint src, dst;
    uint64_t copied;
    char *uri;
    int r;

    memset(&src, 0, sizeof src);
    memset(&dst, 0, sizeof dst);
    obj_point(&a->obj, name, sizeof name);
    uri = ctl_nbd_uri(t->ctl, a->obj.pool, name);
    if (uri == NULL)
        return EXIT_RUNTIME;
    r = ep_open_source(&src, uri, FMT_RAW);
    free(uri);
    if (r == 0)
        r = ep_open_dest(&dst, a->location, a->format, src.size);
    if (r == 0)
        r = copy_endpoints(&src, &dst, src.size, VOL_MIN_GRAIN, a->quiet, "exporting", &copied);
    if (r == 0)
        r = ep_finish(&dst);
    else
        ep_close(&dst);
    ep_close(&src);
    return r < 0 ? EXIT_RUNTIME : 0;
}

int cmd_vol_export(const struct cli *cli UNUSED, const struct cli_args *a, const struct target *t)
{
    struct pool *pool = t->pool;
    char name[2 * NAME_MAX_LEN + 2], full[3 * NAME_MAX_LEN + 3];
    struct endpoint dst;
    struct segmenter sg;
    struct progress prog;
    struct window w;
    struct vol *v = NULL;
    uint64_t produced = 0, consumed = 0;
    bool more = true, dst_open = false, w_init = false;
    uint32_t grain;
    int r;

    if (t->ctl != NULL)
        return export_remote(a, t);
    memset(&dst, 0, sizeof dst);
    obj_point(&a->obj, name, sizeof name);
    snprintf(full, sizeof full, "%s/%s", a->obj.pool, name);
    r = vol_open(pool, name, VOL_OPEN_RDONLY, &v);
    if (r < 0) {
        log_err("%s: %s", full, vol_error_cause(r));
        return EXIT_RUNTIME;
    }
    grain = vol_grain_size(v);
    memset(&sg, 0, sizeof sg);
    sg.v = v;
    sg.size = vol_size(v);

    r = ep_open_dest(&dst, a->location, a->format, sg.size);
    dst_open = true;
    if (r < 0)
        goto out;
    r = window_init(&w, v);
    w_init = true;
    if (r < 0)
        goto out;
    progress_start(&prog, "exporting", sg.size, a->quiet);

    while (more || consumed < produced) {
        struct slot *s;

        /* Keep the window full of reads ahead of the writer. */
        while (more && produced - consumed < WINDOW) {
            s = &w.slots[produced % WINDOW];
            if (sg.off >= sg.size) {
                more = false;
                break;
            }
            r = next_segment(&sg, &s->off, &s->len, &s->hole);
            if (r < 0) {
                log_err("%s: block status: %s", full, strerror(-r));
                goto fail;
            }
            if (!s->hole) {
                req_set(s, 0, VOL_OP_READ, s->off, s->len, s->buf);
                slot_submit(s, 1);
            }
            produced++;
        }
        if (consumed == produced)
            break;

        s = &w.slots[consumed % WINDOW];
        r = slot_wait(s);
        if (r < 0) {
            log_err("%s: read at offset %" PRIu64 ": %s", full, s->off, strerror(-r));
            goto fail;
        }
        r = write_segment(&dst, s, grain);
        if (r < 0)
            goto fail;
        consumed++;
        progress_update(&prog, s->off + s->len);
    }
    progress_end(&prog);
    r = ep_finish(&dst);
    dst_open = false;
    goto out;

fail:
    progress_end(&prog);
out:
    if (w_init)
        window_free(&w);
    if (dst_open)
        ep_close(&dst);
    {
        int rc = vol_close(v);
        if (r == 0 && rc < 0) {
            log_err("%s: %s", full, strerror(-rc));
            r = rc;
        }
    }
    return r < 0 ? EXIT_RUNTIME : 0;
}
