#!/usr/bin/env bash
# `cistern serve` as the daemon of the command line: every pool and volume command run
# against a pool the daemon holds goes through its control socket (and import and export
# through its NBD server), with valid JSON; a volume served to an NBD client is not deleted,
# shrunk or rolled back under it, and is with --force, which disconnects the client first; settings from a configuration file, overridden by flags; a stale
# control socket is replaced and a live one is not; malformed control requests get error
# replies while the daemon keeps serving; SIGTERM stops it with status 0, and the pool is
# consistent afterwards.
#
# Needs: $CISTERN, python3, nbdinfo, qemu-io (holds an NBD connection open), truncate, cmp.
# Only processes this test started are signalled, by their PID; every wait is bounded.
set -u

skip() {
    echo "skipped: $*" >&2
    exit 77
}

[[ -n "${CISTERN:-}" && -x "${CISTERN}" ]] || skip "CISTERN does not name the cistern binary (${CISTERN:-unset})"
for tool in python3 nbdinfo qemu-io truncate cmp timeout; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done

tmp=$(mktemp -d)
daemon_pid=
bg_pids=()
cleanup() {
    for pid in "${bg_pids[@]}" $daemon_pid; do
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1
export CISTERN_STATE_DIR="$tmp/state"
unset CISTERN_CONTROL
exec </dev/null

failures=0
checks=0
M=$((1024 * 1024))

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

finish() {
    echo "$checks checks, $failures failures"
    if [[ $failures -ne 0 ]]; then
        echo "--- daemon logs ---" >&2
        tail -n 30 "$tmp"/serve*.log >&2 2>/dev/null
        exit 1
    fi
    exit 0
}

# ok DESCRIPTION -- ARGS...: cistern ARGS must succeed; stdout in $tmp/out.
ok() {
    local what=$1
    shift 2
    checks=$((checks + 1))
    echo "checking: $what (cistern $*)"
    if ! timeout 60 "$CISTERN" "$@" >"$tmp/out" 2>"$tmp/err"; then
        fail "$what: expected success; stderr: $(cat "$tmp/err")"
        return 1
    fi
}

# fails PATTERN DESCRIPTION -- ARGS...: cistern ARGS must exit 1 with stderr matching PATTERN.
fails() {
    local pattern=$1 what=$2
    shift 3
    checks=$((checks + 1))
    echo "checking: $what (cistern $*)"
    timeout 60 "$CISTERN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [[ $rc -ne 1 ]]; then
        fail "$what: expected exit 1, got $rc; stderr: $(cat "$tmp/err")"
        return 1
    fi
    if ! grep -Eq -- "$pattern" "$tmp/err"; then
        fail "$what: stderr does not match '$pattern': $(cat "$tmp/err")"
        return 1
    fi
}

# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1
    shift
    checks=$((checks + 1))
    echo "checking: $what"
    "$@" || fail "$what"
}

# json_ok PYTHON-EXPRESSION: $tmp/out must be JSON for which the expression (on d) is true.
json_ok() {
    python3 -c "
import json, sys
d = json.load(open('$tmp/out'))
sys.exit(0 if ($1) else 1)"
}

# The daemon: start_daemon LOG ARGS... starts `cistern serve ARGS` and waits (10 s at most)
# for its control socket to answer; stop_daemon sends SIGTERM and wants status 0.
start_daemon() {
    local log=$1 sock=${CONTROL:-$CISTERN_STATE_DIR/control.sock} i
    shift
    "$CISTERN" serve "$@" 2>"$tmp/$log" &
    daemon_pid=$!
    for ((i = 0; i < 100; i++)); do
        if [[ -S "$sock" ]] && python3 - "$sock" <<'EOF' 2>/dev/null; then
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b'{"id": 1, "op": "daemon.info"}\n')
assert b'"ok":true' in s.recv(65536)
EOF
            return 0
        fi
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
    done
    fail "the daemon did not answer on $sock within 10 s: $(cat "$tmp/$log")"
    kill -9 "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    daemon_pid=
    return 1
}

stop_daemon() {
    local pid=$daemon_pid i rc
    daemon_pid=
    [[ -n "$pid" ]] || return 1
    kill -TERM "$pid"
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "the daemon did not exit within 30 s of SIGTERM" >&2
        kill -9 "$pid"
        wait "$pid" 2>/dev/null
        return 1
    fi
    wait "$pid"
    rc=$?
    [[ $rc -eq 0 ]] || echo "the daemon exited with status $rc" >&2
    return $rc
}

