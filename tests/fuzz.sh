# Shared by the fuzz tests (tests/*/test_fuzz*.sh): builds a libFuzzer target when the test's
# build directory lacks it, and runs it for a bounded time from a seed corpus.
#
#   source "$src/tests/fuzz.sh"
#   fuzz_run TARGET SUBDIR CORPUS   runs $CISTERN_BUILD/SUBDIR/TARGET (or builds it with clang
#                                   and -DFUZZ=ON in a temporary directory) for FUZZ_SECONDS
#                                   (default 30) on CORPUS; exits the test with 0, 1 (a crash,
#                                   a leak or a hang, with the input printed) or 77 (no clang
#                                   with libFuzzer).
#
# The caller sets src (the source tree) and tmp (a scratch directory it removes).

fuzz_skip() {
    echo "skipped: $*" >&2
    exit 77
}

fuzz_run() {
    local target=$1 subdir=$2 corpus=$3 seconds=${FUZZ_SECONDS:-30}
    local fuzzer=${CISTERN_BUILD:-}/$subdir/$target
    command -v timeout >/dev/null || fuzz_skip "timeout is not installed"
    if [[ ! -x "$fuzzer" ]]; then
        command -v clang >/dev/null || fuzz_skip "clang is not installed"
        command -v cmake >/dev/null || fuzz_skip "cmake is not installed"
        command -v flock >/dev/null || fuzz_skip "flock is not installed"
        echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { (void)d; (void)n; return 0; }' \
            >"$tmp/probe.c"
        clang -fsanitize=fuzzer "$tmp/probe.c" -o "$tmp/probe" 2>/dev/null ||
            fuzz_skip "clang cannot build libFuzzer targets (libclang_rt.fuzzer missing)"
        # One clang build for all fuzz tests, kept in the test build directory; the lock
        # keeps two tests from building it at once.
        local fbuild=${CISTERN_BUILD:-$tmp}/fuzz-build
        echo "building $target with clang in $fbuild"
        (
            flock 9
            if ! CC=clang cmake -S "$src" -B "$fbuild" -DFUZZ=ON \
                -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$tmp/configure.log" 2>&1; then
                cat "$tmp/configure.log" >&2
                echo "FAIL: cannot configure the fuzz build" >&2
                exit 1
            fi
            if ! cmake --build "$fbuild" -j"$(nproc)" --target "$target" >"$tmp/build.log" 2>&1; then
                tail -n 40 "$tmp/build.log" >&2
                echo "FAIL: cannot build $target" >&2
                exit 1
            fi
        ) 9>"${CISTERN_BUILD:-$tmp}/fuzz-build.lock" || exit 1
        fuzzer=$fbuild/$subdir/$target
    fi
    echo "running $fuzzer for $seconds s"
    (cd "$tmp" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} timeout $((seconds + 120)) \
        "$fuzzer" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
        -print_final_stats=1 "$corpus" >"$tmp/fuzz.log" 2>&1)
    local rc=$?
    tail -n 15 "$tmp/fuzz.log"
    if [[ $rc -ne 0 ]]; then
        echo "FAIL: the fuzzer found a problem (exit $rc):" >&2
        grep -A 30 -E "ERROR|SUMMARY|deadly|$target:" "$tmp/fuzz.log" | head -n 60 >&2
        for crash in "$tmp"/crash-* "$tmp"/timeout-* "$tmp"/leak-*; do
            [[ -e "$crash" ]] && echo "input: $(od -An -tx1 "$crash" | head -n 8)" >&2
        done
        exit 1
    fi
    echo "fuzzing for $seconds s found nothing"
    exit 0
}
