# Shared helpers for the in-VM scenario scripts (sourced, not run).
# UBLK_CSI: the ublk-csi binary (ReadyToRun publish), default ublk-csi on PATH.
# SCENARIO_DIR: scratch directory (tmpfs in the VM), default a fresh mktemp dir.
set -euo pipefail

UBLK_CSI=${UBLK_CSI:-ublk-csi}
SCENARIO_DIR=${SCENARIO_DIR:-$(mktemp -d /tmp/ublk-scenario.XXXXXX)}
STATE_DIR=$SCENARIO_DIR/state
mkdir -p "$STATE_DIR"
SERVER_PIDS=()

log() { echo "[$(date +%H:%M:%S)] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# figure TEXT: a result line the suite summary (guest.sh) collects.
figure() { echo "figure: $*"; }

# median VALUE...: the middle value (of an even count, the lower middle). Benchmarks run each job in
# several interleaved rounds and compare medians: under TCG on a shared host a single 5 s job swings
# 2x when another VM starts or stops, and a median of three is robust to one such swing.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# ratio A B [DECIMALS]: A / B to DECIMALS (default 2) decimals, "n/a" when B is not positive.
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b > 0) printf "%.*f", d, a / b; else print "n/a" }'; }

# BENCH_ROUNDS: how many interleaved rounds the benchmarks run (default 3).
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
# BENCH_EXTRAS=1 adds the benchmarks' pointer measurements (other queue counts, the page-cache mode,
# the copy path beside zero copy) and runs the benchmarks of finished issues ("# extras:" in their
# header; guest.sh skips them otherwise unless they are named). Off by default, which is what CI
# runs: the suite must stay well inside CI's time on a slow TCG host.
BENCH_EXTRAS=${BENCH_EXTRAS:-0}

# fio_checked WHAT LOG FIO-ARGS...: runs fio with its output in LOG; fails naming WHAT (and printing LOG)
# unless fio exits 0 and reports err=0.
fio_checked() {
  local what=$1 out=$2; shift 2
  fio "$@" > "$out" 2>&1 || { cat "$out"; fail "$what: fio failed"; }
  grep -Eq "err= *0" "$out" || { cat "$out"; fail "$what: fio reported errors"; }
}

# fio_bw LOG READ|WRITE: the aggregate bandwidth fio reported for that direction.
fio_bw() { grep -E "^ *$2:" "$1" | sed -E "s/^ *$2: *//; s/,.*//"; }

