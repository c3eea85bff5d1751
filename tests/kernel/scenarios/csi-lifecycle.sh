#!/usr/bin/env bash
# The sidecars and kubelet end to end, for each network-reachable store (file, s3, rpc), against one
# controller, one node plugin, one s3rver and one block-store server: CreateVolume as
# external-provisioner sends it, ControllerPublish, NodeStage (ext4) + NodePublish at kubelet's paths,
# a checksummed pattern written and fsynced, CreateSnapshot, a volume restored from it and a clone of
# the original each staged and read back identical, ControllerExpandVolume with the filesystem grown
# at the next stage (6.12 has no live resize), and the way back (unpublish, unstage, DeleteSnapshot,
# DeleteVolume) leaving no device, mount, record or image/object behind.
# Also the latency users feel: CreateVolume-to-mounted (1 GiB, ext4) per store, against losetup +
# mkfs.ext4 + mount of a loop device of the same size in the same boot.
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"
source "$(dirname "$0")/_sidecars.sh"
keep_scenario_files

GIB=1073741824
setup_kubelet_dir
start_s3rver 9600 lifecycle
s3_secrets=$(jq -cn --arg k "$AWS_ACCESS_KEY_ID" --arg s "$AWS_SECRET_ACCESS_KEY" '{accessKeyId: $k, secretAccessKey: $s}')
start_blockstore_server 9402
rpc_secrets=$(jq -cn --arg t "$BLOCKSTORE_TOKEN" '{token: $t}')
mkdir -p "$SCENARIO_DIR/file-root"
start_controller
start_plugin node

# What one call costs the client without the driver doing anything (a Probe through the batch
# csi-call process: shell, pipe, gRPC round trip), so the create-to-mounted figures can be read both ways.
probe_start=$(date +%s%N)
for _ in 1 2 3; do ctl Probe > /dev/null; done
call_ms=$(( $(elapsed_ms "$probe_start") / 3 ))

head -c 16M /dev/urandom > "$SCENARIO_DIR/pattern"
pattern_sum=$(sha256sum < "$SCENARIO_DIR/pattern" | cut -d' ' -f1)
declare -A mounted_ms

# lifecycle STORE PARAMETERS SECRETS: the whole life of a volume of STORE (see the header).
lifecycle() {
  local store=$1 parameters=$2 secrets=$3 start original context target restored clone snap out size_before size_after
  log "---- $store"
  start=$(date +%s%N)
  provision "pvc-$store" "$GIB" "$parameters" "$secrets"
  publish_to_pod "$VOLUME_ID" "$VOLUME_CONTEXT" "$secrets" "pod-$store"
  mounted_ms[$store]=$(elapsed_ms "$start")
  original=$VOLUME_ID context=$VOLUME_CONTEXT target=$TARGET
  log "$store: $original created and mounted at $target ($DEVICE) in ${mounted_ms[$store]} ms"
  [[ $(write_pattern "$target" "$SCENARIO_DIR/pattern") == "$pattern_sum" ]] || fail "$store: the pod wrote another pattern"

  snapshot "snap-$store" "$original" "$secrets"
  snap=$SNAPSHOT_ID
  provision "pvc-$store-restored" "$GIB" "$parameters" "$secrets" "$(jq -cn --arg id "$snap" '{snapshot: {snapshotId: $id}}')"
  restored=$VOLUME_ID
  publish_to_pod "$restored" "$VOLUME_CONTEXT" "$secrets" "pod-$store-restored"
  [[ $(read_pattern "$TARGET") == "$pattern_sum" ]] || fail "$store: the volume restored from $snap read back other bytes"
  unpublish_from_pod "$restored" "pod-$store-restored" "$secrets"

  provision "pvc-$store-clone" "$GIB" "$parameters" "$secrets" "$(jq -cn --arg id "$original" '{volume: {volumeId: $id}}')"
  clone=$VOLUME_ID
  publish_to_pod "$clone" "$VOLUME_CONTEXT" "$secrets" "pod-$store-clone"
  [[ $(read_pattern "$TARGET") == "$pattern_sum" ]] || fail "$store: the clone of $original read back other bytes"
  unpublish_from_pod "$clone" "pod-$store-clone" "$secrets"
  log "$store: snapshot $snap restored and $original cloned; both read back the pattern"

  size_before=$(df -B1 --output=size "$target" | tail -1)
  out=$(ctl ControllerExpandVolume "$(jq -cn --arg id "$original" --arg bytes $((2 * GIB)) --argjson capability "$EXT4_CAPABILITY" \
    --argjson secrets "$secrets" '{volumeId: $id, capacityRange: {requiredBytes: $bytes}, volumeCapability: $capability, secrets: $secrets}')")
  [[ $(jq -r .capacityBytes <<< "$out") == $((2 * GIB)) && $(jq -r .nodeExpansionRequired <<< "$out") == true ]] \
    || fail "$store: ControllerExpandVolume answered $out"
  # 6.12 cannot resize a live ublk device: the node says so, and the next stage grows the filesystem.
  csi_expect FAILED_PRECONDITION NodeExpandVolume "$(jq -cn --arg id "$original" --arg path "$target" --arg bytes $((2 * GIB)) \
    '{volumeId: $id, volumePath: $path, capacityRange: {requiredBytes: $bytes}}')"
  unpublish_from_pod "$original" "pod-$store" "$secrets"
  publish_to_pod "$original" "$context" "$secrets" "pod-$store"
  size_after=$(df -B1 --output=size "$TARGET" | tail -1)
  [[ $size_after -gt $((size_before + GIB / 2)) ]] || fail "$store: ext4 did not grow at the next stage ($size_before -> $size_after bytes)"
  [[ $(read_pattern "$TARGET") == "$pattern_sum" ]] || fail "$store: the expanded volume read back other bytes"
  unpublish_from_pod "$original" "pod-$store" "$secrets"
  log "$store: expanded to 2 GiB; ext4 grew $size_before -> $size_after bytes at the next stage"

  ctl DeleteSnapshot "$(jq -cn --arg id "$snap" --argjson secrets "$secrets" '{snapshotId: $id, secrets: $secrets}')" > /dev/null
  for id in "$restored" "$clone" "$original"; do
    ctl DeleteVolume "$(jq -cn --arg id "$id" --argjson secrets "$secrets" '{volumeId: $id, secrets: $secrets}')" > /dev/null
  done
  out=$(ctl ListVolumes '{}')
  [[ $out != *"pvc-$store"* ]] || fail "$store: ListVolumes still shows a deleted volume: $out"
  out=$(ctl ListSnapshots '{}')
  [[ $out != *"snap-$store"* ]] || fail "$store: ListSnapshots still shows the deleted snapshot: $out"
  [[ -z $(ls /dev/ublkb* 2>/dev/null) ]] || fail "$store: devices left: $(ls /dev/ublkb*)"
  [[ -z $(ls -A "$NODE_STATE/volumes" 2>/dev/null) ]] || fail "$store: volume records left: $(ls "$NODE_STATE/volumes")"
  [[ -z $(findmnt -rn -o TARGET | grep "^$KUBELET/.*pod-$store") ]] || fail "$store: mounts left: $(findmnt -rn -o TARGET | grep "$KUBELET/")"
  figure "csi lifecycle ($store): create, publish, stage ext4, write 16 MiB, snapshot, restore and clone read back identical, expand 1 -> 2 GiB grown at the next stage, unpublish, delete: nothing left"
}

