#!/usr/bin/env bash
# fio's nbd engine against `cistern serve`: random writes at queue depth 32 verified with
# crc32c, on two volumes with different grains, and two jobs (two connections) on one
# volume at once, each verifying its own half.
#
# Needs: fio with the nbd engine.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/nbd/lib.sh"
need fio timeout
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"

nbd_setup
"$CISTERN" vol create tank/a --size 64M --grain 64K >/dev/null || exit 1
"$CISTERN" vol create tank/b --size 64M --grain 4K >/dev/null || exit 1
nbd_start --threads 2 || finish

run_fio() {
    local what=$1
    shift
    checks=$((checks + 1))
    echo "checking: $what"
    if ! timeout 120 fio --output="$tmp/fio.out" --ioengine=nbd --direct=1 --verify=crc32c \
        --do_verify=1 --verify_fatal=1 "$@"; then
        fail "$what"
        cat "$tmp/fio.out" >&2
        return
    fi
    grep -q "err= 0" "$tmp/fio.out" || { fail "$what: fio reported errors"; cat "$tmp/fio.out" >&2; }
}

run_fio "4K random writes, QD32, verified (grain 64K)" \
    --name=a --uri="$uri/tank/a" --rw=randwrite --bs=4k --iodepth=32 --size=16M
run_fio "4K random writes, QD32, verified (grain 4K)" \
    --name=b --uri="$uri/tank/b" --rw=randwrite --bs=4k --iodepth=32 --size=16M
run_fio "mixed block sizes 4K-256K, QD16, verified" \
    --name=m --uri="$uri/tank/b" --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=32M
run_fio "1M sequential writes, QD8, verified" \
    --name=s --uri="$uri/tank/a" --rw=write --bs=1M --iodepth=8 --size=64M
run_fio "two connections at once, each on its half" \
    --name=j --uri="$uri/tank/a" --rw=randwrite --bs=16k --iodepth=16 --size=32M \
    --numjobs=2 --offset_increment=32M
nbd_stop || fail "the server did not stop cleanly"
check "pool check after the server stopped" "$CISTERN" pool check tank
finish
