/*
 * cistern-bench-iscsi: a load generator for one iSCSI LUN, on libiscsi's asynchronous API.
 *
 * It logs in to the target named by an iscsi:// URL (CHAP when a user and secret are given),
 * reads the LUN's capacity and block length (READ CAPACITY 16), and keeps --qd READ 16 or
 * WRITE 16 commands in flight on one session and one connection, of --bs bytes each, until
 * --time seconds have passed; then it lets the window drain and prints one JSON line:
 *
 *   {"pattern":"randread","bs":4096,"qd":32,"seconds":10.00,"ops":...,"bytes":...,
 *    "iops":...,"mbps":...,"lat_us":...,"client_cpu":...}
 *
 * mbps is in 10^6 bytes per second, lat_us the mean time from submission to completion,
 * client_cpu the cores this process kept busy (user + system time over wall time): on a small
 * host the initiator competes with the target for the same cores.
 *
 * Patterns
 *   randread, randwrite  uniform over the span, --bs aligned
 *   seqread, seqwrite    the span in order, wrapping around at its end; with --time 0, one
 *                        pass over the span and no more (how a run script fills a LUN)
 * Write data is random and never all zeros (a thin target unmaps zero blocks), and each
 * write stamps its buffer with a counter so that no two writes carry the same data.
 *
 * Everything is bounded: the login has a timeout (--stall), and a run in which no command
 * completes for --stall seconds while some are in flight stops with an error that says how
 * many were outstanding and the oldest one's LBA (exit 3), rather than hanging. A command
 * that fails prints its SCSI status and sense, and the run stops (exit 1).
 *
 * One thread: libiscsi's context is serviced from a poll() loop on iscsi_get_fd() and
 * iscsi_which_events(); a completion callback submits the slot's next command at once, and
 * the commands submitted in one pass go out in one TCP write (see service()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "common/common.h"

#define PROG "cistern-bench-iscsi"
#define DEFAULT_INITIATOR "iqn.2026-11.org.cistern:bench-iscsi"
#define MAX_QD 1024

enum pattern { RANDREAD, RANDWRITE, SEQREAD, SEQWRITE };

static const char *const pattern_names[] = {"randread", "randwrite", "seqread", "seqwrite"};

struct opts {
    const char *url;
    enum pattern pat;
    uint64_t bs;
    unsigned qd;
    double seconds;        /* 0: one pass over the span (sequential patterns only) */
    uint64_t offset, size; /* the span; size 0: to the end of the LUN */
    const char *user, *secret;
    const char *initiator;
    double stall; /* seconds without a completion before giving up */
    uint64_t seed;
};

struct slot {
    struct load *ld;
    unsigned char *buf;
    struct scsi_iovec iov;
    uint64_t lba;
    uint64_t t_submit;
    bool busy;
};

struct load {
    const struct opts *o;
    struct iscsi_context *ctx;
    int lun;
    uint32_t block;              /* logical block length of the LUN */
    uint64_t span_off, span_len; /* bytes */
    uint64_t seq_pos;
    uint64_t rng;
    uint64_t stamp;
    bool writing, random;

    bool stop; /* submit nothing more */
    int err;   /* the first failure: 1 */
    unsigned inflight;
    uint64_t ops, bytes, lat_sum_ns;
    uint64_t t_start, t_end, t_last_done;
    struct slot *slots;
};

