#!/usr/bin/env bash
# The whole test suite: setup, build (warnings are errors), every host test project (gRPC over real
# unix sockets, io_uring on the host kernel, stores against real files and a real s3rver), the Helm chart
# checked with a real helm (tests/chart), then the
# kernel suite in the ublk VM (real ublk driver, mkfs, mount, fio --verify, kill -9 and recovery).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup.sh
dotnet build Csi.sln -c Release -nologo -v quiet
dotnet test Csi.sln -c Release --no-build -nologo
tests/chart/run.sh
tests/kernel/run.sh
