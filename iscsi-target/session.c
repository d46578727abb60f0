/*
 * session.c - the LUNs of a session: which logical unit (and nexus) each LUN number is.
 *
 * A session looks a LUN up the first time one of its commands needs it: the command waits
 * on the sess_lu while a job on the service thread (server.c) resolves the LUN, opens the
 * logical unit if no session has it open, and attaches this session's nexus; the answer
 * comes back to the reactor (iscsi_sess_lu_ready), which runs the waiting commands. A LUN
 * without a volume is remembered as absent (its commands go to the SCSI layer with no LU,
 * which answers LOGICAL UNIT NOT SUPPORTED, INQUIRY and REPORT LUNS as SPC wants).
 *
 * Each answer is stamped with the server's LUN generation: after iscsi_server_luns_changed
 * the next command looks the LUN up again, and a binding whose volume kept its LUN stays.
 * Bindings are freed (nexus detached, LU released) with the connection, on the service
 * thread, after every command that used them has finished.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi-target/iscsi-priv.h"

struct sess_lu *iscsi_sess_lu(struct iscsi_conn *c, uint64_t lun)
{
    for (unsigned i = 0; i < c->nluns; i++)
        if (c->luns[i]->lun == lun)
            return c->luns[i];
    if (c->nluns >= ISCSI_MAX_LUNS_PER_SESSION)
        return NULL;
    if (c->nluns == c->capluns) {
        unsigned cap = c->capluns ? c->capluns * 2 : 8;
        struct sess_lu **p = realloc(c->luns, cap * sizeof(*p));
        if (!p)
            return NULL;
        c->luns = p;
        c->capluns = cap;
    }
    struct sess_lu *slu = calloc(1, sizeof(*slu));
    if (!slu)
        return NULL;
    slu->lun = lun;
    slu->state = SLU_NONE;
    TAILQ_INIT(&slu->waiting);
    c->luns[c->nluns++] = slu;
    return slu;
}

void iscsi_sess_lu_ready(struct iscsi_conn *c, struct sess_lu *slu, struct iscsi_binding *b)
{
    slu->b = b;
    slu->state = SLU_READY;
    while (!TAILQ_EMPTY(&slu->waiting)) {
        struct iscsi_task *t = TAILQ_FIRST(&slu->waiting);
        TAILQ_REMOVE(&slu->waiting, t, wlink);
        t->waiting = false;
        if (c->s.state == STREAM_DEAD)
            iscsi_task_free(t);
        else
            iscsi_task_run(t);
    }
}

size_t iscsi_report_luns(void *ctx, uint64_t *luns, size_t max)
{
    struct iscsi_conn *c = ctx;
    return c->srv->t.luns(c->srv->ctx, c->target, luns, max);
}
