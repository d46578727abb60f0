#!/bin/bash
# The NBD benchmark: `cistern serve` against qemu-nbd (raw and qcow2) and nbdkit's file
# plugin, through the same clients (fio's nbd engine, nbdcopy), in one run on one file
# system, with fio on a raw file beside them as the disk's own limit. Prints a table of
# results and ratios; nothing is asserted: the goal is printed for a reader to judge.
#
#   bench/run-nbd.sh [--quick] [--build DIR] [--size SIZE] [--copy-size SIZE]
#                    [--time SECONDS] [--keep] [SCRATCH_DIR]
#
#   SCRATCH_DIR    where the images are made (default $TMPDIR, else /tmp); it must be on the
#                  file system under test and hold about 4 x --size + 2 x --copy-size
#   --quick        2G images, a 1G copy and 2 s per line: about 3 minutes (a smoke run)
#   --build DIR    build directory (default build/ in the source tree); built if needed
#   --size SIZE    size of every export and backing file (default 8G); its first quarter is
#                  written sequentially and then read and overwritten, its last two are the
#                  fresh space of the 4K fresh-write lines
#   --copy-size S  size of the image nbdcopy copies in and out (default 4G)
#   --time S       seconds per timed line (default 10)
#   --keep         leave the scratch directory in place
#
# The lines (fio's nbd engine; 4K at queue depth 32 per connection, 1M at 8; with 4
# connections, fio runs 4 jobs, each with its own connection and queue):
#   1M sequential write, fresh   the first pass over the span, 1 connection (untimed)
#   1M sequential read / write   over the written span
#   4K random read / overwrite   over the written span
#   4K random write, fresh       each 4K block of a never-written region at most once
#                                (fio's random map; the line ends at its runtime or when
#                                the region is used up, whichever is first)
#   nbdcopy in / out             a random, fully allocated image into a fresh export of the
#                                same size, then the export out to null: (default
#                                connections, request size and queue of nbdcopy)
#
# The targets:
#   disk           fio, io_uring, O_DIRECT, on the raw file itself (the same fio jobs)
#   qemu-nbd raw   --cache=none --aio=io_uring (else native), --shared=8, a raw file
#   qemu-nbd qcow2 the same on a qcow2 image created fresh (default 64K clusters)
#   nbdkit file    file plugin, cache=none
#   cistern        `cistern serve` on a pool of one member file of --size, default grain
# Every server listens on a Unix socket of its own in the scratch directory and is started
# and stopped by the PID this script got for it. All four run at once, idle but for the line
# being measured, and each line is measured on every target in turn (in an order rotated
# from line to line), so that the drift of a shared disk over minutes falls on all alike.
#
# Fairness: every backing file is --size bytes on the same file system. Raw files and the
# pool's member are filled with written blocks first (reads of holes or unwritten extents
# never reach the disk, and first writes into them pay for the file system's extent
# conversion), so for raw images a "fresh" write is an overwrite, which is what it costs
# them; qcow2 and cistern allocate. Each peer has its own files. The 4K fresh-write lines
# use regions never written before on every target. The nbdcopy source is read once
# beforehand so that every target reads it from the page cache. Each backing file is dropped
# from the page cache before each line; a server that still reads through the cache (nbdkit's
# cache=none evicts what it writes, and what it reads only in part) has the lines where more
# than an eighth of the span stayed resident marked "c" and left out of the best peer. 4K lines are in IOPS, the
# rest in MB/s (10^6 bytes). The second table gives the CPU time each server used per line,
# in cores busy (1.00 = one core for the whole line): on a small host the client and the
# server share the cores.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
BENCH=run-nbd
source "$src/bench/lib.sh"
bench_options '7,19' 'size copy-size' "$@"

if [ "$quick" = 1 ]; then
    size=${size:-2G}
    copy_size=${copy_size:-1G}
    seconds=${seconds:-2}
else
    size=${size:-8G}
    copy_size=${copy_size:-4G}
    seconds=${seconds:-10}
fi
scratch_base=${scratch_base:-${TMPDIR:-/tmp}}

build=${build:-$src/build}

bench_need fio jq cmake fallocate fincore qemu-nbd qemu-img nbdkit nbdcopy nbdinfo openssl
bench_need_fio_nbd

# ---- Build ------------------------------------------------------------------------------

