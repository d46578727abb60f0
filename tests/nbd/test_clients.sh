#!/usr/bin/env bash
# `cistern serve` against real NBD clients: nbdinfo (--list, --map, --json), nbdcopy into
# and out of a volume with holes kept, qemu-img info / convert / compare on nbd:// URIs,
# qemu-io with many requests in flight, several connections at once; then SIGTERM, exit 0,
# and a consistent pool with the data still there after a restart.
#
# Needs: nbdinfo, nbdcopy, qemu-img, qemu-io, python3, cmp, stat.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/nbd/lib.sh"
need nbdinfo nbdcopy qemu-img qemu-io python3 cmp stat truncate dd timeout

nbd_setup
"$CISTERN" vol create tank/vm1 --size 64M --grain 64K >/dev/null || exit 1
"$CISTERN" vol create tank/small --size 8M --grain 4K >/dev/null || exit 1
truncate -s 32M "$tmp/m1"
"$CISTERN" pool create other "$tmp/m1" >/dev/null || exit 1
"$CISTERN" vol create other/vm1 --size 4M >/dev/null || exit 1
"$CISTERN" vol create other/only --size 4M >/dev/null || exit 1

nbd_start --threads 2 || finish

# --- listing and information ------------------------------------------------------------
check "nbdinfo --list shows every POOL/VOL" bash -c "
    timeout 20 nbdinfo --list --json '$uri' > list.json &&
    python3 -c '
