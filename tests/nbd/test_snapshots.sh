#!/bin/bash
# Snapshots of a served volume, over NBD: a snapshot taken through the daemon contains
# exactly the writes completed before it; it is exported read-only as POOL/VOL@SNAP with its
# own contents; and the volume's export offers the meta context cistern:changed:SNAP, whose
# map (nbdinfo --map) is exactly the ranges written since the snapshot.
. "$(dirname "$0")/lib.sh"
need nbdinfo nbdcopy python3 jq

nbd_setup
"$CISTERN" vol create tank/vm --size 64M >/dev/null || fail "vol create"
nbd_start

head -c $((8 * M)) /dev/urandom >base.img
check "write 8M of data" nbdcopy base.img "$uri/tank/vm"
check "snapshot the served volume" "$CISTERN" snap create tank/vm@s1
check "snap list shows it" bash -c "'$CISTERN' snap list tank/vm --json | jq -e '.[0].name | test(\"s1\")'"

# After the snapshot: 64K at 1M and 4K at 5M change; the rest does not.
head -c $((64 * 1024)) /dev/urandom >a.bin
head -c 4096 /dev/urandom >b.bin
# Debian's python3 has the nbd module (libnbd's bindings).
/usr/bin/python3 - "$uri/tank/vm" <<'EOF' || fail "writes after the snapshot"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(open("a.bin", "rb").read(), 1 << 20)
h.pwrite(open("b.bin", "rb").read(), 5 << 20)
h.flush()
h.shutdown()
EOF

nbdinfo --map=cistern:changed:s1 "$uri/tank/vm" >map.txt 2>map.err ||
    fail "nbdinfo --map=cistern:changed:s1: $(cat map.err)"
# nbdinfo prints: offset length flags [description]
changed=$(awk '$3 == 1 { print $1 "+" $2 }' map.txt | tr '\n' ' ')
check "the changed map is exactly the two writes (got: $changed)" \
    test "$changed" = "1048576+65536 5242880+4096 "

check "an unknown snapshot is not a context" \
    bash -c "! nbdinfo --map=cistern:changed:nosuch '$uri/tank/vm' >/dev/null 2>&1"

# The snapshot, exported read-only, still reads as before the writes.
check "export the snapshot" nbdcopy "$uri/tank/vm@s1" snap.img
check "the snapshot holds the data of its time" cmp <(head -c $((8 * M)) snap.img) base.img
check "the snapshot export is read-only" \
    bash -c "nbdinfo --json '$uri/tank/vm@s1' | jq -e '.exports[0].\"is_read_only\" == true'"

check "snap diff agrees" bash -c \
    "'$CISTERN' snap diff tank/vm@s1 --json | jq -e 'map(.offset) == [1048576, 5242880]'"

nbd_stop
check "pool check after serving" "$CISTERN" pool check tank
finish
