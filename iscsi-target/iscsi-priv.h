/*
 * iscsi-priv.h - what the files of the iSCSI target share: the server, a connection (which
 * is also its session: one connection per session), a task, and the calls between
 *
 *   server.c      starting, stopping, its part of the listener (pool/listener.h); the
 *                 session table (reinstatement); the logical units shared by sessions; the
 *                 service thread; the NOP ticker
 *   conn.c        one connection: its states, its part of the stream (pool/stream.h)
 *   pdu.c         the PDU reader (BHS, AHS, digests, data segment) and dispatch by opcode
 *   text.c        key=value lists: parsing, negotiation of the operational keys
 *   login.c       the login phase: stages, security negotiation, CHAP
 *   session.c     a session's LUNs: lookup, opening on the service thread, nexus
 *   fullfeature.c SCSI commands, Data-In/Out, R2T, NOP, Text, task management, logout
 *
 * Threads
 *   A connection is touched only by the reactor that owns it, except for the fields guarded
 *   by the server lock (the *_pending flags of posted work and its place in the server's
 *   list) and its final freeing, which the service thread does once the reactor has let
 *   go of it. Jobs posted to the service thread hold the connection (c->jobs).
 */
#ifndef CISTERN_ISCSI_PRIV_H
#define CISTERN_ISCSI_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/common.h"
#include "iscsi-target/iscsi-proto.h"
#include "iscsi-target/iscsi-target.h"
#include "iscsi-target/scsi.h"
#include "pool/listener.h"
#include "pool/pool.h"
#include "pool/stream.h"
#include "volumes/volumes.h"

#define ISCSI_LOGIN_DATA_MAX (64u << 10) /* text of a login or text request (continued) */
#define ISCSI_LOGIN_SEGMENT 8192u     /* MaxRecvDataSegmentLength before it is negotiated */
#define ISCSI_MAX_INFLIGHT_BYTES (256u << 20) /* task buffers per connection */
#define ISCSI_MAX_IMMEDIATE 16        /* immediate commands in flight */
#define ISCSI_MAX_LUNS_PER_SESSION 256 /* LUNs one session may have opened */

enum conn_state {
    CS_BHS,     /* reading a Basic Header Segment (48 bytes) */
    CS_AHS,     /* reading the AHS and the header digest */
    CS_DATA,    /* reading the data segment (into a task's buffer, the data buffer, or away) */
    CS_TAIL,    /* reading the data segment's padding and digest */
    CS_WAIT,    /* a header is read, but too much output waits for the initiator */
};
/* Closing and dead are the stream's states (c->s.state); c->state stays where input ended. */

enum conn_phase {
    PH_LOGIN,  /* login PDUs only */
    PH_FULL,   /* full feature phase */
    PH_LOGOUT, /* a logout was accepted: its response goes out when the tasks are done */
};

const char *iscsi_state_name(enum conn_state s);

struct iscsi_conn;
struct iscsi_lu;

/* A logical unit shared by sessions (server.c), keyed by pool uuid, volume id and LUN. */
struct iscsi_lu {
    LIST_ENTRY(iscsi_lu) link; /* in srv->lus (service thread only) */
    uint8_t pool_uuid[16];
    uint64_t vol_id;
    uint64_t lun;
    char target[ISCSI_NAME_MAX + 1];
    struct vol *vol;
    struct scsi_lu *lu;
    unsigned refs; /* bindings */
};

/* One session's use of one LU: its nexus. Freed with the connection. */
struct iscsi_binding {
    struct iscsi_binding *next;
    struct iscsi_lu *ilu;
    struct scsi_nexus nx;
    bool attached;
};

enum slu_state {
    SLU_NONE,    /* not looked up (or stale) */
    SLU_OPENING, /* a job on the service thread looks it up and opens it */
    SLU_READY,   /* bound (b set), or known absent (b NULL) */
};

/* A LUN as one session sees it. */
struct sess_lu {
    uint64_t lun;
    enum slu_state state;
    uint64_t gen;              /* srv->lun_gen when looked up */
    struct iscsi_binding *b;   /* NULL: no such LUN */
    TAILQ_HEAD(, iscsi_task) waiting; /* tasks waiting for the lookup (wlink) */
};

