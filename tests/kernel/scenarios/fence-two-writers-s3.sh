#!/usr/bin/env bash
# Single-writer fencing on s3: writer A (`ublk-csi attach`, its own cache directory, as on one node)
# runs fio randwrite with crc32c verify and an fsync every 8 writes; writer B attaches the same volume
# (another cache directory, as on a second node after a force-detach) and writes a known pattern. B's
# open takes a newer writer generation, so A's next FLUSH fails with EIO and A's later writes too: fio
# on A must end with I/O errors within 60 s (never hang). After both detach, a fresh attach with an
# empty cache reads B's pattern back intact. Prints what A saw.
source "$(dirname "$0")/_lib.sh"
keep_scenario_files

port=9502
start_s3rver "$port" ublk-fence
volume="s3://ublk-fence/pvcs/pvc-fence?endpoint=http://127.0.0.1:$port&region=us-east-1&path-style=true&chunk-size=1Mi"

mkdir -p "$SCENARIO_DIR/state-a" "$SCENARIO_DIR/state-b"
start_server writer-a attach --store "$volume&cache-dir=$SCENARIO_DIR/cache-a" --size 64M --queues 1 --state-dir "$SCENARIO_DIR/state-a"
pid_a=$SERVER_PID device_a=$DEVICE
log "writer A serves $device_a (pid $pid_a)"

fio --name=writer-a --filename="$device_a" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=8 \
    --size=16M --loops=1000 --fsync=8 --verify=crc32c --verify_fatal=1 --do_verify=1 \
    > "$SCENARIO_DIR/fio-a.txt" 2>&1 &
fio_a=$!
FIO_PIDS+=("$fio_a")
wait_for_writes "$device_a" 200
kill -0 "$fio_a" 2>/dev/null || { cat "$SCENARIO_DIR/fio-a.txt"; fail "fio on writer A ended before writer B attached"; }

# Writer B: the same volume from another cache directory, a known pattern at 32 MiB (outside A's 16 MiB).
head -c 4M /dev/urandom > "$SCENARIO_DIR/pattern"
start_server writer-b attach --store "$volume&cache-dir=$SCENARIO_DIR/cache-b" --queues 1 --state-dir "$SCENARIO_DIR/state-b"
pid_b=$SERVER_PID device_b=$DEVICE
fenced_at=$(date +%s%N)
log "writer B serves $device_b (pid $pid_b): it holds the newer writer generation"
dd if="$SCENARIO_DIR/pattern" of="$device_b" bs=1M seek=32 oflag=direct conv=fsync status=none \
  || fail "writer B could not write its pattern"

# A must see errors and end, not hang.
for _ in $(seq 600); do kill -0 "$fio_a" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$fio_a" 2>/dev/null; then
  cat "$SCENARIO_DIR/fio-a.txt"
  fail "fio on writer A still runs 60 s after writer B took the volume: A is not fenced"
fi
rc_a=0
wait "$fio_a" || rc_a=$?
figure "s3 fencing: fio on writer A ended $(( ($(date +%s%N) - fenced_at) / 1000000 )) ms after writer B attached, exit $rc_a"
log "what writer A saw:"
grep -Eio "(fio: .*|.*error.*|.*err=.*)" "$SCENARIO_DIR/fio-a.txt" | head -n 5 | sed 's/^/  fio: /'
grep -i "opened for writing elsewhere" "$SCENARIO_DIR/writer-a.err" | head -n 2 | sed 's/^/  server: /' || true
dmesg | grep -E "ublkb${device_a#/dev/ublkb}\b" | tail -n 3 | sed 's/^/  kernel: /' || true
[[ $rc_a -ne 0 ]] || fail "fio on writer A exited 0: the older writer saw no error"
grep -Eq "Input/output error|error=|err= *[1-9]" "$SCENARIO_DIR/fio-a.txt" \
  || { cat "$SCENARIO_DIR/fio-a.txt"; fail "fio on writer A failed without an I/O error"; }

# A write on A after the fence fails at once too.
if dd if=/dev/zero of="$device_a" bs=4k count=1 seek=40 oflag=direct conv=fsync status=none 2>/dev/null; then
  fail "a write + fsync on writer A succeeded after writer B took the volume"
fi

stop_server "$pid_a" writer-a
stop_server "$pid_b" writer-b

# A fresh attach with an empty cache reads B's pattern from the bucket.
start_server fresh attach --store "$volume&cache-dir=$SCENARIO_DIR/cache-c" --queues 1 --state-dir "$STATE_DIR"
dd if="$DEVICE" bs=1M skip=32 count=4 iflag=direct status=none | cmp - "$SCENARIO_DIR/pattern" \
  || fail "writer B's pattern did not come back intact from the bucket"
log "writer B's 4 MiB pattern read back intact with an empty cache"
stop_server "$SERVER_PID" fresh
log "PASS fence-two-writers-s3"
