#!/usr/bin/env bash
# The CSI node plugin over its socket with kubelet's paths, for the other stores and access types:
# (1) an s3 volume with xfs, credentials only as node-stage secrets, the plugin killed with -9
#     mid-fio and the new process adopting the device and the write-back cache (fio err=0, verify
#     passes), then unstage flushes to the bucket and a fresh stage reads the same bytes back;
# (2) an rpc volume (token as node-stage secret) as a raw block volume published onto a file;
# (3) expansion on this kernel: NodeExpandVolume says the volume grows at the next stage, and it does.
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"
: "${UBLK_BLOCKSTORE_SERVER:?UBLK_BLOCKSTORE_SERVER must point at the published ublk-blockstore-server}"

setup_kubelet_dir
start_s3rver 9500 node-bucket
s3_key=$AWS_ACCESS_KEY_ID s3_secret=$AWS_SECRET_ACCESS_KEY
start_plugin first

# ---- (1) s3 + xfs, kill -9 mid-write -------------------------------------------------------------
s3_params=(--param bucket=node-bucket --param endpoint=http://127.0.0.1:9500 --param pathStyle=true --param chunkSize=1Mi)
STORE_SECRET_accessKeyId=$s3_key STORE_SECRET_secretAccessKey=$s3_secret \
  "$UBLK_CSI" create-volume --store s3 "${s3_params[@]}" --param "cacheDir=$SCENARIO_DIR/cli-cache" --name pvc-s3 --size 320M > /dev/null
s3_id=s3-abc/pvc-s3
s3_staging=$(staging_path "$s3_id")
s3_target=$(target_path pod-uid-2 pv-s3)
mkdir -p "$s3_staging" "$(dirname "$s3_target")"
s3_context='"volumeContext":{"store":"s3","bucket":"node-bucket","endpoint":"http://127.0.0.1:9500","pathStyle":"true","chunkSize":"1Mi","cacheDir":"'$SCENARIO_DIR/node-cache'"}'
s3_secrets='"secrets":{"accessKeyId":"'$s3_key'","secretAccessKey":"'$s3_secret'"}'
xfs_cap='"volumeCapability":{"mount":{"fsType":"xfs"},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
s3_stage='{"volumeId":"'$s3_id'","stagingTargetPath":"'$s3_staging'",'$xfs_cap','$s3_context','$s3_secrets'}'
s3_publish='{"volumeId":"'$s3_id'","stagingTargetPath":"'$s3_staging'","targetPath":"'$s3_target'",'$xfs_cap'}'
csi NodeStageVolume "$s3_stage" > /dev/null
csi NodePublishVolume "$s3_publish" > /dev/null
s3_device=$(findmnt -n -o SOURCE "$s3_staging")
[[ $(findmnt -n -o FSTYPE "$s3_target") == xfs ]] || fail "the s3 volume is not mounted as xfs at $s3_target"
log "s3 volume on $s3_device, xfs, published at $s3_target"
grep -rq "$s3_secret" "$NODE_STATE/volumes/"*[0-9a-f].json && fail "the s3 secret leaked into the volume record"
[[ $(stat -c %a "$NODE_STATE/volumes/"*.secrets.json) == 600 ]] || fail "the kept secrets are not mode 600"

fio_across_restart kill9 s3crash first second "$s3_id" "$s3_device" "$s3_target" 24M xfs s3
before=$(md5sum < "$s3_target/s3crash.0.0")
csi NodeUnpublishVolume '{"volumeId":"'$s3_id'","targetPath":"'$s3_target'"}' > /dev/null
csi NodeUnstageVolume '{"volumeId":"'$s3_id'","stagingTargetPath":"'$s3_staging'"}' > /dev/null
rm -rf "$SCENARIO_DIR/node-cache"   # what comes back must come from the bucket
csi NodeStageVolume "$s3_stage" > /dev/null
csi NodePublishVolume "$s3_publish" > /dev/null
after=$(md5sum < "$s3_target/s3crash.0.0")
[[ $before == "$after" ]] || fail "the file written across the crash changed after unstage and a fresh stage from the bucket"
csi NodeUnpublishVolume '{"volumeId":"'$s3_id'","targetPath":"'$s3_target'"}' > /dev/null
csi NodeUnstageVolume '{"volumeId":"'$s3_id'","stagingTargetPath":"'$s3_staging'"}' > /dev/null
figure "node plugin xfs on s3 volume: kill -9 mid-fio adopted (err=0, verify passed); after unstage and an empty cache the re-staged file reads back identical from the bucket"

# ---- (2) rpc volume as a raw block device ---------------------------------------------------------
ip link set lo up 2>/dev/null || true
token_file=$SCENARIO_DIR/token
(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file")
"$UBLK_BLOCKSTORE_SERVER" --listen tcp://127.0.0.1:9401 --root "$SCENARIO_DIR/blockstore" --token-file "$token_file" \
  > "$SCENARIO_DIR/blockstore.log" 2>&1 &
SERVER_PIDS+=("$!")
mkdir -p "$SCENARIO_DIR/blockstore"
for _ in $(seq 600); do grep -q "serving volumes of" "$SCENARIO_DIR/blockstore.log" && break; sleep 0.2; done
grep -q "serving volumes of" "$SCENARIO_DIR/blockstore.log" || { cat "$SCENARIO_DIR/blockstore.log"; fail "block-store server did not start"; }
STORE_SECRET_token=$(cat "$token_file") "$UBLK_CSI" create-volume --store rpc --param endpoint=tcp://127.0.0.1:9401 --name pvc-rpc --size 64M > /dev/null
rpc_id=rpc-def/pvc-rpc
rpc_staging=$KUBELET/plugins/kubernetes.io/csi/volumeDevices/staging/pv-rpc
rpc_target=$KUBELET/plugins/kubernetes.io/csi/volumeDevices/publish/pv-rpc/pod-uid-3
mkdir -p "$rpc_staging" "$(dirname "$rpc_target")"
block_cap='"volumeCapability":{"block":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
csi NodeStageVolume '{"volumeId":"'$rpc_id'","stagingTargetPath":"'$rpc_staging'",'$block_cap',"volumeContext":{"store":"rpc","endpoint":"tcp://127.0.0.1:9401"},"secrets":{"token":"'$(cat "$token_file")'"}}' > /dev/null
csi NodePublishVolume '{"volumeId":"'$rpc_id'","stagingTargetPath":"'$rpc_staging'","targetPath":"'$rpc_target'",'$block_cap'}' > /dev/null
[[ -b $rpc_target ]] || fail "$rpc_target is not a block device after NodePublishVolume"
head -c 8M /dev/urandom > "$SCENARIO_DIR/pattern"
dd if="$SCENARIO_DIR/pattern" of="$rpc_target" bs=1M oflag=direct status=none
[[ $(head -c 8M "$rpc_target" | md5sum) == $(md5sum < "$SCENARIO_DIR/pattern") ]] || fail "the block volume read back different bytes"
stats=$(csi NodeGetVolumeStats '{"volumeId":"'$rpc_id'","volumePath":"'$rpc_target'"}')
[[ $stats == *'"total": "67108864"'* && $stats != *INODES* ]] || fail "unexpected block stats: $stats"
csi NodeUnpublishVolume '{"volumeId":"'$rpc_id'","targetPath":"'$rpc_target'"}' > /dev/null
[[ ! -e $rpc_target ]] || fail "$rpc_target still exists after NodeUnpublishVolume"
csi NodeUnstageVolume '{"volumeId":"'$rpc_id'","stagingTargetPath":"'$rpc_staging'"}' > /dev/null
grep -rq "$(cat "$token_file")" "$SCENARIO_DIR"/first.log "$SCENARIO_DIR"/second.log && fail "the rpc token leaked into the plugin log"
figure "node plugin raw block on rpc volume: published onto a file, 8 MiB written and read back identical, stats in bytes, unpublish removes the file"

# ---- (3) expansion at the next stage (this kernel has no UBLK_U_CMD_UPDATE_SIZE) -----------------
store=$SCENARIO_DIR/store
mkdir -p "$store"
"$UBLK_CSI" create-volume --store file --param "root=$store" --name vol2 --size 64M > /dev/null
file_id=file-node/vol2
staging=$(staging_path "$file_id")
target=$(target_path pod-uid-4 pv-vol2)
mkdir -p "$staging" "$(dirname "$target")"
ext4_cap='"volumeCapability":{"mount":{},"accessMode":{"mode":"SINGLE_NODE_WRITER"}}'
stage='{"volumeId":"'$file_id'","stagingTargetPath":"'$staging'",'$ext4_cap',"volumeContext":{"store":"file","root":"'$store'"}}'
publish='{"volumeId":"'$file_id'","stagingTargetPath":"'$staging'","targetPath":"'$target'",'$ext4_cap'}'
csi NodeStageVolume "$stage" > /dev/null
csi NodePublishVolume "$publish" > /dev/null
size_before=$(df -B1 --output=size "$target" | tail -1)
"$UBLK_CSI" expand-volume --store file --param "root=$store" --name vol2 --size 128M > /dev/null
csi_expect FAILED_PRECONDITION NodeExpandVolume '{"volumeId":"'$file_id'","volumePath":"'$target'","capacityRange":{"requiredBytes":"134217728"}}'
csi NodeUnpublishVolume '{"volumeId":"'$file_id'","targetPath":"'$target'"}' > /dev/null
csi NodeUnstageVolume '{"volumeId":"'$file_id'","stagingTargetPath":"'$staging'"}' > /dev/null
csi NodeStageVolume "$stage" > /dev/null
csi NodePublishVolume "$publish" > /dev/null
size_after=$(df -B1 --output=size "$target" | tail -1)
[[ $size_after -gt $((size_before + 50 * 1024 * 1024)) ]] || fail "the filesystem did not grow at the next stage ($size_before -> $size_after bytes)"
expanded=$(csi NodeExpandVolume '{"volumeId":"'$file_id'","volumePath":"'$target'","capacityRange":{"requiredBytes":"134217728"}}')
[[ $expanded == *134217728* ]] || fail "NodeExpandVolume after the re-stage answered: $expanded"
csi NodeUnpublishVolume '{"volumeId":"'$file_id'","targetPath":"'$target'"}' > /dev/null
csi NodeUnstageVolume '{"volumeId":"'$file_id'","stagingTargetPath":"'$staging'"}' > /dev/null
fsck.ext4 -fn "$store/volumes/vol2.img" > "$SCENARIO_DIR/fsck.txt" 2>&1 || { cat "$SCENARIO_DIR/fsck.txt"; fail "fsck found errors after the grown volume was unstaged"; }
figure "node plugin expansion on 6.12: NodeExpandVolume answers FAILED_PRECONDITION (grows at next stage); after re-stage ext4 grew $size_before -> $size_after bytes, NodeExpandVolume OK, fsck clean"

[[ -z $(ls /dev/ublkb* 2>/dev/null) ]] || fail "devices left: $(ls /dev/ublkb*)"
[[ -z $(ls -A "$NODE_STATE/volumes" 2>/dev/null) ]] || fail "volume records left: $(ls "$NODE_STATE/volumes")"
kill_plugin TERM
[[ $PLUGIN_EXIT -eq 0 ]] || fail "plugin exited with $PLUGIN_EXIT after SIGTERM"
PLUGIN_PID=""
log "PASS node-s3-xfs-rpc-block-expand"