bench_build "$src" "$build" cistern
cistern="$build/cistern"

# ---- Scratch ----------------------------------------------------------------------------

bench_scratch nbd

bytes=$(numfmt --from=iec "$size")
copy_bytes=$(numfmt --from=iec "$copy_size")
mib=$((bytes / 1048576))
# The export is cut in quarters: the first is written sequentially, then read and
# overwritten; the third and the fourth are the fresh space of the 4K fresh-write lines with
# 1 and 4 connections. At most three quarters are ever written, so a thin pool of the same
# size as the export never runs out of space.
span=$((bytes / 4))
fresh1_off=$((bytes / 2))
fresh4_off=$((bytes / 4 * 3))
fresh_len=$((bytes / 4))
if [ $((bytes % (4 * 1048576))) -ne 0 ] || [ $((copy_bytes % (4 * 1048576))) -ne 0 ]; then
    say "--size and --copy-size must be multiples of 4M"
    exit 2
fi

# fill FILE SIZE: a file of written blocks.
fill() {
    fallocate -l "$2" "$1"
    dd if=/dev/zero of="$1" bs=1M count=$(($2 / 1048576)) oflag=direct conv=notrunc status=none
}

say "making the images in $scratch ($size each, a $copy_size random source)"
source_img="$scratch/source.img"
# AES-CTR of zeros: incompressible, no zero blocks, generated at several GB/s. openssl
# stops on the broken pipe when head has enough.
{ openssl enc -aes-128-ctr -nosalt -pass pass:cistern-nbd-bench -pbkdf2 </dev/zero 2>/dev/null ||
    true; } | head -c "$copy_bytes" >"$source_img"
if [ "$(stat -c %s "$source_img")" != "$copy_bytes" ]; then
    say "could not make the random source image"
    exit 1
fi
cat "$source_img" >/dev/null # into the page cache, for every target alike
fill "$scratch/raw.img" "$bytes"
fill "$scratch/nbdkit.img" "$bytes"
fill "$scratch/member.img" "$bytes"
qemu-img create -q -f qcow2 "$scratch/qcow2.img" "$bytes"

fstype=$(df --output=fstype "$scratch" | tail -1)
device=$(df --output=source "$scratch" | tail -1)

aio=io_uring
if ! qemu-nbd --help 2>&1 | grep -q io_uring; then aio=native; fi

export CISTERN_STATE_DIR="$scratch/state"
"$cistern" pool create nbdbench "$scratch/member.img" >/dev/null
"$cistern" vol create nbdbench/v --size "$bytes" >/dev/null
grain=$("$cistern" vol info nbdbench/v --json | jq -r '.grain_size // .grain // empty')

# ---- Servers ----------------------------------------------------------------------------

# Every server runs at once, each on its own socket and files; a line is measured on each
# target in turn, so a drift of the shared disk over minutes falls on all of them alike.
declare -A suri sfile
peers="raw qcow2 nbdkit cistern"

# start_server KIND FILE: starts it on a socket of its own; sets spid[KIND] and suri[KIND].
start_server() {
    local kind=$1 file=$2 log="$scratch/server-$1.log" sock="$scratch/$1.sock" i pid uri
    rm -f "$sock"
    case "$kind" in
    raw | qcow2)
        qemu-nbd -f "$kind" --cache=none --aio="$aio" --shared=8 -t -k "$sock" -x disk \
            "$file" 2>>"$log" &
        pid=$!
        uri="nbd+unix:///disk?socket=$sock"
        ;;
    nbdkit)
        nbdkit -f -U "$sock" file "$file" cache=none 2>>"$log" &
        pid=$!
        uri="nbd+unix:///?socket=$sock"
        ;;
    cistern)
        "$cistern" serve nbdbench --nbd "unix:$sock" 2>>"$log" &
        pid=$!
        uri="nbd+unix:///nbdbench/$file?socket=$sock"
        file="$scratch/member.img"
        ;;
    esac
    spid[$kind]=$pid
    suri[$kind]=$uri
    sfile[$kind]=$file
    for ((i = 0; i < 200; i++)); do
        if [ -S "$sock" ] && nbdinfo --size "$uri" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "the $kind server exited at start:"
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    say "the $kind server did not come up in 20 s"
    cat "$log" >&2
    exit 1
}

