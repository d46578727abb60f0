#!/usr/bin/env bash
# libiscsi's compliance suite against the target: `iscsi-test-cu -d -S -t ALL` on a 1 GiB
# volume, with the same LUN given twice so that the multipath tests run over two sessions,
# and the ReadOnly suite against a snapshot's LUN; then, with the daemon restarted under
# `iscsi-physical-block = grain`, the tests that need more than one logical block per
# physical block. The test fails on any FAILED test, and on any SKIPPED test that is not in
# the list below with its reason: the list is the whole truth about what the suite cannot
# check here, and stays honest.
#
# Needs: iscsi-test-cu (libiscsi-bin), python3.
set -u
source "${CISTERN_SRC:-$(dirname "$0")/../..}/tests/iscsi/lib.sh"
need iscsi-test-cu python3 timeout

# Tests that need more than one logical block per physical block: they skip under the
# default `iscsi-physical-block = logical` and run in a second pass under `grain`.
grain_tests=(
    CompareAndWrite.InvalidDataOutSize
    WriteSame10.UnmapUnaligned
    WriteSame10.InvalidDataOutSize
    WriteSame16.UnmapUnaligned
    WriteSame16.InvalidDataOutSize
)

# Test|reason: every test the suite may skip here, and why.
expected_skips=(
    # Removable media: a volume is not a removable medium.
    "PreventAllow.Simple|Logical unit is not removable."
    "PreventAllow.Eject|Logical unit is not removable."
    "PreventAllow.ITNexusLoss|Logical unit is not removable."
    "PreventAllow.Logout|Logical unit is not removable."
    "PreventAllow.WarmReset|Logical unit is not removable."
    "PreventAllow.ColdReset|Logical unit is not removable."
    "PreventAllow.LUNReset|Logical unit is not removable."
    "PreventAllow.2ITNexuses|Logical unit is not removable."
    "StartStopUnit.Simple|Media is not removable."
    # A writable LUN; the ReadOnly suite runs apart against a snapshot's LUN (below).
    "ReadOnly.ReadOnlySBC|Logical unit is not write-protected."
    # WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 ("to the end") is refused (WSNZ=1).
    "WriteSame10.ZeroBlocks|WRITESAME10 does not support 0-blocks."
    "WriteSame16.ZeroBlocks|WRITESAME16 does not support 0-blocks."
    # Commands the SCSI layer does not implement, and why (docs/iscsi-scsi.md, "Not yet").
    "WriteAtomic16.Simple|WRITEATOMIC16 is not implemented."
    "WriteAtomic16.BeyondEol|WRITEATOMIC16 is not implemented."
    "WriteAtomic16.ZeroBlocks|WRITEATOMIC16 is not implemented."
    "WriteAtomic16.WriteProtect|WRITEATOMIC16 is not implemented."
    "WriteAtomic16.DpoFua|WRITEATOMIC16 is not implemented."
    "WriteAtomic16.VPD|WRITEATOMIC16 is not implemented."
    "Sanitize.BlockErase|SANITIZE BLOCK_ERASE is not implemented"
    "Sanitize.BlockEraseReserved|SANITIZE is not implemented."
    "Sanitize.CryptoErase|SANITIZE CRYPTO_ERASE is not implemented"
    "Sanitize.CryptoEraseReserved|SANITIZE is not implemented."
    "Sanitize.ExitFailureMode|SANITIZE EXIT FAILURE MODE is not implemented"
    "Sanitize.InvalidServiceAction|SANITIZE is not implemented."
    "Sanitize.Overwrite|SANITIZE OVERWRITE is not implemented"
    "Sanitize.OverwriteReserved|SANITIZE is not implemented."
    "Sanitize.Readonly|SANITIZE OVERWRITE is not implemented"
    "Sanitize.Reservations|SANITIZE OVERWRITE is not implemented"
    "Sanitize.Reset|SANITIZE OVERWRITE is not implemented"
)
for t in "${grain_tests[@]}"; do
    expected_skips+=("$t|LBPPB < 2.") # they run in the second pass
done

