/*
 * scsi-priv.h - what the files of the SCSI block device (iscsi-target/scsi*.c) share.
 *
 *   scsi_lu.c     LU and nexus lifetime, the process-wide LU registry, the command table and
 *                 dispatch (CDB checks from the usage masks, unit attentions, reservation
 *                 conflicts), range locks, completion
 *   scsi_sense.c  sense data (fixed or descriptor format) and errno -> sense
 *   scsi_spc.c    INQUIRY and VPD, MODE SENSE/SELECT, REPORT LUNS, REQUEST SENSE, REPORT
 *                 SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS, TEST UNIT READY
 *   scsi_sbc.c    READ CAPACITY, reads, writes, VERIFY, WRITE SAME, UNMAP, COMPARE AND WRITE,
 *                 ORWRITE, GET LBA STATUS, SYNCHRONIZE CACHE, PRE-FETCH, START STOP UNIT,
 *                 READ DEFECT DATA
 *   scsi_pr.c     persistent reservations and SPC-2 RESERVE/RELEASE
 *   scsi_xcopy.c  EXTENDED COPY (LID1) and RECEIVE COPY RESULTS
 *
 * Locking: lu->lock guards everything mutable in the LU and in its nexus states (unit
 * attentions, last sense, mode parameters, reservations, range locks, the in-flight count).
 * It is never held across vol_submit() or a done() callback. The registry lock is taken
 * before an LU's lock, never after.
 */
#ifndef CISTERN_ISCSI_SCSI_PRIV_H
#define CISTERN_ISCSI_SCSI_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/common.h"
#include "iscsi-target/scsi.h"
#include "volumes/volumes.h"

#define SCSI_BLOCK 512u
#define SCSI_BLOCK_SHIFT 9

/* Limits we report in the Block Limits VPD page and enforce. */
#define SCSI_MAX_XFER_BLOCKS 65536u    /* 32 MiB per READ/WRITE/VERIFY: the transport's
                                          largest command (ISCSI_MAX_XFER) */
#define SCSI_MAX_CAW_BLOCKS 128u       /* COMPARE AND WRITE */
#define SCSI_MAX_WS_BLOCKS (1u << 21)  /* WRITE SAME: 1 GiB */
#define SCSI_MAX_UNMAP_DESC 256u       /* block descriptors per UNMAP */
#define SCSI_MAX_UNMAP_BLOCKS 0xFFFFFFFFu /* per UNMAP command: no limit */
#define SCSI_WS_CHUNK (1u << 20)       /* bytes written per step of a WRITE SAME pattern */
#define SCSI_NAA_LEN 8                 /* an LU's NAA designator: NAA 3, locally assigned */

/* Sense keys (SPC-4 table 50). */
#define SK_NO_SENSE 0x0
#define SK_RECOVERED_ERROR 0x1
#define SK_NOT_READY 0x2
#define SK_MEDIUM_ERROR 0x3
#define SK_HARDWARE_ERROR 0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION 0x6
#define SK_DATA_PROTECT 0x7
#define SK_COPY_ABORTED 0xA
#define SK_ABORTED_COMMAND 0xB
#define SK_MISCOMPARE 0xE

