#!/usr/bin/env bash
# Hostile and broken initiators on raw sockets (malformed.py): bad opcodes, lying lengths,
# truncated PDUs, CmdSN outside the window, broken logins and CHAP, broken Data-Out,
# disconnects mid-transfer, reinstatement, digests, unanswered pings. After each, another
# session must work with its data intact; at the end the server must still stop cleanly
# and the pool must check.
#
# Needs: python3.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/iscsi/lib.sh"
need python3 timeout
script="${CISTERN_SRC:-$(dirname "$0")/../..}/tests/iscsi/malformed.py"

iscsi_setup 512M
"$CISTERN" vol create tank/vol --size 64M >/dev/null || exit 1
truncate -s 64M "$tmp/m1"
"$CISTERN" pool create sec "$tmp/m1" >/dev/null || exit 1
"$CISTERN" vol create sec/v --size 8M >/dev/null || exit 1
"$CISTERN" iscsi auth set sec user=chapuser secret=chap-secret-1234 >/dev/null || exit 1
iscsi_conf "iscsi-auth = none" "iscsi-nop-interval = 1" "iscsi-nop-timeout = 2"
iscsi_start --threads 2 || finish
check "malformed initiators (see above)" timeout 280 python3 "$script" "$port" "$target" \
    "${IQN_PREFIX}sec" chapuser chap-secret-1234
check "the server is still running" kill -0 "$server_pid"
iscsi_stop || fail "the server did not stop cleanly"
check "pool check after the server stopped" "$CISTERN" pool check tank
finish