stop_servers() {
    local kind pid i
    for kind in $peers; do
        pid=${spid[$kind]:-}
        [ -n "$pid" ] || continue
        spid[$kind]=""
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 600; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "the $kind server ($pid) did not exit within 60 s of SIGTERM; killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

# CPU ticks (user + system, all threads) of a target's server so far.
server_ticks() {
    local pid=${spid[$1]:-}
    if [ -n "$pid" ]; then
        awk '{ print $14 + $15 }' "/proc/$pid/stat"
    else
        echo 0
    fi
}
hz=$(getconf CLK_TCK)

# Drops a target's backing file from the page cache, so that no line reads what an earlier
# one left there (nbdkit's cache=none evicts what it writes, not always what it reads).
drop_cache() {
    dd if="${sfile[$1]}" iflag=nocache count=0 status=none 2>/dev/null || true
}

# note_cache TARGET LINE: after a line, marks its result as served from the page cache when
# more than an eighth of the span is resident: such a figure measures memory, not the disk,
# and is left out of the best peer.
declare -A cached
note_cache() {
    local res
    [ "$1" != disk ] || return 0
    res=$(fincore -b -n -o RES "${sfile[$1]}" 2>/dev/null || echo 0)
    if [ "${res:-0}" -gt $((span / 8)) ]; then cached[$1,$2]=1; fi
}

# ---- Lines ------------------------------------------------------------------------------

lines="seqwrite-fresh seqread-1 seqread-4 randread-1 randread-4 seqwrite-1 seqwrite-4
       randwrite-1 randwrite-4 fresh-1 fresh-4"

declare -A result cpu

# run_fio TARGET LINE: one line on one target ("disk", or a server); records
# result[TARGET,LINE] (IOPS for 4K lines, MB/s for 1M lines) and cpu[TARGET,LINE].
run_fio() {
    local target=$1 line=$2 nj=1 rw bs qd off len timed=1 split=0
    case "$line" in
    seqwrite-fresh) rw=write bs=1M qd=8 off=0 len=$span timed=0 ;;
    seqread-*) rw=read bs=1M qd=8 off=0 len=$span split=1 ;;
    seqwrite-*) rw=write bs=1M qd=8 off=0 len=$span split=1 ;;
    randread-*) rw=randread bs=4k qd=32 off=0 len=$span ;;
    randwrite-*) rw=randwrite bs=4k qd=32 off=0 len=$span ;;
    fresh-1) rw=randwrite bs=4k qd=32 off=$fresh1_off len=$fresh_len timed=0 ;;
    fresh-4) rw=randwrite bs=4k qd=32 off=$fresh4_off len=$fresh_len timed=0 split=1 ;;
    esac
    case "$line" in *-4) nj=4 ;; esac
    local args=(--name="$line" --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs="$nj"
        --group_reporting --randrepeat=0 --output-format=json --output="$scratch/fio.json")
    if [ "$nj" = 4 ] && [ "$split" = 1 ]; then
        # Sequential and fresh lines: each job its own quarter of the range. Random reads
        # and overwrites range over all of it.
        local per=$((len / 4))
        args+=(--offset="$off" --size="$per" --offset_increment="$per")
    else
        args+=(--offset="$off" --size="$len")
    fi
    if [ "$timed" = 1 ]; then
        args+=(--time_based --runtime="$seconds")
        [ "$rw" = randwrite ] && args+=(--norandommap)
    elif [ "$line" = seqwrite-fresh ]; then
        args+=(--runtime=900) # the whole span, however long it takes
    else
        args+=(--runtime="$seconds") # fresh: one pass at most, so never an overwrite
    fi
    if [ "$target" = disk ]; then
        args+=(--ioengine=io_uring --direct=1 --filename="$scratch/raw.img")
    else
        args+=(--ioengine=nbd --uri="${suri[$target]}")
    fi
    local t0 t1 c0 c1
    c0=$(server_ticks "$target")
    t0=$(date +%s.%N)
    fio "${args[@]}" >/dev/null
    t1=$(date +%s.%N)
    c1=$(server_ticks "$target")
    local col='(.read.iops + .write.iops)'
    [ "$bs" = 1M ] && col='((.read.bw_bytes + .write.bw_bytes) / 1e6)'
    result[$target,$line]=$(jq -r ".jobs[0] | $col" "$scratch/fio.json")
    cpu[$target,$line]=""
    if [ "$target" != disk ]; then
        cpu[$target,$line]=$(awk -v a="$c0" -v b="$c1" -v h="$hz" -v s="$t0" -v e="$t1" \
            'BEGIN { printf "%.2f", (b - a) / h / (e - s) }')
    fi
}

