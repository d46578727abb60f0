#!/usr/bin/env bash
# A Linux guest whose SCSI layer talks to the target: qemu (TCG) with a virtio-scsi
# controller and a scsi-block device on an iscsi:// drive, so that every SCSI command of the
# guest's sd driver (READ CAPACITY, the VPD pages, MODE SENSE, READ, WRITE, SYNCHRONIZE
# CACHE, ...) reaches the target through qemu's libiscsi, as a kernel initiator's would.
# The guest (tests/nbd/guest_init.sh, on /dev/sda) makes an ext4 file system and writes
# files and raw patterns; the daemon is killed with SIGKILL and started again; a second
# boot reads everything back.
#
# Needs: qemu-system-x86_64, a static busybox, a Debian kernel in /boot with its modules.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/iscsi/lib.sh"
src=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
nbd_cleanup() { iscsi_cleanup; } # guest_lib.sh's cleanup calls it
source "$src/tests/nbd/guest_lib.sh"
guest_need
need timeout sed

iscsi_setup 1G
"$CISTERN" vol create tank/vm --size 128M >/dev/null || exit 1
iscsi_conf "iscsi-auth = none"

# The NBD guest's /init, on the SCSI disk.
mkdir -p "$tmp/src/tests/nbd"
sed -e 's#/dev/vda#/dev/sda#g' -e 's#/sys/block/vda#/sys/block/sda#g' \
    "$src/tests/nbd/guest_init.sh" >"$tmp/src/tests/nbd/guest_init.sh"
check "build the initramfs (busybox, virtio-scsi, sd and ext4 modules of $guest_kver)" \
    env CISTERN_SRC="$tmp/src" bash -c "source '$src/tests/nbd/guest_lib.sh'; tmp='$tmp';
        guest_kver='$guest_kver'; guest_bb='$guest_bb';
        guest_build_initramfs '$tmp/initramfs.gz' virtio_pci virtio_scsi sd_mod ext4 crc32c_generic" ||
    finish

boot() { # LOG MODE
    timeout -k 5 "$GUEST_TIMEOUT" qemu-system-x86_64 -accel tcg -m 512 -nographic \
        -no-reboot -nodefaults -serial stdio -monitor none \
        -kernel "$guest_kernel" -initrd "$tmp/initramfs.gz" \
        -append "console=ttyS0 panic=-1 loglevel=4 cistern.mode=$2 cistern.token=$token cistern.sectors=262144" \
        -device virtio-scsi-pci,id=scsi0 \
        -drive "file=$url/0,format=raw,if=none,id=d0,cache=none" \
        -device scsi-block,drive=d0,bus=scsi0.0 </dev/null >"$1" 2>&1
}

token=t$$x$RANDOM
iscsi_start --threads 2 || finish
check "first boot: the guest writes a file system and patterns through its SCSI layer" bash -c \
    "$(declare -f boot); GUEST_TIMEOUT=$GUEST_TIMEOUT guest_kernel='$guest_kernel' tmp='$tmp' \
     token=$token url='$url' boot '$tmp/boot1.log' write;
     grep -q 'CISTERN-GUEST: WRITE-DONE $token' '$tmp/boot1.log' || { tail -n 30 '$tmp/boot1.log'; false; }"
check "the guest saw no SCSI errors" bash -c "! grep -Ei 'I/O error|critical|sense key' '$tmp/boot1.log'"
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null
server_pid=
iscsi_start --threads 2 || finish
check "second boot, after a SIGKILL of the daemon: everything reads back" bash -c \
    "$(declare -f boot); GUEST_TIMEOUT=$GUEST_TIMEOUT guest_kernel='$guest_kernel' tmp='$tmp' \
     token=$token url='$url' boot '$tmp/boot2.log' verify;
     grep -q 'CISTERN-GUEST: PASS $token' '$tmp/boot2.log' || { tail -n 30 '$tmp/boot2.log'; false; }"
check "the target stops cleanly" iscsi_stop
check "pool check" "$CISTERN" pool check tank
finish
