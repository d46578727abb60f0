#!/bin/bash
# The iSCSI benchmark: Cistern's iSCSI target (`cistern serve --iscsi`) against tgtd with
# file-backed LUNs, through the same user-space initiator (cistern-bench-iscsi, a load
# generator on libiscsi's asynchronous API: Debian's fio has no libiscsi engine), and against
# Cistern's own NBD server in the same daemon (fio's nbd engine), in one run on one file
# system, with fio on a raw file beside them as the disk's own limit. Prints a table of
# results and ratios; nothing is asserted: the goals are printed for a reader to judge.
#
#   bench/run-iscsi.sh [--quick] [--build DIR] [--size SIZE] [--time SECONDS]
#                      [--rounds N] [--keep] [SCRATCH_DIR]
#
#   SCRATCH_DIR    where the files are made (default $TMPDIR, else /tmp); it must be on the
#                  file system under test and hold about 4.5 x --size
#   --quick        1G LUNs, 3 s per line, one round: about 2 minutes (a smoke run)
#   --build DIR    build directory (default build/ in the source tree); built if needed
#   --size SIZE    size of every LUN, export and backing file (default 4G)
#   --time S       seconds per line and round (default 10)
#   --rounds N     rounds over every line and target; figures are their median (default 3)
#   --keep         leave the scratch directory in place
#
# The lines, the same on every target (one session or connection, one job):
#   4K random read, QD 32    over the whole LUN, written beforehand
#   4K random write, QD 32   overwrites over the whole LUN
#   1M sequential read, QD 8 the LUN in order, wrapping around
#   1M sequential write, QD 8
#
# The targets:
#   disk           fio, io_uring, O_DIRECT, on a raw file of its own (the same jobs)
#   tgtd rdwr      tgtd's default backing store (a pool of threads doing pread/pwrite), with
#                  bsoflags=direct so that it does not serve from the page cache
#   tgtd aio       tgtd's Linux AIO backing store (O_DIRECT)
#   cistern iscsi  `cistern serve --iscsi` on a pool of one member file, default grain
#   cistern nbd    the same daemon and volume through its NBD server, fio's nbd engine
# Both tgtd LUNs are targets of one tgtd, each on a file of its own. tgtd is given the same
# session parameters that Cistern's target offers (MaxRecvDataSegmentLength 256K both ways,
# FirstBurstLength 256K, MaxBurstLength 1M; its defaults are 8K segments), and CHAP on both
# targets, so that both negotiate alike; the initiator asks for no digests. iSCSI and NBD
# all go over TCP on 127.0.0.1. Every tgtd and Cistern is started and stopped by the PID
# this script got for it (tgtd: its targets deleted, set offline, the system deleted, then
# waited for), on ports and a tgtd control port found free.
#
# Fairness: every backing file is --size bytes on the same file system (the pool's member a
# little more, for its metadata), each written whole before the run (reads of holes never
# reach the disk). The Cistern volume is written whole through NBD with random data before
# the first line (a thin volume reads unwritten space as zeros without touching the disk).
# Everything is O_DIRECT, so no figure comes from the page cache. Lines run in rounds; in
# each, every line is measured on every target in turn, in an order rotated from line to
# line and round to round, so that the drift of a shared disk and of other work on the
# host falls on all of them alike. 4K lines are in IOPS, 1M lines in MB/s (10^6 bytes). The
# second table gives the CPU each server and the client used per line, in cores busy.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
BENCH=run-iscsi
source "$src/bench/lib.sh"
bench_options '9,20' 'size rounds' "$@"

if [ "$quick" = 1 ]; then
    size=${size:-1G}
    seconds=${seconds:-3}
    rounds=${rounds:-1}
else
    size=${size:-4G}
    seconds=${seconds:-10}
    rounds=${rounds:-3}
fi
scratch_base=${scratch_base:-${TMPDIR:-/tmp}}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ] || [ "$seconds" -gt 600 ]; then
    echo "run-iscsi: --time: whole seconds from 1 to 600" >&2
    exit 2
fi
if ! [[ "$rounds" =~ ^[0-9]+$ ]] || [ "$rounds" -lt 1 ] || [ "$rounds" -gt 20 ]; then
    echo "run-iscsi: --rounds: from 1 to 20" >&2
    exit 2
fi

build=${build:-$src/build}

bench_need fio jq cmake fallocate ss tgtd tgtadm nbdinfo timeout pkg-config
bench_need_fio_nbd
if ! pkg-config --exists libiscsi; then
    echo "run-iscsi: libiscsi (libiscsi-dev) is needed for cistern-bench-iscsi" >&2
    exit 1
