# Helpers that play the CSI sidecars and kubelet end to end (sourced after _lib.sh and _node.sh): the
# controller on its own socket, CreateVolume as external-provisioner sends it, ControllerPublish as
# external-attacher does, NodeStage + NodePublish at kubelet's paths, and the way back. Used by the
# csi-lifecycle scenario and by the demo (scripts/demo-guest.sh), so both drive the driver one way.
# UBLK_CSI_CONTROLLER: the ublk-csi-controller binary (ReadyToRun publish).
: "${UBLK_CSI_CONTROLLER:?UBLK_CSI_CONTROLLER must point at the published ublk-csi-controller}"

# The sidecars reach the controller through a socket in their pod's shared emptyDir.
CONTROLLER_SOCKET=$SCENARIO_DIR/controller/csi.sock
NODE_ID=guest-node
EXT4_CAPABILITY='{"mount":{"fsType":"ext4"},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'

# start_controller: ublk-csi-controller with --endpoint alone (no store credentials in its
# environment: they come as CSI secrets), ready when Probe says so. Sets CONTROLLER_PID.
start_controller() {
  mkdir -p "$(dirname "$CONTROLLER_SOCKET")"
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$UBLK_CSI_CONTROLLER" --endpoint "unix://$CONTROLLER_SOCKET" \
    > "$SCENARIO_DIR/controller.log" 2>&1 &
  CONTROLLER_PID=$!
  SERVER_PIDS+=("$CONTROLLER_PID")
  await_ready controller "$CONTROLLER_PID" "$CONTROLLER_SOCKET" "$SCENARIO_DIR/controller.log"
  log "controller (pid $CONTROLLER_PID) ready on $CONTROLLER_SOCKET"
}

# ctl METHOD JSON: one call on the controller; prints the response, fails the scenario on an error status.
ctl() { csi_on "$CONTROLLER_SOCKET" "$@"; }

# provision NAME BYTES PARAMETERS SECRETS [SOURCE]: CreateVolume as external-provisioner sends it
# (--extra-create-metadata keys, the StorageClass's fstype as the capability, provisioner secrets,
# SOURCE a volumeContentSource in JSON). Sets VOLUME_ID and VOLUME_CONTEXT (JSON).
provision() {
  local name=$1 bytes=$2 parameters=$3 secrets=$4 source=${5:-null} request out
  request=$(jq -cn --arg name "$name" --arg bytes "$bytes" --argjson parameters "$parameters" --argjson secrets "$secrets" \
    --argjson source "$source" --argjson capability "$EXT4_CAPABILITY" \
    '{name: $name, capacityRange: {requiredBytes: $bytes}, volumeCapabilities: [$capability], secrets: $secrets,
      parameters: ($parameters + {"csi.storage.k8s.io/pvc/name": ("data-" + $name), "csi.storage.k8s.io/pvc/namespace": "default",
                                  "csi.storage.k8s.io/pv/name": $name})}
     + (if $source == null then {} else {volumeContentSource: $source} end)')
  out=$(ctl CreateVolume "$request")
  VOLUME_ID=$(jq -r .volume.volumeId <<< "$out")
  VOLUME_CONTEXT=$(jq -c .volume.volumeContext <<< "$out")
  [[ $(jq -r .volume.capacityBytes <<< "$out") == "$bytes" ]] || fail "CreateVolume $name answered another size: $out"
  [[ $VOLUME_CONTEXT != *csi.storage.k8s.io* && $VOLUME_CONTEXT != *'"secrets"'* ]] || fail "the volume context carries sidecar keys: $VOLUME_CONTEXT"
}

# snapshot NAME VOLUME_ID SECRETS: CreateSnapshot as external-snapshotter sends it; sets SNAPSHOT_ID.
snapshot() {
  local request out
  request=$(jq -cn --arg name "$1" --arg source "$2" --argjson secrets "$3" \
    '{name: $name, sourceVolumeId: $source, secrets: $secrets, parameters: {"csi.storage.k8s.io/volumesnapshot/name": $name,
      "csi.storage.k8s.io/volumesnapshot/namespace": "default", "csi.storage.k8s.io/volumesnapshotcontent/name": ("content-" + $name)}}')
  out=$(ctl CreateSnapshot "$request")
  [[ $(jq -r .snapshot.readyToUse <<< "$out") == true ]] || fail "snapshot $1 is not ready to use: $out"
  SNAPSHOT_ID=$(jq -r .snapshot.snapshotId <<< "$out")
}