# Nothing of a deleted volume may stay in its store.
leftovers() { find "$@" -type f 2>/dev/null | sed 's/^/  left: /'; }

lifecycle file "$(jq -cn --arg root "$SCENARIO_DIR/file-root" '{store: "file", root: $root}')" '{}'
left=$(leftovers "$SCENARIO_DIR/file-root")
[[ -z $left ]] || fail "file: files left in the store's root:"$'\n'"$left"

lifecycle s3 '{"store":"s3","bucket":"lifecycle","endpoint":"http://127.0.0.1:9600","pathStyle":"true","chunkSize":"1Mi","cacheDir":"'"$SCENARIO_DIR/s3-cache"'"}' "$s3_secrets"
left=$(find "$SCENARIO_DIR/s3/lifecycle" -name '*._S3rver_object' | sed 's/^/  left: /')
[[ -z $left ]] || fail "s3: objects left in the bucket:"$'\n'"$left"
left=$(leftovers "$SCENARIO_DIR/s3-cache")
[[ -z $left ]] || fail "s3: files left in the node's cache directory:"$'\n'"$left"

lifecycle rpc '{"store":"rpc","endpoint":"tcp://127.0.0.1:9402"}' "$rpc_secrets"
# The server's own ticket key stays: it belongs to the server, not to a volume.
left=$(leftovers "$SCENARIO_DIR/blockstore" | grep -v '/blockstore/nbd-ticket\.key$' || true)
[[ -z $left ]] || fail "rpc: files left in the block-store server's root:"$'\n'"$left"

grep -q "$BLOCKSTORE_TOKEN\|$AWS_SECRET_ACCESS_KEY" "$SCENARIO_DIR/controller.log" "$SCENARIO_DIR/node.log" && fail "a secret leaked into a plugin log"

# The baseline: the same 1 GiB ext4 on the kernel's loop driver over a sparse file on the same tmpfs.
truncate -s "$GIB" "$SCENARIO_DIR/loop.img"
start=$(date +%s%N)
loop=$(losetup -f --show "$SCENARIO_DIR/loop.img")
mkfs.ext4 -q -F -- "$loop"
mkdir -p "$SCENARIO_DIR/loop-mount"
mount "$loop" "$SCENARIO_DIR/loop-mount"
loop_ms=$(elapsed_ms "$start")
umount "$SCENARIO_DIR/loop-mount"
losetup -d "$loop"
for store in file s3 rpc; do
  ms=${mounted_ms[$store]}
  figure "CreateVolume-to-mounted ($store, 1 GiB ext4; CreateVolume + ControllerPublish + NodeStage + NodePublish): $ms ms, $(( ms - 4 * call_ms )) ms without the 4 client round trips (${call_ms} ms each); loop device losetup + mkfs.ext4 + mount: $loop_ms ms; ratio $(awk -v a="$ms" -v b="$loop_ms" 'BEGIN { printf "%.1f", a / b }') ($(awk -v a="$(( ms - 4 * call_ms ))" -v b="$loop_ms" 'BEGIN { printf "%.1f", a / b }') without the client round trips)"
done

kill_plugin TERM
[[ $PLUGIN_EXIT -eq 0 ]] || fail "plugin exited with $PLUGIN_EXIT after SIGTERM"
PLUGIN_PID=""
log "PASS csi-lifecycle"
