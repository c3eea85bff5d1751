#!/usr/bin/env bash
# An s3-store device: s3rver (the npm S3 server from tools/s3rver) on loopback, `ublk-csi attach
# --store s3://...` makes a volume of chunk objects /dev/ublkbN, fio writes it on 2 queues with crc32c
# verification (zero errors). The device is detached (its flush uploads every dirty chunk and the
# manifest), then attached again with an EMPTY local cache: fio verifies that everything it wrote
# comes back from the bucket itself.
source "$(dirname "$0")/_lib.sh"

port=9500
start_s3rver "$port" ublk-kernel
volume="s3://ublk-kernel/pvcs/pvc-s3-fio?endpoint=http://127.0.0.1:$port&region=us-east-1&path-style=true&chunk-size=1Mi"

start_server s3 attach --store "$volume&cache-dir=$SCENARIO_DIR/cache-first" --size 256M --queues 2 --depth 32 \
  --state-dir "$STATE_DIR" --stats
log "s3 device $DEVICE"
grep -q "S3RVER" "$STATE_DIR"/*.json && fail "credentials leaked into the recovery record"

fio_checked "fio verify on the s3 device" "$SCENARIO_DIR/fio-verify.txt" \
    --name=s3-verify --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite \
    --bssplit=4k/50:64k/30:256k/20 --iodepth=16 --numjobs=2 --offset_increment=128M --size=16M \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting
grep -E "^ *(READ|WRITE):" "$SCENARIO_DIR/fio-verify.txt"
figure "s3 randwrite+verify: $(fio_bw "$SCENARIO_DIR/fio-verify.txt" WRITE)"

# A sequential pattern with FUA-free writes and a final fsync (FLUSH): durable in the bucket on return.
fio_checked "sequential write on the s3 device" "$SCENARIO_DIR/fio-write.txt" \
    --name=s3-persist --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=4 \
    --offset=192M --size=24M --verify=crc32c --do_verify=0 --fsync_on_close=1
figure "s3 seq write 1M: $(fio_bw "$SCENARIO_DIR/fio-write.txt" WRITE)"
stop_server "$SERVER_PID" s3
[[ ! -e $DEVICE ]] || fail "$DEVICE still exists after SIGTERM"
objects=$(find "$SCENARIO_DIR/s3/ublk-kernel" -type f -name '*._S3rver_object' | wc -l)
log "bucket holds $objects objects"
[[ $objects -gt 0 ]] || fail "nothing reached the bucket"

# Attach again with a new, empty cache directory: every byte now comes from the bucket.
rm -rf "$SCENARIO_DIR/cache-first"
start_server again attach --store "$volume&cache-dir=$SCENARIO_DIR/cache-second" --queues 2 --state-dir "$STATE_DIR"
log "reattached the volume as $DEVICE with an empty cache"
fio_checked "re-verify from the bucket of the data flushed before the detach" "$SCENARIO_DIR/fio-reverify.txt" \
    --name=s3-persist --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=4 \
    --offset=192M --size=24M --verify=crc32c --verify_only --verify_fatal=1
figure "s3 re-verify from the bucket (cold cache): $(fio_bw "$SCENARIO_DIR/fio-reverify.txt" READ)"
stop_server "$SERVER_PID" again

log "PASS s3-fio-verify"
