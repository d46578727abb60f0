/*
 * scsi_pr.c - reservations. (Persistent reservations and RESERVE/RELEASE come next; until
 * then no command ever conflicts.)
 */
#include <stdlib.h>

#include "iscsi-target/scsi-priv.h"

bool pr_conflict_locked(struct scsi_cmd *cmd, const struct scsi_op *op)
{
    (void)cmd;
    (void)op;
    return false;
}

void pr_nexus_gone_locked(struct scsi_lu *lu, struct nexus_state *ns)
{
    if (lu->pr.spc2_holder == ns)
        lu->pr.spc2_holder = NULL;
}

void pr_reset_locked(struct scsi_lu *lu) { lu->pr.spc2_holder = NULL; }

void pr_free(struct scsi_lu *lu)
{
    struct pr_reg *r;
    while ((r = LIST_FIRST(&lu->pr.regs))) {
        LIST_REMOVE(r, link);
        free(r);
    }
}
