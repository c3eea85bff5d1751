#!/usr/bin/env bash
# kernel: 6.16 (UBLK_F_AUTO_BUF_REG; tests/kernel/run.sh runs this in a second boot of a newer kernel)
# Zero copy for the nbd store: the device is created with UBLK_F_AUTO_BUF_REG, and a READ of 64 KiB
# or more is received from the socket straight into the request's registered pages (READ_FIXED on
# the queue's ring), so the socket's copy is the only one, as with the kernel's client.
# (a) fio 256 KiB random writes with crc32c verify as it goes (the verify reads are zero-copy receives) while
#     nbdkit is SIGKILLed and restarted: err=0, verify passes (requests reissued on the new connection
#     keep their registered pages).
# (b) the bench of bench-nbd-store against the kernel's nbd-client in this boot, with zero copy (and,
#     with BENCH_EXTRAS=1, one round with it turned off, --no-zero-copy): the ratios.
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_nbd_bench.sh"
keep_scenario_files

port=10812
image=$SCENARIO_DIR/zc.img
truncate -s 256M "$image"
start_nbdkit "$port" "$image"
start_server zc attach --store "nbd://127.0.0.1:$port/" --queues 2 --depth 32 --state-dir "$STATE_DIR"
flags=$(attach_flags zc)
flags_have_auto_buf_reg "$flags" || fail "the nbd device was not created with UBLK_F_AUTO_BUF_REG (flags: $flags)"
log "nbd device $DEVICE with zero copy (flags $flags)"

nbdkit_fault_under_fio fio-zc "$port" "$image" 2 40 "$DEVICE" --direct=1 --ioengine=libaio --rw=randwrite --bs=256k \
  --iodepth=8 --numjobs=2 --offset_increment=128M --size=48M --verify=crc32c --verify_fatal=1 --do_verify=1 \
  --verify_backlog=16 --group_reporting
figure "nbd store, zero copy: nbdkit SIGKILLed and restarted after 2s under fio 256k randwrite+crc32c verify: err=0, verify passed"
stop_server "$SERVER_PID" zc
kill -TERM "$NBDKIT_PID" 2>/dev/null || true

nbd_bench_available nbd-zero-copy || { log "PASS nbd-zero-copy (bench skipped)"; exit 0; }
nbd_bench_vs_kernel "zero-copy"
flags_have_auto_buf_reg "$NBD_BENCH_FLAGS" || fail "the bench's nbd device was not zero copy (flags: $NBD_BENCH_FLAGS)"
if [[ $BENCH_EXTRAS == 1 ]]; then
  # The same bench with zero copy turned off, in this boot: what zero copy itself buys (one round,
  # as a pointer; the goal is judged on the rounds above).
  NBD_BENCH_ROUNDS=1 nbd_bench_vs_kernel "user-copy" --no-zero-copy
  flags_have_auto_buf_reg "$NBD_BENCH_FLAGS" && fail "--no-zero-copy still created a zero-copy device (flags: $NBD_BENCH_FLAGS)"
fi
log "PASS nbd-zero-copy"