/* Additional sense codes, ASC << 8 | ASCQ. */
#define ASC_NO_ADDITIONAL 0x0000
#define ASC_WRITE_ERROR 0x0C00
#define ASC_INVALID_FIELD_IN_CIU 0x0E03 /* INVALID FIELD IN COMMAND INFORMATION UNIT */
#define ASC_UNRECOVERED_READ_ERROR 0x1100
#define ASC_MISCOMPARE_DURING_VERIFY 0x1D00
#define ASC_PARAMETER_LIST_LENGTH_ERROR 0x1A00
#define ASC_INVALID_OPCODE 0x2000
#define ASC_LBA_OUT_OF_RANGE 0x2100
#define ASC_INVALID_FIELD_IN_CDB 0x2400
#define ASC_LU_NOT_SUPPORTED 0x2500
#define ASC_INVALID_FIELD_IN_PARAM 0x2600
#define ASC_TOO_MANY_TARGET_DESC 0x2606
#define ASC_UNSUPPORTED_TARGET_DESC 0x2607
#define ASC_TOO_MANY_SEGMENT_DESC 0x2608
#define ASC_UNSUPPORTED_SEGMENT_DESC 0x2609
#define ASC_INVALID_RELEASE_OF_PR 0x2604
#define ASC_WRITE_PROTECTED 0x2700
#define ASC_SOFTWARE_WRITE_PROTECTED 0x2702
#define ASC_SPACE_ALLOC_FAILED_WP 0x2707
#define ASC_POWER_ON_RESET 0x2900
#define ASC_BUS_DEVICE_RESET 0x2903
#define ASC_I_T_NEXUS_LOSS 0x2907
#define ASC_MODE_PARAMETERS_CHANGED 0x2A01
#define ASC_RESERVATIONS_PREEMPTED 0x2A03
#define ASC_RESERVATIONS_RELEASED 0x2A04
#define ASC_REGISTRATIONS_PREEMPTED 0x2A05
#define ASC_CAPACITY_CHANGED 0x2A09
#define ASC_SAVING_NOT_SUPPORTED 0x3900
#define ASC_COPY_TARGET_NOT_REACHABLE 0x0D02
#define ASC_INTERNAL_TARGET_FAILURE 0x4400
#define ASC_INSUFFICIENT_REG_RESOURCES 0x5504

/* Opcodes. */
#define OP_TEST_UNIT_READY 0x00
#define OP_REQUEST_SENSE 0x03
#define OP_READ6 0x08
#define OP_WRITE6 0x0A
#define OP_INQUIRY 0x12
#define OP_MODE_SELECT6 0x15
#define OP_RESERVE6 0x16
#define OP_RELEASE6 0x17
#define OP_MODE_SENSE6 0x1A
#define OP_START_STOP_UNIT 0x1B
#define OP_READ_CAPACITY10 0x25
#define OP_READ10 0x28
#define OP_WRITE10 0x2A
#define OP_WRITE_VERIFY10 0x2E
#define OP_VERIFY10 0x2F
#define OP_PREFETCH10 0x34
#define OP_SYNC_CACHE10 0x35
#define OP_READ_DEFECT_DATA10 0x37
#define OP_WRITE_SAME10 0x41
#define OP_UNMAP 0x42
#define OP_MODE_SELECT10 0x55
#define OP_RESERVE10 0x56
#define OP_RELEASE10 0x57
#define OP_MODE_SENSE10 0x5A
#define OP_PR_IN 0x5E
#define OP_PR_OUT 0x5F
#define OP_EXTENDED_COPY 0x83
#define OP_RECEIVE_COPY_RESULTS 0x84
#define OP_READ16 0x88
#define OP_COMPARE_AND_WRITE 0x89
#define OP_WRITE16 0x8A
#define OP_ORWRITE16 0x8B
#define OP_WRITE_VERIFY16 0x8E
#define OP_VERIFY16 0x8F
#define OP_PREFETCH16 0x90
#define OP_SYNC_CACHE16 0x91
#define OP_WRITE_SAME16 0x93
#define OP_SERVICE_ACTION_IN16 0x9E
#define OP_REPORT_LUNS 0xA0
#define OP_MAINTENANCE_IN 0xA3
#define OP_READ12 0xA8
#define OP_WRITE12 0xAA
#define OP_WRITE_VERIFY12 0xAE
#define OP_VERIFY12 0xAF
#define OP_READ_DEFECT_DATA12 0xB7

#define SA_READ_CAPACITY16 0x10
#define SA_GET_LBA_STATUS 0x12
#define SA_REPORT_SUPPORTED_OPCODES 0x0C
#define SA_REPORT_SUPPORTED_TMF 0x0D
#define SA_RCR_COPY_STATUS 0x00
#define SA_RCR_OPERATING_PARAMS 0x03

