#!/usr/bin/env bash
# The product's main job on its embedded default: attach a file-backed ublk device, mkfs.ext4,
# mount, write and read back data with checksums, report the timings, tear everything down.
# Runs natively when this host has the ublk driver; otherwise inside the ublk VM, and says so.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
publish=$repo/artifacts/publish/ublk-csi
echo "demo: publishing ublk-csi (ReadyToRun)"
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o "$publish" -v quiet -nologo
if [[ -e /dev/ublk-control ]] || modprobe ublk_drv 2>/dev/null; then
  echo "demo: running on this host's kernel ($(uname -r))"
  exec "$publish/ublk-csi" demo "$@"
fi
echo "demo: this host's kernel ($(uname -r)) has no ublk driver; running inside the ublk VM"
echo "demo: (Debian trixie 6.12 under qemu TCG: expect emulation-speed timings)"
if ! command -v qemu-system-x86_64 > /dev/null || ! command -v busybox > /dev/null; then
  scripts/setup.sh
fi
scripts/vm/prepare.sh
exec scripts/vm/run.sh --timeout 900 -- "$publish/ublk-csi" demo "$@"
