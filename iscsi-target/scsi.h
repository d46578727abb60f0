/*
 * scsi.h - the SCSI block device of the iSCSI target: SPC-4 and SBC-3 commands executed on a
 * volume. Transport-independent: iSCSI (the rest of iscsi-target/) delivers a command with
 * all its Data-Out gathered, and sends back its Data-In, status and sense.
 *
 * Model
 *   A logical unit (struct scsi_lu) is one volume handle. It is shared by every session that
 *   reaches it, so what is per LU (persistent reservations, the range locks of COMPARE AND
 *   WRITE) lives in it; what is per I_T nexus (unit attentions, the sense of the last
 *   command for REQUEST SENSE) lives in a struct scsi_nexus the transport keeps per session
 *   and LU pair and hands in with every command.
 *
 * Transfer lengths and residuals
 *   The transport gathers the Data-Out the initiator sends (at most the Expected Data
 *   Transfer Length, EDTL) into cmd->data_out, and gives a Data-In buffer of EDTL bytes. The
 *   SCSI layer reads the length the CDB asks for (cmd->xfer_len, set before done()) and
 *   never transfers more than the buffers hold: data_in_len <= data_in_max. The transport
 *   derives the iSCSI residual from EDTL and xfer_len (RFC 7143 11.4.5).
 *
 * Threads
 *   scsi_submit() is called on a reactor thread; cmd->done() runs on a reactor thread (not
 *   necessarily the same one), possibly before scsi_submit() returns. A struct scsi_lu may be
 *   used from any number of threads at once.
 *
 * Errors
 *   Command failures are SCSI status and sense in the command, never a return value.
 */
#ifndef CISTERN_ISCSI_SCSI_H
#define CISTERN_ISCSI_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vol;
struct scsi_lu;

#define SCSI_SENSE_MAX 252 /* bytes of sense data (fixed or descriptor format) */
#define SCSI_CDB_MAX 32

/* Status codes (SAM-5). */
#define SCSI_GOOD 0x00
#define SCSI_CHECK_CONDITION 0x02
#define SCSI_CONDITION_MET 0x04
#define SCSI_BUSY 0x08
#define SCSI_RESERVATION_CONFLICT 0x18
#define SCSI_TASK_SET_FULL 0x28
#define SCSI_TASK_ABORTED 0x40

/* Task attributes (SAM-5), as iSCSI carries them. */
enum scsi_task_attr {
    SCSI_ATTR_UNTAGGED = 0,
    SCSI_ATTR_SIMPLE = 1,
    SCSI_ATTR_ORDERED = 2,
    SCSI_ATTR_HEAD_OF_QUEUE = 3,
    SCSI_ATTR_ACA = 4,
};

struct scsi_lu_config {
    struct vol *vol;       /* the LU's handle; the caller closes it after scsi_lu_destroy */
    bool readonly;         /* snapshots: every write is refused (DATA PROTECT) */
    bool grain_physical;   /* READ CAPACITY (16) gives the grain as the physical block;
                              else a physical block is one logical block */
    uint64_t lun;          /* its number in the target (for REPORT LUNS and sense) */
    uint8_t pool_uuid[16]; /* with vol_id: the LU's unique identity (VPD 0x80, 0x83) */
    uint64_t vol_id;
    const char *name;      /* "POOL/VOL" or "POOL/VOL@SNAP", shown in VPD 0x83 as a
                              vendor-specific designator and in logs */
    const char *pr_dir;    /* a directory (existing) for the state files of persistent
                              reservations made with APTPL; NULL: APTPL is refused */
};

/* Creates an LU. Errors: -ENOMEM, -EINVAL. Not on a reactor thread. */
int scsi_lu_create(const struct scsi_lu_config *cfg, struct scsi_lu **out);
/* Waits for its commands and frees it (not the volume). Not on a reactor. Accepts NULL.
 * Its persistent reservations are kept for the next LU of the same volume. */
void scsi_lu_destroy(struct scsi_lu *lu);
/* Forgets the persistent reservations kept for volumes that have no LU now: the target
 * stops, which is a power loss to its initiators (what APTPL kept stays in its files). */
void scsi_pr_forget(void);
/* The volume is deleted: forgets what is kept for it, and removes its APTPL file from
 * @pr_dir (NULL: none). */
