#!/usr/bin/env bash
# STARTTLS: a CA, a server certificate for 127.0.0.1 and a client certificate made with
# openssl; libnbd clients (nbdinfo, nbdcopy) over nbds:// URIs. TLS offered: both plain and
# TLS clients are served. TLS required: a plain client is refused (NBD_REP_ERR_TLS_REQD).
# With --tls-ca: a client without a certificate is refused, one with is served.
#
# Needs: openssl, nbdinfo, nbdcopy, cmp.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/nbd/lib.sh"
need openssl nbdinfo nbdcopy cmp timeout

nbd_setup
"$CISTERN" vol create tank/vol --size 16M >/dev/null || exit 1

# --- certificates ---------------------------------------------------------------------
pki=$tmp/pki
mkdir -p "$pki/client" "$pki/anon"
(
    cd "$pki" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cistern test CA" \
        -keyout ca-key.pem -out ca-cert.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout server-key.pem -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >srv.ext
    openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
        -days 2 -extfile srv.ext -out server-cert.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=client" \
        -keyout client/client-key.pem -out client.csr
    printf 'extendedKeyUsage=clientAuth\n' >cli.ext
    openssl x509 -req -in client.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
        -days 2 -extfile cli.ext -out client/client-cert.pem
    cp ca-cert.pem client/
    cp ca-cert.pem anon/
) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; skip "openssl could not make test certificates"; }

tls_uri() { # tls_uri DIR EXPORT
    echo "nbds://127.0.0.1:$port/$2?tls-certificates=$1"
}

head -c $((3 * M)) /dev/urandom >"$tmp/data"
truncate -s 16M "$tmp/img"
dd if="$tmp/data" of="$tmp/img" bs=1M seek=5 conv=notrunc status=none

# --- TLS offered ------------------------------------------------------------------------
nbd_start --tls-cert "$pki/server-cert.pem" --tls-key "$pki/server-key.pem" || finish
check "TLS offered: nbdinfo over TLS" bash -c "
    timeout 20 nbdinfo --json '$(tls_uri "$pki/anon" tank/vol)' | grep -q '\"TLS\": true'"
check "TLS offered: a plain client is served too" timeout 20 nbdinfo --size "$uri/tank/vol"
check "TLS: nbdcopy in and out, data intact" bash -c "
    timeout 60 nbdcopy '$tmp/img' '$(tls_uri "$pki/anon" tank/vol)' &&
    timeout 60 nbdcopy '$(tls_uri "$pki/anon" tank/vol)' '$tmp/out' && cmp '$tmp/img' '$tmp/out'"
check "TLS: block status map shows the holes" bash -c "
    timeout 20 nbdinfo --map '$(tls_uri "$pki/anon" tank/vol)' | grep -c data | grep -qx 1"
nbd_stop || fail "server (TLS offered) did not stop cleanly"

# --- TLS required -------------------------------------------------------------------------
nbd_start --tls-cert "$pki/server-cert.pem" --tls-key "$pki/server-key.pem" --tls-required ||
    finish
check "TLS required: a plain client is refused" bash -c "
    ! timeout 20 nbdinfo --size '$uri/tank/vol' 2>'$tmp/plain.err'"
check "TLS required: the refusal says TLS is required" grep -qi "tls" "$tmp/plain.err"
check "TLS required: a TLS client is served" \
    timeout 20 nbdinfo --size "$(tls_uri "$pki/anon" tank/vol)"
check "TLS required: list over TLS" bash -c "
    timeout 20 nbdinfo --list '$(tls_uri "$pki/anon" '')' | grep -q tank/vol"
nbd_stop || fail "server (TLS required) did not stop cleanly"

# --- client certificates ------------------------------------------------------------------
nbd_start --tls-cert "$pki/server-cert.pem" --tls-key "$pki/server-key.pem" \
    --tls-ca "$pki/ca-cert.pem" --tls-required || finish
check "client certificate required: a client without one is refused" bash -c "
    ! timeout 20 nbdinfo --size '$(tls_uri "$pki/anon" tank/vol)' 2>/dev/null"
check "client certificate required: a client with one is served, data intact" bash -c "
    timeout 60 nbdcopy '$(tls_uri "$pki/client" tank/vol)' '$tmp/out2' && cmp '$tmp/img' '$tmp/out2'"
nbd_stop || fail "server (client certificates) did not stop cleanly"
check "pool check at the end" "$CISTERN" pool check tank
finish
