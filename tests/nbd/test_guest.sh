#!/usr/bin/env bash
# A Linux guest whose disk is a Cistern volume. qemu-system-x86_64 (TCG) boots Debian's
# kernel with a busybox-static initramfs built here (tests/nbd/guest_lib.sh,
# tests/nbd/guest_init.sh) and a virtio-blk disk on `cistern serve`:
#
#   1. served on a unix socket (-drive file=nbd:unix:SOCK:exportname=tank/vm), the guest
#      makes an ext2 file system, writes files and raw patterns, flushes and powers off;
#   2. the server is killed with SIGKILL, `pool check` passes, and it is started again on
#      TCP, offering TLS (certificates made with openssl; without openssl, plain TCP);
#   3. a second boot reads everything back and prints PASS, which the test finds on the
#      serial console; its disk is -object tls-creds-x509 with -drive file.driver=nbd,...,
#      file.tls-creds=... (the server's log must show a TLS client), or without openssl
#      -drive file=nbd://127.0.0.1:PORT/tank/vm;
#   4. from the host, nbdinfo, nbdcopy and qemu-img (plain nbd:// URIs) see the same data:
#      e2fsck finds the file system clean, debugfs reads the files out, the patterns are
#      where the guest put them.
#
# Each boot is bounded by GUEST_TIMEOUT seconds (120). About 10 s a boot.
#
# Needs: qemu-system-x86_64 (qemu-system-x86), a static busybox (busybox-static), a kernel
# in /boot with its modules (linux-image-amd64), nbdinfo, nbdcopy, e2fsprogs.
set -u
CISTERN_SRC=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$CISTERN_SRC/tests/nbd/lib.sh"
source "$CISTERN_SRC/tests/nbd/guest_lib.sh"
need nbdinfo nbdcopy qemu-img timeout gzip cmp sha256sum debugfs e2fsck od
guest_need

nbd_setup
trap guest_cleanup EXIT
trap "exit 143" TERM HUP
trap "exit 130" INT
size=$((64 * M))
"$CISTERN" vol create tank/vm --size 64M >/dev/null || exit 1
token=$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
params=(cistern.token="$token" cistern.sectors=$((size / 512)))
started=$SECONDS

check "build the initramfs (busybox, virtio and ext4 modules of $guest_kver)" \
    guest_build_initramfs "$tmp/initramfs.gz" virtio_pci virtio_blk ext4 crc32c_generic ||
    finish

# --- first boot: write, over a unix socket ------------------------------------------------
sock=$tmp/nbd.sock
guest_serve_unix "$sock" || finish
t=$SECONDS
check "first boot (nbd:unix:) powers off by itself" \
    guest_boot "$tmp/boot1.log" "file=nbd:unix:$sock:exportname=tank/vm" cistern.mode=write "${params[@]}"
echo "first boot: $((SECONDS - t)) s"
check "the guest made a file system, wrote files and patterns, and flushed" \
    grep -q "CISTERN-GUEST: WRITE-DONE $token" "$tmp/boot1.log"
