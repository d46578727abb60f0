#!/bin/bash
# The snapshot benchmark: what snapshots cost in Cistern, through the volume API and through
# NBD, side by side with qcow2's internal snapshots and backing chains, in one run on one
# file system. Prints one table of figures and ratios; nothing is asserted: the goals are
# printed beside the ratios for a reader to judge.
#
#   bench/run-snapshots.sh [--quick] [--build DIR] [--big N] [--time SECONDS]
#                          [--keep] [SCRATCH_DIR]
#
#   SCRATCH_DIR  where the files are made (default $TMPDIR, else /tmp); it must be on the
#                file system under test and hold about 45G (a --quick run: about 3G)
#   --quick      a smoke run of a few minutes: 100K grains for the large map, 100
#                snapshots instead of 1000, 20 layers instead of 100, 2 s per line
#   --build DIR  build directory (default build/ in the source tree); built if needed
#   --big N      mapped grains of the large map (default 10000000: 38G of data)
#   --time S     seconds per timed line and round (default 10)
#   --keep       leave the scratch directory in place
#
# The parts (4 KiB grains throughout; 4K random I/O at queue depth 32, one job):
#   1. Snapshot creation against the size of the map: cistern-bench-snap create on a volume
#      with 10 thousand and with --big mapped grains, every other grain of the volume, so
#      that every grain is an extent of its own. 64 random 4K writes, and their commit,
#      before each of 20 timed vol_snapshot calls; the small map is measured before and after
#      the large one (40 creations). The median of each, and their ratio (goal: about 1).
#      The commit of the writes is timed apart and shown beside: it follows the writes and
#      the depth of the map, and a snapshot taken with writes pending pays it first.
#   2. Through the volume API (cistern-bench-snap io): volumes "plain" and "snapped" of
#      2G, written whole, then 1000 rounds of the same 64 random 4K writes on both, each
#      volume's committed apart (the commit of snapped's timed), each round followed by a
#      timed snapshot of "snapped". Random reads of plain, snapped and its oldest
#      snapshot; random overwrites of plain and of snapped once each of its grains was
#      copied since its last snapshot (no write copies: the snapshots are all that
#      differs); random writes of plain (in place) and of snapped right after a new
#      snapshot (each first write to a grain copies it); 3 interleaved rounds per line.
#   3. The same pool prepared the same way, served by `cistern serve`, through fio's nbd
#      engine: the same reads (the oldest snapshot as the export POOL/snapped@s0000), and the
#      writes, each round of snapped after a `cistern snap create` through the daemon.
#   4. 100 points in time, with 256 random 4K writes into a 1G image before each: qcow2
#      internal snapshots (`qemu-img snapshot -c`), a qcow2 backing chain (`qemu-img create
#      -b`, depth 100 over the base), and Cistern snapshots (`cistern snap create` through
#      the daemon); the same writes (qemu-io: on the files, over NBD for Cistern) and the same
#      1G random base image. Creation time of each (a process each, median), then random
#      reads through fio's nbd engine: the top of the chain (qemu-nbd), the qcow2 image and
#      its oldest internal snapshot (qemu-nbd -l), the Cistern volume and its oldest
#      snapshot; interleaved rounds, in an order rotated from round to round.
#
# Every server listens on a Unix socket in the scratch directory and is stopped by the PID
# this script got for it; every file is made in the scratch directory, removed at the end.
# The host is shared: peers and Cistern run interleaved in the same run so that the drift
# of a shared disk falls on all of them alike, but single figures still carry the noise.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
BENCH=run-snapshots
source "$src/bench/lib.sh"
bench_options '7,17' 'big' "$@"

small=10000
if [ "$quick" = 1 ]; then
    big=${big:-100000}
    seconds=${seconds:-2}
    rounds=2
    span=256M
    nsnaps=100
    layers=20
    qsize=256M
    iofile=2G
