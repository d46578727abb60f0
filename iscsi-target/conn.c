/*
 * conn.c - one iSCSI connection on its reactor: its part of the connection stream
 * (pool/stream.h, which reads, queues PDUs and ends the connection, as for NBD).
 *
 * Input
 *   Each reading state (pdu.c) asks for a number of bytes (stream_want); when they are in,
 *   iscsi_rx_input runs and sets the next wish, or none (CS_WAIT: too much output waits for
 *   the initiator; it resumes once the send queue has drained below the limit).
 *
 * Output
 *   A PDU may carry the task it completes; the task is freed when its last byte has been
 *   sent. Every queued byte, copied or referred to, counts against the output limit.
 *
 * End
 *   stream_finish: no more input (end of stream, logout, a server stop): tasks in flight
 *   finish and their responses go out, then the socket is shut down. stream_kill: the
 *   initiator broke the protocol or the socket failed. Either way the stream is DEAD, and
 *   the connection is handed to the service thread once no task or job refers to it either.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iscsi-target/iscsi-priv.h"

static const char *const state_names[] = {
    [CS_BHS] = "BHS",   [CS_AHS] = "AHS",         [CS_DATA] = "DATA", [CS_TAIL] = "TAIL",
    [CS_WAIT] = "WAIT",
};

const char *iscsi_state_name(enum conn_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "?";
}

static void sock_name(int fd, bool local, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int r = local ? getsockname(fd, (struct sockaddr *)&ss, &sl)
                  : getpeername(fd, (struct sockaddr *)&ss, &sl);
    if (r < 0) {
        snprintf(buf, len, "%s", local ? "127.0.0.1:3260" : "?");
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, len, "%s", local ? "127.0.0.1:3260" : "local");
    }
}

static void start_work_fn(struct reactor_work *w);
static const struct stream_ops conn_ops;

struct iscsi_conn *iscsi_conn_new(struct iscsi_server *srv, int fd, struct reactor *r)
{
    struct iscsi_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (stream_init(&c->s, fd, "iscsi", c->peer, &conn_ops) < 0) {
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->reactor = r;
    c->state = CS_BHS;
    c->phase = PH_LOGIN;
    TAILQ_INIT(&c->tasks);
    c->start_work.fn = start_work_fn;
    iscsi_params_default(&c->p);
    sock_name(fd, false, c->peer, sizeof c->peer);
    sock_name(fd, true, c->local, sizeof c->local);
    return c;
}

/* The buffer for data segments of PDUs other than Data-Out and commands (logins, NOP-Out
 * ping data, Text), allocated on first use: an idle session does not hold it. */
uint8_t *iscsi_conn_data_buf(struct iscsi_conn *c)
{
    if (!c->data && !(c->data = malloc(ISCSI_MAX_RECV_SEGMENT)))
        stream_kill(&c->s, "out of memory for a data segment");
    return c->data;
}

/* ------------------------------------------------------------------------------------------
 * Entry points
 */

static void start_work_fn(struct reactor_work *w)
{
    struct iscsi_conn *c = container_of(w, struct iscsi_conn, start_work);
    stream_enter(&c->s);
    log_debug("iscsi: %s: connected", c->peer);
    c->login_start_ns = c->s.last_rx_ns = now_ns();
    iscsi_rx_begin(c);
    stream_pump(&c->s);
    stream_leave(&c->s);
}

/* ------------------------------------------------------------------------------------------
 * The stream's callbacks
 */

static void conn_input(struct stream *s)
{
    iscsi_rx_input(container_of(s, struct iscsi_conn, s));
}

static void conn_input_ended(struct stream *s, int res)
{
    struct iscsi_conn *c = container_of(s, struct iscsi_conn, s);
    if (res < 0 && res != -ECANCELED && res != -ECONNRESET)
        log_warn("iscsi: %s: receive failed: %s", c->peer, strerror(-res));
    else if ((s->want_got > 0 || c->state != CS_BHS) && !c->stopping)
        log_info("iscsi: %s: disconnected in the middle of a PDU (state %s)", c->peer,
                 iscsi_state_name(c->state));
    if (c->phase == PH_LOGIN) {
        log_debug("iscsi: %s: disconnected during login", c->peer);
        stream_kill(s, NULL);
        return;
    }
    stream_finish(s);
}

static void conn_input_stopped(struct stream *s)
{
    iscsi_ff_closing(container_of(s, struct iscsi_conn, s)); /* tasks still gathering */
}

static void conn_sent(struct stream *s UNUSED, void *done)
{
    iscsi_task_free(done);
}

/* The send queue drained: a header waiting for it (CS_WAIT) may go on. */
static void conn_flushed(struct stream *s)
{
    struct iscsi_conn *c = container_of(s, struct iscsi_conn, s);
    if (s->state == STREAM_OPEN && c->state == CS_WAIT && iscsi_rx_admit(c))
        stream_pump(s);
}

static bool conn_idle(struct stream *s)
{
    return container_of(s, struct iscsi_conn, s)->ntasks == 0;
}

static void conn_closed(struct stream *s)
{
    struct iscsi_conn *c = container_of(s, struct iscsi_conn, s);
    log_debug("iscsi: %s: closed after %llu commands", c->peer,
              (unsigned long long)c->commands);
}

static bool conn_release(struct stream *s)
{
    return iscsi_conn_release(container_of(s, struct iscsi_conn, s));
}

static const char *conn_state_name(struct stream *s)
{
    return iscsi_state_name(container_of(s, struct iscsi_conn, s)->state);
}

static const struct stream_ops conn_ops = {
    .input = conn_input,
    .input_ended = conn_input_ended,
    .input_stopped = conn_input_stopped,
    .sent = conn_sent,
    .flushed = conn_flushed,
    .idle = conn_idle,
    .closed = conn_closed,
    .release = conn_release,
    .state_name = conn_state_name,
};