# start_server NAME ARGS...: runs ublk-csi ARGS in the background, stdout/stderr to $SCENARIO_DIR/NAME.{out,err};
# sets SERVER_PID and DEVICE (the path printed as the first line), waiting up to 120 s.
start_server() {
  local name=$1; shift
  : > "$SCENARIO_DIR/$name.out"
  "$UBLK_CSI" "$@" > "$SCENARIO_DIR/$name.out" 2> "$SCENARIO_DIR/$name.err" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  local waited=0
  while [[ ! -s $SCENARIO_DIR/$name.out ]]; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      cat "$SCENARIO_DIR/$name.err" >&2
      fail "ublk-csi $1 exited before printing a device path"
    fi
    sleep 0.2; waited=$((waited + 1))
    [[ $waited -lt 600 ]] || fail "ublk-csi $1 printed no device path within 120 s"
  done
  DEVICE=$(head -n1 "$SCENARIO_DIR/$name.out")
  [[ $DEVICE == /dev/ublkb* ]] || fail "first line of ublk-csi $1 is '$DEVICE', not a device path"
  for _ in $(seq 50); do [[ -b $DEVICE ]] && break; sleep 0.1; done
  [[ -b $DEVICE ]] || fail "$DEVICE is not a block device"
  DEVICE_ID=${DEVICE#/dev/ublkb}
}

# stop_server PID NAME: SIGTERM, wait, require exit 0, print its stderr.
stop_server() {
  local pid=$1 name=$2 rc=0
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  sed 's/^/  server: /' "$SCENARIO_DIR/$name.err"
  [[ $rc -eq 0 ]] || fail "ublk-csi ($name) exited with $rc after SIGTERM"
}

cleanup_servers() {
  for pid in "${SERVER_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup_servers EXIT

# writes_on DEVICE: write requests the block layer completed on it.
writes_on() { awk '{ print $5 }' "/sys/block/${1#/dev/}/stat"; }

# wait_for_writes DEVICE N: until the block layer has completed N write requests on DEVICE (120 s max),
# so that a crash or handover really happens in the middle of a workload.
wait_for_writes() {
  local writes
  for _ in $(seq 1200); do
    writes=$(writes_on "$1")
    [[ $writes -ge $2 ]] && { log "$writes writes completed on $1"; return 0; }
    sleep 0.1
  done
  fail "fewer than $2 writes completed on $1 within 120 s"
}

# start_s3rver PORT BUCKET: s3rver (tools/s3rver, installed by scripts/setup.sh) on 127.0.0.1:PORT
# with BUCKET created and its data in $SCENARIO_DIR/s3; sets S3RVER_PID and exports s3rver's fixed
# credentials the way production passes credentials: in the environment, never in a spec.
start_s3rver() {
  local port=$1 bucket=$2 repo script
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
  script=$repo/tools/s3rver/node_modules/s3rver/bin/s3rver.js
  [[ -f $script ]] || fail "s3rver is not installed: run scripts/setup.sh (npm ci in tools/s3rver)"
  ip link set lo up 2>/dev/null || true
  mkdir -p "$SCENARIO_DIR/s3"
  node "$script" -d "$SCENARIO_DIR/s3" -a 127.0.0.1 -p "$port" --silent --configure-bucket "$bucket" \
    > "$SCENARIO_DIR/s3rver.log" 2>&1 &
  S3RVER_PID=$!
  SERVER_PIDS+=("$S3RVER_PID")
  for _ in $(seq 600); do
    (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$S3RVER_PID" 2>/dev/null || { cat "$SCENARIO_DIR/s3rver.log"; fail "s3rver exited before listening"; }
    sleep 0.2
  done
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
  log "s3rver listening on 127.0.0.1:$port (pid $S3RVER_PID)"
}

# start_blockstore_server PORT [LOG_NAME]: ublk-blockstore-server ($UBLK_BLOCKSTORE_SERVER) on
# 127.0.0.1:PORT (its NBD data path on PORT+1) over the file-store root $SCENARIO_DIR/blockstore,
# requiring a random token it reads from TOKEN_FILE ($SCENARIO_DIR/token, mode 600, made once per
# scenario so a restarted server accepts the same clients; the token itself in BLOCKSTORE_TOKEN); log
# in $SCENARIO_DIR/LOG_NAME.log (default blockstore). Sets BLOCKSTORE_PID.
start_blockstore_server() {
  local port=$1 log=$SCENARIO_DIR/${2:-blockstore}.log start
  : "${UBLK_BLOCKSTORE_SERVER:?UBLK_BLOCKSTORE_SERVER must point at the published ublk-blockstore-server}"
  ip link set lo up 2>/dev/null || true
  TOKEN_FILE=$SCENARIO_DIR/token
  mkdir -p "$SCENARIO_DIR/blockstore"
  # A restart (same root) keeps the token its clients hold.
  [[ -s $TOKEN_FILE ]] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE")
  BLOCKSTORE_TOKEN=$(cat "$TOKEN_FILE")
  start=$(date +%s%N)
  "$UBLK_BLOCKSTORE_SERVER" --listen "tcp://127.0.0.1:$port" --root "$SCENARIO_DIR/blockstore" --token-file "$TOKEN_FILE" \
    > "$log" 2>&1 &
  BLOCKSTORE_PID=$!
  SERVER_PIDS+=("$BLOCKSTORE_PID")
  for _ in $(seq 600); do
    grep -q "serving volumes of" "$log" && break
    kill -0 "$BLOCKSTORE_PID" 2>/dev/null || { cat "$log"; fail "ublk-blockstore-server exited before serving"; }
    sleep 0.2
  done
  grep -q "serving volumes of" "$log" || { cat "$log"; fail "ublk-blockstore-server did not start within 120 s"; }
  log "block-store server up in $(( ($(date +%s%N) - start) / 1000000 )) ms (pid $BLOCKSTORE_PID)"
}

# list_devices [LIST_OPTION...]: runs `ublk-csi list`; its output (a header line, then a line per
# device) is in the file $DEVICE_LIST. Not for $(...), so that a failure ends the scenario.
# Bounded: the control commands behind it wait for a device that is quiescing, so a device that
# never quiesces fails the scenario here, with the kernel stacks, instead of hanging it.
list_devices() {
  local pid
  DEVICE_LIST=$SCENARIO_DIR/device-list.txt
  "$UBLK_CSI" list "$@" > "$DEVICE_LIST" 2>&1 &
  pid=$!
  wait_bounded "$pid" 120 "ublk-csi list" "/dev/ublkb${LIST_DEVICE_ID:-}"
  wait "$pid" || { cat "$DEVICE_LIST"; fail "ublk-csi list failed"; }
}

# device_state ID [LIST_OPTION...]: sets DEVICE_STATE to the state `ublk-csi list` reports for ublk
# device ID (empty when it lists none), through list_devices (bounded; $DEVICE_LIST has the whole list).
device_state() {
  local id=$1
  shift
  LIST_DEVICE_ID=$id list_devices "$@"
  DEVICE_STATE=$(awk -v id="$id" '$1 == id { print $2 }' "$DEVICE_LIST")
}

# wait_for_state ID STATE WHEN: polls device ID's state in $STATE_DIR for up to 10 s; fails unless it
# reaches STATE, saying what it was WHEN (e.g. "after the crash").
wait_for_state() {
  for _ in $(seq 100); do
    device_state "$1" --state-dir "$STATE_DIR"
    [[ $DEVICE_STATE == "$2" ]] && return
    sleep 0.1
  done
  fail "device $1 is '$DEVICE_STATE' $3, expected $2"
}

# crash_server_under_fio PID DEVICE_ID FIO_PID: once fio has written (500 writes), SIGKILL the server and
# require the device to become QUIESCED (user recovery keeps it, with fio's I/O queued in the kernel).
crash_server_under_fio() {
  local pid=$1 id=$2 fio_pid=$3
  wait_for_writes "/dev/ublkb$id" 500
  kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before the crash; make it longer"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  log "killed the server with SIGKILL while fio was writing"
  wait_for_state "$id" quiesced "after the crash"
  [[ -b /dev/ublkb$id ]] || fail "/dev/ublkb$id disappeared after the crash"
}

# start_nbdkit PORT IMAGE: nbdkit's file plugin serving IMAGE on 127.0.0.1:PORT (a daemon, ready when
# its pid file exists); sets NBDKIT_PID. Used by the nbd scenarios to kill and restart the server.
start_nbdkit() {
  local port=$1 image=$2 pidfile=$SCENARIO_DIR/nbdkit-$1.pid
  command -v nbdkit > /dev/null || fail "nbdkit is not installed (scripts/setup.sh installs it)"
  ip link set lo up 2>/dev/null || true
  rm -f "$pidfile"
  # Output to a file, never the scenario's stdout: the daemon would hold the suite's pipe open.
  nbdkit --pidfile "$pidfile" -i 127.0.0.1 -p "$port" file "$image" >> "$SCENARIO_DIR/nbdkit-$port.log" 2>&1 < /dev/null \
    || { cat "$SCENARIO_DIR/nbdkit-$port.log"; fail "nbdkit did not start on port $port"; }
  for _ in $(seq 200); do [[ -s $pidfile ]] && break; sleep 0.05; done
  [[ -s $pidfile ]] || fail "nbdkit wrote no pid file within 10 s"
  NBDKIT_PID=$(cat "$pidfile")
  SERVER_PIDS+=("$NBDKIT_PID")
}

# blocked_tasks: every task in uninterruptible sleep (state D) with its kernel stack: where a hang in
# the kernel waits (a device that never quiesces shows its worker in ublk_wait_tagset_rqs_idle).
blocked_tasks() {
  local t
  for t in /proc/[0-9]*/task/[0-9]*; do
    [[ $(awk '{ print $3 }' "$t/stat" 2>/dev/null) == D ]] || continue
    echo "--- blocked: task ${t##*/} ($(cat "$t/comm" 2>/dev/null)) of process $(cut -d/ -f3 <<< "$t")"
    cat "$t/stack" 2>/dev/null
  done
}

# wait_bounded PID SECONDS WHAT DEVICE: waits for PID; if it still runs after SECONDS, prints what
# explains a stuck device (the serving processes' logs and kernel stacks, the device's in-flight
# counts, the kernel's messages), kills PID and fails: a hang must end the scenario with evidence,
# not run into the suite's timeout with none.
wait_bounded() {
  local pid=$1 limit=$2 what=$3 device=$4 waited=0 p t
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1; waited=$((waited + 1))
    (( waited < limit )) && continue
    log "$what: still running after ${limit}s; diagnostics follow"
    echo "in flight (read write) on $device: $(cat "/sys/block/${device#/dev/}/inflight" 2>/dev/null)"
    for f in "$SCENARIO_DIR"/*.err; do [[ -s $f ]] && { echo "--- tail of $f"; tail -n 40 "$f"; }; done
    for p in $(pgrep -f "$UBLK_CSI" || true); do
      for t in /proc/"$p"/task/*; do
        [[ $(cat "$t/comm" 2>/dev/null) == @(ublk|nbd|iou)* ]] || continue
        echo "--- $p/${t##*/} $(cat "$t/comm") $(awk '{ print $3 }' "$t/stat" 2>/dev/null)"
        head -n 6 "$t/stack" 2>/dev/null
      done
      # The managed threads' stacks, where the diagnostics tool is installed (not by the setup script).
      local stack_tool
      stack_tool=$(command -v dotnet-stack || echo /root/.dotnet/tools/dotnet-stack)
      [[ -x $stack_tool ]] && { echo "--- managed stacks of $p"; DOTNET_ROOT=${DOTNET_ROOT:-/usr/share/dotnet} timeout 60 "$stack_tool" report -p "$p" 2>&1 | head -n 400; }
    done
    blocked_tasks
    dmesg | tail -n 40
    kill -KILL "$pid" 2>/dev/null || true
    fail "$what did not finish within ${limit}s"
  done
}

# nbdkit_fault_under_fio NAME PORT IMAGE OUTAGE MIN_WRITES DEVICE FIO_ARGS...: fio (output in
# NAME.txt) runs on DEVICE; once MIN_WRITES writes have completed nbdkit is SIGKILLed, and restarted
# OUTAGE seconds later; fio must then end with status 0 and err=0 (every block verified).
nbdkit_fault_under_fio() {
  local name=$1 port=$2 image=$3 outage=$4 min_writes=$5 device=$6; shift 6
  fio --name="$name" --filename="$device" "$@" > "$SCENARIO_DIR/$name.txt" 2>&1 &
  local fio_pid=$! fio_rc=0
  FIO_PIDS+=("$fio_pid")
  wait_for_writes "$device" "$min_writes"
  kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before the fault; make it longer"
  kill -KILL "$NBDKIT_PID"
  log "killed nbdkit (SIGKILL) under fio; restarting it in $outage s"
  sleep "$outage"
  start_nbdkit "$port" "$image"
  log "nbdkit restarted (pid $NBDKIT_PID)"
  wait_bounded "$fio_pid" "${FAULT_FIO_LIMIT:-120}" "fio on $device after nbdkit's restart" "$device"
  wait "$fio_pid" || fio_rc=$?
  grep -E "^ *(READ|WRITE):|err=" "$SCENARIO_DIR/$name.txt"
  [[ $fio_rc -eq 0 ]] || { cat "$SCENARIO_DIR/$name.txt"; fail "fio exited with $fio_rc across the nbdkit restart"; }
  grep -Eq "err= *0" "$SCENARIO_DIR/$name.txt" || fail "fio reported I/O or verify errors on $device"
}

FIO_PIDS=()
# keep_scenario_files: on exit, copy the scenario's logs to the host ($UBLK_VM_OUT/SCENARIO/), kill
# what it started (with the node plugin's mounts when _node.sh is sourced) and disconnect /dev/nbd0,
# so a failure can be read and never leaves the suite stuck.
keep_scenario_files() {
  trap 'rc=$?; for p in "${FIO_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
        if declare -F cleanup_node > /dev/null; then cleanup_node; else cleanup_servers; fi; nbd-client -d /dev/nbd0 > /dev/null 2>&1 || true
        if [[ -n ${UBLK_VM_OUT:-} ]]; then d=$UBLK_VM_OUT/$(basename "$0" .sh); mkdir -p "$d"
          cp "$SCENARIO_DIR"/*.txt "$SCENARIO_DIR"/*.log "$SCENARIO_DIR"/*.err "$SCENARIO_DIR"/*.json "$d"/ 2>/dev/null || true; fi
        exit $rc' EXIT
}

# recover_under_fio STORE FIO_PID: adopts device $DEVICE_ID in a new `ublk-csi recover` server (name
# "second"; sets SERVER_PID and DEVICE), prints how long it took as a figure, then requires the fio
# that ran across the crash ($SCENARIO_DIR/fio.txt) to exit 0 with err=0 (its crc32c verify passed).
recover_under_fio() {
  local store=$1 fio_pid=$2 start fio_rc=0
  start=$(date +%s%N)
  start_server second recover "$DEVICE_ID" --state-dir "$STATE_DIR"
  figure "$store: recovered $DEVICE in $(( ($(date +%s%N) - start) / 1000000 )) ms after kill -9 (process start included)"
  wait "$fio_pid" || fio_rc=$?
  grep -E "^ *(READ|WRITE):|err=" "$SCENARIO_DIR/fio.txt"
  [[ $fio_rc -eq 0 ]] || { cat "$SCENARIO_DIR/fio.txt"; fail "fio exited with $fio_rc across the crash"; }
  grep -Eq "err= *0" "$SCENARIO_DIR/fio.txt" || fail "fio reported I/O or verify errors"
}