else
    big=${big:-10000000}
    seconds=${seconds:-10}
    rounds=3
    span=2G
    nsnaps=1000
    layers=100
    qsize=1G
    iofile=16G # 2 x span, the copies of the overwrites and of three write rounds, metadata
fi
between=64     # 4K writes before each snapshot of parts 1-3
layer_writes=256 # 4K writes before each point in time of part 4
scratch_base=${scratch_base:-${TMPDIR:-/tmp}}
if ! [[ "$big" =~ ^[0-9]+$ ]] || [ "$big" -lt 1000 ] || [ "$big" -gt 10000000 ]; then
    echo "run-snapshots: --big: a number of grains from 1000 to 10000000" >&2
    exit 2
fi

build=${build:-$src/build}

bench_need fio jq cmake qemu-img qemu-io qemu-nbd nbdinfo openssl
bench_need_fio_nbd

# ---- Build ------------------------------------------------------------------------------

bench_build "$src" "$build" cistern cistern-bench-snap
cistern="$build/cistern"
snapbench="$build/cistern-bench-snap"

# ---- Scratch and processes ----------------------------------------------------------------

bench_scratch snapshots

fstype=$(df --output=fstype "$scratch" | tail -1)
device=$(df --output=source "$scratch" | tail -1)

# ms_since T0: milliseconds since a `date +%s%N` stamp.
ms_since() {
    echo $((($(date +%s%N) - $1) / 1000)) | awk '{ printf "%.1f", $1 / 1000 }'
}

# median: of the numbers on stdin, one a line.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
                                        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# fill FILE SIZE: a file of written blocks.
fill() {
    fallocate -l "$2" "$1"
    dd if=/dev/zero of="$1" bs=1M count=$(($(numfmt --from=iec "$2") / 1048576)) oflag=direct \
        conv=notrunc status=none
}

# start_server KIND NAME ARGS...: starts a server on $scratch/NAME.sock; sets spid[NAME].
start_server() {
    local kind=$1 name=$2 log="$scratch/server-$2.log" sock="$scratch/$2.sock" pid i uri
    shift 2
    rm -f "$sock"
    case "$kind" in
    qemu-nbd)
        qemu-nbd --cache=none --aio="$aio" --shared=8 -t -k "$sock" -x disk "$@" 2>>"$log" &
        uri="nbd+unix:///disk?socket=$sock"
        ;;
    cistern)
        "$cistern" serve "$@" --nbd "unix:$sock" 2>>"$log" &
        uri=""
        ;;
    esac
    pid=$!
    spid[$name]=$pid
    for ((i = 0; i < 300; i++)); do
        if [ -S "$sock" ] && { [ -z "$uri" ] || nbdinfo --size "$uri" >/dev/null 2>&1; }; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited at start:"
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    say "$name did not come up in 30 s"
    cat "$log" >&2
    exit 1
}

