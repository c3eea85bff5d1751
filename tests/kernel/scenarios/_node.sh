# Helpers for the node-plugin scenarios (sourced after _lib.sh): a kubelet directory shared the way
# it is on a Kubernetes node, the plugin started in its own mount namespace the way its container
# runs, and CSI calls made with kubelet's paths.
# UBLK_CSI_NODE: the ublk-csi-node binary (ReadyToRun publish).
: "${UBLK_CSI_NODE:?UBLK_CSI_NODE must point at the published ublk-csi-node}"

DRIVER=ublk.csi.storage
# KUBELET: the kubelet directory; the demo gives a scratch one when it runs on a real host's kernel.
KUBELET=${KUBELET:-/var/lib/kubelet}
SOCKET=$KUBELET/plugins/$DRIVER/csi.sock
NODE_STATE=$SCENARIO_DIR/node-state
PLUGIN_PID=""
VAR_LIB_MOUNTED=""

# The kubelet directory is bind-mounted onto itself and made rshared, as on a node (systemd makes /
# shared; kubelet relies on it). In the VM the root is read-only 9p, so a tmpfs over /var/lib holds it.
setup_kubelet_dir() {
  if [[ -n ${UBLK_VM_GUEST:-} && $KUBELET == /var/lib/* ]]; then
    mount -t tmpfs -o mode=755 kubelet-root /var/lib
    VAR_LIB_MOUNTED=1
  fi
  mkdir -p "$KUBELET/plugins/$DRIVER" "$KUBELET/pods"
  mount --bind "$KUBELET" "$KUBELET"
  mount --make-rshared "$KUBELET"
}

# Runs on exit under `set -e`: nothing here may fail, or a passing scenario would exit 1 (a plugin that
# already exited, a mount already gone).
cleanup_node() {
  if [[ -n $PLUGIN_PID ]]; then kill -KILL "$PLUGIN_PID" 2>/dev/null || true; fi
  kill -KILL "$CSI_BATCH_PROCESS" 2>/dev/null || true
  for m in $(findmnt -rn -o TARGET | grep "^$KUBELET/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  umount -l "$KUBELET" 2>/dev/null || true
  if [[ -n $VAR_LIB_MOUNTED ]]; then umount -l /var/lib 2>/dev/null || true; fi
  cleanup_servers
}
trap cleanup_node EXIT

# Every CSI call of a scenario goes through one `ublk-csi csi-call --batch` process (one call per
# line, one answer per line): under TCG each process start costs ~5 s, the call itself milliseconds.
# It starts here, in the scenario's own shell, because a coprocess started inside $(...) would be lost
# to the next call; its start then overlaps the servers' starts. Its descriptors are copied to plain
# ones because bash closes a coprocess's own in pipelines and background jobs.
coproc CSI_BATCH { exec "$UBLK_CSI" csi-call --batch 2> "$SCENARIO_DIR/csi-call-batch.err"; }
CSI_BATCH_PROCESS=$CSI_BATCH_PID
# Out of the job table: cleanup_node's kill must not print a job notice into the scenario's output.
disown "$CSI_BATCH_PROCESS"
exec {CSI_BATCH_TO}>&"${CSI_BATCH[1]}" {CSI_BATCH_FROM}<&"${CSI_BATCH[0]}"
# Seconds an answer may take beyond the call's own deadline (the batch process's first start under a
# loaded TCG host included: seen 52 s) before the call is declared hung.
CSI_BATCH_GRACE=180

# csi_call SOCKET TIMEOUT METHOD [JSON]: one CSI call through the batch process, with the single-call
# form's outputs and exit statuses: the response on stdout (0), `CODE: message` on stderr for an error
# status (3), `ublk-csi csi-call: ...` for a request it rejects (2). A dead batch process, or one
# silent past the deadline (then killed, so no late answer is taken for the next call's), fails with
# a message saying so (1). One call at a time.
csi_call() {
  local socket=$1 timeout=$2 method=$3 request=${4:-'{}'} answer rc=0
  kill -0 "$CSI_BATCH_PROCESS" 2>/dev/null \
    || { echo "ublk-csi csi-call --batch (pid $CSI_BATCH_PROCESS) is not running; its stderr: $(cat "$SCENARIO_DIR/csi-call-batch.err")" >&2; return 1; }
  # A raw line break cannot be inside a JSON string, so joining the request's lines keeps its meaning.
  request=${request//$'\n'/ }
  printf '{"endpoint":"unix://%s","method":"%s","timeout":%s,"request":%s}\n' "$socket" "$method" "$timeout" "$request" >&"$CSI_BATCH_TO" \
    || { echo "ublk-csi csi-call --batch (pid $CSI_BATCH_PROCESS) does not take calls; its stderr: $(cat "$SCENARIO_DIR/csi-call-batch.err")" >&2; return 1; }
  read -r -t $((timeout + CSI_BATCH_GRACE)) -u "$CSI_BATCH_FROM" answer || rc=$?
  if (( rc > 128 )); then
    kill -KILL "$CSI_BATCH_PROCESS" 2>/dev/null || true
    echo "$method: no answer from ublk-csi csi-call --batch within $((timeout + CSI_BATCH_GRACE)) s; stopped it" >&2; return 1
  elif (( rc != 0 )); then
    echo "$method: ublk-csi csi-call --batch (pid $CSI_BATCH_PROCESS) exited without answering; its stderr: $(cat "$SCENARIO_DIR/csi-call-batch.err")" >&2; return 1
  fi
  case $answer in
    '{"response": '*) answer=${answer#'{"response": '}; echo "${answer%'}'}" ;;
    '{"code": '*) jq -r '"\(.code): \(.message)"' <<< "$answer" >&2; return 3 ;;
    '{"error": '*) echo "ublk-csi csi-call: $(jq -r .error <<< "$answer")" >&2; return 2 ;;
    *) echo "$method: unexpected answer from ublk-csi csi-call --batch: $answer" >&2; return 1 ;;
  esac
}

# start_plugin NAME [OPTION...]: the node plugin in a new mount namespace (like its container), with
# only the options a DaemonSet must pass (plus OPTIONs); waits until Probe reports ready (adoption
# done). Sets PLUGIN_PID and READY_MS (start to ready).
start_plugin() {
  local name=$1 start
  shift
  start=$(date +%s%N)
  # No store credentials in its environment: they must come from the node-stage secrets (and, after
  # a restart, from what the plugin kept of them).
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY unshare --mount --propagation unchanged "$UBLK_CSI_NODE" --endpoint "unix://$SOCKET" --node-id guest-node \
    --state-dir "$NODE_STATE" --kubelet-dir "$KUBELET" "$@" > "$SCENARIO_DIR/$name.log" 2>&1 &
  PLUGIN_PID=$!
  await_ready "plugin $name" "$PLUGIN_PID" "$SOCKET" "$SCENARIO_DIR/$name.log"
  READY_MS=$(( ($(date +%s%N) - start) / 1000000 ))
  log "plugin $name (pid $PLUGIN_PID) ready in $READY_MS ms"
}

# await_ready WHAT PID SOCKET LOG: until Probe on SOCKET reports ready; fails (printing LOG) if PID
# exits first or after PLUGIN_READY_TIMEOUT (default 600) seconds of wall time: under a loaded TCG
# host a process takes minutes to listen and its first call tens of seconds (seen: 52 s and > 10 s).
await_ready() {
  local what=$1 pid=$2 socket=$3 log_file=$4 ready=""
  local deadline=$(( $(date +%s) + ${PLUGIN_READY_TIMEOUT:-600} ))
  while (( $(date +%s) < deadline )); do
    kill -0 "$pid" 2>/dev/null || { cat "$log_file"; fail "$what exited during start"; }
    ready=$(csi_call "$socket" 60 Probe 2>&1 || true)
    [[ $ready == *'"ready": true'* ]] && return 0
    sleep 0.2
  done
  echo "last Probe: $ready"; cat "$log_file"; fail "$what not ready within ${PLUGIN_READY_TIMEOUT:-600} s"
}

# Per-call deadline of csi-call: on a host at load 50 one call took 120 s under TCG (default 120 s).
CSI_CALL_TIMEOUT=600

# csi METHOD JSON: one call on the node plugin; prints the response, fails the scenario on an error status.
csi() { csi_on "$SOCKET" "$@"; }

# csi_on SOCKET METHOD JSON: the same on any plugin socket.
csi_on() {
  local socket=$1 out; shift
  out=$(csi_call "$socket" "$CSI_CALL_TIMEOUT" "$@" 2>&1) || { echo "$out"; fail "$1 failed"; }
  echo "$out"
}

# csi_expect CODE METHOD JSON: the call must fail with CODE.
csi_expect() {
  local code=$1 out; shift
  if out=$(csi_call "$SOCKET" "$CSI_CALL_TIMEOUT" "$@" 2>&1); then fail "$1 succeeded, expected $code"; fi
  [[ $out == "$code:"* ]] || fail "$1: expected $code, got: $out"
  log "$1 -> $out"
}

# Kubelet's paths for a volume handle and a pod.
staging_path() { echo "$KUBELET/plugins/kubernetes.io/csi/$DRIVER/$(printf %s "$1" | sha256sum | cut -d' ' -f1)/globalmount"; }
target_path() { echo "$KUBELET/pods/$1/volumes/kubernetes.io~csi/$2/mount"; }

# file_volume ROOT NAME SIZE POD PV: a file-store volume NAME in ROOT (created), and kubelet's staging
# and target directories for it in pod POD as volume PV; sets FILE_VOLUME_ID, FILE_STAGING, FILE_TARGET.
file_volume() {
  mkdir -p "$1"
  "$UBLK_CSI" create-volume --store file --param "root=$1" --name "$2" --size "$3" > /dev/null
  FILE_VOLUME_ID=file-node/$2
  FILE_STAGING=$(staging_path "$FILE_VOLUME_ID")
  FILE_TARGET=$(target_path "$4" "$5")
  mkdir -p "$FILE_STAGING" "$(dirname "$FILE_TARGET")"   # kubelet creates these
}

# kill_plugin SIGNAL: signals the plugin and requires it to exit within 30 s (a plugin holding the
# last reference to a dirty filesystem on its own device would hang here instead).
kill_plugin() {
  local signal=$1 rc=0
  kill "-$signal" "$PLUGIN_PID"
  timeout 30 tail --pid="$PLUGIN_PID" -f /dev/null || fail "plugin did not exit within 30 s of SIG$signal"
  wait "$PLUGIN_PID" 2>/dev/null || rc=$?
  log "plugin $PLUGIN_PID exited ($rc) after SIG$signal"
  PLUGIN_EXIT=$rc
}

# fio_across_restart EVENT NAME OLD NEW VOLUME_ID DEVICE TARGET SIZE FS STORE: fio randwrite + crc32c
# verify in the pod's mount while EVENT (kill9 or sigterm) replaces plugin OLD by NEW; requires
# err=0 and a passing verify, and prints the figures: when the device was served again (the new
# plugin's log stamps its adoption), the longest any of fio's I/Os waited, and when the new plugin
# answered Probe, which under TCG comes seconds after the device is served again.
fio_across_restart() {
  local event=$1 name=$2 old=$3 new=$4 volume_id=$5 device=$6 target=$7 size=$8 fs=$9 store=${10}
  local base fio_pid stopped started adopted_line served adopt_ms fio_rc=0 result fio_error longest
  base=$(writes_on "$device")
  fio --name="$name" --directory="$target" --size="$size" --bs=4k --rw=randwrite --ioengine=libaio --direct=1 \
      --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --fsync_on_close=1 --verify_state_save=0 \
      --output-format=json --output="$SCENARIO_DIR/fio-$name.json" > "$SCENARIO_DIR/fio-$name.txt" 2>&1 &
  fio_pid=$!
  wait_for_writes "$device" $((base + 400))
  kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before the $event; make it longer"
  stopped=$(date +%s%N)
  if [[ $event == kill9 ]]; then
    kill_plugin KILL
  else
    kill_plugin TERM
    [[ $PLUGIN_EXIT -eq 0 ]] || { cat "$SCENARIO_DIR/$old.log"; fail "plugin exited with $PLUGIN_EXIT after SIGTERM"; }
    grep -q "handed volume $volume_id" "$SCENARIO_DIR/$old.log" || fail "the plugin did not hand the volume over"
  fi
  device_state "${device#/dev/ublkb}"
  [[ $DEVICE_STATE == quiesced || $DEVICE_STATE == live ]] || fail "device is '$DEVICE_STATE' after the $event, expected quiesced"
  mountpoint -q "$target" || fail "the pod's mount vanished with the plugin"
  started=$(date +%s%N)
  start_plugin "$new"
  adopted_line=$(grep -m1 "adopted volume $volume_id on [^ ]* in [0-9]* ms" "$SCENARIO_DIR/$new.log") \
    || { cat "$SCENARIO_DIR/$new.log"; fail "the new plugin did not adopt $volume_id"; }
  adopt_ms=$(grep -o "[0-9]* ms$" <<< "$adopted_line")
  # The log line's UTC stamp (yyyy-MM-ddTHH:mm:ss.fffZ), written once the device was served again.
  served=$(date -d "$(grep -o '^[0-9T:.-]*Z' <<< "$adopted_line")" +%s%N) || fail "no time stamp on: $adopted_line"
  wait "$fio_pid" || fio_rc=$?
  # fio puts its own notes before the JSON in that file.
  result=$(python3 -c 'import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]
print(j["error"], round(max(j["write"]["clat_ns"]["max"], j["read"]["clat_ns"]["max"]) / 1e6))' "$SCENARIO_DIR/fio-$name.json" 2> "$SCENARIO_DIR/fio-$name.parse.err") \
    || { cat "$SCENARIO_DIR/fio-$name.txt" "$SCENARIO_DIR/fio-$name.json" "$SCENARIO_DIR/fio-$name.parse.err"; fail "fio left no result across the $event"; }
  read -r fio_error longest <<< "$result"
  [[ $fio_rc -eq 0 && $fio_error -eq 0 ]] || { cat "$SCENARIO_DIR/fio-$name.txt" "$SCENARIO_DIR/fio-$name.json"; fail "fio exited with $fio_rc (error $fio_error) across the $event"; }
  figure "node plugin $event mid-fio ($fs, $store store): device served again $(( (served - stopped) / 1000000 )) ms after the signal (new plugin started after $(( (started - stopped) / 1000000 )) ms of the scenario's checks, its adoption $adopt_ms), longest I/O wait seen by fio $longest ms; the new plugin answered Probe after $(( (started - stopped) / 1000000 + READY_MS )) ms (process start under TCG); fio err=0, crc32c verify passed"
}
