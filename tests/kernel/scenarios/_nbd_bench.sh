#!/usr/bin/env bash
# Sourced by the nbd benchmarks: nbd_bench_vs_kernel runs the nbd store (ublk device, 2 queues,
# a connection per queue) against the kernel's NBD client (nbd-client, one connection) on the same
# nbdkit export (file plugin, sparse image on tmpfs) in the same boot, each workload on both clients
# back to back (order alternating), in BENCH_ROUNDS rounds (NBD_BENCH_ROUNDS overrides): 4 KiB random
# write and read at QD32 (IOPS) and 1 MiB sequential write and read (bandwidth). Prints each figure's
# medians and the median of the paired ublk/kernel ratios (goal >= 1.0), and the ublk device's flags.
# Call nbd_bench_available first.

# nbd_bench_available NAME: false (after a figure saying why) when this machine has no kernel NBD client.
nbd_bench_available() {
  command -v nbd-client > /dev/null || { figure "$1: nbd-client not installed, skipped"; return 1; }
  [[ -b /dev/nbd0 ]] || modprobe nbd 2>/dev/null || true
  [[ -b /dev/nbd0 ]] || { figure "$1: no nbd driver (/dev/nbd0), skipped"; return 1; }
}

# attach_flags NAME: the device flags the attach started with start_server NAME printed.
attach_flags() { sed -n 's/.*flags \(.*\), recovery .*/\1/p' "$SCENARIO_DIR/$1.err" | head -1; }

# flags_have_auto_buf_reg FLAGS: the attach line's device flags include UBLK_F_AUTO_BUF_REG.
flags_have_auto_buf_reg() { [[ $1 == *AutoBufReg* ]]; }

# fio_run NAME DEVICE ARGS...: a time-based job in the foreground (no subshell: a failure must end
# the scenario, and no fio may outlive it); sets IOPS and BW (KiB/s) of the direction that moved data.
fio_run() {
  local name=$1 dev=$2; shift 2
  fio --name="$name" --filename="$dev" --direct=1 --ioengine=libaio --time_based --runtime="$seconds" \
      --ramp_time=1 --group_reporting --output-format=json "$@" > "$SCENARIO_DIR/$name.json" 2> "$SCENARIO_DIR/$name.err" \
    || { cat "$SCENARIO_DIR/$name.err"; fail "fio $name failed"; }
  read -r IOPS BW <<< "$(python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] > 0 else j["read"]
print(round(d["iops"]), d["bw"])' "$SCENARIO_DIR/$name.json")"
  [[ -n ${IOPS:-} ]] || { cat "$SCENARIO_DIR/$name.json"; fail "fio $name gave no result"; }
}

