#!/usr/bin/env bash
# Prepares the test VM: a Debian trixie 6.12 kernel (it ships ublk_drv as a module) and a tiny
# initramfs that mounts this machine's root over 9p and runs one command in it.
# UBLK_VM_KERNEL_SERIES (default 6.12) and UBLK_VM_SUITE (default trixie) pick another Debian kernel,
# e.g. 6.17 from trixie-backports for what 6.12 lacks (UBLK_U_CMD_UPDATE_SIZE); give it its own
# UBLK_VM_DIR. Idempotent; everything lands in $UBLK_VM_DIR (default <repo>/.vm). Needs: apt-get, dpkg-deb,
# depmod (kmod), xz, cpio, busybox-static, qemu-system-x86 (scripts/setup.sh installs them).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
vm_dir=${UBLK_VM_DIR:-$repo/.vm}
mkdir -p "$vm_dir"
cd "$vm_dir"

# The modules the guest loads, in any order: dependencies are resolved below from modules.dep.
# nbd: the kernel NBD client, the baseline of the rpc and nbd stores' benchmarks.
# A|B: the first that the kernel ships (the crypto API's crc32c moved to crc32c-cryptoapi in 6.15).
# brd: one RAM disk for a disk-like filesystem under the file store's benchmark images (tmpfs, the
# guest's /tmp, cannot serve io_uring without a worker thread per I/O; see _node_bench.sh).
wanted_modules=(9p 9pnet_virtio overlay ublk_drv "crc32c_generic|crc32c-cryptoapi" ext4 xfs loop nbd brd)
# Parameters insmod gives a module (pages are allocated only when written).
declare -A module_params=([brd]="rd_nr=1 rd_size=1048576")

series=${UBLK_VM_KERNEL_SERIES:-6.12}
suite=${UBLK_VM_SUITE:-trixie}

# The initramfs is rebuilt whenever the init script, this script or the kernel choice changes.
recipe=$( (cat "$repo/scripts/vm/init" "$repo/scripts/vm/prepare.sh"; echo "$series $suite") | sha256sum | cut -c1-16)
if [[ -f initramfs.cpio.gz && -f vmlinuz && -f kernel.version && $(cat recipe 2>/dev/null) == "$recipe" ]]; then
  echo "vm: ready ($(cat kernel.version)) in $vm_dir"
  exit 0
fi

apt_opts=(-o Dir::Etc::SourceList="$vm_dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$vm_dir/apt/lists" -o Dir::Cache="$vm_dir/apt/cache"
          -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1)
mkdir -p apt/lists/partial apt/cache
echo "deb http://deb.debian.org/debian $suite main" > apt/sources.list
apt-get "${apt_opts[@]}" update -qq

# Newest generic image of the series unless pinned (UBLK_VM_KERNEL=linux-image-6.12.N+deb13-amd64).
package=${UBLK_VM_KERNEL:-$(apt-cache "${apt_opts[@]}" search --names-only "^linux-image-${series//./\\.}\\.[0-9]+\\+deb13-amd64\$" \
  | awk '{print $1}' | sort -V | tail -1)}
[[ -n $package ]] || { echo "vm: no linux-image-$series package found in $suite" >&2; exit 1; }
echo "vm: fetching $package"
rm -rf pkg && mkdir pkg
(cd pkg && apt-get "${apt_opts[@]}" download "$package" 2>&1 | grep -v "couldn't be accessed by user '_apt'" || true)
dpkg-deb -x pkg/*.deb pkg/root
kver=$(ls pkg/root/usr/lib/modules)
mkdir -p pkg/root/lib && ln -sfn ../usr/lib/modules pkg/root/lib/modules
depmod -b pkg/root "$kver"
cp "pkg/root/boot/vmlinuz-$kver" vmlinuz

# Resolve module load order: dependencies first, each module once.
moddir=pkg/root/usr/lib/modules/$kver
declare -A seen=()
order=()
resolve() {
  local rel line deps dep i
  line=$(grep -E "(^|/)$1\.ko(\.xz)?:" "$moddir/modules.dep" | head -1 || true)
  [[ -n $line ]] || { echo "vm: module $1 not found" >&2; exit 1; }
  rel=${line%%:*}
  [[ -n ${seen[$rel]:-} ]] && return
  seen[$rel]=1
  deps=${line#*:}
  # modules.dep lists the deepest dependency last; load from the end.
  local -a arr=($deps)
  for ((i=${#arr[@]}-1; i>=0; i--)); do
    dep=$(basename "${arr[$i]}"); resolve "${dep%%.ko*}"
  done
  order+=("$rel")
}
for wanted in "${wanted_modules[@]}"; do
  chosen=${wanted##*|}
  for m in ${wanted//|/ }; do
    if grep -qE "(^|/)$m\.ko(\.xz)?:" "$moddir/modules.dep"; then chosen=$m; break; fi
  done
  resolve "$chosen"
done

rm -rf initramfs && mkdir -p initramfs/{bin,dev,proc,sys,newroot,modules}
cp "$(command -v busybox)" initramfs/bin/busybox
if ldd initramfs/bin/busybox >/dev/null 2>&1; then
  echo "vm: busybox must be static (apt install busybox-static)" >&2; exit 1
fi
: > initramfs/modules/order
for rel in "${order[@]}"; do
  name=$(basename "$rel"); name=${name%.xz}
  xz -dc "$moddir/$rel" > "initramfs/modules/$name"
  base=${name%.ko}
  echo "$name ${module_params[$base]:-}" >> initramfs/modules/order
done
cp "$repo/scripts/vm/init" initramfs/init
chmod +x initramfs/init
(cd initramfs && find . | cpio -o -H newc --quiet | gzip -1) > initramfs.cpio.gz
echo "$kver" > kernel.version
echo "$recipe" > recipe
rm -rf pkg initramfs
echo "vm: ready ($kver) in $vm_dir"
