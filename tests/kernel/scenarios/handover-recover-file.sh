#!/usr/bin/env bash
# Planned handover: SIGTERM an `attach --keep-on-exit` while fio writes; the device stays (QUIESCED,
# I/O waits), `recover` adopts it, and fio's crc32c verification must pass without errors.
source "$(dirname "$0")/_lib.sh"

image=$SCENARIO_DIR/volume.img
start_server first attach --store "file:$image" --size 128M --queues 2 --keep-on-exit --state-dir "$STATE_DIR"
first_pid=$SERVER_PID
log "serving $DEVICE (pid $first_pid)"

fio --name=handover --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bs=8k --iodepth=8 \
    --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 > "$SCENARIO_DIR/fio.txt" 2>&1 &
fio_pid=$!
wait_for_writes "$DEVICE" 500
kill -0 "$fio_pid" 2>/dev/null || { cat "$SCENARIO_DIR/fio.txt"; fail "fio finished before the handover"; }
stop_server "$first_pid" first
grep -q "left $DEVICE for 'ublk-csi recover $DEVICE_ID'" "$SCENARIO_DIR/first.err" || fail "attach did not leave the device"
"$UBLK_CSI" list --state-dir "$STATE_DIR" | grep -Eq "^$DEVICE_ID +quiesced" || fail "device $DEVICE_ID is not quiesced after the handover"
[[ -f $STATE_DIR/ublk$DEVICE_ID.json ]] || fail "the recovery record is gone"

start_server second recover "$DEVICE_ID" --state-dir "$STATE_DIR" --stats
log "adopted $DEVICE"
fio_rc=0
wait "$fio_pid" || fio_rc=$?
grep -E "^ *(READ|WRITE):|err=" "$SCENARIO_DIR/fio.txt"
[[ $fio_rc -eq 0 ]] || { cat "$SCENARIO_DIR/fio.txt"; fail "fio exited with $fio_rc across the handover"; }
grep -Eq "err= *0" "$SCENARIO_DIR/fio.txt" || fail "fio reported errors"
stop_server "$SERVER_PID" second
grep -Eq "writes=[1-9]" "$SCENARIO_DIR/second.err" || fail "the adopting server served no writes"
log "PASS handover-recover-file"
