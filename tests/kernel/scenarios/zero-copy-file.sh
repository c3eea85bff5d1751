#!/usr/bin/env bash
# kernel: 6.16 (UBLK_F_AUTO_BUF_REG; tests/kernel/run.sh runs this in a second boot of a newer kernel)
# Zero copy for the file store: the node plugin stages an ext4 on an O_DIRECT file volume and the
# engine creates the device with UBLK_F_AUTO_BUF_REG (its record says so), so reads and writes go
# from the request's own pages to the image (READ_FIXED/WRITE_FIXED on the queue ring), no user copy.
# (a) fio randwrite + crc32c verify in the pod's mount across kill -9 of the plugin and across a
#     SIGTERM handover, each adopted by a new process: err=0, verify passes, the adopted device still
#     zero copy; unstage leaves nothing, fsck clean.
# (b) the ext4-vs-loop benchmark of bench-node-ext4-vs-loop (direct image, 1 queue) with zero copy,
#     BENCH_ROUNDS interleaved rounds against loop --direct-io=on: the median ratios; with
#     BENCH_EXTRAS=1 also one round with it turned off (--zero-copy off).
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"
source "$(dirname "$0")/_node_bench.sh"

setup_kubelet_dir
store=$SCENARIO_DIR/store
file_volume "$store" zc 160M pod-zc pv-zc
volume_id=$FILE_VOLUME_ID staging=$FILE_STAGING target=$FILE_TARGET

start_plugin first
capability='"volumeCapability":{"mount":{"fsType":"ext4"},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
csi NodeStageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'",'$capability',"volumeContext":{"store":"file","root":"'$store'","directIo":"on"}}' > /dev/null
csi NodePublishVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'","targetPath":"'$target'",'$capability'}' > /dev/null
device=$(findmnt -n -o SOURCE "$staging")
[[ $device == /dev/ublkb* ]] || fail "staging path shows '$device', not a ublk device"
[[ $(device_zero_copy "$device") == true ]] || fail "the engine did not create $device with UBLK_F_AUTO_BUF_REG: $(cat "$NODE_STATE/devices/ublk${device#/dev/ublkb}.json")"
log "staged $volume_id on $device with zero copy (AUTO_BUF_REG); max_sectors_kb $(cat "/sys/block/${device#/dev/}/queue/max_sectors_kb")"

fio_across_restart kill9 crash first second "$volume_id" "$device" "$target" 40M ext4 "file (zero copy)"
[[ $(device_zero_copy "$device") == true ]] || fail "the adopted device's record lost AUTO_BUF_REG"
fio_across_restart sigterm handover second third "$volume_id" "$device" "$target" 40M ext4 "file (zero copy)"
[[ $(device_zero_copy "$device") == true ]] || fail "the adopted device's record lost AUTO_BUF_REG"

csi NodeUnpublishVolume '{"volumeId":"'$volume_id'","targetPath":"'$target'"}' > /dev/null
csi NodeUnstageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'"}' > /dev/null
for _ in $(seq 50); do [[ -e $device ]] || break; sleep 0.1; done
[[ ! -e $device ]] || fail "$device still exists after NodeUnstageVolume"
[[ -z $(ls -A "$NODE_STATE/devices" 2>/dev/null) ]] || fail "device records left: $(ls "$NODE_STATE/devices")"
fsck.ext4 -fn "$store/volumes/zc.img" > "$SCENARIO_DIR/fsck.txt" 2>&1 || { cat "$SCENARIO_DIR/fsck.txt"; fail "fsck found errors after unstage"; }
log "fsck clean: $(tail -1 "$SCENARIO_DIR/fsck.txt")"
kill_plugin TERM
PLUGIN_PID=""

bench_setup
zero_copy() {
  bench_plugin 1 on
  [[ $BENCH_ZERO_COPY == true ]] || fail "bench device without zero copy"
  ublk_max_kb=$BENCH_MAX_SECTORS_KB
}
user_copy() {
  bench_plugin 1 on --zero-copy off
  [[ $BENCH_ZERO_COPY == false ]] || fail "--zero-copy off still made a zero-copy device"
}
loop_direct() { bench_loop "--direct-io=on" --direct-io=on; }
bench_rounds "$BENCH_ROUNDS" zero_copy loop_direct
log "max_sectors_kb: ublk $ublk_max_kb, loop $BENCH_MAX_SECTORS_KB"
compare "(direct image, 1 queue/device, zero copy) vs loop --direct-io=on" zero_copy loop_direct
if [[ $BENCH_EXTRAS == 1 ]]; then
  # One round of the copy path, as a pointer to what zero copy buys (paired with round 1's loop run).
  bench_rounds 1 user_copy
  compare "(direct image, 1 queue/device, user copy) vs loop --direct-io=on" user_copy loop_direct
fi
bench_teardown
log "PASS zero-copy-file"
