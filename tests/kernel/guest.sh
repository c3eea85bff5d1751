#!/usr/bin/env bash
# Runs every kernel scenario (or those named) inside the VM, one after another, in one boot.
# Usage (inside the guest): tests/kernel/guest.sh [NAME-PATTERN...]
# Scenarios are scenarios/*.sh (files starting with _ are sourced helpers); each runs with
# SCENARIO_DIR (fresh scratch dir) and UBLK_CSI set, exit 0 = pass. Lines starting with "figure: "
# are copied into the summary. A scenario whose header has a line `# kernel: X.Y` needs Linux X.Y
# or newer: on an older kernel it is reported SKIP (tests/kernel/run.sh boots a newer one for it).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${UBLK_CSI:?UBLK_CSI must point at the published ublk-csi}"
scenario_timeout=${SCENARIO_TIMEOUT:-1500}
results=${UBLK_VM_OUT:-/tmp}/kernel-suite.txt
: > "$results"
passed=0 failed=0 skipped=0
running=$(uname -r | cut -d- -f1 | cut -d+ -f1)
for script in "$here"/scenarios/[!_]*.sh; do
  name=$(basename "$script" .sh)
  if [[ $# -gt 0 ]]; then
    match=0; for p in "$@"; do [[ $name == *$p* ]] && match=1; done
    [[ $match -eq 1 ]] || continue
  fi
  # A benchmark of a finished issue ("# extras:" in its header) runs when named, or with BENCH_EXTRAS=1.
  if [[ $# -eq 0 && ${BENCH_EXTRAS:-0} != 1 ]] && grep -q '^# extras:' "$script"; then
    skipped=$((skipped + 1))
    echo "--- $name: SKIP (a benchmark of a finished issue: name it, or set BENCH_EXTRAS=1)"
    echo "$name: SKIP (a benchmark of a finished issue: name it, or set BENCH_EXTRAS=1)" >> "$results"
    continue
  fi
  needs=$(sed -n 's/^# kernel: \([0-9.]*\).*/\1/p' "$script" | head -1)
  if [[ -n $needs && $(printf '%s\n' "$needs" "$running" | sort -V | head -1) != "$needs" ]]; then
    skipped=$((skipped + 1))
    echo "--- $name: SKIP (needs Linux $needs, this is $running)"
    echo "$name: SKIP (needs Linux $needs, this is $running)" >> "$results"
    continue
  fi
  export SCENARIO_DIR=/tmp/scenario-$name
  rm -rf "$SCENARIO_DIR"; mkdir -p "$SCENARIO_DIR"
  echo "=== $name"
  start=$(date +%s)
  # The output goes to a file, followed until the scenario's process ends: a pipe would also wait
  # for any process stuck in the kernel that inherited it, and the suite with it. sed -u: the lines
  # reach the host's output log as they come, so a scenario that hangs shows where.
  timeout --kill-after=10 "$scenario_timeout" bash "$script" > "$SCENARIO_DIR.log" 2>&1 &
  scenario_pid=$!
  tail -n +1 -f --pid="$scenario_pid" "$SCENARIO_DIR.log" | sed -u 's/^/    /'
  rc=0; wait "$scenario_pid" || rc=$?
  took=$(( $(date +%s) - start ))
  if [[ $rc -ne 0 ]]; then
    # What the kernel said meanwhile (hung tasks, ublk or nbd messages) explains most failures; a
    # scenario that timed out also gets the kernel stacks of every blocked task.
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
      echo "    (timed out after ${scenario_timeout}s)"
      echo w > /proc/sysrq-trigger 2>/dev/null || true
    fi
    dmesg | tail -n 120 | sed 's/^/    dmesg: /'
  fi
  # A scenario must leave no device behind, pass or fail; clean up for the next one.
  pkill -KILL -f "$UBLK_CSI" 2>/dev/null || true
  for dev in /sys/class/ublk-char/ublkc*; do
    [[ -e $dev ]] && "$UBLK_CSI" detach "${dev##*/ublkc}" >/dev/null 2>&1
  done
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1)); status=PASS
  else
    failed=$((failed + 1)); status="FAIL (exit $rc)"
  fi
  echo "--- $name: $status in ${took}s"
  { echo "$name: $status in ${took}s"; grep '^figure: ' "$SCENARIO_DIR.log" | sed 's/^figure: /    /'; } >> "$results"
done
echo
echo "=== kernel suite summary ($(uname -r)): $passed passed, $failed failed, $skipped skipped"
cat "$results"
[[ $failed -eq 0 && $((passed + skipped)) -gt 0 ]]
