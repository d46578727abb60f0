# Shared by the NBD tests (sourced, not run), on tests/serve.sh: a pool in a temporary
# directory, and a `cistern serve` on 127.0.0.1 at a free port picked from the test's PID.
#
#   nbd_setup                     temporary directory ($tmp), state dir, pool "tank" on one
#                                 sparse 512 MiB member; cleanup at exit (nbd_cleanup)
#   nbd_start [serve options...]  starts the server; sets $port, $uri (nbd://127.0.0.1:PORT),
#                                 $server_pid; fails the test if it does not come up in 10 s
#   nbd_stop                      SIGTERM, then checks the exit status is 0 (bounded wait)
#   nbd_kill9                     kill -9 (a crash), and reaps it
#   check / fail / finish         counting checks; finish exits 0 or 1
#
# Only processes this test started are signalled, by their PID.

source "${CISTERN_SRC:-$(dirname "${BASH_SOURCE[0]}")/../..}/tests/serve.sh"

nbd_setup() { serve_setup 512M; }
nbd_cleanup() { serve_cleanup; }
nbd_stop() { serve_stop; }
nbd_kill9() { serve_kill9; }

nbd_start() {
    serve_start --nbd "127.0.0.1:@PORT@" "$@" || return 1
    uri="nbd://127.0.0.1:$port"
}
