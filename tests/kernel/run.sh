#!/usr/bin/env bash
# The kernel suite: publishes the operator tool ReadyToRun on the host, boots the ublk VM once and
# runs every scenario in tests/kernel/scenarios against the real ublk driver.
#   tests/kernel/run.sh [NAME-PATTERN...]      (patterns select scenarios by substring)
# Results: artifacts/kernel/ (kernel-suite.txt summary, console.log).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
publish=$repo/artifacts/publish/ublk-csi
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o "$publish" -v quiet -nologo
# The reference block-store server, for the rpc-store scenarios (started inside the guest on loopback).
blockstore_publish=$repo/artifacts/publish/blockstore-server
dotnet publish src/BlockStoreServer -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o "$blockstore_publish" -v quiet -nologo
export UBLK_BLOCKSTORE_SERVER=$blockstore_publish/ublk-blockstore-server
# The CSI node plugin, for the node-* scenarios (driven over its unix socket as kubelet does).
node_publish=$repo/artifacts/publish/ublk-csi-node
dotnet publish src/NodePlugin -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o "$node_publish" -v quiet -nologo
export UBLK_CSI_NODE=$node_publish/ublk-csi-node
# The CSI controller, for the scenarios that play the sidecars (csi-lifecycle).
controller_publish=$repo/artifacts/publish/ublk-csi-controller
dotnet publish src/Controller -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o "$controller_publish" -v quiet -nologo
export UBLK_CSI_CONTROLLER=$controller_publish/ublk-csi-controller
scripts/vm/prepare.sh
export UBLK_CSI=$publish/ublk-csi UBLK_VM_OUT=$repo/artifacts/kernel
rm -rf "$UBLK_VM_OUT"
scripts/vm/run.sh --timeout "${KERNEL_SUITE_TIMEOUT:-3900}" --env UBLK_CSI --env UBLK_BLOCKSTORE_SERVER --env UBLK_CSI_NODE --env UBLK_CSI_CONTROLLER --env SCENARIO_TIMEOUT -- \
  tests/kernel/guest.sh "$@"