fi

# ---- Build ------------------------------------------------------------------------------

bench_build "$src" "$build" cistern cistern-bench-iscsi
cistern="$build/cistern"
load="$build/cistern-bench-iscsi"

# ---- Scratch ----------------------------------------------------------------------------

bytes=$(numfmt --from=iec "$size")
if [ $((bytes % (4 * 1048576))) -ne 0 ] || [ "$bytes" -lt $((64 * 1048576)) ]; then
    say "--size must be a multiple of 4M, at least 64M"
    exit 2
fi

bench_scratch iscsi
tgt_pid=""
tgt_ctl=""
cis_pid=""

# stop_tgtd: tgtd ignores SIGTERM while it has targets: delete them, set it offline, delete
# the system, then wait for its PID (SIGKILL after 30 s).
stop_tgtd() {
    local pid=$tgt_pid i
    [ -n "$pid" ] || return 0
    tgt_pid=""
    local tid
    for tid in 1 2; do
        timeout 10 tgtadm -C "$tgt_ctl" --lld iscsi --mode target --op delete --force \
            --tid "$tid" >/dev/null 2>&1 || true
    done
    timeout 10 tgtadm -C "$tgt_ctl" --op update --mode sys --name State -v offline \
        >/dev/null 2>&1 || true
    timeout 10 tgtadm -C "$tgt_ctl" --op delete --mode system >/dev/null 2>&1 || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "tgtd ($pid) did not exit within 30 s of deleting its system; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# stop_cistern: SIGTERM, then SIGKILL after 60 s.
stop_cistern() {
    local pid=$cis_pid i
    [ -n "$pid" ] || return 0
    cis_pid=""
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "cistern serve ($pid) did not exit within 60 s of SIGTERM; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

bench_stop() { # called by bench_cleanup
    stop_tgtd
    stop_cistern
}

# free_port: a TCP port nothing on this host listens on.
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    say "no free TCP port found"
    exit 1
}

# fill FILE SIZE: a file of written blocks.
fill() {
    fallocate -l "$2" "$1"
    dd if=/dev/zero of="$1" bs=1M count=$(($2 / 1048576)) oflag=direct conv=notrunc status=none
}

fstype=$(df --output=fstype "$scratch" | tail -1)
device=$(df --output=source "$scratch" | tail -1)

# The pool's member: the volume's data and room for its metadata.
member_bytes=$(((bytes + bytes / 8 + 256 * 1048576) / 1048576 * 1048576))
say "making the backing files in $scratch ($size each)"
fill "$scratch/disk.img" "$bytes"
fill "$scratch/tgt-rdwr.img" "$bytes"
fill "$scratch/tgt-aio.img" "$bytes"
fill "$scratch/member.img" "$member_bytes"

chap_user=cistern-bench
chap_secret=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

# ---- tgtd -------------------------------------------------------------------------------

tgt_port=$(free_port)
# A control port no other tgtd on this host uses: its socket would be /var/run/tgtd/socket.N.
for ((i = 0; i < 100; i++)); do
    tgt_ctl=$((1000 + RANDOM % 30000))
    [ -e "/var/run/tgtd/socket.$tgt_ctl" ] || break
done
tgt_iqn="iqn.2026-11.org.cistern:bench-tgtd"
say "starting tgtd on 127.0.0.1:$tgt_port (control port $tgt_ctl)"
tgtd -f -C "$tgt_ctl" --iscsi "portal=127.0.0.1:$tgt_port" >>"$scratch/tgtd.log" 2>&1 &
tgt_pid=$!
for ((i = 0; i < 100; i++)); do
    if tgtadm -C "$tgt_ctl" --op show --mode sys >/dev/null 2>&1 &&
        [ -n "$(ss -Hltn "sport = :$tgt_port" 2>/dev/null)" ]; then
        break
    fi
    if ! kill -0 "$tgt_pid" 2>/dev/null; then
        say "tgtd exited at start:"
        cat "$scratch/tgtd.log" >&2
        tgt_pid=""
        exit 1
    fi
    sleep 0.1
done
if [ "$i" = 100 ]; then
    say "tgtd did not come up in 10 s"
    cat "$scratch/tgtd.log" >&2
    exit 1
fi
tgtadm_() {
    if ! timeout 10 tgtadm -C "$tgt_ctl" --lld iscsi "$@" >>"$scratch/tgtd.log" 2>&1; then
        say "tgtadm $* failed:"
        cat "$scratch/tgtd.log" >&2
        exit 1
    fi
}
tgtadm_ --mode account --op new --user "$chap_user" --password "$chap_secret"
for tid in 1 2; do
    tgtadm_ --mode target --op new --tid "$tid" --targetname "$tgt_iqn-$tid"
    for kv in MaxRecvDataSegmentLength=262144 MaxXmitDataSegmentLength=262144 \
        FirstBurstLength=262144 MaxBurstLength=1048576; do
        tgtadm_ --mode target --op update --tid "$tid" --name "${kv%=*}" --value "${kv#*=}"
    done
    tgtadm_ --mode account --op bind --tid "$tid" --user "$chap_user"
    tgtadm_ --mode target --op bind --tid "$tid" --initiator-address 127.0.0.1
done
tgtadm_ --mode logicalunit --op new --tid 1 --lun 1 --bstype rdwr --bsoflags direct \
    --backing-store "$scratch/tgt-rdwr.img"
tgtadm_ --mode logicalunit --op new --tid 2 --lun 1 --bstype aio \
    --backing-store "$scratch/tgt-aio.img"

# ---- cistern ----------------------------------------------------------------------------

export CISTERN_STATE_DIR="$scratch/state"
pool=iscsibench
"$cistern" pool create "$pool" "$scratch/member.img" >/dev/null
"$cistern" vol create "$pool/v" --size "$bytes" >/dev/null
grain=$("$cistern" vol info "$pool/v" --json | jq -r '.grain // .grain_size // empty')
lun=$("$cistern" vol info "$pool/v" --json | jq -r '.lun // 0')
"$cistern" iscsi auth set "$pool" auth=chap user="$chap_user" secret="$chap_secret" >/dev/null

cis_iport=$(free_port)
cis_nport=$(free_port)
while [ "$cis_nport" = "$cis_iport" ]; do cis_nport=$(free_port); done
nbd_uri="nbd://127.0.0.1:$cis_nport/$pool/v"
say "starting cistern serve: iSCSI on 127.0.0.1:$cis_iport, NBD on 127.0.0.1:$cis_nport"
"$cistern" serve "$pool" --iscsi "127.0.0.1:$cis_iport" --nbd "127.0.0.1:$cis_nport" \
    >>"$scratch/cistern.log" 2>&1 &
cis_pid=$!
for ((i = 0; i < 300; i++)); do
    if nbdinfo --size "$nbd_uri" >/dev/null 2>&1 &&
        [ -n "$(ss -Hltn "sport = :$cis_iport" 2>/dev/null)" ]; then
        break
    fi
    if ! kill -0 "$cis_pid" 2>/dev/null; then
        say "cistern serve exited at start:"
        cat "$scratch/cistern.log" >&2
        cis_pid=""
        exit 1
    fi
    sleep 0.1
done
if [ "$i" = 300 ]; then
    say "cistern serve did not come up in 30 s"
    cat "$scratch/cistern.log" >&2
    exit 1
fi

declare -A url
url[tgt-rdwr]="iscsi://127.0.0.1:$tgt_port/$tgt_iqn-1/1"
url[tgt-aio]="iscsi://127.0.0.1:$tgt_port/$tgt_iqn-2/1"
url[cis-iscsi]="iscsi://127.0.0.1:$cis_iport/iqn.2026-11.org.cistern:$pool/$lun"

say "writing the cistern volume whole through NBD (1M sequential, random data)"
t0=$(date +%s.%N)
timeout 1800 fio --name=fill --ioengine=nbd --uri="$nbd_uri" --rw=write --bs=1M --iodepth=8 \
    --numjobs=1 --size="$bytes" --output-format=json --output="$scratch/fio.json" >/dev/null
fill_mbps=$(awk -v b="$bytes" -v s="$t0" -v e="$(date +%s.%N)" \
    'BEGIN { printf "%.0f", b / 1e6 / (e - s) }')

# ---- Lines ------------------------------------------------------------------------------

lines="randread randwrite seqread seqwrite"
targets=(disk tgt-rdwr tgt-aio cis-iscsi cis-nbd)

# server_ticks TARGET: CPU ticks (user + system, all threads) of the target's server so far.
server_ticks() {
    local pid=""
    case "$1" in
    tgt-*) pid=$tgt_pid ;;
    cis-*) pid=$cis_pid ;;
    esac
    if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
        awk '{ print $14 + $15 }' "/proc/$pid/stat"
    else
        echo 0
    fi
}
hz=$(getconf CLK_TCK)

