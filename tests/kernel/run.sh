#!/usr/bin/env bash
# The kernel suite: publishes the operator tool ReadyToRun on the host, boots the ublk VM once and
# runs every scenario in tests/kernel/scenarios against the real ublk driver.
#   tests/kernel/run.sh [NAME-PATTERN...]      (patterns select scenarios by substring)
# Scenarios marked `# kernel: X.Y` (features 6.12 lacks) are skipped in that boot and run in a second
# boot of Debian's newer kernel (NEWER_KERNEL_SERIES from trixie-backports).
# Results: artifacts/kernel/ (kernel-suite.txt summary, console.log), artifacts/kernel/newer-kernel/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
source scripts/publish.sh
UBLK_CSI=$(publish_ready_to_run Cli ublk-csi)
# The reference block-store server, for the rpc-store scenarios (started inside the guest on loopback).
UBLK_BLOCKSTORE_SERVER=$(publish_ready_to_run BlockStoreServer ublk-blockstore-server)
# The CSI node plugin, for the node-* scenarios (driven over its unix socket as kubelet does), and the
# controller, for the scenarios that play the sidecars (csi-lifecycle).
UBLK_CSI_NODE=$(publish_ready_to_run NodePlugin ublk-csi-node)
UBLK_CSI_CONTROLLER=$(publish_ready_to_run Controller ublk-csi-controller)
# The benchmarks, for the bench-* scenarios that drive them.
UBLK_CSI_BENCH=$(publish_ready_to_run ../bench/Benchmarks ublk-csi-bench)
export UBLK_CSI UBLK_BLOCKSTORE_SERVER UBLK_CSI_NODE UBLK_CSI_CONTROLLER UBLK_CSI_BENCH
NEWER_KERNEL_SERIES=6.17
scripts/vm/prepare.sh
rm -rf artifacts/kernel
vm_env=(--env BENCH_EXTRAS --env UBLK_CSI --env UBLK_BLOCKSTORE_SERVER --env UBLK_CSI_NODE --env UBLK_CSI_CONTROLLER --env UBLK_CSI_BENCH --env SCENARIO_TIMEOUT)
rc=0
UBLK_VM_OUT=$repo/artifacts/kernel scripts/vm/run.sh --timeout "${KERNEL_SUITE_TIMEOUT:-3900}" "${vm_env[@]}" -- \
  tests/kernel/guest.sh "$@" || rc=$?

# The selected scenarios that need a newer kernel than the first boot's.
newer=()
for script in tests/kernel/scenarios/[!_]*.sh; do
  name=$(basename "$script" .sh)
  grep -q '^# kernel: ' "$script" || continue
  if [[ $# -gt 0 ]]; then
    match=0; for p in "$@"; do [[ $name == *$p* ]] && match=1; done
    [[ $match -eq 1 ]] || continue
  fi
  newer+=("$name")
done
if [[ ${#newer[@]} -gt 0 ]]; then
  export UBLK_VM_DIR=$repo/.vm-$NEWER_KERNEL_SERIES UBLK_VM_KERNEL_SERIES=$NEWER_KERNEL_SERIES UBLK_VM_SUITE=trixie-backports
  scripts/vm/prepare.sh
  # Each scenario bounded below the boot's own limit, so one that hangs is reported (with the
  # kernel's messages) and the others still run.
  SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-900} UBLK_VM_OUT=$repo/artifacts/kernel/newer-kernel scripts/vm/run.sh --timeout 1800 "${vm_env[@]}" -- \
    tests/kernel/guest.sh "${newer[@]}" || rc=$?
fi
exit $rc