# run_copy TARGET DIR: nbdcopy of the source into the target's export (in), or of the export
# to null: (out), as MB/s. For the disk, fio writes or reads the first copy_size bytes of
# the raw file in nbdcopy's shape: 4 streams of 256K requests, 16 in flight each.
run_copy() {
    local target=$1 dir=$2 t0 t1 c0 c1
    if [ "$target" = disk ]; then
        local q=$((copy_bytes / 4)) rw=write
        [ "$dir" = out ] && rw=read
        fio --name="copy-$rw" --rw="$rw" --bs=256k --iodepth=16 --numjobs=4 \
            --offset=0 --size="$q" --offset_increment="$q" --group_reporting \
            --ioengine=io_uring --direct=1 --filename="$scratch/raw.img" \
            --output-format=json --output="$scratch/fio.json" >/dev/null
        result[disk,copy-$dir]=$(jq -r '.jobs[0] | (.read.bw_bytes + .write.bw_bytes) / 1e6' \
            "$scratch/fio.json")
        cpu[disk,copy-$dir]=""
        return
    fi
    c0=$(server_ticks "$target")
    t0=$(date +%s.%N)
    if [ "$dir" = in ]; then
        nbdcopy "$source_img" "${suri[$target]}"
    else
        nbdcopy "${suri[$target]}" null:
    fi
    t1=$(date +%s.%N)
    c1=$(server_ticks "$target")
    result[$target,copy-$dir]=$(awk -v b="$copy_bytes" -v s="$t0" -v e="$t1" \
        'BEGIN { printf "%.1f", b / 1e6 / (e - s) }')
    cpu[$target,copy-$dir]=$(awk -v a="$c0" -v b="$c1" -v h="$hz" -v s="$t0" -v e="$t1" \
        'BEGIN { printf "%.2f", (b - a) / h / (e - s) }')
}

# rotated N: the targets, starting at the Nth, so that no target always goes first.
rotated() {
    local all=(disk raw qcow2 nbdkit cistern) n=${#all[@]} i
    for ((i = 0; i < n; i++)); do
        echo "${all[($1 + i) % n]}"
    done
}

start_server raw "$scratch/raw.img"
start_server qcow2 "$scratch/qcow2.img"
start_server nbdkit "$scratch/nbdkit.img"
start_server cistern v
sfile[disk]="$scratch/raw.img"

say "fio: disk, qemu-nbd raw (aio=$aio), qemu-nbd qcow2, nbdkit file, cistern serve;" \
    "${seconds} s per timed line"
k=0
for line in $lines; do
    say "  $line"
    for target in $(rotated "$k"); do
        drop_cache "$target"
        run_fio "$target" "$line"
        note_cache "$target" "$line"
    done
    k=$((k + 1))
done
stop_servers

# The copies go into exports of copy_size: the raw files cut to their first (written)
# blocks, a new qcow2 image, a new cistern volume in place of the first.
say "nbdcopy of $copy_size in and out"
truncate -s "$copy_bytes" "$scratch/raw.img"
truncate -s "$copy_bytes" "$scratch/nbdkit.img"
rm -f "$scratch/qcow2.img"
qemu-img create -q -f qcow2 "$scratch/qcow2.img" "$copy_bytes"
"$cistern" vol delete nbdbench/v >/dev/null
"$cistern" vol create nbdbench/c --size "$copy_bytes" >/dev/null
start_server raw "$scratch/raw.img"
start_server qcow2 "$scratch/qcow2.img"
start_server nbdkit "$scratch/nbdkit.img"
start_server cistern c
for dir in in out; do
    for target in $(rotated "$k"); do
        drop_cache "$target"
        run_copy "$target" "$dir"
        note_cache "$target" "copy-$dir"
    done
    k=$((k + 1))
done
stop_servers

# ---- Tables -----------------------------------------------------------------------------

label() {
    case "$1" in
    randread-1) echo "4K random read, 1 conn" ;;
    randread-4) echo "4K random read, 4 conns" ;;
    fresh-1) echo "4K random write fresh, 1 conn" ;;
    fresh-4) echo "4K random write fresh, 4 conns" ;;
    randwrite-1) echo "4K random overwrite, 1 conn" ;;
    randwrite-4) echo "4K random overwrite, 4 conns" ;;
    seqread-1) echo "1M seq read, 1 conn" ;;
    seqread-4) echo "1M seq read, 4 conns" ;;
    seqwrite-fresh) echo "1M seq write fresh, 1 conn" ;;
    seqwrite-1) echo "1M seq overwrite, 1 conn" ;;
    seqwrite-4) echo "1M seq overwrite, 4 conns" ;;
    copy-in) echo "nbdcopy in" ;;
    copy-out) echo "nbdcopy out" ;;
    esac
}
order="randread-1 randread-4 fresh-1 fresh-4 randwrite-1 randwrite-4 seqread-1 seqread-4
       seqwrite-fresh seqwrite-1 seqwrite-4 copy-in copy-out"
