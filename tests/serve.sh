# Shared by the tests of the daemon's network front ends (sourced through tests/nbd/lib.sh
# and tests/iscsi/lib.sh, not run): a pool in a temporary directory, and a `cistern serve`
# on 127.0.0.1 at a free port picked from the test's PID.
#
#   serve_setup SIZE              temporary directory ($tmp), state dir, pool "tank" on one
#                                 sparse member of SIZE; serve_cleanup at exit
#   serve_conf LINE...            writes $CISTERN_STATE_DIR/serve.conf (read at start)
#   serve_start ARGS...           starts `cistern serve ARGS`, each @PORT@ in them replaced by
#                                 the port picked; sets $port and $server_pid; fails the test
#                                 if nothing listens there within 10 s
#   serve_stop                    SIGTERM, then checks the exit status is 0 (bounded wait)
#   serve_kill9                   kill -9 (a crash), and reaps it
#   serve_cleanup                 kills a server left running and removes $tmp
#   skip / need / check / fail / finish
#                                 skipping (exit 77), counting checks; finish stops the
#                                 server and exits 0 or 1 (with the server's log)
#
# Only processes this test started are signalled, by their PID.

skip() {
    echo "skipped: $*" >&2
    exit 77
}

need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || skip "$tool is not installed"
    done
}

[[ -n "${CISTERN:-}" && -x "${CISTERN}" ]] ||
    skip "CISTERN does not name the cistern binary (${CISTERN:-unset})"

failures=0
checks=0
server_pid=
M=$((1024 * 1024))

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1
    shift
    checks=$((checks + 1))
    echo "checking: $what"
    if ! "$@"; then
        fail "$what"
        return 1
    fi
}

finish() {
    if [[ -n "$server_pid" ]]; then
        serve_stop || fail "the server did not stop cleanly"
    fi
    echo "$checks checks, $failures failures"
    [[ $failures -eq 0 ]] && exit 0
    echo "--- server log ---" >&2
    tail -n 60 "$tmp"/serve*.log >&2 2>/dev/null
    exit 1
}

serve_cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill -9 "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}

serve_setup() {
    tmp=$(mktemp -d)
    trap serve_cleanup EXIT
    cd "$tmp" || exit 1
    export CISTERN_STATE_DIR="$tmp/state"
    exec </dev/null
    truncate -s "$1" "$tmp/m0" || exit 1
    "$CISTERN" pool create tank "$tmp/m0" >/dev/null || { echo "pool create failed" >&2; exit 1; }
}

serve_conf() {
    mkdir -p "$CISTERN_STATE_DIR"
    printf '%s\n' "$@" >"$CISTERN_STATE_DIR/serve.conf"
}

# True once something accepts connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

serve_start() {
    local attempt log i
    for attempt in 0 1 2 3 4 5 6 7; do
        port=$((20000 + ($$ * 13 + attempt * 997 + RANDOM % 100) % 40000))
        port_open "$port" && continue
        log="$tmp/serve.$port.log"
        "$CISTERN" serve "${@//@PORT@/$port}" 2>"$log" &
        server_pid=$!
        for ((i = 0; i < 100; i++)); do
            port_open "$port" && return 0
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$server_pid" 2>/dev/null; then
            kill -9 "$server_pid"
            wait "$server_pid" 2>/dev/null
            server_pid=
            fail "server did not start listening in 10 s"
            cat "$log" >&2
            return 1
        fi
        wait "$server_pid" 2>/dev/null
        server_pid=
        grep -q "in use" "$log" && continue
        fail "server exited at start: $(cat "$log")"
        return 1
    done
    fail "no free port found"
    return 1
}

serve_stop() {
    local pid=$server_pid rc i
    [[ -n "$pid" ]] || return 0
    server_pid=
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "server $pid did not exit within 30 s of SIGTERM" >&2
        kill -9 "$pid"
        wait "$pid" 2>/dev/null
        return 1
    fi
    wait "$pid"
    rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "server exited with status $rc" >&2
        return 1
    fi
    return 0
}

serve_kill9() {
    [[ -n "$server_pid" ]] || return 0
    kill -9 "$server_pid"
    wait "$server_pid" 2>/dev/null
    server_pid=
}
