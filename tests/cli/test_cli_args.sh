#!/usr/bin/env bash
# Argument checking of the `cistern` command: every bad size, name, option or command is a
# usage error (exit 2) whose message names the argument at fault, and nothing is opened or
# created before the arguments are checked.
#
# Needs: $CISTERN, the binary. Exits 77 when it is missing.
set -u

if [[ -z "${CISTERN:-}" || ! -x "${CISTERN}" ]]; then
    echo "skipped: CISTERN does not name the cistern binary (${CISTERN:-unset})" >&2
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CISTERN_STATE_DIR="$tmp/state"
failures=0
checks=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect CODE PATTERN DESCRIPTION -- ARGS...
# Runs cistern with ARGS; the exit code must be CODE and stderr must match PATTERN (an
# extended regular expression; empty matches anything).
expect() {
    local code=$1 pattern=$2 what=$3
    shift 4
    checks=$((checks + 1))
    echo "checking: $what (cistern $*)"
    "$CISTERN" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [[ $rc -ne $code ]]; then
        fail "$what: expected exit $code, got $rc; stderr: $(cat "$tmp/err")"
        return
    fi
    if [[ -n "$pattern" ]] && ! grep -Eq -- "$pattern" "$tmp/err"; then
        fail "$what: expected stderr to match '$pattern', got: $(cat "$tmp/err")"
    fi
}

long=$(printf 'a%.0s' {1..65}) # 65 bytes: one over the limit

# Sizes
expect 2 "--size.*12Q" "an unknown size suffix" -- vol create tank/vm --size 12Q
expect 2 "--size.*'-1'" "a negative size" -- vol create tank/vm --size -1
expect 2 "--size" "a missing size value" -- vol create tank/vm --size
expect 2 "--size" "no size at all" -- vol create tank/vm
expect 2 "--size.*4K" "a size that is not a multiple of 4K" -- vol create tank/vm --size 1000
expect 2 "--size.*zero" "a zero size" -- vol create tank/vm --size 0
expect 2 "--size.*too large" "a size beyond 64 bits" -- vol create tank/vm --size 99999999999999999999
expect 2 "--size.*1.5G" "a fractional size" -- vol create tank/vm --size 1.5G
expect 2 "--grain.*power of two" "a grain that is not a power of two" -- vol create tank/vm --size 1G --grain 48K
expect 2 "--grain.*power of two" "a grain above 1M" -- vol create tank/vm --size 1G --grain 2M
expect 2 "--size" "a bad resize" -- vol resize tank/vm --size 3X
expect 2 "cache_bytes" "a bad setting value" -- pool set tank cache_bytes=lots
expect 2 "low_space_pct" "a setting out of range" -- pool set tank low_space_pct=101
expect 2 "colour" "an unknown setting" -- pool set tank colour=blue
expect 2 "KEY=VALUE" "a setting without a value" -- pool set tank cache_bytes

# Names
expect 2 "POOL/VOLUME.*a//b" "an empty component" -- vol create a//b --size 1G
expect 2 "POOL/VOLUME.*a/b@" "an empty snapshot name" -- vol info a/b@
expect 2 "POOL/VOLUME.*$long" "a volume name over 64 bytes" -- vol create "tank/$long" --size 1G
expect 2 "POOL.*$long" "a pool name over 64 bytes" -- pool create "$long" "$tmp/m"
expect 2 "POOL/VOLUME.*tank/\.x" "a name starting with a dot" -- vol create tank/.x --size 1G
expect 2 "POOL/VOLUME.*tank/-x" "a name starting with a dash" -- vol delete tank/-x
expect 2 "POOL/VOLUME.*not a volume" "a pool where a volume is needed" -- vol info tank
expect 2 "POOL.*not a pool" "a volume where a pool is needed" -- pool status tank/vm
expect 2 "POOL/VOLUME.*a b" "a name with a space" -- vol delete "tank/a b"
expect 2 "NEWNAME.*another pool" "a rename across pools" -- vol rename tank/a other/b
expect 2 "NEWNAME.*\.x" "a bad new name" -- vol rename tank/a .x
expect 2 "MEMBER" "a pool without members" -- pool create tank
expect 2 "POOL" "a missing pool name" -- pool status

# Commands and options
expect 2 "unknown command 'frobnicate'" "an unknown command" -- frobnicate
expect 2 "unknown command 'pool frobnicate'" "an unknown pool command" -- pool frobnicate
expect 2 "unknown command 'vol frobnicate'" "an unknown vol command" -- vol frobnicate
expect 2 "unknown option '--frobnicate'" "an unknown global option" -- --frobnicate pool list
expect 2 "unknown option '--frobnicate'" "an unknown command option" -- pool list --frobnicate
expect 2 "unknown option '-z'" "an unknown short option" -- vol list -z
expect 2 "--force.*does not apply" "an option of another command" -- vol create tank/vm --size 1G --force
expect 2 "--state-dir" "a global option without its value" -- --state-dir
expect 2 "unexpected argument 'extra'" "an extra argument" -- vol info tank/vm extra
expect 2 "--format.*qcow3" "an unknown image format" -- vol import tank/vm "$tmp/x" --format qcow3
expect 2 "SOURCE" "an import without a source" -- vol import tank/vm
expect 2 "--size.*--create" "import --size without --create" -- vol import tank/vm "$tmp/x" --size 1G
expect 2 "" "no command at all" --

# Help and version succeed.
expect 0 "" "--version" -- --version
if ! grep -qx "cistern [0-9]*\.[0-9]*\.[0-9]*" "$tmp/out"; then
    fail "--version: expected 'cistern X.Y.Z', got: $(cat "$tmp/out")"
fi
expect 0 "" "--help" -- --help
expect 0 "" "a command's --help" -- vol create --help
if ! grep -q "vol create POOL/VOLUME" "$tmp/out"; then
    fail "vol create --help: expected its usage line, got: $(cat "$tmp/out")"
fi

# Nothing was created by any of the above.
checks=$((checks + 1))
echo "checking: no usage error left a state directory behind"
if [[ -e "$tmp/state" ]]; then
    fail "a usage error created $tmp/state"
fi

echo "$((checks - failures)) passed, $failures failed"
[[ $failures -eq 0 ]]
