#!/bin/busybox sh
# /init of the guest that tests/nbd/test_guest.sh boots (busybox sh, in the initramfs).
# Its only disk, /dev/vda, is a Cistern volume. The kernel command line says what to do:
#
#   cistern.mode=write    make an ext2 file system on the first 32 MiB, write token.txt,
#                         data.bin (2 MiB of random bytes) and data.sha256 there; write a
#                         4 MiB pattern at 48 MiB and a 4 KiB one in the last 4 KiB of the
#                         disk, raw; flush; print "CISTERN-GUEST: WRITE-DONE TOKEN"
#   cistern.mode=verify   read all of that back and print "CISTERN-GUEST: PASS TOKEN", or
#                         one "CISTERN-GUEST: FAIL ..." line per check that failed
#   cistern.token=TOKEN   a word unique to the run, written into the data
#   cistern.sectors=N     the disk's expected size in 512-byte sectors
#
# Then it powers the machine off.

/bin/busybox mkdir -p /proc /sys /dev /mnt /tmp
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

failed=0
say() { echo "CISTERN-GUEST: $*"; }
bad() {
    say "FAIL $*"
    failed=1
}
off() {
    sync
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
}

mode=
token=
sectors=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    cistern.mode=*) mode=${arg#*=} ;;
    cistern.token=*) token=${arg#*=} ;;
    cistern.sectors=*) sectors=${arg#*=} ;;
    esac
done
[ -n "$mode" ] && [ -n "$token" ] && [ -n "$sectors" ] || { bad "command line: $(cat /proc/cmdline)"; off; }

for m in $(cat /modules.order); do
    insmod "/lib/modules/$m" || bad "insmod $m"
done

i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -b /dev/vda ] || { bad "no /dev/vda"; off; }
size=$(cat /sys/block/vda/size)
[ "$size" = "$sectors" ] || bad "/dev/vda has $size sectors, expected $sectors"

# The raw patterns: the same bytes the host makes with `yes ... | head -c`.
yes "cistern $token" | head -c 4194304 >/tmp/pattern
yes "end $token" | head -c 4096 >/tmp/tail
last=$((sectors / 8 - 1))

case "$mode" in
write)
    mke2fs -F -b 4096 -L cistern /dev/vda 32768 >/tmp/mke2fs.log 2>&1 ||
        { cat /tmp/mke2fs.log; bad "mke2fs"; }
    if mount -t ext4 /dev/vda /mnt; then
        echo "$token" >/mnt/token.txt || bad "write token.txt"
        head -c 2097152 /dev/urandom >/mnt/data.bin || bad "write data.bin"
        (cd /mnt && sha256sum data.bin >data.sha256) || bad "write data.sha256"
        sync
        umount /mnt || bad "umount"
    else
        bad "mount the new file system"
    fi
    dd if=/tmp/pattern of=/dev/vda bs=1048576 seek=48 conv=fsync 2>/dev/null ||
        bad "write the pattern at 48 MiB"
    dd if=/tmp/tail of=/dev/vda bs=4096 seek=$last conv=fsync 2>/dev/null ||
        bad "write the last 4 KiB"
    sync
    blockdev --flushbufs /dev/vda
    [ $failed -eq 0 ] && say "WRITE-DONE $token"
    ;;
verify)
    if mount -t ext4 -o ro /dev/vda /mnt; then
        [ "$(cat /mnt/token.txt)" = "$token" ] || bad "token.txt holds '$(cat /mnt/token.txt)'"
        (cd /mnt && sha256sum -c data.sha256 >/dev/null) || bad "data.bin does not match data.sha256"
        [ "$(stat -c %s /mnt/data.bin)" = 2097152 ] || bad "data.bin has the wrong size"
        umount /mnt
    else
        bad "mount the file system"
    fi
    dd if=/dev/vda bs=1048576 skip=48 count=4 2>/dev/null | cmp -s - /tmp/pattern ||
        bad "the pattern at 48 MiB differs"
    dd if=/dev/vda bs=4096 skip=$last count=1 2>/dev/null | cmp -s - /tmp/tail ||
        bad "the last 4 KiB differ"
    [ $failed -eq 0 ] && say "PASS $token"
    ;;
*)
    bad "unknown mode '$mode'"
    ;;
esac
off