# cpu_ticks PID: user + system clock ticks (1/100 s) the process has used, all its threads.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# nbd_bench_vs_kernel [LABEL [ATTACH_OPTION...]]: the figures are named "nbd LABEL WORKLOAD" (LABEL
# defaults to empty). Not called in a condition: errexit must stay in force inside.
nbd_bench_vs_kernel() {
  local label=${1:+$1 }; shift || true
  # A fresh port per run: the previous run's nbdkit may still be exiting.
  port=${NBD_BENCH_PORT:-10811}
  NBD_BENCH_PORT=$((port + 1))
  seconds=${BENCH_SECONDS:-5}
  rounds=${NBD_BENCH_ROUNDS:-$BENCH_ROUNDS}
  image=$SCENARIO_DIR/bench.img
  truncate -s 256M "$image"
  start_nbdkit "$port" "$image"

  workloads=(
    "randwrite-4k-qd32|--rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --size=256M|iops"
    "randread-4k-qd32|--rw=randread --bs=4k --iodepth=32 --numjobs=2 --size=256M|iops"
    "seqwrite-1m|--rw=write --bs=1M --iodepth=4 --size=256M|bw"
    "seqread-1m|--rw=read --bs=1M --iodepth=4 --size=256M|bw"
  )

  declare -A ublk kernel cpu ratios
  log "nbdkit on 127.0.0.1:$port (pid $NBDKIT_PID)"
  start_server bench attach --store "nbd://127.0.0.1:$port/" --queues 2 --depth 64 --state-dir "$STATE_DIR" "$@"
  NBD_BENCH_FLAGS=$(attach_flags bench)
  log "ublk device $DEVICE (max_sectors_kb $(cat "/sys/block/${DEVICE#/dev/}/queue/max_sectors_kb"); flags $NBD_BENCH_FLAGS)"
  # Fill the image once so reads hit data (not holes) on both clients.
  fio --name=fill --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=4 --size=256M > "$SCENARIO_DIR/fill.txt" 2>&1
  nbd-client 127.0.0.1 "$port" /dev/nbd0 -N disk -timeout 30 > "$SCENARIO_DIR/nbd-client.log" 2>&1 \
    || { cat "$SCENARIO_DIR/nbd-client.log"; fail "nbd-client could not connect"; }
  log "kernel device /dev/nbd0 (max_sectors_kb $(cat /sys/block/nbd0/queue/max_sectors_kb))"
  # Both clients stay connected; each workload runs on one right after the other, the order
  # alternating, so a change in the host's load between runs cannot favour one side (TCG shares the
  # host's cores with other builds and VMs). BENCH_ROUNDS rounds; each pair gives a ratio, and the
  # figure is their median.
  first=ublk
  for round in $(seq "$rounds"); do
    for w in "${workloads[@]}"; do
      IFS='|' read -r name args metric <<< "$w"
      local pair_ublk pair_kernel
      for side in $first $([[ $first == ublk ]] && echo kernel || echo ublk); do
        if [[ $side == ublk ]]; then
          local ticks_before
          ticks_before=$(cpu_ticks "$SERVER_PID")
          fio_run "ublk-$name-$round" "$DEVICE" $args
          pair_ublk=$([[ $metric == iops ]] && echo "$IOPS" || echo "$BW")
          # The serving process's CPU time per MiB moved (the fio run plus its 1 s ramp): what a copy
          # costs shows here even when the host's load hides it in throughput.
          cpu[$name]+=" $(awk -v t="$(( $(cpu_ticks "$SERVER_PID") - ticks_before ))" -v bw="$BW" -v s="$seconds" \
            'BEGIN { mib = bw * (s + 1) / 1024; if (mib > 0) printf "%.1f", t * 10 / mib; else print "n/a" }')"
          log "round $round ublk nbd store $name: $IOPS IOPS, $BW KiB/s, server CPU ${cpu[$name]##* } ms/MiB"
        else
          fio_run "kernel-$name-$round" /dev/nbd0 $args
          pair_kernel=$([[ $metric == iops ]] && echo "$IOPS" || echo "$BW")
          log "round $round kernel nbd-client $name: $IOPS IOPS, $BW KiB/s"
        fi
      done
      ublk[$name]+=" $pair_ublk"
      kernel[$name]+=" $pair_kernel"
      ratios[$name]+=" $(ratio "$pair_ublk" "$pair_kernel")"
      first=$([[ $first == ublk ]] && echo kernel || echo ublk)
    done
  done
  nbd-client -d /dev/nbd0 > /dev/null 2>&1 || true
  stop_server "$SERVER_PID" bench
  kill -TERM "$NBDKIT_PID" 2>/dev/null || true

  for w in "${workloads[@]}"; do
    IFS='|' read -r name _ metric <<< "$w"
    unit=$([[ $metric == iops ]] && echo IOPS || echo KiB/s)
    # shellcheck disable=SC2086 # the sample lists split into words on purpose
    figure "nbd $label$name: ublk nbd store $(median ${ublk[$name]}) $unit vs kernel nbd-client $(median ${kernel[$name]}) $unit (medians) = $(median ${ratios[$name]})x, median of $rounds paired ratios:${ratios[$name]} (server CPU $(median ${cpu[$name]}) ms/MiB)"
  done
}