/* xorshift64*: enough for offsets and buffer contents. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --url iscsi://[USER[%%SECRET]@]HOST[:PORT]/IQN/LUN [options]\n"
            "\n"
            "  --url URL          the LUN (CHAP user and secret may be given in it, or in\n"
            "                     LIBISCSI_CHAP_USERNAME and LIBISCSI_CHAP_PASSWORD)\n"
            "  --pattern P        randread (default), randwrite, seqread, seqwrite\n"
            "  --bs SIZE          bytes per command (default 4K; a multiple of the LUN's block)\n"
            "  --qd N             commands in flight (default 32, at most %d)\n"
            "  --time SECONDS     how long to run (default 10); 0: one pass over the span,\n"
            "                     sequential patterns only\n"
            "  --offset SIZE      start of the span (default 0)\n"
            "  --size SIZE        length of the span (default: to the end of the LUN)\n"
            "  --user USER        CHAP user name\n"
            "  --secret SECRET    CHAP secret\n"
            "  --initiator IQN    initiator name (default " DEFAULT_INITIATOR ")\n"
            "  --stall SECONDS    give up when nothing completes for this long (default 30)\n"
            "  --seed N           random seed (default 1)\n",
            MAX_QD);
}

static int size_arg(const char *name, const char *s, uint64_t *out)
{
    if (parse_size(s, out) < 0) {
        fprintf(stderr, PROG ": %s: '%s' is not a size\n", name, s);
        return -1;
    }
    return 0;
}

static int seconds_arg(const char *name, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0) || v > 86400) {
        fprintf(stderr, PROG ": %s: '%s' is not a number of seconds from 0 to 86400\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    enum {
        O_URL = 256,
        O_PATTERN,
        O_BS,
        O_QD,
        O_TIME,
        O_OFFSET,
        O_SIZE,
        O_USER,
        O_SECRET,
        O_INITIATOR,
        O_STALL,
        O_SEED,
        O_HELP
    };
    static const struct option longopts[] = {
        {"url", required_argument, NULL, O_URL},
        {"pattern", required_argument, NULL, O_PATTERN},
        {"bs", required_argument, NULL, O_BS},
        {"qd", required_argument, NULL, O_QD},
        {"time", required_argument, NULL, O_TIME},
        {"offset", required_argument, NULL, O_OFFSET},
        {"size", required_argument, NULL, O_SIZE},
        {"user", required_argument, NULL, O_USER},
        {"secret", required_argument, NULL, O_SECRET},
        {"initiator", required_argument, NULL, O_INITIATOR},
        {"stall", required_argument, NULL, O_STALL},
        {"seed", required_argument, NULL, O_SEED},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    uint64_t v;

    *o = (struct opts){.pat = RANDREAD,
                       .bs = 4096,
                       .qd = 32,
                       .seconds = 10,
                       .initiator = DEFAULT_INITIATOR,
                       .stall = 30,
                       .seed = 1};
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_URL:
            o->url = optarg;
            break;
        case O_PATTERN: {
            size_t i;
            for (i = 0; i < ARRAY_SIZE(pattern_names); i++)
                if (strcmp(optarg, pattern_names[i]) == 0)
                    break;
            if (i == ARRAY_SIZE(pattern_names)) {
                fprintf(stderr,
                        PROG ": --pattern: '%s': expected randread, randwrite, "
                             "seqread or seqwrite\n",
                        optarg);
                return -1;
            }
            o->pat = (enum pattern)i;
            break;
        }
        case O_BS:
            if (size_arg("--bs", optarg, &o->bs) < 0)
                return -1;
            if (o->bs == 0 || o->bs > (64u << 20)) {
                fprintf(stderr, PROG ": --bs: from 1 byte to 64M\n");
                return -1;
            }
            break;
        case O_QD:
            if (parse_size(optarg, &v) < 0 || v == 0 || v > MAX_QD) {
                fprintf(stderr, PROG ": --qd: '%s': expected 1 to %d\n", optarg, MAX_QD);
                return -1;
            }
            o->qd = (unsigned)v;
            break;
        case O_TIME:
            if (seconds_arg("--time", optarg, &o->seconds) < 0)
                return -1;
            break;
        case O_OFFSET:
            if (size_arg("--offset", optarg, &o->offset) < 0)
                return -1;
            break;
        case O_SIZE:
            if (size_arg("--size", optarg, &o->size) < 0)
                return -1;
            break;
        case O_USER:
            o->user = optarg;
            break;
        case O_SECRET:
            o->secret = optarg;
            break;
        case O_INITIATOR:
            o->initiator = optarg;
            break;
        case O_STALL:
            if (seconds_arg("--stall", optarg, &o->stall) < 0)
                return -1;
            if (o->stall < 1) {
                fprintf(stderr, PROG ": --stall: at least 1 second\n");
                return -1;
            }
            break;
        case O_SEED:
            if (parse_size(optarg, &o->seed) < 0) {
                fprintf(stderr, PROG ": --seed: '%s' is not a number\n", optarg);
                return -1;
            }
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc || o->url == NULL) {
        usage(stderr);
        return -1;
    }
    if (o->seconds == 0 && (o->pat == RANDREAD || o->pat == RANDWRITE)) {
        fprintf(stderr, PROG ": --time 0 (one pass) is for seqread and seqwrite only\n");
        return -1;
    }
    if ((o->user == NULL) != (o->secret == NULL)) {
        fprintf(stderr, PROG ": --user and --secret go together\n");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The window of commands
 */

