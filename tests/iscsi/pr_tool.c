/*
 * cistern-test-pr: persistent reservations through libiscsi, for the shell tests (a restart
 * of the daemon in between shows what APTPL kept).
 *
 *   cistern-test-pr URL register KEY [aptpl]   REGISTER AND IGNORE EXISTING KEY
 *   cistern-test-pr URL reserve KEY TYPE       RESERVE (TYPE 1, 3, 5, 6, 7 or 8)
 *   cistern-test-pr URL show                   one line: "ptpl_c=C ptpl_a=A gen=G keys=K,K
 *                                               reservation=KEY/TYPE" (or "none")
 *
 * The initiator name and ISID are fixed, so each run is the same I_T nexus, after a restart
 * too. Exits 1
 * with a message on any failure.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define INITIATOR "iqn.2026-11.org.cistern:test-pr"

static struct iscsi_context *ctx;

static void die(const char *what)
{
    fprintf(stderr, "cistern-test-pr: %s: %s\n", what, ctx ? iscsi_get_error(ctx) : "");
    exit(1);
}

static struct scsi_task *ok(struct scsi_task *t, const char *what)
{
    if (!t || t->status != SCSI_STATUS_GOOD)
        die(what);
    return t;
}

static void *datain(struct scsi_task *t, const char *what)
{
    void *d = scsi_datain_unmarshall(t);
    if (!d)
        die(what);
    return d;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: cistern-test-pr URL register KEY [aptpl] | reserve KEY TYPE "
                        "| show\n");
        return 2;
    }
    ctx = iscsi_create_context(INITIATOR);
    struct iscsi_url *url = ctx ? iscsi_parse_full_url(ctx, argv[1]) : NULL;
    if (!url)
        die("the URL");
    iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
    iscsi_set_isid_random(ctx, 0x5e1f, 0); /* with INITIATOR: the same I_T nexus each run */
    if (iscsi_full_connect_sync(ctx, url->portal, url->lun) != 0)
        die("login");
    int lun = url->lun;
    const char *op = argv[2];
    if (strcmp(op, "register") == 0 && argc >= 4) {
        struct scsi_persistent_reserve_out_basic p = {
            .service_action_reservation_key = strtoull(argv[3], NULL, 0),
            .aptpl = argc >= 5 && strcmp(argv[4], "aptpl") == 0,
        };
        scsi_free_scsi_task(ok(iscsi_persistent_reserve_out_sync(
                                   ctx, lun, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY,
                                   0, 0, &p),
                               "REGISTER AND IGNORE EXISTING KEY"));
    } else if (strcmp(op, "reserve") == 0 && argc >= 5) {
        struct scsi_persistent_reserve_out_basic p = {.reservation_key =
                                                          strtoull(argv[3], NULL, 0)};
        scsi_free_scsi_task(ok(iscsi_persistent_reserve_out_sync(
                                   ctx, lun, SCSI_PERSISTENT_RESERVE_RESERVE, 0,
                                   atoi(argv[4]), &p),
                               "RESERVE"));
    } else if (strcmp(op, "show") == 0) {
        struct scsi_task *t = ok(iscsi_persistent_reserve_in_sync(
                                     ctx, lun, SCSI_PERSISTENT_RESERVE_REPORT_CAPABILITIES, 8),
                                 "REPORT CAPABILITIES");
        /* From the bytes (SPC-4 table 176): libiscsi 1.19's unmarshalling reads PTPL_A from
         * the wrong bit. */
        if (t->datain.size < 4)
            die("REPORT CAPABILITIES: short data");
        printf("ptpl_c=%d ptpl_a=%d", t->datain.data[2] & 0x01, t->datain.data[3] & 0x01);
        scsi_free_scsi_task(t);
        t = ok(iscsi_persistent_reserve_in_sync(ctx, lun, SCSI_PERSISTENT_RESERVE_READ_KEYS,
                                                4096),
               "READ KEYS");
        struct scsi_persistent_reserve_in_read_keys *k = datain(t, "keys");
        printf(" gen=%" PRIu32 " keys=", k->prgeneration);
        for (int i = 0; i < k->num_keys; i++)
            printf("%s0x%" PRIx64, i ? "," : "", k->keys[i]);
        scsi_free_scsi_task(t);
        t = ok(iscsi_persistent_reserve_in_sync(ctx, lun,
                                                SCSI_PERSISTENT_RESERVE_READ_RESERVATION, 4096),
               "READ RESERVATION");
        struct scsi_persistent_reserve_in_read_reservation *r = datain(t, "reservation");
        if (r->reserved)
            printf(" reservation=0x%" PRIx64 "/%d\n", r->reservation_key, r->pr_type);
        else
            printf(" reservation=none\n");
        scsi_free_scsi_task(t);
    } else {
        fprintf(stderr, "cistern-test-pr: unknown operation %s\n", op);
        return 2;
    }
    iscsi_logout_sync(ctx);
    iscsi_destroy_url(url);
    iscsi_destroy_context(ctx);
    return 0;
}
