#!/usr/bin/env bash
# kill -9 the attach process of a token-protected rpc-store device while fio writes, adopt the device
# with `ublk-csi recover`, and require fio's crc32c verification to pass with zero errors. The recovery
# record must keep the spec exactly as given (its token-file path, never the token): recover reopens the
# store from it. Then detach and verify again from the block-store server alone.
source "$(dirname "$0")/_lib.sh"

port=9402
start_blockstore_server "$port"
token_file=$TOKEN_FILE

spec="rpc://127.0.0.1:$port/pvc-rpc-crash?token-file=$token_file"
start_server first attach --store "$spec" --size 256M --queues 2 --state-dir "$STATE_DIR"
first_pid=$SERVER_PID
# The spec is stored in its canonical (percent-encoded) form: the path, not REDACTED.
grep -q "token-file=${token_file//\//%2F}" "$STATE_DIR"/*.json || { cat "$STATE_DIR"/*.json; fail "the recovery record does not keep the spec's token-file path"; }
grep -q "$(cat "$token_file")" "$STATE_DIR"/*.json && fail "the token leaked into the recovery record"

fio_job=(--name=crash --filename="$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16
         --numjobs=2 --offset_increment=128M --size=16M --verify=crc32c --verify_fatal=1 --group_reporting)
fio "${fio_job[@]}" --do_verify=1 > "$SCENARIO_DIR/fio.txt" 2>&1 &
fio_pid=$!
crash_server_under_fio "$first_pid" "$DEVICE_ID" "$fio_pid"

recover_under_fio rpc "$fio_pid"
stop_server "$SERVER_PID" second

start_server third attach --store "$spec" --queues 2 --state-dir "$STATE_DIR"
fio "${fio_job[@]}" --filename="$DEVICE" --verify_only > "$SCENARIO_DIR/fio-reverify.txt" 2>&1 \
  || { cat "$SCENARIO_DIR/fio-reverify.txt"; fail "data written across the crash did not verify from the server"; }
grep -Eq "err= *0" "$SCENARIO_DIR/fio-reverify.txt" || { cat "$SCENARIO_DIR/fio-reverify.txt"; fail "fio re-verify reported errors"; }
stop_server "$SERVER_PID" third
grep -q "$(cat "$token_file")" "$SCENARIO_DIR/blockstore.log" && fail "the token appears in the server log"
log "PASS kill9-recover-rpc"
