#!/bin/bash
# Builds Cistern and runs every test, twice: a release build (build/) and an
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/). Installs missing
# Debian packages first. Prints one verdict line per pass and exits non-zero if anything
# failed.
#
#   ./test.sh          both passes
#   ./test.sh --fast   the release pass only
set -uo pipefail

usage() {
    echo "usage: $0 [--fast]" >&2
    exit 2
}

fast=0
for arg in "$@"; do
    case "$arg" in
    --fast) fast=1 ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done

cd "$(dirname "$0")" || exit 1
src=$(pwd)
jobs=$(nproc)

scripts/install-deps.sh || { echo "test.sh: FAIL: could not install dependencies"; exit 1; }

verdicts=()
status=0

# run_pass NAME DIR CMAKE-ARGS...: configure, build, run ctest; records a verdict line.
run_pass() {
    local name=$1 dir=$2
    shift 2
    local log="$dir/test.log" failed skipped total

    echo "==== $name: configure and build in $dir/"
    if ! cmake -S "$src" -B "$dir" "$@"; then
        verdicts+=("$name: FAIL (configure)")
        status=1
        return
    fi
    if ! cmake --build "$dir" -j"$jobs"; then
        verdicts+=("$name: FAIL (build)")
        status=1
        return
    fi

    echo "==== $name: tests"
    rm -f "$dir/Testing/Temporary/LastTestsFailed.log"
    (cd "$dir" && ctest --output-on-failure -j2) 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}

    total=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$log")
    skipped=$(grep -E 'Test +#[0-9]+: .*\*\*\*Skipped' "$log" | sed -E 's/.*Test +#[0-9]+: ([^ ]+).*/\1/' |
        tr '\n' ' ' | sed 's/ $//')
    if [ "$rc" -eq 0 ]; then
        verdicts+=("$name: PASS (${total:-0} tests${skipped:+; skipped: $skipped})")
    else
        failed=$(sed 's/^[0-9]*://' "$dir/Testing/Temporary/LastTestsFailed.log" 2>/dev/null |
            tr '\n' ' ' | sed 's/ $//')
        verdicts+=("$name: FAIL (failed: ${failed:-see $log})")
        status=1
    fi
}

run_pass release build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSANITIZE=OFF

if [ "$fast" -eq 0 ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_pass sanitizers build-asan -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-g -O1" \
        -DSANITIZE=ON
fi

echo
for v in "${verdicts[@]}"; do
    echo "test.sh: $v"
done
exit $status