# Per target and line, the figures of the rounds that succeeded, space-separated.
declare -A vals scpu ccpu
declare -A failed
errors="$scratch/errors.txt"
: >"$errors"

# run_line TARGET LINE: one line on one target; appends to vals[TARGET,LINE] (IOPS for 4K
# lines, MB/s for 1M lines) and to the CPU lists. A failed run is recorded, not fatal.
run_line() {
    local target=$1 line=$2 bs qd rw out="$scratch/out.json" t0 t1 c0 c1 value client rc=0
    case "$line" in
    rand*) bs=4k qd=32 ;;
    seq*) bs=1M qd=8 ;;
    esac
    case "$line" in
    seqread) rw=read ;;
    seqwrite) rw=write ;;
    *) rw=$line ;;
    esac
    c0=$(server_ticks "$target")
    t0=$(date +%s.%N)
    case "$target" in
    disk | cis-nbd)
        local args=(--name="$line" --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1
            --size="$bytes" --time_based --runtime="$seconds" --randrepeat=0
            --output-format=json --output="$scratch/fio.json")
        [ "$rw" = randwrite ] && args+=(--norandommap)
        if [ "$target" = disk ]; then
            args+=(--ioengine=io_uring --direct=1 --filename="$scratch/disk.img")
        else
            args+=(--ioengine=nbd --uri="$nbd_uri")
        fi
        timeout $((seconds + 120)) fio "${args[@]}" >/dev/null 2>"$scratch/fio.err" || rc=$?
        if [ "$rc" = 0 ]; then
            local col='(.read.iops + .write.iops)'
            [ "$bs" = 1M ] && col='((.read.bw_bytes + .write.bw_bytes) / 1e6)'
            value=$(jq -r ".jobs[0] | $col" "$scratch/fio.json")
            client=$(jq -r '.jobs[0] | (.usr_cpu + .sys_cpu) / 100' "$scratch/fio.json")
        else
            {
                echo "$target $line (fio exit $rc):"
                tail -5 "$scratch/fio.err" | sed 's/^/    /'
            } >>"$errors"
        fi
        ;;
    *)
        timeout $((seconds + 120)) "$load" --url "${url[$target]}" --user "$chap_user" \
            --secret "$chap_secret" --pattern "$line" --bs "$bs" --qd "$qd" \
            --time "$seconds" --stall 30 >"$out" 2>"$scratch/load.err" || rc=$?
        if [ "$rc" = 0 ]; then
            if [ "$bs" = 1M ]; then value=$(jq -r .mbps "$out"); else value=$(jq -r .iops "$out"); fi
            client=$(jq -r .client_cpu "$out")
        else
            {
                echo "$target $line (exit $rc):"
                sed 's/^/    /' "$scratch/load.err"
            } >>"$errors"
        fi
        ;;
    esac
    t1=$(date +%s.%N)
    c1=$(server_ticks "$target")
    if [ "$rc" != 0 ]; then
        failed[$target,$line]=1
        say "    $target: failed (exit $rc)"
        return 0
    fi
    vals[$target,$line]+="$value "
    ccpu[$target,$line]+="$client "
    if [ "$target" != disk ]; then
        scpu[$target,$line]+="$(awk -v x="$c0" -v y="$c1" -v h="$hz" -v s="$t0" -v e="$t1" \
            'BEGIN { print (y - x) / h / (e - s) }') "
    fi
}

