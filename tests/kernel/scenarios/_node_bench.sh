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

# bench_teardown: stops the bench plugin, unmounts the RAM disk's filesystem and gives its pages back.
bench_teardown() {
  bench_plugin_stop
  umount "$BENCH_MEDIUM"
  blkdiscard -f /dev/ram0
}

# bench_fio DIR FIO-OPTION...: fio on the jobs' 256 MiB file in DIR, O_DIRECT through libaio (fio
# lays the file out first when it is missing).
bench_fio() {
  local dir=$1
  shift
  fio --directory="$dir" --filename=bench.dat --size=256M --direct=1 --ioengine=libaio "$@"
}

# four_jobs DIR SECONDS: the four jobs on the file in DIR, SECONDS each; sets IOPS_RR IOPS_RW
# BW_SR BW_SW (KiB/s).
four_jobs() {
  local timed=(--time_based --runtime="$2" --group_reporting --output-format=terse --terse-version=3)
  # terse v3: field 8 = read IOPS, 49 = write IOPS, 7 = read KiB/s, 48 = write KiB/s
  IOPS_RR=$(bench_fio "$1" --name=rr --rw=randread --bs=4k --iodepth=32 "${timed[@]}" | cut -d';' -f8)
  IOPS_RW=$(bench_fio "$1" --name=rw --rw=randwrite --bs=4k --iodepth=32 "${timed[@]}" | cut -d';' -f49)
  BW_SR=$(bench_fio "$1" --name=sr --rw=read --bs=1M --iodepth=4 "${timed[@]}" | cut -d';' -f7)
  BW_SW=$(bench_fio "$1" --name=sw --rw=write --bs=1M --iodepth=4 "${timed[@]}" | cut -d';' -f48)
}

# run_jobs DIR LABEL: the four jobs on one 256 MiB file in DIR, BENCH_SECONDS each; sets IOPS_RR
# IOPS_RW BW_SR BW_SW (KiB/s).
run_jobs() {
  local dir=$1 label=$2
  bench_fio "$dir" --name=layout --rw=write --bs=1M > /dev/null
  # Not measured: the first random reads after the layout ran at half speed now and then, on ublk
  # and loop alike (two back-to-back 5 s randreads: 18966 then 33523 IOPS, 25513 then 36601), which
  # made single rounds swing by 40%.
  bench_fio "$dir" --name=warm-up --rw=randread --bs=4k --iodepth=32 --time_based --runtime=2 > /dev/null
  four_jobs "$dir" "$BENCH_SECONDS"
  log "$label: 4k randread QD32 $IOPS_RR IOPS, 4k randwrite QD32 $IOPS_RW IOPS, 1M read $BW_SR KiB/s, 1M write $BW_SW KiB/s"
}

# The plugin process of the ublk runs, kept across rounds and setups with the same options: a node
# plugin serves for days, so a pod meets a process whose I/O path the runtime compiled long ago at
# full optimisation. A new process per run measured its first seconds instead, while the tiered JIT
# recompiled that path (tens of seconds under TCG): one build's 4k randread went from 3472 to 11758
# IOPS between rounds (6.17, zero copy), where on 6.12 a plugin kept across nine runs stayed within
# 6428-10049.
BENCH_PLUGIN_OPTIONS=""
# 0 until the running bench plugin has run the four jobs once, unmeasured (bench_plugin does it).
BENCH_PLUGIN_WARM=0

# bench_plugin_start [PLUGIN-OPTION...]: the bench plugin with these options, started unless it
# already runs with them.
bench_plugin_start() {
  [[ -n $PLUGIN_PID && $BENCH_PLUGIN_OPTIONS == "$*" ]] && return 0
  bench_plugin_stop
  start_plugin "bench${*:+ $*}" "$@"
  BENCH_PLUGIN_OPTIONS="$*"
  BENCH_PLUGIN_WARM=0
}

# bench_plugin_stop: stops the bench plugin if one runs.
bench_plugin_stop() {
  [[ -n $PLUGIN_PID ]] || return 0
  kill_plugin TERM
  PLUGIN_PID="" BENCH_PLUGIN_OPTIONS=""
}

