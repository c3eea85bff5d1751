#!/usr/bin/env bash
# fio with crc32c verification over 2 queues (memory store), then a null-store run whose queue
# threads must not allocate per request (the engine's hot path is allocation-free).
source "$(dirname "$0")/_lib.sh"

start_server mem attach --store memory --size 512M --queues 2 --depth 64 --state-dir "$STATE_DIR" --stats
log "memory device $DEVICE"
fio --name=verify --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bssplit=4k/50:64k/30:256k/20 \
    --iodepth=32 --numjobs=2 --offset_increment=256M --size=64M --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --group_reporting --output-format=normal > "$SCENARIO_DIR/fio-verify.txt" 2>&1 \
  || { cat "$SCENARIO_DIR/fio-verify.txt"; fail "fio verify failed"; }
grep -E "err= *0" "$SCENARIO_DIR/fio-verify.txt" > /dev/null || { cat "$SCENARIO_DIR/fio-verify.txt"; fail "fio reported errors"; }
grep -E "^ *(READ|WRITE):" "$SCENARIO_DIR/fio-verify.txt"
stop_server "$SERVER_PID" mem
for q in 0 1; do
  grep -Eq "queue $q requests=[1-9]" "$SCENARIO_DIR/mem.err" || fail "queue $q served no requests"
done

# The same verification with per-tag buffers (no USER_COPY), the path of kernels before 6.5.
start_server percopy attach --store memory --size 256M --queues 2 --depth 32 --max-io 256K --no-user-copy --state-dir "$STATE_DIR"
grep -q "UserCopy" "$SCENARIO_DIR/percopy.err" && fail "--no-user-copy still negotiated USER_COPY"
fio --name=verify-buffers --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bssplit=4k/50:64k/30:256k/20 \
    --iodepth=16 --numjobs=2 --offset_increment=128M --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --group_reporting > "$SCENARIO_DIR/fio-buffers.txt" 2>&1 || { cat "$SCENARIO_DIR/fio-buffers.txt"; fail "fio verify without USER_COPY failed"; }
grep -E "^ *(READ|WRITE):" "$SCENARIO_DIR/fio-buffers.txt"
stop_server "$SERVER_PID" percopy

# Null store: the backend allocates nothing, so whatever the queue threads allocate is the engine's.
start_server null attach --store null --size 1G --queues 2 --state-dir "$STATE_DIR" --stats
log "null device $DEVICE"
fio --name=alloc --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randrw --bs=4k --iodepth=32 --numjobs=2 \
    --number_ios=20000 --group_reporting > "$SCENARIO_DIR/fio-null.txt" 2>&1 || { cat "$SCENARIO_DIR/fio-null.txt"; fail "fio on null failed"; }
grep -E "^ *(READ|WRITE):" "$SCENARIO_DIR/fio-null.txt"
stop_server "$SERVER_PID" null
totals=$(sed -nE 's/.*queue [0-9]+ requests=([0-9]+) .*thread_allocated_bytes=([0-9]+).*/\1 \2/p' "$SCENARIO_DIR/null.err" \
  | awk '{ r += $1; b += $2 } END { print r + 0, b + 0 }')
total_requests=${totals% *} total_bytes=${totals#* }
log "null store: $total_requests requests, queue threads allocated $total_bytes bytes"
[[ $total_requests -ge 40000 ]] || fail "expected at least 40000 requests, saw $total_requests"
# A fixed warm-up cost (first buffer rentals) is allowed; per-request allocation is not: 40000 requests
# at even 8 bytes each would be 320000 bytes.
[[ $total_bytes -lt 65536 ]] || fail "queue threads allocated $total_bytes bytes for $total_requests requests"
log "PASS fio-verify-2queues"