import json, sys
d = json.load(open(\"list.json\"))
names = sorted(e[\"export-name\"] for e in d[\"exports\"])
assert names == [\"other/only\", \"other/vm1\", \"tank/small\", \"tank/vm1\"], names
for e in d[\"exports\"]:
    assert e[\"block_size_minimum\"] == 512 and e[\"block_size_maximum\"] == 32 << 20, e
    assert e[\"can_multi_conn\"] and e[\"can_flush\"] and e[\"can_trim\"] and e[\"can_zero\"], e
    assert e[\"can_fua\"] and e[\"can_fast_zero\"] and e[\"can_cache\"], e
    assert not e[\"is_read_only\"], e
    assert \"description\" in e and e[\"export-name\"] in e[\"description\"], e
'"
check "nbdinfo --json of tank/vm1: size, base:allocation, structured replies" bash -c "
    timeout 20 nbdinfo --json '$uri/tank/vm1' > info.json &&
    python3 -c '
import json
d = json.load(open(\"info.json\"))
assert d[\"protocol\"] == \"newstyle-fixed\" and d[\"structured\"], d
e = d[\"exports\"][0]
assert e[\"export-size\"] == 64 << 20, e
assert \"base:allocation\" in e[\"contexts\"], e
assert e[\"block_size_preferred\"] == 65536, e
'"
check "a unique volume name is an export of its own (only)" \
    timeout 20 nbdinfo --size "$uri/only"
check "an ambiguous volume name (vm1 is in both pools) is refused" \
    bash -c "! timeout 20 nbdinfo --size '$uri/vm1' 2>/dev/null"
check "an unknown export is refused" bash -c "! timeout 20 nbdinfo --size '$uri/tank/nope' 2>/dev/null"

# --- nbdcopy in and out, sparse --------------------------------------------------------
head -c $((6 * M)) /dev/urandom >"$tmp/rand"
truncate -s 64M "$tmp/img.raw"
dd if="$tmp/rand" of="$tmp/img.raw" bs=1M seek=3 conv=notrunc status=none
dd if="$tmp/rand" of="$tmp/img.raw" bs=1M seek=40 count=2 conv=notrunc status=none
printf 'tail' | dd of="$tmp/img.raw" bs=1 seek=$((64 * M - 4096)) conv=notrunc status=none
check "nbdcopy a sparse image into tank/vm1" timeout 60 nbdcopy "$tmp/img.raw" "$uri/tank/vm1"
check "nbdinfo --map shows holes where the image has none of its data" bash -c "
    timeout 20 nbdinfo --map --json '$uri/tank/vm1' > map.json &&
    python3 -c '
import json
M = 1 << 20
m = json.load(open(\"map.json\"))
data = [(e[\"offset\"], e[\"length\"]) for e in m if e[\"type\"] & 1 == 0]
assert data == [(3 * M, 6 * M), (40 * M, 2 * M), (64 * M - 64 * 1024, 64 * 1024)], data
'"
check "nbdcopy out of tank/vm1 gives the image back" bash -c "
    timeout 60 nbdcopy '$uri/tank/vm1' '$tmp/out.raw' && cmp '$tmp/img.raw' '$tmp/out.raw'"
check "the copy out is sparse (holes were not sent as data)" bash -c "
    [ \$(stat -c %b '$tmp/out.raw') -le \$(( (6 + 2 + 1) * 2048 + 256 )) ]"

# --- qemu-img -------------------------------------------------------------------------
check "qemu-img info on nbd://" bash -c "
    timeout 20 qemu-img info --output=json '$uri/tank/vm1' | grep -q '\"virtual-size\": 67108864'"
check "qemu-img compare (image and volume are identical)" \
    timeout 60 qemu-img compare -f raw -F raw "$tmp/img.raw" "$uri/tank/vm1"
check "qemu-img convert to qcow2 and compare" bash -c "
    timeout 60 qemu-img convert -O qcow2 '$uri/tank/vm1' '$tmp/vm1.qcow2' &&
    timeout 60 qemu-img compare -f raw -F qcow2 '$uri/tank/vm1' '$tmp/vm1.qcow2'"
head -c $((4 * M)) "$tmp/img.raw" >"$tmp/img4.raw"
check "qemu-img convert -n writes the first 4M into other/vm1" bash -c "
    timeout 60 qemu-img convert -n -m 8 -W -f raw -O raw '$tmp/img4.raw' '$uri/other/vm1' &&
    timeout 60 qemu-img compare -f raw -F raw '$tmp/img4.raw' '$uri/other/vm1'"

# --- qemu-io with many requests in flight ------------------------------------------------
cmds=()
for i in $(seq 0 63); do
    cmds+=(-c "aio_write -P $((i + 1)) $((i * 65536)) 65536")
done
cmds+=(-c "aio_flush")
for i in $(seq 0 63); do
    cmds+=(-c "aio_read -P $((i + 1)) $((i * 65536)) 65536")
done
cmds+=(-c "aio_flush")
check "qemu-io: 64 aio_write then 64 aio_read in flight, patterns verified" bash -c '
    out=$(timeout 60 qemu-io -f raw "$0" "${@}" 2>&1) || { echo "$out"; exit 1; }
    ! grep -Eq "Pattern verification failed|error|failed" <<<"$out" || { echo "$out"; exit 1; }' \
    "$uri/tank/small" "${cmds[@]}"
check "qemu-io: sub-sector read at an odd offset" bash -c "
    timeout 20 qemu-io -f raw '$uri/tank/small' -c 'read -P 3 $((2 * 65536 + 7)) 100' >/dev/null"
check "qemu-io: write_zeroes (unmap) and discard read back as zeros" bash -c "
    timeout 20 qemu-io -f raw '$uri/tank/small' -c 'write -z -u 0 65536' -c 'discard 65536 65536' \
        -c 'read -P 0 0 131072' -c 'read -P 3 131072 65536' >/dev/null"

# --- several clients at once ------------------------------------------------------------
pids=()
for j in 1 2 3 4; do
    timeout 60 nbdcopy "$uri/tank/vm1" "$tmp/par$j.raw" &
    pids+=($!)
done
par_ok=true
for p in "${pids[@]}"; do wait "$p" || par_ok=false; done
check "four nbdcopy at once read the same data" bash -c "
    $par_ok && for j in 1 2 3 4; do cmp '$tmp/img.raw' '$tmp/par'\$j.raw || exit 1; done"

# --- stop, check, restart ---------------------------------------------------------------
checks=$((checks + 1))
echo "checking: SIGTERM stops the server with status 0"
nbd_stop || fail "SIGTERM did not stop the server cleanly"
check "pool check after the server stopped" "$CISTERN" pool check tank
nbd_start tank || finish
check "after a restart (serving tank only) the data is there" \
    timeout 60 qemu-img compare -f raw -F raw "$tmp/img.raw" "$uri/tank/vm1"
check "after a restart the other pool is not served" \
    bash -c "! timeout 20 nbdinfo --size '$uri/other/only' 2>/dev/null"
finish
