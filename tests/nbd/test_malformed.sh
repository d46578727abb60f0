#!/usr/bin/env bash
# Hostile and broken clients on raw sockets (malformed.py): bad magic, lying lengths, a
# 4 GiB option, truncated headers, garbage, disconnects with requests in flight, a client
# that never reads its replies. After each, another client must be served; at the end the
# server must still stop cleanly and the pool must check.
#
# Needs: python3.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/nbd/lib.sh"
need python3 timeout
script="${CISTERN_SRC:-$(dirname "$0")/../..}/tests/nbd/malformed.py"

nbd_setup
"$CISTERN" vol create tank/vol --size 64M >/dev/null || exit 1
nbd_start --threads 2 || finish
check "malformed clients (see above)" timeout 240 python3 "$script" "$port" tank/vol
check "the server is still running" kill -0 "$server_pid"
nbd_stop || fail "the server did not stop cleanly"
check "pool check after the server stopped" "$CISTERN" pool check tank
finish
