#!/usr/bin/env bash
# 8 devices created at once by 8 processes, each written and verified by fio at the same time, then
# all removed at once: every device works and nothing is left behind (control commands race in the
# kernel; the engine serialises them per process, this checks the kernel side under churn).
source "$(dirname "$0")/_lib.sh"
count=8

start=$(date +%s%N)
pids=()
for i in $(seq "$count"); do
  "$UBLK_CSI" attach --store memory --size 64M --queues 1 --depth 32 --state-dir "$STATE_DIR" \
    > "$SCENARIO_DIR/dev$i.out" 2> "$SCENARIO_DIR/dev$i.err" &
  pids+=("$!")
  SERVER_PIDS+=("$!")
done
devices=()
for i in $(seq "$count"); do
  for _ in $(seq 600); do
    [[ -s $SCENARIO_DIR/dev$i.out ]] && break
    kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { cat "$SCENARIO_DIR/dev$i.err"; fail "attach #$i exited before printing a device"; }
    sleep 0.2
  done
  device=$(head -n1 "$SCENARIO_DIR/dev$i.out")
  [[ $device == /dev/ublkb* ]] || fail "attach #$i printed '$device'"
  for _ in $(seq 50); do [[ -b $device ]] && break; sleep 0.1; done
  [[ -b $device ]] || fail "$device is not a block device"
  devices+=("$device")
done
figure "created $count devices concurrently in $(( ($(date +%s%N) - start) / 1000000 )) ms: ${devices[*]}"
[[ $(printf '%s\n' "${devices[@]}" | sort -u | wc -l) -eq $count ]] || fail "device paths are not distinct: ${devices[*]}"

fio_pids=()
for i in $(seq "$count"); do
  fio --name="dev$i" --filename="${devices[$((i - 1))]}" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k \
      --iodepth=8 --size=8M --verify=crc32c --verify_fatal=1 --do_verify=1 > "$SCENARIO_DIR/fio$i.txt" 2>&1 &
  fio_pids+=("$!")
done
for i in $(seq "$count"); do
  wait "${fio_pids[$((i - 1))]}" || { cat "$SCENARIO_DIR/fio$i.txt"; fail "fio on ${devices[$((i - 1))]} failed"; }
  grep -Eq "err= *0" "$SCENARIO_DIR/fio$i.txt" || { cat "$SCENARIO_DIR/fio$i.txt"; fail "fio on ${devices[$((i - 1))]} reported errors"; }
done
log "fio verify passed on all $count devices at once"

start=$(date +%s%N)
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for i in $(seq "$count"); do
  rc=0; wait "${pids[$((i - 1))]}" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$SCENARIO_DIR/dev$i.err"; fail "attach #$i exited with $rc after SIGTERM"; }
done
figure "removed $count devices concurrently in $(( ($(date +%s%N) - start) / 1000000 )) ms"
for _ in $(seq 50); do compgen -G '/dev/ublk[bc]*' > /dev/null || break; sleep 0.1; done
! compgen -G '/dev/ublk[bc]*' > /dev/null || fail "left behind: $(echo /dev/ublk[bc]*)"
[[ -z $(ls -A "$STATE_DIR") ]] || fail "recovery records left behind: $(ls "$STATE_DIR")"
log "PASS concurrent-8-devices"
