/*
 * iscsi-proto.h - the iSCSI wire format (RFC 7143): opcodes, Basic Header Segment fields,
 * status codes and the big-endian accessors the target uses to read and build PDUs.
 *
 * Every PDU starts with a 48-byte Basic Header Segment (BHS), followed by TotalAHSLength
 * 4-byte words of Additional Header Segments, an optional header digest (CRC32C, 4 bytes), a
 * data segment of DataSegmentLength bytes padded to a multiple of 4, and an optional data
 * digest. Field offsets below are byte offsets in the BHS.
 */
#ifndef CISTERN_ISCSI_PROTO_H
#define CISTERN_ISCSI_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#define ISCSI_BHS_SIZE 48
#define ISCSI_DIGEST_SIZE 4
#define ISCSI_AHS_MAX (255 * 4) /* TotalAHSLength is one byte of 4-byte words */

/* Opcodes (byte 0, low 6 bits); bit 6 of byte 0 is the Immediate flag. */
#define ISCSI_OP_NOP_OUT 0x00
#define ISCSI_OP_SCSI_CMD 0x01
#define ISCSI_OP_TMF_REQ 0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ 0x04
#define ISCSI_OP_DATA_OUT 0x05
#define ISCSI_OP_LOGOUT_REQ 0x06
#define ISCSI_OP_SNACK 0x10

#define ISCSI_OP_NOP_IN 0x20
#define ISCSI_OP_SCSI_RSP 0x21
#define ISCSI_OP_TMF_RSP 0x22
#define ISCSI_OP_LOGIN_RSP 0x23
#define ISCSI_OP_TEXT_RSP 0x24
#define ISCSI_OP_DATA_IN 0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T 0x31
#define ISCSI_OP_ASYNC 0x32
#define ISCSI_OP_REJECT 0x3f

#define ISCSI_OPCODE_MASK 0x3f
#define ISCSI_FLAG_IMMEDIATE 0x40 /* byte 0 */
#define ISCSI_FLAG_FINAL 0x80     /* byte 1 */

/* Common fields */
#define BHS_OPCODE 0
#define BHS_FLAGS 1
#define BHS_AHSLEN 4
#define BHS_DLEN 5 /* 3 bytes */
#define BHS_LUN 8  /* 8 bytes */
#define BHS_ITT 16
#define ISCSI_RSVD_TAG 0xffffffffu

/* SCSI Command */
#define CMD_FLAG_READ 0x40
#define CMD_FLAG_WRITE 0x20
#define CMD_ATTR_MASK 0x07
#define CMD_EDTL 20
#define CMD_CMDSN 24
#define CMD_EXPSTATSN 28
#define CMD_CDB 32 /* 16 bytes */

/* AHS types */
#define AHS_EXTENDED_CDB 1
#define AHS_BIDI_READ_LEN 2

/* SCSI Response */
#define RSP_FLAG_BIDI_OVERFLOW 0x10
#define RSP_FLAG_BIDI_UNDERFLOW 0x08
#define RSP_FLAG_OVERFLOW 0x04
#define RSP_FLAG_UNDERFLOW 0x02
#define RSP_RESPONSE 2
#define RSP_STATUS 3
#define RSP_STATSN 24
#define RSP_EXPCMDSN 28
#define RSP_MAXCMDSN 32
#define RSP_EXPDATASN 36
#define RSP_BIDI_RESIDUAL 40
#define RSP_RESIDUAL 44
#define ISCSI_RESPONSE_COMPLETED 0x00
#define ISCSI_RESPONSE_TARGET_FAILURE 0x01

/* Data-In / Data-Out */
#define DATA_FLAG_ACK 0x40    /* Data-In */
#define DATA_FLAG_STATUS 0x01 /* Data-In: status follows in this PDU */
#define DATA_TTT 20
#define DATA_STATSN 24 /* Data-In */
#define DATA_EXPCMDSN 28
#define DATA_MAXCMDSN 32
#define DATA_EXPSTATSN 28 /* Data-Out */
#define DATA_DATASN 36
#define DATA_OFFSET 40
#define DATA_RESIDUAL 44

/* R2T */
#define R2T_TTT 20
#define R2T_STATSN 24
#define R2T_EXPCMDSN 28
#define R2T_MAXCMDSN 32
#define R2T_R2TSN 36
#define R2T_OFFSET 40
#define R2T_LENGTH 44

/* NOP-Out / NOP-In */
#define NOP_TTT 20
#define NOP_CMDSN 24 /* NOP-Out */
#define NOP_STATSN 24 /* NOP-In */
#define NOP_EXPCMDSN 28
#define NOP_MAXCMDSN 32

/* Task Management */
#define TMF_FUNC_MASK 0x7f
#define TMF_REF_ITT 20
#define TMF_CMDSN 24
#define TMF_REF_CMDSN 32
#define TMF_EXP_DATASN 36
#define TMF_ABORT_TASK 1
#define TMF_ABORT_TASK_SET 2
#define TMF_CLEAR_ACA 3
#define TMF_CLEAR_TASK_SET 4
#define TMF_LUN_RESET 5
#define TMF_TARGET_WARM_RESET 6
#define TMF_TARGET_COLD_RESET 7
#define TMF_TASK_REASSIGN 8
#define TMF_RSP_COMPLETE 0
#define TMF_RSP_NO_TASK 1
#define TMF_RSP_NO_LUN 2
#define TMF_RSP_NOT_SUPPORTED 5
#define TMF_RSP_REJECTED 255

