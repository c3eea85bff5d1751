#!/usr/bin/env bash
# Planned handovers in a row: SIGTERM an `attach --keep-on-exit`, then each adopting `recover` in
# turn, while fio writes with crc32c verify; each time the device stays (QUIESCED, I/O waits) and the
# next `recover` adopts it. After every handover the device must answer control commands: a request
# the kernel delivered to a queue thread whose ring was already closing belonged to nobody, so the
# device never quiesced and `list` hung (6.12, about one handover in two under writes, before the
# engine closed rings only after their threads exited). fio must end with err=0 and its verify pass.
source "$(dirname "$0")/_lib.sh"
keep_scenario_files

handovers=6
image=$SCENARIO_DIR/volume.img
start_server s0 attach --store "file:$image" --size 256M --queues 2 --keep-on-exit --state-dir "$STATE_DIR"
log "serving $DEVICE (pid $SERVER_PID)"

# Requests keep arriving while a server exits (about two per millisecond); paced so that the writes
# outlast the handovers, each of which lets ~2000 through (the SIGTERMed server drains and exits
# while fio writes; the device is quiesced only from then until the next server has adopted it).
fio --name=handover --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bs=8k --iodepth=8 \
    --size=192M --rate_iops=2000 --verify=crc32c --verify_fatal=1 --do_verify=1 > "$SCENARIO_DIR/fio.txt" 2>&1 &
fio_pid=$!
FIO_PIDS+=("$fio_pid")
gaps=()
for n in $(seq 1 $handovers); do
  wait_for_writes "$DEVICE" $(( $(writes_on "$DEVICE") + 300 ))
  kill -0 "$fio_pid" 2>/dev/null || { cat "$SCENARIO_DIR/fio.txt"; fail "fio finished before handover $n; make it longer"; }
  previous=s$((n - 1))
  stopped=$(date +%s%N)
  stop_server "$SERVER_PID" "$previous" > /dev/null
  grep -q "left $DEVICE for 'ublk-csi recover $DEVICE_ID'" "$SCENARIO_DIR/$previous.err" || fail "handover $n: the server did not leave the device"
  device_state "$DEVICE_ID" --state-dir "$STATE_DIR"
  [[ $DEVICE_STATE == quiesced ]] || fail "handover $n: device $DEVICE_ID is '$DEVICE_STATE', expected quiesced"
  [[ -f $STATE_DIR/ublk$DEVICE_ID.json ]] || fail "handover $n: the recovery record is gone"
  keep=(--keep-on-exit); (( n < handovers )) || keep=()   # the last server removes the device on SIGTERM
  start_server "s$n" recover "$DEVICE_ID" --state-dir "$STATE_DIR" --stats "${keep[@]}"
  gaps+=($(( ($(date +%s%N) - stopped) / 1000000 )))
  log "handover $n: adopted $DEVICE (pid $SERVER_PID) ${gaps[-1]} ms after the SIGTERM"
done

fio_rc=0
wait "$fio_pid" || fio_rc=$?
grep -E "^ *(READ|WRITE):|err=" "$SCENARIO_DIR/fio.txt"
[[ $fio_rc -eq 0 ]] || { cat "$SCENARIO_DIR/fio.txt"; fail "fio exited with $fio_rc across the handovers"; }
grep -Eq "err= *0" "$SCENARIO_DIR/fio.txt" || fail "fio reported errors"
stop_server "$SERVER_PID" "s$handovers"
grep -Eq "writes=[1-9]" "$SCENARIO_DIR/s$handovers.err" || fail "the last adopting server served no writes"
figure "handover-recover-file: $handovers SIGTERM handovers under fio, each device quiesced and adopted (SIGTERM to adopted, ms: ${gaps[*]}); fio err=0, crc32c verify passed"
log "PASS handover-recover-file"
