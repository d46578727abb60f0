#!/usr/bin/env bash
# Runs the NBD server's libFuzzer target (tests/nbd/fuzz_nbd.c) for a bounded time
# (FUZZ_SECONDS, default 30) from seed conversations (fuzz_seeds.py). Uses
# $CISTERN_BUILD/nbd-server/fuzz_nbd when that build was configured with -DFUZZ=ON;
# otherwise builds it with clang in a temporary build directory.
#
# Needs: clang with libFuzzer, cmake, python3.
set -u
skip() {
    echo "skipped: $*" >&2
    exit 77
}
src=${CISTERN_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
seconds=${FUZZ_SECONDS:-30}
for tool in python3 timeout; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fuzzer=${CISTERN_BUILD:-}/nbd-server/fuzz_nbd
if [[ ! -x "$fuzzer" ]]; then
    command -v clang >/dev/null || skip "clang is not installed"
    command -v cmake >/dev/null || skip "cmake is not installed"
    echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }' \
        >"$tmp/probe.c"
    clang -fsanitize=fuzzer "$tmp/probe.c" -o "$tmp/probe" 2>/dev/null ||
        skip "clang cannot build libFuzzer targets (libclang_rt.fuzzer missing)"
    echo "building fuzz_nbd with clang in $tmp/build"
    if ! CC=clang cmake -S "$src" -B "$tmp/build" -DFUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        >"$tmp/configure.log" 2>&1; then
        cat "$tmp/configure.log" >&2
        echo "FAIL: cannot configure the fuzz build" >&2
        exit 1
    fi
    if ! cmake --build "$tmp/build" -j"$(nproc)" --target fuzz_nbd >"$tmp/build.log" 2>&1; then
        tail -n 40 "$tmp/build.log" >&2
        echo "FAIL: cannot build fuzz_nbd" >&2
        exit 1
    fi
    fuzzer=$tmp/build/nbd-server/fuzz_nbd
fi

python3 "$src/tests/nbd/fuzz_seeds.py" "$tmp/corpus" || exit 1
echo "running $fuzzer for $seconds s"
cd "$tmp" || exit 1
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} timeout $((seconds + 120)) "$fuzzer" \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    "$tmp/corpus" >"$tmp/fuzz.log" 2>&1
rc=$?
tail -n 15 "$tmp/fuzz.log"
if [[ $rc -ne 0 ]]; then
    echo "FAIL: the fuzzer found a problem (exit $rc):" >&2
    grep -A 30 -E "ERROR|SUMMARY|deadly|fuzz_nbd:" "$tmp/fuzz.log" | head -n 60 >&2
    for crash in "$tmp"/crash-* "$tmp"/timeout-* "$tmp"/leak-*; do
        [[ -e "$crash" ]] && echo "input: $(od -An -tx1 "$crash" | head -n 8)" >&2
    done
    exit 1
fi
echo "fuzzing for $seconds s found nothing"
