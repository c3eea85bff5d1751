#!/usr/bin/env bash
# Benchmark (prints figures; asserts only that everything ran without errors): a file-backed ublk
# device with O_DIRECT (the default), the same with buffered I/O (direct-io=off), and the kernel loop
# driver with --direct-io=on, all over image files on one ext4 filesystem in the same boot (the
# guest's /tmp is tmpfs, so the ext4 lives on a loop device). fio 4 KiB random writes then reads at
# queue depth 32 on each. Under TCG only the ratios mean anything.
source "$(dirname "$0")/_lib.sh"
runtime=${BENCH_RUNTIME:-5}
fs=$SCENARIO_DIR/ext4
mkdir -p "$fs"
truncate -s 1G "$SCENARIO_DIR/ext4.img"
mkfs.ext4 -q -F "$SCENARIO_DIR/ext4.img"
ext4_loop=$(losetup --find --show "$SCENARIO_DIR/ext4.img")
mount "$ext4_loop" "$fs"
loop_dev=""
cleanup() {
  cleanup_servers
  [[ -n $loop_dev ]] && losetup -d "$loop_dev" 2>/dev/null
  umount "$fs" 2>/dev/null; losetup -d "$ext4_loop" 2>/dev/null
  true
}
trap cleanup EXIT
for name in direct buffered loop; do truncate -s 256M "$fs/$name.img"; done

# bench NAME DEVICE: randwrite then randread; sets IOPS_W and IOPS_R.
bench() {
  local name=$1 dev=$2
  for rw in randwrite randread; do
    fio_checked "$name $rw" "$SCENARIO_DIR/$name-$rw.txt" --name="$name" --filename="$dev" --direct=1 --rw=$rw --bs=4k \
      --size=128M --iodepth=32 --ioengine=libaio --time_based --runtime="$runtime" --group_reporting
  done
  IOPS_W=$(iops_of "$SCENARIO_DIR/$name-randwrite.txt")
  IOPS_R=$(iops_of "$SCENARIO_DIR/$name-randread.txt")
  log "$name: randwrite $IOPS_W IOPS, randread $IOPS_R IOPS"
}
# iops_of FIO_OUTPUT: the first IOPS figure of fio's normal output as a plain number ("12.3k" -> 12300).
iops_of() { grep -Eo 'IOPS=[0-9.k]+' "$1" | head -1 | cut -d= -f2 | awk '{ v = $1; if (v ~ /k$/) { sub(/k$/, "", v); v *= 1000 } print v }'; }

loop_dev=$(losetup --find --show --direct-io=on "$fs/loop.img")
[[ $(cat /sys/block/${loop_dev#/dev/}/loop/dio) == 1 ]] || fail "$loop_dev did not enable direct I/O"
bench loop "$loop_dev"; loop_w=$IOPS_W; loop_r=$IOPS_R

start_server direct attach --store "file:$fs/direct.img?direct-io=on" --state-dir "$STATE_DIR" --queues 1
bench ublk-direct "$DEVICE"; direct_w=$IOPS_W; direct_r=$IOPS_R
[[ $(cat /sys/block/${DEVICE#/dev/}/queue/logical_block_size) == 4096 ]] || fail "direct mode should expose 4096-byte logical blocks"
stop_server "$SERVER_PID" direct

start_server buffered attach --store "file:$fs/buffered.img?direct-io=off" --state-dir "$STATE_DIR" --queues 1
bench ublk-buffered "$DEVICE"; buffered_w=$IOPS_W; buffered_r=$IOPS_R
stop_server "$SERVER_PID" buffered

figure "randwrite 4k QD32 IOPS: ublk direct $direct_w, ublk buffered $buffered_w, loop dio $loop_w"
figure "randread  4k QD32 IOPS: ublk direct $direct_r, ublk buffered $buffered_r, loop dio $loop_r"
figure "ublk direct / loop dio: randwrite $(ratio "$direct_w" "$loop_w")x, randread $(ratio "$direct_r" "$loop_r")x"
figure "ublk buffered / loop dio: randwrite $(ratio "$buffered_w" "$loop_w")x, randread $(ratio "$buffered_r" "$loop_r")x"
figure "ublk direct / ublk buffered: randwrite $(ratio "$direct_w" "$buffered_w")x, randread $(ratio "$direct_r" "$buffered_r")x"
figure "page cache holding the direct image after its run: $(fincore --bytes --noheadings --output RES "$fs/direct.img" 2>/dev/null || echo n/a) bytes"
log "PASS bench-file-direct"