# True when the daemon's log says it ran operation $2 ("control: vol.create tank/vm").
ran_in_daemon() {
    grep -q "control: $2" "$tmp/$1"
}

truncate -s 256M m0 m1 m2 m3
"$CISTERN" pool create tank m0 >/dev/null || { echo "pool create failed" >&2; exit 1; }
"$CISTERN" pool create other m2 >/dev/null || { echo "pool create failed" >&2; exit 1; }
"$CISTERN" vol create tank/vm --size 32M >/dev/null || exit 1
nbd="$tmp/nbd.sock"

# ---------------------------------------------------------------------------------------
# Every command through the daemon
start_daemon serve1.log tank --nbd "unix:$nbd" || finish

check "the control socket is mode 0600" \
    test "$(stat -c %a "$CISTERN_STATE_DIR/control.sock")" = 600

ok "pool list --json" -- pool list --json &&
    check "pool list: both pools, tank from the daemon" json_ok \
        "sorted(p['name'] for p in d) == ['other', 'tank'] and all(p['health'] == 'ONLINE' and p['size'] > 0 for p in d)"
check "pool list went through the daemon for tank" ran_in_daemon serve1.log "pool.list tank"
ok "pool list (table)" -- pool list && check "the table has both pools" grep -q "^other" "$tmp/out"
ok "pool status --json" -- pool status tank --json &&
    check "pool status: a status" json_ok "d['name'] == 'tank' and d['volumes'] == 1 and len(d['members']) == 1"
ok "pool status (table) names the daemon" -- pool status tank &&
    check "it says who serves the pool" grep -q "served by: *the daemon (pid $daemon_pid)" "$tmp/out"
ok "vol create" -- vol create tank/a --size 16M --grain 64K
check "vol create ran in the daemon" ran_in_daemon serve1.log "vol.create tank/a"
ok "vol list --json" -- vol list --json &&
    check "vol list: the volumes of the daemon's pool" json_ok \
        "sorted(v['name'] for v in d) == ['tank/a', 'tank/vm']"
ok "vol list POOL (table)" -- vol list tank && check "tank/a is listed" grep -q "^tank/a " "$tmp/out"
ok "vol info --json" -- vol info tank/a --json &&
    check "vol info: size and grain" json_ok "d['size'] == 16 << 20 and d['grain'] == 65536"
ok "vol resize (grow)" -- vol resize tank/a --size +16M
ok "vol resize (shrink, not served)" -- vol resize tank/a --size 24M
ok "vol info --json after resizing" -- vol info tank/a --json &&
    check "the size is 24M" json_ok "d['size'] == 24 << 20"
ok "vol rename" -- vol rename tank/a b
fails "tank/a: no such volume" "the old name is gone" -- vol info tank/a
ok "pool set" -- pool set tank low_space_pct=85 commit_interval_ms=1000
ok "pool status --json after pool set" -- pool status tank --json &&
    check "the settings changed" json_ok \
        "d['settings']['low_space_pct'] == 85 and d['settings']['commit_interval_ms'] == 1000"
ok "pool add" -- pool add tank m1
ok "pool status --json after pool add" -- pool status tank --json &&
    check "two members" json_ok "len(d['members']) == 2"
check "the registry has the new member" grep -q "$tmp/m1" "$CISTERN_STATE_DIR/pools/tank.json"
ok "pool check" -- pool check tank && check "consistent" grep -q "consistent" "$tmp/out"
check "pool check ran in the daemon" ran_in_daemon serve1.log "pool.check tank"

# Import and export go over the daemon's NBD server.
head -c $((3 * M)) /dev/urandom >src.raw
truncate -s $((10 * M)) src.raw
printf 'end' >>src.raw
ok "vol import --create through the daemon" -- vol import tank/img src.raw --create
ok "vol export through the daemon" -- vol export tank/img out.raw
check "the export reads back the source" cmp -n "$(stat -c %s src.raw)" src.raw out.raw
check "the export is sparse" test "$(stat -c %b out.raw)" -lt $((8 * 2048))
ok "vol info --json of the import" -- vol info tank/img --json &&
    check "only the data is mapped" json_ok "d['mapped'] <= 4 << 20 and d['size'] >= 10 << 20"
ok "vol import into an existing volume with --resize" -- vol import tank/vm src.raw --resize
ok "vol export it to standard output" -- vol export tank/vm - &&
    check "standard output reads back the source" cmp -n "$(stat -c %s src.raw)" src.raw "$tmp/out"