# stop_server NAME: SIGTERM, then SIGKILL after 60 s.
stop_server() {
    local pid=${spid[$1]:-} i
    [ -n "$pid" ] || return 0
    spid[$1]=""
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$1 ($pid) did not exit within 60 s of SIGTERM; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# fio_nbd URI RW SIZE: IOPS of one time-based 4K job at QD 32 over the first SIZE bytes.
fio_nbd() {
    fio --name=snap --ioengine=nbd --uri="$1" --rw="$2" --bs=4k --iodepth=32 --numjobs=1 \
        --size="$3" --time_based --runtime="$seconds" --randrepeat=0 --norandommap \
        --output-format=json --output="$scratch/fio.json" >/dev/null
    jq -r '.jobs[0] | (.read.iops + .write.iops) | floor' "$scratch/fio.json"
}

aio=io_uring
if ! qemu-nbd --help 2>&1 | grep -q io_uring; then aio=native; fi

declare -A fig # the figures of the table

# ---- 1. Snapshot creation against the size of the map -------------------------------------

# create_run GRAINS TAG: cistern-bench-snap create on a fresh sparse member; appends its
# creation times to $scratch/create-TAG.txt and records the extents.
create_run() {
    local grains=$1 tag=$2 bytes member="$scratch/create.img" json
    # The data, the map (about 32 bytes per extent) and room to spare.
    bytes=$((grains * 4096 / 100 * 106 + (1 << 30)))
    truncate -s "$bytes" "$member"
    json=$("$snapbench" create --file "$member" --grains "$grains" --count 20 \
        --between "$between")
    rm -f "$member"
    jq -r '.create_ms[]' <<<"$json" >>"$scratch/create-$tag.txt"
    jq -r '.commit_ms[]' <<<"$json" >>"$scratch/commit-$tag.txt"
    fig[extents-$tag]=$(jq -r .extents <<<"$json")
    fig[fill-$tag]=$(jq -r .fill_seconds <<<"$json")
}

say "1. snapshot creation with $small and $big mapped grains (the small map before and after)"
create_run "$small" small
create_run "$big" big
create_run "$small" small
fig[create-small]=$(median <"$scratch/create-small.txt")
fig[create-big]=$(median <"$scratch/create-big.txt")
fig[commit-small]=$(median <"$scratch/commit-small.txt")
fig[commit-big]=$(median <"$scratch/commit-big.txt")

# ---- 2. Through the volume API -------------------------------------------------------------

say "2. volume API: $nsnaps snapshots, reads and writes, $rounds rounds of ${seconds} s"
truncate -s "$iofile" "$scratch/io.img"
json=$("$snapbench" io --file "$scratch/io.img" --fill --span "$span" --snaps "$nsnaps" \
    --between "$between" --time "$seconds" --rounds "$rounds")
rm -f "$scratch/io.img"
fig[api-read-plain]=$(jq -r .read_iops.plain <<<"$json")
fig[api-read-snapped]=$(jq -r .read_iops.snapped <<<"$json")
fig[api-read-oldest]=$(jq -r .read_iops.oldest_snapshot <<<"$json")
fig[api-write-plain]=$(jq -r .write_iops.plain <<<"$json")
fig[api-over-plain]=$(jq -r .overwrite_iops.plain <<<"$json")
fig[api-over-snapped]=$(jq -r .overwrite_iops.snapped <<<"$json")
fig[api-write-after]=$(jq -r .write_iops.after_snapshot <<<"$json")
fig[api-alloc-after]=$(jq -r .write_alloc_kib_per_op.after_snapshot <<<"$json")
fig[api-create-first]=$(jq -r .create_first10_median_ms <<<"$json")
fig[api-create-last]=$(jq -r .create_last10_median_ms <<<"$json")
fig[api-commit-first]=$(jq -r .commit_first10_median_ms <<<"$json")
fig[api-commit-last]=$(jq -r .commit_last10_median_ms <<<"$json")

# ---- 3. Through NBD -------------------------------------------------------------------------

say "3. NBD: the same pool served by cistern serve, fio's nbd engine"
export CISTERN_STATE_DIR="$scratch/state"
pool=snapbench
member="$scratch/member.img"
fill "$member" "$iofile"
"$cistern" pool create "$pool" "$member" >/dev/null
"$snapbench" prepare --file "$member" --span "$span" --snaps "$nsnaps" \
    --between "$between" >/dev/null

# The 1G random image of part 4, imported now as the volume q (before the daemon runs).
qbytes=$(numfmt --from=iec "$qsize")
{ openssl enc -aes-128-ctr -nosalt -pass pass:cistern-snap-bench -pbkdf2 </dev/zero 2>/dev/null ||
    true; } | head -c "$qbytes" >"$scratch/base.raw"
"$cistern" vol import "$pool/q" "$scratch/base.raw" --create -q >/dev/null

start_server cistern cistern "$pool"
csock="$scratch/cistern.sock"
curi() { echo "nbd+unix:///$pool/$1?socket=$csock"; }

declare -A nbdr nbdw
for ((k = 0; k < rounds; k++)); do
    order=(plain snapped snapped@s0000)
    for ((t = 0; t < 3; t++)); do
        target=${order[(k + t) % 3]}
        nbdr[$target]+="$(fio_nbd "$(curi "$target")" randread "$span") "
    done
    for ((t = 0; t < 2; t++)); do
        if [ $(((k + t) % 2)) = 0 ]; then
            nbdw[plain]+="$(fio_nbd "$(curi plain)" randwrite "$span") "
        else
            t0=$(date +%s%N)
            "$cistern" snap create "$pool/snapped@w$k" >/dev/null
            echo "$(ms_since "$t0")" >>"$scratch/nbd-create.txt"
            nbdw[snapped]+="$(fio_nbd "$(curi snapped)" randwrite "$span") "
        fi
    done
done
mean() { tr ' ' '\n' | awk 'NF { s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }'; }
fig[nbd-read-plain]=$(mean <<<"${nbdr[plain]}")
fig[nbd-read-snapped]=$(mean <<<"${nbdr[snapped]}")
fig[nbd-read-oldest]=$(mean <<<"${nbdr[snapped@s0000]}")
fig[nbd-write-plain]=$(mean <<<"${nbdw[plain]}")
fig[nbd-write-after]=$(mean <<<"${nbdw[snapped]}")

# ---- 4. qcow2 internal snapshots and backing chain vs Cistern ------------------------------

say "4. $layers points in time: qcow2 internal snapshots, a qcow2 backing chain, cistern"
qemu-img convert -q -f raw -O qcow2 "$scratch/base.raw" "$scratch/internal.qcow2"
qemu-img convert -q -f raw -O qcow2 "$scratch/base.raw" "$scratch/chain-0.qcow2"
rm -f "$scratch/base.raw"
top="$scratch/chain-0.qcow2"

# layer_cmds I: qemu-io arguments for the writes before point I: 256 random 4K writes,
# the same offsets and pattern on every target.
layer_cmds() {
    awk -v seed="$1" -v n="$layer_writes" -v blocks=$((qbytes / 4096)) 'BEGIN {
        srand(seed + 1)
        for (i = 0; i < n; i++)
            printf "-c\nwrite -q -P %d %d 4k\n", (seed % 250) + 1, int(rand() * blocks) * 4096
    }'
}

