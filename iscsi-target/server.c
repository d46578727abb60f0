/*
 * server.c - the iSCSI target: starting and stopping, the session table, the logical units
 * shared by sessions, the service thread, and the ticker.
 *
 * Listening and accepting are pool/listener.h's, as in the NBD server: each new connection
 * goes to the next reactor in turn; it is listed under the server lock and its start posted
 * there by listener_conn_start.
 *
 * Sessions: a connection that completes a normal login is its session (MaxConnections is
 * 1). The session table is the list of connections itself, searched under the lock by
 * initiator name, ISID and target: a new login with the ISID of a live session reinstates
 * it (RFC 7143 6.3.5): the old connection is killed on its reactor (its commands in flight
 * finish, their responses are dropped).
 *
 * Logical units: opened on the service thread when a session first needs a LUN, kept in
 * srv->lus (touched only by the service thread) with a count of the sessions bound to them,
 * destroyed there when the last binding goes. scsi_lu_create/destroy and vol_close must not
 * run on a reactor, and a lookup may read the catalog: the service thread does all of it,
 * in order, and posts each answer back to the connection's reactor.
 *
 * The ticker thread wakes every second and posts a tick to every connection (tick_pending
 * keeps a connection from being freed while its tick is queued): logins that take too long
 * are dropped, and idle sessions are pinged (fullfeature.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "iscsi-target/iscsi-priv.h"

enum job_kind {
    JOB_LUN,       /* look a LUN up, open and bind it */
    JOB_CONN_FREE, /* unbind a finished connection's LUs and free it */
};

struct svc_job {
    struct svc_job *next;
    enum job_kind kind;
    struct iscsi_conn *c;
    struct sess_lu *slu;
    uint64_t lun;
    struct iscsi_binding *old;    /* the binding the LUN had before it went stale */
    struct iscsi_binding *result; /* NULL: no such LUN */
    struct reactor_work work;
};

/* ------------------------------------------------------------------------------------------
 * The service thread
 */

