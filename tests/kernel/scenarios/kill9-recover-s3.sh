#!/usr/bin/env bash
# kill -9 the server of an s3-store device while fio writes, adopt the device with `ublk-csi
# recover` (same node, same cache directory: the new process adopts the write-back cache the dead one
# left), and require fio's crc32c verification of everything written to pass with zero errors. Then
# detach (flush to the bucket) and verify again from the bucket alone, with an empty cache.
source "$(dirname "$0")/_lib.sh"

port=9501
start_s3rver "$port" ublk-crash
volume="s3://ublk-crash/pvcs/pvc-crash?endpoint=http://127.0.0.1:$port&region=us-east-1&path-style=true&chunk-size=1Mi"
start_server first attach --store "$volume&cache-dir=$SCENARIO_DIR/cache" --size 256M --queues 2 --state-dir "$STATE_DIR"
first_pid=$SERVER_PID
log "serving $DEVICE from $volume (pid $first_pid)"

fio_job=(--name=crash --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16
         --numjobs=2 --offset_increment=128M --size=24M --verify=crc32c --verify_fatal=1 --group_reporting)
fio "${fio_job[@]}" --do_verify=1 > "$SCENARIO_DIR/fio.txt" 2>&1 &
fio_pid=$!
crash_server_under_fio "$first_pid" "$DEVICE_ID" "$fio_pid"

recover_under_fio s3 "$fio_pid"
stop_server "$SERVER_PID" second

# Everything fio wrote, before and after the crash, must now be in the bucket.
rm -rf "$SCENARIO_DIR/cache"
start_server third attach --store "$volume&cache-dir=$SCENARIO_DIR/cache-empty" --queues 2 --state-dir "$STATE_DIR"
fio "${fio_job[@]}" --filename="$DEVICE" --verify_only > "$SCENARIO_DIR/fio-reverify.txt" 2>&1 \
  || { cat "$SCENARIO_DIR/fio-reverify.txt"; fail "data written across the crash did not verify from the bucket"; }
grep -Eq "err= *0" "$SCENARIO_DIR/fio-reverify.txt" || { cat "$SCENARIO_DIR/fio-reverify.txt"; fail "fio re-verify reported errors"; }
log "re-verified from the bucket with an empty cache"
stop_server "$SERVER_PID" third
log "PASS kill9-recover-s3"