/* ---------------------------------------------------------------------------------------- */
/* Big-endian fields                                                                         */
/* ---------------------------------------------------------------------------------------- */

static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get_be24(const uint8_t *p)
{
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}
static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}
static inline void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void put_be24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 16);
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* ---------------------------------------------------------------------------------------- */
/* LU, nexus and reservation state                                                            */
/* ---------------------------------------------------------------------------------------- */

#define SCSI_UA_MAX 8

struct nexus_state {
    struct scsi_nexus *nx;
    struct scsi_lu *lu;
    LIST_ENTRY(nexus_state) link;
    uint16_t ua[SCSI_UA_MAX]; /* pending unit attentions (ASC/ASCQ), oldest first */
    unsigned nua;
    uint8_t last_sense[SCSI_SENSE_MAX]; /* for REQUEST SENSE */
    uint32_t last_sense_len;
};

/* One registration of a persistent reservation: an I_T nexus by its port names. */
struct pr_reg {
    LIST_ENTRY(pr_reg) link;
    uint64_t key;
    char initiator[sizeof(((struct scsi_nexus *)0)->initiator_port)];
    char target[sizeof(((struct scsi_nexus *)0)->target_port)];
    uint16_t rel_target_port;
};

/* Persistent reservation types (SPC-4 table 170). */
#define PR_TYPE_WE 1
#define PR_TYPE_EA 3
#define PR_TYPE_WE_RO 5
#define PR_TYPE_EA_RO 6
#define PR_TYPE_WE_AR 7
#define PR_TYPE_EA_AR 8

struct pr_state {
    LIST_HEAD(, pr_reg) regs;
    unsigned nregs;
    uint32_t generation;
    bool aptpl; /* the last REGISTER's APTPL: the state is in lu->pr_file */
    /* The reservation: none when type is 0. For the all-registrants types the holder is
     * every registration (holder NULL); for the others, one registration. */
    uint8_t type;
    struct pr_reg *holder;
    /* An SPC-2 RESERVE, held by one nexus until RELEASE or the nexus goes away. */
    struct nexus_state *spc2_holder;
};

/* Mode parameters that can change (one set per LU, shared by every nexus). */
struct mode_state {
    bool wce;     /* caching page: write cache enabled (off: every write is FUA) */
    bool d_sense; /* control page: descriptor-format sense */
    bool swp;     /* control page: software write protect */
};

/* A range of blocks held by a command: writes share, COMPARE AND WRITE excludes. */
struct range_lock {
    TAILQ_ENTRY(range_lock) link;
    struct scsi_lu *lu;
    uint64_t lba, n;
    bool exclusive;
    bool granted;
    void (*granted_fn)(struct range_lock *rl); /* called, without lu->lock, when granted late */
};

/* The outcome of an EXTENDED COPY, kept for RECEIVE COPY RESULTS (COPY STATUS). */
#define XCOPY_STATUS_KEEP 8
struct xcopy_status {
    bool used;
    char initiator[sizeof(((struct scsi_nexus *)0)->initiator_port)];
    uint8_t list_id;
    uint8_t status;   /* COPY MANAGEMENT STATUS: 01h done, 02h done with an error */
    uint16_t segments; /* segments processed */
    uint64_t bytes;
};

struct scsi_lu {
    struct vol *vol;
    bool readonly;
    uint64_t lun;
    uint8_t pool_uuid[16];
    uint64_t vol_id;
    char name[2 * NAME_MAX_LEN + 4];
    uint8_t naa[SCSI_NAA_LEN]; /* NAA designator (VPD 0x83, EXTENDED COPY) */
    char serial[SCSI_SERIAL_LEN]; /* unit serial number (VPD 0x80): scsi_serial */
    char *pr_file;           /* the APTPL state file, or NULL (no pr_dir) */
    uint32_t grain;          /* bytes */
    unsigned lbppbe;         /* log2(grain / 512) */