say "${#targets[@]} targets x 4 lines x $rounds rounds of ${seconds} s"
k=0
for ((r = 0; r < rounds; r++)); do
    for line in $lines; do
        say "  round $((r + 1)): $line"
        n=${#targets[@]}
        for ((t = 0; t < n; t++)); do
            run_line "${targets[(k + t) % n]}" "$line"
        done
        k=$((k + 1))
    done
done

# The daemon must still be there: a crash during the run would otherwise show only as
# failed lines.
cis_alive=yes
kill -0 "$cis_pid" 2>/dev/null || cis_alive=no
stop_tgtd
stop_cistern

# ---- Tables -----------------------------------------------------------------------------

label() {
    case "$1" in
    randread) echo "4K random read, QD 32" ;;
    randwrite) echo "4K random write, QD 32" ;;
    seqread) echo "1M sequential read, QD 8" ;;
    seqwrite) echo "1M sequential write, QD 8" ;;
    esac
}

# med LISTS TARGET LINE: the median of the rounds that succeeded, or "-" when none did.
med() {
    local -n a=$1
    tr ' ' '\n' <<<"${a[$2,$3]:-}" | awk 'NF' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) print "-"
            else if (NR % 2) printf "%.2f\n", v[(NR + 1) / 2]
            else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

printf '\nCistern iSCSI benchmark, %s%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$([ "$quick" = 1 ] && echo ' (--quick)')"
printf 'host: %s CPUs (shared with other work: figures are noisy), kernel %s; %s on %s\n' \
    "$(nproc)" "$(uname -r)" "$fstype" "$device"
