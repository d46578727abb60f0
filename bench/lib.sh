# Shared by the benchmark scripts (sourced, not run): messages, the tools a run needs, and
# the build it measures. The script sets BENCH (its name, for messages) first.
#
#   say MSG...                 a progress line on stderr, "BENCH: MSG"
#   bench_need TOOL...         exits 1 naming the first tool that is not installed
#   bench_need_fio_nbd         exits 1 when fio has no nbd engine
#   bench_build SRC BUILD TARGET...
#                              configures BUILD as a release build when it is new, refuses a
#                              sanitizer build (its figures would mean nothing), and builds
#                              the targets (showing the compiler's output only on failure)

say() {
    echo "$BENCH: $*" >&2
}

bench_need() {
    local tool
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null; then
            say "$tool is needed and not installed"
            exit 1
        fi
    done
}

bench_need_fio_nbd() {
    if ! fio --enghelp 2>/dev/null | grep -qw nbd; then
        say "this fio has no nbd engine"
        exit 1
    fi
}

bench_build() {
    local src=$1 build=$2 target
    shift 2
    if [ ! -f "$build/CMakeCache.txt" ]; then
        cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    fi
    if grep -q '^SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
        say "$build is a sanitizer build; give a release build with --build"
        exit 1
    fi
    for target in "$@"; do
        cmake --build "$build" -j"$(nproc)" --target "$target" >/dev/null 2>&1 ||
            cmake --build "$build" --target "$target" >&2
    done
}