    pthread_mutex_t lock;
    pthread_cond_t idle;     /* signalled when inflight reaches 0 */
    unsigned inflight;       /* commands and detached requests in flight */
    uint64_t size;           /* bytes, as last seen (for CAPACITY DATA HAS CHANGED) */
    LIST_HEAD(, nexus_state) nexuses;
    struct mode_state mode;
    struct pr_state pr;
    TAILQ_HEAD(, range_lock) ranges;
    struct xcopy_status xstat[XCOPY_STATUS_KEEP];
    unsigned xstat_next;
    LIST_ENTRY(scsi_lu) reg_link; /* the registry */
};

/* ---------------------------------------------------------------------------------------- */
/* The command table                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* Flags of a table entry. */
#define OPF_NO_LU 0x0001     /* runs with cmd->lu NULL (INQUIRY, REPORT LUNS, REQUEST SENSE) */
#define OPF_NO_UA 0x0002     /* neither reports nor clears a unit attention */
#define OPF_SA 0x0004        /* has a service action in byte 1, bits 4..0 */
#define OPF_WRITE 0x0008     /* changes the medium: refused on read-only LUs */
/* Reservation class (SPC-4 5.13.1 table 62 and SBC-3 4.17): */
#define OPF_PR_ALLOW 0x0010  /* allowed under every reservation */
#define OPF_PR_READ 0x0020   /* conflicts under the exclusive access types */
#define OPF_PR_WRITE 0x0040  /* conflicts under every type unless registered for *_RO/_AR */
#define OPF_PR_OWN 0x0080    /* PR IN/OUT, RESERVE/RELEASE: the handler decides */
#define OPF_SPC2_ALLOW 0x0100 /* allowed under another nexus's SPC-2 reservation */

struct scsi_op {
    uint8_t opcode;
    uint8_t sa;
    uint8_t cdb_len;
    uint16_t flags;
    uint8_t usage[16]; /* CDB usage data (usage[0] is the opcode): bits the LU looks at */
    void (*fn)(struct scsi_cmd *cmd);
    const char *name;
};

extern const struct scsi_op scsi_ops[];
extern const size_t scsi_nops;

/* The entry for @opcode / @sa (sa ignored for opcodes without service actions); NULL when
 * not supported. *opcode_known tells "opcode known, service action not". */
const struct scsi_op *scsi_op_find(uint8_t opcode, uint8_t sa, bool *opcode_known);

/* ---------------------------------------------------------------------------------------- */
/* Commands in flight                                                                         */
/* ---------------------------------------------------------------------------------------- */

/* A command that talks to the volume: one per command, freed at completion. */
struct scsi_io {
    struct scsi_cmd *cmd;
    struct scsi_lu *lu;
    struct vol *vol;
    struct vol_req vr;
    void (*next)(struct scsi_io *io, int res); /* the step run when vr completes */
    uint8_t *buf;       /* aligned scratch buffer (owned) */
    size_t buf_len;
    struct range_lock rl;
    bool locked;        /* rl is in lu->ranges */
    bool detached;      /* cmd already completed (SYNCHRONIZE CACHE with IMMED) */
    /* Per-command state. */
    uint64_t lba, nblocks;
    uint64_t pos, end;  /* bytes: progress of a multi-step command */
    uint32_t flags;     /* VOL_FUA ... */
    bool write;
    unsigned idx, count; /* UNMAP descriptors, XCOPY segments */
    const uint8_t *param;
    void *ctx;          /* EXTENDED COPY state */
    void (*lock_cont)(struct scsi_io *io); /* run when rl is granted */
    struct reactor_work work; /* a completion deferred to unwind the stack */
    int res;
};

