#!/usr/bin/env bash
# nbdkit's nbd plugin in front of `cistern serve`: re-exporting a volume on nbdkit's own
# unix socket, reaching Cistern over TCP, over a unix socket and over TLS, with the
# export name passed through (dynamic-export=true), and with filters (offset, cow) and
# read-only. Clients are nbdinfo and nbdcopy; what they write through nbdkit is read
# straight from Cistern, and the other way round.
#
# Needs: nbdkit (with its nbd plugin and offset and cow filters), nbdinfo, nbdcopy, cmp;
# openssl for the TLS part (left out without it).
set -u
CISTERN_SRC=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$CISTERN_SRC/tests/nbd/lib.sh"
source "$CISTERN_SRC/tests/nbd/guest_lib.sh"
need nbdkit nbdinfo nbdcopy cmp timeout truncate dd
nbdkit nbd --version >/dev/null 2>&1 || skip "nbdkit has no nbd plugin (Debian package nbdkit)"

kit_pid=
kit_sock=

# kit_start NBDKIT-ARGS...: nbdkit in the foreground of a background job, on $kit_sock.
kit_start() {
    local i
    kit_sock=$tmp/kit.sock
    rm -f "$kit_sock"
    nbdkit -f --exit-with-parent -U "$kit_sock" "$@" 2>>"$tmp/nbdkit.log" &
    kit_pid=$!
    for ((i = 0; i < 100; i++)); do
        [[ -S "$kit_sock" ]] && return 0
        kill -0 "$kit_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$kit_pid" 2>/dev/null
    wait "$kit_pid" 2>/dev/null
    kit_pid=
    fail "nbdkit $* did not start: $(tail -n 5 "$tmp/nbdkit.log")"
    return 1
}

