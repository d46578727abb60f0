#!/bin/bash
# Installs what is missing, builds Cistern (build/), and runs the demonstration: a pool on
# two file-backed members, a thin volume, a VM-sized image written into it and read back,
# and the pool's status and check.
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
step "$cistern" pool check demo
echo
echo "demo: done; files in $dir (state directory $CISTERN_STATE_DIR)"
