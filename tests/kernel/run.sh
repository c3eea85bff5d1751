#!/usr/bin/env bash
# The kernel suite: publishes the operator tool ReadyToRun on the host, boots the ublk VM once and
# runs every scenario in tests/kernel/scenarios against the real ublk driver.
#   tests/kernel/run.sh [NAME-PATTERN...]      (patterns select scenarios by substring)
# Results: artifacts/kernel/ (kernel-suite.txt summary, console.log).
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
scripts/vm/prepare.sh
export UBLK_VM_OUT=$repo/artifacts/kernel
rm -rf "$UBLK_VM_OUT"
scripts/vm/run.sh --timeout "${KERNEL_SUITE_TIMEOUT:-3900}" --env UBLK_CSI --env UBLK_BLOCKSTORE_SERVER --env UBLK_CSI_NODE --env UBLK_CSI_CONTROLLER --env UBLK_CSI_BENCH --env SCENARIO_TIMEOUT -- \
  tests/kernel/guest.sh "$@"
