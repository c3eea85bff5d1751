#!/usr/bin/env bash
# kernel: 6.16 (UBLK_U_CMD_UPDATE_SIZE; tests/kernel/run.sh runs this in a second boot of a newer kernel)
# Online expansion end to end: a file volume created by the controller, staged ext4 and published at
# kubelet's paths; while fio writes and verifies (crc32c) inside the pod's mount, ControllerExpandVolume
# grows the image and NodeExpandVolume grows the live ublk device and ext4 without unmounting: fio
# ends with err=0 and its verify passes, /dev/ublkbN and the filesystem report the new size, and the
# adopted device keeps it after a plugin kill -9 (the recovery record holds the grown size).
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"
source "$(dirname "$0")/_sidecars.sh"

MIB=1048576
setup_kubelet_dir
mkdir -p "$SCENARIO_DIR/file-root"
start_controller
start_plugin node
parameters=$(jq -cn --arg root "$SCENARIO_DIR/file-root" '{store: "file", root: $root}')
provision pvc-online $((256 * MIB)) "$parameters" '{}'
publish_to_pod "$VOLUME_ID" "$VOLUME_CONTEXT" '{}' pod-online
[[ $(blockdev --getsize64 "$DEVICE") == $((256 * MIB)) ]] || fail "$DEVICE is not 256 MiB"
size_before=$(df -B1 --output=size "$TARGET" | tail -1)

out=$(ctl ControllerExpandVolume "$(jq -cn --arg id "$VOLUME_ID" --arg bytes $((512 * MIB)) --argjson capability "$EXT4_CAPABILITY" \
  '{volumeId: $id, capacityRange: {requiredBytes: $bytes}, volumeCapability: $capability}')")
[[ $(jq -r .nodeExpansionRequired <<< "$out") == true ]] || fail "ControllerExpandVolume answered $out"
[[ $(blockdev --getsize64 "$DEVICE") == $((256 * MIB)) ]] || fail "$DEVICE changed size before NodeExpandVolume"

base=$(writes_on "$DEVICE")
fio --name=online --directory="$TARGET" --size=160M --bs=4k --rw=randwrite --ioengine=libaio --direct=1 \
  --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --fsync_on_close=1 > "$SCENARIO_DIR/fio.txt" 2>&1 &
fio_pid=$!
wait_for_writes "$DEVICE" $((base + 400))
kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before NodeExpandVolume; make it longer"
start=$(date +%s%N)
out=$(csi NodeExpandVolume "$(jq -cn --arg id "$VOLUME_ID" --arg path "$TARGET" --arg bytes $((512 * MIB)) \
  '{volumeId: $id, volumePath: $path, capacityRange: {requiredBytes: $bytes}}')")
expand_ms=$(elapsed_ms "$start")
[[ $(jq -r .capacityBytes <<< "$out") == $((512 * MIB)) ]] || fail "NodeExpandVolume answered $out"
[[ $(blockdev --getsize64 "$DEVICE") == $((512 * MIB)) ]] || fail "$DEVICE did not grow: $(blockdev --getsize64 "$DEVICE") bytes"
size_after=$(df -B1 --output=size "$TARGET" | tail -1)
[[ $size_after -gt $((size_before + 200 * MIB)) ]] || fail "ext4 did not grow online ($size_before -> $size_after bytes)"
wait "$fio_pid" || { cat "$SCENARIO_DIR/fio.txt"; fail "fio failed across the online expansion"; }
grep -Eq "err= *0" "$SCENARIO_DIR/fio.txt" || { cat "$SCENARIO_DIR/fio.txt"; fail "fio reported errors"; }
figure "online expansion 256 -> 512 MiB under fio randwrite + crc32c verify: NodeExpandVolume took $expand_ms ms (one CSI call through the batch client), ext4 $size_before -> $size_after bytes, fio err=0"

# A new plugin process adopts the grown device at its new size.
kill_plugin KILL
start_plugin node-after
[[ $(blockdev --getsize64 "$DEVICE") == $((512 * MIB)) ]] || fail "$DEVICE changed size across the restart"
csi NodeGetVolumeStats "$(jq -cn --arg id "$VOLUME_ID" --arg path "$TARGET" '{volumeId: $id, volumePath: $path}')" > /dev/null
unpublish_from_pod "$VOLUME_ID" pod-online '{}'
ctl DeleteVolume "$(jq -cn --arg id "$VOLUME_ID" '{volumeId: $id}')" > /dev/null
log "PASS online-expand-file"
