/*
 * Cistern iSCSI target: serves volumes as SCSI logical units to iSCSI initiators (Linux
 * open-iscsi, libiscsi, qemu, ESXi), RFC 7143.
 *
 * Model
 *   The daemon supplies targets and their LUNs through struct iscsi_targets, the way
 *   struct nbd_exports supplies NBD exports: each target is an IQN, each LUN a volume or
 *   snapshot. The target speaks discovery sessions (SendTargets) and normal sessions: login
 *   with CHAP or mutual CHAP (MD5) and the operational keys of RFC 7143, then SCSI commands
 *   with Data-In, Data-Out, R2T, immediate and unsolicited data, NOP pings both ways, Text,
 *   task management and logout. Error recovery level 0; one connection per session
 *   (MaxConnections is negotiated down to 1); a login with the ISID of a live session
 *   reinstates it.
 *
 *   A logical unit (iscsi-target/scsi.h) is opened when a session first sends a command to
 *   its LUN and is shared by every session that uses it; it is closed, and its volume handed
 *   back through lun_close(), when the last session using it ends. LUNs are looked up
 *   lazily, so volumes created later are reachable at once; iscsi_server_luns_changed()
 *   makes sessions look their LUNs up again after LUN numbers were reassigned.
 *
 * Threads
 *   The listening socket is accepted on one reactor (pool_reactor_*); each connection lives
 *   on one reactor, given in turn, where its socket I/O and its SCSI commands run. The
 *   callbacks marked "reactor" below run on reactor threads and must not block for long;
 *   those marked "service" run on the server's own service thread, which opens and closes
 *   logical units (a volume close waits for requests that complete on the reactors).
 *
 * Untrusted input
 *   Every length, offset, count and key from an initiator is checked before use. A
 *   malformed PDU is answered with a Reject PDU or the login status the RFC names; one that
 *   breaks the framing (a lying length, a bad digest at error recovery level 0) ends its
 *   connection, after its commands in flight finished. One initiator never affects another.
 *
 * Errors
 *   0 or a negative errno; causes are logged once, naming the initiator or the address.
 */
#ifndef CISTERN_ISCSI_TARGET_H
#define CISTERN_ISCSI_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vol;
struct iscsi_server;

#define ISCSI_NAME_MAX 223       /* iSCSI names, bytes (RFC 7143 4.2.7.1) */
#define ISCSI_CHAP_MAX 255       /* CHAP user names and secrets, bytes */
#define ISCSI_MAX_RECV_SEGMENT (256u << 10) /* our MaxRecvDataSegmentLength */
#define ISCSI_MAX_BURST (1u << 20)          /* our MaxBurstLength */
#define ISCSI_FIRST_BURST (256u << 10)      /* our FirstBurstLength */
#define ISCSI_MAX_OUTSTANDING_R2T 16        /* our MaxOutstandingR2T */
#define ISCSI_CMD_WINDOW 64                 /* commands in flight per session */
#define ISCSI_MAX_XFER (32u << 20) /* largest Expected Data Transfer Length of a command */
#define ISCSI_TPGT 1               /* the one target portal group */

/* How a target (or the discovery service) authenticates initiators. */
struct iscsi_auth {
    bool allow_none;                  /* AuthMethod=None is accepted */
    char user[ISCSI_CHAP_MAX + 1];    /* CHAP: the initiator's name and secret ("" none) */
    char secret[ISCSI_CHAP_MAX + 1];
    char mutual_user[ISCSI_CHAP_MAX + 1];   /* mutual CHAP: the target's name and secret */
    char mutual_secret[ISCSI_CHAP_MAX + 1]; /* ("" when the target has none) */
};

/* What the daemon says about a logical unit it opened. */
struct iscsi_lu_info {
    struct vol *vol;       /* the handle; handed back through lun_close() */
    bool readonly;         /* snapshots */
    bool grain_physical;   /* report the volume's grain as the physical block */
    uint8_t pool_uuid[16]; /* with vol_id: the LU's identity */
    uint64_t vol_id;
    char name[512]; /* "POOL/VOL" or "POOL/VOL@SNAP" */
};

