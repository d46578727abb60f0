#!/usr/bin/env bash
# The `cistern` command end to end, on a pool of two 64 MiB sparse files: pool create, list,
# status, check, export, import, add, destroy; volume create, list, info, resize, rename,
# delete; snapshots (create, list, rename, diff, clone, rollback, delete, bad names); import and export of raw files (holes kept), pipes, NBD URIs (with qemu-nbd) and
# qcow2 images (with qemu-img); and the "in use" error of a second process.
#
# Needs: $CISTERN (the binary), python3 (JSON checks), truncate, cmp, stat, dd, mkfifo.
# The NBD and qcow2 parts are skipped, with a note, when qemu-nbd or qemu-img is missing.
set -u

skip() {
    echo "skipped: $*" >&2
    exit 77
}

[[ -n "${CISTERN:-}" && -x "${CISTERN}" ]] || skip "CISTERN does not name the cistern binary (${CISTERN:-unset})"
for tool in python3 truncate cmp stat dd mkfifo timeout; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
have_qemu_nbd=false
have_qemu_img=false
command -v qemu-nbd >/dev/null && have_qemu_nbd=true
command -v qemu-img >/dev/null && have_qemu_img=true

tmp=$(mktemp -d)
bg_pids=()
cleanup() {
    for pid in "${bg_pids[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1
export CISTERN_STATE_DIR="$tmp/state"
# No progress lines in the logs, whatever stderr is.
exec </dev/null

failures=0
checks=0
M=$((1024 * 1024))

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# ok DESCRIPTION -- ARGS...: cistern ARGS must succeed; its stdout is left in $tmp/out.
ok() {
    local what=$1
    shift 2
    checks=$((checks + 1))
    echo "checking: $what (cistern $*)"
    "$CISTERN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        fail "$what: expected success, got exit $rc; stderr: $(cat "$tmp/err")"
        return 1
    fi
    return 0
}

# Stops the test when a step that everything after it needs has failed.
give_up() {
    echo "giving up: $*" >&2
    echo "$((checks - failures)) passed, $failures failed"
    exit 1
}

# fails CODE PATTERN DESCRIPTION -- ARGS...: cistern ARGS must exit CODE with stderr matching
# PATTERN (an extended regular expression).
fails() {
    local code=$1 pattern=$2 what=$3
    shift 4
    checks=$((checks + 1))
    echo "checking: $what (cistern $*)"
    "$CISTERN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [[ $rc -ne $code ]]; then
        fail "$what: expected exit $code, got $rc; stderr: $(cat "$tmp/err")"
        return 1
    fi
    if ! grep -Eq -- "$pattern" "$tmp/err"; then
        fail "$what: expected stderr to match '$pattern', got: $(cat "$tmp/err")"
        return 1
    fi
    return 0
}

# check DESCRIPTION -- COMMAND...: a shell command that must succeed.
check() {
    local what=$1
    shift 2
    checks=$((checks + 1))
    echo "checking: $what"
    if ! "$@" >"$tmp/check.out" 2>&1; then
        fail "$what: $(cat "$tmp/check.out")"
        return 1
    fi
    return 0
}

# json FILE EXPRESSION: prints a Python expression over the document `d` in FILE.
json() {
    python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print(eval(sys.argv[2]))
except Exception as e:
    sys.exit("%s: %s" % (sys.argv[1], e))' "$1" "$2"
}

# json_is FILE EXPRESSION EXPECTED: the expression must print EXPECTED.
json_is() {
    local got
    got=$(json "$1" "$2") || return 1
    if [[ "$got" != "$3" ]]; then
        echo "expected $2 == $3, got $got"
        return 1
    fi
}

# is_sparse FILE: fewer bytes allocated than the file's size.
is_sparse() {
    local blocks bsize size
    read -r blocks bsize size < <(stat -c '%b %B %s' "$1")
    if ((blocks * bsize >= size)); then
        echo "$1: $((blocks * bsize)) bytes allocated for a size of $size: not sparse"
        return 1
    fi
}

same() {
    cmp "$1" "$2"
}

# ---------------------------------------------------------------------------------------
# Test data: 10 MiB with random data, a hole, written zeros and an unaligned patch.

truncate -s 64M m1 m2 m3
truncate -s 10M src.raw
dd if=/dev/urandom of=src.raw bs=1M count=1 conv=notrunc status=none
dd if=/dev/urandom of=src.raw bs=1M seek=4 count=2 conv=notrunc status=none
dd if=/dev/zero of=src.raw bs=1M seek=6 count=1 conv=notrunc status=none
dd if=/dev/urandom of=src.raw bs=1M seek=7 count=3 conv=notrunc status=none
dd if=/dev/urandom of=src.raw bs=1 seek=$((2 * M + 12345)) count=777 conv=notrunc status=none
# 5000 bytes: a source that is not a whole number of blocks.
head -c 5000 /dev/urandom >odd.raw
cp odd.raw odd_padded.raw && truncate -s 8192 odd_padded.raw
# 16 MiB of noise, to check that an import overwrites everything.
head -c $((16 * M)) /dev/urandom >noise.raw
cp src.raw src_padded.raw && truncate -s 16M src_padded.raw

# ---------------------------------------------------------------------------------------
# Pools

ok "pool create from two sparse files" -- pool create tank m1 m2 ||
    give_up "no pool to test with"
check "the pool is registered in the state directory" -- \
    json_is state/pools/tank.json 'd["name"], len(d["members"])' "('tank', 2)"
fails 1 "m1.*belongs to pool tank" "a member of a pool cannot be reused without --force" -- \
    pool create tank2 m1 m3
fails 1 "tank.*already registered" "a second pool of the same name" -- pool create tank m3

ok "pool list" -- pool list
check "pool list shows tank ONLINE" -- grep -Eq '^tank .*ONLINE' "$tmp/out"
ok "pool list --json" -- pool list --json
cp "$tmp/out" list.json
check "pool list --json is valid JSON" -- python3 -m json.tool list.json
check "pool list --json gives sizes in bytes" -- \
    json_is list.json '[(p["name"], p["health"], type(p["size"]).__name__) for p in d]' \
    "[('tank', 'ONLINE', 'int')]"

ok "pool status" -- pool status tank
check "pool status names both members" -- grep -q "$tmp/m2" "$tmp/out"
ok "pool status --json" -- pool status tank --json
cp "$tmp/out" status.json
check "pool status --json is valid JSON" -- python3 -m json.tool status.json
check "pool status --json lists the members" -- json_is status.json 'len(d["members"])' 2

ok "pool set" -- pool set tank low_space_pct=80 commit_interval_ms=2000 cache_bytes=64M
ok "pool status --json after pool set" -- pool status tank --json
cp "$tmp/out" status.json
check "the settings changed" -- \
    json_is status.json '(d["settings"]["low_space_pct"], d["settings"]["commit_interval_ms"])' \
    "(80, 2000)"

# ---------------------------------------------------------------------------------------
# Volumes

ok "vol create" -- vol create tank/vm --size 20M || give_up "no volume to test with"
ok "vol create with a grain" -- vol create tank/small --size 4M --grain 4K
fails 1 "tank/vm.*exists" "vol create of an existing name" -- vol create tank/vm --size 1M
fails 1 "nosuch.*no such pool" "vol create in an unknown pool" -- vol create nosuch/vm --size 1M
ok "vol list" -- vol list
check "vol list shows tank/vm" -- grep -Eq '^tank/vm +20M' "$tmp/out"
ok "vol list POOL --json" -- vol list tank --json
cp "$tmp/out" vols.json
check "vol list --json is valid JSON" -- python3 -m json.tool vols.json
check "vol list --json has both volumes" -- json_is vols.json '[v["name"] for v in d]' \
    "['tank/small', 'tank/vm']"
ok "vol info" -- vol info tank/vm
check "vol info shows the size" -- grep -Eq '^size: +20M' "$tmp/out"
ok "vol info --json" -- vol info tank/small --json
cp "$tmp/out" info.json
check "vol info --json gives size and grain in bytes" -- \
    json_is info.json '(d["size"], d["grain"])' "($((4 * M)), 4096)"
ok "vol resize (absolute)" -- vol resize tank/vm --size 32M
ok "vol resize (relative)" -- vol resize tank/vm --size +8M
ok "vol info --json after resizing" -- vol info tank/vm --json
cp "$tmp/out" info.json
check "the volume is 40M" -- json_is info.json 'd["size"]' $((40 * M))
ok "vol rename" -- vol rename tank/vm vm2
fails 1 "tank/vm.*no such volume" "the old name is gone" -- vol info tank/vm
ok "vol rename with the pool in the new name" -- vol rename tank/vm2 tank/vm
ok "vol delete" -- vol delete tank/vm
fails 1 "tank/vm.*no such volume" "a deleted volume is gone" -- vol info tank/vm

# ---------------------------------------------------------------------------------------
# Import and export of raw files

ok "vol import --create of a raw file" -- vol import tank/img src.raw --create
ok "vol info --json of the imported volume" -- vol info tank/img --json
cp "$tmp/out" info.json
check "the new volume has the source's size" -- json_is info.json 'd["size"]' $((10 * M))
ok "vol export to a file" -- vol export tank/img out.raw
check "the export equals the source" -- same src.raw out.raw
check "the export is sparse" -- is_sparse out.raw

ok "vol create a 16M volume for overwriting" -- vol create tank/big --size 16M
ok "vol import noise into it" -- vol import tank/big noise.raw
ok "vol import the source over the noise" -- vol import tank/big src.raw
ok "vol export it" -- vol export tank/big big.raw
check "it reads as the source followed by zeros" -- same src_padded.raw big.raw

fails 1 "source is 10M, volume tank/small is 4M: use --resize" \
    "an import into a smaller volume" -- vol import tank/small src.raw
ok "vol import --resize into a smaller volume" -- vol import tank/small src.raw --resize
ok "vol export the resized volume" -- vol export tank/small small.raw
check "the resized volume equals the source" -- same src.raw small.raw
fails 1 "tank/img.*exists" "vol import --create into an existing volume" -- \
    vol import tank/img src.raw --create
fails 1 "tank/none.*--create" "vol import into a missing volume without --create" -- \
    vol import tank/none src.raw

ok "vol import of a file that is not a whole number of blocks" -- vol import tank/odd odd.raw --create
ok "vol export it" -- vol export tank/odd odd_out.raw
check "it reads as the file followed by zeros" -- same odd_padded.raw odd_out.raw

# Pipes
checks=$((checks + 1))
echo "checking: vol import from standard input (a pipe)"
if ! cat src.raw | "$CISTERN" vol import tank/piped - --create --size 12M 2>"$tmp/err"; then
    fail "vol import from a pipe: $(cat "$tmp/err")"
fi
checks=$((checks + 1))
echo "checking: vol export to standard output (a pipe)"
if ! "$CISTERN" vol export tank/piped - 2>"$tmp/err" | cat >piped.raw; then
    fail "vol export to a pipe: $(cat "$tmp/err")"
fi
cp src.raw src_12m.raw && truncate -s 12M src_12m.raw
check "the piped round trip equals the source" -- same src_12m.raw piped.raw
checks=$((checks + 1))
echo "checking: vol export to standard output redirected to a file"
if ! "$CISTERN" vol export tank/img - >redirected.raw 2>"$tmp/err"; then
    fail "vol export to a redirected stdout: $(cat "$tmp/err")"
fi
check "the redirected export equals the source" -- same src.raw redirected.raw
checks=$((checks + 1))
echo "checking: a pipe larger than the volume is refused"
if head -c $((20 * M)) /dev/zero | tr '\0' 'x' | "$CISTERN" vol import tank/odd - 2>"$tmp/err"; then
    fail "a 20M pipe into an 8K volume: expected failure"
elif ! grep -q "more than the volume" "$tmp/err"; then
    fail "a 20M pipe into an 8K volume: expected 'more than the volume', got: $(cat "$tmp/err")"
fi

# ---------------------------------------------------------------------------------------
# NBD

wait_for_socket() {
    for _ in $(seq 100); do
        [[ -S "$1" ]] && return 0
        sleep 0.1
    done
    return 1
}

if $have_qemu_nbd; then
    cp src.raw nbd_src.raw
    qemu-nbd -f raw --persistent -k "$tmp/nbd1.sock" nbd_src.raw &
    bg_pids+=($!)
    if wait_for_socket "$tmp/nbd1.sock"; then
        ok "vol import from nbd+unix://" -- \
            vol import tank/fromnbd "nbd+unix:///?socket=$tmp/nbd1.sock" --create
        ok "vol export of the NBD import" -- vol export tank/fromnbd fromnbd.raw
        check "the NBD import equals the source" -- same src.raw fromnbd.raw
    else
        fail "qemu-nbd did not create $tmp/nbd1.sock"
    fi

    head -c $((10 * M)) /dev/urandom >nbd_dst.raw
    qemu-nbd -f raw --persistent -k "$tmp/nbd2.sock" nbd_dst.raw &
    nbd2_pid=$!
    bg_pids+=($nbd2_pid)
    if wait_for_socket "$tmp/nbd2.sock"; then
        ok "vol export to nbd+unix://" -- vol export tank/img "nbd+unix:///?socket=$tmp/nbd2.sock"
        kill "$nbd2_pid"
        wait "$nbd2_pid" 2>/dev/null
        check "the NBD export equals the source" -- same src.raw nbd_dst.raw
    else
        fail "qemu-nbd did not create $tmp/nbd2.sock"
    fi
else
    echo "note: qemu-nbd is not installed: NBD import and export not tested"
fi

# ---------------------------------------------------------------------------------------
# qcow2 (through qemu-nbd)

if $have_qemu_img && $have_qemu_nbd; then
    qemu-img convert -f raw -O qcow2 src.raw src.qcow2
    ok "vol import of a qcow2 image (format detected)" -- vol import tank/fromqcow src.qcow2 --create
    ok "vol export of the qcow2 import" -- vol export tank/fromqcow fromqcow.raw
    check "the qcow2 import equals the source" -- same src.raw fromqcow.raw
    ok "vol export to a new qcow2 image" -- vol export tank/img out.qcow2 --format qcow2
    check "the new image is qcow2" -- grep -q "file format: qcow2" <(qemu-img info out.qcow2)
    check "the qcow2 export equals the source" -- qemu-img compare -f qcow2 -F raw out.qcow2 src.raw
else
    echo "note: qemu-img or qemu-nbd is not installed: qcow2 import and export not tested"
fi

# ---------------------------------------------------------------------------------------
# Snapshots: create (two volumes at once), list with space, rename, diff, clone, rollback,
# export of a snapshot, delete; and the refusals, each leaving the list as it was.

ok "snap create of two volumes at once" -- snap create tank/img@s1 tank/big@s1
ok "snap list --json" -- snap list tank/img --json
check "a new snapshot shares everything: nothing unique" -- \
    json_is "$tmp/out" '[(s["name"], s["unique"], s["referenced"] > 0) for s in d]' \
    "[('tank/img@s1', 0, True)]"
ok "vol info --json of the volume" -- vol info tank/img --json
check "nothing written since the snapshot" -- \
    json_is "$tmp/out" 'd["written"], d["unique"], d["lun"] >= 0' "(0, 0, True)"
ok "write after the snapshot" -- vol import tank/img odd.raw
ok "vol info --json of the snapshot" -- vol info tank/img@s1 --json
cp "$tmp/out" snapinfo.json
ok "vol info --json after the write" -- vol info tank/img --json
check "what the volume wrote is unique to it, and what it overwrote to the snapshot" -- \
    python3 -c '
import json, sys
s, v = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert v["written"] > 0 and v["unique"] > 0 and s["unique"] > 0, (s, v)
assert "lun" not in s, s
' snapinfo.json "$tmp/out"
ok "snap rename" -- snap rename tank/img@s1 before
fails 1 "tank/img@s1.*no such" "the old snapshot name is gone" -- snap diff tank/img@s1
ok "snap rename with the full new name" -- snap rename tank/img@before tank/img@base
fails 2 "stays with its volume" "snap rename to another volume" -- \
    snap rename tank/img@base tank/big@base
ok "snap diff" -- snap diff tank/img@base --json
cp "$tmp/out" diff.json
check "snap diff covers what the volume wrote since the snapshot" -- \
    json_is diff.json 'sum(r["length"] for r in d) > 0' True
ok "vol export of a snapshot" -- vol export tank/img@base snap.raw
check "the snapshot holds the image as it was" -- same snap.raw src.raw
ok "clone" -- clone tank/img@base tank/copy
ok "vol export of the clone" -- vol export tank/copy copy.raw
check "the clone reads as its snapshot" -- same copy.raw src.raw
ok "snap rollback" -- snap rollback tank/img@base
ok "vol export after the rollback" -- vol export tank/img rolled.raw
check "the rollback restored the image" -- same rolled.raw src.raw

ok "snap list before refusals" -- snap list tank/img --json
cp "$tmp/out" before.json
for bad in "x/y" "x@y" "" ".dot" "$(printf 'caf\xc3\xa9')" "$(printf '\xff')" \
    "$(printf 'n%.0s' {1..70})"; do
    fails 2 "invalid|missing" "a bad snapshot name '$bad'" -- snap create "tank/img@$bad"
    fails 2 "invalid|missing" "a bad new snapshot name '$bad'" -- snap rename tank/img@base "$bad"
done
fails 1 "exists" "snap create of a name that exists" -- snap create tank/img@base
fails 1 "exists" "snap create of two volumes, one name taken" -- snap create tank/copy@base tank/img@base
fails 1 "tank/big@base.*no such" "rollback to a snapshot of another volume" -- snap rollback tank/big@base
fails 1 "has 1 snapshot" "vol delete of a volume with snapshots" -- vol delete tank/img
ok "snap list after refusals" -- snap list tank/img --json
check "the refusals changed nothing" -- cmp before.json "$tmp/out"
fails 1 "copy@base.*no such" "the refused group snapshot made nothing" -- vol info tank/copy@base
ok "snap delete" -- snap delete tank/img@base
ok "snap delete of the other" -- snap delete tank/big@s1
ok "the clone outlives its origin" -- vol export tank/copy copy2.raw
check "the clone still reads as its origin did" -- same copy2.raw src.raw

# ---------------------------------------------------------------------------------------
# Checking, and a second process

ok "pool check" -- pool check tank
check "pool check reports a consistent pool" -- grep -q "pool tank: consistent" "$tmp/out"

# A background import holds the pool open while it waits for its source, a fifo.
mkfifo "$tmp/fifo"
"$CISTERN" vol import tank/img "$tmp/fifo" 2>"$tmp/bg.err" &
holder=$!
bg_pids+=($holder)
ino=$(stat -c %i m1)
locked=false
for _ in $(seq 100); do
    if grep -Eq ":${ino} " /proc/locks 2>/dev/null; then
        locked=true
        break
    fi
    sleep 0.1
done
if $locked; then
    fails 1 "tank: pool is in use by another process" "a second process opening the pool" -- \
        pool status tank
    checks=$((checks + 1))
    echo "checking: the first process finishes its import"
    # dd opens the fifo itself, so the timeout also covers a reader that never came.
    timeout 30 dd if=src.raw of="$tmp/fifo" bs=1M status=none
    if ! wait "$holder"; then
        fail "the background import failed: $(cat "$tmp/bg.err")"
    fi
else
    echo "note: could not see the pool's lock in /proc/locks: 'in use' not tested"
    timeout 5 dd if=src.raw of="$tmp/fifo" bs=1M status=none
    wait "$holder"
fi
ok "vol export after the background import" -- vol export tank/img img2.raw
check "the background import wrote the source" -- same src.raw img2.raw

# ---------------------------------------------------------------------------------------
# Export, import, add, destroy

ok "pool export" -- pool export tank
check "the pool's entry is gone" -- test ! -e state/pools/tank.json
fails 1 "tank.*no such pool" "an exported pool cannot be opened" -- vol list tank
ok "pool list after the export" -- pool list
check "pool list no longer shows tank" -- bash -c "! grep -q '^tank ' '$tmp/out'"

ok "a different pool named tank" -- pool create tank m3
fails 1 "tank.*another pool of that name" "pool import over a pool of the same name" -- \
    pool import m1 m2
ok "pool destroy of the empty pool" -- pool destroy tank

ok "pool import with the members in reverse order" -- pool import m2 m1
check "the members are recorded in the pool's order" -- \
    json_is state/pools/tank.json '[m.rsplit("/", 1)[1] for m in d["members"]]' "['m1', 'm2']"
ok "vol export after re-import" -- vol export tank/img img3.raw
check "the data survived export and import" -- same src.raw img3.raw

ok "pool add" -- pool add tank m3
ok "pool status --json after pool add" -- pool status tank --json
cp "$tmp/out" status.json
check "the pool has three members" -- json_is status.json 'len(d["members"])' 3
check "the registry has three members" -- json_is state/pools/tank.json 'len(d["members"])' 3
ok "pool check after pool add" -- pool check tank

fails 1 "tank: pool has [0-9]+ volumes: use --force" "pool destroy of a pool with volumes" -- \
    pool destroy tank
ok "pool destroy --force" -- pool destroy tank --force
check "the destroyed pool is unregistered" -- test ! -e state/pools/tank.json
fails 1 "no pool label" "the destroyed pool's members cannot be imported" -- pool import m1 m2 m3

echo "$((checks - failures)) passed, $failures failed"
[[ $failures -eq 0 ]]
