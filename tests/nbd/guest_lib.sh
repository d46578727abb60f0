# Shared by the guest tests (sourced after lib.sh, not run): a Linux guest under
# qemu-system-x86_64 (TCG) whose only disk is a Cistern volume, booted from Debian's kernel
# and a busybox-static initramfs that this file builds.
#
#   guest_need                    skips (exit 77) unless qemu-system-x86_64, a static
#                                 busybox and a kernel with its modules are here; sets
#                                 $guest_kernel and $guest_kver
#   guest_build_initramfs OUT MODULE...
#                                 an initramfs (gzip'd newc cpio) with busybox, MODULE...
#                                 and their dependencies in load order, and tests/nbd/
#                                 guest_init.sh as /init
#   guest_boot LOG DRIVE APPEND...
#                                 boots with -drive DRIVE,format=raw,if=virtio,cache=none
#                                 (DRIVE: file=URI, or file.driver=nbd,file.host=...), the
#                                 qemu arguments in the array guest_qemu_args (none by
#                                 default) and the kernel command line APPEND...; the
#                                 serial console goes to LOG; bounded by $GUEST_TIMEOUT
#                                 seconds (120 by default); returns qemu's exit status
#   guest_serve_unix SOCK [serve options...]
#                                 starts `cistern serve --nbd unix:SOCK`; sets $server_pid
#
# Only processes this test started are signalled, by their PID.

GUEST_TIMEOUT=${GUEST_TIMEOUT:-120}
guest_pid=
guest_qemu_args=()

# A static busybox: the initramfs has no C library.
guest_busybox() {
    local bb
    for bb in /bin/busybox /usr/bin/busybox /usr/lib/busybox/busybox-static; do
        [[ -x "$bb" ]] || continue
        if LC_ALL=C ldd "$bb" 2>&1 | grep -q "not a dynamic executable"; then
            echo "$bb"
            return 0
        fi
    done
    return 1
}

guest_need() {
    command -v qemu-system-x86_64 >/dev/null ||
        skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    guest_bb=$(guest_busybox) ||
        skip "no static busybox (Debian package busybox-static)"
    local k kver
    guest_kernel=
    for k in /boot/vmlinuz-*; do
        [[ -e "$k" ]] || continue
        kver=${k#/boot/vmlinuz-}
        [[ -r "$k" && -f "/lib/modules/$kver/modules.dep" ]] || continue
        guest_kernel=$k
        guest_kver=$kver
    done
    [[ -n "$guest_kernel" ]] ||
        skip "no readable /boot/vmlinuz-* with its /lib/modules (Debian package linux-image-amd64)"
}

# guest_modules MODULE...: the .ko paths (relative to /lib/modules/KVER) of MODULE... and
# everything they depend on, dependencies first, each once. Built-in modules are left out.
guest_modules() {
    local dir=/lib/modules/$guest_kver
    declare -A seen=()
    local out=()
    _guest_add() {
        local name=${1//-/_} line path deps dep
        [[ -n "${seen[$name]:-}" ]] && return 0
        seen[$name]=1
        line=$(grep -E "(^|/)${name}\.ko(\.[a-z]+)?:" "$dir/modules.dep" | head -n 1)
        if [[ -z "$line" ]]; then
            # The '-' and '_' spellings are the same module.
            line=$(grep -E "(^|/)${name//_/-}\.ko(\.[a-z]+)?:" "$dir/modules.dep" | head -n 1)
        fi
        if [[ -z "$line" ]]; then
            grep -qE "(^|/)(${name}|${name//_/-})\.ko$" "$dir/modules.builtin" 2>/dev/null &&
                return 0
            echo "guest: module $1 not found for kernel $guest_kver" >&2
            return 1
        fi
        path=${line%%:*}
        deps=${line#*:}
        # modules.dep lists a module's dependencies with the ones loaded last first.
        local rev=()
        for dep in $deps; do rev=("$dep" "${rev[@]}"); done
        for dep in "${rev[@]}"; do
            dep=${dep##*/}
            _guest_add "${dep%%.ko*}" || return 1
        done
        out+=("$path")
    }
    local m
    for m in "$@"; do
        _guest_add "$m" || return 1
    done
    printf '%s\n' "${out[@]}"
}

guest_build_initramfs() {
    local image=$1
    shift
    local root mods m base
    root=$(mktemp -d "$tmp/initramfs.XXXXXX") || return 1
    mkdir -p "$root"/{bin,dev,proc,sys,mnt,lib/modules} || return 1
    cp "$guest_bb" "$root/bin/busybox" || return 1
    cp "$CISTERN_SRC/tests/nbd/guest_init.sh" "$root/init" || return 1
    chmod 755 "$root/init"
    mods=$(guest_modules "$@") || return 1
    : >"$root/modules.order"
    for m in $mods; do
        base=${m##*/}
        case "$base" in
        *.ko) cp "/lib/modules/$guest_kver/$m" "$root/lib/modules/$base" ;;
        *.ko.xz) xz -dc "/lib/modules/$guest_kver/$m" >"$root/lib/modules/${base%.xz}" ;;
        *.ko.zst) zstd -qdc "/lib/modules/$guest_kver/$m" >"$root/lib/modules/${base%.zst}" ;;
        *.ko.gz) gzip -dc "/lib/modules/$guest_kver/$m" >"$root/lib/modules/${base%.gz}" ;;
        *) echo "guest: cannot unpack $m" >&2; return 1 ;;
        esac || return 1
        echo "${base%%.ko*}.ko" >>"$root/modules.order"
    done
    (cd "$root" && find . | "$guest_bb" cpio -o -H newc 2>/dev/null | gzip -1) >"$image" ||
        return 1
    rm -rf "$root"
}

guest_boot() {
    local log=$1 drive=$2
    shift 2
    timeout -k 5 "$GUEST_TIMEOUT" qemu-system-x86_64 -accel tcg -m 512 -nographic \
        -no-reboot -nodefaults -serial stdio -monitor none \
        -kernel "$guest_kernel" -initrd "$tmp/initramfs.gz" \
        -append "console=ttyS0 panic=-1 loglevel=4 $*" \
        -drive "$drive,format=raw,if=virtio,cache=none" "${guest_qemu_args[@]}" \
        </dev/null >"$log" 2>&1 &
    guest_pid=$!
    local rc=0
    wait "$guest_pid" || rc=$?
    guest_pid=
guest_qemu_args=()
    return $rc
}

guest_cleanup() {
    if [[ -n "$guest_pid" ]]; then
        kill -TERM "$guest_pid" 2>/dev/null
        wait "$guest_pid" 2>/dev/null
    fi
    nbd_cleanup
}

guest_serve_unix() {
    local sock=$1 log i
    shift
    log="$tmp/serve.unix.log"
    rm -f "$sock"
    "$CISTERN" serve --nbd "unix:$sock" "$@" 2>>"$log" &
    server_pid=$!
    for ((i = 0; i < 100; i++)); do
        [[ -S "$sock" ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -9 "$server_pid"
    fi
    wait "$server_pid" 2>/dev/null
    server_pid=
    fail "server did not listen on unix:$sock in 10 s: $(cat "$log")"
    return 1
}
