#!/usr/bin/env bash
# `cistern serve --iscsi` against real iSCSI initiators (libiscsi's tools and qemu's iscsi
# driver): discovery, INQUIRY and READ CAPACITY, qemu-img convert and compare through
# iscsi:// URLs, iscsi-perf for a few seconds, a volume created while serving, a snapshot
# given a LUN (read-only), LUNs taken away, a served volume that vol delete refuses,
# persistent reservations (cistern-test-pr, on libiscsi) outliving their sessions; then
# SIGTERM, exit 0, a consistent pool, and after a restart the data still there and what
# APTPL kept.
#
# Needs: iscsi-ls, iscsi-inq, iscsi-readcapacity16, iscsi-perf, qemu-img, qemu-io.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/iscsi/lib.sh"
need iscsi-ls iscsi-inq iscsi-readcapacity16 iscsi-perf qemu-img qemu-io python3 timeout

iscsi_setup
"$CISTERN" vol create tank/vm1 --size 64M >/dev/null || exit 1
"$CISTERN" vol create tank/small --size 8M --grain 64K >/dev/null || exit 1
iscsi_conf "iscsi-auth = none"
iscsi_start --threads 2 || finish

lun_of() { # the LUN of volume $1 from `iscsi show --json`
    "$CISTERN" iscsi show tank --json |
        python3 -c "import json,sys; print([l['lun'] for l in json.load(sys.stdin)['luns'] if l['name'] == 'tank/$1'][0])"
}
lun_vm1=$(lun_of vm1)
lun_small=$(lun_of small)
check "volumes get the lowest free LUNs when created" test "$lun_vm1,$lun_small" = "0,1"

# --- discovery, INQUIRY, READ CAPACITY ------------------------------------------------
check "discovery (SendTargets=All) lists the pool's target" bash -c \
    "timeout 20 iscsi-ls iscsi://$portal | grep -qx 'Target:$target Portal:$portal,1'"
check "iscsi-ls -s shows both LUNs" bash -c \
    "out=\$(timeout 20 iscsi-ls -s iscsi://$portal) && grep -q 'Lun:0 *Type:DIRECT_ACCESS (Size:63M)' <<<\"\$out\" &&
     grep -q 'Lun:1 *Type:DIRECT_ACCESS' <<<\"\$out\""
check "INQUIRY answers with the vendor" bash -c \
    "timeout 20 iscsi-inq $url/0 | grep -q 'Vendor:CISTERN'"
check "READ CAPACITY (16) gives the volume's size" bash -c \
    "timeout 20 iscsi-readcapacity16 $url/1 | grep -q 'Total size:8388608'"
check "an unknown target is refused" bash -c \
    "! timeout 20 iscsi-inq iscsi://$portal/${IQN_PREFIX}nope/0 >/dev/null 2>&1"
check "a LUN without a volume is refused" bash -c \
    "! timeout 20 iscsi-readcapacity16 $url/7 >/dev/null 2>&1"

# --- data through qemu's iscsi driver ---------------------------------------------------
head -c $((5 * M)) /dev/urandom >"$tmp/rand"
truncate -s 64M "$tmp/img.raw"
dd if="$tmp/rand" of="$tmp/img.raw" bs=1M seek=2 conv=notrunc status=none
dd if="$tmp/rand" of="$tmp/img.raw" bs=1M seek=50 count=3 conv=notrunc status=none
printf 'tail' | dd of="$tmp/img.raw" bs=1 seek=$((64 * M - 4096)) conv=notrunc status=none
check "qemu-img convert an image into LUN 0" \
    timeout 120 qemu-img convert -n -f raw -O raw "$tmp/img.raw" "$url/0"
check "qemu-img compare LUN 0 with the image" \
    timeout 120 qemu-img compare -f raw -F raw "$tmp/img.raw" "$url/0"
check "qemu-io: many writes and reads in flight, unaligned to the grain" bash -c "
    timeout 120 qemu-io -f raw -c 'aio_write -P 0x5a 4096 1M' -c 'aio_write -P 0x6b 3M 512k' \
        -c 'aio_flush' -c 'read -P 0x5a 4096 1M' -c 'read -P 0x6b 3M 512k' \
        '$url/1' >qio.log 2>&1 && ! grep -qi 'error\\|fail' qio.log"
check "iscsi-perf for 3 s (random 4K reads, 32 in flight)" bash -c \
    "timeout 60 iscsi-perf -t 3 -m 32 -b 8 -r $url/0 >perf.log 2>&1 || { cat perf.log; false; }"

# --- LUNs change while serving --------------------------------------------------------------
"$CISTERN" vol create tank/late --size 16M >/dev/null
lun_late=$(lun_of late)
check "a volume created while serving is a LUN at once" bash -c \
    "timeout 20 iscsi-readcapacity16 $url/$lun_late | grep -q 'Total size:16777216'"
"$CISTERN" snap create tank/vm1@s1 >/dev/null
check "a snapshot has no LUN until given one" bash -c \
    "! timeout 20 iscsi-readcapacity16 $url/9 >/dev/null 2>&1"
check "iscsi lun set gives the snapshot LUN 9" "$CISTERN" iscsi lun set tank/vm1@s1 9
check "the snapshot reads like the volume did" \
    timeout 120 qemu-img compare -f raw -F raw "$tmp/img.raw" "$url/9"
