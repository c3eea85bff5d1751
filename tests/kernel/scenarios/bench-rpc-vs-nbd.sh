#!/usr/bin/env bash
# extras: issue 7's benchmark (done); the suite runs it when named or with BENCH_EXTRAS=1
# Benchmark: is an rpc-backed ublk device worth choosing over NBD? Both sides serve the same kind of
# backing file (sparse, on the guest's tmpfs) over loopback TCP, measured in the same boot:
#   rpc: ublk-blockstore-server (file store; OpenVolume over gRPC, data over its NBD listener)
#        <- `ublk-csi attach --store rpc://...` (2 queues, a data connection per queue) -> /dev/ublkbN
#   nbd: nbdkit file plugin <- the kernel NBD client (nbd-client, one connection) -> /dev/nbd0
# fio (libaio, O_DIRECT, time based) runs 1 MiB sequential write and read at iodepth 8, then 4 KiB
# random write and read at iodepth 32, each job on both devices back to back (order alternating), in
# BENCH_ROUNDS rounds. Prints each figure's medians and the median of the paired ratios rpc/nbd;
# targets: >= 1.0 for the 4 KiB IOPS, >= 0.8 for the 1 MiB bandwidth. Asserts only that every job ran
# without errors: under TCG the ratios are the meaningful part. BENCH_RUNTIME (seconds per job,
# default 5) shortens or lengthens it.
source "$(dirname "$0")/_lib.sh"

: "${UBLK_BLOCKSTORE_SERVER:?UBLK_BLOCKSTORE_SERVER must point at the published ublk-blockstore-server}"
command -v nbdkit > /dev/null || fail "nbdkit is not installed (scripts/setup.sh installs it)"
command -v nbd-client > /dev/null || fail "nbd-client is not installed (scripts/setup.sh installs it)"
[[ -e /sys/module/nbd ]] || modprobe nbd 2>/dev/null || true
[[ -b /dev/nbd0 ]] || fail "/dev/nbd0 is missing: the VM must load nbd.ko (scripts/vm/prepare.sh)"
ip link set lo up 2>/dev/null || true

runtime=${BENCH_RUNTIME:-5}
size=1G
span=512M   # the region fio works on

# ---- rpc: the block-store server and an attached device
root=$SCENARIO_DIR/blockstore
mkdir -p "$root"
"$UBLK_BLOCKSTORE_SERVER" --listen tcp://127.0.0.1:9400 --root "$root" --log-level warning \
  > "$SCENARIO_DIR/blockstore.log" 2>&1 &
blockstore_pid=$!
SERVER_PIDS+=("$blockstore_pid")
for _ in $(seq 600); do
  (exec 3<> /dev/tcp/127.0.0.1/9400) 2>/dev/null && break
  kill -0 "$blockstore_pid" 2>/dev/null || { cat "$SCENARIO_DIR/blockstore.log"; fail "ublk-blockstore-server exited before serving"; }
  sleep 0.2
done
start_server rpc attach --store rpc://127.0.0.1:9400/bench --size "$size" --queues 2 --depth 64 --state-dir "$STATE_DIR"
rpc_device=$DEVICE
rpc_pid=$SERVER_PID
log "rpc device $rpc_device"

# ---- nbd: nbdkit serving a file of the same size, the kernel client on /dev/nbd0
truncate -s "$size" "$SCENARIO_DIR/nbd.img"
nbdkit --foreground --exit-with-parent --ipaddr 127.0.0.1 --port 10809 file "$SCENARIO_DIR/nbd.img" \
  > "$SCENARIO_DIR/nbdkit.log" 2>&1 &
SERVER_PIDS+=("$!")
for _ in $(seq 100); do (exec 3<> /dev/tcp/127.0.0.1/10809) 2>/dev/null && break; sleep 0.1; done
nbd-client 127.0.0.1 10809 /dev/nbd0 -b 4096 > "$SCENARIO_DIR/nbd-client.log" 2>&1 \
  || { cat "$SCENARIO_DIR/nbd-client.log" "$SCENARIO_DIR/nbdkit.log"; fail "nbd-client could not connect"; }