# Pools the daemon holds are not exported, destroyed or imported from under it.
fails "pool tank is served by the daemon \(pid $daemon_pid\): stop it first" \
    "pool destroy of a served pool" -- pool destroy tank --force
fails "pool tank is served by the daemon \(pid $daemon_pid\): stop it first" \
    "pool export of a served pool" -- pool export tank
fails "pool tank is served by the daemon \(pid $daemon_pid\): stop it first" \
    "pool import of a served pool" -- pool import m0 m1
# A pool the daemon does not hold is opened here, as without a daemon.
ok "vol create in a pool the daemon does not hold" -- vol create other/x --size 4M
check "... which did not go through the daemon" bash -c "! grep -q 'vol.create other' '$tmp/serve1.log'"

# ---------------------------------------------------------------------------------------
# Volumes served to NBD clients
ok "vol create of a volume while serving" -- vol create tank/fresh --size 8M
check "a new volume is exported at once" bash -c \
    "[[ \$(timeout 20 nbdinfo --size 'nbd+unix:///tank/fresh?socket=$nbd') == $((8 * M)) ]]"
ok "vol resize (grow) while serving" -- vol resize tank/fresh --size 12M
check "the export has the new size" bash -c \
    "[[ \$(timeout 20 nbdinfo --size 'nbd+unix:///tank/fresh?socket=$nbd') == $((12 * M)) ]]"

# hold: starts qemu-io holding a connection to tank/fresh open while it sleeps, and waits
# for the daemon to serve it.
hold() {
    local before i
    before=$(grep -c 'serving "tank/fresh"' "$tmp/serve1.log")
    qemu-io -f raw -c 'sleep 60000' "nbd+unix:///tank/fresh?socket=$nbd" >/dev/null 2>&1 &
    holder=$!
    bg_pids+=($holder)
    for ((i = 0; i < 100; i++)); do
        [[ $(grep -c 'serving "tank/fresh"' "$tmp/serve1.log") -gt $before ]] && return 0
        sleep 0.1
    done
    fail "qemu-io did not connect to tank/fresh"
}

# release: ends the holder.
release() {
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
}

hold
fails "volume tank/fresh is served to 1 client\(s\); use --force" \
    "vol delete of a served volume" -- vol delete tank/fresh
fails "volume tank/fresh is served to 1 client\(s\); use --force" \
    "vol resize (shrink) of a served volume" -- vol resize tank/fresh --size 4M
fails "volume tank/fresh is served to 1 client\(s\); use --force" \
    "vol resize (relative shrink) of a served volume" -- vol resize tank/fresh --size -4M
ok "vol resize (grow) of a served volume" -- vol resize tank/fresh --size 16M
ok "vol info of a served volume" -- vol info tank/fresh
ok "vol resize --force (shrink) disconnects the client first" -- \
    vol resize tank/fresh --size 4M --force
check "the daemon said it disconnected the client" grep -q 'disconnecting from fresh' "$tmp/serve1.log"
check "the export has the new size" bash -c \
    "[[ \$(timeout 20 nbdinfo --size 'nbd+unix:///tank/fresh?socket=$nbd') == $((4 * M)) ]]"
release

ok "snap create of a volume to roll back" -- snap create tank/fresh@before
hold
fails "volume tank/fresh is served to 1 client\(s\); use --force" \
    "snap rollback of a served volume" -- snap rollback tank/fresh@before
ok "snap rollback --force disconnects the client first" -- snap rollback tank/fresh@before --force
release
ok "snap delete" -- snap delete tank/fresh@before

hold
ok "vol delete --force disconnects the client first" -- vol delete tank/fresh --force
fails "tank/fresh.*no such volume" "the deleted volume is gone" -- vol info tank/fresh
release

# ---------------------------------------------------------------------------------------
# Malformed control requests: each answered with an error, the daemon keeps serving.
checks=$((checks + 1))
echo "checking: malformed control requests get error replies"
if ! python3 - "$CISTERN_STATE_DIR/control.sock" <<'EOF'; then
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rwb")

def ask(raw):
    f.write(raw)
    f.flush()
    return json.loads(f.readline())

def err(raw, code, words, rid=None):
    r = ask(raw)
    assert r["ok"] is False and r["id"] == rid, r
    assert r["error"]["errno"] == code and words in r["error"]["message"], r