static void io_done(struct iscsi_context *ctx, int status, void *command_data, void *private);

/* The next command's LBA into s->lba, or false when the load has nothing more to do. */
static bool next_lba(struct load *ld, struct slot *s)
{
    uint64_t off;

    if (ld->stop)
        return false;
    if (ld->random) {
        off = ld->span_off + rng_next(&ld->rng) % (ld->span_len / ld->o->bs) * ld->o->bs;
    } else {
        if (ld->seq_pos + ld->o->bs > ld->span_len) {
            if (ld->o->seconds == 0)
                return false; /* one pass, done */
            ld->seq_pos = 0;
        }
        off = ld->span_off + ld->seq_pos;
        ld->seq_pos += ld->o->bs;
    }
    s->lba = off / ld->block;
    return true;
}

/* Submits the slot's next command, if there is one. */
static void slot_submit(struct load *ld, struct slot *s)
{
    struct scsi_task *task;
    uint32_t len = (uint32_t)ld->o->bs;

    if (!next_lba(ld, s))
        return;
    s->iov = (struct scsi_iovec){.iov_base = s->buf, .iov_len = len};
    s->t_submit = now_ns();
    if (ld->writing) {
        /* A stamp in every block's first bytes: no two writes alike, never all zeros. */
        ld->stamp++;
        for (uint32_t b = 0; b < len; b += ld->block)
            memcpy(s->buf + b, &ld->stamp, sizeof ld->stamp);
        task = iscsi_write16_iov_task(ld->ctx, ld->lun, s->lba, NULL, len, (int)ld->block, 0, 0, 0,
                                      0, 0, io_done, s, &s->iov, 1);
    } else {
        task = iscsi_read16_iov_task(ld->ctx, ld->lun, s->lba, len, (int)ld->block, 0, 0, 0, 0, 0,
                                     io_done, s, &s->iov, 1);
    }
    if (task == NULL) {
        fprintf(stderr, PROG ": %s at LBA %" PRIu64 " could not be queued: %s\n",
                ld->writing ? "WRITE 16" : "READ 16", s->lba, iscsi_get_error(ld->ctx));
        ld->err = 1;
        ld->stop = true;
        return;
    }
    s->busy = true;
    ld->inflight++;
}

