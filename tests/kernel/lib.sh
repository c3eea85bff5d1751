# Helpers for kernel scenarios (sourced). A scenario is tests/kernel/scenarios/NN-name.sh, run by
# guest.sh inside the VM as root with:
#   UBLK_CSI   path of the published operator tool (ublk-csi)
#   WORK       a fresh scratch directory on tmpfs for this scenario
#   STATE_DIR  a fresh recovery-state directory for this scenario
# Exit 0 = pass. Print figures as lines starting with "figure: " so the suite summary shows them.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
figure() { echo "figure: $*"; }

# attach_device VAR ARGS...: starts `ublk-csi attach ARGS` in the background, waits for the device
# path on its first stdout line and for the block node, and stores the path in VAR and the server's
# pid in VAR_pid. Its stdout/stderr go to $WORK/attach-<n>.log.
_attach_seq=0
attach_device() {
  local var=$1; shift
  _attach_seq=$((_attach_seq + 1))
  local log=$WORK/attach-$_attach_seq.log fifo=$WORK/attach-$_attach_seq.fifo
  mkfifo "$fifo"
  "$UBLK_CSI" attach --state-dir "$STATE_DIR" "$@" > "$fifo" 2> "$log.err" &
  local pid=$! path=
  # First line is the path; the rest of stdout keeps draining to the log.
  exec {fd}< "$fifo"
  if ! read -r -t 60 -u "$fd" path; then
    cat "$log.err" >&2
    fail "attach $* printed no device path"
  fi
  cat <&"$fd" > "$log" &
  exec {fd}<&-
  local i
  for ((i = 0; i < 100; i++)); do [[ -b $path ]] && break; sleep 0.1; done
  [[ -b $path ]] || fail "attach printed $path but no block device appeared"
  printf -v "$var" '%s' "$path"
  printf -v "${var}_pid" '%s' "$pid"
}

# stop_server PID: SIGTERM and wait; fails if the server exits non-zero.
stop_server() {
  kill -TERM "$1"
  local rc=0
  wait "$1" || rc=$?
  [[ $rc -eq 0 ]] || fail "server $1 exited with $rc"
}

# no_devices_left: no /dev/ublkb* or /dev/ublkc* remains.
no_devices_left() {
  local i
  for ((i = 0; i < 50; i++)); do
    compgen -G '/dev/ublk[bc]*' > /dev/null || return 0
    sleep 0.1
  done
  fail "devices left behind: $(echo /dev/ublk[bc]*)"
}

# fio_terse_field FILE N: field N of fio's terse (v3) output line.
fio_iops_read() { awk -F';' '{print $8}' "$1"; }
