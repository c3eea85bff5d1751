#!/usr/bin/env bash
# What a pod gets from the node plugin: fio 4k random read/write at QD32 and 1 MiB sequential
# read/write inside the ext4 the plugin staged on a file volume, against the same filesystem on the
# same backing file through the kernel loop driver, same boot, like for like in both caching modes:
# the plugin's default (O_DIRECT image, 1 and 2 queues) against `losetup --direct-io=on`, and
# `directIo: off` (the image through the page cache) against the default, buffered loop device.
# Under TCG only the ratios mean anything (goal: >= 0.9x loop).
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"

seconds=${BENCH_SECONDS:-5}
setup_kubelet_dir
store=$SCENARIO_DIR/store
mkdir -p "$store"
"$UBLK_CSI" create-volume --store file --param "root=$store" --name bench --size 512M > /dev/null
image=$store/volumes/bench.img
volume_id=file-node/bench
staging=$(staging_path "$volume_id")
target=$(target_path pod-bench pv-bench)
mkdir -p "$staging" "$(dirname "$target")"
cap='"volumeCapability":{"mount":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'

# run_jobs DIR LABEL: the four jobs on one 256 MiB file in DIR; sets IOPS_RR IOPS_RW BW_SR BW_SW (KiB/s).
run_jobs() {
  local dir=$1 label=$2 common
  common=(--directory="$dir" --filename=bench.dat --size=256M --direct=1 --ioengine=libaio --time_based --runtime="$seconds" --group_reporting --output-format=terse --terse-version=3)
  fio --name=layout --directory="$dir" --filename=bench.dat --size=256M --rw=write --bs=1M --direct=1 --ioengine=libaio > /dev/null
  # terse v3: field 8 = read IOPS, 49 = write IOPS, 7 = read KiB/s, 48 = write KiB/s
  IOPS_RR=$(fio --name=rr --rw=randread --bs=4k --iodepth=32 "${common[@]}" | cut -d';' -f8)
  IOPS_RW=$(fio --name=rw --rw=randwrite --bs=4k --iodepth=32 "${common[@]}" | cut -d';' -f49)
  BW_SR=$(fio --name=sr --rw=read --bs=1M --iodepth=4 "${common[@]}" | cut -d';' -f7)
  BW_SW=$(fio --name=sw --rw=write --bs=1M --iodepth=4 "${common[@]}" | cut -d';' -f48)
  log "$label: 4k randread QD32 $IOPS_RR IOPS, 4k randwrite QD32 $IOPS_RW IOPS, 1M read $BW_SR KiB/s, 1M write $BW_SW KiB/s"
}

# bench_plugin QUEUES DIRECT_IO: stage and publish with QUEUES queues per device and the file store's
# directIo parameter, run the jobs, tear down.
bench_plugin() {
  start_plugin "bench-q$1-$2" --device-queues "$1"
  csi NodeStageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'",'$cap',"volumeContext":{"store":"file","root":"'$store'","directIo":"'$2'"}}' > /dev/null
  csi NodePublishVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'","targetPath":"'$target'",'$cap'}' > /dev/null
  run_jobs "$target" "ublk (node plugin, file store, $1 queue(s) per device, directIo $2)"
  csi NodeUnpublishVolume '{"volumeId":"'$volume_id'","targetPath":"'$target'"}' > /dev/null
  csi NodeUnstageVolume '{"volumeId":"'$volume_id'","stagingTargetPath":"'$staging'"}' > /dev/null
  kill_plugin TERM
  PLUGIN_PID=""
}

bench_plugin 1 on
direct_q1=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")
bench_plugin 2 on
direct_q2=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")
bench_plugin 1 off
buffered_q1=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")

# bench_loop LABEL LOSETUP-OPTION...: the same ext4 on a loop device over the same image.
bench_loop() {
  local label=$1 loop
  shift
  loop=$(losetup -f --show "$@" "$image")
  mkdir -p "$SCENARIO_DIR/loopmnt"
  mount -t ext4 "$loop" "$SCENARIO_DIR/loopmnt"
  run_jobs "$SCENARIO_DIR/loopmnt" "loop $label (same file, same ext4)"
  umount "$SCENARIO_DIR/loopmnt"
  losetup -d "$loop"
}
bench_loop "--direct-io=on" --direct-io=on
loop_direct=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")
bench_loop "(buffered, the default)"
loop_buffered=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# compare LABEL UBLK-ARRAY LOOP-ARRAY
compare() {
  declare -n u=$2 l=$3
  figure "node ext4 $1, same file and fs, ${seconds}s each (TCG: ratios only): 4k randread QD32 $(ratio "${u[0]}" "${l[0]}")x (${u[0]} vs ${l[0]} IOPS), 4k randwrite QD32 $(ratio "${u[1]}" "${l[1]}")x (${u[1]} vs ${l[1]} IOPS), 1M seq read $(ratio "${u[2]}" "${l[2]}")x (${u[2]} vs ${l[2]} KiB/s), 1M seq write $(ratio "${u[3]}" "${l[3]}")x (${u[3]} vs ${l[3]} KiB/s)"
  unset -n u l
}
compare "(direct image, 1 queue/device) vs loop --direct-io=on" direct_q1 loop_direct
compare "(direct image, 2 queues/device) vs loop --direct-io=on" direct_q2 loop_direct
compare "(directIo off, 1 queue/device) vs loop buffered (the default)" buffered_q1 loop_buffered
log "PASS bench-node-ext4-vs-loop"
