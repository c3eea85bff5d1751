#!/usr/bin/env bash
# attach a memory store, mkfs.ext4, mount, write and read back, fsck, remove on SIGTERM; FLUSH,
# FUA, DISCARD and WRITE_ZEROES must each reach the backend (counted by attach --stats).
source "$(dirname "$0")/_lib.sh"

start_server attach attach --store memory --size 256M --queues 2 --state-dir "$STATE_DIR" --stats
log "serving $DEVICE"
[[ -f $STATE_DIR/ublk$DEVICE_ID.json ]] || fail "no recovery record for device $DEVICE_ID"
list_devices --state-dir "$STATE_DIR"
cat "$DEVICE_LIST"
grep -Eq "^$DEVICE_ID +live +$DEVICE +2 +128 +256M +memory" "$DEVICE_LIST" || fail "list does not show the device as live"

mkfs.ext4 -q -F "$DEVICE"
mnt=$SCENARIO_DIR/mnt; mkdir -p "$mnt"
mount "$DEVICE" "$mnt"
dd if=/dev/urandom of="$SCENARIO_DIR/payload" bs=1M count=32 status=none
cp "$SCENARIO_DIR/payload" "$mnt/payload"
sync
umount "$mnt"
# Remount so the read comes from the device, not the page cache.
echo 3 > /proc/sys/vm/drop_caches
mount "$DEVICE" "$mnt"
cmp "$SCENARIO_DIR/payload" "$mnt/payload" || fail "data read back differs"
rm "$mnt/payload"
fstrim -v "$mnt" || true
umount "$mnt"
fsck.ext4 -fn "$DEVICE" > "$SCENARIO_DIR/fsck.txt" 2>&1 || { cat "$SCENARIO_DIR/fsck.txt"; fail "fsck found errors"; }
log "fsck clean"

stop_server "$SERVER_PID" attach
grep -Eq "flushes=[1-9]" "$SCENARIO_DIR/attach.err" || fail "the backend saw no FLUSH"
# jbd2 writes its commit blocks with FUA when the device declares a volatile cache with FUA.
grep -Eq "fua_writes=[1-9]" "$SCENARIO_DIR/attach.err" || fail "the backend saw no FUA write (ext4 journal commits)"
grep -Eq "write_zeroes=[1-9]" "$SCENARIO_DIR/attach.err" || fail "the backend saw no WRITE_ZEROES (mkfs.ext4)"
figure "backend ops under ext4: $(grep -Eo 'fua_writes=[0-9]+ flushes=[0-9]+ discards=[0-9]+ write_zeroes=[0-9]+' "$SCENARIO_DIR/attach.err")"
grep -Eq "discards=[1-9]" "$SCENARIO_DIR/attach.err" || fail "the backend saw no DISCARD (fstrim)"
[[ ! -e $DEVICE ]] || fail "$DEVICE still exists after SIGTERM"
[[ ! -e $STATE_DIR/ublk$DEVICE_ID.json ]] || fail "recovery record left behind"
log "PASS attach-memory-ext4"