static void io_done(struct iscsi_context *ctx, int status, void *command_data, void *private)
{
    struct slot *s = private;
    struct load *ld = s->ld;
    struct scsi_task *task = command_data;
    uint64_t now = now_ns();

    s->busy = false;
    ld->inflight--;
    ld->t_last_done = now;
    if (status != SCSI_STATUS_GOOD) {
        if (ld->err == 0) {
            fprintf(stderr, PROG ": %s at LBA %" PRIu64 ", %" PRIu64 " bytes: status 0x%02x%s%s",
                    ld->writing ? "WRITE 16" : "READ 16", s->lba, ld->o->bs, (unsigned)status,
                    status == SCSI_STATUS_CANCELLED ? " (cancelled)" : "",
                    status == SCSI_STATUS_ERROR ? " (transport error)" : "");
            if (status == SCSI_STATUS_CHECK_CONDITION && task != NULL)
                fprintf(stderr, ", sense %s / %s (0x%04x)", scsi_sense_key_str(task->sense.key),
                        scsi_sense_ascq_str(task->sense.ascq), (unsigned)task->sense.ascq);
            fprintf(stderr, ": %s\n", iscsi_get_error(ctx));
        }
        ld->err = 1;
        ld->stop = true;
    } else if (task->residual_status != SCSI_RESIDUAL_NO_RESIDUAL && task->residual != 0) {
        if (ld->err == 0)
            fprintf(stderr, PROG ": %s at LBA %" PRIu64 ": residual %s of %zu bytes\n",
                    ld->writing ? "WRITE 16" : "READ 16", s->lba,
                    task->residual_status == SCSI_RESIDUAL_UNDERFLOW ? "underflow" : "overflow",
                    task->residual);
        ld->err = 1;
        ld->stop = true;
    } else if (ld->t_end == 0 || now <= ld->t_end) {
        ld->ops++;
        ld->bytes += ld->o->bs;
        ld->lat_sum_ns += now - s->t_submit;
    }
    if (task != NULL)
        scsi_free_scsi_task(task);
    if (ld->t_end && now >= ld->t_end)
        ld->stop = true;
    slot_submit(ld, s);
}

