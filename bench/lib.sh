# Shared by the benchmark scripts (sourced, not run): messages, the tools a run needs, and
# the build it measures. The script sets BENCH (its name, for messages) first.
#
#   say MSG...                 a progress line on stderr, "BENCH: MSG"
#   bench_need TOOL...         exits 1 naming the first tool that is not installed
#   bench_need_fio_nbd         exits 1 when fio has no nbd engine
#   bench_options LINES OWN "$@"  the options every script takes, and its own (below)
#   bench_scratch NAME         the scratch directory and the exit trap that stops servers (below)
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

# bench_options LINES OWN "$@": the command line every benchmark takes: --quick, --keep,
# --build DIR, --time SECONDS, -h/--help (the script's header lines LINES, as for sed -n,
# are its usage) and one SCRATCH_DIR; OWN names, separated by spaces, the script's own
# options that take a value (--copy-size sets $copy_size). Sets quick, keep, build, seconds,
# scratch_base and the own variables (empty when not given).
bench_usage() {
    sed -n "$1p" "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

bench_options() {
    local lines=$1 own=" $2 " o
    shift 2
    quick=0 keep=0 build="" seconds="" scratch_base=""
    for o in $own; do
        printf -v "${o//-/_}" '%s' ""
    done
    while [ $# -gt 0 ]; do
        case "$1" in
        --quick) quick=1 ;;
        --keep) keep=1 ;;
        --build) build=${2:?}; shift ;;
        --time) seconds=${2:?}; shift ;;
        -h | --help) bench_usage "$lines" ;;
        --*)
            o=${1#--}
            if [[ "$own" != *" $o "* ]]; then
                say "unknown option $1"
                bench_usage "$lines"
            fi
            printf -v "${o//-/_}" '%s' "${2:?}"
            shift
            ;;
        -*) say "unknown option $1"; bench_usage "$lines" ;;
        *) [ -z "$scratch_base" ] || bench_usage "$lines"; scratch_base=$1 ;;
        esac
        shift
    done
}

# bench_scratch NAME: makes $scratch, a new directory cistern-NAME-XXXXXX in $scratch_base,
# and sets the exit trap (bench_cleanup): the script's servers are stopped (bench_stop, when
# the script defines one, and a kill of every PID it put in spid[...]), then $scratch is
# removed, or kept with --keep. Standard input is closed for the processes started later.
bench_scratch() {
    scratch=$(mktemp -d "$scratch_base/cistern-$1-XXXXXX")
    declare -gA spid=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    exec </dev/null
}

bench_cleanup() {
    local pid
    if declare -F bench_stop >/dev/null; then
        bench_stop
    fi
    for pid in "${spid[@]}"; do
        [ -n "$pid" ] || continue
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$keep" = 1 ]; then
        say "scratch left in $scratch"
    else
        rm -rf "$scratch"
    fi
}