struct iscsi_targets {
    /*
     * Login to target @iqn (NULL: a discovery session) by initiator @initiator: returns 0
     * and fills *auth, -ENOENT when there is no such target, -EACCES when the initiator is
     * not allowed to reach it. Reactor; may read a small file.
     */
    int (*login)(void *ctx, const char *iqn, const char *initiator, struct iscsi_auth *auth);
    /* Calls @fn for each target @initiator may reach, until it returns non-zero
     * (returned). Reactor. */
    int (*list)(void *ctx, const char *initiator, int (*fn)(void *c, const char *iqn), void *c);
    /* Fills up to @max LUNs of target @iqn in ascending order and returns how many it has
     * in all. Reactor. */
    size_t (*luns)(void *ctx, const char *iqn, uint64_t *luns, size_t max);
    /* The identity of LUN @lun of @iqn (pool uuid and volume id), without opening it:
     * 0 or -ENOENT. Service. */
    int (*lun_resolve)(void *ctx, const char *iqn, uint64_t lun, uint8_t pool_uuid[16],
                       uint64_t *vol_id);
    /* Opens LUN @lun of @iqn: 0 and *out, -ENOENT, or another negative errno. Service. */
    int (*lun_open)(void *ctx, const char *iqn, uint64_t lun, struct iscsi_lu_info *out);
    /* Gives back a handle from lun_open (after its LU is destroyed). Service. */
    void (*lun_close)(void *ctx, struct vol *v);
};

struct iscsi_config {
    const char *listen;        /* "ADDR:PORT" or "[ADDR6]:PORT"; NULL: none (connections come
                                  only from iscsi_server_adopt) */
    unsigned nop_interval_s;   /* an idle connection is pinged (NOP-In) this often; 0: 10 */
    unsigned nop_timeout_s;    /* ... and dropped when no answer comes in this time; 0: 30 */
    unsigned login_timeout_s;  /* a login not finished in this time is dropped; 0: 30 */
    const char *pr_dir;        /* where persistent reservations made with APTPL are kept
                                  (created if missing); NULL: APTPL is refused */
};

/*
 * Starts a target: binds and listens (before returning), and starts accepting on a reactor.
 * @targets and @ctx must outlive the server. Errors: -EINVAL (a bad address), -EADDRINUSE,
 * other socket errors, -ENOMEM. Blocking.
 */
int iscsi_server_start(const struct iscsi_config *cfg, const struct iscsi_targets *targets,
                       void *ctx, struct iscsi_server **out);

/* Serves one already connected stream socket (tests, the fuzzer): the server owns @fd from
 * now on, even on failure. Thread-safe. Errors: -ESHUTDOWN, -ENOMEM. */
int iscsi_server_adopt(struct iscsi_server *srv, int fd);

/* Connections not yet freed. Thread-safe. */
unsigned iscsi_server_connections(struct iscsi_server *srv);

/* LUN numbers were reassigned: sessions look up each LUN again at its next command.
 * Thread-safe, never blocks. */
void iscsi_server_luns_changed(struct iscsi_server *srv);

/*
 * Ends every session that uses the logical unit of volume @vol_id of the pool @pool_uuid:
 * its commands in flight complete and are answered, then it logs out the hard way (the
 * connection closes) and its LUs are released, which hands the volume back through
 * lun_close() when no other session uses it. Returns at once. For pulling a volume from
 * under its initiators (delete, shrink, rollback with --force); iscsi_server_evict_end
 * forgets the request. Thread-safe.
 */
void iscsi_server_evict(struct iscsi_server *srv, const uint8_t pool_uuid[16], uint64_t vol_id);
void iscsi_server_evict_end(struct iscsi_server *srv, const uint8_t pool_uuid[16],
                            uint64_t vol_id);

/*
 * Stops accepting, ends every session (commands in flight finish first), destroys every
 * logical unit, hands every volume back through lun_close(), and frees the server. Must
 * not be called on a reactor thread. Accepts NULL.
 */
void iscsi_server_stop(struct iscsi_server *srv);

#endif