for ((i = 0; i < layers; i++)); do
    mapfile -t cmds < <(layer_cmds "$i")
    for ((t = 0; t < 3; t++)); do
        case $(((i + t) % 3)) in
        0)
            qemu-io -f qcow2 "${cmds[@]}" "$scratch/internal.qcow2" >/dev/null
            t0=$(date +%s%N)
            qemu-img snapshot -c "s$i" "$scratch/internal.qcow2"
            echo "$(ms_since "$t0")" >>"$scratch/q-internal.txt"
            ;;
        1)
            qemu-io -f qcow2 "${cmds[@]}" "$top" >/dev/null
            t0=$(date +%s%N)
            qemu-img create -q -f qcow2 -b "$top" -F qcow2 "$scratch/chain-$((i + 1)).qcow2"
            echo "$(ms_since "$t0")" >>"$scratch/q-chain.txt"
            top="$scratch/chain-$((i + 1)).qcow2"
            ;;
        2)
            qemu-io -f raw "${cmds[@]}" "$(curi q)" >/dev/null
            t0=$(date +%s%N)
            "$cistern" snap create "$pool/q@s$i" >/dev/null
            echo "$(ms_since "$t0")" >>"$scratch/q-cistern.txt"
            ;;
        esac
    done
done
# The newest layer holds some data too.
mapfile -t cmds < <(layer_cmds "$layers")
qemu-io -f qcow2 "${cmds[@]}" "$scratch/internal.qcow2" >/dev/null
qemu-io -f qcow2 "${cmds[@]}" "$top" >/dev/null
qemu-io -f raw "${cmds[@]}" "$(curi q)" >/dev/null
fig[q-create-internal]=$(median <"$scratch/q-internal.txt")
fig[q-create-chain]=$(median <"$scratch/q-chain.txt")
fig[q-create-cistern]=$(median <"$scratch/q-cistern.txt")
fig[q-depth]=$(qemu-img info --backing-chain "$top" | grep -c '^image:')