check "the first boot reported no failure" bash -c "! grep 'CISTERN-GUEST: FAIL' '$tmp/boot1.log'"
check "nbdinfo over the unix socket: the size, and data where the guest wrote" bash -c "
    [ \"\$(timeout 20 nbdinfo --size 'nbd+unix:///tank/vm?socket=$sock')\" = $size ] &&
    timeout 20 nbdinfo --map 'nbd+unix:///tank/vm?socket=$sock' >'$tmp/map1' &&
    grep -Eq '^ *$((48 * M)) +$((4 * M)) +0 +data' '$tmp/map1'"

# --- a crash, then a restart on TCP -------------------------------------------------------
checks=$((checks + 1))
echo "checking: SIGKILL the server"
nbd_kill9
check "pool check after SIGKILL" "$CISTERN" pool check tank

# --- second boot: verify, over TCP with TLS -----------------------------------------------
pki=$tmp/pki
mkdir -p "$pki/client"
if command -v openssl >/dev/null && (
    cd "$pki" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cistern test CA" \
        -keyout ca-key.pem -out ca-cert.pem &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server-key.pem -out server.csr &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >srv.ext &&
    openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
        -days 2 -extfile srv.ext -out server-cert.pem &&
    cp ca-cert.pem client/
) >"$tmp/openssl.log" 2>&1; then
    tls=true
    nbd_start --tls-cert "$pki/server-cert.pem" --tls-key "$pki/server-key.pem" || finish
    drive="file.driver=nbd,file.host=127.0.0.1,file.port=$port,file.export=tank/vm"
    drive+=",file.tls-creds=tls0"
    guest_qemu_args=(-object "tls-creds-x509,id=tls0,dir=$pki/client,endpoint=client")
    how="TLS, tls-creds-x509"
else
    echo "note: no certificates (openssl missing or failed): the second boot is plain TCP" >&2
    tls=false
    nbd_start || finish
    drive="file=$uri/tank/vm"
    how="nbd://"
fi
t=$SECONDS
check "second boot ($how) powers off by itself" \
    guest_boot "$tmp/boot2.log" "$drive" cistern.mode=verify "${params[@]}"
echo "second boot: $((SECONDS - t)) s"
if $tls; then
    check "the server served the guest over TLS" \
        grep -q 'serving "tank/vm", structured replies, TLS' "$tmp/serve.$port.log"
fi
check "the guest read back the files and the patterns (PASS on the console)" \
    grep -q "CISTERN-GUEST: PASS $token" "$tmp/boot2.log"
check "the second boot reported no failure" bash -c "! grep 'CISTERN-GUEST: FAIL' '$tmp/boot2.log'"

# --- from the host -------------------------------------------------------------------------
yes "cistern $token" | head -c $((4 * M)) >"$tmp/pattern"
yes "end $token" | head -c 4096 >"$tmp/tail"
check "nbdcopy the volume out" timeout 60 nbdcopy "$uri/tank/vm" "$tmp/vm.raw"
check "the pattern is at 48 MiB" cmp -i $((48 * M)):0 -n $((4 * M)) "$tmp/vm.raw" "$tmp/pattern"
check "the last 4 KiB hold the tail pattern" \
    cmp -i $((size - 4096)):0 -n 4096 "$tmp/vm.raw" "$tmp/tail"
check "e2fsck finds the guest's file system clean" e2fsck -fn "$tmp/vm.raw"
check "qemu-img compare: the volume (nbd:// URI) and the copy are the same" \
    timeout 60 qemu-img compare -q -f raw -F raw "$uri/tank/vm" "$tmp/vm.raw"
check "debugfs reads token.txt and data.bin, and data.bin matches data.sha256" bash -c "
    cd '$tmp' &&
    [ \"\$(debugfs -R 'cat /token.txt' vm.raw 2>/dev/null)\" = '$token' ] &&
    debugfs -R 'dump /data.bin data.bin' vm.raw 2>/dev/null &&
    debugfs -R 'cat /data.sha256' vm.raw 2>/dev/null >data.sha256 &&
    sha256sum -c --status data.sha256"
check "nbdinfo --map: the pattern is data, between it and the file system a hole" bash -c "
    timeout 20 nbdinfo --map '$uri/tank/vm' >'$tmp/map2' &&
    awk -v lo=$((32 * M)) -v hi=$((48 * M)) '
        \$4 == \"data\" && \$1 < hi && \$1 + \$2 > lo { bad = 1 }
        \$4 == \"data\" && \$1 == hi && \$2 >= 4 * 1048576 { seen = 1 }
        END { exit bad || !seen }' '$tmp/map2'"
echo "guest test: $((SECONDS - started)) s"
if [[ $failures -ne 0 ]]; then
    for log in "$tmp"/boot*.log; do
        [[ -e "$log" ]] || continue
        echo "--- ${log##*/} (last 40 lines) ---" >&2
        tail -n 40 "$log" | tr -cd '\11\12\40-\176' >&2
    done
fi
finish
