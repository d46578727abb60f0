#!/usr/bin/env bash
# libvirt attaches a Cistern volume the way docs/attach.md says: a <disk type='network'>
# with <source protocol='nbd' name='tank/vm'>, first over TCP (<host name= port=>), then
# over a unix socket (<host transport='unix' socket=>). A session libvirtd of its own (as
# nobody when run as root, state in the test's directory) runs the same guest as
# test_guest.sh under TCG: `virsh define`, `virsh attach-device --config`, `virsh
# domblklist`, `virsh start`; the first boot writes, the server is killed with SIGKILL and
# restarted on a unix socket, the second boot verifies. The XML is also checked with
# virt-xml-validate.
#
# Needs: what test_guest.sh needs, and virsh, libvirtd (libvirt-clients, libvirt-daemon,
# libvirt-daemon-driver-qemu); setpriv when run as root.
set -u
CISTERN_SRC=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$CISTERN_SRC/tests/nbd/lib.sh"
source "$CISTERN_SRC/tests/nbd/guest_lib.sh"
need nbdinfo nbdcopy timeout gzip cmp od debugfs
guest_need
command -v virsh >/dev/null || skip "virsh is not installed (Debian package libvirt-clients)"
libvirtd=$(command -v libvirtd || echo /usr/sbin/libvirtd)
[[ -x "$libvirtd" ]] ||
    skip "libvirtd is not installed (Debian packages libvirt-daemon, libvirt-daemon-driver-qemu)"
as_user=()
if [[ $(id -u) -eq 0 ]]; then
    # A session daemon belongs to an ordinary user; root's qemu:///session is the system one.
    command -v setpriv >/dev/null || skip "setpriv is not installed (util-linux)"
    id nobody >/dev/null 2>&1 || skip "no user nobody to run a session libvirtd as"
    as_user=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups)
fi

libvirtd_pid=
dom=cistern-guest-$$
uuid=$(cat /proc/sys/kernel/random/uuid)