# qemu-nbd read-only, so the image and its snapshot can be served at once.
start_server qemu-nbd chain -r -f qcow2 "$top"
start_server qemu-nbd internal -r -f qcow2 "$scratch/internal.qcow2"
start_server qemu-nbd internal-s0 -r -f qcow2 -l s0 "$scratch/internal.qcow2"
declare -A qr
quri() { echo "nbd+unix:///disk?socket=$scratch/$1.sock"; }
for ((k = 0; k < rounds; k++)); do
    order=(chain internal internal-s0 cistern cistern-s0)
    for ((t = 0; t < 5; t++)); do
        target=${order[(k + t) % 5]}
        case "$target" in
        cistern) uri=$(curi q) ;;
        cistern-s0) uri=$(curi q@s0) ;;
        *) uri=$(quri "$target") ;;
        esac
        qr[$target]+="$(fio_nbd "$uri" randread "$qsize") "
    done
done
for target in chain internal internal-s0 cistern cistern-s0; do
    fig[q-read-$target]=$(mean <<<"${qr[$target]}")
done
for name in chain internal internal-s0 cistern; do
    stop_server "$name"
done
fig[nbd-create]=$(median <"$scratch/nbd-create.txt")

# ---- Table -------------------------------------------------------------------------------

# row LABEL CISTERN UNIT BASELINE-LABEL BASELINE GOAL [KIND [SHOWN]]: one line of the table.
# KIND 0: IOPS, ratio cistern / baseline; 1: times, ratio baseline / cistern (above 1, cistern
# faster either way); 2: part 1, ratio cistern / baseline (large map over small); -: no ratio.
# SHOWN 0 leaves the cistern figure out (a second comparison with the line above).
row() {
    awk -v l="$1" -v c="$2" -v u="$3" -v bl="$4" -v b="$5" -v g="$6" -v kind="${7:-0}" \
        -v shown="${8:-1}" 'BEGIN {
        if (kind == 1) r = c > 0 ? b / c : 0
        else r = b > 0 ? c / b : 0
        cs = u == "ms" ? sprintf("%.2f", c) : sprintf("%.0f", c)
        bs = b == "" ? "" : u == "ms" ? sprintf("%.2f", b) : sprintf("%.0f", b)
        rs = kind == "-" ? "" : sprintf("%.2f", r)
        printf "%-46s %10s %-3s %-28s %10s %6s  %s\n", l, shown ? cs : "", shown ? u : "", bl, bs,
            rs, g
    }'
}
hr() { printf '%s\n' "$(printf '%.0s-' {1..124})"; }

printf '\nCistern snapshot benchmark, %s%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$([ "$quick" = 1 ] && echo ' (--quick)')"
printf 'host: %s CPUs (shared with other work: figures are noisy), kernel %s; %s on %s\n' \
    "$(nproc)" "$(uname -r)" "$fstype" "$device"
printf '4 KiB grains; 4K random I/O at queue depth 32, one job, %s x %s s per line,\n' "$rounds" \
    "$seconds"
printf 'peers and cistern interleaved (rotated order) in the same run; IOPS unless marked ms.\n\n'
printf '%-46s %10s %-3s %-28s %10s %6s  %s\n' "line" "cistern" "" "compared with" "" "ratio" "goal"
hr
printf '1. Snapshot creation vs map size (volume API, median of 40 / 20; %s 4K writes, committed, before each)\n' "$between"
row "  ${small} grains mapped (${fig[extents-small]} extents)" "${fig[create-small]}" ms "" "" "" -
row "  ${big} grains mapped (${fig[extents-big]} extents)" "${fig[create-big]}" ms \
    "${small} grains" "${fig[create-small]}" "about 1 (big/small)" 2