printf 'LUNs and backing files %s, %s s per line, median of %s round(s), targets interleaved\n' \
    "$size" "$seconds" "$rounds"
printf '(rotated order); one session / connection per line; iSCSI through cistern-bench-iscsi\n'
printf '(libiscsi), NBD and the disk through fio; TCP on 127.0.0.1; all O_DIRECT; cistern\n'
printf 'grain %s, the volume written whole first (%s MB/s through NBD).\n' \
    "$(numfmt --to=iec "${grain:-4096}")" "$fill_mbps"
printf '4K lines in IOPS, 1M lines in MB/s (10^6 bytes).\n'
printf 'Goal: cistern iscsi >= 1.5x the better tgtd, and >= 0.8x cistern over NBD, on every line.\n\n'

printf '%-26s %9s %9s %9s %9s %9s %8s %8s\n' "line" "disk" "tgtd rdwr" "tgtd aio" \
    "cis iscsi" "cis nbd" "/tgtd" "/nbd"
printf '%-26s %9s %9s %9s %9s %9s %8s %8s\n' "--------------------------" "---------" \
    "---------" "---------" "---------" "---------" "--------" "--------"
for l in $lines; do
    awk -v l="$(label "$l")" -v d="$(med vals disk "$l")" -v r="$(med vals tgt-rdwr "$l")" \
        -v a="$(med vals tgt-aio "$l")" -v c="$(med vals cis-iscsi "$l")" \
        -v n="$(med vals cis-nbd "$l")" '
    function cell(v) { return v == "-" ? sprintf("%9s", "fail") : sprintf("%9.0f", v) }
    function ratio(x, y, goal) {
        if (x == "-" || y == "-" || y <= 0) return sprintf("%8s", "-")
        return sprintf("%7.2f%s", x / y, x / y >= goal ? " " : "!")
    }
    BEGIN {
        best = "-"
        if (r != "-") best = r
        if (a != "-" && (best == "-" || a > best)) best = a
        printf "%-26s %s %s %s %s %s %s %s\n", l, cell(d), cell(r), cell(a), cell(c), cell(n),
            ratio(c, best, 1.5), ratio(c, n, 0.8)
    }'
done
printf '(/tgtd: cistern iscsi / the better tgtd LUN of the line, goal 1.5; /nbd: cistern iscsi /\n'
printf ' cistern nbd, goal 0.8; ! marks a ratio below its goal)\n'

printf '\nCPU per line, in cores busy (CPU seconds / wall seconds): server, then client\n\n'
printf '%-26s %9s %9s %9s %9s   %9s %9s %9s\n' "line" "tgtd rdwr" "tgtd aio" "cis iscsi" \
    "cis nbd" "libiscsi" "libiscsi" "fio nbd"
printf '%-26s %9s %9s %9s %9s   %9s %9s %9s\n' "" "" "" "" "" "(tgtd)" "(cistern)" ""
for l in $lines; do
    printf '%-26s %9s %9s %9s %9s   %9s %9s %9s\n' "$(label "$l")" \
        "$(med scpu tgt-rdwr "$l")" "$(med scpu tgt-aio "$l")" "$(med scpu cis-iscsi "$l")" \
        "$(med scpu cis-nbd "$l")" "$(med ccpu tgt-aio "$l")" "$(med ccpu cis-iscsi "$l")" \
        "$(med ccpu cis-nbd "$l")"
done

# The figure of every round, in the order the rounds ran: how far to trust the medians.
printf '\nEvery round (the medians above are of these)\n\n'
printf '%-26s %-19s %-19s %-19s %-19s\n' "line" "tgtd rdwr" "tgtd aio" "cis iscsi" "cis nbd"
for l in $lines; do
    printf '%-26s' "$(label "$l")"
    for t in tgt-rdwr tgt-aio cis-iscsi cis-nbd; do
        printf ' %-19s' "$(tr ' ' '\n' <<<"${vals[$t,$l]:-}" | awk 'NF { printf "%s%.0f", n++ ? "/" : "", $1 }
            END { if (!n) printf "-" }')"
    done
    printf '\n'
done

if [ -s "$errors" ] || [ "$cis_alive" = no ]; then
    printf '\nFailures:\n'
    [ "$cis_alive" = yes ] || printf '  cistern serve was no longer running at the end of the lines\n'
    sed 's/^/  /' "$errors"
    printf '  cistern serve log (last lines):\n'
    tail -20 "$scratch/cistern.log" | sed 's/^/    /'
fi
