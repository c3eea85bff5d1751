#!/usr/bin/env bash
# The queue threads of a served device run as I/O flushers (PR_SET_IO_FLUSHER: PF_MEMALLOC_NOIO |
# PF_LOCAL_THROTTLE in their task flags) and on their queue's CPUs (GET_QUEUE_AFFINITY), read from
# /proc of the serving process: 2 queues on the guest's 2 CPUs.
source "$(dirname "$0")/_lib.sh"
start_server srv attach --store memory --size 64M --queues 2 --state-dir "$STATE_DIR"
fio_checked "i/o on both queues" "$SCENARIO_DIR/fio.txt" --name=w --filename="$DEVICE" --direct=1 --rw=randwrite \
  --bs=4k --size=4M --iodepth=8 --ioengine=libaio --numjobs=2 --group_reporting
queue_threads=0
for task in /proc/$SERVER_PID/task/*; do
  comm=$(cat "$task/comm")
  [[ $comm == ublk${DEVICE_ID}-q* ]] || continue
  queue_threads=$((queue_threads + 1))
  stat=$(cat "$task/stat"); fields=(${stat##*) })
  flags=${fields[6]}
  cpus=$(awk '/^Cpus_allowed_list:/ { print $2 }' "$task/status")
  log "$comm: task flags $(printf 0x%x "$flags"), CPUs $cpus"
  (( (flags & 0x180000) == 0x180000 )) || fail "$comm is not an I/O flusher (flags $(printf 0x%x "$flags"))"
  qid=${comm##*-q}
  [[ $cpus == "$qid" ]] || fail "$comm runs on CPUs $cpus; the kernel maps CPU $qid to queue $qid of a 2-queue device on 2 CPUs"
  figure "$comm: io_flusher, CPUs $cpus"
done
[[ $queue_threads -eq 2 ]] || fail "found $queue_threads queue threads named ublk${DEVICE_ID}-q*, expected 2"
stop_server "$SERVER_PID" srv
log "PASS io-threads"