struct iscsi_tmf;

enum task_state {
    TS_DATA_OUT, /* gathering Data-Out */
    TS_READY,    /* data gathered; waiting for its CmdSN turn or its LUN */
    TS_RUNNING,  /* in the SCSI layer */
    TS_SENDING,  /* its response is queued; freed when sent */
};

struct r2t {
    uint32_t ttt, off, len, got, datasn;
};

/* One SCSI command. */
struct iscsi_task {
    struct iscsi_conn *c;
    TAILQ_ENTRY(iscsi_task) link;  /* c->tasks */
    TAILQ_ENTRY(iscsi_task) wlink; /* slu->waiting, while its LUN is looked up */
    bool waiting;
    bool in_window;                /* counted in c->nwindow (no response queued yet) */
    struct reactor_work done_work; /* the SCSI layer's done(), brought to our reactor */
    enum task_state state;
    uint32_t itt, cmdsn, edtl;
    uint64_t lun;
    uint8_t attr;
    bool immediate, rd, wr;
    bool ordered;  /* its CmdSN turn came (immediate tasks at once) */
    bool aborted;  /* by a TMF: no response; freed when the SCSI layer is done */
    uint8_t refused; /* the transport answers it with this status (and t->sc's sense) */
    struct iscsi_tmf *tmf;

    /* Data-Out */
    uint8_t *out;          /* EDTL bytes (NULL when EDTL is 0) */
    uint32_t out_want;     /* bytes the command needs: min(EDTL, the CDB's) */
    uint32_t out_got;      /* received, in order from offset 0 */
    uint32_t unsol_end;    /* immediate plus unsolicited data end here */
    bool unsol_open;       /* unsolicited Data-Out PDUs still expected */
    uint32_t unsol_datasn;
    uint32_t r2t_next;     /* the next offset to solicit */
    uint32_t r2tsn, datasn_out; /* R2Ts sent (ExpDataSN for writes) */
    unsigned nr2t;         /* outstanding R2Ts, oldest first */
    struct r2t r2ts[ISCSI_MAX_OUTSTANDING_R2T];

    /* Data-In */
    uint8_t *in;
    uint32_t in_size;
    uint32_t datasn_in; /* Data-In PDUs sent */

    size_t charged; /* bytes charged to c->inflight_bytes */
    struct sess_lu *slu;
    struct scsi_cmd sc;
};

/* A task management function waiting for aborted tasks to leave the SCSI layer. */
struct iscsi_tmf {
    uint32_t itt;
    uint8_t response;
    bool cold; /* TARGET COLD RESET: the connection closes after the response */
    unsigned waiting;
};

/* The negotiated operational parameters of a session and connection. */
struct iscsi_params {
    uint32_t mrdsl_out;   /* the initiator's MaxRecvDataSegmentLength: our Data-In size */
    uint32_t max_burst, first_burst;
    uint32_t max_r2t;
    uint32_t max_conn;
    uint32_t t2w, t2r, erl;
    bool initial_r2t, immediate_data;
    bool header_digest, data_digest;
};

struct login_state;

struct iscsi_conn {
    struct stream s; /* the socket, input buffer, send queue, end of life */
    struct iscsi_server *srv;
    struct reactor *reactor;
    char peer[80];  /* "127.0.0.1:40112" */
    char local[80]; /* our address on this connection, for TargetAddress */
    enum conn_state state;
    enum conn_phase phase;
    LIST_ENTRY(iscsi_conn) link; /* srv->conns (server lock) */
    bool stop_pending, tick_pending, kill_pending, evict_pending; /* posted, not run (lock) */
    bool stopping;
    struct reactor_work start_work, stop_work, tick_work, kill_work, evict_work;
    unsigned jobs; /* jobs on the service thread referring to the connection */

