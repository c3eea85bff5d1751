#!/usr/bin/env bash
# Benchmark: the engine's data path (null and memory stores) against a kernel-only baseline (a loop
# device over a tmpfs file) measured in the same boot. Prints IOPS / bandwidth and the ratio to the
# baseline per workload. Under TCG only the ratios mean anything. Fails only if a run fails.
source "$(dirname "$0")/_lib.sh"
runtime=${BENCH_RUNTIME:-5}

run_fio() { # device rw bs iodepth -> prints "iops bw_kib"
  fio --name=bench --filename="$1" --direct=1 --ioengine=libaio --rw="$2" --bs="$3" --iodepth="$4" --numjobs=2 \
      --size=256M --offset_increment=256M --time_based --runtime="$runtime" --group_reporting --output-format=terse \
      --terse-version=3 2>/dev/null \
    | awk -F';' -v rw="$2" '{ if (rw ~ /read/) { print $8, $7 } else { print $49, $48 } }'
}

workloads=("randread 4k 32" "randwrite 4k 32" "read 128k 8")
declare -A result

truncate -s 512M "$SCENARIO_DIR/loop.img"
loopdev=$(losetup --find --show "$SCENARIO_DIR/loop.img")
for w in "${workloads[@]}"; do result["loop $w"]=$(run_fio "$loopdev" $w); done
losetup -d "$loopdev"

for store in null memory; do
  start_server "$store" attach --store "$store" --size 512M --queues 2 --state-dir "$STATE_DIR" --no-recovery
  for w in "${workloads[@]}"; do result["$store $w"]=$(run_fio "$DEVICE" $w); done
  stop_server "$SERVER_PID" "$store"
done

printf '%-22s %-8s %12s %12s %14s\n' workload device IOPS "MiB/s" "ratio vs loop"
for w in "${workloads[@]}"; do
  read -r base_iops base_bw <<< "${result["loop $w"]}"
  for dev in loop null memory; do
    read -r iops bw <<< "${result["$dev $w"]}"
    [[ -n $iops && $iops -gt 0 ]] || fail "no result for $dev $w"
    printf '%-22s %-8s %12s %12s %14s\n' "$w" "$dev" "$iops" "$((bw / 1024))" \
      "$(awk -v a="$iops" -v b="$base_iops" 'BEGIN { printf "%.2f", a / b }')"
  done
done
log "PASS bench-null-vs-loop"
