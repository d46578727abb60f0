# Shared by the iSCSI tests (sourced, not run), on tests/serve.sh: a pool in a temporary
# directory, and a `cistern serve --iscsi` on 127.0.0.1 at a free port picked from the
# test's PID.
#
#   iscsi_setup [SIZE]            temporary directory ($tmp), state dir, pool "tank" on one
#                                 sparse member (default 2G); cleanup at exit
#   iscsi_conf LINE...            writes $CISTERN_STATE_DIR/serve.conf (read at start)
#   iscsi_start [serve options]   starts the daemon (no NBD); sets $port, $portal
#                                 (127.0.0.1:PORT), $target (the IQN of pool tank), $url
#                                 (iscsi://127.0.0.1:PORT/$target) and $server_pid
#   iscsi_stop                    SIGTERM, then checks the exit status is 0 (bounded wait)
#   check / fail / finish         counting checks; finish exits 0 or 1
#
# Only processes this test started are signalled, by their PID.

source "${CISTERN_SRC:-$(dirname "${BASH_SOURCE[0]}")/../..}/tests/serve.sh"

IQN_PREFIX=iqn.2026-11.org.cistern:
target=${IQN_PREFIX}tank

iscsi_setup() { serve_setup "${1:-2G}"; }
iscsi_conf() { serve_conf "$@"; }
iscsi_stop() { serve_stop; }

iscsi_start() {
    serve_start --nbd none --iscsi "127.0.0.1:@PORT@" "$@" || return 1
    portal=127.0.0.1:$port
    url=iscsi://$portal/$target
}
