#!/usr/bin/env bash
# Runs the NBD server's libFuzzer target (tests/nbd/fuzz_nbd.c) for a bounded time
# (FUZZ_SECONDS, default 30) from seed conversations (fuzz_seeds.py); see tests/fuzz.sh.
#
# Needs: clang with libFuzzer, cmake, python3.
set -u
src=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$src/tests/fuzz.sh"
command -v python3 >/dev/null || fuzz_skip "python3 is not installed"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 "$src/tests/nbd/fuzz_seeds.py" "$tmp/corpus" || exit 1
fuzz_run fuzz_nbd nbd-server "$tmp/corpus"
