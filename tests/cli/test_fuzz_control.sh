#!/usr/bin/env bash
# Runs the control protocol's libFuzzer target (tests/cli/fuzz_control.c) for a bounded time
# (FUZZ_SECONDS, default 30) from seed requests, one per operation; see tests/fuzz.sh.
#
# Needs: clang with libFuzzer, cmake.
set -u
src=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$src/tests/fuzz.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/corpus"
n=0
while IFS= read -r line; do
    printf '%s\n' "$line" >"$tmp/corpus/seed-$n"
    n=$((n + 1))
done <<'SEEDS'
{"id": 1, "op": "daemon.info"}
{"id": 2, "op": "pool.list"}
{"id": 3, "op": "pool.status", "args": {"pool": "fuzz"}}
{"id": 4, "op": "pool.check", "args": {"pool": "fuzz"}}
{"id": 5, "op": "pool.set", "args": {"pool": "fuzz", "settings": {"cache_bytes": 8388608, "low_space_pct": 90}}}
{"id": 6, "op": "vol.create", "args": {"pool": "fuzz", "volume": "v2", "size": 1048576, "grain": 65536}}
{"id": 7, "op": "vol.list", "args": {"pool": "fuzz"}}
{"id": 8, "op": "vol.info", "args": {"pool": "fuzz", "volume": "vol", "snap": "s"}}
{"id": 9, "op": "vol.resize", "args": {"pool": "fuzz", "volume": "vol", "delta": -4096, "force": true}}
{"id": 10, "op": "vol.rename", "args": {"pool": "fuzz", "volume": "v2", "new_name": "v3"}}
{"id": 11, "op": "vol.delete", "args": {"pool": "fuzz", "volume": "v3"}}
{"id": 12, "op": "snap.create", "args": {"pool": "fuzz", "volume": "vol", "snap": "t", "volumes": ["v2"]}}
{"id": 13, "op": "snap.list", "args": {"pool": "fuzz", "volume": "vol"}}
{"id": 14, "op": "snap.rename", "args": {"pool": "fuzz", "volume": "vol", "snap": "t", "new_name": "u"}}
{"id": 15, "op": "snap.diff", "args": {"pool": "fuzz", "volume": "vol", "snap": "s", "to": "u"}}
{"id": 16, "op": "snap.rollback", "args": {"pool": "fuzz", "volume": "vol", "snap": "s"}}
{"id": 17, "op": "clone", "args": {"pool": "fuzz", "volume": "vol", "snap": "s", "new_name": "c"}}
{"id": 18, "op": "snap.delete", "args": {"pool": "fuzz", "volume": "vol", "snap": "u"}}
{"id": 19, "op": "pool.add", "args": {"pool": "fuzz", "member": "/nonexistent/m"}}
SEEDS
fuzz_run fuzz_control cli "$tmp/corpus"
