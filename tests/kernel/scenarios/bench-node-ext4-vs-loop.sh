#!/usr/bin/env bash
# What a pod gets from the node plugin: fio 4k random read/write at QD32 and 1 MiB sequential
# read/write inside the ext4 the plugin staged on a file volume, against the same filesystem on the
# same backing file through the kernel loop driver, same boot, like for like in both caching modes:
# the plugin's default (O_DIRECT image, 1 and 2 queues) against `losetup --direct-io=on`, and
# `directIo: off` (the image through the page cache) against the default, buffered loop device.
# Under TCG only the ratios mean anything (goal: >= 0.9x loop). The jobs live in _node_bench.sh.
source "$(dirname "$0")/_lib.sh"
source "$(dirname "$0")/_node.sh"
source "$(dirname "$0")/_node_bench.sh"

setup_kubelet_dir
bench_setup

bench_plugin 1 on
direct_q1=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")
bench_plugin 2 on
direct_q2=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")
bench_plugin 1 off
buffered_q1=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")

bench_loop "--direct-io=on" --direct-io=on
loop_direct=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")
bench_loop "(buffered, the default)"
loop_buffered=("$IOPS_RR" "$IOPS_RW" "$BW_SR" "$BW_SW")

compare "(direct image, 1 queue/device) vs loop --direct-io=on" direct_q1 loop_direct
compare "(direct image, 2 queues/device) vs loop --direct-io=on" direct_q2 loop_direct
compare "(directIo off, 1 queue/device) vs loop buffered (the default)" buffered_q1 loop_buffered
bench_teardown
log "PASS bench-node-ext4-vs-loop"
