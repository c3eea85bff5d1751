# The node-plugin benchmark (sourced after _lib.sh and _node.sh): fio 4k random read/write at QD32
# and 1 MiB sequential read/write inside the ext4 the plugin staged on a file volume, against the same
# filesystem on the same backing file through the kernel loop driver, same boot. Under TCG only the
# ratios mean anything (goal: >= 0.9x loop). BENCH_SECONDS per job (default 5).

BENCH_SECONDS=${BENCH_SECONDS:-5}

# bench_setup: a 512 MiB file volume for the benchmark; sets BENCH_STORE, BENCH_IMAGE and the paths.
# The store lives on an ext4 of its own on the RAM disk /dev/ram0 (brd), as a node's store lives on a
# disk filesystem: the guest's /tmp (tmpfs under overlayfs) cannot do I/O without blocking
# (no FMODE_NOWAIT), so io_uring would hand every read and write of the image to one of its worker
# threads, a thread hop per request that a disk filesystem does not cost (the loop driver calls the
# file from its own worker either way). brd serves every bio in the submitting thread.
bench_setup() {
  [[ -b /dev/ram0 ]] || fail "no /dev/ram0: the VM predates brd in scripts/vm/prepare.sh"
  BENCH_MEDIUM=$SCENARIO_DIR/bench-medium
  # Inode tables and journal initialised now, not by a kernel thread during the jobs.
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/ram0
  mkdir -p "$BENCH_MEDIUM"
  mount /dev/ram0 "$BENCH_MEDIUM"
  BENCH_STORE=$BENCH_MEDIUM/bench-store
  file_volume "$BENCH_STORE" bench 512M pod-bench pv-bench
  BENCH_IMAGE=$BENCH_STORE/volumes/bench.img
  BENCH_VOLUME_ID=$FILE_VOLUME_ID BENCH_STAGING=$FILE_STAGING BENCH_TARGET=$FILE_TARGET
}

# bench_teardown: unmounts the RAM disk's filesystem and gives its pages back.
bench_teardown() {
  umount "$BENCH_MEDIUM"
  blkdiscard -f /dev/ram0
}

# run_jobs DIR LABEL: the four jobs on one 256 MiB file in DIR; sets IOPS_RR IOPS_RW BW_SR BW_SW (KiB/s).
run_jobs() {
  local dir=$1 label=$2 common
  common=(--directory="$dir" --filename=bench.dat --size=256M --direct=1 --ioengine=libaio --time_based --runtime="$BENCH_SECONDS" --group_reporting --output-format=terse --terse-version=3)
  fio --name=layout --directory="$dir" --filename=bench.dat --size=256M --rw=write --bs=1M --direct=1 --ioengine=libaio > /dev/null
  # terse v3: field 8 = read IOPS, 49 = write IOPS, 7 = read KiB/s, 48 = write KiB/s
  IOPS_RR=$(fio --name=rr --rw=randread --bs=4k --iodepth=32 "${common[@]}" | cut -d';' -f8)
  IOPS_RW=$(fio --name=rw --rw=randwrite --bs=4k --iodepth=32 "${common[@]}" | cut -d';' -f49)
  BW_SR=$(fio --name=sr --rw=read --bs=1M --iodepth=4 "${common[@]}" | cut -d';' -f7)
  BW_SW=$(fio --name=sw --rw=write --bs=1M --iodepth=4 "${common[@]}" | cut -d';' -f48)
  log "$label: 4k randread QD32 $IOPS_RR IOPS, 4k randwrite QD32 $IOPS_RW IOPS, 1M read $BW_SR KiB/s, 1M write $BW_SW KiB/s"
}

