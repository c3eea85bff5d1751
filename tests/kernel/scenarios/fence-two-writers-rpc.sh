#!/usr/bin/env bash
# Single writer on the rpc data path: writer A (`ublk-csi attach` of a token-protected rpc volume) runs
# fio randwrite with crc32c verify; writer B attaches the same volume, which takes the server's writer
# lease. A's next write is refused by the server (EPERM on the NBD data path, EIO on A's device): A's fio must
# end with I/O errors, promptly, never hang and never overwrite B. B writes a known pattern and verifies
# it; after both detach, a fresh attach reads B's pattern back intact.
source "$(dirname "$0")/_lib.sh"
keep_scenario_files

port=9403
start_blockstore_server "$port"
spec="rpc://127.0.0.1:$port/pvc-fence?token-file=$TOKEN_FILE"
region=(--offset=0 --size=8M)

start_server a attach --store "$spec" --size 64M --state-dir "$STATE_DIR"
pid_a=$SERVER_PID device_a=$DEVICE
# A writes the region B will write: any write of A that lands after B's open would break B's verify.
# time_based (verifying what it just wrote as it goes): A must still be writing when B takes over however
# slow the machine is; without fencing it would write on for 600 s, which fails this scenario below.
fio --name=a --filename="$device_a" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=8 "${region[@]}" \
  --time_based --runtime=600 --verify=crc32c --verify_backlog=64 --verify_state_save=0 > "$SCENARIO_DIR/fio-a.txt" 2>&1 &
fio_a=$!
FIO_PIDS+=("$fio_a")
wait_for_writes "$device_a" 200

# B's OpenVolume takes the lease before its attach prints the device, so A may already have failed by
# the time start_server returns: what counts is that A was writing when B began and ends with EIO.
kill -0 "$fio_a" 2>/dev/null || { cat "$SCENARIO_DIR/fio-a.txt"; fail "writer A's fio ended before B began to attach: it proves nothing"; }
taken=$(date +%s%N)
start_server b attach --store "$spec" --state-dir "$STATE_DIR"
pid_b=$SERVER_PID device_b=$DEVICE
log "writer B attached $device_b; A ($device_a) $(kill -0 "$fio_a" 2>/dev/null && echo "still running" || echo "already stopped")"

fio_a_rc=0
for _ in $(seq 300); do kill -0 "$fio_a" 2>/dev/null || break; sleep 0.1; done
kill -0 "$fio_a" 2>/dev/null && fail "writer A's fio still runs 30 s after B took the volume over (hung or not fenced)"
wait "$fio_a" || fio_a_rc=$?
a_ms=$(( ($(date +%s%N) - taken) / 1000000 ))
grep -E "err=|error" "$SCENARIO_DIR/fio-a.txt" | head -5 | sed 's/^/  A: /' || true
[[ $fio_a_rc -ne 0 ]] || { cat "$SCENARIO_DIR/fio-a.txt"; fail "writer A's fio exited 0 after B took the volume over"; }
grep -q "Input/output error" "$SCENARIO_DIR/fio-a.txt" || { cat "$SCENARIO_DIR/fio-a.txt"; fail "writer A's fio did not report EIO"; }
figure "rpc fencing: writer A's fio ended with EIO (exit $fio_a_rc) ${a_ms} ms after writer B began to attach"
grep -c "opened for writing, writer generation" "$SCENARIO_DIR/blockstore.log" | grep -qx 2 \
  || { cat "$SCENARIO_DIR/blockstore.log"; fail "the server did not log two writer leases"; }

# No --filename in the job: fio keeps the first one given, so each run names its own device.
b_job=(--name=b --direct=1 --ioengine=libaio --rw=write --bs=64k --iodepth=4 "${region[@]}" --verify=crc32c --verify_fatal=1
       --verify_state_save=0)
fio_checked "writer B's pattern" "$SCENARIO_DIR/fio-b.txt" "${b_job[@]}" --filename="$device_b" --do_verify=1

# A's own shutdown flush is refused too (it was taken over), so only its exit is required, not its status.
kill -TERM "$pid_a"
rc_a=0; wait "$pid_a" || rc_a=$?
log "writer A detached (exit $rc_a)"
grep -h "opened for writing elsewhere" "$SCENARIO_DIR/a.err" | head -2 | sed 's/^/  A: /' || true
stop_server "$pid_b" b

start_server c attach --store "$spec" --state-dir "$STATE_DIR"
fio_checked "B's pattern read back by a fresh attach" "$SCENARIO_DIR/fio-c.txt" "${b_job[@]}" --filename="$DEVICE" --verify_only
stop_server "$SERVER_PID" c
grep -q "$(cat "$TOKEN_FILE")" "$SCENARIO_DIR/blockstore.log" && fail "the token appears in the server log"
log "PASS fence-two-writers-rpc"