row "  the commit of those writes, ${big} grains" "${fig[commit-big]}" ms \
    "${small} grains" "${fig[commit-small]}" "report" 2
printf '   (filling the large map took %s s)\n' "${fig[fill-big]}"
printf '2. Volume API (cistern-bench-snap io; %s snapshots, %s 4K writes before each)\n' "$nsnaps" "$between"
row "  4K rand write right after a snapshot" "${fig[api-write-after]}" "" "no snapshot (in place)" \
    "${fig[api-write-plain]}" "report"
printf '   (%s KiB allocated per write after the snapshot, metadata included)\n' "${fig[api-alloc-after]}"
row "  4K rand read, volume with $nsnaps snapshots" "${fig[api-read-snapped]}" "" "no snapshots" \
    "${fig[api-read-plain]}" ">= 0.95x"
row "  4K rand read, its oldest snapshot" "${fig[api-read-oldest]}" "" "no snapshots" \
    "${fig[api-read-plain]}" ">= 0.95x"
row "  4K rand write, volume with $nsnaps snapshots" "${fig[api-over-snapped]}" "" "no snapshots" \
    "${fig[api-over-plain]}" ">= 0.95x"
printf '   (every grain copied once since the last snapshot, so that no write copies)\n'
row "  snapshot creation, last 10 of $nsnaps" "${fig[api-create-last]}" ms "first 10" \
    "${fig[api-create-first]}" "about 1" 1
row "  commit of the writes before, last 10" "${fig[api-commit-last]}" ms "first 10" \
    "${fig[api-commit-first]}" "report" 1
printf '3. NBD (cistern serve, fio nbd engine, 1 connection; same setup)\n'
row "  4K rand write right after a snapshot" "${fig[nbd-write-after]}" "" "no snapshot (in place)" \
    "${fig[nbd-write-plain]}" "report"
row "  4K rand read, volume with $nsnaps snapshots" "${fig[nbd-read-snapped]}" "" "no snapshots" \
    "${fig[nbd-read-plain]}" ">= 0.95x"
row "  4K rand read, export POOL/snapped@s0000" "${fig[nbd-read-oldest]}" "" "no snapshots" \
    "${fig[nbd-read-plain]}" ">= 0.95x"
printf '   (cistern snap create through the daemon, median: %s ms)\n' "${fig[nbd-create]}"
printf '4. vs qcow2: %s points in time over a %s image, %s 4K writes before each\n' "$layers" \
    "$qsize" "$layer_writes"
row "  creation, a process each (median)" "${fig[q-create-cistern]}" ms "qemu-img snapshot -c" \
    "${fig[q-create-internal]}" "report" 1
row "" "${fig[q-create-cistern]}" ms "qemu-img create -b (link)" "${fig[q-create-chain]}" "report" 1 0
row "  4K rand read, live volume" "${fig[q-read-cistern]}" "" "qcow2 chain top (${fig[q-depth]} files)" \
    "${fig[q-read-chain]}" "report"
row "" "${fig[q-read-cistern]}" "" "qcow2 with int. snapshots" "${fig[q-read-internal]}" "report" 0 0
row "  4K rand read, oldest snapshot (POOL/q@s0)" "${fig[q-read-cistern-s0]}" "" \
    "qcow2 int. snapshot (-l s0)" "${fig[q-read-internal-s0]}" "report"
row "" "${fig[q-read-cistern-s0]}" "" "qcow2 chain top" "${fig[q-read-chain]}" "report" 0 0
hr
printf 'ratio: cistern / the compared figure for IOPS, compared / cistern for times (above 1:\n'
printf 'cistern faster), except part 1: the large map over the small one (about 1: O(1)).\n'