iscsi_setup 3G
"$CISTERN" vol create tank/cu --size 1G >/dev/null || exit 1
"$CISTERN" snap create tank/cu@ro >/dev/null || exit 1
"$CISTERN" iscsi lun set tank/cu@ro 5 >/dev/null || exit 1
iscsi_conf "iscsi-auth = none"
iscsi_start --threads 2 || finish

# `iscsi-test-cu` text output -> verdict. Prints one line per problem; exits 1 on any.
judge() {
    python3 - "$@" <<'EOF'
import re, sys
log, expected = sys.argv[1], sys.argv[2:]
exp = {}
for e in expected:
    name, reason = e.split("|", 1)
    exp[name] = reason
suite = cur = None
skips, failed, ran = {}, [], set()
summary = None
for line in open(log, errors="replace"):
    m = re.match(r"Suite: (\S+)", line)
    if m:
        suite = m.group(1)
        continue
    m = re.match(r"\s+Test: (\S+) \.\.\.(.*)", line)
    rest = line
    if m:
        cur = suite + "." + m.group(1)
        ran.add(cur)
        rest = m.group(2)
    if cur and "[SKIPPED]" in rest:
        skips.setdefault(cur, rest.split("[SKIPPED]", 1)[1].strip())
    if cur and (line.strip() == "FAILED" or line.rstrip().endswith("...FAILED")):
        failed.append(cur)
    m = re.match(r"\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", line)
    if m:
        summary = tuple(int(x) for x in m.groups())
bad = 0
if summary is None:
    print("FAIL: no run summary: the suite did not complete")
    sys.exit(1)
total, nran, passed, nfailed = summary
for t in failed:
    print("FAIL: %s FAILED" % t)
    bad += 1
if nfailed != len(failed):
    print("FAIL: the summary counts %d failures, %d were found in the log" % (nfailed, len(failed)))
    bad += 1
for t, why in sorted(skips.items()):
    if t not in exp:
        print("FAIL: %s SKIPPED and not expected: %s" % (t, why))
        bad += 1
    elif not why.startswith(exp[t]):
        print("FAIL: %s SKIPPED for another reason: %s (expected: %s)" % (t, why, exp[t]))
        bad += 1
for t in sorted(exp):
    if t in ran and t not in skips:
        print("note: %s runs now (remove it from the expected skips)" % t)
print("%d tests, %d ran, %d passed, %d failed, %d of them skipped"
      % (total, nran, passed, nfailed, len(skips)))
sys.exit(1 if bad else 0)
EOF
}

check "iscsi-test-cu -d -S -t ALL (multipath: the LUN twice)" bash -c \
    "timeout 1200 iscsi-test-cu -d -S -t ALL $url/0 $url/0 >cu.log 2>&1; tail -n 8 cu.log"
check "no test failed and every skip is expected" judge cu.log "${expected_skips[@]}"
check "ReadOnly suite against the snapshot's LUN" bash -c \
    "timeout 300 iscsi-test-cu -d -t ALL.ReadOnly $url/5 >ro.log 2>&1"
check "the ReadOnly suite ran and passed, skipping nothing" judge ro.log
check "the ReadOnly test saw a write-protected LUN" bash -c \
    "grep -q 'Test: ReadOnlySBC ...' ro.log && ! grep -q 'not write-protected' ro.log"
check "the target still serves and stops cleanly" iscsi_stop

# The second pass: the grain (4 KiB: 8 logical blocks) as the physical block.
iscsi_conf "iscsi-auth = none" "iscsi-physical-block = grain"
iscsi_start --threads 2 || finish
check "READ CAPACITY (16) gives 8 logical blocks per physical block" bash -c \
    "iscsi-readcapacity16 $url/0 | grep -Eiq 'per physical block exponent: *3'"
for t in "${grain_tests[@]}"; do
    check "$t with the grain as the physical block" bash -c \
        "timeout 300 iscsi-test-cu -d -t ALL.$t $url/0 >'grain-$t.log' 2>&1"
    check "$t ran and passed, skipping nothing" judge "grain-$t.log"
done
check "the target stops cleanly" iscsi_stop
check "pool check after the suite" "$CISTERN" pool check tank
finish