static void set_cork(int fd, int on)
{
    (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

/* One pass over the context: reads what arrived, whose completions submit the slots' next
 * commands, and writes those at once, as one TCP write (libiscsi sends each PDU with a
 * send() of its own; the socket is corked meanwhile), as a kernel initiator sends the
 * commands of a plugged block queue together. */
static int service(struct iscsi_context *ctx, int revents)
{
    int fd = iscsi_get_fd(ctx);
    set_cork(fd, 1);
    int rv = iscsi_service(ctx, revents);
    if (rv >= 0 && !(revents & POLLOUT) && iscsi_out_queue_length(ctx) > 0)
        rv = iscsi_service(ctx, POLLOUT);
    set_cork(fd, 0);
    return rv;
}

/* Services the context until nothing is in flight and nothing more is to be submitted. */
static int run_loop(struct load *ld)
{
    uint64_t stall_ns = (uint64_t)(ld->o->stall * 1e9);

    while (ld->inflight > 0) {
        struct pollfd pfd = {.fd = iscsi_get_fd(ld->ctx), .events = iscsi_which_events(ld->ctx)};
        int n = poll(&pfd, 1, pfd.events ? 100 : 10);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
            return 1;
        }
        int rv = service(ld->ctx, n > 0 ? pfd.revents : 0);
        if (rv < 0) {
            fprintf(stderr, PROG ": the connection failed with %u commands in flight: %s\n",
                    ld->inflight, iscsi_get_error(ld->ctx));
            return 1;
        }
        uint64_t now = now_ns();
        if (ld->t_end && now >= ld->t_end)
            ld->stop = true;
        if (ld->inflight > 0 && now - ld->t_last_done > stall_ns) {
            uint64_t oldest = UINT64_MAX, lba = 0;
            for (unsigned i = 0; i < ld->o->qd; i++)
                if (ld->slots[i].busy && ld->slots[i].t_submit < oldest) {
                    oldest = ld->slots[i].t_submit;
                    lba = ld->slots[i].lba;
                }
            fprintf(stderr,
                    PROG ": stalled: nothing completed for %.0f s with %u %s commands in flight "
                         "(queued in libiscsi but not sent: %d); the oldest, at LBA %" PRIu64
                         ", was sent %.1f s ago\n",
                    ld->o->stall, ld->inflight, ld->writing ? "WRITE 16" : "READ 16",
                    iscsi_out_queue_length(ld->ctx), lba, (double)(now - oldest) / 1e9);
            return 3;
        }
    }
    return ld->err;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------------------------------
 * Login and capacity
 */

/* Logs in to the LUN of o->url; returns the context, or NULL after saying why. */
static struct iscsi_context *login(const struct opts *o, int *lun)
{
    struct iscsi_context *ctx = iscsi_create_context(o->initiator);
    struct iscsi_url *url;

    if (ctx == NULL) {
        fprintf(stderr, PROG ": cannot create an iSCSI context\n");
        return NULL;
    }
    url = iscsi_parse_full_url(ctx, o->url);
    if (url == NULL) {
        fprintf(stderr, PROG ": %s: %s\n", o->url, iscsi_get_error(ctx));
        iscsi_destroy_context(ctx);
        return NULL;
    }
    iscsi_set_targetname(ctx, url->target);
    iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
    /* No digests: neither peer is asked to checksum, so both are measured alike. */
    iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE);
    if (o->user != NULL)
        iscsi_set_initiator_username_pwd(ctx, o->user, o->secret);
    else if (url->user[0] != '\0')
        iscsi_set_initiator_username_pwd(ctx, url->user, url->passwd);
    /* The login is synchronous: bound it. libiscsi times PDUs out only while serviced,
     * which its synchronous calls do. */
    iscsi_set_timeout(ctx, (int)o->stall);
    iscsi_set_noautoreconnect(ctx, 1);
    if (iscsi_full_connect_sync(ctx, url->portal, url->lun) != 0) {
        fprintf(stderr, PROG ": login to %s LUN %d at %s failed: %s\n", url->target, url->lun,
                url->portal, iscsi_get_error(ctx));
        iscsi_destroy_url(url);
        iscsi_destroy_context(ctx);
        return NULL;
    }
    *lun = url->lun;
    iscsi_destroy_url(url);
    iscsi_set_timeout(ctx, 0); /* the run loop watches for stalls itself */
    return ctx;
}

/* The LUN's logical block length and size in bytes. */
static int capacity(struct iscsi_context *ctx, int lun, uint32_t *block, uint64_t *bytes)
{
    struct scsi_task *task = iscsi_readcapacity16_sync(ctx, lun);
    struct scsi_readcapacity16 *rc;

    if (task == NULL || task->status != SCSI_STATUS_GOOD) {
        fprintf(stderr, PROG ": READ CAPACITY 16 failed: %s\n", iscsi_get_error(ctx));
        if (task != NULL)
            scsi_free_scsi_task(task);
        return -1;
    }
    rc = scsi_datain_unmarshall(task);
    if (rc == NULL || rc->block_length == 0 || rc->block_length > (1u << 20) ||
        (rc->block_length & (rc->block_length - 1)) != 0) {
        fprintf(stderr, PROG ": READ CAPACITY 16: unusable answer\n");
        scsi_free_scsi_task(task);
        return -1;
    }
    *block = rc->block_length;
    *bytes = (rc->returned_lba + 1) * rc->block_length;
    scsi_free_scsi_task(task);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct load ld = {0};
    uint64_t lun_bytes;
    int rc = 1;

    if (parse_opts(argc, argv, &o) < 0)
        return 2;

    ld.o = &o;
    ld.ctx = login(&o, &ld.lun);
    if (ld.ctx == NULL)
        return 1;
    if (capacity(ld.ctx, ld.lun, &ld.block, &lun_bytes) < 0)
        goto out;
    if (o.bs % ld.block != 0) {
        fprintf(stderr, PROG ": --bs %" PRIu64 " is not a multiple of the LUN's block (%u)\n", o.bs,
                ld.block);
        goto out;
    }
    ld.span_off = o.offset;
    ld.span_len = o.size ? o.size : lun_bytes > o.offset ? lun_bytes - o.offset : 0;
    if (o.offset % ld.block != 0 || o.offset + ld.span_len > lun_bytes ||
        o.offset + ld.span_len < o.offset || ld.span_len < o.bs) {
        fprintf(stderr,
                PROG ": the span (offset %" PRIu64 ", %" PRIu64 " bytes) does not fit the LUN "
                     "(%" PRIu64 " bytes, %u-byte blocks) or holds no request of %" PRIu64
                     " bytes\n",
                o.offset, ld.span_len, lun_bytes, ld.block, o.bs);
        goto out;
    }
    ld.writing = o.pat == RANDWRITE || o.pat == SEQWRITE;
    ld.random = o.pat == RANDREAD || o.pat == RANDWRITE;
    ld.rng = o.seed * 0x9E3779B97F4A7C15ull + 1;

    ld.slots = calloc(o.qd, sizeof *ld.slots);
    if (ld.slots == NULL)
        goto out;
    for (unsigned i = 0; i < o.qd; i++) {
        struct slot *s = &ld.slots[i];
        s->ld = &ld;
        if (posix_memalign((void **)&s->buf, 4096, o.bs) != 0) {
            fprintf(stderr, PROG ": out of memory for %u buffers of %" PRIu64 " bytes\n", o.qd,
                    o.bs);
            goto out;
        }
        for (uint64_t b = 0; b < o.bs; b += sizeof(uint64_t)) {
            uint64_t r = rng_next(&ld.rng) | 1;
            memcpy(s->buf + b, &r, o.bs - b < sizeof r ? o.bs - b : sizeof r);
        }
    }

    double cpu0 = cpu_seconds();
    ld.t_start = now_ns();
    ld.t_last_done = ld.t_start;
    ld.t_end = o.seconds > 0 ? ld.t_start + (uint64_t)(o.seconds * 1e9) : 0;
    for (unsigned i = 0; i < o.qd && !ld.stop; i++)
        slot_submit(&ld, &ld.slots[i]);
    rc = run_loop(&ld);
    uint64_t t1 = now_ns();
    double cpu = cpu_seconds() - cpu0;
    if (rc != 0)
        goto out;

    /* Completions after the deadline are not counted; the time is the timed window. */
    double secs = (double)((ld.t_end && ld.t_end < t1 ? ld.t_end : t1) - ld.t_start) / 1e9;
    double wall = (double)(t1 - ld.t_start) / 1e9;
    printf("{\"pattern\":\"%s\",\"bs\":%" PRIu64 ",\"qd\":%u,\"block\":%u,\"span\":%" PRIu64
           ",\"seconds\":%.3f,\"ops\":%" PRIu64 ",\"bytes\":%" PRIu64
           ",\"iops\":%.1f,\"mbps\":%.1f,\"lat_us\":%.1f,\"client_cpu\":%.2f}\n",
           pattern_names[o.pat], o.bs, o.qd, ld.block, ld.span_len, secs, ld.ops, ld.bytes,
           secs > 0 ? (double)ld.ops / secs : 0, secs > 0 ? (double)ld.bytes / 1e6 / secs : 0,
           ld.ops ? (double)ld.lat_sum_ns / 1e3 / (double)ld.ops : 0, wall > 0 ? cpu / wall : 0);
    fflush(stdout);

out:
    if (ld.ctx != NULL) {
        iscsi_set_timeout(ld.ctx, (int)o.stall);
        if (rc == 0 && iscsi_logout_sync(ld.ctx) != 0)
            fprintf(stderr, PROG ": logout: %s\n", iscsi_get_error(ld.ctx));
        iscsi_destroy_context(ld.ctx);
    }
    if (ld.slots != NULL)
        for (unsigned i = 0; i < o.qd; i++)
            free(ld.slots[i].buf);
    free(ld.slots);
    return rc;
}