disconnect_nbd() { nbd-client -d /dev/nbd0 > /dev/null 2>&1 || true; cleanup_servers; }
trap disconnect_nbd EXIT
log "nbd device /dev/nbd0 ($(blockdev --getsize64 /dev/nbd0) bytes)"

# run_fio NAME DEVICE RW BS DEPTH [SECONDS]: one time-based fio job; its JSON lands in $SCENARIO_DIR/NAME.json.
run_fio() {
  local name=$1 device=$2 rw=$3 bs=$4 depth=$5
  fio --name="$name" --filename="$device" --direct=1 --ioengine=libaio --rw="$rw" --bs="$bs" \
      --iodepth="$depth" --size="$span" --runtime="${6:-$runtime}" --time_based --ramp_time=1 \
      --output-format=json --output="$SCENARIO_DIR/$name.json" > "$SCENARIO_DIR/$name.err" 2>&1 \
    || { cat "$SCENARIO_DIR/$name.err"; fail "fio $name failed"; }
}

# fio_value NAME read|write iops|bw_bytes, with the job's error count checked
fio_value() {
  python3 - "$SCENARIO_DIR/$1.json" "$2" "$3" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
if job["error"] != 0:
    sys.exit(f"fio job reported error {job['error']}")
print(f"{job[sys.argv[2]][sys.argv[3]]:.0f}")
PY
}

# Warm both devices up first (a long-running node plugin has compiled its hot paths; a fresh process
# under TCG has not), then measure.
run_fio warmup-nbd /dev/nbd0 randrw 64k 16 5
run_fio warmup-rpc "$rpc_device" randrw 64k 16 5

# WHAT|RW|BS|DEPTH|METRIC|UNIT|TARGET
jobs=(
  "1M seq write|write|1M|8|bw_bytes|MiB/s|0.8"
  "1M seq read|read|1M|8|bw_bytes|MiB/s|0.8"
  "4k randwrite QD32|randwrite|4k|32|iops|IOPS|1.0"
  "4k randread QD32|randread|4k|32|iops|IOPS|1.0"
)
declare -A rpc_values nbd_values ratios
first=nbd
for round in $(seq "$BENCH_ROUNDS"); do
  for job in "${jobs[@]}"; do
    IFS='|' read -r what rw bs depth metric _ _ <<< "$job"
    dir=$([[ $rw == *read ]] && echo read || echo write)
    for side in $first $([[ $first == nbd ]] && echo rpc || echo nbd); do
      device=$([[ $side == nbd ]] && echo /dev/nbd0 || echo "$rpc_device")
      run_fio "$side-$rw-$bs-$round" "$device" "$rw" "$bs" "$depth"
    done
    nbd=$(fio_value "nbd-$rw-$bs-$round" "$dir" "$metric") || fail "nbd $what"
    rpc=$(fio_value "rpc-$rw-$bs-$round" "$dir" "$metric") || fail "rpc $what"
    [[ $nbd -gt 0 ]] || fail "nbd $what measured 0"
    rpc_values[$what]+=" $rpc"
    nbd_values[$what]+=" $nbd"
    ratios[$what]+=" $(ratio "$rpc" "$nbd")"
    log "round $round $what: rpc $rpc, nbd $nbd ($metric)"
    first=$([[ $first == nbd ]] && echo rpc || echo nbd)
  done
done

for job in "${jobs[@]}"; do
  IFS='|' read -r what _ _ _ metric unit target <<< "$job"
  scale=$([[ $metric == bw_bytes ]] && echo 1048576 || echo 1)
  # shellcheck disable=SC2086 # the sample lists split into words on purpose
  rpc=$(median ${rpc_values[$what]}); nbd=$(median ${nbd_values[$what]})
  # shellcheck disable=SC2086
  figure "$what: rpc $(( rpc / scale )) $unit, nbd $(( nbd / scale )) $unit (medians), ratio $(median ${ratios[$what]}) (target >= $target), median of $BENCH_ROUNDS paired ratios:${ratios[$what]}"
done

stop_server "$rpc_pid" rpc > /dev/null
nbd-client -d /dev/nbd0 > /dev/null 2>&1 || fail "nbd-client could not disconnect /dev/nbd0"
kill -TERM "$blockstore_pid"; wait "$blockstore_pid" || true
log "PASS bench-rpc-vs-nbd"