targets="disk raw qcow2 nbdkit cistern"

printf '\nCistern NBD benchmark, %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'host: %s CPUs, kernel %s; file system %s on %s\n' "$(nproc)" "$(uname -r)" "$fstype" \
    "$device"
printf 'exports and backing files %s, span %s MiB, %s s per timed line, nbdcopy of %s;\n' \
    "$size" $((mib / 4)) "$seconds" "$copy_size"
printf 'Unix sockets; qemu-nbd --cache=none --aio=%s --shared=8; nbdkit file cache=none;\n' "$aio"
printf 'cistern grain %s. 4K lines in IOPS, the rest in MB/s (10^6 bytes).\n' \
    "$(numfmt --to=iec "${grain:-4096}")"
printf 'Goal: cistern >= 1.0x the fastest peer on every line, well ahead of qcow2.\n\n'

printf '%-31s %9s %9s %9s %9s %9s %8s %8s\n' "line" "disk" "qemu raw" "qcow2" "nbdkit" \
    "cistern" "/best" "/qcow2"
printf '%-31s %9s %9s %9s %9s %9s %8s %8s\n' "-------------------------------" "---------" \
    "---------" "---------" "---------" "---------" "--------" "--------"
for l in $order; do
    # A figure served from the page cache carries a "c" and is not the best peer.
    awk -v l="$(label "$l")" -v d="${result[disk,$l]}" -v r="${result[raw,$l]}" \
        -v q="${result[qcow2,$l]}" -v k="${result[nbdkit,$l]}" -v c="${result[cistern,$l]}" \
        -v cr="${cached[raw,$l]:-}" -v cq="${cached[qcow2,$l]:-}" -v ck="${cached[nbdkit,$l]:-}" \
        -v cc="${cached[cistern,$l]:-}" '
    function cell(v, m) { return sprintf("%8.0f%s", v, m ? "c" : " ") }
    BEGIN {
        best = 0
        if (!cr && r > best) best = r
        if (!cq && q > best) best = q
        if (!ck && k > best) best = k
        rb = best > 0 ? c / best : 0; rq = q > 0 ? c / q : 0
        printf "%-31s %9.0f %s %s %s %s %7.2f%s %7.2f\n", l, d, cell(r, cr), cell(q, cq),
            cell(k, ck), cell(c, cc), rb, (rb >= 1.0 ? " " : "!"), rq
    }'
done
printf '(! marks cistern below the fastest peer; /best and /qcow2 are cistern / that peer;\n'
printf ' c marks a figure served from the page cache (more than an eighth of the span resident\n'
printf ' after the line), left out of the best peer)\n'

printf '\nServer CPU per line, in cores busy (CPU seconds / wall seconds)\n\n'
printf '%-31s %9s %9s %9s %9s\n' "line" "qemu raw" "qcow2" "nbdkit" "cistern"
printf '%-31s %9s %9s %9s %9s\n' "-------------------------------" "---------" "---------" \
    "---------" "---------"
for l in $order; do
    printf '%-31s %9s %9s %9s %9s\n' "$(label "$l")" "${cpu[raw,$l]}" "${cpu[qcow2,$l]}" \
        "${cpu[nbdkit,$l]}" "${cpu[cistern,$l]}"
done