# bench_plugin QUEUES DIRECT_IO [PLUGIN-OPTION...]: stage and publish the bench volume with QUEUES
# queues per device and the file store's directIo parameter, on the bench plugin started with
# those options, run the jobs, unpublish and unstage. Sets BENCH_MAX_SECTORS_KB (the device's
# max_sectors_kb) and BENCH_ZERO_COPY (the engine's record of UBLK_F_AUTO_BUF_REG: true or false).
bench_plugin() {
  local queues=$1 direct=$2 cap device
  shift 2
  cap='"volumeCapability":{"mount":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
  bench_plugin_start --device-queues "$queues" "$@"
  csi NodeStageVolume '{"volumeId":"'$BENCH_VOLUME_ID'","stagingTargetPath":"'$BENCH_STAGING'",'$cap',"volumeContext":{"store":"file","root":"'$BENCH_STORE'","directIo":"'$direct'"}}' > /dev/null
  csi NodePublishVolume '{"volumeId":"'$BENCH_VOLUME_ID'","stagingTargetPath":"'$BENCH_STAGING'","targetPath":"'$BENCH_TARGET'",'$cap'}' > /dev/null
  device=$(findmnt -n -o SOURCE "$BENCH_STAGING")
  BENCH_MAX_SECTORS_KB=$(cat "/sys/block/${device#/dev/}/queue/max_sectors_kb")
  BENCH_ZERO_COPY=$(device_zero_copy "$device")
  if [[ $BENCH_PLUGIN_WARM == 0 ]]; then
    # So that the new process has run its I/O paths often enough for the runtime to compile them
    # at full optimisation before anything is measured.
    four_jobs "$BENCH_TARGET" 3
    BENCH_PLUGIN_WARM=1
  fi
  run_jobs "$BENCH_TARGET" "ublk (node plugin, file store, $queues queue(s) per device, directIo $direct, zero copy $BENCH_ZERO_COPY, max_sectors_kb $BENCH_MAX_SECTORS_KB${*:+, $*})"
  csi NodeUnpublishVolume '{"volumeId":"'$BENCH_VOLUME_ID'","targetPath":"'$BENCH_TARGET'"}' > /dev/null
  csi NodeUnstageVolume '{"volumeId":"'$BENCH_VOLUME_ID'","stagingTargetPath":"'$BENCH_STAGING'"}' > /dev/null
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

# The four figures of each setup, per round: BENCH_SAMPLES["SETUP I"] = " v1 v2 ..." with I = 0 (4k
# randread IOPS), 1 (4k randwrite IOPS), 2 (1 MiB read KiB/s), 3 (1 MiB write KiB/s).
declare -A BENCH_SAMPLES

# bench_rounds ROUNDS SETUP...: runs each SETUP (a function that runs the jobs, as bench_plugin and
# bench_loop do) once per round, the order reversed every other round so that a drift in the host's
# load does not always favour the same side, and records its figures in BENCH_SAMPLES.
bench_rounds() {
  local rounds=$1 round setup i figures order
  shift
  for round in $(seq "$rounds"); do
    order=("$@")
    if (( round % 2 == 0 )); then
      order=()
      for (( i = $#; i >= 1; i-- )); do order+=("${!i}"); done
    fi
    for setup in "${order[@]}"; do
      log "round $round of $rounds: $setup"
      "$setup"
      figures=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")
      for i in 0 1 2 3; do BENCH_SAMPLES["$setup $i"]+=" ${figures[$i]}"; done
    done
  done
}

# compare LABEL UBLK-SETUP LOOP-SETUP: prints the four ratios as a figure: per job the median of the
# per-round ratios (each round's two runs were back to back), with the medians of the figures.
compare() {
  local label=$1 ublk=$2 loop=$3 i names units text="" rounds
  names=("4k randread QD32" "4k randwrite QD32" "1M seq read" "1M seq write")
  units=(IOPS IOPS KiB/s KiB/s)
  for i in 0 1 2 3; do
    local -a u l r=()
    read -ra u <<< "${BENCH_SAMPLES["$ublk $i"]}"
    read -ra l <<< "${BENCH_SAMPLES["$loop $i"]}"
    local k
    for k in "${!u[@]}"; do r+=("$(ratio "${u[$k]}" "${l[$k]}")"); done
    rounds=${#r[@]}
    text+="${text:+, }${names[$i]} $(median "${r[@]}")x ($(median "${u[@]}") vs $(median "${l[@]}") ${units[$i]}; rounds ${r[*]})"
  done
  figure "node ext4 $label, same file and fs, ${BENCH_SECONDS}s jobs, median of $rounds round(s) (TCG: ratios only): $text"
}