/* Allocates an I/O for @cmd (cmd->internal). NULL: the command was completed with BUSY. */
struct scsi_io *scsi_io_new(struct scsi_cmd *cmd, size_t buf_len);
/* Submits one volume request; @next runs with its result. */
void scsi_io_submit(struct scsi_io *io, enum vol_op op, uint32_t flags, uint64_t off,
                    uint64_t len, void *buf, void (*next)(struct scsi_io *io, int res));
/* Completes the command of @io (status and sense already set, or GOOD), releases its range
 * lock and frees it. */
void scsi_io_finish(struct scsi_io *io);
/* Takes a range lock for @io over [lba, lba + n) of io->lu (or of @lu when not NULL: EXTENDED
 * COPY writes to other LUs); calls @cont (now or later) once held. One at a time per I/O;
 * scsi_io_finish releases it, scsi_io_unlock earlier. */
void scsi_io_lock(struct scsi_io *io, uint64_t lba, uint64_t n, bool exclusive,
                  void (*cont)(struct scsi_io *io));
void scsi_io_lock_on(struct scsi_io *io, struct scsi_lu *lu, uint64_t lba, uint64_t n,
                     bool exclusive, void (*cont)(struct scsi_io *io));
void scsi_io_unlock(struct scsi_io *io);

/* Completes @cmd: records its sense for REQUEST SENSE, drops the LU's in-flight count and
 * calls done(). Nothing may touch cmd or the LU afterwards. */
void scsi_complete(struct scsi_cmd *cmd);
/* Holds / releases an in-flight count on @lu (for requests that outlive their command). */
void scsi_lu_get(struct scsi_lu *lu);
void scsi_lu_put(struct scsi_lu *lu);

/* ---------------------------------------------------------------------------------------- */
/* Sense                                                                                      */
/* ---------------------------------------------------------------------------------------- */

struct scsi_sense_spec {
    uint8_t key;
    uint16_t asc;       /* ASC << 8 | ASCQ */
    bool info_valid;
    uint64_t info;      /* INFORMATION */
    bool sks_valid;
    uint8_t sks[3];     /* sense-key specific bytes, SKSV set by the encoder */
};

/* Encodes @s into @buf (SCSI_SENSE_MAX) in fixed or descriptor format; returns the length. */
uint32_t scsi_sense_encode(uint8_t *buf, const struct scsi_sense_spec *s, bool descriptor);
/* CHECK CONDITION with @key/@asc (in the format the LU's control page asks for). */
void scsi_sense(struct scsi_cmd *cmd, uint8_t key, uint16_t asc);
void scsi_sense_spec(struct scsi_cmd *cmd, const struct scsi_sense_spec *s);
/* ILLEGAL REQUEST, INVALID FIELD IN CDB (or PARAMETER LIST when !in_cdb) with a field
 * pointer to @byte and, when bit >= 0, @bit. */
void scsi_sense_field(struct scsi_cmd *cmd, bool in_cdb, unsigned byte, int bit);
#define scsi_bad_cdb(cmd, byte, bit) scsi_sense_field(cmd, true, byte, bit)
#define scsi_bad_param(cmd, byte, bit) scsi_sense_field(cmd, false, byte, bit)
/* ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE. */
void scsi_sense_lba(struct scsi_cmd *cmd);
/* The sense for a volume error: -EIO (read or write error), -ENOSPC, -EROFS, -ENOMEM
 * (BUSY status), else HARDWARE ERROR. */
void scsi_sense_errno(struct scsi_cmd *cmd, int err, bool write);
/* Whether the LU uses descriptor-format sense (control mode page D_SENSE). */
bool scsi_lu_d_sense(struct scsi_lu *lu);

/* ---------------------------------------------------------------------------------------- */
/* Helpers of the handlers                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Copies up to @len bytes of response data to Data-In, limited by xfer_len (set by the
 * caller to the allocation length) and data_in_max; sets data_in_len and GOOD. */
void scsi_data_in(struct scsi_cmd *cmd, const void *buf, size_t len);
/* Queues unit attention @asc for every nexus of @lu but @except (may be NULL); under
 * lu->lock. */
