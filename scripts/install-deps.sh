#!/bin/bash
# Installs the Debian packages Cistern needs to build and test, only those missing.
# Used by ./test.sh and ./demo.sh; safe to run again. Needs root or sudo when something
# is missing.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    liburing-dev libnbd-dev libnbd-bin liblz4-dev libssl-dev libjemalloc-dev
    libcmocka-dev libjson-c-dev libbsd-dev
    qemu-utils qemu-block-extra fio clang jq python3-libnbd
    libiscsi-bin libiscsi-dev tgt
    qemu-system-x86 busybox-static linux-image-amd64 nbdkit
    libvirt-clients libvirt-daemon libvirt-daemon-driver-qemu e2fsprogs openssl
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install-deps: missing packages (${missing[*]}) and not root, no sudo" >&2
        exit 1
    fi
    sudo=(sudo)
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}"