void scsi_pr_drop(const char *pr_dir, const uint8_t pool_uuid[16], uint64_t vol_id);

#define SCSI_SERIAL_LEN 64
/* The unit serial number of a volume's LU (VPD 0x80), which also names its APTPL file. */
void scsi_serial(const uint8_t pool_uuid[16], uint64_t vol_id, char out[SCSI_SERIAL_LEN]);

/*
 * The I_T nexus state of one session on one LU. The initiator port name is
 * "IQN,i,0xISID" (SPC-4 TransportID of iSCSI, format 01b), the target port name
 * "IQN,t,0xTPGT"; persistent reservations key their registrations by these names, so a
 * registration outlives the session that made it.
 */
struct scsi_nexus {
    char initiator_port[256 + 32];
    char target_port[256 + 32];
    uint16_t rel_target_port; /* relative target port identifier (VPD 0x83, PR) */
    /* Owned by the SCSI layer; zeroed by the transport before scsi_nexus_attach. */
    void *priv;
};

/* Registers @nx with @lu (a new nexus sees a POWER ON OR RESET unit attention first) and
 * forgets it. Thread-safe. Errors: -ENOMEM. Detach only once the nexus's commands have
 * completed (the SCSI layer records their sense in it); detaching releases an SPC-2
 * reservation the nexus holds, never a persistent one. */
int scsi_nexus_attach(struct scsi_lu *lu, struct scsi_nexus *nx);
void scsi_nexus_detach(struct scsi_lu *lu, struct scsi_nexus *nx);

struct scsi_cmd {
    /* Set by the transport. */
    struct scsi_lu *lu;       /* NULL when no LU has this LUN (see scsi_submit) */
    struct scsi_nexus *nx;    /* the nexus of the session on this LU; NULL when lu is */
    uint64_t lun;
    uint8_t cdb[SCSI_CDB_MAX];
    unsigned cdb_len;
    enum scsi_task_attr attr;
    void *data_out;           /* the Data-Out received, data_out_len bytes; when aligned to
                                 4096, writes go to the volume from it without a copy */
    uint32_t data_out_len;
    void *data_in;            /* Data-In buffer of data_in_max bytes, aligned to 4096 */
    uint32_t data_in_max;
    /* REPORT LUNS: fills up to @max LUN numbers of the target, ascending, and returns how
     * many there are in all. */
    size_t (*report_luns)(void *ctx, uint64_t *luns, size_t max);
    void *report_luns_ctx;
    void (*done)(struct scsi_cmd *cmd);
    void *priv;               /* the transport's */

    /* Set by the SCSI layer before done(). */
    uint8_t status;           /* SCSI_GOOD, SCSI_CHECK_CONDITION, ... */
    uint32_t xfer_len;        /* bytes the CDB asks to transfer (for residuals) */
    uint32_t data_in_len;     /* Data-In bytes produced */
    uint8_t sense[SCSI_SENSE_MAX];
    uint32_t sense_len;       /* 0 unless CHECK CONDITION */

    void *internal;           /* the SCSI layer's, while in flight */
};

/*
 * Returns the Data-Out length the CDB of @cmd asks for (0 for commands without Data-Out), so
 * that the transport can tell a write it must gather from one it may refuse at once. Needs
 * only cdb and cdb_len.
 * WRITE SAME and COMPARE AND WRITE must be given exactly their size, so for them it returns
 * UINT32_MAX: gather all the initiator sends (EDTL), and a longer Data-Out is refused. A
 * WRITE (or WRITE AND VERIFY) given fewer whole blocks than its CDB asks writes those.
 */
uint32_t scsi_data_out_len(const struct scsi_cmd *cmd);

/*
 * Executes @cmd. With cmd->lu NULL, answers as a target does for a LUN it does not have:
 * INQUIRY with peripheral qualifier 011b, REPORT LUNS, REQUEST SENSE, and LOGICAL UNIT NOT
 * SUPPORTED for everything else. done() is always called.
 */
void scsi_submit(struct scsi_cmd *cmd);

/* Task management. LUN RESET and TARGET WARM RESET: releases reservations that are not
 * persistent and queues a BUS DEVICE RESET unit attention for every nexus but @from. The
 * transport waits for (or aborts) the commands it has in flight itself. */
void scsi_lu_reset(struct scsi_lu *lu, struct scsi_nexus *from);

#endif
