#!/bin/bash
# The foundation benchmark: fio on a raw file, then cistern-bench-vol on a pool over the
# same file, in one run on one file system, printed as ratios. Nothing is asserted: the
# goals are printed beside the ratios for a reader to judge.
#
#   bench/run-foundation.sh [--quick] [--build DIR] [--size SIZE] [--time SECONDS]
#                           [--keep] [SCRATCH_DIR]
#
#   SCRATCH_DIR  where the backing file is made (default $TMPDIR, else /tmp); it must be on
#                the file system under test, and hold --size bytes
#   --quick      a 2G file and 2 s per workload: about a minute in all (a smoke run)
#   --build DIR  build directory (default build/ in the source tree); built if needed
#   --size SIZE  backing file size (default 8G); the random and sequential workloads use its
#                first half, the random writes into fresh space the rest
#   --time S     seconds per workload (default 10)
#   --keep       leave the scratch directory in place
#
# Fairness: fio and the pool use the same file, filled once beforehand so that every block
# is written (reads of holes or unwritten extents never reach the disk, and first writes into
# them pay the file system's extent conversion). Both use O_DIRECT and io_uring at queue depth
# 32 from one thread, over the same span of the file. The cistern side reports two grains:
# the volume default and 4K, so the default can be chosen by this benchmark.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
BENCH=run-foundation
source "$src/bench/lib.sh"
bench_options '4,17' 'size' "$@"

if [ "$quick" = 1 ]; then
    size=${size:-2G}
    seconds=${seconds:-2}
else
    size=${size:-8G}
    seconds=${seconds:-10}
fi
scratch_base=${scratch_base:-${TMPDIR:-/tmp}}

build=${build:-$src/build}

bench_need fio jq cmake fallocate

# ---- Build ------------------------------------------------------------------------------

bench_build "$src" "$build" cistern-bench-vol
bench="$build/cistern-bench-vol"

# ---- Scratch file -----------------------------------------------------------------------

bench_scratch foundation

file="$scratch/backing.img"
bytes=$(numfmt --from=iec "$size")
mib=$((bytes / 1048576))
span_mib=$((mib / 2))
echo "run-foundation: filling a ${size} backing file in $scratch" >&2
fallocate -l "$bytes" "$file"
dd if=/dev/zero of="$file" bs=1M count="$mib" oflag=direct conv=notrunc status=none

fstype=$(df --output=fstype "$scratch" | tail -1)
device=$(df --output=source "$scratch" | tail -1)

# ---- fio on the raw file, and cistern-bench-vol on a pool over the same file -------------

# fio_run RW BS: prints "IOPS MBPS" of one time-based job over the span.
fio_run() {
    fio --name=raw --filename="$file" --ioengine=io_uring --direct=1 --iodepth=32 \
        --rw="$1" --bs="$2" --size="${span_mib}M" --time_based --runtime="$seconds" \
        --numjobs=1 --randrepeat=0 --output-format=json --output="$scratch/fio.json" \
        >/dev/null
    jq -r '.jobs[0] | [(.read.iops + .write.iops), ((.read.bw_bytes + .write.bw_bytes) / 1e6)]
           | @tsv' "$scratch/fio.json"
}

# A shared disk drifts by tens of percent over minutes, so fio runs three times: before,
# between and after the two cistern runs; the table compares with the mean of the three
# and shows their spread, which is the noise any ratio carries.
declare -A raw
fio_pass() {
    echo "run-foundation: fio pass $1, ${seconds} s per workload" >&2
    raw[randwrite]+="$(fio_run randwrite 4k)"$'\n'
    raw[randread]+="$(fio_run randread 4k)"$'\n'
    raw[seqwrite]+="$(fio_run write 1M)"$'\n'
    raw[seqread]+="$(fio_run read 1M)"$'\n'
}

fio_pass 1
echo "run-foundation: cistern-bench-vol, default grain" >&2
json_default=$("$bench" --file "$file" --time "$seconds" --json)
fio_pass 2
echo "run-foundation: cistern-bench-vol, grain 4K" >&2
json_4k=$("$bench" --file "$file" --time "$seconds" --grain 4K --json)
fio_pass 3
raw[randwrite-fresh]=${raw[randwrite]}
echo "run-foundation: cistern-bench-vol, metadata" >&2
md_grains=262144
if [ "$quick" = 1 ]; then md_grains=65536; fi
json_md=$("$bench" --file "$file" --metadata --md-grains "$md_grains" --json)

# ---- Table --------------------------------------------------------------------------------

grain_default=$(jq -r '.grain / 1024' <<<"$json_default")

