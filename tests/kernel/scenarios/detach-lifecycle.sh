#!/usr/bin/env bash
# detach: of a live device (its attach process notices and exits), of a device whose server was
# killed (recovery on: QUIESCED), and of one killed without recovery (DEAD). Nothing is left behind.
source "$(dirname "$0")/_lib.sh"

device_gone() { device_state "$1" --state-dir "$STATE_DIR"; [[ -z $DEVICE_STATE ]]; }

# 1. Live device, detached from outside.
start_server live attach --store memory --size 64M --queues 1 --state-dir "$STATE_DIR"
live_pid=$SERVER_PID
"$UBLK_CSI" detach "$DEVICE_ID" --state-dir "$STATE_DIR"
rc=0; wait "$live_pid" || rc=$?
grep -q "stopped from outside" "$SCENARIO_DIR/live.err" || { cat "$SCENARIO_DIR/live.err"; fail "attach did not notice the outside stop"; }
[[ $rc -eq 0 ]] || fail "attach exited with $rc after an outside detach"
device_gone "$DEVICE_ID" || fail "device $DEVICE_ID still listed after detach"
[[ ! -e $STATE_DIR/ublk$DEVICE_ID.json ]] || fail "recovery record left behind"
log "live device detached; its server exited on its own"

# 2. Server killed with recovery on: the device waits (QUIESCED) until detached.
start_server quiesced attach --store memory --size 64M --queues 1 --state-dir "$STATE_DIR"
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
wait_for_state "$DEVICE_ID" quiesced "after SIGKILL"
"$UBLK_CSI" detach "$DEVICE_ID" --state-dir "$STATE_DIR"
device_gone "$DEVICE_ID" || fail "quiesced device $DEVICE_ID still listed after detach"
log "quiesced device detached"

# 3. Server killed without recovery: the disk goes, the id stays until detach.
start_server dead attach --store memory --size 64M --queues 1 --no-recovery --state-dir "$STATE_DIR"
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
wait_for_state "$DEVICE_ID" dead "after SIGKILL"
out=$("$UBLK_CSI" recover "$DEVICE_ID" --state-dir "$STATE_DIR" 2>&1) && fail "recover of a device without a record succeeded"
log "recover refused as expected: $out"
"$UBLK_CSI" detach "$DEVICE_ID" --state-dir "$STATE_DIR"
device_gone "$DEVICE_ID" || fail "dead device $DEVICE_ID still listed after detach"
log "dead device detached"

# Bad input: one clear line, non-zero exit.
if out=$("$UBLK_CSI" attach --store memory --size 12Q 2>&1); then fail "attach accepted --size 12Q"; fi
[[ $(echo "$out" | wc -l) -eq 1 && $out == *"--size '12Q' is invalid"* ]] || fail "unclear error for a bad size: $out"
if out=$("$UBLK_CSI" detach 999999 2>&1); then fail "detach of a missing device succeeded"; fi
[[ $out == *"no ublk device 999999"* ]] || fail "unclear error for a missing device: $out"
# A recovery record that cannot be written fails the attach cleanly: no device is left behind.
if out=$("$UBLK_CSI" attach --store memory --size 64M --state-dir /proc/ublk-csi-no-such-dir 2>&1); then
  fail "attach succeeded without a writable state directory"
fi
[[ $out == *"cannot write the recovery record"*"use --state-dir DIR or --no-recovery"* ]] || fail "unclear error for an unwritable state dir: $out"
list_devices --state-dir "$STATE_DIR"
[[ $(wc -l < "$DEVICE_LIST") -eq 1 ]] || { cat "$DEVICE_LIST"; fail "a failed attach left a device behind"; }
log "PASS detach-lifecycle"
