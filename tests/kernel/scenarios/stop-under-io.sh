#!/usr/bin/env bash
# Stopping a device while fio has I/O in flight: the server exits promptly (SIGTERM -> STOP_DEV,
# drain, DEL_DEV), every request fio had issued completes or fails (fio ends, it never hangs), and
# neither /dev/ublkbN nor /dev/ublkcN is left behind. Done for a fast store (memory) and for a slow
# one (a file store under heavy random writes).
source "$(dirname "$0")/_lib.sh"

for store in memory "file:$SCENARIO_DIR/volume.img"; do
  start_server stop attach --store "$store" --size 256M --queues 2 --state-dir "$STATE_DIR" --no-recovery
  fio --name=inflight --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randrw --bs=4k-256k --iodepth=64 \
      --numjobs=2 --time_based --runtime=300 > "$SCENARIO_DIR/fio.txt" 2>&1 &
  fio_pid=$!
  wait_for_writes "$DEVICE" 500
  inflight=$(awk '{ print $9 }' "/sys/block/${DEVICE#/dev/}/stat")
  start=$(date +%s%N)
  kill -TERM "$SERVER_PID"
  rc=0
  timeout 120 tail --pid="$SERVER_PID" -f /dev/null || fail "server for $store did not exit within 120 s of SIGTERM"
  wait "$SERVER_PID" || rc=$?
  stopped_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  [[ $rc -eq 0 ]] || { cat "$SCENARIO_DIR/stop.err"; fail "server for $store exited with $rc"; }
  timeout 120 tail --pid="$fio_pid" -f /dev/null || fail "fio on $store still running 120 s after the device stopped (hung I/O)"
  wait "$fio_pid" || true   # fio reports the I/O that failed because the device went away
  figure "$store: stopped with $inflight requests in flight in ${stopped_ms} ms; fio ended: $(grep -Eo 'err= *[0-9]+' "$SCENARIO_DIR/fio.txt" | head -1 || echo 'no err line')"
  for _ in $(seq 50); do compgen -G '/dev/ublk[bc]*' > /dev/null || break; sleep 0.1; done
  ! compgen -G '/dev/ublk[bc]*' > /dev/null || fail "left behind after stopping $store: $(echo /dev/ublk[bc]*)"
done
log "PASS stop-under-io"