static void job_push(struct iscsi_server *srv, struct svc_job *j)
{
    pthread_mutex_lock(&srv->lock);
    j->next = NULL;
    *srv->jobs_tail = j;
    srv->jobs_tail = &j->next;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

uint64_t iscsi_lun_gen(struct iscsi_server *srv)
{
    return __atomic_load_n(&srv->lun_gen, __ATOMIC_ACQUIRE);
}

void iscsi_server_luns_changed(struct iscsi_server *srv)
{
    if (srv)
        __atomic_add_fetch(&srv->lun_gen, 1, __ATOMIC_ACQ_REL);
}

static void lu_unref(struct iscsi_server *srv, struct iscsi_lu *ilu)
{
    if (--ilu->refs > 0)
        return;
    LIST_REMOVE(ilu, link);
    log_debug("iscsi: %s LUN %llu: closed", ilu->target, (unsigned long long)ilu->lun);
    scsi_lu_destroy(ilu->lu);
    srv->t.lun_close(srv->ctx, ilu->vol);
    free(ilu);
}

/* The LU for (@target, @lun), opened if no session has it yet. */
static struct iscsi_lu *lu_get(struct iscsi_server *srv, const char *target, uint64_t lun,
                               const uint8_t uuid[16], uint64_t vol_id)
{
    struct iscsi_lu *ilu;
    LIST_FOREACH(ilu, &srv->lus, link)
    {
        if (ilu->vol_id == vol_id && ilu->lun == lun && memcmp(ilu->pool_uuid, uuid, 16) == 0 &&
            strcmp(ilu->target, target) == 0) {
            ilu->refs++;
            return ilu;
        }
    }
    struct iscsi_lu_info info;
    memset(&info, 0, sizeof info);
    int r = srv->t.lun_open(srv->ctx, target, lun, &info);
    if (r < 0) {
        if (r != -ENOENT)
            log_warn("iscsi: %s LUN %llu: cannot open: %s", target, (unsigned long long)lun,
                     strerror(-r));
        return NULL;
    }
    info.name[sizeof info.name - 1] = '\0';
    ilu = calloc(1, sizeof(*ilu));
    struct scsi_lu_config cfg = {
        .vol = info.vol,
        .readonly = info.readonly,
        .grain_physical = info.grain_physical,
        .lun = lun,
        .vol_id = info.vol_id,
        .name = info.name,
        .pr_dir = srv->pr_dir,
    };
    memcpy(cfg.pool_uuid, info.pool_uuid, 16);
    if (!ilu || (r = scsi_lu_create(&cfg, &ilu->lu)) < 0) {
        log_warn("iscsi: %s LUN %llu (%s): cannot create the logical unit: %s", target,
                 (unsigned long long)lun, info.name, strerror(ilu ? -r : ENOMEM));
        free(ilu);
        srv->t.lun_close(srv->ctx, info.vol);
        return NULL;
    }
    memcpy(ilu->pool_uuid, info.pool_uuid, 16);
    ilu->vol_id = info.vol_id;
    ilu->lun = lun;
    snprintf(ilu->target, sizeof ilu->target, "%s", target);
    ilu->vol = info.vol;
    ilu->refs = 1;
    LIST_INSERT_HEAD(&srv->lus, ilu, link);
    log_info("iscsi: %s LUN %llu: %s%s", target, (unsigned long long)lun, info.name,
             info.readonly ? " (read-only)" : "");
    return ilu;
}

static void lun_job_done(struct reactor_work *w)
{
    struct svc_job *j = container_of(w, struct svc_job, work);
    struct iscsi_conn *c = j->c;
    stream_enter(&c->s);
    c->jobs--;
    if (j->result && j->result != j->old) {
        j->result->next = c->bindings;
        c->bindings = j->result;
    }
    iscsi_sess_lu_ready(c, j->slu, j->result);
    free(j);
    stream_leave(&c->s);
}

static void run_lun_job(struct iscsi_server *srv, struct svc_job *j)
{
    struct iscsi_conn *c = j->c;
    uint8_t uuid[16];
    uint64_t vol_id;
    j->result = NULL;
    if (srv->t.lun_resolve(srv->ctx, c->target, j->lun, uuid, &vol_id) == 0) {
        struct iscsi_binding *old = j->old;
        if (old && old->ilu->vol_id == vol_id && memcmp(old->ilu->pool_uuid, uuid, 16) == 0) {
            j->result = old; /* the same volume: the binding stays */
        } else {
            struct iscsi_lu *ilu = lu_get(srv, c->target, j->lun, uuid, vol_id);
            struct iscsi_binding *b = ilu ? calloc(1, sizeof(*b)) : NULL;
            if (ilu && !b)
                lu_unref(srv, ilu);
            if (b) {
                b->ilu = ilu;
                snprintf(b->nx.initiator_port, sizeof b->nx.initiator_port,
                         "%s,i,0x%02x%02x%02x%02x%02x%02x", c->initiator, c->isid[0], c->isid[1],
                         c->isid[2], c->isid[3], c->isid[4], c->isid[5]);
                snprintf(b->nx.target_port, sizeof b->nx.target_port, "%s,t,0x%04x", c->target,
                         ISCSI_TPGT);
                b->nx.rel_target_port = ISCSI_TPGT;
                if (scsi_nexus_attach(ilu->lu, &b->nx) == 0) {
                    b->attached = true;
                    j->result = b;
                } else {
                    lu_unref(srv, ilu);
                    free(b);
                }
            }
        }
    }
    j->work.fn = lun_job_done;
    pool_reactor_post(c->reactor, &j->work);
}

void iscsi_sess_free(struct iscsi_conn *c)
{
    struct iscsi_binding *b = c->bindings;
    c->bindings = NULL;
    while (b) {
        struct iscsi_binding *next = b->next;
        if (b->attached)
            scsi_nexus_detach(b->ilu->lu, &b->nx);
        lu_unref(c->srv, b->ilu);
        free(b);
        b = next;
    }
}

static void run_free_job(struct iscsi_server *srv, struct svc_job *j)
{
    iscsi_sess_free(j->c);
    iscsi_conn_free(j->c);
    listener_conn_gone(&srv->l);
    free(j);
}

static void *service_main(void *arg)
{
    struct iscsi_server *srv = arg;
    pthread_mutex_lock(&srv->lock);
    for (;;) {
        while (!srv->jobs_head && !srv->service_stop)
            pthread_cond_wait(&srv->cond, &srv->lock);
        struct svc_job *j = srv->jobs_head;
        if (!j)
            break;
        srv->jobs_head = j->next;
        if (!srv->jobs_head)
            srv->jobs_tail = &srv->jobs_head;
        pthread_mutex_unlock(&srv->lock);
        if (j->kind == JOB_LUN)
            run_lun_job(srv, j);
        else
            run_free_job(srv, j);
        pthread_mutex_lock(&srv->lock);
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

int iscsi_lun_job(struct iscsi_conn *c, struct sess_lu *slu)
{
    struct svc_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->kind = JOB_LUN;
    j->c = c;
    j->slu = slu;
    j->lun = slu->lun;
    j->old = slu->b;
    c->jobs++;
    job_push(c->srv, j);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Connections: freeing, the session table
 */

void iscsi_conn_free(struct iscsi_conn *c)
{
    stream_free(&c->s);
    iscsi_login_free(c);
    for (unsigned i = 0; i < c->nluns; i++)
        free(c->luns[i]);
    free(c->luns);
    free(c->text_rsp);
    free(c->text_req);
    free(c->data);
    free(c);
}

bool iscsi_conn_release(struct iscsi_conn *c)
{
    struct iscsi_server *srv = c->srv;
    if (c->jobs)
        return false; /* a job's answer comes back to this reactor, and releases again */
    pthread_mutex_lock(&srv->lock);
    if (c->stop_pending || c->tick_pending || c->kill_pending || c->evict_pending) {
        /* Posted work still refers to c; it releases again when it has run. */
        pthread_mutex_unlock(&srv->lock);
        return false;
    }
    LIST_REMOVE(c, link);
    pthread_mutex_unlock(&srv->lock);
    struct svc_job *j = calloc(1, sizeof(*j));
    if (!j) {
        /* Rare: finish it here (closing a volume here risks waiting on this reactor). */
        iscsi_sess_free(c);
        iscsi_conn_free(c);
        listener_conn_gone(&srv->l);
        return true;
    }
    j->kind = JOB_CONN_FREE;
    j->c = c;
    job_push(srv, j);
    return true;
}

static void kill_work_fn(struct reactor_work *w)
{
    struct iscsi_conn *c = container_of(w, struct iscsi_conn, kill_work);
    stream_enter(&c->s);
    pthread_mutex_lock(&c->srv->lock);
    c->kill_pending = false;
    pthread_mutex_unlock(&c->srv->lock);
    stream_kill(&c->s, "session reinstated by a new login");
    stream_leave(&c->s);
}

uint16_t iscsi_session_register(struct iscsi_conn *c, uint16_t tsih_in)
{
    struct iscsi_server *srv = c->srv;
    uint16_t status = LOGIN_OK;
    pthread_mutex_lock(&srv->lock);
    struct iscsi_conn *o;
    bool found_tsih = false;
    LIST_FOREACH(o, &srv->conns, link)
    {
        if (o == c || !o->listed_session || o->discovery != c->discovery ||
            memcmp(o->isid, c->isid, 6) != 0 || strcmp(o->initiator, c->initiator) != 0 ||
            strcmp(o->target, c->target) != 0)
            continue;
        if (tsih_in != 0) {
            if (o->tsih != tsih_in)
                continue;
            if (o->cid != c->cid) {
                /* Another connection to a session of one connection. */
                status = LOGIN_TOO_MANY_CONNECTIONS;
                break;
            }
            found_tsih = true;
        }
        /* Reinstatement: the old session ends; at ERL 0 its tasks are not carried over. */
        o->listed_session = false;
        if (!o->kill_pending && !o->stop_pending) {
            o->kill_pending = true;
            o->kill_work.fn = kill_work_fn;
            pool_reactor_post(o->reactor, &o->kill_work);
        }
        log_info("iscsi: %s: %s reinstates the session of %s (TSIH %u)", c->peer, c->initiator,
                 o->peer, o->tsih);
    }
    if (status == LOGIN_OK && tsih_in != 0 && !found_tsih)
        status = LOGIN_NO_SESSION;
    if (status == LOGIN_OK) {
        if (tsih_in != 0) {
            c->tsih = tsih_in;
        } else {
            do {
                c->tsih = ++srv->next_tsih;
            } while (c->tsih == 0);
        }
        c->listed_session = true;
    }
    pthread_mutex_unlock(&srv->lock);
    return status;
}

/* ------------------------------------------------------------------------------------------
 * Evicting: sessions let go of a volume
 */

static void evict_work_fn(struct reactor_work *w)
{
    struct iscsi_conn *c = container_of(w, struct iscsi_conn, evict_work);
    struct iscsi_server *srv = c->srv;
    struct evict_req ev[ARRAY_SIZE(srv->evicts)];
    unsigned n;
    stream_enter(&c->s);
    pthread_mutex_lock(&srv->lock);
    c->evict_pending = false;
    n = srv->nevicts;
    memcpy(ev, srv->evicts, n * sizeof ev[0]);
    pthread_mutex_unlock(&srv->lock);
    /* The bindings are this reactor's; their LUs' identities never change. */
    for (struct iscsi_binding *b = c->bindings; b; b = b->next)
        for (unsigned i = 0; i < n; i++)
            if (b->ilu->vol_id == ev[i].vol_id &&
                memcmp(b->ilu->pool_uuid, ev[i].pool_uuid, 16) == 0 && c->s.state == STREAM_OPEN) {
                log_warn("iscsi: %s: the session of %s ends: its volume is pulled", c->peer,
                         c->initiator);
                stream_finish(&c->s);
            }
    stream_leave(&c->s);
}

void iscsi_server_evict(struct iscsi_server *srv, const uint8_t pool_uuid[16], uint64_t vol_id)
{
    pthread_mutex_lock(&srv->lock);
    if (srv->nevicts < ARRAY_SIZE(srv->evicts)) {
        memcpy(srv->evicts[srv->nevicts].pool_uuid, pool_uuid, 16);
        srv->evicts[srv->nevicts].vol_id = vol_id;
        srv->nevicts++;
    }
    struct iscsi_conn *c;
    LIST_FOREACH(c, &srv->conns, link)
    {
        if (!c->evict_pending) {
            c->evict_pending = true;
            c->evict_work.fn = evict_work_fn;
            pool_reactor_post(c->reactor, &c->evict_work);
        }
    }
    pthread_mutex_unlock(&srv->lock);
}

void iscsi_server_evict_end(struct iscsi_server *srv, const uint8_t pool_uuid[16],
                            uint64_t vol_id)
{
    pthread_mutex_lock(&srv->lock);
    for (unsigned i = 0; i < srv->nevicts; i++)
        if (srv->evicts[i].vol_id == vol_id && memcmp(srv->evicts[i].pool_uuid, pool_uuid, 16) == 0) {
            srv->evicts[i] = srv->evicts[--srv->nevicts];
            break;
        }
    pthread_mutex_unlock(&srv->lock);
}

/* ------------------------------------------------------------------------------------------
 * Accepting (pool/listener.h)
 */

static void *listener_conn_new(struct listener *l, int fd, struct reactor *r)
{
    return iscsi_conn_new(container_of(l, struct iscsi_server, l), fd, r);
}

static void listener_conn_start(struct listener *l, void *conn)
{
    struct iscsi_server *srv = container_of(l, struct iscsi_server, l);
    struct iscsi_conn *c = conn;
    LIST_INSERT_HEAD(&srv->conns, c, link);
    pool_reactor_post(c->reactor, &c->start_work);
}

static void listener_conn_free(struct listener *l UNUSED, void *conn)
{
    iscsi_conn_free(conn);
}

static const struct listener_ops listener_ops = {
    .conn_new = listener_conn_new,
    .conn_start = listener_conn_start,
    .conn_free = listener_conn_free,
};

int iscsi_server_adopt(struct iscsi_server *srv, int fd)
{
    return listener_add(&srv->l, fd);
}

/* ------------------------------------------------------------------------------------------
 * The ticker
 */

static void tick_work_fn(struct reactor_work *w)
{
    struct iscsi_conn *c = container_of(w, struct iscsi_conn, tick_work);
    stream_enter(&c->s);
    pthread_mutex_lock(&c->srv->lock);
    c->tick_pending = false;
    pthread_mutex_unlock(&c->srv->lock);
    uint64_t now = now_ns();
    if (c->phase == PH_LOGIN && c->s.state == STREAM_OPEN &&
        now - c->login_start_ns > (uint64_t)c->srv->login_timeout_s * 1000000000ull)
        stream_kill(&c->s, "login not completed in time");
    else if (c->phase != PH_LOGIN)
        iscsi_ff_tick(c, now);
    stream_leave(&c->s);
}

static void *ticker_main(void *arg)
{
    struct iscsi_server *srv = arg;
    struct timespec next;
    clock_gettime(CLOCK_REALTIME, &next);
    pthread_mutex_lock(&srv->lock);
    while (!srv->ticker_stop) {
        /* The condition is shared with other waiters: wake-ups before the second is up are
         * not ticks. */
        next.tv_sec += 1;
        int r = 0;
        while (!srv->ticker_stop && r != ETIMEDOUT)
            r = pthread_cond_timedwait(&srv->cond, &srv->lock, &next);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > next.tv_sec + 1)
            next = now; /* fell behind (a suspended machine): no burst of ticks */
        if (srv->ticker_stop || srv->l.stopping)
            continue;
        struct iscsi_conn *c;
        LIST_FOREACH(c, &srv->conns, link)
        {
            if (!c->tick_pending) {
                c->tick_pending = true;
                c->tick_work.fn = tick_work_fn;
                pool_reactor_post(c->reactor, &c->tick_work);
            }
        }
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Start and stop
 */

int iscsi_server_start(const struct iscsi_config *cfg, const struct iscsi_targets *targets,
                       void *ctx, struct iscsi_server **out)
{
    *out = NULL;
    if (!targets || !targets->login || !targets->list || !targets->luns ||
        !targets->lun_resolve || !targets->lun_open || !targets->lun_close)
        return -EINVAL;
    struct iscsi_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->t = *targets;
    srv->ctx = ctx;
    srv->nop_interval_s = cfg->nop_interval_s ? cfg->nop_interval_s : 10;
    srv->nop_timeout_s = cfg->nop_timeout_s ? cfg->nop_timeout_s : 30;
    srv->login_timeout_s = cfg->login_timeout_s ? cfg->login_timeout_s : 30;
    if (cfg->pr_dir) {
        if (mkdir(cfg->pr_dir, 0700) < 0 && errno != EEXIST)
            log_warn("iscsi: %s: %s; persistent reservations cannot persist through a "
                     "power loss (APTPL is refused)", cfg->pr_dir, strerror(errno));
        else if (!(srv->pr_dir = strdup(cfg->pr_dir))) {
            free(srv);
            return -ENOMEM;
        }
    }
    srv->jobs_tail = &srv->jobs_head;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    LIST_INIT(&srv->conns);
    LIST_INIT(&srv->lus);
    listener_init(&srv->l, "iscsi", &listener_ops, &srv->lock, &srv->cond);

    int r = 0;
    bool service = false;
    if (cfg->listen)
        r = listener_listen(&srv->l, cfg->listen, false);
    if (r == 0 && !pool_reactor_get(0))
        r = -ENOMEM;
    if (r == 0) {
        r = -pthread_create(&srv->service, NULL, service_main, srv);
        service = r == 0;
    }
    if (r == 0)
        r = -pthread_create(&srv->ticker, NULL, ticker_main, srv);
    if (r < 0) {
        if (service) {
            pthread_mutex_lock(&srv->lock);
            srv->service_stop = true;
            pthread_cond_broadcast(&srv->cond);
            pthread_mutex_unlock(&srv->lock);
            pthread_join(srv->service, NULL);
        }
        listener_close(&srv->l);
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->cond);
        free(srv->pr_dir);
        free(srv);
        return r;
    }
    listener_start(&srv->l);
    *out = srv;
    return 0;
}

unsigned iscsi_server_connections(struct iscsi_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    unsigned n = srv->l.nconns;
    pthread_mutex_unlock(&srv->lock);
    return n;
}

static void stop_work_fn(struct reactor_work *w)
{
    struct iscsi_conn *c = container_of(w, struct iscsi_conn, stop_work);
    stream_enter(&c->s);
    pthread_mutex_lock(&c->srv->lock);
    c->stop_pending = false;
    pthread_mutex_unlock(&c->srv->lock);
    c->stopping = true;
    if (c->phase == PH_LOGIN)
        stream_kill(&c->s, NULL);
    else
        stream_finish(&c->s);
    stream_leave(&c->s);
}

void iscsi_server_stop(struct iscsi_server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&srv->lock);
    listener_stop(&srv->l);
    struct iscsi_conn *c;
    LIST_FOREACH(c, &srv->conns, link)
    {
        if (!c->stop_pending) {
            c->stop_pending = true;
            c->stop_work.fn = stop_work_fn;
            pool_reactor_post(c->reactor, &c->stop_work);
        }
    }
    listener_wait(&srv->l);
    srv->ticker_stop = true;
    srv->service_stop = true;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    pthread_join(srv->ticker, NULL);
    pthread_join(srv->service, NULL); /* it empties its queue first */
    listener_close(&srv->l);

    while (!LIST_EMPTY(&srv->lus)) {
        struct iscsi_lu *ilu = LIST_FIRST(&srv->lus);
        log_warn("iscsi: %s LUN %llu still bound at stop", ilu->target,
                 (unsigned long long)ilu->lun);
        ilu->refs = 1;
        lu_unref(srv, ilu);
    }
    scsi_pr_forget();
    free(srv->pr_dir);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    free(srv);
}
