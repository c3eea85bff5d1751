#!/usr/bin/env bash
# The CSI node plugin driven over its unix socket exactly as kubelet drives it, on a file-store
# volume with ext4: stage (mkfs because blank), publish into a pod path, fio with crc32c verify
# through the filesystem while the plugin is killed with -9 and, separately, SIGTERMed (planned
# handover) and replaced by a new process that adopts the device with no kubelet call. fio must end
# with err=0 and its verify must pass; unpublish and unstage leave no mount, device or record, and
# fsck of the volume is clean.
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"

setup_kubelet_dir
store=$SCENARIO_DIR/store
mkdir -p "$store"
"$UBLK_CSI" create-volume --store file --param "root=$store" --name vol1 --size 160M > /dev/null
volume_id=file-node/vol1
staging=$(staging_path "$volume_id")
target=$(target_path pod-uid-1 pv-vol1)
mkdir -p "$staging" "$(dirname "$target")"   # kubelet creates these

start_plugin first
capability='"volumeCapability":{"mount":{"fsType":"ext4","mountFlags":["noatime"]},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
context='"volumeContext":{"store":"file","root":"'$store'","csi.storage.k8s.io/pv/name":"pv-vol1"}'
stage='{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'",'$capability','$context'}'
csi NodeStageVolume "$stage" > /dev/null
csi NodeStageVolume "$stage" > /dev/null   # idempotent
csi_expect ALREADY_EXISTS NodeStageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'","volumeCapability":{"mount":{"fsType":"xfs"},"accessMode":{"mode":"SINGLE_NODE_WRITER"}},'$context'}'
csi_expect INVALID_ARGUMENT NodeStageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'"}'
device=$(findmnt -n -o SOURCE "$staging")
[[ $device == /dev/ublkb* ]] || fail "staging path shows '$device', not a ublk device"
[[ $(findmnt -n -o FSTYPE "$staging") == ext4 ]] || fail "staging mount is not ext4"
findmnt -n -o OPTIONS "$staging" | grep -q noatime || fail "mount flag noatime not applied"
log "staged $volume_id on $device at $staging (visible in the host mount namespace)"

publish='{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'","targetPath":"'$target'",'$capability'}'
csi NodePublishVolume "$publish" > /dev/null
csi NodePublishVolume "$publish" > /dev/null   # idempotent
mountpoint -q "$target" || fail "$target is not a mount point in the host namespace"
stats=$(csi NodeGetVolumeStats '{"volumeId":"'$volume_id'","volumePath":"'$target'"}')
[[ $stats == *'"unit": "BYTES"'* && $stats == *'"unit": "INODES"'* && $stats != *'"abnormal": true'* ]] || fail "unexpected stats: $stats"
log "stats: $(echo "$stats" | tr -d '\n' | cut -c1-200)"

fio_across_restart kill9 crash first second "$volume_id" "$device" "$target" 40M ext4 file
fio_across_restart sigterm handover second third "$volume_id" "$device" "$target" 40M ext4 file

csi NodeUnpublishVolume '{"volumeId":"'$volume_id'","targetPath":"'$target'"}' > /dev/null
csi NodeUnpublishVolume '{"volumeId":"'$volume_id'","targetPath":"'$target'"}' > /dev/null   # idempotent
[[ ! -e $target ]] || fail "$target still exists after NodeUnpublishVolume"
csi NodeUnstageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'"}' > /dev/null
csi NodeUnstageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'"}' > /dev/null   # idempotent
! mountpoint -q "$staging" || fail "staging path still mounted after NodeUnstageVolume"
for _ in $(seq 50); do [[ -e $device ]] || break; sleep 0.1; done
[[ ! -e $device ]] || fail "$device still exists after NodeUnstageVolume"
[[ -z $(ls -A "$NODE_STATE/volumes" 2>/dev/null) ]] || fail "volume records left: $(ls "$NODE_STATE/volumes")"
[[ -z $(ls -A "$NODE_STATE/devices" 2>/dev/null) ]] || fail "device records left: $(ls "$NODE_STATE/devices")"
fsck.ext4 -fn "$store/volumes/vol1.img" > "$SCENARIO_DIR/fsck.txt" 2>&1 || { cat "$SCENARIO_DIR/fsck.txt"; fail "fsck found errors after unstage"; }
log "fsck clean: $(tail -1 "$SCENARIO_DIR/fsck.txt")"
figure "node plugin ext4 on file volume: stage/publish/unpublish/unstage idempotent, fsck clean, no mount/device/record left"

kill_plugin TERM
[[ $PLUGIN_EXIT -eq 0 ]] || fail "plugin exited with $PLUGIN_EXIT after SIGTERM"
PLUGIN_PID=""
log "PASS node-file-ext4-restarts"
