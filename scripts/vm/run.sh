#!/usr/bin/env bash
# Runs a command as root inside the ublk test VM and exits with its exit code.
#
#   scripts/vm/run.sh [--timeout SECONDS] [--cpus N] [--memory SIZE] [--env NAME]... -- COMMAND [ARGS...]
#
# The guest is Debian trixie's 6.12 kernel under qemu (TCG; KVM does not work on these hosts) with
# ublk_drv, ext4, xfs, loop and nbd loaded. It sees this machine's whole root read-only over 9p, so the
# command and everything it runs must already be built on the host (publish ReadyToRun: JIT under TCG
# is 20-40x slower). /tmp and /run are tmpfs in the guest; $UBLK_VM_OUT (a host directory, shared
# read-write) collects results: the guest sees it at /run/vm/out. The command starts in the current
# directory, with PATH, HOME=/tmp, UBLK_VM_GUEST=1 and the variables named by --env.
# Output streams to stdout while the guest runs; the console log is printed when boot fails.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
vm_dir=${UBLK_VM_DIR:-$repo/.vm}
timeout=1800 cpus=2 memory=4G
pass_env=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --timeout) timeout=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --env) pass_env+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "run.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "run.sh: no command given" >&2; exit 2; }
[[ -f $vm_dir/initramfs.cpio.gz ]] || "$repo/scripts/vm/prepare.sh"

share=$(mktemp -d /tmp/ublk-vm.XXXXXX)
trap 'rm -rf "$share"' EXIT
mkdir -p "$share/out"
{
  echo "set -o pipefail"
  for name in "${pass_env[@]}"; do
    printf 'export %s=%q\n' "$name" "${!name-}"
  done
  echo "export UBLK_VM_OUT=/run/vm/out"
  printf 'cd %q\n' "$PWD"
  printf '%q ' "$@"; echo
} > "$share/command.sh"
: > "$share/output.log"

# qemu exits when the guest powers off; -no-reboot turns a panic (panic=-1) into an exit too.
timeout --kill-after=10 "$timeout" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$memory" \
  -kernel "$vm_dir/vmlinuz" -initrd "$vm_dir/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init" \
  -display none -monitor none -serial "file:$share/console.log" -no-reboot \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$share,mount_tag=runshare,security_model=none,multidevs=remap" \
  < /dev/null > "$share/qemu.log" 2>&1 &
qemu=$!
tail -n +1 -F --pid=$qemu "$share/output.log" 2>/dev/null &
tailer=$!
qemu_rc=0
wait $qemu || qemu_rc=$?
wait $tailer 2>/dev/null || true

if [[ -n ${UBLK_VM_OUT:-} ]]; then
  mkdir -p "$UBLK_VM_OUT" && cp -a "$share/out/." "$UBLK_VM_OUT/"
  cp "$share/console.log" "$UBLK_VM_OUT/console.log" 2>/dev/null || true
fi
if [[ ! -f $share/exit-code ]]; then
  echo "run.sh: the guest did not finish (qemu exit $qemu_rc; 124 = timeout after ${timeout}s)" >&2
  echo "--- qemu ---" >&2; cat "$share/qemu.log" >&2
  echo "--- console (last 60 lines) ---" >&2; tail -n 60 "$share/console.log" >&2
  exit 125
fi
exit "$(cat "$share/exit-code")"