check "the snapshot's LUN is read-only" bash -c \
    "! timeout 20 qemu-io -f raw -c 'write 0 4k' '$url/9' 2>&1 | grep -q 'wrote'"
check "iscsi lun set refuses a LUN in use" bash -c \
    "! '$CISTERN' iscsi lun set tank/small 0 2>/dev/null"
check "iscsi lun clear takes the LUN away" "$CISTERN" iscsi lun clear tank/vm1@s1
check "the cleared LUN is gone for new sessions" bash -c \
    "! timeout 20 iscsi-readcapacity16 $url/9 >/dev/null 2>&1"
check "iscsi show lists the LUNs" bash -c \
    "'$CISTERN' iscsi show tank | grep -q 'tank/late'"

# --- a served volume is protected -----------------------------------------------------------
timeout 60 qemu-io -f raw -c 'read 0 4k' -c 'sleep 4000' -c 'read 4k 4k' "$url/$lun_late" \
    >hold.log 2>&1 &
hold=$!
sleep 2
check "vol delete refuses a volume an iSCSI session has open" bash -c \
    "! '$CISTERN' vol delete tank/late 2>del.err && grep -q 'served to' del.err"
check "vol rename of the served volume" "$CISTERN" vol rename tank/late late2
check "it is still served under its new name" bash -c \
    "! '$CISTERN' vol delete tank/late2 2>del.err && grep -q 'served to' del.err"
wait "$hold"
check "the holding session ended well" grep -q 'read 4096/4096' hold.log
for ((i = 0; i < 50; i++)); do
    "$CISTERN" vol delete tank/late2 2>/dev/null && break
    sleep 0.2 # the logical unit closes once its last session has gone
done
check "vol delete works once the session is gone" bash -c "! '$CISTERN' vol info tank/late2 2>/dev/null"
"$CISTERN" vol create tank/pulled --size 16M >/dev/null
lun_pulled=$(lun_of pulled)
timeout 60 qemu-io -f raw -c 'read 0 4k' -c 'sleep 5000' -c 'read 4k 4k' "$url/$lun_pulled" \
    >hold2.log 2>&1 &
hold=$!
sleep 2
check "vol delete --force ends the iSCSI sessions using the volume and deletes it" \
    "$CISTERN" vol delete tank/pulled --force
check "the deleted volume is gone" bash -c "! '$CISTERN' vol info tank/pulled 2>/dev/null"
wait "$hold"

# --- persistent reservations through libiscsi ------------------------------------------------
# Registrations outlive every session (the LU closes when its last session goes); with
# APTPL they also outlive the daemon, which is a power loss to the initiators.
pr="$CISTERN_BUILD/cistern-test-pr"
"$CISTERN" vol create tank/quorum --size 8M >/dev/null
"$CISTERN" vol create tank/scratch --size 8M >/dev/null
lun_q=$(lun_of quorum)
lun_s=$(lun_of scratch)
check "REGISTER with APTPL and RESERVE (WRITE EXCLUSIVE) on one LU" bash -c \
    "timeout 20 '$pr' '$url/$lun_q' register 0xabc aptpl && timeout 20 '$pr' '$url/$lun_q' reserve 0xabc 1"
check "REGISTER without APTPL on another" timeout 20 "$pr" "$url/$lun_s" register 0x5
sleep 1 # both LUs close: no session is left on them
check "the registrations and the reservation outlive the sessions" bash -c \
    "timeout 20 '$pr' '$url/$lun_q' show | grep -qx 'ptpl_c=1 ptpl_a=1 gen=1 keys=0xabc reservation=0xabc/1' &&
     timeout 20 '$pr' '$url/$lun_s' show | grep -qx 'ptpl_c=1 ptpl_a=0 gen=1 keys=0x5 reservation=none'"

# --- stop, check, restart -------------------------------------------------------------------
check "SIGTERM stops the server with status 0" iscsi_stop
check "pool check after the server stopped" "$CISTERN" pool check tank
iscsi_start --threads 2 || finish
check "after a restart LUN 0 still holds the image" \
    timeout 120 qemu-img compare -f raw -F raw "$tmp/img.raw" "$url/0"
check "after a restart what APTPL kept is back, and only that" bash -c \
    "timeout 20 '$pr' '$url/$lun_q' show | grep -qx 'ptpl_c=1 ptpl_a=1 gen=1 keys=0xabc reservation=0xabc/1' &&
     timeout 20 '$pr' '$url/$lun_s' show | grep -qx 'ptpl_c=1 ptpl_a=0 gen=0 keys= reservation=none'"
check "the APTPL state is one file in the state directory" \
    test "$(ls "$CISTERN_STATE_DIR/iscsi-pr" | grep -c '\.pr\.json$')" = 1
for ((i = 0; i < 50; i++)); do
    "$CISTERN" vol delete tank/quorum 2>/dev/null && break
    sleep 0.2 # the logical unit closes once the tool's session has gone
done
check "deleting the volume removes its APTPL state" bash -c \
    "! '$CISTERN' vol info tank/quorum 2>/dev/null && ! ls '$CISTERN_STATE_DIR/iscsi-pr' | grep -q ."
finish
