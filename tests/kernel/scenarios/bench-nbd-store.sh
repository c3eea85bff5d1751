#!/usr/bin/env bash
# The nbd store (ublk device, 2 queues, a connection per queue) against the kernel's NBD client
# (nbd-client, one connection) on the same nbdkit export (file plugin, sparse image on tmpfs) in the
# same boot, each workload on both clients back to back (order alternating, BENCH_ROUNDS rounds): 4 KiB
# random write and read at QD32 (IOPS) and 1 MiB sequential write and read (bandwidth). Prints each
# figure's medians and the median of the paired ublk/kernel ratios (goal >= 1.0). Under TCG the
# absolute numbers mean little; the ratios are what to compare.
source "$(dirname "$0")/_lib.sh"
keep_scenario_files

source "$(dirname "$0")/_nbd_bench.sh"
nbd_bench_available bench-nbd-store || exit 0
nbd_bench_vs_kernel
log "PASS bench-nbd-store"