void scsi_ua_all_locked(struct scsi_lu *lu, struct nexus_state *except, uint16_t asc);
void scsi_ua_queue_locked(struct nexus_state *ns, uint16_t asc);
static inline struct nexus_state *scsi_ns(struct scsi_cmd *cmd)
{
    return cmd->nx ? (struct nexus_state *)cmd->nx->priv : NULL;
}
static inline uint64_t scsi_lu_blocks(struct scsi_lu *lu) { return vol_size(lu->vol) >> 9; }
/* Whether @lba + @n lies beyond the LU (sets LBA OUT OF RANGE when it does). */
bool scsi_check_range(struct scsi_cmd *cmd, uint64_t lba, uint64_t n);
/* Whether writes are refused (read-only LU or SWP); sets DATA PROTECT when they are. */
bool scsi_check_writable(struct scsi_cmd *cmd);

/* The LU whose NAA designator is @naa, held (scsi_lu_put when done); NULL when none. */
struct scsi_lu *scsi_lu_lookup_naa(const uint8_t naa[SCSI_NAA_LEN]);

/* Handlers (one per table entry). */
void spc_test_unit_ready(struct scsi_cmd *cmd);
void spc_inquiry(struct scsi_cmd *cmd);
void spc_request_sense(struct scsi_cmd *cmd);
void spc_report_luns(struct scsi_cmd *cmd);
void spc_mode_sense(struct scsi_cmd *cmd);
void spc_mode_select(struct scsi_cmd *cmd);
void spc_maintenance_in(struct scsi_cmd *cmd);
void sbc_read_capacity10(struct scsi_cmd *cmd);
void sbc_read_capacity16(struct scsi_cmd *cmd);
void sbc_read(struct scsi_cmd *cmd);
void sbc_write(struct scsi_cmd *cmd);
void sbc_verify(struct scsi_cmd *cmd);
void sbc_sync_cache(struct scsi_cmd *cmd);
void sbc_write_same(struct scsi_cmd *cmd);
void sbc_unmap(struct scsi_cmd *cmd);
void sbc_compare_and_write(struct scsi_cmd *cmd);
void sbc_get_lba_status(struct scsi_cmd *cmd);
void sbc_orwrite(struct scsi_cmd *cmd);
void sbc_prefetch(struct scsi_cmd *cmd);
void sbc_start_stop_unit(struct scsi_cmd *cmd);
void sbc_read_defect_data(struct scsi_cmd *cmd);
void pr_in(struct scsi_cmd *cmd);
void pr_out(struct scsi_cmd *cmd);
void pr_reserve6(struct scsi_cmd *cmd);
void pr_release6(struct scsi_cmd *cmd);
void xcopy_extended_copy(struct scsi_cmd *cmd);
void xcopy_receive_copy_results(struct scsi_cmd *cmd);

/* Reservations: whether @cmd (entry @op) conflicts with the LU's reservations; under
 * lu->lock. */
bool pr_conflict_locked(struct scsi_cmd *cmd, const struct scsi_op *op);
/* A nexus goes away / an LU reset: drops an SPC-2 reservation it holds. Under lu->lock. */
void pr_nexus_gone_locked(struct scsi_lu *lu, struct nexus_state *ns);
void pr_reset_locked(struct scsi_lu *lu);
/* At the LU's creation: its registrations kept from before (by its identity), if any. */
void pr_open(struct scsi_lu *lu);
/* At its destruction: keeps its registrations and reservation for the next pr_open. */
void pr_close(struct scsi_lu *lu);
/* The APTPL state file of the LU with unit serial number @serial (malloc'd), or NULL. */
char *pr_file_path(const char *pr_dir, const char *serial);

/* Decodes LBA and transfer length of a READ/WRITE/VERIFY-shaped CDB. */
void sbc_decode_rw(const uint8_t *cdb, uint64_t *lba, uint32_t *nblocks);

#endif