    /* Input */
    uint8_t bhs[ISCSI_BHS_SIZE];
    uint8_t ahs[ISCSI_AHS_MAX + ISCSI_DIGEST_SIZE];
    uint32_t ahs_len, dlen;
    uint8_t tail[8];
    uint8_t *data;        /* ISCSI_MAX_RECV_SEGMENT bytes: data of non-Data-Out PDUs
                             (iscsi_conn_data_buf allocates it on first use) */
    uint8_t *data_dst;    /* where this PDU's data went (NULL: discarded) */
    struct iscsi_task *rx_task; /* the task whose data is being read */

    /* Login and session */
    struct login_state *login;
    uint64_t login_start_ns;
    char initiator[ISCSI_NAME_MAX + 1];
    char target[ISCSI_NAME_MAX + 1];
    uint8_t isid[6];
    uint16_t tsih, cid;
    bool discovery;
    bool listed_session; /* in the server's session table */
    struct iscsi_params p;
    bool hdigest, ddigest; /* in force (from the full feature phase on) */

    /* Full feature phase */
    uint32_t statsn, exp_cmdsn, max_cmdsn;
    TAILQ_HEAD(, iscsi_task) tasks;
    unsigned ntasks, nimmediate;
    uint64_t inflight_bytes;
    uint32_t next_ttt;
    struct sess_lu **luns;
    unsigned nluns, capluns;
    unsigned nwindow;  /* numbered tasks without a response yet: MaxCmdSN follows it */
    uint8_t rx_reject; /* the PDU being read gets this Reject reason (0: none) */
    bool rx_drop;      /* the PDU being read is dropped (out of the CmdSN window) */
    bool logout_sent;
    uint64_t seen_gen; /* the LUN generation this session knows */
    bool luns_ua;      /* REPORTED LUNS DATA HAS CHANGED is due */
    struct iscsi_binding *bindings; /* every binding ever made, freed with the connection */
    uint64_t commands;
    /* Text: a response too long for one PDU, continued */
    char *text_rsp;
    size_t text_len, text_off;
    uint32_t text_ttt;
    char *text_req; /* a request continued over several PDUs */
    size_t text_req_len;
    /* NOP pings */
    uint32_t ping_ttt;
    uint64_t ping_sent_ns; /* 0: none outstanding */
    /* Logout */
    uint32_t logout_itt;
    uint8_t logout_reason;
};

struct iscsi_server {
    struct iscsi_targets t;
    void *ctx;
    unsigned nop_interval_s, nop_timeout_s, login_timeout_s;
    char *pr_dir; /* NULL: no APTPL */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct listener l; /* accepting, and the count of connections not yet freed */
    uint16_t next_tsih;
    LIST_HEAD(, iscsi_conn) conns;
    uint64_t lun_gen; /* atomic */
    struct evict_req {
        uint8_t pool_uuid[16];
        uint64_t vol_id;
    } evicts[16]; /* volumes being pulled from their sessions (lock) */
    unsigned nevicts;

    /* The service thread: LU opens, connection frees, LU destroys. */
    pthread_t service;
    bool service_stop;
    struct svc_job *jobs_head, **jobs_tail;
    LIST_HEAD(, iscsi_lu) lus; /* service thread only */

    /* The ticker: NOP pings and login timeouts. */
    pthread_t ticker;
    bool ticker_stop;
};

/* server.c */
/* Done on its reactor: free it elsewhere (false: posted work or a job still refers to it;
 * see stream_ops.release). */
bool iscsi_conn_release(struct iscsi_conn *c);
void iscsi_conn_free(struct iscsi_conn *c);     /* memory only (service thread) */
/* Registers a session that completed its login (TSIH assigned) and reinstates (ends) a
 * session with the same initiator, ISID and target. Returns the login status. */
uint16_t iscsi_session_register(struct iscsi_conn *c, uint16_t tsih_in);
/* Posts a job to the service thread that resolves and opens @slu's LUN for @c. */
int iscsi_lun_job(struct iscsi_conn *c, struct sess_lu *slu);
uint64_t iscsi_lun_gen(struct iscsi_server *srv);
/* Detaches a finished connection's nexuses and releases its LUs (service thread). */
void iscsi_sess_free(struct iscsi_conn *c);

/* conn.c */
/* Input, output and the end go through c->s (pool/stream.h): stream_want, stream_send_copy,
 * stream_send_ref (with the task a PDU completes), stream_kill, stream_finish, and
 * stream_enter/stream_leave around every entry point. */