/* Login */
#define LOGIN_FLAG_TRANSIT 0x80
#define LOGIN_FLAG_CONTINUE 0x40
#define LOGIN_CSG(b) (((b) >> 2) & 3)
#define LOGIN_NSG(b) ((b) & 3)
#define LOGIN_VMAX 2
#define LOGIN_VMIN 3 /* request; VersionActive in the response */
#define LOGIN_ISID 8 /* 6 bytes */
#define LOGIN_TSIH 14
#define LOGIN_CID 20
#define LOGIN_CMDSN 24
#define LOGIN_EXPSTATSN 28
#define LOGIN_STATSN 24 /* response */
#define LOGIN_EXPCMDSN 28
#define LOGIN_MAXCMDSN 32
#define LOGIN_STATUS_CLASS 36
#define LOGIN_STATUS_DETAIL 37
#define STAGE_SECURITY 0
#define STAGE_OPERATIONAL 1
#define STAGE_FULL_FEATURE 3

/* Login status: class << 8 | detail */
#define LOGIN_OK 0x0000
#define LOGIN_INITIATOR_ERROR 0x0200
#define LOGIN_AUTH_FAILED 0x0201
#define LOGIN_FORBIDDEN 0x0202
#define LOGIN_NOT_FOUND 0x0203
#define LOGIN_REMOVED 0x0204
#define LOGIN_UNSUPPORTED_VERSION 0x0205
#define LOGIN_TOO_MANY_CONNECTIONS 0x0206
#define LOGIN_MISSING_PARAMETER 0x0207
#define LOGIN_CANT_INCLUDE 0x0208
#define LOGIN_SESSION_TYPE 0x0209
#define LOGIN_NO_SESSION 0x020a
#define LOGIN_INVALID_REQUEST 0x020b
#define LOGIN_TARGET_ERROR 0x0300
#define LOGIN_SERVICE_UNAVAILABLE 0x0301
#define LOGIN_OUT_OF_RESOURCES 0x0302

/* Text */
#define TEXT_FLAG_CONTINUE 0x40
#define TEXT_TTT 20
#define TEXT_CMDSN 24
#define TEXT_STATSN 24
#define TEXT_EXPCMDSN 28
#define TEXT_MAXCMDSN 32

/* Logout */
#define LOGOUT_REASON_MASK 0x7f
#define LOGOUT_CLOSE_SESSION 0
#define LOGOUT_CLOSE_CONNECTION 1
#define LOGOUT_REMOVE_FOR_RECOVERY 2
#define LOGOUT_CID 20
#define LOGOUT_CMDSN 24
#define LOGOUT_STATSN 24
#define LOGOUT_EXPCMDSN 28
#define LOGOUT_MAXCMDSN 32
#define LOGOUT_TIME2WAIT 40
#define LOGOUT_TIME2RETAIN 42
#define LOGOUT_RSP_OK 0
#define LOGOUT_RSP_NO_CID 1
#define LOGOUT_RSP_NO_RECOVERY 2

/* Reject */
#define REJECT_REASON 2
#define REJECT_STATSN 24
#define REJECT_EXPCMDSN 28
#define REJECT_MAXCMDSN 32
#define REJECT_DATASN 36
#define REJECT_DIGEST_ERROR 0x02
#define REJECT_SNACK_REJECT 0x03
#define REJECT_PROTOCOL_ERROR 0x04
#define REJECT_CMD_NOT_SUPPORTED 0x05
#define REJECT_IMMEDIATE_REJECT 0x06
#define REJECT_TASK_IN_PROGRESS 0x07
#define REJECT_INVALID_DATA_ACK 0x08
#define REJECT_INVALID_PDU_FIELD 0x09
#define REJECT_OUT_OF_RESOURCES 0x0a
#define REJECT_WAITING_FOR_LOGOUT 0x0c

/* Async message */
#define ASYNC_EVENT 36
#define ASYNC_EVENT_LOGOUT_REQUEST 1

/* Big-endian accessors */
static inline uint16_t iscsi_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t iscsi_get24(const uint8_t *p)
{
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}
static inline uint32_t iscsi_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t iscsi_get64(const uint8_t *p)
{
    return (uint64_t)iscsi_get32(p) << 32 | iscsi_get32(p + 4);
}
static inline void iscsi_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void iscsi_put24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 16);
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)v;
}
static inline void iscsi_put32(uint8_t *p, uint32_t v)
{
    iscsi_put16(p, (uint16_t)(v >> 16));
    iscsi_put16(p + 2, (uint16_t)v);
}
static inline void iscsi_put64(uint8_t *p, uint64_t v)
{
    iscsi_put32(p, (uint32_t)(v >> 32));
    iscsi_put32(p + 4, (uint32_t)v);
}

/* Serial number arithmetic (RFC 1982, 32 bits), for CmdSN and StatSN. */
static inline bool sn_lt(uint32_t a, uint32_t b)
{
    return a != b && (uint32_t)(b - a) < 0x80000000u;
}
static inline bool sn_le(uint32_t a, uint32_t b)
{
    return a == b || sn_lt(a, b);
}

/*
 * LUN encoding (SAM-5): LUNs below 256 use peripheral addressing (00b), larger ones flat
 * space addressing (01b); both decode to the LUN number here.
 */
static inline uint64_t iscsi_lun_decode(const uint8_t *p)
{
    switch (p[0] >> 6) {
    case 0:
        return p[1];
    case 1:
        return (uint64_t)(p[0] & 0x3f) << 8 | p[1];
    default:
        return UINT64_MAX; /* other methods are not used by this target */
    }
}
static inline void iscsi_lun_encode(uint8_t *p, uint64_t lun)
{
    for (int i = 0; i < 8; i++)
        p[i] = 0;
    if (lun < 256) {
        p[1] = (uint8_t)lun;
    } else {
        p[0] = (uint8_t)(0x40 | ((lun >> 8) & 0x3f));
        p[1] = (uint8_t)lun;
    }
}

#endif