err(b"garbage\n", 22, "not a JSON object")
err(b"[1, 2, 3]\n", 22, "not a JSON object")
err(b'{"id": 1, "op": "vol.create", "args": {"pool": "tank"}}trailing\n', 22, "not a JSON object")
err(b'{"id": 2}\n', 22, 'no "op"', 2)
err(b'{"id": 3, "op": "no.such"}\n', 95, "unknown operation", 3)
err(b'{"id": 4, "op": "vol.create", "args": {"pool": "tank", "volume": "v"}}\n', 22,
    "missing argument 'size'", 4)
err(b'{"id": 5, "op": "vol.info", "args": {"pool": "tank"}}\n', 22, "missing argument 'volume'", 5)
err(b'{"id": 6, "op": "vol.create", "args": {"pool": "tank", "volume": "v", "size": "big"}}\n',
    22, "expected an integer", 6)
err(b'{"id": 7, "op": "vol.create", "args": {"pool": "tank", "volume": "v", "size": 1000}}\n',
    22, "multiple of 4K", 7)
err(b'{"id": 8, "op": "vol.info", "args": {"pool": "tank", "volume": "a/b"}}\n', 22,
    "invalid name", 8)
err(b'{"id": 9, "op": "vol.info", "args": {"pool": "tank", "volume": "vm", "x": 1}}\n', 22,
    "unknown argument", 9)
err(b'{"id": 10, "op": "vol.info", "args": [1]}\n', 22, "must be an object", 10)
err(b'{"id": 11, "op": "pool.set", "args": {"pool": "tank", "settings": {"low_space_pct": 0}}}\n',
    22, "out of range", 11)
err(b'{"id": 12, "op": "vol.info", "args": {"pool": "nosuch", "volume": "vm"}}\n', 2,
    "no such pool is served", 12)
err(b'{"id": 13, "op": "vol.resize", "args": {"pool": "tank", "volume": "vm"}}\n', 22,
    "one of 'size' and 'delta'", 13)
err(b'{"id": 14, "op": "vol.delete", "args": {"pool": "tank", "volume": "nosuch"}}\n', 2,
    "no such volume", 14)
# A line longer than the limit: one EMSGSIZE reply, then the connection is usable again.
err(b'{"id": 15, "op": "' + b"x" * (200 << 10) + b'"}\n', 90, "longer than")
r = ask(b'{"id": "after", "op": "vol.info", "args": {"pool": "tank", "volume": "vm"}}\n')
assert r["ok"] and r["id"] == "after" and r["result"]["name"] == "tank/vm", r
# Two requests in one write, and one split over two writes.
f.write(b'{"id": 20, "op": "daemon.info"}\n{"id": 21, "op": "vol.list"}\n')
f.flush()
a, b = json.loads(f.readline()), json.loads(f.readline())
assert a["id"] == 20 and a["ok"] and "tank" in a["result"]["pools"], a
assert b["id"] == 21 and b["ok"] and len(b["result"]["volumes"]) >= 3, b
f.write(b'{"id": 22, "op": "pool.')
f.flush()
f.write(b'status", "args": {"pool": "tank"}}\n')
f.flush()
r = json.loads(f.readline())
assert r["id"] == 22 and r["ok"] and r["result"]["name"] == "tank", r
# Binary garbage, then a peer that leaves mid-line.
s2 = socket.socket(socket.AF_UNIX)
s2.connect(sys.argv[1])
s2.sendall(bytes(range(256)) * 4 + b"\n")
s2.settimeout(10)
assert b'"ok":false' in s2.recv(65536)
s2.sendall(b'{"id": 1, "op": "vol')
s2.close()
EOF
    fail "malformed control requests"
fi
ok "the daemon still answers commands" -- vol list tank --json &&
    check "... with the volumes" json_ok "len(d) >= 3"
check "the daemon still serves NBD" timeout 20 nbdinfo --size "nbd+unix:///tank/vm?socket=$nbd"
check "the daemon is still running" kill -0 "$daemon_pid"

# ---------------------------------------------------------------------------------------
# A second daemon on the same control socket is refused; SIGTERM stops the first cleanly.
checks=$((checks + 1))
echo "checking: a second daemon does not take a live control socket"
timeout 30 "$CISTERN" serve other --nbd "unix:$tmp/nbd2.sock" 2>"$tmp/serve-second.log"
rc=$?
if [[ $rc -ne 1 ]] || ! grep -q "another daemon answers there" "$tmp/serve-second.log"; then
    fail "second daemon: exit $rc: $(cat "$tmp/serve-second.log")"
