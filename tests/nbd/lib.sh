# Shared by the NBD tests (sourced, not run): a pool in a temporary directory, and a
# `cistern serve` on 127.0.0.1 at a free port picked from the test's PID.
#
#   nbd_setup                     temporary directory ($tmp), state dir, pool "tank" on one
#                                 sparse 512 MiB member; cleanup at exit
#   nbd_start [serve options...]  starts the server; sets $port, $uri (nbd://127.0.0.1:PORT),
#                                 $server_pid; fails the test if it does not come up in 10 s
#   nbd_stop                      SIGTERM, then checks the exit status is 0 (bounded wait)
#   nbd_kill9                     kill -9 (a crash), and reaps it
#   check / fail / finish         counting checks; finish exits 0 or 1
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
        nbd_stop || fail "the server did not stop cleanly"
    fi
    echo "$checks checks, $failures failures"
    [[ $failures -eq 0 ]] && exit 0
    echo "--- server log ---" >&2
    tail -n 40 "$tmp"/serve*.log >&2 2>/dev/null
    exit 1
}

nbd_cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill -9 "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}

nbd_setup() {
    tmp=$(mktemp -d)
    trap nbd_cleanup EXIT
    cd "$tmp" || exit 1
    export CISTERN_STATE_DIR="$tmp/state"
    exec </dev/null
    truncate -s 512M "$tmp/m0" || exit 1
    "$CISTERN" pool create tank "$tmp/m0" >/dev/null || { echo "pool create failed" >&2; exit 1; }
}

# True once something accepts connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

nbd_start() {
    local attempt log
    for attempt in 0 1 2 3 4 5 6 7; do
        port=$((20000 + ($$ * 13 + attempt * 997 + RANDOM % 100) % 40000))
        port_open "$port" && continue
        log="$tmp/serve.$port.log"
        "$CISTERN" serve --nbd "127.0.0.1:$port" "$@" 2>"$log" &
        server_pid=$!
        local i
        for ((i = 0; i < 100; i++)); do
            if port_open "$port"; then
                uri="nbd://127.0.0.1:$port"
                return 0
            fi
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

nbd_stop() {
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

nbd_kill9() {
    [[ -n "$server_pid" ]] || return 0
    kill -9 "$server_pid"
    wait "$server_pid" 2>/dev/null
    server_pid=
}
