#!/usr/bin/env bash
# What a pod gets from the node plugin: fio 4k random read/write at QD32 and 1 MiB sequential
# read/write inside the ext4 the plugin staged on a file volume, against the same filesystem on the
# same backing file through the kernel loop driver, same boot, like for like in both caching modes:
# the plugin's default (O_DIRECT image, 1 and 2 queues) against `losetup --direct-io=on`, and
# `directIo: off` (the image through the page cache) against the default, buffered loop device.
# Under TCG only the ratios mean anything (goal: >= 0.9x loop); each is the median of per-round
# ratios. The jobs live in _node_bench.sh.
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"
source "$(dirname "$0")/_node_bench.sh"

setup_kubelet_dir
bench_setup

direct_q1() { bench_plugin 1 on; }
direct_q2() { bench_plugin 2 on; }
buffered_q1() { bench_plugin 1 off; }
loop_direct() { bench_loop "--direct-io=on" --direct-io=on; }
loop_buffered() { bench_loop "(buffered, the default)"; }

# The plugin's default against its like-for-like loop device, BENCH_ROUNDS interleaved rounds; then,
# with BENCH_EXTRAS=1, one round of the others: 2 queues per device (measured slower than 1 on this 2-vCPU guest; its
# line pairs with the first round's loop run) and the page-cache mode against the buffered loop.
bench_rounds "$BENCH_ROUNDS" direct_q1 loop_direct
compare "(direct image, 1 queue/device) vs loop --direct-io=on" direct_q1 loop_direct
if [[ $BENCH_EXTRAS == 1 ]]; then
  bench_rounds 1 direct_q2 buffered_q1 loop_buffered
  compare "(direct image, 2 queues/device) vs loop --direct-io=on" direct_q2 loop_direct
  compare "(directIo off, 1 queue/device) vs loop buffered (the default)" buffered_q1 loop_buffered
fi
bench_teardown
log "PASS bench-node-ext4-vs-loop"