fi
check "SIGTERM stops the daemon with status 0" stop_daemon
check "the control socket is removed" test ! -e "$CISTERN_STATE_DIR/control.sock"
ok "pool check after the daemon stopped (opened here)" -- pool check tank
ok "vol list after the daemon stopped" -- vol list tank --json &&
    check "the volumes made through the daemon are there" json_ok \
        "sorted(v['volume'] for v in d) == ['b', 'img', 'vm']"
ok "vol export of the import after the daemon stopped" -- vol export tank/img out2.raw
check "it reads back the source" cmp -n "$(stat -c %s src.raw)" src.raw out2.raw

# ---------------------------------------------------------------------------------------
# A stale control socket (its daemon was killed) is replaced.
start_daemon serve2.log tank --nbd "unix:$nbd" || finish
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
daemon_pid=
check "the killed daemon left its socket" test -S "$CISTERN_STATE_DIR/control.sock"
ok "without a daemon, commands open the pool themselves" -- vol info tank/vm
start_daemon serve3.log tank --nbd "unix:$nbd" || finish
check "the stale socket was replaced" grep -q "stale" "$tmp/serve3.log"
ok "commands reach the new daemon" -- vol create tank/after-stale --size 4M
check "... through the control socket" ran_in_daemon serve3.log "vol.create tank/after-stale"
check "SIGTERM stops it with status 0" stop_daemon

# ---------------------------------------------------------------------------------------
# Settings from the configuration file; flags win over it.
cat >"$CISTERN_STATE_DIR/serve.conf" <<EOF
# the daemon's settings
nbd = unix:$tmp/conf-nbd.sock
threads = 2
log-level = debug
pools = tank
read-only = no
EOF
start_daemon serve4.log || finish
check "nbd from the default serve.conf" test -S "$tmp/conf-nbd.sock"
check "log-level debug from the file" grep -q "settings from $CISTERN_STATE_DIR/serve.conf" "$tmp/serve4.log"
check "pools from the file: tank only" bash -c \
    "timeout 20 nbdinfo --list --json 'nbd+unix:///?socket=$tmp/conf-nbd.sock' | grep -q tank/vm &&
     ! timeout 20 nbdinfo --list 'nbd+unix:///?socket=$tmp/conf-nbd.sock' | grep -q other/x"
check "SIGTERM stops it with status 0" stop_daemon

cat >"$tmp/other.conf" <<EOF
nbd = unix:$tmp/ignored.sock
control = $tmp/ctl.sock
log-level = warn
EOF
export CISTERN_CONTROL="$tmp/ctl.sock"
CONTROL="$tmp/ctl.sock" start_daemon serve5.log --config "$tmp/other.conf" --nbd "unix:$tmp/flag-nbd.sock" ||
    finish
check "--nbd wins over the file" test -S "$tmp/flag-nbd.sock"
check "... and the file's nbd is not used" test ! -e "$tmp/ignored.sock"
check "control from the file" test -S "$tmp/ctl.sock"
check "log-level warn from the file: no informational lines" bash -c "! grep -q 'serving' '$tmp/serve5.log'"
ok "commands find the daemon at CISTERN_CONTROL" -- vol create tank/via-conf --size 4M
fails "pool tank is served by the daemon" "... which holds every registered pool" -- pool destroy tank
check "SIGTERM stops it with status 0" stop_daemon
unset CISTERN_CONTROL

checks=$((checks + 1))
echo "checking: a bad configuration file is a usage error naming its line"
printf 'nbd = unix:%s\ncolour = blue\n' "$tmp/x.sock" >"$tmp/bad.conf"
timeout 30 "$CISTERN" serve --config "$tmp/bad.conf" 2>"$tmp/err"
rc=$?
if [[ $rc -ne 2 ]] || ! grep -q "bad.conf:2: unknown setting 'colour'" "$tmp/err"; then
    fail "bad configuration: exit $rc: $(cat "$tmp/err")"
fi
checks=$((checks + 1))
echo "checking: a missing --config file is an error"
timeout 30 "$CISTERN" serve --config "$tmp/none.conf" 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] || fail "missing configuration: exit $rc: $(cat "$tmp/err")"

ok "pool check at the end" -- pool check tank
ok "pool check of the other pool" -- pool check other
finish