# cistern_value JSON NAME: prints "IOPS MBPS" of one result.
cistern_value() {
    jq -r --arg n "$2" '.results[] | select(.name == $n) | [.iops, .mbps] | @tsv' <<<"$1"
}

printf '\nCistern foundation benchmark, %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'host: %s CPUs, kernel %s; file system %s on %s\n' "$(nproc)" "$(uname -r)" "$fstype" "$device"
printf 'backing file %s (the same file for fio and the pool), span %s MiB, queue depth 32, %s s per workload\n' \
    "$size" "$span_mib" "$seconds"
printf '4K lines in IOPS, 1M lines in MB/s (10^6 bytes); fio raw: mean of 3 passes (spread:\n'
printf 'the largest deviation from it); ratio = cistern / fio raw\n\n'

printf '%-30s %9s %7s %13s %6s %13s %6s %8s\n' "workload" "fio raw" "spread" \
    "cistern ${grain_default}K" "ratio" "cistern 4K" "ratio" "goal"
printf '%-30s %9s %7s %13s %6s %13s %6s %8s\n' "------------------------------" "---------" \
    "-------" "-------------" "------" "-------------" "------" "--------"
for w in randwrite-fresh randwrite randread seqwrite seqread; do
    case "$w" in
    randwrite-fresh) label="4K random write, fresh space"; goal=0.5; col=1 ;;
    randwrite) label="4K random overwrite"; goal=0.9; col=1 ;;
    randread) label="4K random read"; goal=0.9; col=1 ;;
    seqwrite) label="1M sequential write, fresh"; goal=0.9; col=2 ;;
    seqread) label="1M sequential read"; goal=0.9; col=2 ;;
    esac
    a=$(cistern_value "$json_default" "$w" | cut -f"$col")
    b=$(cistern_value "$json_4k" "$w" | cut -f"$col")
    printf '%s' "${raw[$w]}" | cut -f"$col" |
        awk -v l="$label" -v a="$a" -v b="$b" -v g="$goal" '
        { v[NR] = $1; sum += $1 }
        END {
            r = NR ? sum / NR : 0
            dev = 0
            for (i = 1; i <= NR; i++) {
                d = r > 0 ? (v[i] - r) / r : 0
                if (d < 0) d = -d
                if (d > dev) dev = d
            }
            ra = r > 0 ? a / r : 0; rb = r > 0 ? b / r : 0
            printf "%-30s %9.0f %6.0f%% %13.0f %5.2f%s %13.0f %5.2f%s %6s\n", l, r, dev * 100,
                a, ra, (ra >= g ? " " : "!"), b, rb, (rb >= g ? " " : "!"), ">= " g "x"
        }'
done
printf '(! marks a ratio below its goal)\n'

# fresh_alloc JSON: KiB allocated per 4K write into fresh space, metadata included.
fresh_alloc() {
    jq -r '.results[] | select(.name == "randwrite-fresh") | .alloc_bytes_per_op / 1024 * 10
           | round / 10' <<<"$1"
}
printf '\nA 4K write into fresh space allocates and writes %sK with the %sK grain, %sK with the\n' \
    "$(fresh_alloc "$json_default")" "$grain_default" "$(fresh_alloc "$json_4k")"
printf '4K grain (metadata included).\n'

printf '\nMetadata per TiB mapped (extrapolated linearly from the image written)\n'
printf '  map: the mapping tree, i.e. the cache that holds the whole map; all: every tree node on disk\n\n'
printf '%-28s %10s %10s %10s %12s %12s\n' "image" "mapped" "extents" "map nodes" "map GiB/TiB" \
    "all GiB/TiB"
printf '%-28s %10s %10s %10s %12s %12s\n' "----------------------------" "----------" "----------" \
    "----------" "------------" "------------"
jq -r '.metadata[] | [.layout, .grain, .mapped_bytes, .extents, .map_nodes,
        .map_bytes_per_tib, .metadata_bytes_per_tib] | @tsv' <<<"$json_md" |
    while IFS=$'\t' read -r layout grain mapped extents nodes map all; do
        case "$layout" in
        sequential) name="sequential image" ;;
        random-4k) name="random 4K writes" ;;
        *) name=$layout ;;
        esac
        awk -v n="$name" -v g="$grain" -v m="$mapped" -v e="$extents" -v k="$nodes" \
            -v a="$map" -v b="$all" 'BEGIN {
            printf "%-28s %9.0fM %10d %10d %12.3f %12.3f\n", n ", grain " g / 1024 "K",
                m / 1048576, e, k, a / 2^30, b / 2^30
        }'
    done
