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

# run_fio_across EVENT NAME: fio randwrite + crc32c verify in the pod's mount while EVENT (kill9 or
# sigterm) replaces the plugin; prints the figures.
run_fio_across() {
  local event=$1 name=$2 base fio_pid stopped
  base=$(writes_on "$device")
  fio --name="$name" --directory="$target" --size=40M --bs=4k --rw=randwrite --ioengine=libaio --direct=1 \
      --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --fsync_on_close=1 \
      > "$SCENARIO_DIR/fio-$name.txt" 2>&1 &
  fio_pid=$!
  wait_for_writes "$device" $((base + 400))
  kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before the $event; make it longer"
  stopped=$(date +%s%N)
  if [[ $event == kill9 ]]; then
    kill_plugin KILL
  else
    kill_plugin TERM
    [[ $PLUGIN_EXIT -eq 0 ]] || { cat "$SCENARIO_DIR/$3.log"; fail "plugin exited with $PLUGIN_EXIT after SIGTERM"; }
    grep -q "handed volume $volume_id" "$SCENARIO_DIR/$3.log" || fail "the plugin did not hand the volume over"
  fi
  state=$("$UBLK_CSI" list | awk -v id="${device#/dev/ublkb}" '$1 == id { print $2 }')
  [[ $state == quiesced || $state == live ]] || fail "device is '$state' after the $event, expected quiesced"
  mountpoint -q "$target" || fail "the pod's mount vanished with the plugin"
  start_plugin "$4"
  local without=$(( ($(date +%s%N) - stopped) / 1000000 ))
  grep -q "adopted volume $volume_id" "$SCENARIO_DIR/$4.log" || { cat "$SCENARIO_DIR/$4.log"; fail "the new plugin did not adopt $volume_id"; }
  local adopt_ms
  adopt_ms=$(grep -o "adopted volume $volume_id on [^ ]* in [0-9]* ms" "$SCENARIO_DIR/$4.log" | grep -o "[0-9]* ms$")
  local fio_rc=0
  wait "$fio_pid" || fio_rc=$?
  grep -E "err=|WRITE:|verify" "$SCENARIO_DIR/fio-$name.txt" | head -5
  [[ $fio_rc -eq 0 ]] || { cat "$SCENARIO_DIR/fio-$name.txt"; fail "fio exited with $fio_rc across the $event"; }
  grep -Eq "err= *0" "$SCENARIO_DIR/fio-$name.txt" || fail "fio reported I/O or verify errors across the $event"
  figure "node plugin $event mid-fio (ext4, file store): device without a server for $without ms (signal to new plugin ready, process start under TCG included), adoption itself $adopt_ms; fio err=0, crc32c verify passed"
}

run_fio_across kill9 crash first second
run_fio_across sigterm handover second third

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
