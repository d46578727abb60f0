#!/usr/bin/env bash
# Every NBD command, flag and error case against `cistern serve`, driven by nbdsh
# (nbd_commands.py): READ (simple and structured, holes as OFFSET_HOLE), WRITE, FUA, FLUSH,
# TRIM, WRITE_ZEROES with NO_HOLE and FAST_ZERO, CACHE, BLOCK_STATUS with REQ_ONE, the
# option haggling, errors (past the end, oversize, unaligned, unknown flags), a read-only
# export (EPERM), and durability: flush, kill -9 the server, restart, the data is there.
#
# Needs: nbdsh (libnbd's Python shell; Debian's python3, hence /usr/bin first on PATH).
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/nbd/lib.sh"
export PATH=/usr/bin:$PATH
need nbdsh timeout
nbdsh -c 'import nbd' >/dev/null 2>&1 || skip "nbdsh cannot import the nbd module"
script="${CISTERN_SRC:-$(dirname "$0")/../..}/tests/nbd/nbd_commands.py"
[[ -r "$script" ]] || skip "cannot find $script"

nbd_setup
"$CISTERN" vol create tank/vol --size 64M --grain 64K >/dev/null || exit 1
"$CISTERN" vol create tank/ro --size 4M >/dev/null || exit 1

phase() {
    local p=$1
    checks=$((checks + 1))
    echo "checking: phase $p"
    URI=$uri PHASE=$p timeout 120 nbdsh -n -c "exec(open('$script').read())" ||
        fail "phase $p (see above)"
}

nbd_start || finish
phase rw
check "write the read-only test data" \
    timeout 20 nbdsh -u "$uri/tank/ro" -c 'h.pwrite(b"\x42" * 4096, 0); h.flush()'

phase crash-write
nbd_kill9
check "pool check after kill -9" "$CISTERN" pool check tank
nbd_start || finish
phase crash-check
nbd_stop || fail "server did not stop cleanly"

nbd_start --read-only || finish
phase ro
nbd_stop || fail "read-only server did not stop cleanly"
check "pool check at the end" "$CISTERN" pool check tank
finish
