#!/usr/bin/env bash
# The nbd store's promise, against the kernel's own NBD client under the same fault. nbdkit (file
# plugin) serves a sparse image on loopback; `ublk-csi attach --store nbd://127.0.0.1:PORT/` makes it
# /dev/ublkbN; fio writes with crc32c verification on 2 queues while nbdkit is killed (SIGKILL) and
# restarted 2 s later: the store reconnects and sends the requests in flight again, so fio must
# finish with err=0 and every block verified. Then the same workload and fault on /dev/nbd0 through
# nbd-client (bounded with -timeout so the suite cannot hang); its outcome is printed, not required.
source "$(dirname "$0")/_lib.sh"
keep_scenario_files

outage=2
ublk_port=10809
image=$SCENARIO_DIR/ublk.img
truncate -s 256M "$image"
start_nbdkit "$ublk_port" "$image"
log "nbdkit serving $image on 127.0.0.1:$ublk_port (pid $NBDKIT_PID)"

start_server nbd attach --store "nbd://127.0.0.1:$ublk_port/" --queues 2 --depth 32 --state-dir "$STATE_DIR"
log "nbd device $DEVICE"
list_devices --state-dir "$STATE_DIR"
grep -E "^$DEVICE_ID " "$DEVICE_LIST" | grep -q "nbd://127.0.0.1:$ublk_port/" \
  || fail "list does not show the nbd spec of device $DEVICE_ID"

fio_args=(--direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 --numjobs=2 --offset_increment=128M
          --size=24M --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting)
nbdkit_fault_under_fio fio-ublk "$ublk_port" "$image" "$outage" 500 "$DEVICE" "${fio_args[@]}"
figure "nbd store (ublk): nbdkit SIGKILLed and restarted after ${outage}s under fio randwrite+crc32c verify: err=0, verify passed"
stop_server "$SERVER_PID" nbd
kill -TERM "$NBDKIT_PID" 2>/dev/null || true

# ---- the kernel's NBD client, same export type, same fault
if ! command -v nbd-client > /dev/null; then
  figure "kernel nbd-client: not installed, comparison skipped (scripts/setup.sh installs nbd-client)"
  log "PASS nbd-store-fault (kernel comparison skipped)"
  exit 0
fi
[[ -b /dev/nbd0 ]] || modprobe nbd 2>/dev/null || true
if [[ ! -b /dev/nbd0 ]]; then
  figure "kernel nbd-client: no nbd driver in this kernel (/dev/nbd0 missing), comparison skipped"
  log "PASS nbd-store-fault (kernel comparison skipped)"
  exit 0
fi
kernel_port=10810
kimage=$SCENARIO_DIR/kernel.img
truncate -s 256M "$kimage"
start_nbdkit "$kernel_port" "$kimage"
nbd_timeout=10
nbd-client 127.0.0.1 "$kernel_port" /dev/nbd0 -N disk -timeout "$nbd_timeout" > "$SCENARIO_DIR/nbd-client.log" 2>&1 \
  || { cat "$SCENARIO_DIR/nbd-client.log"; fail "nbd-client could not connect"; }
for _ in $(seq 50); do [[ $(cat /sys/block/nbd0/size) -gt 0 ]] && break; sleep 0.1; done
fio --name=nbd-fault --filename=/dev/nbd0 "${fio_args[@]}" > "$SCENARIO_DIR/fio-kernel.txt" 2>&1 &
kfio_pid=$!
FIO_PIDS+=("$kfio_pid")
wait_for_writes /dev/nbd0 500
kill -KILL "$NBDKIT_PID"
log "killed nbdkit under fio on /dev/nbd0 (nbd-client -timeout $nbd_timeout); restarting it in $outage s"
start=$(date +%s)
sleep "$outage"
start_nbdkit "$kernel_port" "$kimage"
# Bounded: the kernel client either fails the I/O (timeout) or fio is killed after 120 s.
for _ in $(seq 1200); do kill -0 "$kfio_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$kfio_pid" 2>/dev/null; then
  kill -KILL "$kfio_pid" 2>/dev/null || true
  outcome="fio still blocked after $(( $(date +%s) - start )) s, killed"
else
  kfio_rc=0
  wait "$kfio_pid" || kfio_rc=$?
  errors=$(grep -Eo "err= *[0-9]+[^)]*\)?" "$SCENARIO_DIR/fio-kernel.txt" | head -1)
  outcome="fio exited $kfio_rc after $(( $(date +%s) - start )) s: ${errors:-no err= line} ($(grep -c "Input/output error" "$SCENARIO_DIR/fio-kernel.txt") I/O error lines)"
fi
grep -E "err=|error" "$SCENARIO_DIR/fio-kernel.txt" | head -5 || true
figure "kernel nbd-client (-timeout $nbd_timeout): same fault: $outcome"
nbd-client -d /dev/nbd0 > /dev/null 2>&1 || true
kill -TERM "$NBDKIT_PID" 2>/dev/null || true
log "PASS nbd-store-fault"
