#!/usr/bin/env bash
# The driver's main job, on a kernel with ublk (scripts/demo.sh runs it here or in the VM), printing
# each step with its time: the controller and the node plugin on their unix sockets; a file volume
# provisioned as external-provisioner would, published as external-attacher would, staged and
# published at kubelet's paths as kubelet would; written and read back; snapshotted and restored into
# a second volume; the node plugin killed with -9 in the middle of a write and the write completing
# with no error once a new plugin process has adopted the device; everything torn down.
# It drives the driver through the same helpers as the csi-lifecycle kernel scenario.
# Needs UBLK_CSI, UBLK_CSI_NODE and UBLK_CSI_CONTROLLER (published binaries), root, fio and jq.
repo=$(cd "$(dirname "$0")/.." && pwd)
SCENARIO_DIR=${SCENARIO_DIR:-$(mktemp -d /tmp/ublk-demo.XXXXXX)}
# On a real host, a scratch kubelet directory: the node's own is kubelet's business.
[[ -n ${UBLK_VM_GUEST:-} ]] || KUBELET=$SCENARIO_DIR/kubelet
source "$repo/tests/kernel/scenarios/_lib.sh"
source "$repo/tests/kernel/scenarios/_node.sh"
source "$repo/tests/kernel/scenarios/_sidecars.sh"
trap 'rc=$?; cleanup_node; [[ $rc -eq 0 ]] && rm -rf "$SCENARIO_DIR"; exit $rc' EXIT

demo_start=$(date +%s%N)
# step TEXT COMMAND...: runs COMMAND and prints TEXT with the time since the demo began and what the step took.
step() {
  local text=$1 start; shift
  start=$(date +%s%N)
  "$@"
  printf '[%6.1f s] %-78s %6d ms\n' "$(awk -v ns="$(( $(date +%s%N) - demo_start ))" 'BEGIN { print ns / 1e9 }')" "$text" "$(elapsed_ms "$start")"
}

GIB=1073741824
root=$SCENARIO_DIR/volumes
file_class=$(jq -cn --arg root "$root" '{store: "file", root: $root}')
echo "demo: ublk-csi on $(uname -r); StorageClass parameters $file_class; scratch in $SCENARIO_DIR"
mkdir -p "$root"
head -c 16M /dev/urandom > "$SCENARIO_DIR/pattern"

step "kubelet directory shared (rshared bind mount, as on a node)" setup_kubelet_dir
step "controller started (ublk-csi-controller --endpoint unix://.../csi.sock)" start_controller
step "node plugin started (ublk-csi-node, own mount namespace)" start_plugin plugin-1

step "CreateVolume pvc-demo 1 GiB (as external-provisioner)" provision pvc-demo "$GIB" "$file_class" '{}'
volume=$VOLUME_ID context=$VOLUME_CONTEXT
echo "           volume $volume"
step "ControllerPublish + NodeStage ext4 + NodePublish (attacher, kubelet)" publish_to_pod "$volume" "$context" '{}' pod-demo
target=$TARGET device=$DEVICE
echo "           $device mounted at $target"

written() { WRITTEN=$(write_pattern "$target" "$SCENARIO_DIR/pattern"); }
step "pod writes 16 MiB of random bytes and fsyncs" written
read_back() { [[ $(read_pattern "$target") == "$WRITTEN" ]] || fail "the volume read back other bytes"; }
step "pod reads them back with a cold page cache: sha256 identical" read_back

step "CreateSnapshot snap-demo (as external-snapshotter)" snapshot snap-demo "$volume" '{}'
snap=$SNAPSHOT_ID
step "CreateVolume pvc-restored from snap-demo" provision pvc-restored "$GIB" "$file_class" '{}' "$(jq -cn --arg id "$snap" '{snapshot: {snapshotId: $id}}')"
restored=$VOLUME_ID
step "ControllerPublish + NodeStage + NodePublish of the restored volume" publish_to_pod "$restored" "$VOLUME_CONTEXT" '{}' pod-restored
restored_ok() { [[ $(read_pattern "$TARGET") == "$WRITTEN" ]] || fail "the restored volume read back other bytes"; }
step "second pod reads the restored volume: sha256 identical" restored_ok
step "NodeUnpublish + NodeUnstage + ControllerUnpublish of the restored volume" unpublish_from_pod "$restored" pod-restored '{}'

echo "           next: fio writes with crc32c checksums in the pod; once it is under way the node plugin gets kill -9"
step "kill -9 of the node plugin mid-write; a new plugin adopts the device; fio ends err=0, verify passed" \
  fio_across_restart kill9 crash plugin-1 plugin-2 "$volume" "$device" "$target" 8M ext4 file

step "NodeUnpublish + NodeUnstage + ControllerUnpublish of pvc-demo" unpublish_from_pod "$volume" pod-demo '{}'
delete_all() {
  ctl DeleteSnapshot "$(jq -cn --arg id "$snap" '{snapshotId: $id}')" > /dev/null
  for id in "$restored" "$volume"; do ctl DeleteVolume "$(jq -cn --arg id "$id" '{volumeId: $id}')" > /dev/null; done
}
step "DeleteSnapshot snap-demo, DeleteVolume pvc-restored and pvc-demo" delete_all
stop_plugin() { kill_plugin TERM; [[ $PLUGIN_EXIT -eq 0 ]] || fail "the plugin exited with $PLUGIN_EXIT after SIGTERM"; PLUGIN_PID=""; }
step "node plugin stopped (SIGTERM)" stop_plugin
stop_controller() { kill -TERM "$CONTROLLER_PID"; wait "$CONTROLLER_PID" || fail "the controller exited with $? after SIGTERM"; }
step "controller stopped (SIGTERM)" stop_controller
nothing_left() {
  [[ -z $(find "$root" -type f) ]] || fail "files left in the store: $(find "$root" -type f)"
  [[ -z $(ls -A "$NODE_STATE/volumes" 2>/dev/null) ]] || fail "volume records left in $NODE_STATE/volumes"
  [[ -z $(findmnt -rn -o TARGET | grep "^$KUBELET/.") ]] || fail "mounts left under $KUBELET"
  [[ ! -b $device ]] || fail "$device is still there"
}
step "nothing left: no device, mount, volume record, image or snapshot" nothing_left
echo "demo: done in $(elapsed_ms "$demo_start") ms"
