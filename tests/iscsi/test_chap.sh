#!/usr/bin/env bash
# Logins with CHAP and mutual CHAP, and allowed initiators, set with `cistern iscsi auth` and
# `cistern iscsi initiator` both before the daemon starts and through its control socket
# while it runs (each login reads the settings again): the right secret logs in, a wrong
# one or none is refused, mutual CHAP proves the target to the initiator (a wrong target
# secret makes the initiator give up), an initiator not on the list is refused and does
# not see the target in discovery. Without any setting, CHAP is required and refused.
#
# Needs: iscsi-inq, iscsi-ls, qemu-img.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/iscsi/lib.sh"
need iscsi-inq iscsi-ls qemu-img timeout

iscsi_setup 256M
"$CISTERN" vol create tank/vm1 --size 16M >/dev/null || exit 1
truncate -s 16M "$tmp/other"
"$CISTERN" pool create other "$tmp/other" >/dev/null || exit 1
"$CISTERN" vol create other/v --size 4M >/dev/null || exit 1
secret=s3cret-tank-12
inq() { timeout 20 iscsi-inq "$@" >/dev/null 2>&1; }

# --- the default: CHAP required, no secret anywhere ---------------------------------------
iscsi_start || finish
check "without settings, a login without CHAP is refused" bash -c \
    "! timeout 20 iscsi-inq $url/0 >/dev/null 2>&1"
check "the refusal is logged with the way out" grep -q "requires CHAP but has no CHAP secret" \
    "$tmp"/serve.$port.log
iscsi_stop

# --- CHAP set before the daemon starts ----------------------------------------------------
check "iscsi auth set (no daemon)" \
    "$CISTERN" iscsi auth set tank user=alice "secret=$secret"
check "the settings file is private" bash -c "[[ \$(stat -c %a '$CISTERN_STATE_DIR/iscsi.json') == 600 ]]"
check "iscsi show does not print secrets" bash -c \
    "out=\$('$CISTERN' iscsi show tank --json) && ! grep -q '$secret' <<<\"\$out\" && grep -q alice <<<\"\$out\""
iscsi_conf "iscsi-auth = chap" "iscsi-chap-user = disc" "iscsi-chap-secret = discovery-secret1"
iscsi_start --threads 2 || finish
check "the right CHAP secret logs in" inq "iscsi://alice%$secret@$portal/$target/0"
check "a wrong secret is refused" bash -c \
    "! timeout 20 iscsi-inq 'iscsi://alice%wrong-secret@$portal/$target/0' >/dev/null 2>&1"
check "a wrong user name is refused" bash -c \
    "! timeout 20 iscsi-inq 'iscsi://bob%$secret@$portal/$target/0' >/dev/null 2>&1"
check "no CHAP at all is refused" bash -c \
    "! timeout 20 iscsi-inq 'iscsi://$portal/$target/0' >/dev/null 2>&1"
check "the refusals are logged as authentication failures" bash -c \
    "grep -c 'status 0x0201' '$tmp'/serve.$port.log | grep -qv '^0$'"
check "discovery with the daemon's own CHAP secret" bash -c \
    "timeout 20 iscsi-ls 'iscsi://disc%discovery-secret1@$portal' | grep -q '$target'"
check "discovery without it is refused" bash -c \
    "! timeout 20 iscsi-ls 'iscsi://$portal' >/dev/null 2>&1"
check "the other pool (no secret of its own) takes the daemon's" \
    inq "iscsi://disc%discovery-secret1@$portal/${IQN_PREFIX}other/0"
check "qemu-img reads through CHAP" bash -c \
    "timeout 60 qemu-img info 'iscsi://alice%$secret@$portal/$target/0' | grep -q 'virtual size: 16 MiB'"
head -c $((16 * M)) /dev/urandom >"$tmp/img"
check "qemu-img convert into the LUN through CHAP" \
    timeout 120 qemu-img convert -n -f raw -O raw "$tmp/img" "iscsi://alice%$secret@$portal/$target/0"
check "qemu-img compare through CHAP" \
    timeout 120 qemu-img compare -f raw -F raw "$tmp/img" "iscsi://alice%$secret@$portal/$target/0"

# --- mutual CHAP, set through the daemon ----------------------------------------------------
check "iscsi auth set through the daemon: mutual CHAP" \
    "$CISTERN" iscsi auth set tank mutual-user=tank-target mutual-secret=target-secret-99
check "mutual CHAP with the right target secret" bash -c \
    "LIBISCSI_CHAP_TARGET_USERNAME=tank-target LIBISCSI_CHAP_TARGET_PASSWORD=target-secret-99 \
     timeout 20 iscsi-inq 'iscsi://alice%$secret@$portal/$target/0' >/dev/null 2>&1"
check "the initiator refuses a target that proves a wrong secret" bash -c \
    "! LIBISCSI_CHAP_TARGET_USERNAME=tank-target LIBISCSI_CHAP_TARGET_PASSWORD=not-the-secret \
     timeout 20 iscsi-inq 'iscsi://alice%$secret@$portal/$target/0' >/dev/null 2>&1"
check "the same secret both ways is refused by the settings" bash -c \
    "! '$CISTERN' iscsi auth set tank mutual-user=x 'mutual-secret=$secret' 2>/dev/null"

# --- allowed initiators ---------------------------------------------------------------------
good=iqn.2026-11.org.example:good
check "iscsi initiator allow" "$CISTERN" iscsi initiator allow tank $good
check "an allowed initiator logs in" inq -i $good "iscsi://alice%$secret@$portal/$target/0"
check "another initiator is refused (authorization failure)" bash -c \
    "! timeout 20 iscsi-inq 'iscsi://alice%$secret@$portal/$target/0' >/dev/null 2>&1 &&
     grep -q 'status 0x0202' '$tmp'/serve.$port.log"
check "discovery hides the target from initiators not allowed" bash -c \
    "out=\$(timeout 20 iscsi-ls 'iscsi://disc%discovery-secret1@$portal') &&
     ! grep -q '$target' <<<\"\$out\" && grep -q '${IQN_PREFIX}other' <<<\"\$out\""
check "iscsi initiator deny empties the list again" "$CISTERN" iscsi initiator deny tank $good
check "any initiator logs in again" inq "iscsi://alice%$secret@$portal/$target/0"

# --- no CHAP, when configured so ------------------------------------------------------------
check "iscsi auth set auth=none" "$CISTERN" iscsi auth set tank auth=none
check "auth=none: a login without CHAP" inq "iscsi://$portal/$target/0"
check "iscsi auth clear: back to the daemon's settings" "$CISTERN" iscsi auth clear tank
check "after clear, the target's own secret is gone" bash -c \
    "! timeout 20 iscsi-inq 'iscsi://alice%$secret@$portal/$target/0' >/dev/null 2>&1"
check "bad settings are refused" bash -c \
    "! '$CISTERN' iscsi auth set tank auth=maybe 2>/dev/null &&
     ! '$CISTERN' iscsi auth set tank user=alice 2>/dev/null &&
     ! '$CISTERN' iscsi initiator allow tank not-an-iqn 2>/dev/null"
finish
