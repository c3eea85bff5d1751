#!/usr/bin/env bash
# kill -9 the server of a file-store device while fio writes, adopt the device with `ublk-csi
# recover`, and require fio (crc32c verification of everything written) to finish without errors.
source "$(dirname "$0")/_lib.sh"

image=$SCENARIO_DIR/volume.img
start_server first attach --store "file:$image" --size 256M --queues 2 --state-dir "$STATE_DIR"
first_pid=$SERVER_PID
log "serving $DEVICE from $image (pid $first_pid)"

# A second writer of the image (the operator tool here; another device or plugin process alike) is refused.
if out=$("$UBLK_CSI" attach --store "file:$image?writer-wait=1" --state-dir "$STATE_DIR" 2>&1); then
  fail "a second writer of $image was attached: $out"
fi
[[ $out == *"is already open for writing on this node"* ]] || fail "unclear refusal of a second writer: $out"
log "a second writer of the image is refused: $out"

fio --name=crash --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
    --numjobs=2 --offset_increment=128M --size=48M --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --group_reporting > "$SCENARIO_DIR/fio.txt" 2>&1 &
fio_pid=$!
crash_server_under_fio "$first_pid" "$DEVICE_ID" "$fio_pid"

# A wrong backend is refused before the kernel state is touched, and the device stays adoptable.
truncate -s 64M "$SCENARIO_DIR/other.img"
if out=$("$UBLK_CSI" recover "$DEVICE_ID" --state-dir "$STATE_DIR" --store "file:$SCENARIO_DIR/other.img" 2>&1); then
  fail "recover with a 64M image for a 256M device succeeded"
fi
# (the file store or the engine may be the one to notice; either way both sizes are named)
[[ $(echo "$out" | wc -l) -eq 1 && $out == *268435456* && $out == *67108864* ]] || fail "unclear error for a wrong-size backend: $out"

start=$(date +%s%N)
start_server second recover "$DEVICE_ID" --state-dir "$STATE_DIR"
log "recovered $DEVICE in $(( ($(date +%s%N) - start) / 1000000 )) ms (process start included)"

fio_rc=0
wait "$fio_pid" || fio_rc=$?
grep -E "^ *(READ|WRITE):|err=" "$SCENARIO_DIR/fio.txt"
[[ $fio_rc -eq 0 ]] || { cat "$SCENARIO_DIR/fio.txt"; fail "fio exited with $fio_rc across the crash"; }
grep -Eq "err= *0" "$SCENARIO_DIR/fio.txt" || fail "fio reported I/O or verify errors"

stop_server "$SERVER_PID" second
[[ ! -e $DEVICE ]] || fail "$DEVICE still exists after SIGTERM"
log "PASS kill9-recover-file"
