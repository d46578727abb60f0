#!/usr/bin/env bash
# Runs the iSCSI target's libFuzzer target (tests/iscsi/fuzz_iscsi.c) for a bounded time
# (FUZZ_SECONDS, default 30) from seed conversations (fuzz_seeds.py): the PDU reader, the
# login state machine with CHAP, and the full feature phase; see tests/fuzz.sh.
#
# Needs: clang with libFuzzer, cmake, python3.
set -u
src=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$src/tests/fuzz.sh"
command -v python3 >/dev/null || fuzz_skip "python3 is not installed"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 "$src/tests/iscsi/fuzz_seeds.py" "$tmp/corpus" || exit 1
fuzz_run fuzz_iscsi iscsi-target "$tmp/corpus"
