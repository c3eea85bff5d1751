#!/usr/bin/env bash
# The product's main job as the driver does it (scripts/demo-guest.sh says what it shows, step by
# step with times): the CSI controller and node plugin on their sockets, a file volume provisioned,
# published, written, snapshotted and restored, the node plugin killed with -9 mid-write and its
# successor adopting the device with no I/O error, and everything torn down.
# Runs natively when this host has the ublk driver; otherwise inside the ublk VM, and says so.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
source scripts/publish.sh
echo "demo: publishing ublk-csi, ublk-csi-node and ublk-csi-controller (ReadyToRun)"
UBLK_CSI=$(publish_ready_to_run Cli ublk-csi)
UBLK_CSI_NODE=$(publish_ready_to_run NodePlugin ublk-csi-node)
UBLK_CSI_CONTROLLER=$(publish_ready_to_run Controller ublk-csi-controller)
export UBLK_CSI UBLK_CSI_NODE UBLK_CSI_CONTROLLER
if [[ -e /dev/ublk-control ]] || modprobe ublk_drv 2>/dev/null; then
  echo "demo: running on this host's kernel ($(uname -r))"
  exec scripts/demo-guest.sh
fi
echo "demo: this host's kernel ($(uname -r)) has no ublk driver; running inside the ublk VM"
echo "demo: (Debian trixie 6.12 under qemu TCG: expect emulation-speed timings)"
if ! command -v qemu-system-x86_64 > /dev/null || ! command -v busybox > /dev/null || ! command -v jq > /dev/null; then
  scripts/setup.sh
fi
scripts/vm/prepare.sh
exec scripts/vm/run.sh --timeout 3600 --env UBLK_CSI --env UBLK_CSI_NODE --env UBLK_CSI_CONTROLLER -- scripts/demo-guest.sh