kit_stop() {
    local pid=$kit_pid i
    [[ -n "$pid" ]] || return 0
    kit_pid=
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

kit_cleanup() {
    kit_stop
    nbd_cleanup
}

# The URI of nbdkit's export (nbdkit serves one export, whatever the name, unless the
# export name is passed through).
kit() {
    echo "nbd+unix:///${1:-}?socket=$kit_sock"
}

nbd_setup
trap kit_cleanup EXIT
trap "exit 143" TERM HUP
trap "exit 130" INT
"$CISTERN" vol create tank/vol --size 16M >/dev/null || exit 1
"$CISTERN" vol create tank/other --size 8M >/dev/null || exit 1

head -c $((3 * M)) /dev/urandom >"$tmp/a"
head -c $((2 * M)) /dev/urandom >"$tmp/b"
truncate -s 16M "$tmp/img"
dd if="$tmp/a" of="$tmp/img" bs=1M seek=2 conv=notrunc status=none

nbd_start || finish

# --- plain re-export over TCP -----------------------------------------------------------
kit_start nbd hostname=127.0.0.1 port="$port" export=tank/vol || finish
check "nbdkit nbd (TCP): the volume's size" bash -c "
    [ \"\$(timeout 20 nbdinfo --size '$(kit)')\" = $((16 * M)) ]"
check "nbdkit nbd: flush, trim, zero and multi-conn are passed on" bash -c "
    timeout 20 nbdinfo --json '$(kit)' >'$tmp/kit.json' &&
    grep -q '\"can_flush\": true' '$tmp/kit.json' && grep -q '\"can_trim\": true' '$tmp/kit.json' &&
    grep -q '\"can_zero\": true' '$tmp/kit.json' && grep -q '\"can_multi_conn\": true' '$tmp/kit.json'"
check "nbdcopy into nbdkit, read back from cistern directly" bash -c "
    timeout 60 nbdcopy '$tmp/img' '$(kit)' &&
    timeout 60 nbdcopy '$uri/tank/vol' '$tmp/out1' && cmp '$tmp/img' '$tmp/out1'"
check "nbdinfo --map through nbdkit shows cistern's holes" bash -c "
    timeout 20 nbdinfo --map '$(kit)' >'$tmp/map' &&
    grep -Eq '^ *$((2 * M)) +$((3 * M)) +0 +data' '$tmp/map' &&
    [ \$(grep -c data '$tmp/map') -eq 1 ]"
check "written to cistern directly, read through nbdkit" bash -c "
    timeout 20 nbdcopy '$tmp/b' '$uri/tank/vol' &&
    dd if='$tmp/b' of='$tmp/img' bs=1M conv=notrunc status=none &&
    timeout 60 nbdcopy '$(kit)' '$tmp/out2' && cmp '$tmp/img' '$tmp/out2'"
kit_stop

# --- the export name passed through -------------------------------------------------------
kit_start nbd hostname=127.0.0.1 port="$port" dynamic-export=true || finish
check "dynamic-export=true: the client's export name picks the volume" bash -c "
    [ \"\$(timeout 20 nbdinfo --size '$(kit tank/vol)')\" = $((16 * M)) ] &&
    [ \"\$(timeout 20 nbdinfo --size '$(kit tank/other)')\" = $((8 * M)) ]"
check "dynamic-export=true: an unknown volume is refused" \
    bash -c "! timeout 20 nbdinfo --size '$(kit tank/nope)' 2>/dev/null"
kit_stop

# --- filters ------------------------------------------------------------------------------
kit_start --filter=offset nbd hostname=127.0.0.1 port="$port" export=tank/other \
    offset=$((4 * M)) range=$((2 * M)) || finish
check "offset filter: a 2 MiB window at 4 MiB of tank/other" bash -c "
    [ \"\$(timeout 20 nbdinfo --size '$(kit)')\" = $((2 * M)) ] &&
    timeout 20 nbdcopy '$tmp/b' '$(kit)' &&
    timeout 20 nbdcopy '$uri/tank/other' '$tmp/other' &&
    cmp -i $((4 * M)):0 -n $((2 * M)) '$tmp/other' '$tmp/b' &&
    cmp -n $((4 * M)) '$tmp/other' /dev/zero"
kit_stop

kit_start --filter=cow nbd hostname=127.0.0.1 port="$port" export=tank/vol || finish
check "cow filter: writes land in nbdkit's overlay, the volume is unchanged" bash -c "
    timeout 20 nbdcopy '$tmp/a' '$(kit)' &&
    timeout 60 nbdcopy '$(kit)' '$tmp/cow' && cmp -n $((3 * M)) '$tmp/cow' '$tmp/a' &&
    timeout 60 nbdcopy '$uri/tank/vol' '$tmp/out3' && cmp '$tmp/img' '$tmp/out3'"
kit_stop

kit_start -r nbd hostname=127.0.0.1 port="$port" export=tank/vol || finish
check "nbdkit -r: read-only, writes refused" bash -c "
    timeout 20 nbdinfo --json '$(kit)' | grep -q '\"is_read_only\": true' &&
    ! timeout 20 nbdcopy '$tmp/b' '$(kit)' 2>/dev/null &&
    timeout 60 nbdcopy '$uri/tank/vol' '$tmp/out4' && cmp '$tmp/img' '$tmp/out4'"
kit_stop

# --- cistern on a unix socket ---------------------------------------------------------------
checks=$((checks + 1))
echo "checking: the server stops, and starts again on a unix socket"
nbd_stop || fail "the server did not stop cleanly"
csock=$tmp/cistern.sock
guest_serve_unix "$csock" || finish
kit_start nbd socket="$csock" export=tank/vol || finish
check "nbdkit nbd socket=: read the volume, write through, read back directly" bash -c "
    timeout 60 nbdcopy '$(kit)' '$tmp/out5' && cmp '$tmp/img' '$tmp/out5' &&
    timeout 20 nbdcopy '$tmp/a' '$(kit)' &&
    dd if='$tmp/a' of='$tmp/img' conv=notrunc status=none &&
    timeout 60 nbdcopy 'nbd+unix:///tank/vol?socket=$csock' '$tmp/out6' && cmp '$tmp/img' '$tmp/out6'"
kit_stop
nbd_stop || fail "the server (unix socket) did not stop cleanly"

# --- TLS between nbdkit and cistern ---------------------------------------------------------
if command -v openssl >/dev/null; then
    pki=$tmp/pki
    mkdir -p "$pki/client"
    (
        cd "$pki" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cistern test CA" \
            -keyout ca-key.pem -out ca-cert.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout server-key.pem -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >srv.ext
        openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
            -days 2 -extfile srv.ext -out server-cert.pem
        cp ca-cert.pem client/
    ) >"$tmp/openssl.log" 2>&1
    if [[ -s "$pki/server-cert.pem" ]]; then
        nbd_start --tls-cert "$pki/server-cert.pem" --tls-key "$pki/server-key.pem" \
            --tls-required || finish
        check "TLS required: a plain client is refused by cistern" \
            bash -c "! timeout 20 nbdinfo --size '$uri/tank/vol' 2>/dev/null"
        kit_start nbd hostname=127.0.0.1 port="$port" export=tank/vol tls=require \
            tls-certificates="$pki/client" || finish
        check "nbdkit nbd tls=require: plain clients of nbdkit reach the volume over TLS" \
            bash -c "timeout 60 nbdcopy '$(kit)' '$tmp/out7' && cmp '$tmp/img' '$tmp/out7'"
        kit_stop
    else
        echo "note: openssl could not make certificates; TLS part left out" >&2
    fi
else
    echo "note: no openssl; TLS part left out" >&2
fi
finish
