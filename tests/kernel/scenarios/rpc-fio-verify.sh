#!/usr/bin/env bash
# An rpc-store device: ublk-blockstore-server on loopback (token auth on) serves a file-store root,
# `ublk-csi attach --store rpc://127.0.0.1:PORT/VOLUME` makes it /dev/ublkbN, fio writes it on 2
# queues with crc32c verification (zero errors). Then the block-store server is killed (SIGKILL) and
# restarted while fio writes with crc32c verification: the data path reconnects with the tickets it
# holds and sends its unanswered requests again, and fio ends with no error. Then the device is
# detached, attached again from the server, and fio verifies that everything it wrote came back.
source "$(dirname "$0")/_lib.sh"

port=9400
start_blockstore_server "$port"
token_file=$TOKEN_FILE
blockstore_pid=$BLOCKSTORE_PID

# retry-attempts=30 (about 49 s of retries, the default is 15, about 19 s): the block-store server
# restarted below under fio took up to 24 s to listen in the loaded 2-vCPU VM (under 1 s natively).
spec="rpc://127.0.0.1:$port/pvc-rpc-fio?token-file=$token_file&retry-attempts=30"
start_server rpc attach --store "$spec" --size 256M --queues 2 --depth 32 --state-dir "$STATE_DIR" --stats
log "rpc device $DEVICE"
list_devices --state-dir "$STATE_DIR"
grep -E "^$DEVICE_ID " "$DEVICE_LIST" | grep -q "rpc://127.0.0.1:$port/pvc-rpc-fio" \
  || fail "list does not show the rpc spec of device $DEVICE_ID"
grep -q "$(cat "$token_file")" "$STATE_DIR"/*.json && fail "the token leaked into the recovery record"

# Random writes of mixed sizes on 2 jobs (one per queue), every block verified with crc32c.
fio_checked "fio verify on the rpc device" "$SCENARIO_DIR/fio-verify.txt" \
    --name=rpc-verify --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite \
    --bssplit=4k/50:64k/30:256k/20 --iodepth=16 --numjobs=2 --offset_increment=128M --size=12M \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting
grep -E "^ *(READ|WRITE):" "$SCENARIO_DIR/fio-verify.txt"
figure "rpc randwrite+verify: $(fio_bw "$SCENARIO_DIR/fio-verify.txt" WRITE)"

# The server dies under writes and comes back on the same ports, root and token within a second.
fio --name=rpc-fault --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bs=64k --iodepth=16 \
    --numjobs=2 --offset_increment=64M --size=48M --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --group_reporting > "$SCENARIO_DIR/fio-fault.txt" 2>&1 &
fault_fio=$!
FIO_PIDS+=("$fault_fio")
wait_for_writes "$DEVICE" "$(( $(awk '{ print $5 }' "/sys/block/${DEVICE#/dev/}/stat") + 300 ))"
kill -0 "$fault_fio" 2>/dev/null || fail "fio finished before the server was killed; make it longer"
kill -KILL "$blockstore_pid"
wait "$blockstore_pid" 2>/dev/null || true
killed=$(date +%s%N)
log "killed the block-store server (SIGKILL) under fio; restarting it in 1 s"
sleep 1
start_blockstore_server "$port" blockstore-restarted
blockstore_pid=$BLOCKSTORE_PID
wait_bounded "$fault_fio" 180 "fio across the server restart" "$DEVICE"
rc=0; wait "$fault_fio" || rc=$?
[[ $rc -eq 0 ]] && grep -Eq "err= *0" "$SCENARIO_DIR/fio-fault.txt" || { cat "$SCENARIO_DIR/fio-fault.txt"; fail "fio failed across the server restart (rc $rc)"; }
grep -E "reconnected|lost" "$SCENARIO_DIR/rpc.err" | tail -n 3 || true
figure "rpc: block-store server SIGKILLed under fio randwrite+crc32c verify and restarted after 1 s: err=0, verify passed (fio finished $(( ($(date +%s%N) - killed) / 1000000 )) ms after the kill)"

# A sequential pattern, then detach: the data must come back from the server into a new device.
fio_checked "sequential write on the rpc device" "$SCENARIO_DIR/fio-write.txt" \
    --name=rpc-persist --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=4 \
    --offset=192M --size=16M --verify=crc32c --do_verify=0 --fsync_on_close=1
figure "rpc seq write 1M: $(fio_bw "$SCENARIO_DIR/fio-write.txt" WRITE)"
stop_server "$SERVER_PID" rpc
[[ ! -e $DEVICE ]] || fail "$DEVICE still exists after SIGTERM"

start_server again attach --store "$spec" --queues 2 --state-dir "$STATE_DIR"
log "reattached the volume as $DEVICE"
fio_checked "re-verify after reattaching of the data written before the detach" "$SCENARIO_DIR/fio-reverify.txt" \
    --name=rpc-persist --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=4 \
    --offset=192M --size=16M --verify=crc32c --verify_only --verify_fatal=1
stop_server "$SERVER_PID" again

kill -TERM "$blockstore_pid"
rc=0
wait "$blockstore_pid" || rc=$?
sed 's/^/  blockstore: /' "$SCENARIO_DIR/blockstore-restarted.log" | grep -Ev "rpc .* OK in" | tail -n 5
[[ $rc -eq 0 ]] || fail "ublk-blockstore-server exited with $rc after SIGTERM"
grep -q "stopped; open volumes flushed and closed" "$SCENARIO_DIR/blockstore-restarted.log" || fail "the block-store server did not stop gracefully"
grep -q "$(cat "$token_file")" "$SCENARIO_DIR"/blockstore*.log && fail "the token appears in the server log"
log "PASS rpc-fio-verify"
