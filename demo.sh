#!/bin/bash
# Installs what is missing, builds Cistern (build/), and runs the demonstration: a pool on
# two file-backed members, a thin volume, a VM-sized image written into it and read back,
# and the pool's status; then the daemon: `cistern serve` in the background serving the
# volumes over NBD on a Unix socket, NBD clients (nbdinfo, nbdcopy) on it, commands that
# go through its control socket while it serves, SIGTERM, and the pool's check.
#
#   ./demo.sh [DIR]    DIR holds the demo's files (default: ./demo-data, recreated)
set -euo pipefail

cd "$(dirname "$0")"
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSANITIZE=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

dir=${1:-demo-data}
cistern=$(pwd)/build/cistern
rm -rf "$dir"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
export CISTERN_STATE_DIR="$dir/state"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# Two members: sparse files stand in for disks.
truncate -s 2G "$dir/disk0" "$dir/disk1"
step "$cistern" pool create demo "$dir/disk0" "$dir/disk1"
step "$cistern" vol create demo/vm0 --size 8G

# A disk image with data, zeros and holes: 64 MiB of data spread over 1 GiB.
image="$dir/image.raw"
truncate -s 1G "$image"
for i in 0 3 7 12 15; do
    dd if=/dev/urandom of="$image" bs=1M count=12 seek=$((i * 64)) conv=notrunc status=none
done
step "$cistern" vol import demo/vm0 "$image"
step "$cistern" vol export demo/vm0 "$dir/copy.raw"
truncate -s 1G "$dir/copy.raw"
if cmp -s "$image" "$dir/copy.raw"; then
    echo "read back: identical to the image ($(du -h "$dir/copy.raw" | cut -f1) on disk of 1.0G)"
else
    echo "demo: the volume does not read back as written" >&2
    exit 1
fi

step "$cistern" vol list demo
step "$cistern" pool status demo

# The daemon: it holds the pool, serves its volumes over NBD on a Unix socket, and answers
# the commands below on its control socket ($CISTERN_STATE_DIR/control.sock).
nbd_sock="$dir/nbd.sock"
printf '\n\033[1m$ %s &\033[0m\n' "$cistern serve demo --nbd unix:$nbd_sock"
"$cistern" serve demo --nbd "unix:$nbd_sock" 2>"$dir/serve.log" &
daemon=$!
stop_daemon() { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; }
trap stop_daemon EXIT
for _ in $(seq 100); do
    [[ -S "$CISTERN_STATE_DIR/control.sock" && -S "$nbd_sock" ]] && break
    kill -0 "$daemon" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
    sleep 0.1
done
echo "daemon running (pid $daemon)"

step nbdinfo --list "nbd+unix:///?socket=$nbd_sock"
step nbdinfo --map "nbd+unix:///demo/vm0?socket=$nbd_sock"
# The pool is the daemon's now: these commands run in the daemon, through its control socket.
step "$cistern" vol create demo/vm1 --size 1G
step "$cistern" vol list
step nbdcopy "$image" "nbd+unix:///demo/vm1?socket=$nbd_sock"
step nbdcopy "nbd+unix:///demo/vm1?socket=$nbd_sock" "$dir/vm1.raw"
if cmp -s "$image" "$dir/vm1.raw"; then
    echo "read back over NBD: identical to the image"
else
    echo "demo: demo/vm1 does not read back over NBD as written" >&2
    exit 1
fi
step "$cistern" vol info demo/vm1

printf '\n\033[1m$ kill -TERM %s\033[0m\n' "$daemon"
kill -TERM "$daemon"
rc=0
wait "$daemon" || rc=$?
trap - EXIT
echo "daemon stopped (status $rc); its log:"
sed 's/^/  /' "$dir/serve.log"
[[ $rc -eq 0 ]] || exit 1

step "$cistern" pool check demo
echo
echo "demo: done; files in $dir (state directory $CISTERN_STATE_DIR)"