struct iscsi_conn *iscsi_conn_new(struct iscsi_server *srv, int fd, struct reactor *r);
/* c->data, allocated on first use; NULL (and the connection killed) when out of memory. */
uint8_t *iscsi_conn_data_buf(struct iscsi_conn *c);

/* pdu.c */
void iscsi_rx_begin(struct iscsi_conn *c); /* -> CS_BHS */
void iscsi_rx_input(struct iscsi_conn *c); /* the wanted bytes of a reading state arrived */
bool iscsi_rx_admit(struct iscsi_conn *c); /* CS_WAIT: retry */
/* Queues a PDU: @bhs (48 bytes; DataSegmentLength is filled in here), the header digest,
 * @len bytes of @data (copied when @copy, else referred to until sent), padding and the
 * data digest. @task, when set, is freed once the PDU has been sent. */
void iscsi_send_pdu(struct iscsi_conn *c, uint8_t *bhs, const void *data, uint32_t len, bool copy,
                    struct iscsi_task *task);
void iscsi_send_reject(struct iscsi_conn *c, uint8_t reason, const uint8_t *bhs);
/* Fills StatSN (advancing it when @advance), ExpCmdSN and MaxCmdSN at their offsets. */
void iscsi_fill_sn(struct iscsi_conn *c, uint8_t *bhs, bool advance);

/* text.c */
struct kv {
    const char *key, *value;
};
/* Splits @len bytes of "key=value\0" pairs (in place) into at most @max pairs. Returns the
 * count or -EINVAL (a pair without '=', a key or value too long, too many pairs). */
int iscsi_kv_parse(char *text, size_t len, struct kv *kv, int max);
/* A growing key=value response. */
struct kvbuf {
    char *buf;
    size_t len, cap;
    bool oom;
};
void kvbuf_add(struct kvbuf *b, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kvbuf_free(struct kvbuf *b);
/*
 * Negotiates one operational key of the login (or answers it NotUnderstood, Irrelevant or
 * Reject); the answer goes to @rsp. @seen remembers the keys negotiated so far in this
 * login (a key negotiated twice is a protocol error). Returns 0, or a login status when the
 * key makes the login fail.
 */
uint16_t iscsi_negotiate_key(struct iscsi_conn *c, const struct kv *kv, struct kvbuf *rsp,
                             uint32_t *seen);
void iscsi_params_default(struct iscsi_params *p);
/* Answers a SendTargets request with the targets @c's initiator may reach. */
void iscsi_send_targets(struct iscsi_conn *c, const char *which, struct kvbuf *rsp);
bool iscsi_name_valid(const char *name);

/* login.c */
void iscsi_login_pdu(struct iscsi_conn *c); /* a Login Request arrived (phase PH_LOGIN) */
void iscsi_login_free(struct iscsi_conn *c);

/* session.c */
/* The sess_lu of @lun (created when new), or NULL when the session has too many. */
struct sess_lu *iscsi_sess_lu(struct iscsi_conn *c, uint64_t lun);
/* A job's answer arrived on the reactor: the binding (or NULL: no such LUN). */
void iscsi_sess_lu_ready(struct iscsi_conn *c, struct sess_lu *slu, struct iscsi_binding *b);
size_t iscsi_report_luns(void *ctx, uint64_t *luns, size_t max);

/* fullfeature.c */
/* A full feature PDU's header arrived: decide where its data goes (c->data_dst, c->rx_task)
 * and whether to keep it. Returns false when the connection was killed. */
bool iscsi_ff_header(struct iscsi_conn *c);
void iscsi_ff_pdu(struct iscsi_conn *c); /* the whole PDU is in */
void iscsi_task_free(struct iscsi_task *t);
void iscsi_task_run(struct iscsi_task *t); /* a READY task's LUN is known: submit it */
void iscsi_ff_tick(struct iscsi_conn *c, uint64_t now); /* NOP pings */
void iscsi_ff_closing(struct iscsi_conn *c); /* input ended: drop tasks still gathering */

#endif