# publish_to_pod VOLUME_ID CONTEXT SECRETS POD: what external-attacher and kubelet do when a pod is
# scheduled: ControllerPublish to this node (publish secrets), NodeStage (ext4; node-stage secrets),
# NodePublish into the pod. Sets STAGING, TARGET and DEVICE.
publish_to_pod() {
  local id=$1 context=$2 secrets=$3 pod=$4 out publish_context
  out=$(csi_call "$CONTROLLER_SOCKET" "$CSI_CALL_TIMEOUT" ControllerPublishVolume "$(jq -cn --arg id "$id" --arg node "$NODE_ID" \
    --argjson capability "$EXT4_CAPABILITY" --argjson context "$context" --argjson secrets "$secrets" \
    '{volumeId: $id, nodeId: $node, volumeCapability: $capability, volumeContext: $context, secrets: $secrets}')" 2>&1) \
    || { [[ $out == "FAILED_PRECONDITION:"*"keeps no publication records"* ]] || fail "ControllerPublishVolume $id: $out"; log "ControllerPublishVolume $id -> $out"; out='{}'; }
  publish_context=$(jq -c '.publishContext // {}' <<< "$out")
  STAGING=$(staging_path "$id")
  TARGET=$(target_path "$pod" "pv-$pod")
  mkdir -p "$STAGING" "$(dirname "$TARGET")"
  csi NodeStageVolume "$(jq -cn --arg id "$id" --arg staging "$STAGING" --argjson capability "$EXT4_CAPABILITY" \
    --argjson publish "$publish_context" --argjson context "$context" --argjson secrets "$secrets" \
    '{volumeId: $id, stagingTargetPath: $staging, volumeCapability: $capability, publishContext: $publish, volumeContext: $context, secrets: $secrets}')" > /dev/null
  csi NodePublishVolume "$(jq -cn --arg id "$id" --arg staging "$STAGING" --arg target "$TARGET" --argjson capability "$EXT4_CAPABILITY" \
    --argjson publish "$publish_context" --argjson context "$context" \
    '{volumeId: $id, stagingTargetPath: $staging, targetPath: $target, volumeCapability: $capability, publishContext: $publish, volumeContext: $context}')" > /dev/null
  DEVICE=$(findmnt -n -o SOURCE "$STAGING")
  [[ $(findmnt -n -o FSTYPE "$TARGET") == ext4 ]] || fail "volume $id is not mounted as ext4 at $TARGET"
}

# unpublish_from_pod VOLUME_ID POD SECRETS: the way back when the pod goes: NodeUnpublish, NodeUnstage,
# ControllerUnpublish; the pod's mount, the staging mount and the device must be gone.
unpublish_from_pod() {
  local id=$1 pod=$2 secrets=$3 staging target device
  staging=$(staging_path "$id") target=$(target_path "$pod" "pv-$pod")
  device=$(findmnt -n -o SOURCE "$staging")
  csi NodeUnpublishVolume "$(jq -cn --arg id "$id" --arg target "$target" '{volumeId: $id, targetPath: $target}')" > /dev/null
  csi NodeUnstageVolume "$(jq -cn --arg id "$id" --arg staging "$staging" '{volumeId: $id, stagingTargetPath: $staging}')" > /dev/null
  ctl ControllerUnpublishVolume "$(jq -cn --arg id "$id" --arg node "$NODE_ID" --argjson secrets "$secrets" \
    '{volumeId: $id, nodeId: $node, secrets: $secrets}')" > /dev/null
  ! mountpoint -q "$target" && ! mountpoint -q "$staging" || fail "volume $id is still mounted after unpublish and unstage"
  [[ ! -b $device ]] || fail "$device is still there after NodeUnstageVolume of $id"
}

# write_pattern TARGET PATTERN: the pod writes PATTERN (a file of random bytes) and fsyncs it, as an
# application does before it asks for a snapshot; prints its sha256.
write_pattern() {
  cp "$2" "$1/pattern"
  sync -f "$1/pattern"
  sha256sum < "$1/pattern" | cut -d' ' -f1
}

# read_pattern TARGET: the pattern's sha256 as read back after dropping the page cache (from the store).
read_pattern() {
  echo 3 > /proc/sys/vm/drop_caches
  sha256sum < "$1/pattern" | cut -d' ' -f1
}

# elapsed_ms START_NS: milliseconds since START_NS (date +%s%N).
elapsed_ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