# bench_plugin QUEUES DIRECT_IO [PLUGIN-OPTION...]: stage and publish the bench volume with QUEUES
# queues per device and the file store's directIo parameter, run the jobs, tear down. Sets
# BENCH_MAX_SECTORS_KB (the device's max_sectors_kb) and BENCH_ZERO_COPY (the engine's record of
# UBLK_F_AUTO_BUF_REG: true or false).
bench_plugin() {
  local queues=$1 direct=$2 cap device
  shift 2
  cap='"volumeCapability":{"mount":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
  start_plugin "bench-q$queues-$direct" --device-queues "$queues" "$@"
  csi NodeStageVolume '{"volumeId":"'$BENCH_VOLUME_ID'","stagingTargetPath":"'$BENCH_STAGING'",'$cap',"volumeContext":{"store":"file","root":"'$BENCH_STORE'","directIo":"'$direct'"}}' > /dev/null
  csi NodePublishVolume '{"volumeId":"'$BENCH_VOLUME_ID'","stagingTargetPath":"'$BENCH_STAGING'","targetPath":"'$BENCH_TARGET'",'$cap'}' > /dev/null
  device=$(findmnt -n -o SOURCE "$BENCH_STAGING")
  BENCH_MAX_SECTORS_KB=$(cat "/sys/block/${device#/dev/}/queue/max_sectors_kb")
  BENCH_ZERO_COPY=$(device_zero_copy "$device")
  run_jobs "$BENCH_TARGET" "ublk (node plugin, file store, $queues queue(s) per device, directIo $direct, zero copy $BENCH_ZERO_COPY, max_sectors_kb $BENCH_MAX_SECTORS_KB${*:+, $*})"
  csi NodeUnpublishVolume '{"volumeId":"'$BENCH_VOLUME_ID'","targetPath":"'$BENCH_TARGET'"}' > /dev/null
  csi NodeUnstageVolume '{"volumeId":"'$BENCH_VOLUME_ID'","stagingTargetPath":"'$BENCH_STAGING'"}' > /dev/null
  kill_plugin TERM
  PLUGIN_PID=""
}

# bench_loop LABEL LOSETUP-OPTION...: the same ext4 on a loop device over the same image. Sets
# BENCH_MAX_SECTORS_KB to the loop device's.
bench_loop() {
  local label=$1 loop
  shift
  loop=$(losetup -f --show "$@" "$BENCH_IMAGE")
  BENCH_MAX_SECTORS_KB=$(cat "/sys/block/${loop#/dev/}/queue/max_sectors_kb")
  mkdir -p "$SCENARIO_DIR/loopmnt"
  mount -t ext4 "$loop" "$SCENARIO_DIR/loopmnt"
  run_jobs "$SCENARIO_DIR/loopmnt" "loop $label (same file, same ext4, max_sectors_kb $BENCH_MAX_SECTORS_KB)"
  umount "$SCENARIO_DIR/loopmnt"
  losetup -d "$loop"
}

# device_zero_copy DEVICE: "true" when the engine created /dev/ublkbN with UBLK_F_AUTO_BUF_REG (its
# recovery record in the plugin's state directory says so), else "false".
device_zero_copy() {
  local record=$NODE_STATE/devices/ublk${1#/dev/ublkb}.json
  [[ -f $record ]] || fail "no recovery record $record for $1"
  jq -r '.autoBufferRegistration // false' "$record"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# compare LABEL UBLK-ARRAY LOOP-ARRAY: prints the four ratios as a figure.
compare() {
  declare -n u=$2 l=$3
  figure "node ext4 $1, same file and fs, ${BENCH_SECONDS}s each (TCG: ratios only): 4k randread QD32 $(ratio "${u[0]}" "${l[0]}")x (${u[0]} vs ${l[0]} IOPS), 4k randwrite QD32 $(ratio "${u[1]}" "${l[1]}")x (${u[1]} vs ${l[1]} IOPS), 1M seq read $(ratio "${u[2]}" "${l[2]}")x (${u[2]} vs ${l[2]} KiB/s), 1M seq write $(ratio "${u[3]}" "${l[3]}")x (${u[3]} vs ${l[3]} KiB/s)"
  unset -n u l
}