nbd_setup
lv=$tmp/lv
mkdir -p "$lv/run" "$lv/config/libvirt" && chmod 700 "$lv/run"
# qemu writes its own log and console files: no virtlogd daemon is started for the test.
echo 'stdio_handler = "file"' >"$lv/config/libvirt/qemu.conf"
chmod 711 "$tmp"
[[ ${#as_user[@]} -gt 0 ]] && chown -R nobody "$lv"

lv_run() {
    "${as_user[@]}" env HOME="$lv" XDG_RUNTIME_DIR="$lv/run" XDG_CONFIG_HOME="$lv/config" \
        XDG_CACHE_HOME="$lv/cache" XDG_DATA_HOME="$lv/data" "$@"
}
lv_virsh() {
    lv_run timeout 60 virsh -q -c qemu:///session "$@"
}

lv_cleanup() {
    local qpid f i
    if [[ -n "$libvirtd_pid" ]]; then
        lv_virsh destroy "$dom" >/dev/null 2>&1
        kill -TERM "$libvirtd_pid" 2>/dev/null
        wait "$libvirtd_pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$libvirtd_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$libvirtd_pid" 2>/dev/null && kill -9 "$libvirtd_pid"
    fi
    # A qemu that libvirtd started outlives it: stop ours by the PID libvirt recorded.
    for f in "$lv"/config/libvirt/qemu/run/"$dom".pid "$lv"/run/libvirt/qemu/run/"$dom".pid; do
        [[ -s "$f" ]] || continue
        qpid=$(cat "$f")
        [[ "$(cat "/proc/$qpid/comm" 2>/dev/null)" == qemu-system-x86* ]] && kill -9 "$qpid"
    done
    nbd_cleanup
}
trap lv_cleanup EXIT
trap "exit 143" TERM HUP
trap "exit 130" INT

"$CISTERN" vol create tank/vm --size 64M >/dev/null || exit 1
size=$((64 * M))
token=$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
started=$SECONDS

check "build the initramfs" \
    guest_build_initramfs "$tmp/initramfs.gz" virtio_pci virtio_blk ext4 crc32c_generic || finish
cp "$guest_kernel" "$lv/vmlinuz" && cp "$tmp/initramfs.gz" "$lv/initramfs.gz" &&
    chmod 644 "$lv/vmlinuz" "$lv/initramfs.gz" || exit 1
[[ ${#as_user[@]} -gt 0 ]] && chown nobody "$lv"/*

# --- a session libvirtd of our own ------------------------------------------------------
# A simple command, so that $! is libvirtd itself (setpriv and env exec it).
"${as_user[@]}" env HOME="$lv" XDG_RUNTIME_DIR="$lv/run" XDG_CONFIG_HOME="$lv/config" \
    XDG_CACHE_HOME="$lv/cache" XDG_DATA_HOME="$lv/data" "$libvirtd" 2>"$tmp/libvirtd.log" &
libvirtd_pid=$!
for ((i = 0; i < 200; i++)); do
    [[ -S "$lv/run/libvirt/libvirt-sock" ]] && break
    kill -0 "$libvirtd_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ ! -S "$lv/run/libvirt/libvirt-sock" ]]; then
    cat "$tmp/libvirtd.log" >&2
    skip "a session libvirtd did not start"
fi
lv_virsh capabilities 2>/dev/null | grep -q "<domain type='qemu'" ||
    skip "libvirt offers no qemu (TCG) domains here"

# domain_xml MODE [DISK-XML]: the guest, without a disk unless one is given.
domain_xml() {
    cat <<EOF
<domain type='qemu'>
  <name>$dom</name>
  <uuid>$uuid</uuid>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$lv/vmlinuz</kernel>
    <initrd>$lv/initramfs.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4 cistern.mode=$1 cistern.token=$token cistern.sectors=$((size / 512))</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
${2:-}
    <serial type='file'>
      <source path='$lv/console-$1.log'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# disk_xml HOST-ELEMENT: the Cistern volume tank/vm as the guest's vda.
disk_xml() {
    cat <<EOF
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='nbd' name='tank/vm'>
        $1
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
EOF
}

# boot MODE: start the defined domain and wait until it is shut off.
boot() {
    local t=$SECONDS state
    lv_virsh start "$dom" >/dev/null || return 1
    while ((SECONDS - t < GUEST_TIMEOUT)); do
        state=$(lv_virsh domstate "$dom" 2>/dev/null)
        [[ "$state" == "shut off" ]] && { echo "boot ($1): $((SECONDS - t)) s"; return 0; }
        sleep 1
    done
    lv_virsh destroy "$dom" >/dev/null 2>&1
    echo "boot ($1): no power-off in $GUEST_TIMEOUT s" >&2
    return 1
}

blklist_ok() {
    local out
    out=$(lv_virsh domblklist "$dom") || return 1
    echo "$out"
    grep -Eq '^ *vda +tank/vm *$' <<<"$out"
}
no_disk() {
    local out
    out=$(lv_virsh domblklist "$dom") || return 1
    ! grep -q vda <<<"$out"
}

sock=$tmp/nbd.sock
nbd_start || finish
disk_xml "<host name='127.0.0.1' port='$port'/>" >"$lv/disk-tcp.xml"
disk_xml "<host transport='unix' socket='$sock'/>" >"$lv/disk-unix.xml"
domain_xml write >"$lv/domain.xml"

if command -v virt-xml-validate >/dev/null; then
    domain_xml write "$(cat "$lv/disk-tcp.xml")" >"$lv/full-tcp.xml"
    domain_xml verify "$(cat "$lv/disk-unix.xml")" >"$lv/full-unix.xml"
    check "virt-xml-validate: the domain with the TCP disk" \
        virt-xml-validate "$lv/full-tcp.xml" domain
    check "virt-xml-validate: the domain with the unix socket disk" \
        virt-xml-validate "$lv/full-unix.xml" domain
fi

# --- first boot: TCP, write ---------------------------------------------------------------
check "virsh define" lv_virsh define "$lv/domain.xml"
check "virsh attach-device --config (nbd over TCP)" \
    lv_virsh attach-device "$dom" "$lv/disk-tcp.xml" --config
check "virsh domblklist shows vda on tank/vm" blklist_ok
check "first boot (libvirt, nbd over TCP) powers off by itself" boot write
check "the guest wrote its data (WRITE-DONE on the console)" \
    grep -q "CISTERN-GUEST: WRITE-DONE $token" "$lv/console-write.log"

# --- SIGKILL, restart on a unix socket -----------------------------------------------------
checks=$((checks + 1))
echo "checking: SIGKILL the server"
nbd_kill9
check "pool check after SIGKILL" "$CISTERN" pool check tank
guest_serve_unix "$sock" || finish
chmod 666 "$sock"

# --- second boot: unix socket, verify -------------------------------------------------------
check "virsh detach-device --config (the TCP disk)" \
    lv_virsh detach-device "$dom" "$lv/disk-tcp.xml" --config
check "virsh domblklist shows no disk" no_disk
domain_xml verify >"$lv/domain.xml"
check "virsh define again (the same UUID; verify mode on the kernel command line)" \
    lv_virsh define "$lv/domain.xml"
check "virsh attach-device --config (nbd over a unix socket)" \
    lv_virsh attach-device "$dom" "$lv/disk-unix.xml" --config
check "virsh domblklist shows vda on tank/vm" blklist_ok
check "second boot (libvirt, nbd over a unix socket) powers off by itself" boot verify
check "the guest read everything back (PASS on the console)" \
    grep -q "CISTERN-GUEST: PASS $token" "$lv/console-verify.log"
check "no failure on either console" bash -c "! grep -h 'CISTERN-GUEST: FAIL' '$lv'/console-*.log"
check "from the host: token.txt through nbdcopy and debugfs" bash -c "
    timeout 60 nbdcopy 'nbd+unix:///tank/vm?socket=$sock' '$tmp/vm.raw' &&
    [ \"\$(debugfs -R 'cat /token.txt' '$tmp/vm.raw' 2>/dev/null)\" = '$token' ]"
check "virsh undefine" lv_virsh undefine "$dom"
echo "libvirt guest test: $((SECONDS - started)) s"

if [[ $failures -ne 0 ]]; then
    for log in "$lv"/console-*.log "$lv"/config/libvirt/qemu/log/*.log "$lv"/cache/libvirt/qemu/log/*.log; do
        [[ -e "$log" ]] || continue
        echo "--- ${log##*/} (last 30 lines) ---" >&2
        tail -n 30 "$log" | tr -cd '\11\12\40-\176' >&2
    done
fi
finish
